//! Middleware mode: verify and refuse replays, then call the inner service with the
//! verified bytes and a [`Verified`] extension.
//!
//! # Replay marks in two phases
//!
//! The inner service handles the delivery while the request is open, so the replay mark
//! cannot simply be set for its whole time to live before it runs (a receiver killed
//! mid-handler would leave a mark that swallows the sender's retries, and a concurrent
//! copy would be acknowledged while the first could still fail). Instead:
//!
//! 1. After verification, the guard **reserves** the delivery's key
//!    ([`Guard::reserve`]): a *pending* mark that lives the guard's
//!    [`pending_lease`](crate::guard::GuardBuilder::pending_lease) (60 s by default).
//! 2. The inner service runs. When it answers with a success (`2xx`), the mark is
//!    **confirmed** for the replay time to live; on any other answer (a `4xx` refusal
//!    such as `422` is not a delivery handled, and the sender's retry must get the
//!    handler's answer again), an error, or when the request is abandoned (the sender hung
//!    up and the future was dropped), the reservation is **cancelled** (only while it is
//!    still this request's).
//!
//! Meanwhile a copy of the delivery (the sender's retry, or the same delivery at another
//! replica sharing a Redis store) is answered `409 Conflict` + `Retry-After` with a
//! `delivery-in-progress` problem, so the sender tries again later; once the mark is
//! confirmed, copies get `200 duplicate` without calling the inner service. If the
//! receiver dies mid-handler, nothing cancels: the reservation expires after its lease,
//! and the sender's next retry is handled. See [`crate::replay`] for the store's side.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use axum::{Router, routing::post};
//! use hookguard::{guard::Guard, layer::VerifyLayer, providers::github};
//! use tokio::sync::{Notify, mpsc};
//! use tower::ServiceExt as _;
//!
//! let (started_tx, mut started) = mpsc::unbounded_channel();
//! let go = Arc::new(Notify::new());
//! let gate = Arc::clone(&go);
//! let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
//! let app = Router::new()
//!     .route("/hooks/github", post(move || async move {
//!         let _ = started_tx.send(());
//!         gate.notified().await; // a slow handler
//!         "handled"
//!     }))
//!     .layer(VerifyLayer::new(guard));
//! let delivery = || {
//!     http::Request::post("/hooks/github")
//!         .header("x-github-delivery", "d-1")
//!         .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
//!         .body(axum::body::Body::from("Hello, World!"))
//!         .unwrap()
//! };
//! let first = tokio::spawn(app.clone().oneshot(delivery()));
//! started.recv().await;
//! // The first request is still being handled: the copy is told to retry later.
//! let copy = app.clone().oneshot(delivery()).await.unwrap();
//! assert_eq!(copy.status(), 409);
//! assert!(copy.headers().contains_key("retry-after"));
//! go.notify_one();
//! assert_eq!(first.await.unwrap().unwrap().status(), 200);
//! // Handled: from now on a copy is a duplicate.
//! assert_eq!(app.oneshot(delivery()).await.unwrap().status(), 200);
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::body;
use crate::guard::{Guard, Reserved};
#[cfg(doc)]
use crate::verify::Verified;

/// Layer that applies [`Verify`].
///
/// Handshakes that come as `GET` or `HEAD` (Meta, Dropbox, Trello): on a `post(…)` route,
/// axum sends those methods to the route's fallback, which this layer wraps, and adds
/// `Allow: POST` to whatever it answers. Route such endpoints with `any(…)` (or
/// `route_service`) to answer them without it.
///
/// # Under axum's `Router::nest`
///
/// A nested router, and a layer on it, sees the path with the prefix stripped. The guard
/// needs the whole one (providers that sign the URL: Twilio, Square, Trello, HubSpot v3;
/// tenant finders that read path segments), and takes it from axum's `OriginalUri` only
/// with hookguard's `axum` feature: enable it when this layer is under `Router::nest`.
/// Without it (default features), the guard sees the stripped path, and URL-signing
/// providers answer `401` to every genuine delivery, path tenant finders read the wrong
/// segment (or none). Either way, the inner service is called with the URI it was routed
/// with.
///
/// # Example
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use hookguard::{guard::Guard, layer::VerifyLayer, providers::github};
    /// use tower::{Layer as _, ServiceExt as _, service_fn};
    ///
    /// let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
    /// let handler = service_fn(|_req: http::Request<Full<Bytes>>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"handled"))))
    /// });
    /// let svc = VerifyLayer::new(guard).layer(handler);
    /// let unsigned = http::Request::post("/hooks/github").body(Full::new(Bytes::from_static(b"Hello, World!"))).unwrap();
    /// assert_eq!(svc.clone().oneshot(unsigned).await.unwrap().status(), 401);
    /// let signed = http::Request::post("/hooks/github")
    ///     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    ///     .body(Full::new(Bytes::from_static(b"Hello, World!")))
    ///     .unwrap();
    /// assert_eq!(svc.oneshot(signed).await.unwrap().status(), 200);
    /// # }
    /// ```
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
/// [`Verified<'static>`] extension, without the headers that carried a shared token
/// ([`Verified::secret_headers`]). The extensions also keep the verified bytes (a reference
/// count, not a copy), which axum's extractors (`hookguard::axum`, feature `axum`) take
/// instead of the body: a layer between this one and the handler that replaces or consumes
/// the body changes nothing there. The replay mark is set in two phases (see
/// [`Guard::reserve`] and [`crate::replay`]): reserved before the inner service runs,
/// confirmed once it answered with a success (`2xx`), cancelled when it answers anything
/// else or fails, or when the request is abandoned before it answers (the sender hung up),
/// so the sender's retry gets through. Duplicates are answered `200` without calling it;
/// copies that arrive while the delivery is being handled, `409` + `Retry-After`.
///
/// Under axum's `Router::nest`, the guard sees the whole path only with the `axum`
/// feature (see [`VerifyLayer`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt as _, Full};
/// use hookguard::{guard::Guard, layer::{Verify, VerifyLayer}, providers::github, verify::Verified};
/// use tower::{Layer as _, ServiceExt as _, service_fn};
///
/// let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
/// let handler = service_fn(|req: http::Request<Full<Bytes>>| async move {
///     let provider = req.extensions().get::<Verified<'static>>().unwrap().provider().to_owned();
///     let body = req.into_body().collect().await?.to_bytes();
///     let answer = format!("{provider} sent {} bytes", body.len());
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(answer))))
/// });
/// let svc: Verify<_> = VerifyLayer::new(guard).layer(handler);
/// let req = http::Request::post("/hooks/github")
///     .header("x-github-delivery", "d-1")
///     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
///     .body(Full::new(Bytes::from_static(b"Hello, World!")))
///     .unwrap();
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "github sent 13 bytes");
/// # }
/// ```
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::convert::Infallible;
    /// # use bytes::Bytes;
    /// # use http_body_util::Full;
    /// # use hookguard::{guard::Guard, layer::VerifyLayer, providers::github};
    /// # use tower::{Layer as _, ServiceExt as _, service_fn};
    /// # let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
    /// # let unsigned = || http::Request::post("/hooks/github").body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    /// let handler = service_fn(|_req: http::Request<Full<Bytes>>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"handled"))))
    /// });
    /// let svc = VerifyLayer::new(guard).layer(handler);
    /// assert_eq!(svc.clone().oneshot(unsigned()).await.unwrap().status(), 401);
    /// // The handler itself, without verification in front.
    /// assert_eq!(svc.get_ref().clone().oneshot(unsigned()).await.unwrap().status(), 200);
    /// # }
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::convert::Infallible;
    /// # use bytes::Bytes;
    /// # use http_body_util::Full;
    /// # use hookguard::{guard::Guard, layer::VerifyLayer, providers::github};
    /// # use tower::{Layer as _, ServiceExt as _, service_fn};
    /// # let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
    /// # let unsigned = || http::Request::post("/hooks/github").body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    /// let handler = service_fn(|_req: http::Request<Full<Bytes>>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"handled"))))
    /// });
    /// let mut svc = VerifyLayer::new(guard).layer(handler);
    /// assert_eq!(svc.clone().oneshot(unsigned()).await.unwrap().status(), 401);
    /// // The handler itself, without verification in front, called in place.
    /// assert_eq!(svc.get_mut().oneshot(unsigned()).await.unwrap().status(), 200);
    /// # }
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Takes the inner service out.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::convert::Infallible;
    /// # use bytes::Bytes;
    /// # use http_body_util::Full;
    /// # use hookguard::{guard::Guard, layer::VerifyLayer, providers::github};
    /// # use tower::{Layer as _, ServiceExt as _, service_fn};
    /// # let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
    /// # let unsigned = || http::Request::post("/hooks/github").body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    /// let handler = service_fn(|_req: http::Request<Full<Bytes>>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"handled"))))
    /// });
    /// let svc = VerifyLayer::new(guard).layer(handler);
    /// assert_eq!(svc.clone().oneshot(unsigned()).await.unwrap().status(), 401);
    /// // The handler back, without verification.
    /// let handler = svc.into_inner();
    /// assert_eq!(handler.oneshot(unsigned()).await.unwrap().status(), 200);
    /// # }
    /// ```
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

    /// Always ready: the inner service's readiness is awaited only for a request that
    /// verified (as axum's `from_fn` does, once it is called), so that requests still
    /// sending their bodies, or failing verification, hold none of its capacity (a
    /// concurrency limit's permits, a buffer's slots). It is awaited before the replay
    /// reservation is taken: the wait does not count against the pending lease, and a
    /// delivery is never handled twice because it waited. While the inner service is
    /// busy, a copy of a delivery already handled is answered `200 duplicate` at once
    /// when the replay store can tell
    /// ([`ReplayStore::is_confirmed`](crate::replay::ReplayStore::is_confirmed): the
    /// memory and Redis stores); a copy of one still being handled waits, then gets `409`
    /// or `200 duplicate`. A `LoadShed` outside this layer never sheds; put it inside.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // A clone, made ready once it is needed (tower's readiness rule: `self.inner` may
        // not have been polled ready).
        let mut inner = self.inner.clone();
        use tracing::Instrument as _;
        let guard = self.guard.clone();
        let span = tracing::info_span!(
            "webhook",
            endpoint = guard.endpoint(),
            method = super::span_method(req.method().as_str()),
            path = super::span_path(req.uri().path())
        );
        VerifyFuture {
            inner: Some(Box::pin(
                async move {
                    let (mut parts, body) = req.into_parts();
                    // The guard sees the whole URI; the inner service gets the one it was
                    // routed with back.
                    let routed = super::original_uri(&parts)
                        .cloned()
                        .map(|uri| std::mem::replace(&mut parts.uri, uri));
                    if let Err(problem) = guard.precheck(&parts) {
                        return Ok(convert(problem.into_response()));
                    }
                    let bytes = match body::read(&guard, body).await {
                        Ok(bytes) => bytes,
                        Err(problem) => return Ok(convert(guard.body_problem(problem))),
                    };
                    let to_reserve = match guard.verify_to_reserve(&parts, &bytes).await {
                        Ok(to_reserve) => to_reserve,
                        Err(res) => return Ok(convert(res)),
                    };
                    // Verified: now the inner service may be waited for, before the
                    // reservation, so that the wait does not count against its lease. A
                    // copy of a delivery already handled is answered at once rather than
                    // queued behind the inner service's capacity (asked only when it is
                    // not ready: a ready one costs no store round trip).
                    // A readiness error is returned as it is, before any reservation (a
                    // service that failed its readiness may not be called).
                    match std::future::poll_fn(|cx| Poll::Ready(inner.poll_ready(cx))).await {
                        Poll::Ready(ready) => ready?,
                        Poll::Pending => {
                            if let Some(copy) = guard.confirmed_copy(&to_reserve).await {
                                return Ok(convert(copy));
                            }
                            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                        }
                    }
                    let (verified, reservation) = match guard.reserve_verified(to_reserve).await {
                        Reserved::Fresh { verified, reservation } => (verified, reservation),
                        Reserved::Respond(res) => return Ok(convert(res)),
                    };
                    // A header that carried the secret itself (a shared token) is not
                    // passed on: the inner service, and whatever logs its request, never
                    // sees it (as the inbox never keeps it).
                    for name in verified.secret_headers() {
                        parts.headers.remove(name);
                    }
                    // Dropped before the inner service answers (the sender hung up): the
                    // reservation is cancelled, so the sender's retry gets through.
                    parts.extensions.insert(verified);
                    // The verified bytes themselves, for axum's extractors (a layer in
                    // between may replace or consume the body): a clone shares the memory.
                    // Nothing else reads them: without the feature, no insert.
                    #[cfg(feature = "axum")]
                    parts.extensions.insert(super::VerifiedBytes(bytes.clone()));
                    if let Some(routed) = routed {
                        parts.uri = routed;
                    }
                    let res = inner.call(Request::from_parts(parts, B::from(bytes))).await;
                    match &res {
                        Ok(r) => reservation.finish(r.status()).await,
                        Err(_) => reservation.cancel().await,
                    }
                    res
                }
                .instrument(span),
            )),
        }
    }
}

fn convert<ResBody: From<Bytes>>(res: Response<Vec<u8>>) -> Response<ResBody> {
    res.map(|b| ResBody::from(Bytes::from(b)))
}

/// What [`VerifyFuture`] runs.
type Running<ResBody, E> = Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send>>;

/// Response future of [`Verify`]: reads and verifies the request, reserves the delivery,
/// calls the inner service and settles the reservation by its answer (confirmed for a
/// `2xx`, cancelled otherwise).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{convert::Infallible, sync::{Arc, atomic::{AtomicUsize, Ordering}}};
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hookguard::{guard::Guard, layer::VerifyLayer, providers::github};
/// use tower::{Layer as _, ServiceExt as _, service_fn};
///
/// let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
/// let calls = Arc::new(AtomicUsize::new(0));
/// let counted = Arc::clone(&calls);
/// // A handler that fails the first time (its database was down), then succeeds.
/// let handler = service_fn(move |_req: http::Request<Full<Bytes>>| {
///     let status = if counted.fetch_add(1, Ordering::SeqCst) == 0 { 500 } else { 200 };
///     let mut res = http::Response::new(Full::new(Bytes::new()));
///     *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
///     async move { Ok::<_, Infallible>(res) }
/// });
/// let svc = VerifyLayer::new(guard).layer(handler);
/// let delivery = || {
///     http::Request::post("/hooks/github")
///         .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
///         .body(Full::new(Bytes::from_static(b"Hello, World!")))
///         .unwrap()
/// };
/// assert_eq!(svc.clone().oneshot(delivery()).await.unwrap().status(), 500);
/// // Not handled: the sender's retry reaches the handler again.
/// assert_eq!(svc.clone().oneshot(delivery()).await.unwrap().status(), 200);
/// // Handled: a copy is a duplicate, answered without calling the handler.
/// assert_eq!(svc.oneshot(delivery()).await.unwrap().status(), 200);
/// assert_eq!(calls.load(Ordering::SeqCst), 2);
/// # }
/// ```
pub struct VerifyFuture<ResBody, E> {
    /// `None` once it answered.
    inner: Option<Running<ResBody, E>>,
}

impl<ResBody, E> fmt::Debug for VerifyFuture<ResBody, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyFuture")
    }
}

impl<ResBody: From<Bytes>, E> Future for VerifyFuture<ResBody, E> {
    type Output = Result<Response<ResBody>, E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            // Polled after it answered, which a caller must not do: a 500, as
            // `WebhookService`'s future answers, rather than a panic.
            let mut res =
                Response::new(ResBody::from(Bytes::from_static(b"response future polled after it answered")));
            *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            return Poll::Ready(Ok(res));
        };
        let out = ready!(inner.as_mut().poll(cx));
        self.inner = None;
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use http_body_util::Full;

    use super::*;
    use crate::providers::github;

    /// A service that is ready only once `open` is set (a concurrency limit whose permits
    /// are all taken, say); it answers `204`.
    #[derive(Clone)]
    struct Gated {
        open: Arc<AtomicBool>,
        called: Arc<AtomicBool>,
    }

    impl Service<Request<Full<Bytes>>> for Gated {
        type Response = Response<Bytes>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<Bytes>, std::convert::Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.open.load(Ordering::SeqCst) {
                Poll::Ready(Ok(()))
            } else {
                // Woken by the test's next poll.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }

        fn call(&mut self, _req: Request<Full<Bytes>>) -> Self::Future {
            assert!(self.open.load(Ordering::SeqCst), "called only once ready");
            self.called.store(true, Ordering::SeqCst);
            let mut res = Response::new(Bytes::new());
            *res.status_mut() = http::StatusCode::NO_CONTENT;
            std::future::ready(Ok(res))
        }
    }

    /// GitHub's documented example delivery, signed with "It's a Secret to Everybody".
    fn signed() -> Request<Full<Bytes>> {
        Request::post("/hooks/github")
            .header(
                "x-hub-signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            )
            .body(Full::new(Bytes::from_static(b"Hello, World!")))
            .unwrap()
    }

    /// Requests that fail verification are answered while the inner service is not
    /// ready, and take none of its capacity; a verified one waits for it.
    #[tokio::test]
    async fn the_inner_service_is_made_ready_only_for_a_verified_request() {
        let gated = Gated { open: Arc::default(), called: Arc::default() };
        let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
        let mut verify = VerifyLayer::new(guard).layer(gated.clone());
        let ready = std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(&mut verify, cx));
        tokio::time::timeout(std::time::Duration::from_secs(5), ready).await.unwrap().unwrap();
        let unsigned =
            Request::post("/hooks/github").body(Full::new(Bytes::from_static(b"Hello, World!"))).unwrap();
        let res = verify.call(unsigned).await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(!gated.called.load(Ordering::SeqCst));

        let mut pending = verify.call(signed());
        for _ in 0..10 {
            assert!(
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut pending).poll(cx))).await.is_pending()
            );
        }
        // Waiting for the inner service, it holds no reservation yet (the wait does not
        // count against its lease): a copy waits too rather than being answered `409`.
        let mut copy = verify.call(signed());
        for _ in 0..10 {
            assert!(std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut copy).poll(cx))).await.is_pending());
        }
        gated.open.store(true, Ordering::SeqCst);
        assert_eq!((&mut pending).await.unwrap().status(), 204);
        assert_eq!(copy.await.unwrap().status(), 200, "a duplicate once the first was handled");
        // Polled again after it answered: a 500, not a panic.
        assert_eq!(pending.await.unwrap().status(), 500);
        assert!(gated.called.load(Ordering::SeqCst));

        // Handled and confirmed: a copy arriving while the inner service is busy again is
        // answered at once, not queued behind it.
        gated.open.store(false, Ordering::SeqCst);
        let mut later = verify.call(signed());
        let answered = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut later).poll(cx))).await;
        let Poll::Ready(Ok(res)) = answered else { panic!("a copy of a handled delivery waited") };
        assert_eq!(res.status(), 200);
    }

    /// A service whose readiness fails (`broken` set) and counts its calls.
    #[derive(Clone)]
    struct Failing {
        broken: Arc<AtomicBool>,
        calls: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Service<Request<Full<Bytes>>> for Failing {
        type Response = Response<Bytes>;
        type Error = &'static str;
        type Future = std::future::Ready<Result<Response<Bytes>, &'static str>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(if self.broken.load(Ordering::SeqCst) { Err("connection lost") } else { Ok(()) })
        }

        fn call(&mut self, _req: Request<Full<Bytes>>) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Response::new(Bytes::new())))
        }
    }

    /// A verified request meeting an inner service whose readiness failed gets that error,
    /// the service is not called (tower's rule), and nothing is reserved: the sender's
    /// retry is handled once the service is back.
    #[tokio::test]
    async fn a_readiness_error_is_returned_and_reserves_nothing() {
        let failing = Failing { broken: Arc::new(AtomicBool::new(true)), calls: Arc::default() };
        let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
        let mut verify = VerifyLayer::new(guard).layer(failing.clone());
        assert_eq!(verify.call(signed()).await.unwrap_err(), "connection lost");
        assert_eq!(failing.calls.load(Ordering::SeqCst), 0);
        failing.broken.store(false, Ordering::SeqCst);
        let res = verify.call(signed()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(failing.calls.load(Ordering::SeqCst), 1, "the retry was handled, not a duplicate");
    }
}
