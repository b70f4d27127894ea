//! Run with one of:
//!
//! ```sh
//! cargo run --example durable_receiver --features axum,sqlite
//! HOOKGUARD_BACKEND=redis cargo run --example durable_receiver --features axum,redis
//! HOOKGUARD_BACKEND=postgres cargo run --example durable_receiver --features axum,postgres
//! ```
//!
//! A Standard Webhooks receiver with a durable inbox: a `202` is sent only once the
//! delivery is kept by the backend, so a delivery the sender saw accepted survives a crash
//! of this process (even `kill -9`) and is processed after the restart, or by another
//! replica. `tests/crash.rs` kills it mid-stream on each backend and checks exactly that;
//! `tests/replicas.rs` runs two copies of it against one Redis or PostgreSQL inbox.
//!
//! Backends (`HOOKGUARD_BACKEND`, each behind its cargo feature; a backend whose feature
//! is off is refused at start with the command that builds it):
//! - `sqlite` (default): one file, one process at a time. After a restart the inbox's kept
//!   keys answer resends as duplicates.
//! - `redis`: a [`RedisInbox`](hookguard::inbox::RedisInbox) (Streams with a consumer
//!   group) shared by every replica pointed at the same server and namespace. Accepted
//!   deliveries survive a crash of any replica; surviving a Redis restart is the server's
//!   persistence (AOF).
//! - `postgres`: a [`PostgresInbox`](hookguard::inbox::PostgresInbox) shared by every
//!   replica.
//!
//! Replays: the shared inbox's unique delivery key is the cross-replica dedup. A delivery
//! already kept or finished (even by another replica) is a `Pushed::Duplicate`, which the
//! guard answers `200 duplicate` without queueing it again; the terminal pipeline needs no
//! replay store.
//!
//! The worker "processes" a delivery by appending a line `<replica> <id>` to a log file
//! and `fsync`ing it, *before* the job is acknowledged. Delivery is at least once: if the
//! process dies between the log line and the acknowledgement, the job's lease runs out
//! and the delivery is logged again (after the restart, or by another replica). A real
//! handler makes that harmless with an idempotent effect (an upsert keyed by the delivery
//! id).
//!
//! Environment:
//! - `HOOKGUARD_ADDR`: where to listen (default `127.0.0.1:3000`; port `0` picks one). The
//!   bound address is printed on stdout as `listening on http://ADDR` (the only line on
//!   stdout).
//! - `HOOKGUARD_BACKEND`: `sqlite` (default), `redis` or `postgres`.
//! - `HOOKGUARD_SQLITE_PATH`: the SQLite inbox file (default `inbox.db`).
//! - `HOOKGUARD_REDIS_URL`: the Redis server (default `redis://127.0.0.1:6379`).
//! - `HOOKGUARD_POSTGRES_URL`: the database (default
//!   `postgres://postgres@127.0.0.1:5432/postgres`).
//! - `HOOKGUARD_NAMESPACE`: what separates one receiver's shared state from another's on
//!   the same server (default `hookguard`): the Redis key prefix (inbox keys `{NS}:…`)
//!   or the PostgreSQL schema holding the inbox table (lower
//!   case letters, digits and `_`). Not used by SQLite (the file is the namespace).
//! - `HOOKGUARD_REPLICA`: this process's name in the processed log and, on Redis, its
//!   consumer name in the group (default `pid<process id>`; no whitespace).
//! - `HOOKGUARD_PROCESSED_LOG`: the processed log (default `processed.log`). Give each
//!   replica its own, or let them share one (each line is written by one append).
//! - `HOOKGUARD_SECRET`: the Standard Webhooks secret (default a fixed test secret).
//! - `HOOKGUARD_LEASE_MS`: how long a worker holds a job (default 30,000); a job held by
//!   a process that died comes back after this.
//! - `HOOKGUARD_WORK_MS`: extra time each job takes, to let a backlog build (default 0).
//! - `HOOKGUARD_WORKERS`: jobs processed at once by this process (default 8).
//!
//! Routes: `POST /hooks/standard-webhooks` (the receiver), `GET /healthz`, and
//! `GET /inbox/depth` (jobs waiting or leased in the shared inbox, as a number; tests wait
//! on it reaching `0`).
//!
//! Try it:
//! ```sh
//! cargo run --example durable_receiver --features axum,sqlite
//! # then send deliveries signed with the default secret, e.g. with hookguard's own CLI:
//! echo '{"type":"ping"}' | cargo run -q --features cli -- send -p standard-webhooks \
//!     -s whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --url http://127.0.0.1:3000/hooks/standard-webhooks
//! ```

#[path = "support/signal.rs"]
mod signal;

use std::{
    io::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, http::StatusCode, routing::get};
use hookguard::{
    guard::Guard,
    inbox::{Inbox, Webhook},
    layer::WebhookService,
    providers::standard_webhooks,
    worker::Worker,
};

/// The secret the tests sign with unless `HOOKGUARD_SECRET` is set.
const TEST_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A number from the environment, with the variable's name in the error.
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, BoxError> {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().map_err(|_| format!("{name}={text:?} is not a number").into()),
        Err(_) => Ok(default),
    }
}

/// Where this process keeps its state, from the environment.
struct Settings {
    backend: String,
    namespace: String,
    replica: String,
}

/// The inbox named by `HOOKGUARD_BACKEND`.
async fn open_inbox(settings: &Settings) -> Result<Arc<dyn Inbox>, BoxError> {
    match settings.backend.as_str() {
        "sqlite" => open_sqlite().await,
        "redis" => open_redis(settings).await,
        "postgres" => open_postgres(settings).await,
        other => Err(format!("HOOKGUARD_BACKEND={other:?}: use sqlite, redis or postgres").into()),
    }
}

/// The error for a backend whose cargo feature is off.
#[cfg(not(all(feature = "sqlite", feature = "redis", feature = "postgres")))]
fn feature_off(backend: &str) -> BoxError {
    format!(
        "HOOKGUARD_BACKEND={backend} needs the `{backend}` feature: \
         cargo run --example durable_receiver --features axum,{backend}"
    )
    .into()
}

#[cfg(feature = "sqlite")]
async fn open_sqlite() -> Result<Arc<dyn Inbox>, BoxError> {
    let db = PathBuf::from(env_or("HOOKGUARD_SQLITE_PATH", "inbox.db"));
    Ok(Arc::new(hookguard::inbox::SqliteInbox::builder(&db).open().await?))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite() -> Result<Arc<dyn Inbox>, BoxError> {
    Err(feature_off("sqlite"))
}

#[cfg(feature = "redis")]
async fn open_redis(settings: &Settings) -> Result<Arc<dyn Inbox>, BoxError> {
    use hookguard::inbox::RedisInbox;
    let url = env_or("HOOKGUARD_REDIS_URL", "redis://127.0.0.1:6379");
    let ns = &settings.namespace;
    let inbox = RedisInbox::connect(&url).await?.prefix(ns).consumer(&settings.replica);
    inbox.create_group().await?;
    Ok(Arc::new(inbox))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(_: &Settings) -> Result<Arc<dyn Inbox>, BoxError> {
    Err(feature_off("redis"))
}

#[cfg(feature = "postgres")]
async fn open_postgres(settings: &Settings) -> Result<Arc<dyn Inbox>, BoxError> {
    let url = env_or("HOOKGUARD_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres");
    let inbox = hookguard::inbox::PostgresInbox::connect(&url).await?.schema(&settings.namespace);
    // Creates the schema and table now, so a bad namespace fails at start.
    inbox.migrate().await?;
    Ok(Arc::new(inbox))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &Settings) -> Result<Arc<dyn Inbox>, BoxError> {
    Err(feature_off("postgres"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("durable_receiver: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let addr: SocketAddr = env_or("HOOKGUARD_ADDR", "127.0.0.1:3000").parse()?;
    let log_path = PathBuf::from(env_or("HOOKGUARD_PROCESSED_LOG", "processed.log"));
    let secret = env_or("HOOKGUARD_SECRET", TEST_SECRET);
    let lease = Duration::from_millis(env_number("HOOKGUARD_LEASE_MS", 30_000)?);
    let work = Duration::from_millis(env_number("HOOKGUARD_WORK_MS", 0)?);
    let workers: usize = env_number("HOOKGUARD_WORKERS", 8)?;
    let settings = Settings {
        backend: env_or("HOOKGUARD_BACKEND", "sqlite"),
        namespace: env_or("HOOKGUARD_NAMESPACE", "hookguard"),
        replica: env_or("HOOKGUARD_REPLICA", &format!("pid{}", std::process::id())),
    };
    if settings.replica.is_empty() || settings.replica.contains(char::is_whitespace) {
        return Err(format!("HOOKGUARD_REPLICA={:?}: use a name without whitespace", settings.replica).into());
    }

    tracing::info!(backend = %settings.backend, namespace = %settings.namespace, replica = %settings.replica, "starting");
    let inbox = open_inbox(&settings).await?;
    let guard =
        Guard::builder("standard-webhooks", standard_webhooks::scheme(&secret)?).inbox(Arc::clone(&inbox));
    let depth_inbox = Arc::clone(&inbox);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/inbox/depth",
            get(move || {
                let inbox = Arc::clone(&depth_inbox);
                async move {
                    match inbox.depth().await {
                        Ok(n) => (StatusCode::OK, n.to_string()),
                        Err(e) => {
                            tracing::warn!(error = %e, "inbox depth unavailable");
                            (StatusCode::SERVICE_UNAVAILABLE, "inbox unavailable".to_owned())
                        }
                    }
                }
            }),
        )
        .route_service("/hooks/standard-webhooks", WebhookService::new(guard.build()));

    let log = Arc::new(Mutex::new(open_log(&log_path)?));
    let replica: Arc<str> = Arc::from(settings.replica.as_str());
    let worker = Worker::new(inbox, move |hook: Webhook| {
        let log = Arc::clone(&log);
        let line = format!("{replica} {}\n", hook.id().unwrap_or("-"));
        async move {
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            // The effect, made durable before the job is acknowledged (file I/O off the
            // runtime). One `write_all` per line on an append-mode file: replicas sharing
            // the file never interleave within a line.
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
    axum::serve(listener, app).with_graceful_shutdown(signal::shutdown_signal()).await?;
    let report = worker.shutdown(Duration::from_secs(10)).await;
    tracing::info!(?report, "workers stopped");
    Ok(())
}

/// Opens the processed log for appending. A last line cut short by a crash is ended, so
/// the next record starts on a line of its own.
fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(path)?;
    if file.metadata()?.len() > 0 {
        let mut last = [0_u8; 1];
        file.seek(SeekFrom::End(-1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
    }
    Ok(file)
}
