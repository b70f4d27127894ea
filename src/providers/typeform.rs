//! Typeform: `Typeform-Signature: sha256=<base64>`, HMAC-SHA256 over the body, keyed with
//! the secret's bytes. No timestamp (replay marks need a configured time to live); the
//! delivery id is the body's `event_id` (signed, with the body; the replay key, which
//! Typeform's retries of the same payload keep), the event the body's `event_type`; no
//! rotation scheme of its own (several configured secrets are all tried).
//!
//! ```
//! use hookguard::{providers::typeform, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = typeform::scheme("typeform_secret").unwrap();
//! let req = http::Request::post("/hooks/typeform")
//!     .header("typeform-signature", "sha256=LZEVySAmmNeeaopdXEaoGDyPqTumVdMkJdwQ5ZT553o=")
//!     .body(br#"{"event_id":"01HGZ7","event_type":"form_response"}"#.to_vec())
//!     .unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
//! assert_eq!((verified.id(), verified.event()), (Some("01HGZ7"), Some("form_response")));
//! assert!(verified.id_is_signed());
//! ```

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat},
};

/// `Typeform-Signature`.
///
/// ```
/// assert_eq!(hookguard::providers::typeform::HEADER, "typeform-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("typeform-signature");

/// Typeform with one webhook secret.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::typeform, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = typeform::scheme("s3cr3t")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// let (_, signature) = headers.iter().find(|(name, _)| name == typeform::HEADER).unwrap();
/// assert!(signature.to_str()?.starts_with("sha256="));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = typeform::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("typeform", Algorithm::Sha256)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "sha256=" }, Encoding::Base64)
        .id(Field::Json(&["event_id"]))
        .event(Field::Json(&["event_type"]))
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // Self-computed (no official vector exists): python3
    // base64(hmac.new(b"typeform_secret", BODY, sha256).digest()).
    const BODY: &[u8] = br#"{"event_id":"01HGZ7","event_type":"form_response"}"#;
    const SIG: &str = "sha256=LZEVySAmmNeeaopdXEaoGDyPqTumVdMkJdwQ5ZT553o=";

    fn verify(scheme: &HmacScheme, sig: &str, body: &[u8]) -> Result<(), Reason> {
        let req = http::Request::post("/").header("typeform-signature", sig).body(body.to_vec()).unwrap();
        scheme
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|_| ())
            .map_err(|r| r.reason())
    }

    #[test]
    fn table() {
        let good = scheme("typeform_secret").unwrap();
        let cases: &[(&str, &HmacScheme, &str, &[u8], Result<(), Reason>)] = &[
            ("self-computed vector", &good, SIG, BODY, Ok(())),
            ("padding optional", &good, SIG.trim_end_matches('='), BODY, Ok(())),
            ("body changed", &good, SIG, b"{}", Err(Reason::SignatureMismatch)),
            ("no prefix", &good, &SIG[7..], BODY, Err(Reason::MalformedSignature)),
            ("hex instead of base64", &good, "sha256=zz", BODY, Err(Reason::MalformedSignature)),
        ];
        for (name, scheme, sig, body, want) in cases {
            assert_eq!(verify(scheme, sig, body), *want, "case {name}");
        }
        let wrong = scheme("other").unwrap();
        assert_eq!(verify(&wrong, SIG, BODY), Err(Reason::SignatureMismatch));
    }

    /// The signed body's `event_id` is the replay key (it was the MAC's fingerprint) and
    /// its `event_type` the event (there was none).
    #[test]
    fn the_body_names_the_delivery_and_its_event() {
        let scheme = scheme("typeform_secret").unwrap();
        let req = http::Request::post("/").header("typeform-signature", SIG).body(BODY.to_vec()).unwrap();
        let v = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!((v.id(), v.event(), v.id_is_signed()), (Some("01HGZ7"), Some("form_response"), true));
        assert_eq!(v.dedup_key(), b"01HGZ7");
    }

    #[test]
    fn sign_round_trip() {
        let scheme = scheme("typeform_secret").unwrap();
        let headers = scheme.sign(&Outgoing::new(BODY)).unwrap();
        assert_eq!(headers[0].0, HEADER);
        assert_eq!(headers[0].1, SIG);
        assert_eq!(verify(&scheme, headers[0].1.to_str().unwrap(), BODY), Ok(()));
    }
}
