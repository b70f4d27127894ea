//! [Discord interactions](https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint)
//! (feature `ed25519`): headers `X-Signature-Ed25519` (hex) and `X-Signature-Timestamp`;
//! Ed25519 over `{ts}{body}`, no separator; the application's public key in hex; a
//! timestamp more than 72 hours old is refused, none ahead of the clock (Discord's
//! libraries check none; 72 hours is as long as a guard keeps the replay mark of a
//! delivery that cannot go stale, so that a captured interaction resent later is either
//! still marked or refused as stale: [`SIGNED_TIMESTAMP_MAX_AGE`](super::SIGNED_TIMESTAMP_MAX_AGE);
//! Discord wants an answer within 3 seconds; change it with
//! [`Ed25519Scheme::with_tolerance`]); no delivery id, so the dedup key is the
//! signature's fingerprint (`{ts}{body}` has no separator, so a key without the timestamp
//! could be shifted; Discord does not retry interactions); rotation: several public keys
//! ([`Ed25519Scheme::with_public_key`]). Discord sends a PING (`"type":1`) when the
//! endpoint is saved: answer it with [`ping_response`] after verifying.
//!
//! ```
//! use hookguard::{providers::discord, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = discord::scheme("c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6").unwrap();
//! let body = br#"{"application_id":"827290144020496384","id":"995105663481028770","token":"aW50ZXJhY3Rpb246OTk1MTA1NjYzNDgxMDI4NzcwOmlReEtWOXNxMTJWYXF4UlRkc2RyVEp0MDdDMlVyem1na0FTT21xNTZQNHR0MUlORDU1bmNCUTZZdTI5akJkb3FycjBuUDltNVp3VVVJbnA0UUkzMG13cVBGWE5qZFQyb1dkZEpqVVFEdmZEcGE2UHV5dFAyTE5rS2c2a2lZNDlx","type":1,"user":{"avatar":"27aeb42cc902f7d8712aa64ff15bfb7d","avatar_decoration":null,"discriminator":"6969","id":"170531778354741248","public_flags":576,"username":"miles"},"version":1}"#;
//! let req = http::Request::post("/interactions")
//!     .header("x-signature-ed25519", "28b4ab5f09cce30c7f7f4ab4b47c311f0ce83dd8fec06d34e402c44d64223be5016f95339e64bdabcbd395e9147afe3f8cd024868330ab41014ae51b5573a009")
//!     .header("x-signature-timestamp", "1657322078")
//!     .body(body.to_vec())
//!     .unwrap();
//! let now = time::OffsetDateTime::from_unix_timestamp(1_657_322_078).unwrap();
//! scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
//! let pong = discord::ping_response(req.body()).unwrap();
//! assert_eq!(pong.body(), br#"{"type":1}"#);
//! ```

use http::{HeaderName, Response, StatusCode, header};

use crate::{
    ConfigError,
    verify::{
        ED25519_KEY_LEN, Ed25519Scheme, Encoding, Field, Piece, SignatureFormat, SignedContent,
        TimestampFormat, Tolerance,
    },
};

/// `{ts}{body}`.
///
/// ```
/// use hookguard::{providers::discord, verify::Piece};
/// assert_eq!(discord::CONTENT.pieces(), [Piece::Timestamp, Piece::Body]);
/// ```
pub const CONTENT: SignedContent = SignedContent::from_static(&[Piece::Timestamp, Piece::Body]);

const SIGNATURE: Field = Field::Header(HeaderName::from_static("x-signature-ed25519"));
const TIMESTAMP: Field = Field::Header(HeaderName::from_static("x-signature-timestamp"));

/// Discord interactions with the application's public key in hex (add more with
/// [`Ed25519Scheme::with_public_key`] and [`public_key`]). Timestamps more than 72 hours
/// old are refused ([`SIGNED_TIMESTAMP_MAX_AGE`](super::SIGNED_TIMESTAMP_MAX_AGE), though
/// Discord's libraries check none: see the [module](self)), timestamps ahead of the clock
/// are not; change that with [`Ed25519Scheme::with_tolerance`].
///
/// # Errors
/// [`ConfigError`] when the key is not 64 hex digits of a valid Ed25519 public key.
///
/// ```
/// use std::time::Duration;
/// use hookguard::{providers::{self, discord}, verify::{Scheme, Tolerance}};
/// let scheme = discord::scheme("c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6").unwrap();
/// assert_eq!(scheme.tolerance(), Tolerance::past_only(providers::SIGNED_TIMESTAMP_MAX_AGE));
/// let strict = scheme.with_tolerance(Tolerance::symmetric(Duration::from_secs(60)));
/// assert_eq!(strict.tolerance().past(), Some(Duration::from_secs(60)));
/// assert!(discord::scheme("c556").is_err());
/// ```
pub fn scheme(public_key: impl AsRef<[u8]>) -> Result<Ed25519Scheme, ConfigError> {
    Ed25519Scheme::builder("discord")
        .signature(SIGNATURE, SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
        .timestamp(TIMESTAMP, TimestampFormat::UnixSeconds)
        .tolerance(Tolerance::past_only(super::SIGNED_TIMESTAMP_MAX_AGE))
        .content(CONTENT)
        .event(Field::Json(&["type"]))
        .public_key(self::public_key(public_key)?)
        .build()
}

/// Decodes a hex public key (as shown in the Developer Portal) into its 32 bytes.
///
/// # Errors
/// [`ConfigError::InvalidSecret`] when it is not 64 hex digits.
///
/// ```
/// use hookguard::providers::discord;
/// let key = discord::public_key("c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6").unwrap();
/// assert_eq!(key[0], 0xc5);
/// ```
pub fn public_key(hex: impl AsRef<[u8]>) -> Result<[u8; ED25519_KEY_LEN], ConfigError> {
    let hex = hex.as_ref().trim_ascii();
    if hex.is_empty() {
        return Err(ConfigError::EmptySecret);
    }
    let mut key = [0; ED25519_KEY_LEN];
    const_hex::decode_to_slice(hex, &mut key)
        .map_err(|_| ConfigError::InvalidSecret("a Discord public key is 64 hex digits"))?;
    Ok(key)
}

/// The answer to a PING interaction (`"type":1`): `200` with `{"type":1}` as JSON.
/// `None` for any other body. Call it only with the body of a request that verified.
///
/// ```
/// use hookguard::providers::discord;
/// let pong = discord::ping_response(br#"{"type":1,"id":"1"}"#).unwrap();
/// assert_eq!(pong.status(), 200);
/// assert_eq!(pong.headers()["content-type"], "application/json");
/// assert!(discord::ping_response(br#"{"type":2}"#).is_none());
/// ```
#[must_use]
pub fn ping_response(body: &[u8]) -> Option<Response<Vec<u8>>> {
    // The same JSON reader as the other handshakes: `type` written as the number 1.
    if crate::verify::json::lookup(body, &["type"]) != Ok(Some("1")) {
        return None;
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(br#"{"type":1}"#.to_vec())
        .ok()
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // one tuple per table row
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    const PUBLIC_KEY: &str = "c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6";
    // ssMMiles/discord-interactions packages/verify-node/tests/data.json (vectors.md §2).
    const BODY: &[u8] = br#"{"application_id":"827290144020496384","id":"995105663481028770","token":"aW50ZXJhY3Rpb246OTk1MTA1NjYzNDgxMDI4NzcwOmlReEtWOXNxMTJWYXF4UlRkc2RyVEp0MDdDMlVyem1na0FTT21xNTZQNHR0MUlORDU1bmNCUTZZdTI5akJkb3FycjBuUDltNVp3VVVJbnA0UUkzMG13cVBGWE5qZFQyb1dkZEpqVVFEdmZEcGE2UHV5dFAyTE5rS2c2a2lZNDlx","type":1,"user":{"avatar":"27aeb42cc902f7d8712aa64ff15bfb7d","avatar_decoration":null,"discriminator":"6969","id":"170531778354741248","public_flags":576,"username":"miles"},"version":1}"#;
    const SIG: &str = "28b4ab5f09cce30c7f7f4ab4b47c311f0ce83dd8fec06d34e402c44d64223be5016f95339e64bdabcbd395e9147afe3f8cd024868330ab41014ae51b5573a009";
    const BODY_INVALID: &[u8] = br#"{"application_id":"827290144020496384","id":"995105663481028771","token":"aW50ZXJhY3Rpb246OTk1MTA1NjYzNDgxMDI4NzcxOmhRWEJ1SWlIRWNHTTVaYmFUc2pGRzR5SlZxM1hCSW9wMkxhald2anZ1ZDhaSWhQY3ZIM1d1NGJTNWRZbWs1SzQ4YzdpajEzd2ZkQVRDWEJuamxVN1A1TFhWRVoxWDVIMGV4MkhKSTRyN0ZyQ3JtWEYyem83UXZEV001VENiVUhJ","type":1,"user":{"avatar":"27aeb42cc902f7d8712aa64ff15bfb7d","avatar_decoration":null,"discriminator":"6969","id":"170531778354741248","public_flags":576,"username":"miles"},"version":1}"#;
    const SIG_INVALID: &str = "f740b665fd82b37a379626543cb10f9f1cd36b910be2bf3210bb70b5de11e096878c7e2b60a92931269ed49d58f249f32558853049a38fc6d66a831574ab7408";

    fn request(sig: &str, ts: &str, body: &[u8]) -> http::Request<Vec<u8>> {
        http::Request::post("/interactions")
            .header("x-signature-ed25519", sig)
            .header("x-signature-timestamp", ts)
            .body(body.to_vec())
            .unwrap()
    }

    #[test]
    fn vectors() {
        assert_eq!(BODY.len(), 474);
        let scheme = scheme(PUBLIC_KEY).unwrap();
        let now = time::OffsetDateTime::from_unix_timestamp(1_657_322_078).unwrap();
        let cases: &[(&str, &str, &str, &[u8], Option<Reason>)] = &[
            ("valid", SIG, "1657322078", BODY, None),
            ("upper-case hex", &SIG.to_uppercase(), "1657322078", BODY, None),
            (
                "SIGNATURE_INVALID set",
                SIG_INVALID,
                "1657322079",
                BODY_INVALID,
                Some(Reason::SignatureMismatch),
            ),
            ("other timestamp", SIG, "1657322079", BODY, Some(Reason::SignatureMismatch)),
            ("other body", SIG, "1657322078", BODY_INVALID, Some(Reason::SignatureMismatch)),
            ("malformed timestamp", SIG, "16573220780x", BODY, Some(Reason::MalformedTimestamp)),
            ("signature not hex", "zz", "1657322078", BODY, Some(Reason::MalformedSignature)),
        ];
        for (name, sig, ts, body, want) in cases {
            let req = request(sig, ts, body);
            let got = scheme.verify(&WebhookRequest::from_request(&req), now);
            match want {
                None => {
                    let v = got.unwrap_or_else(|e| panic!("case {name}: {e}"));
                    assert_eq!(v.event(), Some("1"), "case {name}");
                    assert_eq!(v.timestamp(), Some(now), "case {name}");
                }
                Some(reason) => assert_eq!(got.unwrap_err().reason(), *reason, "case {name}"),
            }
        }
    }

    /// Discord's libraries check no age, but an interaction older than the replay mark a
    /// guard keeps without a past bound (72 hours) is refused as stale (it verified years
    /// later); a timestamp ahead of the clock is not.
    #[test]
    fn timestamps_72_hours_old_are_stale_by_default() {
        let scheme = scheme(PUBLIC_KEY).unwrap();
        let req = request(SIG, "1657322078", BODY);
        let check = |scheme: &Ed25519Scheme, now: i64| {
            let now = time::OffsetDateTime::from_unix_timestamp(now).unwrap();
            scheme.verify(&WebhookRequest::from_request(&req), now).map(|_| ()).map_err(|r| r.reason())
        };
        let max_age = 72 * 3600;
        let rows = [
            ("72 h less 1 s old", 1_657_322_078 + max_age - 1, Ok(())),
            ("72 h and 1 s old", 1_657_322_078 + max_age + 1, Err(Reason::TimestampTooOld)),
            ("years later", 2_000_000_000, Err(Reason::TimestampTooOld)),
            ("a day ahead", 1_657_322_078 - 24 * 3600, Ok(())),
        ];
        for (name, now, want) in rows {
            assert_eq!(check(&scheme, now), want, "case {name}");
        }
        let strict = scheme.clone().with_tolerance(Tolerance::symmetric(std::time::Duration::from_secs(5)));
        assert_eq!(check(&strict, 1_657_322_084), Err(Reason::TimestampTooOld));
        assert_eq!(check(&strict, 1_657_322_072), Err(Reason::TimestampInFuture));
        assert_eq!(check(&strict, 1_657_322_083), Ok(()));
        assert_eq!(check(&scheme.with_tolerance(Tolerance::NONE), 2_000_000_000), Ok(()));
    }

    #[test]
    fn wrong_key_rejects_and_public_key_cannot_sign() {
        let other = scheme("6653787a0edd492aa2d26a17f61414937a2bacea2e2b74154129496b6e3c73f8").unwrap();
        let req = request(SIG, "1657322078", BODY);
        let err =
            other.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH).unwrap_err();
        assert_eq!(err.reason(), Reason::SignatureMismatch);
        assert!(other.sign(&Outgoing::new(BODY)).is_err());
    }

    #[test]
    fn sign_verify_round_trip() {
        let sender = Ed25519Scheme::builder("discord")
            .signature(SIGNATURE, SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
            .timestamp(TIMESTAMP, TimestampFormat::UnixSeconds)
            .content(CONTENT)
            .signing_key([5; 32])
            .build()
            .unwrap();
        let receiver = scheme(const_hex::encode(sender.public_keys().next().unwrap())).unwrap();
        let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut req = http::Request::post("/");
        for (name, value) in sender.sign(&Outgoing::new(br#"{"type":2}"#).timestamp(now)).unwrap() {
            req = req.header(name, value);
        }
        let req = req.body(br#"{"type":2}"#.to_vec()).unwrap();
        assert!(receiver.verify(&WebhookRequest::from_request(&req), now).is_ok());
    }

    #[test]
    fn by_name_takes_hex_public_keys() {
        let scheme = crate::providers::by_name(
            "discord",
            &["6653787a0edd492aa2d26a17f61414937a2bacea2e2b74154129496b6e3c73f8", PUBLIC_KEY],
        )
        .unwrap();
        let req = request(SIG, "1657322078", BODY);
        let v = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(v.key_index(), 1);
        assert!(crate::providers::NAMES.contains(&"discord"));
    }

    #[test]
    fn ping_table() {
        let cases: &[(&str, &[u8], bool)] = &[
            ("ping", br#"{"type":1}"#, true),
            ("ping with more", BODY, true),
            ("command", br#"{"type":2}"#, false),
            ("string type", br#"{"type":"1"}"#, false),
            ("not json", b"type=1", false),
            ("array", b"[1]", false),
            ("huge type", br#"{"type":100000}"#, false),
            ("type written otherwise", br#"{"type":1.0}"#, false),
            ("duplicated type: the first counts", br#"{"type":2,"type":1}"#, false),
        ];
        for (name, body, want) in cases {
            assert_eq!(ping_response(body).is_some(), *want, "case {name}");
        }
    }
}
