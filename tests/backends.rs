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
