//! The `wirecall` command line.
use clap::Parser;

/// wirecall: remote calls with pluggable serialization.
#[derive(Parser)]
#[command(name = "wirecall", version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
