//! Durable push throughput and latency of the SQLite inbox: group commit against one
//! transaction (one `fsync`) per push, with 64 concurrent senders (and 1, for the floor).
//!
//! `cargo bench --bench durable --features sqlite`; results in BENCHMARKS.md. Each row
//! warms up for 1 s, then measures for `HOOKGUARD_BENCH_SECS` seconds (default 5). The
//! inbox file is created in a temporary directory on the default temp filesystem (set
//! `TMPDIR` to measure another disk).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hookguard::{
    inbox::{Inbox, Pushed, SqliteInbox, Webhook},
    verify::Verified,
};

const BODY: usize = 1024;

struct Row {
    mode: &'static str,
    senders: usize,
    pushes: u64,
    secs: f64,
    p50: Duration,
    p99: Duration,
    commits: u64,
}

fn webhook(n: u64) -> Webhook {
    let id = format!("msg_{n:012}");
    let v = Verified::new("standard-webhooks", Some(id.into()), None, Some("bench.event".into()), [0; 32], 0);
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", http::HeaderValue::from_static("application/json"));
    let body = format!(r#"{{"type":"bench.event","pad":"{}"}}"#, "x".repeat(BODY - 32));
    Webhook::new("bench", &v, headers, body.into(), time::OffsetDateTime::now_utc())
}

async fn run(mode: &'static str, group_commit: bool, senders: usize, measure: Duration) -> Row {
    let dir = tempfile::tempdir().expect("temp dir");
    let inbox = Arc::new(
        SqliteInbox::builder(dir.path().join("bench.db"))
            .group_commit(group_commit)
            .capacity(100_000_000)
            .open()
            .await
            .expect("open inbox"),
    );
    let next = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (inbox, next, measuring, stop) =
            (Arc::clone(&inbox), Arc::clone(&next), Arc::clone(&measuring), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let hook = webhook(next.fetch_add(1, Ordering::Relaxed));
                let start = Instant::now();
                let pushed = inbox.push(hook).await.expect("push");
                let took = start.elapsed();
                assert_eq!(pushed, Pushed::Accepted);
                if measuring.load(Ordering::Relaxed) {
                    latencies.push(took);
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = inbox.stats();
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(measure).await;
    measuring.store(false, Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let after = inbox.stats();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("sender"));
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
    };
    Row {
        mode,
        senders,
        pushes: latencies.len() as u64,
        secs,
        p50: pct(0.50).copied().unwrap_or_default(),
        p99: pct(0.99).copied().unwrap_or_default(),
        commits: after.commits - before.commits,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported (all rows run).
    let secs = std::env::var("HOOKGUARD_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let measure = Duration::from_secs(secs);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let rows = rt.block_on(async {
        vec![
            run("group commit", true, 64, measure).await,
            run("fsync per push", false, 64, measure).await,
            run("group commit", true, 1, measure).await,
            run("fsync per push", false, 1, measure).await,
        ]
    });
    println!("| mode | senders | pushes/s | p50 push | p99 push | pushes per commit |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.1} |",
            r.mode,
            r.senders,
            r.pushes as f64 / r.secs,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.pushes as f64 / r.commits.max(1) as f64,
        );
    }
    let (group, single) = (&rows[0], &rows[1]);
    println!(
        "\n64 senders: group commit is {:.1}x the throughput of one fsync per push",
        (group.pushes as f64 / group.secs) / (single.pushes as f64 / single.secs).max(f64::MIN_POSITIVE)
    );
}
