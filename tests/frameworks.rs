//! One table of cases, run over real loopback HTTP against an axum server
//! (`WebhookService` / `VerifyLayer`) and an actix-web server (`webhook_service` /
//! `actix::Verify`) built from the same guards: every case must give the same status,
//! problem `type`, body and handler/inbox effect on both. A case added to `cases()` runs
//! on both frameworks.
#![cfg(all(feature = "axum", feature = "actix"))]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt as _;
use hookguard::{
    clock::ManualClock,
    guard::Guard,
    handshake::{SlackUrlVerification, TrelloHead},
    inbox::{Inbox, MemoryInbox},
    layer::{VerifyLayer, WebhookService},
    providers::{slack, standard_webhooks, trello, twilio},
    replay::{Mark, MemoryReplayStore, ReplayStore as _},
    verify::{Outgoing, Sign},
};
use http::{HeaderName, HeaderValue, Method};
use time::OffsetDateTime;
use tokio::{io::AsyncWriteExt as _, sync::mpsc};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// `/hooks/token`'s shared token, sent as it is in [`TOKEN_HEADER`].
const TOKEN: &str = "s3cret-shared-token";
const TOKEN_HEADER: &str = "x-acme-token";
const TRELLO_SECRET: &str = "trello-app-secret";
/// The callback URL `/hooks/trello` was registered with: Trello signs it after the body.
const TRELLO_CALLBACK: &str = "https://hooks.example.com/hooks/trello";
const TWILIO_TOKEN: &str = "twilio-auth-token";
/// `/hooks/twilio`'s public origin: the URL Twilio signs is this, the path and the query.
const PUBLIC_ORIGIN: &str = "https://hooks.example.com";
const BODY_LIMIT: usize = 4096;
/// `/hooks/tight`'s and `/hooks/tight-mw`'s header limit: far below what hyper (about
/// 400 KiB of buffered head) and actix-web (128 KiB) take, so that the guard answers a
/// head over it, not the framework.
const HEADER_LIMIT: usize = 1024;
const READ_TIMEOUT: Duration = Duration::from_millis(300);
/// `/hooks/held`'s reservation lease.
const HELD_LEASE: Duration = Duration::from_secs(30);
/// The header that tells `/hooks/held`'s handler to hold the request (not signed: the
/// scheme does not see it).
const HOLD: &str = "x-test-hold";

// ---------------------------------------------------------------------------------------
// The table.

/// How the body is sent.
enum Body {
    /// With a `Content-Length`.
    Full(Vec<u8>),
    /// `Transfer-Encoding: chunked`, these chunks.
    Chunked(Vec<Vec<u8>>),
    /// Chunked: one chunk, then nothing more (the connection stays open).
    Stalled(Vec<u8>),
}

struct Req {
    method: Method,
    path: &'static str,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Body,
}

/// One step of a case.
enum Step {
    /// Send; the answer is not checked.
    Send(Req),
    /// Send and check the answer's status.
    Expect(Req, u16),
    /// Send to `/hooks/held` in the background, marked to be held, and wait until its
    /// handler runs; it answers when released (`Release`, or with 200 once the case was
    /// checked).
    Hold(Req),
    /// Let the oldest held handler answer with this status, and check that its sender
    /// got it.
    Release(u16),
    /// Reserve this replay key in `/hooks/held`'s store directly, as a replica killed
    /// mid-handler leaves it (nothing cancels it).
    Killed(&'static str),
    /// Move the clock of `/hooks/held`'s replay store.
    Advance(Duration),
    /// Send to `/hooks/held` marked to be held, written on a raw connection of its own, and
    /// wait until its handler runs; then reset the connection (the sender gave up) and wait
    /// until the server dropped the handler and the reservation was cancelled.
    HangUp(Req),
}

fn sends(reqs: Vec<Req>) -> Vec<Step> {
    reqs.into_iter().map(Step::Send).collect()
}

/// What the answer's body must show.
enum Check {
    /// An `application/problem+json` body with this `type` code.
    Problem(&'static str),
    /// A body containing this text.
    Contains(&'static str),
    /// No body and no content type (an accepted delivery: the status says it all).
    Empty,
    /// Exactly the bytes of the (last) request: the verified bytes reached the handler
    /// unchanged.
    Echo,
}

struct Case {
    name: &'static str,
    /// Steps; the last one (a `Send`) is checked, earlier ones set up state.
    steps: fn() -> Vec<Step>,
    status: u16,
    check: Check,
    /// How many webhooks the inboxes gained from the last request.
    inbox: usize,
    /// How many times an application handler ran for the last request.
    handler: usize,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "valid, terminal: kept in the inbox",
            steps: || sends(vec![signed("/hooks/accept", EVENT, "msg_valid", now())]),
            status: 202,
            check: Check::Empty,
            inbox: 1,
            handler: 0,
        },
        Case {
            name: "valid, middleware: the handler gets the bytes unchanged",
            steps: || sends(vec![signed("/hooks/verify", ODD_BYTES, "msg_echo", now())]),
            status: 200,
            check: Check::Echo,
            inbox: 0,
            handler: 1,
        },
        Case {
            name: "shared token, middleware: the handler does not see the token's header",
            steps: || {
                let token = (HeaderName::from_static(TOKEN_HEADER), HeaderValue::from_static(TOKEN));
                sends(vec![req(Method::POST, "/hooks/token", vec![token], Body::Full(EVENT.to_vec()))])
            },
            status: 200,
            check: Check::Contains("no token"),
            inbox: 0,
            handler: 1,
        },
        Case {
            name: "typed JSON extractor",
            steps: || sends(vec![signed("/hooks/typed", EVENT, "msg_typed", now())]),
            status: 200,
            check: Check::Contains("invoice.paid"),
            inbox: 0,
            handler: 1,
        },
        Case {
            name: "typed JSON that does not fit: 422",
            steps: || sends(vec![signed("/hooks/typed", br#"{"kind":1}"#, "msg_untyped", now())]),
            status: 422,
            check: Check::Problem("unprocessable-body"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "unsigned",
            steps: || sends(vec![req(Method::POST, "/hooks/accept", vec![], Body::Full(EVENT.to_vec()))]),
            status: 401,
            check: Check::Problem("missing-signature"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "tampered body",
            steps: || {
                let mut r = signed("/hooks/accept", EVENT, "msg_tampered", now());
                r.body = Body::Full(
                    String::from_utf8_lossy(EVENT).replace("invoice.paid", "invoice.void").into_bytes(),
                );
                sends(vec![r])
            },
            status: 401,
            check: Check::Problem("signature-mismatch"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "tampered body, middleware: the handler does not run",
            steps: || {
                let mut r = signed("/hooks/verify", EVENT, "msg_tampered_mw", now());
                r.body = Body::Full(b"{}".to_vec());
                sends(vec![r])
            },
            status: 401,
            check: Check::Problem("signature-mismatch"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "stale timestamp",
            steps: || {
                sends(vec![signed("/hooks/accept", EVENT, "msg_stale", now() - time::Duration::hours(1))])
            },
            status: 401,
            check: Check::Problem("timestamp-too-old"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "replayed verbatim to the middleware: answered, handler not run again",
            steps: || {
                let ts = now();
                sends(vec![
                    signed("/hooks/verify", EVENT, "msg_replay", ts),
                    signed("/hooks/verify", EVENT, "msg_replay", ts),
                ])
            },
            status: 200,
            check: Check::Contains("duplicate"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "duplicate (provider retry, re-signed later with the same id): not queued again",
            steps: || {
                sends(vec![
                    signed("/hooks/accept", EVENT, "msg_dup", now() - time::Duration::seconds(30)),
                    signed("/hooks/accept", EVENT, "msg_dup", now()),
                ])
            },
            status: 200,
            check: Check::Contains("duplicate"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "handler 5xx releases the replay mark: the retry gets through",
            steps: || {
                let ts = now();
                sends(vec![
                    signed("/hooks/flaky", EVENT, "msg_flaky", ts),
                    signed("/hooks/flaky", EVENT, "msg_flaky", ts),
                ])
            },
            status: 200,
            check: Check::Contains("ok on retry"),
            inbox: 0,
            handler: 1,
        },
        Case {
            name: "oversized, declared Content-Length",
            steps: || sends(vec![signed("/hooks/accept", &big(2 * BODY_LIMIT), "msg_big", now())]),
            status: 413,
            check: Check::Problem("body-too-large"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "oversized, middleware",
            steps: || sends(vec![signed("/hooks/verify", &big(2 * BODY_LIMIT), "msg_big_mw", now())]),
            status: 413,
            check: Check::Problem("body-too-large"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "chunked oversized (no Content-Length)",
            steps: || {
                let mut r = signed("/hooks/accept", b"", "msg_chunked", now());
                r.body = Body::Chunked(vec![vec![b'x'; BODY_LIMIT / 2]; 4]);
                sends(vec![r])
            },
            status: 413,
            check: Check::Problem("body-too-large"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "chunked oversized (no Content-Length), middleware: the handler does not run",
            steps: || {
                let mut r = signed("/hooks/verify", b"", "msg_chunked_mw", now());
                r.body = Body::Chunked(vec![vec![b'x'; BODY_LIMIT / 2]; 4]);
                sends(vec![r])
            },
            status: 413,
            check: Check::Problem("body-too-large"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "chunked within the limit is read whole",
            steps: || {
                let mut r = signed("/hooks/verify", EVENT, "msg_chunked_ok", now());
                r.body = Body::Chunked(EVENT.chunks(7).map(<[u8]>::to_vec).collect());
                sends(vec![r])
            },
            status: 200,
            check: Check::Contains(r#""type":"invoice.paid""#),
            inbox: 0,
            handler: 1,
        },
        Case {
            name: "body not received in time",
            steps: || {
                let mut r = signed("/hooks/accept", EVENT, "msg_slow", now());
                r.body = Body::Stalled(EVENT[..10].to_vec());
                sends(vec![r])
            },
            status: 408,
            check: Check::Problem("body-timeout"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "body not received in time, middleware: the handler does not run",
            steps: || {
                let mut r = signed("/hooks/verify", EVENT, "msg_slow_mw", now());
                r.body = Body::Stalled(EVENT[..10].to_vec());
                sends(vec![r])
            },
            status: 408,
            check: Check::Problem("body-timeout"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "handshake: Meta's GET challenge answered before verification",
            steps: || {
                let uri = "/hooks/meta?hub.mode=subscribe&hub.verify_token=meta-verify-token&hub.challenge=1158201444";
                sends(vec![req(Method::GET, uri, vec![], Body::Full(Vec::new()))])
            },
            status: 200,
            check: Check::Contains("1158201444"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "handshake: Meta's GET with a wrong verify token is refused as a problem",
            steps: || {
                let uri = "/hooks/meta?hub.mode=subscribe&hub.verify_token=a-guess&hub.challenge=1158201444";
                sends(vec![req(Method::GET, uri, vec![], Body::Full(Vec::new()))])
            },
            status: 403,
            check: Check::Problem("handshake-refused"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "handshake: Slack url_verification answered, not queued",
            steps: || sends(vec![slack_signed("/hooks/slack", SLACK_CHALLENGE)]),
            status: 200,
            check: Check::Contains("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "inbox full: 503 with Retry-After, mark released",
            steps: || {
                sends(vec![
                    signed("/hooks/full", EVENT, "msg_fill", now()),
                    signed("/hooks/full", EVENT, "msg_overflow", now()),
                ])
            },
            status: 503,
            check: Check::Problem("inbox-unavailable"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "copy while the first is still being handled (middleware): 409 + Retry-After, handler not run",
            steps: || {
                let ts = now();
                vec![
                    Step::Hold(signed("/hooks/held", EVENT, "msg_held", ts)),
                    Step::Send(signed("/hooks/held", EVENT, "msg_held", ts)),
                ]
            },
            status: 409,
            check: Check::Problem("delivery-in-progress"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "copy after the first was handled (middleware): 200 duplicate",
            steps: || {
                let ts = now();
                vec![
                    Step::Hold(signed("/hooks/held", EVENT, "msg_held_ok", ts)),
                    Step::Release(200),
                    Step::Send(signed("/hooks/held", EVENT, "msg_held_ok", ts)),
                ]
            },
            status: 200,
            check: Check::Contains("duplicate"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "the first fails (5xx) after its copy got 409: the copy's retry is handled",
            steps: || {
                let ts = now();
                vec![
                    Step::Hold(signed("/hooks/held", EVENT, "msg_held_5xx", ts)),
                    Step::Expect(signed("/hooks/held", EVENT, "msg_held_5xx", ts), 409),
                    Step::Release(500),
                    Step::Send(signed("/hooks/held", EVENT, "msg_held_5xx", ts)),
                ]
            },
            status: 200,
            check: Check::Contains("handled"),
            inbox: 0,
            handler: 1,
        },
        Case {
            name: "the handler refuses (4xx): the sender's retry reaches it again, not 200 duplicate",
            steps: || {
                let ts = now();
                vec![
                    Step::Hold(signed("/hooks/held", EVENT, "msg_held_4xx", ts)),
                    Step::Release(422),
                    Step::Send(signed("/hooks/held", EVENT, "msg_held_4xx", ts)),
                ]
            },
            status: 200,
            check: Check::Contains("handled"),
            inbox: 0,
            handler: 1,
        },
        Case {
            name: "a reservation left by a killed replica: 409 until its lease runs out, then handled",
            steps: || {
                let ts = now();
                vec![
                    Step::Killed("held:msg_killed"),
                    Step::Expect(signed("/hooks/held", EVENT, "msg_killed", ts), 409),
                    Step::Advance(HELD_LEASE - Duration::from_secs(1)),
                    Step::Expect(signed("/hooks/held", EVENT, "msg_killed", ts), 409),
                    Step::Advance(Duration::from_secs(2)),
                    Step::Send(signed("/hooks/held", EVENT, "msg_killed", ts)),
                ]
            },
            status: 200,
            check: Check::Contains("handled"),
            inbox: 0,
            handler: 1,
        },
        Case {
            name: "the sender hangs up while the handler runs (middleware): the retry is handled",
            steps: || {
                let ts = now();
                vec![
                    Step::HangUp(signed("/hooks/held", EVENT, "msg_hung_up", ts)),
                    Step::Send(signed("/hooks/held", EVENT, "msg_hung_up", ts)),
                ]
            },
            status: 200,
            check: Check::Contains("handled"),
            inbox: 0,
            handler: 1,
        },
        Case {
            name: "headers over the guard's limit, terminal: 431, not queued",
            steps: || sends(vec![padded(signed("/hooks/tight", EVENT, "msg_tight", now()))]),
            status: 431,
            check: Check::Problem("headers-too-large"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "headers over the guard's limit, middleware: 431, the handler does not run",
            steps: || sends(vec![padded(signed("/hooks/tight-mw", EVENT, "msg_tight_mw", now()))]),
            status: 431,
            check: Check::Problem("headers-too-large"),
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "handshake: Trello's HEAD answered 200 without a body, not queued",
            steps: || sends(vec![req(Method::HEAD, "/hooks/trello", vec![], Body::Full(Vec::new()))]),
            status: 200,
            check: Check::Empty,
            inbox: 0,
            handler: 0,
        },
        Case {
            name: "Trello: signed over the body and the registered callback URL, kept",
            steps: || sends(vec![trello_signed("/hooks/trello", TRELLO_EVENT)]),
            status: 202,
            check: Check::Empty,
            inbox: 1,
            handler: 0,
        },
        Case {
            name: "Twilio: signed for the public origin + path + query, kept",
            steps: || {
                let url = "https://hooks.example.com/hooks/twilio?x=1";
                sends(vec![twilio_signed("/hooks/twilio?x=1", TWILIO_FORM, url)])
            },
            status: 202,
            check: Check::Empty,
            inbox: 1,
            handler: 0,
        },
        Case {
            name: "Twilio: signed for another URL (query) than the one called, refused",
            steps: || {
                let url = "https://hooks.example.com/hooks/twilio?x=2";
                sends(vec![twilio_signed("/hooks/twilio?x=1", TWILIO_FORM, url)])
            },
            status: 401,
            check: Check::Problem("signature-mismatch"),
            inbox: 0,
            handler: 0,
        },
    ]
}

const EVENT: &[u8] = br#"{"type":"invoice.paid","id":"evt_1","data":{"amount":1200}}"#;
/// Bytes a re-serialising framework would change: spacing, key order, escapes, a
/// trailing newline.
const ODD_BYTES: &[u8] = b"{ \"z\" : 1,\n  \"a\":\"\\u00e9\\/\",\t\"type\":\"x\" }\n";
const SLACK_CHALLENGE: &[u8] =
    br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;

const TRELLO_EVENT: &[u8] = br#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard"}}"#;
const TWILIO_FORM: &[u8] = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309";

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn big(n: usize) -> Vec<u8> {
    vec![b'x'; n]
}

fn req(method: Method, path: &'static str, headers: Vec<(HeaderName, HeaderValue)>, body: Body) -> Req {
    Req { method, path, headers, body }
}

fn signed(path: &'static str, body: &[u8], id: &str, at: OffsetDateTime) -> Req {
    let scheme = standard_webhooks::scheme(SECRET).unwrap();
    let headers = scheme.sign(&Outgoing::new(body).id(id).timestamp(at)).unwrap();
    req(Method::POST, path, headers, Body::Full(body.to_vec()))
}

/// `r` with a header that takes its head over [`HEADER_LIMIT`] (and far below the
/// frameworks' own limits).
fn padded(mut r: Req) -> Req {
    let padding = HeaderValue::from_str(&"a".repeat(2 * HEADER_LIMIT)).unwrap();
    r.headers.push((HeaderName::from_static("x-padding"), padding));
    r
}

/// A Trello delivery as Trello sends it: `X-Trello-Webhook` over the body and
/// [`TRELLO_CALLBACK`] (the scheme's own URL, whatever the request's).
fn trello_signed(path: &'static str, body: &[u8]) -> Req {
    let scheme = trello::scheme(TRELLO_SECRET, TRELLO_CALLBACK).unwrap();
    let headers = scheme.sign(&Outgoing::new(body)).unwrap();
    req(Method::POST, path, headers, Body::Full(body.to_vec()))
}

/// A Twilio form POST to `path`, signed for `url`.
fn twilio_signed(path: &'static str, body: &[u8], url: &str) -> Req {
    let scheme = twilio::scheme(TWILIO_TOKEN).unwrap();
    let mut headers = scheme.sign(&Outgoing::new(body).url(url)).unwrap();
    let form = HeaderValue::from_static("application/x-www-form-urlencoded");
    headers.push((http::header::CONTENT_TYPE, form));
    req(Method::POST, path, headers, Body::Full(body.to_vec()))
}

fn slack_signed(path: &'static str, body: &[u8]) -> Req {
    let scheme = slack::scheme(SLACK_SECRET).unwrap();
    let headers = scheme.sign(&Outgoing::new(body).timestamp(now())).unwrap();
    req(Method::POST, path, headers, Body::Full(body.to_vec()))
}

// ---------------------------------------------------------------------------------------
// The endpoints, the same for both frameworks.

/// Guards, inboxes and handler counters for one server.
#[derive(Clone)]
struct Setup {
    accept: Guard,
    full: Guard,
    slack: Guard,
    /// Terminal, with Meta's GET subscription check.
    meta: Guard,
    verify: Guard,
    typed: Guard,
    /// A shared token in a header (middleware mode).
    token: Guard,
    flaky: Guard,
    held: Guard,
    /// Terminal and middleware, with a header limit of [`HEADER_LIMIT`].
    tight: Guard,
    tight_mw: Guard,
    /// Terminal, with Trello's HEAD check.
    trello: Guard,
    /// Terminal, with a public origin (Twilio signs the URL it calls).
    twilio: Guard,
    /// `/hooks/held`'s replay store and its clock.
    held_store: MemoryReplayStore,
    held_clock: ManualClock,
    /// Each held handler reports here when it starts…
    held_started: mpsc::UnboundedSender<()>,
    started: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>>,
    /// …and answers the status it takes from here.
    release: mpsc::UnboundedSender<u16>,
    released: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<u16>>>,
    /// A held handler dropped before it answered (its sender hung up) reports here.
    held_dropped: mpsc::UnboundedSender<()>,
    dropped: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>>,
    inbox: MemoryInbox,
    full_inbox: MemoryInbox,
    calls: Arc<AtomicUsize>,
    flaky_calls: Arc<AtomicUsize>,
}

impl Setup {
    fn new() -> Self {
        let inbox = MemoryInbox::new();
        let full_inbox = MemoryInbox::new().capacity(1);
        let std = || standard_webhooks::scheme(SECRET).unwrap();
        let tune = |b: hookguard::guard::GuardBuilder| b.body_limit(BODY_LIMIT).read_timeout(READ_TIMEOUT);
        let held_clock = ManualClock::at_unix(1_700_000_000);
        let held_store = MemoryReplayStore::new().clock(held_clock.clone());
        let (held_started, started) = mpsc::unbounded_channel();
        let (release, released) = mpsc::unbounded_channel();
        let (held_dropped, dropped) = mpsc::unbounded_channel();
        Self {
            accept: tune(Guard::builder("accept", std()).inbox(inbox.clone())).build(),
            full: tune(Guard::builder("full", std()).inbox(full_inbox.clone())).build(),
            slack: tune(Guard::builder("slack", slack::scheme(SLACK_SECRET).unwrap()))
                .inbox(inbox.clone())
                .handshake(SlackUrlVerification)
                .build(),
            verify: tune(Guard::builder("verify", std())).build(),
            meta: tune(Guard::builder("meta", hookguard::providers::meta::scheme("app-secret").unwrap()))
                .inbox(inbox.clone())
                .handshake(hookguard::handshake::MetaSubscription::new("meta-verify-token").unwrap())
                .build(),
            typed: tune(Guard::builder("typed", std())).build(),
            token: {
                use hookguard::verify::{Field, TokenScheme};
                let scheme = TokenScheme::new("acme", Field::header(TOKEN_HEADER), TOKEN).unwrap();
                tune(Guard::builder("token", scheme)).build()
            },
            flaky: tune(Guard::builder("flaky", std())).build(),
            held: tune(Guard::builder("held", std()))
                .replay_store(held_store.clone())
                .pending_lease(HELD_LEASE)
                .build(),
            tight: tune(Guard::builder("tight", std()).inbox(inbox.clone()))
                .header_limit(HEADER_LIMIT)
                .build(),
            tight_mw: tune(Guard::builder("tight-mw", std())).header_limit(HEADER_LIMIT).build(),
            trello: tune(Guard::builder("trello", trello::scheme(TRELLO_SECRET, TRELLO_CALLBACK).unwrap()))
                .inbox(inbox.clone())
                .handshake(TrelloHead)
                .build(),
            twilio: tune(Guard::builder("twilio", twilio::scheme(TWILIO_TOKEN).unwrap()))
                .inbox(inbox.clone())
                .public_origin(PUBLIC_ORIGIN)
                .build(),
            held_store,
            held_clock,
            held_started,
            started: Arc::new(tokio::sync::Mutex::new(started)),
            release,
            released: Arc::new(tokio::sync::Mutex::new(released)),
            held_dropped,
            dropped: Arc::new(tokio::sync::Mutex::new(dropped)),
            inbox,
            full_inbox,
            calls: Arc::default(),
            flaky_calls: Arc::default(),
        }
    }

    async fn inbox_depth(&self) -> usize {
        self.inbox.depth().await.unwrap() + self.full_inbox.depth().await.unwrap()
    }

    fn handler_calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The held handler: counts the call; a request marked with [`HOLD`] reports that it
    /// started and waits for the status to answer (and reports it if it is dropped before
    /// that); others answer 200 at once.
    async fn held_answer(&self, hold: bool) -> (u16, &'static str) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !hold {
            return (200, "handled");
        }
        let mut on_drop = ReportDrop(Some(self.held_dropped.clone()));
        let _ = self.held_started.send(());
        let status = self.released.lock().await.recv().await.unwrap_or(500);
        on_drop.0 = None;
        (status, "handled after a hold")
    }

    /// The flaky handler: a server error the first time, then success.
    fn flaky_answer(&self) -> (u16, &'static str) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.flaky_calls.fetch_add(1, Ordering::SeqCst) == 0 {
            (500, "boom")
        } else {
            (200, "ok on retry")
        }
    }
}

/// Reports on its channel when dropped still armed: the held handler's future was dropped
/// before it answered.
struct ReportDrop(Option<mpsc::UnboundedSender<()>>);

impl Drop for ReportDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(serde::Deserialize)]
struct Event {
    r#type: String,
}

fn axum_app(s: &Setup) -> axum::Router {
    use axum::{Router, routing::post};
    use hookguard::axum::{VerifiedJson, VerifiedWebhook};

    let (c1, c2, c3, f, h) = (s.calls.clone(), s.calls.clone(), s.calls.clone(), s.clone(), s.clone());
    let c4 = s.calls.clone();
    let tight = Router::new()
        .route(
            "/hooks/tight-mw",
            post(move |_: VerifiedWebhook| async move {
                c4.fetch_add(1, Ordering::SeqCst);
                "handled"
            }),
        )
        .layer(VerifyLayer::new(s.tight_mw.clone()));
    let token = Router::new()
        .route(
            "/hooks/token",
            post(move |headers: http::HeaderMap, _: VerifiedWebhook| async move {
                c3.fetch_add(1, Ordering::SeqCst);
                if headers.contains_key(TOKEN_HEADER) { "token seen" } else { "no token" }
            }),
        )
        .layer(VerifyLayer::new(s.token.clone()));
    let held = Router::new()
        .route(
            "/hooks/held",
            post(move |headers: http::HeaderMap, _: VerifiedWebhook| async move {
                let (status, text) = h.held_answer(headers.contains_key(HOLD)).await;
                (http::StatusCode::from_u16(status).unwrap(), text)
            }),
        )
        .layer(VerifyLayer::new(s.held.clone()));
    let echo = Router::new()
        .route(
            "/hooks/verify",
            post(move |hook: VerifiedWebhook| async move {
                c1.fetch_add(1, Ordering::SeqCst);
                hook.body
            }),
        )
        .layer(VerifyLayer::new(s.verify.clone()));
    let typed = Router::new()
        .route(
            "/hooks/typed",
            post(move |VerifiedJson(e): VerifiedJson<Event>| async move {
                c2.fetch_add(1, Ordering::SeqCst);
                e.r#type
            }),
        )
        .layer(VerifyLayer::new(s.typed.clone()));
    let flaky = Router::new()
        .route(
            "/hooks/flaky",
            post(move |_: VerifiedWebhook| async move {
                let (status, text) = f.flaky_answer();
                (http::StatusCode::from_u16(status).unwrap(), text)
            }),
        )
        .layer(VerifyLayer::new(s.flaky.clone()));
    Router::new()
        .route_service("/hooks/accept", WebhookService::new(s.accept.clone()))
        .route_service("/hooks/full", WebhookService::new(s.full.clone()))
        .route_service("/hooks/slack", WebhookService::new(s.slack.clone()))
        .route_service("/hooks/meta", WebhookService::new(s.meta.clone()))
        .route_service("/hooks/tight", WebhookService::new(s.tight.clone()))
        .route_service("/hooks/trello", WebhookService::new(s.trello.clone()))
        .route_service("/hooks/twilio", WebhookService::new(s.twilio.clone()))
        .merge(echo)
        .merge(typed)
        .merge(flaky)
        .merge(held)
        .merge(token)
        .merge(tight)
}

fn actix_app(
    s: Setup,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    use actix_web::{App, HttpResponse, web};
    use hookguard::actix::{VerifiedJson, VerifiedWebhook, Verify, webhook_service};

    let (c1, c2, c3, f, h) = (s.calls.clone(), s.calls.clone(), s.calls.clone(), s.clone(), s.clone());
    let c4 = s.calls.clone();
    App::new()
        .service(webhook_service("/hooks/accept", s.accept.clone()))
        .service(webhook_service("/hooks/full", s.full.clone()))
        .service(webhook_service("/hooks/slack", s.slack.clone()))
        .service(webhook_service("/hooks/meta", s.meta.clone()))
        .service(webhook_service("/hooks/tight", s.tight.clone()))
        .service(webhook_service("/hooks/trello", s.trello.clone()))
        .service(webhook_service("/hooks/twilio", s.twilio.clone()))
        .service(web::resource("/hooks/tight-mw").wrap(Verify::new(s.tight_mw.clone())).route(
            web::post().to(move |_: VerifiedWebhook| {
                c4.fetch_add(1, Ordering::SeqCst);
                async move { "handled" }
            }),
        ))
        .service(web::resource("/hooks/verify").wrap(Verify::new(s.verify.clone())).route(web::post().to(
            move |hook: VerifiedWebhook| {
                c1.fetch_add(1, Ordering::SeqCst);
                async move { hook.body }
            },
        )))
        .service(web::resource("/hooks/typed").wrap(Verify::new(s.typed.clone())).route(web::post().to(
            move |VerifiedJson(e): VerifiedJson<Event>| {
                c2.fetch_add(1, Ordering::SeqCst);
                async move { e.r#type }
            },
        )))
        .service(web::resource("/hooks/token").wrap(Verify::new(s.token.clone())).route(web::post().to(
            move |req: actix_web::HttpRequest, _: VerifiedWebhook| {
                c3.fetch_add(1, Ordering::SeqCst);
                let seen = req.headers().contains_key(TOKEN_HEADER);
                async move { if seen { "token seen" } else { "no token" } }
            },
        )))
        .service(web::resource("/hooks/flaky").wrap(Verify::new(s.flaky.clone())).route(web::post().to(
            move |_: VerifiedWebhook| {
                let (status, text) = f.flaky_answer();
                async move {
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body(text)
                }
            },
        )))
        .service(web::resource("/hooks/held").wrap(Verify::new(s.held.clone())).route(web::post().to(
            move |req: actix_web::HttpRequest, _: VerifiedWebhook| {
                let h = h.clone();
                async move {
                    let (status, text) = h.held_answer(req.headers().contains_key(HOLD)).await;
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body(text)
                }
            },
        )))
}

// ---------------------------------------------------------------------------------------
// Servers and the runner.

async fn start_axum(setup: &Setup) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = axum_app(setup);
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop)
}

struct ActixServer {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

/// An actix server on its own thread and actix system.
fn start_actix(setup: &Setup) -> ActixServer {
    let setup = setup.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || actix_app(setup.clone()))
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .bind(("127.0.0.1", 0))?;
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).expect("test is waiting");
            server.await
        })
    });
    let (addr, handle) = rx.recv_timeout(Duration::from_secs(30)).expect("actix server started");
    ActixServer { addr, handle, thread }
}

fn client() -> reqwest::Client {
    // No pooling: a server may close a connection after refusing a body it did not read.
    reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(0).build().unwrap()
}

async fn send(client: &reqwest::Client, base: SocketAddr, r: Req) -> reqwest::Response {
    let url = format!("http://{base}{}", r.path);
    let mut rb = client.request(r.method, url);
    for (name, value) in r.headers {
        rb = rb.header(name, value);
    }
    let rb = match r.body {
        Body::Full(bytes) => rb.body(bytes),
        Body::Chunked(chunks) => rb.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
        ))),
        Body::Stalled(first) => rb.body(reqwest::Body::wrap_stream(
            futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(first)) })
                .chain(futures_util::stream::pending()),
        )),
    };
    rb.send().await.unwrap()
}

/// Requests held in `/hooks/held`'s handler, oldest first.
type Held = std::collections::VecDeque<tokio::task::JoinHandle<reqwest::Response>>;

/// Runs one set-up step.
async fn run_step(
    at: &str,
    client: &reqwest::Client,
    base: SocketAddr,
    setup: &Setup,
    held: &mut Held,
    step: Step,
) {
    match step {
        Step::Send(r) => {
            send(client, base, r).await;
        }
        Step::Expect(r, status) => {
            let res = send(client, base, r).await;
            assert_eq!(res.status().as_u16(), status, "{at}: a set-up step's status");
        }
        Step::Hold(mut r) => {
            r.headers.push((HeaderName::from_static(HOLD), HeaderValue::from_static("1")));
            let client = client.clone();
            held.push_back(tokio::spawn(async move { send(&client, base, r).await }));
            let started = async { setup.started.lock().await.recv().await };
            tokio::time::timeout(Duration::from_secs(10), started)
                .await
                .unwrap_or_else(|_| panic!("{at}: the held handler did not start"))
                .expect("held handler");
        }
        Step::Release(status) => release(at, setup, held, status).await,
        Step::Killed(key) => {
            let lease = HELD_LEASE;
            let found = setup.held_store.reserve(key.as_bytes(), 42, lease).await.unwrap();
            assert_eq!(found, Mark::New, "{at}: the killed replica's reservation");
        }
        Step::Advance(by) => setup.held_clock.advance(by),
        Step::HangUp(mut r) => {
            r.headers.push((HeaderName::from_static(HOLD), HeaderValue::from_static("1")));
            let mut conn = tokio::net::TcpStream::connect(base).await.unwrap();
            conn.write_all(&raw_request(base, r)).await.unwrap();
            let started = async { setup.started.lock().await.recv().await };
            tokio::time::timeout(Duration::from_secs(10), started)
                .await
                .unwrap_or_else(|_| panic!("{at}: the held handler did not start"))
                .expect("held handler");
            let reserved = setup.held_store.len();
            // Closed with `SO_LINGER` 0, so the server reads a reset, not a FIN: actix-web
            // allows half-closed connections by default (`h1_allow_half_closed`) and keeps
            // running the handler of a connection whose client sent FIN (the retry is then
            // answered 409 while it runs), where hyper ends the connection and drops the
            // handler; a reset ends the connection, and drops the handler, on both.
            conn.set_zero_linger().unwrap();
            drop(conn);
            let dropped = async { setup.dropped.lock().await.recv().await };
            tokio::time::timeout(Duration::from_secs(10), dropped)
                .await
                .unwrap_or_else(|_| {
                    panic!("{at}: the server did not drop the handler when its sender hung up")
                })
                .expect("held handler");
            let cancelled = async {
                while setup.held_store.len() >= reserved {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), cancelled)
                .await
                .unwrap_or_else(|_| panic!("{at}: the reservation was not cancelled"));
        }
    }
}

/// `r` as HTTP/1.1 bytes to send on a connection of its own (a `Body::Full` body).
fn raw_request(base: SocketAddr, r: Req) -> Vec<u8> {
    let Body::Full(body) = r.body else { panic!("raw requests send a whole body") };
    let mut raw =
        format!("{} {} HTTP/1.1\r\nhost: {base}\r\ncontent-length: {}\r\n", r.method, r.path, body.len())
            .into_bytes();
    for (name, value) in &r.headers {
        raw.extend_from_slice(name.as_str().as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(&body);
    raw
}

/// Lets the oldest held handler answer `status`, and checks that its sender got it.
async fn release(at: &str, setup: &Setup, held: &mut Held, status: u16) {
    let oldest = held.pop_front().unwrap_or_else(|| panic!("{at}: nothing is held"));
    setup.release.send(status).expect("the held handler waits");
    let res = tokio::time::timeout(Duration::from_secs(10), oldest)
        .await
        .unwrap_or_else(|_| panic!("{at}: the held request did not finish"))
        .expect("held request task");
    assert_eq!(res.status().as_u16(), status, "{at}: the held request's status");
}

/// Runs the whole table against the server at `base`; returns one line per case.
async fn run_table(framework: &str, base: SocketAddr, setup: &Setup) -> Vec<String> {
    let client = client();
    let mut outcomes = Vec::new();
    for case in cases() {
        let at = format!("[{framework}] {}", case.name);
        let mut steps = (case.steps)();
        let Some(Step::Send(last)) = steps.pop() else { panic!("{at}: a case ends with a request") };
        let mut held = Held::new();
        for step in steps {
            run_step(&at, &client, base, setup, &mut held, step).await;
        }
        let sent = match &last.body {
            Body::Full(b) => b.clone(),
            _ => Vec::new(),
        };
        let (inbox0, calls0) = (setup.inbox_depth().await, setup.handler_calls());
        let res = send(&client, base, last).await;
        let status = res.status().as_u16();
        let content_type =
            res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let retry_after = res.headers().contains_key("retry-after");
        let body = res.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, case.status, "{at}: status; body {text}");
        match case.check {
            Check::Problem(code) => {
                assert_eq!(content_type, "application/problem+json", "{at}");
                let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(problem["type"], format!("https://hookguard.dev/problems/{code}"), "{at}");
                assert_eq!(problem["status"], case.status, "{at}");
                assert!(!text.contains(SECRET), "{at}: no secret in problems");
            }
            Check::Contains(needle) => assert!(text.contains(needle), "{at}: {text}"),
            Check::Empty => {
                assert!(body.is_empty() && content_type.is_empty(), "{at}: {content_type} {text}")
            }
            Check::Echo => assert_eq!(&body[..], &sent[..], "{at}: bytes changed"),
        }
        if status == 503 || status == 409 {
            assert!(retry_after, "{at}: {status} without Retry-After");
        }
        assert_eq!(setup.inbox_depth().await - inbox0, case.inbox, "{at}: inbox effect");
        assert_eq!(setup.handler_calls() - calls0, case.handler, "{at}: handler effect");
        while !held.is_empty() {
            release(&at, setup, &mut held, 200).await;
        }
        outcomes.push(format!("{} -> {status}", case.name));
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_table_passes_on_axum_and_actix() {
    let axum_setup = Setup::new();
    let (axum_addr, stop_axum) = start_axum(&axum_setup).await;
    let on_axum = run_table("axum", axum_addr, &axum_setup).await;
    let _ = stop_axum.send(());

    let actix_setup = Setup::new();
    let actix = start_actix(&actix_setup);
    let on_actix = run_table("actix", actix.addr, &actix_setup).await;
    actix.handle.stop(false).await;
    tokio::task::spawn_blocking(move || actix.thread.join())
        .await
        .unwrap()
        .expect("actix thread")
        .expect("actix server");

    assert_eq!(on_axum.len(), cases().len());
    assert_eq!(on_axum, on_actix, "identical outcomes");
}
