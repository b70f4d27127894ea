//! `hookguard inbox`: the dead letters of a durable inbox, listed, re-driven or discarded.

use std::{path::PathBuf, process::ExitCode};

use crate::{
    common::{self, Failure},
    config, serve,
};

const EXAMPLE: &str = "\
Opens the inbox the configuration's [inbox] names (sqlite, redis or postgres; the endpoints'
secrets need not be set). A job whose action failed max_attempts times is a dead letter: it
stays in the inbox, counting against its capacity, until it is re-driven (queued again as a
fresh job, for a server to process) or discarded (gone for good; a copy of it sent again is
still a duplicate). A SQLite inbox is one process's at a time: stop the server first. The
memory inbox lives in the server's process: set [inbox] dead_letters_to there instead.

`dead` prints one JSON line per dead letter, oldest first, as append_to writes a webhook
(key, endpoint, provider, id, event, timestamp, received_at, headers, body or body_base64),
with attempts, error (the last attempt's) and failed_at. `redrive` and `discard` take the
keys it prints, or --all; the exit status is 1 when a key is not a dead letter's. A dead
letter that cannot be read is left out of the list with a warning on stderr naming its key:
discard it by that key (RUST_LOG=error hides the warnings).

Example:
  hookguard inbox dead -c hookguard.toml | jq -r '.key + \"  \" + .error'
  hookguard inbox redrive -c hookguard.toml 'hooks-github:…'
  hookguard inbox discard -c hookguard.toml --all";

/// List, re-drive or discard the dead letters of a durable inbox.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the dead letters, one JSON line each, oldest first
    Dead {
        #[command(flatten)]
        config: ConfigArg,
        /// The most to print
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
    },
    /// Queue dead letters again, as fresh jobs
    Redrive(Keys),
    /// Remove dead letters for good
    Discard(Keys),
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The configuration file
    #[arg(long, short = 'c', value_name = "FILE", env = "HOOKGUARD_CONFIG")]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
struct Keys {
    #[command(flatten)]
    config: ConfigArg,
    /// Every dead letter (at most 100,000)
    #[arg(long, conflicts_with = "keys")]
    all: bool,
    /// The dead letters' keys, as `dead` prints them
    #[arg(value_name = "KEY", required_unless_present = "all")]
    keys: Vec<String>,
}

/// How many dead letters `--all` acts on at most.
const ALL: usize = 100_000;
/// How many dead letters `--all` reads at once.
const PAGE: usize = 500;

pub(crate) fn run(args: Args) -> Result<ExitCode, Failure> {
    let file = match &args.command {
        Command::Dead { config, .. } => &config.config,
        Command::Redrive(keys) | Command::Discard(keys) => &keys.config.config,
    };
    let backend = config::load_inbox(file, &serve::env_value)?;
    log_warnings();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let inbox = serve::open_inbox(&backend).await?;
        let failed = |e: hookguard::inbox::InboxError| format!("[inbox] {e}");
        let (keys, redrive) = match args.command {
            Command::Dead { limit, .. } => {
                for letter in inbox.dead_letters(limit).await.map_err(failed)? {
                    common::say(format_args!("{}", serve::dead_letter_line(&letter)))?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            Command::Redrive(keys) => (keys, true),
            Command::Discard(keys) => (keys, false),
        };
        let (verb, done) = if redrive { ("re-driven", "redrive") } else { ("discarded", "discard") };
        if keys.all {
            // A page at a time: the bodies of every dead letter at once could be more than
            // this process, or a Redis server building one reply, should hold. Each page
            // re-driven or discarded leaves the dead list, so the next one starts after it.
            // Each key once: a letter re-driven that fails again (a server running, an
            // action failing fast) is a dead letter again, and is left for next time.
            let mut seen = std::collections::HashSet::new();
            let mut count = 0;
            while count < ALL {
                let page = inbox.dead_letters(PAGE.min(ALL - count)).await.map_err(failed)?;
                let before = count;
                for letter in &page {
                    let key = letter.webhook.key();
                    if !seen.insert(key.to_owned()) {
                        continue;
                    }
                    let found = if redrive { inbox.redrive(key).await } else { inbox.discard(key).await };
                    if found.map_err(|e| format!("[inbox] cannot {done} {key}: {e}"))? {
                        count += 1;
                    }
                }
                // An empty page, or one whose letters others took meanwhile: done.
                if count == before {
                    break;
                }
            }
            common::say(format_args!("{count} dead letter(s) {verb}"))?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut code = ExitCode::SUCCESS;
        let mut count = 0;
        for key in &keys.keys {
            let found = if redrive { inbox.redrive(key).await } else { inbox.discard(key).await };
            if found.map_err(|e| format!("[inbox] cannot {done} {key}: {e}"))? {
                count += 1;
            } else {
                eprintln!("hookguard: no dead letter has the key {key}");
                code = ExitCode::from(1);
            }
        }
        common::say(format_args!("{count} dead letter(s) {verb}"))?;
        Ok::<_, Failure>(code)
    })
}

/// Sends the library's log lines of `warn` and above (or what `RUST_LOG` asks for) to
/// stderr, for a one-shot command: stdout stays the command's output (JSON lines a script
/// reads). `hookguard inbox dead` leaves an unreadable dead letter out of its list; the
/// library's warning names its key, which `inbox discard` takes.
fn log_warnings() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
}
