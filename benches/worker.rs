//! The worker pool's cost per job: a backlog in the memory inbox drained by a no-op
//! handler, on one thread (a current-thread runtime), so the figure is the pool's and the
//! inbox's own work per job with no machine noise from other threads.
//!
//! - `pull + ack loop`: the inbox alone (pull 64, ack each): the floor under any pool;
//! - `Worker, 4 lanes` and `Worker, 32 lanes`: [`Worker`] as the HTTP bench and a busy
//!   service would run it.
//!
//! `cargo bench --bench worker`; figures in BENCHMARKS.md.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use hookguard::{
    inbox::{Inbox, MemoryInbox, Pushed, Webhook},
    verify::Verified,
    worker::Worker,
};

/// A backlog of `n` distinct 1 KiB webhooks (made before the clock starts).
fn backlog(n: u64, run: u64) -> MemoryInbox {
    let inbox = MemoryInbox::new().capacity(usize::MAX).remember_done(0);
    let body = bytes::Bytes::from(vec![b'x'; 1024]);
    for i in 0..n {
        let v =
            Verified::new("bench", Some(format!("{run}-{i}").into()), None, Some("push".into()), [0; 32], 0);
        let hook =
            Webhook::new("bench", &v, http::HeaderMap::new(), body.clone(), time::OffsetDateTime::UNIX_EPOCH);
        assert_eq!(inbox.push_now(&hook).expect("memory inbox").expect("pushed"), Pushed::Accepted);
    }
    inbox
}

fn worker(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let run = AtomicU64::new(0);
    let mut group = c.benchmark_group("worker drain, per job");
    group.bench_function("pull + ack loop", |b| {
        b.iter_custom(|n| {
            let inbox = backlog(n, run.fetch_add(1, Ordering::Relaxed));
            rt.block_on(async {
                let start = Instant::now();
                loop {
                    let jobs = inbox.pull(64, Duration::from_secs(300)).await.expect("pull");
                    if jobs.is_empty() {
                        break;
                    }
                    for job in &jobs {
                        std::hint::black_box(job.webhook());
                        inbox.ack_now(job).expect("memory inbox").expect("ack");
                    }
                }
                start.elapsed()
            })
        });
    });
    for lanes in [4, 32] {
        group.bench_function(format!("Worker, {lanes} lanes"), |b| {
            b.iter_custom(|n| {
                let inbox = backlog(n, run.fetch_add(1, Ordering::Relaxed));
                rt.block_on(async {
                    let done = Arc::new((AtomicU64::new(0), tokio::sync::Notify::new()));
                    let start = Instant::now();
                    let seen = Arc::clone(&done);
                    let pool = Worker::new(inbox.clone(), move |hook: Webhook| {
                        std::hint::black_box(&hook);
                        if seen.0.fetch_add(1, Ordering::Relaxed) + 1 == n {
                            seen.1.notify_one();
                        }
                        async { Ok::<(), Infallible>(()) }
                    })
                    .concurrency(lanes)
                    .spawn();
                    if n > 0 {
                        done.1.notified().await;
                    }
                    let elapsed = start.elapsed();
                    pool.shutdown(Duration::from_secs(5)).await;
                    elapsed
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, worker);
criterion_main!(benches);
