//! Interactions: what a shopper did to an item, taken from Segment e-commerce spec v2 events,
//! and how much each kind of interaction counts.

use std::collections::HashMap;

use serde_json::Value;

use crate::{ItemIndex, UserIndex};

/// The Segment e-commerce events that say something about a shopper's interest in an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    ProductViewed,
    ProductClicked,
    ProductAddedToWishlist,
    ProductAdded,
    ProductRemoved,
    ProductShared,
    ProductReviewed,
    CheckoutStarted,
    OrderCompleted,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::ProductViewed,
        EventKind::ProductClicked,
        EventKind::ProductAddedToWishlist,
        EventKind::ProductAdded,
        EventKind::ProductRemoved,
        EventKind::ProductShared,
        EventKind::ProductReviewed,
        EventKind::CheckoutStarted,
        EventKind::OrderCompleted,
    ];

    /// Maps a Segment `track` event name (spec v2) to its kind; other events return `None`.
    pub fn from_segment_name(event_name: &str) -> Option<EventKind> {
        let kind = match event_name {
            "Product Viewed" => EventKind::ProductViewed,
            "Product Clicked" => EventKind::ProductClicked,
            "Product Added to Wishlist" => EventKind::ProductAddedToWishlist,
            "Product Added" => EventKind::ProductAdded,
            "Product Removed" => EventKind::ProductRemoved,
            "Product Shared" => EventKind::ProductShared,
            "Product Reviewed" => EventKind::ProductReviewed,
            "Checkout Started" => EventKind::CheckoutStarted,
            "Order Completed" => EventKind::OrderCompleted,
            _ => return None,
        };
        Some(kind)
    }

    fn slot(self) -> usize {
        self as usize
    }

    /// Views and clicks: the item was looked at.
    pub fn is_view(self) -> bool {
        matches!(self, EventKind::ProductViewed | EventKind::ProductClicked)
    }

    pub fn is_purchase(self) -> bool {
        self == EventKind::OrderCompleted
    }
}

/// One product mentioned by one Segment event, before the caller attributes it to a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentProduct {
    pub kind: EventKind,
    pub product_id: String,
    pub quantity: u32,
    pub price: Option<f64>,
    pub category: Option<String>,
    /// `order_id` of `Order Completed` / `Checkout Started`, `cart_id` otherwise, if present.
    pub basket_id: Option<String>,
}

/// Reads the products an e-commerce `track` event refers to: the top-level product of
/// `Product *` events, every entry of `properties.products` for checkout and order events.
/// Returns nothing for events that are not e-commerce interactions or carry no product id.
pub fn products_from_segment_event(event: &Value) -> Vec<SegmentProduct> {
    let Some(name) = event.get("event").and_then(Value::as_str) else {
        return Vec::new();
    };
    let Some(kind) = EventKind::from_segment_name(name) else {
        return Vec::new();
    };
    let Some(properties) = event.get("properties") else {
        return Vec::new();
    };
    let basket_id = ["order_id", "cart_id", "checkout_id"]
        .iter()
        .find_map(|key| properties.get(*key).and_then(id_string));
    let mut out = Vec::new();
    let mut push = |product: &Value| {
        let Some(product_id) = product
            .get("product_id")
            .and_then(id_string)
            .or_else(|| product.get("sku").and_then(id_string))
        else {
            return;
        };
        let quantity = product
            .get("quantity")
            .and_then(Value::as_f64)
            .filter(|q| *q >= 1.0)
            .map_or(1, |q| q.min(f64::from(u32::MAX)) as u32);
        out.push(SegmentProduct {
            kind,
            product_id,
            quantity,
            price: product.get("price").and_then(Value::as_f64),
            category: product
                .get("category")
                .and_then(Value::as_str)
                .map(str::to_owned),
            basket_id: basket_id.clone(),
        });
    };
    match properties.get("products").and_then(Value::as_array) {
        Some(products) => products.iter().for_each(&mut push),
        None => push(properties),
    }
    out
}

fn id_string(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// One interaction of a resolved profile with a catalog item, on dense indices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interaction {
    pub user: UserIndex,
    pub item: ItemIndex,
    pub kind: EventKind,
    pub timestamp_ms: i64,
    pub quantity: u32,
}

/// How much each kind of interaction counts, and how fast it fades.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    per_kind: [f32; EventKind::ALL.len()],
    /// Half-life of an interaction's weight; `None` means interactions never fade.
    pub half_life_ms: Option<i64>,
}

impl Default for Weights {
    /// Views 1, clicks 1, wishlist 2, add to cart 3, checkout 3, purchase 5, removal −1,
    /// share and review 2; a 30-day half-life.
    fn default() -> Self {
        let mut weights = Weights::uniform(1.0);
        weights.set(EventKind::ProductAddedToWishlist, 2.0);
        weights.set(EventKind::ProductAdded, 3.0);
        weights.set(EventKind::ProductRemoved, -1.0);
        weights.set(EventKind::ProductShared, 2.0);
        weights.set(EventKind::ProductReviewed, 2.0);
        weights.set(EventKind::CheckoutStarted, 3.0);
        weights.set(EventKind::OrderCompleted, 5.0);
        weights.half_life_ms = Some(30 * 24 * 3_600_000);
        weights
    }
}

impl Weights {
    /// Every kind weighs `weight`; no decay.
    pub fn uniform(weight: f32) -> Weights {
        Weights {
            per_kind: [weight; EventKind::ALL.len()],
            half_life_ms: None,
        }
    }

    pub fn set(&mut self, kind: EventKind, weight: f32) {
        self.per_kind[kind.slot()] = weight;
    }

    pub fn kind_weight(&self, kind: EventKind) -> f32 {
        self.per_kind[kind.slot()]
    }

    /// The weight of `interaction` as seen at `now_ms` (future events count as fresh).
    pub fn weight(&self, interaction: &Interaction, now_ms: i64) -> f32 {
        let base = self.kind_weight(interaction.kind);
        let Some(half_life_ms) = self.half_life_ms else {
            return base;
        };
        let age_ms = (now_ms - interaction.timestamp_ms).max(0);
        base * decay_factor(age_ms, half_life_ms) as f32
    }
}

/// `2^(-age / half_life)`.
pub fn decay_factor(age_ms: i64, half_life_ms: i64) -> f64 {
    debug_assert!(half_life_ms > 0);
    (-(age_ms as f64) / half_life_ms as f64 * std::f64::consts::LN_2).exp()
}

/// Assigns dense indices to external ids (profile ids, product ids) in first-seen order.
#[derive(Clone, Debug, Default)]
pub struct Interner {
    index_of: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    pub fn new() -> Interner {
        Interner::default()
    }

    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(index) = self.index_of.get(name) {
            return *index;
        }
        let index = u32::try_from(self.names.len()).expect("fewer than 2^32 ids");
        self.index_of.insert(name.to_owned(), index);
        self.names.push(name.to_owned());
        index
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.index_of.get(name).copied()
    }

    pub fn name(&self, index: u32) -> &str {
        &self.names[index as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Interactions on dense indices together with the id mappings that produced them.
#[derive(Clone, Debug, Default)]
pub struct InteractionLog {
    pub users: Interner,
    pub items: Interner,
    pub interactions: Vec<Interaction>,
}

impl InteractionLog {
    pub fn new() -> InteractionLog {
        InteractionLog::default()
    }

    /// Attributes a Segment event to `profile` (the resolved profile id, which the pipeline
    /// knows) at event time `timestamp_ms`; returns the interactions it added.
    pub fn ingest_segment(
        &mut self,
        profile: &str,
        timestamp_ms: i64,
        event: &Value,
    ) -> &[Interaction] {
        let start = self.interactions.len();
        let products = products_from_segment_event(event);
        if !products.is_empty() {
            let user = self.users.intern(profile);
            for product in products {
                self.interactions.push(Interaction {
                    user,
                    item: self.items.intern(&product.product_id),
                    kind: product.kind,
                    timestamp_ms,
                    quantity: product.quantity,
                });
            }
        }
        &self.interactions[start..]
    }
}
