//! [SendGrid event webhook](https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features)
//! (feature `ecdsa`): headers `X-Twilio-Email-Event-Webhook-Signature` (base64 of a DER
//! ECDSA signature) and `X-Twilio-Email-Event-Webhook-Timestamp`; ECDSA P-256 / SHA-256
//! over `{ts}{body}`, no separator; the verification key is the base64 DER
//! `SubjectPublicKeyInfo` shown in SendGrid's settings; no tolerance by default
//! (SendGrid's libraries check none; add one with [`EcdsaP256Scheme::with_tolerance`]);
//! no delivery id (each event in the array has its own `sg_event_id`), so the dedup key
//! is the signature's fingerprint (`{ts}{body}` has no separator, so a key without the
//! timestamp could be shifted; deduplicate retries by `sg_event_id`); rotation: several public keys
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
//! let now = time::OffsetDateTime::now_utc();
//! assert!(scheme.verify(&WebhookRequest::from_request(&req), now).is_ok());
//! ```

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{EcdsaP256Scheme, Encoding, Field, Piece, SignatureFormat, SignedContent, TimestampFormat},
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
/// [`public_key`]).
///
/// # Errors
/// [`ConfigError`] when the key is not base64 of a P-256 public key.
///
/// ```
/// use hookguard::providers::sendgrid;
/// assert!(sendgrid::scheme("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==").is_ok());
/// assert!(sendgrid::scheme("MFkw").is_err());
/// ```
pub fn scheme(public_key: impl AsRef<[u8]>) -> Result<EcdsaP256Scheme, ConfigError> {
    EcdsaP256Scheme::builder("sendgrid")
        .signature(SIGNATURE, SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        .timestamp(TIMESTAMP, TimestampFormat::UnixSeconds)
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
        let now = time::OffsetDateTime::now_utc();
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
        let now = time::OffsetDateTime::now_utc();
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
