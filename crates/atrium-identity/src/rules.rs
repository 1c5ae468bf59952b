//! Identity resolution settings (blocked values, limits, priority, custom identifiers, caps)
//! and their compiled form.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use crate::{Identifier, IdentityError};

/// Maximum number of values of one identifier kind a profile may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    pub max: u32,
    /// Sliding window: only identifiers whose `first_seen_ms` lies within this many days
    /// before the event's time count toward `max`. `None`: all identifiers ever count.
    #[serde(default)]
    pub window_days: Option<u32>,
}

impl LimitRule {
    pub fn ever(max: u32) -> Self {
        LimitRule {
            max,
            window_days: None,
        }
    }

    pub fn per_days(max: u32, days: u32) -> Self {
        LimitRule {
            max,
            window_days: Some(days),
        }
    }

    /// Earliest `first_seen_ms` that counts toward the limit for an event at `event_time_ms`.
    pub(crate) fn cutoff_ms(&self, event_time_ms: i64) -> i64 {
        match self.window_days {
            None => i64::MIN,
            Some(days) => event_time_ms.saturating_sub(i64::from(days) * 86_400_000),
        }
    }
}

/// Identity resolution settings, as configured per workspace. See the crate docs for how
/// they are applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityRules {
    /// Regexes matched against the whole normalized value (they are anchored), any kind.
    pub blocked_values: Vec<String>,
    /// Extra blocked-value regexes for one kind only.
    pub blocked_by_kind: BTreeMap<String, Vec<String>>,
    /// Per-kind limits. Kinds not listed get `default_limit` values, with no window.
    pub limits: BTreeMap<String, LimitRule>,
    pub default_limit: u32,
    /// Kinds from highest to lowest priority. Unlisted kinds rank after the listed ones,
    /// alphabetically.
    pub priority: Vec<String>,
    /// Trait key -> identifier kind, e.g. `loyalty_number` -> `loyalty_id`. Looked up in
    /// `traits` (identify) and `context.traits`, under the camelCase and snake_case spelling.
    pub custom_traits: BTreeMap<String, String>,
    pub max_merges_per_profile: u32,
    pub max_identifiers_per_profile: u32,
}

impl Default for IdentityRules {
    fn default() -> Self {
        IdentityRules {
            blocked_values: vec![
                "^[0-]*$".to_string(),
                "^-1$".to_string(),
                "(?i)^(null|undefined|none|nil|anonymous|unknown|void|abc123|test)$".to_string(),
                "^$".to_string(),
            ],
            blocked_by_kind: BTreeMap::new(),
            limits: BTreeMap::from([("user_id".to_string(), LimitRule::ever(1))]),
            default_limit: 5,
            priority: vec![
                "user_id".to_string(),
                "email".to_string(),
                "phone".to_string(),
            ],
            custom_traits: BTreeMap::new(),
            max_merges_per_profile: 100,
            max_identifiers_per_profile: 1000,
        }
    }
}

impl IdentityRules {
    /// Compiles the regexes. An invalid regex is reported with the rule's text.
    pub fn compile(&self) -> Result<CompiledRules, IdentityError> {
        // Each rule is compiled on its own first, so an error names the rule that is wrong.
        let compile_set = |kind: Option<&str>, rules: &[String]| {
            let anchored: Vec<String> = rules.iter().map(|rule| format!("^(?:{rule})$")).collect();
            for (rule, pattern) in rules.iter().zip(&anchored) {
                Regex::new(pattern).map_err(|source| IdentityError::InvalidRegex {
                    rule: rule.to_string(),
                    kind: kind.map(str::to_string),
                    source,
                })?;
            }
            RegexSet::new(&anchored).map_err(|source| IdentityError::InvalidRegex {
                rule: rules.join(" | "),
                kind: kind.map(str::to_string),
                source,
            })
        };
        let blocked = compile_set(None, &self.blocked_values)?;
        let mut blocked_by_kind = BTreeMap::new();
        for (kind, rules) in &self.blocked_by_kind {
            blocked_by_kind.insert(kind.clone(), compile_set(Some(kind), rules)?);
        }
        Ok(CompiledRules {
            rules: self.clone(),
            blocked,
            blocked_by_kind,
        })
    }
}

/// [`IdentityRules`] with compiled regexes; what extraction and resolution use.
#[derive(Clone, Debug)]
pub struct CompiledRules {
    rules: IdentityRules,
    /// All global blocked-value patterns in one automaton: one pass per value.
    blocked: RegexSet,
    blocked_by_kind: BTreeMap<String, RegexSet>,
}

impl Default for CompiledRules {
    fn default() -> Self {
        // The default rules are fixed and valid; compiling them cannot fail.
        IdentityRules::default()
            .compile()
            .unwrap_or_else(|e| unreachable!("default identity rules are invalid: {e}"))
    }
}

impl CompiledRules {
    pub fn rules(&self) -> &IdentityRules {
        &self.rules
    }

    /// Whether `id`'s value matches a global or per-kind blocked-value regex.
    pub fn is_blocked(&self, id: &Identifier) -> bool {
        self.blocked.is_match(&id.value)
            || self
                .blocked_by_kind
                .get(&id.kind)
                .is_some_and(|set| set.is_match(&id.value))
    }

    /// Priority rank of a kind: its index in `priority`, or `priority.len()` when unlisted
    /// (ties between unlisted kinds are broken alphabetically by [`CompiledRules::cmp_priority`]).
    pub fn rank(&self, kind: &str) -> usize {
        self.rules
            .priority
            .iter()
            .position(|k| k == kind)
            .unwrap_or(self.rules.priority.len())
    }

    /// The limit that applies to `kind`: the configured one; else 1 for `user_id` (also when a
    /// configured `limits` map omits it, so the guardrail survives partial configs); else
    /// `default_limit`.
    pub fn limit(&self, kind: &str) -> LimitRule {
        match self.rules.limits.get(kind) {
            Some(rule) => *rule,
            None if kind == "user_id" => LimitRule::ever(1),
            None => LimitRule::ever(self.rules.default_limit),
        }
    }

    /// Priority order of identifiers: highest priority first, i.e. by rank, then kind, then
    /// value. This is the order of [`crate::Extracted::identifiers`].
    pub fn cmp_priority(&self, a: &Identifier, b: &Identifier) -> Ordering {
        (self.rank(&a.kind), &a.kind, &a.value).cmp(&(self.rank(&b.kind), &b.kind, &b.value))
    }

    /// Sorts into priority order and removes duplicates.
    pub fn sort_by_priority(&self, ids: &mut Vec<Identifier>) {
        ids.sort_by(|a, b| self.cmp_priority(a, b));
        ids.dedup();
    }

    pub(crate) fn max_merges(&self) -> u32 {
        self.rules.max_merges_per_profile
    }

    pub(crate) fn max_identifiers(&self) -> usize {
        self.rules.max_identifiers_per_profile.max(1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_block_the_usual_suspects() {
        let rules = CompiledRules::default();
        for v in [
            "",
            "0",
            "0000",
            "-1",
            "00000000-0000-0000-0000-000000000000",
            "null",
            "NULL",
            "Anonymous",
            "undefined",
            "abc123",
            "test",
            "void",
        ] {
            assert!(rules.is_blocked(&Identifier::new("user_id", v)), "{v:?}");
        }
        for v in ["1", "u-1", "abc1234", "testing", "-10"] {
            assert!(!rules.is_blocked(&Identifier::new("user_id", v)), "{v:?}");
        }
    }

    #[test]
    fn regexes_match_the_whole_value() {
        let rules = IdentityRules {
            blocked_values: vec!["foo".into()],
            blocked_by_kind: BTreeMap::from([("email".into(), vec![".*@example\\.com".into()])]),
            ..IdentityRules::default()
        }
        .compile()
        .unwrap();
        assert!(rules.is_blocked(&Identifier::new("x", "foo")));
        assert!(!rules.is_blocked(&Identifier::new("x", "foobar")));
        assert!(rules.is_blocked(&Identifier::new("email", "a@example.com")));
        assert!(!rules.is_blocked(&Identifier::new("user_id", "a@example.com")));
    }

    #[test]
    fn invalid_regex_names_the_rule() {
        let err = IdentityRules {
            blocked_by_kind: BTreeMap::from([("email".into(), vec!["(unclosed".into()])]),
            ..IdentityRules::default()
        }
        .compile()
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("(unclosed") && msg.contains("email"), "{msg}");
    }

    #[test]
    fn priority_and_limits() {
        let rules = CompiledRules::default();
        let mut ids: Vec<Identifier> = [
            "ios.id:d",
            "anonymous_id:b",
            "email:e",
            "user_id:u",
            "anonymous_id:a",
            "phone:+1",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        rules.sort_by_priority(&mut ids);
        let shown: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "user_id:u",
                "email:e",
                "phone:+1",
                "anonymous_id:a",
                "anonymous_id:b",
                "ios.id:d"
            ]
        );
        assert_eq!(rules.limit("user_id"), LimitRule::ever(1));
        assert_eq!(rules.limit("email"), LimitRule::ever(5));
    }

    #[test]
    fn rules_deserialize_with_defaults() {
        let rules: IdentityRules = serde_json::from_value(serde_json::json!({
            "limits": {"anonymous_id": {"max": 5, "window_days": 7}},
            "custom_traits": {"loyalty_number": "loyalty_id"}
        }))
        .unwrap();
        assert_eq!(rules.default_limit, 5);
        assert_eq!(rules.limits["anonymous_id"], LimitRule::per_days(5, 7));
        let compiled = rules.compile().unwrap();
        assert_eq!(
            compiled.limit("user_id"),
            LimitRule::ever(1),
            "guardrail kept"
        );
        assert_eq!(compiled.limit("ios.id"), LimitRule::ever(5));
        assert!(serde_json::from_value::<IdentityRules>(serde_json::json!({"nope": 1})).is_err());
    }
}
