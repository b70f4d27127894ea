//! Reading a request body with a hard cap and a time limit.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http_body::Body;
use http_body_util::Limited;
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

/// How many frames [`Gather`] takes in one poll before it lets other tasks run.
const FRAMES_PER_POLL: usize = 64;

pin_project! {
    /// A body's data, gathered: a body that comes in one frame (the usual case for a
    /// webhook) is that frame itself, not a copy (in hyper and actix a slice of the
    /// connection's read buffer, as axum's own `Bytes` extractor gives it; the memory
    /// inbox copies a webhook that will wait behind a backlog: see `MemoryInbox`'s docs on
    /// memory). From the second frame on, every frame is copied into one buffer and let go
    /// at once. Unlike `http_body_util`'s `Collect`, which keeps every frame until the end,
    /// a body sent in tiny chunks (`1\r\nX\r\n` over and over, each chunk a frame holding
    /// on to the connection's read buffer) costs at most about twice its length while it
    /// is read, not tens of times, and what is gathered is no larger than the body (give
    /// or take an eighth). Trailers are dropped.
    pub(crate) struct Gather<B> {
        #[pin]
        body: B,
        first: Option<Bytes>,
        rest: Option<BytesMut>,
    }
}

impl<B> Gather<B> {
    pub(crate) fn new(body: B) -> Self {
        Self { body, first: None, rest: None }
    }
}

impl<B: Body> Future for Gather<B> {
    type Output = Result<Bytes, B::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        for _ in 0..FRAMES_PER_POLL {
            let frame = match ready!(this.body.as_mut().poll_frame(cx)) {
                None => {
                    let all = match (this.rest.take(), this.first.take()) {
                        // Kept as long as the webhook waits: not in a buffer grown past it.
                        (Some(rest), _) if rest.capacity() - rest.len() > rest.len() / 8 => {
                            Bytes::copy_from_slice(&rest)
                        }
                        (Some(rest), _) => rest.freeze(),
                        (None, first) => first.unwrap_or_default(),
                    };
                    return Poll::Ready(Ok(all));
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                Some(Ok(frame)) => frame,
            };
            // Trailers: nothing here reads them.
            let Ok(mut data) = frame.into_data() else { continue };
            if !data.has_remaining() {
                continue;
            }
            if let Some(rest) = this.rest.as_mut() {
                rest.put(data);
            } else if let Some(first) = this.first.take() {
                // Room for these two frames, grown with what arrives: not for what the
                // sender says is to come (a declared length could reserve the whole limit
                // for a few bytes sent, then held until the read timeout).
                let mut rest = BytesMut::with_capacity(first.len() + data.remaining());
                rest.extend_from_slice(&first);
                rest.put(data);
                *this.rest = Some(rest);
            } else {
                *this.first = Some(data.copy_to_bytes(data.remaining()));
            }
        }
        // A body whose frames are always ready (empty ones, say) must not hold the thread.
        cx.waker().wake_by_ref();
        Poll::Pending
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
        read: ReadLimited<B>,
    }
}

impl<B> ReadBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) fn new(guard: &Guard, body: B) -> Self {
        Self { read: ReadLimited::new(body, guard.body_limit(), guard.read_timeout()) }
    }
}

impl<B> Future for ReadBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Bytes, Problem>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().read.poll(cx).map_err(Unread::problem)
    }
}

pin_project! {
    /// The one body read that every reader shares (the verify layers, actix's `Verify`,
    /// both frameworks' extractors): at most `limit` bytes (`Limited`), gathered without
    /// keeping tiny frames ([`Gather`]), within `timeout` ([`Within`]), a failure judged
    /// by [`Unread`].
    pub(crate) struct ReadLimited<B>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        #[pin]
        read: Within<Gather<Limited<B>>>,
    }
}

impl<B> ReadLimited<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) fn new(body: B, limit: usize, timeout: Duration) -> Self {
        Self { read: Within::new(timeout, Gather::new(Limited::new(body, limit))) }
    }
}

impl<B> Future for ReadLimited<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Bytes, Unread>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Unread::outcome(ready!(self.project().read.poll(cx))))
    }
}

/// Why a body was not read whole: the one mapping of read failures to answers that the
/// verify layers, actix's `Verify` and both frameworks' extractors (reading a body
/// themselves) share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unread {
    /// Over a limit (`413`): this guard's own, or an outer one's refusal: tower-http's
    /// `RequestBodyLimitLayer` around a router (whose error axum wraps), actix's
    /// `PayloadError::Overflow` (a `PayloadConfig`, another middleware).
    TooLarge,
    /// Not in time (`408`): the read's own time limit, or an outer layer's timeout that
    /// hookguard can recognise: an `io::Error` of kind `TimedOut` (also inside actix's
    /// `PayloadError`), or Tokio's `Elapsed` (a body wrapped in `tokio::time::timeout`).
    /// Other layers' own error types (tower-http's `RequestBodyTimeoutLayer`, say) are not
    /// known here and answer `400`: the guard's own
    /// [`read_timeout`](crate::guard::GuardBuilder::read_timeout) answers `408`.
    Timeout,
    /// Any other failure of the body: a connection reset, a malformed chunk (`400`).
    Failed,
}

impl Unread {
    /// The outcome of a limited body's read under [`Within`] (`None`: its time ran out).
    pub(crate) fn outcome(
        read: Option<Result<Bytes, Box<dyn std::error::Error + Send + Sync>>>,
    ) -> Result<Bytes, Self> {
        match read {
            None => Err(Self::Timeout),
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(e)) => Err(Self::of(&*e)),
        }
    }

    /// What a body's error `e` is, judged by `e` and the chain of its causes.
    pub(crate) fn of(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut cause = Some(e);
        // A chain of causes is short; the bound only guards against a cycle.
        for _ in 0..16 {
            let Some(e) = cause else { break };
            if e.is::<http_body_util::LengthLimitError>() {
                return Self::TooLarge;
            }
            #[cfg(feature = "actix")]
            if matches!(e.downcast_ref(), Some(actix_web::error::PayloadError::Overflow)) {
                return Self::TooLarge;
            }
            if e.is::<tokio::time::error::Elapsed>()
                || e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                return Self::Timeout;
            }
            cause = e.source();
        }
        Self::Failed
    }

    /// The problem this failure is answered with.
    pub(crate) fn problem(self) -> Problem {
        match self {
            Self::TooLarge => known::BODY_TOO_LARGE,
            Self::Timeout => known::BODY_TIMEOUT,
            Self::Failed => known::BODY_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

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

    /// A body an outer layer timed out (an `io::Error` of kind `TimedOut`, Tokio's
    /// `Elapsed`, also wrapped) is answered `408` like one over the guard's own time.
    #[tokio::test]
    async fn an_outer_timeout_is_a_request_timeout() {
        let guard = Guard::builder("t", crate::providers::github::scheme("s").unwrap()).build();
        let failing = |e: Box<dyn std::error::Error + Send + Sync>| {
            http_body_util::StreamBody::new(futures_util::stream::iter([Err::<http_body::Frame<Bytes>, _>(
                Wrapped(e),
            )]))
        };
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow sender");
        assert_eq!(read(&guard, failing(Box::new(io))).await.unwrap_err().code(), known::BODY_TIMEOUT.code());
        let elapsed = tokio::time::timeout(Duration::ZERO, std::future::pending::<()>()).await.unwrap_err();
        assert_eq!(
            read(&guard, failing(Box::new(elapsed))).await.unwrap_err().code(),
            known::BODY_TIMEOUT.code()
        );
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            read(&guard, failing(Box::new(reset))).await.unwrap_err().code(),
            known::BODY_ERROR.code()
        );
    }

    /// What a connection hands over: each frame a slice of its own read buffer, counted
    /// while alive.
    struct ReadBuffer(std::sync::Arc<std::sync::atomic::AtomicUsize>, Vec<u8>);

    impl AsRef<[u8]> for ReadBuffer {
        fn as_ref(&self) -> &[u8] {
            &self.1
        }
    }

    impl Drop for ReadBuffer {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A body sent one byte per chunk: each frame is let go as soon as it is copied, not
    /// kept (with the read buffer it holds) until the end; the bytes arrive whole.
    #[tokio::test]
    async fn tiny_frames_are_not_kept_until_the_end() {
        use std::sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        };
        let guard = Guard::builder("t", crate::providers::github::scheme("s").unwrap()).build();
        let alive = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let n = 10_000;
        let (a, m) = (Arc::clone(&alive), Arc::clone(&most));
        let frames = futures_util::stream::iter(0..n).map(move |i| {
            let now = a.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            // One byte of a 512-byte buffer, as hyper slices its read buffer.
            let mut buffer = vec![0_u8; 512];
            buffer[7] = b'a' + (i % 26) as u8;
            let frame = Bytes::from_owner(ReadBuffer(Arc::clone(&a), buffer)).slice(7..8);
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(frame))
        });
        use futures_util::StreamExt as _;
        let body = http_body_util::StreamBody::new(frames);
        let bytes = read(&guard, body).await.unwrap();
        assert_eq!(bytes.len(), n);
        assert!(bytes.iter().enumerate().all(|(i, b)| *b == b'a' + (i % 26) as u8), "in order");
        assert!(most.load(Ordering::SeqCst) <= 2, "frames kept: {}", most.load(Ordering::SeqCst));
        assert_eq!(alive.load(Ordering::SeqCst), 0);
    }

    /// A body in many frames is kept in a buffer of about its own length, not in one
    /// grown by doubling past it (a kept webhook holds it while it waits).
    #[tokio::test]
    async fn what_is_kept_is_about_the_bodys_length() {
        let guard = Guard::builder("t", crate::providers::github::scheme("s").unwrap()).build();
        // 33 frames of 1,000 bytes: a doubling buffer would end at 64 KiB.
        let frames = (0..33).map(|_| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b'x'; 1000])))
        });
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let bytes = read(&guard, body).await.unwrap();
        assert_eq!(bytes.len(), 33_000);
        let kept = bytes::BytesMut::from(bytes);
        assert!(kept.capacity() <= 33_000 + 33_000 / 8, "capacity {}", kept.capacity());
    }

    /// A sender that declares a long body and sends a few bytes holds a buffer of the
    /// bytes it sent, not of the length it declared (until the read timeout).
    #[test]
    fn a_declared_length_reserves_nothing() {
        /// Two one-byte frames, declared as a whole limit, then nothing more.
        struct Declared(u8);
        impl Body for Declared {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
                if self.0 == 2 {
                    return Poll::Pending;
                }
                self.0 += 1;
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"x")))))
            }
            fn size_hint(&self) -> http_body::SizeHint {
                http_body::SizeHint::with_exact(1024 * 1024 - u64::from(self.0))
            }
        }
        let mut gather = Gather::new(Limited::new(Declared(0), 1024 * 1024));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut gather).poll(&mut cx).is_pending());
        let held = gather.rest.as_ref().map_or(0, BytesMut::capacity);
        assert!(held < 1024, "{held} bytes held for 2 received");
    }

    /// One frame is handed on as it is: no copy.
    #[tokio::test]
    async fn one_frame_is_not_copied() {
        let guard = Guard::builder("t", crate::providers::github::scheme("s").unwrap()).build();
        let sent = Bytes::from(vec![b'x'; 100]);
        let got = read(&guard, http_body_util::Full::new(sent.clone())).await.unwrap();
        assert_eq!(got.as_ptr(), sent.as_ptr(), "the same memory");
        let empty = read(&guard, http_body_util::Empty::<Bytes>::new()).await.unwrap();
        assert!(empty.is_empty());
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
