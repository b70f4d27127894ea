//! The framework-free pipeline: handshakes, per-tenant secrets, statuses, replay marks.

#![cfg(feature = "tower")]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hookguard::{
    Secret,
    clock::ManualClock,
    guard::{Checked, Guard, Reserved},
    handshake::{AsanaHookSecret, DropboxChallenge, MetaSubscription, SlackUrlVerification},
    inbox::{Inbox, MemoryInbox},
    providers::{asana, bitbucket, dropbox, github, meta, shopify, slack, standard_webhooks},
    replay::{BoxFuture as ReplayFuture, Mark, MemoryReplayStore, ReplayStore, StoreError},
    tenant::TenantSchemes,
    verify::{Outgoing, Reason, Scheme, Sign},
};
use http::{Request, StatusCode, request::Parts};
use time::OffsetDateTime;

fn parts_of(req: Request<()>) -> Parts {
    req.into_parts().0
}

/// A POST carrying the headers `scheme` signs `body` with.
fn signed(scheme: &impl Sign, uri: &str, body: &[u8], now: time::OffsetDateTime, id: &str) -> Parts {
    let mut req = Request::post(uri);
    for (name, value) in scheme.sign(&Outgoing::new(body).timestamp(now).id(id)).unwrap() {
        req = req.header(name, value);
    }
    parts_of(req.body(()).unwrap())
}

#[tokio::test]
async fn slack_url_verification_is_answered_after_verification_and_not_queued() {
    let clock = ManualClock::at_unix(1_700_000_000);
    let now = clock.now_for_tests();
    let inbox = MemoryInbox::new();
    let scheme = slack::scheme("slack-signing-secret").unwrap();
    let guard = Guard::builder("slack", scheme.clone())
        .clock(clock)
        .inbox(inbox.clone())
        .handshake(SlackUrlVerification)
        .build();
    let body = br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let res = guard.accept(&signed(&scheme, "/hooks/slack", body, now, "x"), Bytes::from_static(body)).await;
    assert_eq!(res.status(), 200);
    assert!(
        String::from_utf8_lossy(res.body()).contains("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    );
    assert_eq!(inbox.depth().await.unwrap(), 0, "a handshake is not a delivery");
    // The same body unsigned is refused: the challenge is only answered for Slack.
    let unsigned = parts_of(Request::post("/hooks/slack").body(()).unwrap());
    assert_eq!(guard.accept(&unsigned, Bytes::from_static(body)).await.status(), 401);
}

#[tokio::test]
async fn get_challenges_are_answered_before_verification() {
    let dropbox_guard =
        Guard::builder("dropbox", dropbox::scheme("app-secret").unwrap()).handshake(DropboxChallenge).build();
    let res = dropbox_guard
        .accept(&parts_of(Request::get("/hooks/dropbox?challenge=abc123").body(()).unwrap()), Bytes::new())
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), b"abc123");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");

    let meta_guard = Guard::builder("meta", meta::scheme("app-secret").unwrap())
        .handshake(MetaSubscription::new("verify-me").unwrap())
        .build();
    let ok = "/hooks/meta?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444";
    let res = meta_guard.accept(&parts_of(Request::get(ok).body(()).unwrap()), Bytes::new()).await;
    assert_eq!((res.status(), res.body().as_slice()), (StatusCode::OK, &b"1158201444"[..]));
    let bad = "/hooks/meta?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1158201444";
    let res = meta_guard.accept(&parts_of(Request::get(bad).body(()).unwrap()), Bytes::new()).await;
    assert_eq!(res.status(), 403);
    assert!(!String::from_utf8_lossy(res.body()).contains("verify-me"));
    // A guess is a failed verification: a problem, marked for the failure budget.
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(String::from_utf8_lossy(res.body()).contains("handshake-refused"));
    assert_eq!(
        res.extensions().get::<hookguard::guard::VerificationFailed>(),
        Some(&hookguard::guard::VerificationFailed(Reason::SignatureMismatch))
    );
}

/// Zoom's validation answer is a MAC of the sender's text, and Zoom's event signatures are
/// the same MAC: keyed with anything but the secret that verified the request, it would
/// sign events for whoever holds a secret being rotated out, or another tenant's.
#[tokio::test]
async fn zoom_validation_is_answered_with_the_secret_that_verified_it() {
    use hookguard::{handshake::ZoomUrlValidation, providers::zoom};
    let clock = ManualClock::at_unix(1_700_000_000);
    let now = clock.now_for_tests();
    let validation = |token: &str| {
        serde_json::to_vec(
            &serde_json::json!({"event": "endpoint.url_validation", "payload": {"plainToken": token}}),
        )
        .unwrap()
    };
    let forged = br#"{"event":"meeting.deleted","payload":{}}"#;
    let token = format!("v0:1700000000:{}", std::str::from_utf8(forged).unwrap());
    let encrypted = |res: &http::Response<Vec<u8>>| {
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        v["encryptedToken"].as_str().unwrap().to_owned()
    };
    // The forged event, "signed" with an answer.
    let event_with = |signature: &str| {
        parts_of(
            Request::post("/hooks/zoom")
                .header("x-zm-request-timestamp", "1700000000")
                .header("x-zm-signature", format!("v0={signature}"))
                .body(())
                .unwrap(),
        )
    };

    // A rotation: "new" signs, "old" may still verify, and the attacker holds "old".
    let rotating = zoom::scheme("new").unwrap().with_secret("old").unwrap();
    let inbox = MemoryInbox::new();
    let guard = Guard::builder("zoom", rotating.clone())
        .handshake(ZoomUrlValidation::new(rotating))
        .inbox(inbox.clone())
        .clock(clock.clone())
        .build();
    let body = validation(&token);
    let old = zoom::scheme("old").unwrap();
    let res = guard.accept(&signed(&old, "/hooks/zoom", &body, now, "v-1"), Bytes::from(body.clone())).await;
    assert_eq!(res.status(), 200);
    let answer = encrypted(&res);
    let current =
        Guard::builder("zoom", zoom::scheme("new").unwrap()).inbox(inbox.clone()).clock(clock).build();
    let res = current.accept(&event_with(&answer), Bytes::from_static(forged)).await;
    assert_eq!(res.status(), 401, "the answer signs nothing under the current secret");
    assert_eq!(inbox.depth().await.unwrap(), 0);

    // Tenants, with one handshake for all: a tenant's validation is not answered under
    // the handshake's secret.
    let source = TenantSchemes::new(
        TenantSchemes::path_segment(2),
        |tenant: String| async move {
            Ok::<_, std::io::Error>(match tenant.as_str() {
                "acme" => Some(vec![Secret::new("acme-secret").unwrap()]),
                _ => None,
            })
        },
        |secrets: &[Secret]| zoom::scheme(secrets[0].expose()).map(|s| Arc::new(s) as Arc<dyn Scheme>),
    );
    let shared = zoom::scheme("shared-secret").unwrap();
    let tenants = Guard::builder_with_source("zoom", source)
        .handshake(ZoomUrlValidation::new(shared))
        .inbox(inbox.clone())
        .build();
    let acme = zoom::scheme("acme-secret").unwrap();
    let body = validation("qgg8vlvZRS6UYooatFL8Aw");
    let at = OffsetDateTime::now_utc();
    let res = tenants.accept(&signed(&acme, "/hooks/acme", &body, at, "v-2"), Bytes::from(body)).await;
    assert_eq!(res.status(), 403, "{}", String::from_utf8_lossy(res.body()));
    assert!(String::from_utf8_lossy(res.body()).contains("handshake-refused"));
    assert_eq!(inbox.depth().await.unwrap(), 0, "nor handed off as an event");
}

/// Standard Webhooks with `secret` as its key: a scheme that signs its delivery id, so that
/// the id is the replay key (GitHub signs the body only: its deliveries are keyed by their
/// signature).
fn sw(secret: impl AsRef<[u8]>) -> Result<hookguard::verify::HmacScheme, hookguard::ConfigError> {
    use base64::Engine as _;
    standard_webhooks::scheme(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(secret)))
}

/// A scheme that signs its delivery id (see [`sw`]).
fn signed_id_build(secrets: &[Secret]) -> Result<Arc<dyn Scheme>, hookguard::ConfigError> {
    let mut scheme = sw(secrets[0].expose())?;
    for s in &secrets[1..] {
        scheme = scheme.with_secret(s.expose())?;
    }
    Ok(Arc::new(scheme))
}

#[tokio::test]
async fn tenant_secrets_are_loaded_once_and_cached() {
    let loads = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&loads);
    let clock = ManualClock::at_unix(1_700_000_000);
    let source = TenantSchemes::new(
        TenantSchemes::path_segment(2),
        move |tenant: String| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, std::io::Error>(match tenant.as_str() {
                    "acme" => Some(vec![Secret::new("acme-secret").unwrap()]),
                    "globex" => Some(vec![Secret::new("globex-secret").unwrap()]),
                    _ => None,
                })
            }
        },
        signed_id_build,
    )
    .ttl(Duration::from_secs(60))
    .clock(clock.clone());
    let inbox = MemoryInbox::new();
    let guard =
        Guard::builder_with_source("github", source).clock(clock.clone()).inbox(inbox.clone()).build();
    let acme = sw("acme-secret").unwrap();
    let globex = sw("globex-secret").unwrap();
    let now = clock.now_for_tests();

    let cases = [
        ("acme signs for acme", "/hooks/acme", &acme, "d1", 202),
        ("acme again, cached", "/hooks/acme", &acme, "d2", 202),
        ("globex signs for globex", "/hooks/globex", &globex, "d3", 202),
        ("acme's signature on globex", "/hooks/globex", &acme, "d4", 401),
        ("unknown tenant", "/hooks/initech", &acme, "d5", 404),
        ("unknown tenant again, cached", "/hooks/initech", &acme, "d6", 404),
    ];
    for (name, uri, scheme, id, want) in cases {
        let mut parts = signed(scheme, uri, b"{}", now, id);
        parts.headers.insert("x-github-delivery", id.parse().unwrap());
        let res = guard.accept(&parts, Bytes::from_static(b"{}")).await;
        assert_eq!(res.status(), want, "case {name}");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 3, "acme, globex and initech each loaded once");
    clock.advance(Duration::from_secs(61));
    let mut parts = signed(&acme, "/hooks/acme", b"{}", now, "d7");
    parts.headers.insert("x-github-delivery", "d7".parse().unwrap());
    assert_eq!(guard.accept(&parts, Bytes::from_static(b"{}")).await.status(), 202);
    assert_eq!(loads.load(Ordering::SeqCst), 4, "expired cache entries are loaded again");
}

#[tokio::test]
async fn two_tenants_deliveries_with_the_same_id_are_both_kept() {
    let source = TenantSchemes::new(
        TenantSchemes::path_segment(2),
        |tenant: String| async move {
            Ok::<_, std::io::Error>(match tenant.as_str() {
                "acme" => Some(vec![Secret::new("acme-secret").unwrap()]),
                "globex" => Some(vec![Secret::new("globex-secret").unwrap()]),
                // A tenant whose name holds the key's separator.
                "acme:4:x" => Some(vec![Secret::new("odd-secret").unwrap()]),
                _ => None,
            })
        },
        signed_id_build,
    );
    let inbox = MemoryInbox::new();
    let guard = Guard::builder_with_source("github", source).inbox(inbox.clone()).build();
    let now = time::OffsetDateTime::now_utc();
    let deliver = |tenant: &str, secret: &str, id: &str| {
        let mut parts = signed(&sw(secret).unwrap(), &format!("/hooks/{tenant}"), b"{}", now, id);
        parts.headers.insert("x-github-delivery", id.parse().unwrap());
        parts
    };
    let cases = [
        ("acme's d-1", deliver("acme", "acme-secret", "d-1"), 202),
        ("globex's d-1: another sender's delivery", deliver("globex", "globex-secret", "d-1"), 202),
        ("acme's d-1 again: a copy", deliver("acme", "acme-secret", "d-1"), 200),
        ("globex's d-1 again: a copy", deliver("globex", "globex-secret", "d-1"), 200),
        // `acme` with id `x:...` and `acme:4:x` with id `...` must not share a key.
        ("acme's x:4:acme:d-2", deliver("acme", "acme-secret", "x:4:acme:d-2"), 202),
        ("acme:4:x's d-2", deliver("acme:4:x", "odd-secret", "d-2"), 202),
    ];
    for (name, parts, want) in cases {
        assert_eq!(guard.accept(&parts, Bytes::from_static(b"{}")).await.status(), want, "{name}");
    }
    let mut keys = Vec::new();
    while let Some(job) = inbox.pull(1, Duration::from_secs(60)).await.unwrap().pop() {
        keys.push(job.webhook().key().to_owned());
        assert_eq!(job.webhook().endpoint(), "github", "the endpoint stays the endpoint");
        inbox.ack(&job).await.unwrap();
    }
    keys.sort();
    assert_eq!(
        keys,
        ["github:4:acme:d-1", "github:4:acme:x:4:acme:d-2", "github:6:globex:d-1", "github:8:acme:4:x:d-2"]
    );
}

#[tokio::test]
async fn asana_handshake_stores_a_secret_once_and_never_replaces_it() {
    let store: Arc<Mutex<std::collections::HashMap<String, Secret>>> = Arc::default();
    let (load_store, save_store) = (Arc::clone(&store), Arc::clone(&store));
    let source = TenantSchemes::new(
        TenantSchemes::path_segment(2),
        move |tenant: String| {
            let secret = load_store.lock().unwrap().get(&tenant).cloned();
            // `project-1` was registered by the application and awaits its handshake.
            let known = tenant == "project-1";
            async move {
                Ok::<_, std::io::Error>(match secret {
                    Some(s) => Some(vec![s]),
                    None => known.then(Vec::new),
                })
            }
        },
        |secrets: &[Secret]| Ok(Arc::new(asana::scheme(secrets[0].expose())?) as Arc<dyn Scheme>),
    )
    .store(move |tenant: String, secret: Secret| {
        save_store.lock().unwrap().insert(tenant, secret);
        async { Ok::<_, std::io::Error>(()) }
    });
    let inbox = MemoryInbox::new();
    let guard =
        Guard::builder_with_source("asana", source).inbox(inbox.clone()).handshake(AsanaHookSecret).build();

    // A tenant the application never registered cannot be created by a handshake.
    let stranger = parts_of(
        Request::post("/hooks/project-9")
            .header("x-hook-secret", "planted-secret-0123456789")
            .body(())
            .unwrap(),
    );
    let res = guard.accept(&stranger, Bytes::new()).await;
    assert_eq!(res.status(), 404);
    assert!(res.headers().get("x-hook-secret").is_none());
    assert!(store.lock().unwrap().is_empty());

    // Asana sends its handshake as a POST: on any other method the header is no handshake.
    for method in [http::Method::GET, http::Method::HEAD, http::Method::PUT] {
        let req = Request::builder().method(method.clone()).uri("/hooks/project-1");
        let other = parts_of(req.header("x-hook-secret", "planted-secret-0123456789").body(()).unwrap());
        let res = guard.accept(&other, Bytes::new()).await;
        assert_ne!(res.status(), 200, "{method}");
        assert!(res.headers().get("x-hook-secret").is_none(), "{method}");
        assert!(store.lock().unwrap().is_empty(), "{method}: nothing stored");
    }

    // A value that is no key Asana would hand over (too short, too long, not visible
    // ASCII) is no handshake: nothing is adopted for the tenant awaiting its handshake.
    let long = "k".repeat(10 * 1024);
    for value in ["a", long.as_str(), "clé-secrète-0123456789"] {
        let odd =
            parts_of(Request::post("/hooks/project-1").header("x-hook-secret", value).body(()).unwrap());
        let res = guard.accept(&odd, Bytes::new()).await;
        assert_eq!(res.status(), 404, "{value:.16}");
        assert!(res.headers().get("x-hook-secret").is_none(), "{value:.16}");
        assert!(store.lock().unwrap().is_empty(), "{value:.16}: nothing stored");
    }

    let hello = parts_of(
        Request::post("/hooks/project-1")
            .header("x-hook-secret", "first-secret-0123456789")
            .body(())
            .unwrap(),
    );
    let res = guard.accept(&hello, Bytes::new()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-hook-secret"], "first-secret-0123456789");
    assert!(store.lock().unwrap().contains_key("project-1"));

    // Deliveries signed with the adopted secret are accepted.
    let scheme = asana::scheme("first-secret-0123456789").unwrap();
    let now = time::OffsetDateTime::now_utc();
    let delivery = signed(&scheme, "/hooks/project-1", br#"{"events":[]}"#, now, "x");
    assert_eq!(guard.accept(&delivery, Bytes::from_static(br#"{"events":[]}"#)).await.status(), 202);

    // A second handshake may not replace the secret.
    let evil = parts_of(
        Request::post("/hooks/project-1")
            .header("x-hook-secret", "attacker-secret-0123456789")
            .body(())
            .unwrap(),
    );
    let res = guard.accept(&evil, Bytes::new()).await;
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("x-hook-secret").is_none());
    // A takeover attempt: it spends the sender's failure budget, as a forged signature does.
    assert!(res.extensions().get::<hookguard::guard::VerificationFailed>().is_some());
    assert_eq!(store.lock().unwrap()["project-1"].expose(), b"first-secret-0123456789");
}

/// A fixed scheme keeps no handed-over secret: Asana's handshake is refused for good
/// (`403 handshake-refused`, no `Retry-After`), not answered as a secrets outage (`503`)
/// that anyone could trigger and that a retry would not change.
#[tokio::test]
async fn a_fixed_scheme_refuses_asanas_handshake_for_good() {
    let guard =
        Guard::builder("asana", asana::scheme("configured").unwrap()).handshake(AsanaHookSecret).build();
    let hello = parts_of(
        Request::post("/hooks/asana").header("x-hook-secret", "new-secret-0123456789").body(()).unwrap(),
    );
    let res = guard.accept(&hello, Bytes::new()).await;
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("retry-after").is_none());
    assert!(res.headers().get("x-hook-secret").is_none(), "not echoed: the secret was not kept");
    let problem: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(problem["type"], "https://hookguard.dev/problems/handshake-refused");
}

#[tokio::test]
async fn statuses_are_configurable_and_problems_are_stable() {
    let guard = Guard::builder("github", github::scheme("s").unwrap())
        .status_for(Reason::SignatureMismatch, StatusCode::FORBIDDEN)
        .inbox(MemoryInbox::new())
        .build();
    let parts = parts_of(
        Request::post("/")
            .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
            .body(())
            .unwrap(),
    );
    let res = guard.accept(&parts, Bytes::from_static(b"{}")).await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body["type"], "https://hookguard.dev/problems/signature-mismatch");
    assert_eq!(body["status"], 403);
}

#[tokio::test]
async fn declared_length_over_the_limit_is_refused_before_anything_else() {
    let inbox = MemoryInbox::new();
    let guard =
        Guard::builder("github", github::scheme("s").unwrap()).body_limit(16).inbox(inbox.clone()).build();
    let parts = parts_of(Request::post("/").header("content-length", "17").body(()).unwrap());
    let res = guard.accept(&parts, Bytes::new()).await;
    assert_eq!(res.status(), 413);
    assert_eq!(inbox.depth().await.unwrap(), 0);
}

/// Whether `check` found the delivery fresh; its mark is kept (as a caller that kept
/// the delivery by its own means does).
fn kept(checked: Checked) -> bool {
    match checked {
        Checked::New { mark, .. } => {
            mark.keep();
            true
        }
        _ => false,
    }
}

#[tokio::test]
async fn the_default_replay_store_follows_the_guards_clock() {
    let clock = ManualClock::at_unix(1_700_000_000);
    let guard = Guard::builder("github", github::scheme("s").unwrap())
        .clock(clock.clone())
        .replay_ttl(Duration::from_secs(60))
        .build();
    let scheme = github::scheme("s").unwrap();
    let parts = signed(&scheme, "/", b"{}", clock.now_for_tests(), "d");
    let body = Bytes::from_static(b"{}");
    assert!(kept(guard.check(&parts, &body).await));
    clock.advance(Duration::from_secs(59));
    assert!(matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)), "within the TTL");
    // Past the replay TTL by the guard's (manual) clock, the mark is gone.
    clock.advance(Duration::from_secs(2));
    assert!(matches!(guard.check(&parts, &body).await, Checked::New { .. }));
}

/// A replay mark lives as long as the delivery it marks could pass again: for a timestamp
/// the signature does not cover (Linear's header, when the body has no
/// `webhookTimestamp`) and for a scheme with no timestamp that was given a tolerance
/// anyway, the untimed default, not the tolerance's window (a copy with a new unsigned
/// timestamp, or none to check, passed again once that short mark was gone); for a
/// timestamp ahead of the receiver's clock under a past-only tolerance (Stripe), until
/// that timestamp goes stale, not the window from receipt.
#[tokio::test]
async fn a_replay_mark_lives_as_long_as_its_delivery_could_pass() {
    use hookguard::{
        providers::{linear, stripe},
        verify::Tolerance,
    };
    let start = 1_700_000_000;
    let body = Bytes::from_static(br#"{"action":"update","type":"Comment"}"#);

    let clock = ManualClock::at_unix(start);
    let linear = linear::scheme("linear_secret").unwrap();
    let guard = Guard::builder("linear", linear.clone()).clock(clock.clone()).build();
    let parts = signed(&linear, "/", &body, clock.now_for_tests(), "d");
    assert!(kept(guard.check(&parts, &body).await));
    clock.advance(Duration::from_secs(3600));
    let resent = signed(&linear, "/", &body, clock.now_for_tests(), "d");
    assert!(
        matches!(guard.check(&resent, &body).await, Checked::Duplicate(_)),
        "an hour later, under a new unsigned timestamp: still a copy"
    );

    // Timed by the body (signed): the mark lives the 2-minute window, not 72 h. (One
    // mark of room: the second delivery gets in only once the first mark is gone.)
    let clock = ManualClock::at_unix(start);
    let store = MemoryReplayStore::new().capacity(1).clock(clock.clone());
    let guard = Guard::builder("linear", linear.clone()).clock(clock.clone()).replay_store(store).build();
    let timed = |n: u64| {
        let at = clock.now_for_tests();
        Bytes::from(format!(r#"{{"n":{n},"webhookTimestamp":{}}}"#, at.unix_timestamp() * 1000))
    };
    let first = timed(1);
    assert!(kept(guard.check(&signed(&linear, "/", &first, clock.now_for_tests(), "a"), &first).await));
    clock.advance(Duration::from_secs(121));
    let second = timed(2);
    assert!(
        kept(guard.check(&signed(&linear, "/", &second, clock.now_for_tests(), "b"), &second).await),
        "the first mark lived its window only"
    );

    let clock = ManualClock::at_unix(start);
    let github = github::scheme("s").unwrap().with_tolerance(Tolerance::symmetric(Duration::from_secs(300)));
    let guard = Guard::builder("github", github.clone()).clock(clock.clone()).build();
    let parts = signed(&github, "/", &body, clock.now_for_tests(), "d");
    assert!(kept(guard.check(&parts, &body).await));
    clock.advance(Duration::from_secs(3600));
    assert!(matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)), "no timestamp: 72 h");

    let clock = ManualClock::at_unix(start);
    let stripe = stripe::scheme("whsec_s").unwrap();
    let guard = Guard::builder("stripe", stripe.clone()).clock(clock.clone()).build();
    let ahead = clock.now_for_tests() + Duration::from_secs(3600);
    let parts = signed(&stripe, "/", &body, ahead, "d");
    assert!(kept(guard.check(&parts, &body).await), "a future timestamp passes a past-only tolerance");
    clock.advance(Duration::from_secs(3000));
    assert!(
        matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)),
        "still fresh 50 minutes later, so still a copy"
    );
    clock.advance(Duration::from_secs(901));
    assert!(!kept(guard.check(&parts, &body).await), "stale at last");

    // A configured time to live shorter than the window does not shorten a timed mark.
    let clock = ManualClock::at_unix(start);
    let guard = Guard::builder("stripe", stripe.clone())
        .clock(clock.clone())
        .replay_ttl(Duration::from_secs(60))
        .build();
    let parts = signed(&stripe, "/", &body, clock.now_for_tests(), "d");
    assert!(kept(guard.check(&parts, &body).await));
    clock.advance(Duration::from_secs(120));
    assert!(
        matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)),
        "still fresh, so still a copy, past the configured 60 s"
    );
}

/// The terminal pipeline takes no replay mark: the inbox's unique key refuses replays. So a
/// mark found in a shared store (left by a middleware-mode replica, or by a receiver killed
/// mid-request) never swallows a delivery that no inbox holds: it is kept and answered
/// `202`, and from then on it is a duplicate. And the pipeline leaves the store as it was.
#[tokio::test]
async fn the_terminal_pipeline_leaves_the_replay_store_alone_and_its_inbox_decides() {
    let clock = ManualClock::at_unix(1_700_000_000);
    let scheme = sw("s").unwrap();
    let marks = MemoryReplayStore::new().clock(clock.clone());
    let inbox = MemoryInbox::new().clock(clock.clone());
    let guard = Guard::builder("github", scheme.clone())
        .clock(clock.clone())
        .replay_store(marks.clone())
        .inbox(inbox.clone())
        .build();
    let body = Bytes::from_static(b"{}");
    let ttl = Duration::from_secs(600);

    let orphan = signed(&scheme, "/hooks/github", b"{}", clock.now_for_tests(), "d-orphan");
    assert_eq!(marks.mark(b"github:d-orphan", ttl).await.unwrap(), Mark::New, "a mark nobody kept");
    assert_eq!(guard.accept(&orphan, body.clone()).await.status(), 202, "kept now");
    assert_eq!(guard.accept(&orphan, body.clone()).await.status(), 200, "a duplicate from then on");
    assert_eq!(inbox.depth().await.unwrap(), 1);

    let fresh = signed(&scheme, "/hooks/github", b"{}", clock.now_for_tests(), "d-fresh");
    assert_eq!(guard.accept(&fresh, body.clone()).await.status(), 202);
    assert_eq!(guard.accept(&fresh, body.clone()).await.status(), 200, "the inbox refuses the replay");
    assert_eq!(inbox.depth().await.unwrap(), 2);
    assert_eq!(marks.mark(b"github:d-fresh", ttl).await.unwrap(), Mark::New, "no mark was taken");

    // A replay after processing is still a duplicate: the inbox remembers finished keys.
    for job in inbox.pull(2, Duration::from_secs(30)).await.unwrap() {
        inbox.ack(&job).await.unwrap();
    }
    assert_eq!(guard.accept(&fresh, body).await.status(), 200, "finished, a duplicate");
    assert_eq!(inbox.depth().await.unwrap(), 0);
}

/// A replay store that is full or down cannot fail the terminal pipeline (it takes no mark):
/// before, the default in-memory store (100,000 marks for the replay window) answered `503`
/// to every delivery past about 330 a second.
#[tokio::test]
async fn a_full_or_down_replay_store_does_not_refuse_terminal_deliveries() {
    let scheme = sw("s").unwrap();
    let full = MemoryReplayStore::new().capacity(1);
    full.mark(b"someone-else", Duration::from_secs(600)).await.unwrap();
    let guards = [
        (
            "full",
            Guard::builder("github", scheme.clone()).replay_store(full).inbox(MemoryInbox::new()).build(),
        ),
        (
            "down",
            Guard::builder("github", scheme.clone())
                .replay_store(DownStore)
                .inbox(MemoryInbox::new())
                .build(),
        ),
    ];
    for (what, guard) in guards {
        for n in 0..3 {
            let parts = signed(&scheme, "/", b"{}", OffsetDateTime::now_utc(), &format!("d-{n}"));
            assert_eq!(guard.accept(&parts, Bytes::from_static(b"{}")).await.status(), 202, "{what}: d-{n}");
        }
    }
}

/// Middleware mode's reservation, settled by hand: dropped unsettled (the request was
/// abandoned) it is cancelled; a handler's 4xx is a refusal, not a delivery handled, so
/// it is cancelled too; a 2xx confirms it for the replay time to live, well past the
/// lease.
#[tokio::test]
async fn a_reservation_dropped_unsettled_is_cancelled_and_a_confirmed_one_outlives_its_lease() {
    let clock = ManualClock::at_unix(1_700_000_000);
    let scheme = github::scheme("s").unwrap();
    let guard = Guard::builder("github", scheme.clone())
        .clock(clock.clone())
        .pending_lease(Duration::from_secs(30))
        .replay_ttl(Duration::from_secs(600))
        .build();
    let parts = signed(&scheme, "/", b"{}", clock.now_for_tests(), "d-res");
    let body = Bytes::from_static(b"{}");

    let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &body).await else { panic!("fresh") };
    drop(reservation);
    let Reserved::Fresh { mut reservation, verified } = guard.reserve(&parts, &body).await else {
        panic!("the dropped reservation was cancelled")
    };
    assert_eq!(verified.provider(), "github");
    for refused in [StatusCode::UNPROCESSABLE_ENTITY, StatusCode::TOO_MANY_REQUESTS, StatusCode::BAD_GATEWAY]
    {
        reservation.finish(refused).await;
        let Reserved::Fresh { reservation: again, .. } = guard.reserve(&parts, &body).await else {
            panic!("a {refused} answer does not confirm: the retry reaches the handler again")
        };
        reservation = again;
    }
    reservation.finish(StatusCode::NO_CONTENT).await;
    clock.advance(Duration::from_secs(31));
    let Reserved::Respond(res) = guard.reserve(&parts, &body).await else { panic!("confirmed") };
    assert_eq!((res.status(), res.body().as_slice()), (StatusCode::OK, &b"duplicate"[..]));
    assert!(matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)), "one phase sees it too");
    clock.advance(Duration::from_secs(600));
    assert!(matches!(guard.reserve(&parts, &body).await, Reserved::Fresh { .. }), "past the time to live");
}

#[tokio::test]
async fn without_a_replay_store_every_copy_is_fresh() {
    let scheme = github::scheme("s").unwrap();
    let guard = Guard::builder("github", scheme.clone()).no_replay_store().build();
    let parts = signed(&scheme, "/", b"{}", OffsetDateTime::now_utc(), "d-none");
    let body = Bytes::from_static(b"{}");
    let Reserved::Fresh { reservation: first, .. } = guard.reserve(&parts, &body).await else { panic!() };
    let Reserved::Fresh { reservation: copy, .. } = guard.reserve(&parts, &body).await else { panic!() };
    first.confirm().await;
    copy.cancel().await;
}

/// A replay store that is down.
#[derive(Debug)]
struct DownStore;

fn down<T: Send + 'static>() -> ReplayFuture<'static, Result<T, StoreError>> {
    Box::pin(std::future::ready(Err(StoreError::Backend("connection refused".into()))))
}

impl ReplayStore for DownStore {
    fn mark<'a>(&'a self, _: &'a [u8], _: Duration) -> ReplayFuture<'a, Result<Mark, StoreError>> {
        down()
    }
    fn reserve<'a>(&'a self, _: &'a [u8], _: u64, _: Duration) -> ReplayFuture<'a, Result<Mark, StoreError>> {
        down()
    }
    fn confirm<'a>(&'a self, _: &'a [u8], _: Duration) -> ReplayFuture<'a, Result<(), StoreError>> {
        down()
    }
    fn cancel<'a>(&'a self, _: &'a [u8], _: u64) -> ReplayFuture<'a, Result<(), StoreError>> {
        down()
    }
    fn unmark<'a>(&'a self, _: &'a [u8]) -> ReplayFuture<'a, Result<(), StoreError>> {
        down()
    }
}

#[tokio::test]
async fn a_replay_store_that_is_down_refuses_with_503_before_the_handler() {
    let scheme = github::scheme("s").unwrap();
    let guard = Guard::builder("github", scheme.clone()).replay_store(DownStore).retry_after(7).build();
    let parts = signed(&scheme, "/", b"{}", OffsetDateTime::now_utc(), "d-down");
    let Reserved::Respond(res) = guard.reserve(&parts, &Bytes::from_static(b"{}")).await else {
        panic!("refused")
    };
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "7");
    let problem: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(problem["type"], "https://hookguard.dev/problems/replay-store-unavailable");
}

/// The same scenario through `WebhookService` (the synchronous path with in-process
/// backends) and `Guard::accept` (the async one): kept → 202; inbox full → 503 and the
/// mark removed again; a kept or finished copy → 200; a mark set by a request that never
/// kept its delivery → pushed anyway, 202.
#[tokio::test]
async fn the_service_and_guard_accept_answer_alike() {
    use http_body_util::{BodyExt as _, Full};
    use tower::ServiceExt as _;

    for via_service in [true, false] {
        let scheme = sw("s3cr3t").unwrap();
        let store = MemoryReplayStore::new();
        let inbox = MemoryInbox::new().capacity(1);
        let guard =
            Guard::builder("github", scheme.clone()).replay_store(store.clone()).inbox(inbox.clone()).build();
        let send = |id: &'static str| {
            let (guard, scheme) = (guard.clone(), scheme.clone());
            async move {
                let mut req = Request::post("/");
                for (name, value) in
                    scheme.sign(&Outgoing::new(b"{}").id(id).timestamp(OffsetDateTime::now_utc())).unwrap()
                {
                    req = req.header(name, value);
                }
                let req = req.body(Full::new(Bytes::from_static(b"{}"))).unwrap();
                if via_service {
                    hookguard::layer::WebhookService::new(guard).oneshot(req).await.unwrap().status()
                } else {
                    let (parts, body) = req.into_parts();
                    guard.accept(&parts, body.collect().await.unwrap().to_bytes()).await.status()
                }
            }
        };
        let path = if via_service { "service" } else { "accept" };
        assert_eq!(send("d-1").await, StatusCode::ACCEPTED, "{path}");
        assert_eq!(send("d-2").await, StatusCode::SERVICE_UNAVAILABLE, "{path}: full");
        assert_eq!(
            store.mark(b"github:d-2", Duration::from_secs(60)).await.unwrap(),
            Mark::New,
            "{path}: released"
        );
        store.unmark(b"github:d-2").await.unwrap();
        assert_eq!(send("d-1").await, StatusCode::OK, "{path}: kept, a duplicate");
        let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
        inbox.ack(&job).await.unwrap();
        assert_eq!(send("d-1").await, StatusCode::OK, "{path}: finished, a duplicate");
        store.mark(b"github:d-3", Duration::from_secs(60)).await.unwrap();
        assert_eq!(send("d-3").await, StatusCode::ACCEPTED, "{path}: a mark alone keeps nothing");
        assert_eq!(inbox.depth().await.unwrap(), 1, "{path}");
    }
}

/// GitHub, Shopify and Bitbucket sign the body only, not their delivery id header: a
/// captured delivery sent again under a new id is a copy (keyed by its signature), not a
/// new delivery to process again; the id stays the webhook's label.
#[tokio::test]
async fn a_replay_under_another_unsigned_id_is_a_copy() {
    let now = OffsetDateTime::now_utc();
    let body: &[u8] = br#"{"n":1}"#;
    for (provider, scheme, id_header) in [
        ("github", github::scheme("s").unwrap(), "x-github-delivery"),
        ("shopify", shopify::scheme("s").unwrap(), "x-shopify-webhook-id"),
        ("bitbucket", bitbucket::scheme("s").unwrap(), "x-request-uuid"),
    ] {
        let inbox = MemoryInbox::new();
        let guard = Guard::builder(provider, scheme.clone()).inbox(inbox.clone()).build();
        for (id, want) in [("d-1", 202), ("d-2", 200), ("d-3", 200)] {
            let mut parts = signed(&scheme, "/", body, now, id);
            parts.headers.insert(http::HeaderName::from_static(id_header), id.parse().unwrap());
            let res = guard.accept(&parts, Bytes::from_static(body)).await;
            assert_eq!(res.status(), want, "{provider}: {id}");
        }
        let job = inbox.pull(10, Duration::from_secs(30)).await.unwrap().remove(0);
        assert_eq!(job.webhook().id(), Some("d-1"), "{provider}: the id is still the label");
        assert!(!job.webhook().key().contains("d-1"), "{provider}: but not the key");
        // A new payload is a new delivery, whatever its id says.
        let other: &[u8] = br#"{"n":2}"#;
        let mut parts = signed(&scheme, "/", other, now, "d-1");
        parts.headers.insert(http::HeaderName::from_static(id_header), "d-1".parse().unwrap());
        assert_eq!(guard.accept(&parts, Bytes::from_static(other)).await.status(), 202, "{provider}");
    }
}

/// Two handshakes for one tenant at once: the first stores its secret, the second is
/// refused while the first is being stored (both would otherwise find no secret, and the
/// last write would win).
#[tokio::test]
async fn concurrent_asana_handshakes_store_one_secret() {
    let stored: Arc<Mutex<Vec<String>>> = Arc::default();
    let release = Arc::new(tokio::sync::Notify::new());
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (saved, gate) = (Arc::clone(&stored), Arc::clone(&release));
    let source = TenantSchemes::new(
        TenantSchemes::path_segment(2),
        |_tenant: String| async { Ok::<_, std::io::Error>(Some(Vec::new())) },
        |secrets: &[Secret]| Ok(Arc::new(asana::scheme(secrets[0].expose())?) as Arc<dyn Scheme>),
    )
    .store(move |_tenant: String, secret: Secret| {
        let (saved, gate, entered) = (Arc::clone(&saved), Arc::clone(&gate), entered_tx.clone());
        async move {
            let _ = entered.send(());
            gate.notified().await; // the first handshake is mid-store
            saved.lock().unwrap().push(String::from_utf8_lossy(secret.expose()).into_owned());
            Ok::<_, std::io::Error>(())
        }
    });
    let guard = Guard::builder_with_source("asana", source)
        .inbox(MemoryInbox::new())
        .handshake(AsanaHookSecret)
        .build();
    let hello = |secret: &str| {
        parts_of(Request::post("/hooks/project-1").header("x-hook-secret", secret).body(()).unwrap())
    };
    let first = tokio::spawn({
        let (guard, parts) = (guard.clone(), hello("first-secret-0123456789"));
        async move { guard.accept(&parts, Bytes::new()).await.status() }
    });
    entered.recv().await.unwrap();
    let second = guard.accept(&hello("second-secret-0123456789"), Bytes::new()).await;
    assert_eq!(second.status(), 403, "refused while the first is stored");
    release.notify_one();
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(*stored.lock().unwrap(), ["first-secret-0123456789"]);
}

/// During a rotation a sender signs with both secrets; a copy cut down to the old
/// secret's signature has the same replay key as the original (a digest of the first
/// secret's tag, whichever matched), so it is a copy, not a new delivery; and that key
/// is no signature under either secret.
#[test]
fn a_rotation_copy_cut_to_one_signature_keeps_its_replay_key() {
    use hookguard::verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat, WebhookRequest};
    let format = SignatureFormat::Pairs { separator: b',', signature_key: "v1", timestamp_key: None };
    let scheme = |secrets: &[&str]| {
        HmacScheme::builder("acme", Algorithm::Sha256)
            .signature(Field::header("x-sig"), format, Encoding::Hex)
            .secrets(secrets)
            .build()
            .unwrap()
    };
    let (new, old, both) = (scheme(&["new"]), scheme(&["old"]), scheme(&["new", "old"]));
    let body: &[u8] = b"{}";
    let value = |s: &HmacScheme| s.sign(&Outgoing::new(body)).unwrap()[0].1.to_str().unwrap().to_owned();
    let request = |v: String| Request::post("/").header("x-sig", v).body(body.to_vec()).unwrap();
    let now = OffsetDateTime::now_utc();
    let full = request(format!("{},{}", value(&new), value(&old)));
    let cut = request(value(&old));
    let a = both.verify(&WebhookRequest::from_request(&full), now).unwrap();
    let b = both.verify(&WebhookRequest::from_request(&cut), now).unwrap();
    assert_eq!((a.key_index(), b.key_index()), (0, 1));
    assert_eq!(a.dedup_key(), b.dedup_key());
    // The key is kept and logged: it must not be the new secret's signature of a request
    // the old secret signed (whoever holds the old one would sign anything with the new).
    let forged = request(format!("v1={}", const_hex::encode(b.dedup_key())));
    let refused = new.verify(&WebhookRequest::from_request(&forged), now).map(|_| ()).map_err(|r| r.reason());
    assert_eq!(refused, Err(Reason::SignatureMismatch));
    assert!(!value(&new).contains(&const_hex::encode(b.dedup_key())));
}

/// A token read from a list of headers or a JSON member is compared as it is (it was
/// taken for an empty one, and every request refused).
#[test]
fn a_token_in_any_field_is_compared() {
    use hookguard::verify::{Field, TokenScheme, WebhookRequest};
    static HEADERS: [Field; 2] = [
        Field::Header(http::HeaderName::from_static("x-token")),
        Field::Header(http::HeaderName::from_static("x-other-token")),
    ];
    let now = OffsetDateTime::now_utc();
    let any = TokenScheme::new("t", Field::Any(&HEADERS), "tok").unwrap();
    let json = TokenScheme::new("t", Field::Json(&["auth", "token"]), "tok").unwrap();
    for (name, scheme, req, ok) in [
        ("second header", &any, Request::post("/").header("x-other-token", "tok").body(Vec::new()), true),
        ("wrong header value", &any, Request::post("/").header("x-token", "nope").body(Vec::new()), false),
        ("json member", &json, Request::post("/").body(br#"{"auth":{"token":"tok"}}"#.to_vec()), true),
        ("wrong json member", &json, Request::post("/").body(br#"{"auth":{"token":"x"}}"#.to_vec()), false),
    ] {
        let req = req.unwrap();
        assert_eq!(scheme.verify(&WebhookRequest::from_request(&req), now).is_ok(), ok, "{name}");
    }
}

/// The headers a token scheme read its token from are not kept: neither the inbox (a
/// durable one writes them to disk) nor the handler sees the shared secret, and a kept
/// webhook's `Debug` shows header names and the body's length only.
#[tokio::test]
async fn a_shared_token_header_is_not_kept() {
    use hookguard::verify::{Field, TokenScheme};
    static HEADERS: [Field; 2] = [
        Field::Header(http::HeaderName::from_static("x-acme-token")),
        Field::Header(http::HeaderName::from_static("x-acme-token-2")),
    ];
    let inbox = MemoryInbox::new();
    let scheme = TokenScheme::new("acme", Field::Any(&HEADERS), "s3cret-token").unwrap();
    let guard = Guard::builder("acme", scheme).inbox(inbox.clone()).build();
    for (n, header) in ["x-acme-token", "x-acme-token-2"].into_iter().enumerate() {
        let req = Request::post("/hooks/acme")
            .header(header, "s3cret-token")
            .header("x-acme-token-2", "s3cret-token")
            .header("x-request-id", "r-1")
            .body(())
            .unwrap();
        let body = format!(r#"{{"n":{n},"card":"4111"}}"#);
        assert_eq!(guard.accept(&parts_of(req), Bytes::from(body)).await.status(), 202);
    }
    let jobs = inbox.pull(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        let headers = job.webhook().headers();
        assert_eq!(headers.get("x-request-id").unwrap(), "r-1", "other headers are kept");
        assert!(headers.get("x-acme-token").is_none() && headers.get("x-acme-token-2").is_none());
        let debug = format!("{job:?}");
        assert!(debug.contains("x-request-id"), "{debug}");
        assert!(!debug.contains("r-1") && !debug.contains("4111"), "no values, no body: {debug}");
    }
}

/// A request with more headers than a kept webhook can have (4,096) is refused `431`
/// before anything else: a durable inbox could not read it back.
#[tokio::test]
async fn more_headers_than_a_webhook_can_keep_are_refused() {
    let inbox = MemoryInbox::new();
    let guard = Guard::builder("github", github::scheme("s").unwrap()).inbox(inbox.clone()).build();
    let mut req = Request::post("/hooks/github");
    for n in 0..4097 {
        req = req.header(format!("x-{n}"), "");
    }
    let res = guard.accept(&parts_of(req.body(()).unwrap()), Bytes::from_static(b"{}")).await;
    assert_eq!(res.status(), 431);
    assert_eq!(inbox.depth().await.unwrap(), 0);
}

/// Middleware mode's hand-off keeps what the terminal pipeline keeps: no shared-token
/// header, and no webhook with more headers than a durable inbox could read back (`431`,
/// and the replay mark is removed so that the sender's retry gets through).
#[tokio::test]
async fn hand_off_keeps_what_accept_keeps() {
    use hookguard::verify::{Field, TokenScheme};
    let inbox = MemoryInbox::new();
    let scheme = TokenScheme::new("acme", Field::header("x-acme-token"), "s3cret").unwrap();
    let guard = Guard::builder("acme", scheme).inbox(inbox.clone()).build();
    let request = |extra: usize, body: &'static [u8]| {
        let mut req = Request::post("/hooks/acme").header("x-acme-token", "s3cret");
        for n in 0..extra {
            req = req.header(format!("x-{n}"), "");
        }
        (parts_of(req.body(()).unwrap()), Bytes::from_static(body))
    };
    let (parts, body) = request(4096, b"many");
    let Checked::New { verified, mark } = guard.check(&parts, &body).await else { panic!("fresh") };
    assert_eq!(guard.hand_off(&parts, body.clone(), &verified, mark).await.status(), 431);
    assert!(matches!(guard.check(&parts, &body).await, Checked::New { .. }), "the mark was removed");

    let (parts, body) = request(1, b"one");
    let Checked::New { verified, mark } = guard.check(&parts, &body).await else { panic!("fresh") };
    assert_eq!(guard.hand_off(&parts, body.clone(), &verified, mark).await.status(), 202);
    assert!(matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)), "kept: the mark stays");
    let job = inbox.pull(1, Duration::from_secs(30)).await.unwrap().remove(0);
    assert!(job.webhook().headers().get("x-acme-token").is_none());
    assert!(job.webhook().headers().get("x-0").is_some());
}

/// When a replay store's calls reach it, and whether their answers come back: a shared
/// store's round trip in flight when the request is abandoned (the sender timed out, a
/// timeout layer fired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Flight {
    /// Applied and answered.
    Answered,
    /// Applied, the answer never comes.
    AnswerLost,
    /// Not applied yet, and no answer.
    NotArrived,
}

/// A [`MemoryReplayStore`] behind a [`Flight`] the test sets before each call.
#[derive(Debug, Clone)]
struct InFlight {
    inner: Arc<MemoryReplayStore>,
    flight: Arc<std::sync::atomic::AtomicU8>,
}

impl InFlight {
    fn new() -> Self {
        Self { inner: Arc::new(MemoryReplayStore::new()), flight: Arc::new((Flight::Answered as u8).into()) }
    }

    fn set(&self, flight: Flight) {
        self.flight.store(flight as u8, Ordering::SeqCst);
    }

    fn call<'a, T: Send + 'a>(
        &'a self,
        op: impl Future<Output = Result<T, StoreError>> + Send + 'a,
    ) -> ReplayFuture<'a, Result<T, StoreError>> {
        let flight = self.flight.load(Ordering::SeqCst);
        Box::pin(async move {
            if flight == Flight::NotArrived as u8 {
                std::future::pending::<()>().await;
            }
            let done = op.await;
            if flight == Flight::AnswerLost as u8 {
                std::future::pending::<()>().await;
            }
            done
        })
    }
}

impl ReplayStore for InFlight {
    fn mark<'a>(&'a self, key: &'a [u8], ttl: Duration) -> ReplayFuture<'a, Result<Mark, StoreError>> {
        self.call(self.inner.mark(key, ttl))
    }
    fn reserve<'a>(
        &'a self,
        key: &'a [u8],
        token: u64,
        lease: Duration,
    ) -> ReplayFuture<'a, Result<Mark, StoreError>> {
        self.call(self.inner.reserve(key, token, lease))
    }
    fn confirm<'a>(&'a self, key: &'a [u8], ttl: Duration) -> ReplayFuture<'a, Result<(), StoreError>> {
        self.call(self.inner.confirm(key, ttl))
    }
    fn cancel<'a>(&'a self, key: &'a [u8], token: u64) -> ReplayFuture<'a, Result<(), StoreError>> {
        self.call(self.inner.cancel(key, token))
    }
    fn unmark<'a>(&'a self, key: &'a [u8]) -> ReplayFuture<'a, Result<(), StoreError>> {
        self.call(self.inner.unmark(key))
    }
}

/// Polls `work` once, then drops it: a request abandoned at its first wait.
fn abandon<F: Future>(work: F) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    match work.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(done) => Some(done),
        std::task::Poll::Pending => None,
    }
}

/// A request abandoned while the replay store works leaves no mark that outlives it: a
/// mark set by `check` whose answer never came is removed (the sender's retry is handled,
/// not answered `200 duplicate` for a delivery nothing kept), a reservation whose answer
/// never came is cancelled (not `409` for the whole lease), and a confirmation that never
/// reached the store is made all the same (the handler succeeded: the retry is a
/// duplicate, not handled twice).
#[tokio::test]
async fn a_request_abandoned_while_the_replay_store_works_leaves_the_right_mark() {
    let store = InFlight::new();
    let scheme = github::scheme("s").unwrap();
    let guard = Guard::builder("github", scheme.clone()).replay_store(store.clone()).build();
    let body = Bytes::from_static(b"{}");
    let parts = signed(&scheme, "/", &body, OffsetDateTime::now_utc(), "d-abandoned");

    store.set(Flight::AnswerLost);
    assert!(abandon(guard.check(&parts, &body)).is_none(), "waits for the store");
    store.set(Flight::Answered);
    assert!(kept(guard.check(&parts, &body).await), "the abandoned check's mark was removed");
    assert!(matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)), "a kept mark stays");
    // A copy abandoned while the store tells it the mark is there removes nothing: the
    // mark is the first request's.
    store.set(Flight::AnswerLost);
    assert!(abandon(guard.check(&parts, &body)).is_none(), "waits for the store");
    store.set(Flight::Answered);
    assert!(
        matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)),
        "the kept mark is still there"
    );

    let parts = signed(&scheme, "/", b"[]", OffsetDateTime::now_utc(), "d-abandoned-2");
    let body = Bytes::from_static(b"[]");
    store.set(Flight::AnswerLost);
    assert!(abandon(guard.reserve(&parts, &body)).is_none(), "waits for the store");
    store.set(Flight::Answered);
    let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &body).await else {
        panic!("the abandoned reservation was cancelled")
    };

    store.set(Flight::NotArrived);
    assert!(abandon(reservation.finish(StatusCode::OK)).is_none(), "waits for the store");
    store.set(Flight::Answered);
    let Reserved::Respond(res) = guard.reserve(&parts, &body).await else {
        panic!("confirmed in the background")
    };
    assert_eq!((res.status(), res.body().as_slice()), (StatusCode::OK, &b"duplicate"[..]));
}

/// A provider that signs a timestamp with the body and sends no id signs each retry anew
/// (Zoom retries 5, 25 and 85 minutes later, past its 5-minute tolerance): the retry of a
/// kept delivery is a duplicate, not a second delivery to process.
#[tokio::test]
async fn a_retry_signed_anew_without_an_id_is_a_duplicate() {
    use hookguard::providers::zoom;
    let clock = ManualClock::at_unix(1_700_000_000);
    let scheme = zoom::scheme("zoom-secret").unwrap();
    let inbox = MemoryInbox::new().clock(clock.clone());
    let guard = Guard::builder("zoom", scheme.clone()).clock(clock.clone()).inbox(inbox.clone()).build();
    let body = Bytes::from_static(br#"{"event":"meeting.started","event_ts":1700000000123,"payload":{}}"#);
    let first = signed(&scheme, "/hooks/zoom", &body, clock.now_for_tests(), "x");
    assert_eq!(guard.accept(&first, body.clone()).await.status(), 202);
    clock.advance(Duration::from_secs(5 * 60));
    let retry = signed(&scheme, "/hooks/zoom", &body, clock.now_for_tests(), "x");
    assert_ne!(first.headers, retry.headers, "signed anew");
    let res = guard.accept(&retry, body.clone()).await;
    assert_eq!((res.status(), res.body().as_slice()), (StatusCode::OK, &b"duplicate"[..]));
    assert_eq!(inbox.depth().await.unwrap(), 1);

    let other = Bytes::from_static(br#"{"event":"meeting.ended","event_ts":1700000300456,"payload":{}}"#);
    let parts = signed(&scheme, "/hooks/zoom", &other, clock.now_for_tests(), "x");
    assert_eq!(guard.accept(&parts, other).await.status(), 202, "another body is another delivery");
}

/// Zoom signs its timestamp, but its SDK checks no age: with no past bound, a delivery's
/// replay mark lived the untimed time to live (72 hours), and a captured delivery resent
/// unchanged after that was handled as new. The preset refuses a timestamp older than
/// that: the copy is either still marked or stale.
#[tokio::test]
async fn a_zoom_delivery_resent_after_its_mark_expired_is_stale() {
    use hookguard::{guard::VerificationFailed, providers::zoom};
    let clock = ManualClock::at_unix(1_700_000_000);
    let scheme = zoom::scheme("zoom-secret").unwrap();
    let guard = Guard::builder("zoom", scheme.clone()).clock(clock.clone()).build();
    let body = Bytes::from_static(br#"{"event":"meeting.started","payload":{}}"#);
    let parts = signed(&scheme, "/hooks/zoom", &body, clock.now_for_tests(), "x");
    let Checked::New { mark, .. } = guard.check(&parts, &body).await else { panic!("the first is new") };
    mark.keep();
    clock.advance(Duration::from_secs(72 * 3600 - 1));
    assert!(matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)), "still marked");
    clock.advance(Duration::from_secs(3601)); // 73 hours after it was signed
    match guard.check(&parts, &body).await {
        Checked::Respond(res) => {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            assert!(String::from_utf8_lossy(res.body()).contains("timestamp-too-old"));
            assert_eq!(
                res.extensions().get::<VerificationFailed>(),
                Some(&VerificationFailed(Reason::TimestampTooOld))
            );
        }
        other => panic!("a copy 73 hours late was not refused: {other:?}"),
    }
}

/// Which signed pieces the key of a delivery without a signed id covers. With the
/// timestamp between literals, everything signed but the timestamp: the method and URL
/// too (two calls with one body to two URLs are two deliveries), and a retry signed anew
/// keeps it. Where a numeric timestamp touches the body (`{timestamp}{body}`: Discord,
/// SendGrid), the MAC: a copy that moves a digit across the boundary signs the same
/// bytes, and must not get a key of its own.
#[test]
fn the_key_without_an_id_covers_what_cannot_move() {
    use hookguard::verify::{
        Algorithm, Encoding, Field, HmacScheme, Piece, SignatureFormat, SignedContent, TimestampFormat,
        Verified, WebhookRequest,
    };
    let scheme = |content: Vec<Piece>| {
        HmacScheme::builder("acme", Algorithm::Sha256)
            .signature(
                Field::header("x-acme-signature"),
                SignatureFormat::Plain { prefix: "" },
                Encoding::Hex,
            )
            .timestamp(Field::header("x-acme-timestamp"), TimestampFormat::UnixSeconds)
            .content(SignedContent::new(content))
            .secret("s3cr3t")
            .build()
            .unwrap()
    };
    let verify = |scheme: &HmacScheme, ts: &str, body: &[u8], url: &str, sig: &str| -> Verified<'static> {
        let req = Request::post("/hooks")
            .header("x-acme-timestamp", ts)
            .header("x-acme-signature", sig)
            .body(body.to_vec())
            .unwrap();
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        scheme.verify(&WebhookRequest::from_request(&req).with_url(url), at).unwrap().into_owned()
    };
    let sign = |scheme: &HmacScheme, ts: i64, body: &[u8], url: &str| {
        let at = OffsetDateTime::from_unix_timestamp(ts).unwrap();
        let headers = scheme.sign(&Outgoing::new(body).timestamp(at).url(url)).unwrap();
        let sig =
            headers.iter().find(|(n, _)| n == "x-acme-signature").unwrap().1.to_str().unwrap().to_owned();
        (ts.to_string(), sig)
    };

    let delimited =
        scheme(vec![Piece::Timestamp, Piece::Literal(b"."), Piece::Method, Piece::Url, Piece::Body]);
    let (ts, sig) = sign(&delimited, 1_700_000_000, b"{}", "https://a.example/h");
    let first = verify(&delimited, &ts, b"{}", "https://a.example/h", &sig);
    let (ts, sig) = sign(&delimited, 1_700_000_060, b"{}", "https://a.example/h");
    let retry = verify(&delimited, &ts, b"{}", "https://a.example/h", &sig);
    assert_eq!(first.dedup_key(), retry.dedup_key(), "signed anew, the same delivery");
    let (ts, sig) = sign(&delimited, 1_700_000_000, b"{}", "https://a.example/other");
    let elsewhere = verify(&delimited, &ts, b"{}", "https://a.example/other", &sig);
    assert_ne!(first.dedup_key(), elsewhere.dedup_key(), "another URL, another delivery");

    // The URL as signed, not as asked for: a scheme given its URL signs that one, so a
    // copy sent with a query added verifies, and is the same delivery.
    let fixed = HmacScheme::builder("acme", Algorithm::Sha256)
        .signature(Field::header("x-acme-signature"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
        .timestamp(Field::header("x-acme-timestamp"), TimestampFormat::UnixSeconds)
        .content(SignedContent::new(vec![Piece::Timestamp, Piece::Literal(b"."), Piece::Url, Piece::Body]))
        .url("https://a.example/h")
        .secret("s3cr3t")
        .build()
        .unwrap();
    let (ts, sig) = sign(&fixed, 1_700_000_000, b"{}", "https://a.example/h");
    let first = verify(&fixed, &ts, b"{}", "https://a.example/h", &sig);
    let copy = verify(&fixed, &ts, b"{}", "https://a.example/h?x=1", &sig);
    assert_eq!(first.dedup_key(), copy.dedup_key(), "a query the signature does not cover");
    // Escapes the MAC decodes sign alike: `%3A` for `:` is a copy too.
    let decoding =
        scheme(vec![Piece::Timestamp, Piece::Literal(b"."), Piece::UrlDecoding(b":"), Piece::Body]);
    let (ts, sig) = sign(&decoding, 1_700_000_000, b"{}", "https://a.example/h?a=b:c");
    let first = verify(&decoding, &ts, b"{}", "https://a.example/h?a=b:c", &sig);
    let copy = verify(&decoding, &ts, b"{}", "https://a.example/h?a=b%3Ac", &sig);
    assert_eq!(first.dedup_key(), copy.dedup_key(), "an escape the signature decodes");
    let (ts, sig) = sign(&decoding, 1_700_000_000, b"{}", "https://a.example/h?a=b;c");
    let other = verify(&decoding, &ts, b"{}", "https://a.example/h?a=b;c", &sig);
    assert_ne!(first.dedup_key(), other.dedup_key(), "another URL, another delivery");

    let touching = scheme(vec![Piece::Timestamp, Piece::Body]);
    let (ts, sig) = sign(&touching, 1_700_000_000, b"{}", "");
    let genuine = verify(&touching, &ts, b"{}", "", &sig);
    let moved = verify(&touching, "170000000", b"0{}", "", &sig);
    assert_eq!(
        genuine.dedup_key(),
        moved.dedup_key(),
        "a digit moved into the body: the same MAC, the same key"
    );

    // An empty literal separates nothing.
    let empty = scheme(vec![Piece::Timestamp, Piece::Literal(b""), Piece::Body]);
    let (ts, sig) = sign(&empty, 1_700_000_000, b"{}", "");
    let genuine = verify(&empty, &ts, b"{}", "", &sig);
    let moved = verify(&empty, "170000000", b"0{}", "", &sig);
    assert_eq!(genuine.dedup_key(), moved.dedup_key());
}
