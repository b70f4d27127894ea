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
pub use limit::{
    LimitKey, MAX_PERIOD, RATE_LIMITED, Refused, RefusedBy, SourceLimiter, SourceLimiterBuilder,
};

/// `range` as client addresses are matched against it: host bits cleared, and an
/// IPv4-mapped IPv6 range (inside `::ffff:0:0/96`: `::ffff:10.0.0.0/104`, or a single
/// `::ffff:192.0.2.1`) turned into the IPv4 range it maps (`10.0.0.0/8`, `192.0.2.1/32`).
/// Client addresses are matched in canonical form (an IPv4-mapped one as IPv4), so a range
/// left in mapped form would never match. A wider IPv6 range that holds all of
/// `::ffff:0:0/96` (`::/0`) stays IPv6-only: IPv4 clients need an IPv4 range.
fn canonical_range(range: IpNet) -> IpNet {
    if let IpNet::V6(v6) = range
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Some(prefix) = v6.prefix_len().checked_sub(96)
        && let Ok(net) = ipnet::Ipv4Net::new(v4, prefix)
    {
        return IpNet::V4(net.trunc());
    }
    range.trunc()
}

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
