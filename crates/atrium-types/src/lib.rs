//! The domain vocabulary shared by every Atrium crate: event time, the clock abstraction,
//! sources and channels, and the envelope that every record in the event log carries.
//!
//! Architecture invariant: this crate performs no IO and knows nothing about HTTP.

pub mod codec;
pub mod metrics;
pub mod raw_json;
pub mod record;
pub mod source;
pub mod time;

pub use record::{AtriumMeta, ControlRecord, DefinitionKind, EventFlag, LogRecord, RecordError};
pub use source::{Channel, SourceConfig};
pub use time::{Clock, ManualClock, SystemClock, format_timestamp_ms, parse_timestamp_ms};
