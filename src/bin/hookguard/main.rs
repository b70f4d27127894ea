//! `hookguard`: a ready-made webhook receiver and the everyday debugging tools, built only
//! from the library's public API.
//!
//! ```text
//! hookguard serve  --config hookguard.toml
//! hookguard verify --provider github --secret S -H 'X-Hub-Signature-256: sha256=…' < body
//! hookguard sign   --provider stripe --secret whsec_… < body
//! hookguard send   --provider stripe --secret whsec_… --url http://127.0.0.1:8080/hooks/stripe < body
//! ```

mod adopt;
mod common;
mod config;
mod send;
mod serve;
mod sign;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Receive, verify, sign and send webhooks.
#[derive(Debug, Parser)]
#[command(
    name = "hookguard",
    version,
    about = "Receive, verify, sign and send webhooks",
    after_help = "Examples:\n  hookguard serve --config examples/hookguard.toml\n  printf 'Hello, World!' | hookguard sign --provider github --secret \"It's a Secret to Everybody\"\n\nProvider names are those of PROVIDERS.md in lower case with dashes (`hookguard verify --help` lists them)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve::Args),
    Verify(verify::Args),
    Sign(sign::Args),
    Send(send::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Send(args) => send::run(args),
    };
    match result {
        Ok(code) => code,
        Err(common::Failure::Usage(e)) => {
            eprintln!("hookguard: {e}");
            ExitCode::from(2)
        }
        Err(common::Failure::Output(e)) => {
            eprintln!("hookguard: {e}");
            ExitCode::from(1)
        }
    }
}
