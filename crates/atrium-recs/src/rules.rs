//! Business rules applied to model candidates: filters, boosts, pins, category diversity and a
//! fallback chain. Every returned item carries the reason it was chosen.

use std::collections::{HashMap, HashSet};

use crate::ItemIndex;
use crate::catalog::Catalog;

/// Why an item was recommended.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    Popular {
        category: Option<String>,
    },
    Trending {
        category: Option<String>,
    },
    RecentlyViewed {
        viewed_at_ms: i64,
    },
    BoughtTogether {
        with: ItemIndex,
        orders: u32,
    },
    ViewedTogether {
        with: ItemIndex,
        sessions: u32,
    },
    SimilarTo {
        item: ItemIndex,
        shared: Vec<String>,
    },
    /// Matrix factorization; `because_of` is the history or session item it is closest to.
    ForYou {
        because_of: Option<ItemIndex>,
    },
    BuyAgain {
        last_purchase_ms: i64,
        every_days: f32,
    },
    Pinned,
}

/// An item a model proposes, with its score (higher is better, only comparable within one
/// source) and reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub item: ItemIndex,
    pub score: f32,
    pub reason: Reason,
}

/// Candidates from one model, in the order of the fallback chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub name: String,
    pub candidates: Vec<Candidate>,
}

impl Source {
    pub fn new(name: &str, candidates: Vec<Candidate>) -> Source {
        Source {
            name: name.to_owned(),
            candidates,
        }
    }
}

/// Hard constraints: an item that fails any of them is never returned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filters {
    pub in_stock_only: bool,
    /// Allowed categories; `None` allows all.
    pub categories: Option<Vec<String>>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    /// E.g. items already purchased or already seen, the current product, the cart.
    pub exclude: HashSet<ItemIndex>,
}

impl Filters {
    pub fn allows(&self, catalog: &Catalog, item: ItemIndex) -> bool {
        if item as usize >= catalog.len() || self.exclude.contains(&item) {
            return false;
        }
        let entry = catalog.item(item);
        if self.in_stock_only && !entry.in_stock {
            return false;
        }
        if let Some(categories) = &self.categories
            && !categories.contains(&entry.category)
        {
            return false;
        }
        if self.min_price.is_some_and(|min| entry.price < min) {
            return false;
        }
        if self.max_price.is_some_and(|max| entry.price > max) {
            return false;
        }
        true
    }
}

/// Multiplies candidate scores (within their source) before ranking.
#[derive(Clone, Debug, PartialEq)]
pub enum Boost {
    Category { category: String, factor: f32 },
    Item { item: ItemIndex, factor: f32 },
}

/// Puts `item` at `position` (0-based) if it passes the filters.
#[derive(Clone, Debug, PartialEq)]
pub struct Pin {
    pub item: ItemIndex,
    pub position: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    pub count: usize,
    pub filters: Filters,
    pub boosts: Vec<Boost>,
    pub pins: Vec<Pin>,
    /// At most this many items per category; `None` for no limit.
    pub max_per_category: Option<usize>,
}

/// One returned item.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    pub item: ItemIndex,
    pub score: f32,
    pub reason: Reason,
    /// The source in the fallback chain it came from ("pin" for pins).
    pub source: String,
    /// 0 for the first source of the chain, 1 for the first fallback, and so on.
    pub fallback_level: usize,
}

/// Fills `request.count` slots: pinned items at their positions, then candidates from each
/// source in turn (boosted, ranked by score within the source) until full. Items that fail the
/// filters, duplicates, and items over the per-category cap are skipped.
pub fn assemble(catalog: &Catalog, request: &Request, sources: &[Source]) -> Vec<Recommendation> {
    let count = request.count;
    let mut taken: HashSet<ItemIndex> = HashSet::new();
    let mut per_category: HashMap<u32, usize> = HashMap::new();
    let cap = request.max_per_category.unwrap_or(usize::MAX);

    let mut pins: Vec<&Pin> = request
        .pins
        .iter()
        .filter(|pin| request.filters.allows(catalog, pin.item))
        .collect();
    pins.sort_by_key(|pin| (pin.position, pin.item));
    let mut pinned: Vec<(usize, Recommendation)> = Vec::new();
    for pin in pins {
        if pinned.len() >= count || !taken.insert(pin.item) {
            continue;
        }
        *per_category
            .entry(catalog.category_index(pin.item))
            .or_default() += 1;
        pinned.push((
            pin.position,
            Recommendation {
                item: pin.item,
                score: f32::INFINITY,
                reason: Reason::Pinned,
                source: "pin".to_owned(),
                fallback_level: 0,
            },
        ));
    }

    let mut ranked: Vec<Recommendation> = Vec::new();
    let free_slots = count - pinned.len();
    for (level, source) in sources.iter().enumerate() {
        if ranked.len() >= free_slots {
            break;
        }
        let mut boosted: Vec<(f32, &Candidate)> = source
            .candidates
            .iter()
            .filter(|candidate| !candidate.score.is_nan())
            .map(|candidate| {
                (
                    candidate.score * boost_factor(catalog, &request.boosts, candidate.item),
                    candidate,
                )
            })
            .collect();
        boosted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.item.cmp(&b.1.item)));
        for (score, candidate) in boosted {
            if ranked.len() >= free_slots {
                break;
            }
            if taken.contains(&candidate.item) || !request.filters.allows(catalog, candidate.item) {
                continue;
            }
            let category = catalog.category_index(candidate.item);
            let in_category = per_category.entry(category).or_default();
            if *in_category >= cap {
                continue;
            }
            *in_category += 1;
            taken.insert(candidate.item);
            ranked.push(Recommendation {
                item: candidate.item,
                score,
                reason: candidate.reason.clone(),
                source: source.name.clone(),
                fallback_level: level,
            });
        }
    }

    // Merge pins into their positions.
    let mut out = Vec::with_capacity(pinned.len() + ranked.len());
    let mut ranked = ranked.into_iter();
    let mut pinned = pinned.into_iter().peekable();
    loop {
        if let Some((position, _)) = pinned.peek()
            && *position <= out.len()
        {
            let (_, pin) = pinned.next().expect("peeked");
            out.push(pin);
            continue;
        }
        match ranked.next() {
            Some(recommendation) => out.push(recommendation),
            None => break,
        }
    }
    // Pins beyond the filled length go last, in order.
    out.extend(pinned.map(|(_, pin)| pin));
    out
}

fn boost_factor(catalog: &Catalog, boosts: &[Boost], item: ItemIndex) -> f32 {
    let mut factor = 1.0;
    for boost in boosts {
        match boost {
            Boost::Category {
                category,
                factor: category_factor,
            } => {
                if (item as usize) < catalog.len() && catalog.item(item).category == *category {
                    factor *= category_factor;
                }
            }
            Boost::Item {
                item: boosted,
                factor: item_factor,
            } => {
                if *boosted == item {
                    factor *= item_factor;
                }
            }
        }
    }
    factor
}
