//! Square: `x-square-hmacsha256-signature: <base64>`, HMAC-SHA256 over
//! `{notification_url}{body}` with the subscription's signature key, where the URL is
//! the notification URL exactly as registered with Square (fixed when the scheme is
//! built: behind a proxy the request does not know it). No timestamp; the replay key is
//! the body's `event_id`, the event its `type`. No rotation on Square's side (Square's
//! SDK compares with `==`; this compares decoded bytes in constant time).
//!
//! ```
//! use hookguard::{providers::square, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = square::scheme("signature-key", "https://webhook.site/webhooks").unwrap();
//! let req = http::Request::post("/webhooks")
//!     .header("x-square-hmacsha256-signature", "W3FlCNk5IA3ZQ2LHTWoajvzfaDu/OwY2tNHIHC3IUOA=")
//!     .body(br#"{"data":{"type":"webhooks","id":"fake_id"}}"#.to_vec())
//!     .unwrap();
//! assert!(scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
//! ```

use std::borrow::Cow;

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, Piece, SignatureFormat, SignedContent},
};

/// `x-square-hmacsha256-signature`.
///
/// ```
/// assert_eq!(hookguard::providers::square::HEADER, "x-square-hmacsha256-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-square-hmacsha256-signature");

/// `{notification_url}{body}`.
///
/// ```
/// use hookguard::{providers::square, verify::Piece};
/// assert_eq!(square::CONTENT.pieces(), [Piece::Url, Piece::Body]);
/// ```
pub const CONTENT: SignedContent = SignedContent::from_static(&[Piece::Url, Piece::Body]);

/// Square with the subscription's signature key and its notification URL (as
/// registered, scheme and query included).
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty key; [`ConfigError::Invalid`] for an
/// empty URL.
///
/// ```
/// use hookguard::{ConfigError, providers::square};
/// assert!(square::scheme("key", "https://example.com/square").is_ok());
/// assert!(matches!(square::scheme("key", ""), Err(ConfigError::Invalid(_))));
/// ```
pub fn scheme(
    signature_key: impl AsRef<[u8]>,
    notification_url: impl Into<Cow<'static, str>>,
) -> Result<HmacScheme, ConfigError> {
    let url = notification_url.into();
    if url.is_empty() {
        return Err(ConfigError::Invalid("Square signs its notification URL: it cannot be empty"));
    }
    HmacScheme::builder("square", Algorithm::Sha256)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        .content(CONTENT)
        .url(url)
        .id(Field::Json(&["event_id"]))
        .event(Field::Json(&["type"]))
        .secret(signature_key)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    const BODY_1: &[u8] = br#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#;

    struct Row {
        name: &'static str,
        key: &'static str,
        url: &'static str,
        body: &'static [u8],
        sig: &'static str,
    }

    /// Both PROVIDERS.md vectors.
    const VECTORS: [Row; 2] = [
        Row {
            name: "test notification",
            key: "Ibxx_5AKakO-3qeNVR61Dw",
            url: "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9",
            body: BODY_1,
            sig: "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=",
        },
        Row {
            name: "sdk test",
            key: "signature-key",
            url: "https://webhook.site/webhooks",
            body: br#"{"data":{"type":"webhooks","id":"fake_id"}}"#,
            sig: "W3FlCNk5IA3ZQ2LHTWoajvzfaDu/OwY2tNHIHC3IUOA=",
        },
    ];

    fn check(scheme: &HmacScheme, sig: &str, body: &[u8]) -> Result<Option<String>, Reason> {
        let req = http::Request::post("/somewhere/else")
            .header("x-square-hmacsha256-signature", sig)
            .body(body.to_vec())
            .unwrap();
        scheme
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|v| v.id().map(str::to_owned))
            .map_err(|r| r.reason())
    }

    #[test]
    fn official_vectors() {
        for row in VECTORS {
            let scheme = scheme(row.key, row.url).unwrap();
            assert!(check(&scheme, row.sig, row.body).is_ok(), "case {}", row.name);
            assert_eq!(scheme.sign(&Outgoing::new(row.body)).unwrap()[0].1, row.sig, "case {}", row.name);
            let other_url = super::scheme(row.key, format!("{}/", row.url)).unwrap();
            assert_eq!(
                check(&other_url, row.sig, row.body),
                Err(Reason::SignatureMismatch),
                "case {}",
                row.name
            );
            let wrong_key = super::scheme("wrong", row.url).unwrap();
            assert_eq!(
                check(&wrong_key, row.sig, row.body),
                Err(Reason::SignatureMismatch),
                "case {}",
                row.name
            );
        }
        let scheme = scheme(VECTORS[0].key, VECTORS[0].url).unwrap();
        assert_eq!(
            check(&scheme, VECTORS[0].sig, BODY_1),
            Ok(Some("ac3ac95b-f97d-458c-a6e6-18981597e05f".to_owned()))
        );
    }

    #[test]
    fn the_request_url_is_not_used() {
        // The configured URL is signed even when the request carries an absolute URI.
        let row = &VECTORS[1];
        let scheme = scheme(row.key, row.url).unwrap();
        let req = http::Request::post("https://internal.example/hook")
            .header("x-square-hmacsha256-signature", row.sig)
            .body(row.body.to_vec())
            .unwrap();
        let view = WebhookRequest::from_request(&req).with_url("https://other.example/");
        assert!(scheme.verify(&view, time::OffsetDateTime::UNIX_EPOCH).is_ok());
    }
}
