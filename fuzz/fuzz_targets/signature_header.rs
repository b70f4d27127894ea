//! Every signature-header format (plain with a prefix, `key=value` pairs, versioned
//! entries) in both encodings, over one or more (duplicated) header values. Never
//! panics; work is bounded (at most `MAX_SIGNATURES` entries, values of at most
//! `MAX_SIGNATURE_HEADER_LEN` bytes); what is found really is in the input. The same
//! bytes as a form (`FormPairs`) give the pairs `form_urlencoded` gives.
//!
//! Input: byte 0 picks the format, byte 1 the encoding; the rest is header values,
//! one per line (a line that is not a valid header value is skipped).
#![no_main]

use hookguard::{
    __fuzz::{Parsed, parse_signature_bytes, parse_signatures},
    verify::{
        Encoding, FormPairs, MAX_SIGNATURE_HEADER_LEN, MAX_SIGNATURES, MAX_TAG_LEN, Reason, SignatureFormat,
    },
};
use libfuzzer_sys::fuzz_target;

/// The formats the presets use.
const FORMATS: &[SignatureFormat] = &[
    SignatureFormat::Plain { prefix: "sha256=" },
    SignatureFormat::Plain { prefix: "sha1=" },
    SignatureFormat::Plain { prefix: "v0=" },
    SignatureFormat::Plain { prefix: "" },
    SignatureFormat::Pairs { separator: b',', signature_key: "v1", timestamp_key: Some("t") },
    SignatureFormat::Pairs { separator: b';', signature_key: "h1", timestamp_key: Some("ts") },
    SignatureFormat::Pairs { separator: b',', signature_key: "v1", timestamp_key: None },
    SignatureFormat::Versioned { version: "v1" },
    SignatureFormat::Versioned { version: "v1a" },
];

fn check(parsed: &Result<Parsed, Reason>, values: &[http::HeaderValue], max_len: Option<usize>) {
    match parsed {
        Ok(p) => {
            assert!(!p.signatures.is_empty() && p.signatures.len() <= MAX_SIGNATURES);
            if let Some(max) = max_len {
                assert!(p.signatures.iter().all(|s| s.len() <= max));
            }
            if let Some(ts) = &p.timestamp {
                assert!(values.iter().any(|v| v.as_bytes().windows(ts.len().max(1)).any(|w| w == &ts[..]) || ts.is_empty()));
            }
            assert!(values.iter().all(|v| v.len() <= MAX_SIGNATURE_HEADER_LEN));
        }
        Err(reason) => assert!(matches!(
            reason,
            Reason::MissingSignature
                | Reason::MalformedSignature
                | Reason::TooManySignatures
                | Reason::HeaderTooLarge
        )),
    }
}

fuzz_target!(|data: &[u8]| {
    let [f, e, rest @ ..] = data else { return };
    let format = FORMATS[usize::from(*f) % FORMATS.len()];
    let encoding = if e % 2 == 0 { Encoding::Hex } else { Encoding::Base64 };
    let values: Vec<http::HeaderValue> = rest
        .split(|b| *b == b'\n')
        .take(32)
        .filter_map(|line| http::HeaderValue::from_bytes(line).ok())
        .collect();
    let small = parse_signatures(format, encoding, &values);
    check(&small, &values, Some(MAX_TAG_LEN));
    let any = parse_signature_bytes(format, encoding, &values);
    check(&any, &values, None);
    // Same walk, so the same answer whenever every entry fits in a MAC-sized tag.
    if let (Ok(a), Ok(b)) = (&small, &any) {
        assert_eq!(a.timestamp, b.timestamp);
    }
    if matches!(small, Err(Reason::TooManySignatures | Reason::HeaderTooLarge)) {
        assert_eq!(small.as_ref().err(), any.as_ref().err());
    }
    // Form pairs (Twilio's signed parameters): decoded never longer than the input, and
    // the pairs the WHATWG `application/x-www-form-urlencoded` parser (`form_urlencoded`)
    // reads, which gives text: compared with invalid UTF-8 replaced.
    let mut total = 0;
    let mut ours = Vec::new();
    for (name, value) in FormPairs::new(rest) {
        total += name.len() + value.len();
        ours.push((
            String::from_utf8_lossy(&name).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        ));
    }
    assert!(total <= rest.len());
    let theirs: Vec<(String, String)> =
        form_urlencoded::parse(rest).map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
    assert_eq!(ours, theirs, "FormPairs against form_urlencoded");
});
