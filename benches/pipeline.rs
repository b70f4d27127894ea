//! The receiving side's own cost per delivery, in process: no sockets, no HTTP parsing,
//! no second thread, so the figure is the code path's. It moves by a few per cent between
//! alternating runs of two builds (the HTTP bench's ratios, by tens); on a shared VM it can
//! drift by more than that between runs made minutes apart, so compare builds alternately.
//! Each row takes the same 1 KiB Standard Webhooks deliveries (unique ids, signed before
//! the clock starts) as `http::Request`s with a [`Full`] body:
//!
//! - `verify`: the request verified with hookguard's Standard Webhooks scheme, then
//!   dropped (the floor under any stack that verifies);
//! - `least`: `verify`, then the id into a set (foldhash) and the request's head and body
//!   into a queue; every 64 deliveries the queue is taken and dropped (the HTTP bench's
//!   `least` pipeline, on one thread);
//! - `hookguard`: [`WebhookService`] over a [`MemoryInbox`] answering 202; every 64
//!   deliveries the waiting jobs taken one by one as a worker's lanes take them, and
//!   acknowledged (what a worker costs the inbox);
//! - `hookguard + Worker`: the same, drained by a [`Worker`] (4 lanes, no gather window) on
//!   the same thread, with a no-op handler: the pool's own cost per job comes on top.
//!
//! The difference between `hookguard` and `least` is what hookguard's pipeline adds to
//! the server's thread per delivery (and the inbox's side of the worker's).
//!
//! The inboxes remember the default 100,000 finished keys, so after the first 100,000
//! deliveries each one also forgets one, as in production's steady state;
//! `HOOKGUARD_BENCH_REMEMBER=n` sets how many (the HTTP bench remembers all of them).
//!
//! `cargo bench --bench pipeline`; figures in BENCHMARKS.md.

use std::{
    collections::HashSet,
    convert::Infallible,
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use hookguard::{
    guard::Guard,
    inbox::{Inbox, MemoryInbox, Webhook},
    layer::WebhookService,
    providers::standard_webhooks,
    verify::{Outgoing, Scheme, Sign, WebhookRequest},
    worker::Worker,
};
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use tower::{Service as _, ServiceExt};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BODY_SIZE: usize = 1024;
/// Deliveries signed at a time (outside the measured time).
const CHUNK: u64 = 1024;
/// Deliveries between two drains of the queue or inbox.
const DRAIN_EVERY: usize = 64;

/// Signed deliveries with ids `from..from + n`.
struct Signed {
    deliveries: Vec<(Vec<(HeaderName, HeaderValue)>, Bytes)>,
}

impl Signed {
    fn new(scheme: &impl Sign, from: u64, n: u64) -> Self {
        let now = time::OffsetDateTime::now_utc();
        let deliveries = (from..from + n)
            .map(|i| {
                let mut s =
                    format!(r#"{{"type":"invoice.paid","id":"evt_{i}","data":{{"amount":1200}},"pad":""#);
                while s.len() + 2 < BODY_SIZE {
                    s.push('x');
                }
                s.push_str("\"}");
                let body = Bytes::from(s);
                let id = format!("msg_{i:010}");
                let headers = scheme.sign(&Outgoing::new(&body).id(&id).timestamp(now)).expect("signs");
                (headers, body)
            })
            .collect();
        Self { deliveries }
    }

    /// The deliveries as requests, as a server would hand them over.
    fn requests(&self) -> Vec<Request<Full<Bytes>>> {
        self.deliveries
            .iter()
            .map(|(headers, body)| {
                let mut req = Request::post("/hookguard")
                    .header("host", "127.0.0.1")
                    .header("content-length", body.len())
                    .body(Full::new(body.clone()))
                    .expect("request");
                req.headers_mut().extend(headers.iter().cloned());
                req
            })
            .collect()
    }
}

/// Runs `per_chunk` on chunks of fresh requests (unique ids across the whole run) until
/// `iters` deliveries went through; only `per_chunk`'s time is counted (it takes the
/// requests out of a vector that is freed afterwards).
fn measured(
    iters: u64,
    ids: &AtomicU64,
    scheme: &impl Sign,
    mut per_chunk: impl FnMut(std::vec::Drain<'_, Request<Full<Bytes>>>),
) -> Duration {
    let mut left = iters;
    let mut spent = Duration::ZERO;
    while left > 0 {
        let n = left.min(CHUNK);
        let mut requests = Signed::new(scheme, ids.fetch_add(n, Ordering::Relaxed), n).requests();
        let start = Instant::now();
        per_chunk(requests.drain(..));
        spent += start.elapsed();
        // The emptied vector is freed outside the measured time.
        drop(requests);
        left -= n;
    }
    spent
}

fn pipeline(c: &mut Criterion) {
    let scheme = standard_webhooks::scheme(SECRET).expect("valid secret");
    let ids = AtomicU64::new(0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("pipeline per 1 KiB delivery, in process");

    group.bench_function("verify", |b| {
        b.iter_custom(|iters| {
            measured(iters, &ids, &scheme, |requests| {
                for req in requests {
                    let (parts, body) = req.into_parts();
                    let body = body_bytes(body);
                    let view = WebhookRequest::from_parts(&parts, &body);
                    let ok = scheme.verify(&view, time::OffsetDateTime::now_utc()).is_ok();
                    assert!(black_box(ok), "verifies");
                }
            })
        });
    });

    let mut seen: HashSet<Box<str>, foldhash::fast::RandomState> = HashSet::default();
    group.bench_function("least", |b| {
        b.iter_custom(|iters| {
            measured(iters, &ids, &scheme, |requests| {
                let mut queue = Vec::with_capacity(DRAIN_EVERY);
                for req in requests {
                    let (parts, body) = req.into_parts();
                    let body = body_bytes(body);
                    let view = WebhookRequest::from_parts(&parts, &body);
                    let id = match scheme.verify(&view, time::OffsetDateTime::now_utc()) {
                        Ok(v) => Box::<str>::from(v.id().unwrap_or_default()),
                        Err(e) => panic!("verifies: {e}"),
                    };
                    // Bounded as the memory inbox's index is (it remembers 100 000 finished keys).
                    if seen.len() == 100_000 {
                        seen.clear();
                    }
                    assert!(seen.insert(id), "a new id");
                    queue.push((parts.headers, body));
                    if queue.len() == DRAIN_EVERY {
                        for delivery in std::mem::take(&mut queue) {
                            black_box(delivery);
                        }
                    }
                }
            })
        });
    });

    let inbox = bench_inbox();
    let guard = Guard::builder("bench", standard_webhooks::scheme(SECRET).expect("valid secret"))
        .inbox(inbox.clone())
        .build();
    let mut service = WebhookService::new(guard);
    group.bench_function("hookguard", |b| {
        b.iter_custom(|iters| {
            measured(iters, &ids, &scheme, |requests| {
                rt.block_on(async {
                    let mut kept = 0;
                    for req in requests {
                        accept(&mut service, req).await;
                        kept += 1;
                        if kept == DRAIN_EVERY {
                            kept = 0;
                            drain(&inbox).await;
                        }
                    }
                    drain(&inbox).await;
                });
            })
        });
    });

    // The same, drained by a `Worker` (4 lanes, no gather window) on the same thread: the
    // pool's own cost per job comes on top.
    let inbox = bench_inbox();
    let guard = Guard::builder("bench", standard_webhooks::scheme(SECRET).expect("valid secret"))
        .inbox(inbox.clone())
        .build();
    let mut service = WebhookService::new(guard);
    let processed = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&processed);
    let pool = rt.block_on(async {
        Worker::new(inbox, move |hook: Webhook| {
            black_box(&hook);
            counted.fetch_add(1, Ordering::Relaxed);
            async { Ok::<(), Infallible>(()) }
        })
        .concurrency(4)
        .gather(Duration::ZERO)
        .spawn()
    });
    let mut pushed = 0;
    group.bench_function("hookguard + Worker", |b| {
        b.iter_custom(|iters| {
            measured(iters, &ids, &scheme, |requests| {
                rt.block_on(async {
                    for req in requests {
                        accept(&mut service, req).await;
                        pushed += 1;
                        if pushed % DRAIN_EVERY as u64 == 0 {
                            settle(&processed, pushed).await;
                        }
                    }
                    settle(&processed, pushed).await;
                });
            })
        });
    });
    group.finish();
    rt.block_on(pool.shutdown(Duration::from_secs(5)));
}

/// An inbox with room for every delivery of a run; it remembers
/// `HOOKGUARD_BENCH_REMEMBER` finished keys (default: the library's).
fn bench_inbox() -> MemoryInbox {
    let inbox = MemoryInbox::new().capacity(1 << 20);
    match std::env::var("HOOKGUARD_BENCH_REMEMBER").ok().and_then(|n| n.parse().ok()) {
        Some(n) => inbox.remember_done(n),
        None => inbox,
    }
}

/// One delivery through the service, which must keep it (`202`).
async fn accept(service: &mut WebhookService, req: Request<Full<Bytes>>) {
    let ready = ServiceExt::<Request<Full<Bytes>>>::ready(service).await.expect("always ready");
    let res = ready.call(req).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::ACCEPTED);
}

/// Lets the pool run until it processed `pushed` jobs.
async fn settle(processed: &AtomicU64, pushed: u64) {
    while processed.load(Ordering::Relaxed) < pushed {
        tokio::task::yield_now().await;
    }
}

/// A `Full` body's bytes (ready at once).
fn body_bytes(body: Full<Bytes>) -> Bytes {
    let mut collect = std::pin::pin!(body.collect());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match collect.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(collected)) => collected.to_bytes(),
        _ => unreachable!("a full body is ready"),
    }
}

/// What a worker costs the inbox: each waiting job taken as a lane that just finished one
/// takes it ([`Inbox::pull_one_now`]), and acknowledged.
async fn drain(inbox: &MemoryInbox) {
    while let Some(job) = inbox.pull_one_now(Duration::from_secs(300)).expect("memory inbox").expect("pull") {
        black_box(job.webhook());
        inbox.ack_now(&job).expect("memory inbox").expect("ack");
    }
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
