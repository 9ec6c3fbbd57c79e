//! Runs the built `wirecall bench load` at a small scale (50 clients x 100 calls, tcp and
//! unix, each against its own `wirecall serve` child) so the load runner cannot rot, and
//! against a running `wirecall serve` with `--connect`.

use std::time::Duration;

mod common;

use common::Server;

fn load_json(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["bench", "load", "--json"];
    all.extend_from_slice(args);
    let out = common::run_bounded(&all, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wirecall {all:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn num(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("no number `{k}` in {v}"))
}

/// Every call answered with its own payload, the figures consistent with each other.
fn check_clean(row: &serde_json::Value, calls: f64) {
    assert_eq!(num(row, "calls"), calls, "{row}");
    assert_eq!(num(row, "ok"), calls, "{row}");
    for k in ["lost", "misrouted", "corrupt", "errors"] {
        assert_eq!(num(row, k), 0.0, "{k}: {row}");
    }
    let (p50, p99, max) = (num(row, "p50_us"), num(row, "p99_us"), num(row, "max_us"));
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{row}");
    let rate = num(row, "calls_per_sec");
    let wall = num(row, "wall_s");
    assert!(
        (rate * wall - calls).abs() <= calls * 0.01,
        "calls/s x wall != calls: {row}"
    );
}

#[test]
fn fifty_clients_a_hundred_calls_each_over_tcp_and_unix_lose_and_misroute_nothing() {
    let rows = load_json(&["--clients", "50", "--calls", "100", "--inflight", "2"]);
    let transports: Vec<&str> = rows
        .iter()
        .map(|r| r["transport"].as_str().unwrap())
        .collect();
    assert_eq!(transports, ["tcp", "unix"]);
    for row in &rows {
        check_clean(row, 5000.0);
        // The server's memory was read before the clients and at the peak, and it
        // finalized cleanly on SIGTERM afterwards.
        if cfg!(target_os = "linux") {
            let before = num(row, "rss_before_kib");
            assert!(before > 0.0 && num(row, "rss_peak_kib") >= before, "{row}");
            assert!(row["rss_peak_per_conn_kib"].is_number(), "{row}");
        }
        assert_eq!(row["server_clean_exit"], serde_json::json!(true), "{row}");
    }
}

#[test]
fn load_against_a_running_server_reports_its_memory_with_its_pid() {
    let server = Server::start(&["--listen", "tcp://127.0.0.1:0"]);
    let pid = server.child.id().to_string();
    let rows = load_json(&[
        "--clients",
        "20",
        "--calls",
        "50",
        "--connect",
        server.url(),
        "--server-pid",
        &pid,
    ]);
    assert_eq!(rows.len(), 1);
    check_clean(&rows[0], 1000.0);
    if cfg!(target_os = "linux") {
        assert!(num(&rows[0], "rss_before_kib") > 0.0, "{}", rows[0]);
    }
    // Not started here, so not stopped here.
    assert!(rows[0]["server_clean_exit"].is_null(), "{}", rows[0]);
}

#[test]
fn bad_arguments_say_what_to_change() {
    let out = common::run_bounded(
        &["bench", "load", "--payload", "8"],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--payload must be at least 17"), "{err}");
}
