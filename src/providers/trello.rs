//! Trello: `X-Trello-Webhook: <base64>`, HMAC-SHA1 over `{body}{callbackURL}`, where the
//! callback URL is the one registered with the webhook, exactly as registered (not the URL
//! the request arrived on, which a proxy may have rewritten), and the key is the
//! application's secret. No timestamp (replay marks need a configured time to live). The
//! replay key is the action's `id` in the body, the event its `type`.
//!
//! When a webhook is created Trello sends a `HEAD` to the callback URL and expects `200`:
//! [`head_response`] answers it.
//!
//! ```
//! use hookguard::{providers::trello, verify::{Scheme, WebhookRequest}};
//!
//! assert_eq!(trello::head_response(&http::Method::HEAD).unwrap().status(), 200);
//!
//! let scheme = trello::scheme("trello_secret", "https://example.com/trello").unwrap();
//! let req = http::Request::post("/trello")
//!     .header("x-trello-webhook", "v9BlqlXkPU79ugpvUedcO/GTMFs=")
//!     .body(br#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard"}}"#.to_vec())
//!     .unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
//! assert_eq!(verified.id(), Some("51f9424bcd6e040f3c002412"));
//! assert_eq!(verified.event(), Some("updateCard"));
//! ```

use std::borrow::Cow;

use http::{HeaderName, Method, Response, StatusCode};

use super::respond;
use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, Piece, SignatureFormat, SignedContent},
};

/// `X-Trello-Webhook`.
///
/// ```
/// assert_eq!(hookguard::providers::trello::HEADER, "x-trello-webhook");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-trello-webhook");

/// `{body}{callbackURL}`.
///
/// ```
/// use hookguard::{providers::trello, verify::Piece};
/// assert_eq!(trello::CONTENT.pieces(), [Piece::Body, Piece::Url]);
/// ```
pub const CONTENT: SignedContent = SignedContent::from_static(&[Piece::Body, Piece::Url]);

/// Trello with the application secret and the callback URL exactly as registered (change
/// it later with [`HmacScheme::with_url`]).
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret, [`ConfigError::Invalid`] for an
/// empty callback URL.
///
/// ```
/// use hookguard::{providers::trello, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = trello::scheme("app-secret", "https://example.com/hooks/trello")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// assert!(headers.iter().any(|(name, _)| name == trello::HEADER));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = trello::scheme("other", "https://example.com/hooks/trello")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(
    secret: impl AsRef<[u8]>,
    callback_url: impl Into<Cow<'static, str>>,
) -> Result<HmacScheme, ConfigError> {
    let url = callback_url.into();
    if url.is_empty() {
        return Err(ConfigError::Invalid("trello needs the callback URL the webhook was registered with"));
    }
    HmacScheme::builder("trello", Algorithm::Sha1)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        .content(CONTENT)
        .url(url)
        .id(Field::Json(&["action", "id"]))
        .event(Field::Json(&["action", "type"]))
        .secret(secret)
        .build()
}

/// Answers the `HEAD` Trello sends when a webhook is created: `200` with an empty body
/// for `HEAD`, `None` for any other method (a pre-verify step).
///
/// ```
/// use hookguard::providers::trello;
/// assert!(trello::head_response(&http::Method::POST).is_none());
/// ```
#[must_use]
pub fn head_response(method: &Method) -> Option<Response<Vec<u8>>> {
    (method == Method::HEAD).then(|| respond::status(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // Self-computed (no official vector exists): python3
    // base64(hmac.new(b"trello_secret", BODY + b"https://example.com/trello", sha1).digest()).
    const BODY: &[u8] = br#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard"}}"#;
    const URL: &str = "https://example.com/trello";
    const SIG: &str = "v9BlqlXkPU79ugpvUedcO/GTMFs=";

    fn verify(secret: &str, url: &str, sig: &str, body: &[u8]) -> Result<(), Reason> {
        // The request arrives on another URL (behind a proxy): the registered one is signed.
        let req = http::Request::post("http://internal:8080/x")
            .header("x-trello-webhook", sig)
            .body(body.to_vec())
            .unwrap();
        scheme(secret, url.to_owned())
            .unwrap()
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|_| ())
            .map_err(|r| r.reason())
    }

    #[test]
    fn signatures() {
        let cases: &[(&str, &str, &str, &str, &[u8], Result<(), Reason>)] = &[
            ("self-computed vector", "trello_secret", URL, SIG, BODY, Ok(())),
            (
                "other callback URL",
                "trello_secret",
                "https://example.com/trello/",
                SIG,
                BODY,
                Err(Reason::SignatureMismatch),
            ),
            ("wrong secret", "other", URL, SIG, BODY, Err(Reason::SignatureMismatch)),
            ("body changed", "trello_secret", URL, SIG, b"{}", Err(Reason::SignatureMismatch)),
        ];
        for (name, secret, url, sig, body, want) in cases {
            assert_eq!(verify(secret, url, sig, body), *want, "case {name}");
        }
    }

    #[test]
    fn sign_round_trip_and_with_url() {
        let scheme = scheme("trello_secret", URL).unwrap();
        assert_eq!(scheme.sign(&Outgoing::new(BODY)).unwrap()[0].1, SIG);
        let moved = scheme.with_url("https://example.com/moved");
        assert_ne!(moved.sign(&Outgoing::new(BODY)).unwrap()[0].1, SIG);
    }

    #[test]
    fn configuration_and_head() {
        assert!(matches!(super::scheme("s", ""), Err(ConfigError::Invalid(_))));
        assert_eq!(super::scheme("", URL).unwrap_err(), ConfigError::EmptySecret);
        assert_eq!(head_response(&Method::HEAD).unwrap().status(), 200);
        assert!(head_response(&Method::HEAD).unwrap().body().is_empty());
        assert!(head_response(&Method::GET).is_none());
    }
}
