//! Mailgun: the signature travels inside the JSON body, not in a header:
//! `{"signature":{"timestamp":"…","token":"…","signature":"<hex>"},"event-data":{…}}`.
//! HMAC-SHA256 over `{timestamp}{token}` with the account's HTTP webhook signing key;
//! the body itself is **not** signed, so a signature must not be used twice: the replay
//! store keeps it and refuses it the second time, as Mailgun's docs advise for the token.
//! The replay key is the MAC's [fingerprint](crate::verify::Verified::fingerprint), not the
//! token: nothing separates the two signed fields, so a digit moved from the timestamp's
//! end to the token's start (or back) gives another token under the same MAC. The token
//! stays the delivery's [`id`](crate::verify::Verified::id) for logs.
//!
//! JSON webhooks only (Mailgun's current ones): the legacy webhooks and Routes, which post
//! `timestamp`, `token` and `signature` as form fields, are refused (`400 malformed-body`).
//!
//! Tolerance: [`TOLERANCE`] by default, 24 hours into the past and 5 minutes into the
//! future. Mailgun documents none (only that the timestamp may be checked), but as the
//! body is not signed, a signature whose token mark expired could carry any body: the
//! tolerance makes it stale first (the replay mark is kept for the whole window). It is
//! wide enough for Mailgun's retries (over 8 hours), whatever timestamp they carry.
//! Change it with [`HmacScheme::with_tolerance`]. The event is `event-data.event`. No
//! rotation.
//!
//! A sender cannot put the signature in a header: [`sign_fields`] computes it for the
//! body's `signature` object (the [`Sign`](crate::verify::Sign) impl refuses).
//!
//! ```
//! use hookguard::{providers::mailgun, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = mailgun::scheme("key-mailgun").unwrap();
//! let body = br#"{"signature":{"timestamp":"1529006854","token":"a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0","signature":"4b85c3571bb0c3c16ab88b8921f8a55087cf0348e3bb3bcca7683c80606696cf"},"event-data":{"event":"opened"}}"#;
//! let req = http::Request::post("/hooks/mailgun").body(body.to_vec()).unwrap();
//! let now = time::OffsetDateTime::from_unix_timestamp(1529006900).unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
//! assert_eq!(verified.id(), Some("a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"));
//! assert_eq!(verified.dedup_key(), verified.fingerprint());
//! assert_eq!(verified.event(), Some("opened"));
//! ```

use std::time::Duration;

use crate::{
    ConfigError,
    verify::{
        Algorithm, Encoding, Field, HmacScheme, Piece, SignatureFormat, SignedContent, TimestampFormat,
        Tolerance,
    },
};

/// The default tolerance: 24 hours into the past, 5 minutes into the future (see the
/// module docs).
///
/// ```
/// use hookguard::{providers::mailgun, verify::Scheme};
/// use std::time::Duration;
/// assert_eq!(mailgun::TOLERANCE.past(), Some(Duration::from_secs(24 * 3600)));
/// assert_eq!(mailgun::TOLERANCE.future(), Some(Duration::from_secs(300)));
/// assert_eq!(mailgun::scheme("key").unwrap().tolerance(), mailgun::TOLERANCE);
/// ```
pub const TOLERANCE: Tolerance =
    Tolerance::new(Some(Duration::from_secs(24 * 3600)), Some(Duration::from_secs(300)));

/// `{timestamp}{token}`: the id piece is the token.
///
/// ```
/// use hookguard::{providers::mailgun, verify::Piece};
/// assert_eq!(mailgun::CONTENT.pieces(), [Piece::Timestamp, Piece::Id]);
/// ```
pub const CONTENT: SignedContent = SignedContent::from_static(&[Piece::Timestamp, Piece::Id]);

/// Mailgun with the HTTP webhook signing key.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty key.
///
/// ```
/// use hookguard::{providers::mailgun, verify::{Outgoing, Sign}};
/// let scheme = mailgun::scheme("key-mailgun").unwrap();
/// assert!(scheme.sign(&Outgoing::new(b"{}")).is_err()); // the signature goes in the body
/// ```
pub fn scheme(signing_key: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("mailgun", Algorithm::Sha256)
        .signature(
            Field::Json(&["signature", "signature"]),
            SignatureFormat::Plain { prefix: "" },
            Encoding::Hex,
        )
        .timestamp(Field::Json(&["signature", "timestamp"]), TimestampFormat::UnixSeconds)
        .tolerance(TOLERANCE)
        .id(Field::Json(&["signature", "token"]))
        .content(CONTENT)
        .event(Field::Json(&["event-data", "event"]))
        .secret(signing_key)
        .build()
}

/// The hex signature for a `signature` object with this timestamp and token, under the
/// scheme's first key (what Mailgun puts in `signature.signature`).
///
/// ```
/// use hookguard::providers::mailgun;
/// let scheme = mailgun::scheme("key-mailgun").unwrap();
/// assert_eq!(
///     mailgun::sign_fields(&scheme, "1529006854", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"),
///     "4b85c3571bb0c3c16ab88b8921f8a55087cf0348e3bb3bcca7683c80606696cf"
/// );
/// ```
#[must_use]
pub fn sign_fields(scheme: &HmacScheme, timestamp: &str, token: &str) -> String {
    let mut message = Vec::with_capacity(timestamp.len() + token.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(token.as_bytes());
    Encoding::Hex.encode(scheme.mac_primary(&message).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Reason, Scheme, Tolerance, WebhookRequest};

    // No official vector exists (vectors.md); computed with Python's hmac.
    const TS: &str = "1529006854";
    const TOKEN: &str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
    const SIG: &str = "4b85c3571bb0c3c16ab88b8921f8a55087cf0348e3bb3bcca7683c80606696cf";

    fn body(ts: &str, token: &str, sig: &str) -> Vec<u8> {
        format!(
            r#"{{"signature":{{"timestamp":"{ts}","token":"{token}","signature":"{sig}"}},"event-data":{{"event":"delivered","id":"ev1"}}}}"#
        )
        .into_bytes()
    }

    fn check(scheme: &HmacScheme, body: &[u8], now: i64) -> Result<(), Reason> {
        let req = http::Request::post("/").body(body.to_vec()).unwrap();
        let now = time::OffsetDateTime::from_unix_timestamp(now).unwrap();
        scheme.verify(&WebhookRequest::from_request(&req), now).map(|_| ()).map_err(|r| r.reason())
    }

    #[test]
    fn computed_vector_table() {
        let scheme = scheme("key-mailgun").unwrap();
        let t = 1_529_006_854;
        let numeric_ts =
            format!(r#"{{"signature":{{"timestamp":{TS},"token":"{TOKEN}","signature":"{SIG}"}}}}"#);
        let rows: Vec<(&str, Vec<u8>, Result<(), Reason>)> = vec![
            ("vector", body(TS, TOKEN, SIG), Ok(())),
            ("numeric timestamp", numeric_ts.into_bytes(), Ok(())),
            ("upper-case hex", body(TS, TOKEN, &SIG.to_uppercase()), Ok(())),
            ("other token", body(TS, "b8ce", SIG), Err(Reason::SignatureMismatch)),
            ("other timestamp", body("1529006855", TOKEN, SIG), Err(Reason::SignatureMismatch)),
            ("bad hex", body(TS, TOKEN, "zz"), Err(Reason::MalformedSignature)),
            ("no signature object", br#"{"event-data":{}}"#.to_vec(), Err(Reason::MissingSignature)),
            (
                "no token",
                format!(r#"{{"signature":{{"timestamp":"{TS}","signature":"{SIG}"}}}}"#).into_bytes(),
                Err(Reason::MissingHeader),
            ),
            (
                "no timestamp",
                format!(r#"{{"signature":{{"token":"{TOKEN}","signature":"{SIG}"}}}}"#).into_bytes(),
                Err(Reason::MissingTimestamp),
            ),
            ("not json", b"timestamp=1&token=2&signature=3".to_vec(), Err(Reason::MalformedBody)),
        ];
        for (name, body, want) in rows {
            assert_eq!(check(&scheme, &body, t), want, "case {name}");
        }
        let wrong = super::scheme("key-other").unwrap();
        assert_eq!(check(&wrong, &body(TS, TOKEN, SIG), t), Err(Reason::SignatureMismatch));
    }

    #[test]
    fn a_day_of_tolerance_unless_told_otherwise() {
        let scheme = scheme("key-mailgun").unwrap();
        let ts = 1_529_006_854;
        assert_eq!(check(&scheme, &body(TS, TOKEN, SIG), ts + 24 * 3600), Ok(()));
        assert_eq!(check(&scheme, &body(TS, TOKEN, SIG), ts + 24 * 3600 + 1), Err(Reason::TimestampTooOld));
        assert_eq!(check(&scheme, &body(TS, TOKEN, SIG), ts - 300), Ok(()));
        assert_eq!(check(&scheme, &body(TS, TOKEN, SIG), ts - 301), Err(Reason::TimestampInFuture));
        let strict = scheme.with_tolerance(Tolerance::symmetric(super::super::FIVE_MINUTES));
        assert_eq!(check(&strict, &body(TS, TOKEN, SIG), 1_529_006_854 + 301), Err(Reason::TimestampTooOld));
    }

    #[test]
    fn sign_fields_round_trip() {
        let scheme = scheme("key-mailgun").unwrap();
        let sig = sign_fields(&scheme, "1700000000", "tok");
        assert_eq!(check(&scheme, &body("1700000000", "tok", &sig), 1_700_000_000), Ok(()));
        let req = http::Request::post("/").body(body(TS, TOKEN, SIG)).unwrap();
        let at = time::OffsetDateTime::from_unix_timestamp(1_529_006_854).unwrap();
        let v = scheme.verify(&WebhookRequest::from_request(&req), at).unwrap();
        assert_eq!(v.id(), Some(TOKEN));
        assert_eq!(v.dedup_key(), v.fingerprint());
    }

    /// `{timestamp}{token}` has no separator: the last digit of the timestamp moved to the
    /// token's start signs the same bytes. With freshness switched off both verify, and
    /// they must share one replay key (the MAC's), not two (the tokens).
    #[test]
    fn a_digit_moved_across_the_boundary_keeps_the_replay_key() {
        let scheme = scheme("key-mailgun").unwrap().with_tolerance(Tolerance::NONE);
        let (ts, token) = ("1700000000", "5f3a");
        let sig = sign_fields(&scheme, ts, token);
        let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let verify = |body: Vec<u8>| {
            let req = http::Request::post("/").body(body).unwrap();
            scheme.verify(&WebhookRequest::from_request(&req), at).unwrap().into_owned()
        };
        let genuine = verify(body(ts, token, &sig));
        let shifted = verify(body("170000000", "05f3a", &sig));
        assert_ne!(genuine.id(), shifted.id());
        assert!(!genuine.id_is_signed());
        assert_eq!(genuine.dedup_key(), shifted.dedup_key());
    }
}
