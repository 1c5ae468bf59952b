use std::collections::{BTreeMap, HashMap};

use atrium_recs::{CoOccurrence, CoOccurrenceKind, CoVisitation, Reason};
use proptest::prelude::*;

/// Brute force: split each user's events into sessions at gaps > `gap`, take each session's
/// first `max_items` distinct items, and count every unordered pair and every item.
fn brute_force(
    events: &[(u32, u32, i64)],
    gap: i64,
    max_items: usize,
) -> (BTreeMap<(u32, u32), u32>, HashMap<u32, u32>) {
    let mut by_user: BTreeMap<u32, Vec<(u32, i64)>> = BTreeMap::new();
    for &(user, item, at) in events {
        by_user.entry(user).or_default().push((item, at));
    }
    let mut sessions: Vec<Vec<u32>> = Vec::new();
    for (_, user_events) in by_user {
        let mut current: Vec<u32> = Vec::new();
        let mut last: Option<i64> = None;
        for (item, at) in user_events {
            if last.is_some_and(|l| at - l > gap) {
                sessions.push(std::mem::take(&mut current));
            }
            last = Some(at);
            current.push(item);
        }
        sessions.push(current);
    }
    let mut pairs = BTreeMap::new();
    let mut items = HashMap::new();
    for session in sessions {
        let mut distinct: Vec<u32> = Vec::new();
        for item in session {
            if !distinct.contains(&item) {
                distinct.push(item);
            }
        }
        distinct.truncate(max_items);
        for a in &distinct {
            *items.entry(*a).or_insert(0) += 1;
            for b in &distinct {
                if a < b {
                    *pairs.entry((*a, *b)).or_insert(0) += 1;
                }
            }
        }
    }
    (pairs, items)
}

proptest! {
    #[test]
    fn co_visitation_counts_equal_brute_force(
        raw in prop::collection::vec((0u32..4, 0u32..9, 0i64..40), 0..120),
        gap in 10i64..60,
        max_items in 1usize..7,
    ) {
        // Time only moves forward, so every user's events are in order.
        let mut clock = 0i64;
        let events: Vec<(u32, u32, i64)> = raw
            .into_iter()
            .map(|(user, item, step)| {
                clock += step;
                (user, item, clock)
            })
            .collect();
        let mut model = CoVisitation::new(gap, max_items);
        for &(user, item, at) in &events {
            model.observe(user, item, at);
        }
        let (pairs, items) = brute_force(&events, gap, max_items);
        prop_assert_eq!(model.counts().pairs(), pairs.clone());
        for (&(a, b), &count) in &pairs {
            prop_assert_eq!(model.counts().count(a, b), count);
            prop_assert_eq!(model.counts().count(b, a), count);
        }
        for item in 0..9 {
            prop_assert_eq!(model.counts().item_count(item), items.get(&item).copied().unwrap_or(0));
        }
    }

    #[test]
    fn co_purchase_counts_equal_brute_force(
        baskets in prop::collection::vec(prop::collection::vec(0u32..12, 0..6), 0..40),
    ) {
        let mut model = CoOccurrence::new();
        for basket in &baskets {
            model.observe_basket(basket);
        }
        let mut expected: BTreeMap<(u32, u32), u32> = BTreeMap::new();
        for basket in &baskets {
            for a in 0..12u32 {
                for b in (a + 1)..12 {
                    if basket.contains(&a) && basket.contains(&b) {
                        *expected.entry((a, b)).or_insert(0) += 1;
                    }
                }
            }
        }
        prop_assert_eq!(model.pairs(), expected);
    }

    /// The partial selection returns exactly the first `limit` entries of the full ranking
    /// (cosine, then count, then index), which is itself sorted and complete.
    #[test]
    fn related_top_is_a_prefix_of_related(
        baskets in prop::collection::vec(prop::collection::vec(0u32..30, 0..8), 0..60),
        item in 0u32..30,
        min_count in 1u32..3,
        limit in 0usize..35,
    ) {
        let mut model = CoOccurrence::new();
        for basket in &baskets {
            model.observe_basket(basket);
        }
        let full = model.related(item, min_count);
        for pair in full.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            prop_assert!(a.2 > b.2 || (a.2 == b.2 && (a.1 > b.1 || (a.1 == b.1 && a.0 < b.0))));
        }
        let expected_len = (0..30u32)
            .filter(|other| *other != item && model.count(item, *other) >= min_count)
            .count();
        prop_assert_eq!(full.len(), expected_len);
        let top = model.related_top(item, min_count, limit);
        prop_assert_eq!(top.as_slice(), &full[..limit.min(full.len())]);
    }
}

#[test]
fn bought_together_ranks_by_cosine_and_explains() {
    let mut model = CoOccurrence::new();
    for _ in 0..5 {
        model.observe_basket(&[1, 2]);
    }
    model.observe_basket(&[1, 3]);
    for _ in 0..20 {
        model.observe_basket(&[3, 4]);
    }
    let related = model.related(1, 1);
    assert_eq!(related[0].0, 2);
    assert_eq!(related[0].1, 5);
    let candidates = model.candidates(&[1], 1, CoOccurrenceKind::BoughtTogether);
    assert_eq!(candidates[0].item, 2);
    assert_eq!(
        candidates[0].reason,
        Reason::BoughtTogether { with: 1, orders: 5 }
    );
    assert!(candidates.iter().all(|c| c.item != 1));
    assert!(model.related(1, 2).iter().all(|(item, _, _)| *item != 3));
}

#[test]
fn idle_sessions_are_closed() {
    let mut model = CoVisitation::new(100, 10);
    model.observe(1, 1, 0);
    model.observe(1, 2, 50);
    model.close_idle_sessions(1_000);
    model.observe(1, 3, 1_001);
    assert_eq!(model.counts().count(1, 2), 1);
    assert_eq!(model.counts().count(2, 3), 0);
}
