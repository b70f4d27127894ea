//! Signed content: the pieces a provider concatenates before MACing, fed into the MAC
//! one after the other (never copied into one buffer).

use std::borrow::Cow;

use hmac::digest::Update;

use super::mac::Message;

/// One piece of the signed content.
///
/// ```
/// use hookguard::verify::{Piece, SignedContent};
///
/// // Slack: `v0:{ts}:{body}`
/// const SLACK: SignedContent = SignedContent::from_static(&[
///     Piece::Literal(b"v0:"),
///     Piece::Timestamp,
///     Piece::Literal(b":"),
///     Piece::Body,
/// ]);
/// assert!(SLACK.uses(Piece::Timestamp));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Piece {
    /// Fixed bytes.
    Literal(&'static [u8]),
    /// The delivery id, as received.
    Id,
    /// The timestamp, as received (its text, not a re-formatting).
    Timestamp,
    /// The raw body.
    Body,
    /// The full URL the sender called.
    Url,
    /// The full URL with the `%XX` escapes of these bytes decoded (either hex case), the
    /// other escapes left as they are. HubSpot v3 signs the URL with
    /// `` :/?@!$'()*,; `` decoded.
    ///
    /// ```
    /// use hookguard::verify::{Piece, SignedContent};
    /// let c = SignedContent::new(vec![Piece::UrlDecoding(b":/"), Piece::Body]);
    /// assert!(c.uses_url());
    /// ```
    UrlDecoding(&'static [u8]),
    /// The request method (`POST`).
    Method,
}

/// The sequence of pieces a scheme signs.
///
/// ```
/// use hookguard::{providers::zoom, verify::{Piece, SignedContent}};
/// // What Zoom signs: `v0:{ts}:{body}`.
/// let zoom = SignedContent::new(vec![Piece::Literal(b"v0:"), Piece::Timestamp, Piece::Literal(b":"), Piece::Body]);
/// assert_eq!(zoom, zoom::CONTENT);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedContent(Cow<'static, [Piece]>);

impl SignedContent {
    /// The body alone (GitHub, Shopify, most others).
    ///
    /// ```
    /// use hookguard::verify::{Piece, SignedContent};
    /// assert_eq!(SignedContent::BODY.pieces(), [Piece::Body]);
    /// ```
    pub const BODY: Self = Self::from_static(&[Piece::Body]);

    /// A fixed sequence, usable in constants.
    ///
    /// ```
    /// use hookguard::verify::{Piece, SignedContent};
    /// const STRIPE: SignedContent = SignedContent::from_static(&[Piece::Timestamp, Piece::Literal(b"."), Piece::Body]);
    /// assert_eq!(STRIPE.pieces().len(), 3);
    /// ```
    #[must_use]
    pub const fn from_static(pieces: &'static [Piece]) -> Self {
        Self(Cow::Borrowed(pieces))
    }

    /// A sequence built at run time.
    ///
    /// ```
    /// # use hookguard::verify::{Piece, SignedContent};
    /// let c = SignedContent::new(vec![Piece::Body, Piece::Url]);
    /// assert!(c.uses(Piece::Url));
    /// ```
    #[must_use]
    pub fn new(pieces: Vec<Piece>) -> Self {
        Self(Cow::Owned(pieces))
    }

    /// The pieces.
    ///
    /// ```
    /// use hookguard::{providers::slack, verify::Piece};
    /// assert_eq!(slack::CONTENT.pieces().last(), Some(&Piece::Body));
    /// ```
    #[must_use]
    pub fn pieces(&self) -> &[Piece] {
        &self.0
    }

    /// Whether a kind of piece is signed (literals compare by value).
    ///
    /// ```
    /// use hookguard::{providers::slack, verify::Piece};
    /// assert!(slack::CONTENT.uses(Piece::Timestamp));
    /// assert!(slack::CONTENT.uses(Piece::Literal(b"v0:")));
    /// assert!(!slack::CONTENT.uses(Piece::Id));
    /// ```
    #[must_use]
    pub fn uses(&self, piece: Piece) -> bool {
        self.0.contains(&piece)
    }

    /// Whether the delivery id is signed (cheaper than [`uses`](Self::uses), which
    /// compares literals too).
    pub(crate) fn signs_id(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Piece::Id))
    }

    /// Whether the URL is signed, as is or partly decoded.
    ///
    /// ```
    /// use hookguard::{providers::{hubspot, slack}, verify::SignedContent};
    /// assert!(hubspot::CONTENT_V3.uses_url(), "partly decoded");
    /// assert!(hubspot::CONTENT_V2.uses_url());
    /// assert!(!slack::CONTENT.uses_url() && !SignedContent::BODY.uses_url());
    /// ```
    #[must_use]
    pub fn uses_url(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Piece::Url | Piece::UrlDecoding(_)))
    }

    /// This content with the values of one request: a [`Message`] to MAC.
    pub(crate) const fn with<'v>(&'v self, values: &'v Values<'v>) -> Filled<'v> {
        Filled { content: self, values }
    }

    /// The signed content as a list of byte strings, for signature algorithms that take a
    /// message in parts (Ed25519, ECDSA). Only partly decoded URLs are copied.
    #[cfg_attr(not(any(feature = "ed25519", feature = "ecdsa")), allow(dead_code))]
    pub(crate) fn slices<'v>(&'v self, values: &Values<'v>) -> Vec<Cow<'v, [u8]>> {
        self.0
            .iter()
            .map(|piece| match piece {
                Piece::UrlDecoding(set) => {
                    let mut out = Vec::with_capacity(values.url.len());
                    decode_url(values.url.as_bytes(), set, |b| out.extend_from_slice(b));
                    Cow::Owned(out)
                }
                other => Cow::Borrowed(other.bytes(values)),
            })
            .collect()
    }
}

/// Signed content with the values of one request.
pub(crate) struct Filled<'v> {
    content: &'v SignedContent,
    values: &'v Values<'v>,
}

impl Message for Filled<'_> {
    #[inline]
    fn feed(&self, state: &mut impl Update) {
        for piece in self.content.0.iter() {
            match piece {
                Piece::UrlDecoding(set) => decode_url(self.values.url.as_bytes(), set, |b| state.update(b)),
                other => state.update(other.bytes(self.values)),
            }
        }
    }
}

impl Piece {
    /// The bytes of a piece that is used as it is (not [`Piece::UrlDecoding`]).
    fn bytes<'v>(&self, values: &Values<'v>) -> &'v [u8] {
        match self {
            Piece::Literal(bytes) => bytes,
            Piece::Id => values.id,
            Piece::Timestamp => values.timestamp,
            Piece::Body => values.body,
            Piece::Url | Piece::UrlDecoding(_) => values.url.as_bytes(),
            Piece::Method => values.method.as_bytes(),
        }
    }
}

/// Passes `url` to `out` in runs, with the `%XX` escapes of bytes in `set` decoded,
/// without copying it.
pub(crate) fn decode_url(url: &[u8], set: &[u8], mut out: impl FnMut(&[u8])) {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut start = 0;
    let mut i = 0;
    while i < url.len() {
        let decoded = match url.get(i..i + 3) {
            Some([b'%', hi, lo]) => match (hex(*hi), hex(*lo)) {
                (Some(hi), Some(lo)) => Some(hi << 4 | lo),
                _ => None,
            },
            _ => None,
        };
        match decoded {
            Some(byte) if set.contains(&byte) => {
                out(url.get(start..i).unwrap_or_default());
                out(&[byte]);
                i += 3;
                start = i;
            }
            _ => i += 1,
        }
    }
    out(url.get(start..).unwrap_or_default());
}

/// The values of the variable pieces for one message.
pub(crate) struct Values<'a> {
    pub(crate) id: &'a [u8],
    pub(crate) timestamp: &'a [u8],
    pub(crate) body: &'a [u8],
    pub(crate) url: &'a str,
    pub(crate) method: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Secret,
        verify::{Algorithm, KeyedMac},
    };

    #[test]
    fn url_decoding_decodes_only_the_set() {
        let key = KeyedMac::new(Algorithm::Sha256, &Secret::new("k").unwrap());
        let cases = [
            ("plain", "https://e.com/a?b=c", "https://e.com/a?b=c"),
            ("in set, both cases", "https%3A%2f%2Fe.com/a", "https://e.com/a"),
            ("outside the set", "https://e.com/a%20b%3a", "https://e.com/a%20b:"),
            ("truncated escape", "https://e.com/%3", "https://e.com/%3"),
            ("bad hex", "https://e.com/%zz%3A", "https://e.com/%zz:"),
            ("empty", "", ""),
        ];
        for (name, url, want) in cases {
            let mut got = key.start();
            decode_url(url.as_bytes(), b":/", |b| got.update(b));
            assert_eq!(got.finish().as_bytes(), key.mac(want.as_bytes()).as_bytes(), "case {name}");
            let mut copied = Vec::new();
            decode_url(url.as_bytes(), b":/", |b| copied.extend_from_slice(b));
            assert_eq!(copied, want.as_bytes(), "case {name}");
        }
    }
}
