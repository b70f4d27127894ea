//! A replay store in Redis, shared by every replica of a receiver.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use ::redis::{Script, aio::ConnectionManager};

use super::{BoxFuture, Mark, ReplayStore, StoreError, digest_if_long};
use crate::clock::Clock;

/// What the Redis key of a digested mark key starts with, after the prefix.
const DIGESTED: &[u8] = b"sha256:";

/// The Lua helper every script starts with: what a stored value means. A confirmed mark
/// is `1` (Redis's clock) or its deadline in Unix milliseconds (injected clock); a
/// reservation is `p:{token}` or `p:{token}:{deadline}`. `live(v, now)` answers 0 (no
/// live mark), 1 (confirmed) or 2 (reserved); `now` is `''` when Redis's own `PX`
/// decides expiry.
const LIVE: &str = r"
local function live(v, now)
  if not v then return 0 end
  local token, deadline = string.match(v, '^p:(%d+):?(%d*)$')
  if not token then deadline = v end
  if now ~= '' then
    local d = tonumber(deadline)
    if not d or d <= tonumber(now) then return 0 end
  end
  if token then return 2 end
  return 1
end
";

/// Marks a key unless a live mark (confirmed or reserved) is there, from the injected
/// clock's point of view. ARGV: now, ttl, deadline (ms).
const MARK_WITH_CLOCK: &str = r"
if live(redis.call('GET', KEYS[1]), ARGV[1]) ~= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
return 1
";

/// Reserves a key unless a live mark is there; answers what `live` found (0: reserved
/// now). ARGV: now (or ''), lease, token, deadline (ms; '' with Redis's clock).
const RESERVE: &str = r"
local found = live(redis.call('GET', KEYS[1]), ARGV[1])
if found ~= 0 then return found end
local v = 'p:' .. ARGV[3]
if ARGV[4] ~= '' then v = v .. ':' .. ARGV[4] end
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return 0
";

/// Deletes a key only while it is the reservation of holder ARGV[1].
const CANCEL: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.match(v, '^p:(%d+)') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// The scripts, loaded once per store (by `EVALSHA`, loading on a `NOSCRIPT`).
#[derive(Debug)]
struct Scripts {
    mark: Script,
    reserve: Script,
    cancel: Script,
}

/// A [`ReplayStore`] in Redis: one key per delivery, `SET key 1 NX PX ttl` (atomic: of
/// many concurrent marks exactly one wins), `DEL` to unmark. Replicas that share the
/// Redis server share the marks.
///
/// Middleware mode's two phases ([module docs](super)) take one round trip each: a
/// reservation is a short script that sets `p:{token}` with `PX lease` unless a live mark
/// is there (and says which kind); a confirmation is a plain `SET key 1 PX ttl`; a cancel
/// is a script that deletes the key only while it holds the same token.
///
/// **Guarantee:** a mark survives a crash of the receiving process; whether it survives a
/// Redis restart or a crash of Redis's machine depends on the server's persistence
/// (without AOF or RDB every mark is lost on a Redis restart, and the first resend of each
/// delivery then gets through to the handler as new). Redis
/// replicates to its replicas asynchronously, and the store does not wait for them (no
/// `WAIT`): a failover to a replica can lose marks the old primary had already set and
/// answered, and the copies of those deliveries then get through as new.
///
/// Expiry follows Redis's clock by default. With [`clock`](Self::clock) it follows the
/// injected clock instead (an atomic script compares the stored deadline with "now"); the
/// key's `PX` then only removes the mark from memory, after the same time to live on
/// Redis's clock. Keys are `{prefix}{key}` (prefix `hookguard:replay:` by default) for
/// keys of up to 46 bytes (an endpoint and a short delivery id), and
/// `{prefix}sha256:{hex digest of the key}` for longer ones, so a mark takes the same room
/// whatever the length of the delivery id a sender signed (as in the
/// [`MemoryReplayStore`](super::MemoryReplayStore)).
///
/// The store takes a single-node connection ([`ConnectionManager`]): Redis Cluster is not
/// supported.
///
/// # Memory and eviction
///
/// Capacity is Redis's `maxmemory`; with `maxmemory 0` (Redis's default) nothing bounds
/// it but the machine's memory. Run the store on a server with `maxmemory-policy
/// noeviction` (or on an instance of its own that has it): a full server then answers
/// errors, which the guard turns into `503`. Eviction drops replay protection: every mark
/// has a time to live, so under any `volatile-*` or `allkeys-*` policy Redis may evict
/// marks that have not expired (which ones is the policy's choice: approximately the
/// least recently or least frequently used, the nearest to expiry, or random; not
/// "the oldest"), and a replayed or resent delivery whose mark was evicted gets through
/// as new. [`connect`](Self::connect) reads the policy (`CONFIG GET maxmemory-policy`)
/// and logs a warning when it is not `noeviction`; a server that refuses `CONFIG` (managed
/// Redis often does) is not checked.
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
    scripts: Arc<Scripts>,
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
    /// has a TLS feature enabled) with a reconnecting connection manager. Logs a warning
    /// when the server's `maxmemory-policy` is not `noeviction` (see
    /// [Memory and eviction](Self#memory-and-eviction)).
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
        warn_on_eviction(conn.clone()).await;
        Ok(Self::from_manager(conn))
    }

    /// Uses an existing connection manager (shared with the rest of the application). The
    /// eviction policy is not checked (as [`connect`](Self::connect) does): see
    /// [Memory and eviction](Self#memory-and-eviction).
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
            scripts: Arc::new(Scripts {
                mark: Script::new(&format!("{LIVE}{MARK_WITH_CLOCK}")),
                reserve: Script::new(&format!("{LIVE}{RESERVE}")),
                cancel: Script::new(CANCEL),
            }),
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
        redis_key(&self.prefix, key)
    }

    /// The injected clock's "now" in Unix milliseconds, if there is one.
    fn now_ms(&self) -> Option<i64> {
        self.clock
            .as_ref()
            .map(|clock| i64::try_from(clock.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
    }

    async fn mark_now(&self, key: &[u8], ttl: Duration) -> Result<Mark, StoreError> {
        let mut conn = self.conn.clone();
        let ttl_ms = millis(ttl);
        let k = self.key(key);
        let new = match self.now_ms() {
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
            Some(now_ms) => {
                let won: i64 = self
                    .scripts
                    .mark
                    .key(&k)
                    .arg(now_ms)
                    .arg(ttl_ms)
                    .arg(deadline(now_ms, ttl_ms))
                    .invoke_async(&mut conn)
                    .await
                    .map_err(backend)?;
                won == 1
            }
        };
        Ok(if new { Mark::New } else { Mark::Seen })
    }

    async fn reserve_now(&self, key: &[u8], token: u64, lease: Duration) -> Result<Mark, StoreError> {
        let mut conn = self.conn.clone();
        let lease_ms = millis(lease);
        let now_ms = self.now_ms();
        let found: i64 = self
            .scripts
            .reserve
            .key(self.key(key))
            .arg(now_ms.map(|n| n.to_string()).unwrap_or_default())
            .arg(lease_ms)
            .arg(token)
            .arg(now_ms.map(|n| deadline(n, lease_ms).to_string()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(match found {
            0 => Mark::New,
            2 => Mark::Pending,
            _ => Mark::Seen,
        })
    }

    async fn confirm_now(&self, key: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let ttl_ms = millis(ttl);
        let value = self.now_ms().map_or(1, |now_ms| deadline(now_ms, ttl_ms));
        let _: () = ::redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn cancel_now(&self, key: &[u8], token: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .scripts
            .cancel
            .key(self.key(key))
            .arg(token)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn unmark_now(&self, key: &[u8]) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = ::redis::cmd("DEL").arg(self.key(key)).query_async(&mut conn).await.map_err(backend)?;
        Ok(())
    }

    async fn is_confirmed_now(&self, key: &[u8]) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let value: Option<String> =
            ::redis::cmd("GET").arg(self.key(key)).query_async(&mut conn).await.map_err(backend)?;
        Ok(value.is_some_and(|v| live_confirmed(&v, self.now_ms())))
    }
}

/// The Redis key of a mark: `{prefix}{key}` for a key of up to [`INLINE`](super::INLINE) bytes (an
/// endpoint and a short delivery id, readable as they are), `{prefix}sha256:{hex}` of a
/// longer one, so a mark takes the same room in Redis whatever the length of the delivery
/// id a sender signed. The digest's form (71 bytes) is longer than any key kept as it is:
/// the two kinds never meet.
fn redis_key(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + key.len().min(DIGESTED.len() + 64));
    k.extend_from_slice(prefix);
    match digest_if_long(key) {
        None => k.extend_from_slice(key),
        Some(digest) => {
            k.extend_from_slice(DIGESTED);
            k.extend_from_slice(const_hex::encode(digest).as_bytes());
        }
    }
    k
}

/// Whether a stored value is a live confirmed mark, read as [`LIVE`]'s `live` reads it
/// (answering 1): not a reservation (`p:{token}` or `p:{token}:{deadline}`), and with an
/// injected clock (`now_ms`), a deadline still ahead.
fn live_confirmed(value: &str, now_ms: Option<i64>) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let reservation = value.strip_prefix("p:").is_some_and(|rest| {
        let (token, deadline) = rest.split_once(':').unwrap_or((rest, ""));
        !token.is_empty() && digits(token) && digits(deadline)
    });
    if reservation {
        return false;
    }
    match now_ms {
        None => true,
        Some(now) => value.parse::<i64>().is_ok_and(|deadline| deadline > now),
    }
}

/// The longest time to live sent to Redis: 100 years. Redis refuses a `PX` that overflows
/// its clock (a saturated `u64` did, so `Duration::MAX` failed every mark), and a mark
/// kept a century is kept for good.
const LONGEST_MS: u64 = 100 * 365 * 86_400 * 1_000;

/// A duration in whole milliseconds for `PX`, rounded up (a mark never expires before its
/// time to live): at least 1, at most [`LONGEST_MS`].
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX).clamp(1, LONGEST_MS)
}

/// `now_ms + ms`, saturating.
fn deadline(now_ms: i64, ms: u64) -> i64 {
    now_ms.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Logs a warning when the server's eviction policy can drop marks; says nothing when the
/// server will not tell (a refused or renamed `CONFIG`).
async fn warn_on_eviction(mut conn: ConnectionManager) {
    let answer = ::redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut conn).await;
    if let Some(policy) = policy_of(answer)
        && evicts(&policy)
    {
        tracing::warn!(
            %policy,
            "Redis replay store: the server's maxmemory-policy is not noeviction; evicted marks let replays through"
        );
    }
}

/// The `maxmemory-policy` in a `CONFIG GET` answer; `None` when the server did not say.
fn policy_of(answer: ::redis::RedisResult<HashMap<String, String>>) -> Option<String> {
    answer.ok()?.remove("maxmemory-policy")
}

/// Whether a policy may evict marks: every one but `noeviction` (all marks have a TTL).
fn evicts(policy: &str) -> bool {
    policy != "noeviction"
}

fn backend(e: ::redis::RedisError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl ReplayStore for RedisReplayStore {
    fn mark<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<Mark, StoreError>> {
        Box::pin(self.mark_now(key, ttl))
    }

    fn reserve<'a>(
        &'a self,
        key: &'a [u8],
        token: u64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Mark, StoreError>> {
        Box::pin(self.reserve_now(key, token, lease))
    }

    fn confirm<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.confirm_now(key, ttl))
    }

    fn cancel<'a>(&'a self, key: &'a [u8], token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.cancel_now(key, token))
    }

    fn unmark<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.unmark_now(key))
    }

    fn is_confirmed<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.is_confirmed_now(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::INLINE;

    /// A stored value is a live confirmed mark exactly as the scripts' `live` reads it.
    #[test]
    fn confirmed_values_read_as_the_scripts_read_them() {
        let rows: [(&str, Option<i64>, bool); 9] = [
            ("1", None, true),
            ("p:42", None, false),
            ("p:42:1700000000000", None, false),
            ("p:42", Some(1_000), false),
            ("2000", Some(1_000), true),
            ("1000", Some(1_000), false),
            ("1", Some(1_000), false),
            ("p:x", None, true),
            ("junk", Some(1_000), false),
        ];
        for (value, now, want) in rows {
            assert_eq!(live_confirmed(value, now), want, "{value} at {now:?}");
        }
    }

    /// Keys of up to `INLINE` bytes are kept as they are; longer ones, however long, as
    /// their digest, which no key kept as it is can equal.
    #[test]
    fn long_keys_are_digested_short_ones_kept_readable() {
        let p = b"hookguard:replay:";
        for len in [0, 1, INLINE] {
            let key = vec![b'k'; len];
            assert_eq!(redis_key(p, &key), [&p[..], &key].concat(), "{len}");
        }
        let digested = |len: usize| redis_key(p, &vec![b'x'; len]);
        for len in [INLINE + 1, 1_000, 64 * 1024] {
            let k = digested(len);
            assert_eq!(k.len(), p.len() + DIGESTED.len() + 64, "{len}");
            assert!(k[p.len()..].starts_with(DIGESTED), "{len}");
        }
        assert_ne!(digested(INLINE + 1), digested(INLINE + 2), "a key and its prefix differ");
        assert!(DIGESTED.len() + 64 > INLINE, "a digested key is longer than any kept as it is");
    }

    /// `PX` is rounded up: a mark lives at least its time to live.
    #[test]
    fn milliseconds_round_up() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_nanos(1)), 1);
        assert_eq!(millis(Duration::from_micros(1_500)), 2);
        assert_eq!(millis(Duration::from_millis(1_000)), 1_000);
        assert_eq!(millis(Duration::from_millis(1_000) + Duration::from_nanos(1)), 1_001);
        assert_eq!(millis(Duration::MAX), LONGEST_MS);
    }

    #[test]
    fn every_policy_but_noeviction_evicts_marks() {
        assert!(!evicts("noeviction"));
        for policy in ["volatile-lru", "volatile-ttl", "allkeys-lfu", "allkeys-random"] {
            assert!(evicts(policy), "{policy}");
        }
        let answer = |pairs: &[(&str, &str)]| {
            Ok(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
        };
        assert_eq!(
            policy_of(answer(&[("maxmemory-policy", "volatile-lru")])).as_deref(),
            Some("volatile-lru")
        );
        assert_eq!(policy_of(answer(&[])), None, "nothing said");
        let refused = ::redis::RedisError::from((::redis::ErrorKind::Extension, "unknown command 'CONFIG'"));
        assert_eq!(policy_of(Err(refused)), None, "a refused CONFIG is no error");
    }

    /// `connect` reads the policy of a real server (RESP2 answers a flat array, RESP3 a map:
    /// both make the map) and connects whatever it is.
    #[tokio::test]
    async fn the_policy_is_read_from_the_server() {
        let Ok(url) = std::env::var("HOOKGUARD_TEST_REDIS_URL") else {
            eprintln!("skipped: backend not configured");
            return;
        };
        let client = ::redis::Client::open(url.as_str()).unwrap();
        let mut conn = ConnectionManager::new(client).await.unwrap();
        let answer = ::redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut conn).await;
        let policy = policy_of(answer).expect("the test server answers CONFIG GET");
        assert!(!policy.is_empty());
        RedisReplayStore::connect(&url).await.expect("connects");
    }
}
