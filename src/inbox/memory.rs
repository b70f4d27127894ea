//! The embedded inbox: bounded, in process, lost on crash.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashSet, VecDeque},
    hash::{BuildHasher, Hash, Hasher, RandomState},
    ops::Deref,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use siphasher::sip128::{Hasher128 as _, SipHasher13};
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::{BoxFuture, DeadLetter, Inbox, InboxError, Job, Pushed, Webhook};
use crate::clock::{Clock, SystemClock};

/// An in-process inbox: a bounded queue with leases, retries at a given time, dead letters
/// and re-drive, woken at once when work arrives.
///
/// **Guarantee:** none beyond the process. A crash or restart loses every webhook it
/// holds, including ones already acknowledged to the sender. Use a durable backend when
/// that matters.
///
/// Capacity (default 10,000) counts waiting, leased and dead jobs; past it, pushes fail
/// with [`InboxError::Full`]. A dead letter holds its room until it is re-driven and
/// processed, or [discarded](Inbox::discard): dead letters are never dropped by
/// themselves, so a handler bug that dead-letters many jobs fills the inbox until they are
/// dealt with. The keys of the last 100,000 finished (or discarded) jobs are remembered, so
/// a late resend of a processed delivery is a [`Pushed::Duplicate`].
///
/// Memory: a webhook the guard keeps is made of slices of the request's read buffer (no
/// copy on the way in). One that is processed soon stays so; one pushed behind a backlog
/// (1,024 waiting jobs, or 64 when its body is over 16 KiB), or put back to wait (a retry,
/// a job given back, a dead letter), is first copied into memory of its own, so a backlog
/// holds its webhooks' bytes and no read buffers. A small body shares the connection's
/// read buffer (8 KiB by default in hyper, shared by the requests read into it), so at
/// most a few MB of buffers are held by jobs that wait for the worker's next pull. The
/// webhooks of finished jobs are let go by the next pushes (at most 256 wait for them, and
/// 256 more for the workers' next pull), on the thread that pushes: with glibc's
/// allocator, memory freed on the thread that allocated it costs no lock. With large
/// bodies that is much: an inbox that goes quiet keeps its last 256 finished webhooks
/// until pushes come again, each with its body (or the read buffer it is a slice of), so
/// up to 256 × the body limit (256 MiB with the guard's default limit of 1 MiB, were
/// every body that large), and up to as much more on the workers' side until their next
/// pull (within the worker's idle poll, 1 s by default).
///
/// Keys are known by a 128-bit keyed hash of them (SipHash-1-3, its keys drawn at random
/// per inbox): 32 bytes per key between the index and the order in which finished keys
/// are forgotten, and no allocation, so remembering 100,000 finished keys takes about
/// 4 MB and forgetting one touches nothing else. Two different keys could share a hash:
/// the chance that a new key is taken for one of 100,000 known ones is about 3 × 10⁻³⁴
/// per push, against which memory errors in the machine are far likelier.
///
/// Pushes and pulls work on halves of their own: the pushing side holds the keys (to
/// refuse duplicates) and what was pushed since the last pull; the workers' side holds the
/// jobs, their leases and due times. A pull takes everything pushed since the last one in
/// one step, and a push never touches the workers' jobs, so the two sides' memory does not
/// move between the threads (CPU cores) that run them for every delivery.
///
/// [`push_now`](Inbox::push_now) and [`ack_now`](Inbox::ack_now) answer at once: the
/// guard and the worker use no boxed future per delivery with this inbox.
///
/// Leases and due times follow the inbox's [clock](Self::clock), the system's wall clock
/// by default: a step of that clock forward by more than a lease (a badly run NTP) ends
/// the leases of running jobs, and another lane may start one again; a step back holds
/// retries and a dead worker's jobs back by as much. Keep the clock slewed, not stepped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use hookguard::{clock::ManualClock, inbox::{Inbox, InboxError, MemoryInbox, Webhook}, verify::Verified};
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let inbox = MemoryInbox::new().capacity(1).clock(clock.clone());
/// let hook = |id: &str| {
///     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
///     Webhook::new("github", &v, Default::default(), "{}".into(), clock.now_for_tests())
/// };
/// inbox.push(hook("d-1")).await.unwrap();
/// assert!(matches!(inbox.push(hook("d-2")).await, Err(InboxError::Full)));
/// inbox.pull(1, Duration::from_secs(30)).await.unwrap();
/// clock.advance(Duration::from_secs(31));
/// assert_eq!(inbox.pull(1, Duration::from_secs(30)).await.unwrap()[0].attempt(), 2, "lease ran out");
/// # }
/// ```
///
/// Its `Debug` shows the configuration and how many jobs it holds, never the webhooks.
#[derive(Clone)]
pub struct MemoryInbox {
    shared: Arc<Shared>,
    capacity: usize,
    remember_done: usize,
    clock: Arc<dyn Clock>,
}

/// The pushing side, the workers' side and the wake-up, each on cache lines of its own.
/// No `Debug`: it holds the webhooks (see [`MemoryInbox`]'s).
#[derive(Default)]
struct Shared {
    /// Read-only: how keys become the index's fingerprints (computed outside the locks).
    fingerprints: Fingerprints,
    intake: Padded<Mutex<Intake>>,
    state: Padded<Mutex<State>>,
    notify: Padded<Notify>,
}

/// Aligned to two cache lines (what adjacent-line prefetch pulls together).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The pushing side: every key the inbox knows, as [`Fingerprint`]s, and what was pushed
/// since the last pull.
#[derive(Default)]
struct Intake {
    /// The keys of the jobs kept (waiting, leased, dead, or pushed and not pulled yet), of
    /// the finished ones not recorded yet, and of the last `remember_done` recorded.
    seen: HashSet<Fingerprint, AsIs>,
    /// Pushed since the workers' side last took them, in push order.
    fresh: Vec<Keyed>,
    /// Webhooks of finished jobs handed over by the workers' side, oldest first. Each push
    /// records two (their keys join the finished ones) and lets them go.
    finished: VecDeque<Keyed>,
    /// Finished keys recorded, oldest first.
    done: VecDeque<Fingerprint>,
    /// Jobs waiting on the workers' side when it last took the fresh ones.
    behind: usize,
}

/// The workers' side: the jobs, in slots, and the queues that order them. Only waiting
/// jobs are queued, each once; a lease stays in its heap after the job was settled and is
/// skipped (and now and then swept out) when it comes up.
#[derive(Default)]
struct State {
    /// Jobs by slot; a free slot is listed in `free`.
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Pushed jobs, in push order (each due when pushed, ordered against retries by when it
    /// was received).
    fresh: VecDeque<Queued>,
    /// Every other waiting job (retries, jobs given back, expired leases, re-drives): the
    /// earliest due first.
    later: BinaryHeap<Reverse<Queued>>,
    /// Leases by end: the earliest first. Settled ones are stale (their slot moved on).
    leases: BinaryHeap<Reverse<Queued>>,
    stale_leases: usize,
    /// Dead jobs' slots, oldest first.
    dead: VecDeque<u32>,
    /// Webhooks of jobs finished since the last hand-over to the pushing side.
    settled: Vec<Keyed>,
    tickets: u32,
    /// The fresh jobs being taken in (kept for its memory between pulls).
    taking: Vec<Keyed>,
}

/// A queued job or a lease: when it is due (or ends), in nanoseconds since the epoch, and
/// the ticket that names its slot and which state of it it belongs to.
#[derive(Debug)]
struct Queued {
    at: i128,
    ticket: u64,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.ticket) == (other.at, other.ticket)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.ticket).cmp(&(other.at, other.ticket))
    }
}

/// A ticket's slot: its low 32 bits (the high ones count tickets).
fn slot_of(ticket: u64) -> usize {
    (ticket & u64::from(u32::MAX)) as usize
}

#[derive(Default)]
struct Slot {
    /// The job's webhook; `None` in a free slot.
    webhook: Option<Webhook>,
    /// Its key's fingerprint, for the pushing side to record when the job finishes.
    fingerprint: Fingerprint,
    attempts: u32,
    status: Status,
}

#[derive(Debug, Default, PartialEq)]
enum Status {
    #[default]
    Free,
    /// Queued under `ticket`.
    Waiting {
        ticket: u64,
    },
    /// Leased under `ticket` (the job's receipt); its end is in the lease heap.
    Leased {
        ticket: u64,
    },
    Dead {
        error: String,
        at: OffsetDateTime,
    },
}

impl Default for MemoryInbox {
    fn default() -> Self {
        Self::new()
    }
}

/// The configuration, and how many jobs the inbox holds (`depth`: waiting and leased, as
/// [`Inbox::depth`] counts; `dead`: dead letters), each `None` when a lock was busy. Never
/// the webhooks: a `Debug` line may reach a log (through a `Worker`'s or a `Guard`'s, or
/// a span that records them), and their keys and ids do not belong there; nor would
/// thousands of them, formatted while every push waits for the lock.
///
/// ```
/// use hookguard::inbox::{Inbox, MemoryInbox, Webhook};
/// let inbox = MemoryInbox::new().capacity(100);
/// let v = hookguard::verify::Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
/// inbox.push_now(&Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)).unwrap().unwrap();
/// let shown = format!("{inbox:?}");
/// assert!(shown.contains("capacity: 100") && shown.contains("depth: Some(1)"), "{shown}");
/// assert!(!shown.contains("d-1"));
/// ```
impl std::fmt::Debug for MemoryInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts read under a `try_lock` (a busy lock is not waited for, a poisoned one is
        // read all the same), each lock released before anything is written.
        let (held, dead) = match self.shared.state.try_lock() {
            Ok(st) => (Some(st.held()), Some(st.dead.len())),
            Err(std::sync::TryLockError::Poisoned(st)) => {
                let st = st.into_inner();
                (Some(st.held()), Some(st.dead.len()))
            }
            Err(std::sync::TryLockError::WouldBlock) => (None, None),
        };
        let pushed = match self.shared.intake.try_lock() {
            Ok(intake) => Some(intake.fresh.len()),
            Err(std::sync::TryLockError::Poisoned(intake)) => Some(intake.into_inner().fresh.len()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let depth =
            held.zip(dead).zip(pushed).map(|((held, dead), pushed)| held.saturating_sub(dead) + pushed);
        f.debug_struct("MemoryInbox")
            .field("capacity", &self.capacity)
            .field("remember_done", &self.remember_done)
            .field("clock", &self.clock)
            .field("depth", &depth)
            .field("dead", &dead)
            .finish_non_exhaustive()
    }
}

/// Sweep stale leases out of their heap once they are this many and outnumber live ones.
const SWEEP_AT: usize = 64;

/// A webhook pushed while this many jobs wait is copied into memory of its own (it will
/// wait too): a webhook the guard keeps is made of slices of the request's read buffer,
/// which a job that waits should not pin. One processed soon is never copied. The worker
/// takes what gathered every millisecond or so, so at high rates a few hundred jobs wait
/// between two pulls without any backlog: copying them would cost more than it saves.
const COMPACT_BEHIND: usize = 1024;

/// A webhook whose body is over [`LARGE_BODY`] is copied behind this many waiting jobs
/// already: large bodies are what grow a connection's read buffer (up to about 400 KiB in
/// hyper), so they pin the most.
const COMPACT_LARGE_BEHIND: usize = 64;

/// See [`COMPACT_LARGE_BEHIND`].
const LARGE_BODY: usize = 16 * 1024;

/// Finished webhooks waiting for pushes to let them go, at most, on either side (beyond:
/// the workers' side records and drops the oldest itself).
const PARKED_MAX: usize = 256;

impl MemoryInbox {
    /// An inbox for 10,000 jobs on the system clock.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::inbox::{Inbox, MemoryInbox};
    /// let inbox = MemoryInbox::new();
    /// assert_eq!(inbox.depth().await.unwrap(), 0);
    /// # }
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            shared: Arc::default(),
            capacity: 10_000,
            remember_done: 100_000,
            clock: Arc::new(SystemClock),
        }
    }

    /// Sets the capacity (waiting + leased + dead jobs), at most 2³² − 1.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{inbox::{Inbox, InboxError, MemoryInbox, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new().capacity(2);
    /// let hook = |id: &str| {
    ///     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
    ///     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)
    /// };
    /// inbox.push(hook("d-1")).await.unwrap();
    /// inbox.push(hook("d-2")).await.unwrap();
    /// assert!(matches!(inbox.push(hook("d-3")).await, Err(InboxError::Full)));
    /// # }
    /// ```
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.min(u32::MAX as usize);
        self
    }

    /// Sets how many finished keys are remembered for duplicate detection (default
    /// 100,000); the oldest is forgotten first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{inbox::{Inbox, MemoryInbox, Pushed, Webhook}, verify::Verified};
    /// let inbox = MemoryInbox::new().remember_done(1);
    /// let hook = |id: &str| {
    ///     let v = Verified::new("github", Some(id.into()), None, None, [0; 32], 0);
    ///     Webhook::new("github", &v, Default::default(), "{}".into(), time::OffsetDateTime::UNIX_EPOCH)
    /// };
    /// for id in ["d-1", "d-2"] {
    ///     inbox.push(hook(id)).await.unwrap();
    ///     let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    ///     inbox.ack(&job).await.unwrap();
    /// }
    /// assert_eq!(inbox.push(hook("d-2")).await.unwrap(), Pushed::Duplicate);
    /// assert_eq!(inbox.push(hook("d-1")).await.unwrap(), Pushed::Accepted, "forgotten");
    /// # }
    /// ```
    #[must_use]
    pub fn remember_done(mut self, count: usize) -> Self {
        self.remember_done = count;
        self
    }

    /// Sets the clock for due times and leases.
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
    /// inbox.retry(&job, clock.now_for_tests() + Duration::from_secs(10), "later").await.unwrap();
    /// assert!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().is_empty());
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().len(), 1);
    /// # }
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn intake(&self) -> Result<MutexGuard<'_, Intake>, InboxError> {
        self.shared.intake.lock().map_err(|_| InboxError::Backend("inbox intake poisoned".into()))
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, InboxError> {
        self.shared.state.lock().map_err(|_| InboxError::Backend("inbox state poisoned".into()))
    }

    /// Accepts `webhook` unless its key is known or the inbox is full. The pushing side
    /// alone decides, except when it would refuse: then what the workers' side finished
    /// since its last pull is taken into account first (see [`Self::keep_settled`]).
    fn keep(&self, mut webhook: Webhook) -> Result<Pushed, InboxError> {
        let fingerprint = self.shared.fingerprints.of(webhook.key());
        let mut intake = self.intake()?;
        let behind = if webhook.body().len() > LARGE_BODY { COMPACT_LARGE_BEHIND } else { COMPACT_BEHIND };
        if intake.fresh.len() + intake.behind >= behind
            && let Some(copy) = webhook.compacted()
        {
            // It will wait: in memory of its own, copied outside the lock.
            drop(intake);
            webhook = copy;
            intake = self.intake()?;
        }
        // Recorded now, dropped once the lock is released: two per push, so that this
        // thread frees about as many chunks as it allocates and its allocator cache
        // neither runs dry nor overflows.
        let finished = [intake.finished.pop_front(), intake.finished.pop_front()];
        for done in finished.iter().flatten() {
            intake.record(done.fingerprint, self.remember_done);
        }
        let full = intake.open().saturating_sub(intake.finished.len()) >= self.capacity;
        if full || !intake.seen.insert(fingerprint) {
            drop(intake);
            drop(finished);
            return self.keep_settled(webhook, fingerprint);
        }
        intake.fresh.push(Keyed { fingerprint, webhook });
        drop(intake);
        self.shared.notify.notify_one();
        drop(finished);
        Ok(Pushed::Accepted)
    }

    /// [`Self::keep`] once every job finished so far is recorded: the answer is then the
    /// one the ack that came before this push calls for (a key forgotten, room made).
    fn keep_settled(&self, webhook: Webhook, fingerprint: Fingerprint) -> Result<Pushed, InboxError> {
        let finished = {
            // The workers' side first, as its pulls lock them: no lock order inverted.
            let mut st = self.state()?;
            let mut intake = self.intake()?;
            let mut finished = std::mem::take(&mut intake.finished);
            finished.extend(st.settled.drain(..));
            drop(st);
            for done in &finished {
                intake.record(done.fingerprint, self.remember_done);
            }
            let answer = if intake.seen.contains(&fingerprint) {
                Ok(Pushed::Duplicate)
            } else if intake.open() >= self.capacity {
                Err(InboxError::Full)
            } else {
                intake.seen.insert(fingerprint);
                intake.fresh.push(Keyed { fingerprint, webhook });
                Ok(Pushed::Accepted)
            };
            (finished, answer)
        };
        let (finished, answer) = finished;
        if answer.as_ref().is_ok_and(|pushed| *pushed == Pushed::Accepted) {
            self.shared.notify.notify_one();
        }
        drop(finished);
        answer
    }

    fn lease(&self, max: usize, lease: Duration) -> Result<Vec<Job>, InboxError> {
        let mut jobs = Vec::new();
        self.lease_into(max, lease, &mut jobs)?;
        Ok(jobs)
    }

    /// Leases up to `max` due jobs for `lease` into `leased`. What was pushed since the
    /// last pull is taken in only when the jobs this side holds are fewer than `max`.
    fn lease_into(&self, max: usize, lease: Duration, leased: &mut impl Leased) -> Result<(), InboxError> {
        let now = self.clock.unix_nanos();
        let until = now.saturating_add(i128::try_from(lease.as_nanos()).unwrap_or(i128::MAX));
        let mut st = self.state()?;
        st.expire_leases(now);
        let mut dropped = Vec::new();
        if st.fresh.len() < max || st.settled.len() >= PARKED_MAX {
            dropped = self.hand_over(&mut st)?;
        }
        leased.at_most(max.min(st.waiting()));
        let mut n = 0;
        while n < max {
            let Some(queued) = st.next_due(now) else { break };
            if let Some(job) = st.lease_one(&queued, until) {
                n += 1;
                leased.add(job);
            }
        }
        drop(st);
        drop(dropped);
        Ok(())
    }

    /// Takes what was pushed since the last pull into slots, and hands the webhooks of
    /// the jobs finished since then to the pushing side. Returns the finished webhooks
    /// that were over [`PARKED_MAX`] there, recorded, for the caller to drop.
    fn hand_over(&self, st: &mut State) -> Result<Vec<Keyed>, InboxError> {
        let mut intake = self.intake()?;
        std::mem::swap(&mut intake.fresh, &mut st.taking);
        intake.finished.extend(st.settled.drain(..));
        let mut over = Vec::new();
        while intake.finished.len() > PARKED_MAX {
            let Some(done) = intake.finished.pop_front() else { break };
            intake.record(done.fingerprint, self.remember_done);
            over.push(done);
        }
        intake.behind = st.waiting() + st.taking.len();
        drop(intake);
        let mut taking = std::mem::take(&mut st.taking);
        for fresh in taking.drain(..) {
            st.admit(fresh);
        }
        st.taking = taking;
        Ok(over)
    }

    /// Keeps the workers' side to [`PARKED_MAX`] finished webhooks between pulls (a bulk
    /// discard, or more lanes than that acknowledging before their next pull): past it,
    /// they are handed over as a pull hands them. Returns those let go, for the caller to
    /// drop after the lock.
    fn park_no_more(&self, st: &mut State) -> Result<Vec<Keyed>, InboxError> {
        if st.settled.len() < PARKED_MAX {
            return Ok(Vec::new());
        }
        self.hand_over(st)
    }

    fn finish(&self, job: &Job) -> Result<(), InboxError> {
        let mut st = self.state()?;
        let (slot, live) = st.leased_slot(job)?;
        // The webhook's memory was allocated by the pushing thread; a push drops it there.
        // Freed on this (the worker's) thread instead, glibc's allocator would move each
        // chunk through the pushing thread's arena lock, contended by that thread's own
        // allocations (measured: most of the futex calls under load).
        let done = st.release(slot);
        st.settled.extend(done);
        if live {
            st.settled_lease();
        }
        let over = self.park_no_more(&mut st)?;
        drop(st);
        drop(over);
        Ok(())
    }

    /// Back to waiting until `not_before`; `uncount` gives back the attempt the pull took.
    fn requeue(&self, job: &Job, not_before: OffsetDateTime, uncount: bool) -> Result<(), InboxError> {
        let copy = job.webhook().compacted();
        let mut st = self.state()?;
        let (slot, live) = st.leased_slot(job)?;
        let ticket = st.ticket(slot);
        let entry = &mut st.slots[slot];
        entry.status = Status::Waiting { ticket };
        Self::wait_compacted(entry, copy);
        if uncount {
            entry.attempts = entry.attempts.saturating_sub(1);
        }
        if live {
            st.settled_lease();
        }
        st.later.push(Reverse(Queued { at: not_before.unix_timestamp_nanos(), ticket }));
        drop(st);
        self.shared.notify.notify_one();
        Ok(())
    }

    fn bury(&self, job: &Job, error: &str) -> Result<(), InboxError> {
        let at = self.clock.now();
        let copy = job.webhook().compacted();
        let mut st = self.state()?;
        let (slot, live) = st.leased_slot(job)?;
        let entry = &mut st.slots[slot];
        entry.status = Status::Dead { error: error.to_owned(), at };
        Self::wait_compacted(entry, copy);
        if live {
            st.settled_lease();
        }
        st.dead.push_back(slot as u32);
        Ok(())
    }

    /// A job that goes back to wait (for a retry, or as a dead letter) keeps its own copy of
    /// the webhook, made by the caller outside the lock.
    fn wait_compacted(entry: &mut Slot, copy: Option<Webhook>) {
        if let Some(copy) = copy {
            entry.webhook = Some(copy);
        }
    }

    fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, InboxError> {
        let st = self.state()?;
        Ok(st
            .dead
            .iter()
            .filter_map(|&slot| st.slots.get(slot as usize))
            .filter_map(|entry| match (&entry.status, &entry.webhook) {
                (Status::Dead { error, at }, Some(webhook)) => Some(DeadLetter {
                    webhook: webhook.clone(),
                    attempts: entry.attempts,
                    error: error.clone(),
                    failed_at: *at,
                }),
                _ => None,
            })
            .take(limit)
            .collect())
    }

    fn redrive_now(&self, key: &str) -> Result<bool, InboxError> {
        let at = self.clock.unix_nanos();
        let mut st = self.state()?;
        let Some(slot) = st.take_dead(key) else { return Ok(false) };
        let ticket = st.ticket(slot);
        let entry = &mut st.slots[slot];
        entry.attempts = 0;
        entry.status = Status::Waiting { ticket };
        st.later.push(Reverse(Queued { at, ticket }));
        drop(st);
        self.shared.notify.notify_one();
        Ok(true)
    }

    /// Removes the dead letter with this key as [`Self::finish`] removes a finished job:
    /// its slot is freed, and the pushing side records its key among the finished ones.
    fn discard_now(&self, key: &str) -> Result<bool, InboxError> {
        let mut st = self.state()?;
        let Some(slot) = st.take_dead(key) else { return Ok(false) };
        // Dropped by a push, as a finished job's webhook is (see `finish`).
        let done = st.release(slot);
        st.settled.extend(done);
        let over = self.park_no_more(&mut st)?;
        drop(st);
        drop(over);
        Ok(true)
    }

    fn depth_now(&self) -> Result<usize, InboxError> {
        let st = self.state()?;
        let pushed = self.intake()?.fresh.len();
        Ok(st.held().saturating_sub(st.dead.len()) + pushed)
    }
}

/// Where [`MemoryInbox::lease_into`] puts the jobs it leases.
trait Leased {
    /// At most `n` jobs are coming (a vector sizes itself once).
    fn at_most(&mut self, _n: usize) {}
    fn add(&mut self, job: Job);
}

impl Leased for Vec<Job> {
    fn at_most(&mut self, n: usize) {
        self.reserve_exact(n);
    }

    fn add(&mut self, job: Job) {
        self.push(job);
    }
}

impl Leased for Option<Job> {
    fn add(&mut self, job: Job) {
        *self = Some(job);
    }
}

/// What the index holds of a key: a 128-bit SipHash-1-3 of it, keyed at random per inbox
/// ([`Fingerprints`]). Inline: no allocation, nothing to follow or free when the key is
/// forgotten.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Fingerprint(u64, u64);

/// A webhook with its key's [`Fingerprint`], made once when it is pushed and carried to
/// where its job finishes.
struct Keyed {
    fingerprint: Fingerprint,
    webhook: Webhook,
}

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a keyed hash: the table uses one half as it is ([`AsIs`]).
        state.write_u64(self.0);
    }
}

/// The keyed hasher that makes [`Fingerprint`]s. Its two 64-bit keys are drawn once per
/// inbox from std's `RandomState` (seeded by the operating system).
#[derive(Clone)]
struct Fingerprints(SipHasher13);

impl Default for Fingerprints {
    fn default() -> Self {
        let random = RandomState::new();
        Self(SipHasher13::new_with_keys(random.hash_one(0u8), random.hash_one(1u8)))
    }
}

impl std::fmt::Debug for Fingerprints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys stay out of logs.
        f.write_str("Fingerprints(..)")
    }
}

impl Fingerprints {
    fn of(&self, key: &str) -> Fingerprint {
        let mut hasher = self.0;
        hasher.write(key.as_bytes());
        let hash = hasher.finish128();
        Fingerprint(hash.h1, hash.h2)
    }
}

/// Hashes a [`Fingerprint`] as the half it writes: a keyed hash needs no hashing again.
#[derive(Debug, Default, Clone, Copy)]
struct AsIs;

impl BuildHasher for AsIs {
    type Hasher = AsIsHasher;

    fn build_hasher(&self) -> AsIsHasher {
        AsIsHasher(0)
    }
}

/// See [`AsIs`].
struct AsIsHasher(u64);

impl Hasher for AsIsHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `Fingerprint`; any bytes still hash.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Intake {
    /// Jobs accepted and not recorded finished yet: every key known but the remembered
    /// finished ones.
    fn open(&self) -> usize {
        self.seen.len().saturating_sub(self.done.len())
    }

    /// Records that the job of the key `fingerprint` finished: it joins the remembered
    /// ones, and the oldest beyond `remember` are forgotten.
    fn record(&mut self, fingerprint: Fingerprint, remember: usize) {
        self.done.push_back(fingerprint);
        while self.done.len() > remember {
            let Some(old) = self.done.pop_front() else { break };
            self.seen.remove(&old);
        }
    }
}

impl State {
    /// A new ticket for `slot`.
    fn ticket(&mut self, slot: usize) -> u64 {
        self.tickets = self.tickets.wrapping_add(1);
        (u64::from(self.tickets) << 32) | slot as u64
    }

    /// A pushed job takes a free slot and waits, ordered against retries by when it was
    /// received ([`Webhook::received_at`]: no clock read, which costs about 100 ns on some
    /// virtual machines).
    fn admit(&mut self, Keyed { fingerprint, webhook }: Keyed) {
        let at = webhook.received_at_nanos();
        let slot = match self.free.pop() {
            Some(slot) => slot as usize,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        let ticket = self.ticket(slot);
        self.slots[slot] =
            Slot { webhook: Some(webhook), fingerprint, attempts: 0, status: Status::Waiting { ticket } };
        self.fresh.push_back(Queued { at, ticket });
    }

    /// Takes the dead letter with this key out of the dead list: its slot (a scan of the
    /// dead letters, oldest first).
    fn take_dead(&mut self, key: &str) -> Option<usize> {
        let slots = &self.slots;
        let pos = self.dead.iter().position(|slot| {
            slots.get(*slot as usize).and_then(|s| s.webhook.as_ref()).is_some_and(|w| w.key() == key)
        })?;
        self.dead.remove(pos).map(|slot| slot as usize)
    }

    /// Empties `slot` (its job finished); returns its webhook and key.
    fn release(&mut self, slot: usize) -> Option<Keyed> {
        let entry = &mut self.slots[slot];
        entry.status = Status::Free;
        let webhook = entry.webhook.take();
        self.free.push(slot as u32);
        webhook.map(|webhook| Keyed { fingerprint: entry.fingerprint, webhook })
    }

    /// Leases the job `queued` names until `until`, if it still waits under that ticket.
    fn lease_one(&mut self, queued: &Queued, until: i128) -> Option<Job> {
        let slot = slot_of(queued.ticket);
        if self.slots.get(slot)?.status != (Status::Waiting { ticket: queued.ticket }) {
            return None;
        }
        let ticket = self.ticket(slot);
        let entry = &mut self.slots[slot];
        let webhook = entry.webhook.clone()?;
        entry.attempts += 1;
        entry.status = Status::Leased { ticket };
        let attempts = entry.attempts;
        self.leases.push(Reverse(Queued { at: until, ticket }));
        Some(Job::leased(webhook, attempts, ticket))
    }

    /// Leases that ran out: their workers are gone; the jobs are due again (from the
    /// lease's end).
    fn expire_leases(&mut self, now: i128) {
        while let Some(Reverse(lease)) = self.leases.peek() {
            if lease.at > now {
                break;
            }
            let Some(Reverse(lease)) = self.leases.pop() else { break };
            match self.slots.get_mut(slot_of(lease.ticket)) {
                Some(entry) if entry.status == (Status::Leased { ticket: lease.ticket }) => {
                    entry.status = Status::Waiting { ticket: lease.ticket };
                    self.later.push(Reverse(lease));
                }
                _ => self.stale_leases = self.stale_leases.saturating_sub(1),
            }
        }
    }

    /// The waiting job due first, if it is due at `now`. A pushed job is due whatever the
    /// clock says (a wall clock stepped back must not hold it up); when it was received only
    /// orders it against retries.
    fn next_due(&mut self, now: i128) -> Option<Queued> {
        let fresh = self.fresh.front().map(|q| q.at);
        let later = self.later.peek().map(|Reverse(q)| q.at).filter(|at| *at <= now);
        match (fresh, later) {
            (Some(fresh), Some(later)) if later < fresh => self.later.pop().map(|Reverse(q)| q),
            (Some(_), _) => self.fresh.pop_front(),
            (None, Some(_)) => self.later.pop().map(|Reverse(q)| q),
            (None, None) => None,
        }
    }

    /// The slot `job` holds a lease on, and whether that lease is live (its heap entry
    /// still pending). A lease that ran out while nobody took the job again still holds
    /// it (as on the durable backends: the lease is lost only once the job was taken
    /// again); its entry in the retry queue is then skipped, as the job's ticket moved on.
    fn leased_slot(&self, job: &Job) -> Result<(usize, bool), InboxError> {
        let ticket = job.ticket().ok_or(InboxError::LeaseLost)?;
        let slot = slot_of(ticket);
        match self.slots.get(slot).map(|entry| &entry.status) {
            Some(Status::Leased { ticket: t }) if *t == ticket => Ok((slot, true)),
            Some(Status::Waiting { ticket: t }) if *t == ticket => Ok((slot, false)),
            _ => Err(InboxError::LeaseLost),
        }
    }

    /// A lease was settled: its heap entry is stale now. Sweeps them out when they pile up
    /// (a long-running job at the top keeps the settled ones behind it from coming up).
    fn settled_lease(&mut self) {
        self.stale_leases += 1;
        if self.stale_leases >= SWEEP_AT && 2 * self.stale_leases > self.leases.len() {
            let slots = &self.slots;
            self.leases.retain(|Reverse(lease)| {
                slots
                    .get(slot_of(lease.ticket))
                    .is_some_and(|s| s.status == (Status::Leased { ticket: lease.ticket }))
            });
            self.stale_leases = 0;
        }
    }

    /// Jobs in slots (waiting, leased and dead).
    fn held(&self) -> usize {
        self.slots.len().saturating_sub(self.free.len())
    }

    /// Jobs waiting (due or not).
    fn waiting(&self) -> usize {
        self.fresh.len() + self.later.len()
    }
}

impl Inbox for MemoryInbox {
    fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<Pushed, InboxError>> {
        Box::pin(std::future::ready(self.keep(webhook)))
    }

    fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>> {
        Box::pin(std::future::ready(self.lease(max, lease)))
    }

    fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(std::future::ready(self.finish(job)))
    }

    fn retry<'a>(
        &'a self,
        job: &'a Job,
        not_before: OffsetDateTime,
        _error: &'a str,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(std::future::ready(self.requeue(job, not_before, false)))
    }

    fn give_back<'a>(&'a self, job: &'a Job, now: OffsetDateTime) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(std::future::ready(self.requeue(job, now, true)))
    }

    fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(std::future::ready(self.bury(job, error)))
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, InboxError>> {
        Box::pin(std::future::ready(self.dead_list(limit)))
    }

    fn redrive<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        Box::pin(std::future::ready(self.redrive_now(key)))
    }

    fn discard<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        Box::pin(std::future::ready(self.discard_now(key)))
    }

    fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>> {
        Box::pin(std::future::ready(self.depth_now()))
    }

    fn push_now(&self, webhook: &Webhook) -> Option<Result<Pushed, InboxError>> {
        Some(self.keep(webhook.clone()))
    }

    fn ack_now(&self, job: &Job) -> Option<Result<(), InboxError>> {
        Some(self.finish(job))
    }

    fn pull_one_now(&self, lease: Duration) -> Option<Result<Option<Job>, InboxError>> {
        let mut one = None;
        Some(self.lease_into(1, lease, &mut one).map(|()| one))
    }

    /// Waits for a push, a retry, a give-back or a re-drive, and until the earliest time
    /// a retry comes due or a lease runs out (its job is due again then): at once when that
    /// time has come.
    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Registered before the look at the queues: what comes after it wakes this wait.
            notified.as_mut().enable();
            let next = match self.state() {
                // A job pushed, or handed over by the pushing side, is due now.
                Ok(st) if !st.fresh.is_empty() => return,
                Ok(st) => {
                    if self.intake().is_ok_and(|intake| !intake.fresh.is_empty()) {
                        return;
                    }
                    let later = st.later.peek().map(|Reverse(q)| q.at);
                    let lease = st.leases.peek().map(|Reverse(q)| q.at);
                    later.into_iter().chain(lease).min()
                }
                Err(_) => None,
            };
            let Some(limit) = super::wait_limit(timeout, next, self.clock.unix_nanos()) else { return };
            let _ = tokio::time::timeout(limit, notified).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::ManualClock, verify::Verified};

    fn hook(id: &str) -> Webhook {
        let v = Verified::new("t", Some(id.to_owned().into()), None, None, [0; 32], 0);
        Webhook::new("t", &v, http::HeaderMap::new(), "{}".into(), OffsetDateTime::UNIX_EPOCH)
    }

    /// `Debug` (reached through a `Worker`'s or a `Guard`'s, or a span that records them)
    /// shows the configuration and a few counts: not the webhooks held (their keys and ids
    /// would reach the logs, megabytes of them, formatted under the inbox's locks).
    #[test]
    fn debug_shows_the_configuration_and_counts_not_the_webhooks() {
        let inbox = MemoryInbox::new().capacity(5_000);
        for n in 0..1_000 {
            let pushed = inbox.push_now(&hook(&format!("delivery-{n:04}"))).unwrap().unwrap();
            assert_eq!(pushed, Pushed::Accepted);
        }
        let jobs = inbox.lease(10, Duration::from_secs(30)).unwrap();
        for job in &jobs[..4] {
            inbox.finish(job).unwrap();
        }
        inbox.bury(&jobs[4], "handler bug").unwrap();
        let shown = format!("{inbox:?}");
        assert!(shown.len() < 1024, "{} bytes: {}", shown.len(), &shown[..shown.len().min(300)]);
        assert!(!shown.contains("delivery-"), "no key or id: {shown}");
        assert!(shown.contains("capacity: 5000") && shown.contains("remember_done: 100000"), "{shown}");
        assert!(shown.contains("depth: Some(995)") && shown.contains("dead: Some(1)"), "{shown}");
    }

    /// `wait` returns when a retry comes due, not only on a push: the pool would otherwise
    /// add up to its whole idle poll to every back-off.
    #[tokio::test(start_paused = true)]
    async fn wait_returns_when_a_retry_comes_due() {
        let clock = ManualClock::at_unix(100);
        let inbox = MemoryInbox::new().clock(clock.clone());
        inbox.push(hook("a")).await.unwrap();
        let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.retry(&job, clock.now_for_tests() + Duration::from_secs(1), "boom").await.unwrap();
        inbox.wait(Duration::from_secs(60)).await; // takes the permit the push and retry left
        assert!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().is_empty(), "not due yet");
        let began = tokio::time::Instant::now();
        inbox.wait(Duration::from_secs(60)).await;
        assert_eq!(began.elapsed(), Duration::from_secs(1), "until the retry is due");
        clock.advance(Duration::from_secs(1));
        let began = tokio::time::Instant::now();
        inbox.wait(Duration::from_secs(60)).await;
        assert_eq!(began.elapsed(), Duration::ZERO, "due already: at once");
        assert_eq!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().len(), 1);
    }

    /// A lease that ran out (its worker died) ends a wait too.
    #[tokio::test(start_paused = true)]
    async fn wait_returns_when_a_lease_runs_out() {
        let clock = ManualClock::at_unix(100);
        let inbox = MemoryInbox::new().clock(clock.clone());
        inbox.push(hook("a")).await.unwrap();
        inbox.wait(Duration::from_secs(60)).await; // the push's permit
        let _lost = inbox.pull(1, Duration::from_secs(1)).await.unwrap();
        clock.advance(Duration::from_secs(2));
        let began = tokio::time::Instant::now();
        inbox.wait(Duration::from_secs(60)).await;
        assert_eq!(began.elapsed(), Duration::ZERO);
        assert_eq!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().len(), 1);
    }

    /// `wait` returns at once while a pushed job waits, even when the push's wake-up was
    /// taken by an earlier wait (the trait's promise, for loops other than the pool's).
    #[tokio::test(start_paused = true)]
    async fn wait_returns_at_once_while_a_pushed_job_waits() {
        let inbox = MemoryInbox::new().clock(ManualClock::at_unix(100));
        inbox.push(hook("a")).await.unwrap();
        inbox.push(hook("b")).await.unwrap();
        inbox.wait(Duration::from_secs(60)).await; // the pushes' permit
        assert_eq!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().len(), 1);
        let began = tokio::time::Instant::now();
        inbox.wait(Duration::from_secs(3600)).await;
        assert_eq!(began.elapsed(), Duration::ZERO, "b waits");
    }

    /// A lease that ran out while nobody took the job again still holds it, as on the
    /// durable backends: the late ack counts, and the job is not run again.
    #[tokio::test]
    async fn a_late_ack_counts_while_nobody_took_the_job_again() {
        let clock = ManualClock::at_unix(100);
        let inbox = MemoryInbox::new().clock(clock.clone());
        inbox.push(hook("a")).await.unwrap();
        let a = inbox.pull(1, Duration::from_secs(1)).await.unwrap().remove(0);
        inbox.push(hook("b")).await.unwrap();
        clock.advance(Duration::from_secs(2));
        // This pull finds a's lease run out, and takes b (received first).
        let b = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        assert_eq!(b.webhook().key(), hook("b").key());
        inbox.ack(&a).await.unwrap();
        inbox.ack(&b).await.unwrap();
        assert!(inbox.pull(10, Duration::from_secs(30)).await.unwrap().is_empty(), "a is done");
        assert_eq!(inbox.depth().await.unwrap(), 0);

        // Taken again, the job is the new holder's: the old lease is lost.
        inbox.push(hook("c")).await.unwrap();
        let c = inbox.pull(1, Duration::from_secs(1)).await.unwrap().remove(0);
        clock.advance(Duration::from_secs(2));
        let again = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        assert!(matches!(inbox.ack(&c).await, Err(InboxError::LeaseLost)));
        inbox.ack(&again).await.unwrap();
        assert_eq!(inbox.depth().await.unwrap(), 0);
    }

    /// A webhook as the guard keeps it: its body a slice of a buffer it does not own.
    fn sliced(id: &str, body: bytes::Bytes) -> Webhook {
        let v = Verified::new("t", Some(id.to_owned().into()), None, None, [0; 32], 0);
        let labels = crate::inbox::Labels::of("t", &v, None);
        Webhook::kept(labels, None, Arc::from("t"), None, http::HeaderMap::new(), &[], body, 0)
    }

    #[tokio::test]
    async fn a_webhook_that_will_wait_is_copied_and_one_processed_at_once_is_not() {
        let inbox = MemoryInbox::new();
        let buffer = bytes::Bytes::from(vec![7; 64]);
        for n in 0..=COMPACT_BEHIND {
            inbox.push(sliced(&n.to_string(), buffer.slice(..4))).await.unwrap();
        }
        let jobs = inbox.pull(COMPACT_BEHIND + 1, Duration::from_secs(30)).await.unwrap();
        let shares = |job: &Job| job.webhook().body().as_ptr() == buffer.as_ptr();
        assert!(jobs[..COMPACT_BEHIND].iter().all(shares), "pushed before the backlog: as they were");
        assert!(!shares(&jobs[COMPACT_BEHIND]), "pushed behind {COMPACT_BEHIND} waiting: copied");
        assert_eq!(jobs[COMPACT_BEHIND].webhook().body().as_ref(), &[7; 4]);
    }

    #[tokio::test]
    async fn a_large_body_is_copied_behind_a_shorter_backlog() {
        let inbox = MemoryInbox::new();
        let small = bytes::Bytes::from(vec![7; 64]);
        let large = bytes::Bytes::from(vec![8; LARGE_BODY + 5]);
        for n in 0..COMPACT_LARGE_BEHIND - 1 {
            inbox.push(sliced(&n.to_string(), small.slice(..4))).await.unwrap();
        }
        inbox.push(sliced("large, before", large.slice(1..))).await.unwrap();
        inbox.push(sliced("large, behind", large.slice(1..))).await.unwrap();
        inbox.push(sliced("small, behind", small.slice(..4))).await.unwrap();
        let jobs = inbox.pull(COMPACT_LARGE_BEHIND + 2, Duration::from_secs(30)).await.unwrap();
        let shares =
            |job: &Job, buffer: &bytes::Bytes| buffer.as_ptr_range().contains(&job.webhook().body().as_ptr());
        let n = COMPACT_LARGE_BEHIND;
        assert!(shares(&jobs[n - 1], &large), "large, pushed behind {} waiting: as it was", n - 1);
        assert!(!shares(&jobs[n], &large), "large, pushed behind {n} waiting: copied");
        assert_eq!(jobs[n].webhook().body().len(), LARGE_BODY + 4);
        assert!(shares(&jobs[n + 1], &small), "small, behind {}: not yet", n + 1);
    }

    #[tokio::test]
    async fn a_job_put_back_to_wait_keeps_a_copy_of_its_own() {
        let clock = ManualClock::at_unix(100);
        let inbox = MemoryInbox::new().clock(clock.clone());
        let buffer = bytes::Bytes::from(vec![7; 64]);
        for id in ["retried", "given back", "dead"] {
            inbox.push(sliced(id, buffer.slice(..4))).await.unwrap();
        }
        let jobs = inbox.pull(3, Duration::from_secs(30)).await.unwrap();
        inbox.retry(&jobs[0], clock.now_for_tests(), "boom").await.unwrap();
        inbox.give_back(&jobs[1], clock.now_for_tests()).await.unwrap();
        inbox.dead_letter(&jobs[2], "no").await.unwrap();
        for job in inbox.pull(3, Duration::from_secs(30)).await.unwrap() {
            assert_ne!(job.webhook().body().as_ptr(), buffer.as_ptr(), "{:?}", job.webhook().id());
        }
        let dead = inbox.dead_letters(1).await.unwrap();
        assert_ne!(dead[0].webhook.body().as_ptr(), buffer.as_ptr());
    }

    /// A body that says when its memory is let go.
    struct Owner(Arc<std::sync::atomic::AtomicBool>);

    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            b"{}"
        }
    }

    impl Drop for Owner {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A webhook whose body says when its memory is let go.
    fn owned(id: &str) -> (Webhook, Arc<std::sync::atomic::AtomicBool>) {
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let body = bytes::Bytes::from_owner(Owner(Arc::clone(&dropped)));
        let v = Verified::new("t", Some(id.to_owned().into()), None, None, [0; 32], 0);
        (Webhook::new("t", &v, http::HeaderMap::new(), body, OffsetDateTime::UNIX_EPOCH), dropped)
    }

    #[tokio::test]
    async fn a_finished_webhook_is_let_go_by_a_push_after_the_next_pull() {
        let inbox = MemoryInbox::new();
        let (first, dropped) = owned("first");
        inbox.push(first).await.unwrap();
        let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.ack(&job).await.unwrap();
        drop(job);
        let gone = || dropped.load(std::sync::atomic::Ordering::SeqCst);
        assert!(!gone(), "kept for the pushing side");
        assert!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().is_empty());
        assert!(!gone(), "handed to the pushing side, not dropped by the pull");
        inbox.push(hook("second")).await.unwrap();
        assert!(gone(), "the next push let it go");
        assert_eq!(inbox.push(hook("first")).await.unwrap(), Pushed::Duplicate, "its key is remembered");
    }

    /// A bulk discard with no pull after it: the workers' side hands what it parked over
    /// at [`PARKED_MAX`], so no more than that waits on each side.
    #[tokio::test]
    async fn a_bulk_discard_parks_no_more_than_parked_max_on_the_workers_side() {
        let inbox = MemoryInbox::new();
        let n = 3 * PARKED_MAX;
        for i in 0..n {
            inbox.push(hook(&i.to_string())).await.unwrap();
        }
        let jobs = inbox.pull(n, Duration::from_secs(30)).await.unwrap();
        assert_eq!(jobs.len(), n);
        for job in &jobs {
            inbox.dead_letter(job, "no").await.unwrap();
        }
        for job in &jobs {
            assert!(inbox.discard(job.webhook().key()).await.unwrap());
        }
        // Dead letters hold copies of their own: count what each side holds.
        let parked = inbox.state().unwrap().settled.len();
        assert!(parked < PARKED_MAX, "{parked} finished webhooks held by the workers' side without a pull");
        assert!(inbox.intake().unwrap().finished.len() <= PARKED_MAX);
        for i in 0..n {
            assert_eq!(inbox.push(hook(&i.to_string())).await.unwrap(), Pushed::Duplicate, "{i} remembered");
        }
    }

    #[tokio::test]
    async fn without_pushes_at_most_parked_max_finished_webhooks_wait_on_each_side() {
        let inbox = MemoryInbox::new();
        let n = 3 * PARKED_MAX;
        let mut flags = Vec::new();
        for i in 0..n {
            let (webhook, dropped) = owned(&i.to_string());
            inbox.push(webhook).await.unwrap();
            flags.push(dropped);
        }
        // One at a time, as a pool with one lane would: each pull hands the last ack over.
        for _ in 0..n {
            let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
            inbox.ack(&job).await.unwrap();
        }
        assert!(inbox.pull(1, Duration::from_secs(30)).await.unwrap().is_empty());
        let kept = flags.iter().filter(|d| !d.load(std::sync::atomic::Ordering::SeqCst)).count();
        assert_eq!(kept, PARKED_MAX, "the oldest were let go by the worker's pulls");
        assert!(
            flags[n - PARKED_MAX..].iter().all(|d| !d.load(std::sync::atomic::Ordering::SeqCst)),
            "the newest wait for a push"
        );
        for i in 0..n {
            assert_eq!(inbox.push(hook(&i.to_string())).await.unwrap(), Pushed::Duplicate, "{i} remembered");
        }
    }

    /// Pushing threads and a pulling one at once: every accepted delivery is pulled once
    /// and only once, every resend is refused, and nothing is left.
    #[test]
    fn pushes_and_pulls_on_other_threads_lose_and_repeat_nothing() {
        const PUSHERS: usize = 3;
        const EACH: usize = 4_000;
        let inbox = MemoryInbox::new().capacity(PUSHERS * EACH).remember_done(PUSHERS * EACH);
        let pushed = std::sync::atomic::AtomicUsize::new(0);
        let pulled = std::thread::scope(|s| {
            for p in 0..PUSHERS {
                let (inbox, pushed) = (&inbox, &pushed);
                s.spawn(move || {
                    for i in 0..EACH {
                        // Every other delivery is sent twice, the second time by another thread.
                        for id in [format!("{p}-{i}"), format!("{}-{}", (p + 1) % PUSHERS, i / 2 * 2)] {
                            match inbox.keep(hook(&id)) {
                                Ok(Pushed::Accepted) => {
                                    pushed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                }
                                Ok(Pushed::Duplicate) => {}
                                Err(e) => panic!("{id}: {e}"),
                            }
                        }
                    }
                });
            }
            s.spawn(|| {
                let mut seen = std::collections::HashSet::new();
                while seen.len() < PUSHERS * EACH {
                    for job in inbox.lease(7, Duration::from_secs(60)).unwrap() {
                        assert!(seen.insert(job.webhook().key().to_owned()), "{} twice", job.webhook().key());
                        inbox.finish(&job).unwrap();
                    }
                }
                seen
            })
            .join()
            .unwrap()
        });
        assert_eq!(pulled.len(), PUSHERS * EACH);
        assert_eq!(pushed.into_inner(), PUSHERS * EACH, "each delivery accepted once");
        assert_eq!(inbox.depth_now().unwrap(), 0);
        assert!(inbox.lease(1, Duration::from_secs(60)).unwrap().is_empty());
    }

    /// Two pushing threads and two working ones that retry, give back and acknowledge, with
    /// single pulls at hand and batch pulls mixed: every delivery is acknowledged once, with
    /// the attempts its retries call for, and nothing is left.
    #[test]
    fn retries_and_give_backs_on_other_threads_lose_and_repeat_nothing() {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        const EACH: usize = 3_000;
        let total = 2 * EACH;
        let inbox = MemoryInbox::new().capacity(total).remember_done(total);
        let acked = Mutex::new(std::collections::HashMap::<String, u32>::new());
        let given_back = Mutex::new(std::collections::HashSet::<String>::new());
        let pushing_done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let pushers: Vec<_> = (0..2)
                .map(|p| {
                    let inbox = &inbox;
                    s.spawn(move || {
                        for i in 0..EACH {
                            assert_eq!(inbox.keep(hook(&format!("{p}-{i}"))).unwrap(), Pushed::Accepted);
                        }
                    })
                })
                .collect();
            for w in 0..2 {
                let (inbox, acked, given_back, pushing_done) = (&inbox, &acked, &given_back, &pushing_done);
                s.spawn(move || {
                    let lease = Duration::from_secs(600);
                    let mut round = 0_u32;
                    loop {
                        round += 1;
                        let jobs = if (round + w).is_multiple_of(2) {
                            inbox.lease(5, lease).unwrap()
                        } else {
                            inbox.pull_one_now(lease).unwrap().unwrap().into_iter().collect()
                        };
                        if jobs.is_empty() {
                            if pushing_done.load(SeqCst) && acked.lock().unwrap().len() == total {
                                break;
                            }
                            std::thread::yield_now();
                            continue;
                        }
                        for job in jobs {
                            let key = job.webhook().key().to_owned();
                            let n: u32 = key.rsplit('-').next().unwrap().parse().unwrap();
                            if n.is_multiple_of(3) && job.attempt() == 1 {
                                inbox.requeue(&job, OffsetDateTime::now_utc(), false).unwrap();
                            } else if n.is_multiple_of(5) && given_back.lock().unwrap().insert(key.clone()) {
                                inbox.requeue(&job, OffsetDateTime::now_utc(), true).unwrap();
                            } else {
                                inbox.finish(&job).unwrap();
                                let want = if n.is_multiple_of(3) { 2 } else { 1 };
                                assert_eq!(job.attempt(), want, "{key}: attempts");
                                assert!(
                                    acked.lock().unwrap().insert(key.clone(), job.attempt()).is_none(),
                                    "{key} twice"
                                );
                            }
                        }
                    }
                });
            }
            for pusher in pushers {
                pusher.join().unwrap();
            }
            pushing_done.store(true, SeqCst);
        });
        assert_eq!(acked.into_inner().unwrap().len(), total);
        assert_eq!(inbox.depth_now().unwrap(), 0);
        for p in 0..2 {
            assert_eq!(inbox.keep(hook(&format!("{p}-0"))).unwrap(), Pushed::Duplicate, "remembered");
        }
    }

    #[tokio::test]
    async fn a_push_after_the_clock_stepped_back_is_due() {
        let clock = ManualClock::at_unix(1_000);
        let inbox = MemoryInbox::new().clock(clock.clone());
        inbox.push(hook("before")).await.unwrap();
        clock.set_unix(900);
        inbox.push(hook("after")).await.unwrap();
        let jobs = inbox.pull(10, Duration::from_secs(30)).await.unwrap();
        let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap_or_default()).collect();
        assert_eq!(ids, ["before", "after"], "pushed jobs are due whatever the wall clock says");
    }

    #[tokio::test]
    async fn a_webhook_put_back_to_wait_keeps_every_header_it_was_pushed_with() {
        let clock = ManualClock::at_unix(100);
        let inbox = MemoryInbox::new().clock(clock.clone());
        let v = Verified::new("t", Some("a".into()), None, None, [0; 32], 0);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-custom", http::HeaderValue::from_static("x"));
        let pushed = Webhook::new("t", &v, headers, "{}".into(), OffsetDateTime::UNIX_EPOCH);
        inbox.push(pushed.clone()).await.unwrap();
        let first = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.retry(&first, clock.now_for_tests(), "boom").await.unwrap();
        let second = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        assert_eq!(second.webhook(), &pushed, "copied, not changed");
        assert!(second.webhook().headers().contains_key("x-custom"));
    }

    /// Random pushes, pulls, acks, retries, give-backs, dead letters, re-drives, discards
    /// and clock moves, against a model of what the inbox promises: each answer, the pulled jobs and
    /// their attempts, late settlements refused, depth, dead letters, capacity and the
    /// finished keys remembered.
    #[test]
    fn behaves_as_a_model_of_it_does() {
        for seed in 1..200 {
            model::run(seed * 7919, 4, 3, 8, 400);
        }
        for seed in 1..4 {
            model::run(seed * 104_729, 150, 40, 300, 4000);
        }
    }

    mod model {
        use std::collections::HashMap;

        use super::*;

        #[derive(Clone, Debug, PartialEq)]
        enum State {
            Waiting(i64),
            Leased(u64, i64),
            Dead,
            Done,
        }

        /// xorshift: the same steps for a seed, every run.
        struct Rng(u64);

        impl Rng {
            fn below(&mut self, n: u64) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 % n
            }
        }

        pub(super) fn run(seed: u64, capacity: usize, remember: usize, keys: u64, steps: usize) {
            const LEASE: i64 = 10;
            let clock = ManualClock::at_unix(1_000);
            let inbox = MemoryInbox::new().capacity(capacity).remember_done(remember).clock(clock.clone());
            let mut now: i64 = 1_000;
            let mut rng = Rng(seed | 1);
            let mut model: HashMap<String, (State, u32)> = HashMap::new();
            let mut done_order: Vec<String> = Vec::new();
            let mut leases: u64 = 0;
            let mut held: Vec<(Job, String, u64)> = Vec::new();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            for step in 0..steps {
                let op = rng.below(9);
                let at = format!("seed {seed} step {step} op {op}");
                match op {
                    0 | 1 => {
                        let id = format!("k{}", rng.below(keys));
                        let got = rt.block_on(inbox.push(hook(&id)));
                        let kept = model.values().filter(|(s, _)| *s != State::Done).count();
                        let want = match model.entry(format!("t:{id}")) {
                            std::collections::hash_map::Entry::Occupied(_) => Ok(Pushed::Duplicate),
                            std::collections::hash_map::Entry::Vacant(_) if kept >= capacity => Err(()),
                            std::collections::hash_map::Entry::Vacant(slot) => {
                                slot.insert((State::Waiting(now), 0));
                                Ok(Pushed::Accepted)
                            }
                        };
                        assert_eq!(
                            got.map_err(|e| assert!(matches!(e, InboxError::Full), "{at}")),
                            want,
                            "{at}"
                        );
                    }
                    2 => {
                        for (state, _) in model.values_mut() {
                            if let State::Leased(_, until) = *state
                                && until <= now
                            {
                                *state = State::Waiting(until);
                            }
                        }
                        let mut want = Vec::new();
                        for (key, (state, attempts)) in &mut model {
                            if let State::Waiting(due) = *state
                                && due <= now
                            {
                                leases += 1;
                                *state = State::Leased(leases, now + LEASE);
                                *attempts += 1;
                                want.push((key.clone(), *attempts));
                            }
                        }
                        want.sort();
                        let jobs =
                            rt.block_on(inbox.pull(100_000, Duration::from_secs(LEASE as u64))).unwrap();
                        let mut got: Vec<_> =
                            jobs.iter().map(|j| (j.webhook().key().to_owned(), j.attempt())).collect();
                        got.sort();
                        assert_eq!(got, want, "{at}");
                        for job in jobs {
                            let key = job.webhook().key().to_owned();
                            let State::Leased(lease, _) = model[&key].0 else { panic!("{at}: leased") };
                            held.push((job, key, lease));
                        }
                    }
                    3..=6 if !held.is_empty() => {
                        let (job, key, lease) = held.swap_remove(rng.below(held.len() as u64) as usize);
                        let live = matches!(model.get(&key), Some((State::Leased(l, _), _)) if *l == lease);
                        let due = now + rng.below(15) as i64;
                        let got = rt.block_on(match op {
                            3 => inbox.ack(&job),
                            4 => inbox.retry(&job, OffsetDateTime::from_unix_timestamp(due).unwrap(), "e"),
                            5 => inbox.give_back(&job, clock.now_for_tests()),
                            _ => inbox.dead_letter(&job, "e"),
                        });
                        if !live {
                            assert!(matches!(got, Err(InboxError::LeaseLost)), "{at}: {got:?}");
                            continue;
                        }
                        assert!(got.is_ok(), "{at}: {got:?}");
                        let entry = model.get_mut(&key).unwrap();
                        match op {
                            3 => {
                                entry.0 = State::Done;
                                done_order.push(key);
                                while done_order.len() > remember {
                                    model.remove(&done_order.remove(0));
                                }
                            }
                            4 => entry.0 = State::Waiting(due),
                            5 => {
                                entry.0 = State::Waiting(now);
                                entry.1 = entry.1.saturating_sub(1);
                            }
                            _ => entry.0 = State::Dead,
                        }
                    }
                    7 => {
                        let key = format!("t:k{}", rng.below(keys));
                        let discard = rng.below(2) == 0;
                        let got =
                            rt.block_on(if discard { inbox.discard(&key) } else { inbox.redrive(&key) });
                        let want = matches!(model.get(&key), Some((State::Dead, _)));
                        if want && discard {
                            model.get_mut(&key).unwrap().0 = State::Done;
                            done_order.push(key.clone());
                            while done_order.len() > remember {
                                model.remove(&done_order.remove(0));
                            }
                        } else if want {
                            *model.get_mut(&key).unwrap() = (State::Waiting(now), 0);
                        }
                        assert_eq!(got.unwrap(), want, "{at}");
                    }
                    _ => {
                        now += rng.below(12) as i64;
                        clock.set_unix(now);
                    }
                }
                let depth = model
                    .values()
                    .filter(|(s, _)| matches!(s, State::Waiting(_) | State::Leased(..)))
                    .count();
                assert_eq!(rt.block_on(inbox.depth()).unwrap(), depth, "{at}: depth");
                let mut dead: Vec<_> = rt
                    .block_on(inbox.dead_letters(100_000))
                    .unwrap()
                    .into_iter()
                    .map(|d| (d.webhook.key().to_owned(), d.attempts))
                    .collect();
                dead.sort();
                let mut want: Vec<_> = model
                    .iter()
                    .filter(|(_, (s, _))| *s == State::Dead)
                    .map(|(k, (_, a))| (k.clone(), *a))
                    .collect();
                want.sort();
                assert_eq!(dead, want, "{at}: dead letters");
            }
        }
    }

    #[tokio::test]
    async fn settled_leases_do_not_pile_up_behind_a_long_one() {
        let inbox = MemoryInbox::new().capacity(10_000).clock(ManualClock::at_unix(0));
        inbox.push(hook("long")).await.unwrap();
        let long = inbox.pull(1, Duration::from_secs(3600)).await.unwrap();
        for n in 0..1_000 {
            inbox.push(hook(&n.to_string())).await.unwrap();
            let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
            inbox.ack(&job).await.unwrap();
        }
        {
            let st = inbox.shared.state.lock().unwrap();
            assert!(st.leases.len() <= SWEEP_AT + 1, "{} leases kept for 1 live one", st.leases.len());
            assert_eq!(st.held(), 1);
        }
        inbox.ack(&long[0]).await.unwrap();
        assert_eq!(inbox.depth().await.unwrap(), 0);
    }

    #[test]
    fn fingerprints_tell_keys_apart_and_are_keyed_per_inbox() {
        let (one, other) = (Fingerprints::default(), Fingerprints::default());
        let keys: Vec<String> = (0..20_000).map(|i| format!("stripe:evt_{i}")).collect();
        let mut seen = HashSet::new();
        for key in &keys {
            assert_eq!(one.of(key), one.of(key), "stable");
            assert!(seen.insert(one.of(key)), "{key} shares a fingerprint");
        }
        // Keys that differ in length only, or only at the end, are told apart too.
        assert_ne!(one.of("ep:a"), one.of("ep:a\0"));
        assert_ne!(one.of(""), one.of("\0"));
        // Another inbox hashes with keys of its own.
        assert!(keys.iter().all(|key| one.of(key) != other.of(key)));
        // The table uses the fingerprint's half as it is.
        let fp = one.of("ep:a");
        assert_eq!(AsIs.hash_one(fp), fp.0);
    }

    #[test]
    fn the_fingerprint_keys_stay_out_of_debug_output() {
        let inbox = MemoryInbox::new();
        assert_eq!(format!("{:?}", inbox.shared.fingerprints), "Fingerprints(..)");
        let text = format!("{inbox:?}");
        assert!(!text.contains("Fingerprint"), "the inbox's shows none: {text}");
    }

    #[tokio::test]
    async fn a_remembered_key_is_found_again_after_the_index_grew_and_shrank() {
        // Enough keys for the index to grow several times, then forget most of them: the
        // ones still remembered are duplicates, the forgotten ones are new again.
        let inbox = MemoryInbox::new().capacity(100).remember_done(1_000);
        for i in 0..3_000 {
            assert_eq!(inbox.push(hook(&i.to_string())).await.unwrap(), Pushed::Accepted);
            let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
            inbox.ack(&job).await.unwrap();
        }
        // Finished webhooks are recorded by later pushes and pulls: settle them all.
        let _ = inbox.pull(1, Duration::from_secs(30)).await.unwrap();
        assert_eq!(inbox.push(hook("2999")).await.unwrap(), Pushed::Duplicate);
        assert_eq!(inbox.push(hook("2500")).await.unwrap(), Pushed::Duplicate);
        assert_eq!(inbox.push(hook("0")).await.unwrap(), Pushed::Accepted, "forgotten");
        assert_eq!(inbox.push(hook("1000")).await.unwrap(), Pushed::Accepted, "forgotten");
    }

    /// A discarded dead letter's key joins the finished ones: remembered while they are,
    /// then forgotten in its turn; its room is free at once.
    #[tokio::test]
    async fn a_discarded_key_is_remembered_as_a_finished_one() {
        let inbox = MemoryInbox::new().capacity(1).remember_done(1);
        inbox.push(hook("a")).await.unwrap();
        let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.dead_letter(&job, "boom").await.unwrap();
        assert!(
            matches!(inbox.push(hook("b")).await, Err(InboxError::Full)),
            "the dead letter holds the room"
        );
        assert!(inbox.discard(job.webhook().key()).await.unwrap());
        assert!(matches!(inbox.ack(&job).await, Err(InboxError::LeaseLost)), "no lease left to settle");
        assert_eq!(inbox.push(hook("a")).await.unwrap(), Pushed::Duplicate, "remembered");
        assert_eq!(inbox.push(hook("b")).await.unwrap(), Pushed::Accepted, "room made");
        let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.ack(&job).await.unwrap();
        assert_eq!(inbox.push(hook("c")).await.unwrap(), Pushed::Accepted);
        assert_eq!(inbox.shared.intake.lock().unwrap().done.len(), 1, "a forgotten, b remembered");
        let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.ack(&job).await.unwrap();
        assert_eq!(inbox.push(hook("a")).await.unwrap(), Pushed::Accepted, "forgotten");
    }

    #[tokio::test]
    async fn finished_keys_are_remembered_up_to_the_limit() {
        let inbox = MemoryInbox::new().remember_done(2);
        for id in ["a", "b", "c"] {
            inbox.push(hook(id)).await.unwrap();
            let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
            inbox.ack(&job).await.unwrap();
        }
        assert_eq!(inbox.push(hook("c")).await.unwrap(), Pushed::Duplicate);
        assert_eq!(inbox.push(hook("b")).await.unwrap(), Pushed::Duplicate);
        assert_eq!(inbox.push(hook("a")).await.unwrap(), Pushed::Accepted, "forgotten");
        assert_eq!(inbox.shared.intake.lock().unwrap().seen.len(), 3);
    }

    #[tokio::test]
    async fn pushes_and_due_retries_go_in_the_order_they_were_received_and_came_due() {
        let clock = ManualClock::at_unix(100);
        let inbox = MemoryInbox::new().clock(clock.clone());
        let received = |id: &str, secs: i64| {
            let v = Verified::new("t", Some(id.to_owned().into()), None, None, [0; 32], 0);
            let at = OffsetDateTime::from_unix_timestamp(secs).unwrap();
            Webhook::new("t", &v, http::HeaderMap::new(), "{}".into(), at)
        };
        inbox.push(received("r", 100)).await.unwrap();
        let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.retry(&job, clock.now_for_tests() + Duration::from_secs(1), "boom").await.unwrap();
        inbox.push(received("before", 100)).await.unwrap();
        clock.advance(Duration::from_secs(5));
        inbox.push(received("after", 105)).await.unwrap();
        let jobs = inbox.pull(3, Duration::from_secs(30)).await.unwrap();
        let ids: Vec<_> = jobs.iter().map(|j| j.webhook().id().unwrap()).collect();
        assert_eq!(ids, ["before", "r", "after"], "received before the retry came due, or after");
    }
}
