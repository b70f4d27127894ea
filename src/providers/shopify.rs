//! Shopify: `X-Shopify-Hmac-Sha256: <base64>` (newer event deliveries:
//! `shopify-hmac-sha256`), HMAC-SHA256 over the body with the app's API secret key (or
//! the webhook signing secret shown in the admin); no timestamp (replay marks need a
//! configured time to live); the delivery id is `X-Shopify-Webhook-Id`, else
//! `X-Shopify-Event-Id`; the event is `X-Shopify-Topic`. No rotation on Shopify's side;
//! several configured secrets are all tried.
//!
//! ```
//! use hookguard::{providers::shopify, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = shopify::scheme("test_secret_key").unwrap();
//! let req = http::Request::post("/hooks/shopify")
//!     .header("x-shopify-hmac-sha256", "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=")
//!     .header("x-shopify-webhook-id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
//!     .header("x-shopify-topic", "orders/create")
//!     .body(br#"{"foo": "bar"}"#.to_vec())
//!     .unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
//! assert_eq!(verified.id(), Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"));
//! assert_eq!(verified.event(), Some("orders/create"));
//! ```

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat},
};

/// `X-Shopify-Hmac-Sha256`, then `shopify-hmac-sha256`. (Header names are
/// case-insensitive; the two differ by the `x-` prefix.)
static SIGNATURE: [Field; 2] = [
    Field::Header(HeaderName::from_static("x-shopify-hmac-sha256")),
    Field::Header(HeaderName::from_static("shopify-hmac-sha256")),
];
/// `X-Shopify-Webhook-Id`, then `X-Shopify-Event-Id`, then the newer deliveries'
/// unprefixed `Shopify-Webhook-Id` and `Shopify-Event-Id`. (None is signed: the replay key
/// stays the MAC's fingerprint.)
static ID: [Field; 4] = [
    Field::Header(HeaderName::from_static("x-shopify-webhook-id")),
    Field::Header(HeaderName::from_static("x-shopify-event-id")),
    Field::Header(HeaderName::from_static("shopify-webhook-id")),
    Field::Header(HeaderName::from_static("shopify-event-id")),
];
/// `X-Shopify-Topic`, then the newer deliveries' `Shopify-Topic`.
static EVENT: [Field; 2] = [Field::Header(TOPIC), Field::Header(HeaderName::from_static("shopify-topic"))];
/// `X-Shopify-Topic`.
///
/// ```
/// assert_eq!(hookguard::providers::shopify::TOPIC, "x-shopify-topic");
/// ```
pub const TOPIC: HeaderName = HeaderName::from_static("x-shopify-topic");

/// Shopify with one secret.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::shopify, verify::{Outgoing, Sign}};
/// let scheme = shopify::scheme("test_secret_key").unwrap();
/// let headers = scheme.sign(&Outgoing::new(br#"{"foo": "bar"}"#)).unwrap();
/// assert_eq!(headers[0].0, "x-shopify-hmac-sha256");
/// assert_eq!(headers[0].1, "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=");
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("shopify", Algorithm::Sha256)
        .signature(Field::Any(&SIGNATURE), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        .id(Field::Any(&ID))
        .event(Field::Any(&EVENT))
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    const BODY: &[u8] = br#"{"foo": "bar"}"#;
    const SIG: &str = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=";

    fn check(scheme: &HmacScheme, headers: &[(&str, &str)], body: &[u8]) -> Result<Option<String>, Reason> {
        let mut req = http::Request::post("/");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(body.to_vec()).unwrap();
        scheme
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|v| v.id().map(str::to_owned))
            .map_err(|r| r.reason())
    }

    /// vectors.md §4 (shopify-api-js `validate.test.ts`; the key `test_secret_key` is
    /// inferred: it reproduces the expected value exactly).
    #[test]
    fn official_vector_both_header_names() {
        let scheme = scheme("test_secret_key").unwrap();
        type Row<'a> = (&'a str, Vec<(&'a str, &'a str)>, Result<Option<String>, Reason>);
        let rows: [Row<'_>; 6] = [
            ("classic header", vec![("x-shopify-hmac-sha256", SIG)], Ok(None)),
            ("newer header", vec![("shopify-hmac-sha256", SIG)], Ok(None)),
            (
                "webhook id",
                vec![
                    ("x-shopify-hmac-sha256", SIG),
                    ("x-shopify-webhook-id", "w1"),
                    ("x-shopify-event-id", "e1"),
                ],
                Ok(Some("w1".into())),
            ),
            (
                "event id fallback",
                vec![("x-shopify-hmac-sha256", SIG), ("x-shopify-event-id", "e1")],
                Ok(Some("e1".into())),
            ),
            ("unpadded base64", vec![("x-shopify-hmac-sha256", SIG.trim_end_matches('='))], Ok(None)),
            ("hex is not base64", vec![("x-shopify-hmac-sha256", "zz!")], Err(Reason::MalformedSignature)),
        ];
        for (name, headers, want) in rows {
            assert_eq!(check(&scheme, &headers, BODY), want, "case {name}");
        }
        assert_eq!(check(&scheme, &[], BODY), Err(Reason::MissingSignature));
    }

    /// Newer deliveries drop the `x-` prefix on every header, not only the signature's:
    /// their topic and id are read too (neither is signed).
    #[test]
    fn newer_unprefixed_headers_give_the_topic_and_id() {
        let scheme = scheme("test_secret_key").unwrap();
        let req = http::Request::post("/")
            .header("shopify-hmac-sha256", SIG)
            .header("shopify-topic", "orders/create")
            .header("shopify-event-id", "e1")
            .body(BODY.to_vec())
            .unwrap();
        let v = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!((v.event(), v.id(), v.id_is_signed()), (Some("orders/create"), Some("e1"), false));
    }

    #[test]
    fn round_trip_and_wrong_secret() {
        let scheme = scheme("test_secret_key").unwrap();
        let headers = scheme.sign(&Outgoing::new(BODY)).unwrap();
        assert_eq!(headers[0].1, SIG);
        let wrong = super::scheme("other").unwrap();
        assert_eq!(check(&wrong, &[("x-shopify-hmac-sha256", SIG)], BODY), Err(Reason::SignatureMismatch));
        assert_eq!(
            check(&scheme, &[("x-shopify-hmac-sha256", SIG)], br#"{"foo":"bar"}"#),
            Err(Reason::SignatureMismatch),
            "the raw bytes are signed, not the JSON value"
        );
    }
}
