//! Every provider handshake over any method, URL, headers and body: Slack
//! `url_verification`, Zoom `endpoint.url_validation`, Twitch callback verification,
//! Discord PING, Meta `hub.challenge`, Dropbox `challenge`, Trello HEAD, Asana
//! `X-Hook-Secret`.
//!
//! What must hold, besides no panic:
//! - each answers exactly when its request is what it answers (read independently here:
//!   serde_json for the JSON bodies, `form_urlencoded` for the query);
//! - an echoed challenge is the challenge, byte for byte: as `text/plain` with
//!   `X-Content-Type-Options: nosniff` and `Cache-Control: no-store` when it is echoed
//!   raw, inside JSON otherwise; Dropbox refuses (400, nothing echoed) a challenge over
//!   `MAX_CHALLENGE_LEN`;
//! - Meta echoes only for the right verify token, and answers 403 otherwise;
//! - Zoom answers a validation request signed with its secret (the request is signed
//!   here) and refuses the same request unsigned; its `encryptedToken` is the HMAC of
//!   `plainToken` under the secret (hex), and the secret never appears in any answer
//!   (unless the request carried it, to be echoed);
//! - the guard's handshakes (`handshake::for_provider`, which has all but Zoom and Meta,
//!   and those two configured) answer exactly as the provider functions do, before
//!   verification (Meta, Dropbox, Trello, Asana) and after it (Slack, Zoom, Twitch,
//!   Discord); Meta's wrong token is a refusal (`HandshakeReply::Refuse`), and Asana's
//!   handshake is a POST only.
//!
//! Input: 4 control bytes, then `METHOD URL`, header lines (`name: value`), an empty line,
//! the body.
#![no_main]

use hookguard::{
    guard::{Handshake, HandshakeReply},
    handshake,
    providers::{self, asana, discord, dropbox, meta, slack, trello, twitch, zoom},
    verify::{Outgoing, Sign as _, Verified, WebhookRequest},
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, Uri, header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const ZOOM_SECRET: &str = "zoom-secret-token-do-not-echo";
/// When Zoom's requests are signed, and checked.
const ZOOM_AT: i64 = 1_700_000_000;
const META_TOKENS: &[&str] = &["meta-verify", "x", "a b+c"];

struct Request<'a> {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: &'a [u8],
}

fn parse(data: &[u8]) -> Option<Request<'_>> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, url) = lines.next()?.split_once(' ')?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let uri: Uri = url.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(value.trim().as_bytes()).ok()?;
        headers.append(name, value);
    }
    Some(Request { method, uri, headers, body })
}

/// The first value of query parameter `name`, decoded.
fn query(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A JSON object's member as serde_json reads it.
fn member<'a>(body: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(body, |v, key| v.as_object()?.get(*key))
}

/// `text/plain` + `nosniff`, status 200, the body exactly `echo`.
fn assert_echo(res: &Response<Vec<u8>>, echo: &str, what: &str) {
    assert_eq!(res.status(), 200, "{what}");
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8", "{what}");
    assert_eq!(res.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store", "{what}");
    assert_eq!(res.body(), echo.as_bytes(), "{what}");
}

/// 200 `application/json` whose body parses.
fn json_answer(res: &Response<Vec<u8>>, what: &str) -> Value {
    assert_eq!(res.status(), 200, "{what}");
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json", "{what}");
    serde_json::from_slice(res.body()).expect("a JSON answer")
}

/// The Zoom secret is in no answer (unless the request itself carried that text, which an
/// answer may echo).
fn no_secret(res: &Response<Vec<u8>>, request: &[u8]) {
    let secret = ZOOM_SECRET.as_bytes();
    if request.windows(secret.len()).any(|w| w == secret) {
        return;
    }
    assert!(!res.body().windows(secret.len()).any(|w| w == secret), "the secret is in an answer");
    for value in res.headers().values() {
        assert!(!value.as_bytes().windows(secret.len()).any(|w| w == secret), "the secret is in a header");
    }
}

fuzz_target!(|data: &[u8]| {
    let (ctrl, rest) = data.split_at(data.len().min(4));
    let Some(req) = parse(rest) else { return };
    let json: Option<Value> = serde_json::from_slice(req.body).ok();
    // serde_json keeps the last of duplicated keys, the handshakes' JSON reader the first
    // (and it stops at the member it looks for): answers are compared for the bodies
    // serde_json reads without duplicated keys.
    let unambiguous = json.is_some() && !has_duplicate_keys(req.body);

    // Slack: a JSON object with `type: "url_verification"` and a string `challenge`.
    let got = slack::url_verification(req.body);
    let want = json.as_ref().and_then(|v| {
        (member(v, &["type"])?.as_str()? == "url_verification").then_some(())?;
        member(v, &["challenge"])?.as_str()
    });
    if unambiguous {
        assert_eq!(got.is_some(), want.is_some(), "slack answers exactly url_verification");
    }
    if let Some(res) = &got {
        let answer = json_answer(res, "slack");
        if unambiguous {
            assert_eq!(answer["challenge"].as_str(), want, "slack echoes the challenge");
        }
        no_secret(res, data);
    }

    // Zoom: `event: "endpoint.url_validation"`, `payload.plainToken` a string, in a
    // request signed with the secret; the same request unsigned (as sent) is refused.
    let scheme = zoom::scheme(ZOOM_SECRET).expect("valid secret");
    let at = time::OffsetDateTime::from_unix_timestamp(ZOOM_AT).expect("a time");
    let mut signed = req.headers.clone();
    for (name, value) in scheme.sign(&Outgoing::new(req.body).timestamp(at)).expect("zoom signs") {
        signed.insert(name, value);
    }
    let unsigned = zoom::url_validation(
        &scheme,
        &WebhookRequest::new(&req.method, &req.uri, &req.headers, req.body),
        at,
    );
    assert!(!matches!(unsigned, Some(Ok(_))), "zoom answers a request it did not sign");
    let got =
        zoom::url_validation(&scheme, &WebhookRequest::new(&req.method, &req.uri, &signed, req.body), at)
            .map(|answer| answer.expect("a signed request verifies"));
    let want = json.as_ref().and_then(|v| {
        (member(v, &["event"])?.as_str()? == "endpoint.url_validation").then_some(())?;
        member(v, &["payload", "plainToken"])?.as_str()
    });
    if unambiguous {
        assert_eq!(got.is_some(), want.is_some(), "zoom answers exactly url_validation");
    }
    if let Some(res) = &got {
        let answer = json_answer(res, "zoom");
        let token = answer["plainToken"].as_str().expect("plainToken");
        if unambiguous {
            assert_eq!(Some(token), want, "zoom echoes plainToken");
        }
        let mac = zoom::scheme(ZOOM_SECRET).expect("valid secret").mac_primary(token.as_bytes());
        let hex: String = mac.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(answer["encryptedToken"].as_str(), Some(hex.as_str()), "zoom's encryptedToken");
        no_secret(res, data);
    }

    // Twitch: a string `challenge` in the body (signed), echoed raw, whatever the
    // (unsigned) message-type header says.
    let got = twitch::callback_verification(req.body);
    let want = json.as_ref().and_then(|v| member(v, &["challenge"])?.as_str());
    if unambiguous {
        assert_eq!(got.is_some(), want.is_some(), "twitch answers a string challenge");
    }
    if let Some(res) = &got {
        if unambiguous {
            assert_echo(res, want.expect("a challenge"), "twitch");
        }
        no_secret(res, data);
    }

    // Discord: `type: 1` answers `{"type":1}`.
    let got = discord::ping_response(req.body);
    let want = json.as_ref().and_then(|v| member(v, &["type"])?.as_u64()) == Some(1);
    if unambiguous {
        assert_eq!(got.is_some(), want, "discord answers exactly a PING");
    }
    if let Some(res) = &got {
        assert_eq!(json_answer(res, "discord"), serde_json::json!({ "type": 1 }));
    }

    // Meta: GET with `hub.mode`; the challenge only for `subscribe` and the right token.
    let token = META_TOKENS[usize::from(ctrl.first().copied().unwrap_or(0)) % META_TOKENS.len()];
    let got = meta::verify_subscription(&req.method, &req.uri, token);
    let mode = query(&req.uri, "hub.mode");
    if req.method != Method::GET || mode.is_none() {
        assert!(got.is_none(), "meta answers only a GET with hub.mode");
    } else {
        let res = got.expect("meta answers");
        let challenge = query(&req.uri, "hub.challenge");
        let right = mode.as_deref() == Some("subscribe")
            && query(&req.uri, "hub.verify_token").as_deref() == Some(token);
        match challenge {
            Some(challenge) if right && challenge.len() > meta::MAX_CHALLENGE_LEN => {
                assert_eq!(res.status(), 400, "meta refuses a long challenge");
                assert!(res.body().is_empty(), "meta echoes no long challenge");
            }
            Some(challenge) if right => assert_echo(&res, &challenge, "meta"),
            _ => {
                assert_eq!(res.status(), 403, "meta refuses");
                assert!(res.body().is_empty());
            }
        }
    }

    // Dropbox: GET with `challenge`, echoed.
    let got = dropbox::challenge(&req.method, &req.uri);
    let want = (req.method == Method::GET).then(|| query(&req.uri, "challenge")).flatten();
    assert_eq!(got.is_some(), want.is_some(), "dropbox answers exactly a GET challenge");
    match (&got, &want) {
        (Some(res), Some(want)) if want.len() > dropbox::MAX_CHALLENGE_LEN => {
            assert_eq!(res.status(), 400, "dropbox refuses a long challenge");
            assert!(res.body().is_empty(), "dropbox echoes no long challenge");
        }
        (Some(res), Some(want)) => assert_echo(res, want, "dropbox"),
        _ => {}
    }

    // Trello: HEAD answers 200, empty.
    let got = trello::head_response(&req.method);
    assert_eq!(got.is_some(), req.method == Method::HEAD);
    if let Some(res) = got {
        assert_eq!(res.status(), 200);
        assert!(res.body().is_empty());
    }

    // Asana: an `X-Hook-Secret` of 16 to 256 visible ASCII bytes is adopted and echoed
    // back, marked sensitive.
    let got = asana::handshake(&req.headers);
    let sent = req.headers.get("x-hook-secret");
    let well_shaped =
        |v: &HeaderValue| (16..=256).contains(&v.len()) && v.as_bytes().iter().all(u8::is_ascii_graphic);
    assert_eq!(got.is_some(), sent.is_some_and(well_shaped), "asana answers a well-shaped hook secret");
    if let (Some((secret, res)), Some(sent)) = (&got, sent) {
        assert_eq!(secret.expose(), sent.as_bytes(), "asana adopts the secret sent");
        let echoed = &res.headers()["x-hook-secret"];
        assert_eq!(echoed, sent, "asana echoes it");
        assert!(echoed.is_sensitive(), "the echoed secret is marked sensitive");
        assert_eq!(res.status(), 200);
        assert!(res.body().is_empty(), "the secret is not in the body");
    }

    // The same through the guard's handshakes: the table by provider name (Zoom and Meta
    // are not in it: they need a secret and a verify token), and those two configured.
    // Each answers before verification exactly what its provider function answers, and
    // after it (when it answers after) the same; the others answer nothing then.
    // The request signed for Zoom (the other handshakes do not read those headers), and
    // what the guard passes on once it verified.
    let mut builder = http::Request::builder().method(req.method.clone()).uri(req.uri.clone());
    for (name, value) in &signed {
        builder = builder.header(name, value);
    }
    let (parts, ()) = builder.body(()).expect("a request").into_parts();
    let verified = Verified::new("fuzz", None, Some(at), None, [0; 32], 0);
    for name in providers::NAMES {
        let expected = matches!(*name, "slack" | "twitch" | "discord" | "dropbox" | "trello" | "asana");
        assert_eq!(handshake::for_provider(name).is_some(), expected, "{name} in the table of handshakes");
    }
    let zoom_handshake = handshake::ZoomUrlValidation::new(zoom::scheme(ZOOM_SECRET).expect("valid secret"));
    let meta_handshake = handshake::MetaSubscription::new(token).expect("a verify token");
    let table: [(&str, Box<dyn Handshake>); 8] = [
        ("slack", handshake::for_provider("slack").expect("slack")),
        ("twitch", handshake::for_provider("twitch").expect("twitch")),
        ("discord", handshake::for_provider("discord").expect("discord")),
        ("dropbox", handshake::for_provider("dropbox").expect("dropbox")),
        ("trello", handshake::for_provider("trello").expect("trello")),
        ("asana", handshake::for_provider("asana").expect("asana")),
        ("zoom", Box::new(zoom_handshake)),
        ("meta", Box::new(meta_handshake)),
    ];
    for (name, handshake) in &table {
        let before = handshake.before(&parts, req.body);
        let want_before = match *name {
            "meta" => meta::verify_subscription(&req.method, &req.uri, token),
            "dropbox" => dropbox::challenge(&req.method, &req.uri),
            "trello" => trello::head_response(&req.method),
            "asana" if req.method == Method::POST => asana::handshake(&req.headers).map(|(_, res)| res),
            _ => None,
        };
        match (before, want_before) {
            (None, None) => {}
            (Some(HandshakeReply::Refuse), Some(want)) if *name == "meta" => {
                assert_eq!(want.status(), 403, "meta refuses only what it answers 403");
            }
            (Some(HandshakeReply::Respond(got)), Some(want)) if *name != "asana" => same(&got, &want, name),
            (Some(HandshakeReply::AdoptSecret(secret, got)), Some(want)) if *name == "asana" => {
                same(&got, &want, name);
                assert_eq!(
                    Some(secret.expose()),
                    req.headers.get("x-hook-secret").map(HeaderValue::as_bytes)
                );
            }
            (got, want) => panic!("{name} before verification: {got:?}, not {want:?}"),
        }
        let after = handshake.after(&parts, req.body, &verified);
        let want_after = match *name {
            "slack" => slack::url_verification(req.body),
            "twitch" => twitch::callback_verification(req.body),
            "discord" => discord::ping_response(req.body),
            "zoom" => zoom::url_validation(&scheme, &WebhookRequest::from_parts(&parts, req.body), at)
                .map(|answer| answer.expect("a signed request verifies")),
            _ => None,
        };
        match (after, want_after) {
            (None, None) => {}
            (Some(got), Some(want)) => same(&got, &want, name),
            (got, want) => panic!("{name} after verification: {got:?}, not {want:?}"),
        }
    }
});

/// The same status, headers and body.
fn same(got: &Response<Vec<u8>>, want: &Response<Vec<u8>>, what: &str) {
    assert_eq!(got.status(), want.status(), "{what}");
    assert_eq!(got.headers(), want.headers(), "{what}");
    assert_eq!(got.body(), want.body(), "{what}");
}

/// Whether some JSON object in `body` has a key twice (serde_json would keep the last).
fn has_duplicate_keys(body: &[u8]) -> bool {
    struct Check;
    impl<'de> serde::de::Visitor<'de> for Check {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut keys = std::collections::HashSet::new();
            let mut dup = false;
            while let Some(key) = map.next_key::<String>()? {
                dup |= !keys.insert(key);
                dup |= map.next_value::<Dup>()?.0;
            }
            Ok(dup)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut dup = false;
            while let Some(Dup(d)) = seq.next_element::<Dup>()? {
                dup |= d;
            }
            Ok(dup)
        }
        fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_str<E>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    struct Dup(bool);
    impl<'de> serde::Deserialize<'de> for Dup {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Check).map(Dup)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde::Deserialize::deserialize(&mut de).map(|Dup(d)| d).unwrap_or(true)
}
