//! A catalog of hostile requests, each run through a real `WebhookService` (body gate,
//! verification, problem+json answer) for several presets (Twilio with a Webhooks shared
//! key among them, behind a public origin): the expected status and problem type, no
//! panic, and no secret (or right signature) in any answer.

#![cfg(feature = "tower")]

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hookguard::{
    clock::ManualClock,
    guard::Guard,
    inbox::MemoryInbox,
    layer::WebhookService,
    problem::TYPE_BASE,
    providers::{self, Preset},
    verify::Outgoing,
};
use http::{HeaderName, HeaderValue, Request};
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use tokio::sync::mpsc;
use tower::ServiceExt as _;

const NOW: i64 = 1_700_000_000;
const LIMIT: usize = 64 * 1024;
const READ_TIMEOUT: Duration = Duration::from_millis(300);

const SW: &str = "standard-webhooks";
const STRIPE: &str = "stripe";
const GITHUB: &str = "github";
const SLACK: &str = "slack";
/// Twilio with an auth token and a Webhooks Setting's shared key, signing as the Setting
/// (HMAC-SHA256, `X-Twilio-Webhooks-Signature-Settings`).
const TWILIO: &str = "twilio";
/// The public origin the guard is told; Twilio signs the URL it calls.
const ORIGIN: &str = "https://hooks.example.com";
const TWILIO_SHARED_KEY: &str = "hostile-twilio-shared-key";
const SETTINGS: &str = "x-twilio-webhooks-signature-settings";

fn secret(preset: &str) -> &'static str {
    match preset {
        SW => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        STRIPE => "whsec_hostile_stripe_secret",
        GITHUB => "It's a Secret to Everybody",
        SLACK => "8f742231b10e8888abcd99yyyzzz85a5",
        TWILIO => "hostile-twilio-auth-token",
        other => panic!("no secret for {other}"),
    }
}

fn scheme(preset: &str) -> Box<dyn Preset> {
    if preset == TWILIO {
        let twilio = providers::twilio::scheme(secret(TWILIO))
            .and_then(|s| s.with_shared_key(TWILIO_SHARED_KEY))
            .and_then(|s| s.sign_with_shared_key("hostile-setting"))
            .unwrap();
        return Box::new(twilio);
    }
    providers::by_name(preset, &[secret(preset)]).unwrap()
}

/// The URL the guard builds for a request to `/hooks` (Twilio signs it).
fn hooks_url() -> String {
    format!("{ORIGIN}/hooks")
}

/// The headers `preset` signs `body` with at `ts` (id `msg_1`).
fn signed_at(preset: &str, body: &[u8], ts: i64) -> Vec<(HeaderName, Vec<u8>)> {
    let at = time::OffsetDateTime::from_unix_timestamp(ts).unwrap();
    let url = hooks_url();
    let mut headers: Vec<(HeaderName, Vec<u8>)> = scheme(preset)
        .sign(&Outgoing::new(body).id("msg_1").timestamp(at).url(&url))
        .unwrap()
        .into_iter()
        .map(|(n, v)| (n, v.as_bytes().to_vec()))
        .collect();
    if preset == GITHUB {
        headers.push((HeaderName::from_static("x-github-delivery"), b"d-1".to_vec()));
    }
    headers
}

fn signed(preset: &str, body: &[u8]) -> Vec<(HeaderName, Vec<u8>)> {
    signed_at(preset, body, NOW)
}

/// The signed headers with `name`'s value replaced.
fn with(
    mut headers: Vec<(HeaderName, Vec<u8>)>,
    name: &str,
    value: impl Into<Vec<u8>>,
) -> Vec<(HeaderName, Vec<u8>)> {
    let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
    headers.retain(|(n, _)| *n != name);
    headers.push((name, value.into()));
    headers
}

/// The signed headers with `name`'s value changed by `f`.
fn map(
    headers: Vec<(HeaderName, Vec<u8>)>,
    name: &str,
    f: impl Fn(&str) -> String,
) -> Vec<(HeaderName, Vec<u8>)> {
    headers
        .into_iter()
        .map(|(n, v)| {
            if n.as_str() == name {
                let text = f(std::str::from_utf8(&v).unwrap());
                (n, text.into_bytes())
            } else {
                (n, v)
            }
        })
        .collect()
}

/// A body whose Standard Webhooks signature (at NOW) holds `+` or `/`, so that the
/// URL-safe alphabet differs from the standard one.
fn body_with_b64_symbols() -> (Vec<u8>, String) {
    for n in 0.. {
        let body = format!("{{\"n\":{n}}}").into_bytes();
        let sig = header(&signed(SW, &body), "webhook-signature");
        if sig.contains('+') && sig.contains('/') {
            return (body, sig);
        }
    }
    unreachable!()
}

fn header(headers: &[(HeaderName, Vec<u8>)], name: &str) -> String {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8(v.clone()).unwrap()).unwrap()
}

/// How the body arrives.
enum Arrives {
    /// All at once, then the end.
    Whole(Vec<u8>),
    /// `count` chunks of `chunk`, no length declared.
    Chunks { chunk: Vec<u8>, count: usize },
    /// `prefix`, then nothing more and no end (the sender keeps the connection).
    Stall(Vec<u8>),
    /// One byte every 50 ms, `len` bytes.
    Trickle(usize),
}

/// A body fed through a channel, as a server's body is fed by the connection.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// Starts feeding the body; the returned handle keeps a stalled sender alive.
fn feed(arrives: Arrives) -> (ChannelBody, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(async move {
        match arrives {
            Arrives::Whole(bytes) => {
                if !bytes.is_empty() {
                    let _ = tx.send(Ok(Bytes::from(bytes))).await;
                }
            }
            Arrives::Chunks { chunk, count } => {
                let chunk = Bytes::from(chunk);
                for _ in 0..count {
                    if tx.send(Ok(chunk.clone())).await.is_err() {
                        return; // the reader gave up: stop sending
                    }
                }
            }
            Arrives::Stall(prefix) => {
                let _ = tx.send(Ok(Bytes::from(prefix))).await;
                std::future::pending::<()>().await;
            }
            Arrives::Trickle(len) => {
                for _ in 0..len {
                    if tx.send(Ok(Bytes::from_static(b"x"))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    (ChannelBody(rx), task)
}

struct Case {
    name: &'static str,
    preset: &'static str,
    headers: Vec<(HeaderName, Vec<u8>)>,
    body: Arrives,
    status: u16,
    /// The problem code (`type` is [`TYPE_BASE`] + code); `None` for an accepted delivery.
    problem: Option<&'static str>,
}

fn case(
    name: &'static str,
    preset: &'static str,
    headers: Vec<(HeaderName, Vec<u8>)>,
    body: Arrives,
    status: u16,
    problem: Option<&'static str>,
) -> Case {
    Case { name, preset, headers, body, status, problem }
}

fn catalog() -> Vec<Case> {
    use Arrives::{Chunks, Stall, Trickle, Whole};
    let body = br#"{"type":"invoice.paid","amount":4200}"#.to_vec();
    let binary: Vec<u8> = (0..=255_u8).rev().cycle().take(4096).collect();
    let sw = || signed(SW, &body);
    let gh = || signed(GITHUB, &body);
    let st = || signed(STRIPE, &body);
    let sl = || signed(SLACK, &body);
    let form = b"CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309".to_vec();
    let tw = || signed(TWILIO, &form);
    let sw_sig = header(&sw(), "webhook-signature");
    let gh_sig = header(&gh(), "x-hub-signature-256");
    let (b64_body, b64_sig) = body_with_b64_symbols();
    let w = |b: &[u8]| Whole(b.to_vec());

    let mut cases = vec![
        // Sanity: the untouched requests are accepted.
        case("valid standard-webhooks", SW, sw(), w(&body), 202, None),
        case("valid github", GITHUB, gh(), w(&body), 202, None),
        case("valid stripe", STRIPE, st(), w(&body), 202, None),
        case("valid slack", SLACK, sl(), w(&body), 202, None),
        case("valid twilio, shared key HMAC-SHA256", TWILIO, tw(), w(&form), 202, None),
        // Twilio's signature settings header: never a downgrade, strictly read.
        case(
            "twilio: settings header removed (SHA-256 signature checked against the auth token)",
            TWILIO,
            tw().into_iter().filter(|(n, _)| n != SETTINGS).collect(),
            w(&form),
            401,
            Some("signature-mismatch"),
        ),
        case(
            "twilio: settings header says HMAC_SHA1",
            TWILIO,
            with(tw(), SETTINGS, "key=hostile-setting,algorithm=HMAC_SHA1"),
            w(&form),
            401,
            Some("signature-mismatch"),
        ),
        case(
            "twilio: unknown algorithm",
            TWILIO,
            with(tw(), SETTINGS, "key=hostile-setting,algorithm=HMAC_MD5"),
            w(&form),
            400,
            Some("unsupported-algorithm"),
        ),
        case(
            "twilio: settings header without algorithm",
            TWILIO,
            with(tw(), SETTINGS, "key=hostile-setting"),
            w(&form),
            400,
            Some("malformed-header"),
        ),
        case(
            "twilio: settings header empty",
            TWILIO,
            with(tw(), SETTINGS, ""),
            w(&form),
            400,
            Some("malformed-header"),
        ),
        case(
            "twilio: settings header not UTF-8",
            TWILIO,
            with(tw(), SETTINGS, b"key=\xff,algorithm=HMAC_SHA256".to_vec()),
            w(&form),
            400,
            Some("malformed-header"),
        ),
        case(
            "twilio: settings header oversized",
            TWILIO,
            with(tw(), SETTINGS, format!("key={},algorithm=HMAC_SHA256", "k".repeat(4096))),
            w(&form),
            400,
            Some("header-too-large"),
        ),
        case(
            "twilio: settings header twice",
            TWILIO,
            {
                let mut headers = tw();
                headers.push((HeaderName::from_static(SETTINGS), b"key=x,algorithm=HMAC_SHA256".to_vec()));
                headers
            },
            w(&form),
            400,
            Some("malformed-header"),
        ),
        case(
            "twilio: shared-key signature, form changed",
            TWILIO,
            tw(),
            w(b"CallSid=CA1234567890ABCDE&Digits=9999&From=%2B14158675309"),
            401,
            Some("signature-mismatch"),
        ),
        // Bodies.
        case("empty body, signed", GITHUB, signed(GITHUB, b""), w(b""), 202, None),
        case("empty body, signature of another body", GITHUB, gh(), w(b""), 401, Some("signature-mismatch")),
        case("empty body, no headers", SW, vec![], w(b""), 401, Some("missing-signature")),
        case("binary body (not UTF-8), signed", SW, signed(SW, &binary), w(&binary), 202, None),
        case("binary body, signed, stripe", STRIPE, signed(STRIPE, &binary), w(&binary), 202, None),
        case("binary body, unsigned", GITHUB, vec![], w(&binary), 401, Some("missing-signature")),
        // Header values that are not UTF-8 (obs-text bytes).
        case(
            "non-UTF-8 signature",
            SW,
            with(sw(), "webhook-signature", b"v1,\xff\xfe\xfd".to_vec()),
            w(&body),
            400,
            Some("malformed-signature"),
        ),
        case(
            "non-UTF-8 signature, github",
            GITHUB,
            with(gh(), "x-hub-signature-256", b"sha256=\xe9\xe9".to_vec()),
            w(&body),
            400,
            Some("malformed-signature"),
        ),
        case(
            "non-UTF-8 timestamp",
            SW,
            with(sw(), "webhook-timestamp", b"17000\xff0000".to_vec()),
            w(&body),
            400,
            Some("malformed-header"),
        ),
        case(
            "non-UTF-8 id",
            SW,
            with(sw(), "webhook-id", b"msg_\xff".to_vec()),
            w(&body),
            400,
            Some("malformed-header"),
        ),
        // Duplicated signature headers: every value is read.
        case(
            "duplicated signature headers, the second valid",
            GITHUB,
            [
                vec![(
                    HeaderName::from_static("x-hub-signature-256"),
                    format!("sha256={}", "0".repeat(64)).into_bytes(),
                )],
                gh(),
            ]
            .concat(),
            w(&body),
            202,
            None,
        ),
        case(
            "duplicated signature headers, none valid",
            GITHUB,
            [
                with(gh(), "x-hub-signature-256", format!("sha256={}", "0".repeat(64))),
                vec![(
                    HeaderName::from_static("x-hub-signature-256"),
                    format!("sha256={}", "1".repeat(64)).into_bytes(),
                )],
            ]
            .concat(),
            w(&body),
            401,
            Some("signature-mismatch"),
        ),
        // Thousands of signature entries: refused after MAX_SIGNATURES, in one value or many.
        case(
            "thousands of entries in one value",
            SW,
            with(sw(), "webhook-signature", vec!["v1,AA"; 1300].join(" ")),
            w(&body),
            400,
            Some("too-many-signatures"),
        ),
        case(
            "thousands of entries, valid one last",
            SW,
            with(sw(), "webhook-signature", format!("{} {sw_sig}", vec!["v1,AA"; 1300].join(" "))),
            w(&body),
            400,
            Some("too-many-signatures"),
        ),
        case(
            "thousands of duplicated signature headers",
            GITHUB,
            [gh(), vec![(HeaderName::from_static("x-hub-signature-256"), b"sha256=00".to_vec()); 2000]]
                .concat(),
            w(&body),
            400,
            Some("too-many-signatures"),
        ),
        case(
            "thousands of stripe pairs",
            STRIPE,
            map(st(), "stripe-signature", |v| format!("{v}{}", ",v1=00".repeat(1000))),
            w(&body),
            400,
            Some("too-many-signatures"),
        ),
        case(
            "huge stripe header",
            STRIPE,
            map(st(), "stripe-signature", |v| format!("{v}{}", ",v0=00".repeat(2000))),
            w(&body),
            400,
            Some("header-too-large"),
        ),
        // Huge header values.
        case(
            "huge signature header",
            SW,
            with(sw(), "webhook-signature", format!("v1,{}", "A".repeat(20_000))),
            w(&body),
            400,
            Some("header-too-large"),
        ),
        case(
            "huge signature header, github",
            GITHUB,
            with(gh(), "x-hub-signature-256", format!("sha256={}", "a".repeat(40_000))),
            w(&body),
            400,
            Some("header-too-large"),
        ),
        case(
            "huge timestamp header",
            SW,
            with(sw(), "webhook-timestamp", "1".repeat(40_000)),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "huge id header",
            SW,
            with(sw(), "webhook-id", "i".repeat(40_000)),
            w(&body),
            401,
            Some("signature-mismatch"),
        ),
        // Past the guard's header limit (64 KiB in all): refused before anything is parsed.
        case(
            "huge id header, past the header limit",
            SW,
            with(sw(), "webhook-id", "i".repeat(100_000)),
            w(&body),
            431,
            Some("headers-too-large"),
        ),
        case(
            "huge signature header, past the header limit",
            GITHUB,
            with(gh(), "x-hub-signature-256", format!("sha256={}", "a".repeat(200_000))),
            w(&body),
            431,
            Some("headers-too-large"),
        ),
        case(
            "thousands of headers, past the header limit",
            GITHUB,
            [gh(), vec![(HeaderName::from_static("x-hub-signature-256"), b"sha256=00".to_vec()); 5000]]
                .concat(),
            w(&body),
            431,
            Some("headers-too-large"),
        ),
        // Timestamps.
        case(
            "timestamp i64::MIN",
            SW,
            with(sw(), "webhook-timestamp", i64::MIN.to_string()),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "timestamp i64::MAX",
            SW,
            with(sw(), "webhook-timestamp", i64::MAX.to_string()),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "timestamp negative",
            SW,
            with(sw(), "webhook-timestamp", "-1"),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "timestamp float",
            SW,
            with(sw(), "webhook-timestamp", format!("{NOW}.5")),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "timestamp exponent",
            SW,
            with(sw(), "webhook-timestamp", "1.7e9"),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "timestamp leading +",
            SW,
            with(sw(), "webhook-timestamp", format!("+{NOW}")),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "timestamp inner whitespace",
            SW,
            with(sw(), "webhook-timestamp", format!("{} {}", NOW / 10, NOW % 10)),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        // HTTP parsers strip outer whitespace; a value that still has it is malformed.
        case(
            "timestamp outer whitespace",
            SW,
            with(sw(), "webhook-timestamp", format!(" {NOW}\t")),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "timestamp in milliseconds",
            SW,
            with(sw(), "webhook-timestamp", (NOW * 1000).to_string()),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "timestamp in milliseconds, stripe",
            STRIPE,
            map(st(), "stripe-signature", |v| {
                v.replacen(&format!("t={NOW}"), &format!("t={}", NOW * 1000), 1)
            }),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "timestamp in milliseconds, slack",
            SLACK,
            with(sl(), "x-slack-request-timestamp", (NOW * 1000).to_string()),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "timestamp empty",
            SW,
            with(sw(), "webhook-timestamp", ""),
            w(&body),
            400,
            Some("malformed-timestamp"),
        ),
        case(
            "timestamp too old",
            SW,
            signed_at(SW, &body, NOW - 301),
            w(&body),
            401,
            Some("timestamp-too-old"),
        ),
        case(
            "timestamp in the future",
            SW,
            signed_at(SW, &body, NOW + 301),
            w(&body),
            401,
            Some("timestamp-in-future"),
        ),
        case(
            "timestamp too old, stripe",
            STRIPE,
            signed_at(STRIPE, &body, NOW - 301),
            w(&body),
            401,
            Some("timestamp-too-old"),
        ),
        case(
            "timestamp changed after signing",
            SLACK,
            with(sl(), "x-slack-request-timestamp", (NOW - 1).to_string()),
            w(&body),
            401,
            Some("signature-mismatch"),
        ),
        // Encodings.
        case("base64 with padding", SW, with(sw(), "webhook-signature", sw_sig.clone()), w(&body), 202, None),
        case(
            "base64 without padding",
            SW,
            with(sw(), "webhook-signature", sw_sig.trim_end_matches('=').to_owned()),
            w(&body),
            202,
            None,
        ),
        case("base64, standard alphabet with + and /", SW, signed(SW, &b64_body), w(&b64_body), 202, None),
        case(
            "base64, URL-safe alphabet",
            SW,
            with(signed(SW, &b64_body), "webhook-signature", b64_sig.replace('+', "-").replace('/', "_")),
            w(&b64_body),
            400,
            Some("malformed-signature"),
        ),
        case(
            "hex in upper case",
            GITHUB,
            with(gh(), "x-hub-signature-256", gh_sig.to_uppercase().replace("SHA256=", "sha256=")),
            w(&body),
            202,
            None,
        ),
        case(
            "hex in mixed case",
            STRIPE,
            map(st(), "stripe-signature", |v| v.replace('a', "A")),
            w(&body),
            202,
            None,
        ),
        case(
            "hex with odd length",
            GITHUB,
            with(gh(), "x-hub-signature-256", &gh_sig[..gh_sig.len() - 1]),
            w(&body),
            400,
            Some("malformed-signature"),
        ),
        // Truncated and wrong signatures.
        case(
            "truncated hex signature",
            GITHUB,
            with(gh(), "x-hub-signature-256", &gh_sig[..gh_sig.len() - 2]),
            w(&body),
            401,
            Some("signature-mismatch"),
        ),
        case(
            "truncated base64 signature",
            SW,
            with(sw(), "webhook-signature", &sw_sig[..sw_sig.len() - 4]),
            w(&body),
            401,
            Some("signature-mismatch"),
        ),
        case(
            "signature prefix only",
            GITHUB,
            with(gh(), "x-hub-signature-256", "sha256="),
            w(&body),
            400,
            Some("malformed-signature"),
        ),
        case(
            "right length, wrong value",
            GITHUB,
            with(gh(), "x-hub-signature-256", format!("sha256={}", "ab".repeat(32))),
            w(&body),
            401,
            Some("signature-mismatch"),
        ),
        case(
            "right length, wrong value, base64",
            SW,
            with(sw(), "webhook-signature", format!("v1,{}=", "A".repeat(43))),
            w(&body),
            401,
            Some("signature-mismatch"),
        ),
        case(
            "too long for any MAC",
            GITHUB,
            with(gh(), "x-hub-signature-256", format!("sha256={}", "ab".repeat(65))),
            w(&body),
            400,
            Some("malformed-signature"),
        ),
        case(
            "signature of another version only",
            SW,
            with(sw(), "webhook-signature", sw_sig.replace("v1,", "v2,")),
            w(&body),
            401,
            Some("missing-signature"),
        ),
        // Body gate.
        case(
            "chunked body past the limit",
            GITHUB,
            gh(),
            Chunks { chunk: vec![b'a'; 1024], count: 1000 },
            413,
            Some("body-too-large"),
        ),
        case(
            "chunked body just past the limit",
            GITHUB,
            gh(),
            Chunks { chunk: vec![b'a'; 1025], count: 64 },
            413,
            Some("body-too-large"),
        ),
        case(
            "chunked body at the limit, signed",
            GITHUB,
            signed(GITHUB, &vec![b'a'; LIMIT]),
            Chunks { chunk: vec![b'a'; 1024], count: 64 },
            202,
            None,
        ),
        case(
            "declared length past the limit",
            GITHUB,
            with(gh(), "content-length", "18446744073709551615"),
            w(&body),
            413,
            Some("body-too-large"),
        ),
        case("slow body: stalls", GITHUB, gh(), Stall(body[..10].to_vec()), 408, Some("body-timeout")),
        case("slow body: trickles", GITHUB, gh(), Trickle(100), 408, Some("body-timeout")),
    ];
    // Signature headers absent or empty, for each preset.
    for (preset, name) in [
        (SW, "webhook-signature"),
        (GITHUB, "x-hub-signature-256"),
        (STRIPE, "stripe-signature"),
        (SLACK, "x-slack-signature"),
        (TWILIO, "x-twilio-signature"),
    ] {
        let all = signed(preset, &body);
        let without: Vec<_> = all.iter().filter(|(n, _)| n != name).cloned().collect();
        cases.push(case(
            "signature header absent",
            preset,
            without,
            w(&body),
            401,
            Some("missing-signature"),
        ));
        cases.push(case(
            "signature header empty",
            preset,
            with(all, name, ""),
            w(&body),
            401,
            Some("missing-signature"),
        ));
    }
    cases
}

async fn run(case: Case) -> (u16, http::HeaderMap, Bytes) {
    let guard = Guard::builder("hostile", scheme(case.preset))
        .inbox(MemoryInbox::new())
        .clock(ManualClock::at_unix(NOW))
        .body_limit(LIMIT)
        .read_timeout(READ_TIMEOUT)
        .public_origin(ORIGIN)
        .build();
    let mut req = Request::post("/hooks");
    for (name, value) in &case.headers {
        req = req.header(name, HeaderValue::from_bytes(value).unwrap());
    }
    let (body, feeder) = feed(case.body);
    let res = WebhookService::new(guard).oneshot(req.body(body).unwrap()).await.unwrap();
    feeder.abort();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes)
}

#[tokio::test]
async fn hostile_catalog() {
    let mut failures = Vec::new();
    for case in catalog() {
        let (name, preset, want_status, want_problem) = (case.name, case.preset, case.status, case.problem);
        let url = hooks_url();
        let right = scheme(preset).sign(&Outgoing::new(b"").url(&url)).ok();
        let started = std::time::Instant::now();
        let (status, headers, body) = run(case).await;
        let label = format!("{preset}: {name}");
        assert!(started.elapsed() < Duration::from_secs(5), "{label}: took {:?}", started.elapsed());
        if status != want_status {
            failures.push(format!(
                "{label}: status {status}, want {want_status}; body {}",
                String::from_utf8_lossy(&body)
            ));
            continue;
        }
        match want_problem {
            Some(code) => {
                assert_eq!(headers["content-type"], "application/problem+json", "{label}");
                let json: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{label}: {e}"));
                let want_type = format!("{TYPE_BASE}{code}");
                if json["type"] != want_type.as_str() {
                    failures.push(format!("{label}: type {}, want {want_type}", json["type"]));
                }
                assert_eq!(json["status"], want_status, "{label}");
            }
            None => assert!(
                headers.get("content-type").is_none_or(|v| v != "application/problem+json"),
                "{label}"
            ),
        }
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains(secret(preset)), "{label}: the secret is in the answer");
        assert!(!text.contains(TWILIO_SHARED_KEY), "{label}: the shared key is in the answer");
        // Nor a signature the scheme would write (for the empty body, the one it can know).
        for (_, value) in right.into_iter().flatten() {
            let value = value.to_str().unwrap();
            if value.len() > 16 {
                assert!(!text.contains(value), "{label}: a signature is in the answer");
            }
        }
    }
    assert!(failures.is_empty(), "{} of the catalog failed:\n{}", failures.len(), failures.join("\n"));
}
