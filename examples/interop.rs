//! Test helper for the SDK interop suite (`tests/interop/run.sh`): signs or verifies a
//! batch of requests given as JSON on stdin, answers JSON on stdout.
//!
//! ```sh
//! echo '[{"preset":"github","secrets":["s"],"body":"hi"}]' | cargo run -q --example interop -- sign
//! ```
//!
//! `sign` takes `[{preset, secrets, body, id?, timestamp?, url?}]` and answers
//! `[{headers: {name: value}}]`; `verify` takes `[{preset, secrets, method?, url?,
//! headers, body, now?}]` and answers `[{ok, reason?, id?}]`. `now` defaults to the
//! current time. Square and Trello are built with the `url`.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
};

use hookguard::{
    providers::{self, Preset},
    verify::{Outgoing, WebhookRequest},
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Case {
    preset: String,
    secrets: Vec<String>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    now: Option<i64>,
}

fn scheme(case: &Case) -> Result<Box<dyn Preset>, String> {
    let url = case.url.clone().unwrap_or_default();
    let first = case.secrets.first().ok_or("no secret")?;
    match case.preset.as_str() {
        "square" => providers::square::scheme(first, url).map(|s| Box::new(s) as Box<dyn Preset>),
        "trello" => providers::trello::scheme(first, url).map(|s| Box::new(s) as Box<dyn Preset>),
        name => providers::by_name(name, &case.secrets),
    }
    .map_err(|e| e.to_string())
}

fn sign(case: &Case) -> Result<Value, String> {
    let scheme = scheme(case)?;
    let mut msg = Outgoing::new(case.body.as_bytes());
    if let Some(id) = &case.id {
        msg = msg.id(id);
    }
    if let Some(ts) = case.timestamp {
        msg = msg.timestamp(time::OffsetDateTime::from_unix_timestamp(ts).map_err(|e| e.to_string())?);
    }
    if let Some(url) = &case.url {
        msg = msg.url(url);
    }
    let mut headers = serde_json::Map::new();
    for (name, value) in scheme.sign(&msg).map_err(|e| e.to_string())? {
        headers
            .insert(name.to_string(), Value::String(value.to_str().map_err(|e| e.to_string())?.to_owned()));
    }
    Ok(json!({ "headers": headers }))
}

fn verify(case: &Case) -> Result<Value, String> {
    let scheme = scheme(case)?;
    let method = http::Method::from_bytes(case.method.as_deref().unwrap_or("POST").as_bytes())
        .map_err(|e| e.to_string())?;
    let url = case.url.clone().unwrap_or_else(|| "https://example.com/hooks".to_owned());
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let mut headers = http::HeaderMap::new();
    for (name, value) in &case.headers {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?,
            http::HeaderValue::from_str(value).map_err(|e| e.to_string())?,
        );
    }
    let now = match case.now {
        Some(ts) => time::OffsetDateTime::from_unix_timestamp(ts).map_err(|e| e.to_string())?,
        None => time::OffsetDateTime::now_utc(),
    };
    let req = WebhookRequest::new(&method, &uri, &headers, case.body.as_bytes()).with_url(&url);
    Ok(match scheme.verify(&req, now) {
        Ok(v) => json!({ "ok": true, "id": v.id() }),
        Err(r) => json!({ "ok": false, "reason": r.reason().code(), "detail": r.to_string() }),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let cases: Vec<Case> = serde_json::from_str(&input)?;
    let answers: Vec<Value> = cases
        .iter()
        .map(|case| {
            let answer = match mode.as_str() {
                "sign" => sign(case),
                "verify" => verify(case),
                other => Err(format!("unknown mode `{other}`: use sign or verify")),
            };
            answer.unwrap_or_else(|e| json!({ "error": e }))
        })
        .collect();
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &answers)?;
    writeln!(out)?;
    Ok(())
}
