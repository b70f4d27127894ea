//! IP allow-lists that can be replaced while the server runs.

use std::{fmt, net::IpAddr, path::Path, str::FromStr, sync::Arc};

use arc_swap::ArcSwap;
use http::StatusCode;
use ipnet::IpNet;

use crate::problem::Problem;

/// The problem answered to a client outside the allow-list (403).
///
/// ```
/// use hookguard::source::SOURCE_NOT_ALLOWED;
/// let res = SOURCE_NOT_ALLOWED.into_response();
/// assert_eq!(res.status(), 403);
/// assert!(String::from_utf8(res.into_body()).unwrap().contains("source-not-allowed"));
/// ```
pub const SOURCE_NOT_ALLOWED: Problem =
    Problem::new(StatusCode::FORBIDDEN, "source-not-allowed", "Source address not allowed");

/// CIDR ranges (IPv4 and IPv6) allowed to call an endpoint. Clones share the ranges;
/// [`replace`](Self::replace) and [`reload_from_file`](Self::reload_from_file) swap
/// them atomically for every clone, without a restart. An empty list allows no one.
///
/// ```
/// use hookguard::source::AllowList;
///
/// let list: AllowList = "192.30.252.0/22\n2a0a:a440::/29\n# comments and blank lines are fine\n".parse()?;
/// assert!(list.contains("192.30.252.10".parse()?));
/// assert!(list.contains("2a0a:a440::1".parse()?));
/// assert!(!list.contains("203.0.113.1".parse()?));
///
/// let shared = list.clone();
/// list.replace(["203.0.113.0/24".parse()?]);
/// assert!(shared.contains("203.0.113.1".parse()?)); // every clone sees the new ranges
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AllowList {
    ranges: Arc<ArcSwap<Vec<IpNet>>>,
}

impl fmt::Debug for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowList").field("ranges", &self.ranges.load().len()).finish()
    }
}

impl AllowList {
    /// A list of `ranges`. Host bits are ignored (`10.1.2.3/8` is `10.0.0.0/8`), and an
    /// IPv4-mapped IPv6 range is the IPv4 range it maps (`::ffff:10.0.0.0/104` is
    /// `10.0.0.0/8`). A wider IPv6 range such as `::/0` does not cover IPv4 clients.
    ///
    /// ```
    /// use hookguard::source::AllowList;
    /// let list = AllowList::new(["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()]);
    /// assert!(list.contains("::1".parse().unwrap()));
    /// let mapped = AllowList::new(["::ffff:192.0.2.0/120".parse().unwrap()]);
    /// assert!(mapped.contains("192.0.2.7".parse().unwrap()));
    /// assert_eq!(mapped.ranges()[0].to_string(), "192.0.2.0/24");
    /// ```
    #[must_use]
    pub fn new(ranges: impl IntoIterator<Item = IpNet>) -> Self {
        Self { ranges: Arc::new(ArcSwap::from_pointee(normalize(ranges))) }
    }

    /// Whether `ip` is in a range. IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are
    /// matched as IPv4.
    ///
    /// ```
    /// use hookguard::source::AllowList;
    /// let list = AllowList::new(["192.0.2.0/24".parse().unwrap()]);
    /// assert!(list.contains("::ffff:192.0.2.1".parse().unwrap()));
    /// ```
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.ranges.load().iter().any(|n| n.contains(&ip))
    }

    /// The admission check for adapters: `Ok` for a client in a range, else the 403
    /// `source-not-allowed` problem (and `hookguard_refused_total{by="allow-list"}` is
    /// counted). `None` (the client address could not be known) is refused.
    ///
    /// ```
    /// use hookguard::source::AllowList;
    /// let list = AllowList::new(["192.0.2.0/24".parse().unwrap()]);
    /// assert!(list.admit(Some("192.0.2.9".parse().unwrap())).is_ok());
    /// let refused = list.admit(Some("198.51.100.1".parse().unwrap())).unwrap_err();
    /// assert_eq!(refused.into_response().status(), 403);
    /// ```
    ///
    /// # Errors
    /// The problem to answer with.
    pub fn admit(&self, client: Option<IpAddr>) -> Result<(), Problem> {
        match client {
            Some(ip) if self.contains(ip) => Ok(()),
            _ => {
                super::count_refused("allow-list");
                // Anyone can send it: counted, and logged at debug only (no log flood).
                tracing::debug!(client = ?client, "request refused by allow-list");
                Err(SOURCE_NOT_ALLOWED)
            }
        }
    }

    /// Swaps in new ranges for every clone.
    ///
    /// ```
    /// use hookguard::source::AllowList;
    /// let list = AllowList::new([]);
    /// assert!(!list.contains("10.0.0.1".parse().unwrap()));
    /// list.replace(["10.0.0.0/8".parse().unwrap()]);
    /// assert!(list.contains("10.0.0.1".parse().unwrap()));
    /// ```
    pub fn replace(&self, ranges: impl IntoIterator<Item = IpNet>) {
        self.ranges.store(Arc::new(normalize(ranges)));
    }

    /// The current ranges.
    ///
    /// ```
    /// use hookguard::source::AllowList;
    /// let list = AllowList::new(["10.1.2.3/8".parse().unwrap()]);
    /// assert_eq!(list.ranges()[0].to_string(), "10.0.0.0/8");
    /// ```
    #[must_use]
    pub fn ranges(&self) -> Arc<Vec<IpNet>> {
        self.ranges.load_full()
    }

    /// Parses a list: one range per line (or comma-separated), `#` starts a comment,
    /// a bare address is a single host (`/32` or `/128`).
    ///
    /// ```
    /// use hookguard::source::AllowList;
    /// let ranges = AllowList::parse_ranges("10.0.0.0/8, 192.0.2.1 # office\n::1")?;
    /// assert_eq!(ranges.len(), 3);
    /// assert!(AllowList::parse_ranges("10.0.0.0/33").is_err());
    /// # Ok::<(), hookguard::source::AllowListError>(())
    /// ```
    ///
    /// # Errors
    /// The first line that is not a range.
    pub fn parse_ranges(text: &str) -> Result<Vec<IpNet>, AllowListError> {
        let mut ranges = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            for item in line.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let net = item
                    .parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| AllowListError::Parse { line: i + 1 })?;
                ranges.push(net);
            }
        }
        Ok(ranges)
    }

    /// Reads `path` (the format of [`parse_ranges`](Self::parse_ranges)) and swaps it in.
    /// On any error the current ranges stay. Returns how many ranges are now in force.
    /// This is blocking file I/O: in async code call it from
    /// `tokio::task::spawn_blocking` (or a timer thread), e.g. every few minutes after a
    /// job refreshed the file from the provider's published list.
    ///
    /// ```
    /// use hookguard::source::AllowList;
    /// let path = std::env::temp_dir().join(format!("hookguard-allow-doc-{}.txt", std::process::id()));
    /// std::fs::write(&path, "140.82.112.0/20\n")?;
    /// let list = AllowList::new([]);
    /// assert_eq!(list.reload_from_file(&path)?, 1);
    /// assert!(list.contains("140.82.112.1".parse()?));
    /// std::fs::write(&path, "not a range\n")?;
    /// assert!(list.reload_from_file(&path).is_err());
    /// assert!(list.contains("140.82.112.1".parse()?)); // kept
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`read_file`](Self::read_file): the file could not be read, is larger than
    /// 16 MiB, holds no range, its last range does not end with a newline (it may be
    /// half-written), or a line is not a range.
    pub fn reload_from_file(&self, path: impl AsRef<Path>) -> Result<usize, AllowListError> {
        let ranges = Self::read_file(path)?;
        let n = ranges.len();
        self.replace(ranges);
        Ok(n)
    }

    /// Reads the ranges in `path` (the format of [`parse_ranges`](Self::parse_ranges))
    /// without swapping them in: for a caller that adds ranges of its own first.
    ///
    /// A file is read only whole, as a job that truncates it before writing it leaves it
    /// for a moment:
    /// - a file with no range is an error, not an empty list: swapping it in would
    ///   refuse every sender ([`AllowListError::Empty`]);
    /// - the last line that holds a range must end with a newline (`\n`): a file cut
    ///   in the middle of its last line could hold a wider range than was written
    ///   (`140.82.112.0/20` cut to `140.82.112.0/2` is `128.0.0.0/2`), so one whose last
    ///   range is not followed by a newline may be half-written and is an error
    ///   ([`AllowListError::Unterminated`]). A comment or blank line after it need not
    ///   end with one.
    ///
    /// A file cut just after a newline cannot be told from a whole one: it holds fewer
    /// ranges than were written, never wider ones. To be sure readers never see half of
    /// it, write the file elsewhere and rename it over. Blocking file I/O, as
    /// [`reload_from_file`](Self::reload_from_file).
    ///
    /// ```
    /// use hookguard::source::{AllowList, AllowListError};
    /// let path = std::env::temp_dir().join(format!("hookguard-read-doc-{}.txt", std::process::id()));
    /// std::fs::write(&path, "# GitHub hooks\n140.82.112.0/20\n")?;
    /// assert_eq!(AllowList::read_file(&path)?.len(), 1);
    /// std::fs::write(&path, "")?;
    /// assert!(matches!(AllowList::read_file(&path), Err(AllowListError::Empty)));
    /// // Cut while being written: the last range has no newline after it.
    /// std::fs::write(&path, "# GitHub hooks\n192.30.252.0/22\n140.82.112.0/2")?;
    /// assert!(matches!(AllowList::read_file(&path), Err(AllowListError::Unterminated { line: 3 })));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The file could not be read or is larger than 16 MiB ([`AllowListError::Io`]),
    /// holds no range ([`AllowListError::Empty`]), its last range does not end with a
    /// newline ([`AllowListError::Unterminated`]), or a line is not a range.
    pub fn read_file(path: impl AsRef<Path>) -> Result<Vec<IpNet>, AllowListError> {
        use std::io::Read as _;
        const LIMIT: u64 = 16 << 20;
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(LIMIT + 1).read_to_string(&mut text))
            .map_err(AllowListError::Io)?;
        if text.len() as u64 > LIMIT {
            return Err(AllowListError::Io(std::io::Error::other("the file is larger than 16 MiB")));
        }
        if let Some(line) = unterminated_range(&text) {
            return Err(AllowListError::Unterminated { line });
        }
        let ranges = Self::parse_ranges(&text)?;
        if ranges.is_empty() {
            return Err(AllowListError::Empty);
        }
        Ok(ranges)
    }
}

/// The number (1-based) of the last line of `text` when it holds something other than
/// blanks and a comment (what [`AllowList::parse_ranges`] finds no range in) and no
/// newline ends it: the file may have been cut in the middle of it.
fn unterminated_range(text: &str) -> Option<usize> {
    if text.is_empty() || text.ends_with('\n') {
        return None;
    }
    let last = text.rsplit('\n').next().unwrap_or(text);
    if AllowList::parse_ranges(last).is_ok_and(|ranges| ranges.is_empty()) {
        return None;
    }
    Some(text.bytes().filter(|&b| b == b'\n').count() + 1)
}

impl FromStr for AllowList {
    type Err = AllowListError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_ranges(s).map(Self::new)
    }
}

fn normalize(ranges: impl IntoIterator<Item = IpNet>) -> Vec<IpNet> {
    let v: Vec<IpNet> = ranges.into_iter().map(super::canonical_range).collect();
    IpNet::aggregate(&v)
}

/// Why an allow-list could not be read.
///
/// ```
/// use hookguard::source::{AllowList, AllowListError};
/// assert!(matches!(AllowList::parse_ranges("\nx"), Err(AllowListError::Parse { line: 2 })));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum AllowListError {
    /// The file could not be read.
    Io(std::io::Error),
    /// This line (1-based) is not an address or CIDR range.
    Parse {
        /// The line number.
        line: usize,
    },
    /// The file holds no range (see [`AllowList::read_file`]).
    Empty,
    /// The file's last line holds a range but does not end with a newline: the file may
    /// be half-written (see [`AllowList::read_file`]).
    ///
    /// ```
    /// use hookguard::source::AllowListError;
    /// let e = AllowListError::Unterminated { line: 7 };
    /// assert!(e.to_string().contains("may be half-written"));
    /// ```
    Unterminated {
        /// The line number (1-based) of that last line.
        line: usize,
    },
}

impl fmt::Display for AllowListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "allow-list could not be read: {e}"),
            Self::Parse { line } => write!(f, "allow-list line {line} is not an address or CIDR range"),
            Self::Empty => f.write_str("allow-list file holds no range (left as it was)"),
            Self::Unterminated { line } => write!(
                f,
                "allow-list line {line} does not end with a newline: the file may be half-written; \
                 end the file with a newline"
            ),
        }
    }
}

impl std::error::Error for AllowListError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Parse { .. } | Self::Empty | Self::Unterminated { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file a job truncated before writing it (empty, or comments only) keeps the ranges
    /// in force: swapping in no range would refuse every sender.
    #[test]
    fn an_empty_file_keeps_the_ranges_in_force() {
        let path = std::env::temp_dir().join(format!("hookguard-allow-empty-{}.txt", std::process::id()));
        let list: AllowList = "192.0.2.0/24".parse().unwrap();
        for text in ["", "\n\n", "# refreshed at …\n"] {
            std::fs::write(&path, text).unwrap();
            assert!(matches!(list.reload_from_file(&path), Err(AllowListError::Empty)), "{text:?}");
            assert!(list.contains("192.0.2.1".parse().unwrap()), "{text:?}: kept");
        }
        std::fs::remove_file(&path).unwrap();
    }

    /// A file cut in the middle of its last range (a job truncated it and is writing it)
    /// is refused, at start and on reload: read as it stands, `140.82.112.0/20` cut to
    /// `140.82.112.0/2` would admit `128.0.0.0/2`.
    #[test]
    fn a_half_written_file_keeps_the_ranges_in_force() {
        let path = std::env::temp_dir().join(format!("hookguard-allow-cut-{}.txt", std::process::id()));
        for (text, line) in [
            ("192.30.252.0/22\n140.82.112.0/2", 2),
            ("140.82.112.0/2", 1),
            ("# GitHub\n\n140.82.112.0/20, 143.55.64.0/2", 3),
            ("192.30.252.0/22\n140.82.112.0/2 # hoo", 2),
            ("192.30.252.0/22\r\n140.82.112.0/2\r", 2),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = AllowList::read_file(&path).unwrap_err();
            assert!(matches!(err, AllowListError::Unterminated { line: l } if l == line), "{text:?}: {err}");
            assert!(err.to_string().contains("half-written"), "{err}");
            let list: AllowList = "192.0.2.0/24".parse().unwrap();
            assert!(list.reload_from_file(&path).is_err(), "{text:?}");
            assert!(!list.contains("128.0.0.1".parse().unwrap()), "{text:?}: not widened");
            assert!(list.contains("192.0.2.1".parse().unwrap()), "{text:?}: kept");
        }
        // Whole files: the last range ends with a newline; what follows it may not.
        for (text, n) in [
            ("140.82.112.0/20\n", 1),
            ("140.82.112.0/20\r\n", 1),
            ("140.82.112.0/20\n# refreshed at 12:00", 1),
            ("140.82.112.0/20\n  \t", 1),
            ("140.82.112.0/20\n, ,", 1),
            ("192.30.252.0/22\n140.82.112.0/20\n\n", 2),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(AllowList::read_file(&path).map(|r| r.len()).ok(), Some(n), "{text:?}");
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn contains_table() {
        let list: AllowList = "192.0.2.0/24\n2001:db8::/32\n198.51.100.7".parse().unwrap();
        for (name, ip, want) in [
            ("v4 in range", "192.0.2.200", true),
            ("v4 outside", "192.0.3.1", false),
            ("v4 host", "198.51.100.7", true),
            ("v4 host neighbour", "198.51.100.8", false),
            ("v6 in range", "2001:db8:1::1", true),
            ("v6 outside", "2001:db9::1", false),
            ("v4-mapped", "::ffff:192.0.2.1", true),
        ] {
            assert_eq!(list.contains(ip.parse().unwrap()), want, "{name}");
        }
    }

    #[test]
    fn ranges_in_ipv4_mapped_form_match_as_the_ipv4_ranges_they_map() {
        let list: AllowList =
            "::ffff:192.0.2.0/120\n::ffff:198.51.100.7\n::ffff:0:0/96\n::/0".parse().unwrap();
        let ranges: Vec<String> = list.ranges().iter().map(ToString::to_string).collect();
        // `::ffff:0:0/96` is every IPv4 address; `::/0` stays IPv6 (it would hold the
        // mapped block too, but is not read as "every IPv4 client").
        assert_eq!(ranges, ["0.0.0.0/0", "::/0"]);
        let narrow: AllowList = "::ffff:192.0.2.0/120, ::ffff:198.51.100.7".parse().unwrap();
        for (name, ip, want) in [
            ("v4 in the mapped range", "192.0.2.9", true),
            ("mapped client in the mapped range", "::ffff:192.0.2.9", true),
            ("v4 outside", "192.0.3.9", false),
            ("the mapped host", "198.51.100.7", true),
            ("its neighbour", "198.51.100.8", false),
            ("a v6 client", "2001:db8::1", false),
        ] {
            assert_eq!(narrow.contains(ip.parse().unwrap()), want, "{name}");
        }
        let v6_only = AllowList::new(["::/0".parse().unwrap()]);
        assert!(v6_only.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6_only.contains("192.0.2.1".parse().unwrap()), "::/0 does not cover IPv4 clients");
        assert!(!v6_only.contains("::ffff:192.0.2.1".parse().unwrap()), "nor IPv4-mapped ones");
    }

    #[test]
    fn empty_allows_no_one() {
        let list = AllowList::new([]);
        assert!(!list.contains("127.0.0.1".parse().unwrap()));
        assert!(list.admit(None).is_err());
    }

    #[test]
    fn refusals_are_counted() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let list = AllowList::new(["10.0.0.0/8".parse().unwrap()]);
            let _ = list.admit(Some("10.0.0.1".parse().unwrap()));
            let _ = list.admit(Some("192.0.2.1".parse().unwrap()));
            let _ = list.admit(None);
        });
        assert_eq!(super::super::tests::refused(&snapshotter).get("allow-list"), Some(&2));
    }
}
