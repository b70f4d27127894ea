//! An inbox on Redis Streams with a consumer group, shared by every replica.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use ::redis::{
    AsyncConnectionConfig, Client, Script, ScriptInvocation, Value,
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
};
use bytes::Bytes;
use time::OffsetDateTime;

use super::{
    BoxFuture, DeadLetter, Inbox, InboxError, Job, Pushed, Webhook,
    wake::{self, Background, Signal},
};
use crate::clock::{Clock, SystemClock};

/// How long an inbox made by [`RedisInbox::connect`] gives Redis to answer a command
/// (redis-rs's default) unless [`RedisInbox::response_timeout`] sets another; a change that
/// waits for durability is given its [`WaitAof`](RedisDurability::WaitAof) timeout more.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one `XREAD BLOCK` of the wake-up connection lasts.
const BLOCK: Duration = Duration::from_secs(10);
/// How long the wake-up connection may take to open, and to answer beyond a block.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps a webhook unless its key is kept or was finished lately; XADD comes first, so a
/// failed XADD leaves no dedup mark behind. A copy (0) makes one write when the caller
/// waits for durability (`ARGV[5]`), so that its `WAITAOF` covers the push that kept the
/// webhook, whichever client made it.
const PUSH: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  if ARGV[5] == '1' then redis.call('INCR', KEYS[6]) end
  return 0
end
local n = redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[4]) + redis.call('ZCARD', KEYS[5])
if n >= tonumber(ARGV[4]) then return -1 end
local sid = redis.call('XADD', KEYS[1], '*', 'key', ARGV[1])
redis.call('HSET', KEYS[2], 'meta', ARGV[2], 'body', ARGV[3], 'attempts', 0, 'state', 'w', 'sid', sid)
return 1
";

/// Leases up to `max` jobs: first those whose lease ran out (by the injected clock), then,
/// after moving due retries back into the stream, new entries read by the group. It stops
/// once the records it leased (meta and body) come to `ARGV[8]` bytes ([`PULL_BYTES`]), so
/// it leases one job at least, whatever its size: what it does not hand out it neither
/// claims nor reads, and stays for the next pull (an entry read by the group but not leased
/// would be pending with no lease, never to come back). It answers a first field, `1` when
/// it took all it was asked for, stopped at the byte budget, or left due jobs it did not
/// look at (expired leases past `max`, due retries past 1,000): due jobs may be left, for a
/// waiter to see (`Background::pull_was_capped`), followed by `r` when Redis refused the
/// move of due retries into the stream (a server at its `maxmemory`: those are not work a
/// waiter should pull for at once); then key, meta, body, attempts and receipt per job.
///
/// The group reads the first new entry alone (`XREADGROUP COUNT 1`, leased whatever its
/// size); then the entries after it are looked at (`XRANGE` from that entry's id, which is
/// skipped: an exclusive start needs Redis 6.2; a page at a time) and sized as a leased record is (nothing for one that is no job), and
/// those that fit what is left of the budget are read in one `XREADGROUP`. Nothing runs
/// between the commands of a script, and the group's last-delivered id is the first
/// entry's once it is read, so the group reads exactly the entries looked at (`XRANGE` and
/// `XREADGROUP >` both skip deleted ones); should it read others all the same, it leases
/// (or drops, as no job) each as it would have, so none is left pending with no lease.
/// One `XREADGROUP` per entry cost about 8 µs more per job than one for all (a pull of
/// 1,000 jobs of 200 bytes: 16 ms of the server's time then 25); looking first, about 4.
///
/// Nothing in it may fail on a damaged job: Redis keeps a script's writes up to a failed
/// call, so an error after `XREADGROUP` would leave the entries it read pending with no
/// lease, never to come back. A job key that is not a hash is no job (its entry is
/// dropped); a missing field is handed out empty, for the Rust side to dead-letter, and so
/// is a job whose lease ran out and whose stream id is missing or no id (`XCLAIM` refuses
/// it: `pcall`), its record left out (the lease is not dropped, which would leave the job
/// leased for good, its key a duplicate forever); a count that is not a whole number starts
/// again from 0.
///
/// Nor may a refused move of due retries fail it: a server at its `maxmemory` refuses the
/// `XADD` (when nothing before it in the script wrote), and failing the pull would leave
/// the work already in the stream waiting too, the queue stuck until memory is freed. The
/// move stops at the first refusal (`pcall`), the retries not moved stay due for a later
/// pull, and the pull goes on (`XREADGROUP` and the leases are no writes a full server
/// refuses once the script has written).
const PULL: &str = r"
local now = tonumber(ARGV[1])
local lease_until = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local budget = tonumber(ARGV[8])
local used = 0
local out = {'0'}
local more = false
local refused = false
local function sid_of(jk)
  if redis.call('TYPE', jk).ok ~= 'hash' then return nil end
  return redis.call('HGET', jk, 'sid')
end
local function lease(key, jk, damaged)
  redis.call('ZADD', KEYS[2], lease_until, key)
  local receipt = redis.call('INCR', KEYS[4]) .. '.' .. ARGV[7]
  local attempts = tonumber(redis.call('HGET', jk, 'attempts'))
  if not attempts or attempts < 0 or attempts ~= math.floor(attempts) or attempts > 4294967294 then
    attempts = 0
  end
  attempts = attempts + 1
  redis.call('HSET', jk, 'attempts', attempts, 'state', 'l', 'receipt', receipt)
  local f = {}
  if not damaged then f = redis.call('HMGET', jk, 'meta', 'body') end
  used = used + #(f[1] or '') + #(f[2] or '')
  out[#out + 1] = key
  out[#out + 1] = f[1] or ''
  out[#out + 1] = f[2] or ''
  out[#out + 1] = string.format('%d', attempts)
  out[#out + 1] = tostring(receipt)
end
local taken = 0
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, max)
for _, key in ipairs(expired) do
  if used >= budget then break end
  local jk = ARGV[6] .. key
  if redis.call('TYPE', jk).ok ~= 'hash' then
    redis.call('ZREM', KEYS[2], key)
  else
    -- A stream id that is missing or not an id is damage: the job is handed out empty,
    -- for the Rust side to dead-letter, not left leased for good. A well-formed id is
    -- claimed with `redis.call`: an error then (the group or the stream gone) fails the
    -- pull, as it did, rather than dead-letter sound jobs as damaged.
    local sid = redis.call('HGET', jk, 'sid')
    local damaged = not sid or not string.match(sid, '^%d+%-%d+$')
    if not damaged then
      redis.call('XCLAIM', KEYS[1], ARGV[4], ARGV[5], 0, sid, 'JUSTID')
    end
    lease(key, jk, damaged)
    taken = taken + 1
  end
end
if #expired >= max then more = true end
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
if #due >= 1000 then more = true end
for _, key in ipairs(due) do
  if redis.call('TYPE', ARGV[6] .. key).ok == 'hash' then
    local sid = redis.pcall('XADD', KEYS[1], '*', 'key', key)
    if type(sid) == 'table' and sid.err then refused = true break end
    redis.call('HSET', ARGV[6] .. key, 'state', 'w', 'sid', sid)
  end
  redis.call('ZREM', KEYS[3], key)
end
local left = max - taken
local function valid(entry)
  local key = entry[2][2]
  return key and sid_of(ARGV[6] .. key) == entry[1]
end
local function take(entry, ok)
  if ok then
    lease(entry[2][2], ARGV[6] .. entry[2][2])
  else
    redis.call('XACK', KEYS[1], ARGV[4], entry[1])
    redis.call('XDEL', KEYS[1], entry[1])
  end
end
if left > 0 and used < budget then
  local res = redis.call('XREADGROUP', 'GROUP', ARGV[4], ARGV[5], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
  local first = res and res[1][2][1]
  if first then
    left = left - 1
    take(first, valid(first))
    local fit = {}
    local last = first[1]
    local sum = used
    while #fit < left and sum < budget do
      local want = math.min(left - #fit, 256)
      -- From `last` itself, skipped (an exclusive start needs Redis 6.2); one more, in
      -- case `last` is gone (a first entry that was no job, dropped).
      local from = last
      local page = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', want + 1)
      local seen = 0
      for _, entry in ipairs(page) do
        if sum >= budget or seen >= want then break end
        if entry[1] ~= from then
          seen = seen + 1
          local ok = valid(entry)
          if ok then
            local jk = ARGV[6] .. entry[2][2]
            sum = sum + redis.call('HSTRLEN', jk, 'meta') + redis.call('HSTRLEN', jk, 'body')
          end
          fit[#fit + 1] = {entry[1], ok}
          last = entry[1]
        end
      end
      if seen < want then break end
    end
    if #fit > 0 then
      res = redis.call('XREADGROUP', 'GROUP', ARGV[4], ARGV[5], 'COUNT', #fit, 'STREAMS', KEYS[1], '>')
      local got = res and res[1][2] or {}
      for i, entry in ipairs(got) do
        local peeked = fit[i]
        if peeked and peeked[1] == entry[1] then
          take(entry, peeked[2])
        else
          take(entry, valid(entry))
        end
      end
      left = left - #got
    end
  end
end
if more or left <= 0 or used >= budget then out[1] = '1' end
if refused then out[1] = out[1] .. 'r' end
return out
";

/// Ends a lease if the receipt still holds it: shared head of ack, retry and dead letter.
/// A stream id that is missing or no id (a damaged job, handed out empty by [`PULL`] to be
/// dead-lettered) fails nothing: its entry is acked and deleted only when there is one to
/// name (`pcall`).
const RELEASE: &str = r"
local f = redis.call('HMGET', KEYS[2], 'state', 'receipt', 'sid')
if f[1] ~= 'l' or f[2] ~= ARGV[2] then return 0 end
if f[3] then
  redis.pcall('XACK', KEYS[1], ARGV[3], f[3])
  redis.pcall('XDEL', KEYS[1], f[3])
end
redis.call('ZREM', KEYS[3], ARGV[1])
";

const ACK: &str = r"
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[4], 1, 'PX', ARGV[4])
return 1
";

const RETRY: &str = r"
redis.call('HSET', KEYS[2], 'state', 'd', 'error', ARGV[5])
redis.call('HDEL', KEYS[2], 'sid', 'receipt')
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
return 1
";

/// [`RETRY`], and the attempt the pull counted is given back.
const GIVE_BACK: &str = r"
redis.call('HSET', KEYS[2], 'state', 'd', 'error', ARGV[5])
redis.call('HDEL', KEYS[2], 'sid', 'receipt')
if (tonumber(redis.call('HGET', KEYS[2], 'attempts')) or 0) > 0 then
  redis.call('HINCRBY', KEYS[2], 'attempts', -1)
end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
return 1
";

const DEAD: &str = r"
redis.call('HSET', KEYS[2], 'state', 'x', 'error', ARGV[4], 'failed_at', ARGV[5])
redis.call('HDEL', KEYS[2], 'sid', 'receipt')
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[5]), ARGV[1])
return 1
";

/// Lists one page of dead letters, oldest first: up to `ARGV[1]` (a page, [`DEAD_PAGE`] at
/// most) after the entry of score `ARGV[3]` and key `ARGV[4]` (the last of the page before;
/// the first page when `ARGV[3]` is empty): key, score, meta, body, attempts, error,
/// failure time each, after a first field that is `1` when the page stopped short of
/// `ARGV[1]` because its records (meta, body and error) would have passed `ARGV[5]` bytes
/// ([`DEAD_BYTES`]; the first entry is listed whatever its size, so each page lists one). After an entry still there with that score, by its rank (entries of
/// one score are ordered by key); after one gone, by the score. A damaged one (its hash
/// gone, of another type, or missing a field) is listed with empty fields, by key, for the
/// Rust side to leave out and log; nothing in it fails on one.
const DEAD_LIST: &str = r"
local count = tonumber(ARGV[1])
local entries
if ARGV[3] == '' then
  entries = redis.call('ZRANGE', KEYS[1], 0, count - 1, 'WITHSCORES')
elseif redis.call('ZSCORE', KEYS[1], ARGV[4]) == ARGV[3] then
  local rank = redis.call('ZRANK', KEYS[1], ARGV[4])
  entries = redis.call('ZRANGE', KEYS[1], rank + 1, rank + count, 'WITHSCORES')
else
  entries = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[3], '+inf', 'WITHSCORES', 'LIMIT', 0, count)
end
local budget = tonumber(ARGV[5])
local used = 0
local out = {'0'}
for i = 1, #entries, 2 do
  local key = entries[i]
  local jk = ARGV[2] .. key
  local f = {}
  if redis.call('TYPE', jk).ok == 'hash' then
    local size = redis.call('HSTRLEN', jk, 'meta') + redis.call('HSTRLEN', jk, 'body')
      + redis.call('HSTRLEN', jk, 'error')
    if i > 1 and used + size > budget then
      out[1] = '1'
      break
    end
    used = used + size
    f = redis.call('HMGET', jk, 'meta', 'body', 'attempts', 'error', 'failed_at')
  end
  out[#out + 1] = key
  out[#out + 1] = entries[i + 1]
  out[#out + 1] = f[1] or ''
  out[#out + 1] = f[2] or ''
  out[#out + 1] = f[3] or ''
  out[#out + 1] = f[4] or ''
  out[#out + 1] = f[5] or '0'
end
return out
";

/// The most dead letters (bodies included) one [`DEAD_LIST`] call reads: Redis runs one
/// script at a time, and answers no other client (no replica's push) until it is done.
const DEAD_PAGE: usize = 256;

/// The most bytes of dead letters' records (meta, body and error) one [`DEAD_LIST`] call
/// reads, but for its first entry: bodies are up to 1 MiB each, and a page of them in one
/// script held up the server for hundreds of milliseconds, its answer too large to arrive
/// within a response timeout (1 MiB in 500 ms needs about 17 Mbit/s).
const DEAD_BYTES: usize = 1 << 20;

/// How many bytes of records (meta and body) one pull leases before it stops; it leases one
/// job at least, so a pull answers up to this and one job more. One script read every
/// leased body: a pull of 100 jobs of 1 MiB answered 100 MiB at once, holding up every
/// other client of the server for hundreds of milliseconds (as [`DEAD_BYTES`]).
const PULL_BYTES: usize = 1 << 20;

/// The most jobs one pull leases. The pull script reads its count as a Lua number, and
/// Redis takes no number past 2^53 as a count (`usize::MAX` came as `1.8e+19`, refused):
/// a larger `max` ("as many as there are") is this.
const PULL_MAX: usize = 1_000_000_000;

/// The id of the last stream entry the group handed out: entries after it are work that no
/// consumer has taken yet (`0-0` while the stream or the group does not exist).
const CURSOR: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return '0-0' end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  if name == ARGV[1] and last then return last end
end
return '0-0'
";

/// Deletes the group's consumers (other than `ARGV[2]`, the caller) that hold no pending
/// entry and have been idle at least `ARGV[3]` ms; answers how many. One script, so no
/// consumer reads an entry between the check and the delete (`DELCONSUMER` would orphan
/// it). A missing stream or group deletes nothing.
const SWEEP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(consumers) ~= 'table' or consumers.err then return 0 end
local limit = tonumber(ARGV[3])
local gone = 0
for _, c in ipairs(consumers) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = c[i + 1]
    elseif c[i] == 'idle' then idle = c[i + 1] end
  end
  if name and name ~= ARGV[2] and pending == 0 and idle and idle >= limit then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    gone = gone + 1
  end
end
return gone
";

/// How often (by the injected clock) an inbox looks for idle consumers to delete.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// A consumer idle this long (or ten leases, if longer) with nothing pending is deleted.
const IDLE_CONSUMER: Duration = Duration::from_secs(3600);

const REDRIVE: &str = r"
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return 0 end
local sid = redis.call('XADD', KEYS[1], '*', 'key', ARGV[1])
redis.call('HSET', KEYS[2], 'state', 'w', 'sid', sid, 'attempts', 0)
redis.call('HDEL', KEYS[2], 'error', 'failed_at')
return 1
";

/// Removes a dead letter for good, as an ack removes a finished job: the job hash goes and
/// the done key is set. Nothing of the hash is read, so a damaged one goes too.
const DISCARD: &str = r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], 1, 'PX', ARGV[2])
return 1
";

/// How long a push (and every other change) waits for persistence before it returns.
///
/// What survives what, for a change that returned `Ok`:
///
/// | setting | receiver crash | Redis restart | Redis machine crash | loss of the Redis machine |
/// |---|---|---|---|---|
/// | [`None`](Self::None), no persistence | yes | **no** | no | no |
/// | [`None`](Self::None), AOF `everysec` | yes | yes | up to ~1 s lost | no |
/// | [`WaitAof`](Self::WaitAof) `local: true` | yes | yes | yes | no |
/// | [`WaitAof`](Self::WaitAof) `replicas: n` | yes | yes | yes, if a replica takes over | yes, with `n` replicas |
///
/// `WaitAof` sends `WAITAOF` (Redis 7.2 or later) after each change's script, in one
/// pipeline on one connection, so it covers that change (a reconnect cannot come between
/// them) and every write the server took before it. While it waits, Redis answers nothing
/// else on that connection, so the changes that wait are sent on a connection of their
/// own, and no wait holds up a pull, a listing or a count: an inbox made by
/// [`RedisInbox::connect`] opens it (at the first change that waits); one made by
/// [`RedisInbox::from_manager`] takes it from [`wait_manager`](RedisInbox::wait_manager),
/// and without one sends everything on the one manager, where every command queues
/// behind each wait. The changes that wait do queue behind each other (one connection for
/// all the clones of an inbox): while waits fall short (a replica down), each holds the
/// next up to `timeout`. The response timeout counts the wait, and the queue before it:
/// an inbox made by `connect` gives such a change `timeout` more than the 500 ms it gives
/// any command (or than its [`response_timeout`](RedisInbox::response_timeout)); give a manager of your own for waits a response timeout longer than
/// `timeout` (redis-rs's default is 500 ms). Keep `timeout` short (well under the
/// 500 ms), so that a replica outage slows changes rather than fails them. It fails when
/// the server has AOF off (or is older than 7.2): the push then returns
/// [`InboxError::Backend`], though the webhook may be kept; the guard answers `503`. A copy
/// of a kept webhook waits the same way before it is answered [`Pushed::Duplicate`], so a
/// sender's retry is acknowledged only once the webhook is as durable as this setting asks.
///
/// Pushes, acks, retries, re-drives and discards fail when the wait fails or falls short
/// (though the change was made). A move to the dead letters does not: its script has run,
/// so the job is a dead letter, and the shortfall is logged at `warn`. A pull does not
/// wait at all: it answers at once, and the next change that waits (the ack of one of its
/// jobs, say) covers its leases, as `WAITAOF` waits for every write the server took before
/// that change. A pull that failed on its wait would throw its leases away (the jobs leased
/// to nobody until the leases ran out, an attempt counted for each), and all through a
/// replica outage every job would be leased again and again, and dead-lettered at its
/// first failure; one that waited all the same would be held up `timeout` each. Should the
/// primary lose a pull's leases or a move to the dead letters, the job is only delivered
/// again.
///
/// ```
/// use std::time::Duration;
/// use hookguard::inbox::RedisDurability;
/// assert_eq!(RedisDurability::default(), RedisDurability::None);
/// // Survives the loss of the primary machine once one replica has the change.
/// let durable = RedisDurability::WaitAof { local: true, replicas: 1, timeout: Duration::from_millis(500) };
/// assert_ne!(durable, RedisDurability::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedisDurability {
    /// Return once Redis has the change in memory (fastest; durable only as far as the
    /// server's own persistence settings go).
    #[default]
    None,
    /// Return once the change is fsynced to the local AOF (`local`) and acknowledged by
    /// `replicas` replicas' AOFs, waiting at most `timeout`; an error otherwise (for a move
    /// to the dead letters, a warning; a pull does not wait: see above).
    WaitAof {
        /// Wait for the primary's own AOF fsync.
        local: bool,
        /// Replicas whose AOF must have the change.
        replicas: u32,
        /// How long to wait.
        timeout: Duration,
    },
}

/// An [`Inbox`] on Redis: a stream read by a consumer group, with leases, retries, dead
/// letters and finished-key retention in keys beside it.
///
/// **Guarantee:** an accepted webhook survives a crash of any receiver or worker process
/// (a crashed worker's job comes back when its lease runs out); whether it survives a
/// Redis restart or machine crash is Redis's persistence and [`RedisDurability`]: with
/// neither AOF nor RDB, a Redis restart loses everything, including accepted webhooks.
///
/// # Layout
///
/// Every key starts with the hash tag `{prefix}` (default `{hookguard}`), so that they
/// would share one slot; but the inbox takes a single-node connection
/// ([`ConnectionManager`]): Redis Cluster is not supported.
///
/// - `{p}:stream`: one entry (`key`) per waiting or leased job, read by the group
///   `hookguard` (`XREADGROUP`); ack, retry and dead letter `XACK` and `XDEL` the entry.
/// - `{p}:job:<key>`: a hash with the webhook (`meta` JSON, raw `body`), `attempts`,
///   `state`, the stream id, the lease `receipt` and the last `error`. Its existence is the
///   dedup mark while the job is kept.
/// - `{p}:leases`: a sorted set of leased keys by lease end; `{p}:delayed`: retries by due
///   time; `{p}:dead`: dead letters, oldest first.
/// - `{p}:done:<key>`: a finished key, kept for the [retention](Self::retention) so that a
///   late resend is a duplicate.
///
/// Each operation is one Lua script, so no other client's command runs in the middle of
/// it; but a script holds up every other client's command (Redis runs one thing at a
/// time), so none reads much: a pull leases jobs until their records (bodies included)
/// come to 1 MiB, one at least whatever its size, and leaves the rest for the next pull
/// (so it may hand out fewer than it was asked for while more are waiting);
/// [`dead_letters`](Inbox::dead_letters) reads a page at a time (256 dead letters, or
/// fewer whose records, bodies included, come to 1 MiB; one larger than that alone), one
/// script each, so its list is no snapshot (a dead letter re-driven and dead again while
/// it reads may be listed twice). A script is not a transaction, though: when
/// a command in it fails, Redis keeps the writes made before the failure. The scripts are
/// written so that what callers and damaged records can cause fails none of them midway (a
/// pull skips a damaged job rather than failing on it; a push adds the stream entry before
/// the dedup mark, so a failed `XADD` leaves no mark); and a server at its `maxmemory`
/// refuses a script's writes only while the script has written nothing, so a full server
/// fails a script before it changed anything, never midway. A pull is the exception: when
/// the server refuses to move its due retries back into the stream, it leaves them due for
/// a later pull and still hands out the work already waiting. What remains (a server killed
/// in the middle of a script, a key of this layout changed by hand to another type) can
/// leave one operation half-done.
///
/// # Memory and eviction
///
/// Run the inbox on a server with `maxmemory-policy noeviction` (or on an instance of its
/// own that has it): a full server then answers errors, pushes fail with
/// [`InboxError::Backend`], and the guard answers `503`. Any other policy loses data
/// without an error: under `allkeys-*` Redis may evict job hashes and the stream (webhooks
/// already acknowledged to their senders are lost); under `volatile-*` it evicts the
/// finished keys (`{p}:done:…`, the only keys with a time to live), and a late resend of a
/// finished webhook is processed again. [`connect`](Self::connect) reads the policy
/// (`CONFIG GET maxmemory-policy`) and logs a warning when it is not `noeviction`; a server
/// that refuses `CONFIG` (managed Redis often does) is not checked.
///
/// # Time
///
/// Lease ends and retry due times follow the injected [`clock`](Self::clock), not the
/// server's: expired leases are found in `{p}:leases` by the clock's "now" and claimed
/// (`XCLAIM`) by the pulling consumer, rather than with `XAUTOCLAIM`, whose idle time is
/// measured on Redis's clock. The finished-key retention is a `PX` on Redis's clock.
///
/// Replicas sharing a prefix compare lease ends by their own clocks: one whose clock runs
/// ahead by *d* takes another's job *d* early. Keep the replicas' clocks in sync (NTP), and
/// choose the worker's [`lease`](crate::worker::Worker::lease) longer than the slowest
/// handler by more than the skew.
///
/// # Capacity
///
/// Waiting, leased, delayed and dead jobs count against the capacity (default 100,000);
/// past it, pushes fail with [`InboxError::Full`]. A dead letter holds its room until it is
/// re-driven and processed, or [discarded](Inbox::discard).
///
/// # Wake-ups
///
/// Idle workers do not poll: [`wait`](Inbox::wait) returns as soon as the stream holds an
/// entry that the consumer group has not handed out yet, whichever replica added it (a
/// push, a re-drive, a due retry moved back by another replica's pull). The inbox keeps one
/// connection of its own (blocking commands must not run on the shared multiplexed
/// connection), used by one task for all its clones and waiters: while anyone waits, it
/// reads the group's last-delivered id (`XINFO GROUPS`) and blocks in `XREAD BLOCK` for
/// entries after it, 10 s at a time. The connection (named `hookguard-wake:<prefix>` in
/// `CLIENT LIST`) opens at the first `wait`, is opened again with back-off (100 ms doubling
/// to 30 s) after an error, and closes when the last clone of the inbox is dropped; while
/// it is down, `wait` sleeps until its timeout (or the next due time, below).
///
/// Why not `PUBLISH` on push and a subscription: `XREAD` is level-triggered. It reports
/// work that exists, not a message that was sent, so nothing is lost while a waiter is
/// between its pull and its wait or while the connection is reconnecting; the push script
/// stays as it was (atomic, no extra work per push); and replicas running an older version
/// of this library, which would not publish, still wake the others.
///
/// `wait` also returns when a retry becomes due or a lease runs out: it reads the earliest
/// of each (`ZRANGEBYSCORE … LIMIT 0 1`) before it sleeps, so the timeout only bounds how
/// late a retry scheduled after that is noticed.
///
/// [`connect`](Self::connect) sets this up; an inbox made with
/// [`from_manager`](Self::from_manager) polls (`wait` sleeps its whole timeout) until it is
/// given a client with [`wakeups`](Self::wakeups).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookguard::inbox::{RedisDurability, RedisInbox};
/// let inbox = RedisInbox::connect("redis://127.0.0.1:6379")
///     .await?
///     .prefix("myapp")
///     .durability(RedisDurability::None);
/// # let _ = inbox; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisInbox {
    /// Every command but the changes that wait for durability.
    conn: ConnectionManager,
    /// The changes that wait for durability (under [`RedisDurability::WaitAof`]), each in
    /// one pipeline with its `WAITAOF`: a connection apart, so that no wait holds up the
    /// commands on `conn` ([`connect`](RedisInbox::connect), or
    /// [`wait_manager`](RedisInbox::wait_manager)); else `conn` itself.
    waits: ConnectionManager,
    keys: Arc<Keys>,
    group: Arc<str>,
    consumer: Arc<str>,
    capacity: usize,
    retention: Duration,
    durability: RedisDurability,
    clock: Arc<dyn Clock>,
    scripts: Arc<Scripts>,
    /// Opens `wait`'s blocking connection; `None`: `wait` sleeps its whole timeout.
    wake_client: Option<Client>,
    listener: Arc<Background>,
    /// When (Unix ms, injected clock) a pull next looks for idle consumers to delete;
    /// shared by clones, so one of them looks.
    next_sweep: Arc<AtomicI64>,
    /// The time (Unix ms, injected clock) of the last pull whose move of due retries into
    /// the stream Redis refused (a server at its `maxmemory`), `i64::MIN` after one that
    /// moved them all; shared by clones. `wait` does not count retries due by then as
    /// work: the next pull would be refused the same way, and the pool would pull again at
    /// once, over and over, on a full server.
    refused_move: Arc<AtomicI64>,
    /// How long a consumer with nothing pending may be idle before it is deleted; `None`:
    /// [`IDLE_CONSUMER`] or ten leases, whichever is longer.
    idle_consumer: Option<Duration>,
    /// The most dead letters one script call lists ([`DEAD_PAGE`]; fewer in tests).
    dead_page: usize,
    /// The most bytes of records one script call lists past its first ([`DEAD_BYTES`];
    /// fewer in tests).
    dead_bytes: usize,
    /// How many bytes of records a pull leases before it stops ([`PULL_BYTES`]).
    pull_bytes: usize,
    /// How long Redis has to answer a command ([`RESPONSE_TIMEOUT`], or
    /// [`response_timeout`](RedisInbox::response_timeout); a change that waits for
    /// durability, its wait more): set by [`connect`](Self::connect), whose manager has no
    /// response timeout of its own, or by [`response_timeout`](Self::response_timeout).
    /// `None` ([`from_manager`](Self::from_manager) alone): the manager's own bounds every
    /// command.
    response_timeout: Option<Duration>,
    /// Sends `WAIT` in place of `WAITAOF` (which Redis before 7.2 lacks): it blocks the
    /// same way while replicas are missing.
    #[cfg(test)]
    stand_in_wait: bool,
}

#[derive(Debug)]
struct Keys {
    prefix: String,
    stream: String,
    leases: String,
    delayed: String,
    dead: String,
    seq: String,
    job: String,
    done: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let base = format!("{{{prefix}}}:");
        Self {
            prefix: prefix.to_owned(),
            stream: format!("{base}stream"),
            leases: format!("{base}leases"),
            delayed: format!("{base}delayed"),
            dead: format!("{base}dead"),
            seq: format!("{base}seq"),
            job: format!("{base}job:"),
            done: format!("{base}done:"),
        }
    }
    fn job(&self, key: &str) -> String {
        format!("{}{key}", self.job)
    }
    fn done(&self, key: &str) -> String {
        format!("{}{key}", self.done)
    }
}

struct Scripts {
    push: Script,
    pull: Script,
    ack: Script,
    retry: Script,
    give_back: Script,
    dead: Script,
    dead_list: Script,
    redrive: Script,
    discard: Script,
    cursor: Script,
    sweep: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            push: Script::new(PUSH),
            pull: Script::new(PULL),
            ack: Script::new(&format!("{RELEASE}{ACK}")),
            retry: Script::new(&format!("{RELEASE}{RETRY}")),
            give_back: Script::new(&format!("{RELEASE}{GIVE_BACK}")),
            dead: Script::new(&format!("{RELEASE}{DEAD}")),
            dead_list: Script::new(DEAD_LIST),
            redrive: Script::new(REDRIVE),
            discard: Script::new(DISCARD),
            cursor: Script::new(CURSOR),
            sweep: Script::new(SWEEP),
        }
    }
}

impl fmt::Debug for RedisInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the client: its connection info may hold a password.
        f.debug_struct("RedisInbox")
            .field("prefix", &self.keys.prefix)
            .field("consumer", &self.consumer)
            .field("capacity", &self.capacity)
            .field("retention", &self.retention)
            .field("durability", &self.durability)
            .field("wakeups", &self.wake_client.is_some())
            .finish_non_exhaustive()
    }
}

fn backend(e: ::redis::RedisError) -> InboxError {
    InboxError::Backend(Box::new(e))
}

fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Whether a change fails when its wait for durability fails or falls short.
#[derive(Clone, Copy)]
enum Wait {
    /// It fails (though the script ran): the caller's answer depends on the wait.
    Strict,
    /// It does not, and the shortfall is answered beside it to be logged: losing the change
    /// with the primary only means a job is delivered again.
    Lenient,
}

/// The longest time a finished key is remembered: 1,000 years, "forever".
const MAX_RETENTION_MS: i64 = 1_000 * 365 * 86_400 * 1_000;

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What a `WAITAOF` answer says of a change: `None` when it is as durable as asked, else
/// why not (the command failed: no AOF, a server older than 7.2; or it fell short).
fn shortfall(
    local: bool,
    replicas: u32,
    timeout: Duration,
    waited: ::redis::RedisResult<(u32, u32)>,
) -> Option<InboxError> {
    match waited {
        Err(e) => Some(backend(e)),
        Ok((got_local, got_replicas)) if got_local < u32::from(local) || got_replicas < replicas => {
            Some(InboxError::Backend(
                format!(
                    "WAITAOF: fsynced locally {got_local}/{}, on {got_replicas}/{replicas} replicas within {timeout:?}",
                    u32::from(local)
                )
                .into(),
            ))
        }
        Ok(_) => None,
    }
}

/// The webhook in a job's stored record (`meta`, `body`), if it is readable and names the
/// key the job is stored under (`key`); else what is wrong with it.
fn read_record(key: &str, meta: &[u8], body: &[u8]) -> Result<Webhook, String> {
    let webhook = Webhook::from_meta_json(meta, Bytes::copy_from_slice(body)).map_err(|e| e.to_string())?;
    if webhook.key() != key {
        return Err(format!("stored under the key {key}, but its record names {}", webhook.key()));
    }
    Ok(webhook)
}

/// `answer`, unless it takes longer than `limit` (none: no limit): then a timed-out I/O
/// error, as redis-rs's own response timeout answers.
async fn within<T>(
    limit: Option<Duration>,
    answer: impl Future<Output = ::redis::RedisResult<T>>,
) -> ::redis::RedisResult<T> {
    let Some(limit) = limit else { return answer.await };
    tokio::time::timeout(limit, answer)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
}

/// Logs a warning when the server's eviction policy can lose the inbox's keys; says
/// nothing when the server will not tell (a refused or renamed `CONFIG`).
async fn warn_on_eviction(mut conn: ConnectionManager) {
    let answer = within(
        Some(RESPONSE_TIMEOUT),
        ::redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut conn),
    )
    .await;
    if let Some(policy) = policy_of(answer)
        && let Some(risk) = eviction_risk(&policy)
    {
        tracing::warn!(%policy, risk, "Redis inbox: the server's maxmemory-policy is not noeviction");
    }
}

/// The `maxmemory-policy` in a `CONFIG GET` answer; `None` when the server did not say.
fn policy_of(answer: ::redis::RedisResult<HashMap<String, String>>) -> Option<String> {
    answer.ok()?.remove("maxmemory-policy")
}

/// What an eviction policy puts at risk in the inbox; `None` under `noeviction`.
fn eviction_risk(policy: &str) -> Option<&'static str> {
    Some(match policy {
        "noeviction" => return None,
        p if p.starts_with("allkeys-") => "jobs may be evicted: acknowledged webhooks lost",
        p if p.starts_with("volatile-") => "finished keys may be evicted: late resends processed again",
        _ => "keys may be evicted",
    })
}

/// While anyone waits, blocks on the stream for entries the group has not handed out, and
/// wakes the waiters when there are some. Then it waits for a new waiter (one that came
/// after the wake-up, so after its pull) before it looks again: it never spins on entries
/// that nobody takes.
async fn watch_stream(client: Client, keys: Arc<Keys>, group: Arc<str>, cursor: Script, signal: Arc<Signal>) {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(BLOCK + CONNECT_TIMEOUT));
    let mut conn: Option<MultiplexedConnection> = None;
    let mut failures = 0;
    loop {
        signal.demanded().await;
        while signal.waiters() > 0 {
            let looked = match &mut conn {
                Some(c) => new_entries(c, &keys.stream, &group, &cursor).await,
                None => match client.get_multiplexed_async_connection_with_config(&config).await {
                    Ok(mut c) => {
                        // For `CLIENT LIST`; a server that refuses it (ACLs) is no problem.
                        let _: Result<(), _> = ::redis::cmd("CLIENT")
                            .arg("SETNAME")
                            .arg(client_name(&keys.prefix))
                            .query_async(&mut c)
                            .await;
                        new_entries(conn.insert(c), &keys.stream, &group, &cursor).await
                    }
                    Err(e) => Err(e),
                },
            };
            match looked {
                Ok(found) => {
                    failures = 0;
                    if found {
                        signal.wake();
                        break;
                    }
                }
                Err(e) => {
                    conn = None;
                    failures += 1;
                    let delay = wake::RECONNECT.delay(failures);
                    tracing::warn!(error = %e, retry_in = ?delay, "Redis inbox: the wake-up connection failed; idle workers poll until it is back");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// `hookguard-wake:<prefix>`, with what a connection name cannot hold (spaces, control
/// characters) replaced by `_`.
fn client_name(prefix: &str) -> String {
    let prefix: String = prefix.chars().map(|c| if c.is_ascii_graphic() { c } else { '_' }).collect();
    format!("hookguard-wake:{prefix}")
}

/// Whether the stream gets (or has) an entry the group has not handed out, within [`BLOCK`].
async fn new_entries(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    cursor: &Script,
) -> ::redis::RedisResult<bool> {
    let after: String = cursor.key(stream).arg(group).invoke_async(conn).await?;
    let read: Value = ::redis::cmd("XREAD")
        .arg("COUNT")
        .arg(1)
        .arg("BLOCK")
        .arg(duration_ms(BLOCK))
        .arg("STREAMS")
        .arg(stream)
        .arg(after)
        .query_async(conn)
        .await?;
    Ok(!matches!(read, Value::Nil))
}

impl RedisInbox {
    /// Connects to `url` with a reconnecting connection manager. The stream and consumer
    /// group are created on first use. Logs a warning when the server's `maxmemory-policy`
    /// is not `noeviction` (see [Memory and eviction](Self#memory-and-eviction)).
    ///
    /// Redis is given 500 ms to answer each command (as redis-rs's default response
    /// timeout; [`response_timeout`](Self::response_timeout) changes it, and must when the
    /// guard's body limit is raised or the link is slow), and a change that waits for
    /// durability its [`WaitAof`](RedisDurability::WaitAof) timeout more. Changes that wait for durability
    /// are sent on a connection of their own (opened by the first of them), so that their
    /// waits hold up no other command (see [`RedisDurability`]).
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the URL is invalid or the server cannot be reached.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let inbox = hookguard::inbox::RedisInbox::connect("redis://127.0.0.1:6379").await.unwrap();
    /// # let _ = inbox; }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, InboxError> {
        let client = ::redis::Client::open(url).map_err(backend)?;
        // No response timeout in the manager: the inbox bounds each command itself, so that
        // one that waits for durability can be given longer (see `answer_within`).
        let config = ConnectionManagerConfig::new().set_response_timeout(None);
        let conn =
            ConnectionManager::new_with_config(client.clone(), config.clone()).await.map_err(backend)?;
        warn_on_eviction(conn.clone()).await;
        // Opened by the first change that waits for durability: none without `WaitAof`.
        let waits = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(backend)?;
        let mut inbox = Self::from_manager(conn).wait_manager(waits).wakeups(client);
        inbox.response_timeout = Some(RESPONSE_TIMEOUT);
        Ok(inbox)
    }

    /// Uses an existing connection manager. The stream and group are created on first use.
    /// Idle workers poll until [`wakeups`](Self::wakeups) gives a client for the blocking
    /// connection. The eviction policy is not checked (as [`connect`](Self::connect) does):
    /// see [Memory and eviction](Self#memory-and-eviction). The manager's response timeout
    /// bounds every command, a wait for durability included: under
    /// [`WaitAof`](RedisDurability::WaitAof), make it longer than the wait's timeout, and
    /// give the changes that wait a manager of their own with
    /// [`wait_manager`](Self::wait_manager): on this one alone, every command queues behind
    /// each wait (see [`RedisDurability`]).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let inbox = hookguard::inbox::RedisInbox::from_manager(client.get_connection_manager().await?);
    /// # let _ = inbox; Ok(()) }
    /// ```
    #[must_use]
    pub fn from_manager(conn: ConnectionManager) -> Self {
        Self {
            waits: conn.clone(),
            conn,
            keys: Arc::new(Keys::new("hookguard")),
            group: Arc::from("hookguard"),
            consumer: Arc::from(
                format!("hookguard-{}-{:08x}", std::process::id(), fastrand::u32(..)).as_str(),
            ),
            capacity: 100_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            durability: RedisDurability::None,
            clock: Arc::new(SystemClock),
            scripts: Arc::new(Scripts::new()),
            wake_client: None,
            listener: Arc::new(Background::new()),
            next_sweep: Arc::new(AtomicI64::new(i64::MIN)),
            refused_move: Arc::new(AtomicI64::new(i64::MIN)),
            idle_consumer: None,
            dead_page: DEAD_PAGE,
            dead_bytes: DEAD_BYTES,
            pull_bytes: PULL_BYTES,
            response_timeout: None,
            #[cfg(test)]
            stand_in_wait: false,
        }
    }

    /// Sends the changes that wait for durability (under
    /// [`WaitAof`](RedisDurability::WaitAof): pushes, acks, retries, moves to the dead
    /// letters, re-drives and discards) on `manager`, each in one pipeline with its
    /// `WAITAOF`, and every other command on the manager given to
    /// [`from_manager`](Self::from_manager): Redis answers nothing else on a connection
    /// while a `WAITAOF` on it waits, so on one connection every pull, listing and count
    /// would queue behind each wait, up to its timeout while a replica is down. Make it a
    /// manager of its own (not a clone of the other, which shares its connection), from
    /// the same server, with a response timeout longer than the wait's.
    /// [`connect`](Self::connect) does this.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> redis::RedisResult<()> {
    /// use std::time::Duration;
    /// use hookguard::inbox::{RedisDurability, RedisInbox};
    /// use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let longer = ConnectionManagerConfig::new().set_response_timeout(Some(Duration::from_secs(1)));
    /// let inbox = RedisInbox::from_manager(client.get_connection_manager().await?)
    ///     .wait_manager(ConnectionManager::new_with_config(client.clone(), longer).await?)
    ///     .durability(RedisDurability::WaitAof { local: true, replicas: 1, timeout: Duration::from_millis(200) })
    ///     .wakeups(client);
    /// # let _ = inbox; Ok(()) }
    /// ```
    #[must_use]
    pub fn wait_manager(mut self, manager: ConnectionManager) -> Self {
        self.waits = manager;
        self
    }

    /// Lets [`wait`](Inbox::wait) return as soon as any replica adds work: its blocking
    /// connection (one per inbox, see [Wake-ups](Self#wake-ups)) is opened with `client`.
    /// [`connect`](Self::connect) does this with its URL; call it after
    /// [`from_manager`](Self::from_manager) with the client the manager was made from.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let inbox = hookguard::inbox::RedisInbox::from_manager(client.get_connection_manager().await?)
    ///     .wakeups(client);
    /// # let _ = inbox; Ok(()) }
    /// ```
    #[must_use]
    pub fn wakeups(mut self, client: Client) -> Self {
        self.wake_client = Some(client);
        self.listener = Arc::new(Background::new());
        self
    }

    /// Sets the key prefix (default `hookguard`; keys are `{prefix}:…`). Inboxes with the
    /// same prefix on the same server are one inbox.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let inbox = hookguard::inbox::RedisInbox::connect("redis://127.0.0.1:6379").await.unwrap().prefix("app1");
    /// # let _ = inbox; }
    /// ```
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.keys = Arc::new(Keys::new(prefix));
        self.listener = Arc::new(Background::new());
        self.next_sweep = Arc::new(AtomicI64::new(i64::MIN));
        self
    }

    /// Names this process's consumer in the group (default `hookguard-<pid>-<random>`),
    /// as `XPENDING` and `XINFO CONSUMERS` show it.
    ///
    /// Every process with the default name adds a consumer to the group. So that they do
    /// not pile up, the first pull of an inbox (and then one pull an hour, by the
    /// [clock](Self::clock)) deletes the group's consumers that hold no pending entry and
    /// have been idle (`XINFO CONSUMERS`) for an hour or ten leases, whichever is longer
    /// (`XGROUP DELCONSUMER`, in one script with the check). Nothing is lost when a live
    /// consumer is deleted so: it held no entry, and it is made again by its next
    /// `XREADGROUP` or `XCLAIM` that takes one. A consumer that holds entries is never
    /// deleted; once its leases run out, other consumers claim them, and it goes at a later
    /// look.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let inbox = hookguard::inbox::RedisInbox::connect("redis://127.0.0.1:6379").await.unwrap().consumer("web-1");
    /// # let _ = inbox; }
    /// ```
    #[must_use]
    pub fn consumer(mut self, name: &str) -> Self {
        self.consumer = Arc::from(name);
        self
    }

    /// Sets the capacity (waiting + leased + delayed + dead jobs; default 100,000).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let inbox = hookguard::inbox::RedisInbox::connect("redis://127.0.0.1:6379").await.unwrap().capacity(10_000);
    /// # let _ = inbox; }
    /// ```
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How long a finished key is remembered, so a late resend is a duplicate (default
    /// 7 days, on Redis's clock).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// let inbox = hookguard::inbox::RedisInbox::connect("redis://127.0.0.1:6379").await.unwrap()
    ///     .retention(Duration::from_secs(3 * 24 * 3600));
    /// # let _ = inbox; }
    /// ```
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets how long changes wait for persistence (see [`RedisDurability`]).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::inbox::{RedisDurability, RedisInbox};
    /// let inbox = RedisInbox::connect("redis://127.0.0.1:6379").await.unwrap().durability(
    ///     RedisDurability::WaitAof { local: true, replicas: 1, timeout: Duration::from_millis(500) },
    /// );
    /// # let _ = inbox; }
    /// ```
    #[must_use]
    pub fn durability(mut self, durability: RedisDurability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets how long Redis has to answer each command (default for
    /// [`connect`](Self::connect): 500 ms, as redis-rs's own default); a change that waits for
    /// durability is given its [`WaitAof`](RedisDurability::WaitAof) timeout more. On an
    /// inbox made by [`from_manager`](Self::from_manager) it bounds each command besides the
    /// manager's own response timeout.
    ///
    /// It must cover sending the largest body the guard accepts (its body limit) and a
    /// pull's answer: a pull hands out whole bodies, up to 1 MiB of records and one job
    /// more, so one job of the largest size. On a link too slow for that within it, a push
    /// of a large body fails after its script kept the webhook (the sender is answered
    /// `503`, and its retry `Duplicate`), and a pull that takes such a job fails after
    /// leasing it, every lease period, an attempt counted each time, the job never run.
    /// At 500 ms, 1 MiB needs about 17 Mbit/s; a limit raised to 10 MiB needs a second or
    /// more on a 100 Mbit/s link.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// let inbox = hookguard::inbox::RedisInbox::connect("redis://127.0.0.1:6379").await.unwrap()
    ///     .response_timeout(Duration::from_secs(5));
    /// # let _ = inbox; }
    /// ```
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// Sets the clock for lease ends, due times and dead-letter times.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{clock::ManualClock, inbox::RedisInbox};
    /// let inbox = RedisInbox::connect("redis://127.0.0.1:6379").await.unwrap().clock(ManualClock::at_unix(0));
    /// # let _ = inbox; }
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Creates the stream and the consumer group if missing (idempotent; also done on
    /// each pull that finds the group missing).
    ///
    /// # Errors
    /// [`InboxError::Backend`] when Redis fails.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let inbox = hookguard::inbox::RedisInbox::connect("redis://127.0.0.1:6379").await.unwrap();
    /// inbox.create_group().await.unwrap();
    /// # }
    /// ```
    pub async fn create_group(&self) -> Result<(), InboxError> {
        let mut conn = self.conn.clone();
        let create = ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(&*self.group)
            .arg("0")
            .arg("MKSTREAM")
            .to_owned();
        let created: Result<Value, _> =
            within(self.answer_within(false), create.query_async(&mut conn)).await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    /// How long Redis has to answer a command (`None`: as long as the connection manager
    /// lets it), and one that waits for durability (`waits`): under
    /// [`RedisDurability::WaitAof`], its `timeout` more, so that the wait can run its course
    /// and its answer arrive. Were the wait cut short by the response timeout, a change would
    /// fail after its script ran (a push answered `503` for a webhook it kept).
    fn answer_within(&self, waits: bool) -> Option<Duration> {
        let limit = self.response_timeout?;
        Some(match self.durability {
            RedisDurability::WaitAof { timeout, .. } if waits => limit.saturating_add(timeout),
            _ => limit,
        })
    }

    /// Runs a script; under [`RedisDurability::WaitAof`], in one pipeline with the
    /// `WAITAOF` that waits for it, and fails when the wait fails or falls short (though
    /// the script ran). For changes whose sender's acknowledgement (or an operator's answer)
    /// depends on the wait.
    async fn run<T: ::redis::FromRedisValue>(&self, call: &ScriptInvocation<'_>) -> Result<T, InboxError> {
        let (out, short) = self.run_lenient(call).await?;
        match short {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// [`run`](Self::run) for changes whose loss with the primary only means a job is
    /// delivered again (a move to the dead letters): the script's answer (an error if the
    /// script failed), and why the wait for durability failed or fell short, if it did, for
    /// the caller to log. Failing such a change would throw away what its script did.
    ///
    /// `WAITAOF` waits for the writes of the connection it is sent on: sent apart, after a
    /// reconnect between the two, it would find nothing to wait for and answer at once, and
    /// a change would be reported durable that was not; so both go in one pipeline, on the
    /// connection kept for waits (see [`wait_manager`](Self::wait_manager)).
    async fn run_lenient<T: ::redis::FromRedisValue>(
        &self,
        call: &ScriptInvocation<'_>,
    ) -> Result<(T, Option<InboxError>), InboxError> {
        let RedisDurability::WaitAof { local, replicas, timeout } = self.durability else {
            return Ok((self.run_unwaited(call).await?, None));
        };
        let mut conn = self.waits.clone();
        let mut pipe = ::redis::pipe();
        // Each answer on its own: the script's is wanted whatever the wait's.
        pipe.ignore_errors().invoke_script(call).add_command(self.wait_command(local, replicas, timeout));
        type Answers<T> = (::redis::RedisResult<T>, ::redis::RedisResult<(u32, u32)>);
        // The wait counts against the time Redis has to answer (see `answer_within`).
        let waits = self.answer_within(true);
        let mut answered: Answers<T> = within(waits, pipe.query_async(&mut conn)).await.map_err(backend)?;
        // The server does not have the script (yet, or any more, after a restart): a failed
        // EVALSHA ran nothing, so load it and send both again.
        if matches!(&answered.0, Err(e) if e.code() == Some("NOSCRIPT")) {
            within(self.answer_within(false), call.load_async(&mut conn)).await.map_err(backend)?;
            answered = within(waits, pipe.query_async(&mut conn)).await.map_err(backend)?;
        }
        let (out, waited) = answered;
        Ok((out.map_err(backend)?, shortfall(local, replicas, timeout, waited)))
    }

    /// `WAITAOF` for `local` and `replicas`, at most `timeout`.
    fn wait_command(&self, local: bool, replicas: u32, timeout: Duration) -> ::redis::Cmd {
        // Redis before 7.2 has no `WAITAOF`: `WAIT` (for replicas only) blocks the same way.
        #[cfg(test)]
        if self.stand_in_wait {
            return ::redis::cmd("WAIT").arg(replicas).arg(duration_ms(timeout).max(1)).to_owned();
        }
        ::redis::cmd("WAITAOF")
            .arg(u32::from(local))
            .arg(replicas)
            .arg(duration_ms(timeout).max(1))
            .to_owned()
    }

    /// Runs a script with no wait for durability, whatever the setting, on the connection
    /// that no wait holds up.
    async fn run_unwaited<T: ::redis::FromRedisValue>(
        &self,
        call: &ScriptInvocation<'_>,
    ) -> Result<T, InboxError> {
        let mut conn = self.conn.clone();
        within(self.answer_within(false), call.invoke_async(&mut conn)).await.map_err(backend)
    }

    async fn push_now(&self, webhook: Webhook) -> Result<Pushed, InboxError> {
        // Refused, not accepted and set aside as damaged at its first pull.
        webhook.check_keepable()?;
        let key = webhook.key();
        let k = &self.keys;
        // A copy is answered `Duplicate` (`200`) only once the webhook it copies is as
        // durable as a push would be (the `WAITAOF` with the script sees to it): the push
        // that kept it may have failed its own wait (and been answered `503`), or still be
        // waiting at another replica.
        let outcome: i64 = self
            .run(
                self.scripts
                    .push
                    .key(&k.stream)
                    .key(k.job(key))
                    .key(k.done(key))
                    .key(&k.delayed)
                    .key(&k.dead)
                    .key(&k.seq)
                    .arg(key)
                    .arg(webhook.to_meta_json())
                    .arg(webhook.body().as_ref())
                    .arg(self.capacity)
                    .arg(u8::from(self.durability != RedisDurability::None)),
            )
            .await?;
        match outcome {
            1 => Ok(Pushed::Accepted),
            0 => Ok(Pushed::Duplicate),
            _ => Err(InboxError::Full),
        }
    }

    async fn pull_now(&self, max: usize, lease: Duration) -> Result<Vec<Job>, InboxError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(PULL_MAX);
        self.sweep_if_due(lease).await;
        match self.pull_once(max, lease).await {
            Err(InboxError::Backend(e)) if e.to_string().contains("NOGROUP") => {
                self.create_group().await?;
                self.pull_once(max, lease).await
            }
            other => other,
        }
    }

    /// Deletes the group's idle consumers that hold nothing (see
    /// [`consumer`](Self::consumer)), once every [`SWEEP_EVERY`] per inbox (and its clones).
    /// A failure is logged and fails no pull: it is only housekeeping.
    async fn sweep_if_due(&self, lease: Duration) {
        let now = millis(self.clock.now());
        let due = self.next_sweep.load(Ordering::Relaxed);
        let next = now.saturating_add(duration_ms(SWEEP_EVERY));
        if now < due
            || self.next_sweep.compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let idle = self.idle_consumer.unwrap_or_else(|| IDLE_CONSUMER.max(lease.saturating_mul(10)));
        let mut conn = self.conn.clone();
        let mut call = self.scripts.sweep.key(&self.keys.stream);
        call.arg(&*self.group).arg(&*self.consumer).arg(duration_ms(idle));
        let swept: Result<i64, _> = within(self.answer_within(false), call.invoke_async(&mut conn)).await;
        match swept {
            Ok(0) => {}
            Ok(gone) => tracing::info!(gone, "Redis inbox: idle consumers with nothing pending deleted"),
            Err(e) => tracing::warn!(error = %e, "Redis inbox: could not look for idle consumers to delete"),
        }
    }

    async fn pull_once(&self, max: usize, lease: Duration) -> Result<Vec<Job>, InboxError> {
        let now = self.clock.now();
        self.listener.pulling(now);
        let k = &self.keys;
        // No wait for durability (see `RedisDurability`): a pull answers at once, and the
        // next change that waits covers its leases.
        let answer: Vec<Vec<u8>> = self
            .run_unwaited(
                self.scripts
                    .pull
                    .key(&k.stream)
                    .key(&k.leases)
                    .key(&k.delayed)
                    .key(&k.seq)
                    .arg(millis(now))
                    .arg(millis(super::time_after(now, lease)))
                    .arg(max)
                    .arg(&*self.group)
                    .arg(&*self.consumer)
                    .arg(&k.job)
                    // With the counter, in every receipt of this pull: a counter set back
                    // (a restart that lost its last writes) hands out no receipt a worker
                    // still holds, whose late ack or retry would settle another's lease.
                    .arg(format!("{:016x}", fastrand::u64(..)))
                    .arg(self.pull_bytes.max(1)),
            )
            .await?;
        let Some((capped, flat)) = answer.split_first() else {
            return Err(InboxError::Backend("the pull script answered nothing".into()));
        };
        if capped.starts_with(b"1") {
            // Due jobs may be left (expired leases not taken back): a waiter on a clone of
            // this inbox (another pool's) must look at them.
            self.listener.pull_was_capped();
        }
        let refused = if capped.ends_with(b"r") { millis(now) } else { i64::MIN };
        self.refused_move.store(refused, Ordering::Relaxed);
        let mut jobs = Vec::with_capacity(flat.len() / 5);
        for row in flat.chunks_exact(5) {
            let [key, meta, body, attempts, receipt] = row else { continue };
            let receipt = String::from_utf8_lossy(receipt);
            let key = String::from_utf8_lossy(key);
            let webhook = match read_record(&key, meta, body) {
                Ok(webhook) => webhook,
                Err(e) => {
                    // A damaged job would fail every pull that takes it (and hold up the jobs
                    // taken with it), or, stored under another key than its record's, could
                    // never be finished (ack, retry and dead letter address the record's
                    // key), its handler run at every lease: set it aside as a dead letter, as
                    // SQLite does. Its key (no secret) is logged: `discard` and `redrive`
                    // take it.
                    tracing::error!(key = %key, error = %e, "unreadable Redis inbox job dead-lettered");
                    match self.bury(&key, &receipt, &e).await {
                        Ok(()) => super::count_set_aside(Some(&key)),
                        // The jobs leased with it are handed out all the same; it stays
                        // leased, and the pull that takes it next tries again.
                        Err(failed) => tracing::warn!(
                            key = %key,
                            error = %failed,
                            "an unreadable Redis inbox job could not be dead-lettered"
                        ),
                    }
                    continue;
                }
            };
            let attempt = std::str::from_utf8(attempts).ok().and_then(|a| a.parse().ok()).unwrap_or(1);
            jobs.push(Job::new(webhook, attempt, receipt.into_owned()));
        }
        Ok(jobs)
    }

    /// Moves the job leased under `receipt` to the dead letters. A wait for durability
    /// that fails or falls short fails no move: the job is a dead letter, and should the
    /// primary lose the move, the job is leased again and delivered once more.
    async fn bury(&self, key: &str, receipt: &str, error: &str) -> Result<(), InboxError> {
        let at = self.clock.now().unix_timestamp_nanos().to_string().into_bytes();
        let args = [error.as_bytes().to_vec(), at];
        let short = self
            .release_key(
                &self.scripts.dead,
                key,
                receipt,
                &[&self.keys.dead, &self.keys.seq],
                &args,
                Wait::Lenient,
            )
            .await?;
        if let Some(e) = short {
            tracing::warn!(key, error = %e, "Redis inbox: a dead-letter move's wait for durability failed or fell short; the job is a dead letter");
        }
        Ok(())
    }

    /// Runs one of the lease-ending scripts; `LeaseLost` when the receipt no longer holds.
    async fn release(
        &self,
        script: &Script,
        job: &Job,
        extra_keys: &[&str],
        args: &[Vec<u8>],
    ) -> Result<(), InboxError> {
        // A strict wait answers its shortfall as an error: nothing comes beside the change.
        self.release_key(script, job.webhook().key(), job.receipt(), extra_keys, args, Wait::Strict)
            .await
            .map(drop)
    }

    /// [`release`](Self::release) by the job's key and receipt; under [`Wait::Lenient`], the
    /// wait for durability's failure or shortfall is answered beside the change.
    async fn release_key(
        &self,
        script: &Script,
        key: &str,
        receipt: &str,
        extra_keys: &[&str],
        args: &[Vec<u8>],
        wait: Wait,
    ) -> Result<Option<InboxError>, InboxError> {
        let k = &self.keys;
        let mut call = script.key(&k.stream);
        call.key(k.job(key)).key(&k.leases);
        for extra in extra_keys {
            call.key(*extra);
        }
        call.arg(key).arg(receipt).arg(&*self.group);
        for a in args {
            call.arg(a.as_slice());
        }
        let (done, short): (Option<i64>, _) = match wait {
            Wait::Strict => (self.run(&call).await?, None),
            Wait::Lenient => self.run_lenient(&call).await?,
        };
        if done != Some(1) {
            return Err(InboxError::LeaseLost);
        }
        Ok(short)
    }

    /// Up to `limit` dead letters, oldest first, a page of at most
    /// [`dead_page`](Self::dead_page) (and [`dead_bytes`](Self::dead_bytes)) per script
    /// call, each from where the one before ended.
    async fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, InboxError> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        let mut left = limit;
        // The score and key of the last entry of the page before (none before the first).
        let mut after: (Vec<u8>, Vec<u8>) = Default::default();
        while left > 0 {
            let page = left.min(self.dead_page.max(1));
            let (cut, flat) = self.dead_page_after(&mut conn, page, &after).await?;
            let listed = flat.len() / 7;
            for row in flat.chunks_exact(7) {
                let [key, score, meta, body, attempts, error, failed_at] = row else { continue };
                after = (score.clone(), key.clone());
                let key = String::from_utf8_lossy(key);
                let webhook = match read_record(&key, meta, body) {
                    Ok(webhook) => webhook,
                    // One damaged entry must not hide the others (see `Inbox::dead_letters`).
                    // Its key (no secret) is logged: `discard` takes it (the key its record
                    // names, which a listed dead letter would show, would not).
                    Err(e) => {
                        tracing::warn!(key = %key, error = %e, "an unreadable Redis dead letter is left out of the list");
                        continue;
                    }
                };
                let failed_at = std::str::from_utf8(failed_at)
                    .ok()
                    .and_then(|n| n.parse::<i128>().ok())
                    .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                out.push(DeadLetter {
                    webhook,
                    attempts: std::str::from_utf8(attempts).ok().and_then(|a| a.parse().ok()).unwrap_or(0),
                    error: String::from_utf8_lossy(error).into_owned(),
                    failed_at,
                });
                // Only a listed letter takes a place among the `limit`: the list reads on
                // past unreadable ones (a page of them would otherwise end a listing short).
                left = left.saturating_sub(1);
            }
            // A page cut short by its bytes is no end of the list; an empty one is.
            if listed == 0 || (listed < page && !cut) {
                break;
            }
        }
        Ok(out)
    }

    /// One [`DEAD_LIST`] call: up to `count` dead letters after `after` (the score and key
    /// of the last one listed before; empty for the first), seven fields each, and whether
    /// the call stopped short of `count` for its bytes ([`dead_bytes`](Self::dead_bytes)).
    async fn dead_page_after(
        &self,
        conn: &mut ConnectionManager,
        count: usize,
        after: &(Vec<u8>, Vec<u8>),
    ) -> Result<(bool, Vec<Vec<u8>>), InboxError> {
        let mut call = self.scripts.dead_list.key(&self.keys.dead);
        call.arg(count).arg(&self.keys.job).arg(&after.0).arg(&after.1).arg(self.dead_bytes);
        let mut flat: Vec<Vec<u8>> =
            within(self.answer_within(false), call.invoke_async(conn)).await.map_err(backend)?;
        if flat.is_empty() {
            return Ok((false, flat));
        }
        let cut = flat.remove(0) == b"1";
        Ok((cut, flat))
    }

    async fn redrive_now(&self, key: &str) -> Result<bool, InboxError> {
        let k = &self.keys;
        let done: i64 =
            self.run(self.scripts.redrive.key(&k.stream).key(k.job(key)).key(&k.dead).arg(key)).await?;
        Ok(done == 1)
    }

    async fn discard_now(&self, key: &str) -> Result<bool, InboxError> {
        let k = &self.keys;
        let done: i64 = self
            .run(
                self.scripts
                    .discard
                    .key(&k.dead)
                    .key(k.job(key))
                    .key(k.done(key))
                    .arg(key)
                    .arg(self.retention_ms()),
            )
            .await?;
        Ok(done == 1)
    }

    /// How long a finished key is kept, in milliseconds for `PX`: Redis refuses an expiry
    /// past its clock's range, so a longer retention is 1,000 years.
    fn retention_ms(&self) -> i64 {
        duration_ms(self.retention).clamp(1, MAX_RETENTION_MS)
    }

    /// The earliest due time of a retry (after the last refused move of retries, if the
    /// last pull's was refused) or of the end of a lease after `after` (exclusive).
    async fn next_due(&self, after: Option<OffsetDateTime>) -> Result<Option<OffsetDateTime>, InboxError> {
        let mut conn = self.conn.clone();
        // Every retry is work for the next pull, one due before the last pull began too (a
        // retry stored since, due at once, or given back by a replica whose clock is
        // behind): only those a refused move left behind are not.
        let refused = self.refused_move.load(Ordering::Relaxed);
        let retries = if refused == i64::MIN { "-inf".to_owned() } else { format!("({refused}") };
        let leases = after.map_or_else(|| "-inf".to_owned(), |at| format!("({}", millis(at)));
        let mut pipe = ::redis::pipe();
        for (key, min) in [(&self.keys.delayed, &retries), (&self.keys.leases, &leases)] {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(key)
                .arg(min)
                .arg("+inf")
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(1);
        }
        let earliest: Vec<Vec<(String, f64)>> =
            within(self.answer_within(false), pipe.query_async(&mut conn)).await.map_err(backend)?;
        Ok(earliest
            .iter()
            .flatten()
            .map(|(_, ms)| *ms)
            .reduce(f64::min)
            .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok()))
    }

    async fn wait_now(&self, timeout: Duration) {
        let deadline = super::instant_after(tokio::time::Instant::now(), timeout);
        let Some(client) = &self.wake_client else {
            return tokio::time::sleep_until(deadline).await;
        };
        let signal = self.listener.start(|signal| {
            watch_stream(
                client.clone(),
                Arc::clone(&self.keys),
                Arc::clone(&self.group),
                self.scripts.cursor.clone(),
                signal,
            )
        });
        let mut wakes = signal.subscribe();
        // Leases that ended by the last pull were due for it, and it took those jobs.
        let after = self.listener.last_pull().map(|(_, at)| at);
        wake::until_due_or_signalled(deadline, self.next_due(after), &*self.clock, &mut wakes).await;
    }

    async fn depth_now(&self) -> Result<usize, InboxError> {
        let mut conn = self.conn.clone();
        let mut pipe = ::redis::pipe();
        pipe.cmd("XLEN").arg(&self.keys.stream).cmd("ZCARD").arg(&self.keys.delayed);
        let (waiting, delayed): (usize, usize) =
            within(self.answer_within(false), pipe.query_async(&mut conn)).await.map_err(backend)?;
        Ok(waiting + delayed)
    }
}

impl Inbox for RedisInbox {
    fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<Pushed, InboxError>> {
        Box::pin(self.push_now(webhook))
    }

    fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>> {
        Box::pin(self.pull_now(max, lease))
    }

    fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>> {
        let done = self.keys.done(job.webhook().key());
        let retention = self.retention_ms().to_string().into_bytes();
        Box::pin(async move { self.release(&self.scripts.ack, job, &[&done], &[retention]).await })
    }

    fn retry<'a>(
        &'a self,
        job: &'a Job,
        not_before: OffsetDateTime,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        let args = [millis(not_before).to_string().into_bytes(), error.as_bytes().to_vec()];
        Box::pin(async move { self.release(&self.scripts.retry, job, &[&self.keys.delayed], &args).await })
    }

    fn give_back<'a>(&'a self, job: &'a Job, now: OffsetDateTime) -> BoxFuture<'a, Result<(), InboxError>> {
        let args = [millis(now).to_string().into_bytes(), b"given back unprocessed".to_vec()];
        Box::pin(
            async move { self.release(&self.scripts.give_back, job, &[&self.keys.delayed], &args).await },
        )
    }

    fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(self.bury(job.webhook().key(), job.receipt(), error))
    }

    /// Read a page at a time (256 dead letters or 1 MiB of their records, one script each;
    /// see [Layout](RedisInbox#layout)).
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

    /// Returns when the stream holds work no consumer has taken (from any replica), when a
    /// retry becomes due or a lease runs out, or after `timeout` (see
    /// [Wake-ups](RedisInbox#wake-ups)).
    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(self.wait_now(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_connections_are_named_after_the_prefix() {
        assert_eq!(client_name("app1"), "hookguard-wake:app1");
        assert_eq!(client_name("my app\n"), "hookguard-wake:my_app_");
        assert_eq!(client_name("é"), "hookguard-wake:_");
    }

    #[tokio::test]
    async fn debug_shows_no_password() {
        let client = Client::open("redis://:pw-never-shown@127.0.0.1:1").unwrap();
        let manager = ConnectionManager::new_lazy_with_config(
            client.clone(),
            ::redis::aio::ConnectionManagerConfig::new(),
        )
        .unwrap();
        let inbox = RedisInbox::from_manager(manager).wakeups(client);
        let debug = format!("{inbox:?}");
        assert!(!debug.contains("pw-never-shown") && debug.contains("wakeups: true"), "{debug}");
    }

    /// A wrong cursor (say, always `0-0`) would make every `wait` return at once while a
    /// job is leased: check it against the group's state.
    #[tokio::test]
    async fn the_cursor_is_the_last_entry_the_group_handed_out() {
        let Ok(url) = std::env::var("HOOKGUARD_TEST_REDIS_URL") else {
            eprintln!("skipped: backend not configured");
            return;
        };
        let mut conn = Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
        let stream = format!("{{hg_test_cursor_{}_{:08x}}}:stream", std::process::id(), fastrand::u32(..));
        let cursor = Script::new(CURSOR);
        let at = async |conn: &mut MultiplexedConnection, group: &str| -> String {
            cursor.key(&stream).arg(group).invoke_async(conn).await.unwrap()
        };
        assert_eq!(at(&mut conn, "hookguard").await, "0-0", "no stream yet");
        let _: () = ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg("hookguard")
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(at(&mut conn, "hookguard").await, "0-0", "nothing handed out yet");
        let mut ids = Vec::new();
        for key in ["a", "b"] {
            let id: String = ::redis::cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("key")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            ids.push(id);
        }
        let _: Value = ::redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("hookguard")
            .arg("c1")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(at(&mut conn, "hookguard").await, ids[0]);
        assert_eq!(at(&mut conn, "other").await, "0-0", "another group's cursor");
        let _: () = ::redis::cmd("DEL").arg(&stream).query_async(&mut conn).await.unwrap();
    }

    const LEASE: Duration = Duration::from_secs(30);

    /// The URL of the test server, if `HOOKGUARD_TEST_REDIS_URL` gives one.
    fn test_url() -> Option<String> {
        crate::inbox::service_url("HOOKGUARD_TEST_REDIS_URL")
    }

    /// A prefix no other test uses.
    fn unique(what: &str) -> String {
        format!("hg_test_{what}_{}_{:08x}", std::process::id(), fastrand::u32(..))
    }

    fn webhook(id: &str) -> Webhook {
        let v = crate::verify::Verified::new("github", Some(id.to_owned().into()), None, None, [0; 32], 0);
        Webhook::new(
            "test",
            &v,
            Default::default(),
            format!("{{\"id\":\"{id}\"}}").into(),
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    async fn inbox(url: &str, prefix: &str) -> RedisInbox {
        RedisInbox::connect(url)
            .await
            .expect("HOOKGUARD_TEST_REDIS_URL is set: Redis must answer")
            .prefix(prefix)
            .clock(crate::clock::ManualClock::at_unix(1_700_000_000))
    }

    async fn admin(url: &str) -> MultiplexedConnection {
        Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// Deletes every key under `prefix`.
    async fn clean(conn: &mut MultiplexedConnection, prefix: &str) {
        let keys: Vec<String> =
            ::redis::cmd("KEYS").arg(format!("{{{prefix}}}:*")).query_async(conn).await.unwrap();
        if !keys.is_empty() {
            let _: () = ::redis::cmd("DEL").arg(keys).query_async(conn).await.unwrap();
        }
    }

    /// A wait for durability that falls short (more replicas than the test server has, or
    /// a server without `WAITAOF`) fails no dead-letter move: the script ran. A pull does
    /// not wait (failing it would leave its leases to nobody, an attempt counted). A push
    /// still fails.
    #[tokio::test]
    async fn a_durability_shortfall_fails_no_pull_and_no_dead_letter_move() {
        let Some(url) = test_url() else { return };
        let prefix = unique("shortfall");
        let plain = inbox(&url, &prefix).await;
        let short = plain.clone().durability(RedisDurability::WaitAof {
            local: false,
            replicas: 64,
            timeout: Duration::from_millis(20),
        });
        for id in ["a", "b"] {
            plain.push(webhook(id)).await.unwrap();
        }
        let jobs = short.pull(10, LEASE).await.expect("a shortfall fails no pull");
        assert_eq!(jobs.len(), 2, "both jobs handed out");
        assert!(jobs.iter().all(|j| j.attempt() == 1));
        assert!(plain.pull(10, LEASE).await.unwrap().is_empty(), "they are leased");
        short.dead_letter(&jobs[0], "no").await.expect("a shortfall fails no dead-letter move");
        let dead = plain.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        plain.ack(&jobs[1]).await.unwrap();
        assert!(
            matches!(short.push(webhook("c")).await, Err(InboxError::Backend(_))),
            "a push still fails: its sender's acknowledgement depends on the wait"
        );
        clean(&mut admin(&url).await, &prefix).await;
    }

    /// A limit past what Redis takes for an index (`usize::MAX`, "all") lists them all
    /// (was: a Lua number `1.8e+19`, and `ZRANGE` refused it).
    #[tokio::test]
    async fn dead_letters_take_any_limit() {
        let Some(url) = test_url() else { return };
        let prefix = unique("deadlimit");
        let inbox = inbox(&url, &prefix).await;
        inbox.push(webhook("a")).await.unwrap();
        let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
        inbox.dead_letter(&job, "no").await.unwrap();
        let dead = inbox.dead_letters(usize::MAX).await.expect("any limit");
        assert_eq!(dead.len(), 1);
        clean(&mut admin(&url).await, &prefix).await;
    }

    /// A receipt counter set back (a restart that lost its last writes) hands out no
    /// receipt a worker still holds: that worker's late ack finds its lease lost instead of
    /// settling the new holder's.
    #[tokio::test]
    async fn a_counter_set_back_hands_out_no_receipt_again() {
        let Some(url) = test_url() else { return };
        let prefix = unique("setback");
        let clock = crate::clock::ManualClock::at_unix(1_700_000_000);
        let inbox = inbox(&url, &prefix).await.clock(clock.clone());
        let mut admin = admin(&url).await;
        inbox.push(webhook("a")).await.unwrap();
        let first = inbox.pull(1, LEASE).await.unwrap().remove(0);
        let _: () = ::redis::cmd("SET")
            .arg(format!("{{{prefix}}}:seq"))
            .arg(0)
            .query_async(&mut admin)
            .await
            .unwrap();
        clock.advance(LEASE + Duration::from_secs(1));
        let second = inbox.pull(1, LEASE).await.unwrap().remove(0);
        assert_eq!(second.attempt(), 2, "the lease ran out: taken again");
        assert!(matches!(inbox.ack(&first).await, Err(InboxError::LeaseLost)), "the old holder's ack");
        inbox.ack(&second).await.expect("the holder's ack");
        clean(&mut admin, &prefix).await;
    }

    /// `usize::MAX` ("as many as there are") leases them all (was: a Lua number `1.8e+19`,
    /// which Redis refused as a count: every such pull failed).
    #[tokio::test]
    async fn a_pull_takes_any_max() {
        let Some(url) = test_url() else { return };
        let prefix = unique("pullmax");
        let inbox = inbox(&url, &prefix).await;
        for id in ["a", "b"] {
            inbox.push(webhook(id)).await.unwrap();
        }
        let jobs = inbox.pull(usize::MAX, LEASE).await.expect("any max");
        assert_eq!(jobs.len(), 2);
        clean(&mut admin(&url).await, &prefix).await;
    }

    /// A job whose hash is stored under another key than the one its record names (a hash
    /// copied by hand, say) is set aside as damaged at its first pull, logged with the key
    /// it is stored under (which `discard` takes). Handed out, it could never be finished:
    /// ack, retry and dead letter address the hash by the record's key (`LeaseLost`), so
    /// its handler would run at every lease, for ever.
    #[tokio::test]
    async fn a_job_stored_under_another_key_is_set_aside() {
        let Some(url) = test_url() else { return };
        let prefix = unique("otherkey");
        let inbox = inbox(&url, &prefix).await;
        let mut admin = admin(&url).await;
        inbox.push(webhook("a")).await.unwrap();
        let a = webhook("a").key().to_owned();
        let copy = format!("{{{prefix}}}:job:copied");
        let _: i64 = ::redis::cmd("COPY")
            .arg(format!("{{{prefix}}}:job:{a}"))
            .arg(&copy)
            .query_async(&mut admin)
            .await
            .unwrap();
        let sid: String = ::redis::cmd("XADD")
            .arg(format!("{{{prefix}}}:stream"))
            .arg("*")
            .arg("key")
            .arg("copied")
            .query_async(&mut admin)
            .await
            .unwrap();
        let _: i64 =
            ::redis::cmd("HSET").arg(&copy).arg("sid").arg(&sid).query_async(&mut admin).await.unwrap();

        let (jobs, logs) = crate::inbox::logged(inbox.pull(10, LEASE)).await;
        let jobs = jobs.unwrap();
        assert_eq!(jobs.len(), 1, "only a itself");
        assert!(logs.contains("copied"), "{logs}");
        inbox.ack(&jobs[0]).await.expect("a is finished");
        assert!(inbox.pull(10, LEASE).await.unwrap().is_empty(), "the copy is a dead letter");

        let (listed, logs) = crate::inbox::logged(inbox.dead_letters(10)).await;
        assert!(listed.unwrap().is_empty(), "left out of the list, as damaged");
        assert!(logs.contains("copied"), "{logs}");
        assert!(inbox.discard("copied").await.unwrap(), "the logged key discards it");
        clean(&mut admin, &prefix).await;
    }

    /// Pushes a and b, leases a and retries it at once: a is a due retry, b waits.
    async fn a_due_retry_and_a_waiting_job(inbox: &RedisInbox) {
        for id in ["a", "b"] {
            inbox.push(webhook(id)).await.unwrap();
        }
        let a = inbox.pull(1, LEASE).await.unwrap().remove(0);
        assert_eq!(a.webhook().id(), Some("a"));
        inbox.retry(&a, inbox.clock.now(), "again").await.unwrap();
    }

    /// What a pull after [`a_due_retry_and_a_waiting_job`] hands out while moving the due
    /// retry into the stream is refused: b, the waiting job; and the retry stays due, for a
    /// later pull, once the stream takes entries again (`allow`).
    async fn a_refused_move_hands_out_waiting_work(inbox: &RedisInbox, allow: impl AsyncFnOnce()) {
        let jobs = inbox.pull(10, LEASE).await.expect("the waiting job is handed out");
        let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap().to_owned()).collect();
        assert_eq!(ids, ["b"]);
        // The retry left behind is not work a pull could take now: a wait does not return
        // for it (was: at once, and the pool pulled about a thousand times a second).
        let waited =
            tokio::time::timeout(Duration::from_millis(300), inbox.wait(Duration::from_secs(600))).await;
        assert!(waited.is_err(), "the wait returned for a retry the last pull could not move");
        allow().await;
        let again = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(again.len(), 1, "the due retry was kept");
        assert_eq!((again[0].webhook().id(), again[0].attempt()), (Some("a"), 2));
    }

    /// A pull whose move of due retries into the stream is refused still hands out the
    /// work already waiting there (was: the whole script failed, so nothing was handed out
    /// and the queue stopped draining), and keeps the due retries for a later pull. Here the
    /// stream refuses `XADD` because its ids are used up (`XSETID` to the last id): it
    /// touches only this test's keys. A server at its `maxmemory` refuses the move the same
    /// way (see the ignored test below).
    #[tokio::test]
    async fn a_pull_whose_move_of_due_retries_is_refused_hands_out_waiting_work() {
        let Some(url) = test_url() else { return };
        let prefix = unique("refusedmove");
        let inbox = inbox(&url, &prefix).await;
        let mut admin = admin(&url).await;
        a_due_retry_and_a_waiting_job(&inbox).await;
        let stream = format!("{{{prefix}}}:stream");
        let last: Vec<(String, Value)> = ::redis::cmd("XREVRANGE")
            .arg(&stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut admin)
            .await
            .unwrap();
        let setid = async |admin: &mut MultiplexedConnection, id: &str| {
            let _: () = ::redis::cmd("XSETID").arg(&stream).arg(id).query_async(admin).await.unwrap();
        };
        setid(&mut admin, "18446744073709551615-18446744073709551615").await;
        let allow = async || setid(&mut admin.clone(), &last[0].0).await;
        a_refused_move_hands_out_waiting_work(&inbox, allow).await;
        clean(&mut admin, &prefix).await;
    }

    /// A retry stored after a pull but due before that pull began (given back by a
    /// replica whose clock is behind, or retried at once while the pull ran) wakes a
    /// waiter at once (was: only after the wait's whole timeout).
    #[tokio::test]
    async fn a_retry_due_before_the_last_pull_wakes_a_waiter() {
        let Some(url) = test_url() else { return };
        let prefix = unique("earlyretry");
        let inbox = inbox(&url, &prefix).await;
        let mut admin = admin(&url).await;
        inbox.push(webhook("a")).await.unwrap();
        // The last pull (a clone's: they share what they know of pulls) began now, and took
        // a; nothing was pushed since.
        let began = inbox.clock.now();
        let other = inbox.clone();
        // Not capped (it asked for more than there was): it took all that was due.
        let a = other.pull(10, LEASE).await.unwrap().remove(0);
        other.retry(&a, began - Duration::from_millis(1), "again").await.unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(5), inbox.wait(Duration::from_secs(600))).await;
        assert!(waited.is_ok(), "the wait saw the due retry");
        let jobs = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(jobs.len(), 1, "and a pull takes it");
        clean(&mut admin, &prefix).await;
    }

    /// Sets the server's `maxmemory` back to what it was when dropped, even when the test
    /// fails.
    struct RestoreMaxmemory {
        url: String,
        was: String,
    }

    impl Drop for RestoreMaxmemory {
        fn drop(&mut self) {
            let mut conn = Client::open(self.url.as_str()).unwrap().get_connection().unwrap();
            let _: () =
                ::redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(&self.was).query(&mut conn).unwrap();
        }
    }

    /// A `redis-server` of the test's own, on a Unix socket in a directory of its own (no
    /// TCP port, which another server could hold), stopped when dropped.
    struct OwnServer {
        child: std::process::Child,
        url: String,
        /// Where the socket is, removed when dropped.
        _dir: tempfile::TempDir,
    }

    impl OwnServer {
        /// Starts one with nothing kept on disk; `None` without the `redis-server` program.
        async fn start() -> Option<Self> {
            let dir = tempfile::tempdir().ok()?;
            let socket = dir.path().join("redis.sock");
            let mut child = std::process::Command::new("redis-server")
                .args(["--port", "0", "--save", "", "--appendonly", "no", "--dir"])
                .arg(dir.path())
                .arg("--unixsocket")
                .arg(&socket)
                .stdout(std::process::Stdio::null())
                .spawn()
                .ok()?;
            let url = format!("redis+unix://{}", socket.display());
            let client = Client::open(url.as_str()).ok()?;
            // Ready once it answers (a few milliseconds; the bound only ends a test whose
            // server never starts).
            for _ in 0..500 {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("redis-server exited: {status}");
                }
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                    && ::redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
                {
                    return Some(Self { child, url, _dir: dir });
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = child.kill();
            panic!("redis-server did not answer on {url}");
        }
    }

    impl Drop for OwnServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// [`a_pull_whose_move_of_due_retries_is_refused_hands_out_waiting_work`] on a server at
    /// its `maxmemory`, which refuses the move (the script's first write that grows memory).
    /// `maxmemory` is the whole server's, so that every other test's pushes do not fail
    /// meanwhile, on a `redis-server` of its own, started beside the one
    /// `HOOKGUARD_TEST_REDIS_URL` names.
    #[tokio::test]
    async fn a_full_server_still_hands_out_waiting_work() {
        if test_url().is_none() {
            return;
        }
        let Some(server) = OwnServer::start().await else {
            panic!("HOOKGUARD_TEST_REDIS_URL is set: this test needs the redis-server program too")
        };
        let url = server.url.clone();
        let prefix = unique("fullserver");
        let inbox = inbox(&url, &prefix).await;
        let mut admin = admin(&url).await;
        a_due_retry_and_a_waiting_job(&inbox).await;
        let was: HashMap<String, String> =
            ::redis::cmd("CONFIG").arg("GET").arg("maxmemory").query_async(&mut admin).await.unwrap();
        let restore = RestoreMaxmemory { url: url.clone(), was: was["maxmemory"].clone() };
        let _: () =
            ::redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(1).query_async(&mut admin).await.unwrap();
        assert!(matches!(inbox.push(webhook("c")).await, Err(InboxError::Backend(_))), "the server is full");
        a_refused_move_hands_out_waiting_work(&inbox, async || drop(restore)).await;
        clean(&mut admin, &prefix).await;
    }

    /// Dead letters are read a page at a time (here 2), each page after where the one
    /// before ended: all of them, in order (entries of one score by key, a page boundary
    /// among them too), a damaged one left out and taking no place among the limit. One
    /// script used to read every
    /// entry and body, holding up every other client of the server for as long.
    #[tokio::test]
    async fn dead_letters_are_listed_page_by_page_in_order() {
        let Some(url) = test_url() else { return };
        let prefix = unique("deadpages");
        let mut inbox = inbox(&url, &prefix).await;
        inbox.dead_page = 2;
        for id in ["a", "b", "c", "d", "e", "f", "g"] {
            inbox.push(webhook(id)).await.unwrap();
        }
        let jobs = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(jobs.len(), 7);
        let order = [6, 0, 1, 2, 3, 4, 5];
        for i in order {
            inbox.dead_letter(&jobs[i], "no").await.unwrap();
        }
        let listed = |dead: Vec<DeadLetter>| {
            dead.iter().map(|d| d.webhook.id().unwrap().to_owned()).collect::<Vec<_>>()
        };
        let all = ["g", "a", "b", "c", "d", "e", "f"];
        assert_eq!(listed(inbox.dead_letters(usize::MAX).await.unwrap()), all);
        for n in 0..=all.len() + 1 {
            assert_eq!(listed(inbox.dead_letters(n).await.unwrap()), all[..n.min(all.len())], "{n}");
        }
        // One score for b, c, d and e (a seq counter set back by hand, say): by key.
        let mut admin = admin(&url).await;
        let dead = format!("{{{prefix}}}:dead");
        let score: f64 =
            ::redis::cmd("ZSCORE").arg(&dead).arg("test:b").query_async(&mut admin).await.unwrap();
        for id in ["e", "c", "d"] {
            let _: i64 = ::redis::cmd("ZADD")
                .arg(&dead)
                .arg("XX")
                .arg(score)
                .arg(format!("test:{id}"))
                .query_async(&mut admin)
                .await
                .unwrap();
        }
        assert_eq!(listed(inbox.dead_letters(usize::MAX).await.unwrap()), all);
        let _: () = ::redis::cmd("DEL")
            .arg(format!("{{{prefix}}}:job:test:c"))
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(listed(inbox.dead_letters(usize::MAX).await.unwrap()), ["g", "a", "b", "d", "e", "f"]);
        assert_eq!(listed(inbox.dead_letters(4).await.unwrap()), ["g", "a", "b", "d"], "c takes no place");
        clean(&mut admin, &prefix).await;
    }

    /// A webhook `id` with a body of `size` bytes.
    fn sized(id: &str, size: usize) -> Webhook {
        let v = crate::verify::Verified::new("github", Some(id.to_owned().into()), None, None, [0; 32], 0);
        Webhook::new("test", &v, Default::default(), vec![b'x'; size].into(), OffsetDateTime::UNIX_EPOCH)
    }

    /// Dead letters are read in scripts of at most [`dead_bytes`](RedisInbox::dead_bytes)
    /// of records (here 3,000), a record larger than that alone: all of them, in order, none
    /// twice, whatever their sizes, with page bounds among them too. One script used to read
    /// a whole page of 256 bodies of up to 1 MiB, holding up the server for as long, and
    /// its answer could not arrive within the response timeout.
    #[tokio::test]
    async fn dead_letters_are_read_a_budget_of_bytes_at_a_time() {
        let Some(url) = test_url() else { return };
        let prefix = unique("deadbytes");
        let mut inbox = inbox(&url, &prefix).await;
        inbox.dead_bytes = 3_000;
        let sizes =
            [("a", 1_000), ("b", 1_000), ("c", 1_000), ("d", 5_000), ("e", 10), ("f", 10), ("g", 2_000)];
        for (id, size) in sizes {
            inbox.push(sized(id, size)).await.unwrap();
        }
        let jobs = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(jobs.len(), sizes.len());
        for job in &jobs {
            inbox.dead_letter(job, "no").await.unwrap();
        }
        let all: Vec<&str> = sizes.iter().map(|(id, _)| *id).collect();

        // Script by script: within the bytes, or one record alone.
        let mut conn = inbox.conn.clone();
        let mut after = Default::default();
        let mut pages = Vec::new();
        loop {
            let (cut, rows) = inbox.dead_page_after(&mut conn, DEAD_PAGE, &after).await.unwrap();
            let records = rows.chunks_exact(7).collect::<Vec<_>>();
            let bytes: usize = records.iter().map(|r| r[2].len() + r[3].len() + r[5].len()).sum();
            assert!(
                records.len() == 1 || bytes <= inbox.dead_bytes,
                "{} records, {bytes} bytes",
                records.len()
            );
            pages.push(
                records
                    .iter()
                    .map(|r| {
                        read_record(&String::from_utf8_lossy(&r[0]), &r[2], &r[3])
                            .unwrap()
                            .id()
                            .unwrap()
                            .to_owned()
                    })
                    .collect::<Vec<_>>(),
            );
            let Some(last) = records.last() else { break };
            after = (last[1].clone(), last[0].clone());
            if !cut {
                break;
            }
        }
        assert!(pages.len() > 2, "{pages:?}");
        assert_eq!(pages.concat(), all);

        let listed = |dead: Vec<DeadLetter>| {
            dead.iter().map(|d| d.webhook.id().unwrap().to_owned()).collect::<Vec<_>>()
        };
        for page in [DEAD_PAGE, 2] {
            inbox.dead_page = page;
            assert_eq!(listed(inbox.dead_letters(usize::MAX).await.unwrap()), all, "pages of {page}");
            for n in 0..=all.len() + 1 {
                assert_eq!(
                    listed(inbox.dead_letters(n).await.unwrap()),
                    all[..n.min(all.len())],
                    "{n}, pages of {page}"
                );
            }
        }
        clean(&mut admin(&url).await, &prefix).await;
    }

    /// An unreadable job or dead letter is logged with its key, which
    /// [`discard`](Inbox::discard) takes.
    #[tokio::test]
    async fn unreadable_jobs_and_dead_letters_are_logged_with_their_key() {
        let Some(url) = test_url() else { return };
        let prefix = unique("unreadable");
        let inbox = inbox(&url, &prefix).await;
        let mut admin = admin(&url).await;
        let (a, b) = (webhook("a").key().to_owned(), webhook("b").key().to_owned());
        for id in ["a", "b"] {
            inbox.push(webhook(id)).await.unwrap();
        }
        let job_a = format!("{{{prefix}}}:job:{a}");
        let _: () =
            ::redis::cmd("HSET").arg(&job_a).arg("meta").arg("{").query_async(&mut admin).await.unwrap();
        let ((jobs, counted), logs) =
            crate::inbox::logged(crate::inbox::dead_lettered(inbox.pull(10, LEASE))).await;
        assert_eq!(jobs.unwrap().len(), 1, "b");
        assert!(logs.contains("unreadable") && logs.contains(&a), "{logs}");
        assert_eq!(counted, [("test".to_owned(), 1)], "counted as a dead letter, under its endpoint");

        let (listed, logs) = crate::inbox::logged(inbox.dead_letters(10)).await;
        assert!(listed.unwrap().is_empty());
        assert!(logs.contains(&a), "{logs}");
        // A dead letter whose hash is gone, or is no hash, is listed by key too.
        let _: () = ::redis::cmd("DEL").arg(&job_a).query_async(&mut admin).await.unwrap();
        let (listed, logs) = crate::inbox::logged(inbox.dead_letters(10)).await;
        assert!(listed.unwrap().is_empty());
        assert!(logs.contains(&a), "{logs}");
        let _: () = ::redis::cmd("SET").arg(&job_a).arg("x").query_async(&mut admin).await.unwrap();
        let (listed, logs) = crate::inbox::logged(inbox.dead_letters(10)).await;
        assert!(listed.expect("a key of another type fails no list").is_empty());
        assert!(logs.contains(&a), "{logs}");
        assert!(inbox.discard(&a).await.unwrap(), "the logged key discards it");
        let _ = b;
        clean(&mut admin, &prefix).await;
    }

    /// The group's consumers, by name, with their pending counts.
    async fn consumers(conn: &mut MultiplexedConnection, prefix: &str) -> Vec<(String, i64)> {
        let infos: Vec<std::collections::HashMap<String, Value>> = ::redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(format!("{{{prefix}}}:stream"))
            .arg("hookguard")
            .query_async(conn)
            .await
            .unwrap();
        let mut out: Vec<(String, i64)> = infos
            .iter()
            .map(|c| {
                let name = ::redis::from_redis_value_ref(&c["name"]).unwrap();
                let pending = ::redis::from_redis_value_ref(&c["pending"]).unwrap();
                (name, pending)
            })
            .collect();
        out.sort();
        out
    }

    /// Consumers left by processes that are gone (the default name is new in each) are
    /// deleted once idle past the bound with nothing pending; one that holds an entry, or
    /// was active within the bound, stays.
    #[tokio::test]
    async fn idle_consumers_with_nothing_pending_are_deleted() {
        let Some(url) = test_url() else { return };
        let prefix = unique("consumers");
        let mut admin = admin(&url).await;
        let setup = inbox(&url, &prefix).await;
        setup.create_group().await.unwrap();
        setup.push(webhook("a")).await.unwrap();
        let stream = format!("{{{prefix}}}:stream");
        for name in ["gone-1", "gone-2"] {
            let _: i64 = ::redis::cmd("XGROUP")
                .arg("CREATECONSUMER")
                .arg(&stream)
                .arg("hookguard")
                .arg(name)
                .query_async(&mut admin)
                .await
                .unwrap();
        }
        // A consumer that took an entry (and crashed with it, say) holds it.
        let _: Value = ::redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("hookguard")
            .arg("holding")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut admin)
            .await
            .unwrap();
        let names = |cs: Vec<(String, i64)>| cs.into_iter().map(|(n, _)| n).collect::<Vec<_>>();

        // With the default bound (an hour), consumers made a moment ago stay.
        let recent = inbox(&url, &prefix).await.consumer("recent");
        assert!(recent.pull(1, LEASE).await.unwrap().is_empty());
        assert_eq!(names(consumers(&mut admin, &prefix).await), ["gone-1", "gone-2", "holding"]);

        let mut sweeping = inbox(&url, &prefix).await.consumer("sweeper");
        sweeping.idle_consumer = Some(Duration::ZERO);
        assert!(sweeping.pull(1, LEASE).await.unwrap().is_empty());
        assert_eq!(
            consumers(&mut admin, &prefix).await,
            [("holding".to_owned(), 1)],
            "only the one holding an entry"
        );

        // Once an hour: a new consumer is not looked at by the next pull of the same inbox.
        let _: i64 = ::redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(&stream)
            .arg("hookguard")
            .arg("gone-3")
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(sweeping.pull(1, LEASE).await.unwrap().is_empty());
        assert_eq!(names(consumers(&mut admin, &prefix).await), ["gone-3", "holding"]);
        clean(&mut admin, &prefix).await;
    }

    #[test]
    fn eviction_policies_other_than_noeviction_are_a_risk() {
        assert_eq!(eviction_risk("noeviction"), None);
        assert!(eviction_risk("allkeys-lru").unwrap().contains("acknowledged webhooks lost"));
        assert!(eviction_risk("volatile-ttl").unwrap().contains("processed again"));
        assert!(eviction_risk("something-new").is_some());
        let answer = |pairs: &[(&str, &str)]| {
            Ok(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
        };
        assert_eq!(policy_of(answer(&[("maxmemory-policy", "allkeys-lfu")])).as_deref(), Some("allkeys-lfu"));
        assert_eq!(policy_of(answer(&[])), None, "nothing said");
        let refused = ::redis::RedisError::from((::redis::ErrorKind::Extension, "unknown command 'CONFIG'"));
        assert_eq!(policy_of(Err(refused)), None, "a refused CONFIG is no error");
    }

    /// A change that waits for durability is given its `WaitAof` timeout more than
    /// [`RESPONSE_TIMEOUT`] to answer; the rest, that; an inbox on a connection manager of
    /// the caller's, what the manager gives.
    #[tokio::test]
    async fn a_change_that_waits_for_durability_is_given_the_wait_and_more_to_answer() {
        let client = Client::open("redis://127.0.0.1:1").unwrap();
        let manager =
            ConnectionManager::new_lazy_with_config(client, ::redis::aio::ConnectionManagerConfig::new())
                .unwrap();
        let wait =
            |ms| RedisDurability::WaitAof { local: true, replicas: 1, timeout: Duration::from_millis(ms) };
        let theirs = RedisInbox::from_manager(manager).durability(wait(500));
        assert_eq!((theirs.answer_within(false), theirs.answer_within(true)), (None, None));
        let mut ours = theirs.durability(RedisDurability::None);
        ours.response_timeout = Some(RESPONSE_TIMEOUT);
        assert_eq!(ours.answer_within(true), Some(RESPONSE_TIMEOUT), "no wait");
        let ours = ours.durability(wait(500));
        assert_eq!(ours.answer_within(true), Some(Duration::from_millis(1_000)));
        assert_eq!(ours.answer_within(false), Some(RESPONSE_TIMEOUT), "no wait in it");
        let ours =
            ours.durability(RedisDurability::WaitAof { local: true, replicas: 1, timeout: Duration::MAX });
        assert_eq!(ours.answer_within(true), Some(Duration::MAX));
    }

    /// `response_timeout` sets how long Redis has to answer each command (a change that
    /// waits for durability, the wait more): raised, an answer slower than the default
    /// 500 ms arrives (a `BLPOP` of 700 ms on an empty list stands in for a large body on a
    /// slow link), which the default cuts short (see the test below). Was: fixed at 500 ms.
    #[tokio::test]
    async fn a_raised_response_timeout_lets_a_slow_answer_arrive() {
        let client = Client::open("redis://127.0.0.1:1").unwrap();
        let manager =
            ConnectionManager::new_lazy_with_config(client, ::redis::aio::ConnectionManagerConfig::new())
                .unwrap();
        let set = RedisInbox::from_manager(manager).response_timeout(Duration::from_secs(2)).durability(
            RedisDurability::WaitAof { local: true, replicas: 1, timeout: Duration::from_millis(500) },
        );
        assert_eq!(set.answer_within(false), Some(Duration::from_secs(2)));
        assert_eq!(set.answer_within(true), Some(Duration::from_millis(2_500)));

        let Some(url) = test_url() else { return };
        let prefix = unique("responsetimeout");
        let inbox = inbox(&url, &prefix).await.response_timeout(Duration::from_secs(5));
        let slow = ::redis::cmd("BLPOP").arg(format!("{{{prefix}}}:empty")).arg(0.7).to_owned();
        let mut conn = inbox.conn.clone();
        let answered: ::redis::RedisResult<Value> =
            within(inbox.answer_within(false), slow.query_async(&mut conn)).await;
        assert_eq!(answered.expect("answered within the raised timeout"), Value::Nil);
    }

    /// An inbox made by `connect` gives a change that waits for durability (the documented
    /// `WaitAof` of 500 ms, here 2 s so that a loaded machine cannot make the test fail)
    /// longer than 500 ms to answer. Was: redis-rs's response timeout of 500 ms cut every
    /// such wait short, and a pull failed after its script had leased jobs, an attempt
    /// counted each time, until they were dead-lettered unrun. Redis before 7.2 has no
    /// `WAITAOF`: a `BLPOP` of 700 ms on an empty list stands in for a slow one.
    #[tokio::test]
    async fn connect_gives_a_change_that_waits_for_durability_time_to_answer() {
        let Some(url) = test_url() else { return };
        let prefix = unique("answerwithin");
        let inbox = inbox(&url, &prefix).await.durability(RedisDurability::WaitAof {
            local: true,
            replicas: 1,
            timeout: Duration::from_secs(2),
        });
        let slow = ::redis::cmd("BLPOP").arg(format!("{{{prefix}}}:empty")).arg(0.7).to_owned();
        let mut conn = inbox.conn.clone();
        let answered: ::redis::RedisResult<Value> =
            within(inbox.answer_within(true), slow.query_async(&mut conn)).await;
        assert_eq!(answered.expect("answered within the wait and more"), Value::Nil);
        let cut: ::redis::RedisResult<Value> =
            within(inbox.answer_within(false), slow.query_async(&mut conn)).await;
        assert!(cut.is_err_and(|e| e.is_timeout()), "the rest is still given 500 ms");
    }

    /// What `WAITAOF` answered decides whether a change is as durable as asked.
    #[test]
    fn a_wait_for_durability_falls_short_below_what_was_asked() {
        let t = Duration::from_millis(5);
        assert!(shortfall(true, 1, t, Ok((1, 1))).is_none());
        assert!(shortfall(true, 1, t, Ok((1, 2))).is_none());
        assert!(shortfall(false, 0, t, Ok((0, 0))).is_none());
        let short = shortfall(true, 2, t, Ok((1, 1))).unwrap().to_string();
        assert!(short.contains("on 1/2 replicas"), "{short}");
        assert!(shortfall(true, 0, t, Ok((0, 0))).is_some(), "not fsynced locally");
        let failed = ::redis::RedisError::from((::redis::ErrorKind::Extension, "unknown command 'WAITAOF'"));
        assert!(shortfall(false, 0, t, Err(failed)).is_some());
    }

    /// Until some client's `WAIT` (the stand-in for `WAITAOF`) is blocked on the server; a
    /// `push` that ended first fails the test.
    async fn until_a_wait_blocks<T>(admin: &mut MultiplexedConnection, push: &tokio::task::JoinHandle<T>) {
        loop {
            assert!(!push.is_finished(), "the push ended without waiting");
            let clients: String = ::redis::cmd("CLIENT").arg("LIST").query_async(admin).await.unwrap();
            let blocked = |c: &str| c.split(' ').any(|f| f.starts_with("flags=") && f.contains('b'));
            if clients.lines().any(|c| c.contains(" cmd=wait ") && blocked(c)) {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Under `WaitAof`, while a change waits for durability (here for a replica the server
    /// does not have, up to 5 s), a pull of another clone of the inbox is answered at once
    /// (with the job that change pushed): it is no longer sent behind the wait on one
    /// connection, where it queued for the wait's whole timeout and could time out after
    /// its script had leased jobs. Both ways of making an inbox.
    #[tokio::test]
    async fn a_pull_does_not_queue_behind_a_change_waiting_for_durability() {
        if test_url().is_none() {
            return;
        }
        let Some(server) = OwnServer::start().await else {
            panic!("HOOKGUARD_TEST_REDIS_URL is set: this test needs the redis-server program too")
        };
        let url = server.url.clone();
        let mut admin = admin(&url).await;
        let wait = RedisDurability::WaitAof { local: false, replicas: 1, timeout: Duration::from_secs(5) };
        for made in ["connect", "wait_manager"] {
            let prefix = unique("headofline");
            let inbox = match made {
                "connect" => inbox(&url, &prefix).await,
                _ => {
                    let client = Client::open(url.as_str()).unwrap();
                    let longer =
                        ConnectionManagerConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
                    let waits = ConnectionManager::new_with_config(client.clone(), longer).await.unwrap();
                    RedisInbox::from_manager(client.get_connection_manager().await.unwrap())
                        .wait_manager(waits)
                        .prefix(&prefix)
                        .clock(crate::clock::ManualClock::at_unix(1_700_000_000))
                }
            };
            inbox.push(webhook("a")).await.unwrap();
            let mut inbox = inbox.durability(wait);
            inbox.stand_in_wait = true;
            let mut push = tokio::spawn({
                let inbox = inbox.clone();
                async move { inbox.push(webhook("b")).await }
            });
            until_a_wait_blocks(&mut admin, &push).await;
            let jobs = tokio::select! {
                biased;
                jobs = inbox.pull(10, LEASE) => jobs.expect(made),
                pushed = &mut push => panic!("{made}: the push's wait ended first ({pushed:?}): the pull queued behind it"),
            };
            assert!(!push.is_finished(), "{made}: the push still waits");
            let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap().to_owned()).collect();
            assert_eq!(ids, ["a", "b"], "{made}: b's script ran before its wait");
            push.abort();
        }
    }

    /// A webhook `id` with a body of `kib` KiB.
    fn of_kib(id: &str, kib: usize) -> Webhook {
        sized(id, kib << 10)
    }

    /// The ids of `jobs`, in order.
    fn ids(jobs: &[Job]) -> Vec<String> {
        jobs.iter().map(|j| j.webhook().id().unwrap().to_owned()).collect()
    }

    /// How many entries the group has handed out and not yet had acknowledged.
    async fn pending(admin: &mut MultiplexedConnection, prefix: &str) -> i64 {
        let summary: (i64, Value, Value, Value) = ::redis::cmd("XPENDING")
            .arg(format!("{{{prefix}}}:stream"))
            .arg("hookguard")
            .query_async(admin)
            .await
            .unwrap();
        summary.0
    }

    /// A pull leases jobs until their records come to [`PULL_BYTES`] (1 MiB), one at least:
    /// of five 400 KiB jobs, three, then the other two, each once, whether new or taken
    /// back from a lease that ran out; those not handed out are not leased (nor read by the
    /// group); a job larger than the budget comes alone. Was: one script leased and
    /// answered all of them (a pull of 100 jobs of 1 MiB, 100 MiB in one reply, holding up
    /// the server for as long).
    #[tokio::test]
    async fn a_pull_hands_out_a_budget_of_bytes_at_a_time() {
        let Some(url) = test_url() else { return };
        let prefix = unique("pullbytes");
        let clock = crate::clock::ManualClock::at_unix(1_700_000_000);
        let inbox = inbox(&url, &prefix).await.clock(clock.clone());
        let mut admin = admin(&url).await;
        let all = ["a", "b", "c", "d", "e"];
        for id in all {
            inbox.push(of_kib(id, 400)).await.unwrap();
        }
        let first = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(ids(&first), ["a", "b", "c"], "new jobs");
        assert_eq!(pending(&mut admin, &prefix).await, 3, "d and e not leased");
        let second = inbox.pull(10, LEASE).await.unwrap();
        assert_eq!(ids(&second), ["d", "e"]);
        assert!(inbox.pull(10, LEASE).await.unwrap().is_empty(), "each once");

        clock.advance(LEASE + Duration::from_secs(1));
        let mut again = Vec::new();
        for expected in [3, 2] {
            let jobs = inbox.pull(10, LEASE).await.unwrap();
            assert_eq!(jobs.len(), expected, "leases that ran out: {:?}", ids(&jobs));
            assert!(jobs.iter().all(|j| j.attempt() == 2));
            again.extend(jobs);
        }
        let mut taken = ids(&again);
        taken.sort();
        assert_eq!(taken, all, "each once");
        assert!(inbox.pull(10, LEASE).await.unwrap().is_empty());
        for job in &again {
            inbox.ack(job).await.unwrap();
        }

        inbox.push(of_kib("big", 1_536)).await.unwrap();
        inbox.push(of_kib("small", 1)).await.unwrap();
        assert_eq!(ids(&inbox.pull(10, LEASE).await.unwrap()), ["big"], "alone");
        assert_eq!(ids(&inbox.pull(10, LEASE).await.unwrap()), ["small"]);
        clean(&mut admin, &prefix).await;
    }

    /// Entries that are no job (their record gone, or naming another entry) among those a
    /// pull looks at past its first are dropped, counted against `max` as before; the
    /// group reads only what the pull leases or drops, and each job is leased once.
    #[tokio::test]
    async fn a_pull_drops_entries_that_are_no_job_among_those_it_reads_at_once() {
        let Some(url) = test_url() else { return };
        let prefix = unique("pullpeek");
        let inbox = inbox(&url, &prefix).await;
        let mut admin = admin(&url).await;
        for id in ["a", "b", "c", "d", "e"] {
            inbox.push(webhook(id)).await.unwrap();
        }
        let job = |id: &str| format!("{{{prefix}}}:job:test:{id}");
        let _: () = ::redis::cmd("DEL").arg(job("c")).query_async(&mut admin).await.unwrap();
        let _: () =
            ::redis::cmd("HSET").arg(job("d")).arg("sid").arg("0-1").query_async(&mut admin).await.unwrap();
        assert_eq!(ids(&inbox.pull(3, LEASE).await.unwrap()), ["a", "b"], "c counted, dropped");
        assert_eq!(pending(&mut admin, &prefix).await, 2, "d and e not read");
        assert_eq!(ids(&inbox.pull(10, LEASE).await.unwrap()), ["e"], "d dropped");
        assert_eq!(pending(&mut admin, &prefix).await, 3);
        let len: i64 =
            ::redis::cmd("XLEN").arg(format!("{{{prefix}}}:stream")).query_async(&mut admin).await.unwrap();
        assert_eq!(len, 3, "the entries of c and d deleted");
        assert!(inbox.pull(10, LEASE).await.unwrap().is_empty());
        clean(&mut admin, &prefix).await;
    }

    /// Two pools on clones of one inbox in one process: a pull capped by its free lanes, or
    /// stopped by the byte budget, leaves leases that ran out, and the other pool's wait
    /// returns at once for them instead of taking them for taken (it slept until its
    /// deadline: they were due before that pull began, and no wake-up tells of them).
    #[tokio::test]
    async fn a_wait_after_a_capped_pull_returns_for_the_jobs_it_left() {
        let Some(url) = test_url() else { return };
        for capped_by in ["max", "bytes", "ghost"] {
            let prefix = unique("cappedpull");
            let clock = crate::clock::ManualClock::at_unix(1_700_000_000);
            let one = inbox(&url, &prefix).await.clock(clock.clone());
            for id in ["a", "b", "c"] {
                one.push(webhook(id)).await.unwrap();
            }
            let leased = one.pull(3, Duration::from_secs(1)).await.unwrap();
            assert_eq!(leased.len(), 3, "{capped_by}");
            clock.advance(Duration::from_secs(2));
            let other = one.clone();
            let taken = match capped_by {
                "max" => one.pull(1, Duration::from_secs(60)).await.unwrap(),
                "ghost" => {
                    // The first expired lease (by key) has no record left: the pull's one
                    // look at expired leases finds nothing to take, and two are due.
                    let mut keys: Vec<_> = leased.iter().map(|j| j.webhook().key().to_owned()).collect();
                    keys.sort();
                    let _: () = ::redis::cmd("DEL")
                        .arg(one.keys.job(&keys[0]))
                        .query_async(&mut admin(&url).await)
                        .await
                        .unwrap();
                    one.pull(1, Duration::from_secs(60)).await.unwrap()
                }
                _ => {
                    let mut small = one.clone();
                    small.pull_bytes = 1;
                    small.pull(10, Duration::from_secs(60)).await.unwrap()
                }
            };
            assert_eq!(taken.len(), usize::from(capped_by != "ghost"), "{capped_by}");
            tokio::time::timeout(Duration::from_secs(20), other.wait(Duration::from_secs(600)))
                .await
                .unwrap_or_else(|_| panic!("{capped_by}: two jobs are due: the wait returns at once"));
            assert_eq!(other.pull(10, Duration::from_secs(60)).await.unwrap().len(), 2, "{capped_by}");
            clean(&mut admin(&url).await, &prefix).await;
        }
    }
}
