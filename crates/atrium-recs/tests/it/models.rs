use std::sync::Arc;

use atrium_recs::{
    AlsConfig, AlsModel, BuyAgain, Catalog, CatalogItem, ContentIndex, DecayedScores, EventKind,
    Interaction, ModelRegistry, Popularity, Reason, RecentlyViewed, Shopper, Solver, Trending,
    Weights, for_you,
};

const DAY: i64 = 86_400_000;

fn event(user: u32, item: u32, kind: EventKind, timestamp_ms: i64) -> Interaction {
    Interaction {
        user,
        item,
        kind,
        timestamp_ms,
        quantity: 1,
    }
}

fn shop() -> Catalog {
    Catalog::new(vec![
        CatalogItem::new("a", "shoes", 10.0),
        CatalogItem::new("b", "shoes", 20.0),
        CatalogItem::new("c", "bags", 30.0),
        CatalogItem {
            replenish_every_days: Some(30),
            ..CatalogItem::new("d", "coffee", 9.0)
        },
    ])
}

#[test]
fn decayed_scores_halve_every_half_life_and_accept_late_events() {
    let mut scores = DecayedScores::new(DAY);
    scores.add(0, 8.0, 0);
    assert!((scores.score(0, 3 * DAY) - 1.0).abs() < 1e-9);
    scores.add(0, 4.0, -DAY);
    assert!((scores.score(0, 0) - 10.0).abs() < 1e-9);
    assert_eq!(scores.score(5, 0), 0.0);
}

#[test]
fn popularity_is_time_decayed_and_per_category() {
    let catalog = shop();
    let mut popularity = Popularity::new(Weights::uniform(1.0), DAY);
    for n in 0..8 {
        popularity.observe(&event(n, 0, EventKind::ProductViewed, 0));
    }
    for n in 0..3 {
        popularity.observe(&event(n, 1, EventKind::ProductViewed, 3 * DAY));
    }
    popularity.observe(&event(0, 2, EventKind::ProductViewed, 3 * DAY));
    let now = 3 * DAY;
    let top = popularity.candidates(&catalog, None, now, 10);
    let items: Vec<u32> = top.iter().map(|c| c.item).collect();
    // Item 0: 8 views three half-lives ago = 1.0; item 1: 3.0; item 2: 1.0 (index breaks tie).
    assert_eq!(items, vec![1, 0, 2]);
    let bags = catalog.category_by_name("bags").unwrap();
    let top_bags = popularity.candidates(&catalog, Some(bags), now, 10);
    assert_eq!(top_bags.len(), 1);
    assert_eq!(
        top_bags[0].reason,
        Reason::Popular {
            category: Some("bags".into())
        }
    );
}

#[test]
fn trending_prefers_a_surge_over_steady_traffic() {
    let catalog = shop();
    let mut trending = Trending::new(Weights::uniform(1.0), DAY, 14 * DAY);
    for day in 0..28 {
        trending.observe(&event(0, 0, EventKind::ProductViewed, day * DAY));
    }
    for n in 0..5 {
        trending.observe(&event(n, 1, EventKind::ProductViewed, 27 * DAY + n as i64));
    }
    let top = trending.candidates(&catalog, None, 28 * DAY, 2);
    assert_eq!(top[0].item, 1);
    assert!(trending.trend(0, 28 * DAY) < trending.trend(1, 28 * DAY));
}

#[test]
fn recently_viewed_keeps_latest_distinct_views() {
    let mut recent = RecentlyViewed::new(2);
    recent.observe(&event(0, 1, EventKind::ProductViewed, 1));
    recent.observe(&event(0, 2, EventKind::ProductViewed, 2));
    recent.observe(&event(0, 1, EventKind::ProductViewed, 3));
    recent.observe(&event(0, 3, EventKind::OrderCompleted, 4));
    assert_eq!(recent.items(0), vec![(1, 3), (2, 2)]);
    recent.observe(&event(0, 3, EventKind::ProductClicked, 5));
    assert_eq!(recent.items(0), vec![(3, 5), (1, 3)]);
    let candidates = recent.candidates(0);
    assert_eq!(
        candidates[0].reason,
        Reason::RecentlyViewed { viewed_at_ms: 5 }
    );
    assert!(recent.items(9).is_empty());
}

#[test]
fn buy_again_suggests_due_replenishable_items() {
    let catalog = shop();
    let mut buy_again = BuyAgain::new();
    buy_again.observe(&event(0, 3, EventKind::OrderCompleted, 0));
    buy_again.observe(&event(0, 0, EventKind::OrderCompleted, 0));
    // Item 2 has no catalog interval but a learned one: bought every 10 days.
    for n in 0..3 {
        buy_again.observe(&event(
            0,
            2,
            EventKind::OrderCompleted,
            n * 10 * DAY - 20 * DAY,
        ));
    }
    assert!(
        buy_again
            .candidates(0, &catalog, 5 * DAY)
            .iter()
            .all(|c| c.item != 3)
    );
    let due = buy_again.candidates(0, &catalog, 28 * DAY);
    let items: Vec<u32> = due.iter().map(|c| c.item).collect();
    assert!(items.contains(&3), "coffee is due after 28 of 30 days");
    assert!(!items.contains(&0), "shoes are not replenishable");
    let coffee = due.iter().find(|c| c.item == 3).unwrap();
    assert_eq!(
        coffee.reason,
        Reason::BuyAgain {
            last_purchase_ms: 0,
            every_days: 30.0
        }
    );
}

#[test]
fn content_similarity_uses_shared_attributes() {
    let item = |id: &str, category: &str, brand: &str, color: &str, title: &str| CatalogItem {
        brand: Some(brand.into()),
        attributes: vec![("color".into(), color.into())],
        title: title.into(),
        ..CatalogItem::new(id, category, 50.0)
    };
    let catalog = Catalog::new(vec![
        item("a", "shoes", "acme", "red", "Trail Runner"),
        item("b", "shoes", "acme", "red", "Trail Runner Pro"),
        item("c", "shoes", "zeta", "blue", "Court Sneaker"),
        item("d", "bags", "other", "green", "Tote"),
    ]);
    let index = ContentIndex::build(&catalog);
    let similar = index.similar(0, 3);
    assert_eq!(similar[0].0, 1);
    assert!(similar.iter().all(|(item, _)| *item != 0));
    assert!(index.similarity(0, 1) > index.similarity(0, 2));
    assert!((index.similarity(0, 0) - 1.0).abs() < 1e-5);
    let candidates = index.candidates(&[0], 5);
    match &candidates[0].reason {
        Reason::SimilarTo { item, shared } => {
            assert_eq!(*item, 0);
            assert!(!shared.is_empty());
        }
        other => panic!("unexpected reason {other:?}"),
    }
}

#[test]
fn registry_swaps_versions_atomically() {
    let registry: ModelRegistry<String> = ModelRegistry::new();
    assert!(registry.current().is_none());
    assert_eq!(registry.publish("first".into()), 1);
    let held = registry.current().unwrap();
    assert_eq!(registry.publish("second".into()), 2);
    assert_eq!(held.model, "first", "readers keep their version");
    assert_eq!(registry.current().unwrap().version, 2);
    let registry = Arc::new(registry);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let registry = Arc::clone(&registry);
            scope.spawn(move || {
                for _ in 0..100 {
                    let current = registry.current().unwrap();
                    assert!(current.version >= 2);
                }
            });
        }
        for n in 0..50 {
            registry.publish(format!("m{n}"));
        }
    });
    assert_eq!(registry.current().unwrap().version, 52);
}

#[test]
fn for_you_blends_user_and_session_and_falls_back_to_nothing() {
    let data = crate::als::clustered();
    let model = AlsModel::train(
        &data,
        &AlsConfig {
            factors: 4,
            iterations: 8,
            regularization: 0.1,
            solver: Solver::Cholesky,
            threads: 1,
            ..AlsConfig::default()
        },
    )
    .unwrap();
    // A user of the first cluster browsing the second one: a strong session weight wins.
    let session = [(20u32, 3.0f32), (22, 3.0), (25, 3.0)];
    let shopper = Shopper {
        trained_user: Some(0),
        history: &[],
        session: &session,
    };
    let seen = |item: u32| data.contains(0, item) || session.iter().any(|(s, _)| *s == item);
    let long_term = for_you(&model, &shopper, 0.0, 5, seen);
    assert!(long_term.iter().all(|c| c.item < 15));
    let in_session = for_you(&model, &shopper, 0.9, 5, seen);
    assert!(in_session.iter().all(|c| c.item >= 15));
    match in_session[0].reason {
        Reason::ForYou { because_of } => {
            assert!(session.iter().any(|(s, _)| Some(*s) == because_of))
        }
        ref other => panic!("unexpected reason {other:?}"),
    }
    let anonymous = Shopper::default();
    assert!(for_you(&model, &anonymous, 0.5, 5, |_| false).is_empty());
}
