//! Ed25519 signatures (RFC 8032), described like [`HmacScheme`](super::HmacScheme):
//! the same [`Field`], [`SignatureFormat`], [`Encoding`], [`SignedContent`] and
//! [`Tolerance`] parts, with public keys instead of secrets.

use std::{borrow::Cow, fmt};

use ed25519_dalek::{
    Signature, SigningKey, VerifyingKey,
    ed25519::signature::{MultipartSigner as _, MultipartVerifier as _},
};
use http::{HeaderName, HeaderValue};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{
    Encoding, Outgoing, Rejection, Scheme, Sign, SignError, Tolerance, Verified, WebhookRequest,
    asymmetric::{Layout, layout_builder_methods},
};
#[allow(unused_imports)] // for intra-doc links
use super::{Field, SignatureFormat, SignedContent};
use crate::error::ConfigError;

/// Length of an Ed25519 public key and of a private key seed, in bytes.
///
/// ```
/// use hookguard::{providers::discord, verify::ED25519_KEY_LEN};
/// assert_eq!(ED25519_KEY_LEN, 32);
/// let key: [u8; ED25519_KEY_LEN] = discord::public_key("c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6").unwrap();
/// assert_eq!(key[0], 0xc5);
/// ```
pub const ED25519_KEY_LEN: usize = 32;

/// An Ed25519 signature scheme described by data: which header carries the signature,
/// in which format and encoding, what is signed, where the timestamp, delivery id and
/// event type come from, and the tolerance. Standard Webhooks v1a and Discord are
/// instances of it; build your own with [`Ed25519Scheme::builder`].
///
/// Verifying needs only public keys (several, for rotation: every key verifies). A
/// scheme given a private key with [`Ed25519SchemeBuilder::signing_key`] also signs
/// ([`Sign`]) and verifies with that key's public half; without one, [`Sign`] answers
/// [`SignError::Unsupported`].
///
/// The signed pieces are handed to Ed25519 one by one, never copied into one buffer.
/// Public keys that are small-order points ("weak" keys, under which forgeries are
/// easy) are refused when the scheme is built.
///
/// ```
/// use std::time::Duration;
/// use hookguard::verify::{
///     Ed25519Scheme, Encoding, Field, Outgoing, Piece, Scheme, Sign, SignatureFormat,
///     SignedContent, TimestampFormat, Tolerance, WebhookRequest,
/// };
///
/// let scheme = Ed25519Scheme::builder("acme")
///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
///     .timestamp(Field::header("x-acme-timestamp"), TimestampFormat::UnixSeconds)
///     .tolerance(Tolerance::symmetric(Duration::from_secs(300)))
///     .content(SignedContent::new(vec![Piece::Timestamp, Piece::Literal(b"."), Piece::Body]))
///     .signing_key([7; 32]) // a sender's private key seed; receivers give `.public_key(..)`
///     .build()
///     .unwrap();
///
/// let now = time::OffsetDateTime::now_utc();
/// let headers = scheme.sign(&Outgoing::new(b"{}").timestamp(now)).unwrap();
/// let mut req = http::Request::post("/hooks/acme");
/// for (name, value) in headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(b"{}".to_vec()).unwrap();
/// assert!(scheme.verify(&WebhookRequest::from_request(&req), now).is_ok());
/// ```
#[derive(Clone)]
pub struct Ed25519Scheme {
    layout: Layout,
    keys: Vec<VerifyingKey>,
    signing: Option<SigningKey>,
}

impl fmt::Debug for Ed25519Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: Vec<String> = self.keys.iter().map(|k| const_hex::encode(k.as_bytes())).collect();
        f.debug_struct("Ed25519Scheme")
            .field("provider", &self.layout.provider)
            .field("public_keys", &hex)
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

impl Ed25519Scheme {
    /// Starts describing a scheme. Defaults: signature in no header yet (set one),
    /// base64, body only, no timestamp, no id, no keys.
    ///
    /// ```
    /// use hookguard::verify::Ed25519Scheme;
    /// assert!(Ed25519Scheme::builder("acme").build().is_err()); // no key, no signature location
    /// ```
    pub fn builder(provider: impl Into<Cow<'static, str>>) -> Ed25519SchemeBuilder {
        Ed25519SchemeBuilder {
            layout: Layout::new(provider.into(), Encoding::Base64),
            keys: Vec::new(),
            signing: None,
            error: None,
        }
    }

    /// Adds a public key (rotation: every key verifies).
    ///
    /// # Errors
    /// [`ConfigError::InvalidSecret`] unless `key` is 32 bytes encoding a valid,
    /// non-weak curve point.
    ///
    /// ```
    /// use hookguard::providers::discord;
    /// let scheme = discord::scheme("c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6")
    ///     .unwrap()
    ///     .with_public_key(const_hex::decode("6653787a0edd492aa2d26a17f61414937a2bacea2e2b74154129496b6e3c73f8").unwrap())
    ///     .unwrap();
    /// assert_eq!(scheme.key_count(), 2);
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
    /// use hookguard::{providers::standard_webhooks_v1a, verify::{Scheme, Tolerance}};
    /// let scheme = standard_webhooks_v1a::scheme("whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=")
    ///     .unwrap()
    ///     .with_tolerance(Tolerance::symmetric(Duration::from_secs(60)));
    /// assert_eq!(scheme.tolerance().past(), Some(Duration::from_secs(60)));
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
    /// use hookguard::providers::standard_webhooks_v1a;
    /// let scheme = standard_webhooks_v1a::scheme("whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=").unwrap();
    /// assert_eq!(scheme.key_count(), 1);
    /// ```
    #[must_use]
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The public keys, in the order they were added (the signing key's public half
    /// included).
    ///
    /// ```
    /// use hookguard::verify::{Ed25519Scheme, Field, SignatureFormat, Encoding};
    /// let scheme = Ed25519Scheme::builder("acme")
    ///     .signature(Field::header("x-sig"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .signing_key([1; 32])
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(scheme.public_keys().count(), 1);
    /// ```
    pub fn public_keys(&self) -> impl Iterator<Item = [u8; ED25519_KEY_LEN]> + '_ {
        self.keys.iter().map(VerifyingKey::to_bytes)
    }
}

fn verifying_key(bytes: &[u8]) -> Result<VerifyingKey, ConfigError> {
    const WHY: &str = "an Ed25519 public key is 32 bytes encoding a valid, non-weak curve point";
    let bytes: &[u8; ED25519_KEY_LEN] = bytes.try_into().map_err(|_| ConfigError::InvalidSecret(WHY))?;
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| ConfigError::InvalidSecret(WHY))?;
    if key.is_weak() {
        return Err(ConfigError::InvalidSecret(WHY));
    }
    Ok(key)
}

fn signing_key(bytes: &[u8]) -> Result<SigningKey, ConfigError> {
    match bytes.len() {
        ED25519_KEY_LEN => {
            let mut seed = Zeroizing::new([0_u8; ED25519_KEY_LEN]);
            seed.copy_from_slice(bytes);
            Ok(SigningKey::from_bytes(&seed))
        }
        64 => {
            let mut pair = Zeroizing::new([0_u8; 64]);
            pair.copy_from_slice(bytes);
            SigningKey::from_keypair_bytes(&pair).map_err(|_| {
                ConfigError::InvalidSecret("the second half of an Ed25519 key pair must be its public key")
            })
        }
        _ => Err(ConfigError::InvalidSecret(
            "an Ed25519 private key is a 32-byte seed, or 64 bytes of seed and public key",
        )),
    }
}

impl Scheme for Ed25519Scheme {
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
        self.layout.verify(req, now, self.keys.len(), |index, pieces, signature| {
            let (Some(key), Ok(signature)) = (self.keys.get(index), Signature::from_slice(signature)) else {
                return false;
            };
            key.multipart_verify(pieces, &signature).is_ok()
        })
    }
}

impl Sign for Ed25519Scheme {
    /// Signs with the private key given to [`Ed25519SchemeBuilder::signing_key`].
    ///
    /// # Errors
    /// [`SignError::Unsupported`] for a scheme that holds only public keys.
    fn sign(&self, msg: &Outgoing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let key =
            self.signing.as_ref().ok_or(SignError::Unsupported("a public key verifies but cannot sign"))?;
        self.layout.sign(msg, |pieces| {
            key.try_multipart_sign(pieces)
                .map(|s| s.to_bytes().to_vec())
                .map_err(|_| SignError::Unsupported("Ed25519 signing failed"))
        })
    }
}

/// Builder for [`Ed25519Scheme`]; see there for an example. Errors (a bad key, an
/// inconsistent description) are reported by [`build`](Self::build).
///
/// ```
/// use hookguard::{ConfigError, verify::{Ed25519Scheme, Encoding, Field, SignatureFormat}};
///
/// let builder = Ed25519Scheme::builder("acme")
///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
///     .public_key([0xc5; 31]); // one byte short: no error yet
/// assert!(matches!(builder.build(), Err(ConfigError::InvalidSecret(_))));
/// ```
#[must_use]
pub struct Ed25519SchemeBuilder {
    layout: Layout,
    keys: Vec<VerifyingKey>,
    signing: Option<SigningKey>,
    error: Option<ConfigError>,
}

impl fmt::Debug for Ed25519SchemeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519SchemeBuilder")
            .field("layout", &self.layout)
            .field("keys", &self.keys.len())
            .field("signing_key", &self.signing.as_ref().map(|_| "[redacted]"))
            .field("error", &self.error)
            .finish()
    }
}

impl Ed25519SchemeBuilder {
    layout_builder_methods!();

    /// Adds a public key (32 raw bytes); every key added verifies.
    ///
    /// ```
    /// use hookguard::{providers::standard_webhooks, verify::{Ed25519Scheme, Encoding, Field, Scheme, SignatureFormat}};
    /// use hookguard::verify::{TimestampFormat, WebhookRequest};
    ///
    /// // Standard Webhooks v1a, while rotating from the old key to a new one.
    /// let old = const_hex::decode("6653787a0edd492aa2d26a17f61414937a2bacea2e2b74154129496b6e3c73f8").unwrap();
    /// let new = const_hex::decode("c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6").unwrap();
    /// let scheme = Ed25519Scheme::builder("standard-webhooks")
    ///     .signature(Field::header("webhook-signature"), SignatureFormat::Versioned { version: "v1a" }, Encoding::Base64)
    ///     .id(Field::header("webhook-id"))
    ///     .timestamp(Field::header("webhook-timestamp"), TimestampFormat::UnixSeconds)
    ///     .content(standard_webhooks::CONTENT)
    ///     .public_key(new)
    ///     .public_key(old)
    ///     .build()
    ///     .unwrap();
    /// // Signed with the old key.
    /// let req = http::Request::post("/hooks")
    ///     .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
    ///     .header("webhook-timestamp", "1614265330")
    ///     .header("webhook-signature", "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==")
    ///     .body(br#"{"test": 2432232314}"#.to_vec())
    ///     .unwrap();
    /// let now = time::OffsetDateTime::from_unix_timestamp(1614265330).unwrap();
    /// let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
    /// assert_eq!(verified.key_index(), 1);
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

    /// Sets the private key that signs: a 32-byte seed (RFC 8032), or 64 bytes of seed
    /// followed by the public key (checked to match). Its public half is added to the
    /// keys that verify. The bytes are copied into key material zeroized on drop.
    ///
    /// ```
    /// use hookguard::{providers::standard_webhooks, verify::{Ed25519Scheme, Encoding, Field, Outgoing, Sign, SignatureFormat}};
    /// use hookguard::verify::TimestampFormat;
    ///
    /// // A sender of Standard Webhooks v1a, with the specification's test key.
    /// let seed = b"TESTSIGNINGKEYDONOTUSETHISFORANY";
    /// let describe = || {
    ///     Ed25519Scheme::builder("standard-webhooks")
    ///         .signature(Field::header("webhook-signature"), SignatureFormat::Versioned { version: "v1a" }, Encoding::Base64)
    ///         .id(Field::header("webhook-id"))
    ///         .timestamp(Field::header("webhook-timestamp"), TimestampFormat::UnixSeconds)
    ///         .content(standard_webhooks::CONTENT)
    /// };
    /// let scheme = describe().signing_key(seed).build().unwrap();
    /// // Its public half verifies too.
    /// assert_eq!(const_hex::encode(scheme.public_keys().next().unwrap()), "6653787a0edd492aa2d26a17f61414937a2bacea2e2b74154129496b6e3c73f8");
    /// // Ed25519 is deterministic: the specification's signature, byte for byte.
    /// let at = time::OffsetDateTime::from_unix_timestamp(1614265330).unwrap();
    /// let msg = Outgoing::new(br#"{"test": 2432232314}"#).id("msg_p5jXN8AQM9LWM0D4loKWxJek").timestamp(at);
    /// let (_, signature) = scheme.sign(&msg).unwrap().into_iter().find(|(name, _)| name == "webhook-signature").unwrap();
    /// assert_eq!(signature, "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==");
    ///
    /// // 64 bytes: the seed, then its public key (checked).
    /// let pair = [seed.as_slice(), &scheme.public_keys().next().unwrap()].concat();
    /// assert!(describe().signing_key(&pair).build().is_ok());
    /// assert!(describe().signing_key([1; 64]).build().is_err());
    /// ```
    pub fn signing_key(mut self, key: impl AsRef<[u8]>) -> Self {
        match signing_key(key.as_ref()) {
            Ok(key) => {
                self.keys.push(key.verifying_key());
                self.signing = Some(key);
            }
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Checks the description and builds the scheme.
    ///
    /// # Errors
    /// [`ConfigError::InvalidSecret`] for a bad key, [`ConfigError::NoSecret`] without
    /// any, [`ConfigError::Invalid`] when the pieces do not fit (a signed timestamp or
    /// tolerance with no timestamp source, a signed id with no id source, no signature
    /// location).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::{ConfigError, verify::{Ed25519Scheme, Encoding, Field, SignatureFormat, Tolerance}};
    ///
    /// let described = || {
    ///     Ed25519Scheme::builder("acme")
    ///         .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
    /// };
    /// assert!(described().signing_key([7; 32]).build().is_ok());
    /// assert_eq!(described().build().unwrap_err(), ConfigError::NoSecret);
    /// // A tolerance with no timestamp to apply it to.
    /// let untimed = described().tolerance(Tolerance::symmetric(Duration::from_secs(300))).signing_key([7; 32]).build();
    /// assert!(matches!(untimed, Err(ConfigError::Invalid(_))));
    /// // No signature location.
    /// assert!(matches!(Ed25519Scheme::builder("acme").signing_key([7; 32]).build(), Err(ConfigError::Invalid(_))));
    /// ```
    pub fn build(self) -> Result<Ed25519Scheme, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.keys.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        self.layout.check()?;
        Ok(Ed25519Scheme { layout: self.layout, keys: self.keys, signing: self.signing })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::verify::{Piece, Reason, SignedContent, TimestampFormat};

    const SIG: Field = Field::Header(HeaderName::from_static("x-sig"));
    const TS: Field = Field::Header(HeaderName::from_static("x-ts"));
    const CONTENT: SignedContent =
        SignedContent::from_static(&[Piece::Timestamp, Piece::Literal(b":"), Piece::Body]);

    fn builder() -> Ed25519SchemeBuilder {
        Ed25519Scheme::builder("acme")
            .signature(SIG, SignatureFormat::Versioned { version: "v1a" }, Encoding::Base64)
            .timestamp(TS, TimestampFormat::UnixSeconds)
            .tolerance(Tolerance::symmetric(Duration::from_secs(60)))
            .content(CONTENT)
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn request(headers: Vec<(HeaderName, HeaderValue)>, body: &[u8]) -> http::Request<Vec<u8>> {
        let mut req = http::Request::post("/");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.body(body.to_vec()).unwrap()
    }

    #[test]
    fn round_trip_and_rotation() {
        let old = builder().signing_key([1; 32]).build().unwrap();
        let new = builder().signing_key([2; 32]).build().unwrap();
        let old_pub = old.public_keys().next().unwrap();
        let verifier =
            builder().public_key(new.public_keys().next().unwrap()).public_key(old_pub).build().unwrap();
        let now = at(1_700_000_000);
        let req = request(old.sign(&Outgoing::new(b"hi").timestamp(now)).unwrap(), b"hi");
        let v = verifier.verify(&WebhookRequest::from_request(&req), now).unwrap();
        assert_eq!(v.key_index(), 1);
        assert_eq!(v.timestamp(), Some(now));
        // The wrong key alone rejects.
        let err = new.verify(&WebhookRequest::from_request(&req), now).unwrap_err();
        assert_eq!(err.reason(), Reason::SignatureMismatch);
        // A changed body rejects.
        let mut tampered = req.clone();
        *tampered.body_mut() = b"ho".to_vec();
        let err = old.verify(&WebhookRequest::from_request(&tampered), now).unwrap_err();
        assert_eq!(err.reason(), Reason::SignatureMismatch);
    }

    /// Without a timestamp no window can be checked: `with_tolerance` leaves the scheme
    /// saying so (as `HmacScheme::with_tolerance` does).
    #[test]
    fn a_tolerance_without_a_timestamp_is_none() {
        let untimed = Ed25519Scheme::builder("acme")
            .signature(SIG, SignatureFormat::Versioned { version: "v1a" }, Encoding::Base64)
            .content(crate::verify::SignedContent::from_static(&[crate::verify::Piece::Body]))
            .signing_key([5; 32])
            .build()
            .unwrap()
            .with_tolerance(Tolerance::symmetric(Duration::from_secs(60)));
        assert_eq!(untimed.tolerance(), Tolerance::NONE);
        let timed = builder().signing_key([5; 32]).build().unwrap();
        let wider = timed.with_tolerance(Tolerance::symmetric(Duration::from_secs(600)));
        assert_eq!(wider.tolerance().past(), Some(Duration::from_secs(600)));
    }

    #[test]
    fn tolerance_edges() {
        let scheme = builder().signing_key([3; 32]).build().unwrap();
        let signed = at(1_700_000_000);
        let req = request(scheme.sign(&Outgoing::new(b"x").timestamp(signed)).unwrap(), b"x");
        let view = WebhookRequest::from_request(&req);
        assert!(scheme.verify(&view, at(1_700_000_060)).is_ok());
        assert!(scheme.verify(&view, at(1_699_999_940)).is_ok());
        assert_eq!(scheme.verify(&view, at(1_700_000_061)).unwrap_err().reason(), Reason::TimestampTooOld);
        assert_eq!(scheme.verify(&view, at(1_699_999_939)).unwrap_err().reason(), Reason::TimestampInFuture);
    }

    #[test]
    fn bad_inputs_are_rejections_not_panics() {
        let scheme = builder().signing_key([4; 32]).build().unwrap();
        let cases: &[(&str, &str, Reason)] = &[
            ("short signature", "v1a,AAAA", Reason::SignatureMismatch),
            ("not base64", "v1a,!!!!", Reason::MalformedSignature),
            ("other version only", "v1,AAAA", Reason::MissingSignature),
            ("huge signature", &format!("v1a,{}", "A".repeat(4000)), Reason::SignatureMismatch),
        ];
        for (name, sig, want) in cases {
            let req = http::Request::post("/")
                .header("x-sig", *sig)
                .header("x-ts", "1700000000")
                .body(Vec::new())
                .unwrap();
            let err = scheme.verify(&WebhookRequest::from_request(&req), at(1_700_000_000)).unwrap_err();
            assert_eq!(err.reason(), *want, "case {name}");
        }
    }

    #[test]
    fn keys_are_checked() {
        let mut identity = [0; 32];
        identity[0] = 1;
        let cases: Vec<(&str, Ed25519SchemeBuilder)> = vec![
            ("no key", builder()),
            ("short public key", builder().public_key([1; 31])),
            ("weak public key (identity point)", builder().public_key(identity)),
            ("short private key", builder().signing_key([1; 16])),
            ("mismatched pair", builder().signing_key([1; 64])),
        ];
        for (name, b) in cases {
            assert!(b.build().is_err(), "case {name}");
        }
        assert!(builder().public_key(SW_PUBLIC).build().is_ok());
        let no_ts = Ed25519Scheme::builder("x")
            .signature(SIG, SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
            .content(CONTENT)
            .signing_key([1; 32])
            .build();
        assert!(matches!(no_ts, Err(ConfigError::Invalid(_))));
    }

    /// The public key of the Standard Webhooks v1a test seed.
    const SW_PUBLIC: [u8; 32] = [
        0x66, 0x53, 0x78, 0x7a, 0x0e, 0xdd, 0x49, 0x2a, 0xa2, 0xd2, 0x6a, 0x17, 0xf6, 0x14, 0x14, 0x93, 0x7a,
        0x2b, 0xac, 0xea, 0x2e, 0x2b, 0x74, 0x15, 0x41, 0x29, 0x49, 0x6b, 0x6e, 0x3c, 0x73, 0xf8,
    ];

    #[test]
    fn seed_gives_known_public_key() {
        let scheme = builder().signing_key(b"TESTSIGNINGKEYDONOTUSETHISFORANY").build().unwrap();
        assert_eq!(scheme.public_keys().next(), Some(SW_PUBLIC));
    }

    #[test]
    fn verify_only_cannot_sign_and_debug_is_redacted() {
        let signer = builder().signing_key([9; 32]).build().unwrap();
        let verifier = builder().public_key(signer.public_keys().next().unwrap()).build().unwrap();
        assert!(matches!(
            verifier.sign(&Outgoing::new(b"").timestamp(at(0))),
            Err(SignError::Unsupported(_))
        ));
        let shown = format!("{signer:?}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!shown.contains(&const_hex::encode([9; 32])), "{shown}");
    }
}
