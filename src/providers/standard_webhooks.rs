//! [Standard Webhooks](https://www.standardwebhooks.com/) (`webhook-*` headers), v1:
//! HMAC-SHA256 over `{id}.{ts}.{body}`, base64, entries `v1,<sig>` separated by spaces;
//! ±5 minutes; the key is the base64 after `whsec_`.
//!
//! ```
//! use hookguard::{providers::standard_webhooks, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = standard_webhooks::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let req = http::Request::post("/")
//!     .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
//!     .header("webhook-timestamp", "1614265330")
//!     .header("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
//!     .body(br#"{"test": 2432232314}"#.to_vec())
//!     .unwrap();
//! let now = time::OffsetDateTime::from_unix_timestamp(1614265330 + 60).unwrap();
//! assert!(scheme.verify(&WebhookRequest::from_request(&req), now).is_ok());
//! ```

use http::HeaderName;

use super::FIVE_MINUTES;
use crate::{
    ConfigError,
    verify::{
        Algorithm, Encoding, Field, HmacScheme, KeyFormat, Piece, SignatureFormat, SignedContent,
        TimestampFormat, Tolerance,
    },
};

/// `{id}.{ts}.{body}`.
///
/// ```
/// use hookguard::{providers::standard_webhooks, verify::Piece};
/// assert_eq!(standard_webhooks::CONTENT.pieces(), [Piece::Id, Piece::Literal(b"."), Piece::Timestamp, Piece::Literal(b"."), Piece::Body]);
/// ```
pub const CONTENT: SignedContent = SignedContent::from_static(&[
    Piece::Id,
    Piece::Literal(b"."),
    Piece::Timestamp,
    Piece::Literal(b"."),
    Piece::Body,
]);

/// The v1 signature entries.
///
/// ```
/// use hookguard::{providers::standard_webhooks, verify::SignatureFormat};
/// assert_eq!(standard_webhooks::FORMAT, SignatureFormat::Versioned { version: "v1" });
/// ```
pub const FORMAT: SignatureFormat = SignatureFormat::Versioned { version: "v1" };

const ID: Field = Field::Header(HeaderName::from_static("webhook-id"));
const TIMESTAMP: Field = Field::Header(HeaderName::from_static("webhook-timestamp"));
const SIGNATURE: Field = Field::Header(HeaderName::from_static("webhook-signature"));

/// Standard Webhooks v1 with one `whsec_…` secret (add more with
/// [`HmacScheme::with_secret`]).
///
/// # Errors
/// [`ConfigError`] when the secret is empty or not base64 after `whsec_`.
///
/// ```
/// use hookguard::{providers::standard_webhooks, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = standard_webhooks::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).id("msg_1").timestamp(now))?;
/// let (_, signature) = headers.iter().find(|(name, _)| name == "webhook-signature").unwrap();
/// assert!(signature.to_str()?.starts_with("v1,"));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = standard_webhooks::scheme("whsec_b3RoZXIgc2VjcmV0")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    builder("standard-webhooks", SIGNATURE, ID, TIMESTAMP).secret(secret).build()
}

/// The common shape of Standard Webhooks and its white-label senders (Svix), with the
/// header locations given.
pub(crate) fn builder(
    provider: &'static str,
    signature: Field,
    id: Field,
    timestamp: Field,
) -> crate::verify::HmacSchemeBuilder {
    HmacScheme::builder(provider, Algorithm::Sha256)
        .key_format(KeyFormat::StandardWebhooks)
        .signature(signature, FORMAT, Encoding::Base64)
        .content(CONTENT)
        .id(id)
        .timestamp(timestamp, TimestampFormat::UnixSeconds)
        .tolerance(Tolerance::symmetric(FIVE_MINUTES))
        .event(Field::Json(&["type"]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Reason, Scheme, WebhookRequest};

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn request(id: &str, ts: &str, sig: &str, body: &[u8]) -> http::Request<Vec<u8>> {
        http::Request::post("/")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts)
            .header("webhook-signature", sig)
            .body(body.to_vec())
            .unwrap()
    }

    const VECTOR_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;

    /// The first vector's request with `extra` headers appended.
    fn vector_with(extra: &[(&str, &str)]) -> http::Request<Vec<u8>> {
        let mut req = request("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", VECTOR_SIG, VECTOR_BODY);
        for (name, value) in extra {
            req.headers_mut().append(
                http::HeaderName::try_from(*name).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        req
    }

    /// Few headers are scanned, many are looked up by hash: both read the first value of
    /// a repeated header, as `HeaderMap::get` does, and agree on every outcome.
    #[test]
    fn small_and_large_header_maps_read_the_same_values() {
        let scheme = scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let now = at(1_614_265_330);
        let many: Vec<(String, String)> =
            (0..20).map(|i| (format!("x-extra-{i}"), format!("v{i}"))).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        for padding in [&[][..], &many[..]] {
            let outcome = |extra: &[(&str, &str)]| {
                let mut all = padding.to_vec();
                all.extend_from_slice(extra);
                scheme
                    .verify(&WebhookRequest::from_request(&vector_with(&all)), now)
                    .map(|v| v.id().map(str::to_owned))
            };
            assert_eq!(outcome(&[]), Ok(Some("msg_p5jXN8AQM9LWM0D4loKWxJek".into())));
            // A second timestamp or id after the first is ignored.
            assert!(outcome(&[("webhook-timestamp", "99"), ("webhook-id", "other")]).is_ok());
            // Every value of a repeated signature header is read.
            assert!(outcome(&[("webhook-signature", "v1,AAAA")]).is_ok());
        }
        // One wrong signature alone is a mismatch; the header absent is a missing one.
        for padding in [&[][..], &many[..]] {
            let mut req = request("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,AAAA", VECTOR_BODY);
            for (name, _) in padding {
                req.headers_mut()
                    .append(http::HeaderName::try_from(*name).unwrap(), http::HeaderValue::from_static("x"));
            }
            let err = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap_err();
            assert_eq!(err.reason(), Reason::SignatureMismatch);
            req.headers_mut().remove("webhook-signature");
            let err = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap_err();
            assert_eq!(err.reason(), Reason::MissingSignature);
        }
        // The first value decides: a bad first timestamp is refused, whatever follows.
        let mut req = request("msg_p5jXN8AQM9LWM0D4loKWxJek", "nope", VECTOR_SIG, VECTOR_BODY);
        req.headers_mut().append("webhook-timestamp", http::HeaderValue::from_static("1614265330"));
        let err = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap_err();
        assert_eq!(err.reason(), Reason::MalformedTimestamp);
    }

    /// With the MAC computed first, the checks still refuse in the same order: a missing
    /// signature before a bad timestamp, the timestamp and id before the signature's
    /// format, the format before a mismatch.
    #[test]
    fn reasons_keep_their_order() {
        let scheme = scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let now = at(1_614_265_330);
        let check = |req: http::Request<Vec<u8>>| {
            scheme.verify(&WebhookRequest::from_request(&req), now).unwrap_err().reason()
        };
        let no_sig = http::Request::post("/")
            .header("webhook-id", "m")
            .header("webhook-timestamp", "1")
            .body(vec![])
            .unwrap();
        assert_eq!(check(no_sig), Reason::MissingSignature);
        assert_eq!(check(request("m", "1", "v1,%%%", b"{}")), Reason::TimestampTooOld);
        let no_id = http::Request::post("/")
            .header("webhook-timestamp", "1614265330")
            .header("webhook-signature", VECTOR_SIG)
            .body(VECTOR_BODY.to_vec())
            .unwrap();
        assert_eq!(check(no_id), Reason::MissingHeader);
        assert_eq!(check(request("m", "1614265330", "v1,%%%", b"{}")), Reason::MalformedSignature);
        assert_eq!(check(request("m", "1614265330", VECTOR_SIG, b"{}")), Reason::SignatureMismatch);
        let non_ascii_id = http::HeaderValue::from_bytes(b"m\xff").unwrap();
        let mut req = request("m", "1614265330", VECTOR_SIG, VECTOR_BODY);
        req.headers_mut().insert("webhook-id", non_ascii_id);
        assert_eq!(check(req), Reason::MalformedHeader);
    }

    /// PROVIDERS.md vectors.
    #[test]
    fn official_vectors() {
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
            let scheme = scheme(secret).unwrap();
            let req = request(id, ts, sig, body);
            let now = at(ts.parse().unwrap());
            let v = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
            assert_eq!(v.id(), Some(id));
            assert_eq!(v.timestamp(), Some(now));
            // Signing reproduces the vector.
            let signed =
                crate::verify::Sign::sign(&scheme, &crate::verify::Outgoing::new(body).id(id).timestamp(now))
                    .unwrap();
            assert_eq!(signed[0].1, sig, "{id}");
        }
    }

    #[test]
    fn any_entry_may_match_and_v1a_is_ignored() {
        let scheme = scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = "v1a,AAAA v1,bm90IHRoZSBzaWduYXR1cmUgYXQgYWxsIHJlYWxseSEhISE= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let req = request("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", sig, br#"{"test": 2432232314}"#);
        assert!(scheme.verify(&WebhookRequest::from_request(&req), at(1_614_265_330)).is_ok());
    }

    #[test]
    fn tolerance_both_sides() {
        let scheme = scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let req = request(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            br#"{"test": 2432232314}"#,
        );
        let view = WebhookRequest::from_request(&req);
        assert!(scheme.verify(&view, at(1_614_265_330 + 300)).is_ok());
        assert_eq!(
            scheme.verify(&view, at(1_614_265_330 + 301)).unwrap_err().reason(),
            Reason::TimestampTooOld
        );
        assert!(scheme.verify(&view, at(1_614_265_330 - 300)).is_ok());
        assert_eq!(
            scheme.verify(&view, at(1_614_265_330 - 301)).unwrap_err().reason(),
            Reason::TimestampInFuture
        );
    }

    #[test]
    fn key_is_decoded_not_used_verbatim() {
        // The pitfall: using the `whsec_…` text as the key must not verify.
        let wrong = HmacScheme::builder("x", Algorithm::Sha256)
            .signature(SIGNATURE, FORMAT, Encoding::Base64)
            .content(CONTENT)
            .id(ID)
            .timestamp(TIMESTAMP, TimestampFormat::UnixSeconds)
            .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .build()
            .unwrap();
        let req = request(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            br#"{"test": 2432232314}"#,
        );
        let err = wrong.verify(&WebhookRequest::from_request(&req), at(1_614_265_330)).unwrap_err();
        assert_eq!(err.reason(), Reason::SignatureMismatch);
    }

    #[test]
    fn missing_pieces() {
        let scheme = scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let req = http::Request::post("/")
            .header("webhook-timestamp", "1614265330")
            .header("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
            .body(Vec::new())
            .unwrap();
        let err = scheme.verify(&WebhookRequest::from_request(&req), at(1_614_265_330)).unwrap_err();
        assert_eq!(err.reason(), Reason::MissingHeader);
        assert_eq!(err.to_string(), "missing header: `webhook-id`");
    }
}
