//! `wirecall pick` and `wirecall bench codecs`, run as the built binary.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value as Json;
use wirecall_codecs::{CodecId, Value};
use wirecall_conformance::notation;

fn wirecall(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wirecall"))
        .args(args)
        .output()
        .expect("the wirecall binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `pick --json` with `args` and parses the report; exit status 0 or 2 (no codec
/// qualifies) are both reports.
fn pick_json(args: &[&str]) -> Json {
    let mut all = vec!["pick", "--json"];
    all.extend_from_slice(args);
    let o = wirecall(&all);
    let code = o.status.code();
    assert!(
        code == Some(0) || code == Some(2),
        "pick {args:?} failed ({code:?}): {}",
        stderr(&o)
    );
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&o)))
}

fn codecs(doc: &Json) -> &Vec<Json> {
    doc["codecs"].as_array().expect("codecs array")
}

fn codec<'a>(doc: &'a Json, name: &str) -> &'a Json {
    codecs(doc)
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no row for {name}"))
}

fn all_names() -> Vec<&'static str> {
    wirecall_benches::measure::codecs()
        .iter()
        .map(|c| c.name)
        .collect()
}

fn encoded_len(name: &str, v: &Value) -> usize {
    let id = CodecId::from_builtin_name(name).expect("builtin");
    let mut out = Vec::new();
    wirecall_benches::measure::encode_value(id, v, &mut out).expect("encodes");
    out.len()
}

fn dump_builtins(dir: &Path) -> Vec<(String, Value)> {
    let o = wirecall(&["pick", "--dump-samples", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut out = Vec::new();
    for line in stdout(&o).lines() {
        let p = Path::new(line);
        let text = std::fs::read_to_string(p).unwrap();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        out.push((name, notation::parse(&text).unwrap()));
    }
    assert_eq!(out.len(), 5, "five built-in payloads");
    out
}

#[test]
fn quick_json_has_every_codec_and_true_sizes() {
    let doc = pick_json(&["--quick"]);
    assert_eq!(doc["schema"], "wirecall-pick/1");
    let mut names: Vec<&str> = codecs(&doc)
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    let mut want = all_names();
    want.sort_unstable();
    assert_eq!(names, want);
    assert!(
        doc["wall_time_s"].as_f64().unwrap() < 10.0,
        "--quick took too long"
    );
    // Exactly one recommendation, and it is not excluded.
    let recs: Vec<&Json> = codecs(&doc)
        .iter()
        .filter(|c| c["recommended"] == true)
        .collect();
    assert_eq!(recs.len(), 1);
    assert!(recs[0]["excluded"].is_null());
    assert_eq!(doc["recommended"], recs[0]["name"]);
    let config = doc["config"].as_array().unwrap();
    assert_eq!(
        config[0].as_str().unwrap(),
        format!("WIRECALL_CODEC={}", recs[0]["name"].as_str().unwrap())
    );
    assert!(config[1]
        .as_str()
        .unwrap()
        .starts_with("WIRECALL_CODECS_ACCEPTED="));
    assert!(config[2].as_str().unwrap().contains(".accept(["));

    // Value-path sizes of the built-in payloads equal what the codecs produce for the
    // same values (dumped as notation files); per-sample sizes add up to the totals.
    let dir = tempfile::tempdir().unwrap();
    let values = dump_builtins(dir.path());
    for c in codecs(&doc) {
        let name = c["name"].as_str().unwrap();
        let mut total = 0;
        for s in c["samples"].as_array().unwrap() {
            assert_eq!(s["path"], "typed");
            total += s["primary"]["size"].as_u64().unwrap();
            let sample = s["sample"].as_str().unwrap();
            let (_, v) = values.iter().find(|(n, _)| n == sample).unwrap();
            assert_eq!(
                s["value_path"]["size"].as_u64().unwrap() as usize,
                encoded_len(name, v),
                "{name} {sample}"
            );
            let t = &s["primary"]["encode_ns"];
            assert!(t["p10"].as_f64().unwrap() <= t["median"].as_f64().unwrap());
            assert!(t["median"].as_f64().unwrap() <= t["p90"].as_f64().unwrap());
        }
        assert_eq!(c["size"].as_u64().unwrap(), total, "{name}");
    }
}

#[test]
fn user_sample_sizes_equal_codec_output() {
    let dir = tempfile::tempdir().unwrap();
    let values = dump_builtins(dir.path());
    let doc = pick_json(&[
        "--quick",
        "--duration",
        "0.5",
        "--sample",
        dir.path().to_str().unwrap(),
    ]);
    for c in codecs(&doc) {
        let name = c["name"].as_str().unwrap();
        for s in c["samples"].as_array().unwrap() {
            assert_eq!(s["path"], "value");
            let file = s["sample"].as_str().unwrap();
            let stem = file.trim_end_matches(".json");
            let (_, v) = values.iter().find(|(n, _)| n == stem).unwrap();
            assert_eq!(
                s["primary"]["size"].as_u64().unwrap() as usize,
                encoded_len(name, v),
                "{name} {file}"
            );
        }
    }
}

/// Whether a codec has a `--need` property.
type HasProperty = fn(&wirecall_codecs::CodecInfo) -> bool;

fn info(name: &str) -> wirecall_codecs::CodecInfo {
    wirecall_benches::measure::info(CodecId::from_builtin_name(name).unwrap()).unwrap()
}

#[test]
fn recommendation_obeys_every_need_and_max_size() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("args.json");
    std::fs::write(
        &sample,
        r#"{"user": "ada", "ids": [1, 2, 3], "score": 0.5, "blob": {"$bytes": "00ff10"}}"#,
    )
    .unwrap();
    let s = sample.to_str().unwrap();
    let checks: [(&str, HasProperty); 3] = [
        ("python", |i| i.python_interop),
        ("human-readable", |i| i.human_readable),
        ("self-describing", |i| i.self_describing),
    ];
    for (need, has) in checks {
        for prefer in ["size", "cpu"] {
            let doc = pick_json(&[
                "--quick",
                "--no-rpc",
                "--duration",
                "0.2",
                "--sample",
                s,
                "--need",
                need,
                "--prefer",
                prefer,
            ]);
            for c in codecs(&doc) {
                let i = info(c["name"].as_str().unwrap());
                if !has(&i) {
                    assert_eq!(c["recommended"], false, "{need}: {}", i.name);
                    let why = c["excluded"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{} not excluded for {need}", i.name));
                    assert!(why.contains(&format!("--need {need}")), "{why}");
                }
            }
            let rec = doc["recommended"].as_str().expect("some codec qualifies");
            assert!(has(&info(rec)), "{need} recommended {rec}");
        }
    }
    // --max-size between the smallest and the largest encoding excludes the larger ones.
    let doc = pick_json(&["--quick", "--no-rpc", "--duration", "0.2", "--sample", s]);
    let mut sizes: Vec<u64> = codecs(&doc)
        .iter()
        .map(|c| c["largest"]["size"].as_u64().unwrap())
        .collect();
    sizes.sort_unstable();
    let limit = (sizes[0] + sizes[sizes.len() - 1]) / 2;
    let limit_s = limit.to_string();
    let doc = pick_json(&[
        "--quick",
        "--no-rpc",
        "--duration",
        "0.2",
        "--sample",
        s,
        "--max-size",
        &limit_s,
    ]);
    let mut excluded = 0;
    for c in codecs(&doc) {
        let size = c["largest"]["size"].as_u64().unwrap();
        if size > limit {
            excluded += 1;
            assert_eq!(c["recommended"], false);
            assert!(
                c["excluded"].as_str().unwrap().contains("--max-size"),
                "{c}"
            );
        }
    }
    assert!(excluded > 0);
    let rec = doc["recommended"].as_str().unwrap();
    assert!(codec(&doc, rec)["largest"]["size"].as_u64().unwrap() <= limit);
    // Unmaintained format crates (bincode) are excluded unless asked for.
    for c in codecs(&doc) {
        let unmaintained = !info(c["name"].as_str().unwrap()).maintained;
        if unmaintained && c["largest"]["size"].as_u64().unwrap() <= limit {
            assert!(
                c["excluded"].as_str().unwrap().contains("unmaintained"),
                "{c}"
            );
        }
    }
    let doc = pick_json(&[
        "--quick",
        "--no-rpc",
        "--duration",
        "0.2",
        "--sample",
        s,
        "--allow-unmaintained",
    ]);
    assert!(
        codecs(&doc).iter().all(|c| c["excluded"].is_null()),
        "{doc}"
    );
    // Nothing fits: no recommendation, exit status 2.
    let o = wirecall(&[
        "pick",
        "--quick",
        "--no-rpc",
        "--duration",
        "0.2",
        "--sample",
        s,
        "--max-size",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("no codec meets the constraints"),
        "{}",
        stdout(&o)
    );
}

fn one_error_line(o: &Output) -> String {
    assert!(!o.status.success());
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(o.stdout.is_empty());
    err
}

#[test]
fn bad_samples_give_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let o = wirecall(&["pick", "--quick", "--sample", missing.to_str().unwrap()]);
    let err = one_error_line(&o);
    assert!(
        err.contains("nope.json") && err.contains("cannot read"),
        "{err}"
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"a\": 1,\n  \"b\": [1, 2,, 3]}\n").unwrap();
    let err = one_error_line(&wirecall(&["pick", "--sample", bad.to_str().unwrap()]));
    assert!(err.contains("bad.json:2:"), "file:line:column: {err}");
    assert!(err.contains("invalid JSON"), "{err}");

    let tag = dir.path().join("tag.json");
    std::fs::write(&tag, r#"{"x": {"$bytes": "0g"}}"#).unwrap();
    let err = one_error_line(&wirecall(&["pick", "--sample", tag.to_str().unwrap()]));
    assert!(err.contains("tag.json:1:"), "{err}");
    assert!(err.contains("$bytes"), "{err}");

    let err = one_error_line(&wirecall(&["pick", "--codecs", "json,nope"]));
    assert!(err.contains("nope") && err.contains("msgpack"), "{err}");
}

#[test]
fn lossy_samples_report_losses_in_the_right_rows() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    w("keys.json", r#"{"$map": [[1, "one"], [2, "two"]]}"#);
    w(
        "bigint.json",
        r#"{"n": {"$int": "340282366920938463463374607431768211456"}}"#,
    );
    w(
        "nan.json",
        r#"[1.5, {"$float": "nan"}, {"$float": "-inf"}]"#,
    );
    w("tuple.json", r#"{"$tuple": [1, "a"]}"#);
    let doc = pick_json(&[
        "--quick",
        "--duration",
        "0.5",
        "--sample",
        dir.path().to_str().unwrap(),
    ]);
    let kinds = |codec_name: &str, sample: &str| -> Vec<String> {
        codec(&doc, codec_name)["round_trip"]["losses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["sample"] == sample)
            .map(|l| l["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    let problems = |codec_name: &str| -> String {
        codec(&doc, codec_name)["round_trip"]["problems"].to_string()
    };
    // JSON turns integer keys into strings and tuples into lists.
    assert_eq!(kinds("json", "keys.json"), ["nonstring_key"]);
    assert_eq!(kinds("json", "tuple.json"), ["tuple_to_list"]);
    assert!(
        kinds("json", "nan.json").is_empty(),
        "Python's json keeps NaN"
    );
    assert!(
        kinds("json", "bigint.json").is_empty(),
        "json keeps big ints"
    );
    assert_eq!(codec(&doc, "json")["round_trip"]["exact"], false);
    // msgpack has no integers beyond 64 bits: an encode error in its row, not a crash.
    assert!(
        problems("msgpack").contains("cannot encode bigint.json"),
        "{}",
        problems("msgpack")
    );
    assert!(codec(&doc, "msgpack")["excluded"]
        .as_str()
        .unwrap()
        .contains("bigint.json"));
    assert!(kinds("msgpack", "tuple.json").contains(&"tuple_to_list".to_owned()));
    // CBOR keeps integer keys and big ints (bignum tags).
    assert!(kinds("cbor", "keys.json").is_empty());
    assert!(kinds("cbor", "bigint.json").is_empty());
    // Not self-describing: honest "needs a Rust type", exact unknown.
    for name in ["bincode", "postcard"] {
        if all_names().contains(&name) {
            let c = codec(&doc, name);
            assert!(
                problems(name).contains("round trip needs a Rust type"),
                "{name}"
            );
            let keys = c["samples"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["sample"] == "keys.json")
                .unwrap();
            let rt = &keys["primary"]["round_trip"];
            assert!(rt["exact"].is_null(), "{name}: {rt}");
            assert!(rt["problem"]
                .as_str()
                .unwrap()
                .contains("needs a Rust type"));
        }
    }
    // serpent writes Python literals: tuples and int keys survive, NaN does not (Python's
    // serpent writes it as a float-class dict).
    if all_names().contains(&"serpent") {
        assert!(kinds("serpent", "nan.json").contains(&"nan".to_owned()));
    }
    // serpent writes Python literals: tuples and int keys survive.
    if all_names().contains(&"serpent") {
        assert!(kinds("serpent", "tuple.json").is_empty());
        assert!(kinds("serpent", "keys.json").is_empty());
    }
}

/// A minimal well-formedness check: tags nest and close, attributes are quoted.
fn well_formed(svg: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').ok_or("unclosed tag")? + start;
        let tag = &rest[start + 1..end];
        if tag.matches('"').count() % 2 != 0 {
            return Err(format!("unbalanced quotes in <{tag}>"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or(format!("stray </{name}>"))?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap_or("").to_owned();
            stack.push(name);
        }
        rest = &rest[end + 1..];
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed: {stack:?}"))
    }
}

#[test]
fn plot_writes_an_svg_naming_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("pick.svg");
    let o = wirecall(&[
        "pick",
        "--quick",
        "--duration",
        "0.5",
        "--per-sample",
        "--plot",
        svg_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("Recommended:") && out.contains("WIRECALL_CODEC="),
        "{out}"
    );
    // --per-sample: one line per (sample, codec) before the totals.
    for name in all_names() {
        assert!(
            out.lines()
                .any(|l| l.starts_with("nested_doc") && l.contains(name)),
            "{name}: {out}"
        );
    }
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    well_formed(&svg).unwrap();
    for name in all_names() {
        assert!(
            svg.contains(&format!(">{name}")),
            "{name} missing from the plot"
        );
    }
    assert!(svg.contains("(recommended)"));
    assert!(svg.contains("<circle"));
    // The RPC stage's columns and the raw baseline they compare with.
    for needle in [
        "tcp p50/p99 µs",
        "tcp calls/s",
        "unix p50/p99 µs",
        "unix calls/s",
        "Raw socket ping-pong",
        "echo call of a 32-byte string",
        "x this)",
    ] {
        assert!(out.contains(needle), "{needle} missing: {out}");
    }
}

/// Checks one codec's RPC figures over `transport`: the call must have worked (no error)
/// and every figure must be a positive number.
fn check_rpc(name: &str, transport: &str, f: &Json) {
    assert!(
        f["error"].is_null(),
        "{name} over {transport}: the RPC stage failed: {}",
        f["error"]
    );
    let p50 = f["p50_ns"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} {transport}: {f}"));
    let p99 = f["p99_ns"].as_u64().unwrap();
    assert!(p50 > 0 && p50 <= p99, "{name} {transport}: {f}");
    assert!(f["latency_samples"].as_u64().unwrap() > 0, "{f}");
    assert!(f["calls_per_sec"].as_f64().unwrap() > 0.0, "{f}");
    assert!(f["calls"].as_u64().unwrap() > 0, "{f}");
    assert!(f["frame_len"].as_u64().unwrap() > 32, "{f}");
}

#[test]
#[should_panic(expected = "the RPC stage failed")]
fn an_rpc_cell_that_failed_fails_the_check() {
    // The shape `pick --json` gives a cell whose echo call failed: an error sentence and
    // null figures. That is a failure, however well-formed.
    let cell: Json = serde_json::from_str(
        r#"{"error": "connection refused", "p50_ns": null, "p99_ns": null,
            "calls_per_sec": null, "calls": null, "latency_samples": null, "frame_len": null}"#,
    )
    .unwrap();
    check_rpc("json", "unix", &cell);
}

#[test]
fn rpc_stage_measures_every_codec_on_both_transports() {
    let doc = pick_json(&["--quick"]);
    let rpc = &doc["rpc"];
    assert_eq!(rpc["per_measurement_ms"].as_f64(), Some(50.0), "{rpc}");
    assert_eq!(rpc["inflight"], 64);
    for t in ["tcp", "unix"] {
        let b = &rpc["baselines"][t];
        assert!(b["p50_ns"].as_u64().unwrap() > 0, "{t}: {rpc}");
        assert!(b["bytes"].as_u64().unwrap() > 32, "{t}: {rpc}");
    }
    let mut measured = 0;
    for c in codecs(&doc) {
        let name = c["name"].as_str().unwrap();
        for t in ["tcp", "unix"] {
            check_rpc(name, t, &c["rpc"][t]);
            measured += 1;
        }
        // --prefer latency (the default) counts the measured tcp round trip once per
        // sample: the score is at least that.
        if let (Some(score), Some(p50)) = (c["score"].as_f64(), c["rpc"]["tcp"]["p50_ns"].as_f64())
        {
            let samples = c["samples"].as_array().unwrap().len() as f64;
            assert!(
                score >= p50 * samples,
                "{name}: {score} < {samples} x {p50}"
            );
        }
    }
    // Every codec x transport cell, not just some.
    assert_eq!(measured, 2 * all_names().len(), "{doc}");

    // --no-rpc leaves the stage out of the document and of the score.
    let doc = pick_json(&["--quick", "--no-rpc", "--duration", "0.3"]);
    assert!(doc["rpc"].is_null(), "{}", doc["rpc"]);
    for c in codecs(&doc) {
        assert!(c["rpc"].is_null(), "{c}");
    }
    let o = wirecall(&["pick", "--quick", "--no-rpc", "--duration", "0.3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        !out.contains("calls/s") && !out.contains("ping-pong"),
        "{out}"
    );
}

#[test]
fn bench_codecs_prints_ratios_against_the_format_crates() {
    let o = wirecall(&[
        "bench",
        "codecs",
        "--duration",
        "0.5",
        "--codecs",
        "json,msgpack,postcard",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "serde_json",
        "rmp-serde",
        "postcard",
        "rpc_args",
        "blob",
        "ratio",
    ] {
        assert!(out.contains(needle), "{needle} missing: {out}");
    }
    // wirecall's typed path writes exactly what the format crate writes.
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("rpc_args")).collect();
    assert_eq!(rows.len(), 3, "{out}");
    for r in rows {
        assert!(r.contains(" yes "), "same bytes: {r}");
        assert!(r.matches('x').count() >= 2, "ratios: {r}");
    }
}

#[test]
fn need_python_counts_what_python_sees() {
    // Built-in payloads round-trip exactly through the typed path, but a Python peer sees
    // the Value path, where JSON has no bytes: with --need python that is a loss.
    let doc = pick_json(&[
        "--quick",
        "--no-rpc",
        "--duration",
        "0.3",
        "--codecs",
        "json,msgpack",
        "--need",
        "python",
    ]);
    let json = codec(&doc, "json");
    assert_eq!(json["round_trip"]["exact"], false);
    let losses = json["round_trip"]["losses"].as_array().unwrap();
    assert!(
        losses.iter().any(|l| l["kind"] == "bytes_to_list"
            && l["sample"]
                .as_str()
                .unwrap()
                .contains("as seen from Python")),
        "{losses:?}"
    );
    assert_eq!(codec(&doc, "msgpack")["round_trip"]["exact"], true);
    assert_eq!(doc["recommended"], "msgpack");
}
