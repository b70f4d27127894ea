//! [SendGrid event webhook](https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features)
//! (feature `ecdsa`): headers `X-Twilio-Email-Event-Webhook-Signature` (base64 of a DER
//! ECDSA signature) and `X-Twilio-Email-Event-Webhook-Timestamp`; ECDSA P-256 / SHA-256
//! over `{ts}{body}`, no separator; the verification key is the base64 DER
//! `SubjectPublicKeyInfo` shown in SendGrid's settings; a timestamp more than 72 hours
//! old is refused, none ahead of the clock (SendGrid's libraries check none; 72 hours is
//! as long as a guard keeps the replay mark of a delivery that cannot go stale, so that a
//! captured delivery resent later is either still marked or refused as stale:
//! [`SIGNED_TIMESTAMP_MAX_AGE`](super::SIGNED_TIMESTAMP_MAX_AGE); SendGrid retries for up
//! to 24 hours; change it with [`EcdsaP256Scheme::with_tolerance`]); no delivery id (each
//! event in the array has its own `sg_event_id`), so the dedup key is the signature's
//! fingerprint (`{ts}{body}` has no separator, so a key without the timestamp could be
//! shifted; deduplicate retries by `sg_event_id`); rotation: several public keys
//! ([`EcdsaP256Scheme::with_public_key`]). Verify-only: [`Sign`](crate::verify::Sign)
//! answers [`SignError::Unsupported`](crate::verify::SignError::Unsupported), since
//! SendGrid holds the private key.
//!
//! ```
//! use hookguard::{providers::sendgrid, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = sendgrid::scheme("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==").unwrap();
//! let req = http::Request::post("/hooks/sendgrid")
//!     .header("x-twilio-email-event-webhook-signature", "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=")
//!     .header("x-twilio-email-event-webhook-timestamp", "1588788367")
//!     .body(br#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#.to_vec())
//!     .unwrap();
//! let sent = time::OffsetDateTime::from_unix_timestamp(1_588_788_367).unwrap();
//! assert!(scheme.verify(&WebhookRequest::from_request(&req), sent).is_ok());
//! // Resent four days later: stale.
//! let late = sent + std::time::Duration::from_secs(4 * 24 * 3600);
//! let err = scheme.verify(&WebhookRequest::from_request(&req), late).unwrap_err();
//! assert_eq!(err.reason(), hookguard::verify::Reason::TimestampTooOld);
//! ```

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{
        EcdsaP256Scheme, Encoding, Field, Piece, SignatureFormat, SignedContent, TimestampFormat, Tolerance,
    },
};

/// `{ts}{body}`.
///
/// ```
/// use hookguard::{providers::sendgrid, verify::Piece};
/// assert_eq!(sendgrid::CONTENT.pieces(), [Piece::Timestamp, Piece::Body]);
/// ```
pub const CONTENT: SignedContent = SignedContent::from_static(&[Piece::Timestamp, Piece::Body]);

const SIGNATURE: Field = Field::Header(HeaderName::from_static("x-twilio-email-event-webhook-signature"));
const TIMESTAMP: Field = Field::Header(HeaderName::from_static("x-twilio-email-event-webhook-timestamp"));

/// The SendGrid event webhook with its verification key (base64 DER SPKI, as shown in
/// the settings; add more with [`EcdsaP256Scheme::with_public_key`] and
/// [`public_key`]). Timestamps more than 72 hours old are refused
/// ([`SIGNED_TIMESTAMP_MAX_AGE`](super::SIGNED_TIMESTAMP_MAX_AGE), though SendGrid's
/// libraries check none: see the [module](self)), timestamps ahead of the clock are not;
/// change that with [`EcdsaP256Scheme::with_tolerance`].
///
/// # Errors
/// [`ConfigError`] when the key is not base64 of a P-256 public key.
///
/// ```
/// use hookguard::{providers::{self, sendgrid}, verify::{Scheme, Tolerance}};
/// let scheme = sendgrid::scheme("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==").unwrap();
/// assert_eq!(scheme.tolerance(), Tolerance::past_only(providers::SIGNED_TIMESTAMP_MAX_AGE));
/// assert_eq!(scheme.with_tolerance(Tolerance::NONE).tolerance(), Tolerance::NONE);
/// assert!(sendgrid::scheme("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==").is_ok());
/// assert!(sendgrid::scheme("MFkw").is_err());
/// ```
pub fn scheme(public_key: impl AsRef<[u8]>) -> Result<EcdsaP256Scheme, ConfigError> {
    EcdsaP256Scheme::builder("sendgrid")
        .signature(SIGNATURE, SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        .timestamp(TIMESTAMP, TimestampFormat::UnixSeconds)
        .tolerance(Tolerance::past_only(super::SIGNED_TIMESTAMP_MAX_AGE))
        .content(CONTENT)
        .public_key(self::public_key(public_key)?)
        .build()
}

/// Decodes the base64 verification key into DER bytes.
///
/// # Errors
/// [`ConfigError`] when it is empty or not base64.
///
/// ```
/// use hookguard::providers::sendgrid;
/// let der = sendgrid::public_key("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==").unwrap();
/// assert_eq!(der.len(), 91);
/// ```
pub fn public_key(base64: impl AsRef<[u8]>) -> Result<Vec<u8>, ConfigError> {
    let text = base64.as_ref().trim_ascii();
    if text.is_empty() {
        return Err(ConfigError::EmptySecret);
    }
    Encoding::Base64
        .decode_vec(text)
        .ok_or(ConfigError::InvalidSecret("a SendGrid verification key is base64 of a DER public key"))
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // one tuple per table row
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, SignError, WebhookRequest};

    // sendgrid-nodejs packages/eventwebhook/src/eventwebhook.spec.js (vectors.md §1a, 1b);
    // sendgrid-go helpers/eventwebhook/eventwebhook_test.go (§1c).
    const KEY_A: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const SIG_A: &str =
        "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    const PAYLOAD: &[u8] = b"[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";
    const WRONG_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";

    const KEY_B: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ4LIFtWztlsF7skFqOncjD1lun4H5w8XOhyOArHW9RcIx/FfEzx6cikC/yPfUvwaX/JScE7Fc9CJD2afQ9Ok3Q==";
    const SIG_B: &str =
        "MEYCIQC/I4o6vCgqRYrTljjoVWB/GRWNtxeePlLMHr3x9ETeRQIhAIpV+03nREPTTHWSW0wIOA0EoMPdcNgXa70yCaqDJlu5";
    const PAYLOAD_MULTI: &[u8] = b"[{\"email\":\"invalid@gmail.com\",\"event\":\"processed\",\"send_at\":0,\"sg_event_id\":\"cHJvY2Vzc2VkLTE5OTQyMTEyLXFOd0JMZ1BRUWpXNkRKdktRd1NBYnctMA\",\"sg_message_id\":\"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0\",\"smtp-id\":\"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>\",\"timestamp\":1619651146},\r\n{\"email\":\"invalid@gmail.com\",\"event\":\"bounce\",\"ip\":\"167.89.101.76\",\"reason\":\"552 5.2.2 The email account that you tried to reach is over quota and inactive. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm c17si1130468pgv.34 - gsmtp\",\"sg_event_id\":\"Ym91bmNlLTAtMTk5NDIxMTItcU53QkxnUFFRalc2REp2S1F3U0Fidy0w\",\"sg_message_id\":\"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0\",\"smtp-id\":\"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>\",\"status\":\"5.2.2\",\"timestamp\":1619651147,\"tls\":1,\"type\":\"blocked\"}]\r\n";

    const KEY_C: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const PRIVATE_C: &str = "MHcCAQEEIEQmZgBEh9DcU9zMl34czK3xov4AYvm9P3r7rNB2dNXtoAoGCCqGSM49AwEHoUQDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const SIG_C: &str =
        "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    const SIG_C_BAD: &str =
        "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";
    const PAYLOAD_C: &[u8] =
        b"{\"category\":\"example_payload\",\"event\":\"test_event\",\"message_id\":\"message_id\"}";

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn request(sig: &str, ts: &str, body: &[u8]) -> http::Request<Vec<u8>> {
        http::Request::post("/hooks/sendgrid")
            .header("x-twilio-email-event-webhook-signature", sig)
            .header("x-twilio-email-event-webhook-timestamp", ts)
            .body(body.to_vec())
            .unwrap()
    }

    #[test]
    fn vectors() {
        assert_eq!(PAYLOAD.len(), 327);
        assert_eq!(PAYLOAD_MULTI.len(), 889);
        let cases: &[(&str, &str, &str, &str, &[u8], Option<Reason>)] = &[
            ("1a single event", KEY_A, SIG_A, "1600112502", PAYLOAD, None),
            ("1a payload `payload`", KEY_A, SIG_A, "1600112502", b"payload", Some(Reason::SignatureMismatch)),
            (
                "1a timestamp `timestamp`",
                KEY_A,
                SIG_A,
                "timestamp",
                PAYLOAD,
                Some(Reason::MalformedTimestamp),
            ),
            ("1a other timestamp", KEY_A, SIG_A, "1600112503", PAYLOAD, Some(Reason::SignatureMismatch)),
            ("1a wrong key", WRONG_KEY, SIG_A, "1600112502", PAYLOAD, Some(Reason::SignatureMismatch)),
            (
                "1a without the CRLF",
                KEY_A,
                SIG_A,
                "1600112502",
                &PAYLOAD[..325],
                Some(Reason::SignatureMismatch),
            ),
            ("1b multiple events", KEY_B, SIG_B, "1619651159", PAYLOAD_MULTI, None),
            ("1c no CRLF", KEY_C, SIG_C, "1588788367", PAYLOAD_C, None),
            ("1c bad signature", KEY_C, SIG_C_BAD, "1588788367", PAYLOAD_C, Some(Reason::SignatureMismatch)),
            ("1c wrong key", KEY_A, SIG_C, "1588788367", PAYLOAD_C, Some(Reason::SignatureMismatch)),
        ];
        for (name, key, sig, ts, body, want) in cases {
            let scheme = scheme(key).unwrap();
            let req = request(sig, ts, body);
            // A minute after the vector was signed (the malformed one: any time).
            let now = at(ts.parse().map_or(1_600_112_502, |ts: i64| ts + 60));
            let got = scheme.verify(&WebhookRequest::from_request(&req), now);
            match want {
                None => {
                    let v = got.unwrap_or_else(|e| panic!("case {name}: {e}"));
                    assert_eq!(v.timestamp().map(|t| t.unix_timestamp().to_string()), Some(ts.to_string()));
                }
                Some(reason) => assert_eq!(got.unwrap_err().reason(), *reason, "case {name}"),
            }
        }
    }

    /// SendGrid's libraries check no age, but a delivery older than the replay mark a guard
    /// keeps without a past bound (72 hours) is refused as stale (the 2020 vectors verified
    /// at any later time); a timestamp ahead of the clock is not.
    #[test]
    fn timestamps_72_hours_old_are_stale_by_default() {
        let scheme = scheme(KEY_C).unwrap();
        let req = request(SIG_C, "1588788367", PAYLOAD_C);
        let check = |scheme: &EcdsaP256Scheme, now: i64| {
            scheme.verify(&WebhookRequest::from_request(&req), at(now)).map(|_| ()).map_err(|r| r.reason())
        };
        let max_age = 72 * 3600;
        let rows = [
            ("72 h less 1 s old", 1_588_788_367 + max_age - 1, Ok(())),
            ("72 h and 1 s old", 1_588_788_367 + max_age + 1, Err(Reason::TimestampTooOld)),
            ("today", time::OffsetDateTime::now_utc().unix_timestamp(), Err(Reason::TimestampTooOld)),
            ("a day ahead", 1_588_788_367 - 24 * 3600, Ok(())),
        ];
        for (name, now, want) in rows {
            assert_eq!(check(&scheme, now), want, "case {name}");
        }
        let err =
            scheme.verify(&WebhookRequest::from_request(&req), at(1_588_788_367 + max_age + 1)).unwrap_err();
        assert!(err.to_string().contains("tolerance 259200 s"), "{err}");
        let strict = scheme.clone().with_tolerance(Tolerance::symmetric(std::time::Duration::from_secs(600)));
        assert_eq!(check(&strict, 1_588_788_367 + 601), Err(Reason::TimestampTooOld));
        assert_eq!(check(&strict, 1_588_788_367 - 601), Err(Reason::TimestampInFuture));
        assert_eq!(check(&scheme.with_tolerance(Tolerance::NONE), 2_000_000_000), Ok(()));
    }

    #[test]
    fn the_go_private_key_signs_what_the_public_key_verifies() {
        // SEC1 DER `ECPrivateKey`: the 32-byte scalar follows the 7-byte header.
        let der = Encoding::Base64.decode_vec(PRIVATE_C.as_bytes()).unwrap();
        let scalar = &der[7..39];
        let sender = EcdsaP256Scheme::builder("sendgrid")
            .signature(SIGNATURE, SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
            .timestamp(TIMESTAMP, TimestampFormat::UnixSeconds)
            .content(CONTENT)
            .signing_key(scalar)
            .build()
            .unwrap();
        let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut req = http::Request::post("/");
        for (name, value) in sender.sign(&Outgoing::new(PAYLOAD).timestamp(now)).unwrap() {
            req = req.header(name, value);
        }
        let req = req.body(PAYLOAD.to_vec()).unwrap();
        let receiver = scheme(KEY_C).unwrap();
        assert!(receiver.verify(&WebhookRequest::from_request(&req), now).is_ok());
        assert_eq!(
            scheme(KEY_A).unwrap().verify(&WebhookRequest::from_request(&req), now).unwrap_err().reason(),
            Reason::SignatureMismatch
        );
    }

    #[test]
    fn by_name_takes_base64_public_keys() {
        let scheme = crate::providers::by_name("sendgrid", &[KEY_A, KEY_C]).unwrap();
        let req = request(SIG_C, "1588788367", PAYLOAD_C);
        let v = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(v.key_index(), 1);
        assert!(crate::providers::by_name("sendgrid", &["nope"]).is_err());
    }

    #[test]
    fn rotation_missing_headers_and_verify_only() {
        let scheme = scheme(KEY_A).unwrap().with_public_key(public_key(KEY_C).unwrap()).unwrap();
        assert_eq!(scheme.key_count(), 2);
        let now = at(1_588_788_367);
        let req = request(SIG_C, "1588788367", PAYLOAD_C);
        assert_eq!(scheme.verify(&WebhookRequest::from_request(&req), now).unwrap().key_index(), 1);
        let no_ts = http::Request::post("/")
            .header("x-twilio-email-event-webhook-signature", SIG_C)
            .body(PAYLOAD_C.to_vec())
            .unwrap();
        let err = scheme.verify(&WebhookRequest::from_request(&no_ts), now).unwrap_err();
        assert_eq!(err.reason(), Reason::MissingTimestamp);
        let no_sig = http::Request::post("/").body(PAYLOAD_C.to_vec()).unwrap();
        let err = scheme.verify(&WebhookRequest::from_request(&no_sig), now).unwrap_err();
        assert_eq!(err.reason(), Reason::MissingSignature);
        assert!(matches!(scheme.sign(&Outgoing::new(b"")), Err(SignError::Unsupported(_))));
        assert!(super::scheme("").is_err());
    }
}
