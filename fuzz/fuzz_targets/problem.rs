//! problem+json rendering of rejections: any reason, detail, status and extra text
//! renders to valid JSON with the right `status`, `type` and `Content-Type`, the free
//! detail text as it was given, and `Retry-After` exactly when one was given; a rejection
//! from verifying a fuzzed request never shows the secret or the expected signature.
//!
//! Input: 8 control bytes, then `<x-hub-signature-256 value>\n<body>` for a real
//! verification against the GitHub preset (seeds: the GitHub vectors).
#![no_main]

use hookguard::{
    problem::{Problem, TYPE_BASE},
    providers::github,
    verify::{Detail, Outgoing, Reason, Rejection, Scheme, Sign, WebhookRequest},
};
use http::StatusCode;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "It's a Secret to Everybody";
const TEXTS: &[&str] = &["", "no signature of the expected version", "\"quoted\" \\ \u{0}\u{7f} é ✓"];

fn render(problem: Problem, want_status: StatusCode, want_code: &str) -> Vec<u8> {
    let res = problem.into_response();
    assert_eq!(res.status(), want_status);
    assert_eq!(res.headers()[http::header::CONTENT_TYPE], "application/problem+json");
    let body: serde_json::Value = serde_json::from_slice(res.body()).expect("problem body is JSON");
    assert_eq!(body["status"].as_u64(), Some(u64::from(want_status.as_u16())));
    assert_eq!(body["type"].as_str(), Some(format!("{TYPE_BASE}{want_code}").as_str()));
    assert!(body["title"].is_string());
    res.into_body()
}

fuzz_target!(|data: &[u8]| {
    let mut ctrl = [0_u8; 8];
    let n = data.len().min(8);
    ctrl[..n].copy_from_slice(&data[..n]);
    let rest = &data[n..];
    let wide = u64::from_le_bytes(ctrl);

    // 1. Any rejection, any status override, any Retry-After, any extra detail text.
    let reason = Reason::ALL[usize::from(ctrl[0]) % Reason::ALL.len()];
    let small = usize::from(u16::from_le_bytes([ctrl[2], ctrl[3]]));
    let detail = match ctrl[1] % 7 {
        0 => Detail::None,
        1 => match http::HeaderName::from_bytes(rest.split(|b| *b == b'\n').next().unwrap_or_default()) {
            Ok(h) => Detail::Header(h),
            Err(_) => Detail::None,
        },
        2 => Detail::Compared { signatures: small, secrets: usize::from(ctrl[4]) },
        3 => Detail::Age { secs: wide, tolerance_secs: wide.rotate_left(17) },
        4 => Detail::Limit { max: small },
        5 => Detail::Limit { max: usize::MAX },
        _ => Detail::Text(TEXTS[usize::from(ctrl[4]) % TEXTS.len()]),
    };
    let rejection = Rejection::with_detail(reason, detail);
    let status = StatusCode::from_u16(u16::from_le_bytes([ctrl[5], ctrl[6]]) % 1000).ok();
    let mut problem = Problem::from_rejection(&rejection, status);
    let want = status.unwrap_or_else(|| rejection.status());
    let free = (ctrl[7] & 1 == 1).then(|| String::from_utf8_lossy(rest).into_owned());
    if let Some(free) = &free {
        problem = problem.detail(free.as_str());
    }
    let has_retry = ctrl[7] & 2 == 2;
    if has_retry {
        problem = problem.retry_after(wide);
    }
    let body = render(problem.clone(), want, reason.code());
    if let Some(free) = &free {
        let body: serde_json::Value = serde_json::from_slice(&body).expect("problem body is JSON");
        assert_eq!(body["detail"].as_str(), Some(free.as_str()), "the detail given, as it was");
    }
    let res = problem.into_response();
    match res.headers().get(http::header::RETRY_AFTER) {
        Some(value) => assert!(has_retry && value == wide.to_string().as_str(), "Retry-After {value:?}"),
        None => assert!(!has_retry, "no Retry-After"),
    }

    // 2. A real rejection of a fuzzed request: its rendering holds neither the secret
    //    nor the signature that would have been right.
    let (sig, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let scheme = github::scheme(SECRET).expect("github scheme");
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(sig) {
        headers.insert(github::HEADER, v);
    }
    let method = http::Method::POST;
    let uri = http::Uri::from_static("/hooks/github");
    let req = WebhookRequest::new(&method, &uri, &headers, body);
    if let Err(rejection) = scheme.verify(&req, time::OffsetDateTime::UNIX_EPOCH) {
        let out =
            render(Problem::from_rejection(&rejection, None), rejection.status(), rejection.reason().code());
        let out = String::from_utf8(out).expect("problem body is UTF-8");
        assert!(!out.contains(SECRET));
        let right = scheme.sign(&Outgoing::new(body)).expect("github signs");
        for (_, value) in right {
            let value = value.to_str().expect("ascii");
            let hex = value.trim_start_matches("sha256=");
            assert!(!out.contains(hex), "expected signature leaked");
        }
    }
});
