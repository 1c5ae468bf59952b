//! URL targeting for auto experiments and query-string merging for redirects (WHATWG URL
//! parsing through the `url` crate, as browsers do).

use regex::{Regex, RegexBuilder};
use url::Url;

use crate::model::{UrlTarget, UrlTargetType};

/// Whether `url` is targeted by `targets`: excluded by any matching `include: false` target,
/// otherwise included when some include target matches (or when there are only exclusions).
pub fn is_url_targeted(url: &str, targets: &[UrlTarget]) -> bool {
    if targets.is_empty() {
        return false;
    }
    let mut has_include_rules = false;
    let mut is_included = false;
    for target in targets {
        let matched = eval_url_target(url, target.kind, &target.pattern);
        if target.include == Some(false) {
            if matched {
                return false;
            }
        } else {
            has_include_rules = true;
            if matched {
                is_included = true;
            }
        }
    }
    is_included || !has_include_rules
}

fn parse_with_base(input: &str, base: &str) -> Option<Url> {
    let base = Url::parse(base).ok()?;
    Url::options().base_url(Some(&base)).parse(input).ok()
}

fn build_regex(pattern: &str, insensitive: bool) -> Option<Regex> {
    RegexBuilder::new(pattern)
        .case_insensitive(insensitive)
        .size_limit(1 << 20)
        .build()
        .ok()
}

fn eval_url_target(url: &str, kind: UrlTargetType, pattern: &str) -> bool {
    let Some(parsed) = parse_with_base(url, "https://_") else {
        return false;
    };
    match kind {
        UrlTargetType::Regex => {
            let Some(regex) = build_regex(pattern, false) else {
                return false;
            };
            let href = parsed.as_str();
            let origin = parsed.origin().ascii_serialization();
            let without_origin = href.strip_prefix(origin.as_str()).unwrap_or(href);
            regex.is_match(href) || regex.is_match(without_origin)
        }
        UrlTargetType::Simple => eval_simple_url_target(&parsed, pattern),
    }
}

/// `host` as the URL API reports it: hostname plus a non-default port.
fn host_with_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    }
}

fn hash_of(url: &Url) -> String {
    match url.fragment() {
        Some(fragment) if !fragment.is_empty() => format!("#{fragment}"),
        _ => String::new(),
    }
}

fn eval_simple_url_target(actual: &Url, pattern: &str) -> bool {
    // A pattern without a protocol but with a host gets `https://`; `*` becomes the wildcard
    // `_____` because `*` is not valid in a hostname.
    let with_protocol = match Regex::new(r"^([^:/?]*)\.") {
        Ok(regex) => regex.replace(pattern, "https://$1.").into_owned(),
        Err(_) => pattern.to_owned(),
    };
    let with_wildcards = with_protocol.replace('*', "_____");
    let Some(expected) = parse_with_base(&with_wildcards, "https://_____") else {
        return false;
    };
    let mut comparisons: Vec<(String, String, bool)> = vec![
        (host_with_port(actual), host_with_port(&expected), false),
        (actual.path().to_owned(), expected.path().to_owned(), true),
    ];
    let expected_hash = hash_of(&expected);
    if !expected_hash.is_empty() {
        comparisons.push((hash_of(actual), expected_hash, false));
    }
    for (key, value) in expected.query_pairs() {
        let actual_value = actual
            .query_pairs()
            .find(|(actual_key, _)| *actual_key == key)
            .map(|(_, actual_value)| actual_value.into_owned())
            .unwrap_or_default();
        comparisons.push((actual_value, value.into_owned(), false));
    }
    comparisons
        .iter()
        .all(|(actual, expected, is_path)| eval_simple_url_part(actual, expected, *is_path))
}

fn eval_simple_url_part(actual: &str, pattern: &str, is_path: bool) -> bool {
    let mut escaped = regex::escape(pattern).replace("_____", ".*");
    if is_path {
        let trimmed = escaped.strip_prefix('/').unwrap_or(&escaped);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        escaped = format!("/?{trimmed}/?");
    }
    match build_regex(&format!("^{escaped}$"), true) {
        Some(regex) => regex.is_match(actual),
        None => false,
    }
}

/// Copies query parameters of `old_url` that `new_url` does not already have onto `new_url`.
/// Returns `new_url` unchanged when either URL cannot be parsed.
pub fn merge_query_strings(old_url: &str, new_url: &str) -> String {
    let (Ok(current), Ok(mut redirect)) = (Url::parse(old_url), Url::parse(new_url)) else {
        return new_url.to_owned();
    };
    let mut pairs: Vec<(String, String)> = redirect
        .query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    let mut changed = false;
    for (key, value) in current.query_pairs() {
        if pairs.iter().any(|(existing, _)| *existing == key) {
            continue;
        }
        pairs.push((key.into_owned(), value.into_owned()));
        changed = true;
    }
    if changed {
        redirect.query_pairs_mut().clear().extend_pairs(pairs);
    }
    redirect.to_string()
}
