//! Hashing and bucketing: FNV-1a, bucket ranges, variation choice, namespaces, query-string
//! overrides.

use serde::{Deserialize, Serialize};

use crate::js;

/// A half-open interval `[start, end)` of the unit hash space.
pub type BucketRange = (f64, f64);

/// Legacy namespace tuple: `[id, start, end]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace(pub String, pub f64, pub f64);

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// 32-bit FNV-1a over the UTF-16 code units of `text`, as the JavaScript SDK computes it with
/// `charCodeAt`. Hashing UTF-16 (not UTF-8) keeps non-ASCII ids in the same bucket as on the web.
pub fn fnv1a_32_utf16(text: &str) -> u32 {
    fnv1a_extend(FNV_OFFSET_BASIS, text)
}

/// Continues an FNV-1a hash over the UTF-16 code units of `text` (concatenation without
/// building the concatenated string).
fn fnv1a_extend(mut hash: u32, text: &str) -> u32 {
    if text.is_ascii() {
        // ASCII bytes are their own UTF-16 code units.
        for byte in text.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
        return hash;
    }
    for code_unit in text.encode_utf16() {
        hash ^= u32::from(code_unit);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// FNV-1a of the decimal digits of `number`.
fn fnv1a_decimal(number: u32) -> u32 {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    let mut rest = number;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut hash = FNV_OFFSET_BASIS;
    for byte in &digits[start..] {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// GrowthBook's hash into `[0, 1)`.
///
/// - version 1: `fnv(value + seed) % 1000 / 1000` (legacy; biased across parallel experiments)
/// - version 2: `fnv(decimal(fnv(seed + value))) % 10000 / 10000`
///
/// Any other version yields `None`.
pub fn hash(seed: &str, value: &str, version: u32) -> Option<f64> {
    match version {
        2 => {
            let inner = fnv1a_extend(fnv1a_extend(FNV_OFFSET_BASIS, seed), value);
            let outer = fnv1a_decimal(inner);
            Some(f64::from(outer % 10_000) / 10_000.0)
        }
        1 => {
            let n = fnv1a_extend(fnv1a_extend(FNV_OFFSET_BASIS, value), seed);
            Some(f64::from(n % 1_000) / 1_000.0)
        }
        _ => None,
    }
}

/// `n` equal weights that sum to 1 (empty for `n <= 0`).
pub fn get_equal_weights(n: i64) -> Vec<f64> {
    if n <= 0 {
        return Vec::new();
    }
    vec![1.0 / n as f64; n as usize]
}

/// Whether `n` lies in `[start, end)`.
pub fn in_range(n: f64, range: BucketRange) -> bool {
    n >= range.0 && n < range.1
}

/// Legacy namespace membership: `hash("__" + id, userId, 1)` must fall in `[start, end)`.
pub fn in_namespace(hash_value: &str, namespace: &Namespace) -> bool {
    match hash(&format!("__{}", namespace.0), hash_value, 1) {
        Some(n) => n >= namespace.1 && n < namespace.2,
        None => false,
    }
}

/// Bucket ranges for `num_variations` variations. Coverage is clamped to `[0, 1]`; weights of
/// the wrong length, or summing outside `[0.99, 1.01]`, fall back to equal weights. Each range
/// starts at the cumulative weight and spans `coverage * weight`, so raising coverage never
/// moves an already-included user.
pub fn get_bucket_ranges(
    num_variations: usize,
    coverage: Option<f64>,
    weights: Option<&[f64]>,
) -> Vec<BucketRange> {
    let mut coverage = coverage.unwrap_or(1.0);
    if coverage.is_nan() || coverage < 0.0 {
        coverage = 0.0;
    } else if coverage > 1.0 {
        coverage = 1.0;
    }
    let equal = get_equal_weights(num_variations as i64);
    let mut chosen: &[f64] = weights.unwrap_or(&equal);
    if chosen.len() != num_variations {
        chosen = &equal;
    }
    let total: f64 = chosen.iter().sum();
    if !(0.99..=1.01).contains(&total) {
        chosen = &equal;
    }
    let mut cumulative = 0.0;
    chosen
        .iter()
        .map(|weight| {
            let start = cumulative;
            cumulative += weight;
            (start, start + coverage * weight)
        })
        .collect()
}

/// Index of the first range containing `n`, or `-1` when none does.
pub fn choose_variation(n: f64, ranges: &[BucketRange]) -> i64 {
    ranges
        .iter()
        .position(|range| in_range(n, *range))
        .map_or(-1, |index| index as i64)
}

/// A variation forced through the URL (`?<experimentKey>=<index>`), when valid.
pub fn get_query_string_override(id: &str, url: &str, num_variations: usize) -> Option<usize> {
    if url.is_empty() {
        return None;
    }
    // Like `url.split("?")[1]`: the text between the first and second `?`.
    let search = url.split('?').nth(1)?;
    if search.is_empty() {
        return None;
    }
    let search = match search.find('#') {
        Some(position) => &search[..position],
        None => search,
    };
    let first_match = search
        .split('&')
        .map(|pair| {
            let mut pieces = pair.split('=');
            (pieces.next().unwrap_or(""), pieces.next())
        })
        .find(|(key, _)| *key == id)?;
    let variation = js::parse_int(first_match.1.unwrap_or("undefined"))?;
    if variation >= 0.0 && variation < num_variations as f64 {
        Some(variation as usize)
    } else {
        None
    }
}
