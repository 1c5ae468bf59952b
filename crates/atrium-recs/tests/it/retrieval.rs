//! Two-stage retrieval: exact re-ranking agrees with the exhaustive scorer whenever the true
//! top-k are candidates, and the precomputed lists are each user's true best items.

use std::collections::HashSet;

use atrium_recs::{AlsModel, CandidateLists, ItemIndex, exhaustive_top, rerank};
use proptest::prelude::*;

/// Factors that are small multiples of ½: every product and sum is exact in `f32`, so scores
/// tie often and do not depend on summation order.
fn arb_model(max_users: usize, max_items: usize) -> impl Strategy<Value = AlsModel> {
    (1usize..6, 1..max_users, 1..max_items).prop_flat_map(|(factors, users, items)| {
        (
            prop::collection::vec(-3i8..=3, users * factors),
            prop::collection::vec(-3i8..=3, items * factors),
        )
            .prop_map(move |(user_values, item_values)| {
                let half =
                    |values: Vec<i8>| values.into_iter().map(|v| f32::from(v) * 0.5).collect();
                AlsModel::from_factors(factors, half(user_values), half(item_values), 0.1, 2.0)
                    .expect("consistent shapes")
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Candidates = the exhaustive top-k plus arbitrary extra items (duplicates and indices
    /// past the catalog included): re-ranking returns exactly the exhaustive list.
    #[test]
    fn rerank_equals_exhaustive_when_the_top_k_are_candidates(
        model in arb_model(4, 300),
        user in 0usize..4,
        count in 0usize..15,
        extra in prop::collection::vec(0u32..320, 0..60),
        skipped in prop::collection::vec(0u32..300, 0..20),
    ) {
        let user_vector = model.user_vector(user % model.users()).to_vec();
        let skipped: HashSet<ItemIndex> = skipped.into_iter().collect();
        let skip = |item: ItemIndex| skipped.contains(&item);
        let exhaustive = exhaustive_top(&model, &user_vector, count, skip);
        prop_assert!(exhaustive.len() <= count);
        let mut candidates: Vec<ItemIndex> = exhaustive.iter().map(|(item, _)| *item).collect();
        candidates.extend(extra.iter().copied());
        candidates.extend(exhaustive.iter().map(|(item, _)| *item));
        let reranked = rerank(&model, &user_vector, candidates, count, skip);
        prop_assert_eq!(reranked, exhaustive);
    }

    /// When the true top-k are *not* all candidates, re-ranking still returns only candidates,
    /// never a skipped item, best first, and never more than asked.
    #[test]
    fn rerank_keeps_to_the_candidates(
        model in arb_model(3, 200),
        count in 0usize..12,
        candidates in prop::collection::vec(0u32..220, 0..40),
        skipped in prop::collection::vec(0u32..200, 0..20),
    ) {
        let user_vector = model.user_vector(0).to_vec();
        let skipped: HashSet<ItemIndex> = skipped.into_iter().collect();
        let reranked = rerank(&model, &user_vector, candidates.clone(), count, |item| skipped.contains(&item));
        prop_assert!(reranked.len() <= count);
        let allowed: HashSet<ItemIndex> = candidates
            .iter()
            .copied()
            .filter(|item| (*item as usize) < model.items() && !skipped.contains(item))
            .collect();
        prop_assert_eq!(reranked.len(), count.min(allowed.len()));
        for pair in reranked.windows(2) {
            prop_assert!(pair[0].1 > pair[1].1 || (pair[0].1 == pair[1].1 && pair[0].0 < pair[1].0));
        }
        for (item, score) in &reranked {
            prop_assert!(allowed.contains(item));
            prop_assert_eq!(*score, model.item_factors()[*item as usize * model.factors()..][..model.factors()]
                .iter()
                .zip(&user_vector)
                .map(|(a, b)| a * b)
                .sum::<f32>());
        }
    }

    /// Each precomputed list is the user's exhaustive top `per_user`; re-ranking a list with any
    /// `s` skipped items returns the exhaustive top-k whenever `k + s ≤ per_user`.
    #[test]
    fn candidate_lists_hold_each_users_true_top_items(
        model in arb_model(150, 120),
        per_user in 0usize..40,
        threads in 1usize..4,
        count in 0usize..10,
        skipped in prop::collection::vec(0u32..120, 0..10),
    ) {
        let lists = CandidateLists::build(&model, per_user, threads);
        prop_assert_eq!(lists.users(), model.users());
        prop_assert_eq!(lists.per_user(), per_user.min(model.items()));
        let skipped: HashSet<ItemIndex> = skipped.into_iter().collect();
        for user in 0..model.users() {
            let user_vector = model.user_vector(user).to_vec();
            let best: Vec<ItemIndex> = exhaustive_top(&model, &user_vector, lists.per_user(), |_| false)
                .into_iter()
                .map(|(item, _)| item)
                .collect();
            prop_assert_eq!(lists.of(user), best.as_slice());
            if count + skipped.len() <= lists.per_user() {
                let skip = |item: ItemIndex| skipped.contains(&item);
                prop_assert_eq!(
                    rerank(&model, &user_vector, lists.of(user).to_vec(), count, skip),
                    exhaustive_top(&model, &user_vector, count, skip)
                );
            }
        }
        prop_assert!(lists.of(model.users()).is_empty());
    }
}

/// Arbitrary (inexact) factors: the lists do not depend on how many threads computed them.
#[test]
fn candidate_lists_do_not_depend_on_the_thread_count() {
    let factors = 16;
    let (users, items) = (700, 5_000);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let user_factors: Vec<f32> = (0..users * factors).map(|_| next()).collect();
    let item_factors: Vec<f32> = (0..items * factors).map(|_| next()).collect();
    let model = AlsModel::from_factors(factors, user_factors, item_factors, 0.1, 2.0).unwrap();
    let one = CandidateLists::build(&model, 200, 1);
    let three = CandidateLists::build(&model, 200, 3);
    assert_eq!(one, three);
    assert_eq!(one.bytes(), users * 200 * 4);
    // Inexact scores: the list agrees with the exhaustive scorer up to rounding-level ties.
    let user_vector = model.user_vector(5).to_vec();
    let exhaustive: Vec<ItemIndex> = exhaustive_top(&model, &user_vector, 10, |_| false)
        .into_iter()
        .map(|(item, _)| item)
        .collect();
    let reranked: Vec<ItemIndex> = rerank(&model, &user_vector, one.of(5).to_vec(), 10, |_| false)
        .into_iter()
        .map(|(item, _)| item)
        .collect();
    assert_eq!(reranked, exhaustive);
}
