//! Integration tests for atrium-log, all against real files in temporary directories.

mod basic;
mod common;
mod concurrency;
mod properties;
mod recovery;
mod rewrite;
mod segments;
