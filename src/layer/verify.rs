//! Middleware mode: verify and refuse replays, then call the inner service with the
//! verified bytes and a [`Verified`] extension.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::body;
use crate::guard::{Guard, Reserved};

/// Layer that applies [`Verify`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::Guard, layer::VerifyLayer, providers::github, verify::Verified};
/// use axum::{Extension, Router, routing::post};
/// use tower::ServiceExt as _;
///
/// let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
/// let app = Router::new()
///     .route("/hooks/github", post(|Extension(v): Extension<Verified<'static>>, body: String| async move {
///         format!("{} {}", v.provider(), body)
///     }))
///     .layer(VerifyLayer::new(guard));
/// let req = http::Request::post("/hooks/github")
///     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
///     .body(axum::body::Body::from("Hello, World!"))
///     .unwrap();
/// let res = app.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), 200);
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct VerifyLayer {
    guard: Guard,
}

impl VerifyLayer {
    /// A layer over `guard`.
    pub fn new(guard: Guard) -> Self {
        Self { guard }
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = Verify<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Verify { inner, guard: self.guard.clone() }
    }
}

/// Middleware that reads the body (bounded), verifies it and refuses replays before the
/// inner service sees the request. The inner service gets the same bytes and a
/// [`Verified<'static>`] extension. Duplicates are answered `200` without calling it.
/// When the inner service answers with a server error, or the request is abandoned before
/// it answers (the sender hung up), the replay mark is removed so the sender's retry gets
/// through.
#[derive(Clone)]
pub struct Verify<S> {
    inner: S,
    guard: Guard,
}

impl<S: fmt::Debug> fmt::Debug for Verify<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verify").field("inner", &self.inner).field("guard", &self.guard).finish()
    }
}

impl<S> Verify<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Takes the inner service out.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for Verify<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = VerifyFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready clone is used; a fresh clone stays behind (tower's readiness rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        use tracing::Instrument as _;
        let guard = self.guard.clone();
        let span = tracing::info_span!("webhook", endpoint = guard.endpoint(), method = %req.method(), path = req.uri().path());
        VerifyFuture {
            inner: Box::pin(
                async move {
                    let (mut parts, body) = req.into_parts();
                    if let Err(problem) = guard.precheck(&parts) {
                        return Ok(convert(problem.into_response()));
                    }
                    let bytes = match body::read(&guard, body).await {
                        Ok(bytes) => bytes,
                        Err(problem) => return Ok(convert(guard.body_problem(problem))),
                    };
                    let (verified, reservation) = match guard.reserve(&parts, &bytes).await {
                        Reserved::Fresh { verified, reservation } => (verified, reservation),
                        Reserved::Respond(res) => return Ok(convert(res)),
                    };
                    // Dropped before the inner service answers (the sender hung up): the
                    // reservation is cancelled, so the sender's retry gets through.
                    parts.extensions.insert(verified);
                    let res = inner.call(Request::from_parts(parts, B::from(bytes))).await;
                    match &res {
                        Ok(r) => reservation.finish(r.status()).await,
                        Err(_) => reservation.cancel().await,
                    }
                    res
                }
                .instrument(span),
            ),
        }
    }
}

fn convert<ResBody: From<Bytes>>(res: Response<Vec<u8>>) -> Response<ResBody> {
    res.map(|b| ResBody::from(Bytes::from(b)))
}

/// Response future of [`Verify`].
pub struct VerifyFuture<ResBody, E> {
    inner: Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send>>,
}

impl<ResBody, E> fmt::Debug for VerifyFuture<ResBody, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyFuture")
    }
}

impl<ResBody, E> Future for VerifyFuture<ResBody, E> {
    type Output = Result<Response<ResBody>, E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
