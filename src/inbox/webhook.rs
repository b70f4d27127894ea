//! The kept form of a verified webhook: what the inbox stores and handlers receive.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::verify::Verified;

/// A verified delivery, as kept by an [`Inbox`](super::Inbox) and handed to a handler.
///
/// Its [`key`](Self::key) is unique per endpoint and delivery: `"{endpoint}:{id}"`, or the
/// hex fingerprint of the signature when the provider sends no id.
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
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    inner: Arc<Fields>,
}

#[derive(Clone, PartialEq, Eq)]
struct Fields {
    key: Arc<str>,
    endpoint: Arc<str>,
    provider: String,
    id: Option<String>,
    event: Option<String>,
    timestamp: Option<OffsetDateTime>,
    received_at: OffsetDateTime,
    headers: HeaderMap,
    body: Bytes,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.inner;
        f.debug_struct("Webhook")
            .field("key", &w.key)
            .field("endpoint", &w.endpoint)
            .field("provider", &w.provider)
            .field("id", &w.id)
            .field("event", &w.event)
            .field("timestamp", &w.timestamp)
            .field("received_at", &w.received_at)
            .field("headers", &w.headers)
            .field("body", &w.body)
            .finish()
    }
}

impl Webhook {
    /// Assembles a webhook from what verification proved.
    #[must_use]
    pub fn new(
        endpoint: impl Into<String>,
        verified: &Verified<'_>,
        headers: HeaderMap,
        body: Bytes,
        received_at: OffsetDateTime,
    ) -> Self {
        let endpoint: Arc<str> = Arc::from(endpoint.into());
        let key = replay_key(&endpoint, verified);
        Self::keyed(&key, endpoint, verified.clone().into_owned(), headers, body, received_at)
    }

    /// [`new`](Self::new) with the key already made (the guard made it for the replay mark),
    /// the endpoint's name shared, and the verified values moved in.
    pub(crate) fn keyed(
        key: &str,
        endpoint: Arc<str>,
        verified: Verified<'static>,
        headers: HeaderMap,
        body: Bytes,
        received_at: OffsetDateTime,
    ) -> Self {
        let kept = verified.into_kept();
        Self::from_parts(
            Arc::<str>::from(key),
            endpoint,
            kept.provider,
            kept.id,
            kept.event,
            kept.timestamp,
            received_at,
            headers,
            body,
        )
    }

    /// Rebuilds a webhook from stored fields (for inbox backends).
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
        Self {
            inner: Arc::new(Fields {
                key: key.into(),
                endpoint: endpoint.into(),
                provider,
                id,
                event,
                timestamp,
                received_at,
                headers,
                body,
            }),
        }
    }

    /// The unique key of this delivery at this endpoint.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.inner.key
    }
    /// The key, shared (inboxes index by it without copying it).
    pub(crate) fn shared_key(&self) -> &Arc<str> {
        &self.inner.key
    }

    /// The endpoint's name as a metrics label (shared, not copied).
    pub(crate) fn endpoint_label(&self) -> metrics::SharedString {
        metrics::SharedString::from_shared(Arc::clone(&self.inner.endpoint))
    }

    /// The endpoint's name.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }
    /// The provider (`stripe`, `github`, …).
    #[must_use]
    pub fn provider(&self) -> &str {
        &self.inner.provider
    }
    /// The provider's delivery id, if it sent one.
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.inner.id.as_deref()
    }
    /// The event type, if known.
    #[must_use]
    pub fn event(&self) -> Option<&str> {
        self.inner.event.as_deref()
    }
    /// The signed timestamp, if the scheme has one.
    #[must_use]
    pub fn timestamp(&self) -> Option<OffsetDateTime> {
        self.inner.timestamp
    }
    /// When the receiver accepted it.
    #[must_use]
    pub fn received_at(&self) -> OffsetDateTime {
        self.inner.received_at
    }
    /// The request headers that were kept: all but credentials and shared tokens
    /// (`Authorization`, `Cookie`, `X-Gitlab-Token`, `X-Hook-Secret`, …). Signature headers
    /// are kept: they are not secret.
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.headers
    }
    /// The raw body, exactly as received and verified.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.inner.body
    }

    /// Copies the body and the header values into one allocation of their own.
    ///
    /// A body or header value read by hyper or actix is usually a slice of the
    /// connection's read buffer: keeping it pins the whole buffer and makes the server
    /// allocate a new one for the next request. An inbox that holds webhooks in memory
    /// compacts them first, so a backlog costs what it holds and no more.
    pub(crate) fn compact(&mut self) {
        let this = Arc::make_mut(&mut self.inner);
        let size = this.body.len() + this.headers.values().map(HeaderValue::len).sum::<usize>();
        let mut buf = bytes::BytesMut::with_capacity(size);
        buf.extend_from_slice(&this.body);
        for value in this.headers.values() {
            buf.extend_from_slice(value.as_bytes());
        }
        let buf = buf.freeze();
        this.body = buf.slice(..this.body.len());
        let mut at = this.body.len();
        for value in this.headers.values_mut() {
            let end = at + value.len();
            let sensitive = value.is_sensitive();
            // The bytes were a valid header value a moment ago.
            if let Ok(mut copy) = HeaderValue::from_maybe_shared(buf.slice(at..end)) {
                copy.set_sensitive(sensitive);
                *value = copy;
            }
            at = end;
        }
    }

    /// The body as JSON.
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
    /// 1677 to 2262).
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
        Ok(WebhookRecord {
            key: self.inner.key.to_string(),
            endpoint: self.inner.endpoint.to_string(),
            provider: self.inner.provider.clone(),
            id: self.inner.id.clone(),
            event: self.inner.event.clone(),
            timestamp_unix_nanos: self.inner.timestamp.map(unix_nanos).transpose()?,
            received_at_unix_nanos: unix_nanos(self.inner.received_at)?,
            headers: self
                .inner
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
                .collect(),
            body: self.inner.body.to_vec(),
        })
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
            record.timestamp_unix_nanos.map(from_unix_nanos).transpose()?,
            from_unix_nanos(record.received_at_unix_nanos)?,
            headers,
            Bytes::from(record.body),
        ))
    }
}

/// A [`Webhook`] as plain data, for inbox backends to store: every field of the webhook,
/// times as Unix nanoseconds (`i64`), headers as an ordered list of (lower-case name,
/// value bytes), the body as bytes.
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

impl From<RecordError> for super::InboxError {
    fn from(e: RecordError) -> Self {
        Self::Backend(Box::new(e))
    }
}

/// `t` as nanoseconds since the Unix epoch, if that fits an `i64`.
fn unix_nanos(t: OffsetDateTime) -> Result<i64, RecordError> {
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| RecordError("time out of range"))
}

fn from_unix_nanos(nanos: i64) -> Result<OffsetDateTime, RecordError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).map_err(|_| RecordError("time out of range"))
}

/// `"{endpoint}:{id}"`, or the hex fingerprint when there is no id.
pub(crate) fn replay_key(endpoint: &str, verified: &Verified<'_>) -> String {
    // Built by hand: `format!` costs more than the copies (one per delivery).
    let id = verified.id();
    let tail = id.map_or(2 * verified.dedup_key().len(), str::len);
    let mut key = String::with_capacity(endpoint.len() + 1 + tail);
    key.push_str(endpoint);
    key.push(':');
    match id {
        Some(id) => key.push_str(id),
        None => key.push_str(&const_hex::encode(verified.dedup_key())),
    }
    key
}

/// The stored form of a [`Webhook`] without its body (which backends keep as raw bytes
/// beside it): JSON, times as Unix nanoseconds, header values as text (base64 when they are
/// not visible ASCII).
#[cfg(any(feature = "redis", feature = "postgres"))]
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

#[cfg(any(feature = "redis", feature = "postgres"))]
#[derive(serde::Serialize, serde::Deserialize)]
struct RecordHeader {
    n: String,
    v: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    b64: bool,
}

#[cfg(any(feature = "redis", feature = "postgres"))]
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
            key: self.inner.key.to_string(),
            endpoint: self.inner.endpoint.to_string(),
            provider: self.inner.provider.clone(),
            id: self.inner.id.clone(),
            event: self.inner.event.clone(),
            timestamp: self.inner.timestamp.map(OffsetDateTime::unix_timestamp_nanos),
            received_at: self.inner.received_at.unix_timestamp_nanos(),
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
#[cfg(any(feature = "redis", feature = "postgres"))]
#[derive(Debug)]
pub(crate) struct MetaError(String);

#[cfg(any(feature = "redis", feature = "postgres"))]
impl std::fmt::Display for MetaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stored webhook record is unreadable: {}", self.0)
    }
}

#[cfg(any(feature = "redis", feature = "postgres"))]
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
}
