//! Identifier extraction from one Segment-spec event.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{CompiledRules, Identifier};

/// Values longer than this (in characters, after trimming) are ignored.
pub const MAX_VALUE_CHARS: usize = 256;

/// Identifiers found on one event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    /// Usable identifiers, normalized, unique, in priority order (rank, kind, value).
    pub identifiers: Vec<Identifier>,
    /// Identifiers whose value matched a blocked-value rule; never used for matching.
    pub blocked: Vec<Identifier>,
}

/// Extracts identifiers from one event, normalized and with blocked values removed.
///
/// For `alias` events `previousId` is reported as `anonymous_id:<previousId>`: extraction
/// has no store. [`crate::resolve`] turns it into `user_id:<previousId>` when that user id
/// is already bound to a profile.
pub fn extract_identifiers(event: &Value, rules: &CompiledRules) -> Extracted {
    let raw = extract_raw(event, rules);
    let mut out = raw.extracted;
    if let Some(prev) = raw.previous_id {
        let id = Identifier::new("anonymous_id", prev);
        if rules.is_blocked(&id) {
            out.blocked.push(id);
        } else {
            out.identifiers.push(id);
        }
        rules.sort_by_priority(&mut out.identifiers);
        rules.sort_by_priority(&mut out.blocked);
    }
    out
}

/// Extraction result before the store-dependent `previousId` decision.
pub(crate) struct RawExtraction {
    pub extracted: Extracted,
    /// Normalized `previousId` of an alias event (not yet block-checked), unless it equals
    /// the event's own `userId`.
    pub previous_id: Option<String>,
}

pub(crate) fn extract_raw(event: &Value, rules: &CompiledRules) -> RawExtraction {
    let mut found: Vec<Identifier> = Vec::new();
    let mut push = |kind: &str, raw: Option<&Value>| {
        if let Some(value) = raw
            .and_then(scalar_string)
            .and_then(|s| normalize(kind, &s))
        {
            found.push(Identifier::new(kind, value));
        }
    };

    let event_type = event.get("type").and_then(Value::as_str).unwrap_or("");
    push("user_id", event.get("userId"));
    push("anonymous_id", event.get("anonymousId"));

    // Trait sources: `traits` is the user's traits only on identify (on group it describes
    // the group); `context.traits` on every event type.
    let context = event.get("context");
    let mut trait_sources: Vec<&Value> = Vec::new();
    if event_type == "identify"
        && let Some(t) = event.get("traits").filter(|t| t.is_object())
    {
        trait_sources.push(t);
    }
    if let Some(t) = context
        .and_then(|c| c.get("traits"))
        .filter(|t| t.is_object())
    {
        trait_sources.push(t);
    }
    for traits in &trait_sources {
        push("email", traits.get("email"));
        push("phone", traits.get("phone"));
        for (key, kind) in &rules.rules().custom_traits {
            for spelling in key_spellings(key) {
                push(kind, traits.get(spelling.as_str()));
            }
        }
    }

    if let Some(device) = context.and_then(|c| c.get("device")) {
        let platform = device
            .get("type")
            .and_then(Value::as_str)
            .map(|t| t.trim().to_ascii_lowercase());
        let prefix = match platform.as_deref() {
            Some("ios") => Some("ios"),
            Some("android") => Some("android"),
            _ => None,
        };
        push(
            &prefix.map_or("device_id".to_string(), |p| format!("{p}.id")),
            device.get("id"),
        );
        if device.get("adTrackingEnabled") != Some(&Value::Bool(false)) {
            push(
                &prefix.map_or("advertising_id".to_string(), |p| format!("{p}.idfa")),
                device.get("advertisingId"),
            );
        }
        push(
            &prefix.map_or("push_token".to_string(), |p| format!("{p}.push_token")),
            device.get("token"),
        );
    }

    if let Some(external) = context
        .and_then(|c| c.get("externalIds"))
        .and_then(Value::as_array)
    {
        for ext in external {
            let collection = ext.get("collection").and_then(Value::as_str);
            if !matches!(collection, None | Some("users")) {
                continue;
            }
            if let Some(kind) = ext
                .get("type")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|k| !k.is_empty() && !k.contains(':'))
            {
                push(kind, ext.get("id"));
            }
        }
    }

    let previous_id = if event_type == "alias" {
        let user_id = event.get("userId").and_then(scalar_string);
        event
            .get("previousId")
            .and_then(scalar_string)
            .and_then(|s| normalize("anonymous_id", &s))
            .filter(|p| user_id.as_deref().map(str::trim) != Some(p.as_str()))
    } else {
        None
    };

    let (mut blocked, mut identifiers): (Vec<_>, Vec<_>) =
        found.into_iter().partition(|id| rules.is_blocked(id));
    rules.sort_by_priority(&mut identifiers);
    rules.sort_by_priority(&mut blocked);
    RawExtraction {
        extracted: Extracted {
            identifiers,
            blocked,
        },
        previous_id,
    }
}

/// Strings as they are; numbers via their JSON text (`123` -> "123"); anything else: none.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Normalizes a value for its kind; `None` when the value is unusable (too long, an email
/// without `@`, a phone number with too few digits or stray characters). Empty values are
/// returned as `""` so the blocked-value rules report them.
pub fn normalize(kind: &str, raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.chars().count() > MAX_VALUE_CHARS {
        return None;
    }
    match kind {
        "email" => {
            let email = trimmed.to_lowercase();
            (email.contains('@') || email.is_empty()).then_some(email)
        }
        "phone" if !trimmed.is_empty() => normalize_phone(trimmed),
        _ => Some(trimmed.to_string()),
    }
}

/// `+` and digits: spaces, dashes, dots, slashes and parentheses are dropped, a leading `00`
/// becomes `+`; fewer than 7 digits or any other character makes the number unusable.
fn normalize_phone(raw: &str) -> Option<String> {
    let compact: String = raw
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '-' | '.' | '/' | '(' | ')')))
        .collect();
    let (plus, digits) = if let Some(rest) = compact.strip_prefix('+') {
        (true, rest)
    } else if let Some(rest) = compact.strip_prefix("00") {
        (true, rest)
    } else {
        (false, compact.as_str())
    };
    if digits.len() < 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(if plus {
        format!("+{digits}")
    } else {
        digits.to_string()
    })
}

/// The key itself, its snake_case and its camelCase spelling (deduplicated).
fn key_spellings(key: &str) -> Vec<String> {
    let mut snake = String::new();
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    let mut camel = String::new();
    let mut upper_next = false;
    for c in snake.chars() {
        if c == '_' && !camel.is_empty() {
            upper_next = true;
        } else if upper_next {
            camel.push(c.to_ascii_uppercase());
            upper_next = false;
        } else {
            camel.push(c);
        }
    }
    let mut out = vec![key.to_string(), snake, camel];
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_normalization() {
        assert_eq!(
            normalize("phone", " +1 (415) 555-0100 ").as_deref(),
            Some("+14155550100")
        );
        assert_eq!(
            normalize("phone", "0044 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            normalize("phone", "415.555.0100").as_deref(),
            Some("4155550100")
        );
        assert_eq!(normalize("phone", "555-010"), None, "six digits");
        assert_eq!(normalize("phone", "call 5550100"), None);
    }

    #[test]
    fn email_normalization() {
        assert_eq!(
            normalize("email", " Ann@Example.COM ").as_deref(),
            Some("ann@example.com")
        );
        assert_eq!(normalize("email", "not-an-email"), None);
        assert_eq!(
            normalize("email", &format!("{}@x.com", "a".repeat(300))),
            None
        );
    }

    #[test]
    fn spellings() {
        assert_eq!(
            key_spellings("loyalty_number"),
            ["loyaltyNumber", "loyalty_number"]
        );
        assert_eq!(
            key_spellings("loyaltyNumber"),
            ["loyaltyNumber", "loyalty_number"]
        );
        assert_eq!(key_spellings("plain"), ["plain"]);
    }
}
