//! The embedded replay store: sharded, capacity-capped, expiring.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex},
    time::Duration,
};

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
    maps: Vec<Mutex<HashMap<Box<[u8]>, OffsetDateTime>>>,
    per_shard: usize,
    hasher: RandomState,
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
            maps: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
            hasher: RandomState::new(),
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
        self.shards.maps.iter().map(|s| s.lock().map_or(0, |m| m.len())).sum()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &[u8]) -> &Mutex<HashMap<Box<[u8]>, OffsetDateTime>> {
        let i = (self.shards.hasher.hash_one(key) % SHARDS as u64) as usize;
        &self.shards.maps[i]
    }

    fn mark_now(&self, key: &[u8], ttl: Duration) -> Result<Mark, StoreError> {
        let now = self.clock.now();
        let mut map =
            self.shard(key).lock().map_err(|_| StoreError::Backend("replay shard poisoned".into()))?;
        // One lookup for the common cases: seen and live, or seen and expired (renewed).
        if let Some(expires) = map.get_mut(key) {
            if *expires > now {
                return Ok(Mark::Seen);
            }
            *expires = now + ttl;
            return Ok(Mark::New);
        }
        if map.len() >= self.shards.per_shard {
            map.retain(|_, expires| *expires > now);
            if map.len() >= self.shards.per_shard {
                return Err(StoreError::Full);
            }
        }
        map.insert(key.into(), now + ttl);
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
            .map(|mut map| {
                map.remove(key);
            })
            .map_err(|_| StoreError::Backend("replay shard poisoned".into()));
        Box::pin(std::future::ready(result))
    }
}
