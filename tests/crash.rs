//! Crash test for the durable inbox: `examples/durable_receiver.rs` is killed with SIGKILL
//! in the middle of a stream of deliveries, restarted on the same SQLite file, and must
//! process every delivery it answered `2xx` for.
//!
//! What is asserted, and why it is the honest property:
//! - **No accepted delivery is lost**: every id that got a `2xx` (before the kill, or on
//!   resending after the restart) appears in the processed log at least once.
//! - **Duplicates only from the crash window**: processing is at least once. The worker
//!   writes (and `fsync`s) the log line *before* it acknowledges the job; a job whose line
//!   was written but whose ack was not yet committed when the process died is leased again
//!   after the restart and logged a second time. Only jobs held by a worker at the kill can
//!   be in that window, so at most `WORKERS` ids appear twice, none more than twice, and
//!   none of them is one that was processed entirely after the restart.
//! - Resends of deliveries that were committed but whose `202` was lost in the kill are
//!   answered `200 duplicate`, not processed again (covered by the bound above).
#![cfg(all(feature = "axum", feature = "sqlite", unix))]

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hookguard::{
    providers::standard_webhooks,
    verify::{Outgoing, Sign as _},
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DELIVERIES: usize = 2_000;
const SENDERS: usize = 16;
const KILL_AFTER: usize = 500;
const WORKERS: usize = 8;

/// Builds the example (a no-op when `cargo test --all-features` built it already) and
/// returns its path, as cargo reports it.
fn example_binary() -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args(["build", "--example", "durable_receiver", "--all-features", "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(out.status.success(), "building the example failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "durable_receiver")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported the example's executable")
}

/// Starts the receiver on a free port; returns it and its base URL.
fn start(bin: &Path, dir: &Path) -> (Child, String) {
    let mut child = Command::new(bin)
        .env("HOOKGUARD_ADDR", "127.0.0.1:0")
        .env("HOOKGUARD_SQLITE_PATH", dir.join("inbox.db"))
        .env("HOOKGUARD_PROCESSED_LOG", dir.join("processed.log"))
        .env("HOOKGUARD_SECRET", SECRET)
        .env("HOOKGUARD_LEASE_MS", "2000")
        .env("HOOKGUARD_WORK_MS", "20")
        .env("HOOKGUARD_WORKERS", WORKERS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the receiver");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the receiver's address");
    let addr =
        line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected line {line:?}"));
    (child, addr.to_owned())
}

/// The processed log: id → how many times it was processed.
fn processed(dir: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(dir.join("processed.log")).unwrap_or_default();
    let mut counts = BTreeMap::new();
    // A line cut short by the kill has no newline: it is not a complete record.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        *counts.entry(line.trim_end().to_owned()).or_insert(0) += 1;
    }
    counts
}

fn id(i: usize) -> String {
    format!("msg_{i:05}")
}

/// Sends the deliveries `ids`, `SENDERS` at a time; returns the ids answered `2xx`. Calls
/// `on_2xx` with the running count after each success.
async fn send_all(url: &str, ids: Vec<String>, on_2xx: Arc<dyn Fn(usize) + Send + Sync>) -> BTreeSet<String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let scheme = Arc::new(standard_webhooks::scheme(SECRET).unwrap());
    let queue = Arc::new(Mutex::new(ids));
    let ok = Arc::new(Mutex::new(BTreeSet::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (client, scheme, queue, ok, count, on_2xx) = (
            client.clone(),
            Arc::clone(&scheme),
            Arc::clone(&queue),
            Arc::clone(&ok),
            Arc::clone(&count),
            Arc::clone(&on_2xx),
        );
        let url = format!("{url}/hooks/standard-webhooks");
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(id) = queue.lock().unwrap().pop() else { break };
                let body = format!(r#"{{"type":"test.event","id":"{id}"}}"#);
                let headers = scheme
                    .sign(&Outgoing::new(body.as_bytes()).id(&id).timestamp(time::OffsetDateTime::now_utc()))
                    .unwrap();
                let mut req = client.post(&url).body(body.clone());
                for (name, value) in headers {
                    req = req.header(name, value);
                }
                if let Ok(res) = req.send().await
                    && res.status().is_success()
                {
                    ok.lock().unwrap().insert(id);
                    on_2xx(count.fetch_add(1, Ordering::SeqCst) + 1);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(ok).unwrap().into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_killed_mid_stream_processes_every_accepted_delivery_after_restart() {
    let bin = example_binary();
    let dir = tempfile::tempdir().unwrap();

    // 1. Send everything; SIGKILL the receiver once 500 deliveries were answered 2xx.
    let (child, url) = start(&bin, dir.path());
    let child = Arc::new(Mutex::new(KillOnDrop(child)));
    let (killed_tx, killed_rx) = std::sync::mpsc::channel();
    let on_2xx: Arc<dyn Fn(usize) + Send + Sync> = {
        let child = Arc::clone(&child);
        let dir = dir.path().to_owned();
        Arc::new(move |n| {
            if n == KILL_AFTER {
                child.lock().unwrap().0.kill().unwrap(); // SIGKILL
                let _ = killed_tx.send(processed(&dir).len());
            }
        })
    };
    let ids: Vec<String> = (0..DELIVERIES).rev().map(id).collect();
    let accepted_before = send_all(&url, ids, on_2xx).await;
    child.lock().unwrap().0.wait().unwrap();
    let processed_at_kill = killed_rx.try_recv().expect("the receiver was killed");
    let logged_before_restart = processed(dir.path());
    eprintln!(
        "before the kill: {} accepted, {processed_at_kill} processed at the kill, {} logged in all",
        accepted_before.len(),
        logged_before_restart.len()
    );
    assert!(accepted_before.len() >= KILL_AFTER && accepted_before.len() < DELIVERIES, "killed mid-stream");
    assert!(
        processed_at_kill < KILL_AFTER,
        "a backlog of accepted, unprocessed deliveries was in the inbox at the kill"
    );

    // 2. Restart on the same file; the sender resends what got no 2xx (as providers do).
    let (child, url) = start(&bin, dir.path());
    let mut child = KillOnDrop(child);
    let missing: Vec<String> = (0..DELIVERIES).map(id).filter(|id| !accepted_before.contains(id)).collect();
    let accepted_after = send_all(&url, missing, Arc::new(|_| {})).await;
    let accepted: BTreeSet<String> = accepted_before.union(&accepted_after).cloned().collect();
    assert_eq!(accepted.len(), DELIVERIES, "after the restart every delivery is answered 2xx");

    // 3. Let the workers finish: every accepted id in the log, within a bound.
    let deadline = Instant::now() + Duration::from_secs(90);
    let log = loop {
        let log = processed(dir.path());
        if accepted.iter().all(|id| log.contains_key(id)) {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted deliveries never processed",
            accepted.iter().filter(|id| !log.contains_key(*id)).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Give leases from the crash window time to run out, so every replay is in the log.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    drop(log);
    let log = processed(dir.path());
    child.kill_now();

    // 4. The properties.
    let twice: Vec<(&String, &usize)> = log.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!("processed {} ids; processed twice (the crash window): {twice:?}", log.len());
    assert!(accepted.iter().all(|id| log[id] >= 1), "every 2xx'd delivery was processed");
    assert!(log.keys().all(|id| accepted.contains(id)), "nothing processed that was never accepted");
    assert!(twice.iter().all(|(_, n)| **n == 2), "no delivery processed more than twice");
    assert!(twice.len() <= WORKERS, "duplicates only for jobs in flight at the kill: {}", twice.len());
    assert!(
        twice.iter().all(|(id, _)| logged_before_restart.contains_key(*id)),
        "a duplicate's first processing happened before the kill"
    );
}

/// Kills the child when dropped (also when an assertion fails).
struct KillOnDrop(Child);

impl KillOnDrop {
    fn kill_now(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill_now();
    }
}
