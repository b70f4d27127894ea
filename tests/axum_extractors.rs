//! axum behind VerifyLayer and WebhookService: the extractors (typed JSON, 422 for a body
//! that does not fit, the guard's body limit only, the verified bytes whatever a layer in
//! between did to the body, the default limit and read timeout without the layer, `Debug`
//! without the body), and nested routers (the guard sees the whole path).
#![cfg(feature = "axum")]

use axum::{Router, body::Body, routing::post};
use std::sync::Arc;

use hookguard::{
    Secret,
    axum::{VerifiedJson, VerifiedWebhook, WebhookRejection},
    guard::{DEFAULT_BODY_LIMIT, DEFAULT_READ_TIMEOUT, Guard},
    inbox::MemoryInbox,
    layer::{VerifyLayer, WebhookService},
    providers::github,
    tenant::TenantSchemes,
    verify::{Outgoing, Scheme, Sign, Verified},
};
use tower::ServiceExt as _;

#[derive(serde::Deserialize)]
struct Push {
    r#ref: String,
}

fn app() -> Router {
    let guard = Guard::builder("github", github::scheme("secret").unwrap()).build();
    Router::new()
        .route("/typed", post(|VerifiedJson(push): VerifiedJson<Push>| async move { push.r#ref }))
        .route(
            "/raw",
            post(|hook: VerifiedWebhook| async move {
                format!("{}:{}", hook.verified.provider(), hook.body.len())
            }),
        )
        .layer(VerifyLayer::new(guard))
}

fn signed(uri: &str, body: &'static str, id: &str) -> http::Request<Body> {
    let scheme = github::scheme("secret").unwrap();
    let mut req = http::Request::post(uri).header("x-github-delivery", id);
    for (name, value) in scheme.sign(&Outgoing::new(body.as_bytes())).unwrap() {
        req = req.header(name, value);
    }
    req.body(Body::from(body)).unwrap()
}

async fn call(req: http::Request<Body>) -> (u16, String) {
    let res = app().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The guard's body limit is the only one: axum's default 2 MiB limit does not apply to
/// bytes the verify layer already read.
#[tokio::test]
async fn a_body_the_guard_allows_past_axums_default_limit_reaches_the_handler() {
    let guard = Guard::builder("github", github::scheme("secret").unwrap()).body_limit(4 << 20).build();
    let app = Router::new()
        .route("/raw", post(|hook: VerifiedWebhook| async move { hook.body.len().to_string() }))
        .route(
            "/typed",
            post(|VerifiedJson(v): VerifiedJson<serde_json::Value>| async move {
                v["pad"].as_str().map_or(0, str::len).to_string()
            }),
        )
        .layer(VerifyLayer::new(guard));
    for (path, id, raw) in [("/raw", "big-1", true), ("/typed", "big-2", false)] {
        // Each delivery its own payload: GitHub's signature, not its id header, tells them apart.
        let body: &'static str =
            Box::leak(format!(r#"{{"id":"{id}","pad":"{}"}}"#, "x".repeat(3 << 20)).into_boxed_str());
        let want = if raw { body.len() } else { 3 << 20 };
        let res = app.clone().oneshot(signed(path, body, id)).await.unwrap();
        let status = res.status().as_u16();
        let text = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        assert_eq!((status, String::from_utf8_lossy(&text).into_owned()), (200, want.to_string()), "{path}");
    }
}

#[tokio::test]
async fn typed_and_raw_extractors() {
    let cases = [
        ("typed fits", signed("/typed", r#"{"ref":"refs/heads/main"}"#, "a"), 200, "refs/heads/main"),
        ("typed does not fit: 422", signed("/typed", r#"{"nope":1}"#, "b"), 422, "unprocessable-body"),
        ("raw", signed("/raw", "Hello, World!", "c"), 200, "github:13"),
        (
            "unsigned",
            http::Request::post("/typed").body(Body::from(r#"{"ref":"x"}"#)).unwrap(),
            401,
            "missing-signature",
        ),
    ];
    for (name, req, status, needle) in cases {
        let (got, body) = call(req).await;
        assert_eq!(got, status, "case {name}: {body}");
        assert!(body.contains(needle), "case {name}: {body}");
    }
}

/// Under `Router::nest`, the layer sees the path without the prefix; the guard must see the
/// whole one (a tenant finder reading `/api/hooks/{tenant}`, a URL-signing provider), while
/// a nested router inside a verify layer still routes by its own path.
#[tokio::test]
async fn nested_routers_give_the_guard_the_whole_path() {
    let guard = |inbox: &MemoryInbox| {
        let source = TenantSchemes::new(
            TenantSchemes::path_segment(3), // /api/hooks/{tenant}
            |tenant: String| async move {
                Ok::<_, std::io::Error>((tenant == "acme").then(|| vec![Secret::new("secret").unwrap()]))
            },
            |secrets: &[Secret]| Ok(Arc::new(github::scheme(secrets[0].expose())?) as Arc<dyn Scheme>),
        );
        Guard::builder_with_source("github", source).inbox(inbox.clone()).build()
    };
    let inbox = MemoryInbox::new();
    let terminal = Router::new()
        .nest("/api", Router::new().route_service("/hooks/{tenant}", WebhookService::new(guard(&inbox))));
    let middleware = Router::new().nest(
        "/api",
        Router::new()
            .route(
                "/hooks/{tenant}",
                post(|hook: VerifiedWebhook| async move { format!("handled {}", hook.body.len()) }),
            )
            .layer(VerifyLayer::new(guard(&inbox))),
    );
    let res = terminal.oneshot(signed("/api/hooks/acme", "{}", "n-1")).await.unwrap();
    assert_eq!(res.status(), 202, "the tenant was found in the whole path");
    let res = middleware.clone().oneshot(signed("/api/hooks/acme", "{}", "n-2")).await.unwrap();
    assert_eq!(res.status(), 200);
    let text = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&text[..], b"handled 2", "the nested router routed the request to the handler");
    let res = middleware.oneshot(signed("/api/hooks/initech", "{}", "n-3")).await.unwrap();
    assert_eq!(res.status(), 404, "an unknown tenant");
}

/// A body that does not fit is answered `422` saying where and how, without the value
/// (serde_json's message quotes it: a card number, an address).
#[tokio::test]
async fn a_body_that_does_not_fit_is_not_quoted_back() {
    #[derive(serde::Deserialize)]
    struct Order {
        amount: u32,
    }
    let guard = Guard::builder("github", github::scheme("secret").unwrap()).build();
    let app = Router::new()
        .route("/order", post(|VerifiedJson(o): VerifiedJson<Order>| async move { o.amount.to_string() }))
        .layer(VerifyLayer::new(guard));
    for (body, how) in [
        (r#"{"amount":"4111 1111 1111 1111"}"#, "does not fit the expected type"),
        (r#"{"amount":4111 1111}"#, "is not valid JSON"),
    ] {
        let res = app.clone().oneshot(signed("/order", body, body)).await.unwrap();
        let status = res.status().as_u16();
        let text = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, 422, "{text}");
        assert!(!text.contains("4111"), "{text}");
        assert!(text.contains(how) && text.contains("line 1, column"), "{text}");
    }
}

/// A middleware between the verify layer and the handler that replaces the body (here:
/// with other, larger bytes, as a decompression would) or consumes it: the extractors
/// give the bytes that were verified, not the body they got.
#[tokio::test]
async fn the_extractors_give_the_verified_bytes_whatever_a_layer_in_between_did_to_the_body() {
    use axum::{extract::Request, middleware::Next};
    let verified = r#"{"ref":"refs/heads/main"}"#;
    let other = bytes::Bytes::from(format!(r#"{{"ref":"{}"}}"#, "x".repeat(100)));
    for (name, replacement) in [("replaced", Some(other)), ("consumed", None)] {
        let guard = Guard::builder("github", github::scheme("secret").unwrap()).body_limit(64).build();
        let app = Router::new()
            .route("/raw", post(|hook: VerifiedWebhook| async move { hook.body }))
            .route("/typed", post(|VerifiedJson(push): VerifiedJson<Push>| async move { push.r#ref }))
            .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
                let replacement = replacement.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let read = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                    assert!(
                        read.starts_with(br#"{"ref":"refs/heads/"#),
                        "the verify layer passes the verified bytes on"
                    );
                    let body = replacement.map_or_else(Body::empty, Body::from);
                    next.run(Request::from_parts(parts, body)).await
                }
            }))
            .layer(VerifyLayer::new(guard));
        // Each delivery its own payload: GitHub's signature, not its id header, tells them apart.
        let raw = r#"{"ref":"refs/heads/raw"}"#;
        for (path, verified, want) in [("/raw", raw, raw), ("/typed", verified, "refs/heads/main")] {
            let res = app.clone().oneshot(signed(path, verified, &format!("{name}{path}"))).await.unwrap();
            let status = res.status().as_u16();
            let text = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
            let got = (status, String::from_utf8_lossy(&text).into_owned());
            assert_eq!(got, (200, want.to_owned()), "{name} {path}");
        }
    }
}

/// The application's own layer put the `Verified` there, so no guard's limit is known:
/// the extractors read within the guard's default limit rather than without one, and give
/// up on a body that stops coming after the default read timeout (on tokio's paused clock:
/// no real wait).
#[tokio::test(start_paused = true)]
async fn without_verify_layer_the_extractors_read_within_the_defaults() {
    use futures_util::StreamExt as _;
    let own = |mut req: http::Request<Body>| {
        req.extensions_mut().insert(Verified::new("own", None, None, None, [0; 32], 0));
        req
    };
    let app = Router::new()
        .route("/raw", post(|hook: VerifiedWebhook| async move { hook.body.len().to_string() }))
        .layer(tower::util::MapRequestLayer::new(own));
    for (name, len, status) in
        [("fits", DEFAULT_BODY_LIMIT, 200), ("one byte over", DEFAULT_BODY_LIMIT + 1, 413)]
    {
        let req = http::Request::post("/raw").body(Body::from(vec![b'x'; len])).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        let got = res.status().as_u16();
        let text = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&text);
        assert_eq!(got, status, "case {name}: {text}");
        let want = if status == 200 { len.to_string() } else { "body-too-large".to_owned() };
        assert!(text.contains(&want), "case {name}: {text}");
    }
    let stalled = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{"))])
        .chain(futures_util::stream::pending());
    let req = http::Request::post("/raw").body(Body::from_stream(stalled)).unwrap();
    let start = tokio::time::Instant::now();
    let res = app.clone().oneshot(req).await.unwrap();
    let waited = start.elapsed();
    assert_eq!(res.status(), 408);
    // The timer's resolution is a millisecond.
    assert!(waited >= DEFAULT_READ_TIMEOUT && waited < DEFAULT_READ_TIMEOUT * 2, "{waited:?}");
    let text = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    assert!(String::from_utf8_lossy(&text).contains("body-timeout"));

    // An outer layer's timeout that hookguard recognises (an `io::Error` of kind
    // `TimedOut`) is a 408 too; another read error is a 400.
    for (kind, status, code) in [
        (std::io::ErrorKind::TimedOut, 408, "body-timeout"),
        (std::io::ErrorKind::ConnectionReset, 400, "body-error"),
    ] {
        let failing =
            futures_util::stream::iter([Err::<bytes::Bytes, _>(std::io::Error::new(kind, "outer"))]);
        let req = http::Request::post("/raw").body(Body::from_stream(failing)).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), status, "{kind:?}");
        let text = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&text).contains(code), "{kind:?}");
    }
}

/// `Debug` (a log line, a panic message) says where and how a body did not fit, and how
/// long a body is, never the values in it: serde_json's own `Debug` quotes the value.
#[test]
fn debug_output_quotes_neither_the_body_nor_the_value_that_did_not_fit() {
    #[derive(Debug, serde::Deserialize)]
    struct Order {
        #[allow(dead_code)]
        amount: u32,
    }
    let body = r#"{"amount":"4111 1111 1111 1111"}"#;
    let hook = VerifiedWebhook {
        verified: Verified::new("github", None, None, None, [0; 32], 0),
        body: bytes::Bytes::from_static(body.as_bytes()),
    };
    let e = serde_json::from_slice::<Order>(&hook.body).unwrap_err();
    assert!(format!("{e:?}").contains("4111"), "what this guards against");
    let rejection = WebhookRejection::Json(e);
    let seen = format!("{hook:?}\n{rejection:?}\n{hook:#?}\n{rejection:#?}");
    assert!(!seen.contains("4111") && !seen.contains("amount"), "{seen}");
    assert!(seen.contains(&format!("body_len: {}", body.len())), "{seen}");
    assert!(seen.contains("does not fit the expected type (line 1, column 31)"), "{seen}");
}
