//! Runs the built `wirecall` binary: `bench rpc` against a server it starts (tcp and unix)
//! and against a running `wirecall serve` (`--connect`). Short durations keep it bounded.

use std::process::Output;
use std::time::Duration;

mod common;

use common::Server;

fn wirecall(args: &[&str]) -> Output {
    common::run_bounded(args, Duration::from_secs(60))
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("utf-8 output")
}

/// A parsed data row of the table: codec, p50 in us, p50/raw ratio, calls/s.
#[derive(Debug)]
struct Row {
    codec: String,
    p50_us: f64,
    ratio: f64,
    calls_per_sec: f64,
}

fn rows(out: &str) -> Vec<Row> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // codec frame p50 us p99 us ratio calls/s
            if f.len() != 8 || f[3] != "us" || f[5] != "us" {
                return None;
            }
            Some(Row {
                codec: f[0].to_string(),
                p50_us: f[2].parse().ok()?,
                ratio: f[6].trim_end_matches('x').parse().ok()?,
                calls_per_sec: f[7].parse().ok()?,
            })
        })
        .collect()
}

/// The raw baseline's p50 in us from the `baseline:` line.
fn baseline_p50(out: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("baseline: raw"))
        .unwrap_or_else(|| panic!("no baseline line in {out}"));
    let after = line.split("p50 ").nth(1).expect("p50 in the baseline line");
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("baseline p50 number")
}

fn check_table(out: &str, codecs: &[&str]) {
    let rows = rows(out);
    assert_eq!(
        rows.iter().map(|r| r.codec.as_str()).collect::<Vec<_>>(),
        codecs,
        "{out}"
    );
    let raw = baseline_p50(out);
    assert!(raw > 0.0, "{out}");
    for r in &rows {
        assert!(r.p50_us > 0.0 && r.calls_per_sec > 0.0, "{r:?}\n{out}");
        // The printed ratio is the printed p50 over the printed baseline.
        let expected = r.p50_us / raw;
        assert!(
            (r.ratio - expected).abs() <= 0.02 * expected + 0.01,
            "{r:?} vs baseline {raw}\n{out}"
        );
    }
}

#[test]
fn tcp_server_started_here() {
    let o = wirecall(&[
        "bench",
        "rpc",
        "--codec",
        "msgpack,postcard",
        "--duration",
        "0.2",
        "--inflight",
        "16",
    ]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        out.starts_with("rpc over tcp: server tcp://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("started here"), "{out}");
    assert!(out.contains("16 in flight on 1 connection"), "{out}");
    check_table(&out, &["msgpack", "postcard"]);
}

#[test]
fn unix_server_started_here() {
    let o = wirecall(&[
        "bench",
        "rpc",
        "--transport",
        "unix",
        "--codec",
        "cbor",
        "--duration",
        "0.2",
        "--connections",
        "2",
    ]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.starts_with("rpc over unix: server unix://"), "{out}");
    assert!(out.contains("raw unix socket ping-pong"), "{out}");
    assert!(out.contains("64 in flight on 2 connection"), "{out}");
    check_table(&out, &["cbor"]);
}

#[test]
fn connect_to_a_running_server() {
    let s = Server::start(&["--accept", "json,msgpack,postcard"]);
    let o = wirecall(&["bench", "rpc", "--connect", s.url(), "--duration", "0.2"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.contains("yours, from --connect"), "{out}");
    assert!(out.contains("local echo socket"), "{out}");
    // By default only the accepted codecs that carry a dynamic echo (not postcard).
    check_table(&out, &["json", "msgpack"]);

    // A refused codec fails with the server's accepted list.
    let o = wirecall(&[
        "bench",
        "rpc",
        "--connect",
        s.url(),
        "--codec",
        "cbor",
        "--duration",
        "0.1",
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("cbor") && err.contains("json, msgpack, postcard"),
        "{err}"
    );
}

#[test]
fn bad_options_are_one_line_errors() {
    for (args, needle) in [
        (
            vec!["bench", "rpc", "--transport", "quic"],
            "unknown transport `quic`",
        ),
        (vec!["bench", "rpc", "--codec", "nope"], "nope"),
        (vec!["bench", "rpc", "--duration", "0"], "--duration"),
    ] {
        let o = wirecall(&args);
        assert!(!o.status.success(), "{args:?}");
        let err = text(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err} lacks {needle}");
    }
}
