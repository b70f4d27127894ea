//! Run with: cargo run --example durable_receiver --features axum,sqlite
//!
//! A Standard Webhooks receiver whose inbox is a SQLite file: a `202` is sent only once the
//! delivery is committed to disk, so a delivery the sender saw accepted survives a crash
//! (even `kill -9`) and is processed after the restart. `tests/crash.rs` kills it mid-stream
//! and checks exactly that.
//!
//! The worker "processes" a delivery by appending its id as a line to a log file and
//! `fsync`ing it, *before* the job is acknowledged. Delivery is at least once: if the
//! process dies between the log line and the acknowledgement, the job's lease runs out after
//! the restart and the id is logged again. A real handler makes that harmless with an
//! idempotent effect (an upsert keyed by the delivery id).
//!
//! Environment:
//! - `HOOKGUARD_ADDR`: where to listen (default `127.0.0.1:3000`; port `0` picks one). The
//!   bound address is printed on stdout as `listening on http://ADDR`.
//! - `HOOKGUARD_SQLITE_PATH`: the inbox file (default `inbox.db`).
//! - `HOOKGUARD_PROCESSED_LOG`: the processed-ids log (default `processed.log`).
//! - `HOOKGUARD_SECRET`: the Standard Webhooks secret (default a fixed test secret).
//! - `HOOKGUARD_LEASE_MS`: how long a worker holds a job (default 30,000); a job held by
//!   a process that died comes back after this.
//! - `HOOKGUARD_WORK_MS`: extra time each job takes, to let a backlog build (default 0).
//! - `HOOKGUARD_WORKERS`: jobs processed at once (default 8).
//!
//! Try it:
//! ```sh
//! cargo run --example durable_receiver --features axum,sqlite
//! # then send deliveries signed with the default secret, e.g. with the `standardwebhooks` CLI
//! ```

use std::{
    io::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, routing::get};
use hookguard::{
    guard::Guard,
    inbox::{SqliteInbox, Webhook},
    layer::WebhookService,
    providers::standard_webhooks,
    worker::Worker,
};

/// The secret `tests/crash.rs` signs with unless `HOOKGUARD_SECRET` is set.
const TEST_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let addr: SocketAddr = env_or("HOOKGUARD_ADDR", "127.0.0.1:3000").parse()?;
    let db = PathBuf::from(env_or("HOOKGUARD_SQLITE_PATH", "inbox.db"));
    let log_path = PathBuf::from(env_or("HOOKGUARD_PROCESSED_LOG", "processed.log"));
    let secret = env_or("HOOKGUARD_SECRET", TEST_SECRET);
    let lease = Duration::from_millis(env_or("HOOKGUARD_LEASE_MS", "30000").parse()?);
    let work = Duration::from_millis(env_or("HOOKGUARD_WORK_MS", "0").parse()?);
    let workers: usize = env_or("HOOKGUARD_WORKERS", "8").parse()?;

    let inbox = SqliteInbox::builder(&db).open().await?;
    let guard =
        Guard::builder("standard-webhooks", standard_webhooks::scheme(&secret)?).inbox(inbox.clone()).build();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route_service("/hooks/standard-webhooks", WebhookService::new(guard));

    let log = Arc::new(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?));
    let worker = Worker::new(inbox, move |hook: Webhook| {
        let log = Arc::clone(&log);
        async move {
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            let line = format!("{}\n", hook.id().unwrap_or("-"));
            // The effect, made durable before the job is acknowledged (file I/O off the runtime).
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut file = log.lock().map_err(|_| std::io::Error::other("log lock poisoned"))?;
                file.write_all(line.as_bytes())?;
                file.sync_data()
            })
            .await
            .map_err(std::io::Error::other)?
        }
    })
    .concurrency(workers)
    .lease(lease)
    .idle_poll(Duration::from_millis(200))
    .spawn();

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    let report = worker.shutdown(Duration::from_secs(10)).await;
    tracing::info!(?report, "workers stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return tokio::signal::ctrl_c().await.unwrap_or(()),
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.unwrap_or(());
}
