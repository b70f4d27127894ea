//! Replay marks and reservations let go of on any thread, and after a store error.
//!
//! A [`ReplayMark`](hookguard::guard::ReplayMark) or
//! [`Reservation`](hookguard::guard::Reservation) dropped unsettled is released in the
//! background. Where the drop happens is the caller's: a thread of the runtime, a plain
//! thread the value was sent to, or after the runtime shut down. None of them may panic;
//! an in-process store is done at once on any thread; a store that needs the runtime
//! finishes on the runtime the mark was taken on.
//!
//! The Redis test runs against `HOOKGUARD_TEST_REDIS_URL`; skipped (with `skipped: …`)
//! when it is unset.

#![cfg(feature = "tower")]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hookguard::{
    guard::{Checked, Guard, Reserved},
    providers::github,
    replay::{BoxFuture, Mark, MemoryReplayStore, ReplayStore, StoreError},
    verify::{Outgoing, Sign},
};
use http::{Request, StatusCode, request::Parts};

/// The most a wait for the runtime's background work may take before the test fails.
const BOUND: Duration = Duration::from_secs(10);

/// A GitHub delivery of `body` (GitHub's replay key is the signature's fingerprint: one
/// key per body).
fn delivery(body: &[u8]) -> (Parts, Bytes) {
    let scheme = github::scheme("s3cr3t").unwrap();
    let mut req = Request::post("/hooks/github");
    for (name, value) in scheme.sign(&Outgoing::new(body)).unwrap() {
        req = req.header(name, value);
    }
    (req.body(()).unwrap().into_parts().0, Bytes::copy_from_slice(body))
}

fn guard(store: impl ReplayStore) -> Guard {
    Guard::builder("github", github::scheme("s3cr3t").unwrap()).replay_store(store).build()
}

/// Drops `value` on a new plain thread (no runtime there) and says whether that panicked.
fn drop_on_a_plain_thread<T: Send + 'static>(value: T) -> std::thread::Result<()> {
    std::thread::spawn(move || drop(value)).join()
}

/// An in-process store needs no runtime: a mark or reservation dropped on a plain thread
/// is gone when the drop returns.
#[tokio::test]
async fn the_memory_store_releases_on_a_plain_thread_at_once() {
    let guard = guard(MemoryReplayStore::new());
    let (parts, body) = delivery(b"{\"n\":1}");
    let Checked::New { mark, .. } = guard.check(&parts, &body).await else { panic!("new") };
    drop_on_a_plain_thread(mark).expect("no panic");
    let Checked::New { mark, .. } = guard.check(&parts, &body).await else {
        panic!("the mark was removed on the plain thread: the retry is new")
    };
    mark.keep();

    let (parts, body) = delivery(b"{\"n\":2}");
    let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &body).await else { panic!("fresh") };
    drop_on_a_plain_thread(reservation).expect("no panic");
    assert!(
        matches!(guard.reserve(&parts, &body).await, Reserved::Fresh { .. }),
        "the reservation was cancelled on the plain thread: the retry is handled, not 409"
    );
}

/// A store that, like Redis, needs the Tokio runtime to be polled at all (panics without
/// one: Redis's response timeout is a Tokio timer) and is not done at its first poll.
/// Counts the removals and cancels it finished.
#[derive(Debug, Clone)]
struct NeedsRuntime {
    inner: MemoryReplayStore,
    released: Arc<tokio::sync::Semaphore>,
}

impl NeedsRuntime {
    fn new() -> Self {
        Self { inner: MemoryReplayStore::new(), released: Arc::new(tokio::sync::Semaphore::new(0)) }
    }

    fn io<'a, T: Send + 'a>(
        &'a self,
        op: BoxFuture<'a, Result<T, StoreError>>,
        release: bool,
    ) -> BoxFuture<'a, Result<T, StoreError>> {
        Box::pin(async move {
            let _ = tokio::runtime::Handle::current(); // panics outside a runtime
            tokio::task::yield_now().await;
            let done = op.await;
            if release {
                self.released.add_permits(1);
            }
            done
        })
    }

    /// Waits until `n` removals or cancels finished (on the runtime, in the background).
    async fn released(&self, n: u32) {
        tokio::time::timeout(BOUND, self.released.acquire_many(n))
            .await
            .expect("released in the background")
            .unwrap()
            .forget();
    }
}

impl ReplayStore for NeedsRuntime {
    fn mark<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<Mark, StoreError>> {
        self.io(self.inner.mark(key, ttl), false)
    }
    fn reserve<'a>(
        &'a self,
        key: &'a [u8],
        token: u64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Mark, StoreError>> {
        self.io(self.inner.reserve(key, token, lease), false)
    }
    fn confirm<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        self.io(self.inner.confirm(key, ttl), false)
    }
    fn cancel<'a>(&'a self, key: &'a [u8], token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        self.io(self.inner.cancel(key, token), true)
    }
    fn unmark<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.io(self.inner.unmark(key), true)
    }
}

/// A store that needs the runtime: a mark and a reservation dropped on a plain thread
/// while the runtime lives do not panic, and are released on the runtime they were taken
/// on (not left until their time to live or lease runs out).
#[tokio::test]
async fn a_store_needing_the_runtime_releases_on_it_when_dropped_on_a_plain_thread() {
    let store = NeedsRuntime::new();
    let guard = guard(store.clone());
    let (parts, body) = delivery(b"{\"n\":3}");
    let Checked::New { mark, .. } = guard.check(&parts, &body).await else { panic!("new") };
    drop_on_a_plain_thread(mark).expect("dropping the mark on a plain thread does not panic");
    store.released(1).await;
    let Checked::New { mark, .. } = guard.check(&parts, &body).await else {
        panic!("the mark was removed: the retry is new, not a duplicate")
    };
    mark.keep();

    let (parts, body) = delivery(b"{\"n\":4}");
    let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &body).await else { panic!("fresh") };
    drop_on_a_plain_thread(reservation).expect("dropping the reservation on a plain thread does not panic");
    store.released(1).await;
    assert!(
        matches!(guard.reserve(&parts, &body).await, Reserved::Fresh { .. }),
        "the reservation was cancelled: the retry is handled, not 409"
    );
}

/// A mark's removal that was on its way when the caller gave up (a push failed, then the
/// sender hung up before the store answered the removal) still reaches the store: the
/// mark does not stay for its time to live with every retry answered `200 duplicate`.
#[tokio::test]
async fn a_release_given_up_midway_still_removes_the_mark() {
    let store = NeedsRuntime::new();
    let guard = guard(store.clone());
    let (parts, body) = delivery(b"{\"n\":7}");
    let Checked::New { mark, .. } = guard.check(&parts, &body).await else { panic!("new") };
    let mut release = Box::pin(mark.release());
    let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(release.as_mut().poll(cx))).await;
    assert!(polled.is_pending(), "the store has not answered the removal yet");
    drop(release);
    store.released(1).await;
    assert!(
        matches!(guard.check(&parts, &body).await, Checked::New { .. }),
        "the mark was removed: the retry is new, not a duplicate"
    );
}

/// Log lines written while the returned guard is held, on this thread.
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    use tracing_subscriber::util::SubscriberInitExt as _;
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(Arc::clone(&logs));
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .finish();
    (logs, subscriber.set_default())
}

/// The runtime a mark and a reservation were taken on has shut down before they are
/// dropped on a plain thread: nothing panics, and each (which cannot be released now) is
/// logged at warn, without its key, and stays until its time to live or lease runs out.
#[test]
fn a_mark_dropped_after_its_runtime_shut_down_is_logged_and_left() {
    let store = NeedsRuntime::new();
    let guard = guard(store.clone());
    let (parts, body) = delivery(b"{\"n\":5}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mark, reservation) = rt.block_on(async {
        let Checked::New { mark, .. } = guard.check(&parts, &body).await else { panic!("new") };
        let (parts, body) = delivery(b"{\"n\":6}");
        let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &body).await else { panic!("fresh") };
        (mark, reservation)
    });
    let (key, reserved) = (mark.key().to_owned(), reservation.key().to_owned());
    drop(rt);
    let logs = std::thread::spawn(move || {
        let (logs, _logging) = capture_logs();
        drop(mark);
        drop(reservation);
        String::from_utf8(logs.lock().unwrap().clone()).unwrap()
    })
    .join()
    .expect("no panic");
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 2, "one warning each: {logs}");
    assert!(warnings.iter().all(|l| l.contains("endpoint=github")), "{logs}");
    assert!(!logs.contains(&key) && !logs.contains(&reserved), "the keys are not logged: {logs}");
    // Both still there, left to their time to live and lease (an in-process store is
    // asked without a runtime).
    assert_eq!(store.inner.mark_now(key.as_bytes(), Duration::from_secs(60)).unwrap().unwrap(), Mark::Seen);
    assert_eq!(
        store.inner.mark_now(reserved.as_bytes(), Duration::from_secs(60)).unwrap().unwrap(),
        Mark::Seen,
        "a live reservation counts as seen"
    );
}

/// Redis itself: a mark and a reservation dropped on a plain thread while the runtime
/// lives are released on it.
#[cfg(feature = "redis")]
#[tokio::test]
async fn the_redis_store_releases_on_the_runtime_when_dropped_on_a_plain_thread() {
    use hookguard::replay::RedisReplayStore;
    let Ok(url) = std::env::var("HOOKGUARD_TEST_REDIS_URL") else {
        eprintln!("skipped: HOOKGUARD_TEST_REDIS_URL is unset");
        return;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("hg_test_replay_marks_{}_{nanos}:", std::process::id());
    let store =
        RedisReplayStore::connect(&url).await.expect("HOOKGUARD_TEST_REDIS_URL is set: Redis must answer");
    let store = store.prefix(&prefix);
    let guard = guard(store.clone());
    // Whether the key is gone, asked until it is (the release runs in the background).
    let gone = |key: String| {
        let store = store.clone();
        async move {
            tokio::time::timeout(BOUND, async {
                while store.reserve(key.as_bytes(), 1, Duration::from_secs(60)).await.unwrap() != Mark::New {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .is_ok()
        }
    };

    let (parts, body) = delivery(b"{\"n\":7}");
    let Checked::New { mark, .. } = guard.check(&parts, &body).await else { panic!("new") };
    let key = mark.key().to_owned();
    drop_on_a_plain_thread(mark).expect("dropping the mark on a plain thread does not panic");
    assert!(gone(key).await, "the mark was removed");

    let (parts, body) = delivery(b"{\"n\":8}");
    let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &body).await else { panic!("fresh") };
    let key = reservation.key().to_owned();
    drop_on_a_plain_thread(reservation).expect("dropping the reservation on a plain thread does not panic");
    assert!(gone(key).await, "the reservation was cancelled");
}

/// A store that takes the reservation and then fails to answer while `failing` (Redis
/// ran the script, then the answer timed out or the connection broke).
#[derive(Debug, Clone, Default)]
struct FailsAfterReserving {
    inner: MemoryReplayStore,
    failing: Arc<AtomicBool>,
}

impl ReplayStore for FailsAfterReserving {
    fn mark<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<Mark, StoreError>> {
        self.inner.mark(key, ttl)
    }
    fn reserve<'a>(
        &'a self,
        key: &'a [u8],
        token: u64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Mark, StoreError>> {
        Box::pin(async move {
            let reserved = self.inner.reserve(key, token, lease).await?;
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Backend("response timed out".into()));
            }
            Ok(reserved)
        })
    }
    fn confirm<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.confirm(key, ttl)
    }
    fn cancel<'a>(&'a self, key: &'a [u8], token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.cancel(key, token)
    }
    fn unmark<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.unmark(key)
    }
}

/// The store failed after it took the reservation: the request is answered `503`, and
/// its reservation is cancelled, so that the sender's retry is handled once the store
/// answers again, rather than answered `409` for the whole lease while nothing handles
/// the delivery. Through `reserve` (middleware mode) and `check` alike.
#[tokio::test]
async fn a_reservation_the_store_took_before_failing_is_cancelled() {
    let store = FailsAfterReserving::default();
    let guard = guard(store.clone());
    for (name, body) in [("reserve", &b"{\"n\":9}"[..]), ("check", &b"{\"n\":10}"[..])] {
        let (parts, body) = delivery(body);
        store.failing.store(true, Ordering::SeqCst);
        let failed = if name == "reserve" {
            let Reserved::Respond(res) = guard.reserve(&parts, &body).await else {
                panic!("{name}: refused")
            };
            res
        } else {
            let Checked::Respond(res) = guard.check(&parts, &body).await else { panic!("{name}: refused") };
            res
        };
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE, "{name}");
        store.failing.store(false, Ordering::SeqCst);
        match guard.reserve(&parts, &body).await {
            Reserved::Fresh { reservation, .. } => reservation.confirm().await,
            Reserved::Respond(res) => {
                panic!(
                    "{name}: the retry is handled, not answered {} (the reservation was left)",
                    res.status()
                )
            }
            _ => unreachable!(),
        }
    }
}

/// A store that is down: each refused request logs one warning (the store failed), not a
/// second one for the cancel that follows it.
#[tokio::test]
async fn a_store_that_is_down_logs_one_warning_per_request() {
    #[derive(Debug)]
    struct Down;
    fn down<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::Backend("connection refused".into()))))
    }
    impl ReplayStore for Down {
        fn mark<'a>(&'a self, _: &'a [u8], _: Duration) -> BoxFuture<'a, Result<Mark, StoreError>> {
            down()
        }
        fn reserve<'a>(
            &'a self,
            _: &'a [u8],
            _: u64,
            _: Duration,
        ) -> BoxFuture<'a, Result<Mark, StoreError>> {
            down()
        }
        fn confirm<'a>(&'a self, _: &'a [u8], _: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
            down()
        }
        fn cancel<'a>(&'a self, _: &'a [u8], _: u64) -> BoxFuture<'a, Result<(), StoreError>> {
            down()
        }
        fn unmark<'a>(&'a self, _: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
            down()
        }
    }
    let guard = guard(Down);
    let (parts, body) = delivery(b"{\"n\":11}");
    let (logs, logging) = capture_logs();
    let Reserved::Respond(res) = guard.reserve(&parts, &body).await else { panic!("refused") };
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let Checked::Respond(res) = guard.check(&parts, &body).await else { panic!("refused") };
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(logging);
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert_eq!(logs.lines().filter(|l| l.contains("WARN")).count(), 2, "{logs}");
}

/// A replay time to live of zero (or under a second) is taken as one second: a mark that
/// expired the moment it was set would let every copy through as new.
#[tokio::test]
async fn a_zero_replay_ttl_still_refuses_copies() {
    for ttl in [Duration::ZERO, Duration::from_millis(1)] {
        let clock = hookguard::clock::ManualClock::at_unix(1_700_000_000);
        let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap())
            .replay_ttl(ttl)
            .clock(clock.clone())
            .build();
        let (parts, body) = delivery(b"{\"ttl\":0}");
        let Checked::New { mark, .. } = guard.check(&parts, &body).await else { panic!("{ttl:?}: new") };
        mark.keep();
        assert!(
            matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)),
            "{ttl:?}: the copy is refused"
        );
        clock.advance(Duration::from_millis(999));
        assert!(matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)), "{ttl:?}: within 1 s");
        clock.advance(Duration::from_millis(2));
        assert!(
            matches!(guard.check(&parts, &body).await, Checked::New { .. }),
            "{ttl:?}: expired after 1 s"
        );
    }
}
