//! The framework-free pipeline: (request head, body bytes) → verify → hand-off → an
//! answer, with a replay mark between the two in middleware mode ([`Guard::reserve`],
//! [`Guard::check`]); the terminal pipeline ([`Guard::accept`]) refuses replays by the
//! inbox's unique key. The Tower layers and the actix adapter both call it; neither
//! re-implements a step.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use hookguard::{guard::Guard, inbox::{Inbox, MemoryInbox}, providers::github};
//!
//! let inbox = Arc::new(MemoryInbox::new());
//! let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap())
//!     .inbox(inbox.clone())
//!     .build();
//! let (parts, ()) = http::Request::post("/hooks/github")
//!     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
//!     .header("x-github-delivery", "d-1")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! let res = guard.accept(&parts, "Hello, World!".into()).await;
//! assert_eq!(res.status(), 202);
//! let again = guard.accept(&parts, "Hello, World!".into()).await;
//! assert_eq!(again.status(), 200); // duplicate: acknowledged, not processed again
//! assert_eq!(inbox.depth().await.unwrap(), 1);
//! # }
//! ```

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Response, StatusCode, header, request::Parts};

use crate::{
    Secret,
    clock::{Clock, SystemClock},
    inbox::{Inbox, InboxError, Labels, Pushed, Webhook},
    problem::{Problem, known},
    replay::{BoxFuture, Mark, MemoryReplayStore, ReplayStore},
    verify::{Reason, Scheme, Tolerance, Verified, WebhookRequest},
};

/// Default body limit: 1 MiB.
///
/// ```
/// use hookguard::{guard::{DEFAULT_BODY_LIMIT, Guard}, providers::github};
/// assert_eq!(DEFAULT_BODY_LIMIT, 1024 * 1024);
/// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
/// assert_eq!(guard.body_limit(), DEFAULT_BODY_LIMIT);
/// ```
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// Default cap on the request head: the bytes of every header name and value together
/// (64 KiB). HTTP servers cap the head too (hyper: about 400 KiB); this keeps the work a
/// scheme does on header values (hashing an id, parsing a timestamp) small whatever the
/// server allows.
///
/// ```
/// use hookguard::{guard::{DEFAULT_HEADER_LIMIT, Guard}, providers::github};
/// assert_eq!(DEFAULT_HEADER_LIMIT, 64 * 1024);
/// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
/// let big = http::Request::post("/").header("x-padding", "a".repeat(DEFAULT_HEADER_LIMIT)).body(()).unwrap();
/// assert_eq!(guard.precheck(&big.into_parts().0).unwrap_err().status(), 431);
/// ```
pub const DEFAULT_HEADER_LIMIT: usize = 64 * 1024;
/// Default time to receive the whole body.
///
/// ```
/// use std::time::Duration;
/// use hookguard::{guard::{DEFAULT_READ_TIMEOUT, Guard}, providers::github};
/// assert_eq!(DEFAULT_READ_TIMEOUT, Duration::from_secs(10));
/// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
/// assert_eq!(guard.read_timeout(), DEFAULT_READ_TIMEOUT);
/// ```
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Replay marks for schemes without a timestamp live this long by default (72 hours,
/// longer than providers' retry schedules); set it with [`GuardBuilder::replay_ttl`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use hookguard::{clock::ManualClock, guard::{Checked, DEFAULT_UNTIMED_REPLAY_TTL, Guard}};
/// use hookguard::{providers::github, verify::{Outgoing, Sign}};
///
/// assert_eq!(DEFAULT_UNTIMED_REPLAY_TTL, Duration::from_secs(72 * 3600));
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let scheme = github::scheme("s3cr3t").unwrap(); // GitHub signs no timestamp
/// let guard = Guard::builder("github", scheme.clone()).clock(clock.clone()).build();
/// let mut req = http::Request::post("/");
/// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
///     req = req.header(name, value);
/// }
/// let (parts, ()) = req.body(()).unwrap().into_parts();
/// let Checked::New { mark, .. } = guard.check(&parts, &"{}".into()).await else { panic!() };
/// mark.keep();
/// clock.advance(DEFAULT_UNTIMED_REPLAY_TTL - Duration::from_secs(1));
/// assert!(matches!(guard.check(&parts, &"{}".into()).await, Checked::Duplicate(_)));
/// clock.advance(Duration::from_secs(2)); // the mark has expired
/// assert!(matches!(guard.check(&parts, &"{}".into()).await, Checked::New { .. }));
/// # }
/// ```
pub const DEFAULT_UNTIMED_REPLAY_TTL: Duration = Duration::from_secs(72 * 3600);

/// How long a delivery's replay mark lives: for a timestamp the signature covers, under a
/// tolerance with a past bound, until that timestamp goes stale (a timestamp ahead of this
/// clock, where the future is not checked, stays fresh longer than the window), and never
/// less than the whole window (room for replicas' clocks to differ), or the `configured`
/// time to live ([`GuardBuilder::replay_ttl`]) when that is longer; for any other delivery
/// (no timestamp, one the signature does not cover, no past bound) the configured one, else
/// [`DEFAULT_UNTIMED_REPLAY_TTL`].
fn replay_ttl(
    configured: Option<Duration>,
    tolerance: Tolerance,
    verified: &Verified<'_>,
    now: i128,
) -> Duration {
    match (configured, fresh_for(tolerance, verified, now)) {
        // A shorter mark would let a copy through while it is still fresh.
        (Some(ttl), Some(fresh)) => ttl.max(fresh),
        (Some(ttl), None) => ttl,
        (None, Some(fresh)) => fresh,
        (None, None) => DEFAULT_UNTIMED_REPLAY_TTL,
    }
}

/// How long a delivery with a signed timestamp could still pass the tolerance: until the
/// timestamp goes stale, and at least the whole window. `None` without a signed
/// timestamp or a past tolerance.
fn fresh_for(tolerance: Tolerance, verified: &Verified<'_>, now: i128) -> Option<Duration> {
    let (Some(window), Some(past), Some(at)) =
        (tolerance.replay_window(), tolerance.past(), verified.timestamp_nanos())
    else {
        return None;
    };
    if !verified.timestamp_is_signed() {
        return None;
    }
    let stale_at = at.saturating_add(i128::try_from(past.as_nanos()).unwrap_or(i128::MAX));
    let left = u64::try_from(stale_at.saturating_sub(now).max(0)).map_or(Duration::MAX, Duration::from_nanos);
    Some(window.max(left))
}

/// How long a reservation lives by default in middleware mode (60 s); set it with
/// [`GuardBuilder::pending_lease`].
///
/// ```
/// assert_eq!(hookguard::guard::DEFAULT_PENDING_LEASE.as_secs(), 60);
/// ```
pub const DEFAULT_PENDING_LEASE: Duration = Duration::from_secs(60);

/// A provider handshake: requests that are answered instead of being handed off.
///
/// `before` sees requests before verification (GET/HEAD challenges, Asana's
/// `X-Hook-Secret`); `after` sees verified requests (Slack `url_verification`, Zoom
/// `endpoint.url_validation`, Twitch callback verification, Discord PING).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use http::{Method, Response, request::Parts};
/// use hookguard::{guard::{Guard, Handshake, HandshakeReply}, providers::github};
///
/// /// Answers a monitoring probe (`GET`) without a signature.
/// #[derive(Debug)]
/// struct Probe;
///
/// impl Handshake for Probe {
///     fn before(&self, parts: &Parts, _body: &[u8]) -> Option<HandshakeReply> {
///         (parts.method == Method::GET).then(|| HandshakeReply::Respond(Response::new(b"up".to_vec())))
///     }
/// }
///
/// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).handshake(Probe).build();
/// let (get, ()) = http::Request::get("/").body(()).unwrap().into_parts();
/// let res = guard.accept(&get, bytes::Bytes::new()).await;
/// assert_eq!((res.status(), res.body().as_slice()), (http::StatusCode::OK, &b"up"[..]));
/// let (post, ()) = http::Request::post("/").body(()).unwrap().into_parts();
/// assert_eq!(guard.accept(&post, "{}".into()).await.status(), 401); // not signed
/// # }
/// ```
pub trait Handshake: fmt::Debug + Send + Sync + 'static {
    /// Answers an unverified request, or `None` to go on.
    ///
    /// ```
    /// use hookguard::{guard::{Handshake, HandshakeReply}, handshake::DropboxChallenge};
    /// let (parts, ()) = http::Request::get("/?challenge=abc").body(()).unwrap().into_parts();
    /// let Some(HandshakeReply::Respond(res)) = DropboxChallenge.before(&parts, b"") else { panic!() };
    /// assert_eq!(res.body(), b"abc");
    /// let (post, ()) = http::Request::post("/").body(()).unwrap().into_parts();
    /// assert!(DropboxChallenge.before(&post, b"{}").is_none());
    /// ```
    fn before(&self, _parts: &Parts, _body: &[u8]) -> Option<HandshakeReply> {
        None
    }
    /// Answers a verified request, or `None` to hand it off.
    ///
    /// ```
    /// use hookguard::{guard::Handshake, handshake::SlackUrlVerification, verify::Verified};
    /// let (parts, ()) = http::Request::post("/").body(()).unwrap().into_parts();
    /// let verified = Verified::new("slack", None, None, None, [0; 32], 0);
    /// let body = br#"{"type":"url_verification","challenge":"c-1"}"#;
    /// let res = SlackUrlVerification.after(&parts, body, &verified).unwrap();
    /// assert_eq!(res.body(), br#"{"challenge":"c-1"}"#);
    /// assert!(SlackUrlVerification.after(&parts, br#"{"type":"event_callback"}"#, &verified).is_none());
    /// ```
    fn after(&self, _parts: &Parts, _body: &[u8], _verified: &Verified<'_>) -> Option<Response<Vec<u8>>> {
        None
    }

    /// Whether this handshake hands a secret over ([`HandshakeReply::AdoptSecret`]: Asana),
    /// which only a [`SchemeSource`] that keeps secrets can take (not a fixed scheme). A
    /// guard built with such a handshake and a fixed scheme warns once.
    ///
    /// ```
    /// use hookguard::{guard::Handshake, handshake::{AsanaHookSecret, SlackUrlVerification}};
    /// assert!(AsanaHookSecret.hands_over_secret());
    /// assert!(!SlackUrlVerification.hands_over_secret());
    /// ```
    fn hands_over_secret(&self) -> bool {
        false
    }
}

/// What a handshake answers.
///
/// ```
/// use hookguard::{guard::{Handshake, HandshakeReply}, handshake::AsanaHookSecret};
/// let (parts, ()) = http::Request::post("/").header("x-hook-secret", "b537207f20cbfa02357cf448134da559").body(()).unwrap().into_parts();
/// let Some(HandshakeReply::AdoptSecret(secret, res)) = AsanaHookSecret.before(&parts, b"") else { panic!() };
/// assert_eq!(secret.expose(), b"b537207f20cbfa02357cf448134da559");
/// assert_eq!(res.headers()["x-hook-secret"], "b537207f20cbfa02357cf448134da559");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeReply {
    /// Send this response.
    Respond(Response<Vec<u8>>),
    /// Keep this secret for the endpoint (through the [`SchemeSource`]), then send this
    /// response (Asana).
    AdoptSecret(Secret, Response<Vec<u8>>),
    /// A handshake with a wrong credential (Meta's `hub.verify_token`): refused like a
    /// forged signature (`403 handshake-refused`, counted and marked
    /// [`VerificationFailed`], so that a rate limit spends the sender's failure budget on
    /// each guess).
    ///
    /// ```
    /// use hookguard::{guard::{Handshake, HandshakeReply}, handshake::MetaSubscription};
    /// let meta = MetaSubscription::new("my-verify-token").unwrap();
    /// let uri = "/?hub.mode=subscribe&hub.verify_token=a-guess&hub.challenge=1";
    /// let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
    /// assert!(matches!(meta.before(&parts, b""), Some(HandshakeReply::Refuse)));
    /// ```
    Refuse,
}

/// Why a scheme could not be found for a request.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use hookguard::{guard::{Guard, SchemeSource, SourceError}, replay::BoxFuture, verify::Scheme};
///
/// /// A secret store that is down.
/// #[derive(Debug)]
/// struct Down;
///
/// impl SchemeSource for Down {
///     fn scheme<'a>(&'a self, _: &'a http::request::Parts) -> BoxFuture<'a, Result<Arc<dyn Scheme>, SourceError>> {
///         Box::pin(async { Err(SourceError::Unavailable("connection refused".into())) })
///     }
/// }
///
/// let guard = Guard::builder_with_source("github", Down).build();
/// let (parts, ()) = http::Request::post("/").body(()).unwrap().into_parts();
/// let res = guard.accept(&parts, "{}".into()).await;
/// assert_eq!(res.status(), 503);
/// assert!(res.headers().contains_key("retry-after"));
/// assert_eq!(SourceError::Unknown.to_string(), "no scheme for this request");
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceError {
    /// No endpoint/tenant for this request (404).
    Unknown,
    /// The secret store failed (503).
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// This source cannot keep secrets handed over at run time.
    Unsupported,
    /// The handshake may not set a secret here: the endpoint has one already, or another
    /// handshake is storing one (403).
    Refused,
    /// The source will not look this request's secrets up now, for a reason anyone can
    /// cause: a limit on fetches of keys not seen before, or a recent failure to fetch the
    /// same one (PayPal's certificates). Answered as [`Unavailable`](Self::Unavailable)
    /// (`503` + `Retry-After`: the genuine sender retries), but logged at debug only and
    /// counted apart (`secrets-throttled`), so that a flood of made-up requests neither
    /// floods the logs nor reads as an outage of the secret store.
    ///
    /// ```
    /// use hookguard::guard::SourceError;
    /// let e = SourceError::Throttled("too many new certificate URLs lately".into());
    /// assert_eq!(e.to_string(), "secret lookup throttled: too many new certificate URLs lately");
    /// ```
    Throttled(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("no scheme for this request"),
            Self::Unavailable(e) => write!(f, "secret source failed: {e}"),
            Self::Unsupported => f.write_str("this secret source cannot adopt secrets"),
            Self::Refused => f.write_str("the endpoint has a secret already, or one is being stored"),
            Self::Throttled(e) => write!(f, "secret lookup throttled: {e}"),
        }
    }
}

impl std::error::Error for SourceError {}

/// Where the scheme for a request comes from: fixed, or looked up per request (one
/// secret per tenant). See [`TenantSchemes`](crate::tenant::TenantSchemes).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{collections::HashMap, sync::Arc};
/// use hookguard::{guard::{Guard, SchemeSource, SourceError}, providers::github, replay::BoxFuture};
/// use hookguard::verify::{Outgoing, Scheme, Sign};
///
/// /// One GitHub secret per tenant, the tenant named by the path (`/hooks/{tenant}`).
/// #[derive(Debug)]
/// struct ByPath(HashMap<&'static str, Arc<dyn Scheme>>);
///
/// impl SchemeSource for ByPath {
///     fn scheme<'a>(&'a self, parts: &'a http::request::Parts) -> BoxFuture<'a, Result<Arc<dyn Scheme>, SourceError>> {
///         let tenant = parts.uri.path().trim_start_matches("/hooks/");
///         let found = self.0.get(tenant).cloned().ok_or(SourceError::Unknown);
///         Box::pin(std::future::ready(found))
///     }
///     fn namespace(&self, parts: &http::request::Parts) -> Option<String> {
///         Some(parts.uri.path().trim_start_matches("/hooks/").to_owned())
///     }
/// }
///
/// let acme = github::scheme("acme-secret").unwrap();
/// let source = ByPath(HashMap::from([("acme", Arc::new(acme.clone()) as Arc<dyn Scheme>)]));
/// let guard = Guard::builder_with_source("github", source).inbox(hookguard::inbox::MemoryInbox::new()).build();
/// let mut req = http::Request::post("/hooks/acme");
/// for (name, value) in acme.sign(&Outgoing::new(b"{}")).unwrap() {
///     req = req.header(name, value);
/// }
/// let (parts, ()) = req.body(()).unwrap().into_parts();
/// assert_eq!(guard.accept(&parts, "{}".into()).await.status(), 202);
/// let (unknown, ()) = http::Request::post("/hooks/globex").body(()).unwrap().into_parts();
/// assert_eq!(guard.accept(&unknown, "{}".into()).await.status(), 404);
/// # }
/// ```
pub trait SchemeSource: fmt::Debug + Send + Sync + 'static {
    /// The scheme for this request.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::{FixedScheme, SchemeSource}, providers::github};
    /// let source = FixedScheme(std::sync::Arc::new(github::scheme("s3cr3t").unwrap()));
    /// let (parts, ()) = http::Request::post("/").body(()).unwrap().into_parts();
    /// assert_eq!(source.scheme(&parts).await.unwrap().provider(), "github");
    /// # }
    /// ```
    fn scheme<'a>(&'a self, parts: &'a Parts) -> BoxFuture<'a, Result<Arc<dyn Scheme>, SourceError>>;

    /// The sender this request comes from, when one endpoint serves several senders
    /// (tenants) whose delivery ids are unique only per sender: it becomes part of the
    /// replay and inbox key (`{endpoint}:{length}:{namespace}:{id}`), so that one
    /// sender's delivery is never taken for a copy of another's with the same id.
    /// `None` (the default): one sender per endpoint, the key is `{endpoint}:{id}`.
    ///
    /// It must name the sender one way only: if two spellings (`acme`, `ACME`) load the
    /// same secrets, a delivery replayed under the other spelling would be taken for a
    /// new one. [`TenantSchemes`](crate::tenant::TenantSchemes) answers with its tenant
    /// finder's text.
    ///
    /// ```
    /// use hookguard::{guard::{FixedScheme, SchemeSource}, providers::github};
    /// let source = FixedScheme(std::sync::Arc::new(github::scheme("s").unwrap()));
    /// let (parts, ()) = http::Request::post("/").body(()).unwrap().into_parts();
    /// assert_eq!(source.namespace(&parts), None);
    /// ```
    fn namespace(&self, _parts: &Parts) -> Option<String> {
        None
    }

    /// Keeps a secret handed over by the provider at run time (Asana). The default keeps
    /// none: [`SourceError::Unsupported`] (the guard answers `403`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{Secret, guard::{FixedScheme, SchemeSource, SourceError}, providers::asana};
    /// let source = FixedScheme(std::sync::Arc::new(asana::scheme("s3cr3t").unwrap()));
    /// let (parts, ()) = http::Request::post("/").body(()).unwrap().into_parts();
    /// let kept = source.adopt_secret(&parts, Secret::new("new").unwrap()).await;
    /// assert!(matches!(kept, Err(SourceError::Unsupported)));
    /// # }
    /// ```
    fn adopt_secret<'a>(
        &'a self,
        _parts: &'a Parts,
        _secret: Secret,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(std::future::ready(Err(SourceError::Unsupported)))
    }
}

/// A source that always answers the same scheme.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use hookguard::{guard::{Checked, FixedScheme, Guard}, providers::github, verify::{Outgoing, Sign}};
/// let scheme = github::scheme("s3cr3t").unwrap();
/// let guard = Guard::builder_with_source("github", FixedScheme(Arc::new(scheme.clone()))).build();
/// let mut req = http::Request::post("/");
/// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
///     req = req.header(name, value);
/// }
/// let (parts, ()) = req.body(()).unwrap().into_parts();
/// assert!(matches!(guard.check(&parts, &"{}".into()).await, Checked::New { .. }));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FixedScheme(pub Arc<dyn Scheme>);

impl SchemeSource for FixedScheme {
    fn scheme<'a>(&'a self, _parts: &'a Parts) -> BoxFuture<'a, Result<Arc<dyn Scheme>, SourceError>> {
        Box::pin(std::future::ready(Ok(Arc::clone(&self.0))))
    }
}

/// The outcome of [`Guard::check`] (one phase: the mark is confirmed at once).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::{Checked, Guard}, providers::github};
/// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
/// let (parts, ()) = http::Request::post("/").body(()).unwrap().into_parts();
/// let Checked::Respond(res) = guard.check(&parts, &"{}".into()).await else { panic!("not signed") };
/// assert_eq!(res.status(), 401);
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Checked {
    /// Verified and not seen before; the replay mark is set, held by `mark` until
    /// [`Guard::hand_off`] or [`ReplayMark::keep`] takes it. **Bind `mark`**: a pattern
    /// that leaves it out (`Checked::New { verified, .. }`) drops it at once, which
    /// removes the mark, and copies are no longer refused.
    New {
        /// What verification proved.
        verified: Verified<'static>,
        /// The replay mark this request set: removed again when dropped before the
        /// hand-off (the request was abandoned, so nothing was kept and the sender's
        /// retry must get through).
        mark: ReplayMark,
    },
    /// Verified, but this delivery was seen already.
    Duplicate(Verified<'static>),
    /// Answer with this (a handshake, or a problem).
    Respond(Response<Vec<u8>>),
}

/// The outcome of [`Guard::reserve`] (middleware mode, two phases).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::{Guard, Reserved}, providers::github};
/// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
/// let (parts, ()) = http::Request::post("/").body(()).unwrap().into_parts();
/// match guard.reserve(&parts, &"{}".into()).await {
///     Reserved::Fresh { .. } => unreachable!("not signed"),
///     Reserved::Respond(res) => assert_eq!(res.status(), 401),
///     _ => unreachable!(),
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Reserved {
    /// Verified, and reserved for this request: run the handler, then settle the
    /// reservation ([`Reservation::finish`]).
    Fresh {
        /// What verification proved.
        verified: Verified<'static>,
        /// The pending replay mark (cancelled if dropped unsettled).
        reservation: Reservation,
    },
    /// Answer with this: `200 duplicate` (a confirmed mark), `409` + `Retry-After`
    /// (another request's reservation is live: the delivery is being handled), a
    /// handshake, or a problem.
    Respond(Response<Vec<u8>>),
}

/// A pending replay mark that this request holds while its handler runs (see
/// [`Guard::reserve`]). Settle it with [`confirm`](Self::confirm),
/// [`cancel`](Self::cancel) or [`finish`](Self::finish); dropped unsettled (the request
/// was abandoned), it is cancelled. If the process dies, it expires after the guard's
/// [`pending_lease`](GuardBuilder::pending_lease).
///
/// It may be dropped on any thread: with an in-process store (the default) the cancel is
/// done before the drop returns; a store that needs I/O (Redis) cancels in the background,
/// on the Tokio runtime of the thread that drops it, or, on a thread without one, on the
/// runtime the reservation was taken on. Dropped after that runtime shut down, it cannot
/// be cancelled: a warning says so, and it lasts its lease. When
/// the store fails while reserving (`503`), a reservation it may have taken all the same
/// is cancelled too, so that the sender's retry is not answered `409` for the whole lease.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::{Guard, Reserved}, providers::github, verify::{Outgoing, Sign}};
///
/// let scheme = github::scheme("s3cr3t").unwrap();
/// let guard = Guard::builder("github", scheme.clone()).build();
/// let mut req = http::Request::post("/").header("x-github-delivery", "d-1");
/// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
///     req = req.header(name, value);
/// }
/// let (parts, ()) = req.body(()).unwrap().into_parts();
/// let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &"{}".into()).await else { panic!() };
/// // GitHub signs the body only: the key is the signature's fingerprint, not the id.
/// assert_eq!(reservation.key(), "github:8fb68d8e34e2d079f83d5d83d81398d72ee3933b6867fe9586d17bc7b948d33a");
/// // A copy while the handler runs: retry later.
/// let Reserved::Respond(copy) = guard.reserve(&parts, &"{}".into()).await else { panic!() };
/// assert_eq!(copy.status(), 409);
/// assert!(copy.headers().contains_key("retry-after"));
/// // The handler answered 200: confirmed; copies are duplicates from now on.
/// reservation.finish(http::StatusCode::OK).await;
/// let Reserved::Respond(copy) = guard.reserve(&parts, &"{}".into()).await else { panic!() };
/// assert_eq!(copy.status(), 200);
/// # }
/// ```
#[must_use = "a reservation is cancelled when dropped; settle it once the handler answered"]
pub struct Reservation {
    guard: Guard,
    key: String,
    token: u64,
    ttl: Duration,
    settle: Settle,
    /// The runtime the store's answer was waited on, if it had to be ([`noting_runtime`]).
    waited_on: Option<tokio::runtime::Handle>,
}

/// Where a [`Reservation`] is: what its `Drop` still has to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// Unsettled, or its store call was abandoned before it answered: cancel.
    Cancel,
    /// The handler succeeded and the confirmation was abandoned before the store
    /// answered: confirm (the delivery was handled; cancelling would let the sender's
    /// retry handle it again).
    Confirm,
    /// Settled, or never this request's (another request's mark was found, or none was
    /// taken: a delivery without a replay key).
    Done,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation").field("key", &self.key).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl Reservation {
    /// The replay key the reservation is under.
    ///
    /// See [`Reservation`] for an example.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The handler answered: the mark becomes confirmed for the replay time to live, and
    /// copies are answered `200 duplicate`. If the store fails, the reservation stays until
    /// its lease runs out (logged as a warning); the handler's answer stands.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::{Guard, Reserved}, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone()).build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &"{}".into()).await else { panic!() };
    /// reservation.confirm().await;
    /// let Reserved::Respond(copy) = guard.reserve(&parts, &"{}".into()).await else { panic!() };
    /// assert_eq!(copy.status(), 200);
    /// assert_eq!(copy.body(), b"duplicate");
    /// # }
    /// ```
    pub async fn confirm(mut self) {
        if self.settle == Settle::Done {
            return; // nothing held: a delivery without a replay key
        }
        // Until the store answered, a drop (the response future abandoned) confirms in
        // the background.
        self.settle = Settle::Confirm;
        self.guard.confirm(&self.key, self.ttl).await;
        self.settle = Settle::Done;
    }

    /// The handler failed: the reservation goes (if it is still this request's), so the
    /// sender's retry is handled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::{Guard, Reserved}, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone()).build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &"{}".into()).await else { panic!() };
    /// reservation.cancel().await;
    /// assert!(matches!(guard.reserve(&parts, &"{}".into()).await, Reserved::Fresh { .. }));
    /// # }
    /// ```
    pub async fn cancel(mut self) {
        if self.settle == Settle::Done {
            return; // nothing held: a delivery without a replay key
        }
        // A drop before the store answered cancels in the background.
        self.guard.cancel(&self.key, self.token).await;
        self.settle = Settle::Done;
    }

    /// Settles by the handler's status: [`confirm`](Self::confirm) when it succeeded
    /// (2xx), [`cancel`](Self::cancel) otherwise. The rule middleware mode applies. A
    /// handler that refused the delivery (a 4xx such as `422`, `409` or `429`) did not
    /// handle it: the sender's retry must reach it again, and get its answer again, not a
    /// `200 duplicate` that would tell the sender it was delivered.
    ///
    /// See [`Reservation`] for an example.
    pub async fn finish(self, status: StatusCode) {
        if status.is_success() { self.confirm().await } else { self.cancel().await }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settle == Settle::Done || self.guard.inner.replay.is_none() {
            return;
        }
        let undo = match self.settle {
            Settle::Confirm => Undo::Confirm(self.ttl),
            _ => Undo::Cancel(self.token),
        };
        Leftover::new(&self.guard, std::mem::take(&mut self.key), undo).finish(self.waited_on.take());
    }
}

/// The replay mark a [`Guard::check`] set, held until [`Guard::hand_off`] takes it.
/// Dropped before that (the caller's future was abandoned: the sender timed out, a
/// timeout layer fired), it is removed in the background, so the sender's retry is
/// handled instead of being answered `200 duplicate` for a delivery nothing kept.
/// [`release`](Self::release) removes it at once.
///
/// It may be dropped on any thread: with an in-process store (the default) the mark is
/// removed before the drop returns; a store that needs I/O (Redis) removes it in the
/// background, on the Tokio runtime of the thread that drops it, or, on a thread without
/// one, on the runtime the mark was taken on. Dropped after that runtime shut down, it
/// cannot be removed: a warning says so, and it lasts its time to live.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::{Checked, Guard}, providers::github, verify::{Outgoing, Sign}};
///
/// let scheme = github::scheme("s3cr3t").unwrap();
/// let guard = Guard::builder("github", scheme.clone()).build();
/// let mut req = http::Request::post("/");
/// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
///     req = req.header(name, value);
/// }
/// let (parts, ()) = req.body(()).unwrap().into_parts();
/// let Checked::New { mark, .. } = guard.check(&parts, &"{}".into()).await else { panic!() };
/// assert!(mark.key().starts_with("github:"));
/// assert!(matches!(guard.check(&parts, &"{}".into()).await, Checked::Duplicate(_)));
/// drop(mark); // abandoned before the hand-off: the retry gets through
/// assert!(matches!(guard.check(&parts, &"{}".into()).await, Checked::New { .. }));
/// # }
/// ```
#[must_use = "the mark is removed when dropped; hand it to Guard::hand_off"]
pub struct ReplayMark {
    guard: Guard,
    key: String,
    held: Held,
    /// The runtime the store's answer was waited on, if it had to be ([`noting_runtime`]).
    waited_on: Option<tokio::runtime::Handle>,
}

/// What a [`ReplayMark`]'s `Drop` still has to undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// The store was asked to reserve the key for this token and has not answered:
    /// cancel the reservation if it is this token's (nothing else).
    Asked(u64),
    /// The mark is this request's: remove it.
    Mine,
    /// Nothing: kept, released, or never this request's.
    Nothing,
}

impl fmt::Debug for ReplayMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayMark").field("key", &self.key).finish_non_exhaustive()
    }
}

impl ReplayMark {
    /// The replay key the mark is under; also the webhook's [`key`](Webhook::key) in the
    /// inbox after [`Guard::hand_off`].
    ///
    /// See [`ReplayMark`] for an example.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Removes the mark now (the delivery will not be kept, so a retry must get through).
    /// The removal is sent once and, on a Tokio runtime (or with a store that was waited on
    /// one), runs to its end even if this future is dropped first; polled by another
    /// executor, a store that does not answer at once is waited on here, and a drop before
    /// it answers leaves the mark (with a warning).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::{Checked, Guard}, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone()).build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Checked::New { mark, .. } = guard.check(&parts, &"{}".into()).await else { panic!() };
    /// mark.release().await;
    /// assert!(matches!(guard.check(&parts, &"{}".into()).await, Checked::New { .. }));
    /// # }
    /// ```
    pub async fn release(mut self) {
        // Sent once (a second removal could remove a retry's new mark), and run to its
        // end even if this future is dropped first (the sender hung up while a failed
        // push's removal was on its way): the mark would otherwise stay for its whole time
        // to live, each retry answered `200 duplicate` for a delivery nothing kept.
        self.held = Held::Nothing;
        let removal = Leftover::new(&self.guard, std::mem::take(&mut self.key), Undo::Remove);
        if let Some(rest) = removal.detach(self.waited_on.take()) {
            rest.await;
        }
    }

    /// The delivery was kept (by the caller's own means, not [`Guard::hand_off`], which
    /// does this itself): the mark stays for the replay time to live and refuses copies.
    /// A mark neither kept nor handed off is removed when dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::{Checked, Guard}, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone()).build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Checked::New { mark, .. } = guard.check(&parts, &"{}".into()).await else { panic!() };
    /// // ... the delivery stored in the application's own queue ...
    /// mark.keep();
    /// assert!(matches!(guard.check(&parts, &"{}".into()).await, Checked::Duplicate(_)));
    /// # }
    /// ```
    pub fn keep(mut self) {
        self.held = Held::Nothing;
    }
}

impl Drop for ReplayMark {
    fn drop(&mut self) {
        if self.held == Held::Nothing || self.guard.inner.replay.is_none() {
            return;
        }
        let undo = match self.held {
            Held::Asked(token) => Undo::Cancel(token),
            _ => Undo::Remove,
        };
        Leftover::new(&self.guard, std::mem::take(&mut self.key), undo).finish(self.waited_on.take());
    }
}

/// Marks a response that answers a request which failed verification (a forged,
/// stale or malformed signature), in the response's extensions. Rate limits read it to
/// spend from the sender's failure budget (`SourceLimiter::record_failure`, feature
/// `source-controls`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::{Guard, VerificationFailed}, providers::github};
/// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
/// let (parts, ()) = http::Request::post("/").body(()).unwrap().into_parts();
/// let res = guard.accept(&parts, "{}".into()).await;
/// assert_eq!(res.status(), 401);
/// assert!(res.extensions().get::<VerificationFailed>().is_some());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationFailed(pub Reason);

/// Marks a handshake's answer (after verification) that refuses the request: counted, and
/// logged as a configuration mismatch by the guard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefusedAfterVerification;

/// The pipeline for one endpoint. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::{Checked, Guard}, providers::github, verify::{Outgoing, Sign}};
/// let scheme = github::scheme("s3cr3t").unwrap();
/// let guard = Guard::builder("github", scheme.clone()).build();
/// let copy = guard.clone(); // the same replay store, inbox and settings
/// let mut req = http::Request::post("/");
/// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
///     req = req.header(name, value);
/// }
/// let (parts, ()) = req.body(()).unwrap().into_parts();
/// let Checked::New { mark, .. } = guard.check(&parts, &"{}".into()).await else { panic!() };
/// mark.keep();
/// assert!(matches!(copy.check(&parts, &"{}".into()).await, Checked::Duplicate(_)));
/// # }
/// ```
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Arc<str>,
    /// The endpoint's name as the first part of its keys ([`crate::inbox::key_prefix`]).
    key_prefix: Arc<str>,
    /// The endpoint as a metrics label value, shared (no copy per count).
    endpoint_label: metrics::SharedString,
    /// The per-delivery counters' keys, made once (a key made per count allocates).
    accepted_key: metrics::Key,
    duplicates_key: metrics::Key,
    source: Arc<dyn SchemeSource>,
    /// The scheme when it is fixed: no lookup (and no boxed future) per request.
    fixed: Option<Arc<dyn Scheme>>,
    replay: Option<Arc<dyn ReplayStore>>,
    replay_ttl: Option<Duration>,
    inbox: Option<Arc<dyn Inbox>>,
    clock: Arc<dyn Clock>,
    body_limit: usize,
    header_limit: usize,
    read_timeout: Duration,
    public_origin: Option<String>,
    handshake: Option<Arc<dyn Handshake>>,
    statuses: HashMap<Reason, StatusCode>,
    retry_after: u64,
    accepted_status: StatusCode,
    pending_lease: Duration,
    in_progress_status: StatusCode,
    /// Misconfigurations that show only at run time, each said once at warn.
    said: Said,
}

/// What a guard still has to say once: `true` until said.
#[derive(Default)]
struct Said {
    /// A replay store was given, and the terminal pipeline (which takes no marks) runs:
    /// replicas that counted on a shared store to refuse each other's copies do not.
    replay_store_unused: AtomicBool,
    /// A looked-up scheme signs the URL it is called at and no public origin is set:
    /// every request is refused `missing-url`, a `400` the sender takes for its fault.
    missing_public_origin: AtomicBool,
}

impl Said {
    /// `true` the first time only for a `flag` still set (one load when it is not).
    fn once(flag: &AtomicBool) -> bool {
        flag.load(Ordering::Relaxed) && flag.swap(false, Ordering::Relaxed)
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Guard")
            .field("endpoint", &i.endpoint)
            .field("source", &i.source)
            .field("replay", &i.replay)
            .field("replay_ttl", &i.replay_ttl)
            .field("pending_lease", &i.pending_lease)
            .field("inbox", &i.inbox)
            .field("body_limit", &i.body_limit)
            .field("header_limit", &i.header_limit)
            .field("read_timeout", &i.read_timeout)
            .field("public_origin", &i.public_origin)
            .field("handshake", &i.handshake)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// Starts a guard for the endpoint `name` with a fixed scheme. Defaults: an in-memory
    /// replay store, no inbox (middleware mode), 1 MiB body limit, 10 s read timeout.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{guard::Guard, providers::github};
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
    /// assert_eq!((guard.endpoint(), guard.body_limit()), ("github", 1024 * 1024));
    /// assert_eq!(guard.read_timeout(), Duration::from_secs(10));
    /// // No inbox: a verified delivery could not be kept.
    /// let (parts, ()) = http::Request::post("/")
    ///     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
    /// assert_eq!(guard.accept(&parts, "Hello, World!".into()).await.status(), 503);
    /// # }
    /// ```
    ///
    /// `name` is the first part of the keys the replay store and the inbox keep
    /// (`{name}:{id}`), with a `:` (or `%`) in it escaped (`%3A`, `%25`): endpoints `shop`
    /// and `shop:eu` sharing a store keep their deliveries apart.
    pub fn builder(name: impl Into<String>, scheme: impl Scheme + 'static) -> GuardBuilder {
        let scheme: Arc<dyn Scheme> = Arc::new(scheme);
        let mut builder = Self::builder_with_source(name, FixedScheme(Arc::clone(&scheme)));
        builder.inner.fixed = Some(scheme);
        builder
    }

    /// Starts a guard whose scheme is looked up per request (one secret per tenant, say:
    /// [`TenantSchemes`](crate::tenant::TenantSchemes), or a [`SchemeSource`] of one's own).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::Arc;
    /// use hookguard::{guard::{FixedScheme, Guard}, inbox::MemoryInbox, providers::github};
    /// let source = FixedScheme(Arc::new(github::scheme("It's a Secret to Everybody").unwrap()));
    /// let guard = Guard::builder_with_source("github", source).inbox(MemoryInbox::new()).build();
    /// let (parts, ()) = http::Request::post("/")
    ///     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// assert_eq!(guard.accept(&parts, "Hello, World!".into()).await.status(), 202);
    /// # }
    /// ```
    pub fn builder_with_source(name: impl Into<String>, source: impl SchemeSource) -> GuardBuilder {
        let endpoint: Arc<str> = Arc::from(name.into());
        let key_prefix: Arc<str> = Arc::from(crate::inbox::key_prefix(&endpoint));
        GuardBuilder {
            inner: Inner {
                endpoint_label: metrics::SharedString::from_shared(Arc::clone(&endpoint)),
                accepted_key: counter_key("hookguard_accepted_total", &endpoint),
                duplicates_key: counter_key("hookguard_duplicates_total", &endpoint),
                endpoint,
                key_prefix,
                source: Arc::new(source),
                fixed: None,
                replay: None,
                replay_ttl: None,
                inbox: None,
                clock: Arc::new(SystemClock),
                body_limit: DEFAULT_BODY_LIMIT,
                header_limit: DEFAULT_HEADER_LIMIT,
                read_timeout: DEFAULT_READ_TIMEOUT,
                public_origin: None,
                handshake: None,
                statuses: HashMap::new(),
                retry_after: 5,
                accepted_status: StatusCode::ACCEPTED,
                pending_lease: DEFAULT_PENDING_LEASE,
                in_progress_status: StatusCode::CONFLICT,
                said: Said::default(),
            },
            default_replay: true,
        }
    }

    /// The endpoint's name.
    ///
    /// ```
    /// use hookguard::{guard::Guard, providers::github};
    /// let guard = Guard::builder("github-org", github::scheme("s3cr3t").unwrap()).build();
    /// assert_eq!(guard.endpoint(), "github-org");
    /// ```
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Warns (once per call) when this guard, about to answer as a terminal service, has
    /// no inbox: every verified delivery would be answered `503 inbox-unavailable`, and
    /// senders would retry for ever.
    pub(crate) fn warn_without_inbox(&self, service: &str) {
        if self.inner.inbox.is_none() {
            tracing::warn!(
                endpoint = %self.inner.endpoint,
                "{service} over a guard without an inbox: every verified delivery will be answered \
                 503 inbox-unavailable (give the guard one with GuardBuilder::inbox)"
            );
        }
    }

    /// The body limit in bytes.
    ///
    /// ```
    /// use hookguard::{guard::Guard, providers::github};
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).body_limit(4096).build();
    /// assert_eq!(guard.body_limit(), 4096);
    /// ```
    #[must_use]
    pub fn body_limit(&self) -> usize {
        self.inner.body_limit
    }

    /// The time allowed to receive the body.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::{guard::Guard, providers::github};
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap())
    ///     .read_timeout(Duration::from_secs(3))
    ///     .build();
    /// assert_eq!(guard.read_timeout(), Duration::from_secs(3));
    /// ```
    #[must_use]
    pub fn read_timeout(&self) -> Duration {
        self.inner.read_timeout
    }

    /// The clock.
    ///
    /// ```
    /// use hookguard::{clock::ManualClock, guard::Guard, providers::github};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).clock(clock).build();
    /// assert_eq!(guard.clock().unix_nanos(), 1_700_000_000 * 1_000_000_000);
    /// ```
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Checks the request head before the body is read: headers over the header limit
    /// are refused (431), and so is a declared `Content-Length` over the body limit (413).
    ///
    /// # Errors
    /// The problem to answer with.
    ///
    /// ```
    /// use hookguard::{guard::Guard, providers::github};
    ///
    /// let guard = Guard::builder("github", github::scheme("s").unwrap()).header_limit(1024).build();
    /// let big = http::Request::post("/").header("x-github-delivery", "d".repeat(2000)).body(()).unwrap();
    /// assert_eq!(guard.precheck(&big.into_parts().0).unwrap_err().status(), 431);
    /// let huge = http::Request::post("/").header("content-length", "99999999999").body(()).unwrap();
    /// assert_eq!(guard.precheck(&huge.into_parts().0).unwrap_err().status(), 413);
    /// ```
    pub fn precheck(&self, parts: &Parts) -> Result<(), Problem> {
        if parts.headers.len() > crate::inbox::MAX_HEADERS {
            self.count_rejected(known::HEADERS_TOO_LARGE.code());
            return Err(known::HEADERS_TOO_LARGE);
        }
        let mut head = 0_usize;
        for (name, value) in &parts.headers {
            head = head.saturating_add(name.as_str().len() + value.len());
        }
        if head > self.inner.header_limit {
            self.count_rejected(known::HEADERS_TOO_LARGE.code());
            return Err(known::HEADERS_TOO_LARGE);
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.inner.body_limit as u64) {
            self.count_rejected(known::BODY_TOO_LARGE.code());
            return Err(known::BODY_TOO_LARGE);
        }
        Ok(())
    }

    /// Records a problem found while reading the body (limit, timeout, error): counts
    /// and logs it, and answers with it.
    ///
    /// ```
    /// use hookguard::{guard::Guard, problem::Problem, providers::github};
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
    /// let timeout = Problem::new(http::StatusCode::REQUEST_TIMEOUT, "body-timeout", "Body not received in time");
    /// let res = guard.body_problem(timeout);
    /// assert_eq!(res.status(), 408);
    /// assert_eq!(res.headers()["content-type"], "application/problem+json");
    /// ```
    pub fn body_problem(&self, problem: Problem) -> Response<Vec<u8>> {
        self.count_rejected(problem.code());
        tracing::debug!(endpoint = %self.inner.endpoint, reason = problem.code(), "webhook body refused");
        problem.into_response()
    }

    /// Verifies, answers handshakes and sets the replay mark, confirmed at once (one
    /// phase), for a caller that then keeps the delivery: with
    /// [`hand_off`](Self::hand_off) (which removes the mark again when the push fails),
    /// or by its own means, then [`ReplayMark::keep`].
    ///
    /// The mark is held by the returned [`ReplayMark`]: removed again when it is dropped
    /// before the hand-off (the request was abandoned). One phase still has a window: if
    /// the process dies between `check` and the hand-off, the mark stays and the
    /// sender's retries are answered as duplicates until it expires, though nothing was
    /// kept. The same goes, briefly, for a copy that arrives while the first is between
    /// its failed push and the mark's removal: it is answered as a duplicate, and the
    /// sender's next retry gets through. [`accept`](Self::accept)
    /// (verify and keep, the inbox deciding what is a copy) and [`reserve`](Self::reserve)
    /// (a handler run inline, the mark confirmed only once it succeeded) have neither
    /// window: prefer them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::{Checked, Guard}, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone()).build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Checked::New { verified, mark } = guard.check(&parts, &"{}".into()).await else { panic!() };
    /// assert_eq!(verified.provider(), "github");
    /// mark.keep(); // kept by the application's own means
    /// assert!(matches!(guard.check(&parts, &"{}".into()).await, Checked::Duplicate(_)));
    /// # }
    /// ```
    pub async fn check(&self, parts: &Parts, body: &Bytes) -> Checked {
        let (passed, verified) = match self.verify(parts, body, owned).await {
            Ok(passed) => passed,
            Err(res) => return Checked::Respond(res),
        };
        let key = passed.labels.key();
        let mut mark =
            ReplayMark { guard: self.clone(), key: key.to_owned(), held: Held::Nothing, waited_on: None };
        // A delivery without a replay key is new whatever came before: no mark.
        let Some(replay) = self.inner.replay.as_ref().filter(|_| verified.has_replay_key()) else {
            return Checked::New { verified, mark };
        };
        // A shared store's answer may never come back (this future dropped while it is on
        // its way). A mark has no owner, and "seen" or "new" is only known from the
        // answer, so removing the key then could remove another request's mark. Reserved
        // under this request's token instead (a token it does not hold cancels nothing),
        // then confirmed once it is known to be this request's. Every store goes this way
        // (an in-process one answers at once), so that a copy meeting a delivery still
        // being handled in middleware mode is `409` on each, never `200 duplicate`.
        let token = fastrand::u64(..);
        mark.held = Held::Asked(token);
        let reserve = replay.reserve(key.as_bytes(), token, self.inner.pending_lease);
        let marked = noting_runtime(reserve, &mut mark.waited_on).await;
        if let Ok(Mark::New) = marked {
            mark.held = Held::Mine;
            let confirm = replay.confirm(key.as_bytes(), passed.ttl);
            if let Err(e) = noting_runtime(confirm, &mut mark.waited_on).await {
                mark.release().await;
                return Checked::Respond(self.replay_unavailable(&e));
            }
        }
        match marked {
            Ok(Mark::New) => {
                mark.held = Held::Mine;
                Checked::New { verified, mark }
            }
            Ok(Mark::Seen) => {
                mark.keep();
                self.duplicate(verified.id());
                Checked::Duplicate(verified)
            }
            // Another request's reservation (middleware mode) is live.
            Ok(Mark::Pending) => {
                mark.keep();
                Checked::Respond(self.in_progress(verified.id()))
            }
            // The store may have made the reservation before it failed (its answer timed
            // out): cancelled, as `reserve_verified` does.
            Err(e) => {
                mark.held = Held::Nothing;
                let res = self.replay_unavailable(&e);
                Leftover::new(self, std::mem::take(&mut mark.key), Undo::Retract(token))
                    .finish(mark.waited_on.take());
                Checked::Respond(res)
            }
        }
    }

    /// The answer to a copy of a delivery that another request is handling.
    fn in_progress(&self, id: Option<&str>) -> Response<Vec<u8>> {
        let i = &self.inner;
        self.count_rejected(known::IN_PROGRESS.code());
        tracing::info!(endpoint = %i.endpoint, id, "webhook copy while the delivery is being handled: retry later");
        known::IN_PROGRESS.with_status(i.in_progress_status).retry_after(i.retry_after).into_response()
    }

    /// Counts and logs a duplicate.
    fn duplicate(&self, id: Option<&str>) {
        Self::count(&self.inner.duplicates_key);
        tracing::info!(endpoint = %self.inner.endpoint, id, "duplicate webhook");
    }

    /// Middleware mode's check: verifies, answers handshakes, and **reserves** the replay
    /// mark for this request: a pending mark that lives the guard's
    /// [`pending_lease`](GuardBuilder::pending_lease), to be settled once the handler
    /// answered ([`Reservation::finish`]: confirmed for the replay time to live when it
    /// succeeded (2xx); cancelled when it answered anything else, or when the request is
    /// abandoned).
    ///
    /// A copy of the delivery gets [`Reserved::Respond`] with
    /// - `200 duplicate` when the mark is confirmed (the delivery was handled);
    /// - `409 Conflict` (see [`in_progress_status`](GuardBuilder::in_progress_status)) +
    ///   `Retry-After` and a `delivery-in-progress` problem while another request's
    ///   reservation is live: that request may still fail, so the copy is not
    ///   acknowledged; if it does fail (or its receiver died and the lease ran out), the
    ///   sender's next retry is handled.
    ///
    /// See [`Reservation`] for an example.
    pub async fn reserve(&self, parts: &Parts, body: &Bytes) -> Reserved {
        match self.verify_to_reserve(parts, body).await {
            Ok(verified) => self.reserve_verified(verified).await,
            Err(res) => Reserved::Respond(res),
        }
    }

    /// [`reserve`](Self::reserve)'s first half: handshakes and verification, no mark yet
    /// (`VerifyLayer` makes its inner service ready in between, so that the wait for it
    /// does not count against the reservation's lease).
    pub(crate) async fn verify_to_reserve(
        &self,
        parts: &Parts,
        body: &Bytes,
    ) -> Result<ToReserve, Response<Vec<u8>>> {
        let (Passed { labels, ttl, .. }, verified) = self.verify(parts, body, owned).await?;
        Ok(ToReserve { key: labels.key().to_owned(), ttl, verified })
    }

    /// Middleware mode, while the inner service is not ready: a copy of a delivery already
    /// handled and confirmed is answered `200 duplicate` at once, rather than queued (with
    /// its body) behind the inner service's capacity. `None` when the store says no or
    /// cannot tell (its reservation decides then).
    pub(crate) async fn confirmed_copy(&self, to_reserve: &ToReserve) -> Option<Response<Vec<u8>>> {
        let replay = self.inner.replay.as_ref().filter(|_| to_reserve.verified.has_replay_key())?;
        match replay.is_confirmed(to_reserve.key.as_bytes()).await {
            Ok(true) => {
                self.duplicate(to_reserve.verified.id());
                Some(plain(StatusCode::OK, "duplicate"))
            }
            Ok(false) | Err(_) => None,
        }
    }

    /// [`reserve`](Self::reserve)'s second half: the mark.
    pub(crate) async fn reserve_verified(&self, ToReserve { key, ttl, verified }: ToReserve) -> Reserved {
        let i = &self.inner;
        let token = fastrand::u64(..);
        // Held from before the store is asked: if this future is dropped while a shared
        // store takes the reservation, it is cancelled (a token this request does not hold
        // cancels nothing) rather than left pending for the whole lease.
        let mut reservation =
            Reservation { guard: self.clone(), key, token, ttl, settle: Settle::Cancel, waited_on: None };
        // A delivery without a replay key is new whatever came before: no mark.
        if !verified.has_replay_key() {
            reservation.settle = Settle::Done;
        } else if let Some(replay) = &i.replay {
            let reserve = replay.reserve(reservation.key.as_bytes(), token, i.pending_lease);
            let reserved = noting_runtime(reserve, &mut reservation.waited_on).await;
            if !matches!(reserved, Ok(Mark::New)) {
                reservation.settle = Settle::Done; // another request's, or none
            }
            match reserved {
                Ok(Mark::New) => {}
                Ok(Mark::Seen) => {
                    self.duplicate(verified.id());
                    return Reserved::Respond(plain(StatusCode::OK, "duplicate"));
                }
                Ok(Mark::Pending) => return Reserved::Respond(self.in_progress(verified.id())),
                // The store may have taken the reservation before it failed (Redis ran the
                // script, then its answer timed out or the connection broke): left, it
                // would answer the sender's retries `409` for the whole lease while nothing
                // handles the delivery. Cancelled in the background (a token this request
                // does not hold cancels nothing); the `503` does not wait for it.
                Err(e) => {
                    let res = self.replay_unavailable(&e);
                    Leftover::new(self, std::mem::take(&mut reservation.key), Undo::Retract(token))
                        .finish(reservation.waited_on.take());
                    return Reserved::Respond(res);
                }
            }
        }
        Reserved::Fresh { verified, reservation }
    }

    fn replay_unavailable(&self, e: &crate::replay::StoreError) -> Response<Vec<u8>> {
        self.count_rejected(known::REPLAY_UNAVAILABLE.code());
        tracing::warn!(endpoint = %self.inner.endpoint, error = %e, "replay store failed");
        known::REPLAY_UNAVAILABLE.retry_after(self.inner.retry_after).into_response()
    }

    /// What the scheme for this request is, as far as it is known without waiting: the
    /// handshakes that come before verification answer here, and a fixed scheme is ready.
    fn scheme_now(&self, parts: &Parts, body: &[u8]) -> SchemeNow {
        let i = &self.inner;
        if let Some(handshake) = &i.handshake {
            match handshake.before(parts, body) {
                None => {}
                Some(HandshakeReply::Respond(res)) => return SchemeNow::Answer(res),
                Some(HandshakeReply::AdoptSecret(secret, res)) => return SchemeNow::Adopt(secret, res),
                Some(HandshakeReply::Refuse) => {
                    // Anyone can guess: counted, logged at debug only (no log flood).
                    self.count_rejected(known::HANDSHAKE_REFUSED.code());
                    tracing::debug!(endpoint = %i.endpoint, "handshake refused: wrong credential");
                    let mut res = known::HANDSHAKE_REFUSED.into_response();
                    res.extensions_mut().insert(VerificationFailed(Reason::SignatureMismatch));
                    return SchemeNow::Answer(res);
                }
            }
        }
        match &i.fixed {
            Some(fixed) => SchemeNow::Ready(Arc::clone(fixed)),
            None => SchemeNow::LookUp,
        }
    }

    /// The scheme for this request, after the handshakes that come before verification.
    async fn scheme(&self, parts: &Parts, body: &[u8]) -> Result<Arc<dyn Scheme>, Response<Vec<u8>>> {
        self.scheme_from(self.scheme_now(parts, body), parts).await
    }

    /// Finishes what [`scheme_now`](Self::scheme_now) started: keeps a handed-over
    /// secret, or looks the scheme up.
    async fn scheme_from(&self, now: SchemeNow, parts: &Parts) -> Result<Arc<dyn Scheme>, Response<Vec<u8>>> {
        let i = &self.inner;
        match now {
            SchemeNow::Ready(scheme) => Ok(scheme),
            SchemeNow::Answer(res) => Err(res),
            // Rare (a provider handing over its secret): boxed, so that the common
            // path's future stays small.
            SchemeNow::Adopt(secret, res) => Err(Box::pin(self.adopt_secret(parts, secret, res)).await),
            SchemeNow::LookUp => match i.source.scheme(parts).await {
                Ok(scheme) => Ok(scheme),
                // Anyone can name a tenant: counted, logged at debug only (no log flood).
                Err(SourceError::Unknown) => {
                    self.count_rejected(known::UNKNOWN_TENANT.code());
                    tracing::debug!(endpoint = %i.endpoint, "unknown tenant");
                    Err(known::UNKNOWN_TENANT.into_response())
                }
                // Anyone can cause it: counted apart, logged at debug only.
                Err(e @ SourceError::Throttled(_)) => {
                    self.count_rejected("secrets-throttled");
                    tracing::debug!(endpoint = %i.endpoint, error = %e, "secret lookup throttled");
                    Err(known::SECRETS_UNAVAILABLE.retry_after(i.retry_after).into_response())
                }
                Err(e) => {
                    self.count_rejected(known::SECRETS_UNAVAILABLE.code());
                    tracing::warn!(endpoint = %i.endpoint, error = %e, "secret source failed");
                    Err(known::SECRETS_UNAVAILABLE.retry_after(i.retry_after).into_response())
                }
            },
        }
    }

    /// Keeps the secret a handshake handed over, then answers with the handshake's `res`.
    async fn adopt_secret(&self, parts: &Parts, secret: Secret, res: Response<Vec<u8>>) -> Response<Vec<u8>> {
        let i = &self.inner;
        // Anyone can send a handshake: refusals are counted and logged at debug only (no
        // log flood); a store that fails is an outage, logged as such.
        let mut guess = false;
        let refused = match i.source.adopt_secret(parts, secret).await {
            Ok(()) => return res,
            // A secret offered where one is kept (or being kept): a takeover attempt, so it
            // spends the sender's failure budget as a forged signature does.
            Err(SourceError::Refused) => {
                guess = true;
                known::HANDSHAKE_REFUSED
            }
            Err(SourceError::Unknown) => known::UNKNOWN_TENANT,
            // Not an outage: this endpoint takes no secret (a fixed scheme), and a retry
            // will not change that.
            Err(SourceError::Unsupported) => {
                tracing::debug!(endpoint = %i.endpoint, "handshake secret handed over to a source that keeps none");
                known::HANDSHAKE_REFUSED
            }
            Err(e @ SourceError::Throttled(_)) => {
                self.count_rejected("secrets-throttled");
                tracing::debug!(endpoint = %i.endpoint, error = %e, "handshake secret not kept: throttled");
                return known::SECRETS_UNAVAILABLE.retry_after(i.retry_after).into_response();
            }
            Err(e) => {
                tracing::warn!(endpoint = %i.endpoint, error = %e, "could not keep handshake secret");
                known::SECRETS_UNAVAILABLE.retry_after(i.retry_after)
            }
        };
        self.count_rejected(refused.code());
        tracing::debug!(endpoint = %i.endpoint, reason = refused.code(), "handshake refused");
        let mut res = refused.into_response();
        if guess {
            res.extensions_mut().insert(VerificationFailed(Reason::SignatureMismatch));
        }
        res
    }

    /// Handshakes, the scheme, verification: what verification passed on, and what `keep`
    /// takes from the verified value (which borrows the request and the scheme); or the
    /// answer.
    async fn verify<T>(
        &self,
        parts: &Parts,
        body: &[u8],
        keep: impl FnOnce(&Verified<'_>) -> T,
    ) -> Result<(Passed, T), Response<Vec<u8>>> {
        let scheme = self.scheme(parts, body).await?;
        self.verified(&*scheme, parts, body, keep)
    }

    /// Verification with `scheme`, and the handshakes that answer verified requests.
    // The error is the answer itself, moved straight out (boxing it would only add an
    // allocation per rejection).
    #[allow(clippy::result_large_err)]
    fn verified<T>(
        &self,
        scheme: &dyn Scheme,
        parts: &Parts,
        body: &[u8],
        keep: impl FnOnce(&Verified<'_>) -> T,
    ) -> Result<(Passed, T), Response<Vec<u8>>> {
        let i = &self.inner;
        let url = self.public_url(parts);
        let mut view = WebhookRequest::from_parts(parts, body);
        if let Some(url) = &url {
            view = view.with_url(url);
        }
        // One clock read: the verification time is also the receipt time.
        let now = i.clock.unix_nanos();
        let at =
            time::OffsetDateTime::from_unix_timestamp_nanos(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let verified = match scheme.verify(&view, at) {
            Ok(v) => v,
            Err(rejection) => {
                let reason = rejection.reason();
                self.count_rejected(reason.code());
                // Anyone can send an unsigned request: counted, logged at debug only (no log
                // flood); the counter shows a secret that stopped matching.
                tracing::debug!(endpoint = %i.endpoint, provider = scheme.provider(), reason = reason.code(), "webhook rejected");
                if reason == Reason::MissingUrl && url.is_none() && Said::once(&i.said.missing_public_origin)
                {
                    // The receiver's configuration, not the sender's request: said once.
                    tracing::warn!(
                        endpoint = %i.endpoint,
                        provider = scheme.provider(),
                        "the scheme signs the URL it is called at: set public_origin, or every request is refused (missing-url)"
                    );
                }
                let status = i.statuses.get(&reason).copied();
                let mut res = Problem::from_rejection(&rejection, status).into_response();
                res.extensions_mut().insert(VerificationFailed(reason));
                return Err(res);
            }
        };
        if let Some(handshake) = &i.handshake
            && let Some(res) = handshake.after(parts, body, &verified)
        {
            if res.extensions().get::<RefusedAfterVerification>().is_some() {
                // Verified by the guard, refused by the handshake: their secrets differ.
                self.count_rejected(known::HANDSHAKE_REFUSED.code());
                tracing::warn!(
                    endpoint = %i.endpoint,
                    provider = scheme.provider(),
                    "handshake refused a request the guard verified: the handshake holds other secrets \
                     than the guard (one handshake for every tenant?)"
                );
            }
            return Err(res);
        }
        let ttl = replay_ttl(i.replay_ttl, scheme.tolerance(), &verified, now);
        let event = verified.event_if_known();
        // A fixed scheme has one sender; a looked-up one may name it.
        let namespace = if i.fixed.is_some() { None } else { i.source.namespace(parts) };
        let labels = match namespace {
            None => Labels::of(&i.key_prefix, &verified, event.unwrap_or_default()),
            // The length first: the key reads one way whatever the namespace holds.
            Some(ns) => Labels::of(
                &format!("{}:{}:{ns}", i.key_prefix, ns.len()),
                &verified,
                event.unwrap_or_default(),
            ),
        };
        let passed = Passed {
            labels,
            secret_headers: verified.secret_headers().to_vec(),
            event_in_body: event.err(),
            timestamp: verified.timestamp_nanos(),
            received_at: now,
            ttl,
        };
        Ok((passed, keep(&verified)))
    }

    /// Removes a reservation if it is still the holder's.
    async fn cancel(&self, key: &str, token: u64) {
        if let Some(replay) = &self.inner.replay
            && let Err(e) = replay.cancel(key.as_bytes(), token).await
        {
            tracing::warn!(endpoint = %self.inner.endpoint, error = %e, "could not cancel replay reservation: it stays until its lease runs out");
        }
    }

    /// Cancels a reservation the store may have taken before it failed to answer: the
    /// failure was logged already, so a cancel that fails too (the store is down) is
    /// logged at debug, not as a second warning per request.
    async fn retract(&self, key: &str, token: u64) {
        if let Some(replay) = &self.inner.replay
            && let Err(e) = replay.cancel(key.as_bytes(), token).await
        {
            tracing::debug!(endpoint = %self.inner.endpoint, error = %e, "could not cancel replay reservation after the store failed: if it was taken, it stays until its lease runs out");
        }
    }

    /// Confirms a reservation this request holds, for `ttl`.
    async fn confirm(&self, key: &str, ttl: Duration) {
        if let Some(replay) = &self.inner.replay
            && let Err(e) = replay.confirm(key.as_bytes(), ttl).await
        {
            tracing::warn!(endpoint = %self.inner.endpoint, error = %e, "could not confirm replay mark: copies may be handled again once its lease runs out");
        }
    }

    /// Removes a replay mark (the hand-off failed, so a retry must get through).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::{Checked, Guard}, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone()).build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Checked::New { mark, .. } = guard.check(&parts, &"{}".into()).await else { panic!() };
    /// let key = mark.key().to_owned();
    /// mark.keep();
    /// // ... the application's own hand-off failed ...
    /// guard.release(&key).await;
    /// assert!(matches!(guard.check(&parts, &"{}".into()).await, Checked::New { .. }));
    /// # }
    /// ```
    pub async fn release(&self, replay_key: &str) {
        if let Some(replay) = &self.inner.replay
            && let Err(e) = replay.unmark(replay_key.as_bytes()).await
        {
            tracing::warn!(endpoint = %self.inner.endpoint, error = %e, "could not remove replay mark");
        }
    }

    /// The whole terminal pipeline: verify, push into the inbox, answer `202` once kept,
    /// `200` for a duplicate, `503` + `Retry-After` when the inbox is full or down. Without
    /// an inbox configured, verified deliveries get `503` (nothing could keep them).
    ///
    /// **Replays are refused by the inbox's unique key**, not by a replay mark: a delivery
    /// whose key the inbox holds (waiting, running, dead-lettered) or remembers as
    /// finished gets `200 duplicate` and is not processed again. The terminal pipeline
    /// takes no mark in the [replay store](GuardBuilder::replay_store), which serves
    /// middleware mode ([`check`](Self::check), [`reserve`](Self::reserve)): a mark that is
    /// set means "seen", not "kept" (the request that set it may have died before its push;
    /// a shared store such as Redis outlives the receiver that set it), so the delivery
    /// would have to be pushed all the same and the inbox would decide anyway. A mark could
    /// only add a `503` when the store is full or down. How long a finished key is
    /// remembered is the inbox's setting ([`MemoryInbox::remember_done`](crate::inbox::MemoryInbox::remember_done),
    /// the durable backends' retention).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::Guard, inbox::{Inbox, MemoryInbox}, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let inbox = MemoryInbox::new();
    /// let guard = Guard::builder("github", scheme.clone()).inbox(inbox.clone()).build();
    /// let (unsigned, ()) = http::Request::post("/").body(()).unwrap().into_parts();
    /// assert_eq!(guard.accept(&unsigned, "{}".into()).await.status(), 401);
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// assert_eq!(guard.accept(&parts, "{}".into()).await.status(), 202);
    /// assert_eq!(guard.accept(&parts, "{}".into()).await.status(), 200); // a copy
    /// assert_eq!(inbox.depth().await.unwrap(), 1);
    /// # }
    /// ```
    pub async fn accept(&self, parts: &Parts, body: Bytes) -> Response<Vec<u8>> {
        if let Err(problem) = self.precheck(parts) {
            return problem.into_response();
        }
        self.go_on(self.begin(Head::Borrowed(parts), body)).await
    }

    /// The terminal pipeline up to the push, without waiting, for a request whose
    /// head passed [`precheck`](Self::precheck) (the adapters check it before they read
    /// the body): the body limit, handshakes, the scheme when it is fixed, verification,
    /// the kept webhook (an owned head's headers move into it instead of being copied).
    /// [`go_on`](Self::go_on) does the rest.
    ///
    /// Split so that the adapters' request futures hold no request head while they wait,
    /// and a fixed scheme's deliveries wait only for the push.
    pub(crate) fn begin<'a>(&self, head: Head<'a>, body: Bytes) -> Begun<'a> {
        if body.len() > self.inner.body_limit {
            return Begun::Answer(Box::new(self.body_problem(known::BODY_TOO_LARGE)));
        }
        let scheme = match self.scheme_now(head.parts(), &body) {
            SchemeNow::Ready(scheme) => scheme,
            SchemeNow::Answer(res) => return Begun::Answer(Box::new(res)),
            now => return Begun::Waits(Box::new(Waits { head, body, now })),
        };
        match self.verify_and_keep(&*scheme, head, body) {
            Ok(webhook) => Begun::Kept(webhook),
            Err(res) => Begun::Answer(Box::new(res)),
        }
    }

    /// What is left after [`begin`](Self::begin): the push, after waiting
    /// for the scheme when `begin` could not.
    async fn go_on(&self, begun: Begun<'_>) -> Response<Vec<u8>> {
        match begun {
            Begun::Answer(res) => *res,
            Begun::Kept(webhook) => self.finish_now(webhook).answer().await,
            // Boxed: the common path's future stays small.
            Begun::Waits(waits) => Box::pin(self.accept_later(*waits)).await,
        }
    }

    /// [`begin`](Self::begin)'s work for a request whose scheme has to be waited for.
    async fn accept_later(&self, Waits { head, body, now }: Waits<'_>) -> Response<Vec<u8>> {
        let scheme = match self.scheme_from(now, head.parts()).await {
            Ok(scheme) => scheme,
            Err(res) => return res,
        };
        match self.verify_and_keep(&*scheme, head, body) {
            Ok(webhook) => self.finish_now(webhook).answer().await,
            Err(res) => res,
        }
    }

    /// Verification with `scheme`, then the kept webhook.
    // The error is the answer itself, moved straight out (boxing it would only add an
    // allocation per rejection).
    #[allow(clippy::result_large_err)]
    fn verify_and_keep(
        &self,
        scheme: &dyn Scheme,
        head: Head<'_>,
        body: Bytes,
    ) -> Result<Webhook, Response<Vec<u8>>> {
        let (passed, ()) = self.verified(scheme, head.parts(), &body, |_| ())?;
        if Said::once(&self.inner.said.replay_store_unused) {
            tracing::warn!(
                endpoint = %self.inner.endpoint,
                "the terminal pipeline takes no replay marks: the replay store given is not used, and copies \
                 are refused by the inbox's keys (replicas refuse each other's copies only through a shared inbox)"
            );
        }
        Ok(self.keep(head.into_headers(), body, passed))
    }

    /// The terminal pipeline after verification: push and answer, without waiting when
    /// the inbox answers at once (the in-process one does): only a push that has to wait
    /// is boxed.
    pub(crate) fn finish_now(&self, webhook: Webhook) -> Finish {
        match self.inner.inbox.as_ref().and_then(|inbox| inbox.push_now(&webhook)) {
            Some(pushed) => Finish::Done(self.answer_push(&webhook, pushed)),
            None => {
                let guard = self.clone();
                Finish::Later(Box::pin(async move { guard.push(webhook, None).await }))
            }
        }
    }

    /// What comes after [`begin`](Self::begin), for an owned head: the answer, or what
    /// has to wait for it.
    pub(crate) fn settle(&self, begun: Begun<'static>) -> Finish {
        match begun {
            Begun::Answer(res) => Finish::Done(*res),
            Begun::Kept(webhook) => self.finish_now(webhook),
            Begun::Waits(waits) => {
                let guard = self.clone();
                Finish::Later(Box::pin(async move { guard.accept_later(*waits).await }))
            }
        }
    }

    /// The kept form of a verified request, without the headers that carried a secret.
    fn keep(&self, headers: HeaderMap, body: Bytes, passed: Passed) -> Webhook {
        let endpoint = Arc::clone(&self.inner.endpoint);
        Webhook::kept(
            passed.labels,
            passed.event_in_body,
            endpoint,
            passed.timestamp,
            headers,
            &passed.secret_headers,
            body,
            passed.received_at,
        )
    }

    /// Pushes a verified delivery into the inbox and answers. `mark` is the replay mark
    /// [`check`](Self::check) returned with the delivery; its key is also the webhook's
    /// [`key`](Webhook::key) in the inbox. The mark is removed when nothing was kept (no
    /// inbox, a full or failing one, too many headers) and also when this future is
    /// dropped before the push answered; a push that landed all the same is then found
    /// by its key, and the sender's retry answered `200 duplicate` by the inbox.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::{Checked, Guard}, inbox::{Inbox, MemoryInbox}, providers::github, verify::{Outgoing, Sign}};
    ///
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let inbox = MemoryInbox::new();
    /// let guard = Guard::builder("github", scheme.clone()).inbox(inbox.clone()).build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Checked::New { verified, mark } = guard.check(&parts, &"{}".into()).await else { panic!() };
    /// assert_eq!(guard.hand_off(&parts, "{}".into(), &verified, mark).await.status(), 202);
    /// assert_eq!(inbox.depth().await.unwrap(), 1);
    /// # }
    /// ```
    pub async fn hand_off(
        &self,
        parts: &Parts,
        body: Bytes,
        verified: &Verified<'_>,
        mark: ReplayMark,
    ) -> Response<Vec<u8>> {
        // What `precheck` refuses (a caller of `check` may not have called it): a durable
        // inbox could not read such a webhook back.
        if parts.headers.len() > crate::inbox::MAX_HEADERS {
            mark.release().await;
            self.count_rejected(known::HEADERS_TOO_LARGE.code());
            return known::HEADERS_TOO_LARGE.into_response();
        }
        let passed = Passed {
            labels: Labels::with_key(mark.key(), verified),
            secret_headers: verified.secret_headers().to_vec(),
            event_in_body: None,
            timestamp: verified.timestamp_nanos(),
            received_at: self.inner.clock.unix_nanos(),
            ttl: Duration::ZERO,
        };
        let webhook = self.keep(parts.headers.clone(), body, passed);
        self.push(webhook, Some(mark)).await
    }

    /// Pushes and answers. `mark`: the replay mark this request set under the webhook's
    /// key ([`hand_off`](Self::hand_off) after [`check`](Self::check)), removed again when
    /// nothing was kept (or when this future is dropped first).
    async fn push(&self, webhook: Webhook, mark: Option<ReplayMark>) -> Response<Vec<u8>> {
        let i = &self.inner;
        let Some(inbox) = &i.inbox else {
            if let Some(mark) = mark {
                mark.release().await;
            }
            self.count_rejected(known::INBOX_FULL.code());
            return known::INBOX_FULL
                .detail("no inbox configured")
                .retry_after(i.retry_after)
                .into_response();
        };
        let pushed = match inbox.push_now(&webhook) {
            Some(pushed) => pushed,
            // A second handle (a reference count) for the log lines and the clean-up.
            None => inbox.push(webhook.clone()).await,
        };
        if let Some(mark) = mark {
            if pushed.is_err() { mark.release().await } else { mark.keep() }
        }
        self.answer_push(&webhook, pushed)
    }

    /// Counts, logs and answers what the inbox did with `webhook`.
    fn answer_push(&self, webhook: &Webhook, pushed: Result<Pushed, InboxError>) -> Response<Vec<u8>> {
        let i = &self.inner;
        match pushed {
            Ok(Pushed::Accepted) => {
                Self::count(&self.inner.accepted_key);
                // The event type may still be in the body: read only for a line that is written.
                tracing::info!(endpoint = %i.endpoint, id = webhook.id(), event = webhook.event(), "webhook accepted");
                accepted(i.accepted_status)
            }
            Ok(Pushed::Duplicate) => {
                self.duplicate(webhook.id());
                plain(StatusCode::OK, "duplicate")
            }
            Err(e) => {
                self.count_rejected(known::INBOX_FULL.code());
                match e {
                    InboxError::Full => tracing::warn!(endpoint = %i.endpoint, "inbox full"),
                    e => tracing::error!(endpoint = %i.endpoint, error = %e, "inbox push failed"),
                }
                known::INBOX_FULL.retry_after(i.retry_after).into_response()
            }
        }
    }

    fn public_url(&self, parts: &Parts) -> Option<String> {
        let origin = self.inner.public_origin.as_deref()?;
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        Some(format!("{}{}", origin.trim_end_matches('/'), path))
    }

    /// Adds one to the counter under `key` (as `metrics::counter!` would, with the key
    /// made once).
    fn count(key: &metrics::Key) {
        static METADATA: metrics::Metadata<'static> =
            metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
    }

    fn count_rejected(&self, reason: &'static str) {
        metrics::counter!("hookguard_rejected_total", "endpoint" => self.inner.endpoint_label.clone(), "reason" => reason)
            .increment(1);
    }
}

/// A counter's key with the endpoint label.
fn counter_key(name: &'static str, endpoint: &Arc<str>) -> metrics::Key {
    let label = metrics::Label::new("endpoint", metrics::SharedString::from_shared(Arc::clone(endpoint)));
    metrics::Key::from_parts(name, vec![label])
}

/// A verified delivery not reserved yet ([`Guard::verify_to_reserve`]).
pub(crate) struct ToReserve {
    key: String,
    ttl: Duration,
    verified: Verified<'static>,
}

/// What verification passed on: the delivery's labels (its replay key among them), its
/// signed timestamp and receipt time (nanoseconds since the epoch), and how long its mark
/// lives.
struct Passed {
    labels: Labels,
    /// Headers that carried a secret ([`Verified::secret_headers`]): not kept.
    secret_headers: Vec<HeaderName>,
    /// Where the event type is in the JSON body, when it was not read yet.
    event_in_body: Option<&'static [&'static str]>,
    timestamp: Option<i128>,
    received_at: i128,
    ttl: Duration,
}

/// How far [`Guard::scheme_now`] got.
enum SchemeNow {
    Ready(Arc<dyn Scheme>),
    Answer(Response<Vec<u8>>),
    /// A handshake handed over a secret to keep, then to answer with the response.
    Adopt(Secret, Response<Vec<u8>>),
    /// The source looks the scheme up.
    LookUp,
}

/// What [`Guard::begin`] did.
pub(crate) enum Begun<'a> {
    /// Answer with this (boxed: the hot variant is the small one).
    Answer(Box<Response<Vec<u8>>>),
    /// Verified and kept: [`Guard::finish_now`] pushes it (no replay mark: the inbox's
    /// key refuses copies).
    Kept(Webhook),
    /// The scheme has to be waited for.
    Waits(Box<Waits<'a>>),
}

/// What [`Guard::finish_now`] and [`Guard::settle`] did.
pub(crate) enum Finish {
    /// Answer with this.
    Done(Response<Vec<u8>>),
    /// A backend needs I/O (or the scheme is looked up): await this for the answer.
    Later(BoxFuture<'static, Response<Vec<u8>>>),
}

impl Finish {
    /// The answer, after waiting for it if it has to be.
    pub(crate) async fn answer(self) -> Response<Vec<u8>> {
        match self {
            Self::Done(res) => res,
            Self::Later(later) => later.await,
        }
    }
}

/// A request that [`Guard::begin`] could not finish without waiting.
pub(crate) struct Waits<'a> {
    head: Head<'a>,
    body: Bytes,
    now: SchemeNow,
}

/// A request's head: owned (the adapters': its headers move into the kept webhook) or
/// borrowed ([`Guard::accept`]'s callers': its headers are copied).
// The owned head is the adapters' (the hot path); boxing it would add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Head<'a> {
    Owned(Parts),
    Borrowed(&'a Parts),
}

impl Head<'_> {
    fn parts(&self) -> &Parts {
        match self {
            Self::Owned(parts) => parts,
            Self::Borrowed(parts) => parts,
        }
    }

    fn into_headers(self) -> HeaderMap {
        match self {
            Self::Owned(parts) => parts.headers,
            Self::Borrowed(parts) => parts.headers.clone(),
        }
    }
}

/// The verified value, detached from the request (for [`Checked`] and [`Reserved`]).
fn owned(verified: &Verified<'_>) -> Verified<'static> {
    verified.clone().into_owned()
}

/// Awaits a store's `call`, noting in `waited_on` the runtime it waited on when it did
/// not answer at once. A store that needs I/O (Redis) waits, and its futures may only be
/// polled inside a runtime (Redis's response timeout is a Tokio timer): a mark dropped
/// later on a thread without one is released on this runtime. An in-process store answers
/// at its first poll and costs nothing here (no handle is taken).
async fn noting_runtime<T>(
    call: impl Future<Output = T>,
    waited_on: &mut Option<tokio::runtime::Handle>,
) -> T {
    let mut call = std::pin::pin!(call);
    std::future::poll_fn(|cx| {
        let polled = call.as_mut().poll(cx);
        if polled.is_pending() && waited_on.is_none() {
            *waited_on = tokio::runtime::Handle::try_current().ok();
        }
        polled
    })
    .await
}

/// What a mark or reservation let go of unsettled still asks of the store.
#[derive(Debug, Clone, Copy)]
enum Undo {
    /// Cancel the reservation if it is still this token's.
    Cancel(u64),
    /// The same, after the store failed to answer the reservation ([`Guard::retract`]).
    Retract(u64),
    /// Confirm the mark for this time to live.
    Confirm(Duration),
    /// Remove the mark.
    Remove,
}

/// A store call left to a destructor, run by [`finish`](Self::finish). Dropped before it
/// finished (no runtime was left to run it: the one it was handed to shut down), it says
/// so at warn, with the endpoint and not the key: the mark then stays until its lease or
/// time to live runs out.
struct Leftover {
    guard: Guard,
    key: String,
    /// `None` once done.
    undo: Option<Undo>,
}

impl Leftover {
    fn new(guard: &Guard, key: String, undo: Undo) -> Self {
        Self { guard: guard.clone(), key, undo: Some(undo) }
    }

    async fn run(mut self) {
        let Some(undo) = self.undo else { return };
        let (guard, key) = (&self.guard, self.key.as_str());
        match undo {
            Undo::Cancel(token) => guard.cancel(key, token).await,
            Undo::Retract(token) => guard.retract(key, token).await,
            Undo::Confirm(ttl) => guard.confirm(key, ttl).await,
            Undo::Remove => guard.release(key).await,
        }
        self.undo = None;
    }

    /// Runs from a destructor, on whatever thread that is. On a runtime's thread, the
    /// call is polled once there (an in-process store is done at once) and the rest
    /// spawned on it. On a thread without a runtime, an in-process store (`waited_on` is
    /// `None`: it never had to be waited on) is done at once too; a store that needs
    /// I/O is not polled there (that may panic) but spawned on the runtime its answer was
    /// waited on.
    fn finish(self, waited_on: Option<tokio::runtime::Handle>) {
        drop(self.detach(waited_on));
    }

    /// Starts the call as [`finish`](Self::finish) does and gives what waits for its end:
    /// `None` when it is done. Dropping that wait does not stop a call spawned on a
    /// runtime; on a thread without one, an in-process store is done at once.
    fn detach(self, waited_on: Option<tokio::runtime::Handle>) -> Option<BoxFuture<'static, ()>> {
        let spawned = match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt.spawn(started(self.run())?),
            Err(_) => match waited_on {
                Some(rt) => rt.spawn(self.run()),
                None => return started(self.run()),
            },
        };
        // It fails only when the call panicked or its runtime shut down: the task has
        // said so then (a panic's message; the dropped call's warning).
        Some(Box::pin(async move { drop(spawned.await) }))
    }
}

impl Drop for Leftover {
    fn drop(&mut self) {
        let Some(undo) = self.undo else { return };
        let left = match undo {
            Undo::Cancel(_) => "the reservation stays until its lease runs out",
            Undo::Retract(_) => "the reservation, if the store took it, stays until its lease runs out",
            Undo::Confirm(_) => {
                "the reservation stays unconfirmed: copies may be handled again once its lease runs out"
            }
            Undo::Remove => {
                "the mark stays until its time to live runs out, and the sender's retries are answered as duplicates until then"
            }
        };
        tracing::warn!(endpoint = %self.guard.inner.endpoint, "replay store call dropped unfinished: no runtime was left to run it; {left}");
    }
}

/// Polls `work` once: `None` when that finished it (an in-process store's work does),
/// else the work to go on with.
fn started(work: impl Future<Output = ()> + Send + 'static) -> Option<BoxFuture<'static, ()>> {
    let mut work: BoxFuture<'static, ()> = Box::pin(work);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    work.as_mut().poll(&mut cx).is_pending().then_some(work)
}

/// How many deliveries a minute a replay store of `capacity` marks living `ttl` takes
/// for good (rounded down).
fn untimed_rate_per_minute(capacity: usize, ttl: Duration) -> u64 {
    let ttl_secs = ttl.as_secs().max(1);
    u64::try_from(capacity).unwrap_or(u64::MAX).saturating_mul(60) / ttl_secs
}

/// `ttl` in whole hours, minutes or seconds, for a log line.
fn humantime_secs(ttl: Duration) -> String {
    match ttl.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The answer to an accepted delivery: the status alone (nothing to allocate; senders
/// read only the status).
fn accepted(status: StatusCode) -> Response<Vec<u8>> {
    let mut res = Response::new(Vec::new());
    *res.status_mut() = status;
    res
}

fn plain(status: StatusCode, text: &'static str) -> Response<Vec<u8>> {
    let mut res = Response::new(text.as_bytes().to_vec());
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

/// Builder for [`Guard`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::Guard, inbox::MemoryInbox, providers::github};
/// let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap())
///     .inbox(MemoryInbox::new())
///     .accepted_status(http::StatusCode::OK)
///     .build();
/// let (parts, ()) = http::Request::post("/")
///     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert_eq!(guard.accept(&parts, "Hello, World!".into()).await.status(), 200);
/// # }
/// ```
#[must_use]
pub struct GuardBuilder {
    inner: Inner,
    /// Whether the replay store is still the default in-memory one (it then takes the
    /// guard's clock when built).
    default_replay: bool,
}

impl fmt::Debug for GuardBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardBuilder").field("endpoint", &self.inner.endpoint).finish_non_exhaustive()
    }
}

impl GuardBuilder {
    /// The replay store (default: an in-memory one per guard). Middleware mode
    /// ([`VerifyLayer`](crate::layer::VerifyLayer), [`Guard::check`], [`Guard::reserve`])
    /// marks deliveries in it; the terminal pipeline ([`Guard::accept`],
    /// [`WebhookService`](crate::layer::WebhookService)) does not: there the inbox's unique
    /// key refuses replays (a guard given a store and an inbox says so once, at warn, when
    /// its terminal pipeline first runs: replicas refuse each other's copies only through
    /// a shared inbox).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::{Checked, Guard}, providers::github, replay::MemoryReplayStore};
    /// use hookguard::verify::{Outgoing, Sign};
    /// // Two guards for one endpoint (two routes, say) share one store: a copy sent to the
    /// // other is refused too.
    /// let store = MemoryReplayStore::new();
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let a = Guard::builder("github", scheme.clone()).replay_store(store.clone()).build();
    /// let b = Guard::builder("github", scheme.clone()).replay_store(store.clone()).build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Checked::New { mark, .. } = a.check(&parts, &"{}".into()).await else { panic!() };
    /// mark.keep();
    /// assert!(matches!(b.check(&parts, &"{}".into()).await, Checked::Duplicate(_)));
    /// assert_eq!(store.len(), 1);
    /// # }
    /// ```
    pub fn replay_store(mut self, store: impl ReplayStore) -> Self {
        self.inner.replay = Some(Arc::new(store));
        self.default_replay = false;
        self
    }

    /// No replay store: middleware mode then has no replay protection (not recommended).
    /// The terminal pipeline is unchanged: its inbox refuses duplicate keys.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::{Checked, Guard}, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone()).no_replay_store().build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Checked::New { mark, .. } = guard.check(&parts, &"{}".into()).await else { panic!() };
    /// mark.keep();
    /// // The copy is not recognised.
    /// assert!(matches!(guard.check(&parts, &"{}".into()).await, Checked::New { .. }));
    /// # }
    /// ```
    pub fn no_replay_store(mut self) -> Self {
        self.inner.replay = None;
        self.default_replay = false;
        self
    }

    /// How long replay marks live. By default, for a timestamp the signature covers,
    /// until it goes stale (and at least the scheme's whole tolerance window); for
    /// deliveries without one, or with one the signature does not cover,
    /// [`DEFAULT_UNTIMED_REPLAY_TTL`] (72 h). A `ttl` set here replaces the 72 h, and
    /// lengthens the marks of timed deliveries; it never shortens one below the time its
    /// delivery stays fresh (a copy would pass in between). At least 1 s: a shorter one is
    /// taken as 1 s (a mark that expires at once, `Duration::ZERO`, would turn replay
    /// protection off).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, guard::{Checked, Guard}, providers::github};
    /// use hookguard::verify::{Outgoing, Sign};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone())
    ///     .replay_ttl(Duration::from_secs(7 * 24 * 3600))
    ///     .clock(clock.clone())
    ///     .build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Checked::New { mark, .. } = guard.check(&parts, &"{}".into()).await else { panic!() };
    /// mark.keep();
    /// clock.advance(Duration::from_secs(6 * 24 * 3600)); // past the default 72 h
    /// assert!(matches!(guard.check(&parts, &"{}".into()).await, Checked::Duplicate(_)));
    /// # }
    /// ```
    pub fn replay_ttl(mut self, ttl: Duration) -> Self {
        self.inner.replay_ttl = Some(ttl.max(Duration::from_secs(1)));
        self
    }

    /// The inbox verified webhooks are handed to (terminal mode).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::Guard, inbox::{Inbox, MemoryInbox}, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let inbox = MemoryInbox::new();
    /// let guard = Guard::builder("github", scheme.clone()).inbox(inbox.clone()).build();
    /// let mut req = http::Request::post("/").header("x-github-event", "push");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// assert_eq!(guard.accept(&parts, "{}".into()).await.status(), 202);
    /// let jobs = inbox.pull(10, std::time::Duration::from_secs(30)).await.unwrap();
    /// assert_eq!(jobs[0].webhook().event(), Some("push"));
    /// # }
    /// ```
    pub fn inbox(mut self, inbox: impl Inbox) -> Self {
        self.inner.inbox = Some(Arc::new(inbox));
        self
    }

    /// The clock (default: the system clock). The default in-memory replay store expires
    /// its marks by this clock too.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, guard::Guard, inbox::MemoryInbox, providers::stripe};
    /// use hookguard::verify::{Outgoing, Sign};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let scheme = stripe::scheme("whsec_test").unwrap();
    /// let guard = Guard::builder("stripe", scheme.clone()).clock(clock.clone()).inbox(MemoryInbox::new()).build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}").timestamp(clock.now_for_tests())).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// clock.advance(Duration::from_secs(600)); // past Stripe's five minutes
    /// let res = guard.accept(&parts, "{}".into()).await;
    /// assert_eq!(res.status(), 401);
    /// # }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.inner.clock = Arc::new(clock);
        self
    }

    /// The body limit in bytes (default 1 MiB).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::Guard, providers::github};
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).body_limit(16).build();
    /// let (parts, ()) = http::Request::post("/").body(()).unwrap().into_parts();
    /// let res = guard.accept(&parts, "[0,1,2,3,4,5,6,7,8,9]".into()).await;
    /// assert_eq!(res.status(), 413);
    /// # }
    /// ```
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.inner.body_limit = bytes;
        self
    }

    /// The most bytes all header names and values may take together (default
    /// [`DEFAULT_HEADER_LIMIT`], 64 KiB); more is refused with 431 before the body is read.
    ///
    /// ```
    /// use hookguard::{guard::Guard, providers::github};
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).header_limit(100).build();
    /// let (parts, ()) = http::Request::post("/").header("x-padding", "a".repeat(100)).body(()).unwrap().into_parts();
    /// assert_eq!(guard.precheck(&parts).unwrap_err().status(), 431);
    /// let (small, ()) = http::Request::post("/").header("x-github-event", "push").body(()).unwrap().into_parts();
    /// assert!(guard.precheck(&small).is_ok());
    /// ```
    pub fn header_limit(mut self, bytes: usize) -> Self {
        self.inner.header_limit = bytes;
        self
    }

    /// The time allowed to receive the body (default 10 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::{guard::Guard, providers::github};
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap())
    ///     .read_timeout(Duration::from_secs(2))
    ///     .build();
    /// assert_eq!(guard.read_timeout(), Duration::from_secs(2));
    /// ```
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.inner.read_timeout = timeout;
        self
    }

    /// The public origin senders call (`https://hooks.example.com`), for schemes that
    /// sign the URL they call (Twilio, HubSpot v2 and v3); the request's path and query
    /// are appended. Without it such schemes refuse every request (`missing-url`): the
    /// request's own scheme and host are the client's to write, and never taken. A guard
    /// says so at warn: at [`build`](Self::build) for a fixed scheme, at the first refusal
    /// for a looked-up one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::Guard, inbox::MemoryInbox, providers::twilio, verify::{Outgoing, Sign}};
    /// let scheme = twilio::scheme("12345").unwrap();
    /// let body = b"CallSid=CA1234567890ABCDE&Digits=1234";
    /// let mut req = http::Request::post("/voice?foo=1");
    /// for (name, value) in scheme.sign(&Outgoing::new(body).url("https://hooks.example.com/voice?foo=1")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let without = Guard::builder("twilio", scheme.clone()).inbox(MemoryInbox::new()).build();
    /// assert_eq!(without.accept(&parts, bytes::Bytes::from_static(body)).await.status(), 400); // missing-url
    /// let guard = Guard::builder("twilio", scheme)
    ///     .public_origin("https://hooks.example.com")
    ///     .inbox(MemoryInbox::new())
    ///     .build();
    /// assert_eq!(guard.accept(&parts, bytes::Bytes::from_static(body)).await.status(), 202);
    /// # }
    /// ```
    pub fn public_origin(mut self, origin: impl Into<String>) -> Self {
        self.inner.public_origin = Some(origin.into());
        self
    }

    /// The provider handshake to answer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::Guard, handshake::DropboxChallenge, providers::dropbox};
    /// let guard = Guard::builder("dropbox", dropbox::scheme("app-secret").unwrap()).handshake(DropboxChallenge).build();
    /// let (parts, ()) = http::Request::get("/?challenge=Xr8vM2").body(()).unwrap().into_parts();
    /// let res = guard.accept(&parts, bytes::Bytes::new()).await;
    /// assert_eq!((res.status(), res.body().as_slice()), (http::StatusCode::OK, &b"Xr8vM2"[..]));
    /// # }
    /// ```
    pub fn handshake(mut self, handshake: impl Handshake) -> Self {
        self.inner.handshake = Some(Arc::new(handshake));
        self
    }

    /// Answers rejections for `reason` with `status` instead of the default.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::Guard, providers::github, verify::Reason};
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap())
    ///     .status_for(Reason::MissingSignature, http::StatusCode::FORBIDDEN)
    ///     .build();
    /// let (parts, ()) = http::Request::post("/").body(()).unwrap().into_parts();
    /// assert_eq!(guard.accept(&parts, "{}".into()).await.status(), 403);
    /// # }
    /// ```
    pub fn status_for(mut self, reason: Reason, status: StatusCode) -> Self {
        self.inner.statuses.insert(reason, status);
        self
    }

    /// `Retry-After` seconds on 503 answers and on middleware mode's
    /// `delivery-in-progress` answers (default 5).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::Guard, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone()).retry_after(30).build(); // no inbox
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let res = guard.accept(&parts, "{}".into()).await;
    /// assert_eq!(res.status(), 503);
    /// assert_eq!(res.headers()["retry-after"], "30");
    /// # }
    /// ```
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.inner.retry_after = secs;
        self
    }

    /// The status for accepted deliveries (default 202).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::Guard, inbox::MemoryInbox, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone())
    ///     .inbox(MemoryInbox::new())
    ///     .accepted_status(http::StatusCode::NO_CONTENT)
    ///     .build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// assert_eq!(guard.accept(&parts, "{}".into()).await.status(), 204);
    /// # }
    /// ```
    pub fn accepted_status(mut self, status: StatusCode) -> Self {
        self.inner.accepted_status = status;
        self
    }

    /// How long a reservation lives in middleware mode (default
    /// [`DEFAULT_PENDING_LEASE`], 60 s): the time a request holds a delivery's replay mark
    /// as *pending* while the handler runs, before it is confirmed (for the replay time
    /// to live) or cancelled. It only matters when the request cannot settle it, i.e. when
    /// the receiver dies mid-handler: the sender's retries are then answered `409` until
    /// the lease runs out, and handled after that.
    ///
    /// The trade-off: **too short**, and a handler still running when its lease runs out
    /// no longer holds the delivery, so a copy (a sender that timed out and retried, or a
    /// replay) is handled a second time alongside it; **too long**, and the retry of a
    /// delivery whose receiver crashed waits that long. Choose it longer than your
    /// slowest handler (the body is read and verified, and `VerifyLayer`'s inner service
    /// made ready, before the reservation is taken, so neither the read timeout nor a
    /// wait for the inner service counts). A lease under one second is taken as one second
    /// (a zero lease would hold nothing, and every concurrent copy would be handled).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, guard::{Guard, Reserved}, providers::github};
    /// use hookguard::verify::{Outgoing, Sign};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone())
    ///     .pending_lease(Duration::from_secs(120))
    ///     .clock(clock.clone())
    ///     .build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &"{}".into()).await else { panic!() };
    /// std::mem::forget(reservation); // as if the receiver died mid-handler
    /// clock.advance(Duration::from_secs(119));
    /// let Reserved::Respond(copy) = guard.reserve(&parts, &"{}".into()).await else { panic!() };
    /// assert_eq!(copy.status(), 409);
    /// clock.advance(Duration::from_secs(2)); // the lease ran out: the retry is handled
    /// assert!(matches!(guard.reserve(&parts, &"{}".into()).await, Reserved::Fresh { .. }));
    /// # }
    /// ```
    pub fn pending_lease(mut self, lease: Duration) -> Self {
        self.inner.pending_lease = lease.max(Duration::from_secs(1));
        self
    }

    /// The status for a copy of a delivery whose reservation another request holds, in
    /// middleware mode (default `409 Conflict`, with `Retry-After` and a
    /// `delivery-in-progress` problem). Senders retry it later; choose another retryable
    /// status if a provider treats `409` as final.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::{guard::{Guard, Reserved}, providers::github, verify::{Outgoing, Sign}};
    /// let scheme = github::scheme("s3cr3t").unwrap();
    /// let guard = Guard::builder("github", scheme.clone())
    ///     .in_progress_status(http::StatusCode::SERVICE_UNAVAILABLE)
    ///     .build();
    /// let mut req = http::Request::post("/");
    /// for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &"{}".into()).await else { panic!() };
    /// let Reserved::Respond(copy) = guard.reserve(&parts, &"{}".into()).await else { panic!() };
    /// assert_eq!(copy.status(), 503);
    /// assert!(copy.headers().contains_key("retry-after"));
    /// reservation.finish(http::StatusCode::OK).await;
    /// # }
    /// ```
    pub fn in_progress_status(mut self, status: StatusCode) -> Self {
        self.inner.in_progress_status = status;
        self
    }

    /// Builds the guard.
    ///
    /// ```
    /// use hookguard::{guard::Guard, providers::github};
    /// let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).body_limit(1024).build();
    /// assert_eq!((guard.endpoint(), guard.body_limit()), ("github", 1024));
    /// ```
    #[must_use]
    pub fn build(mut self) -> Guard {
        // A fixed scheme's missing origin is said here, below; a looked-up one's at its
        // first refusal.
        let said = &self.inner.said;
        said.missing_public_origin.store(self.inner.fixed.is_none(), Ordering::Relaxed);
        let unused = !self.default_replay && self.inner.replay.is_some() && self.inner.inbox.is_some();
        said.replay_store_unused.store(unused, Ordering::Relaxed);
        if let Some(scheme) = &self.inner.fixed
            && scheme.signs_called_url()
            && self.inner.public_origin.is_none()
        {
            // Said once, here, rather than as a `400` on every request.
            tracing::warn!(
                endpoint = %self.inner.endpoint,
                provider = scheme.provider(),
                "the scheme signs the URL it is called at: set public_origin, or every request is refused (missing-url)"
            );
        }
        if self.inner.fixed.is_some() && self.inner.handshake.as_ref().is_some_and(|h| h.hands_over_secret())
        {
            tracing::warn!(
                endpoint = %self.inner.endpoint,
                "the handshake hands over a secret, which a fixed scheme cannot keep: every handshake is refused (403); use TenantSchemes or a SchemeSource that adopts secrets"
            );
        }
        if self.default_replay {
            // Only a guard without an inbox marks (middleware mode, `check`): the inbox
            // refuses copies by its own keys.
            if let Some(scheme) = &self.inner.fixed
                && self.inner.inbox.is_none()
                && scheme.tolerance().replay_window().is_none()
            {
                // Marks of a scheme without a timestamp live long (72 h by default): the
                // default store refuses (503) above a rate low enough to meet in production.
                let ttl = self.inner.replay_ttl.unwrap_or(DEFAULT_UNTIMED_REPLAY_TTL);
                let per_minute = untimed_rate_per_minute(MemoryReplayStore::DEFAULT_CAPACITY, ttl);
                tracing::info!(
                    endpoint = %self.inner.endpoint,
                    provider = scheme.provider(),
                    "the scheme signs no timestamp, so replay marks live {}: the default replay store \
                     ({} marks) answers 503 above about {per_minute} deliveries a minute; give replay_store \
                     a MemoryReplayStore with a larger capacity, or a shared store",
                    humantime_secs(ttl),
                    MemoryReplayStore::DEFAULT_CAPACITY,
                );
            }
            let store = MemoryReplayStore::new().clock(Arc::clone(&self.inner.clock));
            self.inner.replay = Some(Arc::new(store));
        }
        Guard { inner: Arc::new(self.inner) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{handshake::MetaSubscription, inbox::logged, providers::github};

    /// A guard on the default replay store with a scheme that signs no timestamp says, at
    /// start, the rate above which that store refuses; one whose marks are short-lived,
    /// that was given a store, or that hands off to an inbox, says nothing.
    #[tokio::test]
    async fn the_default_store_states_its_sustainable_rate_for_untimed_schemes() {
        use crate::providers::stripe;
        let ((), logs) = logged(async {
            let _ = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
        })
        .await;
        assert!(logs.contains("about 23 deliveries a minute") && logs.contains("72 h"), "{logs}");
        let ((), logs) = logged(async {
            let _ = Guard::builder("github", github::scheme("s3cr3t").unwrap())
                .replay_ttl(Duration::from_secs(24 * 3600))
                .build();
        })
        .await;
        assert!(logs.contains("about 69 deliveries a minute") && logs.contains("24 h"), "{logs}");
        let ((), logs) = logged(async {
            let _ = Guard::builder("stripe", stripe::scheme("whsec_s3cr3t").unwrap()).build();
            let _ = Guard::builder("github", github::scheme("s3cr3t").unwrap())
                .replay_store(MemoryReplayStore::new().capacity(10_000_000))
                .build();
            // With an inbox (terminal mode), the inbox refuses copies: no mark is set.
            let _ = Guard::builder("github", github::scheme("s3cr3t").unwrap())
                .inbox(crate::inbox::MemoryInbox::new())
                .build();
        })
        .await;
        assert!(logs.is_empty(), "{logs}");
    }

    /// A looked-up scheme that signs the URL it is called at, without a public origin:
    /// every request is refused `missing-url` (a `400` the sender takes for its own
    /// fault), and the receiver's misconfiguration is said once at warn, not never (the
    /// refusal is logged at debug) nor once per request. With the origin set, nothing.
    #[tokio::test]
    async fn a_looked_up_scheme_without_its_public_origin_is_said_once() {
        use crate::{
            providers::twilio,
            verify::{Outgoing, Sign as _},
        };
        let scheme = twilio::scheme("12345").unwrap();
        let body = b"CallSid=CA1&From=%2B14158675310";
        let mut req =
            http::Request::post("/hooks/twilio").header("content-type", "application/x-www-form-urlencoded");
        let url = "https://hooks.example.com/hooks/twilio";
        for (name, value) in scheme.sign(&Outgoing::new(body).url(url)).unwrap() {
            req = req.header(name, value);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let looked_up = |origin: Option<&str>| {
            let source = FixedScheme(Arc::new(scheme.clone()));
            let builder =
                Guard::builder_with_source("twilio", source).inbox(crate::inbox::MemoryInbox::new());
            match origin {
                Some(origin) => builder.public_origin(origin),
                None => builder,
            }
            .build()
        };
        let guard = looked_up(None);
        let (statuses, logs) = logged(async {
            let first = guard.accept(&parts, Bytes::from_static(body)).await.status();
            (first, guard.accept(&parts, Bytes::from_static(body)).await.status())
        })
        .await;
        assert_eq!(statuses, (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST));
        assert_eq!(logs.matches("set public_origin").count(), 1, "{logs}");
        assert!(logs.contains("WARN"), "{logs}");
        let guard = looked_up(Some("https://hooks.example.com"));
        let (status, logs) = logged(guard.accept(&parts, Bytes::from_static(body))).await;
        assert_eq!(status.status(), StatusCode::ACCEPTED);
        assert!(!logs.contains("public_origin"), "{logs}");
    }

    /// A replay store given to a guard whose terminal pipeline runs is not used (the
    /// inbox's keys refuse copies): said once at warn, so that replicas counting on a
    /// shared store to refuse each other's copies learn they do not. Not said for the
    /// default store, nor for a guard without an inbox (middleware mode uses the store).
    #[tokio::test]
    async fn a_replay_store_the_terminal_pipeline_does_not_use_is_said_once() {
        use crate::{
            inbox::MemoryInbox,
            verify::{Outgoing, Sign as _},
        };
        let scheme = github::scheme("s3cr3t").unwrap();
        let delivery = |n: u8| {
            let body = Bytes::from(format!("{{\"n\":{n}}}"));
            let mut req = http::Request::post("/hooks");
            for (name, value) in scheme.sign(&Outgoing::new(&body)).unwrap() {
                req = req.header(name, value);
            }
            (req.body(()).unwrap().into_parts().0, body)
        };
        let said = |guard: Guard| {
            let (a, b) = (delivery(1), delivery(2));
            async move {
                let (statuses, logs) = logged(async {
                    (guard.accept(&a.0, a.1).await.status(), guard.accept(&b.0, b.1).await.status())
                })
                .await;
                (statuses, logs.matches("replay store given is not used").count())
            }
        };
        let accepted = (StatusCode::ACCEPTED, StatusCode::ACCEPTED);
        let given = Guard::builder("github", scheme.clone())
            .replay_store(MemoryReplayStore::new())
            .inbox(MemoryInbox::new())
            .build();
        assert_eq!(said(given).await, (accepted, 1));
        let default = Guard::builder("github", scheme.clone()).inbox(MemoryInbox::new()).build();
        assert_eq!(said(default).await, (accepted, 0));
        let without_inbox =
            Guard::builder("github", scheme.clone()).replay_store(MemoryReplayStore::new()).build();
        let unavailable = (StatusCode::SERVICE_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(said(without_inbox).await, (unavailable, 0));
    }

    /// A lookup the source throttled (anyone can cause one) is answered `503` +
    /// `Retry-After` as an outage is, but counted apart and not logged at `info`; a failing
    /// store is still a warning.
    #[tokio::test]
    async fn a_throttled_lookup_is_503_counted_apart_and_not_logged_at_info() {
        #[derive(Debug)]
        struct Source(bool);
        impl SchemeSource for Source {
            fn scheme<'a>(
                &'a self,
                _: &'a Parts,
            ) -> crate::replay::BoxFuture<'a, Result<Arc<dyn crate::verify::Scheme>, SourceError>>
            {
                let throttled = self.0;
                Box::pin(async move {
                    Err(if throttled {
                        SourceError::Throttled("too many new certificate URLs lately".into())
                    } else {
                        SourceError::Unavailable("connection refused".into())
                    })
                })
            }
        }
        let (post, ()) = http::Request::post("/hooks").body(()).unwrap().into_parts();
        let (res, logs) = logged(async {
            Guard::builder_with_source("paypal", Source(true)).build().accept(&post, Bytes::new()).await
        })
        .await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().contains_key(header::RETRY_AFTER));
        assert!(logs.is_empty(), "{logs}");
        let (res, logs) = logged(async {
            Guard::builder_with_source("paypal", Source(false)).build().accept(&post, Bytes::new()).await
        })
        .await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(logs.contains("secret source failed"), "{logs}");
    }

    /// `check` meeting a delivery that a middleware-mode request still handles (its
    /// reservation live in the same in-process store) answers `409` (retry later), as on a
    /// shared store, not `200 duplicate` for what may yet fail.
    #[tokio::test]
    async fn check_meeting_a_live_reservation_answers_in_progress() {
        use crate::verify::{Outgoing, Sign as _};
        let scheme = github::scheme("s3cr3t").unwrap();
        let guard = Guard::builder("github", scheme.clone()).replay_store(MemoryReplayStore::new()).build();
        let mut req = http::Request::post("/hooks/github");
        for (name, value) in scheme.sign(&Outgoing::new(b"{}")).unwrap() {
            req = req.header(name, value);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let body = Bytes::from_static(b"{}");
        let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &body).await else { panic!() };
        let Checked::Respond(res) = guard.check(&parts, &body).await else { panic!("not refused") };
        assert_eq!(res.status(), StatusCode::CONFLICT);
        reservation.finish(StatusCode::OK).await;
        assert!(matches!(guard.check(&parts, &body).await, Checked::Duplicate(_)));

        // A zero lease is taken as a second: a copy right behind is still held off.
        let clock = crate::clock::ManualClock::at_unix(1_700_000_000);
        let guard =
            Guard::builder("github", scheme).pending_lease(Duration::ZERO).clock(clock.clone()).build();
        let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &body).await else { panic!() };
        let Reserved::Respond(copy) = guard.reserve(&parts, &body).await else { panic!("handled twice") };
        assert_eq!(copy.status(), StatusCode::CONFLICT);
        clock.advance(Duration::from_millis(1_001));
        assert!(matches!(guard.reserve(&parts, &body).await, Reserved::Fresh { .. }), "the lease ran out");
        drop(reservation);
    }

    /// Dropbox sends a second change to an account as the same bytes as the first
    /// notice: each is new, in terminal mode (two jobs, two keys) and in middleware mode
    /// (no replay mark taken: `Checked::New` and `Reserved::Fresh` every time).
    #[tokio::test]
    async fn deliveries_without_a_replay_key_are_each_new() {
        use crate::{
            inbox::{Inbox as _, MemoryInbox},
            providers::dropbox,
            verify::{Outgoing, Sign as _},
        };
        let scheme = dropbox::scheme("app-secret").unwrap();
        let notice = Bytes::from_static(br#"{"list_folder":{"accounts":["dbid:AAH4f99T0taONIb"]}}"#);
        let mut req = http::Request::post("/hooks/dropbox");
        for (name, value) in scheme.sign(&Outgoing::new(&notice)).unwrap() {
            req = req.header(name, value);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();

        let inbox = MemoryInbox::new();
        let guard = Guard::builder("dropbox", scheme.clone()).inbox(inbox.clone()).build();
        for _ in 0..2 {
            assert_eq!(guard.accept(&parts, notice.clone()).await.status(), StatusCode::ACCEPTED);
        }
        let jobs = inbox.pull(10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(jobs.len(), 2, "both notices kept");
        assert_ne!(jobs[0].webhook().key(), jobs[1].webhook().key());
        assert!(jobs.iter().all(|job| job.webhook().key().starts_with("dropbox:")));

        let store = MemoryReplayStore::new();
        let guard = Guard::builder("dropbox", scheme).replay_store(store.clone()).build();
        for _ in 0..2 {
            let Checked::New { mark, .. } = guard.check(&parts, &notice).await else { panic!("not new") };
            mark.keep();
            let Reserved::Fresh { reservation, .. } = guard.reserve(&parts, &notice).await else {
                panic!("not fresh")
            };
            reservation.finish(StatusCode::OK).await;
        }
        assert_eq!(store.len(), 0, "no marks taken");
        // A delivery with a replay key is still refused the second time.
        let github = github::scheme("s3cr3t").unwrap();
        let guard = Guard::builder("github", github.clone()).replay_store(store.clone()).build();
        let mut req = http::Request::post("/hooks/github");
        for (name, value) in github.sign(&Outgoing::new(&notice)).unwrap() {
            req = req.header(name, value);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let Checked::New { mark, .. } = guard.check(&parts, &notice).await else { panic!("not new") };
        mark.keep();
        assert!(matches!(guard.check(&parts, &notice).await, Checked::Duplicate(_)));
    }

    /// What anyone can send (an unsigned request, a guessed handshake token) is counted,
    /// not logged at `info`: a flood of forged requests must not flood the logs.
    #[tokio::test]
    async fn refusals_anyone_can_send_are_not_logged_at_info() {
        let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap())
            .handshake(MetaSubscription::new("verify-me").unwrap())
            .build();
        let (unsigned, ()) = http::Request::post("/hooks/github").body(()).unwrap().into_parts();
        let guess = "/hooks/github?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1";
        let (guessed, ()) = http::Request::get(guess).body(()).unwrap().into_parts();
        let (statuses, logs) = logged(async {
            let a = guard.accept(&unsigned, Bytes::from_static(b"{}")).await.status();
            let b = guard.accept(&guessed, Bytes::new()).await.status();
            (a, b)
        })
        .await;
        assert_eq!(statuses, (StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN));
        assert!(logs.is_empty(), "{logs}");
    }

    /// An endpoint's name is the first part of its keys (`{name}:{id}`): a name holding
    /// the separator is escaped there, so that `shop`'s delivery `eu:1` and `shop:eu`'s
    /// delivery `1` sharing one inbox are both kept.
    #[tokio::test]
    async fn endpoint_names_holding_the_key_separator_keep_their_deliveries_apart() {
        use crate::{
            inbox::{Inbox as _, MemoryInbox},
            providers::standard_webhooks,
            verify::{Outgoing, Sign as _},
        };
        let scheme = standard_webhooks::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let inbox = MemoryInbox::new();
        let mut keys = Vec::new();
        for (endpoint, id) in [("shop", "eu:1"), ("shop:eu", "1"), ("shop%3Aeu", "1")] {
            let guard = Guard::builder(endpoint, scheme.clone()).inbox(inbox.clone()).build();
            let now = time::OffsetDateTime::now_utc();
            let mut req = http::Request::post("/hooks");
            for (name, value) in scheme.sign(&Outgoing::new(b"{}").id(id).timestamp(now)).unwrap() {
                req = req.header(name, value);
            }
            let (parts, ()) = req.body(()).unwrap().into_parts();
            assert_eq!(
                guard.accept(&parts, Bytes::from_static(b"{}")).await.status(),
                202,
                "{endpoint} {id}"
            );
        }
        while let Some(job) = inbox.pull(1, Duration::from_secs(30)).await.unwrap().pop() {
            keys.push((job.webhook().endpoint().to_owned(), job.webhook().key().to_owned()));
        }
        keys.sort();
        assert_eq!(
            keys,
            [
                ("shop".to_owned(), "shop:eu:1".to_owned()),
                ("shop%3Aeu".to_owned(), "shop%253Aeu:1".to_owned()),
                ("shop:eu".to_owned(), "shop%3Aeu:1".to_owned()),
            ]
        );
    }

    /// A Zoom validation the guard verified but the handshake's secrets do not (one
    /// handshake in front of tenants' schemes) is refused, counted and logged as the
    /// configuration mismatch it is.
    #[tokio::test]
    async fn a_handshake_refusing_a_verified_request_is_logged() {
        use crate::{
            handshake::ZoomUrlValidation,
            providers::zoom,
            verify::{Outgoing, Sign as _},
        };
        let tenant = zoom::scheme("tenant-secret").unwrap();
        let guard = Guard::builder("zoom", tenant.clone())
            .handshake(ZoomUrlValidation::new(zoom::scheme("another-secret").unwrap()))
            .build();
        let body =
            br#"{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}"#;
        let mut req = http::Request::post("/hooks/zoom");
        for (name, value) in
            tenant.sign(&Outgoing::new(body).timestamp(time::OffsetDateTime::now_utc())).unwrap()
        {
            req = req.header(name, value);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let (res, logs) = logged(guard.accept(&parts, Bytes::from_static(body))).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(logs.contains("WARN") && logs.contains("other secrets than the guard"), "{logs}");
    }

    /// A terminal service over a guard without an inbox would answer every verified
    /// delivery 503: it says so when it is made, and only then.
    #[tokio::test]
    async fn a_terminal_service_without_an_inbox_warns_when_made() {
        let scheme = || github::scheme("s3cr3t").unwrap();
        let without = Guard::builder("github", scheme()).build();
        let ((), logs) = logged(async { drop(crate::layer::WebhookService::new(without)) }).await;
        assert!(logs.contains("WARN") && logs.contains("without an inbox"), "{logs}");
        let with = Guard::builder("github", scheme()).inbox(crate::inbox::MemoryInbox::new()).build();
        let ((), logs) = logged(async { drop(crate::layer::WebhookService::new(with)) }).await;
        assert!(logs.is_empty(), "{logs}");
    }
}
