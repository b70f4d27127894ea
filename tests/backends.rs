//! The replay-store and inbox conformance suites, run against every backend.

#[macro_use]
mod common;

mod memory_inbox {
    use hookguard::{clock::ManualClock, inbox::MemoryInbox};

    async fn make(clock: ManualClock, capacity: usize) -> Option<MemoryInbox> {
        Some(MemoryInbox::new().capacity(capacity).clock(clock))
    }

    inbox_conformance!(make);
}

mod memory_replay {
    use hookguard::{clock::ManualClock, replay::MemoryReplayStore};

    async fn make(clock: ManualClock, capacity: usize) -> Option<MemoryReplayStore> {
        Some(MemoryReplayStore::new().capacity(capacity).clock(clock))
    }

    replay_conformance!(make);

    #[tokio::test]
    async fn memory_stays_bounded_under_many_keys() {
        let store = MemoryReplayStore::new().capacity(1_000);
        let mut refused = 0;
        for i in 0..100_000 {
            if store.mark(format!("k{i}").as_bytes(), Duration::from_secs(3600)).await.is_err() {
                refused += 1;
            }
        }
        assert!(store.len() <= 1_008, "held {}", store.len());
        assert!(refused > 0);
    }
}
