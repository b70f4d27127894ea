//! `hookguard`: a ready-made webhook receiver and the everyday debugging tools, built only
//! from the library's public API.
//!
//! ```text
//! hookguard serve  --config hookguard.toml
//! hookguard verify --provider github --secret S -H 'X-Hub-Signature-256: sha256=…' < body
//! hookguard sign   --provider stripe --secret whsec_… < body
//! hookguard send   --provider stripe --secret whsec_… --url http://127.0.0.1:8080/hooks/stripe < body
//! hookguard inbox  dead --config hookguard.toml
//! ```

#![forbid(unsafe_code)]

mod adopt;
mod common;
mod config;
mod inbox;
mod send;
mod serve;
mod sign;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

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
    Inbox(inbox::Args),
}

impl Cli {
    /// Parses `args` as [`Parser::try_parse_from`] does, and notes where the values came
    /// from that the commands treat apart (a shared key from the environment).
    fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Self::command();
        let matches = command.try_get_matches_from_mut(args)?;
        let mut cli = Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
        let scheme = match &mut cli.command {
            Command::Serve(_) | Command::Inbox(_) => None,
            Command::Verify(args) => Some(&mut args.scheme),
            Command::Sign(args) => Some(&mut args.scheme),
            Command::Send(args) => Some(&mut args.scheme),
        };
        if let (Some(scheme), Some((_, sub))) = (scheme, matches.subcommand()) {
            scheme.note_sources(sub);
        }
        Ok(cli)
    }
}

fn main() -> ExitCode {
    let cli = Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Send(args) => send::run(args),
        Command::Inbox(args) => inbox::run(args),
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

#[cfg(test)]
mod tests {
    use super::{Cli, common};

    /// `--provider`'s help lists every name the build knows (the top-level help says
    /// `hookguard verify --help` does; it listed four).
    #[test]
    fn the_provider_help_lists_every_name() {
        for command in ["verify", "sign", "send"] {
            let help = Cli::try_parse_args(["hookguard", command, "--help"]).unwrap_err();
            assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
            let help = help.to_string();
            let words: Vec<&str> = help.split(|c: char| c.is_whitespace() || c == ',').collect();
            for name in common::provider_names() {
                assert!(words.contains(&name), "{command} --help does not list {name}:\n{help}");
            }
        }
    }

    /// Every command's arguments, formatted with `{:?}` (plain and pretty), show no secret,
    /// shared key, header value, or URL credential, path or query.
    #[test]
    fn debug_shows_no_secret() {
        let scheme = ["-p", "github", "-s", "t0ken-secret-1", "--secret", "t0ken-secret-2"];
        let twilio = ["--shared-key", "t0ken-shared", "--shared-key-name", "setting"];
        let header = ["-H", "Authorization: Bearer t0ken-header", "-H", "X-Api-Key t0ken-malformed"];
        let url = "https://user:t0ken-user@hooks.slack.com/services/T0/B0/t0ken-path?k=t0ken-query";
        let commands: [Vec<&str>; 4] = [
            vec!["serve", "--config", "hookguard.toml"],
            [&["verify"][..], &scheme, &twilio, &header, &["--url", url]].concat(),
            [&["sign"][..], &scheme, &twilio, &["--url", url]].concat(),
            [&["send"][..], &scheme, &twilio, &header, &["--url", url, "--signed-url", url]].concat(),
        ];
        for args in commands {
            let cli = Cli::try_parse_args([&["hookguard"][..], &args].concat())
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            for shown in [format!("{cli:?}"), format!("{cli:#?}")] {
                assert!(!shown.contains("t0ken"), "{}: {shown}", args[0]);
                if args[0] != "serve" {
                    assert!(shown.contains("[redacted]"), "{}: {shown}", args[0]);
                    assert!(shown.contains("https://***@hooks.slack.com/…"), "{}: {shown}", args[0]);
                }
                if ["verify", "send"].contains(&args[0]) {
                    assert!(shown.contains("Authorization: [redacted]"), "{}: {shown}", args[0]);
                }
            }
        }
    }
}

/// The command's own parsers, fuzzed with generated input (they live in this binary,
/// which the `cargo fuzz` targets, built on the library, cannot reach): none panics, and
/// a redacted URL shows none of its secret parts.
#[cfg(test)]
mod parsers_fuzzed {
    use std::path::Path;

    use proptest::{prelude::*, sample::Index};

    use crate::{common, config};

    const EXAMPLE: &str = include_str!("../../../examples/hookguard.toml");

    /// The example configuration with up to seven byte edits (a byte removed, replaced,
    /// or inserted), so that most inputs are nearly valid and reach the checks past TOML.
    fn mangled() -> impl Strategy<Value = String> {
        proptest::collection::vec((any::<Index>(), any::<u8>(), 0..3_u8), 0..8).prop_map(|edits| {
            let mut bytes = EXAMPLE.as_bytes().to_vec();
            for (at, byte, kind) in edits {
                let i = at.index(bytes.len() + 1);
                match kind {
                    0 if i < bytes.len() => drop(bytes.remove(i)),
                    1 if i < bytes.len() => bytes[i] = byte,
                    _ => bytes.insert(i.min(bytes.len()), byte),
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn the_argument_parsers_never_panic(
            text in any::<String>(),
            shaped in "(https?|redis|postgres|mailto|unix)://[a-z:@\\[\\]0-9.%/?#=&-]{0,40}|[0-9]{1,20}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,14}(Z|[+-][0-9]{2}:[0-9]{2})|[A-Za-z-]{1,20}: ?[ -~]{0,20}",
        ) {
            for text in [text.as_str(), shaped.as_str()] {
                let _ = common::parse_header(text);
                let _ = common::parse_time(text);
                let _ = common::redact_url(text);
            }
        }

        #[test]
        fn the_config_parser_never_panics(text in mangled(), set in any::<bool>()) {
            // Every variable set (or none), so that both sides of `secret_env` are reached.
            let env = move |_: &str| set.then(|| "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
            // Beside the example, whose folder exists: `append_to`'s folder is checked.
            let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fuzz.toml");
            let _ = config::parse(&text, &file, &env);
        }

        #[test]
        fn a_redacted_url_shows_no_secret(
            secret in "[A-Za-z0-9._~!$&'()*+,;=-]{12,24}",
            scheme in prop::sample::select(vec!["https", "http", "redis", "postgres", "rediss"]),
            shape in 0..6_usize,
        ) {
            let enc: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
            let (url, host) = match shape {
                0 => (format!("{scheme}://user:{enc}@example.com:6379/0"), "example.com"),
                1 => (format!("{scheme}://{enc}@example.com/"), "example.com"),
                2 => (format!("{scheme}://example.com/api/webhooks/123/{secret}"), "example.com"),
                3 => (format!("{scheme}://example.com/p?token={secret}&x=1"), "example.com"),
                4 => (format!("{scheme}://[::1]:8080/a#{secret}"), "[::1]"),
                _ => (format!("{scheme}://10.0.0.7/{secret}/{secret}?{secret}"), "10.0.0.7"),
            };
            let shown = common::redact_url(&url);
            prop_assert!(!shown.contains(&secret) && !shown.contains(&enc), "{url} shown as {shown}");
            // Not vacuous: the origin is still shown.
            prop_assert!(shown.starts_with(&format!("{scheme}://")) && shown.contains(host), "{url} shown as {shown}");
        }
    }
}
