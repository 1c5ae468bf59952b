//! Deterministic generator of a realistic demo shop's event stream, in Segment spec JSON
//! (tracking spec + e-commerce spec v2).
//!
//! The stream simulates customers with one to three devices who browse anonymously, log in
//! (identify) later or never, buy on the web, in the apps and in physical stores, receive and
//! click marketing email, and sometimes get their orders updated, cancelled or refunded by the
//! backend. Every event carries an extra top-level `"_source"` naming the demo source (see
//! [`demo_sources`]) whose write key the caller should send it with; [`take_source`] strips it.
//!
//! Same [`GenConfig`] → byte-identical JSON sequence. Events come out in non-decreasing
//! `timestamp` order. The library performs no IO except on a writer the caller passes to
//! [`Generator::write_jsonl`].
//!
//! [`PlantedExperiment`] generates a separate stream: users exposed to an experiment's
//! variations who then convert with a known lift (or none, for an A/A test).

mod catalog;
mod data;
mod experiment;
pub mod harness;
pub mod segments;

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

pub use catalog::Product;
use catalog::{CATEGORIES, cents, slugify};
use data::*;
pub use experiment::PlantedExperiment;

/// Top-level field naming the source an event belongs to; the caller strips it before sending.
pub const SOURCE_FIELD: &str = "_source";

const SHOP_URL: &str = "https://atrium.shop";
const SHOP_TITLE: &str = "Atrium";
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    pub seed: u64,
    /// Number of simulated customers (people, each with one to three devices).
    pub customers: usize,
    /// Exact number of events the generator yields.
    pub events: usize,
    /// Time of the first event.
    pub start: DateTime<Utc>,
    /// Approximate spread of the stream; the last few events (refunds) may land a bit later.
    pub days: u32,
}

impl GenConfig {
    /// A sensible configuration: about one customer per 40 events (at least 50), starting at
    /// 2026-01-01T00:00:00Z and spread over 60 days.
    pub fn for_events(seed: u64, events: usize) -> Self {
        GenConfig {
            seed,
            customers: (events / 40).max(50),
            events,
            start: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            days: 60,
        }
    }

    /// The same shop, moved so that its history ends at the UTC midnight before `now_ms` (the
    /// demo uses this: windows such as "ordered in the last 30 days" then select customers).
    pub fn ending_before(mut self, now_ms: i64) -> Self {
        let day_ms = 86_400_000;
        let end = now_ms.div_euclid(day_ms) * day_ms;
        let start = end - i64::from(self.days) * day_ms;
        if let Some(start) = DateTime::from_timestamp_millis(start) {
            self.start = start;
        }
        self
    }
}

/// A demo source: the generator tags each event with one of these names in `_source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceSpec {
    pub name: &'static str,
    /// One of atrium's channel names: web, app, pos, server, email.
    pub channel: &'static str,
}

/// The sources the generated stream uses.
pub fn demo_sources() -> Vec<SourceSpec> {
    vec![
        SourceSpec {
            name: "web",
            channel: "web",
        },
        SourceSpec {
            name: "ios-app",
            channel: "app",
        },
        SourceSpec {
            name: "android-app",
            channel: "app",
        },
        SourceSpec {
            name: "pos",
            channel: "pos",
        },
        SourceSpec {
            name: "backend",
            channel: "server",
        },
        SourceSpec {
            name: "email",
            channel: "email",
        },
    ]
}

/// Removes the `_source` routing field from a generated event and returns it.
pub fn take_source(event: &mut Value) -> Option<String> {
    match event.as_object_mut()?.shift_remove(SOURCE_FIELD)? {
        Value::String(name) => Some(name),
        _ => None,
    }
}

/// An event waiting for its turn; ordered so that `BinaryHeap` pops the earliest first.
struct Pending {
    t: i64,
    seq: u64,
    /// Everything but `context` and `_source`, which are added when the event is emitted.
    event: Map<String, Value>,
    context: Ctx,
    source: &'static str,
}

/// An event's `context`. Session events share one context per page view; it is only
/// deep-copied when the event is emitted, which keeps allocation and release close together.
enum Ctx {
    Ready(Value),
    Shared(Arc<Map<String, Value>>),
}

impl Ctx {
    fn into_value(self) -> Value {
        match self {
            Ctx::Ready(value) => value,
            Ctx::Shared(map) => {
                let mut context = Map::with_capacity(map.len());
                context.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
                Value::Object(context)
            }
        }
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.t == other.t && self.seq == other.seq
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.t, other.seq).cmp(&(self.t, self.seq))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceKind {
    Desktop,
    MobileWeb,
    Ios,
    Android,
}

impl DeviceKind {
    fn source(self) -> &'static str {
        match self {
            DeviceKind::Desktop | DeviceKind::MobileWeb => "web",
            DeviceKind::Ios => "ios-app",
            DeviceKind::Android => "android-app",
        }
    }
    fn is_app(self) -> bool {
        matches!(self, DeviceKind::Ios | DeviceKind::Android)
    }
}

struct Device {
    kind: DeviceKind,
    anonymous_id: String,
    identified: bool,
    /// The static part of `context` this device sends.
    context: Arc<Map<String, Value>>,
}

struct Phone {
    country: &'static str,
    area: &'static str,
    number: String,
}

struct Customer {
    user_id: String,
    first: &'static str,
    last: &'static str,
    email_local: String,
    phone: Option<Phone>,
    place: usize,
    tier: &'static str,
    created_at: Option<i64>,
    will_identify: bool,
    devices: Vec<Device>,
    busy_until: i64,
}

/// State of one browsing session on one device.
struct Session {
    customer: usize,
    device: usize,
    source: &'static str,
    app: bool,
    anonymous_id: String,
    user_id: Option<String>,
    context: Arc<Map<String, Value>>,
    page: Option<Arc<Value>>,
    campaign: Option<Arc<Value>>,
    /// `context` built from `context`, `page` and `campaign`; reset when either changes.
    cached_context: Option<Arc<Map<String, Value>>>,
    referrer: Option<String>,
    views: u32,
    currency: &'static str,
    t: i64,
    cart_id: Option<String>,
    cart: Vec<(usize, u32)>,
}

/// A priced order.
struct Order {
    subtotal: f64,
    discount: f64,
    coupon: Option<&'static str>,
    shipping: f64,
    tax: f64,
    revenue: f64,
    total: f64,
    products: Vec<Value>,
}

enum View {
    Home,
    Category(usize),
    Search(String),
    Product(usize),
    Cart,
    Checkout,
    Confirmation,
}

/// The event stream. Construct with [`Generator::new`] and iterate.
pub struct Generator {
    config: GenConfig,
    rng: ChaCha8Rng,
    catalog: Vec<Product>,
    /// Product indices per entry of `CATEGORIES`.
    by_category: Vec<Vec<usize>>,
    /// Catalog indices from most to least popular.
    popularity: Vec<usize>,
    customers: Vec<Customer>,
    /// Customer indices from most to least active.
    activity_rank: Vec<usize>,
    place_weights_total: u32,
    heap: BinaryHeap<Pending>,
    push_seq: u64,
    emitted: usize,
    created: usize,
    activities: usize,
    next_activity: i64,
    start_ms: i64,
    end_ms: i64,
    order_seq: u64,
    email_seq: u64,
    message_prefix: String,
}

impl Generator {
    pub fn new(config: GenConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let catalog = catalog::build_catalog(&mut rng);
        let by_category = CATEGORIES
            .iter()
            .map(|spec| {
                catalog
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.category == spec.name)
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let mut popularity: Vec<usize> = (0..catalog.len()).collect();
        popularity.shuffle(&mut rng);
        let start_ms = config.start.timestamp_millis();
        let end_ms = start_ms + i64::from(config.days.max(1)) * DAY;
        let mut generator = Generator {
            message_prefix: format!("gen-{}-", config.seed),
            rng,
            catalog,
            by_category,
            popularity,
            customers: Vec::new(),
            activity_rank: Vec::new(),
            place_weights_total: PLACES.iter().map(|p| p.weight).sum(),
            heap: BinaryHeap::new(),
            push_seq: 0,
            emitted: 0,
            created: 0,
            activities: 0,
            next_activity: start_ms,
            start_ms,
            end_ms,
            order_seq: 0,
            email_seq: 0,
            config,
        };
        let count = generator.config.customers.max(1);
        generator.customers = (0..count).map(|n| generator.make_customer(n)).collect();
        let mut rank: Vec<usize> = (0..count).collect();
        rank.shuffle(&mut generator.rng);
        generator.activity_rank = rank;
        generator
    }

    /// The product catalog the stream refers to.
    pub fn catalog(&self) -> &[Product] {
        &self.catalog
    }

    /// The configuration this generator was built with.
    pub fn config(&self) -> &GenConfig {
        &self.config
    }

    /// Writes every remaining event as one JSON line (including `_source`); returns the count.
    pub fn write_jsonl(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        let mut written = 0;
        for event in self.by_ref() {
            serde_json::to_writer(&mut *out, &event)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        Ok(written)
    }

    // ---------------------------------------------------------------- world building

    fn make_customer(&mut self, n: usize) -> Customer {
        let rng = &mut self.rng;
        let first = *FIRST_NAMES.choose(rng).unwrap();
        let last = *LAST_NAMES.choose(rng).unwrap();
        let email_local = format!(
            "{}.{}{}",
            first.to_ascii_lowercase(),
            last.to_ascii_lowercase().replace(' ', ""),
            n
        );
        let mut pick = rng.gen_range(0..self.place_weights_total);
        let mut place = 0;
        for (i, p) in PLACES.iter().enumerate() {
            if pick < p.weight {
                place = i;
                break;
            }
            pick -= p.weight;
        }
        let home = &PLACES[place];
        let phone = rng.gen_bool(0.6).then(|| Phone {
            country: home.country,
            area: home.area,
            number: if home.country == "US" {
                format!("55501{:02}", rng.gen_range(0..100))
            } else {
                format!("{:07}", rng.gen_range(1_000_000..9_999_999))
            },
        });
        let tier = weighted(rng, TIERS);
        let created_at = rng
            .gen_bool(0.55)
            .then(|| self.start_ms - rng.gen_range(DAY..730 * DAY));
        let will_identify = rng.gen_bool(0.8);
        let device_count = match rng.gen_range(0..100) {
            0..=54 => 1,
            55..=86 => 2,
            _ => 3,
        };
        let home_ip = random_ip(rng);
        let mut kinds = Vec::with_capacity(device_count);
        for i in 0..device_count {
            let kind = match (i, rng.gen_range(0..100)) {
                (0, 0..=49) => DeviceKind::Desktop,
                (0, 50..=69) => DeviceKind::MobileWeb,
                (0, 70..=85) => DeviceKind::Ios,
                (0, _) => DeviceKind::Android,
                (_, 0..=29) => DeviceKind::Desktop,
                (_, 30..=44) => DeviceKind::MobileWeb,
                (_, 45..=74) => DeviceKind::Ios,
                (_, _) => DeviceKind::Android,
            };
            kinds.push(kind);
        }
        // At most one phone OS per person.
        if kinds.contains(&DeviceKind::Ios) {
            for k in kinds.iter_mut().filter(|k| **k == DeviceKind::Android) {
                *k = DeviceKind::MobileWeb;
            }
        }
        let devices = kinds
            .into_iter()
            .map(|kind| make_device(&mut self.rng, kind, home, &home_ip))
            .collect();
        Customer {
            user_id: format!("u_{n}"),
            first,
            last,
            email_local,
            phone,
            place,
            tier,
            created_at,
            will_identify,
            devices,
            busy_until: i64::MIN,
        }
    }

    // ---------------------------------------------------------------- scheduling

    fn push(&mut self, t: i64, event: Map<String, Value>, context: Ctx, source: &'static str) {
        self.heap.push(Pending {
            t,
            seq: self.push_seq,
            event,
            context,
            source,
        });
        self.push_seq += 1;
        self.created += 1;
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        t: i64,
        source: &'static str,
        kind: &'static str,
        label: Option<(&'static str, Value)>,
        anonymous_id: Option<&str>,
        user_id: Option<&str>,
        body: Option<(&'static str, Value)>,
        context: Ctx,
    ) {
        let mut event = Map::with_capacity(10);
        event.insert("messageId".into(), Value::Null);
        event.insert("timestamp".into(), Value::String(format_ts(t)));
        event.insert("type".into(), Value::String(kind.into()));
        if let Some((key, value)) = label {
            event.insert(key.into(), value);
        }
        if let Some(id) = anonymous_id {
            event.insert("anonymousId".into(), Value::String(id.into()));
        }
        if let Some(id) = user_id {
            event.insert("userId".into(), Value::String(id.into()));
        }
        if let Some((key, value)) = body {
            event.insert(key.into(), value);
        }
        self.push(t, event, context, source);
    }

    fn exp(&mut self, mean: f64) -> f64 {
        let u: f64 = self.rng.r#gen();
        -(1.0 - u).ln() * mean
    }

    /// A human-scale delay: at least `min` ms plus an exponential tail with mean `mean` ms.
    fn delay(&mut self, min: i64, mean: i64) -> i64 {
        min + self.exp(mean as f64) as i64
    }

    fn advance_clock(&mut self) {
        let now = self.next_activity;
        let per_activity = if self.activities > 0 {
            self.created as f64 / self.activities as f64
        } else {
            7.0
        };
        let remaining = self.config.events.saturating_sub(self.created) as f64;
        let left = self.end_ms - now;
        let mean = if left > 0 {
            left as f64 / (remaining / per_activity).max(1.0)
        } else {
            (self.end_ms - self.start_ms) as f64
                / (self.config.events as f64 / per_activity).max(1.0)
        };
        let mean_weight = HOUR_WEIGHTS.iter().sum::<f64>() / 24.0;
        let mut t = now;
        loop {
            t += (self.exp(mean * mean_weight) as i64).max(1);
            let hour = (t.div_euclid(HOUR)).rem_euclid(24) as usize;
            if self.rng.gen_bool(HOUR_WEIGHTS[hour]) {
                break;
            }
        }
        self.next_activity = t;
    }

    fn pick_customer(&mut self, t: i64) -> Option<usize> {
        let n = self.customers.len();
        for _ in 0..6 {
            let u: f64 = self.rng.r#gen();
            let rank = ((n as f64) * u.powf(1.7)) as usize;
            let c = self.activity_rank[rank.min(n - 1)];
            if self.customers[c].busy_until < t {
                return Some(c);
            }
        }
        None
    }

    fn run_activity(&mut self) {
        let t = self.next_activity;
        self.activities += 1;
        if let Some(c) = self.pick_customer(t) {
            let roll = self.rng.gen_range(0..100);
            let customer = &self.customers[c];
            let known = customer.will_identify && customer.created_at.is_some();
            let end = if roll < 15 && known {
                self.email_activity(c, t)
            } else if roll >= 93 && customer.will_identify {
                self.pos_activity(c, t)
            } else {
                let device = self.pick_device(c);
                self.session(c, device, t, None)
            };
            self.customers[c].busy_until = end;
        }
        self.advance_clock();
    }

    fn pick_device(&mut self, c: usize) -> usize {
        let count = self.customers[c].devices.len();
        // The first device is the primary one.
        let roll = self.rng.gen_range(0..count + 1);
        roll.saturating_sub(1)
    }

    // ---------------------------------------------------------------- sessions

    fn session(&mut self, c: usize, d: usize, t0: i64, email_campaign: Option<&str>) -> i64 {
        let customer = &self.customers[c];
        let device = &customer.devices[d];
        let kind = device.kind;
        let currency = PLACES[customer.place].currency;
        let will_identify = customer.will_identify;
        let mut s = Session {
            customer: c,
            device: d,
            source: kind.source(),
            app: kind.is_app(),
            anonymous_id: device.anonymous_id.clone(),
            user_id: device.identified.then(|| customer.user_id.clone()),
            context: Arc::clone(&device.context),
            page: None,
            campaign: None,
            cached_context: None,
            referrer: None,
            views: 0,
            currency,
            t: t0,
            cart_id: None,
            cart: Vec::new(),
        };

        // Where the visit comes from.
        let mut landing_product = None;
        if let Some(name) = email_campaign {
            s.campaign = Some(Arc::new(
                json!({"source": "newsletter", "medium": "email", "name": name}),
            ));
        } else if !s.app && self.rng.gen_bool(0.4) {
            let (source, medium, referrer) = weighted3(&mut self.rng, UTM_SOURCES);
            let name = *UTM_CAMPAIGNS.choose(&mut self.rng).unwrap();
            s.campaign = Some(Arc::new(
                json!({"source": source, "medium": medium, "name": name}),
            ));
            s.referrer = referrer.map(str::to_string);
        } else if !s.app {
            let referrer = weighted(&mut self.rng, ORGANIC_REFERRERS);
            s.referrer = referrer.map(str::to_string);
        }

        if s.app {
            let version = if kind == DeviceKind::Ios {
                "4.12.0"
            } else {
                "4.11.2"
            };
            let props = json!({"from_background": self.rng.gen_bool(0.3), "version": version});
            self.track(&mut s, "Application Opened", props);
            self.view(&mut s, View::Home);
        } else {
            let roll = self.rng.gen_range(0..100);
            let campaign_bias = if s.campaign.is_some() { 20 } else { 0 };
            if roll < 40 - campaign_bias {
                self.view(&mut s, View::Home);
            } else if roll < 65 - campaign_bias {
                let cat = self.rng.gen_range(0..CATEGORIES.len());
                self.view(&mut s, View::Category(cat));
                self.list_viewed(&mut s, cat, None);
            } else {
                let p = self.popular_product();
                landing_product = Some(p);
                self.view(&mut s, View::Product(p));
                self.product_viewed(&mut s, p);
            }
        }

        // Logging in early in the visit.
        if will_identify && s.user_id.is_none() && self.rng.gen_bool(0.22) {
            s.t += self.delay(5_000, 20_000);
            self.identify(&mut s);
        }

        // Browsing.
        let mut steps = 1;
        while steps < 8 && self.rng.gen_bool(0.55) {
            steps += 1;
        }
        let mut last_list: Option<usize> = None;
        if let Some(p) = landing_product
            && self.rng.gen_bool(0.25)
        {
            self.maybe_add(&mut s, p, 1.0);
        }
        for _ in 0..steps {
            s.t += self.delay(4_000, 35_000);
            let roll = self.rng.gen_range(0..100);
            if roll < 14 {
                let query = self.search_query();
                self.track(&mut s, "Products Searched", json!({"query": query}));
                s.t += self.delay(800, 1_500);
                let cat = self.rng.gen_range(0..CATEGORIES.len());
                self.view(&mut s, View::Search(query.clone()));
                self.list_viewed(&mut s, cat, Some(&query));
                last_list = Some(cat);
            } else if roll < 42 {
                let cat = self.rng.gen_range(0..CATEGORIES.len());
                self.view(&mut s, View::Category(cat));
                self.list_viewed(&mut s, cat, None);
                last_list = Some(cat);
            } else {
                let p = match last_list {
                    Some(cat) if self.rng.gen_bool(0.7) => {
                        let list = &self.by_category[cat];
                        list[self.rng.gen_range(0..list.len().min(8))]
                    }
                    _ => self.popular_product(),
                };
                self.view(&mut s, View::Product(p));
                self.product_viewed(&mut s, p);
                self.maybe_add(&mut s, p, 0.16);
            }
        }

        if !s.cart.is_empty() {
            self.checkout_funnel(&mut s, will_identify);
        }

        if s.app && self.rng.gen_bool(0.5) {
            s.t += self.delay(2_000, 20_000);
            self.track(&mut s, "Application Backgrounded", json!({}));
        }
        s.t
    }

    fn checkout_funnel(&mut self, s: &mut Session, will_identify: bool) {
        let cart_id = s.cart_id.clone().unwrap_or_default();
        if self.rng.gen_bool(0.75) {
            s.t += self.delay(3_000, 20_000);
            self.view(s, View::Cart);
            if s.cart.len() > 1 && self.rng.gen_bool(0.12) {
                let (p, qty) = s.cart.pop().unwrap();
                let mut props = self.product_obj(p, s.currency, Some(qty), None);
                props.insert("cart_id".into(), Value::String(cart_id.clone()));
                s.t += self.delay(1_000, 5_000);
                self.track(s, "Product Removed", Value::Object(props));
            }
            let products = self.cart_products(s);
            let props = json!({"cart_id": cart_id, "products": products});
            self.track(s, "Cart Viewed", props);
        }
        if !self.rng.gen_bool(0.55) {
            return;
        }
        s.t += self.delay(4_000, 25_000);
        if will_identify && s.user_id.is_none() {
            self.identify(s);
            s.t += self.delay(500, 2_000);
        }
        self.order_seq += 1;
        let order_id = format!("ORD-{}", 100_000 + self.order_seq);
        let checkout_id = format!("chk_{}", self.hex_id(12));
        let order = self.price_order(&s.cart.clone(), s.currency, 0.15, false);
        self.view(s, View::Checkout);
        let mut props = Map::with_capacity(13);
        props.insert("checkout_id".into(), json!(checkout_id));
        props.insert("order_id".into(), json!(order_id));
        props.insert("value".into(), json!(order.subtotal));
        props.insert("revenue".into(), json!(order.revenue));
        props.insert("shipping".into(), json!(order.shipping));
        props.insert("tax".into(), json!(order.tax));
        props.insert("discount".into(), json!(order.discount));
        if let Some(coupon) = order.coupon {
            props.insert("coupon".into(), json!(coupon));
        }
        props.insert("currency".into(), json!(s.currency));
        props.insert("products".into(), Value::Array(order.products.clone()));
        self.track(s, "Checkout Started", Value::Object(props));
        if let Some(coupon) = order.coupon {
            s.t += self.delay(3_000, 10_000);
            let props = json!({
                "cart_id": cart_id, "order_id": order_id, "coupon_id": coupon.to_ascii_lowercase(),
                "coupon_name": coupon, "discount": order.discount,
            });
            self.track(s, "Coupon Applied", props);
        }
        if !self.rng.gen_bool(0.75) {
            return;
        }
        s.t += self.delay(10_000, 40_000);
        let shipping_method = if order.shipping > 8.0 {
            "express"
        } else {
            "standard"
        };
        let payment_method = weighted(&mut self.rng, PAYMENT_METHODS);
        let props = json!({
            "checkout_id": checkout_id, "order_id": order_id, "step": 2,
            "shipping_method": shipping_method, "payment_method": payment_method,
        });
        self.track(s, "Payment Info Entered", props);
        if !self.rng.gen_bool(0.85) {
            return;
        }
        s.t += self.delay(2_000, 6_000);
        self.view(s, View::Confirmation);
        let affiliation = match s.source {
            "ios-app" => "Atrium iOS App",
            "android-app" => "Atrium Android App",
            _ => "Atrium Online Store",
        };
        let props = order_props(&order, &checkout_id, &order_id, affiliation, s.currency);
        self.track(s, "Order Completed", props);
        let user_id = s.user_id.clone();
        let anonymous_id = s.anonymous_id.clone();
        let t = s.t;
        let currency = s.currency;
        self.followups(
            t,
            &order_id,
            user_id.as_deref(),
            Some(&anonymous_id),
            currency,
            &order,
        );
    }

    fn maybe_add(&mut self, s: &mut Session, p: usize, probability: f64) {
        if !self.rng.gen_bool(probability) {
            return;
        }
        s.t += self.delay(2_000, 15_000);
        if s.cart_id.is_none() {
            s.cart_id = Some(self.uuid());
        }
        let qty = match self.rng.gen_range(0..100) {
            0..=84 => 1,
            85..=96 => 2,
            _ => 3,
        };
        let mut props = Map::with_capacity(13);
        props.insert(
            "cart_id".into(),
            json!(s.cart_id.clone().unwrap_or_default()),
        );
        props.extend(self.product_obj(p, s.currency, Some(qty), None));
        props.insert("currency".into(), json!(s.currency));
        self.track(s, "Product Added", Value::Object(props));
        s.cart.push((p, qty));
    }

    fn product_viewed(&mut self, s: &mut Session, p: usize) {
        s.t += self.delay(300, 1_000);
        let mut props = self.product_obj(p, s.currency, None, None);
        let price = self.catalog[p].price_in(s.currency);
        props.insert("currency".into(), json!(s.currency));
        props.insert("value".into(), json!(price));
        self.track(s, "Product Viewed", Value::Object(props));
    }

    fn list_viewed(&mut self, s: &mut Session, cat: usize, query: Option<&str>) {
        s.t += self.delay(300, 1_000);
        let list = &self.by_category[cat];
        let offset = self.rng.gen_range(0..list.len().saturating_sub(4).max(1));
        let items: Vec<usize> = list.iter().skip(offset).take(3).copied().collect();
        let products: Vec<Value> = items
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let product = &self.catalog[p];
                json!({
                    "product_id": product.product_id, "name": product.name,
                    "price": product.price_in(s.currency), "position": offset + i + 1,
                })
            })
            .collect();
        let category = CATEGORIES[cat].name;
        let list_id = match query {
            Some(_) => "search_results".to_string(),
            None => format!("collection_{}", slugify(category)),
        };
        let props = json!({"list_id": list_id, "category": category, "products": products});
        self.track(s, "Product List Viewed", props);
    }

    fn view(&mut self, s: &mut Session, view: View) {
        s.views += 1;
        if s.views > 1 && s.campaign.is_some() {
            s.campaign = None;
            s.cached_context = None;
        }
        if s.app {
            let (name, props) = match &view {
                View::Home => ("Home", json!({})),
                View::Category(cat) => ("Category", json!({"category": CATEGORIES[*cat].name})),
                View::Search(query) => ("Search Results", json!({"query": query})),
                View::Product(p) => (
                    "Product Detail",
                    json!({"product_id": self.catalog[*p].product_id}),
                ),
                View::Cart => ("Cart", json!({})),
                View::Checkout => ("Checkout", json!({})),
                View::Confirmation => ("Order Confirmation", json!({})),
            };
            let context = self.session_context(s);
            self.emit(
                s.t,
                s.source,
                "screen",
                Some(("name", json!(name))),
                Some(&s.anonymous_id),
                s.user_id.as_deref(),
                Some(("properties", props)),
                context,
            );
            return;
        }
        let (name, path, search, title) = match &view {
            View::Home => (
                "Home",
                "/".to_string(),
                None,
                format!("{SHOP_TITLE} | Everyday goods"),
            ),
            View::Category(cat) => {
                let category = CATEGORIES[*cat].name;
                (
                    "Collection",
                    format!("/collections/{}", slugify(category)),
                    None,
                    format!("{category} | {SHOP_TITLE}"),
                )
            }
            View::Search(query) => (
                "Search",
                "/search".to_string(),
                Some(format!("?q={}", query.replace(' ', "+"))),
                format!("Search: {query} | {SHOP_TITLE}"),
            ),
            View::Product(p) => {
                let product = &self.catalog[*p];
                (
                    "Product",
                    format!("/products/{}", product.slug()),
                    None,
                    format!("{} | {SHOP_TITLE}", product.name),
                )
            }
            View::Cart => (
                "Cart",
                "/cart".to_string(),
                None,
                format!("Cart | {SHOP_TITLE}"),
            ),
            View::Checkout => (
                "Checkout",
                "/checkout".to_string(),
                None,
                format!("Checkout | {SHOP_TITLE}"),
            ),
            View::Confirmation => (
                "Order Confirmation",
                "/checkout/thank-you".to_string(),
                None,
                format!("Thank you | {SHOP_TITLE}"),
            ),
        };
        let mut url = format!("{SHOP_URL}{path}");
        if let Some(search) = &search {
            url.push_str(search);
        }
        if s.views == 1
            && let Some(Value::Object(campaign)) = s.campaign.as_deref()
        {
            url.push_str(&format!(
                "?utm_source={}&utm_medium={}&utm_campaign={}",
                campaign["source"].as_str().unwrap_or_default(),
                campaign["medium"].as_str().unwrap_or_default(),
                campaign["name"].as_str().unwrap_or_default()
            ));
        }
        let mut page = Map::with_capacity(5);
        page.insert("path".into(), Value::String(path));
        if let Some(referrer) = s.referrer.take() {
            page.insert("referrer".into(), Value::String(referrer));
        }
        if let Some(search) = search {
            page.insert("search".into(), Value::String(search));
        }
        page.insert("title".into(), Value::String(title));
        page.insert("url".into(), Value::String(url.clone()));
        let page = Value::Object(page);
        // The page call carries the full page context; later calls on this page a short one.
        s.page = Some(Arc::new(page.clone()));
        s.cached_context = None;
        let context = self.session_context(s);
        s.page = Some(Arc::new(json!({"path": page["path"], "url": url})));
        s.cached_context = None;
        s.referrer = Some(url);
        self.emit(
            s.t,
            s.source,
            "page",
            Some(("name", json!(name))),
            Some(&s.anonymous_id),
            s.user_id.as_deref(),
            Some(("properties", page)),
            context,
        );
    }

    fn track(&mut self, s: &mut Session, event: &'static str, props: Value) {
        let context = self.session_context(s);
        self.emit(
            s.t,
            s.source,
            "track",
            Some(("event", Value::String(event.into()))),
            Some(&s.anonymous_id),
            s.user_id.as_deref(),
            Some(("properties", props)),
            context,
        );
    }

    fn session_context(&self, s: &mut Session) -> Ctx {
        let context = s.cached_context.get_or_insert_with(|| {
            let mut context = Map::clone(&s.context);
            if let Some(page) = &s.page {
                context.insert("page".into(), Value::clone(page));
            }
            if let Some(campaign) = &s.campaign {
                context.insert("campaign".into(), Value::clone(campaign));
            }
            Arc::new(context)
        });
        Ctx::Shared(Arc::clone(context))
    }

    fn identify(&mut self, s: &mut Session) {
        let t = s.t;
        let email = self.email_variant(s.customer);
        let phone_variant = self.rng.gen_range(0..4);
        let with_address = self.rng.gen_bool(0.5);
        let customer = &mut self.customers[s.customer];
        let created_at = *customer.created_at.get_or_insert(t);
        customer.devices[s.device].identified = true;
        let mut traits = Map::with_capacity(8);
        traits.insert("email".into(), Value::String(email));
        traits.insert("first_name".into(), json!(customer.first));
        traits.insert("last_name".into(), json!(customer.last));
        if let Some(phone) = &customer.phone {
            traits.insert(
                "phone".into(),
                Value::String(format_phone(phone, phone_variant)),
            );
        }
        traits.insert("tier".into(), json!(customer.tier));
        if with_address {
            let place = &PLACES[customer.place];
            traits.insert(
                "address".into(),
                json!({"city": place.city, "state": place.region, "country": place.country}),
            );
        }
        traits.insert("created_at".into(), Value::String(format_ts(created_at)));
        let user_id = customer.user_id.clone();
        s.user_id = Some(user_id.clone());
        let context = self.session_context(s);
        self.emit(
            t,
            s.source,
            "identify",
            None,
            Some(&s.anonymous_id),
            Some(&user_id),
            Some(("traits", Value::Object(traits))),
            context,
        );
    }

    // ---------------------------------------------------------------- other channels

    fn email_activity(&mut self, c: usize, t0: i64) -> i64 {
        let campaign_no = ((t0 - self.start_ms).max(0) / (7 * DAY / 2)) as usize;
        let subject = EMAIL_SUBJECTS[campaign_no % EMAIL_SUBJECTS.len()];
        let campaign_id = format!("cmp_{:03}", campaign_no + 1);
        let campaign_name = slugify(subject).replace('-', "_");
        self.email_seq += 1;
        let email_id = format!("em_{}", 1_000_000 + self.email_seq);
        let user_id = self.customers[c].user_id.clone();
        let email = format!("{}@example.com", self.customers[c].email_local);
        let props = json!({
            "email_id": email_id, "campaign_id": campaign_id, "campaign_name": campaign_name,
            "subject": subject,
        });
        let context = json!({
            "library": {"name": "atrium-email", "version": "1.3.0"},
            "traits": {"email": email},
        });
        let mut t = t0;
        self.email_event(t, "Email Delivered", &user_id, &props, &context);
        let mut end = t;
        if self.rng.gen_bool(0.45) {
            t += self.delay(60_000, 90 * MINUTE).min(14 * HOUR);
            self.email_event(t, "Email Opened", &user_id, &props, &context);
            end = t;
            if self.rng.gen_bool(0.35) {
                t += self.delay(3_000, 40_000);
                let mut click = props.clone();
                click["link_url"] = json!(format!(
                    "{SHOP_URL}/?utm_source=newsletter&utm_medium=email&utm_campaign={campaign_name}"
                ));
                self.email_event(t, "Email Link Clicked", &user_id, &click, &context);
                end = t;
                let web = self.customers[c]
                    .devices
                    .iter()
                    .position(|d| !d.kind.is_app());
                if let Some(d) = web
                    && self.rng.gen_bool(0.85)
                {
                    end = self.session(c, d, t + 1_500, Some(&campaign_name));
                }
            }
        }
        end
    }

    fn email_event(&mut self, t: i64, name: &'static str, user: &str, props: &Value, ctx: &Value) {
        self.emit(
            t,
            "email",
            "track",
            Some(("event", json!(name))),
            None,
            Some(user),
            Some(("properties", props.clone())),
            Ctx::Ready(ctx.clone()),
        );
    }

    fn pos_activity(&mut self, c: usize, t: i64) -> i64 {
        let home = self.customers[c].place;
        let store = STORES
            .iter()
            .position(|s| s.place == home)
            .filter(|_| self.rng.gen_bool(0.85))
            .unwrap_or_else(|| self.rng.gen_range(0..STORES.len()));
        let store = &STORES[store];
        let place = &PLACES[store.place];
        self.customers[c].created_at.get_or_insert(t);
        let n = match self.rng.gen_range(0..100) {
            0..=59 => 1,
            60..=89 => 2,
            _ => 3,
        };
        let lines: Vec<(usize, u32)> = (0..n)
            .map(|_| {
                (
                    self.popular_product(),
                    if self.rng.gen_bool(0.1) { 2 } else { 1 },
                )
            })
            .collect();
        let order = self.price_order(&lines, place.currency, 0.08, true);
        self.order_seq += 1;
        let order_id = format!(
            "POS-{}-{}",
            &store.id[3..6].to_ascii_uppercase(),
            100_000 + self.order_seq
        );
        let mut props = order_props(&order, "", &order_id, store.name, place.currency);
        if let Value::Object(map) = &mut props {
            map.shift_remove("checkout_id");
            map.insert("store_id".into(), json!(store.id));
            let payment = weighted(&mut self.rng, PAYMENT_METHODS);
            map.insert("payment_method".into(), json!(payment));
        }
        let register = self.rng.gen_range(1..5);
        let context = json!({
            "library": {"name": "atrium-pos", "version": "3.2.0"},
            "device": {"id": format!("{}-reg-{register}", store.id), "type": "pos"},
            "location": {
                "city": place.city, "region": place.region, "country": place.country,
                "latitude": place.lat, "longitude": place.lon,
            },
            "timezone": place.timezone,
            "traits": {"address": {"street": store.address, "city": place.city}},
        });
        let user_id = self.customers[c].user_id.clone();
        self.emit(
            t,
            "pos",
            "track",
            Some(("event", json!("Order Completed"))),
            None,
            Some(&user_id),
            Some(("properties", props)),
            Ctx::Ready(context),
        );
        self.followups(t, &order_id, Some(&user_id), None, place.currency, &order);
        t + 5 * MINUTE
    }

    /// Backend follow-ups of an order, scheduled in the future: updates, cancellations and
    /// refunds, all referencing `order_id`.
    fn followups(
        &mut self,
        t: i64,
        order_id: &str,
        user_id: Option<&str>,
        anonymous_id: Option<&str>,
        currency: &str,
        order: &Order,
    ) {
        let roll = self.rng.gen_range(0..1000);
        let base = || {
            let mut props = Map::with_capacity(13);
            props.insert("order_id".into(), json!(order_id));
            props
        };
        if roll < 30 {
            let at = t + self.delay(10 * MINUTE, 2 * HOUR);
            let mut props = base();
            fill_order_fields(&mut props, order, currency);
            let reason = *CANCEL_REASONS.choose(&mut self.rng).unwrap();
            props.insert("reason".into(), json!(reason));
            self.backend(at, "Order Cancelled", user_id, anonymous_id, props);
            return;
        }
        if roll < 110 {
            let at = t + self.delay(HOUR, 6 * HOUR);
            let mut props = base();
            fill_order_fields(&mut props, order, currency);
            props.insert("status".into(), json!("shipped"));
            let carrier = if currency == "EUR" { "DHL" } else { "UPS" };
            props.insert("carrier".into(), json!(carrier));
            self.backend(at, "Order Updated", user_id, anonymous_id, props);
        }
        if roll % 100 < 7 {
            let at = t + self.delay(3 * DAY, 4 * DAY).min(25 * DAY);
            let mut props = base();
            let full = order.products.len() == 1 || self.rng.gen_bool(0.5);
            let (amount, products) = if full {
                (order.total, order.products.clone())
            } else {
                let line = order.products[self.rng.gen_range(0..order.products.len())].clone();
                let amount = line["price"].as_f64().unwrap_or(0.0)
                    * line["quantity"].as_f64().unwrap_or(1.0);
                (cents(amount), vec![line])
            };
            props.insert("total".into(), json!(amount));
            props.insert("revenue".into(), json!(amount));
            props.insert("currency".into(), json!(currency));
            let reason = *REFUND_REASONS.choose(&mut self.rng).unwrap();
            props.insert("reason".into(), json!(reason));
            props.insert("products".into(), Value::Array(products));
            self.backend(at, "Order Refunded", user_id, anonymous_id, props);
        }
    }

    fn backend(
        &mut self,
        t: i64,
        event: &'static str,
        user_id: Option<&str>,
        anonymous_id: Option<&str>,
        props: Map<String, Value>,
    ) {
        let context = json!({"library": {"name": "analytics-node", "version": "2.1.2"}});
        self.emit(
            t,
            "backend",
            "track",
            Some(("event", json!(event))),
            if user_id.is_some() {
                None
            } else {
                anonymous_id
            },
            user_id,
            Some(("properties", Value::Object(props))),
            Ctx::Ready(context),
        );
    }

    // ---------------------------------------------------------------- helpers

    fn price_order(
        &mut self,
        lines: &[(usize, u32)],
        currency: &str,
        coupon_p: f64,
        pos: bool,
    ) -> Order {
        let products: Vec<Value> = lines
            .iter()
            .map(|&(p, qty)| Value::Object(self.product_obj(p, currency, Some(qty), None)))
            .collect();
        let subtotal = cents(
            lines
                .iter()
                .map(|&(p, qty)| self.catalog[p].price_in(currency) * f64::from(qty))
                .sum(),
        );
        let coupon = self
            .rng
            .gen_bool(coupon_p)
            .then(|| COUPONS.choose(&mut self.rng).unwrap());
        let discount = cents(subtotal * coupon.map_or(0.0, |c| c.1));
        let revenue = cents(subtotal - discount);
        let free_shipping = pos || revenue >= 75.0 || coupon.is_some_and(|c| c.0 == "FREESHIP");
        let shipping = if free_shipping {
            0.0
        } else if self.rng.gen_bool(0.2) {
            12.99
        } else if currency == "EUR" {
            4.99
        } else {
            6.99
        };
        // EUR prices include VAT; US sales tax is added on top.
        let tax = if currency == "EUR" {
            0.0
        } else {
            cents(revenue * 0.08)
        };
        let total = cents(revenue + shipping + tax);
        Order {
            subtotal,
            discount,
            coupon: coupon.map(|c| c.0),
            shipping,
            tax,
            revenue,
            total,
            products,
        }
    }

    fn product_obj(
        &self,
        p: usize,
        currency: &str,
        quantity: Option<u32>,
        position: Option<usize>,
    ) -> Map<String, Value> {
        let product = &self.catalog[p];
        let mut obj = Map::with_capacity(10);
        obj.insert("product_id".into(), json!(product.product_id));
        obj.insert("sku".into(), json!(product.sku));
        obj.insert("name".into(), json!(product.name));
        obj.insert("category".into(), json!(product.category));
        obj.insert("brand".into(), json!(product.brand));
        obj.insert("price".into(), json!(product.price_in(currency)));
        if let Some(quantity) = quantity {
            obj.insert("quantity".into(), json!(quantity));
        }
        if let Some(position) = position {
            obj.insert("position".into(), json!(position));
        }
        obj
    }

    fn cart_products(&self, s: &Session) -> Vec<Value> {
        s.cart
            .iter()
            .map(|&(p, qty)| Value::Object(self.product_obj(p, s.currency, Some(qty), None)))
            .collect()
    }

    fn popular_product(&mut self) -> usize {
        let u: f64 = self.rng.r#gen();
        let n = self.popularity.len();
        self.popularity[((n as f64 * u.powf(1.6)) as usize).min(n - 1)]
    }

    fn search_query(&mut self) -> String {
        let spec = CATEGORIES.choose(&mut self.rng).unwrap();
        let noun = spec.nouns.choose(&mut self.rng).unwrap();
        let query = noun.to_ascii_lowercase();
        if self.rng.gen_bool(0.2) {
            let p = self.popular_product();
            format!("{} {}", self.catalog[p].brand.to_ascii_lowercase(), query)
        } else {
            query
        }
    }

    fn email_variant(&mut self, c: usize) -> String {
        let customer = &self.customers[c];
        let plain = format!("{}@example.com", customer.email_local);
        match self.rng.gen_range(0..100) {
            0..=69 => plain,
            70..=84 => {
                let local = capitalize_dotted(&customer.email_local);
                format!("{local}@Example.com")
            }
            85..=94 => format!("  {plain} "),
            _ => plain.to_ascii_uppercase(),
        }
    }

    fn uuid(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.r#gen();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    fn hex_id(&mut self, len: usize) -> String {
        random_hex(&mut self.rng, len)
    }
}

impl Iterator for Generator {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        if self.emitted >= self.config.events {
            return None;
        }
        // Start every activity that begins no later than the earliest pending event: activities
        // only create events at or after their start, so the earliest pending event is final.
        // The output is thus a prefix of one time-ordered stream; follow-ups scheduled past the
        // cut are simply never emitted.
        while self.heap.peek().is_none_or(|p| p.t >= self.next_activity) {
            self.run_activity();
        }
        let Pending {
            mut event,
            context,
            source,
            ..
        } = self.heap.pop()?;
        let id = format!("{}{}", self.message_prefix, self.emitted);
        event.insert("messageId".into(), Value::String(id));
        event.insert("context".into(), context.into_value());
        event.insert(SOURCE_FIELD.into(), Value::String(source.into()));
        self.emitted += 1;
        Some(Value::Object(event))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.config.events - self.emitted;
        (left, Some(left))
    }
}

// -------------------------------------------------------------------- free helpers

fn order_props(
    order: &Order,
    checkout_id: &str,
    order_id: &str,
    affiliation: &str,
    currency: &str,
) -> Value {
    let mut props = Map::with_capacity(13);
    props.insert("checkout_id".into(), json!(checkout_id));
    props.insert("order_id".into(), json!(order_id));
    props.insert("affiliation".into(), json!(affiliation));
    props.insert("subtotal".into(), json!(order.subtotal));
    fill_order_fields(&mut props, order, currency);
    Value::Object(props)
}

fn fill_order_fields(props: &mut Map<String, Value>, order: &Order, currency: &str) {
    props.insert("total".into(), json!(order.total));
    props.insert("revenue".into(), json!(order.revenue));
    props.insert("shipping".into(), json!(order.shipping));
    props.insert("tax".into(), json!(order.tax));
    props.insert("discount".into(), json!(order.discount));
    if let Some(coupon) = order.coupon {
        props.insert("coupon".into(), json!(coupon));
    }
    props.insert("currency".into(), json!(currency));
    props.insert("products".into(), Value::Array(order.products.clone()));
}

fn make_device(rng: &mut ChaCha8Rng, kind: DeviceKind, home: &Place, home_ip: &str) -> Device {
    let bytes: [u8; 16] = rng.r#gen();
    let anonymous_id = uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string();
    let mut ctx = Map::new();
    let ip = if kind.is_app() && rng.gen_bool(0.5) {
        random_ip(rng)
    } else {
        home_ip.to_string()
    };
    match kind {
        DeviceKind::Desktop | DeviceKind::MobileWeb => {
            let agents = if kind == DeviceKind::Desktop {
                DESKTOP_USER_AGENTS
            } else {
                MOBILE_USER_AGENTS
            };
            ctx.insert(
                "library".into(),
                json!({"name": "analytics.js", "version": "1.74.0"}),
            );
            ctx.insert("userAgent".into(), json!(agents.choose(rng).unwrap()));
        }
        DeviceKind::Ios => {
            let (model, _name, width, height, density) = *IOS_MODELS.choose(rng).unwrap();
            let device_id = uuid::Builder::from_random_bytes(rng.r#gen())
                .into_uuid()
                .hyphenated()
                .to_string()
                .to_ascii_uppercase();
            ctx.insert(
                "app".into(),
                json!({"name": "Atrium Goods", "version": "4.12.0", "build": "412"}),
            );
            ctx.insert(
                "device".into(),
                json!({"id": device_id, "type": "ios", "model": model, "manufacturer": "Apple", "token": random_hex(rng, 64)}),
            );
            ctx.insert(
                "os".into(),
                json!({"name": "iOS", "version": IOS_VERSIONS.choose(rng).unwrap()}),
            );
            if rng.gen_bool(0.5) {
                ctx.insert(
                    "screen".into(),
                    json!({"width": width, "height": height, "density": density}),
                );
            }
            ctx.insert(
                "library".into(),
                json!({"name": "analytics-swift", "version": "1.6.2"}),
            );
        }
        DeviceKind::Android => {
            let (manufacturer, model, width, height, density) =
                *ANDROID_MODELS.choose(rng).unwrap();
            let token = format!("f{}:APA91b{}", random_hex(rng, 10), random_hex(rng, 40));
            ctx.insert(
                "app".into(),
                json!({"name": "Atrium Goods", "version": "4.11.2", "build": "4112"}),
            );
            ctx.insert(
                "device".into(),
                json!({"id": random_hex(rng, 16), "type": "android", "model": model, "manufacturer": manufacturer, "token": token}),
            );
            ctx.insert(
                "os".into(),
                json!({"name": "Android", "version": ANDROID_VERSIONS.choose(rng).unwrap()}),
            );
            if rng.gen_bool(0.5) {
                ctx.insert(
                    "screen".into(),
                    json!({"width": width, "height": height, "density": density}),
                );
            }
            ctx.insert(
                "library".into(),
                json!({"name": "analytics-kotlin", "version": "1.17.0"}),
            );
        }
    }
    if kind.is_app() && rng.gen_bool(0.3) {
        let carriers = if home.currency == "EUR" {
            CARRIERS_EU
        } else {
            CARRIERS_US
        };
        ctx.insert(
            "network".into(),
            json!({"wifi": false, "cellular": true, "carrier": carriers.choose(rng).unwrap()}),
        );
    }
    ctx.insert("locale".into(), json!(home.locale));
    ctx.insert("timezone".into(), json!(home.timezone));
    ctx.insert("ip".into(), Value::String(ip));
    if rng.gen_bool(0.3) {
        ctx.insert(
            "location".into(),
            json!({"city": home.city, "country": home.country}),
        );
    }
    Device {
        kind,
        anonymous_id,
        identified: false,
        context: Arc::new(ctx),
    }
}

fn random_ip(rng: &mut ChaCha8Rng) -> String {
    let first = *IP_FIRST_OCTETS.choose(rng).unwrap();
    format!(
        "{first}.{}.{}.{}",
        rng.gen_range(0..=255u8),
        rng.gen_range(0..=255u8),
        rng.gen_range(1..=254u8)
    )
}

fn random_hex(rng: &mut ChaCha8Rng, len: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..len)
        .map(|_| HEX[rng.gen_range(0..16)] as char)
        .collect()
}

fn weighted<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|i| i.1).sum();
    let mut pick = rng.gen_range(0..total);
    for &(item, weight) in items {
        if pick < weight {
            return item;
        }
        pick -= weight;
    }
    items[items.len() - 1].0
}

type Utm = (&'static str, &'static str, Option<&'static str>);

fn weighted3(
    rng: &mut ChaCha8Rng,
    items: &[(&'static str, &'static str, Option<&'static str>, u32)],
) -> Utm {
    let total: u32 = items.iter().map(|i| i.3).sum();
    let mut pick = rng.gen_range(0..total);
    for &(a, b, c, weight) in items {
        if pick < weight {
            return (a, b, c);
        }
        pick -= weight;
    }
    let last = items[items.len() - 1];
    (last.0, last.1, last.2)
}

fn capitalize_dotted(local: &str) -> String {
    let mut out = String::with_capacity(local.len());
    let mut upper = true;
    for c in local.chars() {
        if upper && c.is_ascii_alphabetic() {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
        if c == '.' {
            upper = true;
        }
    }
    out
}

fn format_phone(phone: &Phone, variant: u32) -> String {
    let n = &phone.number;
    match phone.country {
        "US" => match variant {
            0 => format!("+1 {}-{}-{}", phone.area, &n[..3], &n[3..]),
            1 => format!("({}) {}-{}", phone.area, &n[..3], &n[3..]),
            2 => format!("+1{}{}", phone.area, n),
            _ => format!("{}.{}.{}", phone.area, &n[..3], &n[3..]),
        },
        country => {
            let cc = match country {
                "DE" => "49",
                "FR" => "33",
                "NL" => "31",
                _ => "34",
            };
            match variant {
                0 | 1 => format!("+{cc} {} {}", phone.area, n),
                2 => format!("+{cc}{}{}", phone.area, n),
                _ => format!("0{} {}", phone.area, n),
            }
        }
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-01-01T00:00:00.000Z`.
fn format_ts(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}
