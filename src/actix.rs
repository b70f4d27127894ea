//! actix-web 4 adapter over the same [`Guard`] pipeline as the Tower side: same secret
//! sources, replay store, inbox, worker, statuses, problem bodies, handshakes, body limit
//! and read timeout.
//!
//! - [`webhook_route`] / [`webhook_service`]: terminal mode, like
//!   [`WebhookService`](crate::layer::WebhookService). Verify, refuse replays, keep the
//!   webhook in the guard's inbox, answer `202`; a [`Worker`](crate::worker::Worker)
//!   processes it later.
//! - [`Verify`]: middleware mode, like [`VerifyLayer`](crate::layer::VerifyLayer). Your
//!   handler gets the verified bytes unchanged and a [`Verified`] in the request
//!   extensions; read them with the [`VerifiedWebhook`] or [`VerifiedJson<T>`] extractors
//!   (`422` problem when the body does not fit `T`), as many of them in one handler as
//!   you like: each gets the same bytes. (actix's own `web::Bytes`, `String` and
//!   `web::Json` decode a `Content-Encoding` body when actix-web's compression features
//!   are on, as they are by default in an application's `actix-web`.)
//! - `SourceControls` (feature `source-controls`): allow-list and rate limit with a
//!   failure budget in front of either, refusing before the body is read, like
//!   the Tower side's `layer::AllowListLayer` and `layer::RateLimitLayer`.
//!
//! This module is a thin shell: it converts actix's request head into
//! [`http::request::Parts`], reads the body with the guard's limit (`413` for a declared
//! `Content-Length` over it before reading, and for chunked bodies that grow past it) and
//! read timeout (`408`), then calls [`Guard::accept`] or [`Guard::reserve`].
//!
//! One difference is actix-web's own: its `HttpServer` answers `Expect: 100-continue`
//! before any service runs, so a request refused before its body is read (a declared
//! length over the limit, `SourceControls`' refusals) was already invited to send it; it
//! gets the same answer, possibly while it uploads (hyper sends `100 Continue` only when
//! the body is first read).
//!
//! ```
//! use actix_web::{App, web};
//! use hookguard::{actix::{Verify, VerifiedJson, webhook_route}, guard::Guard, inbox::MemoryInbox, providers::{github, stripe}};
//!
//! let inbox = MemoryInbox::new();
//! let stripe = Guard::builder("stripe", stripe::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()).inbox(inbox).build();
//! let github = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
//! let app = App::new()
//!     .route("/hooks/stripe", webhook_route(stripe))
//!     .service(
//!         web::resource("/hooks/github")
//!             .wrap(Verify::new(github))
//!             .route(web::post().to(|VerifiedJson(push): VerifiedJson<serde_json::Value>| async move {
//!                 push["ref"].to_string()
//!             })),
//!     );
//! # let _ = app;
//! ```

use std::{
    cell::Cell,
    fmt,
    future::{Future, Ready, ready},
    pin::Pin,
    rc::Rc,
    time::Duration,
};

use actix_web::{
    FromRequest, HttpMessage as _, HttpRequest, HttpResponse, ResponseError, Route,
    body::{BodyStream, EitherBody, MessageBody},
    dev::{self, Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    error::PayloadError,
    web,
};
use bytes::Bytes;
use http::request::Parts;

use crate::{
    guard::{DEFAULT_BODY_LIMIT, DEFAULT_READ_TIMEOUT, Guard, Head, Reserved, VerificationFailed},
    inbox::headers_in_one_buffer,
    layer::body::Unread,
    problem::Problem,
    verify::Verified,
};

/// Terminal mode as a route for any method (handshakes may be `GET` or `HEAD`): the
/// request goes through [`Guard::accept`] (verify, inbox with its replay-refusing unique key, `202`).
///
/// ```
/// # actix_web::rt::System::new().block_on(async {
/// use actix_web::{App, test, web};
/// use hookguard::{actix::webhook_route, guard::Guard, inbox::{Inbox, MemoryInbox}, providers::github};
///
/// let inbox = MemoryInbox::new();
/// let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).inbox(inbox.clone()).build();
/// let app = test::init_service(App::new().service(web::resource("/hooks/github").route(webhook_route(guard)))).await;
/// let req = test::TestRequest::post()
///     .uri("/hooks/github")
///     .insert_header(("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"))
///     .set_payload("Hello, World!")
///     .to_request();
/// assert_eq!(test::call_service(&app, req).await.status(), 202);
/// assert_eq!(inbox.depth().await.unwrap(), 1);
/// # });
/// ```
#[must_use]
pub fn webhook_route(guard: Guard) -> Route {
    guard.warn_without_inbox("webhook_route");
    web::route().to(move |req: HttpRequest, payload: web::Payload| {
        use tracing::Instrument as _;
        let guard = guard.clone();
        let span = span(&guard, &req);
        async move { accept(&guard, &req, payload.into_inner()).await }.instrument(span)
    })
}

/// Terminal mode as a resource at `path`, for [`App::service`](actix_web::App::service).
///
/// ```
/// # actix_web::rt::System::new().block_on(async {
/// use actix_web::{App, test};
/// use hookguard::{actix::webhook_service, guard::Guard, inbox::MemoryInbox, providers::github};
///
/// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).inbox(MemoryInbox::new()).build();
/// let app = test::init_service(App::new().service(webhook_service("/hooks/github", guard))).await;
/// let unsigned = test::TestRequest::post().uri("/hooks/github").set_payload("{}").to_request();
/// assert_eq!(test::call_service(&app, unsigned).await.status(), 401);
/// let elsewhere = test::TestRequest::post().uri("/hooks/stripe").set_payload("{}").to_request();
/// assert_eq!(test::call_service(&app, elsewhere).await.status(), 404);
/// # });
/// ```
#[must_use]
pub fn webhook_service(path: &str, guard: Guard) -> actix_web::Resource {
    web::resource(path).route(webhook_route(guard))
}

async fn accept(guard: &Guard, req: &HttpRequest, payload: dev::Payload) -> HttpResponse {
    let parts = parts_of(req);
    if let Err(problem) = guard.precheck(&parts) {
        return respond(problem.into_response());
    }
    match read(guard, payload).await {
        Ok(bytes) => respond(guard.settle(guard.begin(Head::Owned(parts), bytes)).answer().await),
        Err(problem) => respond(guard.body_problem(problem)),
    }
}

/// Middleware mode: a [`Transform`] that reads the body (bounded), verifies it and
/// refuses replays before the wrapped service sees the request. The service gets the
/// same bytes as its payload and a [`Verified<'static>`] in the request extensions, the
/// headers that carried a shared token ([`Verified::secret_headers`]) taken out, and
/// the [`VerifiedWebhook`] and [`VerifiedJson<T>`] extractors get them from the extensions
/// (not the payload, which the first of them would empty for the others).
/// The replay mark is set in two phases, as with [`VerifyLayer`](crate::layer::VerifyLayer)
/// (the same [`Guard::reserve`]): reserved while the service runs, confirmed once it
/// answered with a success (`2xx`), cancelled when it answers anything else or fails, or
/// when the request is dropped unanswered, so the sender's retry gets through. Duplicates are answered
/// `200` without calling it; copies that arrive while the delivery is being handled,
/// `409` + `Retry-After` (a `delivery-in-progress` problem).
///
/// A sender that closes its side while the service runs (a FIN: it timed out) does not
/// stop it: actix-web allows half-closed connections by default
/// (`HttpServer::h1_allow_half_closed`), so the service's answer still settles the
/// reservation; a reset connection drops the request, which cancels it. (hyper drops the
/// request on either.)
///
/// Taking a shared token's header out needs the request to be this call's alone: an
/// outer middleware must not hold a clone of its `HttpRequest` across the call (actix
/// panics then, as its own routing does on such a request).
///
/// ```
/// # actix_web::rt::System::new().block_on(async {
/// use actix_web::{App, test, web};
/// use hookguard::{actix::{Verify, VerifiedWebhook}, guard::Guard, providers::github};
///
/// let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
/// let app = test::init_service(App::new().service(
///     web::resource("/hooks/github").wrap(Verify::new(guard)).route(web::post().to(
///         |hook: VerifiedWebhook| async move { format!("{} {}", hook.verified.provider(), hook.body.len()) },
///     )),
/// ))
/// .await;
/// let req = test::TestRequest::post()
///     .uri("/hooks/github")
///     .insert_header(("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"))
///     .set_payload("Hello, World!")
///     .to_request();
/// let res = test::call_service(&app, req).await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(test::read_body(res).await, "github 13");
/// # });
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Verify {
    guard: Guard,
}

impl Verify {
    /// Middleware over `guard`.
    ///
    /// ```
    /// # actix_web::rt::System::new().block_on(async {
    /// use actix_web::{App, HttpResponse, test, web};
    /// use hookguard::{actix::Verify, guard::Guard, providers::github};
    ///
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
    /// let app = test::init_service(App::new().service(
    ///     web::resource("/hooks").wrap(Verify::new(guard)).route(web::post().to(|| async { HttpResponse::Ok() })),
    /// ))
    /// .await;
    /// let unsigned = test::TestRequest::post().uri("/hooks").set_payload("{}").to_request();
    /// // Refused before the handler runs.
    /// assert_eq!(test::call_service(&app, unsigned).await.status(), 401);
    /// # });
    /// ```
    pub fn new(guard: Guard) -> Self {
        Self { guard }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Verify
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = VerifyMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(VerifyMiddleware { service: Rc::new(service), guard: self.guard.clone() }))
    }
}

/// The service [`Verify`] wraps around yours.
///
/// ```
/// # actix_web::rt::System::new().block_on(async {
/// use actix_web::{HttpResponse, dev::{Service, ServiceRequest, Transform, fn_service}, test};
/// use hookguard::{actix::Verify, guard::Guard, providers::github};
///
/// let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
/// let inner = fn_service(|req: ServiceRequest| async { Ok(req.into_response(HttpResponse::Ok().body("handled"))) });
/// let middleware = Verify::new(guard).new_transform(inner).await.unwrap();
/// let signed = test::TestRequest::post()
///     .insert_header(("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"))
///     .set_payload("Hello, World!")
///     .to_srv_request();
/// assert_eq!(middleware.call(signed).await.unwrap().status(), 200);
/// let forged = test::TestRequest::post()
///     .insert_header(("x-hub-signature-256", "sha256=00"))
///     .set_payload("Hello, World!")
///     .to_srv_request();
/// assert_eq!(middleware.call(forged).await.unwrap().status(), 401);
/// # });
/// ```
pub struct VerifyMiddleware<S> {
    service: Rc<S>,
    guard: Guard,
}

impl<S> fmt::Debug for VerifyMiddleware<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyMiddleware").field("guard", &self.guard).finish_non_exhaustive()
    }
}

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<S, B> Service<ServiceRequest> for VerifyMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        use tracing::Instrument as _;
        let service = Rc::clone(&self.service);
        let guard = self.guard.clone();
        let span = span(&guard, req.request());
        Box::pin(
            async move {
                let parts = parts_of(req.request());
                if let Err(problem) = guard.precheck(&parts) {
                    return Ok(answer(req, problem.into_response()));
                }
                let bytes = match read(&guard, req.take_payload()).await {
                    Ok(bytes) => bytes,
                    Err(problem) => return Ok(answer(req, guard.body_problem(problem))),
                };
                let reservation = match guard.reserve(&parts, &bytes).await {
                    Reserved::Fresh { verified, reservation } => {
                        // A header that carried the secret itself (a shared token) is not
                        // passed on: the handler, and whatever logs its request, never
                        // sees it (as the inbox never keeps it).
                        for name in verified.secret_headers() {
                            req.headers_mut().remove(name.as_str());
                        }
                        let mut extensions = req.extensions_mut();
                        extensions.insert(verified);
                        // A clone: the same memory, for every extractor of the handler.
                        extensions.insert(SharedBody::verified(bytes.clone()));
                        drop(extensions);
                        reservation
                    }
                    Reserved::Respond(res) => return Ok(answer(req, res)),
                };
                req.set_payload(dev::Payload::from(bytes));
                // Dropped before the service answers: the reservation is cancelled.
                let res = service.call(req).await;
                // The rule of the Tower side: confirmed only on a success.
                // (A status `http` cannot take, which actix never gives, cancels: the safe side,
                // where a default would have been `200` and confirmed.)
                match res.as_ref().map(|r| http::StatusCode::from_u16(r.status().as_u16())) {
                    Ok(Ok(status)) => reservation.finish(status).await,
                    _ => reservation.cancel().await,
                }
                res.map(ServiceResponse::map_into_left_body)
            }
            .instrument(span),
        )
    }
}

fn answer<B>(req: ServiceRequest, res: http::Response<Vec<u8>>) -> ServiceResponse<EitherBody<B>> {
    req.into_response(respond(res)).map_into_right_body()
}

/// Reads the whole payload, refusing more than the guard's limit (413, chunked bodies
/// too) and a body that does not arrive within its read timeout (408).
async fn read(guard: &Guard, payload: dev::Payload) -> Result<Bytes, Problem> {
    read_within(payload, guard.body_limit(), guard.read_timeout()).await.map_err(Unread::problem)
}

/// The payload's bytes within `limit` and `timeout`, a failure judged as the Tower side
/// judges a body's ([`Unread::of`]): an outer limit's refusal (actix's own
/// `PayloadError::Overflow`, from a `PayloadConfig` or another middleware) is too large, as
/// an outer `RequestBodyLimitLayer`'s is; a payload an outer layer timed out (an
/// `io::Error` of kind `TimedOut` in a `PayloadError`) is a timeout.
///
/// Read by the Tower side's own body reader (`http_body_util`'s `Limited`, then each
/// chunk copied and let go at once). A body that comes in one chunk (the usual case for a
/// webhook, and always for a payload [`Verify`] put back) is that chunk itself, not a
/// copy; more chunks are gathered in one buffer. (actix's `to_bytes_limited` copies every
/// body into a buffer of 32 KiB, which a kept webhook would then hold while it waits.)
async fn read_within(payload: dev::Payload, limit: usize, timeout: Duration) -> Result<Bytes, Unread> {
    crate::layer::ReadLimited::new(PayloadBody(BodyStream::new(payload)), limit, timeout).await
}

/// actix's payload as an [`http_body::Body`] of data frames.
struct PayloadBody(BodyStream<dev::Payload>);

impl http_body::Body for PayloadBody {
    type Data = Bytes;
    type Error = PayloadError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, PayloadError>>> {
        Pin::new(&mut self.get_mut().0)
            .poll_next(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(http_body::Frame::data)))
    }
}

/// The per-delivery span, as the Tower services open it (endpoint, method, path; never
/// secrets or bodies).
fn span(guard: &Guard, req: &HttpRequest) -> tracing::Span {
    tracing::info_span!(
        "webhook",
        endpoint = guard.endpoint(),
        method = crate::layer::span_method(req.method().as_str()),
        path = crate::layer::span_path(req.path())
    )
}

/// actix's request head (http 0.2 types) as `http` 1 [`Parts`]. With `source-controls`,
/// its extensions hold the connection's [`PeerAddr`](crate::source::PeerAddr) and the
/// [`ClientAddr`](crate::source::ClientAddr) that [`SourceControls`](source::SourceControls)
/// resolved, as a Tower server leaves them for the guard (and a secret source or
/// handshake reading them); actix's other request extensions are not passed on (their
/// types are actix's, not `http`'s).
fn parts_of(req: &HttpRequest) -> Parts {
    let mut builder = http::Request::builder()
        .method(http::Method::from_bytes(req.method().as_str().as_bytes()).unwrap_or_default())
        .uri(uri_of(req.uri()))
        .version(version(req.version()));
    if let Some(headers) = builder.headers_mut() {
        *headers = headers_of(req);
    }
    #[cfg(feature = "source-controls")]
    if let Some(extensions) = builder.extensions_mut() {
        if let Some(peer) = req.peer_addr() {
            extensions.insert(crate::source::PeerAddr(peer));
        }
        if let Some(client) = req.extensions().get::<crate::source::ClientAddr>().copied() {
            extensions.insert(client);
        }
    }
    match builder.body(()) {
        Ok(req) => req.into_parts().0,
        // Unreachable: every part above is valid; fall back to an empty head.
        Err(_) => http::Request::new(()).into_parts().0,
    }
}

/// actix's request target as an `http` 1 URI: the path and query as they came (the usual
/// origin form) without formatting the URI first; other forms through their text.
fn uri_of(uri: &actix_web::http::Uri) -> http::Uri {
    match uri.path_and_query() {
        Some(pq) if uri.authority().is_none() => http::Uri::try_from(pq.as_str()),
        _ => http::Uri::try_from(uri.to_string()),
    }
    .unwrap_or_default()
}

/// actix's request headers (http 0.2 types) as an `http` 1 [`http::HeaderMap`]: the values
/// copied into one buffer that they share (`headers_in_one_buffer`), the names through
/// [`HeaderNames`]' cache.
fn headers_of(req: &HttpRequest) -> http::HeaderMap {
    // One pass over actix's map (its `len` walks it too): up to this many headers are
    // gathered on the stack; a request with more goes through the map again.
    const GATHERED: usize = 32;
    type Pair<'a> = (&'a actix_web::http::header::HeaderName, &'a actix_web::http::header::HeaderValue);
    let mut gathered: [Option<Pair<'_>>; GATHERED] = [None; GATHERED];
    let mut count = 0;
    for pair in req.headers() {
        let Some(slot) = gathered.get_mut(count) else { break };
        *slot = Some(pair);
        count += 1;
    }
    fn piece<'a>((name, value): Pair<'a>) -> (&'a actix_web::http::header::HeaderName, &'a [u8], bool) {
        (name, value.as_bytes(), value.is_sensitive())
    }
    with_header_names(|names| {
        let name = |name: &actix_web::http::header::HeaderName| names.get(name.as_str());
        if count < GATHERED {
            headers_in_one_buffer(|| gathered[..count].iter().flatten().copied().map(piece), count, name)
        } else {
            headers_in_one_buffer(|| req.headers().iter().map(piece), count, name)
        }
    })
}

/// A small cache of `http` 1 header names: one slot per name, picked from its length and
/// a few of its bytes (a name that takes another's slot evicts it). Parsing a name that is
/// not a standard one allocates it; a cached one is a reference count.
struct HeaderNames([Option<http::HeaderName>; 64]);

impl HeaderNames {
    fn new() -> Self {
        Self(std::array::from_fn(|_| None))
    }

    fn get(&mut self, name: &str) -> Option<http::HeaderName> {
        let bytes = name.as_bytes();
        let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
            return http::HeaderName::from_bytes(bytes).ok();
        };
        let middle = bytes[bytes.len() / 2];
        let hash = bytes.len() * 7 + usize::from(*first) * 3 + usize::from(middle) * 5 + usize::from(*last);
        let slot = &mut self.0[hash % 64];
        if let Some(known) = slot
            && known.as_str() == name
        {
            return Some(known.clone());
        }
        let new = http::HeaderName::from_bytes(bytes).ok()?;
        *slot = Some(new.clone());
        Some(new)
    }
}

/// Runs `f` with this thread's [`HeaderNames`] (a fresh one if it is in use).
fn with_header_names<T>(f: impl FnOnce(&mut HeaderNames) -> T) -> T {
    thread_local! {
        static NAMES: std::cell::RefCell<HeaderNames> = std::cell::RefCell::new(HeaderNames::new());
    }
    NAMES.with(|names| match names.try_borrow_mut() {
        Ok(mut names) => f(&mut names),
        Err(_) => f(&mut HeaderNames::new()),
    })
}

fn version(v: actix_web::http::Version) -> http::Version {
    use actix_web::http::Version as V;
    match v {
        V::HTTP_09 => http::Version::HTTP_09,
        V::HTTP_10 => http::Version::HTTP_10,
        V::HTTP_2 => http::Version::HTTP_2,
        V::HTTP_3 => http::Version::HTTP_3,
        _ => http::Version::HTTP_11,
    }
}

/// The guard's `http` 1 answer as an actix response. A [`VerificationFailed`] marker is
/// carried over as an actix response extension, for `SourceControls` (or your own
/// middleware) to read.
fn respond(res: http::Response<Vec<u8>>) -> HttpResponse {
    let (parts, body) = res.into_parts();
    let failed = parts.extensions.get::<VerificationFailed>().copied();
    let status = actix_web::http::StatusCode::from_u16(parts.status.as_u16())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = HttpResponse::build(status);
    for (name, value) in &parts.headers {
        if let (Ok(name), Ok(mut copy)) = (
            actix_web::http::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            actix_web::http::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            // Asana's echoed `X-Hook-Secret` is marked: never indexed by HTTP/2's header
            // compression, and redacted in `Debug`.
            copy.set_sensitive(value.is_sensitive());
            out.append_header((name, copy));
        }
    }
    let mut out = out.body(body);
    if let Some(failed) = failed {
        out.extensions_mut().insert(failed);
    }
    out
}

pub use crate::extract::WebhookRejection;

/// The rejection's problem response.
///
/// ```
/// use hookguard::actix::WebhookRejection;
/// assert_eq!(actix_web::ResponseError::status_code(&WebhookRejection::TooLarge), 413);
/// ```
impl ResponseError for WebhookRejection {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::from_u16(self.problem().status().as_u16())
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if matches!(self, Self::NotVerified) {
            tracing::error!("VerifiedWebhook used on a route without hookguard::actix::Verify");
        }
        respond(self.problem().into_response())
    }
}

/// The verified metadata and the raw body, exactly as [`Verify`] received and verified
/// it: the bytes it left in the request's extensions (a reference count, not a copy), not
/// the request's payload, which is not read. A middleware between [`Verify`] and the
/// handler that replaced the payload (a decompression) or consumed it changes nothing
/// here; a handler that wants such a middleware's output reads the payload itself
/// (`web::Bytes`, which [`Verify`] left the bytes for). Every extractor of one handler
/// gets the same bytes.
///
/// Without [`Verify`] in front, on a route whose [`Verified`] the application's own
/// middleware put in the extensions, it reads the payload, within
/// [`DEFAULT_BODY_LIMIT`] and [`DEFAULT_READ_TIMEOUT`],
/// shared with the handler's other [`VerifiedWebhook`] and [`VerifiedJson`] extractors.
/// actix builds a handler's extractors in argument order, and each body extractor takes
/// the payload when it is built, before any reads: in one handler with `web::Bytes`,
/// `web::Json` or `web::Payload`, whichever comes first in the arguments gets the body and
/// the other an empty one (`(web::Bytes, VerifiedWebhook)`: an empty
/// [`body`](Self::body)). Behind [`Verify`], any order gets the bytes to both. On a route
/// outside any verifying middleware it is [`WebhookRejection::NotVerified`] (a `500`
/// problem).
///
/// Its `Debug` prints the body's length, not the body (a `Debug` line may end up in a log,
/// and payloads may hold personal data).
///
/// ```
/// use hookguard::actix::VerifiedWebhook;
/// async fn handler(hook: VerifiedWebhook) -> String {
///     format!("{} sent {} bytes", hook.verified.provider(), hook.body.len())
/// }
/// # let _ = actix_web::web::post().to(handler);
/// ```
#[derive(Clone)]
pub struct VerifiedWebhook {
    /// What verification proved.
    pub verified: Verified<'static>,
    /// The raw body.
    pub body: Bytes,
}

impl fmt::Debug for VerifiedWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedWebhook")
            .field("verified", &self.verified)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl FromRequest for VerifiedWebhook {
    type Error = WebhookRejection;
    type Future = LocalFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        let Some(verified) = req.extensions().get::<Verified<'static>>().cloned() else {
            return Box::pin(ready(Err(WebhookRejection::NotVerified)));
        };
        let body = SharedBody::of(req, payload);
        Box::pin(async move { Ok(Self { verified, body: body.bytes().await? }) })
    }
}

/// The body the extractors of one request share through its extensions: actix gives all
/// of a handler's extractors one payload, which the first to read would empty for the
/// others. [`Verify`] leaves the bytes it verified here; without it (the application's
/// own middleware put the [`Verified`] there), the first of these extractors built (actix
/// builds them in argument order, each `from_request` at once) takes the payload
/// ([`SharedBody::of`]), the first polled reads it, bounded, and the others wait for its
/// bytes. An actix body extractor built before it (`web::Bytes` in `(web::Bytes,
/// VerifiedWebhook)`) has taken the payload already, and these read an empty one; one
/// built after it finds the payload taken, and gets an empty body.
struct SharedBody {
    /// The payload still to read: none for the bytes [`Verify`] left, or once taken.
    to_read: Cell<Option<ToRead>>,
    body: tokio::sync::OnceCell<Result<Bytes, Unread>>,
}

struct ToRead {
    payload: dev::Payload,
}

impl SharedBody {
    /// The bytes [`Verify`] verified, for the request's extensions.
    fn verified(bytes: Bytes) -> Rc<Self> {
        Rc::new(Self { to_read: Cell::new(None), body: tokio::sync::OnceCell::new_with(Some(Ok(bytes))) })
    }

    /// The request's shared body, or a new one over `payload` put in its extensions. Only
    /// a new one takes the payload: behind [`Verify`], actix's own `web::Bytes` or
    /// `web::Payload` still get the bytes it put back.
    fn of(req: &HttpRequest, payload: &mut dev::Payload) -> Rc<Self> {
        if let Some(shared) = req.extensions().get::<Rc<Self>>() {
            return Rc::clone(shared);
        }
        let to_read = ToRead { payload: payload.take() };
        let shared = Rc::new(Self { to_read: Cell::new(Some(to_read)), body: tokio::sync::OnceCell::new() });
        req.extensions_mut().insert(Rc::clone(&shared));
        shared
    }

    /// The bytes, read by the first caller within [`DEFAULT_BODY_LIMIT`] (never unbounded:
    /// a middleware of the application's that put the `Verified` there did not say what
    /// it allows) and [`DEFAULT_READ_TIMEOUT`].
    async fn bytes(&self) -> Result<Bytes, WebhookRejection> {
        let read = self
            .body
            .get_or_init(|| async {
                // Taken by a caller dropped before it finished: what it read is gone, so
                // this is an error, not an empty body.
                let Some(ToRead { payload }) = self.to_read.take() else {
                    return Err(Unread::Failed);
                };
                let limit = DEFAULT_BODY_LIMIT;
                let read = read_within(payload, limit, DEFAULT_READ_TIMEOUT).await;
                if read == Err(Unread::TooLarge) {
                    tracing::warn!(
                        limit,
                        "webhook body over hookguard's default limit (no hookguard::actix::Verify read it)"
                    );
                }
                read
            })
            .await;
        read.clone().map_err(WebhookRejection::from)
    }
}

/// The verified body deserialized as `T` (a `422` problem when it does not fit).
///
/// Unlike `web::Json`, the `Content-Type` is not checked (the signature vouches for the
/// bytes, whatever the sender labelled them): a body that is not JSON (a form body from
/// Slack or Twilio) is a `422`. In middleware mode that `422` ends the delivery's
/// reservation, so the sender's retries reach the handler again.
///
/// ```
/// use hookguard::actix::VerifiedJson;
/// async fn handler(VerifiedJson(event): VerifiedJson<serde_json::Value>) -> String {
///     event["type"].to_string()
/// }
/// # let _ = actix_web::web::post().to(handler);
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedJson<T>(pub T);

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for VerifiedJson<T> {
    type Error = WebhookRejection;
    type Future = LocalFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        let hook = VerifiedWebhook::from_request(req, payload);
        Box::pin(async move {
            let hook = hook.await?;
            serde_json::from_slice(&hook.body).map(VerifiedJson).map_err(WebhookRejection::Json)
        })
    }
}

#[cfg(feature = "source-controls")]
#[cfg_attr(docsrs, doc(cfg(feature = "source-controls")))]
pub use sources::{SourceControls, SourceControlsMiddleware};

#[cfg(feature = "source-controls")]
mod sources {
    use std::{fmt, net::IpAddr, rc::Rc, sync::Arc};

    use actix_web::{
        HttpMessage as _,
        body::{EitherBody, MessageBody},
        dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    };

    use super::{LocalFuture, Ready, answer, headers_of, ready};
    use crate::{
        guard::VerificationFailed,
        layer::source::{PEER_UNKNOWN, ResolvedWith, UnresolvedWith},
        problem::Problem,
        source::{AllowList, ClientAddr, LimitKey, Refused, SourceLimiter, TrustedProxies},
    };

    /// Who passed [`SourceControls`]: the client address, whether it was resolved here
    /// (not reused from an outer layer), and the rate-limit key.
    struct Admitted {
        client: Option<IpAddr>,
        resolved: bool,
        key: Option<LimitKey>,
    }

    /// Source controls as actix middleware: an [`AllowList`] (`403 source-not-allowed`)
    /// and a [`SourceLimiter`] (`429 rate-limited` with `Retry-After`), both answered
    /// before the body is read, with the same problem bodies as
    /// [`AllowListLayer`](crate::layer::AllowListLayer) and
    /// [`RateLimitLayer`](crate::layer::RateLimitLayer).
    ///
    /// The client address is the connection's peer ([`HttpRequest::peer_addr`](actix_web::HttpRequest::peer_addr)),
    /// or the hop behind [`trusted_proxies`](Self::trusted_proxies); it is passed on as a
    /// [`ClientAddr`] request extension. A [`ClientAddr`] an outer `SourceControls`
    /// resolved is reused when this one has no [`trusted_proxies`](Self::trusted_proxies)
    /// set, or the same ones; one resolved with other proxies is resolved again (one the
    /// application put in itself is believed). Wrap it around [`Verify`](super::Verify) or
    /// [`webhook_route`](super::webhook_route): every answer they mark with
    /// [`VerificationFailed`] (a forged, stale or malformed signature) spends from the
    /// sender's failure budget, and a sender whose failure budget is empty is refused
    /// before verification until it refills. Requests without a peer address get `500`.
    ///
    /// In actix, the last `wrap` runs first: put `.wrap(SourceControls::…)` after
    /// `.wrap(Verify::new(guard))`.
    ///
    /// ```
    /// # actix_web::rt::System::new().block_on(async {
    /// use std::time::Duration;
    /// use actix_web::{App, test, web};
    /// use hookguard::{actix::{SourceControls, webhook_route}, guard::Guard, providers::github, source::SourceLimiter};
    ///
    /// let limiter = SourceLimiter::builder()
    ///     .requests(100, Duration::from_secs(10))
    ///     .failures(2, Duration::from_secs(600))
    ///     .build()
    ///     .unwrap();
    /// let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
    /// let app = test::init_service(App::new().service(
    ///     web::resource("/hooks")
    ///         .wrap(SourceControls::new().allow_list("198.51.100.0/24".parse().unwrap()).rate_limit(limiter).scope("github"))
    ///         .route(webhook_route(guard)),
    /// ))
    /// .await;
    /// let from = |peer: &str| {
    ///     test::TestRequest::post()
    ///         .uri("/hooks")
    ///         .peer_addr(peer.parse().unwrap())
    ///         .insert_header(("x-hub-signature-256", "sha256=00"))
    ///         .set_payload("{}")
    ///         .to_request()
    /// };
    /// assert_eq!(test::call_service(&app, from("192.0.2.1:5000")).await.status(), 403);
    /// assert_eq!(test::call_service(&app, from("198.51.100.66:5000")).await.status(), 401);
    /// assert_eq!(test::call_service(&app, from("198.51.100.66:5000")).await.status(), 401);
    /// let refused = test::call_service(&app, from("198.51.100.66:5000")).await;
    /// assert_eq!(refused.status(), 429); // refused before verification
    /// assert!(refused.headers().contains_key("retry-after"));
    /// # });
    /// ```
    #[derive(Clone, Default)]
    #[must_use]
    pub struct SourceControls {
        allow: Option<AllowList>,
        limiter: Option<SourceLimiter>,
        /// `None`: not set (no proxies; a [`ClientAddr`] an outer layer resolved is reused).
        proxies: Option<TrustedProxies>,
        scope: Option<Arc<str>>,
        failure_statuses: Arc<[http::StatusCode]>,
    }

    impl fmt::Debug for SourceControls {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SourceControls")
                .field("allow", &self.allow)
                .field("limiter", &self.limiter)
                .field("proxies", &self.proxies)
                .field("scope", &self.scope)
                .field("failure_statuses", &self.failure_statuses)
                .finish()
        }
    }

    impl SourceControls {
        /// No controls yet: add an [`allow_list`](Self::allow_list), a
        /// [`rate_limit`](Self::rate_limit) or both.
        ///
        /// ```
        /// # actix_web::rt::System::new().block_on(async {
        /// use actix_web::{HttpResponse, dev::{Service, ServiceRequest, Transform, fn_service}, test};
        /// use hookguard::actix::SourceControls;
        /// let ok = fn_service(|req: ServiceRequest| async { Ok(req.into_response(HttpResponse::Ok().finish())) });
        /// let middleware = SourceControls::new().new_transform(ok).await.unwrap();
        /// let from = |peer: &str| test::TestRequest::post().peer_addr(peer.parse().unwrap()).to_srv_request();
        /// // No controls added: everyone passes.
        /// assert_eq!(middleware.call(from("192.0.2.1:5000")).await.unwrap().status(), 200);
        /// # });
        /// ```
        pub fn new() -> Self {
            Self::default()
        }

        /// Refuse clients outside `list` with `403` (clones share it:
        /// [`AllowList::replace`] takes effect at once).
        ///
        /// ```
        /// # actix_web::rt::System::new().block_on(async {
        /// use actix_web::{HttpResponse, dev::{Service, ServiceRequest, Transform, fn_service}, test};
        /// use hookguard::{actix::SourceControls, source::AllowList};
        /// let ok = fn_service(|req: ServiceRequest| async { Ok(req.into_response(HttpResponse::Ok().finish())) });
        /// let controls = SourceControls::new().allow_list("192.30.252.0/22".parse::<AllowList>().unwrap());
        /// let middleware = controls.new_transform(ok).await.unwrap();
        /// let from = |peer: &str| test::TestRequest::post().peer_addr(peer.parse().unwrap()).to_srv_request();
        /// assert_eq!(middleware.call(from("192.30.252.1:5000")).await.unwrap().status(), 200);
        /// assert_eq!(middleware.call(from("198.51.100.1:5000")).await.unwrap().status(), 403);
        /// # });
        /// ```
        pub fn allow_list(mut self, list: AllowList) -> Self {
            self.allow = Some(list);
            self
        }

        /// Rate limit by client address with `limiter`, spending from its failure budget
        /// on each answer marked [`VerificationFailed`] (clones share its state).
        ///
        /// ```
        /// # actix_web::rt::System::new().block_on(async {
        /// use actix_web::{HttpResponse, dev::{Service, ServiceRequest, Transform, fn_service}, test};
        /// use std::time::Duration;
        /// use hookguard::{actix::SourceControls, source::SourceLimiter};
        /// let ok = fn_service(|req: ServiceRequest| async { Ok(req.into_response(HttpResponse::Ok().finish())) });
        /// let limiter = SourceLimiter::builder().requests(1, Duration::from_secs(60)).build().unwrap();
        /// let middleware = SourceControls::new().rate_limit(limiter).new_transform(ok).await.unwrap();
        /// let from = |peer: &str| test::TestRequest::post().peer_addr(peer.parse().unwrap()).to_srv_request();
        /// assert_eq!(middleware.call(from("198.51.100.1:5000")).await.unwrap().status(), 200);
        /// let refused = middleware.call(from("198.51.100.1:5000")).await.unwrap();
        /// assert_eq!(refused.status(), 429);
        /// assert!(refused.headers().contains_key("retry-after"));
        /// # });
        /// ```
        pub fn rate_limit(mut self, limiter: SourceLimiter) -> Self {
            self.limiter = Some(limiter);
            self
        }

        /// The proxies whose forwarding header is believed (default: none). Set, a
        /// [`ClientAddr`] an outer `SourceControls` resolved is reused only if it had the
        /// same proxies (the same ranges in the same order, and the same header); not
        /// set, any is.
        ///
        /// ```
        /// # actix_web::rt::System::new().block_on(async {
        /// use actix_web::{HttpResponse, dev::{Service, ServiceRequest, Transform, fn_service}, test};
        /// use hookguard::{actix::SourceControls, source::TrustedProxies};
        /// let ok = fn_service(|req: ServiceRequest| async { Ok(req.into_response(HttpResponse::Ok().finish())) });
        /// let controls = SourceControls::new()
        ///     .allow_list("192.0.2.0/24".parse().unwrap())
        ///     .trusted_proxies(TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]));
        /// let middleware = controls.new_transform(ok).await.unwrap();
        /// let via_proxy = |client: &str| {
        ///     test::TestRequest::post()
        ///         .peer_addr("10.0.0.1:5000".parse().unwrap())
        ///         .insert_header(("x-forwarded-for", client))
        ///         .to_srv_request()
        /// };
        /// // The client behind the proxy is checked, not the proxy.
        /// assert_eq!(middleware.call(via_proxy("192.0.2.10")).await.unwrap().status(), 200);
        /// assert_eq!(middleware.call(via_proxy("198.51.100.1")).await.unwrap().status(), 403);
        /// # });
        /// ```
        pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
            self.proxies = Some(proxies);
            self
        }

        /// Counts under this endpoint name as well as the address (separate budgets for
        /// routes sharing one limiter).
        ///
        /// ```
        /// # actix_web::rt::System::new().block_on(async {
        /// use actix_web::{HttpResponse, dev::{Service, ServiceRequest, Transform, fn_service}, test};
        /// use std::time::Duration;
        /// use hookguard::{actix::SourceControls, source::SourceLimiter};
        /// let ok = fn_service(|req: ServiceRequest| async { Ok(req.into_response(HttpResponse::Ok().finish())) });
        /// let limiter = SourceLimiter::builder().requests(1, Duration::from_secs(60)).build().unwrap();
        /// let stripe = SourceControls::new().rate_limit(limiter.clone()).scope("stripe");
        /// let github = SourceControls::new().rate_limit(limiter).scope("github");
        /// let stripe = stripe.new_transform(ok).await.unwrap();
        /// let ok2 = fn_service(|req: ServiceRequest| async { Ok(req.into_response(HttpResponse::Ok().finish())) });
        /// let github = github.new_transform(ok2).await.unwrap();
        /// let from = |peer: &str| test::TestRequest::post().peer_addr(peer.parse().unwrap()).to_srv_request();
        /// assert_eq!(stripe.call(from("198.51.100.1:5000")).await.unwrap().status(), 200);
        /// assert_eq!(github.call(from("198.51.100.1:5000")).await.unwrap().status(), 200); // its own budget
        /// assert_eq!(stripe.call(from("198.51.100.1:5000")).await.unwrap().status(), 429);
        /// # });
        /// ```
        pub fn scope(mut self, scope: impl Into<Arc<str>>) -> Self {
            self.scope = Some(scope.into());
            self
        }

        /// Also treat answers with these statuses as failed verifications (for inner
        /// services that are not hookguard's; hookguard's own answers carry
        /// [`VerificationFailed`]).
        ///
        /// ```
        /// # actix_web::rt::System::new().block_on(async {
        /// use actix_web::{HttpResponse, dev::{Service, ServiceRequest, Transform, fn_service}, test};
        /// use std::time::Duration;
        /// use hookguard::{actix::SourceControls, source::SourceLimiter};
        /// // Not hookguard's verifier: it answers 401 and marks nothing.
        /// let verifier = fn_service(|req: ServiceRequest| async { Ok(req.into_response(HttpResponse::Unauthorized().finish())) });
        /// let limiter = SourceLimiter::builder().failures(1, Duration::from_secs(600)).build().unwrap();
        /// let controls = SourceControls::new().rate_limit(limiter).failure_statuses([http::StatusCode::UNAUTHORIZED]);
        /// let middleware = controls.new_transform(verifier).await.unwrap();
        /// let from = |peer: &str| test::TestRequest::post().peer_addr(peer.parse().unwrap()).to_srv_request();
        /// assert_eq!(middleware.call(from("198.51.100.1:5000")).await.unwrap().status(), 401);
        /// // The 401 spent the failure budget: refused before the verifier.
        /// assert_eq!(middleware.call(from("198.51.100.1:5000")).await.unwrap().status(), 429);
        /// # });
        /// ```
        pub fn failure_statuses(mut self, statuses: impl IntoIterator<Item = http::StatusCode>) -> Self {
            self.failure_statuses = statuses.into_iter().collect();
            self
        }

        /// The client address and the key to record failures under, or the problem that
        /// refuses the request.
        fn admit(&self, req: &ServiceRequest) -> Result<Admitted, Problem> {
            let (reused, unknown) = {
                let extensions = req.extensions();
                let known = extensions.get::<ClientAddr>().copied();
                let reused =
                    ResolvedWith::reusable(known, extensions.get::<ResolvedWith>(), self.proxies.as_ref());
                // An outer layer found the client unknown, and this one would have taken
                // its answer: unknown here too, not the peer (the proxy).
                let unknown = known.is_none()
                    && UnresolvedWith::applies(extensions.get::<UnresolvedWith>(), self.proxies.as_ref());
                (reused, unknown)
            };
            let (client, peer) = match (reused, req.peer_addr()) {
                (Some(ip), _) => (Some(ip), ip),
                (None, Some(peer)) if unknown => (None, peer.ip().to_canonical()),
                (None, Some(peer)) => {
                    let peer = peer.ip().to_canonical();
                    let client = match &self.proxies {
                        Some(proxies) if proxies.is_trusted(peer) => {
                            proxies.client_addr(peer, &headers_of(req.request()))
                        }
                        _ => Some(peer),
                    };
                    (client, peer)
                }
                (None, None) => {
                    tracing::error!(
                        "no peer address in the request: hookguard::actix::SourceControls needs a socket peer"
                    );
                    return Err(PEER_UNKNOWN);
                }
            };
            if let Some(list) = &self.allow {
                list.admit(client)?;
            }
            let resolved = reused.is_none();
            let Some(limiter) = &self.limiter else {
                return Ok(Admitted { client, resolved, key: None });
            };
            // An unusable header from a trusted proxy: counted apart, behind the peer.
            let mut key = client.map_or_else(|| LimitKey::behind(peer), LimitKey::new);
            if let Some(scope) = &self.scope {
                key = key.scope(Arc::clone(scope));
            }
            limiter.admit(&key).map_err(Refused::into_problem)?;
            // What is passed on as the client stays unknown for an unresolved one.
            Ok(Admitted { client, resolved, key: Some(key) })
        }
    }

    impl<S, B> Transform<S, ServiceRequest> for SourceControls
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
        B: MessageBody + 'static,
    {
        type Response = ServiceResponse<EitherBody<B>>;
        type Error = actix_web::Error;
        type Transform = SourceControlsMiddleware<S>;
        type InitError = ();
        type Future = Ready<Result<Self::Transform, Self::InitError>>;

        fn new_transform(&self, service: S) -> Self::Future {
            ready(Ok(SourceControlsMiddleware { service: Rc::new(service), controls: self.clone() }))
        }
    }

    /// The service [`SourceControls`] wraps around yours.
    ///
    /// ```
    /// # actix_web::rt::System::new().block_on(async {
    /// use actix_web::{HttpResponse, dev::{Service, ServiceRequest, Transform, fn_service}, test};
    /// use hookguard::actix::SourceControls;
    ///
    /// let controls = SourceControls::new().allow_list("198.51.100.0/24".parse().unwrap());
    /// let inner = fn_service(|req: ServiceRequest| async { Ok(req.into_response(HttpResponse::Ok().finish())) });
    /// let middleware = controls.new_transform(inner).await.unwrap();
    /// let from = |peer: &str| test::TestRequest::post().peer_addr(peer.parse().unwrap()).to_srv_request();
    /// assert_eq!(middleware.call(from("198.51.100.7:5000")).await.unwrap().status(), 200);
    /// assert_eq!(middleware.call(from("192.0.2.1:5000")).await.unwrap().status(), 403);
    /// # });
    /// ```
    pub struct SourceControlsMiddleware<S> {
        service: Rc<S>,
        controls: SourceControls,
    }

    impl<S> fmt::Debug for SourceControlsMiddleware<S> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SourceControlsMiddleware")
                .field("controls", &self.controls)
                .finish_non_exhaustive()
        }
    }

    impl<S, B> Service<ServiceRequest> for SourceControlsMiddleware<S>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
        B: MessageBody + 'static,
    {
        type Response = ServiceResponse<EitherBody<B>>;
        type Error = actix_web::Error;
        type Future = LocalFuture<Result<Self::Response, Self::Error>>;

        forward_ready!(service);

        fn call(&self, req: ServiceRequest) -> Self::Future {
            let Admitted { client, resolved, key } = match self.controls.admit(&req) {
                Ok(admitted) => admitted,
                Err(problem) => return Box::pin(async move { Ok(answer(req, problem.into_response())) }),
            };
            if resolved {
                let mut extensions = req.extensions_mut();
                if let Some(ip) = client {
                    extensions.insert(ClientAddr(ip));
                    extensions.insert(ResolvedWith::new(ip, self.controls.proxies.as_ref()));
                } else {
                    // Unknown here: not the client an outer layer resolved with other
                    // proxies, and unknown to an inner layer that would reuse this one's.
                    extensions.remove::<ClientAddr>();
                    extensions.remove::<ResolvedWith>();
                    extensions.insert(UnresolvedWith::new(self.controls.proxies.as_ref()));
                }
            }
            let service = Rc::clone(&self.service);
            let limiter = self.controls.limiter.clone();
            let failure_statuses = Arc::clone(&self.controls.failure_statuses);
            Box::pin(async move {
                let res = service.call(req).await?;
                if let (Some(limiter), Some(key)) = (limiter, key) {
                    let status = res.status().as_u16();
                    let failed = res.response().extensions().get::<VerificationFailed>().is_some()
                        || failure_statuses.iter().any(|s| s.as_u16() == status);
                    if failed {
                        limiter.record_failure(&key);
                    }
                }
                Ok(res.map_into_left_body())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::known;

    /// A payload that yields `chunks` one poll at a time.
    fn chunked(chunks: Vec<Result<Bytes, PayloadError>>) -> dev::Payload {
        let stream: Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, PayloadError>>>> =
            Box::pin(futures_util::stream::iter(chunks));
        dev::Payload::from(stream)
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        actix_web::rt::System::new().block_on(f)
    }

    /// The whole payload within `limit`, as `Verify` reads it (the read timeout far off).
    async fn all(payload: dev::Payload, limit: usize) -> Result<Bytes, Unread> {
        read_within(payload, limit, Duration::from_secs(600)).await
    }

    #[test]
    fn a_body_in_one_chunk_is_that_chunk_not_a_copy() {
        let body = Bytes::from(vec![b'x'; 1024]);
        let got = block_on(all(chunked(vec![Ok(body.clone())]), 1024)).unwrap();
        assert_eq!(got, body);
        assert_eq!(got.as_ptr(), body.as_ptr(), "the same memory");
        // A payload `Verify` put back is one chunk too.
        let got = block_on(all(dev::Payload::from(body.clone()), usize::MAX)).unwrap();
        assert_eq!(got.as_ptr(), body.as_ptr());
        assert!(block_on(all(chunked(Vec::new()), 0)).unwrap().is_empty());
    }

    #[test]
    fn a_body_in_several_chunks_is_gathered_in_order_within_the_limit() {
        let parts = ["{\"a\":", "1,", "\"b\":2", "}"];
        let chunks = parts.iter().map(|p| Ok(Bytes::from_static(p.as_bytes()))).collect();
        let got = block_on(all(chunked(chunks), 13)).unwrap();
        assert_eq!(got, "{\"a\":1,\"b\":2}");
        // One byte over the limit, whether in the first chunk or across several: refused.
        let over = |chunks: Vec<&'static str>, limit| {
            let chunks = chunks.into_iter().map(|c| Ok(Bytes::from_static(c.as_bytes()))).collect();
            block_on(all(chunked(chunks), limit)) == Err(Unread::TooLarge)
        };
        assert!(over(vec!["12345"], 4));
        assert!(over(vec!["12", "34", "5"], 4));
        assert!(!over(vec!["12", "34"], 4));
    }

    /// Without the bytes `Verify` leaves, the extractors read the payload within the
    /// default limit, and a body that does not fit is answered, displayed and
    /// debug-printed without its value.
    #[test]
    fn the_extractors_read_within_the_limit_and_do_not_quote_the_body() {
        #[derive(Debug, serde::Deserialize)]
        struct Order {
            #[allow(dead_code)]
            amount: u32,
        }
        let request = |body: Bytes| {
            let (req, _) = actix_web::test::TestRequest::post().to_http_parts();
            req.extensions_mut().insert(Verified::new("t", None, None, None, [0; 32], 0));
            (req, dev::Payload::from(body))
        };
        let (req, mut payload) = request(Bytes::from(vec![b' '; DEFAULT_BODY_LIMIT + 1]));
        let over = block_on(VerifiedWebhook::from_request(&req, &mut payload));
        assert!(matches!(over, Err(WebhookRejection::TooLarge)), "{over:?}");
        let (req, mut payload) = request(Bytes::from_static(br#"{"amount":"4111 1111"}"#));
        let got = block_on(VerifiedJson::<Order>::from_request(&req, &mut payload));
        let Err(rejection) = got else { panic!("{got:?}") };
        let res = rejection.error_response();
        assert_eq!(res.status(), 422);
        let body = block_on(actix_web::body::to_bytes(res.into_body())).unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("4111") && !rejection.to_string().contains("4111"), "{text}");
        assert!(text.contains("does not fit the expected type"), "{text}");
        let debug = format!("{rejection:?} {rejection:#?}");
        assert!(!debug.contains("4111") && debug.contains("does not fit the expected type"), "{debug}");
    }

    /// Behind `Verify`, every extractor gets the verified bytes themselves (not a copy),
    /// and leaves the payload to actix's own extractors.
    #[test]
    fn every_extractor_gets_the_verified_bytes_and_leaves_the_payload() {
        let body = Bytes::from_static(br#"{"amount":7}"#);
        let (req, _) = actix_web::test::TestRequest::post().to_http_parts();
        req.extensions_mut().insert(Verified::new("t", None, None, None, [0; 32], 0));
        req.extensions_mut().insert(SharedBody::verified(body.clone()));
        let mut payload = dev::Payload::from(body.clone());
        let first = VerifiedWebhook::from_request(&req, &mut payload);
        let second = VerifiedWebhook::from_request(&req, &mut payload);
        let json = VerifiedJson::<serde_json::Value>::from_request(&req, &mut payload);
        let (first, second, json) = block_on(async { (first.await, second.await, json.await) });
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.body.as_ptr(), body.as_ptr(), "the same memory");
        assert_eq!(second.body.as_ptr(), body.as_ptr(), "the same memory");
        assert_eq!(json.unwrap().0["amount"], 7);
        let rest = block_on(all(payload, usize::MAX)).unwrap();
        assert_eq!(rest, body, "the payload is left for web::Bytes");
        // Not verified: an error, and the payload is not touched.
        let (bare, _) = actix_web::test::TestRequest::post().to_http_parts();
        let mut payload = dev::Payload::from(body.clone());
        let got = block_on(VerifiedWebhook::from_request(&bare, &mut payload));
        assert!(matches!(got, Err(WebhookRejection::NotVerified)), "{got:?}");
        assert_eq!(block_on(all(payload, usize::MAX)).unwrap(), body);
    }

    /// Without `Verify`, a payload that stops coming is answered `408` once the default
    /// read timeout has passed (on tokio's paused clock: no real wait), for every
    /// extractor of the handler.
    #[test]
    fn without_verify_a_body_that_stops_coming_is_a_408() {
        use futures_util::StreamExt as _;
        block_on(async {
            tokio::time::pause();
            let (req, _) = actix_web::test::TestRequest::post().to_http_parts();
            req.extensions_mut().insert(Verified::new("t", None, None, None, [0; 32], 0));
            let stalled = futures_util::stream::iter([Ok(Bytes::from_static(b"{"))])
                .chain(futures_util::stream::pending());
            let stream: Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, PayloadError>>>> =
                Box::pin(stalled);
            let mut payload = dev::Payload::from(stream);
            let start = tokio::time::Instant::now();
            let first = VerifiedWebhook::from_request(&req, &mut payload);
            let second = VerifiedJson::<serde_json::Value>::from_request(&req, &mut payload);
            let (first, second) = futures_util::join!(first, second);
            // The timer's resolution is a millisecond.
            let waited = start.elapsed();
            assert!(
                waited >= DEFAULT_READ_TIMEOUT && waited < DEFAULT_READ_TIMEOUT + Duration::from_secs(1),
                "{waited:?}"
            );
            assert!(matches!(first, Err(WebhookRejection::Timeout)), "{first:?}");
            let Err(rejection) = second else { panic!("{second:?}") };
            assert!(matches!(rejection, WebhookRejection::Timeout), "{rejection:?}");
            let res = rejection.error_response();
            assert_eq!(res.status(), 408);
            let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
            assert!(String::from_utf8_lossy(&body).contains("body-timeout"));
        });
    }

    #[test]
    fn a_payload_error_is_an_error_not_a_short_body() {
        let chunks = vec![Ok(Bytes::from_static(b"12")), Err(PayloadError::Incomplete(None))];
        assert_eq!(block_on(all(chunked(chunks), 100)), Err(Unread::Failed));
    }

    /// A payload an outer layer timed out (an `io::Error` of kind `TimedOut` in actix's
    /// `PayloadError`) is answered `408`, by `Verify` and by the extractors, as the Tower
    /// side answers a body timed out around it.
    #[test]
    fn an_outer_timeout_is_a_request_timeout() {
        let timed_out = || {
            let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow sender");
            chunked(vec![Ok(Bytes::from_static(b"12")), Err(PayloadError::Io(io))])
        };
        let guard = Guard::builder("t", crate::providers::github::scheme("s").unwrap()).build();
        assert_eq!(block_on(read(&guard, timed_out())).unwrap_err().code(), known::BODY_TIMEOUT.code());
        let incomplete = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow sender");
        let cut = chunked(vec![Err(PayloadError::Incomplete(Some(incomplete)))]);
        assert_eq!(block_on(read(&guard, cut)).unwrap_err().code(), known::BODY_TIMEOUT.code());
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let reset = chunked(vec![Err(PayloadError::Io(reset))]);
        assert_eq!(block_on(read(&guard, reset)).unwrap_err().code(), known::BODY_ERROR.code());
        let (req, _) = actix_web::test::TestRequest::post().to_http_parts();
        req.extensions_mut().insert(Verified::new("t", None, None, None, [0; 32], 0));
        let got = block_on(VerifiedWebhook::from_request(&req, &mut timed_out()));
        assert!(matches!(got, Err(WebhookRejection::Timeout)), "{got:?}");
    }

    /// An outer limit's refusal (actix's own `Overflow`) is `413`, as the Tower side
    /// answers an outer `RequestBodyLimitLayer`'s; other payload errors stay `400`.
    #[test]
    fn an_outer_limits_overflow_is_too_large() {
        let guard = Guard::builder("t", crate::providers::github::scheme("s").unwrap()).build();
        let overflow = vec![Ok(Bytes::from_static(b"12")), Err(PayloadError::Overflow)];
        let got = block_on(read(&guard, chunked(overflow)));
        assert_eq!(got.unwrap_err().code(), known::BODY_TOO_LARGE.code());
        let cut = vec![Ok(Bytes::from_static(b"12")), Err(PayloadError::Incomplete(None))];
        assert_eq!(block_on(read(&guard, chunked(cut))).unwrap_err().code(), known::BODY_ERROR.code());
        // The extractors, without `Verify`: too large as well.
        let (req, _) = actix_web::test::TestRequest::post().to_http_parts();
        req.extensions_mut().insert(Verified::new("t", None, None, None, [0; 32], 0));
        let mut payload = chunked(vec![Ok(Bytes::from_static(b"12")), Err(PayloadError::Overflow)]);
        let got = block_on(VerifiedWebhook::from_request(&req, &mut payload));
        assert!(matches!(got, Err(WebhookRejection::TooLarge)), "{got:?}");
    }

    #[test]
    fn header_names_come_back_equal_whatever_the_cache_holds() {
        let mut names = HeaderNames::new();
        let wanted = ["webhook-id", "webhook-signature", "content-type", "x-a", "x-b", "x-c", "host"];
        for _ in 0..3 {
            for name in wanted {
                assert_eq!(names.get(name).unwrap().as_str(), name);
            }
        }
        // Names that share a slot evict each other and still come back right.
        let slot = |name: &str| {
            let b = name.as_bytes();
            (b.len() * 7
                + usize::from(b[0]) * 3
                + usize::from(b[b.len() / 2]) * 5
                + usize::from(b[b.len() - 1]))
                % 64
        };
        let first = "x-aaaa";
        let rival =
            (0..10_000).map(|n| format!("x-{n}")).find(|n| slot(n) == slot(first) && n != first).unwrap();
        for name in [first, &rival, first, &rival] {
            assert_eq!(names.get(name).unwrap().as_str(), name);
        }
        assert!(names.get("bad name").is_none());
        assert!(names.get("").is_none());
    }

    /// An answer's headers reach actix with their sensitive flag: Asana's handshake echoes
    /// its secret marked (it lost the mark here, so HTTP/2 could index it and `Debug`
    /// showed it), and the other headers stay unmarked.
    #[test]
    fn an_answers_sensitive_header_stays_marked() {
        let mut h = http::HeaderMap::new();
        h.insert(crate::providers::asana::SECRET_HEADER, "b537207f20cbfa02357cf448134da559".parse().unwrap());
        let (_, answer) = crate::providers::asana::handshake(&h).expect("a handshake");
        let out = respond(answer);
        let echoed = out.headers().get("x-hook-secret").expect("echoed");
        assert_eq!(echoed.as_bytes(), b"b537207f20cbfa02357cf448134da559");
        assert!(echoed.is_sensitive());
        assert!(
            out.headers()
                .iter()
                .filter(|(n, _)| n.as_str() != "x-hook-secret")
                .all(|(_, v)| !v.is_sensitive())
        );
    }

    #[test]
    fn actix_headers_arrive_in_order_with_repeats_and_the_sensitive_flag() {
        let mut sensitive = actix_web::http::header::HeaderValue::from_static("secret");
        sensitive.set_sensitive(true);
        let mut req = actix_web::test::TestRequest::default()
            .append_header(("x-a", "1"))
            .append_header(("x-a", "2"))
            .append_header(("webhook-id", "msg_1"))
            .append_header(("x-bin", actix_web::http::header::HeaderValue::from_bytes(b"\xffok").unwrap()));
        req = req.append_header(("authorization", sensitive));
        let headers = headers_of(&req.to_http_request());
        let a: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(headers["webhook-id"], "msg_1");
        assert_eq!(headers["x-bin"].as_bytes(), b"\xffok");
        assert!(headers["authorization"].is_sensitive());
        assert_eq!(headers.len(), 5);
        // More than the stack gathers: a second pass, the same map.
        let mut many = actix_web::test::TestRequest::default();
        for n in 0..40 {
            many = many.append_header((format!("x-h{n}"), n.to_string()));
        }
        let headers = headers_of(&many.to_http_request());
        assert_eq!(headers.len(), 40);
        assert!((0..40).all(|n| headers[format!("x-h{n}").as_str()] == n.to_string().as_str()));
    }

    /// The span records a long extension method cut, as the Tower services' do.
    #[test]
    fn the_span_records_a_long_method_cut() {
        let guard = Guard::builder("github", crate::providers::github::scheme("s3cr3t").unwrap()).build();
        let method = actix_web::http::Method::from_bytes(&[b'X'; 64 << 10]).unwrap();
        let req = actix_web::test::TestRequest::default().method(method).uri("/hooks").to_http_request();
        let (_span, methods) = crate::layer::span_methods(|| span(&guard, &req));
        assert_eq!(methods, ["X".repeat(16)]);
        let post = actix_web::test::TestRequest::post().uri("/hooks").to_http_request();
        let (_span, methods) = crate::layer::span_methods(|| span(&guard, &post));
        assert_eq!(methods, ["POST"]);
    }
}
