//! Text encodings of signatures: decoded into a stack buffer, never compared as text.

use base64::{
    Engine as _, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};

use super::mac::{MAX_TAG_LEN, Tag};

/// Standard alphabet; padding optional when decoding, written when encoding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How a signature is written in its header.
///
/// Decoding is lenient where it costs nothing (hex in either case, base64 with or without
/// padding) and strict where leniency would be guesswork (the URL-safe base64 alphabet is
/// malformed input for a standard-alphabet provider).
///
/// ```
/// use hookguard::verify::Encoding;
///
/// let tag = Encoding::Hex.decode(b"0aFF").unwrap();
/// assert_eq!(tag.as_bytes(), &[0x0a, 0xff]);
/// assert_eq!(Encoding::Base64.encode(tag.as_bytes()), "Cv8=");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// Hexadecimal (either case accepted; written in lower case).
    Hex,
    /// Base64, standard alphabet (padding optional when reading).
    Base64,
}

impl Encoding {
    /// Decodes a MAC-sized signature (at most 64 bytes) without allocating.
    ///
    /// # Errors
    /// `Err(())` when the text is empty, is not valid in this encoding, or decodes to more
    /// than 64 bytes.
    ///
    /// ```
    /// # use hookguard::verify::Encoding;
    /// assert!(Encoding::Hex.decode(b"abc").is_err()); // odd length
    /// assert!(Encoding::Base64.decode(b"Cv8").is_ok()); // no padding
    /// assert!(Encoding::Base64.decode(b"-_8=").is_err()); // URL-safe alphabet
    /// ```
    #[allow(clippy::result_unit_err)]
    pub fn decode(self, text: &[u8]) -> Result<Tag, ()> {
        let mut tag = Tag::EMPTY;
        self.decode_into(text, &mut tag)?;
        Ok(tag)
    }

    /// [`decode`](Self::decode) into a tag the caller owns (no copy of the 64-byte
    /// buffer). On error the tag's contents are unspecified.
    pub(crate) fn decode_into(self, text: &[u8], tag: &mut Tag) -> Result<(), ()> {
        // An empty signature (`sha256=`, `v1,`) is malformed, not a zero-length MAC.
        if text.is_empty() {
            return Err(());
        }
        let len = match self {
            Self::Hex => {
                if !text.len().is_multiple_of(2) || text.len() / 2 > MAX_TAG_LEN {
                    return Err(());
                }
                let out = &mut tag.buffer_mut()[..text.len() / 2];
                const_hex::decode_to_slice(text, out).map_err(|_| ())?;
                text.len() / 2
            }
            Self::Base64 => {
                // 4 characters carry 3 bytes: anything longer than 88 characters cannot
                // fit 64 bytes; refuse it before decoding.
                if text.len() > MAX_TAG_LEN.div_ceil(3) * 4 {
                    return Err(());
                }
                BASE64.decode_slice(text, tag.buffer_mut()).map_err(|_| ())?
            }
        };
        tag.set_len(len);
        Ok(())
    }

    /// Encodes bytes in this encoding (what a sender writes).
    ///
    /// ```
    /// # use hookguard::verify::Encoding;
    /// assert_eq!(Encoding::Hex.encode(&[0xab]), "ab");
    /// ```
    #[must_use]
    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            Self::Hex => const_hex::encode(bytes),
            Self::Base64 => BASE64.encode(bytes),
        }
    }

    /// Decodes text of any length (asymmetric signatures, public keys).
    #[allow(dead_code)] // used by the asymmetric schemes
    pub(crate) fn decode_vec(self, text: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::Hex => const_hex::decode(text).ok(),
            Self::Base64 => BASE64.decode(text).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_accepts_upper_case() {
        let lower = Encoding::Hex.decode(b"deadbeef").unwrap();
        let upper = Encoding::Hex.decode(b"DEADBEEF").unwrap();
        assert_eq!(lower.as_bytes(), upper.as_bytes());
    }

    #[test]
    fn oversized_inputs_are_refused() {
        assert!(Encoding::Hex.decode(&[b'a'; 130]).is_err());
        assert!(Encoding::Base64.decode(&[b'A'; 92]).is_err());
        // 64 bytes of base64 (88 characters with padding) still decode.
        let text = Encoding::Base64.encode(&[7; 64]);
        assert_eq!(Encoding::Base64.decode(text.as_bytes()).unwrap().as_bytes(), &[7; 64]);
    }

    #[test]
    fn empty_text_is_not_a_signature() {
        assert!(Encoding::Hex.decode(b"").is_err());
        assert!(Encoding::Base64.decode(b"").is_err());
    }

    #[test]
    fn base64_padding_is_optional() {
        let padded = Encoding::Base64.decode(b"YWI=").unwrap();
        let bare = Encoding::Base64.decode(b"YWI").unwrap();
        assert_eq!(padded.as_bytes(), b"ab");
        assert_eq!(bare.as_bytes(), b"ab");
    }
}
