//! A replay store in Redis, shared by every replica of a receiver.

use std::{fmt, sync::Arc, time::Duration};

use ::redis::{Script, aio::ConnectionManager};

use super::{BoxFuture, Mark, ReplayStore, StoreError};
use crate::clock::Clock;

/// Marks a key unless a mark from the injected clock's point of view is still live; the
/// value is the deadline in Unix milliseconds, and Redis's own `PX` only tidies up.
const MARK_WITH_CLOCK: &str = r"
local v = redis.call('GET', KEYS[1])
if v and tonumber(v) and tonumber(v) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), 'PX', ARGV[2])
return 1
";

/// A [`ReplayStore`] in Redis: one key per delivery, `SET key 1 NX PX ttl` (atomic: of
/// many concurrent marks exactly one wins), `DEL` to unmark. Replicas that share the
/// Redis server share the marks.
///
/// **Guarantee:** a mark survives a crash of the receiving process; whether it survives a
/// Redis restart or a crash of Redis's machine depends on the server's persistence
/// (without AOF or RDB every mark is lost on a Redis restart, and the first resend of each
/// delivery then gets through to the inbox, which deduplicates by key again).
///
/// Expiry follows Redis's clock by default. With [`clock`](Self::clock) it follows the
/// injected clock instead (an atomic script compares the stored deadline with "now"); the
/// key's `PX` then only removes the mark from memory, after the same time to live on
/// Redis's clock. Keys are `{prefix}{key}` (prefix `hookguard:replay:` by default) and are
/// spread over a cluster's slots.
///
/// Capacity is Redis's: set `maxmemory` (with a `volatile-*` eviction policy the oldest
/// marks go first; with `noeviction` a full server answers errors, which the guard turns
/// into `503`).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookguard::replay::RedisReplayStore;
/// let store = RedisReplayStore::connect("redis://127.0.0.1:6379").await?.prefix("myapp:replay:");
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisReplayStore {
    conn: ConnectionManager,
    prefix: Arc<[u8]>,
    clock: Option<Arc<dyn Clock>>,
    script: Arc<Script>,
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// Connects to `url` (`redis://host:port/db`, `rediss://` for TLS when the redis crate
    /// has a TLS feature enabled) with a reconnecting connection manager.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the URL is invalid or the server cannot be reached.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = hookguard::replay::RedisReplayStore::connect("redis://127.0.0.1:6379").await.unwrap();
    /// # let _ = store; }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = ::redis::Client::open(url).map_err(backend)?;
        let conn = ConnectionManager::new(client).await.map_err(backend)?;
        Ok(Self::from_manager(conn))
    }

    /// Uses an existing connection manager (shared with the rest of the application).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let store = hookguard::replay::RedisReplayStore::from_manager(client.get_connection_manager().await?);
    /// # let _ = store; Ok(()) }
    /// ```
    #[must_use]
    pub fn from_manager(conn: ConnectionManager) -> Self {
        Self {
            conn,
            prefix: Arc::from(&b"hookguard:replay:"[..]),
            clock: None,
            script: Arc::new(Script::new(MARK_WITH_CLOCK)),
        }
    }

    /// Sets the key prefix (default `hookguard:replay:`).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = hookguard::replay::RedisReplayStore::connect("redis://127.0.0.1:6379").await.unwrap().prefix("app1:");
    /// # let _ = store; }
    /// ```
    #[must_use]
    pub fn prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.prefix = Arc::from(prefix.as_ref());
        self
    }

    /// Decides expiry by `clock` instead of Redis's clock (one short script per mark
    /// instead of a plain `SET NX PX`).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{clock::ManualClock, replay::RedisReplayStore};
    /// let store = RedisReplayStore::connect("redis://127.0.0.1:6379").await.unwrap().clock(ManualClock::at_unix(0));
    /// # let _ = store; }
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    async fn mark_now(&self, key: &[u8], ttl: Duration) -> Result<Mark, StoreError> {
        let mut conn = self.conn.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let k = self.key(key);
        let new = match &self.clock {
            None => {
                let set: Option<String> = ::redis::cmd("SET")
                    .arg(&k)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut conn)
                    .await
                    .map_err(backend)?;
                set.is_some()
            }
            Some(clock) => {
                let now_ms =
                    i64::try_from(clock.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
                let won: i64 = self
                    .script
                    .key(&k)
                    .arg(now_ms)
                    .arg(ttl_ms)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(backend)?;
                won == 1
            }
        };
        Ok(if new { Mark::New } else { Mark::Seen })
    }

    async fn unmark_now(&self, key: &[u8]) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = ::redis::cmd("DEL").arg(self.key(key)).query_async(&mut conn).await.map_err(backend)?;
        Ok(())
    }
}

fn backend(e: ::redis::RedisError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl ReplayStore for RedisReplayStore {
    fn mark<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<Mark, StoreError>> {
        Box::pin(self.mark_now(key, ttl))
    }

    fn unmark<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.unmark_now(key))
    }
}
