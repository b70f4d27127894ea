//! Keyed MACs: the key is absorbed once, at construction; each request clones the keyed
//! state and feeds the signed pieces into it.

use std::fmt;

use hmac::{
    KeyInit, Mac,
    digest::{FixedOutput, Update},
};

use crate::secret::Secret;

/// The hash function under an HMAC (or under a secret-prefix hash, see [`Construction`]).
///
/// ```
/// use hookguard::verify::Algorithm;
/// assert_eq!(Algorithm::Sha256.tag_len(), 32);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC-SHA1 (GitHub legacy, Intercom, Trello, Twilio, Vercel).
    Sha1,
    /// HMAC-SHA256, what most providers use.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    /// Length of the tag in bytes.
    ///
    /// ```
    /// # use hookguard::verify::Algorithm;
    /// assert_eq!(Algorithm::Sha1.tag_len(), 20);
    /// ```
    #[must_use]
    pub const fn tag_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// How the secret and the message are combined under the hash.
///
/// Almost every provider uses [`Construction::Hmac`]. [`Construction::SecretPrefix`]
/// is `hash(secret ‖ message)`, used by HubSpot's v1 and v2 signatures only: it is open
/// to length extension and is here for compatibility, not as a choice for new senders.
///
/// ```
/// use hookguard::{Secret, verify::{Algorithm, Construction, KeyedMac}};
///
/// let key = KeyedMac::with_construction(Algorithm::Sha256, Construction::SecretPrefix, &Secret::new("s").unwrap());
/// // sha256("s" ‖ "body")
/// assert_eq!(
///     const_hex::encode(key.mac(b"body").as_bytes()),
///     "71a53bea243225f38ff4816715a00a73ff1a6f1d3bb60972a66068d174531e17"
/// );
/// assert_eq!(key.construction(), Construction::SecretPrefix);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Construction {
    /// HMAC (RFC 2104).
    #[default]
    Hmac,
    /// The plain hash of the secret's bytes followed by the message (HubSpot v1/v2).
    SecretPrefix,
}

/// Largest tag any HMAC here produces (SHA-512).
///
/// ```
/// use hookguard::{Secret, verify::{Algorithm, KeyedMac, MAX_TAG_LEN}};
/// let key = KeyedMac::new(Algorithm::Sha512, &Secret::new("k").unwrap());
/// assert_eq!(key.start().finish().as_bytes().len(), MAX_TAG_LEN);
/// ```
pub const MAX_TAG_LEN: usize = 64;

/// A MAC output or a decoded signature, held inline (no allocation).
///
/// ```
/// use hookguard::verify::Tag;
/// let t = Tag::from_slice(&[1, 2, 3]).unwrap();
/// assert_eq!(t.as_bytes(), &[1, 2, 3]);
/// ```
#[derive(Clone, Copy)]
pub struct Tag {
    bytes: [u8; MAX_TAG_LEN],
    len: u8,
}

impl Tag {
    /// An empty tag, to be filled.
    pub(crate) const EMPTY: Self = Self { bytes: [0; MAX_TAG_LEN], len: 0 };

    /// Copies up to [`MAX_TAG_LEN`] bytes; `None` when `bytes` is longer.
    ///
    /// ```
    /// # use hookguard::verify::Tag;
    /// assert!(Tag::from_slice(&[0; 65]).is_none());
    /// ```
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut tag = Self::EMPTY;
        tag.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        tag.len = bytes.len() as u8;
        Some(tag)
    }

    /// The tag's bytes.
    ///
    /// ```
    /// # use hookguard::verify::Tag;
    /// assert!(Tag::from_slice(&[]).unwrap().as_bytes().is_empty());
    /// ```
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub(crate) fn buffer_mut(&mut self) -> &mut [u8; MAX_TAG_LEN] {
        &mut self.bytes
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= MAX_TAG_LEN);
        self.len = len.min(MAX_TAG_LEN) as u8;
    }

    /// The tag's 32-byte fingerprint ([`Verified`](super::Verified)'s dedup key when the
    /// provider sends no id): a SHA-256 of the tag, never the tag itself. The fingerprint
    /// is the first secret's tag's, whichever secret matched (so that a copy cut down to
    /// one signature during a rotation keeps its replay key); that tag, kept as it is,
    /// would be a valid signature under the first secret for a request signed with
    /// another, and the dedup key goes into stores, logs and `Webhook::key`. Hashed, it
    /// is one-way.
    #[inline]
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        sha256_of_short(self.as_bytes())
    }

    /// Constant-time equality over the bytes (lengths are public).
    pub(crate) fn ct_eq(&self, other: &Self) -> subtle::Choice {
        use subtle::ConstantTimeEq as _;
        // Lengths are public. The bytes are XOR-ed and OR-ed together with no branch on
        // their values, and only the folded byte goes through `subtle`'s barrier: one
        // barrier per tag instead of one per byte, still constant time.
        if self.len != other.len {
            return subtle::Choice::from(0);
        }
        let mut diff = 0_u8;
        for (a, b) in self.as_bytes().iter().zip(other.as_bytes()) {
            diff |= a ^ b;
        }
        diff.ct_eq(&0)
    }
}

/// Tags are compared only in constant time: `Tag` has no `PartialEq`, so `==` on two
/// tags does not compile.
///
/// ```
/// use hookguard::verify::Tag;
/// use subtle::ConstantTimeEq as _;
///
/// let a = Tag::from_slice(&[1, 2, 3]).unwrap();
/// assert!(bool::from(a.ct_eq(&Tag::from_slice(&[1, 2, 3]).unwrap())));
/// assert!(!bool::from(a.ct_eq(&Tag::from_slice(&[1, 2]).unwrap())));
/// ```
///
/// ```compile_fail
/// use hookguard::verify::Tag;
/// let a = Tag::from_slice(&[1]).unwrap();
/// let _ = a == a;
/// ```
impl subtle::ConstantTimeEq for Tag {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        Tag::ct_eq(self, other)
    }
}

impl fmt::Debug for Tag {
    // A tag is derived from a secret: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({} bytes)", self.len)
    }
}

/// An HMAC keyed once; [`KeyedMac::start`] clones the keyed state for one message.
///
/// ```
/// use hookguard::{Secret, verify::{Algorithm, KeyedMac}};
///
/// let key = KeyedMac::new(Algorithm::Sha256, &Secret::new("key").unwrap());
/// let mut mac = key.start();
/// mac.update(b"The quick brown fox ");
/// mac.update(b"jumps over the lazy dog");
/// assert_eq!(
///     const_hex::encode(mac.finish().as_bytes()),
///     "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
/// );
/// ```
#[derive(Clone)]
pub struct KeyedMac(Inner);

#[derive(Clone)]
enum Inner {
    Sha1(hmac::Hmac<sha1::Sha1>),
    Sha256(hmac::Hmac<sha2::Sha256>),
    Sha512(hmac::Hmac<sha2::Sha512>),
    // Hash states that have absorbed the secret (Construction::SecretPrefix).
    PrefixSha1(sha1::Sha1),
    PrefixSha256(sha2::Sha256),
    PrefixSha512(sha2::Sha512),
}

impl KeyedMac {
    /// Keys an HMAC with `secret`.
    ///
    /// ```
    /// use hookguard::{Secret, verify::{Algorithm, Encoding, KeyedMac}};
    /// // GitHub's documented example.
    /// let key = KeyedMac::new(Algorithm::Sha256, &Secret::new("It's a Secret to Everybody").unwrap());
    /// let mut mac = key.start();
    /// mac.update(b"Hello, World!");
    /// assert_eq!(Encoding::Hex.encode(mac.finish().as_bytes()), "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
    /// ```
    #[must_use]
    pub fn new(algorithm: Algorithm, secret: &Secret) -> Self {
        Self::from_key(algorithm, secret.expose())
    }

    /// Keys `algorithm` with `secret` under the given [`Construction`].
    ///
    /// ```
    /// # use hookguard::{Secret, verify::{Algorithm, Construction, KeyedMac}};
    /// let key = KeyedMac::with_construction(Algorithm::Sha256, Construction::Hmac, &Secret::new("k").unwrap());
    /// assert_eq!(key.construction(), Construction::Hmac);
    /// ```
    #[must_use]
    pub fn with_construction(algorithm: Algorithm, construction: Construction, secret: &Secret) -> Self {
        match construction {
            Construction::Hmac => Self::from_key(algorithm, secret.expose()),
            Construction::SecretPrefix => {
                use sha2::Digest as _;
                let key = secret.expose();
                Self(match algorithm {
                    Algorithm::Sha1 => Inner::PrefixSha1(sha1::Sha1::new_with_prefix(key)),
                    Algorithm::Sha256 => Inner::PrefixSha256(sha2::Sha256::new_with_prefix(key)),
                    Algorithm::Sha512 => Inner::PrefixSha512(sha2::Sha512::new_with_prefix(key)),
                })
            }
        }
    }

    pub(crate) fn from_key(algorithm: Algorithm, key: &[u8]) -> Self {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        Self(match algorithm {
            Algorithm::Sha1 => Inner::Sha1(hmac_new(key)),
            Algorithm::Sha256 => Inner::Sha256(hmac_new(key)),
            Algorithm::Sha512 => Inner::Sha512(hmac_new(key)),
        })
    }

    /// The algorithm this key is for.
    ///
    /// ```
    /// # use hookguard::{Secret, verify::{Algorithm, KeyedMac}};
    /// let key = KeyedMac::new(Algorithm::Sha1, &Secret::new("k").unwrap());
    /// assert_eq!(key.algorithm(), Algorithm::Sha1);
    /// ```
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            Inner::Sha1(_) | Inner::PrefixSha1(_) => Algorithm::Sha1,
            Inner::Sha256(_) | Inner::PrefixSha256(_) => Algorithm::Sha256,
            Inner::Sha512(_) | Inner::PrefixSha512(_) => Algorithm::Sha512,
        }
    }

    /// How the secret is combined with the message.
    ///
    /// ```
    /// # use hookguard::{Secret, verify::{Algorithm, Construction, KeyedMac}};
    /// let key = KeyedMac::new(Algorithm::Sha256, &Secret::new("k").unwrap());
    /// assert_eq!(key.construction(), Construction::Hmac);
    /// ```
    #[must_use]
    pub fn construction(&self) -> Construction {
        match self.0 {
            Inner::Sha1(_) | Inner::Sha256(_) | Inner::Sha512(_) => Construction::Hmac,
            Inner::PrefixSha1(_) | Inner::PrefixSha256(_) | Inner::PrefixSha512(_) => {
                Construction::SecretPrefix
            }
        }
    }

    /// A fresh MAC computation over the keyed state (a copy of a few hundred bytes; the
    /// key is not processed again).
    ///
    /// ```
    /// use hookguard::{Secret, verify::{Algorithm, KeyedMac}};
    /// let key = KeyedMac::new(Algorithm::Sha1, &Secret::new("k").unwrap());
    /// let (mut a, mut b) = (key.start(), key.start());
    /// a.update(b"one");
    /// b.update(b"two");
    /// assert_ne!(a.finish().as_bytes(), b.finish().as_bytes(), "independent computations");
    /// ```
    #[must_use]
    pub fn start(&self) -> MacState {
        MacState(self.0.clone())
    }

    /// The tag of a message fed in pieces, on the concrete hash state: one match on the
    /// algorithm per message instead of one per piece, and the keyed state is cloned
    /// where it is used, not moved through an enum of every algorithm's size.
    #[inline]
    pub(crate) fn tag_of(&self, message: &(impl Message + ?Sized)) -> Tag {
        #[inline(always)]
        fn run<S: Clone + Update + FixedOutput>(keyed: &S, message: &(impl Message + ?Sized)) -> Tag {
            let mut state = keyed.clone();
            message.feed(&mut state);
            Tag::from_slice(&state.finalize_fixed()).unwrap_or(Tag::EMPTY)
        }
        match &self.0 {
            Inner::Sha1(k) => run(k, message),
            Inner::Sha256(k) => run(k, message),
            Inner::Sha512(k) => run(k, message),
            Inner::PrefixSha1(k) => run(k, message),
            Inner::PrefixSha256(k) => run(k, message),
            Inner::PrefixSha512(k) => run(k, message),
        }
    }

    /// MAC of one contiguous message.
    ///
    /// ```
    /// # use hookguard::{Secret, verify::{Algorithm, KeyedMac}};
    /// let key = KeyedMac::new(Algorithm::Sha256, &Secret::new("k").unwrap());
    /// assert_eq!(key.mac(b"m").as_bytes().len(), 32);
    /// ```
    #[must_use]
    pub fn mac(&self, message: &[u8]) -> Tag {
        self.tag_of(message)
    }
}

fn hmac_new<M: KeyInit>(key: &[u8]) -> M {
    match M::new_from_slice(key) {
        Ok(mac) => mac,
        // Unreachable for HMAC (any key length is valid); keep a total function anyway.
        Err(_) => M::new(&Default::default()),
    }
}

impl fmt::Debug for KeyedMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyedMac")
            .field(&self.algorithm())
            .field(&self.construction())
            .field(&"[redacted]")
            .finish()
    }
}

/// A message that is fed to a MAC in pieces (the signed content of one request).
pub(crate) trait Message {
    /// Feeds every piece, in order.
    fn feed(&self, state: &mut impl Update);
}

/// One contiguous message.
impl Message for [u8] {
    fn feed(&self, state: &mut impl Update) {
        state.update(self);
    }
}

/// One MAC computation in progress; see [`KeyedMac::start`].
///
/// ```
/// # use hookguard::{Secret, verify::{Algorithm, KeyedMac}};
/// let key = KeyedMac::new(Algorithm::Sha256, &Secret::new("k").unwrap());
/// let mut a = key.start();
/// a.update(b"ab");
/// let mut b = key.start();
/// b.update(b"a");
/// b.update(b"b");
/// assert_eq!(a.finish().as_bytes(), b.finish().as_bytes());
/// ```
pub struct MacState(Inner);

impl MacState {
    /// Feeds the next piece of the signed content.
    ///
    /// ```
    /// use hookguard::{Secret, verify::{Algorithm, Encoding, KeyedMac}};
    /// let key = KeyedMac::new(Algorithm::Sha256, &Secret::new("It's a Secret to Everybody").unwrap());
    /// let mut mac = key.start();
    /// for piece in [&b"Hello, "[..], b"World!"] {
    ///     mac.update(piece);
    /// }
    /// assert_eq!(Encoding::Hex.encode(mac.finish().as_bytes()), "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
    /// ```
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            Inner::Sha1(m) => Mac::update(m, data),
            Inner::Sha256(m) => Mac::update(m, data),
            Inner::Sha512(m) => Mac::update(m, data),
            Inner::PrefixSha1(h) => sha2::Digest::update(h, data),
            Inner::PrefixSha256(h) => sha2::Digest::update(h, data),
            Inner::PrefixSha512(h) => sha2::Digest::update(h, data),
        }
    }

    /// The tag.
    ///
    /// ```
    /// use hookguard::{Secret, verify::{Algorithm, KeyedMac}};
    /// let key = KeyedMac::new(Algorithm::Sha1, &Secret::new("k").unwrap());
    /// assert_eq!(key.start().finish().as_bytes().len(), 20, "SHA-1");
    /// ```
    #[must_use]
    pub fn finish(self) -> Tag {
        fn fill(out: &[u8]) -> Tag {
            Tag::from_slice(out).unwrap_or(Tag::EMPTY)
        }
        match self.0 {
            Inner::Sha1(m) => fill(&m.finalize().into_bytes()),
            Inner::Sha256(m) => fill(&m.finalize().into_bytes()),
            Inner::Sha512(m) => fill(&m.finalize().into_bytes()),
            Inner::PrefixSha1(h) => fill(&sha2::Digest::finalize(h)),
            Inner::PrefixSha256(h) => fill(&sha2::Digest::finalize(h)),
            Inner::PrefixSha512(h) => fill(&sha2::Digest::finalize(h)),
        }
    }
}

/// SHA-256 of `bytes`. Up to 55 bytes (a SHA-1 or SHA-256 tag) fit one padded block,
/// hashed with one call of the compression function: the fingerprint is taken on every
/// verification, and the general hasher's buffering cost as much again.
#[inline]
pub(crate) fn sha256_of_short(bytes: &[u8]) -> [u8; 32] {
    const H0: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    if bytes.len() > 55 {
        use sha2::Digest as _;
        return sha2::Sha256::digest(bytes).into();
    }
    let mut block = [0_u8; 64];
    block[..bytes.len()].copy_from_slice(bytes);
    block[bytes.len()] = 0x80;
    block[56..].copy_from_slice(&((bytes.len() as u64) * 8).to_be_bytes());
    let mut state = H0;
    sha2::block_api::compress256(&mut state, &[block]);
    let mut out = [0_u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

impl fmt::Debug for MacState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacState([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash states a keyed MAC keeps (HMAC's inner and outer states, a prefix
    /// scheme's state that absorbed the secret) are as good as the key: wiped when
    /// dropped, each per-request clone included.
    #[test]
    fn keyed_hash_states_are_wiped_on_drop() {
        fn wiped<T: zeroize::ZeroizeOnDrop>() {}
        wiped::<sha1::Sha1>();
        wiped::<sha2::Sha256>();
        wiped::<sha2::Sha512>();
    }

    /// The fingerprint is a dedup key, kept and logged: it must not be the tag (a valid
    /// signature under the first secret), only a digest of it, distinct per tag.
    #[test]
    fn a_tags_fingerprint_is_a_digest_of_it() {
        use sha2::Digest as _;
        let base: Vec<u8> = (1..=64).collect();
        let mut seen = std::collections::HashSet::new();
        for len in 0..=64 {
            let tag = Tag::from_slice(&base[..len]).unwrap();
            let print = tag.fingerprint();
            assert_eq!(print, <[u8; 32]>::from(sha2::Sha256::digest(&base[..len])), "len {len}");
            assert!(!print.starts_with(tag.as_bytes()) || len == 0, "len {len}: the tag shows through");
            assert!(seen.insert(print), "len {len}");
        }
    }

    #[test]
    fn tags_differing_in_any_byte_or_length_are_unequal() {
        let base: Vec<u8> = (0..64).collect();
        let tag = |bytes: &[u8]| Tag::from_slice(bytes).unwrap();
        for len in [1, 20, 32, 64] {
            let a = tag(&base[..len]);
            assert!(bool::from(a.ct_eq(&tag(&base[..len]))), "len {len}");
            for i in 0..len {
                let mut other = base[..len].to_vec();
                other[i] ^= 0x80;
                assert!(!bool::from(a.ct_eq(&tag(&other))), "len {len}, byte {i}");
            }
            assert!(!bool::from(a.ct_eq(&tag(&base[..len - 1]))), "shorter by one, len {len}");
        }
        assert!(bool::from(Tag::EMPTY.ct_eq(&tag(&[]))));
    }
}
