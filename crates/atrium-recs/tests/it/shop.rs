//! End to end on the generated shop's Segment stream: parse, attribute, model, rules, evaluate.

use atrium_gen::{GenConfig, Generator};
use atrium_recs::eval::{evaluate, popularity_scores, recommend_unseen, temporal_split};
use atrium_recs::{
    AlsConfig, AlsModel, Catalog, CatalogItem, CoOccurrence, CoOccurrenceKind, CoVisitation, Csr,
    EventKind, Filters, InteractionLog, Popularity, Request, Solver, Source, Weights, assemble,
};
use serde_json::Value;

pub struct Shop {
    pub log: InteractionLog,
    pub catalog: Catalog,
    pub baskets: Vec<Vec<u32>>,
}

/// Profile key: `userId` if present, else `anonymousId` (identity resolution is not applied
/// here; the pipeline would pass the resolved profile id).
pub fn shop(seed: u64, events: usize) -> Shop {
    let mut generator = Generator::new(GenConfig::for_events(seed, events));
    let products = generator.catalog().to_vec();
    let mut log = InteractionLog::new();
    // Intern the catalog first so item indices are catalog positions.
    for product in &products {
        log.items.intern(&product.product_id);
    }
    let catalog = Catalog::new(
        products
            .iter()
            .map(|p| CatalogItem {
                title: p.name.clone(),
                brand: Some(p.brand.clone()),
                ..CatalogItem::new(&p.product_id, &p.category, p.price)
            })
            .collect(),
    );
    let mut baskets = Vec::new();
    for event in generator.by_ref() {
        let profile = ["userId", "anonymousId"]
            .iter()
            .find_map(|key| event.get(*key).and_then(Value::as_str).map(str::to_owned));
        let (Some(profile), Some(timestamp)) =
            (profile, event.get("timestamp").and_then(Value::as_str))
        else {
            continue;
        };
        let Ok(at) = chrono::DateTime::parse_from_rfc3339(timestamp) else {
            continue;
        };
        let added = log.ingest_segment(&profile, at.timestamp_millis(), &event);
        if added
            .first()
            .is_some_and(|i| i.kind == EventKind::OrderCompleted)
        {
            baskets.push(added.iter().map(|i| i.item).collect());
        }
    }
    Shop {
        log,
        catalog,
        baskets,
    }
}

#[test]
fn generated_shop_end_to_end() {
    let shop = shop(11, 6_000);
    let interactions = &shop.log.interactions;
    assert!(interactions.len() > 1_000, "{}", interactions.len());
    assert_eq!(
        shop.log.items.len(),
        shop.catalog.len(),
        "orders only name catalog items"
    );
    assert!(!shop.baskets.is_empty());

    let mut co_purchase = CoOccurrence::new();
    for basket in &shop.baskets {
        co_purchase.observe_basket(basket);
    }
    let mut co_view = CoVisitation::new(30 * 60_000, 50);
    let mut popularity = Popularity::new(Weights::default(), 7 * 86_400_000);
    let mut sorted = interactions.clone();
    sorted.sort_by_key(|i| i.timestamp_ms);
    for interaction in &sorted {
        popularity.observe(interaction);
        if interaction.kind.is_view() {
            co_view.observe(interaction.user, interaction.item, interaction.timestamp_ms);
        }
    }
    let now = sorted.last().unwrap().timestamp_ms;

    // A product page: bought together, then viewed together, then popular in stock.
    let mut catalog = shop.catalog.clone();
    catalog.set_in_stock(3, false);
    let seed_item = shop
        .baskets
        .iter()
        .find(|b| b.len() > 1)
        .map_or(0, |b| b[0]);
    let request = Request {
        count: 8,
        filters: Filters {
            in_stock_only: true,
            exclude: [seed_item].into_iter().collect(),
            ..Filters::default()
        },
        max_per_category: Some(3),
        ..Request::default()
    };
    let sources = [
        Source::new(
            "bought_together",
            co_purchase.candidates(&[seed_item], 1, CoOccurrenceKind::BoughtTogether),
        ),
        Source::new(
            "viewed_together",
            co_view
                .counts()
                .candidates(&[seed_item], 1, CoOccurrenceKind::ViewedTogether),
        ),
        Source::new("popular", popularity.candidates(&catalog, None, now, 50)),
    ];
    let page = assemble(&catalog, &request, &sources);
    assert_eq!(page.len(), 8);
    assert!(page.iter().all(|r| r.item != seed_item && r.item != 3));
    assert_eq!(page[0].source, "bought_together");

    // Offline evaluation on a temporal split, popularity baseline alongside.
    let split = temporal_split(interactions, 0.2);
    let (users, items) = (shop.log.users.len(), shop.catalog.len());
    let train = Csr::from_interactions(users, items, &split.train, &Weights::default(), now);
    let test = Csr::from_interactions(users, items, &split.test, &Weights::uniform(1.0), now);
    let popular = popularity_scores(&train);
    let baseline = evaluate(&test, items, 10, |user| {
        recommend_unseen(&popular, &train, user, 10)
    });
    let model = AlsModel::train(
        &train,
        &AlsConfig {
            factors: 16,
            iterations: 6,
            solver: Solver::ConjugateGradient { steps: 3 },
            ..AlsConfig::default()
        },
    )
    .unwrap();
    let als = evaluate(&test, items, 10, |user| {
        model
            .recommend(model.user_vector(user), 10, |item| {
                train.contains(user, item)
            })
            .into_iter()
            .map(|(item, _)| item)
            .collect()
    });
    assert!(baseline.users > 0 && baseline.users == als.users);
    for metrics in [&baseline, &als] {
        for value in [
            metrics.precision,
            metrics.recall,
            metrics.ndcg,
            metrics.map,
            metrics.coverage,
        ] {
            assert!((0.0..=1.0).contains(&value), "{metrics:?}");
        }
    }
    assert!(als.coverage > baseline.coverage);
}
