//! Invariants over random shops: business-rule filters are never violated; real-time
//! co-visitation counts equal a brute-force count over the same events.

use std::collections::{BTreeMap, HashSet};

use atrium_recserve::{RecRequest, RecsSettings};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::*;

const CATEGORIES: [&str; 4] = ["A", "A > X", "B", "C > Y"];

#[derive(Clone, Debug)]
struct Shop {
    /// (category, price, stock)
    items: Vec<(usize, u32, Option<u64>)>,
    /// (visitor, item, minute)
    views: Vec<(u8, usize, u16)>,
    /// (visitor, items)
    orders: Vec<(u8, Vec<usize>)>,
}

fn arb_shop() -> impl Strategy<Value = Shop> {
    prop::collection::vec(
        (0..CATEGORIES.len(), 0u32..100, prop::option::of(0u64..3)),
        2..25,
    )
    .prop_flat_map(|items| {
        let count = items.len();
        (
            Just(items),
            prop::collection::vec((0u8..6, 0..count, 0u16..600), 0..80),
            prop::collection::vec((0u8..6, prop::collection::vec(0..count, 1..4)), 0..10),
        )
    })
    .prop_map(|(items, views, orders)| Shop {
        items,
        views,
        orders,
    })
}

fn arb_rules() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        prop::option::of(prop::sample::subsequence(CATEGORIES.to_vec(), 1..3)),
        prop::option::of(0u32..60),
        prop::option::of(40u32..120),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(1usize..3),
        prop::collection::vec(0usize..25, 0..3),
    )
        .prop_map(
            |(in_stock, categories, min, max, purchased, seen, per_category, exclude)| {
                let mut rules = json!({
                    "in_stock": in_stock,
                    "exclude_purchased": purchased,
                    "exclude_seen": seen,
                    "exclude": exclude.iter().map(|n| format!("i{n}")).collect::<Vec<_>>(),
                });
                if let Some(categories) = categories {
                    rules["categories"] = json!(categories);
                }
                if let (Some(min), Some(max)) = (min, max)
                    && min <= max
                {
                    rules["min_price"] = json!(min);
                    rules["max_price"] = json!(max);
                }
                if let Some(cap) = per_category {
                    rules["max_per_category"] = json!(cap);
                }
                rules
            },
        )
}

fn load(fixture: &Fixture, shop: &Shop) {
    let items: Vec<Value> = shop
        .items
        .iter()
        .enumerate()
        .map(|(n, (category, price, stock))| {
            let mut item = item(&format!("i{n}"), CATEGORIES[*category], f64::from(*price));
            if let Some(stock) = stock {
                item["stock"] = json!(stock);
            }
            item
        })
        .collect();
    fixture.put_items(&items);
    let mut events: Vec<Value> = shop
        .views
        .iter()
        .map(|(visitor, item, minute)| {
            viewed(
                &format!("v-{visitor}"),
                &format!("i{item}"),
                T0 + i64::from(*minute) * MINUTE,
            )
        })
        .collect();
    for (n, (visitor, lines)) in shop.orders.iter().enumerate() {
        let products: Vec<String> = lines.iter().map(|item| format!("i{item}")).collect();
        let products: Vec<&str> = products.iter().map(String::as_str).collect();
        events.push(order(
            &format!("v-{visitor}"),
            &format!("o-{n}"),
            &products,
            T0 + 700 * MINUTE,
        ));
    }
    fixture.append(&events);
    fixture.sync();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn filters_are_never_violated(shop in arb_shop(), rules in arb_rules(), placement in 0usize..6, visitor in 0u8..7, seed_item in 0usize..25, per_profile in prop_oneof![Just(300usize), 0usize..8]) {
        // Short candidate lists make `for_you` re-rank a subset of the catalog (and fall back
        // to the full pass when the filters leave too few).
        let fixture = Fixture::with_settings(RecsSettings {
            candidates_per_profile: per_profile,
            ..RecsSettings::default()
        });
        load(&fixture, &shop);
        if placement == 0 {
            fixture.service.train(true);
        }
        let seed = format!("i{}", seed_item % shop.items.len());
        let placement_name = ["for_you", "similar", "bought_together", "trending", "recently_viewed", "buy_again"][placement];
        let body = json!({
            "placement": placement_name,
            "profile": format!("anonymous_id:v-{visitor}"),
            "item": seed,
            "k": 8,
            "rules": rules,
        });
        let request = RecRequest::from_json(&body).unwrap();
        let response = fixture.service.recommend(&request).unwrap();
        let history: Vec<(usize, bool)> = shop
            .views
            .iter()
            .filter(|(v, _, _)| *v == visitor)
            .map(|(_, item, _)| (*item, false))
            .chain(shop.orders.iter().filter(|(v, _)| *v == visitor).flat_map(|(_, lines)| lines.iter().map(|item| (*item, true))))
            .collect();
        let mut per_category: BTreeMap<String, usize> = BTreeMap::new();
        let mut returned = HashSet::new();
        prop_assert!(response.items.len() <= 8);
        for entry in &response.items {
            prop_assert!(returned.insert(entry.id.clone()), "duplicate {}", entry.id);
            let n: usize = entry.id[1..].parse().unwrap();
            let (category, price, stock) = shop.items[n];
            let category = CATEGORIES[category];
            if rules["in_stock"] == true {
                prop_assert!(stock != Some(0), "out of stock {}", entry.id);
            }
            if let Some(categories) = rules["categories"].as_array() {
                prop_assert!(categories.iter().any(|c| {
                    let c = c.as_str().unwrap();
                    category == c || category.starts_with(&format!("{c} > "))
                }), "{} in {category}", entry.id);
            }
            if let Some(min) = rules["min_price"].as_f64() {
                prop_assert!(f64::from(price) >= min);
            }
            if let Some(max) = rules["max_price"].as_f64() {
                prop_assert!(f64::from(price) <= max);
            }
            let excluded: Vec<String> = rules["exclude"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            prop_assert!(!excluded.contains(&entry.id));
            if rules["exclude_seen"] == true {
                prop_assert!(!history.iter().any(|(item, _)| *item == n));
            }
            if rules["exclude_purchased"] == true {
                prop_assert!(!history.iter().any(|(item, bought)| *item == n && *bought));
            }
            if placement == 1 || placement == 2 {
                prop_assert_ne!(&entry.id, &seed);
            }
            *per_category.entry(category.to_owned()).or_default() += 1;
        }
        if let Some(cap) = rules["max_per_category"].as_u64() {
            prop_assert!(per_category.values().all(|count| *count as u64 <= cap), "{per_category:?}");
        }
    }

    #[test]
    fn co_visitation_equals_a_brute_force_count(shop in arb_shop()) {
        let fixture = Fixture::new();
        let mut shop = shop;
        // The service's session clock is per visitor and in time order.
        shop.views.sort_by_key(|(visitor, _, minute)| (*minute, *visitor));
        load(&fixture, &shop);
        let mut expected: BTreeMap<(String, String), u32> = BTreeMap::new();
        for visitor in 0u8..6 {
            let views: Vec<(usize, u16)> = shop.views.iter().filter(|(v, _, _)| *v == visitor).map(|(_, item, minute)| (*item, *minute)).collect();
            let mut session: Vec<usize> = Vec::new();
            let mut last: Option<u16> = None;
            let mut flush = |session: &mut Vec<usize>| {
                for (position, a) in session.iter().enumerate() {
                    for b in &session[..position] {
                        let (x, y) = if a < b { (a, b) } else { (b, a) };
                        *expected.entry((format!("i{x}"), format!("i{y}"))).or_default() += 1;
                    }
                }
                session.clear();
            };
            for (item, minute) in views {
                if last.is_some_and(|last| i64::from(minute - last) * MINUTE > 30 * MINUTE) {
                    flush(&mut session);
                }
                last = Some(minute);
                if !session.contains(&item) {
                    session.push(item);
                }
            }
            flush(&mut session);
        }
        let actual: BTreeMap<(String, String), u32> = fixture.service.with_live(|live| {
            live.covisit
                .counts()
                .pairs()
                .into_iter()
                .map(|((a, b), count)| {
                    let (a, b) = (live.catalog.id(a).to_owned(), live.catalog.id(b).to_owned());
                    let key = if a < b { (a, b) } else { (b, a) };
                    (key, count)
                })
                .collect()
        });
        let expected: BTreeMap<(String, String), u32> = expected
            .into_iter()
            .map(|((a, b), count)| if a < b { ((a, b), count) } else { ((b, a), count) })
            .collect();
        prop_assert_eq!(actual, expected);
    }
}
