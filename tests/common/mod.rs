//! Shared conformance suites: every replay store and inbox backend runs the same tests
//! through one macro invocation (see `tests/backends.rs`).
#![allow(dead_code)]

use hookguard::{inbox::Webhook, verify::Verified};

/// A webhook with this id at endpoint `test`.
pub fn webhook(id: &str) -> Webhook {
    let v = Verified::new("github", Some(id.to_owned().into()), None, Some("push".into()), [0; 32], 0);
    let mut headers = http::HeaderMap::new();
    headers.insert("x-github-event", http::HeaderValue::from_static("push"));
    Webhook::new("test", &v, headers, format!("{{\"id\":\"{id}\"}}").into(), time::OffsetDateTime::UNIX_EPOCH)
}

/// Runs the inbox conformance suite. `$make` is an async fn
/// `(clock: ManualClock, capacity: usize) -> Option<impl Inbox>`; `None` means the
/// backend is not available here (the tests then say they skipped).
#[macro_export]
macro_rules! inbox_conformance {
    ($make:path) => {
        use std::time::Duration;

        use hookguard::inbox::{Inbox, InboxError, Pushed};

        const LEASE: Duration = Duration::from_secs(30);

        async fn setup(capacity: usize) -> Option<(impl Inbox, hookguard::clock::ManualClock)> {
            let clock = hookguard::clock::ManualClock::at_unix(1_700_000_000);
            $make(clock.clone(), capacity).await.map(|inbox| (inbox, clock))
        }

        macro_rules! or_skip {
            ($e:expr) => {
                match $e {
                    Some(x) => x,
                    None => {
                        eprintln!("skipped: backend not configured");
                        return;
                    }
                }
            };
        }

        #[tokio::test]
        async fn push_then_duplicate() {
            let (inbox, _) = or_skip!(setup(100).await);
            assert_eq!(inbox.push($crate::common::webhook("a")).await.unwrap(), Pushed::Accepted);
            assert_eq!(inbox.push($crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
            assert_eq!(inbox.depth().await.unwrap(), 1);
        }

        #[tokio::test]
        async fn pull_gives_the_webhook_back_unchanged_then_ack_removes_it() {
            let (inbox, _) = or_skip!(setup(100).await);
            let sent = $crate::common::webhook("a");
            inbox.push(sent.clone()).await.unwrap();
            let jobs = inbox.pull(10, LEASE).await.unwrap();
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].attempt(), 1);
            let got = jobs[0].webhook();
            assert_eq!(got.key(), sent.key());
            assert_eq!(got.body(), sent.body());
            assert_eq!(got.event(), Some("push"));
            assert_eq!(got.headers().get("x-github-event").unwrap(), "push");
            assert!(inbox.pull(10, LEASE).await.unwrap().is_empty(), "leased jobs are not handed out twice");
            inbox.ack(&jobs[0]).await.unwrap();
            assert_eq!(inbox.depth().await.unwrap(), 0);
            // A late resend of a processed delivery is still a duplicate.
            assert_eq!(inbox.push(sent).await.unwrap(), Pushed::Duplicate);
        }

        #[tokio::test]
        async fn expired_lease_brings_the_job_back() {
            let (inbox, clock) = or_skip!(setup(100).await);
            inbox.push($crate::common::webhook("a")).await.unwrap();
            let first = inbox.pull(1, LEASE).await.unwrap();
            assert_eq!(first.len(), 1);
            clock.advance(LEASE + Duration::from_secs(1));
            let again = inbox.pull(1, LEASE).await.unwrap();
            assert_eq!(again.len(), 1, "a crashed worker's job comes back");
            assert_eq!(again[0].attempt(), 2);
            // The first worker's late ack is refused: its lease is gone.
            assert!(matches!(inbox.ack(&first[0]).await, Err(InboxError::LeaseLost)));
            inbox.ack(&again[0]).await.unwrap();
            assert_eq!(inbox.depth().await.unwrap(), 0);
        }

        #[tokio::test]
        async fn retries_wait_for_their_time_and_keep_order() {
            let (inbox, clock) = or_skip!(setup(100).await);
            for id in ["a", "b", "c"] {
                inbox.push($crate::common::webhook(id)).await.unwrap();
            }
            let jobs = inbox.pull(3, LEASE).await.unwrap();
            assert_eq!(jobs.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["a", "b", "c"]);
            let now = clock.now_for_tests();
            inbox.retry(&jobs[0], now + Duration::from_secs(20), "boom").await.unwrap();
            inbox.retry(&jobs[1], now + Duration::from_secs(10), "boom").await.unwrap();
            inbox.ack(&jobs[2]).await.unwrap();
            assert!(inbox.pull(10, LEASE).await.unwrap().is_empty(), "not due yet");
            clock.advance(Duration::from_secs(10));
            let due = inbox.pull(10, LEASE).await.unwrap();
            assert_eq!(due.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["b"]);
            assert_eq!(due[0].attempt(), 2);
            clock.advance(Duration::from_secs(10));
            let due = inbox.pull(10, LEASE).await.unwrap();
            assert_eq!(due.iter().map(|j| j.webhook().id().unwrap()).collect::<Vec<_>>(), ["a"]);
        }

        #[tokio::test]
        async fn dead_letters_are_listed_and_redriven() {
            let (inbox, _) = or_skip!(setup(100).await);
            inbox.push($crate::common::webhook("a")).await.unwrap();
            let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
            inbox.dead_letter(&job, "handler said no").await.unwrap();
            assert_eq!(inbox.depth().await.unwrap(), 0);
            assert!(inbox.pull(1, LEASE).await.unwrap().is_empty());
            let dead = inbox.dead_letters(10).await.unwrap();
            assert_eq!(dead.len(), 1);
            assert_eq!(dead[0].webhook.id(), Some("a"));
            assert_eq!(dead[0].attempts, 1);
            assert_eq!(dead[0].error, "handler said no");
            // A resend of a dead-lettered delivery is a duplicate: it is kept already.
            assert_eq!(inbox.push($crate::common::webhook("a")).await.unwrap(), Pushed::Duplicate);
            assert!(inbox.redrive(job.webhook().key()).await.unwrap());
            assert!(!inbox.redrive("no-such-key").await.unwrap());
            assert!(inbox.dead_letters(10).await.unwrap().is_empty());
            let again = inbox.pull(1, LEASE).await.unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].attempt(), 1, "a re-driven job starts its attempts again");
        }

        #[tokio::test]
        async fn bounded_depth_answers_full() {
            let (inbox, _) = or_skip!(setup(2).await);
            inbox.push($crate::common::webhook("a")).await.unwrap();
            inbox.push($crate::common::webhook("b")).await.unwrap();
            assert!(matches!(inbox.push($crate::common::webhook("c")).await, Err(InboxError::Full)));
            let job = inbox.pull(1, LEASE).await.unwrap().remove(0);
            inbox.ack(&job).await.unwrap();
            assert_eq!(inbox.push($crate::common::webhook("c")).await.unwrap(), Pushed::Accepted);
        }

        #[tokio::test]
        async fn concurrent_pushes_of_one_delivery_keep_it_once() {
            let (inbox, _) = or_skip!(setup(100).await);
            let inbox = std::sync::Arc::new(inbox);
            let mut tasks = Vec::new();
            for _ in 0..50 {
                let inbox = std::sync::Arc::clone(&inbox);
                tasks.push(tokio::spawn(async move { inbox.push($crate::common::webhook("same")).await.unwrap() }));
            }
            let mut accepted = 0;
            for t in tasks {
                if t.await.unwrap() == Pushed::Accepted {
                    accepted += 1;
                }
            }
            assert_eq!(accepted, 1);
            assert_eq!(inbox.depth().await.unwrap(), 1);
        }
    };
}

/// Runs the replay-store conformance suite. `$make` is an async fn
/// `(clock: ManualClock, capacity: usize) -> Option<impl ReplayStore>`.
#[macro_export]
macro_rules! replay_conformance {
    ($make:path) => {
        use std::time::Duration;

        use hookguard::replay::{Mark, ReplayStore, StoreError};

        async fn setup(capacity: usize) -> Option<(impl ReplayStore, hookguard::clock::ManualClock)> {
            let clock = hookguard::clock::ManualClock::at_unix(1_700_000_000);
            $make(clock.clone(), capacity).await.map(|store| (store, clock))
        }

        fn key(name: &str) -> Vec<u8> {
            format!("conformance:{}:{name}", std::process::id()).into_bytes()
        }

        #[tokio::test]
        async fn mark_once_then_seen_until_expiry() {
            let Some((store, clock)) = setup(100).await else {
                eprintln!("skipped: backend not configured");
                return;
            };
            let k = key("expiry");
            let _ = store.unmark(&k).await;
            assert_eq!(store.mark(&k, Duration::from_secs(60)).await.unwrap(), Mark::New);
            assert_eq!(store.mark(&k, Duration::from_secs(60)).await.unwrap(), Mark::Seen);
            clock.advance(Duration::from_secs(61));
            assert_eq!(
                store.mark(&k, Duration::from_secs(60)).await.unwrap(),
                Mark::New,
                "expired marks are gone"
            );
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn unmark_lets_a_retry_through() {
            let Some((store, _)) = setup(100).await else {
                eprintln!("skipped: backend not configured");
                return;
            };
            let k = key("unmark");
            let _ = store.unmark(&k).await;
            assert_eq!(store.mark(&k, Duration::from_secs(60)).await.unwrap(), Mark::New);
            store.unmark(&k).await.unwrap();
            assert_eq!(store.mark(&k, Duration::from_secs(60)).await.unwrap(), Mark::New);
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn concurrent_marks_have_one_winner() {
            let Some((store, _)) = setup(1000).await else {
                eprintln!("skipped: backend not configured");
                return;
            };
            let store = std::sync::Arc::new(store);
            let k = key("race");
            let _ = store.unmark(&k).await;
            let mut tasks = Vec::new();
            for _ in 0..50 {
                let store = std::sync::Arc::clone(&store);
                let k = k.clone();
                tasks.push(tokio::spawn(
                    async move { store.mark(&k, Duration::from_secs(60)).await.unwrap() },
                ));
            }
            let mut new = 0;
            for t in tasks {
                if t.await.unwrap() == Mark::New {
                    new += 1;
                }
            }
            assert_eq!(new, 1);
            store.unmark(&k).await.unwrap();
        }

        #[tokio::test]
        async fn capacity_is_bounded_and_expired_entries_make_room() {
            let Some((store, clock)) = setup(32).await else {
                eprintln!("skipped: backend not configured");
                return;
            };
            let mut full = false;
            for i in 0..10_000 {
                match store.mark(&key(&format!("cap{i}")), Duration::from_secs(10)).await {
                    Ok(_) => {}
                    Err(StoreError::Full) => {
                        full = true;
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            if full {
                clock.advance(Duration::from_secs(11));
                assert_eq!(store.mark(&key("after"), Duration::from_secs(10)).await.unwrap(), Mark::New);
            }
        }
    };
}
