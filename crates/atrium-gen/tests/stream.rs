use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use atrium_gen::{GenConfig, Generator, demo_sources, take_source};
use chrono::DateTime;
use serde_json::Value;

const EVENTS: usize = 20_000;

fn stream() -> &'static [Value] {
    static STREAM: OnceLock<Vec<Value>> = OnceLock::new();
    STREAM.get_or_init(|| Generator::new(GenConfig::for_events(42, EVENTS)).collect())
}

fn events_named<'a>(name: &'a str) -> impl Iterator<Item = &'static Value> + 'a {
    stream().iter().filter(move |e| e["event"] == name)
}

fn serialize(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect()
}

#[test]
fn same_seed_is_byte_identical_and_different_seeds_differ() {
    let a: Vec<Value> = Generator::new(GenConfig::for_events(9, 3_000)).collect();
    let b: Vec<Value> = Generator::new(GenConfig::for_events(9, 3_000)).collect();
    let c: Vec<Value> = Generator::new(GenConfig::for_events(10, 3_000)).collect();
    assert_eq!(serialize(&a), serialize(&b));
    assert_ne!(serialize(&a), serialize(&c));
}

#[test]
fn yields_exactly_the_requested_number_of_events() {
    for n in [0, 1, 7, 100, 2_345] {
        let generator = Generator::new(GenConfig::for_events(3, n));
        assert_eq!(generator.size_hint(), (n, Some(n)));
        assert_eq!(generator.count(), n, "events = {n}");
    }
    let config = GenConfig {
        customers: 3,
        ..GenConfig::for_events(5, 500)
    };
    assert_eq!(Generator::new(config).count(), 500);
    assert_eq!(stream().len(), EVENTS);
}

#[test]
fn timestamps_start_at_start_are_non_decreasing_and_span_the_period() {
    let config = GenConfig::for_events(42, EVENTS);
    let times: Vec<i64> = stream()
        .iter()
        .map(|e| {
            let text = e["timestamp"].as_str().expect("timestamp string");
            assert_eq!(text.len(), 24, "RFC 3339 with millis: {text}");
            assert!(text.ends_with('Z'));
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    assert_eq!(times[0], config.start.timestamp_millis());
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "timestamps go backwards"
    );
    let span_days = (times[times.len() - 1] - times[0]) as f64 / 86_400_000.0;
    assert!((40.0..75.0).contains(&span_days), "span {span_days} days");
}

#[test]
fn every_event_is_well_formed() {
    let sources: HashSet<&str> = demo_sources().iter().map(|s| s.name).collect();
    let mut ids = HashSet::new();
    for event in stream() {
        let kind = event["type"].as_str().expect("type");
        assert!(
            ["track", "page", "screen", "identify"].contains(&kind),
            "{kind}"
        );
        let id = event["messageId"].as_str().expect("messageId");
        assert!(id.starts_with("gen-42-") && id.len() < 100);
        assert!(ids.insert(id.to_string()), "duplicate messageId {id}");
        assert!(
            event["anonymousId"].is_string() || event["userId"].is_string(),
            "no identity: {event}"
        );
        if kind == "track" {
            assert!(event["event"].is_string(), "track without event: {event}");
        }
        if kind == "identify" {
            assert!(event["traits"]["email"].as_str().unwrap().contains('@'));
        }
        assert!(sources.contains(event["_source"].as_str().expect("_source")));
        assert!(event["context"]["library"]["name"].is_string());
    }
}

#[test]
fn identity_stitching_is_exercised() {
    let mut anonymous_only = HashSet::new();
    let mut stitched = 0;
    let mut devices_per_user: HashMap<&str, HashSet<&str>> = HashMap::new();
    for event in stream() {
        let anon = event["anonymousId"].as_str();
        let user = event["userId"].as_str();
        match (anon, user) {
            (Some(a), None) => {
                anonymous_only.insert(a);
            }
            (Some(a), Some(u)) if event["type"] == "identify" => {
                if anonymous_only.contains(a) {
                    stitched += 1;
                }
                devices_per_user.entry(u).or_default().insert(a);
            }
            _ => {}
        }
    }
    assert!(
        stitched > 50,
        "identifies linking earlier anonymous activity: {stitched}"
    );
    let multi = devices_per_user.values().filter(|d| d.len() >= 2).count();
    assert!(
        multi > 10,
        "users identified on two or more devices: {multi}"
    );
    // Some anonymous ids never get identified.
    let identified: HashSet<&str> = devices_per_user.values().flatten().copied().collect();
    assert!(anonymous_only.iter().any(|a| !identified.contains(a)));
}

#[test]
fn commerce_funnel_and_channels_are_present() {
    let completed: Vec<&Value> = events_named("Order Completed").collect();
    let web = completed.iter().filter(|e| e["_source"] == "web").count();
    let pos: Vec<_> = completed.iter().filter(|e| e["_source"] == "pos").collect();
    assert!(web > 0 && !pos.is_empty());
    for order in &completed {
        let props = &order["properties"];
        assert!(props["order_id"].is_string() && props["total"].is_f64());
        let products = props["products"].as_array().unwrap();
        assert!(!products.is_empty());
        for key in [
            "product_id",
            "sku",
            "name",
            "category",
            "brand",
            "price",
            "quantity",
        ] {
            assert!(!products[0][key].is_null(), "missing {key}");
        }
        assert!(["USD", "EUR"].contains(&props["currency"].as_str().unwrap()));
    }
    for sale in &pos {
        assert!(sale["userId"].is_string());
        assert!(
            sale["properties"]["affiliation"]
                .as_str()
                .unwrap()
                .starts_with("Atrium")
        );
        assert!(sale["context"]["location"]["city"].is_string());
    }
    assert!(
        completed
            .iter()
            .any(|e| e["properties"]["currency"] == "EUR")
    );
    assert!(
        completed
            .iter()
            .any(|e| e["properties"]["coupon"].is_string())
    );

    // Funnel drop-off: every step is rarer than the previous one.
    let count = |name| events_named(name).count();
    let funnel = [
        count("Product Viewed"),
        count("Product Added"),
        count("Checkout Started"),
        count("Payment Info Entered"),
        count("Order Completed") - pos.len(),
    ];
    assert!(funnel.windows(2).all(|w| w[0] > w[1]), "funnel {funnel:?}");
    assert!(count("Products Searched") > 0 && count("Product List Viewed") > 0);
    assert!(count("Cart Viewed") > 0);
    for added in events_named("Product Added") {
        assert!(added["properties"]["cart_id"].is_string());
    }
}

#[test]
fn backend_refunds_reference_earlier_orders() {
    let mut seen_orders = HashSet::new();
    let mut refunds = 0;
    for event in stream() {
        let order_id = event["properties"]["order_id"].as_str();
        match event["event"].as_str() {
            Some("Order Completed") => {
                seen_orders.insert(order_id.unwrap());
            }
            Some("Order Refunded" | "Order Updated" | "Order Cancelled") => {
                assert_eq!(event["_source"], "backend");
                assert!(
                    seen_orders.contains(order_id.unwrap()),
                    "unknown order {event}"
                );
                if event["event"] == "Order Refunded" {
                    refunds += 1;
                    assert!(event["properties"]["total"].as_f64().unwrap() > 0.0);
                    assert!(
                        !event["properties"]["products"]
                            .as_array()
                            .unwrap()
                            .is_empty()
                    );
                }
            }
            _ => {}
        }
    }
    assert!(refunds > 0);
}

#[test]
fn campaigns_email_and_app_context_are_present() {
    let mut utm = HashSet::new();
    for event in stream() {
        if let Some(campaign) = event["context"]["campaign"].as_object() {
            assert!(campaign["name"].is_string());
            utm.insert((
                campaign["source"].as_str().unwrap(),
                campaign["medium"].as_str().unwrap(),
            ));
        }
    }
    for pair in [
        ("google", "cpc"),
        ("facebook", "paid_social"),
        ("newsletter", "email"),
    ] {
        assert!(utm.contains(&pair), "missing {pair:?} in {utm:?}");
    }
    let landing = stream()
        .iter()
        .find(|e| e["type"] == "page" && e["context"]["campaign"].is_object())
        .unwrap();
    let page = &landing["context"]["page"];
    assert!(page["url"].as_str().unwrap().contains("utm_source="));
    assert!(page["path"].is_string() && page["title"].is_string());

    for name in ["Email Delivered", "Email Opened", "Email Link Clicked"] {
        let event = events_named(name)
            .next()
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(event["_source"], "email");
        assert!(event["userId"].is_string());
        assert!(event["properties"]["campaign_id"].is_string());
        assert!(event["properties"]["subject"].is_string());
    }

    let screen = stream()
        .iter()
        .find(|e| e["type"] == "screen")
        .expect("screen events");
    let device = &screen["context"]["device"];
    for key in ["id", "type", "model", "manufacturer", "token"] {
        assert!(device[key].is_string(), "device.{key} missing");
    }
    assert!(screen["context"]["app"]["version"].is_string());
    assert!(screen["context"]["os"]["name"].is_string());

    // Email normalization cases: mixed case and surrounding whitespace.
    let emails: Vec<&str> = stream()
        .iter()
        .filter_map(|e| e["traits"]["email"].as_str())
        .collect();
    assert!(emails.iter().any(|e| e.trim() != *e));
    assert!(
        emails
            .iter()
            .any(|e| e.chars().any(|c| c.is_ascii_uppercase()))
    );
}

#[test]
fn average_event_size_is_realistic() {
    let total: usize = serialize(stream()).iter().map(String::len).sum();
    let average = total as f64 / EVENTS as f64;
    assert!((250.0..900.0).contains(&average), "average {average} bytes");
}

#[test]
fn catalog_and_helpers() {
    let generator = Generator::new(GenConfig::for_events(1, 10));
    let catalog = generator.catalog();
    assert!((150..=250).contains(&catalog.len()));
    let categories: HashSet<&str> = catalog.iter().map(|p| p.category.as_str()).collect();
    assert!(categories.len() >= 5);
    assert!(catalog.iter().all(|p| (5.0..=400.0).contains(&p.price)));
    let ids: HashSet<&str> = catalog.iter().map(|p| p.product_id.as_str()).collect();
    assert_eq!(ids.len(), catalog.len());

    let mut event = Generator::new(GenConfig::for_events(1, 1)).next().unwrap();
    let sources: Vec<&str> = demo_sources().iter().map(|s| s.name).collect();
    let source = take_source(&mut event).unwrap();
    assert!(sources.contains(&source.as_str()));
    assert!(event.get("_source").is_none());

    let mut out = Vec::new();
    let written = Generator::new(GenConfig::for_events(1, 50))
        .write_jsonl(&mut out)
        .unwrap();
    assert_eq!(written, 50);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 50);
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );

    let names: Vec<&str> = demo_sources().iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["web", "ios-app", "android-app", "pos", "backend", "email"]
    );
}
