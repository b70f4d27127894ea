//! Intercom: `X-Hub-Signature: sha1=<hex>`, HMAC-SHA1 over the body with the app's
//! client secret; no timestamp (replay marks need a configured time to live); the
//! replay key is the notification's `id` in the body, the event its `topic`. No
//! rotation.
//!
//! ```
//! use hookguard::{providers::intercom, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = intercom::scheme("intercom_secret").unwrap();
//! let req = http::Request::post("/hooks/intercom")
//!     .header("x-hub-signature", "sha1=1fb4511d1e0a20f76249bc5f9876517fc21ad34b")
//!     .body(br#"{"type":"notification_event","id":"notif_1","topic":"ping"}"#.to_vec())
//!     .unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
//! assert_eq!(verified.id(), Some("notif_1"));
//! assert_eq!(verified.event(), Some("ping"));
//! ```

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat},
};

/// `X-Hub-Signature`.
///
/// ```
/// assert_eq!(hookguard::providers::intercom::HEADER, "x-hub-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-hub-signature");

/// Intercom with the app's client secret.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::intercom, verify::{Outgoing, Sign}};
/// let scheme = intercom::scheme("intercom_secret").unwrap();
/// let headers = scheme.sign(&Outgoing::new(br#"{"type":"notification_event","id":"notif_1","topic":"ping"}"#)).unwrap();
/// assert_eq!(headers[0].1, "sha1=1fb4511d1e0a20f76249bc5f9876517fc21ad34b");
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("intercom", Algorithm::Sha1)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "sha1=" }, Encoding::Hex)
        .id(Field::Json(&["id"]))
        .event(Field::Json(&["topic"]))
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // No official vector exists (vectors.md); computed with Python's hmac.
    const BODY: &[u8] = br#"{"type":"notification_event","id":"notif_1","topic":"ping"}"#;
    const SIG: &str = "sha1=1fb4511d1e0a20f76249bc5f9876517fc21ad34b";

    fn check(scheme: &HmacScheme, sig: &str, body: &[u8]) -> Result<(), Reason> {
        let req = http::Request::post("/").header("x-hub-signature", sig).body(body.to_vec()).unwrap();
        scheme
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|_| ())
            .map_err(|r| r.reason())
    }

    #[test]
    fn computed_vector_table() {
        let scheme = scheme("intercom_secret").unwrap();
        let sha256_style = "sha256=1fb4511d1e0a20f76249bc5f9876517fc21ad34b";
        let rows = [
            ("vector", SIG, BODY, Ok(())),
            ("other body", SIG, &b"{}"[..], Err(Reason::SignatureMismatch)),
            ("sha256 prefix", sha256_style, BODY, Err(Reason::MalformedSignature)),
            ("bare hex", &SIG[5..], BODY, Err(Reason::MalformedSignature)),
        ];
        for (name, sig, body, want) in rows {
            assert_eq!(check(&scheme, sig, body), want, "case {name}");
        }
        let wrong = super::scheme("other").unwrap();
        assert_eq!(check(&wrong, SIG, BODY), Err(Reason::SignatureMismatch));
    }

    #[test]
    fn sign_round_trip() {
        let scheme = scheme("intercom_secret").unwrap();
        let (name, value) = scheme.sign(&Outgoing::new(BODY)).unwrap().remove(0);
        assert_eq!(name, HEADER);
        assert_eq!(check(&scheme, value.to_str().unwrap(), BODY), Ok(()));
    }
}
