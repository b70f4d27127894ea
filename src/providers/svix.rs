//! Svix (and the senders built on it: Resend, Clerk): Standard Webhooks under `svix-*`
//! header names. Header `svix-signature` with space-separated `v1,<base64>` entries;
//! HMAC-SHA256 over `{svix-id}.{svix-timestamp}.{body}`; timestamp in unix seconds,
//! ±5 minutes (past and future); the replay key is `svix-id`; rotation: several entries
//! in one header, any may match. The key is the base64 after `whsec_`.
//!
//! White-label senders send the same thing under `webhook-*` names: each header falls
//! back to its `webhook-*` twin when the `svix-*` one is absent.
//!
//! ```
//! use hookguard::{providers::svix, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = svix::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let req = http::Request::post("/hooks/resend")
//!     .header("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
//!     .header("svix-timestamp", "1614265330")
//!     .header("svix-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
//!     .body(br#"{"test": 2432232314}"#.to_vec())
//!     .unwrap();
//! let now = time::OffsetDateTime::from_unix_timestamp(1614265330).unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
//! assert_eq!(verified.id(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
//! ```

use http::HeaderName;

use super::standard_webhooks;
use crate::{
    ConfigError,
    verify::{Field, HmacScheme},
};

/// `svix-id`, then `webhook-id`.
static ID: [Field; 2] =
    [Field::Header(HeaderName::from_static("svix-id")), Field::Header(HeaderName::from_static("webhook-id"))];
/// `svix-timestamp`, then `webhook-timestamp`.
static TIMESTAMP: [Field; 2] = [
    Field::Header(HeaderName::from_static("svix-timestamp")),
    Field::Header(HeaderName::from_static("webhook-timestamp")),
];
/// `svix-signature`, then `webhook-signature`.
static SIGNATURE: [Field; 2] = [
    Field::Header(HeaderName::from_static("svix-signature")),
    Field::Header(HeaderName::from_static("webhook-signature")),
];

/// Svix with one `whsec_…` secret (add more with [`HmacScheme::with_secret`]). Signing
/// writes the `svix-*` headers.
///
/// # Errors
/// [`ConfigError`] when the secret is empty or not base64 after `whsec_`.
///
/// ```
/// use hookguard::{providers::svix, verify::{Outgoing, Sign}};
///
/// let scheme = svix::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
/// let at = time::OffsetDateTime::from_unix_timestamp(1614265330).unwrap();
/// let headers = scheme.sign(&Outgoing::new(br#"{"test": 2432232314}"#).id("msg_p5jXN8AQM9LWM0D4loKWxJek").timestamp(at)).unwrap();
/// assert_eq!(headers[0].0, "svix-signature");
/// assert_eq!(headers[0].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    standard_webhooks::builder("svix", Field::Any(&SIGNATURE), Field::Any(&ID), Field::Any(&TIMESTAMP))
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID_V: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn request(prefix: &str, sig: &str) -> http::Request<Vec<u8>> {
        http::Request::post("/")
            .header(format!("{prefix}-id"), ID_V)
            .header(format!("{prefix}-timestamp"), TS)
            .header(format!("{prefix}-signature"), sig)
            .body(BODY.to_vec())
            .unwrap()
    }

    fn check(scheme: &HmacScheme, req: &http::Request<Vec<u8>>, now: i64) -> Result<(), Reason> {
        scheme.verify(&WebhookRequest::from_request(req), at(now)).map(|_| ()).map_err(|r| r.reason())
    }

    /// svix-webhooks `test_sign_function` (vectors.md §4), under both header families.
    #[test]
    fn official_vector_and_negative() {
        let scheme = scheme(SECRET).unwrap();
        let rows = [
            ("svix headers", "svix", SIG, Ok(())),
            ("white-label webhook headers", "webhook", SIG, Ok(())),
            (
                "last character changed",
                "svix",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
                Err(Reason::SignatureMismatch),
            ),
            (
                "other version ignored",
                "svix",
                "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                Err(Reason::MissingSignature),
            ),
        ];
        for (name, prefix, sig, want) in rows {
            assert_eq!(check(&scheme, &request(prefix, sig), 1_614_265_330), want, "case {name}");
        }
        let req = request("svix", SIG);
        let v = scheme.verify(&WebhookRequest::from_request(&req), at(1_614_265_330)).unwrap();
        assert_eq!(v.provider(), "svix");
        assert_eq!(v.id(), Some(ID_V));
    }

    #[test]
    fn svix_headers_win_over_webhook_headers() {
        let scheme = scheme(SECRET).unwrap();
        let req = http::Request::post("/")
            .header("svix-id", ID_V)
            .header("svix-timestamp", TS)
            .header("svix-signature", SIG)
            .header("webhook-signature", "v1,AAAA")
            .body(BODY.to_vec())
            .unwrap();
        assert_eq!(check(&scheme, &req, 1_614_265_330), Ok(()));
    }

    #[test]
    fn sign_round_trip_and_wrong_secret() {
        let scheme = scheme(SECRET).unwrap();
        let headers = scheme.sign(&Outgoing::new(BODY).id(ID_V).timestamp(at(1_614_265_330))).unwrap();
        let names: Vec<_> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["svix-signature", "svix-timestamp", "svix-id"]);
        assert_eq!(headers[0].1, SIG);
        let wrong = super::scheme("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(check(&wrong, &request("svix", SIG), 1_614_265_330), Err(Reason::SignatureMismatch));
    }

    #[test]
    fn tolerance_edges() {
        let scheme = scheme(SECRET).unwrap();
        let req = request("svix", SIG);
        assert_eq!(check(&scheme, &req, 1_614_265_330 + 300), Ok(()));
        assert_eq!(check(&scheme, &req, 1_614_265_330 + 301), Err(Reason::TimestampTooOld));
        assert_eq!(check(&scheme, &req, 1_614_265_330 - 300), Ok(()));
        assert_eq!(check(&scheme, &req, 1_614_265_330 - 301), Err(Reason::TimestampInFuture));
    }
}
