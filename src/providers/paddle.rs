//! Paddle Billing: `Paddle-Signature: ts=<unix seconds>;h1=<hex>[;h1=<hex>…]`,
//! HMAC-SHA256 over `{ts}:{body}` with the notification destination's secret key; 5 s,
//! too-old only (as Paddle's SDK); the replay key is the body's `event_id`
//! (*unconfirmed*: from third-party write-ups), the event its `event_type`. Every `h1`
//! is checked (Paddle's docs allow several during a secret rotation; its SDK wrongly
//! keeps only the last).
//!
//! The 5 s window is tight: a receiver whose clock drifts may want
//! [`HmacScheme::with_tolerance`].
//!
//! ```
//! use hookguard::{providers::paddle, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = paddle::scheme("VALID_SECRET").unwrap();
//! let req = http::Request::post("/hooks/paddle")
//!     .header("paddle-signature", "ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9")
//!     .body(br#"{"data": ["1", "2"]}"#.to_vec())
//!     .unwrap();
//! let now = time::OffsetDateTime::from_unix_timestamp(1698796802).unwrap();
//! assert!(scheme.verify(&WebhookRequest::from_request(&req), now).is_ok());
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

/// `Paddle-Signature`.
///
/// ```
/// assert_eq!(hookguard::providers::paddle::HEADER, "paddle-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("paddle-signature");

/// Paddle's SDK default: 5 seconds, too-old only.
///
/// ```
/// use hookguard::{providers::paddle, verify::Scheme};
/// use std::time::Duration;
/// assert_eq!(paddle::TOLERANCE.past(), Some(Duration::from_secs(5)));
/// assert_eq!(paddle::TOLERANCE.future(), None, "too-old only");
/// assert_eq!(paddle::scheme("s").unwrap().tolerance(), paddle::TOLERANCE);
/// ```
pub const TOLERANCE: Tolerance = Tolerance::past_only(Duration::from_secs(5));

/// `ts=…;h1=…` pairs.
///
/// ```
/// use hookguard::{providers::paddle, verify::SignatureFormat};
/// assert_eq!(paddle::FORMAT, SignatureFormat::Pairs { separator: b';', signature_key: "h1", timestamp_key: Some("ts") });
/// ```
pub const FORMAT: SignatureFormat =
    SignatureFormat::Pairs { separator: b';', signature_key: "h1", timestamp_key: Some("ts") };

/// Paddle Billing with one secret key.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::paddle, verify::{Outgoing, Sign}};
/// let scheme = paddle::scheme("VALID_SECRET").unwrap();
/// let at = time::OffsetDateTime::from_unix_timestamp(1698796800).unwrap();
/// let headers = scheme.sign(&Outgoing::new(br#"{"data": ["1", "2"]}"#).timestamp(at)).unwrap();
/// assert_eq!(headers[0].1, "ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9");
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("paddle", Algorithm::Sha256)
        .signature(Field::Header(HEADER), FORMAT, Encoding::Hex)
        .timestamp(Field::SignatureParam, TimestampFormat::UnixSeconds)
        .content(SignedContent::from_static(&[Piece::Timestamp, Piece::Literal(b":"), Piece::Body]))
        .tolerance(TOLERANCE)
        .id(Field::Json(&["event_id"]))
        .event(Field::Json(&["event_type"]))
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    const BODY: &[u8] = br#"{"data": ["1", "2"]}"#;
    const H1: &str = "a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9";
    const OTHER: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    const T: i64 = 1_698_796_800;

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn check(scheme: &HmacScheme, header: &str, body: &[u8], now: i64) -> Result<(), Reason> {
        let req = http::Request::post("/").header("paddle-signature", header).body(body.to_vec()).unwrap();
        scheme.verify(&WebhookRequest::from_request(&req), at(now)).map(|_| ()).map_err(|r| r.reason())
    }

    /// PROVIDERS.md vector; every `h1` is considered, wherever it sits.
    #[test]
    fn official_vector_and_every_h1() {
        let scheme = scheme("VALID_SECRET").unwrap();
        let rows = [
            ("vector", format!("ts=1698796800;h1={H1}"), Ok(())),
            ("match first", format!("ts=1698796800;h1={H1};h1={OTHER}"), Ok(())),
            ("match last", format!("ts=1698796800;h1={OTHER};h1={H1}"), Ok(())),
            ("spaces", format!("ts=1698796800; h1={H1}"), Ok(())),
            ("none match", format!("ts=1698796800;h1={OTHER}"), Err(Reason::SignatureMismatch)),
            ("comma is not the separator", format!("ts=1698796800,h1={H1}"), Err(Reason::MissingSignature)),
            ("no ts", format!("h1={H1}"), Err(Reason::MissingTimestamp)),
            ("other ts", format!("ts=1698796801;h1={H1}"), Err(Reason::SignatureMismatch)),
        ];
        for (name, header, want) in rows {
            assert_eq!(check(&scheme, &header, BODY, T), want, "case {name}");
        }
        let wrong = super::scheme("INVALID_SECRET").unwrap();
        assert_eq!(check(&wrong, &format!("ts=1698796800;h1={H1}"), BODY, T), Err(Reason::SignatureMismatch));
    }

    #[test]
    fn tolerance_too_old_only() {
        let scheme = scheme("VALID_SECRET").unwrap();
        let header = format!("ts=1698796800;h1={H1}");
        assert_eq!(check(&scheme, &header, BODY, T + 5), Ok(()));
        assert_eq!(check(&scheme, &header, BODY, T + 6), Err(Reason::TimestampTooOld));
        assert_eq!(check(&scheme, &header, BODY, T - 3600), Ok(()), "future timestamps are not refused");
    }

    #[test]
    fn round_trip_reads_event_id_and_type() {
        let scheme = scheme("VALID_SECRET").unwrap();
        let body = br#"{"event_id":"evt_01h","event_type":"transaction.completed","data":{}}"#;
        let (name, value) = scheme.sign(&Outgoing::new(body).timestamp(at(T))).unwrap().remove(0);
        assert_eq!(name, HEADER);
        let req = http::Request::post("/").header(name, value).body(body.to_vec()).unwrap();
        let v = scheme.verify(&WebhookRequest::from_request(&req), at(T)).unwrap();
        assert_eq!(v.id(), Some("evt_01h"));
        assert_eq!(v.event(), Some("transaction.completed"));
        assert_eq!(v.timestamp(), Some(at(T)));
    }
}
