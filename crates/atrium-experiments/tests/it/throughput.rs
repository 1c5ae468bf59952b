//! A quick evaluation-throughput probe for iterating on this crate alone (the published numbers
//! come from `atrium bench eval`, which also runs GrowthBook's Python SDK in the same run). The
//! payload has the same shape as the bench's: 50 features (30 with 1–3 targeted force rules, 20
//! running an experiment, some behind a force rule), conditions over 10 attributes.
//!
//! ```sh
//! cargo test --release -p atrium-experiments --test it throughput -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::time::Instant;

use atrium_experiments::{CompiledPayload, Context, Payload, eval_feature};
use serde_json::{Map, Value, json};

/// splitmix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const COUNTRIES: [&str; 8] = ["US", "GB", "FR", "DE", "ES", "IT", "BR", "JP"];
const PLANS: [&str; 3] = ["free", "pro", "enterprise"];
const BROWSERS: [&str; 4] = ["chrome", "safari", "firefox", "edge"];
const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
const LANGUAGES: [&str; 5] = ["en", "fr", "de", "es", "pt"];

fn condition(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => {
            json!({"country": {"$in": [rng.pick(&COUNTRIES), rng.pick(&COUNTRIES), rng.pick(&COUNTRIES)]}})
        }
        1 => json!({"plan": rng.pick(&PLANS)}),
        2 => json!({"age": {"$gte": 18 + rng.below(42)}}),
        3 => json!({"browser": {"$ne": rng.pick(&BROWSERS)}}),
        4 => json!({"device": rng.pick(&DEVICES)}),
        5 => json!({"appVersion": {"$vgte": format!("1.{}.0", rng.below(8))}}),
        6 => json!({"loggedIn": true}),
        7 => json!({"orders": {"$gt": rng.below(10)}}),
        8 => json!({"language": {"$nin": [rng.pick(&LANGUAGES), rng.pick(&LANGUAGES)]}}),
        _ => json!({"company": {"$exists": true}}),
    }
}

fn combined_condition(rng: &mut Rng) -> Value {
    let parts: Vec<Value> = (0..1 + rng.below(3)).map(|_| condition(rng)).collect();
    if parts.len() > 1 && rng.below(10) < 3 {
        json!({"$or": parts})
    } else {
        let mut merged = Map::new();
        for part in parts {
            if let Value::Object(map) = part {
                merged.extend(map);
            }
        }
        Value::Object(merged)
    }
}

fn features(rng: &mut Rng) -> Value {
    let mut features = Map::new();
    for index in 0..30 {
        let rules: Vec<Value> = (0..1 + rng.below(3))
            .map(|rule| json!({"condition": combined_condition(rng), "force": rule + 1}))
            .collect();
        features.insert(
            format!("flag-{index:02}"),
            json!({"defaultValue": 0, "rules": rules}),
        );
    }
    for index in 0..20 {
        let mut rules = Vec::new();
        if rng.below(10) < 3 {
            rules.push(json!({"condition": condition(rng), "force": "forced"}));
        }
        let arms = 2 + rng.below(2) as usize;
        let coverage = [1.0, 0.9, 0.8][rng.below(3) as usize];
        rules.push(json!({
            "key": format!("exp-{index:02}"),
            "condition": condition(rng),
            "coverage": coverage,
            "variations": (0..arms).map(|arm| format!("v{arm}")).collect::<Vec<_>>(),
            "weights": vec![1.0 / arms as f64; arms],
            "hashAttribute": "id",
            "hashVersion": 2,
            "meta": (0..arms).map(|arm| json!({"key": arm.to_string()})).collect::<Vec<_>>(),
        }));
        features.insert(
            format!("experiment-{index:02}"),
            json!({"defaultValue": "v0", "rules": rules}),
        );
    }
    Value::Object(features)
}

fn user(rng: &mut Rng, index: usize) -> Value {
    let mut user = json!({
        "id": format!("user-{index}"),
        "country": rng.pick(&COUNTRIES),
        "plan": rng.pick(&PLANS),
        "age": 16 + rng.below(64),
        "browser": rng.pick(&BROWSERS),
        "device": rng.pick(&DEVICES),
        "appVersion": format!("1.{}.{}", rng.below(10), rng.below(20)),
        "loggedIn": rng.below(10) < 6,
        "orders": rng.below(30),
        "language": rng.pick(&LANGUAGES),
    });
    if rng.below(10) < 2 {
        user["company"] = json!("Acme");
    }
    user
}

#[test]
#[ignore = "a throughput probe; run with --release --ignored --nocapture"]
fn throughput() {
    let users_count: usize = std::env::var("EVAL_USERS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000);
    let mut rng = Rng(7);
    let payload: Payload = serde_json::from_value(json!({"features": features(&mut rng)})).unwrap();
    let compiled = Arc::new(CompiledPayload::new(Arc::new(payload)));
    let keys: Vec<String> = compiled.payload().features.keys().cloned().collect();
    let users: Vec<Value> = (0..users_count)
        .map(|index| user(&mut rng, index))
        .collect();

    // EVAL_API=evaluate: `CompiledPayload::evaluate` + `take_exposures` (shared results);
    // otherwise `eval_feature` + `take_tracking_calls` (owned results).
    let shared = std::env::var("EVAL_API").is_ok_and(|api| api == "evaluate");
    let started = Instant::now();
    let mut in_experiment = 0usize;
    let mut exposures = 0usize;
    for user in users {
        let mut context = Context::with_compiled(compiled.clone(), user);
        if shared {
            for key in &keys {
                let result = compiled.evaluate(&mut context, key);
                in_experiment += usize::from(result.experiment_result.is_some());
            }
            exposures += context.take_exposures().len();
        } else {
            for key in &keys {
                let result = eval_feature(&mut context, key);
                in_experiment += usize::from(result.experiment_result.is_some());
            }
            exposures += context.take_tracking_calls().len();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let rate = (users_count * keys.len()) as f64 / seconds;
    println!(
        "{} {rate:.0} evaluations/s ({seconds:.2} s; {in_experiment} experiment results, {exposures} exposures)",
        if shared { "evaluate" } else { "eval_feature" }
    );
    assert!(in_experiment > 0 && exposures == in_experiment);
}
