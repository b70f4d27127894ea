//! A zero-allocation lookup of one member of a JSON body, for schemes that take a
//! timestamp, a signature or a delivery id from the payload.

use std::{borrow::Cow, fmt};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Finds the value at `path` (object keys from the root). `Ok(None)` when a key is
/// absent or an intermediate value is not an object; `Err(())` when the body is not JSON.
/// Does not allocate unless a string on the way (a key, a skipped value or the one
/// returned) has escapes in it.
pub(crate) fn lookup<'a>(body: &'a [u8], path: &[&str]) -> Result<Option<&'a RawValue>, ()> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = PathSeed { path }.deserialize(&mut de).map_err(|_| ())?;
    de.end().map_err(|_| ())?;
    Ok(found)
}

/// The text of a scalar: a string's contents (unescaped) or a number as written.
pub(crate) fn scalar_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'"' => match serde_json::from_str::<&str>(text) {
            Ok(s) => Some(Cow::Borrowed(s)),
            Err(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
        },
        b'-' | b'0'..=b'9' => Some(Cow::Borrowed(text)),
        _ => None,
    }
}

/// Convenience: the scalar text at `path`.
pub(crate) fn text_at<'a>(body: &'a [u8], path: &[&str]) -> Result<Option<Cow<'a, str>>, ()> {
    Ok(lookup(body, path)?.and_then(scalar_text))
}

struct PathSeed<'p> {
    path: &'p [&'p str],
}

impl<'de> DeserializeSeed<'de> for PathSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match self.path.split_first() {
            None => <&'de RawValue as de::Deserialize>::deserialize(d).map(Some),
            Some((key, rest)) => d.deserialize_any(MemberVisitor { key, rest }),
        }
    }
}

struct MemberVisitor<'p> {
    key: &'p str,
    rest: &'p [&'p str],
}

impl<'de> Visitor<'de> for MemberVisitor<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_key) = map.next_key_seed(KeyIs(self.key))? {
            if is_key && found.is_none() {
                found = map.next_value_seed(PathSeed { path: self.rest })?;
            } else {
                map.next_value_seed(Skip)?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Skips one value without allocating. serde's `IgnoredAny` goes through serde_json's
/// `ignore_value`, which keeps its stack of nested containers in the deserializer's
/// scratch `Vec`: one heap allocation for any body nested two levels deep. Here the
/// nesting is on the call stack instead, bounded by serde_json's recursion limit (128).
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Deserializes an object key and says whether it equals the wanted one.
struct KeyIs<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
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
    }
}
