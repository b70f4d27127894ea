//! The kept form of a verified webhook: what the inbox stores and handlers receive.

use bytes::Bytes;
use http::HeaderMap;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    key: String,
    endpoint: String,
    provider: String,
    id: Option<String>,
    event: Option<String>,
    timestamp: Option<OffsetDateTime>,
    received_at: OffsetDateTime,
    headers: HeaderMap,
    body: Bytes,
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
        let endpoint = endpoint.into();
        let key = replay_key(&endpoint, verified);
        Self {
            key,
            endpoint,
            provider: verified.provider().to_owned(),
            id: verified.id().map(str::to_owned),
            event: verified.event().map(str::to_owned),
            timestamp: verified.timestamp(),
            received_at,
            headers,
            body,
        }
    }

    /// Rebuilds a webhook from stored fields (for inbox backends).
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub fn from_parts(
        key: String,
        endpoint: String,
        provider: String,
        id: Option<String>,
        event: Option<String>,
        timestamp: Option<OffsetDateTime>,
        received_at: OffsetDateTime,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        Self { key, endpoint, provider, id, event, timestamp, received_at, headers, body }
    }

    /// The unique key of this delivery at this endpoint.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }
    /// The endpoint's name.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
    /// The provider (`stripe`, `github`, …).
    #[must_use]
    pub fn provider(&self) -> &str {
        &self.provider
    }
    /// The provider's delivery id, if it sent one.
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    /// The event type, if known.
    #[must_use]
    pub fn event(&self) -> Option<&str> {
        self.event.as_deref()
    }
    /// The signed timestamp, if the scheme has one.
    #[must_use]
    pub fn timestamp(&self) -> Option<OffsetDateTime> {
        self.timestamp
    }
    /// When the receiver accepted it.
    #[must_use]
    pub fn received_at(&self) -> OffsetDateTime {
        self.received_at
    }
    /// The request headers that were kept (signature and credential headers are not).
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// The raw body, exactly as received and verified.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as JSON.
    ///
    /// # Errors
    /// The deserializer's error when the body does not fit `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// `"{endpoint}:{id}"`, or the hex fingerprint when there is no id.
pub(crate) fn replay_key(endpoint: &str, verified: &Verified<'_>) -> String {
    match verified.id() {
        Some(id) => format!("{endpoint}:{id}"),
        None => format!("{endpoint}:{}", const_hex::encode(verified.dedup_key())),
    }
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
    pub(crate) fn to_record(&self) -> String {
        use base64::Engine as _;
        let headers = self
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
            key: self.key.clone(),
            endpoint: self.endpoint.clone(),
            provider: self.provider.clone(),
            id: self.id.clone(),
            event: self.event.clone(),
            timestamp: self.timestamp.map(OffsetDateTime::unix_timestamp_nanos),
            received_at: self.received_at.unix_timestamp_nanos(),
            headers,
        };
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(&record).unwrap_or_default()
    }

    /// Rebuilds a webhook from [`to_record`](Self::to_record)'s JSON and the body.
    pub(crate) fn from_record(record: &[u8], body: Bytes) -> Result<Self, RecordError> {
        use base64::Engine as _;
        let r: Record = serde_json::from_slice(record).map_err(|e| RecordError(e.to_string()))?;
        let time = |nanos: i128| {
            OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|e| RecordError(e.to_string()))
        };
        let mut headers = HeaderMap::with_capacity(r.headers.len());
        for h in r.headers {
            let name =
                http::HeaderName::from_bytes(h.n.as_bytes()).map_err(|e| RecordError(e.to_string()))?;
            let value = if h.b64 {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(h.v)
                    .map_err(|e| RecordError(e.to_string()))?;
                http::HeaderValue::from_bytes(&bytes)
            } else {
                http::HeaderValue::from_str(&h.v)
            }
            .map_err(|e| RecordError(e.to_string()))?;
            headers.append(name, value);
        }
        Ok(Self {
            key: r.key,
            endpoint: r.endpoint,
            provider: r.provider,
            id: r.id,
            event: r.event,
            timestamp: r.timestamp.map(time).transpose()?,
            received_at: time(r.received_at)?,
            headers,
            body,
        })
    }
}

/// A stored webhook record that could not be read back.
#[cfg(any(feature = "redis", feature = "postgres"))]
#[derive(Debug)]
pub(crate) struct RecordError(String);

#[cfg(any(feature = "redis", feature = "postgres"))]
impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stored webhook record is unreadable: {}", self.0)
    }
}

#[cfg(any(feature = "redis", feature = "postgres"))]
impl std::error::Error for RecordError {}

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
        let back = Webhook::from_record(hook.to_record().as_bytes(), hook.body().clone()).unwrap();
        assert_eq!(back, hook);
        assert!(Webhook::from_record(b"{", Bytes::new()).is_err());
    }
}
