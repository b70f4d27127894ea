//! The JSON member lookup behind `Field::Json`, reached through the public API: a body
//! signed and verified by schemes that take their event type from a JSON path. Never
//! panics, and on every body serde_json accepts, the event is what serde_json finds at
//! that path (the first occurrence of a duplicated key; strings unescaped, numbers as
//! written).
#![no_main]

use std::{collections::btree_map::Entry, fmt, sync::OnceLock};

use hookguard::verify::{
    Algorithm, Encoding, Field, HmacScheme, Outgoing, Scheme, Sign, SignatureFormat, WebhookRequest,
};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Paths looked up in every input: short keys the fuzzer finds quickly, nesting, keys
/// that need escapes, non-ASCII.
const PATHS: &[&[&str]] = &[
    &["type"],
    &["id"],
    &["a"],
    &[""],
    &["a", "b"],
    &["data", "object", "id"],
    &["\"\\"],
    &["é"],
    &["a", "", "a"],
];

fn schemes() -> &'static [(HmacScheme, &'static [&'static str])] {
    static SCHEMES: OnceLock<Vec<(HmacScheme, &'static [&'static str])>> = OnceLock::new();
    SCHEMES.get_or_init(|| {
        PATHS
            .iter()
            .map(|path| {
                let scheme = HmacScheme::builder("fuzz", Algorithm::Sha256)
                    .signature(Field::header("x-sig"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
                    .event(Field::Json(path))
                    .secret("fuzz")
                    .build()
                    .expect("valid scheme");
                (scheme, *path)
            })
            .collect()
    })
}

/// serde_json's value, keeping the first of duplicated keys as the lookup does.
struct FirstWins(Value);

impl<'de> Deserialize<'de> for FirstWins {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FirstWinsVisitor)
    }
}

struct FirstWinsVisitor;

impl<'de> Visitor<'de> for FirstWinsVisitor {
    type Value = FirstWins;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::String(v.to_owned())))
    }
    fn visit_unit<E>(self) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstWins, A::Error> {
        let mut items = Vec::new();
        while let Some(FirstWins(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(FirstWins(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstWins, A::Error> {
        let mut first = std::collections::BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let FirstWins(value) = map.next_value()?;
            if let Entry::Vacant(slot) = first.entry(key) {
                slot.insert(value);
            }
        }
        Ok(FirstWins(Value::Object(first.into_iter().collect::<Map<_, _>>())))
    }
}

fn expected(doc: &Value, path: &[&str]) -> Option<Value> {
    let mut at = doc;
    for key in path {
        at = at.as_object()?.get(*key)?;
    }
    matches!(at, Value::String(_) | Value::Number(_)).then(|| at.clone())
}

fuzz_target!(|body: &[u8]| {
    let reference = serde_json::from_slice::<FirstWins>(body).ok().map(|FirstWins(v)| v);
    let now = time::OffsetDateTime::UNIX_EPOCH;
    for (scheme, path) in schemes() {
        let headers = scheme.sign(&Outgoing::new(body)).expect("signs");
        let mut req = http::Request::post("/hook");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req.body(body.to_vec()).expect("request");
        let verified =
            scheme.verify(&WebhookRequest::from_request(&req), now).expect("own signature verifies");
        let Some(doc) = &reference else { continue };
        let got = verified.event();
        match expected(doc, path) {
            None => assert_eq!(got, None, "path {path:?}"),
            Some(Value::String(s)) => assert_eq!(got, Some(s.as_str()), "path {path:?}"),
            Some(number) => {
                // Numbers come back as written; they must read as the same number.
                let text = got.unwrap_or_else(|| panic!("path {path:?}: number missing"));
                let read: Value = serde_json::from_str(text).expect("a JSON number");
                assert_eq!(read, number, "path {path:?}");
            }
        }
    }
});
