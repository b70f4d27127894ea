//! Stored webhooks read back, as inbox backends do: `WebhookRecord::decode_headers` over
//! any bytes (the SQL backends' header column), `Webhook::from_record` over any record (a
//! damaged or foreign row), and the JSON the Redis and PostgreSQL inboxes store beside
//! the body over any bytes.
//!
//! What must hold, besides no panic:
//! - bytes that decode are exactly what encoding the decoded list writes, and any list
//!   encodes to bytes that decode to it;
//! - a record is refused exactly when a header name or value is not valid HTTP or it has
//!   more than `MAX_HEADERS` (4096) headers (times in nanoseconds as `i64` are always in
//!   range), with a `bad webhook record` error (`pad` puts records either side of the
//!   limit);
//! - a webhook read back gives the record it was read from (header names in lower case),
//!   and that record reads back to an equal webhook. (Values keep their order per header
//!   name; a header map does not keep the order across names.)
//! - stored JSON that reads, and the stored JSON of any webhook, read back (after being
//!   written again) to an equal webhook;
//! - a record read with times in full (`i128` nanoseconds, as SQLite keeps a time past
//!   2262) is refused exactly when it would be with `i64` times or a time is outside
//!   `time`'s range, and gives those times back unchanged.
//! - the PostgreSQL inbox's escaping (`jsonb` and `text` refuse NUL): the stored form of
//!   every webhook's JSON is JSON with no NUL in any string, and reads back to the webhook,
//!   also after going through a JSON value (keys reordered and respaced, as `jsonb`
//!   does); any text read back unescaped is the text (as `blob`, taken as UTF-8 lossily)
//!   unless it is an object marked `"nul_escaped": true`, and never panics; any text
//!   stored (`text` columns) holds no NUL, reads back, and two different texts (`key`
//!   and `endpoint`) are stored differently;
//! - a key made of an endpoint's key prefix, `:` and any tail gives that endpoint back.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use hookguard::{
    __fuzz,
    inbox::{Webhook, WebhookRecord},
};
use http::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Input {
    blob: Vec<u8>,
    key: String,
    endpoint: String,
    provider: String,
    id: Option<String>,
    event: Option<String>,
    timestamp: Option<i64>,
    received_at: i64,
    /// Times in full, for the record read with its times apart.
    far_timestamp: Option<i128>,
    far_received_at: i128,
    headers: Vec<(String, Vec<u8>)>,
    /// When its high four bits are set (rarely: 4096 headers cost time), pads the headers
    /// to `MAX_HEADERS - 2 + pad % 4` with copies of one valid header; only whether the
    /// record is read is checked then.
    pad: Option<u8>,
    body: Vec<u8>,
}

/// Whether no string (or object key) in `value` holds NUL, which `jsonb` refuses.
fn no_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.contains('\0'),
        Value::Array(a) => a.iter().all(no_nul),
        Value::Object(o) => o.iter().all(|(k, v)| !k.contains('\0') && no_nul(v)),
        _ => true,
    }
}

/// The PostgreSQL inbox's stored form of `hook`'s JSON: JSON without NUL, read back to
/// `hook` as it is and after a JSON value reordered and respaced it (`jsonb`'s way).
fn check_pg_record(hook: &Webhook) {
    let stored = __fuzz::pg_stored_record(__fuzz::write_meta_json(hook));
    let value: Value =
        serde_json::from_str(&stored).unwrap_or_else(|e| panic!("stored form not JSON: {e}: {stored}"));
    assert!(no_nul(&value), "a NUL in the stored form: {stored}");
    let compact = serde_json::to_string(&value).expect("a value writes");
    let pretty = serde_json::to_string_pretty(&value).expect("a value writes");
    for (how, text) in
        [("as stored", &stored), ("through jsonb (compact)", &compact), ("through jsonb (pretty)", &pretty)]
    {
        let record = __fuzz::pg_read_record(text).unwrap_or_else(|e| panic!("{how}: {e}: {text}"));
        let read = __fuzz::read_meta_json(record.as_bytes(), hook.body().clone())
            .unwrap_or_else(|e| panic!("{how}: {e}: {text}"));
        assert_eq!(&read, hook, "{how}: {text}");
    }
}

/// `text` stored in a `text` column: no NUL, read back; `other`, a different text, is
/// stored differently.
fn check_pg_text(text: &str, other: &str) {
    let stored = __fuzz::pg_stored(text);
    assert!(!stored.contains('\0'), "{text:?} stored as {stored:?}");
    if !text.contains(['\0', '\u{1a}']) {
        assert_eq!(stored, text, "nothing to escape: unchanged");
    }
    assert_eq!(__fuzz::pg_unstored(&stored).as_deref(), Some(text), "stored, read back");
    if text != other {
        assert_ne!(stored, __fuzz::pg_stored(other), "{text:?} and {other:?} stored alike");
    }
}

fuzz_target!(|input: Input| {
    // The PostgreSQL inbox's escaping: any text read back, any text stored.
    let text = String::from_utf8_lossy(&input.blob);
    match __fuzz::pg_read_record(&text) {
        Ok(read) if read != text => {
            let marked = serde_json::from_str::<Value>(&text)
                .is_ok_and(|v| v.get("nul_escaped").and_then(Value::as_bool) == Some(true));
            assert!(marked, "a record without the mark was changed: {text:?} read as {read:?}");
        }
        Ok(_) => {}
        Err(e) => assert!(e.contains("unreadable"), "{e}"),
    }
    let _ = __fuzz::pg_stored_record(text.into_owned());
    check_pg_text(&input.key, &input.endpoint);
    check_pg_text(&input.endpoint, &input.key);
    // A key's endpoint comes back from its prefix, whatever the tail.
    let key = format!("{}:{}", __fuzz::key_prefix(&input.endpoint), input.key);
    assert_eq!(__fuzz::endpoint_of_key(&key).as_deref(), Some(input.endpoint.as_str()), "{key:?}");

    // The Redis and PostgreSQL inboxes' stored form (JSON beside the body).
    if let Ok(hook) = __fuzz::read_meta_json(&input.blob, input.body.clone().into()) {
        let again = __fuzz::read_meta_json(__fuzz::write_meta_json(&hook).as_bytes(), hook.body().clone());
        assert_eq!(again.expect("a stored form written is read"), hook, "meta JSON read, written, read");
        check_pg_record(&hook);
    }
    match WebhookRecord::decode_headers(&input.blob) {
        Ok(headers) => assert_eq!(WebhookRecord::encode_headers(&headers), input.blob, "decode, then encode"),
        Err(e) => assert!(e.to_string().starts_with("bad webhook record: "), "{e}"),
    }
    let encoded = WebhookRecord::encode_headers(&input.headers);
    assert_eq!(WebhookRecord::decode_headers(&encoded), Ok(input.headers.clone()), "encode, then decode");

    let mut headers = input.headers;
    let padded = input.pad.filter(|p| p >> 4 == 0xf);
    if let Some(pad) = padded {
        let len = __fuzz::MAX_HEADERS - 2 + usize::from(pad % 4);
        if headers.len() < len {
            headers.resize(len, ("x-pad".to_owned(), b"1".to_vec()));
        }
    }
    let record = WebhookRecord {
        key: input.key,
        endpoint: input.endpoint,
        provider: input.provider,
        id: input.id,
        event: input.event,
        timestamp_unix_nanos: input.timestamp,
        received_at_unix_nanos: input.received_at,
        headers,
        body: input.body,
    };
    let valid = record.headers.len() <= __fuzz::MAX_HEADERS
        && record.headers.iter().all(|(name, value)| {
            HeaderName::from_bytes(name.as_bytes()).is_ok() && HeaderValue::from_bytes(value).is_ok()
        });
    if padded.is_some() {
        // About the limit only whether it is read: the round trips below are slow over
        // 4096 headers, and the unpadded inputs check them.
        match Webhook::from_record(record) {
            Ok(_) => assert!(valid, "a record with an invalid header, or too many, was read"),
            Err(e) => assert!(!valid, "a valid record was refused: {e}"),
        }
        return;
    }
    // Times in full: read exactly when they are within `time`'s range, and given back.
    let in_range = |nanos: i128| time::OffsetDateTime::from_unix_timestamp_nanos(nanos).is_ok();
    let times_ok = input.far_timestamp.is_none_or(in_range) && in_range(input.far_received_at);
    match __fuzz::record_apart_round_trip(record.clone(), input.far_timestamp, input.far_received_at) {
        Ok((_, timestamp, received_at)) => {
            assert!(valid && times_ok, "a record with an invalid header or time was read");
            assert_eq!((timestamp, received_at), (input.far_timestamp, input.far_received_at));
        }
        Err(e) => {
            assert!(!(valid && times_ok), "a valid record was refused: {e}");
            assert!(e.starts_with("bad webhook record: "), "{e}");
        }
    }
    let hook = match Webhook::from_record(record.clone()) {
        Ok(hook) => hook,
        Err(e) => {
            assert!(!valid, "a valid record was refused: {e}");
            assert!(e.to_string().starts_with("bad webhook record: "), "{e}");
            return;
        }
    };
    assert!(valid, "a record with an invalid header, or too many, was read");
    let back = hook.to_record().expect("a webhook read back is a record again");
    assert_eq!(back.key, record.key);
    assert_eq!(back.endpoint, record.endpoint);
    assert_eq!(back.provider, record.provider);
    assert_eq!(back.id, record.id);
    assert_eq!(back.event, record.event);
    assert_eq!(back.timestamp_unix_nanos, record.timestamp_unix_nanos);
    assert_eq!(back.received_at_unix_nanos, record.received_at_unix_nanos);
    assert_eq!(back.body, record.body);
    // A header map keeps the order of each name's values, not the order across names.
    let by_name = |headers: &[(String, Vec<u8>)], lower: bool| {
        let mut map: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for (name, value) in headers {
            let name = if lower { name.to_ascii_lowercase() } else { name.clone() };
            map.entry(name).or_default().push(value.clone());
        }
        map
    };
    assert_eq!(by_name(&back.headers, false), by_name(&record.headers, true), "the headers read back");
    assert_eq!(Webhook::from_record(back).expect("read again"), hook);
    let stored = __fuzz::write_meta_json(&hook);
    let read =
        __fuzz::read_meta_json(stored.as_bytes(), hook.body().clone()).expect("its stored form is read");
    assert_eq!(read, hook, "meta JSON written, read");
    check_pg_record(&hook);
    let _ = hook.json::<serde_json::Value>();
});
