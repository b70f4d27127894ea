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
    collections::{HashMap, VecDeque},
    fmt,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::request::Parts;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::{
    ConfigError, Secret,
    clock::{Clock, SystemClock},
    guard::{SchemeSource, SourceError},
    replay::BoxFuture,
    verify::Scheme,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TenantFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;
type LoadFn = dyn Fn(String) -> BoxFuture<'static, Result<Option<Vec<Secret>>, BoxError>> + Send + Sync;
type StoreFn = dyn Fn(String, Secret) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync;
type BuildFn = dyn Fn(&[Secret]) -> Result<Arc<dyn Scheme>, ConfigError> + Send + Sync;

/// A [`SchemeSource`] that finds the tenant of a request (a path segment, a header, …),
/// loads its secrets with your async function, builds its scheme once and caches it
/// (bounded, with a time to live; an unknown tenant is cached briefly too, so repeated
/// requests for one unknown name, deliveries and handshakes alike, reach your store once
/// per [`unknown_ttl`](Self::unknown_ttl), though each new name is one lookup: put a rate
/// limit in front). Unknown names are cached apart from known tenants: a flood of made-up
/// names never pushes a known tenant out. A tenant name longer than 256 bytes is unknown
/// without a lookup. A tenant whose secrets make no scheme (`build` fails: a malformed
/// secret) is logged at `error` once per load and answered as the source being
/// unavailable (`503` + `Retry-After`) from the cache for `unknown_ttl` too.
///
/// Lookups of one tenant may run at once (each loads); the answer of the one that began
/// last is kept: one that began earlier and ends later (it may have read a secret since
/// rotated) is not cached over it, and its request is answered with the later one. So a
/// rotated secret is accepted at most [`ttl`](Self::ttl) after a lookup that began
/// before the rotation.
///
/// With [`store`](Self::store) it also keeps secrets handed over at run time (Asana's
/// `X-Hook-Secret`), but only for a tenant that your loader answers with an empty list:
/// one you registered and that awaits its handshake. An unknown tenant (`None`) gets
/// `404`, and one with secrets `403`: a handshake can never create a tenant or replace a
/// secret. Register the tenant before creating its webhook: a name found unknown is
/// answered unknown from the cache for `unknown_ttl`, and a tenant found with secrets is
/// refused a handshake from the cache for `ttl` (to redo a handshake after clearing its
/// secrets, wait that long or use a new name). One handshake per tenant runs at a
/// time in this process, and once its secret is stored no lookup that began earlier is
/// cached; when several replicas share the store, make `store` an insert-if-absent (a
/// unique key) so that a second replica's handshake fails instead of overwriting the
/// first.
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
pub struct TenantSchemes {
    tenant: Box<TenantFn>,
    load: Box<LoadFn>,
    store: Option<Box<StoreFn>>,
    build: Box<BuildFn>,
    /// Known tenants' schemes, and unknown names apart: a flood of unknown names never
    /// pushes a known tenant out.
    cache: Mutex<Caches>,
    /// Tenants whose handshake is being stored right now.
    adopting: Mutex<std::collections::HashSet<String>>,
    ttl: Duration,
    unknown_ttl: Duration,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

/// The caches, and the tickets that order what is put in them: each load of a tenant, and
/// each handshake that stored a secret, takes the next ticket, and an answer is put in
/// only if no entry for its tenant (in any of the three maps) holds a later ticket.
#[derive(Default)]
struct Caches {
    known: Expiring<Arc<dyn Scheme>>,
    /// Names without secrets: unknown, or awaiting their handshake.
    unknown: Expiring<Absent>,
    /// Tenants whose handshake stored a secret: a load that began before may have read
    /// the store before it, and is not put in. Each lives as long as such a load's answer
    /// would (the longer time to live): one ending later was expired anyway.
    fenced: Expiring<()>,
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
    expires: OffsetDateTime,
    ticket: u64,
}

impl<V> Default for Expiring<V> {
    fn default() -> Self {
        Self { map: HashMap::new(), order: VecDeque::new() }
    }
}

impl<V: Clone> Expiring<V> {
    fn get(&self, name: &str, now: OffsetDateTime) -> Option<V> {
        self.map.get(name).filter(|e| e.expires > now).map(|e| e.value.clone())
    }

    /// The ticket `name` was put in with, expired or not.
    fn ticket(&self, name: &str) -> Option<u64> {
        self.map.get(name).map(|e| e.ticket)
    }

    /// Puts `name` in until `expires` (not at all if that is past), under `ticket`,
    /// keeping at most `capacity` names.
    fn put(
        &mut self,
        name: &str,
        value: V,
        ticket: u64,
        expires: OffsetDateTime,
        now: OffsetDateTime,
        capacity: usize,
    ) {
        if expires <= now {
            return;
        }
        let name: Arc<str> = Arc::from(name);
        self.map.insert(Arc::clone(&name), Entry { value, expires, ticket });
        self.order.push_back((name, ticket));
        while let Some((oldest, put)) = self.order.front() {
            let entry = self.map.get(oldest).filter(|e| e.ticket == *put);
            let (live, keep) = match entry {
                Some(e) => (true, e.expires > now && self.map.len() <= capacity),
                None => (false, false),
            };
            if keep {
                break;
            }
            if live {
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
        let load: Box<LoadFn> = Box::new(move |tenant| {
            let fut = load(tenant);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        Self {
            tenant: Box::new(tenant),
            load,
            store: None,
            build: Box::new(build),
            cache: Mutex::default(),
            adopting: Mutex::default(),
            ttl: Duration::from_secs(300),
            unknown_ttl: Duration::from_secs(30),
            capacity: 10_000,
            clock: Arc::new(SystemClock),
        }
    }

    /// Keeps secrets handed over by a handshake (Asana) with your async function, for a
    /// tenant your loader answers with an empty list (see the type's docs).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::{Arc, Mutex};
    /// use hookguard::{guard::{SchemeSource, SourceError}, providers::asana, tenant::TenantSchemes, Secret};
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
    ///     for row in writer.lock().unwrap().iter_mut().filter(|(t, _)| *t == tenant) {
    ///         row.1.get_or_insert(secret.clone());
    ///     }
    ///     async { Ok::<_, std::io::Error>(()) }
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
        self.store = Some(Box::new(move |tenant, secret| {
            let fut = store(tenant, secret);
            Box::pin(async move { fut.await.map_err(Into::into) })
        }));
        self
    }

    /// How long a tenant's scheme is cached (rotate secrets within this time;
    /// `Duration::MAX`: for ever).
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

    /// How long an unknown tenant (or one awaiting its handshake) is remembered as such.
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

    /// The caches (a panic elsewhere while they were held leaves them usable: each put
    /// is whole or skipped).
    fn caches(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, tenant: &str, now: OffsetDateTime) -> Option<Answer> {
        self.caches().get(tenant, now)
    }

    /// The ticket for a load that begins now.
    fn ticket(&self) -> u64 {
        self.caches().ticket()
    }

    /// Loads `tenant`'s secrets.
    async fn load(&self, tenant: &str) -> Result<Option<Vec<Secret>>, SourceError> {
        (self.load)(tenant.to_owned()).await.map_err(SourceError::Unavailable)
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
        let expires =
            later(began, if matches!(answer, Answer::Known(_)) { self.ttl } else { self.unknown_ttl });
        let now = self.clock.now();
        let mut cache = self.caches();
        if cache.latest(tenant).is_some_and(|latest| latest > ticket) {
            return cache.get(tenant, now);
        }
        match answer {
            Answer::Known(scheme) => {
                cache.unknown.remove(tenant);
                cache.known.put(tenant, Arc::clone(scheme), ticket, expires, now, self.capacity);
            }
            Answer::Absent(absent) => {
                cache.known.remove(tenant);
                cache.unknown.put(tenant, *absent, ticket, expires, now, self.capacity);
            }
        }
        None
    }

    /// Drops what is cached for `tenant`, whose handshake stored a secret, and keeps any
    /// load that began before from being cached.
    fn forget(&self, tenant: &str) {
        let now = self.clock.now();
        let expires = later(now, self.ttl.max(self.unknown_ttl));
        let mut cache = self.caches();
        let ticket = cache.ticket();
        cache.known.remove(tenant);
        cache.unknown.remove(tenant);
        cache.fenced.put(tenant, (), ticket, expires, now, self.capacity);
    }

    async fn lookup(&self, tenant: String) -> Result<Arc<dyn Scheme>, SourceError> {
        if tenant.len() > MAX_TENANT {
            return Err(SourceError::Unknown);
        }
        let now = self.clock.now();
        let answer = match self.cached(&tenant, now) {
            Some(hit) => hit,
            None => {
                let ticket = self.ticket();
                let secrets = self.load(&tenant).await?;
                let answer = self.answer(&tenant, secrets);
                self.remember(&tenant, &answer, ticket, now).unwrap_or(answer)
            }
        };
        match answer {
            Answer::Known(scheme) => Ok(scheme),
            Answer::Absent(Absent::Broken) => Err(SourceError::Unavailable(
                "the tenant's secrets make no scheme (logged when they were loaded)".into(),
            )),
            Answer::Absent(Absent::Unknown | Absent::Awaiting) => Err(SourceError::Unknown),
        }
    }
}

/// The longest tenant name looked up: longer ones are unknown without a lookup (and
/// never fill the cache with header-sized keys).
const MAX_TENANT: usize = 256;

/// A tenant's handshake in progress; ends when dropped.
struct Adopting<'a> {
    set: &'a Mutex<std::collections::HashSet<String>>,
    tenant: String,
}

impl<'a> Adopting<'a> {
    /// `None` when another handshake for `tenant` is in progress.
    fn start(set: &'a Mutex<std::collections::HashSet<String>>, tenant: &str) -> Option<Self> {
        let mut set_now = set.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        set_now.insert(tenant.to_owned()).then(|| Self { set, tenant: tenant.to_owned() })
    }
}

impl Drop for Adopting<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.tenant);
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
            // Anyone can send a handshake: a name known to be unknown, or to have its
            // secret, is answered from the cache. One awaiting its handshake is loaded
            // again (it may have been given its secret since).
            match self.cached(&tenant, now) {
                // Secrets that make no scheme are secrets all the same.
                Some(Answer::Known(_) | Answer::Absent(Absent::Broken)) => return Err(SourceError::Refused),
                Some(Answer::Absent(Absent::Unknown)) => return Err(SourceError::Unknown),
                Some(Answer::Absent(Absent::Awaiting)) | None => {}
            }
            // One handshake per tenant at a time: two at once would both find no secret.
            let Some(_adopting) = Adopting::start(&self.adopting, &tenant) else {
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
            store(tenant.clone(), secret).await.map_err(SourceError::Unavailable)?;
            self.forget(&tenant);
            Ok(())
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
            assert!(matches!(source.scheme(&parts("acme")).await, Err(SourceError::Unavailable(_))));
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
        let (load_db, store_db) = (Arc::clone(db), Arc::clone(db));
        let source = TenantSchemes::new(
            TenantSchemes::path_segment(2),
            move |tenant: String| {
                load_db.loads.fetch_add(1, Ordering::SeqCst);
                let read = load_db.secrets.lock().unwrap().get(&tenant).cloned();
                let gate = load_db.gate.lock().unwrap().take();
                async move {
                    if let Some((started, release)) = gate {
                        let _ = started.send(());
                        let _ = release.await;
                    }
                    Ok::<_, std::io::Error>(read)
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
        Arc::new(source)
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

    /// Handshakes read and fill the cache like deliveries: 100 for a made-up tenant are
    /// one load, and so are 100 for a tenant that has its secret; a name a delivery found
    /// awaiting its handshake can still take it, once.
    #[tokio::test]
    async fn handshakes_go_through_the_cache() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source(&db, &clock);
        for _ in 0..100 {
            let res = source.adopt_secret(&parts("made-up"), secret("x")).await;
            assert!(matches!(res, Err(SourceError::Unknown)), "{res:?}");
        }
        assert!(matches!(source.scheme(&parts("made-up")).await, Err(SourceError::Unknown)));
        assert_eq!(db.loads(), 1);

        db.set("known", &["s"]);
        for _ in 0..100 {
            let res = source.adopt_secret(&parts("known"), secret("x")).await;
            assert!(matches!(res, Err(SourceError::Refused)), "{res:?}");
        }
        assert!(accepts(&*source.scheme(&parts("known")).await.unwrap(), "s"));
        assert_eq!(db.loads(), 2);

        db.set("awaiting", &[]);
        assert!(matches!(source.scheme(&parts("awaiting")).await, Err(SourceError::Unknown)));
        source.adopt_secret(&parts("awaiting"), secret("handed-over")).await.unwrap();
        assert!(accepts(&*source.scheme(&parts("awaiting")).await.unwrap(), "handed-over"));
        let res = source.adopt_secret(&parts("awaiting"), secret("another")).await;
        assert!(matches!(res, Err(SourceError::Refused)), "never replaced: {res:?}");
        assert!(accepts(&*source.scheme(&parts("awaiting")).await.unwrap(), "handed-over"));
    }

    /// A load that began before a newer one ended does not put its older answer over the
    /// newer: a rotated secret is not accepted again.
    #[tokio::test]
    async fn an_older_load_never_overwrites_a_newer_one() {
        let (db, clock) = (Arc::new(Db::default()), ManualClock::at_unix(1_700_000_000));
        let source = db_source(&db, &clock);
        db.set("t", &["old"]);
        let (started, release) = db.hold();
        let first = tokio::spawn({
            let source = Arc::clone(&source);
            async move { source.scheme(&parts("t")).await.map(|s| accepts(&*s, "old")) }
        });
        started.await.unwrap(); // it has read "old"
        db.set("t", &["new"]);
        let second = source.scheme(&parts("t")).await.unwrap();
        assert!(accepts(&*second, "new") && !accepts(&*second, "old"));
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

    /// A name put in again and again (several lookups of it at once) keeps the order
    /// within a few times the map.
    #[test]
    fn a_name_put_in_again_keeps_the_order_bounded() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut cache = Expiring::default();
        for ticket in 0..1000 {
            cache.put("made-up", (), ticket, now + Duration::from_secs(30), now, 10);
        }
        assert_eq!(cache.len(), 1);
        assert!(cache.order.len() <= 20, "{}", cache.order.len());
        let later = now + Duration::from_secs(31);
        cache.put("made-up", (), 1000, later + Duration::from_secs(30), later, 10);
        assert_eq!(cache.len(), 1);
        assert!(cache.order.len() <= 20);
    }
}
