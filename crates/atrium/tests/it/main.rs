//! Integration tests that drive the real `atrium` binary as a separate process.

mod cli;
mod crash;
mod support;
