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

/// The fewest bytes of an `X-Hook-Secret` that [`handshake`] adopts (Asana sends 64 hex
/// digits).
const MIN_SECRET_LEN: usize = 16;

/// The most bytes of an `X-Hook-Secret` that [`handshake`] adopts.
const MAX_SECRET_LEN: usize = 256;

/// Answers Asana's handshake (a pre-verify step: give it the request's headers).
///
/// When `X-Hook-Secret` is 16 to 256 bytes of visible ASCII (`!` to `~`; Asana sends 64
/// hex digits): the secret (store it for this endpoint, then build [`scheme`] from it)
/// and a `200` response that echoes it in `X-Hook-Secret` (marked sensitive). `None`
/// otherwise (no such header, or one that is empty, shorter, longer or holds other
/// bytes): no handshake, so nothing is adopted, and the request is verified as any other
/// (a guard answers `401` for want of a signature, or `404` for a tenant that has no
/// secret yet).
///
/// Anyone can send this header: accept a handshake only while a webhook for this endpoint
/// is being created (Asana waits for the answer before the creation call returns), and
/// never let a later one replace a stored secret.
///
/// ```
/// use hookguard::providers::asana;
///
/// assert!(asana::handshake(&http::HeaderMap::new()).is_none());
/// let hello = |secret: &str| {
///     let mut headers = http::HeaderMap::new();
///     headers.insert(asana::SECRET_HEADER, secret.parse().unwrap());
///     asana::handshake(&headers)
/// };
/// assert!(hello("b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81").is_some());
/// // Not a key Asana would hand over: no handshake.
/// assert!(hello("a").is_none());
/// assert!(hello(&"a".repeat(257)).is_none());
/// ```
#[must_use]
pub fn handshake(headers: &HeaderMap) -> Option<(Secret, Response<Vec<u8>>)> {
    let value = headers.get(&SECRET_HEADER)?;
    let bytes = value.as_bytes();
    if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    let secret = Secret::new(bytes).ok()?;
    let mut echoed = value.clone();
    echoed.set_sensitive(true);
    let mut response = Response::new(Vec::new());
    response.headers_mut().insert(SECRET_HEADER, echoed);
    Some((secret, response))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use http::HeaderValue;

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
        headers.insert(SECRET_HEADER, "asana_secret_key".parse().unwrap());
        let (secret, response) = handshake(&headers).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[&SECRET_HEADER], "asana_secret_key");
        assert!(response.headers()[&SECRET_HEADER].is_sensitive());
        assert!(!format!("{secret:?}").contains("asana_secret"));
        let mut req = http::Request::post("/");
        for (name, value) in scheme(secret.expose()).unwrap().sign(&Outgoing::new(BODY)).unwrap() {
            req = req.header(name, value);
        }
        let req = req.body(BODY.to_vec()).unwrap();
        let keyed = scheme("asana_secret_key").unwrap();
        let verified = keyed.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH);
        assert!(verified.is_ok(), "the secret adopted is the one sent");

        headers.insert(SECRET_HEADER, "".parse().unwrap());
        assert!(handshake(&headers).is_none(), "an empty secret is not a handshake");
    }

    /// Only a value shaped like a key Asana hands over (16 to 256 bytes of visible
    /// ASCII) is adopted: anything else is no handshake, and adopted as nobody's key.
    #[test]
    fn only_a_well_shaped_secret_is_adopted() {
        let real = "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81";
        let cases: &[(&str, HeaderValue, bool)] = &[
            ("Asana's 64 hex digits", HeaderValue::from_static(real), true),
            ("16 bytes", HeaderValue::from_static("0123456789abcdef"), true),
            ("256 bytes", HeaderValue::from_str(&"k".repeat(256)).unwrap(), true),
            ("one byte", HeaderValue::from_static("a"), false),
            ("15 bytes", HeaderValue::from_static("0123456789abcde"), false),
            ("257 bytes", HeaderValue::from_str(&"k".repeat(257)).unwrap(), false),
            ("10 KB", HeaderValue::from_str(&"k".repeat(10 * 1024)).unwrap(), false),
            ("not ASCII", HeaderValue::from_bytes("clé-secrète-0123456789".as_bytes()).unwrap(), false),
            ("a space", HeaderValue::from_static("0123456789 abcdef"), false),
            ("a tab", HeaderValue::from_static("0123456789\tabcdef"), false),
        ];
        for (name, value, adopted) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(SECRET_HEADER, value.clone());
            let got = handshake(&headers);
            assert_eq!(got.is_some(), *adopted, "case {name}");
            if let Some((secret, response)) = got {
                assert_eq!(secret.expose(), value.as_bytes(), "case {name}");
                assert_eq!(response.headers()[&SECRET_HEADER], value, "case {name}");
            }
        }
    }
}
