//! `wirecall encode`, `wirecall decode` and `wirecall conformance`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use wirecall_codecs::CodecId;
use wirecall_conformance::{codec, interop, notation, suites};

/// The seed of `--interop` (the same values as the cargo test).
const INTEROP_SEED: u64 = 0x5eed_2026;

/// Arguments of `wirecall encode`.
#[derive(Args)]
pub(crate) struct EncodeArgs {
    /// The codec: json, msgpack, cbor, bincode, postcard, ron or serpent.
    #[arg(long)]
    codec: String,
    /// Write the bytes as lowercase hex followed by a newline instead of raw bytes.
    #[arg(long)]
    hex: bool,
}

/// Arguments of `wirecall decode`.
#[derive(Args)]
pub(crate) struct DecodeArgs {
    /// The codec: json, msgpack, cbor, ron or serpent (bincode and postcard are not
    /// self-describing and cannot be decoded without a Rust type).
    #[arg(long)]
    codec: String,
    /// Read the input as hex text (whitespace ignored) instead of raw bytes.
    #[arg(long)]
    hex: bool,
}

/// Arguments of `wirecall conformance`.
#[derive(Args)]
pub(crate) struct ConformanceArgs {
    /// The folder holding the public suites (default: $WIRECALL_VECTORS, else the shared
    /// vectors folder next to the repository).
    #[arg(long)]
    vectors: Option<PathBuf>,
    /// Run only this suite (one of: json-test-suite, json-nativejson-benchmark,
    /// msgpack-test-suite, cbor-wg-test-vectors, serpent, bincode, golden).
    #[arg(long)]
    suite: Option<String>,
    /// Also print every failure, skip reason and note under its summary line.
    #[arg(long, short)]
    verbose: bool,
    /// Also cross-check json, msgpack, cbor and serpent with Python's reference libraries
    /// (Python from $WIRECALL_PYTHON, else python3; needs serpent, msgpack and cbor2).
    #[arg(long)]
    interop: bool,
    /// Number of seeded values per codec for --interop.
    #[arg(long, default_value_t = 5000)]
    interop_count: usize,
}

fn codec_by_name(name: &str) -> Result<CodecId, String> {
    CodecId::from_builtin_name(name).ok_or_else(|| {
        let known: Vec<&str> = CodecId::BUILTIN
            .iter()
            .filter_map(|c| c.builtin_name())
            .collect();
        format!("unknown codec {name:?}; use one of: {}", known.join(", "))
    })
}

fn read_stdin() -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(buf)
}

fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write stdout: {e}"))
}

/// `wirecall encode`: notation on stdin → encoded bytes on stdout.
pub(crate) fn encode(args: &EncodeArgs) -> Result<ExitCode, String> {
    let id = codec_by_name(&args.codec)?;
    let input = read_stdin()?;
    let text = String::from_utf8(input).map_err(|e| format!("stdin is not UTF-8 notation: {e}"))?;
    let value =
        notation::parse(&text).map_err(|e| format!("stdin is not a valid notation value: {e}"))?;
    let bytes = codec::encode(id, &value).map_err(|e| e.to_string())?;
    if args.hex {
        write_stdout(format!("{}\n", hex::encode(bytes)).as_bytes())?;
    } else {
        write_stdout(&bytes)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `wirecall decode`: bytes on stdin → notation on stdout.
pub(crate) fn decode(args: &DecodeArgs) -> Result<ExitCode, String> {
    let id = codec_by_name(&args.codec)?;
    let mut input = read_stdin()?;
    if args.hex {
        let text: String = String::from_utf8(input)
            .map_err(|e| format!("--hex input is not text: {e}"))?
            .split_whitespace()
            .collect();
        input = hex::decode(&text).map_err(|e| format!("--hex input is not valid hex: {e}"))?;
    }
    let value = codec::decode(id, &input).map_err(|e| e.to_string())?;
    write_stdout(format!("{}\n", notation::print(&value)).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `wirecall conformance`: runs the suites, prints `<suite>: N passed, N failed, N skipped`
/// per suite; fails when any case failed.
pub(crate) fn conformance(args: &ConformanceArgs) -> Result<ExitCode, String> {
    let dir = args
        .vectors
        .clone()
        .unwrap_or_else(wirecall_conformance::default_vectors_dir);
    if !dir.is_dir() {
        return Err(format!(
            "vectors folder {} does not exist; pass --vectors DIR or set WIRECALL_VECTORS",
            dir.display()
        ));
    }
    let reports = match &args.suite {
        Some(name) => vec![suites::run_suite(name, &dir).ok_or_else(|| {
            format!(
                "unknown suite {name:?}; use one of: {}",
                suites::SUITES.join(", ")
            )
        })?],
        None => suites::run_all(&dir),
    };
    let mut reports = reports;
    if args.interop {
        let python = interop::python_command();
        interop::python_available(&python)?;
        for id in [
            CodecId::JSON,
            CodecId::MSGPACK,
            CodecId::CBOR,
            CodecId::SERPENT,
        ] {
            let values = interop::generate(id, INTEROP_SEED, args.interop_count);
            reports.extend(interop::cross_check(&python, id, &values));
        }
    }
    let mut failed = false;
    for r in &reports {
        println!("{}", r.summary());
        failed |= !r.ok();
        for f in &r.failures {
            eprintln!("  FAIL {f}");
        }
        if args.verbose {
            for s in &r.skips {
                println!("  skip {s}");
            }
            for n in &r.notes {
                println!("  note {n}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
