//! GDPR erasure, as the pipeline applies it.
//!
//! The erasure request is a control record holding only salted hashes of the profile's
//! identifiers. Applying it purges derived state in the batch transaction; completing it (after
//! commit) rewrites the log without the profile's events and vacuums the state file, so the
//! erased values exist nowhere under the data directory.

use std::collections::HashSet;

use atrium_identity::{CompiledRules, Identifier, IdentityStore, ProfileId, extract_identifiers};
use atrium_store::WriteTables;
use atrium_types::LogRecord;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::segments::SegmentEngine;
use crate::{Pipeline, PipelineError};

/// Hashes identifiers with a per-installation salt, so suppression lists and erasure records
/// never hold the erased values themselves.
#[derive(Clone)]
pub struct IdentifierHasher {
    salt: Vec<u8>,
}

impl IdentifierHasher {
    pub fn new(salt: impl Into<Vec<u8>>) -> IdentifierHasher {
        IdentifierHasher { salt: salt.into() }
    }

    pub fn hash(&self, identifier: &Identifier) -> String {
        let mut hasher = Sha256::new();
        hasher.update(&self.salt);
        hasher.update(identifier.kind.as_bytes());
        hasher.update(b":");
        hasher.update(identifier.value.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// The salted hashes of every identifier an event carries (blocked values included: they are
/// still the customer's data).
pub fn event_identifier_hashes(
    event: &Value,
    rules: &CompiledRules,
    hasher: &IdentifierHasher,
) -> Vec<String> {
    let extracted = extract_identifiers(event, rules);
    extracted
        .identifiers
        .iter()
        .chain(extracted.blocked.iter())
        .map(|identifier| hasher.hash(identifier))
        .collect()
}

/// An erasure applied to the state store whose log rewrite is still to do.
pub(crate) struct Pending {
    offsets: HashSet<u64>,
    hashes: HashSet<String>,
}

pub(crate) fn apply(
    tables: &mut WriteTables<'_>,
    segments: &mut SegmentEngine,
    record_offset: u64,
    profile_reference: &ProfileId,
    identifier_hashes: Vec<String>,
    requested_ms: i64,
    suppress: bool,
) -> Result<Option<Pending>, PipelineError> {
    let mut profile_id = profile_reference.clone();
    for _ in 0..1_000 {
        match tables.redirect(&profile_id)? {
            Some(next) => profile_id = next,
            None => break,
        }
    }
    let mut offsets = HashSet::new();
    if let Some(graph) = tables.graph(&profile_id)? {
        let members: Vec<ProfileId> = graph
            .merged_from
            .iter()
            .chain(std::iter::once(&graph.profile))
            .cloned()
            .collect();
        segments.erase(tables, &members)?;
        let member_ids: Vec<&str> = members.iter().map(|member| member.0.as_str()).collect();
        tables.remove_sticky_buckets_of(&member_ids)?;
        tables.erase_identity(&graph)?;
        for member in graph
            .merged_from
            .iter()
            .chain(std::iter::once(&graph.profile))
        {
            tables.take_profile(member)?;
            for (_, offset) in tables.take_timeline(member)? {
                offsets.insert(offset);
            }
        }
    }
    if suppress {
        for hash in &identifier_hashes {
            tables.suppress(hash, requested_ms)?;
        }
    }
    tracing::info!(offset = record_offset, profile = %profile_id, events = offsets.len(), "profile erased from derived state");
    if offsets.is_empty() && identifier_hashes.is_empty() {
        return Ok(None);
    }
    Ok(Some(Pending {
        offsets,
        hashes: identifier_hashes.into_iter().collect(),
    }))
}

/// Rewrites the log without the erased events and vacuums the state store.
pub(crate) fn complete(pipeline: &Pipeline, erasures: Vec<Pending>) -> Result<(), PipelineError> {
    let mut offsets = HashSet::new();
    let mut hashes = HashSet::new();
    for pending in erasures {
        offsets.extend(pending.offsets);
        hashes.extend(pending.hashes);
    }
    let rules = &pipeline.config.rules;
    let hasher = &pipeline.config.hasher;
    let keep = |offset: u64, payload: &[u8]| -> bool {
        if offsets.contains(&offset) {
            return false;
        }
        match LogRecord::decode(payload) {
            Ok(LogRecord::Event(event)) => !event_identifier_hashes(&event, rules, hasher)
                .iter()
                .any(|hash| hashes.contains(hash)),
            Ok(LogRecord::Control(_)) | Err(_) => true,
        }
    };
    // The erasure is durable in the state before its events leave the log.
    pipeline.sync()?;
    let dropped = pipeline.log.rewrite(&keep)?;
    pipeline.store.vacuum()?;
    tracing::info!(dropped, "erased events removed from the event log");
    Ok(())
}
