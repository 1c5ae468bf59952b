//! Identifier and profile id value types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::IdentityError;

/// One identifier of a person: a kind (`user_id`, `email`, `anonymous_id`, `ios.id`, ...)
/// and a normalized value. Displayed and parsed as `kind:value`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    pub kind: String,
    pub value: String,
}

impl Identifier {
    /// Builds an identifier from a kind and an (already normalized) value.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Self {
        Identifier {
            kind: kind.into(),
            value: value.into(),
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

impl FromStr for Identifier {
    type Err = IdentityError;

    /// Parses `kind:value`, splitting at the first `:` (values may contain colons).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((kind, value)) if !kind.is_empty() => Ok(Identifier::new(kind, value)),
            _ => Err(IdentityError::InvalidIdentifier(s.to_string())),
        }
    }
}

/// The id of a unified profile, e.g. `p_3c8a0d1f9e2b4a67`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProfileId(pub String);

impl ProfileId {
    /// The id of the profile created by the event at log `offset`: `p_` followed by 16
    /// lowercase hex digits of `splitmix64(offset)`. Deterministic (a replay of the log gives
    /// identical ids) and injective (two offsets never share an id).
    pub fn for_new_profile(offset: u64) -> Self {
        ProfileId::derive(offset, 0)
    }

    /// `attempt` 0 is [`ProfileId::for_new_profile`]; later attempts are only used if the store
    /// already holds a profile (or a redirect) under the derived id, which a correct log never
    /// produces. Still deterministic.
    pub(crate) fn derive(offset: u64, attempt: u64) -> Self {
        let mixed = if attempt == 0 {
            splitmix64(offset)
        } else {
            splitmix64(splitmix64(offset) ^ splitmix64(attempt.wrapping_add(0x5eed)))
        };
        ProfileId(format!("p_{mixed:016x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The splitmix64 finalizer: a fixed bijective 64-bit mix.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_display_and_parse_round_trip() {
        let id: Identifier = "url:https://x.com/a".parse().unwrap();
        assert_eq!(id, Identifier::new("url", "https://x.com/a"));
        assert_eq!(id.to_string(), "url:https://x.com/a");
        assert!("novalue".parse::<Identifier>().is_err());
        assert!(":v".parse::<Identifier>().is_err());
        assert_eq!(
            "k:".parse::<Identifier>().unwrap(),
            Identifier::new("k", "")
        );
    }

    #[test]
    fn profile_ids_are_fixed() {
        // splitmix64(0) is a published test vector.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        let p = ProfileId::for_new_profile(0);
        assert_eq!(p.to_string(), "p_e220a8397b1dcdaf");
        assert_eq!(p.0.len(), 18);
        assert_ne!(ProfileId::for_new_profile(1), p);
        assert_ne!(ProfileId::derive(0, 1), p);
        assert_eq!(ProfileId::for_new_profile(7), ProfileId::for_new_profile(7));
    }
}
