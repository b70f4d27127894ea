//! Run with: cargo run --example axum_quickstart --features axum
//!
//! A webhook receiver on axum with the embedded defaults: Stripe, GitHub and Standard
//! Webhooks endpoints that verify each delivery, refuse replays, keep it in the in-memory
//! inbox and answer `202` at once; a worker pool then processes each webhook (here: logs
//! it), retrying failures with back-off.
//!
//! Secrets come from `STRIPE_SECRET`, `GITHUB_SECRET` and `STANDARD_WEBHOOKS_SECRET`; when
//! one is unset a demo secret is used and a signed `curl` command is printed for it.
//! A set variable that is not valid UTF-8 is an error, not a reason to use the demo secret.
//! Listens on `HOOKGUARD_ADDR` (default 127.0.0.1:3000).
//!
//! Stop with Ctrl-C or SIGTERM: the server stops accepting and finishes the requests in
//! flight; the workers then keep processing until the in-memory inbox is empty, finish the
//! jobs they hold and stop, all within 10 s. Webhooks still in the inbox after that (say one waiting
//! for a retry) were answered `202` but are lost: their number is logged.
//!
//! The in-memory inbox is lost if the process dies: use a durable backend in production.

#[path = "support/signal.rs"]
mod signal;

use std::{env::VarError, net::SocketAddr, time::Duration};

use axum::{Router, routing::get};
use hookguard::{
    guard::Guard,
    inbox::{MemoryInbox, Webhook},
    layer::WebhookService,
    providers::{self, Preset},
    verify::Outgoing,
    worker::{Worker, WorkerHandle},
};

/// The time allowed, once the server has stopped, to empty the in-memory inbox and stop
/// the workers.
const GRACE: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr: SocketAddr =
        std::env::var("HOOKGUARD_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into()).parse()?;

    // One inbox for all endpoints; its unique keys refuse replays (`200 duplicate`).
    let inbox = MemoryInbox::new();
    let mut app = Router::new().route("/healthz", get(|| async { "ok" }));
    for (path, provider, env, demo) in [
        ("/hooks/stripe", "stripe", "STRIPE_SECRET", "whsec_demo_stripe_secret"),
        ("/hooks/github", "github", "GITHUB_SECRET", "demo-github-secret"),
        (
            "/hooks/standard-webhooks",
            "standard-webhooks",
            "STANDARD_WEBHOOKS_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
    ] {
        let scheme = scheme_for(provider, env, demo, addr, path)?;
        let guard = Guard::builder(provider, scheme).inbox(inbox.clone()).build();
        app = app.route_service(path, WebhookService::new(guard));
    }

    let worker = Worker::new(inbox.clone(), |hook: Webhook| async move {
        tracing::info!(
            endpoint = hook.endpoint(),
            id = hook.id().unwrap_or("-"),
            event = hook.event().unwrap_or("-"),
            bytes = hook.body().len(),
            "processing webhook"
        );
        Ok::<(), std::convert::Infallible>(())
    })
    .concurrency(4)
    .spawn();

    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{addr}");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    // No request comes in any more, and every webhook in the inbox was answered `202`.
    stop_workers(worker).await;
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    signal::shutdown_signal().await;
    tracing::info!("stopping: no new connections, requests in flight finish");
}

/// Lets the workers empty the in-memory inbox (it dies with the process), then stops them,
/// all within [`GRACE`]; logs how many accepted webhooks are left in the inbox, and lost.
async fn stop_workers(worker: WorkerHandle) {
    tracing::info!("server stopped; letting the workers empty the in-memory inbox");
    let drained = worker.drain(GRACE).await;
    tracing::info!(report = ?drained.report, "workers stopped");
    match drained.left {
        Some(0) => tracing::info!("nothing left in the in-memory inbox"),
        Some(lost) => tracing::error!(lost, "accepted webhooks left in the in-memory inbox are lost"),
        None => tracing::error!("cannot count the webhooks left in the in-memory inbox"),
    }
}

/// The preset with the secret from `env`, or, when `env` is unset, the demo secret with a
/// ready-made command. A value that is not valid UTF-8 is an error.
fn scheme_for(
    provider: &str,
    env: &str,
    demo: &str,
    addr: SocketAddr,
    path: &str,
) -> Result<Box<dyn Preset>, Box<dyn std::error::Error>> {
    let (secret, is_demo) = match std::env::var(env) {
        Ok(secret) => (secret, false),
        Err(VarError::NotPresent) => (demo.to_owned(), true),
        Err(VarError::NotUnicode(_)) => {
            return Err(
                format!("{env} is set but not valid UTF-8 (not using the demo secret instead)").into()
            );
        }
    };
    let scheme = providers::by_name(provider, &[secret])?;
    if is_demo {
        let body = r#"{"id":"evt_demo","type":"demo.ping"}"#;
        let headers = scheme.sign(
            &Outgoing::new(body.as_bytes()).id("msg_demo").timestamp(time::OffsetDateTime::now_utc()),
        )?;
        let flags: String =
            headers.iter().map(|(n, v)| format!(" -H '{}: {}'", n, v.to_str().unwrap_or_default())).collect();
        println!(
            "{env} unset, demo secret in use. Try (signed now: a signed timestamp holds 5 minutes, and the same \
             command again is answered 200 duplicate; `hookguard send` signs afresh each time):\n  curl -i \
             http://{addr}{path}{flags} --data-binary '{body}'"
        );
    }
    Ok(scheme)
}
