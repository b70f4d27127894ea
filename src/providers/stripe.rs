//! Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 over
//! `{t}.{body}`; the whole `whsec_…` string is the key (not decoded); 300 s, too-old only
//! (as Stripe's SDK). Every `v1` is checked (several during a secret roll); `v0` and
//! unknown schemes are ignored. The replay key is the event's `id` in the body.
//!
//! ```
//! use hookguard::{providers::stripe, verify::{Outgoing, Scheme, Sign, WebhookRequest}};
//!
//! let scheme = stripe::scheme("whsec_test_secret").unwrap();
//! let now = time::OffsetDateTime::now_utc();
//! let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
//! let (name, value) = scheme.sign(&Outgoing::new(body).timestamp(now)).unwrap().remove(0);
//! let req = http::Request::post("/").header(name, value).body(body.to_vec()).unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
//! assert_eq!(verified.id(), Some("evt_1"));
//! assert_eq!(verified.event(), Some("charge.succeeded"));
//! ```

use http::HeaderName;

use super::FIVE_MINUTES;
use crate::{
    ConfigError,
    verify::{
        Algorithm, Encoding, Field, HmacScheme, Piece, SignatureFormat, SignedContent, TimestampFormat,
        Tolerance,
    },
};

/// `Stripe-Signature`.
///
/// ```
/// assert_eq!(hookguard::providers::stripe::HEADER, "stripe-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("stripe-signature");

/// Stripe with one endpoint secret (`whsec_…`, used verbatim).
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::stripe, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = stripe::scheme("whsec_test")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// let (_, signature) = headers.iter().find(|(name, _)| name == stripe::HEADER).unwrap();
/// assert!(signature.to_str()?.starts_with("t="));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = stripe::scheme("whsec_other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("stripe", Algorithm::Sha256)
        .signature(
            Field::Header(HEADER),
            SignatureFormat::Pairs { separator: b',', signature_key: "v1", timestamp_key: Some("t") },
            Encoding::Hex,
        )
        .timestamp(Field::SignatureParam, TimestampFormat::UnixSeconds)
        .content(SignedContent::from_static(&[Piece::Timestamp, Piece::Literal(b"."), Piece::Body]))
        .tolerance(Tolerance::past_only(FIVE_MINUTES))
        .id(Field::Json(&["id"]))
        .event(Field::Json(&["type"]))
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{KeyedMac, Reason, Scheme, WebhookRequest};

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn sig(secret: &str, ts: &str, body: &[u8]) -> String {
        let key = KeyedMac::new(Algorithm::Sha256, &crate::Secret::new(secret).unwrap());
        let mut m = key.start();
        m.update(ts.as_bytes());
        m.update(b".");
        m.update(body);
        const_hex::encode(m.finish().as_bytes())
    }

    fn verify(scheme: &HmacScheme, header: &str, body: &[u8], now: i64) -> Result<(), Reason> {
        let req = http::Request::post("/").header("stripe-signature", header).body(body.to_vec()).unwrap();
        scheme.verify(&WebhookRequest::from_request(&req), at(now)).map(|_| ()).map_err(|r| r.reason())
    }

    #[test]
    fn whsec_prefix_is_part_of_the_key() {
        let body = br#"{"id":"evt_1"}"#;
        let good = sig("whsec_abc", "1700000000", body);
        let stripped = sig("abc", "1700000000", body);
        let scheme = scheme("whsec_abc").unwrap();
        assert_eq!(verify(&scheme, &format!("t=1700000000,v1={good}"), body, 1_700_000_000), Ok(()));
        assert_eq!(
            verify(&scheme, &format!("t=1700000000,v1={stripped}"), body, 1_700_000_000),
            Err(Reason::SignatureMismatch)
        );
    }

    #[test]
    fn every_v1_is_considered_during_a_roll() {
        let body = b"{}";
        let good = sig("whsec_new", "1700000000", body);
        let other = sig("whsec_other", "1700000000", body);
        let scheme = scheme("whsec_new").unwrap();
        // The matching one first, in the middle, last: all accepted (async-stripe checks only the last).
        for header in [
            format!("t=1700000000,v1={good},v1={other}"),
            format!("t=1700000000,v1={other},v1={good},v0={other}"),
            format!("t=1700000000,v0={other},v1={other},v1={good}"),
        ] {
            assert_eq!(verify(&scheme, &header, body, 1_700_000_000), Ok(()), "{header}");
        }
    }

    #[test]
    fn rotation_of_our_own_secrets() {
        let body = b"{}";
        let old = sig("whsec_old", "1700000000", body);
        let scheme = scheme("whsec_new").unwrap().with_secret("whsec_old").unwrap();
        assert_eq!(verify(&scheme, &format!("t=1700000000,v1={old}"), body, 1_700_000_000), Ok(()));
    }

    #[test]
    fn too_old_only() {
        let body = b"{}";
        let s = sig("whsec_k", "1700000000", body);
        let scheme = scheme("whsec_k").unwrap();
        let header = format!("t=1700000000,v1={s}");
        assert_eq!(verify(&scheme, &header, body, 1_700_000_301), Err(Reason::TimestampTooOld));
        // A timestamp far in the future is not refused, as in Stripe's SDK.
        assert_eq!(verify(&scheme, &header, body, 1_600_000_000), Ok(()));
    }

    #[test]
    fn header_errors() {
        let scheme = scheme("whsec_k").unwrap();
        assert_eq!(verify(&scheme, "v1=00", b"", 0), Err(Reason::MissingTimestamp));
        assert_eq!(verify(&scheme, "t=abc,v1=00", b"", 0), Err(Reason::MalformedTimestamp));
        assert_eq!(verify(&scheme, "t=1,v0=00", b"", 0), Err(Reason::MissingSignature));
    }
}
