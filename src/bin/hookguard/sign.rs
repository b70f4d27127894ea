//! `hookguard sign`: the headers a sender would send with a body.

use std::process::ExitCode;

use hookguard::{
    providers::Preset,
    verify::{Outgoing, SignError},
};
use http::{HeaderName, HeaderValue};
use time::OffsetDateTime;

use crate::{
    common::{self, Failure, redacted},
    verify::SchemeArgs,
};

const EXAMPLE: &str = "\
Prints one `Name: value` line per header, ready for curl -H or hookguard verify -H.

Example:
  printf 'Hello, World!' | hookguard sign --provider github --secret \"It's a Secret to Everybody\"
  # x-hub-signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17
  # x-github-delivery: msg_…

  echo '{\"id\":\"evt_1\"}' | hookguard sign --provider stripe --secret whsec_test --timestamp 1700000000";

/// Sign a body from stdin: print the headers a sender would send. `Debug` shows the URL
/// as [`common::redact_url`] does (and the secrets as `[redacted]`).
#[derive(clap::Args)]
#[command(after_help = EXAMPLE)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) scheme: SchemeArgs,
    /// The delivery id (default: a fresh `msg_…` id)
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// The timestamp to sign: unix seconds or RFC 3339 (default: now)
    #[arg(long, value_name = "TIME")]
    pub(crate) timestamp: Option<String>,
    /// The URL the delivery goes to (Twilio, HubSpot, Square and Trello sign it)
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// The request method (HubSpot signs it)
    #[arg(long, default_value = "POST")]
    pub(crate) method: String,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { scheme, id, timestamp, url, method } = self;
        f.debug_struct("Args")
            .field("scheme", scheme)
            .field("id", id)
            .field("timestamp", timestamp)
            .field("url", &url.as_deref().map(redacted::Url))
            .field("method", method)
            .finish()
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Failure> {
    let options = args.scheme.options(args.url.as_deref(), None)?;
    let scheme = common::build_scheme(&args.scheme.provider, args.scheme.secrets(), &options)?;
    let body = common::read_stdin()?;
    let at = match &args.timestamp {
        Some(t) => common::parse_time(t)?,
        None => OffsetDateTime::now_utc(),
    };
    let id = args.id.clone().unwrap_or_else(common::fresh_id);
    for (name, value) in sign(scheme.as_ref(), &body, &id, at, args.url.as_deref(), &args.method)? {
        common::say(format_args!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Signs `body` as the provider would send it.
pub(crate) fn sign(
    scheme: &dyn Preset,
    body: &[u8],
    id: &str,
    at: OffsetDateTime,
    url: Option<&str>,
    method: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let method = http::Method::from_bytes(method.as_bytes()).map_err(|_| format!("bad method `{method}`"))?;
    let mut msg = Outgoing::new(body).id(id).timestamp(at).method(method);
    if let Some(url) = url {
        msg = msg.url(url);
    }
    scheme.sign(&msg).map_err(|e| match e {
        SignError::MissingUrl => format!("{}: the URL is signed: give it with --url", scheme.provider()),
        e => format!("{}: {e}", scheme.provider()),
    })
}
