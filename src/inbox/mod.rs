//! The inbox: where verified webhooks wait for their handler.
//!
//! The receiver answers `2xx` only once [`Inbox::push`] returned; workers
//! [`pull`](Inbox::pull) jobs under a lease, and [`ack`](Inbox::ack),
//! [`retry`](Inbox::retry) or [`dead_letter`](Inbox::dead_letter) them. A job whose lease
//! runs out (its worker crashed) comes back. Dead letters can be listed, re-driven and
//! discarded.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
//!
//! let inbox = MemoryInbox::new();
//! let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
//! let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
//! assert_eq!(inbox.push(hook.clone()).await.unwrap(), Pushed::Accepted);
//! assert_eq!(inbox.push(hook).await.unwrap(), Pushed::Duplicate);
//! let jobs = inbox.pull(10, Duration::from_secs(30)).await.unwrap();
//! assert_eq!(jobs.len(), 1);
//! inbox.ack(&jobs[0]).await.unwrap();
//! assert_eq!(inbox.depth().await.unwrap(), 0);
//! # }
//! ```

mod memory;
// Compiled for fuzzing as well: `__fuzz` reaches its escaping without the `postgres`
// feature's dependencies.
#[cfg(any(feature = "postgres", fuzzing))]
pub(crate) mod pg_text;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod wake;
mod webhook;

use std::{fmt, time::Duration};

use time::OffsetDateTime;

#[cfg(feature = "postgres")]
pub use self::postgres::PostgresInbox;
#[cfg(feature = "redis")]
pub use self::redis::{RedisDurability, RedisInbox};
pub use memory::MemoryInbox;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteInbox, SqliteInboxBuilder, SqliteStats};
pub(crate) use webhook::MAX_HEADERS;
#[cfg(fuzzing)]
pub(crate) use webhook::RecordTimes;
#[cfg(fuzzing)]
pub(crate) use webhook::endpoint_of_key;
#[cfg(feature = "actix")]
pub(crate) use webhook::headers_in_one_buffer;
pub(crate) use webhook::{Labels, key_prefix};

/// Counts a job an inbox set aside as a dead letter because it could not read it back
/// (`hookguard_dead_lettered_total`, as the worker counts those whose attempts ran out):
/// the log line alone was easy to miss, and `dead_letters` leaves such a job out. Labelled
/// with the endpoint its key begins with, or `unknown`.
#[cfg(any(feature = "sqlite", feature = "redis", feature = "postgres"))]
pub(crate) fn count_set_aside(key: Option<&str>) {
    let endpoint = key.and_then(webhook::endpoint_of_key).unwrap_or_else(|| "unknown".to_owned());
    metrics::counter!("hookguard_dead_lettered_total", "endpoint" => endpoint).increment(1);
}
pub use webhook::{RecordError, Webhook, WebhookRecord};

pub use crate::replay::BoxFuture;

/// What [`Inbox::push`] did.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
/// let inbox = MemoryInbox::new();
/// let v = Verified::new("stripe", Some("evt_1".into()), None, None, [0; 32], 0);
/// let hook = Webhook::new("stripe", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
/// assert_eq!(inbox.push(hook.clone()).await.unwrap(), Pushed::Accepted);
/// // The same delivery again (the sender retried): acknowledge it, it is kept once.
/// assert_eq!(inbox.push(hook).await.unwrap(), Pushed::Duplicate);
/// assert_eq!(inbox.depth().await.unwrap(), 1);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Kept (durably, for durable backends): safe to acknowledge.
    Accepted,
    /// A delivery with this key is already kept (or was processed): acknowledge, do not
    /// process again.
    Duplicate,
}

/// A job leased to a worker: what [`Inbox::pull`] hands out, and what a worker gives
/// back to [`ack`](Inbox::ack), [`retry`](Inbox::retry) or
/// [`dead_letter`](Inbox::dead_letter).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use hookguard::{clock::ManualClock, inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let inbox = MemoryInbox::new().clock(clock.clone());
/// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
/// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), clock.now_for_tests())).await.unwrap();
///
/// let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
/// assert_eq!((job.attempt(), job.webhook().id()), (1, Some("d-1")));
/// // Not acknowledged: once the lease runs out the job comes back, one attempt later.
/// clock.advance(Duration::from_secs(31));
/// let again = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
/// assert_eq!(again.attempt(), 2);
/// inbox.ack(&again).await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Job {
    webhook: Webhook,
    attempt: u32,
    receipt: Receipt,
}

/// A lease's receipt: text from a backend, or a number an in-process backend handed out
/// (written out as decimal digits in place, so a lease costs no allocation).
#[derive(Debug, Clone)]
enum Receipt {
    Text(String),
    Ticket { ticket: u64, digits: [u8; 20], len: u8 },
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        self.attempt == other.attempt && self.receipt() == other.receipt() && self.webhook == other.webhook
    }
}

impl Eq for Job {}

impl Job {
    /// Assembles a job (for inbox backends).
    ///
    /// ```
    /// # use hookguard::{inbox::{Job, Webhook}, verify::Verified};
    /// let v = Verified::new("x", None, None, None, [0; 32], 0);
    /// let job = Job::new(Webhook::new("x", &v, Default::default(), "".into(), time::OffsetDateTime::UNIX_EPOCH), 1, "r1");
    /// assert_eq!(job.attempt(), 1);
    /// assert_eq!(job.receipt(), "r1");
    /// ```
    #[must_use]
    pub fn new(webhook: Webhook, attempt: u32, receipt: impl Into<String>) -> Self {
        Self { webhook, attempt, receipt: Receipt::Text(receipt.into()) }
    }

    /// A job whose receipt is the number `ticket`.
    pub(crate) fn leased(webhook: Webhook, attempt: u32, ticket: u64) -> Self {
        let mut digits = [0; 20];
        let mut len = 0;
        let mut rest = ticket;
        loop {
            // u64::MAX has 20 digits: `len` stays below 20.
            digits[len] = b'0' + (rest % 10) as u8;
            len += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        digits[..len].reverse();
        Self { webhook, attempt, receipt: Receipt::Ticket { ticket, digits, len: len as u8 } }
    }

    /// The receipt as a number, when it is one.
    pub(crate) fn ticket(&self) -> Option<u64> {
        match &self.receipt {
            Receipt::Ticket { ticket, .. } => Some(*ticket),
            Receipt::Text(text) => text.parse().ok(),
        }
    }

    /// The webhook.
    ///
    /// ```
    /// # use hookguard::{inbox::{Job, Webhook}, verify::Verified};
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// let job = Job::new(hook, 1, "r1");
    /// assert_eq!(job.webhook().provider(), "github");
    /// ```
    #[must_use]
    pub fn webhook(&self) -> &Webhook {
        &self.webhook
    }
    /// Which attempt this is (1 for the first).
    ///
    /// ```
    /// # use hookguard::{inbox::{Job, Webhook}, verify::Verified};
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// assert_eq!(Job::new(hook, 3, "r1").attempt(), 3);
    /// ```
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// The backend's proof of this lease: the inbox answers [`InboxError::LeaseLost`] to a
    /// receipt whose lease ran out and was taken again.
    ///
    /// ```
    /// # use hookguard::{inbox::{Job, Webhook}, verify::Verified};
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// assert_eq!(Job::new(hook, 1, "1-0").receipt(), "1-0");
    /// ```
    #[must_use]
    pub fn receipt(&self) -> &str {
        match &self.receipt {
            Receipt::Text(text) => text,
            Receipt::Ticket { digits, len, .. } => {
                std::str::from_utf8(&digits[..usize::from(*len)]).unwrap_or_default()
            }
        }
    }
    /// Takes the webhook out.
    ///
    /// ```
    /// # use hookguard::{inbox::{Job, Webhook}, verify::Verified};
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// let job = Job::new(hook.clone(), 1, "r1");
    /// assert_eq!(job.into_webhook(), hook);
    /// ```
    #[must_use]
    pub fn into_webhook(self) -> Webhook {
        self.webhook
    }
}

/// A webhook that failed every attempt.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
/// let inbox = MemoryInbox::new();
/// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
/// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
/// let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
/// inbox.dead_letter(&job, "schema mismatch").await.unwrap();
///
/// let dead = inbox.dead_letters(10).await.unwrap().remove(0);
/// assert_eq!((dead.attempts, dead.error.as_str()), (1, "schema mismatch"));
/// // Fixed the handler? Put it back in the queue.
/// assert!(inbox.redrive(dead.webhook.key()).await.unwrap());
/// assert_eq!(inbox.depth().await.unwrap(), 1);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The webhook.
    pub webhook: Webhook,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, as the handler reported it.
    pub error: String,
    /// When it was given up on.
    pub failed_at: OffsetDateTime,
}

/// Why the inbox could not do what was asked.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{inbox::{Inbox, InboxError, MemoryInbox, Webhook}, verify::Verified};
/// let inbox = MemoryInbox::new().capacity(1);
/// let hook = |id: &str| {
///     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
///     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)
/// };
/// inbox.push(hook("d-1")).await.unwrap();
/// let full = inbox.push(hook("d-2")).await.unwrap_err();
/// assert!(matches!(full, InboxError::Full));
/// assert_eq!(full.to_string(), "inbox is full");
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum InboxError {
    /// At capacity: the receiver answers `503` with `Retry-After`.
    Full,
    /// The job's lease ran out and the job went back to the queue (another worker may
    /// have it now): its result is dropped, and it will be processed again.
    LeaseLost,
    /// The backend is unreachable or failed.
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for InboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("inbox is full"),
            Self::LeaseLost => f.write_str("job lease was lost"),
            Self::Backend(e) => write!(f, "inbox backend failed: {e}"),
        }
    }
}

impl std::error::Error for InboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// A queue of verified webhooks with leases, retries and dead letters.
///
/// Backends: [`MemoryInbox`] (bounded, lost on crash); durable ones behind features.
/// Every backend passes the same conformance suite.
///
/// The life of a job (workers do this for you; see [`Worker`](crate::worker::Worker)):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use hookguard::{clock::ManualClock, inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let inbox = MemoryInbox::new().clock(clock.clone());
/// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
/// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), clock.now_for_tests())).await.unwrap();
///
/// let job = inbox.pull(10, Duration::from_secs(30)).await.unwrap().remove(0);
/// let in_a_minute = clock.now_for_tests() + Duration::from_secs(60);
/// inbox.retry(&job, in_a_minute, "upstream timed out").await.unwrap();
/// assert!(inbox.pull(10, Duration::from_secs(30)).await.unwrap().is_empty(), "not due yet");
///
/// clock.advance(Duration::from_secs(60));
/// let job = inbox.pull(10, Duration::from_secs(30)).await.unwrap().remove(0);
/// assert_eq!(job.attempt(), 2);
/// inbox.ack(&job).await.unwrap();
/// assert_eq!(inbox.depth().await.unwrap(), 0);
/// # }
/// ```
pub trait Inbox: fmt::Debug + Send + Sync + 'static {
    /// Keeps `webhook` unless one with its key is kept already.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// assert_eq!(inbox.push(hook.clone()).await.unwrap(), Pushed::Accepted);
    /// assert_eq!(inbox.push(hook).await.unwrap(), Pushed::Duplicate);
    /// assert_eq!(inbox.depth().await.unwrap(), 1);
    /// # }
    /// ```
    fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<Pushed, InboxError>>;

    /// Leases up to `max` jobs that are due, each for `lease`.
    ///
    /// Each pull counts an attempt ([`Job::attempt`] is one more than the job's last
    /// pull's), whatever became of that pull; [`give_back`](Self::give_back) takes it
    /// back, and [`redrive`](Self::redrive) starts again from none. The
    /// [`Worker`](crate::worker::Worker) reads it: a job pulled more than two attempts
    /// past `max_attempts` is taken to kill whatever runs it, and dead-lettered unrun.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let inbox = MemoryInbox::new().clock(clock.clone());
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), clock.now_for_tests())).await.unwrap();
    /// let jobs = inbox.pull(10, Duration::from_secs(30)).await.unwrap();
    /// assert_eq!((jobs.len(), jobs[0].attempt()), (1, 1));
    /// assert!(inbox.pull(10, Duration::from_secs(30)).await.unwrap().is_empty(), "leased");
    /// clock.advance(Duration::from_secs(31)); // the lease ran out: due again
    /// assert_eq!(inbox.pull(10, Duration::from_secs(30)).await.unwrap()[0].attempt(), 2);
    /// # }
    /// ```
    fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>>;

    /// Done: the job is removed (its key stays known, so a late resend is a duplicate).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// inbox.push(hook.clone()).await.unwrap();
    /// let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    /// inbox.ack(&job).await.unwrap();
    /// assert_eq!(inbox.depth().await.unwrap(), 0);
    /// assert_eq!(inbox.push(hook).await.unwrap(), Pushed::Duplicate);
    /// # }
    /// ```
    fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>>;

    /// Failed, try again not before `not_before`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let inbox = MemoryInbox::new().clock(clock.clone());
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), clock.now_for_tests())).await.unwrap();
    /// let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    /// inbox.retry(&job, clock.now_for_tests() + Duration::from_secs(60), "upstream timed out").await.unwrap();
    /// assert!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().is_empty(), "not due yet");
    /// clock.advance(Duration::from_secs(60));
    /// assert_eq!(inbox.pull(1, Duration::from_secs(30)).await.unwrap()[0].attempt(), 2);
    /// # }
    /// ```
    fn retry<'a>(
        &'a self,
        job: &'a Job,
        not_before: OffsetDateTime,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), InboxError>>;

    /// Failed for good: moved to the dead letters.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// inbox.push(hook).await.unwrap();
    /// let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    /// inbox.dead_letter(&job, "handler bug").await.unwrap();
    /// assert_eq!(inbox.depth().await.unwrap(), 0);
    /// assert_eq!(inbox.dead_letters(10).await.unwrap()[0].error, "handler bug");
    /// # }
    /// ```
    fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>>;

    /// Up to `limit` dead letters, oldest first. One whose stored record cannot be read
    /// (storage damaged by hand or by something else) is left out, with a warning in the
    /// log, so that it hides none of the others; it takes no place among the `limit` in
    /// this crate's inboxes (a third party's may count it), so a page comes back short only
    /// when no readable letter is left (or, on SQLite, after 10,000 unreadable ones).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// inbox.push(hook).await.unwrap();
    /// let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    /// inbox.dead_letter(&job, "handler bug").await.unwrap();
    /// let dead = inbox.dead_letters(10).await.unwrap();
    /// assert_eq!(dead.len(), 1);
    /// assert_eq!((dead[0].webhook.id(), dead[0].attempts), (Some("d-1"), 1));
    /// # }
    /// ```
    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, InboxError>>;

    /// Puts a dead letter back in the queue as a fresh job; `false` when no dead letter
    /// has this key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// inbox.push(hook.clone()).await.unwrap();
    /// let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    /// inbox.dead_letter(&job, "handler bug").await.unwrap();
    /// assert!(inbox.redrive(hook.key()).await.unwrap());
    /// assert!(!inbox.redrive(hook.key()).await.unwrap(), "no dead letter left");
    /// let again = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    /// assert_eq!(again.attempt(), 1); // a fresh job
    /// # }
    /// ```
    fn redrive<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>>;

    /// Removes the dead letter with this key for good, as if it had been processed: it
    /// no longer counts against the inbox's capacity, and its key is remembered as
    /// finished (a copy pushed within the retention is still a [`Pushed::Duplicate`], as
    /// after an [`ack`](Self::ack)). A dead letter whose stored record cannot be read (left
    /// out of [`dead_letters`](Self::dead_letters)) is discarded all the same. `false` when
    /// no dead letter has this key: a job waiting, leased or finished is left as it is.
    ///
    /// The default answers [`InboxError::Backend`] (the inbox cannot discard dead
    /// letters); every inbox of this crate discards them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new().capacity(1);
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// inbox.push(hook.clone()).await.unwrap();
    /// let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    /// inbox.dead_letter(&job, "handler bug").await.unwrap();
    /// assert!(inbox.discard(hook.key()).await.unwrap());
    /// assert!(!inbox.discard(hook.key()).await.unwrap(), "gone");
    /// assert!(inbox.dead_letters(10).await.unwrap().is_empty());
    /// assert_eq!(inbox.push(hook).await.unwrap(), Pushed::Duplicate, "remembered as finished");
    /// # }
    /// ```
    fn discard<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        Box::pin(std::future::ready(Err(InboxError::Backend(
            "this inbox cannot discard dead letters".into(),
        ))))
    }

    /// Jobs waiting or leased (not dead letters).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// assert_eq!(inbox.depth().await.unwrap(), 0);
    /// inbox.push(hook).await.unwrap();
    /// let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    /// assert_eq!(inbox.depth().await.unwrap(), 1, "leased counts");
    /// inbox.dead_letter(&job, "handler bug").await.unwrap();
    /// assert_eq!(inbox.depth().await.unwrap(), 0, "dead letters do not");
    /// # }
    /// ```
    fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>>;

    /// Hands a leased job back unprocessed, due at `now` (the worker does this with the
    /// jobs it cancels at shutdown): the attempt its pull counted does not count, so
    /// restarts alone never use up a job's attempts. The default is
    /// [`retry`](Self::retry) at `now`, which counts it; every inbox of this crate
    /// uncounts it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
    /// let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    /// assert_eq!(job.attempt(), 1);
    /// inbox.give_back(&job, time::OffsetDateTime::now_utc()).await.unwrap();
    /// let again = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    /// assert_eq!(again.attempt(), 1);
    /// # }
    /// ```
    fn give_back<'a>(&'a self, job: &'a Job, now: OffsetDateTime) -> BoxFuture<'a, Result<(), InboxError>> {
        self.retry(job, now, "given back unprocessed")
    }

    /// Waits until work may be available, or `timeout` passes (a hint: workers pull
    /// again either way). It may return early for nothing, and returns at once when work
    /// is already there; it never waits longer than `timeout`. The default waits the whole
    /// timeout; [`MemoryInbox`] and the durable backends return as soon as a push (on the
    /// Redis and PostgreSQL inboxes, from any replica) may have made work available.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// inbox.push(hook).await.unwrap();
    /// // Work is there: it returns at once, not after the hour.
    /// let waited = tokio::time::timeout(Duration::from_secs(5), inbox.wait(Duration::from_secs(3600))).await;
    /// assert!(waited.is_ok());
    /// # }
    /// ```
    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(timeout))
    }

    /// [`push`](Self::push) answered at once, for an inbox that needs no I/O (an
    /// in-process one), or `None` (the default) to say "call `push`". The guard tries
    /// this first, which spares such an inbox a boxed future per delivery; an inbox that
    /// answers it must answer exactly as `push` would (the webhook is a cheap handle: keep
    /// a clone of it).
    ///
    /// ```
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// let hook = Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH);
    /// assert_eq!(inbox.push_now(&hook).unwrap().unwrap(), Pushed::Accepted);
    /// assert_eq!(inbox.push_now(&hook).unwrap().unwrap(), Pushed::Duplicate);
    /// ```
    fn push_now(&self, _webhook: &Webhook) -> Option<Result<Pushed, InboxError>> {
        None
    }

    /// [`ack`](Self::ack) answered at once, or `None` (the default) to say "call `ack`";
    /// as [`push_now`](Self::push_now). Workers try this first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push(Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).await.unwrap();
    /// let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    /// assert!(inbox.ack_now(&job).unwrap().is_ok());
    /// assert_eq!(inbox.depth().await.unwrap(), 0);
    /// # }
    /// ```
    fn ack_now(&self, _job: &Job) -> Option<Result<(), InboxError>> {
        None
    }

    /// [`pull`](Self::pull) of one job answered at once (`Ok(None)`: nothing is due), or
    /// `None` (the default) to say "call `pull`"; as [`push_now`](Self::push_now). A worker
    /// lane that finished a job tries this before it waits for the pool to pull for it: a
    /// steady stream then costs the pool no hand-over per job. An inbox that answers it
    /// must answer exactly as `pull(1, lease)` would.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new();
    /// let v = Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
    /// inbox.push_now(&Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH));
    /// let job = inbox.pull_one_now(Duration::from_secs(30)).unwrap().unwrap().expect("due");
    /// assert_eq!(job.webhook().id(), Some("d-1"));
    /// assert!(inbox.pull_one_now(Duration::from_secs(30)).unwrap().unwrap().is_none(), "leased");
    /// ```
    fn pull_one_now(&self, _lease: Duration) -> Option<Result<Option<Job>, InboxError>> {
        None
    }
}

impl<T: Inbox + ?Sized> Inbox for std::sync::Arc<T> {
    fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<Pushed, InboxError>> {
        (**self).push(webhook)
    }
    fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>> {
        (**self).pull(max, lease)
    }
    fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>> {
        (**self).ack(job)
    }
    fn retry<'a>(
        &'a self,
        job: &'a Job,
        not_before: OffsetDateTime,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        (**self).retry(job, not_before, error)
    }
    fn give_back<'a>(&'a self, job: &'a Job, now: OffsetDateTime) -> BoxFuture<'a, Result<(), InboxError>> {
        (**self).give_back(job, now)
    }
    fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>> {
        (**self).dead_letter(job, error)
    }
    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, InboxError>> {
        (**self).dead_letters(limit)
    }
    fn redrive<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        (**self).redrive(key)
    }
    fn discard<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        (**self).discard(key)
    }
    fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>> {
        (**self).depth()
    }
    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        (**self).wait(timeout)
    }
    fn push_now(&self, webhook: &Webhook) -> Option<Result<Pushed, InboxError>> {
        (**self).push_now(webhook)
    }
    fn ack_now(&self, job: &Job) -> Option<Result<(), InboxError>> {
        (**self).ack_now(job)
    }
    fn pull_one_now(&self, lease: Duration) -> Option<Result<Option<Job>, InboxError>> {
        (**self).pull_one_now(lease)
    }
}

/// `from` + `by`; a sum too far for the clock is 30 years from `from` (tokio's own
/// "never"), not a panic.
pub(crate) fn instant_after(from: tokio::time::Instant, by: Duration) -> tokio::time::Instant {
    from.checked_add(by).unwrap_or_else(|| from + Duration::from_secs(30 * 365 * 86_400))
}

/// `at` + `by`, or the latest time [`OffsetDateTime`] holds (the year 9999) when the sum
/// is past it: a lease too long for the calendar is no limit, not a panic.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn time_after(at: OffsetDateTime, by: Duration) -> OffsetDateTime {
    time::Duration::try_from(by)
        .ok()
        .and_then(|by| at.checked_add(by))
        .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc())
}

/// How long an inbox's [`Inbox::wait`] may sleep for a push: `timeout`, cut to the time
/// left until `due` (when the first retry comes due or lease runs out, in nanoseconds
/// since the epoch by the inbox's clock, which reads `now`); `None` when that time has
/// come (return at once).
pub(crate) fn wait_limit(timeout: Duration, due: Option<i128>, now: i128) -> Option<Duration> {
    let Some(due) = due else { return Some(timeout) };
    let left = due.saturating_sub(now);
    if left <= 0 {
        return None;
    }
    Some(timeout.min(Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX))))
}

/// The URL of a test service from the environment variable `var`; `None`, and the test
/// says that it skipped, when the variable is unset.
#[cfg(all(test, any(feature = "postgres", feature = "redis")))]
pub(crate) fn service_url(var: &str) -> Option<String> {
    let url = std::env::var(var).ok();
    if url.is_none() {
        eprintln!("skipped: {var} is unset");
    }
    url
}

/// What `f` counted in `hookguard_dead_lettered_total` while it ran (on this thread),
/// by endpoint label.
#[cfg(all(test, any(feature = "sqlite", feature = "redis", feature = "postgres")))]
pub(crate) async fn dead_lettered<T>(f: impl Future<Output = T>) -> (T, Vec<(String, u64)>) {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let out = {
        let _on = metrics::set_default_local_recorder(&recorder);
        f.await
    };
    let counted = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "hookguard_dead_lettered_total")
        .filter_map(|(key, _, _, value)| {
            let endpoint = key.key().labels().find(|l| l.key() == "endpoint")?.value().to_owned();
            match value {
                DebugValue::Counter(n) => Some((endpoint, n)),
                _ => None,
            }
        })
        .collect();
    (out, counted)
}

/// The log lines written while `f` runs (on this thread, at `info` and above), for tests
/// of what is logged.
#[cfg(test)]
pub(crate) async fn logged<T>(f: impl Future<Output = T>) -> (T, String) {
    #[derive(Clone, Default)]
    struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).finish();
    let out = {
        let _on = tracing::subscriber::set_default(subscriber);
        f.await
    };
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    (out, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_limits() {
        let t = Duration::from_secs(60);
        assert_eq!(wait_limit(t, None, 5), Some(t), "nothing due: the timeout");
        assert_eq!(wait_limit(t, Some(5), 5), None, "due now");
        assert_eq!(wait_limit(t, Some(4), 5), None, "overdue");
        assert_eq!(wait_limit(t, Some(1_000_000_005), 5), Some(Duration::from_secs(1)));
        assert_eq!(wait_limit(t, Some(i128::MAX), 0), Some(t), "far off: the timeout");
    }

    fn hook() -> Webhook {
        let v = crate::verify::Verified::new("x", None, None, None, [0; 32], 0);
        Webhook::new("x", &v, Default::default(), "".into(), OffsetDateTime::UNIX_EPOCH)
    }

    /// An inbox made before `discard` existed: only the required methods.
    #[derive(Debug)]
    struct Older(MemoryInbox);

    impl Inbox for Older {
        fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<Pushed, InboxError>> {
            self.0.push(webhook)
        }
        fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>> {
            self.0.pull(max, lease)
        }
        fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>> {
            self.0.ack(job)
        }
        fn retry<'a>(
            &'a self,
            job: &'a Job,
            not_before: OffsetDateTime,
            error: &'a str,
        ) -> BoxFuture<'a, Result<(), InboxError>> {
            self.0.retry(job, not_before, error)
        }
        fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>> {
            self.0.dead_letter(job, error)
        }
        fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, InboxError>> {
            self.0.dead_letters(limit)
        }
        fn redrive<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
            self.0.redrive(key)
        }
        fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>> {
            self.0.depth()
        }
    }

    #[tokio::test]
    async fn an_inbox_that_cannot_discard_says_so_and_an_arc_forwards_discard() {
        let older = std::sync::Arc::new(Older(MemoryInbox::new()));
        older.push(hook()).await.unwrap();
        let job = older.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        older.dead_letter(&job, "no").await.unwrap();
        let refused = older.discard(job.webhook().key()).await;
        assert!(
            matches!(&refused, Err(InboxError::Backend(e)) if e.to_string().contains("cannot discard")),
            "{refused:?}"
        );
        assert_eq!(older.dead_letters(10).await.unwrap().len(), 1, "left as it was");

        let inbox: std::sync::Arc<dyn Inbox> = std::sync::Arc::new(older.0.clone());
        assert!(inbox.discard(job.webhook().key()).await.unwrap(), "through the Arc, MemoryInbox's own");
        assert!(inbox.dead_letters(10).await.unwrap().is_empty());
    }

    #[test]
    fn a_numbered_receipt_reads_as_its_digits() {
        for ticket in [0, 7, 10, 99, 12_345, u64::MAX] {
            let job = Job::leased(hook(), 1, ticket);
            assert_eq!(job.receipt(), ticket.to_string());
            assert_eq!(job.ticket(), Some(ticket));
            assert_eq!(job, Job::new(hook(), 1, ticket.to_string()), "equal to the same receipt as text");
        }
        assert_eq!(Job::new(hook(), 1, "r1").ticket(), None);
        assert_ne!(Job::leased(hook(), 1, 1), Job::leased(hook(), 1, 2));
    }
}
