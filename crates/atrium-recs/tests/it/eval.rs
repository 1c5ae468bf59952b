use std::collections::HashSet;

use atrium_recs::Csr;
use atrium_recs::eval::{
    average_precision_at_k, evaluate, ndcg_at_k, popularity_scores, precision_at_k, random_split,
    recall_at_k, recommend_unseen, temporal_split,
};
use atrium_recs::{EventKind, Interaction};

fn relevant(items: &[u32]) -> HashSet<u32> {
    items.iter().copied().collect()
}

fn close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
}

/// Hand-computed: ranked [1, 2, 3, 4, 5], relevant {1, 3, 9}, k = 5.
#[test]
fn metrics_match_hand_computed_values() {
    let ranked = [1, 2, 3, 4, 5];
    let rel = relevant(&[1, 3, 9]);
    close(precision_at_k(&ranked, &rel, 5), 2.0 / 5.0);
    close(recall_at_k(&ranked, &rel, 5), 2.0 / 3.0);
    // DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/log2(4).
    let idcg = 1.0 + 1.0 / 3f64.log2() + 0.5;
    close(ndcg_at_k(&ranked, &rel, 5), 1.5 / idcg);
    // AP = (1/1 + 2/3) / min(5, 3).
    close(
        average_precision_at_k(&ranked, &rel, 5),
        (1.0 + 2.0 / 3.0) / 3.0,
    );
}

#[test]
fn metrics_edge_cases() {
    let rel = relevant(&[7]);
    close(ndcg_at_k(&[7, 1, 2], &rel, 3), 1.0);
    close(ndcg_at_k(&[1, 7, 2], &rel, 3), 1.0 / 3f64.log2());
    close(ndcg_at_k(&[1, 2, 7], &rel, 2), 0.0);
    close(average_precision_at_k(&[1, 7], &rel, 2), 0.5);
    close(precision_at_k(&[7], &rel, 10), 0.1);
    close(recall_at_k(&[], &rel, 10), 0.0);
    close(ndcg_at_k(&[1], &HashSet::new(), 10), 0.0);
    // Perfect ranking with more relevant items than k.
    let many = relevant(&[1, 2, 3, 4]);
    close(ndcg_at_k(&[1, 2], &many, 2), 1.0);
    close(average_precision_at_k(&[1, 2], &many, 2), 1.0);
    close(recall_at_k(&[1, 2], &many, 2), 0.5);
}

#[test]
fn evaluate_averages_over_users_with_test_items_and_reports_coverage() {
    // User 0 relevant {0}, user 1 none, user 2 relevant {1, 2}.
    let test = Csr::from_triplets(3, 4, &[(0, 0, 1.0), (2, 1, 1.0), (2, 2, 1.0)]);
    let metrics = evaluate(&test, 4, 2, |user| match user {
        0 => vec![0, 3],
        2 => vec![3, 1],
        _ => unreachable!("user without test items is skipped"),
    });
    assert_eq!(metrics.users, 2);
    close(metrics.precision, (0.5 + 0.5) / 2.0);
    close(metrics.recall, (1.0 + 0.5) / 2.0);
    let user2_ndcg = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
    close(metrics.ndcg, (1.0 + user2_ndcg) / 2.0);
    close(metrics.map, (1.0 + 0.5 / 2.0) / 2.0);
    close(metrics.coverage, 3.0 / 4.0);
}

#[test]
fn popularity_baseline_excludes_seen_items() {
    let train = Csr::from_triplets(
        3,
        4,
        &[
            (0, 0, 1.0),
            (1, 0, 1.0),
            (2, 0, 1.0),
            (1, 1, 1.0),
            (2, 1, 1.0),
            (2, 2, 1.0),
        ],
    );
    let scores = popularity_scores(&train);
    assert_eq!(scores, vec![3.0, 2.0, 1.0, 0.0]);
    assert_eq!(recommend_unseen(&scores, &train, 0, 2), vec![1, 2]);
    assert_eq!(recommend_unseen(&scores, &train, 2, 2), vec![3]);
}

fn interactions(count: u32) -> Vec<Interaction> {
    (0..count)
        .map(|n| Interaction {
            user: n % 7,
            item: (n * 13) % 11,
            kind: EventKind::ProductViewed,
            timestamp_ms: i64::from(n) * 1000,
            quantity: 1,
        })
        .collect()
}

#[test]
fn random_split_is_deterministic_and_keeps_pairs_together() {
    let all = interactions(200);
    let a = random_split(&all, 0.2, 7);
    let b = random_split(&all, 0.2, 7);
    assert_eq!(a, b);
    assert_ne!(a, random_split(&all, 0.2, 8));
    assert_eq!(a.train.len() + a.test.len(), all.len());
    let train_pairs: HashSet<(u32, u32)> = a.train.iter().map(|i| (i.user, i.item)).collect();
    assert!(
        a.test
            .iter()
            .all(|i| !train_pairs.contains(&(i.user, i.item)))
    );
    let test_pairs: HashSet<(u32, u32)> = a.test.iter().map(|i| (i.user, i.item)).collect();
    let all_pairs: HashSet<(u32, u32)> = all.iter().map(|i| (i.user, i.item)).collect();
    let expected = (all_pairs.len() as f64 * 0.2).round() as usize;
    assert_eq!(test_pairs.len(), expected);
}

#[test]
fn temporal_split_puts_the_latest_interactions_in_test() {
    let all = interactions(100);
    let split = temporal_split(&all, 0.25);
    let latest_train = split.train.iter().map(|i| i.timestamp_ms).max().unwrap();
    let earliest_test = split.test.iter().map(|i| i.timestamp_ms).min().unwrap();
    assert!(latest_train < earliest_test);
    assert_eq!(split.train.len(), 75);
    let train_pairs: HashSet<(u32, u32)> = split.train.iter().map(|i| (i.user, i.item)).collect();
    assert!(
        split
            .test
            .iter()
            .all(|i| !train_pairs.contains(&(i.user, i.item)))
    );
}
