//! Server configuration: a TOML file, then `ATRIUM_*` environment variables on top.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use atrium_collect::Limits;
use atrium_identity::IdentityRules;
use atrium_types::Channel;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name} is not valid: {message}")]
    Env { name: String, message: String },
    #[error("config is not valid: {0}")]
    Invalid(String),
}

/// Everything `atrium serve` needs. Every field has a default, so an empty file is valid.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (`ATRIUM_LISTEN`).
    pub listen: SocketAddr,
    /// Where the event log and state live (`ATRIUM_DATA_DIR`).
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// messageId deduplication window, in hours (`ATRIUM_DEDUP_WINDOW_HOURS`); 0 disables it.
    pub dedup_window_hours: u32,
    /// Header carrying the client address when behind a trusted proxy, e.g. `x-forwarded-for`
    /// (`ATRIUM_TRUSTED_PROXY_HEADER`). Unset: the connection's peer address is used.
    pub trusted_proxy_header: Option<String>,
    /// Requests per second allowed per write key before 429 (0 = unlimited).
    pub rate_limit_per_key: u32,
    /// Most ingest requests in flight at once before 429 (overload protection).
    pub max_inflight_requests: usize,
    /// Sources and their write keys.
    pub sources: Vec<SourceEntry>,
    /// SHA-256 (hex) of each admin secret key. Plain keys are never stored.
    pub admin_key_sha256: Vec<String>,
    pub identity: IdentityRules,
    /// Whether GDPR erasure also suppresses future events carrying the erased identifiers.
    pub suppress_erased_identifiers: bool,
    /// Records per pipeline transaction.
    pub pipeline_batch_records: usize,
    /// Segment file size of the event log, in MiB.
    pub log_segment_mib: u64,
    /// Client keys of GrowthBook/OpenFeature SDKs (`/api/features/{clientKey}`, OFREP).
    pub sdk_connections: Vec<SdkConnection>,
    /// The SQL warehouse's materializer (`[warehouse]`).
    pub warehouse: WarehouseSettings,
    /// Recommendation training and A/B splits (`[recs]`).
    pub recs: atrium_recserve::RecsSettings,
    /// Experiment serving (`[experiments]`).
    pub experiments: ExperimentSettings,
    /// Segments and computed traits (`[segments]`).
    pub segments: SegmentSettings,
}

/// `[segments]`: the RFM quintile schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentSettings {
    /// Seconds between recomputations of the population quintiles of each `rfm` computed trait
    /// with `"quintiles": true` (`ATRIUM_SEGMENTS_RFM_PERIOD_SECONDS`); a trait never computed
    /// is computed within a minute of its creation. 0 turns the schedule off (recomputation can
    /// still be asked for over the API).
    pub rfm_period_seconds: u64,
}

impl Default for SegmentSettings {
    fn default() -> Self {
        SegmentSettings {
            rfm_period_seconds: 86_400,
        }
    }
}

/// `[experiments]`: bandit schedule and server-side sticky bucketing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentSettings {
    /// Seconds between bandit weight updates (`ATRIUM_EXPERIMENTS_BANDIT_PERIOD_SECONDS`);
    /// 0 turns the schedule off (updates can still be asked for over the API).
    pub bandit_period_seconds: u64,
    /// Server-side evaluation (`/api/eval`, OFREP) keeps each user's variation in the
    /// `sticky_buckets` table, so weight changes only move new users
    /// (`ATRIUM_EXPERIMENTS_STICKY_BUCKETING`). Experiments can opt out one by one with
    /// `disable_sticky_bucketing`.
    pub sticky_bucketing: bool,
}

impl Default for ExperimentSettings {
    fn default() -> Self {
        ExperimentSettings {
            bandit_period_seconds: 3_600,
            sticky_bucketing: true,
        }
    }
}

/// `[warehouse]`: when the hot tier is flushed to Parquet, and how the files are compressed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarehouseSettings {
    /// Flush the hot tier once its oldest row is this old, in ms
    /// (`ATRIUM_WAREHOUSE_FLUSH_INTERVAL_MS`).
    pub flush_interval_ms: u64,
    /// ... or once it holds this many events (`ATRIUM_WAREHOUSE_FLUSH_ROWS`).
    pub flush_rows: usize,
    /// `zstd` (flush files Snappy until compaction) or `none`
    /// (`ATRIUM_WAREHOUSE_COMPRESSION`).
    pub compression: atrium_warehouse::ParquetCompression,
    /// MiB of decoded `orders` / `order_lines` files kept in memory for queries, 0 for none
    /// (`ATRIUM_WAREHOUSE_MEMORY_FILES_MB`).
    pub memory_files_mb: usize,
}

impl Default for WarehouseSettings {
    fn default() -> Self {
        let defaults = atrium_warehouse::WarehouseConfig::default();
        WarehouseSettings {
            flush_interval_ms: defaults.flush_interval.as_millis() as u64,
            flush_rows: defaults.flush_rows,
            compression: defaults.compression,
            memory_files_mb: defaults.memory_files_bytes >> 20,
        }
    }
}

impl WarehouseSettings {
    /// The warehouse configuration these settings describe (other knobs at their defaults).
    pub fn to_config(&self) -> atrium_warehouse::WarehouseConfig {
        atrium_warehouse::WarehouseConfig {
            flush_interval: std::time::Duration::from_millis(self.flush_interval_ms),
            flush_rows: self.flush_rows.max(1),
            compression: self.compression,
            memory_files_bytes: self.memory_files_mb.saturating_mul(1 << 20),
            ..atrium_warehouse::WarehouseConfig::default()
        }
    }
}

/// One SDK connection: a public client key, optionally with a payload encryption key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdkConnection {
    pub name: String,
    /// Public (it ships in web pages and apps); it only reads flags.
    pub client_key: String,
    /// Base64 AES key (16 bytes for GrowthBook's AES-128); when set the payload is served as
    /// `encryptedFeatures` / `encryptedSavedGroups`.
    #[serde(default)]
    pub encryption_key: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    pub name: String,
    pub channel: Channel,
    pub write_key: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            data_dir: PathBuf::from("./atrium-data"),
            limits: Limits::default(),
            dedup_window_hours: 24,
            trusted_proxy_header: None,
            rate_limit_per_key: 0,
            max_inflight_requests: 4_096,
            sources: Vec::new(),
            admin_key_sha256: Vec::new(),
            identity: IdentityRules::default(),
            suppress_erased_identifiers: true,
            pipeline_batch_records: 2_000,
            log_segment_mib: 64,
            sdk_connections: Vec::new(),
            warehouse: WarehouseSettings::default(),
            recs: atrium_recserve::RecsSettings::default(),
            experiments: ExperimentSettings::default(),
            segments: SegmentSettings::default(),
        }
    }
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Config {
    /// Reads `path` (when given) and applies environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str(&text).map_err(|error| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: error.to_string(),
                })?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Environment overrides. `ATRIUM_BOOTSTRAP_WRITE_KEY` adds a `default` web source with that
    /// key; `ATRIUM_BOOTSTRAP_ADMIN_KEY` adds an admin key (hashed at once).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let invalid = |name: &str, message: String| ConfigError::Env {
            name: name.to_owned(),
            message,
        };
        if let Some(listen) = get("ATRIUM_LISTEN") {
            self.listen = listen.parse().map_err(|error| {
                invalid("ATRIUM_LISTEN", format!("{error}: expected host:port"))
            })?;
        }
        if let Some(dir) = get("ATRIUM_DATA_DIR") {
            self.data_dir = PathBuf::from(dir);
        }
        if let Some(hours) = get("ATRIUM_DEDUP_WINDOW_HOURS") {
            self.dedup_window_hours = hours
                .parse()
                .map_err(|error| invalid("ATRIUM_DEDUP_WINDOW_HOURS", format!("{error}")))?;
        }
        if let Some(header) = get("ATRIUM_TRUSTED_PROXY_HEADER") {
            self.trusted_proxy_header = Some(header.to_lowercase());
        }
        if let Some(rate) = get("ATRIUM_RATE_LIMIT_PER_KEY") {
            self.rate_limit_per_key = rate
                .parse()
                .map_err(|error| invalid("ATRIUM_RATE_LIMIT_PER_KEY", format!("{error}")))?;
        }
        if let Some(ms) = get("ATRIUM_WAREHOUSE_FLUSH_INTERVAL_MS") {
            self.warehouse.flush_interval_ms = ms.parse().map_err(|error| {
                invalid("ATRIUM_WAREHOUSE_FLUSH_INTERVAL_MS", format!("{error}"))
            })?;
        }
        if let Some(seconds) = get("ATRIUM_EXPERIMENTS_BANDIT_PERIOD_SECONDS") {
            self.experiments.bandit_period_seconds = seconds.parse().map_err(|error| {
                invalid(
                    "ATRIUM_EXPERIMENTS_BANDIT_PERIOD_SECONDS",
                    format!("{error}"),
                )
            })?;
        }
        if let Some(seconds) = get("ATRIUM_SEGMENTS_RFM_PERIOD_SECONDS") {
            self.segments.rfm_period_seconds = seconds.parse().map_err(|error| {
                invalid("ATRIUM_SEGMENTS_RFM_PERIOD_SECONDS", format!("{error}"))
            })?;
        }
        if let Some(enabled) = get("ATRIUM_EXPERIMENTS_STICKY_BUCKETING") {
            self.experiments.sticky_bucketing = enabled.parse().map_err(|error| {
                invalid("ATRIUM_EXPERIMENTS_STICKY_BUCKETING", format!("{error}"))
            })?;
        }
        if let Some(rows) = get("ATRIUM_WAREHOUSE_FLUSH_ROWS") {
            self.warehouse.flush_rows = rows
                .parse()
                .map_err(|error| invalid("ATRIUM_WAREHOUSE_FLUSH_ROWS", format!("{error}")))?;
        }
        if let Some(megabytes) = get("ATRIUM_WAREHOUSE_MEMORY_FILES_MB") {
            self.warehouse.memory_files_mb = megabytes
                .parse()
                .map_err(|error| invalid("ATRIUM_WAREHOUSE_MEMORY_FILES_MB", format!("{error}")))?;
        }
        if let Some(codec) = get("ATRIUM_WAREHOUSE_COMPRESSION") {
            self.warehouse.compression = match codec.trim().to_ascii_lowercase().as_str() {
                "zstd" => atrium_warehouse::ParquetCompression::Zstd,
                "none" => atrium_warehouse::ParquetCompression::None,
                other => {
                    return Err(invalid(
                        "ATRIUM_WAREHOUSE_COMPRESSION",
                        format!("unknown codec `{other}`: expected zstd or none"),
                    ));
                }
            };
        }
        if let Some(key) = get("ATRIUM_BOOTSTRAP_WRITE_KEY").filter(|key| !key.is_empty())
            && !self.sources.iter().any(|source| source.write_key == key)
        {
            self.sources.push(SourceEntry {
                name: "default".into(),
                channel: Channel::Web,
                write_key: key,
            });
        }
        if let Some(key) = get("ATRIUM_BOOTSTRAP_ADMIN_KEY").filter(|key| !key.is_empty()) {
            self.admin_key_sha256.push(hash_secret(&key));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = BTreeMap::new();
        for source in &self.sources {
            if source.write_key.len() < 8 {
                return Err(ConfigError::Invalid(format!(
                    "write key of source `{}` is shorter than 8 characters",
                    source.name
                )));
            }
            if names
                .insert(source.write_key.clone(), source.name.clone())
                .is_some()
            {
                return Err(ConfigError::Invalid(format!(
                    "write key of source `{}` is used twice",
                    source.name
                )));
            }
        }
        for hash in &self.admin_key_sha256 {
            if hash.len() != 64 || !hash.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(
                    "admin_key_sha256 entries must be 64 hex characters (sha256 of the key)".into(),
                ));
            }
        }
        let mut client_keys = BTreeMap::new();
        for connection in &self.sdk_connections {
            if connection.client_key.len() < 8 {
                return Err(ConfigError::Invalid(format!(
                    "client key of sdk connection `{}` is shorter than 8 characters",
                    connection.name
                )));
            }
            if client_keys
                .insert(connection.client_key.clone(), connection.name.clone())
                .is_some()
            {
                return Err(ConfigError::Invalid(format!(
                    "client key of sdk connection `{}` is used twice",
                    connection.name
                )));
            }
            if let Some(key) = &connection.encryption_key {
                use base64::Engine;
                let length = base64::engine::general_purpose::STANDARD
                    .decode(key.trim())
                    .map(|bytes| bytes.len());
                if !matches!(length, Ok(16 | 24 | 32)) {
                    return Err(ConfigError::Invalid(format!(
                        "encryption_key of sdk connection `{}` must be base64 of 16 random bytes (AES-128), e.g. from `openssl rand -base64 16`",
                        connection.name
                    )));
                }
            }
        }
        if self.pipeline_batch_records == 0 || self.max_inflight_requests == 0 {
            return Err(ConfigError::Invalid(
                "pipeline_batch_records and max_inflight_requests must be positive".into(),
            ));
        }
        self.recs.validate().map_err(ConfigError::Invalid)?;
        if self.warehouse.flush_rows == 0 {
            return Err(ConfigError::Invalid(
                "warehouse.flush_rows must be positive".into(),
            ));
        }
        self.identity
            .compile()
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_values() {
        let mut config: Config = toml::from_str("listen = \"127.0.0.1:9000\"\n[[sources]]\nname = \"shop\"\nchannel = \"web\"\nwrite_key = \"wk_shop_123\"\n").unwrap();
        let env = |name: &str| match name {
            "ATRIUM_LISTEN" => Some("127.0.0.1:9100".to_owned()),
            "ATRIUM_BOOTSTRAP_WRITE_KEY" => Some("wk_bootstrap".to_owned()),
            "ATRIUM_BOOTSTRAP_ADMIN_KEY" => Some("sk_admin".to_owned()),
            "ATRIUM_WAREHOUSE_FLUSH_INTERVAL_MS" => Some("250".to_owned()),
            "ATRIUM_WAREHOUSE_COMPRESSION" => Some("none".to_owned()),
            "ATRIUM_SEGMENTS_RFM_PERIOD_SECONDS" => Some("600".to_owned()),
            _ => None,
        };
        config.apply_env(env).unwrap();
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.warehouse.flush_interval_ms, 250);
        assert_eq!(config.segments.rfm_period_seconds, 600);
        assert_eq!(
            config.warehouse.compression,
            atrium_warehouse::ParquetCompression::None
        );
        assert_eq!(
            config.warehouse.to_config().flush_interval,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.admin_key_sha256, vec![hash_secret("sk_admin")]);
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
        assert!(toml::from_str::<Config>("[warehouse]\nflush_every = 1").is_err());
        assert!(toml::from_str::<Config>("[warehouse]\ncompression = \"lz4\"").is_err());
        assert!(
            Config::default()
                .apply_env(|name| (name == "ATRIUM_WAREHOUSE_COMPRESSION").then(|| "lz4".into()))
                .is_err()
        );
        let mut config = Config::default();
        assert!(
            config
                .apply_env(|name| (name == "ATRIUM_LISTEN").then(|| "nope".to_owned()))
                .is_err()
        );
        config.sources.push(SourceEntry {
            name: "s".into(),
            channel: Channel::Web,
            write_key: "short".into(),
        });
        assert!(config.validate().is_err());
    }

    #[test]
    fn sdk_connections_are_checked() {
        let text = "[[sdk_connections]]\nname = \"web\"\nclient_key = \"sdk-web-0001\"\nencryption_key = \"Ns04T5n9+59rl2x3SlNHtQ==\"\n";
        let config: Config = toml::from_str(text).unwrap();
        config.validate().unwrap();
        assert!(
            toml::from_str::<Config>(
                "[[sdk_connections]]\nname = \"w\"\nclient_key = \"sdk-web-0001\"\nkey = \"x\"\n"
            )
            .is_err()
        );
        let mut bad = config.clone();
        bad.sdk_connections[0].encryption_key = Some("c2hvcnQ=".into());
        assert!(bad.validate().is_err());
        let mut twice = config.clone();
        twice
            .sdk_connections
            .push(config.sdk_connections[0].clone());
        assert!(twice.validate().is_err());
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    #[test]
    fn the_example_config_parses_and_validates() {
        let text = include_str!("../../../atrium.example.toml");
        let config: Config = toml::from_str(text).expect("atrium.example.toml parses");
        config.validate().expect("atrium.example.toml validates");
        let defaults = Config::default();
        assert_eq!(
            config.limits, defaults.limits,
            "the example documents the default limits"
        );
        assert_eq!(
            config.identity, defaults.identity,
            "the example documents the default identity rules"
        );
        assert_eq!(
            config.warehouse, defaults.warehouse,
            "the example documents the default warehouse settings"
        );
        assert_eq!(
            config.recs, defaults.recs,
            "the example documents the default recommendation settings"
        );
        assert_eq!(
            config.experiments, defaults.experiments,
            "the example documents the default experiment settings"
        );
        assert_eq!(
            config.segments, defaults.segments,
            "the example documents the default segment settings"
        );
        assert!(
            config
                .sdk_connections
                .iter()
                .any(|connection| connection.encryption_key.is_some()),
            "the example shows an encrypted sdk connection"
        );
    }
}
