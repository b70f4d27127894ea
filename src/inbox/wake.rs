//! Wake-ups from other processes, for the inboxes that several replicas share.
//!
//! A listener task per inbox (shared by its clones) holds a connection of its own and
//! counts signals on a [`Signal`]; waiters watch the count. Background tasks run while any
//! clone of the inbox lives ([`Background`]): dropping the last clone ends them and closes
//! their connections.

use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use time::OffsetDateTime;
use tokio::{
    sync::{Notify, oneshot, watch},
    time::Instant,
};

use super::InboxError;
use crate::{clock::Clock, worker::Backoff};

/// Delays between reconnection attempts of a listener: 100 ms doubling up to 30 s, jittered.
pub(crate) const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));

/// What a background task and the inbox share: wake-ups it counts for waiters, and
/// requests for work.
#[derive(Debug)]
pub(crate) struct Signal {
    /// Wake-ups so far: each signal from the store, and each (re)connection (what was
    /// signalled while the listener was away is unknown).
    count: watch::Sender<u64>,
    /// A permit stored by each waiter (for listeners that only work while someone waits),
    /// or by each `poke`.
    demand: Notify,
}

impl Signal {
    fn new() -> Self {
        Self { count: watch::Sender::new(0), demand: Notify::new() }
    }

    /// Wakes every current waiter.
    pub(crate) fn wake(&self) {
        self.count.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wake-ups so far.
    pub(crate) fn count(&self) -> u64 {
        *self.count.borrow()
    }

    /// A receiver that sees the wake-ups after this call; also leaves a demand permit.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        let rx = self.count.subscribe();
        self.demand.notify_one();
        rx
    }

    /// Asks the task for work: coalesced with other pokes until it takes them.
    #[cfg(feature = "postgres")]
    pub(crate) fn poke(&self) {
        self.demand.notify_one();
    }

    /// Waiters holding a receiver right now.
    #[cfg(feature = "redis")]
    pub(crate) fn waiters(&self) -> usize {
        self.count.receiver_count()
    }

    /// Resolves once a waiter subscribed, or someone poked, since the last call (at once
    /// when one did).
    pub(crate) async fn demanded(&self) {
        self.demand.notified().await;
    }
}

/// Runs a background task of an inbox (a listener, a notifier) while the inbox (any of its
/// clones) lives.
#[derive(Debug)]
pub(crate) struct Background {
    signal: Arc<Signal>,
    /// Dropped with this (the last clone of the inbox): the task ends. Closed when the task
    /// ended on its own (its runtime shut down): the next [`start`](Self::start) starts it
    /// again.
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// For a listener's waiters: the signal count and the clock's time when the last pull
    /// began.
    last_pull: Mutex<Option<(u64, OffsetDateTime)>>,
}

impl Background {
    pub(crate) fn new() -> Self {
        Self { signal: Arc::new(Signal::new()), stop: Mutex::new(None), last_pull: Mutex::new(None) }
    }

    /// The shared signal, after spawning `task` on the current runtime unless it runs.
    pub(crate) fn start<F, Fut>(&self, task: F) -> &Arc<Signal>
    where
        F: FnOnce(Arc<Signal>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        if stop.as_ref().is_none_or(oneshot::Sender::is_closed) {
            let (tx, rx) = oneshot::channel::<()>();
            let task = task(Arc::clone(&self.signal));
            tokio::spawn(async move {
                tokio::select! {
                    () = task => {}
                    _ = rx => {}
                }
            });
            *stop = Some(tx);
        }
        &self.signal
    }

    /// Notes that a pull begins at `now` (by the inbox's clock).
    pub(crate) fn pulling(&self, now: OffsetDateTime) {
        let count = self.signal.count();
        *self.last_pull.lock().unwrap_or_else(PoisonError::into_inner) = Some((count, now));
    }

    /// Notes that a pull took all it asked for (or, Redis's, stopped at its byte budget):
    /// jobs that were due for it may be left (another pool's pull, capped by its free
    /// lanes, in this process), so a waiter must not take what was due before it for
    /// taken: the next [`last_pull`](Self::last_pull) says `None`, as before any pull,
    /// until a pull begins again.
    #[cfg(any(feature = "postgres", feature = "redis"))]
    pub(crate) fn pull_was_capped(&self) {
        *self.last_pull.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The signal count and the time when the last pull began (`None` before any pull,
    /// or after one that took all it asked for).
    pub(crate) fn last_pull(&self) -> Option<(u64, OffsetDateTime)> {
        *self.last_pull.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The common end of a durable inbox's `wait`: looks up (by `deadline` at the latest)
/// the earliest time a job becomes due, then waits for a signal on `wakes` until that
/// time or `deadline`, whichever comes first; returns at once when a job is due already.
/// A failed lookup only means the timeout bounds the wait.
pub(crate) async fn until_due_or_signalled(
    deadline: Instant,
    due: impl Future<Output = Result<Option<OffsetDateTime>, InboxError>>,
    clock: &dyn Clock,
    wakes: &mut watch::Receiver<u64>,
) {
    let due = tokio::time::timeout_at(deadline, due).await;
    let Some(until) = until(deadline, due.ok().and_then(Result::ok).flatten(), clock.now()) else {
        return;
    };
    let _ = tokio::time::timeout_at(until, wakes.changed()).await;
}

/// When a waiter that must return by `deadline` stops waiting for a signal, given the
/// earliest time `due` (by the inbox's clock, `now`) at which a job becomes due; `None`
/// when that job is due already.
pub(crate) fn until(deadline: Instant, due: Option<OffsetDateTime>, now: OffsetDateTime) -> Option<Instant> {
    let Some(due) = due else { return Some(deadline) };
    if due <= now {
        return None;
    }
    let left = Duration::try_from(due - now).unwrap_or(Duration::MAX);
    Some(Instant::now().checked_add(left).map_or(deadline, |at| at.min(deadline)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_task_ends_with_the_last_listener() {
        let listener = Background::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let signal = Arc::clone(listener.start(move |_| async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        }));
        // A second start while the task runs starts nothing.
        listener.start(|_| async { panic!("started twice") });
        drop(listener);
        assert!(rx.recv().await.is_none(), "the task (and what it held) is gone");
        drop(signal);
    }

    #[tokio::test]
    async fn a_task_that_ended_is_started_again() {
        let listener = Background::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for round in 0..2 {
            let tx = tx.clone();
            listener.start(move |_| async move {
                let _ = tx.send(round);
            });
            assert_eq!(rx.recv().await, Some(round));
            // Wait until the finished task dropped its stop receiver.
            let mut stop = listener.stop.lock().unwrap().take().unwrap();
            stop.closed().await;
            *listener.stop.lock().unwrap() = Some(stop);
        }
    }

    #[tokio::test]
    async fn subscribers_see_wake_ups_after_they_subscribed() {
        let listener = Background::new();
        let signal = Arc::clone(listener.start(|_| std::future::pending()));
        signal.wake();
        let mut rx = signal.subscribe();
        assert!(!rx.has_changed().unwrap());
        signal.wake();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 2);
        #[cfg(feature = "redis")]
        assert_eq!(signal.waiters(), 1);
        // The subscription left a demand permit.
        tokio::time::timeout(Duration::from_secs(10), signal.demanded()).await.unwrap();
    }

    #[test]
    fn until_stops_at_the_deadline_or_the_due_time() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let deadline = Instant::now() + Duration::from_secs(60);
        assert_eq!(until(deadline, None, now), Some(deadline));
        assert_eq!(until(deadline, Some(now), now), None, "due now");
        assert_eq!(until(deadline, Some(now - Duration::from_secs(1)), now), None, "overdue");
        assert_eq!(until(deadline, Some(now + Duration::from_secs(3600)), now), Some(deadline));
        let soon = until(deadline, Some(now + Duration::from_secs(5)), now).unwrap();
        assert!(soon < deadline && soon > Instant::now());
    }
}
