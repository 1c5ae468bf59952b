//! Answering one request: candidates from the placement's models in fallback order, business
//! rules applied by `atrium_recs::assemble`, and a reason for every item.

use std::collections::{HashMap, HashSet};

use atrium_recs::covisit::CoOccurrenceKind;
use atrium_recs::{
    AlsModel, Boost, Candidate, Filters, Interaction, ItemIndex, Pin, Reason, Recommendation,
    Request, Shopper, Source, UserIndex, assemble, exhaustive_top, rerank, rerank_sorted,
};
use serde_json::{Value, json};

use crate::catalog::normalize_category;
use crate::live::LiveState;
use crate::request::RecRequest;
use crate::train::Trained;
use crate::{Placement, RecError};

/// Weight of the current session against the long-term profile in `for_you`.
const SESSION_WEIGHT: f32 = 0.3;
const SESSION_MS: i64 = 30 * 60_000;
/// Most recent distinct items used as seeds for item-to-item models.
const MAX_SEEDS: usize = 10;

/// Who is asking: the resolved profile (if any) and the visitor keys of its identity graph.
#[derive(Clone, Debug, Default)]
pub struct Visitor {
    pub profile_id: Option<String>,
    pub users: Vec<UserIndex>,
}

/// One recommended item with its reason.
#[derive(Clone, Debug, PartialEq)]
pub struct RecItem {
    pub item: ItemIndex,
    pub id: String,
    pub score: f32,
    pub source: String,
    pub fallback_level: usize,
    pub reason: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub model: String,
    pub model_version: Option<u64>,
    pub items: Vec<RecItem>,
}

/// How `for_you` finds the items it scores with ALS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retrieval {
    /// Candidates (the profile's precomputed list, co-visitation, popular, trending) re-ranked
    /// exactly; a full pass only when the filters leave too few of them.
    #[default]
    TwoStage,
    /// Every item scored (the reference the two-stage path is measured against).
    Exhaustive,
}

struct Context<'a> {
    live: &'a LiveState,
    retrieval: Retrieval,
    trained: Option<&'a Trained>,
    filters: Filters,
    want: usize,
    history: Vec<Interaction>,
    seeds: Vec<ItemIndex>,
    category: Option<String>,
}

impl Context<'_> {
    fn allowed(&self, item: ItemIndex) -> bool {
        self.live.catalog.is_listed(item) && self.filters.allows(self.live.catalog.models(), item)
    }

    fn keep_allowed(&self, mut candidates: Vec<Candidate>) -> Vec<Candidate> {
        candidates.retain(|candidate| self.allowed(candidate.item));
        candidates
    }

    /// The first `want` allowed items of a ranked list (optionally of a category subtree).
    fn top_of_ranked(
        &self,
        ranked: &[(ItemIndex, f32)],
        category: Option<&str>,
        reason: impl Fn() -> Reason,
    ) -> Vec<Candidate> {
        let categories = category.map(|c| self.live.catalog.categories_under(c));
        let mut out = Vec::new();
        for &(item, score) in ranked {
            if out.len() >= self.want {
                break;
            }
            if let Some(categories) = &categories {
                let path = &self.live.catalog.models().item(item).category;
                if !categories.contains(path) {
                    continue;
                }
            }
            if self.allowed(item) {
                out.push(Candidate {
                    item,
                    score,
                    reason: reason(),
                });
            }
        }
        out
    }
}

/// The models a placement can use, the default first.
pub fn placement_models(placement: Placement) -> &'static [&'static str] {
    match placement {
        Placement::ForYou => &["als", "covisit", "popular"],
        Placement::Similar => &["covisit", "content", "popular"],
        Placement::BoughtTogether => &["copurchase", "covisit", "content", "popular"],
        Placement::Trending => &["trending", "popular"],
        Placement::RecentlyViewed => &["recent"],
        Placement::BuyAgain => &["buy_again"],
    }
}

fn item_index(live: &LiveState, id: &str, what: &str) -> Result<ItemIndex, RecError> {
    live.catalog
        .index(id)
        .filter(|index| live.catalog.is_listed(*index))
        .ok_or_else(|| RecError::UnknownItem(format!("{what}: no catalog item `{id}`")))
}

/// Builds the answer for `request` with `model` as the first model of the fallback chain.
pub fn recommend(
    live: &LiveState,
    trained: Option<(&Trained, u64)>,
    request: &RecRequest,
    placement: Placement,
    model: &str,
    visitor: &Visitor,
    retrieval: Retrieval,
) -> Result<Answer, RecError> {
    let rules = &request.rules;
    let catalog = &live.catalog;
    // Resolve every id first: unknown ids are the caller's mistake.
    let mut seeds: Vec<ItemIndex> = Vec::new();
    if let Some(item) = &request.item {
        seeds.push(item_index(live, item, "item")?);
    }
    for (position, id) in request.cart.iter().enumerate() {
        let index = item_index(live, id, &format!("cart[{position}]"))?;
        if !seeds.contains(&index) {
            seeds.push(index);
        }
    }
    let mut exclude: HashSet<ItemIndex> = HashSet::new();
    for id in &rules.exclude {
        // Excluding an item the catalog does not know is harmless.
        if let Some(index) = catalog.index(id) {
            exclude.insert(index);
        }
    }
    let mut boosts = Vec::with_capacity(rules.boosts.len());
    for (position, boost) in rules.boosts.iter().enumerate() {
        if let Some(category) = &boost.category {
            let categories = catalog.categories_under(category);
            for category in categories {
                boosts.push(Boost::Category {
                    category,
                    factor: boost.factor,
                });
            }
        } else if let Some(item) = &boost.item {
            boosts.push(Boost::Item {
                item: item_index(live, item, &format!("rules.boosts[{position}].item"))?,
                factor: boost.factor,
            });
        }
    }
    let mut pins = Vec::with_capacity(rules.pins.len());
    for (position, pin) in rules.pins.iter().enumerate() {
        pins.push(Pin {
            item: item_index(live, &pin.item, &format!("rules.pins[{position}].item"))?,
            position: pin.position,
        });
    }
    let mut history: Vec<Interaction> = visitor
        .users
        .iter()
        .flat_map(|user| live.history(*user).iter().copied())
        .collect();
    history.sort_by_key(|interaction| interaction.timestamp_ms);
    if rules.exclude_seen {
        exclude.extend(history.iter().map(|interaction| interaction.item));
    }
    if rules.exclude_purchased {
        exclude.extend(
            history
                .iter()
                .filter(|interaction| interaction.kind.is_purchase())
                .map(|interaction| interaction.item),
        );
    }
    // Item-to-item placements never return their own seeds.
    exclude.extend(seeds.iter().copied());
    if seeds.is_empty() {
        // For "for you": the visitor's latest distinct items.
        for interaction in history.iter().rev() {
            if seeds.len() >= MAX_SEEDS {
                break;
            }
            if !seeds.contains(&interaction.item) {
                seeds.push(interaction.item);
            }
        }
    }
    let categories = if rules.categories.is_empty() {
        None
    } else {
        let mut expanded = Vec::new();
        for category in &rules.categories {
            expanded.extend(catalog.categories_under(category));
        }
        Some(expanded)
    };
    let filters = Filters {
        in_stock_only: rules.in_stock,
        categories,
        min_price: rules.min_price,
        max_price: rules.max_price,
        exclude,
    };
    let slack = if rules.max_per_category.is_some() {
        request.k * 10
    } else {
        request.k
    };
    let category = match placement {
        Placement::Trending => request.category.as_deref().map(normalize_category),
        _ => seeds
            .first()
            .filter(|_| placement != Placement::ForYou)
            .map(|seed| catalog.models().item(*seed).category.clone())
            .filter(|category| !category.is_empty()),
    };
    let context = Context {
        live,
        retrieval,
        trained: trained.map(|(trained, _)| trained),
        filters,
        want: request.k + pins.len() + slack,
        history,
        seeds,
        category,
    };

    let mut chain: Vec<&str> = vec![model];
    chain.extend(
        placement_models(placement)
            .iter()
            .copied()
            .filter(|other| *other != model),
    );
    // Later models of the chain run only while the earlier ones leave slots to fill (their
    // candidates are already filtered, so counting distinct items is enough).
    let mut sources: Vec<Source> = Vec::new();
    let mut gathered: HashSet<ItemIndex> = HashSet::new();
    let mut explained_by: Option<Vec<ItemIndex>> = None;
    for name in chain {
        if gathered.len() >= context.want {
            break;
        }
        for source in model_sources(&context, name, visitor, &mut explained_by) {
            gathered.extend(source.candidates.iter().map(|candidate| candidate.item));
            sources.push(source);
        }
    }
    let assembled: Vec<Recommendation> = assemble(
        catalog.models(),
        &Request {
            count: request.k,
            filters: context.filters.clone(),
            boosts,
            pins,
            max_per_category: rules.max_per_category,
        },
        &sources,
    );
    let als = context
        .trained
        .and_then(|trained| trained.als.as_deref())
        .zip(explained_by.as_deref());
    let items = assembled
        .into_iter()
        .map(|mut recommendation| {
            // "Because of" is worked out only for the items returned.
            if let (Reason::ForYou { because_of }, Some((als, explained_by))) =
                (&mut recommendation.reason, als)
            {
                *because_of = als.because_of(recommendation.item, explained_by);
            }
            recommendation
        })
        .map(|recommendation| RecItem {
            item: recommendation.item,
            id: catalog.id(recommendation.item).to_owned(),
            score: if recommendation.score.is_finite() {
                recommendation.score
            } else {
                0.0
            },
            reason: reason_json(live, &recommendation.reason),
            source: recommendation.source,
            fallback_level: recommendation.fallback_level,
        })
        .collect();
    let model_version = match model {
        "als" | "content" => trained.map(|(_, version)| version),
        _ => None,
    };
    Ok(Answer {
        model: model.to_owned(),
        model_version,
        items,
    })
}

/// Candidates of one model (popular gives two sources: the seed's category, then everything).
/// ALS candidates carry `ForYou { because_of: None }`; the items that explain them are left in
/// `explained_by` for the returned items.
fn model_sources(
    context: &Context<'_>,
    model: &str,
    visitor: &Visitor,
    explained_by: &mut Option<Vec<ItemIndex>>,
) -> Vec<Source> {
    let live = context.live;
    match model {
        "als" => {
            let Some(trained) = context.trained else {
                return Vec::new();
            };
            let Some(als) = &trained.als else {
                return Vec::new();
            };
            let model_items = als.items() as ItemIndex;
            // Per item, summed in history order (a stable sort by item keeps that order).
            let mut strengths: Vec<(ItemIndex, f32)> = Vec::with_capacity(context.history.len());
            let mut session: Vec<(ItemIndex, f32)> = Vec::new();
            let last_ms = context.history.last().map(|i| i.timestamp_ms);
            for interaction in &context.history {
                if interaction.item >= model_items {
                    continue;
                }
                let weight = live.weights.weight(interaction, live.now_ms);
                strengths.push((interaction.item, weight));
                if let Some(last_ms) = last_ms
                    && live.now_ms - last_ms <= SESSION_MS
                    && last_ms - interaction.timestamp_ms <= SESSION_MS
                {
                    session.push((interaction.item, live.weights.kind_weight(interaction.kind)));
                }
            }
            let history = sum_by_item(strengths);
            let session = sum_by_item(session);
            // Training names a visitor key no profile holds after the key itself.
            let trained_user = match (&visitor.profile_id, visitor.users.as_slice()) {
                (Some(profile), _) => trained.rows.get(profile).copied(),
                (None, [user]) => live
                    .user_keys()
                    .get(*user as usize)
                    .and_then(|key| trained.rows.get(key).copied()),
                (None, _) => None,
            };
            let shopper = Shopper {
                trained_user,
                history: &history,
                session: &session,
            };
            let Some(user_vector) = blended_vector(als, &shopper) else {
                return Vec::new();
            };
            // Two stages: the profile's precomputed list plus live candidates, re-ranked
            // exactly with the blended vector; seen items are skipped; the (costlier) filters
            // run on the short list, and in a full pass over every item only when the
            // candidates leave too few.
            let mut seen: Vec<ItemIndex> = context.history.iter().map(|i| i.item).collect();
            seen.sort_unstable();
            seen.dedup();
            let is_seen = |item: ItemIndex| seen.binary_search(&item).is_ok();
            let margin = context.want * 4 + 20;
            let (short_list, pool_is_catalog) = match context.retrieval {
                Retrieval::TwoStage => {
                    let trained_list =
                        trained_user.map_or(&[][..], |row| trained.candidates.of(row));
                    // The pool's buffers are reused by the thread's next request.
                    SCRATCH.with_borrow_mut(|scratch| {
                        candidate_pool(context, trained_list, model_items, scratch);
                        let pool = &scratch.pool;
                        let short_list = rerank_sorted(als, &user_vector, pool, margin, is_seen);
                        (short_list, pool.len() >= model_items as usize)
                    })
                }
                Retrieval::Exhaustive => {
                    let pool = (0..model_items).collect();
                    (rerank(als, &user_vector, pool, margin, is_seen), true)
                }
            };
            let exhausted = short_list.len() < margin;
            let mut ranked: Vec<(ItemIndex, f32)> = short_list
                .into_iter()
                .filter(|(item, _)| context.allowed(*item))
                .collect();
            if ranked.len() < context.want && !(exhausted && pool_is_catalog) {
                ranked = exhaustive_top(als, &user_vector, context.want, |item| {
                    is_seen(item) || !context.allowed(item)
                });
            }
            let mut explaining: Vec<ItemIndex> = shopper.session.iter().map(|(i, _)| *i).collect();
            explaining.extend(shopper.history.iter().map(|(i, _)| *i));
            *explained_by = Some(explaining);
            let candidates = ranked
                .into_iter()
                .map(|(item, score)| Candidate {
                    item,
                    score,
                    reason: Reason::ForYou { because_of: None },
                })
                .collect();
            vec![Source::new("als", candidates)]
        }
        "covisit" => {
            let candidates = live.covisit.counts().candidates(
                &context.seeds,
                1,
                CoOccurrenceKind::ViewedTogether,
            );
            vec![Source::new("covisit", context.keep_allowed(candidates))]
        }
        "copurchase" => {
            let candidates =
                live.copurchase
                    .candidates(&context.seeds, 1, CoOccurrenceKind::BoughtTogether);
            vec![Source::new("copurchase", context.keep_allowed(candidates))]
        }
        "content" => {
            let Some(trained) = context.trained else {
                return Vec::new();
            };
            let seeds: Vec<ItemIndex> = context
                .seeds
                .iter()
                .copied()
                .filter(|seed| (*seed as usize) < trained.content_items)
                .collect();
            let candidates = trained.content.candidates(&seeds, context.want * 3);
            vec![Source::new("content", context.keep_allowed(candidates))]
        }
        "popular" => {
            let mut sources = Vec::new();
            if let Some(category) = &context.category {
                let candidates =
                    context.top_of_ranked(&live.popular_ranked, Some(category), || {
                        Reason::Popular {
                            category: Some(category.clone()),
                        }
                    });
                sources.push(Source::new("popular", candidates));
            }
            let candidates = context.top_of_ranked(&live.popular_ranked, None, || {
                Reason::Popular { category: None }
            });
            sources.push(Source::new("popular", candidates));
            sources
        }
        "trending" => {
            let category = context.category.as_deref();
            let candidates =
                context.top_of_ranked(&live.trending_ranked, category, || Reason::Trending {
                    category: category.map(str::to_owned),
                });
            vec![Source::new("trending", candidates)]
        }
        "recent" => {
            let mut viewed: Vec<(ItemIndex, i64)> = visitor
                .users
                .iter()
                .flat_map(|user| live.recent.items(*user))
                .collect();
            viewed.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut seen = HashSet::new();
            viewed.retain(|(item, _)| seen.insert(*item));
            let count = viewed.len() as f32;
            let candidates = viewed
                .into_iter()
                .enumerate()
                .map(|(rank, (item, viewed_at_ms))| Candidate {
                    item,
                    score: count - rank as f32,
                    reason: Reason::RecentlyViewed { viewed_at_ms },
                })
                .collect();
            vec![Source::new("recent", context.keep_allowed(candidates))]
        }
        "buy_again" => {
            let mut best: HashMap<ItemIndex, Candidate> = HashMap::new();
            for user in &visitor.users {
                for candidate in
                    live.buy_again
                        .candidates(*user, live.catalog.models(), live.now_ms)
                {
                    match best.get(&candidate.item) {
                        Some(existing) if existing.score >= candidate.score => {}
                        _ => {
                            best.insert(candidate.item, candidate);
                        }
                    }
                }
            }
            let mut candidates: Vec<Candidate> = best.into_values().collect();
            candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
            vec![Source::new("buy_again", context.keep_allowed(candidates))]
        }
        _ => Vec::new(),
    }
}

/// Co-visitation neighbours taken per recent item as `for_you` candidates.
const COVISIT_PER_SEED: usize = 50;
/// Popular items taken per category (of recent items and of the request's filter).
const POPULAR_PER_CATEGORY: usize = 50;
/// Globally popular and trending items taken as candidates.
const GLOBAL_CANDIDATES: usize = 100;

/// The first stage of `for_you`: the profile's precomputed list (its best items by the trained
/// vector) ∪ co-visitation neighbours of the recent items ∪ the popular items of their
/// categories and of the categories the request filters on ∪ popular and trending overall.
/// Sorted, without duplicates, only items the model knows; left in `scratch.pool`.
fn candidate_pool(
    context: &Context<'_>,
    trained_list: &[ItemIndex],
    model_items: ItemIndex,
    scratch: &mut Scratch,
) {
    let live = context.live;
    let models = live.catalog.models();
    let Scratch { pool, related } = scratch;
    pool.clear();
    pool.extend_from_slice(trained_list);
    let mut categories: Vec<u32> = Vec::new();
    for &seed in &context.seeds {
        live.covisit
            .counts()
            .related_top_into(seed, 1, COVISIT_PER_SEED, related);
        pool.extend(related.iter().map(|(item, _, _)| *item));
        if (seed as usize) < models.len() {
            categories.push(models.category_index(seed));
        }
    }
    if let Some(filtered) = &context.filters.categories {
        categories.extend(
            filtered
                .iter()
                .filter_map(|name| models.category_by_name(name)),
        );
    }
    categories.sort_unstable();
    categories.dedup();
    for category in categories {
        if let Some(items) = live.popular_by_category.get(&category) {
            pool.extend(items.iter().take(POPULAR_PER_CATEGORY));
        }
    }
    for ranked in [&live.popular_ranked, &live.trending_ranked] {
        pool.extend(ranked.iter().take(GLOBAL_CANDIDATES).map(|(item, _)| *item));
    }
    pool.retain(|item| *item < model_items);
    pool.sort_unstable();
    pool.dedup();
    // A thread keeps at most this much for the next request.
    related.clear();
    related.shrink_to(4_096);
}

/// Per-thread buffers of the first stage (request threads are pooled and reused).
#[derive(Default)]
struct Scratch {
    pool: Vec<ItemIndex>,
    related: Vec<(ItemIndex, u32, f32)>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// `(item, value)` pairs summed per item (in their order, from 0.0 like a map's default),
/// sorted by item.
fn sum_by_item(mut pairs: Vec<(ItemIndex, f32)>) -> Vec<(ItemIndex, f32)> {
    pairs.sort_by_key(|(item, _)| *item);
    let mut out: Vec<(ItemIndex, f32)> = Vec::with_capacity(pairs.len());
    for (item, value) in pairs {
        match out.last_mut() {
            Some((last, sum)) if *last == item => *sum += value,
            _ => out.push((item, 0.0 + value)),
        }
    }
    out
}

/// The shopper's vector: `(1 − w) u + w s` of the long-term vector (trained, or folded in from
/// the history) and the session folded in, as `atrium_recs::for_you` blends them.
fn blended_vector(als: &AlsModel, shopper: &Shopper<'_>) -> Option<Vec<f32>> {
    let long_term = match shopper.trained_user {
        Some(user) if user < als.users() => Some(als.user_vector(user).to_vec()),
        _ if !shopper.history.is_empty() => Some(als.fold_in(shopper.history)),
        _ => None,
    };
    let session = (!shopper.session.is_empty()).then(|| als.fold_in(shopper.session));
    match (long_term, session) {
        (Some(user), Some(session)) => Some(
            user.iter()
                .zip(&session)
                .map(|(u, s)| (1.0 - SESSION_WEIGHT) * u + SESSION_WEIGHT * s)
                .collect(),
        ),
        (Some(user), None) => Some(user),
        (None, Some(session)) => Some(session),
        (None, None) => None,
    }
}

/// A reason as JSON: its kind, the facts, and a sentence for people.
pub fn reason_json(live: &LiveState, reason: &Reason) -> Value {
    let catalog = &live.catalog;
    let name = |item: ItemIndex| -> String {
        catalog
            .item(item)
            .map_or_else(|| catalog.id(item).to_owned(), |i| i.name.clone())
    };
    match reason {
        Reason::Popular { category } => json!({
            "kind": "popular",
            "category": category,
            "text": match category {
                Some(category) => format!("popular in {category}"),
                None => "popular right now".to_owned(),
            },
        }),
        Reason::Trending { category } => json!({
            "kind": "trending",
            "category": category,
            "text": match category {
                Some(category) => format!("trending in {category}"),
                None => "trending".to_owned(),
            },
        }),
        Reason::RecentlyViewed { viewed_at_ms } => json!({
            "kind": "recently_viewed",
            "viewed_at": atrium_types::format_timestamp_ms(*viewed_at_ms),
            "text": "you viewed this recently",
        }),
        Reason::BoughtTogether { with, orders } => json!({
            "kind": "bought_together",
            "with": catalog.id(*with),
            "orders": orders,
            "text": format!("bought together with {} in {orders} orders", name(*with)),
        }),
        Reason::ViewedTogether { with, sessions } => json!({
            "kind": "viewed_together",
            "with": catalog.id(*with),
            "sessions": sessions,
            "text": format!("viewed together with {} in {sessions} sessions", name(*with)),
        }),
        Reason::SimilarTo { item, shared } => json!({
            "kind": "similar_to",
            "with": catalog.id(*item),
            "shared": shared,
            "text": format!("similar to {} ({})", name(*item), shared.join(", ")),
        }),
        Reason::ForYou { because_of } => json!({
            "kind": "for_you",
            "because_of": because_of.map(|item| catalog.id(item).to_owned()),
            "text": match because_of {
                Some(item) => format!("because you showed interest in {}", name(*item)),
                None => "matches your tastes".to_owned(),
            },
        }),
        Reason::BuyAgain {
            last_purchase_ms,
            every_days,
        } => json!({
            "kind": "buy_again",
            "last_purchase": atrium_types::format_timestamp_ms(*last_purchase_ms),
            "every_days": every_days,
            "text": format!("you buy this about every {} days", every_days.round()),
        }),
        Reason::Pinned => json!({"kind": "pinned", "text": "pinned by a business rule"}),
    }
}
