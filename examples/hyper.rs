//! Run with: cargo run --example hyper
//!
//! hookguard on plain hyper, without axum: a GitHub endpoint served by
//! [`WebhookService`] (verify → replay guard → in-memory inbox → `202`), and a worker that
//! logs each webhook. `GITHUB_SECRET` sets the secret (a demo one otherwise, with a signed
//! `curl` command printed). Listens on `HOOKGUARD_ADDR` (default 127.0.0.1:3001).

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use hookguard::{
    guard::Guard,
    inbox::{MemoryInbox, Webhook},
    layer::WebhookService,
    providers::github,
    verify::{Outgoing, Sign},
    worker::Worker,
};
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tower::ServiceExt as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr =
        std::env::var("HOOKGUARD_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into()).parse()?;
    let secret = std::env::var("GITHUB_SECRET").unwrap_or_else(|_| {
        let demo = "demo-github-secret";
        let body = r#"{"zen":"Keep it logically awesome."}"#;
        let scheme = github::scheme(demo).expect("demo secret");
        let flags: String = scheme
            .sign(&Outgoing::new(body.as_bytes()))
            .expect("github signs bodies")
            .iter()
            .map(|(n, v)| format!(" -H '{}: {}'", n, v.to_str().unwrap_or_default()))
            .collect();
        println!("GITHUB_SECRET unset, demo secret in use. Try:\n  curl -i http://{addr}/hooks/github{flags} -H 'x-github-delivery: d-1' --data-binary '{body}'");
        demo.to_owned()
    });

    let inbox = MemoryInbox::new();
    let guard = Guard::builder("github", github::scheme(secret)?).inbox(inbox.clone()).build();
    let service = WebhookService::new(guard);
    let worker = Worker::new(inbox, |hook: Webhook| async move {
        println!("processed {} (event {})", hook.id().unwrap_or("-"), hook.event().unwrap_or("-"));
        Ok::<(), Infallible>(())
    })
    .spawn();

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{addr}");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => break,
        };
        let service = service.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |req: Request<Incoming>| {
                let service = service.clone();
                async move {
                    if req.uri().path() != "/hooks/github" {
                        let mut res = Response::new(Full::new(Bytes::from_static(b"not found")));
                        *res.status_mut() = http::StatusCode::NOT_FOUND;
                        return Ok::<_, Infallible>(res);
                    }
                    service.oneshot(req).await
                }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), handler).await {
                eprintln!("connection error: {e}");
            }
        });
    }
    worker.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
