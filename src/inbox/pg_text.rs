//! Text as the PostgreSQL inbox stores it: `text` and `jsonb` refuse NUL, so strings that
//! hold it are escaped by hand ([`stored`], [`stored_record`]) and read back exactly
//! ([`unstored`], [`read_record`]). Pure functions, compiled for fuzzing too (reached
//! through `__fuzz`) without the `postgres` feature's dependencies.

use std::borrow::Cow;

/// What PostgreSQL cannot store in `text` (NUL) is written as this character and `0`, and
/// this character itself doubled, in every stored string that holds either (see
/// [`stored`]). SUB, "substitute": a control character no delivery id normally holds.
pub(crate) const ESC: char = '\u{1a}';
/// The field set in a stored record whose strings were escaped (see [`stored_record`]).
const ESCAPED_FIELD: &str = "nul_escaped";

/// `text` as a `text` column can hold it: unchanged unless it holds NUL (which PostgreSQL
/// refuses) or [`ESC`]; then each NUL is written as `ESC 0` and each `ESC` as `ESC ESC`.
/// Two different texts are never written alike: one left unchanged holds no `ESC`, an
/// escaped one does, and [`unstored`] reads an escaped one back unambiguously.
pub(crate) fn stored(text: &str) -> Cow<'_, str> {
    if !text.contains(['\0', ESC]) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\0' => out.extend([ESC, '0']),
            ESC => out.extend([ESC, ESC]),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// What [`stored`] wrote `text` for; `None` when it cannot have written it (an `ESC`
/// followed by anything but `0` or `ESC`: a key stored before keys were escaped).
pub(crate) fn unstored(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains(ESC) {
        return Some(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != ESC {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some(ESC) => out.push(ESC),
            _ => return None,
        }
    }
    Some(Cow::Owned(out))
}

/// Whether `text` at byte `at` starts with the JSON escape of [`ESC`] (a backslash, `u`
/// and `001a`, the hex digits in either case).
fn esc_escape_at(text: &str, at: usize) -> bool {
    text.get(at..at + 6).is_some_and(|e| e.eq_ignore_ascii_case("\\u001a"))
}

/// Whether JSON `text` holds the escape of [`ESC`].
fn holds_esc_escape(text: &str) -> bool {
    text.contains("\\u001a") || text.contains("\\u001A")
}

/// The webhook's record (JSON from [`Webhook::to_meta_json`](super::Webhook::to_meta_json))
/// as the `jsonb` column can hold it (it refuses `\u0000`): unchanged unless a string in it
/// holds NUL or [`ESC`]; then every string in it is written as [`stored`] writes text (in
/// JSON escapes: a NUL's `\u0000` becomes `\u001a0`, `\u001a` becomes `\u001a\u001a`), and
/// the record is marked with the field [`ESCAPED_FIELD`] so that [`read_record`] undoes
/// exactly that.
pub(crate) fn stored_record(json: String) -> String {
    if !json.contains("\\u0000") && !holds_esc_escape(&json) {
        return json;
    }
    let Some(fields) = json.strip_prefix('{').filter(|f| !f.trim_start().starts_with('}')) else {
        return json;
    };
    let mut out = String::with_capacity(json.len() + 32);
    out.push_str("{\"");
    out.push_str(ESCAPED_FIELD);
    out.push_str("\":true,");
    let bytes = fields.as_bytes();
    let (mut at, mut copied) = (0, 0);
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            at += 1;
            continue;
        }
        // Backslashes are only in strings (JSON has them nowhere else): an escape, either
        // `\uXXXX` or a backslash and one character.
        let instead = if fields.get(at..at + 6) == Some("\\u0000") {
            Some("\\u001a0")
        } else if esc_escape_at(fields, at) {
            Some("\\u001a\\u001a")
        } else {
            None
        };
        let len = if bytes.get(at + 1) == Some(&b'u') { 6 } else { 2 };
        if let Some(instead) = instead {
            out.push_str(&fields[copied..at]);
            out.push_str(instead);
            copied = at + len;
        }
        at += len;
    }
    out.push_str(fields.get(copied..).unwrap_or_default());
    out
}

/// The record as [`Webhook::from_meta_json`](super::Webhook::from_meta_json) reads it: one
/// [`stored_record`] escaped (it holds the mark) unescaped, any other as it is.
pub(crate) fn read_record(json: &str) -> Result<Cow<'_, str>, String> {
    #[derive(serde::Deserialize)]
    struct Mark {
        #[serde(default)]
        nul_escaped: bool,
    }
    if !holds_esc_escape(json) || !serde_json::from_str::<Mark>(json).is_ok_and(|mark| mark.nul_escaped) {
        return Ok(Cow::Borrowed(json));
    }
    let broken = || "stored webhook record is unreadable: a broken NUL escape".to_owned();
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let (mut at, mut copied) = (0, 0);
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            at += 1;
            continue;
        }
        if !esc_escape_at(json, at) {
            at += if bytes.get(at + 1) == Some(&b'u') { 6 } else { 2 };
            continue;
        }
        out.push_str(&json[copied..at]);
        let next = at + 6;
        if bytes.get(next) == Some(&b'0') {
            out.push_str("\\u0000");
            at = next + 1;
        } else if esc_escape_at(json, next) {
            out.push_str("\\u001a");
            at = next + 6;
        } else {
            return Err(broken());
        }
        copied = at;
    }
    out.push_str(json.get(copied..).ok_or_else(broken)?);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
pub(crate) mod tests {
    use http::HeaderMap;
    use time::OffsetDateTime;

    use super::{ESC, read_record, stored, stored_record, unstored};
    use crate::{inbox::Webhook, verify::Verified};

    /// A GitHub webhook of endpoint `test` with id `id` (also the body's) and `event`.
    pub(crate) fn hook(id: &str, event: Option<&str>) -> Webhook {
        let v = Verified::new(
            "github",
            Some(id.to_owned().into()),
            None,
            event.map(|e| e.to_owned().into()),
            [0; 32],
            0,
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", http::HeaderValue::from_static("push"));
        Webhook::new("test", &v, headers, format!("{{\"id\":{id:?}}}").into(), OffsetDateTime::UNIX_EPOCH)
    }

    /// Every string of up to `len` characters from `alphabet`.
    pub(crate) fn all_strings(alphabet: &[char], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last.iter().flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}"))).collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn stored_texts_hold_no_nul_never_collide_and_read_back() {
        let all = all_strings(&['a', '0', '\0', ESC], 6);
        let mut seen = std::collections::HashMap::new();
        for text in &all {
            let kept = stored(text);
            assert!(!kept.contains('\0'), "{text:?} stored as {kept:?}");
            if !text.contains(['\0', ESC]) {
                assert_eq!(kept, text.as_str(), "left as it is");
            }
            assert_eq!(unstored(&kept).as_deref(), Some(text.as_str()), "{text:?} reads back");
            if let Some(other) = seen.insert(kept.into_owned(), text) {
                panic!("{other:?} and {text:?} are stored alike");
            }
        }
        assert_eq!(unstored("a\u{1a}b"), None, "not written by `stored`");
    }

    #[test]
    fn records_holding_nul_are_stored_without_it_and_read_back_as_they_were() {
        let ids =
            ["a\0b", "a\u{1a}0b", "a\u{1a}\u{1a}b", "a\u{1a}b", "\0", r"a\u0000b", "a\\\0\"\u{1a}\u{1a}0"];
        for id in ids {
            let webhook = hook(id, Some("e\0v"));
            let json = webhook.to_meta_json();
            let kept = stored_record(json.clone());
            assert!(!kept.contains("\\u0000") || kept.contains(r"\\u0000"), "{kept}");
            assert!(kept.contains("\"nul_escaped\":true"), "{kept}");
            serde_json::from_str::<serde_json::Value>(&kept).expect("still JSON");
            let read = read_record(&kept).unwrap();
            let back = Webhook::from_meta_json(read.as_bytes(), webhook.body().clone()).unwrap();
            assert_eq!(
                (back.key(), back.id(), back.event()),
                (webhook.key(), webhook.id(), webhook.event()),
                "{id:?}"
            );
            assert_eq!(back, webhook);
        }
        let plain = hook("d-1", Some("push")).to_meta_json();
        assert_eq!(stored_record(plain.clone()), plain, "nothing to escape: unchanged");
        assert_eq!(read_record(&plain).unwrap(), plain.as_str());
        // A record stored before escaping existed, holding SUB: read as it is.
        let old = hook("a\u{1a}0", None).to_meta_json();
        assert_eq!(read_record(&old).unwrap(), old.as_str());
        let broken = r#"{"nul_escaped":true,"key":"a\u001ab"}"#;
        assert!(read_record(broken).unwrap_err().contains("unreadable"));
    }

    /// `jsonb` keeps no key order or spacing of its own and decodes every escape: a stored
    /// record that went through a JSON value (keys sorted, the mark no longer first; spaced
    /// or not) still reads back, and holds no NUL anywhere.
    #[test]
    fn stored_records_read_back_after_being_respaced_and_reordered() {
        fn no_nul(value: &serde_json::Value) -> bool {
            match value {
                serde_json::Value::String(s) => !s.contains('\0'),
                serde_json::Value::Array(a) => a.iter().all(no_nul),
                serde_json::Value::Object(o) => o.iter().all(|(k, v)| !k.contains('\0') && no_nul(v)),
                _ => true,
            }
        }
        for id in ["a\0b", "a\u{1a}0b", "\u{1a}\u{1a}", "a\\u0000b", "\\\0\u{1a}", "plain"] {
            let webhook = hook(id, Some("e\0v\u{1a}"));
            let kept = stored_record(webhook.to_meta_json());
            let value: serde_json::Value = serde_json::from_str(&kept).expect("still JSON");
            assert!(no_nul(&value), "{id:?}: {kept}");
            for jsonb in
                [serde_json::to_string(&value).unwrap(), serde_json::to_string_pretty(&value).unwrap()]
            {
                let read = read_record(&jsonb).unwrap_or_else(|e| panic!("{id:?}: {e}: {jsonb}"));
                let back = Webhook::from_meta_json(read.as_bytes(), webhook.body().clone()).unwrap();
                assert_eq!(back, webhook, "{id:?}: {jsonb}");
            }
        }
    }

    #[test]
    fn records_without_the_mark_are_read_as_they_are() {
        for json in [
            "",
            "not JSON \\u001a",
            r#"{"key":"a\u001a0"}"#,
            r#"{"nul_escaped":false,"key":"a\u001a0"}"#,
            r#"["nul_escaped",true,"\u001a0"]"#,
        ] {
            assert_eq!(read_record(json).unwrap(), json);
        }
    }
}
