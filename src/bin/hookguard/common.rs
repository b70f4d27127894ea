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
#[derive(Debug, Default, Clone)]
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

/// The provider names the tool knows: [`providers::NAMES`], plus `paypal` with the `rsa`
/// feature.
pub(crate) fn provider_names() -> Vec<&'static str> {
    let mut names = providers::NAMES.to_vec();
    if cfg!(feature = "rsa") {
        names.push("paypal");
    }
    names
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
            let (first, rest) = secrets.split_first().ok_or_else(|| explain(ConfigError::NoSecret))?;
            let mut scheme: HmacScheme = ($make)(first).map_err(explain)?;
            for s in rest {
                scheme = scheme.with_secret(s).map_err(explain)?;
            }
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
    match provider {
        "square" => {
            let url = url()?;
            hmac!(|k: &String| providers::square::scheme(k, url.clone()))
        }
        "trello" => {
            let url = url()?;
            hmac!(|k: &String| providers::trello::scheme(k, url.clone()))
        }
        #[cfg(feature = "rsa")]
        "paypal" => {
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
            let window = tolerance.unwrap_or(Duration::from_secs(300));
            Ok(Box::new(scheme.with_tolerance(Tolerance::symmetric(window))))
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
        #[cfg(feature = "ed25519")]
        "standard-webhooks-v1a" => public_keys!(standard_webhooks_v1a),
        #[cfg(feature = "ed25519")]
        "discord" => public_keys!(discord),
        #[cfg(feature = "ecdsa")]
        "sendgrid" => public_keys!(sendgrid),
        other if providers::NAMES.contains(&other) => {
            Err(format!("{other} signs no timestamp: a tolerance does not apply to it"))
        }
        other => Err(explain(ConfigError::UnknownProvider(other.to_owned()))),
    }
}

/// The preset's tolerance with `window` on each side it checks (both sides when it
/// checks none).
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

/// `Name: value` as given to `-H`.
pub(crate) fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) =
        text.split_once(':').ok_or_else(|| format!("header `{text}` is not `Name: value`"))?;
    let name =
        HeaderName::try_from(name.trim()).map_err(|_| format!("`{}` is not a header name", name.trim()))?;
    let value = HeaderValue::try_from(value.trim())
        .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
    Ok((name, value))
}

/// All of standard input.
pub(crate) fn read_stdin() -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body).map_err(|e| format!("cannot read the body from stdin: {e}"))?;
    Ok(body)
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

/// `url` as it may be shown (logs, errors): credentials (`user:token@`) become `***@` and
/// the query's values `***`; a text that is not a URL is not shown at all.
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "(a URL that does not parse)".to_owned();
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Setting credentials fails only for URLs without a host (not http or https).
        if parsed.set_password(None).and_then(|()| parsed.set_username("***")).is_err() {
            return "(a URL with credentials)".to_owned();
        }
    }
    if parsed.query().is_some() {
        let names: Vec<String> = parsed.query_pairs().map(|(name, _)| name.into_owned()).collect();
        parsed.query_pairs_mut().clear().extend_pairs(names.iter().map(|n| (n.as_str(), "***")));
    }
    parsed.into()
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

/// Reads a file the configuration or a flag names.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
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

    #[test]
    fn urls_are_shown_without_credentials_or_query_values() {
        for (name, url, shown) in [
            ("plain", "https://h.example/hook", "https://h.example/hook"),
            ("user and token", "https://user:t0ken@h.example/hook", "https://***@h.example/hook"),
            ("token only", "https://:t0ken@h.example:8443/hook", "https://***@h.example:8443/hook"),
            ("user only", "http://t0ken@h.example/", "http://***@h.example/"),
            ("query", "https://h.example/hook?key=t0ken&flag", "https://h.example/hook?key=***&flag=***"),
            ("both", "https://u:t0ken@h.example/?sig=t0ken", "https://***@h.example/?sig=***"),
            ("not a URL", "t0ken", "(a URL that does not parse)"),
        ] {
            let redacted = redact_url(url);
            assert_eq!(redacted, shown, "{name}");
            assert!(!redacted.contains("t0ken"), "{name}");
        }
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
