//! Placements, reasons, fallbacks, rules, attribution and rebuild from the log.

use atrium_recserve::{RecError, RecRequest, RecsSettings};
use serde_json::{Value, json};

use crate::*;

fn request(body: Value) -> RecRequest {
    RecRequest::from_json(&body).expect("valid request")
}

fn ids(response: &atrium_recserve::RecResponse) -> Vec<String> {
    response.items.iter().map(|item| item.id.clone()).collect()
}

/// Three shoppers browse shoes and socks together; two orders pair shoes with laces.
fn shop() -> Fixture {
    let fixture = Fixture::new();
    fixture.put_items(&[
        item("shoe", "Apparel > Shoes", 80.0),
        item("sock", "Apparel > Socks", 5.0),
        item("lace", "Apparel > Accessories", 3.0),
        item("hat", "Apparel > Hats", 20.0),
        item("lamp", "Home > Lighting", 40.0),
    ]);
    let mut events = Vec::new();
    for (n, visitor) in ["a-1", "a-2", "a-3"].iter().enumerate() {
        let start = T0 + n as i64 * 1_000 * MINUTE;
        events.push(viewed(visitor, "shoe", start));
        events.push(viewed(visitor, "sock", start + MINUTE));
    }
    events.push(viewed("a-3", "hat", T0 + 2_000 * MINUTE + 2 * MINUTE));
    events.push(order(
        "u:buyer-1",
        "o-1",
        &["shoe", "lace"],
        T0 + 3_000 * MINUTE,
    ));
    events.push(order(
        "u:buyer-2",
        "o-2",
        &["shoe", "lace"],
        T0 + 3_100 * MINUTE,
    ));
    for n in 0..5 {
        events.push(viewed(&format!("b-{n}"), "lamp", T0 + 3_200 * MINUTE + n));
    }
    fixture.append(&events);
    fixture.sync();
    fixture
}

#[test]
fn similar_and_bought_together_say_why() {
    let fixture = shop();
    let similar = fixture
        .service
        .recommend(&request(
            json!({"placement": "similar", "item": "shoe", "k": 3}),
        ))
        .unwrap();
    assert_eq!(similar.items[0].id, "sock", "{}", similar.body);
    assert_eq!(similar.items[0].source, "covisit");
    assert_eq!(similar.items[0].reason["kind"], "viewed_together");
    assert_eq!(similar.items[0].reason["with"], "shoe");
    assert_eq!(similar.items[0].reason["sessions"], 3);
    assert!(
        !ids(&similar).contains(&"shoe".to_owned()),
        "never the seed"
    );
    assert!(
        similar
            .recommendation_id
            .starts_with("rec.similar.covisit.")
    );

    let together = fixture
        .service
        .recommend(&request(
            json!({"placement": "bought_together", "cart": ["shoe"], "k": 2}),
        ))
        .unwrap();
    assert_eq!(together.items[0].id, "lace", "{}", together.body);
    assert_eq!(together.items[0].reason["kind"], "bought_together");
    assert_eq!(together.items[0].reason["orders"], 2);
    assert!(
        together.items[0].reason["text"]
            .as_str()
            .unwrap()
            .contains("Item shoe")
    );
}

#[test]
fn out_of_stock_and_deleted_items_leave_the_next_response() {
    let fixture = shop();
    let ask = || {
        fixture
            .service
            .recommend(&request(json!({"placement": "similar", "item": "shoe"})))
            .unwrap()
    };
    assert!(ids(&ask()).contains(&"sock".to_owned()));
    let mut sock = item("sock", "Apparel > Socks", 5.0);
    sock["stock"] = json!(0);
    fixture.put_items(&[sock]);
    fixture.sync();
    assert!(!ids(&ask()).contains(&"sock".to_owned()), "out of stock");
    // Out-of-stock items are allowed when the rules say so.
    let allowed = fixture
        .service
        .recommend(&request(
            json!({"placement": "similar", "item": "shoe", "rules": {"in_stock": false}}),
        ))
        .unwrap();
    assert!(ids(&allowed).contains(&"sock".to_owned()));

    let delete = atrium_types::ControlRecord::CatalogDelete {
        ids: vec!["lace".into()],
        at: atrium_types::format_timestamp_ms(T0),
    };
    fixture
        .log
        .append(&[&atrium_types::LogRecord::encode_control(&delete)])
        .unwrap();
    fixture.sync();
    let together = fixture
        .service
        .recommend(&request(
            json!({"placement": "bought_together", "item": "shoe", "rules": {"in_stock": false}}),
        ))
        .unwrap();
    assert!(
        !ids(&together).contains(&"lace".to_owned()),
        "{}",
        together.body
    );
    assert!(fixture.service.item("lace").is_none());
    let error = fixture
        .service
        .recommend(&request(json!({"placement": "similar", "item": "lace"})))
        .unwrap_err();
    assert!(matches!(error, RecError::UnknownItem(_)), "{error}");
}

#[test]
fn cold_start_falls_back_to_popular_and_new_items_to_their_category() {
    let fixture = shop();
    let new_visitor = fixture
        .service
        .recommend(&request(
            json!({"placement": "for_you", "profile": "anonymous_id:never-seen", "k": 2}),
        ))
        .unwrap();
    assert_eq!(new_visitor.model, "als");
    assert_eq!(ids(&new_visitor), ["shoe", "lace"], "{}", new_visitor.body);
    assert!(
        new_visitor
            .items
            .iter()
            .all(|item| item.source == "popular")
    );
    assert!(new_visitor.items[0].fallback_level > 0);

    fixture.put_items(&[item("boot", "Apparel > Shoes", 90.0)]);
    fixture.sync();
    let new_item = fixture
        .service
        .recommend(&request(
            json!({"placement": "similar", "item": "boot", "k": 1}),
        ))
        .unwrap();
    assert_eq!(ids(&new_item), ["shoe"], "popular in the same category");
    assert_eq!(new_item.items[0].reason["category"], "Apparel > Shoes");
    // Once the content index covers it, content similarity explains by shared features.
    fixture.service.train(false);
    let new_item = fixture
        .service
        .recommend(&request(
            json!({"placement": "similar", "item": "boot", "k": 1}),
        ))
        .unwrap();
    assert_eq!(new_item.items[0].source, "content", "{}", new_item.body);
    assert_eq!(new_item.items[0].id, "shoe");
}

#[test]
fn recently_viewed_buy_again_and_for_you_after_training() {
    let fixture = shop();
    let recent = fixture
        .service
        .recommend(&request(
            json!({"placement": "recently_viewed", "profile": "anonymous_id:a-3"}),
        ))
        .unwrap();
    assert_eq!(ids(&recent), ["hat", "sock", "shoe"]);
    assert_eq!(recent.items[0].reason["kind"], "recently_viewed");

    let mut events = Vec::new();
    for n in 0..3 {
        events.push(order(
            "u:regular",
            &format!("r-{n}"),
            &["sock"],
            T0 + n * 7 * 24 * 60 * MINUTE,
        ));
    }
    // Later activity moves the watermark past the due date.
    events.push(viewed("b-9", "lamp", T0 + 21 * 24 * 60 * MINUTE));
    fixture.append(&events);
    fixture.sync();
    let again = fixture
        .service
        .recommend(&request(
            json!({"placement": "buy_again", "profile": "user_id:regular"}),
        ))
        .unwrap();
    assert_eq!(ids(&again), ["sock"], "{}", again.body);
    assert_eq!(again.items[0].reason["kind"], "buy_again");

    let (version, report) = fixture.service.train(true);
    assert_eq!(version, 1);
    assert!(report.profiles >= 10 && report.nonzeros > 0, "{report:?}");
    let for_you = fixture
        .service
        .recommend(&request(
            json!({"placement": "for_you", "profile": "anonymous_id:a-1", "k": 3}),
        ))
        .unwrap();
    assert_eq!(for_you.body["model_version"], 1);
    assert_eq!(for_you.items[0].source, "als", "{}", for_you.body);
    let seen = ["shoe", "sock"];
    assert!(
        for_you
            .items
            .iter()
            .filter(|i| i.source == "als")
            .all(|i| !seen.contains(&i.id.as_str())),
        "als skips what the visitor already interacted with: {}",
        for_you.body
    );
}

#[test]
fn rules_pin_boost_diversify_and_filter() {
    let fixture = shop();
    let response = fixture
        .service
        .recommend(&request(json!({
            "placement": "trending",
            "k": 4,
            "rules": {
                "pins": [{"item": "hat", "position": 0}],
                "boosts": [{"category": "Apparel", "factor": 100.0}],
                "max_per_category": 1,
                "max_price": 50.0,
            }
        })))
        .unwrap();
    let items = ids(&response);
    assert_eq!(items[0], "hat", "{}", response.body);
    assert_eq!(response.items[0].reason["kind"], "pinned");
    assert!(!items.contains(&"shoe".to_owned()), "over max_price");
    let mut categories: Vec<String> = response.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["category"].as_str().unwrap().to_owned())
        .collect();
    let before = categories.len();
    categories.dedup();
    assert_eq!(before, categories.len(), "one per category");

    let only_home = fixture
        .service
        .recommend(&request(
            json!({"placement": "trending", "rules": {"categories": ["Home"]}}),
        ))
        .unwrap();
    assert_eq!(ids(&only_home), ["lamp"]);
}

#[test]
fn bad_requests_are_named() {
    let fixture = shop();
    let cases = [
        (json!({"placement": "nope"}), "unknown placement"),
        (json!({"placement": "trending", "k": 0}), "`k`"),
        (json!({"placement": "trending", "k": 101}), "`k`"),
        (json!({"placement": "similar"}), "needs `item`"),
        (json!({"placement": "for_you"}), "needs `profile`"),
        (
            json!({"placement": "trending", "rules": {"min_price": 5, "max_price": 1}}),
            "min_price",
        ),
        (
            json!({"placement": "trending", "rules": {"colour": "red"}}),
            "unknown field",
        ),
        (
            json!({"placement": "trending", "rules": {"boosts": [{"factor": 2}]}}),
            "exactly one",
        ),
    ];
    for (body, expected) in cases {
        let error = RecRequest::from_json(&body).unwrap_err();
        assert!(error.to_string().contains(expected), "{body}: {error}");
    }
    let error = fixture
        .service
        .recommend(&request(
            json!({"placement": "for_you", "profile": "anonymous_id:a-1", "model": "covisit2"}),
        ))
        .unwrap_err();
    assert!(matches!(error, RecError::InvalidRequest(_)), "{error}");
    let error = fixture
        .service
        .recommend(&request(
            json!({"placement": "trending", "rules": {"pins": [{"item": "ghost"}]}}),
        ))
        .unwrap_err();
    assert!(matches!(error, RecError::UnknownItem(_)), "{error}");
}

#[test]
fn clicks_and_orders_carrying_the_recommendation_id_are_attributed() {
    let fixture = shop();
    let served = fixture
        .service
        .recommend(&request(json!({"placement": "similar", "item": "shoe"})))
        .unwrap();
    let id = served.recommendation_id.clone();
    fixture.append(&[
        track("a-1", "Product Clicked", json!({"product_id": "sock", "recommendation_id": id}), T0 + 4_000 * MINUTE),
        track("a-1", "Order Completed", json!({"order_id": "o-9", "revenue": 12.5, "recommendation_id": id, "products": [{"product_id": "sock", "price": 5.0}]}), T0 + 4_001 * MINUTE),
        track("a-2", "Order Completed", json!({"order_id": "o-10", "products": [{"product_id": "sock", "price": 5.0, "quantity": 2, "recommendation_id": id}, {"product_id": "hat", "price": 20.0}]}), T0 + 4_002 * MINUTE),
    ]);
    fixture.sync();
    let stats = fixture.service.stats();
    let row = stats["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["placement"] == "similar" && row["model"] == "covisit")
        .cloned()
        .unwrap();
    assert_eq!(row["impressions"], 1, "{stats}");
    assert_eq!(row["clicks"], 1);
    assert_eq!(row["ctr"], 1.0);
    assert_eq!(row["conversions"], 2);
    assert_eq!(row["revenue"], 22.5);
}

#[test]
fn state_is_rebuilt_from_the_log_and_training_is_deterministic() {
    let fixture = shop();
    fixture.service.train(true);
    let again = fixture.reopen(RecsSettings::default());
    again.catch_up().unwrap();
    again.train(true);
    for body in [
        json!({"placement": "for_you", "profile": "anonymous_id:a-2", "k": 5}),
        json!({"placement": "similar", "item": "shoe"}),
        json!({"placement": "bought_together", "item": "shoe"}),
        json!({"placement": "trending"}),
    ] {
        let first = fixture.service.recommend(&request(body.clone())).unwrap();
        let second = again.recommend(&request(body.clone())).unwrap();
        assert!(!first.items.is_empty(), "{body}");
        assert_eq!(first.items, second.items, "{body}");
    }
}

#[test]
fn a_split_assigns_each_profile_a_stable_arm() {
    let settings = RecsSettings {
        splits: vec![atrium_recserve::PlacementSplit {
            placement: "similar".into(),
            control: "covisit".into(),
            treatment: "content".into(),
            treatment_share: 0.5,
        }],
        ..RecsSettings::default()
    };
    settings.validate().unwrap();
    let fixture = Fixture::with_settings(settings);
    fixture.put_items(&[item("shoe", "Shoes", 1.0), item("boot", "Shoes", 2.0)]);
    fixture.sync();
    let mut arms = std::collections::BTreeMap::new();
    for n in 0..40 {
        let profile = format!("anonymous_id:v-{n}");
        let body = json!({"placement": "similar", "item": "shoe", "profile": profile});
        let first = fixture.service.recommend(&request(body.clone())).unwrap();
        let second = fixture.service.recommend(&request(body)).unwrap();
        assert_eq!(first.model, second.model, "stable per profile");
        assert!(
            first
                .recommendation_id
                .starts_with(&format!("rec.similar.{}.", first.model))
        );
        *arms.entry(first.model.clone()).or_insert(0) += 1;
    }
    assert_eq!(arms.len(), 2, "{arms:?}");
    let bad = RecsSettings {
        splits: vec![atrium_recserve::PlacementSplit {
            placement: "similar".into(),
            control: "covisit".into(),
            treatment: "als".into(),
            treatment_share: 0.5,
        }],
        ..RecsSettings::default()
    };
    assert!(bad.validate().unwrap_err().contains("no model `als`"));
}

/// 120 items in 6 categories; visitor `v-n` browses mostly category `n % 6`.
fn larger_shop(settings: RecsSettings) -> Fixture {
    let fixture = Fixture::with_settings(settings);
    let items: Vec<Value> = (0..120)
        .map(|n| {
            item(
                &format!("i{n}"),
                &format!("Dept > C{}", n % 6),
                10.0 + n as f64,
            )
        })
        .collect();
    fixture.put_items(&items);
    let mut events = Vec::new();
    for visitor in 0..30i64 {
        for step in 0..8i64 {
            let pick = (visitor * 7 + step * 13) % 20;
            let item = if step % 4 == 3 {
                (visitor * 11 + step) % 120
            } else {
                (visitor % 6) + 6 * pick
            };
            events.push(viewed(
                &format!("v-{visitor}"),
                &format!("i{item}"),
                T0 + visitor * 1_000 * MINUTE + step * MINUTE,
            ));
        }
    }
    fixture.append(&events);
    fixture.sync();
    fixture
}

#[test]
fn for_you_from_short_candidate_lists_follows_stock_filters_and_is_deterministic() {
    let settings = RecsSettings {
        candidates_per_profile: 6,
        ..RecsSettings::default()
    };
    let fixture = larger_shop(settings.clone());
    let (_, report) = fixture.service.train(true);
    assert_eq!(report.candidates_per_profile, 6, "{report:?}");
    assert_eq!(
        report.candidate_bytes,
        report.profiles * 6 * 4,
        "{report:?}"
    );
    let ask = |body: Value| fixture.service.recommend(&request(body)).unwrap();
    let for_you = json!({"placement": "for_you", "profile": "anonymous_id:v-4", "k": 5});
    let first = ask(for_you.clone());
    assert_eq!(first.items.len(), 5, "{}", first.body);
    assert!(
        first.items.iter().all(|i| i.source == "als"),
        "{}",
        first.body
    );
    assert!(first.items.iter().all(|i| i.reason["kind"] == "for_you"));
    assert_eq!(ask(for_you.clone()).items, first.items, "deterministic");

    // Out of stock without retraining: gone from the very next answer, which stays full.
    let top = first.items[0].id.clone();
    let n: usize = top[1..].parse().unwrap();
    let mut entry = item(&top, &format!("Dept > C{}", n % 6), 10.0 + n as f64);
    entry["stock"] = json!(0);
    fixture.put_items(&[entry]);
    fixture.sync();
    let after = ask(for_you.clone());
    assert!(!ids(&after).contains(&top), "{}", after.body);
    assert_eq!(after.items.len(), 5, "{}", after.body);

    // A category filter outside the visitor's taste: every item still from that category,
    // still ranked by ALS (the full pass covers what the candidates miss).
    let filtered = ask(
        json!({"placement": "for_you", "profile": "anonymous_id:v-4", "k": 5,
        "rules": {"categories": ["Dept > C1"], "max_price": 100.0}}),
    );
    assert_eq!(filtered.items.len(), 5, "{}", filtered.body);
    for entry in &filtered.items {
        let n: usize = entry.id[1..].parse().unwrap();
        assert_eq!(n % 6, 1, "{}", filtered.body);
        assert!(10.0 + n as f64 <= 100.0);
        assert_eq!(entry.source, "als", "{}", filtered.body);
    }

    // The same log and settings give the same lists and answers after a restart.
    let again = fixture.reopen(settings);
    again.catch_up().unwrap();
    again.train(true);
    assert_eq!(
        again.recommend(&request(for_you.clone())).unwrap().items,
        after.items
    );
}

#[test]
fn for_you_matches_the_full_pass_when_the_lists_cover_the_catalog() {
    let fixture = larger_shop(RecsSettings::default());
    fixture.service.train(true);
    for visitor in 0..30 {
        let body = json!({"placement": "for_you", "profile": format!("anonymous_id:v-{visitor}"), "k": 10});
        let two_stage = fixture.service.recommend(&request(body.clone())).unwrap();
        let exhaustive = fixture
            .service
            .recommend_with(&request(body), atrium_recserve::Retrieval::Exhaustive)
            .unwrap();
        assert_eq!(two_stage.items.len(), 10);
        assert_eq!(two_stage.items, exhaustive.items, "v-{visitor}");
    }
}

/// The HTTP API's bytes (`recommend_json`, serialized without a `Value`) are exactly the
/// response document `recommend` returns, for every placement, with rules, before and after
/// training (the recommendation id is random per call, so it is carried over).
#[test]
fn json_bytes_equal_the_response_document() {
    let fixture = shop();
    let requests = [
        json!({"placement": "similar", "item": "shoe", "k": 3}),
        json!({"placement": "bought_together", "item": "shoe"}),
        json!({"placement": "trending", "k": 4, "rules": {
            "pins": [{"item": "hat", "position": 0}],
            "boosts": [{"category": "Apparel", "factor": 100.0}],
            "max_per_category": 1,
        }}),
        json!({"placement": "recently_viewed", "profile": "anonymous_id:a-3"}),
        json!({"placement": "for_you", "profile": "anonymous_id:a-1", "k": 3}),
        json!({"placement": "for_you", "profile": "anonymous_id:new-visitor"}),
    ];
    for trained in [false, true] {
        if trained {
            fixture.service.train(true);
        }
        for body in &requests {
            let request = request(body.clone());
            let bytes = fixture.service.recommend_json(&request).unwrap();
            let sent: Value = serde_json::from_slice(&bytes).unwrap();
            let mut document = fixture.service.recommend(&request).unwrap().body;
            assert!(
                !document["items"].as_array().unwrap().is_empty(),
                "{document}"
            );
            document["recommendation_id"] = sent["recommendation_id"].clone();
            assert_eq!(
                String::from_utf8(bytes).unwrap(),
                serde_json::to_string(&document).unwrap(),
                "{body}"
            );
        }
    }
}
