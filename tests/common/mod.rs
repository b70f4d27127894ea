//! Shared test helpers.
//!
//! - Conformance suites: every replay store and inbox backend runs the same tests
//!   through one macro invocation (see `tests/backends.rs`).
//! - HTTP helpers (see `tests/http.rs`): a server on a real loopback socket, signing with
//!   a preset's [`Sign`] impl, a raw HTTP/1.1 client for misbehaving senders, an inbox
//!   that reports what the pipeline did with it, problem+json checks.
//! - [`receiver`]: `examples/durable_receiver` as child processes on a backend (see
//!   `tests/crash.rs` and `tests/replicas.rs`).
#![allow(dead_code)]

pub mod receiver;

use std::{net::SocketAddr, time::Duration};

use hookguard::{
    inbox::{BoxFuture, DeadLetter, Inbox, InboxError, Job, MemoryInbox, Pushed, Webhook},
    verify::{Outgoing, Sign, Verified},
};
use http::{HeaderName, HeaderValue};
use time::OffsetDateTime;

/// A webhook with this id at endpoint `test`.
pub fn webhook(id: &str) -> Webhook {
    let v = Verified::new("github", Some(id.to_owned().into()), None, Some("push".into()), [0; 32], 0);
    let mut headers = http::HeaderMap::new();
    headers.insert("x-github-event", http::HeaderValue::from_static("push"));
    Webhook::new("test", &v, headers, format!("{{\"id\":\"{id}\"}}").into(), time::OffsetDateTime::UNIX_EPOCH)
}

/// How long any one wait in a test may take before the test fails (never a sleep: a
/// bound on waiting for a channel, a response or a task).
pub const BOUND: Duration = Duration::from_secs(10);

/// A name no other test (in this run or an earlier one) uses: isolates tests that share a
/// service (key prefixes, schemas).
pub fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!(
        "hg_test_{what}_{}_{}_{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 0xffff_ffff
    )
}

/// Polls `fut` once, so that whatever it does before its first pause (a waiter
/// registering, say) has happened, and gives back the rest of it to be awaited.
pub async fn started<F: std::future::Future>(fut: F) -> impl std::future::Future<Output = F::Output> {
    let mut fut = Box::pin(fut);
    let first = futures_util::poll!(fut.as_mut());
    async move {
        match first {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => fut.await,
        }
    }
}

/// Awaits `fut`, failing the test with `what` when it takes longer than [`BOUND`].
pub async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(BOUND, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {BOUND:?} waiting for {what}"),
    }
}

/// Serves `router` on `127.0.0.1:0` and answers the address it got.
pub async fn spawn_server(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("server");
    });
    addr
}

/// A real HTTP client that ignores proxy settings from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("reqwest client")
}

/// The headers `scheme` signs `body` with, as the provider would send them.
pub fn sign(scheme: &impl Sign, body: &[u8], id: &str, at: OffsetDateTime) -> Vec<(HeaderName, HeaderValue)> {
    scheme.sign(&Outgoing::new(body).id(id).timestamp(at)).expect("sign")
}

/// A whole HTTP/1.1 answer as read off a raw socket.
#[derive(Debug)]
pub struct RawAnswer {
    /// The status code from the status line.
    pub status: u16,
    /// Everything received, head and body.
    pub text: String,
}

/// Connects to `addr` and writes `bytes` on a raw socket (bounded by [`BOUND`]).
pub async fn raw_send(addr: SocketAddr, bytes: &[u8]) -> tokio::net::TcpStream {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut out = bytes;
    let write = async {
        while !out.is_empty() {
            stream.writable().await.expect("writable");
            match stream.try_write(out) {
                Ok(n) => out = &out[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
        }
    };
    bounded("writing the request", write).await;
    stream
}

/// Writes `head` (a request head, ending in an empty line) and `body_part` on a raw
/// socket and then sends nothing more: a sender that declares a body and stalls. Reads
/// the answer (until its `Content-Length` is complete or the server closes), bounded by
/// [`BOUND`].
pub async fn raw_exchange(addr: SocketAddr, head: &str, body_part: &[u8]) -> RawAnswer {
    let stream = raw_send(addr, &[head.as_bytes(), body_part].concat()).await;
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            if stream.readable().await.is_err() {
                break;
            }
            let n = match stream.try_read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => 0,
            };
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
        }
        buf
    };
    let buf = bounded("a raw HTTP answer", read).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in {text:?}"));
    RawAnswer { status, text }
}

/// Checks a problem+json answer: its status, its stable `type`, and that none of
/// `secrets` (secret, expected signature, …) appears anywhere in it.
pub fn assert_problem(
    name: &str,
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
    want_status: u16,
    want_code: &str,
    secrets: &[&str],
) {
    assert_eq!(status, want_status, "{name}: status (body: {})", String::from_utf8_lossy(body));
    assert_eq!(
        headers.get(http::header::CONTENT_TYPE).map(HeaderValue::as_bytes),
        Some(&b"application/problem+json"[..]),
        "{name}: content type"
    );
    let problem: serde_json::Value = serde_json::from_slice(body).expect("problem+json body");
    assert_eq!(
        problem["type"],
        format!("{}{want_code}", hookguard::problem::TYPE_BASE),
        "{name}: problem type"
    );
    assert_eq!(problem["status"], want_status, "{name}: problem status");
    assert_no_secrets(name, headers, body, secrets);
}

/// Fails when any of `secrets` appears in the answer's headers or body.
pub fn assert_no_secrets(name: &str, headers: &http::HeaderMap, body: &[u8], secrets: &[&str]) {
    let body = String::from_utf8_lossy(body);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!body.contains(secret), "{name}: the answer's body holds {secret:?}: {body}");
        for (header, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(!value.contains(secret), "{name}: header {header} holds {secret:?}");
        }
    }
}

/// What a [`RecordingInbox`] was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A push the inner inbox kept.
    Pushed(String),
    /// A push refused (full) or found a duplicate.
    NotPushed(String),
    /// A job was acknowledged after attempt `attempt`.
    Acked { key: String, attempt: u32 },
    /// A job is to run again not before `at` after attempt `attempt`.
    Retried { key: String, attempt: u32, at: OffsetDateTime, error: String },
    /// A job was dead-lettered after attempt `attempt`.
    Dead { key: String, attempt: u32, error: String },
    /// A job was given back unprocessed (shutdown), due at `at`.
    GivenBack { key: String, at: OffsetDateTime },
}

/// A [`MemoryInbox`] that reports every push, ack, retry and dead letter on a channel,
/// so a test waits for exactly what it expects instead of polling or sleeping.
#[derive(Debug, Clone)]
pub struct RecordingInbox {
    inner: MemoryInbox,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
}

impl RecordingInbox {
    /// Wraps `inner`; events arrive on the receiver.
    pub fn new(inner: MemoryInbox) -> (Self, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self { inner, events }, rx)
    }

    fn report(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

/// The next event, bounded by [`BOUND`].
pub async fn next_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Event {
    bounded("an inbox event", rx.recv()).await.expect("inbox event channel open")
}

impl Inbox for RecordingInbox {
    fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<Pushed, InboxError>> {
        Box::pin(async move {
            let key = webhook.key().to_owned();
            let pushed = self.inner.push(webhook).await;
            self.report(match pushed {
                Ok(Pushed::Accepted) => Event::Pushed(key),
                _ => Event::NotPushed(key),
            });
            pushed
        })
    }
    fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>> {
        self.inner.pull(max, lease)
    }
    fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move {
            let done = self.inner.ack(job).await;
            if done.is_ok() {
                self.report(Event::Acked { key: job.webhook().key().to_owned(), attempt: job.attempt() });
            }
            done
        })
    }
    fn retry<'a>(
        &'a self,
        job: &'a Job,
        not_before: OffsetDateTime,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move {
            let done = self.inner.retry(job, not_before, error).await;
            if done.is_ok() {
                self.report(Event::Retried {
                    key: job.webhook().key().to_owned(),
                    attempt: job.attempt(),
                    at: not_before,
                    error: error.to_owned(),
                });
            }
            done
        })
    }
    fn give_back<'a>(&'a self, job: &'a Job, now: OffsetDateTime) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move {
            let done = self.inner.give_back(job, now).await;
            if done.is_ok() {
                self.report(Event::GivenBack { key: job.webhook().key().to_owned(), at: now });
            }
            done
        })
    }
    fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move {
            let done = self.inner.dead_letter(job, error).await;
            if done.is_ok() {
                self.report(Event::Dead {
                    key: job.webhook().key().to_owned(),
                    attempt: job.attempt(),
                    error: error.to_owned(),
                });
            }
            done
        })
    }
    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, InboxError>> {
        self.inner.dead_letters(limit)
    }
    fn redrive<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        self.inner.redrive(key)
    }
    fn discard<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        self.inner.discard(key)
    }
    fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>> {
        self.inner.depth()
    }
    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        self.inner.wait(timeout)
    }
}

/// The value of an `Option` that is `None` when a conformance suite's backend is not
/// configured (its environment variable is unset): then the test says it skipped.
#[macro_export]
macro_rules! or_skip {
    ($e:expr) => {
        match $e {
            Some(x) => x,
            None => {
                eprintln!("skipped: backend not configured");
                return;
            }
        }
    };
}

/// Runs the inbox conformance suite. `$make` is an async fn
/// `(clock: ManualClock, capacity: usize, store: &str) -> Option<I>` (`I: Inbox`) that opens
/// an inbox on a store of its own named `store`; `None` means the backend is not available
/// here (the tests then say they skipped). `$replica` is an async fn
/// `(of: &I, clock: ManualClock, store: &str) -> I` that opens another inbox on the same
/// store, as another replica would (a clone for the in-process backends).
///
/// An attribute after them (`#[ignore = "why"]`) marks
/// `a_push_after_the_clock_stepped_back_is_due`, for a backend known to fail it.
#[macro_export]
macro_rules! inbox_conformance {
    ($make:path, $replica:path $(, #[$stepped_back:meta])?) => {
        use std::time::Duration;

        use hookguard::inbox::{Inbox, InboxError, Pushed};

        const LEASE: Duration = Duration::from_secs(30);

        async fn setup(capacity: usize) -> Option<(impl Inbox, hookguard::clock::ManualClock)> {
            let clock = hookguard::clock::ManualClock::at_unix(1_700_000_000);
            let store = $crate::common::unique("inbox");
            $make(clock.clone(), capacity, &store).await.map(|inbox| (inbox, clock))
        }

        /// Two inboxes on one store, as two replicas open them, on one clock.
        async fn replicas() -> Option<(impl Inbox, impl Inbox)> {
            let clock = hookguard::clock::ManualClock::at_unix(1_700_000_000);
            let store = $crate::common::unique("inbox");
            let inbox = $make(clock.clone(), 100, &store).await?;
            let replica = $replica(&inbox, clock, &store).await;
            Some((inbox, replica))
        }

        #[tokio::test]
        async fn push_then_duplicate() {
            let (inbox, _) = or_skip!(setup(100).await);
            assert_eq!(inbox.push($crate::common::webhook("a")).await.unwrap(), Pushed::Accepted);
            assert_eq!(inbox.push($crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
            assert_eq!(inbox.depth().await.unwrap(), 1);
        }

        /// A webhook built by hand with more header values than a kept webhook can have
        /// (the guard refuses such a request with `431`) is refused, or kept whole: never
        /// accepted and then set aside as damaged at its first pull.
        #[tokio::test]
        async fn a_webhook_with_too_many_headers_is_refused_or_kept_whole() {
            let (inbox, _) = or_skip!(setup(100).await);
            let mut headers = http::HeaderMap::new();
            for _ in 0..5000 {
                headers.append("x-many", http::HeaderValue::from_static("v"));
            }
            let v = hookguard::verify::Verified::new("github", Some("many".into()), None, None, [0; 32], 0);
            let epoch = time::OffsetDateTime::UNIX_EPOCH;
            let hook = hookguard::inbox::Webhook::new("test", &v, headers, "{}".into(), epoch);
            match inbox.push(hook).await {
                Err(InboxError::Backend(e)) => {
                    assert!(e.to_string().contains("more headers"), "{e}");
                    assert_eq!(inbox.depth().await.unwrap(), 0, "nothing kept");
                }
                Ok(Pushed::Accepted) => {
                    let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
                    assert_eq!(job.webhook().headers().len(), 5000, "kept whole");
                }
                other => panic!("{other:?}"),
            }
            assert!(inbox.dead_letters(10).await.unwrap().is_empty(), "nothing set aside");
        }

        #[tokio::test]
        async fn push_now_and_ack_now_answer_as_push_and_ack_would() {
            let (inbox, _) = or_skip!(setup(100).await);
            let hook = $crate::common::webhook("now");
            // An inbox that needs I/O has no answer at once: `push` and `ack` do the work.
            let pushed = match inbox.push_now(&hook) {
                Some(pushed) => pushed.unwrap(),
                None => inbox.push(hook.clone()).await.unwrap(),
            };
            assert_eq!(pushed, Pushed::Accepted);
            assert_eq!(inbox.push(hook.clone()).await.unwrap(), Pushed::Duplicate, "one inbox behind both");
            if let Some(again) = inbox.push_now(&hook) {
                assert_eq!(again.unwrap(), Pushed::Duplicate);
            }
            let job = inbox.pull(10, LEASE).await.unwrap().remove(0);
            assert_eq!(job.webhook().key(), hook.key());
            match inbox.ack_now(&job) {
                Some(acked) => acked.unwrap(),
                None => inbox.ack(&job).await.unwrap(),
            }
            assert_eq!(inbox.depth().await.unwrap(), 0);
            assert_eq!(inbox.push(hook).await.unwrap(), Pushed::Duplicate, "finished, and remembered");
        }

        #[tokio::test]
        async fn pull_one_now_answers_as_a_pull_of_one_would() {
            let (inbox, clock) = or_skip!(setup(100).await);
            // An inbox that needs I/O has no answer at once: workers call `pull` (above).
            let Some(nothing) = inbox.pull_one_now(LEASE) else { return };
            assert!(nothing.unwrap().is_none(), "nothing pushed: nothing due");
            for id in ["one-a", "one-b"] {
                inbox.push($crate::common::webhook(id)).await.unwrap();
            }
            let a = inbox.pull_one_now(LEASE).unwrap().unwrap().expect("due");
            assert_eq!(a.webhook(), &$crate::common::webhook("one-a"), "first pushed, first out, unchanged");
            assert_eq!(a.attempt(), 1);
            let rest = inbox.pull(10, LEASE).await.unwrap();
            let keys: Vec<_> = rest.iter().map(|j| j.webhook().key()).collect();
            assert_eq!(keys, [$crate::common::webhook("one-b").key()], "one inbox behind both, `a` leased");
            inbox.retry(&a, clock.now_for_tests(), "boom").await.unwrap();
            let again = inbox.pull_one_now(LEASE).unwrap().unwrap().expect("due again");
            assert_eq!((again.webhook().key(), again.attempt()), (a.webhook().key(), 2));
            assert!(inbox.pull_one_now(LEASE).unwrap().unwrap().is_none(), "both leased");
            assert!(matches!(inbox.ack(&a).await, Err(InboxError::LeaseLost)), "the first lease is over");
            inbox.ack(&again).await.unwrap();
            inbox.ack(&rest[0]).await.unwrap();
            assert_eq!(inbox.depth().await.unwrap(), 0);
        }

        #[tokio::test]
        async fn pull_gives_the_webhook_back_unchanged_then_ack_removes_it() {
            let (inbox, _) = or_skip!(setup(100).await);
            let sent = $crate::common::webhook("a");
            inbox.push(sent.clone()).await.unwrap();
            let jobs = inbox.pull(10, LEASE).await.unwrap();
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].attempt(), 1);
            let got = jobs[0].webhook();
            assert_eq!(got.key(), sent.key());
            assert_eq!(got.body(), sent.body());
            assert_eq!(got.event(), Some("push"));
            assert_eq!(got.headers().get("x-github-event").unwrap(), "push");
            assert!(inbox.pull(10, LEASE).await.unwrap().is_empty(), "leased jobs are not handed out twice");
            inbox.ack(&jobs[0]).await.unwrap();
            assert_eq!(inbox.depth().await.unwrap(), 0);
            // A late resend of a processed delivery is still a duplicate.
            assert_eq!(inbox.push(sent).await.unwrap(), Pushed::Duplicate);
        }

        #[tokio::test]
        async fn expired_lease_brings_the_job_back() {
            let (inbox, clock) = or_skip!(setup(100).await);
            inbox.push($crate::common::webhook("a")).await.unwrap();
            let first = inbox.pull(1, LEASE).await.unwrap();
            assert_eq!(first.len(), 1);
            clock.advance(LEASE + Duration::from_secs(1));
            let again = inbox.pull(1, LEASE).await.unwrap();
            assert_eq!(again.len(), 1, "a crashed worker's job comes back");
            assert_eq!(again[0].attempt(), 2);
            // The first worker's late ack is refused: its lease is gone.
            assert!(matches!(inbox.ack(&first[0]).await, Err(InboxError::LeaseLost)));
            inbox.ack(&again[0]).await.unwrap();
            assert_eq!(inbox.depth().await.unwrap(), 0);
        }

        /// A lease too long for the calendar is no limit, not a panic (a worker's lease
        /// from configuration), on every backend.
        #[tokio::test]
        async fn a_lease_too_long_for_the_calendar_never_runs_out() {
            let (inbox, clock) = or_skip!(setup(100).await);
            inbox.push($crate::common::webhook("a")).await.unwrap();
            let held = inbox.pull(1, Duration::MAX).await.unwrap();
            assert_eq!(held.len(), 1);
            clock.advance(Duration::from_secs(100 * 365 * 86_400));
            assert!(inbox.pull(1, LEASE).await.unwrap().is_empty(), "still leased a century later");
            inbox.ack(&held[0]).await.unwrap();
            assert_eq!(inbox.depth().await.unwrap(), 0);
        }

        /// Pushed jobs are due whatever the wall clock says: one stepped back (an NTP
        /// step, a host started with its clock ahead, then set right) holds up none of
        /// those already accepted, and a wait for them ends at once.
        #[tokio::test]
        $(#[$stepped_back])?
        async fn a_push_after_the_clock_stepped_back_is_due() {
            let (inbox, clock) = or_skip!(setup(100).await);
            inbox.push($crate::common::webhook("before")).await.unwrap();
            clock.set_unix(1_700_000_000 - 100);
            $crate::common::bounded("a wait with work there", inbox.wait(Duration::from_secs(60))).await;
            inbox.push($crate::common::webhook("after")).await.unwrap();
            let jobs = inbox.pull(10, LEASE).await.unwrap();
            let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap()).collect();
            assert_eq!(ids, ["before", "after"], "pushed jobs are due whatever the wall clock says");
        }

        #[tokio::test]
        async fn retries_wait_for_their_time_and_keep_order() {
            let (inbox, clock) = or_skip!(setup(100).await);
            for id in ["a", "b", "c"] {
                inbox.push($crate::common::webhook(id)).await.unwrap();
            }
            let jobs = inbox.pull(3, LEASE).await.unwrap();
            assert_eq!(jobs.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["a", "b", "c"]);
            let now = clock.now_for_tests();
            inbox.retry(&jobs[0], now + Duration::from_secs(20), "boom").await.unwrap();
            inbox.retry(&jobs[1], now + Duration::from_secs(10), "boom").await.unwrap();
            inbox.ack(&jobs[2]).await.unwrap();
            assert!(inbox.pull(10, LEASE).await.unwrap().is_empty(), "not due yet");
            clock.advance(Duration::from_secs(10));
            let due = inbox.pull(10, LEASE).await.unwrap();
            assert_eq!(due.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["b"]);
            assert_eq!(due[0].attempt(), 2);
            clock.advance(Duration::from_secs(10));
            let due = inbox.pull(10, LEASE).await.unwrap();
            assert_eq!(due.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["a"]);
        }

        #[tokio::test]
        async fn a_job_given_back_is_due_at_once_and_its_attempt_does_not_count() {
            let (inbox, clock) = or_skip!(setup(100).await);
            inbox.push($crate::common::webhook("g")).await.unwrap();
            let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
            assert_eq!(job.attempt(), 1);
            inbox.give_back(&job, clock.now_for_tests()).await.unwrap();
            let again = inbox.pull(1, LEASE).await.unwrap();
            assert_eq!(again.len(), 1, "due at once");
            assert_eq!(again[0].attempt(), 1, "giving back does not use up an attempt");
            // A retry does count, and a stale receipt cannot give a job back.
            inbox.retry(&again[0], clock.now_for_tests(), "boom").await.unwrap();
            assert!(matches!(
                inbox.give_back(&again[0], clock.now_for_tests()).await,
                Err(InboxError::LeaseLost)
            ));
            let third = inbox.pull(1, LEASE).await.unwrap().remove(0);
            assert_eq!(third.attempt(), 2);
            inbox.ack(&third).await.unwrap();
            assert_eq!(inbox.depth().await.unwrap(), 0);
        }

        #[tokio::test]
        async fn dead_letters_are_listed_and_redriven() {
            let (inbox, _) = or_skip!(setup(100).await);
            inbox.push($crate::common::webhook("a")).await.unwrap();
            let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
            inbox.dead_letter(&job, "handler said no").await.unwrap();
            assert_eq!(inbox.depth().await.unwrap(), 0);
            assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
            let dead = inbox.dead_letters(10).await.unwrap();
            assert_eq!(dead.len(), 1);
            assert_eq!(dead[0].webhook.id(), Some("a"));
            assert_eq!(dead[0].attempts, 1);
            assert_eq!(dead[0].error, "handler said no");
            // A resend of a dead-lettered delivery is a duplicate: it is kept already.
            assert_eq!(inbox.push($crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
            assert!(inbox.redrive(job.webhook().key()).await.unwrap());
            assert!(!inbox.redrive("no-such-key").await.unwrap());
            assert!(inbox.dead_letters(10).await.unwrap().is_empty());
            let again = inbox.pull(1, LEASE).await.unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].attempt(), 1, "a re-driven job starts its attempts again");
        }

        /// A discarded dead letter is gone for good: its room is free, its key is
        /// remembered as finished; only a dead letter is discarded.
        #[tokio::test]
        async fn dead_letters_are_discarded_and_make_room() {
            let (inbox, clock) = or_skip!(setup(2).await);
            let (a, b) = ($crate::common::webhook("a"), $crate::common::webhook("b"));
            assert_eq!(inbox.push(a.clone()).await.unwrap(), Pushed::Accepted);
            assert_eq!(inbox.push(b.clone()).await.unwrap(), Pushed::Accepted);
            let jobs = inbox.pull(2, LEASE).await.unwrap();
            assert_eq!(jobs.len(), 2);
            for job in &jobs {
                inbox.dead_letter(job, "handler said no").await.unwrap();
            }
            assert!(
                matches!(inbox.push($crate::common::webhook("c")).await, Err(InboxError::Full)),
                "dead letters take room"
            );
            assert!(inbox.discard(a.key()).await.unwrap());
            assert!(!inbox.discard(a.key()).await.unwrap(), "discarded already");
            assert!(!inbox.discard("no-such-key").await.unwrap());
            let dead = inbox.dead_letters(10).await.unwrap();
            assert_eq!(dead.iter().map(|d| d.webhook.id().unwrap()).collect::<Vec<_>>(), ["b"]);
            assert!(!inbox.redrive(a.key()).await.unwrap(), "nothing left to re-drive");
            assert_eq!(inbox.depth().await.unwrap(), 0);
            let c = $crate::common::webhook("c");
            assert_eq!(inbox.push(c.clone()).await.unwrap(), Pushed::Accepted, "room made");
            assert_eq!(inbox.push(a).await.unwrap(), Pushed::Duplicate, "remembered as finished");
            assert!(
                matches!(inbox.push($crate::common::webhook("d")).await, Err(InboxError::Full)),
                "b and c"
            );
            // Only a dead letter is discarded: a waiting, a leased or a finished job stays.
            assert!(!inbox.discard(c.key()).await.unwrap(), "waiting");
            assert_eq!(inbox.depth().await.unwrap(), 1);
            let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
            assert_eq!(job.webhook().id(), Some("c"), "still there to pull");
            assert!(!inbox.discard(c.key()).await.unwrap(), "leased");
            inbox.retry(&job, clock.now_for_tests() + Duration::from_secs(10), "later").await.unwrap();
            assert!(!inbox.discard(c.key()).await.unwrap(), "retrying");
            clock.advance(Duration::from_secs(10));
            let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
            assert_eq!((job.webhook().id(), job.attempt()), (Some("c"), 2));
            inbox.ack(&job).await.expect("the lease still holds");
            assert!(!inbox.discard(c.key()).await.unwrap(), "finished");
            assert_eq!(inbox.push(c).await.unwrap(), Pushed::Duplicate);
            assert_eq!(inbox.dead_letters(10).await.unwrap().len(), 1, "b is still a dead letter");
        }

        /// A timeout too long to add to the clock (`Duration::MAX`: "no timeout") is a
        /// long wait, not a panic; work already there ends it at once.
        #[tokio::test]
        async fn a_wait_without_timeout_returns_for_work_already_there() {
            let (inbox, _) = or_skip!(setup(100).await);
            inbox.push($crate::common::webhook("a")).await.unwrap();
            $crate::common::bounded("a wait with work there", inbox.wait(Duration::MAX)).await;
            assert_eq!(inbox.pull(1, LEASE).await.unwrap().len(), 1);
        }

        #[tokio::test]
        async fn bounded_depth_answers_full() {
            let (inbox, _) = or_skip!(setup(2).await);
            inbox.push($crate::common::webhook("a")).await.unwrap();
            inbox.push($crate::common::webhook("b")).await.unwrap();
            assert!(matches!(inbox.push($crate::common::webhook("c")).await, Err(InboxError::Full)));
            let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
            inbox.ack(&job).await.unwrap();
            assert_eq!(inbox.push($crate::common::webhook("c")).await.unwrap(), Pushed::Accepted);
        }

        #[tokio::test]
        async fn concurrent_pushes_of_one_delivery_keep_it_once() {
            let (inbox, _) = or_skip!(setup(100).await);
            let inbox = std::sync::Arc::new(inbox);
            let mut tasks = Vec::new();
            for _ in 0..50 {
                let inbox = std::sync::Arc::clone(&inbox);
                tasks.push(tokio::spawn(async move {
                    inbox.push($crate::common::webhook("same")).await.unwrap()
                }));
            }
            let mut accepted = 0;
            for t in tasks {
                if t.await.unwrap() == Pushed::Accepted {
                    accepted += 1;
                }
            }
            assert_eq!(accepted, 1);
            assert_eq!(inbox.depth().await.unwrap(), 1);
        }

        #[tokio::test]
        async fn wait_with_nothing_pushed_returns_by_its_timeout() {
            let (inbox, _) = or_skip!(setup(100).await);
            assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
            $crate::common::bounded(
                "a 200 ms wait with nothing pushed",
                inbox.wait(Duration::from_millis(200)),
            )
            .await;
        }

        #[tokio::test]
        async fn a_long_wait_ends_when_another_replica_pushes() {
            let (inbox, replica) = or_skip!(replicas().await);
            for id in ["a", "b", "c"] {
                // As a worker does: a pull that finds nothing, then a wait.
                assert!(inbox.pull(1, LEASE).await.unwrap().is_empty(), "{id}: nothing left");
                let waiting = $crate::common::started(inbox.wait(Duration::from_secs(60))).await;
                assert_eq!(replica.push($crate::common::webhook(id)).await.unwrap(), Pushed::Accepted);
                $crate::common::bounded("a 60 s wait to end after another replica's push", waiting).await;
                let jobs = inbox.pull(1, LEASE).await.unwrap();
                assert_eq!(jobs.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), [id]);
                inbox.ack(&jobs[0]).await.unwrap();
            }
        }

        #[tokio::test]
        async fn a_push_between_a_pull_and_the_wait_is_not_missed() {
            let (inbox, replica) = or_skip!(replicas().await);
            assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
            assert_eq!(replica.push($crate::common::webhook("a")).await.unwrap(), Pushed::Accepted);
            $crate::common::bounded(
                "a 60 s wait to end for a push made since the last pull",
                inbox.wait(Duration::from_secs(60)),
            )
            .await;
            assert_eq!(inbox.pull(1, LEASE).await.unwrap().len(), 1);
        }
    };
}

/// Runs the replay-store conformance suite. `$make` is an async fn
/// `(clock: ManualClock, capacity: usize) -> Option<impl ReplayStore>`.
#[macro_export]
macro_rules! replay_conformance {
    ($make:path) => {
        use std::time::Duration;

        use hookguard::replay::{Mark, ReplayStore, StoreError};

        async fn setup(capacity: usize) -> Option<(impl ReplayStore, hookguard::clock::ManualClock)> {
            let clock = hookguard::clock::ManualClock::at_unix(1_700_000_000);
            $make(clock.clone(), capacity).await.map(|store| (store, clock))
        }

        fn key(name: &str) -> Vec<u8> {
            format!("conformance:{}:{name}", std::process::id()).into_bytes()
        }

        /// A time to live too long for any clock (`Duration::MAX`) keeps the mark, as
        /// for good: never an error.
        #[tokio::test]
        async fn a_huge_time_to_live_keeps_the_mark() {
            let (store, _) = or_skip!(setup(100).await);
            let (k, r) = (key("huge"), key("huge-reserved"));
            let _ = (store.unmark(&k).await, store.unmark(&r).await);
            assert_eq!(store.mark(&k, Duration::MAX).await.unwrap(), Mark::New);
            assert_eq!(store.mark(&k, Duration::MAX).await.unwrap(), Mark::Seen);
            assert_eq!(store.reserve(&r, 1, Duration::MAX).await.unwrap(), Mark::New);
            store.confirm(&r, Duration::MAX).await.unwrap();
            assert_eq!(store.reserve(&r, 2, Duration::from_secs(1)).await.unwrap(), Mark::Seen);
            // Not left in a shared store for a century.
            store.unmark(&k).await.unwrap();
            store.unmark(&r).await.unwrap();
        }

        /// `is_confirmed` says yes for a live confirmed mark only: not for a reservation,
        /// nothing, or a mark that expired; it takes nothing.
        #[tokio::test]
        async fn is_confirmed_answers_for_live_confirmed_marks_only() {
            let (store, clock) = or_skip!(setup(100).await);
            let k = key("confirmed");
            let _ = store.unmark(&k).await;
            assert!(!store.is_confirmed(&k).await.unwrap(), "nothing there");
            assert_eq!(store.reserve(&k, 7, Duration::from_secs(30)).await.unwrap(), Mark::New);
            assert!(!store.is_confirmed(&k).await.unwrap(), "only reserved");
            assert_eq!(
                store.reserve(&k, 8, Duration::from_secs(30)).await.unwrap(),
                Mark::Pending,
                "untouched"
            );
            store.confirm(&k, Duration::from_secs(60)).await.unwrap();
            assert!(store.is_confirmed(&k).await.unwrap());
            assert_eq!(store.reserve(&k, 9, Duration::from_secs(30)).await.unwrap(), Mark::Seen, "untouched");
            clock.advance(Duration::from_secs(61));
            assert!(!store.is_confirmed(&k).await.unwrap(), "expired");
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn mark_once_then_seen_until_expiry() {
            let (store, clock) = or_skip!(setup(100).await);
            let k = key("expiry");
            let _ = store.unmark(&k).await;
            assert_eq!(store.mark(&k, Duration::from_secs(60)).await.unwrap(), Mark::New);
            assert_eq!(store.mark(&k, Duration::from_secs(60)).await.unwrap(), Mark::Seen);
            clock.advance(Duration::from_secs(61));
            assert_eq!(
                store.mark(&k, Duration::from_secs(60)).await.unwrap(),
                Mark::New,
                "expired marks are gone"
            );
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn mark_now_answers_as_mark_would() {
            let (store, _) = or_skip!(setup(100).await);
            let k = key("now");
            let _ = store.unmark(&k).await;
            let ttl = Duration::from_secs(60);
            match store.mark_now(&k, ttl) {
                // A store that needs I/O has no answer at once: `mark` does the work.
                None => assert_eq!(store.mark(&k, ttl).await.unwrap(), Mark::New),
                Some(first) => {
                    assert_eq!(first.unwrap(), Mark::New);
                    assert_eq!(store.mark(&k, ttl).await.unwrap(), Mark::Seen, "one store behind both");
                }
            }
            if let Some(again) = store.mark_now(&k, ttl) {
                assert_eq!(again.unwrap(), Mark::Seen);
            }
            assert_eq!(store.mark(&k, ttl).await.unwrap(), Mark::Seen);
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn unmark_lets_a_retry_through() {
            let (store, _) = or_skip!(setup(100).await);
            let k = key("unmark");
            let _ = store.unmark(&k).await;
            assert_eq!(store.mark(&k, Duration::from_secs(60)).await.unwrap(), Mark::New);
            store.unmark(&k).await.unwrap();
            assert_eq!(store.mark(&k, Duration::from_secs(60)).await.unwrap(), Mark::New);
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn concurrent_marks_have_one_winner() {
            let (store, _) = or_skip!(setup(1000).await);
            let store = std::sync::Arc::new(store);
            let k = key("race");
            let _ = store.unmark(&k).await;
            let mut tasks = Vec::new();
            for _ in 0..50 {
                let store = std::sync::Arc::clone(&store);
                let k = k.clone();
                tasks.push(tokio::spawn(
                    async move { store.mark(&k, Duration::from_secs(60)).await.unwrap() },
                ));
            }
            let mut new = 0;
            for t in tasks {
                if t.await.unwrap() == Mark::New {
                    new += 1;
                }
            }
            assert_eq!(new, 1);
            store.unmark(&k).await.unwrap();
        }

        /// Middleware mode's reservations ([`ReplayStore::reserve`]).
        const LEASE: Duration = Duration::from_secs(30);
        const TTL: Duration = Duration::from_secs(600);

        #[tokio::test]
        async fn a_reservation_is_pending_for_others_until_confirmed_then_seen() {
            let (store, _) = or_skip!(setup(100).await);
            let k = key("two-phase");
            let _ = store.unmark(&k).await;
            assert_eq!(store.reserve(&k, 1, LEASE).await.unwrap(), Mark::New);
            assert_eq!(store.reserve(&k, 2, LEASE).await.unwrap(), Mark::Pending, "a copy while handled");
            assert_eq!(store.reserve(&k, 1, LEASE).await.unwrap(), Mark::Pending, "the holder too");
            // The one-phase `mark` counts a live reservation as seen, and leaves it pending.
            assert_eq!(store.mark(&k, TTL).await.unwrap(), Mark::Seen);
            assert_eq!(store.reserve(&k, 3, LEASE).await.unwrap(), Mark::Pending);
            store.confirm(&k, TTL).await.unwrap();
            assert_eq!(store.reserve(&k, 4, LEASE).await.unwrap(), Mark::Seen, "confirmed");
            assert_eq!(store.mark(&k, TTL).await.unwrap(), Mark::Seen);
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn a_reservation_lives_its_lease_and_a_confirmed_mark_its_ttl() {
            let (store, clock) = or_skip!(setup(100).await);
            let k = key("lease");
            let _ = store.unmark(&k).await;
            // The holder's receiver dies mid-handler: nothing settles its reservation.
            assert_eq!(store.reserve(&k, 1, LEASE).await.unwrap(), Mark::New);
            clock.advance(LEASE - Duration::from_secs(1));
            assert_eq!(store.reserve(&k, 2, LEASE).await.unwrap(), Mark::Pending, "within the lease");
            clock.advance(Duration::from_secs(2));
            assert_eq!(
                store.reserve(&k, 2, LEASE).await.unwrap(),
                Mark::New,
                "the lease ran out: retry handled"
            );
            store.confirm(&k, TTL).await.unwrap();
            clock.advance(LEASE + Duration::from_secs(1));
            assert_eq!(
                store.reserve(&k, 3, LEASE).await.unwrap(),
                Mark::Seen,
                "confirmed outlives the lease"
            );
            clock.advance(TTL);
            assert_eq!(
                store.reserve(&k, 3, LEASE).await.unwrap(),
                Mark::New,
                "until its time to live ran out"
            );
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn cancel_removes_only_the_holders_own_reservation() {
            let (store, clock) = or_skip!(setup(100).await);
            let k = key("cancel");
            let _ = store.unmark(&k).await;
            assert_eq!(store.reserve(&k, 1, LEASE).await.unwrap(), Mark::New);
            store.cancel(&k, 2).await.unwrap();
            assert_eq!(store.reserve(&k, 2, LEASE).await.unwrap(), Mark::Pending, "not 2's to cancel");
            store.cancel(&k, 1).await.unwrap();
            assert_eq!(store.reserve(&k, 2, LEASE).await.unwrap(), Mark::New, "1 cancelled its own");
            // 2's lease runs out while its handler still runs; 3 reserves; 2 then fails:
            // its late cancel must not remove 3's reservation.
            clock.advance(LEASE + Duration::from_secs(1));
            assert_eq!(store.reserve(&k, 3, LEASE).await.unwrap(), Mark::New);
            store.cancel(&k, 2).await.unwrap();
            assert_eq!(store.reserve(&k, 4, LEASE).await.unwrap(), Mark::Pending, "3 still holds it");
            // 3 succeeds; a cancel never removes a confirmed mark.
            store.confirm(&k, TTL).await.unwrap();
            store.cancel(&k, 3).await.unwrap();
            assert_eq!(store.reserve(&k, 5, LEASE).await.unwrap(), Mark::Seen);
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn confirm_marks_without_a_reservation_and_unmark_removes_either_kind() {
            let (store, _) = or_skip!(setup(100).await);
            let k = key("confirm-unmark");
            let _ = store.unmark(&k).await;
            // The reservation was gone (expired, or the store lost it): confirm marks anyway.
            store.confirm(&k, TTL).await.unwrap();
            assert_eq!(store.reserve(&k, 1, LEASE).await.unwrap(), Mark::Seen);
            store.unmark(&k).await.unwrap();
            assert_eq!(store.reserve(&k, 1, LEASE).await.unwrap(), Mark::New);
            store.unmark(&k).await.unwrap();
            assert_eq!(store.mark(&k, TTL).await.unwrap(), Mark::New);
            // A reservation never takes over a one-phase mark.
            assert_eq!(store.reserve(&k, 2, LEASE).await.unwrap(), Mark::Seen);
            store.cancel(&k, 2).await.unwrap();
            assert_eq!(store.mark(&k, TTL).await.unwrap(), Mark::Seen);
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn concurrent_reservations_have_one_holder() {
            let (store, _) = or_skip!(setup(1000).await);
            let store = std::sync::Arc::new(store);
            let k = key("reserve-race");
            let _ = store.unmark(&k).await;
            let mut tasks = Vec::new();
            for token in 0..50 {
                let store = std::sync::Arc::clone(&store);
                let k = k.clone();
                tasks.push(tokio::spawn(async move { store.reserve(&k, token, LEASE).await.unwrap() }));
            }
            let (mut new, mut pending) = (0, 0);
            for t in tasks {
                match t.await.unwrap() {
                    Mark::New => new += 1,
                    Mark::Pending => pending += 1,
                    Mark::Seen => panic!("nothing was confirmed"),
                }
            }
            assert_eq!((new, pending), (1, 49));
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn capacity_is_bounded_and_expired_entries_make_room() {
            let (store, clock) = or_skip!(setup(32).await);
            let mut full = false;
            for i in 0..10_000 {
                match store.mark(&key(&format!("cap{i}")), Duration::from_secs(10)).await {
                    Ok(_) => {}
                    Err(StoreError::Full) => {
                        full = true;
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            if full {
                clock.advance(Duration::from_secs(11));
                assert_eq!(store.mark(&key("after"), Duration::from_secs(10)).await.unwrap(), Mark::New);
            }
        }
    };
}
