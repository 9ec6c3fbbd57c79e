//! The `wirecall` command line.
//!
//! Each command group lives in its own module and contributes variants to [`Command`]; adding
//! a group means adding a module, its variants and one match arm in [`main`].

mod bench_cmds;
mod codec_cmds;
mod pick;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// wirecall: remote calls with pluggable serialization.
#[derive(Parser)]
#[command(name = "wirecall", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every `wirecall` subcommand.
#[derive(Subcommand)]
enum Command {
    /// Encode a value written in the vector notation (stdin) with a codec (stdout).
    Encode(codec_cmds::EncodeArgs),
    /// Decode bytes (stdin) with a codec and print the value in the vector notation.
    Decode(codec_cmds::DecodeArgs),
    /// Run every conformance suite and print one summary line per suite.
    Conformance(codec_cmds::ConformanceArgs),
    /// Measure every codec on representative payloads (or your --sample files) and
    /// recommend one, with the configuration lines to use it.
    Pick(pick::PickArgs),
    /// Benchmarks printed as ratios against a baseline measured in the same run.
    Bench(bench_cmds::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        Command::Encode(args) => ("encode", codec_cmds::encode(&args)),
        Command::Decode(args) => ("decode", codec_cmds::decode(&args)),
        Command::Conformance(args) => ("conformance", codec_cmds::conformance(&args)),
        Command::Pick(args) => ("pick", pick::run(&args)),
        Command::Bench(args) => ("bench", bench_cmds::run(&args)),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("wirecall {name}: {message}");
            ExitCode::FAILURE
        }
    }
}
