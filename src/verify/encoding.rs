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
                decode_base64(text, tag.buffer_mut())?
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
            // `const_hex` strips a leading `0x`: refused here as `decode_into` refuses it,
            // so that both paths read one signature alike.
            Self::Hex if text.get(..2).is_some_and(|p| p.eq_ignore_ascii_case(b"0x")) => None,
            Self::Hex => const_hex::decode(text).ok(),
            Self::Base64 => BASE64.decode(text).ok(),
        }
    }
}

/// Marks a byte outside the standard alphabet in [`BASE64_SHIFTED`]: above every valid
/// 24-bit group, so one test of the OR of all groups finds any invalid byte.
const INVALID: u32 = 1 << 31;

/// For each position in a 4-character quantum, each byte's 6-bit value already shifted to
/// its place in the 24-bit group (`INVALID` for a byte outside the alphabet): a quantum
/// decodes with four loads and three ORs, no shifts and no branch per character.
const BASE64_SHIFTED: [[u32; 256]; 4] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut tables = [[INVALID; 256]; 4];
    let mut i = 0;
    while i < alphabet.len() {
        let c = alphabet[i] as usize;
        let v = i as u32;
        tables[0][c] = v << 18;
        tables[1][c] = v << 12;
        tables[2][c] = v << 6;
        tables[3][c] = v;
        i += 1;
    }
    tables
};

/// Decodes standard-alphabet base64 of a signature into `out`; the number of bytes.
///
/// Accepts exactly what the `base64` crate's standard engine with indifferent padding
/// accepts (a differential test holds the two together): padding optional, but when
/// present it does not go past the last quantum (short padding is accepted); no `=`
/// elsewhere; the unused low bits of the last character are zero (one spelling per
/// value). A signature is at most 88 characters, so a table lookup per character beats
/// the general engine's set-up.
fn decode_base64(text: &[u8], out: &mut [u8; MAX_TAG_LEN]) -> Result<usize, ()> {
    let data = match text {
        [rest @ .., b'=', b'='] => rest,
        [rest @ .., b'='] => rest,
        _ => text,
    };
    let padding = text.len() - data.len();
    let tail = data.len() % 4;
    // One leftover character carries no whole byte; padding may be short, never more
    // than completes the last quantum, and never after a whole quantum.
    if tail == 1 || (padding != 0 && (tail == 0 || tail + padding > 4)) {
        return Err(());
    }
    let len = data.len() / 4 * 3 + tail.saturating_sub(1);
    if len > MAX_TAG_LEN {
        return Err(());
    }
    let [t0, t1, t2, t3] = &BASE64_SHIFTED;
    // Every group is OR-ed into `seen`: one test at the end finds any invalid byte.
    let mut seen = 0_u32;
    let (quads, rest) = data.as_chunks::<4>();
    let (groups, _) = out.as_chunks_mut::<3>();
    for (&[a, b, c, d], dst) in quads.iter().zip(groups) {
        let n = t0[usize::from(a)] | t1[usize::from(b)] | t2[usize::from(c)] | t3[usize::from(d)];
        seen |= n;
        let [_, x, y, z] = n.to_be_bytes();
        *dst = [x, y, z];
    }
    // The leftover 2 or 3 characters; the unused low bits of the last must be zero.
    let unused = match *rest {
        [a, b] => {
            let n = t0[usize::from(a)] | t1[usize::from(b)];
            seen |= n;
            out[len - 1] = (n >> 16) as u8;
            n & 0xffff
        }
        [a, b, c] => {
            let n = t0[usize::from(a)] | t1[usize::from(b)] | t2[usize::from(c)];
            seen |= n;
            out[len - 2..len].copy_from_slice(&n.to_be_bytes()[1..3]);
            n & 0xff
        }
        _ => 0,
    };
    if seen & INVALID != 0 || unused != 0 { Err(()) } else { Ok(len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_of_any_length_is_read_as_fixed_length_hex_is_without_a_0x_prefix() {
        for text in [&b"0xabcd"[..], b"0Xabcd"] {
            assert_eq!(Encoding::Hex.decode_vec(text), None, "{text:?}");
        }
        assert_eq!(Encoding::Hex.decode_vec(b"abcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(Encoding::Hex.decode_vec(b"ABCD"), Some(vec![0xab, 0xcd]));
        assert!(Encoding::Hex.decode(b"abcd").is_ok());
        assert!(Encoding::Hex.decode(b"0xabcd").is_err());
    }

    proptest::proptest! {
        /// The hand-written decoder agrees with the `base64` crate on everything: valid
        /// signatures of every length, and any mix of alphabet, padding and junk.
        #[test]
        fn base64_decoder_agrees_with_the_base64_crate(
            text in proptest::string::string_regex("[A-Za-z0-9+/=_\\-. ]{0,90}").unwrap(),
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..70),
            cut in 0_usize..4,
        ) {
            let encoded = BASE64.encode(&bytes);
            let trimmed = &encoded[..encoded.len() - cut.min(encoded.len())];
            for input in [text.as_bytes(), encoded.as_bytes(), trimmed.as_bytes(), encoded.trim_end_matches('=').as_bytes()] {
                let mut ours = [0_u8; 64];
                let mut theirs = [0_u8; 64];
                let a = decode_base64(input, &mut ours);
                let b = BASE64.decode_slice(input, &mut theirs).map_err(|_| ());
                proptest::prop_assert_eq!(a, b, "input {:?}", String::from_utf8_lossy(input));
                if let Ok(n) = a {
                    proptest::prop_assert_eq!(&ours[..n], &theirs[..n]);
                }
            }
        }
    }

    #[test]
    fn base64_decoder_edge_cases() {
        let mut out = [0_u8; 64];
        for (input, expected) in [
            (&b"YQ=="[..], Ok(&b"a"[..])),
            (b"YQ", Ok(b"a")),
            (b"YQ=", Ok(b"a")), // short padding, as the crate's indifferent mode
            (b"YR==", Err(())), // non-zero unused bits
            (b"YWI=", Ok(b"ab")),
            (b"YWJ=", Err(())),
            (b"Y", Err(())),
            (b"=", Err(())),
            (b"==", Err(())),
            (b"YWJj", Ok(b"abc")),
            (b"YW=j", Err(())),
            (b"YWJj====", Err(())),
        ] {
            assert_eq!(decode_base64(input, &mut out).map(|n| &out[..n]), expected, "{input:?}");
        }
        // 66 bytes of output do not fit a 64-byte tag.
        assert!(decode_base64(&[b'A'; 88], &mut out).is_err());
    }

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
