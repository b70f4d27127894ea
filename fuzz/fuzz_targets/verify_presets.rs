//! A whole request built from fuzz input (any header values, any body, any time, any
//! secret) verified by a preset: the header parsers, timestamp parsing, JSON lookups and
//! comparisons all see hostile input. Never panics; a rejection's text never holds the
//! secret.
//!
//! Input (lines; invalid lines are skipped, so every input is a request):
//!
//! ```text
//! <preset name, or anything: then its first byte picks one>
//! <secret, or empty for a fixed one>
//! <now, unix seconds>
//! <METHOD> <URL>
//! <header-name>: <value>        (any number, up to 64)
//!
//! <body: every byte after the blank line>
//! ```
//!
//! `fuzz/seeds/verify_presets/` holds the provider vectors in this form: each verifies.
#![no_main]

use hookguard::{
    providers,
    verify::{Scheme, WebhookRequest},
};
use libfuzzer_sys::fuzz_target;

/// Always configured (beside the input's secret); never in a rejection's text.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("").trim()
}

fuzz_target!(|data: &[u8]| {
    let (preset, rest) = split_line(data);
    let (secret, rest) = split_line(rest);
    let (now, rest) = split_line(rest);
    let (target, mut rest) = split_line(rest);

    let names = providers::NAMES;
    let name = match names.iter().find(|n| n.as_bytes() == preset) {
        Some(n) => *n,
        None => names[usize::from(preset.first().copied().unwrap_or(0)) % names.len()],
    };
    let secret = text(secret);
    let (method, url) = text(target).split_once(' ').unwrap_or(("POST", "https://example.com/hooks"));
    // Square and Trello sign their URL, so they are built with it (not in `by_name`);
    // Twilio also gets the secrets as Webhooks shared keys (its HMAC-SHA256 path).
    let by_hand = |secret: &str| -> Option<Box<dyn Scheme>> {
        match preset {
            b"twilio" => providers::twilio::scheme(secret)
                .and_then(|s| s.with_secret(SECRET))
                .and_then(|s| s.with_shared_key(secret))
                .and_then(|s| s.with_shared_key(SECRET))
                .ok()
                .map(|s| Box::new(s) as Box<dyn Scheme>),
            b"square" => {
                providers::square::scheme(secret, url.to_owned()).ok().map(|s| Box::new(s) as Box<dyn Scheme>)
            }
            b"trello" => {
                providers::trello::scheme(secret, url.to_owned()).ok().map(|s| Box::new(s) as Box<dyn Scheme>)
            }
            _ => None,
        }
    };
    let scheme: Box<dyn Scheme> = if let Some(s) = by_hand(secret).or_else(|| by_hand(SECRET)) {
        s
    } else {
        match providers::by_name(name, &[secret, SECRET]).or_else(|_| providers::by_name(name, &[SECRET])) {
            Ok(s) => Box::new(s),
            Err(_) => return,
        }
    };
    let now: i64 = text(now).parse().unwrap_or(0);
    let now = time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let method = http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::POST);
    let uri: http::Uri = url.parse().unwrap_or_else(|_| http::Uri::from_static("/hooks"));

    let mut headers = http::HeaderMap::new();
    let mut count = 0;
    let body = loop {
        let (line, next) = split_line(rest);
        rest = next;
        if line.is_empty() || line == b"\r" {
            break rest;
        }
        count += 1;
        if count > 64 {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(line[..colon].trim_ascii()),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(n, v);
    };

    let req = WebhookRequest::new(&method, &uri, &headers, body).with_url(url);
    if let Err(rejection) = scheme.verify(&req, now) {
        let text = format!("{rejection} {rejection:?}");
        assert!(!text.contains(SECRET));
        assert!(rejection.status().is_client_error());
    }
});
