//! `hookguard verify`: is this captured delivery genuine?

use std::process::ExitCode;

use hookguard::verify::{Reason, Rejection, WebhookRequest};
use http::header::CONTENT_LENGTH;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::common::{self, Failure, SchemeOptions, redacted};

const EXAMPLE: &str = "\
Exit status: 0 verified (the metadata is printed as JSON), 1 rejected (the reason is printed
on stderr; never the expected signature) or stdout could not be written, 2 a usage or
configuration error.

Example:
  printf 'Hello, World!' | hookguard verify --provider github \\
      --secret \"It's a Secret to Everybody\" \\
      -H 'X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17'

  # an old capture: check it as of the time it was sent
  hookguard verify --provider stripe --secret whsec_… -H \"Stripe-Signature: $SIG\" \\
      --now 2024-05-01T12:00:00Z < event.json";

/// The provider and its keys, as `verify`, `sign` and `send` take them. `Debug` shows the
/// secrets and shared keys as `[redacted]`.
#[derive(clap::Args)]
pub(crate) struct SchemeArgs {
    // The help lists the names this build knows (`common::provider_names`).
    #[arg(long, short = 'p', value_name = "NAME", help = common::provider_help())]
    pub(crate) provider: String,
    /// Secret (repeat for rotation: every one verifies, the first signs); public keys for
    /// Ed25519/ECDSA providers; none for paypal (from the environment, ignored for it)
    #[arg(long, short = 's', value_name = "SECRET", env = "HOOKGUARD_SECRET", hide_env_values = true)]
    pub(crate) secret: Vec<String>,
    /// PayPal: the webhook id
    #[arg(long, value_name = "ID")]
    pub(crate) webhook_id: Option<String>,
    /// PayPal: the certificate (PEM file; repeat for several)
    #[arg(long, value_name = "FILE")]
    pub(crate) cert: Vec<std::path::PathBuf>,
    /// Twilio: a Webhooks Setting's shared key (repeat for rotation); requests with
    /// X-Twilio-Webhooks-Signature-Settings verify with these keys only. From the
    /// environment, it is used for twilio and ignored for other providers
    #[arg(long, value_name = "KEY", env = "HOOKGUARD_SHARED_KEY", hide_env_values = true)]
    pub(crate) shared_key: Vec<String>,
    /// Twilio (sign, send): sign as this Webhooks Setting, HMAC-SHA256 with the first
    /// --shared-key
    #[arg(long, value_name = "NAME")]
    pub(crate) shared_key_name: Option<String>,
    /// Whether `shared_key` came from `HOOKGUARD_SHARED_KEY` rather than `--shared-key`:
    /// set after parsing by [`SchemeArgs::note_sources`].
    #[arg(skip)]
    pub(crate) shared_key_from_env: bool,
    /// Whether `secret` came from `HOOKGUARD_SECRET` rather than `--secret`: set after
    /// parsing by [`SchemeArgs::note_sources`].
    #[arg(skip)]
    pub(crate) secret_from_env: bool,
}

impl std::fmt::Debug for SchemeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            provider,
            secret,
            webhook_id,
            cert,
            shared_key,
            shared_key_name,
            shared_key_from_env,
            secret_from_env,
        } = self;
        f.debug_struct("SchemeArgs")
            .field("provider", provider)
            .field("secret", &redacted::List(secret.len()))
            .field("webhook_id", webhook_id)
            .field("cert", cert)
            .field("shared_key", &redacted::List(shared_key.len()))
            .field("shared_key_name", shared_key_name)
            .field("shared_key_from_env", shared_key_from_env)
            .field("secret_from_env", secret_from_env)
            .finish()
    }
}

impl SchemeArgs {
    /// Notes where the values came from (`matches`: the subcommand's, from which `self`
    /// was parsed): the derive does not say.
    pub(crate) fn note_sources(&mut self, matches: &clap::ArgMatches) {
        self.shared_key_from_env =
            matches.value_source("shared_key") == Some(clap::parser::ValueSource::EnvVariable);
        self.secret_from_env = matches.value_source("secret") == Some(clap::parser::ValueSource::EnvVariable);
    }

    /// The secrets to use: none from `HOOKGUARD_SECRET` for paypal, which verifies with
    /// PayPal's certificate (the variable, exported for another provider, must not break
    /// the commands for it); `--secret` as given, refused by [`common::build_scheme`] for
    /// paypal.
    pub(crate) fn secrets(&self) -> &[String] {
        if self.secret_from_env && self.provider == "paypal" { &[] } else { &self.secret }
    }

    /// The shared keys to use: those from `HOOKGUARD_SHARED_KEY` only for twilio (the
    /// variable, exported for Twilio, must not break the commands for other providers);
    /// `--shared-key` as given, refused by [`common::build_scheme`] for other providers.
    fn shared_keys(&self) -> Vec<String> {
        if self.shared_key_from_env && self.provider != "twilio" {
            Vec::new()
        } else {
            self.shared_key.clone()
        }
    }

    pub(crate) fn options(
        &self,
        url: Option<&str>,
        tolerance_secs: Option<u64>,
    ) -> Result<SchemeOptions, String> {
        let certificates = self.cert.iter().map(|p| common::read_file(p)).collect::<Result<_, _>>()?;
        Ok(SchemeOptions {
            url: url.map(str::to_owned),
            tolerance_secs,
            webhook_id: self.webhook_id.clone(),
            certificates,
            shared_keys: self.shared_keys(),
            shared_key_name: self.shared_key_name.clone(),
        })
    }
}

/// Verify a delivery: the body on stdin, the headers with -H. `Debug` shows the headers'
/// names only, the URL as [`common::redact_url`] does.
#[derive(clap::Args)]
#[command(after_help = EXAMPLE)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) scheme: SchemeArgs,
    /// A request header, `Name: value` (repeat)
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The full URL the sender called (Twilio and HubSpot sign it; Square and Trello sign
    /// the URL they were registered with)
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The request method (HubSpot signs it)
    #[arg(long, default_value = "POST")]
    method: String,
    /// "Now" for the timestamp check: unix seconds or RFC 3339 (default: the clock)
    #[arg(long, value_name = "TIME")]
    now: Option<String>,
    /// Timestamp tolerance in seconds, replacing the provider's
    #[arg(long, value_name = "SECS")]
    tolerance: Option<u64>,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { scheme, headers, url, method, now, tolerance } = self;
        f.debug_struct("Args")
            .field("scheme", scheme)
            .field("headers", &redacted::Headers(headers))
            .field("url", &url.as_deref().map(redacted::Url))
            .field("method", method)
            .field("now", now)
            .field("tolerance", tolerance)
            .finish()
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Failure> {
    let options = args.scheme.options(args.url.as_deref(), args.tolerance)?;
    let scheme = common::build_scheme(&args.scheme.provider, args.scheme.secrets(), &options)?;
    let now = match &args.now {
        Some(t) => common::parse_time(t)?,
        None => OffsetDateTime::now_utc(),
    };
    let method = http::Method::from_bytes(args.method.as_bytes())
        .map_err(|_| format!("bad method `{}`", args.method))?;
    let path = args.url.as_deref().map_or("/", path_and_query);
    let mut request = http::Request::builder().method(method).uri(path);
    for h in &args.headers {
        let (name, value) = common::parse_header(h)?;
        request = request.header(name, value);
    }
    let body = common::read_stdin()?;
    let request = request.body(body).map_err(|e| format!("cannot build the request: {e}"))?;

    if let Some(declared) = request.headers().get(CONTENT_LENGTH) {
        let actual = request.body().len();
        match declared.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()) {
            Some(n) if n == actual => {}
            Some(n) => {
                eprintln!("rejected: body is {actual} bytes but Content-Length said {n}");
                if n.checked_add(1) == Some(actual) && request.body().ends_with(b"\n") {
                    eprintln!(
                        "hint: the body ends with a newline the sender did not send (echo adds one: use printf)"
                    );
                }
                return Ok(ExitCode::from(1));
            }
            None => {
                eprintln!("rejected: Content-Length `{}` is not a number", declared.to_str().unwrap_or("?"));
                return Ok(ExitCode::from(1));
            }
        }
    }

    let mut view = WebhookRequest::from_request(&request);
    if let Some(url) = &args.url {
        view = view.with_url(url);
    }
    match scheme.verify(&view, now) {
        Ok(verified) => {
            let timestamp = verified.timestamp();
            let out = serde_json::json!({
                "verified": true,
                "provider": verified.provider(),
                "id": verified.id(),
                "event": verified.event(),
                "timestamp": timestamp.and_then(|t| t.format(&Rfc3339).ok()),
                "timestamp_unix": timestamp.map(OffsetDateTime::unix_timestamp),
                "key_index": verified.key_index(),
                "id_signed": verified.id_is_signed(),
                // The inbox's key, as the library makes it: the id only when the signature
                // covers it (GitHub's X-GitHub-Delivery is not: anyone holding a delivery
                // could resend it under a new id), else the hex fingerprint; none for a
                // delivery without a replay key (Dropbox's: each is new).
                "replay_key": verified.has_replay_key(),
                "dedup_key": match verified.id().filter(|_| verified.id_is_signed()) {
                    _ if !verified.has_replay_key() => None,
                    Some(id) => Some(id.to_owned()),
                    None => Some(const_hex::encode(verified.dedup_key())),
                },
            });
            common::say(format_args!("{out}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(rejection) => {
            eprintln!("rejected: {rejection}");
            if let Some(hint) = hint(&rejection, &args, request.headers(), request.body()) {
                eprintln!("hint: {hint}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// The path and query of a URL (`https://h/p?q` → `/p?q`).
pub(crate) fn path_and_query(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |i| &rest[i..])
}

fn hint(rejection: &Rejection, args: &Args, headers: &http::HeaderMap, body: &[u8]) -> Option<String> {
    match rejection.reason() {
        Reason::TimestampTooOld | Reason::TimestampInFuture if args.now.is_none() => {
            Some("to check an old capture, pass --now with the time it was sent".into())
        }
        Reason::SignatureMismatch => {
            let mut hints =
                vec!["check the secret (the whole string, prefix included, as the provider shows it)"];
            if body.ends_with(b"\n") {
                hints.push("the body ends with a newline: is it part of what was sent?");
            }
            if args.url.is_none() {
                hints.push("providers that sign the URL need --url");
            }
            Some(hints.join("; "))
        }
        Reason::MissingSignature | Reason::MissingHeader | Reason::MissingTimestamp => {
            let mut names: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
            names.sort_unstable();
            Some(if names.is_empty() {
                "no headers were given: add them with -H 'Name: value'".into()
            } else {
                format!("headers given: {}", names.join(", "))
            })
        }
        Reason::MissingUrl => Some("give the URL the sender called with --url".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::path_and_query;

    #[test]
    fn paths() {
        assert_eq!(path_and_query("https://example.com/a/b?x=1"), "/a/b?x=1");
        assert_eq!(path_and_query("https://example.com"), "/");
        assert_eq!(path_and_query("/hooks"), "/hooks");
    }
}
