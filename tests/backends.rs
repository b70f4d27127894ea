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

#[cfg(feature = "sqlite")]
mod sqlite_inbox {
    use hookguard::{clock::ManualClock, inbox::SqliteInbox};

    /// A SQLite inbox in a temporary directory, removed when the test ends.
    #[derive(Debug)]
    struct TempInbox {
        inbox: SqliteInbox,
        _dir: tempfile::TempDir,
    }

    impl Inbox for TempInbox {
        fn push(
            &self,
            webhook: hookguard::inbox::Webhook,
        ) -> hookguard::inbox::BoxFuture<'_, Result<Pushed, InboxError>> {
            self.inbox.push(webhook)
        }
        fn pull(
            &self,
            max: usize,
            lease: Duration,
        ) -> hookguard::inbox::BoxFuture<'_, Result<Vec<hookguard::inbox::Job>, InboxError>> {
            self.inbox.pull(max, lease)
        }
        fn ack<'a>(
            &'a self,
            job: &'a hookguard::inbox::Job,
        ) -> hookguard::inbox::BoxFuture<'a, Result<(), InboxError>> {
            self.inbox.ack(job)
        }
        fn retry<'a>(
            &'a self,
            job: &'a hookguard::inbox::Job,
            not_before: time::OffsetDateTime,
            error: &'a str,
        ) -> hookguard::inbox::BoxFuture<'a, Result<(), InboxError>> {
            self.inbox.retry(job, not_before, error)
        }
        fn dead_letter<'a>(
            &'a self,
            job: &'a hookguard::inbox::Job,
            error: &'a str,
        ) -> hookguard::inbox::BoxFuture<'a, Result<(), InboxError>> {
            self.inbox.dead_letter(job, error)
        }
        fn dead_letters(
            &self,
            limit: usize,
        ) -> hookguard::inbox::BoxFuture<'_, Result<Vec<hookguard::inbox::DeadLetter>, InboxError>> {
            self.inbox.dead_letters(limit)
        }
        fn redrive<'a>(&'a self, key: &'a str) -> hookguard::inbox::BoxFuture<'a, Result<bool, InboxError>> {
            self.inbox.redrive(key)
        }
        fn depth(&self) -> hookguard::inbox::BoxFuture<'_, Result<usize, InboxError>> {
            self.inbox.depth()
        }
        fn wait(&self, timeout: Duration) -> hookguard::inbox::BoxFuture<'_, ()> {
            self.inbox.wait(timeout)
        }
    }

    async fn make(clock: ManualClock, capacity: usize) -> Option<TempInbox> {
        let dir = tempfile::tempdir().unwrap();
        let inbox = SqliteInbox::builder(dir.path().join("inbox.db"))
            .capacity(capacity)
            .clock(clock)
            .open()
            .await
            .unwrap();
        Some(TempInbox { inbox, _dir: dir })
    }

    inbox_conformance!(make);

    fn open_at(path: &std::path::Path, clock: &ManualClock) -> hookguard::inbox::SqliteInboxBuilder {
        SqliteInbox::builder(path).clock(clock.clone())
    }

    #[tokio::test]
    async fn everything_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let clock = ManualClock::at_unix(1_700_000_000);
        let inbox = open_at(&path, &clock).open().await.unwrap();
        for id in ["a", "b", "c", "d"] {
            inbox.push(crate::common::webhook(id)).await.unwrap();
        }
        let jobs = inbox.pull(3, LEASE).await.unwrap();
        inbox.ack(&jobs[0]).await.unwrap();
        inbox.retry(&jobs[1], clock.now_for_tests() + Duration::from_secs(5), "later").await.unwrap();
        inbox.dead_letter(&jobs[2], "no").await.unwrap();
        drop(inbox);

        let inbox = open_at(&path, &clock).open().await.unwrap();
        assert_eq!(inbox.depth().await.unwrap(), 2, "b (retrying) and d (waiting)");
        assert_eq!(
            inbox.push(crate::common::webhook("a")).await.unwrap(),
            Pushed::Duplicate,
            "acked key kept"
        );
        assert_eq!(inbox.push(crate::common::webhook("d")).await.unwrap(), Pushed::Duplicate);
        let dead = inbox.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].webhook.id(), dead[0].error.as_str()), (Some("c"), "no"));
        let due = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(due.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["d"]);
        clock.advance(Duration::from_secs(5));
        let due = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(
            due.iter().map(|j| (j.webhook().id().unwrap(), j.attempt())).collect::<Vec<_>>(),
            [("b", 2)]
        );
    }

    #[tokio::test]
    async fn the_whole_webhook_comes_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let clock = ManualClock::at_unix(1_700_000_000);
        let v = hookguard::verify::Verified::new(
            "stripe",
            Some("evt_1".into()),
            Some(time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap()),
            Some("invoice.paid".into()),
            [7; 32],
            0,
        );
        let mut headers = http::HeaderMap::new();
        headers.append("x-many", http::HeaderValue::from_static("one"));
        headers.append("x-many", http::HeaderValue::from_static("two"));
        headers.insert("x-opaque", http::HeaderValue::from_bytes(&[b'a', 0xff, b'b']).unwrap());
        let body: Vec<u8> = (0..=255).collect();
        let received = time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_001_987_654_321).unwrap();
        let sent = hookguard::inbox::Webhook::new("pay", &v, headers, body.into(), received);
        {
            let inbox = open_at(&path, &clock).open().await.unwrap();
            inbox.push(sent.clone()).await.unwrap();
        }
        let inbox = open_at(&path, &clock).open().await.unwrap();
        let jobs = inbox.pull(1, LEASE).await.unwrap();
        assert_eq!(jobs[0].webhook(), &sent);
    }

    #[tokio::test]
    async fn a_dead_workers_lease_runs_out_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let clock = ManualClock::at_unix(1_700_000_000);
        let inbox = open_at(&path, &clock).open().await.unwrap();
        inbox.push(crate::common::webhook("a")).await.unwrap();
        let leased = inbox.pull(1, LEASE).await.unwrap();
        assert_eq!(leased.len(), 1);
        drop(inbox); // the process "died" holding the lease: no ack

        let inbox = open_at(&path, &clock).open().await.unwrap();
        assert_eq!(inbox.depth().await.unwrap(), 1);
        assert!(inbox.pull(1, LEASE).await.unwrap().is_empty(), "still leased");
        drop(inbox);

        clock.advance(LEASE + Duration::from_secs(1));
        let inbox = open_at(&path, &clock).open().await.unwrap();
        let again = inbox.pull(1, LEASE).await.unwrap();
        assert_eq!(again.len(), 1, "the job comes back once its lease ran out");
        assert_eq!(again[0].attempt(), 2);
        assert_ne!(again[0].receipt(), leased[0].receipt());
        assert!(matches!(inbox.ack(&leased[0]).await, Err(InboxError::LeaseLost)), "the old receipt is void");
        inbox.ack(&again[0]).await.unwrap();
        assert_eq!(inbox.depth().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn finished_keys_are_kept_for_the_retention_period_then_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at_unix(1_700_000_000);
        let day = Duration::from_secs(24 * 3600);
        let inbox = open_at(&dir.path().join("inbox.db"), &clock).retention(2 * day).open().await.unwrap();
        inbox.push(crate::common::webhook("a")).await.unwrap();
        let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
        inbox.ack(&job).await.unwrap();
        clock.advance(2 * day - Duration::from_secs(1));
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
        clock.advance(Duration::from_secs(2));
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Accepted, "pruned");
        assert_eq!(inbox.depth().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn the_default_retention_is_seven_days() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at_unix(1_700_000_000);
        let inbox = open_at(&dir.path().join("inbox.db"), &clock).open().await.unwrap();
        inbox.push(crate::common::webhook("a")).await.unwrap();
        let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
        inbox.ack(&job).await.unwrap();
        clock.advance(Duration::from_secs(7 * 24 * 3600 - 60));
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
        clock.advance(Duration::from_secs(120));
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Accepted);
    }

    /// Pushes `n` deliveries at once; the number of commits they took.
    async fn concurrent_pushes(inbox: SqliteInbox, n: usize) -> u64 {
        let inbox = std::sync::Arc::new(inbox);
        let before = inbox.stats();
        let mut tasks = Vec::new();
        for i in 0..n {
            let inbox = std::sync::Arc::clone(&inbox);
            tasks.push(tokio::spawn(
                async move { inbox.push(crate::common::webhook(&format!("p{i}"))).await },
            ));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), Pushed::Accepted);
        }
        assert_eq!(inbox.depth().await.unwrap(), n);
        let after = inbox.stats();
        assert_eq!(after.operations - before.operations, n as u64);
        after.commits - before.commits
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn group_commit_shares_transactions_between_concurrent_pushes() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at_unix(1_700_000_000);
        let inbox = open_at(&dir.path().join("inbox.db"), &clock).open().await.unwrap();
        let commits = concurrent_pushes(inbox, 64).await;
        assert!(commits <= 16, "64 concurrent pushes took {commits} commits");

        let inbox = open_at(&dir.path().join("single.db"), &clock).group_commit(false).open().await.unwrap();
        let commits = concurrent_pushes(inbox, 64).await;
        assert_eq!(commits, 64, "without group commit, one transaction per push");
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_file_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let clock = ManualClock::at_unix(1_700_000_000);
        let first = open_at(&path, &clock).open().await.unwrap();
        first.push(crate::common::webhook("a")).await.unwrap();
        let second = open_at(&path, &clock).open().await;
        assert!(matches!(second, Err(InboxError::Backend(_))), "{second:?}");
        drop(first);
        let reopened = open_at(&path, &clock).open().await.unwrap();
        assert_eq!(reopened.depth().await.unwrap(), 1);
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
