//! Two replicas of one receiver: two processes of `examples/durable_receiver.rs`, each
//! with its own guard, connections and worker pool, sharing a durable inbox. A delivery
//! replayed to the other replica is answered `200` and not processed again (the shared
//! inbox's unique key decides), and both replicas' workers drain the one inbox, each job
//! exactly once.
//!
//! Runs against the services named by `HOOKGUARD_TEST_REDIS_URL` and
//! `HOOKGUARD_TEST_POSTGRES_URL`; skipped (with `skipped: …`) only when they are unset.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::receiver::{self, Backend, Receiver, Store, Workers};

const DELIVERIES: usize = 40;
/// The most any one wait may take before the test fails.
const BOUND: Duration = Duration::from_secs(30);

/// Two workers per replica and 100 ms per job: the backlog outlasts a replica's idle
/// poll, so both replicas' workers get jobs.
const WORKERS: Workers =
    Workers { concurrency: 2, work: Duration::from_millis(100), lease: Duration::from_secs(30) };

/// Deliveries alternate between the replicas, each replayed to the other; both replicas'
/// workers drain the shared inbox; replays after processing are still duplicates.
async fn two_replicas_share_one_inbox(store: Store) {
    let _one_at_a_time = receiver::ONE_AT_A_TIME.lock().await;
    let what = store.describe();
    let a = Receiver::start(&store, "a", WORKERS);
    let b = Receiver::start(&store, "b", WORKERS);
    let client = &receiver::client();
    let ids: Vec<String> = (0..DELIVERIES).map(|i| format!("msg_{i:03}")).collect();

    for (i, id) in ids.iter().enumerate() {
        let (first, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert_eq!(
            receiver::send(client, &first.url, id).await,
            Some(202),
            "{what}: the first delivery of {id}, to replica {}, is accepted",
            first.replica
        );
        assert_eq!(
            receiver::send(client, &other.url, id).await,
            Some(200),
            "{what}: {id} replayed to replica {} is a duplicate",
            other.replica
        );
    }

    // Every job acknowledged (the log line is written before the ack, so the logs are
    // final once the inbox is empty).
    let logs = &[store.log("a"), store.log("b")];
    let (a_url, ids_ref, what_ref) = (a.url.as_str(), &ids, &what);
    let log = receiver::wait_for("both replicas to drain the inbox", BOUND, || async move {
        match receiver::depth(client, a_url).await {
            Some(0) => {}
            depth => return Err(format!("inbox depth {depth:?}")),
        }
        let log = receiver::processed(logs);
        let lost: Vec<&String> = ids_ref.iter().filter(|id| !log.contains_key(*id)).collect();
        assert!(lost.is_empty(), "{what_ref}: the inbox is empty but {lost:?} were never processed");
        Ok(log)
    })
    .await;

    // A replay after processing is still a duplicate, on either replica, and queues nothing.
    assert_eq!(receiver::send(client, &a.url, &ids[1]).await, Some(200), "{what}: late replay to a");
    assert_eq!(receiver::send(client, &b.url, &ids[0]).await, Some(200), "{what}: late replay to b");
    assert_eq!(receiver::depth(client, &a.url).await, Some(0), "{what}: a replay queues nothing");
    assert_eq!(receiver::depth(client, &b.url).await, Some(0), "{what}: a replay queues nothing");
    assert_eq!(receiver::processed(logs), log, "{what}: nothing processed again");
    drop((a, b));

    let by = |replica: &str| log.values().filter(|by| by.iter().any(|r| r == replica)).count();
    let (from_a, from_b) = (by("a"), by("b"));
    eprintln!("{what}: replica a processed {from_a}, replica b {from_b}");
    assert!(from_a > 0 && from_b > 0, "{what}: both replicas' workers drained: {from_a} / {from_b}");
    let twice: Vec<_> = log.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "{what}: each delivery processed exactly once: {twice:?}");
    let union: BTreeSet<&String> = log.keys().collect();
    assert_eq!(union, ids.iter().collect(), "{what}: the processed ids are exactly the ids sent");
}

/// The Redis inbox's unique key answers a replay to the other replica as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_inbox_shared_by_two_replicas() {
    if let Some(store) = Store::new(Backend::Redis, "replicas") {
        two_replicas_share_one_inbox(store).await;
    }
}

/// The PostgreSQL inbox's unique key answers a replay to the other replica as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inbox_shared_by_two_replicas() {
    if let Some(store) = Store::new(Backend::Postgres, "replicas") {
        two_replicas_share_one_inbox(store).await;
    }
}
