//! Source controls, framework-free: who is calling ([`TrustedProxies`], [`PeerAddr`]),
//! whether they may ([`AllowList`]), and how often ([`SourceLimiter`]).
//!
//! The Tower layers ([`AllowListLayer`](crate::layer::AllowListLayer),
//! [`RateLimitLayer`](crate::layer::RateLimitLayer)) are thin wrappers over these; other
//! adapters call the same pieces in the same order:
//!
//! 1. `client = proxies.client_addr(peer_ip, &headers)` ([`TrustedProxies::client_addr`]);
//! 2. `allow_list.admit(client)?` ([`AllowList::admit`]) → `403 source-not-allowed`;
//! 3. `limiter.admit(&LimitKey::new(ip))?` ([`SourceLimiter::admit`]) → `429
//!    rate-limited` with `Retry-After` ([`Refused::into_problem`]);
//! 4. verify (the [`Guard`](crate::guard::Guard));
//! 5. if the answer carries a [`VerificationFailed`](crate::guard::VerificationFailed)
//!    extension, `limiter.record_failure(&key)` ([`SourceLimiter::record_failure`]).
//!
//! Refusals are counted in `hookguard_refused_total{by="allow-list"|"rate-limit"|"failure-budget"}`.
//!
//! ```
//! use std::time::Duration;
//! use hookguard::source::{AllowList, LimitKey, SourceLimiter, TrustedProxies};
//!
//! let proxies = TrustedProxies::new(["10.0.0.0/8".parse()?]);
//! let allow: AllowList = "192.30.252.0/22\n140.82.112.0/20".parse()?;
//! let limiter = SourceLimiter::builder().requests(100, Duration::from_secs(10)).build()?;
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert("x-forwarded-for", "140.82.115.1".parse()?);
//! let client = proxies.client_addr("10.0.0.2".parse()?, &headers);
//! assert!(allow.admit(client).is_ok()); // Err(problem) → answer problem.into_response()
//! let key = LimitKey::new(client.unwrap()).scope("github");
//! assert!(limiter.admit(&key).is_ok());
//! // … verify; on a verification failure: limiter.record_failure(&key);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod addr;
mod allow;
mod limit;

/// CIDR ranges, as [`AllowList`] and [`TrustedProxies`] take them (the `ipnet` crate's).
pub use ipnet::IpNet;

pub use addr::{ClientAddr, ForwardedHeader, PeerAddr, TrustedProxies};
pub use allow::{AllowList, AllowListError, SOURCE_NOT_ALLOWED};
pub use limit::{LimitKey, RATE_LIMITED, Refused, RefusedBy, SourceLimiter, SourceLimiterBuilder};

fn count_refused(by: &'static str) {
    metrics::counter!("hookguard_refused_total", "by" => by).increment(1);
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use metrics_util::debugging::{DebugValue, Snapshotter};

    /// `hookguard_refused_total` by its `by` label (one snapshot: taking one resets the
    /// debugging recorder's counters).
    pub(crate) fn refused(snapshotter: &Snapshotter) -> HashMap<String, u64> {
        let mut counts = HashMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            if key.key().name() != "hookguard_refused_total" {
                continue;
            }
            if let (Some(by), DebugValue::Counter(n)) = (key.key().labels().find(|l| l.key() == "by"), value)
            {
                *counts.entry(by.value().to_owned()).or_default() += n;
            }
        }
        counts
    }
}
