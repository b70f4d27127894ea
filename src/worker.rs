//! The worker pool: pulls webhooks from an inbox and runs your handler, with bounded
//! concurrency, retries with exponential back-off and jitter, a dead-letter list after the
//! last attempt, and graceful shutdown.
//!
//! The pool keeps [`concurrency`](Worker::concurrency) long-lived *lanes* (tasks) fed from
//! one loop that pulls as many jobs as there are idle lanes, in one call: a job costs a
//! queue push, not a task of its own. A lane that finishes takes the next job its inbox has
//! at hand ([`Inbox::pull_one_now`]: the memory inbox), leased for that lane alone, else the
//! next queued job without waiting, else waits for the loop; under load several lanes
//! finish per wake-up of the loop, and one pull serves them all. No job is leased for a
//! lane that is not about to start it: jobs an inbox's pull returns beyond what was asked
//! are given back at once. The `hookguard_inbox_depth` gauge is refreshed beside the
//! pulls, never in their way. A handler that finishes when first polled costs no timer. A
//! handler that panics does not take its lane down: the panic counts as a failed attempt
//! and the job is retried. An acknowledgement the inbox fails with [`InboxError::Backend`]
//! (a disk or database error that may pass) is tried again up to four times, 50 ms to
//! 400 ms apart, while the job's lease holds and the shutdown's grace period lasts:
//! otherwise the job would come back after its lease and the handler's work be done twice.
//! A lost lease ([`InboxError::LeaseLost`]) is final.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified, worker::Worker};
//!
//! let inbox = MemoryInbox::new();
//! let v = Verified::new("github", Some("d-1".into()), None, Some("push".into()), [0; 32], 0);
//! inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::now_utc())).await.unwrap();
//!
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let worker = Worker::new(inbox.clone(), move |hook: Webhook| {
//!     let tx = tx.clone();
//!     async move {
//!         tx.send(hook.event().unwrap_or_default().to_owned()).unwrap();
//!         Ok::<(), std::convert::Infallible>(())
//!     }
//! })
//! .spawn();
//! assert_eq!(rx.recv().await.unwrap(), "push");
//! worker.shutdown(Duration::from_secs(5)).await;
//! # }
//! ```

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::Poll,
    time::Duration,
};

use time::OffsetDateTime;
use tokio::{
    sync::{Notify, watch},
    task::JoinSet,
};

use crate::{
    clock::{Clock, SystemClock},
    inbox::{Inbox, InboxError, Job, Webhook},
    replay::BoxFuture,
};

/// What processes a webhook. Implemented for async closures
/// `Fn(Webhook) -> impl Future<Output = Result<(), E>>` with `E: Display`, and for Tower
/// services through [`ServiceHandler`].
///
/// An error's text is logged and kept with the job (its last error, the dead letter's
/// `error`); the [`Worker`] keeps at most [`ERROR_LIMIT`] bytes of it, and says how many
/// more were cut.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{inbox::{BoxFuture, Webhook}, verify::Verified, worker::Handler};
///
/// struct PushesOnly;
/// impl Handler for PushesOnly {
///     fn handle(&self, webhook: Webhook) -> BoxFuture<'static, Result<(), String>> {
///         let push = webhook.event() == Some("push");
///         Box::pin(async move { if push { Ok(()) } else { Err("not a push".to_owned()) } })
///     }
/// }
///
/// let v = Verified::new("github", Some("d-1".into()), None, Some("ping".into()), [0; 32], 0);
/// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
/// assert_eq!(PushesOnly.handle(hook.clone()).await, Err("not a push".to_owned()));
/// // A closure is a handler too; its error is turned into text.
/// let closure = |_hook: Webhook| async { Err::<(), _>(std::fmt::Error) };
/// assert!(closure.handle(hook).await.is_err());
/// # }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Processes one webhook; an error means "try again later".
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{inbox::Webhook, verify::Verified, worker::Handler};
    /// let handler = |hook: Webhook| async move {
    ///     if hook.body().is_empty() { Err("empty body") } else { Ok(()) }
    /// };
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// assert_eq!(handler.handle(hook).await, Ok(()));
    /// let empty = Webhook::new("github", &v, Default::default(), bytes::Bytes::new(), time::OffsetDateTime::UNIX_EPOCH);
    /// assert_eq!(handler.handle(empty).await, Err("empty body".to_owned()));
    /// # }
    /// ```
    fn handle(&self, webhook: Webhook) -> BoxFuture<'static, Result<(), String>>;
}

impl<F, Fut, E> Handler for F
where
    F: Fn(Webhook) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display,
{
    fn handle(&self, webhook: Webhook) -> BoxFuture<'static, Result<(), String>> {
        let fut = self(webhook);
        Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
    }
}

/// Adapts a Tower service (`Service<Webhook, Response = ()>`) into a [`Handler`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::time::Duration;
/// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified, worker::{ServiceHandler, Worker}};
/// let inbox = MemoryInbox::new();
/// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
/// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
/// let svc = tower::service_fn(|_hook: Webhook| async { Err::<(), _>(std::io::Error::other("disk full")) });
/// let handle = Worker::new(inbox.clone(), ServiceHandler::new(svc)).max_attempts(1).spawn();
/// assert_eq!(handle.drain(Duration::from_secs(5)).await.left, Some(0));
/// assert_eq!(inbox.dead_letters(1).await.unwrap()[0].error, "disk full");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServiceHandler<S>(S);

impl<S> ServiceHandler<S> {
    /// Wraps `service`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{inbox::Webhook, verify::Verified, worker::{Handler, ServiceHandler}};
    /// let svc = tower::service_fn(|hook: Webhook| async move {
    ///     if hook.body().is_empty() { Err("empty body") } else { Ok(()) }
    /// });
    /// let handler = ServiceHandler::new(svc);
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// assert_eq!(handler.handle(hook).await, Err("empty body".to_owned()));
    /// # }
    /// ```
    pub fn new(service: S) -> Self {
        Self(service)
    }
}

impl<S> Handler for ServiceHandler<S>
where
    S: tower_service::Service<Webhook, Response = ()> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: fmt::Display + Send,
{
    fn handle(&self, webhook: Webhook) -> BoxFuture<'static, Result<(), String>> {
        let mut svc = self.0.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await.map_err(|e| e.to_string())?;
            svc.call(webhook).await.map_err(|e| e.to_string())
        })
    }
}

/// Exponential back-off: `base × 2^(attempt−1)`, capped at `max`, with "equal jitter"
/// (a random point in the upper half) unless turned off.
///
/// ```
/// use std::time::Duration;
/// use hookguard::worker::Backoff;
/// let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).without_jitter();
/// assert_eq!(b.delay(1), Duration::from_secs(1));
/// assert_eq!(b.delay(3), Duration::from_secs(4));
/// assert_eq!(b.delay(30), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: bool,
}

impl Default for Backoff {
    /// 1 s doubling up to 10 minutes, with jitter.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(600))
    }
}

impl Backoff {
    /// The longest delay a back-off gives, whatever its `max`: 100 years (365-day).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::worker::Backoff;
    /// let forever = Backoff::new(Duration::from_secs(1), Duration::MAX).without_jitter();
    /// assert_eq!(forever.delay(1_000), Backoff::LONGEST);
    /// ```
    pub const LONGEST: Duration = Duration::from_secs(100 * 365 * 86_400);

    /// Back-off from `base` up to `max`, with jitter.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::worker::Backoff;
    /// let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
    /// // Equal jitter: somewhere in the upper half of 2 s × 2² = 8 s.
    /// let d = b.delay(3);
    /// assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(8));
    /// ```
    #[must_use]
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, jitter: true }
    }

    /// The same, without jitter (deterministic).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::worker::Backoff;
    /// let b = Backoff::new(Duration::from_millis(500), Duration::from_secs(60)).without_jitter();
    /// assert_eq!(b.delay(2), b.delay(2));
    /// assert_eq!(b.delay(2), Duration::from_secs(1));
    /// ```
    #[must_use]
    pub const fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The delay after failed attempt number `attempt` (1-based): `base` doubled each
    /// attempt, at most `max` and never more than [`Backoff::LONGEST`] (so that every
    /// inbox can store the retry time).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::worker::Backoff;
    /// let b = Backoff::default().without_jitter();
    /// assert_eq!(b.delay(1), Duration::from_secs(1));
    /// assert_eq!(b.delay(5), Duration::from_secs(16));
    /// assert_eq!(b.delay(20), Duration::from_secs(600), "capped at 10 minutes");
    /// ```
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self.max.min(Self::LONGEST);
        let mut raw = self.base.min(cap);
        // Doubled until the cap (at most 62 times from a nanosecond to 100 years).
        for _ in 1..attempt {
            if raw.is_zero() || raw >= cap {
                break;
            }
            raw = raw.saturating_mul(2).min(cap);
        }
        if self.jitter {
            let half = raw / 2;
            half + half.mul_f64(fastrand::f64())
        } else {
            raw
        }
    }
}

/// How many times an ack the inbox failed with [`InboxError::Backend`] is tried again.
const ACK_RETRIES: u32 = 4;

/// The waits before those tries: 50, 100, 200 and 400 ms (750 ms in all).
const ACK_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(50), Duration::from_millis(400)).without_jitter();

/// The default [`Worker::gather`] window.
const DEFAULT_GATHER: Duration = Duration::from_millis(1);

/// The shortest [`Worker::idle_poll`]: a shorter one is taken as this.
const MIN_IDLE_POLL: Duration = Duration::from_millis(1);

/// How often the pool refreshes the `hookguard_inbox_depth` gauge, at most.
const DEPTH_EVERY: Duration = Duration::from_secs(1);

/// A pool of workers over one inbox. Configure, then [`spawn`](Self::spawn).
///
/// A failed attempt is retried after the [`backoff`](Self::backoff), by the pool's
/// [`clock`](Self::clock): here a [`ManualClock`](crate::clock::ManualClock), so the
/// minute passes at once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::{sync::{Arc, atomic::{AtomicU32, Ordering}}, time::Duration};
/// use hookguard::{clock::ManualClock, inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
/// use hookguard::worker::{Backoff, Worker};
///
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let inbox = MemoryInbox::new().clock(clock.clone());
/// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
/// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), clock.now_for_tests())).await.unwrap();
///
/// // Fails the first attempt, succeeds the second.
/// let (calls, (tx, mut attempts)) = (Arc::new(AtomicU32::new(0)), tokio::sync::mpsc::unbounded_channel());
/// let handler = move |_hook: Webhook| {
///     let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
///     tx.send(n).unwrap();
///     async move { if n == 1 { Err("database down") } else { Ok(()) } }
/// };
/// let handle = Worker::new(inbox.clone(), handler)
///     .concurrency(4)
///     .backoff(Backoff::new(Duration::from_secs(60), Duration::from_secs(60)).without_jitter())
///     .clock(clock.clone())
///     .spawn();
/// assert_eq!(attempts.recv().await, Some(1));
/// // Tokio's paused time moves only once the pool is idle: the retry is booked.
/// tokio::time::sleep(Duration::from_secs(5)).await;
/// assert!(attempts.try_recv().is_err(), "not due before the back-off");
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(attempts.recv().await, Some(2));
/// handle.shutdown(Duration::from_secs(5)).await;
/// assert_eq!(inbox.depth().await.unwrap(), 0);
/// # }
/// ```
#[must_use]
pub struct Worker {
    inbox: Arc<dyn Inbox>,
    handler: Arc<dyn Handler>,
    concurrency: usize,
    max_attempts: u32,
    backoff: Backoff,
    lease: Duration,
    idle_poll: Duration,
    gather: Duration,
    clock: Arc<dyn Clock>,
    /// The depth gauge's `inbox` label ([`name`](Worker::name)).
    name: Option<String>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("inbox", &self.inbox)
            .field("concurrency", &self.concurrency)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("lease", &self.lease)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Workers for `inbox` running `handler`. Defaults: 8 at once, 8 attempts, back-off
    /// from 1 s to 10 min with jitter, 5-minute leases (a handler running longer is
    /// cancelled and retried), a 1 ms [`gather`](Self::gather) window, the system clock.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use hookguard::{inbox::{MemoryInbox, Webhook}, worker::Worker};
    /// let worker = Worker::new(MemoryInbox::new(), |_hook: Webhook| async { Ok::<(), Infallible>(()) });
    /// let config = format!("{worker:?}");
    /// assert!(config.contains("concurrency: 8") && config.contains("max_attempts: 8"));
    /// ```
    pub fn new(inbox: impl Inbox, handler: impl Handler) -> Self {
        Self {
            inbox: Arc::new(inbox),
            handler: Arc::new(handler),
            concurrency: 8,
            max_attempts: 8,
            backoff: Backoff::default(),
            lease: Duration::from_secs(300),
            idle_poll: Duration::from_secs(1),
            gather: DEFAULT_GATHER,
            clock: Arc::new(SystemClock),
            name: None,
        }
    }

    /// How many handlers run at once (at least 1).
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use hookguard::{inbox::{MemoryInbox, Webhook}, worker::Worker};
    /// let worker = Worker::new(MemoryInbox::new(), |_hook: Webhook| async { Ok::<(), Infallible>(()) })
    ///     .concurrency(0);
    /// assert!(format!("{worker:?}").contains("concurrency: 1"));
    /// ```
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Attempts before a webhook is dead-lettered (at least 1).
    ///
    /// Each pull counts an attempt, also one that ended with no outcome reaching the inbox
    /// (its handler killed the process: an abort, running out of memory, a stack
    /// overflow; or its lease ran out, the pull's answer was lost, its outcome could not be
    /// written). A job pulled more than two attempts past its last is dead-lettered
    /// without running, so that a job that kills the process cannot bring it down after
    /// every lease for ever; the two spare pulls keep a job that never ran (a pull lost at
    /// shutdown, say) from being set aside for it. So is a job pulled that far past a
    /// `max_attempts` lowered since its earlier attempts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified, worker::Worker};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
    /// let handle = Worker::new(inbox.clone(), |_hook: Webhook| async { Err::<(), _>("bad payload") })
    ///     .max_attempts(1)
    ///     .spawn();
    /// let _ = handle.drain(Duration::from_secs(5)).await;
    /// let dead = inbox.dead_letters(10).await.unwrap();
    /// assert_eq!((dead[0].attempts, dead[0].error.as_str()), (1, "bad payload"));
    /// # }
    /// ```
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The back-off between attempts (default: [`Backoff::default`]). Retries are due by
    /// the inbox's clock: after a failure the job waits the back-off there.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
    /// use hookguard::worker::{Backoff, Worker};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let inbox = MemoryInbox::new().clock(clock.clone());
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
    /// let handle = Worker::new(inbox.clone(), |_hook: Webhook| async { Err::<(), _>("later") })
    ///     .backoff(Backoff::new(Duration::from_secs(30), Duration::from_secs(30)).without_jitter())
    ///     .clock(clock.clone())
    ///     .spawn();
    /// // The only job fails once, then waits: `drain` gives up at the end of its grace.
    /// assert_eq!(handle.drain(Duration::from_secs(1)).await.left, Some(1));
    /// assert!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().is_empty(), "not due yet");
    /// clock.advance(Duration::from_secs(30));
    /// assert_eq!(inbox.pull(1, Duration::from_secs(30)).await.unwrap()[0].attempt(), 2);
    /// # }
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long a job is leased (default 5 minutes). It also sets the handler's time limit:
    /// the lease less a margin (a tenth of it, at most one second), counted from when the
    /// pool asked for the job (the pull's own time, any wait for a lane after it, and
    /// whatever the handler does before its first `.await` come off it). A handler still
    /// running then is cancelled and the attempt fails, so its outcome reaches the inbox
    /// while the lease still holds the job and no other worker can have taken it.
    ///
    /// # Panics
    ///
    /// If `lease` is zero: no job could ever start (each would be given back unstarted,
    /// over and over).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use std::{convert::Infallible, time::Duration};
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified, worker::Worker};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
    /// let stuck = |_hook: Webhook| std::future::pending::<Result<(), Infallible>>();
    /// let handle = Worker::new(inbox.clone(), stuck).lease(Duration::from_secs(10)).max_attempts(1).spawn();
    /// assert_eq!(handle.drain(Duration::from_secs(60)).await.left, Some(0));
    /// // Handlers get 9 s of a 10 s lease: the stuck one was cancelled and its attempt failed.
    /// let dead = inbox.dead_letters(1).await.unwrap();
    /// assert!(dead[0].error.contains("time limit (9s: the lease of 10s"), "{}", dead[0].error);
    /// # }
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        assert!(!lease.is_zero(), "a worker's lease must not be zero");
        self.lease = lease;
        self
    }

    /// How long an idle pool waits for work before it pulls again (the timeout it passes to
    /// [`Inbox::wait`], which returns earlier when the inbox knows of new work), and how
    /// long it pauses after a failed pull. Default 1 s; at least 1 ms (zero would pull a
    /// failing inbox in a loop that holds a core).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
    /// use hookguard::worker::{Backoff, Worker};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let inbox = MemoryInbox::new().clock(clock.clone());
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
    /// let (tx, mut attempts) = tokio::sync::mpsc::unbounded_channel();
    /// let handler = move |_hook: Webhook| {
    ///     tx.send(tokio::time::Instant::now()).unwrap();
    ///     async { Err::<(), _>("later") }
    /// };
    /// let handle = Worker::new(inbox.clone(), handler)
    ///     .backoff(Backoff::new(Duration::from_secs(60), Duration::from_secs(60)).without_jitter())
    ///     .idle_poll(Duration::from_secs(30))
    ///     .clock(clock.clone())
    ///     .spawn();
    /// let first = attempts.recv().await.unwrap();
    /// tokio::time::sleep(Duration::from_secs(5)).await;
    /// // A clock moved by hand wakes nobody: the idle pool finds the retry due at its next look.
    /// clock.advance(Duration::from_secs(60));
    /// let second = attempts.recv().await.unwrap();
    /// assert_eq!((second - first).as_secs(), 30);
    /// handle.shutdown(Duration::from_secs(5)).await;
    /// # }
    /// ```
    pub fn idle_poll(mut self, every: Duration) -> Self {
        self.idle_poll = every.max(MIN_IDLE_POLL);
        self
    }

    /// After an idle pool is woken by new work, wait this long before pulling, so that
    /// one wake-up serves every job that arrives meanwhile (default 1 ms; zero pulls at once).
    ///
    /// Waking a parked pool costs a system call on the receiving side and a thread
    /// switch on the pool's side. Under a steady stream of deliveries, a window of a
    /// millisecond or two turns one wake-up per delivery into one per batch and frees
    /// the receiving threads' CPU for answering senders; each job then starts at most
    /// that much later. Once the pool is busy it pulls without waiting; when a pull finds
    /// the inbox empty right after a round that had work, the pool sleeps one window and
    /// pulls again instead of asking to be woken (under a steady stream the wake-up would
    /// come within microseconds, only to start the window): one wake-up per window while
    /// deliveries keep coming, and a wait for the next push once a window brought none.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use std::{convert::Infallible, time::Duration};
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified, worker::Worker};
    /// use tokio::time::Instant;
    /// let inbox = MemoryInbox::new();
    /// let (tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    /// let handler = move |_hook: Webhook| {
    ///     tx.send(Instant::now()).unwrap();
    ///     async { Ok::<(), Infallible>(()) }
    /// };
    /// let handle = Worker::new(inbox.clone(), handler).gather(Duration::from_millis(2)).spawn();
    /// tokio::time::sleep(Duration::from_millis(10)).await; // the pool is idle
    /// let pushed = Instant::now();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
    /// assert_eq!(started.recv().await.unwrap() - pushed, Duration::from_millis(2));
    /// handle.shutdown(Duration::from_secs(5)).await;
    /// # }
    /// ```
    pub fn gather(mut self, window: Duration) -> Self {
        self.gather = window;
        self
    }

    /// The clock for retry times (default: the system clock); give it the inbox's
    /// clock. The [`Worker`] example moves a [`ManualClock`](crate::clock::ManualClock)
    /// past a back-off.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
    /// use hookguard::worker::{Backoff, Worker};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let inbox = MemoryInbox::new().clock(clock.clone());
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
    /// let handle = Worker::new(inbox.clone(), |_hook: Webhook| async { Err::<(), _>("later") })
    ///     .backoff(Backoff::new(Duration::from_secs(60), Duration::from_secs(60)).without_jitter())
    ///     .clock(clock.clone())
    ///     .spawn();
    /// assert_eq!(handle.drain(Duration::from_secs(1)).await.left, Some(1));
    /// // Due 60 s after the failure by the manual clock, not by the system's.
    /// clock.advance(Duration::from_secs(59));
    /// assert!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().is_empty());
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(inbox.pull(1, Duration::from_secs(30)).await.unwrap()[0].attempt(), 2);
    /// # }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Names the pool's inbox in its metrics: the `hookguard_inbox_depth` gauge gets the
    /// label `inbox = name`, so that pools on several inboxes in one process each have a
    /// gauge of their own (unnamed, they share one unlabelled gauge and overwrite it). A
    /// fixed word of the application's, never something a request chose.
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use hookguard::{inbox::{MemoryInbox, Webhook}, worker::Worker};
    /// let worker = Worker::new(MemoryInbox::new(), |_hook: Webhook| async { Ok::<(), Infallible>(()) })
    ///     .name("payments");
    /// assert!(format!("{worker:?}").contains("payments"));
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Starts the pool on the current tokio runtime. Keep the [`WorkerHandle`] to stop it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::{convert::Infallible, time::Duration};
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified, worker::Worker};
    /// let inbox = MemoryInbox::new();
    /// let (tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    /// let handle = Worker::new(inbox.clone(), move |hook: Webhook| {
    ///     tx.send(hook.id().map(str::to_owned)).unwrap();
    ///     async { Ok::<(), Infallible>(()) }
    /// })
    /// .spawn();
    /// // Pushed after the start: the inbox wakes the idle pool.
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
    /// assert_eq!(done.recv().await.unwrap().as_deref(), Some("d-1"));
    /// handle.shutdown(Duration::from_secs(5)).await;
    /// # }
    /// ```
    pub fn spawn(self) -> WorkerHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let inbox = Arc::clone(&self.inbox);
        let progress = Arc::new(Progress {
            lanes: Lanes::new(self.concurrency),
            held: AtomicUsize::new(NOT_YET),
            returned: AtomicUsize::new(0),
        });
        let task = tokio::spawn(self.run(stop_rx, cancel_rx, Arc::clone(&progress)));
        WorkerHandle { stop: stop_tx, cancel: cancel_tx, task, inbox, progress }
    }

    /// The pool: `concurrency` long-lived lanes take jobs from a local queue that
    /// [`Self::feed`] fills with batch pulls. A lane is a task for the pool's lifetime, so
    /// a job costs a queue push, not a task spawn. The loop pulls as many jobs as there
    /// are idle lanes; a lane that finishes takes the next job the inbox has at hand
    /// ([`Inbox::pull_one_now`], leased for that lane only), else a queued job without
    /// waiting, else wakes the loop (under load several lanes finish per wake-up, and one
    /// pull serves them all). The depth gauge ([`Self::gauge`]) runs beside the loop, in
    /// this task: it never holds a pull up, and it ends with the loop.
    async fn run(
        self,
        mut stop: watch::Receiver<bool>,
        cancel_rx: watch::Receiver<bool>,
        progress: Arc<Progress>,
    ) -> ShutdownReport {
        let this = Arc::new(self);
        let mut tasks = JoinSet::new();
        for _ in 0..this.concurrency {
            let (this, progress, cancel, stopping) =
                (Arc::clone(&this), Arc::clone(&progress), cancel_rx.clone(), stop.clone());
            tasks.spawn(async move {
                let (lanes, returned) = (&progress.lanes, &progress.returned);
                let mut counters = Counters::default();
                loop {
                    let mut job = match lanes.take() {
                        Some(job) => job,
                        None => match lanes.next().await {
                            Some(job) => job,
                            None => break,
                        },
                    };
                    loop {
                        match Caught::new(this.process(job, &cancel, &mut counters)).await {
                            // Not started (the grace period ended): not a lane to take
                            // another at once.
                            Some(Ran::NotStarted { given_back }) => {
                                if given_back && *stopping.borrow() {
                                    returned.fetch_add(1, Ordering::Relaxed);
                                }
                                break;
                            }
                            Some(Ran::Settled) => {}
                            // Not the handler (its panics are failed attempts): the lane
                            // lives on, and the job comes back when its lease runs out.
                            None => tracing::error!("a worker lane caught a panic outside the handler"),
                        }
                        match this.at_hand(&stopping) {
                            Some(next) => job = next,
                            None => break,
                        }
                    }
                    lanes.done();
                }
            });
        }
        let lanes = &progress.lanes;
        // The loop's own view of the grace period: once it is over, an inbox call that
        // has not answered (a database that went away) is given up, so that shutdown ends.
        let mut grace_over = cancel_rx.clone();
        let (depth_due, due) = watch::channel(());
        tokio::select! {
            biased;
            () = this.feed(lanes, &mut stop, &mut grace_over, &depth_due) => {}
            () = this.gauge(due) => {}
        }
        // Stop pulling; the lanes finish what they hold (running and queued jobs). The
        // handle flips `cancel` when the grace period ends: running jobs are cancelled and
        // queued ones are not started, and all of them go back to the inbox.
        let in_flight = lanes.close();
        progress.held.store(in_flight, Ordering::Relaxed);
        while tasks.join_next().await.is_some() {}
        ShutdownReport { in_flight, returned: progress.returned.load(Ordering::Relaxed) }
    }

    /// The pool's loop: pulls for the idle lanes until the pool is told to stop, or the
    /// grace period ends while an inbox call is pending. Asks [`Self::gauge`] for the
    /// depth through `depth_due`, at most once every [`DEPTH_EVERY`].
    async fn feed(
        &self,
        lanes: &Lanes,
        stop: &mut watch::Receiver<bool>,
        grace_over: &mut watch::Receiver<bool>,
        depth_due: &watch::Sender<()>,
    ) {
        let mut last_depth = None;
        // Whether the last pull found work: the pool is busy, and an empty pull only means
        // that it caught up.
        let mut busy = false;
        // Whether an inbox's pull was found to return more jobs than asked (warned once).
        let mut greedy = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let room = lanes.room();
            if room == 0 {
                let room_made = lanes.room_made.notified();
                tokio::pin!(room_made);
                room_made.as_mut().enable();
                if lanes.room() == 0 {
                    tokio::select! {
                        () = room_made => {}
                        // Lanes that take their jobs at hand can stay busy through a whole
                        // backlog without the loop pulling: the gauge is refreshed anyway.
                        () = tokio::time::sleep(DEPTH_EVERY) => {
                            ask_depth(&mut last_depth, tokio::time::Instant::now(), depth_due);
                        }
                        () = stop_changed(stop) => {}
                    }
                }
                continue;
            }
            // The jobs' leases run from before the pull: a backend fixes their end when it
            // reads its clock, and the pull may take a while after that (a pool wait, a
            // commit). One clock read per pull: it also times the depth gauge, refreshed at
            // most once a second (a query for SQL inboxes).
            let asked_at = tokio::time::Instant::now();
            let pulled = tokio::select! {
                // A pull that has answered wins over the grace period's end (its jobs go to
                // the lanes, which give them back at once); one still pending is given up.
                biased;
                // An inbox that panics (one of a third party) fails this pull, not the pool.
                pulled = Caught::of(|| self.inbox.pull(room, self.lease)) => {
                    pulled.unwrap_or_else(|| Err(InboxError::Backend("the inbox's pull panicked".into())))
                }
                // Whatever that pull leased comes back when its lease runs out.
                () = cancelled(grace_over) => return,
            };
            let mut jobs = match pulled {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "inbox pull failed");
                    // Not `wait`: it may return at once for work that is there but could
                    // not be pulled, and the next pull would fail again straight away.
                    tokio::select! {
                        () = tokio::time::sleep(self.idle_poll) => {}
                        () = stop_changed(stop) => {}
                    }
                    continue;
                }
            };
            let pulled_at = asked_at;
            ask_depth(&mut last_depth, pulled_at, depth_due);
            if jobs.is_empty() {
                // Caught up after a busy round: more is on its way under a steady stream,
                // so sleep one window and look again; wait for a push only if it brought none.
                let caught_up = std::mem::take(&mut busy) && !self.gather.is_zero();
                if !caught_up {
                    let waited = tokio::select! {
                        waited = Caught::of(|| self.inbox.wait(self.idle_poll)) => waited,
                        () = stop_changed(stop) => continue,
                    };
                    if waited.is_none() {
                        // A wait that panics returns at once: not a wake-up to pull on
                        // straight away (a pull a millisecond, or a spin with no gather).
                        tracing::warn!("the inbox's wait panicked");
                        tokio::select! {
                            () = tokio::time::sleep(self.idle_poll) => {}
                            () = stop_changed(stop) => {}
                        }
                    }
                }
                if !self.gather.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(self.gather) => {}
                        () = stop_changed(stop) => {}
                    }
                }
                continue;
            }
            busy = true;
            // A third party's inbox may return more than asked: queued behind busy lanes,
            // the extra jobs would wait past their time limit (the lease less its margin,
            // from the pull) and fail an attempt without running. They go back at once
            // (`give_back`: uncounted by this crate's inboxes; the trait's default, a
            // retry, counts the attempt, but no job waits past its limit unrun).
            let extra = if jobs.len() > room { jobs.split_off(room) } else { Vec::new() };
            lanes.hand_out(jobs, pulled_at);
            if !extra.is_empty() {
                if !std::mem::replace(&mut greedy, true) {
                    tracing::warn!(
                        asked = room,
                        returned = room + extra.len(),
                        "the inbox's pull returned more jobs than asked for; the extra ones are given back \
                         (logged once)"
                    );
                }
                for job in &extra {
                    let given_back = tokio::select! {
                        given_back = Caught::of(|| self.inbox.give_back(job, self.clock.now())) => given_back,
                        // Those not given back yet come back when their leases run out.
                        () = cancelled(grace_over) => return,
                    };
                    match given_back {
                        Some(Ok(())) => {}
                        Some(Err(e)) => report_inbox_error(&e, "return"),
                        None => tracing::error!("the inbox's give_back panicked"),
                    }
                }
            }
        }
    }

    /// Sets the inbox depth gauge each time [`Self::feed`] asks (at most once every
    /// [`DEPTH_EVERY`]; a query for SQL inboxes), beside it: a slow count holds no pull
    /// up. One count at a time; the asks made while one runs are dropped, so a count
    /// slower than [`DEPTH_EVERY`] is not run back to back. Never ends: the pool drops it
    /// with the loop.
    async fn gauge(&self, mut due: watch::Receiver<()>) {
        while due.changed().await.is_ok() {
            if let Some(Ok(depth)) = Caught::of(|| self.inbox.depth()).await {
                match &self.name {
                    Some(name) => {
                        metrics::gauge!("hookguard_inbox_depth", "inbox" => name.clone()).set(depth as f64)
                    }
                    None => metrics::gauge!("hookguard_inbox_depth").set(depth as f64),
                }
            }
            due.mark_unchanged();
        }
        std::future::pending::<()>().await;
    }

    /// The next job the inbox has at hand for a lane that just finished one, leased for it
    /// alone ([`Inbox::pull_one_now`]); none once the pool is stopping.
    fn at_hand(&self, stopping: &watch::Receiver<bool>) -> Option<Queued> {
        if *stopping.borrow() {
            return None;
        }
        let at_hand =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inbox.pull_one_now(self.lease)))
                .unwrap_or_else(|_| Some(Err(InboxError::Backend("the inbox's pull panicked".into()))));
        match at_hand? {
            Ok(job) => job.map(|job| Queued { job, pulled_at: None }),
            Err(e) => {
                tracing::warn!(error = %e, "inbox pull failed");
                None
            }
        }
    }

    /// Runs one job, or gives it back unstarted (the grace period ended before it began; a
    /// job whose time limit passed before a lane was free fails an attempt instead).
    async fn process(&self, queued: Queued, cancel: &watch::Receiver<bool>, counters: &mut Counters) -> Ran {
        use tracing::Instrument as _;
        let job = &queued.job;
        let webhook = job.webhook();
        let span = tracing::info_span!(
            "webhook",
            endpoint = webhook.endpoint(),
            id = webhook.id(),
            attempt = job.attempt()
        );
        self.process_in_span(queued, cancel.clone(), counters).instrument(span).await
    }

    async fn process_in_span(
        &self,
        Queued { job, pulled_at }: Queued,
        mut cancel: watch::Receiver<bool>,
        counters: &mut Counters,
    ) -> Ran {
        // The lease runs from the pull (from now when the lane pulled the job itself, just
        // now). The handler must be done a margin before it ends, so that its outcome
        // reaches the inbox while the lease still holds the job: a pull in between would
        // take it again. The deadline is fixed before the handler is called, so that work
        // it does before its first `.await` counts too.
        let now = tokio::time::Instant::now();
        let limit = self.lease.saturating_sub(lease_margin(self.lease));
        // A lease too long for the clock to add is no limit.
        let deadline = crate::inbox::instant_after(pulled_at.unwrap_or(now), limit);
        let outcome = if *cancel.borrow() {
            // The grace period is over: not started.
            None
        } else if job.attempt() > self.max_attempts.saturating_add(UNFINISHED_PULLS) {
            // Its last pulls ended with no outcome reaching the inbox (failures are
            // dead-lettered at the last attempt): a handler that killed the process, a
            // lease that ran out while it ran, a pull whose answer was lost, an outcome
            // that could not be written. Each pull counts an attempt, so without this a
            // job that kills the process would come back after every lease, and crash it
            // each time. The allowance keeps a job that never ran (a lost pull) from being
            // set aside for it.
            Some(Ok(Some(Err(format!(
                "not run: this is attempt {} and at most {} are made (and {UNFINISHED_PULLS} pulls more \
                 that end without an outcome); its last pulls ended without an outcome reaching the \
                 inbox (the process died while it ran, its lease ran out, or its outcome could not \
                 be written)",
                job.attempt(),
                self.max_attempts
            )))))
        } else if deadline <= now {
            // The lease ran out before the handler could start: the pull itself took the
            // time limit (a backend that answers slowly), or the job waited for a lane.
            // A failed attempt, not a job given back: given back, uncounted and due at
            // once, it would be pulled as slowly again, never run, never dead-lettered.
            Some(Err(NotInTime))
        } else {
            let webhook = job.webhook().clone();
            let handling =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handler.handle(webhook)))
                    .unwrap_or_else(|_| Box::pin(std::future::ready(Err(PANICKED.to_owned()))));
            let mut handling = Caught::new(handling);
            // A handler that finishes on its first poll needs no timer and no cancel watch.
            match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut handling).poll(cx))).await {
                Poll::Ready(result) => Some(Ok(result)),
                Poll::Pending => tokio::select! {
                    // A handler that finished as the grace period ended keeps its outcome.
                    biased;
                    r = tokio::time::timeout_at(deadline, handling) => Some(r.map_err(|_| NotInTime)),
                    () = cancelled(&mut cancel) => None,
                },
            }
        };
        let result = match outcome {
            None => {
                // Shutdown: give the job back at once, unprocessed; the attempt does not count.
                // When the inbox refuses, the job comes back once its lease runs out.
                let given_back = match self.inbox.give_back(&job, self.clock.now()).await {
                    Ok(()) => true,
                    Err(e) => {
                        report_inbox_error(&e, "return");
                        false
                    }
                };
                return Ran::NotStarted { given_back };
            }
            Some(Ok(Some(Ok(())))) => Ok(()),
            Some(Ok(Some(Err(e)))) => Err(bounded(e)),
            Some(Ok(None)) => Err(PANICKED.to_owned()),
            Some(Err(NotInTime)) if deadline <= now => {
                let error = format!(
                    "not started: its lease ran out before a lane could start it ({limit:?}: the lease of {:?} less a margin; a slow pull?)",
                    self.lease
                );
                tracing::warn!(%error, "webhook not started in time");
                Err(error)
            }
            Some(Err(NotInTime)) => Err(format!(
                "handler did not finish within its time limit ({:?}: the lease of {:?} less a margin)",
                limit, self.lease
            )),
        };
        match result {
            Ok(()) => {
                let acked = self.ack(&job, deadline, &mut cancel).await;
                // Counted (and logged) once the inbox has taken the outcome, as retries
                // are: after a lost lease the job runs again, and would be counted twice.
                match acked {
                    Ok(Acked::Yes) => {
                        tracing::info!("webhook processed");
                        counters.processed(job.webhook());
                    }
                    // Logged where it was found; not counted (it may run again).
                    Ok(Acked::Unsure) => {}
                    Err(e) => report_inbox_error(&e, "ack"),
                }
            }
            // Counted once the inbox has taken the outcome: after a lost lease the job runs
            // again, and would be counted twice.
            Err(error) if job.attempt() >= self.max_attempts => {
                match self.inbox.dead_letter(&job, &error).await {
                    Ok(()) => {
                        tracing::warn!(error = %error, "webhook dead-lettered");
                        metrics::counter!("hookguard_dead_lettered_total", "endpoint" => job.webhook().endpoint_label())
                        .increment(1);
                    }
                    Err(e) => report_inbox_error(&e, "dead-letter"),
                }
            }
            Err(error) => {
                let delay = self.backoff.delay(job.attempt());
                let now = self.clock.now();
                // A clock near the end of the calendar: due at once rather than a panic.
                let at: OffsetDateTime =
                    time::Duration::try_from(delay).ok().and_then(|d| now.checked_add(d)).unwrap_or(now);
                tracing::info!(error = %error, delay_ms = delay.as_millis() as u64, "webhook will be retried");
                match self.inbox.retry(&job, at, &error).await {
                    Ok(()) => metrics::counter!("hookguard_retries_total", "endpoint" => job.webhook().endpoint_label())
                        .increment(1),
                    Err(e) => report_inbox_error(&e, "retry"),
                }
            }
        }
        Ran::Settled
    }

    /// Acknowledges `job`. A backend error (a disk or database failure that may pass) is
    /// tried again [`ACK_RETRIES`] times at most, after [`ACK_BACKOFF`], as long as the
    /// try starts before `deadline` (the handler's time limit: the lease less its margin,
    /// which is left for the ack itself) and the grace period is not over; otherwise the
    /// job would come back after its lease and its handler's work be done twice. A lost
    /// lease is final: another worker may hold the job. A lost lease found by a retry
    /// after a backend error is [`Acked::Unsure`].
    async fn ack(
        &self,
        job: &Job,
        deadline: tokio::time::Instant,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Acked, InboxError> {
        let mut retries = 0;
        loop {
            let acked = match self.inbox.ack_now(job) {
                Some(acked) => acked,
                None => self.inbox.ack(job).await,
            };
            let error = match acked {
                Err(error @ InboxError::Backend(_)) if retries < ACK_RETRIES => error,
                // The lease is gone after a try that failed in the backend, within the lease:
                // that try most likely took effect and only its answer was lost (a commit
                // whose reply was lost, Redis's durability wait falling short after the
                // script ran). Not "lost; will run again".
                Err(InboxError::LeaseLost) if retries > 0 => {
                    tracing::info!(
                        "ack: an earlier try failed in the backend and the lease is gone: that try most likely \
                         took effect (else the lease ran out, and the job runs again)"
                    );
                    return Ok(Acked::Unsure);
                }
                acked => return acked.map(|()| Acked::Yes),
            };
            retries += 1;
            let next = crate::inbox::instant_after(tokio::time::Instant::now(), ACK_BACKOFF.delay(retries));
            if next >= deadline {
                return Err(error);
            }
            tracing::warn!(error = %error, retry = retries, "ack failed; trying again");
            tokio::select! {
                biased;
                () = cancelled(cancel) => return Err(error),
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }
}

/// The handler did not finish (or could not start) before its time limit.
struct NotInTime;

/// What became of an acknowledgement.
enum Acked {
    /// The inbox took it.
    Yes,
    /// A try failed in the backend, and the next found the lease gone: most likely that
    /// try took effect and only its answer was lost; the backends cannot tell it from a
    /// lease that ran out, after which the job runs again. Not counted as processed.
    Unsure,
}

/// How many pulls past its last attempt a job may have that ended with no outcome
/// reaching the inbox before it is dead-lettered without running (see
/// [`Worker::max_attempts`]).
const UNFINISHED_PULLS: u32 = 2;

/// What the pool and its handle share: the lanes, how many jobs the lanes held when
/// pulling stopped ([`NOT_YET`] before), and how many were given back at shutdown.
struct Progress {
    lanes: Lanes,
    held: AtomicUsize,
    returned: AtomicUsize,
}

/// [`Progress::held`] before pulling stopped.
const NOT_YET: usize = usize::MAX;

impl Progress {
    /// What the pool held and gave back so far, for a pool stopped where it is.
    fn so_far(&self) -> ShutdownReport {
        let in_flight = match self.held.load(Ordering::Relaxed) {
            NOT_YET => self.lanes.close(),
            held => held,
        };
        ShutdownReport { in_flight, returned: self.returned.load(Ordering::Relaxed) }
    }

    /// The pool's own report, or, when its task ended in a panic (one no lane or inbox
    /// call caught) or was cancelled, what it held then: those jobs come back to the
    /// inbox when their leases run out.
    fn ended(&self, report: Result<ShutdownReport, tokio::task::JoinError>) -> ShutdownReport {
        report.unwrap_or_else(|e| {
            let report = self.so_far();
            // Not the panic's message: it may quote what a job held.
            tracing::error!(
                in_flight = report.in_flight,
                panicked = e.is_panic(),
                "the worker pool ended early; the jobs it held come back when their leases run out"
            );
            report
        })
    }
}

/// How long [`WorkerHandle::shutdown`] waits, after the grace period, for the inbox to take
/// the cancelled jobs back before it leaves them to their leases.
///
/// ```
/// # use std::time::Duration;
/// // A shutdown with a grace of 10 s ends within 15 s, whatever the inbox does.
/// assert_eq!(hookguard::worker::SETTLE, Duration::from_secs(5));
/// ```
pub const SETTLE: Duration = Duration::from_secs(5);

/// What [`Worker::process`] did with a job.
enum Ran {
    /// The handler ran; its outcome went to the inbox (or was reported when the inbox
    /// refused it).
    Settled,
    /// Not started; `given_back`: the inbox took it back, due at once.
    NotStarted { given_back: bool },
}

/// A lane's `hookguard_processed_total` key for the endpoint it last counted: made once
/// per endpoint instead of once per job (a key with a label allocates).
#[derive(Default)]
struct Counters {
    processed: Option<(Arc<str>, metrics::Key)>,
}

impl Counters {
    fn processed(&mut self, webhook: &Webhook) {
        static METADATA: metrics::Metadata<'static> =
            metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
        let endpoint = webhook.shared_endpoint();
        let key = match &self.processed {
            Some((at, key)) if Arc::ptr_eq(at, endpoint) || **at == **endpoint => key,
            _ => {
                let label = metrics::Label::new("endpoint", webhook.endpoint_label());
                let key = metrics::Key::from_parts("hookguard_processed_total", vec![label]);
                &self.processed.insert((Arc::clone(endpoint), key)).1
            }
        };
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
    }
}

/// A job pulled for a lane, and when (`None`: by the lane itself, as it starts it).
struct Queued {
    job: Job,
    pulled_at: Option<tokio::time::Instant>,
}

/// The pool's local queue between the pulling loop and its lanes.
struct Lanes {
    /// How many lanes there are.
    lanes: usize,
    state: Mutex<LaneState>,
    /// Signalled when jobs are queued, or when the pool closes.
    work: Notify,
    /// Signalled when a lane finishes a job (there is room to pull for).
    room_made: Notify,
}

struct LaneState {
    queue: VecDeque<Queued>,
    /// Lanes between jobs (waiting, or about to take the next one).
    idle: usize,
    closed: bool,
}

impl Lanes {
    fn new(lanes: usize) -> Self {
        Self {
            lanes,
            state: Mutex::new(LaneState { queue: VecDeque::new(), idle: lanes, closed: false }),
            work: Notify::new(),
            room_made: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        // A poisoned lock only means a lane panicked between two plain field updates.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many more jobs the lanes can start now.
    fn room(&self) -> usize {
        let state = self.lock();
        state.idle.saturating_sub(state.queue.len())
    }

    fn hand_out(&self, jobs: Vec<Job>, pulled_at: tokio::time::Instant) {
        let n = jobs.len();
        self.lock().queue.extend(jobs.into_iter().map(|job| Queued { job, pulled_at: Some(pulled_at) }));
        for _ in 0..n {
            self.work.notify_one();
        }
    }

    /// The next queued job, if there is one (no waiting).
    fn take(&self) -> Option<Queued> {
        let mut state = self.lock();
        let queued = state.queue.pop_front()?;
        // Saturating: a miscount must not take a lane down (nor wrap the pool's room).
        state.idle = state.idle.saturating_sub(1);
        Some(queued)
    }

    /// The next job for a lane; `None` once the pool is closed and the queue is empty.
    async fn next(&self) -> Option<Queued> {
        loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            // Registered before the queue is looked at: a job queued after the look wakes it.
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(queued) = state.queue.pop_front() {
                    state.idle = state.idle.saturating_sub(1);
                    return Some(queued);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    fn done(&self) {
        {
            let mut state = self.lock();
            state.idle = (state.idle + 1).min(self.lanes);
        }
        self.room_made.notify_one();
    }

    /// No more jobs will be queued; the lanes drain the queue and stop. Returns how many
    /// jobs were running or queued.
    fn close(&self) -> usize {
        let in_flight = {
            let mut state = self.lock();
            state.closed = true;
            self.lanes.saturating_sub(state.idle) + state.queue.len()
        };
        self.work.notify_waiters();
        in_flight
    }
}

/// What a handler's failure says when it panicked.
const PANICKED: &str = "the handler panicked";

/// How many bytes of a handler's error the [`Worker`] logs and hands to the inbox (with
/// the job's retry or dead letter): a handler that returns a whole downstream answer as its
/// error would otherwise write it into every log line and every row it retries.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::time::Duration;
/// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified, worker::{Worker, ERROR_LIMIT}};
/// let inbox = MemoryInbox::new();
/// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
/// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
/// let handler = |_hook: Webhook| async { Err::<(), _>("x".repeat(100_000)) };
/// let handle = Worker::new(inbox.clone(), handler).max_attempts(1).spawn();
/// assert_eq!(handle.drain(Duration::from_secs(5)).await.left, Some(0));
/// let error = inbox.dead_letters(1).await.unwrap().remove(0).error;
/// assert!(error.len() < ERROR_LIMIT + 40);
/// assert!(error.ends_with(&format!("… ({} bytes more)", 100_000 - ERROR_LIMIT)));
/// # }
/// ```
pub const ERROR_LIMIT: usize = 4096;

/// `error` cut to at most [`ERROR_LIMIT`] bytes (at a character's boundary), with the
/// number of bytes cut appended.
fn bounded(mut error: String) -> String {
    if error.len() <= ERROR_LIMIT {
        return error;
    }
    let mut end = ERROR_LIMIT;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    let more = error.len() - end;
    error.truncate(end);
    error.push_str(&format!("… ({more} bytes more)"));
    error
}

pin_project_lite::pin_project! {
    /// A future whose panic is caught: `None` instead of unwinding through the lane or loop
    /// that polls it.
    struct Caught<F> {
        // `None`: making the future panicked.
        #[pin]
        fut: Option<F>,
    }
}

impl<F> Caught<F> {
    fn new(fut: F) -> Self {
        Self { fut: Some(fut) }
    }

    /// The future `make` returns, with a panic in `make` itself caught too: an inbox (a
    /// third party's) may do its work before it returns a ready future, as
    /// [`MemoryInbox`](crate::inbox::MemoryInbox) does.
    fn of(make: impl FnOnce() -> F) -> Self {
        Self { fut: std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)).ok() }
    }
}

impl<F: Future> Future for Caught<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let Some(fut) = self.project().fut.as_pin_mut() else { return Poll::Ready(None) };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Some(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    }
}

/// Asks [`Worker::gauge`] for the inbox's depth, unless it was asked less than
/// [`DEPTH_EVERY`] ago; `last` is when it was last asked.
fn ask_depth(last: &mut Option<tokio::time::Instant>, now: tokio::time::Instant, due: &watch::Sender<()>) {
    if last.is_some_and(|at| now.saturating_duration_since(at) < DEPTH_EVERY) {
        return;
    }
    *last = Some(now);
    due.send_replace(());
}

/// How long before its lease ends a handler must be done: a tenth of the lease, at most
/// one second.
fn lease_margin(lease: Duration) -> Duration {
    (lease / 10).min(Duration::from_secs(1))
}

/// Resolves when the pool is told to stop (or the flag changes); never once the
/// [`WorkerHandle`] is gone: a dropped handle detaches the pool, which runs on.
async fn stop_changed(stop: &mut watch::Receiver<bool>) {
    if stop.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves when the grace period is over; never once the [`WorkerHandle`] is gone.
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn report_inbox_error(e: &InboxError, what: &str) {
    match e {
        InboxError::LeaseLost => tracing::warn!(op = what, "lease lost; the job will run again"),
        e => tracing::error!(op = what, error = %e, "inbox operation failed"),
    }
}

/// What a shutdown found.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::{convert::Infallible, time::Duration};
/// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified, worker::Worker};
/// let inbox = MemoryInbox::new();
/// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
/// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
/// let (tx, mut started) = tokio::sync::mpsc::unbounded_channel();
/// let stuck = move |_hook: Webhook| {
///     tx.send(()).unwrap();
///     std::future::pending::<Result<(), Infallible>>()
/// };
/// let handle = Worker::new(inbox.clone(), stuck).spawn();
/// started.recv().await.unwrap();
/// let report = handle.shutdown(Duration::from_secs(1)).await;
/// // The handler was cancelled after the grace period and its job given back.
/// assert_eq!((report.in_flight, report.returned), (1, 1));
/// assert_eq!(inbox.pull(1, Duration::from_secs(30)).await.unwrap()[0].attempt(), 1);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs the pool held when pulling stopped: handlers running, and jobs pulled for a
    /// lane that had not started them yet.
    pub in_flight: usize,
    /// Jobs given back to the inbox, due at once, with their attempt uncounted: handlers
    /// cancelled at the end of the grace period, and jobs not started by then. A job the
    /// inbox would not take back (it was down) is not counted: it comes back only once
    /// its lease runs out.
    pub returned: usize,
}

/// Controls a running [`Worker`] pool.
///
/// Dropping the handle detaches the pool: it runs on until its runtime shuts down, and
/// can no longer be stopped gracefully. Keep the handle and call
/// [`shutdown`](Self::shutdown) to stop without losing work.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # use std::{convert::Infallible, time::Duration};
/// # use hookguard::{inbox::{MemoryInbox, Webhook}, worker::Worker};
/// let handle = Worker::new(MemoryInbox::new(), |_hook: Webhook| async { Ok::<(), Infallible>(()) }).spawn();
/// let report = handle.shutdown(Duration::from_secs(10)).await;
/// assert_eq!(report.in_flight, 0);
/// # }
/// ```
#[must_use = "dropping the handle detaches the pool, which then cannot be shut down gracefully"]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    cancel: watch::Sender<bool>,
    task: tokio::task::JoinHandle<ShutdownReport>,
    /// The pool's inbox, for [`drain`](Self::drain).
    inbox: Arc<dyn Inbox>,
    /// What the pool did, for a shutdown that cannot wait for its report.
    progress: Arc<Progress>,
}

impl fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle").field("stopping", &*self.stop.borrow()).finish_non_exhaustive()
    }
}

/// What [`WorkerHandle::drain`] did.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::{convert::Infallible, time::Duration};
/// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified, worker::Worker};
/// let inbox = MemoryInbox::new();
/// for id in ["d-1", "d-2"] {
///     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
///     inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
/// }
/// let handle = Worker::new(inbox, |_hook: Webhook| async { Ok::<(), Infallible>(()) }).spawn();
/// let drained = handle.drain(Duration::from_secs(10)).await;
/// assert_eq!((drained.left, drained.report.in_flight), (Some(0), 0));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drained {
    /// The pool's shutdown, once the inbox was empty or the grace period ended.
    pub report: ShutdownReport,
    /// Jobs the inbox still held then, waiting or leased: with an in-memory inbox,
    /// accepted webhooks that are lost with the process. Dead letters are not counted
    /// (an in-memory inbox loses them too: read them with [`Inbox::dead_letters`]
    /// first). `None` when the inbox could not say.
    pub left: Option<usize>,
}

/// How often [`WorkerHandle::drain`] asks the inbox how many jobs it holds.
const DRAIN_POLL: Duration = Duration::from_millis(50);

impl WorkerHandle {
    /// Lets the pool empty its inbox, then stops it, within `grace`: waits until the
    /// inbox holds no job (retries that come due in time included) or `grace` ends, then
    /// [`shutdown`](Self::shutdown)s with what is left of it. An inbox that stops
    /// answering can add up to twice [`SETTLE`]: once for the cancelled jobs to go back (as
    /// in `shutdown`), once for the last count of what is left. For an in-memory inbox,
    /// whose jobs die with the process, call it once nothing pushes any more (the server
    /// stopped); [`Drained::left`] is then what is lost. A durable inbox keeps what is
    /// left for the next start: there, `shutdown` is enough. `grace` runs on Tokio's clock;
    /// a retry comes due by the inbox's [`Clock`] (the system clock unless one was set).
    /// It stops waiting early when the pool has ended on its own.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::{convert::Infallible, time::Duration};
    /// use hookguard::{inbox::{Inbox as _, MemoryInbox, Webhook}, verify::Verified, worker::Worker};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, http::HeaderMap::new(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// inbox.push(hook).await.unwrap();
    /// let handle = Worker::new(inbox.clone(), |_hook: Webhook| async { Ok::<(), Infallible>(()) }).spawn();
    /// let drained = handle.drain(Duration::from_secs(10)).await;
    /// assert_eq!(drained.left, Some(0));
    /// # }
    /// ```
    #[must_use = "`Drained::left` says how many accepted webhooks an in-memory inbox loses"]
    pub async fn drain(self, grace: Duration) -> Drained {
        let deadline = crate::inbox::instant_after(tokio::time::Instant::now(), grace);
        loop {
            if self.task.is_finished() {
                // The pool ended on its own (its runtime is shutting down): nothing will
                // empty the inbox.
                break;
            }
            match tokio::time::timeout_at(deadline, Caught::of(|| self.inbox.depth())).await {
                Ok(Some(Ok(0))) | Err(_) => break,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => {
                    tracing::error!(error = %e, "cannot read the inbox's depth; not waiting for it to empty");
                    break;
                }
                Ok(None) => {
                    tracing::error!("the inbox's depth panicked; not waiting for it to empty");
                    break;
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(DRAIN_POLL.min(deadline - now)).await;
        }
        let inbox = Arc::clone(&self.inbox);
        let report = self.shutdown(deadline.saturating_duration_since(tokio::time::Instant::now())).await;
        // An inbox that does not answer leaves the count unknown rather than the caller waiting.
        let left = tokio::time::timeout(SETTLE, Caught::of(|| inbox.depth()))
            .await
            .ok()
            .flatten()
            .and_then(Result::ok);
        Drained { report, left }
    }

    /// Stops pulling, waits up to `grace` for the jobs the pool holds, then cancels the
    /// rest and gives their jobs back to the inbox (nothing is dropped).
    ///
    /// The wait is bounded even when the inbox stops answering (a database gone away): at
    /// the end of `grace` a pull or depth query still waiting is given up, and the inbox
    /// has [`SETTLE`] more to take back the cancelled jobs; past that the pool is stopped
    /// where it is, and the jobs it held come back when their leases run out. A pull given
    /// up may have leased jobs on the backend already: they too come back when their
    /// leases run out, each with one attempt counted that did not run.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use std::{convert::Infallible, time::Duration};
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified, worker::Worker};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
    /// let (tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    /// let slow = move |_hook: Webhook| {
    ///     tx.send(()).unwrap();
    ///     async {
    ///         tokio::time::sleep(Duration::from_secs(2)).await;
    ///         Ok::<(), Infallible>(())
    ///     }
    /// };
    /// let handle = Worker::new(inbox.clone(), slow).spawn();
    /// started.recv().await.unwrap();
    /// // The running handler finishes within the grace period: nothing is given back.
    /// let report = handle.shutdown(Duration::from_secs(10)).await;
    /// assert_eq!((report.in_flight, report.returned), (1, 0));
    /// assert_eq!(inbox.depth().await.unwrap(), 0);
    /// # }
    /// ```
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        let _ = self.stop.send(true);
        let mut task = self.task;
        match tokio::time::timeout(grace, &mut task).await {
            Ok(report) => self.progress.ended(report),
            Err(_) => {
                // Grace is over: cancel in-flight handlers; they give their jobs back.
                let _ = self.cancel.send(true);
                match tokio::time::timeout(SETTLE, &mut task).await {
                    Ok(report) => self.progress.ended(report),
                    Err(_) => {
                        task.abort();
                        let report = self.progress.so_far();
                        tracing::error!(
                            in_flight = report.in_flight,
                            "the inbox did not take the worker's jobs back in time; they come back when their leases run out"
                        );
                        report
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// A handler's error is kept whole up to [`ERROR_LIMIT`] bytes; a longer one is cut at
    /// a character's boundary at or below the limit, and says how much was cut.
    #[test]
    fn a_long_error_is_cut_at_a_character() {
        use super::{ERROR_LIMIT, bounded};
        let whole = "e".repeat(ERROR_LIMIT);
        assert_eq!(bounded(whole.clone()), whole);
        // A 3-byte character across the limit: cut before it.
        let across = format!("{}€tail", "e".repeat(ERROR_LIMIT - 1));
        assert_eq!(bounded(across), format!("{}… (7 bytes more)", "e".repeat(ERROR_LIMIT - 1)));
        for len in [ERROR_LIMIT + 1, ERROR_LIMIT + 2, 3 * ERROR_LIMIT] {
            let text: String = "é€x".chars().cycle().take(len).collect();
            let cut = bounded(text.clone());
            let (kept, note) = cut.split_once('…').expect("a note");
            assert!(kept.len() <= ERROR_LIMIT && kept.len() > ERROR_LIMIT - 4, "{len}");
            assert!(text.starts_with(kept));
            assert_eq!(note, format!(" ({} bytes more)", text.len() - kept.len()));
        }
    }

    use std::sync::atomic::AtomicU32;

    use tokio::sync::{Semaphore, mpsc};

    use super::*;
    use std::convert::Infallible;

    use crate::{clock::ManualClock, inbox::MemoryInbox, verify::Verified};

    /// A handler that succeeds at once, and how many times it was called.
    fn counting() -> (Arc<AtomicUsize>, impl Fn(Webhook) -> std::future::Ready<Result<(), Infallible>> + Clone)
    {
        let ran = Arc::new(AtomicUsize::new(0));
        let calls = Arc::clone(&ran);
        let handler = move |_hook: Webhook| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(()))
        };
        (ran, handler)
    }

    fn hook(id: &str) -> Webhook {
        let v = Verified::new("t", Some(id.to_owned().into()), None, None, [0; 32], 0);
        Webhook::new("t", &v, http::HeaderMap::new(), "{}".into(), OffsetDateTime::UNIX_EPOCH)
    }

    async fn inbox_with(ids: &[&str]) -> MemoryInbox {
        let inbox = MemoryInbox::new();
        for id in ids {
            inbox.push(hook(id)).await.unwrap();
        }
        inbox
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_handlers_at_once_than_its_concurrency() {
        let ids: Vec<String> = (0..12).map(|n| n.to_string()).collect();
        let inbox = inbox_with(&ids.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let gate = Arc::new(Semaphore::new(0));
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let handler = {
            let (running, most, gate) = (Arc::clone(&running), Arc::clone(&most), Arc::clone(&gate));
            move |hook: Webhook| {
                let (running, most, gate, done) =
                    (running.clone(), most.clone(), gate.clone(), done_tx.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    gate.acquire().await.expect("open").forget();
                    running.fetch_sub(1, Ordering::SeqCst);
                    let _ = done.send(hook.key().to_owned());
                    Ok::<(), std::convert::Infallible>(())
                }
            }
        };
        let worker = Worker::new(inbox.clone(), handler).concurrency(3).spawn();
        // Let them through one at a time: each finished one makes room for the next.
        for _ in 0..12 {
            gate.add_permits(1);
            done.recv().await.expect("a job finished");
        }
        assert_eq!(most.load(Ordering::SeqCst), 3, "three lanes, all used, never more");
        assert_eq!(inbox.depth().await.unwrap(), 0);
        worker.shutdown(Duration::from_secs(1)).await;
    }

    /// `drain` lets the pool process everything the inbox holds, a retry included, before
    /// it stops the pool.
    #[tokio::test(start_paused = true)]
    async fn drain_empties_the_inbox_before_it_stops() {
        let inbox = inbox_with(&["a", "b", "c", "d"]).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let handler = {
            let calls = Arc::clone(&calls);
            move |_hook: Webhook| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if n == 0 { Err("the first attempt fails") } else { Ok(()) }
                }
            }
        };
        let worker = Worker::new(inbox.clone(), handler)
            .concurrency(1)
            .backoff(Backoff::new(Duration::ZERO, Duration::ZERO).without_jitter())
            .spawn();
        let drained = worker.drain(Duration::from_secs(30)).await;
        assert_eq!(drained.left, Some(0));
        assert_eq!(drained.report.in_flight, 0);
        assert_eq!(calls.load(Ordering::SeqCst), 5, "four jobs, one retried");
    }

    /// When the grace period ends first, the pool is shut down with what is left of it,
    /// and what the inbox still holds is reported.
    #[tokio::test(start_paused = true)]
    async fn drain_reports_what_is_left_when_the_grace_ends() {
        let inbox = inbox_with(&["a", "b", "c"]).await;
        let never = |_hook: Webhook| std::future::pending::<Result<(), Infallible>>();
        let worker = Worker::new(inbox.clone(), never).concurrency(1).spawn();
        let started = tokio::time::Instant::now();
        let drained = worker.drain(Duration::from_secs(5)).await;
        assert!(started.elapsed() <= Duration::from_secs(5) + DRAIN_POLL, "{:?}", started.elapsed());
        assert_eq!(drained.left, Some(3));
        assert_eq!((drained.report.in_flight, drained.report.returned), (1, 1));
    }

    /// A pool that ended on its own (its task aborted, as when its runtime shuts down)
    /// empties nothing: `drain` does not wait out its grace for it.
    #[tokio::test(start_paused = true)]
    async fn drain_does_not_wait_for_a_pool_that_ended() {
        let inbox = inbox_with(&["a", "b"]).await;
        let never = |_hook: Webhook| std::future::pending::<Result<(), Infallible>>();
        let worker = Worker::new(inbox.clone(), never).concurrency(1).spawn();
        worker.task.abort();
        while !worker.task.is_finished() {
            tokio::task::yield_now().await;
        }
        let started = tokio::time::Instant::now();
        let drained = worker.drain(Duration::from_secs(3600)).await;
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        assert!(drained.left.is_some_and(|n| n > 0), "{drained:?}");
    }

    /// A job whose ack the inbox refused (its lease was lost: it will run again) is not
    /// counted as processed; one acked is.
    #[test]
    fn only_acked_jobs_are_counted_as_processed() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let processed = |refuse_ack: bool| {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            metrics::with_local_recorder(&recorder, || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    let mut inbox = CountingWaits::new(inbox_with(&["a"]).await);
                    inbox.refuse_ack = refuse_ack;
                    let (handler, mut done) = sending_keys();
                    let worker = Worker::new(inbox.clone(), handler).concurrency(1).spawn();
                    done.recv().await.expect("the job ran");
                    worker.shutdown(Duration::from_secs(1)).await;
                });
            });
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .filter(|(key, ..)| key.key().name() == "hookguard_processed_total")
                .map(|(.., value)| match value {
                    DebugValue::Counter(n) => n,
                    _ => 0,
                })
                .sum::<u64>()
        };
        assert_eq!(processed(false), 1);
        assert_eq!(processed(true), 0);
    }

    /// A pull that has answered when the grace period ends is not dropped: its jobs go to
    /// the lanes, which give them back at once, their attempt uncounted (dropped, they
    /// would stay leased for the whole lease, an attempt spent).
    #[tokio::test]
    async fn a_pull_that_answered_as_the_grace_period_ended_is_given_back() {
        for round in 0..64 {
            let inner = inbox_with(&["a"]).await;
            let (stop_tx, stop_rx) = watch::channel(false);
            let (cancel_tx, cancel_rx) = watch::channel(false);
            let inbox = CountingWaits {
                ends_on_pull: Some(Arc::new((stop_tx, cancel_tx))),
                at_hand: false,
                ..CountingWaits::new(inner.clone())
            };
            let worker =
                Worker::new(inbox, |_hook: Webhook| async { Ok::<(), Infallible>(()) }).concurrency(1);
            let progress = Arc::new(Progress {
                lanes: Lanes::new(1),
                held: AtomicUsize::new(NOT_YET),
                returned: AtomicUsize::new(0),
            });
            let report = worker.run(stop_rx, cancel_rx, progress).await;
            assert_eq!(report.returned, 1, "round {round}: given back");
            let jobs = inner.pull(1, Duration::from_secs(30)).await.unwrap();
            assert_eq!(jobs.len(), 1, "round {round}: back in the inbox at once");
            assert_eq!(jobs[0].attempt(), 1, "round {round}: no attempt spent");
        }
    }

    /// A job the inbox would not take back at shutdown is not reported as returned: it
    /// comes back only when its lease runs out.
    #[tokio::test(start_paused = true)]
    async fn shutdown_counts_only_the_jobs_the_inbox_took_back() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let mut inbox = CountingWaits::new(MemoryInbox::new().clock(clock.clone()));
        inbox.push(hook("a")).await.unwrap();
        inbox.refuse_give_back = true;
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let blocked = move |_hook: Webhook| {
            let _ = started_tx.send(());
            std::future::pending::<Result<(), std::convert::Infallible>>()
        };
        let worker =
            Worker::new(inbox.clone(), blocked).concurrency(1).lease(Duration::from_secs(60)).spawn();
        started.recv().await.expect("the job started");
        let report = worker.shutdown(Duration::from_millis(100)).await;
        assert_eq!((report.in_flight, report.returned), (1, 0));
        assert!(inbox.inner.pull(1, Duration::from_secs(30)).await.unwrap().is_empty(), "still leased");
        clock.advance(Duration::from_secs(61));
        assert_eq!(
            inbox.inner.pull(1, Duration::from_secs(30)).await.unwrap().len(),
            1,
            "back after its lease"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_gives_back_the_running_job_and_leaves_the_rest_waiting() {
        let inbox = inbox_with(&["a", "b", "c"]).await;
        let calls = Arc::new(AtomicU32::new(0));
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let blocked = {
            let calls = Arc::clone(&calls);
            move |_hook: Webhook| {
                calls.fetch_add(1, Ordering::SeqCst);
                let _ = started_tx.send(());
                std::future::pending::<Result<(), std::convert::Infallible>>()
            }
        };
        let worker = Worker::new(inbox.clone(), blocked).concurrency(1).spawn();
        started.recv().await.expect("the first job started");
        let report = worker.shutdown(Duration::from_millis(100)).await;
        assert_eq!((report.in_flight, report.returned), (1, 1));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one lane: one job pulled, one started");
        assert_eq!(inbox.depth().await.unwrap(), 3, "nothing dropped");
        let jobs = inbox.pull(10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(jobs.len(), 3);
        assert!(jobs.iter().all(|job| job.attempt() == 1), "shutdown used up no attempt");
    }

    /// Handlers that take 80 % of the lease, one lane: no job may wait so long after its
    /// pull that its lease runs out and the inbox hands it out again.
    #[tokio::test(start_paused = true)]
    async fn each_job_is_handled_once_when_handlers_take_most_of_the_lease() {
        let clock = crate::clock::TokioClock::new();
        let inbox = MemoryInbox::new().clock(clock);
        for id in ["a", "b", "c"] {
            inbox.push(hook(id)).await.unwrap();
        }
        let calls: Arc<Mutex<std::collections::HashMap<String, u32>>> = Arc::default();
        let handler = {
            let calls = Arc::clone(&calls);
            move |hook: Webhook| {
                *calls.lock().unwrap().entry(hook.key().to_owned()).or_default() += 1;
                async move {
                    tokio::time::sleep(Duration::from_secs(8)).await;
                    Ok::<(), std::convert::Infallible>(())
                }
            }
        };
        let worker = Worker::new(inbox.clone(), handler)
            .concurrency(1)
            .lease(Duration::from_secs(10))
            .clock(clock)
            .spawn();
        tokio::time::sleep(Duration::from_secs(60)).await;
        worker.shutdown(Duration::from_secs(1)).await;
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert!(calls.values().all(|n| *n == 1), "{calls:?}");
        assert_eq!(inbox.depth().await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_that_panics_before_returning_its_future_fails_that_attempt_only() {
        let inbox = MemoryInbox::new().clock(crate::clock::TokioClock::new());
        for id in ["boom", "b", "c"] {
            inbox.push(hook(id)).await.unwrap();
        }
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let handler = move |hook: Webhook| {
            assert_ne!(hook.id(), Some("boom"), "a panic before the future");
            let done = done_tx.clone();
            async move {
                let _ = done.send(hook.key().to_owned());
                Ok::<(), std::convert::Infallible>(())
            }
        };
        let worker = Worker::new(inbox.clone(), handler).concurrency(1).max_attempts(2).spawn();
        // Paused time: a lane that died would make these time out, not hang.
        let mut processed = Vec::new();
        for _ in 0..2 {
            let key = tokio::time::timeout(Duration::from_secs(3600), done.recv())
                .await
                .expect("processed in time");
            processed.extend(key);
        }
        processed.sort();
        assert_eq!(processed, ["t:b", "t:c"], "the lane lived on");
        // The panic was a failed attempt: retried, then dead-lettered after the second.
        let buried = async {
            while inbox.dead_letters(1).await.unwrap().is_empty() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(3600), buried).await.expect("dead-lettered in time");
        let dead = inbox.dead_letters(1).await.unwrap().remove(0);
        assert_eq!((dead.webhook.key(), dead.attempts, dead.error.as_str()), ("t:boom", 2, PANICKED));
        worker.shutdown(Duration::from_secs(1)).await;
    }

    /// Many jobs, handlers that finish at once or yield, several concurrencies: every job
    /// is processed once, never more handlers at once than the concurrency, nothing left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_job_is_processed_whatever_the_concurrency() {
        for concurrency in [1_usize, 2, 3, 8] {
            let total = 2_000;
            let ids: Vec<String> = (0..total).map(|n| n.to_string()).collect();
            let inbox = MemoryInbox::new().capacity(total);
            let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let (done_tx, mut done) = mpsc::unbounded_channel();
            let handler = {
                let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                move |hook: Webhook| {
                    let (running, most, done) = (running.clone(), most.clone(), done_tx.clone());
                    let yields = hook.id().and_then(|id| id.parse::<u32>().ok()).unwrap_or(0) % 3;
                    async move {
                        most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        for _ in 0..yields {
                            tokio::task::yield_now().await;
                        }
                        running.fetch_sub(1, Ordering::SeqCst);
                        let _ = done.send(hook.key().to_owned());
                        Ok::<(), std::convert::Infallible>(())
                    }
                }
            };
            let worker =
                Worker::new(inbox.clone(), handler).concurrency(concurrency).gather(Duration::ZERO).spawn();
            for id in &ids {
                inbox.push(hook(id)).await.unwrap();
            }
            let mut seen = std::collections::HashSet::new();
            while seen.len() < total {
                let key = tokio::time::timeout(Duration::from_secs(60), done.recv())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("stuck at {} of {total} (concurrency {concurrency})", seen.len())
                    })
                    .expect("a job");
                assert!(seen.insert(key), "processed twice (concurrency {concurrency})");
            }
            assert!(most.load(Ordering::SeqCst) <= concurrency);
            let report = worker.shutdown(Duration::from_secs(1)).await;
            assert_eq!(report.returned, 0);
            assert_eq!(inbox.depth().await.unwrap(), 0);
        }
    }

    /// The handler's time limit counts from before the pull: a pull that returns 3 s after
    /// the inbox leased the job leaves the handler 7 s of a 10 s lease, not 10 s (past
    /// which another pool could take the job while it still runs).
    #[tokio::test(start_paused = true)]
    async fn the_handlers_time_limit_counts_from_before_the_pull() {
        let clock = crate::clock::TokioClock::new();
        let inner = MemoryInbox::new().clock(clock);
        inner.push(hook("slow")).await.unwrap();
        let inbox = CountingWaits { pull_delay: Duration::from_secs(3), ..CountingWaits::new(inner.clone()) };
        let finished = Arc::new(AtomicUsize::new(0));
        let handler = {
            let finished = Arc::clone(&finished);
            move |_hook: Webhook| {
                let finished = Arc::clone(&finished);
                async move {
                    tokio::time::sleep(Duration::from_secs(8)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), std::convert::Infallible>(())
                }
            }
        };
        let worker = Worker::new(inbox, handler)
            .concurrency(1)
            .lease(Duration::from_secs(10))
            .max_attempts(1)
            .clock(clock)
            .spawn();
        tokio::time::sleep(Duration::from_secs(30)).await;
        worker.shutdown(Duration::from_secs(1)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 0, "the handler was stopped when the lease ran out");
        let dead = inner.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert!(dead[0].error.contains("time limit"), "{}", dead[0].error);
    }

    /// A pull that takes the whole time limit (a slow backend) leaves the job not started,
    /// and that is a failed attempt: it was given back uncounted, pulled as slowly again,
    /// and so never ran and was never dead-lettered. Now it is retried, then dead-lettered
    /// with the reason.
    #[tokio::test(start_paused = true)]
    async fn a_job_a_slow_pull_never_lets_start_is_dead_lettered_in_the_end() {
        let clock = crate::clock::TokioClock::new();
        let inner = MemoryInbox::new().clock(clock);
        inner.push(hook("slow-pull")).await.unwrap();
        let inbox = CountingWaits { pull_delay: Duration::from_secs(9), ..CountingWaits::new(inner.clone()) };
        let (ran, handler) = counting();
        let worker = Worker::new(inbox, handler)
            .concurrency(1)
            .lease(Duration::from_secs(10))
            .max_attempts(3)
            .backoff(Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).without_jitter())
            .clock(clock)
            .spawn();
        tokio::time::sleep(Duration::from_secs(120)).await;
        let report = worker.shutdown(Duration::from_secs(1)).await;
        assert_eq!(ran.load(Ordering::SeqCst), 0, "never started");
        let dead = inner.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1, "dead-lettered after its attempts");
        assert_eq!(dead[0].attempts, 3);
        assert!(dead[0].error.contains("not started"), "{}", dead[0].error);
        assert_eq!(report.returned, 0, "nothing was given back at shutdown");
    }

    /// An inbox that stops answering (a database gone away) cannot hold shutdown: a pull
    /// still waiting at the end of the grace period is given up, and a give-back that does
    /// not answer is left after `SETTLE`.
    #[tokio::test(start_paused = true)]
    async fn shutdown_is_bounded_when_the_inbox_stops_answering() {
        // A pull that never returns.
        let inner = MemoryInbox::new();
        let inbox = CountingWaits { pull_delay: Duration::MAX, ..CountingWaits::new(inner.clone()) };
        let worker = Worker::new(inbox, |_hook: Webhook| async { Ok::<(), std::convert::Infallible>(()) })
            .concurrency(2)
            .spawn();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = tokio::time::Instant::now();
        let report = tokio::time::timeout(Duration::from_secs(3600), worker.shutdown(Duration::from_secs(1)))
            .await
            .expect("shutdown ends");
        assert!(started.elapsed() <= Duration::from_secs(1) + SETTLE, "{:?}", started.elapsed());
        assert_eq!(report.in_flight, 0);

        // A handler running at the end of the grace period, and a give-back that never
        // answers.
        let inner = MemoryInbox::new();
        inner.push(hook("held")).await.unwrap();
        let inbox = CountingWaits { give_back_delay: Duration::MAX, ..CountingWaits::new(inner.clone()) };
        let worker = Worker::new(inbox, |_hook: Webhook| {
            std::future::pending::<Result<(), std::convert::Infallible>>()
        })
        .concurrency(1)
        .spawn();
        // (Tokio's clock is paused: this runs the pool until it waits on the handler.)
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(inner.pull(1, Duration::from_secs(1)).await.unwrap().is_empty(), "the handler holds the job");
        let started = tokio::time::Instant::now();
        let report = tokio::time::timeout(Duration::from_secs(3600), worker.shutdown(Duration::from_secs(1)))
            .await
            .expect("shutdown ends");
        assert_eq!(started.elapsed(), Duration::from_secs(1) + SETTLE);
        assert_eq!((report.in_flight, report.returned), (1, 0), "held, not given back");
    }

    /// A panic in the inbox's own code (a third party's) fails that pull, not the pool,
    /// nor the lane that asked for a job at hand: the jobs are processed all the same.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_inbox_fails_a_pull_not_the_pool() {
        let inner = MemoryInbox::new();
        for id in ["p-1", "p-2", "p-3"] {
            inner.push(hook(id)).await.unwrap();
        }
        let inbox = CountingWaits::new(inner.clone());
        inbox.panics.store(3, Ordering::SeqCst);
        let (ran, handler) = counting();
        let worker = Worker::new(inbox, handler).concurrency(1).spawn();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(ran.load(Ordering::SeqCst), 3, "every job ran");
        assert_eq!(inner.depth().await.unwrap(), 0);
        assert_eq!(worker.shutdown(Duration::from_secs(1)).await.in_flight, 0);
    }

    /// An inbox whose `pull`, `wait` or `depth` panics before it returns a future (one that
    /// does its work up front) fails that call, not the pool: every job still runs.
    #[tokio::test(start_paused = true)]
    async fn an_inbox_that_panics_before_its_future_fails_a_call_not_the_pool() {
        let inner = MemoryInbox::new();
        for id in ["p-1", "p-2", "p-3"] {
            inner.push(hook(id)).await.unwrap();
        }
        let inbox = CountingWaits::new(inner.clone());
        inbox.eager_panics.store(4, Ordering::SeqCst);
        let eager = Arc::clone(&inbox.eager_panics);
        let (ran, handler) = counting();
        let worker = Worker::new(inbox, handler).concurrency(1).spawn();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(eager.load(Ordering::SeqCst), 0, "the inbox panicked four times");
        assert_eq!(ran.load(Ordering::SeqCst), 3, "every job ran");
        assert_eq!(inner.depth().await.unwrap(), 0);
        assert_eq!(worker.shutdown(Duration::from_secs(1)).await.in_flight, 0);
    }

    /// A pool whose task ended in a panic reports the jobs it held (they come back when
    /// their leases run out), not a clean `0`.
    #[tokio::test]
    async fn a_pool_that_ended_in_a_panic_reports_what_it_held() {
        let panicked = tokio::spawn(async { panic!("a bug") }).await.unwrap_err();
        let progress =
            Progress { lanes: Lanes::new(2), held: AtomicUsize::new(2), returned: AtomicUsize::new(1) };
        let report = progress.ended(Err(panicked));
        assert_eq!((report.in_flight, report.returned), (2, 1));
        let clean = ShutdownReport { in_flight: 0, returned: 0 };
        assert_eq!(progress.ended(Ok(clean)).in_flight, 0, "a clean end is the pool's own report");
    }

    /// A `wait` that panics every time is not taken for a wake-up: the pool sleeps
    /// `idle_poll` before it pulls again, instead of pulling every millisecond.
    #[tokio::test(start_paused = true)]
    async fn a_wait_that_panics_is_no_wake_up() {
        let inbox = CountingWaits { wait_panics: true, ..CountingWaits::new(MemoryInbox::new()) };
        let pulls = Arc::clone(&inbox.pulls);
        let worker = Worker::new(inbox, |_hook: Webhook| async { Ok::<(), Infallible>(()) })
            .idle_poll(Duration::from_secs(1))
            .spawn();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let pulled = pulls.load(Ordering::SeqCst);
        assert!((5..=30).contains(&pulled), "{pulled} pulls in 10 s");
        worker.shutdown(Duration::from_secs(1)).await;
    }

    /// `drain` reads the depth itself: a depth that panics ends its wait (the count is then
    /// unknown) instead of unwinding into the caller.
    #[tokio::test(start_paused = true)]
    async fn drain_survives_a_depth_that_panics() {
        let inner = MemoryInbox::new();
        inner.push(hook("d-1")).await.unwrap();
        let inbox = CountingWaits::new(inner.clone());
        let (eager, depths) = (Arc::clone(&inbox.eager_panics), Arc::clone(&inbox.depths));
        let worker = Worker::new(inbox, |_hook: Webhook| std::future::pending::<Result<(), Infallible>>())
            .concurrency(1)
            .spawn();
        tokio::time::sleep(Duration::from_millis(10)).await;
        // From here every depth (the gauge's, drain's) panics before its future.
        eager.store(usize::MAX, Ordering::SeqCst);
        let before = depths.load(Ordering::SeqCst);
        let drained = worker.drain(Duration::from_secs(1)).await;
        assert!(depths.load(Ordering::SeqCst) > before, "drain asked the inbox");
        assert_eq!(drained.left, None, "the count is unknown");
        assert_eq!(drained.report.in_flight, 1);
        assert_eq!(inner.depth().await.unwrap(), 1, "the running job went back");
    }

    /// `drain` is bounded too when the inbox's depth never comes: the count is then unknown.
    #[tokio::test(start_paused = true)]
    async fn drain_is_bounded_when_the_depth_never_comes() {
        let inbox = CountingWaits { depth_delay: Duration::MAX, ..CountingWaits::new(MemoryInbox::new()) };
        let worker =
            Worker::new(inbox, |_hook: Webhook| async { Ok::<(), std::convert::Infallible>(()) }).spawn();
        let started = tokio::time::Instant::now();
        let drained = tokio::time::timeout(Duration::from_secs(3600), worker.drain(Duration::from_secs(1)))
            .await
            .expect("drain ends");
        assert!(started.elapsed() <= Duration::from_secs(1) + SETTLE * 2, "{:?}", started.elapsed());
        assert_eq!(drained.left, None);
    }

    /// The handler's limit ends a margin before the lease, so that its outcome reaches the
    /// inbox (here 5 ms after the limit, a commit) while the lease still holds the job: a
    /// pull right after the lease ended finds nothing to take again.
    #[tokio::test(start_paused = true)]
    async fn a_handlers_outcome_reaches_the_inbox_before_its_lease_ends() {
        let clock = crate::clock::TokioClock::new();
        let inner = MemoryInbox::new().clock(clock);
        inner.push(hook("slow")).await.unwrap();
        let inbox =
            CountingWaits { settle_delay: Duration::from_millis(5), ..CountingWaits::new(inner.clone()) };
        let started = tokio::time::Instant::now();
        let lease = Duration::from_secs(10);
        let worker = Worker::new(inbox, |_hook: Webhook| std::future::pending::<Result<(), Infallible>>())
            .concurrency(1)
            .lease(lease)
            .max_attempts(1)
            .clock(clock)
            .spawn();
        tokio::time::sleep_until(started + lease + Duration::from_millis(2)).await;
        assert!(inner.pull(1, lease).await.unwrap().is_empty(), "the job was taken again");
        let dead = inner.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert!(dead[0].error.contains("time limit (9s"), "{}", dead[0].error);
        worker.shutdown(Duration::from_secs(1)).await;
    }

    /// A handle dropped detaches the pool: it runs on, and handlers that wait are not
    /// cancelled (the closed stop and cancel channels once read as "stop now").
    #[tokio::test]
    async fn a_dropped_handle_leaves_the_pool_running() {
        let inbox = inbox_with(&["a", "b"]).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let handler = {
            let calls = Arc::clone(&calls);
            move |hook: Webhook| {
                calls.fetch_add(1, Ordering::SeqCst);
                let done = done_tx.clone();
                async move {
                    tokio::task::yield_now().await; // pending once: the cancel watch is polled
                    let _ = done.send(hook.key().to_owned());
                    Ok::<(), Infallible>(())
                }
            }
        };
        drop(Worker::new(inbox.clone(), handler).spawn());
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(30), done.recv())
                .await
                .expect("the detached pool processes its jobs")
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "each job ran once");
        assert_eq!(inbox.depth().await.unwrap(), 0);
    }

    /// A back-off as long as `Duration::MAX` still records the retry (adding it to the
    /// clock once panicked, and the job came back when its lease ran out instead).
    #[tokio::test]
    async fn a_huge_back_off_still_records_the_retry() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let inbox = MemoryInbox::new().clock(clock.clone());
        inbox.push(hook("a")).await.unwrap();
        let (calls_tx, mut calls) = mpsc::unbounded_channel();
        let handler = move |_hook: Webhook| {
            let _ = calls_tx.send(());
            async { Err::<(), _>("boom") }
        };
        let worker = Worker::new(inbox.clone(), handler)
            .concurrency(1)
            .max_attempts(100)
            .backoff(Backoff::new(Duration::MAX, Duration::MAX).without_jitter())
            .clock(clock.clone())
            .spawn();
        calls.recv().await.unwrap();
        worker.shutdown(Duration::from_secs(10)).await; // the lane settles the job first
        clock.advance(Duration::from_secs(3600)); // long past the lease
        assert!(inbox.pull(1, Duration::from_secs(60)).await.unwrap().is_empty(), "not retried in 100 years");
        assert_eq!(inbox.depth().await.unwrap(), 1);
    }

    #[test]
    fn back_off_is_at_most_a_hundred_years() {
        let b = Backoff::new(Duration::from_secs(3600), Duration::MAX).without_jitter();
        assert_eq!(b.delay(u32::MAX), Backoff::LONGEST);
        assert_eq!(b.delay(2), Duration::from_secs(7200));
        // A tiny base still grows to its cap (it stopped at base × 2^30).
        let tiny = Backoff::new(Duration::from_micros(1), Duration::from_secs(3600)).without_jitter();
        assert_eq!(tiny.delay(40), Duration::from_secs(3600));
        assert_eq!(tiny.delay(11), Duration::from_micros(1024));
        assert_eq!(Backoff::new(Duration::ZERO, Duration::MAX).delay(u32::MAX), Duration::ZERO);
    }

    /// A job whose handler kills the process (an abort, running out of memory) never
    /// fails an attempt: only its leases run out, each pull counts one more attempt, and
    /// the job came back for ever (attempt 3, 4, 5 ... of 2), crashing the process each
    /// time. Pulled more than two attempts past its last, it is dead-lettered without
    /// running; one pulled two past its last (a lost pull, say) still runs.
    #[tokio::test(start_paused = true)]
    async fn a_job_pulled_past_its_last_attempt_is_dead_lettered_without_running() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let lease = Duration::from_secs(30);
        let inbox = MemoryInbox::new().clock(clock.clone());
        inbox.push(hook("crashes")).await.unwrap();
        // Three attempts that ended without an outcome (the process died while each ran);
        // "last" was pulled twice the same way.
        let first = inbox.pull(10, lease).await.unwrap();
        assert_eq!(first.len(), 1);
        clock.advance(lease + Duration::from_secs(1));
        inbox.push(hook("last")).await.unwrap();
        for attempts in [(2, 1), (3, 2)] {
            let mut pulled: Vec<_> = inbox
                .pull(10, lease)
                .await
                .unwrap()
                .iter()
                .map(|j| (j.webhook().key().to_owned(), j.attempt()))
                .collect();
            pulled.sort();
            assert_eq!(pulled, [("t:crashes".to_owned(), attempts.0), ("t:last".to_owned(), attempts.1)]);
            clock.advance(lease + Duration::from_secs(1));
        }
        let calls: Arc<Mutex<Vec<String>>> = Arc::default();
        let handler = {
            let calls = Arc::clone(&calls);
            move |hook: Webhook| {
                calls.lock().unwrap().push(hook.key().to_owned());
                std::future::ready(Ok::<(), Infallible>(()))
            }
        };
        let worker =
            Worker::new(inbox.clone(), handler).max_attempts(1).lease(lease).clock(clock.clone()).spawn();
        assert_eq!(worker.drain(Duration::from_secs(5)).await.left, Some(0));
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls, ["t:last"], "two past its last attempt it ran; the crashing job did not run again");
        let dead = inbox.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!((dead[0].webhook.id(), dead[0].attempts), (Some("crashes"), 4));
        assert!(dead[0].error.contains("ended without an outcome"), "{}", dead[0].error);
    }

    /// An ack the inbox fails with a backend error (a disk or database failure that
    /// passes) is tried again while the lease holds: it was only logged, and the job ran
    /// again after its lease, its handler's side effects with it.
    #[tokio::test(start_paused = true)]
    async fn an_ack_that_fails_in_the_backend_is_tried_again() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let lease = Duration::from_secs(30);
        let inbox = CountingWaits::new(MemoryInbox::new().clock(clock.clone()));
        inbox.push(hook("a")).await.unwrap();
        inbox.ack_failures.store(1, Ordering::SeqCst);
        let (ran, handler) = counting();
        let worker = Worker::new(inbox.clone(), handler).lease(lease).clock(clock.clone()).spawn();
        assert_eq!(worker.drain(Duration::from_secs(5)).await.left, Some(0), "acknowledged");
        assert_eq!(inbox.acks.load(Ordering::SeqCst), 2, "the failed ack and the one that took");
        clock.advance(lease * 2);
        assert!(inbox.pull(1, lease).await.unwrap().is_empty(), "not handed out again");
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(inbox.dead_letters(1).await.unwrap().is_empty());
    }

    /// A lost lease is final: its ack is not tried again (another worker may hold the job).
    /// An ack that keeps failing is tried a few times, never past the handler's time limit
    /// (the lease less its margin), so its outcome never comes after the lease.
    #[tokio::test(start_paused = true)]
    async fn ack_retries_are_bounded_by_the_lease_and_a_lost_lease_is_final() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let inbox = || async {
            let inbox = MemoryInbox::new().clock(clock.clone());
            inbox.push(hook("a")).await.unwrap();
            inbox
        };
        let lost = CountingWaits { refuse_ack: true, ..CountingWaits::new(inbox().await) };
        let (ran, handler) = counting();
        let worker = Worker::new(lost.clone(), handler).spawn();
        let _ = worker.drain(Duration::from_secs(5)).await;
        assert_eq!((ran.load(Ordering::SeqCst), lost.acks.load(Ordering::SeqCst)), (1, 1));

        // Failing for good, with a long lease: a few tries, then the job is left to its lease.
        let down = CountingWaits::new(inbox().await);
        down.ack_failures.store(usize::MAX, Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let worker = Worker::new(down.clone(), counting().1).spawn();
        assert_eq!(worker.drain(Duration::from_secs(10)).await.left, Some(1), "left leased");
        assert_eq!(down.acks.load(Ordering::SeqCst), 1 + ACK_RETRIES as usize);
        assert!(started.elapsed() <= Duration::from_secs(10) + SETTLE);

        // A 100 ms lease gives the handler 90 ms (less a 10 ms margin): room for the retry
        // 50 ms after the first ack, not for the next, 100 ms after that.
        let short = CountingWaits::new(inbox().await);
        short.ack_failures.store(usize::MAX, Ordering::SeqCst);
        let worker = Worker::new(short.clone(), counting().1).lease(Duration::from_millis(100)).spawn();
        tokio::time::sleep(Duration::from_millis(95)).await;
        assert_eq!(short.acks.load(Ordering::SeqCst), 2, "the first ack and one retry, inside the lease");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(short.acks.load(Ordering::SeqCst), 2, "none later");
        worker.shutdown(Duration::from_secs(1)).await;
    }

    /// An ack that took effect but whose answer was lost (a commit's reply lost, Redis's
    /// durability wait falling short) finds no lease when tried again: most likely the job
    /// was processed, and it is not reported as a lost lease after which it "will run
    /// again" (nor counted, the backends cannot tell the two apart).
    #[tokio::test(start_paused = true)]
    async fn an_ack_that_took_effect_before_it_failed_is_not_reported_lost() {
        let inbox = CountingWaits {
            ack_fails_after_it_took_effect: true,
            ..CountingWaits::new(inbox_with(&["a"]).await)
        };
        inbox.ack_failures.store(1, Ordering::SeqCst);
        let (ran, handler) = counting();
        let worker = Worker::new(inbox.clone(), handler).spawn();
        let (report, logs) = crate::inbox::logged(worker.drain(Duration::from_secs(5))).await;
        assert_eq!(report.left, Some(0));
        assert_eq!((ran.load(Ordering::SeqCst), inbox.acks.load(Ordering::SeqCst)), (1, 2));
        assert!(!logs.contains("lease lost; the job will run again"), "{logs}");
        assert!(logs.contains("that try most likely took effect"), "{logs}");
    }

    /// Once the grace period is over, an ack that failed is not waited on to try again:
    /// shutdown stays bounded by the grace.
    #[tokio::test(start_paused = true)]
    async fn ack_retries_end_with_the_grace_period() {
        let inbox = CountingWaits::new(inbox_with(&["a"]).await);
        inbox.ack_failures.store(usize::MAX, Ordering::SeqCst);
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let handler = move |_hook: Webhook| {
            let _ = started_tx.send(());
            async { Ok::<(), Infallible>(()) }
        };
        let worker = Worker::new(inbox.clone(), handler).spawn();
        started.recv().await.unwrap();
        tokio::task::yield_now().await; // the first ack failed; the lane waits to try again
        let begun = tokio::time::Instant::now();
        let report = worker.shutdown(Duration::from_millis(10)).await;
        assert!(begun.elapsed() <= Duration::from_millis(10), "{:?}", begun.elapsed());
        assert_eq!((report.in_flight, report.returned), (1, 0));
        assert_eq!(inbox.acks.load(Ordering::SeqCst), 1, "not tried again after the grace");
    }

    #[test]
    fn a_zero_idle_poll_is_taken_as_the_shortest_pause() {
        let noop = |_hook: Webhook| async { Ok::<(), Infallible>(()) };
        let worker = Worker::new(MemoryInbox::new(), noop).idle_poll(Duration::ZERO);
        assert_eq!(worker.idle_poll, MIN_IDLE_POLL);
        let worker = Worker::new(MemoryInbox::new(), noop).idle_poll(Duration::from_millis(5));
        assert_eq!(worker.idle_poll, Duration::from_millis(5));
    }

    #[test]
    #[should_panic(expected = "lease must not be zero")]
    fn a_zero_lease_is_refused() {
        let _ = Worker::new(MemoryInbox::new(), |_hook: Webhook| async { Ok::<(), Infallible>(()) })
            .lease(Duration::ZERO);
    }

    /// A pool's stop and cancel senders.
    type StopAndCancel = (watch::Sender<bool>, watch::Sender<bool>);

    /// A [`MemoryInbox`] that counts the pool's requests to be woken by a push; its batch
    /// pulls may return `pull_delay` after leasing (a backend that read its clock, then
    /// waited for a connection or a commit).
    #[derive(Debug, Clone)]
    struct CountingWaits {
        inner: MemoryInbox,
        pull_delay: Duration,
        /// How long `dead_letter` takes before it reaches the inner inbox (a commit).
        settle_delay: Duration,
        waits: Arc<AtomicUsize>,
        /// Calls to `pull` (the pool's loop; `pull_one_now` is the lanes').
        pulls: Arc<AtomicUsize>,
        /// Calls to `depth` (the gauge).
        depths: Arc<AtomicUsize>,
        /// `give_back` fails (the inbox is down).
        refuse_give_back: bool,
        /// How long `give_back` takes before it reaches the inner inbox.
        give_back_delay: Duration,
        /// How long `depth` takes to answer.
        depth_delay: Duration,
        /// How many more calls to `pull` and `pull_one_now` panic (a third party's bug).
        panics: Arc<AtomicUsize>,
        /// `ack` fails (the lease was lost).
        refuse_ack: bool,
        /// The acks `ack_failures` fails take effect first (a commit whose reply was lost).
        ack_fails_after_it_took_effect: bool,
        /// How many more calls to `ack` fail with a backend error (a disk or database
        /// failure that passes).
        ack_failures: Arc<AtomicUsize>,
        /// Calls to `ack`.
        acks: Arc<AtomicUsize>,
        /// How many more calls to `pull`, `wait` and `depth` panic before they return a
        /// future (an inbox that does its work up front).
        eager_panics: Arc<AtomicUsize>,
        /// Every call to `wait` panics before it returns a future.
        wait_panics: bool,
        /// `pull_one_now` is offered (as by the memory inbox); without it, the lanes have
        /// only what the pool's loop pulls (as with the SQL inboxes).
        at_hand: bool,
        /// How many jobs more than asked `pull` returns (a third party's bug).
        greedy: usize,
        /// Set (`true`) as a batch pull returns its jobs: the pool's stop and cancel, as a
        /// shutdown whose grace period ends at that moment would.
        ends_on_pull: Option<Arc<StopAndCancel>>,
    }

    impl CountingWaits {
        fn new(inner: MemoryInbox) -> Self {
            Self {
                inner,
                pull_delay: Duration::ZERO,
                settle_delay: Duration::ZERO,
                waits: Arc::default(),
                pulls: Arc::default(),
                depths: Arc::default(),
                refuse_give_back: false,
                give_back_delay: Duration::ZERO,
                depth_delay: Duration::ZERO,
                panics: Arc::default(),
                refuse_ack: false,
                ack_fails_after_it_took_effect: false,
                ack_failures: Arc::default(),
                acks: Arc::default(),
                eager_panics: Arc::default(),
                wait_panics: false,
                at_hand: true,
                greedy: 0,
                ends_on_pull: None,
            }
        }
    }

    impl CountingWaits {
        /// Panics while [`eager_panics`](Self::eager_panics) counts down.
        fn maybe_panic_now(&self) {
            if self
                .eager_panics
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                panic!("a third party's inbox, before its future");
            }
        }
    }

    impl Inbox for CountingWaits {
        fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<crate::inbox::Pushed, InboxError>> {
            self.inner.push(webhook)
        }
        fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>> {
            self.pulls.fetch_add(1, Ordering::SeqCst);
            self.maybe_panic_now();
            if self.panics.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Box::pin(async { panic!("a third party's inbox") });
            }
            let max = max + self.greedy;
            if self.pull_delay.is_zero() {
                let pulled = self.inner.pull(max, lease);
                if let Some(ends) = &self.ends_on_pull {
                    let (stop, cancel) = &**ends;
                    stop.send_replace(true);
                    cancel.send_replace(true);
                }
                return pulled;
            }
            Box::pin(async move {
                let jobs = self.inner.pull(max, lease).await;
                tokio::time::sleep(self.pull_delay).await;
                jobs
            })
        }
        fn pull_one_now(&self, lease: Duration) -> Option<Result<Option<Job>, InboxError>> {
            if self.panics.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                panic!("a third party's inbox");
            }
            if !self.at_hand {
                return None;
            }
            self.inner.pull_one_now(lease)
        }
        fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>> {
            self.acks.fetch_add(1, Ordering::SeqCst);
            if self
                .ack_failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                if self.ack_fails_after_it_took_effect {
                    return Box::pin(async move {
                        self.inner.ack(job).await?;
                        Err(InboxError::Backend("the reply was lost".into()))
                    });
                }
                return Box::pin(std::future::ready(Err(InboxError::Backend("disk I/O error".into()))));
            }
            if self.refuse_ack {
                return Box::pin(std::future::ready(Err(InboxError::LeaseLost)));
            }
            self.inner.ack(job)
        }
        fn retry<'a>(
            &'a self,
            job: &'a Job,
            at: OffsetDateTime,
            error: &'a str,
        ) -> BoxFuture<'a, Result<(), InboxError>> {
            self.inner.retry(job, at, error)
        }
        fn give_back<'a>(
            &'a self,
            job: &'a Job,
            now: OffsetDateTime,
        ) -> BoxFuture<'a, Result<(), InboxError>> {
            if self.refuse_give_back {
                return Box::pin(std::future::ready(Err(InboxError::Backend("down".into()))));
            }
            Box::pin(async move {
                tokio::time::sleep(self.give_back_delay).await;
                self.inner.give_back(job, now).await
            })
        }
        fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>> {
            Box::pin(async move {
                tokio::time::sleep(self.settle_delay).await;
                self.inner.dead_letter(job, error).await
            })
        }
        fn dead_letters(
            &self,
            max: usize,
        ) -> BoxFuture<'_, Result<Vec<crate::inbox::DeadLetter>, InboxError>> {
            self.inner.dead_letters(max)
        }
        fn redrive<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
            self.inner.redrive(key)
        }
        fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>> {
            self.depths.fetch_add(1, Ordering::SeqCst);
            self.maybe_panic_now();
            Box::pin(async move {
                tokio::time::sleep(self.depth_delay).await;
                self.inner.depth().await
            })
        }
        fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
            self.waits.fetch_add(1, Ordering::SeqCst);
            self.maybe_panic_now();
            assert!(!self.wait_panics, "a third party's wait, before its future");
            self.inner.wait(timeout)
        }
    }

    /// A handler that sends the key of each webhook it is given, and the receiving end.
    fn sending_keys() -> (impl Handler, mpsc::UnboundedReceiver<String>) {
        let (done_tx, done) = mpsc::unbounded_channel();
        let handler = move |hook: Webhook| {
            let done = done_tx.clone();
            async move {
                let _ = done.send(hook.key().to_owned());
                Ok::<(), std::convert::Infallible>(())
            }
        };
        (handler, done)
    }

    async fn processed(done: &mut mpsc::UnboundedReceiver<String>, n: usize) {
        for _ in 0..n {
            done.recv().await.expect("a job");
        }
    }

    /// Under a steady stream, a pool that caught up sleeps one gather window and pulls
    /// again, without asking to be woken by the next push (that wake-up would only start
    /// the window); once a window brings nothing, it waits for a push again.
    #[tokio::test(start_paused = true)]
    async fn a_busy_pool_that_caught_up_pulls_again_after_one_window_without_a_wake_up() {
        let inbox = CountingWaits::new(MemoryInbox::new());
        let waits = Arc::clone(&inbox.waits);
        let (handler, mut done) = sending_keys();
        let window = Duration::from_millis(10);
        let worker = Worker::new(inbox.clone(), handler).gather(window).spawn();
        while waits.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await; // until the pool, finding nothing, waits for a push
        }
        for id in ["a", "b", "c"] {
            inbox.push(hook(id)).await.unwrap();
        }
        processed(&mut done, 3).await;
        assert_eq!(waits.load(Ordering::SeqCst), 1, "idle at first: woken by the first push");
        let started = tokio::time::Instant::now();
        // More arrives while the pool sleeps its window after catching up.
        for id in ["d", "e"] {
            inbox.push(hook(id)).await.unwrap();
        }
        processed(&mut done, 2).await;
        assert_eq!(waits.load(Ordering::SeqCst), 1, "busy: pulled after the window, no wake-up asked for");
        assert!(started.elapsed() <= window, "within one window");
        // Windows with nothing in them: the pool waits for a push again (a push made while
        // it slept may have left it one spurious wake-up), and then stays parked.
        tokio::time::sleep(window * 3).await;
        let idle = waits.load(Ordering::SeqCst);
        assert!(idle >= 2, "idle again");
        tokio::time::sleep(window * 20).await;
        assert_eq!(waits.load(Ordering::SeqCst), idle, "parked on the wait, not polling");
        inbox.push(hook("f")).await.unwrap();
        processed(&mut done, 1).await;
        worker.shutdown(Duration::from_secs(1)).await;
    }

    /// A lane that finished a job takes the next one the inbox has at hand, leased for it
    /// alone: a backlog costs the pool's loop no pull per job.
    #[tokio::test]
    async fn a_lane_takes_the_next_job_the_inbox_has_at_hand() {
        let inbox = CountingWaits::new(MemoryInbox::new());
        let pulls = Arc::clone(&inbox.pulls);
        for n in 0..50 {
            inbox.push(hook(&n.to_string())).await.unwrap();
        }
        let (handler, mut done) = sending_keys();
        let worker = Worker::new(inbox.clone(), handler).concurrency(1).spawn();
        let mut keys = Vec::new();
        for _ in 0..50 {
            keys.push(done.recv().await.expect("a job"));
        }
        let want: Vec<_> = (0..50).map(|n| format!("t:{n}")).collect();
        assert_eq!(keys, want, "each once, in order");
        assert!(pulls.load(Ordering::SeqCst) <= 2, "{} pulls for 50 jobs", pulls.load(Ordering::SeqCst));
        assert_eq!(inbox.depth().await.unwrap(), 0, "all acknowledged");
        worker.shutdown(Duration::from_secs(1)).await;
    }

    /// Once the pool is told to stop, a lane that finishes its job takes no more: what
    /// waits stays in the inbox, not leased.
    #[tokio::test]
    async fn a_stopping_pool_takes_no_job_at_hand() {
        let inbox = MemoryInbox::new();
        for n in 0..5 {
            inbox.push(hook(&n.to_string())).await.unwrap();
        }
        let release = Arc::new(Semaphore::new(0));
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let gate = Arc::clone(&release);
        let handler = move |hook: Webhook| {
            let (gate, started) = (Arc::clone(&gate), started_tx.clone());
            async move {
                let _ = started.send(hook.key().to_owned());
                let _permit = gate.acquire().await.expect("open");
                Ok::<(), std::convert::Infallible>(())
            }
        };
        let worker = Worker::new(inbox.clone(), handler).concurrency(1).spawn();
        assert_eq!(started.recv().await.as_deref(), Some("t:0"));
        let stopping = tokio::spawn(worker.shutdown(Duration::from_secs(30)));
        tokio::task::yield_now().await; // `shutdown` has told the pool to stop
        release.add_permits(1);
        let report = stopping.await.expect("shut down");
        assert_eq!((report.in_flight, report.returned), (1, 0), "the running job finished");
        assert!(started.try_recv().is_err(), "no other job started");
        let left = inbox.pull(10, Duration::from_secs(30)).await.unwrap();
        let attempts: Vec<_> = left.iter().map(Job::attempt).collect();
        assert_eq!(attempts, [1, 1, 1, 1], "the rest wait unleased, their attempts untouched");
    }

    /// A backlog that keeps every lane busy on jobs at hand (the loop pulls nothing) still
    /// refreshes the depth gauge once a second.
    #[tokio::test(start_paused = true)]
    async fn the_depth_gauge_is_refreshed_while_lanes_drain_a_backlog_at_hand() {
        let inbox = CountingWaits::new(MemoryInbox::new());
        let (pulls, depths) = (Arc::clone(&inbox.pulls), Arc::clone(&inbox.depths));
        for n in 0..4 {
            inbox.push(hook(&n.to_string())).await.unwrap();
        }
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let handler = move |hook: Webhook| {
            let done = done_tx.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = done.send(hook.key().to_owned());
                Ok::<(), std::convert::Infallible>(())
            }
        };
        let worker = Worker::new(inbox.clone(), handler).concurrency(1).spawn();
        processed(&mut done, 4).await;
        assert!(pulls.load(Ordering::SeqCst) <= 2, "the lane took the jobs at hand, not from pulls");
        let gauged = depths.load(Ordering::SeqCst);
        assert!(gauged >= 4, "8 s of busy lane, depth read {gauged} times");
        worker.shutdown(Duration::from_secs(1)).await;
    }

    /// An inbox whose pull returns more jobs than asked for (a third party's bug): the
    /// extras are given back, not queued behind the lanes, where they would wait for a
    /// lane past their time limit and fail an attempt without running.
    #[tokio::test(start_paused = true)]
    async fn jobs_a_pull_returns_beyond_what_was_asked_are_given_back() {
        let inner = MemoryInbox::new();
        for n in 0..10 {
            inner.push(hook(&n.to_string())).await.unwrap();
        }
        let inbox = CountingWaits { greedy: 1, at_hand: false, ..CountingWaits::new(inner.clone()) };
        let runs = Arc::new(Mutex::new(std::collections::HashMap::<String, usize>::new()));
        let handler = {
            let runs = Arc::clone(&runs);
            move |hook: Webhook| {
                *runs.lock().unwrap().entry(hook.key().to_owned()).or_default() += 1;
                async {
                    // Most of the handler's time limit (900 ms): a job that waited for the
                    // lane as long could not finish in time.
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    Ok::<(), Infallible>(())
                }
            }
        };
        let worker =
            Worker::new(inbox, handler).concurrency(1).lease(Duration::from_secs(1)).max_attempts(1).spawn();
        let drained = worker.drain(Duration::from_secs(60)).await;
        assert_eq!(drained.left, Some(0));
        let dead: Vec<_> = inner.dead_letters(20).await.unwrap().into_iter().map(|d| d.error).collect();
        assert!(dead.is_empty(), "{dead:?}");
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len(), 10, "{runs:?}");
        assert!(runs.values().all(|&n| n == 1), "each job ran once: {runs:?}");
    }

    /// The depth gauge does not hold up the pool's loop: an inbox whose count takes 5 s
    /// (a `count(*)` over a big table) leaves the lanes fed all the while.
    #[tokio::test(start_paused = true)]
    async fn a_slow_depth_gauge_does_not_hold_up_pulling() {
        let inner = MemoryInbox::new();
        for n in 0..100 {
            inner.push(hook(&n.to_string())).await.unwrap();
        }
        let inbox = CountingWaits {
            depth_delay: Duration::from_secs(5),
            at_hand: false,
            ..CountingWaits::new(inner.clone())
        };
        let depths = Arc::clone(&inbox.depths);
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let handler = move |hook: Webhook| {
            let done = done_tx.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = done.send(hook.key().to_owned());
                Ok::<(), Infallible>(())
            }
        };
        let started = tokio::time::Instant::now();
        let worker = Worker::new(inbox, handler).concurrency(2).spawn();
        processed(&mut done, 100).await;
        // 100 jobs, two at a time, 100 ms each: 5 s of handling.
        let took = started.elapsed();
        assert!(took <= Duration::from_secs(6), "{took:?}");
        assert!(depths.load(Ordering::SeqCst) >= 1, "the gauge was refreshed");
        worker.shutdown(Duration::from_secs(1)).await;
        assert_eq!(inner.depth().await.unwrap(), 0);
    }
}
