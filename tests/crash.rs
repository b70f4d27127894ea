//! Crash test for the durable inboxes: `examples/durable_receiver.rs` is killed with
//! SIGKILL in the middle of a stream of deliveries, restarted on the same store (SQLite
//! file, Redis namespace or PostgreSQL schema), and must process every delivery it
//! answered `2xx` for. One scenario, run on each backend; Redis and PostgreSQL run when
//! `HOOKGUARD_TEST_REDIS_URL` / `HOOKGUARD_TEST_POSTGRES_URL` are set and print
//! `skipped: …` otherwise.
//!
//! What is asserted, and why it is the honest property:
//! - **No accepted delivery is lost**: every id that got a `2xx` (before the kill, or on
//!   resending after the restart) appears in the processed logs at least once, and the
//!   inbox is empty at the end.
//! - **Duplicates only from the crash window**: processing is at least once. The worker
//!   writes (and `fsync`s) the log line *before* it acknowledges the job; a job whose line
//!   was written but whose ack was not yet committed when the process died is leased again
//!   after the restart and logged a second time. Only jobs held by a worker at the kill can
//!   be in that window, so at most `WORKERS` ids appear twice, none more than twice, and
//!   each of them once by the killed process and once by the restarted one.
//! - Resends of deliveries that were kept but whose `202` was lost in the kill are
//!   answered `200 duplicate`, not processed again (covered by the bound above): the
//!   inbox's unique key decides, so nothing the killed process began and did not keep can
//!   turn the resend into a `200` for nothing.
//!
//! The Redis server may keep nothing on disk: a SIGKILL of the *receiver* leaves Redis
//! running, so everything it was told survives.
#![cfg(all(feature = "axum", unix, any(feature = "sqlite", feature = "redis", feature = "postgres")))]

mod common;

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::receiver::{self, Backend, Receiver, Store, Workers};

const DELIVERIES: usize = 2_000;
const SENDERS: usize = 16;
const KILL_AFTER: usize = 500;
const WORKERS: usize = 8;
/// How long the restarted receiver waits for the killed one's leases to run out.
const LEASE: Duration = Duration::from_secs(2);
/// The most any one wait may take before the test fails.
const BOUND: Duration = Duration::from_secs(60);

fn workers() -> Workers {
    Workers { concurrency: WORKERS, work: Duration::from_millis(20), lease: LEASE }
}

fn id(i: usize) -> String {
    format!("msg_{i:05}")
}

/// Sends the deliveries `ids`, `SENDERS` at a time; returns the ids answered `2xx`. Calls
/// `on_2xx` with the running count after each success.
async fn send_all(url: &str, ids: Vec<String>, on_2xx: Arc<dyn Fn(usize) + Send + Sync>) -> BTreeSet<String> {
    let client = receiver::client();
    let queue = Arc::new(Mutex::new(ids));
    let ok = Arc::new(Mutex::new(BTreeSet::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (client, queue, ok, count, on_2xx, url) = (
            client.clone(),
            Arc::clone(&queue),
            Arc::clone(&ok),
            Arc::clone(&count),
            Arc::clone(&on_2xx),
            url.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(id) = queue.lock().unwrap().pop() else { break };
                if receiver::send(&client, &url, &id).await.is_some_and(|status| (200..300).contains(&status))
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

/// The scenario, on `store`.
async fn killed_mid_stream_then_restarted(store: Store) {
    let _one_at_a_time = receiver::ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let what = store.describe();

    // 1. Send everything; SIGKILL the receiver once 500 deliveries were answered 2xx.
    let before = Arc::new(Mutex::new(Receiver::start(&store, "before", workers())));
    let url = before.lock().unwrap().url.clone();
    let (killed_tx, killed_rx) = std::sync::mpsc::channel();
    let on_2xx: Arc<dyn Fn(usize) + Send + Sync> = {
        let before = Arc::clone(&before);
        let log = store.log("before");
        Arc::new(move |n| {
            if n == KILL_AFTER {
                before.lock().unwrap().kill(); // SIGKILL
                let _ = killed_tx.send(receiver::processed(std::slice::from_ref(&log)).len());
            }
        })
    };
    let ids: Vec<String> = (0..DELIVERIES).rev().map(id).collect();
    let accepted_before = send_all(&url, ids, on_2xx).await;
    let processed_at_kill = killed_rx.try_recv().expect("the receiver was killed");
    let logged_before_restart = receiver::processed(&[store.log("before")]);
    eprintln!(
        "{what}: {} accepted before the kill, {processed_at_kill} processed at the kill, {} logged in all",
        accepted_before.len(),
        logged_before_restart.len()
    );
    assert!(accepted_before.len() >= KILL_AFTER && accepted_before.len() < DELIVERIES, "killed mid-stream");
    assert!(
        processed_at_kill < KILL_AFTER,
        "a backlog of accepted, unprocessed deliveries was in the inbox at the kill"
    );

    // 2. Restart on the same store; the sender resends what got no 2xx (as providers do).
    let mut after = Receiver::start(&store, "after", workers());
    let missing: Vec<String> = (0..DELIVERIES).map(id).filter(|id| !accepted_before.contains(id)).collect();
    let accepted_after = send_all(&after.url, missing, Arc::new(|_| {})).await;
    let accepted: BTreeSet<String> = accepted_before.union(&accepted_after).cloned().collect();
    assert_eq!(accepted.len(), DELIVERIES, "after the restart every delivery is answered 2xx");

    // 3. Wait for the inbox to drain: every job acknowledged, including the killed
    //    process's leased ones, which come back after `LEASE`. The log line is written
    //    before the ack, so once the inbox is empty the logs are final.
    let client = &receiver::client();
    let logs = &[store.log("before"), store.log("after")];
    let (after_url, accepted, accepted_before, what) =
        (after.url.as_str(), &accepted, &accepted_before, &what);
    let log = receiver::wait_for("the inbox to drain", BOUND, || async move {
        match receiver::depth(client, after_url).await {
            Some(0) => {}
            depth => return Err(format!("inbox depth {depth:?}")),
        }
        let log = receiver::processed(logs);
        let lost: Vec<&String> = accepted.iter().filter(|id| !log.contains_key(*id)).collect();
        assert!(
            lost.is_empty(),
            "{what}: the inbox is empty but {} accepted deliveries were never processed \
             ({} of them accepted before the kill), e.g. {:?}",
            lost.len(),
            lost.iter().filter(|id| accepted_before.contains(**id)).count(),
            &lost[..lost.len().min(10)]
        );
        Ok(log)
    })
    .await;
    after.kill();

    // 4. The properties.
    let twice: Vec<(&String, &Vec<String>)> = log.iter().filter(|(_, by)| by.len() > 1).collect();
    eprintln!(
        "{what}: processed {} ids; processed twice (the crash window): {twice:?}; {:?} in all",
        log.len(),
        started.elapsed()
    );
    assert!(log.keys().all(|id| accepted.contains(id)), "nothing processed that was never accepted");
    assert!(
        twice.iter().all(|(_, by)| by.as_slice() == ["before", "after"]),
        "a duplicate is one processing before the kill and one after, never more"
    );
    assert!(twice.len() <= WORKERS, "duplicates only for jobs in flight at the kill: {}", twice.len());
    assert!(
        twice.iter().all(|(id, _)| logged_before_restart.contains_key(*id)),
        "a duplicate's first processing happened before the kill"
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_receiver_killed_mid_stream_processes_every_accepted_delivery_after_restart() {
    if let Some(store) = Store::new(Backend::Sqlite, "crash") {
        killed_mid_stream_then_restarted(store).await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_receiver_killed_mid_stream_processes_every_accepted_delivery_after_restart() {
    if let Some(store) = Store::new(Backend::Redis, "crash") {
        killed_mid_stream_then_restarted(store).await;
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_receiver_killed_mid_stream_processes_every_accepted_delivery_after_restart() {
    if let Some(store) = Store::new(Backend::Postgres, "crash") {
        killed_mid_stream_then_restarted(store).await;
    }
}
