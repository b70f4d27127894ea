//! The Tower side over real loopback HTTP: an axum server bound to `127.0.0.1:0`, a real
//! `reqwest` client (or a raw socket for senders that misbehave), deliveries signed with
//! the preset's own `Sign` impl, and a [`Worker`] behind the inbox.
//!
//! Nothing here sleeps to make an assertion true: tests wait on channels, bounded by
//! `common::BOUND`, and move a [`ManualClock`] instead of waiting for time to pass.
#![cfg(feature = "tower")]

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Extension, Router, routing::post};
use bytes::Bytes;
use common::{
    Event, RecordingInbox, assert_no_secrets, assert_problem, bounded, next_event, raw_exchange, spawn_server,
};
use hookguard::{
    clock::ManualClock,
    guard::{Guard, GuardBuilder},
    inbox::{BoxFuture, DeadLetter, Inbox, InboxError, Job, MemoryInbox, Pushed, Webhook},
    layer::{VerifyLayer, WebhookService},
    providers::standard_webhooks,
    replay::{Mark, MemoryReplayStore, ReplayStore},
    verify::{HmacScheme, Verified},
    worker::{Backoff, Worker, WorkerHandle},
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use hyper::body::{Body as HttpBody, Frame};
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The key part of [`SECRET`]: must not leak either.
const SECRET_KEY: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_c2VjcmV0LWZvci10aGUtd3Jvbmctc2VuZGVy";
const T0: i64 = 1_700_000_000;
const PATH: &str = "/hooks/sw";
const ENDPOINT: &str = "sw";
/// Small idle poll: workers notice retries that became due after the clock moved.
const IDLE_POLL: Duration = Duration::from_millis(10);

fn scheme() -> HmacScheme {
    standard_webhooks::scheme(SECRET).expect("scheme")
}

fn key(id: &str) -> String {
    format!("{ENDPOINT}:{id}")
}

/// A signed delivery, as a Standard Webhooks sender would send it.
#[derive(Debug, Clone)]
struct Delivery {
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
}

impl Delivery {
    fn signed(id: &str, body: &[u8], at: OffsetDateTime) -> Self {
        Self { headers: common::sign(&scheme(), body, id, at), body: body.to_vec() }
    }

    fn signature(&self) -> String {
        header(&self.headers, "webhook-signature")
    }

    /// The request head for a raw socket, declaring `content_length`.
    fn raw_head(&self, addr: SocketAddr, content_length: usize) -> String {
        let mut head =
            format!("POST {PATH} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {content_length}\r\n");
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {}\r\n", value.to_str().expect("ascii header")));
        }
        head.push_str("\r\n");
        head
    }
}

fn header(headers: &[(HeaderName, HeaderValue)], name: &str) -> String {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_owned()
}

/// What came back.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn post_to(
    client: &reqwest::Client,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: reqwest::Body,
) -> Answer {
    let mut req = client.post(url).body(body);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let res = bounded("an HTTP answer", req.send()).await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = bounded("an HTTP body", res.bytes()).await.expect("body").to_vec();
    Answer { status, headers, body }
}

/// A receiver in terminal mode: `WebhookService` → a recording in-memory inbox.
struct Receiver {
    addr: SocketAddr,
    url: String,
    client: reqwest::Client,
    clock: ManualClock,
    inbox: RecordingInbox,
    events: mpsc::UnboundedReceiver<Event>,
}

impl Receiver {
    async fn start(memory: MemoryInbox, configure: impl FnOnce(GuardBuilder) -> GuardBuilder) -> Self {
        Self::start_with(memory, configure, |router| router).await
    }

    async fn start_with(
        memory: MemoryInbox,
        configure: impl FnOnce(GuardBuilder) -> GuardBuilder,
        wrap: impl FnOnce(Router) -> Router,
    ) -> Self {
        let clock = ManualClock::at_unix(T0);
        let (inbox, events) = RecordingInbox::new(memory.clock(clock.clone()));
        let guard =
            configure(Guard::builder(ENDPOINT, scheme()).clock(clock.clone()).inbox(inbox.clone())).build();
        let addr = spawn_server(wrap(Router::new().route_service(PATH, WebhookService::new(guard)))).await;
        Self { addr, url: format!("http://{addr}{PATH}"), client: common::client(), clock, inbox, events }
    }

    /// A delivery signed now (by the receiver's clock).
    fn signed(&self, id: &str, body: &[u8]) -> Delivery {
        Delivery::signed(id, body, self.clock.now_for_tests())
    }

    async fn send(&self, d: &Delivery) -> Answer {
        post_to(&self.client, &self.url, &d.headers, d.body.clone().into()).await
    }

    async fn next_event(&mut self) -> Event {
        next_event(&mut self.events).await
    }

    /// Fails when the inbox was asked anything since the last event taken.
    fn assert_inbox_untouched(&mut self, name: &str) {
        assert!(self.events.try_recv().is_err(), "{name}: the inbox was not to be touched");
    }

    /// A worker pool on this receiver's inbox and clock.
    fn worker(&self, handler: impl hookguard::worker::Handler) -> Worker {
        Worker::new(self.inbox.clone(), handler).clock(self.clock.clone()).idle_poll(IDLE_POLL)
    }
}

/// A handler that reports each webhook and counts calls; it fails while `fail` says so.
fn counting_handler(
    fail: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> (impl hookguard::worker::Handler, Arc<AtomicUsize>, mpsc::UnboundedReceiver<Webhook>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let counter = Arc::clone(&calls);
    let handler = move |hook: Webhook| {
        let call = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = tx.send(hook);
        let failed = fail(call);
        async move { if failed { Err(format!("boom on call {call}")) } else { Ok(()) } }
    };
    (handler, calls, rx)
}

async fn shutdown(worker: WorkerHandle) {
    bounded("worker shutdown", worker.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test]
async fn valid_delivery_is_accepted_then_processed_by_a_worker() {
    let mut r = Receiver::start(MemoryInbox::new(), |g| g).await;
    let d = r.signed("msg_valid", br#"{"type":"invoice.paid","n":1}"#);

    let answer = r.send(&d).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(r.next_event().await, Event::Pushed(key("msg_valid")));

    let (handler, calls, mut hooks) = counting_handler(|_| false);
    let worker = r.worker(handler).spawn();
    let hook = bounded("the handler", hooks.recv()).await.expect("a webhook");
    assert_eq!(hook.key(), key("msg_valid"));
    assert_eq!(hook.endpoint(), ENDPOINT);
    assert_eq!(hook.provider(), "standard-webhooks");
    assert_eq!(hook.id(), Some("msg_valid"));
    assert_eq!(hook.event(), Some("invoice.paid"));
    assert_eq!(hook.timestamp(), Some(r.clock.now_for_tests()));
    assert_eq!(hook.body().as_ref(), d.body.as_slice(), "the exact bytes that were verified");
    assert_eq!(r.next_event().await, Event::Acked { key: key("msg_valid"), attempt: 1 });
    assert_eq!(r.inbox.depth().await.unwrap(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    shutdown(worker).await;
}

#[tokio::test]
async fn rejections_are_problems_that_reveal_nothing() {
    struct Row {
        name: &'static str,
        /// Who signs: the receiver's secret or another one.
        signer: &'static str,
        /// What is signed, and what is sent.
        signed: &'static [u8],
        sent: &'static [u8],
        /// Where the receiver's clock is, relative to the signing time, when it arrives.
        arrives_after: i64,
        status: u16,
        code: &'static str,
    }
    const BODY: &[u8] = br#"{"type":"invoice.paid","amount":1}"#;
    let rows = [
        Row {
            name: "tampered body",
            signer: SECRET,
            signed: BODY,
            sent: br#"{"type":"invoice.paid","amount":1000}"#,
            arrives_after: 0,
            status: 401,
            code: "signature-mismatch",
        },
        Row {
            name: "wrong secret",
            signer: OTHER_SECRET,
            signed: BODY,
            sent: BODY,
            arrives_after: 0,
            status: 401,
            code: "signature-mismatch",
        },
        Row {
            name: "stale timestamp",
            signer: SECRET,
            signed: BODY,
            sent: BODY,
            arrives_after: 301,
            status: 401,
            code: "timestamp-too-old",
        },
        Row {
            name: "timestamp in the future",
            signer: SECRET,
            signed: BODY,
            sent: BODY,
            arrives_after: -301,
            status: 401,
            code: "timestamp-in-future",
        },
    ];
    let mut r = Receiver::start(MemoryInbox::new(), |g| g).await;
    for (i, row) in rows.iter().enumerate() {
        r.clock.set_unix(T0);
        let id = format!("msg_reject_{i}");
        let at = r.clock.now_for_tests();
        let signer = standard_webhooks::scheme(row.signer).expect("scheme");
        let headers = common::sign(&signer, row.signed, &id, at);
        // What the receiver would expect for what was sent: must never be told.
        let expected = header(&common::sign(&scheme(), row.sent, &id, at), "webhook-signature");
        r.clock.set_unix(T0 + row.arrives_after);

        let answer = post_to(&r.client, &r.url, &headers, row.sent.to_vec().into()).await;
        assert_problem(
            row.name,
            answer.status,
            &answer.headers,
            &answer.body,
            row.status,
            row.code,
            &[SECRET, SECRET_KEY, OTHER_SECRET, expected.trim_start_matches("v1,")],
        );
        r.assert_inbox_untouched(row.name);
    }
    assert_eq!(r.inbox.depth().await.unwrap(), 0);
}

#[tokio::test]
async fn replayed_delivery_is_acknowledged_and_processed_once() {
    let mut r = Receiver::start(MemoryInbox::new(), |g| g).await;
    let (handler, calls, mut hooks) = counting_handler(|_| false);
    let worker = r.worker(handler).spawn();
    let d = r.signed("msg_replay", br#"{"type":"a"}"#);

    let first = r.send(&d).await;
    assert_eq!(first.status, 202, "{}", first.text());
    assert_eq!(r.next_event().await, Event::Pushed(key("msg_replay")));
    // The replay mark is set, but only the inbox knows the delivery is kept: its key
    // refuses the replay, and the answer is `200`.
    let second = r.send(&d).await;
    assert_eq!((second.status, second.text().as_str()), (200, "duplicate"));
    bounded("the handler", hooks.recv()).await.expect("a webhook");
    // The refused push and the worker's ack, in whichever order they happened.
    let events = [r.next_event().await, r.next_event().await];
    assert!(events.contains(&Event::NotPushed(key("msg_replay"))), "{events:?}");
    assert!(events.contains(&Event::Acked { key: key("msg_replay"), attempt: 1 }), "{events:?}");

    // A replay after processing is still only acknowledged.
    let third = r.send(&d).await;
    assert_eq!((third.status, third.text().as_str()), (200, "duplicate"));
    assert_eq!(r.next_event().await, Event::NotPushed(key("msg_replay")));
    r.assert_inbox_untouched("nothing else");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    shutdown(worker).await;
}

#[tokio::test]
async fn oversized_body_with_declared_length_is_refused_before_it_is_read() {
    let mut r = Receiver::start(MemoryInbox::new(), |g| g.body_limit(1024)).await;
    let d = r.signed("msg_big", &[b'a'; 4096]);

    let answer = r.send(&d).await;
    assert_problem(
        "declared length",
        answer.status,
        &answer.headers,
        &answer.body,
        413,
        "body-too-large",
        &[SECRET, SECRET_KEY],
    );

    // Proof that it is refused before the body is read: declare 10 MB and send none of
    // it. The answer can only come from the head.
    let raw = raw_exchange(r.addr, &d.raw_head(r.addr, 10_000_000), b"").await;
    assert_eq!(raw.status, 413, "{}", raw.text);
    assert!(raw.text.contains("body-too-large"), "{}", raw.text);

    r.assert_inbox_untouched("oversized");
    assert_eq!(r.inbox.depth().await.unwrap(), 0);
}

/// A body of `left` chunks with no known length: sent chunked, without `Content-Length`.
struct Chunks {
    chunk: Bytes,
    left: usize,
}

impl HttpBody for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}

#[tokio::test]
async fn oversized_chunked_body_without_length_is_refused() {
    let seen: Arc<Mutex<Option<HeaderMap>>> = Arc::default();
    let record = Arc::clone(&seen);
    let capture = tower::util::MapRequestLayer::new(move |req: axum::extract::Request| {
        *record.lock().expect("lock") = Some(req.headers().clone());
        req
    });
    let mut r =
        Receiver::start_with(MemoryInbox::new(), |g| g.body_limit(1024), |router| router.layer(capture))
            .await;
    let chunk = Bytes::from_static(&[b'a'; 256]);
    let whole: Vec<u8> = chunk.iter().copied().cycle().take(256 * 16).collect();
    let d = r.signed("msg_chunked", &whole);

    let body = reqwest::Body::wrap(Chunks { chunk, left: 16 });
    let answer = post_to(&r.client, &r.url, &d.headers, body).await;
    assert_problem(
        "chunked",
        answer.status,
        &answer.headers,
        &answer.body,
        413,
        "body-too-large",
        &[SECRET, SECRET_KEY],
    );

    let headers = seen.lock().expect("lock").take().expect("request seen");
    assert!(headers.get(http::header::CONTENT_LENGTH).is_none(), "no declared length: {headers:?}");
    assert_eq!(headers.get(http::header::TRANSFER_ENCODING).map(|v| v.as_bytes()), Some(&b"chunked"[..]));
    r.assert_inbox_untouched("chunked");
}

#[tokio::test]
async fn slow_body_times_out_with_408() {
    let read_timeout = Duration::from_millis(300);
    let mut r = Receiver::start(MemoryInbox::new(), |g| g.read_timeout(read_timeout)).await;
    let d = r.signed("msg_slow", &[b'a'; 100]);

    // Headers and 10 of the 100 declared bytes, then nothing.
    let started = tokio::time::Instant::now();
    let raw = raw_exchange(r.addr, &d.raw_head(r.addr, d.body.len()), &d.body[..10]).await;
    assert_eq!(raw.status, 408, "{}", raw.text);
    assert!(raw.text.contains("application/problem+json"), "{}", raw.text);
    assert!(raw.text.contains(&format!("{}body-timeout", hookguard::problem::TYPE_BASE)), "{}", raw.text);
    assert!(started.elapsed() >= read_timeout, "answered before the read timeout");
    r.assert_inbox_untouched("slow body");
}

#[tokio::test]
async fn full_inbox_answers_503_and_releases_the_replay_mark() {
    let mut r = Receiver::start(MemoryInbox::new().capacity(1), |g| g.retry_after(7)).await;
    let a = r.signed("msg_a", br#"{"n":"a"}"#);
    let b = r.signed("msg_b", br#"{"n":"b"}"#);

    assert_eq!(r.send(&a).await.status, 202);
    assert_eq!(r.next_event().await, Event::Pushed(key("msg_a")));
    let full = r.send(&b).await;
    assert_problem(
        "inbox full",
        full.status,
        &full.headers,
        &full.body,
        503,
        "inbox-unavailable",
        &[SECRET, SECRET_KEY],
    );
    assert_eq!(full.headers.get(http::header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"7"[..]));
    assert_eq!(r.next_event().await, Event::NotPushed(key("msg_b")));

    // Drain the inbox, then the sender's retry of `b` (the very same request) is accepted:
    // its replay mark was removed when the hand-off failed.
    let jobs = r.inbox.pull(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    r.inbox.ack(&jobs[0]).await.unwrap();
    assert_eq!(r.next_event().await, Event::Acked { key: key("msg_a"), attempt: 1 });
    let retried = r.send(&b).await;
    assert_eq!(retried.status, 202, "{}", retried.text());
    assert_eq!(r.next_event().await, Event::Pushed(key("msg_b")));
}

#[tokio::test]
async fn failing_handler_is_retried_with_backoff_until_it_succeeds() {
    let mut r = Receiver::start(MemoryInbox::new(), |g| g).await;
    let backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(600)).without_jitter();
    let (handler, calls, _hooks) = counting_handler(|call| call < 3);
    let worker = r.worker(handler).backoff(backoff).max_attempts(5).spawn();

    let d = r.signed("msg_flaky", br#"{"type":"a"}"#);
    assert_eq!(r.send(&d).await.status, 202);
    assert_eq!(r.next_event().await, Event::Pushed(key("msg_flaky")));
    for attempt in 1..=2 {
        let due = r.clock.now_for_tests() + backoff.delay(attempt);
        assert_eq!(
            r.next_event().await,
            Event::Retried {
                key: key("msg_flaky"),
                attempt,
                at: due,
                error: format!("boom on call {attempt}"),
            }
        );
        assert_eq!(calls.load(Ordering::SeqCst), attempt as usize);
        // Not due until the back-off has passed: move the clock there.
        r.clock.advance(backoff.delay(attempt));
    }
    assert_eq!(r.next_event().await, Event::Acked { key: key("msg_flaky"), attempt: 3 });
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(r.inbox.depth().await.unwrap(), 0);
    assert!(r.inbox.dead_letters(10).await.unwrap().is_empty());
    shutdown(worker).await;
}

#[tokio::test]
async fn a_panicking_handler_is_retried_and_its_lane_keeps_working() {
    let mut r = Receiver::start(MemoryInbox::new(), |g| g).await;
    let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60)).without_jitter();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let handler = move |hook: Webhook| {
        let call = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            assert!(call != 1, "handler bug on {}", hook.key());
            Ok::<(), std::convert::Infallible>(())
        }
    };
    // One lane: if the panic ended it, nothing after would be processed.
    let worker = r.worker(handler).concurrency(1).backoff(backoff).spawn();

    let d = r.signed("msg_panics", br#"{"type":"a"}"#);
    assert_eq!(r.send(&d).await.status, 202);
    assert_eq!(r.next_event().await, Event::Pushed(key("msg_panics")));
    let due = r.clock.now_for_tests() + backoff.delay(1);
    assert_eq!(
        r.next_event().await,
        Event::Retried { key: key("msg_panics"), attempt: 1, at: due, error: "the handler panicked".into() }
    );
    let other = r.signed("msg_after", br#"{"type":"b"}"#);
    assert_eq!(r.send(&other).await.status, 202);
    assert_eq!(r.next_event().await, Event::Pushed(key("msg_after")));
    assert_eq!(r.next_event().await, Event::Acked { key: key("msg_after"), attempt: 1 });
    r.clock.advance(backoff.delay(1));
    assert_eq!(r.next_event().await, Event::Acked { key: key("msg_panics"), attempt: 2 });
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    shutdown(worker).await;
}

#[tokio::test]
async fn always_failing_handler_is_dead_lettered_then_redriven() {
    let mut r = Receiver::start(MemoryInbox::new(), |g| g).await;
    let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).without_jitter();
    let broken = Arc::new(AtomicBool::new(true));
    let still_broken = Arc::clone(&broken);
    let (handler, calls, _hooks) = counting_handler(move |_| still_broken.load(Ordering::SeqCst));
    let worker = r.worker(handler).backoff(backoff).max_attempts(3).spawn();

    let d = r.signed("msg_doomed", br#"{"type":"a"}"#);
    assert_eq!(r.send(&d).await.status, 202);
    assert_eq!(r.next_event().await, Event::Pushed(key("msg_doomed")));
    for attempt in 1..=2 {
        let Event::Retried { attempt: got, .. } = r.next_event().await else { panic!("a retry") };
        assert_eq!(got, attempt);
        r.clock.advance(backoff.delay(attempt));
    }
    assert_eq!(
        r.next_event().await,
        Event::Dead { key: key("msg_doomed"), attempt: 3, error: "boom on call 3".into() }
    );
    let dead = r.inbox.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].webhook.key(), key("msg_doomed"));
    assert_eq!(dead[0].webhook.body().as_ref(), d.body.as_slice());
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].error, "boom on call 3");
    assert_eq!(r.inbox.depth().await.unwrap(), 0);
    // The sender's resend is still a duplicate: the delivery is kept, as a dead letter.
    assert_eq!(r.send(&d).await.status, 200);
    assert_eq!(r.next_event().await, Event::NotPushed(key("msg_doomed")));

    // Fixed: re-drive it, and the running worker processes it as a fresh job.
    broken.store(false, Ordering::SeqCst);
    assert!(r.inbox.redrive(&key("msg_doomed")).await.unwrap());
    assert_eq!(r.next_event().await, Event::Acked { key: key("msg_doomed"), attempt: 1 });
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(r.inbox.dead_letters(10).await.unwrap().is_empty());
    shutdown(worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_copies_are_processed_once() {
    let mut r = Receiver::start(MemoryInbox::new(), |g| g).await;
    let (handler, calls, _hooks) = counting_handler(|_| false);
    let worker = r.worker(handler).spawn();
    let d = r.signed("msg_storm", br#"{"type":"a"}"#);

    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (client, url, d) = (r.client.clone(), r.url.clone(), d.clone());
        sends.spawn(async move { post_to(&client, &url, &d.headers, d.body.into()).await });
    }
    let mut statuses = Vec::new();
    while let Some(answer) = sends.join_next().await {
        statuses.push(answer.expect("send task").status);
    }
    statuses.sort_unstable();
    let mut want = vec![200; 49];
    want.push(202);
    assert_eq!(statuses, want, "one accepted, 49 acknowledged as duplicates");

    // Copies that found the replay mark set are refused by the inbox's key: one kept.
    let mut events = Vec::new();
    for _ in 0..51 {
        events.push(r.next_event().await);
    }
    let count = |want: &Event| events.iter().filter(|e| *e == want).count();
    assert_eq!(count(&Event::Pushed(key("msg_storm"))), 1, "{events:?}");
    assert_eq!(count(&Event::NotPushed(key("msg_storm"))), 49, "{events:?}");
    assert_eq!(count(&Event::Acked { key: key("msg_storm"), attempt: 1 }), 1, "{events:?}");
    r.assert_inbox_untouched("copies");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    shutdown(worker).await;
}

#[tokio::test]
async fn shutdown_returns_in_flight_work_to_the_inbox() {
    let mut r = Receiver::start(MemoryInbox::new(), |g| g).await;
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let never = Arc::new(Notify::new());
    let blocked = {
        let never = Arc::clone(&never);
        move |hook: Webhook| {
            let never = Arc::clone(&never);
            let _ = started_tx.send(hook.key().to_owned());
            async move {
                never.notified().await;
                Ok::<(), Infallible>(())
            }
        }
    };
    let worker = r.worker(blocked).spawn();
    let d = r.signed("msg_inflight", br#"{"type":"a"}"#);
    assert_eq!(r.send(&d).await.status, 202);
    assert_eq!(r.next_event().await, Event::Pushed(key("msg_inflight")));
    assert_eq!(bounded("the handler to start", started.recv()).await, Some(key("msg_inflight")));

    let report = bounded("shutdown", worker.shutdown(Duration::from_millis(100))).await;
    assert_eq!((report.in_flight, report.returned), (1, 1));
    let Event::GivenBack { key: returned, at } = r.next_event().await else { panic!("given back") };
    assert_eq!((returned, at), (key("msg_inflight"), r.clock.now_for_tests()));
    assert_eq!(r.inbox.depth().await.unwrap(), 1, "nothing dropped");

    let (handler, calls, mut hooks) = counting_handler(|_| false);
    let next = r.worker(handler).spawn();
    let hook = bounded("the new worker", hooks.recv()).await.expect("a webhook");
    assert_eq!(hook.body().as_ref(), d.body.as_slice());
    let Event::Acked { key: acked, attempt } = r.next_event().await else { panic!("processed") };
    assert_eq!(acked, key("msg_inflight"));
    assert_eq!(attempt, 1, "the interrupted run did not use up an attempt");
    assert_eq!(r.inbox.depth().await.unwrap(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    shutdown(next).await;
}

/// A receiver in middleware mode: `VerifyLayer` around an axum handler. The handler's
/// answer for call `n` is `status(n)`; it reports what it got.
async fn middleware(
    status: impl Fn(usize) -> StatusCode + Clone + Send + Sync + 'static,
) -> (String, ManualClock, Arc<AtomicUsize>, mpsc::UnboundedReceiver<(String, Bytes)>) {
    let clock = ManualClock::at_unix(T0);
    let guard = Guard::builder(ENDPOINT, scheme()).clock(clock.clone()).build();
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let counter = Arc::clone(&calls);
    let app = Router::new()
        .route(
            PATH,
            post(move |Extension(v): Extension<Verified<'static>>, body: Bytes| async move {
                let call = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let id = v.id().unwrap_or_default().to_owned();
                let _ = tx.send((id.clone(), body));
                (status(call), format!("handled {id}"))
            }),
        )
        .layer(VerifyLayer::new(guard));
    let addr = spawn_server(app).await;
    (format!("http://{addr}{PATH}"), clock, calls, rx)
}

#[tokio::test]
async fn middleware_mode_valid_tampered_duplicate() {
    let (url, clock, calls, mut seen) = middleware(|_| StatusCode::OK).await;
    let client = common::client();
    let d = Delivery::signed("msg_mw", br#"{"type":"a"}"#, clock.now_for_tests());
    let tampered_body = br#"{"type":"b"}"#;
    let expected = Delivery::signed("msg_mw", tampered_body, clock.now_for_tests()).signature();

    // Tampered first: refused, and it must not burn the genuine delivery's replay mark.
    let tampered = post_to(&client, &url, &d.headers, tampered_body.to_vec().into()).await;
    assert_problem(
        "tampered",
        tampered.status,
        &tampered.headers,
        &tampered.body,
        401,
        "signature-mismatch",
        &[SECRET, SECRET_KEY, expected.trim_start_matches("v1,")],
    );
    assert!(seen.try_recv().is_err(), "the handler never sees a tampered request");

    let valid = post_to(&client, &url, &d.headers, d.body.clone().into()).await;
    assert_eq!((valid.status, valid.text().as_str()), (200, "handled msg_mw"));
    let (id, body) = seen.try_recv().expect("the handler ran");
    assert_eq!((id.as_str(), body.as_ref()), ("msg_mw", d.body.as_slice()));

    let duplicate = post_to(&client, &url, &d.headers, d.body.clone().into()).await;
    assert_eq!((duplicate.status, duplicate.text().as_str()), (200, "duplicate"));
    assert_no_secrets("duplicate", &duplicate.headers, &duplicate.body, &[SECRET, SECRET_KEY]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn middleware_server_error_releases_the_replay_mark() {
    let (url, clock, calls, _seen) =
        middleware(|call| if call == 1 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }).await;
    let client = common::client();
    let d = Delivery::signed("msg_5xx", br#"{"type":"a"}"#, clock.now_for_tests());

    let failed = post_to(&client, &url, &d.headers, d.body.clone().into()).await;
    assert_eq!(failed.status, 500);
    // The sender retries the same request: it gets through to the handler again.
    let retried = post_to(&client, &url, &d.headers, d.body.clone().into()).await;
    assert_eq!((retried.status, retried.text().as_str()), (200, "handled msg_5xx"));
    // Once handled, a replay is a duplicate again.
    let replay = post_to(&client, &url, &d.headers, d.body.clone().into()).await;
    assert_eq!((replay.status, replay.text().as_str()), (200, "duplicate"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn middleware_hang_up_mid_handler_releases_the_replay_mark() {
    let clock = ManualClock::at_unix(T0);
    let guard = Guard::builder(ENDPOINT, scheme()).clock(clock.clone()).build();
    let calls = Arc::new(AtomicUsize::new(0));
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<()>();
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let counter = Arc::clone(&calls);
    let app = Router::new()
        .route(
            PATH,
            post(move |_body: Bytes| async move {
                let call = counter.fetch_add(1, Ordering::SeqCst) + 1;
                if call == 1 {
                    let _armed = OnDrop(dropped_tx.clone());
                    let _ = started_tx.send(());
                    std::future::pending::<()>().await;
                }
                "handled"
            }),
        )
        .layer(VerifyLayer::new(guard));
    let addr = spawn_server(app).await;
    let d = Delivery::signed("msg_hangup", br#"{"type":"a"}"#, clock.now_for_tests());
    let mut request = d.raw_head(addr, d.body.len()).into_bytes();
    request.extend_from_slice(&d.body);
    let stream = common::raw_send(addr, &request).await;
    bounded("the handler to start", started.recv()).await;
    drop(stream);
    bounded("the handler to be dropped", dropped.recv()).await;
    let url = format!("http://{addr}{PATH}");
    let retried = post_to(&common::client(), &url, &d.headers, d.body.clone().into()).await;
    assert_eq!((retried.status, retried.text().as_str()), (200, "handled"));
}

/// Reports on a channel when dropped: proof that the server dropped a future.
struct OnDrop(mpsc::UnboundedSender<()>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// An inbox whose first push never finishes (a durable backend that hangs); it reports
/// when that push starts and when it is dropped.
#[derive(Debug, Clone)]
struct StallFirstPush {
    inner: RecordingInbox,
    first: Arc<AtomicBool>,
    started: mpsc::UnboundedSender<()>,
    dropped: mpsc::UnboundedSender<()>,
}

impl Inbox for StallFirstPush {
    fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<Pushed, InboxError>> {
        if self.first.swap(false, Ordering::SeqCst) {
            let armed = OnDrop(self.dropped.clone());
            let _ = self.started.send(());
            return Box::pin(async move {
                let _armed = armed;
                std::future::pending().await
            });
        }
        self.inner.push(webhook)
    }
    fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>> {
        self.inner.pull(max, lease)
    }
    fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>> {
        self.inner.ack(job)
    }
    fn retry<'a>(
        &'a self,
        job: &'a Job,
        not_before: OffsetDateTime,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        self.inner.retry(job, not_before, error)
    }
    fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>> {
        self.inner.dead_letter(job, error)
    }
    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, InboxError>> {
        self.inner.dead_letters(limit)
    }
    fn redrive<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        self.inner.redrive(key)
    }
    fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>> {
        self.inner.depth()
    }
}

#[tokio::test]
async fn hang_up_during_a_slow_inbox_push_releases_the_replay_mark() {
    let clock = ManualClock::at_unix(T0);
    let (recording, mut events) = RecordingInbox::new(MemoryInbox::new().clock(clock.clone()));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    let inbox = StallFirstPush {
        inner: recording,
        first: Arc::new(AtomicBool::new(true)),
        started: started_tx,
        dropped: dropped_tx,
    };
    let guard = Guard::builder(ENDPOINT, scheme()).clock(clock.clone()).inbox(inbox).build();
    let addr = spawn_server(Router::new().route_service(PATH, WebhookService::new(guard))).await;
    let d = Delivery::signed("msg_hangup", br#"{"type":"a"}"#, clock.now_for_tests());

    // Verified and marked, then the push hangs and the sender gives up.
    let mut request = d.raw_head(addr, d.body.len()).into_bytes();
    request.extend_from_slice(&d.body);
    let stream = common::raw_send(addr, &request).await;
    bounded("the push to start", started.recv()).await;
    drop(stream);
    bounded("the push to be abandoned", dropped.recv()).await;

    // Nothing was kept, so the sender's retry must be accepted, not called a duplicate.
    let url = format!("http://{addr}{PATH}");
    let retried = post_to(&common::client(), &url, &d.headers, d.body.clone().into()).await;
    assert_eq!(retried.status, 202, "{}", retried.text());
    assert_eq!(next_event(&mut events).await, Event::Pushed(key("msg_hangup")));
}

/// A receiver in middleware mode whose handler holds every request until the test says
/// how to answer it: it reports each delivery id when the handler starts, then waits for
/// a status on `answer` (no sleeps: the test decides when the first request finishes).
struct Gated {
    url: String,
    clock: ManualClock,
    calls: Arc<AtomicUsize>,
    started: mpsc::UnboundedReceiver<String>,
    answer: mpsc::UnboundedSender<StatusCode>,
    client: reqwest::Client,
}

impl Gated {
    async fn start(clock: ManualClock, configure: impl FnOnce(GuardBuilder) -> GuardBuilder) -> Self {
        let guard = configure(Guard::builder(ENDPOINT, scheme()).clock(clock.clone())).build();
        let calls = Arc::new(AtomicUsize::new(0));
        let (started_tx, started) = mpsc::unbounded_channel();
        let (answer, answers) = mpsc::unbounded_channel::<StatusCode>();
        let answers = Arc::new(tokio::sync::Mutex::new(answers));
        let counter = Arc::clone(&calls);
        let app = Router::new()
            .route(
                PATH,
                post(move |Extension(v): Extension<Verified<'static>>| async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let id = v.id().unwrap_or_default().to_owned();
                    let _ = started_tx.send(id.clone());
                    let status =
                        answers.lock().await.recv().await.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    (status, format!("handled {id}"))
                }),
            )
            .layer(VerifyLayer::new(guard));
        let addr = spawn_server(app).await;
        let (url, client) = (format!("http://{addr}{PATH}"), common::client());
        Self { url, clock, calls, started, answer, client }
    }

    async fn send(&self, d: &Delivery) -> Answer {
        post_to(&self.client, &self.url, &d.headers, d.body.clone().into()).await
    }

    /// Sends `d` in the background and waits until its handler runs (and holds it).
    async fn hold(&mut self, d: &Delivery) -> tokio::task::JoinHandle<Answer> {
        let (client, url, d2) = (self.client.clone(), self.url.clone(), d.clone());
        let answer =
            tokio::spawn(async move { post_to(&client, &url, &d2.headers, d2.body.clone().into()).await });
        let id = bounded("the handler to start", self.started.recv()).await.expect("handler started");
        assert_eq!(id, header(&d.headers, "webhook-id"));
        answer
    }

    /// Lets the held handler answer `status`; its answer as the sender got it.
    async fn release(&self, held: tokio::task::JoinHandle<Answer>, status: StatusCode) -> Answer {
        self.answer.send(status).expect("the handler waits");
        bounded("the held request's answer", held).await.expect("request task")
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Checks a `409 delivery-in-progress` answer: retryable, with `Retry-After`.
fn assert_in_progress(name: &str, a: &Answer) {
    assert_problem(name, a.status, &a.headers, &a.body, 409, "delivery-in-progress", &[SECRET, SECRET_KEY]);
    assert_eq!(a.headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"5"[..]), "{name}: Retry-After");
}

#[tokio::test]
async fn middleware_copy_while_the_first_is_handled_gets_409_then_a_duplicate_once_it_succeeded() {
    let mut r = Gated::start(ManualClock::at_unix(T0), |b| b).await;
    let d = Delivery::signed("msg_inflight_ok", br#"{"type":"a"}"#, r.clock.now_for_tests());

    let first = r.hold(&d).await;
    // The first request's handler runs: a copy (the sender's retry, another replica) is
    // not acknowledged yet, since the first may still fail.
    let copy = r.send(&d).await;
    assert_in_progress("copy while handled", &copy);
    assert_eq!(r.calls(), 1, "the copy did not reach the handler");

    let first = r.release(first, StatusCode::OK).await;
    assert_eq!((first.status, first.text().as_str()), (200, "handled msg_inflight_ok"));
    let copy = r.send(&d).await;
    assert_eq!((copy.status, copy.text().as_str()), (200, "duplicate"));
    assert_eq!(r.calls(), 1);
}

#[tokio::test]
async fn middleware_copy_refused_while_the_first_fails_is_handled_on_its_retry() {
    let mut r = Gated::start(ManualClock::at_unix(T0), |b| b).await;
    let d = Delivery::signed("msg_inflight_5xx", br#"{"type":"a"}"#, r.clock.now_for_tests());

    let first = r.hold(&d).await;
    assert_in_progress("copy while handled", &r.send(&d).await);
    let first = r.release(first, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_eq!(first.status, 500);

    // The copy that got 409 is retried by its sender: handled now, not a duplicate.
    let retry = r.hold(&d).await;
    let retry = r.release(retry, StatusCode::OK).await;
    assert_eq!((retry.status, retry.text().as_str()), (200, "handled msg_inflight_5xx"));
    assert_eq!(r.calls(), 2);
    assert_eq!(r.send(&d).await.text(), "duplicate");
}

#[tokio::test]
async fn middleware_in_progress_status_is_configurable() {
    let mut r = Gated::start(ManualClock::at_unix(T0), |b| {
        b.in_progress_status(StatusCode::SERVICE_UNAVAILABLE).retry_after(2)
    })
    .await;
    let d = Delivery::signed("msg_inflight_503", br#"{"type":"a"}"#, r.clock.now_for_tests());
    let first = r.hold(&d).await;
    let copy = r.send(&d).await;
    assert_problem("configured", copy.status, &copy.headers, &copy.body, 503, "delivery-in-progress", &[]);
    assert_eq!(copy.headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"2"[..]));
    assert_eq!(r.release(first, StatusCode::OK).await.status, 200);
}

/// A replica killed mid-handler (SIGKILL: nothing cancels) leaves its reservation in the
/// shared store: copies get `409` until its lease runs out, then the retry is handled,
/// and the confirmed mark lives on well past the lease.
async fn a_reservation_left_by_a_killed_replica_lets_the_retry_through_after_the_lease(
    what: &str,
    clock: ManualClock,
    store: Arc<dyn ReplayStore>,
) {
    let lease = Duration::from_secs(30);
    let shared = Arc::clone(&store);
    let mut r = Gated::start(clock.clone(), move |b| b.replay_store(shared).pending_lease(lease)).await;
    let d = Delivery::signed("msg_killed", br#"{"type":"a"}"#, clock.now_for_tests());
    let k = key("msg_killed");
    assert_eq!(
        store.reserve(k.as_bytes(), 42, lease).await.unwrap(),
        Mark::New,
        "{what}: the killed replica"
    );

    assert_in_progress(what, &r.send(&d).await);
    clock.advance(lease - Duration::from_secs(1));
    assert_in_progress(what, &r.send(&d).await);
    assert_eq!(r.calls(), 0, "{what}");

    clock.advance(Duration::from_secs(2));
    let retry = r.hold(&d).await;
    let retry = r.release(retry, StatusCode::OK).await;
    assert_eq!((retry.status, retry.text().as_str()), (200, "handled msg_killed"), "{what}");
    // The killed replica's reservation is gone; its holder can no longer remove the mark.
    store.cancel(k.as_bytes(), 42).await.unwrap();
    clock.advance(lease * 3);
    assert_eq!(r.send(&d).await.text(), "duplicate", "{what}: confirmed for the replay time to live");
    assert_eq!(r.calls(), 1, "{what}");
}

#[tokio::test]
async fn a_killed_replicas_reservation_in_memory_expires_after_the_lease() {
    let clock = ManualClock::at_unix(T0);
    let store = Arc::new(MemoryReplayStore::new().clock(clock.clone()));
    a_reservation_left_by_a_killed_replica_lets_the_retry_through_after_the_lease("memory", clock, store)
        .await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_killed_replicas_reservation_in_redis_expires_after_the_lease() {
    let Ok(url) = std::env::var("HOOKGUARD_TEST_REDIS_URL") else {
        eprintln!("skipped: HOOKGUARD_TEST_REDIS_URL is not set");
        return;
    };
    let clock = ManualClock::at_unix(T0);
    let store = hookguard::replay::RedisReplayStore::connect(&url)
        .await
        .expect("HOOKGUARD_TEST_REDIS_URL is set: Redis must answer")
        .prefix(format!("{}:", common::unique("replay")))
        .clock(clock.clone());
    a_reservation_left_by_a_killed_replica_lets_the_retry_through_after_the_lease(
        "redis",
        clock,
        Arc::new(store),
    )
    .await;
}
