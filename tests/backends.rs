//! The replay-store and inbox conformance suites, run against every backend.

#[macro_use]
mod common;

mod memory_inbox {
    use hookguard::{clock::ManualClock, inbox::MemoryInbox};

    async fn make(clock: ManualClock, capacity: usize) -> Option<MemoryInbox> {
        Some(MemoryInbox::new().capacity(capacity).clock(clock))
    }

    inbox_conformance!(make);
}

mod memory_replay {
    use hookguard::{clock::ManualClock, replay::MemoryReplayStore};

    async fn make(clock: ManualClock, capacity: usize) -> Option<MemoryReplayStore> {
        Some(MemoryReplayStore::new().capacity(capacity).clock(clock))
    }

    replay_conformance!(make);

    #[tokio::test]
    async fn memory_stays_bounded_under_many_keys() {
        let store = MemoryReplayStore::new().capacity(1_000);
        let mut refused = 0;
        for i in 0..100_000 {
            if store.mark(format!("k{i}").as_bytes(), Duration::from_secs(3600)).await.is_err() {
                refused += 1;
            }
        }
        assert!(store.len() <= 1_008, "held {}", store.len());
        assert!(refused > 0);
    }
}

/// A name no other test (in this run or an earlier one) uses: isolates service-backed tests.
#[cfg(any(feature = "redis", feature = "postgres"))]
fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!(
        "hg_test_{what}_{}_{}_{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 0xffff_ffff
    )
}

#[cfg(feature = "redis")]
mod redis_inbox {
    use hookguard::{clock::ManualClock, inbox::RedisInbox};

    /// `None` only when `HOOKGUARD_TEST_REDIS_URL` is unset; with it set, an unreachable
    /// server fails the test.
    async fn make(clock: ManualClock, capacity: usize) -> Option<RedisInbox> {
        let url = std::env::var("HOOKGUARD_TEST_REDIS_URL").ok()?;
        let inbox =
            RedisInbox::connect(&url).await.expect("HOOKGUARD_TEST_REDIS_URL is set: Redis must answer");
        Some(inbox.prefix(&crate::unique("inbox")).capacity(capacity).clock(clock))
    }

    inbox_conformance!(make);

    #[tokio::test]
    async fn wait_aof_fails_loudly_when_the_server_has_no_aof() {
        use hookguard::inbox::RedisDurability;
        let inbox = or_skip!(make(ManualClock::at_unix(1_700_000_000), 100).await).durability(
            RedisDurability::WaitAof { local: true, replicas: 0, timeout: Duration::from_millis(100) },
        );
        let url = std::env::var("HOOKGUARD_TEST_REDIS_URL").unwrap();
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let aof: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let result = inbox.push(crate::common::webhook("a")).await;
        if aof.get(1).map(String::as_str) == Some("yes") {
            assert_eq!(result.unwrap(), Pushed::Accepted);
        } else {
            assert!(matches!(result, Err(InboxError::Backend(_))), "{result:?}");
        }
    }

    #[tokio::test]
    async fn two_handles_on_one_prefix_share_jobs_and_never_lease_one_twice() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let a = or_skip!(make(clock.clone(), 1000).await);
        let b = a.clone().consumer("other-replica");
        for i in 0..20 {
            a.push(crate::common::webhook(&format!("j{i}"))).await.unwrap();
        }
        let from_a = a.pull(7, LEASE).await.unwrap();
        let from_b = b.pull(100, LEASE).await.unwrap();
        assert_eq!((from_a.len(), from_b.len()), (7, 13));
        // B crashes; its leases run out and A picks its jobs up.
        clock.advance(LEASE + Duration::from_secs(1));
        for job in &from_a {
            assert!(matches!(a.ack(job).await, Ok(())), "an expired but unclaimed lease can still be acked");
        }
        let again = a.pull(100, LEASE).await.unwrap();
        assert_eq!(again.len(), 13);
        assert!(again.iter().all(|j| j.attempt() == 2));
        for job in &again {
            a.ack(job).await.unwrap();
        }
        assert_eq!(a.depth().await.unwrap(), 0);
    }
}

#[cfg(feature = "redis")]
mod redis_replay {
    use hookguard::{clock::ManualClock, replay::RedisReplayStore};

    async fn make(clock: ManualClock, _capacity: usize) -> Option<RedisReplayStore> {
        let url = std::env::var("HOOKGUARD_TEST_REDIS_URL").ok()?;
        let store = RedisReplayStore::connect(&url)
            .await
            .expect("HOOKGUARD_TEST_REDIS_URL is set: Redis must answer");
        Some(store.prefix(format!("{}:", crate::unique("replay"))).clock(clock))
    }

    replay_conformance!(make);

    #[tokio::test]
    async fn server_clock_mode_is_set_nx_px() {
        let Ok(url) = std::env::var("HOOKGUARD_TEST_REDIS_URL") else {
            eprintln!("skipped: backend not configured");
            return;
        };
        let store =
            RedisReplayStore::connect(&url).await.unwrap().prefix(format!("{}:", crate::unique("replay")));
        assert_eq!(store.mark(b"k", Duration::from_millis(200)).await.unwrap(), Mark::New);
        assert_eq!(store.mark(b"k", Duration::from_millis(200)).await.unwrap(), Mark::Seen);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.mark(b"k", Duration::from_millis(200)).await.unwrap(), Mark::New);
        store.unmark(b"k").await.unwrap();
        assert_eq!(store.mark(b"k", Duration::from_secs(60)).await.unwrap(), Mark::New);
        store.unmark(b"k").await.unwrap();
    }
}

#[cfg(feature = "postgres")]
mod postgres_inbox {
    use hookguard::{clock::ManualClock, inbox::PostgresInbox};

    /// `None` only when `HOOKGUARD_TEST_POSTGRES_URL` is unset; each test gets its own schema.
    async fn make(clock: ManualClock, capacity: usize) -> Option<PostgresInbox> {
        let url = std::env::var("HOOKGUARD_TEST_POSTGRES_URL").ok()?;
        let inbox = PostgresInbox::connect(&url)
            .await
            .expect("HOOKGUARD_TEST_POSTGRES_URL is set: PostgreSQL must answer");
        Some(inbox.schema(&crate::unique("pg")).capacity(capacity).clock(clock))
    }

    inbox_conformance!(make);

    #[tokio::test]
    async fn migration_is_idempotent_and_safe_in_parallel() {
        let inbox = or_skip!(make(ManualClock::at_unix(1_700_000_000), 10).await);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let fresh = inbox.clone().capacity(10);
            tasks.push(tokio::spawn(async move { fresh.migrate().await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        inbox.migrate().await.unwrap();
        assert!(inbox.clone().schema("Bad-Name").migrate().await.is_err());
    }

    #[tokio::test]
    async fn finished_keys_are_forgotten_after_the_retention() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let inbox = or_skip!(make(clock.clone(), 10).await).retention(Duration::from_secs(3600));
        inbox.push(crate::common::webhook("a")).await.unwrap();
        let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
        inbox.ack(&job).await.unwrap();
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
        clock.advance(Duration::from_secs(3601));
        assert_eq!(inbox.purge().await.unwrap(), 1);
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Accepted);
    }

    #[tokio::test]
    async fn concurrent_pullers_split_the_work_without_overlap() {
        let inbox = or_skip!(make(ManualClock::at_unix(1_700_000_000), 1000).await);
        for i in 0..60 {
            inbox.push(crate::common::webhook(&format!("j{i}"))).await.unwrap();
        }
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let inbox = inbox.clone();
            tasks.push(tokio::spawn(async move {
                let mut keys = Vec::new();
                loop {
                    let jobs = inbox.pull(3, LEASE).await.unwrap();
                    if jobs.is_empty() {
                        return keys;
                    }
                    for job in jobs {
                        inbox.ack(&job).await.unwrap();
                        keys.push(job.webhook().key().to_owned());
                    }
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!((n, all.len()), (60, 60));
    }
}
