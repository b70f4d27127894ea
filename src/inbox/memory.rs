//! The embedded inbox: bounded, in process, lost on crash.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque, hash_map},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use foldhash::fast::RandomState;
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::{BoxFuture, DeadLetter, Inbox, InboxError, Job, Pushed, Webhook, webhook::SharedKey};
use crate::clock::{Clock, SystemClock};

/// An in-process inbox: a bounded queue with leases, retries at a given time, dead letters
/// and re-drive, woken at once when work arrives.
///
/// **Guarantee:** none beyond the process. A crash or restart loses every webhook it
/// holds, including ones already acknowledged to the sender. Use a durable backend when
/// that matters.
///
/// Capacity (default 10,000) counts waiting, leased and dead jobs; past it, pushes fail
/// with [`InboxError::Full`]. The keys of the last 100,000 finished jobs are remembered, so
/// a late resend of a processed delivery is a [`Pushed::Duplicate`].
///
/// Memory: a webhook the guard keeps is made of slices of the request's read buffer (no
/// copy on the way in). One that is processed soon stays so; one pushed behind a backlog
/// (1,024 waiting jobs, or 64 when its body is over 16 KiB), or put back to wait (a retry,
/// a job given back, a dead letter), is first copied into memory of its own, so a backlog
/// holds its webhooks' bytes and no read buffers. A small body shares the connection's
/// read buffer (8 KiB by default in hyper, shared by the requests read into it), so at
/// most a few MB of buffers are held by jobs that wait for the worker's next pull. The
/// webhooks of finished jobs are let go by the next push (at most 256 wait for it), on the
/// thread that pushes: with glibc's allocator, memory freed on the thread that allocated
/// it costs no lock.
///
/// [`push_now`](Inbox::push_now) and [`ack_now`](Inbox::ack_now) answer at once: the
/// guard and the worker use no boxed future per delivery with this inbox.
///
/// ```
/// use hookguard::{clock::ManualClock, inbox::MemoryInbox};
/// let inbox = MemoryInbox::new().capacity(100).clock(ManualClock::at_unix(0));
/// # let _ = inbox;
/// ```
#[derive(Debug, Clone)]
pub struct MemoryInbox {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    capacity: usize,
    remember_done: usize,
    clock: Arc<dyn Clock>,
}

/// One map of every key the inbox knows (kept jobs and finished keys alike), each entry
/// with its state, and the queues that order them. Only waiting jobs are queued, each
/// once; a lease stays in its heap after the job was settled and is skipped (and now and
/// then swept out) when it comes up.
///
/// The map hashes with foldhash, seeded per process: its keys are webhook keys, made only
/// after verification, and the seed keeps collisions unpredictable, at a fraction of
/// SipHash's cost. Keys are the webhook's own shared key: every queue holds a reference
/// count, not a copy.
#[derive(Debug, Default)]
struct State {
    entries: HashMap<Key, Entry, RandomState>,
    /// Pushed jobs, in push order (each due when pushed).
    fresh: VecDeque<Queued>,
    /// Every other waiting job (retries, jobs given back, expired leases, re-drives): the
    /// earliest due first.
    later: BinaryHeap<Reverse<Queued>>,
    /// Leases by end: the earliest first. Settled ones are stale (their entry moved on).
    leases: BinaryHeap<Reverse<Queued>>,
    stale_leases: usize,
    /// Dead keys, oldest first.
    dead: VecDeque<SharedKey>,
    /// Finished keys, oldest first (their entries are `Done`).
    done: VecDeque<Arc<str>>,
    /// Webhooks of finished jobs, dropped by the next push (see `MemoryInbox::finish`).
    finished: Vec<Webhook>,
    /// Jobs waiting, leased and dead (what the capacity bounds).
    kept: usize,
    dead_count: usize,
    tickets: u64,
}

/// A queued job or a lease: when it is due (or ends), in nanoseconds since the epoch, and
/// the ticket that says which state of its entry it belongs to.
#[derive(Debug)]
struct Queued {
    at: i128,
    ticket: u64,
    key: SharedKey,
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

/// An entry's key: the kept webhook's own while the inbox holds the webhook; a copy made
/// by the worker that finished it afterwards, so that the webhook's memory (allocated by
/// the pushing thread) goes back with the webhook, and the finished key's (allocated and
/// forgotten on the worker's thread) stays on that thread.
#[derive(Debug)]
enum Key {
    Kept(SharedKey),
    Done(Arc<str>),
}

impl Key {
    fn as_str(&self) -> &str {
        match self {
            Self::Kept(key) => key.as_str(),
            Self::Done(key) => key,
        }
    }
}

// Hashes, compares and borrows as the key text, so the map is looked up by `&str`.
key_by_view!(Key, as_str, str);

#[derive(Debug)]
struct Entry {
    /// The job's webhook; `None` once it is done (only the key is remembered).
    webhook: Option<Webhook>,
    attempts: u32,
    status: Status,
}

#[derive(Debug)]
enum Status {
    Waiting,
    /// Leased under `ticket` (the job's receipt); its end is in the lease heap.
    Leased {
        ticket: u64,
    },
    Dead {
        error: String,
        at: OffsetDateTime,
    },
    Done,
}

impl Default for MemoryInbox {
    fn default() -> Self {
        Self::new()
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

/// Finished webhooks kept for the next push to drop, at most (beyond: dropped at once).
const PARKED_MAX: usize = 256;

impl MemoryInbox {
    /// An inbox for 10,000 jobs on the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            notify: Arc::new(Notify::new()),
            capacity: 10_000,
            remember_done: 100_000,
            clock: Arc::new(SystemClock),
        }
    }

    /// Sets the capacity (waiting + leased + dead jobs).
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets how many finished keys are remembered for duplicate detection.
    #[must_use]
    pub fn remember_done(mut self, count: usize) -> Self {
        self.remember_done = count;
        self
    }

    /// Sets the clock for due times and leases.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, InboxError> {
        self.state.lock().map_err(|_| InboxError::Backend("inbox state poisoned".into()))
    }

    fn keep(&self, mut webhook: Webhook) -> Result<Pushed, InboxError> {
        let at = self.clock.unix_nanos();
        let key = webhook.shared_key();
        let mut st = self.lock()?;
        let behind = if webhook.body().len() > LARGE_BODY { COMPACT_LARGE_BEHIND } else { COMPACT_BEHIND };
        if st.waiting() >= behind
            && let Some(copy) = webhook.compacted()
        {
            // It will wait: in memory of its own, copied outside the lock.
            drop(st);
            webhook = copy;
            st = self.lock()?;
        }
        // Taken now, dropped once the lock is released (see `finish`): two per push, so
        // that this thread frees about as many chunks as it allocates and its allocator
        // cache neither runs dry nor overflows.
        let finished = [st.finished.pop(), st.finished.pop()];
        let full = st.kept >= self.capacity;
        let ticket = st.ticket();
        let hash_map::Entry::Vacant(slot) = st.entries.entry(Key::Kept(key.clone())) else {
            return Ok(Pushed::Duplicate);
        };
        if full {
            return Err(InboxError::Full);
        }
        slot.insert(Entry { webhook: Some(webhook), attempts: 0, status: Status::Waiting });
        st.kept += 1;
        st.fresh.push_back(Queued { at, ticket, key });
        drop(st);
        self.notify.notify_one();
        drop(finished);
        Ok(Pushed::Accepted)
    }

    fn lease(&self, max: usize, lease: Duration) -> Result<Vec<Job>, InboxError> {
        let now = self.clock.unix_nanos();
        let until = now.saturating_add(i128::try_from(lease.as_nanos()).unwrap_or(i128::MAX));
        let mut st = self.lock()?;
        st.expire_leases(now);
        let mut jobs = Vec::new();
        while jobs.len() < max {
            let Some(Queued { key, .. }) = st.next_due(now) else { break };
            let ticket = st.ticket();
            let State { entries, leases, .. } = &mut *st;
            let Some(entry) = entries.get_mut(key.as_str()) else { continue };
            let Some(webhook) = &entry.webhook else { continue };
            entry.attempts += 1;
            entry.status = Status::Leased { ticket };
            jobs.push(Job::leased(webhook.clone(), entry.attempts, ticket));
            leases.push(Reverse(Queued { at: until, ticket, key }));
        }
        Ok(jobs)
    }

    fn finish(&self, job: &Job) -> Result<(), InboxError> {
        let key = job.webhook().key();
        let done_key: Arc<str> = Arc::from(key);
        let mut st = self.lock()?;
        st.leased_entry(job)?;
        let Some(mut entry) = st.entries.remove(key) else { return Err(InboxError::LeaseLost) };
        entry.status = Status::Done;
        let done = entry.webhook.take();
        // The webhook's memory was allocated by the pushing thread; the next push drops
        // it there. Freed on this (the worker's) thread instead, glibc's allocator would
        // move each chunk through the pushing thread's arena lock, contended by that
        // thread's own allocations (measured: most of the futex calls under load).
        if st.finished.len() < PARKED_MAX {
            st.finished.extend(done);
        }
        st.entries.insert(Key::Done(Arc::clone(&done_key)), entry);
        st.kept -= 1;
        st.settled_lease();
        st.done.push_back(done_key);
        while st.done.len() > self.remember_done {
            if let Some(old) = st.done.pop_front() {
                st.entries.remove(&*old);
            }
        }
        Ok(())
    }

    /// Back to waiting until `not_before`; `uncount` gives back the attempt the pull took.
    fn requeue(&self, job: &Job, not_before: OffsetDateTime, uncount: bool) -> Result<(), InboxError> {
        let copy = job.webhook().compacted();
        let mut st = self.lock()?;
        let entry = st.leased_entry(job)?;
        entry.status = Status::Waiting;
        Self::wait_compacted(entry, copy);
        if uncount {
            entry.attempts = entry.attempts.saturating_sub(1);
        }
        st.settled_lease();
        let ticket = st.ticket();
        let key = job.webhook().shared_key();
        st.later.push(Reverse(Queued { at: not_before.unix_timestamp_nanos(), ticket, key }));
        drop(st);
        self.notify.notify_one();
        Ok(())
    }

    fn bury(&self, job: &Job, error: &str) -> Result<(), InboxError> {
        let at = self.clock.now();
        let copy = job.webhook().compacted();
        let mut st = self.lock()?;
        let entry = st.leased_entry(job)?;
        entry.status = Status::Dead { error: error.to_owned(), at };
        Self::wait_compacted(entry, copy);
        st.settled_lease();
        st.dead_count += 1;
        st.dead.push_back(job.webhook().shared_key());
        Ok(())
    }

    /// A job that goes back to wait (for a retry, or as a dead letter) keeps its own copy of
    /// the webhook, made by the caller outside the lock.
    fn wait_compacted(entry: &mut Entry, copy: Option<Webhook>) {
        if let Some(copy) = copy {
            entry.webhook = Some(copy);
        }
    }

    fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, InboxError> {
        let st = self.lock()?;
        Ok(st
            .dead
            .iter()
            .filter_map(|key| st.entries.get(key.as_str()))
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
        let mut st = self.lock()?;
        let Some(pos) = st.dead.iter().position(|k| k.as_str() == key) else {
            return Ok(false);
        };
        let Some(key) = st.dead.remove(pos) else { return Ok(false) };
        st.dead_count -= 1;
        if let Some(entry) = st.entries.get_mut(key.as_str()) {
            entry.attempts = 0;
            entry.status = Status::Waiting;
        }
        let ticket = st.ticket();
        st.later.push(Reverse(Queued { at, ticket, key }));
        drop(st);
        self.notify.notify_one();
        Ok(true)
    }
}

impl State {
    fn ticket(&mut self) -> u64 {
        self.tickets += 1;
        self.tickets
    }

    /// Leases that ran out: their workers are gone; the jobs are due again (from the
    /// lease's end).
    fn expire_leases(&mut self, now: i128) {
        while let Some(Reverse(lease)) = self.leases.peek() {
            if lease.at > now {
                break;
            }
            let Some(Reverse(lease)) = self.leases.pop() else { break };
            match self.entries.get_mut(lease.key.as_str()) {
                Some(entry) if matches!(entry.status, Status::Leased { ticket } if ticket == lease.ticket) => {
                    entry.status = Status::Waiting;
                    self.later.push(Reverse(lease));
                }
                _ => self.stale_leases = self.stale_leases.saturating_sub(1),
            }
        }
    }

    /// The waiting job due first, if it is due at `now`. A pushed job is due whatever the
    /// clock says (a wall clock stepped back must not hold it up); its push time only
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

    /// The entry `job` holds a live lease on.
    fn leased_entry(&mut self, job: &Job) -> Result<&mut Entry, InboxError> {
        let ticket = job.ticket().ok_or(InboxError::LeaseLost)?;
        match self.entries.get_mut(job.webhook().key()) {
            Some(entry) if matches!(entry.status, Status::Leased { ticket: t } if t == ticket) => Ok(entry),
            _ => Err(InboxError::LeaseLost),
        }
    }

    /// A lease was settled: its heap entry is stale now. Sweeps them out when they pile up
    /// (a long-running job at the top keeps the settled ones behind it from coming up).
    fn settled_lease(&mut self) {
        self.stale_leases += 1;
        if self.stale_leases >= SWEEP_AT && 2 * self.stale_leases > self.leases.len() {
            let entries = &self.entries;
            self.leases.retain(|Reverse(lease)| {
                entries
                    .get(lease.key.as_str())
                    .is_some_and(|e| matches!(e.status, Status::Leased { ticket } if ticket == lease.ticket))
            });
            self.stale_leases = 0;
        }
    }

    /// Jobs waiting (due or not).
    fn waiting(&self) -> usize {
        self.fresh.len() + self.later.len()
    }

    /// Jobs waiting or leased.
    fn depth(&self) -> usize {
        self.kept - self.dead_count
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

    fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>> {
        let depth = self.lock().map(|st| st.depth());
        Box::pin(std::future::ready(depth))
    }

    fn push_now(&self, webhook: &Webhook) -> Option<Result<Pushed, InboxError>> {
        Some(self.keep(webhook.clone()))
    }

    fn ack_now(&self, job: &Job) -> Option<Result<(), InboxError>> {
        Some(self.finish(job))
    }

    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        let notify = Arc::clone(&self.notify);
        Box::pin(async move {
            let _ = tokio::time::timeout(timeout, notify.notified()).await;
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

    /// A webhook as the guard keeps it: its body a slice of a buffer it does not own.
    fn sliced(id: &str, body: bytes::Bytes) -> Webhook {
        let v = Verified::new("t", Some(id.to_owned().into()), None, None, [0; 32], 0);
        let labels = crate::inbox::Labels::of("t", &v, None);
        Webhook::kept(labels, None, Arc::from("t"), None, http::HeaderMap::new(), body, 0)
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

    #[tokio::test]
    async fn a_finished_webhook_is_let_go_by_the_next_push() {
        let inbox = MemoryInbox::new();
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let body = bytes::Bytes::from_owner(Owner(Arc::clone(&dropped)));
        let v = Verified::new("t", Some("first".into()), None, None, [0; 32], 0);
        inbox
            .push(Webhook::new("t", &v, http::HeaderMap::new(), body, OffsetDateTime::UNIX_EPOCH))
            .await
            .unwrap();
        let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.ack(&job).await.unwrap();
        drop(job);
        assert!(!dropped.load(std::sync::atomic::Ordering::SeqCst), "parked for the pushing thread");
        inbox.push(hook("second")).await.unwrap();
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst), "the next push let it go");
        assert_eq!(inbox.push(hook("first")).await.unwrap(), Pushed::Duplicate, "its key is remembered");
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
        headers.insert("authorization", http::HeaderValue::from_static("Bearer x"));
        let pushed = Webhook::new("t", &v, headers, "{}".into(), OffsetDateTime::UNIX_EPOCH);
        inbox.push(pushed.clone()).await.unwrap();
        let first = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.retry(&first, clock.now_for_tests(), "boom").await.unwrap();
        let second = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        assert_eq!(second.webhook(), &pushed, "copied, not changed");
        assert!(second.webhook().headers().contains_key("authorization"));
    }

    /// Random pushes, pulls, acks, retries, give-backs, dead letters, re-drives and clock
    /// moves, against a model of what the inbox promises: each answer, the pulled jobs and
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
                        let got = rt.block_on(inbox.redrive(&key)).unwrap();
                        let want = matches!(model.get(&key), Some((State::Dead, _)));
                        if want {
                            *model.get_mut(&key).unwrap() = (State::Waiting(now), 0);
                        }
                        assert_eq!(got, want, "{at}");
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
            let st = inbox.state.lock().unwrap();
            assert!(st.leases.len() <= SWEEP_AT + 1, "{} leases kept for 1 live one", st.leases.len());
            assert_eq!(st.depth(), 1);
        }
        inbox.ack(&long[0]).await.unwrap();
        assert_eq!(inbox.depth().await.unwrap(), 0);
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
        assert_eq!(inbox.state.lock().unwrap().entries.len(), 3);
    }

    #[tokio::test]
    async fn a_due_retry_goes_before_later_pushes() {
        let clock = ManualClock::at_unix(100);
        let inbox = MemoryInbox::new().clock(clock.clone());
        inbox.push(hook("r")).await.unwrap();
        let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.retry(&job, clock.now_for_tests() + Duration::from_secs(1), "boom").await.unwrap();
        clock.advance(Duration::from_secs(5));
        inbox.push(hook("p")).await.unwrap();
        let jobs = inbox.pull(2, Duration::from_secs(30)).await.unwrap();
        assert_eq!(jobs.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["r", "p"]);
    }
}
