//! Replay protection: remember each verified delivery's key for a while, and refuse to
//! process it twice.
//!
//! A [`ReplayStore`] offers an atomic insert-if-absent with a time to live. The guard
//! marks a delivery only **after** it verified (so forged requests cannot fill or poison
//! the store), and removes the mark again when the hand-off failed (so the sender's retry
//! of something that was not kept gets through).
//!
//! The store serves middleware mode ([`VerifyLayer`](crate::layer::VerifyLayer),
//! [`Guard::check`](crate::guard::Guard::check), [`Guard::reserve`](crate::guard::Guard::reserve)),
//! where the handler runs before the answer. The terminal pipeline
//! ([`WebhookService`](crate::layer::WebhookService)) takes no mark: its inbox's unique key
//! refuses replays for as long as the inbox holds or remembers the delivery (see
//! [`Guard::accept`](crate::guard::Guard::accept)).
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
//!
//! # Two phases: reserve, then confirm
//!
//! [`Guard::check`](crate::guard::Guard::check) marks a delivery for its whole time to
//! live at once (a reservation confirmed right away), for a hand-off of your own right
//! after it (its crash window is documented there); the terminal pipeline takes no mark at
//! all. [`mark`](ReplayStore::mark) is that in one step, for callers of their own. Middleware mode
//! ([`VerifyLayer`](crate::layer::VerifyLayer), `actix::Verify`) has no inbox: your
//! handler processes the delivery while the request is open, and a mark set for the whole
//! time to live *before* the handler runs would outlive a receiver killed mid-handler
//! (the sender's retry would be answered `200 duplicate` for minutes to days and never
//! processed), and would let a concurrent copy be acknowledged while the first could
//! still fail. So middleware mode marks in two phases:
//!
//! 1. [`reserve`](ReplayStore::reserve) sets a **pending** mark that lives only for a
//!    short *lease* and names its holder (a random token). A copy that arrives meanwhile
//!    finds [`Mark::Pending`] and is answered `409` + `Retry-After` (retry later), not
//!    `200`; a copy that finds a confirmed mark finds [`Mark::Seen`] (`200 duplicate`).
//! 2. When the handler answered with a success (`2xx`),
//!    [`confirm`](ReplayStore::confirm) turns the reservation into a confirmed mark that
//!    lives the full time to live. On any other answer, an error, or an abandoned request,
//!    [`cancel`](ReplayStore::cancel) removes the reservation, but only while it is
//!    still the holder's: a late cancel never removes a mark that another request set
//!    or confirmed since.
//!
//! If the receiver dies mid-handler, nothing cancels: the reservation expires after its
//! lease, and the sender's next retry is processed.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use hookguard::{clock::ManualClock, replay::{MemoryReplayStore, Mark, ReplayStore}};
//!
//! let clock = ManualClock::at_unix(1_700_000_000);
//! let store = MemoryReplayStore::new().clock(clock.clone());
//! let lease = Duration::from_secs(60);
//! assert_eq!(store.reserve(b"sw:msg_1", 7, lease).await.unwrap(), Mark::New);
//! // A copy while the first request's handler runs: retry later.
//! assert_eq!(store.reserve(b"sw:msg_1", 8, lease).await.unwrap(), Mark::Pending);
//! // The handler succeeded: remembered for the full time to live.
//! store.confirm(b"sw:msg_1", Duration::from_secs(3600)).await.unwrap();
//! assert_eq!(store.reserve(b"sw:msg_1", 9, lease).await.unwrap(), Mark::Seen);
//!
//! // A receiver that died mid-handler leaves a reservation that lasts its lease only.
//! assert_eq!(store.reserve(b"sw:msg_2", 7, lease).await.unwrap(), Mark::New);
//! clock.advance(lease + Duration::from_secs(1));
//! assert_eq!(store.reserve(b"sw:msg_2", 8, lease).await.unwrap(), Mark::New);
//! # }
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::{fmt, future::Future, pin::Pin, time::Duration};

/// The longest replay key the stores keep as it is; a longer one (a delivery id of any
/// length a sender signed) is kept as its digest ([`digest_if_long`]), so a mark costs the
/// same whatever the id's length.
const INLINE: usize = 46;

/// `None` for a key of at most [`INLINE`] bytes, kept as it is; else its SHA-256 digest,
/// which the stores keep in its place (each in a form no key kept as it is can take).
fn digest_if_long(key: &[u8]) -> Option<[u8; 32]> {
    (key.len() > INLINE).then(|| <sha2::Sha256 as sha2::Digest>::digest(key).into())
}

#[cfg(feature = "redis")]
pub use self::redis::RedisReplayStore;
pub use memory::MemoryReplayStore;

/// A boxed future, as the backend traits return (they are used as trait objects).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::replay::BoxFuture;
/// fn answer(n: u32) -> BoxFuture<'static, u32> {
///     Box::pin(async move { n * 2 })
/// }
/// assert_eq!(answer(21).await, 42);
/// # }
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`ReplayStore::mark`] or [`ReplayStore::reserve`] found.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use hookguard::replay::{MemoryReplayStore, Mark, ReplayStore};
///
/// let store = MemoryReplayStore::new();
/// let lease = Duration::from_secs(60);
/// assert_eq!(store.reserve(b"k", 1, lease).await.unwrap(), Mark::New);
/// assert_eq!(store.reserve(b"k", 2, lease).await.unwrap(), Mark::Pending);
/// // `mark` counts a live reservation as seen.
/// assert_eq!(store.mark(b"k", lease).await.unwrap(), Mark::Seen);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The key was not there; it is now, until its time to live (or lease) runs out.
    New,
    /// A confirmed mark is there: a replay (or a sender's retry of a handled delivery).
    /// [`mark`](ReplayStore::mark) also answers this for a live reservation.
    Seen,
    /// Another request's reservation is live: that request is still being handled (or
    /// its receiver died and the lease has not run out yet). Only
    /// [`reserve`](ReplayStore::reserve) answers this.
    Pending,
}

/// Why a replay store could not answer.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use hookguard::replay::{MemoryReplayStore, ReplayStore, StoreError};
/// let store = MemoryReplayStore::new().capacity(1);
/// store.mark(b"github:d-1", Duration::from_secs(60)).await.unwrap();
/// let full = store.mark(b"github:d-2", Duration::from_secs(60)).await.unwrap_err();
/// assert!(matches!(full, StoreError::Full));
/// assert_eq!(full.to_string(), "replay store is full");
/// # }
/// ```
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
/// [`mark`](Self::mark) and [`reserve`](Self::reserve) atomic: of many concurrent marks
/// or reservations of one key, exactly one sees [`Mark::New`]. See the
/// [module docs](self) for the two phases.
///
/// [`reserve`](Self::reserve), [`confirm`](Self::confirm) and [`cancel`](Self::cancel)
/// have no default implementation on purpose: one built from `mark` and `unmark` alone
/// cannot tell a reservation from a confirmed mark, so it would either answer copies of
/// a delivery still in progress `200 duplicate` (acknowledging what may yet fail) or
/// answer replays of a handled one `409` until the sender gives up. A store of your own
/// keeps, per key, an expiry time and whether the mark is pending and whose it is.
///
/// Marks expire by the store's clock:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{sync::Arc, time::Duration};
/// use hookguard::{clock::ManualClock, replay::{Mark, MemoryReplayStore, ReplayStore}};
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let store: Arc<dyn ReplayStore> = Arc::new(MemoryReplayStore::new().clock(clock.clone()));
/// let ttl = Duration::from_secs(300);
/// assert_eq!(store.mark(b"stripe:evt_1", ttl).await.unwrap(), Mark::New);
/// clock.advance(Duration::from_secs(299));
/// assert_eq!(store.mark(b"stripe:evt_1", ttl).await.unwrap(), Mark::Seen);
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(store.mark(b"stripe:evt_1", ttl).await.unwrap(), Mark::New, "expired");
/// # }
/// ```
pub trait ReplayStore: fmt::Debug + Send + Sync + 'static {
    /// Inserts `key` as a confirmed mark unless a live mark (confirmed or reserved) is
    /// there; it expires after `ttl`. Answers [`Mark::New`] or [`Mark::Seen`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::replay::{MemoryReplayStore, Mark, ReplayStore};
    /// let store = MemoryReplayStore::new();
    /// assert_eq!(store.mark(b"k", Duration::from_secs(60)).await.unwrap(), Mark::New);
    /// assert_eq!(store.mark(b"k", Duration::from_secs(60)).await.unwrap(), Mark::Seen);
    /// # }
    /// ```
    fn mark<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<Mark, StoreError>>;

    /// Reserves `key` for the holder `token` unless a live mark is there: a pending mark
    /// that expires after `lease`. Answers [`Mark::New`] (reserved now),
    /// [`Mark::Pending`] (another live reservation) or [`Mark::Seen`] (a confirmed mark).
    /// `token` only has to differ between requests that may reserve the same key at
    /// once (the guard uses a random one).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::replay::{MemoryReplayStore, Mark, ReplayStore};
    /// let store = MemoryReplayStore::new();
    /// assert_eq!(store.reserve(b"k", 1, Duration::from_secs(60)).await.unwrap(), Mark::New);
    /// assert_eq!(store.reserve(b"k", 2, Duration::from_secs(60)).await.unwrap(), Mark::Pending);
    /// # }
    /// ```
    fn reserve<'a>(
        &'a self,
        key: &'a [u8],
        token: u64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Mark, StoreError>>;

    /// Makes `key` a confirmed mark that expires after `ttl`, whatever is there: the
    /// holder's reservation, another's (whose lease ran out while this holder's handler
    /// was still running), or nothing (the reservation expired).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::replay::{MemoryReplayStore, Mark, ReplayStore};
    /// let store = MemoryReplayStore::new();
    /// store.reserve(b"k", 1, Duration::from_secs(60)).await.unwrap();
    /// store.confirm(b"k", Duration::from_secs(3600)).await.unwrap();
    /// assert_eq!(store.reserve(b"k", 2, Duration::from_secs(60)).await.unwrap(), Mark::Seen);
    /// # }
    /// ```
    fn confirm<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes `key` if it is still the reservation of holder `token` (expired or not);
    /// leaves a confirmed mark and another holder's reservation alone.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::replay::{MemoryReplayStore, Mark, ReplayStore};
    /// let store = MemoryReplayStore::new();
    /// store.reserve(b"k", 1, Duration::from_secs(60)).await.unwrap();
    /// store.cancel(b"k", 2).await.unwrap(); // not the holder: nothing happens
    /// assert_eq!(store.reserve(b"k", 3, Duration::from_secs(60)).await.unwrap(), Mark::Pending);
    /// store.cancel(b"k", 1).await.unwrap();
    /// assert_eq!(store.reserve(b"k", 3, Duration::from_secs(60)).await.unwrap(), Mark::New);
    /// # }
    /// ```
    fn cancel<'a>(&'a self, key: &'a [u8], token: u64) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes `key`, confirmed or reserved (after a failed hand-off).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::replay::{MemoryReplayStore, Mark, ReplayStore};
    /// let store = MemoryReplayStore::new();
    /// store.mark(b"k", Duration::from_secs(60)).await.unwrap();
    /// store.unmark(b"k").await.unwrap();
    /// assert_eq!(store.mark(b"k", Duration::from_secs(60)).await.unwrap(), Mark::New);
    /// # }
    /// ```
    fn unmark<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Whether `key` holds a live confirmed mark (a delivery handled and answered), taking
    /// nothing: middleware mode asks it for a verified request while its inner service is
    /// not ready, to answer a copy `200 duplicate` at once instead of queueing it (with
    /// its body) behind the inner service's capacity. `Ok(false)` when the store cannot
    /// tell (the default): the copy waits, and its reservation says `Seen` then.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::replay::{MemoryReplayStore, ReplayStore};
    /// let store = MemoryReplayStore::new();
    /// store.reserve(b"k", 1, Duration::from_secs(60)).await.unwrap();
    /// assert!(!store.is_confirmed(b"k").await.unwrap(), "only reserved");
    /// store.confirm(b"k", Duration::from_secs(3600)).await.unwrap();
    /// assert!(store.is_confirmed(b"k").await.unwrap());
    /// # }
    /// ```
    fn is_confirmed<'a>(&'a self, _key: &'a [u8]) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Ok(false)))
    }

    /// [`mark`](Self::mark) answered at once, for a store that needs no I/O (an
    /// in-process one), or `None` (the default) to say "call `mark`": spares a caller that
    /// marks per delivery a boxed future. A store that answers it must answer exactly as
    /// `mark` would. (The guard marks in two phases, and does not call it.)
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::replay::{MemoryReplayStore, Mark, ReplayStore};
    /// let store = MemoryReplayStore::new();
    /// assert_eq!(store.mark_now(b"k", Duration::from_secs(60)).unwrap().unwrap(), Mark::New);
    /// assert_eq!(store.mark_now(b"k", Duration::from_secs(60)).unwrap().unwrap(), Mark::Seen);
    /// ```
    fn mark_now(&self, _key: &[u8], _ttl: Duration) -> Option<Result<Mark, StoreError>> {
        None
    }
}

impl<T: ReplayStore + ?Sized> ReplayStore for std::sync::Arc<T> {
    fn mark<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<Mark, StoreError>> {
        (**self).mark(key, ttl)
    }
    fn reserve<'a>(
        &'a self,
        key: &'a [u8],
        token: u64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Mark, StoreError>> {
        (**self).reserve(key, token, lease)
    }
    fn confirm<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).confirm(key, ttl)
    }
    fn cancel<'a>(&'a self, key: &'a [u8], token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).cancel(key, token)
    }
    fn unmark<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).unmark(key)
    }
    fn is_confirmed<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).is_confirmed(key)
    }
    fn mark_now(&self, key: &[u8], ttl: Duration) -> Option<Result<Mark, StoreError>> {
        (**self).mark_now(key, ttl)
    }
}
