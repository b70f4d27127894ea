//! Signed content: the pieces a provider concatenates before MACing, fed into the MAC
//! one after the other (never copied into one buffer).

use std::borrow::Cow;

use super::mac::MacState;

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
    /// The request method (`POST`).
    Method,
}

/// The sequence of pieces a scheme signs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedContent(Cow<'static, [Piece]>);

impl SignedContent {
    /// The body alone (GitHub, Shopify, most others).
    pub const BODY: Self = Self::from_static(&[Piece::Body]);

    /// A fixed sequence, usable in constants.
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
    #[must_use]
    pub fn pieces(&self) -> &[Piece] {
        &self.0
    }

    /// Whether a kind of piece is signed (literals compare by value).
    #[must_use]
    pub fn uses(&self, piece: Piece) -> bool {
        self.0.contains(&piece)
    }

    pub(crate) fn feed(&self, mac: &mut MacState, values: &Values<'_>) {
        for piece in self.0.iter() {
            mac.update(piece.bytes(values));
        }
    }

    /// The signed content as a list of slices, for signature algorithms that take a
    /// message in parts (Ed25519, ECDSA).
    #[cfg_attr(not(any(feature = "ed25519", feature = "ecdsa")), allow(dead_code))]
    pub(crate) fn slices<'v>(&'v self, values: &Values<'v>) -> Vec<&'v [u8]> {
        self.0.iter().map(|piece| piece.bytes(values)).collect()
    }
}

impl Piece {
    fn bytes<'v>(&self, values: &Values<'v>) -> &'v [u8] {
        match self {
            Piece::Literal(bytes) => bytes,
            Piece::Id => values.id.as_bytes(),
            Piece::Timestamp => values.timestamp.as_bytes(),
            Piece::Body => values.body,
            Piece::Url => values.url.as_bytes(),
            Piece::Method => values.method.as_bytes(),
        }
    }
}

/// The values of the variable pieces for one message.
pub(crate) struct Values<'a> {
    pub(crate) id: &'a str,
    pub(crate) timestamp: &'a str,
    pub(crate) body: &'a [u8],
    pub(crate) url: &'a str,
    pub(crate) method: &'a str,
}
