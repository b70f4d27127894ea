//! Allow-list and trusted-proxy ranges as text (`AllowList::parse_ranges`, and the
//! `FromStr` of `AllowList` and `TrustedProxies`): any text, then probes.
//!
//! What must hold, besides no panic:
//! - a parse error names a line of the text;
//! - every range parsed prints as text that parses back to it, and the printed list
//!   parses back to the same list;
//! - `AllowList` and `TrustedProxies` accept exactly the texts `parse_ranges` accepts;
//! - whether an address is in the list agrees with a plain reading of the ranges, with
//!   IPv4-mapped IPv6 ranges and addresses taken as IPv4 (and `::/0`-like ranges not
//!   covering IPv4), for every range's own addresses and for probes from the input;
//! - `AllowList::read_file` (the text written to a file, with or without a final newline)
//!   gives what `parse_ranges` gives, `Empty` for no range and `Unterminated` (at the last
//!   line) for a last line holding more than a comment with no newline after it; and the
//!   file cut anywhere, as while it is written, either is refused or gives only ranges
//!   that the whole file admits (never a wider one).
#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use hookguard::source::{AllowList, AllowListError, IpNet, TrustedProxies};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Item {
    Text(String),
    V4([u8; 4], u8),
    V6([u8; 16], u8),
    /// `::ffff:a.b.c.d/prefix`.
    Mapped([u8; 4], u8),
    Host(IpAddr),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Lines of items; `sep` picks how items are joined and whether a comment follows.
    lines: Vec<(Vec<Item>, u8)>,
    probes: Vec<IpAddr>,
    /// Whether the file ends with a newline, and where it is cut.
    terminated: bool,
    cut: u16,
}

/// `AllowList::read_file` over a file holding `text` (this process's own file).
fn read_file(text: &str) -> Result<Vec<IpNet>, AllowListError> {
    let path = std::env::temp_dir().join(format!("hookguard-fuzz-allow-{}.txt", std::process::id()));
    std::fs::write(&path, text).expect("write the allow-list file");
    AllowList::read_file(&path)
}

fn text(item: &Item) -> String {
    match item {
        Item::Text(t) => t.clone(),
        Item::V4(o, p) => format!("{}/{}", std::net::Ipv4Addr::from(*o), p % 40),
        Item::V6(o, p) => format!("{}/{}", std::net::Ipv6Addr::from(*o), p % 136),
        Item::Mapped(o, p) => format!("::ffff:{}/{}", std::net::Ipv4Addr::from(*o), 96 + p % 40),
        Item::Host(ip) => ip.to_string(),
    }
}

/// Whether `range` admits `ip`, read plainly: the address in canonical form (IPv4-mapped
/// as IPv4); an IPv6 range admits an IPv4 address only when it lies within the mapped
/// block (`::ffff:0:0/96`), where the address's mapped form must be in it.
fn admits(range: &IpNet, ip: IpAddr) -> bool {
    match (range, ip.to_canonical()) {
        (IpNet::V4(net), IpAddr::V4(v4)) => net.contains(&v4),
        (IpNet::V6(net), IpAddr::V4(v4)) => net.prefix_len() >= 96 && net.contains(&v4.to_ipv6_mapped()),
        (IpNet::V6(net), IpAddr::V6(v6)) => net.contains(&v6),
        (IpNet::V4(_), IpAddr::V6(_)) => false,
    }
}

fuzz_target!(|input: Input| {
    let source: Vec<String> = input
        .lines
        .iter()
        .map(|(items, sep)| {
            let joined =
                items.iter().map(text).collect::<Vec<_>>().join(if sep & 1 == 0 { "," } else { " , " });
            if sep & 2 != 0 { format!("{joined} # note, 10.0.0.0/8") } else { joined }
        })
        .collect();
    let source = source.join("\n");
    let parsed = AllowList::parse_ranges(&source);

    let file = if input.terminated { format!("{source}\n") } else { source.clone() };
    let whole = read_file(&file);
    match (&whole, &parsed) {
        (Ok(read), Ok(ranges)) => assert!(read == ranges && !read.is_empty()),
        (Err(AllowListError::Empty), Ok(ranges)) => assert!(ranges.is_empty()),
        (Err(AllowListError::Unterminated { line }), _) => {
            assert!(!file.ends_with('\n'));
            assert_eq!(*line, file.split('\n').count(), "{file:?}");
        }
        (Err(AllowListError::Parse { .. }), Err(AllowListError::Parse { .. })) => {}
        (read, parsed) => panic!("read_file {read:?} against parse_ranges {parsed:?} of {file:?}"),
    }
    if let Ok(whole) = &whole {
        let mut at = usize::from(input.cut) % (file.len() + 1);
        while !file.is_char_boundary(at) {
            at -= 1;
        }
        if let Ok(part) = read_file(&file[..at]) {
            let all = AllowList::new(whole.iter().copied());
            for range in &part {
                for ip in [range.network(), range.broadcast()] {
                    assert!(all.contains(ip), "{range} of {:?} not in the whole {file:?}", &file[..at]);
                }
            }
        }
    }
    let as_list: Result<AllowList, _> = source.parse();
    let as_proxies: Result<TrustedProxies, _> = source.parse();
    assert_eq!(as_list.is_ok(), parsed.is_ok());
    assert_eq!(as_proxies.is_ok(), parsed.is_ok());
    let ranges = match parsed {
        Ok(ranges) => ranges,
        Err(AllowListError::Parse { line }) => {
            assert!(line >= 1 && line <= source.lines().count(), "line {line} of {source:?}");
            return;
        }
        Err(e) => panic!("parsing text failed with {e}"),
    };
    let (list, proxies) = (as_list.expect("parsed"), as_proxies.expect("parsed"));

    for range in &ranges {
        let printed = range.to_string();
        assert_eq!(
            AllowList::parse_ranges(&printed).expect("a printed range parses"),
            vec![*range],
            "{printed}"
        );
    }
    let printed: Vec<String> = ranges.iter().map(ToString::to_string).collect();
    assert_eq!(AllowList::parse_ranges(&printed.join("\n")).expect("the printed list parses"), ranges);

    let own = ranges.iter().flat_map(|r| [r.addr(), r.network(), r.broadcast()]);
    for ip in own.chain(input.probes.iter().copied()) {
        let want = ranges.iter().any(|r| admits(r, ip));
        assert_eq!(list.contains(ip), want, "{ip} in {printed:?}");
        assert_eq!(proxies.is_trusted(ip), want, "{ip} trusted by {printed:?}");
    }
});
