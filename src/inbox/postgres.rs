//! An inbox in PostgreSQL: one table, rows leased with `FOR UPDATE SKIP LOCKED`.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use deadpool_postgres::{Pool, Runtime};
use time::OffsetDateTime;
use tokio::{sync::OnceCell, time::Instant};
use tokio_postgres::{
    AsyncMessage, Socket,
    tls::{MakeTlsConnect, TlsConnect},
};

use super::{
    BoxFuture, DeadLetter, Inbox, InboxError, Job, Pushed, Webhook,
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

/// Why a `LISTEN` session ended.
type ListenError = Box<dyn std::error::Error + Send + Sync>;

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
/// Pulls lease due rows with `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait
/// on or share a row; a row whose lease ran out is due again. Acked rows stay as `done`
/// (without their body) for the [retention](Self::retention), so a late resend is a
/// duplicate; pulls delete older ones about once a minute (or call
/// [`purge`](Self::purge)).
///
/// Every time (due, lease end, failure, retention) comes from the injected
/// [`clock`](Self::clock) and is passed as a parameter; the SQL never calls `now()`. So
/// replicas sharing a schema compare lease ends by their own clocks: one whose clock runs
/// ahead by *d* takes another's job *d* early. Keep the replicas' clocks in sync (NTP), and
/// choose the worker's [`lease`](crate::worker::Worker::lease) longer than the slowest
/// handler by more than the skew.
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
/// your own pool, with TLS, through [`from_pool`](Self::from_pool).
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
    capacity: usize,
    retention: Duration,
    clock: Arc<dyn Clock>,
    last_purge: Arc<Mutex<Option<OffsetDateTime>>>,
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
    ack: String,
    retry: String,
    give_back: String,
    dead: String,
    dead_list: String,
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
        let valid = valid_identifier(schema);
        // Only a valid identifier is ever put into SQL.
        let s = if valid { schema } else { "invalid" };
        let t = format!("\"{s}\".inbox");
        let channel = channel(s);
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
                CREATE INDEX IF NOT EXISTS inbox_ready ON {t} (next_attempt_at, seq) WHERE status = 'ready';
                CREATE INDEX IF NOT EXISTS inbox_leased ON {t} (lease_until, seq) WHERE status = 'leased';
                CREATE INDEX IF NOT EXISTS inbox_dead ON {t} (failed_at, seq) WHERE status = 'dead';
                CREATE INDEX IF NOT EXISTS inbox_done ON {t} (finished_at) WHERE status = 'done';
                CREATE TABLE IF NOT EXISTS \"{s}\".inbox_kept (shard integer PRIMARY KEY, n bigint NOT NULL);
                INSERT INTO \"{s}\".inbox_kept (shard, n)
                    SELECT 0, count(*) FROM {t} WHERE status <> 'done' ON CONFLICT (shard) DO NOTHING;
                INSERT INTO \"{s}\".inbox_kept (shard, n)
                    SELECT g, 0 FROM generate_series(1, {SHARDS} - 1) g ON CONFLICT (shard) DO NOTHING;
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
                DROP TRIGGER IF EXISTS inbox_count ON {t};
                CREATE TRIGGER inbox_count AFTER INSERT OR UPDATE OF status OR DELETE ON {t}
                    FOR EACH ROW EXECUTE FUNCTION \"{s}\".inbox_count();"
            ),
            push: format!(
                "INSERT INTO {t} (key, endpoint, event, record, body, status, next_attempt_at, received_at)
                 SELECT $1, $2, $3, $4::text::jsonb, $5, 'ready', $6, $7
                 WHERE (SELECT coalesce(sum(n), 0)::bigint FROM \"{s}\".inbox_kept) < $8
                 ON CONFLICT (key) DO NOTHING
                 RETURNING seq"
            ),
            exists: format!("SELECT 1 FROM {t} WHERE key = $1"),
            pull: format!(
                "WITH picked AS (
                    SELECT seq, CASE WHEN status = 'leased' THEN lease_until ELSE next_attempt_at END AS due
                    FROM {t}
                    WHERE (status = 'ready' AND next_attempt_at <= $1) OR (status = 'leased' AND lease_until <= $1)
                    ORDER BY due, seq
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED
                 )
                 UPDATE {t} i SET status = 'leased', attempts = i.attempts + 1, lease_until = $3, lease_token = $4
                 FROM picked WHERE i.seq = picked.seq
                 RETURNING i.record::text, i.body, i.attempts, picked.due, i.seq, i.key"
            ),
            ack: format!(
                "UPDATE {t} SET status = 'done', finished_at = $3, body = ''::bytea, lease_until = NULL, lease_token = NULL
                 WHERE key = $1 AND status = 'leased' AND lease_token = $2"
            ),
            retry: format!(
                "UPDATE {t} SET status = 'ready', next_attempt_at = $3, last_error = $4, lease_until = NULL, lease_token = NULL
                 WHERE key = $1 AND status = 'leased' AND lease_token = $2"
            ),
            give_back: format!(
                "UPDATE {t} SET status = 'ready', next_attempt_at = $3, last_error = $4, lease_until = NULL, lease_token = NULL,
                     attempts = greatest(attempts - 1, 0)
                 WHERE key = $1 AND status = 'leased' AND lease_token = $2"
            ),
            dead: format!(
                "UPDATE {t} SET status = 'dead', last_error = $3, failed_at = $4, lease_until = NULL, lease_token = NULL
                 WHERE key = $1 AND status = 'leased' AND lease_token = $2"
            ),
            dead_list: format!(
                "SELECT record::text, body, attempts, coalesce(last_error, ''), failed_at FROM {t}
                 WHERE status = 'dead' ORDER BY failed_at, seq LIMIT $1"
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
            purge: format!("DELETE FROM {t} WHERE status = 'done' AND finished_at < $1"),
        }
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> InboxError {
    InboxError::Backend(Box::new(e))
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Sends one notification for each burst of committed changes (pokes), at most one every
/// [`NOTIFY_SPACING`], until the task is dropped.
async fn notify_forever(pool: Pool, sql: Arc<Sql>, signal: Arc<Signal>) {
    loop {
        signal.demanded().await;
        let sent = async {
            let client = pool.get().await.map_err(backend)?;
            let stmt = client.prepare_cached(&sql.notify).await.map_err(backend)?;
            client.execute(&stmt, &[&sql.channel]).await.map_err(backend)
        };
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
    /// # Errors
    /// [`InboxError::Backend`] when the URL is invalid or the database cannot be reached.
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
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.to_owned());
        cfg.pool = Some(deadpool_postgres::PoolConfig::new(16));
        let pool = cfg.create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls).map_err(backend)?;
        drop(pool.get().await.map_err(backend)?);
        let config = url.parse::<tokio_postgres::Config>().map_err(backend)?;
        Ok(Self::from_pool(pool).wakeups(config, tokio_postgres::NoTls))
    }

    /// Uses an existing pool (for TLS, other sizes or shared pools). Idle workers poll
    /// until [`wakeups`](Self::wakeups) says how to open the `LISTEN` connection.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookguard::inbox::{Inbox, PostgresInbox};
    /// let mut cfg = deadpool_postgres::Config::new();
    /// cfg.url = Some("postgres://postgres@127.0.0.1/test".into());
    /// cfg.pool = Some(deadpool_postgres::PoolConfig::new(4));
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
            capacity: 100_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            clock: Arc::new(SystemClock),
            last_purge: Arc::default(),
            listen: None,
            listener: Arc::new(Background::new()),
            notifier: Arc::new(Background::new()),
        }
    }

    /// Lets [`wait`](Inbox::wait) hear pushes from every replica: its `LISTEN` connection
    /// (one per inbox, see [Wake-ups](Self#wake-ups)) is opened with `config` and `tls`.
    /// [`connect`](Self::connect) does this with its URL and no TLS; call it after
    /// [`from_pool`](Self::from_pool) with what the pool connects with.
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

    /// Creates the schema, table and indexes if missing. Idempotent and safe to run from
    /// several replicas at once; done on first use anyway.
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the schema name is invalid or the database fails.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let inbox = hookguard::inbox::PostgresInbox::connect("postgres://postgres@127.0.0.1/test").await?;
    /// inbox.migrate().await?;
    /// inbox.clone().migrate().await?; // again: nothing to do
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<(), InboxError> {
        self.migrated
            .get_or_try_init(|| async {
                if !self.sql.valid {
                    return Err(InboxError::Backend(
                        format!("invalid schema name {:?}: use [a-z_][a-z0-9_]*", self.sql.schema).into(),
                    ));
                }
                let mut client = self.pool.get().await.map_err(backend)?;
                let tx = client.transaction().await.map_err(backend)?;
                tx.batch_execute(&self.sql.migrate).await.map_err(backend)?;
                tx.commit().await.map_err(backend)
            })
            .await?;
        Ok(())
    }

    /// Deletes finished keys older than the retention; returns how many.
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the database fails.
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
        let client = self.client().await?;
        // A retention too long for the calendar keeps everything (was: a panic).
        let now = self.clock.now();
        let before = time::Duration::try_from(self.retention)
            .ok()
            .and_then(|retention| now.checked_sub(retention))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let stmt = client.prepare_cached(&self.sql.purge).await.map_err(backend)?;
        client.execute(&stmt, &[&before]).await.map_err(backend)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, InboxError> {
        self.migrate().await?;
        self.pool.get().await.map_err(backend)
    }

    async fn push_now(&self, webhook: Webhook) -> Result<Pushed, InboxError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.push).await.map_err(backend)?;
        let now = self.clock.now();
        let inserted = client
            .query_opt(
                &stmt,
                &[
                    &webhook.key(),
                    &webhook.endpoint(),
                    &webhook.event(),
                    &webhook.to_meta_json(),
                    &webhook.body().as_ref(),
                    &now,
                    &webhook.received_at(),
                    &count(self.capacity),
                ],
            )
            .await
            .map_err(backend)?;
        if inserted.is_some() {
            self.notify();
            return Ok(Pushed::Accepted);
        }
        let stmt = client.prepare_cached(&self.sql.exists).await.map_err(backend)?;
        match client.query_opt(&stmt, &[&webhook.key()]).await.map_err(backend)? {
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
        self.purge_now_and_then(now).await?;
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.pull).await.map_err(backend)?;
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
            let webhook = match Webhook::from_meta_json(record.as_bytes(), Bytes::from(body)) {
                Ok(webhook) => webhook,
                Err(e) => {
                    // A damaged row would fail every pull that picks it (and hold up the
                    // rows picked with it): set it aside as a dead letter, as SQLite does.
                    let key: String = row.try_get(5).map_err(backend)?;
                    tracing::error!(error = %e, "unreadable PostgreSQL inbox row dead-lettered");
                    let stmt = client.prepare_cached(&self.sql.dead).await.map_err(backend)?;
                    client.execute(&stmt, &[&key, &token, &e.to_string(), &now]).await.map_err(backend)?;
                    continue;
                }
            };
            let job = Job::new(webhook, u32::try_from(attempts).unwrap_or(1), token.to_string());
            picked.push((due, seq, job));
        }
        // `RETURNING` has no order: restore the due order the rows were picked in.
        picked.sort_by_key(|(due, seq, _)| (*due, *seq));
        Ok(picked.into_iter().map(|(_, _, job)| job).collect())
    }

    async fn purge_now_and_then(&self, now: OffsetDateTime) -> Result<(), InboxError> {
        let due = {
            let Ok(mut last) = self.last_purge.lock() else { return Ok(()) };
            match *last {
                Some(at) if now - at < PURGE_EVERY => false,
                _ => {
                    *last = Some(now);
                    true
                }
            }
        };
        if due {
            self.purge().await?;
        }
        Ok(())
    }

    /// Runs a lease-ending update; `LeaseLost` unless it changed the leased row.
    async fn release(
        &self,
        sql: &str,
        job: &Job,
        extra: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), InboxError> {
        let Ok(token) = job.receipt().parse::<i64>() else { return Err(InboxError::LeaseLost) };
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(backend)?;
        let key = job.webhook().key();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&key, &token];
        params.extend_from_slice(extra);
        match client.execute(&stmt, &params).await.map_err(backend)? {
            0 => Err(InboxError::LeaseLost),
            _ => Ok(()),
        }
    }

    async fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, InboxError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.dead_list).await.map_err(backend)?;
        let rows = client.query(&stmt, &[&count(limit)]).await.map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let record: String = row.try_get(0).map_err(backend)?;
            let body: Vec<u8> = row.try_get(1).map_err(backend)?;
            let attempts: i32 = row.try_get(2).map_err(backend)?;
            let error: String = row.try_get(3).map_err(backend)?;
            let failed_at: Option<OffsetDateTime> = row.try_get(4).map_err(backend)?;
            let webhook = match Webhook::from_meta_json(record.as_bytes(), Bytes::from(body)) {
                Ok(webhook) => webhook,
                // One damaged row must not hide the others (see `Inbox::dead_letters`).
                Err(e) => {
                    tracing::warn!(error = %e, "an unreadable PostgreSQL dead letter is left out of the list");
                    continue;
                }
            };
            out.push(DeadLetter {
                webhook,
                attempts: u32::try_from(attempts).unwrap_or(0),
                error,
                failed_at: failed_at.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            });
        }
        Ok(out)
    }

    async fn redrive_now(&self, key: &str) -> Result<bool, InboxError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.redrive).await.map_err(backend)?;
        let now = self.clock.now();
        let redriven = client.execute(&stmt, &[&key, &now]).await.map_err(backend)? > 0;
        if redriven {
            self.notify();
        }
        Ok(redriven)
    }

    async fn discard_now(&self, key: &str) -> Result<bool, InboxError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.discard).await.map_err(backend)?;
        let now = self.clock.now();
        Ok(client.execute(&stmt, &[&key, &now]).await.map_err(backend)? > 0)
    }

    /// Has the notifier tell every listening replica that a change committed.
    fn notify(&self) {
        if self.sql.valid {
            let (pool, sql) = (&self.pool, &self.sql);
            self.notifier.start(|signal| notify_forever(pool.clone(), Arc::clone(sql), signal)).poke();
        }
    }

    /// The earliest due time or lease end after `after`.
    async fn next_due(&self, after: OffsetDateTime) -> Result<Option<OffsetDateTime>, InboxError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.due).await.map_err(backend)?;
        let row = client.query_one(&stmt, &[&after]).await.map_err(backend)?;
        let ready: Option<OffsetDateTime> = row.try_get(0).map_err(backend)?;
        let lease_end: Option<OffsetDateTime> = row.try_get(1).map_err(backend)?;
        Ok(ready.into_iter().chain(lease_end).min())
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
        wake::until_due_or_signalled(deadline, self.next_due(after), &*self.clock, &mut wakes).await;
    }

    async fn depth_now(&self) -> Result<usize, InboxError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.depth).await.map_err(backend)?;
        let n: i64 = client.query_one(&stmt, &[]).await.map_err(backend)?.try_get(0).map_err(backend)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

impl Inbox for PostgresInbox {
    fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<Pushed, InboxError>> {
        Box::pin(self.push_now(webhook))
    }

    fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>> {
        Box::pin(self.pull_now(max, lease))
    }

    fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move {
            let now = self.clock.now();
            self.release(&self.sql.ack, job, &[&now]).await
        })
    }

    fn retry<'a>(
        &'a self,
        job: &'a Job,
        not_before: OffsetDateTime,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move {
            self.release(&self.sql.retry, job, &[&not_before, &error]).await?;
            self.notify();
            Ok(())
        })
    }

    fn give_back<'a>(&'a self, job: &'a Job, now: OffsetDateTime) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move {
            self.release(&self.sql.give_back, job, &[&now, &"given back unprocessed"]).await?;
            self.notify();
            Ok(())
        })
    }

    fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move {
            let now = self.clock.now();
            self.release(&self.sql.dead, job, &[&error, &now]).await
        })
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, InboxError>> {
        Box::pin(self.dead_list(limit))
    }

    fn redrive<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        Box::pin(self.redrive_now(key))
    }

    fn discard<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        Box::pin(self.discard_now(key))
    }

    fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>> {
        Box::pin(self.depth_now())
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
    use super::{channel, quote_ident, valid_identifier};

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
