//! Thin entry points for the fuzz targets under `fuzz/`, over crate-internal parsers.
//! Not public API: hidden from the docs, no stability promise.

use http::HeaderValue;

use crate::verify::{Encoding, Reason, SignatureFormat};

/// What a signature header parse found: how many signatures decoded (with their
/// lengths) and the timestamp parameter, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Decoded signatures, each as bytes.
    pub signatures: Vec<Vec<u8>>,
    /// The timestamp parameter of the header (`t=` in Stripe's format).
    pub timestamp: Option<Vec<u8>>,
}

/// `SignatureFormat::parse`: MAC-sized signatures (at most 64 bytes each), decoded on
/// the stack, for every value of a (possibly duplicated) header.
///
/// # Errors
/// The rejection's reason.
pub fn parse_signatures(
    format: SignatureFormat,
    encoding: Encoding,
    values: &[HeaderValue],
) -> Result<Parsed, Reason> {
    let mut candidates = crate::verify::Candidates::new();
    let timestamp = format.parse(encoding, values.iter(), &mut candidates).map_err(|r| r.reason())?;
    Ok(Parsed {
        signatures: candidates.as_slice().iter().map(|t| t.as_bytes().to_vec()).collect(),
        timestamp: timestamp.map(<[u8]>::to_vec),
    })
}

/// `SignatureFormat::parse_bytes`: signatures of any length (asymmetric schemes).
///
/// # Errors
/// The rejection's reason.
pub fn parse_signature_bytes(
    format: SignatureFormat,
    encoding: Encoding,
    values: &[HeaderValue],
) -> Result<Parsed, Reason> {
    let (signatures, timestamp) = format.parse_bytes(encoding, values.iter()).map_err(|r| r.reason())?;
    Ok(Parsed { signatures, timestamp: timestamp.map(<[u8]>::to_vec) })
}

/// `TimestampFormat::parse_nanos`: what `parse` accepts, in nanoseconds since the epoch
/// (the numeric forms without building a date), as the envelope reads a timestamp.
#[must_use]
pub fn timestamp_nanos(format: crate::verify::TimestampFormat, text: &[u8]) -> Option<i128> {
    format.parse_nanos(text)
}

/// The guard's body reader: the body limit and read timeout of `guard`.
///
/// # Errors
/// The problem the guard answers with (413, 408, 400).
#[cfg(feature = "tower")]
pub async fn read_body<B>(
    guard: &crate::guard::Guard,
    body: B,
) -> Result<bytes::Bytes, crate::problem::Problem>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    crate::layer::read_body(guard, body).await
}

/// The most headers a kept webhook has: `Webhook::from_record` refuses a record with more.
#[cfg(feature = "tower")]
pub const MAX_HEADERS: usize = crate::inbox::MAX_HEADERS;

/// `Webhook::from_meta_json`: the stored form the Redis and PostgreSQL inboxes read back
/// (compiled for fuzzing and with those features).
///
/// # Errors
/// Why the record could not be read.
#[cfg(all(fuzzing, feature = "tower"))]
pub fn read_meta_json(record: &[u8], body: bytes::Bytes) -> Result<crate::inbox::Webhook, String> {
    crate::inbox::Webhook::from_meta_json(record, body).map_err(|e| e.to_string())
}

/// `Webhook::from_record_apart` with times in full (`i128` nanoseconds, as `SqliteInbox`
/// keeps a time past 64-bit nanoseconds), then `to_record_apart` of what it read: the
/// webhook and the times it gives back.
///
/// # Errors
/// Why the record or the times could not be read.
#[cfg(all(fuzzing, feature = "tower"))]
pub fn record_apart_round_trip(
    record: crate::inbox::WebhookRecord,
    timestamp: Option<i128>,
    received_at: i128,
) -> Result<(crate::inbox::Webhook, Option<i128>, i128), String> {
    use crate::inbox::RecordTimes;
    let hook = crate::inbox::Webhook::from_record_apart(record, RecordTimes { timestamp, received_at })
        .map_err(|e| e.to_string())?;
    let (_, times) = hook.to_record_apart().map_err(|e| e.to_string())?;
    Ok((hook, times.timestamp, times.received_at))
}

/// `Webhook::to_meta_json`: the stored form of `webhook` (without its body).
#[cfg(all(fuzzing, feature = "tower"))]
#[must_use]
pub fn write_meta_json(webhook: &crate::inbox::Webhook) -> String {
    webhook.to_meta_json()
}

/// `pg_text::stored`: a text as the PostgreSQL inbox writes it into a `text` column (each
/// NUL, and the escape character itself, escaped).
#[cfg(all(fuzzing, feature = "tower"))]
#[must_use]
pub fn pg_stored(text: &str) -> std::borrow::Cow<'_, str> {
    crate::inbox::pg_text::stored(text)
}

/// `pg_text::unstored`: the text a `text` column's value was written for; `None` when
/// `pg_stored` cannot have written it.
#[cfg(all(fuzzing, feature = "tower"))]
#[must_use]
pub fn pg_unstored(text: &str) -> Option<std::borrow::Cow<'_, str>> {
    crate::inbox::pg_text::unstored(text)
}

/// `pg_text::stored_record`: a webhook's stored JSON (`write_meta_json`) as the PostgreSQL
/// inbox writes it into its `jsonb` column (no `\u0000`; marked when escaped).
#[cfg(all(fuzzing, feature = "tower"))]
#[must_use]
pub fn pg_stored_record(json: String) -> String {
    crate::inbox::pg_text::stored_record(json)
}

/// `pg_text::read_record`: the `jsonb` column's text as `read_meta_json` takes it (a marked
/// record unescaped, any other as it is).
///
/// # Errors
/// Why a marked record could not be unescaped.
#[cfg(all(fuzzing, feature = "tower"))]
pub fn pg_read_record(json: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    crate::inbox::pg_text::read_record(json)
}

/// `inbox::key_prefix`: an endpoint's name as the first part of its keys.
#[cfg(all(fuzzing, feature = "tower"))]
#[must_use]
pub fn key_prefix(endpoint: &str) -> std::borrow::Cow<'_, str> {
    crate::inbox::key_prefix(endpoint)
}

/// `inbox::endpoint_of_key`: the endpoint whose `key_prefix` begins `key`.
#[cfg(all(fuzzing, feature = "tower"))]
#[must_use]
pub fn endpoint_of_key(key: &str) -> Option<String> {
    crate::inbox::endpoint_of_key(key)
}

/// `paypal::precheck`: the checks of a PayPal delivery that need no certificate, which
/// `PayPalCertificates` runs before it spends anything on the certificate URL (the rest
/// of `paypal_fetch` is reached through its public API: `PayPalCertificates` with a
/// fetcher of the target's).
///
/// # Errors
/// The rejection, as the source answers it.
#[cfg(feature = "paypal-fetch")]
pub fn paypal_precheck(
    headers: &http::HeaderMap,
    tolerance: crate::verify::Tolerance,
    now: time::OffsetDateTime,
) -> Result<(), crate::verify::Rejection> {
    crate::providers::paypal::precheck(headers, tolerance, now)
}
