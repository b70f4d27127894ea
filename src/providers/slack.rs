//! Slack: `X-Slack-Signature: v0=<hex>` with `X-Slack-Request-Timestamp` (unix seconds);
//! HMAC-SHA256 over `v0:{ts}:{body}` with the app's signing secret; ±5 minutes (past
//! and future), as Slack's SDKs. Slack sends no delivery id header (retries carry
//! `X-Slack-Retry-Num`), and each retry is a request of its own, signed with its own
//! timestamp, so the signature differs from one try to the next. The replay key is
//! therefore the Events API envelope's `event_id` (in the signed body, the same in every
//! retry); a body without one (slash commands, interactivity: form bodies) is keyed by its
//! SHA-256 (the [fingerprint](crate::verify::Verified::fingerprint) of a scheme that signs
//! a timestamp with the body), which a retry keeps too. No rotation (one signing secret per app, though several may
//! be configured here). The event type is read from a JSON body's `event.type`, else its
//! `type`.
//!
//! Events API endpoints must answer Slack's `url_verification` challenge: see
//! [`url_verification`], to call only after the request verified.
//!
//! ```
//! use hookguard::{providers::slack, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = slack::scheme("8f742231b10e8888abcd99yyyzzz85a5").unwrap();
//! let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
//! let req = http::Request::post("/slack/commands")
//!     .header("x-slack-request-timestamp", "1531420618")
//!     .header("x-slack-signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")
//!     .body(body.to_vec())
//!     .unwrap();
//! let now = time::OffsetDateTime::from_unix_timestamp(1531420618 + 10).unwrap();
//! assert!(scheme.verify(&WebhookRequest::from_request(&req), now).is_ok());
//! ```

use http::{HeaderName, header::CONTENT_TYPE};

use super::{FIVE_MINUTES, respond};
use crate::{
    ConfigError,
    verify::{
        Algorithm, Encoding, Field, HmacScheme, Piece, SignatureFormat, SignedContent, TimestampFormat,
        Tolerance,
    },
};

/// `X-Slack-Signature`.
///
/// ```
/// assert_eq!(hookguard::providers::slack::HEADER, "x-slack-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-slack-signature");
/// `X-Slack-Request-Timestamp`.
///
/// ```
/// assert_eq!(hookguard::providers::slack::TIMESTAMP, "x-slack-request-timestamp");
/// ```
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-slack-request-timestamp");

/// `v0:{ts}:{body}`.
///
/// ```
/// use hookguard::{providers::slack, verify::Piece};
/// assert_eq!(slack::CONTENT.pieces(), [Piece::Literal(b"v0:"), Piece::Timestamp, Piece::Literal(b":"), Piece::Body]);
/// ```
pub const CONTENT: SignedContent = SignedContent::from_static(&[
    Piece::Literal(b"v0:"),
    Piece::Timestamp,
    Piece::Literal(b":"),
    Piece::Body,
]);

/// Events API bodies: `event.type` (`app_mention`, …), else the envelope's `type`.
static EVENT: [Field; 2] = [Field::Json(&["event", "type"]), Field::Json(&["type"])];

/// Slack with the app's signing secret.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::slack, verify::Scheme};
/// let scheme = slack::scheme("8f742231b10e8888abcd99yyyzzz85a5").unwrap();
/// assert_eq!(scheme.provider(), "slack");
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("slack", Algorithm::Sha256)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "v0=" }, Encoding::Hex)
        .timestamp(Field::Header(TIMESTAMP), TimestampFormat::UnixSeconds)
        .tolerance(Tolerance::symmetric(FIVE_MINUTES))
        .content(CONTENT)
        .id(Field::Json(&["event_id"]))
        .event(Field::Any(&EVENT))
        .secret(secret)
        .build()
}

/// Slack's Events API `url_verification` handshake: for a body
/// `{"type":"url_verification","challenge":"…"}` answers `200` with
/// `{"challenge":"…"}` as `application/json` (Slack also accepts the bare challenge as
/// text; JSON is used so that any challenge text is escaped). `None` for any other body.
///
/// Slack signs the handshake like every other request: pass the body of a request that
/// already verified, never an unverified one.
///
/// ```
/// use hookguard::providers::slack;
///
/// let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
/// let response = slack::url_verification(body).unwrap();
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert_eq!(response.body(), br#"{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#);
/// assert!(slack::url_verification(br#"{"type":"event_callback"}"#).is_none());
/// ```
#[must_use]
pub fn url_verification(body: &[u8]) -> Option<http::Response<Vec<u8>>> {
    if respond::json_string(body, &["type"])? != "url_verification" {
        return None;
    }
    let challenge = respond::json_string(body, &["challenge"])?;
    let body = serde_json::to_vec(&serde_json::json!({ "challenge": challenge })).ok()?;
    http::Response::builder()
        .status(http::StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn check(scheme: &HmacScheme, ts: &str, sig: &str, body: &[u8], now: i64) -> Result<(), Reason> {
        let req = http::Request::post("/")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", sig)
            .body(body.to_vec())
            .unwrap();
        scheme.verify(&WebhookRequest::from_request(&req), at(now)).map(|_| ()).map_err(|r| r.reason())
    }

    /// PROVIDERS.md vector (Slack's documentation example).
    #[test]
    fn official_vector() {
        let scheme = scheme(SECRET).unwrap();
        assert_eq!(check(&scheme, TS, SIG, BODY, 1_531_420_618), Ok(()));
        let signed = scheme.sign(&Outgoing::new(BODY).timestamp(at(1_531_420_618))).unwrap();
        assert_eq!(signed[0], (HEADER, http::HeaderValue::from_static(SIG)));
        assert_eq!(signed[1].0, TIMESTAMP);
        assert_eq!(signed[1].1, TS);
    }

    #[test]
    fn rejections() {
        let scheme = scheme(SECRET).unwrap();
        let rows = [
            ("wrong body", TS, SIG, &b"token=x"[..], Err(Reason::SignatureMismatch)),
            ("other timestamp", "1531420619", SIG, BODY, Err(Reason::SignatureMismatch)),
            ("no v0 prefix", TS, &SIG[3..], BODY, Err(Reason::MalformedSignature)),
            ("bad timestamp", "153142061x", SIG, BODY, Err(Reason::MalformedTimestamp)),
        ];
        for (name, ts, sig, body, want) in rows {
            assert_eq!(check(&scheme, ts, sig, body, 1_531_420_618), want, "case {name}");
        }
        let wrong = super::scheme("not-the-secret").unwrap();
        assert_eq!(check(&wrong, TS, SIG, BODY, 1_531_420_618), Err(Reason::SignatureMismatch));
    }

    #[test]
    fn tolerance_edges() {
        let scheme = scheme(SECRET).unwrap();
        let t = 1_531_420_618;
        assert_eq!(check(&scheme, TS, SIG, BODY, t + 300), Ok(()));
        assert_eq!(check(&scheme, TS, SIG, BODY, t + 301), Err(Reason::TimestampTooOld));
        assert_eq!(check(&scheme, TS, SIG, BODY, t - 300), Ok(()));
        assert_eq!(check(&scheme, TS, SIG, BODY, t - 301), Err(Reason::TimestampInFuture));
    }

    #[test]
    fn event_type_from_json_bodies() {
        let scheme = scheme(SECRET).unwrap();
        let body = br#"{"type":"event_callback","event":{"type":"app_mention"},"event_id":"Ev1"}"#;
        let now = at(1_700_000_000);
        let headers = scheme.sign(&Outgoing::new(body).timestamp(now)).unwrap();
        let mut req = http::Request::post("/");
        for (n, v) in headers {
            req = req.header(n, v);
        }
        let req = req.body(body.to_vec()).unwrap();
        let v = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
        assert_eq!(v.event(), Some("app_mention"));
        assert_eq!(v.id(), Some("Ev1"));
    }

    /// A retry is signed again, with its own timestamp: the signature changes, the
    /// envelope's `event_id` does not, and it is the replay key. A body without one (a
    /// slash command's form) is keyed by the signature's fingerprint.
    #[test]
    fn retries_share_the_event_id_as_replay_key() {
        let scheme = scheme(SECRET).unwrap();
        let body = br#"{"type":"event_callback","event":{"type":"message"},"event_id":"Ev08MFMKH6"}"#;
        let verify = |at: time::OffsetDateTime, body: &[u8]| {
            let mut req = http::Request::post("/");
            for (n, v) in scheme.sign(&Outgoing::new(body).timestamp(at)).unwrap() {
                req = req.header(n, v);
            }
            let req = req.body(body.to_vec()).unwrap();
            scheme.verify(&WebhookRequest::from_request(&req), at).unwrap().into_owned()
        };
        let (first, retry) = (verify(at(1_700_000_000), body), verify(at(1_700_000_060), body));
        assert_ne!(first.fingerprint(), retry.fingerprint(), "signed again");
        assert_eq!(first.dedup_key(), b"Ev08MFMKH6");
        assert_eq!(first.dedup_key(), retry.dedup_key());
        let command = verify(at(1_700_000_000), BODY);
        assert_eq!(command.id(), None);
        assert_eq!(command.dedup_key(), command.fingerprint());
    }

    #[test]
    fn url_verification_table() {
        type Row = (&'static str, &'static [u8], Option<&'static [u8]>);
        let rows: [Row; 9] = [
            (
                "challenge",
                br#"{"token":"t","challenge":"abc","type":"url_verification"}"#,
                Some(br#"{"challenge":"abc"}"#),
            ),
            (
                "escaped",
                br#"{"challenge":"a\"b","type":"url_verification"}"#,
                Some(br#"{"challenge":"a\"b"}"#),
            ),
            ("other type", br#"{"challenge":"abc","type":"event_callback"}"#, None),
            ("no challenge", br#"{"type":"url_verification"}"#, None),
            ("not json", b"token=x&type=url_verification", None),
            // Read as the other handshakes read JSON (one reader): an object only, the
            // first of a duplicated key, strings only.
            ("an array", br#"["url_verification","abc"]"#, None),
            (
                "duplicated type: the first counts",
                br#"{"type":"event_callback","type":"url_verification","challenge":"abc"}"#,
                None,
            ),
            ("a number challenge", br#"{"type":"url_verification","challenge":12}"#, None),
            (
                "unicode escapes",
                br#"{"type":"url_verif\u0069cation","challenge":"\u00e9"}"#,
                Some("{\"challenge\":\"\u{e9}\"}".as_bytes()),
            ),
        ];
        for (name, body, want) in rows {
            let got = url_verification(body).map(|r| r.into_body());
            assert_eq!(got.as_deref(), want, "case {name}");
        }
    }
}
