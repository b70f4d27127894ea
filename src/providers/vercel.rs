//! Vercel: `x-vercel-signature: <hex>`, HMAC-SHA1 over the body (*unconfirmed*: from
//! third-party write-ups only), keyed with the secret's bytes. No timestamp (replay marks
//! need a configured time to live), no delivery id header (the replay key is the MAC's
//! fingerprint).
//!
//! ```
//! use hookguard::{providers::vercel, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = vercel::scheme("vercel_secret").unwrap();
//! let req = http::Request::post("/hooks/vercel")
//!     .header("x-vercel-signature", "507ece7ec831710c18e18adfcb8bbc1aed96db76")
//!     .body(br#"{"id":"evt_1","type":"deployment.created"}"#.to_vec())
//!     .unwrap();
//! assert!(scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
//! ```

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat},
};

/// `x-vercel-signature`.
///
/// ```
/// assert_eq!(hookguard::providers::vercel::HEADER, "x-vercel-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-vercel-signature");

/// Vercel with one secret (*unconfirmed* algorithm, see the module docs).
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::vercel, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = vercel::scheme("s3cr3t")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// assert!(headers.iter().any(|(name, _)| name == vercel::HEADER));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = vercel::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("vercel", Algorithm::Sha1)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // Self-computed (no official vector exists): python3
    // hmac.new(b"vercel_secret", BODY, sha1).hexdigest().
    const BODY: &[u8] = br#"{"id":"evt_1","type":"deployment.created"}"#;
    const SIG: &str = "507ece7ec831710c18e18adfcb8bbc1aed96db76";

    fn verify(secret: &str, sig: &str, body: &[u8]) -> Result<(), Reason> {
        let req = http::Request::post("/").header("x-vercel-signature", sig).body(body.to_vec()).unwrap();
        scheme(secret)
            .unwrap()
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|_| ())
            .map_err(|r| r.reason())
    }

    #[test]
    fn table() {
        let sha256_len = "00".repeat(32);
        let cases: &[(&str, &str, &str, &[u8], Result<(), Reason>)] = &[
            ("self-computed vector", "vercel_secret", SIG, BODY, Ok(())),
            ("wrong secret", "other", SIG, BODY, Err(Reason::SignatureMismatch)),
            ("body changed", "vercel_secret", SIG, b"{}", Err(Reason::SignatureMismatch)),
            ("a sha256-sized value", "vercel_secret", &sha256_len, BODY, Err(Reason::SignatureMismatch)),
        ];
        for (name, secret, sig, body, want) in cases {
            assert_eq!(verify(secret, sig, body), *want, "case {name}");
        }
    }

    #[test]
    fn sign_round_trip() {
        let scheme = scheme("vercel_secret").unwrap();
        let headers = scheme.sign(&Outgoing::new(BODY)).unwrap();
        assert_eq!(headers[0].1, SIG);
        assert_eq!(verify("vercel_secret", headers[0].1.to_str().unwrap(), BODY), Ok(()));
    }
}
