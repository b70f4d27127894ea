//! Why a request was refused: a stable reason code, an HTTP status, and a short text
//! that never holds secret material or the expected signature.

use std::fmt;

use http::StatusCode;

use super::timestamp::Skew;

/// Stable reason codes. Each has a default HTTP status ([`Reason::status`]) and a code
/// for problem+json `type` URIs ([`Reason::code`]).
///
/// ```
/// use hookguard::verify::Reason;
/// use http::StatusCode;
///
/// assert_eq!(Reason::SignatureMismatch.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(Reason::SignatureMismatch.code(), "signature-mismatch");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// No signature (or token) header, or it was empty.
    MissingSignature,
    /// The signature header could not be parsed, or no signature in it could be decoded.
    MalformedSignature,
    /// Signatures were present and well formed, but none matched any secret.
    SignatureMismatch,
    /// More signature entries than the scheme considers (bounded work per request).
    TooManySignatures,
    /// A header is longer than the scheme accepts.
    HeaderTooLarge,
    /// The timestamp the scheme needs is absent.
    MissingTimestamp,
    /// The timestamp could not be parsed or is out of range.
    MalformedTimestamp,
    /// The timestamp is older than the tolerance allows.
    TimestampTooOld,
    /// The timestamp is further in the future than the tolerance allows.
    TimestampInFuture,
    /// A header the signed content needs (such as the delivery id) is absent.
    MissingHeader,
    /// A header value is not valid (not visible ASCII where text is needed).
    MalformedHeader,
    /// The body could not be read as the scheme needs it (for schemes that take their
    /// signature or timestamp from the body).
    MalformedBody,
    /// The scheme signs the request URL, and none is known for this request.
    MissingUrl,
    /// The provider asked for an algorithm this scheme refuses.
    UnsupportedAlgorithm,
}

impl Reason {
    /// Default HTTP status: 400 for requests that are malformed, 401 for requests that
    /// are well formed but not authentic or not fresh.
    ///
    /// ```
    /// use hookguard::verify::Reason;
    /// assert_eq!(Reason::MalformedSignature.status(), http::StatusCode::BAD_REQUEST);
    /// assert_eq!(Reason::SignatureMismatch.status(), http::StatusCode::UNAUTHORIZED);
    /// ```
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::MalformedSignature
            | Self::TooManySignatures
            | Self::HeaderTooLarge
            | Self::MalformedTimestamp
            | Self::MalformedHeader
            | Self::MalformedBody
            | Self::MissingHeader
            | Self::MissingUrl
            | Self::UnsupportedAlgorithm => StatusCode::BAD_REQUEST,
            Self::MissingSignature
            | Self::SignatureMismatch
            | Self::MissingTimestamp
            | Self::TimestampTooOld
            | Self::TimestampInFuture => StatusCode::UNAUTHORIZED,
        }
    }

    /// A stable, kebab-case code (the last segment of the problem `type`).
    ///
    /// ```
    /// use hookguard::verify::Reason;
    /// assert_eq!(Reason::TimestampTooOld.code(), "timestamp-too-old");
    /// ```
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing-signature",
            Self::MalformedSignature => "malformed-signature",
            Self::SignatureMismatch => "signature-mismatch",
            Self::TooManySignatures => "too-many-signatures",
            Self::HeaderTooLarge => "header-too-large",
            Self::MissingTimestamp => "missing-timestamp",
            Self::MalformedTimestamp => "malformed-timestamp",
            Self::TimestampTooOld => "timestamp-too-old",
            Self::TimestampInFuture => "timestamp-in-future",
            Self::MissingHeader => "missing-header",
            Self::MalformedHeader => "malformed-header",
            Self::MalformedBody => "malformed-body",
            Self::MissingUrl => "missing-url",
            Self::UnsupportedAlgorithm => "unsupported-algorithm",
        }
    }

    /// A short title, sentence case, no final period.
    ///
    /// ```
    /// use hookguard::verify::Reason;
    /// assert_eq!(Reason::MissingUrl.title(), "Missing request URL");
    /// ```
    #[must_use]
    pub const fn title(self) -> &'static str {
        match self {
            Self::MissingSignature => "Missing signature",
            Self::MalformedSignature => "Malformed signature",
            Self::SignatureMismatch => "Signature mismatch",
            Self::TooManySignatures => "Too many signatures",
            Self::HeaderTooLarge => "Header too large",
            Self::MissingTimestamp => "Missing timestamp",
            Self::MalformedTimestamp => "Malformed timestamp",
            Self::TimestampTooOld => "Timestamp too old",
            Self::TimestampInFuture => "Timestamp in the future",
            Self::MissingHeader => "Missing header",
            Self::MalformedHeader => "Malformed header",
            Self::MalformedBody => "Malformed body",
            Self::MissingUrl => "Missing request URL",
            Self::UnsupportedAlgorithm => "Unsupported algorithm",
        }
    }

    /// Every reason, for tables and exhaustive tests.
    ///
    /// ```
    /// use std::collections::HashSet;
    /// use hookguard::verify::Reason;
    /// assert!(Reason::ALL.contains(&Reason::SignatureMismatch));
    /// let codes: HashSet<_> = Reason::ALL.iter().map(|r| r.code()).collect();
    /// assert_eq!(codes.len(), Reason::ALL.len(), "codes are unique");
    /// ```
    pub const ALL: &'static [Reason] = &[
        Self::MissingSignature,
        Self::MalformedSignature,
        Self::SignatureMismatch,
        Self::TooManySignatures,
        Self::HeaderTooLarge,
        Self::MissingTimestamp,
        Self::MalformedTimestamp,
        Self::TimestampTooOld,
        Self::TimestampInFuture,
        Self::MissingHeader,
        Self::MalformedHeader,
        Self::MalformedBody,
        Self::MissingUrl,
        Self::UnsupportedAlgorithm,
    ];
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// Context that makes a rejection useful to a person, and safe to show to anyone: names
/// of headers, counts, ages. Never a signature, a secret or a body.
///
/// ```
/// use hookguard::{providers::github, verify::{Detail, Scheme, WebhookRequest}};
/// let scheme = github::scheme("s").unwrap().with_secret("old").unwrap();
/// let req = http::Request::post("/")
///     .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
///     .body(b"{}".to_vec())
///     .unwrap();
/// let refused = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap_err();
/// assert_eq!(refused.detail(), &Detail::Compared { signatures: 1, secrets: 2 });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detail {
    /// Nothing more to say.
    None,
    /// The header concerned.
    Header(http::HeaderName),
    /// How many signatures were compared with how many secrets.
    Compared {
        /// Well-formed signatures of the scheme's version found in the request.
        signatures: usize,
        /// Secrets configured.
        secrets: usize,
    },
    /// How far the timestamp was from now.
    Age {
        /// Seconds between the timestamp and now.
        secs: u64,
        /// The tolerance on that side, in seconds.
        tolerance_secs: u64,
    },
    /// A limit that was exceeded.
    Limit {
        /// The limit.
        max: usize,
    },
    /// A fixed explanation.
    Text(&'static str),
}

/// A request that did not verify: the reason, and safe context.
///
/// `Display` gives one line for logs and CLIs ("signature mismatch: 2 signatures × 1
/// secret, none matched"); it never contains a secret or an expected signature.
///
/// ```
/// use hookguard::verify::{Reason, Rejection};
///
/// let r = Rejection::new(Reason::MissingSignature);
/// assert_eq!(r.reason(), Reason::MissingSignature);
/// assert_eq!(r.status(), http::StatusCode::UNAUTHORIZED);
/// assert_eq!(r.to_string(), "missing signature");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: Reason,
    detail: Detail,
}

impl Rejection {
    /// A rejection with no further detail.
    ///
    /// ```
    /// use hookguard::verify::{Detail, Reason, Rejection};
    /// let r = Rejection::new(Reason::MissingTimestamp);
    /// assert_eq!(r.detail(), &Detail::None);
    /// ```
    #[must_use]
    pub const fn new(reason: Reason) -> Self {
        Self { reason, detail: Detail::None }
    }

    /// A rejection with context.
    ///
    /// ```
    /// # use hookguard::verify::{Detail, Reason, Rejection};
    /// let r = Rejection::with_detail(Reason::MissingHeader, Detail::Header(http::HeaderName::from_static("webhook-id")));
    /// assert_eq!(r.to_string(), "missing header: `webhook-id`");
    /// ```
    #[must_use]
    pub fn with_detail(reason: Reason, detail: Detail) -> Self {
        Self { reason, detail }
    }

    pub(crate) fn skew(skew: Skew) -> Self {
        match skew {
            Skew::TooOld { age_secs, tolerance_secs } => {
                Self::with_detail(Reason::TimestampTooOld, Detail::Age { secs: age_secs, tolerance_secs })
            }
            Skew::TooNew { ahead_secs, tolerance_secs } => {
                Self::with_detail(Reason::TimestampInFuture, Detail::Age { secs: ahead_secs, tolerance_secs })
            }
        }
    }

    /// The reason code.
    ///
    /// ```
    /// use hookguard::verify::{Reason, Rejection};
    /// assert_eq!(Rejection::new(Reason::MalformedBody).reason().code(), "malformed-body");
    /// ```
    #[must_use]
    pub const fn reason(&self) -> Reason {
        self.reason
    }

    /// The context.
    ///
    /// ```
    /// use hookguard::verify::{Detail, Reason, Rejection};
    /// let r = Rejection::with_detail(Reason::TooManySignatures, Detail::Limit { max: 16 });
    /// assert_eq!(r.detail(), &Detail::Limit { max: 16 });
    /// ```
    #[must_use]
    pub const fn detail(&self) -> &Detail {
        &self.detail
    }

    /// The default HTTP status for this rejection.
    ///
    /// ```
    /// use hookguard::verify::{Reason, Rejection};
    /// assert_eq!(Rejection::new(Reason::MissingUrl).status(), 400);
    /// ```
    #[must_use]
    pub const fn status(&self) -> http::StatusCode {
        self.reason.status()
    }
}

impl Rejection {
    /// What the sender is told (a problem's `detail`): the [`Display`](fmt::Display)
    /// line without the number of secrets compared, which would tell anyone that sends a
    /// forgery when a key rotation is under way.
    ///
    /// ```
    /// use hookguard::verify::{Detail, Reason, Rejection};
    /// let r = Rejection::with_detail(Reason::SignatureMismatch, Detail::Compared { signatures: 2, secrets: 3 });
    /// assert_eq!(r.to_string(), "signature mismatch: 2 signatures × 3 secrets, none matched");
    /// assert_eq!(r.public_detail(), "signature mismatch: 2 signatures, none matched");
    /// ```
    #[must_use]
    pub fn public_detail(&self) -> String {
        match self.detail {
            Detail::Compared { signatures, .. } => {
                let head = Self::new(self.reason).to_string();
                format!("{head}: {signatures} signature{}, none matched", plural(signatures))
            }
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let title = self.reason.title();
        // Lower-case the first letter: the title is sentence case for problem+json.
        let mut chars = title.chars();
        if let Some(first) = chars.next() {
            write!(f, "{}{}", first.to_ascii_lowercase(), chars.as_str())?;
        }
        match (&self.detail, self.reason) {
            (Detail::None, _) => Ok(()),
            (Detail::Header(h), _) => write!(f, ": `{h}`"),
            (Detail::Compared { signatures, secrets }, _) => write!(
                f,
                ": {signatures} signature{} × {secrets} secret{}, none matched",
                plural(*signatures),
                plural(*secrets)
            ),
            (Detail::Age { secs, tolerance_secs }, Reason::TimestampInFuture) => {
                write!(f, ": timestamp {secs} s ahead, tolerance {tolerance_secs} s")
            }
            (Detail::Age { secs, tolerance_secs }, _) => {
                write!(f, ": timestamp {secs} s old, tolerance {tolerance_secs} s")
            }
            (Detail::Limit { max }, _) => write!(f, ": more than {max}"),
            (Detail::Text(t), _) => write!(f, ": {t}"),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_helpful() {
        let r =
            Rejection::with_detail(Reason::SignatureMismatch, Detail::Compared { signatures: 2, secrets: 1 });
        assert_eq!(r.to_string(), "signature mismatch: 2 signatures × 1 secret, none matched");
        let r = Rejection::skew(Skew::TooOld { age_secs: 612, tolerance_secs: 300 });
        assert_eq!(r.to_string(), "timestamp too old: timestamp 612 s old, tolerance 300 s");
    }

    #[test]
    fn every_reason_has_distinct_code() {
        let mut codes: Vec<_> = Reason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
        for r in Reason::ALL {
            assert!(r.status().is_client_error(), "{r:?}");
        }
    }
}
