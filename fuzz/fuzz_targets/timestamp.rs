//! Timestamp parsing in every format: never panics; what parses re-formats and parses back
//! to the same instant (numeric forms).
#![no_main]

use hookguard::verify::TimestampFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [TimestampFormat::UnixSeconds, TimestampFormat::UnixMillis, TimestampFormat::Rfc3339] {
        if let Some(at) = format.parse(data) {
            let text = format.format(at);
            let again = format.parse(text.as_bytes()).expect("a formatted timestamp parses");
            if format != TimestampFormat::Rfc3339 {
                assert_eq!(again, at, "{format:?} round trip");
            }
        }
    }
});
