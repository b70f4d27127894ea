//! Reading a request body with a hard cap and a time limit.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt as _, Limited, combinators::Collect};
use pin_project_lite::pin_project;

use crate::{
    guard::Guard,
    problem::{Problem, known},
};

/// Reads the whole body, refusing more than the guard's limit (413, also for chunked
/// bodies with no length) and a body that does not arrive within its read timeout (408).
pub(crate) async fn read<B>(guard: &Guard, body: B) -> Result<Bytes, Problem>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    ReadBody::new(guard, body).await
}

pin_project! {
    /// A time limit on `F` whose timer is armed only if `F` is still not ready when polled
    /// a second time: a small body usually arrives with the head, or (actix) is handed to
    /// the handler by the connection's task right after the handler's first poll; reading
    /// it then costs no timer. The first `Pending` wakes the task at once, so the second
    /// poll, and the timer if it is needed, come straight after it.
    /// `None` when the time ran out.
    pub(crate) struct Within<F> {
        #[pin]
        fut: F,
        limit: Duration,
        polled: bool,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F> Within<F> {
    pub(crate) fn new(limit: Duration, fut: F) -> Self {
        Self { fut, limit, polled: false, timer: None }
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        if !std::mem::replace(this.polled, true) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let limit = *this.limit;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(None)
    }
}

pin_project! {
    /// The future of [`read`].
    pub(crate) struct ReadBody<B>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        #[pin]
        read: Within<Collect<Limited<B>>>,
    }
}

impl<B> ReadBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) fn new(guard: &Guard, body: B) -> Self {
        Self { read: Within::new(guard.read_timeout(), Limited::new(body, guard.body_limit()).collect()) }
    }
}

impl<B> Future for ReadBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Bytes, Problem>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.project().read.poll(cx)) {
            None => Err(known::BODY_TIMEOUT),
            Some(Ok(collected)) => Ok(collected.to_bytes()),
            Some(Err(e)) if over_a_limit(&*e) => Err(known::BODY_TOO_LARGE),
            Some(Err(_)) => Err(known::BODY_ERROR),
        })
    }
}

/// Whether `e` is, or was caused by, a body limit's refusal: this guard's own, or an outer
/// one's (tower-http's `RequestBodyLimitLayer` around a router, whose error axum wraps).
pub(crate) fn over_a_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    // A chain of causes is short; the bound only guards against a cycle.
    for _ in 0..16 {
        match cause {
            Some(e) if e.is::<http_body_util::LengthLimitError>() => return true,
            Some(e) => cause = e.source(),
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ready on its `n`th poll, waking its task each time it is not.
    struct ReadyOn(u32);

    impl Future for ReadyOn {
        type Output = u32;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.0 -= 1;
            if self.0 == 0 {
                return Poll::Ready(7);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// An error that wraps another (as `axum::Error` does a body's).
    #[derive(Debug)]
    struct Wrapped(Box<dyn std::error::Error + Send + Sync>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    /// A body an outer limit refused is answered `413` like one over the guard's own
    /// limit, also when the refusal comes wrapped; other errors are `400`.
    #[tokio::test]
    async fn an_outer_limits_refusal_is_too_large() {
        let guard = Guard::builder("t", crate::providers::github::scheme("s").unwrap()).build();
        let big = || http_body_util::Full::new(Bytes::from(vec![b'x'; 100]));
        let outer = Limited::new(big(), 10).map_err(Wrapped);
        assert_eq!(read(&guard, outer).await.unwrap_err().code(), known::BODY_TOO_LARGE.code());
        let twice = Limited::new(big(), 10).map_err(Wrapped).map_err(|e| Wrapped(Box::new(e)));
        assert_eq!(read(&guard, twice).await.unwrap_err().code(), known::BODY_TOO_LARGE.code());
        let failing =
            http_body_util::StreamBody::new(futures_util::stream::iter([Err::<http_body::Frame<Bytes>, _>(
                Wrapped("connection reset".into()),
            )]));
        assert_eq!(read(&guard, failing).await.unwrap_err().code(), known::BODY_ERROR.code());
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_ready_on_its_second_poll_needs_no_timer() {
        let mut within = std::pin::pin!(Within::new(Duration::from_secs(1), ReadyOn(2)));
        assert_eq!(within.as_mut().await, Some(7));
        assert!(within.timer.is_none(), "no timer armed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_still_pending_on_its_second_poll_runs_out_of_time() {
        let start = tokio::time::Instant::now();
        let mut within = std::pin::pin!(Within::new(Duration::from_secs(1), std::future::pending::<()>()));
        assert_eq!(within.as_mut().await, None);
        assert_eq!(start.elapsed(), Duration::from_secs(1), "the limit, from the first polls");
    }
}
