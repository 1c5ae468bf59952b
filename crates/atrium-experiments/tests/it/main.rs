//! Integration tests for `atrium-experiments` (one binary, several modules).

mod api;
mod hashing;
mod properties;
mod suite;
mod throughput;
mod validation;
