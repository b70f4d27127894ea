//! The embedded replay store: sharded, capacity-capped, expiring.

use std::{
    collections::{BinaryHeap, HashMap, VecDeque},
    hash::BuildHasher,
    sync::{Arc, Mutex},
    time::Duration,
};

use foldhash::fast::RandomState;

use super::{BoxFuture, INLINE, Mark, ReplayStore, StoreError};
use crate::clock::{Clock, SystemClock};

const SHARDS: usize = 16;

/// An in-process replay store: keys live in 16 shards (fewer for a capacity under 16),
/// each a map guarded by a short mutex, with a capacity cap (default 100,000 keys in all;
/// reservations count too) split evenly between the shards, so the store never holds more
/// than its capacity, but for confirmations: a reservation whose lease ran out before its
/// handler finished may find its room taken, and its confirmation may then use an eighth
/// more (a mark refused there would let a copy be processed again). Expired keys are
/// dropped when a shard would otherwise be full; a
/// shard that is full of live keys answers [`StoreError::Full`] (the guard turns it into
/// `503` + `Retry-After`) instead of growing. Keys spread over the shards by a hash, so the
/// fullest shard refuses a little before the whole store is full: leave some headroom.
///
/// Size it for the rate: marks live the replay time to live (by default the scheme's
/// tolerance, 5 minutes for most timestamped providers), so the capacity must be at least
/// the deliveries per second times that; the default 100,000 covers about 330 deliveries
/// per second with a 5-minute window, and 72 hours of marks for schemes without a timestamp
/// only at a few per minute (set `capacity` and [`replay_ttl`](crate::guard::GuardBuilder::replay_ttl)
/// together). Each mark takes the same room (an 80-byte slot; about 110 bytes with the
/// table's slack, and 4 more for the list of marks that expire first) whatever the length
/// of the delivery id a sender signed: keys of up to 46
/// bytes (an endpoint and a short delivery id) are kept as they are, longer ones (a long
/// id, or a signature's 64-digit fingerprint where the sender sends no id: GitHub's keys)
/// as their SHA-256 digest, so the capacity bounds the memory too. Every call answers at
/// once (no I/O).
///
/// Reservations' leases and marks expire by the store's [`clock`](Self::clock), the wall
/// clock by default (a guard's default store takes the guard's clock, also the wall clock
/// by default), not a monotonic one. A clock stepped forward (NTP, a resumed virtual
/// machine) past a live reservation's lease lets a copy of that delivery be handled while
/// the first is still being handled, and past a mark's time to live lets a replay
/// through; a clock stepped back holds every entry that much longer, a dead receiver's
/// reservation too (its sender's retries are answered `409` meanwhile).
///
/// Lost on restart, and not shared between processes: several replicas need a shared
/// store (Redis).
///
/// ```
/// use std::time::Duration;
/// use hookguard::{clock::ManualClock, replay::{Mark, MemoryReplayStore, ReplayStore, StoreError}};
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let store = MemoryReplayStore::new().capacity(1).clock(clock.clone());
/// let ttl = Duration::from_secs(60);
/// assert_eq!(store.mark_now(b"github:d-1", ttl).unwrap().unwrap(), Mark::New);
/// assert_eq!(store.mark_now(b"github:d-1", ttl).unwrap().unwrap(), Mark::Seen);
/// assert!(matches!(store.mark_now(b"github:d-2", ttl).unwrap(), Err(StoreError::Full)));
/// // Once the first mark has expired, it makes room.
/// clock.advance(Duration::from_secs(61));
/// assert_eq!(store.mark_now(b"github:d-2", ttl).unwrap().unwrap(), Mark::New);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryReplayStore {
    shards: Arc<Shards>,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct Shards {
    maps: Vec<Mutex<Shard>>,
    /// Each shard's share of the capacity (they add up to it).
    caps: Vec<usize>,
    /// foldhash, seeded per process: keys are only marked after their signature held,
    /// and the seed keeps collisions unpredictable; several times cheaper than SipHash
    /// for short keys.
    hasher: RandomState,
}

/// One key's mark: when it expires, and whose reservation it is while pending.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Nanoseconds since the Unix epoch (integers compare and add cheaply, unlike dates).
    expires: i128,
    /// `Some(token)`: a reservation by that holder ([`ReplayStore::reserve`]); `None`: a
    /// confirmed mark.
    holder: Option<u64>,
}

/// A mark's key as the table holds it, in the map's slot itself (no allocation per mark,
/// and nothing of it outside the table): the key's own bytes when it has at most
/// [`INLINE`] (an endpoint and a delivery id usually do), else its SHA-256 digest padded to
/// [`SLOT`] bytes, a length no key kept as it is has, so the two kinds never meet. A mark
/// thus takes the same room whatever the length of the delivery id a sender signed: the
/// capacity bounds the store's memory, not only its count of keys.
#[derive(Debug, Clone, Copy)]
struct StoredKey {
    len: u8,
    bytes: [u8; SLOT],
}

/// A slot's bytes: a digested key reads as this many (the slot stays 48 bytes).
const SLOT: usize = INLINE + 1;

impl StoredKey {
    fn new(key: &[u8]) -> Self {
        let mut bytes = [0; SLOT];
        match super::digest_if_long(key) {
            None => {
                bytes[..key.len()].copy_from_slice(key);
                // At most `INLINE` bytes.
                Self { len: key.len() as u8, bytes }
            }
            Some(digest) => {
                bytes[..digest.len()].copy_from_slice(&digest);
                Self { len: SLOT as u8, bytes }
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

// Hashes, compares and borrows as the key's bytes, so maps look marks up by `&[u8]`.
key_by_view!(StoredKey, as_bytes, [u8]);

/// A key in the sweep's heap, where only the expiry time orders (every key compares equal).
#[derive(Debug, Clone, Copy)]
struct Slot(StoredKey);

impl PartialEq for Slot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Slot {}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Slot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// One shard: the marks, the earliest-expiring of them as the last sweep found them, and
/// a lower bound of the others' expiry times.
#[derive(Debug, Default)]
struct Shard {
    marks: HashMap<StoredKey, Entry, RandomState>,
    /// The marks that expire first, soonest first, as the last sweep of a full shard found
    /// them (a sixteenth of its share): while the shard stays full, each new mark takes
    /// the room of the next of them that expired, without reading the others. An entry
    /// whose mark has since been removed or given another expiry time is skipped.
    next: VecDeque<(i128, StoredKey)>,
    /// No mark outside [`next`](Self::next) (or given another expiry time since it was
    /// listed there) expires before this. With every listed mark live too, a full shard
    /// has nothing to sweep: it refuses at once instead of reading every mark on every
    /// request while it stays full.
    earliest: Option<i128>,
    /// Full sweeps so far (tests count them).
    #[cfg(test)]
    sweeps: usize,
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryReplayStore {
    /// A store for up to 100,000 keys on the system clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::replay::{Mark, MemoryReplayStore, ReplayStore};
    /// let store = MemoryReplayStore::new();
    /// assert_eq!(store.mark_now(b"k", Duration::from_secs(60)).unwrap().unwrap(), Mark::New);
    /// assert_eq!(store.len(), 1);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::build(Self::DEFAULT_CAPACITY, Arc::new(SystemClock))
    }

    /// The capacity of [`new`](Self::new)'s store, and of the store a guard builds when
    /// given none: 100,000 keys. With marks living 72 hours (a scheme without a timestamp)
    /// that sustains about 23 deliveries a minute; a guard built with a fixed such scheme
    /// and this default says so in its log at start.
    ///
    /// ```
    /// assert_eq!(hookguard::replay::MemoryReplayStore::DEFAULT_CAPACITY, 100_000);
    /// ```
    pub const DEFAULT_CAPACITY: usize = 100_000;

    fn build(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        // At least one key, and no shard without room: fewer shards below 16 keys.
        let capacity = capacity.max(1);
        let n = capacity.min(SHARDS);
        let shards = Shards {
            maps: (0..n).map(|_| Mutex::new(Shard::default())).collect(),
            caps: (0..n).map(|i| capacity / n + usize::from(i < capacity % n)).collect(),
            hasher: RandomState::default(),
        };
        Self { shards: Arc::new(shards), capacity, clock }
    }

    /// Sets the capacity (keys in all, at least 1, split between the shards). A builder
    /// method: it starts an empty store.
    ///
    /// A full shard frees room by reading all its marks for the expired ones, and lists
    /// the sixteenth of its share that expire first: a store kept at its capacity (marks
    /// expiring as fast as new ones come) takes each new mark's room from that list, and
    /// reads all of a shard's marks once per sixteenth of its share of new marks, so about
    /// sixteen marks read per new mark whatever the capacity. Marks of very different
    /// times to live (short reservations among long marks) can make it read the shard
    /// more often.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::replay::{MemoryReplayStore, ReplayStore};
    /// let store = MemoryReplayStore::new().capacity(1);
    /// assert!(store.mark_now(b"a", Duration::from_secs(60)).unwrap().is_ok());
    /// assert!(store.mark_now(b"b", Duration::from_secs(60)).unwrap().is_err(), "full");
    /// ```
    #[must_use]
    pub fn capacity(self, capacity: usize) -> Self {
        Self::build(capacity, self.clock)
    }

    /// Sets the clock that decides expiry. A builder method: it starts an empty store.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, replay::{Mark, MemoryReplayStore, ReplayStore}};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let store = MemoryReplayStore::new().clock(clock.clone());
    /// store.mark_now(b"k", Duration::from_secs(60)).unwrap().unwrap();
    /// clock.advance(Duration::from_secs(61));
    /// assert_eq!(store.mark_now(b"k", Duration::from_secs(60)).unwrap().unwrap(), Mark::New);
    /// ```
    #[must_use]
    pub fn clock(self, clock: impl Clock) -> Self {
        Self::build(self.capacity, Arc::new(clock))
    }

    /// Keys currently held, expired or not (for metrics and tests).
    ///
    /// ```
    /// assert_eq!(hookguard::replay::MemoryReplayStore::new().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.maps.iter().map(|s| s.lock().map_or(0, |s| s.marks.len())).sum()
    }

    /// Whether no key is held.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::replay::{MemoryReplayStore, ReplayStore};
    /// let store = MemoryReplayStore::new();
    /// assert!(store.is_empty());
    /// store.mark_now(b"k", Duration::from_secs(60)).unwrap().unwrap();
    /// assert!(!store.is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index of the shard that holds `key`.
    fn shard(&self, key: &[u8]) -> usize {
        (self.shards.hasher.hash_one(key) % self.shards.maps.len() as u64) as usize
    }

    /// The shard that holds `key`, and its share of the capacity.
    fn lock(&self, key: &[u8]) -> Result<(std::sync::MutexGuard<'_, Shard>, usize), StoreError> {
        let shards = &*self.shards;
        let i = self.shard(key);
        let (Some(shard), Some(cap)) = (shards.maps.get(i), shards.caps.get(i)) else {
            return Err(StoreError::Backend("replay shard missing".into()));
        };
        let shard = shard.lock().map_err(|_| StoreError::Backend("replay shard poisoned".into()))?;
        Ok((shard, *cap))
    }

    /// Sets a mark (`holder: None`) or a reservation unless a live entry is there.
    fn set(&self, key: &[u8], ttl: Duration, holder: Option<u64>) -> Result<Mark, StoreError> {
        let now = self.clock.unix_nanos();
        let stored = StoredKey::new(key);
        let key = stored.as_bytes();
        let (mut shard, cap) = self.lock(key)?;
        let entry = Entry { expires: deadline(now, ttl), holder };
        // One lookup for the common cases: seen and live, or seen and expired (renewed; the
        // shard's lower bound stays one, as the old expiry was already past).
        if let Some(at) = shard.marks.get_mut(key) {
            if at.expires > now {
                return Ok(match (at.holder, holder) {
                    (Some(_), Some(_)) => Mark::Pending,
                    _ => Mark::Seen,
                });
            }
            *at = entry;
            // It may be listed in `next` under its old time.
            shard.lower_bound(entry.expires);
            return Ok(Mark::New);
        }
        shard.insert(stored, entry, now, cap)?;
        Ok(Mark::New)
    }

    fn confirm_now(&self, key: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let now = self.clock.unix_nanos();
        let stored = StoredKey::new(key);
        let key = stored.as_bytes();
        let (mut shard, cap) = self.lock(key)?;
        let entry = Entry { expires: deadline(now, ttl), holder: None };
        if let Some(at) = shard.marks.get_mut(key) {
            *at = entry;
            // A time to live shorter than what was left of the lease moves the bound.
            shard.lower_bound(entry.expires);
            return Ok(());
        }
        // The reservation ran out and was swept (its handler took longer than the lease):
        // the delivery was handled all the same, so it gets its mark even in a full shard.
        shard.insert(stored, entry, now, cap.saturating_add(cap / 8 + 1))
    }

    fn cancel_now(&self, key: &[u8], token: u64) -> Result<(), StoreError> {
        let stored = StoredKey::new(key);
        let key = stored.as_bytes();
        let (mut shard, _) = self.lock(key)?;
        if shard.marks.get(key).is_some_and(|at| at.holder == Some(token)) {
            shard.marks.remove(key);
        }
        Ok(())
    }
}

impl Shard {
    /// Inserts a key that is not there, first dropping expired entries when the shard is
    /// full; [`StoreError::Full`] when it stays full.
    fn insert(
        &mut self,
        key: StoredKey,
        entry: Entry,
        now: i128,
        per_shard: usize,
    ) -> Result<(), StoreError> {
        if self.marks.len() >= per_shard {
            self.drop_listed(now);
            if self.marks.len() >= per_shard {
                if self.earliest.is_some_and(|earliest| earliest > now) {
                    return Err(StoreError::Full);
                }
                self.sweep(now, per_shard);
                if self.marks.len() >= per_shard {
                    return Err(StoreError::Full);
                }
            }
        }
        self.marks.insert(key, entry);
        self.lower_bound(entry.expires);
        Ok(())
    }

    /// Drops the listed marks that have expired, leaving the list's first entry live.
    fn drop_listed(&mut self, now: i128) {
        while let Some(&(expires, key)) = self.next.front() {
            if expires > now {
                break;
            }
            self.next.pop_front();
            // Still the mark that was listed (not removed, renewed or confirmed since).
            if self.marks.get(key.as_bytes()).is_some_and(|at| at.expires == expires) {
                self.marks.remove(key.as_bytes());
            }
        }
    }

    /// Drops every expired mark, and lists the sixteenth of the shard's share that expire
    /// first, for the next new marks to take the room of as they expire: a shard kept full
    /// (marks expiring as fast as new ones come) reads all its marks once per that many
    /// new marks, not at each.
    fn sweep(&mut self, now: i128, per_shard: usize) {
        #[cfg(test)]
        {
            self.sweeps += 1;
        }
        let listed = (per_shard / 16).max(1);
        // The `listed` earliest in a heap whose top is the latest of them.
        let mut first: BinaryHeap<(i128, Slot)> = BinaryHeap::with_capacity(listed + 1);
        let mut rest: Option<i128> = None;
        let mut later = |expires: i128| rest = Some(rest.map_or(expires, |r| r.min(expires)));
        self.marks.retain(|key, at| {
            if at.expires <= now {
                return false;
            }
            let entry = (at.expires, Slot(*key));
            if first.len() < listed {
                first.push(entry);
            } else if first.peek().is_some_and(|top| entry.0 < top.0) {
                if let Some(out) = first.pop() {
                    later(out.0);
                }
                first.push(entry);
            } else {
                later(entry.0);
            }
            true
        });
        self.next = first.into_sorted_vec().into_iter().map(|(expires, Slot(key))| (expires, key)).collect();
        self.earliest = rest;
    }

    /// Keeps [`earliest`](Self::earliest) a lower bound after an entry got `expires`.
    fn lower_bound(&mut self, expires: i128) {
        self.earliest = Some(self.earliest.map_or(expires, |earliest| earliest.min(expires)));
    }
}

/// `now + ttl` in nanoseconds, saturating far in the future instead of overflowing.
fn deadline(now: i128, ttl: Duration) -> i128 {
    now.saturating_add(i128::try_from(ttl.as_nanos()).unwrap_or(i128::MAX))
}

impl ReplayStore for MemoryReplayStore {
    fn mark<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<Mark, StoreError>> {
        Box::pin(std::future::ready(self.set(key, ttl, None)))
    }

    fn reserve<'a>(
        &'a self,
        key: &'a [u8],
        token: u64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Mark, StoreError>> {
        Box::pin(std::future::ready(self.set(key, lease, Some(token))))
    }

    fn confirm<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.confirm_now(key, ttl)))
    }

    fn cancel<'a>(&'a self, key: &'a [u8], token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.cancel_now(key, token)))
    }

    fn unmark<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        let stored = StoredKey::new(key);
        let result = self.lock(stored.as_bytes()).map(|(mut shard, _)| {
            shard.marks.remove(stored.as_bytes());
        });
        Box::pin(std::future::ready(result))
    }

    fn mark_now(&self, key: &[u8], ttl: Duration) -> Option<Result<Mark, StoreError>> {
        Some(self.set(key, ttl, None))
    }

    fn is_confirmed<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = self.clock.unix_nanos();
        let stored = StoredKey::new(key);
        let result = self.lock(stored.as_bytes()).map(|(shard, _)| {
            shard.marks.get(stored.as_bytes()).is_some_and(|at| at.expires > now && at.holder.is_none())
        });
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn mark(store: &MemoryReplayStore, key: &str, ttl_secs: u64) -> Result<Mark, StoreError> {
        store.set(key.as_bytes(), Duration::from_secs(ttl_secs), None)
    }

    /// The capacity is a cap on the whole store: the shards' shares add up to it (each
    /// shard once held the capacity over 16, rounded up, and at least one key).
    #[test]
    fn never_more_keys_than_the_capacity() {
        for capacity in [0, 1, 2, 15, 16, 17, 100] {
            let store = MemoryReplayStore::new().capacity(capacity).clock(ManualClock::at_unix(0));
            let kept = (0..2_000).filter(|i| mark(&store, &format!("k{i}"), 60).is_ok()).count();
            assert_eq!(kept, store.len());
            assert!(kept <= capacity.max(1), "capacity {capacity}: kept {kept}");
            if capacity <= 16 {
                assert_eq!(kept, capacity.max(1), "capacity {capacity}: one shard per key, all filled");
            }
        }
    }

    #[test]
    fn a_full_store_refuses_until_the_earliest_mark_expires() {
        let clock = ManualClock::at_unix(1_000);
        // One key per shard at most: 16 keys in all.
        let store = MemoryReplayStore::new().capacity(16).clock(clock.clone());
        let mut kept = Vec::new();
        for i in 0..1_000 {
            let key = format!("k{i}");
            // Longer TTLs first: the shortest-lived mark decides when room comes back.
            match mark(&store, &key, 100 - (i as u64 % 50)) {
                Ok(Mark::New) => kept.push(key),
                Ok(Mark::Seen | Mark::Pending) => unreachable!("every key is new"),
                Err(StoreError::Full) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(store.len(), 16);
        // Every shard is full of live marks: refused, and nothing is dropped.
        for i in 1_000..1_100 {
            assert!(matches!(mark(&store, &format!("k{i}"), 10), Err(StoreError::Full)));
        }
        assert_eq!(store.len(), 16);
        for key in &kept {
            assert_eq!(mark(&store, key, 10).unwrap(), Mark::Seen, "{key} is still marked");
        }
        // Once every mark has expired, each shard makes room again.
        clock.advance(Duration::from_secs(101));
        let mut room = 0;
        for i in 2_000..3_000 {
            if mark(&store, &format!("k{i}"), 10).is_ok() {
                room += 1;
            }
        }
        assert_eq!(room, 16);
    }

    /// A key (`k0`, `k1`, …) that lives in the same shard as `of`.
    fn same_shard(store: &MemoryReplayStore, of: &[u8]) -> String {
        (0..)
            .map(|i| format!("k{i}"))
            .find(|k| store.shard(of) == store.shard(k.as_bytes()))
            .unwrap_or_default()
    }

    #[test]
    fn reservations_take_room_until_their_lease_runs_out() {
        let clock = ManualClock::at_unix(1_000);
        let store = MemoryReplayStore::new().capacity(16).clock(clock.clone());
        assert_eq!(store.set(b"a", Duration::from_secs(10), Some(1)).unwrap(), Mark::New);
        let other = same_shard(&store, b"a");
        assert!(matches!(mark(&store, &other, 100), Err(StoreError::Full)));
        clock.advance(Duration::from_secs(11));
        assert_eq!(mark(&store, &other, 100).unwrap(), Mark::New, "the expired reservation made room");
        assert_eq!(store.len(), 1);
    }

    /// A confirmation whose reservation ran out and lost its room still leaves a mark
    /// (within an eighth more than the shard's share): the delivery was handled.
    #[test]
    fn a_late_confirmation_is_marked_in_a_full_shard() {
        let clock = ManualClock::at_unix(1_000);
        let store = MemoryReplayStore::new().capacity(16).clock(clock.clone());
        assert_eq!(store.set(b"a", Duration::from_secs(10), Some(1)).unwrap(), Mark::New);
        clock.advance(Duration::from_secs(11));
        let other = same_shard(&store, b"a");
        assert_eq!(mark(&store, &other, 100).unwrap(), Mark::New, "took the expired reservation's room");
        store.confirm_now(b"a", Duration::from_secs(100)).expect("marked all the same");
        assert_eq!(store.set(b"a", Duration::from_secs(10), Some(2)).unwrap(), Mark::Seen, "a copy is seen");
        let third =
            (0..).map(|i| format!("z{i}")).find(|k| store.shard(k.as_bytes()) == store.shard(b"a")).unwrap();
        assert!(matches!(mark(&store, &third, 100), Err(StoreError::Full)), "marks still keep to the share");
    }

    #[test]
    fn a_confirmation_shorter_than_the_lease_makes_room_when_it_expires() {
        let clock = ManualClock::at_unix(1_000);
        let store = MemoryReplayStore::new().capacity(16).clock(clock.clone());
        assert_eq!(store.set(b"a", Duration::from_secs(100), Some(1)).unwrap(), Mark::New);
        store.confirm_now(b"a", Duration::from_secs(5)).unwrap();
        let other = same_shard(&store, b"a");
        assert!(matches!(mark(&store, &other, 100), Err(StoreError::Full)));
        clock.advance(Duration::from_secs(6));
        assert_eq!(
            mark(&store, &other, 100).unwrap(),
            Mark::New,
            "the shard's bound followed the confirmation"
        );
    }

    #[test]
    fn short_and_long_keys_are_marked_alike() {
        let store = MemoryReplayStore::new().clock(ManualClock::at_unix(1_000));
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 300] {
            let key = vec![b'k'; len];
            assert_eq!(store.set(&key, Duration::from_secs(10), None).unwrap(), Mark::New, "{len}");
            assert_eq!(store.set(&key, Duration::from_secs(10), None).unwrap(), Mark::Seen, "{len}");
        }
        // A key and its prefix are different keys, kept as they are or digested.
        assert_eq!(store.set(&[b'k'; INLINE + 2], Duration::from_secs(10), None).unwrap(), Mark::New);
        // Reservations, confirmations, cancels and removals find a long key too.
        let long = vec![b'r'; 1_000];
        assert_eq!(store.set(&long, Duration::from_secs(10), Some(7)).unwrap(), Mark::New);
        assert_eq!(store.set(&long, Duration::from_secs(10), Some(8)).unwrap(), Mark::Pending);
        store.cancel_now(&long, 7).unwrap();
        assert_eq!(store.set(&long, Duration::from_secs(10), Some(8)).unwrap(), Mark::New);
        store.confirm_now(&long, Duration::from_secs(10)).unwrap();
        assert_eq!(store.set(&long, Duration::from_secs(10), Some(9)).unwrap(), Mark::Seen);
        futures_util::FutureExt::now_or_never(store.unmark(&long)).expect("ready at once").unwrap();
        assert_eq!(store.set(&long, Duration::from_secs(10), None).unwrap(), Mark::New);
        assert_eq!(std::mem::size_of::<StoredKey>(), 48);
    }

    #[test]
    fn a_long_key_takes_no_more_room_than_a_short_one() {
        // A kept key's bytes never depend on the key's length past `INLINE`: a 64 KiB
        // delivery id costs a mark what a 47-byte one does.
        for len in [INLINE + 1, 1_000, 64 * 1024] {
            let key = vec![b'x'; len];
            assert_eq!(StoredKey::new(&key).as_bytes().len(), SLOT, "{len}");
        }
        for len in [0, 5, INLINE] {
            let key = vec![b'x'; len];
            assert_eq!(StoredKey::new(&key).as_bytes(), key.as_slice(), "{len}");
        }
        // A digested key never equals a key kept as it is: no kept key has `SLOT` bytes.
        let digested = StoredKey::new(&[b'y'; 100]);
        let as_is = StoredKey::new(&digested.as_bytes()[..INLINE]);
        assert_ne!(digested.as_bytes(), as_is.as_bytes());
    }

    /// A shard kept full (a new mark as each one expires) reads all its marks once per
    /// sixteenth of its share, not at every new mark.
    #[test]
    fn a_store_kept_full_sweeps_once_per_sixteenth_of_a_shard() {
        let clock = ManualClock::at_unix(1_000);
        let per_shard = 1_600;
        let store = MemoryReplayStore::new().capacity(16 * per_shard).clock(clock.clone());
        // One shard's keys only, marked a second apart.
        let keys: Vec<String> = (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| store.shard(k.as_bytes()) == 0)
            .take(3 * per_shard)
            .collect();
        let ttl = Duration::from_secs(per_shard as u64);
        for key in &keys[..per_shard] {
            assert_eq!(store.set(key.as_bytes(), ttl, None).unwrap(), Mark::New);
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(store.shards.maps[0].lock().unwrap().marks.len(), per_shard, "full");
        // From now on each second one mark expires and one new one comes.
        for key in &keys[per_shard..] {
            assert_eq!(
                store.set(key.as_bytes(), ttl, None).unwrap(),
                Mark::New,
                "{key}: the expired mark made room"
            );
            clock.advance(Duration::from_secs(1));
        }
        let shard = store.shards.maps[0].lock().unwrap();
        assert_eq!(shard.marks.len(), per_shard);
        let new_marks = 2 * per_shard;
        assert!(
            shard.sweeps <= new_marks / (per_shard / 16) + 1,
            "{} sweeps for {new_marks} new marks",
            shard.sweeps
        );
        drop(shard);
        // The marks of the last `per_shard` seconds are all still there (the first of them
        // has just expired).
        for key in &keys[2 * per_shard + 1..] {
            assert_eq!(store.set(key.as_bytes(), ttl, None).unwrap(), Mark::Seen, "{key}");
        }
    }

    /// A listed mark that expired and was marked again with a short time to live still
    /// makes room when that runs out, though the shard's other marks live much longer.
    #[test]
    fn a_renewed_listed_mark_makes_room_when_it_expires() {
        let clock = ManualClock::at_unix(0);
        let store = MemoryReplayStore::new().capacity(16 * 16).clock(clock.clone());
        let keys: Vec<String> =
            (0..).map(|i| format!("k{i}")).filter(|k| store.shard(k.as_bytes()) == 0).take(20).collect();
        let secs = Duration::from_secs;
        // Full: one mark for a second, one for 100, fourteen for 1,000.
        assert_eq!(store.set(keys[0].as_bytes(), secs(1), None).unwrap(), Mark::New);
        assert_eq!(store.set(keys[1].as_bytes(), secs(100), None).unwrap(), Mark::New);
        for key in &keys[2..16] {
            assert_eq!(store.set(key.as_bytes(), secs(1_000), None).unwrap(), Mark::New);
        }
        // The sweep drops the first and lists the second, the next to expire.
        clock.set_unix(2);
        assert_eq!(store.set(keys[16].as_bytes(), secs(1_000), None).unwrap(), Mark::New);
        // The second expires and is marked again, for 5 seconds.
        clock.set_unix(101);
        assert_eq!(store.set(keys[1].as_bytes(), secs(5), None).unwrap(), Mark::New);
        assert!(matches!(store.set(keys[17].as_bytes(), secs(1_000), None), Err(StoreError::Full)));
        clock.set_unix(107);
        assert_eq!(
            store.set(keys[17].as_bytes(), secs(1_000), None).unwrap(),
            Mark::New,
            "its room came back"
        );
    }

    /// Marks, reservations, confirmations, cancels and removals with times to live of
    /// every length, against a model of the store: a shard refuses a new key exactly when
    /// its live keys fill its share.
    #[test]
    fn behaves_as_a_model_of_it_does() {
        #[derive(Clone, Copy)]
        struct Live {
            expires: i128,
            holder: Option<u64>,
        }
        for seed in 1..=8u64 {
            let clock = ManualClock::at_unix(1_000);
            let store = MemoryReplayStore::new().capacity(16 * 48).clock(clock.clone());
            let mut model: HashMap<String, Live> = HashMap::new();
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut next = move |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            for step in 0..20_000u64 {
                let now = clock.unix_nanos();
                let live = |model: &HashMap<String, Live>, key: &str| {
                    model.get(key).filter(|at| at.expires > now).copied()
                };
                let key = format!("k{}", next(2_000));
                let ttl = Duration::from_secs(1 + next(200));
                let cap = store.shards.caps[store.shard(key.as_bytes())];
                let live_in_shard = |model: &HashMap<String, Live>| {
                    model
                        .iter()
                        .filter(|(k, at)| {
                            at.expires > now && store.shard(k.as_bytes()) == store.shard(key.as_bytes())
                        })
                        .count()
                };
                match next(10) {
                    0..=4 => {
                        let holder = (next(2) == 0).then(|| next(u64::MAX));
                        let got = store.set(key.as_bytes(), ttl, holder);
                        if let Some(at) = live(&model, &key) {
                            let want = if at.holder.is_some() && holder.is_some() {
                                Mark::Pending
                            } else {
                                Mark::Seen
                            };
                            assert_eq!(got.unwrap(), want, "seed {seed} step {step}");
                        } else if model.contains_key(&key) {
                            // An expired key: renewed in place, or taken in again if it was
                            // swept; either way the room is there when a share is free.
                            if let Ok(mark) = got {
                                assert_eq!(mark, Mark::New);
                                model.insert(key, Live { expires: deadline(now, ttl), holder });
                            } else {
                                assert!(
                                    live_in_shard(&model) >= cap,
                                    "seed {seed} step {step}: refused with room"
                                );
                                model.remove(&key);
                            }
                        } else if live_in_shard(&model) < cap {
                            assert_eq!(got.unwrap(), Mark::New, "seed {seed} step {step}");
                            model.insert(key, Live { expires: deadline(now, ttl), holder });
                        } else {
                            assert!(matches!(got, Err(StoreError::Full)), "seed {seed} step {step}");
                        }
                    }
                    5 => {
                        // Confirms a live reservation.
                        if live(&model, &key).is_some_and(|at| at.holder.is_some()) {
                            store.confirm_now(key.as_bytes(), ttl).unwrap();
                            model.insert(key, Live { expires: deadline(now, ttl), holder: None });
                        }
                    }
                    6 => {
                        if let Some(Live { holder: Some(token), .. }) = model.get(&key).copied() {
                            store.cancel_now(key.as_bytes(), token).unwrap();
                            model.remove(&key);
                        }
                    }
                    7 => {
                        futures_util::FutureExt::now_or_never(store.unmark(key.as_bytes())).unwrap().unwrap();
                        model.remove(&key);
                    }
                    _ => clock.advance(Duration::from_millis(next(3_000))),
                }
            }
            assert!(store.len() <= 16 * 48 + 16 * (48 / 8 + 1), "seed {seed}");
        }
    }

    #[test]
    fn a_huge_time_to_live_saturates_instead_of_overflowing() {
        let store = MemoryReplayStore::new().clock(ManualClock::at_unix(1_000));
        assert_eq!(store.set(b"a", Duration::MAX, None).unwrap(), Mark::New);
        store.confirm_now(b"b", Duration::MAX).unwrap();
        assert_eq!(store.set(b"b", Duration::from_secs(1), Some(2)).unwrap(), Mark::Seen);
    }
}
