//! Our own hashing cases. The suite's vectors are all ASCII; these pin non-ASCII ids to what
//! the JavaScript SDK computes (FNV-1a over UTF-16 code units via `charCodeAt`, `Math.imul`
//! arithmetic), worked out independently of this crate from that algorithm.

use atrium_experiments::{fnv1a_32_utf16, hash};

/// `(seed, value, v1, v2, fnv1a(value))` as the JS SDK computes them.
const NON_ASCII: &[(&str, &str, f64, f64, u32)] = &[
    ("seed", "é", 0.137, 0.8663, 0x6c0b_6c44),
    // An astral character is two UTF-16 code units (a surrogate pair).
    ("seed", "😀", 0.429, 0.4346, 0xcb31_c4b8),
    ("exp", "Zoë", 0.526, 0.1884, 0x7907_a397),
    ("", "日本", 0.396, 0.2632, 0x5ffc_bea4),
    ("checkout", "user-ß-😀", 0.128, 0.7591, 0xdcd5_78bc),
];

#[test]
fn non_ascii_ids_hash_like_the_javascript_sdk() {
    for (seed, value, v1, v2, raw) in NON_ASCII {
        assert_eq!(fnv1a_32_utf16(value), *raw, "fnv1a({value:?})");
        assert_eq!(
            hash(seed, value, 1),
            Some(*v1),
            "hash({seed:?}, {value:?}, 1)"
        );
        assert_eq!(
            hash(seed, value, 2),
            Some(*v2),
            "hash({seed:?}, {value:?}, 2)"
        );
    }
}

#[test]
fn utf8_hashing_would_disagree() {
    // The official Rust SDK hashes UTF-8 bytes and gets 0.9593 here; we must not.
    assert_ne!(hash("seed", "é", 2), Some(0.9593));
}

#[test]
fn fnv_offset_basis_for_empty_input() {
    assert_eq!(fnv1a_32_utf16(""), 0x811c_9dc5);
    assert_eq!(hash("", "", 3), None);
}
