//! Durable push throughput and latency: 64 concurrent senders pushing distinct webhooks
//! into the Redis and PostgreSQL inboxes (and marking them in the Redis replay store, as
//! the guard does before a push).
//!
//! `HOOKGUARD_TEST_REDIS_URL=redis://127.0.0.1:6379 \
//!  HOOKGUARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!  cargo bench --bench backends --features redis,postgres`
//!
//! `HOOKGUARD_BENCH_PUSHES` sets the pushes per backend (default 20,000). A backend whose
//! variable is unset is skipped.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hookguard::{
    inbox::{Inbox, PostgresInbox, RedisInbox, Webhook},
    replay::{RedisReplayStore, ReplayStore},
    verify::Verified,
};

const SENDERS: usize = 64;

fn webhook(run: &str, i: usize) -> Webhook {
    let id = format!("{run}-{i}");
    let v = Verified::new("github", Some(id.into()), None, Some("push".into()), [0; 32], 0);
    let mut headers = http::HeaderMap::new();
    headers.insert("x-github-event", http::HeaderValue::from_static("push"));
    headers.insert("content-type", http::HeaderValue::from_static("application/json"));
    let body = format!(r#"{{"ref":"refs/heads/main","n":{i},"pad":"{}"}}"#, "x".repeat(900));
    Webhook::new("bench", &v, headers, body.into(), time::OffsetDateTime::now_utc())
}

struct Figures {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn run(
    inbox: Arc<dyn Inbox>,
    replay: Option<Arc<dyn ReplayStore>>,
    total: usize,
    run: &str,
) -> Figures {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let inbox = Arc::clone(&inbox);
        let replay = replay.clone();
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = s;
            while i < total {
                let hook = webhook(&run, i);
                let t = Instant::now();
                if let Some(store) = &replay {
                    store.mark(hook.key().as_bytes(), Duration::from_secs(600)).await.expect("mark");
                }
                inbox.push(hook).await.expect("push");
                lat.push(t.elapsed());
                i += SENDERS;
            }
            lat
        }));
    }
    let mut lat = Vec::with_capacity(total);
    for t in tasks {
        lat.extend(t.await.expect("sender"));
    }
    let elapsed = started.elapsed();
    lat.sort();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Figures { per_sec: total as f64 / elapsed.as_secs_f64(), p50: at(0.50), p99: at(0.99), max: at(1.0) }
}

fn report(name: &str, f: &Figures) {
    println!(
        "{name:<44} {:>9.0} pushes/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
        f.per_sec,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.max.as_secs_f64() * 1e3
    );
}

fn main() {
    let total: usize =
        std::env::var("HOOKGUARD_BENCH_PUSHES").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        println!("{total} pushes per backend, {SENDERS} concurrent senders, ~1 KiB bodies");
        if let Ok(url) = std::env::var("HOOKGUARD_TEST_REDIS_URL") {
            let prefix = format!("hg_bench_{stamp}");
            let inbox = RedisInbox::connect(&url).await.expect("redis").prefix(&prefix).capacity(usize::MAX);
            let f = run(Arc::new(inbox.clone()), None, total, "r1").await;
            report("redis inbox push", &f);
            let store =
                RedisReplayStore::connect(&url).await.expect("redis").prefix(format!("{prefix}:replay:"));
            let f = run(Arc::new(inbox), Some(Arc::new(store)), total, "r2").await;
            report("redis replay mark + redis inbox push", &f);
        } else {
            println!("redis: skipped (HOOKGUARD_TEST_REDIS_URL unset)");
        }
        if let Ok(url) = std::env::var("HOOKGUARD_TEST_POSTGRES_URL") {
            let schema = format!("hg_bench_{stamp}");
            let inbox =
                PostgresInbox::connect(&url).await.expect("postgres").schema(&schema).capacity(usize::MAX);
            inbox.migrate().await.expect("migrate");
            let f = run(Arc::new(inbox), None, total, "p1").await;
            report("postgres inbox push (16 connections)", &f);
        } else {
            println!("postgres: skipped (HOOKGUARD_TEST_POSTGRES_URL unset)");
        }
    });
}
