//! Timestamp parsing in every format.
//!
//! What must hold, besides no panic:
//! - the numeric forms agree with a plain reading: what `TimestampFormat` documents (ASCII
//!   digits only: no sign, no spaces, no fraction; leading zeros allowed; at most 19
//!   digits), then `str::parse::<i64>` and `OffsetDateTime::from_unix_timestamp` (seconds;
//!   for milliseconds the seconds and the milliseconds left over);
//! - the envelope's reading (`parse_nanos`, no date built for the numeric forms) gives the
//!   instant `parse` gives, and refuses what it refuses and the instants outside the
//!   calendar in UTC (`9999-12-31T23:59:59-23:59` is in year 10000 there);
//! - what parses, written in the same format, parses back: to the same instant for the
//!   numeric forms, and to the same instant and the same text for RFC 3339;
//! - any instant parsed (in any format) written in RFC 3339 parses back to that instant.
#![no_main]

use hookguard::{__fuzz, verify::TimestampFormat};
use libfuzzer_sys::fuzz_target;
use time::{Duration, OffsetDateTime, UtcDateTime};

/// A numeric timestamp as documented, read with the standard library: `None` for what
/// must be refused.
fn plain_reading(format: TimestampFormat, text: &[u8]) -> Option<OffsetDateTime> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: i64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    match format {
        TimestampFormat::UnixSeconds => OffsetDateTime::from_unix_timestamp(n).ok(),
        TimestampFormat::UnixMillis => {
            OffsetDateTime::from_unix_timestamp(n / 1000).ok()?.checked_add(Duration::milliseconds(n % 1000))
        }
        _ => unreachable!("numeric forms only"),
    }
}

fuzz_target!(|data: &[u8]| {
    for format in [TimestampFormat::UnixSeconds, TimestampFormat::UnixMillis, TimestampFormat::Rfc3339] {
        let parsed = format.parse(data);
        if format != TimestampFormat::Rfc3339 {
            assert_eq!(parsed, plain_reading(format, data), "{format:?} against str::parse + time");
        }
        let in_calendar = UtcDateTime::MIN.unix_timestamp_nanos()..=UtcDateTime::MAX.unix_timestamp_nanos();
        assert_eq!(
            __fuzz::timestamp_nanos(format, data),
            parsed.map(OffsetDateTime::unix_timestamp_nanos).filter(|n| in_calendar.contains(n)),
            "{format:?}: parse_nanos against parse"
        );
        let Some(at) = parsed else { continue };
        let text = format.format(at);
        let again = format.parse(text.as_bytes()).expect("a formatted timestamp parses");
        match format {
            // Milliseconds drop what is finer: an instant parsed from them has none.
            TimestampFormat::UnixSeconds | TimestampFormat::UnixMillis => {
                assert_eq!(again, at, "{format:?} round trip");
            }
            _ => {
                assert_eq!(again, at, "RFC 3339 round trip of {text}");
                assert_eq!(format.format(again), text, "RFC 3339 written again");
            }
        }
        let rfc = TimestampFormat::Rfc3339.format(at);
        assert_eq!(TimestampFormat::Rfc3339.parse(rfc.as_bytes()), Some(at), "{format:?} as RFC 3339: {rfc}");
    }
});
