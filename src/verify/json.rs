//! Finding one member of a JSON body, for schemes that take a timestamp, a signature, a
//! delivery id or an event type from the payload.
//!
//! The lookup is a hand-written scanner, not a parse of the document: it walks the object
//! at each level of the path, skips the values it does not need and stops as soon as the
//! member is found, so its cost is the offset of the member in the body, not the body's
//! size. It does not allocate (unless a string it returns, or a key it compares, has
//! escapes in it and is returned unescaped), does not recurse (nesting is tracked in a
//! bit stack, at most [`MAX_DEPTH`] levels per skipped value) and does a bounded amount
//! of work per input byte.
//!
//! What it checks: everything it reads up to and including the member follows the JSON
//! grammar (structure, literals, numbers, the character after each `\`, no control
//! characters in strings), and the returned text is UTF-8. What it does not: the text
//! after the member (early stop), the UTF-8 of strings it skips, and surrogate pairing
//! in `\u` escapes of strings it skips. So a well-formed document without duplicated keys
//! always gives the value serde_json would, and a malformed one gives an error or `None`
//! unless the damage lies after the member. When the member is absent, the whole document
//! has been read and is checked to its end.
//!
//! A duplicated key gives its *first* value (early stop: the rest is not read). Readers
//! differ there: serde_json's `Value` (and JavaScript, Python, Go) keep the last one, and
//! a `#[derive(Deserialize)]` struct refuses the body. Only the sender can sign a body,
//! and no provider sends duplicated keys; a handler that must agree with the replay key
//! and event read here should refuse bodies with duplicated keys.

use std::borrow::Cow;

/// Deepest nesting of one skipped value; serde_json refuses documents nested deeper
/// than 127 levels, so every document serde_json accepts stays within it.
const MAX_DEPTH: u32 = 128;

/// Finds the value at `path` (object keys from the root) and returns its JSON text (a
/// string with its quotes and escapes, a number as written, a literal, an object or an
/// array). `Ok(None)` when a key is absent or an intermediate value is not an object;
/// `Err(())` when the body is not JSON (see the module documentation for what is read).
/// A duplicated key resolves to its first occurrence.
pub(crate) fn lookup<'a>(body: &'a [u8], path: &[&str]) -> Result<Option<&'a str>, ()> {
    let mut s = Scanner { bytes: body, pos: 0 };
    s.skip_ws();
    for (open, key) in path.iter().enumerate() {
        if s.peek() != Some(b'{') {
            // Not an object: the member cannot be in it.
            s.skip_value()?;
            s.finish(open)?;
            return Ok(None);
        }
        s.pos += 1;
        if !s.find_member(key)? {
            s.finish(open)?;
            return Ok(None);
        }
    }
    let start = s.pos;
    if s.peek() == Some(b'"') {
        s.string()?;
    } else {
        s.skip_value()?;
    }
    let raw = body.get(start..s.pos).ok_or(())?;
    if path.is_empty() {
        s.finish(0)?;
    } else {
        // The value must end where the grammar lets it (`{"n":12x}` is not 12).
        s.skip_ws();
        if !matches!(s.peek(), Some(b',' | b'}')) {
            return Err(());
        }
    }
    std::str::from_utf8(raw).map(Some).map_err(|_| ())
}

/// The text of a scalar: a string's contents (unescaped) or a number as written; `None`
/// for other values and for a string whose escapes do not decode.
pub(crate) fn scalar_text(raw: &str) -> Option<Cow<'_, str>> {
    decode_scalar(raw).ok().flatten()
}

/// Convenience: the scalar text at `path`. A string member whose escapes do not decode
/// is an error (the body is not JSON).
pub(crate) fn text_at<'a>(body: &'a [u8], path: &[&str]) -> Result<Option<Cow<'a, str>>, ()> {
    match lookup(body, path)? {
        Some(raw) => decode_scalar(raw),
        None => Ok(None),
    }
}

/// A string's contents or a number's text, `Ok(None)` for other values, `Err` for a
/// string that does not decode. `raw` comes from [`lookup`], so a string in it is
/// delimited and free of control characters.
fn decode_scalar(raw: &str) -> Result<Option<Cow<'_, str>>, ()> {
    match raw.as_bytes().first() {
        Some(b'"') => {
            let inner = raw.get(1..raw.len().saturating_sub(1)).ok_or(())?;
            if inner.contains('\\') {
                serde_json::from_str::<String>(raw).map(|s| Some(Cow::Owned(s))).map_err(|_| ())
            } else {
                Ok(Some(Cow::Borrowed(inner)))
            }
        }
        Some(b'-' | b'0'..=b'9') => Ok(Some(Cow::Borrowed(raw))),
        _ => Ok(None),
    }
}

/// A cursor over the body. Every method either advances `pos` or fails, and never
/// looks back, so a lookup is linear in the body's length.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Result<u8, ()> {
        let b = self.peek().ok_or(())?;
        self.pos += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Result<(), ()> {
        if self.bump()? == want { Ok(()) } else { Err(()) }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Just after an object's `{`: reads members until the one named `key` (then the
    /// cursor is at its value and the answer is `true`) or the closing `}` (consumed;
    /// `false`).
    fn find_member(&mut self, key: &str) -> Result<bool, ()> {
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(false);
        }
        loop {
            let matched = self.key_is(key)?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            if matched {
                return Ok(true);
            }
            self.skip_value()?;
            self.skip_ws();
            match self.bump()? {
                b',' => self.skip_ws(),
                b'}' => return Ok(false),
                _ => return Err(()),
            }
        }
    }

    /// Reads an object key and says whether it equals `key` (escapes decoded, without
    /// allocating).
    fn key_is(&mut self, key: &str) -> Result<bool, ()> {
        let start = self.pos;
        let escaped = self.string()?;
        // `string` consumed both quotes.
        let inner = self.bytes.get(start + 1..self.pos.saturating_sub(1)).ok_or(())?;
        if escaped { unescaped_eq(inner, key.as_bytes()) } else { Ok(inner == key.as_bytes()) }
    }

    /// Skips one value (and nothing after it), checking its grammar.
    fn skip_value(&mut self) -> Result<(), ()> {
        self.run(0, 0, false)
    }

    /// After a value nested in `open` objects (a member's value, or an object whose
    /// member was not found): reads to the end of the document, which must be JSON.
    fn finish(&mut self, open: usize) -> Result<(), ()> {
        let open = u32::try_from(open).map_err(|_| ())?;
        if open >= MAX_DEPTH {
            return Err(());
        }
        let objects = (1_u128 << open) - 1;
        self.run(objects, open, true)?;
        self.skip_ws();
        if self.pos == self.bytes.len() { Ok(()) } else { Err(()) }
    }

    /// The grammar of JSON values, iteratively. `depth` containers are open; bit `i` of
    /// `objects` says whether the `i`-th is an object. `after_value`: a value has just
    /// ended (else one is expected). Returns once every open container is closed and a
    /// value has ended.
    fn run(&mut self, mut objects: u128, mut depth: u32, mut after_value: bool) -> Result<(), ()> {
        loop {
            if after_value {
                if depth == 0 {
                    return Ok(());
                }
                let in_object = (objects >> (depth - 1)) & 1 == 1;
                self.skip_ws();
                match (self.bump()?, in_object) {
                    (b',', true) => {
                        self.skip_ws();
                        self.member_key()?;
                        after_value = false;
                    }
                    (b',', false) => after_value = false,
                    (b'}', true) | (b']', false) => depth -= 1,
                    _ => return Err(()),
                }
                continue;
            }
            self.skip_ws();
            match self.peek().ok_or(())? {
                open @ (b'{' | b'[') => {
                    if depth >= MAX_DEPTH {
                        return Err(());
                    }
                    self.pos += 1;
                    let is_object = open == b'{';
                    objects = (objects & !(1 << depth)) | (u128::from(is_object) << depth);
                    depth += 1;
                    self.skip_ws();
                    if self.peek() == Some(if is_object { b'}' } else { b']' }) {
                        self.pos += 1;
                        depth -= 1;
                        after_value = true;
                    } else if is_object {
                        self.member_key()?;
                    }
                }
                b'"' => {
                    self.string()?;
                    after_value = true;
                }
                b't' => self.literal(b"true", &mut after_value)?,
                b'f' => self.literal(b"false", &mut after_value)?,
                b'n' => self.literal(b"null", &mut after_value)?,
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                    after_value = true;
                }
                _ => return Err(()),
            }
        }
    }

    /// A key and its `:`, inside a skipped object.
    fn member_key(&mut self) -> Result<(), ()> {
        if self.peek() != Some(b'"') {
            return Err(());
        }
        self.string()?;
        self.skip_ws();
        self.expect(b':')
    }

    fn literal(&mut self, word: &[u8], after_value: &mut bool) -> Result<(), ()> {
        if self.bytes.get(self.pos..self.pos + word.len()) != Some(word) {
            return Err(());
        }
        self.pos += word.len();
        *after_value = true;
        Ok(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), ()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.bump()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return Err(()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits1()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits1()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn digits1(&mut self) -> Result<(), ()> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(());
        }
        self.digits();
        Ok(())
    }

    /// At a `"`: skips the string, both quotes included, and says whether it has escapes.
    /// Checks that there are no control characters and that each `\` starts a valid
    /// escape.
    fn string(&mut self) -> Result<bool, ()> {
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            let rest = self.bytes.get(self.pos..).ok_or(())?;
            let at = memchr::memchr2(b'"', b'\\', rest).ok_or(())?;
            if rest.get(..at).ok_or(())?.iter().any(|b| *b < 0x20) {
                return Err(());
            }
            self.pos += at;
            if self.bump()? == b'"' {
                return Ok(escaped);
            }
            escaped = true;
            match self.bump()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                b'u' => {
                    let hex = self.bytes.get(self.pos..self.pos + 4).ok_or(())?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(());
                    }
                    self.pos += 4;
                }
                _ => return Err(()),
            }
        }
    }
}

/// Whether the contents of a JSON string with escapes (between its quotes, already
/// checked by [`Scanner::string`]) decode to `want`, without allocating. An escape that
/// does not decode (a lone surrogate) is an error, as serde_json has it.
fn unescaped_eq(mut raw: &[u8], mut want: &[u8]) -> Result<bool, ()> {
    let mut equal = true;
    while let Some((&b, rest)) = raw.split_first() {
        raw = rest;
        let mut buf = [0_u8; 4];
        let piece: &[u8] = if b == b'\\' {
            let (&e, rest) = raw.split_first().ok_or(())?;
            raw = rest;
            match e {
                b'u' => unicode_escape(&mut raw)?.encode_utf8(&mut buf).as_bytes(),
                b'b' => &[0x08],
                b'f' => &[0x0c],
                b'n' => b"\n",
                b'r' => b"\r",
                b't' => b"\t",
                other => {
                    buf[0] = other;
                    &buf[..1]
                }
            }
        } else {
            buf[0] = b;
            &buf[..1]
        };
        // Decoding goes on after a difference, so that a bad escape is an error whatever
        // the wanted key.
        match want.strip_prefix(piece) {
            Some(rest) if equal => want = rest,
            _ => equal = false,
        }
    }
    Ok(equal && want.is_empty())
}

/// Reads the 4 hex digits after `\u` (and a following `\uDC00`-`\uDFFF` for a high
/// surrogate) into a character.
fn unicode_escape(raw: &mut &[u8]) -> Result<char, ()> {
    let first = hex4(raw)?;
    let code = match first {
        0xd800..=0xdbff => {
            let rest = raw.strip_prefix(b"\\u").ok_or(())?;
            *raw = rest;
            let low = hex4(raw)?;
            if !(0xdc00..=0xdfff).contains(&low) {
                return Err(());
            }
            0x10000 + ((first - 0xd800) << 10) + (low - 0xdc00)
        }
        0xdc00..=0xdfff => return Err(()),
        c => c,
    };
    char::from_u32(code).ok_or(())
}

fn hex4(raw: &mut &[u8]) -> Result<u32, ()> {
    let (hex, rest) = raw.split_at_checked(4).ok_or(())?;
    let text = std::str::from_utf8(hex).map_err(|_| ())?;
    let value = u32::from_str_radix(text, 16).map_err(|_| ())?;
    *raw = rest;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    #[test]
    fn finds_nested_members() {
        let body = br#"{"a":1,"event":{"id":"evt_1","n":[1,{"id":2}]},"id":"top"}"#;
        assert_eq!(text_at(body, &["id"]).unwrap().as_deref(), Some("top"));
        assert_eq!(text_at(body, &["event", "id"]).unwrap().as_deref(), Some("evt_1"));
        assert_eq!(text_at(body, &["a"]).unwrap().as_deref(), Some("1"));
        assert_eq!(text_at(body, &["missing"]).unwrap(), None);
        assert_eq!(text_at(body, &["a", "b"]).unwrap(), None);
        assert_eq!(text_at(body, &["event"]).unwrap(), None, "objects are not scalars");
    }

    #[test]
    fn escapes_are_decoded() {
        let body = br#"{"id":"a\"b\u0041"}"#;
        assert_eq!(text_at(body, &["id"]).unwrap().as_deref(), Some("a\"bA"));
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        for body in [&b""[..], b"{", b"{\"id\":", b"\xff\xfe", b"{} trailing", b"[1,2"] {
            assert!(lookup(body, &["id"]).is_err(), "{body:?}");
        }
        assert_eq!(text_at(b"[1,2]", &["id"]).unwrap(), None);
        assert_eq!(text_at(b"\"str\"", &["id"]).unwrap(), None);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000);
        assert!(lookup(deep.as_bytes(), &["id"]).is_err());
        let deep = format!(r#"{{"a":{}"#, "[".repeat(100_000));
        assert!(lookup(deep.as_bytes(), &["id"]).is_err());
        assert!(lookup(deep.as_bytes(), &["a", "b"]).is_err());
        // serde_json's own limit (127 levels) is within the scanner's.
        let ok = format!(r#"{{"a":{}{},"id":"x"}}"#, "[".repeat(126), "]".repeat(126));
        assert!(serde_json::from_str::<Value>(&ok).is_ok());
        assert_eq!(text_at(ok.as_bytes(), &["id"]).unwrap().as_deref(), Some("x"));
    }

    type Row = (&'static str, &'static str, &'static [&'static str], Result<Option<&'static str>, ()>);

    #[test]
    fn table() {
        let rows: &[Row] = &[
            ("first key", r#"{"type":"a","x":1,"y":2}"#, &["type"], Ok(Some("a"))),
            ("middle key", r#"{"x":1,"type":"a","y":2}"#, &["type"], Ok(Some("a"))),
            ("last key", r#"{"x":1,"y":[2,3],"type":"a"}"#, &["type"], Ok(Some("a"))),
            ("only key", r#"{"type":"a"}"#, &["type"], Ok(Some("a"))),
            ("absent", r#"{"x":1}"#, &["type"], Ok(None)),
            ("empty object", r#"{}"#, &["type"], Ok(None)),
            ("empty object, spaced", " { \n } ", &["type"], Ok(None)),
            (
                "nested path",
                r#"{"data":{"object":{"id":"ch_1"}}}"#,
                &["data", "object", "id"],
                Ok(Some("ch_1")),
            ),
            ("nested path, absent inner", r#"{"data":{"object":{}}}"#, &["data", "object", "id"], Ok(None)),
            ("nested path through array", r#"{"data":[{"id":"x"}]}"#, &["data", "id"], Ok(None)),
            ("nested path through string", r#"{"data":"id"}"#, &["data", "id"], Ok(None)),
            (
                "nested key is not top level",
                r#"{"data":{"type":"inner"},"type":"outer"}"#,
                &["type"],
                Ok(Some("outer")),
            ),
            ("nested key only", r#"{"data":{"type":"inner"}}"#, &["type"], Ok(None)),
            ("key in array of objects", r#"{"a":[{"type":"inner"}],"b":1}"#, &["type"], Ok(None)),
            (
                "duplicate key: first wins",
                r#"{"type":"first","type":"second"}"#,
                &["type"],
                Ok(Some("first")),
            ),
            ("duplicate parent: first wins", r#"{"d":{"id":1},"d":{"id":2}}"#, &["d", "id"], Ok(Some("1"))),
            ("duplicate parent, first lacks", r#"{"d":{},"d":{"id":2}}"#, &["d", "id"], Ok(None)),
            ("escaped key", r#"{"\u0074ype":"a"}"#, &["type"], Ok(Some("a"))),
            ("escaped key, slash", r#"{"a\/b":"v"}"#, &["a/b"], Ok(Some("v"))),
            ("escaped key differs", r#"{"typ\u0065s":"a","type":"b"}"#, &["type"], Ok(Some("b"))),
            ("escaped quote in key", r#"{"a\"b":"v"}"#, &["a\"b"], Ok(Some("v"))),
            ("surrogate pair key", r#"{"\ud83d\ude00":"smile"}"#, &["😀"], Ok(Some("smile"))),
            ("raw utf-8 key", r#"{"é":"v"}"#, &["é"], Ok(Some("v"))),
            ("lone surrogate key", r#"{"\ud83d":"v"}"#, &["x"], Err(())),
            ("escaped value", r#"{"id":"a\nb\t\\c\u00e9"}"#, &["id"], Ok(Some("a\nb\t\\cé"))),
            ("braces in strings", r#"{"a":"}{][","b":{"c":"{"},"id":"x"}"#, &["id"], Ok(Some("x"))),
            ("quotes in strings", r#"{"a":"\"id\":\"no\"","id":"yes"}"#, &["id"], Ok(Some("yes"))),
            ("key-like value", r#"{"a":"type","type":"t"}"#, &["type"], Ok(Some("t"))),
            ("backslash at end", r#"{"a":"x\\","id":"y"}"#, &["id"], Ok(Some("y"))),
            (
                "whitespace everywhere",
                " {\n\t\"x\" : [ 1 , { } ] ,\r\n \"id\"\t:\n\"v\" \n} ",
                &["id"],
                Ok(Some("v")),
            ),
            ("number", r#"{"n":-12.5e+3}"#, &["n"], Ok(Some("-12.5e+3"))),
            ("zero", r#"{"n":0}"#, &["n"], Ok(Some("0"))),
            ("literal", r#"{"n":true}"#, &["n"], Ok(None)),
            ("null", r#"{"n":null}"#, &["n"], Ok(None)),
            ("array", r#"{"n":[1]}"#, &["n"], Ok(None)),
            (
                "skips literals and numbers",
                r#"{"a":true,"b":false,"c":null,"d":-0.0E-0,"id":"v"}"#,
                &["id"],
                Ok(Some("v")),
            ),
            ("root array", r#"[{"id":"x"}]"#, &["id"], Ok(None)),
            ("root number", "12", &["id"], Ok(None)),
            // Malformed before or at the member: an error.
            ("leading zero", r#"{"n":012}"#, &["n"], Err(())),
            ("number then junk", r#"{"n":12x}"#, &["n"], Err(())),
            ("bad fraction", r#"{"a":1.,"id":"v"}"#, &["id"], Err(())),
            ("bad literal", r#"{"a":tru,"id":"v"}"#, &["id"], Err(())),
            ("missing colon", r#"{"a" 1,"id":"v"}"#, &["id"], Err(())),
            ("missing comma", r#"{"a":1 "id":"v"}"#, &["id"], Err(())),
            ("trailing comma", r#"{"a":1,}"#, &["id"], Err(())),
            ("mismatched brackets", r#"{"a":[1},"id":"v"}"#, &["id"], Err(())),
            ("bare key", r#"{a:1}"#, &["id"], Err(())),
            ("unterminated string", r#"{"id":"abc"#, &["id"], Err(())),
            ("unterminated key", r#"{"id"#, &["id"], Err(())),
            ("bad escape", r#"{"a":"\x","id":"v"}"#, &["id"], Err(())),
            ("short unicode escape", r#"{"a":"\u12","id":"v"}"#, &["id"], Err(())),
            ("control character", "{\"a\":\"\u{1}\",\"id\":\"v\"}", &["id"], Err(())),
            ("control character in value", "{\"id\":\"a\nb\"}", &["id"], Err(())),
            ("value then junk", r#"{"id":"v" x}"#, &["id"], Err(())),
            ("absent, junk after", r#"{"a":1} x"#, &["id"], Err(())),
            ("absent, nested, unterminated", r#"{"d":{"a":1}"#, &["d", "id"], Err(())),
            // Malformed after the member: not read.
            ("junk after the member", r#"{"id":"v", garbage"#, &["id"], Ok(Some("v"))),
        ];
        for (name, body, path, want) in rows {
            let got = text_at(body.as_bytes(), path);
            assert_eq!(got.as_ref().map(|v| v.as_deref()), want.as_ref().copied(), "row {name}");
        }
    }

    #[test]
    fn borrowed_unless_escaped() {
        assert!(matches!(text_at(br#"{"id":"plain"}"#, &["id"]), Ok(Some(Cow::Borrowed("plain")))));
        assert!(matches!(text_at(br#"{"id":"a\nb"}"#, &["id"]), Ok(Some(Cow::Owned(_)))));
    }

    #[test]
    fn raw_text_of_containers() {
        let body = br#"{"a": {"b": [1, "}"]} , "c":2}"#;
        assert_eq!(lookup(body, &["a"]), Ok(Some(r#"{"b": [1, "}"]}"#)));
        assert_eq!(lookup(body, &["a", "b"]), Ok(Some(r#"[1, "}"]"#)));
    }

    #[test]
    fn huge_inputs_are_linear() {
        // Each would take minutes if any step were quadratic.
        let n = 2_000_000;
        let strings = format!(r#"{{"a":"{}"#, "\\\"".repeat(n));
        assert!(lookup(strings.as_bytes(), &["id"]).is_err());
        let arrays = format!(r#"{{"a":{}"#, "[],".repeat(n));
        assert!(lookup(arrays.as_bytes(), &["id"]).is_err());
        let keys = format!("{{{}\"id\":1}}", "\"k\":0,".repeat(n));
        assert_eq!(text_at(keys.as_bytes(), &["id"]).unwrap().as_deref(), Some("1"));
        let escaped_keys = format!("{{{}\"id\":1}}", "\"\\u0069\\u0064x\":0,".repeat(n));
        assert_eq!(text_at(escaped_keys.as_bytes(), &["id"]).unwrap().as_deref(), Some("1"));
        let unterminated = format!("{{\"a\":\"{}", "x".repeat(10 * n));
        assert!(lookup(unterminated.as_bytes(), &["id"]).is_err());
    }

    /// The answer serde_json gives: the member's value, as text for strings and numbers.
    fn reference(value: &Value, path: &[String]) -> Option<String> {
        let mut at = value;
        for key in path {
            at = at.as_object()?.get(key)?;
        }
        match at {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("id".to_owned()),
            Just("type".to_owned()),
            "[a-z]{0,3}",
            any::<String>(),
            Just("\"{}[]\\:,".to_owned()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            Just(Value::String("}\"{[\\".to_owned())),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    /// Paths to every member of every object reachable through objects, plus absent ones.
    fn paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Value::Object(map) = value {
            for (key, member) in map {
                prefix.push(key.clone());
                out.push(prefix.clone());
                paths(member, prefix, out);
                prefix.push("absent\u{0}".to_owned());
                out.push(prefix.clone());
                prefix.pop();
                prefix.pop();
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json(members in prop::collection::vec((".{0,4}", json_value()), 0..8), pretty: bool) {
            let doc = Value::Object(members.into_iter().collect());
            let text = if pretty { serde_json::to_string_pretty(&doc) } else { serde_json::to_string(&doc) }.unwrap();
            let mut all = vec![vec!["absent".to_owned()], vec!["id".to_owned()], vec!["type".to_owned()]];
            paths(&doc, &mut Vec::new(), &mut all);
            for path in all {
                let path_refs: Vec<&str> = path.iter().map(String::as_str).collect();
                let got = text_at(text.as_bytes(), &path_refs);
                prop_assert_eq!(got.map(|v| v.map(Cow::into_owned)), Ok(reference(&doc, &path)), "{} at {:?}", text, path);
            }
        }

        #[test]
        fn never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = text_at(&body, &["id"]);
            let _ = text_at(&body, &["a", "b"]);
        }

        #[test]
        fn never_panics_on_json_like_text(body in r#"[{}\[\]":,\\ a-z0-9.eE+\-u]{0,40}"#) {
            let got = text_at(body.as_bytes(), &["a"]);
            // Whatever serde_json accepts, the scanner does not refuse.
            if serde_json::from_str::<Value>(&body).is_ok() {
                prop_assert!(got.is_ok(), "{}", body);
            }
        }
    }
}
