//! `atrium segments ...` and `atrium computed-traits ...`: segment definitions, members,
//! previews and explanations through a running server's admin API (evaluation happens in the
//! server's pipeline).

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use crate::experiments::{DefinitionCommand, ServerArgs, call, read_body, run_definitions};

#[derive(Clone, Copy, ValueEnum)]
pub enum MembersFormat {
    Csv,
    Jsonl,
    /// The first page as JSON (with `count` and `next_cursor`).
    Json,
}

#[derive(Subcommand)]
pub enum SegmentCommand {
    #[command(flatten)]
    Definition(DefinitionCommand),
    /// Every member of a segment (profile id and entry time).
    Members {
        key: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: MembersFormat,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Count and sample the profiles a definition file (`-` for stdin) selects now, without
    /// saving it.
    Preview {
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A profile's membership in every segment, and its computed traits.
    Profile {
        /// Profile id or kind:value, e.g. email:ann@example.com.
        reference: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Why a profile is (not) a member: each condition's value and the facts behind it.
    Explain {
        /// Profile id or kind:value.
        reference: String,
        key: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(command: SegmentCommand) -> anyhow::Result<()> {
    let (server, method, path, body) = match command {
        SegmentCommand::Definition(command) => return run_definitions("segments", command),
        SegmentCommand::Members {
            key,
            format,
            server,
        } => {
            let format = match format {
                MembersFormat::Csv => "csv",
                MembersFormat::Jsonl => "jsonl",
                MembersFormat::Json => "json",
            };
            let path = format!("/v1/segments/{key}/members?format={format}");
            (server, reqwest::Method::GET, path, None)
        }
        SegmentCommand::Preview { file, server } => {
            let body = read_body(&file)?;
            let path = "/v1/segments/preview".to_owned();
            (server, reqwest::Method::POST, path, Some(body))
        }
        SegmentCommand::Profile { reference, server } => {
            let path = format!("/v1/profiles/{reference}/segments");
            (server, reqwest::Method::GET, path, None)
        }
        SegmentCommand::Explain {
            reference,
            key,
            server,
        } => {
            let path = format!("/v1/profiles/{reference}/segments/{key}/explain");
            (server, reqwest::Method::GET, path, None)
        }
    };
    crate::runtime()?.block_on(call(&server, method, &path, body))
}
