//! Bitbucket Cloud: `X-Hub-Signature: sha256=<hex>` (*unconfirmed*: from third-party
//! write-ups only), HMAC-SHA256 over the body. No timestamp (replay marks need a
//! configured time to live). The replay key is `X-Request-UUID` (*unconfirmed*), the event
//! `X-Event-Key` (`repo:push`, …). Several configured secrets are all tried.
//!
//! ```
//! use hookguard::{providers::bitbucket, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = bitbucket::scheme("bb_secret").unwrap();
//! let req = http::Request::post("/hooks/bitbucket")
//!     .header("x-hub-signature", "sha256=97b8f2327d031905a7741d50c8427baed18db33f6d7b50a665c9c22ac3c8b05b")
//!     .header("x-request-uuid", "5fd1a1b2-0c6c-4c16-8f3a-2f0f5f0e0a11")
//!     .header("x-event-key", "repo:push")
//!     .body(br#"{"push":{"changes":[]}}"#.to_vec())
//!     .unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
//! assert_eq!(verified.event(), Some("repo:push"));
//! ```

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat},
};

/// `X-Hub-Signature` (*unconfirmed*).
///
/// ```
/// assert_eq!(hookguard::providers::bitbucket::HEADER, "x-hub-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-hub-signature");
/// `X-Request-UUID` (*unconfirmed* as the delivery id).
///
/// ```
/// assert_eq!(hookguard::providers::bitbucket::DELIVERY, "x-request-uuid");
/// ```
pub const DELIVERY: HeaderName = HeaderName::from_static("x-request-uuid");
/// `X-Event-Key`.
///
/// ```
/// assert_eq!(hookguard::providers::bitbucket::EVENT, "x-event-key");
/// ```
pub const EVENT: HeaderName = HeaderName::from_static("x-event-key");

/// Bitbucket Cloud with one webhook secret (*unconfirmed* header layout, see the module
/// docs).
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::bitbucket, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = bitbucket::scheme("s3cr3t")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// let (_, signature) = headers.iter().find(|(name, _)| name == bitbucket::HEADER).unwrap();
/// assert!(signature.to_str()?.starts_with("sha256="));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = bitbucket::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("bitbucket", Algorithm::Sha256)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "sha256=" }, Encoding::Hex)
        .id(Field::Header(DELIVERY))
        .event(Field::Header(EVENT))
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // Self-computed (no official vector exists): python3
    // hmac.new(b"bb_secret", BODY, sha256).hexdigest().
    const BODY: &[u8] = br#"{"push":{"changes":[]}}"#;
    const SIG: &str = "sha256=97b8f2327d031905a7741d50c8427baed18db33f6d7b50a665c9c22ac3c8b05b";

    fn verify(scheme: &HmacScheme, sig: &str, body: &[u8]) -> Result<Option<String>, Reason> {
        let req = http::Request::post("/")
            .header("x-hub-signature", sig)
            .header("x-request-uuid", "u-1")
            .body(body.to_vec())
            .unwrap();
        scheme
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|v| v.id().map(str::to_owned))
            .map_err(|r| r.reason())
    }

    #[test]
    fn table() {
        let good = scheme("bb_secret").unwrap();
        let cases: &[(&str, &str, &[u8], Result<Option<String>, Reason>)] = &[
            ("self-computed vector", SIG, BODY, Ok(Some("u-1".to_owned()))),
            (
                "sha1 prefix",
                "sha1=97b8f2327d031905a7741d50c8427baed18db33f",
                BODY,
                Err(Reason::MalformedSignature),
            ),
            ("body changed", SIG, b"{}", Err(Reason::SignatureMismatch)),
        ];
        for (name, sig, body, want) in cases {
            assert_eq!(verify(&good, sig, body), *want, "case {name}");
        }
        assert_eq!(verify(&scheme("wrong").unwrap(), SIG, BODY), Err(Reason::SignatureMismatch));
    }

    #[test]
    fn sign_round_trip() {
        let scheme = scheme("bb_secret").unwrap();
        let headers = scheme.sign(&Outgoing::new(BODY)).unwrap();
        assert_eq!(headers[0].1, SIG);
        assert!(verify(&scheme, headers[0].1.to_str().unwrap(), BODY).is_ok());
    }
}
