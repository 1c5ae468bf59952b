//! Population quintiles of RFM inputs: exact cut points, balanced and monotone scores.

use atrium_segments::{RfmCutPoints, RfmInputs, quintiles, rfm_quintiles, rfm_score};
use proptest::prelude::*;

/// Distinct values (cents, so sums and counts are exact) in random order.
fn distinct_values() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::btree_set(-1_000_000i64..1_000_000, 1..200).prop_flat_map(|set| {
        let values: Vec<f64> = set.into_iter().map(|cents| cents as f64 / 100.0).collect();
        Just(values).prop_shuffle()
    })
}

fn inputs() -> impl Strategy<Value = RfmInputs> {
    (0u32..400, 1u32..50, 0u32..100_000).prop_map(|(days, orders, cents)| RfmInputs {
        recency_days: f64::from(days),
        orders: f64::from(orders),
        revenue: f64::from(cents) / 100.0,
    })
}

/// How many of `values` get each score 1..=5 under quintile cut points (ascending dimension).
fn score_counts(values: &[f64]) -> [usize; 5] {
    let cuts = quintiles(values).expect("values");
    let points = RfmCutPoints {
        recency_days: [0.0; 4],
        frequency: cuts,
        monetary: cuts,
    };
    let mut counts = [0; 5];
    for value in values {
        let inputs = RfmInputs {
            recency_days: 0.0,
            orders: *value,
            revenue: *value,
        };
        let (_, frequency, monetary) = rfm_score(&points, true, &inputs);
        assert_eq!(frequency, monetary);
        counts[usize::from(frequency) - 1] += 1;
    }
    counts
}

#[test]
fn twenty_five_distinct_values_split_five_ways() {
    let values: Vec<f64> = (1..=25).map(|value| f64::from(value) * 10.0).collect();
    assert_eq!(score_counts(&values), [5; 5]);
    // Recency is descending: the most recent fifth scores 5.
    let population: Vec<RfmInputs> = (0..25)
        .map(|day| RfmInputs {
            recency_days: f64::from(day),
            orders: 1.0,
            revenue: 1.0,
        })
        .collect();
    let cuts = rfm_quintiles(&population).expect("population");
    assert_eq!(cuts.frequency, [1.0; 4]);
    let mut recency_counts = [0; 5];
    for inputs in &population {
        let (recency, frequency, monetary) = rfm_score(&cuts, true, inputs);
        assert_eq!(
            (frequency, monetary),
            (1, 1),
            "ties at every cut point stay lowest"
        );
        recency_counts[usize::from(recency) - 1] += 1;
    }
    assert_eq!(recency_counts, [5; 5]);
    let (recency, _, _) = rfm_score(&cuts, true, &population[0]);
    assert_eq!(recency, 5);
    assert_eq!(rfm_quintiles(&[]), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over distinct values each score goes to ⌊n/5⌋ or ⌈n/5⌉ values.
    #[test]
    fn scores_are_balanced_on_distinct_values(values in distinct_values()) {
        let counts = score_counts(&values);
        let n = values.len();
        prop_assert_eq!(counts.iter().sum::<usize>(), n);
        for count in counts {
            prop_assert!(
                count == n / 5 || count == n.div_ceil(5),
                "n = {}: counts {:?}", n, counts
            );
        }
    }

    /// Cut points are ascending and lie within the population's range; scores are monotone:
    /// fewer days since the last order, more orders or more revenue never lower a score.
    #[test]
    fn cut_points_are_ordered_and_scores_monotone(
        population in prop::collection::vec(inputs(), 1..100),
        a in inputs(),
        b in inputs(),
    ) {
        let cuts = rfm_quintiles(&population).expect("population");
        for (dimension, pick) in [
            (cuts.recency_days, (|inputs: &RfmInputs| inputs.recency_days) as fn(&RfmInputs) -> f64),
            (cuts.frequency, |inputs: &RfmInputs| inputs.orders),
            (cuts.monetary, |inputs: &RfmInputs| inputs.revenue),
        ] {
            prop_assert!(dimension.windows(2).all(|pair| pair[0] <= pair[1]), "{:?}", dimension);
            let low = population.iter().map(pick).fold(f64::INFINITY, f64::min);
            let high = population.iter().map(pick).fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(dimension.iter().all(|cut| (low..=high).contains(cut)), "{:?}", dimension);
        }
        let (ra, fa, ma) = rfm_score(&cuts, true, &a);
        let (rb, fb, mb) = rfm_score(&cuts, true, &b);
        for score in [ra, fa, ma, rb, fb, mb] {
            prop_assert!((1..=5).contains(&score));
        }
        if a.recency_days <= b.recency_days {
            prop_assert!(ra >= rb);
        }
        if a.orders <= b.orders {
            prop_assert!(fa <= fb);
        }
        if a.revenue <= b.revenue {
            prop_assert!(ma <= mb);
        }
    }
}
