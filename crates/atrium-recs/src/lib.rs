//! Recommendations for Atrium: interaction weighting, popularity and trending, recently viewed,
//! co-visitation and co-purchase, content similarity, implicit-feedback ALS, "for you" and
//! "buy again", two-stage retrieval (precomputed candidate lists, exact re-ranking), business
//! rules with reasons, and offline evaluation.
//!
//! Everything works on dense indices (`UserIndex`, `ItemIndex`); [`Interner`] maps the shop's
//! ids to them. The crate performs no IO: callers pass events, catalogs and matrices in.

pub mod als;
pub mod catalog;
pub mod content;
pub mod covisit;
pub mod csr;
pub mod eval;
pub mod interaction;
pub mod personal;
pub mod popularity;
pub mod recent;
pub mod registry;
pub mod retrieval;
pub mod rules;

/// Dense index of a resolved profile.
pub type UserIndex = u32;
/// Dense index of a catalog item (its position in the [`catalog::Catalog`]).
pub type ItemIndex = u32;

pub use als::{AlsConfig, AlsError, AlsModel, Solver};
pub use catalog::{Catalog, CatalogItem};
pub use content::ContentIndex;
pub use covisit::{CoOccurrence, CoOccurrenceKind, CoVisitation};
pub use csr::Csr;
pub use interaction::{
    EventKind, Interaction, InteractionLog, Interner, Weights, products_from_segment_event,
};
pub use personal::{Shopper, for_you};
pub use popularity::{DecayedScores, Popularity, Trending};
pub use recent::{BuyAgain, RecentlyViewed};
pub use registry::{ModelRegistry, Versioned};
pub use retrieval::{CandidateLists, TopK, exhaustive_top, rerank, rerank_sorted};
pub use rules::{
    Boost, Candidate, Filters, Pin, Reason, Recommendation, Request, Source, assemble,
};
