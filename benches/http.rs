//! HTTP load: requests/s and latency over real loopback HTTP/1.1 for the same 1 KiB
//! Standard Webhooks deliveries (unique ids) sent to
//!
//! - `axum bare`: an axum route that reads the body and answers 202;
//! - `axum + svix`: the same route verifying with `svix::webhooks::Webhook` in the handler;
//! - `axum + hookguard verify`: the same route verifying with hookguard's Standard Webhooks
//!   scheme in the handler, nothing else (the floor under any stack that verifies);
//! - `axum + floor hand-off`: the `verify` route plus about the least a stack that also
//!   refuses replays and keeps what it accepted can do ([`Floor`]: one mutex over a set of
//!   ids and a queue, emptied on the server's own thread; nothing is processed);
//! - `axum + least pipeline`: the least an implementation of the whole pipeline can do
//!   ([`Least`]): verify, a set of seen ids and a queue under one mutex, and a thread that
//!   takes the queue every millisecond, calls a no-op handler on each delivery and hands
//!   the memory back to the server's thread to free. No leases, retries, metrics or logs:
//!   a bound on what any stack that processes what it acknowledges can reach here;
//! - `axum hookguard`: `WebhookService` (verify, replay guard, memory inbox, 202);
//! - `actix bare`: an actix-web route that reads the body and answers 202;
//! - `actix hookguard`: `hookguard::actix::webhook_service` over the same kind of guard.
//!
//! Each server runs on one thread (axum: a 1-worker Tokio runtime; actix: `workers(1)`);
//! the inboxes are drained by a `Worker` on a third, shared runtime thread; the client
//! (hyper, one keep-alive connection per concurrent sender) runs on the main thread. The
//! targets are interleaved in rounds so that a change in machine load hits all of them, and
//! each round starts at the next target (the first of a round shares the machine with the
//! previous target's closing connections and draining workers).
//! Besides requests/s and latency, each target's CPU time per request is reported, split
//! into the client, the servers and the hookguard worker pool's thread (`hg-worker`):
//! unlike requests/s it barely moves when other processes load the machine.
//!
//! `cargo bench --bench http --features axum,actix`; figures in BENCHMARKS.md.
//!
//! Knobs (environment): `HOOKGUARD_BENCH_ONLY=a,b` runs only the targets whose names
//! contain one of these; `HOOKGUARD_BENCH_GATHER_MS=n` (or `HOOKGUARD_BENCH_GATHER_US=n`)
//! sets the workers' gather window;
//! `HOOKGUARD_BENCH_WORKERS=off` leaves the inboxes undrained during the load;
//! `HOOKGUARD_BENCH_LANES=n` sets the workers' concurrency (default 4);
//! `HOOKGUARD_BENCH_REPLAY=off` builds the guards without a replay store;
//! `HOOKGUARD_BENCH_REMEMBER=n` sets how many finished keys the inboxes remember (default
//! 1,000,000: all of them);
//! `HOOKGUARD_BENCH_ROUNDS=n` and `HOOKGUARD_BENCH_PER_ROUND=n` set the run's length
//! (default 25 rounds of 4,000 deliveries per target);
//! `HOOKGUARD_BENCH_SERVER_THREADS=n` gives each server `n` threads instead of one (the
//! bare routes too);
//! `HOOKGUARD_BENCH_WORKER_RT=server` runs the axum inbox's workers on the axum server's
//! runtime instead of their own;
//! `HOOKGUARD_BENCH_INPROC=n` (with `HOOKGUARD_BENCH_BARE=1` for the bare route) sends `n`
//! deliveries in process, without sockets, for `valgrind --tool=callgrind`.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use hookguard::{
    guard::Guard,
    inbox::{MemoryInbox, Webhook},
    layer::WebhookService,
    providers::standard_webhooks,
    verify::{Outgoing, Scheme, Sign, Verified, WebhookRequest},
    worker::Worker,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, Full};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BODY_SIZE: usize = 1024;
const CONCURRENCY: usize = 32;
const WARMUP: usize = 2_000;
/// Many short rounds: the machine's speed drifts by tens of per cent within seconds, and
/// each round runs every target once, so a drift hits them all alike.
const ROUNDS: usize = 25;
const PER_ROUND: usize = 4_000;

struct Delivery {
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

/// A JSON body of exactly [`BODY_SIZE`] bytes with event type and id first.
fn body(n: usize) -> Bytes {
    let mut s = format!(r#"{{"type":"invoice.paid","id":"evt_{n}","data":{{"amount":1200}},"pad":""#);
    while s.len() + 2 < BODY_SIZE {
        s.push('x');
    }
    s.push_str("\"}");
    Bytes::from(s)
}

fn deliveries(count: usize) -> Vec<Delivery> {
    let scheme = standard_webhooks::scheme(SECRET).expect("valid secret");
    let now = time::OffsetDateTime::now_utc();
    (0..count)
        .map(|n| {
            let body = body(n);
            let id = format!("msg_{n:08}");
            let headers = scheme.sign(&Outgoing::new(&body).id(&id).timestamp(now)).expect("signs");
            Delivery { headers, body }
        })
        .collect()
}

fn guard(name: &str, inbox: &MemoryInbox) -> Guard {
    let guard =
        Guard::builder(name, standard_webhooks::scheme(SECRET).expect("valid secret")).inbox(inbox.clone());
    // `HOOKGUARD_BENCH_REPLAY=off`: no replay store (the inbox alone refuses duplicates).
    if knob_is("HOOKGUARD_BENCH_REPLAY", "off") { guard.no_replay_store() } else { guard }.build()
}

/// Verification in a handler, as the `/verify` and `/floor` routes do it: `then` of the
/// verified delivery, or `None` when it does not verify.
fn verified<R>(
    scheme: &impl Scheme,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
    then: impl FnOnce(&Verified<'_>) -> R,
) -> Option<R> {
    let view = WebhookRequest::new(&http::Method::POST, uri, headers, body);
    scheme.verify(&view, time::OffsetDateTime::now_utc()).ok().map(|v| then(&v))
}

/// axum: `/bare`, `/svix`, `/verify`, `/floor`, `/least`, `/hookguard` on a 1-worker runtime
/// (see [`server_threads`]).
fn start_axum(
    inbox: &MemoryInbox,
    floor: &Arc<Floor>,
    least: &Arc<Least>,
) -> (SocketAddr, tokio::runtime::Runtime) {
    use axum::{Router, routing::post};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads())
        .enable_all()
        .build()
        .expect("runtime");
    let svix = Arc::new(svix::webhooks::Webhook::new(SECRET).expect("valid secret"));
    let scheme = Arc::new(standard_webhooks::scheme(SECRET).expect("valid secret"));
    let floor_scheme = Arc::clone(&scheme);
    let least_scheme = Arc::clone(&scheme);
    let floor = Arc::clone(floor);
    let least = Arc::clone(least);
    let app = Router::new()
        .route("/bare", post(|_body: Bytes| async { StatusCode::ACCEPTED }))
        .route(
            "/svix",
            post(move |headers: HeaderMap, body: Bytes| async move {
                match svix.verify(&body, &headers) {
                    Ok(()) => StatusCode::ACCEPTED,
                    Err(_) => StatusCode::UNAUTHORIZED,
                }
            }),
        )
        .route(
            "/verify",
            post(move |uri: http::Uri, headers: HeaderMap, body: Bytes| {
                let scheme = Arc::clone(&scheme);
                async move {
                    match verified(&scheme, &uri, &headers, &body, |_| ()) {
                        Some(()) => StatusCode::ACCEPTED,
                        None => StatusCode::UNAUTHORIZED,
                    }
                }
            }),
        )
        .route(
            "/floor",
            post(move |uri: http::Uri, headers: HeaderMap, body: Bytes| {
                let (scheme, floor) = (Arc::clone(&floor_scheme), Arc::clone(&floor));
                async move {
                    let id =
                        verified(&scheme, &uri, &headers, &body, |v| v.id().unwrap_or_default().to_owned());
                    let Some(id) = id else { return StatusCode::UNAUTHORIZED };
                    if floor.push(id, headers, body) { StatusCode::ACCEPTED } else { StatusCode::OK }
                }
            }),
        )
        .route(
            "/least",
            post(move |request: axum::extract::Request| {
                let (scheme, least) = (Arc::clone(&least_scheme), Arc::clone(&least));
                async move {
                    let (parts, body) = request.into_parts();
                    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let id = verified(&scheme, &parts.uri, &parts.headers, &body, |v| {
                        Box::<str>::from(v.id().unwrap_or_default())
                    });
                    let Some(id) = id else { return StatusCode::UNAUTHORIZED };
                    if least.push(id, parts.headers, body) { StatusCode::ACCEPTED } else { StatusCode::OK }
                }
            }),
        )
        .route_service("/hookguard", WebhookService::new(guard("axum", inbox)));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move { axum::serve(listener, app).await });
    (addr, rt)
}

/// About the least a stack that verifies, refuses replays and keeps what it accepted can
/// do: one mutex over a set of seen ids and a queue of `(headers, body)`, emptied and
/// dropped on the server's own thread every 64 pushes (no second thread, so no wake-ups
/// and no frees across threads). No TTL, no leases, no retries, no metrics, no
/// processing: a floor to read the hookguard row against, not a design.
#[derive(Default)]
struct Floor {
    state: std::sync::Mutex<FloorState>,
}

#[derive(Default)]
struct FloorState {
    seen: std::collections::HashSet<String>,
    kept: Vec<(HeaderMap, Bytes)>,
}

impl Floor {
    /// `false` for an id seen before.
    fn push(&self, id: String, headers: HeaderMap, body: Bytes) -> bool {
        let mut st = self.state.lock().expect("not poisoned");
        if !st.seen.insert(id) {
            return false;
        }
        st.kept.push((headers, body));
        let done = if st.kept.len() >= 64 { std::mem::take(&mut st.kept) } else { Vec::new() };
        drop(st);
        drop(done);
        true
    }
}

/// The least an implementation of the whole pipeline can do: verify (in the route), then
/// under one mutex a set of seen ids (foldhash) and a queue of `(headers, body)`; a thread
/// (`hg-worker-least`, counted as the worker) takes the whole queue every millisecond,
/// calls a no-op handler on each delivery, and hands the memory back to be freed by the
/// next push on the server's thread (as hookguard's memory inbox does: glibc frees without
/// a lock on the thread that allocated). No wake-up per push, no leases, retries, metrics
/// or logs, ids never forgotten. Not a design: a bound on what a stack that processes
/// what it acknowledges can reach on this harness.
#[derive(Default)]
struct Least {
    state: std::sync::Mutex<LeastState>,
}

#[derive(Default)]
struct LeastState {
    seen: std::collections::HashSet<Box<str>, foldhash::fast::RandomState>,
    queue: Vec<(HeaderMap, Bytes)>,
    processed: Vec<(HeaderMap, Bytes)>,
}

impl Least {
    /// `false` for an id seen before.
    fn push(&self, id: Box<str>, headers: HeaderMap, body: Bytes) -> bool {
        let mut st = self.state.lock().expect("not poisoned");
        if !st.seen.insert(id) {
            return false;
        }
        st.queue.push((headers, body));
        let processed = std::mem::take(&mut st.processed);
        drop(st);
        drop(processed);
        true
    }

    /// Starts the processing thread; it ends when `least` is the last reference left.
    fn spawn(least: &Arc<Self>) {
        let least = Arc::clone(least);
        std::thread::Builder::new()
            .name("hg-worker-least".to_owned())
            .spawn(move || {
                let mut batch = Vec::new();
                while Arc::strong_count(&least) > 1 {
                    std::thread::sleep(Duration::from_millis(1));
                    std::mem::swap(&mut batch, &mut least.state.lock().expect("not poisoned").queue);
                    for delivery in &batch {
                        std::hint::black_box(delivery); // the handler
                    }
                    let mut st = least.state.lock().expect("not poisoned");
                    if st.processed.is_empty() {
                        std::mem::swap(&mut st.processed, &mut batch);
                    } else {
                        st.processed.append(&mut batch);
                    }
                }
            })
            .expect("thread");
    }
}

/// actix: `/bare`, `/hookguard` on one worker thread.
fn start_actix(inbox: &MemoryInbox) -> (SocketAddr, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let guard = guard("actix", inbox);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .route(
                        "/bare",
                        web::post().to(|_body: Bytes| async { HttpResponse::Accepted().finish() }),
                    )
                    .service(hookguard::actix::webhook_service("/hookguard", guard.clone()))
            })
            .workers(server_threads())
            .disable_signals()
            .shutdown_timeout(1)
            .bind(("127.0.0.1", 0))?;
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).expect("main thread waits");
            server.await
        })
    });
    rx.recv_timeout(Duration::from_secs(30)).expect("actix started")
}

/// Sends `deliveries[range]` to `addr`+`path` over [`CONCURRENCY`] keep-alive
/// connections; returns the elapsed time, each latency and the number of answers that
/// were not 202.
async fn drive(
    addr: SocketAddr,
    path: &'static str,
    deliveries: Arc<Vec<Delivery>>,
    range: std::ops::Range<usize>,
) -> (Duration, Vec<Duration>, usize) {
    let next = Arc::new(AtomicUsize::new(range.start));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, deliveries, end) = (next.clone(), deliveries.clone(), range.end);
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(conn);
            let (mut latencies, mut bad) = (Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let d = &deliveries[i];
                let mut req = http::Request::post(path).header("host", "127.0.0.1");
                for (name, value) in &d.headers {
                    req = req.header(name, value);
                }
                let req = req.body(Full::new(d.body.clone())).expect("request");
                let t = Instant::now();
                send.ready().await.expect("ready");
                let res = send.send_request(req).await.expect("response");
                let status = res.status();
                let _ = res.into_body().collect().await.expect("body");
                latencies.push(t.elapsed());
                if status != StatusCode::ACCEPTED {
                    bad += 1;
                }
            }
            (latencies, bad)
        }));
    }
    let (mut latencies, mut bad) = (Vec::new(), 0);
    for task in tasks {
        let (l, b) = task.await.expect("sender");
        latencies.extend(l);
        bad += b;
    }
    (start.elapsed(), latencies, bad)
}

/// CPU time used so far by this process's threads, split into the hookguard worker pool's
/// runtime (threads named `hg-worker`), the client's (the main thread) and the rest (the
/// servers), from `/proc/self/task/*/schedstat` (nanoseconds on a CPU); `None` off Linux.
/// Unlike requests/s, CPU time per request barely moves when other processes load the
/// machine, and the split shows where hookguard's extra time goes.
fn cpu_ns() -> Option<Cpu> {
    let me = std::process::id().to_string();
    let mut cpu = Cpu::default();
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        let stat = std::fs::read_to_string(path.join("schedstat")).ok()?;
        let ns = stat.split_whitespace().next()?.parse::<u64>().ok()?;
        let name = std::fs::read_to_string(path.join("comm")).ok()?;
        if name.starts_with("hg-worker") {
            cpu.worker += ns;
        } else if path.file_name().is_some_and(|tid| tid.to_string_lossy() == me) {
            cpu.client += ns;
        } else {
            cpu.server += ns;
        }
    }
    Some(cpu)
}

#[derive(Default, Clone, Copy)]
struct Cpu {
    client: u64,
    server: u64,
    worker: u64,
}

impl Cpu {
    fn since(self, before: Self) -> Self {
        Self {
            client: self.client.saturating_sub(before.client),
            server: self.server.saturating_sub(before.server),
            worker: self.worker.saturating_sub(before.worker),
        }
    }

    fn add(self, other: Self) -> Self {
        Self {
            client: self.client + other.client,
            server: self.server + other.server,
            worker: self.worker + other.worker,
        }
    }
}

#[derive(Default)]
struct Tally {
    cpu: Option<Cpu>,
    elapsed: Duration,
    latencies: Vec<Duration>,
    bad: usize,
    /// Requests/s in each round.
    rounds: Vec<f64>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// `HOOKGUARD_BENCH_INPROC=N`: no sockets; `N` deliveries through the axum router with
/// `tower::ServiceExt::oneshot` on one thread, for an instruction count of the user-space
/// path (`valgrind --tool=callgrind`), which machine load does not change.
fn in_process(count: usize, path: &'static str) {
    use tower::ServiceExt as _;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let inbox = MemoryInbox::new().capacity(count + 1).remember_done(count + 1);
    let app = axum::Router::new()
        .route("/bare", axum::routing::post(|_body: Bytes| async { StatusCode::ACCEPTED }))
        .route_service("/hookguard", WebhookService::new(guard("axum", &inbox)));
    let deliveries = deliveries(count);
    rt.block_on(async {
        let _worker = Worker::new(inbox.clone(), |_hook: Webhook| async { Ok::<(), Infallible>(()) })
            .concurrency(4)
            .spawn();
        for d in &deliveries {
            let mut req = http::Request::post(path).header("host", "127.0.0.1");
            for (name, value) in &d.headers {
                req = req.header(name, value);
            }
            let req = req.body(axum::body::Body::from(d.body.clone())).expect("request");
            let res = app.clone().oneshot(req).await.expect("infallible");
            assert_eq!(res.status(), StatusCode::ACCEPTED);
            tokio::task::yield_now().await;
        }
    });
}

/// A numeric knob from the environment (see the module docs); `None` when unset or not a number.
/// `HOOKGUARD_BENCH_SERVER_THREADS=n`: each server's threads (default 1).
fn server_threads() -> usize {
    knob("HOOKGUARD_BENCH_SERVER_THREADS").unwrap_or(1)
}

fn knob<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Whether the knob `name` is set to `value`.
fn knob_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == value)
}

fn main() {
    if let Some(n) = knob::<usize>("HOOKGUARD_BENCH_INPROC") {
        in_process(n, if std::env::var("HOOKGUARD_BENCH_BARE").is_ok() { "/bare" } else { "/hookguard" });
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (warmup, rounds, per_round) = if quick {
        (100, 1, 200)
    } else {
        // `HOOKGUARD_BENCH_ROUNDS=n`, `HOOKGUARD_BENCH_PER_ROUND=n`: a longer or shorter run.
        (
            WARMUP,
            knob("HOOKGUARD_BENCH_ROUNDS").unwrap_or(ROUNDS),
            knob("HOOKGUARD_BENCH_PER_ROUND").unwrap_or(PER_ROUND),
        )
    };

    let worker_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("hg-worker")
        .enable_all()
        .build()
        .expect("runtime");
    let big = |inbox: MemoryInbox| {
        inbox.capacity(1_000_000).remember_done(knob("HOOKGUARD_BENCH_REMEMBER").unwrap_or(1_000_000))
    };
    let (axum_inbox, actix_inbox) = (big(MemoryInbox::new()), big(MemoryInbox::new()));
    // `HOOKGUARD_BENCH_WORKERS=off`: nothing drains the inboxes while the load runs.
    let drain = !knob_is("HOOKGUARD_BENCH_WORKERS", "off");
    // `HOOKGUARD_BENCH_GATHER_MS=n` or `_US=n`: the workers' gather window in microseconds
    // (default: the library's).
    let gather: Option<u64> =
        knob::<u64>("HOOKGUARD_BENCH_GATHER_MS").map(|ms| ms * 1000).or(knob("HOOKGUARD_BENCH_GATHER_US"));
    let floor = Arc::new(Floor::default());
    let least = Arc::new(Least::default());
    Least::spawn(&least);
    let (axum_addr, axum_rt) = start_axum(&axum_inbox, &floor, &least);
    let (actix_addr, actix_handle) = start_actix(&actix_inbox);
    // `HOOKGUARD_BENCH_WORKER_RT=server`: the axum inbox's workers run on the axum server's
    // runtime (one runtime for everything, as `#[tokio::main]` apps do) instead of their own.
    let shared_rt = knob_is("HOOKGUARD_BENCH_WORKER_RT", "server");
    // `HOOKGUARD_BENCH_LANES=n`: the workers' concurrency (default 4).
    let lanes = knob("HOOKGUARD_BENCH_LANES").unwrap_or(4);
    let workers: Vec<_> = if !drain {
        Vec::new()
    } else {
        [&axum_inbox, &actix_inbox]
            .into_iter()
            .enumerate()
            .map(|(i, inbox)| {
                let _enter = if i == 0 && shared_rt { axum_rt.enter() } else { worker_rt.enter() };
                let worker = Worker::new(inbox.clone(), |_hook: Webhook| async { Ok::<(), Infallible>(()) })
                    .concurrency(lanes);
                match gather {
                    Some(us) => worker.gather(Duration::from_micros(us)),
                    None => worker,
                }
                .spawn()
            })
            .collect()
    };

    let targets: [(&str, SocketAddr, &'static str); 8] = [
        ("axum bare", axum_addr, "/bare"),
        ("axum + svix in handler", axum_addr, "/svix"),
        ("axum + hookguard verify in handler", axum_addr, "/verify"),
        ("axum + floor hand-off in handler", axum_addr, "/floor"),
        ("axum + least pipeline in handler", axum_addr, "/least"),
        ("axum hookguard (WebhookService + memory inbox)", axum_addr, "/hookguard"),
        ("actix bare", actix_addr, "/bare"),
        ("actix hookguard (webhook_service + memory inbox)", actix_addr, "/hookguard"),
    ];
    // `HOOKGUARD_BENCH_ONLY=a,b`: only the targets whose names contain one of these (for profiling).
    let only: Vec<String> = std::env::var("HOOKGUARD_BENCH_ONLY")
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let targets: Vec<_> = targets
        .into_iter()
        .filter(|(name, ..)| only.is_empty() || only.iter().any(|o| name.contains(o.as_str())))
        .collect();
    let total = warmup + rounds * per_round;
    let deliveries = Arc::new(deliveries(total));
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut tallies: Vec<Tally> = targets.iter().map(|_| Tally::default()).collect();
    client.block_on(async {
        for (_, addr, path) in &targets {
            let (_, _, bad) = drive(*addr, path, deliveries.clone(), 0..warmup).await;
            assert_eq!(bad, 0, "warm-up: every delivery accepted");
        }
        for round in 0..rounds {
            let range = warmup + round * per_round..warmup + (round + 1) * per_round;
            // Each round starts at the next target: the one that runs while the previous
            // target's connections close and its workers drain changes every round.
            let n = targets.len();
            let order = (0..n).map(|i| (round + i) % n);
            for i in order {
                let ((_, addr, path), tally) = (&targets[i], &mut tallies[i]);
                let before = cpu_ns();
                let (elapsed, latencies, bad) = drive(*addr, path, deliveries.clone(), range.clone()).await;
                tally.cpu = match (before, cpu_ns()) {
                    (Some(before), Some(after)) => {
                        Some(tally.cpu.unwrap_or_default().add(after.since(before)))
                    }
                    _ => None,
                };
                tally.elapsed += elapsed;
                tally.rounds.push(latencies.len() as f64 / elapsed.as_secs_f64());
                tally.latencies.extend(latencies);
                tally.bad += bad;
            }
        }
    });

    println!(
        "\n{} deliveries of {BODY_SIZE} B per target ({rounds} interleaved rounds of {per_round}, after {warmup} warm-up), {CONCURRENCY} concurrent connections\n",
        rounds * per_round
    );
    println!(
        "| target | requests/s | p50 | p99 | CPU µs per request: all (client + server + hookguard worker) | not 202 |"
    );
    println!("|---|---|---|---|---|---|");
    let mut rates = Vec::new();
    for ((name, _, _), tally) in targets.iter().zip(&mut tallies) {
        tally.latencies.sort_unstable();
        let rate = tally.latencies.len() as f64 / tally.elapsed.as_secs_f64();
        rates.push(rate);
        let per = |ns: u64| ns as f64 / 1e3 / tally.latencies.len().max(1) as f64;
        let cpu = tally.cpu.map_or_else(
            || "-".to_owned(),
            |c| {
                format!(
                    "{:.1} ({:.1} + {:.1} + {:.1})",
                    per(c.client + c.server + c.worker),
                    per(c.client),
                    per(c.server),
                    per(c.worker)
                )
            },
        );
        println!(
            "| {name} | {rate:.0} | {:.0} µs | {:.0} µs | {cpu} | {} |",
            percentile(&tally.latencies, 0.50).as_secs_f64() * 1e6,
            percentile(&tally.latencies, 0.99).as_secs_f64() * 1e6,
            tally.bad
        );
    }
    if rates.len() == targets.len() && targets.len() == 8 {
        // Each ratio over the whole run, then over the rounds (a round runs every target
        // once, one after the other): the median, the middle half and the extremes, which
        // show how much the machine moved it.
        let ratio = |a: usize, b: usize, target: &str| {
            let mut per_round: Vec<f64> =
                tallies[a].rounds.iter().zip(&tallies[b].rounds).map(|(x, y)| x / y).collect();
            per_round.sort_unstable_by(f64::total_cmp);
            let at = |p: f64| per_round[((per_round.len() - 1) as f64 * p).round() as usize];
            println!(
                "{} / {}: {:.3}x (rounds: median {:.3}, middle half {:.3}-{:.3}, all {:.3}-{:.3}){target}",
                targets[a].0,
                targets[b].0,
                rates[a] / rates[b],
                at(0.5),
                at(0.25),
                at(0.75),
                at(0.0),
                at(1.0)
            );
        };
        println!();
        ratio(1, 0, "");
        ratio(2, 0, "");
        ratio(3, 0, "");
        ratio(4, 0, "");
        ratio(5, 0, " (target >= 0.90)");
        ratio(7, 6, " (target >= 0.90)");
    }

    client.block_on(actix_handle.stop(true));
    let grace = Duration::from_secs(5);
    worker_rt.block_on(async {
        for worker in workers {
            worker.shutdown(grace).await;
        }
    });
    drop(axum_rt);
}
