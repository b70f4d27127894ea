//! Run with: cargo run --example multi_tenant --features axum
//!
//! One GitHub endpoint for many customers: `/hooks/github/{tenant}`. Each tenant's secret
//! is looked up at run time (here from a map standing in for a database), the scheme is
//! built once and cached, and unknown tenants get `404`. Listens on `HOOKGUARD_ADDR`
//! (default 127.0.0.1:3002) and prints a signed `curl` command for tenant `acme`. The
//! worker prints each webhook's key, which names its tenant.
//!
//! Stop with Ctrl-C or SIGTERM: the server stops accepting and finishes the requests in flight; the
//! workers then keep processing until the in-memory inbox is empty, finish the jobs they
//! hold and stop, all within 10 s. Webhooks still in the inbox after that (say one waiting
//! for a retry) were answered `202` but are lost: their number is printed.

#[path = "support/signal.rs"]
mod signal;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use hookguard::{
    ConfigError, Secret,
    guard::Guard,
    inbox::{MemoryInbox, Webhook},
    layer::WebhookService,
    providers::github,
    tenant::TenantSchemes,
    verify::{Outgoing, Scheme, Sign},
    worker::{Worker, WorkerHandle},
};

/// The time allowed, once the server has stopped, to empty the in-memory inbox and stop
/// the workers.
const GRACE: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr =
        std::env::var("HOOKGUARD_ADDR").unwrap_or_else(|_| "127.0.0.1:3002".into()).parse()?;
    // Stand-in for a database table: tenant → secrets (newest first, for rotation).
    let secrets: Arc<HashMap<&'static str, Vec<&'static str>>> = Arc::new(HashMap::from([
        ("acme", vec!["acme-secret-2", "acme-secret-1"]),
        ("globex", vec!["globex-secret"]),
    ]));

    let db = Arc::clone(&secrets);
    let source = TenantSchemes::new(
        TenantSchemes::path_segment(3),
        move |tenant: String| {
            let found = db.get(tenant.as_str()).map(|list| list.iter().map(|s| Secret::new(*s)).collect());
            async move {
                found
                    .transpose()
                    .map_err(|e: ConfigError| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            }
        },
        |secrets: &[Secret]| {
            let mut scheme = github::scheme(secrets[0].expose())?;
            for s in &secrets[1..] {
                scheme = scheme.with_secret(s.expose())?;
            }
            Ok(Arc::new(scheme) as Arc<dyn Scheme>)
        },
    )
    .ttl(Duration::from_secs(60));

    let inbox = MemoryInbox::new();
    let guard = Guard::builder_with_source("github", source).inbox(inbox.clone()).build();
    let app = Router::new().route_service("/hooks/github/{tenant}", WebhookService::new(guard));
    let worker = Worker::new(inbox.clone(), |hook: Webhook| async move {
        // Behind a tenant source the key names the tenant, `{endpoint}:{length}:{tenant}:{id}`,
        // so two tenants' deliveries with the same id are both kept. GitHub does not sign its
        // delivery id: the key ends with the signature's fingerprint instead
        // (`github:4:acme:195216bf…`).
        println!("processed {} (key {})", hook.id().unwrap_or("-"), hook.key());
        Ok::<(), std::convert::Infallible>(())
    })
    .spawn();

    let body = r#"{"zen":"Design for failure."}"#;
    let headers = github::scheme("acme-secret-1")?.sign(&Outgoing::new(body.as_bytes()))?;
    let flags: String =
        headers.iter().map(|(n, v)| format!(" -H '{}: {}'", n, v.to_str().unwrap_or_default())).collect();
    println!(
        "Try (signed with acme's older secret, still accepted during rotation):\n  curl -i http://{addr}/hooks/github/acme{flags} -H 'x-github-delivery: d-1' --data-binary '{body}'"
    );

    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).with_graceful_shutdown(signal::shutdown_signal()).await?;
    // No request comes in any more, and every webhook in the inbox was answered `202`.
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
