//! GitLab: a plain shared token in `X-Gitlab-Token`, compared in constant time (no MAC,
//! no timestamp: replay marks need a configured time to live). The replay key is
//! `Idempotency-Key`, else `X-Gitlab-Webhook-UUID`; the event is `X-Gitlab-Event`
//! (`Push Hook`, …). Several tokens may be configured (rotation).
//!
//! Newer GitLab versions can give a webhook a *signing token* instead; those deliveries
//! carry Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`). [`signing_token_scheme`] verifies them; how GitLab's signing
//! token text becomes the HMAC key is *unconfirmed* (taken here as Standard Webhooks
//! does: strip `whsec_`, base64-decode the rest).
//!
//! ```
//! use hookguard::{providers::gitlab, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = gitlab::scheme("my-gitlab-token").unwrap();
//! let req = http::Request::post("/hooks/gitlab")
//!     .header("x-gitlab-token", "my-gitlab-token")
//!     .header("x-gitlab-event", "Push Hook")
//!     .header("x-gitlab-webhook-uuid", "6b5a4b1e-8d1c-4f59-9a4e-3f1f0c2f8a77")
//!     .body(br#"{"object_kind":"push"}"#.to_vec())
//!     .unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
//! assert_eq!(verified.id(), Some("6b5a4b1e-8d1c-4f59-9a4e-3f1f0c2f8a77"));
//! assert_eq!(verified.event(), Some("Push Hook"));
//! ```

use http::HeaderName;

use super::standard_webhooks;
use crate::{
    ConfigError,
    verify::{Field, HmacScheme, TokenScheme},
};

/// `X-Gitlab-Token`.
///
/// ```
/// assert_eq!(hookguard::providers::gitlab::HEADER, "x-gitlab-token");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-gitlab-token");
/// `Idempotency-Key`, the preferred delivery id.
///
/// ```
/// assert_eq!(hookguard::providers::gitlab::IDEMPOTENCY_KEY, "idempotency-key");
/// ```
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `X-Gitlab-Webhook-UUID`, the delivery id when there is no `Idempotency-Key`.
///
/// ```
/// assert_eq!(hookguard::providers::gitlab::WEBHOOK_UUID, "x-gitlab-webhook-uuid");
/// ```
pub const WEBHOOK_UUID: HeaderName = HeaderName::from_static("x-gitlab-webhook-uuid");
/// `X-Gitlab-Event`.
///
/// ```
/// assert_eq!(hookguard::providers::gitlab::EVENT, "x-gitlab-event");
/// ```
pub const EVENT: HeaderName = HeaderName::from_static("x-gitlab-event");

static IDS: [Field; 2] = [Field::Header(IDEMPOTENCY_KEY), Field::Header(WEBHOOK_UUID)];

/// GitLab with one secret token (add more with [`TokenScheme::with_token`]).
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty token.
///
/// ```
/// use hookguard::{providers::gitlab, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = gitlab::scheme("glpat-t0ken")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// assert!(headers.iter().any(|(name, _)| name == gitlab::HEADER));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = gitlab::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(token: impl AsRef<[u8]>) -> Result<TokenScheme, ConfigError> {
    Ok(TokenScheme::new("gitlab", Field::Header(HEADER), token)?
        .with_id(Field::Any(&IDS))
        .with_event(Field::Header(EVENT)))
}

/// GitLab's signing tokens: Standard Webhooks v1 (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`, HMAC-SHA256 over `{id}.{ts}.{body}`, ±5 minutes), under the
/// provider name `gitlab`, with the event from `X-Gitlab-Event`.
///
/// The key encoding is *unconfirmed*: the token is read as a Standard Webhooks secret
/// (`whsec_` optional, then base64). If GitLab's tokens turn out to be used verbatim,
/// build the scheme with [`HmacScheme::builder`] and `KeyFormat::Raw`.
///
/// # Errors
/// [`ConfigError`] when the token is empty or not base64 after an optional `whsec_`.
///
/// ```
/// use hookguard::{providers::gitlab, verify::{Scheme, WebhookRequest}};
///
/// let scheme = gitlab::signing_token_scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
/// let req = http::Request::post("/hooks/gitlab")
///     .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
///     .header("webhook-timestamp", "1614265330")
///     .header("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
///     .body(br#"{"test": 2432232314}"#.to_vec())
///     .unwrap();
/// let now = time::OffsetDateTime::from_unix_timestamp(1614265330).unwrap();
/// assert_eq!(scheme.verify(&WebhookRequest::from_request(&req), now).unwrap().provider(), "gitlab");
/// ```
pub fn signing_token_scheme(signing_token: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    standard_webhooks::builder(
        "gitlab",
        Field::Header(HeaderName::from_static("webhook-signature")),
        Field::Header(HeaderName::from_static("webhook-id")),
        Field::Header(HeaderName::from_static("webhook-timestamp")),
    )
    .event(Field::Header(EVENT))
    .secret(signing_token)
    .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    fn verify(scheme: &TokenScheme, headers: &[(&str, &str)]) -> Result<Option<String>, Reason> {
        let mut req = http::Request::post("/");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(b"{}".to_vec()).unwrap();
        scheme
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|v| v.id().map(str::to_owned))
            .map_err(|r| r.reason())
    }

    #[test]
    fn token_table() {
        let scheme = scheme("tok3n").unwrap();
        let cases: &[(&str, &[(&str, &str)], Result<Option<String>, Reason>)] = &[
            ("token, no id", &[("x-gitlab-token", "tok3n")], Ok(None)),
            (
                "uuid",
                &[("x-gitlab-token", "tok3n"), ("x-gitlab-webhook-uuid", "u-1")],
                Ok(Some("u-1".to_owned())),
            ),
            (
                "idempotency key first",
                &[("x-gitlab-token", "tok3n"), ("x-gitlab-webhook-uuid", "u-1"), ("idempotency-key", "k-1")],
                Ok(Some("k-1".to_owned())),
            ),
            ("wrong token", &[("x-gitlab-token", "tok3")], Err(Reason::SignatureMismatch)),
            ("longer token", &[("x-gitlab-token", "tok3n ")], Err(Reason::SignatureMismatch)),
            ("empty token", &[("x-gitlab-token", "")], Err(Reason::MissingSignature)),
            ("no token", &[], Err(Reason::MissingSignature)),
        ];
        for (name, headers, want) in cases {
            assert_eq!(verify(&scheme, headers), *want, "case {name}");
        }
    }

    #[test]
    fn rotation_sign_and_redaction() {
        let scheme = scheme("old").unwrap().with_token("new").unwrap();
        assert_eq!(verify(&scheme, &[("x-gitlab-token", "new")]), Ok(None));
        let headers = scheme.sign(&Outgoing::new(b"{}")).unwrap();
        assert_eq!(headers[0].0, HEADER);
        assert_eq!(headers[0].1, "old");
        assert!(!format!("{scheme:?}").contains("old"));
        assert_eq!(super::scheme("").unwrap_err(), ConfigError::EmptySecret);
    }

    /// The Standard Webhooks vectors of PROVIDERS.md, under GitLab's name (the key
    /// encoding is unconfirmed for GitLab).
    #[test]
    fn signing_token_vectors() {
        let vectors = [
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &br#"{"test": 2432232314}"#[..],
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            (
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                "1649367553",
                &br#"{"email":"test@example.com","username":"test_user"}"#[..],
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ];
        for (secret, id, ts, body, sig) in vectors {
            let scheme = signing_token_scheme(secret).unwrap();
            let req = http::Request::post("/")
                .header("webhook-id", id)
                .header("webhook-timestamp", ts)
                .header("webhook-signature", sig)
                .header("x-gitlab-event", "Push Hook")
                .body(body.to_vec())
                .unwrap();
            let now = time::OffsetDateTime::from_unix_timestamp(ts.parse().unwrap()).unwrap();
            let v = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
            assert_eq!((v.provider(), v.id(), v.event()), ("gitlab", Some(id), Some("Push Hook")));
            let too_late = now + time::Duration::seconds(301);
            let err = scheme.verify(&WebhookRequest::from_request(&req), too_late).unwrap_err();
            assert_eq!(err.reason(), Reason::TimestampTooOld);
            let signed = scheme.sign(&Outgoing::new(body).id(id).timestamp(now)).unwrap();
            assert_eq!(signed[0].1, sig);
        }
        let wrong = signing_token_scheme("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let req = http::Request::post("/")
            .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
            .header("webhook-timestamp", "1614265330")
            .header("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
            .body(br#"{"test": 2432232314}"#.to_vec())
            .unwrap();
        let now = time::OffsetDateTime::from_unix_timestamp(1_614_265_330).unwrap();
        assert_eq!(
            wrong.verify(&WebhookRequest::from_request(&req), now).unwrap_err().reason(),
            Reason::SignatureMismatch
        );
        assert!(signing_token_scheme("not base64!").is_err());
    }
}
