//! Sticky bucketing storage: a small trait so the server can back it with any store, and an
//! in-memory implementation. Evaluation itself never calls the service; the caller loads the
//! documents into the [`Context`](crate::Context) before evaluating and saves the changed ones
//! afterwards.

use std::collections::BTreeMap;

use crate::model::StickyAssignmentsDocument;

/// The document key for an attribute: `"<attributeName>||<attributeValue>"`.
pub fn sticky_bucket_attribute_key(attribute_name: &str, attribute_value: &str) -> String {
    format!("{attribute_name}||{attribute_value}")
}

/// The assignment key for an experiment: `"<experimentKey>__<bucketVersion>"`.
pub fn sticky_bucket_experiment_key(experiment_key: &str, bucket_version: i64) -> String {
    format!("{experiment_key}__{bucket_version}")
}

/// Storage for sticky bucket assignment documents.
pub trait StickyBucketService {
    /// The document for one attribute value, if stored.
    fn get_assignments(
        &self,
        attribute_name: &str,
        attribute_value: &str,
    ) -> Option<StickyAssignmentsDocument>;

    /// Stores (replaces) a document.
    fn save_assignments(&mut self, doc: StickyAssignmentsDocument);

    /// Documents for all the given `attribute name → value` pairs, keyed by
    /// [`sticky_bucket_attribute_key`].
    fn get_all_assignments(
        &self,
        attributes: &BTreeMap<String, String>,
    ) -> BTreeMap<String, StickyAssignmentsDocument> {
        let mut docs = BTreeMap::new();
        for (name, value) in attributes {
            if let Some(doc) = self.get_assignments(name, value) {
                docs.insert(sticky_bucket_attribute_key(name, value), doc);
            }
        }
        docs
    }
}

/// A [`StickyBucketService`] kept in memory (tests, single-process use, request-scoped caches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InMemoryStickyBucketService {
    docs: BTreeMap<String, StickyAssignmentsDocument>,
}

impl InMemoryStickyBucketService {
    pub fn new() -> Self {
        Self::default()
    }

    /// All stored documents by key.
    pub fn docs(&self) -> &BTreeMap<String, StickyAssignmentsDocument> {
        &self.docs
    }
}

impl StickyBucketService for InMemoryStickyBucketService {
    fn get_assignments(
        &self,
        attribute_name: &str,
        attribute_value: &str,
    ) -> Option<StickyAssignmentsDocument> {
        self.docs
            .get(&sticky_bucket_attribute_key(
                attribute_name,
                attribute_value,
            ))
            .cloned()
    }

    fn save_assignments(&mut self, doc: StickyAssignmentsDocument) {
        let key = sticky_bucket_attribute_key(&doc.attribute_name, &doc.attribute_value);
        self.docs.insert(key, doc);
    }
}
