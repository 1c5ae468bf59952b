//! The only crate that knows HTTP: axum routes for collection, profiles and operations, and the
//! server lifecycle.
//!
//! API boundary: [`Server::start`] opens the data directory, starts the pipeline thread and
//! serves; [`router`] builds the routes over an [`AppState`] (used by tests with real sockets).

pub mod admin;
pub mod analytics;
pub mod bandits;
pub mod config;
pub mod definitions;
pub mod error;
pub mod exposures;
pub mod features;
pub mod ingest;
pub mod ops;
pub mod recs;
pub mod results;
pub mod rfm;
pub mod segments;
pub mod sql;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use atrium_types::{Clock, SystemClock};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method};
use axum::routing::{get, post, put};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

pub use config::{Config, ConfigError, SdkConnection, SourceEntry, hash_secret};
pub use state::{AppState, StartError};

pub fn router(state: Arc<AppState>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            axum::http::header::CONTENT_ENCODING,
            HeaderName::from_static("x-retry-count"),
            HeaderName::from_static("x-write-key"),
        ])
        .allow_credentials(true)
        .max_age(std::time::Duration::from_secs(86_400));
    // Compressed bodies are checked against the limit again after inflating.
    let raw_body_limit = state.limits.max_request_bytes + 1024;
    let collection = Router::new()
        .route("/v1/{kind}", post(ingest::post_event))
        .route(
            "/v1/projects/{write_key}/settings",
            get(ingest::project_settings),
        )
        // A wrong method gets the JSON error shape instead of an empty 405. Set before the
        // layers, so CORS preflights (OPTIONS) still reach the CORS layer.
        .method_not_allowed_fallback(ops::not_found)
        .layer(cors)
        .layer(DefaultBodyLimit::max(raw_body_limit));
    let admin = Router::new()
        .route("/v1/profiles", get(admin::list_profiles))
        .route(
            "/v1/profiles/{reference}",
            get(admin::get_profile).delete(admin::delete_profile),
        )
        .route(
            "/v1/profiles/{reference}/events",
            get(admin::profile_events),
        )
        .route(
            "/v1/profiles/{reference}/identity",
            get(admin::profile_identity),
        )
        .route(
            "/v1/profiles/{reference}/traits",
            post(admin::update_traits),
        )
        .route(
            "/v1/profiles/{reference}/export",
            get(admin::export_profile),
        )
        .route("/v1/pipeline", get(admin::pipeline_status))
        .route("/v1/sql", post(sql::post_sql))
        .route("/v1/analytics/kpis", post(analytics::post_kpis))
        .route("/v1/analytics/funnel", post(analytics::post_funnel))
        .route("/v1/analytics/retention", post(analytics::post_retention))
        .route(
            "/v1/analytics/attribution",
            post(analytics::post_attribution),
        )
        .route("/v1/analytics/paths", post(analytics::post_paths))
        .route("/v1/features", get(definitions::list_features))
        .route(
            "/v1/features/{key}",
            put(definitions::put_feature)
                .get(definitions::get_feature)
                .delete(definitions::delete_feature),
        )
        .route("/v1/experiments", get(definitions::list_experiments))
        .route(
            "/v1/experiments/{key}",
            put(definitions::put_experiment)
                .get(definitions::get_experiment)
                .delete(definitions::delete_experiment),
        )
        .route(
            "/v1/experiments/{key}/start",
            post(definitions::start_experiment),
        )
        .route(
            "/v1/experiments/{key}/stop",
            post(definitions::stop_experiment),
        )
        .route("/v1/experiments/{key}/results", get(results::get_results))
        .route(
            "/v1/experiments/{key}/bandit/update",
            post(bandits::post_update),
        )
        .route("/v1/metrics", get(definitions::list_metrics))
        .route(
            "/v1/metrics/{key}",
            put(definitions::put_metric)
                .get(definitions::get_metric)
                .delete(definitions::delete_metric),
        )
        .route(
            "/v1/recommendations",
            get(recs::get_recommendations).post(recs::post_recommendations),
        )
        .route("/v1/recommendations/stats", get(recs::get_stats))
        .route("/v1/recommendations/models", get(recs::get_models))
        .route("/v1/recommendations/train", post(recs::post_train))
        .route("/v1/catalog/items", put(recs::put_items))
        .route(
            "/v1/catalog/items/{item}",
            get(recs::get_item).delete(recs::delete_item),
        )
        .route("/v1/saved-groups", get(definitions::list_saved_groups))
        .route(
            "/v1/saved-groups/{key}",
            put(definitions::put_saved_group)
                .get(definitions::get_saved_group)
                .delete(definitions::delete_saved_group),
        )
        .route("/v1/segments", get(definitions::list_segments))
        .route("/v1/segments/preview", post(segments::preview_segment))
        .route(
            "/v1/segments/{key}",
            put(definitions::put_segment)
                .get(definitions::get_segment)
                .delete(definitions::delete_segment),
        )
        .route("/v1/segments/{key}/members", get(segments::segment_members))
        .route(
            "/v1/profiles/{reference}/segments",
            get(segments::profile_segments),
        )
        .route(
            "/v1/profiles/{reference}/segments/{key}/explain",
            get(segments::explain_segment),
        )
        .route(
            "/v1/computed-traits",
            get(definitions::list_computed_traits),
        )
        .route(
            "/v1/computed-traits/{key}",
            put(definitions::put_computed_trait)
                .get(definitions::get_computed_trait)
                .delete(definitions::delete_computed_trait),
        )
        .route(
            "/v1/computed-traits/{key}/rfm/recompute",
            post(rfm::post_recompute),
        )
        .method_not_allowed_fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(1024 * 1024));
    // GrowthBook and OpenFeature SDKs run in browsers: any origin, no credentials.
    let sdk_cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(Any)
        .expose_headers([
            axum::http::header::ETAG,
            HeaderName::from_static("x-sse-support"),
        ])
        .max_age(std::time::Duration::from_secs(86_400));
    let sdk = Router::new()
        .route("/api/features/{client_key}", get(features::get_features))
        .route("/sub/{client_key}", get(features::subscribe))
        .route("/api/eval/{client_key}", post(features::remote_eval))
        .route("/ofrep/v1/evaluate/flags", post(features::ofrep_bulk))
        .route(
            "/ofrep/v1/evaluate/flags/{key}",
            post(features::ofrep_single),
        )
        .method_not_allowed_fallback(ops::not_found)
        .layer(sdk_cors)
        .layer(DefaultBodyLimit::max(256 * 1024));
    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/docs/errors.md", get(ops::error_docs))
        .method_not_allowed_fallback(ops::not_found);
    Router::new()
        .merge(collection)
        .merge(admin)
        .merge(sdk)
        .merge(ops)
        .fallback(ops::not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}

/// A running server: its address, state, and how to stop it.
pub struct Server {
    pub address: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    serve_task: Option<tokio::task::JoinHandle<()>>,
    pipeline_thread: Option<std::thread::JoinHandle<()>>,
    /// Appends derived segment events and timer ticks to the log.
    segments_thread: Option<std::thread::JoinHandle<()>>,
    warehouse_thread: Option<std::thread::JoinHandle<()>>,
    recs_threads: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    pub async fn start(config: Config) -> Result<Server, StartError> {
        Server::start_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, StartError> {
        let listen = config.listen;
        let state = tokio::task::spawn_blocking(move || AppState::open(config, clock))
            .await
            .expect("opening state does not panic")?;
        let pipeline_thread = state.pipeline.clone().spawn(state.stop_pipeline.clone());
        let segments_thread = state
            .pipeline
            .clone()
            .spawn_segment_services(state.stop_pipeline.clone());
        let warehouse_thread = state.warehouse.clone().spawn(state.stop_pipeline.clone());
        let recs_threads = state.recs.clone().spawn(state.stop_pipeline.clone());
        tokio::spawn(bandits::run_schedule(state.clone()));
        tokio::spawn(rfm::run_schedule(state.clone()));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Listen {
                address: listen,
                source,
            })?;
        let address = listener.local_addr().map_err(|source| StartError::Listen {
            address: listen,
            source,
        })?;
        let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let (shutdown, shutdown_signal) = tokio::sync::oneshot::channel::<()>();
        let serve_task = tokio::spawn(async move {
            let graceful = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = shutdown_signal.await;
            });
            if let Err(error) = graceful.await {
                tracing::error!(%error, "http server stopped with an error");
            }
        });
        tracing::info!(%address, "atrium listening");
        Ok(Server {
            address,
            state,
            shutdown: Some(shutdown),
            serve_task: Some(serve_task),
            pipeline_thread: Some(pipeline_thread),
            segments_thread: Some(segments_thread),
            warehouse_thread: Some(warehouse_thread),
            recs_threads,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops accepting requests, finishes in-flight ones, and stops the pipeline.
    pub async fn stop(mut self) {
        self.state.closing.send_replace(true);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.serve_task.take() {
            let _ = task.await;
        }
        self.state.stop_pipeline.store(true, Ordering::Release);
        if let Some(thread) = self.segments_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        if let Some(thread) = self.pipeline_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // The warehouse flushes its hot tier on the way out.
        if let Some(thread) = self.warehouse_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // The recommendation consumer saves its served counters on the way out.
        for thread in std::mem::take(&mut self.recs_threads) {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
