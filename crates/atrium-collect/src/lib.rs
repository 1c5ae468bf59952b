//! Collection: from the bytes of one Segment-compatible request to the records appended to the
//! event log. Validates every event on its own (a bad event is rejected alone and counted), applies
//! clock-skew correction, fills `messageId`, `receivedAt` and `context.ip`, stamps the source and
//! channel, and deduplicates on `messageId` per source.
//!
//! Architecture invariant: no IO and no HTTP. The server crate hands in bytes and request facts;
//! this crate hands back log payloads and per-event verdicts.
//!
//! Speed matters here (it is the ingest hot path): request bodies are parsed into borrowed
//! key/raw-value pairs, and only the fields collection must understand are decoded. `properties`,
//! `traits` and the rest are copied through byte for byte.

mod dedup;
mod normalize;
mod raw;

pub use dedup::{DedupIndex, DedupKey};
pub use normalize::{
    Endpoint, Limits, Normalized, NormalizedEvent, Rejection, RejectionCode, RequestBody,
    RequestFacts, normalize_events,
};

/// A failure of the whole request (as opposed to one event in it).
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("request body is not valid json: {0}")]
    InvalidJson(String),
    #[error("request body is nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("request body must be a json object")]
    NotAnObject,
    #[error("request body is {size} bytes, over the limit of {limit} bytes")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("batch holds {count} events, over the limit of {limit} events per request")]
    BatchTooLarge { count: usize, limit: usize },
    #[error("`batch` must be an array of event objects")]
    BatchNotArray,
}
