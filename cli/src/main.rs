//! The `wirecall` command line.
//!
//! Each command group lives in its own module and contributes variants to [`Command`]; adding
//! a group means adding a module, its variants and one match arm in [`main`].

mod bench_cmds;
mod codec_cmds;
mod compare;
mod load;
mod ns_cmds;
mod pick;
mod serve_cmds;

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
    /// Host the built-in demo provider (echo, add, a oneway counter, a failing method, an
    /// attribute, streams both ways, a bulk echo, a method calling back into its caller);
    /// prints the listening addresses on the first line of stdout.
    Serve(serve_cmds::ServeArgs),
    /// Call a method of a running server with arguments in the vector notation (or JSON)
    /// and print the result in the vector notation; a streamed result prints one item per
    /// line as it arrives, and a method that takes a stream of arguments reads them from
    /// stdin, one value per line.
    Call(serve_cmds::CallArgs),
    /// Print a running server's metadata: providers, methods, attributes, accepted codecs.
    Meta(serve_cmds::MetaArgs),
    /// Naming: run a name server (`ns serve`, Pyro5-compatible) and list, look up,
    /// register and remove names (`ns list|lookup|register|remove|meta|ping`).
    Ns(ns_cmds::NsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        Command::Encode(args) => ("encode", codec_cmds::encode(&args)),
        Command::Decode(args) => ("decode", codec_cmds::decode(&args)),
        Command::Conformance(args) => ("conformance", codec_cmds::conformance(&args)),
        Command::Pick(args) => ("pick", pick::run(&args)),
        Command::Bench(args) => ("bench", bench_cmds::run(&args)),
        Command::Serve(args) => ("serve", serve_cmds::serve(&args)),
        Command::Call(args) => ("call", serve_cmds::call(&args)),
        Command::Meta(args) => ("meta", serve_cmds::meta(&args)),
        Command::Ns(args) => ("ns", ns_cmds::run(&args)),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("wirecall {name}: {message}");
            ExitCode::FAILURE
        }
    }
}
