//! A whole request built from fuzz input (any header values, any body, any time) verified
//! by every preset: the header parsers, timestamp parsing, JSON lookups and comparisons
//! all see hostile input. Never panics; a rejection's text never holds the secret.
#![no_main]

use arbitrary::Arbitrary;
use hookguard::{providers, verify::WebhookRequest};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Arbitrary)]
struct Input {
    preset: u8,
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
    now: i64,
}

/// Header names the presets read, so that fuzz values land where parsers look.
const NAMES: &[&str] = &[
    "webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-timestamp",
    "svix-signature", "stripe-signature", "x-hub-signature-256", "x-hub-signature",
    "x-github-delivery", "x-slack-signature", "x-slack-request-timestamp",
    "x-shopify-hmac-sha256", "x-twilio-signature", "paddle-signature", "x-zm-signature",
    "x-zm-request-timestamp", "linear-signature", "x-square-hmacsha256-signature",
    "x-gitlab-token", "typeform-signature", "x-hubspot-signature-v3",
    "x-hubspot-request-timestamp", "x-pagerduty-signature", "twitch-eventsub-message-id",
    "twitch-eventsub-message-timestamp", "twitch-eventsub-message-signature", "x-trello-webhook",
    "x-hook-signature", "calendly-webhook-signature", "x-cc-webhook-signature",
    "x-vercel-signature", "x-dropbox-signature", "x-signature-ed25519", "x-signature-timestamp",
    "x-twilio-email-event-webhook-signature", "x-twilio-email-event-webhook-timestamp",
    "paypal-transmission-id", "paypal-transmission-time", "paypal-transmission-sig",
    "paypal-cert-url", "paypal-auth-algo",
];

fuzz_target!(|input: Input| {
    let names = providers::NAMES;
    let name = names[usize::from(input.preset) % names.len()];
    let Ok(scheme) = providers::by_name(name, &[SECRET]) else { return };
    let mut headers = http::HeaderMap::new();
    for (n, value) in input.headers.iter().take(64) {
        let Ok(value) = http::HeaderValue::from_bytes(value) else { continue };
        headers.append(NAMES[usize::from(*n) % NAMES.len()], value);
    }
    let method = http::Method::POST;
    let uri = http::Uri::from_static("/hooks");
    let req = WebhookRequest::new(&method, &uri, &headers, &input.body).with_url("https://example.com/hooks");
    let now = time::OffsetDateTime::from_unix_timestamp(input.now.rem_euclid(4_000_000_000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    if let Err(rejection) = scheme.verify(&req, now) {
        let text = format!("{rejection} {rejection:?}");
        assert!(!text.contains(SECRET));
    }
});
