//! The client address behind trusted proxies (`TrustedProxies::client_addr`), in both
//! header formats (`X-Forwarded-For`, RFC 7239 `Forwarded`), over any header values: hops
//! built from addresses (v4, v6, v4-mapped, with ports, brackets, quotes) mixed with
//! arbitrary text, split over several header lines.
//!
//! What must hold, besides no panic:
//! - a peer that is not a trusted proxy is the client, whatever the headers say;
//! - one more *untrusted* hop put in front (a new first header line) changes nothing when
//!   the answer was an untrusted hop or none, and becomes the answer when every hop was
//!   trusted;
//! - one more *trusted* hop at the end (a new last header line) changes nothing, unless
//!   the peer itself was the answer (then there may have been no hop at all);
//!
//! both within the 32-hop limit.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

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
    /// Any text (invalid header values are dropped).
    Raw(String),
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

fuzz_target!(|input: Input| {
    let Input { forwarded, peer, lines } = input;
    let (proxies, name) = if forwarded {
        let proxies: TrustedProxies = TRUSTED.parse().expect("valid ranges");
        (proxies.header(ForwardedHeader::Forwarded), http::header::FORWARDED)
    } else {
        (TRUSTED.parse().expect("valid ranges"), HeaderName::from_static("x-forwarded-for"))
    };
    let values: Vec<HeaderValue> = lines
        .iter()
        .filter_map(|pieces| {
            let text: Vec<String> = pieces
                .iter()
                .map(|piece| match piece {
                    Piece::Raw(text) => text.clone(),
                    Piece::Ip(addr, style, port) => spell(addr.ip(), *style, *port, forwarded),
                })
                .collect();
            HeaderValue::from_str(&text.join(",")).ok()
        })
        .collect();
    let peer_ip = peer.ip();
    let headers = map(&name, values.iter().cloned());
    let client = proxies.client_addr(peer_ip, &headers);

    let canonical = peer_ip.to_canonical();
    if !proxies.is_trusted(canonical) {
        assert_eq!(client, Some(canonical), "an untrusted peer is the client");
        return;
    }
    // At most this many hops: every comma of every line splits one more.
    let hops_at_most: usize = values.iter().map(|v| v.as_bytes().iter().filter(|b| **b == b',').count() + 1).sum();
    if hops_at_most + 1 > MAX_HOPS {
        return;
    }

    let outsider = IpAddr::V4(OUTSIDER);
    let in_front = map(&name, std::iter::once(hop(OUTSIDER, forwarded)).chain(values.iter().cloned()));
    let expected = match client {
        None => None,
        Some(c) if !proxies.is_trusted(c) => Some(c),
        Some(_) => Some(outsider),
    };
    assert_eq!(proxies.client_addr(peer_ip, &in_front), expected, "an untrusted hop in front of {values:?}");

    if client != Some(canonical) {
        let at_end = map(&name, values.iter().cloned().chain(std::iter::once(hop(INSIDER, forwarded))));
        assert_eq!(proxies.client_addr(peer_ip, &at_end), client, "a trusted hop after {values:?}");
    }
    if let Some(c) = client {
        assert_eq!(c, c.to_canonical(), "the client address is canonical");
    }
});
