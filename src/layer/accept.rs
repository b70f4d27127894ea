//! The terminal service: verify, refuse replays, keep the webhook in the inbox, answer.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use super::body;
use crate::guard::{Guard, Head};

/// A Tower service that answers webhook deliveries itself: it reads the body (bounded),
/// verifies it, refuses replays, pushes the webhook into the guard's inbox and answers
/// `202` only once it is kept (`200` for a duplicate, a problem otherwise). Processing
/// happens later, in a [`Worker`](crate::worker::Worker).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::Guard, inbox::MemoryInbox, layer::WebhookService, providers::github};
/// use tower::ServiceExt as _;
///
/// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).inbox(MemoryInbox::new()).build();
/// let svc = WebhookService::new(guard);
/// let req = http::Request::post("/").body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}"))).unwrap();
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), 401); // no signature
/// # }
/// ```
#[derive(Clone)]
pub struct WebhookService {
    guard: Guard,
}

impl fmt::Debug for WebhookService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookService").field("guard", &self.guard).finish()
    }
}

impl WebhookService {
    /// A service over `guard` (which should have an inbox).
    #[must_use]
    pub fn new(guard: Guard) -> Self {
        Self { guard }
    }

    /// The guard.
    #[must_use]
    pub fn guard(&self) -> &Guard {
        &self.guard
    }
}

impl<B> Service<Request<B>> for WebhookService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = AcceptFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use tracing::Instrument as _;
        let guard = self.guard.clone();
        let span = tracing::info_span!("webhook", endpoint = guard.endpoint(), method = %req.method(), path = req.uri().path());
        AcceptFuture {
            inner: Box::pin(
                async move {
                    let (parts, body) = req.into_parts();
                    if let Err(problem) = guard.precheck(&parts) {
                        return Ok(to_full(problem.into_response()));
                    }
                    let bytes = match body::read(&guard, body).await {
                        Ok(bytes) => bytes,
                        Err(problem) => return Ok(to_full(guard.body_problem(problem))),
                    };
                    Ok(to_full(guard.go_on(guard.begin(Head::Owned(parts), bytes)).await))
                }
                .instrument(span),
            ),
        }
    }
}

type Answer = Result<Response<Full<Bytes>>, Infallible>;

/// Response future of [`WebhookService`].
pub struct AcceptFuture {
    inner: Pin<Box<dyn Future<Output = Answer> + Send>>,
}

impl fmt::Debug for AcceptFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AcceptFuture")
    }
}

impl Future for AcceptFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

pub(crate) fn to_full(res: Response<Vec<u8>>) -> Response<Full<Bytes>> {
    res.map(|b| Full::new(Bytes::from(b)))
}
