//! The configurable HMAC scheme every HMAC preset is an instance of.

use std::{borrow::Cow, fmt};

use http::{HeaderName, HeaderValue};
use subtle::Choice;
use time::OffsetDateTime;

use super::{
    Algorithm, Construction, Detail, Encoding, Field, KeyedMac, Outgoing, Reason, Rejection, Scheme, Sign,
    SignError, SignatureFormat, SignedContent, Tag, TimestampFormat, Tolerance, Verified, WebhookRequest,
    envelope::{Envelope, Scanned, first_header, first_present_values, is_signature_location},
    header_value,
    signature::Candidates,
};
use crate::{error::ConfigError, secret::Secret};

/// How a secret's text becomes the HMAC key.
///
/// ```
/// use hookguard::verify::KeyFormat;
/// let key = KeyFormat::StandardWebhooks.decode(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
/// assert_eq!(key.expose().len(), 24);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KeyFormat {
    /// The secret's bytes are the key (Stripe, whose `whsec_…` is used verbatim; GitHub;
    /// most providers).
    #[default]
    Raw,
    /// Standard Webhooks / Svix: strip `whsec_`, base64-decode the rest.
    StandardWebhooks,
}

impl KeyFormat {
    /// Turns secret text into key bytes.
    ///
    /// # Errors
    /// [`ConfigError`] for an empty secret, or one that does not decode.
    ///
    /// ```
    /// use hookguard::verify::KeyFormat;
    /// assert_eq!(KeyFormat::Raw.decode(b"whsec_abc").unwrap().expose(), b"whsec_abc");
    /// assert_eq!(KeyFormat::StandardWebhooks.decode(b"whsec_aGk=").unwrap().expose(), b"hi");
    /// assert!(KeyFormat::StandardWebhooks.decode(b"whsec_not base64!").is_err());
    /// assert!(KeyFormat::Raw.decode(b"").is_err());
    /// ```
    pub fn decode(self, secret: &[u8]) -> Result<Secret, ConfigError> {
        match self {
            Self::Raw => Secret::new(secret),
            Self::StandardWebhooks => {
                let text = std::str::from_utf8(secret)
                    .map_err(|_| ConfigError::InvalidSecret("a `whsec_` secret must be text"))?;
                Secret::from_standard_webhooks(text)
            }
        }
    }
}

/// An HMAC signature scheme described by data: which header carries the signature, in
/// which format and encoding, what is signed, where the timestamp, delivery id and event
/// type come from, and the tolerance. Every HMAC provider preset is one of these; build
/// your own with [`HmacScheme::builder`] for a provider that is not listed.
///
/// Keys are absorbed once at construction (one keyed state per secret); verifying clones
/// the keyed state, feeds the signed pieces without concatenating them, decodes the
/// received signatures into stack buffers and compares every (secret × signature) pair in
/// constant time. The success path does not allocate unless a value comes from a JSON
/// body with escapes in it.
///
/// ```
/// use std::time::Duration;
/// use hookguard::verify::{
///     Algorithm, Encoding, Field, HmacScheme, Outgoing, Piece, Scheme, Sign, SignatureFormat,
///     SignedContent, TimestampFormat, Tolerance, WebhookRequest,
/// };
///
/// let scheme = HmacScheme::builder("acme", Algorithm::Sha256)
///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "sha256=" }, Encoding::Hex)
///     .timestamp(Field::header("x-acme-timestamp"), TimestampFormat::UnixSeconds)
///     .tolerance(Tolerance::symmetric(Duration::from_secs(300)))
///     .content(SignedContent::new(vec![Piece::Timestamp, Piece::Literal(b"."), Piece::Body]))
///     .id(Field::header("x-acme-delivery"))
///     .secret("s3cr3t")
///     .build()
///     .unwrap();
///
/// let now = time::OffsetDateTime::now_utc();
/// let headers = scheme.sign(&Outgoing::new(b"{}").timestamp(now)).unwrap();
/// let mut req = http::Request::post("/hooks/acme").header("x-acme-delivery", "d-1");
/// for (name, value) in headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(b"{}".to_vec()).unwrap();
/// let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
/// assert_eq!(verified.id(), Some("d-1"));
/// ```
#[derive(Clone)]
pub struct HmacScheme {
    provider: Cow<'static, str>,
    algorithm: Algorithm,
    construction: Construction,
    key_format: KeyFormat,
    keys: Vec<KeyedMac>,
    signature: Field,
    format: SignatureFormat,
    encoding: Encoding,
    envelope: Envelope,
    /// Set by `build` and `with_secret`: see [`HmacScheme::can_mac_first`].
    mac_first: bool,
    /// Set by `build`: the envelope reads headers only ([`Envelope::headers_only`]).
    raw_envelope: bool,
}

impl fmt::Debug for HmacScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacScheme")
            .field("provider", &self.provider)
            .field("algorithm", &self.algorithm)
            .field("construction", &self.construction)
            .field("secrets", &format_args!("[{} redacted]", self.keys.len()))
            .field("signature", &self.signature)
            .field("format", &self.format)
            .field("encoding", &self.encoding)
            .field("content", &self.envelope.content)
            .field("timestamp", &self.envelope.timestamp)
            .field("tolerance", &self.envelope.tolerance)
            .field("id", &self.envelope.id)
            .field("event", &self.envelope.event)
            .field("url", &self.envelope.url_shown())
            .field("replay_key", &self.envelope.replay_key)
            .finish()
    }
}

impl HmacScheme {
    /// Starts describing a scheme. Defaults: signature in no header yet (set one), hex,
    /// body only, no timestamp, no id, raw keys.
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, Scheme, SignatureFormat};
    /// let scheme = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .secret("s3cr3t")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(scheme.provider(), "acme");
    /// // No signature location: nothing to verify.
    /// assert!(HmacScheme::builder("acme", Algorithm::Sha256).secret("s3cr3t").build().is_err());
    /// ```
    pub fn builder(provider: impl Into<Cow<'static, str>>, algorithm: Algorithm) -> HmacSchemeBuilder {
        HmacSchemeBuilder {
            scheme: Self {
                provider: provider.into(),
                algorithm,
                construction: Construction::Hmac,
                key_format: KeyFormat::Raw,
                keys: Vec::new(),
                signature: Field::Any(&[]),
                format: SignatureFormat::Plain { prefix: "" },
                encoding: Encoding::Hex,
                envelope: Envelope::new(),
                mac_first: false,
                raw_envelope: false,
            },
            error: None,
        }
    }

    /// Adds a secret (rotation: the first secret signs, every secret verifies).
    ///
    /// # Errors
    /// [`ConfigError`] when the secret is empty or does not decode.
    ///
    /// ```
    /// use hookguard::providers::stripe;
    /// let scheme = stripe::scheme("whsec_new").unwrap().with_secret("whsec_old").unwrap();
    /// assert_eq!(scheme.secret_count(), 2);
    /// ```
    pub fn with_secret(mut self, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let key = self.key_format.decode(secret.as_ref())?;
        self.keys.push(KeyedMac::with_construction(self.algorithm, self.construction, &key));
        self.mac_first = self.can_mac_first();
        Ok(self)
    }

    /// Replaces the timestamp tolerance.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use hookguard::{providers::slack, verify::{Scheme, Tolerance}};
    /// let scheme = slack::scheme("s").unwrap().with_tolerance(Tolerance::symmetric(Duration::from_secs(60)));
    /// assert_eq!(scheme.tolerance().past(), Some(Duration::from_secs(60)));
    /// ```
    ///
    /// A scheme that reads no timestamp (GitHub, Shopify, …) has nothing to check: it
    /// keeps [`Tolerance::NONE`], so that nothing (a replay mark's time to live) takes it
    /// for a window its deliveries go stale in.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use hookguard::{providers::github, verify::{Scheme, Tolerance}};
    /// let scheme = github::scheme("s").unwrap().with_tolerance(Tolerance::symmetric(Duration::from_secs(60)));
    /// assert_eq!(scheme.tolerance(), Tolerance::NONE);
    /// ```
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Tolerance) -> Self {
        self.envelope.retime(tolerance);
        self
    }

    /// Sets the URL that is signed (Trello's callback URL and Square's notification URL
    /// exactly as registered), instead of the request's.
    ///
    /// ```
    /// use hookguard::{providers::square, verify::{Outgoing, Scheme, Sign, WebhookRequest}};
    /// let old = square::scheme("secret", "https://example.com/square").unwrap();
    /// let moved = old.clone().with_url("https://example.com/square2");
    /// let mut req = http::Request::post("/internal/square");
    /// for (name, value) in moved.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let req = req.body(b"{}".to_vec()).unwrap();
    /// let (req, now) = (WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc());
    /// assert!(moved.verify(&req, now).is_ok());
    /// assert!(old.verify(&req, now).is_err(), "signed for the other URL");
    /// ```
    #[must_use]
    pub fn with_url(mut self, url: impl Into<Cow<'static, str>>) -> Self {
        self.envelope.url = Some(url.into());
        self
    }

    /// How many secrets verify.
    ///
    /// ```
    /// use hookguard::providers::github;
    /// assert_eq!(github::scheme("new").unwrap().secret_count(), 1);
    /// assert_eq!(github::scheme("new").unwrap().with_secret("old").unwrap().secret_count(), 2);
    /// ```
    #[must_use]
    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }

    /// The HMAC of `message` under the first secret: the secret a sender signs with. An
    /// answer to a verified request uses [`mac_at`](Self::mac_at) instead.
    ///
    /// ```
    /// use hookguard::providers::zoom;
    /// let scheme = zoom::scheme("secret").unwrap();
    /// assert_eq!(scheme.mac_primary(b"token").as_bytes().len(), 32);
    /// ```
    #[must_use]
    pub fn mac_primary(&self, message: &[u8]) -> Tag {
        // `build` refuses a scheme without keys, so the first one exists.
        self.keys.first().map_or(Tag::EMPTY, |k| k.mac(message))
    }

    /// The HMAC of `message` under the secret at `key_index` (as
    /// [`Verified::key_index`] names it), or `None` past the last secret. An answer
    /// computed for a verified request must use the secret that verified it: under the
    /// first secret, anyone holding a secret that may only verify (one being rotated out)
    /// would get MACs under the current one.
    ///
    /// ```
    /// use hookguard::providers::zoom;
    /// let rotating = zoom::scheme("new").unwrap().with_secret("old").unwrap();
    /// let old = zoom::scheme("old").unwrap();
    /// assert_eq!(rotating.mac_at(1, b"token").unwrap().as_bytes(), old.mac_primary(b"token").as_bytes());
    /// assert!(rotating.mac_at(2, b"token").is_none());
    /// ```
    #[must_use]
    pub fn mac_at(&self, key_index: usize, message: &[u8]) -> Option<Tag> {
        self.keys.get(key_index).map(|k| k.mac(message))
    }

    /// How the secret is combined with the signed content.
    ///
    /// ```
    /// use hookguard::{providers::github, verify::Construction};
    /// assert_eq!(github::scheme("s").unwrap().construction(), Construction::Hmac);
    /// ```
    #[must_use]
    pub fn construction(&self) -> Construction {
        self.construction
    }

    /// The scheme's signature encoding.
    ///
    /// ```
    /// use hookguard::{providers::{github, shopify}, verify::Encoding};
    /// assert_eq!(github::scheme("s").unwrap().encoding(), Encoding::Hex);
    /// assert_eq!(shopify::scheme("s").unwrap().encoding(), Encoding::Base64);
    /// ```
    #[must_use]
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Decodes the received signatures into `out` and returns the signature header's
    /// timestamp parameter. The header is looked up once.
    fn candidates<'a>(
        &self,
        req: &WebhookRequest<'a>,
        out: &mut Candidates,
    ) -> Result<Option<&'a [u8]>, Rejection> {
        match &self.signature {
            Field::Json(_) => {
                let text = self
                    .signature
                    .text(req, None)?
                    .ok_or_else(|| Rejection::new(Reason::MissingSignature))?;
                let value =
                    HeaderValue::from_str(&text).map_err(|_| Rejection::new(Reason::MalformedSignature))?;
                // The parameter would borrow `value`: a signature in the body has none.
                self.format.parse(self.encoding, std::iter::once(&value), out)?;
                Ok(None)
            }
            field => {
                let values = first_present_values(field, req)
                    .ok_or_else(|| Rejection::new(Reason::MissingSignature))?;
                self.format.parse(self.encoding, values.iter(), out)
            }
        }
    }

    fn signature_header(&self) -> Option<&HeaderName> {
        first_header(&self.signature)
    }

    /// Whether [`verify`](Scheme::verify) can compute the MAC before it reads the
    /// signatures: one secret, the signature in a header, and nothing the MAC needs
    /// (the timestamp) inside the signature header.
    fn can_mac_first(&self) -> bool {
        self.keys.len() == 1
            && !matches!(self.signature, Field::Json(_))
            && !self.envelope.timestamp.as_ref().is_some_and(|(field, _)| reads_signature_param(field))
    }

    /// The common case's path: the signature header must be there, then the envelope is
    /// read and the MAC computed, then each received signature is decoded into one stack
    /// buffer and compared as it is read. Nothing is stored per candidate, and the
    /// decoding runs while the CPU finishes the hash. A request whose signature header
    /// is malformed *and* whose timestamp or id is wrong is refused for the latter here
    /// (the other path reports the signature first); either way it is refused.
    fn verify_mac_first<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        now: OffsetDateTime,
    ) -> Result<Verified<'a>, Rejection> {
        let Some(key) = self.keys.first() else {
            return Err(Rejection::new(Reason::SignatureMismatch));
        };
        let content = &self.envelope.content;
        let mut ok = Choice::from(0);
        let mut compared = 0;
        let mut compare = |candidate: &Tag, tag: &Tag| {
            ok |= tag.ct_eq(candidate);
            compared += 1;
        };
        let checked;
        let tag;
        if self.raw_envelope {
            // Headers only: the MAC starts on the values as received; every check (the
            // signature header's presence, the values' text, the timestamp window, the
            // signatures' format) runs after it, while the CPU finishes the hash, and
            // refuses in the same order with the same reasons as the other path,
            // whatever the MAC says.
            // Only a single header name is scanned for; a list (`Field::Any`) is looked up in
            // its own order.
            let signature_name = match &self.signature {
                Field::Header(name) => Some(name),
                _ => None,
            };
            let raw = self.envelope.read_raw(req, signature_name);
            // `check_raw` refuses a request whose signed values are missing, so the
            // stand-in tag is never compared.
            tag = match self.envelope.raw_values(&raw, req) {
                Some(signed) => key.tag_of(&content.with(&signed)),
                None => Tag::EMPTY,
            };
            // The scan's one value, or every value of the first signature header present.
            let (one, all) = match raw.signature {
                Scanned::Absent => return Err(Rejection::new(Reason::MissingSignature)),
                Scanned::One(value) => (Some(value), None),
                Scanned::Several | Scanned::Skipped => (
                    None,
                    Some(
                        first_present_values(&self.signature, req)
                            .ok_or_else(|| Rejection::new(Reason::MissingSignature))?,
                    ),
                ),
            };
            checked = self.envelope.check_raw(raw, now)?;
            let values = one.into_iter().chain(all.iter().flat_map(|all| all.iter()));
            self.format.parse_each(self.encoding, values, |c| compare(c, &tag))?;
        } else {
            let values = first_present_values(&self.signature, req)
                .ok_or_else(|| Rejection::new(Reason::MissingSignature))?;
            let inputs = self.envelope.read(req, None, now)?;
            tag = key.tag_of(&content.with(&inputs.values()));
            checked = inputs.into_checked();
            self.format.parse_each(self.encoding, values.iter(), |c| compare(c, &tag))?;
        }
        if !bool::from(ok) {
            return Err(Rejection::with_detail(
                Reason::SignatureMismatch,
                Detail::Compared { signatures: compared, secrets: 1 },
            ));
        }
        Ok(self.envelope.verified(self.provider.as_ref(), req, checked, tag.fingerprint(), 0))
    }

    /// Verifies as [`Scheme::verify`] does (the same signature header, envelope checks,
    /// secrets and result), with `message` MACed in place of the signed content: for a
    /// preset whose provider signs another rendering of that content (Trello's "binary"
    /// strings, [`TrelloScheme`](crate::providers::trello::TrelloScheme)). The
    /// fingerprint is the SHA-256 of the first secret's MAC of `message`, whichever secret
    /// matched.
    pub(crate) fn verify_message<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        now: OffsetDateTime,
        message: &[u8],
    ) -> Result<Verified<'a>, Rejection> {
        let mut candidates = Candidates::new();
        let signature_param = self.candidates(req, &mut candidates)?;
        let inputs = self.envelope.read(req, signature_param, now)?;
        let (key_index, print) = self.matching_key(&candidates, |key| key.mac(message))?;
        Ok(self.envelope.verified(self.provider.as_ref(), req, inputs.into_checked(), print, key_index))
    }

    /// The first key whose tag (`tag_of`) is one of the `candidates`, and the
    /// fingerprint: the first key's tag's, whichever key matched (during a rotation a
    /// sender signs with both, and a copy cut down to the old key's signature must not get
    /// a replay key of its own), hashed (never the tag itself). Every candidate is
    /// compared in constant time.
    fn matching_key(
        &self,
        candidates: &Candidates,
        tag_of: impl Fn(&KeyedMac) -> Tag,
    ) -> Result<(usize, [u8; 32]), Rejection> {
        let mut print = None;
        for (index, key) in self.keys.iter().enumerate() {
            let tag = tag_of(key);
            let mut ok = Choice::from(0);
            for candidate in candidates.as_slice() {
                ok |= tag.ct_eq(candidate);
            }
            let print = *print.get_or_insert_with(|| tag.fingerprint());
            if bool::from(ok) {
                return Ok((index, print));
            }
        }
        Err(Rejection::with_detail(
            Reason::SignatureMismatch,
            Detail::Compared { signatures: candidates.as_slice().len(), secrets: self.keys.len() },
        ))
    }
}

impl Scheme for HmacScheme {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn signs_called_url(&self) -> bool {
        self.envelope.content.uses_url() && self.envelope.url.is_none()
    }

    fn tolerance(&self) -> Tolerance {
        self.envelope.tolerance
    }

    fn verify<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        now: OffsetDateTime,
    ) -> Result<Verified<'a>, Rejection> {
        if self.mac_first {
            return self.verify_mac_first(req, now);
        }
        let mut candidates = Candidates::new();
        let signature_param = self.candidates(req, &mut candidates)?;
        let inputs = self.envelope.read(req, signature_param, now)?;
        let values = inputs.values();
        let content = self.envelope.content.with(&values);
        let (key_index, print) = self.matching_key(&candidates, |key| key.tag_of(&content))?;
        Ok(self.envelope.verified(self.provider.as_ref(), req, inputs.into_checked(), print, key_index))
    }
}

impl Sign for HmacScheme {
    fn sign(&self, msg: &Outgoing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let Some(key) = self.keys.first() else {
            return Err(SignError::Unsupported("no secret"));
        };
        let sig_header =
            self.signature_header().ok_or(SignError::Unsupported("the signature travels in the body"))?;
        let prepared = self.envelope.prepare(msg)?;
        let tag = key.tag_of(&self.envelope.content.with(&prepared.values()));
        let in_header = self.envelope.timestamp_in_signature(self.format);
        let value = self.format.render(
            self.encoding,
            tag.as_bytes(),
            if in_header { prepared.ts_text.as_deref() } else { None },
        );
        let mut headers = prepared.headers;
        headers.insert(0, (sig_header.clone(), header_value(value)?));
        Ok(headers)
    }
}

/// Whether a field is, or falls back to, the signature header's timestamp parameter.
fn reads_signature_param(field: &Field) -> bool {
    match field {
        Field::SignatureParam => true,
        Field::Any(fields) => fields.iter().any(reads_signature_param),
        _ => false,
    }
}

/// Builder for [`HmacScheme`]; see there for an example. Errors (an empty secret, an
/// inconsistent description) are reported by [`build`](Self::build).
///
/// ```
/// use hookguard::{ConfigError, verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat}};
/// let builder = HmacScheme::builder("acme", Algorithm::Sha256)
///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex);
/// // An empty secret (an unset environment variable) is refused when building.
/// assert!(matches!(builder.secret("").build(), Err(ConfigError::EmptySecret)));
/// ```
#[derive(Debug)]
#[must_use]
pub struct HmacSchemeBuilder {
    scheme: HmacScheme,
    error: Option<ConfigError>,
}

impl HmacSchemeBuilder {
    /// Where the signature is, how it is laid out and encoded. A [`Field::Any`] of
    /// headers uses the first one present; a [`Field::Json`] reads it from the body.
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, Outgoing, Scheme, Sign, SignatureFormat, WebhookRequest};
    /// # fn signed(scheme: &HmacScheme, msg: &Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
    /// #     let mut req = http::Request::post(uri);
    /// #     for (name, value) in scheme.sign(msg).unwrap() {
    /// #         req = req.header(name, value);
    /// #     }
    /// #     req.body(msg.body().to_vec()).unwrap()
    /// # }
    /// let scheme = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "sha256=" }, Encoding::Hex)
    ///     .secret("s3cr3t")
    ///     .build()
    ///     .unwrap();
    /// let req = signed(&scheme, &Outgoing::new(b"{}"), "/hooks");
    /// assert!(req.headers()["x-acme-signature"].to_str().unwrap().starts_with("sha256="));
    /// assert!(scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
    /// ```
    pub fn signature(mut self, field: Field, format: SignatureFormat, encoding: Encoding) -> Self {
        self.scheme.signature = field;
        self.scheme.format = format;
        self.scheme.encoding = encoding;
        self
    }

    /// What is signed (default: the body).
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, Outgoing, Piece, Sign, SignatureFormat, SignedContent};
    /// let scheme = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .content(SignedContent::new(vec![Piece::Literal(b"v0:"), Piece::Body]))
    ///     .secret("s3cr3t")
    ///     .build()
    ///     .unwrap();
    /// let headers = scheme.sign(&Outgoing::new(b"{}")).unwrap();
    /// assert_eq!(headers[0].1.as_bytes(), Encoding::Hex.encode(scheme.mac_primary(b"v0:{}").as_bytes()).as_bytes());
    /// ```
    pub fn content(mut self, content: SignedContent) -> Self {
        self.scheme.envelope.content = content;
        self
    }

    /// Where the timestamp is and how it is written. Sign it too (a [`Piece::Timestamp`]
    /// in the [`content`](Self::content)), or a replay can carry a fresh one.
    ///
    /// [`Piece::Timestamp`]: crate::verify::Piece::Timestamp
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, Outgoing, Scheme, Sign, SignatureFormat, WebhookRequest};
    /// use hookguard::verify::{Piece, SignedContent, TimestampFormat};
    /// # fn signed(scheme: &HmacScheme, msg: &Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
    /// #     let mut req = http::Request::post(uri);
    /// #     for (name, value) in scheme.sign(msg).unwrap() {
    /// #         req = req.header(name, value);
    /// #     }
    /// #     req.body(msg.body().to_vec()).unwrap()
    /// # }
    /// let scheme = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .timestamp(Field::header("x-acme-timestamp"), TimestampFormat::UnixSeconds)
    ///     .content(SignedContent::new(vec![Piece::Timestamp, Piece::Literal(b"."), Piece::Body]))
    ///     .secret("s3cr3t")
    ///     .build()
    ///     .unwrap();
    /// let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    /// let req = signed(&scheme, &Outgoing::new(b"{}").timestamp(at), "/hooks");
    /// assert_eq!(req.headers()["x-acme-timestamp"], "1700000000");
    /// let verified = scheme.verify(&WebhookRequest::from_request(&req), at).unwrap();
    /// assert_eq!(verified.timestamp(), Some(at));
    /// ```
    pub fn timestamp(mut self, field: Field, format: TimestampFormat) -> Self {
        self.scheme.envelope.timestamp = Some((field, format));
        self
    }

    /// The tolerance (default none; needs a timestamp).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, Outgoing, Scheme, Sign, SignatureFormat, WebhookRequest};
    /// use hookguard::verify::{Piece, Reason, SignedContent, TimestampFormat, Tolerance};
    /// # fn signed(scheme: &HmacScheme, msg: &Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
    /// #     let mut req = http::Request::post(uri);
    /// #     for (name, value) in scheme.sign(msg).unwrap() {
    /// #         req = req.header(name, value);
    /// #     }
    /// #     req.body(msg.body().to_vec()).unwrap()
    /// # }
    /// let scheme = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .timestamp(Field::header("x-acme-timestamp"), TimestampFormat::UnixSeconds)
    ///     .content(SignedContent::new(vec![Piece::Timestamp, Piece::Literal(b"."), Piece::Body]))
    ///     .tolerance(Tolerance::symmetric(Duration::from_secs(300)))
    ///     .secret("s3cr3t")
    ///     .build()
    ///     .unwrap();
    /// let sent = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    /// let req = signed(&scheme, &Outgoing::new(b"{}").timestamp(sent), "/hooks");
    /// let req = WebhookRequest::from_request(&req);
    /// assert!(scheme.verify(&req, sent + Duration::from_secs(299)).is_ok());
    /// let late = scheme.verify(&req, sent + Duration::from_secs(301)).unwrap_err();
    /// assert_eq!(late.reason(), Reason::TimestampTooOld);
    /// ```
    pub fn tolerance(mut self, tolerance: Tolerance) -> Self {
        self.scheme.envelope.tolerance = tolerance;
        self
    }

    /// Where the delivery id is (the replay key when present).
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, Outgoing, Scheme, Sign, SignatureFormat, WebhookRequest};
    /// # fn signed(scheme: &HmacScheme, msg: &Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
    /// #     let mut req = http::Request::post(uri);
    /// #     for (name, value) in scheme.sign(msg).unwrap() {
    /// #         req = req.header(name, value);
    /// #     }
    /// #     req.body(msg.body().to_vec()).unwrap()
    /// # }
    /// let scheme = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .id(Field::header("x-acme-delivery"))
    ///     .secret("s3cr3t")
    ///     .build()
    ///     .unwrap();
    /// let req = signed(&scheme, &Outgoing::new(b"{}").id("d-42"), "/hooks");
    /// let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
    /// assert_eq!(verified.id(), Some("d-42"));
    /// // Not signed here: the replay key is the MAC's fingerprint, not the id.
    /// assert!(!verified.id_is_signed());
    /// ```
    pub fn id(mut self, field: Field) -> Self {
        self.scheme.envelope.id = Some(field);
        self
    }

    /// Says that the provider sends the same bytes again for new events, with nothing
    /// (no id, no timestamp) that tells a copy from a new delivery: every verified
    /// delivery is then new ([`Verified::has_replay_key`] is `false`): no replay mark,
    /// its own key in the inbox. Dropbox's preset does this: its notices name only the
    /// accounts that changed, so a second change to one account is byte for byte the
    /// first notice, which a replay key would answer `200 duplicate` and drop. A replayed
    /// copy is handled again as well: only for deliveries that are harmless to repeat, and
    /// behind a rate limit (`RateLimitLayer`, feature `source-controls`): anyone holding one
    /// signed delivery can send it again at will, each a job (and, on a `MemoryInbox`, a
    /// place among its remembered finished keys). With a signed id or timestamp, which tell
    /// a copy apart, [`build`](Self::build) refuses it.
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, Outgoing, Piece, Scheme, Sign, SignatureFormat, SignedContent, WebhookRequest};
    /// let builder = || HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex);
    /// let signs_id = SignedContent::new(vec![Piece::Id, Piece::Literal(b"."), Piece::Body]);
    /// let refused = builder().id(Field::header("x-acme-id")).content(signs_id).no_replay_key().secret("s").build();
    /// assert!(matches!(refused, Err(hookguard::ConfigError::Invalid(_))));
    /// let scheme = builder()
    ///     .no_replay_key()
    ///     .secret("s3cr3t")
    ///     .build()
    ///     .unwrap();
    /// let mut req = http::Request::post("/hooks");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let req = req.body(b"{}".to_vec()).unwrap();
    /// let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
    /// assert!(!verified.has_replay_key());
    /// ```
    pub fn no_replay_key(mut self) -> Self {
        self.scheme.envelope.replay_key = false;
        self
    }

    /// Where the event type is.
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, Outgoing, Scheme, Sign, SignatureFormat, WebhookRequest};
    /// let scheme = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .event(Field::Json(&["type"]))
    ///     .secret("s3cr3t")
    ///     .build()
    ///     .unwrap();
    /// let body = br#"{"type":"invoice.paid"}"#;
    /// let mut req = http::Request::post("/hooks");
    /// for (name, value) in scheme.sign(&Outgoing::new(body)).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let req = req.body(body.to_vec()).unwrap();
    /// let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
    /// assert_eq!(verified.event(), Some("invoice.paid"));
    /// ```
    pub fn event(mut self, field: Field) -> Self {
        self.scheme.envelope.event = Some(field);
        self
    }

    /// A fixed URL to sign instead of the request's (the one registered with the
    /// provider): behind a proxy that rewrites paths, the request's own URL differs.
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, Outgoing, Scheme, Sign, SignatureFormat, WebhookRequest};
    /// use hookguard::verify::{Piece, SignedContent};
    /// # fn signed(scheme: &HmacScheme, msg: &Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
    /// #     let mut req = http::Request::post(uri);
    /// #     for (name, value) in scheme.sign(msg).unwrap() {
    /// #         req = req.header(name, value);
    /// #     }
    /// #     req.body(msg.body().to_vec()).unwrap()
    /// # }
    /// let scheme = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .content(SignedContent::new(vec![Piece::Body, Piece::Url]))
    ///     .url("https://example.com/hooks/acme")
    ///     .secret("s3cr3t")
    ///     .build()
    ///     .unwrap();
    /// assert!(!scheme.signs_called_url());
    /// // Received on an internal path, verified against the registered URL.
    /// let req = signed(&scheme, &Outgoing::new(b"{}"), "/internal/acme");
    /// assert!(scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
    /// ```
    pub fn url(mut self, url: impl Into<Cow<'static, str>>) -> Self {
        self.scheme.envelope.url = Some(url.into());
        self
    }

    /// How the secret is combined with the signed content (default HMAC; HubSpot v1/v2
    /// use [`Construction::SecretPrefix`]). Set it before adding secrets.
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Construction, Encoding, Field, HmacScheme, SignatureFormat};
    /// let scheme = HmacScheme::builder("legacy", Algorithm::Sha256)
    ///     .signature(Field::header("x-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .construction(Construction::SecretPrefix)
    ///     .secret("s")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(scheme.construction(), Construction::SecretPrefix);
    /// ```
    ///
    /// Secrets become keys as they are added: a different construction set after a secret
    /// would leave that key of the other kind, and [`build`](Self::build) refuses it
    /// ([`ConfigError::Invalid`](crate::ConfigError::Invalid)).
    ///
    /// ```
    /// use hookguard::{ConfigError, verify::{Algorithm, Construction, Encoding, Field, HmacScheme, SignatureFormat}};
    /// let late = HmacScheme::builder("legacy", Algorithm::Sha256)
    ///     .signature(Field::header("x-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .secret("s")
    ///     .construction(Construction::SecretPrefix)
    ///     .build();
    /// assert!(matches!(late, Err(ConfigError::Invalid(_))));
    /// ```
    pub fn construction(mut self, construction: Construction) -> Self {
        if !self.scheme.keys.is_empty() && construction != self.scheme.construction {
            self.error.get_or_insert(ConfigError::Invalid("set the construction before adding secrets"));
        }
        self.scheme.construction = construction;
        self
    }

    /// How secrets become keys (default: their bytes). Set it before adding secrets.
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, KeyFormat, SignatureFormat};
    /// let raw = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .secret("whsec_aGk=")
    ///     .build()
    ///     .unwrap();
    /// let decoded = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .key_format(KeyFormat::StandardWebhooks)
    ///     .secret("whsec_aGk=")
    ///     .build()
    ///     .unwrap();
    /// // The decoded key is the two bytes `hi`.
    /// let hi = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .secret("hi")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(decoded.mac_primary(b"x").as_bytes(), hi.mac_primary(b"x").as_bytes());
    /// assert_ne!(raw.mac_primary(b"x").as_bytes(), hi.mac_primary(b"x").as_bytes());
    /// ```
    ///
    /// Secrets are decoded as they are added: a different key format set after a secret
    /// would leave that secret undecoded, and [`build`](Self::build) refuses it
    /// ([`ConfigError::Invalid`](crate::ConfigError::Invalid)).
    ///
    /// ```
    /// use hookguard::{ConfigError, verify::{Algorithm, Encoding, Field, HmacScheme, KeyFormat, SignatureFormat}};
    /// let late = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .secret("whsec_aGk=")
    ///     .key_format(KeyFormat::StandardWebhooks)
    ///     .build();
    /// assert!(matches!(late, Err(ConfigError::Invalid(_))));
    /// ```
    pub fn key_format(mut self, format: KeyFormat) -> Self {
        if !self.scheme.keys.is_empty() && format != self.scheme.key_format {
            self.error.get_or_insert(ConfigError::Invalid("set the key format before adding secrets"));
        }
        self.scheme.key_format = format;
        self
    }

    /// Adds a secret; the first added signs, all verify.
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, Outgoing, Scheme, Sign, SignatureFormat, WebhookRequest};
    /// # fn signed(scheme: &HmacScheme, msg: &Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
    /// #     let mut req = http::Request::post(uri);
    /// #     for (name, value) in scheme.sign(msg).unwrap() {
    /// #         req = req.header(name, value);
    /// #     }
    /// #     req.body(msg.body().to_vec()).unwrap()
    /// # }
    /// let old = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .secret("old")
    ///     .build()
    ///     .unwrap();
    /// // Rotating: the new secret first, the old one still accepted.
    /// let rotating = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .secret("new")
    ///     .secret("old")
    ///     .build()
    ///     .unwrap();
    /// let req = signed(&old, &Outgoing::new(b"{}"), "/hooks");
    /// let verified = rotating.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
    /// assert_eq!(verified.key_index(), 1);
    /// ```
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        match self.scheme.key_format.decode(secret.as_ref()) {
            Ok(key) => self.scheme.keys.push(KeyedMac::with_construction(
                self.scheme.algorithm,
                self.scheme.construction,
                &key,
            )),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Adds each secret of a list.
    ///
    /// ```
    /// use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat};
    /// let from_config = vec!["new".to_owned(), "old".to_owned()];
    /// let scheme = HmacScheme::builder("acme", Algorithm::Sha256)
    ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    ///     .secrets(&from_config)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(scheme.secret_count(), 2);
    /// ```
    pub fn secrets<I: IntoIterator<Item = S>, S: AsRef<[u8]>>(self, secrets: I) -> Self {
        secrets.into_iter().fold(self, Self::secret)
    }

    /// Checks the description and builds the scheme.
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] / [`ConfigError::InvalidSecret`] for a bad secret,
    /// [`ConfigError::NoSecret`] without any, [`ConfigError::Invalid`] when the pieces
    /// do not fit (a signed timestamp or tolerance with no timestamp source, a signed id
    /// with no id source, no signature location).
    ///
    /// ```
    /// use hookguard::{ConfigError, verify::{Algorithm, Encoding, Field, HmacScheme, Piece, SignatureFormat, SignedContent}};
    /// let builder = || {
    ///     HmacScheme::builder("acme", Algorithm::Sha256)
    ///         .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
    /// };
    /// assert!(builder().secret("s3cr3t").build().is_ok());
    /// assert!(matches!(builder().build(), Err(ConfigError::NoSecret)));
    /// // A signed timestamp needs a place to read it from.
    /// let signs_time = SignedContent::new(vec![Piece::Timestamp, Piece::Body]);
    /// assert!(matches!(builder().content(signs_time).secret("s").build(), Err(ConfigError::Invalid(_))));
    /// ```
    pub fn build(self) -> Result<HmacScheme, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let s = self.scheme;
        if s.keys.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        if !is_signature_location(&s.signature) {
            return Err(ConfigError::Invalid("the signature needs a header or body location"));
        }
        s.envelope.check()?;
        let mut s = s;
        s.mac_first = s.can_mac_first();
        s.raw_envelope = s.envelope.headers_only();
        Ok(s)
    }
}
