//! Twitch EventSub (webhook transport): `Twitch-Eventsub-Message-Signature:
//! sha256=<hex>`, HMAC-SHA256 over `{id}{ts}{body}` (no separators), where `{id}` is
//! `Twitch-Eventsub-Message-Id` and `{ts}` the `Twitch-Eventsub-Message-Timestamp` text
//! as received (RFC 3339 with nanoseconds). Tolerance 10 minutes (*unconfirmed*: Twitch
//! asks to refuse older messages; future ones are refused past the same window). The
//! replay key is the message id; the event type is the body's `subscription.type` (signed),
//! else the `Twitch-Eventsub-Subscription-Type` header (not signed).
//!
//! Twitch confirms a new subscription with a signed `webhook_callback_verification`
//! message whose `challenge` must be answered as plain text: [`callback_verification`]
//! answers it after the signature held.
//!
//! ```
//! use hookguard::{providers::twitch, verify::{Scheme, TimestampFormat, WebhookRequest}};
//!
//! let scheme = twitch::scheme("twitch_secret").unwrap();
//! let req = http::Request::post("/hooks/twitch")
//!     .header("twitch-eventsub-message-id", "e76c6bd4-55c9-4987-8304-da1588d8988b")
//!     .header("twitch-eventsub-message-timestamp", "2019-11-16T10:11:12.634234626Z")
//!     .header("twitch-eventsub-message-signature", "sha256=6a3bc42b9fa147fd2b4a50851ea347c10dd1a15b4f4f9e2c7bc558163d23817f")
//!     .header("twitch-eventsub-subscription-type", "channel.follow")
//!     .body(br#"{"subscription":{"type":"channel.follow"}}"#.to_vec())
//!     .unwrap();
//! let now = TimestampFormat::Rfc3339.parse(b"2019-11-16T10:15:00Z").unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
//! assert_eq!(verified.id(), Some("e76c6bd4-55c9-4987-8304-da1588d8988b"));
//! assert_eq!(verified.event(), Some("channel.follow"));
//! ```

use std::time::Duration;

use http::{HeaderName, Response};

use super::respond;
use crate::{
    ConfigError,
    verify::{
        Algorithm, Encoding, Field, HmacScheme, Piece, SignatureFormat, SignedContent, TimestampFormat,
        Tolerance,
    },
};

/// `Twitch-Eventsub-Message-Id`.
///
/// ```
/// assert_eq!(hookguard::providers::twitch::ID, "twitch-eventsub-message-id");
/// ```
pub const ID: HeaderName = HeaderName::from_static("twitch-eventsub-message-id");
/// `Twitch-Eventsub-Message-Timestamp`.
///
/// ```
/// assert_eq!(hookguard::providers::twitch::TIMESTAMP, "twitch-eventsub-message-timestamp");
/// ```
pub const TIMESTAMP: HeaderName = HeaderName::from_static("twitch-eventsub-message-timestamp");
/// `Twitch-Eventsub-Message-Signature`.
///
/// ```
/// assert_eq!(hookguard::providers::twitch::SIGNATURE, "twitch-eventsub-message-signature");
/// ```
pub const SIGNATURE: HeaderName = HeaderName::from_static("twitch-eventsub-message-signature");
/// `Twitch-Eventsub-Message-Type` (`notification`, `webhook_callback_verification`,
/// `revocation`).
///
/// ```
/// assert_eq!(hookguard::providers::twitch::MESSAGE_TYPE, "twitch-eventsub-message-type");
/// ```
pub const MESSAGE_TYPE: HeaderName = HeaderName::from_static("twitch-eventsub-message-type");
/// `Twitch-Eventsub-Subscription-Type` (`channel.follow`, …).
///
/// ```
/// assert_eq!(hookguard::providers::twitch::SUBSCRIPTION_TYPE, "twitch-eventsub-subscription-type");
/// ```
pub const SUBSCRIPTION_TYPE: HeaderName = HeaderName::from_static("twitch-eventsub-subscription-type");

/// Ten minutes (*unconfirmed*).
///
/// ```
/// use hookguard::{providers::twitch, verify::Scheme};
/// assert_eq!(twitch::TOLERANCE.as_secs(), 600);
/// assert_eq!(twitch::scheme("s3cr3t-s3cr3t").unwrap().tolerance().past(), Some(twitch::TOLERANCE));
/// ```
pub const TOLERANCE: Duration = Duration::from_secs(600);

/// `{id}{ts}{body}`.
///
/// ```
/// use hookguard::{providers::twitch, verify::Piece};
/// assert_eq!(twitch::CONTENT.pieces(), [Piece::Id, Piece::Timestamp, Piece::Body]);
/// ```
pub const CONTENT: SignedContent = SignedContent::from_static(&[Piece::Id, Piece::Timestamp, Piece::Body]);

/// The body's `subscription.type` (signed), then the header (not signed).
static EVENT: [Field; 2] = [Field::Json(&["subscription", "type"]), Field::Header(SUBSCRIPTION_TYPE)];

/// Twitch EventSub with the subscription's secret.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::twitch, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = twitch::scheme("s3cr3t")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).id("m-1").timestamp(now))?;
/// let (_, signature) = headers.iter().find(|(name, _)| name == twitch::SIGNATURE).unwrap();
/// assert!(signature.to_str()?.starts_with("sha256="));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = twitch::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("twitch", Algorithm::Sha256)
        .signature(Field::Header(SIGNATURE), SignatureFormat::Plain { prefix: "sha256=" }, Encoding::Hex)
        .content(CONTENT)
        .id(Field::Header(ID))
        .timestamp(Field::Header(TIMESTAMP), TimestampFormat::Rfc3339)
        .tolerance(Tolerance::symmetric(TOLERANCE))
        .event(Field::Any(&EVENT))
        .secret(secret)
        .build()
}

/// Answers a `webhook_callback_verification` message (a post-verify step: call it with
/// the body of a request that verified).
///
/// A verification message is known by its body, which Twitch signs: when the body's
/// `challenge` is a JSON string, `200` with the challenge as a `text/plain` body, whatever
/// `Twitch-Eventsub-Message-Type` says. That header is not signed: read from it, a captured
/// verification message resent as a `notification` would be taken for an event once.
/// Notifications and revocations carry no `challenge`: `None` for them, and for a
/// `challenge` that is not a string (numbers are not echoed).
///
/// ```
/// use hookguard::providers::twitch;
///
/// let answer = twitch::callback_verification(br#"{"challenge":"pogchamp-kappa-360noscope-vohiyo"}"#).unwrap();
/// assert_eq!(answer.body(), b"pogchamp-kappa-360noscope-vohiyo");
/// assert!(twitch::callback_verification(br#"{"subscription":{},"event":{}}"#).is_none());
/// ```
#[must_use]
pub fn callback_verification(body: &[u8]) -> Option<Response<Vec<u8>>> {
    let challenge = respond::json_string(body, &["challenge"])?;
    Some(respond::plain_text(challenge.into_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // Self-computed (no official vector exists): python3
    // hmac.new(b"twitch_secret", (ID + TS).encode() + BODY, sha256).hexdigest().
    const MSG_ID: &str = "e76c6bd4-55c9-4987-8304-da1588d8988b";
    const TS: &str = "2019-11-16T10:11:12.634234626Z";
    const BODY: &[u8] = br#"{"subscription":{"type":"channel.follow"}}"#;
    const SIG: &str = "sha256=6a3bc42b9fa147fd2b4a50851ea347c10dd1a15b4f4f9e2c7bc558163d23817f";

    fn sent_at() -> time::OffsetDateTime {
        TimestampFormat::Rfc3339.parse(TS.as_bytes()).unwrap()
    }

    fn verify(secret: &str, id: &str, ts: &str, sig: &str, now: time::OffsetDateTime) -> Result<(), Reason> {
        let req = http::Request::post("/")
            .header("twitch-eventsub-message-id", id)
            .header("twitch-eventsub-message-timestamp", ts)
            .header("twitch-eventsub-message-signature", sig)
            .body(BODY.to_vec())
            .unwrap();
        scheme(secret)
            .unwrap()
            .verify(&WebhookRequest::from_request(&req), now)
            .map(|_| ())
            .map_err(|r| r.reason())
    }

    #[test]
    fn table() {
        let now = sent_at();
        let ten = time::Duration::seconds(600);
        let eps = time::Duration::nanoseconds(1);
        let cases: &[(&str, &str, &str, &str, &str, time::OffsetDateTime, Result<(), Reason>)] = &[
            ("self-computed vector", "twitch_secret", MSG_ID, TS, SIG, now, Ok(())),
            ("wrong secret", "other", MSG_ID, TS, SIG, now, Err(Reason::SignatureMismatch)),
            ("other id", "twitch_secret", "x", TS, SIG, now, Err(Reason::SignatureMismatch)),
            // The text as received is signed, not a re-formatting of the instant.
            (
                "same instant, other text",
                "twitch_secret",
                MSG_ID,
                "2019-11-16T10:11:12.634234626+00:00",
                SIG,
                now,
                Err(Reason::SignatureMismatch),
            ),
            ("10 min old", "twitch_secret", MSG_ID, TS, SIG, now + ten, Ok(())),
            (
                "just over 10 min old",
                "twitch_secret",
                MSG_ID,
                TS,
                SIG,
                now + ten + eps,
                Err(Reason::TimestampTooOld),
            ),
            ("10 min ahead", "twitch_secret", MSG_ID, TS, SIG, now - ten, Ok(())),
            (
                "just over 10 min ahead",
                "twitch_secret",
                MSG_ID,
                TS,
                SIG,
                now - ten - eps,
                Err(Reason::TimestampInFuture),
            ),
            (
                "unix seconds",
                "twitch_secret",
                MSG_ID,
                "1573899072",
                SIG,
                now,
                Err(Reason::MalformedTimestamp),
            ),
        ];
        for (name, secret, id, ts, sig, at, want) in cases {
            assert_eq!(verify(secret, id, ts, sig, *at), *want, "case {name}");
        }
    }

    #[test]
    fn sign_round_trip() {
        let scheme = scheme("twitch_secret").unwrap();
        let now = time::OffsetDateTime::now_utc();
        let headers = scheme.sign(&Outgoing::new(BODY).id(MSG_ID).timestamp(now)).unwrap();
        let mut req = http::Request::post("/");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req.body(BODY.to_vec()).unwrap();
        let v = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
        assert_eq!(v.id(), Some(MSG_ID));
    }

    /// The signed body's `subscription.type` wins over the unsigned header.
    #[test]
    fn the_event_is_the_bodys_subscription_type() {
        let scheme = scheme("twitch_secret").unwrap();
        let now = time::OffsetDateTime::now_utc();
        let body = br#"{"subscription":{"type":"channel.follow"}}"#;
        let mut req = http::Request::post("/").header("twitch-eventsub-subscription-type", "channel.ban");
        for (name, value) in scheme.sign(&Outgoing::new(body).id(MSG_ID).timestamp(now)).unwrap() {
            req = req.header(name, value);
        }
        let req = req.body(body.to_vec()).unwrap();
        let v = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
        assert_eq!(v.event(), Some("channel.follow"));
    }

    #[test]
    fn callback_verification_table() {
        let cases: &[(&str, &[u8], Option<&[u8]>)] = &[
            ("challenge", br#"{"challenge":"abc","subscription":{}}"#, Some(b"abc")),
            ("escaped challenge", br#"{"challenge":"a\"b"}"#, Some(b"a\"b")),
            ("no challenge", br#"{"subscription":{}}"#, None),
            ("notification", br#"{"subscription":{},"event":{"user_id":"1"}}"#, None),
            ("nested challenge", br#"{"event":{"challenge":"abc"}}"#, None),
            ("number challenge", br#"{"challenge":12}"#, None),
            ("not json", b"\xff", None),
        ];
        for (name, body, want) in cases {
            let got = callback_verification(body);
            assert_eq!(got.as_ref().map(|r| r.body().as_slice()), *want, "case {name}");
            if let Some(r) = got {
                assert_eq!(r.status(), 200);
                assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
            }
        }
    }
}
