//! "For you": the user's long-term factors blended with what they do in the current session.

use crate::ItemIndex;
use crate::als::AlsModel;
use crate::rules::{Candidate, Reason};

/// What we know about the shopper asking.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shopper<'a> {
    /// Row in the trained model, if the user existed at training time.
    pub trained_user: Option<usize>,
    /// `(item, strength)` interactions since training (or all of them for a user the model
    /// does not know); folded in when `trained_user` is `None`.
    pub history: &'a [(ItemIndex, f32)],
    /// `(item, strength)` interactions of the current session.
    pub session: &'a [(ItemIndex, f32)],
}

/// Scores items with `(1 − w) u + w s`, where `u` is the user's vector (trained, or folded in
/// from `history`) and `s` the session folded in; with only one of them, that one. Returns
/// nothing when neither exists: the caller's fallback chain takes over (cold start).
pub fn for_you(
    model: &AlsModel,
    shopper: &Shopper<'_>,
    session_weight: f32,
    count: usize,
    exclude: impl Fn(ItemIndex) -> bool,
) -> Vec<Candidate> {
    let long_term: Option<Vec<f32>> = match shopper.trained_user {
        Some(user) if user < model.users() => Some(model.user_vector(user).to_vec()),
        _ if !shopper.history.is_empty() => Some(model.fold_in(shopper.history)),
        _ => None,
    };
    let session: Option<Vec<f32>> =
        (!shopper.session.is_empty()).then(|| model.fold_in(shopper.session));
    let blended = match (long_term, session) {
        (Some(user), Some(session)) => {
            let weight = session_weight.clamp(0.0, 1.0);
            user.iter()
                .zip(&session)
                .map(|(u, s)| (1.0 - weight) * u + weight * s)
                .collect()
        }
        (Some(user), None) => user,
        (None, Some(session)) => session,
        (None, None) => return Vec::new(),
    };
    // Explanations prefer the session (what the shopper is doing now).
    let mut context: Vec<ItemIndex> = shopper.session.iter().map(|(item, _)| *item).collect();
    context.extend(shopper.history.iter().map(|(item, _)| *item));
    model
        .recommend(&blended, count, exclude)
        .into_iter()
        .map(|(item, score)| Candidate {
            item,
            score,
            reason: Reason::ForYou {
                because_of: model.because_of(item, &context),
            },
        })
        .collect()
}
