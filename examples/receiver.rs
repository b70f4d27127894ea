//! Run with: cargo run --example receiver
//!
//! A small webhook receiver on plain hyper and the verification core: three endpoints
//! (GitHub, Stripe, Standard Webhooks), a bounded body read with a time limit, verification,
//! an `application/problem+json` answer for rejections, and a quick `202 Accepted` for
//! verified deliveries, whose processing happens later on a worker task.
//!
//! Secrets come from `GITHUB_SECRET`, `STRIPE_SECRET` and `STANDARD_WEBHOOKS_SECRET`; when
//! one is unset a demo secret is used and a signed `curl` command is printed for it, so
//! the receiver can be tried at once. Listens on `HOOKGUARD_ADDR` (default 127.0.0.1:3000).

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use hookguard::{
    providers::{self, Preset},
    verify::{Outgoing, Rejection, WebhookRequest},
};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::mpsc};

const BODY_LIMIT: usize = 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

struct Endpoint {
    path: &'static str,
    scheme: Box<dyn Preset>,
}

/// A verified delivery handed to the worker.
struct Delivery {
    provider: String,
    id: Option<String>,
    event: Option<String>,
    body: Bytes,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr =
        std::env::var("HOOKGUARD_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into()).parse()?;
    let endpoints = Arc::new(vec![
        endpoint("/hooks/github", "github", "GITHUB_SECRET", "demo-github-secret", addr)?,
        endpoint("/hooks/stripe", "stripe", "STRIPE_SECRET", "whsec_demo_stripe_secret", addr)?,
        endpoint(
            "/hooks/standard-webhooks",
            "standard-webhooks",
            "STANDARD_WEBHOOKS_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            addr,
        )?,
    ]);

    // Bounded hand-off: when the worker falls behind, senders get 503 and retry later.
    let (tx, mut rx) = mpsc::channel::<Delivery>(1024);
    tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            println!(
                "processed {} delivery id={} event={} ({} bytes)",
                d.provider,
                d.id.as_deref().unwrap_or("-"),
                d.event.as_deref().unwrap_or("-"),
                d.body.len()
            );
        }
    });

    let listener = TcpListener::bind(addr).await?;
    println!("listening on http://{addr}");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => break,
        };
        let endpoints = Arc::clone(&endpoints);
        let tx = tx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, Arc::clone(&endpoints), tx.clone()));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                eprintln!("connection error: {e}");
            }
        });
    }
    Ok(())
}

fn endpoint(
    path: &'static str,
    provider: &str,
    env: &str,
    demo: &str,
    addr: SocketAddr,
) -> Result<Endpoint, Box<dyn std::error::Error>> {
    let (secret, is_demo) = match std::env::var(env) {
        Ok(secret) => (secret, false),
        Err(_) => (demo.to_owned(), true),
    };
    let scheme = providers::by_name(provider, &[secret])?;
    if is_demo {
        // Only for the built-in demo secret: a ready-made signed request to try.
        let body = br#"{"id":"evt_demo","type":"demo.ping"}"#;
        let now = time::OffsetDateTime::now_utc();
        let headers = scheme.sign(&Outgoing::new(body).id("msg_demo").timestamp(now))?;
        let flags: String =
            headers.iter().map(|(n, v)| format!(" -H '{}: {}'", n, v.to_str().unwrap_or_default())).collect();
        println!(
            "{env} unset: demo secret in use. Try:\n  curl -i http://{addr}{path}{flags} --data-binary '{}'",
            String::from_utf8_lossy(body)
        );
    }
    Ok(Endpoint { path, scheme })
}

async fn handle(
    req: Request<Incoming>,
    endpoints: Arc<Vec<Endpoint>>,
    tx: mpsc::Sender<Delivery>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(endpoint) = endpoints.iter().find(|e| e.path == req.uri().path()) else {
        return Ok(plain(StatusCode::NOT_FOUND, "no such endpoint"));
    };
    if req.method() != Method::POST {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "POST only"));
    }
    // Refuse an over-limit declared length before reading anything.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Ok(problem(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "Body too large"));
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(READ_TIMEOUT, Limited::new(body, BODY_LIMIT).collect()).await {
        Err(_) => {
            return Ok(problem(StatusCode::REQUEST_TIMEOUT, "body-timeout", "Body not received in time"));
        }
        Ok(Err(_)) => return Ok(problem(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "Body too large")),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let view = WebhookRequest::from_parts(&parts, &bytes);
    let delivery = match endpoint.scheme.verify(&view, time::OffsetDateTime::now_utc()) {
        Ok(v) => Delivery {
            provider: v.provider().to_owned(),
            id: v.id().map(str::to_owned),
            event: v.event().map(str::to_owned),
            body: bytes.clone(),
        },
        Err(rejection) => return Ok(rejected(&rejection)),
    };
    match tx.try_send(delivery) {
        Ok(()) => Ok(plain(StatusCode::ACCEPTED, "accepted")),
        Err(_) => {
            let mut res = problem(StatusCode::SERVICE_UNAVAILABLE, "inbox-full", "Inbox full");
            res.headers_mut().insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
            Ok(res)
        }
    }
}

fn rejected(rejection: &Rejection) -> Response<Full<Bytes>> {
    let reason = rejection.reason();
    let mut res = problem(rejection.status(), reason.code(), reason.title());
    // The detail is safe to show: header names, counts and ages, never secrets.
    let body = serde_json::json!({
        "type": format!("https://hookguard.dev/problems/{}", reason.code()),
        "title": reason.title(),
        "status": rejection.status().as_u16(),
        "detail": rejection.to_string(),
    });
    *res.body_mut() = Full::new(Bytes::from(body.to_string()));
    res
}

fn problem(status: StatusCode, code: &str, title: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": format!("https://hookguard.dev/problems/{code}"),
        "title": title,
        "status": status.as_u16(),
    });
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/problem+json"));
    res
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *res.status_mut() = status;
    res
}
