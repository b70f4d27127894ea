//! Run with: cargo run --example hyper
//!
//! hookguard on plain hyper, without axum: a GitHub endpoint served by
//! [`WebhookService`] (verify → in-memory inbox, whose unique key refuses replays → `202`),
//! and a worker that logs each webhook. `GITHUB_SECRET` sets the secret (a demo one when it
//! is unset, with a signed `curl` command printed; a value that is not valid UTF-8 is an
//! error). Listens on `HOOKGUARD_ADDR` (default 127.0.0.1:3001).
//!
//! Stop with Ctrl-C or SIGTERM: the accept loop stops, and each open connection finishes the request
//! it is on and closes (hyper-util's `GracefulShutdown`, up to 10 s). The workers then keep
//! processing until the in-memory inbox is empty, finish the jobs they hold and stop,
//! within 10 s more. Webhooks still in the inbox after that (say one waiting for a retry)
//! were answered `202` but are lost: their number is printed.

#[path = "support/signal.rs"]
mod signal;

use std::{convert::Infallible, env::VarError, net::SocketAddr, time::Duration};

use bytes::Bytes;
use hookguard::{
    guard::Guard,
    inbox::{MemoryInbox, Webhook},
    layer::WebhookService,
    providers::github,
    verify::{Outgoing, Sign},
    worker::{Worker, WorkerHandle},
};
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown};
use tower::ServiceExt as _;

/// The time open connections get, once the shutdown signal came, to finish their requests.
const CONNECTION_GRACE: Duration = Duration::from_secs(10);
/// The time allowed, once the connections are closed, to empty the in-memory inbox and
/// stop the workers.
const GRACE: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr =
        std::env::var("HOOKGUARD_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into()).parse()?;
    let secret = match std::env::var("GITHUB_SECRET") {
        Ok(secret) => secret,
        Err(VarError::NotPresent) => {
            let demo = "demo-github-secret";
            let body = r#"{"zen":"Keep it logically awesome."}"#;
            let flags: String = github::scheme(demo)?
                .sign(&Outgoing::new(body.as_bytes()))?
                .iter()
                .map(|(n, v)| format!(" -H '{}: {}'", n, v.to_str().unwrap_or_default()))
                .collect();
            println!(
                "GITHUB_SECRET unset, demo secret in use. Try:\n  curl -i http://{addr}/hooks/github{flags} -H 'x-github-delivery: d-1' --data-binary '{body}'"
            );
            demo.to_owned()
        }
        Err(VarError::NotUnicode(_)) => {
            return Err("GITHUB_SECRET is set but not valid UTF-8 (not using the demo secret instead)".into());
        }
    };

    let inbox = MemoryInbox::new();
    let guard = Guard::builder("github", github::scheme(secret)?).inbox(inbox.clone()).build();
    let service = WebhookService::new(guard);
    let worker = Worker::new(inbox.clone(), |hook: Webhook| async move {
        println!("processed {} (event {})", hook.id().unwrap_or("-"), hook.event().unwrap_or("-"));
        Ok::<(), Infallible>(())
    })
    .spawn();

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{addr}");
    // Every connection is watched, so that a shutdown can close them all gracefully.
    let graceful = GracefulShutdown::new();
    // One signal listener for the whole loop: a new one each turn would miss a signal
    // sent between two turns.
    let stop = signal::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: not a reason to drop what the inbox holds.
                    eprintln!("accept error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = service.clone();
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
        let connection =
            graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), handler));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("connection error: {e}");
            }
        });
    }
    drop(listener);

    // Idle connections close at once; busy ones after the request they are on.
    println!("stopping: closing {} open connection(s)", graceful.count());
    if tokio::time::timeout(CONNECTION_GRACE, graceful.shutdown()).await.is_err() {
        eprintln!(
            "connections still open after {CONNECTION_GRACE:?} start no new request; they are cut when the process exits"
        );
    }
    // Every webhook in the inbox was answered `202`.
    stop_workers(worker).await;
    Ok(())
}

/// Lets the workers empty the in-memory inbox (it dies with the process), then stops them,
/// all within [`GRACE`]; prints how many accepted webhooks are left in the inbox, and lost.
async fn stop_workers(worker: WorkerHandle) {
    println!("server stopped; letting the workers empty the in-memory inbox");
    let drained = worker.drain(GRACE).await;
    println!("workers stopped: {:?}", drained.report);
    match drained.left {
        Some(0) => println!("nothing left in the in-memory inbox"),
        Some(lost) => eprintln!("accepted webhooks left in the in-memory inbox, lost: {lost}"),
        None => eprintln!("cannot count the webhooks left in the in-memory inbox"),
    }
}
