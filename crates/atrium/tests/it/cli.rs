//! The command line: help texts, deterministic generation, import → replay determinism, CSV
//! import, the scripted demo, and the data-directory lock.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::support::{atrium, run_bounded, serve};

const LIMIT: Duration = Duration::from_secs(60);

fn run(args: &[&str]) -> Output {
    run_bounded(atrium().args(args), LIMIT)
}

fn run_ok(args: &[&str]) -> Output {
    let output = run(args);
    assert!(
        output.status.success(),
        "atrium {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn path(path: &Path) -> &str {
    path.to_str().expect("utf-8 temporary path")
}

#[test]
fn help_works_for_every_subcommand() {
    let top = stdout(&run_ok(&["--help"]));
    let subcommands = [
        vec!["serve"],
        vec!["demo"],
        vec!["gen"],
        vec!["import"],
        vec!["replay"],
        vec!["digest"],
        vec!["sql"],
        vec!["export"],
        vec!["bench"],
        vec!["bench", "ingest"],
        vec!["bench", "eval"],
        vec!["bench", "results"],
        vec!["features"],
        vec!["features", "put"],
        vec!["experiments"],
        vec!["experiments", "results"],
        vec!["metrics"],
        vec!["metrics", "list"],
        vec!["segments"],
        vec!["segments", "members"],
        vec!["segments", "explain"],
        vec!["computed-traits"],
        vec!["bench", "segments"],
    ];
    for subcommand in &subcommands {
        assert!(
            top.contains(subcommand[0]),
            "top-level help lists `{}`:\n{top}",
            subcommand[0]
        );
        let mut args = subcommand.clone();
        args.push("--help");
        let help = stdout(&run_ok(&args));
        assert!(help.contains("Usage:"), "atrium {args:?}:\n{help}");
    }
    run_ok(&["--version"]);
    let unknown = run(&["no-such-command"]);
    assert!(!unknown.status.success());
}

#[test]
fn gen_is_deterministic_jsonl() {
    let first = run_ok(&["gen", "--seed", "1", "--events", "500"]).stdout;
    let second = run_ok(&["gen", "--seed", "1", "--events", "500"]).stdout;
    assert_eq!(first, second, "same seed must give the same bytes");
    let text = String::from_utf8(first).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 500);
    for line in lines {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        assert!(event.is_object(), "{line}");
        assert!(event["type"].is_string(), "event without type: {line}");
    }
    let other = run_ok(&["gen", "--seed", "2", "--events", "500"]).stdout;
    assert_ne!(text.as_bytes(), other, "another seed gives another stream");
}

#[test]
fn import_then_replay_gives_the_same_digest() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let events = dir.path().join("events.jsonl");
    let data = dir.path().join("data");
    std::fs::write(
        &events,
        run_ok(&["gen", "--seed", "7", "--events", "1500"]).stdout,
    )
    .expect("writing events");
    let imported = stdout(&run_ok(&[
        "import",
        path(&events),
        "--data-dir",
        path(&data),
    ]));
    assert!(
        imported.contains("imported 1500 events (0 rejected)"),
        "{imported}"
    );

    let digest = stdout(&run_ok(&["digest", "--data-dir", path(&data)]));
    let digest = digest.trim();
    assert!(!digest.is_empty(), "digest prints something");
    let again = stdout(&run_ok(&["digest", "--data-dir", path(&data)]));
    assert_eq!(again.trim(), digest, "digest is stable");

    let replayed = stdout(&run_ok(&["replay", "--data-dir", path(&data)]));
    assert!(replayed.contains("replayed 1500 log records"), "{replayed}");
    assert!(
        replayed
            .trim_end()
            .ends_with(&format!("state digest {digest}")),
        "replay must rebuild the same state: digest before {digest}, replay said {replayed}"
    );
    let after = stdout(&run_ok(&["digest", "--data-dir", path(&data)]));
    assert_eq!(after.trim(), digest, "digest after replay");
}

#[test]
fn sql_and_export_run_offline_over_the_data_dir() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let events = dir.path().join("events.jsonl");
    let data = dir.path().join("data");
    std::fs::write(
        &events,
        run_ok(&["gen", "--seed", "3", "--events", "300"]).stdout,
    )
    .expect("writing events");
    run_ok(&["import", path(&events), "--data-dir", path(&data)]);

    let table = stdout(&run_ok(&[
        "sql",
        "SELECT count(*) AS n, count(DISTINCT message_id) AS ids FROM events",
        "--data-dir",
        path(&data),
    ]));
    assert!(table.contains("| n   | ids |"), "{table}");
    assert!(table.contains("| 300 | 300 |"), "{table}");
    assert!(table.trim_end().ends_with("1 row"), "{table}");
    let csv = stdout(&run_ok(&[
        "sql",
        "SELECT count(*) AS n FROM events_resolved WHERE profile_id IS NOT NULL",
        "--format",
        "csv",
        "--data-dir",
        path(&data),
    ]));
    assert_eq!(csv, "n\n300\n");

    let refused = run(&["sql", "DROP VIEW events", "--data-dir", path(&data)]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("read-only"), "{message}");

    let out = dir.path().join("export");
    let summary = stdout(&run_ok(&[
        "export",
        "--format",
        "jsonl",
        "--out",
        path(&out),
        "--data-dir",
        path(&data),
    ]));
    assert!(summary.contains("events       300 rows"), "{summary}");
    let lines = std::fs::read_to_string(out.join("events.jsonl")).expect("events.jsonl");
    assert_eq!(lines.lines().count(), 300);
    let out = dir.path().join("export-parquet");
    run_ok(&[
        "export",
        "--format",
        "parquet",
        "--out",
        path(&out),
        "--data-dir",
        path(&data),
    ]);
    assert!(out.join("profiles.parquet").is_file());
    assert!(out.join("events").is_dir());
}

#[test]
fn import_csv() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let csv = dir.path().join("orders.csv");
    let data = dir.path().join("data");
    std::fs::write(
        &csv,
        "userId,event,properties.revenue\n\
         csv_u_1,Order Completed,19.5\n\
         csv_u_2,Order Completed,5\n\
         csv_u_1,Product Viewed,\n",
    )
    .expect("writing csv");
    let imported = stdout(&run_ok(&["import", path(&csv), "--data-dir", path(&data)]));
    assert!(
        imported.contains("imported 3 events (0 rejected)"),
        "{imported}"
    );
    let replayed = stdout(&run_ok(&["replay", "--data-dir", path(&data)]));
    assert!(replayed.contains("replayed 3 log records"), "{replayed}");
    assert!(
        replayed.contains(": 2 profiles,"),
        "two users, two profiles: {replayed}"
    );
}

#[test]
fn import_of_nothing_valid_fails() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("junk.jsonl");
    std::fs::write(&file, "not json\n{also not\n").expect("writing junk");
    let output = run(&[
        "import",
        path(&file),
        "--data-dir",
        path(&dir.path().join("data")),
    ]);
    assert!(!output.status.success(), "importing only junk must fail");
}

#[test]
fn demo_exits_after_ingest() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("demo");
    let output = run_ok(&[
        "demo",
        "--data-dir",
        path(&data),
        "--listen",
        "127.0.0.1:0",
        "--events",
        "2000",
        "--exit-after-ingest",
    ]);
    let text = stdout(&output);
    let profiles = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("profiles:"))
        .unwrap_or_else(|| panic!("demo prints `profiles:`:\n{text}"));
    let profiles: u64 = profiles.trim().parse().expect("profile count");
    assert!(profiles > 0, "demo made no profiles:\n{text}");
    assert!(
        text.contains("http://127.0.0.1:"),
        "demo serves on loopback:\n{text}"
    );

    // The demo's experiments have results, offline over the data directory.
    let table = stdout(&run_ok(&[
        "experiments",
        "results",
        "checkout-redesign",
        "--data-dir",
        path(&data),
    ]));
    assert!(table.contains("sample ratio check"), "{table}");
    assert!(table.contains("Purchase within 72 h"), "{table}");
    let json = stdout(&run_ok(&[
        "experiments",
        "results",
        "homepage-aa",
        "--data-dir",
        path(&data),
        "--format",
        "json",
        "--engine",
        "bayesian",
    ]));
    let report: serde_json::Value = serde_json::from_str(&json).expect("json report");
    let users: u64 = report["variations"]
        .as_array()
        .expect("variations")
        .iter()
        .map(|variation| variation["users"].as_u64().unwrap())
        .sum();
    assert_eq!(users, 2_000 * 2 / 3, "{json}");
    assert!(report["metrics"][0]["effects"][0]["chance_to_win"].is_number());
    let refused = run(&[
        "experiments",
        "results",
        "no-such-experiment",
        "--data-dir",
        path(&data),
    ]);
    assert!(!refused.status.success());
}

#[test]
fn import_refuses_a_data_dir_held_by_a_server() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        run_ok(&["gen", "--seed", "3", "--events", "10"]).stdout,
    )
    .expect("writing events");
    let _server = serve(
        &data,
        "wk_lock_test_1",
        "sk_lock_test_1",
        Duration::from_secs(10),
    );
    for args in [
        vec!["import", path(&events), "--data-dir", path(&data)],
        vec!["replay", "--data-dir", path(&data)],
    ] {
        let output = run(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "atrium {args:?} must fail while a server runs"
        );
        assert!(
            stderr.contains("in use"),
            "atrium {args:?} should say the data directory is in use:\n{stderr}"
        );
    }
}

#[test]
fn definitions_commands_talk_to_a_running_server() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let server = serve(
        &data,
        "wk_defs_test_1",
        "sk_defs_test_1",
        Duration::from_secs(10),
    );
    let metric = dir.path().join("metric.json");
    std::fs::write(
        &metric,
        r#"{"type": "conversion", "event": "Signed Up", "window_hours": 24}"#,
    )
    .expect("writing the metric");
    let with_server = |args: &[&str]| -> Vec<String> {
        let mut full: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        full.extend([
            "--url".to_owned(),
            server.base.clone(),
            "--key".to_owned(),
            "sk_defs_test_1".to_owned(),
        ]);
        full
    };
    let put = with_server(&["metrics", "put", "signup", path(&metric)]);
    let put: Vec<&str> = put.iter().map(String::as_str).collect();
    let written: Value = serde_json::from_str(&stdout(&run_ok(&put))).expect("json");
    assert_eq!(written["status"], "accepted", "{written}");

    // Read-your-write: the list eventually shows the metric.
    let list = with_server(&["metrics", "list"]);
    let list: Vec<&str> = list.iter().map(String::as_str).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed: Value = serde_json::from_str(&stdout(&run_ok(&list))).expect("json");
        if listed["metrics"]
            .as_array()
            .is_some_and(|items| items.len() == 1)
        {
            assert_eq!(listed["metrics"][0]["definition"]["event"], "Signed Up");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{listed}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A bad definition fails with the server's error.
    std::fs::write(&metric, r#"{"type": "sum", "event": "Order Completed"}"#)
        .expect("writing the metric");
    let bad = with_server(&["metrics", "put", "broken", path(&metric)]);
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let output = run(&bad);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("metric.value"));

    // Segments: put, preview, members (CSV), and a precise error for a bad definition.
    let segment = dir.path().join("segment.json");
    std::fs::write(
        &segment,
        r#"{"condition": {"op": "not_performed", "event": "Order Completed"}}"#,
    )
    .expect("writing the segment");
    let put = with_server(&["segments", "put", "no_orders", path(&segment)]);
    let put: Vec<&str> = put.iter().map(String::as_str).collect();
    let written: Value = serde_json::from_str(&stdout(&run_ok(&put))).expect("json");
    assert_eq!(written["status"], "accepted", "{written}");
    let preview = with_server(&["segments", "preview", path(&segment)]);
    let preview: Vec<&str> = preview.iter().map(String::as_str).collect();
    let previewed: Value = serde_json::from_str(&stdout(&run_ok(&preview))).expect("json");
    assert_eq!(previewed["count"], 0, "no profiles yet: {previewed}");
    let members = with_server(&["segments", "members", "no_orders"]);
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let output = run(&members);
        if output.status.success() {
            assert!(stdout(&output).starts_with("profile_id,entered_at"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{output:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(
        &segment,
        r#"{"condition": {"op": "in_segment", "id": "missing"}}"#,
    )
    .expect("writing the segment");
    let bad = with_server(&["segments", "put", "broken", path(&segment)]);
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let output = run(&bad);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid_definition"));
}
