//! `hookguard send`: sign a body and POST it, as the provider would.

use std::{
    collections::BTreeMap,
    io::{IsTerminal as _, Write as _},
    process::ExitCode,
    time::{Duration, Instant},
};

use http::header::CONTENT_TYPE;
use time::OffsetDateTime;

use crate::{
    common::{self, Failure, redacted},
    sign,
    verify::SchemeArgs,
};

const EXAMPLE: &str = "\
Prints the response status line and body (at most 64 KiB of it; a redirect is printed, not
followed). With --repeat, a progress line on stderr and a summary of the statuses. Exit
status 0 when every response was 2xx, 1 otherwise (or when stdout could not be written), 2
a usage error (a --url that is not http:// or https:// with a host among them, before
anything is sent).

--repeat N sends the same body N times, one after the other, each signed anew with a fresh
id (unless --id) and the time of sending (unless --timestamp). The receiver counts them as
N deliveries only when the provider signs that id (standard-webhooks, svix): GitHub's
delivery id is not signed (its replay key is the signature, the same for the same body) and
Stripe's is the body's `id`, so every delivery after the first is a duplicate (200).

Example:
  echo '{\"id\":\"evt_1\",\"type\":\"ping\"}' | hookguard send --provider stripe \\
      --secret whsec_demo_stripe_secret --url http://127.0.0.1:8080/hooks/stripe
  # HTTP 202 Accepted    (the server answers with no body)

  # a load test: 1000 deliveries, each a new one (standard-webhooks signs the fresh id)
  hookguard send -p standard-webhooks -s whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \\
      --url http://127.0.0.1:8080/hooks/standard-webhooks --repeat 1000 < payload.json";

/// Sign a body from stdin and POST it to --url; print the response. `Debug` shows the URLs
/// as [`common::redact_url`] does, the headers' names only (and the secrets as
/// `[redacted]`).
#[derive(clap::Args)]
#[command(after_help = EXAMPLE)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) scheme: SchemeArgs,
    /// Where to send it: an http:// or https:// URL with a host, checked first (also the URL
    /// signed, for providers that sign it: as it is sent (percent-encoded where needed,
    /// without dot segments or fragment) for twilio and hubspot, as typed for square and
    /// trello, which sign the URL registered with them)
    #[arg(long, value_name = "URL")]
    url: String,
    /// The URL to sign when it differs from --url (Square's and Trello's registered URL
    /// behind a proxy)
    #[arg(long, value_name = "URL")]
    signed_url: Option<String>,
    /// An extra request header, `Name: value` (repeat); it replaces a signed header of the
    /// same name (to send a tampered signature). `Content-Type` defaults to JSON for a JSON
    /// body, form for `a=b&…`
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The delivery id (default: a fresh one per delivery); with --repeat, the same id
    /// makes every delivery after the first a duplicate
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// The timestamp to sign: unix seconds or RFC 3339 (default: now)
    #[arg(long, value_name = "TIME")]
    timestamp: Option<String>,
    /// The request method
    #[arg(long, default_value = "POST")]
    method: String,
    /// Send this many deliveries, one after the other (at least 1)
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Seconds to wait for each response (at least 1)
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { scheme, url, signed_url, headers, id, timestamp, method, repeat, timeout } = self;
        f.debug_struct("Args")
            .field("scheme", scheme)
            .field("url", &redacted::Url(url))
            .field("signed_url", &signed_url.as_deref().map(redacted::Url))
            .field("headers", &redacted::Headers(headers))
            .field("id", id)
            .field("timestamp", timestamp)
            .field("method", method)
            .field("repeat", repeat)
            .field("timeout", timeout)
            .finish()
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Failure> {
    let url = check_url(&args.url)?;
    // A provider that signs the URL it calls (Twilio, HubSpot) signs it as it is sent:
    // reqwest sends it as the `url` crate parsed it (spaces and non-ASCII percent-encoded,
    // dot segments removed, no fragment), which the receiver sees. Square and Trello sign
    // the URL registered with them, which the receiver holds as configured: as typed.
    let signed_url = args.signed_url.clone().unwrap_or_else(|| {
        if common::REGISTERED_URL.contains(&args.scheme.provider.as_str()) {
            args.url.clone()
        } else {
            url.as_str().to_owned()
        }
    });
    let options = args.scheme.options(Some(&signed_url), None)?;
    let scheme = common::build_scheme(&args.scheme.provider, args.scheme.secrets(), &options)?;
    let body = common::read_stdin()?;
    let fixed_at = args.timestamp.as_deref().map(common::parse_time).transpose()?;
    let mut extra = Vec::new();
    for h in &args.headers {
        extra.push(common::parse_header(h)?);
    }
    if !extra.iter().any(|(n, _)| n == CONTENT_TYPE) {
        extra.push((CONTENT_TYPE, http::HeaderValue::from_static(guess_content_type(&body))));
    }
    let method = reqwest::Method::from_bytes(args.method.as_bytes())
        .map_err(|_| format!("bad method `{}`", args.method))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        // A redirect is reported as it is, not followed (as a GET without the body).
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(args.timeout))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let progress = Progress::new(args.repeat);
        let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
        let mut all_ok = true;
        for n in 1..=args.repeat {
            let id = args.id.clone().unwrap_or_else(common::fresh_id);
            let at = fixed_at.unwrap_or_else(OffsetDateTime::now_utc);
            let signed = sign::sign(scheme.as_ref(), &body, &id, at, Some(&signed_url), &args.method)?;
            let request = client
                .request(method.clone(), url.clone())
                .headers(headers(signed, &extra))
                .body(body.clone());
            let (status, text) = match request.send().await {
                Ok(res) => {
                    let status = res.status();
                    let (body, truncated) = capped_body(res).await;
                    let mut text = String::from_utf8_lossy(&body).into_owned();
                    if truncated {
                        text.push_str("\n(truncated: the body is longer than 64 KiB)");
                    }
                    (format!("HTTP {status}"), Some((status, text)))
                }
                // The error without the URL: it may hold credentials.
                Err(e) => (format!("error: {}", common::error_chain(&e.without_url())), None),
            };
            all_ok &= text.as_ref().is_some_and(|(s, _)| s.is_success());
            if args.repeat == 1 {
                common::say(format_args!("{status}"))?;
                if let Some((_, text)) = text {
                    common::say(format_args!("{text}"))?;
                }
            } else {
                *statuses.entry(status).or_default() += 1;
                progress.tick(n, &statuses);
            }
        }
        if args.repeat > 1 {
            progress.finish();
            let summary: Vec<String> = statuses.iter().map(|(s, n)| format!("{n} × {s}")).collect();
            common::say(format_args!("{} sent: {}", args.repeat, summary.join(", ")))?;
        }
        Ok::<_, Failure>(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

/// `--url` checked before anything is read or sent: an http or https URL with a host. One
/// without a scheme (`localhost:8080/hooks/github` reads as the scheme `localhost`) failed
/// each attempt in turn, then the command with exit status 1. The URL is not repeated: it
/// may hold credentials. The URL parsed, without its fragment (not sent), is returned.
fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()));
    if let Some(mut parsed) = parsed {
        parsed.set_fragment(None);
        return Ok(parsed);
    }
    let hint = if url.contains("://") { "" } else { " (the scheme is missing)" };
    Err(format!(
        "--url must be an http:// or https:// URL with a host, as http://127.0.0.1:8080/hooks/github{hint}"
    ))
}

/// The most of a response body that is read (and printed).
const BODY_CAP: usize = 64 * 1024;

/// The response body up to [`BODY_CAP`] bytes, and whether there was more (not read). A
/// body that fails half-way is what arrived.
async fn capped_body(mut res: reqwest::Response) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        let room = BODY_CAP - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return (body, true);
        }
        body.extend_from_slice(&chunk);
    }
    (body, false)
}

/// The request's headers: the signed ones, then the `-H` ones, each of which replaces the
/// signed headers of its name (the same name given twice with `-H` is sent twice).
fn headers(
    signed: impl IntoIterator<Item = (http::HeaderName, http::HeaderValue)>,
    extra: &[(http::HeaderName, http::HeaderValue)],
) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in signed {
        headers.append(name, value);
    }
    for (name, _) in extra {
        headers.remove(name);
    }
    for (name, value) in extra {
        headers.append(name.clone(), value.clone());
    }
    headers
}

/// The body's content type, by its look: a trailing line end (`echo`) does not count.
fn guess_content_type(body: &[u8]) -> &'static str {
    let trimmed = body.trim_ascii();
    if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
        "application/json"
    } else if !trimmed.is_empty()
        && trimmed.contains(&b'=')
        && !trimmed.iter().any(|b| b.is_ascii_whitespace())
    {
        "application/x-www-form-urlencoded"
    } else {
        "application/octet-stream"
    }
}

/// A progress line on stderr: redrawn in place on a terminal, else a line every 10 %.
struct Progress {
    total: u64,
    terminal: bool,
    started: Instant,
    last: std::cell::Cell<Option<Instant>>,
}

impl Progress {
    fn new(total: u64) -> Self {
        Self { total, terminal: std::io::stderr().is_terminal(), started: Instant::now(), last: None.into() }
    }

    fn tick(&self, done: u64, statuses: &BTreeMap<String, u64>) {
        if self.total <= 1 {
            return;
        }
        let now = Instant::now();
        let due = self.last.get().is_none_or(|t| now.duration_since(t) >= Duration::from_millis(200));
        let step = (self.total / 10).max(1);
        let show = if self.terminal {
            due || done == self.total
        } else {
            done.is_multiple_of(step) || done == self.total
        };
        if !show {
            return;
        }
        self.last.set(Some(now));
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let counts: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        let line = format!("sent {done}/{} ({:.0}/s) {}", self.total, done as f64 / secs, counts.join(", "));
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "{line}") };
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.terminal && self.total > 1 {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body's type is guessed without its leading and trailing whitespace (`echo` adds a
    /// line end, which made a form body octet-stream).
    #[test]
    fn the_content_type_is_guessed_without_trailing_whitespace() {
        for (body, guessed) in [
            (&b"a=1&b=2"[..], "application/x-www-form-urlencoded"),
            (b"a=1&b=2\n", "application/x-www-form-urlencoded"),
            (b"a=1&b=2\r\n", "application/x-www-form-urlencoded"),
            (b"a=1 &b=2\n", "application/octet-stream"),
            (b" {\"a\":1}\n", "application/json"),
            (b"[1]", "application/json"),
            (b"\n", "application/octet-stream"),
            (b"", "application/octet-stream"),
            (b"hello\n", "application/octet-stream"),
        ] {
            assert_eq!(guess_content_type(body), guessed, "{body:?}");
        }
    }

    /// A `-H` header replaces the signed ones of its name; others are kept.
    #[test]
    fn extra_headers_replace_signed_ones() {
        let h = |n: &'static str, v: &'static str| {
            (http::HeaderName::from_static(n), http::HeaderValue::from_static(v))
        };
        let map =
            headers([h("x-sig", "genuine"), h("x-id", "1")], &[h("x-sig", "tampered"), h("x-sig", "two")]);
        let all = |name: &str| map.get_all(name).iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>();
        assert_eq!(all("x-sig"), ["tampered", "two"]);
        assert_eq!(all("x-id"), ["1"]);
    }
}
