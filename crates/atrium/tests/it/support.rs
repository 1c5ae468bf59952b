//! Running the real `atrium` binary: a child-process guard that kills on drop, a blocking HTTP
//! client, and bounded waits. Everything listens on loopback only.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_atrium");

/// A command for the binary with no inherited `ATRIUM_*` settings and quiet logs.
pub fn atrium() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ATRIUM_") {
            command.env_remove(&name);
        }
    }
    command.env("ATRIUM_LOG", "warn");
    command.stdin(Stdio::null());
    command
}

/// Runs a command to completion, failing the test if it takes longer than `limit`.
pub fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().expect("atrium starts");
    let guard = ChildGuard::new(child);
    let (done_tx, done_rx) = mpsc::channel();
    let pid = guard.id();
    let waiter = std::thread::spawn(move || {
        let output = guard.into_inner().wait_with_output();
        let _ = done_tx.send(());
        output
    });
    if done_rx.recv_timeout(limit).is_err() {
        // Kill by pid: the guard moved into the waiter thread, which is blocked in wait.
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        let _ = waiter.join();
        panic!("{command:?} did not finish within {limit:?}");
    }
    waiter
        .join()
        .expect("waiter thread")
        .expect("collecting output")
}

/// Kills (SIGKILL) and reaps the child when dropped, so no test leaves a server behind.
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child: Some(child) }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// SIGKILL on unix; waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn into_inner(mut self) -> Child {
        self.child.take().expect("child present")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `atrium serve` on a loopback port chosen by the OS, with bootstrap keys.
pub struct Served {
    pub guard: ChildGuard,
    pub base: String,
    pub stderr: Arc<Mutex<String>>,
}

pub fn serve(data_dir: &Path, write_key: &str, admin_key: &str, limit: Duration) -> Served {
    serve_with_env(data_dir, write_key, admin_key, limit, &[])
}

/// [`serve`] with extra `ATRIUM_*` settings.
pub fn serve_with_env(
    data_dir: &Path,
    write_key: &str,
    admin_key: &str,
    limit: Duration,
    env: &[(&str, &str)],
) -> Served {
    let child = atrium()
        .envs(env.iter().copied())
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("ATRIUM_BOOTSTRAP_WRITE_KEY", write_key)
        .env("ATRIUM_BOOTSTRAP_ADMIN_KEY", admin_key)
        .env("ATRIUM_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("atrium serve starts");
    let mut guard = ChildGuard::new(child);
    let stderr = guard
        .child
        .as_mut()
        .and_then(|child| child.stderr.take())
        .expect("piped stderr");
    let captured = Arc::new(Mutex::new(String::new()));
    let (address_tx, address_rx) = mpsc::channel();
    {
        let captured = captured.clone();
        // Keeps draining stderr for the life of the process so the server never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("atrium serving on ") {
                    let _ = address_tx.send(url.trim().to_owned());
                }
                let mut captured = captured.lock().expect("stderr buffer");
                captured.push_str(&line);
                captured.push('\n');
            }
        });
    }
    let base = match address_rx.recv_timeout(limit) {
        Ok(base) => base,
        Err(_) => panic!(
            "atrium serve did not report its address within {limit:?}; stderr:\n{}",
            captured.lock().expect("stderr buffer")
        ),
    };
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "server must listen on loopback, got {base}"
    );
    let served = Served {
        guard,
        base,
        stderr: captured,
    };
    let client = client(Duration::from_secs(2));
    wait_until(limit, "GET /healthz returns 200", || {
        client
            .get(format!("{}/healthz", served.base))
            .send()
            .map(|response| response.status().is_success())
            .unwrap_or(false)
    });
    served
}

pub fn client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .expect("http client")
}

/// Polls `check` every 20 ms until it holds, failing the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    loop {
        if check() {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// GET with the admin key; returns the status and the JSON body.
pub fn admin_get(client: &reqwest::blocking::Client, url: &str, admin_key: &str) -> (u16, Value) {
    let response = client
        .get(url)
        .bearer_auth(admin_key)
        .send()
        .unwrap_or_else(|error| panic!("GET {url}: {error}"));
    let status = response.status().as_u16();
    let body = response.json::<Value>().unwrap_or(Value::Null);
    (status, body)
}
