//! Calendly: `Calendly-Webhook-Signature: t=<ts>,v1=<hex>`, HMAC-SHA256 over `{t}.{body}`
//! keyed with the webhook signing key; `t` in unix seconds. Tolerance about 3 minutes,
//! too-old only (*unconfirmed*: from third-party write-ups of Calendly's docs). No
//! delivery id (the replay key is a SHA-256 of the body, which a retry signed anew keeps;
//! see [`Verified::fingerprint`](crate::verify::Verified::fingerprint)). Every `v1` entry is checked.
//!
//! ```
//! use hookguard::{providers::calendly, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = calendly::scheme("calendly_key").unwrap();
//! let req = http::Request::post("/hooks/calendly")
//!     .header("calendly-webhook-signature", "t=1700000000,v1=3cb32bf5abcdbad9b8dbd2035eeaaa76b9db4c6d4f8623643808d584270e7256")
//!     .body(br#"{"event":"invitee.created"}"#.to_vec())
//!     .unwrap();
//! let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_060).unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
//! assert_eq!(verified.event(), Some("invitee.created"));
//! ```

use std::time::Duration;

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{
        Algorithm, Encoding, Field, HmacScheme, Piece, SignatureFormat, SignedContent, TimestampFormat,
        Tolerance,
    },
};

/// `Calendly-Webhook-Signature`.
///
/// ```
/// assert_eq!(hookguard::providers::calendly::HEADER, "calendly-webhook-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("calendly-webhook-signature");

/// Three minutes, too-old only (*unconfirmed*).
///
/// ```
/// use hookguard::{providers::calendly, verify::Scheme};
/// assert_eq!(calendly::TOLERANCE.as_secs(), 180);
/// assert_eq!(calendly::scheme("key").unwrap().tolerance().future(), None, "too-old only");
/// ```
pub const TOLERANCE: Duration = Duration::from_secs(180);

/// Calendly with one webhook signing key.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty key.
///
/// ```
/// use hookguard::{providers::calendly, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = calendly::scheme("signing-key")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// let (_, signature) = headers.iter().find(|(name, _)| name == calendly::HEADER).unwrap();
/// assert!(signature.to_str()?.starts_with("t="));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = calendly::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(signing_key: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("calendly", Algorithm::Sha256)
        .signature(
            Field::Header(HEADER),
            SignatureFormat::Pairs { separator: b',', signature_key: "v1", timestamp_key: Some("t") },
            Encoding::Hex,
        )
        .timestamp(Field::SignatureParam, TimestampFormat::UnixSeconds)
        .content(SignedContent::from_static(&[Piece::Timestamp, Piece::Literal(b"."), Piece::Body]))
        .tolerance(Tolerance::past_only(TOLERANCE))
        .event(Field::Json(&["event"]))
        .secret(signing_key)
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // Self-computed (no official vector exists): python3
    // hmac.new(b"calendly_key", b"1700000000." + BODY, sha256).hexdigest().
    const BODY: &[u8] = br#"{"event":"invitee.created"}"#;
    const SIG: &str = "t=1700000000,v1=3cb32bf5abcdbad9b8dbd2035eeaaa76b9db4c6d4f8623643808d584270e7256";

    fn verify(secret: &str, sig: &str, now: i64) -> Result<(), Reason> {
        let req =
            http::Request::post("/").header("calendly-webhook-signature", sig).body(BODY.to_vec()).unwrap();
        scheme(secret)
            .unwrap()
            .verify(
                &WebhookRequest::from_request(&req),
                time::OffsetDateTime::from_unix_timestamp(now).unwrap(),
            )
            .map(|_| ())
            .map_err(|r| r.reason())
    }

    #[test]
    fn table() {
        let t = 1_700_000_000;
        let cases: &[(&str, &str, &str, i64, Result<(), Reason>)] = &[
            ("self-computed vector", "calendly_key", SIG, t, Ok(())),
            ("wrong key", "other", SIG, t, Err(Reason::SignatureMismatch)),
            ("180 s old", "calendly_key", SIG, t + 180, Ok(())),
            ("181 s old", "calendly_key", SIG, t + 181, Err(Reason::TimestampTooOld)),
            ("far future is not checked", "calendly_key", SIG, t - 86_400, Ok(())),
            (
                "timestamp changed",
                "calendly_key",
                "t=1700000001,v1=3cb32bf5abcdbad9b8dbd2035eeaaa76b9db4c6d4f8623643808d584270e7256",
                t,
                Err(Reason::SignatureMismatch),
            ),
            (
                "no timestamp",
                "calendly_key",
                "v1=3cb32bf5abcdbad9b8dbd2035eeaaa76b9db4c6d4f8623643808d584270e7256",
                t,
                Err(Reason::MissingTimestamp),
            ),
        ];
        for (name, secret, sig, now, want) in cases {
            assert_eq!(verify(secret, sig, *now), *want, "case {name}");
        }
    }

    #[test]
    fn sign_round_trip() {
        let scheme = scheme("calendly_key").unwrap();
        let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let headers = scheme.sign(&Outgoing::new(BODY).timestamp(at)).unwrap();
        assert_eq!(headers[0].1, SIG);
    }
}
