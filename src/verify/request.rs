//! What the core sees of a request, and what it says of one that verified.

use std::{borrow::Cow, fmt, sync::OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use time::OffsetDateTime;

use super::{
    json,
    rejection::{Detail, Reason, Rejection},
};

/// A borrowed view of an incoming webhook: method, URI, headers and the raw body bytes
/// exactly as received (any bytes, not only UTF-8), plus the public URL the sender
/// called when the scheme signs it.
///
/// ```
/// use hookguard::verify::WebhookRequest;
///
/// let req = http::Request::post("/hooks/github")
///     .header("x-hub-signature-256", "sha256=00")
///     .body(b"{}".to_vec())
///     .unwrap();
/// let view = WebhookRequest::from_request(&req);
/// assert_eq!(view.body(), b"{}");
/// // Debug shows no header value, query or body: a shared token travels in them.
/// assert!(!format!("{view:?}").contains("sha256=00"));
/// ```
#[derive(Clone, Copy)]
pub struct WebhookRequest<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
    url: Option<&'a str>,
}

/// The method, the path, the header names and the body's length: header values, the
/// query and the body may carry a shared token (GitLab's `X-Gitlab-Token`) or personal
/// data, and a request is the kind of value that gets logged with `{:?}`.
impl fmt::Debug for WebhookRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Names<'a>(&'a HeaderMap);
        impl fmt::Debug for Names<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.keys()).finish()
            }
        }
        f.debug_struct("WebhookRequest")
            .field("method", self.method)
            .field("path", &self.uri.path())
            .field("headers", &Names(self.headers))
            .field("body_len", &self.body.len())
            .field("url", &self.url.is_some())
            .finish()
    }
}

impl<'a> WebhookRequest<'a> {
    /// A view over the request's pieces.
    ///
    /// ```
    /// # use hookguard::verify::WebhookRequest;
    /// let (method, uri, headers) = (http::Method::POST, http::Uri::from_static("/h"), http::HeaderMap::new());
    /// let req = WebhookRequest::new(&method, &uri, &headers, b"body");
    /// assert_eq!(req.method(), http::Method::POST);
    /// ```
    #[must_use]
    pub const fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Self { method, uri, headers, body, url: None }
    }

    /// A view over request head parts and the body.
    ///
    /// ```
    /// # use hookguard::verify::WebhookRequest;
    /// let (parts, ()) = http::Request::post("/h").body(()).unwrap().into_parts();
    /// assert_eq!(WebhookRequest::from_parts(&parts, b"").uri().path(), "/h");
    /// ```
    #[must_use]
    pub fn from_parts(parts: &'a http::request::Parts, body: &'a [u8]) -> Self {
        Self::new(&parts.method, &parts.uri, &parts.headers, body)
    }

    /// A view over a whole request whose body is bytes.
    ///
    /// ```
    /// # use hookguard::verify::WebhookRequest;
    /// let req = http::Request::post("/hooks?x=1").header("x-event", "push").body(b"{}".to_vec()).unwrap();
    /// let view = WebhookRequest::from_request(&req);
    /// assert_eq!(view.body(), b"{}");
    /// ```
    #[must_use]
    pub fn from_request<B: AsRef<[u8]>>(req: &'a http::Request<B>) -> Self {
        Self::new(req.method(), req.uri(), req.headers(), req.body().as_ref())
    }

    /// The full URL the sender called (`https://example.com/hooks/twilio?x=1`), for
    /// schemes that sign it (Twilio, HubSpot, Square, Trello). Behind a proxy the server
    /// sees only a path; the public URL has to come from configuration.
    ///
    /// ```
    /// # use hookguard::verify::WebhookRequest;
    /// let req = http::Request::post("/h").body(Vec::new()).unwrap();
    /// let view = WebhookRequest::from_request(&req).with_url("https://example.com/h");
    /// assert_eq!(view.url().unwrap(), "https://example.com/h");
    /// ```
    #[must_use]
    pub const fn with_url(mut self, url: &'a str) -> Self {
        self.url = Some(url);
        self
    }

    /// The method.
    ///
    /// ```
    /// # use hookguard::verify::WebhookRequest;
    /// let req = http::Request::post("/hooks?x=1").header("x-event", "push").body(b"{}".to_vec()).unwrap();
    /// let view = WebhookRequest::from_request(&req);
    /// assert_eq!(view.method(), http::Method::POST);
    /// ```
    #[must_use]
    pub const fn method(&self) -> &'a Method {
        self.method
    }

    /// The URI as the server received it.
    ///
    /// ```
    /// # use hookguard::verify::WebhookRequest;
    /// let req = http::Request::post("/hooks?x=1").header("x-event", "push").body(b"{}".to_vec()).unwrap();
    /// let view = WebhookRequest::from_request(&req);
    /// assert_eq!(view.uri().query(), Some("x=1"));
    /// ```
    #[must_use]
    pub const fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The headers.
    ///
    /// ```
    /// # use hookguard::verify::WebhookRequest;
    /// let req = http::Request::post("/hooks?x=1").header("x-event", "push").body(b"{}".to_vec()).unwrap();
    /// let view = WebhookRequest::from_request(&req);
    /// assert_eq!(view.headers()["x-event"], "push");
    /// ```
    #[must_use]
    pub const fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The raw body.
    ///
    /// ```
    /// # use hookguard::verify::WebhookRequest;
    /// let req = http::Request::post("/hooks?x=1").header("x-event", "push").body(b"{}".to_vec()).unwrap();
    /// let view = WebhookRequest::from_request(&req);
    /// assert_eq!(view.body().len(), 2);
    /// ```
    #[must_use]
    pub const fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The public URL, as given with [`with_url`](Self::with_url) (the guard gives its
    /// [`public_origin`](crate::guard::GuardBuilder::public_origin) and the request's path
    /// and query).
    ///
    /// Never the request's own URI, even when it is absolute: its scheme and authority
    /// are the client's to write (an absolute-form HTTP/1.1 target, HTTP/2's `:authority`),
    /// and a URL-signing scheme would then take a request signed for another URL (a
    /// staging host sharing the account's key) as signed for this one.
    ///
    /// # Errors
    /// [`Reason::MissingUrl`] when no URL was given.
    ///
    /// ```
    /// use hookguard::verify::{Reason, WebhookRequest};
    /// let req = http::Request::post("https://staging.example/sms").body(Vec::new()).unwrap();
    /// let request = WebhookRequest::from_request(&req);
    /// assert_eq!(request.url().unwrap_err().reason(), Reason::MissingUrl);
    /// let request = request.with_url("https://hooks.example.com/sms");
    /// assert_eq!(request.url().unwrap(), "https://hooks.example.com/sms");
    /// ```
    pub fn url(&self) -> Result<Cow<'a, str>, Rejection> {
        match self.url {
            Some(url) => Ok(Cow::Borrowed(url)),
            None => Err(Rejection::new(Reason::MissingUrl)),
        }
    }
}

/// Where a scheme finds one value: a header, a member of a JSON body, the timestamp
/// parameter of the signature header, or the first of several places that is present.
///
/// ```
/// use hookguard::verify::{Field, Scheme, TokenScheme, WebhookRequest};
/// use http::HeaderName;
///
/// // `HeaderName` holds an atomic, so lists of header fields live in a `static`.
/// static IDS: [Field; 2] = [
///     Field::Header(HeaderName::from_static("svix-id")),
///     Field::Header(HeaderName::from_static("webhook-id")),
/// ];
/// let scheme = TokenScheme::new("acme", Field::header("x-acme-token"), "tok3n").unwrap().with_id(Field::Any(&IDS));
/// let req = http::Request::post("/")
///     .header("x-acme-token", "tok3n")
///     .header("webhook-id", "w-1")
///     .body(Vec::new())
///     .unwrap();
/// let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
/// assert_eq!(verified.id(), Some("w-1"), "no svix-id: the next place holds it");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// A header (its first occurrence). Values must be visible ASCII.
    Header(HeaderName),
    /// A string or number member of a JSON body, by its path of object keys.
    Json(&'static [&'static str]),
    /// The timestamp parameter inside the signature header (`t=` for Stripe, `ts=` for
    /// Paddle); only meaningful for a timestamp.
    SignatureParam,
    /// The first of these that is present.
    Any(&'static [Field]),
}

impl Field {
    /// A header field (not `const`: use [`Field::Header`] with
    /// [`HeaderName::from_static`] in constants).
    ///
    /// # Panics
    /// Never: an invalid name gives a field that is never present. Prefer
    /// [`HeaderName::from_static`], which checks at compile time.
    ///
    /// ```
    /// # use hookguard::verify::Field;
    /// assert_eq!(Field::header("X-Delivery"), Field::Header(http::HeaderName::from_static("x-delivery")));
    /// ```
    #[must_use]
    pub fn header(name: &str) -> Self {
        match HeaderName::try_from(name) {
            Ok(name) => Self::Header(name),
            Err(_) => Self::Any(&[]),
        }
    }

    /// A value of this (header) field as text: `MalformedHeader` when it is not visible
    /// ASCII, space or tab (`HeaderValue::to_str`, one pass: no second UTF-8 check).
    pub(crate) fn header_text<'a>(
        &self,
        value: Option<&'a HeaderValue>,
    ) -> Result<Option<&'a str>, Rejection> {
        match value {
            None => Ok(None),
            Some(value) => value
                .to_str()
                .map(Some)
                .map_err(|_| Rejection::with_detail(Reason::MalformedHeader, self.detail())),
        }
    }

    /// The field's text in this request, if present.
    ///
    /// `signature_param` is the timestamp parameter parsed from the signature header.
    pub(crate) fn text<'a>(
        &self,
        req: &WebhookRequest<'a>,
        signature_param: Option<&'a [u8]>,
    ) -> Result<Option<Cow<'a, str>>, Rejection> {
        Ok(self.text_from(req, signature_param)?.map(|(text, _)| text))
    }

    /// [`text`](Self::text), and the place that held it (for [`Field::Any`], the first of
    /// its places that is present; else this field).
    pub(crate) fn text_from<'a>(
        &self,
        req: &WebhookRequest<'a>,
        signature_param: Option<&'a [u8]>,
    ) -> Result<Option<(Cow<'a, str>, &Self)>, Rejection> {
        let text = match self {
            Self::Header(name) => self.header_text(req.headers().get(name))?.map(Cow::Borrowed),
            Self::Json(path) => json::text_at(req.body(), path).map_err(|()| {
                Rejection::with_detail(Reason::MalformedBody, Detail::Text("body is not JSON"))
            })?,
            Self::SignatureParam => {
                signature_param.and_then(|raw| std::str::from_utf8(raw).ok()).map(Cow::Borrowed)
            }
            Self::Any(fields) => {
                for field in *fields {
                    if let Some(found) = field.text_from(req, signature_param)? {
                        return Ok(Some(found));
                    }
                }
                None
            }
        };
        Ok(text.map(|text| (text, self)))
    }

    /// A name for messages: the first header involved, or a fixed word.
    pub(crate) fn detail(&self) -> Detail {
        match self {
            Self::Header(name) => Detail::Header(name.clone()),
            Self::Json(_) => Detail::Text("body member"),
            Self::SignatureParam => Detail::Text("signature header parameter"),
            Self::Any(fields) => fields.first().map_or(Detail::None, Field::detail),
        }
    }
}

/// Whether the bytes are visible ASCII, space or tab (what `HeaderValue::to_str`
/// accepts).
pub(crate) fn is_visible(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| (b' '..=b'~').contains(&b) || b == b'\t')
}

/// What a verified request proved, and the key to deduplicate it by.
///
/// Borrows from the request and the scheme; [`Verified::into_owned`] detaches it.
///
/// ```
/// use hookguard::{providers::github, verify::{Scheme, WebhookRequest}};
///
/// let scheme = github::scheme("It's a Secret to Everybody").unwrap();
/// let req = http::Request::post("/hooks/github")
///     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
///     .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
///     .header("x-github-event", "push")
///     .body(b"Hello, World!".to_vec())
///     .unwrap();
/// let now = time::OffsetDateTime::now_utc();
/// let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
/// assert_eq!(verified.provider(), "github");
/// assert_eq!(verified.id(), Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
/// assert_eq!(verified.event(), Some("push"));
/// // GitHub signs the body only: a delivery id header could be changed on a replay, so
/// // the replay key is the signature's fingerprint, not the id.
/// assert!(!verified.id_is_signed());
/// assert_eq!(verified.dedup_key(), verified.fingerprint());
/// ```
#[derive(Clone)]
pub struct Verified<'a> {
    provider: Cow<'a, str>,
    id: Option<Cow<'a, str>>,
    /// Whether the signature covers the id (else the replay key is the fingerprint).
    id_signed: bool,
    /// Nanoseconds since the epoch, within `time`'s range; a date is built when asked for.
    timestamp: Option<i128>,
    /// Whether the signature covers the timestamp (else its freshness proves nothing).
    timestamp_signed: bool,
    event: Event<'a>,
    fingerprint: [u8; 32],
    key_index: usize,
    /// Headers that carried a secret (a shared token) rather than a signature.
    secret_headers: Cow<'a, [HeaderName]>,
    /// Whether a copy of this delivery can be told from a new one ([`Self::has_replay_key`]).
    replay_key: bool,
}

/// The event type: known when the request verified, or a member of the JSON body read
/// on first use (verification does not pay for a body scan nobody asks for).
#[derive(Clone)]
pub(crate) enum Event<'a> {
    Known(Option<Cow<'a, str>>),
    InBody { body: &'a [u8], path: &'static [&'static str], read: OnceLock<Option<Cow<'a, str>>> },
}

impl<'a> Event<'a> {
    /// The member at `path` of the JSON `body` (none when the body is not JSON or has no
    /// such member).
    pub(crate) const fn in_body(body: &'a [u8], path: &'static [&'static str]) -> Self {
        Self::InBody { body, path, read: OnceLock::new() }
    }
}

impl fmt::Debug for Verified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("provider", &self.provider)
            .field("id", &self.id)
            .field("timestamp", &self.timestamp())
            .field("event", &self.event())
            .field("fingerprint", &self.fingerprint)
            .field("key_index", &self.key_index)
            .field("secret_headers", &self.secret_headers)
            .field("replay_key", &self.replay_key)
            .finish()
    }
}

impl PartialEq for Verified<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.provider == other.provider
            && self.id == other.id
            && self.id_signed == other.id_signed
            && self.timestamp == other.timestamp
            && self.timestamp_signed == other.timestamp_signed
            && self.event() == other.event()
            && self.fingerprint == other.fingerprint
            && self.key_index == other.key_index
            && self.secret_headers == other.secret_headers
            && self.replay_key == other.replay_key
    }
}

impl Eq for Verified<'_> {}

impl<'a> Verified<'a> {
    /// Assembles a verification result (for custom [`Scheme`](super::Scheme)s).
    ///
    /// `fingerprint` identifies this exact delivery when the provider sends no id: a
    /// SHA-256 of the MAC or of an asymmetric signature. It is kept and logged as the
    /// dedup key: never a MAC the request did not carry (one computed under another
    /// secret would be a valid signature under it). `key_index` is the position of the
    /// secret that matched.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let v = Verified::new("acme", None, None, None, [7; 32], 0);
    /// assert_eq!(v.dedup_key(), &[7; 32]);
    /// ```
    #[must_use]
    pub fn new(
        provider: impl Into<Cow<'a, str>>,
        id: Option<Cow<'a, str>>,
        timestamp: Option<OffsetDateTime>,
        event: Option<Cow<'a, str>>,
        fingerprint: [u8; 32],
        key_index: usize,
    ) -> Self {
        Self {
            provider: provider.into(),
            id,
            id_signed: true,
            timestamp: timestamp.map(OffsetDateTime::unix_timestamp_nanos),
            timestamp_signed: true,
            event: Event::Known(event),
            fingerprint,
            key_index,
            secret_headers: Cow::Borrowed(&[]),
            replay_key: true,
        }
    }

    /// Names the headers that carried a secret rather than a signature (a shared token,
    /// for custom [`Scheme`](super::Scheme)s): the guard leaves them out of what it keeps,
    /// and middleware mode (`Verify`, Tower and actix) removes them from the request before
    /// the handler runs, so that neither the inbox nor the handler sees the token (as
    /// [`TokenScheme`](super::TokenScheme) does for its header). An extractor used without
    /// `Verify` cannot take them out of the request the handler holds.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// static TOKEN: [http::HeaderName; 1] = [http::HeaderName::from_static("x-acme-token")];
    /// let v = Verified::new("acme", None, None, None, [7; 32], 0).with_secret_headers(&TOKEN);
    /// assert_eq!(v.secret_headers(), &TOKEN);
    /// ```
    #[must_use]
    pub fn with_secret_headers(mut self, names: &'a [HeaderName]) -> Self {
        self.secret_headers = Cow::Borrowed(names);
        self
    }

    /// The headers that carried a secret rather than a signature (see
    /// [`with_secret_headers`](Self::with_secret_headers)); usually none.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// assert!(Verified::new("acme", None, None, None, [7; 32], 0).secret_headers().is_empty());
    /// ```
    #[must_use]
    pub fn secret_headers(&self) -> &[HeaderName] {
        &self.secret_headers
    }

    /// The provider's name, as in PROVIDERS.md (`stripe`, `standard-webhooks`, …).
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// assert_eq!(Verified::new("stripe", None, None, None, [0; 32], 0).provider(), "stripe");
    /// ```
    #[must_use]
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The delivery id the provider sent, if any.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// assert_eq!(v.id(), Some("d-1"));
    /// ```
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Whether the signature covers the delivery id (`true` when there is none). When it
    /// does not (GitHub's `X-GitHub-Delivery`, Shopify's, Bitbucket's and Linear's id
    /// headers: they sign the body only), anyone holding one genuine delivery could send
    /// it again under a new id, so the [replay key](Self::dedup_key) is the signature's
    /// fingerprint instead; the id stays for logs and labels.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [7; 32], 0);
    /// assert!(v.id_is_signed());
    /// let unsigned = v.with_unsigned_id();
    /// assert!(!unsigned.id_is_signed());
    /// assert_eq!(unsigned.dedup_key(), &[7; 32]);
    /// ```
    #[must_use]
    pub const fn id_is_signed(&self) -> bool {
        self.id_signed || self.id.is_none()
    }

    /// Marks the id as not covered by the signature (for custom
    /// [`Scheme`](super::Scheme)s): the replay key becomes the fingerprint.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let v = Verified::new("acme", Some("d-1".into()), None, None, [7; 32], 0).with_unsigned_id();
    /// assert_eq!(v.id(), Some("d-1"));
    /// assert_eq!(v.dedup_key(), &[7; 32]);
    /// ```
    #[must_use]
    pub const fn with_unsigned_id(mut self) -> Self {
        self.id_signed = false;
        self
    }

    /// What identifies this exact delivery when there is no signed id: a SHA-256 of the
    /// MAC (never the MAC itself: it is the first secret's, whichever secret matched, and
    /// kept as it is it would be a valid signature under the first secret) or of the
    /// signature; for a scheme that signs a timestamp with the body, with a literal on
    /// both sides of the timestamp (Zoom, Slack's form bodies, Calendly), a SHA-256 of
    /// everything signed but the timestamp (the body, and the method and URL where
    /// signed), which a retry signed anew with a later timestamp keeps. Where a numeric
    /// timestamp touches its neighbour (Discord's and SendGrid's `{timestamp}{body}`,
    /// HubSpot v3), the MAC's digest: digits could move across the boundary under one
    /// signature.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// assert_eq!(Verified::new("acme", None, None, None, [7; 32], 0).fingerprint(), &[7; 32]);
    /// ```
    #[must_use]
    pub const fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// The signed timestamp, if the scheme has one.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    /// assert_eq!(Verified::new("slack", None, Some(at), None, [0; 32], 0).timestamp(), Some(at));
    /// assert_eq!(Verified::new("github", None, None, None, [0; 32], 0).timestamp(), None);
    /// ```
    #[must_use]
    pub const fn timestamp(&self) -> Option<OffsetDateTime> {
        match self.timestamp {
            // In range by construction: the `Err` arm is never taken.
            Some(nanos) => match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
                Ok(at) => Some(at),
                Err(_) => None,
            },
            None => None,
        }
    }

    /// Whether the signature covers the timestamp (`true` when there is none). When it
    /// does not (Linear's `linear-timestamp` header, read when the body has no
    /// `webhookTimestamp`), its freshness proves nothing: a copy could carry a new one, so
    /// the guard keeps such a delivery's replay mark as long as an untimed one's.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    /// let v = Verified::new("acme", None, Some(at), None, [7; 32], 0);
    /// assert!(v.timestamp_is_signed());
    /// assert!(!v.with_unsigned_timestamp().timestamp_is_signed());
    /// ```
    #[must_use]
    pub const fn timestamp_is_signed(&self) -> bool {
        self.timestamp_signed || self.timestamp.is_none()
    }

    /// Marks the timestamp as not covered by the signature (for custom
    /// [`Scheme`](super::Scheme)s); see [`timestamp_is_signed`](Self::timestamp_is_signed).
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    /// let v = Verified::new("acme", None, Some(at), None, [7; 32], 0).with_unsigned_timestamp();
    /// assert_eq!(v.timestamp(), Some(at));
    /// ```
    #[must_use]
    pub const fn with_unsigned_timestamp(mut self) -> Self {
        self.timestamp_signed = false;
        self
    }

    /// The event type, if the provider says it outside the payload (or the preset reads
    /// it from the payload).
    ///
    /// Read from a header (GitHub's `X-GitHub-Event`, GitLab's, Bitbucket's, Shopify's
    /// topic, Twitch's and Linear's when the body has none), it is not covered by the
    /// signature, which signs the body: a copy of a genuine delivery with that header
    /// changed verifies as well. Its replay key does not depend on the header, so the copy
    /// is refused while the first delivery's mark lives (72 hours by default where the
    /// scheme has no timestamp); after that, read the event from the body where a decision
    /// rests on it.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let v = Verified::new("github", None, None, Some("push".into()), [0; 32], 0);
    /// assert_eq!(v.event(), Some("push"));
    /// ```
    #[must_use]
    pub fn event(&self) -> Option<&str> {
        match &self.event {
            Event::Known(event) => event.as_deref(),
            Event::InBody { body, path, read } => {
                read.get_or_init(|| json::text_at(body, path).ok().flatten()).as_deref()
            }
        }
    }

    /// Which configured secret matched (0 for the first); useful to see when a rotated
    /// secret stops being used.
    ///
    /// ```
    /// use hookguard::{providers::github, verify::{Scheme, Sign, Outgoing, WebhookRequest}};
    /// let old = github::scheme("old").unwrap();
    /// let rotating = github::scheme("new").unwrap().with_secret("old").unwrap();
    /// let mut req = http::Request::post("/hooks");
    /// for (name, value) in old.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let req = req.body(b"{}".to_vec()).unwrap();
    /// let verified = rotating.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
    /// assert_eq!(verified.key_index(), 1, "still signed with the old secret");
    /// ```
    #[must_use]
    pub const fn key_index(&self) -> usize {
        self.key_index
    }

    /// The replay key: the delivery id when the signature covers it, else the fingerprint
    /// of the signature (so an identical resend is still recognised, and a resend under
    /// another unsigned id too). For a delivery without one
    /// ([`has_replay_key`](Self::has_replay_key) is `false`) this is the fingerprint all
    /// the same, but it is not a replay key: identical deliveries are distinct events, and
    /// a check of your own must not take one for a copy of another.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let signed_id = Verified::new("stripe", Some("evt_1".into()), None, None, [7; 32], 0);
    /// assert_eq!(signed_id.dedup_key(), b"evt_1");
    /// let no_id = Verified::new("stripe", None, None, None, [7; 32], 0);
    /// assert_eq!(no_id.dedup_key(), &[7; 32]);
    /// ```
    #[must_use]
    pub fn dedup_key(&self) -> &[u8] {
        match &self.id {
            Some(id) if self.id_signed => id.as_bytes(),
            _ => &self.fingerprint,
        }
    }

    /// Whether a copy of this delivery can be told from a new one: `true` unless the
    /// scheme says its provider sends the same bytes again for new events and nothing
    /// (no id, no timestamp) tells them apart ([`without_replay_key`](Self::without_replay_key):
    /// Dropbox's change notices). Without one, the guard takes every such delivery as new:
    /// no replay mark, and its own key in the inbox (the fingerprint and a random
    /// suffix), so that a second notice is not answered `200 duplicate` and lost.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// assert!(Verified::new("acme", None, None, None, [7; 32], 0).has_replay_key());
    /// ```
    #[must_use]
    pub const fn has_replay_key(&self) -> bool {
        self.replay_key
    }

    /// Says that this delivery has no replay key (for custom [`Scheme`](super::Scheme)s;
    /// [`HmacSchemeBuilder::no_replay_key`](super::HmacSchemeBuilder::no_replay_key) for
    /// described ones): its provider sends identical bytes for distinct events, so a
    /// copy cannot be told from a new delivery, and every one is handled. A replayed
    /// copy is handled again too: only for a provider whose deliveries are harmless to
    /// repeat (a "something changed, come and look" hint). An id, if the scheme reads one,
    /// stays for logs and labels and keys nothing.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let v = Verified::new("dropbox", None, None, None, [7; 32], 0).without_replay_key();
    /// assert!(!v.has_replay_key());
    /// ```
    #[must_use]
    pub const fn without_replay_key(mut self) -> Self {
        self.replay_key = false;
        self
    }

    /// Detaches the value from the request and the scheme.
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let owned: Verified<'static> = Verified::new("acme", None, None, None, [0; 32], 0).into_owned();
    /// assert_eq!(owned.provider(), "acme");
    /// ```
    #[must_use]
    pub fn into_owned(self) -> Verified<'static> {
        let event = Event::Known(self.event().map(|e| Cow::Owned(e.to_owned())));
        Verified {
            provider: Cow::Owned(self.provider.into_owned()),
            id: self.id.map(|c| Cow::Owned(c.into_owned())),
            id_signed: self.id_signed,
            timestamp: self.timestamp,
            timestamp_signed: self.timestamp_signed,
            event,
            fingerprint: self.fingerprint,
            key_index: self.key_index,
            secret_headers: Cow::Owned(self.secret_headers.into_owned()),
            replay_key: self.replay_key,
        }
    }

    /// The event type if it is known without reading the body: `Err(path)` when it is
    /// the member at `path` of the JSON body and has not been read yet.
    #[cfg(feature = "tower")]
    pub(crate) fn event_if_known(&self) -> Result<Option<&str>, &'static [&'static str]> {
        match &self.event {
            Event::Known(event) => Ok(event.as_deref()),
            Event::InBody { path, read, .. } => match read.get() {
                Some(event) => Ok(event.as_deref()),
                None => Err(path),
            },
        }
    }

    /// The signed timestamp in nanoseconds since the epoch (no date built).
    #[cfg(feature = "tower")]
    pub(crate) const fn timestamp_nanos(&self) -> Option<i128> {
        self.timestamp
    }

    /// Replaces the event type (for schemes that learn it late).
    ///
    /// ```
    /// # use hookguard::verify::Verified;
    /// let v = Verified::new("acme", None, None, None, [0; 32], 0).with_event(Some("ping".into()));
    /// assert_eq!(v.event(), Some("ping"));
    /// ```
    #[must_use]
    pub fn with_event(mut self, event: Option<Cow<'a, str>>) -> Self {
        self.event = Event::Known(event);
        self
    }

    /// As [`new`](Self::new), from what a described scheme read: the timestamp in
    /// nanoseconds since the epoch (within `time`'s range), the event maybe still in the body.
    pub(crate) const fn assemble(
        provider: &'a str,
        id: Option<Cow<'a, str>>,
        timestamp: Option<i128>,
        event: Event<'a>,
        fingerprint: [u8; 32],
        key_index: usize,
        (id_signed, timestamp_signed): (bool, bool),
    ) -> Self {
        Self {
            provider: Cow::Borrowed(provider),
            id,
            id_signed,
            timestamp,
            timestamp_signed,
            event,
            fingerprint,
            key_index,
            secret_headers: Cow::Borrowed(&[]),
            replay_key: true,
        }
    }
}

/// A 32-byte fingerprint from a received signature: its SHA-256, whatever its length
/// (as a tag's, `Tag::fingerprint`), so that every dedup key without an id is a digest.
pub(crate) fn fingerprint(bytes: &[u8]) -> [u8; 32] {
    super::mac::sha256_of_short(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        providers::standard_webhooks,
        verify::{Outgoing, Scheme, Sign},
    };

    /// A request's Debug names what is there, without a header value, the query or the
    /// body: a shared token or personal data travels in them.
    #[test]
    fn a_requests_debug_shows_no_values() {
        let req = http::Request::post("/hooks/gitlab?token=query-s3cret")
            .header("x-gitlab-token", "tok3n")
            .body(br#"{"card":"4111"}"#.to_vec())
            .unwrap();
        let debug = format!("{:?}", WebhookRequest::from_request(&req).with_url("https://x/?k=url-s3cret"));
        for secret in ["tok3n", "query-s3cret", "url-s3cret", "4111"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        for shown in ["POST", "/hooks/gitlab", "x-gitlab-token", "body_len: 15"] {
            assert!(debug.contains(shown), "{shown} not in {debug}");
        }
    }

    proptest::proptest! {
        /// `is_visible` accepts exactly what `HeaderValue::to_str` accepts (visible
        /// ASCII, space, tab), at every length and position.
        #[test]
        fn is_visible_agrees_with_header_value_to_str(
            mut bytes in proptest::collection::vec(b' '..=b'~', 0..40),
            odd in proptest::collection::vec(
                (
                    proptest::num::usize::ANY,
                    proptest::prop_oneof![
                        proptest::sample::select(vec![b'\t', 0x1f, 0x7f, 0x80, 0xff, 0x00, b' ', b'~']),
                        proptest::num::u8::ANY,
                    ],
                ),
                0..3,
            ),
        ) {
            // Mostly visible text with a few odd bytes at any position.
            for (at, byte) in odd {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
            let expected = http::HeaderValue::from_bytes(&bytes).is_ok_and(|v| v.to_str().is_ok());
            // `from_bytes` refuses what a header may not hold at all (CR, LF, NUL, DEL):
            // those must be refused here too.
            proptest::prop_assert_eq!(is_visible(&bytes), expected);
        }
    }

    fn verify_body(body: &[u8], check: impl FnOnce(Verified<'_>)) {
        let scheme = standard_webhooks::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut req = http::Request::post("/hooks");
        for (name, value) in scheme.sign(&Outgoing::new(body).id("msg_1").timestamp(now)).unwrap() {
            req = req.header(name, value);
        }
        let req = req.body(body.to_vec()).unwrap();
        check(scheme.verify(&WebhookRequest::from_request(&req), now).unwrap());
    }

    #[test]
    fn event_in_the_body_is_read_when_asked_for() {
        verify_body(br#"{"data":{},"type":"invoice.paid"}"#, |v| {
            let copy = v.clone();
            assert_eq!(v.event(), Some("invoice.paid"));
            assert_eq!(v.event(), Some("invoice.paid"), "read once, kept");
            assert_eq!(copy, v, "a clone made before the read reads the same");
            assert_eq!(copy.into_owned().event(), Some("invoice.paid"));
            assert_eq!(v.timestamp().map(OffsetDateTime::unix_timestamp), Some(1_700_000_000));
        });
    }

    #[test]
    fn a_body_that_is_not_json_verifies_without_an_event() {
        verify_body(b"\xff\x00 not json", |v| {
            assert_eq!(v.id(), Some("msg_1"));
            assert_eq!(v.event(), None);
            assert!(format!("{v:?}").contains("event: None"));
        });
        verify_body(br#"{"type":"a\u0062c"}"#, |v| assert_eq!(v.event(), Some("abc"), "escapes decoded"));
    }

    #[test]
    fn equality_sees_the_event() {
        let a = Verified::new("p", None, None, Some("x".into()), [0; 32], 0);
        assert_ne!(a, Verified::new("p", None, None, Some("y".into()), [0; 32], 0));
        assert_eq!(a, Verified::new("p", None, None, Some("x".into()), [0; 32], 0));
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        assert_eq!(Verified::new("p", None, Some(at), None, [0; 32], 0).timestamp(), Some(at));
    }
}
