//! Per-tenant secrets: the scheme for a request is built from secrets looked up at run
//! time (one secret per customer), and cached.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use hookguard::{guard::Guard, inbox::MemoryInbox, providers::github, tenant::TenantSchemes, Secret};
//!
//! let source = TenantSchemes::new(
//!     TenantSchemes::path_segment(2), // /hooks/{tenant}
//!     |tenant: String| async move {
//!         // Look the tenant's secrets up in your database.
//!         Ok::<_, std::io::Error>(match tenant.as_str() {
//!             "acme" => Some(vec![Secret::new("acme-secret").unwrap()]),
//!             _ => None,
//!         })
//!     },
//!     |secrets: &[Secret]| {
//!         let mut scheme = github::scheme(secrets[0].expose())?;
//!         for s in &secrets[1..] {
//!             scheme = scheme.with_secret(s.expose())?;
//!         }
//!         Ok(Arc::new(scheme))
//!     },
//! );
//! let guard = Guard::builder_with_source("github", source).inbox(MemoryInbox::new()).build();
//! let (parts, ()) = http::Request::post("/hooks/unknown").body(()).unwrap().into_parts();
//! assert_eq!(guard.accept(&parts, bytes::Bytes::new()).await.status(), 404);
//! # }
//! ```

use std::{
    collections::{HashMap, HashSet, VecDeque},
    error::Error,
    fmt,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use http::request::Parts;
use time::{OffsetDateTime, PrimitiveDateTime};
use tokio::sync::watch;

use crate::{
    ConfigError, Secret,
    clock::{Clock, SystemClock},
    guard::{SchemeSource, SourceError},
    replay::BoxFuture,
    verify::Scheme,
};

type BoxError = Box<dyn Error + Send + Sync>;
type TenantFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;
type LoadFn = dyn Fn(String) -> BoxFuture<'static, Result<Option<Vec<Secret>>, BoxError>> + Send + Sync;
type StoreFn = dyn Fn(String, Secret) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync;
type BuildFn = dyn Fn(&[Secret]) -> Result<Arc<dyn Scheme>, ConfigError> + Send + Sync;

/// A [`SchemeSource`] that finds the tenant of a request (a path segment, a header, …),
/// loads its secrets with your async function, builds its scheme once and caches it
/// (bounded, with a time to live; an unknown tenant is cached briefly too, so repeated
/// deliveries for one unknown name reach your store once per
/// [`unknown_ttl`](Self::unknown_ttl), though each new name is one lookup). Put a rate
/// limit in front: besides each new name, two kinds of request reach your store every
/// time. Loader errors are not cached: while your store is down, each request that
/// misses the cache makes a loader call (requests for one tenant at the same time share
/// one) and is answered `503`, each logged at `warn` by the guard. And handshake
/// requests skip the cache of unknown names: each one loads (see below). Unknown names
/// are cached apart from known tenants: a flood of made-up names never pushes a known
/// tenant out. A tenant name longer than 256 bytes is unknown without a lookup. A tenant
/// whose secrets make no scheme (`build` fails: a malformed secret) is logged at `error`
/// once per load and answered `503` + `Retry-After` ([`SourceError::Throttled`]: not
/// logged again per request) from the cache for `unknown_ttl` too.
///
/// Requests for one tenant that miss the cache at once share one load: a burst of
/// deliveries for a tenant whose entry expired calls your loader once, and each request
/// gets its answer, or its error ([`SourceError::Unavailable`] wrapping the loader's
/// error, shared: its text and its `source()` are the loader's; errors are not cached).
/// Requests for other tenants never wait on it. If the request that began the load goes
/// away (its future is dropped), the ones waiting on it load again. No request waits
/// longer than [`load_timeout`](Self::load_timeout) (10 seconds by default) for its
/// answer: a loader call that hangs fails the load then, for all of them (not cached).
///
/// A handshake loads on its own, so two loads of one tenant may still run at once: the
/// answer of the one that began last is kept; one that began earlier and ends later (it
/// may have read a secret since rotated) is not cached over it, and its request is
/// answered with the later one. So a rotated secret is accepted at most
/// [`ttl`](Self::ttl) after a lookup that began before the rotation, and in this process
/// not at all once you call [`invalidate`](Self::invalidate) here. Invalidation is per
/// process: it drops the tenant from this process's cache (shared by its clones) only,
/// and so does a handshake's storing a secret. Other replicas keep accepting an old
/// secret until their entry expires, up to `ttl` after they loaded it: with several
/// replicas, `ttl` is how long a rotated or removed secret stays accepted, so keep it
/// finite (or have each replica call `invalidate`). Entries expire by the
/// [`clock`](Self::clock); one put in at a time the clock has since gone back before (an
/// NTP step) counts as expired: a clock stepped back never keeps a secret cached longer.
///
/// Clones share the cache (and the loads and handshakes in progress): the guard takes
/// its source by value, so keep a clone to [`invalidate`](Self::invalidate) a tenant
/// whose secrets you changed or removed. Settings changed on a clone (its `ttl`, say)
/// apply to what that clone loads and caches.
///
/// With [`store`](Self::store) it also keeps secrets handed over at run time (Asana's
/// `X-Hook-Secret`), but only for a tenant that your loader answers with an empty list:
/// one you registered and that awaits its handshake. An unknown tenant (`None`) gets
/// `404`, and one with secrets `403`: a handshake can never create a tenant or replace a
/// secret. A tenant cached with secrets is refused a handshake from the cache for `ttl`
/// (to redo a handshake after clearing its secrets, [`invalidate`](Self::invalidate) it
/// or use a new name); for any other name each handshake loads afresh, so a name cached
/// as unknown (someone probed `/hooks/acme` before you registered it) never keeps the
/// genuine handshake out. The cost: every handshake request for a name without secrets,
/// made-up ones included, is a loader call (the unknown-name cache does not spare your
/// store them), so rate-limit them in front. One handshake per tenant runs at a time in
/// this process (a second one meanwhile is refused), and once its secret is stored no
/// lookup that began earlier is cached.
///
/// The first handshake for a registered tenant wins: whoever reaches the tenant's URL
/// between your registering it and the provider's handshake can hand over a secret of
/// their own, and the provider's is then refused. So give a tenant that awaits its
/// handshake an unguessable name (a random token of 128 bits or more in the path,
/// `/hooks/{token}`, not `/hooks/acme`), register it just before you ask the provider
/// to create the webhook, and if the provider reports that the creation failed, remove
/// the tenant and start over with a new token.
///
/// When several replicas share the store, make `store` an insert-if-absent (a unique
/// key) that answers [`AlreadyStored`] when the tenant has a secret already: a second
/// replica's handshake is then refused (`403`) instead of overwriting the first. Any
/// other error from `store` is the store failing (`503` + `Retry-After`).
///
/// The tenant is part of each delivery's replay and inbox key
/// ([`SchemeSource::namespace`]): two tenants' deliveries that carry the same id are
/// both kept. Name each tenant one way only (have the finder normalize, and the loader
/// answer for that one spelling): a loader that also answered for `ACME` what it answers
/// for `acme` would let a delivery replayed to `/hooks/ACME` through as a new one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{sync::{Arc, atomic::{AtomicUsize, Ordering}}, time::Duration};
/// use hookguard::{clock::ManualClock, guard::{SchemeSource, SourceError}, providers::github};
/// use hookguard::{tenant::TenantSchemes, Secret};
///
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let loads = Arc::new(AtomicUsize::new(0));
/// let counted = Arc::clone(&loads);
/// let source = TenantSchemes::new(
///     TenantSchemes::path_segment(2),
///     move |tenant: String| {
///         counted.fetch_add(1, Ordering::SeqCst);
///         let secrets = (tenant == "acme").then(|| vec![Secret::new("acme-secret").unwrap()]);
///         async move { Ok::<_, std::io::Error>(secrets) }
///     },
///     |secrets: &[Secret]| Ok(Arc::new(github::scheme(secrets[0].expose())?)),
/// )
/// .ttl(Duration::from_secs(60))
/// .clock(clock.clone());
/// let request = |path: &str| http::Request::post(path).body(()).unwrap().into_parts().0;
///
/// let acme = request("/hooks/acme");
/// assert_eq!(source.scheme(&acme).await.unwrap().provider(), "github");
/// assert_eq!(source.namespace(&acme).as_deref(), Some("acme"));
/// assert!(matches!(source.scheme(&request("/hooks/nobody")).await, Err(SourceError::Unknown)));
///
/// source.scheme(&acme).await.unwrap();
/// assert_eq!(loads.load(Ordering::SeqCst), 2, "acme cached, nobody looked up once");
/// clock.advance(Duration::from_secs(61));
/// source.scheme(&acme).await.unwrap();
/// assert_eq!(loads.load(Ordering::SeqCst), 3, "acme loaded again after its ttl");
/// # }
/// ```
#[derive(Clone)]
pub struct TenantSchemes {
    tenant: Arc<TenantFn>,
    load: Arc<LoadFn>,
    store: Option<Arc<StoreFn>>,
    build: Arc<BuildFn>,
    /// What clones share: the caches, the handshakes and the loads in progress.
    shared: Arc<Shared>,
    ttl: Duration,
    unknown_ttl: Duration,
    capacity: usize,
    clock: Arc<dyn Clock>,
    load_timeout: Duration,
}

/// What a [`TenantSchemes`] and its clones share.
#[derive(Default)]
struct Shared {
    /// Known tenants' schemes, and unknown names apart: a flood of unknown names never
    /// pushes a known tenant out.
    cache: Mutex<Caches>,
    /// Tenants whose handshake is being stored right now.
    adopting: Mutex<HashSet<String>>,
    /// Tenants being loaded right now for lookups that missed the cache: later misses
    /// wait on that load. An entry is removed by its leader when the load ends or the
    /// leader is dropped, or by [`TenantSchemes::forget`]; so the map holds at most one
    /// entry per tenant being loaded.
    flights: Mutex<HashMap<String, Flight>>,
}

/// What a lookup's load ends with, for the requests waiting on it.
type Outcome = Result<Answer, Arc<dyn Error + Send + Sync>>;

/// A load in progress, which later lookups of its tenant wait on.
struct Flight {
    /// The load's ticket: tells the leader's flight from a later one of the same tenant.
    ticket: u64,
    /// Sends the outcome; dropped without one (the leader went away, or the tenant was
    /// forgotten), it tells the waiting ones to look again.
    tx: watch::Sender<Option<Outcome>>,
}

/// The caches, and the tickets that order what is put in them: each load of a tenant,
/// each handshake that stored a secret and each `invalidate` takes the next ticket, and
/// an answer is put in only if no entry for its tenant (in any of the three maps) holds
/// a later ticket.
#[derive(Default)]
struct Caches {
    known: Expiring<Arc<dyn Scheme>>,
    /// Names without secrets: unknown, or awaiting their handshake.
    unknown: Expiring<Absent>,
    /// Tenants whose handshake stored a secret, or that were invalidated: a load that
    /// began before may have read the store before, and is not put in. Each lives as
    /// long as such a load's answer would (the longer time to live): one ending later
    /// was expired anyway.
    fenced: Expiring<()>,
    /// The latest ticket of a fence dropped to make room before it expired: a load that
    /// began before it may have read the store before that fence's change, so none is
    /// put in (their answers are used, not cached).
    fence_floor: u64,
    /// The last ticket taken.
    tickets: u64,
}

impl Caches {
    fn ticket(&mut self) -> u64 {
        self.tickets = self.tickets.saturating_add(1);
        self.tickets
    }

    /// The latest ticket held for `tenant`.
    fn latest(&self, tenant: &str) -> Option<u64> {
        [self.known.ticket(tenant), self.unknown.ticket(tenant), self.fenced.ticket(tenant)]
            .into_iter()
            .flatten()
            .max()
    }

    fn get(&self, tenant: &str, now: OffsetDateTime) -> Option<Answer> {
        match self.known.get(tenant, now) {
            Some(scheme) => Some(Answer::Known(scheme)),
            None => self.unknown.get(tenant, now).map(Answer::Absent),
        }
    }
}

/// Why a tenant has no scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Absent {
    /// The loader does not know it (`None`).
    Unknown,
    /// Registered, awaiting its handshake (an empty list).
    Awaiting,
    /// Registered, but its secrets make no scheme (a malformed secret): the source is
    /// unavailable for it until someone mends its secrets.
    Broken,
}

/// What a lookup found.
#[derive(Clone)]
enum Answer {
    Known(Arc<dyn Scheme>),
    Absent(Absent),
}

/// `now + by`, or the farthest time there is when that is past it (never panics:
/// `Duration::MAX` means for ever).
fn later(now: OffsetDateTime, by: Duration) -> OffsetDateTime {
    time::Duration::try_from(by)
        .ok()
        .and_then(|by| now.checked_add(by))
        .unwrap_or(PrimitiveDateTime::MAX.assume_utc())
}

/// When an entry holds: from the time it was loaded until it expires. Before `from` it
/// does not hold either: the clock went back (an NTP step) since it was loaded, and how
/// long ago that was is not known any more.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: OffsetDateTime,
    until: OffsetDateTime,
}

impl Span {
    /// From `from`, for `ttl`.
    fn new(from: OffsetDateTime, ttl: Duration) -> Self {
        Self { from, until: later(from, ttl) }
    }

    fn holds(&self, now: OffsetDateTime) -> bool {
        self.from <= now && now < self.until
    }
}

/// A bounded map whose entries make room in the order they were put in, oldest first,
/// whether expired or to make room (no scan under the lock).
struct Expiring<V> {
    map: HashMap<Arc<str>, Entry<V>>,
    /// Names in the order they were put in, with the ticket each was put in with (an
    /// entry whose name was put in again since, or removed, is stale: skipped).
    order: VecDeque<(Arc<str>, u64)>,
}

struct Entry<V> {
    value: V,
    span: Span,
    ticket: u64,
}

impl<V> Default for Expiring<V> {
    fn default() -> Self {
        Self { map: HashMap::new(), order: VecDeque::new() }
    }
}

impl<V: Clone> Expiring<V> {
    fn get(&self, name: &str, now: OffsetDateTime) -> Option<V> {
        self.map.get(name).filter(|e| e.span.holds(now)).map(|e| e.value.clone())
    }

    /// The ticket `name` was put in with, expired or not.
    fn ticket(&self, name: &str) -> Option<u64> {
        self.map.get(name).map(|e| e.ticket)
    }

    /// Puts `name` in for `span` (not at all if that does not hold now), under `ticket`,
    /// keeping at most `capacity` names. Returns the latest ticket of the entries that
    /// were dropped before they expired, to make room.
    fn put(
        &mut self,
        name: &str,
        value: V,
        ticket: u64,
        span: Span,
        now: OffsetDateTime,
        capacity: usize,
    ) -> Option<u64> {
        if !span.holds(now) {
            return None;
        }
        let name: Arc<str> = Arc::from(name);
        self.map.insert(Arc::clone(&name), Entry { value, span, ticket });
        self.order.push_back((name, ticket));
        let mut made_room = None;
        while let Some((oldest, put)) = self.order.front() {
            let entry = self.map.get(oldest).filter(|e| e.ticket == *put);
            let (live, unexpired, keep) = match entry {
                Some(e) => (true, e.span.until > now, e.span.until > now && self.map.len() <= capacity),
                None => (false, false, false),
            };
            if keep {
                break;
            }
            if live {
                if unexpired {
                    made_room = made_room.max(Some(*put));
                }
                self.map.remove(oldest);
            }
            self.order.pop_front();
        }
        // Stale places (names put in again, or removed) behind a live oldest one: dropped
        // once they outnumber the live ones, so the order stays within about twice the
        // map (amortised, one pass per as many puts).
        if self.order.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.order.retain(|(name, put)| map.get(name).is_some_and(|e| e.ticket == *put));
        }
        made_room
    }

    fn remove(&mut self, name: &str) {
        self.map.remove(name);
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

impl fmt::Debug for TenantSchemes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantSchemes")
            .field("ttl", &self.ttl)
            .field("unknown_ttl", &self.unknown_ttl)
            .field("capacity", &self.capacity)
            .field("load_timeout", &self.load_timeout)
            .field("cached", &self.caches().known.len())
            .finish_non_exhaustive()
    }
}

impl TenantSchemes {
    /// A source from a tenant finder, a secret loader and a scheme builder. Defaults:
    /// cache 10,000 tenants for 5 minutes, unknown ones for 30 seconds.
    ///
    /// `tenant` finds the tenant's name in the request ([`path_segment`](Self::path_segment),
    /// [`header`](Self::header) or your own); `load` answers its secrets (`None`: no such
    /// tenant; an empty list: registered, awaiting a [`store`](Self::store) handshake);
    /// `build` makes the scheme from them, newest secret first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::Arc;
    /// use hookguard::{guard::SchemeSource, providers::stripe, tenant::TenantSchemes, Secret};
    /// let source = TenantSchemes::new(
    ///     TenantSchemes::header("x-tenant"),
    ///     |_tenant: String| async { Ok::<_, std::io::Error>(Some(vec![Secret::new("whsec_a").unwrap()])) },
    ///     |secrets: &[Secret]| Ok(Arc::new(stripe::scheme(secrets[0].expose())?)),
    /// );
    /// let (parts, ()) = http::Request::post("/").header("x-tenant", "acme").body(()).unwrap().into_parts();
    /// assert_eq!(source.scheme(&parts).await.unwrap().provider(), "stripe");
    /// # }
    /// ```
    pub fn new<T, L, Fut, E, B>(tenant: T, load: L, build: B) -> Self
    where
        T: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
        L: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Vec<Secret>>, E>> + Send + 'static,
        E: Into<BoxError>,
        B: Fn(&[Secret]) -> Result<Arc<dyn Scheme>, ConfigError> + Send + Sync + 'static,
    {
        let load: Arc<LoadFn> = Arc::new(move |tenant| {
            let fut = load(tenant);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        Self {
            tenant: Arc::new(tenant),
            load,
            store: None,
            build: Arc::new(build),
            shared: Arc::default(),
            ttl: Duration::from_secs(300),
            unknown_ttl: Duration::from_secs(30),
            capacity: 10_000,
            clock: Arc::new(SystemClock),
            load_timeout: Duration::from_secs(10),
        }
    }

    /// Keeps secrets handed over by a handshake (Asana) with your async function, for a
    /// tenant your loader answers with an empty list (see the type's docs). When the
    /// tenant turns out to have a secret already (your insert-if-absent found one: another
    /// replica's handshake came first), answer [`AlreadyStored`]: the handshake is refused
    /// (`403`). Any other error is the store failing (`503`). Either way, and on success,
    /// the tenant is dropped from the cache.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::{Arc, Mutex};
    /// use hookguard::{guard::{SchemeSource, SourceError}, providers::asana, Secret};
    /// use hookguard::tenant::{AlreadyStored, TenantSchemes};
    /// // Your database: "acme" is registered, without a secret yet.
    /// let db = Arc::new(Mutex::new(vec![("acme".to_owned(), None::<Secret>)]));
    /// let (reader, writer) = (Arc::clone(&db), Arc::clone(&db));
    /// let source = TenantSchemes::new(
    ///     TenantSchemes::path_segment(2),
    ///     move |tenant: String| {
    ///         let row = reader.lock().unwrap().iter().find(|(t, _)| *t == tenant).cloned();
    ///         async move { Ok::<_, std::io::Error>(row.map(|(_, secret)| secret.into_iter().collect())) }
    ///     },
    ///     |secrets: &[Secret]| Ok(Arc::new(asana::scheme(secrets[0].expose())?)),
    /// )
    /// .store(move |tenant: String, secret: Secret| {
    ///     // Insert if absent (`UPDATE … SET secret = $2 WHERE tenant = $1 AND secret IS
    ///     // NULL`): another replica's handshake may have stored one since the load.
    ///     let stored = match writer.lock().unwrap().iter_mut().find(|(t, _)| *t == tenant) {
    ///         Some((_, slot @ None)) => {
    ///             *slot = Some(secret);
    ///             Ok(())
    ///         }
    ///         Some(_) => Err(std::io::Error::other(AlreadyStored)), // 403, not kept
    ///         None => Err(std::io::Error::other("no such tenant")),
    ///     };
    ///     async move { stored }
    /// });
    /// let acme = http::Request::post("/hooks/acme").body(()).unwrap().into_parts().0;
    /// source.adopt_secret(&acme, Secret::new("from-asana").unwrap()).await.unwrap();
    /// assert_eq!(source.scheme(&acme).await.unwrap().provider(), "asana");
    /// // A second handshake cannot replace the secret.
    /// let again = source.adopt_secret(&acme, Secret::new("attacker").unwrap()).await;
    /// assert!(matches!(again, Err(SourceError::Refused)));
    /// # }
    /// ```
    #[must_use]
    pub fn store<S, Fut, E>(mut self, store: S) -> Self
    where
        S: Fn(String, Secret) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.store = Some(Arc::new(move |tenant, secret| {
            let fut = store(tenant, secret);
            Box::pin(async move { fut.await.map_err(Into::into) })
        }));
        self
    }

    /// How long a tenant's scheme is cached (default 5 minutes): a process that loaded
    /// a secret before you rotated or removed it accepts it for up to this long.
    /// [`invalidate`](Self::invalidate) drops it sooner, but only in the process that
    /// calls it (and its clones): with several replicas, this bounds how long the others
    /// accept an old secret, so keep it finite. `Duration::MAX` caches for ever: only
    /// for a single process that calls `invalidate` on every change.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::{sync::{Arc, atomic::{AtomicUsize, Ordering}}, time::Duration};
    /// # use hookguard::{clock::ManualClock, guard::{SchemeSource, SourceError}, providers::github};
    /// # use hookguard::{tenant::TenantSchemes, Secret};
    /// # let clock = ManualClock::at_unix(1_700_000_000);
    /// # let loads = Arc::new(AtomicUsize::new(0));
    /// # let counted = Arc::clone(&loads);
    /// # let load = move |tenant: String| {
    /// #     counted.fetch_add(1, Ordering::SeqCst);
    /// #     let secrets = (tenant == "acme").then(|| vec![Secret::new("acme-secret").unwrap()]);
    /// #     async move { Ok::<_, std::io::Error>(secrets) }
    /// # };
    /// # let build = |secrets: &[Secret]| -> Result<Arc<dyn hookguard::verify::Scheme>, hookguard::ConfigError> {
    /// #     Ok(Arc::new(github::scheme(secrets[0].expose())?))
    /// # };
    /// // `load` counts its calls in `loads`, and knows only "acme".
    /// let source = TenantSchemes::new(TenantSchemes::path_segment(2), load, build)
    /// .ttl(Duration::from_secs(60))
    /// .clock(clock.clone());
    /// # let request = |path: &str| http::Request::post(path).body(()).unwrap().into_parts().0;
    /// let acme = request("/hooks/acme");
    /// source.scheme(&acme).await.unwrap();
    /// clock.advance(Duration::from_secs(59));
    /// source.scheme(&acme).await.unwrap();
    /// assert_eq!(loads.load(Ordering::SeqCst), 1, "cached for 60 s");
    /// clock.advance(Duration::from_secs(2));
    /// source.scheme(&acme).await.unwrap();
    /// assert_eq!(loads.load(Ordering::SeqCst), 2);
    /// # }
    /// ```
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long an unknown tenant (or one awaiting its handshake) is remembered as such,
    /// for deliveries (a handshake for it loads afresh).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::{sync::{Arc, atomic::{AtomicUsize, Ordering}}, time::Duration};
    /// # use hookguard::{clock::ManualClock, guard::{SchemeSource, SourceError}, providers::github};
    /// # use hookguard::{tenant::TenantSchemes, Secret};
    /// # let clock = ManualClock::at_unix(1_700_000_000);
    /// # let loads = Arc::new(AtomicUsize::new(0));
    /// # let counted = Arc::clone(&loads);
    /// # let load = move |tenant: String| {
    /// #     counted.fetch_add(1, Ordering::SeqCst);
    /// #     let secrets = (tenant == "acme").then(|| vec![Secret::new("acme-secret").unwrap()]);
    /// #     async move { Ok::<_, std::io::Error>(secrets) }
    /// # };
    /// # let build = |secrets: &[Secret]| -> Result<Arc<dyn hookguard::verify::Scheme>, hookguard::ConfigError> {
    /// #     Ok(Arc::new(github::scheme(secrets[0].expose())?))
    /// # };
    /// // `load` counts its calls in `loads`, and knows only "acme".
    /// let source = TenantSchemes::new(TenantSchemes::path_segment(2), load, build)
    /// .unknown_ttl(Duration::from_secs(10))
    /// .clock(clock.clone());
    /// # let request = |path: &str| http::Request::post(path).body(()).unwrap().into_parts().0;
    /// let nobody = request("/hooks/nobody");
    /// assert!(matches!(source.scheme(&nobody).await, Err(SourceError::Unknown)));
    /// assert!(matches!(source.scheme(&nobody).await, Err(SourceError::Unknown)));
    /// assert_eq!(loads.load(Ordering::SeqCst), 1, "answered from the cache");
    /// clock.advance(Duration::from_secs(11));
    /// assert!(source.scheme(&nobody).await.is_err());
    /// assert_eq!(loads.load(Ordering::SeqCst), 2, "looked up again");
    /// # }
    /// ```
    #[must_use]
    pub fn unknown_ttl(mut self, ttl: Duration) -> Self {
        self.unknown_ttl = ttl;
        self
    }

    /// How many tenants are cached at most (and, apart, how many unknown names).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use hookguard::{providers::github, tenant::TenantSchemes, Secret};
    /// let source = TenantSchemes::new(
    ///     TenantSchemes::path_segment(2),
    ///     |_tenant: String| async { Ok::<_, std::io::Error>(None) },
    ///     |secrets: &[Secret]| Ok(Arc::new(github::scheme(secrets[0].expose())?)),
    /// )
    /// .capacity(0);
    /// assert!(format!("{source:?}").contains("capacity: 1"), "at least one");
    /// ```
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The clock for cache expiry (default: the system clock). The [`ttl`](Self::ttl)
    /// example moves a [`ManualClock`](crate::clock::ManualClock) past it.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use hookguard::{clock::ManualClock, providers::github, tenant::TenantSchemes, Secret};
    /// let source = TenantSchemes::new(
    ///     TenantSchemes::path_segment(2),
    ///     |_tenant: String| async { Ok::<_, std::io::Error>(None) },
    ///     |secrets: &[Secret]| Ok(Arc::new(github::scheme(secrets[0].expose())?)),
    /// )
    /// .clock(ManualClock::at_unix(1_700_000_000));
    /// assert!(format!("{source:?}").contains("cached: 0"));
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long a load of a tenant's secrets may take (default 10 seconds;
    /// `Duration::MAX`: no limit). A loader call still running then (a dead pooled
    /// connection, a database that stopped answering) is dropped and the load fails like
    /// a loader error: answered [`SourceError::Unavailable`] (`503` + `Retry-After`), not
    /// cached (the next lookup loads again). A lookup never takes longer than this,
    /// counted from when it began, whether it loads or waits on another's load: the
    /// lookups waiting on a load that fails at its deadline get its error rather than
    /// loading again themselves, so a hung store gets one call per tenant per deadline
    /// (not one per request waiting), and a lookup that must load after all (the request
    /// it waited on went away) loads only until its own deadline. A handshake's load has
    /// this deadline too (its store has none: a secret may be written after a timeout).
    /// Measured on Tokio's clock: the runtime needs its time driver (`#[tokio::main]`,
    /// axum's and actix's have it; a runtime built without `enable_time`, or another
    /// executor, panics at a lookup's first load, as hookguard's layers do at a slow
    /// body). `Duration::MAX` sets no deadline, and takes no timer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use std::{sync::Arc, time::Duration};
    /// use hookguard::{guard::{SchemeSource, SourceError}, providers::github, tenant::TenantSchemes, Secret};
    /// let source = TenantSchemes::new(
    ///     TenantSchemes::path_segment(2),
    ///     // Its database connection went dead: it never answers.
    ///     |_tenant: String| std::future::pending::<Result<Option<Vec<Secret>>, std::io::Error>>(),
    ///     |secrets: &[Secret]| Ok(Arc::new(github::scheme(secrets[0].expose())?)),
    /// )
    /// .load_timeout(Duration::from_secs(2));
    /// let acme = http::Request::post("/hooks/acme").body(()).unwrap().into_parts().0;
    /// let began = tokio::time::Instant::now();
    /// let res = source.scheme(&acme).await;
    /// assert!(matches!(res, Err(SourceError::Unavailable(_))), "503 + Retry-After");
    /// assert_eq!(began.elapsed().as_secs(), 2);
    /// # }
    /// ```
    #[must_use]
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = timeout;
        self
    }

    /// A tenant finder reading path segment `index` (`/hooks/{tenant}` is index 2).
    ///
    /// ```
    /// use hookguard::tenant::TenantSchemes;
    /// let find = TenantSchemes::path_segment(2);
    /// let (parts, ()) = http::Request::post("/hooks/acme/x").body(()).unwrap().into_parts();
    /// assert_eq!(find(&parts).as_deref(), Some("acme"));
    /// ```
    pub fn path_segment(index: usize) -> impl Fn(&Parts) -> Option<String> + Send + Sync + 'static {
        move |parts: &Parts| {
            parts.uri.path().split('/').nth(index).filter(|s| !s.is_empty()).map(str::to_owned)
        }
    }

    /// A tenant finder reading a header.
    ///
    /// ```
    /// use hookguard::tenant::TenantSchemes;
    /// let find = TenantSchemes::header("x-tenant");
    /// let (parts, ()) = http::Request::post("/").header("x-tenant", "acme").body(()).unwrap().into_parts();
    /// assert_eq!(find(&parts).as_deref(), Some("acme"));
    /// ```
    pub fn header(name: &'static str) -> impl Fn(&Parts) -> Option<String> + Send + Sync + 'static {
        move |parts: &Parts| {
            parts.headers.get(name)?.to_str().ok().filter(|s| !s.is_empty()).map(str::to_owned)
        }
    }

    /// Drops what is cached for `tenant`: its next request loads its secrets again. Call
    /// it when you change or remove a tenant's secrets, or clear them to redo its
    /// handshake, through a clone kept before handing the source to the guard (clones
    /// share the cache). It affects this process only: other replicas keep what they
    /// cached until it expires ([`ttl`](Self::ttl)), unless each calls it too. A load of
    /// `tenant` already running is not cached, and no request waits on it any more (those
    /// waiting load again): only the request that began it may be answered with what it
    /// reads.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::{collections::HashMap, sync::{Arc, Mutex}};
    /// use hookguard::{guard::Guard, inbox::MemoryInbox, providers::github, tenant::TenantSchemes, Secret};
    /// use hookguard::verify::{Outgoing, Sign};
    ///
    /// // Your database: tenant → secret.
    /// let db = Arc::new(Mutex::new(HashMap::from([("acme".to_owned(), "old-secret".to_owned())])));
    /// let reader = Arc::clone(&db);
    /// let source = TenantSchemes::new(
    ///     TenantSchemes::path_segment(2),
    ///     move |tenant: String| {
    ///         let secret = reader.lock().unwrap().get(&tenant).cloned();
    ///         async move { Ok::<_, std::io::Error>(secret.map(|s| vec![Secret::new(s).unwrap()])) }
    ///     },
    ///     |secrets: &[Secret]| Ok(Arc::new(github::scheme(secrets[0].expose())?)),
    /// );
    /// let tenants = source.clone(); // shares the guard's cache
    /// let guard = Guard::builder_with_source("github", source).inbox(MemoryInbox::new()).build();
    /// let body = bytes::Bytes::from_static(b"{}");
    /// let delivery = |secret: &str| {
    ///     let mut req = http::Request::post("/hooks/acme");
    ///     for (name, value) in github::scheme(secret).unwrap().sign(&Outgoing::new(&body)).unwrap() {
    ///         req = req.header(name, value);
    ///     }
    ///     req.body(()).unwrap().into_parts().0
    /// };
    /// assert_eq!(guard.accept(&delivery("old-secret"), body.clone()).await.status(), 202);
    ///
    /// // Rotate acme's secret, and drop the guard's cached scheme that has the old one.
    /// db.lock().unwrap().insert("acme".to_owned(), "new-secret".to_owned());
    /// tenants.invalidate("acme");
    /// assert_eq!(guard.accept(&delivery("old-secret"), body.clone()).await.status(), 401);
    /// assert_eq!(guard.accept(&delivery("new-secret"), body).await.status(), 202);
    /// # }
    /// ```
    pub fn invalidate(&self, tenant: &str) {
        self.forget(tenant);
    }

    /// The caches (a panic elsewhere while they were held leaves them usable: each put
    /// is whole or skipped).
    fn caches(&self) -> MutexGuard<'_, Caches> {
        self.shared.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The loads in progress (each change is whole: usable after a panic elsewhere).
    fn flights(&self) -> MutexGuard<'_, HashMap<String, Flight>> {
        self.shared.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cached(&self, tenant: &str, now: OffsetDateTime) -> Option<Answer> {
        self.caches().get(tenant, now)
    }

    /// The ticket for a load that begins now.
    fn ticket(&self) -> u64 {
        self.caches().ticket()
    }

    /// Loads `tenant`'s secrets (for a handshake), within the load timeout.
    async fn load(&self, tenant: &str) -> Result<Option<Vec<Secret>>, SourceError> {
        match by(self.deadline(), (self.load)(tenant.to_owned())).await {
            Some(loaded) => loaded.map_err(SourceError::Unavailable),
            None => Err(SourceError::Unavailable(Box::new(LoadTimedOut(self.load_timeout)))),
        }
    }

    /// The deadline of a lookup or load that begins now (`None`: none).
    fn deadline(&self) -> Option<tokio::time::Instant> {
        tokio::time::Instant::now().checked_add(self.load_timeout)
    }

    /// What a lookup whose deadline passed is answered.
    fn timed_out(&self) -> Arc<dyn Error + Send + Sync> {
        Arc::new(LoadTimedOut(self.load_timeout))
    }

    /// What `tenant`'s loaded `secrets` make: a scheme, or why there is none. Secrets that
    /// make no scheme are logged here, once per load (the answer is cached), not per
    /// request.
    fn answer(&self, tenant: &str, secrets: Option<Vec<Secret>>) -> Answer {
        match secrets {
            None => Answer::Absent(Absent::Unknown),
            Some(secrets) if secrets.is_empty() => Answer::Absent(Absent::Awaiting),
            Some(secrets) => match (self.build)(&secrets) {
                Ok(scheme) => Answer::Known(scheme),
                Err(e) => {
                    // The error names what is wrong, never a secret's text; the tenant
                    // is a registered one (its loader answered with secrets).
                    tracing::error!(tenant, error = %e, "a tenant's secrets make no scheme: its deliveries get 503 until they are mended");
                    Answer::Absent(Absent::Broken)
                }
            },
        }
    }

    /// Caches what the load with `ticket`, begun at `began`, found; unless a later load
    /// or a handshake came first: then the answer cached since, if any, is the one to
    /// use (returned).
    fn remember(&self, tenant: &str, answer: &Answer, ticket: u64, began: OffsetDateTime) -> Option<Answer> {
        let ttl = if matches!(answer, Answer::Known(_)) { self.ttl } else { self.unknown_ttl };
        let span = Span::new(began, ttl);
        let now = self.clock.now();
        let mut cache = self.caches();
        if ticket < cache.fence_floor || cache.latest(tenant).is_some_and(|latest| latest > ticket) {
            return cache.get(tenant, now);
        }
        match answer {
            Answer::Known(scheme) => {
                cache.unknown.remove(tenant);
                cache.known.put(tenant, Arc::clone(scheme), ticket, span, now, self.capacity);
            }
            Answer::Absent(absent) => {
                cache.known.remove(tenant);
                cache.unknown.put(tenant, *absent, ticket, span, now, self.capacity);
            }
        }
        None
    }

    /// Drops what is cached for `tenant` (a handshake stored a secret, or the app
    /// invalidated it), keeps any load that began before from being cached, and lets no
    /// request wait on such a load any more.
    fn forget(&self, tenant: &str) {
        let now = self.clock.now();
        let span = Span::new(now, self.ttl.max(self.unknown_ttl));
        // The flights first, then the caches (as `join`): the fence and the end of the
        // older load's flight are one step, so that load cannot hand its answer to the
        // lookups waiting on it in between. A lookup that missed the cache meanwhile and
        // waits on it is told to look again (its flight's sender is dropped here).
        let older = {
            let mut flights = self.flights();
            let mut cache = self.caches();
            let ticket = cache.ticket();
            cache.known.remove(tenant);
            cache.unknown.remove(tenant);
            if let Some(dropped) = cache.fenced.put(tenant, (), ticket, span, now, self.capacity) {
                cache.fence_floor = cache.fence_floor.max(dropped);
            }
            flights.remove(tenant)
        };
        drop(older);
    }

    /// A lookup that missed the cache: joins the load of `tenant` in progress, or begins
    /// one (unless the cache has it by now: a load that just ended).
    fn join<'a>(&'a self, tenant: &'a str, now: OffsetDateTime) -> Join<'a> {
        let mut flights = self.flights();
        if let Some(hit) = self.cached(tenant, now) {
            return Join::Cached(hit);
        }
        if let Some(flight) = flights.get(tenant) {
            return Join::Wait(flight.tx.subscribe());
        }
        let ticket = self.ticket();
        let (tx, _) = watch::channel(None);
        flights.insert(tenant.to_owned(), Flight { ticket, tx });
        Join::Lead(Leader { source: self, tenant, ticket })
    }

    /// Loads `tenant` for the lookups waiting on `leader`'s flight, by `deadline`,
    /// caches the answer and hands it to them.
    async fn lead(
        &self,
        leader: Leader<'_>,
        began: OffsetDateTime,
        deadline: Option<tokio::time::Instant>,
    ) -> Outcome {
        let outcome = match by(deadline, (self.load)(leader.tenant.to_owned())).await {
            Some(Ok(secrets)) => {
                let answer = self.answer(leader.tenant, secrets);
                Ok(self.remember(leader.tenant, &answer, leader.ticket, began).unwrap_or(answer))
            }
            Some(Err(e)) => Err(Arc::from(e)),
            // Past the deadline (the loader call is dropped): failed, not cached, and the
            // lookups waiting on it get this error too (any whose own deadline came
            // first has been answered so already).
            None => Err(self.timed_out()),
        };
        if let Some(flight) = leader.take() {
            flight.tx.send_replace(Some(outcome.clone()));
        }
        outcome
    }

    async fn lookup(&self, tenant: String) -> Result<Arc<dyn Scheme>, SourceError> {
        if tenant.len() > MAX_TENANT {
            return Err(SourceError::Unknown);
        }
        // One deadline for the whole lookup, however many loads it waits on or begins,
        // from its first miss (a hit takes no time of Tokio's clock).
        let mut first_miss = None;
        let outcome = loop {
            let now = self.clock.now();
            if let Some(hit) = self.cached(&tenant, now) {
                break Ok(hit);
            }
            let deadline = *first_miss.get_or_insert_with(|| self.deadline());
            match self.join(&tenant, now) {
                Join::Cached(hit) => break Ok(hit),
                Join::Lead(leader) => break self.lead(leader, now, deadline).await,
                Join::Wait(mut rx) => {
                    // The load's own deadline comes no later, unless it took over from
                    // a leader that went away after this lookup began.
                    let Some(ended) = by(deadline, rx.wait_for(Option::is_some)).await else {
                        break Err(self.timed_out());
                    };
                    // `Err`: the leader went away, or the tenant was forgotten, before
                    // the load ended: look again.
                    if let Ok(outcome) = ended
                        && let Some(outcome) = outcome.clone()
                    {
                        break outcome;
                    }
                }
            }
        };
        match outcome {
            Ok(Answer::Known(scheme)) => Ok(scheme),
            // Logged when they were loaded; anyone can name the tenant, so not per request.
            Ok(Answer::Absent(Absent::Broken)) => Err(SourceError::Throttled(
                "the tenant's secrets make no scheme (logged when they were loaded)".into(),
            )),
            Ok(Answer::Absent(Absent::Unknown | Absent::Awaiting)) => Err(SourceError::Unknown),
            Err(e) => Err(SourceError::Unavailable(Box::new(LoadError(e)))),
        }
    }

    /// How many lookups wait on the load of `tenant` in progress.
    #[cfg(test)]
    fn waiting(&self, tenant: &str) -> usize {
        self.flights().get(tenant).map_or(0, |flight| flight.tx.receiver_count())
    }
}

/// What a lookup that missed the cache does.
enum Join<'a> {
    /// The answer, cached by a load that ended meanwhile.
    Cached(Answer),
    /// Wait on the load in progress.
    Wait(watch::Receiver<Option<Outcome>>),
    /// Load, for the lookups that wait on it too.
    Lead(Leader<'a>),
}

/// The lookup loading a tenant for the others. Dropped before the load ends (its request
/// went away), it removes its flight: the ones waiting on it look again.
struct Leader<'a> {
    source: &'a TenantSchemes,
    tenant: &'a str,
    ticket: u64,
}

impl Leader<'_> {
    /// Its flight, unless another took its place (the tenant was forgotten meanwhile).
    fn take(&self) -> Option<Flight> {
        let mut flights = self.source.flights();
        match flights.get(self.tenant) {
            Some(flight) if flight.ticket == self.ticket => flights.remove(self.tenant),
            _ => None,
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // Outside the lock: waking the ones waiting.
        let flight = self.take();
        drop(flight);
    }
}

/// `fut`'s output, or `None` when `deadline` passes first (`fut` is dropped then).
async fn by<F: Future>(deadline: Option<tokio::time::Instant>, fut: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// A load that did not end within [`TenantSchemes::load_timeout`].
#[derive(Debug)]
struct LoadTimedOut(Duration);

impl fmt::Display for LoadTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the tenant's secrets were not loaded within {:?}", self.0)
    }
}

impl Error for LoadTimedOut {}

/// The loader's error as each lookup that waited on its load sees it: the same text and
/// the same `source()`.
#[derive(Debug)]
struct LoadError(Arc<dyn Error + Send + Sync>);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl Error for LoadError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// What your [`store`](TenantSchemes::store) function answers when the tenant has a
/// secret already (an insert-if-absent found one: another replica's handshake came
/// first): the handshake is refused (`403`) instead of being answered as the store
/// failing (`503`). It is found as the error itself, in its
/// [`source`](Error::source) chain, or inside an [`std::io::Error`]
/// (`io::Error::other(AlreadyStored)`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::{Arc, Mutex};
/// use hookguard::{guard::{SchemeSource, SourceError}, providers::asana, Secret};
/// use hookguard::tenant::{AlreadyStored, TenantSchemes};
///
/// // The database: "acme" is registered, without a secret yet. The second replica reads
/// // from a copy that lags behind (a read replica): it finds no secret even once the
/// // first replica has stored one.
/// type Db = Arc<Mutex<Vec<(String, Option<Secret>)>>>;
/// let primary: Db = Arc::new(Mutex::new(vec![("acme".to_owned(), None)]));
/// let lagging: Db = Arc::new(Mutex::new(primary.lock().unwrap().clone()));
/// let replica = |reads: &Db| {
///     let (reader, writer) = (Arc::clone(reads), Arc::clone(&primary));
///     TenantSchemes::new(
///         TenantSchemes::path_segment(2),
///         move |tenant: String| {
///             let row = reader.lock().unwrap().iter().find(|(t, _)| *t == tenant).cloned();
///             async move { Ok::<_, std::io::Error>(row.map(|(_, secret)| secret.into_iter().collect())) }
///         },
///         |secrets: &[Secret]| Ok(Arc::new(asana::scheme(secrets[0].expose())?)),
///     )
///     .store(move |tenant: String, secret: Secret| {
///         // Insert if absent: `UPDATE … SET secret = $2 WHERE tenant = $1 AND secret IS NULL`.
///         let mut db = writer.lock().unwrap();
///         let row = db.iter_mut().find(|(t, _)| *t == tenant).expect("registered");
///         let stored = if row.1.is_none() { row.1 = Some(secret); Ok(()) } else { Err(AlreadyStored) };
///         async move { stored }
///     })
/// };
/// let (first, second) = (replica(&primary), replica(&lagging));
/// let acme = http::Request::post("/hooks/acme").body(()).unwrap().into_parts().0;
/// first.adopt_secret(&acme, Secret::new("from-asana").unwrap()).await.unwrap();
/// let late = second.adopt_secret(&acme, Secret::new("another").unwrap()).await;
/// assert!(matches!(late, Err(SourceError::Refused)), "403, not 503");
/// assert_eq!(primary.lock().unwrap()[0].1.as_ref().unwrap().expose(), b"from-asana");
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlreadyStored;

impl fmt::Display for AlreadyStored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the tenant has a secret already")
    }
}

impl Error for AlreadyStored {}

impl AlreadyStored {
    /// Whether `error` is, wraps (in its `source()` chain) or boxes (in an
    /// [`std::io::Error`]) an `AlreadyStored`.
    fn found_in(error: &(dyn Error + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(e) = next {
            if e.is::<Self>() {
                return true;
            }
            // An `io::Error`'s `source()` skips the error it boxes: walk on from that one
            // (`io::Error::other(io::Error::other(AlreadyStored))`).
            next = match e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
                Some(boxed) => Some(boxed as &(dyn Error + 'static)),
                None => e.source(),
            };
        }
        false
    }
}

/// The longest tenant name looked up: longer ones are unknown without a lookup (and
/// never fill the cache with header-sized keys).
const MAX_TENANT: usize = 256;

/// A tenant's handshake in progress; ends when dropped.
struct Adopting<'a> {
    set: &'a Mutex<HashSet<String>>,
    tenant: String,
}

impl<'a> Adopting<'a> {
    /// `None` when another handshake for `tenant` is in progress.
    fn start(set: &'a Mutex<HashSet<String>>, tenant: &str) -> Option<Self> {
        let mut set_now = set.lock().unwrap_or_else(PoisonError::into_inner);
        set_now.insert(tenant.to_owned()).then(|| Self { set, tenant: tenant.to_owned() })
    }
}

impl Drop for Adopting<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.tenant);
    }
}

/// Forgets a tenant when dropped: after a handshake's store, even one cancelled
/// (its request went away) before the store answered. (A statement the store already sent
/// may still commit after that: a lookup in between caches the tenant as awaiting its
/// handshake, for `unknown_ttl` at most, and nothing here can tell.)
struct Forget<'a> {
    source: &'a TenantSchemes,
    tenant: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.source.forget(self.tenant);
    }
}

impl SchemeSource for TenantSchemes {
    fn scheme<'a>(&'a self, parts: &'a Parts) -> BoxFuture<'a, Result<Arc<dyn Scheme>, SourceError>> {
        Box::pin(async move {
            let tenant = (self.tenant)(parts).ok_or(SourceError::Unknown)?;
            self.lookup(tenant).await
        })
    }

    /// The tenant: two tenants' deliveries with the same id are two deliveries.
    fn namespace(&self, parts: &Parts) -> Option<String> {
        (self.tenant)(parts)
    }

    fn adopt_secret<'a>(
        &'a self,
        parts: &'a Parts,
        secret: Secret,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let Some(store) = &self.store else { return Err(SourceError::Unsupported) };
            let tenant =
                (self.tenant)(parts).filter(|t| t.len() <= MAX_TENANT).ok_or(SourceError::Unknown)?;
            let now = self.clock.now();
            // Anyone can send a handshake: a tenant known to have secrets is refused from
            // the cache (secrets that make no scheme are secrets all the same). Any other
            // name is loaded afresh: one cached as unknown may have been registered since
            // (someone probing its URL must not keep the genuine handshake out), and one
            // awaiting its handshake may have been given its secret since.
            if let Some(Answer::Known(_) | Answer::Absent(Absent::Broken)) = self.cached(&tenant, now) {
                return Err(SourceError::Refused);
            }
            // One handshake per tenant at a time: two at once would both find no secret.
            let Some(_adopting) = Adopting::start(&self.shared.adopting, &tenant) else {
                return Err(SourceError::Refused);
            };
            let ticket = self.ticket();
            let loaded = self.load(&tenant).await?;
            match self.answer(&tenant, loaded) {
                // Registered, awaiting its handshake.
                Answer::Absent(Absent::Awaiting) => {}
                answer => {
                    let refused = match answer {
                        Answer::Known(_) | Answer::Absent(Absent::Broken) => SourceError::Refused,
                        Answer::Absent(_) => SourceError::Unknown,
                    };
                    self.remember(&tenant, &answer, ticket, now);
                    return Err(refused);
                }
            }
            // Stored, or maybe (the store failed half way, or its answer never came back:
            // this handshake was cancelled while the store ran), or by another replica:
            // what is cached, or being loaded, may be stale. Forgotten when the store ends
            // or when this future is dropped during it.
            let forget = Forget { source: self, tenant: &tenant };
            let stored = store(tenant.clone(), secret).await;
            drop(forget);
            match stored {
                Ok(()) => Ok(()),
                Err(e) if AlreadyStored::found_in(&*e) => Err(SourceError::Refused),
                Err(e) => Err(SourceError::Unavailable(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::oneshot;

    use super::*;
    use crate::clock::ManualClock;

    fn parts(tenant: &str) -> Parts {
        http::Request::post(format!("/hooks/{tenant}")).body(()).unwrap().into_parts().0
    }

    /// A source that knows `known-*` names, counting its loads, with a capacity of 2.
    fn source(loads: &Arc<AtomicUsize>, clock: &ManualClock) -> TenantSchemes {
        let loads = Arc::clone(loads);
        TenantSchemes::new(
            TenantSchemes::path_segment(2),
            move |tenant: String| {
                loads.fetch_add(1, Ordering::SeqCst);
                let known = tenant.starts_with("known-");
                async move { Ok::<_, std::io::Error>(known.then(|| vec![Secret::new("s").unwrap()])) }
            },
            |secrets: &[Secret]| {
                Ok(Arc::new(crate::providers::github::scheme(secrets[0].expose())?) as Arc<dyn Scheme>)
            },
        )
        .capacity(2)
        .clock(clock.clone())
    }

    /// Made-up names, however many, never push a known tenant out of the cache; known
    /// tenants make room for each other, oldest first; entries expire.
    #[tokio::test]
    async fn unknown_names_never_push_known_tenants_out() {
        let (loads, clock) = (Arc::new(AtomicUsize::new(0)), ManualClock::at_unix(1_700_000_000));
        let source = source(&loads, &clock);
        let look = |name: &str| {
            let parts = parts(name);
            let source = &source;
            async move { source.scheme(&parts).await.is_ok() }
        };
        assert!(look("known-a").await && look("known-b").await);
        for n in 0..100 {
            assert!(!look(&format!("made-up-{n}")).await);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 102);
        assert!(look("known-a").await && look("known-b").await);
        assert_eq!(loads.load(Ordering::SeqCst), 102, "both still cached");
        // The last two unknown names are remembered; older ones made room.
        assert!(!look("made-up-99").await);
        assert_eq!(loads.load(Ordering::SeqCst), 102);
        assert!(!look("made-up-0").await);
        assert_eq!(loads.load(Ordering::SeqCst), 103);
        // A third known tenant pushes out the oldest known one.
        assert!(look("known-c").await);
        assert!(look("known-b").await);
        assert_eq!(loads.load(Ordering::SeqCst), 104);
        assert!(look("known-a").await);
        assert_eq!(loads.load(Ordering::SeqCst), 105, "known-a was pushed out");
        // Unknown names expire after unknown_ttl (30 s), known ones after ttl (5 min).
        clock.advance(Duration::from_secs(31));
        assert!(!look("made-up-99").await);
        assert!(look("known-a").await);
        assert_eq!(loads.load(Ordering::SeqCst), 106);
        clock.advance(Duration::from_secs(300));
        assert!(look("known-a").await);
        assert_eq!(loads.load(Ordering::SeqCst), 107);
    }

    /// A tenant whose secrets make no scheme (a malformed `whsec_`) is answered
    /// unavailable (503) from the cache for `unknown_ttl`: anyone naming it costs no load
    /// per request; once that ends it is loaded again, and mended secrets take effect.
    /// A handshake for it is refused (it has secrets).
    #[tokio::test]
    async fn secrets_that_make_no_scheme_are_cached_as_unavailable() {
        let (loads, clock) = (Arc::new(AtomicUsize::new(0)), ManualClock::at_unix(1_700_000_000));
        let mended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counted, fixed) = (Arc::clone(&loads), Arc::clone(&mended));
        let source = TenantSchemes::new(
            TenantSchemes::path_segment(2),
            move |_tenant: String| {
                counted.fetch_add(1, Ordering::SeqCst);
                let secret = if fixed.load(Ordering::SeqCst) {
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
                } else {
                    "whsec_not base64!"
                };
                async move { Ok::<_, std::io::Error>(Some(vec![Secret::new(secret).unwrap()])) }
            },
            |secrets: &[Secret]| {
                Ok(Arc::new(crate::providers::standard_webhooks::scheme(secrets[0].expose())?)
                    as Arc<dyn Scheme>)
            },
        )
        .store(|_tenant: String, _secret: Secret| async { Ok::<_, std::io::Error>(()) })
        .unknown_ttl(Duration::from_secs(30))
        .clock(clock.clone());
        for _ in 0..3 {
            // Held back (logged once per load), not a warning per request anyone can send.
            assert!(matches!(source.scheme(&parts("acme")).await, Err(SourceError::Throttled(_))));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1, "answered from the cache");
        let adopt = source.adopt_secret(&parts("acme"), Secret::new("handed-over").unwrap()).await;
        assert!(matches!(adopt, Err(SourceError::Refused)), "a handshake never replaces secrets");
        mended.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(31));
        assert!(source.scheme(&parts("acme")).await.is_ok(), "mended secrets are loaded again");
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    /// `ttl(Duration::MAX)` (and `unknown_ttl`) cache for ever: the expiry saturates
    /// instead of panicking.
    #[tokio::test]
    async fn a_ttl_of_duration_max_caches_for_ever() {
        let (loads, clock) = (Arc::new(AtomicUsize::new(0)), ManualClock::at_unix(1_700_000_000));
        let source = source(&loads, &clock).ttl(Duration::MAX).unknown_ttl(Duration::MAX);
        for _ in 0..2 {
            assert!(source.scheme(&parts("known-a")).await.is_ok());
            assert!(matches!(source.scheme(&parts("made-up")).await, Err(SourceError::Unknown)));
            clock.advance(Duration::from_secs(100 * 365 * 24 * 3600));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 2, "cached for ever");
    }

    /// A secret store: tenant → secrets (absent: unknown; empty: awaiting its handshake),
    /// counting its loads; a load can be held (see [`Db::hold`]).
    #[derive(Default)]
    struct Db {
        secrets: Mutex<HashMap<String, Vec<Secret>>>,
        loads: AtomicUsize,
        gate: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
        /// Loads fail ("db down") while set.
        down: std::sync::atomic::AtomicBool,
    }

    impl Db {
        fn set(&self, tenant: &str, secrets: &[&str]) {
            let secrets = secrets.iter().map(|s| Secret::new(*s).unwrap()).collect();
            self.secrets.lock().unwrap().insert(tenant.to_owned(), secrets);
        }

        /// Holds the next load once it has read the store: `started` tells it has,
        /// sending on the sender releases it.
        fn hold(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
            let ((started_tx, started), (release, release_rx)) = (oneshot::channel(), oneshot::channel());
            *self.gate.lock().unwrap() = Some((started_tx, release_rx));
            (started, release)
        }

        fn loads(&self) -> usize {
            self.loads.load(Ordering::SeqCst)
        }
    }

    /// GitHub schemes from `db`, keeping handshakes' secrets in it.
    fn db_source(db: &Arc<Db>, clock: &ManualClock) -> Arc<TenantSchemes> {
        db_source_with(db, clock, |source| source)
    }

    /// [`db_source`], with settings of the test's own.
    fn db_source_with(
        db: &Arc<Db>,
        clock: &ManualClock,
        tune: impl FnOnce(TenantSchemes) -> TenantSchemes,
    ) -> Arc<TenantSchemes> {
        let (load_db, store_db) = (Arc::clone(db), Arc::clone(db));
        let source = TenantSchemes::new(
            TenantSchemes::path_segment(2),
            move |tenant: String| {
                load_db.loads.fetch_add(1, Ordering::SeqCst);
                let read = load_db.secrets.lock().unwrap().get(&tenant).cloned();
                let gate = load_db.gate.lock().unwrap().take();
                let down = load_db.down.load(Ordering::SeqCst);
                async move {
                    if let Some((started, release)) = gate {
                        let _ = started.send(());
                        let _ = release.await;
                    }
                    if down {
                        return Err(std::io::Error::other("db down"));
                    }
                    Ok(read)
                }
            },
            |secrets: &[Secret]| {
                let mut scheme = crate::providers::github::scheme(secrets[0].expose())?;
                for s in &secrets[1..] {
                    scheme = scheme.with_secret(s.expose())?;
                }
                Ok(Arc::new(scheme) as Arc<dyn Scheme>)
            },
        )
        .store(move |tenant: String, secret: Secret| {
            store_db.secrets.lock().unwrap().insert(tenant, vec![secret]);
            std::future::ready(Ok::<_, std::io::Error>(()))
        })
        .clock(clock.clone());
        Arc::new(tune(source))
    }

    /// Whether `scheme` accepts a delivery signed with `secret`.
    fn accepts(scheme: &dyn Scheme, secret: &str) -> bool {
        use crate::verify::{Outgoing, Sign as _, WebhookRequest};
        let body = b"{}";
        let headers = crate::providers::github::scheme(secret).unwrap().sign(&Outgoing::new(body)).unwrap();
        let mut req = http::Request::post("/hooks/t").body(body.to_vec()).unwrap();
        req.headers_mut().extend(headers);
        scheme.verify(&WebhookRequest::from_request(&req), OffsetDateTime::now_utc()).is_ok()
    }

    fn secret(text: &str) -> Secret {
        Secret::new(text).unwrap()
    }

    /// Handshakes for a tenant that has its secret are refused from the cache (100 are
    /// one load); for any other name each handshake loads afresh (a name cached as
    /// unknown may have been registered since), and fills the cache for deliveries; a
    /// name a delivery found awaiting its handshake can still take it, once.
    #[tokio::test]
    async fn handshakes_use_the_cache_only_for_tenants_with_secrets() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source(&db, &clock);
        for _ in 0..100 {
            let res = source.adopt_secret(&parts("made-up"), secret("x")).await;
            assert!(matches!(res, Err(SourceError::Unknown)), "{res:?}");
        }
        assert_eq!(db.loads(), 100, "each handshake for an unknown name loads");
        assert!(matches!(source.scheme(&parts("made-up")).await, Err(SourceError::Unknown)));
        assert_eq!(db.loads(), 100, "deliveries are answered from what the handshakes cached");

        db.set("known", &["s"]);
        for _ in 0..100 {
            let res = source.adopt_secret(&parts("known"), secret("x")).await;
            assert!(matches!(res, Err(SourceError::Refused)), "{res:?}");
        }
        assert!(accepts(&*source.scheme(&parts("known")).await.unwrap(), "s"));
        assert_eq!(db.loads(), 101);

        db.set("awaiting", &[]);
        assert!(matches!(source.scheme(&parts("awaiting")).await, Err(SourceError::Unknown)));
        source.adopt_secret(&parts("awaiting"), secret("handed-over")).await.unwrap();
        assert!(accepts(&*source.scheme(&parts("awaiting")).await.unwrap(), "handed-over"));
        let res = source.adopt_secret(&parts("awaiting"), secret("another")).await;
        assert!(matches!(res, Err(SourceError::Refused)), "never replaced: {res:?}");
        assert!(accepts(&*source.scheme(&parts("awaiting")).await.unwrap(), "handed-over"));
    }

    /// A load that began before a newer one ended (a handshake's, which loads on its own)
    /// does not put its older answer over the newer: a rotated secret is not accepted
    /// again.
    #[tokio::test]
    async fn an_older_load_never_overwrites_a_newer_one() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source(&db, &clock);
        db.set("t", &["old"]);
        let (started, release) = db.hold();
        let first = spawn_lookup(&source, "t", "old");
        started.await.unwrap(); // it has read "old"
        db.set("t", &["new"]);
        let res = source.adopt_secret(&parts("t"), secret("x")).await; // loads "new", caches it
        assert!(matches!(res, Err(SourceError::Refused)), "{res:?}");
        release.send(()).unwrap();
        assert!(!first.await.unwrap().unwrap(), "the older load answers with the newer scheme");
        let cached = source.scheme(&parts("t")).await.unwrap();
        assert!(accepts(&*cached, "new") && !accepts(&*cached, "old"));
        assert_eq!(db.loads(), 2);
    }

    /// A delivery's lookup that read the store before a handshake stored the secret does
    /// not, ending after it, cache the tenant as unknown: the next delivery verifies.
    #[tokio::test]
    async fn a_lookup_older_than_a_handshake_does_not_hide_its_secret() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source(&db, &clock);
        db.set("t", &[]);
        let (started, release) = db.hold();
        let lookup = tokio::spawn({
            let source = Arc::clone(&source);
            async move { source.scheme(&parts("t")).await.is_ok() }
        });
        started.await.unwrap(); // it has read "no secret yet"
        source.adopt_secret(&parts("t"), secret("handed-over")).await.unwrap();
        release.send(()).unwrap();
        assert!(!lookup.await.unwrap());
        assert!(accepts(&*source.scheme(&parts("t")).await.unwrap(), "handed-over"));
    }

    /// Yields to the spawned tasks until `done`.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{what}: never happened");
    }

    /// A lookup of `tenant` on its own task: whether the scheme accepts `secret`.
    fn spawn_lookup(
        source: &Arc<TenantSchemes>,
        tenant: &'static str,
        secret: &'static str,
    ) -> tokio::task::JoinHandle<Result<bool, SourceError>> {
        let source = Arc::clone(source);
        tokio::spawn(async move { source.scheme(&parts(tenant)).await.map(|s| accepts(&*s, secret)) })
    }

    /// Someone probes `/hooks/acme` (a handshake and a delivery) before the app registers
    /// acme, caching it as unknown: Asana's handshake a second after the registration
    /// still gets in, and the next probe, once the cached unknown has expired, is
    /// refused.
    #[tokio::test]
    async fn a_name_cached_as_unknown_never_keeps_the_genuine_handshake_out() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source(&db, &clock);
        let probe = source.adopt_secret(&parts("acme"), secret("evil")).await;
        assert!(matches!(probe, Err(SourceError::Unknown)), "{probe:?}");
        assert!(matches!(source.scheme(&parts("acme")).await, Err(SourceError::Unknown)));

        db.set("acme", &[]); // registered, awaiting its handshake
        clock.advance(Duration::from_secs(1));
        source.adopt_secret(&parts("acme"), secret("genuine")).await.expect("the genuine handshake");

        clock.advance(Duration::from_secs(30));
        let probe = source.adopt_secret(&parts("acme"), secret("evil")).await;
        assert!(matches!(probe, Err(SourceError::Refused)), "{probe:?}");
        let scheme = source.scheme(&parts("acme")).await.unwrap();
        assert!(accepts(&*scheme, "genuine") && !accepts(&*scheme, "evil"));
    }

    /// `invalidate` on a clone drops the tenant from the cache the original uses: its
    /// next lookup loads the rotated secret; an unknown name is looked up again too.
    #[tokio::test]
    async fn invalidate_drops_a_tenant_from_a_clones_cache() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source(&db, &clock);
        let handle = TenantSchemes::clone(&source);
        db.set("t", &["old"]);
        assert!(accepts(&*source.scheme(&parts("t")).await.unwrap(), "old"));
        db.set("t", &["new"]);
        assert!(accepts(&*source.scheme(&parts("t")).await.unwrap(), "old"), "cached");
        assert_eq!(db.loads(), 1);
        handle.invalidate("t");
        let scheme = source.scheme(&parts("t")).await.unwrap();
        assert!(accepts(&*scheme, "new") && !accepts(&*scheme, "old"));
        assert_eq!(db.loads(), 2);

        assert!(matches!(source.scheme(&parts("later")).await, Err(SourceError::Unknown)));
        db.set("later", &["s"]);
        handle.invalidate("later");
        assert!(accepts(&*source.scheme(&parts("later")).await.unwrap(), "s"));
        assert_eq!(db.loads(), 4);
    }

    /// A load that began before `invalidate` is not cached, and the lookup waiting on it
    /// loads again: neither answers with the old secret, which is not cached. (Time is
    /// paused: a lookup left waiting on the held load fails at the timeout at once.)
    #[tokio::test(start_paused = true)]
    async fn invalidate_outruns_a_load_in_progress() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source(&db, &clock);
        db.set("t", &["old"]);
        let (started, release) = db.hold();
        let first = spawn_lookup(&source, "t", "new");
        started.await.unwrap(); // it has read "old"
        let waiting = spawn_lookup(&source, "t", "new");
        until("the second lookup waits on the first's load", || source.waiting("t") == 1).await;
        db.set("t", &["new"]);
        source.invalidate("t");
        let res = tokio::time::timeout(Duration::from_secs(60), waiting).await;
        assert!(res.expect("the waiting lookup loaded again").unwrap().unwrap());
        release.send(()).unwrap();
        assert!(first.await.unwrap().unwrap(), "the older load answers with the newer scheme");
        let cached = source.scheme(&parts("t")).await.unwrap();
        assert!(accepts(&*cached, "new") && !accepts(&*cached, "old"));
        assert_eq!(db.loads(), 2);
    }

    /// More invalidations than the cache's capacity drop the oldest fences to make room:
    /// a load that began before such a fence is still not cached (its answer is used).
    #[tokio::test(start_paused = true)]
    async fn a_fence_dropped_for_room_still_keeps_an_older_load_out() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source_with(&db, &clock, |source| source.capacity(1));
        db.set("t", &["old"]);
        let (started, release) = db.hold();
        let first = spawn_lookup(&source, "t", "old");
        started.await.unwrap(); // it has read "old"
        db.set("t", &["new"]);
        source.invalidate("t");
        source.invalidate("u"); // t's fence makes room for u's
        release.send(()).unwrap();
        assert!(first.await.unwrap().unwrap(), "the lookup that began before answers as it read");
        let cached = source.scheme(&parts("t")).await.unwrap();
        assert!(accepts(&*cached, "new") && !accepts(&*cached, "old"), "not cached");
    }

    /// 50 lookups that miss the cache at once for one tenant are one load; a lookup of
    /// another tenant meanwhile does not wait on it.
    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source(&db, &clock);
        db.set("t", &["s"]);
        db.set("other", &["o"]);
        let (started, release) = db.hold();
        let first = spawn_lookup(&source, "t", "s");
        started.await.unwrap();
        let rest: Vec<_> = (0..49).map(|_| spawn_lookup(&source, "t", "s")).collect();
        until("49 lookups wait on the load", || source.waiting("t") == 49).await;
        assert!(accepts(&*source.scheme(&parts("other")).await.unwrap(), "o"));
        release.send(()).unwrap();
        for lookup in std::iter::once(first).chain(rest) {
            assert!(lookup.await.unwrap().unwrap());
        }
        assert_eq!(db.loads(), 2, "t once, other once");
        assert!(source.flights().is_empty());
    }

    /// The loader's error reaches each lookup that waited on the load (the same text);
    /// it is not cached: the next lookup loads again.
    #[tokio::test]
    async fn a_loader_error_is_shared_with_the_waiting_lookups() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source(&db, &clock);
        db.down.store(true, Ordering::SeqCst);
        let (started, release) = db.hold();
        let first = spawn_lookup(&source, "t", "s");
        started.await.unwrap();
        let rest: Vec<_> = (0..9).map(|_| spawn_lookup(&source, "t", "s")).collect();
        until("9 lookups wait on the load", || source.waiting("t") == 9).await;
        release.send(()).unwrap();
        for lookup in std::iter::once(first).chain(rest) {
            match lookup.await.unwrap() {
                Err(SourceError::Unavailable(e)) => assert_eq!(e.to_string(), "db down"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(db.loads(), 1);
        db.down.store(false, Ordering::SeqCst);
        db.set("t", &["s"]);
        assert!(accepts(&*source.scheme(&parts("t")).await.unwrap(), "s"));
        assert_eq!(db.loads(), 2);
    }

    /// The lookup that began a load goes away (its future dropped) before the load ends:
    /// the one waiting on it loads again instead of waiting for ever, and no flight is
    /// left behind. (Time is paused: a follower left waiting fails at the timeout at once.)
    #[tokio::test(start_paused = true)]
    async fn a_dropped_leader_leaves_no_lookup_waiting() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source(&db, &clock);
        db.set("t", &["s"]);
        let (started, _release) = db.hold();
        let leader = spawn_lookup(&source, "t", "s");
        started.await.unwrap();
        let waiting = spawn_lookup(&source, "t", "s");
        until("the lookup waits on the leader", || source.waiting("t") == 1).await;
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        let res = tokio::time::timeout(Duration::from_secs(60), waiting).await;
        assert!(res.expect("the waiting lookup loaded again").unwrap().unwrap());
        assert_eq!(db.loads(), 2);
        assert!(source.flights().is_empty());
        assert!(accepts(&*source.scheme(&parts("t")).await.unwrap(), "s"));
        assert_eq!(db.loads(), 2, "and cached what it loaded");
    }

    /// GitHub schemes with secret "s" for any tenant, from a loader whose first `hung`
    /// calls never end (a dead pooled connection), counting its calls.
    fn hanging_source(hung: usize, calls: &Arc<AtomicUsize>) -> TenantSchemes {
        let counted = Arc::clone(calls);
        TenantSchemes::new(
            TenantSchemes::path_segment(2),
            move |_tenant: String| {
                let hangs = counted.fetch_add(1, Ordering::SeqCst) < hung;
                async move {
                    if hangs {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, std::io::Error>(Some(vec![secret("s")]))
                }
            },
            |secrets: &[Secret]| {
                Ok(Arc::new(crate::providers::github::scheme(secrets[0].expose())?) as Arc<dyn Scheme>)
            },
        )
        .clock(ManualClock::at_unix(1_700_000_000))
    }

    /// Whether `took` is `deadline` (to the timer's millisecond).
    fn at(took: Duration, deadline: Duration) -> bool {
        deadline <= took && took <= deadline + Duration::from_millis(1)
    }

    /// A loader call that never ends fails the load at its deadline (10 s by default):
    /// the lookup that began it and the one that joined it 4 s later are both answered
    /// `Unavailable` then, from one loader call; nothing is cached, so the next lookup
    /// loads again, and finds the secret.
    #[tokio::test(start_paused = true)]
    async fn a_hung_load_fails_at_its_deadline_for_the_lookups_waiting_on_it() {
        let calls = Arc::new(AtomicUsize::new(0));
        let source = Arc::new(hanging_source(1, &calls));
        let began = tokio::time::Instant::now();
        let leader = spawn_lookup(&source, "t", "s");
        until("the first load is called", || calls.load(Ordering::SeqCst) == 1).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let waiting = spawn_lookup(&source, "t", "s");
        until("the second lookup waits on the first's load", || source.waiting("t") == 1).await;
        for lookup in [leader, waiting] {
            let res = tokio::time::timeout(Duration::from_secs(60), lookup).await;
            match res.expect("answered, not left waiting").unwrap() {
                Err(SourceError::Unavailable(e)) => {
                    assert_eq!(e.to_string(), "the tenant's secrets were not loaded within 10s");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(at(began.elapsed(), Duration::from_secs(10)), "{:?}", began.elapsed());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one loader call for both");
        assert!(source.flights().is_empty());
        assert!(accepts(&*source.scheme(&parts("t")).await.unwrap(), "s"), "the failure was not cached");
        assert!(source.scheme(&parts("t")).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 2, "what the second load found is cached");
    }

    /// A lookup waiting on a load whose leader goes away loads itself, but is answered
    /// within its own deadline, counted from when it began (not from its own load).
    #[tokio::test(start_paused = true)]
    async fn a_lookup_that_must_load_again_still_ends_at_its_deadline() {
        let calls = Arc::new(AtomicUsize::new(0));
        let source = Arc::new(hanging_source(2, &calls));
        let leader = spawn_lookup(&source, "t", "s");
        until("the first load is called", || calls.load(Ordering::SeqCst) == 1).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let began = tokio::time::Instant::now();
        let waiting = spawn_lookup(&source, "t", "s");
        until("the second lookup waits on the first's load", || source.waiting("t") == 1).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        until("the waiting lookup loads itself", || calls.load(Ordering::SeqCst) == 2).await;
        let res = tokio::time::timeout(Duration::from_secs(60), waiting).await;
        let res = res.expect("answered, not left waiting").unwrap();
        assert!(matches!(res, Err(SourceError::Unavailable(_))), "{res:?}");
        assert!(at(began.elapsed(), Duration::from_secs(10)), "{:?}", began.elapsed());
        assert!(source.flights().is_empty());
        assert!(source.scheme(&parts("t")).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// `load_timeout` sets the deadline, for a handshake's load too: one that hangs is
    /// answered `Unavailable` then and lets the tenant's next handshake in; with
    /// `Duration::MAX` there is none (and no overflow).
    #[tokio::test(start_paused = true)]
    async fn load_timeout_bounds_a_handshakes_load_too() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source_with(&db, &clock, |source| source.load_timeout(Duration::from_secs(3)));
        db.set("t", &[]);
        let (_started, _held) = db.hold(); // never released
        let (began, handshake) = (tokio::time::Instant::now(), parts("t"));
        let res = tokio::time::timeout(Duration::from_secs(60), source.adopt_secret(&handshake, secret("a")));
        match res.await.expect("answered, not left waiting") {
            Err(SourceError::Unavailable(e)) => {
                assert_eq!(e.to_string(), "the tenant's secrets were not loaded within 3s");
            }
            other => panic!("{other:?}"),
        }
        assert!(at(began.elapsed(), Duration::from_secs(3)), "{:?}", began.elapsed());
        source.adopt_secret(&parts("t"), secret("b")).await.expect("the next handshake gets in");
        assert!(accepts(&*source.scheme(&parts("t")).await.unwrap(), "b"));

        let source = db_source_with(&db, &clock, |source| source.load_timeout(Duration::MAX));
        let (started, release) = db.hold();
        let mut lookup = spawn_lookup(&source, "t", "b");
        started.await.unwrap();
        let res = tokio::time::timeout(Duration::from_secs(3600), &mut lookup).await;
        assert!(res.is_err(), "no deadline: still loading after an hour");
        release.send(()).unwrap();
        assert!(lookup.await.unwrap().unwrap());
    }

    /// A handshake cancelled (its client went away) after its store wrote the secret,
    /// while it waits for the store's answer, still drops the tenant from the cache:
    /// the next delivery's lookup loads the secret instead of answering the "awaiting
    /// its handshake" cached before as unknown.
    #[tokio::test]
    async fn a_handshake_cancelled_after_its_store_wrote_still_drops_the_cached_tenant() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let (written_tx, written) = oneshot::channel::<()>();
        let (release, gate) = oneshot::channel::<()>();
        let signals = Mutex::new(Some((written_tx, gate)));
        let store_db = Arc::clone(&db);
        let source = db_source_with(&db, &clock, move |source| {
            source.store(move |tenant: String, secret: Secret| {
                // The database commits; its answer is slow to come back.
                store_db.secrets.lock().unwrap().insert(tenant, vec![secret]);
                let signals = signals.lock().unwrap().take();
                async move {
                    if let Some((written, gate)) = signals {
                        let _ = written.send(());
                        let _ = gate.await;
                    }
                    Ok::<_, std::io::Error>(())
                }
            })
        });
        db.set("t", &[]);
        assert!(matches!(source.scheme(&parts("t")).await, Err(SourceError::Unknown)));
        assert!(matches!(source.scheme(&parts("t")).await, Err(SourceError::Unknown)));
        assert_eq!(db.loads(), 1, "cached as awaiting its handshake");
        let handshake = tokio::spawn({
            let source = Arc::clone(&source);
            async move { source.adopt_secret(&parts("t"), secret("handed-over")).await }
        });
        written.await.unwrap();
        handshake.abort();
        assert!(handshake.await.unwrap_err().is_cancelled());
        let scheme = source.scheme(&parts("t")).await.expect("the stored secret, not the cached unknown");
        assert!(accepts(&*scheme, "handed-over"));
        drop(release);
    }

    /// Entries put in before the clock went back (an NTP step) count as expired: known
    /// and unknown names are loaded again, and cached from then on.
    #[tokio::test]
    async fn a_clock_stepped_back_expires_what_was_cached() {
        let (loads, clock) = (Arc::new(AtomicUsize::new(0)), ManualClock::at_unix(1_700_000_000));
        let source = source(&loads, &clock);
        assert!(source.scheme(&parts("known-a")).await.is_ok());
        assert!(matches!(source.scheme(&parts("made-up")).await, Err(SourceError::Unknown)));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        clock.set_unix(1_700_000_000 - 3600);
        assert!(source.scheme(&parts("known-a")).await.is_ok());
        assert!(matches!(source.scheme(&parts("made-up")).await, Err(SourceError::Unknown)));
        assert_eq!(loads.load(Ordering::SeqCst), 4, "loaded again");
        assert!(source.scheme(&parts("known-a")).await.is_ok());
        assert!(matches!(source.scheme(&parts("made-up")).await, Err(SourceError::Unknown)));
        assert_eq!(loads.load(Ordering::SeqCst), 4, "and cached again");
    }

    /// An error of the store's own with [`AlreadyStored`] in its `source()` chain.
    #[derive(Debug)]
    struct InsertFailed(AlreadyStored);

    impl fmt::Display for InsertFailed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("insert failed")
        }
    }

    impl Error for InsertFailed {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    /// A store that answers [`AlreadyStored`] (itself, boxed in an `io::Error`, or in the
    /// chain of its own error) refuses the handshake (403); any other error is the store
    /// failing (503). Either way the tenant is loaded afresh next: the secret another
    /// replica stored is found.
    #[tokio::test]
    async fn a_store_that_finds_a_secret_refuses_the_handshake() {
        type Case = (&'static str, fn() -> BoxError, bool);
        let cases: [Case; 5] = [
            ("already stored", || Box::new(AlreadyStored), true),
            ("in an io::Error", || std::io::Error::other(AlreadyStored).into(), true),
            (
                "in nested io::Errors",
                || std::io::Error::other(std::io::Error::other(AlreadyStored)).into(),
                true,
            ),
            ("in the source chain", || Box::new(InsertFailed(AlreadyStored)), true),
            ("the store failing", || std::io::Error::other("db down").into(), false),
        ];
        for (name, error, refused) in cases {
            let loads = Arc::new(AtomicUsize::new(0));
            let counted = Arc::clone(&loads);
            let source = TenantSchemes::new(
                TenantSchemes::path_segment(2),
                move |_tenant: String| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, std::io::Error>(Some(Vec::new())) }
                },
                |secrets: &[Secret]| {
                    Ok(Arc::new(crate::providers::github::scheme(secrets[0].expose())?) as Arc<dyn Scheme>)
                },
            )
            .store(move |_tenant: String, _secret: Secret| std::future::ready(Err::<(), _>(error())))
            .clock(ManualClock::at_unix(1_700_000_000));
            assert!(source.scheme(&parts("t")).await.is_err(), "case {name}");
            let res = source.adopt_secret(&parts("t"), secret("x")).await;
            match res {
                Err(SourceError::Refused) => assert!(refused, "case {name}"),
                Err(SourceError::Unavailable(_)) => assert!(!refused, "case {name}"),
                other => panic!("case {name}: {other:?}"),
            }
            assert!(source.scheme(&parts("t")).await.is_err(), "case {name}");
            assert_eq!(loads.load(Ordering::SeqCst), 3, "case {name}: loaded afresh after the handshake");
        }
    }

    /// A name put in again and again (several lookups of it at once) keeps the order
    /// within a few times the map.
    #[test]
    fn a_name_put_in_again_keeps_the_order_bounded() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut cache = Expiring::default();
        for ticket in 0..1000 {
            cache.put("made-up", (), ticket, Span::new(now, Duration::from_secs(30)), now, 10);
        }
        assert_eq!(cache.len(), 1);
        assert!(cache.order.len() <= 20, "{}", cache.order.len());
        let later = now + Duration::from_secs(31);
        cache.put("made-up", (), 1000, Span::new(later, Duration::from_secs(30)), later, 10);
        assert_eq!(cache.len(), 1);
        assert!(cache.order.len() <= 20);
    }
}
