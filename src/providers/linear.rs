//! Linear: `linear-signature: <hex>`, HMAC-SHA256 over the body with the webhook's
//! signing secret. The timestamp is the body's `webhookTimestamp` (unix milliseconds),
//! else the `linear-timestamp` header (also milliseconds); ±60 s, past and future, as
//! Linear's SDK. The delivery id is `Linear-Delivery` (*unconfirmed*: from third-party
//! write-ups), which Linear does not sign: deliveries are keyed by their signature
//! ([`Verified::id_is_signed`](crate::verify::Verified::id_is_signed)). The event is the
//! body's `type`, else the `linear-event` header. No rotation.
//!
//! Linear's SDK prefers the headers when both are present; this preset prefers the body's
//! members (timestamp and event type), because the signature covers the body and not the
//! headers (a replayed request could carry fresh headers, never a fresh body). A delivery
//! timed by the header alone proves nothing by its freshness
//! ([`Verified::timestamp_is_signed`](crate::verify::Verified::timestamp_is_signed)): the
//! guard keeps its replay mark as long as an untimed delivery's (72 h by default), not
//! the 2-minute window.
//!
//! ```
//! use hookguard::{providers::linear, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = linear::scheme("linear_secret").unwrap();
//! let req = http::Request::post("/hooks/linear")
//!     .header("linear-signature", "1b912ae7b8aa915f5c7f2a82ad16048ba94da42871fbabdffbdc6cf9e9ff2320")
//!     .header("linear-delivery", "234d1a4e-b617-4388-90fe-adc3633d6b72")
//!     .header("linear-event", "Issue")
//!     .body(br#"{"action":"create","type":"Issue","webhookTimestamp":1700000000000}"#.to_vec())
//!     .unwrap();
//! let now = time::OffsetDateTime::from_unix_timestamp(1700000030).unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
//! assert_eq!(verified.event(), Some("Issue"));
//! ```

use std::time::Duration;

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat, TimestampFormat, Tolerance},
};

/// `linear-signature`.
///
/// ```
/// assert_eq!(hookguard::providers::linear::HEADER, "linear-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("linear-signature");
/// `Linear-Delivery` (*unconfirmed*).
///
/// ```
/// assert_eq!(hookguard::providers::linear::DELIVERY, "linear-delivery");
/// ```
pub const DELIVERY: HeaderName = HeaderName::from_static("linear-delivery");

/// Linear's SDK: 60 s either way.
///
/// ```
/// use hookguard::{providers::linear, verify::Scheme};
/// use std::time::Duration;
/// assert_eq!(linear::TOLERANCE.past(), Some(Duration::from_secs(60)));
/// assert_eq!(linear::TOLERANCE.future(), Some(Duration::from_secs(60)));
/// assert_eq!(linear::scheme("s").unwrap().tolerance(), linear::TOLERANCE);
/// ```
pub const TOLERANCE: Tolerance = Tolerance::symmetric(Duration::from_secs(60));

/// Body `webhookTimestamp`, then the `linear-timestamp` header.
static TIMESTAMP: [Field; 2] =
    [Field::Json(&["webhookTimestamp"]), Field::Header(HeaderName::from_static("linear-timestamp"))];
/// The body's `type` (signed), then the `linear-event` header (not signed).
static EVENT: [Field; 2] = [Field::Json(&["type"]), Field::Header(HeaderName::from_static("linear-event"))];

/// Linear with the webhook's signing secret.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::linear, verify::Scheme};
/// let scheme = linear::scheme("linear_secret").unwrap();
/// assert_eq!(scheme.tolerance(), linear::TOLERANCE);
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("linear", Algorithm::Sha256)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
        .timestamp(Field::Any(&TIMESTAMP), TimestampFormat::UnixMillis)
        .tolerance(TOLERANCE)
        .id(Field::Header(DELIVERY))
        .event(Field::Any(&EVENT))
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // No official vector exists (vectors.md); computed with Python's hmac.
    const BODY: &[u8] = br#"{"action":"create","type":"Issue","webhookTimestamp":1700000000000}"#;
    const SIG: &str = "1b912ae7b8aa915f5c7f2a82ad16048ba94da42871fbabdffbdc6cf9e9ff2320";
    const T: i64 = 1_700_000_000;

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn check(scheme: &HmacScheme, headers: &[(&str, &str)], body: &[u8], now: i64) -> Result<(), Reason> {
        let mut req = http::Request::post("/");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(body.to_vec()).unwrap();
        scheme.verify(&WebhookRequest::from_request(&req), at(now)).map(|_| ()).map_err(|r| r.reason())
    }

    #[test]
    fn computed_vector() {
        let scheme = scheme("linear_secret").unwrap();
        assert_eq!(check(&scheme, &[("linear-signature", SIG)], BODY, T), Ok(()));
        let upper = SIG.to_uppercase();
        assert_eq!(check(&scheme, &[("linear-signature", &upper)], BODY, T), Ok(()));
        let wrong = super::scheme("other").unwrap();
        assert_eq!(check(&wrong, &[("linear-signature", SIG)], BODY, T), Err(Reason::SignatureMismatch));
    }

    #[test]
    fn tolerance_edges_from_the_body() {
        let scheme = scheme("linear_secret").unwrap();
        let h = [("linear-signature", SIG)];
        assert_eq!(check(&scheme, &h, BODY, T + 60), Ok(()));
        assert_eq!(check(&scheme, &h, BODY, T + 61), Err(Reason::TimestampTooOld));
        assert_eq!(check(&scheme, &h, BODY, T - 60), Ok(()));
        assert_eq!(check(&scheme, &h, BODY, T - 61), Err(Reason::TimestampInFuture));
    }

    #[test]
    fn body_timestamp_wins_over_header() {
        let scheme = scheme("linear_secret").unwrap();
        // A fresh header cannot revive a stale signed body.
        let fresh = (T + 3600) * 1000;
        let h = [("linear-signature", SIG), ("linear-timestamp", &*fresh.to_string())];
        assert_eq!(check(&scheme, &h, BODY, T + 3600), Err(Reason::TimestampTooOld));
    }

    /// The signed body's `type` wins over the unsigned `linear-event` header.
    #[test]
    fn the_event_is_the_bodys_type_whatever_the_header_says() {
        let scheme = scheme("linear_secret").unwrap();
        let body = br#"{"action":"update","type":"Comment","webhookTimestamp":1700000000000}"#;
        let mut req = http::Request::post("/").header("linear-event", "Issue");
        for (n, v) in scheme.sign(&Outgoing::new(body).timestamp(at(T))).unwrap() {
            req = req.header(n, v);
        }
        let req = req.body(body.to_vec()).unwrap();
        let v = scheme.verify(&WebhookRequest::from_request(&req), at(T + 10)).unwrap();
        assert_eq!(v.event(), Some("Comment"));
    }

    #[test]
    fn header_timestamp_when_the_body_has_none() {
        let scheme = scheme("linear_secret").unwrap();
        let body = br#"{"action":"update","type":"Comment"}"#;
        let headers = scheme.sign(&Outgoing::new(body).timestamp(at(T))).unwrap();
        assert_eq!(headers[1].0, "linear-timestamp");
        assert_eq!(headers[1].1, "1700000000000");
        let mut req = http::Request::post("/").header("linear-delivery", "d-1");
        for (n, v) in headers {
            req = req.header(n, v);
        }
        let req = req.body(body.to_vec()).unwrap();
        let v = scheme.verify(&WebhookRequest::from_request(&req), at(T + 10)).unwrap();
        assert_eq!(v.id(), Some("d-1"));
        assert_eq!(v.event(), Some("Comment"), "event from the body's type");
        assert!(!v.timestamp_is_signed(), "the header is not signed");
        // The body's own timestamp is signed, header or no header.
        let timed = http::Request::post("/")
            .header("linear-signature", SIG)
            .header("linear-timestamp", "1700000000000")
            .body(BODY.to_vec())
            .unwrap();
        let v = scheme.verify(&WebhookRequest::from_request(&timed), at(T + 10)).unwrap();
        assert!(v.timestamp_is_signed(), "webhookTimestamp is in the signed body");
        assert_eq!(
            check(&scheme, &[("linear-signature", SIG)], body, T),
            Err(Reason::MissingTimestamp),
            "no timestamp anywhere"
        );
    }
}
