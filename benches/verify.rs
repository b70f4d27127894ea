//! Verification throughput: hookguard's presets against a raw pre-keyed HMAC-SHA256 (the
//! floor) and the `svix` and `standardwebhooks` crates, on the same signed bytes.
//!
//! `cargo bench --bench verify`; results and the machine in BENCHMARKS.md.

use std::{hint::black_box, time::Duration};

use base64::Engine as _;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{KeyInit, Mac};
use hookguard::{
    providers::{github, standard_webhooks, stripe},
    verify::{
        Algorithm, Encoding, Field, HmacScheme, KeyFormat, Outgoing, Scheme, Sign, TimestampFormat,
        Tolerance, WebhookRequest,
    },
};
use http::{HeaderName, HeaderValue};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SIZES: &[(usize, &str)] = &[(64, "64B"), (1024, "1KiB"), (16 * 1024, "16KiB"), (256 * 1024, "256KiB")];

/// A JSON body of exactly `size` bytes, shaped like a webhook payload: an event type
/// first, then an array of small objects, then padding.
fn json_body(size: usize) -> Vec<u8> {
    let head = br#"{"type":"invoice.paid","id":"evt_1","data":["#;
    let tail_fixed = br#"],"pad":""}"#;
    let mut body = head.to_vec();
    let mut i = 0_u32;
    loop {
        let item = format!(
            r#"{}{{"n":{i},"name":"item {i}","ok":true,"price":12.5}}"#,
            if i == 0 { "" } else { "," }
        );
        if body.len() + item.len() + tail_fixed.len() > size {
            break;
        }
        body.extend_from_slice(item.as_bytes());
        i += 1;
    }
    body.extend_from_slice(br#"],"pad":""#);
    while body.len() + 2 < size {
        body.push(b'x');
    }
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), size);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
    body
}

/// The request's head. Every row reads the one body buffer (the views are built over
/// it): a copy per request would sit at another address, and the hash's speed depends on
/// the body's alignment by up to ±3 % at 1 KiB, which would compare alignments, not code.
fn request(headers: Vec<(HeaderName, HeaderValue)>) -> http::Request<()> {
    let mut req = http::Request::post("/hooks");
    for (name, value) in headers {
        req = req.header(name, value);
    }
    req.body(()).expect("valid request")
}

fn view_of<'a>(req: &'a http::Request<()>, body: &'a [u8]) -> WebhookRequest<'a> {
    WebhookRequest::new(req.method(), req.uri(), req.headers(), body)
}

/// Standard Webhooks minus the event-type lookup in the JSON body: isolates what that
/// lookup costs on top of the MAC.
fn standard_webhooks_without_event() -> HmacScheme {
    HmacScheme::builder("standard-webhooks", Algorithm::Sha256)
        .key_format(KeyFormat::StandardWebhooks)
        .signature(Field::header("webhook-signature"), standard_webhooks::FORMAT, Encoding::Base64)
        .content(standard_webhooks::CONTENT)
        .id(Field::header("webhook-id"))
        .timestamp(Field::header("webhook-timestamp"), TimestampFormat::UnixSeconds)
        .tolerance(Tolerance::symmetric(Duration::from_secs(300)))
        .secret(SECRET)
        .build()
        .expect("valid scheme")
}

/// The least a Standard Webhooks verifier can do, written out by hand for this one
/// scheme and one key: three header lookups, the id as text, the timestamp's digits and
/// window, the MAC over the pieces, the `v1,` entries split and base64-decoded, a
/// constant-time compare. No rejection reasons, no event, no `Verified`: a reference for
/// what "reading the request" costs on top of the raw HMAC.
fn hand_written(
    keyed: &hmac::Hmac<sha2::Sha256>,
    headers: &http::HeaderMap,
    body: &[u8],
    now: i64,
    names: &[HeaderName; 3],
) -> bool {
    let (Some(id), Some(ts), Some(sig)) =
        (headers.get(&names[0]), headers.get(&names[1]), headers.get(&names[2]))
    else {
        return false;
    };
    let Ok(id) = id.to_str() else { return false };
    let ts = ts.as_bytes();
    if ts.is_empty() || ts.len() > 19 || !ts.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let at = ts.iter().fold(0_i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    if (now - at).abs() > 300 {
        return false;
    }
    let mut mac = keyed.clone();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts);
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut ok = subtle::Choice::from(0);
    for entry in sig.as_bytes().split(|b| *b == b' ') {
        if let Some(text) = entry.strip_prefix(b"v1,") {
            let mut buf = [0_u8; 64];
            if let Ok(n) = base64::engine::general_purpose::STANDARD.decode_slice(text, &mut buf) {
                ok |= buf[..n].ct_eq(tag.as_slice());
            }
        }
    }
    ok.into()
}

fn standard(c: &mut Criterion) {
    // svix and standardwebhooks read the system clock: sign with the current time.
    let now = OffsetDateTime::now_utc();
    let now = OffsetDateTime::from_unix_timestamp(now.unix_timestamp()).expect("in range");
    let ts = now.unix_timestamp().to_string();
    let scheme = standard_webhooks::scheme(SECRET).expect("valid secret");
    let no_event = standard_webhooks_without_event();
    let svix = svix::webhooks::Webhook::new(SECRET).expect("valid secret");
    let sw = standardwebhooks::Webhook::new(SECRET).expect("valid secret");
    let key = hookguard::Secret::from_standard_webhooks(SECRET).expect("valid secret");
    let keyed = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.expose()).expect("any key length");

    for &(size, label) in SIZES {
        let body = json_body(size);
        let headers = scheme.sign(&Outgoing::new(&body).id(ID).timestamp(now)).expect("signs");
        let req = request(headers);
        let view = view_of(&req, &body);
        // The same delivery as it arrives over HTTP, with the usual headers around the
        // signed ones (hookguard looks through a small header map instead of hashing).
        let mut busy = request(Vec::new());
        *busy.headers_mut() = req.headers().clone();
        for (name, value) in [
            ("host", "hooks.example.com"),
            ("user-agent", "Svix-Webhooks/1.21.0"),
            ("content-type", "application/json"),
            ("content-length", "1024"),
            ("accept", "*/*"),
            ("accept-encoding", "gzip"),
            ("x-forwarded-for", "203.0.113.7"),
        ] {
            busy.headers_mut().insert(name, HeaderValue::from_static(value));
        }
        let busy_view = view_of(&busy, &body);
        let sig_text = req.headers()["webhook-signature"].to_str().expect("ascii");
        let expected = base64::engine::general_purpose::STANDARD
            .decode(sig_text.strip_prefix("v1,").expect("v1 entry"))
            .expect("base64");

        // Every implementation accepts the request before anything is timed.
        assert!(scheme.verify(&view, now).is_ok());
        assert!(no_event.verify(&view, now).is_ok());
        svix.verify(&body, req.headers()).expect("svix accepts");
        sw.verify(&body, req.headers()).expect("standardwebhooks accepts");

        let mut group = c.benchmark_group(format!("standard-webhooks/{label}"));
        group
            .throughput(Throughput::Bytes(size as u64))
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        group.bench_function(BenchmarkId::new("raw-hmac", label), |b| {
            b.iter(|| {
                let mut mac = keyed.clone();
                mac.update(black_box(ID).as_bytes());
                mac.update(b".");
                mac.update(black_box(&ts).as_bytes());
                mac.update(b".");
                mac.update(black_box(&body));
                let tag = mac.finalize().into_bytes();
                bool::from(tag.as_slice().ct_eq(black_box(&expected)))
            })
        });
        let names = [
            HeaderName::from_static("webhook-id"),
            HeaderName::from_static("webhook-timestamp"),
            HeaderName::from_static("webhook-signature"),
        ];
        assert!(hand_written(&keyed, req.headers(), &body, now.unix_timestamp(), &names));
        group.bench_function(BenchmarkId::new("hand-written", label), |b| {
            b.iter(|| {
                hand_written(&keyed, black_box(req.headers()), black_box(&body), now.unix_timestamp(), &names)
            })
        });
        group.bench_function(BenchmarkId::new("hookguard", label), |b| {
            b.iter(|| scheme.verify(black_box(&view), now).is_ok())
        });
        assert!(scheme.verify(&busy_view, now).is_ok());
        group.bench_function(BenchmarkId::new("hookguard-10-headers", label), |b| {
            b.iter(|| scheme.verify(black_box(&busy_view), now).is_ok())
        });
        group.bench_function(BenchmarkId::new("hookguard-no-event", label), |b| {
            b.iter(|| no_event.verify(black_box(&view), now).is_ok())
        });
        group.bench_function(BenchmarkId::new("svix", label), |b| {
            b.iter(|| svix.verify(black_box(&body), black_box(req.headers())).is_ok())
        });
        group.bench_function(BenchmarkId::new("standardwebhooks", label), |b| {
            b.iter(|| sw.verify(black_box(&body), black_box(req.headers())).is_ok())
        });
        group.finish();
    }
}

fn others(c: &mut Criterion) {
    let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("in range");
    let body = json_body(1024);
    let stripe = stripe::scheme("whsec_test_secret").expect("valid secret");
    let github = github::scheme("It's a Secret to Everybody").expect("valid secret");
    let stripe_req = request(stripe.sign(&Outgoing::new(&body).timestamp(now)).expect("signs"));
    let github_req = request(github.sign(&Outgoing::new(&body)).expect("signs"));
    let stripe_view = view_of(&stripe_req, &body);
    let github_view = view_of(&github_req, &body);
    assert!(stripe.verify(&stripe_view, now).is_ok());
    assert!(github.verify(&github_view, now).is_ok());

    let mut group = c.benchmark_group("presets/1KiB");
    group
        .throughput(Throughput::Bytes(1024))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("stripe", |b| b.iter(|| stripe.verify(black_box(&stripe_view), now).is_ok()));
    group.bench_function("github", |b| b.iter(|| github.verify(black_box(&github_view), now).is_ok()));
    group.finish();
}

criterion_group!(benches, standard, others);
criterion_main!(benches);
