//! ECDSA over P-256 with SHA-256 (`ES256`), described like
//! [`HmacScheme`](super::HmacScheme): the same [`Field`], [`SignatureFormat`],
//! [`Encoding`], [`SignedContent`] and [`Tolerance`] parts, with public keys instead of
//! secrets.

use std::{borrow::Cow, fmt};

use http::{HeaderName, HeaderValue};
use p256::{
    ecdsa::{
        Signature, SigningKey, VerifyingKey,
        signature::{MultipartSigner as _, MultipartVerifier as _},
    },
    pkcs8::DecodePublicKey as _,
};
use time::OffsetDateTime;

use super::{
    Encoding, Outgoing, Rejection, Scheme, Sign, SignError, Tolerance, Verified, WebhookRequest,
    asymmetric::{Layout, layout_builder_methods},
};
#[allow(unused_imports)] // for intra-doc links
use super::{Field, SignatureFormat, SignedContent};
use crate::error::ConfigError;

/// An ECDSA P-256 / SHA-256 signature scheme described by data (see
/// [`HmacScheme`](super::HmacScheme) for the parts). SendGrid's event webhook is an
/// instance of it; build your own with [`EcdsaP256Scheme::builder`].
///
/// - Public keys: DER `SubjectPublicKeyInfo` (what `openssl ec -pubout -outform der`
///   writes, and what SendGrid shows in base64) or a SEC1 point (`04‖x‖y`, or
///   compressed). Several keys may verify (rotation).
/// - Signatures: ASN.1 DER `ECDSA-Sig-Value` (SendGrid, Java's `SHA256withECDSA`,
///   OpenSSL), or the fixed 64-byte `r‖s` form (JOSE, WebCrypto) when the bytes are not
///   DER. High-`s` signatures are accepted, as OpenSSL and Java do.
/// - Signing (deterministic, RFC 6979) only with a private key given to
///   [`EcdsaP256SchemeBuilder::signing_key`]; otherwise [`Sign`] answers
///   [`SignError::Unsupported`]. Signatures are written in DER.
///
/// ```
/// use hookguard::verify::{
///     EcdsaP256Scheme, Encoding, Field, Outgoing, Piece, Scheme, Sign, SignatureFormat,
///     SignedContent, TimestampFormat, WebhookRequest,
/// };
///
/// let scheme = EcdsaP256Scheme::builder("acme")
///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
///     .timestamp(Field::header("x-acme-timestamp"), TimestampFormat::UnixSeconds)
///     .content(SignedContent::new(vec![Piece::Timestamp, Piece::Body]))
///     .signing_key([7; 32]) // a sender's private scalar; receivers give `.public_key(..)`
///     .build()
///     .unwrap();
///
/// let now = time::OffsetDateTime::now_utc();
/// let headers = scheme.sign(&Outgoing::new(b"[]").timestamp(now)).unwrap();
/// let mut req = http::Request::post("/hooks/acme");
/// for (name, value) in headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(b"[]".to_vec()).unwrap();
/// assert!(scheme.verify(&WebhookRequest::from_request(&req), now).is_ok());
/// ```
#[derive(Clone)]
pub struct EcdsaP256Scheme {
    layout: Layout,
    keys: Vec<VerifyingKey>,
    signing: Option<SigningKey>,
}

impl fmt::Debug for EcdsaP256Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcdsaP256Scheme")
            .field("provider", &self.layout.provider)
            .field("public_keys", &self.keys.len())
            .field("signing_key", &self.signing.as_ref().map(|_| "[redacted]"))
            .field("signature", &self.layout.signature)
            .field("format", &self.layout.format)
            .field("encoding", &self.layout.encoding)
            .field("content", &self.layout.envelope.content)
            .field("timestamp", &self.layout.envelope.timestamp)
            .field("tolerance", &self.layout.envelope.tolerance)
            .field("id", &self.layout.envelope.id)
            .field("event", &self.layout.envelope.event)
            .field("url", &self.layout.envelope.url_shown())
            .finish()
    }
}

impl EcdsaP256Scheme {
    /// Starts describing a scheme. Defaults: signature in no header yet (set one),
    /// base64, body only, no timestamp, no id, no keys.
    ///
    /// ```
    /// use hookguard::verify::EcdsaP256Scheme;
    /// assert!(EcdsaP256Scheme::builder("acme").build().is_err()); // no key, no signature location
    /// ```
    pub fn builder(provider: impl Into<Cow<'static, str>>) -> EcdsaP256SchemeBuilder {
        EcdsaP256SchemeBuilder {
            layout: Layout::new(provider.into(), Encoding::Base64),
            keys: Vec::new(),
            signing: None,
            error: None,
        }
    }

    /// Adds a public key, DER SPKI or SEC1 (rotation: every key verifies).
    ///
    /// # Errors
    /// [`ConfigError::InvalidSecret`] when the bytes are not a P-256 public key.
    ///
    /// ```
    /// use hookguard::providers::sendgrid;
    /// let scheme = sendgrid::scheme("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==")
    ///     .unwrap()
    ///     .with_public_key(b"not a key");
    /// assert!(scheme.is_err());
    /// ```
    pub fn with_public_key(mut self, key: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        self.keys.push(verifying_key(key.as_ref())?);
        Ok(self)
    }

    /// Replaces the timestamp tolerance of a scheme that reads a timestamp (one without
    /// keeps `Tolerance::NONE`: nothing could be checked).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use hookguard::{providers::sendgrid, verify::{Scheme, Tolerance}};
    /// let scheme = sendgrid::scheme("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==")
    ///     .unwrap()
    ///     .with_tolerance(Tolerance::symmetric(Duration::from_secs(600)));
    /// assert_eq!(scheme.tolerance().past(), Some(Duration::from_secs(600)));
    /// ```
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Tolerance) -> Self {
        // Without a timestamp nothing could be checked: the scheme says so
        // (`Tolerance::NONE`) rather than report a window it never enforces.
        self.layout.envelope.retime(tolerance);
        self
    }

    /// How many public keys verify.
    ///
    /// ```
    /// use hookguard::providers::sendgrid;
    /// let scheme = sendgrid::scheme("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==").unwrap();
    /// assert_eq!(scheme.key_count(), 1);
    /// ```
    #[must_use]
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

fn verifying_key(bytes: &[u8]) -> Result<VerifyingKey, ConfigError> {
    VerifyingKey::from_public_key_der(bytes).or_else(|_| VerifyingKey::from_sec1_bytes(bytes)).map_err(|_| {
        ConfigError::InvalidSecret("a P-256 public key in DER SubjectPublicKeyInfo or SEC1 form")
    })
}

/// DER first; the fixed `r‖s` form only for 64 bytes that are not DER.
fn signature(bytes: &[u8]) -> Option<Signature> {
    match Signature::from_der(bytes) {
        Ok(sig) => Some(sig),
        Err(_) if bytes.len() == 64 => Signature::from_slice(bytes).ok(),
        Err(_) => None,
    }
}

impl Scheme for EcdsaP256Scheme {
    fn provider(&self) -> &str {
        &self.layout.provider
    }

    fn tolerance(&self) -> Tolerance {
        self.layout.envelope.tolerance
    }

    fn verify<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        now: OffsetDateTime,
    ) -> Result<Verified<'a>, Rejection> {
        self.layout.verify(req, now, self.keys.len(), |index, pieces, sig| {
            let (Some(key), Some(sig)) = (self.keys.get(index), signature(sig)) else {
                return false;
            };
            // Valid in four forms (DER or `r‖s`, with `s` or `n − s`, all accepted, as
            // senders do not normalize `s`): the fingerprint is taken of the signed
            // content, so a resend in another form is still the same delivery.
            key.multipart_verify(pieces, &sig).is_ok()
        })
    }
}

impl Sign for EcdsaP256Scheme {
    /// Signs (DER) with the private key given to [`EcdsaP256SchemeBuilder::signing_key`].
    ///
    /// # Errors
    /// [`SignError::Unsupported`] for a scheme that holds only public keys.
    fn sign(&self, msg: &Outgoing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let key =
            self.signing.as_ref().ok_or(SignError::Unsupported("a public key verifies but cannot sign"))?;
        self.layout.sign(msg, |pieces| {
            let sig: Signature =
                key.try_multipart_sign(pieces).map_err(|_| SignError::Unsupported("ECDSA signing failed"))?;
            Ok(sig.to_der().as_bytes().to_vec())
        })
    }
}

/// Builder for [`EcdsaP256Scheme`]; see there for an example. Errors (a bad key, an
/// inconsistent description) are reported by [`build`](Self::build).
///
/// ```
/// use hookguard::{ConfigError, verify::{EcdsaP256Scheme, Encoding, Field, SignatureFormat}};
///
/// let builder = EcdsaP256Scheme::builder("acme")
///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
///     .public_key(b"not a key"); // no error yet
/// assert!(matches!(builder.build(), Err(ConfigError::InvalidSecret(_))));
/// ```
#[must_use]
pub struct EcdsaP256SchemeBuilder {
    layout: Layout,
    keys: Vec<VerifyingKey>,
    signing: Option<SigningKey>,
    error: Option<ConfigError>,
}

impl fmt::Debug for EcdsaP256SchemeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcdsaP256SchemeBuilder")
            .field("layout", &self.layout)
            .field("keys", &self.keys.len())
            .field("signing_key", &self.signing.as_ref().map(|_| "[redacted]"))
            .field("error", &self.error)
            .finish()
    }
}

impl EcdsaP256SchemeBuilder {
    layout_builder_methods!();

    /// Adds a public key (DER SPKI or SEC1); every key added verifies.
    ///
    /// ```
    /// use hookguard::{providers::sendgrid, verify::{EcdsaP256Scheme, Encoding, Field, Scheme, SignatureFormat}};
    /// use hookguard::verify::{TimestampFormat, WebhookRequest};
    ///
    /// // SendGrid's event webhook, while rotating from the old key to a new one.
    /// let new = sendgrid::public_key("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==").unwrap();
    /// let old = sendgrid::public_key("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==").unwrap(); // DER SubjectPublicKeyInfo
    /// let describe = || {
    ///     EcdsaP256Scheme::builder("sendgrid")
    ///         .signature(Field::header("x-twilio-email-event-webhook-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
    ///         .timestamp(Field::header("x-twilio-email-event-webhook-timestamp"), TimestampFormat::UnixSeconds)
    ///         .content(sendgrid::CONTENT)
    /// };
    /// let scheme = describe().public_key(&new).public_key(&old).build().unwrap();
    /// // Signed with the old key.
    /// let req = http::Request::post("/hooks/sendgrid")
    ///     .header("x-twilio-email-event-webhook-signature", "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=")
    ///     .header("x-twilio-email-event-webhook-timestamp", "1588788367")
    ///     .body(br#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#.to_vec())
    ///     .unwrap();
    /// let now = time::OffsetDateTime::now_utc();
    /// assert_eq!(scheme.verify(&WebhookRequest::from_request(&req), now).unwrap().key_index(), 1);
    /// // The same key as a SEC1 point (`04‖x‖y`, the DER's last 65 bytes).
    /// let sec1 = describe().public_key(&old[old.len() - 65..]).build().unwrap();
    /// assert!(sec1.verify(&WebhookRequest::from_request(&req), now).is_ok());
    /// ```
    pub fn public_key(mut self, key: impl AsRef<[u8]>) -> Self {
        match verifying_key(key.as_ref()) {
            Ok(key) => self.keys.push(key),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Sets the private key that signs: the 32-byte big-endian scalar. Its public half
    /// is added to the keys that verify.
    ///
    /// ```
    /// use hookguard::{providers::sendgrid, verify::{EcdsaP256Scheme, Encoding, Field, Outgoing, Scheme, Sign}};
    /// use hookguard::verify::{SignatureFormat, TimestampFormat, WebhookRequest};
    ///
    /// let describe = || {
    ///     EcdsaP256Scheme::builder("sendgrid")
    ///         .signature(Field::header("x-twilio-email-event-webhook-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
    ///         .timestamp(Field::header("x-twilio-email-event-webhook-timestamp"), TimestampFormat::UnixSeconds)
    ///         .content(sendgrid::CONTENT)
    /// };
    /// // The private key of SendGrid's documented example delivery (a test key).
    /// let scalar = const_hex::decode("442666004487d0dc53dccc977e1cccadf1a2fe0062f9bd3f7afbacd07674d5ed").unwrap();
    /// let scheme = describe().signing_key(&scalar).build().unwrap();
    /// // Its public half verifies SendGrid's delivery...
    /// let req = http::Request::post("/hooks/sendgrid")
    ///     .header("x-twilio-email-event-webhook-signature", "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=")
    ///     .header("x-twilio-email-event-webhook-timestamp", "1588788367")
    ///     .body(br#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#.to_vec())
    ///     .unwrap();
    /// let now = time::OffsetDateTime::now_utc();
    /// assert!(scheme.verify(&WebhookRequest::from_request(&req), now).is_ok());
    /// // ...and what the scheme signs.
    /// let msg = Outgoing::new(b"[]").timestamp(now);
    /// let mut signed = http::Request::post("/hooks/sendgrid");
    /// for (name, value) in scheme.sign(&msg).unwrap() {
    ///     signed = signed.header(name, value);
    /// }
    /// let signed = signed.body(b"[]".to_vec()).unwrap();
    /// assert!(scheme.verify(&WebhookRequest::from_request(&signed), now).is_ok());
    /// // Zero is not a private key.
    /// assert!(describe().signing_key([0; 32]).build().is_err());
    /// ```
    pub fn signing_key(mut self, scalar: impl AsRef<[u8]>) -> Self {
        match SigningKey::from_slice(scalar.as_ref()) {
            Ok(key) => {
                self.keys.push(*key.verifying_key());
                self.signing = Some(key);
            }
            Err(_) => {
                self.error.get_or_insert(ConfigError::InvalidSecret(
                    "a P-256 private key is a 32-byte scalar between 1 and the group order",
                ));
            }
        }
        self
    }

    /// Checks the description and builds the scheme.
    ///
    /// # Errors
    /// [`ConfigError::InvalidSecret`] for a bad key, [`ConfigError::NoSecret`] without
    /// any, [`ConfigError::Invalid`] when the pieces do not fit.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::{ConfigError, verify::{EcdsaP256Scheme, Encoding, Field, SignatureFormat, Tolerance}};
    ///
    /// let described = || {
    ///     EcdsaP256Scheme::builder("acme")
    ///         .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
    /// };
    /// assert!(described().signing_key([7; 32]).build().is_ok());
    /// assert_eq!(described().build().unwrap_err(), ConfigError::NoSecret);
    /// // A tolerance with no timestamp to apply it to.
    /// let untimed = described().tolerance(Tolerance::symmetric(Duration::from_secs(300))).signing_key([7; 32]).build();
    /// assert!(matches!(untimed, Err(ConfigError::Invalid(_))));
    /// // No signature location.
    /// assert!(matches!(EcdsaP256Scheme::builder("acme").signing_key([7; 32]).build(), Err(ConfigError::Invalid(_))));
    /// ```
    pub fn build(self) -> Result<EcdsaP256Scheme, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.keys.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        self.layout.check()?;
        Ok(EcdsaP256Scheme { layout: self.layout, keys: self.keys, signing: self.signing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Piece, Reason};

    const SIG: Field = Field::Header(HeaderName::from_static("x-sig"));

    fn builder() -> EcdsaP256SchemeBuilder {
        EcdsaP256Scheme::builder("acme")
            .signature(SIG, SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
            .content(SignedContent::from_static(&[Piece::Body]))
    }

    /// Without a timestamp no window can be checked: `with_tolerance` leaves the scheme
    /// saying so (as `HmacScheme::with_tolerance` does).
    #[test]
    fn a_tolerance_without_a_timestamp_is_none() {
        let untimed = builder()
            .signing_key([7; 32])
            .build()
            .unwrap()
            .with_tolerance(crate::verify::Tolerance::symmetric(std::time::Duration::from_secs(60)));
        assert_eq!(untimed.tolerance(), crate::verify::Tolerance::NONE);
    }

    fn request(headers: Vec<(HeaderName, HeaderValue)>, body: &[u8]) -> http::Request<Vec<u8>> {
        let mut req = http::Request::post("/");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.body(body.to_vec()).unwrap()
    }

    #[test]
    fn round_trip_der_and_fixed_and_rotation() {
        let a = builder().signing_key([1; 32]).build().unwrap();
        let b = builder().signing_key([2; 32]).build().unwrap();
        let now = OffsetDateTime::UNIX_EPOCH;
        let headers = a.sign(&Outgoing::new(b"body")).unwrap();
        let req = request(headers.clone(), b"body");
        assert!(a.verify(&WebhookRequest::from_request(&req), now).is_ok());
        assert_eq!(
            b.verify(&WebhookRequest::from_request(&req), now).unwrap_err().reason(),
            Reason::SignatureMismatch
        );

        // b's verifier with a's public key added (SEC1 form) verifies at index 2.
        let a_pub = SigningKey::from_slice(&[1; 32]).unwrap().verifying_key().to_sec1_point(false);
        let both = builder().signing_key([2; 32]).public_key(a_pub.as_bytes()).build().unwrap();
        assert_eq!(both.verify(&WebhookRequest::from_request(&req), now).unwrap().key_index(), 1);

        // The same signature in fixed r‖s form.
        let der = Encoding::Base64.decode_vec(headers[0].1.as_bytes()).unwrap();
        let fixed = Signature::from_der(&der).unwrap().to_bytes();
        let value = HeaderValue::from_str(&Encoding::Base64.encode(&fixed)).unwrap();
        let req = request(vec![(headers[0].0.clone(), value)], b"body");
        assert!(a.verify(&WebhookRequest::from_request(&req), now).is_ok());
    }

    /// One signature, four valid forms (DER or `r‖s`, `s` or `n − s`): one fingerprint,
    /// so a delivery re-sent in another form is a copy, not a new delivery.
    #[test]
    fn every_form_of_one_signature_has_one_fingerprint() {
        let a = builder().signing_key([1; 32]).build().unwrap();
        let now = OffsetDateTime::UNIX_EPOCH;
        let headers = a.sign(&Outgoing::new(b"body")).unwrap();
        let der = Encoding::Base64.decode_vec(headers[0].1.as_bytes()).unwrap();
        let sig = Signature::from_der(&der).unwrap();
        let (r, s) = sig.split_scalars();
        let flipped = Signature::from_scalars(r, -*s).unwrap();
        let forms: Vec<Vec<u8>> = vec![
            sig.to_der().as_bytes().to_vec(),
            sig.to_bytes().to_vec(),
            flipped.to_der().as_bytes().to_vec(),
            flipped.to_bytes().to_vec(),
        ];
        let prints: Vec<[u8; 32]> = forms
            .iter()
            .map(|form| {
                let value = HeaderValue::from_str(&Encoding::Base64.encode(form)).unwrap();
                let req = request(vec![(headers[0].0.clone(), value)], b"body");
                *a.verify(&WebhookRequest::from_request(&req), now)
                    .expect("every form verifies")
                    .fingerprint()
            })
            .collect();
        assert!(prints.iter().all(|p| *p == prints[0]), "{prints:?}");
    }

    #[test]
    fn bad_keys_and_signatures() {
        assert!(builder().public_key(b"nope").build().is_err());
        assert!(builder().signing_key([0; 32]).build().is_err());
        assert!(matches!(builder().build(), Err(ConfigError::NoSecret)));
        let a = builder().signing_key([1; 32]).build().unwrap();
        for (name, sig, want) in [
            ("garbage", "AAAA", Reason::SignatureMismatch),
            ("not base64", "***", Reason::MalformedSignature),
            ("empty", "", Reason::MissingSignature),
        ] {
            let req = http::Request::post("/").header("x-sig", sig).body(b"body".to_vec()).unwrap();
            let err = a.verify(&WebhookRequest::from_request(&req), OffsetDateTime::UNIX_EPOCH).unwrap_err();
            assert_eq!(err.reason(), want, "case {name}");
        }
    }
}
