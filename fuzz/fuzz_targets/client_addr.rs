//! The client address behind trusted proxies (`TrustedProxies::client_addr`), in both
//! header formats (`X-Forwarded-For`, RFC 7239 `Forwarded`), over any header values: hops
//! built from addresses (v4, v6, v4-mapped, with ports, brackets, quotes) mixed with
//! arbitrary bytes (not UTF-8 either), split over several header lines, up to past the
//! 32-hop limit.
//!
//! What must hold, besides no panic:
//! - a peer that is not a trusted proxy is the client, whatever the headers say;
//! - `X-Forwarded-For` gives what a plain reading gives: the lines joined by commas, read
//!   from the right, empty hops skipped, as far as the first hop that is not a trusted
//!   address (that one, if it is an address; `None` if it is not, or not UTF-8), at most
//!   32 hops (`None` at the 33rd), else the leftmost hop;
//! - `X-Forwarded-For`: what lies left of the last hop read is never read: replaced by
//!   any bytes (on that line, and as a line before it), the answer stays;
//! - `Forwarded`: a line that is not visible ASCII, or more than 32 hops, is `None`;
//! - one more *untrusted* hop put in front (a new first header line) changes nothing when
//!   the answer was an untrusted hop or none, and becomes the answer when every hop was
//!   trusted, unless it is one hop too many;
//! - one more *trusted* hop at the end (a new last header line) changes nothing, unless
//!   it is one hop too many, or there was no hop (then it is the answer);
//! - the answer is canonical (IPv4-mapped addresses as IPv4).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use arbitrary::Arbitrary;
use hookguard::source::{ForwardedHeader, TrustedProxies};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const TRUSTED: &str = "10.0.0.0/8, fd00::/8, 192.0.2.0/24";
/// Not in [`TRUSTED`].
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// In [`TRUSTED`].
const INSIDER: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);
/// `client_addr`'s limit on hops per request.
const MAX_HOPS: usize = 32;

#[derive(Arbitrary, Debug)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
    /// 10.x.y.z: a trusted proxy.
    Trusted([u8; 3]),
    /// fd00::/8: a trusted proxy.
    TrustedV6([u8; 15]),
    /// ::ffff:a.b.c.d (the same as the IPv4 address once canonical).
    Mapped([u8; 4]),
}

impl Addr {
    fn ip(&self) -> IpAddr {
        match *self {
            Self::V4(o) => IpAddr::V4(o.into()),
            Self::V6(o) => IpAddr::V6(o.into()),
            Self::Trusted([a, b, c]) => IpAddr::V4(Ipv4Addr::new(10, a, b, c)),
            Self::TrustedV6(rest) => {
                let mut o = [0xfd; 16];
                o[1..].copy_from_slice(&rest);
                IpAddr::V6(o.into())
            }
            Self::Mapped(o) => IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped()),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Piece {
    /// Any bytes (less those no header value holds: controls but tab, DEL).
    Raw(Vec<u8>),
    /// An address; `style` picks the spelling: plain, with a port, bracketed (v6), quoted
    /// (`Forwarded`), with more `Forwarded` parameters, padded with spaces.
    Ip(Addr, u8, u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    forwarded: bool,
    peer: Addr,
    /// Header lines, each a comma-separated list of pieces.
    lines: Vec<Vec<Piece>>,
    /// A last line of `trusted % 40` trusted hops (written by the proxies nearest the
    /// peer): chains about the 32-hop limit.
    trusted: u8,
    /// Bytes to put left of the last hop read (`X-Forwarded-For`).
    left: Vec<u8>,
}

fn spell(ip: IpAddr, style: u8, port: u16, forwarded: bool) -> String {
    let node = match (style % 4, ip) {
        (1, IpAddr::V4(v4)) => format!("{v4}:{port}"),
        (1 | 2, IpAddr::V6(v6)) => {
            if style % 4 == 1 {
                format!("[{v6}]:{port}")
            } else {
                format!("[{v6}]")
            }
        }
        _ => ip.to_string(),
    };
    if !forwarded {
        return if style & 0x10 != 0 { format!("  {node} ") } else { node };
    }
    let value = if style & 0x20 != 0 || node.contains(':') { format!("\"{node}\"") } else { node };
    match style >> 6 {
        0 => format!("for={value}"),
        1 => format!("For={value};proto=https"),
        2 => format!("by=10.0.0.1;for={value}"),
        _ => format!(" for = {value} ;host=example.com"),
    }
}

/// Bytes a header value may hold.
fn header_bytes(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().copied().filter(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)).collect()
}

fn value(bytes: Vec<u8>) -> HeaderValue {
    HeaderValue::from_bytes(&bytes).expect("header bytes")
}

fn hop(ip: Ipv4Addr, forwarded: bool) -> HeaderValue {
    let text = if forwarded { format!("for={ip}") } else { ip.to_string() };
    HeaderValue::from_str(&text).expect("an address is a header value")
}

fn map(name: &HeaderName, values: impl IntoIterator<Item = HeaderValue>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(name.clone(), value);
    }
    headers
}

/// `X-Forwarded-For` read plainly (see the module docs).
struct Walk {
    client: Option<IpAddr>,
    /// The last hop read (line, offset of its first byte), unless every hop was.
    last: Option<(usize, usize)>,
    /// Non-empty hops read, the last one included.
    hops: usize,
}

fn walk(proxies: &TrustedProxies, peer: IpAddr, values: &[HeaderValue]) -> Walk {
    let mut all = Vec::new();
    for (line, value) in values.iter().enumerate() {
        let bytes = value.as_bytes();
        let mut start = 0;
        for (i, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b',') {
            all.push((line, start, i));
            start = i + 1;
        }
        all.push((line, start, bytes.len()));
    }
    let mut client = peer;
    let mut hops = 0;
    for &(line, start, end) in all.iter().rev() {
        let Ok(text) = std::str::from_utf8(&values[line].as_bytes()[start..end]) else {
            return Walk { client: None, last: Some((line, start)), hops };
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        hops += 1;
        if hops > MAX_HOPS {
            return Walk { client: None, last: Some((line, start)), hops };
        }
        // `a.b.c.d`, `a.b.c.d:port`, `v6`, `[v6]:port`, `[v6]`.
        let ip = text
            .parse::<IpAddr>()
            .ok()
            .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
            .or_else(|| text.strip_prefix('[')?.strip_suffix(']')?.parse().ok().map(IpAddr::V6));
        let Some(ip) = ip else { return Walk { client: None, last: Some((line, start)), hops } };
        client = ip.to_canonical();
        if !proxies.is_trusted(client) {
            return Walk { client: Some(client), last: Some((line, start)), hops };
        }
    }
    Walk { client: Some(client), last: None, hops }
}

fuzz_target!(|input: Input| {
    let Input { forwarded, peer, lines, trusted, left } = input;
    let (proxies, name) = if forwarded {
        let proxies: TrustedProxies = TRUSTED.parse().expect("valid ranges");
        (proxies.header(ForwardedHeader::Forwarded), http::header::FORWARDED)
    } else {
        (TRUSTED.parse().expect("valid ranges"), HeaderName::from_static("x-forwarded-for"))
    };
    let mut values: Vec<HeaderValue> = lines
        .iter()
        .map(|pieces| {
            let mut line = Vec::new();
            for (i, piece) in pieces.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                match piece {
                    Piece::Raw(bytes) => line.extend(header_bytes(bytes)),
                    Piece::Ip(addr, style, port) => {
                        line.extend(spell(addr.ip(), *style, *port, forwarded).bytes())
                    }
                }
            }
            value(line)
        })
        .collect();
    let trusted = usize::from(trusted % 40);
    if trusted > 0 {
        let hops: Vec<String> = (0..trusted)
            .map(|i| spell(IpAddr::V4(Ipv4Addr::new(10, 9, 9, i as u8)), 0, 0, forwarded))
            .collect();
        values.push(value(hops.join(",").into_bytes()));
    }
    let peer_ip = peer.ip();
    let headers = map(&name, values.iter().cloned());
    let client = proxies.client_addr(peer_ip, &headers);

    let canonical = peer_ip.to_canonical();
    if let Some(c) = client {
        assert_eq!(c, c.to_canonical(), "the client address is canonical");
    }
    if !proxies.is_trusted(canonical) {
        assert_eq!(client, Some(canonical), "an untrusted peer is the client");
        return;
    }
    let outsider = IpAddr::V4(OUTSIDER);
    let in_front = map(&name, std::iter::once(hop(OUTSIDER, forwarded)).chain(values.iter().cloned()));
    let at_end = map(&name, values.iter().cloned().chain(std::iter::once(hop(INSIDER, forwarded))));
    let in_front_answer = proxies.client_addr(peer_ip, &in_front);
    let at_end_answer = proxies.client_addr(peer_ip, &at_end);

    if forwarded {
        if values.iter().any(|v| v.to_str().is_err()) {
            assert_eq!(client, None, "a Forwarded line that is not visible ASCII");
            return;
        }
        // Hops known exactly when every piece is an address (each spelled without a comma).
        let known = lines
            .iter()
            .all(|pieces| pieces.iter().all(|p| matches!(p, Piece::Ip(..))))
            .then(|| lines.iter().map(Vec::len).sum::<usize>() + trusted);
        let at_most: usize =
            values.iter().map(|v| v.as_bytes().iter().filter(|b| **b == b',').count() + 1).sum();
        let hops = match known {
            Some(n) => n,
            // Only properties that hold far from the limit.
            None if at_most < MAX_HOPS => at_most,
            None => return,
        };
        if known.is_some_and(|n| n > MAX_HOPS) {
            assert_eq!(client, None, "{hops} Forwarded hops");
        }
        let one_more = hops + 1 > MAX_HOPS && known.is_some();
        let expected = match client {
            _ if one_more => None,
            None => None,
            Some(c) if !proxies.is_trusted(c) => Some(c),
            Some(_) => Some(outsider),
        };
        assert_eq!(in_front_answer, expected, "an untrusted hop in front of {values:?}");
        match (known, client) {
            _ if one_more => assert_eq!(at_end_answer, None, "a trusted hop too many after {values:?}"),
            (Some(0), _) => assert_eq!(at_end_answer, Some(IpAddr::V4(INSIDER)), "a trusted hop alone"),
            (None, Some(c)) if c == canonical => {}
            _ => assert_eq!(at_end_answer, client, "a trusted hop after {values:?}"),
        }
        return;
    }

    // X-Forwarded-For: against the plain reading, as it is and with a hop added.
    let plain = walk(&proxies, canonical, &values);
    assert_eq!(client, plain.client, "X-Forwarded-For {values:?}");
    let in_front_values: Vec<HeaderValue> =
        std::iter::once(hop(OUTSIDER, false)).chain(values.iter().cloned()).collect();
    assert_eq!(
        in_front_answer,
        walk(&proxies, canonical, &in_front_values).client,
        "plain reading, in front"
    );
    let at_end_values: Vec<HeaderValue> =
        values.iter().cloned().chain(std::iter::once(hop(INSIDER, false))).collect();
    assert_eq!(at_end_answer, walk(&proxies, canonical, &at_end_values).client, "plain reading, at the end");

    let too_many = plain.hops + 1 > MAX_HOPS;
    let expected = match (client, plain.last) {
        (None, _) => None,
        (Some(c), Some(_)) => Some(c),
        (Some(_), None) if too_many => None,
        (Some(_), None) => Some(outsider),
    };
    assert_eq!(in_front_answer, expected, "an untrusted hop in front of {values:?}");
    let expected = match client {
        None => None,
        Some(_) if too_many => None,
        Some(_) if plain.hops == 0 => Some(IpAddr::V4(INSIDER)),
        Some(c) => Some(c),
    };
    assert_eq!(at_end_answer, expected, "a trusted hop after {values:?}");

    // Never read: whatever lies left of the last hop read.
    if let Some((line, start)) = plain.last {
        let left = header_bytes(&left);
        let mut cut = left.clone();
        cut.push(b',');
        cut.extend_from_slice(&values[line].as_bytes()[start..]);
        let changed: Vec<HeaderValue> = std::iter::once(value(left))
            .chain(std::iter::once(value(cut)))
            .chain(values[line + 1..].iter().cloned())
            .collect();
        let answer = proxies.client_addr(peer_ip, &map(&name, changed.iter().cloned()));
        assert_eq!(answer, client, "what lies left of the last hop read of {values:?} was read: {changed:?}");
    }
});
