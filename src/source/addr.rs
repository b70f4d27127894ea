//! Who is calling: the peer address of the connection, and the client address behind
//! trusted proxies.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
    sync::Arc,
};

use http::{Extensions, HeaderMap, HeaderName, header};
use ipnet::IpNet;

/// The address of the connection's other end, put in the request's extensions by the
/// server for the source-control layers to read.
///
/// axum users need not set it: serve with
/// `into_make_service_with_connect_info::<SocketAddr>()` and the layers read axum's
/// `ConnectInfo<SocketAddr>`. With plain hyper, insert it per connection:
///
/// ```
/// use std::net::SocketAddr;
/// use hookguard::source::PeerAddr;
///
/// let remote: SocketAddr = "192.0.2.7:40000".parse().unwrap(); // from `listener.accept()`
/// let mut req = http::Request::post("/hooks").body(()).unwrap();
/// req.extensions_mut().insert(PeerAddr(remote));
/// assert_eq!(PeerAddr::from_extensions(req.extensions()), Some(remote.ip()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

impl PeerAddr {
    /// The peer IP in `extensions`: a [`PeerAddr`], else (with the `axum` feature) axum's
    /// `ConnectInfo<SocketAddr>`. IPv4-mapped IPv6 addresses are given as IPv4.
    ///
    /// ```
    /// use hookguard::source::PeerAddr;
    /// assert_eq!(PeerAddr::from_extensions(&http::Extensions::new()), None);
    /// ```
    #[must_use]
    pub fn from_extensions(extensions: &Extensions) -> Option<IpAddr> {
        if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
            return Some(addr.ip().to_canonical());
        }
        #[cfg(feature = "axum")]
        if let Some(axum::extract::ConnectInfo(addr)) =
            extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(addr.ip().to_canonical());
        }
        None
    }
}

/// The client address a source-control layer settled on, put in the request's
/// extensions so later layers and handlers reuse it.
///
/// ```
/// use hookguard::source::ClientAddr;
/// let mut ext = http::Extensions::new();
/// ext.insert(ClientAddr("203.0.113.9".parse().unwrap()));
/// assert_eq!(ext.get::<ClientAddr>().unwrap().0.to_string(), "203.0.113.9");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// Which header the trusted proxies append the client address to.
///
/// Only the configured one is read: a proxy that writes `X-Forwarded-For` usually passes
/// a client's own `Forwarded` header through untouched, so reading both would let the
/// client choose.
///
/// ```
/// use hookguard::source::{ForwardedHeader, TrustedProxies};
/// let proxies = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]).header(ForwardedHeader::Forwarded);
/// let mut headers = http::HeaderMap::new();
/// headers.insert("forwarded", "for=198.51.100.7".parse().unwrap());
/// headers.insert("x-forwarded-for", "192.0.2.66".parse().unwrap()); // not read
/// let client = proxies.client_addr("10.0.0.1".parse().unwrap(), &headers);
/// assert_eq!(client, Some("198.51.100.7".parse().unwrap()));
/// assert_eq!(ForwardedHeader::from_name("X-Forwarded-For"), Some(ForwardedHeader::XForwardedFor));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header by name, case-insensitive: `x-forwarded-for` or `forwarded` (for
    /// configuration files).
    ///
    /// ```
    /// use hookguard::source::ForwardedHeader;
    /// assert_eq!(ForwardedHeader::from_name("Forwarded"), Some(ForwardedHeader::Forwarded));
    /// assert_eq!(ForwardedHeader::from_name("x-real-ip"), None);
    /// ```
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            Some(Self::XForwardedFor)
        } else if name.eq_ignore_ascii_case("forwarded") {
            Some(Self::Forwarded)
        } else {
            None
        }
    }
}

/// The proxies whose forwarding headers are believed, and how the client address is
/// found behind them.
///
/// The client address is the connection's peer unless the peer is a trusted proxy. Then
/// the forwarding header is read from the right (the hop the trusted proxy itself
/// appended) towards the left, skipping trusted proxies; the first untrusted hop is the
/// client. Values further left were written by the client and are never used.
///
/// ```
/// use hookguard::source::TrustedProxies;
///
/// let proxies = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
/// let mut headers = http::HeaderMap::new();
/// // The client forged "1.2.3.4"; the proxy appended the address it saw.
/// headers.insert("x-forwarded-for", "1.2.3.4, 198.51.100.7".parse().unwrap());
/// let via_proxy = proxies.client_addr("10.0.0.2".parse().unwrap(), &headers);
/// assert_eq!(via_proxy, Some("198.51.100.7".parse().unwrap()));
/// // Straight from an untrusted peer: the header is ignored.
/// let direct = proxies.client_addr("203.0.113.5".parse().unwrap(), &headers);
/// assert_eq!(direct, Some("203.0.113.5".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    ranges: Arc<[IpNet]>,
    header: ForwardedHeader,
}

/// At most this many forwarding hops are looked at: an `X-Forwarded-For` walk that
/// reaches one more, or `Forwarded` headers with more elements in all, leave the client
/// unknown.
const MAX_HOPS: usize = 32;

impl TrustedProxies {
    /// No trusted proxies: the client address is always the peer's.
    ///
    /// ```
    /// use hookguard::source::TrustedProxies;
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
    /// assert_eq!(TrustedProxies::none().client_addr("::1".parse().unwrap(), &headers), Some("::1".parse().unwrap()));
    /// ```
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts peers in `ranges` (`X-Forwarded-For` unless [`header`](Self::header) says
    /// otherwise). As in [`AllowList::new`](super::AllowList::new), an IPv4-mapped IPv6
    /// range is the IPv4 range it maps (a dual-stack listener shows IPv4 proxies as
    /// `::ffff:10.0.0.2`; either spelling trusts them).
    ///
    /// ```
    /// use hookguard::source::TrustedProxies;
    /// let proxies = TrustedProxies::new(["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()]);
    /// assert!(proxies.is_trusted("127.0.0.1".parse().unwrap()));
    /// let mapped = TrustedProxies::new(["::ffff:10.0.0.0/104".parse().unwrap()]);
    /// assert!(mapped.is_trusted("::ffff:10.0.0.2".parse().unwrap()));
    /// assert!(mapped.is_trusted("10.0.0.2".parse().unwrap()));
    /// ```
    #[must_use]
    pub fn new(ranges: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            ranges: ranges.into_iter().map(super::canonical_range).collect(),
            header: ForwardedHeader::default(),
        }
    }

    /// The header the proxies write.
    ///
    /// ```
    /// use hookguard::source::{ForwardedHeader, TrustedProxies};
    /// let p = TrustedProxies::new(["10.0.0.1/32".parse().unwrap()]).header(ForwardedHeader::Forwarded);
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("forwarded", r#"for="[2001:db8::7]:4711";proto=https"#.parse().unwrap());
    /// assert_eq!(p.client_addr("10.0.0.1".parse().unwrap(), &headers), Some("2001:db8::7".parse().unwrap()));
    /// ```
    #[must_use]
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Whether these proxies find the same client as `other` for every request (`None`:
    /// no proxies): the same ranges in the same order and, when there are any, the same
    /// header.
    pub(crate) fn same_as(&self, other: Option<&Self>) -> bool {
        match other {
            None => self.ranges.is_empty(),
            Some(other) if self.ranges.is_empty() => other.ranges.is_empty(),
            Some(other) => {
                (Arc::ptr_eq(&self.ranges, &other.ranges) || self.ranges == other.ranges)
                    && self.header == other.header
            }
        }
    }

    /// Whether `ip` is a trusted proxy.
    ///
    /// ```
    /// use hookguard::source::TrustedProxies;
    /// assert!(!TrustedProxies::none().is_trusted("127.0.0.1".parse().unwrap()));
    /// ```
    #[must_use]
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.ranges.iter().any(|n| n.contains(&ip))
    }

    /// The client address for a request from `peer` with `headers`, or `None` when a
    /// trusted proxy sent a hop that is not an IP address (`unknown`, an obfuscated
    /// identifier, garbage) or too many hops: the client cannot be known.
    /// `X-Forwarded-For` is read from the right as far as the first untrusted hop, so
    /// what a client wrote to the left of it is never read; the walk looks at 32 hops
    /// at most, so a client behind more than 31 trusted hops (the walk reaching a 33rd)
    /// is `None`. `Forwarded` must be read whole (its quotes can hide a separator), so a
    /// line that does not parse is `None`, and so are headers holding more than 32
    /// elements in all, trusted or not, wherever the client is among them. A `Forwarded`
    /// node's port, numeric or obfuscated (`for="192.0.2.43:_abc"`, RFC 7239), is left
    /// out.
    ///
    /// A trusted peer without the header is itself the client (health checks). When
    /// every hop is trusted, the leftmost one is the client.
    ///
    /// ```
    /// use hookguard::source::TrustedProxies;
    /// let p = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-forwarded-for", "unknown".parse().unwrap());
    /// assert_eq!(p.client_addr("10.1.1.1".parse().unwrap(), &headers), None);
    /// ```
    #[must_use]
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let (name, parse): (HeaderName, fn(&str) -> Option<IpAddr>) = match self.header {
            ForwardedHeader::XForwardedFor => return self.walk_x_forwarded_for(peer, headers),
            ForwardedHeader::Forwarded => (header::FORWARDED, parse_forwarded_element),
        };
        let mut hops: Vec<&str> = Vec::new();
        for value in headers.get_all(&name) {
            let value = value.to_str().ok()?;
            for hop in split_outside_quotes(value, ',')? {
                if hops.len() == MAX_HOPS {
                    return None;
                }
                hops.push(hop);
            }
        }
        let mut client = peer;
        for hop in hops.iter().rev() {
            client = parse(hop.trim())?.to_canonical();
            if !self.is_trusted(client) {
                return Some(client);
            }
        }
        Some(client)
    }
}

impl TrustedProxies {
    /// [`client_addr`](Self::client_addr) for `X-Forwarded-For`, read from the right: only
    /// the hops it reaches (those the trusted proxies wrote, and the first one they did
    /// not) must be addresses. What the client wrote to the left of them, however
    /// malformed (not ASCII, `unknown`, a stray quote, which means nothing in this
    /// header), is never read, so a client cannot make itself unresolved by it.
    fn walk_x_forwarded_for(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer;
        let mut walked = 0;
        for line in headers.get_all(HeaderName::from_static("x-forwarded-for")).iter().rev() {
            for hop in line.as_bytes().rsplit(|&b| b == b',') {
                let hop = std::str::from_utf8(hop).ok()?.trim();
                if hop.is_empty() {
                    continue;
                }
                walked += 1;
                if walked > MAX_HOPS {
                    return None;
                }
                client = parse_node(hop)?.to_canonical();
                if !self.is_trusted(client) {
                    return Some(client);
                }
            }
        }
        Some(client)
    }
}

/// Parses trusted proxy ranges in [`AllowList::parse_ranges`](super::AllowList::parse_ranges)'s
/// format (`X-Forwarded-For`; set [`header`](TrustedProxies::header) after).
///
/// ```
/// use hookguard::source::TrustedProxies;
/// let proxies: TrustedProxies = "10.0.0.0/8, fd00::/8".parse()?;
/// assert!(proxies.is_trusted("fd00::1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl FromStr for TrustedProxies {
    type Err = super::AllowListError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        super::AllowList::parse_ranges(s).map(Self::new)
    }
}

/// Splits on `sep` outside quoted strings, leaving out empty parts; `None` when a quote
/// is left open. A client can send an open quote to a proxy that appends its own hop to
/// the same line: the proxy's separator would then count as quoted, and the client's
/// hop would be read as the proxy's.
fn split_outside_quotes(value: &str, sep: char) -> Option<Vec<&str>> {
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut parts = Vec::new();
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(value.get(start..i).unwrap_or(""));
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted || escaped {
        return None;
    }
    parts.push(value.get(start..).unwrap_or(""));
    parts.retain(|p| !p.trim().is_empty());
    Some(parts)
}

/// One `Forwarded` element (`for=…;proto=…;by=…`): its one `for` node. `None` when the
/// element cannot be read for sure: a pair without `=`, no `for`, or two of them.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let mut node = None;
    for pair in split_outside_quotes(element, ';')? {
        let (k, v) = pair.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("for") {
            if node.is_some() {
                return None;
            }
            node = Some(v.trim());
        }
    }
    let value = node?;
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => value,
    };
    match strip_obfuscated_port(value.trim()) {
        // RFC 7239 gives a port to an IPv4 address or a bracketed IPv6 one only.
        Some(host) => match host.strip_prefix('[') {
            Some(v6) => v6.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
            None => host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
        },
        None => parse_node(value),
    }
}

/// The node without its obfuscated port (RFC 7239 `obfport`: `_` then one or more of
/// ALPHA, DIGIT, `.`, `_`, `-`), if it ends in one: `192.0.2.43:_abc` → `192.0.2.43`,
/// `[2001:db8::1]:_p` → `[2001:db8::1]`.
fn strip_obfuscated_port(node: &str) -> Option<&str> {
    let (host, port) = node.rsplit_once(':')?;
    let obfuscated = port.strip_prefix('_')?;
    let valid = !obfuscated.is_empty()
        && obfuscated.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    valid.then_some(host)
}

/// An address, with or without a port: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = node.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    let inner = node.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    /// (name, proxies, peer, header, values, expected client)
    type Row<'a> = (&'a str, &'a TrustedProxies, &'a str, &'a str, &'a [&'a str], Option<&'a str>);

    #[test]
    fn client_addr_table() {
        let proxies = TrustedProxies::new(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        let fwd = proxies.clone().header(ForwardedHeader::Forwarded);
        let rows: &[Row<'_>] = &[
            (
                "untrusted peer, header ignored",
                &proxies,
                "203.0.113.1",
                "x-forwarded-for",
                &["1.2.3.4"],
                Some("203.0.113.1"),
            ),
            ("one proxy", &proxies, "10.0.0.1", "x-forwarded-for", &["198.51.100.2"], Some("198.51.100.2")),
            (
                "one proxy, forged left",
                &proxies,
                "10.0.0.1",
                "x-forwarded-for",
                &["1.2.3.4, 198.51.100.2"],
                Some("198.51.100.2"),
            ),
            (
                "two proxies",
                &proxies,
                "10.0.0.1",
                "x-forwarded-for",
                &["1.2.3.4, 198.51.100.2, 10.0.0.9"],
                Some("198.51.100.2"),
            ),
            (
                "two header lines",
                &proxies,
                "10.0.0.1",
                "x-forwarded-for",
                &["1.2.3.4", "198.51.100.2, 10.0.0.9"],
                Some("198.51.100.2"),
            ),
            ("trusted peer, no header", &proxies, "10.0.0.1", "x-forwarded-for", &[], Some("10.0.0.1")),
            (
                "all trusted",
                &proxies,
                "10.0.0.1",
                "x-forwarded-for",
                &["10.0.0.3, 10.0.0.9"],
                Some("10.0.0.3"),
            ),
            (
                "port on v4",
                &proxies,
                "10.0.0.1",
                "x-forwarded-for",
                &["198.51.100.2:5000"],
                Some("198.51.100.2"),
            ),
            (
                "v6 bracket port",
                &proxies,
                "fd00::1",
                "x-forwarded-for",
                &["[2001:db8::5]:443"],
                Some("2001:db8::5"),
            ),
            ("v6 bare", &proxies, "fd00::1", "x-forwarded-for", &["2001:db8::5"], Some("2001:db8::5")),
            (
                "v4-mapped peer",
                &proxies,
                "::ffff:10.0.0.1",
                "x-forwarded-for",
                &["198.51.100.2"],
                Some("198.51.100.2"),
            ),
            ("garbage hop", &proxies, "10.0.0.1", "x-forwarded-for", &["1.2.3.4, nonsense"], None),
            (
                "garbage left of client is never read",
                &proxies,
                "10.0.0.1",
                "x-forwarded-for",
                &["nonsense, 198.51.100.2"],
                Some("198.51.100.2"),
            ),
            (
                "forwarded",
                &fwd,
                "10.0.0.1",
                "forwarded",
                &["for=1.2.3.4, for=198.51.100.2;proto=https"],
                Some("198.51.100.2"),
            ),
            (
                "forwarded quoted v6",
                &fwd,
                "10.0.0.1",
                "forwarded",
                &[r#"For="[2001:db8:cafe::17]:4711""#],
                Some("2001:db8:cafe::17"),
            ),
            (
                "forwarded two proxies",
                &fwd,
                "10.0.0.1",
                "forwarded",
                &["for=198.51.100.2, for=10.0.0.7;by=10.0.0.1"],
                Some("198.51.100.2"),
            ),
            (
                "forwarded obfuscated port",
                &fwd,
                "10.0.0.1",
                "forwarded",
                &[r#"for="192.0.2.43:_abc""#],
                Some("192.0.2.43"),
            ),
            (
                "forwarded obfuscated port on v6",
                &fwd,
                "10.0.0.1",
                "forwarded",
                &[r#"for="[2001:db8::1]:_p.1-x";proto=https"#],
                Some("2001:db8::1"),
            ),
            (
                "forwarded obfuscated port behind a trusted hop",
                &fwd,
                "10.0.0.1",
                "forwarded",
                &[r#"for="198.51.100.2:_a1", for="10.0.0.7:_lb""#],
                Some("198.51.100.2"),
            ),
            ("forwarded unknown", &fwd, "10.0.0.1", "forwarded", &["for=unknown"], None),
            (
                "forwarded unknown, obfuscated port",
                &fwd,
                "10.0.0.1",
                "forwarded",
                &[r#"for="unknown:_p""#],
                None,
            ),
            (
                "forwarded obfuscated node and port",
                &fwd,
                "10.0.0.1",
                "forwarded",
                &[r#"for="_node:_p""#],
                None,
            ),
            (
                "forwarded empty obfuscated port",
                &fwd,
                "10.0.0.1",
                "forwarded",
                &[r#"for="192.0.2.43:_""#],
                None,
            ),
            (
                "forwarded bad obfuscated port",
                &fwd,
                "10.0.0.1",
                "forwarded",
                &[r#"for="192.0.2.43:_a/b""#],
                None,
            ),
            (
                "forwarded v6 unbracketed with an obfuscated port",
                &fwd,
                "10.0.0.1",
                "forwarded",
                &[r#"for="2001:db8::1:_p""#],
                None,
            ),
            ("forwarded obfuscated", &fwd, "10.0.0.1", "forwarded", &["for=_hidden"], None),
            (
                "xff ignored when forwarded configured",
                &fwd,
                "10.0.0.1",
                "x-forwarded-for",
                &["1.2.3.4"],
                Some("10.0.0.1"),
            ),
            (
                "forwarded ignored when xff configured",
                &proxies,
                "10.0.0.1",
                "forwarded",
                &["for=1.2.3.4"],
                Some("10.0.0.1"),
            ),
        ];
        for (name, p, peer, header, values, want) in rows {
            let got = p.client_addr(peer.parse().unwrap(), &headers(header, values));
            assert_eq!(got, want.map(|w| w.parse().unwrap()), "{name}");
        }
    }

    #[test]
    fn proxies_listed_in_ipv4_mapped_form_are_trusted() {
        // As a dual-stack listener shows them: before, such a range never matched (client
        // addresses are compared in canonical form) and the proxy was taken for the client.
        let p: TrustedProxies = "::ffff:10.0.0.0/104".parse().unwrap();
        let hops = headers("x-forwarded-for", &["198.51.100.2"]);
        for peer in ["::ffff:10.0.0.1", "10.0.0.1"] {
            assert_eq!(
                p.client_addr(peer.parse().unwrap(), &hops),
                Some("198.51.100.2".parse().unwrap()),
                "{peer}"
            );
        }
        let outside = p.client_addr("::ffff:11.0.0.1".parse().unwrap(), &hops);
        assert_eq!(outside, Some("11.0.0.1".parse().unwrap()), "not a proxy: the peer is the client");
    }

    #[test]
    fn long_chains_are_refused() {
        let p = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
        let chain = vec!["10.0.0.2"; 40].join(",");
        assert_eq!(p.client_addr("10.0.0.1".parse().unwrap(), &headers("x-forwarded-for", &[&chain])), None);
    }

    /// The hop limits as the docs give them: `X-Forwarded-For` looks at 32 hops from the
    /// right (a client behind 31 trusted hops is found, behind 32 it is not); `Forwarded`
    /// is read whole, so 33 elements leave the client unknown wherever it is.
    #[test]
    fn hop_limits_are_as_documented() {
        let p = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
        let peer = "10.0.0.1".parse().unwrap();
        let client = Some("198.51.100.2".parse().unwrap());
        let xff = |trusted: usize| {
            let mut hops = vec!["198.51.100.2"];
            hops.extend(vec!["10.0.0.2"; trusted]);
            headers("x-forwarded-for", &[&hops.join(",")])
        };
        assert_eq!(p.client_addr(peer, &xff(31)), client, "31 trusted hops");
        assert_eq!(p.client_addr(peer, &xff(32)), None, "32 trusted hops: the walk reaches a 33rd");
        assert_eq!(
            p.client_addr(peer, &headers("x-forwarded-for", &[&vec!["10.0.0.2"; 32].join(",")])),
            Some("10.0.0.2".parse().unwrap()),
            "32 hops, all trusted"
        );

        let fwd = p.header(ForwardedHeader::Forwarded);
        let forwarded = |left: usize| {
            let mut hops = vec!["for=192.0.2.9"; left];
            hops.push("for=198.51.100.2");
            headers("forwarded", &[&hops.join(",")])
        };
        assert_eq!(fwd.client_addr(peer, &forwarded(31)), client, "32 elements");
        assert_eq!(fwd.client_addr(peer, &forwarded(32)), None, "33 elements, none of them a trusted hop");
    }

    /// `X-Forwarded-For` is read from the right only as far as the first untrusted hop:
    /// what the client wrote to the left of it (not ASCII, a quote, `unknown`, a thousand
    /// hops) cannot make it unresolved; a bad hop the walk reaches still does.
    #[test]
    fn x_forwarded_for_is_read_only_as_far_as_the_client() {
        let p = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
        let peer = "10.0.0.1".parse().unwrap();
        let client = Some("203.0.113.5".parse().unwrap());
        let long = format!("{}, 203.0.113.5", vec!["192.0.2.1"; 1000].join(","));
        for left in ["\"x", "unknown", "for=\"[::1]", &long] {
            let line = format!("{left}, 203.0.113.5");
            assert_eq!(p.client_addr(peer, &headers("x-forwarded-for", &[&line])), client, "{left}");
        }
        let mut map = HeaderMap::new();
        map.append("x-forwarded-for", http::HeaderValue::from_bytes(b"\xff\xfe, 192.0.2.9").unwrap());
        map.append("x-forwarded-for", "203.0.113.5, 10.0.0.7".parse().unwrap());
        assert_eq!(p.client_addr(peer, &map), client, "several lines, the last read first");
        for reached in ["203.0.113.5, unknown", "203.0.113.5, \"10.0.0.2\"", "1.2.3.4, 10.0.0.2, junk"] {
            assert_eq!(p.client_addr(peer, &headers("x-forwarded-for", &[reached])), None, "{reached}");
        }
    }

    #[test]
    fn split_respects_quotes() {
        let parts = split_outside_quotes(r#"for="a,b", for=c,,"#, ',').unwrap();
        assert_eq!(parts, vec![r#"for="a,b""#, " for=c"]);
        assert_eq!(
            split_outside_quotes(r#"for=1;x="a;b";by=2"#, ';').unwrap(),
            vec!["for=1", r#"x="a;b""#, "by=2"]
        );
        assert_eq!(split_outside_quotes(r#"for=1;x=", for=2"#, ','), None, "an open quote");
        assert_eq!(split_outside_quotes(r#"for="1\"#, ','), None, "an escape at the end");
    }

    /// A client that leaves a quote open cannot make the proxy's hop part of its own:
    /// the line cannot be read, so the client is unknown (refused by allow-lists, counted
    /// under the proxy by rate limits), never the address the client wrote.
    #[test]
    fn an_open_quote_does_not_hide_the_proxys_hop() {
        let p = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]).header(ForwardedHeader::Forwarded);
        let peer = "10.0.0.1".parse().unwrap();
        for value in [
            r#"for=192.0.2.1;x=", for=198.51.100.2"#,
            r#"for=192.0.2.1;x="\", for=198.51.100.2"#,
            r#"for=192.0.2.1;for=198.51.100.2"#,
            r#"for="192.0.2.1, for=198.51.100.2"#,
            r#"for=198.51.100.2;x";for=192.0.2.1"#,
        ] {
            assert_eq!(p.client_addr(peer, &headers("forwarded", &[value])), None, "{value}");
        }
        // Quoted separators inside a well-formed element are still fine.
        let ok = r#"for=192.0.2.1;x="a;b,c", for=198.51.100.2"#;
        assert_eq!(p.client_addr(peer, &headers("forwarded", &[ok])), Some("198.51.100.2".parse().unwrap()));
    }
}
