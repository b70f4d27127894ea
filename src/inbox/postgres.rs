//! An inbox in PostgreSQL: one table, rows leased with `FOR UPDATE SKIP LOCKED`.

use std::{
    borrow::Cow,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use deadpool_postgres::{Object, Pool, Runtime};
use time::OffsetDateTime;
use tokio::{sync::OnceCell, time::Instant};
use tokio_postgres::{
    AsyncMessage, Socket,
    tls::{MakeTlsConnect, TlsConnect},
};

use super::{
    BoxFuture, DeadLetter, Inbox, InboxError, Job, Pushed, Webhook,
    pg_text::{read_record, stored, stored_record, unstored},
    wake::{self, Background, Signal},
};
use crate::clock::{Clock, SystemClock};

/// How often (by the injected clock) a pull also deletes finished keys past the retention.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Rows of the kept-jobs counter (spread so concurrent pushes rarely wait on one row).
const SHARDS: u32 = 16;

/// How often the idle `LISTEN` connection is checked, and how long it has to answer.
const HEARTBEAT: Duration = Duration::from_secs(30);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);
/// The least time between two notifications from one inbox: changes in between share one.
const NOTIFY_SPACING: Duration = Duration::from_millis(5);
/// How long opening the `LISTEN` connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A `LISTEN` connection that stayed up this long was healthy: its loss starts the
/// back-off again.
const STABLE: Duration = Duration::from_secs(30);

/// How long the pool made by [`PostgresInbox::connect`] may take to open one connection
/// (TCP connect, startup, authentication), unless the URL sets `connect_timeout`.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a call waits for a free connection of the pool made by `connect`.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// How long one call may take, by default (see [`PostgresInbox::operation_timeout`]).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than the longest operation timeout of the inboxes sharing it the server
/// lets a statement on a connection of the pool made by [`PostgresInbox::connect`] run
/// (`statement_timeout`): what ends a statement whose call was abandoned when its cancel
/// request did not get through.
const STATEMENT_MARGIN: Duration = Duration::from_secs(1);
/// The most done rows one purge statement deletes: a backlog goes in several statements,
/// none of them long.
const PURGE_BATCH: i64 = 5_000;
/// The most dead letters (bodies included) one statement of a listing reads.
const DEAD_PAGE: usize = 256;
/// The longest a migration waits for a lock (never more than half the operation timeout):
/// every push and pull that needs the table queues behind a DDL statement waiting for one.
const MIGRATION_LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// Below this size (of the table's own pages: bodies of a few KiB or more are stored
/// apart), the migration builds the index `inbox_fresh` itself, in milliseconds; a larger
/// table gets it built concurrently after the migration (see [`build_fresh`]).
const FRESH_INLINE_BYTES: u64 = 8 * 1024 * 1024;

/// Why a `LISTEN` session ended.
type ListenError = Box<dyn std::error::Error + Send + Sync>;

/// Sends a cancel request for the statement running on a connection (a connection of its
/// own, with the TLS the pool connects with).
type CancelFn = dyn Fn(tokio_postgres::CancelToken) -> BoxFuture<'static, Result<(), tokio_postgres::Error>>
    + Send
    + Sync;

/// One `LISTEN` session: connects, runs the given `LISTEN` statement, counts notifications
/// on the signal until the connection ends. Type-erases the TLS connector.
type ListenFn = dyn Fn(Arc<str>, Arc<Signal>) -> BoxFuture<'static, Result<(), ListenError>> + Send + Sync;

/// An [`Inbox`] in PostgreSQL, shared by every replica that points at the same schema.
///
/// **Guarantee:** an accepted webhook is committed before [`push`](Inbox::push) returns,
/// so it survives a crash of any receiver or worker process and, with PostgreSQL's
/// defaults (`fsync`, `synchronous_commit = on`), a crash of the database's machine;
/// with synchronous replication it also survives the loss of that machine.
///
/// # Schema
///
/// The library creates and migrates what it needs (idempotently, under an advisory lock,
/// on first use or with [`migrate`](Self::migrate)) in its own schema (default
/// `hookguard`, set with [`schema`](Self::schema)): one table `inbox` with a `UNIQUE`
/// delivery `key`, the webhook (`record` JSON, raw `body`), `status` (`ready`, `leased`,
/// `done`, `dead`), `attempts`, `next_attempt_at`, `lease_until`, `lease_token`,
/// `last_error` and `failed_at`, plus its counter table `inbox_kept`. Dead letters are rows
/// with status `dead`.
///
/// PostgreSQL stores no NUL character in `text` nor `jsonb`, and a delivery id or event
/// type read from a signed JSON body may hold one (`\u0000`). A key, endpoint or event
/// type, and the strings of a record, that hold NUL or U+001A (SUB) are stored with NUL
/// written as SUB `0` and SUB as SUB SUB (a record so written gets `"nul_escaped": true`);
/// the webhook comes back as it was pushed, and two different keys are never stored
/// alike. (A key holding SUB that was stored before this escaping existed is not found by
/// a resend, [`redrive`](Inbox::redrive) or [`discard`](Inbox::discard) after it, and one
/// holding SUB `0` would be taken for that key with NUL.) NUL in an error message is
/// stored as U+FFFD.
///
/// Pulls lease due rows with `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait
/// on or share a row; a row whose lease ran out is due again. Acked rows stay as `done`
/// (without their body) for the [retention](Self::retention), so a late resend is a
/// duplicate; pulls delete older ones about once a minute, 5,000 rows at a time (the next
/// pull deletes the next 5,000 if there were more), or call [`purge`](Self::purge). That
/// deletion is housekeeping: when it fails, or takes more than half the operation timeout
/// (it is then abandoned), the pull logs it and goes on.
///
/// Every time (due, lease end, failure, retention) comes from the injected
/// [`clock`](Self::clock) and is passed as a parameter; the SQL never calls `now()`. So
/// replicas sharing a schema compare lease ends by their own clocks: one whose clock runs
/// ahead by *d* takes another's job *d* early. Keep the replicas' clocks in sync (NTP), and
/// choose the worker's [`lease`](crate::worker::Worker::lease) longer than the slowest
/// handler by more than the skew. Likewise finished keys are kept for the retention by
/// the clock of the process that purges them: a replica whose clock runs ahead by *d*
/// deletes them *d* early, and a resend in that time is processed again.
///
/// A job never attempted is due whatever the clock says: one pushed before the clock
/// stepped back (an NTP step, a host started with its clock ahead and then set right), or
/// by a replica whose clock is ahead of the puller's, is not held up until the clock
/// reaches its push time. Its time ahead counts as now in the pull's order, so it does not
/// go before jobs overdue by the clock. Pulls find such jobs through the partial index
/// `inbox_fresh` (a range that is empty unless the clock is behind). The migration builds
/// it on a table under 8 MiB (a new one). On a larger table (an upgrade) it is built after
/// the migration with `CREATE INDEX CONCURRENTLY`, in the background, by one replica at a
/// time, on one connection beyond the pool: that holds up no push or pull, but it waits
/// for every transaction older than it (a `pg_dump`, a long report) and keeps vacuum off
/// the table meanwhile (watch `pg_stat_progress_create_index`); one build may take an hour
/// at most. Until the index is valid, such a job waits for its time as before. A build
/// that fails is tried again (after 30 s, doubling to an hour), and logged as a warning
/// with the statements to run by hand.
///
/// # Capacity
///
/// Waiting, leased and dead rows count (default 100,000); past it, pushes fail with
/// [`InboxError::Full`]. A dead row holds its room until it is re-driven and processed, or
/// [discarded](Inbox::discard) (then it is kept as `done`, as an acked row is). A trigger keeps the count in 16 counter rows (`inbox_kept`), so
/// the check costs the same at any depth. The check and the insert are one statement but
/// not serialized against concurrent pushes, so under a burst the bound can be overshot by
/// the number of concurrent pushers.
///
/// Connections: a [`deadpool_postgres`] pool (16 connections by default, no TLS); bring
/// your own pool, with TLS, through [`from_pool`](Self::from_pool). The inbox's statements
/// are made for the read committed isolation level (PostgreSQL's default): under
/// `repeatable read` or `serializable`, pulls and pushes that meet a concurrent change
/// fail with serialization errors. The pool made by [`connect`](Self::connect) opens its
/// connections with `default_transaction_isolation` set to `read committed`, whatever the
/// database, the role or the URL's `options` say (unless a pooler in front of the
/// database refuses startup parameters); give a pool of your own the same (or leave the
/// default).
///
/// # Timeouts
///
/// A database that stops answering fails calls, so the receiver answers `503` with
/// `Retry-After`, instead of holding pushes: every call gives up after the
/// [operation timeout](Self::operation_timeout) (default 5 s). The pool made by
/// [`connect`](Self::connect) also gives up each TCP connect after 3 s (or the URL's
/// `connect_timeout`), opening a connection after twice that per host in the URL (time
/// for a second address when the first stopped answering), and waiting for a free one
/// after 5 s; and its connections (the `LISTEN` one too) are closed by the kernel when the
/// database leaves what they sent unacknowledged for 15 s (`TCP_USER_TIMEOUT`, or the
/// URL's `tcp_user_timeout`): a database machine that vanished does not keep failing calls
/// on its dead connections. tokio-postgres reads `connect_timeout=0` and
/// `tcp_user_timeout=0` as unset, so these defaults apply then too. A migration waits at most 2 s
/// for each lock it needs, and once the table, indexes and trigger exist it takes none on
/// the table.
///
/// A call that gives up (or that its caller drops) while its statement still runs on the
/// server (waiting for a lock, say) does not give its connection back to the pool at once,
/// where the next call's statements would queue behind that one: a cancel request is sent
/// for the statement (over a connection of its own, with the TLS given to
/// [`wakeups`](Self::wakeups), else none, waiting at most 10 s for it to be taken), and
/// the connection, out of the other calls' reach, keeps its slot in the pool until it
/// answers again (its statement cancelled or ended): then it goes back to the pool. One
/// that does not answer within 30 s more is closed, and the pool opens another in its
/// place when needed. So while a statement runs on, its slot is held, at most about 40 s
/// (the cancel's 10 s and those 30 s): meanwhile the pool's sessions on the server stay
/// within its size (not one more per timed-out call), and a pool whose every connection
/// is held so fails calls (after its wait for a free one) until one answers. Should the
/// cancel request not get through, the connections of the pool made by `connect` have the server
/// end every statement itself a little after the operation timeout (`statement_timeout`:
/// 1 s more than the longest operation timeout given to the inboxes sharing the pool, the
/// default 5 s included, unless the URL sets one in `options`). Set a `statement_timeout`
/// on a pool of your own likewise.
///
/// # Wake-ups
///
/// Idle workers do not poll: [`wait`](Inbox::wait) returns as soon as any replica pushes.
/// After a push, a retry or a re-drive commits, the inbox sends `pg_notify` on the channel
/// `<schema>.inbox`, and it keeps one connection of its own that `LISTEN`s on it, shared by
/// all its clones and waiters. That connection opens at the first `wait`, reconnects with
/// back-off (100 ms doubling to 30 s) when it drops, and closes when the last clone of the
/// inbox is dropped; while it is down, `wait` sleeps until its timeout (or the next due
/// time, below).
///
/// The notification is not part of the push's transaction: PostgreSQL serializes the
/// commits of all transactions that notify (a database-wide lock held until the commit is
/// flushed), which took concurrent pushes from about 2,200–3,500 to about 370 a second on
/// the benchmark's machine (BENCHMARKS.md). A task per inbox sends it instead, once the
/// change has committed, in a transaction of its own that does not wait for the flush: one
/// notification for all the changes made while the previous one was being sent, at most
/// one every 5 ms. So a push never waits for it, and a process that dies between its
/// commit and the notification leaves the others to notice at their timeout.
///
/// `wait` also returns when a retry becomes due or a lease runs out: before it sleeps, it
/// reads the earliest due time and lease end from the indexes (one small query), so the
/// timeout only bounds how late a change made after that query is noticed. A push made
/// between a worker's pull and its `wait` is not missed: `wait` returns at once when a
/// notification arrived since the last pull began.
///
/// [`connect`](Self::connect) sets this up from its URL; an inbox made with
/// [`from_pool`](Self::from_pool) polls (`wait` sleeps its whole timeout) until it is given
/// a connection configuration with [`wakeups`](Self::wakeups).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use hookguard::{inbox::Webhook, verify::Verified};
/// # fn hook(id: &str) -> Webhook {
/// #     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
/// #     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::now_utc())
/// # }
/// use std::time::Duration;
/// use hookguard::inbox::{Inbox, PostgresInbox, Pushed};
/// let inbox = PostgresInbox::connect("postgres://postgres@127.0.0.1:5432/app").await?.schema("webhooks");
/// inbox.migrate().await?;
/// assert_eq!(inbox.push(hook("d-1")).await?, Pushed::Accepted);
/// assert_eq!(inbox.push(hook("d-1")).await?, Pushed::Duplicate);
/// for job in inbox.pull(10, Duration::from_secs(30)).await? {
///     inbox.ack(&job).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresInbox {
    pool: Pool,
    sql: Arc<Sql>,
    migrated: Arc<OnceCell<()>>,
    /// Whether the index `inbox_fresh` is valid, so that pulls take jobs never attempted
    /// whatever the clock says (`pull_fresh`); per schema, as `migrated`.
    fresh: Arc<tokio::sync::watch::Sender<bool>>,
    capacity: usize,
    retention: Duration,
    clock: Arc<dyn Clock>,
    last_purge: Arc<Mutex<Option<OffsetDateTime>>>,
    /// How long one call may take.
    timeout: Duration,
    /// Cancels the statement of a connection whose call was abandoned (see [`Loan`]).
    cancel: Arc<CancelFn>,
    /// The `statement_timeout` (ms) that the connections of the pool made by `connect` open
    /// with, shared by the inboxes that share the pool; `None` for a pool of the caller's.
    statement_limit: Option<Arc<AtomicU64>>,
    /// The most done rows one purge statement deletes ([`PURGE_BATCH`]; fewer in tests).
    purge_batch: i64,
    /// The most dead letters one listing statement reads ([`DEAD_PAGE`]; fewer in tests).
    dead_page: usize,
    /// Opens `wait`'s `LISTEN` connection; `None`: `wait` sleeps its whole timeout.
    listen: Option<Arc<ListenFn>>,
    listener: Arc<Background>,
    /// Sends the notifications of this inbox's changes.
    notifier: Arc<Background>,
}

impl fmt::Debug for PostgresInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the connection configuration: it may hold a password.
        f.debug_struct("PostgresInbox")
            .field("schema", &self.sql.schema)
            .field("capacity", &self.capacity)
            .field("retention", &self.retention)
            .field("operation_timeout", &self.timeout)
            .field("wakeups", &self.listen.is_some())
            .finish_non_exhaustive()
    }
}

struct Sql {
    schema: String,
    valid: bool,
    /// The `NOTIFY` channel, passed to `pg_notify` as a parameter.
    channel: String,
    /// `LISTEN` on the channel, quoted.
    listen: Arc<str>,
    /// `pg_notify` on the channel, committed without waiting for the WAL flush.
    notify: String,
    /// The earliest due time and lease end after a given time.
    due: String,
    migrate: String,
    push: String,
    exists: String,
    pull: String,
    /// `pull`, and the jobs never attempted whose time is ahead of the clock (through
    /// `inbox_fresh`: only once it is valid).
    pull_fresh: String,
    /// Whether `inbox_fresh` is there and valid (`NULL`: not there).
    fresh_state: String,
    /// The session lock one builder of `inbox_fresh` holds at a time.
    fresh_lock: String,
    fresh_drop: String,
    fresh_build: String,
    ack: String,
    retry: String,
    give_back: String,
    dead: String,
    dead_list: String,
    dead_list_unstamped: String,
    redrive: String,
    discard: String,
    depth: String,
    purge: String,
}

/// The channel of the inbox in `schema`: its table's name, `<schema>.inbox`, or, for a schema
/// too long for that (channel names have at most 63 bytes), `hookguard.` and a hash of it.
fn channel(schema: &str) -> String {
    use sha2::{Digest, Sha256};
    let name = format!("{schema}.inbox");
    if name.len() <= 63 {
        return name;
    }
    format!("hookguard.{}", const_hex::encode(&Sha256::digest(schema.as_bytes())[..16]))
}

/// A time before every time the inbox stores.
fn before_everything() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH.replace_year(1).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

impl Sql {
    fn new(schema: &str) -> Self {
        Self::building_fresh_inline_below(schema, FRESH_INLINE_BYTES)
    }

    /// The statements for `schema`, the migration building `inbox_fresh` itself when the
    /// table is smaller than `inline` bytes.
    fn building_fresh_inline_below(schema: &str, inline: u64) -> Self {
        let valid = valid_identifier(schema);
        // Only a valid identifier is ever put into SQL.
        let s = if valid { schema } else { "invalid" };
        let t = format!("\"{s}\".inbox");
        let channel = channel(s);
        // A pull's due rows by the clock, and the lease of those picked, shared by `pull`
        // and `pull_fresh`: `ready` the waiting rows due (by `inbox_ready`), `expired` the
        // leased rows whose lease ran out (by `inbox_leased`), each in its index's order
        // and reading no more than its `LIMIT` (one `OR` of both, ordered by a `CASE`,
        // read and sorted every due row at each pull). Each locks up to `$2` rows, and the
        // pull leases the first `$2` of both by when they were due: those it does not
        // take stay locked only until its statement ends (well under a millisecond), and a
        // pull that leaves some takes `$2`, so that it reports more due and its pool pulls
        // again at once. Another replica's pull meanwhile skips them and reads on past them
        // (`SKIP LOCKED` with a `LIMIT`), so it comes back short only when fewer than twice
        // `$2` jobs were due.
        let due_parts = format!(
            "ready AS (
                SELECT seq, next_attempt_at AS due
                FROM {t}
                WHERE status = 'ready' AND next_attempt_at <= $1
                ORDER BY next_attempt_at, seq
                LIMIT $2
                FOR UPDATE SKIP LOCKED
             ), expired AS (
                SELECT seq, lease_until AS due
                FROM {t}
                WHERE status = 'leased' AND lease_until <= $1
                ORDER BY lease_until, seq
                LIMIT $2
                FOR UPDATE SKIP LOCKED
             )"
        );
        let lease_picked = format!(
            "UPDATE {t} i SET status = 'leased', attempts = i.attempts + 1, lease_until = $3, lease_token = $4
             FROM picked WHERE i.seq = picked.seq
             RETURNING i.record::text, i.body, i.attempts, picked.due, i.seq, i.key"
        );
        Self {
            schema: schema.to_owned(),
            valid,
            listen: Arc::from(format!("LISTEN {}", quote_ident(&channel))),
            notify: "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')".to_owned(),
            channel,
            due: format!(
                "SELECT (SELECT min(next_attempt_at) FROM {t} WHERE status = 'ready' AND next_attempt_at > $1),
                        (SELECT min(lease_until) FROM {t} WHERE status = 'leased' AND lease_until > $1)"
            ),
            migrate: format!(
                "SELECT pg_advisory_xact_lock(hashtext('hookguard:{s}'));
                CREATE SCHEMA IF NOT EXISTS \"{s}\";
                CREATE TABLE IF NOT EXISTS {t} (
                    seq bigserial PRIMARY KEY,
                    key text NOT NULL UNIQUE,
                    endpoint text NOT NULL,
                    event text,
                    record jsonb NOT NULL,
                    body bytea NOT NULL,
                    status text NOT NULL CHECK (status IN ('ready', 'leased', 'done', 'dead')),
                    attempts integer NOT NULL DEFAULT 0,
                    next_attempt_at timestamptz NOT NULL,
                    lease_until timestamptz,
                    lease_token bigint,
                    last_error text,
                    failed_at timestamptz,
                    finished_at timestamptz,
                    received_at timestamptz NOT NULL
                );
                CREATE TABLE IF NOT EXISTS \"{s}\".inbox_kept (shard integer PRIMARY KEY, n bigint NOT NULL);
                CREATE OR REPLACE FUNCTION \"{s}\".inbox_count() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF TG_OP = 'INSERT' AND NEW.status <> 'done' THEN
                        UPDATE \"{s}\".inbox_kept SET n = n + 1 WHERE shard = NEW.seq % {SHARDS};
                    ELSIF TG_OP = 'UPDATE' AND OLD.status <> 'done' AND NEW.status = 'done' THEN
                        UPDATE \"{s}\".inbox_kept SET n = n - 1 WHERE shard = NEW.seq % {SHARDS};
                    ELSIF TG_OP = 'UPDATE' AND OLD.status = 'done' AND NEW.status <> 'done' THEN
                        UPDATE \"{s}\".inbox_kept SET n = n + 1 WHERE shard = NEW.seq % {SHARDS};
                    ELSIF TG_OP = 'DELETE' AND OLD.status <> 'done' THEN
                        UPDATE \"{s}\".inbox_kept SET n = n - 1 WHERE shard = OLD.seq % {SHARDS};
                    END IF;
                    RETURN NULL;
                END $$;
                -- Indexes, counter rows and trigger only when missing: `CREATE INDEX IF NOT
                -- EXISTS` and `CREATE [OR REPLACE] TRIGGER` lock the table against writers even
                -- when there is nothing to do (`DROP TRIGGER` against readers too), and every
                -- push and pull would queue behind them.
                DO $migrate$
                BEGIN
                    IF to_regclass('\"{s}\".inbox_ready') IS NULL THEN
                        CREATE INDEX inbox_ready ON {t} (next_attempt_at, seq) WHERE status = 'ready';
                    END IF;
                    IF to_regclass('\"{s}\".inbox_leased') IS NULL THEN
                        CREATE INDEX inbox_leased ON {t} (lease_until, seq) WHERE status = 'leased';
                    END IF;
                    IF to_regclass('\"{s}\".inbox_dead') IS NULL THEN
                        CREATE INDEX inbox_dead ON {t} (failed_at, seq) WHERE status = 'dead';
                    END IF;
                    IF to_regclass('\"{s}\".inbox_done') IS NULL THEN
                        CREATE INDEX inbox_done ON {t} (finished_at) WHERE status = 'done';
                    END IF;
                    -- On a small table (a new one) at once; on a larger one, building it
                    -- here would hold every writer for as long as it takes, within this
                    -- migration's time limit: built concurrently after it instead.
                    IF to_regclass('\"{s}\".inbox_fresh') IS NULL AND pg_relation_size('{t}') < {inline} THEN
                        CREATE INDEX inbox_fresh ON {t} (next_attempt_at, seq) WHERE status = 'ready' AND attempts = 0;
                    END IF;
                    IF (SELECT count(*) FROM \"{s}\".inbox_kept) < {SHARDS} THEN
                        INSERT INTO \"{s}\".inbox_kept (shard, n)
                            SELECT 0, count(*) FROM {t} WHERE status <> 'done' ON CONFLICT (shard) DO NOTHING;
                        INSERT INTO \"{s}\".inbox_kept (shard, n)
                            SELECT g, 0 FROM generate_series(1, {SHARDS} - 1) g ON CONFLICT (shard) DO NOTHING;
                    END IF;
                    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                                   WHERE tgrelid = '{t}'::regclass AND tgname = 'inbox_count') THEN
                        CREATE TRIGGER inbox_count AFTER INSERT OR UPDATE OF status OR DELETE ON {t}
                            FOR EACH ROW EXECUTE FUNCTION \"{s}\".inbox_count();
                    END IF;
                END $migrate$;"
            ),
            push: format!(
                "INSERT INTO {t} (key, endpoint, event, record, body, status, next_attempt_at, received_at)
                 SELECT $1, $2, $3, $4::text::jsonb, $5, 'ready', $6, $7
                 WHERE (SELECT coalesce(sum(n), 0)::bigint FROM \"{s}\".inbox_kept) < $8
                 ON CONFLICT (key) DO NOTHING
                 RETURNING seq"
            ),
            exists: format!("SELECT 1 FROM {t} WHERE key = $1"),
            // Jobs never attempted are due whatever the clock says (one stepped back, a
            // replica whose clock lags the pusher's): `ahead` takes those whose time is
            // still ahead of it (a range of `inbox_fresh`, empty unless the clock is
            // behind), `ready` and `expired` the due rows by the clock as `pull` does.
            // Ranges, not one `OR`, so that none reads more than its `LIMIT`. Ordered by
            // when each was due, a time ahead counting as now: overdue retries and expired
            // leases are not put behind jobs pushed after them by a clock that runs ahead.
            pull_fresh: format!(
                "WITH ahead AS (
                    SELECT seq, $1::timestamptz AS due
                    FROM {t}
                    WHERE status = 'ready' AND attempts = 0 AND next_attempt_at > $1
                    ORDER BY next_attempt_at, seq
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED
                 ), {due_parts}, picked AS (
                    SELECT seq, due
                    FROM (SELECT * FROM ahead UNION ALL SELECT * FROM ready UNION ALL SELECT * FROM expired) AS parts
                    ORDER BY due, seq
                    LIMIT $2
                 )
                 {lease_picked}"
            ),
            fresh_state: format!(
                "SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('\"{s}\".inbox_fresh'))"
            ),
            fresh_lock: format!("SELECT pg_try_advisory_lock(hashtext('hookguard:{s}:inbox_fresh'))"),
            fresh_drop: format!("DROP INDEX CONCURRENTLY IF EXISTS \"{s}\".inbox_fresh"),
            fresh_build: format!(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS inbox_fresh ON {t} (next_attempt_at, seq)
                 WHERE status = 'ready' AND attempts = 0"
            ),
            pull: format!(
                "WITH {due_parts}, picked AS (
                    SELECT seq, due FROM (SELECT * FROM ready UNION ALL SELECT * FROM expired) AS parts
                    ORDER BY due, seq
                    LIMIT $2
                 )
                 {lease_picked}"
            ),
            ack: format!(
                "UPDATE {t} SET status = 'done', finished_at = $3, body = ''::bytea, lease_until = NULL, lease_token = NULL
                 WHERE seq = $1 AND status = 'leased' AND lease_token = $2"
            ),
            retry: format!(
                "UPDATE {t} SET status = 'ready', next_attempt_at = $3, last_error = $4, lease_until = NULL, lease_token = NULL
                 WHERE seq = $1 AND status = 'leased' AND lease_token = $2"
            ),
            give_back: format!(
                "UPDATE {t} SET status = 'ready', next_attempt_at = $3, last_error = $4, lease_until = NULL, lease_token = NULL,
                     attempts = greatest(attempts - 1, 0)
                 WHERE seq = $1 AND status = 'leased' AND lease_token = $2"
            ),
            dead: format!(
                "UPDATE {t} SET status = 'dead', last_error = $3, failed_at = $4, lease_until = NULL, lease_token = NULL
                 WHERE seq = $1 AND status = 'leased' AND lease_token = $2"
            ),
            // A page after the given failure time and `seq` (the index `inbox_dead`'s order).
            dead_list: format!(
                "SELECT record::text, body, attempts, coalesce(last_error, ''), failed_at, key, seq FROM {t}
                 WHERE status = 'dead' AND (failed_at, seq) > ($1, $2) ORDER BY failed_at, seq LIMIT $3"
            ),
            // Those without a failure time (none of this library's making), after them.
            dead_list_unstamped: format!(
                "SELECT record::text, body, attempts, coalesce(last_error, ''), failed_at, key, seq FROM {t}
                 WHERE status = 'dead' AND failed_at IS NULL AND seq > $1 ORDER BY seq LIMIT $2"
            ),
            redrive: format!(
                "UPDATE {t} SET status = 'ready', attempts = 0, next_attempt_at = $2, last_error = NULL, failed_at = NULL
                 WHERE key = $1 AND status = 'dead'"
            ),
            // As an ack leaves a row (the counting trigger frees its room); its record is not
            // read, so a row that cannot be read goes too.
            discard: format!(
                "UPDATE {t} SET status = 'done', finished_at = $2, body = ''::bytea, lease_until = NULL, lease_token = NULL
                 WHERE key = $1 AND status = 'dead'"
            ),
            depth: format!("SELECT count(*) FROM {t} WHERE status IN ('ready', 'leased')"),
            // A batch at a time; rows a concurrent purge is deleting are skipped, not waited
            // for. `= ANY (ARRAY(...))`: the rows by their key (`IN (...)` joined the whole
            // table to the batch).
            purge: format!(
                "DELETE FROM {t} WHERE seq = ANY (ARRAY(
                    SELECT seq FROM {t} WHERE status = 'done' AND finished_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED
                 ))"
            ),
        }
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> InboxError {
    InboxError::Backend(Box::new(e))
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A call that took longer than the inbox's [operation timeout](PostgresInbox::operation_timeout).
#[derive(Debug)]
struct TimedOut(Duration);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgreSQL did not answer within {:?}", self.0)
    }
}

impl std::error::Error for TimedOut {}

/// A migration that failed, with PostgreSQL's reason (a `tokio_postgres::Error` says only
/// "db error").
#[derive(Debug)]
struct MigrationFailed {
    schema: String,
    lock_wait: Duration,
    source: tokio_postgres::Error,
}

impl fmt::Display for MigrationFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "migrating the PostgreSQL inbox in schema {:?} failed: ", self.schema)?;
        match self.source.as_db_error() {
            Some(db) => f.write_str(db.message())?,
            None => write!(f, "{}", self.source)?,
        }
        if self.source.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
            write!(
                f,
                " (waited {:?} for a lock another session holds on its tables, a long transaction \
                 perhaps; nothing was changed, and the next call tries again)",
                self.lock_wait
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for MigrationFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// How long the kernel waits for the database to acknowledge what a connection sent before
/// it closes the connection (`TCP_USER_TIMEOUT`), unless the URL sets `tcp_user_timeout`.
const DEAD_PEER: Duration = Duration::from_secs(15);

/// The configuration [`PostgresInbox::connect`] opens its connections with: the URL's,
/// with [`OPEN_TIMEOUT`] as its connect timeout and [`DEAD_PEER`] as its TCP user timeout
/// where the URL sets none. A database machine that vanishes without a word (a failover
/// that moves its address) leaves connections that never answer: a call on one fails at
/// the operation timeout, and the connection goes back to the pool. The TCP user timeout
/// has the kernel close it once what was sent stays unacknowledged, so the pool opens a
/// new one instead of handing the dead one out again and again.
fn connection_config(url: &str) -> Result<tokio_postgres::Config, InboxError> {
    let mut config = url.parse::<tokio_postgres::Config>().map_err(backend)?;
    let open = config.get_connect_timeout().copied().unwrap_or(OPEN_TIMEOUT);
    config.connect_timeout(open);
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(DEAD_PEER);
    }
    Ok(config)
}

/// How long the pool made by [`PostgresInbox::connect`] may take to open one connection.
/// tokio-postgres bounds each TCP connect by the connect timeout, one address after the
/// other (several hosts in the URL, or a name with an IPv6 and an IPv4 address), and
/// nothing else (a server that takes the connection and never answers): twice the connect
/// timeout per host, so that one address that stopped answering, the case a failover
/// makes, leaves time to try the next.
fn open_limit(config: &tokio_postgres::Config) -> Duration {
    let connect = config.get_connect_timeout().copied().unwrap_or(OPEN_TIMEOUT);
    let tries = u32::try_from(config.get_hosts().len()).unwrap_or(u32::MAX).max(1).saturating_mul(2);
    connect.saturating_mul(tries)
}

/// Runs `op`, failing with [`InboxError::Backend`] when it takes longer than `limit`.
async fn within<T>(
    limit: Duration,
    op: impl std::future::Future<Output = Result<T, InboxError>>,
) -> Result<T, InboxError> {
    tokio::time::timeout(limit, op).await.unwrap_or_else(|_| Err(backend(TimedOut(limit))))
}

/// A connection of the pool lent to one call; [`on_loan`] gives it back to the pool once the
/// call's statements are done.
///
/// Dropped before that, its call was abandoned (the operation timeout, or a caller that
/// dropped the call), perhaps with a statement still running on the server: given back at
/// once, the connection would make the next call's statements wait behind that one (a
/// lock held for long would so take every connection of the pool, one timed-out call after
/// the other). So a cancel request is sent for its statement, and the connection stays
/// out of the others' reach, its slot in the pool held, until it answers again (the
/// statement cancelled, or ended): then it goes back. One that does not answer within
/// [`SETTLE_LIMIT`] is closed for good (the pool opens another in its place). The slot is
/// held meanwhile so that, should the cancel not get through (a pooler that does not pass
/// it on, TLS the inbox was not given), the server's sessions stay within the pool's size
/// instead of one more per timed-out call.
struct Loan {
    object: Option<Object>,
    cancel: Arc<CancelFn>,
}

impl Loan {
    /// Gives the connection back to the pool: its call's statements are done.
    fn give_back(mut self) {
        drop(self.object.take());
    }
}

/// How long an abandoned call's connection has to answer again (its statement cancelled
/// or ended) before it is closed instead of given back.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

impl Drop for Loan {
    fn drop(&mut self) {
        let Some(object) = self.object.take() else { return };
        // No runtime (a call dropped after its runtime): the connection just closes.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(Object::take(object));
            return;
        };
        let token = object.cancel_token();
        let cancel = Arc::clone(&self.cancel);
        drop(runtime.spawn(async move {
            let failed = match tokio::time::timeout(CONNECT_TIMEOUT, cancel(token)).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {CONNECT_TIMEOUT:?}")),
            };
            if let Some(error) = failed {
                tracing::warn!(%error, "PostgreSQL inbox: could not cancel the statement of an abandoned call");
            }
            // Answered only once what was queued before it (the abandoned statement, the
            // rollback of its transaction) is done.
            match tokio::time::timeout(SETTLE_LIMIT, object.simple_query("SELECT 1")).await {
                Ok(Ok(_)) => drop(object),
                _ => drop(Object::take(object)),
            }
        }));
    }
}

/// How long one build of `inbox_fresh` may take before it is cancelled (and tried again
/// later): it waits for every transaction older than it, and holds off the table's vacuum
/// meanwhile.
const FRESH_BUILD_LIMIT: Duration = Duration::from_secs(3600);
/// How often a replica that found another building `inbox_fresh` looks again.
const FRESH_POLL: Duration = Duration::from_secs(5);
/// The first wait before a failed build is tried again; doubled up to [`FRESH_RETRY_MAX`].
const FRESH_RETRY: Duration = Duration::from_secs(30);
const FRESH_RETRY_MAX: Duration = Duration::from_secs(3600);

/// Builds the index `inbox_fresh` without holding up pushes and pulls (`CREATE INDEX
/// CONCURRENTLY`), for a table the migration found too large to build it in its own time
/// limit; then lets the inbox's pulls use it. Ends once it is valid, or once every clone
/// of the inbox is gone.
///
/// One replica builds at a time, under a session lock taken with `pg_try_advisory_lock`
/// on a connection of its own (out of the pool: its settings and lock are not handed on).
/// The others do not wait in `pg_advisory_lock`: a session waiting there holds a snapshot,
/// which the build waits for in turn (a deadlock, the builder aborted). They look again
/// every [`FRESH_POLL`], holding no connection in between. An invalid index (a build that failed or
/// was cut short) is dropped and built again; a failed build is tried again after a
/// back-off.
async fn build_fresh(pool: Pool, sql: Arc<Sql>, fresh: Arc<tokio::sync::watch::Sender<bool>>) {
    let fresh = Arc::downgrade(&fresh);
    let mut retry = FRESH_RETRY;
    loop {
        if fresh.strong_count() == 0 {
            return; // the inbox is gone
        }
        match build_fresh_once(&pool, &sql).await {
            Ok(true) => {
                if let Some(fresh) = fresh.upgrade() {
                    fresh.send_replace(true);
                }
                return;
            }
            // Another replica is building it.
            Ok(false) => tokio::time::sleep(FRESH_POLL).await,
            Err(error) => {
                tracing::warn!(
                    %error,
                    schema = %sql.schema,
                    ?retry,
                    "PostgreSQL inbox: the index inbox_fresh could not be built (tried again after the back-off): \
                     until it is, a job pushed before the clock stepped back, or by a replica whose clock is \
                     ahead, waits until the clock reaches its push time. To build it by hand: DROP INDEX \
                     CONCURRENTLY IF EXISTS <schema>.inbox_fresh; CREATE INDEX CONCURRENTLY inbox_fresh ON \
                     <schema>.inbox (next_attempt_at, seq) WHERE status = 'ready' AND attempts = 0"
                );
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(FRESH_RETRY_MAX);
            }
        }
    }
}

/// What PostgreSQL said (a `tokio_postgres::Error` displays only "db error").
fn said(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

/// One try of [`build_fresh`]: `Ok(true)` once the index is valid, `Ok(false)` when
/// another session holds the builders' lock.
async fn build_fresh_once(pool: &Pool, sql: &Sql) -> Result<bool, String> {
    let pooled = pool.get().await.map_err(|e| e.to_string())?;
    let valid: Option<bool> = pooled.query_one(&sql.fresh_state, &[]).await.map_err(said)?.get(0);
    if valid == Some(true) {
        return Ok(true);
    }
    let locked: bool = pooled.query_one(&sql.fresh_lock, &[]).await.map_err(said)?.get(0);
    if !locked {
        return Ok(false); // the pooled connection goes back holding nothing
    }
    // The lock is this session's: out of the pool, closed when done (the lock with it).
    let client = Object::take(pooled);
    let run = async |statement: &str| client.batch_execute(statement).await.map_err(said);
    let state = async || -> Result<Option<bool>, String> {
        Ok(client.query_one(&sql.fresh_state, &[]).await.map_err(said)?.get(0))
    };
    run(&format!("SET statement_timeout = {}", FRESH_BUILD_LIMIT.as_millis())).await?;
    run("SET lock_timeout = 0").await?;
    if state().await? == Some(false) {
        run(&sql.fresh_drop).await?;
    }
    if state().await?.is_none() {
        tracing::info!(schema = %sql.schema, "PostgreSQL inbox: building the index inbox_fresh concurrently");
        run(&sql.fresh_build).await?;
    }
    match state().await? {
        Some(true) => Ok(true),
        _ => Err("the index is not valid after its build".to_owned()),
    }
}

/// Runs `op` on a connection of `pool`, given back once `op` is done; if `op` is dropped
/// before (its call abandoned), its statement is cancelled and the connection holds its
/// slot in the pool, out of the other calls' reach, until it answers again (at most
/// [`CONNECT_TIMEOUT`] for the cancel and [`SETTLE_LIMIT`] more): then it is given back,
/// or closed if it did not answer in time (see [`Loan`]).
async fn on_loan<T>(
    pool: &Pool,
    cancel: &Arc<CancelFn>,
    op: impl AsyncFnOnce(&mut Object) -> Result<T, InboxError>,
) -> Result<T, InboxError> {
    let object = pool.get().await.map_err(backend)?;
    let mut loan = Loan { object: Some(object), cancel: Arc::clone(cancel) };
    let out = match loan.object.as_mut() {
        Some(object) => op(object).await,
        None => Err(InboxError::Backend("no pooled connection".into())),
    };
    loan.give_back();
    out
}

/// Cancels statements over a connection made with `tls`.
fn canceller<T>(tls: T) -> Arc<CancelFn>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    Arc::new(move |token: tokio_postgres::CancelToken| {
        let tls = tls.clone();
        Box::pin(async move { token.cancel_query(tls).await })
    })
}

/// The `statement_timeout` (whole ms, as PostgreSQL takes it) for an operation timeout:
/// [`STATEMENT_MARGIN`] more, at most PostgreSQL's largest.
fn statement_ms(timeout: Duration) -> u64 {
    let ms = timeout.saturating_add(STATEMENT_MARGIN).as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX).min(i32::MAX as u64)
}

/// Opens the connections of the pool made by [`PostgresInbox::connect`]: with its
/// configuration, a `statement_timeout` of the longest operation timeout of the inboxes
/// that share the pool plus [`STATEMENT_MARGIN`], unless the URL's `options` set one, and
/// [`READ_COMMITTED`] whatever they set. Set when each connection opens, they cost no
/// statement.
///
/// A connection pooler that refuses the settings as startup parameters (PgBouncer: before
/// 1.20 any `options`, since then a setting it does not track) gets connections without
/// them from then on, with one warning: the limit is a backstop, not worth an outage, and
/// the isolation level is the server's default (read committed unless set otherwise).
struct Opener {
    statement_ms: Arc<AtomicU64>,
    /// The server (a pooler in front of it) refused the startup parameter once.
    refused: Arc<std::sync::atomic::AtomicBool>,
}

/// The isolation level of the transactions of the pool made by [`PostgresInbox::connect`],
/// after the URL's own `options` (the last setting of a name wins): read committed, that
/// pulls (`FOR UPDATE SKIP LOCKED`) and pushes (`ON CONFLICT`) are made for. A database or
/// role whose `default_transaction_isolation` is `repeatable read` or `serializable`
/// would fail them with serialization errors (`40001`) whenever they meet a concurrent
/// change.
const READ_COMMITTED: &str = r"-c default_transaction_isolation=read\ committed";

/// Whether a server's refusal of a connection is of its startup parameters (PgBouncer's
/// "unsupported startup parameter: options", "unsupported startup parameter in options:
/// statement_timeout").
fn refuses_startup_options(message: &str) -> bool {
    message.contains("unsupported startup parameter")
}

impl deadpool_postgres::Connect for Opener {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> BoxFuture<'_, Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>>
    {
        let plain = config.clone();
        let mut limited = None;
        if !self.refused.load(Ordering::Relaxed) {
            let own = config.get_options().unwrap_or_default().trim().to_owned();
            let mut options = vec![own.clone()];
            if !own.contains("statement_timeout") {
                options.push(format!("-c statement_timeout={}", self.statement_ms.load(Ordering::Relaxed)));
            }
            options.push(READ_COMMITTED.to_owned());
            options.retain(|o| !o.is_empty());
            let mut config = config.clone();
            config.options(options.join(" "));
            limited = Some(config);
        }
        Box::pin(async move {
            let opened = match limited {
                Some(limited) => match limited.connect(tokio_postgres::NoTls).await {
                    Err(e) if refuses_startup_options(&e.to_string()) => {
                        if !self.refused.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                error = %e,
                                "PostgreSQL inbox: the server refuses statement_timeout and default_transaction_isolation \
                                 as startup parameters (a connection pooler?): its connections go without them"
                            );
                        }
                        plain.connect(tokio_postgres::NoTls).await
                    }
                    opened => opened,
                },
                None => plain.connect(tokio_postgres::NoTls).await,
            };
            let (client, connection) = opened?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "PostgreSQL inbox: a pooled connection failed");
                }
            });
            Ok((client, task))
        })
    }
}

/// A stored key as [`Inbox::discard`] and [`Inbox::redrive`] take it (for log lines).
fn key_as_given(column: &str) -> Cow<'_, str> {
    unstored(column).unwrap_or(Cow::Borrowed(column))
}

/// An error message as a `text` column can hold it: each NUL becomes U+FFFD.
fn storable_error(error: &str) -> Cow<'_, str> {
    if error.contains('\0') { Cow::Owned(error.replace('\0', "\u{FFFD}")) } else { Cow::Borrowed(error) }
}

/// The webhook of a stored row.
fn read_webhook(record: &str, body: Vec<u8>) -> Result<Webhook, String> {
    let record = read_record(record)?;
    Webhook::from_meta_json(record.as_bytes(), Bytes::from(body)).map_err(|e| e.to_string())
}

/// The dead letter of a row of [`Sql::dead_list`]; `None` (logged with its key) when its
/// record cannot be read.
fn dead_letter(row: &tokio_postgres::Row) -> Result<Option<DeadLetter>, InboxError> {
    let record: String = row.try_get(0).map_err(backend)?;
    let body: Vec<u8> = row.try_get(1).map_err(backend)?;
    let attempts: i32 = row.try_get(2).map_err(backend)?;
    let error: String = row.try_get(3).map_err(backend)?;
    let failed_at: Option<OffsetDateTime> = row.try_get(4).map_err(backend)?;
    let webhook = match read_webhook(&record, body) {
        Ok(webhook) => webhook,
        // One damaged row must not hide the others (see `Inbox::dead_letters`).
        Err(e) => {
            // Its key (not secret) for `discard`, which takes it as given here.
            let key: String = row.try_get(5).unwrap_or_default();
            tracing::warn!(
                error = %e,
                key = ?key_as_given(&key),
                "an unreadable PostgreSQL dead letter is left out of the list; `discard` its key to drop it"
            );
            return Ok(None);
        }
    };
    Ok(Some(DeadLetter {
        webhook,
        attempts: u32::try_from(attempts).unwrap_or(0),
        error,
        failed_at: failed_at.unwrap_or(OffsetDateTime::UNIX_EPOCH),
    }))
}

/// The receipt of a lease: the row's `seq` and the lease's token.
fn receipt(seq: i64, token: i64) -> String {
    format!("{seq}:{token}")
}

/// The row and token of a receipt made by [`receipt`].
fn parse_receipt(receipt: &str) -> Option<(i64, i64)> {
    let (seq, token) = receipt.split_once(':')?;
    Some((seq.parse().ok()?, token.parse().ok()?))
}

/// Sends one notification for each burst of committed changes (pokes), at most one every
/// [`NOTIFY_SPACING`], until the task is dropped.
async fn notify_forever(
    pool: Pool,
    sql: Arc<Sql>,
    cancel: Arc<CancelFn>,
    signal: Arc<Signal>,
    timeout: Duration,
) {
    loop {
        signal.demanded().await;
        let sent = within(
            timeout,
            on_loan(&pool, &cancel, async |client| {
                let stmt = client.prepare_cached(&sql.notify).await.map_err(backend)?;
                client.execute(&stmt, &[&sql.channel]).await.map_err(backend)
            }),
        );
        if let Err(e) = sent.await {
            tracing::warn!(error = %e, "PostgreSQL inbox: NOTIFY failed; idle workers of other replicas wake at their timeout");
        }
        tokio::time::sleep(NOTIFY_SPACING).await;
    }
}

/// Keeps `LISTEN` sessions going, with back-off between them, until the task is dropped.
async fn listen_forever(session: Arc<ListenFn>, listen: Arc<str>, signal: Arc<Signal>) {
    let mut failures = 0;
    loop {
        let began = Instant::now();
        let ended = session(Arc::clone(&listen), Arc::clone(&signal)).await;
        if began.elapsed() >= STABLE {
            failures = 0;
        }
        failures += 1;
        let delay = wake::RECONNECT.delay(failures);
        match ended {
            Ok(()) => {
                tracing::info!(retry_in = ?delay, "PostgreSQL inbox: the server closed the LISTEN connection")
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "PostgreSQL inbox: the LISTEN connection failed; idle workers poll until it is back");
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// One `LISTEN` session on a connection of its own. Once it listens it wakes every waiter
/// (what was notified before is unknown to them), then each notification does. Checks the
/// connection every [`HEARTBEAT`] so that a silently dead one is noticed.
async fn listen_session<T>(
    config: tokio_postgres::Config,
    tls: T,
    listen: Arc<str>,
    signal: Arc<Signal>,
) -> Result<(), ListenError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(tls))
        .await
        .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))??;
    let messages = async {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(_) = message? {
                signal.wake();
            }
        }
        Ok::<(), ListenError>(())
    };
    let listening = async {
        client.batch_execute(&listen).await?;
        signal.wake();
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            tokio::time::timeout(HEARTBEAT_TIMEOUT, client.batch_execute("SELECT 1"))
                .await
                .map_err(|_| format!("no answer to a heartbeat within {HEARTBEAT_TIMEOUT:?}"))??;
        }
    };
    tokio::select! {
        ended = messages => ended,
        failed = listening => failed,
    }
}

impl PostgresInbox {
    /// A pool of 16 connections (no TLS) to `url`, e.g.
    /// `postgres://user:password@host:5432/db`; checks that the database answers. The
    /// schema is migrated on first use.
    ///
    /// The pool gives up opening a connection (TCP connect, startup and authentication)
    /// after 3 s, or the URL's `connect_timeout` (whole seconds), and waiting for a free
    /// connection after 5 s; every call also has an
    /// [operation timeout](Self::operation_timeout). For other limits, bring your own pool
    /// with [`from_pool`](Self::from_pool).
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the URL is invalid or the database cannot be reached
    /// in time.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookguard::inbox::PostgresInbox;
    /// // A "database" that takes connections and never answers: no endless wait.
    /// let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let url = format!("postgres://postgres@{}/test?connect_timeout=1", silent.local_addr()?);
    /// assert!(PostgresInbox::connect(&url).await.is_err(), "fails after a second");
    /// # Ok(()) }
    /// ```
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookguard::inbox::{Inbox, PostgresInbox};
    /// let inbox = PostgresInbox::connect("postgres://postgres@127.0.0.1/test").await?;
    /// println!("{} webhooks waiting", inbox.depth().await?);
    /// // A database that does not answer fails here, not at the first push.
    /// assert!(PostgresInbox::connect("postgres://postgres@127.0.0.1:1/test").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, InboxError> {
        let config = connection_config(url)?;
        let open = open_limit(&config);
        let statement_limit = Arc::new(AtomicU64::new(statement_ms(OPERATION_TIMEOUT)));
        let manager = deadpool_postgres::Manager::from_connect(
            config.clone(),
            Opener { statement_ms: Arc::clone(&statement_limit), refused: Arc::default() },
            deadpool_postgres::ManagerConfig::default(),
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(open))
            .recycle_timeout(Some(open))
            .build()
            .map_err(backend)?;
        drop(pool.get().await.map_err(backend)?);
        let mut inbox = Self::from_pool(pool).wakeups(config, tokio_postgres::NoTls);
        inbox.statement_limit = Some(statement_limit);
        Ok(inbox)
    }

    /// Uses an existing pool (for TLS, other sizes or shared pools). Idle workers poll
    /// until [`wakeups`](Self::wakeups) says how to open the `LISTEN` connection.
    ///
    /// The pool's own timeouts apply (deadpool's default is to wait without end: set them,
    /// as below); every call is bounded by the
    /// [operation timeout](Self::operation_timeout) in any case. Its connections should use
    /// the read committed isolation level (PostgreSQL's default; set their
    /// `default_transaction_isolation` to `read committed` when the database or role
    /// defaults to another): under `repeatable read` or `serializable`, pulls and pushes
    /// fail with serialization errors (`40001`) when they meet a concurrent change.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use hookguard::inbox::{Inbox, PostgresInbox};
    /// let mut cfg = deadpool_postgres::Config::new();
    /// cfg.url = Some("postgres://postgres@127.0.0.1/test".into());
    /// cfg.connect_timeout = Some(Duration::from_secs(3));
    /// let mut pool_cfg = deadpool_postgres::PoolConfig::new(4);
    /// pool_cfg.timeouts.wait = Some(Duration::from_secs(5));
    /// pool_cfg.timeouts.create = Some(Duration::from_secs(3));
    /// pool_cfg.timeouts.recycle = Some(Duration::from_secs(3));
    /// cfg.pool = Some(pool_cfg);
    /// let pool = cfg.create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls)?;
    /// let inbox = PostgresInbox::from_pool(pool);
    /// inbox.migrate().await?;
    /// println!("{} webhooks waiting", inbox.depth().await?);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn from_pool(pool: Pool) -> Self {
        Self {
            pool,
            sql: Arc::new(Sql::new("hookguard")),
            migrated: Arc::new(OnceCell::new()),
            fresh: Arc::new(tokio::sync::watch::Sender::new(false)),
            capacity: 100_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            clock: Arc::new(SystemClock),
            last_purge: Arc::default(),
            timeout: OPERATION_TIMEOUT,
            cancel: canceller(tokio_postgres::NoTls),
            statement_limit: None,
            purge_batch: PURGE_BATCH,
            dead_page: DEAD_PAGE,
            listen: None,
            listener: Arc::new(Background::new()),
            notifier: Arc::new(Background::new()),
        }
    }

    /// Lets [`wait`](Inbox::wait) hear pushes from every replica: its `LISTEN` connection
    /// (one per inbox, see [Wake-ups](Self#wake-ups)) is opened with `config` and `tls`.
    /// [`connect`](Self::connect) does this with its URL and no TLS; call it after
    /// [`from_pool`](Self::from_pool) with what the pool connects with. Cancel requests
    /// for the statements of abandoned calls (see [Timeouts](Self#timeouts)) use `tls`
    /// too.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use hookguard::inbox::{Inbox, PostgresInbox};
    /// let url = "postgres://postgres@127.0.0.1/test";
    /// let mut cfg = deadpool_postgres::Config::new();
    /// cfg.url = Some(url.into());
    /// let pool = cfg.create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls)?;
    /// let inbox = PostgresInbox::from_pool(pool).wakeups(url.parse()?, tokio_postgres::NoTls);
    /// // Returns as soon as any replica pushes, else after 30 s.
    /// inbox.wait(Duration::from_secs(30)).await;
    /// let jobs = inbox.pull(10, Duration::from_secs(30)).await?;
    /// # drop(jobs); Ok(()) }
    /// ```
    #[must_use]
    pub fn wakeups<T>(mut self, config: tokio_postgres::Config, tls: T) -> Self
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        self.cancel = canceller(tls.clone());
        self.listen = Some(Arc::new(move |listen, signal| {
            Box::pin(listen_session(config.clone(), tls.clone(), listen, signal))
        }));
        self.listener = Arc::new(Background::new());
        self
    }

    /// Sets the schema that holds the table (default `hookguard`; lower-case letters,
    /// digits and `_`, at most 63 bytes: any other name makes every call fail).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use hookguard::{inbox::Webhook, verify::Verified};
    /// # fn hook(id: &str) -> Webhook {
    /// #     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
    /// #     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::now_utc())
    /// # }
    /// use hookguard::inbox::{Inbox, PostgresInbox};
    /// let inbox = PostgresInbox::connect("postgres://postgres@127.0.0.1/test").await?;
    /// let (tenant_a, tenant_b) = (inbox.clone().schema("tenant_a"), inbox.clone().schema("tenant_b"));
    /// let before = tenant_b.depth().await?;
    /// tenant_a.push(hook("d-1")).await?;
    /// assert_eq!(tenant_b.depth().await?, before, "a table of its own");
    /// assert!(inbox.schema("Tenant-C").migrate().await.is_err(), "not a valid name");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn schema(mut self, schema: &str) -> Self {
        self.sql = Arc::new(Sql::new(schema));
        self.migrated = Arc::new(OnceCell::new());
        self.fresh = Arc::new(tokio::sync::watch::Sender::new(false));
        // A purge timer of its own: shared with the schema it was cloned from, a pull of
        // either would put off the other's purge.
        self.last_purge = Arc::default();
        self.listener = Arc::new(Background::new());
        self.notifier = Arc::new(Background::new());
        self
    }

    /// Sets the capacity (waiting + leased + dead rows; default 100,000).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use hookguard::{inbox::Webhook, verify::Verified};
    /// # fn hook(id: &str) -> Webhook {
    /// #     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
    /// #     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::now_utc())
    /// # }
    /// use hookguard::inbox::{Inbox, InboxError, PostgresInbox};
    /// // A schema of its own, empty before this.
    /// let inbox = PostgresInbox::connect("postgres://postgres@127.0.0.1/test").await?.schema("small").capacity(1);
    /// inbox.push(hook("d-1")).await?;
    /// assert!(matches!(inbox.push(hook("d-2")).await, Err(InboxError::Full)));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How long finished keys are kept for duplicate detection (default 7 days).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use hookguard::{inbox::Webhook, verify::Verified};
    /// # fn hook(id: &str) -> Webhook {
    /// #     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
    /// #     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::now_utc())
    /// # }
    /// use std::time::Duration;
    /// use hookguard::inbox::{Inbox, PostgresInbox, Pushed};
    /// let inbox = PostgresInbox::connect("postgres://postgres@127.0.0.1/test").await?
    ///     .retention(Duration::from_secs(86_400));
    /// inbox.push(hook("d-1")).await?;
    /// for job in inbox.pull(10, Duration::from_secs(30)).await? {
    ///     inbox.ack(&job).await?;
    /// }
    /// assert_eq!(inbox.push(hook("d-1")).await?, Pushed::Duplicate, "a resend within a day");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the clock for every stored time.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use hookguard::{inbox::Webhook, verify::Verified};
    /// # fn hook(id: &str) -> Webhook {
    /// #     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
    /// #     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::now_utc())
    /// # }
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, inbox::{Inbox, PostgresInbox}};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// // A schema of its own, empty before this.
    /// let inbox = PostgresInbox::connect("postgres://postgres@127.0.0.1/test").await?.schema("clocked").clock(clock.clone());
    /// inbox.push(hook("d-1")).await?;
    /// inbox.pull(1, Duration::from_secs(30)).await?;
    /// assert!(inbox.pull(1, Duration::from_secs(30)).await?.is_empty(), "leased");
    /// clock.advance(Duration::from_secs(31));
    /// assert_eq!(inbox.pull(1, Duration::from_secs(30)).await?[0].attempt(), 2, "lease ran out");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long one call ([`push`](Inbox::push), [`pull`](Inbox::pull),
    /// [`ack`](Inbox::ack), [`migrate`](Self::migrate), ...) may take, waiting for a pooled
    /// connection or opening one included, before it fails with [`InboxError::Backend`]
    /// (the receiver then answers `503` with `Retry-After`); default 5 s. A database that
    /// stops answering fails pushes instead of holding them (see [Timeouts](Self#timeouts)
    /// for what becomes of its connection and statement). What was sent may still
    /// complete: a push that timed out may have been kept (its resend is then a duplicate,
    /// answered `2xx`), an ack that timed out may have acked.
    ///
    /// The pool made by [`connect`](Self::connect) has the server end a statement 1 s
    /// after the longest operation timeout given to the inboxes sharing it (the default
    /// 5 s included: a shorter one leaves it at 6 s); its idle connections opened with a
    /// shorter one close when this makes it longer.
    ///
    /// A migration waits at most half of this (and at most 2 s) for each lock it needs
    /// (`lock_timeout`), and then fails with PostgreSQL's "lock timeout" error, so that
    /// the pushes and pulls queued behind it go on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use hookguard::{inbox::Webhook, verify::Verified};
    /// # fn hook(id: &str) -> Webhook {
    /// #     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
    /// #     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::now_utc())
    /// # }
    /// use std::time::Duration;
    /// use hookguard::inbox::{Inbox, InboxError, PostgresInbox};
    /// // A "database" that takes connections and never answers, and a pool without timeouts.
    /// let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let mut cfg = deadpool_postgres::Config::new();
    /// cfg.url = Some(format!("postgres://postgres@{}/test", silent.local_addr()?));
    /// let pool = cfg.create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls)?;
    /// let inbox = PostgresInbox::from_pool(pool).operation_timeout(Duration::from_millis(200));
    /// assert!(matches!(inbox.push(hook("d-1")).await, Err(InboxError::Backend(_))), "not a hang");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        if let Some(limit) = &self.statement_limit {
            let ms = statement_ms(timeout);
            if limit.fetch_max(ms, Ordering::Relaxed) < ms {
                // Idle connections opened with the shorter limit close; new ones get this one.
                drop(self.pool.retain(|_, _| false));
            }
        }
        self.notifier = Arc::new(Background::new());
        self
    }

    /// Creates the schema, table and indexes if missing. Idempotent and safe to run from
    /// several replicas at once; done on first use anyway.
    ///
    /// Once everything exists it takes no lock on the table (it checks the catalog and
    /// creates only what is missing), so a replica starting while a long transaction
    /// holds the table neither waits for it nor makes pushes and pulls queue behind it.
    /// When it must create something, each lock wait is bounded (see
    /// [`operation_timeout`](Self::operation_timeout)).
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the schema name is invalid, the database fails, or a
    /// lock it needs stays held past its lock timeout.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let inbox = hookguard::inbox::PostgresInbox::connect("postgres://postgres@127.0.0.1/test").await?;
    /// inbox.migrate().await?;
    /// inbox.clone().migrate().await?; // again: nothing to do
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<(), InboxError> {
        within(self.timeout, self.migrate_once()).await
    }

    async fn migrate_once(&self) -> Result<(), InboxError> {
        self.migrated
            .get_or_try_init(|| async {
                if !self.sql.valid {
                    return Err(InboxError::Backend(
                        format!("invalid schema name {:?}: use [a-z_][a-z0-9_]*", self.sql.schema).into(),
                    ));
                }
                let lock_wait = MIGRATION_LOCK_TIMEOUT.min(self.timeout / 2).max(Duration::from_millis(1));
                let failed =
                    |source| backend(MigrationFailed { schema: self.sql.schema.clone(), lock_wait, source });
                on_loan(&self.pool, &self.cancel, async |client| {
                    let tx = client.transaction().await.map_err(backend)?;
                    // For this transaction only: the pooled connection keeps its own setting.
                    tx.batch_execute(&format!("SET LOCAL lock_timeout = {}", lock_wait.as_millis()))
                        .await
                        .map_err(failed)?;
                    tx.batch_execute(&self.sql.migrate).await.map_err(failed)?;
                    tx.commit().await.map_err(failed)?;
                    let state: Option<bool> =
                        client.query_one(&self.sql.fresh_state, &[]).await.map_err(backend)?.get(0);
                    Ok(state)
                })
                .await
                .map(|fresh| {
                    if fresh == Some(true) {
                        self.fresh.send_replace(true);
                    } else {
                        tokio::spawn(build_fresh(
                            self.pool.clone(),
                            Arc::clone(&self.sql),
                            Arc::clone(&self.fresh),
                        ));
                    }
                })
            })
            .await?;
        Ok(())
    }

    /// Deletes finished keys older than the retention; returns how many.
    ///
    /// It deletes them 5,000 at a time, one statement each, each bounded by the
    /// [operation timeout](Self::operation_timeout), until none is left; concurrent purges
    /// (other replicas') skip the rows one of them is deleting instead of waiting for it.
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the database fails (the keys deleted before stay
    /// deleted).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use hookguard::{inbox::Webhook, verify::Verified};
    /// # fn hook(id: &str) -> Webhook {
    /// #     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
    /// #     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::now_utc())
    /// # }
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, inbox::{Inbox, PostgresInbox, Pushed}};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let inbox = PostgresInbox::connect("postgres://postgres@127.0.0.1/test").await?
    ///     .schema("purged")
    ///     .retention(Duration::from_secs(86_400))
    ///     .clock(clock.clone());
    /// inbox.push(hook("d-1")).await?;
    /// let job = inbox.pull(1, Duration::from_secs(30)).await?.remove(0);
    /// inbox.ack(&job).await?;
    /// clock.advance(Duration::from_secs(86_401));
    /// assert!(inbox.purge().await? >= 1);
    /// assert_eq!(inbox.push(hook("d-1")).await?, Pushed::Accepted, "forgotten");
    /// # Ok(()) }
    /// ```
    pub async fn purge(&self) -> Result<u64, InboxError> {
        let before = self.purge_before();
        let mut purged = 0;
        loop {
            let deleted = within(self.timeout, self.purge_some(before)).await?;
            purged += deleted;
            if deleted < self.purge_batch.unsigned_abs() {
                return Ok(purged);
            }
        }
    }

    /// The finish time before which done rows are deleted.
    fn purge_before(&self) -> OffsetDateTime {
        // A retention too long for the calendar keeps everything (was: a panic).
        time::Duration::try_from(self.retention)
            .ok()
            .and_then(|retention| self.clock.now().checked_sub(retention))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Deletes up to [`PURGE_BATCH`] (the `purge_batch` field) done rows finished before `before`.
    async fn purge_some(&self, before: OffsetDateTime) -> Result<u64, InboxError> {
        self.on_connection(async |client| {
            let stmt = client.prepare_cached(&self.sql.purge).await.map_err(backend)?;
            client.execute(&stmt, &[&before, &self.purge_batch]).await.map_err(backend)
        })
        .await
    }

    /// Runs `op` on a pooled connection, the schema migrated first (see [`on_loan`]).
    async fn on_connection<T>(
        &self,
        op: impl AsyncFnOnce(&mut Object) -> Result<T, InboxError>,
    ) -> Result<T, InboxError> {
        self.migrate_once().await?;
        on_loan(&self.pool, &self.cancel, op).await
    }

    async fn push_now(&self, webhook: Webhook) -> Result<Pushed, InboxError> {
        // Refused, not accepted and set aside as damaged at its first pull.
        webhook.check_keepable()?;
        let pushed = self.on_connection(async |client| self.push_on(client, &webhook).await).await?;
        if pushed == Pushed::Accepted {
            self.notify();
        }
        Ok(pushed)
    }

    /// Keeps `webhook` unless it is kept already or the inbox is full.
    async fn push_on(&self, client: &Object, webhook: &Webhook) -> Result<Pushed, InboxError> {
        let stmt = client.prepare_cached(&self.sql.push).await.map_err(backend)?;
        let now = self.clock.now();
        // PostgreSQL refuses NUL in `text` and `\u0000` in `jsonb`: an id or event type from
        // a signed JSON body may hold one.
        let key = stored(webhook.key());
        let inserted = client
            .query_opt(
                &stmt,
                &[
                    &key,
                    &stored(webhook.endpoint()),
                    &webhook.event().map(stored),
                    &stored_record(webhook.to_meta_json()),
                    &webhook.body().as_ref(),
                    &now,
                    &webhook.received_at(),
                    &count(self.capacity),
                ],
            )
            .await
            .map_err(backend)?;
        if inserted.is_some() {
            return Ok(Pushed::Accepted);
        }
        let stmt = client.prepare_cached(&self.sql.exists).await.map_err(backend)?;
        match client.query_opt(&stmt, &[&key]).await.map_err(backend)? {
            Some(_) => Ok(Pushed::Duplicate),
            None => Err(InboxError::Full),
        }
    }

    async fn pull_now(&self, max: usize, lease: Duration) -> Result<Vec<Job>, InboxError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        // Before the query: a notification after this is for a change the pull may miss.
        self.listener.pulling(now);
        self.purge_now_and_then(now).await;
        let jobs = self.on_connection(async |client| self.pull_on(client, now, max, lease).await).await?;
        if jobs.len() >= max {
            // More may be due: a waiter (another pool's, here) must look at them.
            self.listener.pull_was_capped();
        }
        Ok(jobs)
    }

    /// Leases up to `max` due rows until `now` + `lease`.
    async fn pull_on(
        &self,
        client: &Object,
        now: OffsetDateTime,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, InboxError> {
        let sql = if *self.fresh.borrow() { &self.sql.pull_fresh } else { &self.sql.pull };
        let stmt = client.prepare_cached(sql).await.map_err(backend)?;
        let token = fastrand::i64(..);
        let rows = client
            .query(&stmt, &[&now, &count(max), &super::time_after(now, lease), &token])
            .await
            .map_err(backend)?;
        let mut picked = Vec::with_capacity(rows.len());
        for row in rows {
            let record: String = row.try_get(0).map_err(backend)?;
            let body: Vec<u8> = row.try_get(1).map_err(backend)?;
            let attempts: i32 = row.try_get(2).map_err(backend)?;
            let due: OffsetDateTime = row.try_get(3).map_err(backend)?;
            let seq: i64 = row.try_get(4).map_err(backend)?;
            let webhook = match read_webhook(&record, body) {
                Ok(webhook) => webhook,
                Err(e) => {
                    // A damaged row would fail every pull that picks it (and hold up the
                    // rows picked with it): set it aside as a dead letter, as SQLite does.
                    let key: String = row.try_get(5).unwrap_or_default();
                    let key = key_as_given(&key);
                    tracing::error!(error = %e, key = ?key, "unreadable PostgreSQL inbox row dead-lettered");
                    let buried = async {
                        let stmt = client.prepare_cached(&self.sql.dead).await?;
                        client.execute(&stmt, &[&seq, &token, &storable_error(&e), &now]).await
                    };
                    let buried = buried.await;
                    if buried.as_ref().is_ok_and(|rows| *rows == 1) {
                        super::count_set_aside(Some(&*key));
                    }
                    if let Err(failed) = buried {
                        // The rows leased with it are handed out all the same; it stays
                        // leased, and the pull that takes it when its lease runs out tries
                        // again.
                        tracing::warn!(
                            error = %failed,
                            key = ?key,
                            "an unreadable PostgreSQL inbox row could not be dead-lettered"
                        );
                    }
                    continue;
                }
            };
            let job = Job::new(webhook, u32::try_from(attempts).unwrap_or(1), receipt(seq, token));
            picked.push((due, seq, job));
        }
        // `RETURNING` has no order: restore the due order the rows were picked in.
        picked.sort_by_key(|(due, seq, _)| (*due, *seq));
        Ok(picked.into_iter().map(|(_, _, job)| job).collect())
    }

    /// About once every [`PURGE_EVERY`] (and at once again after a full batch), deletes one
    /// batch of done rows past the retention; a clock stepped back since the last purge
    /// does not put off the next one until it is back. Only housekeeping: it never fails the pull.
    /// A failure is logged, and the purge is given at most half the operation timeout, so
    /// that the pull keeps the rest (a purge that takes longer is abandoned, its statement
    /// cancelled; the next one takes it up).
    async fn purge_now_and_then(&self, now: OffsetDateTime) {
        let due = {
            let Ok(mut last) = self.last_purge.lock() else { return };
            match *last {
                // A clock behind the last purge counts as due (not a wait until it is back).
                Some(at) if at <= now && now - at < PURGE_EVERY => false,
                _ => {
                    *last = Some(now);
                    true
                }
            }
        };
        if !due {
            return;
        }
        let budget = self.timeout / 2;
        match tokio::time::timeout(budget, self.purge_some(self.purge_before())).await {
            Ok(Ok(deleted)) if deleted >= self.purge_batch.unsigned_abs() => {
                // More may be left: the next pull deletes another batch.
                if let Ok(mut last) = self.last_purge.lock() {
                    *last = None;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "PostgreSQL inbox: purging finished keys failed; the pull goes on");
            }
            Err(_) => {
                tracing::warn!(
                    ?budget,
                    "PostgreSQL inbox: purging finished keys took too long and was abandoned; the pull goes on"
                );
            }
        }
    }

    /// Runs a lease-ending update; `LeaseLost` unless it changed the leased row.
    async fn release(
        &self,
        sql: &str,
        job: &Job,
        extra: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), InboxError> {
        // The row by its `seq`, not its key: a key stored before keys were escaped (see
        // `stored`) may not be the key escaped.
        let Some((seq, token)) = parse_receipt(job.receipt()) else { return Err(InboxError::LeaseLost) };
        let changed = self
            .on_connection(async |client| {
                let stmt = client.prepare_cached(sql).await.map_err(backend)?;
                let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&seq, &token];
                params.extend_from_slice(extra);
                client.execute(&stmt, &params).await.map_err(backend)
            })
            .await?;
        match changed {
            0 => Err(InboxError::LeaseLost),
            _ => Ok(()),
        }
    }

    /// Up to `limit` dead letters, oldest first: read a page of at most
    /// [`dead_page`](Self::dead_page) at a time, one statement each, each bounded by the
    /// operation timeout, from where the page before ended (failure time and `seq`).
    async fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, InboxError> {
        type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
        let mut out = Vec::new();
        let mut left = limit;
        // Where the page before ended: its last row's failure time and `seq`. The rows
        // without a failure time (none of this library's making) come after all the others,
        // as `ORDER BY failed_at` puts them: `None`, once those with one are listed.
        let (mut after, mut after_seq) = (Some(before_everything()), i64::MIN);
        while left > 0 {
            let page = left.min(self.dead_page.max(1));
            let rows = within(
                self.timeout,
                self.on_connection(async |client| {
                    let n = count(page);
                    let (sql, params): (_, &[Param<'_>]) = match &after {
                        Some(at) => (&self.sql.dead_list, &[at, &after_seq, &n]),
                        None => (&self.sql.dead_list_unstamped, &[&after_seq, &n]),
                    };
                    let stmt = client.prepare_cached(sql).await.map_err(backend)?;
                    client.query(&stmt, params).await.map_err(backend)
                }),
            )
            .await?;
            let ended = rows.len() < page;
            for row in rows {
                after_seq = row.try_get(6).map_err(backend)?;
                if after.is_some() {
                    after = row.try_get(4).map_err(backend)?;
                }
                // An unreadable letter takes no place among the `limit`: the list reads on
                // past it (a page of them would otherwise end a listing short).
                if let Some(dead) = dead_letter(&row)? {
                    out.push(dead);
                    left -= 1;
                }
            }
            if ended {
                if after.is_none() {
                    break;
                }
                (after, after_seq) = (None, i64::MIN);
            }
        }
        Ok(out)
    }

    async fn redrive_now(&self, key: &str) -> Result<bool, InboxError> {
        let redriven = self
            .on_connection(async |client| {
                let stmt = client.prepare_cached(&self.sql.redrive).await.map_err(backend)?;
                let now = self.clock.now();
                Ok(client.execute(&stmt, &[&stored(key), &now]).await.map_err(backend)? > 0)
            })
            .await?;
        if redriven {
            self.notify();
        }
        Ok(redriven)
    }

    async fn discard_now(&self, key: &str) -> Result<bool, InboxError> {
        self.on_connection(async |client| {
            let stmt = client.prepare_cached(&self.sql.discard).await.map_err(backend)?;
            let now = self.clock.now();
            Ok(client.execute(&stmt, &[&stored(key), &now]).await.map_err(backend)? > 0)
        })
        .await
    }

    /// Has the notifier tell every listening replica that a change committed.
    fn notify(&self) {
        if self.sql.valid {
            let (pool, sql, cancel) = (&self.pool, &self.sql, &self.cancel);
            let timeout = self.timeout;
            self.notifier
                .start(|signal| {
                    notify_forever(pool.clone(), Arc::clone(sql), Arc::clone(cancel), signal, timeout)
                })
                .poke();
        }
    }

    /// The earliest due time or lease end after `after`. (A job never attempted whose time
    /// is ahead of the clock counts with that time: due at once for a pull, it wakes a
    /// waiter at that time at the latest, though its push's notification wakes it first.
    /// Not "now": a row another session holds locked would have every waiter pull in a
    /// loop.)
    async fn next_due(&self, after: OffsetDateTime) -> Result<Option<OffsetDateTime>, InboxError> {
        self.on_connection(async |client| {
            let stmt = client.prepare_cached(&self.sql.due).await.map_err(backend)?;
            let row = client.query_one(&stmt, &[&after]).await.map_err(backend)?;
            let ready: Option<OffsetDateTime> = row.try_get(0).map_err(backend)?;
            let lease_end: Option<OffsetDateTime> = row.try_get(1).map_err(backend)?;
            Ok(ready.into_iter().chain(lease_end).min())
        })
        .await
    }

    async fn wait_now(&self, timeout: Duration) {
        let deadline = super::instant_after(Instant::now(), timeout);
        let (Some(listen), true) = (&self.listen, self.sql.valid) else {
            return tokio::time::sleep_until(deadline).await;
        };
        let signal = self
            .listener
            .start(|signal| listen_forever(Arc::clone(listen), Arc::clone(&self.sql.listen), signal));
        let mut wakes = signal.subscribe();
        let last_pull = self.listener.last_pull();
        if last_pull.is_some_and(|(seen, _)| *wakes.borrow_and_update() != seen) {
            // Notified since the last pull began: that pull may have missed the change.
            return;
        }
        // Times up to the last pull were due for it: it took those jobs (or another worker
        // holds their rows); what becomes due after is for this waiter.
        let after = last_pull.map_or_else(before_everything, |(_, at)| at);
        let due = within(self.timeout, self.next_due(after));
        wake::until_due_or_signalled(deadline, due, &*self.clock, &mut wakes).await;
    }

    async fn depth_now(&self) -> Result<usize, InboxError> {
        let n: i64 = self
            .on_connection(async |client| {
                let stmt = client.prepare_cached(&self.sql.depth).await.map_err(backend)?;
                client.query_one(&stmt, &[]).await.map_err(backend)?.try_get(0).map_err(backend)
            })
            .await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

impl Inbox for PostgresInbox {
    fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<Pushed, InboxError>> {
        Box::pin(within(self.timeout, self.push_now(webhook)))
    }

    fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>> {
        Box::pin(within(self.timeout, self.pull_now(max, lease)))
    }

    fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(within(self.timeout, async move {
            let now = self.clock.now();
            self.release(&self.sql.ack, job, &[&now]).await
        }))
    }

    fn retry<'a>(
        &'a self,
        job: &'a Job,
        not_before: OffsetDateTime,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(within(self.timeout, async move {
            // A handler's error may hold NUL, which `text` refuses: the job would stay
            // leased and run again every lease period, never retried nor dead-lettered.
            self.release(&self.sql.retry, job, &[&not_before, &storable_error(error)]).await?;
            self.notify();
            Ok(())
        }))
    }

    fn give_back<'a>(&'a self, job: &'a Job, now: OffsetDateTime) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(within(self.timeout, async move {
            self.release(&self.sql.give_back, job, &[&now, &"given back unprocessed"]).await?;
            self.notify();
            Ok(())
        }))
    }

    fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(within(self.timeout, async move {
            let now = self.clock.now();
            self.release(&self.sql.dead, job, &[&storable_error(error), &now]).await
        }))
    }

    /// Read a page at a time (256 dead letters, one statement each), each page bounded by
    /// the [operation timeout](PostgresInbox::operation_timeout), so that a long list
    /// takes as long as it needs and no statement takes long. So the list is no snapshot:
    /// a dead letter re-driven and dead again while it is read may be listed twice.
    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, InboxError>> {
        Box::pin(self.dead_list(limit))
    }

    fn redrive<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        Box::pin(within(self.timeout, self.redrive_now(key)))
    }

    fn discard<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        Box::pin(within(self.timeout, self.discard_now(key)))
    }

    fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>> {
        Box::pin(within(self.timeout, self.depth_now()))
    }

    /// Returns when another replica (or this one) pushed, retried or re-drove a job, when
    /// a retry becomes due or a lease runs out, or after `timeout` (see
    /// [Wake-ups](PostgresInbox#wake-ups)).
    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(self.wait_now(timeout))
    }
}

#[cfg(test)]
mod tests {
    use std::{future::Future, time::Duration};

    use time::OffsetDateTime;

    use super::{
        Arc, DEAD_PEER, OPEN_TIMEOUT, OnceCell, PostgresInbox, Sql, channel, connection_config, key_as_given,
        open_limit, parse_receipt, quote_ident, receipt, stored, valid_identifier,
    };
    use crate::{
        clock::ManualClock,
        inbox::{
            Inbox, InboxError, Pushed, Webhook,
            pg_text::{
                ESC,
                tests::{all_strings, hook},
            },
        },
    };

    const LEASE: Duration = Duration::from_secs(30);
    /// How long any one wait in a test may take before the test fails (a bound, not a sleep).
    const BOUND: Duration = Duration::from_secs(10);

    async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
        match tokio::time::timeout(BOUND, fut).await {
            Ok(out) => out,
            Err(_) => panic!("timed out after {BOUND:?} waiting for {what}"),
        }
    }

    #[test]
    fn keys_are_logged_as_given() {
        for text in all_strings(&['a', '0', '\0', ESC], 4) {
            assert_eq!(key_as_given(&stored(&text)), text.as_str(), "{text:?}");
        }
        assert_eq!(key_as_given("a\u{1a}b"), "a\u{1a}b", "logged as stored");
    }

    #[test]
    fn receipts_name_the_row_and_the_lease() {
        assert_eq!(parse_receipt(&receipt(42, -7)), Some((42, -7)));
        for bad in ["", "42", "-7", "x:1", "1:x", "1:2:3"] {
            assert_eq!(parse_receipt(bad), None, "{bad:?}");
        }
    }

    /// A database that takes connections and never answers: a bound socket nobody reads
    /// (the kernel completes the handshakes).
    fn silent() -> (std::net::TcpListener, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("postgres://postgres@{}/test", listener.local_addr().unwrap());
        (listener, url)
    }

    fn pool_without_timeouts(url: &str) -> deadpool_postgres::Pool {
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.to_owned());
        cfg.create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls).unwrap()
    }

    #[tokio::test]
    async fn connect_gives_up_on_a_database_that_never_answers() {
        let (_listener, url) = silent();
        let failed =
            bounded("connect to fail", PostgresInbox::connect(&format!("{url}?connect_timeout=1"))).await;
        assert!(matches!(failed, Err(InboxError::Backend(_))), "{failed:?}");
    }

    /// The defaults, on tokio's paused clock (it moves on when everything waits).
    #[tokio::test(start_paused = true)]
    async fn by_default_no_call_waits_without_end() {
        let (_listener, url) = silent();
        let failed = bounded("connect to fail", PostgresInbox::connect(&url)).await;
        assert!(matches!(failed, Err(InboxError::Backend(_))), "{failed:?}");
        let inbox = PostgresInbox::from_pool(pool_without_timeouts(&url));
        let started = tokio::time::Instant::now();
        let failed = bounded("a push to fail", inbox.push(hook("a", None))).await;
        let Err(InboxError::Backend(e)) = failed else { panic!("{failed:?}") };
        assert!(e.to_string().contains("did not answer within 5s"), "{e}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn connections_left_unanswered_are_closed_by_the_kernel() {
        let config = connection_config("postgres://postgres@127.0.0.1/test").unwrap();
        assert_eq!(config.get_tcp_user_timeout(), Some(&DEAD_PEER));
        assert_eq!(config.get_connect_timeout(), Some(&OPEN_TIMEOUT));
        let config =
            connection_config("postgres://postgres@127.0.0.1/test?tcp_user_timeout=40&connect_timeout=7")
                .unwrap();
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(40)), "the URL's own");
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(7)));
        assert!(connection_config("not a url").is_err());
        // Opening may try each host, and each name's addresses, the connect timeout each.
        let one = connection_config("postgres://postgres@127.0.0.1/test").unwrap();
        assert_eq!(open_limit(&one), OPEN_TIMEOUT * 2);
        let two = connection_config("host=db1,db2 user=postgres connect_timeout=2").unwrap();
        assert_eq!(open_limit(&two), Duration::from_secs(8));
    }

    #[tokio::test]
    async fn every_call_fails_after_the_operation_timeout() {
        let (_listener, url) = silent();
        let inbox = PostgresInbox::from_pool(pool_without_timeouts(&url))
            .operation_timeout(Duration::from_millis(200));
        let webhook = hook("a", None);
        let job = crate::inbox::Job::new(webhook.clone(), 1, receipt(1, 1));
        let now = OffsetDateTime::UNIX_EPOCH;
        let results = bounded("every call to fail", async {
            [
                inbox.push(webhook).await.map(drop),
                inbox.pull(1, LEASE).await.map(drop),
                inbox.ack(&job).await,
                inbox.retry(&job, now, "no").await,
                inbox.give_back(&job, now).await,
                inbox.dead_letter(&job, "no").await,
                inbox.dead_letters(1).await.map(drop),
                inbox.redrive("k").await.map(drop),
                inbox.discard("k").await.map(drop),
                inbox.depth().await.map(drop),
                inbox.migrate().await,
                inbox.purge().await.map(drop),
            ]
        })
        .await;
        for (n, result) in results.into_iter().enumerate() {
            let Err(InboxError::Backend(e)) = result else { panic!("call {n}: {result:?}") };
            assert!(e.to_string().contains("did not answer within 200ms"), "call {n}: {e}");
        }
    }

    /// Two pools on clones of one inbox in one process: a pull capped by its free lanes
    /// leaves due jobs, and the other pool's wait returns at once for them instead of
    /// taking them for taken (it slept until its deadline).
    #[tokio::test]
    async fn a_wait_after_a_capped_pull_returns_for_the_jobs_it_left() {
        let Some(url) = test_url() else { return };
        let schema = unique("capped_pull");
        let clock = ManualClock::at_unix(1_700_000_000);
        let one = inbox(&url, &schema).await.clock(clock.clone());
        one.migrate().await.unwrap();
        // The wake-up connection up (a first wait ends once it is), and the pushes'
        // notifications in (a wait after the pull ends at the first of them, or when the
        // leases run out a second later): the jobs are then due again with no notification
        // (their leases ran out), so that only the capped pull's note can tell the waiter.
        tokio::time::timeout(Duration::from_secs(20), one.wait(Duration::from_secs(600))).await.unwrap();
        for key in ["a", "b", "c"] {
            one.push(hook(key, None)).await.unwrap();
        }
        assert_eq!(one.pull(3, Duration::from_secs(1)).await.unwrap().len(), 3);
        tokio::time::timeout(Duration::from_secs(20), one.wait(Duration::from_secs(600))).await.unwrap();
        clock.advance(Duration::from_secs(2));
        let other = one.clone();
        assert_eq!(one.pull(1, Duration::from_secs(60)).await.unwrap().len(), 1);
        tokio::time::timeout(Duration::from_secs(20), other.wait(Duration::from_secs(600)))
            .await
            .expect("two jobs are due: the wait returns at once");
        assert_eq!(other.pull(10, Duration::from_secs(60)).await.unwrap().len(), 2);
    }

    /// A pull takes waiting jobs due and jobs whose lease ran out together, in the order
    /// they were due (a waiting job by its due time, a leased one by its lease end), push
    /// order among equal times, a capped pull the first of them; with `inbox_fresh` used
    /// or not (`pull_fresh`, `pull`).
    #[tokio::test]
    async fn due_and_expired_jobs_are_pulled_together_in_due_order() {
        let Some(url) = test_url() else { return };
        for with_fresh in [true, false] {
            let clock = ManualClock::at_unix(1_700_000_000);
            let inbox = inbox(&url, &unique("dueorder")).await.clock(clock.clone());
            inbox.migrate().await.unwrap();
            inbox.fresh.send_replace(with_fresh);
            for id in ["a", "b", "c", "d"] {
                inbox.push(hook(id, None)).await.unwrap();
                clock.advance(Duration::from_secs(1));
            }
            // a leased until +14, b until +34; c due at +2, d at +3.
            assert_eq!(inbox.pull(1, Duration::from_secs(10)).await.unwrap().len(), 1);
            assert_eq!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().len(), 1);
            clock.advance(Duration::from_secs(16));
            inbox.push(hook("e", None)).await.unwrap(); // due at +20
            inbox.push(hook("f", None)).await.unwrap(); // due at +20, pushed after e
            clock.advance(Duration::from_secs(20));
            let mut pulled: Vec<Vec<(String, u32)>> = Vec::new();
            for _ in 0..4 {
                let jobs = inbox.pull(2, LEASE).await.unwrap();
                pulled
                    .push(jobs.iter().map(|j| (j.webhook().id().unwrap().to_owned(), j.attempt())).collect());
            }
            let want: Vec<Vec<(String, u32)>> = vec![
                vec![("c".into(), 1), ("d".into(), 1)],
                vec![("a".into(), 2), ("e".into(), 1)],
                vec![("f".into(), 1), ("b".into(), 2)],
                vec![],
            ];
            assert_eq!(pulled, want, "with inbox_fresh: {with_fresh}");
        }
    }

    /// The URL of the test database, if `HOOKGUARD_TEST_POSTGRES_URL` gives one.
    fn test_url() -> Option<String> {
        crate::inbox::service_url("HOOKGUARD_TEST_POSTGRES_URL")
    }

    /// A schema name no other test (in this run or an earlier one) uses.
    fn unique(what: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        format!(
            "hg_unit_{what}_{}_{}_{:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            nanos % 0xffff_ffff
        )
    }

    async fn inbox(url: &str, schema: &str) -> PostgresInbox {
        PostgresInbox::connect(url)
            .await
            .expect("HOOKGUARD_TEST_POSTGRES_URL is set: PostgreSQL must answer")
            .schema(schema)
            .clock(ManualClock::at_unix(1_700_000_000))
    }

    async fn admin(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// On a table the migration finds too large to index in its own time limit,
    /// `inbox_fresh` is built concurrently after it, by one replica while the others look
    /// again later (none waits in the builders' lock, which would deadlock the build), and
    /// pulls use it once it is valid; an invalid one (a failed build) is dropped and built
    /// again. Until then, a job pushed before the clock stepped back waits for its time;
    /// after, it is due at once.
    #[tokio::test]
    async fn a_large_table_gets_its_fresh_index_built_concurrently() {
        let Some(url) = test_url() else { return };
        let schema = unique("fresh_index");
        let first = inbox(&url, &schema).await.clock(ManualClock::at_unix(1_700_000_100));
        first.migrate().await.unwrap();
        assert!(*first.fresh.borrow(), "built by the migration on an empty table");
        first.push(hook("ahead", None)).await.unwrap();
        let admin_of = admin;
        let admin = admin_of(&url).await;
        let state = async || -> Option<bool> {
            admin
                .query_one(&format!("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('\"{schema}\".inbox_fresh')"), &[])
                .await
                .ok()
                .map(|row| row.get(0))
        };
        admin.batch_execute(&format!("DROP INDEX \"{schema}\".inbox_fresh")).await.unwrap();
        assert_eq!(state().await, None);

        // "Large": every table is, for this inbox's migration.
        let large = |clock: ManualClock| {
            let mut inbox =
                PostgresInbox { fresh: Arc::new(tokio::sync::watch::Sender::new(false)), ..first.clone() }
                    .clock(clock);
            inbox.sql = Arc::new(Sql::building_fresh_inline_below(&schema, 0));
            inbox.migrated = Arc::new(OnceCell::new());
            inbox
        };
        // The build waits for a session that writes to the table: held off until it ends.
        let writer = admin_of(&url).await;
        writer
            .batch_execute(&format!("BEGIN; LOCK TABLE \"{schema}\".inbox IN ROW EXCLUSIVE MODE"))
            .await
            .unwrap();
        let behind = ManualClock::at_unix(1_700_000_000);
        let second = large(behind.clone());
        let mut built = second.fresh.subscribe();
        second.migrate().await.unwrap();
        let building = format!(
            "SELECT count(*) FROM pg_stat_progress_create_index WHERE relid = to_regclass('\"{schema}\".inbox')"
        );
        bounded("the build to start", async {
            while admin.query_one(&building, &[]).await.unwrap().get::<_, i64>(0) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        // Until it is valid, the pull is the one before: a job ahead of the clock waits.
        assert!(!*second.fresh.borrow());
        assert!(second.pull(10, LEASE).await.unwrap().is_empty(), "not yet due by this clock");
        // Another replica meanwhile does not wait in the builders' lock (its session's
        // snapshot would be waited for by the build: a deadlock, the build aborted).
        let third = large(behind.clone());
        let mut third_built = third.fresh.subscribe();
        let slow = Duration::from_secs(60);
        let ((), logs) = crate::inbox::logged(async {
            third.migrate().await.unwrap();
            writer.batch_execute("COMMIT").await.unwrap();
            tokio::time::timeout(slow, built.wait_for(|fresh| *fresh)).await.expect("built").unwrap();
            tokio::time::timeout(slow, third_built.wait_for(|fresh| *fresh))
                .await
                .expect("found built")
                .unwrap();
        })
        .await;
        assert!(!logs.contains("could not be built"), "built at the first try: {logs}");
        assert_eq!(state().await, Some(true));
        let jobs = second.pull(10, LEASE).await.unwrap();
        assert_eq!(jobs.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["ahead"]);

        // An invalid index (what a failed or cut-short build leaves: here a unique one that
        // meets two equal times) is dropped and built again.
        admin.batch_execute(&format!("DROP INDEX \"{schema}\".inbox_fresh")).await.unwrap();
        for id in ["x", "y"] {
            first.push(hook(id, None)).await.unwrap();
        }
        let failed = admin
            .batch_execute(&format!(
                "CREATE UNIQUE INDEX CONCURRENTLY inbox_fresh ON \"{schema}\".inbox (next_attempt_at)"
            ))
            .await;
        assert!(failed.is_err(), "two rows have one time");
        assert_eq!(state().await, Some(false));
        let fourth = large(behind);
        let mut built = fourth.fresh.subscribe();
        fourth.migrate().await.unwrap();
        assert!(!*fourth.fresh.borrow(), "not used while invalid");
        tokio::time::timeout(slow, built.wait_for(|fresh| *fresh)).await.expect("rebuilt").unwrap();
        assert_eq!(state().await, Some(true));
    }

    /// A handler error holding NUL (which `text` refuses) no longer fails the retry and the
    /// dead-letter move (it left the job leased, run again every lease period, for ever).
    #[tokio::test]
    async fn errors_holding_nul_retry_and_dead_letter_the_job() {
        let Some(url) = test_url() else { return };
        let inbox = inbox(&url, &unique("nul_error")).await;
        inbox.push(hook("a", None)).await.unwrap();
        let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
        inbox.retry(&job, OffsetDateTime::UNIX_EPOCH, "bad byte \0 in a message").await.expect("retried");
        let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
        assert_eq!(job.attempt(), 2, "due again at once");
        inbox.dead_letter(&job, "dead \0 end").await.expect("dead-lettered");
        let dead = inbox.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].error, "dead \u{FFFD} end");
        assert!(inbox.pull(1, LEASE).await.unwrap().is_empty(), "not leased any more");
    }

    /// Ids and event types holding NUL (from a signed JSON body) are kept (every push of
    /// them used to fail: 503 for ever), never taken for one another or for ids that
    /// look like their escaped form, and come back as they were pushed.
    #[tokio::test]
    async fn ids_and_events_holding_nul_are_kept_apart_and_come_back_as_pushed() {
        let Some(url) = test_url() else { return };
        let inbox = inbox(&url, &unique("nul_key")).await;
        let ids = ["a\0b", "a\u{1a}0b", "a\u{1a}\u{1a}b", "a\u{1a}b", "a0b", r"a\u0000b", "\0", "\0\0"];
        let pushed: Vec<Webhook> = ids.iter().map(|id| hook(id, Some("e\0v\u{1a}"))).collect();
        for webhook in &pushed {
            assert_eq!(inbox.push(webhook.clone()).await.unwrap(), Pushed::Accepted, "{:?}", webhook.id());
        }
        for webhook in &pushed {
            assert_eq!(inbox.push(webhook.clone()).await.unwrap(), Pushed::Duplicate, "{:?}", webhook.id());
        }
        let jobs = inbox.pull(100, LEASE).await.unwrap();
        assert_eq!(jobs.len(), ids.len());
        for (job, webhook) in jobs.iter().zip(&pushed) {
            assert_eq!(job.webhook(), webhook, "in push order, as pushed");
            assert_eq!(job.webhook().event(), Some("e\0v\u{1a}"));
        }
        inbox.dead_letter(&jobs[0], "no").await.unwrap();
        inbox.dead_letter(&jobs[6], "no").await.unwrap();
        for job in jobs[1..6].iter().chain(&jobs[7..]) {
            inbox.ack(job).await.unwrap();
        }
        let dead: Vec<String> =
            inbox.dead_letters(10).await.unwrap().iter().map(|d| d.webhook.key().to_owned()).collect();
        assert_eq!(dead, ["test:a\0b", "test:\0"]);
        assert!(inbox.redrive("test:a\0b").await.unwrap());
        assert!(inbox.discard("test:\0").await.unwrap());
        assert!(!inbox.discard("test:\u{1a}0").await.unwrap(), "another key");
        let again = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(again.len(), 1, "the re-driven one");
        assert_eq!(again[0].webhook(), &pushed[0]);
        for job in &again {
            inbox.ack(job).await.unwrap();
        }
        assert_eq!(inbox.depth().await.unwrap(), 0);
        assert_eq!(inbox.push(hook("\0", None)).await.unwrap(), Pushed::Duplicate, "kept as done");
    }

    /// Runs `sql` on a connection of its own and leaves its transaction open (holding its
    /// locks) until the client is dropped.
    async fn holding(url: &str, sql: &str) -> tokio_postgres::Client {
        let client = admin(url).await;
        client.batch_execute(&format!("BEGIN; {sql}")).await.unwrap();
        client
    }

    /// A new inbox object migrating a schema that is already there takes no lock on the
    /// table: a long reader and a long writer hold it up in nothing (it used to drop and
    /// create the trigger, and every push and pull queued behind it).
    #[tokio::test]
    async fn migrating_again_waits_for_no_reader_and_no_writer() {
        let Some(url) = test_url() else { return };
        let schema = unique("relock");
        let first = inbox(&url, &schema).await;
        first.migrate().await.unwrap();
        let _reader = holding(&url, &format!("SELECT count(*) FROM \"{schema}\".inbox")).await;
        let _writer = holding(&url, &format!("LOCK TABLE \"{schema}\".inbox IN ROW EXCLUSIVE MODE")).await;
        let replica = inbox(&url, &schema).await;
        bounded("a migration with nothing to do", replica.migrate()).await.unwrap();
        assert_eq!(bounded("a push", replica.push(hook("a", None))).await.unwrap(), Pushed::Accepted);
    }

    /// A migration that must create something and wait for a lock to do so gives up after
    /// its lock timeout with a clear error, instead of making every push and pull queue
    /// behind it; the next call tries again.
    #[tokio::test]
    async fn a_migration_that_must_wait_for_a_lock_fails_clearly_and_later_succeeds() {
        let Some(url) = test_url() else { return };
        let schema = unique("lockwait");
        let first = inbox(&url, &schema).await;
        first.migrate().await.unwrap();
        let admin = admin(&url).await;
        admin.batch_execute(&format!("DROP INDEX \"{schema}\".inbox_done")).await.unwrap();
        let writer = holding(&url, &format!("LOCK TABLE \"{schema}\".inbox IN ROW EXCLUSIVE MODE")).await;
        let replica = inbox(&url, &schema).await.operation_timeout(Duration::from_secs(1));
        let failed = bounded("the migration to give up", replica.migrate()).await;
        let Err(InboxError::Backend(e)) = failed else { panic!("{failed:?}") };
        assert!(e.to_string().contains("lock timeout") && e.to_string().contains(&schema), "{e}");
        assert!(e.to_string().contains("waited 500ms"), "half the operation timeout: {e}");
        drop(writer);
        bounded("the migration", replica.migrate()).await.unwrap();
        let index: Option<String> = admin
            .query_one(&format!("SELECT to_regclass('\"{schema}\".inbox_done')::text"), &[])
            .await
            .unwrap()
            .get(0);
        assert!(index.is_some(), "the missing index was created");
    }

    async fn damage(admin: &tokio_postgres::Client, schema: &str, key: &str) {
        let changed = admin
            .execute(
                &format!("UPDATE \"{schema}\".inbox SET record = '{{\"nope\":1}}'::jsonb WHERE key = $1"),
                &[&key],
            )
            .await
            .unwrap();
        assert_eq!(changed, 1);
    }

    /// A damaged row that cannot be set aside (here a trigger refuses it) is logged with its
    /// key and left leased; the rows picked with it are handed out all the same (the
    /// pull used to fail, abandoning their leases).
    #[tokio::test]
    async fn a_damaged_row_that_cannot_be_dead_lettered_holds_up_no_other() {
        let Some(url) = test_url() else { return };
        let schema = unique("unburied");
        let inbox = inbox(&url, &schema).await;
        for id in ["a", "b", "c"] {
            inbox.push(hook(id, None)).await.unwrap();
        }
        let admin = admin(&url).await;
        damage(&admin, &schema, "test:b").await;
        admin
            .batch_execute(&format!(
                "CREATE FUNCTION \"{schema}\".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN RAISE EXCEPTION 'refused'; END $$;
                 CREATE TRIGGER refuse BEFORE UPDATE ON \"{schema}\".inbox FOR EACH ROW
                     WHEN (NEW.status = 'dead') EXECUTE FUNCTION \"{schema}\".refuse();"
            ))
            .await
            .unwrap();
        let ((jobs, counted), logs) =
            crate::inbox::logged(crate::inbox::dead_lettered(inbox.pull(10, LEASE))).await;
        let ids: Vec<_> =
            jobs.expect("the pull goes on").iter().map(|j| j.webhook().id().unwrap().to_owned()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert!(counted.is_empty(), "not a dead letter: not counted");
        assert!(logs.contains("could not be dead-lettered") && logs.contains("key=\"test:b\""), "{logs}");
        let status: String = admin
            .query_one(&format!("SELECT status FROM \"{schema}\".inbox WHERE key = 'test:b'"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(status, "leased", "taken again when its lease runs out");
    }

    /// An unreadable dead letter, left out of the list, is logged with its key (not secret),
    /// which `discard` takes.
    #[tokio::test]
    async fn an_unreadable_dead_letter_is_logged_with_its_key() {
        let Some(url) = test_url() else { return };
        let schema = unique("unlisted");
        let inbox = inbox(&url, &schema).await;
        for id in ["a", "b\0"] {
            inbox.push(hook(id, None)).await.unwrap();
        }
        let admin = admin(&url).await;
        let stored_key = stored("test:b\0").into_owned();
        damage(&admin, &schema, &stored_key).await;
        let (jobs, counted) = crate::inbox::dead_lettered(inbox.pull(10, LEASE)).await;
        let jobs = jobs.unwrap();
        assert_eq!(jobs.len(), 1, "b is set aside");
        assert_eq!(counted, [("test".to_owned(), 1)], "counted as a dead letter, under its endpoint");
        inbox.dead_letter(&jobs[0], "no").await.unwrap();
        let (listed, logs) = crate::inbox::logged(inbox.dead_letters(10)).await;
        assert_eq!(listed.unwrap().len(), 1);
        assert!(
            logs.contains("unreadable PostgreSQL dead letter") && logs.contains(r#"key="test:b\0""#),
            "{logs}"
        );
        assert!(inbox.discard("test:b\0").await.unwrap(), "the logged key discards it");
    }

    /// A pool of one connection to the test database, of the caller's (no statement
    /// timeout of the inbox's).
    fn pool_of_one(url: &str) -> deadpool_postgres::Pool {
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.to_owned());
        cfg.pool = Some(deadpool_postgres::PoolConfig::new(1));
        cfg.create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls).unwrap()
    }

    /// How many sessions wait for a lock on `table`.
    async fn lock_waiters(admin: &tokio_postgres::Client, table: &str) -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE relation = $1::text::regclass AND NOT granted",
                &[&table],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// A call that timed out while its statement waited on the server (here for a lock held
    /// elsewhere) has that statement cancelled, and its connection is given back once it
    /// answers again: the next call gets a connection at once, not one whose statement is
    /// still queued (it was given back to the pool busy, and every call after it waited
    /// behind the stalled statement, timing out one after the other while the lock was
    /// held).
    #[tokio::test]
    async fn a_call_that_timed_out_leaves_no_busy_connection_in_the_pool() {
        let Some(url) = test_url() else { return };
        let (stuck_schema, free_schema) = (unique("stuck"), unique("free"));
        let pool = pool_of_one(&url);
        // Migrated with room (a loaded machine may take longer than the short timeout to
        // make a schema), then given the short timeout the test is about.
        let stuck = PostgresInbox::from_pool(pool.clone()).schema(&stuck_schema).operation_timeout(ROOMY);
        let free = PostgresInbox::from_pool(pool.clone()).schema(&free_schema).operation_timeout(ROOMY);
        stuck.migrate().await.unwrap();
        free.migrate().await.unwrap();
        let stuck = stuck.operation_timeout(Duration::from_millis(300));
        let free = free.operation_timeout(Duration::from_secs(2));
        let table = format!("\"{stuck_schema}\".inbox");
        let lock = holding(&url, &format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).await;
        let failed = bounded("the push to time out", stuck.push(hook("a", None))).await;
        let Err(InboxError::Backend(e)) = failed else { panic!("{failed:?}") };
        assert!(e.to_string().contains("did not answer within 300ms"), "{e}");
        assert_eq!(
            bounded("a call on the pool of one", free.depth()).await.expect("a fresh connection"),
            0,
            "not queued behind the stalled statement"
        );
        let admin = admin(&url).await;
        bounded("the stalled statement to be cancelled", async {
            while lock_waiters(&admin, &table).await > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        drop(lock);
        let stuck = stuck.operation_timeout(ROOMY);
        assert_eq!(bounded("a push", stuck.push(hook("a", None))).await.unwrap(), Pushed::Accepted);
        assert_eq!(pool.status().size, 1, "one connection");
    }

    /// An operation timeout no loaded machine reaches, for what a test does not time.
    const ROOMY: Duration = Duration::from_secs(10);

    /// A cancel that does not get through (a pooler that does not pass it on) leaves the
    /// abandoned call's connection holding its slot until its statement ends: the server's
    /// sessions stay within the pool's size (a connection opened in its place each time
    /// would add one session per timed-out call while the lock is held).
    #[tokio::test]
    async fn an_abandoned_connection_holds_its_slot_until_it_answers() {
        let Some(url) = test_url() else { return };
        let (stuck_schema, free_schema) = (unique("held"), unique("heldfree"));
        let pool = pool_of_one(&url);
        let stuck = PostgresInbox::from_pool(pool.clone()).schema(&stuck_schema).operation_timeout(ROOMY);
        let free = PostgresInbox::from_pool(pool.clone()).schema(&free_schema).operation_timeout(ROOMY);
        stuck.migrate().await.unwrap();
        free.migrate().await.unwrap();
        let mut stuck = stuck.operation_timeout(Duration::from_millis(300));
        let free = free.operation_timeout(Duration::from_millis(300));
        // A cancel request that a pooler accepts and never passes on.
        stuck.cancel = std::sync::Arc::new(|_token| Box::pin(async { Ok(()) }));
        let table = format!("\"{stuck_schema}\".inbox");
        let lock = holding(&url, &format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).await;
        let failed = bounded("the push to time out", stuck.push(hook("a", None))).await;
        assert!(matches!(failed, Err(InboxError::Backend(_))), "{failed:?}");
        let admin = admin(&url).await;
        for _ in 0..3 {
            let other = bounded("a call to time out", free.depth()).await;
            assert!(other.is_err(), "no second session while the abandoned statement runs: {other:?}");
        }
        assert_eq!(lock_waiters(&admin, &table).await, 1, "one session waits on the lock");
        drop(lock);
        let (stuck, free) = (stuck.operation_timeout(ROOMY), free.operation_timeout(ROOMY));
        assert_eq!(bounded("a push", stuck.push(hook("a", None))).await.unwrap(), Pushed::Accepted);
        assert_eq!(bounded("a depth", free.depth()).await.unwrap(), 0);
        assert_eq!(pool.status().size, 1, "the same connection, given back once it answered");
    }

    /// PgBouncer's refusals of a startup parameter are recognised (its connections are then
    /// opened without `statement_timeout`); a server's other refusals are not.
    #[test]
    fn a_pooler_refusing_startup_options_is_recognised() {
        assert!(super::refuses_startup_options("db error: FATAL: unsupported startup parameter: options"));
        assert!(super::refuses_startup_options(
            "db error: FATAL: unsupported startup parameter in options: statement_timeout"
        ));
        assert!(!super::refuses_startup_options("db error: FATAL: password authentication failed"));
        assert!(!super::refuses_startup_options("db error: FATAL: database \"x\" does not exist"));
    }

    /// The connections of the pool made by `connect` end a statement on the server a second
    /// after the longest operation timeout of the inboxes sharing it: should a cancel
    /// request not get through, no statement runs on for ever.
    #[tokio::test]
    async fn its_own_pool_ends_statements_a_little_after_the_operation_timeout() {
        let Some(url) = test_url() else { return };
        async fn setting(inbox: &PostgresInbox) -> String {
            let client = inbox.pool.get().await.unwrap();
            client
                .query_one("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'", &[])
                .await
                .unwrap()
                .get(0)
        }
        let inbox = PostgresInbox::connect(&url).await.unwrap();
        assert_eq!(setting(&inbox).await, "6000", "the default operation timeout, 5 s, and 1 s");
        let longer = inbox.clone().operation_timeout(Duration::from_secs(20));
        assert_eq!(setting(&longer).await, "21000", "the connection opened before is closed");
        let shorter = inbox.clone().operation_timeout(Duration::from_secs(2));
        assert_eq!(setting(&shorter).await, "21000", "the longest of the inboxes sharing the pool");
        let short = PostgresInbox::connect(&url).await.unwrap().operation_timeout(Duration::from_millis(200));
        assert_eq!(setting(&short).await, "6000", "the default's at least");
        let huge = PostgresInbox::connect(&url).await.unwrap().operation_timeout(Duration::MAX);
        assert_eq!(setting(&huge).await, i32::MAX.to_string(), "PostgreSQL's largest");
        let separator = if url.contains('?') { '&' } else { '?' };
        let own = PostgresInbox::connect(&format!("{url}{separator}options=-c%20statement_timeout%3D1234"))
            .await
            .unwrap();
        assert_eq!(setting(&own).await, "1234", "the URL's own");
        let other = PostgresInbox::connect(&format!("{url}{separator}options=-c%20lock_timeout%3D777"))
            .await
            .unwrap();
        assert_eq!(setting(&other).await, "6000", "beside the URL's other options");
        let client = other.pool.get().await.unwrap();
        let lock: String = client.query_one("SHOW lock_timeout", &[]).await.unwrap().get(0);
        assert_eq!(lock, "777ms");
    }

    /// The connections of the pool made by `connect` run their transactions read committed
    /// (what pulls' `SKIP LOCKED` and pushes' `ON CONFLICT` are made for), whatever the
    /// URL's `options` (or the database's or role's default) say, beside the URL's other
    /// options; and the inbox works on them.
    #[tokio::test]
    async fn its_own_pool_runs_read_committed_whatever_the_url_says() {
        let Some(url) = test_url() else { return };
        let separator = if url.contains('?') { '&' } else { '?' };
        let options = "-c%20default_transaction_isolation%3Dserializable%20-c%20lock_timeout%3D777";
        let inbox = PostgresInbox::connect(&format!("{url}{separator}options={options}"))
            .await
            .unwrap()
            .schema(&unique("isolation"))
            .clock(ManualClock::at_unix(1_700_000_000));
        {
            let client = inbox.pool.get().await.unwrap();
            for (name, want) in [
                ("transaction_isolation", "read committed"),
                ("default_transaction_isolation", "read committed"),
                ("lock_timeout", "777ms"),
                ("statement_timeout", "6s"),
            ] {
                let shown: String = client.query_one(&format!("SHOW {name}"), &[]).await.unwrap().get(0);
                assert_eq!(shown, want, "{name}");
            }
        }
        assert_eq!(inbox.push(hook("a", None)).await.unwrap(), Pushed::Accepted);
        assert_eq!(inbox.push(hook("a", None)).await.unwrap(), Pushed::Duplicate);
        assert_eq!(inbox.pull(10, LEASE).await.unwrap().len(), 1);
    }

    /// Dead letters are read a page at a time (here 2), each page after where the one before
    /// ended: all of them, in order (failure time, then push order), an unreadable one left
    /// out and taking no place among the limit, those without a failure time (none of this
    /// library's making) last.
    #[tokio::test]
    async fn dead_letters_are_listed_page_by_page_in_order() {
        let Some(url) = test_url() else { return };
        let schema = unique("deadpages");
        let clock = ManualClock::at_unix(1_700_000_000);
        let mut inbox = inbox(&url, &schema).await.clock(clock.clone());
        inbox.dead_page = 2;
        let ids = ["a", "b", "c", "d", "e", "f", "g"];
        for id in ids {
            inbox.push(hook(id, None)).await.unwrap();
        }
        let jobs = inbox.pull(10, LEASE).await.unwrap();
        // Failure times: g, then a b c (one time), then f e d (one time, so push order).
        inbox.dead_letter(&jobs[6], "no").await.unwrap();
        clock.advance(Duration::from_secs(1));
        for job in &jobs[..3] {
            inbox.dead_letter(job, "no").await.unwrap();
        }
        clock.advance(Duration::from_secs(1));
        for job in jobs[3..6].iter().rev() {
            inbox.dead_letter(job, "no").await.unwrap();
        }
        let listed = |dead: Vec<crate::inbox::DeadLetter>| {
            dead.iter().map(|d| d.webhook.id().unwrap().to_owned()).collect::<Vec<_>>()
        };
        let all = ["g", "a", "b", "c", "d", "e", "f"];
        assert_eq!(listed(inbox.dead_letters(usize::MAX).await.unwrap()), all);
        for n in 0..=all.len() + 1 {
            assert_eq!(listed(inbox.dead_letters(n).await.unwrap()), all[..n.min(all.len())], "{n}");
        }
        let admin = admin(&url).await;
        damage(&admin, &schema, "test:b").await;
        admin
            .execute(&format!("UPDATE \"{schema}\".inbox SET failed_at = NULL WHERE key = 'test:a'"), &[])
            .await
            .unwrap();
        assert_eq!(listed(inbox.dead_letters(usize::MAX).await.unwrap()), ["g", "c", "d", "e", "f", "a"]);
        assert_eq!(listed(inbox.dead_letters(3).await.unwrap()), ["g", "c", "d"], "b takes no place");
        assert_eq!(listed(inbox.dead_letters(6).await.unwrap()), ["g", "c", "d", "e", "f", "a"]);
    }

    /// How many done rows the table holds.
    async fn done_rows(admin: &tokio_postgres::Client, schema: &str) -> i64 {
        admin
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".inbox WHERE status = 'done'"), &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Pushes, pulls and acks `n` webhooks.
    async fn finished(inbox: &PostgresInbox, n: usize) {
        for i in 0..n {
            inbox.push(hook(&format!("done-{i}"), None)).await.unwrap();
        }
        for job in inbox.pull(n, LEASE).await.unwrap() {
            inbox.ack(&job).await.unwrap();
        }
    }

    /// Pulls delete done rows past the retention a batch at a time (here 2 rows), and the
    /// pull after a full batch deletes the next one (not a minute later); `purge` deletes
    /// them all, a batch per statement.
    #[tokio::test]
    async fn done_rows_are_purged_a_batch_at_a_time() {
        let Some(url) = test_url() else { return };
        let schema = unique("batches");
        let clock = ManualClock::at_unix(1_700_000_000);
        let mut inbox = inbox(&url, &schema).await.clock(clock.clone()).retention(Duration::from_secs(60));
        inbox.purge_batch = 2;
        finished(&inbox, 5).await;
        let admin = admin(&url).await;
        assert_eq!(done_rows(&admin, &schema).await, 5, "within the retention");
        clock.advance(Duration::from_secs(61));
        for left in [3, 1, 0, 0] {
            assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
            assert_eq!(done_rows(&admin, &schema).await, left);
        }
        finished(&inbox, 5).await;
        clock.advance(Duration::from_secs(61));
        assert_eq!(inbox.purge().await.unwrap(), 5, "all of them");
        assert_eq!(done_rows(&admin, &schema).await, 0);
    }

    /// Schemas cloned from one inbox (tenants) each purge their own finished keys once a
    /// minute: a pull of one does not put off the purge of the other (they shared one
    /// timer, and whichever pulled first in a minute was the only one purged).
    #[tokio::test]
    async fn schemas_cloned_from_one_inbox_purge_on_timers_of_their_own() {
        let Some(url) = test_url() else { return };
        let clock = ManualClock::at_unix(1_700_000_000);
        let base = PostgresInbox::connect(&url)
            .await
            .expect("HOOKGUARD_TEST_POSTGRES_URL is set: PostgreSQL must answer")
            .clock(clock.clone())
            .retention(Duration::from_secs(60));
        let (a_schema, b_schema) = (unique("tenant_a"), unique("tenant_b"));
        let (a, b) = (base.clone().schema(&a_schema), base.clone().schema(&b_schema));
        finished(&a, 2).await;
        finished(&b, 2).await;
        let admin = admin(&url).await;
        clock.advance(Duration::from_secs(61));
        for (inbox, schema) in [(&a, &a_schema), (&b, &b_schema)] {
            assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
            assert_eq!(done_rows(&admin, schema).await, 0, "{schema}: purged by its own pull");
        }
    }

    /// A clock stepped back behind the last purge (a host started with its clock far
    /// ahead, then set right) does not put off purging until it is back there: the pull
    /// purges, and a minute later by the clock it purges again.
    #[tokio::test]
    async fn a_clock_stepped_back_does_not_put_off_purging() {
        let Some(url) = test_url() else { return };
        let schema = unique("purgeback");
        let clock = ManualClock::at_unix(1_800_000_000);
        let inbox = inbox(&url, &schema).await.clock(clock.clone()).retention(Duration::from_secs(60));
        assert!(inbox.pull(1, LEASE).await.unwrap().is_empty(), "purged by a clock years ahead");
        clock.set_unix(1_700_000_000);
        finished(&inbox, 2).await;
        let admin = admin(&url).await;
        clock.advance(Duration::from_secs(61));
        assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
        assert_eq!(done_rows(&admin, &schema).await, 0, "purged by the clock set right");
    }

    /// A purge that fails, or takes longer than half the operation timeout, fails no pull
    /// (its error failed the pull, and a long one made it time out): the pull hands out its
    /// jobs, and the failure is logged.
    #[tokio::test]
    async fn a_purge_that_fails_or_takes_long_fails_no_pull() {
        let Some(url) = test_url() else { return };
        for (what, body) in
            [("fails", "RAISE EXCEPTION 'no deleting';"), ("takes long", "PERFORM pg_sleep(30); RETURN OLD;")]
        {
            let schema = unique("purgefail");
            let clock = ManualClock::at_unix(1_700_000_000);
            let inbox = inbox(&url, &schema)
                .await
                .clock(clock.clone())
                .retention(Duration::from_secs(60))
                .operation_timeout(Duration::from_secs(1));
            finished(&inbox, 1).await;
            let admin = admin(&url).await;
            admin
                .batch_execute(&format!(
                    "CREATE FUNCTION \"{schema}\".slow() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN {body} END $$;
                     CREATE TRIGGER slow BEFORE DELETE ON \"{schema}\".inbox
                         FOR EACH ROW EXECUTE FUNCTION \"{schema}\".slow();"
                ))
                .await
                .unwrap();
            inbox.push(hook("new", None)).await.unwrap();
            clock.advance(Duration::from_secs(61));
            let (jobs, logs) = crate::inbox::logged(inbox.pull(1, LEASE)).await;
            let jobs = jobs.unwrap_or_else(|e| panic!("a purge that {what}: {e}"));
            assert_eq!(jobs.len(), 1, "{what}");
            assert!(logs.contains("purging finished keys"), "{what}: {logs}");
            assert_eq!(done_rows(&admin, &schema).await, 1, "{what}: kept");
        }
    }

    #[test]
    fn channels_are_named_after_the_table_and_fit_postgres_limit() {
        assert_eq!(channel("hookguard"), "hookguard.inbox");
        let longest = "a".repeat(57);
        assert_eq!(channel(&longest), format!("{longest}.inbox"));
        let long = channel(&"a".repeat(63));
        assert!(long.starts_with("hookguard.") && long.len() <= 63, "{long}");
        assert_ne!(long, channel(&format!("{}b", "a".repeat(62))), "different schemas, different channels");
        assert_eq!(quote_ident("hookguard.inbox"), "\"hookguard.inbox\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn only_plain_identifiers_reach_sql() {
        for (name, ok) in [
            ("hookguard", true),
            ("_t1", true),
            ("a\"; drop table x; --", false),
            ("Upper", false),
            ("1abc", false),
            ("", false),
        ] {
            assert_eq!(valid_identifier(name), ok, "{name}");
        }
        assert!(!valid_identifier(&"a".repeat(64)));
    }

    #[tokio::test]
    async fn debug_shows_no_password() {
        let url = "postgres://postgres:pw-never-shown@127.0.0.1:1/test";
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.into());
        let pool = cfg.create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls).unwrap();
        let inbox = super::PostgresInbox::from_pool(pool);
        assert!(format!("{inbox:?}").contains("wakeups: false"));
        let inbox = inbox.wakeups(url.parse().unwrap(), tokio_postgres::NoTls);
        let debug = format!("{inbox:?}");
        assert!(!debug.contains("pw-never-shown") && debug.contains("wakeups: true"), "{debug}");
    }
}
