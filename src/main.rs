//! `tessera`: parse the command line and hand over to the CLI.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = tessera::cli::Cli::parse();
    std::process::exit(tessera::cli::run(cli));
}
