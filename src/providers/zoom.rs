//! Zoom: `x-zm-signature: v0=<hex>` with `x-zm-request-timestamp` (unix seconds);
//! HMAC-SHA256 over `v0:{ts}:{body}` with the app's secret token. Zoom's SDK checks no
//! tolerance; the preset refuses a timestamp more than 72 hours old (past only:
//! [`SIGNED_TIMESTAMP_MAX_AGE`](super::SIGNED_TIMESTAMP_MAX_AGE)), as long as a guard keeps
//! the replay mark of a delivery that cannot go stale, so that a captured delivery resent
//! later is either still marked or refused as stale, never handled as new; Zoom's retries
//! come well within it. Change it with [`HmacScheme::with_tolerance`] (`Tolerance::NONE`
//! for no check). The body is hashed as received, never re-serialized
//! (Zoom's SDK re-serializes the parsed JSON, which breaks on any reformatting). No
//! delivery id: the replay key is a SHA-256 of the body
//! ([`Verified::fingerprint`](crate::verify::Verified::fingerprint)), which Zoom's retries
//! (5, 25 and 85 minutes later, each signed anew) keep; the event is the body's `event`. No
//! rotation.
//!
//! Zoom validates an endpoint with an `endpoint.url_validation` event: see
//! [`url_validation`], which verifies the request itself and answers with the secret that
//! verified it.
//!
//! ```
//! use std::time::Duration;
//! use hookguard::{providers::zoom, verify::{Reason, Scheme, WebhookRequest}};
//!
//! let scheme = zoom::scheme("zoom_secret").unwrap();
//! let req = http::Request::post("/hooks/zoom")
//!     .header("x-zm-request-timestamp", "1700000000")
//!     .header("x-zm-signature", "v0=d13886e7d0cf71d67e3fba53de02a14ec5777de6fb3b269e1b14b431436b1eac")
//!     .body(br#"{"event":"meeting.started","payload":{}}"#.to_vec())
//!     .unwrap();
//! let req = WebhookRequest::from_request(&req);
//! let sent = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
//! let verified = scheme.verify(&req, sent + Duration::from_secs(2)).unwrap();
//! assert_eq!(verified.event(), Some("meeting.started"));
//! // The same delivery resent four days later is stale.
//! let late = scheme.verify(&req, sent + Duration::from_secs(4 * 24 * 3600)).unwrap_err();
//! assert_eq!(late.reason(), Reason::TimestampTooOld);
//! ```

use http::{HeaderName, header::CONTENT_TYPE};

use super::respond;
use crate::{
    ConfigError,
    verify::{
        Algorithm, Encoding, Field, HmacScheme, Piece, Rejection, Scheme as _, SignatureFormat,
        SignedContent, TimestampFormat, Tolerance, WebhookRequest,
    },
};
use time::OffsetDateTime;

/// `x-zm-signature`.
///
/// ```
/// assert_eq!(hookguard::providers::zoom::HEADER, "x-zm-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-zm-signature");
/// `x-zm-request-timestamp`.
///
/// ```
/// assert_eq!(hookguard::providers::zoom::TIMESTAMP, "x-zm-request-timestamp");
/// ```
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-zm-request-timestamp");

/// `v0:{ts}:{body}`.
///
/// ```
/// use hookguard::{providers::zoom, verify::Piece};
/// assert_eq!(zoom::CONTENT.pieces(), [Piece::Literal(b"v0:"), Piece::Timestamp, Piece::Literal(b":"), Piece::Body]);
/// ```
pub const CONTENT: SignedContent = SignedContent::from_static(&[
    Piece::Literal(b"v0:"),
    Piece::Timestamp,
    Piece::Literal(b":"),
    Piece::Body,
]);

/// Zoom with the app's secret token. Timestamps more than 72 hours old are refused
/// ([`SIGNED_TIMESTAMP_MAX_AGE`](super::SIGNED_TIMESTAMP_MAX_AGE), though Zoom's SDK checks
/// none: see the [module](self)), timestamps ahead of the clock are not; change that with
/// [`HmacScheme::with_tolerance`].
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use std::time::Duration;
/// use hookguard::{providers::{self, zoom}, verify::{Scheme, Tolerance}};
/// let scheme = zoom::scheme("zoom_secret").unwrap();
/// assert_eq!(scheme.tolerance(), Tolerance::past_only(providers::SIGNED_TIMESTAMP_MAX_AGE));
/// assert_eq!(scheme.tolerance().past(), Some(Duration::from_secs(72 * 3600)));
/// // A window of your own:
/// let strict = scheme.with_tolerance(Tolerance::symmetric(Duration::from_secs(300)));
/// assert_eq!(strict.tolerance().future(), Some(Duration::from_secs(300)));
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("zoom", Algorithm::Sha256)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "v0=" }, Encoding::Hex)
        .timestamp(Field::Header(TIMESTAMP), TimestampFormat::UnixSeconds)
        .tolerance(Tolerance::past_only(super::SIGNED_TIMESTAMP_MAX_AGE))
        .content(CONTENT)
        .event(Field::Json(&["event"]))
        .secret(secret)
        .build()
}

/// Zoom's `endpoint.url_validation` handshake: for a request whose body is
/// `{"event":"endpoint.url_validation","payload":{"plainToken":"…"}}`, verifies it with
/// `scheme` and answers `200` with
/// `{"plainToken":"…","encryptedToken":"<hex HMAC-SHA256(secret, plainToken)>"}` as
/// `application/json`, keyed with **the secret that verified the request**
/// ([`HmacScheme::mac_at`]). `None` for any other body; `Some(Err(_))` for a validation
/// request that does not verify under `scheme`.
///
/// The answer is a MAC of text the sender chose, and Zoom signs its events with the same
/// MAC (`v0:{ts}:{body}`): whoever gets an answer under a secret can sign events with
/// it. Hence the request is verified here, whatever verified it before, and the answer
/// uses the secret that verified it: a secret being rotated out (one that may only
/// verify) gets answers under itself, never under the current one, and a request signed
/// for another endpoint or tenant gets none. `now` is checked against the scheme's
/// tolerance (by default, a timestamp more than 72 hours old is refused).
///
/// ```
/// use hookguard::{providers::zoom, verify::{Outgoing, Sign, WebhookRequest}};
///
/// let scheme = zoom::scheme("zoom_secret").unwrap();
/// let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
/// let at = time::OffsetDateTime::from_unix_timestamp(1_654_503_849).unwrap();
/// let mut req = http::Request::post("/hooks/zoom");
/// for (name, value) in scheme.sign(&Outgoing::new(body).timestamp(at)).unwrap() {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec()).unwrap();
/// let response = zoom::url_validation(&scheme, &WebhookRequest::from_request(&req), at).unwrap().unwrap();
/// assert_eq!(response.status(), 200);
/// assert_eq!(
///     response.body(),
///     br#"{"plainToken":"qgg8vlvZRS6UYooatFL8Aw","encryptedToken":"46a324cfb7c2ec760e4cd561586a53aadb6fc7561eb8d626d6ee1b71d808b3c0"}"#
/// );
/// // Signed with another secret: refused, not answered.
/// let other = zoom::scheme("another_secret").unwrap();
/// assert!(zoom::url_validation(&other, &WebhookRequest::from_request(&req), at).unwrap().is_err());
/// ```
#[must_use]
pub fn url_validation(
    scheme: &HmacScheme,
    request: &WebhookRequest<'_>,
    now: OffsetDateTime,
) -> Option<Result<http::Response<Vec<u8>>, Rejection>> {
    let body = request.body();
    if respond::json_string(body, &["event"])? != "endpoint.url_validation" {
        return None;
    }
    let token = respond::json_string(body, &["payload", "plainToken"])?;
    let verified = match scheme.verify(request, now) {
        Ok(verified) => verified,
        Err(rejection) => return Some(Err(rejection)),
    };
    // `verify` names a key the scheme holds.
    let tag = scheme.mac_at(verified.key_index(), token.as_bytes())?;
    let encrypted = const_hex::encode(tag.as_bytes());
    // Field order as in Zoom's docs: plainToken, then encryptedToken.
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        #[serde(rename = "plainToken")]
        plain_token: &'a str,
        #[serde(rename = "encryptedToken")]
        encrypted_token: &'a str,
    }
    let body = serde_json::to_vec(&Answer { plain_token: &token, encrypted_token: &encrypted }).ok()?;
    http::Response::builder()
        .status(http::StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .ok()
        .map(Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // No official vector exists (vectors.md); these were computed with Python's hmac.
    const BODY: &[u8] = br#"{"event":"meeting.started","payload":{}}"#;
    const SIG: &str = "v0=d13886e7d0cf71d67e3fba53de02a14ec5777de6fb3b269e1b14b431436b1eac";

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn check(scheme: &HmacScheme, ts: &str, sig: &str, body: &[u8], now: i64) -> Result<(), Reason> {
        let req = http::Request::post("/")
            .header("x-zm-request-timestamp", ts)
            .header("x-zm-signature", sig)
            .body(body.to_vec())
            .unwrap();
        scheme.verify(&WebhookRequest::from_request(&req), at(now)).map(|_| ()).map_err(|r| r.reason())
    }

    #[test]
    fn computed_vector() {
        let scheme = scheme("zoom_secret").unwrap();
        let rows = [
            ("vector", "1700000000", SIG, BODY, Ok(())),
            (
                "reformatted body",
                "1700000000",
                SIG,
                &br#"{"event": "meeting.started", "payload": {}}"#[..],
                Err(Reason::SignatureMismatch),
            ),
            ("other timestamp", "1700000001", SIG, BODY, Err(Reason::SignatureMismatch)),
            ("missing v0=", "1700000000", &SIG[3..], BODY, Err(Reason::MalformedSignature)),
        ];
        for (name, ts, sig, body, want) in rows {
            assert_eq!(check(&scheme, ts, sig, body, 1_700_000_000), want, "case {name}");
        }
        let wrong = super::scheme("other").unwrap();
        assert_eq!(check(&wrong, "1700000000", SIG, BODY, 1_700_000_000), Err(Reason::SignatureMismatch));
    }

    /// Zoom's SDK checks no age, but a delivery older than the replay mark a guard keeps
    /// without a past bound (72 hours) is refused as stale (it verified years later); a
    /// timestamp ahead of the clock is not.
    #[test]
    fn timestamps_72_hours_old_are_stale_by_default() {
        let scheme = scheme("zoom_secret").unwrap();
        let max_age = 72 * 3600;
        let rows = [
            ("72 h less 1 s old", 1_700_000_000 + max_age - 1, Ok(())),
            ("72 h old", 1_700_000_000 + max_age, Ok(())),
            ("72 h and 1 s old", 1_700_000_000 + max_age + 1, Err(Reason::TimestampTooOld)),
            ("years later", 1_900_000_000, Err(Reason::TimestampTooOld)),
            ("a day ahead", 1_700_000_000 - 24 * 3600, Ok(())),
            ("years ahead", 0, Ok(())),
        ];
        for (name, now, want) in rows {
            assert_eq!(check(&scheme, "1700000000", SIG, BODY, now), want, "case {name}");
        }
        let strict = scheme.clone().with_tolerance(Tolerance::symmetric(super::super::FIVE_MINUTES));
        assert_eq!(check(&strict, "1700000000", SIG, BODY, 1_700_000_301), Err(Reason::TimestampTooOld));
        assert_eq!(check(&strict, "1700000000", SIG, BODY, 1_699_999_699), Err(Reason::TimestampInFuture));
        let unchecked = scheme.with_tolerance(Tolerance::NONE);
        assert_eq!(check(&unchecked, "1700000000", SIG, BODY, 1_900_000_000), Ok(()));
    }

    #[test]
    fn sign_round_trip() {
        let scheme = scheme("zoom_secret").unwrap();
        let headers = scheme.sign(&Outgoing::new(BODY).timestamp(at(1_700_000_000))).unwrap();
        assert_eq!(headers[0].1, SIG);
        assert_eq!(headers[1], (TIMESTAMP, http::HeaderValue::from_static("1700000000")));
    }

    #[test]
    fn url_validation_table() {
        let scheme = scheme("zoom_secret").unwrap();
        let rows: [(&str, &[u8], bool); 7] = [
            (
                "validation",
                br#"{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}"#,
                true,
            ),
            ("other event", br#"{"event":"meeting.started","payload":{"plainToken":"x"}}"#, false),
            ("no token", br#"{"event":"endpoint.url_validation","payload":{}}"#, false),
            ("not json", b"event=endpoint.url_validation", false),
            ("an array", br#"["endpoint.url_validation",["qgg8vlvZRS6UYooatFL8Aw"]]"#, false),
            ("a number token", br#"{"event":"endpoint.url_validation","payload":{"plainToken":7}}"#, false),
            (
                "duplicated event: the first counts",
                br#"{"event":"meeting.started","event":"endpoint.url_validation","payload":{"plainToken":"x"}}"#,
                false,
            ),
        ];
        for (name, body, want) in rows {
            let req = signed(&scheme, body);
            let answer = url_validation(&scheme, &WebhookRequest::from_request(&req), at(1_700_000_000));
            assert_eq!(answer.is_some(), want, "case {name}");
        }
        let req = signed(&scheme, rows[0].1);
        let r =
            url_validation(&scheme, &WebhookRequest::from_request(&req), at(1_700_000_000)).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
        assert_eq!(v["encryptedToken"], "46a324cfb7c2ec760e4cd561586a53aadb6fc7561eb8d626d6ee1b71d808b3c0");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }

    fn signed(scheme: &HmacScheme, body: &[u8]) -> http::Request<Vec<u8>> {
        let mut req = http::Request::post("/hooks/zoom");
        for (name, value) in scheme.sign(&Outgoing::new(body).timestamp(at(1_700_000_000))).unwrap() {
            req = req.header(name, value);
        }
        req.body(body.to_vec()).unwrap()
    }

    /// The answer is a MAC of the sender's text, which Zoom's event signatures are too: it
    /// must be keyed with the secret that verified the request. Under the first secret,
    /// the holder of one being rotated out could sign events under the current one.
    #[test]
    fn url_validation_answers_with_the_secret_that_verified() {
        let rotating = scheme("new").unwrap().with_secret("old").unwrap();
        let old = scheme("old").unwrap();
        // The token an attacker would choose: the signed text of an event.
        let forged_event = br#"{"event":"meeting.deleted","payload":{}}"#;
        let token = format!("v0:1700000000:{}", std::str::from_utf8(forged_event).unwrap());
        let body = serde_json::to_vec(&serde_json::json!({
            "event": "endpoint.url_validation",
            "payload": {"plainToken": token},
        }))
        .unwrap();
        let req = signed(&old, &body);
        let answer =
            url_validation(&rotating, &WebhookRequest::from_request(&req), at(1_700_000_000)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(answer.unwrap().body()).unwrap();
        let encrypted = v["encryptedToken"].as_str().unwrap();
        assert_eq!(
            encrypted,
            const_hex::encode(old.mac_primary(token.as_bytes()).as_bytes()),
            "under the old secret"
        );
        // The answer does not sign the event under the current secret.
        let event = http::Request::post("/")
            .header("x-zm-request-timestamp", "1700000000")
            .header("x-zm-signature", format!("v0={encrypted}"))
            .body(forged_event.to_vec())
            .unwrap();
        let current = scheme("new").unwrap();
        let refused = current.verify(&WebhookRequest::from_request(&event), at(1_700_000_000));
        assert_eq!(refused.map(|_| ()).map_err(|r| r.reason()), Err(Reason::SignatureMismatch));

        // Signed under a secret the scheme does not hold: refused.
        let req = signed(&scheme("someone-else").unwrap(), &body);
        let refused =
            url_validation(&rotating, &WebhookRequest::from_request(&req), at(1_700_000_000)).unwrap();
        assert_eq!(refused.map(|_| ()).map_err(|r| r.reason()), Err(Reason::SignatureMismatch));
    }
}
