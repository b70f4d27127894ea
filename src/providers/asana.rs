//! Asana: `X-Hook-Signature: <hex>`, HMAC-SHA256 over the body. No timestamp (replay
//! marks need a configured time to live), no delivery id (the replay key is the MAC's
//! fingerprint).
//!
//! The secret is handed over at run time: when a webhook is created, Asana's first `POST`
//! carries `X-Hook-Secret`, which the endpoint must echo back in the same header of a
//! `200` answer and store for this endpoint. [`handshake`] answers it and returns the
//! secret, from which [`scheme`] verifies everything that follows.
//!
//! ```
//! use hookguard::{providers::asana, verify::{Outgoing, Scheme, Sign, WebhookRequest}};
//!
//! // The handshake hands over the secret.
//! let hello = http::Request::post("/hooks/asana")
//!     .header("x-hook-secret", "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81")
//!     .body(())
//!     .unwrap();
//! let (secret, answer) = asana::handshake(hello.headers()).unwrap();
//! assert_eq!(answer.status(), 200);
//! assert_eq!(answer.headers()["x-hook-secret"], hello.headers()["x-hook-secret"]);
//!
//! // Events are signed with it.
//! let scheme = asana::scheme(secret.expose()).unwrap();
//! let body = br#"{"events":[]}"#;
//! let (name, value) = scheme.sign(&Outgoing::new(body)).unwrap().remove(0);
//! let req = http::Request::post("/hooks/asana").header(name, value).body(body.to_vec()).unwrap();
//! assert!(scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
//! ```

use http::{HeaderMap, HeaderName, Response};

use crate::{
    ConfigError, Secret,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat},
};

/// `X-Hook-Signature`.
///
/// ```
/// assert_eq!(hookguard::providers::asana::HEADER, "x-hook-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-hook-signature");
/// `X-Hook-Secret`, the handshake header.
///
/// ```
/// assert_eq!(hookguard::providers::asana::SECRET_HEADER, "x-hook-secret");
/// ```
pub const SECRET_HEADER: HeaderName = HeaderName::from_static("x-hook-secret");

/// Asana with the secret received in the [`handshake`].
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::asana, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = asana::scheme("b537207f20cbfa02357cf448134da559")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// assert!(headers.iter().any(|(name, _)| name == asana::HEADER));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = asana::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("asana", Algorithm::Sha256)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
        .secret(secret)
        .build()
}

/// Answers Asana's handshake (a pre-verify step: give it the request's headers).
///
/// When `X-Hook-Secret` is present and not empty: the secret (store it for this
/// endpoint, then build [`scheme`] from it) and a `200` response that echoes it in
/// `X-Hook-Secret` (marked sensitive). `None` otherwise.
///
/// Anyone can send this header: accept a handshake only while a webhook for this endpoint
/// is being created (Asana waits for the answer before the creation call returns), and
/// never let a later one replace a stored secret.
///
/// ```
/// use hookguard::providers::asana;
///
/// assert!(asana::handshake(&http::HeaderMap::new()).is_none());
/// ```
#[must_use]
pub fn handshake(headers: &HeaderMap) -> Option<(Secret, Response<Vec<u8>>)> {
    let value = headers.get(&SECRET_HEADER)?;
    let secret = Secret::new(value.as_bytes()).ok()?;
    let mut echoed = value.clone();
    echoed.set_sensitive(true);
    let mut response = Response::new(Vec::new());
    response.headers_mut().insert(SECRET_HEADER, echoed);
    Some((secret, response))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // Self-computed (no official vector exists): python3
    // hmac.new(b"asana_secret", BODY, sha256).hexdigest().
    const BODY: &[u8] = br#"{"events":[]}"#;
    const SIG: &str = "38a624b676430d00295707bbfc501f3ca9446bbef16d58d7241ad2ba0867e8e7";

    fn verify(secret: &str, sig: &str, body: &[u8]) -> Result<(), Reason> {
        let req = http::Request::post("/").header("x-hook-signature", sig).body(body.to_vec()).unwrap();
        scheme(secret)
            .unwrap()
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|_| ())
            .map_err(|r| r.reason())
    }

    #[test]
    fn signatures() {
        let cases: &[(&str, &str, &str, &[u8], Result<(), Reason>)] = &[
            ("self-computed vector", "asana_secret", SIG, BODY, Ok(())),
            ("wrong secret", "other", SIG, BODY, Err(Reason::SignatureMismatch)),
            ("body changed", "asana_secret", SIG, b"{}", Err(Reason::SignatureMismatch)),
            ("empty header", "asana_secret", "", BODY, Err(Reason::MissingSignature)),
        ];
        for (name, secret, sig, body, want) in cases {
            assert_eq!(verify(secret, sig, body), *want, "case {name}");
        }
        let scheme = scheme("asana_secret").unwrap();
        assert_eq!(scheme.sign(&Outgoing::new(BODY)).unwrap()[0].1, SIG);
    }

    #[test]
    fn handshake_then_verify() {
        let mut headers = HeaderMap::new();
        headers.insert(SECRET_HEADER, "asana_secret".parse().unwrap());
        let (secret, response) = handshake(&headers).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[&SECRET_HEADER], "asana_secret");
        assert!(response.headers()[&SECRET_HEADER].is_sensitive());
        assert!(!format!("{secret:?}").contains("asana_secret"));
        assert_eq!(verify(std::str::from_utf8(secret.expose()).unwrap(), SIG, BODY), Ok(()));

        headers.insert(SECRET_HEADER, "".parse().unwrap());
        assert!(handshake(&headers).is_none(), "an empty secret is not a handshake");
    }
}
