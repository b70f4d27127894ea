//! Rate limits keyed by client address, and the stricter budget for failed verifications,
//! over [`governor`]'s GCRA with a bounded, expiring key store.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    middleware::NoOpMiddleware,
    nanos::Nanos,
    state::{StateStore, keyed::ShrinkableKeyedStateStore},
};
use http::StatusCode;
use time::OffsetDateTime;

use super::AllowList;
use crate::{ConfigError, clock::Clock, problem::Problem};

/// What a rate limit counts under: a client address and, optionally, an endpoint or
/// tenant name (so one limiter can serve several endpoints with separate budgets).
///
/// ```
/// use hookguard::source::LimitKey;
/// let key = LimitKey::new("192.0.2.1".parse().unwrap()).scope("stripe");
/// assert_eq!(key.addr().to_string(), "192.0.2.1");
/// assert_eq!(key.scope_name(), Some("stripe"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey {
    addr: IpAddr,
    scope: Option<Arc<str>>,
    /// A client a trusted proxy at `addr` could not name.
    behind: bool,
}

impl LimitKey {
    /// A key for `addr`, no scope.
    ///
    /// ```
    /// use hookguard::source::LimitKey;
    /// assert_eq!(LimitKey::new("::1".parse().unwrap()).scope_name(), None);
    /// ```
    #[must_use]
    pub fn new(addr: IpAddr) -> Self {
        Self { addr: addr.to_canonical(), scope: None, behind: false }
    }

    /// A key for the clients a trusted proxy at `proxy` forwarded without a readable
    /// address (its header held `unknown`, garbage, an open quote): they share one budget
    /// per proxy, apart from the proxy's own requests (health checks, internal senders
    /// that reach the app through it without the header). Charged to the proxy's key,
    /// a client that made itself unreadable could spend the proxy's budgets.
    ///
    /// ```
    /// use hookguard::source::LimitKey;
    /// let proxy = "10.0.0.1".parse().unwrap();
    /// assert_ne!(LimitKey::behind(proxy), LimitKey::new(proxy));
    /// assert_eq!(LimitKey::behind(proxy).addr(), proxy);
    /// ```
    #[must_use]
    pub fn behind(proxy: IpAddr) -> Self {
        Self { behind: true, ..Self::new(proxy) }
    }

    /// Counts under `scope` too (an endpoint or tenant name).
    ///
    /// ```
    /// use hookguard::source::LimitKey;
    /// let a = LimitKey::new("::1".parse().unwrap());
    /// assert_ne!(a.clone().scope("x"), a);
    /// ```
    #[must_use]
    pub fn scope(mut self, scope: impl Into<Arc<str>>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The address.
    ///
    /// ```
    /// use hookguard::source::LimitKey;
    /// assert!(LimitKey::new("::ffff:192.0.2.1".parse().unwrap()).addr().is_ipv4());
    /// ```
    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The scope, if any.
    ///
    /// ```
    /// use hookguard::source::LimitKey;
    /// assert_eq!(LimitKey::new("::1".parse().unwrap()).scope("t1").scope_name(), Some("t1"));
    /// ```
    #[must_use]
    pub fn scope_name(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    fn masked(&self, v6_prefix: u8) -> Self {
        let addr = match self.addr {
            IpAddr::V6(v6) if v6_prefix < 128 => {
                let bits = u128::from(v6);
                let mask = u128::MAX.checked_shl(u32::from(128 - v6_prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
            other => other,
        };
        Self { addr, scope: self.scope.clone(), behind: self.behind }
    }
}

/// Which limit refused a request.
///
/// ```
/// use hookguard::source::RefusedBy;
/// assert_eq!(RefusedBy::FailureBudget.label(), "failure-budget");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusedBy {
    /// The ordinary per-address limit.
    RateLimit,
    /// The address failed verification too often.
    FailureBudget,
}

impl RefusedBy {
    /// The `by` label of `hookguard_refused_total`.
    ///
    /// ```
    /// use hookguard::source::RefusedBy;
    /// assert_eq!(RefusedBy::RateLimit.label(), "rate-limit");
    /// ```
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::RateLimit => "rate-limit",
            Self::FailureBudget => "failure-budget",
        }
    }
}

/// A request refused by a [`SourceLimiter`]: answer `429` with `Retry-After`.
///
/// ```
/// use std::time::Duration;
/// use hookguard::source::SourceLimiter;
///
/// let limiter = SourceLimiter::builder().requests(1, Duration::from_secs(30)).build()?;
/// let key = hookguard::source::LimitKey::new("192.0.2.1".parse()?);
/// assert!(limiter.admit(&key).is_ok());
/// let refused = limiter.admit(&key).unwrap_err();
/// let res = refused.into_problem().into_response();
/// assert_eq!(res.status(), 429);
/// assert_eq!(res.headers()["retry-after"], "30");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    by: RefusedBy,
    retry_after: Duration,
}

impl Refused {
    /// Which limit refused.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard::source::{LimitKey, RefusedBy, SourceLimiter};
    /// # let limiter = SourceLimiter::builder().requests(1, Duration::from_secs(1)).build().unwrap();
    /// # let key = LimitKey::new("192.0.2.1".parse().unwrap());
    /// # limiter.admit(&key).unwrap();
    /// assert_eq!(limiter.admit(&key).unwrap_err().by(), RefusedBy::RateLimit);
    /// ```
    #[must_use]
    pub const fn by(&self) -> RefusedBy {
        self.by
    }

    /// How long until a request would be admitted.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard::source::{LimitKey, SourceLimiter};
    /// # let limiter = SourceLimiter::builder().requests(1, Duration::from_secs(8)).build().unwrap();
    /// # let key = LimitKey::new("192.0.2.1".parse().unwrap());
    /// # limiter.admit(&key).unwrap();
    /// assert!(limiter.admit(&key).unwrap_err().retry_after() <= Duration::from_secs(8));
    /// ```
    #[must_use]
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// `Retry-After` in whole seconds, rounded up, at least 1.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard::source::{LimitKey, SourceLimiter};
    /// # let limiter = SourceLimiter::builder().requests(4, Duration::from_secs(1)).build().unwrap();
    /// # let key = LimitKey::new("192.0.2.1".parse().unwrap());
    /// # for _ in 0..4 { limiter.admit(&key).unwrap(); }
    /// assert_eq!(limiter.admit(&key).unwrap_err().retry_after_secs(), 1); // 250 ms, rounded up
    /// ```
    #[must_use]
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }

    /// The `429` `rate-limited` problem with `Retry-After`. Both limits answer with the
    /// same problem; `Retry-After` is when this client's own budget admits a request
    /// again, so its value differs between them (a spent failure budget refills more
    /// slowly) and tells the client nothing about anyone else's.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard::source::{LimitKey, SourceLimiter};
    /// # let limiter = SourceLimiter::builder().requests(1, Duration::from_secs(1)).build().unwrap();
    /// # let key = LimitKey::new("192.0.2.1".parse().unwrap());
    /// # limiter.admit(&key).unwrap();
    /// assert_eq!(limiter.admit(&key).unwrap_err().into_problem().code(), "rate-limited");
    /// ```
    #[must_use]
    pub fn into_problem(self) -> Problem {
        RATE_LIMITED.retry_after(self.retry_after_secs())
    }
}

/// The problem answered to a refused client (429).
///
/// ```
/// use hookguard::source::RATE_LIMITED;
/// let res = RATE_LIMITED.retry_after(2).into_response();
/// assert_eq!(res.status(), 429);
/// assert_eq!(res.headers()["retry-after"], "2");
/// ```
pub const RATE_LIMITED: Problem =
    Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests");

/// Rate limits keyed by client address, with a separate budget for failed
/// verifications. Cheap to clone (clones share state); framework-free.
///
/// - Every request spends from the ordinary budget ([`requests`](SourceLimiterBuilder::requests)).
/// - Each failed verification, reported with [`record_failure`](Self::record_failure),
///   spends from the failure budget ([`failures`](SourceLimiterBuilder::failures)). While
///   an address's failure budget is empty, [`admit`](Self::admit) refuses it before
///   verification; addresses whose requests verify never touch that budget.
///
/// Memory is bounded: at most [`max_addresses`](SourceLimiterBuilder::max_addresses)
/// keys are tracked per budget; entries whose budget has refilled are dropped (every
/// [`prune_every`](SourceLimiterBuilder::prune_every), and as soon as the table is full).
/// When the ordinary budget's table is full of live entries, new addresses share one
/// overflow budget, so a flood from very many addresses is throttled as one. The failure
/// budget does not work that way: while its table is full, an address it could not take
/// in is held to no failure budget (only to the ordinary one) until entries refill and
/// make room. Every sender that verifies is such an address (it never failed, so it has
/// no entry), and judging them all by one shared failure budget would let a flood of
/// forgeries from more addresses than the table holds refuse every one of them.
///
/// The failure budget is looked at before verification and spent when one fails, so
/// requests from one address that are verified at the same time all get in: a client can
/// exceed its failure budget by as many requests as it has in flight at once (at most the
/// ordinary budget's burst), once per failure window.
///
/// Senders that share their addresses with everyone else using the same provider
/// (GitHub's, Stripe's, Shopify's published egress ranges) should be named with
/// [`shared_senders`](SourceLimiterBuilder::shared_senders): anyone can point a webhook of
/// their own account at your URL, and its deliveries, signed with a secret you do not
/// hold, would otherwise empty the failure budget of the address your genuine deliveries
/// come from.
///
/// IPv6 clients are counted per `/64` by default (one host usually owns a whole `/64`):
/// see [`ipv6_prefix`](SourceLimiterBuilder::ipv6_prefix).
///
/// ```
/// use std::time::Duration;
/// use hookguard::{clock::ManualClock, source::{LimitKey, RefusedBy, SourceLimiter}};
///
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let limiter = SourceLimiter::builder()
///     .requests(100, Duration::from_secs(1))
///     .failures(2, Duration::from_secs(60))
///     .clock(clock.clone())
///     .build()?;
/// let forger = LimitKey::new("198.51.100.66".parse()?);
/// for _ in 0..2 {
///     limiter.admit(&forger).unwrap();
///     limiter.record_failure(&forger); // the guard answered 401
/// }
/// assert_eq!(limiter.admit(&forger).unwrap_err().by(), RefusedBy::FailureBudget);
/// clock.advance(Duration::from_secs(30)); // one failure refilled
/// assert!(limiter.admit(&forger).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SourceLimiter {
    inner: Arc<LimiterInner>,
}

type Governor = RateLimiter<Probe, SharedStore, LimiterClock, NoOpMiddleware<Nanos>>;

struct LimiterInner {
    requests: Governor,
    requests_store: SharedStore,
    failures: Governor,
    failures_store: SharedStore,
    clock: LimiterClock,
    v6_prefix: u8,
    prune_every: Nanos,
    last_prune: AtomicU64,
    shared: Option<AllowList>,
}

impl fmt::Debug for SourceLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceLimiter")
            .field("tracked_requests", &self.inner.requests_store.len())
            .field("tracked_failures", &self.inner.failures_store.len())
            .field("max_addresses", &self.inner.requests_store.0.cap)
            .field("ipv6_prefix", &self.inner.v6_prefix)
            .finish_non_exhaustive()
    }
}

impl SourceLimiter {
    /// Starts a limiter. Defaults: 100 requests per 10 s per address (bursts of 100), 10
    /// failed verifications per 10 minutes, 100,000 addresses, IPv6 per `/64`, pruning
    /// every minute, a monotonic clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, source::{LimitKey, SourceLimiter}};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let limiter = SourceLimiter::builder().clock(clock.clone()).build().unwrap();
    /// let sender = LimitKey::new("198.51.100.7".parse().unwrap());
    /// for _ in 0..100 {
    ///     assert!(limiter.admit(&sender).is_ok());
    /// }
    /// let refused = limiter.admit(&sender).unwrap_err(); // the burst of 100 is spent
    /// assert!(refused.retry_after_secs() >= 1);
    /// clock.advance(Duration::from_secs(10)); // refilled
    /// assert!(limiter.admit(&sender).is_ok());
    /// ```
    pub fn builder() -> SourceLimiterBuilder {
        SourceLimiterBuilder {
            requests: (100, Duration::from_secs(10)),
            failures: (10, Duration::from_secs(600)),
            max_addresses: 100_000,
            v6_prefix: 64,
            prune_every: Duration::from_secs(60),
            clock: None,
            shared: None,
        }
    }

    /// The pre-verification check: refuses an address whose failure budget is empty
    /// (without spending from it; never one of the
    /// [`shared_senders`](SourceLimiterBuilder::shared_senders), though others in its IPv6
    /// prefix spent that budget), then spends one request from the ordinary budget.
    /// Refusals are counted in `hookguard_refused_total{by="failure-budget"|"rate-limit"}`.
    ///
    /// See the type's docs for an example.
    ///
    /// ```
    /// # use hookguard::source::{LimitKey, SourceLimiter};
    /// let limiter = SourceLimiter::builder().build().unwrap();
    /// assert!(limiter.admit(&LimitKey::new("192.0.2.1".parse().unwrap())).is_ok());
    /// ```
    ///
    /// # Errors
    /// Which limit refused, and when to retry.
    pub fn admit(&self, key: &LimitKey) -> Result<(), Refused> {
        self.maybe_prune();
        let i = &self.inner;
        let masked = key.masked(i.v6_prefix);
        let now = governor::clock::Clock::now(&i.clock);
        if let Err(not_until) = i.failures.check_key(&Probe { key: masked.clone(), dry: true })
            && !i.is_shared(key)
        {
            return Err(refuse(RefusedBy::FailureBudget, not_until.wait_time_from(now), &masked));
        }
        if let Err(not_until) = i.requests.check_key(&Probe { key: masked.clone(), dry: false }) {
            return Err(refuse(RefusedBy::RateLimit, not_until.wait_time_from(now), &masked));
        }
        Ok(())
    }

    /// Reports that a request from `key` failed verification: spends one from its
    /// failure budget (unless its address is one of the
    /// [`shared_senders`](SourceLimiterBuilder::shared_senders)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard::source::{LimitKey, SourceLimiter};
    /// let limiter = SourceLimiter::builder().failures(1, Duration::from_secs(60)).build().unwrap();
    /// let key = LimitKey::new("192.0.2.1".parse().unwrap());
    /// limiter.record_failure(&key);
    /// assert!(limiter.admit(&key).is_err());
    /// ```
    pub fn record_failure(&self, key: &LimitKey) {
        let i = &self.inner;
        if i.is_shared(key) {
            return;
        }
        let key = key.masked(i.v6_prefix);
        let _spent = i.failures.check_key(&Probe { key, dry: false });
    }

    /// Drops entries whose budgets have refilled (they are indistinguishable from new
    /// ones). Runs by itself every `prune_every` and when a table is full; call it from a
    /// timer if you prefer.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use hookguard::{clock::ManualClock, source::{LimitKey, SourceLimiter}};
    /// let clock = ManualClock::at_unix(0);
    /// let limiter = SourceLimiter::builder().requests(10, Duration::from_secs(10)).clock(clock.clone()).build().unwrap();
    /// limiter.admit(&LimitKey::new("192.0.2.1".parse().unwrap())).unwrap();
    /// assert_eq!(limiter.tracked(), 1);
    /// clock.advance(Duration::from_secs(2)); // refilled (governor keeps one interval more)
    /// limiter.prune();
    /// assert_eq!(limiter.tracked(), 0);
    /// ```
    pub fn prune(&self) {
        let i = &self.inner;
        i.requests.retain_recent();
        i.failures.retain_recent();
        i.requests_store.shrink();
        i.failures_store.shrink();
        i.last_prune.store(governor::clock::Clock::now(&i.clock).as_u64(), Ordering::Relaxed);
    }

    /// How many entries are tracked (both budgets together).
    ///
    /// ```
    /// # use hookguard::source::SourceLimiter;
    /// assert_eq!(SourceLimiter::builder().build().unwrap().tracked(), 0);
    /// ```
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.inner.requests_store.len() + self.inner.failures_store.len()
    }

    fn maybe_prune(&self) {
        let i = &self.inner;
        let now = governor::clock::Clock::now(&i.clock).as_u64();
        let last = i.last_prune.load(Ordering::Relaxed);
        let since = now.saturating_sub(last);
        let full = i.requests_store.is_full() || i.failures_store.is_full();
        let due = since >= i.prune_every.as_u64() || (full && since >= MIN_FULL_PRUNE_GAP.as_u64());
        if due && i.last_prune.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.prune();
        }
    }
}

impl LimiterInner {
    /// Whether `key` is one of the [`shared_senders`](SourceLimiterBuilder::shared_senders),
    /// by its full address: neither spends nor is refused by a failure budget. Not the
    /// clients a proxy at such an address forwarded unreadably ([`LimitKey::behind`]).
    fn is_shared(&self, key: &LimitKey) -> bool {
        !key.behind && self.shared.as_ref().is_some_and(|shared| shared.contains(key.addr))
    }
}

/// When the table is full, prune at most this often (a prune walks the whole table).
const MIN_FULL_PRUNE_GAP: Nanos = Nanos::new(1_000_000_000);

fn refuse(by: RefusedBy, retry_after: Duration, key: &LimitKey) -> Refused {
    super::count_refused(by.label());
    // What a flood sends: counted, and logged at debug only (one line per request would
    // flood the logs exactly when it happens).
    tracing::debug!(client = %key.addr, scope = key.scope_name(), by = by.label(), "request refused by rate limit");
    Refused { by, retry_after }
}

/// Builder for [`SourceLimiter`]; defaults: 100 requests per 10 s and 10 failures per
/// 10 minutes per address.
///
/// ```
/// use std::{net::Ipv4Addr, time::Duration};
/// use hookguard::{clock::ManualClock, source::{LimitKey, SourceLimiter}};
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let limiter = SourceLimiter::builder()
///     .requests(2, Duration::from_secs(60))
///     .clock(clock.clone())
///     .build()
///     .unwrap();
/// let client = LimitKey::new(Ipv4Addr::new(203, 0, 113, 7).into());
/// assert!(limiter.admit(&client).is_ok());
/// assert!(limiter.admit(&client).is_ok());
/// assert!(limiter.admit(&client).is_err(), "third request within the minute");
/// clock.advance(Duration::from_secs(30));
/// assert!(limiter.admit(&client).is_ok(), "one request back after half the period");
/// ```
#[must_use]
pub struct SourceLimiterBuilder {
    requests: (u32, Duration),
    failures: (u32, Duration),
    max_addresses: usize,
    v6_prefix: u8,
    prune_every: Duration,
    clock: Option<Arc<dyn Clock>>,
    shared: Option<AllowList>,
}

impl fmt::Debug for SourceLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceLimiterBuilder")
            .field("requests", &self.requests)
            .field("failures", &self.failures)
            .field("max_addresses", &self.max_addresses)
            .field("v6_prefix", &self.v6_prefix)
            .field("shared_senders", &self.shared)
            .finish_non_exhaustive()
    }
}

impl SourceLimiterBuilder {
    /// `n` requests per `per` for each address, in bursts of up to `n` (one refills
    /// every `per / n`). `per` may be at most [`MAX_PERIOD`] (a hundred years);
    /// [`build`](Self::build) refuses a longer one.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard::source::SourceLimiter;
    /// assert!(SourceLimiter::builder().requests(0, Duration::from_secs(1)).build().is_err());
    /// ```
    pub fn requests(mut self, n: u32, per: Duration) -> Self {
        self.requests = (n, per);
        self
    }

    /// `n` failed verifications per `per` for each address, in bursts of up to `n`; `per`
    /// at most [`MAX_PERIOD`], as for [`requests`](Self::requests).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard::source::SourceLimiter;
    /// # use hookguard::source::LimitKey;
    /// let l = SourceLimiter::builder().failures(2, Duration::from_secs(300)).build().unwrap();
    /// let sender = LimitKey::new("198.51.100.7".parse().unwrap());
    /// l.record_failure(&sender);
    /// assert!(l.admit(&sender).is_ok());
    /// l.record_failure(&sender);
    /// assert!(l.admit(&sender).is_err(), "two failed verifications: refused");
    /// ```
    pub fn failures(mut self, n: u32, per: Duration) -> Self {
        self.failures = (n, per);
        self
    }

    /// The most addresses tracked per budget (default 100,000; each costs about 64
    /// bytes). Past it, new addresses share one overflow ordinary budget; their failures
    /// are not limited until the failure table has room again (see [`SourceLimiter`]).
    ///
    /// ```
    /// # use hookguard::source::SourceLimiter;
    /// # use std::time::Duration;
    /// # use hookguard::source::LimitKey;
    /// let l = SourceLimiter::builder().max_addresses(1).requests(1, Duration::from_secs(60)).build().unwrap();
    /// let key = |ip: &str| LimitKey::new(ip.parse().unwrap());
    /// assert!(l.admit(&key("198.51.100.1")).is_ok()); // tracked alone
    /// assert!(l.admit(&key("198.51.100.2")).is_ok()); // the overflow budget
    /// assert!(l.admit(&key("198.51.100.3")).is_err(), "shares the overflow budget, spent");
    /// ```
    pub fn max_addresses(mut self, n: usize) -> Self {
        self.max_addresses = n;
        self
    }

    /// IPv6 addresses are counted per this prefix (default 64; 128 counts each
    /// address alone).
    ///
    /// ```
    /// # use hookguard::source::SourceLimiter;
    /// assert!(SourceLimiter::builder().ipv6_prefix(129).build().is_err());
    /// ```
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.v6_prefix = bits;
        self
    }

    /// How often refilled entries are dropped (default 60 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard::source::SourceLimiter;
    /// # use hookguard::{clock::ManualClock, source::LimitKey};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let l = SourceLimiter::builder().prune_every(Duration::from_secs(5)).clock(clock.clone()).build().unwrap();
    /// l.admit(&LimitKey::new("198.51.100.1".parse().unwrap())).unwrap();
    /// assert_eq!(l.tracked(), 1);
    /// clock.advance(Duration::from_secs(60)); // refilled, and time to prune
    /// l.admit(&LimitKey::new("198.51.100.2".parse().unwrap())).unwrap();
    /// assert_eq!(l.tracked(), 1, "the refilled entry was dropped");
    /// ```
    pub fn prune_every(mut self, every: Duration) -> Self {
        self.prune_every = every;
        self
    }

    /// Addresses many senders share, such as a provider's published egress ranges
    /// (often the same list as the [`AllowList`] in front): their failed verifications
    /// spend no failure budget, and no failure budget refuses them. Anyone can have GitHub
    /// or Stripe send deliveries signed with a secret you do not hold to your URL, from the
    /// very addresses your genuine deliveries come from; counting those failures would let
    /// them refuse yours. An IPv6 sender is counted per prefix
    /// ([`ipv6_prefix`](Self::ipv6_prefix)), and others in its `/64` (a cloud's
    /// neighbours) who fail verification still empty that prefix's failure budget: they
    /// are refused, the listed address is not. These addresses still spend the ordinary
    /// budget, and clients a proxy at one of them forwarded without a readable address
    /// ([`LimitKey::behind`]) are not exempt. The list is shared: ranges put in it
    /// later ([`AllowList::replace`]) count from then on.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use hookguard::source::{AllowList, LimitKey, SourceLimiter};
    /// let github: AllowList = "192.30.252.0/22".parse().unwrap();
    /// let limiter = SourceLimiter::builder()
    ///     .failures(1, Duration::from_secs(60))
    ///     .shared_senders(github)
    ///     .build()
    ///     .unwrap();
    /// let hook = LimitKey::new("192.30.252.1".parse().unwrap());
    /// limiter.record_failure(&hook); // a stranger's delivery, through GitHub
    /// assert!(limiter.admit(&hook).is_ok());
    /// let elsewhere = LimitKey::new("198.51.100.7".parse().unwrap());
    /// limiter.record_failure(&elsewhere);
    /// assert!(limiter.admit(&elsewhere).is_err());
    /// ```
    pub fn shared_senders(mut self, addresses: AllowList) -> Self {
        self.shared = Some(addresses);
        self
    }

    /// The clock budgets refill by (default: a monotonic clock). Tests pass a
    /// [`ManualClock`](crate::clock::ManualClock) and move it instead of sleeping.
    ///
    /// Keep the default in production: a wall clock that steps back is held where it was
    /// (time goes on from there), so one that later steps forward again leaves the
    /// limiter that far ahead for good, and every budget refills that much early.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard::{clock::ManualClock, source::{LimitKey, SourceLimiter}};
    /// let clock = ManualClock::at_unix(0);
    /// let l = SourceLimiter::builder().requests(1, Duration::from_secs(60)).clock(clock.clone()).build().unwrap();
    /// let sender = LimitKey::new("198.51.100.7".parse().unwrap());
    /// assert!(l.admit(&sender).is_ok());
    /// assert!(l.admit(&sender).is_err());
    /// clock.advance(Duration::from_secs(60)); // no sleep: the budget refills by this clock
    /// assert!(l.admit(&sender).is_ok());
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Builds the limiter.
    ///
    /// ```
    /// # use hookguard::source::SourceLimiter;
    /// assert!(SourceLimiter::builder().max_addresses(0).build().is_err());
    /// ```
    ///
    /// # Errors
    /// A budget of zero requests or a zero period, no room for addresses, or an IPv6
    /// prefix over 128.
    pub fn build(self) -> Result<SourceLimiter, ConfigError> {
        let requests = quota(self.requests)?;
        let failures = quota(self.failures)?;
        if self.max_addresses == 0 {
            return Err(ConfigError::Invalid("rate limit needs room for at least one address"));
        }
        if self.v6_prefix > 128 {
            return Err(ConfigError::Invalid("IPv6 prefix is longer than 128 bits"));
        }
        let prune_every =
            nanos(self.prune_every).ok_or(ConfigError::Invalid("rate limit prune interval is too long"))?;
        let clock = LimiterClock {
            source: self.clock.map(|clock| {
                // A century before now: a clock stepped back (or set back in a test)
                // still reads as a time after the origin, and is held as it was.
                let now = clock.now();
                let origin = now.checked_sub(time::Duration::days(36_500)).unwrap_or(now);
                (clock, origin)
            }),
            anchor: std::time::Instant::now(),
            steps: Arc::default(),
        };
        let requests_store = SharedStore::new(self.max_addresses);
        let failures_store = SharedStore::new(self.max_addresses);
        let start = governor::clock::Clock::now(&clock).as_u64();
        Ok(SourceLimiter {
            inner: Arc::new(LimiterInner {
                requests: RateLimiter::new(requests, requests_store.clone(), clock.clone()),
                requests_store,
                failures: RateLimiter::new(failures, failures_store.clone(), clock.clone()),
                failures_store,
                clock,
                v6_prefix: self.v6_prefix,
                prune_every,
                last_prune: AtomicU64::new(start),
                shared: self.shared,
            }),
        })
    }
}

fn quota((n, per): (u32, Duration)) -> Result<Quota, ConfigError> {
    let n = NonZeroU32::new(n).ok_or(ConfigError::Invalid("rate limit of zero requests"))?;
    // governor counts in u64 nanoseconds (about 584 years from the limiter's start) and
    // adds a period to its times unchecked: a period of at most a century leaves centuries
    // of uptime before they could overflow (its burst allowance, less than the period, too).
    if per > MAX_PERIOD {
        return Err(ConfigError::Invalid("rate limit period is too long (more than 100 years)"));
    }
    Quota::with_period(per / n.get())
        .map(|q| q.allow_burst(n))
        .ok_or(ConfigError::Invalid("rate limit period is zero"))
}

/// The longest period [`SourceLimiterBuilder::requests`] and
/// [`failures`](SourceLimiterBuilder::failures) take: a hundred years of 365 days.
///
/// ```
/// # use hookguard::source::{SourceLimiter, MAX_PERIOD};
/// # use std::time::Duration;
/// assert!(SourceLimiter::builder().requests(1, MAX_PERIOD).build().is_ok());
/// assert!(SourceLimiter::builder().requests(1, MAX_PERIOD + Duration::from_secs(1)).build().is_err());
/// ```
pub const MAX_PERIOD: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `d` as governor's nanoseconds, if it fits.
fn nanos(d: Duration) -> Option<Nanos> {
    u64::try_from(d.as_nanos()).ok().map(Nanos::new)
}

/// governor's clock over hookguard's [`Clock`] (or a monotonic one): nanoseconds since
/// the limiter was built (for an injected clock, since `origin`, a century before its
/// reading then: counted from the Unix epoch, governor's sums of its times and a long
/// period would overflow its 584 years). An injected clock never goes back here: a wall clock stepped back would otherwise leave
/// every recently seen address's budget in the future, refused (and refilling nothing)
/// until the clock caught up. A step back is added to `offset` instead, and time goes on
/// from where it was.
#[derive(Clone)]
struct LimiterClock {
    /// An injected clock, and its reading when the limiter was built.
    source: Option<(Arc<dyn Clock>, OffsetDateTime)>,
    anchor: std::time::Instant,
    steps: Arc<Mutex<Steps>>,
}

/// What [`LimiterClock`] has seen of an injected clock.
#[derive(Default)]
struct Steps {
    /// The latest time given out.
    latest: u64,
    /// How far the clock has stepped back in all, added to what it says.
    offset: u64,
}

impl governor::clock::Clock for LimiterClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        match &self.source {
            Some((clock, origin)) => {
                let nanos = (clock.now() - *origin).whole_nanoseconds();
                let raw = u64::try_from(nanos.max(0)).unwrap_or(u64::MAX);
                let mut steps = self.steps.lock().unwrap_or_else(PoisonError::into_inner);
                let now = raw.saturating_add(steps.offset);
                if now < steps.latest {
                    steps.offset = steps.offset.saturating_add(steps.latest - now);
                    return Nanos::new(steps.latest);
                }
                steps.latest = now;
                Nanos::new(now)
            }
            None => Nanos::from(self.anchor.elapsed()),
        }
    }
}

/// The key governor sees: which entry, and whether to keep the outcome (`dry` only
/// asks whether a request would be allowed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Probe {
    key: LimitKey,
    dry: bool,
}

/// A keyed state store for governor with a hard cap: governor keeps its GCRA state (one
/// "theoretical arrival time" per key) here. Keys past the cap share `overflow`.
#[derive(Clone)]
struct SharedStore(Arc<Store>);

struct Store {
    table: Mutex<Table>,
    cap: usize,
}

#[derive(Default)]
struct Table {
    map: HashMap<LimitKey, Nanos>,
    overflow: Option<Nanos>,
}

impl Table {
    fn len(&self) -> usize {
        self.map.len() + usize::from(self.overflow.is_some())
    }
}

impl SharedStore {
    fn new(cap: usize) -> Self {
        Self(Arc::new(Store { table: Mutex::new(Table::default()), cap }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_full(&self) -> bool {
        self.lock().map.len() >= self.0.cap
    }

    fn shrink(&self) {
        let mut table = self.lock();
        if table.map.capacity() > table.map.len().saturating_mul(2).max(64) {
            table.map.shrink_to_fit();
        }
    }
}

impl StateStore for SharedStore {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut table = self.lock();
        if let Some(tat) = table.map.get_mut(&probe.key) {
            let (outcome, next) = f(Some(*tat))?;
            if !probe.dry {
                *tat = next;
            }
            return Ok(outcome);
        }
        if probe.dry {
            // A look at the failure budget of an address that has no entry: it failed
            // nothing lately, or failed while the table was full (its failures then went
            // to the overflow, which judges no one: judging by it every address that
            // never failed would let a flood of failures from many addresses refuse them
            // all). Either way, its budget is whole.
            return f(None).map(|(outcome, _)| outcome);
        }
        if table.map.len() < self.0.cap {
            let (outcome, next) = f(None)?;
            if !probe.dry {
                table.map.insert(probe.key.clone(), next);
            }
            return Ok(outcome);
        }
        let (outcome, next) = f(table.overflow)?;
        if !probe.dry {
            table.overflow = Some(next);
        }
        Ok(outcome)
    }
}

impl ShrinkableKeyedStateStore<Probe> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let mut table = self.lock();
        table.map.retain(|_, tat| *tat > drop_below);
        if table.overflow.is_some_and(|tat| tat <= drop_below) {
            table.overflow = None;
        }
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn is_empty(&self) -> bool {
        self.lock().len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn key(s: &str) -> LimitKey {
        LimitKey::new(s.parse().unwrap())
    }

    /// A wall clock stepped back (NTP) does not refuse the addresses seen just before.
    #[test]
    fn a_clock_stepped_back_refuses_nobody() {
        let clock = ManualClock::at_unix(1_000_000);
        let l = SourceLimiter::builder()
            .requests(100, Duration::from_secs(10))
            .failures(2, Duration::from_secs(600))
            .clock(clock.clone())
            .build()
            .unwrap();
        let k = key("192.0.2.1");
        assert!(l.admit(&k).is_ok());
        l.record_failure(&k);
        clock.set_unix(1_000_000 - 60);
        assert!(l.admit(&k).is_ok(), "the ordinary budget is as it was");
        l.record_failure(&k);
        assert_eq!(l.admit(&k).unwrap_err().by(), RefusedBy::FailureBudget, "two failures, as before");
        clock.set_unix(1_000_000 - 60 + 300);
        assert!(l.admit(&k).is_ok(), "a failure refilled after 300 s of the clock's time");

        // Budgets go on refilling after the step, not only once the clock catches up.
        let clock = ManualClock::at_unix(1_000_000);
        let l = SourceLimiter::builder()
            .requests(10, Duration::from_secs(10))
            .clock(clock.clone())
            .build()
            .unwrap();
        for _ in 0..10 {
            assert!(l.admit(&k).is_ok());
        }
        assert!(l.admit(&k).is_err(), "the burst is spent");
        clock.set_unix(1_000_000 - 60);
        // Any request after the step (here another address's) sees it: from then on the
        // limiter's time moves with the clock again.
        assert!(l.admit(&key("192.0.2.99")).is_ok());
        clock.advance(Duration::from_secs(20));
        for n in 0..10 {
            assert!(l.admit(&k).is_ok(), "request {n}: 20 s refilled the burst, stepped back or not");
        }
    }

    /// Refusals (rate limit, allow-list) are what a flood sends: counted, and not logged
    /// at `info`, where a line per request would flood the logs.
    #[tokio::test]
    async fn refusals_are_not_logged_at_info() {
        let l = SourceLimiter::builder()
            .requests(1, Duration::from_secs(10))
            .clock(ManualClock::at_unix(1_000_000))
            .build()
            .unwrap();
        let k = key("192.0.2.1");
        let list: crate::source::AllowList = "198.51.100.0/24".parse().unwrap();
        let (refused, logs) = crate::inbox::logged(async {
            let _ = l.admit(&k);
            (l.admit(&k).is_err(), list.admit(Some("192.0.2.1".parse().unwrap())).is_err())
        })
        .await;
        assert_eq!(refused, (true, true));
        assert!(logs.is_empty(), "{logs}");
    }

    /// Periods past governor's range (u64 nanoseconds) are refused when built, not a panic.
    #[test]
    fn periods_too_long_are_errors() {
        let long = Duration::from_secs(u64::MAX);
        assert!(SourceLimiter::builder().requests(1, long).build().is_err());
        assert!(SourceLimiter::builder().requests(3, Duration::from_secs(50_000_000_000)).build().is_err());
        assert!(SourceLimiter::builder().failures(10, long).build().is_err());
        assert!(SourceLimiter::builder().prune_every(Duration::MAX).build().is_err());
        let centuries = MAX_PERIOD + Duration::from_secs(1);
        assert!(SourceLimiter::builder().requests(1, centuries).build().is_err());
        assert!(SourceLimiter::builder().failures(1, centuries).build().is_err());
        let l =
            SourceLimiter::builder().requests(u32::MAX, MAX_PERIOD).failures(2, MAX_PERIOD).build().unwrap();
        let k = key("192.0.2.1");
        l.record_failure(&k);
        l.record_failure(&k);
        assert_eq!(l.admit(&k).unwrap_err().by(), RefusedBy::FailureBudget);
    }

    /// An injected clock far in the future (the year 3000: past 2554, nanoseconds since
    /// 1970 no longer fit governor's `u64`, and its sums overflowed before): the limit
    /// holds, and refills after its period.
    #[test]
    fn an_injected_clock_in_the_year_3000_keeps_the_limit() {
        use std::sync::atomic::{AtomicI64, Ordering};
        #[derive(Debug, Clone)]
        struct Year3000(Arc<AtomicI64>);
        impl Clock for Year3000 {
            fn now(&self) -> OffsetDateTime {
                // 3000-01-01T00:00:00Z, plus the seconds set.
                OffsetDateTime::from_unix_timestamp(32_503_680_000 + self.0.load(Ordering::SeqCst)).unwrap()
            }
        }
        let clock = Year3000(Arc::default());
        let l = SourceLimiter::builder()
            .requests(1, Duration::from_secs(3600))
            .clock(clock.clone())
            .build()
            .unwrap();
        let k = key("192.0.2.1");
        l.admit(&k).unwrap();
        let refused = l.admit(&k).unwrap_err();
        assert_eq!(refused.by(), RefusedBy::RateLimit);
        assert_eq!(refused.retry_after(), Duration::from_secs(3600));
        clock.0.store(1800, Ordering::SeqCst);
        assert_eq!(l.admit(&k).unwrap_err().retry_after(), Duration::from_secs(1800));
        clock.0.store(3600, Ordering::SeqCst);
        l.admit(&k).unwrap();
    }

    /// The longest period, with an injected clock in this century (governor's times are
    /// counted from the limiter's start, not from 1970) and one near the calendar's end:
    /// the second request is refused for about the whole period, and no sum overflows
    /// (a panic in a debug build, a wrong `Retry-After` in a release build).
    #[test]
    fn the_longest_period_refuses_for_the_period_whatever_the_clock() {
        // 2023 and 2150 (a `ManualClock` reads up to 2262).
        for unix in [1_700_000_000, 5_680_281_600] {
            let clock = ManualClock::at_unix(unix);
            let l = SourceLimiter::builder()
                .requests(1, MAX_PERIOD)
                .failures(1, MAX_PERIOD)
                .clock(clock.clone())
                .build()
                .unwrap();
            let k = key("192.0.2.1");
            l.admit(&k).unwrap();
            let refused = l.admit(&k).unwrap_err();
            assert_eq!(refused.by(), RefusedBy::RateLimit, "{unix}");
            assert!(refused.retry_after() > MAX_PERIOD - Duration::from_secs(86_400), "{unix}");
            clock.advance(Duration::from_secs(50 * 365 * 86_400));
            let refused = l.admit(&k).unwrap_err();
            assert!(refused.retry_after() > Duration::from_secs(49 * 365 * 86_400), "{unix}");
            clock.advance(Duration::from_secs(50 * 365 * 86_400 + 1));
            l.admit(&k).unwrap();
        }
    }

    /// Failures from shared senders' addresses spend nothing; the ordinary budget still
    /// counts them; the list's later ranges count from then on.
    #[test]
    fn shared_senders_spend_no_failure_budget() {
        let shared: AllowList = "192.30.252.0/22".parse().unwrap();
        let l = SourceLimiter::builder()
            .requests(3, Duration::from_secs(60))
            .failures(1, Duration::from_secs(60))
            .shared_senders(shared.clone())
            .build()
            .unwrap();
        let hook = key("::ffff:192.30.252.9");
        for _ in 0..3 {
            l.record_failure(&hook);
            assert!(l.admit(&hook).is_ok());
        }
        assert_eq!(l.admit(&hook).unwrap_err().by(), RefusedBy::RateLimit);
        let other = key("198.51.100.7");
        l.record_failure(&other);
        assert_eq!(l.admit(&other).unwrap_err().by(), RefusedBy::FailureBudget);
        shared.replace(["203.0.113.0/24".parse().unwrap()]);
        let added = key("203.0.113.4");
        l.record_failure(&added);
        assert!(l.admit(&added).is_ok());
    }

    /// A shared sender's IPv6 address shares its `/64` (the failure budget's key) with
    /// others: their forgeries empty that budget and refuse them, never the listed sender;
    /// clients its proxy forwarded unreadably are not exempt.
    #[test]
    fn a_shared_sender_is_not_refused_for_its_prefixs_failures() {
        let shared: AllowList = "2001:db8:1:2::10/128".parse().unwrap();
        let l = SourceLimiter::builder()
            .failures(2, Duration::from_secs(600))
            .shared_senders(shared)
            .clock(ManualClock::at_unix(1_000_000))
            .build()
            .unwrap();
        let provider = key("2001:db8:1:2::10");
        let neighbour = key("2001:db8:1:2::66");
        for _ in 0..2 {
            assert!(l.admit(&neighbour).is_ok());
            l.record_failure(&neighbour);
        }
        assert_eq!(l.admit(&neighbour).unwrap_err().by(), RefusedBy::FailureBudget);
        assert_eq!(l.admit(&key("2001:db8:1:2::67")).unwrap_err().by(), RefusedBy::FailureBudget);
        for n in 0..5 {
            assert!(l.admit(&provider).is_ok(), "request {n}: the shared sender is let in");
            l.record_failure(&provider);
        }
        assert_eq!(l.admit(&neighbour).unwrap_err().by(), RefusedBy::FailureBudget, "still refused");

        let forwarded = LimitKey::behind("2001:db8:1:2::10".parse().unwrap());
        for _ in 0..2 {
            assert!(l.admit(&forwarded).is_ok());
            l.record_failure(&forwarded);
        }
        assert_eq!(l.admit(&forwarded).unwrap_err().by(), RefusedBy::FailureBudget, "behind: not exempt");
        assert!(l.admit(&provider).is_ok());
    }

    #[test]
    fn ordinary_limit_refills() {
        let clock = ManualClock::at_unix(1_000);
        let l = SourceLimiter::builder()
            .requests(3, Duration::from_secs(3))
            .clock(clock.clone())
            .build()
            .unwrap();
        let k = key("192.0.2.1");
        for n in 0..3 {
            assert!(l.admit(&k).is_ok(), "request {n}");
        }
        let refused = l.admit(&k).unwrap_err();
        assert_eq!(refused.by(), RefusedBy::RateLimit);
        assert_eq!(refused.retry_after(), Duration::from_secs(1));
        assert!(l.admit(&key("192.0.2.2")).is_ok(), "other address unaffected");
        clock.advance(Duration::from_secs(1));
        assert!(l.admit(&k).is_ok());
        assert!(l.admit(&k).is_err());
    }

    #[test]
    fn scopes_are_separate() {
        let l = SourceLimiter::builder().requests(1, Duration::from_secs(60)).build().unwrap();
        let k = key("192.0.2.1");
        assert!(l.admit(&k.clone().scope("a")).is_ok());
        assert!(l.admit(&k.clone().scope("b")).is_ok());
        assert!(l.admit(&k.scope("a")).is_err());
    }

    #[test]
    fn failure_budget_is_not_spent_by_admit() {
        let clock = ManualClock::at_unix(0);
        let l = SourceLimiter::builder()
            .requests(1000, Duration::from_secs(1))
            .failures(2, Duration::from_secs(60))
            .clock(clock.clone())
            .build()
            .unwrap();
        let k = key("192.0.2.1");
        for _ in 0..50 {
            assert!(l.admit(&k).is_ok(), "verified requests never spend the failure budget");
        }
        l.record_failure(&k);
        assert!(l.admit(&k).is_ok());
        l.record_failure(&k);
        let refused = l.admit(&k).unwrap_err();
        assert_eq!(refused.by(), RefusedBy::FailureBudget);
        assert_eq!(refused.retry_after_secs(), 30);
        clock.advance(Duration::from_secs(29));
        assert!(l.admit(&k).is_err());
        clock.advance(Duration::from_secs(1));
        assert!(l.admit(&k).is_ok());
    }

    #[test]
    fn ipv6_counted_per_prefix() {
        let l = SourceLimiter::builder().requests(1, Duration::from_secs(60)).build().unwrap();
        assert!(l.admit(&key("2001:db8:1:2::1")).is_ok());
        assert!(l.admit(&key("2001:db8:1:2::ffff")).is_err(), "same /64");
        assert!(l.admit(&key("2001:db8:1:3::1")).is_ok(), "other /64");
        let each =
            SourceLimiter::builder().requests(1, Duration::from_secs(60)).ipv6_prefix(128).build().unwrap();
        assert!(each.admit(&key("2001:db8::1")).is_ok());
        assert!(each.admit(&key("2001:db8::2")).is_ok());
        let all =
            SourceLimiter::builder().requests(1, Duration::from_secs(60)).ipv6_prefix(0).build().unwrap();
        assert!(all.admit(&key("2001:db8::1")).is_ok());
        assert!(all.admit(&key("2002::2")).is_err());
    }

    #[test]
    fn memory_stays_bounded_under_100k_addresses() {
        let clock = ManualClock::at_unix(1_000_000);
        let cap = 10_000;
        let l = SourceLimiter::builder()
            .requests(5, Duration::from_secs(5))
            .max_addresses(cap)
            .clock(clock.clone())
            .build()
            .unwrap();
        for n in 0u32..100_000 {
            let k = LimitKey::new(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n)));
            let _ = l.admit(&k);
            l.record_failure(&k);
            assert!(l.inner.requests_store.lock().map.len() <= cap, "requests table over cap at {n}");
            assert!(l.inner.failures_store.lock().map.len() <= cap, "failures table over cap at {n}");
            if n % 1_000 == 0 {
                clock.advance(Duration::from_millis(1));
            }
        }
        assert!(l.tracked() <= 2 * (cap + 1));
        // Once budgets have refilled, entries go.
        clock.advance(Duration::from_secs(600));
        let _ = l.admit(&key("192.0.2.1"));
        assert!(l.tracked() <= 2, "tracked after expiry: {}", l.tracked());
    }

    #[test]
    fn refusals_are_counted_by_limit() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let l = SourceLimiter::builder()
                .requests(1, Duration::from_secs(60))
                .failures(1, Duration::from_secs(60))
                .build()
                .unwrap();
            let (a, b) = (key("192.0.2.1"), key("192.0.2.2"));
            let _ = l.admit(&a);
            let _ = l.admit(&a);
            l.record_failure(&b);
            let _ = l.admit(&b);
        });
        let refused = super::super::tests::refused(&snapshotter);
        assert_eq!(refused.get("rate-limit"), Some(&1));
        assert_eq!(refused.get("failure-budget"), Some(&1));
    }

    #[test]
    fn overflow_addresses_share_one_budget() {
        let l =
            SourceLimiter::builder().requests(1, Duration::from_secs(60)).max_addresses(2).build().unwrap();
        assert!(l.admit(&key("192.0.2.1")).is_ok());
        assert!(l.admit(&key("192.0.2.2")).is_ok());
        assert!(l.admit(&key("192.0.2.3")).is_ok(), "first overflow address");
        assert_eq!(
            l.admit(&key("192.0.2.4")).unwrap_err().by(),
            RefusedBy::RateLimit,
            "shares the overflow budget"
        );
        assert!(l.admit(&key("192.0.2.1")).is_err(), "tracked addresses keep their own");
        assert_eq!(l.inner.requests_store.lock().map.len(), 2);
    }

    /// Failures from more addresses than the table holds spend the overflow's failure
    /// budget, but an address that failed nothing is not refused by it: a flood of
    /// forgeries from many addresses must not lock out every sender that verifies.
    #[test]
    fn a_full_failure_table_refuses_no_address_that_never_failed() {
        let clock = ManualClock::at_unix(0);
        let l = SourceLimiter::builder()
            .failures(1, Duration::from_secs(60))
            .max_addresses(2)
            .clock(clock.clone())
            .build()
            .unwrap();
        for a in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"] {
            l.record_failure(&key(a));
        }
        assert!(l.admit(&key("203.0.113.9")).is_ok(), "never failed: admitted");
        assert_eq!(
            l.admit(&key("192.0.2.1")).unwrap_err().by(),
            RefusedBy::FailureBudget,
            "tracked and spent"
        );
        // As the docs say: an address that failed while the table was full is held to
        // no failure budget until the table has room for it.
        assert!(l.admit(&key("192.0.2.3")).is_ok(), "failed past the cap: not refused");
        clock.advance(Duration::from_secs(121)); // refilled (governor keeps one interval more)
        l.prune();
        l.record_failure(&key("192.0.2.3"));
        assert_eq!(
            l.admit(&key("192.0.2.3")).unwrap_err().by(),
            RefusedBy::FailureBudget,
            "room again: an entry of its own"
        );
    }
}
