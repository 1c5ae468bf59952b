//! `atrium features|experiments|metrics ...`: definitions through a running server's admin API
//! (the server holds the data-dir lock), and `atrium experiments results ID` over a data
//! directory, like `atrium sql`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::DataArgs;

/// Where the server is and the secret key to call it with.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Base URL of a running Atrium server.
    #[arg(long, env = "ATRIUM_URL", default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// Secret (admin) key.
    #[arg(long = "key", env = "ATRIUM_ADMIN_KEY", hide_env_values = true)]
    pub(crate) admin_key: String,
}

#[derive(Subcommand)]
pub enum DefinitionCommand {
    /// List every definition of this kind.
    List(ServerArgs),
    /// Print one definition (with `--history`, every earlier version too).
    Get {
        key: String,
        #[arg(long)]
        history: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Create or replace a definition from a JSON file (`-` for stdin).
    Put {
        key: String,
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a definition (its history stays).
    Delete {
        key: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
pub enum ExperimentCommand {
    #[command(flatten)]
    Definition(DefinitionCommand),
    /// Start an experiment (served as an experiment rule on its feature).
    Start {
        key: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop an experiment.
    Stop {
        key: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Compute an experiment's results over a data directory and print them (stop the server
    /// first: it holds the data-dir lock; or use GET /v1/experiments/{key}/results).
    Results(ResultsArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    Frequentist,
    Bayesian,
}

#[derive(Clone, Copy, ValueEnum)]
enum CorrectionArg {
    HolmBonferroni,
    BenjaminiHochberg,
}

#[derive(Clone, Copy, ValueEnum)]
enum ResultsFormat {
    Table,
    Json,
}

#[derive(Args)]
pub struct ResultsArgs {
    /// The experiment key.
    key: String,
    #[command(flatten)]
    data: DataArgs,
    /// Statistics engine.
    #[arg(long, value_enum, default_value_t = EngineArg::Frequentist)]
    engine: EngineArg,
    /// Significance level (frequentist) or 1 - credible interval width (Bayesian).
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Sequential testing with this tuning parameter N* (frequentist).
    #[arg(long)]
    sequential: Option<f64>,
    /// Multiple-comparison correction across goal metrics (frequentist).
    #[arg(long, value_enum)]
    correction: Option<CorrectionArg>,
    /// Break down by an exposure column: channel, source, device_type, os_name, country, ...
    #[arg(long)]
    dimension: Option<String>,
    /// Output: a readable table, or the report as JSON (same as the HTTP route).
    #[arg(long, value_enum, default_value_t = ResultsFormat::Table)]
    format: ResultsFormat,
}

pub(crate) fn read_body(file: &PathBuf) -> anyhow::Result<Value> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    }
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))
}

pub(crate) async fn call(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<()> {
    let url = format!("{}{path}", server.url.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(&server.admin_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    let pretty = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or(text);
    if status.is_success() {
        println!("{pretty}");
        Ok(())
    } else {
        anyhow::bail!("{status}: {pretty}")
    }
}

/// Runs a definition command against `/v1/<plural>`.
pub fn run_definitions(plural: &str, command: DefinitionCommand) -> anyhow::Result<()> {
    crate::runtime()?.block_on(async move {
        match command {
            DefinitionCommand::List(server) => {
                call(
                    &server,
                    reqwest::Method::GET,
                    &format!("/v1/{plural}"),
                    None,
                )
                .await
            }
            DefinitionCommand::Get {
                key,
                history,
                server,
            } => {
                let query = if history { "?history=true" } else { "" };
                let path = format!("/v1/{plural}/{key}{query}");
                call(&server, reqwest::Method::GET, &path, None).await
            }
            DefinitionCommand::Put { key, file, server } => {
                let body = read_body(&file)?;
                let path = format!("/v1/{plural}/{key}");
                call(&server, reqwest::Method::PUT, &path, Some(body)).await
            }
            DefinitionCommand::Delete { key, server } => {
                let path = format!("/v1/{plural}/{key}");
                call(&server, reqwest::Method::DELETE, &path, None).await
            }
        }
    })
}

pub fn run_experiments(command: ExperimentCommand) -> anyhow::Result<()> {
    match command {
        ExperimentCommand::Definition(command) => run_definitions("experiments", command),
        ExperimentCommand::Start { key, server } => crate::runtime()?.block_on(call(
            &server,
            reqwest::Method::POST,
            &format!("/v1/experiments/{key}/start"),
            None,
        )),
        ExperimentCommand::Stop { key, server } => crate::runtime()?.block_on(call(
            &server,
            reqwest::Method::POST,
            &format!("/v1/experiments/{key}/stop"),
            None,
        )),
        ExperimentCommand::Results(args) => run_results(args),
    }
}

fn run_results(args: ResultsArgs) -> anyhow::Result<()> {
    let mut query = BTreeMap::new();
    let engine = match args.engine {
        EngineArg::Frequentist => "frequentist",
        EngineArg::Bayesian => "bayesian",
    };
    query.insert("engine".to_owned(), engine.to_owned());
    query.insert("alpha".to_owned(), args.alpha.to_string());
    if let Some(tuning) = args.sequential {
        query.insert("sequential".to_owned(), tuning.to_string());
    }
    if let Some(correction) = args.correction {
        let name = match correction {
            CorrectionArg::HolmBonferroni => "holm-bonferroni",
            CorrectionArg::BenjaminiHochberg => "benjamini-hochberg",
        };
        query.insert("correction".to_owned(), name.to_owned());
    }
    if let Some(dimension) = args.dimension {
        query.insert("dimension".to_owned(), dimension);
    }
    let api_error = |error: atrium_server::error::ApiError| {
        anyhow::anyhow!("{}: {}", error.code.describe().0, error.message)
    };
    let options = atrium_server::results::analysis_options(&query).map_err(api_error)?;
    let (_lock, warehouse, store) = crate::warehouse::open_with_store(&args.data)?;
    let report = atrium_server::results::compute_results(&store, &warehouse, &args.key, &options)
        .map_err(api_error)?;
    match args.format {
        ResultsFormat::Table => print!("{}", report.to_table()),
        ResultsFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}
