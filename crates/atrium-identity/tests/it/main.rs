//! Integration tests for atrium-identity (one test binary).

mod extraction;
mod props;
mod resolution;
mod support;
