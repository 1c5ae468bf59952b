//! Property: for random exposure and conversion histories, the report's per-variation users
//! and totals equal a direct computation over the same events.

use std::collections::BTreeMap;

use atrium_results::AnalysisOptions;
use proptest::prelude::*;
use serde_json::json;

use crate::{HOUR, Harness, T0, exposure, spec, track};

#[derive(Clone, Debug)]
struct UserHistory {
    /// (variation, hour) exposures.
    exposures: Vec<(u8, i64)>,
    /// (hour, revenue) orders.
    orders: Vec<(i64, u8)>,
}

fn history() -> impl Strategy<Value = UserHistory> {
    (
        prop::collection::vec((0u8..2, 0i64..100), 0..3),
        prop::collection::vec((0i64..200, 1u8..50), 0..4),
    )
        .prop_map(|(exposures, orders)| UserHistory { exposures, orders })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn totals_match_a_direct_computation(users in prop::collection::vec(history(), 1..12)) {
        let harness = Harness::create();
        let mut events = Vec::new();
        for (index, user) in users.iter().enumerate() {
            let id = format!("u{index}");
            for (variation, hour) in &user.exposures {
                events.push(exposure(&id, "exp", &variation.to_string(), T0 + hour * HOUR));
            }
            for (hour, revenue) in &user.orders {
                events.push(track(&id, "Order Completed", T0 + hour * HOUR, json!({"revenue": *revenue as f64})));
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        harness.ingest(&events);
        let metrics = [
            ("purchase", json!({"type": "conversion", "event": "Order Completed", "window_hours": 24})),
            ("revenue", json!({"type": "sum", "event": "Order Completed", "value": "revenue"})),
        ];
        let report = harness.results(&spec("exp", &["purchase", "revenue"]), &metrics, &AnalysisOptions::default());

        let mut expected_users = [0u64; 2];
        let mut expected_conversions = [0.0; 2];
        let mut expected_revenue = [0.0; 2];
        let mut multiple = 0;
        for user in &users {
            let variations: BTreeMap<u8, ()> = user.exposures.iter().map(|(v, _)| (*v, ())).collect();
            if variations.len() > 1 {
                multiple += 1;
                continue;
            }
            let Some(first) = user.exposures.iter().map(|(_, hour)| *hour).min() else { continue };
            let arm = user.exposures[0].0 as usize;
            expected_users[arm] += 1;
            if user.orders.iter().any(|(hour, _)| *hour >= first && *hour < first + 24) {
                expected_conversions[arm] += 1.0;
            }
            expected_revenue[arm] += user
                .orders
                .iter()
                .filter(|(hour, _)| *hour >= first)
                .map(|(_, revenue)| *revenue as f64)
                .sum::<f64>();
        }
        let users_seen: Vec<u64> = report.variations.iter().map(|v| v.users).collect();
        prop_assert_eq!(users_seen, expected_users.to_vec());
        prop_assert_eq!(report.excluded.multiple_variations, multiple);
        for arm in 0..2 {
            prop_assert_eq!(report.metrics[0].variations[arm].total, expected_conversions[arm]);
            prop_assert_eq!(report.metrics[1].variations[arm].total, expected_revenue[arm]);
        }
    }
}
