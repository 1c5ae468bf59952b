//! Identity resolution for Atrium: which unified profile does an event belong to?
//!
//! Architecture invariant: this crate performs no IO. It is pure logic over the
//! [`IdentityStore`] trait; the server implements the trait on a redb write transaction,
//! [`MemoryIdentityStore`] implements it in memory.
//!
//! The model is Segment Unify's "flat matching" with blocked values, per-kind limits,
//! a priority order and merge caps, made fully deterministic so that replaying the event
//! log into an empty store rebuilds identical profiles (ids included).
//!
//! # Extraction ([`extract_identifiers`])
//!
//! | source | identifier kind |
//! |---|---|
//! | `userId` | `user_id` |
//! | `anonymousId` | `anonymous_id` |
//! | `traits.email` (identify only) / `context.traits.email` | `email` (trimmed, lowercased, must contain `@`) |
//! | `traits.phone` (identify only) / `context.traits.phone` | `phone` (`+` and digits; `00` prefix becomes `+`; at least 7 digits) |
//! | `context.device.id` | `ios.id` / `android.id` by `context.device.type` (case-insensitive), else `device_id` |
//! | `context.device.advertisingId`, unless `adTrackingEnabled` is `false` | `ios.idfa` / `android.idfa`, else `advertising_id` |
//! | `context.device.token` | `ios.push_token` / `android.push_token`, else `push_token` |
//! | `context.externalIds[]` with `collection` `users` or absent | its `type`, value its `id` |
//! | configured custom trait keys (camelCase and snake_case spellings) | the configured kind |
//! | alias `previousId` | `user_id` if that user id is already bound, else `anonymous_id` |
//!
//! Values are trimmed; numbers become their JSON text; values over 256 characters are
//! ignored; values matching a blocked-value regex (global or per kind, matched against the
//! whole value) are reported in `blocked` and never bind. Duplicates collapse, and the
//! output is in priority order: rank, then kind, then value.
//!
//! # Resolution ([`resolve`])
//!
//! 1. Extract the event's identifiers (the *active* set) and look up the live profile of
//!    each (following redirects). Identifiers with a profile are *bound*, others *new*.
//! 2. Check the candidate match (the union of the matched profiles' identifiers and the new
//!    identifiers) against the rules, in this order, and take the first violation:
//!    - for each kind, highest priority first: the number of values of the kind (only those
//!      first seen within the limit's window before the event time, if it has one) exceeds
//!      the kind's limit **and** exceeds what the largest single matched profile already
//!      holds (a profile that is over a limit because rules were tightened keeps resolving);
//!    - merge cap: merging would give the survivor more than `max_merges_per_profile`
//!      (transitive) merges;
//!    - identifier cap: the profile would hold more than `max_identifiers_per_profile`
//!      identifiers (and more than the largest matched profile already does).
//! 3. On a violation, **demote one identifier of the event and re-match** (back to 2).
//!    The demoted identifier is the lowest-priority *contributor*: a contributor is a new
//!    identifier of the violated kind, or a bound identifier that pulls in a profile holding
//!    values of that kind (merge cap: any bound identifier; identifier cap: the new
//!    identifiers, or if there are none the bound ones). Identifiers bound to the *anchor*
//!    (the profile of the event's highest-priority identifier) are never contributors, since
//!    dropping them cannot remove the conflict. Lowest priority means greatest
//!    (rank, kind), then a new identifier before a bound one of the same kind, then greatest
//!    value. Each demotion is reported with a reason such as
//!    `user_id limit 1 reached on p_… (has user_id:abc123)`. A demoted identifier stays
//!    bound wherever it was; it is just not used for this event.
//! 4. No violation left: with no bound identifier, create `ProfileId::for_new_profile(offset)`
//!    holding the new identifiers. Otherwise the survivor is the matched profile with the
//!    smallest `created_offset`; the others are merged into it (their identifiers rebound,
//!    earliest first-seen kept, their ids and the ids they had absorbed redirected straight to
//!    the survivor, their graphs removed, one [`MergeLogEntry`] appended) and the new
//!    identifiers are added.
//!
//! Consequences, all covered by tests:
//! - Segment's documented example: profile {user_id abc123, email jane@x.com}, event
//!   {userId abc456, email jane@x.com}. The user_id count would be 2; the contributors are
//!   user_id:abc456 (new) and email:jane@x.com (pulls in the profile holding abc123); the
//!   email ranks lower and is demoted; re-matching finds nothing, so abc456 gets a new
//!   profile. The two are never merged.
//! - A 6th anonymous id arriving with the profile's user id: the user id is the anchor, the
//!   only contributor is the new anonymous id, which is demoted (not added); the event still
//!   resolves to the profile.
//! - The same rule is applied whatever the kind: if the identifier linking the event to a
//!   full profile ranks *below* the overflowing newcomer (e.g. `anonymous_id:a1` of a profile
//!   already holding 5 emails, arriving with a 6th email), the linking identifier is demoted,
//!   exactly as the email is in Segment's example, and the newcomer starts a new profile.
//! - Aliasing two different user ids (limit 1) is refused: one of them is demoted (the new
//!   one if only one is bound) and the event resolves to the other's profile.
//! - After the merge cap, events linking further profiles still resolve to one profile (the
//!   survivor-to-be keeps its identifiers; the links to other profiles are demoted).
//! - A profile is created only from identifiers nobody holds, so an event never resolves to
//!   more than one profile and profiles never share identifiers.
//!
//! Everything is deterministic: the order of identifiers, of demotions, the survivor choice
//! and new profile ids depend only on the store contents and the event. Without limit
//! conflicts the final partition is the connected components of the co-occurrence graph,
//! independent of event order.

mod extract;
mod ids;
mod resolve;
mod rules;
mod store;

pub use extract::{Extracted, MAX_VALUE_CHARS, extract_identifiers, normalize};
pub use ids::{Identifier, ProfileId};
pub use resolve::{Demotion, EventRef, Resolution, ResolveError, lookup, resolve};
pub use rules::{CompiledRules, IdentityRules, LimitRule};
pub use store::{
    IdentifierRecord, IdentityStore, MemoryIdentityStore, MergeLogEntry, ProfileGraph,
};

/// Errors in identity configuration and references.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid blocked-value regex {rule:?}{}: {source}", kind.as_ref().map(|k| format!(" for kind {k}")).unwrap_or_default())]
    InvalidRegex {
        rule: String,
        kind: Option<String>,
        #[source]
        source: regex::Error,
    },
    #[error("invalid identifier {0:?}: expected kind:value")]
    InvalidIdentifier(String),
}
