//! A real server on a loopback socket with a temporary data directory, and a reqwest client.

use std::path::Path;
use std::time::{Duration, Instant};

use atrium_server::{Config, SdkConnection, Server, SourceEntry, hash_secret};
use atrium_types::Channel;
use base64::Engine;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

pub const WEB_KEY: &str = "wk_test_web_0001";
pub const SERVER_KEY: &str = "wk_test_srv_0001";
pub const ADMIN_KEY: &str = "sk_test_admin_0001";
/// SDK connection serving the plain payload.
pub const CLIENT_KEY: &str = "sdk_test_web_0001";
/// SDK connection serving the encrypted payload, with [`ENCRYPTION_KEY`].
pub const ENCRYPTED_CLIENT_KEY: &str = "sdk_test_app_0001";
pub const ENCRYPTION_KEY: &str = "Ns04T5n9+59rl2x3SlNHtQ==";

/// Upper bound for any single wait in a test.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn base_config(data_dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        data_dir: data_dir.to_path_buf(),
        sources: vec![
            SourceEntry {
                name: "web".into(),
                channel: Channel::Web,
                write_key: WEB_KEY.into(),
            },
            SourceEntry {
                name: "backend".into(),
                channel: Channel::Server,
                write_key: SERVER_KEY.into(),
            },
        ],
        admin_key_sha256: vec![hash_secret(ADMIN_KEY)],
        sdk_connections: vec![
            SdkConnection {
                name: "web".into(),
                client_key: CLIENT_KEY.into(),
                encryption_key: None,
            },
            SdkConnection {
                name: "app".into(),
                client_key: ENCRYPTED_CLIENT_KEY.into(),
                encryption_key: Some(ENCRYPTION_KEY.into()),
            },
        ],
        ..Config::default()
    }
}

pub fn basic(user_and_password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_and_password)
    )
}

pub struct TestServer {
    server: Option<Server>,
    config: Config,
    pub dir: TempDir,
    pub client: reqwest::Client,
    pub base: String,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = base_config(dir.path());
        adjust(&mut config);
        let server = Server::start(config.clone()).await.expect("server starts");
        let client = reqwest::Client::builder()
            .timeout(DEADLINE)
            .no_proxy()
            .build()
            .expect("http client");
        TestServer {
            base: server.url(),
            server: Some(server),
            config,
            dir,
            client,
        }
    }

    /// Stops the server (gracefully) and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        let server = Server::start(self.config.clone())
            .await
            .expect("server restarts");
        self.base = server.url();
        self.server = Some(server);
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST as the web source (Basic auth `key:`).
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.post_as(WEB_KEY, path, body).await
    }

    pub async fn post_as(&self, write_key: &str, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .basic_auth(write_key, Some(""))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// POST as the web source and return (status, body, x-atrium-log-end).
    pub async fn ingest(&self, path: &str, body: &Value) -> (StatusCode, Value, u64) {
        self.ingest_as(WEB_KEY, path, body).await
    }

    pub async fn ingest_as(
        &self,
        write_key: &str,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value, u64) {
        let response = self.post_as(write_key, path, body).await;
        let status = response.status();
        let end = log_end(&response);
        (status, response.json().await.expect("json body"), end)
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        into_json(self.admin(Method::GET, path, None).await).await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        into_json(self.admin(Method::POST, path, Some(body)).await).await
    }

    pub async fn admin_put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        into_json(self.admin(Method::PUT, path, Some(body)).await).await
    }

    pub async fn admin_delete(&self, path: &str) -> (StatusCode, Value) {
        into_json(self.admin(Method::DELETE, path, None).await).await
    }

    /// Waits until the pipeline has applied every offset below `offset`.
    pub async fn wait_applied(&self, offset: u64) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (status, pipeline) = self.admin_get("/v1/pipeline").await;
            assert_eq!(status, StatusCode::OK, "{pipeline}");
            if pipeline["applied_offset"].as_u64().expect("applied_offset") >= offset {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pipeline did not reach {offset}: {pipeline}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the pipeline has applied everything in the log.
    pub async fn catch_up(&self) -> u64 {
        let (_, pipeline) = self.admin_get("/v1/pipeline").await;
        let end = pipeline["log_end_offset"].as_u64().expect("log_end_offset");
        self.wait_applied(end).await;
        end
    }

    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics text")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that panicked before `stop`: at least stop the pipeline thread before the
        // temporary directory goes away.
        if let Some(server) = &self.server {
            server
                .state
                .stop_pipeline
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

pub fn log_end(response: &Response) -> u64 {
    response
        .headers()
        .get("x-atrium-log-end")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

pub async fn into_json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("status {status}: body is not json ({error}): {text:?}"));
    (status, value)
}

/// Asserts the API's error shape and code.
pub fn assert_error(status: StatusCode, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status.as_u16(), expected_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    for field in ["message", "type", "link"] {
        assert!(body[field].is_string(), "error lacks `{field}`: {body}");
    }
}

/// The value of one un-labelled Prometheus sample.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("metric {name} not found"))
}

/// PUTs a definition, asserts 202, and waits until the pipeline applied it.
pub async fn put_applied(server: &TestServer, path: &str, body: &Value) -> Value {
    let (status, written) = server.admin_put(path, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{path}: {written}");
    server
        .wait_applied(written["min_offset"].as_u64().expect("min_offset"))
        .await;
    written
}
