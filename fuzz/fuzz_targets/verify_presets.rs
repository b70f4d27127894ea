//! A whole request built from fuzz input (any header values, any body, any time, any
//! secret) verified by a preset: the header parsers, timestamp parsing, JSON lookups and
//! comparisons all see hostile input, and for the public-key presets (Standard Webhooks
//! v1a, Discord, SendGrid) the signature readers (Ed25519, ECDSA DER and `r‖s`) and the
//! limit of [`MAX_PUBLIC_KEY_SIGNATURES`] checked per request.
//!
//! What must hold, besides no panic:
//! - a rejection is a 4xx and its text never holds the secret;
//! - a scheme that signs (the HMAC presets, Twilio's, Square's, Trello's): the headers
//!   it signs the request's body with verify, at the same time, method and URL (unless
//!   the scheme reads the body as JSON and it is not, or its own timestamp is refused);
//!   with one byte of the body flipped they do not (GitLab's token signs no body,
//!   Twilio signs the form parameters de-duplicated, so a flip can give the same set, and
//!   Trello signs a body that is not ASCII by the low byte of each UTF-16 unit, which a
//!   flip in a character's leading byte can leave as it was).
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
//! Beside the input's secret, each scheme has a fixed one: [`SECRET`], or for the
//! public-key presets a valid public key ([`fixed_key`]) whose private key signed the
//! `*_fixed*` seeds. `fuzz/seeds/verify_presets/` holds the provider vectors and those in
//! this form: each verifies, which `HOOKGUARD_FUZZ_SEEDS_VERIFY=1` makes the target check
//! (`fuzz/smoke.sh` runs the seeds so).
#![no_main]

use std::sync::OnceLock;

use hookguard::{
    __fuzz,
    providers::{self, Preset},
    verify::{
        Encoding, MAX_PUBLIC_KEY_SIGNATURES, Outgoing, Reason, Rejection, SignatureFormat, WebhookRequest,
    },
};
use http::{HeaderMap, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

/// Always configured (beside the input's secret) for the secret-keyed presets; never in a
/// rejection's text.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The fixed key of a preset: [`SECRET`], or for a public-key preset (which `SECRET` is
/// not a key of) a valid public key whose private key signs the `*_fixed*` seeds.
fn fixed_key(name: &str) -> &'static str {
    match name {
        // Standard Webhooks' Go test key: `whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=`.
        "standard-webhooks-v1a" => "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=",
        // The same Ed25519 key in hex.
        "discord" => "6653787a0edd492aa2d26a17f61414937a2bacea2e2b74154129496b6e3c73f8",
        // SendGrid's Go SDK test key (its private key is `PRIVATE_C` in
        // src/providers/sendgrid.rs's tests).
        "sendgrid" => {
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
        }
        _ => SECRET,
    }
}

/// Where a public-key preset reads its signatures.
fn public_key_layout(name: &str) -> Option<(&'static str, SignatureFormat, Encoding)> {
    match name {
        "standard-webhooks-v1a" => {
            Some(("webhook-signature", SignatureFormat::Versioned { version: "v1a" }, Encoding::Base64))
        }
        "discord" => Some(("x-signature-ed25519", SignatureFormat::Plain { prefix: "" }, Encoding::Hex)),
        "sendgrid" => Some((
            "x-twilio-email-event-webhook-signature",
            SignatureFormat::Plain { prefix: "" },
            Encoding::Base64,
        )),
        _ => None,
    }
}

/// `HOOKGUARD_FUZZ_SEEDS_VERIFY` set: every input must verify (to check the seeds).
fn seeds_must_verify() -> bool {
    static SET: OnceLock<bool> = OnceLock::new();
    *SET.get_or_init(|| std::env::var_os("HOOKGUARD_FUZZ_SEEDS_VERIFY").is_some())
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("").trim()
}

/// What `scheme` signs `body` with verifies; with one byte of the body flipped it does not.
fn sign_round_trip(
    name: &str,
    scheme: &dyn Preset,
    method: &Method,
    url: &str,
    uri: &Uri,
    body: &[u8],
    at: OffsetDateTime,
) {
    // Twilio signs the URL alone when it carries `bodySHA256`, which must then be the
    // body's hash: the sender puts it there first.
    if name == "twilio" && url.contains("bodySHA256") {
        return;
    }
    let msg = Outgoing::new(body).id("msg_fuzz").timestamp(at).url(url).method(method.clone());
    // Verify-only keys, and values that cannot be sent (a URL that is no header value).
    let Ok(signed) = scheme.sign(&msg) else { return };
    let mut headers = HeaderMap::new();
    for (n, v) in signed {
        headers.append(n, v);
    }
    let req = WebhookRequest::new(method, uri, &headers, body).with_url(url);
    if let Err(rejection) = scheme.verify(&req, at) {
        // Presets that read the body as JSON (Linear's `webhookTimestamp`) refuse a body
        // that is not JSON, and a JSON body's own timestamp can be out of range.
        let json = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        match rejection.reason() {
            Reason::MalformedBody if !json => return,
            Reason::MalformedTimestamp | Reason::TimestampTooOld | Reason::TimestampInFuture if json => {
                return;
            }
            _ => panic!("{name}: its own signature is refused: {rejection:?}"),
        }
    }
    // GitLab's token signs no body; Twilio's de-duplicated form parameters can be the
    // same set after a flip (`a=0&a=0&a=1`, `a=0&a=1&a=1`); Trello signs a non-ASCII
    // body by the low byte of each UTF-16 unit (`–` and `〓` differ in a leading byte).
    if body.is_empty() || matches!(name, "gitlab" | "twilio") || (name == "trello" && !body.is_ascii()) {
        return;
    }
    let mut flipped = body.to_vec();
    let i = usize::try_from(at.unix_timestamp()).unwrap_or(0) % flipped.len();
    flipped[i] ^= 1;
    let req = WebhookRequest::new(method, uri, &headers, &flipped).with_url(url);
    assert!(scheme.verify(&req, at).is_err(), "{name}: a flipped byte {i} of the body verified");
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
    let by_hand = |secret: &str| -> Option<Box<dyn Preset>> {
        match name {
            "twilio" => providers::twilio::scheme(secret)
                .and_then(|s| s.with_secret(SECRET))
                .and_then(|s| s.with_shared_key(secret))
                .and_then(|s| s.with_shared_key(SECRET))
                .ok()
                .map(|s| Box::new(s) as Box<dyn Preset>),
            "square" => {
                providers::square::scheme(secret, url.to_owned()).ok().map(|s| Box::new(s) as Box<dyn Preset>)
            }
            "trello" => {
                providers::trello::scheme(secret, url.to_owned()).ok().map(|s| Box::new(s) as Box<dyn Preset>)
            }
            _ => None,
        }
    };
    let scheme: Box<dyn Preset> = if matches!(name, "twilio" | "square" | "trello") {
        // Square and Trello refuse a URL that is not one.
        let Some(s) = by_hand(secret).or_else(|| by_hand(SECRET)) else { return };
        s
    } else {
        let fixed = fixed_key(name);
        match providers::by_name(name, &[secret, fixed]).or_else(|_| providers::by_name(name, &[fixed])) {
            Ok(s) => s,
            Err(e) => panic!("{name} refuses its fixed key: {e}"),
        }
    };
    let now: i64 = text(now).parse().unwrap_or(0);
    let now = OffsetDateTime::from_unix_timestamp(now).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST);
    let uri: Uri = url.parse().unwrap_or_else(|_| Uri::from_static("/hooks"));

    let mut headers = HeaderMap::new();
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
    let result = scheme.verify(&req, now);
    if let Err(rejection) = &result {
        assert!(!seeds_must_verify(), "{name}: a seed did not verify: {rejection:?}");
        let text = format!("{rejection} {rejection:?}");
        assert!(!text.contains(SECRET));
        assert!(rejection.status().is_client_error());
    }
    // A public-key scheme reads its signatures first: a header that does not parse is
    // refused for that, and more than `MAX_PUBLIC_KEY_SIGNATURES` candidates are refused
    // before any is checked.
    if let Some((header, format, encoding)) = public_key_layout(name) {
        let values: Vec<HeaderValue> = headers.get_all(header).iter().cloned().collect();
        let reason = result.as_ref().err().map(Rejection::reason);
        let parsed = if values.is_empty() {
            Err(Reason::MissingSignature)
        } else {
            __fuzz::parse_signature_bytes(format, encoding, &values).map(|p| p.signatures.len())
        };
        match parsed {
            Err(why) => assert_eq!(reason, Some(why), "{name}: the signature header's reason"),
            Ok(n) if n > MAX_PUBLIC_KEY_SIGNATURES => {
                assert_eq!(reason, Some(Reason::TooManySignatures), "{name}: {n} signatures");
            }
            Ok(n) => assert_ne!(reason, Some(Reason::TooManySignatures), "{name}: {n} signatures"),
        }
    }
    // Signing at a time every preset's timestamp format writes (ten digits of seconds).
    let at = now.unix_timestamp().clamp(1_000_000_000, 4_000_000_000);
    let at = OffsetDateTime::from_unix_timestamp(at).expect("in range");
    sign_round_trip(name, scheme.as_ref(), &method, url, &uri, body, at);
});
