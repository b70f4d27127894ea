//! Signature decoding (hex, base64): never panics, never more than 64 bytes, and what
//! decodes re-encodes to text that decodes to the same bytes.
#![no_main]

use hookguard::verify::{Encoding, MAX_TAG_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for encoding in [Encoding::Hex, Encoding::Base64] {
        if let Ok(tag) = encoding.decode(data) {
            assert!(tag.as_bytes().len() <= MAX_TAG_LEN);
            let text = encoding.encode(tag.as_bytes());
            let again = encoding.decode(text.as_bytes()).expect("re-encoded text decodes");
            assert_eq!(again.as_bytes(), tag.as_bytes());
        }
    }
});
