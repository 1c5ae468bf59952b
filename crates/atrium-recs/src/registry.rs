//! Versioned models, swapped atomically: readers keep the version they started with.

use std::sync::{Arc, RwLock};

/// A model together with the version number the registry gave it.
#[derive(Debug)]
pub struct Versioned<M> {
    pub version: u64,
    pub model: M,
}

/// Holds the current model. `publish` replaces it in one step; `current` hands out an `Arc`
/// that stays valid (and unchanged) however many times the model is replaced afterwards.
#[derive(Debug)]
pub struct ModelRegistry<M> {
    current: RwLock<Option<Arc<Versioned<M>>>>,
}

impl<M> Default for ModelRegistry<M> {
    fn default() -> Self {
        ModelRegistry {
            current: RwLock::new(None),
        }
    }
}

impl<M> ModelRegistry<M> {
    pub fn new() -> ModelRegistry<M> {
        ModelRegistry::default()
    }

    /// Makes `model` current; returns its version (1, 2, 3, …).
    pub fn publish(&self, model: M) -> u64 {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let version = current.as_ref().map_or(1, |c| c.version + 1);
        *current = Some(Arc::new(Versioned { version, model }));
        version
    }

    pub fn current(&self) -> Option<Arc<Versioned<M>>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
