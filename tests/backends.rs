//! The replay-store and inbox conformance suites, run against every backend.

#![cfg(feature = "tower")]

#[macro_use]
mod common;

/// `wait` also ends when a retry becomes due or a lease runs out, on every inbox. Needs
/// `make` and `replica` as for `inbox_conformance!`, and `LEASE`.
macro_rules! due_times_end_waits {
    () => {
        /// A retry's due time or a lease's end, by the inbox clock.
        const SOON: Duration = Duration::from_secs(1);

        /// An inbox and another replica on one store, after `prepare` ran on the replica.
        /// The inbox then waits once (until its wake-up connection is up, or something is
        /// due) and pulls nothing, as an idle worker does.
        async fn after_replica<F: std::future::Future<Output = ()>>(
            prepare: impl FnOnce(ManualClock, hookguard::inbox::Job, std::sync::Arc<dyn Inbox>) -> F,
        ) -> Option<impl Inbox> {
            let clock = ManualClock::at_unix(1_700_000_000);
            let store = crate::common::unique("inbox");
            let inbox = make(clock.clone(), 100, &store).await?;
            let other: std::sync::Arc<dyn Inbox> =
                std::sync::Arc::new(replica(&inbox, clock.clone(), &store).await);
            other.push(crate::common::webhook("a")).await.unwrap();
            let job = other.pull(1, SOON).await.unwrap().remove(0);
            prepare(clock, job, other).await;
            crate::common::bounded("a first wait", inbox.wait(Duration::from_secs(60))).await;
            assert!(inbox.pull(1, LEASE).await.unwrap().is_empty(), "nothing is due yet");
            Some(inbox)
        }

        #[tokio::test]
        async fn a_wait_ends_when_a_lease_runs_out() {
            let inbox = or_skip!(after_replica(|_, _, _| async {}).await);
            // Nothing changes from now on and the clock stands still: only the lease's end
            // can end this wait before its timeout.
            crate::common::bounded(
                "a 60 s wait to end when a lease runs out",
                inbox.wait(Duration::from_secs(60)),
            )
            .await;
        }

        #[tokio::test]
        async fn a_wait_ends_when_a_retry_becomes_due() {
            let inbox = or_skip!(
                after_replica(|clock, job, replica| async move {
                    replica.retry(&job, clock.now_for_tests() + SOON, "later").await.unwrap();
                })
                .await
            );
            crate::common::bounded(
                "a 60 s wait to end when a retry becomes due",
                inbox.wait(Duration::from_secs(60)),
            )
            .await;
        }
    };
}

mod memory_inbox {
    use hookguard::{clock::ManualClock, inbox::MemoryInbox};

    async fn make(clock: ManualClock, capacity: usize, _store: &str) -> Option<MemoryInbox> {
        Some(MemoryInbox::new().capacity(capacity).clock(clock))
    }

    /// The store lives in this process: another handle on it is a clone.
    async fn replica(of: &MemoryInbox, _clock: ManualClock, _store: &str) -> MemoryInbox {
        of.clone()
    }

    inbox_conformance!(make, replica);
    due_times_end_waits!();
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
        assert!(store.len() <= 1_000, "held {}", store.len());
        assert!(refused > 0);
    }
}

#[cfg(feature = "sqlite")]
mod sqlite_inbox {
    use hookguard::{clock::ManualClock, inbox::SqliteInbox};

    /// A SQLite inbox in a temporary directory, removed when the test ends.
    #[derive(Debug, Clone)]
    struct TempInbox {
        inbox: SqliteInbox,
        _dir: std::sync::Arc<tempfile::TempDir>,
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
        fn give_back<'a>(
            &'a self,
            job: &'a hookguard::inbox::Job,
            now: time::OffsetDateTime,
        ) -> hookguard::inbox::BoxFuture<'a, Result<(), InboxError>> {
            self.inbox.give_back(job, now)
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
        fn discard<'a>(&'a self, key: &'a str) -> hookguard::inbox::BoxFuture<'a, Result<bool, InboxError>> {
            self.inbox.discard(key)
        }
        fn depth(&self) -> hookguard::inbox::BoxFuture<'_, Result<usize, InboxError>> {
            self.inbox.depth()
        }
        fn wait(&self, timeout: Duration) -> hookguard::inbox::BoxFuture<'_, ()> {
            self.inbox.wait(timeout)
        }
    }

    async fn make(clock: ManualClock, capacity: usize, _store: &str) -> Option<TempInbox> {
        let dir = tempfile::tempdir().unwrap();
        let inbox = SqliteInbox::builder(dir.path().join("inbox.db"))
            .capacity(capacity)
            .clock(clock)
            .open()
            .await
            .unwrap();
        Some(TempInbox { inbox, _dir: std::sync::Arc::new(dir) })
    }

    /// One process holds the file (see `a_second_process_cannot_open_the_file_in_use`):
    /// another handle on it is a clone.
    async fn replica(of: &TempInbox, _clock: ManualClock, _store: &str) -> TempInbox {
        of.clone()
    }

    inbox_conformance!(make, replica);
    due_times_end_waits!();

    fn open_at(path: &std::path::Path, clock: &ManualClock) -> hookguard::inbox::SqliteInboxBuilder {
        SqliteInbox::builder(path).clock(clock.clone())
    }

    /// A clock that holds the writer thread while `held` (it reads the clock first thing in
    /// each batch), as a stalled disk would: what the test does meanwhile queues up.
    #[derive(Debug, Default)]
    struct Gate {
        held: std::sync::Mutex<bool>,
        released: std::sync::Condvar,
        waiting: std::sync::atomic::AtomicBool,
    }

    #[derive(Debug, Clone, Default)]
    struct GateClock(std::sync::Arc<Gate>);

    impl hookguard::clock::Clock for GateClock {
        fn now(&self) -> time::OffsetDateTime {
            if std::thread::current().name() == Some("hookguard-sqlite-inbox") {
                let mut held = self.0.held.lock().unwrap();
                while *held {
                    self.0.waiting.store(true, std::sync::atomic::Ordering::SeqCst);
                    held = self.0.released.wait(held).unwrap();
                }
            }
            time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
        }
    }

    /// While the writer is held up (a stalled disk), pushes wait in memory only up to
    /// `max_queued_bytes`; past it they answer `Full` at once, and once the writer goes on
    /// the queued ones are kept and new ones accepted again.
    #[tokio::test]
    async fn pushes_waiting_for_a_stalled_writer_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let clock = GateClock::default();
        let inbox = SqliteInbox::builder(dir.path().join("inbox.db"))
            .clock(clock.clone())
            .max_queued_bytes(10_000)
            .open()
            .await
            .unwrap();
        *clock.0.held.lock().unwrap() = true;
        // The first push takes the writer into the held batch.
        let first = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.push(crate::common::webhook("first")).await }
        });
        while !clock.0.waiting.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let mut queued = Vec::new();
        let mut refused = 0;
        for i in 0..10 {
            let hook = crate::common::webhook(&format!("q{i}"));
            let big = hookguard::inbox::Webhook::new(
                "test",
                &hookguard::verify::Verified::new(
                    "github",
                    Some(format!("q{i}").into()),
                    None,
                    None,
                    [0; 32],
                    0,
                ),
                http::HeaderMap::new(),
                bytes::Bytes::from(vec![b'x'; 3_000]),
                hook.received_at(),
            );
            let mut push = inbox.push(big);
            // A refusal is answered at once; a queued push waits for the writer.
            match futures_util::FutureExt::now_or_never(&mut push) {
                Some(answer) => {
                    assert!(matches!(answer, Err(InboxError::Full)), "{answer:?}");
                    refused += 1;
                }
                None => queued.push(push),
            }
        }
        assert_eq!(queued.len(), 3, "3 bodies of 3,000 bytes (and their headers) fit in 10,000");
        assert_eq!(refused, 7);
        *clock.0.held.lock().unwrap() = false;
        clock.0.released.notify_all();
        assert_eq!(first.await.unwrap().unwrap(), Pushed::Accepted);
        for push in queued {
            assert_eq!(push.await.unwrap(), Pushed::Accepted);
        }
        assert_eq!(inbox.push(crate::common::webhook("after")).await.unwrap(), Pushed::Accepted);
        assert_eq!(inbox.depth().await.unwrap(), 5);
    }

    /// A row whose stored headers cannot be read is set aside as a dead letter by the pull
    /// that takes it, and the dead-letter list still shows the others.
    #[tokio::test]
    async fn an_unreadable_row_is_set_aside_and_hides_no_other_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let clock = ManualClock::at_unix(1_700_000_000);
        let inbox = open_at(&path, &clock).open().await.unwrap();
        for id in ["a", "b", "c"] {
            inbox.push(crate::common::webhook(id)).await.unwrap();
        }
        let a = inbox.pull(1, LEASE).await.unwrap().remove(0);
        inbox.dead_letter(&a, "no").await.unwrap();
        drop(inbox);
        let damaged = crate::common::webhook("b").key().to_owned();
        let changed = rusqlite::Connection::open(&path)
            .unwrap()
            .execute("UPDATE hookguard_inbox SET headers = x'01' WHERE key = ?1", [&damaged])
            .unwrap();
        assert_eq!(changed, 1);

        let inbox = open_at(&path, &clock).open().await.unwrap();
        let jobs = inbox.pull(10, LEASE).await.unwrap();
        let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap().to_owned()).collect();
        assert_eq!(ids, ["c"], "the readable job is handed out, the damaged one set aside");
        let listed = inbox.dead_letters(10).await.expect("one unreadable row does not fail the list");
        let ids: Vec<_> = listed.iter().map(|d| d.webhook.id().unwrap()).collect();
        assert_eq!(ids, ["a"], "the readable dead letter is listed");
    }

    /// A column of the wrong type (a body stored as text, a key that is not UTF-8) is that
    /// row's damage: it is set aside like an unreadable record, and fails no pull and no
    /// list (was: every pull failed, and the pushes committed with it were rolled back). A
    /// negative attempt count is read as none.
    #[tokio::test]
    async fn a_column_of_the_wrong_type_is_set_aside_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let clock = ManualClock::at_unix(1_700_000_000);
        let inbox = open_at(&path, &clock).open().await.unwrap();
        for id in ["a", "b", "c", "d", "e"] {
            inbox.push(crate::common::webhook(id)).await.unwrap();
        }
        let a = inbox.pull(1, LEASE).await.unwrap().remove(0);
        inbox.dead_letter(&a, "no").await.unwrap();
        drop(inbox);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let key = |id: &str| crate::common::webhook(id).key().to_owned();
        let damage = [
            ("UPDATE hookguard_inbox SET body = 'x' WHERE key = ?1", key("b")),
            ("UPDATE hookguard_inbox SET key = CAST(x'ff00' AS TEXT) WHERE key = ?1", key("c")),
            ("UPDATE hookguard_inbox SET attempts = -1 WHERE key = ?1", key("d")),
            ("UPDATE hookguard_inbox SET headers = 'text' WHERE key = ?1", key("a")),
        ];
        for (sql, key) in damage {
            assert_eq!(conn.execute(sql, [&key]).unwrap(), 1, "{sql}");
        }
        drop(conn);

        let inbox = open_at(&path, &clock).open().await.unwrap();
        let jobs = inbox.pull(10, LEASE).await.expect("damaged rows fail no pull");
        let ids: Vec<_> = jobs.iter().map(|j| (j.webhook().id().unwrap().to_owned(), j.attempt())).collect();
        assert_eq!(ids, [("d".to_owned(), 1), ("e".to_owned(), 1)], "b and c set aside");
        let listed = inbox.dead_letters(10).await.expect("damaged rows fail no list");
        assert!(listed.is_empty(), "a is unreadable now, b and c were never readable: {listed:?}");
        assert_eq!(inbox.depth().await.unwrap(), 2, "d and e leased");
        assert_eq!(inbox.push(crate::common::webhook("f")).await.unwrap(), Pushed::Accepted);
    }

    /// A dead letter whose record cannot be read (left out of the list) is discarded all
    /// the same: its room is free, and its key is kept as a finished one for the retention
    /// from when it was discarded.
    #[tokio::test]
    async fn an_unreadable_dead_letter_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let clock = ManualClock::at_unix(1_700_000_000);
        let day = Duration::from_secs(24 * 3600);
        let inbox = open_at(&path, &clock).capacity(2).open().await.unwrap();
        for id in ["a", "b"] {
            inbox.push(crate::common::webhook(id)).await.unwrap();
        }
        drop(inbox);
        let key = |id: &str| crate::common::webhook(id).key().to_owned();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let damage = [
            ("UPDATE hookguard_inbox SET headers = x'01' WHERE key = ?1", key("a")),
            ("UPDATE hookguard_inbox SET body = 'x' WHERE key = ?1", key("b")),
        ];
        for (sql, key) in damage {
            assert_eq!(conn.execute(sql, [&key]).unwrap(), 1, "{sql}");
        }
        drop(conn);

        let inbox = open_at(&path, &clock).capacity(2).open().await.unwrap();
        assert!(inbox.pull(10, LEASE).await.unwrap().is_empty(), "both set aside");
        assert!(inbox.dead_letters(10).await.unwrap().is_empty(), "neither can be listed");
        assert!(matches!(inbox.push(crate::common::webhook("c")).await, Err(InboxError::Full)));
        clock.advance(6 * day);
        assert!(inbox.discard(&key("a")).await.unwrap());
        assert!(inbox.discard(&key("b")).await.unwrap());
        assert!(!inbox.discard(&key("a")).await.unwrap(), "gone");
        assert_eq!(inbox.push(crate::common::webhook("c")).await.unwrap(), Pushed::Accepted);
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
        // Eight days after it was set aside, two after it was discarded: still known.
        clock.advance(2 * day);
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
        drop(inbox);

        let conn = rusqlite::Connection::open(&path).unwrap();
        let row: (i64, Vec<u8>, Vec<u8>, Option<String>) = conn
            .query_row(
                "SELECT state, headers, body, error FROM hookguard_inbox WHERE key = ?1",
                [key("b")],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .unwrap();
        assert_eq!(row, (3, Vec::new(), Vec::new(), None), "finished, as an ack leaves a row");
        drop(conn);

        let inbox = open_at(&path, &clock).capacity(2).open().await.unwrap();
        assert_eq!(inbox.depth().await.unwrap(), 1, "c, counted again from the file");
        assert_eq!(inbox.push(crate::common::webhook("d")).await.unwrap(), Pushed::Accepted, "room for one");
        clock.advance(6 * day);
        let jobs = inbox.pull(10, LEASE).await.unwrap();
        for job in &jobs {
            inbox.ack(job).await.unwrap();
        }
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Accepted, "forgotten");
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

    /// Jobs pushed before the wall clock stepped back (a host started with its clock ahead,
    /// then set right) are due after a restart as well; a retry still waits for its time
    /// by the clock, as on every backend.
    #[tokio::test]
    async fn jobs_pushed_before_the_clock_stepped_back_are_due_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let clock = ManualClock::at_unix(1_800_000_000);
        let inbox = open_at(&path, &clock).open().await.unwrap();
        for id in ["a", "b", "c"] {
            inbox.push(crate::common::webhook(id)).await.unwrap();
        }
        let a = inbox.pull(1, LEASE).await.unwrap().remove(0);
        inbox.retry(&a, clock.now_for_tests() + Duration::from_secs(5), "later").await.unwrap();
        drop(inbox);

        clock.set_unix(1_700_000_000);
        let inbox = open_at(&path, &clock).open().await.unwrap();
        crate::common::bounded("a wait with work there", inbox.wait(Duration::from_secs(60))).await;
        let b = inbox.pull(1, LEASE).await.unwrap();
        assert_eq!(b.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["b"]);
        let c = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(c.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["c"], "not a yet");
        for job in b.iter().chain(&c) {
            inbox.ack(job).await.unwrap();
        }
        clock.set_unix(1_800_000_005);
        let due = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(
            due.iter().map(|j| (j.webhook().id().unwrap(), j.attempt())).collect::<Vec<_>>(),
            [("a", 2)]
        );
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

#[cfg(feature = "redis")]
mod redis_inbox {
    use hookguard::{clock::ManualClock, inbox::RedisInbox};

    /// `None` only when `HOOKGUARD_TEST_REDIS_URL` is unset; with it set, an unreachable
    /// server fails the test.
    async fn make(clock: ManualClock, capacity: usize, store: &str) -> Option<RedisInbox> {
        let url = std::env::var("HOOKGUARD_TEST_REDIS_URL").ok()?;
        let inbox =
            RedisInbox::connect(&url).await.expect("HOOKGUARD_TEST_REDIS_URL is set: Redis must answer");
        Some(inbox.prefix(store).capacity(capacity).clock(clock))
    }

    /// Another replica: connections of its own, the same prefix.
    async fn replica(_of: &RedisInbox, clock: ManualClock, store: &str) -> RedisInbox {
        make(clock, 100, store).await.expect("the first replica connected")
    }

    inbox_conformance!(make, replica);
    due_times_end_waits!();

    async fn admin() -> redis::aio::MultiplexedConnection {
        let url = std::env::var("HOOKGUARD_TEST_REDIS_URL").unwrap();
        redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// A job whose stored record cannot be read is set aside as a dead letter by the pull
    /// that takes it; the jobs taken with it are handed out, later pulls are not held up.
    #[tokio::test]
    async fn an_unreadable_job_is_dead_lettered_and_does_not_block_the_queue() {
        let store = crate::common::unique("inbox");
        let clock = ManualClock::at_unix(1_700_000_000);
        let inbox = or_skip!(make(clock.clone(), 100, &store).await);
        for id in ["a", "b", "c"] {
            inbox.push(crate::common::webhook(id)).await.unwrap();
        }
        let damaged = crate::common::webhook("b").key().to_owned();
        let mut admin = admin().await;
        let _: () = redis::cmd("HSET")
            .arg(format!("{{{store}}}:job:{damaged}"))
            .arg("meta")
            .arg(r#"{"nope":1}"#)
            .query_async(&mut admin)
            .await
            .unwrap();
        let jobs = inbox.pull(10, LEASE).await.unwrap();
        let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap().to_owned()).collect();
        assert_eq!(ids, ["a", "c"], "the readable jobs are handed out");
        let dead: i64 =
            redis::cmd("ZCARD").arg(format!("{{{store}}}:dead")).query_async(&mut admin).await.unwrap();
        assert_eq!(dead, 1, "the unreadable one is a dead letter");
        // Later: a's letter comes after the unreadable one.
        clock.advance(Duration::from_secs(1));
        inbox.dead_letter(&jobs[0], "no").await.unwrap();
        inbox.ack(&jobs[1]).await.unwrap();
        assert!(inbox.pull(10, LEASE).await.unwrap().is_empty(), "nothing left to take, nothing failing");
        let listed = inbox.dead_letters(10).await.expect("one unreadable entry does not fail the list");
        let ids: Vec<_> = listed.iter().map(|d| d.webhook.id().unwrap()).collect();
        assert_eq!(ids, ["a"], "the readable dead letter is listed");
        let first = inbox.dead_letters(1).await.unwrap();
        let ids: Vec<_> = first.iter().map(|d| d.webhook.id().unwrap()).collect();
        assert_eq!(ids, ["a"], "the unreadable letter before it takes no place among the limit");
    }

    /// A dead letter whose stored record cannot be read (left out of the list) is discarded
    /// all the same: its job hash goes, and its done key is set with the retention as an
    /// ack sets it.
    #[tokio::test]
    async fn an_unreadable_dead_letter_is_discarded() {
        let store = crate::common::unique("inbox");
        let inbox = or_skip!(make(ManualClock::at_unix(1_700_000_000), 2, &store).await)
            .retention(Duration::from_secs(3600));
        for id in ["a", "b"] {
            inbox.push(crate::common::webhook(id)).await.unwrap();
        }
        let key = |id: &str| crate::common::webhook(id).key().to_owned();
        let mut admin = admin().await;
        let _: () = redis::cmd("HDEL")
            .arg(format!("{{{store}}}:job:{}", key("a")))
            .arg("meta")
            .query_async(&mut admin)
            .await
            .unwrap();
        let jobs = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(jobs.len(), 1, "a is set aside");
        inbox.dead_letter(&jobs[0], "no").await.unwrap();
        let listed = inbox.dead_letters(10).await.unwrap();
        assert_eq!(listed.iter().map(|d| d.webhook.id().unwrap()).collect::<Vec<_>>(), ["b"]);
        assert!(matches!(inbox.push(crate::common::webhook("c")).await, Err(InboxError::Full)));
        assert!(inbox.discard(&key("a")).await.unwrap());
        assert!(!inbox.discard(&key("a")).await.unwrap(), "gone");
        let (job, dead, ttl): (i64, i64, i64) = redis::pipe()
            .cmd("EXISTS")
            .arg(format!("{{{store}}}:job:{}", key("a")))
            .cmd("ZCARD")
            .arg(format!("{{{store}}}:dead"))
            .cmd("PTTL")
            .arg(format!("{{{store}}}:done:{}", key("a")))
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!((job, dead), (0, 1), "the job hash is gone, b is still dead");
        assert!((3_590_000..=3_600_000).contains(&ttl), "the done key lives the retention: {ttl} ms");
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
        assert_eq!(inbox.push(crate::common::webhook("c")).await.unwrap(), Pushed::Accepted, "room made");
    }

    /// A discard waits for durability as every change does: where the server has no AOF,
    /// the wait fails and says so.
    #[tokio::test]
    async fn a_discard_waits_for_durability() {
        let (plain, waiting) = or_skip!(plain_and_waiting().await);
        plain.push(crate::common::webhook("a")).await.unwrap();
        let job = plain.pull(1, LEASE).await.unwrap().remove(0);
        plain.dead_letter(&job, "no").await.unwrap();
        let discarded = waiting.discard(job.webhook().key()).await;
        if aof_is_on().await {
            assert!(discarded.unwrap());
        } else {
            assert!(matches!(discarded, Err(InboxError::Backend(_))), "{discarded:?}");
        }
        assert!(plain.dead_letters(10).await.unwrap().is_empty(), "the script ran all the same");
        assert_eq!(plain.push(crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
    }

    /// Damage the pull script itself would trip on (a count that is not a number, a job
    /// key of another type, a missing field) fails no pull: Redis keeps a script's writes
    /// up to a failed call, which left the entries read with it leased to nobody, for good.
    #[tokio::test]
    async fn damage_the_pull_script_meets_loses_no_other_job() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let store = crate::common::unique("inbox");
        let inbox = or_skip!(make(clock.clone(), 100, &store).await);
        for id in ["a", "b", "c", "d", "e"] {
            inbox.push(crate::common::webhook(id)).await.unwrap();
        }
        let job = |id: &str| format!("{{{store}}}:job:{}", crate::common::webhook(id).key());
        let mut admin = admin().await;
        let _: () =
            redis::cmd("HSET").arg(job("b")).arg("attempts").arg("x").query_async(&mut admin).await.unwrap();
        let _: () = redis::cmd("DEL").arg(job("c")).query_async(&mut admin).await.unwrap();
        let _: () = redis::cmd("SET").arg(job("c")).arg("not a hash").query_async(&mut admin).await.unwrap();
        let _: () = redis::cmd("HDEL").arg(job("d")).arg("meta").query_async(&mut admin).await.unwrap();
        let jobs = inbox.pull(10, LEASE).await.expect("damage fails no pull");
        let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap().to_owned()).collect();
        assert_eq!(ids, ["a", "b", "e"], "c is no job, d is unreadable");
        assert_eq!(jobs[1].attempt(), 1, "a count that is not a number starts again");
        let dead: i64 =
            redis::cmd("ZCARD").arg(format!("{{{store}}}:dead")).query_async(&mut admin).await.unwrap();
        assert_eq!(dead, 1, "d is a dead letter");

        // A damaged job whose lease ran out holds up no later pull either.
        let _: () = redis::cmd("HSET")
            .arg(job("a"))
            .arg("attempts")
            .arg("1.5")
            .query_async(&mut admin)
            .await
            .unwrap();
        clock.advance(LEASE + Duration::from_secs(1));
        let again = inbox.pull(10, LEASE).await.expect("an expired damaged lease fails no pull");
        let mut ids: Vec<_> = again.iter().map(|j| j.webhook().id().unwrap().to_owned()).collect();
        ids.sort();
        assert_eq!(ids, ["a", "b", "e"], "every lease that ran out comes back");
        for job in &again {
            inbox.ack(job).await.unwrap();
        }
        assert!(inbox.pull(10, LEASE).await.unwrap().is_empty());
    }

    /// A job whose lease ran out and whose stream id is damaged (not an id: `XCLAIM`
    /// refused it; or missing) fails no pull and is not left leased: the pull that takes it
    /// back dead-letters it, and the job pushed after it is handed out. Was: the refused
    /// `XCLAIM` failed every later pull on every replica (the damaged job has the earliest
    /// lease end), and a missing id dropped the lease, the job leased for good (counted
    /// against the capacity, its resends duplicates), never dead-lettered.
    #[tokio::test]
    async fn a_damaged_stream_id_of_an_expired_lease_is_dead_lettered_not_stuck() {
        for damage in ["junk", "missing"] {
            let clock = ManualClock::at_unix(1_700_000_000);
            let store = crate::common::unique("inbox");
            let inbox = or_skip!(make(clock.clone(), 100, &store).await);
            inbox.push(crate::common::webhook("a")).await.unwrap();
            let first = inbox.pull(1, LEASE).await.unwrap();
            assert_eq!(first.len(), 1, "{damage}");
            let job = format!("{{{store}}}:job:{}", crate::common::webhook("a").key());
            let mut admin = admin().await;
            if damage == "junk" {
                let _: () = redis::cmd("HSET")
                    .arg(&job)
                    .arg("sid")
                    .arg("junk")
                    .query_async(&mut admin)
                    .await
                    .unwrap();
            } else {
                let _: () = redis::cmd("HDEL").arg(&job).arg("sid").query_async(&mut admin).await.unwrap();
            }
            clock.advance(LEASE + Duration::from_secs(1));
            inbox.push(crate::common::webhook("b")).await.unwrap();
            let jobs = inbox.pull(10, LEASE).await.unwrap_or_else(|e| panic!("{damage}: {e}"));
            let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap().to_owned()).collect();
            assert_eq!(ids, ["b"], "{damage}: the job after it is handed out");
            let dead: i64 =
                redis::cmd("ZCARD").arg(format!("{{{store}}}:dead")).query_async(&mut admin).await.unwrap();
            assert_eq!(dead, 1, "{damage}: a is a dead letter");
            let leased: i64 =
                redis::cmd("ZCARD").arg(format!("{{{store}}}:leases")).query_async(&mut admin).await.unwrap();
            assert_eq!(leased, 1, "{damage}: only b is leased");
            let listed = inbox.dead_letters(10).await.unwrap();
            let ids: Vec<_> = listed.iter().map(|d| d.webhook.id().unwrap()).collect();
            assert_eq!(ids, ["a"], "{damage}: its record is intact, so it is listed");
            inbox.ack(&jobs[0]).await.unwrap();
            // Re-driven, it is a job again, with a stream id of its own.
            assert!(inbox.redrive(crate::common::webhook("a").key()).await.unwrap(), "{damage}");
            let again = inbox.pull(10, LEASE).await.unwrap();
            let ids: Vec<_> = again.iter().map(|j| j.webhook().id().unwrap().to_owned()).collect();
            assert_eq!(ids, ["a"], "{damage}: re-driven");
            inbox.ack(&again[0]).await.unwrap();
            assert!(inbox.pull(10, LEASE).await.unwrap().is_empty(), "{damage}");
        }
    }

    /// An expired lease whose claim fails for a reason of the server's (the group gone)
    /// is not taken for damage: the pull fails, makes the group again and hands the job out
    /// whole, and nothing is dead-lettered (a `pcall` on every claim had buried sound jobs
    /// as unreadable whenever expired leases filled the pull).
    #[tokio::test]
    async fn an_expired_lease_whose_group_is_gone_is_not_dead_lettered() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let store = crate::common::unique("inbox");
        let inbox = or_skip!(make(clock.clone(), 100, &store).await);
        inbox.push(crate::common::webhook("a")).await.unwrap();
        assert_eq!(inbox.pull(1, LEASE).await.unwrap().len(), 1);
        let mut admin = admin().await;
        let _: i64 = redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(format!("{{{store}}}:stream"))
            .arg("hookguard")
            .query_async(&mut admin)
            .await
            .unwrap();
        clock.advance(LEASE + Duration::from_secs(1));
        let jobs = inbox.pull(1, LEASE).await.expect("the group is made again");
        let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap().to_owned()).collect();
        assert_eq!(ids, ["a"]);
        assert!(!jobs[0].webhook().body().is_empty(), "handed out whole");
        let dead: i64 =
            redis::cmd("ZCARD").arg(format!("{{{store}}}:dead")).query_async(&mut admin).await.unwrap();
        assert_eq!(dead, 0, "nothing buried");
    }

    #[tokio::test]
    async fn a_waiter_is_woken_after_its_connection_was_killed() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let store = crate::common::unique("inbox");
        let inbox = or_skip!(make(clock.clone(), 100, &store).await);
        let replica = replica(&inbox, clock, &store).await;
        // A first wake-up: the blocking connection is open.
        assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
        let waiting = crate::common::started(inbox.wait(Duration::from_secs(60))).await;
        replica.push(crate::common::webhook("a")).await.unwrap();
        crate::common::bounded("a first wake-up", waiting).await;
        let jobs = inbox.pull(1, LEASE).await.unwrap();
        inbox.ack(&jobs[0]).await.unwrap();

        let waiting = crate::common::started(inbox.wait(Duration::from_secs(60))).await;
        let mut admin = admin().await;
        let ids = wake_connections(&mut admin, &store).await;
        assert_eq!(ids.len(), 1, "one wake-up connection per inbox");
        let killed: i64 =
            redis::cmd("CLIENT").arg("KILL").arg("ID").arg(&ids[0]).query_async(&mut admin).await.unwrap();
        assert_eq!(killed, 1);
        replica.push(crate::common::webhook("b")).await.unwrap();
        crate::common::bounded("a wake-up on a new connection", waiting).await;
        let jobs = inbox.pull(1, LEASE).await.unwrap();
        assert_eq!(jobs.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["b"]);
    }

    /// The ids of the wake-up connections of the inboxes on `store`.
    async fn wake_connections(admin: &mut redis::aio::MultiplexedConnection, store: &str) -> Vec<String> {
        let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(admin).await.unwrap();
        let name = format!("name=hookguard-wake:{store}");
        clients
            .lines()
            .filter(|line| line.split(' ').any(|field| field == name))
            .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn dropping_the_last_clone_closes_the_wake_up_connection() {
        let store = crate::common::unique("inbox");
        let inbox = or_skip!(make(ManualClock::at_unix(1_700_000_000), 100, &store).await);
        let clone = inbox.clone();
        clone.push(crate::common::webhook("a")).await.unwrap();
        // Work is there: the wait ends once the connection has looked.
        crate::common::bounded("a wait for work already there", inbox.wait(Duration::from_secs(60))).await;
        let mut admin = admin().await;
        assert_eq!(wake_connections(&mut admin, &store).await.len(), 1, "one connection for both clones");
        drop(inbox);
        assert_eq!(wake_connections(&mut admin, &store).await.len(), 1, "a clone still lives");
        drop(clone);
        crate::common::bounded("the wake-up connection to close", async {
            while !wake_connections(&mut admin, &store).await.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn without_its_connection_a_wait_lasts_its_timeout() {
        let inbox =
            or_skip!(make(ManualClock::at_unix(1_700_000_000), 100, &crate::common::unique("inbox")).await)
                .wakeups(redis::Client::open("redis://127.0.0.1:1").unwrap());
        assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
        crate::common::bounded("a 200 ms wait without a connection", inbox.wait(Duration::from_millis(200)))
            .await;
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Accepted);
    }

    /// Whether the test server writes an append-only file (`WAITAOF` fails without one).
    async fn aof_is_on() -> bool {
        let url = std::env::var("HOOKGUARD_TEST_REDIS_URL").unwrap();
        let mut conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
        let aof: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        aof.get(1).map(String::as_str) == Some("yes")
    }

    /// An inbox that does not wait for durability, and a clone of it that does (`WAITAOF`).
    async fn plain_and_waiting() -> Option<(RedisInbox, RedisInbox)> {
        use hookguard::inbox::RedisDurability;
        let plain = make(ManualClock::at_unix(1_700_000_000), 100, &crate::common::unique("inbox")).await?;
        let wait = RedisDurability::WaitAof { local: true, replicas: 0, timeout: Duration::from_millis(100) };
        Some((plain.clone(), plain.durability(wait)))
    }

    /// What a change that waited for durability answers: `want` where the server has AOF
    /// on, else the wait's error.
    async fn assert_waited(answered: Result<Pushed, InboxError>, want: Pushed) {
        if aof_is_on().await {
            assert_eq!(answered.unwrap(), want);
        } else {
            assert!(matches!(answered, Err(InboxError::Backend(_))), "{answered:?}");
        }
    }

    #[tokio::test]
    async fn wait_aof_fails_loudly_when_the_server_has_no_aof() {
        let (_, waiting) = or_skip!(plain_and_waiting().await);
        assert_waited(waiting.push(crate::common::webhook("a")).await, Pushed::Accepted).await;
    }

    /// A copy of a kept webhook is answered `Duplicate` only once the wait for durability
    /// covered the push that kept it (made here without one, as by another replica):
    /// where the wait fails, so does the copy, instead of a `200` for what may be lost.
    #[tokio::test]
    async fn a_copy_waits_for_durability_like_a_push() {
        let (plain, waiting) = or_skip!(plain_and_waiting().await);
        assert_eq!(plain.push(crate::common::webhook("a")).await.unwrap(), Pushed::Accepted);
        assert_waited(waiting.push(crate::common::webhook("a")).await, Pushed::Duplicate).await;
        assert_eq!(
            plain.push(crate::common::webhook("a")).await.unwrap(),
            Pushed::Duplicate,
            "no wait, no error"
        );
    }

    /// A retention too long for Redis's expiry is 1,000 years: the ack keeps its mark
    /// (was: the job deleted, no mark set, and an error).
    #[tokio::test]
    async fn a_retention_too_long_for_redis_keeps_keys() {
        let inbox =
            or_skip!(make(ManualClock::at_unix(1_700_000_000), 100, &crate::common::unique("inbox")).await)
                .retention(Duration::MAX);
        inbox.push(crate::common::webhook("a")).await.unwrap();
        let jobs = inbox.pull(1, LEASE).await.unwrap();
        inbox.ack(&jobs[0]).await.expect("acked");
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
    }

    /// Under `WaitAof` a change's script and its `WAITAOF` go in one pipeline; a server
    /// that lost its scripts (a restart, `SCRIPT FLUSH`) has the script loaded and both
    /// sent again: the push is made, once.
    #[tokio::test]
    async fn a_wait_for_durability_survives_a_script_flush() {
        let (plain, waiting) = or_skip!(plain_and_waiting().await);
        let mut admin = admin().await;
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut admin).await.unwrap();
        assert_waited(waiting.push(crate::common::webhook("a")).await, Pushed::Accepted).await;
        assert_eq!(
            plain.push(crate::common::webhook("a")).await.unwrap(),
            Pushed::Duplicate,
            "the script ran"
        );
        assert_eq!(plain.depth().await.unwrap(), 1, "once");
    }

    #[tokio::test]
    async fn two_handles_on_one_prefix_share_jobs_and_never_lease_one_twice() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let a = or_skip!(make(clock.clone(), 1000, &crate::common::unique("inbox")).await);
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
        Some(store.prefix(format!("{}:", crate::common::unique("replay"))).clock(clock))
    }

    replay_conformance!(make);

    /// A store on Redis's own clock under a fresh prefix, a plain connection beside it, and
    /// the Redis key the store uses for `k`.
    async fn server_clock_store(url: &str) -> (RedisReplayStore, redis::aio::MultiplexedConnection, String) {
        let prefix = format!("{}:", crate::common::unique("replay"));
        let store = RedisReplayStore::connect(url).await.unwrap().prefix(&prefix);
        let conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
        (store, conn, format!("{prefix}k"))
    }

    /// With Redis's own clock, expiry is the key's `PX`: a reservation gets the lease, a
    /// confirmation the time to live (checked with `PTTL`, without waiting for either).
    #[tokio::test]
    async fn server_clock_mode_reservations_expire_by_px() {
        let Ok(url) = std::env::var("HOOKGUARD_TEST_REDIS_URL") else {
            eprintln!("skipped: backend not configured");
            return;
        };
        let (store, mut conn, raw) = server_clock_store(&url).await;
        let pttl = |conn: &mut redis::aio::MultiplexedConnection| {
            let mut conn = conn.clone();
            let raw = raw.clone();
            async move { redis::cmd("PTTL").arg(raw).query_async::<i64>(&mut conn).await.unwrap() }
        };

        assert_eq!(store.reserve(b"k", 7, Duration::from_secs(30)).await.unwrap(), Mark::New);
        let lease = pttl(&mut conn).await;
        assert!((29_000..=30_000).contains(&lease), "PTTL of a reservation: {lease}");
        assert_eq!(store.reserve(b"k", 8, Duration::from_secs(30)).await.unwrap(), Mark::Pending);
        assert_eq!(store.mark(b"k", Duration::from_secs(30)).await.unwrap(), Mark::Seen);
        store.cancel(b"k", 8).await.unwrap();
        assert_eq!(store.reserve(b"k", 8, Duration::from_secs(30)).await.unwrap(), Mark::Pending);

        store.confirm(b"k", Duration::from_secs(3600)).await.unwrap();
        let ttl = pttl(&mut conn).await;
        assert!((3_599_000..=3_600_000).contains(&ttl), "PTTL of a confirmed mark: {ttl}");
        assert_eq!(store.reserve(b"k", 9, Duration::from_secs(30)).await.unwrap(), Mark::Seen);
        store.cancel(b"k", 7).await.unwrap();
        assert_eq!(store.reserve(b"k", 9, Duration::from_secs(30)).await.unwrap(), Mark::Seen);

        store.unmark(b"k").await.unwrap();
        assert_eq!(store.reserve(b"k", 9, Duration::from_secs(30)).await.unwrap(), Mark::New);
        store.cancel(b"k", 9).await.unwrap();
        assert_eq!(pttl(&mut conn).await, -2, "cancelled: the key is gone");
    }

    /// With Redis's own clock, a mark is `SET NX PX`: the key's `PTTL` is the time to live,
    /// and once Redis expires the key the delivery is new again (expiry is forced with
    /// `PEXPIRE 0` instead of waiting for it).
    #[tokio::test]
    async fn server_clock_mode_is_set_nx_px() {
        let Ok(url) = std::env::var("HOOKGUARD_TEST_REDIS_URL") else {
            eprintln!("skipped: backend not configured");
            return;
        };
        let (store, mut conn, raw) = server_clock_store(&url).await;
        assert_eq!(store.mark(b"k", Duration::from_millis(200_000)).await.unwrap(), Mark::New);
        let ttl: i64 = redis::cmd("PTTL").arg(&raw).query_async(&mut conn).await.unwrap();
        assert!((199_000..=200_000).contains(&ttl), "PTTL of a mark: {ttl}");
        assert_eq!(store.mark(b"k", Duration::from_millis(200_000)).await.unwrap(), Mark::Seen);
        let expired: i64 = redis::cmd("PEXPIRE").arg(&raw).arg(0).query_async(&mut conn).await.unwrap();
        assert_eq!(expired, 1, "the mark was there to expire");
        assert_eq!(store.mark(b"k", Duration::from_millis(200)).await.unwrap(), Mark::New);
        store.unmark(b"k").await.unwrap();
        assert_eq!(store.mark(b"k", Duration::from_secs(60)).await.unwrap(), Mark::New);
        store.unmark(b"k").await.unwrap();
    }

    /// A 64 KiB delivery id is kept under a short Redis key (its digest), not at its full
    /// length for the whole time to live, and still refuses its copy; another long key is
    /// new, and short keys stay readable as they are.
    #[tokio::test]
    async fn a_long_key_is_stored_under_a_short_redis_key() {
        let Ok(url) = std::env::var("HOOKGUARD_TEST_REDIS_URL") else {
            eprintln!("skipped: backend not configured");
            return;
        };
        let (store, mut conn, raw) = server_clock_store(&url).await;
        let prefix = raw.strip_suffix('k').unwrap().to_owned();
        let mut long = format!("ep:{}", "x".repeat(64 * 1024)).into_bytes();
        let ttl = Duration::from_secs(60);
        assert_eq!(store.mark(&long, ttl).await.unwrap(), Mark::New);
        assert_eq!(store.mark(b"k", ttl).await.unwrap(), Mark::New);
        let mut keys: Vec<Vec<u8>> =
            redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap();
        keys.sort_by_key(Vec::len);
        assert_eq!(keys.len(), 2, "one Redis key per mark");
        assert_eq!(keys[0], raw.as_bytes(), "a short key is kept as it is");
        assert!(keys[1].len() <= prefix.len() + 71, "a long key is stored short: {} bytes", keys[1].len());
        assert!(keys[1].starts_with(format!("{prefix}sha256:").as_bytes()));

        assert_eq!(store.mark(&long, ttl).await.unwrap(), Mark::Seen, "the copy is refused");
        assert_eq!(store.reserve(&long, 7, ttl).await.unwrap(), Mark::Seen);
        let last = long.len() - 1;
        long[last] = b'y';
        assert_eq!(store.reserve(&long, 7, ttl).await.unwrap(), Mark::New, "another long key is new");
        assert_eq!(store.reserve(&long, 8, ttl).await.unwrap(), Mark::Pending);
        store.confirm(&long, ttl).await.unwrap();
        assert!(store.is_confirmed(&long).await.unwrap());
        store.unmark(&long).await.unwrap();
        assert_eq!(store.mark(&long, ttl).await.unwrap(), Mark::New, "removed by its digest too");
        let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
        store.unmark(&long).await.unwrap();
    }
}

#[cfg(feature = "postgres")]
mod postgres_inbox {
    use hookguard::{clock::ManualClock, inbox::PostgresInbox};

    /// `None` only when `HOOKGUARD_TEST_POSTGRES_URL` is unset; the store is the schema.
    async fn make(clock: ManualClock, capacity: usize, store: &str) -> Option<PostgresInbox> {
        let url = std::env::var("HOOKGUARD_TEST_POSTGRES_URL").ok()?;
        let inbox = PostgresInbox::connect(&url)
            .await
            .expect("HOOKGUARD_TEST_POSTGRES_URL is set: PostgreSQL must answer");
        Some(inbox.schema(store).capacity(capacity).clock(clock))
    }

    /// Another replica: a pool and a `LISTEN` connection of its own, the same schema.
    async fn replica(_of: &PostgresInbox, clock: ManualClock, store: &str) -> PostgresInbox {
        make(clock, 100, store).await.expect("the first replica connected")
    }

    inbox_conformance!(make, replica);
    due_times_end_waits!();

    /// A replica whose clock is behind the pusher's (or a clock stepped back) neither
    /// waits for nor holds up the jobs pushed meanwhile: they are due at once, in the
    /// order they were pushed, a time ahead counting as now; a retry still waits for its
    /// time by the clock.
    #[tokio::test]
    async fn a_replica_whose_clock_is_behind_takes_pushed_jobs_at_once() {
        let store = crate::common::unique("inbox");
        let ahead = ManualClock::at_unix(1_800_000_000);
        let pusher = or_skip!(make(ahead.clone(), 100, &store).await);
        for id in ["a", "b", "c"] {
            pusher.push(crate::common::webhook(id)).await.unwrap();
        }
        let a = pusher.pull(1, LEASE).await.unwrap().remove(0);
        pusher.retry(&a, ahead.now_for_tests() + Duration::from_secs(5), "later").await.unwrap();

        let behind = ManualClock::at_unix(1_700_000_000);
        let worker = replica(&pusher, behind.clone(), &store).await;
        crate::common::bounded("a wait with work there", worker.wait(Duration::from_secs(60))).await;
        worker.push(crate::common::webhook("d")).await.unwrap();
        let jobs = worker.pull(10, LEASE).await.unwrap();
        let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap()).collect();
        assert_eq!(ids, ["b", "c", "d"], "pushed jobs, in order; not the retry");
        for job in &jobs {
            worker.ack(job).await.unwrap();
        }
        behind.set_unix(1_800_000_005);
        let due = worker.pull(10, LEASE).await.unwrap();
        assert_eq!(
            due.iter().map(|j| (j.webhook().id().unwrap(), j.attempt())).collect::<Vec<_>>(),
            [("a", 2)]
        );
    }

    /// An overdue job is not put behind one pushed after it by a replica whose clock
    /// runs ahead: a time ahead of the clock counts as now.
    #[tokio::test]
    async fn a_job_pushed_by_a_clock_ahead_does_not_jump_the_queue() {
        let store = crate::common::unique("inbox");
        let clock = ManualClock::at_unix(1_700_000_000);
        let worker = or_skip!(make(clock.clone(), 100, &store).await);
        worker.push(crate::common::webhook("overdue")).await.unwrap();
        let job = worker.pull(1, LEASE).await.unwrap().remove(0);
        worker.retry(&job, clock.now_for_tests() + Duration::from_secs(1), "later").await.unwrap();
        clock.advance(Duration::from_secs(2));
        let ahead = replica(&worker, ManualClock::at_unix(1_700_000_100), &store).await;
        ahead.push(crate::common::webhook("later")).await.unwrap();
        let first = worker.pull(1, LEASE).await.unwrap();
        assert_eq!(first.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["overdue"]);
        let next = worker.pull(1, LEASE).await.unwrap();
        assert_eq!(next.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["later"]);
    }

    /// A retention too long for the calendar keeps finished keys (was: a panic on the
    /// first pull's purge).
    #[tokio::test]
    async fn a_retention_too_long_for_the_calendar_keeps_keys() {
        let inbox =
            or_skip!(make(ManualClock::at_unix(1_700_000_000), 100, &crate::common::unique("inbox")).await)
                .retention(Duration::MAX);
        inbox.push(crate::common::webhook("a")).await.unwrap();
        let jobs = inbox.pull(1, LEASE).await.unwrap();
        inbox.ack(&jobs[0]).await.unwrap();
        assert_eq!(inbox.purge().await.unwrap(), 0);
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
    }

    async fn admin() -> tokio_postgres::Client {
        let url = std::env::var("HOOKGUARD_TEST_POSTGRES_URL").unwrap();
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// Two replicas on a new schema; the first has waited once, which ends when its
    /// `LISTEN` connection is up (it wakes waiters each time it (re)connects).
    async fn listening() -> Option<(PostgresInbox, PostgresInbox, String)> {
        let clock = ManualClock::at_unix(1_700_000_000);
        let store = crate::common::unique("pg");
        let inbox = make(clock.clone(), 100, &store).await?;
        let other = replica(&inbox, clock, &store).await;
        crate::common::bounded("the LISTEN connection to be up", inbox.wait(Duration::from_secs(60))).await;
        Some((inbox, other, store))
    }

    #[tokio::test]
    async fn a_notification_wakes_a_waiter() {
        let (inbox, replica, _) = or_skip!(listening().await);
        assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
        let waiting = crate::common::started(inbox.wait(Duration::from_secs(60))).await;
        // The clock stands still, so the push is due exactly at the last pull's time: the
        // due-time query does not count it, only the notification can end the wait.
        replica.push(crate::common::webhook("a")).await.unwrap();
        crate::common::bounded("a 60 s wait to end on NOTIFY", waiting).await;
        assert_eq!(inbox.pull(1, LEASE).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_notification_between_a_pull_and_the_wait_is_not_missed() {
        let (inbox, replica, _) = or_skip!(listening().await);
        assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
        replica.push(crate::common::webhook("a")).await.unwrap();
        crate::common::bounded(
            "a 60 s wait to end for a push notified since the last pull",
            inbox.wait(Duration::from_secs(60)),
        )
        .await;
        assert_eq!(inbox.pull(1, LEASE).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn re_drives_and_retries_from_another_replica_are_notified() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let store = crate::common::unique("pg");
        let inbox = or_skip!(make(clock.clone(), 100, &store).await);
        let other = replica(&inbox, clock.clone(), &store).await;
        other.push(crate::common::webhook("a")).await.unwrap();
        other.push(crate::common::webhook("b")).await.unwrap();
        let jobs = other.pull(2, LEASE).await.unwrap();
        other.dead_letter(&jobs[0], "no").await.unwrap();
        crate::common::bounded("the LISTEN connection to be up", inbox.wait(Duration::from_secs(60))).await;
        assert!(inbox.pull(1, LEASE).await.unwrap().is_empty(), "one dead, one leased");
        // The clock stands still: the jobs are due exactly at the last pull's time, which the
        // due-time query does not count, so only a notification ends these waits.
        let waiting = crate::common::started(inbox.wait(Duration::from_secs(60))).await;
        assert!(other.redrive(jobs[0].webhook().key()).await.unwrap());
        crate::common::bounded("a 60 s wait to end on a re-drive's NOTIFY", waiting).await;
        let redriven = inbox.pull(1, LEASE).await.unwrap();
        assert_eq!(redriven.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["a"]);
        let waiting = crate::common::started(inbox.wait(Duration::from_secs(60))).await;
        other.retry(&jobs[1], clock.now_for_tests(), "again").await.unwrap();
        crate::common::bounded("a 60 s wait to end on a retry's NOTIFY", waiting).await;
        let retried = inbox.pull(1, LEASE).await.unwrap();
        assert_eq!(retried.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["b"]);
    }

    /// A row whose stored record cannot be read (damaged by hand, or written by something
    /// else) is set aside as a dead letter by the pull that picks it; the rows picked with
    /// it are handed out, and later pulls are not held up by it.
    #[tokio::test]
    async fn an_unreadable_row_is_dead_lettered_and_does_not_block_the_queue() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let store = crate::common::unique("pg");
        let inbox = or_skip!(make(clock.clone(), 100, &store).await);
        for id in ["a", "b", "c"] {
            inbox.push(crate::common::webhook(id)).await.unwrap();
        }
        let damaged = crate::common::webhook("b").key().to_owned();
        let admin = admin().await;
        let changed = admin
            .execute(
                &format!("UPDATE \"{store}\".inbox SET record = '{{\"nope\":1}}'::jsonb WHERE key = $1"),
                &[&damaged],
            )
            .await
            .unwrap();
        assert_eq!(changed, 1);
        let jobs = inbox.pull(10, LEASE).await.unwrap();
        let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap().to_owned()).collect();
        assert_eq!(ids, ["a", "c"], "the readable rows are handed out");
        let row = admin
            .query_one(
                &format!("SELECT status, last_error FROM \"{store}\".inbox WHERE key = $1"),
                &[&damaged],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "dead");
        assert!(row.get::<_, String>(1).contains("unreadable"), "{}", row.get::<_, String>(1));
        // Later: a's letter comes after the unreadable one.
        clock.advance(Duration::from_secs(1));
        inbox.dead_letter(&jobs[0], "no").await.unwrap();
        inbox.ack(&jobs[1]).await.unwrap();
        assert!(inbox.pull(10, LEASE).await.unwrap().is_empty(), "nothing left to pick, nothing failing");
        let listed = inbox.dead_letters(10).await.expect("one unreadable row does not fail the list");
        let ids: Vec<_> = listed.iter().map(|d| d.webhook.id().unwrap()).collect();
        assert_eq!(ids, ["a"], "the readable dead letter is listed");
        let first = inbox.dead_letters(1).await.unwrap();
        let ids: Vec<_> = first.iter().map(|d| d.webhook.id().unwrap()).collect();
        assert_eq!(ids, ["a"], "the unreadable letter before it takes no place among the limit");
    }

    /// A dead letter whose record cannot be read (left out of the list) is discarded all
    /// the same: kept as `done` from the discard's time (so purged after the retention),
    /// without its body, and the counter rows free its room.
    #[tokio::test]
    async fn an_unreadable_dead_letter_is_discarded() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let store = crate::common::unique("pg");
        let inbox = or_skip!(make(clock.clone(), 2, &store).await).retention(Duration::from_secs(3600));
        for id in ["a", "b"] {
            inbox.push(crate::common::webhook(id)).await.unwrap();
        }
        let key = |id: &str| crate::common::webhook(id).key().to_owned();
        let admin = admin().await;
        let changed = admin
            .execute(
                &format!("UPDATE \"{store}\".inbox SET record = '{{\"nope\":1}}'::jsonb WHERE key = $1"),
                &[&key("a")],
            )
            .await
            .unwrap();
        assert_eq!(changed, 1);
        let jobs = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(jobs.len(), 1, "a is set aside");
        inbox.dead_letter(&jobs[0], "no").await.unwrap();
        assert_eq!(inbox.dead_letters(10).await.unwrap().len(), 1, "b only");
        assert!(matches!(inbox.push(crate::common::webhook("c")).await, Err(InboxError::Full)));
        clock.advance(Duration::from_secs(1800));
        assert!(inbox.discard(&key("a")).await.unwrap());
        assert!(!inbox.discard(&key("a")).await.unwrap(), "gone");
        let row = admin
            .query_one(
                &format!("SELECT status, finished_at, length(body) FROM \"{store}\".inbox WHERE key = $1"),
                &[&key("a")],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "done");
        assert_eq!(row.get::<_, time::OffsetDateTime>(1), clock.now_for_tests(), "finished when discarded");
        assert_eq!(row.get::<_, i32>(2), 0, "no body kept");
        let counts = admin
            .query_one(
                &format!(
                    "SELECT (SELECT sum(n) FROM \"{store}\".inbox_kept)::bigint,
                            (SELECT count(*) FROM \"{store}\".inbox WHERE status <> 'done')"
                ),
                &[],
            )
            .await
            .unwrap();
        assert_eq!((counts.get::<_, i64>(0), counts.get::<_, i64>(1)), (1, 1), "the counter follows: b");
        assert_eq!(inbox.push(crate::common::webhook("c")).await.unwrap(), Pushed::Accepted, "room made");
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
        // An hour after the dead letter was set aside, half an hour after its discard: kept.
        clock.advance(Duration::from_secs(1800));
        let c = inbox.pull(1, LEASE).await.unwrap().remove(0);
        inbox.ack(&c).await.unwrap();
        assert_eq!(inbox.purge().await.unwrap(), 0);
        clock.advance(Duration::from_secs(1801));
        assert_eq!(inbox.purge().await.unwrap(), 1, "its retention ran from the discard");
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Accepted);
    }

    #[tokio::test]
    async fn the_listen_connection_comes_back_after_it_was_killed() {
        let (inbox, replica, store) = or_skip!(listening().await);
        let waiting = crate::common::started(inbox.wait(Duration::from_secs(60))).await;
        let killed = admin()
            .await
            .query_one(
                "WITH listener AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE query = $1)
                 SELECT count(*) FROM listener WHERE pg_terminate_backend(pid)",
                &[&listen(&store)],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(killed, 1, "one LISTEN connection per inbox");
        crate::common::bounded("a wake-up when the LISTEN connection is back", waiting).await;
        assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
        let waiting = crate::common::started(inbox.wait(Duration::from_secs(60))).await;
        replica.push(crate::common::webhook("a")).await.unwrap();
        crate::common::bounded("a 60 s wait to end on NOTIFY after a reconnection", waiting).await;
        assert_eq!(inbox.pull(1, LEASE).await.unwrap().len(), 1);
    }

    /// The statement the `LISTEN` connection of the inboxes on `store` ran (and shows in
    /// `pg_stat_activity` until its first heartbeat, 30 s later).
    fn listen(store: &str) -> String {
        format!("LISTEN \"{store}.inbox\"")
    }

    async fn listen_connections(admin: &tokio_postgres::Client, store: &str) -> i64 {
        admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE query = $1", &[&listen(store)])
            .await
            .unwrap()
            .get(0)
    }

    #[tokio::test]
    async fn dropping_the_last_clone_closes_the_listen_connection() {
        let (inbox, replica, store) = or_skip!(listening().await);
        drop(replica);
        let clone = inbox.clone();
        let admin = admin().await;
        assert_eq!(listen_connections(&admin, &store).await, 1, "one connection for both clones");
        drop(inbox);
        assert_eq!(listen_connections(&admin, &store).await, 1, "a clone still lives");
        drop(clone);
        crate::common::bounded("the LISTEN connection to close", async {
            while listen_connections(&admin, &store).await > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn without_its_connection_a_wait_lasts_its_timeout() {
        let inbox =
            or_skip!(make(ManualClock::at_unix(1_700_000_000), 100, &crate::common::unique("pg")).await)
                .wakeups("postgres://postgres@127.0.0.1:1/test".parse().unwrap(), tokio_postgres::NoTls);
        assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
        crate::common::bounded("a 200 ms wait without a connection", inbox.wait(Duration::from_millis(200)))
            .await;
        assert_eq!(inbox.push(crate::common::webhook("a")).await.unwrap(), Pushed::Accepted);
    }

    #[tokio::test]
    async fn migration_is_idempotent_and_safe_in_parallel() {
        let inbox =
            or_skip!(make(ManualClock::at_unix(1_700_000_000), 10, &crate::common::unique("pg")).await);
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
        let inbox = or_skip!(make(clock.clone(), 10, &crate::common::unique("pg")).await)
            .retention(Duration::from_secs(3600));
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
        let inbox =
            or_skip!(make(ManualClock::at_unix(1_700_000_000), 1000, &crate::common::unique("pg")).await);
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
