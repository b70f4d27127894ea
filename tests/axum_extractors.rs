//! axum extractors behind VerifyLayer: typed JSON, 422 for a body that does not fit.
#![cfg(feature = "axum")]

use axum::{Router, body::Body, routing::post};
use hookguard::{
    axum::{VerifiedJson, VerifiedWebhook},
    guard::Guard,
    layer::VerifyLayer,
    providers::github,
    verify::{Outgoing, Sign},
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
    let body: &'static str = Box::leak(format!(r#"{{"pad":"{}"}}"#, "x".repeat(3 << 20)).into_boxed_str());
    for (path, id, want) in [("/raw", "big-1", body.len()), ("/typed", "big-2", 3 << 20)] {
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
