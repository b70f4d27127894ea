//! `examples/durable_receiver` as child processes on one backend: the crash test
//! (`tests/crash.rs`) and the two-replica test (`tests/replicas.rs`).
//!
//! - [`Store`]: a backend (SQLite file, Redis namespace or PostgreSQL schema) unique to one
//!   test run, removed again when dropped.
//! - [`Receiver`]: one receiver process on a store, killed (SIGKILL) when dropped, so a
//!   failing test leaves no process behind.
//! - Signed sends, the processed logs, the inbox depth, and [`wait_for`], which polls a
//!   condition up to a deadline instead of sleeping for a guessed time.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use hookguard::{providers::standard_webhooks, verify::HmacScheme};

/// The Standard Webhooks secret the receivers verify with.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How long a receiver may take to print its address.
const START_BOUND: Duration = Duration::from_secs(60);

/// Tests that run receiver processes take this lock, so they run one at a time: on a
/// small machine, parallel senders and workers of several tests would starve each other
/// and blur the timing each scenario relies on (a backlog at the kill).
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Builds the example once per test binary (a no-op when `cargo test --all-features`
/// built it already) and returns its path, as cargo reports it.
pub fn example_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--example", "durable_receiver", "--all-features", "--message-format=json"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit());
        // What cargo sets for a running test, not configuration: passed on, it differs
        // from a plain `cargo` run's environment, and build scripts that watch it (ring's
        // watches `CARGO_MANIFEST_DIR`) would rebuild half the tree here and again in the
        // next `cargo test`.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_EXE_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&name.as_ref())
            {
                cargo.env_remove(name.as_ref());
            }
        }
        let out = cargo.output().expect("run cargo build");
        assert!(out.status.success(), "building the example failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "durable_receiver")
            .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported the example's executable")
    })
}

/// Which inbox the receivers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the store's directory.
    Sqlite,
    /// Redis at `HOOKGUARD_TEST_REDIS_URL`.
    Redis,
    /// PostgreSQL at `HOOKGUARD_TEST_POSTGRES_URL`.
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Redis => "redis",
            Self::Postgres => "postgres",
        }
    }
}

fn service_url(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|url| !url.is_empty())
}

/// The shared state of one test run's receivers: the backend, its namespace, and a
/// directory for the SQLite file and the processed logs. Dropping it removes the Redis
/// keys or the PostgreSQL schema (kill the receivers first).
pub struct Store {
    backend: Backend,
    redis_url: Option<String>,
    postgres_url: Option<String>,
    namespace: String,
    dir: tempfile::TempDir,
}

impl Store {
    /// A fresh store on `backend`, or `None` (after printing `skipped: …`) when the
    /// backend's service variable is unset.
    pub fn new(backend: Backend, what: &str) -> Option<Self> {
        let redis_url = service_url("HOOKGUARD_TEST_REDIS_URL");
        let postgres_url = service_url("HOOKGUARD_TEST_POSTGRES_URL");
        let missing = match backend {
            Backend::Sqlite => None,
            Backend::Redis => redis_url.is_none().then_some("HOOKGUARD_TEST_REDIS_URL"),
            Backend::Postgres => postgres_url.is_none().then_some("HOOKGUARD_TEST_POSTGRES_URL"),
        };
        if let Some(var) = missing {
            eprintln!("skipped: {var} unset");
            return None;
        }
        Some(Self {
            backend,
            redis_url,
            postgres_url,
            namespace: super::unique(what),
            dir: tempfile::tempdir().expect("temporary directory"),
        })
    }

    /// What this store is, for messages.
    pub fn describe(&self) -> String {
        format!("{} inbox", self.backend.name())
    }

    /// The processed log of the receiver named `replica`.
    pub fn log(&self, replica: &str) -> PathBuf {
        self.dir.path().join(format!("{replica}.log"))
    }

    fn configure(&self, cmd: &mut Command) {
        cmd.env("HOOKGUARD_BACKEND", self.backend.name())
            .env("HOOKGUARD_NAMESPACE", &self.namespace)
            .env("HOOKGUARD_SQLITE_PATH", self.dir.path().join("inbox.db"));
        if let Some(url) = &self.redis_url {
            cmd.env("HOOKGUARD_REDIS_URL", url);
        }
        if let Some(url) = &self.postgres_url {
            cmd.env("HOOKGUARD_POSTGRES_URL", url);
        }
    }

    /// Removes this run's Redis keys and PostgreSQL schema.
    async fn clean_up(&self) -> Result<(), Box<dyn std::error::Error>> {
        #[cfg(feature = "redis")]
        if let Some(url) = &self.redis_url
            && self.backend == Backend::Redis
        {
            let mut conn = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
            for pattern in [format!("{{{}}}:*", self.namespace)] {
                let mut cursor = 0_u64;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await?;
                    if !keys.is_empty() {
                        let _: i64 = redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await?;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        #[cfg(feature = "postgres")]
        if let Some(url) = &self.postgres_url
            && self.backend == Backend::Postgres
        {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            let connection = tokio::spawn(connection);
            // `namespace` comes from `unique`: a plain identifier.
            client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.namespace)).await?;
            drop(client);
            let _ = connection.await;
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.backend == Backend::Sqlite {
            return; // The temporary directory goes with `dir`.
        }
        // On a thread of its own: `drop` may run inside the test's runtime.
        let this = &*self;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                match runtime.map(|rt| rt.block_on(this.clean_up())) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("could not clean up {}: {e}", this.namespace),
                    Err(e) => eprintln!("could not clean up {}: {e}", this.namespace),
                }
            });
        });
    }
}

/// How a receiver runs its workers.
#[derive(Debug, Clone, Copy)]
pub struct Workers {
    /// Jobs at once (`HOOKGUARD_WORKERS`).
    pub concurrency: usize,
    /// Extra time per job (`HOOKGUARD_WORK_MS`).
    pub work: Duration,
    /// Lease (`HOOKGUARD_LEASE_MS`).
    pub lease: Duration,
}

/// One receiver process, killed when dropped.
pub struct Receiver {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its name in the processed log.
    pub replica: String,
}

impl Receiver {
    /// Starts a receiver named `replica` on `store` and waits for its address.
    pub fn start(store: &Store, replica: &str, workers: Workers) -> Self {
        let mut cmd = Command::new(example_binary());
        store.configure(&mut cmd);
        cmd.env("HOOKGUARD_ADDR", "127.0.0.1:0")
            .env("HOOKGUARD_REPLICA", replica)
            .env("HOOKGUARD_PROCESSED_LOG", store.log(replica))
            .env("HOOKGUARD_SECRET", SECRET)
            .env("HOOKGUARD_LEASE_MS", workers.lease.as_millis().to_string())
            .env("HOOKGUARD_WORK_MS", workers.work.as_millis().to_string())
            .env("HOOKGUARD_WORKERS", workers.concurrency.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start the receiver");
        let stdout = child.stdout.take().expect("piped stdout");
        // Read the address on a thread, so a receiver that never prints fails the test
        // after a bound instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut receiver = Self { child, url: String::new(), replica: replica.to_owned() };
        let line = rx.recv_timeout(START_BOUND).unwrap_or_default();
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let status = receiver.child.try_wait().ok().flatten();
            panic!("receiver {replica} ({}) did not start: {line:?}, exit {status:?}", store.describe());
        };
        receiver.url = addr.to_owned();
        receiver
    }

    /// SIGKILL (on Unix), and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client for the receivers (no proxies from the environment).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("reqwest client")
}

fn scheme() -> &'static HmacScheme {
    static SCHEME: OnceLock<HmacScheme> = OnceLock::new();
    SCHEME.get_or_init(|| standard_webhooks::scheme(SECRET).expect("the test secret is valid"))
}

/// Sends delivery `id`, signed now, to the receiver at `url`; its status, or `None`
/// when the request failed (refused, reset, timed out).
pub async fn send(client: &reqwest::Client, url: &str, id: &str) -> Option<u16> {
    let body = format!(r#"{{"type":"test.event","id":"{id}"}}"#);
    let headers = super::sign(scheme(), body.as_bytes(), id, time::OffsetDateTime::now_utc());
    let mut req = client.post(format!("{url}/hooks/standard-webhooks")).body(body);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    Some(req.send().await.ok()?.status().as_u16())
}

/// The receiver's inbox depth (jobs waiting or leased in the shared inbox).
pub async fn depth(client: &reqwest::Client, url: &str) -> Option<usize> {
    let res = client.get(format!("{url}/inbox/depth")).send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.text().await.ok()?.trim().parse().ok()
}

/// What the processed logs at `logs` say: delivery id → the replicas that processed it,
/// in log order. A line cut short by a kill (no newline) is not a complete record.
pub fn processed(logs: &[PathBuf]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            if let Some((replica, id)) = line.trim_end().split_once(' ') {
                out.entry(id.to_owned()).or_default().push(replica.to_owned());
            }
        }
    }
    out
}

/// Polls `done` (every 50 ms) until it answers `Some`, failing the test with `what` and
/// the last `Err` explanation after `bound`. Never a sleep for a guessed time: the
/// condition is the event waited for, the bound only limits how long a broken run hangs.
pub async fn wait_for<T, F, Fut>(what: &str, bound: Duration, mut done: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + bound;
    loop {
        match done().await {
            Ok(value) => return value,
            Err(why) => {
                assert!(Instant::now() < deadline, "timed out after {bound:?} waiting for {what}: {why}")
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
