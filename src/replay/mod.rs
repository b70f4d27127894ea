//! Replay protection: remember each verified delivery's key for a while, and refuse to
//! process it twice.
//!
//! A [`ReplayStore`] offers an atomic insert-if-absent with a time to live. The guard
//! marks a delivery only **after** it verified (so forged requests cannot fill or poison
//! the store), and removes the mark again when the hand-off to the inbox failed (so the
//! sender's retry of something that was not kept gets through).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use hookguard::replay::{MemoryReplayStore, Mark, ReplayStore};
//!
//! let store = MemoryReplayStore::new();
//! assert_eq!(store.mark(b"github:abc", Duration::from_secs(60)).await.unwrap(), Mark::New);
//! assert_eq!(store.mark(b"github:abc", Duration::from_secs(60)).await.unwrap(), Mark::Seen);
//! store.unmark(b"github:abc").await.unwrap();
//! assert_eq!(store.mark(b"github:abc", Duration::from_secs(60)).await.unwrap(), Mark::New);
//! # }
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::{fmt, future::Future, pin::Pin, time::Duration};

#[cfg(feature = "redis")]
pub use self::redis::RedisReplayStore;
pub use memory::MemoryReplayStore;

/// A boxed future, as the backend traits return (they are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`ReplayStore::mark`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The key was not there; it is now, until its time to live runs out.
    New,
    /// The key was already there: a replay (or a sender's retry of a kept delivery).
    Seen,
}

/// Why a replay store could not answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The store is at its capacity with entries that have not expired.
    Full,
    /// The backend is unreachable or failed.
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("replay store is full"),
            Self::Backend(e) => write!(f, "replay store backend failed: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Full => None,
            Self::Backend(e) => Some(e.as_ref()),
        }
    }
}

/// Remembers delivery keys for a while. Implementations must make
/// [`mark`](Self::mark) atomic: of many concurrent marks of one key, exactly one sees
/// [`Mark::New`].
pub trait ReplayStore: fmt::Debug + Send + Sync + 'static {
    /// Inserts `key` unless present; it expires after `ttl`.
    fn mark<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<Mark, StoreError>>;

    /// Removes `key` (after a failed hand-off).
    fn unmark<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl<T: ReplayStore + ?Sized> ReplayStore for std::sync::Arc<T> {
    fn mark<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<Mark, StoreError>> {
        (**self).mark(key, ttl)
    }
    fn unmark<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).unmark(key)
    }
}
