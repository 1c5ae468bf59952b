//! Sticky bucket assignments (GrowthBook sticky bucketing for server-side evaluation): one
//! document per `<attributeName>||<attributeValue>`, mapping `<experimentKey>__<bucketVersion>`
//! to the variation key the user was given, and the profiles whose events wrote it (so GDPR
//! erasure removes it). The pipeline derives the table from the assignments that server-side
//! `Experiment Viewed` events carry, so replay rebuilds it like any other derived state.

use std::collections::{BTreeMap, BTreeSet};

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ReadTables, StoreError, WriteTables};

/// One attribute value's assignments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickyBucketDoc {
    pub attribute_name: String,
    pub attribute_value: String,
    /// `<experimentKey>__<bucketVersion>` → variation key.
    pub assignments: BTreeMap<String, String>,
    /// Profiles whose events wrote these assignments.
    pub profiles: BTreeSet<String>,
}

/// The table key of an attribute value (GrowthBook's document key).
pub fn sticky_bucket_key(attribute_name: &str, attribute_value: &str) -> String {
    format!("{attribute_name}||{attribute_value}")
}

fn decode(bytes: &[u8]) -> Result<StickyBucketDoc, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        table: "sticky_buckets",
        source,
    })
}

impl WriteTables<'_> {
    /// Adds (or replaces) assignments of one attribute value, recording the profile.
    pub fn merge_sticky_assignments(
        &mut self,
        attribute_name: &str,
        attribute_value: &str,
        assignments: &BTreeMap<String, String>,
        profile: &str,
    ) -> Result<(), StoreError> {
        let key = sticky_bucket_key(attribute_name, attribute_value);
        let existing = match self.sticky_buckets.get(key.as_str())? {
            Some(bytes) => Some(decode(bytes.value())?),
            None => None,
        };
        let mut doc = existing.unwrap_or_else(|| StickyBucketDoc {
            attribute_name: attribute_name.to_owned(),
            attribute_value: attribute_value.to_owned(),
            ..StickyBucketDoc::default()
        });
        for (experiment, variation) in assignments {
            doc.assignments
                .insert(experiment.clone(), variation.clone());
        }
        doc.profiles.insert(profile.to_owned());
        let bytes = serde_json::to_vec(&doc).expect("sticky bucket document serializes");
        self.sticky_buckets.insert(key.as_str(), bytes.as_slice())?;
        Ok(())
    }

    /// Removes every document one of `profiles` wrote (erasure); returns how many.
    pub fn remove_sticky_buckets_of(&mut self, profiles: &[&str]) -> Result<usize, StoreError> {
        let mut doomed = Vec::new();
        for row in self.sticky_buckets.iter()? {
            let (key, value) = row?;
            let doc = decode(value.value())?;
            if profiles
                .iter()
                .any(|profile| doc.profiles.contains(*profile))
            {
                doomed.push(key.value().to_owned());
            }
        }
        for key in &doomed {
            self.sticky_buckets.remove(key.as_str())?;
        }
        Ok(doomed.len())
    }
}

impl ReadTables {
    /// The assignments stored for one attribute value.
    pub fn sticky_bucket_doc(
        &self,
        attribute_name: &str,
        attribute_value: &str,
    ) -> Result<Option<StickyBucketDoc>, StoreError> {
        let key = sticky_bucket_key(attribute_name, attribute_value);
        match self.sticky_buckets.get(key.as_str())? {
            Some(bytes) => Ok(Some(decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Every stored document, in key order.
    pub fn sticky_bucket_docs(&self) -> Result<Vec<StickyBucketDoc>, StoreError> {
        let mut docs = Vec::new();
        for row in self.sticky_buckets.iter()? {
            let (_, value) = row?;
            docs.push(decode(value.value())?);
        }
        Ok(docs)
    }

    pub(crate) fn sticky_digest(
        &self,
        finish: &mut impl FnMut(&'static str, Sha256),
    ) -> Result<(), StoreError> {
        let mut hasher = Sha256::new();
        for row in self.sticky_buckets.iter()? {
            let (key, value) = row?;
            for bytes in [key.value().as_bytes(), value.value()] {
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
        }
        finish("sticky_buckets", hasher);
        Ok(())
    }
}
