//! What the commands share: building a preset from a name, parsing times and headers.

use std::{io::Read as _, time::Duration};

use hookguard::{
    ConfigError,
    providers::{self, Preset},
    verify::{HmacScheme, Scheme as _, Tolerance},
};
use http::{HeaderName, HeaderValue};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// What a preset may need beyond its secrets.
#[derive(Default, Clone)]
pub(crate) struct SchemeOptions {
    /// The URL the provider signs (Square's notification URL, Trello's callback URL).
    pub(crate) url: Option<String>,
    /// A timestamp tolerance replacing the preset's, in seconds.
    pub(crate) tolerance_secs: Option<u64>,
    /// PayPal's webhook id.
    #[cfg_attr(not(feature = "rsa"), allow(dead_code))]
    pub(crate) webhook_id: Option<String>,
    /// PayPal certificates (PEM).
    #[cfg_attr(not(feature = "rsa"), allow(dead_code))]
    pub(crate) certificates: Vec<Vec<u8>>,
    /// Twilio: Webhooks Settings' shared keys (HMAC-SHA256 signatures).
    pub(crate) shared_keys: Vec<String>,
    /// Twilio: sign as this Webhooks Setting (with the first shared key).
    pub(crate) shared_key_name: Option<String>,
}

/// The shared keys are `[redacted]`, the URL as [`redact_url`] shows it, the certificates
/// (public) by their number.
impl std::fmt::Debug for SchemeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { url, tolerance_secs, webhook_id, certificates, shared_keys, shared_key_name } = self;
        f.debug_struct("SchemeOptions")
            .field("url", &url.as_deref().map(redacted::Url))
            .field("tolerance_secs", tolerance_secs)
            .field("webhook_id", webhook_id)
            .field("certificates", &certificates.len())
            .field("shared_keys", &redacted::List(shared_keys.len()))
            .field("shared_key_name", shared_key_name)
            .finish()
    }
}

/// The provider names the tool knows: [`providers::NAMES`], plus `paypal` with the `rsa`
/// feature.
pub(crate) fn provider_names() -> Vec<&'static str> {
    let mut names = providers::NAMES.to_vec();
    if cfg!(feature = "rsa") {
        names.push("paypal");
    }
    names
}

/// `--provider`'s help: every name [`provider_names`] knows, in alphabetical order.
pub(crate) fn provider_help() -> String {
    let mut names = provider_names();
    names.sort_unstable();
    format!("Provider name as in PROVIDERS.md, lower case with dashes: {}", names.join(", "))
}

/// A scheme that verifies with more secrets than the one it was made with.
pub(crate) trait Rotating: Sized {
    fn with_secret(self, secret: &str) -> Result<Self, ConfigError>;
}

impl Rotating for HmacScheme {
    fn with_secret(self, secret: &str) -> Result<Self, ConfigError> {
        HmacScheme::with_secret(self, secret)
    }
}

impl Rotating for providers::trello::TrelloScheme {
    fn with_secret(self, secret: &str) -> Result<Self, ConfigError> {
        providers::trello::TrelloScheme::with_secret(self, secret)
    }
}

/// The scheme `make` builds, with every one of `secrets` (the first signs; all verify).
pub(crate) fn with_secrets<S: Rotating>(
    make: impl FnOnce(&str) -> Result<S, ConfigError>,
    secrets: &[String],
) -> Result<S, ConfigError> {
    let (first, rest) = secrets.split_first().ok_or(ConfigError::NoSecret)?;
    rest.iter().try_fold(make(first)?, |scheme, s| scheme.with_secret(s))
}

/// The preset `provider` with `secrets` (the first signs; all verify) and `options`.
pub(crate) fn build_scheme(
    provider: &str,
    secrets: &[String],
    options: &SchemeOptions,
) -> Result<Box<dyn Preset>, String> {
    let explain = |e: ConfigError| match e {
        ConfigError::UnknownProvider(name) => {
            format!("unknown provider `{name}` (known: {})", provider_names().join(", "))
        }
        ConfigError::NoSecret => format!("{provider} needs a secret (--secret, or `secret…` in the config)"),
        e => format!("{provider}: {e}"),
    };
    let tolerance = options.tolerance_secs.map(Duration::from_secs);
    macro_rules! hmac {
        ($make:expr) => {{
            let mut scheme = with_secrets(|first| ($make)(first), secrets).map_err(explain)?;
            if let Some(window) = tolerance {
                let retimed = retime(scheme.tolerance(), window);
                scheme = scheme.with_tolerance(retimed);
            }
            Ok(Box::new(scheme) as Box<dyn Preset>)
        }};
    }
    #[cfg(any(feature = "ed25519", feature = "ecdsa"))]
    macro_rules! public_keys {
        ($module:ident) => {{
            let (first, rest) = secrets.split_first().ok_or_else(|| explain(ConfigError::NoSecret))?;
            let mut scheme = providers::$module::scheme(first).map_err(explain)?;
            for s in rest {
                let key = providers::$module::public_key(s).map_err(explain)?;
                scheme = scheme.with_public_key(key).map_err(explain)?;
            }
            if let Some(window) = tolerance {
                let retimed = retime(scheme.tolerance(), window);
                scheme = scheme.with_tolerance(retimed);
            }
            Ok(Box::new(scheme) as Box<dyn Preset>)
        }};
    }
    if provider != "twilio" && (!options.shared_keys.is_empty() || options.shared_key_name.is_some()) {
        return Err(format!(
            "shared keys (--shared-key, `shared_key_env`, `shared_key_file`) are for twilio's Webhooks Settings, not {provider}"
        ));
    }
    let url = || {
        options.url.clone().ok_or_else(|| {
            format!("{provider} signs the URL it was registered with: give it with --url (config: `url`)")
        })
    };
    let no_timestamp = || format!("{provider} signs no timestamp: a tolerance does not apply to it");
    match provider {
        // They sign the URL and the body only: a tolerance was taken, and meant nothing.
        "square" | "trello" if tolerance.is_some() => Err(no_timestamp()),
        "square" => {
            let url = url()?;
            hmac!(|k: &str| providers::square::scheme(k, url.clone()))
        }
        // Not `hmac!`: Trello's scheme wraps an HMAC scheme (it also checks the "binary"
        // strings Trello signs), and takes no tolerance (refused above).
        "trello" => {
            let url = url()?;
            let scheme =
                with_secrets(|first| providers::trello::scheme(first, url), secrets).map_err(explain)?;
            Ok(Box::new(scheme))
        }
        #[cfg(feature = "rsa")]
        "paypal" => {
            // PayPal's certificate verifies: a secret would be taken, and not used.
            if !secrets.is_empty() {
                return Err("paypal verifies with PayPal's certificate (--cert) and the webhook id \
                     (--webhook-id): it takes no secret (--secret)"
                    .to_owned());
            }
            let id = options
                .webhook_id
                .clone()
                .ok_or("paypal needs the webhook id (--webhook-id; config: `webhook_id`)")?;
            let (first, rest) = options
                .certificates
                .split_first()
                .ok_or("paypal needs PayPal's certificate (--cert FILE; config: `certificate_file`)")?;
            let mut scheme = providers::paypal::scheme(id, first).map_err(explain)?;
            for pem in rest {
                scheme = scheme.with_certificate(pem).map_err(explain)?;
            }
            // The preset's own tolerance (days into the past, to outlast PayPal's retries)
            // unless one is given, which keeps its shape.
            if let Some(window) = tolerance {
                let retimed = retime(scheme.tolerance(), window);
                scheme = scheme.with_tolerance(retimed);
            }
            Ok(Box::new(scheme))
        }
        // One path for Twilio, with or without shared keys (the HMAC-SHA256 variant).
        "twilio" if tolerance.is_none() => {
            let (first, rest) = secrets.split_first().ok_or_else(|| explain(ConfigError::NoSecret))?;
            let mut scheme = providers::twilio::scheme(first).map_err(explain)?;
            for s in rest {
                scheme = scheme.with_secret(s).map_err(explain)?;
            }
            for key in &options.shared_keys {
                scheme = scheme.with_shared_key(key).map_err(explain)?;
            }
            if let Some(name) = &options.shared_key_name {
                scheme = scheme.sign_with_shared_key(name).map_err(explain)?;
            }
            Ok(Box::new(scheme))
        }
        _ if tolerance.is_none() => providers::by_name(provider, secrets).map_err(explain),
        "standard-webhooks" => hmac!(providers::standard_webhooks::scheme),
        "svix" => hmac!(providers::svix::scheme),
        "stripe" => hmac!(providers::stripe::scheme),
        "slack" => hmac!(providers::slack::scheme),
        "paddle" => hmac!(providers::paddle::scheme),
        "zoom" => hmac!(providers::zoom::scheme),
        "linear" => hmac!(providers::linear::scheme),
        "hubspot" => hmac!(providers::hubspot::scheme),
        "twitch" => hmac!(providers::twitch::scheme),
        "calendly" => hmac!(providers::calendly::scheme),
        "gitlab-signing-token" => hmac!(providers::gitlab::signing_token_scheme),
        // `{timestamp}{token}`, inside the body.
        "mailgun" => hmac!(providers::mailgun::scheme),
        #[cfg(feature = "ed25519")]
        "standard-webhooks-v1a" => public_keys!(standard_webhooks_v1a),
        #[cfg(feature = "ed25519")]
        "discord" => public_keys!(discord),
        #[cfg(feature = "ecdsa")]
        "sendgrid" => public_keys!(sendgrid),
        other if providers::NAMES.contains(&other) => Err(no_timestamp()),
        other => Err(explain(ConfigError::UnknownProvider(other.to_owned()))),
    }
}

/// The preset's tolerance with `window` on each side it checks (both sides for one that
/// checks none: no built-in preset with a timestamp does so now).
fn retime(current: Tolerance, window: Duration) -> Tolerance {
    if !current.is_checked() {
        return Tolerance::symmetric(window);
    }
    Tolerance::new(current.past().map(|_| window), current.future().map(|_| window))
}

/// Unix seconds (`1614265330`) or RFC 3339 (`2021-02-25T15:02:10Z`).
pub(crate) fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|_| format!("time `{text}` is out of range"));
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("time `{text}` is neither unix seconds nor RFC 3339 (2021-02-25T15:02:10Z)"))
}

/// `Name: value` as given to `-H`. A malformed header is not repeated in the error (it may
/// be `Authorization Bearer <token>`): only the name it starts with is.
pub(crate) fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text.split_once(':').ok_or_else(|| not_name_value(text))?;
    let name = HeaderName::try_from(name.trim()).map_err(|_| not_name_value(text))?;
    let value = HeaderValue::try_from(value.trim())
        .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
    Ok((name, value))
}

/// The error for a `-H` that is not `Name: value`, showing at most the header name it
/// starts with ([`leading_name`]).
fn not_name_value(text: &str) -> String {
    match leading_name(text) {
        Some(name) => format!(
            "header `{name} …` is not `Name: value` (what follows `{name}` is not shown: it may hold a credential)"
        ),
        None => "a header is not `Name: value` (it is not shown: it may hold a credential)".to_owned(),
    }
}

/// What a malformed header may show of itself: the text before its first space, tab or
/// `=` (`Authorization` of `Authorization Bearer <token>`, `X-Api-Key` of `X-Api-Key=<key>`),
/// and only when that text is clearly a header name: a common one, or one starting with
/// `X-` made of letters, digits and dashes. Anything else (a bare token, which may hold
/// spaces or end in `=` padding) shows nothing.
fn leading_name(text: &str) -> Option<&str> {
    const COMMON: &[&str] =
        &["authorization", "proxy-authorization", "cookie", "content-type", "accept", "user-agent", "host"];
    let text = text.trim();
    let (name, _) = text.split_at(text.find([' ', '\t', '='])?);
    let x_name = name.len() <= 64
        && name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-"))
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    (x_name || COMMON.iter().any(|c| c.eq_ignore_ascii_case(name))).then_some(name)
}

/// The most a body on stdin may hold: 16 MiB, well past any provider's deliveries and the
/// server's default body limit (1 MiB), so that a capture from an endpoint with a raised
/// `body_limit` can still be checked; not unbounded (`< /dev/zero`).
pub(crate) const STDIN_LIMIT: u64 = 16 << 20;

/// The most a file the configuration or a flag names may hold (a secret, a shared key, a
/// certificate, the configuration itself): 1 MiB, far past any of them.
pub(crate) const FILE_LIMIT: u64 = 1 << 20;

/// The providers that sign the URL registered with them (`url` in the configuration,
/// `--url` on the command line), held as configured, not the URL a request was sent to.
pub(crate) const REGISTERED_URL: &[&str] = &["square", "trello"];

/// All of standard input, at most [`STDIN_LIMIT`].
pub(crate) fn read_stdin() -> Result<Vec<u8>, String> {
    read_capped(std::io::stdin().lock(), STDIN_LIMIT)
        .map_err(|e| format!("cannot read the body from stdin: {e}"))
}

/// All of `reader`, or a [`FileTooLarge`](std::io::ErrorKind::FileTooLarge) error as soon
/// as it holds more than `limit` bytes (the rest is not read).
pub(crate) fn read_capped(reader: impl std::io::Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("it holds more than {}, the most it may", size(limit)),
        ));
    }
    Ok(bytes)
}

/// `limit` in MiB when it is a whole number of them, else in bytes.
fn size(limit: u64) -> String {
    if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
        format!("{} MiB", limit >> 20)
    } else {
        format!("{limit} bytes")
    }
}

/// The file at `path`, at most `limit` bytes ([`read_capped`]).
pub(crate) fn read_limited(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    read_capped(std::fs::File::open(path)?, limit)
}

/// A delivery id for senders that were given none: `msg_` and 20 random hex digits.
pub(crate) fn fresh_id() -> String {
    format!("msg_{:016x}{:04x}", fastrand::u64(..), fastrand::u16(..))
}

/// Why a command failed; the exit status tells them apart.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A usage or configuration error: exit status 2.
    Usage(String),
    /// The output could not be written (a full disk, a closed file): exit status 1.
    Output(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Usage(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self::Usage(message.to_owned())
    }
}

/// Prints a line on stdout. A closed pipe (`| head -1`) is not an error; any other write
/// error is ([`Failure::Output`]).
pub(crate) fn say(line: impl std::fmt::Display) -> Result<(), Failure> {
    write_line(&mut std::io::stdout().lock(), line)
}

fn write_line(out: &mut impl std::io::Write, line: impl std::fmt::Display) -> Result<(), Failure> {
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Output(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// `url` as it may be shown (logs, errors, `Debug`): its scheme, host and port, with
/// `***@` for credentials (`user:token@`) and `…` for a path, query or fragment, where
/// Discord's and Slack's webhook URLs hold their secret
/// (`https://discord.com/api/webhooks/123/<token>` is shown `https://discord.com/…`). A
/// text that is not a URL is not shown at all.
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return "(a URL that does not parse)".to_owned();
    };
    let Some(host) = parsed.host() else {
        // `unix:/path`, `mailto:…`: nothing but the scheme is known to be harmless.
        return format!("{}:…", parsed.scheme());
    };
    let mut shown = format!("{}://", parsed.scheme());
    if !parsed.username().is_empty() || parsed.password().is_some() {
        shown.push_str("***@");
    }
    shown.push_str(&host.to_string());
    if let Some(port) = parsed.port() {
        shown.push_str(&format!(":{port}"));
    }
    let bare = parsed.path() == "/" && parsed.query().is_none() && parsed.fragment().is_none();
    shown.push_str(if bare { "/" } else { "/…" });
    shown
}

/// `Debug` helpers for the types that hold secrets: a secret shows as `[redacted]`, a URL
/// as [`redact_url`] shows it.
pub(crate) mod redacted {
    use std::fmt;

    /// Shows `[redacted]`.
    pub(crate) struct Secret;

    impl fmt::Debug for Secret {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("[redacted]")
        }
    }

    /// `Some([redacted])` or `None`.
    pub(crate) fn option<T>(value: Option<&T>) -> Option<Secret> {
        value.map(|_| Secret)
    }

    /// `[redacted]` for each item: how many there are, not what they are.
    pub(crate) struct List(pub(crate) usize);

    impl fmt::Debug for List {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_list().entries((0..self.0).map(|_| Secret)).finish()
        }
    }

    /// A URL as [`redact_url`](super::redact_url) shows it, quoted.
    pub(crate) struct Url<'a>(pub(crate) &'a str);

    impl fmt::Debug for Url<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(&super::redact_url(self.0), f)
        }
    }

    /// `-H` headers: each one's name ([`leading_name`](super::leading_name) for one that
    /// is not `Name: value`), and `[redacted]` for its value.
    pub(crate) struct Headers<'a>(pub(crate) &'a [String]);

    impl fmt::Debug for Headers<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let shown = self.0.iter().map(|h| match h.split_once(':') {
                Some((name, _)) if http::HeaderName::try_from(name.trim()).is_ok() => {
                    format!("{}: [redacted]", name.trim())
                }
                _ => "[redacted]".to_owned(),
            });
            f.debug_list().entries(shown).finish()
        }
    }
}

/// An error and its sources, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads a file the configuration or a flag names, at most [`FILE_LIMIT`].
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    read_limited(path, FILE_LIMIT).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_both_ways() {
        assert_eq!(parse_time("1614265330").unwrap().unix_timestamp(), 1_614_265_330);
        assert_eq!(parse_time("2021-02-25T15:02:10Z").unwrap().unix_timestamp(), 1_614_265_330);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn trello_endpoints_verify_what_trello_signs() {
        use hookguard::verify::WebhookRequest;
        let options = SchemeOptions { url: Some("https://example.com/trello".into()), ..Default::default() };
        let secrets = ["new".to_owned(), "trello_secret".to_owned()];
        let scheme = build_scheme("trello", &secrets, &options).unwrap();
        // An en dash in a card name: Trello signs its low byte (providers::trello docs).
        let body = r#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard","data":{"card":{"name":"A – B"}}}}"#;
        let req = http::Request::post("/trello")
            .header("x-trello-webhook", "JZksOnOEif3nrhEAJj6gvGnhYJ0=")
            .body(body.as_bytes().to_vec())
            .unwrap();
        let verified =
            scheme.verify(&WebhookRequest::from_request(&req), OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!((verified.id(), verified.key_index()), (Some("51f9424bcd6e040f3c002412"), 1));
        assert!(build_scheme("trello", &secrets, &SchemeOptions::default()).unwrap_err().contains("--url"));
        let timed = SchemeOptions { tolerance_secs: Some(60), ..options };
        assert!(build_scheme("trello", &secrets, &timed).unwrap_err().contains("no timestamp"));
    }

    #[test]
    fn headers_parse() {
        let (n, v) = parse_header("X-Hub-Signature-256:  sha256=00 ").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-hub-signature-256", "sha256=00"));
        assert!(parse_header("nocolon").is_err());
    }

    /// A writer that fails every write with `kind`.
    struct Failing(std::io::ErrorKind);

    impl std::io::Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_a_closed_pipe_is_not_an_output_error() {
        use std::io::ErrorKind;
        for (name, kind, fails) in [
            ("closed pipe", ErrorKind::BrokenPipe, true),
            ("full disk", ErrorKind::StorageFull, false),
            ("other", ErrorKind::Other, false),
        ] {
            let result = write_line(&mut Failing(kind), "x");
            assert_eq!(result.is_ok(), fails, "{name}: {result:?}");
            if let Err(e) = result {
                assert!(matches!(e, Failure::Output(_)), "{name}: {e:?}");
            }
        }
        let mut out = Vec::new();
        write_line(&mut out, "line").unwrap();
        assert_eq!(out, b"line\n");
    }

    /// A URL shows its scheme, host and port only: the path and query, where Discord's and
    /// Slack's webhook URLs hold their secret, and the credentials are never shown.
    #[test]
    fn urls_are_shown_by_their_origin_only() {
        for (name, url, shown) in [
            ("root", "https://h.example/", "https://h.example/"),
            ("no path", "https://h.example", "https://h.example/"),
            ("path", "https://h.example/t0ken", "https://h.example/…"),
            ("user and token", "https://user:t0ken@h.example/hook", "https://***@h.example/…"),
            ("token only", "https://:t0ken@h.example:8443/", "https://***@h.example:8443/"),
            ("user only", "http://t0ken@h.example/", "http://***@h.example/"),
            ("query", "https://h.example/?key=t0ken&flag", "https://h.example/…"),
            ("query name", "https://h.example/?t0ken", "https://h.example/…"),
            ("fragment", "https://h.example/#t0ken", "https://h.example/…"),
            ("both", "https://u:t0ken@h.example/?sig=t0ken", "https://***@h.example/…"),
            ("default port", "https://h.example:443/t0ken", "https://h.example/…"),
            ("IPv6 and port", "http://[::1]:8080/t0ken", "http://[::1]:8080/…"),
            ("redis", "redis://:t0ken@cache.internal:6379/0", "redis://***@cache.internal:6379/…"),
            ("postgres", "postgres://app:t0ken@db/hooks?sslmode=require", "postgres://***@db/…"),
            ("no host", "unix:/run/t0ken.sock", "unix:…"),
            ("not a URL", "t0ken", "(a URL that does not parse)"),
            (
                "discord",
                "https://discord.com/api/webhooks/123456789012345678/t0ken-AbCdEf_123",
                "https://discord.com/…",
            ),
            (
                "slack",
                "https://hooks.slack.com/services/T00000000/B00000000/t0kenXXXXXXXXXXXXXXXXXXX",
                "https://hooks.slack.com/…",
            ),
        ] {
            let redacted = redact_url(url);
            assert_eq!(redacted, shown, "{name}");
            assert!(!redacted.contains("t0ken"), "{name}");
        }
    }

    /// A malformed `-H` shows at most the header name it starts with, never what follows.
    #[test]
    fn a_malformed_header_is_not_repeated() {
        for (name, header, shown) in [
            ("no colon", "Authorization Bearer eyJt0ken", Some("header `Authorization …`")),
            ("tab", "Authorization\tBearer eyJt0ken", Some("header `Authorization …`")),
            ("equals", "X-Api-Key=t0ken", Some("header `X-Api-Key …`")),
            ("space before the colon", "Authorization Bearer eyJt0ken:x", Some("header `Authorization …`")),
            ("space in the name", "X Api: t0ken", None),
            ("a bare base64 token", "QWxhZGRpbjpvcGVuIHNlc2FtZQ== t0ken", None),
            ("a bare token with padding", "t0kenQWxhZGRpbjpvcGVu=", None),
            ("a bare token and a word", "ghp_t0ken x", None),
            ("lower-case x- name", "x-api-key t0ken", Some("header `x-api-key …`")),
            ("a bare token", "eyJt0ken.payload.sig", None),
            ("a bare token and more", "t0ken/abc==", None),
            ("not a name", "t0ken(x): y", None),
            ("empty name", ": t0ken", None),
        ] {
            let err = parse_header(header).err().unwrap_or_else(|| panic!("{name}: accepted"));
            assert!(err.contains("is not `Name: value`"), "{name}: {err}");
            assert!(!err.contains("t0ken"), "{name}: {err}");
            match shown {
                Some(shown) => assert!(err.starts_with(shown), "{name}: {err}"),
                None => assert!(err.starts_with("a header is not"), "{name}: {err}"),
            }
        }
        let err = parse_header("X-Token: t0ken\u{1}").err().unwrap();
        assert_eq!(err, "the value of `x-token` is not a valid header value");
    }

    #[test]
    fn scheme_options_debug_shows_no_secret() {
        let options = SchemeOptions {
            url: Some("https://user:t0ken-user@h.example/t0ken-path?k=t0ken-query".to_owned()),
            tolerance_secs: Some(60),
            webhook_id: Some("WH-1".to_owned()),
            certificates: vec![b"-----BEGIN CERTIFICATE-----".to_vec()],
            shared_keys: vec!["t0ken-key-1".to_owned(), "t0ken-key-2".to_owned()],
            shared_key_name: Some("setting".to_owned()),
        };
        assert_eq!(
            format!("{options:?}"),
            "SchemeOptions { url: Some(\"https://***@h.example/…\"), tolerance_secs: Some(60), \
             webhook_id: Some(\"WH-1\"), certificates: 1, shared_keys: [[redacted], [redacted]], \
             shared_key_name: Some(\"setting\") }"
        );
        let pretty = format!("{options:#?}");
        assert!(!pretty.contains("t0ken"), "{pretty}");
    }

    #[test]
    fn headers_debug_shows_names_only() {
        let headers = ["Authorization: Bearer t0ken".to_owned(), "Authorization Bearer t0ken".to_owned()];
        let shown = format!("{:?}", redacted::Headers(&headers));
        assert_eq!(shown, r#"["Authorization: [redacted]", "[redacted]"]"#);
    }

    /// Every preset that signs a timestamp takes a tolerance (Mailgun's was refused: "signs
    /// no timestamp"), reshaped as `retime` does; one that signs none refuses it (Square's
    /// and Trello's took one, which meant nothing).
    #[test]
    fn a_tolerance_applies_to_every_preset_that_signs_a_timestamp() {
        let secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()];
        let options =
            SchemeOptions { url: Some("https://h.example/hook".to_owned()), ..SchemeOptions::default() };
        let window = Duration::from_secs(60);
        let mut retimed = Vec::new();
        for name in providers::NAMES {
            // Public-key presets need a key of their kind, not this secret.
            let Ok(default) = build_scheme(name, &secrets, &options) else { continue };
            let given = SchemeOptions { tolerance_secs: Some(60), ..options.clone() };
            match build_scheme(name, &secrets, &given) {
                Ok(scheme) => {
                    // The window replaces each side the preset checks (Zoom, Discord and
                    // SendGrid: the past only).
                    assert_eq!(scheme.tolerance(), retime(default.tolerance(), window), "{name}");
                    retimed.push(*name);
                }
                Err(e) => {
                    assert!(!default.tolerance().is_checked(), "{name} checks a timestamp: {e}");
                    assert!(e.contains("signs no timestamp"), "{name}: {e}");
                }
            }
        }
        assert!(retimed.contains(&"mailgun") && retimed.contains(&"stripe"), "{retimed:?}");
    }

    /// PayPal keeps the preset's tolerance (4 days into the past, 5 minutes into the
    /// future, to outlast its retries) unless one is given (it was 5 minutes each way), and a
    /// given one keeps its shape.
    #[cfg(feature = "rsa")]
    #[test]
    fn paypal_keeps_its_tolerance() {
        let options = SchemeOptions {
            webhook_id: Some("WH-1".to_owned()),
            certificates: vec![include_bytes!("../../providers/testdata/paypal_cert.pem").to_vec()],
            ..SchemeOptions::default()
        };
        let default = build_scheme("paypal", &[], &options).unwrap();
        assert_eq!(default.tolerance(), providers::paypal::TOLERANCE);
        let given =
            build_scheme("paypal", &[], &SchemeOptions { tolerance_secs: Some(60), ..options }).unwrap();
        assert_eq!(given.tolerance(), retime(providers::paypal::TOLERANCE, Duration::from_secs(60)));
    }

    /// Files and input are read within their limit: at it they are read whole, past it
    /// they are refused (not read to the end: `/dev/zero` would never end).
    #[test]
    fn reads_stop_at_their_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, [b'x'; 10]).unwrap();
        assert_eq!(read_limited(&file, 10).unwrap().len(), 10);
        let err = read_limited(&file, 9).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
        assert_eq!(err.to_string(), "it holds more than 9 bytes, the most it may");
        assert!(read_file(&file).is_ok());
        #[cfg(unix)]
        {
            let err = read_file(std::path::Path::new("/dev/zero")).unwrap_err();
            assert_eq!(err, "cannot read /dev/zero: it holds more than 1 MiB, the most it may");
        }
        assert_eq!(read_capped(&b"12345"[..], 5).unwrap(), b"12345");
        assert_eq!(read_capped(&b"123456"[..], 5).unwrap_err().kind(), std::io::ErrorKind::FileTooLarge);
    }

    #[test]
    fn tolerance_keeps_the_presets_shape() {
        let w = Duration::from_secs(60);
        let t = retime(Tolerance::past_only(Duration::from_secs(300)), w);
        assert_eq!((t.past(), t.future()), (Some(w), None));
        let t = retime(Tolerance::NONE, w);
        assert_eq!((t.past(), t.future()), (Some(w), Some(w)));
    }
}
