//! The durable inbox on SQLite: one file, WAL, `synchronous=FULL` (and `fullfsync` on
//! Apple platforms), group commit.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension as _, params};
use time::OffsetDateTime;
use tokio::sync::{Notify, oneshot};

use super::{
    BoxFuture, DeadLetter, Inbox, InboxError, Job, Pushed, Webhook, WebhookRecord, webhook::RecordTimes,
};
use crate::clock::{Clock, SystemClock};

/// The `state` of a finished row. The others: 0 waiting, 1 leased, 2 dead (the SQL below
/// spells them out).
const DONE: i64 = 3;

/// Schema version kept in `PRAGMA user_version`. 2: `timestamp_ns` and `received_at_ns`
/// may hold a time out of 64-bit nanoseconds as a blob ([`StoredTime`]); the tables are
/// those of 1, whose files (every time an integer) are read as they are and marked 2 when
/// opened. A hookguard of schema 1 refuses a file marked 2, rather than set its blob
/// times aside as damage.
const SCHEMA_VERSION: i64 = 2;

/// One row per delivery key: the UNIQUE key makes a resend a duplicate whatever the
/// row's state. `at_ns` means, by state: ready → due time, leased → lease end,
/// dead → when it failed, done → when it was acknowledged. `ord` orders rows with the
/// same time (a fresh value on every requeue).
///
/// A ready row never attempted (`attempts = 0`: pushed, re-driven, or its first attempt
/// given back) was due when it was written: it is due whatever the clock says later, so a
/// wall clock stepped back holds no accepted job. `hookguard_inbox_fresh` finds those whose
/// `at_ns` the clock has not reached again as a range (empty unless it stepped back), so
/// that a pull never reads the waiting retries to find them. A file of schema 2 without it
/// is given it when opened; a hookguard without it keeps it up to date all the same.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hookguard_inbox (
    key            TEXT    NOT NULL UNIQUE,
    endpoint       TEXT    NOT NULL,
    provider       TEXT    NOT NULL,
    delivery_id    TEXT,
    event          TEXT,
    timestamp_ns   INTEGER,
    received_at_ns INTEGER NOT NULL,
    headers        BLOB    NOT NULL,
    body           BLOB    NOT NULL,
    state          INTEGER NOT NULL,
    attempts       INTEGER NOT NULL,
    at_ns          INTEGER NOT NULL,
    ord            INTEGER NOT NULL,
    receipt        INTEGER,
    error          TEXT
);
CREATE INDEX IF NOT EXISTS hookguard_inbox_queue ON hookguard_inbox (at_ns, ord) WHERE state < 2;
CREATE INDEX IF NOT EXISTS hookguard_inbox_dead ON hookguard_inbox (ord) WHERE state = 2;
CREATE INDEX IF NOT EXISTS hookguard_inbox_done ON hookguard_inbox (at_ns) WHERE state = 3;
CREATE INDEX IF NOT EXISTS hookguard_inbox_fresh ON hookguard_inbox (at_ns, ord)
    WHERE state = 0 AND attempts = 0;
";

/// How often, by the clock, finished keys past their retention are pruned.
const PRUNE_EVERY_NS: i64 = 60_000_000_000;

/// Finished keys deleted per transaction at most. The deletes run in the transaction of
/// the batch that prunes, before its operations: a batch of pushes waits for up to this
/// many deletes (and their share of the commit), in every batch while more keys past their
/// retention remain (they are pruned a chunk per batch until none is left), then once a
/// minute. A chunk bounds that wait; it does not take pruning off the pushes' path.
const PRUNE_CHUNK: i64 = 10_000;

/// A durable inbox in one SQLite file: leases, retries at a given time, dead letters and
/// re-drive, with the same semantics as [`MemoryInbox`](super::MemoryInbox).
///
/// **Guarantee:** a push is answered only once its transaction is committed with
/// `synchronous=FULL` in WAL mode, so every accepted webhook survives a process crash and
/// a machine crash or power loss, as far as the drive honours a request to flush its
/// cache; a job leased when the process died comes back when its lease runs out. The
/// commit's sync is `fsync`, except on Apple platforms (macOS, iOS), where `fsync` leaves
/// the data in the drive's cache: there the inbox sets SQLite's `fullfsync` and
/// `checkpoint_fullfsync`, so commits and checkpoints use `F_FULLFSYNC`, which flushes it
/// (each commit costs more there). A drive or virtual disk that acknowledges a flush it
/// did not do (some consumer drives, some hypervisors' write-back caches) can still lose
/// the last commits on power loss.
///
/// One thread owns the file's only write connection (the file is opened in exclusive
/// locking mode: one process at a time). Concurrent calls queue to it, and it commits
/// every queued operation in **one** transaction, then answers each caller: concurrent
/// pushes share an `fsync` (group commit) instead of paying one each. The async methods
/// only wait on a channel; they never block the runtime.
///
/// Capacity (default 100,000) counts waiting, leased and dead jobs; past it, pushes fail
/// with [`InboxError::Full`]. A dead letter holds its room until it is re-driven and
/// processed, or [discarded](Inbox::discard). A finished (or discarded) job's key is kept for the retention period
/// (default 7 days) so a late resend is a [`Pushed::Duplicate`]; older keys are pruned.
///
/// A pushed job is due whatever the wall clock says later: one stepped back (an NTP step,
/// a host started with its clock ahead and then set right) holds up no job already
/// accepted, and does not put off pruning. Retries and leases follow the
/// [clock](SqliteInboxBuilder::clock), as on the other backends.
///
/// **Retention and clock steps.** Within one process, a key is kept for at least the
/// retention of time actually elapsed, whatever the wall clock does meanwhile:
/// - the time a key is finished is stamped by the wall clock, but never earlier than the
///   last stamp (read back from the file when it is opened), up to the retention ahead of
///   the clock: a clock stepped back by up to the retention does not stamp keys in the
///   past, to be pruned early once it is set right;
/// - the point before which finished keys are past their retention (for pruning, and for a
///   push of a finished key not pruned yet) is the wall clock less the retention, but it
///   moves forward by no more than the time elapsed on the system's monotonic clock since
///   it last moved: a clock stepped forward prunes nothing early, and keys are then kept
///   longer by the step until the next restart.
///
/// What this costs, and where it stops: after a clock stepped back, the keys finished
/// until it is back where it was are stamped with the last stamp before the step, so kept
/// until then plus the retention, at most twice the retention (a stamp is never more than
/// the retention ahead of the clock: a clock that ran years ahead once does not keep every
/// later key for years, the file growing meanwhile; and keys finished while a clock is
/// behind by more than the retention, an RTC reset to 1970, are pruned early once it is set
/// right); after a step back and a step forward within one process, keys are kept longer
/// by up to the step until the next restart. A step while no process had the file open cannot be told
/// apart from time passed: when the file is opened, the point starts at the wall clock
/// less the retention (so a step forward while it was closed forgets keys early; after a
/// step back, new keys are still stamped no earlier than the file's last). With a
/// [clock](SqliteInboxBuilder::clock) of one's own, its own steps are taken as time
/// elapsed (a test's manual clock moved forward is time passed): only the stamps are held.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use hookguard::{inbox::{Inbox, Pushed, SqliteInbox, Webhook}, verify::Verified};
///
/// let dir = tempfile::tempdir()?;
/// let inbox = SqliteInbox::builder(dir.path().join("inbox.db"))
///     .capacity(10_000)
///     .retention(Duration::from_secs(3 * 24 * 3600))
///     .open()
///     .await?;
/// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
/// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::now_utc());
/// assert_eq!(inbox.push(hook.clone()).await?, Pushed::Accepted);
/// assert_eq!(inbox.push(hook).await?, Pushed::Duplicate);
/// let jobs = inbox.pull(10, Duration::from_secs(30)).await?;
/// inbox.ack(&jobs[0]).await?;
/// assert_eq!(inbox.depth().await?, 0);
/// # Ok(()) }
/// ```
///
/// **Closing.** The file stays open while any clone of the inbox is alive. Dropping the
/// last one waits until the writer has answered every operation queued and closed the
/// file (SQLite then checkpoints the WAL into it), so that the file can be opened again
/// at once, by this process or another. That wait blocks the thread that drops it, for a
/// checkpoint at least and longer on a slow disk: in async code, drop the last handle on a
/// blocking thread so that no runtime thread waits.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookguard::{inbox::{Inbox, SqliteInbox, Webhook}, verify::Verified};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("inbox.db");
/// let inbox = SqliteInbox::builder(&path).open().await?;
/// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
/// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::now_utc());
/// inbox.push(hook).await?;
/// // Closed on a blocking thread: the runtime's thread goes on meanwhile.
/// tokio::task::spawn_blocking(move || drop(inbox)).await?;
/// // Closed once that is done: the file can be opened again.
/// let again = SqliteInbox::builder(&path).open().await?;
/// assert_eq!(again.depth().await?, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteInbox {
    inner: Arc<Inner>,
    shared: Arc<Shared>,
    /// The writer's clock, for [`Inbox::wait`]'s due times.
    clock: Arc<dyn Clock>,
}

/// Owns the writer thread: the last handle dropped closes the queue and waits for the
/// thread to finish its batch and close the file. The wait blocks the dropping thread (a
/// runtime's too), on purpose: the file is free once the drop returns, and tests, and a
/// program that opens the file again, count on it (see [`SqliteInbox`], "Closing").
struct Inner {
    path: PathBuf,
    sender: Option<mpsc::Sender<Op>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the writer publishes after each commit.
#[derive(Debug, Default)]
struct Shared {
    notify: Notify,
    queued: AtomicUsize,
    commits: AtomicU64,
    operations: AtomicU64,
    /// Bytes of the pushes sent to the writer and not yet taken up by it: their bodies and
    /// headers ([`Request::queued_bytes`]).
    in_flight: AtomicUsize,
    /// The most [`in_flight`](Self::in_flight) may reach before pushes answer `Full`.
    max_in_flight: usize,
}

impl fmt::Debug for SqliteInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteInbox")
            .field("path", &self.inner.path)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Counters of a [`SqliteInbox`]'s writer, for tests and metrics.
///
/// ```
/// use hookguard::inbox::SqliteStats;
/// let stats = SqliteStats::default();
/// assert_eq!(stats.commits, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteStats {
    /// Transactions committed (each one `fsync` of the WAL when it wrote anything).
    pub commits: u64,
    /// Operations (pushes, pulls, acks, …) answered from committed transactions.
    pub operations: u64,
}

/// Configures and opens a [`SqliteInbox`]; made by [`SqliteInbox::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use hookguard::{clock::ManualClock, inbox::{Inbox, InboxError, Pushed, SqliteInbox, Webhook}, verify::Verified};
/// let path = std::env::temp_dir().join(format!("hookguard-doc-builder-{}.db", std::process::id()));
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let inbox = SqliteInbox::builder(&path)
///     .capacity(1)
///     .retention(Duration::from_secs(24 * 3600))
///     .clock(clock.clone())
///     .open()
///     .await?;
/// let hook = |id: &str| {
///     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
///     Webhook::new("github", &v, Default::default(), "{}".into(), clock.now_for_tests())
/// };
/// inbox.push(hook("d-1")).await?;
/// assert!(matches!(inbox.push(hook("d-2")).await, Err(InboxError::Full)));
/// let job = inbox.pull(1, Duration::from_secs(30)).await?.remove(0);
/// inbox.ack(&job).await?;
/// assert_eq!(inbox.push(hook("d-1")).await?, Pushed::Duplicate, "its key is kept a day");
/// clock.advance(Duration::from_secs(24 * 3600 + 1));
/// assert_eq!(inbox.push(hook("d-1")).await?, Pushed::Accepted);
/// # drop(inbox);
/// # std::fs::remove_file(&path)?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct SqliteInboxBuilder {
    path: PathBuf,
    capacity: usize,
    retention: Duration,
    group_commit: bool,
    max_batch: usize,
    max_queued_bytes: usize,
    clock: Arc<dyn Clock>,
    elapsed: Elapsed,
}

/// What measures the time elapsed, which bounds how fast the retention's cutoff moves
/// forward (see [`Writer::advance_cutoff`]).
#[derive(Clone)]
enum Elapsed {
    /// The system's monotonic clock ([`std::time::Instant`]): with the default clock.
    Monotonic,
    /// The steps of a clock given to [`SqliteInboxBuilder::clock`] (forward ones only).
    Clock(Arc<dyn Clock>),
}

impl fmt::Debug for SqliteInboxBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteInboxBuilder")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("retention", &self.retention)
            .field("group_commit", &self.group_commit)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl SqliteInbox {
    /// Starts configuring an inbox kept in the file at `path` (created when missing).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookguard::inbox::SqliteInbox;
    /// let path = std::env::temp_dir().join(format!("hookguard-doc-new-{}.db", std::process::id()));
    /// let inbox = SqliteInbox::builder(&path).open().await?;
    /// assert!(path.exists(), "created when missing");
    /// # drop(inbox);
    /// # std::fs::remove_file(&path)?;
    /// # Ok(()) }
    /// ```
    pub fn builder(path: impl AsRef<Path>) -> SqliteInboxBuilder {
        SqliteInboxBuilder {
            path: path.as_ref().to_owned(),
            capacity: 100_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            group_commit: true,
            max_batch: 1024,
            max_queued_bytes: 64 << 20,
            clock: Arc::new(SystemClock),
            elapsed: Elapsed::Monotonic,
        }
    }

    /// The writer's counters so far.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookguard::inbox::{Inbox, SqliteInbox};
    /// let dir = tempfile::tempdir()?;
    /// let inbox = SqliteInbox::builder(dir.path().join("inbox.db")).open().await?;
    /// inbox.dead_letters(10).await?;
    /// assert_eq!(inbox.stats().operations, 1);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn stats(&self) -> SqliteStats {
        SqliteStats {
            commits: self.shared.commits.load(Ordering::Acquire),
            operations: self.shared.operations.load(Ordering::Acquire),
        }
    }

    /// The file this inbox keeps.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookguard::inbox::SqliteInbox;
    /// let dir = tempfile::tempdir()?;
    /// let inbox = SqliteInbox::builder(dir.path().join("inbox.db")).open().await?;
    /// assert!(inbox.path().ends_with("inbox.db"));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Queues `request` to the writer and waits for its answer. A push is refused with
    /// `Full` while the pushes already waiting for the writer would pass the limit.
    fn call(&self, request: Request) -> impl Future<Output = Result<Answer, InboxError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let size = request.queued_bytes();
        // Counted only once let in: a push refused for its size must not, even for a
        // moment, make a smaller one look over the limit.
        let max = self.shared.max_in_flight;
        let refused = size > 0
            && self
                .shared
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |before| {
                    (before == 0 || before.saturating_add(size) <= max).then(|| before.saturating_add(size))
                })
                .is_err();
        let sent = !refused
            && match &self.inner.sender {
                Some(sender) => sender.send(Op { request, reply }).is_ok(),
                None => false,
            };
        if !sent && !refused {
            self.shared.in_flight.fetch_sub(size, Ordering::AcqRel);
        }
        async move {
            if refused {
                return Err(InboxError::Full);
            }
            if !sent {
                return Err(writer_gone());
            }
            answer.await.map_err(|_| writer_gone())?
        }
    }
}

impl SqliteInboxBuilder {
    /// Sets the capacity (waiting + leased + dead jobs).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookguard::{inbox::{Inbox, InboxError, SqliteInbox, Webhook}, verify::Verified};
    /// let dir = tempfile::tempdir()?;
    /// let inbox = SqliteInbox::builder(dir.path().join("inbox.db")).capacity(1).open().await?;
    /// let hook = |id: &str| {
    ///     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
    ///     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)
    /// };
    /// inbox.push(hook("d-1")).await?;
    /// assert!(matches!(inbox.push(hook("d-2")).await, Err(InboxError::Full)));
    /// # Ok(()) }
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets how long a finished job's key is kept for duplicate detection (default 7
    /// days); older keys are pruned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, Pushed, SqliteInbox, Webhook}, verify::Verified};
    /// let dir = tempfile::tempdir()?;
    /// let inbox = SqliteInbox::builder(dir.path().join("inbox.db"))
    ///     .retention(Duration::from_secs(24 * 3600))
    ///     .open()
    ///     .await?;
    /// let hook = |id: &str| {
    ///     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
    ///     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)
    /// };
    /// inbox.push(hook("d-1")).await?;
    /// let job = inbox.pull(1, Duration::from_secs(30)).await?.remove(0);
    /// inbox.ack(&job).await?;
    /// assert_eq!(inbox.push(hook("d-1")).await?, Pushed::Duplicate, "a resend within a day");
    /// # Ok(()) }
    /// ```
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Whether concurrent operations share one transaction (default `true`). `false`
    /// commits, and so `fsync`s, every operation on its own: only for comparison.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookguard::inbox::{Inbox, SqliteInbox};
    /// let dir = tempfile::tempdir()?;
    /// let inbox = SqliteInbox::builder(dir.path().join("inbox.db")).group_commit(false).open().await?;
    /// let (a, b) = tokio::join!(inbox.dead_letters(1), inbox.dead_letters(1));
    /// assert!(a?.is_empty() && b?.is_empty());
    /// let stats = inbox.stats();
    /// assert_eq!((stats.operations, stats.commits), (2, 2), "one transaction each");
    /// # Ok(()) }
    /// ```
    pub fn group_commit(mut self, on: bool) -> Self {
        self.group_commit = on;
        self
    }

    /// The most operations committed in one transaction (default 1,024).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookguard::inbox::{Inbox, SqliteInbox};
    /// let dir = tempfile::tempdir()?;
    /// let inbox = SqliteInbox::builder(dir.path().join("inbox.db")).max_batch(1).open().await?;
    /// let (a, b, c) = tokio::join!(inbox.dead_letters(1), inbox.dead_letters(1), inbox.dead_letters(1));
    /// assert!(a?.is_empty() && b?.is_empty() && c?.is_empty());
    /// let stats = inbox.stats();
    /// assert_eq!((stats.operations, stats.commits), (3, 3), "concurrent, yet one each");
    /// # Ok(()) }
    /// ```
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    /// The most bytes of pushes waiting for the writer (default 64 MiB): their bodies and
    /// their header names and values (a push with an empty body counts 1). Past it a
    /// push answers [`InboxError::Full`] (`503` with `Retry-After`) at once instead of
    /// queueing: a disk that stalls (a slow `fsync`) would otherwise let every request
    /// add its body to memory, and a sender's retries more. A push is let in whatever
    /// its size while nothing waits.
    ///
    /// ```
    /// use hookguard::inbox::SqliteInbox;
    /// let builder = SqliteInbox::builder("inbox.db").max_queued_bytes(16 << 20);
    /// assert!(format!("{builder:?}").contains("max_queued_bytes: 16777216"));
    /// ```
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// Sets the clock for due times, leases, dead letters and retention. Its steps are also
    /// taken as time elapsed for retention: see [`SqliteInbox`], "Retention and clock
    /// steps" (the default measures elapsed time with the system's monotonic clock).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, inbox::{Inbox, SqliteInbox, Webhook}, verify::Verified};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let dir = tempfile::tempdir()?;
    /// let inbox = SqliteInbox::builder(dir.path().join("inbox.db")).clock(clock.clone()).open().await?;
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), clock.now_for_tests())).await?;
    /// inbox.pull(1, Duration::from_secs(30)).await?;
    /// assert!(inbox.pull(1, Duration::from_secs(30)).await?.is_empty(), "leased");
    /// clock.advance(Duration::from_secs(31));
    /// assert_eq!(inbox.pull(1, Duration::from_secs(30)).await?[0].attempt(), 2, "lease ran out");
    /// # Ok(()) }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.elapsed = Elapsed::Clock(Arc::clone(&clock));
        self.clock = clock;
        self
    }

    /// Opens (or creates) the file and starts the writer thread; the file is prepared on
    /// that thread, so this never blocks the runtime. Dropping the future before it is
    /// ready (a timeout) does not wait for that thread either: it finishes opening the
    /// file (up to 5 seconds waiting for a lock), then closes it on its own.
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the file cannot be opened or created, is in use by
    /// another process, or was written by a newer schema.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::inbox::SqliteInbox;
    /// let err = SqliteInbox::builder("/no/such/dir/inbox.db").open().await.unwrap_err();
    /// assert!(err.to_string().starts_with("inbox backend failed"));
    /// # }
    /// ```
    pub async fn open(self) -> Result<SqliteInbox, InboxError> {
        let shared = Arc::new(Shared { max_in_flight: self.max_queued_bytes, ..Shared::default() });
        let (sender, receiver) = mpsc::channel::<Op>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let path = self.path.clone();
        let clock = Arc::clone(&self.clock);
        let writer_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("hookguard-sqlite-inbox".into())
            .spawn(move || match Writer::open(&self, writer_shared) {
                Ok(writer) => {
                    let _ = ready_tx.send(Ok(()));
                    writer.run(&receiver);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| InboxError::Backend(Box::new(e)))?;
        // Joined only once the file is open. Until then, dropping this future (a caller that
        // gave up) drops the sender and the thread's handle: the thread, left to itself,
        // finishes opening the file (up to the 5-second wait for a lock), finds the queue
        // closed and closes the file; joining it would block the dropping thread meanwhile.
        let answer = ready_rx.await;
        let inner = Inner { path, sender: Some(sender), thread: Some(thread) };
        match answer {
            Ok(Ok(())) => Ok(SqliteInbox { inner: Arc::new(inner), shared, clock }),
            // The writer has closed the file (dropping `inner` joins it, as it ends).
            Ok(Err(e)) => Err(e),
            Err(_) => Err(writer_gone()),
        }
    }
}

fn backend(e: rusqlite::Error) -> InboxError {
    InboxError::Backend(Box::new(e))
}

fn writer_gone() -> InboxError {
    InboxError::Backend("the SQLite inbox's writer thread stopped".into())
}

/// Nanoseconds since the Unix epoch, saturating (clock times are far inside the range).
fn ns(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(if t.year() < 1970 { i64::MIN } else { i64::MAX })
}

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn from_ns(nanos: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// One queued call and where its answer goes.
struct Op {
    request: Request,
    reply: oneshot::Sender<Result<Answer, InboxError>>,
}

enum Request {
    /// The record, and its times in full (the record's own are empty).
    Push(Box<(WebhookRecord, RecordTimes)>),
    Pull {
        max: usize,
        lease: Duration,
    },
    Ack {
        key: String,
        receipt: i64,
    },
    /// Back to waiting; `uncount` gives back the attempt the pull took.
    Retry {
        key: String,
        receipt: i64,
        not_before: OffsetDateTime,
        error: String,
        uncount: bool,
    },
    Dead {
        key: String,
        receipt: i64,
        error: String,
    },
    DeadLetters {
        limit: usize,
    },
    Redrive {
        key: String,
    },
    Discard {
        key: String,
    },
    /// When the first waiting job is due or the first lease ends (`at_ns`); `i64::MIN`
    /// while a job never attempted waits with a time the clock has not reached again (it
    /// is due whatever the clock says).
    NextDue,
}

impl Request {
    /// What a push holds in memory until the writer takes it up (at least 1, so an
    /// empty body counts as waiting); 0 for every other request.
    fn queued_bytes(&self) -> usize {
        match self {
            Self::Push(push) => push.0.headers.iter().fold(push.0.body.len().max(1), |n, (name, value)| {
                n.saturating_add(name.len() + value.len())
            }),
            _ => 0,
        }
    }
}

enum Answer {
    Pushed(Pushed),
    /// The jobs, and the keys (when readable) of the damaged rows set aside as dead
    /// letters: counted by the pull's caller, whose thread has the application's recorder.
    Jobs(Vec<Job>, Vec<Option<String>>),
    Done,
    DeadLetters(Vec<DeadLetter>),
    Redriven(bool),
    Discarded(bool),
    NextDue(Option<i64>),
}

/// The single writer: owns the connection, and the counts that only it changes.
struct Writer {
    conn: Connection,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    capacity: usize,
    retention_ns: i64,
    group_commit: bool,
    max_batch: usize,
    /// Rows waiting or leased.
    queued: usize,
    /// Dead rows.
    dead: usize,
    /// Last `ord` handed out.
    ord: i64,
    /// Last lease receipt handed out.
    receipt: i64,
    /// When finished keys are next pruned.
    next_prune_ns: i64,
    /// What measures the time elapsed for [`cutoff`](Self::cutoff), and where
    /// [`Elapsed::Monotonic`] readings start.
    elapsed: Elapsed,
    origin: std::time::Instant,
    /// The latest time a key was stamped finished with (`at_ns` of a done row): no later
    /// stamp is earlier, whatever the clock says.
    last_stamp: i64,
    /// Finished keys stamped before this are past their retention (pruned, and forgotten
    /// by a push): the clock less the retention, moved forward by no more than the time
    /// elapsed (see [`advance_cutoff`](Self::advance_cutoff)).
    cutoff: i64,
    /// The [elapsed-time reading](Self::elapsed_reading) when `cutoff` last moved.
    cutoff_read: i128,
    /// A batch failed since the rows were last counted: what its commit kept is in doubt
    /// (an I/O error may come after the commit reached the WAL), so the next transaction
    /// counts them again, until one manages to.
    recount: bool,
    /// Tests: counting the rows fails, as on a disk that fails reads as well as writes.
    #[cfg(test)]
    fail_counts: bool,
}

impl Writer {
    fn open(config: &SqliteInboxBuilder, shared: Arc<Shared>) -> Result<Self, InboxError> {
        let conn = Connection::open(&config.path).map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
        // Exclusive locking before WAL: no shared-memory index, and no second process.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(backend)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(InboxError::Backend(
                format!("could not switch the inbox file to WAL (got {mode})").into(),
            ));
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(backend)?;
        // On Apple platforms `fsync` hands the data to the drive, whose cache may still
        // lose it: these make commits and checkpoints flush it (`F_FULLFSYNC`). SQLite
        // ignores them elsewhere.
        conn.pragma_update(None, "fullfsync", "ON").map_err(backend)?;
        conn.pragma_update(None, "checkpoint_fullfsync", "ON").map_err(backend)?;
        let version: i64 =
            conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(backend)?;
        if version > SCHEMA_VERSION {
            return Err(InboxError::Backend(
                format!("inbox schema version {version} is newer than this hookguard's ({SCHEMA_VERSION})")
                    .into(),
            ));
        }
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(backend)?;
        let mut writer = Self {
            conn,
            clock: Arc::clone(&config.clock),
            shared,
            capacity: config.capacity,
            retention_ns: duration_ns(config.retention),
            group_commit: config.group_commit,
            max_batch: config.max_batch,
            queued: 0,
            dead: 0,
            ord: 0,
            receipt: 0,
            next_prune_ns: i64::MIN,
            elapsed: config.elapsed.clone(),
            origin: std::time::Instant::now(),
            last_stamp: i64::MIN,
            cutoff: i64::MIN,
            cutoff_read: 0,
            recount: false,
            #[cfg(test)]
            fail_counts: false,
        };
        writer.load_counts().map_err(backend)?;
        let leased: i64;
        (writer.ord, leased) = writer
            .conn
            .query_row(
                "SELECT COALESCE(MAX(ord), 0), COALESCE(MAX(receipt), 0) FROM hookguard_inbox",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(backend)?;
        writer.receipt = first_receipt(leased, writer.clock.unix_nanos());
        writer.last_stamp = writer
            .conn
            .query_row(LAST_STAMP, [], |row| row.get::<_, Option<i64>>(0))
            .map_err(backend)?
            .unwrap_or(i64::MIN);
        // A step while the file was closed cannot be told from time passed: the cutoff
        // starts from the clock.
        writer.cutoff = ns(writer.clock.now()).saturating_sub(writer.retention_ns);
        writer.cutoff_read = writer.elapsed_reading();
        writer.publish();
        Ok(writer)
    }

    /// A reading of the time elapsed, in nanoseconds from an arbitrary origin: only the
    /// difference of two counts.
    fn elapsed_reading(&self) -> i128 {
        match &self.elapsed {
            Elapsed::Monotonic => i128::try_from(self.origin.elapsed().as_nanos()).unwrap_or(i128::MAX),
            Elapsed::Clock(clock) => clock.unix_nanos(),
        }
    }

    /// Moves the retention's cutoff to the clock less the retention (`now` is the clock),
    /// but forward by no more than the time elapsed since it last moved: a clock stepped
    /// forward does not make keys finished within the retention look past it. A clock
    /// stepped back takes the cutoff back with it (keys finished then are stamped no
    /// earlier than before the step, see [`stamp`](Self::stamp), so they are kept longer,
    /// not less).
    fn advance_cutoff(&mut self, now: i64) {
        let read = self.elapsed_reading();
        // A clock of one's own stepped back: no time elapsed, and its next steps forward
        // count from here.
        let elapsed = i64::try_from(read.saturating_sub(self.cutoff_read).max(0)).unwrap_or(i64::MAX);
        self.cutoff_read = read;
        self.cutoff = now.saturating_sub(self.retention_ns).min(self.cutoff.saturating_add(elapsed));
    }

    /// The time to stamp a key finished with at `now`: never earlier than the last one,
    /// nor later than `now` plus the retention. Unbounded, one stamp far ahead (a clock
    /// that ran years fast, once) would hold every later key back from pruning for as
    /// long, the file growing all the while; bounded, a key is kept at most twice the
    /// retention, and a clock stepped back by more than the retention stamps keys that far
    /// ahead of it only (pruned early once it is set right, as without the floor).
    fn stamp(&mut self, now: i64) -> i64 {
        let stamp = now.max(self.last_stamp.min(now.saturating_add(self.retention_ns)));
        self.last_stamp = self.last_stamp.max(stamp);
        stamp
    }

    fn load_counts(&mut self) -> rusqlite::Result<()> {
        #[cfg(test)]
        if self.fail_counts {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some("injected".into()),
            ));
        }
        let (queued, dead): (i64, i64) = self.conn.query_row(
            "SELECT (SELECT COUNT(*) FROM hookguard_inbox WHERE state < 2),
                    (SELECT COUNT(*) FROM hookguard_inbox WHERE state = 2)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        self.queued = usize::try_from(queued).unwrap_or(0);
        self.dead = usize::try_from(dead).unwrap_or(0);
        Ok(())
    }

    fn publish(&self) {
        self.shared.queued.store(self.queued, Ordering::Release);
    }

    /// Takes whatever is queued (all of it, up to `max_batch`, with group commit; one
    /// operation without), commits it in one transaction, answers; until every handle is
    /// gone.
    fn run(mut self, receiver: &mpsc::Receiver<Op>) {
        while let Ok(first) = receiver.recv() {
            let mut batch = vec![first];
            if self.group_commit {
                while batch.len() < self.max_batch {
                    match receiver.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
            }
            self.run_batch(batch);
        }
    }

    fn run_batch(&mut self, batch: Vec<Op>) {
        let taken: usize = batch.iter().map(|op| op.request.queued_bytes()).sum();
        self.shared.in_flight.fetch_sub(taken, Ordering::AcqRel);
        let (ops, replies): (Vec<Request>, Vec<_>) =
            batch.into_iter().map(|op| (op.request, op.reply)).unzip();
        // The counts as of the last commit: a batch changes them as it goes.
        let counted = (self.queued, self.dead);
        match self.apply_batch(ops) {
            Ok((answers, wake)) => {
                self.shared.commits.fetch_add(1, Ordering::AcqRel);
                self.shared.operations.fetch_add(answers.len() as u64, Ordering::AcqRel);
                self.publish();
                for _ in 0..wake {
                    self.shared.notify.notify_one();
                }
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // The caller may have given up waiting; the operation stands.
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                // Nothing of this batch is kept: roll back, take the counts back to those of
                // the last commit, and tell every caller. Not a recount here: it could fail
                // as the batch did, and leave the batch's changes counted for good (spurious
                // `Full`s, a depth never 0); the next transaction counts again.
                let _ = self.conn.execute_batch("ROLLBACK");
                (self.queued, self.dead) = counted;
                self.recount = true;
                self.publish();
                tracing::error!(error = %e, "SQLite inbox transaction failed");
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(InboxError::Backend(message.clone().into())));
                }
            }
        }
    }

    /// One transaction for the whole batch: answers in order, and how many operations made
    /// work available (to wake that many workers).
    #[allow(clippy::type_complexity)]
    fn apply_batch(
        &mut self,
        ops: Vec<Request>,
    ) -> rusqlite::Result<(Vec<Result<Answer, InboxError>>, usize)> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        // A count that fails again keeps those of the last commit, and fails no operation.
        if self.recount && self.load_counts().is_ok() {
            self.recount = false;
        }
        let now = ns(self.clock.now());
        self.advance_cutoff(now);
        self.prune(now)?;
        let mut answers = Vec::with_capacity(ops.len());
        let mut wake = 0;
        for op in ops {
            let wakes = matches!(op, Request::Push(_) | Request::Retry { .. } | Request::Redrive { .. });
            let answer = self.apply(op)?;
            if wakes
                && matches!(
                    answer,
                    Ok(Answer::Pushed(Pushed::Accepted) | Answer::Done | Answer::Redriven(true))
                )
            {
                wake += 1;
            }
            answers.push(answer);
        }
        self.conn.execute_batch("COMMIT")?;
        Ok((answers, wake))
    }

    /// Deletes finished keys stamped before the [cutoff](Self::cutoff), at most once a
    /// minute (of the clock) and a chunk at a time. A clock stepped back more than that
    /// since the last prune does not put off the next one until it is back.
    fn prune(&mut self, now: i64) -> rusqlite::Result<()> {
        if now < self.next_prune_ns && self.next_prune_ns.saturating_sub(now) <= PRUNE_EVERY_NS {
            return Ok(());
        }
        let cutoff = self.cutoff;
        let deleted = self
            .conn
            .prepare_cached(
                "DELETE FROM hookguard_inbox WHERE rowid IN
                (SELECT rowid FROM hookguard_inbox WHERE state = 3 AND at_ns < ?1 LIMIT ?2)",
            )?
            .execute(params![cutoff, PRUNE_CHUNK])?;
        self.next_prune_ns =
            if deleted as i64 >= PRUNE_CHUNK { now } else { now.saturating_add(PRUNE_EVERY_NS) };
        Ok(())
    }

    fn next_ord(&mut self) -> i64 {
        self.ord += 1;
        self.ord
    }

    /// One operation inside the open transaction. `Err` aborts the batch; `Ok(Err)` is
    /// this operation's own answer (full, lease lost).
    fn apply(&mut self, request: Request) -> rusqlite::Result<Result<Answer, InboxError>> {
        let now = ns(self.clock.now());
        match request {
            Request::Push(push) => {
                let (record, times) = &*push;
                self.push(record, *times, now)
            }
            Request::Pull { max, lease } => self.pull(max, now, now.saturating_add(duration_ns(lease))),
            Request::Ack { key, receipt } => {
                let stamp = self.stamp(now);
                let changed = self
                    .conn
                    .prepare_cached(
                        "UPDATE hookguard_inbox SET state = 3, at_ns = ?3, headers = x'', body = x'',
                        receipt = NULL, error = NULL
                     WHERE key = ?1 AND state = 1 AND receipt = ?2",
                    )?
                    .execute(params![key, receipt, stamp])?;
                if changed == 0 {
                    return Ok(Err(InboxError::LeaseLost));
                }
                self.queued = self.queued.saturating_sub(1);
                Ok(Ok(Answer::Done))
            }
            Request::Retry { key, receipt, not_before, error, uncount } => {
                let ord = self.next_ord();
                let changed = self.conn.prepare_cached(
                    "UPDATE hookguard_inbox SET state = 0, at_ns = ?3, ord = ?4, receipt = NULL, error = ?5,
                         attempts = max(attempts - ?6, 0)
                     WHERE key = ?1 AND state = 1 AND receipt = ?2",
                )?
                .execute(params![key, receipt, ns(not_before), ord, error, i64::from(uncount)])?;
                Ok(if changed == 0 { Err(InboxError::LeaseLost) } else { Ok(Answer::Done) })
            }
            Request::Dead { key, receipt, error } => {
                let ord = self.next_ord();
                let changed = self.conn.prepare_cached(
                    "UPDATE hookguard_inbox SET state = 2, at_ns = ?3, ord = ?4, receipt = NULL, error = ?5
                     WHERE key = ?1 AND state = 1 AND receipt = ?2",
                )?
                .execute(params![key, receipt, now, ord, error])?;
                if changed == 0 {
                    return Ok(Err(InboxError::LeaseLost));
                }
                self.queued = self.queued.saturating_sub(1);
                self.dead += 1;
                Ok(Ok(Answer::Done))
            }
            Request::DeadLetters { limit } => self.dead_letters(limit),
            Request::NextDue => {
                // A job never attempted is due whatever the clock says (see `pull`).
                let ahead: bool =
                    self.conn.prepare_cached(ANY_AHEAD)?.query_row(params![now], |row| row.get(0))?;
                if ahead {
                    return Ok(Ok(Answer::NextDue(Some(i64::MIN))));
                }
                let at: Option<i64> = self
                    .conn
                    .prepare_cached("SELECT MIN(at_ns) FROM hookguard_inbox WHERE state < 2")?
                    .query_row([], |row| row.get(0))?;
                Ok(Ok(Answer::NextDue(at)))
            }
            Request::Redrive { key } => {
                let ord = self.next_ord();
                let changed = self.conn.prepare_cached(
                    "UPDATE hookguard_inbox SET state = 0, attempts = 0, at_ns = ?2, ord = ?3, error = NULL
                     WHERE key = ?1 AND state = 2",
                )?
                .execute(params![key, now, ord])?;
                if changed > 0 {
                    self.dead = self.dead.saturating_sub(1);
                    self.queued += 1;
                }
                Ok(Ok(Answer::Redriven(changed > 0)))
            }
            Request::Discard { key } => {
                // As an ack leaves a row; none of its record is read, so a row that cannot
                // be read goes too.
                let stamp = self.stamp(now);
                let changed = self
                    .conn
                    .prepare_cached(
                        "UPDATE hookguard_inbox SET state = 3, at_ns = ?2, headers = x'', body = x'',
                            receipt = NULL, error = NULL
                         WHERE key = ?1 AND state = 2",
                    )?
                    .execute(params![key, stamp])?;
                if changed > 0 {
                    self.dead = self.dead.saturating_sub(1);
                }
                Ok(Ok(Answer::Discarded(changed > 0)))
            }
        }
    }

    fn push(
        &mut self,
        record: &WebhookRecord,
        times: RecordTimes,
        now: i64,
    ) -> rusqlite::Result<Result<Answer, InboxError>> {
        let existing: Option<(i64, i64)> = self
            .conn
            .prepare_cached("SELECT state, at_ns FROM hookguard_inbox WHERE key = ?1")?
            .query_row(params![record.key], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        match existing {
            // A finished key past its retention is forgotten, even if not pruned yet.
            Some((DONE, at)) if at < self.cutoff => {
                self.conn
                    .prepare_cached("DELETE FROM hookguard_inbox WHERE key = ?1")?
                    .execute(params![record.key])?;
            }
            Some(_) => return Ok(Ok(Answer::Pushed(Pushed::Duplicate))),
            None => {}
        }
        if self.queued + self.dead >= self.capacity {
            return Ok(Err(InboxError::Full));
        }
        let ord = self.next_ord();
        self.conn
            .prepare_cached(
                "INSERT INTO hookguard_inbox (key, endpoint, provider, delivery_id, event, timestamp_ns,
                    received_at_ns, headers, body, state, attempts, at_ns, ord)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 0, ?10, ?11)",
            )?
            .execute(params![
                record.key,
                record.endpoint,
                record.provider,
                record.id,
                record.event,
                times.timestamp.map(StoredTime),
                StoredTime(times.received_at),
                WebhookRecord::encode_headers(&record.headers),
                record.body,
                now,
                ord,
            ])?;
        self.queued += 1;
        Ok(Ok(Answer::Pushed(Pushed::Accepted)))
    }

    fn pull(&mut self, max: usize, now: i64, until: i64) -> rusqlite::Result<Result<Answer, InboxError>> {
        // Jobs never attempted that were written at a time the clock has not reached again
        // (it stepped back since): due whatever it says, and first, as they were received
        // before it stepped back. A range of an index of their own: empty, at the cost of
        // a seek, unless the clock stepped back.
        let mut rows = self.pull_rows(PULL_AHEAD, now, max)?;
        if rows.len() < max {
            // Waiting jobs that are due, and leased ones whose lease ran out (their worker
            // is gone): both have `at_ns <= now`.
            rows.extend(self.pull_rows(PULL_DUE, now, max - rows.len())?);
        }
        let mut jobs = Vec::with_capacity(rows.len());
        let mut set_aside = Vec::new();
        for (rowid, key, read) in rows {
            let mut attempts = 0;
            let webhook = read.map_err(|e| e.to_string()).and_then(|(mut record, times, headers, tries)| {
                attempts = tries;
                WebhookRecord::decode_headers(&headers)
                    .and_then(|headers| {
                        record.headers = headers;
                        Webhook::from_record_apart(record, times)
                    })
                    .map_err(|e| e.to_string())
            });
            match webhook {
                Ok(webhook) => {
                    self.receipt = self.receipt.saturating_add(1);
                    let receipt = self.receipt;
                    RECEIPTS.fetch_max(receipt, Ordering::Relaxed);
                    self.conn
                        .prepare_cached(
                            "UPDATE hookguard_inbox SET state = 1, attempts = attempts + 1, at_ns = ?2,
                                receipt = ?3 WHERE rowid = ?1",
                        )?
                        .execute(params![rowid, until, receipt])?;
                    jobs.push(Job::new(webhook, attempts.saturating_add(1), receipt.to_string()));
                }
                Err(e) => {
                    // A damaged row would block the queue: set it aside as a dead letter.
                    // Its key (no secret) is logged: `discard` takes it, and the list of
                    // dead letters leaves the row out.
                    tracing::error!(
                        error = %e,
                        key = ?key.as_deref().unwrap_or_default(),
                        "unreadable SQLite inbox row dead-lettered"
                    );
                    let ord = self.next_ord();
                    self.conn
                        .prepare_cached(
                            "UPDATE hookguard_inbox SET state = 2, at_ns = ?2, ord = ?3, receipt = NULL,
                                error = ?4 WHERE rowid = ?1",
                        )?
                        .execute(params![rowid, now, ord, e])?;
                    self.queued = self.queued.saturating_sub(1);
                    self.dead += 1;
                    set_aside.push(key);
                }
            }
        }
        Ok(Ok(Answer::Jobs(jobs, set_aside)))
    }

    /// Up to `max` rows for a pull by `sql` ([`PULL_AHEAD`] or [`PULL_DUE`]) at `now`: each
    /// row's id, and its record, times, stored headers and attempts if they could be read.
    fn pull_rows(&self, sql: &str, now: i64, max: usize) -> rusqlite::Result<Vec<PullRow>> {
        self.conn
            .prepare_cached(sql)?
            .query_map(params![now, i64::try_from(max).unwrap_or(i64::MAX)], |row| {
                // A column of the wrong type is this row's damage: it must not fail the
                // query (and every pull after it, and the pushes committed with it).
                let read = || {
                    let (record, times, headers) = record_at(row, 1)?;
                    Ok::<_, rusqlite::Error>((record, times, headers, attempts_of(row.get(10)?)))
                };
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1).ok(), read()))
            })?
            .collect()
    }

    /// Up to `limit` readable dead letters, oldest first. An unreadable one is left out
    /// (with its key in the log, for `discard`) and does not count among the `limit`: the
    /// rows are read on past it, so a page comes back short only when no readable letter is
    /// left after it (`hookguard inbox discard --all` pages until one is empty), or when
    /// [`UNREADABLE_PER_PAGE`] unreadable ones were passed (the writer's thread, which
    /// pushes wait for, does not walk a file of damaged rows whole).
    fn dead_letters(&mut self, limit: usize) -> rusqlite::Result<Result<Answer, InboxError>> {
        let mut letters = Vec::with_capacity(limit.min(1024));
        let mut unreadable = 0;
        if limit == 0 {
            return Ok(Ok(Answer::DeadLetters(letters)));
        }
        let mut statement = self.conn.prepare_cached(DEAD_LETTERS)?;
        let rows = statement.query_map([], |row| {
            // One damaged row (a column of the wrong type too) must not fail the list.
            let read = (|| {
                let (record, times, headers) = record_at(row, 0)?;
                let error = row.get::<_, Option<String>>(10).ok().flatten().unwrap_or_default();
                let attempts = attempts_of(row.get(9)?);
                Ok::<_, rusqlite::Error>((record, times, headers, attempts, error, row.get(11)?))
            })();
            Ok((row.get::<_, String>(0).ok(), read))
        })?;
        for row in rows {
            let (key, read) = row?;
            let webhook = read.map_err(|e| e.to_string()).and_then(
                |(mut record, times, headers, attempts, error, at)| {
                    WebhookRecord::decode_headers(&headers)
                        .and_then(|headers| {
                            record.headers = headers;
                            Webhook::from_record_apart(record, times)
                        })
                        .map(|webhook| DeadLetter { webhook, attempts, error, failed_at: from_ns(at) })
                        .map_err(|e| e.to_string())
                },
            );
            match webhook {
                Ok(letter) => {
                    letters.push(letter);
                    if letters.len() >= limit {
                        break;
                    }
                }
                // One damaged row must not hide the others (see `Inbox::dead_letters`). Its
                // key (no secret) is logged: `discard` takes it.
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        key = ?key.as_deref().unwrap_or_default(),
                        "an unreadable SQLite dead letter is left out of the list"
                    );
                    unreadable += 1;
                    if unreadable >= UNREADABLE_PER_PAGE {
                        tracing::warn!(
                            passed = unreadable,
                            "a page of SQLite dead letters stops short after this many unreadable ones: discard them by key"
                        );
                        break;
                    }
                }
            }
        }
        Ok(Ok(Answer::DeadLetters(letters)))
    }
}

/// The most unreadable dead letters one page of [`Writer::dead_letters`] reads past
/// before it stops short (3 in this crate's tests).
const UNREADABLE_PER_PAGE: usize = if cfg!(test) { 3 } else { 10_000 };

/// The dead letters, oldest first: the rows of `hookguard_inbox_dead`, in its order.
/// Columns as [`record_at`] reads them from 0, then `attempts, error, at_ns`.
const DEAD_LETTERS: &str = "SELECT key, endpoint, provider, delivery_id, event, timestamp_ns,
        received_at_ns, headers, body, attempts, error, at_ns
    FROM hookguard_inbox WHERE state = 2 ORDER BY ord";

/// The latest time a key was stamped finished with: `MAX` of a range of
/// `hookguard_inbox_done`.
const LAST_STAMP: &str = "SELECT MAX(at_ns) FROM hookguard_inbox WHERE state = 3";

/// The highest lease receipt handed out in this process, by any inbox.
static RECEIPTS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Where the receipts of a writer opening a file start (each lease takes the next one):
/// past the highest a row leased now holds (`leased`), past the clock (`clock_ns`, its Unix
/// nanoseconds, up to 2^62, so that ~4.6e18 leases remain), and past any handed out in
/// this process. An ack, a retry or a dead letter clears a row's receipt, so the file alone
/// would start again below those handed out before: a [`Job`] kept across a drop and
/// reopen could then ack a later lease of its job it never held. A later process starts
/// past the clock as it reads it, so past an earlier one's receipts unless the clock
/// stepped back between them.
fn first_receipt(leased: i64, clock_ns: i128) -> i64 {
    let clock = i64::try_from(clock_ns.clamp(0, 1 << 62)).unwrap_or(0);
    leased.max(clock).max(RECEIPTS.load(Ordering::Relaxed))
}

/// A row a pull read: its id, and what [`record_at`] and its attempts gave.
/// A pulled row: its `rowid`, its key when that much of it reads (for the count of a
/// damaged one), and the rest.
type PullRow = (i64, Option<String>, rusqlite::Result<(WebhookRecord, RecordTimes, Vec<u8>, u32)>);

/// A pull's jobs never attempted whose time the clock has not reached again (see
/// [`SCHEMA`]): `?1` now, `?2` how many at most. A range of `hookguard_inbox_fresh`.
const PULL_AHEAD: &str = "SELECT rowid, key, endpoint, provider, delivery_id, event, timestamp_ns,
        received_at_ns, headers, body, attempts
    FROM hookguard_inbox WHERE state = 0 AND attempts = 0 AND at_ns > ?1 ORDER BY at_ns, ord LIMIT ?2";

/// Whether a job never attempted waits with a time the clock has not reached again: `?1`
/// now. A seek in `hookguard_inbox_fresh`.
const ANY_AHEAD: &str =
    "SELECT EXISTS (SELECT 1 FROM hookguard_inbox WHERE state = 0 AND attempts = 0 AND at_ns > ?1)";

/// A pull's due jobs, waiting or with their lease run out: `?1` now, `?2` how many at
/// most. A range of `hookguard_inbox_queue`.
const PULL_DUE: &str = "SELECT rowid, key, endpoint, provider, delivery_id, event, timestamp_ns,
        received_at_ns, headers, body, attempts
    FROM hookguard_inbox WHERE state < 2 AND at_ns <= ?1 ORDER BY at_ns, ord LIMIT ?2";

/// The record in a row's columns from `first` on (`key, endpoint, provider, delivery_id,
/// event, timestamp_ns, received_at_ns, headers, body`), its times apart, its header blob
/// still encoded.
fn record_at(
    row: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<(WebhookRecord, RecordTimes, Vec<u8>)> {
    let record = WebhookRecord {
        key: row.get(first)?,
        endpoint: row.get(first + 1)?,
        provider: row.get(first + 2)?,
        id: row.get(first + 3)?,
        event: row.get(first + 4)?,
        timestamp_unix_nanos: None,
        received_at_unix_nanos: 0,
        headers: Vec::new(),
        body: row.get(first + 8)?,
    };
    let times = RecordTimes {
        timestamp: row.get::<_, Option<StoredTime>>(first + 5)?.map(|t| t.0),
        received_at: row.get::<_, StoredTime>(first + 6)?.0,
    };
    Ok((record, times, row.get(first + 7)?))
}

/// A webhook's time in the `timestamp_ns` and `received_at_ns` columns, in nanoseconds
/// since the Unix epoch: an integer when it fits in 64 bits (the years 1677 to 2262, and
/// every time of schema 1), else 16 bytes, big-endian two's complement, in a blob. (An
/// integer column would turn a longer number written as text into an approximate real.)
struct StoredTime(i128);

impl rusqlite::types::ToSql for StoredTime {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value};
        Ok(ToSqlOutput::Owned(match i64::try_from(self.0) {
            Ok(nanos) => Value::Integer(nanos),
            Err(_) => Value::Blob(self.0.to_be_bytes().to_vec()),
        }))
    }
}

impl rusqlite::types::FromSql for StoredTime {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::{FromSqlError, ValueRef};
        match value {
            ValueRef::Integer(nanos) => Ok(Self(i128::from(nanos))),
            ValueRef::Blob(bytes) => <[u8; 16]>::try_from(bytes)
                .map(|bytes| Self(i128::from_be_bytes(bytes)))
                .map_err(|_| FromSqlError::InvalidBlobSize { expected_size: 16, blob_size: bytes.len() }),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// A stored attempt count as the job's: a damaged one (negative, too large) is clamped.
fn attempts_of(stored: i64) -> u32 {
    u32::try_from(stored.max(0)).unwrap_or(u32::MAX)
}

fn unexpected() -> InboxError {
    InboxError::Backend("the SQLite inbox's writer gave an unexpected answer".into())
}

/// A receipt that is not a number was not made by this backend: its lease is not held.
fn parse_receipt(job: &Job) -> Option<i64> {
    job.receipt().parse().ok()
}

impl Inbox for SqliteInbox {
    fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<Pushed, InboxError>> {
        // The times apart: a verified timestamp may lie past what a record's `i64` holds.
        let record = match webhook.to_record_apart() {
            Ok(record) => record,
            Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
        };
        let answer = self.call(Request::Push(Box::new(record)));
        Box::pin(async move {
            match answer.await? {
                Answer::Pushed(pushed) => Ok(pushed),
                _ => Err(unexpected()),
            }
        })
    }

    fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>> {
        if max == 0 {
            return Box::pin(std::future::ready(Ok(Vec::new())));
        }
        let answer = self.call(Request::Pull { max, lease });
        Box::pin(async move {
            match answer.await? {
                Answer::Jobs(jobs, set_aside) => {
                    for key in &set_aside {
                        super::count_set_aside(key.as_deref());
                    }
                    Ok(jobs)
                }
                _ => Err(unexpected()),
            }
        })
    }

    fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>> {
        let Some(receipt) = parse_receipt(job) else {
            return Box::pin(std::future::ready(Err(InboxError::LeaseLost)));
        };
        let answer = self.call(Request::Ack { key: job.webhook().key().to_owned(), receipt });
        Box::pin(async move { answer.await.map(drop) })
    }

    fn retry<'a>(
        &'a self,
        job: &'a Job,
        not_before: OffsetDateTime,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        let Some(receipt) = parse_receipt(job) else {
            return Box::pin(std::future::ready(Err(InboxError::LeaseLost)));
        };
        let answer = self.call(Request::Retry {
            key: job.webhook().key().to_owned(),
            receipt,
            not_before,
            error: error.to_owned(),
            uncount: false,
        });
        Box::pin(async move { answer.await.map(drop) })
    }

    fn give_back<'a>(&'a self, job: &'a Job, now: OffsetDateTime) -> BoxFuture<'a, Result<(), InboxError>> {
        let Some(receipt) = parse_receipt(job) else {
            return Box::pin(std::future::ready(Err(InboxError::LeaseLost)));
        };
        let answer = self.call(Request::Retry {
            key: job.webhook().key().to_owned(),
            receipt,
            not_before: now,
            error: "given back unprocessed".to_owned(),
            uncount: true,
        });
        Box::pin(async move { answer.await.map(drop) })
    }

    fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>> {
        let Some(receipt) = parse_receipt(job) else {
            return Box::pin(std::future::ready(Err(InboxError::LeaseLost)));
        };
        let answer = self.call(Request::Dead {
            key: job.webhook().key().to_owned(),
            receipt,
            error: error.to_owned(),
        });
        Box::pin(async move { answer.await.map(drop) })
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, InboxError>> {
        let answer = self.call(Request::DeadLetters { limit });
        Box::pin(async move {
            match answer.await? {
                Answer::DeadLetters(letters) => Ok(letters),
                _ => Err(unexpected()),
            }
        })
    }

    fn redrive<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        let answer = self.call(Request::Redrive { key: key.to_owned() });
        Box::pin(async move {
            match answer.await? {
                Answer::Redriven(found) => Ok(found),
                _ => Err(unexpected()),
            }
        })
    }

    fn discard<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        let answer = self.call(Request::Discard { key: key.to_owned() });
        Box::pin(async move {
            match answer.await? {
                Answer::Discarded(found) => Ok(found),
                _ => Err(unexpected()),
            }
        })
    }

    /// Answered from the count the writer publishes after each commit (no query).
    fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>> {
        Box::pin(std::future::ready(Ok(self.shared.queued.load(Ordering::Acquire))))
    }

    /// Waits for a push, a retry, a give-back or a re-drive (from this process: the file
    /// is its alone), and until the earliest time a retry comes due or a lease runs out
    /// (its job is due again then): at once when that time has come.
    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let began = tokio::time::Instant::now();
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Registered before the look at the table: what comes after it wakes this wait.
            notified.as_mut().enable();
            // A failed look only means the timeout bounds the wait.
            let due = match tokio::time::timeout(timeout, self.call(Request::NextDue)).await {
                Ok(Ok(Answer::NextDue(at))) => at,
                _ => None,
            };
            let left = timeout.saturating_sub(began.elapsed());
            let Some(limit) = super::wait_limit(left, due.map(i128::from), self.clock.unix_nanos()) else {
                return;
            };
            let _ = tokio::time::timeout(limit, notified).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// The writer's connection flushes the drive's cache on Apple platforms too, where a
    /// plain `fsync` leaves a commit in it (`F_FULLFSYNC`; SQLite ignores the flags
    /// elsewhere, and reads them back all the same).
    #[test]
    fn the_writer_asks_for_full_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let builder = SqliteInbox::builder(dir.path().join("inbox.db"));
        let writer = Writer::open(&builder, Arc::default()).unwrap();
        for pragma in ["fullfsync", "checkpoint_fullfsync"] {
            let on: i64 = writer.conn.pragma_query_value(None, pragma, |row| row.get(0)).unwrap();
            assert_eq!(on, 1, "{pragma}");
        }
        let synchronous: i64 = writer.conn.pragma_query_value(None, "synchronous", |row| row.get(0)).unwrap();
        assert_eq!(synchronous, 2, "FULL");
    }

    /// Runs `requests` as one batch of `writer`'s; their answers.
    fn batch(writer: &mut Writer, requests: Vec<Request>) -> Vec<Result<Answer, InboxError>> {
        let (ops, mut answers): (Vec<_>, Vec<_>) = requests
            .into_iter()
            .map(|request| {
                let (reply, answer) = oneshot::channel();
                (Op { request, reply }, answer)
            })
            .unzip();
        writer.run_batch(ops);
        answers.iter_mut().map(|answer| answer.try_recv().expect("answered")).collect()
    }

    fn push_of(id: &str) -> Request {
        let v = crate::verify::Verified::new("zoom", Some(id.to_owned().into()), None, None, [0; 32], 0);
        let hook = Webhook::new("zoom", &v, http::HeaderMap::new(), "{}".into(), OffsetDateTime::UNIX_EPOCH);
        Request::Push(Box::new(hook.to_record_apart().unwrap()))
    }

    fn accepted(answers: &[Result<Answer, InboxError>]) -> bool {
        matches!(answers, [Ok(Answer::Pushed(Pushed::Accepted))])
    }

    fn duplicate(answers: &[Result<Answer, InboxError>]) -> bool {
        matches!(answers, [Ok(Answer::Pushed(Pushed::Duplicate))])
    }

    /// Pulls one job with `writer`.
    fn pull_one(writer: &mut Writer) -> Job {
        match batch(writer, vec![Request::Pull { max: 1, lease: Duration::from_secs(30) }]).remove(0) {
            Ok(Answer::Jobs(mut jobs, _)) => jobs.remove(0),
            _ => panic!("no job"),
        }
    }

    /// A batch that fails is rolled back, and so are the counts it changed as it went,
    /// even when the rows cannot be counted again (a disk failing reads as well): the
    /// batch's changes stayed counted (spurious `Full`s, a depth never back to 0).
    #[test]
    fn a_failed_batch_leaves_the_counts_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let builder = SqliteInbox::builder(dir.path().join("inbox.db")).capacity(2);
        let shared = Arc::<Shared>::default();
        let mut writer = Writer::open(&builder, Arc::clone(&shared)).unwrap();
        assert!(accepted(&batch(&mut writer, vec![push_of("a")])));
        let a = pull_one(&mut writer);
        // Dead-lettering fails, and so does counting the rows.
        writer
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER fail BEFORE UPDATE OF state ON hookguard_inbox WHEN NEW.state = 2
                 BEGIN SELECT RAISE(ABORT, 'injected'); END",
            )
            .unwrap();
        writer.fail_counts = true;
        let dead = Request::Dead {
            key: a.webhook().key().to_owned(),
            receipt: parse_receipt(&a).unwrap(),
            error: "no".into(),
        };
        let answers = batch(&mut writer, vec![push_of("b"), dead]);
        assert!(answers.iter().all(Result::is_err), "the whole batch failed");
        assert_eq!((writer.queued, writer.dead), (1, 0), "a, leased");
        assert_eq!(shared.queued.load(Ordering::Acquire), 1, "the depth published");
        writer.conn.execute_batch("DROP TRIGGER temp.fail").unwrap();
        assert!(accepted(&batch(&mut writer, vec![push_of("b")])), "room for b, the rows still not counted");
        assert_eq!((writer.queued, writer.dead, writer.recount), (2, 0, true));
        // Counted again by the next transaction that can.
        writer.fail_counts = false;
        writer.queued = 5;
        batch(&mut writer, vec![Request::DeadLetters { limit: 1 }]);
        assert_eq!((writer.queued, writer.dead, writer.recount), (2, 0, false), "as the file counts them");
    }

    /// A clock stepped back (a host started with its clock ahead, then set right) does not
    /// put pruning off until it is back: it was skipped for as long as the step.
    #[test]
    fn pruning_goes_on_after_the_clock_stepped_back() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(24 * 3600);
        let clock = crate::clock::ManualClock::at_unix(1_800_000_000);
        let builder = SqliteInbox::builder(dir.path().join("inbox.db")).retention(day).clock(clock.clone());
        let mut writer = Writer::open(&builder, Arc::default()).unwrap();
        batch(&mut writer, vec![Request::DeadLetters { limit: 1 }]);
        clock.set_unix(1_700_000_000);
        assert!(accepted(&batch(&mut writer, vec![push_of("a")])));
        let a = pull_one(&mut writer);
        let ack = Request::Ack { key: a.webhook().key().to_owned(), receipt: parse_receipt(&a).unwrap() };
        assert!(matches!(batch(&mut writer, vec![ack])[..], [Ok(Answer::Done)]));
        clock.advance(2 * day);
        batch(&mut writer, vec![Request::DeadLetters { limit: 1 }]);
        let kept: i64 =
            writer.conn.query_row("SELECT COUNT(*) FROM hookguard_inbox", [], |row| row.get(0)).unwrap();
        assert_eq!(kept, 0, "a's key, kept a day, pruned");
    }

    /// Both of a pull's queries, and a wait's look for jobs pushed before the clock stepped
    /// back, read a range of an index: those jobs are found without reading the retries
    /// waiting for their time (as one query for both kinds would).
    #[test]
    fn a_pull_reads_ranges_of_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let writer =
            Writer::open(&SqliteInbox::builder(dir.path().join("inbox.db")), Arc::default()).unwrap();
        for (sql, index) in
            [(PULL_AHEAD, "hookguard_inbox_fresh (at_ns>?)"), (PULL_DUE, "hookguard_inbox_queue (at_ns<?)")]
        {
            let plan = plan_of(&writer, sql, params![0, 10]);
            assert_eq!(plan, [format!("SEARCH hookguard_inbox USING INDEX {index}")], "{sql}");
        }
        let plan = plan_of(&writer, ANY_AHEAD, params![0]);
        assert!(
            plan.iter()
                .any(|step| step
                    == "SEARCH hookguard_inbox USING COVERING INDEX hookguard_inbox_fresh (at_ns>?)"),
            "{plan:?}"
        );
    }

    /// The steps of SQLite's plan for `sql` with `params` (`EXPLAIN QUERY PLAN`).
    fn plan_of(writer: &Writer, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        writer
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params, |row| row.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn webhook_with(headers: http::HeaderMap, timestamp: Option<OffsetDateTime>) -> Webhook {
        let v = crate::verify::Verified::new("zoom", Some("d-1".into()), timestamp, None, [0; 32], 0);
        Webhook::new("zoom", &v, headers, "{}".into(), OffsetDateTime::UNIX_EPOCH)
    }

    async fn open(dir: &tempfile::TempDir) -> SqliteInbox {
        SqliteInbox::builder(dir.path().join("inbox.db")).open().await.unwrap()
    }

    /// A webhook made by hand with more header values than a stored record may list is
    /// refused by the push: it was accepted, and the first pull set it aside as damaged.
    #[tokio::test]
    async fn a_webhook_with_more_headers_than_a_record_holds_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = open(&dir).await;
        let many = |n: usize| {
            let mut headers = http::HeaderMap::new();
            for _ in 0..n {
                headers.append("x-many", http::HeaderValue::from_static("v"));
            }
            webhook_with(headers, None)
        };
        let refused = inbox.push(many(5000)).await;
        assert!(
            matches!(&refused, Err(InboxError::Backend(e)) if e.to_string().contains("more headers")),
            "{refused:?}"
        );
        assert_eq!(inbox.depth().await.unwrap(), 0, "nothing kept");
        assert_eq!(inbox.push(many(super::super::MAX_HEADERS)).await.unwrap(), Pushed::Accepted);
        let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        assert_eq!(job.webhook().headers().len(), super::super::MAX_HEADERS);
        assert!(inbox.dead_letters(1).await.unwrap().is_empty());
    }

    /// A verified timestamp past 2262 (out of 64-bit nanoseconds; Zoom has no tolerance by
    /// default), or before 1677, is kept and read back unchanged, from the file too, as
    /// a job and as a dead letter; the push failed, and every retry of the sender after it.
    #[tokio::test]
    async fn times_out_of_64_bit_nanoseconds_are_kept_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let at = |secs: i64| OffsetDateTime::from_unix_timestamp(secs).unwrap();
        let far = {
            let v = crate::verify::Verified::new(
                "zoom",
                Some("far".into()),
                Some(at(10_000_000_000)),
                None,
                [0; 32],
                0,
            );
            Webhook::new("zoom", &v, http::HeaderMap::new(), "{}".into(), at(10_000_000_000))
        };
        let early = {
            let v = crate::verify::Verified::new(
                "zoom",
                Some("early".into()),
                Some(at(-10_000_000_000)),
                None,
                [0; 32],
                0,
            );
            Webhook::new("zoom", &v, http::HeaderMap::new(), "{}".into(), at(1_700_000_000))
        };
        let inbox = open(&dir).await;
        for hook in [&far, &early] {
            assert_eq!(inbox.push(hook.clone()).await.unwrap(), Pushed::Accepted);
        }
        drop(inbox);
        let inbox = open(&dir).await;
        let jobs = inbox.pull(10, Duration::from_secs(30)).await.unwrap();
        let hooks: Vec<_> = jobs.iter().map(Job::webhook).collect();
        assert_eq!(hooks, [&far, &early]);
        assert_eq!(far.timestamp(), Some(at(10_000_000_000)));
        inbox.dead_letter(&jobs[0], "no").await.unwrap();
        assert_eq!(inbox.dead_letters(10).await.unwrap()[0].webhook, far);
    }

    /// A time column holding what no time is written as (a blob of another size, text) is
    /// that row's damage: set aside by the pull, as other damage is.
    #[tokio::test]
    async fn a_damaged_time_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = open(&dir).await;
        let hooks: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|id| {
                let v = crate::verify::Verified::new("zoom", Some((*id).into()), None, None, [0; 32], 0);
                Webhook::new("zoom", &v, http::HeaderMap::new(), "{}".into(), OffsetDateTime::UNIX_EPOCH)
            })
            .collect();
        for hook in &hooks {
            inbox.push(hook.clone()).await.unwrap();
        }
        drop(inbox);
        let conn = Connection::open(dir.path().join("inbox.db")).unwrap();
        for (sql, key) in [
            ("UPDATE hookguard_inbox SET timestamp_ns = x'0102' WHERE key = ?1", hooks[0].key()),
            ("UPDATE hookguard_inbox SET received_at_ns = 'soon' WHERE key = ?1", hooks[1].key()),
        ] {
            assert_eq!(conn.execute(sql, [key]).unwrap(), 1, "{sql}");
        }
        drop(conn);
        let inbox = open(&dir).await;
        let (jobs, counted) = crate::inbox::dead_lettered(inbox.pull(10, Duration::from_secs(30))).await;
        let jobs = jobs.unwrap();
        assert_eq!(jobs.iter().map(Job::webhook).collect::<Vec<_>>(), [&hooks[2]]);
        assert_eq!(inbox.depth().await.unwrap(), 1, "the damaged rows set aside");
        assert_eq!(counted, [("zoom".to_owned(), 2)], "counted as dead letters, under their endpoint");
    }

    /// A file of the first schema (every time an integer) is read as it is, and marked as
    /// of this one; a file of a later schema is refused.
    #[tokio::test]
    async fn a_file_of_the_first_schema_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let hook = webhook_with(
            http::HeaderMap::new(),
            Some(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()),
        );
        let inbox = open(&dir).await;
        inbox.push(hook.clone()).await.unwrap();
        drop(inbox);
        let path = dir.path().join("inbox.db");
        let version = |set: Option<i64>| {
            let conn = Connection::open(&path).unwrap();
            if let Some(v) = set {
                conn.pragma_update(None, "user_version", v).unwrap();
            }
            let kind: String = conn
                .query_row("SELECT typeof(timestamp_ns) FROM hookguard_inbox", [], |row| row.get(0))
                .unwrap();
            assert_eq!(kind, "integer");
            conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0)).unwrap()
        };
        assert_eq!(version(Some(1)), 1);
        let inbox = open(&dir).await;
        assert_eq!(inbox.pull(1, Duration::from_secs(30)).await.unwrap()[0].webhook(), &hook);
        // Upgraded: a time only this schema holds is kept, and read back from the file.
        let far = {
            let at = OffsetDateTime::from_unix_timestamp(10_000_000_000).unwrap();
            let v = crate::verify::Verified::new("zoom", Some("d-far".into()), Some(at), None, [0; 32], 0);
            Webhook::new("zoom", &v, http::HeaderMap::new(), "{}".into(), OffsetDateTime::UNIX_EPOCH)
        };
        assert_eq!(inbox.push(far.clone()).await.unwrap(), Pushed::Accepted);
        drop(inbox);
        assert_eq!(version(None), SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 2, "a file holding such a time is of the second schema");
        let inbox = open(&dir).await;
        let jobs = inbox.pull(10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(jobs.iter().map(Job::webhook).collect::<Vec<_>>(), [&far], "the first still leased");
        drop(inbox);
        version(Some(SCHEMA_VERSION + 1));
        let refused = SqliteInbox::builder(&path).open().await.unwrap_err();
        assert!(refused.to_string().contains("newer"), "{refused}");
    }

    /// A builder of a file in `dir` whose wall clock is `wall` and whose elapsed time is
    /// measured by `steady`: a step of `wall` alone is a clock step, not time passed.
    fn stepping(dir: &tempfile::TempDir, wall: &ManualClock, steady: &ManualClock) -> SqliteInboxBuilder {
        let mut builder = SqliteInbox::builder(dir.path().join("inbox.db")).clock(wall.clone());
        builder.elapsed = Elapsed::Clock(Arc::new(steady.clone()));
        builder
    }

    /// Takes the next job with `writer` and dead-letters it.
    fn dead_lettered(writer: &mut Writer) -> Job {
        let job = pull_one(writer);
        let dead = Request::Dead {
            key: job.webhook().key().to_owned(),
            receipt: parse_receipt(&job).unwrap(),
            error: "no".into(),
        };
        assert!(matches!(batch(writer, vec![dead])[..], [Ok(Answer::Done)]));
        job
    }

    /// Pushes `id`, takes it and acknowledges it with `writer`: a finished job.
    fn finished(writer: &mut Writer, id: &str) -> Job {
        assert!(accepted(&batch(writer, vec![push_of(id)])));
        let job = pull_one(writer);
        ack_with(writer, &job);
        job
    }

    /// Acknowledges `job` with `writer`.
    fn ack_with(writer: &mut Writer, job: &Job) {
        let ack = Request::Ack { key: job.webhook().key().to_owned(), receipt: parse_receipt(job).unwrap() };
        assert!(matches!(batch(writer, vec![ack])[..], [Ok(Answer::Done)]));
    }

    fn rows(writer: &Writer) -> i64 {
        writer.conn.query_row("SELECT COUNT(*) FROM hookguard_inbox", [], |row| row.get(0)).unwrap()
    }

    /// A wall clock stepped forward (an NTP step; a host's clock set right after running
    /// behind) prunes no key finished within the retention, and a push does not forget it:
    /// the retention runs by the time elapsed (was: a resend an hour after the ack,
    /// within the day kept, was accepted and processed twice).
    #[test]
    fn a_clock_stepped_forward_forgets_no_key_within_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let (hour, day) = (Duration::from_secs(3600), Duration::from_secs(24 * 3600));
        let wall = ManualClock::at_unix(1_700_000_000);
        let steady = ManualClock::at_unix(0);
        let mut writer =
            Writer::open(&stepping(&dir, &wall, &steady).retention(day), Arc::default()).unwrap();
        finished(&mut writer, "a");
        // An hour later, the clock steps a day forward.
        steady.advance(hour);
        wall.advance(hour + day);
        batch(&mut writer, vec![Request::DeadLetters { limit: 1 }]);
        assert_eq!(rows(&writer), 1, "a's key, finished an hour ago, is not pruned");
        assert!(
            duplicate(&batch(&mut writer, vec![push_of("a")])),
            "a resend an hour after the ack is a duplicate"
        );
        // The retention runs by the time elapsed: a day after the ack, it is over.
        for clock in [&wall, &steady] {
            clock.advance(day - 2 * hour);
        }
        assert!(duplicate(&batch(&mut writer, vec![push_of("a")])));
        for clock in [&wall, &steady] {
            clock.advance(2 * hour);
        }
        batch(&mut writer, vec![Request::DeadLetters { limit: 1 }]);
        assert_eq!(rows(&writer), 0, "pruned a day after the ack");
        assert!(accepted(&batch(&mut writer, vec![push_of("a")])));
    }

    /// A key finished while the clock is stepped back (an RTC reset to 1970 before NTP
    /// syncs) is stamped no earlier than the last one, read back from the file too: once
    /// the clock is set right, after a restart, it is kept (was: stamped in the past, and
    /// forgotten at once).
    #[test]
    fn a_clock_stepped_back_stamps_no_key_in_the_past() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(24 * 3600);
        let wall = ManualClock::at_unix(1_700_000_000);
        let steady = ManualClock::at_unix(0);
        let builder = || stepping(&dir, &wall, &steady).retention(day);
        let mut writer = Writer::open(&builder(), Arc::default()).unwrap();
        finished(&mut writer, "x");
        drop(writer);
        // Restarted with the clock 20 hours behind (within the day's retention).
        wall.set_unix(1_700_000_000 - 20 * 3600);
        let mut writer = Writer::open(&builder(), Arc::default()).unwrap();
        let a = finished(&mut writer, "a");
        let stamp = stamp_of(&writer, &a);
        assert_eq!(stamp, 1_700_000_000_000_000_000, "the last stamp, not 20 hours before it");
        drop(writer);
        // Set right, and restarted: 23 hours after the step back, 3 after the last stamp.
        wall.set_unix(1_700_000_000 + 3 * 3600);
        let mut writer = Writer::open(&builder(), Arc::default()).unwrap();
        assert!(duplicate(&batch(&mut writer, vec![push_of("a")])), "a resend of a is a duplicate");
        // The last stamp is read from a range of the index of finished keys.
        let plan = plan_of(&writer, LAST_STAMP, []);
        assert_eq!(plan, ["SEARCH hookguard_inbox USING COVERING INDEX hookguard_inbox_done"], "{plan:?}");
    }

    /// The stamp of finished `job`'s row.
    fn stamp_of(writer: &Writer, job: &Job) -> i64 {
        writer
            .conn
            .query_row("SELECT at_ns FROM hookguard_inbox WHERE key = ?1", [job.webhook().key()], |row| {
                row.get(0)
            })
            .unwrap()
    }

    /// A stamp far ahead in the file (a clock that once ran years fast) holds later
    /// stamps back by no more than the retention: the keys finished after it are pruned
    /// within twice the retention, not years later (the file growing meanwhile).
    #[test]
    fn a_stamp_far_ahead_holds_later_ones_back_by_the_retention_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(24 * 3600);
        let wall = ManualClock::at_unix(1_700_000_000 + 10 * 365 * 24 * 3600);
        let steady = ManualClock::at_unix(0);
        let builder = || stepping(&dir, &wall, &steady).retention(day);
        let mut writer = Writer::open(&builder(), Arc::default()).unwrap();
        finished(&mut writer, "x");
        drop(writer);
        // Set right (ten years back), and restarted.
        wall.set_unix(1_700_000_000);
        let mut writer = Writer::open(&builder(), Arc::default()).unwrap();
        let a = finished(&mut writer, "a");
        assert_eq!(
            stamp_of(&writer, &a),
            1_700_000_000_000_000_000 + 24 * 3600 * 1_000_000_000,
            "a day ahead at most"
        );
        // Two days and a minute later, a's key is pruned, and its resend is new.
        wall.advance(2 * day + Duration::from_secs(60));
        steady.advance(2 * day + Duration::from_secs(60));
        assert!(
            accepted(&batch(&mut writer, vec![push_of("a")])),
            "a's key was forgotten within twice the retention"
        );
    }

    /// A page reads on past unreadable dead letters only so far ([`UNREADABLE_PER_PAGE`]):
    /// a file of damaged rows is not walked whole on the writer's thread, which pushes
    /// wait for. The page stops short, and says so.
    #[tokio::test]
    async fn a_page_stops_after_so_many_unreadable_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer =
            Writer::open(&SqliteInbox::builder(dir.path().join("inbox.db")), Arc::default()).unwrap();
        let ids = ["a", "b", "c", "d"];
        for id in ids {
            assert!(accepted(&batch(&mut writer, vec![push_of(id)])));
        }
        for _ in ids {
            dead_lettered(&mut writer);
        }
        for id in &ids[..UNREADABLE_PER_PAGE] {
            let Request::Push(push) = push_of(id) else { unreachable!() };
            let damaged = writer
                .conn
                .execute("UPDATE hookguard_inbox SET headers = x'01' WHERE key = ?1", [push.0.key])
                .unwrap();
            assert_eq!(damaged, 1);
        }
        let (answers, logs) =
            crate::inbox::logged(async { batch(&mut writer, vec![Request::DeadLetters { limit: 1 }]) }).await;
        let Ok(Answer::DeadLetters(letters)) = &answers[0] else { panic!("no list") };
        assert!(letters.is_empty(), "the readable letter is past the unreadable ones the page reads");
        assert!(logs.contains("stops short"), "{logs}");
    }

    /// Dead letters that cannot be read do not count among a page's `limit`: a page comes
    /// back short only when no readable letter is left (was: a page of unreadable ones came
    /// back empty, and `hookguard inbox discard --all` stopped there). Their keys are
    /// logged, as are those of rows a pull sets aside: `discard` takes them.
    #[tokio::test]
    async fn unreadable_dead_letters_are_logged_by_key_and_fill_no_page() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer =
            Writer::open(&SqliteInbox::builder(dir.path().join("inbox.db")), Arc::default()).unwrap();
        for id in ["a", "b", "c", "d"] {
            assert!(accepted(&batch(&mut writer, vec![push_of(id)])));
        }
        for _ in 0..3 {
            dead_lettered(&mut writer);
        }
        let key = |id: &str| match push_of(id) {
            Request::Push(push) => push.0.key,
            _ => unreachable!(),
        };
        for id in ["a", "b", "d"] {
            let damaged = writer
                .conn
                .execute("UPDATE hookguard_inbox SET headers = x'01' WHERE key = ?1", [key(id)])
                .unwrap();
            assert_eq!(damaged, 1);
        }
        let (answers, logs) =
            crate::inbox::logged(async { batch(&mut writer, vec![Request::DeadLetters { limit: 1 }]) }).await;
        let Ok(Answer::DeadLetters(letters)) = &answers[0] else { panic!("no list") };
        let ids: Vec<_> = letters.iter().map(|letter| letter.webhook.id().unwrap()).collect();
        assert_eq!(ids, ["c"], "the readable letter after two unreadable ones");
        for id in ["a", "b"] {
            assert!(logs.contains(&format!("key={:?}", key(id))), "{logs}");
        }
        let (answers, logs) = crate::inbox::logged(async {
            batch(&mut writer, vec![Request::Pull { max: 1, lease: Duration::from_secs(30) }])
        })
        .await;
        assert!(matches!(&answers[0], Ok(Answer::Jobs(jobs, _)) if jobs.is_empty()), "d set aside");
        assert!(logs.contains(&format!("key={:?}", key("d"))), "{logs}");
        let plan = plan_of(&writer, DEAD_LETTERS, []);
        assert_eq!(plan, ["SCAN hookguard_inbox USING INDEX hookguard_inbox_dead"], "{plan:?}");
    }

    /// Dropping an open that waits for the file's lock (another inbox holds it) returns at
    /// once (was: it waited for the writer thread, up to 5 seconds, blocking the runtime's
    /// thread); the thread, left to itself, closes the file once it has it.
    #[tokio::test]
    async fn dropping_an_open_waiting_for_the_lock_does_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let first = SqliteInbox::builder(&path).open().await.unwrap();
        let mut second = Box::pin(SqliteInbox::builder(&path).open());
        assert!(futures_util::FutureExt::now_or_never(&mut second).is_none(), "waiting for the lock");
        let (dropped, done) = std::sync::mpsc::channel();
        thread::spawn(move || {
            drop(second);
            let _ = dropped.send(());
        });
        done.recv_timeout(Duration::from_secs(2)).expect("the drop returns at once");
        drop(first);
        // The thread left behind gets the lock, finds its queue closed and closes the file.
        let again = SqliteInbox::builder(&path).open().await.expect("the file is free again");
        assert_eq!(again.depth().await.unwrap(), 0);
    }

    /// A job kept across a drop and reopen of the file cannot ack a later lease of its
    /// job: receipts do not start again (was: at the highest receipt a row still held,
    /// none once acks, retries and dead letters had cleared them).
    #[tokio::test]
    async fn receipts_do_not_repeat_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at_unix(1_700_000_000);
        let open = || SqliteInbox::builder(dir.path().join("inbox.db")).clock(clock.clone()).open();
        let inbox = open().await.unwrap();
        inbox.push(webhook_with(http::HeaderMap::new(), None)).await.unwrap();
        let first = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.retry(&first, clock.now_for_tests(), "later").await.unwrap();
        drop(inbox);
        let inbox = open().await.unwrap();
        let second = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        assert_ne!(second.receipt(), first.receipt());
        assert!(matches!(inbox.ack(&first).await, Err(InboxError::LeaseLost)), "not its lease");
        inbox.ack(&second).await.unwrap();
        assert_eq!(inbox.depth().await.unwrap(), 0);
    }
}
