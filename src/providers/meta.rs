//! Meta (Facebook, Instagram, WhatsApp Cloud API): `X-Hub-Signature-256: sha256=<hex>`,
//! HMAC-SHA256 over the body keyed with the **App Secret** (not the verify token). No
//! timestamp (replay marks need a configured time to live), no delivery id (the replay key
//! is the MAC's fingerprint).
//!
//! Subscribing an endpoint starts with a `GET` carrying `hub.mode=subscribe`,
//! `hub.verify_token` (the token you typed into the dashboard) and `hub.challenge`, which
//! must be echoed back: [`verify_subscription`] answers it before any signature check.
//!
//! ```
//! use hookguard::{providers::meta, verify::{Scheme, WebhookRequest}};
//!
//! // The subscription handshake.
//! let uri = "/hooks/meta?hub.mode=subscribe&hub.verify_token=my-token&hub.challenge=1158201444"
//!     .parse()
//!     .unwrap();
//! let answer = meta::verify_subscription(&http::Method::GET, &uri, "my-token").unwrap();
//! assert_eq!(answer.status(), 200);
//! assert_eq!(answer.body(), b"1158201444");
//!
//! // Then signed event notifications.
//! let scheme = meta::scheme("app_secret").unwrap();
//! let req = http::Request::post("/hooks/meta")
//!     .header("x-hub-signature-256", "sha256=c236c758c9b2bd40b388a550eeca09eaca72384dd0aa5e7c31d19cddac5bba46")
//!     .body(br#"{"object":"whatsapp_business_account","entry":[]}"#.to_vec())
//!     .unwrap();
//! assert!(scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
//! ```

use http::{HeaderName, Method, Response, StatusCode, Uri};

use super::respond;
use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat},
};

/// `X-Hub-Signature-256`.
///
/// ```
/// assert_eq!(hookguard::providers::meta::HEADER, "x-hub-signature-256");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-hub-signature-256");

/// Meta with the App Secret.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::meta, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = meta::scheme("app-secret")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// let (_, signature) = headers.iter().find(|(name, _)| name == meta::HEADER).unwrap();
/// assert!(signature.to_str()?.starts_with("sha256="));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = meta::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(app_secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("meta", Algorithm::Sha256)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "sha256=" }, Encoding::Hex)
        .secret(app_secret)
        .build()
}

/// The longest `hub.challenge` [`verify_subscription`] echoes, in bytes (decoded), as
/// Dropbox's [`MAX_CHALLENGE_LEN`](super::dropbox::MAX_CHALLENGE_LEN). Meta's are short
/// numbers; a longer one is refused (`400`) even with the right verify token, so that a
/// receiver's URL cannot be made to serve a page of someone else's text.
///
/// ```
/// use hookguard::providers::meta;
/// let long = format!("/h?hub.mode=subscribe&hub.verify_token=tok&hub.challenge={}", "1".repeat(meta::MAX_CHALLENGE_LEN + 1));
/// let answer = meta::verify_subscription(&http::Method::GET, &long.parse().unwrap(), "tok").unwrap();
/// assert_eq!(answer.status(), 400);
/// ```
pub const MAX_CHALLENGE_LEN: usize = respond::MAX_CHALLENGE_LEN;

/// Answers Meta's subscription handshake (a pre-verify step: give it the request as it
/// arrived).
///
/// - `None` when this is not a handshake: not a `GET`, or no `hub.mode` parameter.
/// - `200` with `hub.challenge` as a `text/plain` body when `hub.mode` is `subscribe` and
///   `hub.verify_token` equals `verify_token` (compared in constant time).
/// - `403` with an empty body otherwise (wrong or missing token, other mode, no
///   challenge). An empty `verify_token` never matches.
/// - `400` with an empty body, when the token matches, for a `hub.challenge` over
///   [`MAX_CHALLENGE_LEN`] (as Dropbox's [`challenge`](super::dropbox::challenge)).
///
/// ```
/// use hookguard::providers::meta;
///
/// let uri = "/h?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=42".parse().unwrap();
/// let answer = meta::verify_subscription(&http::Method::GET, &uri, "my-token").unwrap();
/// assert_eq!(answer.status(), 403);
/// assert!(meta::verify_subscription(&http::Method::POST, &uri, "my-token").is_none());
/// ```
#[must_use]
pub fn verify_subscription(method: &Method, uri: &Uri, verify_token: &str) -> Option<Response<Vec<u8>>> {
    if method != Method::GET {
        return None;
    }
    let mode = respond::query_param(uri, "hub.mode")?;
    let token = respond::query_param(uri, "hub.verify_token");
    let challenge = respond::query_param(uri, "hub.challenge");
    let token_ok = !verify_token.is_empty()
        && token.is_some_and(|t| respond::tokens_match(t.as_bytes(), verify_token.as_bytes()));
    match challenge {
        Some(challenge) if mode == "subscribe" && token_ok => Some(respond::echo_challenge(challenge)),
        _ => Some(respond::status(StatusCode::FORBIDDEN)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // Self-computed (no official vector exists): python3
    // hmac.new(b"app_secret", BODY, sha256).hexdigest().
    const BODY: &[u8] = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    const SIG: &str = "sha256=c236c758c9b2bd40b388a550eeca09eaca72384dd0aa5e7c31d19cddac5bba46";

    fn verify(secret: &str, sig: &str, body: &[u8]) -> Result<(), Reason> {
        let req = http::Request::post("/").header("x-hub-signature-256", sig).body(body.to_vec()).unwrap();
        scheme(secret)
            .unwrap()
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|_| ())
            .map_err(|r| r.reason())
    }

    #[test]
    fn signatures() {
        let cases: &[(&str, &str, &str, &[u8], Result<(), Reason>)] = &[
            ("self-computed vector", "app_secret", SIG, BODY, Ok(())),
            ("verify token used as key", "my-token", SIG, BODY, Err(Reason::SignatureMismatch)),
            ("body changed", "app_secret", SIG, b"{}", Err(Reason::SignatureMismatch)),
            ("legacy sha1 header value", "app_secret", "sha1=00", BODY, Err(Reason::MalformedSignature)),
        ];
        for (name, secret, sig, body, want) in cases {
            assert_eq!(verify(secret, sig, body), *want, "case {name}");
        }
        let scheme = scheme("app_secret").unwrap();
        assert_eq!(scheme.sign(&Outgoing::new(BODY)).unwrap()[0].1, SIG);
    }

    #[test]
    fn subscription_handshake() {
        let cases: &[(&str, Method, &str, &str, Option<(u16, &[u8])>)] = &[
            (
                "match",
                Method::GET,
                "/h?hub.mode=subscribe&hub.verify_token=tok&hub.challenge=1158201444",
                "tok",
                Some((200, b"1158201444")),
            ),
            (
                "encoded challenge",
                Method::GET,
                "/h?hub.challenge=a%26b&hub.verify_token=t%20k&hub.mode=subscribe",
                "t k",
                Some((200, b"a&b")),
            ),
            (
                "wrong token",
                Method::GET,
                "/h?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1",
                "tok",
                Some((403, b"")),
            ),
            (
                "token prefix",
                Method::GET,
                "/h?hub.mode=subscribe&hub.verify_token=to&hub.challenge=1",
                "tok",
                Some((403, b"")),
            ),
            ("no token", Method::GET, "/h?hub.mode=subscribe&hub.challenge=1", "tok", Some((403, b""))),
            (
                "empty configured token",
                Method::GET,
                "/h?hub.mode=subscribe&hub.verify_token=&hub.challenge=1",
                "",
                Some((403, b"")),
            ),
            (
                "other mode",
                Method::GET,
                "/h?hub.mode=unsubscribe&hub.verify_token=tok&hub.challenge=1",
                "tok",
                Some((403, b"")),
            ),
            (
                "no challenge",
                Method::GET,
                "/h?hub.mode=subscribe&hub.verify_token=tok",
                "tok",
                Some((403, b"")),
            ),
            ("not a handshake", Method::GET, "/h?x=1", "tok", None),
            ("no query", Method::GET, "/h", "tok", None),
            ("post", Method::POST, "/h?hub.mode=subscribe&hub.verify_token=tok&hub.challenge=1", "tok", None),
        ];
        for (name, method, uri, token, want) in cases {
            let got = verify_subscription(method, &uri.parse().unwrap(), token);
            let got = got.as_ref().map(|r| (r.status().as_u16(), r.body().as_slice()));
            assert_eq!(got, *want, "case {name}");
        }
        let ok = verify_subscription(
            &Method::GET,
            &"/h?hub.mode=subscribe&hub.verify_token=t&hub.challenge=1".parse().unwrap(),
            "t",
        )
        .unwrap();
        assert_eq!(ok.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(ok.headers()["x-content-type-options"], "nosniff");
    }

    /// With the right verify token, a `hub.challenge` of [`MAX_CHALLENGE_LEN`] bytes is
    /// echoed, one byte more is refused (`400`, nothing echoed); with a wrong token it is
    /// refused as any guess (`403`).
    #[test]
    fn a_challenge_over_the_limit_is_refused_and_not_echoed() {
        let ask = |challenge: &str, token: &str| {
            let uri = format!("/h?hub.mode=subscribe&hub.verify_token={token}&hub.challenge={challenge}");
            verify_subscription(&Method::GET, &uri.parse().unwrap(), "tok").unwrap()
        };
        let at_limit = "7".repeat(MAX_CHALLENGE_LEN);
        let res = ask(&at_limit, "tok");
        assert_eq!((res.status(), res.body().as_slice()), (StatusCode::OK, at_limit.as_bytes()));
        let res = ask(&"7".repeat(MAX_CHALLENGE_LEN + 1), "tok");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(res.body().is_empty());
        // Counted decoded: 86 `%37` are 258 bytes of query but 86 of challenge.
        assert_eq!(ask(&"%37".repeat(86), "tok").status(), StatusCode::OK);
        assert_eq!(ask(&"7".repeat(MAX_CHALLENGE_LEN + 1), "guess").status(), StatusCode::FORBIDDEN);
    }
}
