//! Integration tests of `atrium-server` through a real loopback socket: the real server started
//! with `Server::start` on `127.0.0.1:0` over a temporary data directory, driven with reqwest.

mod analytics;
mod collect;
mod dedup_time;
mod flags;
mod harness;
mod ops;
mod profiles;
mod recs;
mod results;
mod rfm;
mod segments;
mod sql;
mod sticky;
