//! `application/x-www-form-urlencoded` parsing: the `(name, value)` pairs of a form body
//! or a query string, percent-decoded, for schemes that sign form parameters (Twilio).

use std::borrow::Cow;

/// The `(name, value)` pairs of `application/x-www-form-urlencoded` text (a form body or
/// a URL query), in order, percent-decoded.
///
/// Pairs are split on `&`, names from values on the first `=` (a pair without `=` has an
/// empty value), empty pairs are skipped; `+` decodes to a space and `%XX` to its byte,
/// while a `%` not followed by two hex digits is kept as it is (as the WHATWG URL
/// standard says). Names and values are bytes: the decoded text need not be UTF-8.
///
/// Bounded and total: each step costs at most the length of its pair, a value borrows
/// from the input unless it has something to decode, and nothing panics on any input.
/// Callers that collect pairs should cap how many they keep (see
/// [`twilio`](crate::providers::twilio)).
///
/// ```
/// use hookguard::verify::FormPairs;
///
/// let pairs: Vec<_> = FormPairs::new(b"From=%2B14158675309&Body=hi+there&flag&&x=%zz")
///     .map(|(n, v)| (String::from_utf8_lossy(&n).into_owned(), String::from_utf8_lossy(&v).into_owned()))
///     .collect();
/// assert_eq!(pairs, [
///     ("From".to_owned(), "+14158675309".to_owned()),
///     ("Body".to_owned(), "hi there".to_owned()),
///     ("flag".to_owned(), String::new()),
///     ("x".to_owned(), "%zz".to_owned()),
/// ]);
/// ```
#[derive(Debug, Clone)]
pub struct FormPairs<'a> {
    rest: &'a [u8],
}

impl<'a> FormPairs<'a> {
    /// The pairs of `input` (a body, or the part of a URL after `?`).
    ///
    /// ```
    /// use hookguard::verify::FormPairs;
    /// let names: Vec<_> = FormPairs::new(b"b=2&a=1").map(|(name, _)| name.into_owned()).collect();
    /// assert_eq!(names, [b"b".to_vec(), b"a".to_vec()]);
    /// ```
    #[must_use]
    pub const fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }
}

impl<'a> Iterator for FormPairs<'a> {
    type Item = (Cow<'a, [u8]>, Cow<'a, [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (pair, rest) = split_once(self.rest, b'&').unwrap_or((self.rest, &[]));
            self.rest = rest;
            if pair.is_empty() {
                continue;
            }
            let (name, value) = split_once(pair, b'=').unwrap_or((pair, &[]));
            return Some((decode(name), decode(value)));
        }
        None
    }
}

fn split_once(bytes: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|b| *b == at)?;
    Some((bytes.get(..i)?, bytes.get(i + 1..)?))
}

/// Percent-decodes one name or value (`+` is a space); borrows when nothing changes.
fn decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.iter().any(|b| matches!(b, b'+' | b'%')) {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (input.get(i + 1).and_then(hex), input.get(i + 2).and_then(hex)) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn hex(digit: &u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(input: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        FormPairs::new(input).map(|(n, v)| (n.into_owned(), v.into_owned())).collect()
    }

    #[test]
    fn table() {
        type Row = (&'static str, &'static [u8], Vec<(&'static [u8], &'static [u8])>);
        let rows: Vec<Row> = vec![
            ("empty", b"", vec![]),
            ("only separators", b"&&&", vec![]),
            ("one pair", b"a=1", vec![(b"a", b"1")]),
            ("no value", b"a", vec![(b"a", b"")]),
            ("empty value", b"a=", vec![(b"a", b"")]),
            ("empty name", b"=1", vec![(b"", b"1")]),
            ("second equals stays in value", b"a=1=2", vec![(b"a", b"1=2")]),
            ("plus is space", b"t=a+b", vec![(b"t", b"a b")]),
            ("encoded plus", b"t=%2B1", vec![(b"t", b"+1")]),
            ("lower and upper hex", b"u=%2f%2F", vec![(b"u", b"//")]),
            ("encoded name", b"a%5Bb%5D=1", vec![(b"a[b]", b"1")]),
            ("bad escape kept", b"x=%zz%4", vec![(b"x", b"%zz%4")]),
            ("trailing percent", b"x=%", vec![(b"x", b"%")]),
            ("non-utf8 bytes", b"x=%FF%FE", vec![(b"x", b"\xff\xfe")]),
            ("utf8", "n=%C3%A9".as_bytes(), vec![(b"n", "é".as_bytes())]),
            ("repeated", b"d=1&d=2", vec![(b"d", b"1"), (b"d", b"2")]),
            ("semicolon is not a separator", b"a=1;b=2", vec![(b"a", b"1;b=2")]),
        ];
        for (name, input, want) in rows {
            let want: Vec<(Vec<u8>, Vec<u8>)> =
                want.into_iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
            assert_eq!(pairs(input), want, "case {name}");
        }
    }

    #[test]
    fn borrows_when_nothing_to_decode() {
        let (n, v) = FormPairs::new(b"plain=value").next().unwrap();
        assert!(matches!(n, Cow::Borrowed(_)) && matches!(v, Cow::Borrowed(_)));
    }

    #[test]
    fn never_panics_on_any_byte_string() {
        let mut bytes = Vec::new();
        for a in 0..=255_u8 {
            for b in [b'%', b'&', b'=', b'+', b'0', b'f', 0xff] {
                bytes.clear();
                bytes.extend_from_slice(&[b'%', a, b, a, b'%']);
                let _ = pairs(&bytes);
            }
        }
    }
}
