//! atrium-stats integration tests: one binary, one module per area.

mod analyze;
mod bandit;
mod gbstats_crosscheck;
