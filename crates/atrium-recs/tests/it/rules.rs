use std::collections::{HashMap, HashSet};

use atrium_recs::{
    Boost, Candidate, Catalog, CatalogItem, Filters, Pin, Reason, Request, Source, assemble,
};
use proptest::prelude::*;

fn catalog(specs: &[(&str, f64, bool)]) -> Catalog {
    Catalog::new(
        specs
            .iter()
            .enumerate()
            .map(|(i, (category, price, in_stock))| CatalogItem {
                in_stock: *in_stock,
                ..CatalogItem::new(&format!("p{i}"), category, *price)
            })
            .collect(),
    )
}

fn candidates(items: &[(u32, f32)]) -> Vec<Candidate> {
    items
        .iter()
        .map(|&(item, score)| Candidate {
            item,
            score,
            reason: Reason::Popular { category: None },
        })
        .collect()
}

#[test]
fn fallback_chain_fills_after_filters_and_records_level() {
    let catalog = catalog(&[
        ("shoes", 50.0, true),
        ("shoes", 80.0, false),
        ("bags", 120.0, true),
        ("bags", 30.0, true),
        ("hats", 20.0, true),
    ]);
    let request = Request {
        count: 3,
        filters: Filters {
            in_stock_only: true,
            max_price: Some(100.0),
            ..Filters::default()
        },
        ..Request::default()
    };
    let personal = Source::new("for_you", candidates(&[(1, 0.9), (2, 0.8), (0, 0.7)]));
    let popular = Source::new("popular", candidates(&[(0, 10.0), (4, 9.0), (3, 8.0)]));
    let out = assemble(&catalog, &request, &[personal, popular]);
    let items: Vec<(u32, &str, usize)> = out
        .iter()
        .map(|r| (r.item, r.source.as_str(), r.fallback_level))
        .collect();
    assert_eq!(
        items,
        vec![(0, "for_you", 0), (4, "popular", 1), (3, "popular", 1)]
    );
}

#[test]
fn boosts_pins_and_diversity() {
    let catalog = catalog(&[
        ("shoes", 10.0, true),
        ("shoes", 10.0, true),
        ("shoes", 10.0, true),
        ("bags", 10.0, true),
        ("hats", 10.0, true),
    ]);
    let source = Source::new(
        "model",
        candidates(&[(0, 1.0), (1, 0.9), (2, 0.8), (3, 0.5), (4, 0.1)]),
    );
    let request = Request {
        count: 4,
        boosts: vec![Boost::Category {
            category: "hats".into(),
            factor: 6.0,
        }],
        pins: vec![Pin {
            item: 2,
            position: 1,
        }],
        max_per_category: Some(2),
        ..Request::default()
    };
    let out = assemble(&catalog, &request, &[source]);
    let items: Vec<u32> = out.iter().map(|r| r.item).collect();
    // Pin 2 at position 1; boosted hat (0.6) beats the bag (0.5); shoes capped at 2 (0 and pin).
    assert_eq!(items, vec![0, 2, 4, 3]);
    assert_eq!(out[1].reason, Reason::Pinned);
}

/// Catalog rows `(category, price, in stock)`, a request, and candidate lists per source.
type Scenario = (Vec<(u8, u16, bool)>, Request, Vec<Vec<(u32, f32)>>);

fn arb_request() -> impl Strategy<Value = Scenario> {
    let catalog = prop::collection::vec((0u8..4, 1u16..200, any::<bool>()), 1..30);
    catalog.prop_flat_map(|items| {
        let n = items.len() as u32;
        let filters = (
            any::<bool>(),
            prop::option::of(prop::collection::vec(0u8..4, 1..3)),
            prop::option::of(1u16..100),
            prop::option::of(50u16..200),
            prop::collection::hash_set(0..n, 0..5),
        );
        let request = (
            0usize..12,
            filters,
            prop::collection::vec((0..n, 0usize..12), 0..3),
            prop::option::of(1usize..4),
            prop::collection::vec((0u8..4, 0.1f32..5.0), 0..2),
        );
        let sources =
            prop::collection::vec(prop::collection::vec((0..n + 3, -1.0f32..1.0), 0..20), 0..4);
        (Just(items), request, sources).prop_map(
            |(items, (count, f, pins, cap, boosts), sources)| {
                let request = Request {
                    count,
                    filters: Filters {
                        in_stock_only: f.0,
                        categories: f.1.map(|cs| cs.iter().map(|c| format!("c{c}")).collect()),
                        min_price: f.2.map(f64::from),
                        max_price: f.3.map(f64::from),
                        exclude: f.4,
                    },
                    pins: pins
                        .into_iter()
                        .map(|(item, position)| Pin { item, position })
                        .collect(),
                    max_per_category: cap,
                    boosts: boosts
                        .into_iter()
                        .map(|(c, factor)| Boost::Category {
                            category: format!("c{c}"),
                            factor,
                        })
                        .collect(),
                };
                (items, request, sources)
            },
        )
    })
}

proptest! {
    #[test]
    fn filters_are_never_violated((items, request, sources) in arb_request()) {
        let catalog = Catalog::new(
            items
                .iter()
                .enumerate()
                .map(|(i, (c, price, in_stock))| CatalogItem {
                    in_stock: *in_stock,
                    ..CatalogItem::new(&format!("p{i}"), &format!("c{c}"), f64::from(*price))
                })
                .collect(),
        );
        let sources: Vec<Source> = sources
            .iter()
            .enumerate()
            .map(|(i, c)| Source::new(&format!("s{i}"), candidates(c)))
            .collect();
        let out = assemble(&catalog, &request, &sources);
        prop_assert!(out.len() <= request.count);
        let mut seen = HashSet::new();
        let mut per_category: HashMap<u32, usize> = HashMap::new();
        for recommendation in &out {
            prop_assert!(request.filters.allows(&catalog, recommendation.item));
            prop_assert!(seen.insert(recommendation.item), "duplicate {}", recommendation.item);
            if recommendation.reason != Reason::Pinned {
                *per_category.entry(catalog.category_index(recommendation.item)).or_default() += 1;
            }
        }
        if let Some(cap) = request.max_per_category {
            prop_assert!(per_category.values().all(|n| *n <= cap));
        }
        // Deterministic.
        prop_assert_eq!(out, assemble(&catalog, &request, &sources));
    }
}
