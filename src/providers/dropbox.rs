//! Dropbox: `X-Dropbox-Signature: <hex>`, HMAC-SHA256 over the body keyed with the app
//! secret. No timestamp, no delivery id, and no replay key: a notice names only the
//! accounts that changed (`{"list_folder":{"accounts":[…]},"delta":{"users":[…]}}`), so
//! every later change to the same account is sent as the very same bytes. Keyed by the
//! MAC, the second notice would be answered `200 duplicate` and dropped, and the app would
//! not sync again until the key was forgotten (days). So every verified notice is new
//! ([`HmacSchemeBuilder::no_replay_key`](crate::verify::HmacSchemeBuilder::no_replay_key)):
//! no replay mark, its own inbox key. A copy (Dropbox's own retry, or a replay) is handled
//! again: a notice only says "come and look", and the app's `list_folder/continue` with
//! its cursor finds nothing new. Anyone holding one signed notice can send it again at
//! will, each a job: put a rate limit in front of this endpoint.
//!
//! Dropbox checks an endpoint with a `GET ?challenge=…` that must be echoed back as a
//! `text/plain` body with `X-Content-Type-Options: nosniff`: [`challenge`] answers it
//! before any signature check.
//!
//! ```
//! use hookguard::{providers::dropbox, verify::{Scheme, WebhookRequest}};
//!
//! let uri = "/hooks/dropbox?challenge=abc123".parse().unwrap();
//! let answer = dropbox::challenge(&http::Method::GET, &uri).unwrap();
//! assert_eq!(answer.body(), b"abc123");
//!
//! let scheme = dropbox::scheme("dropbox_secret").unwrap();
//! let req = http::Request::post("/hooks/dropbox")
//!     .header("x-dropbox-signature", "2bb2468d5b858e37c04562337300c78cc818ca4b84493cfecbbebf4115e403db")
//!     .body(br#"{"list_folder":{"accounts":["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"]}}"#.to_vec())
//!     .unwrap();
//! assert!(scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
//! ```

use http::{HeaderName, Method, Response, Uri};

use super::respond;
use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat},
};

/// `X-Dropbox-Signature`.
///
/// ```
/// assert_eq!(hookguard::providers::dropbox::HEADER, "x-dropbox-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-dropbox-signature");

/// Dropbox with the app secret.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::dropbox, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = dropbox::scheme("app-secret")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// assert!(headers.iter().any(|(name, _)| name == dropbox::HEADER));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// // Notices repeat byte for byte: none is taken for a copy of another.
/// assert!(!scheme.verify(&view, now)?.has_replay_key());
/// let other = dropbox::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(app_secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("dropbox", Algorithm::Sha256)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
        .no_replay_key()
        .secret(app_secret)
        .build()
}

/// The longest `challenge` [`challenge`] echoes, in bytes (decoded). Dropbox's are short
/// random strings; the request carries no credential, so anyone can have a receiver echo
/// one: a longer one is refused (`400`), so that a receiver's URL cannot be made to serve
/// a page of someone else's text.
///
/// ```
/// use hookguard::providers::dropbox;
/// let long = format!("/h?challenge={}", "x".repeat(dropbox::MAX_CHALLENGE_LEN + 1));
/// let answer = dropbox::challenge(&http::Method::GET, &long.parse().unwrap()).unwrap();
/// assert_eq!(answer.status(), 400);
/// ```
pub const MAX_CHALLENGE_LEN: usize = respond::MAX_CHALLENGE_LEN;

/// Answers Dropbox's verification request (a pre-verify step: give it the request as it
/// arrived): for a `GET` with a `challenge` query parameter, `200` with the challenge as a
/// `text/plain` body, `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`
/// (`400` for a challenge over [`MAX_CHALLENGE_LEN`]); `None` for anything else.
///
/// ```
/// use hookguard::providers::dropbox;
///
/// assert!(dropbox::challenge(&http::Method::GET, &"/h".parse().unwrap()).is_none());
/// let answer = dropbox::challenge(&http::Method::GET, &"/h?challenge=x".parse().unwrap()).unwrap();
/// assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
/// assert_eq!(answer.body(), b"x");
/// ```
#[must_use]
pub fn challenge(method: &Method, uri: &Uri) -> Option<Response<Vec<u8>>> {
    if method != Method::GET {
        return None;
    }
    Some(respond::echo_challenge(respond::query_param(uri, "challenge")?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // Self-computed (no official vector exists): python3
    // hmac.new(b"dropbox_secret", BODY, sha256).hexdigest().
    const BODY: &[u8] = br#"{"list_folder":{"accounts":["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"]}}"#;
    const SIG: &str = "2bb2468d5b858e37c04562337300c78cc818ca4b84493cfecbbebf4115e403db";

    fn verify(secret: &str, sig: &str, body: &[u8]) -> Result<(), Reason> {
        let req = http::Request::post("/").header("x-dropbox-signature", sig).body(body.to_vec()).unwrap();
        scheme(secret)
            .unwrap()
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|_| ())
            .map_err(|r| r.reason())
    }

    #[test]
    fn signatures() {
        let cases: &[(&str, &str, &str, &[u8], Result<(), Reason>)] = &[
            ("self-computed vector", "dropbox_secret", SIG, BODY, Ok(())),
            ("wrong secret", "other", SIG, BODY, Err(Reason::SignatureMismatch)),
            ("body changed", "dropbox_secret", SIG, b"{}", Err(Reason::SignatureMismatch)),
        ];
        for (name, secret, sig, body, want) in cases {
            assert_eq!(verify(secret, sig, body), *want, "case {name}");
        }
        let scheme = scheme("dropbox_secret").unwrap();
        assert_eq!(scheme.sign(&Outgoing::new(BODY)).unwrap()[0].1, SIG);
    }

    #[test]
    fn challenge_table() {
        let cases: &[(&str, Method, &str, Option<&[u8]>)] = &[
            ("echo", Method::GET, "/h?challenge=abc123", Some(b"abc123")),
            ("decoded", Method::GET, "/h?x=1&challenge=%3Cb%3E", Some(b"<b>")),
            ("empty", Method::GET, "/h?challenge=", Some(b"")),
            ("no parameter", Method::GET, "/h?x=1", None),
            ("post", Method::POST, "/h?challenge=abc", None),
        ];
        for (name, method, uri, want) in cases {
            let got = challenge(method, &uri.parse().unwrap());
            assert_eq!(got.as_ref().map(|r| r.body().as_slice()), *want, "case {name}");
            if let Some(r) = got {
                assert_eq!(r.status(), 200);
                assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
                assert_eq!(r.headers()["x-content-type-options"], "nosniff");
                assert_eq!(r.headers()["cache-control"], "no-store");
            }
        }
    }

    #[test]
    fn a_challenge_over_the_limit_is_refused_and_not_echoed() {
        let at_limit = format!("/h?challenge={}", "a".repeat(MAX_CHALLENGE_LEN));
        let res = challenge(&Method::GET, &at_limit.parse().unwrap()).unwrap();
        assert_eq!((res.status(), res.body().len()), (http::StatusCode::OK, MAX_CHALLENGE_LEN));
        // Counted decoded: 86 `%41` are 258 bytes of query but 86 of challenge.
        let encoded = format!("/h?challenge={}", "%41".repeat(86));
        assert_eq!(
            challenge(&Method::GET, &encoded.parse().unwrap()).unwrap().status(),
            http::StatusCode::OK
        );
        let over = format!("/h?challenge={}", "a".repeat(MAX_CHALLENGE_LEN + 1));
        let res = challenge(&Method::GET, &over.parse().unwrap()).unwrap();
        assert_eq!(res.status(), http::StatusCode::BAD_REQUEST);
        assert!(res.body().is_empty());
    }
}
