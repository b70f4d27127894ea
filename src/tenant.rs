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
use time::OffsetDateTime;

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
/// requests for one unknown name reach your store once per [`unknown_ttl`](Self::unknown_ttl),
/// though each new name is one lookup: put a rate limit in front). Unknown names are
/// cached apart from known tenants: a flood of made-up names never pushes a known tenant
/// out. A tenant name longer than 256 bytes is unknown without a lookup.
///
/// With [`store`](Self::store) it also keeps secrets handed over at run time (Asana's
/// `X-Hook-Secret`), but only for a tenant that your loader answers with an empty list:
/// one you registered and that awaits its handshake. An unknown tenant (`None`) gets
/// `404`, and one with secrets `403`: a handshake can never create a tenant or replace a
/// secret. One handshake per tenant runs at a time in this process; when several
/// replicas share the store, make `store` an insert-if-absent (a unique key) so that a
/// second replica's handshake fails instead of overwriting the first.
///
/// The tenant is part of each delivery's replay and inbox key
/// ([`SchemeSource::namespace`]): two tenants' deliveries that carry the same id are
/// both kept. Name each tenant one way only (have the finder normalize, and the loader
/// answer for that one spelling): a loader that also answered for `ACME` what it answers
/// for `acme` would let a delivery replayed to `/hooks/ACME` through as a new one.
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

#[derive(Default)]
struct Caches {
    known: Expiring<Arc<dyn Scheme>>,
    unknown: Expiring<()>,
}

/// A bounded map whose entries all live one time to live: they expire in the order they
/// were put in, so the oldest goes first, whether expired or to make room (no scan).
struct Expiring<V> {
    map: HashMap<Arc<str>, (V, OffsetDateTime)>,
    /// Names in the order they were put in, with the expiry each was put in with (an
    /// entry whose name was put in again since, or removed, is stale: skipped).
    order: VecDeque<(Arc<str>, OffsetDateTime)>,
}

impl<V> Default for Expiring<V> {
    fn default() -> Self {
        Self { map: HashMap::new(), order: VecDeque::new() }
    }
}

impl<V: Clone> Expiring<V> {
    fn get(&self, name: &str, now: OffsetDateTime) -> Option<V> {
        self.map.get(name).filter(|(_, expires)| *expires > now).map(|(v, _)| v.clone())
    }

    /// Puts `name` in until `expires`, keeping at most `capacity` names.
    fn put(&mut self, name: &str, value: V, expires: OffsetDateTime, now: OffsetDateTime, capacity: usize) {
        // Put in again while it lives (lookups of one name at once, each loading it): the
        // new value under the old expiry, with no second place in the order.
        if let Some((held, at)) = self.map.get_mut(name)
            && *at > now
        {
            *held = value;
            return;
        }
        let name: Arc<str> = Arc::from(name);
        self.map.insert(Arc::clone(&name), (value, expires));
        self.order.push_back((name, expires));
        while let Some((oldest, at)) = self.order.front() {
            let live = self.map.get(oldest).is_some_and(|(_, e)| e == at);
            if live && *at > now && self.map.len() <= capacity {
                break;
            }
            if live {
                self.map.remove(oldest);
            }
            self.order.pop_front();
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
            .field("cached", &self.cache.lock().map_or(0, |c| c.known.len()))
            .finish_non_exhaustive()
    }
}

impl TenantSchemes {
    /// A source from a tenant finder, a secret loader and a scheme builder. Defaults:
    /// cache 10,000 tenants for 5 minutes, unknown ones for 30 seconds.
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

    /// How long a tenant's scheme is cached (rotate secrets within this time).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long an unknown tenant is remembered as unknown.
    #[must_use]
    pub fn unknown_ttl(mut self, ttl: Duration) -> Self {
        self.unknown_ttl = ttl;
        self
    }

    /// How many tenants are cached at most (and, apart, how many unknown names).
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The clock for cache expiry.
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

    /// The cached answer for `tenant`: `Some(None)` for a name known to be unknown.
    fn cached(&self, tenant: &str, now: OffsetDateTime) -> Option<Option<Arc<dyn Scheme>>> {
        let cache = self.cache.lock().ok()?;
        match cache.known.get(tenant, now) {
            Some(scheme) => Some(Some(scheme)),
            None => cache.unknown.get(tenant, now).map(|()| None),
        }
    }

    fn remember(&self, tenant: &str, scheme: Option<Arc<dyn Scheme>>, now: OffsetDateTime) {
        if let Ok(mut cache) = self.cache.lock() {
            let cache = &mut *cache;
            match scheme {
                Some(scheme) => {
                    cache.unknown.remove(tenant);
                    cache.known.put(tenant, scheme, now + self.ttl, now, self.capacity);
                }
                None => {
                    cache.known.remove(tenant);
                    cache.unknown.put(tenant, (), now + self.unknown_ttl, now, self.capacity);
                }
            }
        }
    }

    fn forget(&self, tenant: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.known.remove(tenant);
            cache.unknown.remove(tenant);
        }
    }

    async fn lookup(&self, tenant: String) -> Result<Arc<dyn Scheme>, SourceError> {
        if tenant.len() > MAX_TENANT {
            return Err(SourceError::Unknown);
        }
        let now = self.clock.now();
        if let Some(hit) = self.cached(&tenant, now) {
            return hit.ok_or(SourceError::Unknown);
        }
        let secrets = (self.load)(tenant.clone()).await.map_err(SourceError::Unavailable)?;
        let scheme = match secrets {
            Some(secrets) if !secrets.is_empty() => {
                Some((self.build)(&secrets).map_err(|e| SourceError::Unavailable(Box::new(e)))?)
            }
            _ => None,
        };
        self.remember(&tenant, scheme.clone(), now);
        scheme.ok_or(SourceError::Unknown)
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
            // One handshake per tenant at a time: two at once would both find no secret.
            let Some(_adopting) = Adopting::start(&self.adopting, &tenant) else {
                return Err(SourceError::Refused);
            };
            match (self.load)(tenant.clone()).await.map_err(SourceError::Unavailable)? {
                // Registered, awaiting its handshake.
                Some(secrets) if secrets.is_empty() => {}
                Some(_) => return Err(SourceError::Refused),
                None => return Err(SourceError::Unknown),
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

    /// A name put in again while it lives (several lookups of it at once) takes no second
    /// place in the order: the order stays as long as the map.
    #[test]
    fn a_name_put_in_again_takes_one_place() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut cache = Expiring::default();
        for _ in 0..100 {
            cache.put("made-up", (), now + Duration::from_secs(30), now, 10);
        }
        assert_eq!((cache.len(), cache.order.len()), (1, 1));
        cache.put("made-up", (), now + Duration::from_secs(61), now + Duration::from_secs(31), 10);
        assert_eq!(cache.len(), 1);
        assert!(cache.order.len() <= 2);
    }
}
