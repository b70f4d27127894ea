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
