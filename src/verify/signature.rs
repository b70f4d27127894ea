//! Signature headers: the formats providers write them in, parsed into decoded
//! candidates held on the stack, with bounded work whatever the input.

use http::HeaderValue;

use super::{
    encoding::Encoding,
    mac::Tag,
    rejection::{Detail, Reason, Rejection},
};

/// At most this many signatures of the scheme's version are considered per request;
/// more is refused as [`Reason::TooManySignatures`].
///
/// ```
/// use hookguard::{providers::stripe, verify::{MAX_SIGNATURES, Reason, Scheme, WebhookRequest}};
/// let many = vec![format!("v1={}", "0".repeat(64)); MAX_SIGNATURES + 1].join(",");
/// let req = http::Request::post("/")
///     .header("stripe-signature", format!("t=1700000000,{many}"))
///     .body(b"{}".to_vec())
///     .unwrap();
/// let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
/// let refused = stripe::scheme("whsec_x").unwrap().verify(&WebhookRequest::from_request(&req), now).unwrap_err();
/// assert_eq!(refused.reason(), Reason::TooManySignatures);
/// ```
pub const MAX_SIGNATURES: usize = 16;

/// Signature headers longer than this are refused as [`Reason::HeaderTooLarge`].
///
/// ```
/// use hookguard::{providers::github, verify::{MAX_SIGNATURE_HEADER_LEN, Reason, Scheme, WebhookRequest}};
/// let huge = format!("sha256={}", "a".repeat(MAX_SIGNATURE_HEADER_LEN));
/// let req = http::Request::post("/").header("x-hub-signature-256", huge).body(b"{}".to_vec()).unwrap();
/// let refused = github::scheme("s").unwrap().verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap_err();
/// assert_eq!(refused.reason(), Reason::HeaderTooLarge);
/// ```
pub const MAX_SIGNATURE_HEADER_LEN: usize = 8 * 1024;

/// How signatures are laid out in their header value.
///
/// ```
/// use hookguard::verify::SignatureFormat;
///
/// // GitHub: `sha256=<hex>`
/// let github = SignatureFormat::Plain { prefix: "sha256=" };
/// // Stripe: `t=<ts>,v1=<hex>,v1=<hex>`
/// let stripe = SignatureFormat::Pairs { separator: b',', signature_key: "v1", timestamp_key: Some("t") };
/// // Standard Webhooks: `v1,<b64> v1,<b64>`
/// let standard = SignatureFormat::Versioned { version: "v1" };
/// # let _ = (github, stripe, standard);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureFormat {
    /// The whole value is one signature, behind a fixed prefix (may be empty).
    Plain {
        /// Text before the signature (`sha256=`, `v0=`); required when not empty.
        prefix: &'static str,
    },
    /// `key=value` pairs split by `separator`; each `signature_key` pair is a candidate,
    /// unknown keys are ignored (Stripe's `v0`).
    Pairs {
        /// `,` (Stripe, Calendly, PagerDuty) or `;` (Paddle).
        separator: u8,
        /// Key of the signatures (`v1`, `h1`).
        signature_key: &'static str,
        /// Key of the timestamp, when the header carries it (`t`, `ts`).
        timestamp_key: Option<&'static str>,
    },
    /// Space-separated `version,signature` entries; entries of other versions are
    /// ignored (Standard Webhooks `v1,…` beside `v1a,…`).
    Versioned {
        /// The version this scheme checks (`v1`).
        version: &'static str,
    },
}

/// Decoded signatures of any length, and the timestamp parameter of the header.
#[cfg_attr(not(any(feature = "ed25519", feature = "ecdsa")), allow(dead_code))]
pub(crate) type Decoded<'a> = (Vec<Vec<u8>>, Option<&'a [u8]>);

/// The decoded signatures of one request, filled in place by
/// [`SignatureFormat::parse`] (the array is about 1 KiB: it is never moved).
pub(crate) struct Candidates {
    tags: [Tag; MAX_SIGNATURES],
    len: usize,
}

impl Candidates {
    pub(crate) const fn new() -> Self {
        Self { tags: [Tag::EMPTY; MAX_SIGNATURES], len: 0 }
    }

    pub(crate) fn as_slice(&self) -> &[Tag] {
        &self.tags[..self.len]
    }
}

impl SignatureFormat {
    /// Parses every value of the signature header (duplicated headers are all read) into
    /// `out`, and returns the timestamp parameter, for [`SignatureFormat::Pairs`] with a
    /// timestamp key.
    pub(crate) fn parse<'a>(
        self,
        encoding: Encoding,
        values: impl Iterator<Item = &'a HeaderValue>,
        out: &mut Candidates,
    ) -> Result<Option<&'a [u8]>, Rejection> {
        out.len = 0;
        self.walk(values, |text| {
            // `walk` stops before MAX_SIGNATURES + 1 entries, so `len` stays in bounds.
            let Some(slot) = out.tags.get_mut(out.len) else {
                return false;
            };
            if encoding.decode_into(text, slot).is_ok() {
                out.len += 1;
                true
            } else {
                false
            }
        })
    }

    /// Decodes every signature of the header's values in turn into one stack buffer and
    /// hands it to `each`; the same walk, limits and errors as [`parse`](Self::parse),
    /// without keeping the candidates (for a caller that already holds the MAC).
    #[inline]
    pub(crate) fn parse_each<'a>(
        self,
        encoding: Encoding,
        values: impl Iterator<Item = &'a HeaderValue>,
        mut each: impl FnMut(&Tag),
    ) -> Result<Option<&'a [u8]>, Rejection> {
        let mut slot = Tag::EMPTY;
        self.walk(values, |text| {
            if encoding.decode_into(text, &mut slot).is_ok() {
                each(&slot);
                true
            } else {
                false
            }
        })
    }

    /// Parses every value of the signature header into decoded signatures of any length
    /// (asymmetric signatures: DER ECDSA, RSA), with the timestamp parameter if any.
    /// The work is bounded as for [`parse`](Self::parse): at most [`MAX_SIGNATURES`]
    /// entries of at most [`MAX_SIGNATURE_HEADER_LEN`] bytes.
    #[cfg_attr(not(any(feature = "ed25519", feature = "ecdsa")), allow(dead_code))]
    pub(crate) fn parse_bytes<'a>(
        self,
        encoding: Encoding,
        values: impl Iterator<Item = &'a HeaderValue>,
    ) -> Result<Decoded<'a>, Rejection> {
        let mut out = Vec::new();
        let timestamp = self.walk(values, |text| match encoding.decode_vec(text) {
            Some(bytes) if !bytes.is_empty() => {
                out.push(bytes);
                true
            }
            _ => false,
        })?;
        Ok((out, timestamp))
    }

    /// Walks the signature entries of every header value, handing each signature's text
    /// to `decode` (which answers whether it decoded), and returns the timestamp
    /// parameter. Fails when no entry decoded, or on too many entries or too long a
    /// value.
    fn walk<'a>(
        self,
        values: impl Iterator<Item = &'a HeaderValue>,
        mut decode: impl FnMut(&[u8]) -> bool,
    ) -> Result<Option<&'a [u8]>, Rejection> {
        let mut timestamp = None;
        let mut entries = Entries { seen: 0, decoded: 0, malformed: 0 };
        let mut any_value = false;
        for value in values {
            let bytes = value.as_bytes();
            if bytes.len() > MAX_SIGNATURE_HEADER_LEN {
                return Err(Rejection::with_detail(
                    Reason::HeaderTooLarge,
                    Detail::Limit { max: MAX_SIGNATURE_HEADER_LEN },
                ));
            }
            let bytes = bytes.trim_ascii();
            if bytes.is_empty() {
                continue;
            }
            any_value = true;
            match self {
                Self::Plain { prefix } => match bytes.strip_prefix(prefix.as_bytes()) {
                    Some(sig) => entries.push(sig.trim_ascii(), &mut decode)?,
                    None => entries.malformed += 1,
                },
                Self::Pairs { separator, signature_key, timestamp_key } => {
                    for item in bytes.split(|b| *b == separator) {
                        let Some((key, val)) = split_once(item.trim_ascii(), b'=') else {
                            continue;
                        };
                        let (key, val) = (key.trim_ascii(), val.trim_ascii());
                        if key == signature_key.as_bytes() {
                            entries.push(val, &mut decode)?;
                        } else if timestamp_key.is_some_and(|k| k.as_bytes() == key) && timestamp.is_none() {
                            timestamp = Some(val);
                        }
                    }
                }
                Self::Versioned { version } => {
                    let entry = |entry: &'a [u8]| {
                        entry.strip_prefix(version.as_bytes()).and_then(|e| e.strip_prefix(b","))
                    };
                    // Most values hold one entry. No signature has a space or tab in it
                    // (hex and base64 have none), so a value that decodes whole as one
                    // signature is that one entry: no scan for separators.
                    if let Some(sig) = entry(bytes)
                        && entries.push_if_decodes(sig, &mut decode)
                    {
                        continue;
                    }
                    // A header value's only whitespace is space and tab (`HeaderValue`
                    // refuses the other ASCII whitespace), so entries end at either.
                    let mut rest = bytes;
                    loop {
                        let (this, next) = match memchr::memchr2(b' ', b'\t', rest) {
                            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                            None => (rest, None),
                        };
                        if let Some(sig) = entry(this) {
                            entries.push(sig, &mut decode)?;
                        }
                        match next {
                            Some(next) => rest = next,
                            None => break,
                        }
                    }
                }
            }
        }
        if entries.decoded > 0 {
            Ok(timestamp)
        } else if !any_value {
            Err(Rejection::new(Reason::MissingSignature))
        } else if entries.malformed > 0 {
            Err(Rejection::new(Reason::MalformedSignature))
        } else {
            Err(Rejection::with_detail(
                Reason::MissingSignature,
                Detail::Text("no signature of the expected version"),
            ))
        }
    }

    /// Writes a header value for `signature` (and the timestamp, for pairs with one).
    pub(crate) fn render(self, encoding: Encoding, signature: &[u8], timestamp: Option<&str>) -> String {
        let sig = encoding.encode(signature);
        match self {
            Self::Plain { prefix } => format!("{prefix}{sig}"),
            Self::Pairs { separator, signature_key, timestamp_key } => match (timestamp_key, timestamp) {
                (Some(tk), Some(ts)) => format!("{tk}={ts}{}{signature_key}={sig}", char::from(separator)),
                _ => format!("{signature_key}={sig}"),
            },
            Self::Versioned { version } => format!("{version},{sig}"),
        }
    }
}

/// The signature entries a header walk has met, decoded or not.
struct Entries {
    seen: usize,
    decoded: usize,
    malformed: usize,
}

impl Entries {
    /// Decodes one more entry; bounded work: refuses the one after [`MAX_SIGNATURES`].
    fn push(&mut self, text: &[u8], decode: &mut impl FnMut(&[u8]) -> bool) -> Result<(), Rejection> {
        self.seen += 1;
        if self.seen > MAX_SIGNATURES {
            return Err(Rejection::with_detail(
                Reason::TooManySignatures,
                Detail::Limit { max: MAX_SIGNATURES },
            ));
        }
        if decode(text) {
            self.decoded += 1;
        } else {
            self.malformed += 1;
        }
        Ok(())
    }

    /// Counts `text` as an entry only if it is within the limit and decodes; otherwise
    /// nothing is counted (the caller then walks it entry by entry).
    fn push_if_decodes(&mut self, text: &[u8], decode: &mut impl FnMut(&[u8]) -> bool) -> bool {
        if self.seen < MAX_SIGNATURES && decode(text) {
            self.seen += 1;
            self.decoded += 1;
            true
        } else {
            false
        }
    }
}

fn split_once(bytes: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|b| *b == at)?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;

    fn parse(
        format: SignatureFormat,
        enc: Encoding,
        values: &[&str],
    ) -> Result<(usize, Option<String>), Reason> {
        let values: Vec<HeaderValue> = values.iter().map(|v| HeaderValue::from_str(v).unwrap()).collect();
        let mut out = Candidates::new();
        format
            .parse(enc, values.iter(), &mut out)
            .map(|ts| (out.as_slice().len(), ts.map(|t| String::from_utf8_lossy(t).into_owned())))
            .map_err(|r| r.reason())
    }

    const STRIPE: SignatureFormat =
        SignatureFormat::Pairs { separator: b',', signature_key: "v1", timestamp_key: Some("t") };
    const STD: SignatureFormat = SignatureFormat::Versioned { version: "v1" };
    const GH: SignatureFormat = SignatureFormat::Plain { prefix: "sha256=" };

    #[test]
    #[allow(clippy::type_complexity)] // one tuple per table row
    fn table() {
        let many = vec!["v1,AAAA"; 17].join(" ");
        type Case<'a> =
            (&'a str, SignatureFormat, Encoding, Vec<&'a str>, Result<(usize, Option<String>), Reason>);
        let cases: Vec<Case<'_>> = vec![
            (
                "stripe two v1 and v0",
                STRIPE,
                Encoding::Hex,
                vec!["t=12,v1=ab,v1=cd,v0=ef"],
                Ok((2, Some("12".into()))),
            ),
            ("stripe spaces", STRIPE, Encoding::Hex, vec![" t = 12 , v1 = ab "], Ok((1, Some("12".into())))),
            ("stripe only v0", STRIPE, Encoding::Hex, vec!["t=12,v0=ef"], Err(Reason::MissingSignature)),
            ("stripe bad hex", STRIPE, Encoding::Hex, vec!["t=12,v1=zz"], Err(Reason::MalformedSignature)),
            (
                "std two entries and v1a",
                STD,
                Encoding::Base64,
                vec!["v1,AAAA v1a,BBBB v1,CCCC"],
                Ok((2, None)),
            ),
            ("std too many", STD, Encoding::Base64, vec![&many], Err(Reason::TooManySignatures)),
            ("std tab and runs of spaces", STD, Encoding::Base64, vec!["v1,AAAA\t  v1,CCCC"], Ok((2, None))),
            (
                "std version prefix only",
                STD,
                Encoding::Base64,
                vec!["v1AAAA v1 v1,"],
                Err(Reason::MalformedSignature),
            ),
            (
                "std other version only",
                STD,
                Encoding::Base64,
                vec!["v1a,BBBB v2,CCCC"],
                Err(Reason::MissingSignature),
            ),
            ("github", GH, Encoding::Hex, vec!["sha256=abcd"], Ok((1, None))),
            ("github missing prefix", GH, Encoding::Hex, vec!["abcd"], Err(Reason::MalformedSignature)),
            (
                "github duplicated header",
                GH,
                Encoding::Hex,
                vec!["sha256=abcd", "sha256=ef01"],
                Ok((2, None)),
            ),
            ("empty", GH, Encoding::Hex, vec![""], Err(Reason::MissingSignature)),
            ("absent", GH, Encoding::Hex, vec![], Err(Reason::MissingSignature)),
        ];
        for (name, format, enc, values, want) in cases {
            assert_eq!(parse(format, enc, &values), want, "case {name}");
        }
    }

    #[test]
    fn huge_header_is_refused() {
        let big = "a".repeat(MAX_SIGNATURE_HEADER_LEN + 1);
        assert_eq!(parse(GH, Encoding::Hex, &[&big]), Err(Reason::HeaderTooLarge));
    }

    #[test]
    fn render_round_trips() {
        let v = STRIPE.render(Encoding::Hex, &[0xab], Some("12"));
        assert_eq!(v, "t=12,v1=ab");
        assert_eq!(parse(STRIPE, Encoding::Hex, &[&v]), Ok((1, Some("12".into()))));
        assert_eq!(STD.render(Encoding::Base64, &[0xff], None), "v1,/w==");
    }
}
