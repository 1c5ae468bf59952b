//! The real-time state: everything derived from the log record by record — the catalog, each
//! visitor's interactions, co-visitation and co-purchase, recently viewed, buy again,
//! popularity and trending, and click/conversion attribution. A pure function of the log prefix.

use std::collections::{BTreeMap, HashMap, HashSet};

use atrium_identity::Identifier;
use atrium_pipeline::IdentifierHasher;
use atrium_recs::covisit::CoOccurrence;
use atrium_recs::interaction::products_from_segment_event;
use atrium_recs::{
    BuyAgain, CoVisitation, EventKind, Interaction, ItemIndex, Popularity, RecentlyViewed,
    Trending, UserIndex, Weights,
};
use atrium_types::{ControlRecord, LogRecord, parse_timestamp_ms};
use serde_json::Value;

use crate::catalog::{ItemCatalog, validate_item};
use crate::{Placement, RecsSettings};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Clicks, conversions and revenue attributed to one placement and model.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Outcomes {
    pub clicks: u64,
    pub conversions: u64,
    pub revenue: f64,
}

pub struct LiveState {
    pub catalog: ItemCatalog,
    /// Visitor key (`user_id:…` or `anonymous_id:…`) → dense index.
    users: HashMap<String, UserIndex>,
    user_keys: Vec<String>,
    /// Every interaction of each visitor, in log order.
    history: Vec<Vec<Interaction>>,
    last_view_ms: Vec<i64>,
    pub covisit: CoVisitation,
    pub copurchase: CoOccurrence,
    pub recent: RecentlyViewed,
    pub buy_again: BuyAgain,
    pub popularity: Popularity,
    pub trending: Trending,
    pub weights: Weights,
    /// Per (placement, model).
    pub outcomes: BTreeMap<(String, String), Outcomes>,
    /// Event-time high watermark: "now" for decay, sessions and buy-again (replay-stable).
    pub now_ms: i64,
    /// One past the last applied log offset.
    pub next_offset: u64,
    pub interactions: u64,
    /// Bumped on every catalog change.
    pub catalog_version: u64,
    /// Bumped on every interaction.
    pub interactions_version: u64,
    /// Listed items with a positive score, best first (refreshed by [`LiveState::refresh`]).
    pub popular_ranked: Vec<(ItemIndex, f32)>,
    pub trending_ranked: Vec<(ItemIndex, f32)>,
    /// The most popular listed items of each leaf category (dense category index → items,
    /// best first, at most [`POPULAR_PER_CATEGORY`]): candidates of the two-stage `for_you`.
    pub popular_by_category: HashMap<u32, Vec<ItemIndex>>,
    rankings_dirty: bool,
}

/// Items kept per category in [`LiveState::popular_by_category`].
pub const POPULAR_PER_CATEGORY: usize = 100;

impl LiveState {
    pub fn new(settings: &RecsSettings) -> LiveState {
        let weights = Weights::default();
        LiveState {
            catalog: ItemCatalog::default(),
            users: HashMap::new(),
            user_keys: Vec::new(),
            history: Vec::new(),
            last_view_ms: Vec::new(),
            covisit: CoVisitation::new(i64::from(settings.session_gap_minutes.max(1)) * 60_000, 50),
            copurchase: CoOccurrence::new(),
            recent: RecentlyViewed::new(50),
            buy_again: BuyAgain::new(),
            popularity: Popularity::new(weights.clone(), 14 * DAY_MS),
            trending: Trending::new(weights.clone(), DAY_MS, 14 * DAY_MS),
            weights,
            outcomes: BTreeMap::new(),
            now_ms: 0,
            next_offset: 0,
            interactions: 0,
            catalog_version: 0,
            interactions_version: 0,
            popular_ranked: Vec::new(),
            trending_ranked: Vec::new(),
            popular_by_category: HashMap::new(),
            rankings_dirty: false,
        }
    }

    pub fn user(&self, key: &str) -> Option<UserIndex> {
        self.users.get(key).copied()
    }

    pub fn user_keys(&self) -> &[String] {
        &self.user_keys
    }

    pub fn history(&self, user: UserIndex) -> &[Interaction] {
        &self.history[user as usize]
    }

    fn intern_user(&mut self, key: String) -> UserIndex {
        if let Some(user) = self.users.get(&key) {
            return *user;
        }
        let user = self.user_keys.len() as UserIndex;
        self.users.insert(key.clone(), user);
        self.user_keys.push(key);
        self.history.push(Vec::new());
        self.last_view_ms.push(i64::MIN);
        user
    }

    /// Applies one log record at `offset`.
    pub fn apply(&mut self, offset: u64, payload: &[u8], hasher: Option<&IdentifierHasher>) {
        debug_assert!(offset >= self.next_offset);
        self.next_offset = offset + 1;
        match LogRecord::decode_keeping(payload, &LIVE_FIELDS) {
            Ok(LogRecord::Event(event)) => self.apply_event(&event),
            Ok(LogRecord::Control(ControlRecord::CatalogPut { items, .. })) => {
                for (position, value) in items.iter().enumerate() {
                    match validate_item(value, &format!("items[{position}]")) {
                        Ok(item) => {
                            self.catalog.put(item);
                        }
                        Err(error) => {
                            tracing::warn!(offset, %error, "skipping invalid catalog item in the log")
                        }
                    }
                }
                self.catalog_version += 1;
                self.rankings_dirty = true;
            }
            Ok(LogRecord::Control(ControlRecord::CatalogDelete { ids, .. })) => {
                for id in &ids {
                    self.catalog.delete(id);
                }
                self.catalog_version += 1;
                self.rankings_dirty = true;
            }
            Ok(LogRecord::Control(ControlRecord::Erase {
                identifier_hashes, ..
            })) => {
                if let Some(hasher) = hasher {
                    self.erase(&identifier_hashes, hasher);
                }
            }
            Ok(LogRecord::Control(_)) => {}
            Err(error) => tracing::warn!(offset, %error, "skipping undecodable log record"),
        }
    }

    /// Forgets the visitors whose identifier hash is listed: their interactions no longer
    /// count for them (the log is rewritten without their events, so replay agrees).
    fn erase(&mut self, hashes: &[String], hasher: &IdentifierHasher) {
        let erased: HashSet<&str> = hashes.iter().map(String::as_str).collect();
        let matching: Vec<String> = self
            .users
            .keys()
            .filter(|key| {
                key.parse::<Identifier>()
                    .is_ok_and(|identifier| erased.contains(hasher.hash(&identifier).as_str()))
            })
            .cloned()
            .collect();
        for key in matching {
            if let Some(user) = self.users.remove(&key) {
                self.history[user as usize] = Vec::new();
            }
        }
    }

    fn apply_event(&mut self, event: &Value) {
        if event.get("type").and_then(Value::as_str) != Some("track") {
            return;
        }
        let Some(key) = visitor_key(event) else {
            return;
        };
        let Some(timestamp_ms) = event
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_timestamp_ms)
        else {
            return;
        };
        if let Some(recommendation_id) = recommendation_id(event.get("properties")) {
            self.attribute(event, recommendation_id);
        }
        let products = products_from_segment_event(event);
        if products.is_empty() {
            if event.get("event").and_then(Value::as_str) == Some("Order Completed") {
                self.attribute_order_lines(event);
            }
            return;
        }
        self.now_ms = self.now_ms.max(timestamp_ms);
        let user = self.intern_user(key);
        let mut basket: Vec<ItemIndex> = Vec::new();
        for product in &products {
            let item = self.catalog.intern(&product.product_id);
            let interaction = Interaction {
                user,
                item,
                kind: product.kind,
                timestamp_ms,
                quantity: product.quantity,
            };
            self.history[user as usize].push(interaction);
            self.popularity.observe(&interaction);
            self.trending.observe(&interaction);
            self.recent.observe(&interaction);
            self.buy_again.observe(&interaction);
            if product.kind.is_view() {
                // Co-visitation needs each visitor's views in time order; late events count
                // at the visitor's latest view time.
                let at = timestamp_ms.max(self.last_view_ms[user as usize]);
                self.last_view_ms[user as usize] = at;
                self.covisit.observe(user, item, at);
            }
            if product.kind == EventKind::OrderCompleted {
                basket.push(item);
            }
            self.interactions += 1;
        }
        if basket.len() > 1 {
            self.copurchase.observe_basket(&basket);
        }
        if event.get("event").and_then(Value::as_str) == Some("Order Completed") {
            self.attribute_order_lines(event);
        }
        self.interactions_version += 1;
        self.rankings_dirty = true;
    }

    /// A click or an order carrying a top-level `recommendation_id`.
    fn attribute(&mut self, event: &Value, recommendation_id: (String, String)) {
        let name = event.get("event").and_then(Value::as_str).unwrap_or("");
        let properties = &event["properties"];
        match name {
            "Product Clicked" => self.outcomes.entry(recommendation_id).or_default().clicks += 1,
            "Order Completed" => {
                let revenue = ["revenue", "total"]
                    .iter()
                    .find_map(|field| properties.get(*field).and_then(Value::as_f64))
                    .unwrap_or_else(|| order_lines_value(properties, |_| true));
                let outcome = self.outcomes.entry(recommendation_id).or_default();
                outcome.conversions += 1;
                outcome.revenue += revenue.max(0.0);
            }
            _ => {}
        }
    }

    /// Order lines carrying their own `recommendation_id` (when the order has none at the top).
    fn attribute_order_lines(&mut self, event: &Value) {
        let properties = &event["properties"];
        if recommendation_id(Some(properties)).is_some() {
            return;
        }
        let Some(products) = properties.get("products").and_then(Value::as_array) else {
            return;
        };
        let mut per_id: BTreeMap<(String, String), f64> = BTreeMap::new();
        for product in products {
            if let Some(id) = recommendation_id(Some(product)) {
                *per_id.entry(id).or_default() += line_value(product);
            }
        }
        for (id, revenue) in per_id {
            let outcome = self.outcomes.entry(id).or_default();
            outcome.conversions += 1;
            outcome.revenue += revenue.max(0.0);
        }
    }

    /// Recomputes the popular and trending rankings if interactions or the catalog changed.
    pub fn refresh(&mut self) {
        if !self.rankings_dirty {
            return;
        }
        self.rankings_dirty = false;
        let now = self.now_ms;
        let mut popular = Vec::new();
        let mut trending = Vec::new();
        for item in 0..self.catalog.len() as ItemIndex {
            if !self.catalog.is_listed(item) {
                continue;
            }
            let score = self.popularity.score(item, now);
            if score > 0.0 {
                popular.push((item, score as f32));
            }
            let trend = self.trending.trend(item, now);
            if trend > 0.0 {
                trending.push((item, trend as f32));
            }
        }
        let order =
            |a: &(ItemIndex, f32), b: &(ItemIndex, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        popular.sort_by(order);
        trending.sort_by(order);
        let mut popular_by_category: HashMap<u32, Vec<ItemIndex>> = HashMap::new();
        for &(item, _) in &popular {
            let category = self.catalog.models().category_index(item);
            let items = popular_by_category.entry(category).or_default();
            if items.len() < POPULAR_PER_CATEGORY {
                items.push(item);
            }
        }
        self.popular_by_category = popular_by_category;
        self.popular_ranked = popular;
        self.trending_ranked = trending;
    }

    pub fn rankings_dirty(&self) -> bool {
        self.rankings_dirty
    }
}

/// The top-level event fields the live model reads; the rest of an event (its context above
/// all) is skipped when decoding.
const LIVE_FIELDS: [&str; 5] = ["event", "userId", "anonymousId", "timestamp", "properties"];

/// `user_id:…` when the event has a user id, else `anonymous_id:…` (normalized like identity
/// resolution does, so the key names an identifier of the visitor's profile graph).
pub fn visitor_key(event: &Value) -> Option<String> {
    for (field, kind) in [("userId", "user_id"), ("anonymousId", "anonymous_id")] {
        let raw = match event.get(field) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            _ => continue,
        };
        if let Some(value) = atrium_identity::normalize(kind, &raw).filter(|v| !v.is_empty()) {
            return Some(format!("{kind}:{value}"));
        }
    }
    None
}

/// The (placement, model) a `recommendation_id` was issued for: `rec.<placement>.<model>.<nonce>`.
pub fn parse_recommendation_id(id: &str) -> Option<(String, String)> {
    let mut parts = id.split('.');
    let (Some("rec"), Some(placement), Some(model), Some(nonce), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Placement::parse(placement)?;
    if model.is_empty() || nonce.is_empty() || model.len() > 40 {
        return None;
    }
    Some((placement.to_owned(), model.to_owned()))
}

fn recommendation_id(properties: Option<&Value>) -> Option<(String, String)> {
    properties?
        .get("recommendation_id")
        .and_then(Value::as_str)
        .and_then(parse_recommendation_id)
}

fn line_value(product: &Value) -> f64 {
    let price = product.get("price").and_then(Value::as_f64).unwrap_or(0.0);
    let quantity = product
        .get("quantity")
        .and_then(Value::as_f64)
        .filter(|q| *q >= 1.0)
        .unwrap_or(1.0);
    price * quantity
}

fn order_lines_value(properties: &Value, keep: impl Fn(&Value) -> bool) -> f64 {
    properties
        .get("products")
        .and_then(Value::as_array)
        .map(|products| products.iter().filter(|p| keep(p)).map(line_value).sum())
        .unwrap_or(0.0)
}
