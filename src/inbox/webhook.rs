//! The kept form of a verified webhook: what the inbox stores and handlers receive.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::verify::{Verified, json};

/// A verified delivery, as kept by an [`Inbox`](super::Inbox) and handed to a handler.
///
/// Its [`key`](Self::key) is unique per endpoint and delivery: `"{endpoint}:{id}"`, or the
/// hex fingerprint of the signature when the provider sends no id; behind a source that
/// names each request's sender ([`SchemeSource::namespace`](crate::guard::SchemeSource::namespace),
/// e.g. a tenant), `"{endpoint}:{length}:{sender}:{id}"`. A `:` or `%` in the endpoint's
/// name is escaped there (`%3A`, `%25`), so that no two endpoints share a key.
///
/// ```
/// use hookguard::{inbox::Webhook, verify::Verified};
///
/// let verified = Verified::new("github", Some("d-1".into()), None, Some("push".into()), [0; 32], 0);
/// let hook = Webhook::new("github", &verified, http::HeaderMap::new(), br#"{"a":1}"#.to_vec().into(), time::OffsetDateTime::UNIX_EPOCH);
/// assert_eq!(hook.key(), "github:d-1");
/// let value: serde_json::Value = hook.json().unwrap();
/// assert_eq!(value["a"], 1);
/// ```
///
/// Cloning is cheap (a reference count): the inbox keeps one copy while a handler holds
/// another.
#[derive(Clone)]
pub struct Webhook {
    inner: Arc<Fields>,
}

/// A webhook's fields. The short texts share one allocation ([`Labels`]).
struct Fields {
    labels: Labels,
    /// The event type when the labels do not hold it.
    event_in_body: Option<EventInBody>,
    endpoint: Arc<str>,
    /// Nanoseconds since the Unix epoch, within `time`'s range.
    timestamp: Option<i128>,
    /// Nanoseconds since the Unix epoch, within `time`'s range.
    received_at: i128,
    headers: HeaderMap,
    body: Bytes,
    /// Whether the body and headers are in memory of their own (not slices of a request's
    /// read buffer): see [`Webhook::compacted`].
    own_memory: bool,
}

impl PartialEq for Webhook {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&*self.inner, &*other.inner);
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.key() == other.key()
                && a.endpoint == b.endpoint
                && self.provider() == other.provider()
                && self.id() == other.id()
                && self.event() == other.event()
                && a.timestamp == b.timestamp
                && a.received_at == b.received_at
                && a.body == b.body
                && self.headers() == other.headers())
    }
}

impl Eq for Webhook {}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("key", &self.key())
            .field("endpoint", &self.endpoint())
            .field("provider", &self.provider())
            .field("id", &self.id())
            .field("event", &self.event())
            .field("timestamp", &self.timestamp())
            .field("received_at", &self.received_at())
            // Names only, and the body's length: a Debug line may end up in a log, and
            // header values and payloads may hold personal data.
            .field("headers", &HeaderNames(self.headers()))
            .field("body_len", &self.body().len())
            .finish()
    }
}

/// A header map's names, for [`Webhook`]'s `Debug`.
struct HeaderNames<'a>(&'a HeaderMap);

impl fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// An event type that is the member at `path` of the JSON body, read the first time it is
/// asked for.
#[derive(Clone)]
struct EventInBody {
    path: &'static [&'static str],
    read: OnceLock<Option<Box<str>>>,
}

/// An endpoint's name as the first part of its keys (`{endpoint}:{id}`): a `:` in the
/// name (and the `%` that escapes it) is escaped (`%3A`, `%25`), so that endpoints `shop`
/// and `shop:eu` sharing a store cannot give `shop`'s delivery `eu:1` and `shop:eu`'s
/// delivery `1` one key. Names without either keep their keys as they are.
pub(crate) fn key_prefix(endpoint: &str) -> std::borrow::Cow<'_, str> {
    if !endpoint.contains([':', '%']) {
        return std::borrow::Cow::Borrowed(endpoint);
    }
    std::borrow::Cow::Owned(endpoint.replace('%', "%25").replace(':', "%3A"))
}

/// The endpoint whose [`key_prefix`] begins `key` (up to its first `:`, unescaped), for
/// a kept job whose record cannot be read; `None` for a key without one.
#[cfg_attr(not(any(feature = "sqlite", feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) fn endpoint_of_key(key: &str) -> Option<String> {
    let (prefix, _) = key.split_once(':')?;
    // In a prefix every `%` begins an escape, so `%3A` is always an escaped `:`.
    Some(prefix.replace("%3A", ":").replace("%25", "%"))
}

/// A webhook's key, provider, id and event type in one shared string: the key first (its
/// id, when it has one, is the key's tail), then the provider, then what is not in the key.
///
/// The guard makes it right after verification: the replay mark, the clean-up guard and
/// the kept webhook all use the one allocation.
#[derive(Clone)]
pub(crate) struct Labels {
    text: Arc<str>,
    key: usize,
    provider: Range,
    id: Option<Range>,
    event: Option<Range>,
}

/// A byte range of [`Labels::text`] (`u32` bounds: a header-sized string).
#[derive(Clone, Copy)]
struct Range(u32, u32);

impl Labels {
    /// The labels of `verified` at `endpoint` (its [`key_prefix`]): keyed
    /// `"{endpoint}:{id}"`, or by the hex fingerprint of the signature when there is no id
    /// or the signature does not cover it ([`Verified::id_is_signed`]); a delivery without
    /// a replay key ([`Verified::has_replay_key`]) by its fingerprint and a random suffix,
    /// `"{endpoint}:{fingerprint}.{16 hex digits}"`: a key of its own, which no other
    /// delivery has.
    /// `event`: the event type, when the labels should hold it (the guard leaves one that
    /// is still in the body there: its kept webhook reads it when asked).
    pub(crate) fn of(endpoint: &str, verified: &Verified<'_>, event: Option<&str>) -> Self {
        let id = verified.id();
        let keyed = id.filter(|_| verified.id_is_signed() && verified.has_replay_key());
        Self::build(|text| {
            text.push_str(endpoint);
            text.push(':');
            match keyed {
                Some(id) => text.push_str(id),
                None if verified.has_replay_key() => text.push_str(&const_hex::encode(verified.dedup_key())),
                None => {
                    use std::fmt::Write as _;
                    text.push_str(&const_hex::encode(verified.fingerprint()));
                    let _ = write!(text, ".{:016x}", fastrand::u64(..));
                }
            }
            let in_key = keyed.map(|id| span(text.len() - id.len(), text.len()));
            (in_key.ok_or(id), verified.provider(), event)
        })
    }

    /// Labels from stored or given parts; the id is shared with the key when the key ends
    /// with `:{id}`.
    fn from_parts(key: &str, provider: &str, id: Option<&str>, event: Option<&str>) -> Self {
        let shared = id.filter(|id| key.strip_suffix(id).is_some_and(|head| head.ends_with(':')));
        Self::build(|text| {
            text.push_str(key);
            match shared {
                Some(id) => (Ok(span(key.len() - id.len(), key.len())), provider, event),
                None => (Err(id), provider, event),
            }
        })
    }

    /// Writes the key with `key` (which answers where the id is: in the key, or `Err` with
    /// the id to append, and the provider and event), then appends the provider, the id
    /// unless the key holds it, and the event, in a scratch string of this thread's; then
    /// copies the whole into its one shared allocation.
    fn build<'p>(
        key: impl FnOnce(&mut String) -> (Result<Range, Option<&'p str>>, &'p str, Option<&'p str>),
    ) -> Self {
        thread_local! {
            static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let make = |text: &mut String| {
            text.clear();
            let (id, provider, event) = key(text);
            let key = text.len();
            let mut push = |piece: &str| {
                let at = text.len();
                text.push_str(piece);
                span(at, text.len())
            };
            let provider = push(provider);
            let id = match id {
                Ok(in_key) => Some(in_key),
                Err(own) => own.map(&mut push),
            };
            let event = event.map(&mut push);
            let labels = Self { text: Arc::from(text.as_str()), key, provider, id, event };
            // A huge label (a header-sized id) is not kept around.
            if text.capacity() > 4096 {
                *text = String::new();
            }
            labels
        };
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut text) => make(&mut text),
            Err(_) => make(&mut String::new()),
        })
    }

    /// Labels for `verified` under a key made elsewhere ([`Guard::hand_off`]).
    ///
    /// [`Guard::hand_off`]: crate::guard::Guard::hand_off
    pub(crate) fn with_key(key: &str, verified: &Verified<'_>) -> Self {
        Self::from_parts(key, verified.provider(), verified.id(), verified.event())
    }

    pub(crate) fn key(&self) -> &str {
        &self.text[..self.key]
    }

    pub(crate) fn provider(&self) -> &str {
        self.get(self.provider)
    }

    pub(crate) fn id(&self) -> Option<&str> {
        self.id.map(|id| self.get(id))
    }

    pub(crate) fn event(&self) -> Option<&str> {
        self.event.map(|event| self.get(event))
    }

    fn get(&self, range: Range) -> &str {
        self.text.get(range.0 as usize..range.1 as usize).unwrap_or_default()
    }
}

fn span(from: usize, to: usize) -> Range {
    // Labels are header-sized (the guard caps the request head far below 4 GiB).
    Range(u32::try_from(from).unwrap_or(u32::MAX), u32::try_from(to).unwrap_or(u32::MAX))
}

/// The most headers a kept webhook has: the guard refuses a request with more (`431`),
/// and a stored record listing more is unreadable (an error, where `http`'s map would
/// panic past about 24,000).
pub(crate) const MAX_HEADERS: usize = 4096;

/// Headers never kept with a webhook the guard keeps: credentials and shared tokens.
const CREDENTIALS: &[&str] =
    &["authorization", "proxy-authorization", "cookie", "x-gitlab-token", "x-hook-secret"];

fn is_credential(name: &HeaderName) -> bool {
    CREDENTIALS.contains(&name.as_str())
}

/// Removes from `headers` what a kept webhook never holds: the [`CREDENTIALS`], and the
/// headers the scheme read a shared token from ([`Verified::secret_headers`]).
fn leave_out_secrets(headers: &mut HeaderMap, secret_headers: &[HeaderName]) {
    // Usually none is there: a scan of the names is cheaper than five removals.
    if headers.keys().any(is_credential) {
        for name in CREDENTIALS {
            headers.remove(*name);
        }
    }
    for name in secret_headers {
        headers.remove(name);
    }
}

/// `pairs` (the same headers each time it is called, about `count` of them: name, value,
/// sensitive) as a map whose values are slices of one buffer of their own: two allocations
/// for all the values instead of one each, and no slice of anybody else's buffer. `name`
/// turns a pair's name into an `http` 1 name (`None`: the header is left out).
pub(crate) fn headers_in_one_buffer<'a, N: 'a, I>(
    pairs: impl Fn() -> I,
    count: usize,
    mut name: impl FnMut(&N) -> Option<HeaderName>,
) -> HeaderMap
where
    I: Iterator<Item = (&'a N, &'a [u8], bool)>,
{
    let mut values = bytes::BytesMut::with_capacity(pairs().map(|(_, value, _)| value.len()).sum());
    for (_, value, _) in pairs() {
        values.extend_from_slice(value);
    }
    let values = values.freeze();
    // `with_capacity` panics past the map's limit: a webhook built by hand may hold tens
    // of thousands of values (under one name); the map grows for them as it must.
    let mut headers = HeaderMap::with_capacity(count.min(MAX_HEADERS));
    let mut at = 0;
    for (n, value, sensitive) in pairs() {
        let range = at..at + value.len();
        at = range.end;
        let (Some(n), Ok(mut copy)) = (name(n), HeaderValue::from_maybe_shared(values.slice(range))) else {
            continue;
        };
        copy.set_sensitive(sensitive);
        headers.append(n, copy);
    }
    headers
}

impl Webhook {
    /// Assembles a webhook from what verification proved. As the guard does, it keeps
    /// the headers but credentials and the ones the scheme read a shared token from
    /// ([`headers`](Self::headers)).
    ///
    /// ```
    /// use hookguard::{inbox::Webhook, verify::Verified};
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("authorization", "Bearer t0ken".parse().unwrap());
    /// headers.insert("x-github-event", "push".parse().unwrap());
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, headers, bytes::Bytes::new(), time::OffsetDateTime::UNIX_EPOCH);
    /// assert!(hook.headers().get("authorization").is_none());
    /// assert_eq!(hook.headers()["x-github-event"], "push");
    /// ```
    #[must_use]
    pub fn new(
        endpoint: impl Into<String>,
        verified: &Verified<'_>,
        mut headers: HeaderMap,
        body: Bytes,
        received_at: OffsetDateTime,
    ) -> Self {
        leave_out_secrets(&mut headers, verified.secret_headers());
        let endpoint: Arc<str> = Arc::from(endpoint.into());
        let labels = Labels::of(&key_prefix(&endpoint), verified, verified.event());
        Self::assemble(
            labels,
            None,
            endpoint,
            verified.timestamp().map(OffsetDateTime::unix_timestamp_nanos),
            received_at.unix_timestamp_nanos(),
            headers,
            body,
        )
    }

    /// What the guard keeps of a verified request: its headers (credentials and
    /// `secret_headers` taken out) and its body as they are, moved, not copied. Both are
    /// usually slices of the connection's read buffer: an inbox that lets the webhook wait
    /// in memory keeps a [`compacted`](Self::compacted) copy instead, so that a waiting job
    /// holds only its own bytes and never pins a read buffer (which would make the server
    /// allocate a new one for the next request).
    ///
    /// `event_in_body`: where the event type is in the JSON body, when `labels` do not
    /// hold it (it is read the first time [`event`](Self::event) is asked for).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn kept(
        labels: Labels,
        event_in_body: Option<&'static [&'static str]>,
        endpoint: Arc<str>,
        timestamp: Option<i128>,
        mut headers: HeaderMap,
        secret_headers: &[HeaderName],
        body: Bytes,
        received_at: i128,
    ) -> Self {
        leave_out_secrets(&mut headers, secret_headers);
        Self::assemble(labels, event_in_body, endpoint, timestamp, received_at, headers, body)
    }

    /// This webhook in memory of its own: the body copied, the header values copied into
    /// one buffer they share. `None` when it is so already.
    pub(crate) fn compacted(&self) -> Option<Self> {
        let f = &*self.inner;
        if f.own_memory {
            return None;
        }
        let fields = Fields {
            labels: f.labels.clone(),
            event_in_body: f.event_in_body.clone(),
            endpoint: Arc::clone(&f.endpoint),
            timestamp: f.timestamp,
            received_at: f.received_at,
            headers: {
                let pairs = || f.headers.iter().map(|(n, v)| (n, v.as_bytes(), v.is_sensitive()));
                headers_in_one_buffer(pairs, f.headers.len(), |n: &HeaderName| Some(n.clone()))
            },
            body: Bytes::copy_from_slice(&f.body),
            own_memory: true,
        };
        Some(Self { inner: Arc::new(fields) })
    }

    /// Rebuilds a webhook from stored fields (for inbox backends).
    ///
    /// ```
    /// use hookguard::inbox::Webhook;
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("authorization", "Bearer t0ken".parse().unwrap());
    /// let received = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    /// let hook = Webhook::from_parts(
    ///     "github:d-1", "github", "github".into(), Some("d-1".into()), Some("push".into()),
    ///     None, received, headers, "{}".into(),
    /// );
    /// assert_eq!((hook.key(), hook.id(), hook.event()), ("github:d-1", Some("d-1"), Some("push")));
    /// assert_eq!(hook.received_at(), received);
    /// // What was stored is given back as it is: no header is left out here.
    /// assert_eq!(hook.headers()["authorization"], "Bearer t0ken");
    /// ```
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub fn from_parts(
        key: impl Into<Arc<str>>,
        endpoint: impl Into<Arc<str>>,
        provider: String,
        id: Option<String>,
        event: Option<String>,
        timestamp: Option<OffsetDateTime>,
        received_at: OffsetDateTime,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        let key: Arc<str> = key.into();
        let labels = Labels::from_parts(&key, &provider, id.as_deref(), event.as_deref());
        Self::assemble(
            labels,
            None,
            endpoint.into(),
            timestamp.map(OffsetDateTime::unix_timestamp_nanos),
            received_at.unix_timestamp_nanos(),
            headers,
            body,
        )
    }

    /// `event_in_body`: where the event type is in the JSON body, when `labels` do not
    /// hold it. The headers and the body are the caller's, as given: not in memory of
    /// their own as far as the webhook knows (compacting a backend's freshly rebuilt one
    /// costs a copy, nothing else).
    fn assemble(
        labels: Labels,
        event_in_body: Option<&'static [&'static str]>,
        endpoint: Arc<str>,
        timestamp: Option<i128>,
        received_at: i128,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        let event_in_body = event_in_body.map(|path| EventInBody { path, read: OnceLock::new() });
        let fields = Fields {
            labels,
            event_in_body,
            endpoint,
            timestamp,
            received_at,
            headers,
            body,
            own_memory: false,
        };
        Self { inner: Arc::new(fields) }
    }

    /// The unique key of this delivery at this endpoint.
    ///
    /// ```
    /// use hookguard::inbox::Webhook;
    /// let hook = Webhook::from_parts(
    ///     "github:d-1", "github", "github".into(), Some("d-1".into()), Some("push".into()),
    ///     None, time::OffsetDateTime::UNIX_EPOCH, http::HeaderMap::new(), "{}".into(),
    /// );
    /// assert_eq!(hook.key(), "github:d-1");
    /// ```
    #[must_use]
    pub fn key(&self) -> &str {
        self.inner.labels.key()
    }
    /// The endpoint's name as a metrics label (shared, not copied).
    pub(crate) fn endpoint_label(&self) -> metrics::SharedString {
        metrics::SharedString::from_shared(Arc::clone(&self.inner.endpoint))
    }

    /// The endpoint's name, shared.
    pub(crate) fn shared_endpoint(&self) -> &Arc<str> {
        &self.inner.endpoint
    }

    /// The endpoint's name.
    ///
    /// ```
    /// use hookguard::inbox::Webhook;
    /// let hook = Webhook::from_parts(
    ///     "github:d-1", "hooks-github", "github".into(), Some("d-1".into()), Some("push".into()),
    ///     None, time::OffsetDateTime::UNIX_EPOCH, http::HeaderMap::new(), "{}".into(),
    /// );
    /// assert_eq!(hook.endpoint(), "hooks-github");
    /// ```
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }
    /// The provider (`stripe`, `github`, …).
    ///
    /// ```
    /// use hookguard::inbox::Webhook;
    /// let hook = Webhook::from_parts(
    ///     "github:d-1", "github", "github".into(), Some("d-1".into()), Some("push".into()),
    ///     None, time::OffsetDateTime::UNIX_EPOCH, http::HeaderMap::new(), "{}".into(),
    /// );
    /// assert_eq!(hook.provider(), "github");
    /// ```
    #[must_use]
    pub fn provider(&self) -> &str {
        self.inner.labels.provider()
    }
    /// The provider's delivery id, if it sent one.
    ///
    /// ```
    /// use hookguard::inbox::Webhook;
    /// let hook = Webhook::from_parts(
    ///     "github:d-1", "github", "github".into(), Some("d-1".into()), Some("push".into()),
    ///     None, time::OffsetDateTime::UNIX_EPOCH, http::HeaderMap::new(), "{}".into(),
    /// );
    /// assert_eq!(hook.id(), Some("d-1"));
    /// ```
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.inner.labels.id()
    }
    /// The event type, if known.
    ///
    /// ```
    /// use hookguard::inbox::Webhook;
    /// let hook = Webhook::from_parts(
    ///     "github:d-1", "github", "github".into(), Some("d-1".into()), Some("push".into()),
    ///     None, time::OffsetDateTime::UNIX_EPOCH, http::HeaderMap::new(), "{}".into(),
    /// );
    /// assert_eq!(hook.event(), Some("push"));
    /// ```
    #[must_use]
    pub fn event(&self) -> Option<&str> {
        let f = &*self.inner;
        match &f.event_in_body {
            None => f.labels.event(),
            Some(EventInBody { path, read }) => read
                .get_or_init(|| json::text_at(&f.body, path).ok().flatten().map(|e| e.into_owned().into()))
                .as_deref(),
        }
    }
    /// The signed timestamp, if the scheme has one.
    ///
    /// ```
    /// use hookguard::inbox::Webhook;
    /// let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    /// let hook = Webhook::from_parts(
    ///     "github:d-1", "github", "github".into(), Some("d-1".into()), Some("push".into()),
    ///     Some(at), time::OffsetDateTime::UNIX_EPOCH, http::HeaderMap::new(), "{}".into(),
    /// );
    /// assert_eq!(hook.timestamp(), Some(at));
    /// ```
    #[must_use]
    pub fn timestamp(&self) -> Option<OffsetDateTime> {
        self.inner.timestamp.map(date)
    }
    /// When the receiver accepted it.
    ///
    /// ```
    /// use hookguard::inbox::Webhook;
    /// let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    /// let hook = Webhook::from_parts(
    ///     "github:d-1", "github", "github".into(), Some("d-1".into()), Some("push".into()),
    ///     None, at, http::HeaderMap::new(), "{}".into(),
    /// );
    /// assert_eq!(hook.received_at(), at);
    /// ```
    #[must_use]
    pub fn received_at(&self) -> OffsetDateTime {
        date(self.inner.received_at)
    }

    /// [`received_at`](Self::received_at) in nanoseconds since the Unix epoch.
    pub(crate) fn received_at_nanos(&self) -> i128 {
        self.inner.received_at
    }
    /// The request headers that were kept: all but credentials and shared tokens
    /// (`Authorization`, `Cookie`, `X-Gitlab-Token`, `X-Hook-Secret`, …, and whatever
    /// headers the scheme read a shared token from: [`Verified::secret_headers`]).
    /// Signature headers are kept: they are not secret. A token carried in the body stays
    /// in the body.
    ///
    /// ```
    /// use hookguard::inbox::Webhook;
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-github-event", "push".parse().unwrap());
    /// let hook = Webhook::from_parts(
    ///     "github:d-1", "github", "github".into(), Some("d-1".into()), Some("push".into()),
    ///     None, time::OffsetDateTime::UNIX_EPOCH, headers, "{}".into(),
    /// );
    /// assert_eq!(hook.headers()["x-github-event"], "push");
    /// ```
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.headers
    }
    /// The raw body, exactly as received and verified.
    ///
    /// ```
    /// use hookguard::inbox::Webhook;
    /// let hook = Webhook::from_parts(
    ///     "github:d-1", "github", "github".into(), Some("d-1".into()), Some("push".into()),
    ///     None, time::OffsetDateTime::UNIX_EPOCH, http::HeaderMap::new(), r#"{"ref":"main"}"#.into(),
    /// );
    /// assert_eq!(&hook.body()[..], br#"{"ref":"main"}"#);
    /// ```
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.inner.body
    }

    /// The body as JSON.
    ///
    /// ```
    /// use hookguard::inbox::Webhook;
    /// #[derive(serde::Deserialize)]
    /// struct Push { r#ref: String }
    ///
    /// let hook = Webhook::from_parts(
    ///     "github:d-1", "github", "github".into(), Some("d-1".into()), Some("push".into()),
    ///     None, time::OffsetDateTime::UNIX_EPOCH, http::HeaderMap::new(), r#"{"ref":"main"}"#.into(),
    /// );
    /// assert_eq!(hook.json::<Push>().unwrap().r#ref, "main");
    /// assert!(hook.json::<Vec<u8>>().is_err());
    /// ```
    ///
    /// # Errors
    /// The deserializer's error when the body does not fit `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.inner.body)
    }

    /// The plain, storable form of this webhook (for inbox backends): see
    /// [`WebhookRecord`].
    ///
    /// # Errors
    /// [`RecordError`] when a time lies outside what [`WebhookRecord`] can hold (years
    /// 1677 to 2262), or the webhook holds more header values than
    /// [`from_record`](Self::from_record) reads back (4,096: the guard refuses a request
    /// with more; only a webhook made by hand can have them). A backend that stores what
    /// this refuses would keep a webhook it cannot hand out. A verified timestamp can lie
    /// past 2262 (a scheme with no tolerance): a backend that must keep every verified
    /// webhook stores [`timestamp`](Self::timestamp) and
    /// [`received_at`](Self::received_at) itself and rebuilds with
    /// [`from_parts`](Self::from_parts), as the SQLite inbox keeps them beside its record.
    ///
    /// ```
    /// use hookguard::{inbox::Webhook, verify::Verified};
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// let record = hook.to_record()?;
    /// assert_eq!(record.key, "github:d-1");
    /// assert_eq!(Webhook::from_record(record)?, hook);
    /// # Ok::<(), hookguard::inbox::RecordError>(())
    /// ```
    pub fn to_record(&self) -> Result<WebhookRecord, RecordError> {
        let (mut record, times) = self.to_record_apart()?;
        record.timestamp_unix_nanos = times.timestamp.map(unix_nanos).transpose()?;
        record.received_at_unix_nanos = unix_nanos(times.received_at)?;
        Ok(record)
    }

    /// Whether a durable inbox could read this webhook back: no more header values than
    /// a record lists ([`MAX_HEADERS`]; the guard refuses more with `431`, a webhook built
    /// by hand may have them). Checked before a push, so that such a webhook is refused,
    /// not accepted and then set aside as damaged at its first pull.
    pub(crate) fn check_keepable(&self) -> Result<(), RecordError> {
        if self.inner.headers.len() > MAX_HEADERS {
            return Err(TOO_MANY_HEADERS);
        }
        Ok(())
    }

    /// [`to_record`](Self::to_record) with the times apart, in full: for a backend that
    /// stores them itself, so that a verified timestamp past 2262 (a provider with no
    /// tolerance) is kept too. The record's own times are left empty (`None`, 0).
    pub(crate) fn to_record_apart(&self) -> Result<(WebhookRecord, RecordTimes), RecordError> {
        self.check_keepable()?;
        let times = RecordTimes { timestamp: self.inner.timestamp, received_at: self.inner.received_at };
        let record = WebhookRecord {
            key: self.key().to_owned(),
            endpoint: self.endpoint().to_owned(),
            provider: self.provider().to_owned(),
            id: self.id().map(str::to_owned),
            event: self.event().map(str::to_owned),
            timestamp_unix_nanos: None,
            received_at_unix_nanos: 0,
            headers: self
                .inner
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
                .collect(),
            body: self.inner.body.to_vec(),
        };
        Ok((record, times))
    }

    /// Rebuilds a webhook from its [`WebhookRecord`] (for inbox backends).
    ///
    /// # Errors
    /// [`RecordError`] when a header name or value is not valid HTTP, or a time is out of
    /// range: the record was not made by [`to_record`](Self::to_record) or was damaged.
    ///
    /// ```
    /// use hookguard::inbox::{Webhook, WebhookRecord};
    /// let record = WebhookRecord {
    ///     key: "test:1".into(),
    ///     endpoint: "test".into(),
    ///     provider: "github".into(),
    ///     id: Some("1".into()),
    ///     event: None,
    ///     timestamp_unix_nanos: None,
    ///     received_at_unix_nanos: 0,
    ///     headers: vec![("x-github-event".into(), b"push".to_vec())],
    ///     body: b"{}".to_vec(),
    /// };
    /// let hook = Webhook::from_record(record)?;
    /// assert_eq!(hook.headers()["x-github-event"], "push");
    /// # Ok::<(), hookguard::inbox::RecordError>(())
    /// ```
    pub fn from_record(record: WebhookRecord) -> Result<Self, RecordError> {
        let times = RecordTimes {
            timestamp: record.timestamp_unix_nanos.map(i128::from),
            received_at: i128::from(record.received_at_unix_nanos),
        };
        Self::from_record_apart(record, times)
    }

    /// [`from_record`](Self::from_record) with the times from `times` (the record's own
    /// are not read): what [`to_record_apart`](Self::to_record_apart) made.
    pub(crate) fn from_record_apart(record: WebhookRecord, times: RecordTimes) -> Result<Self, RecordError> {
        if record.headers.len() > MAX_HEADERS {
            return Err(TOO_MANY_HEADERS);
        }
        let mut headers = HeaderMap::with_capacity(record.headers.len());
        for (name, value) in record.headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| RecordError("invalid header name"))?;
            let value = HeaderValue::from_bytes(&value).map_err(|_| RecordError("invalid header value"))?;
            headers.append(name, value);
        }
        Ok(Self::from_parts(
            record.key,
            record.endpoint,
            record.provider,
            record.id,
            record.event,
            times.timestamp.map(from_unix_nanos).transpose()?,
            from_unix_nanos(times.received_at)?,
            headers,
            Bytes::from(record.body),
        ))
    }
}

/// A webhook's times in nanoseconds since the Unix epoch, in full (`time`'s range, the
/// years −9999 to 9999), where a [`WebhookRecord`] holds `i64` (the years 1677 to 2262):
/// see [`Webhook::to_record_apart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordTimes {
    /// [`Webhook::timestamp`].
    pub(crate) timestamp: Option<i128>,
    /// [`Webhook::received_at`].
    pub(crate) received_at: i128,
}

/// A [`Webhook`] as plain data, for inbox backends to store: every field of the webhook,
/// times as Unix nanoseconds (`i64`), headers as an ordered list of (lower-case name,
/// value bytes), the body as bytes.
///
/// A header value's [sensitive](http::HeaderValue::is_sensitive) mark is not stored: a
/// webhook read back from a durable inbox has none marked, while the memory inbox keeps
/// the mark. The guard keeps no credential header (a token or signature it checked), so
/// only a webhook made by hand with a marked value sees the difference.
///
/// Serde-able as a whole (a binary format keeps the body compact; JSON writes bytes as
/// arrays of numbers), or field by field into columns: SQL backends keep `headers` in one
/// column with [`encode_headers`](Self::encode_headers) /
/// [`decode_headers`](Self::decode_headers) and `body` as a blob.
///
/// Made by [`Webhook::to_record`], turned back by [`Webhook::from_record`].
///
/// ```
/// use hookguard::{inbox::{Webhook, WebhookRecord}, verify::Verified};
/// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
/// let mut headers = http::HeaderMap::new();
/// headers.append("x-a", "1".parse().unwrap());
/// headers.append("x-a", "2".parse().unwrap());
/// let hook = Webhook::new("github", &v, headers, "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
/// let record = hook.to_record()?;
/// let json = serde_json::to_string(&record).unwrap();
/// let back: WebhookRecord = serde_json::from_str(&json).unwrap();
/// assert_eq!(Webhook::from_record(back)?, hook);
/// # Ok::<(), hookguard::inbox::RecordError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// [`Webhook::key`].
    pub key: String,
    /// [`Webhook::endpoint`].
    pub endpoint: String,
    /// [`Webhook::provider`].
    pub provider: String,
    /// [`Webhook::id`].
    pub id: Option<String>,
    /// [`Webhook::event`].
    pub event: Option<String>,
    /// [`Webhook::timestamp`], in nanoseconds since the Unix epoch.
    pub timestamp_unix_nanos: Option<i64>,
    /// [`Webhook::received_at`], in nanoseconds since the Unix epoch.
    pub received_at_unix_nanos: i64,
    /// [`Webhook::headers`] in order, repeated names repeated: (lower-case name, value bytes).
    pub headers: Vec<(String, Vec<u8>)>,
    /// [`Webhook::body`].
    pub body: Vec<u8>,
}

impl WebhookRecord {
    /// The headers as one byte string, for a single blob column: per header, the name's
    /// length and the value's length as 4-byte big-endian integers, then the name and the
    /// value.
    ///
    /// ```
    /// use hookguard::inbox::WebhookRecord;
    /// let headers = vec![("x-a".to_owned(), b"1".to_vec()), ("x-b".to_owned(), vec![0xff])];
    /// let blob = WebhookRecord::encode_headers(&headers);
    /// assert_eq!(WebhookRecord::decode_headers(&blob)?, headers);
    /// # Ok::<(), hookguard::inbox::RecordError>(())
    /// ```
    #[must_use]
    pub fn encode_headers(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
        let size = headers.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
        let mut out = Vec::with_capacity(size);
        for (name, value) in headers {
            // Header names and values are far below 4 GiB (hyper caps them much lower).
            out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    /// Reads what [`encode_headers`](Self::encode_headers) wrote.
    ///
    /// # Errors
    /// [`RecordError`] when the bytes are truncated or a name is not UTF-8.
    ///
    /// ```
    /// use hookguard::inbox::WebhookRecord;
    /// assert!(WebhookRecord::decode_headers(&[0, 0, 0, 9]).is_err());
    /// assert!(WebhookRecord::decode_headers(&[]).unwrap().is_empty());
    /// ```
    pub fn decode_headers(mut bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, RecordError> {
        const TRUNCATED: RecordError = RecordError("truncated header list");
        let mut headers = Vec::new();
        while !bytes.is_empty() {
            let (lens, rest) = bytes.split_at_checked(8).ok_or(TRUNCATED)?;
            let (name_len, value_len) = lens.split_at(4);
            let name_len = u32::from_be_bytes(name_len.try_into().map_err(|_| TRUNCATED)?) as usize;
            let value_len = u32::from_be_bytes(value_len.try_into().map_err(|_| TRUNCATED)?) as usize;
            let (name, rest) = rest.split_at_checked(name_len).ok_or(TRUNCATED)?;
            let (value, rest) = rest.split_at_checked(value_len).ok_or(TRUNCATED)?;
            let name = std::str::from_utf8(name).map_err(|_| RecordError("header name is not UTF-8"))?;
            headers.push((name.to_owned(), value.to_vec()));
            bytes = rest;
        }
        Ok(headers)
    }
}

/// A [`WebhookRecord`] could not be made or read back.
///
/// ```
/// use hookguard::inbox::WebhookRecord;
/// let err = WebhookRecord::decode_headers(&[1]).unwrap_err();
/// assert_eq!(err.to_string(), "bad webhook record: truncated header list");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError(&'static str);

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad webhook record: {}", self.0)
    }
}

impl std::error::Error for RecordError {}

/// More header values than a record may list ([`MAX_HEADERS`]).
const TOO_MANY_HEADERS: RecordError = RecordError("more headers than a kept webhook can have");

impl From<RecordError> for super::InboxError {
    fn from(e: RecordError) -> Self {
        Self::Backend(Box::new(e))
    }
}

/// Nanoseconds since the Unix epoch as an `i64`, if they fit.
fn unix_nanos(nanos: i128) -> Result<i64, RecordError> {
    i64::try_from(nanos).map_err(|_| RecordError("time out of range"))
}

/// The date `nanos` after the Unix epoch (in `time`'s range by construction).
fn date(nanos: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn from_unix_nanos(nanos: i128) -> Result<OffsetDateTime, RecordError> {
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| RecordError("time out of range"))
}

/// The stored form of a [`Webhook`] without its body (which backends keep as raw bytes
/// beside it): JSON, times as Unix nanoseconds, header values as text (base64 when they are
/// not visible ASCII).
#[cfg(any(feature = "redis", feature = "postgres", fuzzing))]
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    key: String,
    endpoint: String,
    provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp: Option<i128>,
    received_at: i128,
    headers: Vec<RecordHeader>,
}

#[cfg(any(feature = "redis", feature = "postgres", fuzzing))]
#[derive(serde::Serialize, serde::Deserialize)]
struct RecordHeader {
    n: String,
    v: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    b64: bool,
}

#[cfg(any(feature = "redis", feature = "postgres", fuzzing))]
impl Webhook {
    /// Everything but the body, as JSON (for durable backends; the body is stored as bytes).
    pub(crate) fn to_meta_json(&self) -> String {
        use base64::Engine as _;
        let headers = self
            .inner
            .headers
            .iter()
            .map(|(name, value)| match value.to_str() {
                Ok(text) => RecordHeader { n: name.as_str().to_owned(), v: text.to_owned(), b64: false },
                Err(_) => RecordHeader {
                    n: name.as_str().to_owned(),
                    v: base64::engine::general_purpose::STANDARD.encode(value.as_bytes()),
                    b64: true,
                },
            })
            .collect();
        let record = Record {
            key: self.key().to_owned(),
            endpoint: self.endpoint().to_owned(),
            provider: self.provider().to_owned(),
            id: self.id().map(str::to_owned),
            event: self.event().map(str::to_owned),
            timestamp: self.inner.timestamp,
            received_at: self.inner.received_at,
            headers,
        };
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(&record).unwrap_or_default()
    }

    /// Rebuilds a webhook from [`to_meta_json`](Self::to_meta_json)'s JSON and the body.
    pub(crate) fn from_meta_json(record: &[u8], body: Bytes) -> Result<Self, MetaError> {
        use base64::Engine as _;
        let r: Record = serde_json::from_slice(record).map_err(|e| MetaError(e.to_string()))?;
        let time = |nanos: i128| {
            OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|e| MetaError(e.to_string()))
        };
        if r.headers.len() > MAX_HEADERS {
            return Err(MetaError(format!("{} headers, more than a kept webhook can have", r.headers.len())));
        }
        let mut headers = HeaderMap::with_capacity(r.headers.len());
        for h in r.headers {
            let name = http::HeaderName::from_bytes(h.n.as_bytes()).map_err(|e| MetaError(e.to_string()))?;
            let value = if h.b64 {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(h.v)
                    .map_err(|e| MetaError(e.to_string()))?;
                http::HeaderValue::from_bytes(&bytes)
            } else {
                http::HeaderValue::from_str(&h.v)
            }
            .map_err(|e| MetaError(e.to_string()))?;
            headers.append(name, value);
        }
        Ok(Self::from_parts(
            r.key,
            r.endpoint,
            r.provider,
            r.id,
            r.event,
            r.timestamp.map(time).transpose()?,
            time(r.received_at)?,
            headers,
            body,
        ))
    }
}

/// A stored webhook record that could not be read back.
#[cfg(any(feature = "redis", feature = "postgres", fuzzing))]
#[derive(Debug)]
pub(crate) struct MetaError(String);

#[cfg(any(feature = "redis", feature = "postgres", fuzzing))]
impl std::fmt::Display for MetaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stored webhook record is unreadable: {}", self.0)
    }
}

#[cfg(any(feature = "redis", feature = "postgres", fuzzing))]
impl std::error::Error for MetaError {}

#[cfg(all(test, any(feature = "redis", feature = "postgres")))]
mod record_tests {
    use super::*;

    #[test]
    fn record_round_trip_keeps_every_field() {
        let v = Verified::new("github", Some("d-1".into()), None, Some("push".into()), [7; 32], 0);
        let mut headers = HeaderMap::new();
        headers.append("x-a", http::HeaderValue::from_static("1"));
        headers.append("x-a", http::HeaderValue::from_static("2"));
        headers.insert("x-bin", http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        let hook = Webhook::new("ep", &v, headers, Bytes::from_static(b"\x00\xffbody"), at);
        let back = Webhook::from_meta_json(hook.to_meta_json().as_bytes(), hook.body().clone()).unwrap();
        assert_eq!(back, hook);
        assert!(Webhook::from_meta_json(b"{", Bytes::new()).is_err());
    }

    /// A stored record listing more headers than a kept webhook can have is unreadable,
    /// not a panic (`http`'s map panics past about 24,000).
    #[test]
    fn a_record_with_too_many_headers_is_an_error() {
        let v = Verified::new("github", Some("d-1".into()), None, None, [7; 32], 0);
        let hook = Webhook::new("ep", &v, HeaderMap::new(), Bytes::new(), OffsetDateTime::UNIX_EPOCH);
        let json = hook.to_meta_json();
        let many = |n: usize| {
            let headers = vec![r#"{"n":"a","v":""}"#; n].join(",");
            json.replace(r#""headers":[]"#, &format!(r#""headers":[{headers}]"#))
        };
        assert!(json.contains(r#""headers":[]"#), "{json}");
        assert_eq!(
            Webhook::from_meta_json(many(MAX_HEADERS).as_bytes(), Bytes::new()).unwrap().headers().len(),
            MAX_HEADERS
        );
        let err = Webhook::from_meta_json(many(30_000).as_bytes(), Bytes::new()).unwrap_err();
        assert!(err.to_string().contains("30000 headers"), "{err}");
    }
}

#[cfg(test)]
mod tests {
    /// A webhook built by hand may hold more values than a map can be sized for up front
    /// (`HeaderMap::with_capacity` panics past 24,576): one buffer for them all the same.
    #[test]
    fn many_values_under_one_name_fit_in_one_buffer() {
        let value = http::HeaderValue::from_static("v");
        let pairs = || std::iter::repeat_n((&(), value.as_bytes(), false), 30_000);
        let name = http::HeaderName::from_static("x-many");
        let headers = super::headers_in_one_buffer(pairs, 30_000, |()| Some(name.clone()));
        assert_eq!(headers.get_all("x-many").iter().count(), 30_000);
    }

    use super::*;

    fn verified<'a>(id: Option<&'a str>, event: Option<&'a str>) -> Verified<'a> {
        Verified::new("github", id.map(Into::into), None, event.map(Into::into), [0xab; 32], 0)
    }

    fn kept(headers: HeaderMap, body: &Bytes, event_in_body: Option<&'static [&'static str]>) -> Webhook {
        let v = verified(Some("d-1"), None);
        Webhook::kept(
            Labels::of("ep", &v, None),
            event_in_body,
            Arc::from("ep"),
            None,
            headers,
            &[],
            body.clone(),
            7,
        )
    }

    /// The same for the plain record the SQLite inbox stores.
    #[test]
    fn a_plain_record_with_too_many_headers_is_an_error() {
        let record = |n: usize| WebhookRecord {
            key: "k".into(),
            endpoint: "ep".into(),
            provider: "github".into(),
            id: None,
            event: None,
            timestamp_unix_nanos: None,
            received_at_unix_nanos: 0,
            headers: vec![("a".to_owned(), Vec::new()); n],
            body: Vec::new(),
        };
        assert_eq!(Webhook::from_record(record(MAX_HEADERS)).unwrap().headers().len(), MAX_HEADERS);
        assert!(Webhook::from_record(record(30_000)).is_err());
    }

    /// `to_record` refuses what `from_record` would: a webhook made by hand with more
    /// header values than a record may list (a backend would keep what it cannot read).
    #[test]
    fn a_webhook_with_too_many_headers_makes_no_record() {
        let many = |n: usize| {
            let mut headers = HeaderMap::new();
            for _ in 0..n {
                headers.append("x-many", HeaderValue::from_static("v"));
            }
            Webhook::new(
                "ep",
                &verified(Some("d-1"), None),
                headers,
                Bytes::new(),
                OffsetDateTime::UNIX_EPOCH,
            )
        };
        let record = many(MAX_HEADERS).to_record().unwrap();
        assert_eq!(Webhook::from_record(record).unwrap().headers().len(), MAX_HEADERS);
        let err = many(5000).to_record().unwrap_err();
        assert_eq!(err.to_string(), "bad webhook record: more headers than a kept webhook can have");
    }

    /// A time past a record's `i64` nanoseconds (2262) makes no record, but is kept apart
    /// in full for a backend that stores it itself; one past `time`'s range is refused.
    #[test]
    fn times_past_a_records_range_are_kept_apart() {
        let far = OffsetDateTime::from_unix_timestamp(10_000_000_000).unwrap();
        let v = Verified::new("zoom", Some("d-1".into()), Some(far), None, [0; 32], 0);
        let hook = Webhook::new("zoom", &v, headers(), "{}".into(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(hook.to_record().unwrap_err().to_string(), "bad webhook record: time out of range");
        let (record, times) = hook.to_record_apart().unwrap();
        assert_eq!((record.timestamp_unix_nanos, times.timestamp), (None, Some(far.unix_timestamp_nanos())));
        assert_eq!(Webhook::from_record_apart(record.clone(), times).unwrap(), hook);
        let beyond = RecordTimes { timestamp: Some(i128::MAX), ..times };
        assert!(Webhook::from_record_apart(record, beyond).is_err());
    }

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append("x-github-event", HeaderValue::from_static("push"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let mut secretish = HeaderValue::from_static("s3cr3t-looking");
        secretish.set_sensitive(true);
        h.append("x-signature", secretish);
        h.append("x-bin", HeaderValue::from_bytes(b"caf\xc3\xa9\xff").unwrap());
        for credential in CREDENTIALS {
            h.append(*credential, HeaderValue::from_static("credential"));
        }
        h
    }

    #[test]
    fn the_guard_keeps_headers_and_body_as_they_are_without_credentials() {
        let body = Bytes::from(br#"{"type":"push"}"#.to_vec());
        let hook = kept(headers(), &body, None);
        assert_eq!(hook.body().as_ptr(), body.as_ptr(), "moved, not copied");
        for credential in CREDENTIALS {
            assert!(hook.headers().get(*credential).is_none(), "{credential} kept");
        }
        let a: Vec<_> = hook.headers().get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert!(hook.headers()["x-signature"].is_sensitive());
        assert_eq!((hook.key(), hook.id(), hook.provider()), ("ep:d-1", Some("d-1"), "github"));
        assert_eq!(hook.received_at().unix_timestamp_nanos(), 7);
    }

    #[test]
    fn a_compacted_webhook_is_equal_in_memory_of_its_own() {
        let body = Bytes::from(br#"{"type":"push"}"#.to_vec());
        let hook = kept(headers(), &body, Some(&["type"]));
        let copy = hook.compacted().expect("made of the request's slices");
        assert_ne!(copy.body().as_ptr(), body.as_ptr());
        for (name, value) in hook.headers() {
            assert!(
                !std::ptr::eq(copy.headers()[name].as_bytes().as_ptr(), value.as_bytes().as_ptr()),
                "{name} copied"
            );
        }
        assert_eq!(copy, hook);
        assert_eq!(copy.headers(), hook.headers());
        assert!(copy.headers()["x-signature"].is_sensitive(), "the flag survives the copy");
        assert_eq!(copy.headers()["x-bin"].as_bytes(), b"caf\xc3\xa9\xff");
        assert_eq!(copy.event(), Some("push"));
        assert!(copy.compacted().is_none(), "compact already");
        assert_eq!(copy.to_record().unwrap(), hook.to_record().unwrap());
    }

    #[test]
    fn many_headers_are_all_copied() {
        let mut many = HeaderMap::new();
        for i in 0..60 {
            many.append(HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(), i.into());
        }
        let hook = kept(many.clone(), &Bytes::new(), None).compacted().unwrap();
        assert_eq!(hook.headers(), &many);
    }

    #[test]
    fn the_event_in_the_body_is_read_when_asked_for() {
        let hook = kept(
            HeaderMap::new(),
            &Bytes::from_static(br#"{"id":1,"type":"invoice.paid"}"#),
            Some(&["type"]),
        );
        assert_eq!(hook.event(), Some("invoice.paid"));
        let not_json = kept(HeaderMap::new(), &Bytes::from_static(b"type=x"), Some(&["type"]));
        assert_eq!(not_json.event(), None);
    }

    #[test]
    fn a_webhook_made_by_hand_keeps_an_event_read_from_the_body() {
        use crate::verify::{Outgoing, Scheme as _, Sign as _, WebhookRequest};
        let scheme = crate::providers::stripe::scheme("whsec_test_secret").unwrap();
        let now = OffsetDateTime::now_utc();
        let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
        let (name, value) = scheme.sign(&Outgoing::new(body).timestamp(now)).unwrap().remove(0);
        let req = http::Request::post("/").header(name, value).body(body.to_vec()).unwrap();
        let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
        let hook = Webhook::new("pay", &verified, HeaderMap::new(), body.to_vec().into(), now);
        assert_eq!(hook.event(), Some("charge.succeeded"));
    }

    #[test]
    fn labels_share_the_id_with_the_key_when_they_can() {
        let v = verified(Some("d-1"), Some("push"));
        let with_id = Labels::of("ep", &v, v.event());
        assert_eq!((with_id.key(), with_id.id(), with_id.event()), ("ep:d-1", Some("d-1"), Some("push")));
        assert_eq!(with_id.provider(), "github");
        assert_eq!(&*with_id.text, "ep:d-1githubpush", "the id is the key's tail");
        let without = Labels::of("ep", &verified(None, None), None);
        assert_eq!(without.key(), format!("ep:{}", "ab".repeat(32)));
        assert_eq!((without.id(), without.event()), (None, None));
        // Stored parts whose key does not end with the id keep the id apart.
        let apart = Labels::from_parts("custom-key", "stripe", Some("evt_1"), Some("e"));
        assert_eq!(
            (apart.key(), apart.id(), apart.provider(), apart.event()),
            ("custom-key", Some("evt_1"), "stripe", Some("e"))
        );
        let shared = Labels::from_parts("ep:evt_1", "stripe", Some("evt_1"), None);
        assert_eq!(&*shared.text, "ep:evt_1stripe");
        // A key that merely ends with the id's text, not after a colon, keeps it apart.
        let suffix = Labels::from_parts("ep:xevt_1", "stripe", Some("evt_1"), None);
        assert_eq!((suffix.key(), suffix.id()), ("ep:xevt_1", Some("evt_1")));
    }

    /// A key's endpoint is the one whose prefix it begins with, however its name is
    /// spelled (`:` and `%` escaped in the key).
    #[test]
    fn a_keys_endpoint_comes_back_from_its_prefix() {
        for endpoint in ["shop", "shop:eu", "shop%3Aeu", "%", "%25:3A", ":", ""] {
            for tail in ["1", "eu:1", "5:ns:1"] {
                let key = format!("{}:{tail}", key_prefix(endpoint));
                assert_eq!(endpoint_of_key(&key).as_deref(), Some(endpoint), "{key}");
            }
        }
        assert_eq!(endpoint_of_key("no colon"), None);
    }
}
