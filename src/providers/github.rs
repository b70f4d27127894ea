//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 over the body; no timestamp
//! (replay marks need a configured time to live); the delivery id is
//! `X-GitHub-Delivery`, the event `X-GitHub-Event`. Several configured secrets are all
//! tried (GitHub sends one signature).
//!
//! ```
//! use hookguard::{providers::github, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = github::scheme("It's a Secret to Everybody").unwrap();
//! let req = http::Request::post("/")
//!     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
//!     .body(b"Hello, World!".to_vec())
//!     .unwrap();
//! assert!(scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
//! ```

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat},
};

/// `X-Hub-Signature-256`.
///
/// ```
/// assert_eq!(hookguard::providers::github::HEADER, "x-hub-signature-256");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-hub-signature-256");
/// `X-GitHub-Delivery`.
///
/// ```
/// assert_eq!(hookguard::providers::github::DELIVERY, "x-github-delivery");
/// ```
pub const DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
/// `X-GitHub-Event`.
///
/// ```
/// assert_eq!(hookguard::providers::github::EVENT, "x-github-event");
/// ```
pub const EVENT: HeaderName = HeaderName::from_static("x-github-event");

/// GitHub with one webhook secret (SHA-256 signatures).
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::github, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// // GitHub's documented example.
/// let scheme = github::scheme("It's a Secret to Everybody")?;
/// let headers = scheme.sign(&Outgoing::new(b"Hello, World!"))?;
/// assert_eq!(headers[0].0, github::HEADER);
/// assert_eq!(headers[0].1, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
/// let req = http::Request::post("/hooks/github").header(&headers[0].0, &headers[0].1).body(b"Hello, World!".to_vec())?;
/// let now = time::OffsetDateTime::now_utc();
/// assert!(scheme.verify(&WebhookRequest::from_request(&req), now).is_ok());
/// let other = github::scheme("another secret")?;
/// assert_eq!(other.verify(&WebhookRequest::from_request(&req), now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("github", Algorithm::Sha256)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "sha256=" }, Encoding::Hex)
        .id(Field::Header(DELIVERY))
        .event(Field::Header(EVENT))
        .secret(secret)
        .build()
}

/// GitHub's legacy `X-Hub-Signature: sha1=<hex>`, for old integrations only.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::verify::{Outgoing, Scheme, Sign, WebhookRequest};
/// let scheme = hookguard::providers::github::legacy_sha1_scheme("s3cr3t").unwrap();
/// let headers = scheme.sign(&Outgoing::new(b"{}")).unwrap();
/// assert_eq!(headers[0].0, "x-hub-signature");
/// assert!(headers[0].1.to_str().unwrap().starts_with("sha1="));
/// let req = http::Request::post("/").header(&headers[0].0, &headers[0].1).body(b"{}".to_vec()).unwrap();
/// assert!(scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
/// ```
pub fn legacy_sha1_scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("github", Algorithm::Sha1)
        .signature(
            Field::header("x-hub-signature"),
            SignatureFormat::Plain { prefix: "sha1=" },
            Encoding::Hex,
        )
        .id(Field::Header(DELIVERY))
        .event(Field::Header(EVENT))
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    #[test]
    fn official_vectors() {
        let vectors = [
            (
                "It's a Secret to Everybody",
                &b"Hello, World!"[..],
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
            (
                "mysecret",
                &br#"{"foo":"bar"}"#[..],
                "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3",
            ),
        ];
        let now = time::OffsetDateTime::UNIX_EPOCH;
        for (secret, body, sig) in vectors {
            let scheme = scheme(secret).unwrap();
            let req =
                http::Request::post("/").header("x-hub-signature-256", sig).body(body.to_vec()).unwrap();
            scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
            assert_eq!(scheme.sign(&Outgoing::new(body)).unwrap()[0].1, sig);
            // Upper-case hex is the same signature.
            let upper = format!("sha256={}", sig[7..].to_uppercase());
            let req =
                http::Request::post("/").header("x-hub-signature-256", upper).body(body.to_vec()).unwrap();
            scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
        }
    }

    #[test]
    fn each_configured_secret_is_tried() {
        let scheme = scheme("old").unwrap().with_secret("It's a Secret to Everybody").unwrap();
        let req = http::Request::post("/")
            .header(
                "x-hub-signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            )
            .body(b"Hello, World!".to_vec())
            .unwrap();
        let v = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(v.key_index(), 1);
        // No delivery id: the replay key is the MAC's fingerprint, stable across resends.
        assert_eq!(v.dedup_key().len(), 32);
    }

    #[test]
    fn wrong_secret() {
        let scheme = scheme("nope").unwrap();
        let req = http::Request::post("/")
            .header(
                "x-hub-signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            )
            .body(b"Hello, World!".to_vec())
            .unwrap();
        let err =
            scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH).unwrap_err();
        assert_eq!(err.reason(), Reason::SignatureMismatch);
        assert_eq!(err.to_string(), "signature mismatch: 1 signature × 1 secret, none matched");
    }
}
