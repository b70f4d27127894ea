//! The configurable HMAC scheme every HMAC preset is an instance of.

use std::{borrow::Cow, fmt};

use http::{HeaderName, HeaderValue};
use subtle::Choice;
use time::OffsetDateTime;

use super::{
    Algorithm, Construction, Detail, Encoding, Field, KeyedMac, Outgoing, Piece, Reason, Rejection, Scheme,
    Sign, SignError, SignatureFormat, SignedContent, Tag, TimestampFormat, Tolerance, Verified,
    WebhookRequest, content::Values, request::fingerprint, scheme::header_value, signature::Candidates,
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
    content: SignedContent,
    timestamp: Option<(Field, TimestampFormat)>,
    tolerance: Tolerance,
    id: Option<Field>,
    event: Option<Field>,
    url: Option<Cow<'static, str>>,
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
            .field("content", &self.content)
            .field("timestamp", &self.timestamp)
            .field("tolerance", &self.tolerance)
            .field("id", &self.id)
            .field("event", &self.event)
            .field("url", &self.url)
            .finish()
    }
}

impl HmacScheme {
    /// Starts describing a scheme. Defaults: signature in no header yet (set one), hex,
    /// body only, no timestamp, no id, raw keys.
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
                content: SignedContent::BODY,
                timestamp: None,
                tolerance: Tolerance::NONE,
                id: None,
                event: None,
                url: None,
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
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Tolerance) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Sets the URL that is signed (Trello's callback URL and Square's notification URL
    /// exactly as registered), instead of the request's.
    ///
    /// ```
    /// use hookguard::providers::trello;
    /// let s = trello::scheme("secret", "https://example.com/trello").unwrap()
    ///     .with_url("https://example.com/trello2");
    /// # let _ = s;
    /// ```
    #[must_use]
    pub fn with_url(mut self, url: impl Into<Cow<'static, str>>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// How many secrets verify.
    #[must_use]
    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }

    /// The HMAC of `message` under the first secret (Zoom's url_validation answer is one).
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
    #[must_use]
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    fn candidates<'a>(&self, req: &WebhookRequest<'a>) -> Result<Candidates<'a>, Rejection> {
        match &self.signature {
            Field::Json(_) => {
                let text = self
                    .signature
                    .text(req, None)?
                    .ok_or_else(|| Rejection::new(Reason::MissingSignature))?;
                let value =
                    HeaderValue::from_str(&text).map_err(|_| Rejection::new(Reason::MalformedSignature))?;
                let parsed = self.format.parse(self.encoding, std::iter::once(&value))?;
                Ok(parsed.detach())
            }
            field => {
                let name = first_present_header(field, req)
                    .ok_or_else(|| Rejection::new(Reason::MissingSignature))?;
                self.format.parse(self.encoding, req.headers().get_all(name).iter())
            }
        }
    }

    fn signature_header(&self) -> Option<&HeaderName> {
        first_header(&self.signature)
    }
}

fn first_present_header<'f>(field: &'f Field, req: &WebhookRequest<'_>) -> Option<&'f HeaderName> {
    match field {
        Field::Header(name) => req.headers().contains_key(name).then_some(name),
        Field::Any(fields) => fields.iter().find_map(|f| first_present_header(f, req)),
        _ => None,
    }
}

fn first_header(field: &Field) -> Option<&HeaderName> {
    match field {
        Field::Header(name) => Some(name),
        Field::Any(fields) => fields.iter().find_map(first_header),
        _ => None,
    }
}

impl Scheme for HmacScheme {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn tolerance(&self) -> Tolerance {
        self.tolerance
    }

    fn verify<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        now: OffsetDateTime,
    ) -> Result<Verified<'a>, Rejection> {
        let candidates = self.candidates(req)?;

        let mut ts_text: Cow<'a, str> = Cow::Borrowed("");
        let mut timestamp = None;
        if let Some((field, format)) = &self.timestamp {
            let text = field
                .text(req, candidates.timestamp)?
                .ok_or_else(|| Rejection::with_detail(Reason::MissingTimestamp, field.detail()))?;
            let at = format
                .parse(text.as_bytes())
                .ok_or_else(|| Rejection::with_detail(Reason::MalformedTimestamp, field.detail()))?;
            self.tolerance.check(at, now).map_err(Rejection::skew)?;
            timestamp = Some(at);
            ts_text = text;
        }

        let needs_id = self.content.uses(Piece::Id);
        let id = match &self.id {
            Some(field) if needs_id || !matches!(field, Field::Json(_)) => field.text(req, None)?,
            _ => None,
        };
        if needs_id && id.is_none() {
            let detail = self.id.as_ref().map_or(Detail::None, Field::detail);
            return Err(Rejection::with_detail(Reason::MissingHeader, detail));
        }

        let url: Cow<'a, str> = if self.content.uses_url() {
            match &self.url {
                Some(url) => Cow::Borrowed(url.as_ref()),
                None => req.url()?,
            }
        } else {
            Cow::Borrowed("")
        };

        let values = Values {
            id: id.as_deref().unwrap_or(""),
            timestamp: &ts_text,
            body: req.body(),
            url: &url,
            method: req.method().as_str(),
        };
        let mut matched = None;
        for (index, key) in self.keys.iter().enumerate() {
            let mut state = key.start();
            self.content.feed(&mut state, &values);
            let tag = state.finish();
            let mut ok = Choice::from(0);
            for candidate in candidates.as_slice() {
                ok |= tag.ct_eq(candidate);
            }
            if bool::from(ok) {
                matched = Some((index, tag));
                break;
            }
        }
        let Some((key_index, tag)) = matched else {
            return Err(Rejection::with_detail(
                Reason::SignatureMismatch,
                Detail::Compared { signatures: candidates.as_slice().len(), secrets: self.keys.len() },
            ));
        };

        // Values read from the body only after the signature held.
        let id = match (&self.id, id) {
            (Some(field @ Field::Json(_)), None) => field.text(req, None).ok().flatten(),
            (_, id) => id,
        };
        let event = match &self.event {
            Some(field) => field.text(req, None).ok().flatten(),
            None => None,
        };
        Ok(Verified::new(
            self.provider.as_ref(),
            id,
            timestamp,
            event,
            fingerprint(tag.as_bytes()),
            key_index,
        ))
    }
}

impl Sign for HmacScheme {
    fn sign(&self, msg: &Outgoing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let Some(key) = self.keys.first() else {
            return Err(SignError::Unsupported("no secret"));
        };
        let sig_header =
            self.signature_header().ok_or(SignError::Unsupported("the signature travels in the body"))?;
        let mut headers = Vec::with_capacity(3);
        let needs_id = self.content.uses(Piece::Id);
        if needs_id && msg.get_id().is_none() {
            return Err(SignError::MissingId);
        }
        let ts_text = match &self.timestamp {
            Some((field, format)) => {
                let at = msg.get_timestamp().ok_or(SignError::MissingTimestamp)?;
                let text = format.format(at);
                if let Some(name) = first_header(field) {
                    headers.push((name.clone(), header_value(text.clone())?));
                }
                Some(text)
            }
            None => None,
        };
        if let (Some(field), Some(id)) = (&self.id, msg.get_id())
            && let Some(name) = first_header(field)
        {
            headers.push((name.clone(), header_value(id.to_owned())?));
        }
        let url = if self.content.uses_url() {
            match (&self.url, msg.get_url()) {
                (Some(url), _) => url.as_ref(),
                (None, Some(url)) => url,
                (None, None) => return Err(SignError::MissingUrl),
            }
        } else {
            ""
        };
        let values = Values {
            id: msg.get_id().unwrap_or(""),
            timestamp: ts_text.as_deref().unwrap_or(""),
            body: msg.body(),
            url,
            method: msg.get_method().as_str(),
        };
        let mut state = key.start();
        self.content.feed(&mut state, &values);
        let tag = state.finish();
        let in_header = matches!(self.format, SignatureFormat::Pairs { timestamp_key: Some(_), .. })
            && matches!(self.timestamp, Some((Field::SignatureParam, _)));
        let value = self.format.render(
            self.encoding,
            tag.as_bytes(),
            if in_header { ts_text.as_deref() } else { None },
        );
        headers.insert(0, (sig_header.clone(), header_value(value)?));
        Ok(headers)
    }
}

/// Builder for [`HmacScheme`]; see there for an example. Errors (an empty secret, an
/// inconsistent description) are reported by [`build`](Self::build).
#[derive(Debug)]
#[must_use]
pub struct HmacSchemeBuilder {
    scheme: HmacScheme,
    error: Option<ConfigError>,
}

impl HmacSchemeBuilder {
    /// Where the signature is, how it is laid out and encoded. A [`Field::Any`] of
    /// headers uses the first one present; a [`Field::Json`] reads it from the body.
    pub fn signature(mut self, field: Field, format: SignatureFormat, encoding: Encoding) -> Self {
        self.scheme.signature = field;
        self.scheme.format = format;
        self.scheme.encoding = encoding;
        self
    }

    /// What is signed (default: the body).
    pub fn content(mut self, content: SignedContent) -> Self {
        self.scheme.content = content;
        self
    }

    /// Where the timestamp is and how it is written.
    pub fn timestamp(mut self, field: Field, format: TimestampFormat) -> Self {
        self.scheme.timestamp = Some((field, format));
        self
    }

    /// The tolerance (default none; needs a timestamp).
    pub fn tolerance(mut self, tolerance: Tolerance) -> Self {
        self.scheme.tolerance = tolerance;
        self
    }

    /// Where the delivery id is (the replay key when present).
    pub fn id(mut self, field: Field) -> Self {
        self.scheme.id = Some(field);
        self
    }

    /// Where the event type is.
    pub fn event(mut self, field: Field) -> Self {
        self.scheme.event = Some(field);
        self
    }

    /// A fixed URL to sign instead of the request's.
    pub fn url(mut self, url: impl Into<Cow<'static, str>>) -> Self {
        self.scheme.url = Some(url.into());
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
    pub fn construction(mut self, construction: Construction) -> Self {
        self.scheme.construction = construction;
        self
    }

    /// How secrets become keys (default: their bytes).
    pub fn key_format(mut self, format: KeyFormat) -> Self {
        self.scheme.key_format = format;
        self
    }

    /// Adds a secret; the first added signs, all verify.
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
    pub fn build(self) -> Result<HmacScheme, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let s = self.scheme;
        if s.keys.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        if matches!(&s.signature, Field::Any(list) if list.is_empty()) || s.signature == Field::SignatureParam
        {
            return Err(ConfigError::Invalid("the signature needs a header or body location"));
        }
        if s.timestamp.is_none() && (s.content.uses(Piece::Timestamp) || s.tolerance.is_checked()) {
            return Err(ConfigError::Invalid("a timestamp is signed or checked but has no source"));
        }
        if s.id.is_none() && s.content.uses(Piece::Id) {
            return Err(ConfigError::Invalid("the id is signed but has no source"));
        }
        Ok(s)
    }
}
