//! The terminal service: verify, refuse replays, keep the webhook in the inbox, answer.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response, request::Parts};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body;
use crate::{
    guard::{Finish, Guard, Head},
    replay::BoxFuture,
};

/// A Tower service that answers webhook deliveries itself: it reads the body (bounded),
/// verifies it, refuses replays, pushes the webhook into the guard's inbox and answers
/// `202` (no body) only once it is kept (`200` for a duplicate, a problem otherwise).
/// Processing happens later, in a [`Worker`](crate::worker::Worker).
///
/// Its future ([`AcceptFuture`]) is not boxed; with in-process backends a delivery is
/// answered within the poll that finds its body complete.
///
/// # Under axum's `Router::nest`
///
/// A service routed in a nested router sees the path with the prefix stripped. The guard
/// needs the whole one (providers that sign the URL: Twilio, Square, Trello, HubSpot v3;
/// tenant finders that read path segments), and takes it from axum's `OriginalUri` only
/// with hookguard's `axum` feature: enable it when this service is under `Router::nest`.
/// Without it (default features), the guard sees the stripped path, and URL-signing
/// providers answer `401` to every genuine delivery, path tenant finders read the wrong
/// segment (or none).
///
/// # Example
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
    /// A service over `guard`, which needs an inbox (without one, every verified delivery
    /// is answered `503 inbox-unavailable`, and this warns when it is made).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::Guard, inbox::{Inbox, MemoryInbox}, layer::WebhookService, providers::github};
    /// use hookguard::verify::{Outgoing, Sign};
    /// use tower::ServiceExt as _;
    ///
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let inbox = MemoryInbox::new();
    /// let svc = WebhookService::new(Guard::builder("github", scheme.clone()).inbox(inbox.clone()).build());
    /// let mut req = http::Request::post("/hooks/github").header("x-github-delivery", "d-1");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let req = req.body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}"))).unwrap();
    /// assert_eq!(svc.oneshot(req).await.unwrap().status(), 202); // kept
    /// assert_eq!(inbox.depth().await.unwrap(), 1);
    /// # }
    /// ```
    #[must_use]
    pub fn new(guard: Guard) -> Self {
        guard.warn_without_inbox("WebhookService");
        Self { guard }
    }

    /// The guard.
    ///
    /// ```
    /// use hookguard::{guard::Guard, inbox::MemoryInbox, layer::WebhookService, providers::github};
    ///
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).inbox(MemoryInbox::new()).build();
    /// let svc = WebhookService::new(guard);
    /// assert_eq!(svc.guard().endpoint(), "github");
    /// assert_eq!(svc.guard().body_limit(), hookguard::guard::DEFAULT_BODY_LIMIT);
    /// ```
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
    type Future = AcceptFuture<B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let guard = self.guard.clone();
        let span = tracing::info_span!(
            "webhook",
            endpoint = guard.endpoint(),
            method = super::span_method(req.method().as_str()),
            path = super::span_path(req.uri().path())
        );
        // A disabled span is not entered at all (entering one still costs, with `log`).
        let span = (!span.is_disabled()).then_some(span);
        let (mut parts, body) = req.into_parts();
        // Terminal: the request goes no further, so the guard may have the whole URI.
        if let Some(uri) = super::original_uri(&parts) {
            parts.uri = uri.clone();
        }
        let state = match guard.precheck(&parts) {
            Err(problem) => State::Answered { res: Some(problem.into_response()) },
            Ok(()) => State::Reading { parts: Some(parts), read: body::ReadBody::new(&guard, body) },
        };
        AcceptFuture { guard, span, state }
    }
}

pin_project! {
    /// Response future of [`WebhookService`]: reads the body, then verifies and keeps
    /// the delivery (the inbox's key refuses copies: no replay mark). With in-process backends, all of it happens within the poll
    /// that finds the body complete; a backend that needs I/O gets a boxed continuation.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use futures_util::FutureExt as _;
    /// use hookguard::{guard::Guard, inbox::MemoryInbox, layer::WebhookService, providers::github};
    /// use hookguard::verify::{Outgoing, Sign};
    /// use tower::ServiceExt as _;
    ///
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let svc = WebhookService::new(Guard::builder("github", scheme.clone()).inbox(MemoryInbox::new()).build());
    /// let delivery = || {
    ///     let mut req = http::Request::post("/hooks/github").header("x-github-delivery", "d-1");
    ///     for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///         req = req.header(name, value);
    ///     }
    ///     req.body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}"))).unwrap()
    /// };
    /// // The body is all there and the inbox is in memory: answered in the first poll.
    /// let res = svc.clone().oneshot(delivery()).now_or_never().expect("answered at once").unwrap();
    /// assert_eq!(res.status(), 202);
    /// // The sender's retry: a duplicate.
    /// assert_eq!(svc.oneshot(delivery()).await.unwrap().status(), 200);
    /// # }
    /// ```
    pub struct AcceptFuture<B>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        guard: Guard,
        span: Option<tracing::Span>,
        #[pin]
        state: State<B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Answered { res: Option<Response<Vec<u8>>> },
        Reading { parts: Option<Parts>, #[pin] read: body::ReadBody<B> },
        Finishing { finishing: BoxFuture<'static, Response<Vec<u8>>> },
        Done,
    }
}

impl<B> fmt::Debug for AcceptFuture<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AcceptFuture")
    }
}

impl<B> Future for AcceptFuture<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.as_ref().map(tracing::Span::enter);
        let res = loop {
            match this.state.as_mut().project() {
                StateProj::Answered { res } => break res.take(),
                StateProj::Reading { parts, read } => {
                    let bytes = match ready!(read.poll(cx)) {
                        Ok(bytes) => bytes,
                        Err(problem) => break Some(this.guard.body_problem(problem)),
                    };
                    let Some(parts) = parts.take() else { break None };
                    match this.guard.settle(this.guard.begin(Head::Owned(parts), bytes)) {
                        Finish::Done(res) => break Some(res),
                        Finish::Later(finishing) => this.state.set(State::Finishing { finishing }),
                    }
                }
                StateProj::Finishing { finishing } => break Some(ready!(finishing.as_mut().poll(cx))),
                StateProj::Done => break None,
            }
        };
        this.state.set(State::Done);
        // `None`: polled after it answered, which a caller must not do.
        let res = res.unwrap_or_else(|| plain_error("response future polled after it answered"));
        Poll::Ready(Ok(to_full(res)))
    }
}

fn plain_error(text: &'static str) -> Response<Vec<u8>> {
    let mut res = Response::new(text.as_bytes().to_vec());
    *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    res
}

pub(crate) fn to_full(res: Response<Vec<u8>>) -> Response<Full<Bytes>> {
    res.map(|b| Full::new(Bytes::from(b)))
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;
    use crate::{inbox::MemoryInbox, providers::github};

    #[test]
    fn the_future_answers_once_and_a_second_poll_is_a_server_error_not_a_panic() {
        let guard =
            Guard::builder("github", github::scheme("s3cr3t").unwrap()).inbox(MemoryInbox::new()).build();
        let req = Request::post("/").body(Full::new(Bytes::from_static(b"{}"))).unwrap();
        let mut fut = Box::pin(WebhookService::new(guard).call(req));
        let mut cx = Context::from_waker(Waker::noop());
        // The body is all there and nothing waits: answered within the first poll.
        let Poll::Ready(Ok(res)) = fut.as_mut().poll(&mut cx) else { panic!("answered at once") };
        assert_eq!(res.status(), 401);
        let Poll::Ready(Ok(again)) = fut.as_mut().poll(&mut cx) else { panic!("answered") };
        assert_eq!(again.status(), 500);
    }

    #[test]
    fn with_in_process_backends_a_delivery_is_kept_within_one_poll() {
        use crate::verify::{Outgoing, Sign as _};
        let scheme = github::scheme("s3cr3t").unwrap();
        let inbox = MemoryInbox::new();
        let guard = Guard::builder("github", scheme.clone()).inbox(inbox.clone()).build();
        let mut svc = WebhookService::new(guard);
        let mut cx = Context::from_waker(Waker::noop());
        for expected in [202, 200] {
            let mut req = Request::post("/").header("x-github-delivery", "d-1");
            for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
                req = req.header(name, value);
            }
            let mut fut = Box::pin(svc.call(req.body(Full::new(Bytes::from_static(b"{}"))).unwrap()));
            // No runtime here: nothing may wait, arm a timer or spawn.
            let Poll::Ready(Ok(res)) = fut.as_mut().poll(&mut cx) else { panic!("answered at once") };
            assert_eq!(res.status(), expected);
        }
        let depth = Box::pin(crate::inbox::Inbox::depth(&inbox)).as_mut().poll(&mut cx);
        assert!(matches!(depth, Poll::Ready(Ok(1))));
    }
}
