//! Counters through the `metrics` facade: accepted, rejected by reason, duplicates,
//! retries, dead-lettered, processed, and the inbox depth gauge.

#![cfg(feature = "tower")]

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use hookguard::{
    guard::Guard,
    inbox::{Inbox, MemoryInbox, Webhook},
    providers::github,
    verify::{Outgoing, Sign},
    worker::{Backoff, Worker},
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// A GitHub guard (secret `s`) keeping into a fresh memory inbox.
fn github_guard() -> (MemoryInbox, Guard) {
    let inbox = MemoryInbox::new();
    let guard = Guard::builder("github", github::scheme("s").unwrap()).inbox(inbox.clone()).build();
    (inbox, guard)
}

fn signed(body: &'static [u8], id: &str) -> http::request::Parts {
    let scheme = github::scheme("s").unwrap();
    let mut req = http::Request::post("/hooks/github").header("x-github-delivery", id);
    for (n, v) in scheme.sign(&Outgoing::new(body)).unwrap() {
        req = req.header(n, v);
    }
    req.body(()).unwrap().into_parts().0
}

/// Runs `run` on a current-thread runtime with a recorder of its own, and answers every
/// counter's total, named `name` or `name:reason` when it has a reason label.
fn counted<F: std::future::Future<Output = ()>>(run: impl FnOnce() -> F) -> HashMap<String, u64> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run());
    });
    let mut counters: HashMap<String, u64> = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            let labels: Vec<String> =
                key.key().labels().filter(|l| l.key() == "reason").map(|l| l.value().to_owned()).collect();
            let name = if labels.is_empty() {
                key.key().name().to_owned()
            } else {
                format!("{}:{}", key.key().name(), labels.join(","))
            };
            *counters.entry(name).or_default() += n;
        }
    }
    counters
}

/// A verified delivery a guard without an inbox cannot keep is a `503` like a full
/// inbox's, and counted as one (`inbox-unavailable`), not left out of the counters.
#[test]
fn a_guard_without_an_inbox_counts_its_503() {
    let counters = counted(|| async {
        let guard = Guard::builder("github", github::scheme("s").unwrap()).build();
        assert_eq!(guard.accept(&signed(b"{}", "a"), Bytes::from_static(b"{}")).await.status(), 503);
    });
    assert_eq!(counters.get("hookguard_rejected_total:inbox-unavailable"), Some(&1), "{counters:?}");
}

#[test]
fn counters_follow_the_pipeline() {
    let counters = counted(|| async {
        let (inbox, guard) = github_guard();
        assert_eq!(guard.accept(&signed(b"{}", "a"), Bytes::from_static(b"{}")).await.status(), 202);
        assert_eq!(guard.accept(&signed(b"{}", "a"), Bytes::from_static(b"{}")).await.status(), 200);
        let forged = http::Request::post("/").body(()).unwrap().into_parts().0;
        assert_eq!(guard.accept(&forged, Bytes::from_static(b"{}")).await.status(), 401);

        // One failure, then success: one retry, one processed.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let worker = Worker::new(inbox.clone(), move |_hook: Webhook| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                let _ = tx.send(n);
                if n == 0 { Err("first attempt fails") } else { Ok(()) }
            }
        })
        .backoff(Backoff::new(Duration::ZERO, Duration::ZERO).without_jitter())
        .idle_poll(Duration::from_millis(5))
        .spawn();
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        }
        // Wait until the ack landed.
        tokio::time::timeout(Duration::from_secs(10), async {
            while inbox.depth().await.unwrap() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        worker.shutdown(Duration::from_secs(5)).await;
    });
    let want = [
        ("hookguard_accepted_total", 1),
        ("hookguard_duplicates_total", 1),
        ("hookguard_rejected_total:missing-signature", 1),
        ("hookguard_retries_total", 1),
        ("hookguard_processed_total", 1),
    ];
    for (name, n) in want {
        assert_eq!(counters.get(name).copied(), Some(n), "{name} in {counters:?}");
    }
}

#[test]
fn dead_letters_are_counted() {
    let counters = counted(|| async {
        let (inbox, guard) = github_guard();
        assert_eq!(guard.accept(&signed(b"{}", "x"), Bytes::from_static(b"{}")).await.status(), 202);
        let worker = Worker::new(inbox.clone(), |_hook: Webhook| async { Err::<(), _>("always fails") })
            .max_attempts(2)
            .backoff(Backoff::new(Duration::ZERO, Duration::ZERO).without_jitter())
            .idle_poll(Duration::from_millis(5))
            .spawn();
        tokio::time::timeout(Duration::from_secs(10), async {
            while inbox.dead_letters(1).await.unwrap().is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        worker.shutdown(Duration::from_secs(5)).await;
    });
    assert_eq!(counters.get("hookguard_dead_lettered_total").copied(), Some(1), "{counters:?}");
}

/// Middleware mode: a copy that finds another request's reservation is counted as
/// rejected for `delivery-in-progress`; once the first is confirmed, a copy is a duplicate.
#[test]
fn reservations_in_progress_and_duplicates_are_counted() {
    use hookguard::guard::Reserved;
    let counters = counted(|| async {
        let guard = Guard::builder("github", github::scheme("s").unwrap()).build();
        let body = Bytes::from_static(b"{}");
        let Reserved::Fresh { reservation, .. } = guard.reserve(&signed(b"{}", "held"), &body).await else {
            panic!("the first copy is reserved");
        };
        let Reserved::Respond(busy) = guard.reserve(&signed(b"{}", "held"), &body).await else {
            panic!("a copy while the first is handled is answered");
        };
        assert_eq!(busy.status(), 409);
        reservation.finish(http::StatusCode::OK).await;
        let Reserved::Respond(dup) = guard.reserve(&signed(b"{}", "held"), &body).await else {
            panic!("a copy after the first succeeded is answered");
        };
        assert_eq!(dup.status(), 200);
    });
    assert_eq!(
        counters.get("hookguard_rejected_total:delivery-in-progress").copied(),
        Some(1),
        "{counters:?}"
    );
    assert_eq!(counters.get("hookguard_duplicates_total").copied(), Some(1), "{counters:?}");
}

/// Refusals that come before verification are counted too: a tenant nobody registered, a
/// handshake that would replace a secret.
#[test]
fn unknown_tenants_and_refused_handshakes_are_counted() {
    use hookguard::{
        Secret, handshake::AsanaHookSecret, providers::asana, tenant::TenantSchemes, verify::Scheme,
    };
    let counters = counted(|| async {
        let source = TenantSchemes::new(
            TenantSchemes::path_segment(2),
            |tenant: String| async move {
                Ok::<_, std::io::Error>((tenant == "acme").then(|| vec![Secret::new("s").unwrap()]))
            },
            |secrets: &[Secret]| {
                Ok(std::sync::Arc::new(asana::scheme(secrets[0].expose())?) as std::sync::Arc<dyn Scheme>)
            },
        )
        .store(|_tenant: String, _secret: Secret| async { Ok::<_, std::io::Error>(()) });
        let guard = Guard::builder_with_source("asana", source).handshake(AsanaHookSecret).build();
        let post = |uri: &str, secret: Option<&str>| {
            let mut req = http::Request::post(uri);
            if let Some(secret) = secret {
                req = req.header("x-hook-secret", secret);
            }
            req.body(()).unwrap().into_parts().0
        };
        let nobody = guard.accept(&post("/hooks/nobody", None), Bytes::from_static(b"{}")).await;
        assert_eq!(nobody.status(), 404);
        let replace =
            guard.accept(&post("/hooks/acme", Some("planted-secret-0123456789")), Bytes::new()).await;
        assert_eq!(replace.status(), 403);
    });
    for (name, n) in
        [("hookguard_rejected_total:unknown-endpoint", 1), ("hookguard_rejected_total:handshake-refused", 1)]
    {
        assert_eq!(counters.get(name).copied(), Some(n), "{name} in {counters:?}");
    }
}

/// A named pool's depth gauge carries its inbox's name, so that pools on two inboxes
/// in one process keep a gauge each; an unnamed one stays unlabelled.
#[test]
fn the_depth_gauge_is_labelled_by_the_pools_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let ok = |_hook: Webhook| async { Ok::<(), std::convert::Infallible>(()) };
            let (payments, orders) = (MemoryInbox::new(), MemoryInbox::new());
            for inbox in [&payments, &orders] {
                let v =
                    hookguard::verify::Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
                let hook = Webhook::new(
                    "github",
                    &v,
                    Default::default(),
                    "{}".into(),
                    time::OffsetDateTime::UNIX_EPOCH,
                );
                inbox.push(hook).await.unwrap();
            }
            let named = Worker::new(payments.clone(), ok).name("payments").spawn();
            let unnamed = Worker::new(orders.clone(), ok).spawn();
            // Each pool sets its gauge when it pulls; once drained, both have pulled.
            assert_eq!(named.drain(Duration::from_secs(5)).await.left, Some(0));
            assert_eq!(unnamed.drain(Duration::from_secs(5)).await.left, Some(0));
        });
    });
    let mut gauges: Vec<Vec<(String, String)>> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "hookguard_inbox_depth")
        .map(|(key, ..)| key.key().labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect())
        .collect();
    gauges.sort();
    assert_eq!(gauges, vec![vec![], vec![("inbox".to_owned(), "payments".to_owned())]]);
}
