//! What the public-key schemes share: the signature's location, format and encoding
//! and the [`Envelope`] around it, with the verify and sign flows written once. Each
//! algorithm module supplies only "does this signature verify under key `i`" and
//! "sign these pieces".

use std::borrow::Cow;

use http::{HeaderName, HeaderValue};
use time::OffsetDateTime;

use super::{
    Detail, Encoding, Field, Outgoing, Reason, Rejection, SignError, SignatureFormat, Verified,
    WebhookRequest,
    envelope::{Envelope, first_header, first_present_header, is_signature_location},
    header_value,
    signature::Decoded,
};
use crate::error::ConfigError;

/// A public-key scheme's description, without its keys.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) provider: Cow<'static, str>,
    pub(crate) signature: Field,
    pub(crate) format: SignatureFormat,
    pub(crate) encoding: Encoding,
    pub(crate) envelope: Envelope,
}

/// The most signatures a public-key scheme (Ed25519, ECDSA) checks in one request: past
/// it the request is refused (`too-many-signatures`). HMAC schemes take up to
/// [`MAX_SIGNATURES`](super::MAX_SIGNATURES): a MAC is computed once per key, whereas
/// every public-key check hashes the signed content again.
///
/// ```
/// assert!(hookguard::verify::MAX_PUBLIC_KEY_SIGNATURES < hookguard::verify::MAX_SIGNATURES);
/// ```
pub const MAX_PUBLIC_KEY_SIGNATURES: usize = 4;

impl Layout {
    pub(crate) fn new(provider: Cow<'static, str>, encoding: Encoding) -> Self {
        Self {
            provider,
            signature: Field::Any(&[]),
            format: SignatureFormat::Plain { prefix: "" },
            encoding,
            envelope: Envelope::new(),
        }
    }

    /// What `build` refuses, keys aside.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if !is_signature_location(&self.signature) {
            return Err(ConfigError::Invalid("the signature needs a header or body location"));
        }
        self.envelope.check()
    }

    /// The decoded signatures of the request, and the signature header's timestamp
    /// parameter.
    fn candidates<'a>(&self, req: &WebhookRequest<'a>) -> Result<Decoded<'a>, Rejection> {
        match &self.signature {
            Field::Json(_) => {
                let text = self
                    .signature
                    .text(req, None)?
                    .ok_or_else(|| Rejection::new(Reason::MissingSignature))?;
                let value =
                    HeaderValue::from_str(&text).map_err(|_| Rejection::new(Reason::MalformedSignature))?;
                let (sigs, _) = self.format.parse_bytes(self.encoding, std::iter::once(&value))?;
                Ok((sigs, None))
            }
            field => {
                let name = first_present_header(field, req)
                    .ok_or_else(|| Rejection::new(Reason::MissingSignature))?;
                self.format.parse_bytes(self.encoding, req.headers().get_all(name).iter())
            }
        }
    }

    /// The verify flow: signatures, timestamp and tolerance, id, URL, then every (key ×
    /// signature) pair through `check(key_index, pieces, signature)` until one holds. The
    /// fingerprint (the replay key when the id is not signed) is a SHA-256 of the signed
    /// content, not of the signature: the same whichever key matched and whichever valid
    /// form the signature came in (ECDSA has four for each), so a copy cut down to
    /// another key's signature, or re-encoded, is still a copy.
    /// Public keys and signatures are public: no constant-time comparison is needed.
    pub(crate) fn verify<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        now: OffsetDateTime,
        keys: usize,
        check: impl Fn(usize, &[&[u8]], &[u8]) -> bool,
    ) -> Result<Verified<'a>, Rejection> {
        let (signatures, ts_param) = self.candidates(req)?;
        // Each (key × signature) check hashes the whole signed content again (Ed25519's
        // hash depends on the signature): a sender that needs more is rotating more keys
        // than anyone does, and a forger would make one request cost 16 passes.
        if signatures.len() > MAX_PUBLIC_KEY_SIGNATURES {
            return Err(Rejection::with_detail(
                Reason::TooManySignatures,
                Detail::Limit { max: MAX_PUBLIC_KEY_SIGNATURES },
            ));
        }
        let inputs = self.envelope.read(req, ts_param, now)?;
        let values = inputs.values();
        let owned = self.envelope.content.slices(&values);
        let pieces: Vec<&[u8]> = owned.iter().map(AsRef::as_ref).collect();
        for key_index in 0..keys {
            for signature in &signatures {
                if check(key_index, &pieces, signature) {
                    let print = {
                        use sha2::Digest as _;
                        let mut hash = sha2::Sha256::new();
                        for piece in &pieces {
                            hash.update(piece);
                        }
                        hash.finalize().into()
                    };
                    return Ok(self.envelope.verified(
                        self.provider.as_ref(),
                        req,
                        inputs.into_checked(),
                        print,
                        key_index,
                    ));
                }
            }
        }
        Err(Rejection::with_detail(
            Reason::SignatureMismatch,
            Detail::Compared { signatures: signatures.len(), secrets: keys },
        ))
    }

    /// The sign flow: the signature header first, then the timestamp and id headers.
    #[cfg_attr(not(feature = "ed25519"), allow(dead_code))]
    pub(crate) fn sign(
        &self,
        msg: &Outgoing<'_>,
        sign: impl FnOnce(&[&[u8]]) -> Result<Vec<u8>, SignError>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let sig_header = first_header(&self.signature)
            .ok_or(SignError::Unsupported("the signature travels in the body"))?;
        let prepared = self.envelope.prepare(msg)?;
        let values = prepared.values();
        let owned = self.envelope.content.slices(&values);
        let pieces: Vec<&[u8]> = owned.iter().map(AsRef::as_ref).collect();
        let signature = sign(&pieces)?;
        let in_header = self.envelope.timestamp_in_signature(self.format);
        let value = self.format.render(
            self.encoding,
            &signature,
            if in_header { prepared.ts_text.as_deref() } else { None },
        );
        let mut headers = prepared.headers;
        headers.insert(0, (sig_header.clone(), header_value(value)?));
        Ok(headers)
    }
}

/// The description methods every public-key scheme builder has; the builder holds a
/// `layout: Layout`.
macro_rules! layout_builder_methods {
    () => {
        /// Where the signature is, how it is laid out and encoded. A
        /// [`Field::Any`](crate::verify::Field::Any) of headers uses the first one
        /// present; a [`Field::Json`](crate::verify::Field::Json) reads it from the body.
        ///
        /// Shown with `Ed25519Scheme`; `EcdsaP256Scheme`'s builder takes the same.
        ///
        /// ```
        /// # fn signed(scheme: &impl hookguard::verify::Sign, msg: &hookguard::verify::Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
        /// #     let mut req = http::Request::post(uri);
        /// #     for (name, value) in scheme.sign(msg).unwrap() {
        /// #         req = req.header(name, value);
        /// #     }
        /// #     req.body(msg.body().to_vec()).unwrap()
        /// # }
        /// # #[cfg(feature = "ed25519")] {
        /// use hookguard::verify::{Ed25519Scheme, Encoding, Field, Outgoing, Scheme, SignatureFormat, WebhookRequest};
        /// let scheme = Ed25519Scheme::builder("acme")
        ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "ed25519=" }, Encoding::Base64)
        ///     .signing_key([7; 32])
        ///     .build()
        ///     .unwrap();
        /// let req = signed(&scheme, &Outgoing::new(b"{}"), "/hooks");
        /// assert!(req.headers()["x-acme-signature"].to_str().unwrap().starts_with("ed25519="));
        /// assert!(scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
        /// # }
        /// ```
        pub fn signature(
            mut self,
            field: crate::verify::Field,
            format: crate::verify::SignatureFormat,
            encoding: crate::verify::Encoding,
        ) -> Self {
            self.layout.signature = field;
            self.layout.format = format;
            self.layout.encoding = encoding;
            self
        }

        /// What is signed (default: the body).
        ///
        /// Shown with `Ed25519Scheme`; `EcdsaP256Scheme`'s builder takes the same.
        ///
        /// ```
        /// # fn signed(scheme: &impl hookguard::verify::Sign, msg: &hookguard::verify::Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
        /// #     let mut req = http::Request::post(uri);
        /// #     for (name, value) in scheme.sign(msg).unwrap() {
        /// #         req = req.header(name, value);
        /// #     }
        /// #     req.body(msg.body().to_vec()).unwrap()
        /// # }
        /// # #[cfg(feature = "ed25519")] {
        /// use hookguard::verify::{Ed25519Scheme, Encoding, Field, Outgoing, Scheme, SignatureFormat, WebhookRequest};
        /// use hookguard::verify::{Piece, Reason, SignedContent};
        /// let describe = |content: SignedContent| {
        ///     Ed25519Scheme::builder("acme")
        ///         .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        ///         .content(content)
        ///         .signing_key([7; 32])
        ///         .build()
        ///         .unwrap()
        /// };
        /// let prefixed = describe(SignedContent::new(vec![Piece::Literal(b"v1:"), Piece::Body]));
        /// let body_only = describe(SignedContent::new(vec![Piece::Body]));
        /// let req = signed(&prefixed, &Outgoing::new(b"{}"), "/hooks");
        /// let req = WebhookRequest::from_request(&req);
        /// let now = time::OffsetDateTime::now_utc();
        /// assert!(prefixed.verify(&req, now).is_ok());
        /// // The same key over other content: the signature does not verify.
        /// assert_eq!(body_only.verify(&req, now).unwrap_err().reason(), Reason::SignatureMismatch);
        /// # }
        /// ```
        pub fn content(mut self, content: crate::verify::SignedContent) -> Self {
            self.layout.envelope.content = content;
            self
        }

        /// Where the timestamp is and how it is written.
        ///
        /// Shown with `Ed25519Scheme`; `EcdsaP256Scheme`'s builder takes the same.
        ///
        /// ```
        /// # fn signed(scheme: &impl hookguard::verify::Sign, msg: &hookguard::verify::Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
        /// #     let mut req = http::Request::post(uri);
        /// #     for (name, value) in scheme.sign(msg).unwrap() {
        /// #         req = req.header(name, value);
        /// #     }
        /// #     req.body(msg.body().to_vec()).unwrap()
        /// # }
        /// # #[cfg(feature = "ed25519")] {
        /// use hookguard::verify::{Ed25519Scheme, Encoding, Field, Outgoing, Scheme, SignatureFormat, WebhookRequest};
        /// use hookguard::verify::{Piece, SignedContent, TimestampFormat};
        /// let scheme = Ed25519Scheme::builder("acme")
        ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        ///     .timestamp(Field::header("x-acme-timestamp"), TimestampFormat::UnixSeconds)
        ///     .content(SignedContent::new(vec![Piece::Timestamp, Piece::Literal(b"."), Piece::Body]))
        ///     .signing_key([7; 32])
        ///     .build()
        ///     .unwrap();
        /// let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        /// let req = signed(&scheme, &Outgoing::new(b"{}").timestamp(at), "/hooks");
        /// assert_eq!(req.headers()["x-acme-timestamp"], "1700000000");
        /// let verified = scheme.verify(&WebhookRequest::from_request(&req), at).unwrap();
        /// assert_eq!(verified.timestamp(), Some(at));
        /// # }
        /// ```
        pub fn timestamp(
            mut self,
            field: crate::verify::Field,
            format: crate::verify::TimestampFormat,
        ) -> Self {
            self.layout.envelope.timestamp = Some((field, format));
            self
        }

        /// The tolerance (default none; needs a timestamp).
        ///
        /// Shown with `Ed25519Scheme`; `EcdsaP256Scheme`'s builder takes the same.
        ///
        /// ```
        /// # fn signed(scheme: &impl hookguard::verify::Sign, msg: &hookguard::verify::Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
        /// #     let mut req = http::Request::post(uri);
        /// #     for (name, value) in scheme.sign(msg).unwrap() {
        /// #         req = req.header(name, value);
        /// #     }
        /// #     req.body(msg.body().to_vec()).unwrap()
        /// # }
        /// # #[cfg(feature = "ed25519")] {
        /// use std::time::Duration;
        /// use hookguard::verify::{Ed25519Scheme, Encoding, Field, Outgoing, Scheme, SignatureFormat, WebhookRequest};
        /// use hookguard::verify::{Piece, Reason, SignedContent, TimestampFormat, Tolerance};
        /// let scheme = Ed25519Scheme::builder("acme")
        ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        ///     .timestamp(Field::header("x-acme-timestamp"), TimestampFormat::UnixSeconds)
        ///     .content(SignedContent::new(vec![Piece::Timestamp, Piece::Literal(b"."), Piece::Body]))
        ///     .tolerance(Tolerance::symmetric(Duration::from_secs(300)))
        ///     .signing_key([7; 32])
        ///     .build()
        ///     .unwrap();
        /// let sent = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        /// let req = signed(&scheme, &Outgoing::new(b"{}").timestamp(sent), "/hooks");
        /// let req = WebhookRequest::from_request(&req);
        /// assert!(scheme.verify(&req, sent + Duration::from_secs(299)).is_ok());
        /// let late = scheme.verify(&req, sent + Duration::from_secs(301)).unwrap_err();
        /// assert_eq!(late.reason(), Reason::TimestampTooOld);
        /// # }
        /// ```
        pub fn tolerance(mut self, tolerance: crate::verify::Tolerance) -> Self {
            self.layout.envelope.tolerance = tolerance;
            self
        }

        /// Where the delivery id is (the replay key when present).
        ///
        /// Shown with `Ed25519Scheme`; `EcdsaP256Scheme`'s builder takes the same.
        ///
        /// ```
        /// # fn signed(scheme: &impl hookguard::verify::Sign, msg: &hookguard::verify::Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
        /// #     let mut req = http::Request::post(uri);
        /// #     for (name, value) in scheme.sign(msg).unwrap() {
        /// #         req = req.header(name, value);
        /// #     }
        /// #     req.body(msg.body().to_vec()).unwrap()
        /// # }
        /// # #[cfg(feature = "ed25519")] {
        /// use hookguard::verify::{Ed25519Scheme, Encoding, Field, Outgoing, Scheme, SignatureFormat, WebhookRequest};
        /// use hookguard::verify::{Piece, SignedContent};
        /// let scheme = Ed25519Scheme::builder("acme")
        ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        ///     .id(Field::header("x-acme-delivery"))
        ///     .content(SignedContent::new(vec![Piece::Id, Piece::Literal(b"."), Piece::Body]))
        ///     .signing_key([7; 32])
        ///     .build()
        ///     .unwrap();
        /// let req = signed(&scheme, &Outgoing::new(b"{}").id("d-42"), "/hooks");
        /// let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
        /// assert_eq!(verified.id(), Some("d-42"));
        /// // Signed here: the id is the replay key.
        /// assert!(verified.id_is_signed());
        /// # }
        /// ```
        pub fn id(mut self, field: crate::verify::Field) -> Self {
            self.layout.envelope.id = Some(field);
            self
        }

        /// Where the event type is.
        ///
        /// Shown with `Ed25519Scheme`; `EcdsaP256Scheme`'s builder takes the same.
        ///
        /// ```
        /// # fn signed(scheme: &impl hookguard::verify::Sign, msg: &hookguard::verify::Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
        /// #     let mut req = http::Request::post(uri);
        /// #     for (name, value) in scheme.sign(msg).unwrap() {
        /// #         req = req.header(name, value);
        /// #     }
        /// #     req.body(msg.body().to_vec()).unwrap()
        /// # }
        /// # #[cfg(feature = "ed25519")] {
        /// use hookguard::verify::{Ed25519Scheme, Encoding, Field, Outgoing, Scheme, SignatureFormat, WebhookRequest};
        /// let scheme = Ed25519Scheme::builder("acme")
        ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        ///     .event(Field::Json(&["type"]))
        ///     .signing_key([7; 32])
        ///     .build()
        ///     .unwrap();
        /// let req = signed(&scheme, &Outgoing::new(br#"{"type":"invoice.paid"}"#), "/hooks");
        /// let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
        /// assert_eq!(verified.event(), Some("invoice.paid"));
        /// # }
        /// ```
        pub fn event(mut self, field: crate::verify::Field) -> Self {
            self.layout.envelope.event = Some(field);
            self
        }

        /// A fixed URL to sign instead of the request's.
        ///
        /// Shown with `Ed25519Scheme`; `EcdsaP256Scheme`'s builder takes the same.
        ///
        /// ```
        /// # fn signed(scheme: &impl hookguard::verify::Sign, msg: &hookguard::verify::Outgoing<'_>, uri: &str) -> http::Request<Vec<u8>> {
        /// #     let mut req = http::Request::post(uri);
        /// #     for (name, value) in scheme.sign(msg).unwrap() {
        /// #         req = req.header(name, value);
        /// #     }
        /// #     req.body(msg.body().to_vec()).unwrap()
        /// # }
        /// # #[cfg(feature = "ed25519")] {
        /// use hookguard::verify::{Ed25519Scheme, Encoding, Field, Outgoing, Scheme, SignatureFormat, WebhookRequest};
        /// use hookguard::verify::{Piece, SignedContent};
        /// let scheme = Ed25519Scheme::builder("acme")
        ///     .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        ///     .content(SignedContent::new(vec![Piece::Body, Piece::Url]))
        ///     .url("https://example.com/hooks/acme")
        ///     .signing_key([7; 32])
        ///     .build()
        ///     .unwrap();
        /// // Received on an internal path, verified against the registered URL.
        /// let req = signed(&scheme, &Outgoing::new(b"{}"), "/internal/acme");
        /// assert!(scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
        /// # }
        /// ```
        pub fn url(mut self, url: impl Into<std::borrow::Cow<'static, str>>) -> Self {
            self.layout.envelope.url = Some(url.into());
            self
        }
    };
}
pub(crate) use layout_builder_methods;
