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
    /// The SQL a segment compiles to over the warehouse, evaluated now: a saved segment's id,
    /// or a definition file (`-` for stdin). Runs it once through `POST /v1/segments/preview`
    /// with `engine=sql` and prints the query.
    Sql {
        /// A saved segment id, or a path to a JSON definition.
        segment: String,
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
        SegmentCommand::Sql { segment, server } => {
            return crate::runtime()?.block_on(print_sql(&server, &segment));
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

/// `atrium segments sql`: the compiled SQL of a saved segment or a definition file.
async fn print_sql(server: &ServerArgs, segment: &str) -> anyhow::Result<()> {
    let file = PathBuf::from(segment);
    let definition = if segment == "-" || file.is_file() {
        read_body(&file)?
    } else {
        let saved = request(
            server,
            reqwest::Method::GET,
            &format!("/v1/segments/{segment}"),
            None,
        )
        .await?;
        saved.get("definition").cloned().unwrap_or(saved)
    };
    let preview = request(
        server,
        reqwest::Method::POST,
        "/v1/segments/preview?engine=sql",
        Some(definition),
    )
    .await?;
    let sql = preview
        .get("sql")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("the server returned no SQL: {preview}"))?;
    println!("{sql}");
    Ok(())
}

async fn request(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}{path}", server.url.trim_end_matches('/'));
    let mut builder = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(&server.admin_key);
    if let Some(body) = body {
        builder = builder.json(&body);
    }
    let response = builder.send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        anyhow::bail!("{status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}
