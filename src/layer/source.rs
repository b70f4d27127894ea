//! Source controls as Tower middleware: [`AllowListLayer`] and [`RateLimitLayer`], in
//! front of [`VerifyLayer`](super::VerifyLayer) or [`WebhookService`](super::WebhookService).

use std::{
    fmt,
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    guard::VerificationFailed,
    problem::Problem,
    source::{AllowList, ClientAddr, LimitKey, PeerAddr, SourceLimiter, TrustedProxies},
};

/// Answered when no peer address is in the request's extensions: the server is not
/// set up to pass it (500). Shared with the actix adapter.
pub(crate) const PEER_UNKNOWN: Problem =
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "client-address-unknown", "Client address unknown");

/// Put in the request's extensions next to the [`ClientAddr`] a source-control layer
/// resolved: the address, and the proxies it was resolved with. A later layer with
/// proxies of its own reuses that [`ClientAddr`] only if they are the same ones.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedWith {
    client: IpAddr,
    /// `None`: no proxies (the layer had none set).
    proxies: Option<TrustedProxies>,
}

impl ResolvedWith {
    /// `client`, resolved with `proxies`.
    pub(crate) fn new(client: IpAddr, proxies: Option<&TrustedProxies>) -> Self {
        Self { client, proxies: proxies.cloned() }
    }

    /// The client address in the extensions (`known`, and the `mark` next to it) that a
    /// layer whose own proxies are `own` may take as it is. A layer with no proxies set
    /// reuses any. A layer with proxies set reuses one resolved with the same proxies,
    /// or one the application put in itself (no mark, or a mark for another address:
    /// the application replaced it); one another layer resolved with other proxies it
    /// resolves again.
    pub(crate) fn reusable(
        known: Option<ClientAddr>,
        mark: Option<&Self>,
        own: Option<&TrustedProxies>,
    ) -> Option<IpAddr> {
        let ClientAddr(ip) = known?;
        match (own, mark) {
            (Some(own), Some(mark)) if mark.client == ip => own.same_as(mark.proxies.as_ref()).then_some(ip),
            _ => Some(ip),
        }
    }
}

/// Put in the request's extensions by a source-control layer that could not resolve the
/// client (a trusted proxy's forwarding header it cannot read), with the proxies it used:
/// an inner layer that would have reused that layer's answer (no proxies of its own, or
/// the same ones) takes the client as unknown too, instead of judging the connection's
/// peer, which is the proxy.
#[derive(Debug, Clone)]
pub(crate) struct UnresolvedWith(Option<TrustedProxies>);

impl UnresolvedWith {
    /// Marks the client unknown to a layer with these `proxies`.
    pub(crate) fn new(proxies: Option<&TrustedProxies>) -> Self {
        Self(proxies.cloned())
    }

    /// Whether an outer layer found the client unknown, in a way a layer whose own
    /// proxies are `own` takes as it is (no proxies of its own, or the same ones).
    pub(crate) fn applies(mark: Option<&Self>, own: Option<&TrustedProxies>) -> bool {
        mark.is_some_and(|Self(theirs)| own.is_none_or(|own| own.same_as(theirs.as_ref())))
    }
}

enum Client {
    /// A [`ClientAddr`] an outer layer (or the application) set, that this layer may
    /// take as it is ([`ResolvedWith::reusable`]).
    Reused(IpAddr),
    /// Resolved here.
    Resolved(IpAddr),
    /// A trusted proxy sent a hop that is not an address: the client cannot be known.
    Unresolved { peer: IpAddr },
    /// No peer address at all (server misconfiguration).
    NoPeer,
}

impl Client {
    /// The client address, if known.
    fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Reused(ip) | Self::Resolved(ip) => Some(*ip),
            Self::Unresolved { .. } | Self::NoPeer => None,
        }
    }

    /// Passes on what this layer found: a client it resolved as a [`ClientAddr`] (with
    /// the proxies it used), and an unresolved one as no [`ClientAddr`] at all, in place
    /// of one an outer layer resolved with other proxies.
    fn pass_on(&self, extensions: &mut http::Extensions, proxies: Option<&TrustedProxies>) {
        match self {
            Self::Resolved(ip) => {
                extensions.insert(ClientAddr(*ip));
                extensions.insert(ResolvedWith::new(*ip, proxies));
                extensions.remove::<UnresolvedWith>();
            }
            Self::Unresolved { .. } => {
                extensions.remove::<ClientAddr>();
                extensions.remove::<ResolvedWith>();
                extensions.insert(UnresolvedWith::new(proxies));
            }
            Self::Reused(_) | Self::NoPeer => {}
        }
    }
}

/// The client of `req` as a layer with these `proxies` (`None`: not set) sees it.
fn resolve<B>(req: &Request<B>, proxies: Option<&TrustedProxies>) -> Client {
    let extensions = req.extensions();
    let known = extensions.get::<ClientAddr>().copied();
    if let Some(ip) = ResolvedWith::reusable(known, extensions.get::<ResolvedWith>(), proxies) {
        return Client::Reused(ip);
    }
    let Some(peer) = PeerAddr::from_extensions(extensions) else {
        tracing::error!(
            "no peer address in the request: serve axum with `into_make_service_with_connect_info::<SocketAddr>()`, or insert `hookguard::source::PeerAddr` per connection"
        );
        return Client::NoPeer;
    };
    // An outer layer found the client unknown: so is it here, unless this layer has
    // proxies of its own, other than that layer's, and resolves again.
    if known.is_none() && UnresolvedWith::applies(extensions.get::<UnresolvedWith>(), proxies) {
        return Client::Unresolved { peer };
    }
    match proxies.map_or(Some(peer), |proxies| proxies.client_addr(peer, req.headers())) {
        Some(ip) => Client::Resolved(ip),
        None => Client::Unresolved { peer },
    }
}

fn problem<B: From<Bytes>>(problem: Problem) -> Response<B> {
    problem.into_response().map(|b| B::from(Bytes::from(b)))
}

/// Refuses clients outside an [`AllowList`] with `403 source-not-allowed`, before the
/// body is read. The client address is the connection's peer
/// ([`PeerAddr`] or axum's `ConnectInfo<SocketAddr>`), or the hop behind
/// [`trusted_proxies`](Self::trusted_proxies); it is passed on as a [`ClientAddr`]
/// extension. Requests without a peer address get `500` (see [`PeerAddr`]).
///
/// A [`ClientAddr`] an outer source-control layer resolved is reused when this layer has
/// no [`trusted_proxies`](Self::trusted_proxies) set, or the same ones; one resolved with
/// other proxies is resolved again with this layer's, so a router-wide
/// [`RateLimitLayer`] without proxies cannot make a route's allow-list judge the load
/// balancer's address. A [`ClientAddr`] the application put in itself is believed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::net::SocketAddr;
/// use axum::{Router, extract::ConnectInfo, routing::post};
/// use hookguard::{layer::AllowListLayer, source::AllowList};
/// use tower::ServiceExt as _;
///
/// let allow: AllowList = "192.0.2.0/24".parse().unwrap();
/// let app = Router::new().route("/hooks", post(|| async { "ok" })).layer(AllowListLayer::new(allow));
/// let from = |addr: &str| {
///     let mut req = http::Request::post("/hooks").body(axum::body::Body::empty()).unwrap();
///     req.extensions_mut().insert(ConnectInfo(addr.parse::<SocketAddr>().unwrap()));
///     req
/// };
/// assert_eq!(app.clone().oneshot(from("192.0.2.10:5000")).await.unwrap().status(), 200);
/// assert_eq!(app.oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 403);
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct AllowListLayer {
    list: AllowList,
    /// `None`: not set (no proxies; a [`ClientAddr`] an outer layer resolved is reused).
    proxies: Option<TrustedProxies>,
}

impl AllowListLayer {
    /// A layer over `list` (clones share it: [`AllowList::replace`] takes effect at once).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::convert::Infallible;
    /// use hookguard::{layer::AllowListLayer, source::{AllowList, PeerAddr}};
    /// use tower::{Layer as _, ServiceExt as _, service_fn};
    ///
    /// let list = AllowList::new([]);
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"ok")))
    /// });
    /// let svc = AllowListLayer::new(list.clone()).layer(handler);
    /// let from = |peer: &str| {
    ///     let mut req = http::Request::post("/hooks").body(String::new()).unwrap();
    ///     req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    ///     req
    /// };
    /// assert_eq!(svc.clone().oneshot(from("192.0.2.10:5000")).await.unwrap().status(), 403);
    /// // The sender published new addresses: the running layer sees them at once.
    /// list.replace(["192.0.2.0/24".parse().unwrap()]);
    /// assert_eq!(svc.oneshot(from("192.0.2.10:5000")).await.unwrap().status(), 200);
    /// # }
    /// ```
    pub fn new(list: AllowList) -> Self {
        Self { list, proxies: None }
    }

    /// The proxies whose forwarding header is believed (default: none). Set, the layer
    /// reuses a [`ClientAddr`] an outer layer resolved only if that layer had the same
    /// proxies (the same ranges in the same order, and the same header); not set, it
    /// reuses any.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::convert::Infallible;
    /// use hookguard::{layer::AllowListLayer, source::{AllowList, PeerAddr, TrustedProxies}};
    /// use tower::{Layer as _, ServiceExt as _, service_fn};
    ///
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"ok")))
    /// });
    /// let svc = AllowListLayer::new("192.0.2.0/24".parse().unwrap())
    ///     .trusted_proxies(TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]))
    ///     .layer(handler);
    /// let via_proxy = |client: &str| {
    ///     let mut req = http::Request::post("/hooks").header("x-forwarded-for", client).body(String::new()).unwrap();
    ///     req.extensions_mut().insert(PeerAddr("10.0.0.1:5000".parse().unwrap()));
    ///     req
    /// };
    /// // The client behind the proxy is checked, not the proxy.
    /// assert_eq!(svc.clone().oneshot(via_proxy("192.0.2.10")).await.unwrap().status(), 200);
    /// assert_eq!(svc.oneshot(via_proxy("198.51.100.1")).await.unwrap().status(), 403);
    /// # }
    /// ```
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = Some(proxies);
        self
    }
}

impl<S> Layer<S> for AllowListLayer {
    type Service = AllowListService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AllowListService { inner, list: self.list.clone(), proxies: self.proxies.clone() }
    }
}

/// The middleware of [`AllowListLayer`]. The inner service gets the client address it
/// admitted as a [`ClientAddr`] extension.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::convert::Infallible;
/// use hookguard::{layer::{AllowListLayer, AllowListService}, source::{AllowList, ClientAddr, PeerAddr, TrustedProxies}};
/// use tower::{Layer as _, ServiceExt as _, service_fn};
///
/// let handler = service_fn(|req: http::Request<String>| async move {
///     let ClientAddr(client) = req.extensions().get::<ClientAddr>().copied().unwrap();
///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from(client.to_string())))
/// });
/// let svc: AllowListService<_> = AllowListLayer::new("198.51.100.0/24".parse().unwrap())
///     .trusted_proxies(TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]))
///     .layer(handler);
/// // Through the load balancer at 10.0.0.2, which appended the address it saw.
/// let mut req = http::Request::post("/hooks").header("x-forwarded-for", "198.51.100.7").body(String::new()).unwrap();
/// req.extensions_mut().insert(PeerAddr("10.0.0.2:40000".parse().unwrap()));
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.body(), "198.51.100.7");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AllowListService<S> {
    inner: S,
    list: AllowList,
    proxies: Option<TrustedProxies>,
}

impl<S> AllowListService<S> {
    /// The inner service.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::convert::Infallible;
    /// # use tower::{Layer as _, ServiceExt as _, service_fn};
    /// # use hookguard::{layer::AllowListLayer, source::{AllowList, PeerAddr}};
    /// # let from = |peer: &str| {
    /// #     let mut req = http::Request::post("/hooks").body(String::new()).unwrap();
    /// #     req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    /// #     req
    /// # };
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"handled")))
    /// });
    /// let svc = AllowListLayer::new(AllowList::new(["192.0.2.0/24".parse().unwrap()])).layer(handler);
    /// // `from(peer)`: a request from that peer address.
    /// assert_eq!(svc.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 403);
    /// // The handler itself, without the allow-list in front.
    /// assert_eq!(svc.get_ref().clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
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
    /// # use tower::{Layer as _, ServiceExt as _, service_fn};
    /// # use hookguard::{layer::AllowListLayer, source::{AllowList, PeerAddr}};
    /// # let from = |peer: &str| {
    /// #     let mut req = http::Request::post("/hooks").body(String::new()).unwrap();
    /// #     req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    /// #     req
    /// # };
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"handled")))
    /// });
    /// let mut svc = AllowListLayer::new(AllowList::new(["192.0.2.0/24".parse().unwrap()])).layer(handler);
    /// // `from(peer)`: a request from that peer address.
    /// assert_eq!(svc.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 403);
    /// // The handler itself, without the allow-list in front, called in place.
    /// assert_eq!(svc.get_mut().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
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
    /// # use tower::{Layer as _, ServiceExt as _, service_fn};
    /// # use hookguard::{layer::AllowListLayer, source::{AllowList, PeerAddr}};
    /// # let from = |peer: &str| {
    /// #     let mut req = http::Request::post("/hooks").body(String::new()).unwrap();
    /// #     req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    /// #     req
    /// # };
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"handled")))
    /// });
    /// let svc = AllowListLayer::new(AllowList::new(["192.0.2.0/24".parse().unwrap()])).layer(handler);
    /// // `from(peer)`: a request from that peer address.
    /// assert_eq!(svc.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 403);
    /// // The handler back, without the allow-list.
    /// let handler = svc.into_inner();
    /// assert_eq!(handler.oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
    /// # }
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for AllowListService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = SourceFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let client = resolve(&req, self.proxies.as_ref());
        if let Client::NoPeer = client {
            return SourceFuture::refused(problem(PEER_UNKNOWN));
        }
        if let Err(refusal) = self.list.admit(client.ip()) {
            return SourceFuture::refused(problem(refusal));
        }
        client.pass_on(req.extensions_mut(), self.proxies.as_ref());
        SourceFuture::inner(self.inner.call(req), None)
    }
}

type ScopeFn = Arc<dyn Fn(&Uri, &HeaderMap) -> Option<String> + Send + Sync>;

/// Rate limits by client address with a [`SourceLimiter`]: `429 rate-limited` with
/// `Retry-After` before the body is read. Put it in front of the verify layer (or
/// [`WebhookService`](super::WebhookService)): it watches the answers, and each one
/// marked [`VerificationFailed`] spends from the sender's failure budget; a sender whose
/// failure budget is empty is refused before verification until it refills.
///
/// The client address is found as by [`AllowListLayer`] (a [`ClientAddr`] an outer
/// layer resolved is reused if it had no other proxies than this one) and passed on as a
/// [`ClientAddr`]; when a trusted proxy's header is unusable, the peer address is the
/// key, and no [`ClientAddr`] is passed on, not even one an outer layer resolved with
/// other proxies (an inner [`AllowListLayer`] then refuses the request, as it would
/// alone). Requests without a peer address get `500`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{net::SocketAddr, time::Duration};
/// use axum::{Router, extract::ConnectInfo, routing::post};
/// use hookguard::{guard::Guard, layer::{RateLimitLayer, VerifyLayer}, providers::github, source::SourceLimiter};
/// use tower::{ServiceBuilder, ServiceExt as _};
///
/// let limiter = SourceLimiter::builder()
///     .requests(100, Duration::from_secs(10))
///     .failures(2, Duration::from_secs(600))
///     .build()
///     .unwrap();
/// let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
/// let app = Router::new().route("/hooks", post(|| async { "ok" })).layer(
///     ServiceBuilder::new().layer(RateLimitLayer::new(limiter).scope("github")).layer(VerifyLayer::new(guard)),
/// );
/// let forged = || {
///     let mut req = http::Request::post("/hooks")
///         .header("x-hub-signature-256", "sha256=00")
///         .body(axum::body::Body::from("{}"))
///         .unwrap();
///     req.extensions_mut().insert(ConnectInfo("198.51.100.66:5000".parse::<SocketAddr>().unwrap()));
///     req
/// };
/// assert_eq!(app.clone().oneshot(forged()).await.unwrap().status(), 401);
/// assert_eq!(app.clone().oneshot(forged()).await.unwrap().status(), 401);
/// let refused = app.oneshot(forged()).await.unwrap();
/// assert_eq!(refused.status(), 429); // refused before verification
/// assert!(refused.headers().contains_key("retry-after"));
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RateLimitLayer {
    limiter: SourceLimiter,
    /// `None`: not set (no proxies; a [`ClientAddr`] an outer layer resolved is reused).
    proxies: Option<TrustedProxies>,
    scope: Option<Arc<str>>,
    scope_with: Option<ScopeFn>,
    failure_statuses: Arc<[StatusCode]>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("proxies", &self.proxies)
            .field("scope", &self.scope)
            .field("scope_with", &self.scope_with.is_some())
            .field("failure_statuses", &self.failure_statuses)
            .finish()
    }
}

impl RateLimitLayer {
    /// A layer over `limiter` (clones share its state, so one limiter can serve several
    /// routes; give each a [`scope`](Self::scope) for separate budgets).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::{convert::Infallible, time::Duration};
    /// use hookguard::{clock::ManualClock, layer::RateLimitLayer, source::{PeerAddr, SourceLimiter}};
    /// use tower::{Layer as _, ServiceExt as _, service_fn};
    ///
    /// let limiter = SourceLimiter::builder()
    ///     .requests(1, Duration::from_secs(60))
    ///     .clock(ManualClock::at_unix(1_700_000_000))
    ///     .build()
    ///     .unwrap();
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"ok")))
    /// });
    /// let github = RateLimitLayer::new(limiter.clone()).scope("github").layer(handler);
    /// let stripe = RateLimitLayer::new(limiter).scope("stripe").layer(handler);
    /// let from = |peer: &str| {
    ///     let mut req = http::Request::post("/hooks").body(String::new()).unwrap();
    ///     req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    ///     req
    /// };
    /// assert_eq!(github.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
    /// // Another scope of the same limiter: a budget of its own.
    /// assert_eq!(stripe.oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
    /// let refused = github.oneshot(from("198.51.100.1:5000")).await.unwrap();
    /// assert_eq!(refused.status(), 429);
    /// assert!(refused.headers().contains_key("retry-after"));
    /// # }
    /// ```
    pub fn new(limiter: SourceLimiter) -> Self {
        Self { limiter, proxies: None, scope: None, scope_with: None, failure_statuses: Arc::from([]) }
    }

    /// The proxies whose forwarding header is believed (default: none). As
    /// [`AllowListLayer::trusted_proxies`]: set, the layer reuses a [`ClientAddr`] an
    /// outer layer resolved only if that layer had the same proxies; not set, any.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::{convert::Infallible, time::Duration};
    /// use hookguard::{layer::RateLimitLayer, source::{PeerAddr, SourceLimiter, TrustedProxies}};
    /// use tower::{Layer as _, ServiceExt as _, service_fn};
    ///
    /// let limiter = SourceLimiter::builder().requests(1, Duration::from_secs(60)).build().unwrap();
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"ok")))
    /// });
    /// let svc = RateLimitLayer::new(limiter)
    ///     .trusted_proxies(TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]))
    ///     .layer(handler);
    /// let via_proxy = |client: &str| {
    ///     let mut req = http::Request::post("/hooks").header("x-forwarded-for", client).body(String::new()).unwrap();
    ///     req.extensions_mut().insert(PeerAddr("10.0.0.1:5000".parse().unwrap()));
    ///     req
    /// };
    /// assert_eq!(svc.clone().oneshot(via_proxy("198.51.100.1")).await.unwrap().status(), 200);
    /// // Each client behind the proxy has a budget of its own.
    /// assert_eq!(svc.clone().oneshot(via_proxy("198.51.100.2")).await.unwrap().status(), 200);
    /// assert_eq!(svc.oneshot(via_proxy("198.51.100.1")).await.unwrap().status(), 429);
    /// # }
    /// ```
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = Some(proxies);
        self
    }

    /// Counts under this endpoint name as well as the address.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::{convert::Infallible, time::Duration};
    /// use hookguard::{layer::RateLimitLayer, source::{PeerAddr, SourceLimiter}};
    /// use tower::{Layer as _, ServiceExt as _, service_fn};
    ///
    /// let limiter = SourceLimiter::builder().requests(1, Duration::from_secs(60)).build().unwrap();
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"ok")))
    /// });
    /// let stripe = RateLimitLayer::new(limiter.clone()).scope("stripe").layer(handler);
    /// let unscoped = RateLimitLayer::new(limiter).layer(handler);
    /// let from = |peer: &str| {
    ///     let mut req = http::Request::post("/hooks").body(String::new()).unwrap();
    ///     req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    ///     req
    /// };
    /// assert_eq!(stripe.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
    /// // The address's budget outside the scope is untouched.
    /// assert_eq!(unscoped.oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
    /// assert_eq!(stripe.oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 429);
    /// # }
    /// ```
    pub fn scope(mut self, scope: impl Into<Arc<str>>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Counts under a scope taken from the request (a tenant), overriding
    /// [`scope`](Self::scope) when it answers `Some`. The request is unverified here:
    /// answer only names you know (a tenant that exists), or a client can mint fresh
    /// budgets by varying the path.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::{convert::Infallible, time::Duration};
    /// use hookguard::{layer::RateLimitLayer, source::{PeerAddr, SourceLimiter}};
    /// use tower::{Layer as _, ServiceExt as _, service_fn};
    ///
    /// const TENANTS: &[&str] = &["acme", "globex"];
    /// let limiter = SourceLimiter::builder().requests(1, Duration::from_secs(60)).build().unwrap();
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"ok")))
    /// });
    /// let svc = RateLimitLayer::new(limiter)
    ///     .scope_with(|uri, _headers| {
    ///         let tenant = uri.path().strip_prefix("/hooks/")?;
    ///         TENANTS.contains(&tenant).then(|| tenant.to_owned())
    ///     })
    ///     .layer(handler);
    /// let to = |path: &str| {
    ///     let mut req = http::Request::post(path).body(String::new()).unwrap();
    ///     req.extensions_mut().insert(PeerAddr("198.51.100.1:5000".parse().unwrap()));
    ///     req
    /// };
    /// assert_eq!(svc.clone().oneshot(to("/hooks/acme")).await.unwrap().status(), 200);
    /// assert_eq!(svc.clone().oneshot(to("/hooks/globex")).await.unwrap().status(), 200); // its own budget
    /// assert_eq!(svc.clone().oneshot(to("/hooks/acme")).await.unwrap().status(), 429);
    /// // Unknown names share the address's one budget: no fresh budget per path.
    /// assert_eq!(svc.clone().oneshot(to("/hooks/x1")).await.unwrap().status(), 200);
    /// assert_eq!(svc.oneshot(to("/hooks/x2")).await.unwrap().status(), 429);
    /// # }
    /// ```
    pub fn scope_with(
        mut self,
        f: impl Fn(&Uri, &HeaderMap) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.scope_with = Some(Arc::new(f));
        self
    }

    /// Also treat answers with these statuses as failed verifications (for inner
    /// services that are not hookguard's; hookguard's own answers carry
    /// [`VerificationFailed`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::{convert::Infallible, time::Duration};
    /// use hookguard::{layer::RateLimitLayer, source::{PeerAddr, SourceLimiter}};
    /// use tower::{Layer as _, ServiceExt as _, service_fn};
    ///
    /// let limiter = SourceLimiter::builder().failures(1, Duration::from_secs(600)).build().unwrap();
    /// // Not hookguard's verifier: it answers 401 and marks nothing.
    /// let verifier = service_fn(|_req: http::Request<String>| async {
    ///     let mut res = http::Response::new(bytes::Bytes::new());
    ///     *res.status_mut() = http::StatusCode::UNAUTHORIZED;
    ///     Ok::<_, Infallible>(res)
    /// });
    /// let svc = RateLimitLayer::new(limiter)
    ///     .failure_statuses([http::StatusCode::UNAUTHORIZED])
    ///     .layer(verifier);
    /// let from = |peer: &str| {
    ///     let mut req = http::Request::post("/hooks").body(String::new()).unwrap();
    ///     req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    ///     req
    /// };
    /// assert_eq!(svc.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 401);
    /// // The 401 spent the failure budget: refused before the verifier.
    /// assert_eq!(svc.oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 429);
    /// # }
    /// ```
    pub fn failure_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.failure_statuses = statuses.into_iter().collect();
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService { inner, layer: self.clone() }
    }
}

/// The middleware of [`RateLimitLayer`]. It passes the client address on as a
/// [`ClientAddr`] extension, and spends from the client's failure budget for each answer
/// marked [`VerificationFailed`] (or with one of the layer's
/// [`failure_statuses`](RateLimitLayer::failure_statuses)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{convert::Infallible, time::Duration};
/// use hookguard::{clock::ManualClock, layer::{RateLimitLayer, RateLimitService}};
/// use hookguard::source::{ClientAddr, PeerAddr, SourceLimiter};
/// use tower::{Layer as _, ServiceExt as _, service_fn};
///
/// let limiter = SourceLimiter::builder()
///     .failures(1, Duration::from_secs(600))
///     .clock(ManualClock::at_unix(1_700_000_000))
///     .build()
///     .unwrap();
/// // A handler that is not hookguard's: it refuses with 401 what it cannot verify.
/// let handler = service_fn(|req: http::Request<String>| async move {
///     let ClientAddr(client) = req.extensions().get::<ClientAddr>().copied().unwrap();
///     let mut res = http::Response::new(bytes::Bytes::from(client.to_string()));
///     if req.body() != "signed" {
///         *res.status_mut() = http::StatusCode::UNAUTHORIZED;
///     }
///     Ok::<_, Infallible>(res)
/// });
/// let svc: RateLimitService<_> =
///     RateLimitLayer::new(limiter).failure_statuses([http::StatusCode::UNAUTHORIZED]).layer(handler);
/// let from = |peer: &str, body: &str| {
///     let mut req = http::Request::post("/hooks").body(body.to_owned()).unwrap();
///     req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
///     req
/// };
/// let res = svc.clone().oneshot(from("192.0.2.7:5000", "signed")).await.unwrap();
/// assert_eq!(res.body(), "192.0.2.7");
/// // One failure spends the forger's whole budget; others are not affected.
/// assert_eq!(svc.clone().oneshot(from("198.51.100.66:5000", "forged")).await.unwrap().status(), 401);
/// assert_eq!(svc.clone().oneshot(from("198.51.100.66:5000", "signed")).await.unwrap().status(), 429);
/// assert_eq!(svc.oneshot(from("192.0.2.7:5000", "signed")).await.unwrap().status(), 200);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitService<S> {
    inner: S,
    layer: RateLimitLayer,
}

impl<S> RateLimitService<S> {
    /// The inner service.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::convert::Infallible;
    /// # use tower::{Layer as _, ServiceExt as _, service_fn};
    /// # use hookguard::{clock::ManualClock, layer::RateLimitLayer, source::{PeerAddr, SourceLimiter}};
    /// # let from = |peer: &str| {
    /// #     let mut req = http::Request::post("/hooks").body(String::new()).unwrap();
    /// #     req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    /// #     req
    /// # };
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"handled")))
    /// });
    /// let limiter = SourceLimiter::builder()
    ///     .requests(1, std::time::Duration::from_secs(60))
    ///     .clock(ManualClock::at_unix(1_700_000_000))
    ///     .build()
    ///     .unwrap();
    /// let svc = RateLimitLayer::new(limiter).layer(handler);
    /// // `from(peer)`: a request from that peer address.
    /// assert_eq!(svc.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
    /// assert_eq!(svc.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 429);
    /// // The handler itself, without the rate limit in front.
    /// assert_eq!(svc.get_ref().clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
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
    /// # use tower::{Layer as _, ServiceExt as _, service_fn};
    /// # use hookguard::{clock::ManualClock, layer::RateLimitLayer, source::{PeerAddr, SourceLimiter}};
    /// # let from = |peer: &str| {
    /// #     let mut req = http::Request::post("/hooks").body(String::new()).unwrap();
    /// #     req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    /// #     req
    /// # };
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"handled")))
    /// });
    /// let limiter = SourceLimiter::builder()
    ///     .requests(1, std::time::Duration::from_secs(60))
    ///     .clock(ManualClock::at_unix(1_700_000_000))
    ///     .build()
    ///     .unwrap();
    /// let mut svc = RateLimitLayer::new(limiter).layer(handler);
    /// // `from(peer)`: a request from that peer address.
    /// assert_eq!(svc.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
    /// assert_eq!(svc.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 429);
    /// // The handler itself, without the rate limit in front, called in place.
    /// assert_eq!(svc.get_mut().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
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
    /// # use tower::{Layer as _, ServiceExt as _, service_fn};
    /// # use hookguard::{clock::ManualClock, layer::RateLimitLayer, source::{PeerAddr, SourceLimiter}};
    /// # let from = |peer: &str| {
    /// #     let mut req = http::Request::post("/hooks").body(String::new()).unwrap();
    /// #     req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    /// #     req
    /// # };
    /// let handler = service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"handled")))
    /// });
    /// let limiter = SourceLimiter::builder()
    ///     .requests(1, std::time::Duration::from_secs(60))
    ///     .clock(ManualClock::at_unix(1_700_000_000))
    ///     .build()
    ///     .unwrap();
    /// let svc = RateLimitLayer::new(limiter).layer(handler);
    /// // `from(peer)`: a request from that peer address.
    /// assert_eq!(svc.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
    /// assert_eq!(svc.clone().oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 429);
    /// // The handler back, without the rate limit.
    /// let handler = svc.into_inner();
    /// assert_eq!(handler.oneshot(from("198.51.100.1:5000")).await.unwrap().status(), 200);
    /// # }
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for RateLimitService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = SourceFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let l = &self.layer;
        let client = resolve(&req, l.proxies.as_ref());
        let mut key = match client {
            Client::Reused(ip) | Client::Resolved(ip) => LimitKey::new(ip),
            // Counted apart, behind the proxy's address, and not passed on as the client:
            // an inner allow-list must see that the client is unknown.
            Client::Unresolved { peer } => LimitKey::behind(peer),
            Client::NoPeer => return SourceFuture::refused(problem(PEER_UNKNOWN)),
        };
        let scope = l.scope_with.as_ref().and_then(|f| f(req.uri(), req.headers()));
        if let Some(scope) = scope {
            key = key.scope(scope);
        } else if let Some(scope) = &l.scope {
            key = key.scope(Arc::clone(scope));
        }
        if let Err(refused) = l.limiter.admit(&key) {
            return SourceFuture::refused(problem(refused.into_problem()));
        }
        client.pass_on(req.extensions_mut(), l.proxies.as_ref());
        let watch =
            Watch { limiter: l.limiter.clone(), key, failure_statuses: Arc::clone(&l.failure_statuses) };
        SourceFuture::inner(self.inner.call(req), Some(watch))
    }
}

struct Watch {
    limiter: SourceLimiter,
    key: LimitKey,
    failure_statuses: Arc<[StatusCode]>,
}

impl Watch {
    fn observe<B>(&self, res: &Response<B>) {
        if res.extensions().get::<VerificationFailed>().is_some()
            || self.failure_statuses.contains(&res.status())
        {
            self.limiter.record_failure(&self.key);
        }
    }
}

pin_project! {
    /// Response future of [`AllowListService`] and [`RateLimitService`]: a refusal,
    /// ready at once without calling the inner service, or the inner service's future
    /// (whose answer [`RateLimitService`] watches for failed verifications).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::{convert::Infallible, sync::{Arc, atomic::{AtomicUsize, Ordering}}};
    /// use futures_util::FutureExt as _;
    /// use hookguard::{layer::AllowListLayer, source::{AllowList, PeerAddr}};
    /// use tower::{Layer as _, Service as _, ServiceExt as _, service_fn};
    ///
    /// let calls = Arc::new(AtomicUsize::new(0));
    /// let counted = Arc::clone(&calls);
    /// let handler = service_fn(move |_req: http::Request<String>| {
    ///     counted.fetch_add(1, Ordering::SeqCst);
    ///     async { Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"ok"))) }
    /// });
    /// let mut svc = AllowListLayer::new(AllowList::new(["192.0.2.0/24".parse().unwrap()])).layer(handler);
    /// let mut req = http::Request::post("/hooks").body(String::new()).unwrap();
    /// req.extensions_mut().insert(PeerAddr("198.51.100.1:5000".parse().unwrap()));
    /// let future = svc.ready().await.unwrap().call(req);
    /// let refused = future.now_or_never().expect("a refusal is ready at once").unwrap();
    /// assert_eq!(refused.status(), 403);
    /// assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler was not called");
    /// # }
    /// ```
    pub struct SourceFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
        watch: Option<Watch>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Refused { res: Option<Response<B>> },
        Inner { #[pin] fut: F },
    }
}

impl<F, B> SourceFuture<F, B> {
    fn refused(res: Response<B>) -> Self {
        Self { kind: Kind::Refused { res: Some(res) }, watch: None }
    }
    fn inner(fut: F, watch: Option<Watch>) -> Self {
        Self { kind: Kind::Inner { fut }, watch }
    }
}

impl<F, B> fmt::Debug for SourceFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SourceFuture")
    }
}

impl<F, B, E> Future for SourceFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            // Polled again after completion: stay pending rather than panic.
            KindProj::Refused { res } => res.take().map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
            KindProj::Inner { fut } => {
                let out = ready!(fut.poll(cx));
                if let (Ok(res), Some(watch)) = (&out, this.watch.take()) {
                    watch.observe(res);
                }
                Poll::Ready(out)
            }
        }
    }
}
