//! The embedded inbox: bounded, in process, lost on crash.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use foldhash::fast::RandomState;
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
/// with [`InboxError::Full`]. The keys of the last 100,000 finished jobs are remembered, so
/// a late resend of a processed delivery is a [`Pushed::Duplicate`].
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

/// The maps hash with foldhash, seeded per process: their keys are webhook keys, made only
/// after verification, and the seed keeps collisions unpredictable, at a fraction of
/// SipHash's cost.
#[derive(Debug, Default)]
/// Keys are the webhook's own shared key (`Arc<str>`): every index holds a reference
/// count, not a copy.
struct State {
    entries: HashMap<Arc<str>, Entry, RandomState>,
    /// Due time (nanoseconds since the epoch: integers order and add cheaply, unlike
    /// dates), push order, key.
    ready: BTreeSet<(i128, u64, Arc<str>)>,
    /// Lease end (nanoseconds since the epoch), key.
    leased: BTreeSet<(i128, Arc<str>)>,
    /// Dead keys, oldest first.
    dead: VecDeque<Arc<str>>,
    done: HashSet<Arc<str>, RandomState>,
    done_order: VecDeque<Arc<str>>,
    seq: u64,
}

#[derive(Debug)]
struct Entry {
    webhook: Webhook,
    attempts: u32,
    status: Status,
}

#[derive(Debug)]
enum Status {
    Ready,
    Leased { until: i128, receipt: u64 },
    Dead { error: String, at: OffsetDateTime },
}

impl Default for MemoryInbox {
    fn default() -> Self {
        Self::new()
    }
}

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

    fn push_now(&self, mut webhook: Webhook) -> Result<Pushed, InboxError> {
        // Not the connection's read buffer: a waiting job holds only its own bytes.
        webhook.compact();
        let mut st = self.lock()?;
        let key = Arc::clone(webhook.shared_key());
        if st.entries.contains_key(&key) || st.done.contains(&key) {
            return Ok(Pushed::Duplicate);
        }
        if st.entries.len() >= self.capacity {
            return Err(InboxError::Full);
        }
        let at = self.clock.now().unix_timestamp_nanos();
        let seq = st.next_seq();
        st.ready.insert((at, seq, key.clone()));
        st.entries.insert(key, Entry { webhook, attempts: 0, status: Status::Ready });
        drop(st);
        self.notify.notify_one();
        Ok(Pushed::Accepted)
    }

    fn pull_now(&self, max: usize, lease: Duration) -> Result<Vec<Job>, InboxError> {
        let now = self.clock.now().unix_timestamp_nanos();
        let lease = i128::try_from(lease.as_nanos()).unwrap_or(i128::MAX);
        let mut st = self.lock()?;
        // Leases that ran out: their workers are gone; the jobs are due again.
        while let Some((until, key)) = st.leased.first().cloned() {
            if until > now {
                break;
            }
            st.leased.pop_first();
            let seq = st.next_seq();
            if let Some(entry) = st.entries.get_mut(&key) {
                entry.status = Status::Ready;
                st.ready.insert((until, seq, key));
            }
        }
        let mut jobs = Vec::new();
        while jobs.len() < max {
            let Some((at, _, _)) = st.ready.first() else { break };
            if *at > now {
                break;
            }
            let Some((_, _, key)) = st.ready.pop_first() else { break };
            let receipt = st.next_seq();
            let until = now.saturating_add(lease);
            st.leased.insert((until, key.clone()));
            if let Some(entry) = st.entries.get_mut(&key) {
                entry.attempts += 1;
                entry.status = Status::Leased { until, receipt };
                jobs.push(Job::new(entry.webhook.clone(), entry.attempts, receipt.to_string()));
            }
        }
        Ok(jobs)
    }

    /// Removes a leased job's lease if the receipt still holds it.
    fn take_lease(st: &mut State, job: &Job) -> Result<(), InboxError> {
        let Some((key, entry)) = st.entries.get_key_value(job.webhook().key()) else {
            return Err(InboxError::LeaseLost);
        };
        match entry.status {
            Status::Leased { until, receipt } if job.receipt().parse::<u64>() == Ok(receipt) => {
                let key = Arc::clone(key);
                st.leased.remove(&(until, key));
                Ok(())
            }
            _ => Err(InboxError::LeaseLost),
        }
    }

    fn ack_now(&self, job: &Job) -> Result<(), InboxError> {
        let mut st = self.lock()?;
        Self::take_lease(&mut st, job)?;
        // The entry's own key goes to the finished set: no copy of the job's.
        let Some((key, _done)) = st.entries.remove_entry(job.webhook().key()) else {
            return Err(InboxError::LeaseLost);
        };
        st.done.insert(key.clone());
        st.done_order.push_back(key);
        while st.done_order.len() > self.remember_done {
            if let Some(old) = st.done_order.pop_front() {
                st.done.remove(&old);
            }
        }
        Ok(())
    }

    /// Back to waiting until `not_before`; `uncount` gives back the attempt the pull took.
    fn retry_now(&self, job: &Job, not_before: OffsetDateTime, uncount: bool) -> Result<(), InboxError> {
        let mut st = self.lock()?;
        Self::take_lease(&mut st, job)?;
        let key = Arc::clone(job.webhook().shared_key());
        let seq = st.next_seq();
        st.ready.insert((not_before.unix_timestamp_nanos(), seq, key.clone()));
        if let Some(entry) = st.entries.get_mut(&key) {
            entry.status = Status::Ready;
            if uncount {
                entry.attempts = entry.attempts.saturating_sub(1);
            }
        }
        drop(st);
        self.notify.notify_one();
        Ok(())
    }

    fn dead_now(&self, job: &Job, error: &str) -> Result<(), InboxError> {
        let mut st = self.lock()?;
        Self::take_lease(&mut st, job)?;
        let key = Arc::clone(job.webhook().shared_key());
        let at = self.clock.now();
        if let Some(entry) = st.entries.get_mut(&key) {
            entry.status = Status::Dead { error: error.to_owned(), at };
        }
        st.dead.push_back(key);
        Ok(())
    }

    fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, InboxError> {
        let st = self.lock()?;
        Ok(st
            .dead
            .iter()
            .filter_map(|key| st.entries.get(key))
            .filter_map(|entry| match &entry.status {
                Status::Dead { error, at } => Some(DeadLetter {
                    webhook: entry.webhook.clone(),
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
        let mut st = self.lock()?;
        let Some(pos) = st.dead.iter().position(|k| &**k == key) else {
            return Ok(false);
        };
        let Some(key) = st.dead.remove(pos) else { return Ok(false) };
        let at = self.clock.now().unix_timestamp_nanos();
        let seq = st.next_seq();
        st.ready.insert((at, seq, Arc::clone(&key)));
        if let Some(entry) = st.entries.get_mut(&key) {
            entry.attempts = 0;
            entry.status = Status::Ready;
        }
        drop(st);
        self.notify.notify_one();
        Ok(true)
    }
}

impl State {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

impl Inbox for MemoryInbox {
    fn push(&self, webhook: Webhook) -> BoxFuture<'_, Result<Pushed, InboxError>> {
        Box::pin(std::future::ready(self.push_now(webhook)))
    }

    fn pull(&self, max: usize, lease: Duration) -> BoxFuture<'_, Result<Vec<Job>, InboxError>> {
        Box::pin(std::future::ready(self.pull_now(max, lease)))
    }

    fn ack<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(std::future::ready(self.ack_now(job)))
    }

    fn retry<'a>(
        &'a self,
        job: &'a Job,
        not_before: OffsetDateTime,
        _error: &'a str,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(std::future::ready(self.retry_now(job, not_before, false)))
    }

    fn give_back<'a>(&'a self, job: &'a Job, now: OffsetDateTime) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(std::future::ready(self.retry_now(job, now, true)))
    }

    fn dead_letter<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(std::future::ready(self.dead_now(job, error)))
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, InboxError>> {
        Box::pin(std::future::ready(self.dead_list(limit)))
    }

    fn redrive<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, InboxError>> {
        Box::pin(std::future::ready(self.redrive_now(key)))
    }

    fn depth(&self) -> BoxFuture<'_, Result<usize, InboxError>> {
        let depth = self.lock().map(|st| st.ready.len() + st.leased.len());
        Box::pin(std::future::ready(depth))
    }

    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        let notify = Arc::clone(&self.notify);
        Box::pin(async move {
            let _ = tokio::time::timeout(timeout, notify.notified()).await;
        })
    }
}
