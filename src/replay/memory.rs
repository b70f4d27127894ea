//! The embedded replay store: sharded, capacity-capped, expiring.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{Arc, Mutex},
    time::Duration,
};

use foldhash::fast::RandomState;
use time::OffsetDateTime;

use super::{BoxFuture, Mark, ReplayStore, StoreError};
use crate::clock::{Clock, SystemClock};

const SHARDS: usize = 16;

/// An in-process replay store: keys live in 16 shards, each a map guarded by a short
/// mutex, with a capacity cap (default 100,000 keys in all). Expired keys are dropped when
/// a shard would otherwise be full; a shard that is full of live keys answers
/// [`StoreError::Full`] (the guard turns it into `503` + `Retry-After`) instead of growing.
///
/// Lost on restart, and not shared between processes: several replicas need a shared
/// store (Redis).
///
/// ```
/// use hookguard::{clock::ManualClock, replay::MemoryReplayStore};
/// let store = MemoryReplayStore::new().capacity(10_000).clock(ManualClock::at_unix(0));
/// # let _ = store;
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
    per_shard: usize,
    /// foldhash, seeded per process: keys are only marked after their signature held,
    /// and the seed keeps collisions unpredictable; several times cheaper than SipHash
    /// for short keys.
    hasher: RandomState,
}

/// One shard: the marks and a lower bound of their expiry times.
#[derive(Debug, Default)]
struct Shard {
    marks: HashMap<Box<[u8]>, OffsetDateTime, RandomState>,
    /// No mark expires before this (a lower bound, exact after a sweep). A full shard
    /// whose bound lies in the future has nothing to sweep: it refuses at once instead of
    /// scanning every mark on every request while it stays full.
    earliest: Option<OffsetDateTime>,
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryReplayStore {
    /// A store for up to 100,000 keys on the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::build(100_000, Arc::new(SystemClock))
    }

    fn build(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let shards = Shards {
            maps: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            hasher: RandomState::default(),
        };
        Self { shards: Arc::new(shards), capacity, clock }
    }

    /// Sets the capacity (keys in all, spread over 16 shards). A builder method: it
    /// starts an empty store.
    #[must_use]
    pub fn capacity(self, capacity: usize) -> Self {
        Self::build(capacity, self.clock)
    }

    /// Sets the clock that decides expiry. A builder method: it starts an empty store.
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
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        let i = (self.shards.hasher.hash_one(key) % SHARDS as u64) as usize;
        &self.shards.maps[i]
    }

    fn mark_now(&self, key: &[u8], ttl: Duration) -> Result<Mark, StoreError> {
        let now = self.clock.now();
        let mut shard =
            self.shard(key).lock().map_err(|_| StoreError::Backend("replay shard poisoned".into()))?;
        let expires = now + ttl;
        // One lookup for the common cases: seen and live, or seen and expired (renewed).
        if let Some(at) = shard.marks.get_mut(key) {
            if *at > now {
                return Ok(Mark::Seen);
            }
            *at = expires;
            return Ok(Mark::New);
        }
        if shard.marks.len() >= self.shards.per_shard {
            if shard.earliest.is_some_and(|earliest| earliest > now) {
                return Err(StoreError::Full);
            }
            shard.marks.retain(|_, at| *at > now);
            shard.earliest = shard.marks.values().min().copied();
            if shard.marks.len() >= self.shards.per_shard {
                return Err(StoreError::Full);
            }
        }
        shard.marks.insert(key.into(), expires);
        shard.earliest = Some(shard.earliest.map_or(expires, |earliest| earliest.min(expires)));
        Ok(Mark::New)
    }
}

impl ReplayStore for MemoryReplayStore {
    fn mark<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<Mark, StoreError>> {
        let result = self.mark_now(key, ttl);
        Box::pin(std::future::ready(result))
    }

    fn unmark<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self
            .shard(key)
            .lock()
            .map(|mut shard| {
                shard.marks.remove(key);
            })
            .map_err(|_| StoreError::Backend("replay shard poisoned".into()));
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn mark(store: &MemoryReplayStore, key: &str, ttl_secs: u64) -> Result<Mark, StoreError> {
        store.mark_now(key.as_bytes(), Duration::from_secs(ttl_secs))
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
                Ok(Mark::Seen) => unreachable!("every key is new"),
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
}
