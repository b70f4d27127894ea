//! PayPal certificates fetched from PayPal's own HTTPS hosts, checked, cached (feature
//! `paypal-fetch`).
//!
//! [`PayPalCertificates`] is a [`SchemeSource`]: for each request it reads
//! `PAYPAL-CERT-URL`, refuses any URL that [`is_trusted_cert_url`] refuses (not `https`,
//! not one of PayPal's four REST API hosts, not under `/v1/notifications/certs/`),
//! fetches the certificate (over rustls with the Mozilla root store, at most 64 KiB,
//! 10 s), checks it, caches it (24 hours, 64 certificates, never past the certificate's
//! `notAfter`) and verifies with it. The verification core stays sans-IO: all I/O is here.
//!
//! # What a fetched certificate must be
//! The URL only says where to look: before its key verifies anything, the certificate
//! served there (the first of the PEM) must
//! - be issued to PayPal's message-signing name: one of its DNS subject alternative
//!   names, or its subject common name when it has no subject alternative name (RFC 6125
//!   §6.4.4), is `messageverificationcerts.paypal.com` or
//!   `messageverificationcerts.sandbox.paypal.com`, exactly (no wildcard, any case);
//! - be within its validity period (`notBefore` to `notAfter`) at the source's
//!   [clock](PayPalCertificates::clock) when fetched, and at the guard's clock for each
//!   delivery it verifies; it is never cached past its `notAfter`;
//! - with [`check_chain`](PayPalCertificates::check_chain), chain to a root of Mozilla's
//!   store (`webpki-roots`), through the other certificates of the PEM and those given to
//!   [`intermediates`](PayPalCertificates::intermediates), each valid at the source's
//!   clock, for TLS server authentication (rustls-webpki checks as a TLS client does,
//!   without the host name; no revocation check).
//!
//! The chain check is **off by default with the built-in fetcher**
//! ([`PayPalCertificates::new`], or [`HttpsFetcher`] given to
//! [`with_fetcher`](PayPalCertificates::with_fetcher)), and **on with any other
//! fetcher**: whoever controls what such a fetcher reads (a plain-HTTP proxy, a mirror)
//! could otherwise serve a self-signed certificate in PayPal's name
//! ([`without_chain_check`](PayPalCertificates::without_chain_check) turns it off for a
//! fetcher of yours that fetches from PayPal over checked TLS). With the built-in
//! fetcher, what vouches for the certificate is where it came from: PayPal's own API
//! host, over TLS checked against Mozilla's roots, at PayPal's certificate path; whoever
//! could change those bytes could change what PayPal's API answers. The chain check
//! guards against that path serving a certificate that PayPal's CA did not issue, but
//! PayPal's message-signing certificates have been issued under a DigiCert hierarchy
//! whose older root (DigiCert High Assurance EV Root CA) is no longer in Mozilla's
//! store, and whether PayPal's current certificate chains to a root still there could
//! not be confirmed here: on by default, it could refuse every PayPal delivery (503).
//! Turn it on once your PayPal certificate has passed it, with
//! [`intermediates`](PayPalCertificates::intermediates) if PayPal serves the certificate
//! alone. [`trust_anchors`](PayPalCertificates::trust_anchors) turns it on with other
//! roots (a private mirror, one of DigiCert's older roots, tests);
//! [`pin_certificates`](PayPalCertificates::pin_certificates) accepts only a list of exact
//! certificates (the name and dates are still checked). A certificate that fails a check
//! is not cached; the request is answered 503 and PayPal retries it.
//!
//! # Fetches that anyone can cause
//! Anyone can send a request naming a PayPal certificate URL, and the certificate is
//! fetched before any signature can be checked. So:
//! - nothing is fetched for a request that would fail whatever the certificate: its
//!   `PAYPAL-AUTH-ALGO` must be `SHA256withRSA`, its `PAYPAL-TRANSMISSION-TIME` within
//!   the [tolerance](PayPalCertificates::tolerance), its `PAYPAL-TRANSMISSION-SIG` base64
//!   of 256 to 1024 bytes (an RSA signature), or it is refused as verification would
//!   refuse it;
//! - a URL whose certificate has not verified a delivery is fetched only with a token
//!   from a small bucket ([`NEW_URL_BURST`] tokens, one more every [`NEW_URL_EVERY`] by
//!   the source's clock); without one the request is answered 503 at once. However many
//!   URLs a flood names, it costs that many outbound fetches at most;
//! - a token goes to the URL that the most requests named while waiting (of up to 64
//!   counted; a URL named again lately counts at least twice, even after a flood of
//!   other names pushed it out), not to the request that came first: the request that
//!   finds a token fetches that URL, and is answered 503 if it named another. PayPal's
//!   deliveries and their retries all name one URL, while a flood's fresh names count
//!   once each, so PayPal's URL gets the next token;
//! - one fetch per URL at a time: requests naming a URL being fetched wait for that
//!   fetch;
//! - a fetch, once started, runs to its end in a Tokio task of its own, even when the
//!   request that started it goes away (a sender that hangs up): its token stays spent,
//!   and its certificate is cached, or its failure kept (below), for the requests that
//!   follow. Hanging up cannot make the same URL be fetched again, nor take PayPal's
//!   URL's turn away;
//! - at most two fetches of new URLs run at once; a request waits at most 10 s for its
//!   turn;
//! - a certificate that has verified a delivery is re-fetched (when its time to live
//!   runs out) on a permit of its own, without a token, and it keeps verifying while a
//!   re-fetch fails, within its validity period and at most [`MAX_STALE_TTLS`] times its
//!   time to live after it was fetched: one request re-fetches while the others go on
//!   with it, and a failed re-fetch is tried again a minute later. When PayPal answers
//!   that it is not there any more (404 or 410: [`CertificateNotFound`]), it stops
//!   verifying at once;
//! - a URL whose fetch (or check) failed is not fetched again for a minute.
//!
//! The 503s that anyone can cause this way (no token, the URL failed lately, no fetch
//! permit in time, and PayPal's 404 or 410 for a URL whose certificate never verified a
//! delivery: a made-up certificate name on PayPal's host) are
//! [`SourceError::Throttled`]: logged at debug and counted as `secrets-throttled`, not
//! as an outage of the secret source. An outage is what anyone cannot cause: a fetch that
//! fails otherwise (no route to PayPal, TLS, a timeout, a 5xx), the re-fetch of a
//! certificate that verified a delivery failing once it can no longer be used (or PayPal
//! withdrawing it), or a certificate served and refused by the checks above (a chain
//! check that PayPal's certificate does not pass): those are
//! [`SourceError::Unavailable`], logged as warnings and counted as `secrets-unavailable`.
//!
//! A flood thus never fails PayPal's deliveries whose certificate is already here. A
//! certificate seen for the first time (after a restart, or PayPal's rotation) waits for
//! a token: during a flood, its first deliveries are answered 503 until it gets one, and
//! PayPal retries them. What gets it the token is being named more often than any other
//! URL waiting: a flood that names each of its URLs once cannot keep it out, but one
//! that names a URL of its own more often than PayPal's deliveries name theirs can take
//! the token, once per token (each such URL fails, and is not fetched again for a
//! minute).
//!
//! The cache is keyed by the URL in one spelling (scheme and host in lower case, no
//! trailing dot on the host, no `:443`), and that spelling is what is fetched: the many
//! spellings of one URL are one certificate, one fetch. When the cache is full, expired
//! certificates make room first, then the oldest one that has not verified a delivery; a
//! certificate that verified one goes only when every cached certificate has (and then
//! the oldest). Requests naming other URLs can thus never push PayPal's own certificate
//! out.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use hookguard::{guard::Guard, inbox::MemoryInbox, paypal_fetch::PayPalCertificates};
//!
//! let source = PayPalCertificates::new("0FV983392A0531201").unwrap();
//! let guard = Guard::builder_with_source("paypal", source).inbox(MemoryInbox::new()).build();
//! // A request whose certificate URL is not PayPal's is refused without any fetch.
//! let (parts, ()) = http::Request::post("/hooks/paypal")
//!     .header("paypal-cert-url", "https://evil.example/cert.pem")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! assert_eq!(guard.accept(&parts, bytes::Bytes::new()).await.status(), 400);
//! # }
//! ```

use std::{
    any::Any,
    borrow::Cow,
    collections::{HashMap, HashSet, VecDeque},
    fmt,
    hash::{BuildHasher as _, RandomState},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::request::Parts;
use http_body_util::{BodyExt as _, Empty, Limited};
use rustls::{
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, UnixTime, pem::PemObject as _},
};
use time::{OffsetDateTime, PrimitiveDateTime};
use x509_cert::{
    Certificate,
    der::Decode as _,
    ext::pkix::{SubjectAltName, name::GeneralName},
};

use crate::{
    ConfigError,
    clock::{Clock, SystemClock},
    guard::{SchemeSource, SourceError},
    providers::paypal::{self, PayPalScheme, is_trusted_cert_url},
    replay::BoxFuture,
    verify::{Detail, Reason, Rejection, Scheme, Tolerance, Verified, WebhookRequest},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The names PayPal's message-signing certificates are issued to (live, sandbox).
const SIGNING_NAMES: [&str; 2] =
    ["messageverificationcerts.paypal.com", "messageverificationcerts.sandbox.paypal.com"];

/// The most certificates read from one PEM (the certificate and its intermediates).
const MAX_CHAIN_LEN: usize = 8;

/// How many fetches of URLs whose certificate has not verified a delivery may start at
/// once, after a quiet time (the token bucket's size; see the [module docs](self)).
///
/// ```
/// use hookguard::paypal_fetch::{NEW_URL_BURST, NEW_URL_EVERY};
/// // At most 4 such fetches at once, then one every 15 seconds.
/// assert_eq!((NEW_URL_BURST, NEW_URL_EVERY.as_secs()), (4, 15));
/// ```
pub const NEW_URL_BURST: u32 = 4;

/// How often the token bucket for new URLs gains a token (see [`NEW_URL_BURST`]).
///
/// ```
/// use hookguard::paypal_fetch::NEW_URL_EVERY;
/// // At most 4 new certificate URLs fetched a minute, however many a flood names.
/// assert_eq!(60 / NEW_URL_EVERY.as_secs(), 4);
/// ```
pub const NEW_URL_EVERY: Duration = Duration::from_secs(15);

/// The certificates fetched, by [`normalized`] URL.
#[derive(Default)]
struct Cache {
    map: HashMap<String, Cached>,
    /// How many certificates were put in so far: each entry's age.
    puts: u64,
}

struct Cached {
    scheme: Arc<Tracked>,
    /// When it is fetched again: its time to live, or its `notAfter` if sooner.
    expires: OffsetDateTime,
    /// The last time it may verify while re-fetches fail: [`MAX_STALE_TTLS`] times its
    /// time to live after it was fetched, or its `notAfter` if sooner.
    usable_until: OffsetDateTime,
    /// When it was put in (the value of [`Cache::puts`] then).
    put: u64,
}

/// A fetched certificate's scheme, with the certificate's validity period, remembering
/// whether it verified a delivery (so that certificates that never did, which anyone can
/// have fetched, make room first and are re-fetched only with a token).
#[derive(Debug)]
struct Tracked {
    scheme: PayPalScheme,
    verified: AtomicBool,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Tracked {
    fn verified(&self) -> bool {
        self.verified.load(Ordering::Relaxed)
    }

    /// Whether `now` is within the certificate's validity period (both ends included).
    fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

impl Scheme for Tracked {
    fn provider(&self) -> &str {
        self.scheme.provider()
    }

    fn verify<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        now: OffsetDateTime,
    ) -> Result<Verified<'a>, Rejection> {
        // `now` is the guard's: the certificate is checked at each delivery's time too.
        if !self.valid_at(now) {
            return Err(Rejection::with_detail(
                Reason::SignatureMismatch,
                Detail::Text("PayPal's certificate is outside its validity period"),
            ));
        }
        let verified = self.scheme.verify(req, now)?;
        self.verified.store(true, Ordering::Relaxed);
        Ok(verified)
    }

    fn tolerance(&self) -> Tolerance {
        self.scheme.tolerance()
    }
}

/// `now + by`, or the farthest time there is when that is past it (never panics:
/// `Duration::MAX` means for ever).
fn later(now: OffsetDateTime, by: Duration) -> OffsetDateTime {
    time::Duration::try_from(by)
        .ok()
        .and_then(|by| now.checked_add(by))
        .unwrap_or(PrimitiveDateTime::MAX.assume_utc())
}

/// A trusted certificate URL in one spelling: `https`, the host in lower case without
/// its trailing dot, no port (only 443 is trusted), the path as it is. `None` for a URL
/// that [`is_trusted_cert_url`] refuses.
fn normalized(url: &str) -> Option<String> {
    if !is_trusted_cert_url(url) {
        return None;
    }
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    Some(format!("https://{host}{}", uri.path()))
}

/// Why a fetched certificate is not trusted (for logs and the 503's cause; no secret in
/// it, and nothing of the bytes fetched).
#[derive(Debug)]
enum CertError {
    Pem,
    Name,
    NotYetValid,
    Expired,
    Chain(rustls::Error),
    NotPinned,
    Key(ConfigError),
    Clock,
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pem => write!(f, "the certificate is not 1 to {MAX_CHAIN_LEN} X.509 certificates in PEM"),
            Self::Name => {
                f.write_str("the certificate is not issued to messageverificationcerts.(sandbox.)paypal.com")
            }
            Self::NotYetValid => f.write_str("the certificate is not valid yet"),
            Self::Expired => f.write_str("the certificate has expired"),
            Self::Chain(e) => write!(f, "the certificate does not chain to a trusted root: {e}"),
            Self::NotPinned => f.write_str("the certificate is not one of the pinned certificates"),
            Self::Key(e) => write!(f, "the certificate's key: {e}"),
            Self::Clock => f.write_str("the clock is before 1970"),
        }
    }
}

impl std::error::Error for CertError {}

/// How fetched certificates are trusted (see the [module docs](self)).
#[derive(Clone)]
struct Trust {
    roots: rustls::RootCertStore,
    /// Whether `roots` are Mozilla's (for `Debug`).
    mozilla: bool,
    /// Given to every chain check, after the PEM's own.
    intermediates: Vec<CertificateDer<'static>>,
    /// When not empty: only these certificates (DER), and no chain check.
    pinned: Vec<CertificateDer<'static>>,
    /// Whether a fetched certificate must chain to `roots` ([`PayPalCertificates::check_chain`],
    /// [`PayPalCertificates::trust_anchors`]).
    chain: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.pinned.is_empty() {
            write!(f, "Pinned({})", self.pinned.len())
        } else if !self.chain {
            write!(f, "FetchedFromPayPal")
        } else if self.mozilla {
            write!(f, "MozillaRoots {{ intermediates: {} }}", self.intermediates.len())
        } else {
            write!(f, "TrustAnchors({}) {{ intermediates: {} }}", self.roots.len(), self.intermediates.len())
        }
    }
}

/// A certificate that passed every check: the certificate (the PEM's first) and its
/// validity period.
struct Checked {
    certificate: Certificate,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// The certificates of a PEM (at most [`MAX_CHAIN_LEN`]), or `None`.
fn pem_certificates(pem: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let certs =
        CertificateDer::pem_slice_iter(pem).take(MAX_CHAIN_LEN + 1).collect::<Result<Vec<_>, _>>().ok()?;
    (!certs.is_empty() && certs.len() <= MAX_CHAIN_LEN).then_some(certs)
}

/// An X.509 time as a time of day (saturating: a certificate valid until 9999 is).
fn to_time(t: x509_cert::time::Time) -> OffsetDateTime {
    later(OffsetDateTime::UNIX_EPOCH, t.to_unix_duration())
}

/// Whether `name` is one of [`SIGNING_NAMES`] (DNS names are compared without case).
fn is_signing_name(name: &str) -> bool {
    SIGNING_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether the certificate is issued to one of [`SIGNING_NAMES`], exactly: one of its DNS
/// subject alternative names when it has that extension, else its subject common name
/// (RFC 6125 §6.4.4). Beside a SAN the CN is not a name of the certificate: a CA's name
/// constraints look at SANs only, so a CA constrained to names of its own could put
/// PayPal's name in a CN, and the chain check names no host.
fn names_paypal(cert: &Certificate) -> bool {
    let tbs = cert.tbs_certificate();
    match tbs.get_extension::<SubjectAltName>() {
        Ok(Some((_, san))) => {
            san.0.iter().any(|n| matches!(n, GeneralName::DnsName(dns) if is_signing_name(dns.as_str())))
        }
        Ok(None) => matches!(tbs.subject().common_name(), Ok(Some(cn)) if is_signing_name(&cn.value())),
        // A SAN extension that does not parse (or two of them): no name to trust.
        Err(_) => false,
    }
}

impl Trust {
    /// No chain check (Mozilla's roots, `webpki-roots`, ready for one), nothing pinned.
    fn mozilla() -> Self {
        Self {
            roots: rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
            mozilla: true,
            intermediates: Vec::new(),
            pinned: Vec::new(),
            chain: false,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }

    /// Checks the certificate PEM fetched at `now` (see the [module docs](self)).
    fn check(&self, pem: &[u8], now: OffsetDateTime) -> Result<Checked, CertError> {
        let certs = pem_certificates(pem).ok_or(CertError::Pem)?;
        let (leaf, rest) = certs.split_first().ok_or(CertError::Pem)?;
        let certificate = Certificate::from_der(leaf).map_err(|_| CertError::Pem)?;
        if !names_paypal(&certificate) {
            return Err(CertError::Name);
        }
        let validity = certificate.tbs_certificate().validity();
        let (not_before, not_after) = (to_time(validity.not_before), to_time(validity.not_after));
        if now < not_before {
            return Err(CertError::NotYetValid);
        }
        if now > not_after {
            return Err(CertError::Expired);
        }
        if !self.pinned.is_empty() {
            if !self.pinned.iter().any(|pinned| pinned == leaf) {
                return Err(CertError::NotPinned);
            }
        } else if self.chain {
            let secs = u64::try_from(now.unix_timestamp()).map_err(|_| CertError::Clock)?;
            let at = UnixTime::since_unix_epoch(Duration::from_secs(secs));
            let parsed = rustls::server::ParsedCertificate::try_from(leaf).map_err(CertError::Chain)?;
            let intermediates: Vec<CertificateDer<'_>> =
                rest.iter().chain(&self.intermediates).cloned().collect();
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &self.roots,
                &intermediates,
                at,
                self.algorithms.all,
            )
            .map_err(CertError::Chain)?;
        }
        Ok(Checked { certificate, not_before, not_after })
    }
}

/// The certificates of a PEM given to a builder, or `error`.
fn config_certificates(pem: &[u8], error: &'static str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ConfigError::Invalid(error))?;
    if certs.is_empty() || certs.iter().any(|c| Certificate::from_der(c).is_err()) {
        return Err(ConfigError::Invalid(error));
    }
    Ok(certs)
}

/// Largest certificate accepted from PayPal.
///
/// ```
/// use hookguard::paypal_fetch::MAX_CERTIFICATE_LEN;
/// assert_eq!(MAX_CERTIFICATE_LEN, 64 * 1024);
/// // PayPal's certificates are a few kilobytes.
/// assert!(include_bytes!("providers/testdata/paypal_cert.pem").len() < MAX_CERTIFICATE_LEN);
/// ```
pub const MAX_CERTIFICATE_LEN: usize = 64 * 1024;

/// Fetches a certificate by URL (the URL has passed [`is_trusted_cert_url`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::collections::HashMap;
/// use hookguard::{clock::ManualClock, guard::Guard, inbox::MemoryInbox, replay::BoxFuture};
/// use hookguard::paypal_fetch::{CertificateFetcher, PayPalCertificates};
/// const CERT: &[u8] = include_bytes!("providers/testdata/paypal_cert.pem");
/// # const BODY: &[u8] = include_bytes!("providers/testdata/paypal_body.json");
/// # // PayPal's sandbox delivery, sent 2019-08-29T10:49:33Z, naming its certificate's URL.
/// # fn delivery(cert_url: &str) -> (http::request::Parts, bytes::Bytes) {
/// #     let req = http::Request::post("/hooks/paypal")
/// #         .header("paypal-transmission-id", "afa30d40-ca4a-11e9-ab68-7d4e2605c70c")
/// #         .header("paypal-transmission-time", "2019-08-29T10:49:33Z")
/// #         .header("paypal-transmission-sig", "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg==")
/// #         .header("paypal-cert-url", cert_url)
/// #         .header("paypal-auth-algo", "SHA256withRSA")
/// #         .body(())
/// #         .unwrap();
/// #     (req.into_parts().0, bytes::Bytes::from_static(BODY))
/// # }
/// const CERT_URL: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270";
///
/// /// Certificates downloaded beforehand, by URL (a receiver without outbound access).
/// #[derive(Debug)]
/// struct Mirror(HashMap<String, Vec<u8>>);
///
/// impl CertificateFetcher for Mirror {
///     fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>> {
///         let pem = self.0.get(url).cloned().ok_or_else(|| format!("{url} is not mirrored").into());
///         Box::pin(std::future::ready(pem))
///     }
/// }
///
/// let mirror = Mirror(HashMap::from([(CERT_URL.to_owned(), CERT.to_vec())]));
/// // One clock for the guard and the source: the day the delivery was sent.
/// let clock = ManualClock::at_unix(1_567_075_773);
/// // The test vector's certificate cannot be chain-checked here (its intermediate is
/// // not at hand): pinned instead. Its name and dates are still checked.
/// let source = PayPalCertificates::with_fetcher("0FV983392A0531201", mirror)
///     .unwrap()
///     .pin_certificates(CERT)
///     .unwrap()
///     .clock(clock.clone());
/// let guard = Guard::builder_with_source("paypal", source).clock(clock).inbox(MemoryInbox::new()).build();
/// // `delivery(url)`: PayPal's sandbox delivery, naming the certificate at `url`.
/// let (parts, body) = delivery(CERT_URL);
/// assert_eq!(guard.accept(&parts, body).await.status(), 202);
/// // A fetch that fails is a 503: PayPal retries later.
/// let (parts, body) = delivery("https://api.paypal.com/v1/notifications/certs/CERT-unknown");
/// let res = guard.accept(&parts, body).await;
/// assert_eq!(res.status(), 503);
/// assert!(res.headers().contains_key("retry-after"));
/// # }
/// ```
pub trait CertificateFetcher: fmt::Debug + Send + Sync + 'static {
    /// The PEM bytes at `url`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookguard::paypal_fetch::{CertificateFetcher, HttpsFetcher};
    /// let fetcher = HttpsFetcher::new().unwrap();
    /// // HTTPS only: a plain-HTTP URL is refused without a connection.
    /// assert!(fetcher.fetch("http://api.paypal.com/v1/notifications/certs/CERT-1").await.is_err());
    /// # }
    /// ```
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BoxError>>;
}

/// The default fetcher: HTTPS only (rustls, ring, Mozilla's root store), HTTP/1, at most
/// [`MAX_CERTIFICATE_LEN`] bytes, 10 seconds.
///
/// ```
/// use hookguard::paypal_fetch::{HttpsFetcher, PayPalCertificates};
/// // What `PayPalCertificates::new` fetches with; nothing is fetched until a request
/// // names a certificate.
/// let source = PayPalCertificates::with_fetcher("0FV983392A0531201", HttpsFetcher::new().unwrap()).unwrap();
/// assert!(format!("{source:?}").contains("HttpsFetcher"));
/// ```
pub struct HttpsFetcher {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Empty<Bytes>,
    >,
    timeout: Duration,
}

impl fmt::Debug for HttpsFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsFetcher").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl HttpsFetcher {
    /// A fetcher with the Mozilla root store.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if the TLS configuration cannot be built.
    ///
    /// ```
    /// use hookguard::paypal_fetch::HttpsFetcher;
    /// let fetcher = HttpsFetcher::new().unwrap();
    /// assert!(format!("{fetcher:?}").contains("timeout: 10s"));
    /// ```
    pub fn new() -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| ConfigError::Invalid("TLS configuration"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        Ok(Self { client, timeout: Duration::from_secs(10) })
    }
}

/// The error a [`CertificateFetcher`] returns (boxed) when the server answered that there
/// is no certificate at the URL (HTTP 404 Not Found or 410 Gone): PayPal withdrew it. A
/// cached certificate from that URL then stops verifying at once, instead of being used
/// while re-fetches fail (see the [module docs](self)). [`HttpsFetcher`] returns it for
/// 404 and 410; any other error is taken as temporary.
///
/// ```
/// use hookguard::paypal_fetch::CertificateNotFound;
/// let error: Box<dyn std::error::Error + Send + Sync> = Box::new(CertificateNotFound);
/// assert!(error.downcast_ref::<CertificateNotFound>().is_some());
/// assert_eq!(error.to_string(), "no certificate at that URL (404 or 410)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CertificateNotFound;

impl fmt::Display for CertificateNotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no certificate at that URL (404 or 410)")
    }
}

impl std::error::Error for CertificateNotFound {}

impl CertificateFetcher for HttpsFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BoxError>> {
        Box::pin(async move {
            let uri: http::Uri = url.parse()?;
            let work = async {
                let res = self.client.get(uri).await?;
                if matches!(res.status(), http::StatusCode::NOT_FOUND | http::StatusCode::GONE) {
                    return Err::<Vec<u8>, BoxError>(Box::new(CertificateNotFound));
                }
                if !res.status().is_success() {
                    return Err::<Vec<u8>, BoxError>(
                        format!("certificate fetch answered {}", res.status()).into(),
                    );
                }
                let body = Limited::new(res.into_body(), MAX_CERTIFICATE_LEN).collect().await?;
                Ok(body.to_bytes().to_vec())
            };
            tokio::time::timeout(self.timeout, work).await.map_err(|_| "certificate fetch timed out")?
        })
    }
}

/// Inserts `url` into `map`, which holds at most `capacity` entries (bounded memory
/// whatever URLs requests name): when full, the entries that are no longer `live` go
/// first, then the one that ranks lowest, one at a time (a scan of at most `capacity`
/// entries, only when one is put in).
fn insert_bounded<V, R: Ord>(
    map: &mut HashMap<String, V>,
    capacity: usize,
    url: &str,
    value: V,
    live: impl Fn(&V) -> bool,
    rank: impl Fn(&V) -> R,
) {
    if !map.contains_key(url) && map.len() >= capacity {
        map.retain(|_, v| live(v));
        while map.len() >= capacity.max(1) {
            let Some(lowest) = map.iter().min_by_key(|(_, v)| rank(v)).map(|(k, _)| k.clone()) else {
                break;
            };
            map.remove(&lowest);
        }
    }
    map.insert(url.to_owned(), value);
}

/// The shortest time to live ([`PayPalCertificates::ttl`]): longer than a fetch may take
/// ([`PERMIT_WAIT`] waiting for its turn, then [`FETCH_LIMIT`]), so that the deliveries
/// that waited for a fetch find its certificate still fresh.
const MIN_TTL: Duration = Duration::from_secs(60);

/// How long a URL whose fetch failed is not fetched again.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// The longest a request waits for a fetch permit.
const PERMIT_WAIT: Duration = Duration::from_secs(10);

/// The longest a fetch may take, whatever the [`CertificateFetcher`].
const FETCH_LIMIT: Duration = Duration::from_secs(10);

/// How many times its time to live a certificate that verified a delivery is used, from
/// when it was fetched, while its re-fetches fail (never past its `notAfter`).
///
/// ```
/// use hookguard::paypal_fetch::MAX_STALE_TTLS;
/// // With the default 24 hours: at most 3 days after the last successful fetch.
/// assert_eq!(MAX_STALE_TTLS, 3);
/// ```
pub const MAX_STALE_TTLS: u32 = 3;

/// How many certificate URLs waiting for a token are counted at once.
const MAX_CANDIDATES: usize = 64;

/// How many URLs named once lately are remembered (as keyed hashes, 8 bytes each), so
/// that a URL named again counts twice even after a flood of others pushed it out of
/// the candidates.
const SEEN_LEN: usize = 4096;

/// A URL waiting for a token.
struct Candidate {
    /// How many requests named it.
    count: u64,
    /// When it was last named (the value of [`Admission::requests`] then).
    last: u64,
}

/// Who gets the new-URL bucket's tokens, and which fetches are running.
struct Admission {
    /// The token bucket for new URLs, as the time its next token is due ("generic cell
    /// rate"): a fetch may start while that is less than [`NEW_URL_BURST`] periods ahead.
    next_token: OffsetDateTime,
    /// URLs waiting for a token, with how often requests named them.
    candidates: HashMap<String, Candidate>,
    /// How many requests were counted so far.
    requests: u64,
    /// Keyed hashes of the URLs named lately, oldest first, and the same as a set.
    seen: VecDeque<u64>,
    seen_set: HashSet<u64>,
    hasher: RandomState,
    /// The URLs being fetched: a request for one of them waits for that fetch (its
    /// sender is dropped when it ends) instead of fetching again.
    in_flight: HashMap<String, tokio::sync::watch::Receiver<()>>,
}

impl Admission {
    fn new() -> Self {
        Self {
            next_token: PrimitiveDateTime::MIN.assume_utc(),
            candidates: HashMap::new(),
            requests: 0,
            seen: VecDeque::new(),
            seen_set: HashSet::new(),
            hasher: RandomState::new(),
            in_flight: HashMap::new(),
        }
    }

    /// Whether the bucket has a token at `now`; `take` takes it.
    fn token(&mut self, now: OffsetDateTime, take: bool) -> bool {
        let full = NEW_URL_EVERY.saturating_mul(NEW_URL_BURST);
        // A clock moved back by more than the bucket's span: start again from now.
        if self.next_token > later(now, full) {
            self.next_token = now;
        }
        // The token due at `due` may be taken early by as many periods as the bucket
        // holds tokens but one.
        let due = self.next_token.max(now);
        if due > later(now, NEW_URL_EVERY.saturating_mul(NEW_URL_BURST - 1)) {
            return false;
        }
        if take {
            self.next_token = later(due, NEW_URL_EVERY);
        }
        true
    }

    /// Counts a request naming `url`, a URL waiting for a token. A URL named before,
    /// lately, counts at least twice, even if a flood of other URLs pushed it out of the
    /// candidates meanwhile: each of a flood's fresh names counts once.
    fn count(&mut self, url: &str) {
        self.requests = self.requests.saturating_add(1);
        let last = self.requests;
        if let Some(candidate) = self.candidates.get_mut(url) {
            candidate.count = candidate.count.saturating_add(1);
            candidate.last = last;
            return;
        }
        let hash = self.hasher.hash_one(url);
        let count = if self.seen_set.contains(&hash) {
            2
        } else {
            if self.seen.len() >= SEEN_LEN
                && let Some(oldest) = self.seen.pop_front()
            {
                self.seen_set.remove(&oldest);
            }
            self.seen.push_back(hash);
            self.seen_set.insert(hash);
            1
        };
        // When full, the least named goes (of those, the one named longest ago).
        insert_bounded(
            &mut self.candidates,
            MAX_CANDIDATES,
            url,
            Candidate { count, last },
            |_| true,
            |c| (c.count, c.last),
        );
    }

    /// The candidate the next token goes to: the most named, not being fetched; of those
    /// named as often, `url` (the request's own), then the one named last.
    fn choose(&self, url: &str) -> Option<String> {
        self.candidates
            .iter()
            .filter(|(u, _)| !self.in_flight.contains_key(u.as_str()))
            .max_by_key(|(u, c)| (c.count, u.as_str() == url, c.last))
            .map(|(u, _)| u.clone())
    }
}

/// A fetch running: while it lives, requests for its URL wait for it; when it ends (or
/// is dropped), they wake and find its certificate in the cache, or its failure on
/// record. It lives in the fetch's own task (see [`PayPalCertificates::spawn_fetch`]),
/// not in the request that started it.
struct Flight {
    state: Arc<State>,
    url: String,
    /// Dropped after `drop` has taken the URL out of [`Admission::in_flight`].
    _done: tokio::sync::watch::Sender<()>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Ok(mut admission) = self.state.admission.lock() {
            admission.in_flight.remove(&self.url);
        }
    }
}

/// Why a fetch failed.
struct Failed {
    error: BoxError,
    /// The server answered that there is no certificate there ([`CertificateNotFound`]).
    not_found: bool,
    /// Anyone can cause it: PayPal answered that there is no certificate at a URL whose
    /// certificate never verified a delivery (a made-up certificate name on PayPal's
    /// host), as opposed to any other failed fetch, a certificate that verified one, or a
    /// certificate fetched and refused by the checks.
    anyone: bool,
}

impl From<Failed> for SourceError {
    /// What anyone can cause is [`SourceError::Throttled`] (the guard counts it apart and
    /// logs it at debug only); the rest is an outage of the source.
    fn from(failed: Failed) -> Self {
        if failed.anyone {
            SourceError::Throttled(failed.error)
        } else {
            SourceError::Unavailable(failed.error)
        }
    }
}

/// What the cache knows of a URL at some time.
enum Lookup {
    /// A certificate within its time to live.
    Fresh(Arc<Tracked>),
    /// A certificate that verified a delivery, past its time to live but within its
    /// validity period: used until a re-fetch succeeds.
    Stale(Arc<Tracked>),
    /// A certificate that verified a delivery, past its validity period: its URL is
    /// PayPal's, and is re-fetched without a token.
    Known,
    /// Nothing, or a certificate that never verified a delivery, past its time to live.
    Missing,
}

/// A [`SchemeSource`] for PayPal that fetches, checks and caches the certificate each
/// request names (see the [module docs](self)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
/// use hookguard::{clock::ManualClock, guard::Guard, inbox::MemoryInbox, replay::BoxFuture};
/// use hookguard::paypal_fetch::{CertificateFetcher, PayPalCertificates};
/// const CERT: &[u8] = include_bytes!("providers/testdata/paypal_cert.pem");
/// # const BODY: &[u8] = include_bytes!("providers/testdata/paypal_body.json");
/// # // PayPal's sandbox delivery, sent 2019-08-29T10:49:33Z, naming its certificate's URL.
/// # fn delivery(cert_url: &str) -> (http::request::Parts, bytes::Bytes) {
/// #     let req = http::Request::post("/hooks/paypal")
/// #         .header("paypal-transmission-id", "afa30d40-ca4a-11e9-ab68-7d4e2605c70c")
/// #         .header("paypal-transmission-time", "2019-08-29T10:49:33Z")
/// #         .header("paypal-transmission-sig", "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg==")
/// #         .header("paypal-cert-url", cert_url)
/// #         .header("paypal-auth-algo", "SHA256withRSA")
/// #         .body(())
/// #         .unwrap();
/// #     (req.into_parts().0, bytes::Bytes::from_static(BODY))
/// # }
/// const CERT_URL: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270";
///
/// /// Serves PayPal's sandbox certificate from memory, counting the fetches.
/// #[derive(Debug, Clone, Default)]
/// struct Counting(Arc<AtomicUsize>);
/// impl CertificateFetcher for Counting {
///     fn fetch<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>> {
///         self.0.fetch_add(1, Ordering::SeqCst);
///         Box::pin(std::future::ready(Ok(CERT.to_vec())))
///     }
/// }
///
/// // One clock for the guard and the source: when the delivery was sent.
/// let clock = ManualClock::at_unix(1_567_075_773);
/// let fetcher = Counting::default();
/// let source = PayPalCertificates::with_fetcher("0FV983392A0531201", fetcher.clone())
///     .unwrap()
///     // The test vector's certificate cannot be chain-checked offline: pinned here.
///     .pin_certificates(CERT)
///     .unwrap()
///     .clock(clock.clone());
/// let guard = Guard::builder_with_source("paypal", source).clock(clock).inbox(MemoryInbox::new()).build();
/// // `delivery(url)`: PayPal's sandbox delivery, naming the certificate at `url`.
/// let (genuine, body) = delivery(CERT_URL);
/// assert_eq!(guard.accept(&genuine, body.clone()).await.status(), 202);
/// assert_eq!(guard.accept(&genuine, body).await.status(), 200); // a copy
/// assert_eq!(fetcher.0.load(Ordering::SeqCst), 1, "fetched once, then cached");
/// // A certificate URL that is not PayPal's is refused, and never fetched.
/// let (forged, body) = delivery("https://evil.example/cert.pem");
/// assert_eq!(guard.accept(&forged, body).await.status(), 400);
/// assert_eq!(fetcher.0.load(Ordering::SeqCst), 1);
/// # }
/// ```
pub struct PayPalCertificates {
    config: Arc<Config>,
    /// Shared with the fetches running, which each run in a task of their own.
    state: Arc<State>,
}

/// What the builder methods set.
#[derive(Clone)]
struct Config {
    webhook_id: Cow<'static, str>,
    tolerance: Tolerance,
    fetcher: Arc<dyn CertificateFetcher>,
    trust: Trust,
    ttl: Duration,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

/// The certificates and what the fetches share.
struct State {
    cache: Mutex<Cache>,
    /// URLs whose fetch failed lately, until when they are not fetched again.
    failed: Mutex<HashMap<String, OffsetDateTime>>,
    /// For URLs whose certificate has not verified a delivery.
    fetches: Arc<tokio::sync::Semaphore>,
    /// For URLs whose certificate has: never taken by the others.
    refetches: Arc<tokio::sync::Semaphore>,
    /// The new-URL token bucket, who gets its tokens, the fetches running.
    admission: Mutex<Admission>,
}

impl State {
    fn new() -> Self {
        Self {
            cache: Mutex::default(),
            failed: Mutex::new(HashMap::new()),
            fetches: Arc::new(tokio::sync::Semaphore::new(2)),
            refetches: Arc::new(tokio::sync::Semaphore::new(1)),
            admission: Mutex::new(Admission::new()),
        }
    }
}

impl fmt::Debug for PayPalCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayPalCertificates")
            .field("webhook_id", &self.config.webhook_id)
            .field("fetcher", &self.config.fetcher)
            .field("trust", &self.config.trust)
            .field("cached", &self.state.cache.lock().map_or(0, |c| c.map.len()))
            .finish_non_exhaustive()
    }
}

impl PayPalCertificates {
    /// A source for the webhook id shown in PayPal's Developer Portal, fetching over HTTPS.
    ///
    /// # Errors
    /// [`ConfigError`] for an empty webhook id or a TLS set-up failure.
    ///
    /// ```
    /// use hookguard::{ConfigError, paypal_fetch::PayPalCertificates};
    /// assert_eq!(PayPalCertificates::new("").unwrap_err(), ConfigError::EmptySecret);
    /// // Nothing is fetched until a request names a certificate; by default what vouches
    /// // for it is PayPal's URL, its name and its dates (`check_chain` adds its chain).
    /// let source = PayPalCertificates::new("0FV983392A0531201").unwrap();
    /// assert!(format!("{source:?}").contains("HttpsFetcher"));
    /// assert!(format!("{source:?}").contains("FetchedFromPayPal"));
    /// ```
    pub fn new(webhook_id: impl Into<Cow<'static, str>>) -> Result<Self, ConfigError> {
        Self::with_fetcher(webhook_id, HttpsFetcher::new()?)
    }

    /// The same with another fetcher (tests, proxies, mirrors). The fetcher is only asked
    /// for URLs that [`is_trusted_cert_url`] approves, and what it returns is checked as
    /// anything fetched is (see the [module docs](self)), and **its chain too** unless
    /// the fetcher is [`HttpsFetcher`]: whoever controls the path a fetcher of yours
    /// reads (a plain-HTTP proxy, a mirror) could otherwise serve a self-signed
    /// certificate with PayPal's name. [`pin_certificates`](Self::pin_certificates),
    /// [`trust_anchors`](Self::trust_anchors) and
    /// [`intermediates`](Self::intermediates) apply as with the built-in fetcher;
    /// [`without_chain_check`](Self::without_chain_check) turns the check off.
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] for an empty webhook id.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// use hookguard::{ConfigError, paypal_fetch::{CertificateFetcher, PayPalCertificates}, replay::BoxFuture};
    /// # const CERT: &[u8] = include_bytes!("providers/testdata/paypal_cert.pem");
    /// # #[derive(Debug, Clone, Default)]
    /// # struct Counting(Arc<AtomicUsize>);
    /// # impl CertificateFetcher for Counting {
    /// #     fn fetch<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>> {
    /// #         self.0.fetch_add(1, Ordering::SeqCst);
    /// #         Box::pin(std::future::ready(Ok(CERT.to_vec())))
    /// #     }
    /// # }
    /// // `Counting`: a `CertificateFetcher` serving PayPal's sandbox certificate from memory.
    /// let refused = PayPalCertificates::with_fetcher("  ", Counting::default());
    /// assert_eq!(refused.unwrap_err(), ConfigError::EmptySecret);
    /// let source = PayPalCertificates::with_fetcher("0FV983392A0531201", Counting::default()).unwrap();
    /// assert!(format!("{source:?}").contains("Counting"));
    /// // Another fetcher than the built-in one: the chain is checked.
    /// assert!(format!("{source:?}").contains("MozillaRoots"));
    /// ```
    ///
    /// See [`PayPalCertificates`] for one in use.
    pub fn with_fetcher(
        webhook_id: impl Into<Cow<'static, str>>,
        fetcher: impl CertificateFetcher,
    ) -> Result<Self, ConfigError> {
        let webhook_id = webhook_id.into();
        if webhook_id.trim().is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        // Only the built-in fetcher is known to fetch from PayPal's hosts over TLS
        // checked against Mozilla's roots: with any other, the chain is checked.
        let builtin = (&fetcher as &dyn Any).is::<HttpsFetcher>();
        let config = Config {
            webhook_id,
            tolerance: paypal::TOLERANCE,
            fetcher: Arc::new(fetcher),
            trust: Trust { chain: !builtin, ..Trust::mozilla() },
            ttl: Duration::from_secs(24 * 3600),
            capacity: 64,
            clock: Arc::new(SystemClock),
        };
        Ok(Self { config: Arc::new(config), state: Arc::new(State::new()) })
    }

    /// The settings, for a builder method to change (copied first if a fetch running
    /// holds them: what it does is not changed under it). The certificates start afresh:
    /// those fetched, and failures kept, under the old settings (another trust, another
    /// tolerance) are not this source's, nor is a fetch still running under them.
    fn config_mut(&mut self) -> &mut Config {
        self.state = Arc::new(State::new());
        Arc::make_mut(&mut self.config)
    }

    /// Another handle on the same settings and certificates, for a fetch's task.
    fn share(&self) -> Self {
        Self { config: Arc::clone(&self.config), state: Arc::clone(&self.state) }
    }

    /// **Changes whom you trust.** Fetched certificates must chain to one of these CA
    /// certificates (PEM, one or more) instead of Mozilla's roots: whoever holds the key
    /// of a certificate given here can sign PayPal deliveries for you. For a private CA
    /// in front of a mirror, tests, or one of DigiCert's older roots that Mozilla no
    /// longer trusts for TLS if PayPal's certificate still chains to it. Each call
    /// replaces the anchors of the one before.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the PEM holds no X.509 certificate, or one that
    /// cannot be a trust anchor.
    ///
    /// ```
    /// use hookguard::{ConfigError, paypal_fetch::PayPalCertificates};
    /// # const ROOT: &[u8] = include_bytes!("providers/testdata/paypal_cert.pem");
    /// let source = PayPalCertificates::new("0FV983392A0531201").unwrap();
    /// assert!(matches!(source.trust_anchors("no certificate"), Err(ConfigError::Invalid(_))));
    /// // `ROOT`: your CA's certificate, in PEM.
    /// let source = PayPalCertificates::new("0FV983392A0531201").unwrap().trust_anchors(ROOT).unwrap();
    /// assert!(format!("{source:?}").contains("TrustAnchors(1)"));
    /// ```
    pub fn trust_anchors(mut self, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        const ERROR: &str = "trust anchors are one or more X.509 certificates in PEM";
        let mut roots = rustls::RootCertStore::empty();
        for cert in config_certificates(pem.as_ref(), ERROR)? {
            roots.add(cert).map_err(|_| ConfigError::Invalid(ERROR))?;
        }
        self.config_mut().trust.roots = roots;
        self.config_mut().trust.mozilla = false;
        self.config_mut().trust.chain = true;
        Ok(self)
    }

    /// Requires each fetched certificate to chain to a root of Mozilla's store
    /// (`webpki-roots`), through the PEM's other certificates and those given to
    /// [`intermediates`](Self::intermediates), as PayPal's older SDKs did with a bundled
    /// DigiCert CA. Off by default with the built-in [`HttpsFetcher`] (on with any other
    /// fetcher): see the [module docs](self) for why, and turn it on once you have seen
    /// your PayPal certificate pass it (or give [`trust_anchors`](Self::trust_anchors),
    /// which turns it on with those roots).
    ///
    /// ```
    /// use hookguard::paypal_fetch::PayPalCertificates;
    /// let source = PayPalCertificates::new("0FV983392A0531201").unwrap();
    /// assert!(format!("{source:?}").contains("FetchedFromPayPal"));
    /// let source = source.check_chain();
    /// assert!(format!("{source:?}").contains("MozillaRoots { intermediates: 0 }"));
    /// ```
    #[must_use]
    pub fn check_chain(mut self) -> Self {
        self.config_mut().trust.chain = true;
        self
    }

    /// **Trusts your fetcher as the built-in one is trusted**: turns the chain check off
    /// (it is on by default with a fetcher other than [`HttpsFetcher`]). What vouches for
    /// a certificate is then only where the fetcher got it (and its name and dates): use
    /// it only for a fetcher that itself fetches from PayPal's hosts over TLS checked
    /// against public roots. A fetcher that reads a mirror, a plain-HTTP proxy or a store
    /// that others can write to would let them choose the key: pin the certificates
    /// ([`pin_certificates`](Self::pin_certificates)) or keep the chain check instead.
    /// [`trust_anchors`](Self::trust_anchors) and [`check_chain`](Self::check_chain)
    /// after it turn the check on again.
    ///
    /// ```
    /// use hookguard::{paypal_fetch::{CertificateFetcher, PayPalCertificates}, replay::BoxFuture};
    /// # #[derive(Debug)]
    /// # struct MyHttps;
    /// # impl CertificateFetcher for MyHttps {
    /// #     fn fetch<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>> {
    /// #         Box::pin(std::future::ready(Err("offline".into())))
    /// #     }
    /// # }
    /// // `MyHttps`: your `CertificateFetcher`, fetching from PayPal over checked TLS.
    /// let source = PayPalCertificates::with_fetcher("0FV983392A0531201", MyHttps).unwrap();
    /// assert!(format!("{source:?}").contains("MozillaRoots"), "chain-checked by default");
    /// let source = source.without_chain_check();
    /// assert!(format!("{source:?}").contains("FetchedFromPayPal"));
    /// ```
    #[must_use]
    pub fn without_chain_check(mut self) -> Self {
        self.config_mut().trust.chain = false;
        self
    }

    /// Intermediate CA certificates (PEM, one or more) offered to every chain check (see
    /// [`check_chain`](Self::check_chain)),
    /// after those of the PEM fetched: for when PayPal serves its certificate without the
    /// intermediate it was issued by. Trusts nothing by itself (a chain must still end at
    /// a trust anchor). Each call replaces the intermediates of the one before.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the PEM holds no X.509 certificate.
    ///
    /// ```
    /// use hookguard::{ConfigError, paypal_fetch::PayPalCertificates};
    /// # const INTERMEDIATE: &[u8] = include_bytes!("providers/testdata/paypal_cert.pem");
    /// let source = PayPalCertificates::new("0FV983392A0531201").unwrap();
    /// assert!(matches!(source.intermediates(""), Err(ConfigError::Invalid(_))));
    /// // `INTERMEDIATE`: the CA certificate PayPal's certificate was issued by, in PEM.
    /// let source = PayPalCertificates::new("0FV983392A0531201").unwrap().check_chain().intermediates(INTERMEDIATE).unwrap();
    /// assert!(format!("{source:?}").contains("MozillaRoots { intermediates: 1 }"));
    /// ```
    pub fn intermediates(mut self, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        self.config_mut().trust.intermediates =
            config_certificates(pem.as_ref(), "intermediates are one or more X.509 certificates in PEM")?;
        Ok(self)
    }

    /// **Replaces the chain check** with these exact certificates (PEM, one or more): a
    /// fetched certificate is trusted only if it is byte for byte one of them (its name
    /// and validity period are still checked). Narrower than the chain check (nothing
    /// else is accepted, not even PayPal's next certificate after a rotation, until you
    /// add it), and it trusts these certificates whoever issued them: for receivers that
    /// download PayPal's certificates out of band, and for tests with a certificate
    /// whose chain is not at hand. Each call replaces the certificates of the one before.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the PEM holds no X.509 certificate.
    ///
    /// ```
    /// use hookguard::{ConfigError, paypal_fetch::PayPalCertificates};
    /// const CERT: &[u8] = include_bytes!("providers/testdata/paypal_cert.pem");
    /// let source = PayPalCertificates::new("0FV983392A0531201").unwrap();
    /// assert!(matches!(source.pin_certificates("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), Err(ConfigError::Invalid(_))));
    /// let source = PayPalCertificates::new("0FV983392A0531201").unwrap().pin_certificates(CERT).unwrap();
    /// assert!(format!("{source:?}").contains("Pinned(1)"));
    /// ```
    ///
    /// See [`PayPalCertificates`] for one in use.
    pub fn pin_certificates(mut self, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        self.config_mut().trust.pinned =
            config_certificates(pem.as_ref(), "pinned certificates are X.509 certificates in PEM")?;
        Ok(self)
    }

    /// The transmission-time tolerance (default [`paypal::TOLERANCE`]: see there).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, guard::Guard, inbox::MemoryInbox, paypal_fetch::PayPalCertificates};
    /// use hookguard::verify::Tolerance;
    /// # use hookguard::{paypal_fetch::CertificateFetcher, replay::BoxFuture};
    /// # const CERT: &[u8] = include_bytes!("providers/testdata/paypal_cert.pem");
    /// # const BODY: &[u8] = include_bytes!("providers/testdata/paypal_body.json");
    /// # // PayPal's sandbox delivery, sent 2019-08-29T10:49:33Z, naming its certificate's URL.
    /// # fn delivery(cert_url: &str) -> (http::request::Parts, bytes::Bytes) {
    /// #     let req = http::Request::post("/hooks/paypal")
    /// #         .header("paypal-transmission-id", "afa30d40-ca4a-11e9-ab68-7d4e2605c70c")
    /// #         .header("paypal-transmission-time", "2019-08-29T10:49:33Z")
    /// #         .header("paypal-transmission-sig", "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg==")
    /// #         .header("paypal-cert-url", cert_url)
    /// #         .header("paypal-auth-algo", "SHA256withRSA")
    /// #         .body(())
    /// #         .unwrap();
    /// #     (req.into_parts().0, bytes::Bytes::from_static(BODY))
    /// # }
    /// const CERT_URL: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270";
    ///
    /// # #[derive(Debug, Clone, Default)]
    /// # struct Counting(Arc<AtomicUsize>);
    /// # impl CertificateFetcher for Counting {
    /// #     fn fetch<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>> {
    /// #         self.0.fetch_add(1, Ordering::SeqCst);
    /// #         Box::pin(std::future::ready(Ok(CERT.to_vec())))
    /// #     }
    /// # }
    /// // A day after the delivery was sent: within the default 4 days, not within 5 minutes.
    /// let clock = ManualClock::at_unix(1_567_075_773 + 24 * 3600);
    /// let accept = |source: PayPalCertificates| {
    ///     let source = source.clock(clock.clone());
    ///     Guard::builder_with_source("paypal", source).clock(clock.clone()).inbox(MemoryInbox::new()).build()
    /// };
    /// // `Counting`: a `CertificateFetcher` serving PayPal's sandbox certificate from memory
    /// // (pinned: the test vector's certificate cannot be chain-checked offline).
    /// let default = PayPalCertificates::with_fetcher("0FV983392A0531201", Counting::default())
    ///     .unwrap()
    ///     .pin_certificates(CERT)
    ///     .unwrap();
    /// let strict = PayPalCertificates::with_fetcher("0FV983392A0531201", Counting::default())
    ///     .unwrap()
    ///     .pin_certificates(CERT)
    ///     .unwrap()
    ///     .tolerance(Tolerance::symmetric(Duration::from_secs(300)));
    /// // `delivery(url)`: PayPal's sandbox delivery, naming the certificate at `url`.
    /// let (parts, body) = delivery(CERT_URL);
    /// assert_eq!(accept(default).accept(&parts, body.clone()).await.status(), 202);
    /// let stale = accept(strict).accept(&parts, body).await;
    /// assert_eq!(stale.status(), 401);
    /// assert!(String::from_utf8_lossy(stale.body()).contains("timestamp-too-old"));
    /// # }
    /// ```
    #[must_use]
    pub fn tolerance(mut self, tolerance: Tolerance) -> Self {
        self.config_mut().tolerance = tolerance;
        self
    }

    /// How long a fetched certificate is used before it is fetched again (default 24 h,
    /// **at least a minute**: a shorter one, `Duration::ZERO` included, is taken as a
    /// minute), and never past the certificate's `notAfter`. A certificate that verified
    /// a delivery is used past its time to live, within its validity period, until a
    /// re-fetch succeeds (see the [module docs](self)).
    ///
    /// The minute is longer than a fetch may take (10 s, and 10 s waiting for its turn):
    /// a time to live shorter than a fetch would have every delivery fetch again, and
    /// the deliveries waiting for a fetch find its certificate expired already (503,
    /// although the fetch succeeded).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, guard::Guard, inbox::MemoryInbox, paypal_fetch::PayPalCertificates};
    /// # use hookguard::{paypal_fetch::CertificateFetcher, replay::BoxFuture};
    /// # const CERT: &[u8] = include_bytes!("providers/testdata/paypal_cert.pem");
    /// # const BODY: &[u8] = include_bytes!("providers/testdata/paypal_body.json");
    /// # // PayPal's sandbox delivery, sent 2019-08-29T10:49:33Z, naming its certificate's URL.
    /// # fn delivery(cert_url: &str) -> (http::request::Parts, bytes::Bytes) {
    /// #     let req = http::Request::post("/hooks/paypal")
    /// #         .header("paypal-transmission-id", "afa30d40-ca4a-11e9-ab68-7d4e2605c70c")
    /// #         .header("paypal-transmission-time", "2019-08-29T10:49:33Z")
    /// #         .header("paypal-transmission-sig", "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg==")
    /// #         .header("paypal-cert-url", cert_url)
    /// #         .header("paypal-auth-algo", "SHA256withRSA")
    /// #         .body(())
    /// #         .unwrap();
    /// #     (req.into_parts().0, bytes::Bytes::from_static(BODY))
    /// # }
    /// const CERT_URL: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270";
    ///
    /// # #[derive(Debug, Clone, Default)]
    /// # struct Counting(Arc<AtomicUsize>);
    /// # impl CertificateFetcher for Counting {
    /// #     fn fetch<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>> {
    /// #         self.0.fetch_add(1, Ordering::SeqCst);
    /// #         Box::pin(std::future::ready(Ok(CERT.to_vec())))
    /// #     }
    /// # }
    /// let clock = ManualClock::at_unix(1_567_075_773);
    /// // `Counting`: a `CertificateFetcher` serving PayPal's sandbox certificate from memory,
    /// // counting its fetches.
    /// let fetcher = Counting::default();
    /// let source = PayPalCertificates::with_fetcher("0FV983392A0531201", fetcher.clone())
    ///     .unwrap()
    ///     .pin_certificates(CERT) // the test vector's certificate: see `pin_certificates`
    ///     .unwrap()
    ///     .ttl(Duration::from_secs(3600))
    ///     .clock(clock.clone());
    /// let guard = Guard::builder_with_source("paypal", source).clock(clock.clone()).inbox(MemoryInbox::new()).build();
    /// // `delivery(url)`: PayPal's sandbox delivery, naming the certificate at `url`.
    /// let (parts, body) = delivery(CERT_URL);
    /// guard.accept(&parts, body.clone()).await;
    /// clock.advance(Duration::from_secs(59 * 60));
    /// guard.accept(&parts, body.clone()).await;
    /// assert_eq!(fetcher.0.load(Ordering::SeqCst), 1, "cached for an hour");
    /// clock.advance(Duration::from_secs(2 * 60));
    /// guard.accept(&parts, body.clone()).await;
    /// assert_eq!(fetcher.0.load(Ordering::SeqCst), 2, "fetched again");
    ///
    /// // A time to live shorter than a minute is a minute.
    /// let fetcher = Counting::default();
    /// let source = PayPalCertificates::with_fetcher("0FV983392A0531201", fetcher.clone())
    ///     .unwrap()
    ///     .pin_certificates(CERT)
    ///     .unwrap()
    ///     .ttl(Duration::ZERO)
    ///     .clock(clock.clone());
    /// let guard = Guard::builder_with_source("paypal", source).clock(clock.clone()).inbox(MemoryInbox::new()).build();
    /// assert_eq!(guard.accept(&parts, body.clone()).await.status(), 202);
    /// clock.advance(Duration::from_secs(59));
    /// guard.accept(&parts, body).await;
    /// assert_eq!(fetcher.0.load(Ordering::SeqCst), 1, "cached for a minute");
    /// # }
    /// ```
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config_mut().ttl = ttl.max(MIN_TTL);
        self
    }

    /// The clock for cache expiry, the certificates' validity periods when fetched, the
    /// chain check, the new-URL token bucket, and the check of a delivery's transmission
    /// time before its certificate is fetched. Give it the guard's clock (the guard checks
    /// each delivery's time, and the certificate's dates again, with its own): on another
    /// one, a delivery the guard's clock finds fresh can be refused before the fetch.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// use std::time::Duration;
    /// use hookguard::{clock::ManualClock, guard::Guard, inbox::MemoryInbox, paypal_fetch::PayPalCertificates};
    /// # use hookguard::{paypal_fetch::CertificateFetcher, replay::BoxFuture};
    /// # const CERT: &[u8] = include_bytes!("providers/testdata/paypal_cert.pem");
    /// # const BODY: &[u8] = include_bytes!("providers/testdata/paypal_body.json");
    /// # // PayPal's sandbox delivery, sent 2019-08-29T10:49:33Z, naming its certificate's URL.
    /// # fn delivery(cert_url: &str) -> (http::request::Parts, bytes::Bytes) {
    /// #     let req = http::Request::post("/hooks/paypal")
    /// #         .header("paypal-transmission-id", "afa30d40-ca4a-11e9-ab68-7d4e2605c70c")
    /// #         .header("paypal-transmission-time", "2019-08-29T10:49:33Z")
    /// #         .header("paypal-transmission-sig", "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg==")
    /// #         .header("paypal-cert-url", cert_url)
    /// #         .header("paypal-auth-algo", "SHA256withRSA")
    /// #         .body(())
    /// #         .unwrap();
    /// #     (req.into_parts().0, bytes::Bytes::from_static(BODY))
    /// # }
    /// const CERT_URL: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270";
    ///
    /// # #[derive(Debug, Clone, Default)]
    /// # struct Counting(Arc<AtomicUsize>);
    /// # impl CertificateFetcher for Counting {
    /// #     fn fetch<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>> {
    /// #         self.0.fetch_add(1, Ordering::SeqCst);
    /// #         Box::pin(std::future::ready(Ok(CERT.to_vec())))
    /// #     }
    /// # }
    /// // One clock for the guard and the cache, moved instead of slept.
    /// let clock = ManualClock::at_unix(1_567_075_773);
    /// // `Counting`: a `CertificateFetcher` serving PayPal's sandbox certificate from memory,
    /// // counting its fetches.
    /// let fetcher = Counting::default();
    /// let source = PayPalCertificates::with_fetcher("0FV983392A0531201", fetcher.clone())
    ///     .unwrap()
    ///     .pin_certificates(CERT) // the test vector's certificate: see `pin_certificates`
    ///     .unwrap()
    ///     .clock(clock.clone());
    /// let guard = Guard::builder_with_source("paypal", source).clock(clock.clone()).inbox(MemoryInbox::new()).build();
    /// // `delivery(url)`: PayPal's sandbox delivery, naming the certificate at `url`.
    /// let (parts, body) = delivery(CERT_URL);
    /// assert_eq!(guard.accept(&parts, body.clone()).await.status(), 202);
    /// clock.advance(Duration::from_secs(23 * 3600));
    /// assert_eq!(guard.accept(&parts, body.clone()).await.status(), 200); // a copy
    /// assert_eq!(fetcher.0.load(Ordering::SeqCst), 1, "cached for the default 24 hours");
    /// clock.advance(Duration::from_secs(2 * 3600));
    /// guard.accept(&parts, body).await;
    /// assert_eq!(fetcher.0.load(Ordering::SeqCst), 2, "fetched again");
    /// # }
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config_mut().clock = Arc::new(clock);
        self
    }

    fn lookup(&self, url: &str, now: OffsetDateTime) -> Lookup {
        let Ok(cache) = self.state.cache.lock() else { return Lookup::Missing };
        match cache.map.get(url) {
            Some(c) if c.expires > now => Lookup::Fresh(Arc::clone(&c.scheme)),
            Some(c) if c.scheme.verified() && c.scheme.valid_at(now) && now <= c.usable_until => {
                Lookup::Stale(Arc::clone(&c.scheme))
            }
            Some(c) if c.scheme.verified() => Lookup::Known,
            _ => Lookup::Missing,
        }
    }

    /// Whether a fetch of `url` failed less than [`RETRY_FAILED_AFTER`] ago.
    fn failed_lately(&self, url: &str, now: OffsetDateTime) -> bool {
        self.state.failed.lock().is_ok_and(|failed| failed.get(url).is_some_and(|until| *until > now))
    }

    /// Remembers that fetching `url` failed (bounded: the oldest are dropped first).
    fn remember_failure(&self, url: &str, now: OffsetDateTime) {
        let until = later(now, RETRY_FAILED_AFTER);
        if let Ok(mut failed) = self.state.failed.lock() {
            insert_bounded(
                &mut failed,
                self.config.capacity,
                url,
                until,
                |until| *until > now,
                |until| *until,
            );
        }
    }

    /// Takes a token from the new-URL bucket, if it has one at `now`.
    #[cfg(test)]
    fn take_token(&self, now: OffsetDateTime) -> bool {
        self.state.admission.lock().is_ok_and(|mut admission| admission.token(now, true))
    }

    /// Caches the certificate fetched from `url` until its time to live or its
    /// `notAfter`, whichever comes first (see the [module docs](self) for which makes
    /// room when the cache is full).
    fn remember(&self, url: &str, scheme: Arc<Tracked>, now: OffsetDateTime) {
        let expires = later(now, self.config.ttl).min(scheme.not_after);
        let usable_until = later(now, self.config.ttl.saturating_mul(MAX_STALE_TTLS)).min(scheme.not_after);
        if let Ok(mut cache) = self.state.cache.lock() {
            let cache = &mut *cache;
            cache.puts = cache.puts.saturating_add(1);
            let entry = Cached { scheme, expires, usable_until, put: cache.puts };
            insert_bounded(
                &mut cache.map,
                self.config.capacity,
                url,
                entry,
                |c| {
                    c.expires > now
                        || (c.scheme.verified() && c.scheme.valid_at(now) && now <= c.usable_until)
                },
                |c| (c.scheme.verified(), c.put),
            );
        }
    }

    /// Drops what the cache holds for `url` (PayPal answered that it is not there).
    fn forget(&self, url: &str) {
        if let Ok(mut cache) = self.state.cache.lock() {
            cache.map.remove(url);
        }
    }

    /// Fetches, checks and caches the certificate at `url`; `verified` when its URL's
    /// certificate verified a delivery before (the new one keeps that standing).
    async fn fetch(&self, url: &str, verified: bool, now: OffsetDateTime) -> Result<Arc<Tracked>, Failed> {
        // Bounded whatever the fetcher (one of yours may not bound itself): a fetch that
        // never ends would hold its permit, and a verified certificate's re-fetch, for ever.
        let fetched =
            tokio::time::timeout(FETCH_LIMIT, self.config.fetcher.fetch(url)).await.unwrap_or_else(|_| {
                Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the certificate fetch took longer than 10 s",
                )) as BoxError)
            });
        let not_found = matches!(&fetched, Err(e) if e.downcast_ref::<CertificateNotFound>().is_some());
        // PayPal's "not there" for a URL that never verified a delivery: anyone can name a
        // made-up certificate on PayPal's host. Any other failure (DNS, connection, TLS, a
        // timeout, a 5xx) stays an outage: `verified` is this process's own knowledge, so
        // after a restart PayPal's genuine certificate is "never verified" too, and a
        // blocked route to PayPal must still warn.
        let anyone = not_found && !verified;
        let checked = match fetched {
            Ok(pem) => self.config.trust.check(&pem, now).map_err(|e| Box::new(e) as BoxError),
            Err(e) => Err(e),
        };
        let scheme = checked.and_then(|c| {
            paypal::scheme_for_certificate(
                self.config.webhook_id.clone(),
                &c.certificate,
                self.config.tolerance,
            )
            .map(|scheme| (scheme, c.not_before, c.not_after))
            .map_err(|e| Box::new(CertError::Key(e)) as BoxError)
        });
        let (scheme, not_before, not_after) = match scheme {
            Ok(found) => found,
            Err(e) => {
                self.remember_failure(url, now);
                if not_found {
                    // PayPal withdrew it: what was fetched from there before verifies no more.
                    self.forget(url);
                }
                // The URL has passed `is_trusted_cert_url` (PayPal's hosts, no query); the
                // error is ours, never the bytes fetched. What anyone can cause is logged
                // at debug only (no log flood, no false outage).
                if anyone {
                    tracing::debug!(url, error = %e, "PayPal certificate not fetched for a URL never verified");
                } else {
                    tracing::warn!(url, error = %e, "PayPal certificate not trusted or not fetched");
                }
                return Err(Failed { error: e, not_found, anyone });
            }
        };
        let scheme = Arc::new(Tracked { scheme, verified: AtomicBool::new(verified), not_before, not_after });
        self.remember(url, Arc::clone(&scheme), now);
        tracing::info!(url, "fetched PayPal certificate");
        Ok(scheme)
    }

    /// The certificate at `url` that verified a delivery and whose time to live ran out:
    /// re-fetched by one request at a time, `stale` meanwhile and when that fails, unless
    /// PayPal answers that it is not there any more.
    async fn refresh(
        &self,
        url: &str,
        stale: Arc<Tracked>,
        now: OffsetDateTime,
    ) -> Result<Arc<Tracked>, SourceError> {
        if self.failed_lately(url, now) {
            return Ok(stale);
        }
        let Ok(permit) = Arc::clone(&self.state.refetches).try_acquire_owned() else { return Ok(stale) };
        match self.lookup(url, now) {
            Lookup::Fresh(scheme) => Ok(scheme),
            _ => match self.spawn_fetch(url, true, now, permit).await {
                Ok(scheme) => Ok(scheme),
                Err(failed) if failed.not_found => Err(failed.into()),
                Err(_) => Ok(stale),
            },
        }
    }

    /// Starts a fetch of `url`, or `Err` with the one running.
    fn start_flight(&self, url: &str) -> Result<Flight, Option<tokio::sync::watch::Receiver<()>>> {
        let mut admission = self.state.admission.lock().map_err(|_| None)?;
        if let Some(running) = admission.in_flight.get(url) {
            return Err(Some(running.clone()));
        }
        Ok(self.flight(&mut admission, url.to_owned()))
    }

    /// Puts `url` in flight (the caller holds `admission`, the lock of
    /// [`State::admission`], and has checked that it is not in flight).
    fn flight(&self, admission: &mut Admission, url: String) -> Flight {
        let (done, running) = tokio::sync::watch::channel(());
        admission.in_flight.insert(url.clone(), running);
        Flight { state: Arc::clone(&self.state), url, _done: done }
    }

    /// Fetches `url` (see [`fetch`](Self::fetch)) in a task of its own, spawned at once,
    /// which holds `hold` (the fetch's permit, and its [`Flight`] if it has one) until the
    /// fetch ends; the future returned waits for it. A request that goes away (a sender
    /// that hung up) thus cancels nothing: the fetch runs to its end, its certificate
    /// lands in the cache or its failure on record, and the requests waiting for it get
    /// it. Whatever started a fetch (a token, a permit) is spent once, however many
    /// requests are dropped.
    fn spawn_fetch<H: Send + 'static>(
        &self,
        url: &str,
        verified: bool,
        now: OffsetDateTime,
        hold: H,
    ) -> impl Future<Output = Result<Arc<Tracked>, Failed>> + Send + 'static {
        /// Holds what started the fetch until it ends; a fetch that did not end (its task
        /// panicked, or the runtime shut down) is a failure as any other, on record before
        /// the hold goes (whether or not a request still waits for the task).
        struct Running<H> {
            source: PayPalCertificates,
            url: String,
            now: OffsetDateTime,
            ended: bool,
            _hold: H,
        }
        impl<H> Running<H> {
            /// The fetch ended: what it found is on record.
            fn ended(&mut self) {
                self.ended = true;
            }
        }
        impl<H> Drop for Running<H> {
            fn drop(&mut self) {
                if !self.ended {
                    self.source.remember_failure(&self.url, self.now);
                }
            }
        }
        let mut running =
            Running { source: self.share(), url: url.to_owned(), now, ended: false, _hold: hold };
        let task = tokio::spawn(async move {
            let fetched = running.source.fetch(&running.url, verified, running.now).await;
            running.ended();
            fetched
        });
        async move {
            task.await.unwrap_or_else(|e| Err(Failed { error: Box::new(e), not_found: false, anyone: false }))
        }
    }

    /// The fetch of `url` running, if one is.
    fn running(&self, url: &str) -> Option<tokio::sync::watch::Receiver<()>> {
        self.state.admission.lock().ok()?.in_flight.get(url).cloned()
    }

    /// Waits for the fetch of `url` that another request runs, and answers with what it
    /// found.
    async fn wait_for(
        &self,
        url: &str,
        mut running: Option<tokio::sync::watch::Receiver<()>>,
    ) -> Result<Arc<Tracked>, SourceError> {
        if let Some(running) = &mut running {
            // Ends when the fetch does (its sender dropped); the fetch is bounded, this too.
            let _ = tokio::time::timeout(FETCH_LIMIT, running.changed()).await;
        }
        match self.lookup(url, self.config.clock.now()) {
            Lookup::Fresh(scheme) | Lookup::Stale(scheme) => Ok(scheme),
            _ => Err(SourceError::Throttled("the certificate could not be fetched lately".into())),
        }
    }

    /// Waits at most [`PERMIT_WAIT`] for one of `permits`.
    async fn permit(
        permits: &Arc<tokio::sync::Semaphore>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, SourceError> {
        tokio::time::timeout(PERMIT_WAIT, Arc::clone(permits).acquire_owned())
            .await
            .map_err(|_| SourceError::Throttled("busy fetching other certificates".into()))?
            .map_err(|e| SourceError::Unavailable(Box::new(e)))
    }

    /// The scheme for the certificate at `url`, a [`normalized`] URL, named by a request
    /// with these `headers`.
    async fn load(&self, url: &str, headers: &http::HeaderMap) -> Result<Arc<dyn Scheme>, SourceError> {
        let now = self.config.clock.now();
        let known = match self.lookup(url, now) {
            Lookup::Fresh(scheme) => return Ok(scheme),
            Lookup::Stale(scheme) => return Ok(self.refresh(url, scheme, now).await?),
            Lookup::Known => true,
            Lookup::Missing => false,
        };
        // Nothing is spent on a request that fails whatever the certificate.
        if let Err(rejection) = paypal::precheck(headers, self.config.tolerance, now) {
            return Ok(Arc::new(Refuse(rejection)));
        }
        // One fetch per URL at a time: the others wait for it.
        if let Some(running) = self.running(url) {
            return Ok(self.wait_for(url, Some(running)).await?);
        }
        // A URL whose fetch just failed is not fetched again for each request naming it.
        if self.failed_lately(url, now) {
            return Err(SourceError::Throttled("the certificate could not be fetched lately".into()));
        }
        if known {
            // At most one re-fetch of a known URL at once, besides the new ones; a
            // request waits for its turn at most as long as one fetch may take.
            let permit = Self::permit(&self.state.refetches).await?;
            if let Lookup::Fresh(scheme) = self.lookup(url, now) {
                return Ok(scheme);
            }
            if self.failed_lately(url, now) {
                return Err(SourceError::Throttled("the certificate could not be fetched lately".into()));
            }
            let flight = match self.start_flight(url) {
                Ok(flight) => flight,
                Err(running) => return Ok(self.wait_for(url, running).await?),
            };
            return Ok(self.spawn_fetch(url, true, now, (permit, flight)).await?);
        }
        // A new URL: counted, and answered at once when the bucket has no token.
        let has_token = self.state.admission.lock().is_ok_and(|mut admission| {
            admission.count(url);
            admission.token(now, false)
        });
        if !has_token {
            return Err(SourceError::Throttled("too many new PayPal certificate URLs lately".into()));
        }
        // At most two fetches of new URLs at once, whatever arrives.
        let permit = Self::permit(&self.state.fetches).await?;
        if let Lookup::Fresh(scheme) = self.lookup(url, now) {
            return Ok(scheme);
        }
        // Fetched by another request meanwhile: waited for, with no token spent.
        if let Some(running) = self.running(url) {
            drop(permit);
            return Ok(self.wait_for(url, Some(running)).await?);
        }
        // The token goes to the URL most named, which may not be this request's; the
        // flight is started under the same lock, so one URL is never fetched twice. Once
        // taken, the token stays spent: the fetch runs in a task of its own, to its end
        // even if this request goes away (and so does the chosen URL's turn, which a
        // request dropped midway thus cannot throw away).
        let flight = {
            let Ok(mut admission) = self.state.admission.lock() else {
                return Err(SourceError::Unavailable("the certificate cache is poisoned".into()));
            };
            // A candidate cached meanwhile (fetched for a request that named it) is no
            // longer waiting: it takes no token, and is not fetched again.
            let cached: Vec<String> = admission
                .candidates
                .keys()
                .filter(|u| matches!(self.lookup(u, now), Lookup::Fresh(_) | Lookup::Stale(_)))
                .cloned()
                .collect();
            for u in &cached {
                admission.candidates.remove(u);
            }
            let chosen = admission.choose(url);
            let Some(chosen) = chosen.filter(|_| admission.token(now, true)) else {
                return Err(SourceError::Throttled("too many new PayPal certificate URLs lately".into()));
            };
            admission.candidates.remove(&chosen);
            self.flight(&mut admission, chosen)
        };
        let chosen = flight.url.clone();
        let fetched = self.spawn_fetch(&chosen, false, now, (permit, flight)).await;
        if chosen == url {
            return Ok(fetched?);
        }
        // This request's URL may have been fetched meanwhile by another.
        match self.lookup(url, now) {
            Lookup::Fresh(scheme) => Ok(scheme),
            _ => Err(SourceError::Throttled(
                "the new-URL token went to a certificate URL more requests named".into(),
            )),
        }
    }
}

/// Answers every request with the same rejection (a missing or untrusted certificate URL),
/// so the guard renders it like any other.
#[derive(Debug)]
struct Refuse(Rejection);

impl Scheme for Refuse {
    fn provider(&self) -> &str {
        "paypal"
    }
    fn verify<'a>(
        &'a self,
        _req: &WebhookRequest<'a>,
        _now: OffsetDateTime,
    ) -> Result<Verified<'a>, Rejection> {
        Err(self.0.clone())
    }
}

const CERT_URL: http::HeaderName = http::HeaderName::from_static("paypal-cert-url");

impl SchemeSource for PayPalCertificates {
    fn scheme<'a>(&'a self, parts: &'a Parts) -> BoxFuture<'a, Result<Arc<dyn Scheme>, SourceError>> {
        Box::pin(async move {
            let refuse = |reason| {
                Ok(Arc::new(Refuse(Rejection::with_detail(reason, Detail::Header(CERT_URL))))
                    as Arc<dyn Scheme>)
            };
            let Some(value) = parts.headers.get(&CERT_URL) else { return refuse(Reason::MissingHeader) };
            let Ok(url) = value.to_str() else { return refuse(Reason::MalformedHeader) };
            let Some(url) = normalized(url.trim()) else {
                // Anyone can send one: debug only (the refusal is counted and logged as a
                // rejected webhook).
                tracing::debug!("PayPal certificate URL on an untrusted host refused");
                return refuse(Reason::MalformedHeader);
            };
            self.load(&url, &parts.headers).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::ManualClock;

    const CERT: &[u8] = include_bytes!("providers/testdata/paypal_cert.pem");
    const BODY: &[u8] = include_bytes!("providers/testdata/paypal_body.json");
    /// Self-signed, for `messageverificationcerts.paypal.com`, 2026-12-07 to 2126-11-13
    /// (`openssl req -x509 -newkey rsa:2048 -days 36500 -subj /CN=…`): anyone can make one.
    const SELF_SIGNED: &[u8] = b"-----BEGIN CERTIFICATE-----\n\
MIIDPzCCAiegAwIBAgIUeHwWlDJMQYdIZBfEe9c1Ah/dSdQwDQYJKoZIhvcNAQEL\n\
BQAwLjEsMCoGA1UEAwwjbWVzc2FnZXZlcmlmaWNhdGlvbmNlcnRzLnBheXBhbC5j\n\
b20wIBcNMjYxMjA3MDY0NjUyWhgPMjEyNjExMTMwNjQ2NTJaMC4xLDAqBgNVBAMM\n\
I21lc3NhZ2V2ZXJpZmljYXRpb25jZXJ0cy5wYXlwYWwuY29tMIIBIjANBgkqhkiG\n\
9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwpdVcH2qF5kR1WDozWKlWd0314MX/FjNxJ+M\n\
8uN75fRM3gi0C4bQl6iYA/hwQY6r6gudgEa2VrQfLLzNSZG0p7HeZ9qrEupah2rx\n\
sPGAsVP17drC8mESsR+ccESoOVLAgLQbXsdMwablVSqp0DKJ56sVM2h6kmOfDKBt\n\
cxnGkf204IlhCS2B4AauEa8Ah8ufpoO4QHzvWCo86NGMpgvCoMB5a1BuFnaOztZO\n\
pTa43Hq/hC9EyOz1rsAqksum6Te+FDCYJUW8fBCJtA4jPJ1OLfpaYypMQDT9SQFy\n\
MYJrgSXh2vc+OAPmNoL9fAP5jjf1yyeCowcWD4b+1dKheT2W7QIDAQABo1MwUTAd\n\
BgNVHQ4EFgQU+AchpLmmn6eOPyvfEug13RPwrecwHwYDVR0jBBgwFoAU+AchpLmm\n\
n6eOPyvfEug13RPwrecwDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0BAQsFAAOC\n\
AQEAoKY3JPturnFGA7p3UEUp4+48jau31Na3Hf9GkR4puoNxsIHOwF37jZmlkqrE\n\
tJZCXBvl/Ix9ZeYWMH7RXjNDqFu5nnr5sadtb6bt8t0KDR9dzvcX5ZsnHY/TgRqA\n\
3qJEkMHLqJD/vecT1ldqh3FXy9Ps730r/Bn5yu3lEkYltTOXPmm9oUT6ZXfabLH0\n\
wVS6CJ0G3XD1MKLzaEo+7myohlZUR/4ZNfvb0od6pWlV4gv2X3XmSVMaUnaXGazU\n\
FoD2K+kGr1TXQn6Zz1f/bdsGSYOeo/syj0v7aFogyamQZwzGWl58eBwtduR+0/nt\n\
gs5RUsCNd+qpuY7hX9y4XOFKQw==\n\
-----END CERTIFICATE-----\n\
";
    const WEBHOOK_ID: &str = "0FV983392A0531201";
    /// When PayPal's sandbox delivery (the Java SDK's test vector) was sent.
    const SENT: i64 = 1_567_075_773;
    const SENT_TEXT: &str = "2019-08-29T10:49:33Z";
    const SIG: &str = "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg==";
    const GENUINE: &str =
        "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270";

    /// PayPal's sandbox delivery, sent at `time`, naming the certificate at `url`.
    fn delivery(url: &str, time: &str) -> http::Request<Vec<u8>> {
        http::Request::post("/hooks/paypal")
            .header("paypal-transmission-id", "afa30d40-ca4a-11e9-ab68-7d4e2605c70c")
            .header("paypal-transmission-time", time)
            .header("paypal-transmission-sig", SIG)
            .header("paypal-cert-url", url)
            .header("paypal-auth-algo", "SHA256withRSA")
            .body(BODY.to_vec())
            .unwrap()
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Mode {
        /// The certificate at [`GENUINE`], an error for other URLs.
        Serve,
        /// [`CertificateNotFound`] for every URL.
        NotFound,
        /// Another error for every URL.
        Down,
        /// The fetcher panics.
        Panic,
    }

    /// Serves `pem` at [`GENUINE`], recording the URLs fetched; a fetch waits for a
    /// permit of `gate` (open unless a test closes it).
    #[derive(Debug, Clone)]
    struct Fake {
        pem: &'static [u8],
        fetched: Arc<Mutex<Vec<String>>>,
        mode: Arc<Mutex<Mode>>,
        gate: Arc<tokio::sync::Semaphore>,
    }

    impl Fake {
        fn new(pem: &'static [u8]) -> Self {
            Self {
                pem,
                fetched: Arc::default(),
                mode: Arc::new(Mutex::new(Mode::Serve)),
                gate: Arc::new(tokio::sync::Semaphore::new(1000)),
            }
        }
        fn fetched(&self) -> Vec<String> {
            self.fetched.lock().unwrap().clone()
        }
        fn set(&self, mode: Mode) {
            *self.mode.lock().unwrap() = mode;
        }
    }

    impl CertificateFetcher for Fake {
        fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BoxError>> {
            Box::pin(async move {
                self.fetched.lock().unwrap().push(url.to_owned());
                drop(self.gate.acquire().await);
                let mode = *self.mode.lock().unwrap();
                match mode {
                    Mode::Serve if url == GENUINE => Ok(self.pem.to_vec()),
                    Mode::Serve => Err("no certificate there".into()),
                    Mode::NotFound => Err(Box::new(CertificateNotFound) as BoxError),
                    Mode::Down => Err("unreachable".into()),
                    Mode::Panic => panic!("the fetcher panicked"),
                }
            })
        }
    }

    /// A source fetching with `fake`, pinned to PayPal's sandbox certificate (whose chain
    /// is not at hand), on `clock`.
    fn pinned(fake: &Fake, clock: &ManualClock) -> PayPalCertificates {
        PayPalCertificates::with_fetcher(WEBHOOK_ID, fake.clone())
            .unwrap()
            .pin_certificates(CERT)
            .unwrap()
            .clock(clock.clone())
    }

    /// What the source answers a delivery sent at [`SENT`] naming `url`.
    async fn ask(source: &PayPalCertificates, url: &str) -> Result<Arc<dyn Scheme>, SourceError> {
        let (parts, _) = delivery(url, SENT_TEXT).into_parts();
        source.scheme(&parts).await
    }

    /// Fresh, well-shaped URLs an attacker can name, each once.
    fn attacker(n: usize) -> String {
        format!("https://api.paypal.com/v1/notifications/certs/CERT-{n:08x}")
    }

    /// A flood of fresh URLs (100 requests a second) takes every token as soon as it is
    /// due; PayPal's deliveries, one a second, still get the first token after the burst:
    /// its URL, named again and again, is the most named.
    #[tokio::test]
    async fn a_flood_of_fresh_urls_does_not_keep_paypals_out() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = pinned(&fake, &clock);
        let start = clock.now();
        let mut n = 0;
        // The flood empties the bucket first.
        for _ in 0..NEW_URL_BURST {
            assert!(ask(&source, &attacker(n)).await.is_err());
            n += 1;
        }
        assert_eq!(fake.fetched().len(), NEW_URL_BURST as usize);
        // No token left: held back, as anyone can cause (not an outage of the source).
        let held = ask(&source, &attacker(n)).await;
        assert!(matches!(held, Err(SourceError::Throttled(_))), "{:?}", held.err());
        n += 1;
        let mut accepted = None;
        for tick in 0..2 * 15 * 100 {
            clock.advance(Duration::from_millis(10));
            if tick % 100 == 50 {
                if ask(&source, GENUINE).await.is_ok() {
                    accepted = Some(clock.now());
                    break;
                }
            } else {
                let _ = ask(&source, &attacker(n)).await;
                n += 1;
            }
        }
        let fetched = fake.fetched();
        // The first token after the burst went to PayPal's URL, fetched for whichever
        // request found it; PayPal's next delivery is accepted.
        assert_eq!(fetched.iter().position(|u| u == GENUINE), Some(NEW_URL_BURST as usize), "{fetched:?}");
        assert_eq!(fetched.iter().filter(|u| *u == GENUINE).count(), 1);
        let accepted = accepted.expect("PayPal's delivery accepted");
        assert!(accepted - start <= NEW_URL_EVERY + Duration::from_secs(1), "at {}", accepted - start);
    }

    /// Polls `request` once, then drops it (a sender that hangs up), and lets the tasks
    /// it spawned run until they wait.
    async fn hang_up<F: Future>(request: F) {
        let mut request = Box::pin(request);
        let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(request.as_mut().poll(cx))).await;
        assert!(polled.is_pending(), "still fetching");
        drop(request);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// A request dropped while the fetch it ran for the chosen URL was under way (a sender
    /// that hung up) cancels nothing: PayPal's URL, which got the token, is fetched to
    /// the end and cached, so dropping requests does not throw PayPal's turn away.
    #[tokio::test]
    async fn a_fetch_whose_request_went_away_still_serves_paypals_url() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = pinned(&fake, &clock);
        for n in 0..NEW_URL_BURST as usize {
            assert!(ask(&source, &attacker(n)).await.is_err());
        }
        // PayPal's URL, named twice while the bucket is empty.
        for _ in 0..2 {
            assert!(matches!(ask(&source, GENUINE).await, Err(SourceError::Throttled(_))));
        }
        clock.advance(NEW_URL_EVERY);
        fake.gate.forget_permits(1000); // fetches hang
        hang_up(ask(&source, &attacker(1000))).await;
        assert_eq!(fake.fetched().last().map(String::as_str), Some(GENUINE), "fetching PayPal's URL");
        fake.gate.add_permits(1000);
        // PayPal's next delivery finds its certificate (or its fetch, still running):
        // fetched once, with the token taken for it, and no wait for another.
        assert!(ask(&source, GENUINE).await.is_ok());
        assert_eq!(fake.fetched().iter().filter(|u| *u == GENUINE).count(), 1);
        assert!(ask(&source, GENUINE).await.is_ok(), "cached");
    }

    /// A fetch whose task panicked is a failure like any other: kept, and the URL not
    /// fetched again for a minute (each request started another fetch).
    #[tokio::test]
    async fn a_fetcher_that_panics_is_a_failure_kept() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = pinned(&fake, &clock);
        fake.set(Mode::Panic);
        assert!(ask(&source, GENUINE).await.is_err());
        fake.set(Mode::Serve);
        assert!(ask(&source, GENUINE).await.is_err(), "the failure is kept");
        assert_eq!(fake.fetched().len(), 1, "not fetched again");
        clock.advance(RETRY_FAILED_AFTER);
        assert!(ask(&source, GENUINE).await.is_ok(), "fetched again a minute later");
        assert_eq!(fake.fetched().len(), 2);
    }

    /// The same when the request that started the fetch hung up before it panicked: the
    /// task records the failure itself.
    #[tokio::test]
    async fn a_fetcher_that_panics_after_its_request_went_away_is_a_failure_kept() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = pinned(&fake, &clock);
        fake.set(Mode::Panic);
        fake.gate.forget_permits(1000); // the fetch waits
        hang_up(ask(&source, GENUINE)).await;
        fake.gate.add_permits(1000);
        // The task runs on and panics; its fetch is then no longer in flight.
        for _ in 0..100 {
            if source.running(GENUINE).is_none() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(source.running(GENUINE).is_none(), "the fetch ended");
        fake.set(Mode::Serve);
        assert!(ask(&source, GENUINE).await.is_err(), "the failure is kept");
        assert_eq!(fake.fetched().len(), 1, "not fetched again");
    }

    /// A builder method after certificates were fetched starts them afresh: they were
    /// checked under the old settings (another trust, another tolerance).
    #[tokio::test]
    async fn new_settings_start_the_certificates_afresh() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = pinned(&fake, &clock);
        assert!(ask(&source, GENUINE).await.is_ok());
        assert!(ask(&source, GENUINE).await.is_ok());
        assert_eq!(fake.fetched().len(), 1, "cached");
        let source = source.tolerance(paypal::TOLERANCE);
        assert!(ask(&source, GENUINE).await.is_ok());
        assert_eq!(fake.fetched().len(), 2, "fetched again under the new settings");
    }

    /// Requests that start a new URL's fetch and hang up, again and again, cost at most
    /// the bucket's tokens in fetches: a fetch, once started, keeps its token and runs to
    /// its end, and its failure is kept.
    #[tokio::test]
    async fn hanging_up_does_not_buy_more_fetches() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = pinned(&fake, &clock);
        fake.gate.forget_permits(1000); // fetches hang
        let url = attacker(1);
        for _ in 0..50 {
            hang_up(ask(&source, &url)).await;
        }
        let fetched = fake.fetched().len();
        assert!((1..=NEW_URL_BURST as usize).contains(&fetched), "{fetched} fetches");
        // The fetch ends (the URL is not PayPal's certificate): its failure is kept, and
        // the URL not fetched again.
        fake.gate.add_permits(1000);
        assert!(matches!(ask(&source, &url).await, Err(SourceError::Throttled(_))));
        assert_eq!(fake.fetched().len(), fetched);
        assert!(source.failed_lately(&url, clock.now()));
    }

    /// A URL named once in a flood does not take the next token from a URL named twice,
    /// even when the flood pushed the first naming out of the candidates.
    #[test]
    fn the_most_named_url_gets_the_token() {
        let mut admission = Admission::new();
        admission.count(GENUINE);
        for n in 0..10 * MAX_CANDIDATES {
            admission.count(&attacker(n));
        }
        assert!(!admission.candidates.contains_key(GENUINE), "pushed out");
        admission.count(GENUINE);
        for n in 10 * MAX_CANDIDATES..20 * MAX_CANDIDATES {
            admission.count(&attacker(n));
        }
        assert_eq!(admission.candidates.len(), MAX_CANDIDATES);
        assert_eq!(admission.choose(&attacker(20 * MAX_CANDIDATES - 1)).as_deref(), Some(GENUINE));
        // Named as often: the request's own URL first.
        let mut quiet = Admission::new();
        quiet.count(&attacker(1));
        quiet.count(&attacker(2));
        assert_eq!(quiet.choose(&attacker(1)), Some(attacker(1)));
        assert_eq!(quiet.choose(&attacker(2)), Some(attacker(2)));
    }

    /// Two deliveries naming one new URL at once: one fetch (and one token), both served.
    #[tokio::test]
    async fn one_fetch_per_url_at_a_time() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        fake.gate.forget_permits(1000);
        let source = pinned(&fake, &clock);
        let (a, b, ()) = tokio::join!(ask(&source, GENUINE), ask(&source, GENUINE), async {
            // Both requests are waiting by now: one for the fetcher, one for its fetch.
            tokio::task::yield_now().await;
            fake.gate.add_permits(1000);
        });
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(fake.fetched(), [GENUINE]);
        // The bucket gave one token.
        for n in 1..NEW_URL_BURST {
            assert!(source.take_token(clock.now()), "token {n}");
        }
        assert!(!source.take_token(clock.now()));
    }

    /// Nothing is fetched for a delivery that fails whatever the certificate.
    #[tokio::test]
    async fn a_request_that_cannot_verify_spends_nothing() {
        let clock = ManualClock::at_unix(SENT + 5 * 24 * 3600);
        let fake = Fake::new(CERT);
        let source = pinned(&fake, &clock);
        // Sent five days ago: beyond the tolerance.
        let scheme = ask(&source, GENUINE).await.unwrap();
        let req = delivery(GENUINE, SENT_TEXT);
        let refused = scheme.verify(&WebhookRequest::from_request(&req), clock.now()).unwrap_err();
        assert_eq!(refused.reason(), Reason::TimestampTooOld);
        let (mut parts, _) = delivery(GENUINE, "2019-09-03T10:49:33Z").into_parts();
        parts.headers.insert("paypal-auth-algo", http::HeaderValue::from_static("SHA1withRSA"));
        assert!(source.scheme(&parts).await.is_ok(), "refused by the scheme answered");
        assert!(fake.fetched().is_empty());
        assert!(source.state.admission.lock().unwrap().candidates.is_empty(), "not counted");
    }

    /// A self-signed certificate with PayPal's name, served through a fetcher other than
    /// the built-in one, is refused by default: the chain is checked.
    #[tokio::test]
    async fn another_fetcher_checks_the_chain() {
        const NOW: &str = "2027-01-01T00:00:00Z";
        let clock = ManualClock::at_unix(1_798_761_600);
        let fake = Fake::new(SELF_SIGNED);
        let (parts, _) = delivery(GENUINE, NOW).into_parts();
        let source = PayPalCertificates::with_fetcher(WEBHOOK_ID, fake.clone()).unwrap().clock(clock.clone());
        let Err(SourceError::Unavailable(e)) = source.scheme(&parts).await else { panic!("accepted") };
        assert!(e.to_string().contains("does not chain"), "{e}");
        assert_eq!(fake.fetched().len(), 1);
        // Only when asked for.
        let source = PayPalCertificates::with_fetcher(WEBHOOK_ID, fake.clone())
            .unwrap()
            .without_chain_check()
            .clock(clock.clone());
        assert!(source.scheme(&parts).await.is_ok());
        // The built-in fetcher keeps it off (see the module docs).
        assert!(
            !PayPalCertificates::with_fetcher(WEBHOOK_ID, HttpsFetcher::new().unwrap())
                .unwrap()
                .config
                .trust
                .chain
        );
        assert!(!PayPalCertificates::new(WEBHOOK_ID).unwrap().config.trust.chain);
    }

    /// A cached certificate that verified a delivery, fetched again: with PayPal's
    /// sandbox delivery verified through it at `clock`.
    async fn verified_source(fake: &Fake, clock: &ManualClock) -> PayPalCertificates {
        let source = pinned(fake, clock);
        let scheme = ask(&source, GENUINE).await.unwrap();
        let req = delivery(GENUINE, SENT_TEXT);
        assert!(scheme.verify(&WebhookRequest::from_request(&req), clock.now()).is_ok());
        source
    }

    /// PayPal answers 404 (or 410) for a certificate it verified with: it stops
    /// verifying at once; other failures leave it in use.
    #[tokio::test]
    async fn a_withdrawn_certificate_stops_verifying() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = verified_source(&fake, &clock).await;
        clock.advance(Duration::from_secs(24 * 3600 + 1));
        fake.set(Mode::Down);
        assert!(ask(&source, GENUINE).await.is_ok(), "a failed re-fetch: the cached one");
        assert_eq!(fake.fetched().len(), 2);
        clock.advance(RETRY_FAILED_AFTER + Duration::from_secs(1));
        fake.set(Mode::NotFound);
        assert!(ask(&source, GENUINE).await.is_err(), "withdrawn");
        assert_eq!(fake.fetched().len(), 3);
        assert!(ask(&source, GENUINE).await.is_err());
        clock.advance(RETRY_FAILED_AFTER + Duration::from_secs(1));
        assert!(ask(&source, GENUINE).await.is_err());
        // Fetched again (a new URL now, with a token), and served again if PayPal does.
        fake.set(Mode::Serve);
        clock.advance(RETRY_FAILED_AFTER + Duration::from_secs(1));
        assert!(ask(&source, GENUINE).await.is_ok());
    }

    /// The re-fetch of a certificate that verified a delivery (its URL is PayPal's, and
    /// takes no token) runs to its end too when the request that started it goes away:
    /// hanging up again and again fetches it once.
    #[tokio::test]
    async fn hanging_up_does_not_buy_more_refetches() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = verified_source(&fake, &clock).await;
        // Past the 3 days a certificate verifies while its re-fetches fail: known, not usable.
        clock.advance(Duration::from_secs(3 * 24 * 3600 + 1));
        fake.gate.forget_permits(1000); // fetches hang
        for _ in 0..50 {
            hang_up(ask(&source, GENUINE)).await;
        }
        assert_eq!(fake.fetched().len(), 2, "fetched, then re-fetched once");
        fake.gate.add_permits(1000);
        assert!(ask(&source, GENUINE).await.is_ok());
        assert_eq!(fake.fetched().len(), 2);
    }

    /// While re-fetches fail, a certificate verifies at most [`MAX_STALE_TTLS`] times its
    /// time to live after it was fetched.
    #[tokio::test]
    async fn a_stale_certificate_verifies_for_a_while_only() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = verified_source(&fake, &clock).await;
        fake.set(Mode::Down);
        clock.advance(Duration::from_secs(24 * 3600 + 1));
        assert!(ask(&source, GENUINE).await.is_ok());
        clock.advance(Duration::from_secs(2 * 24 * 3600 - 61));
        assert!(ask(&source, GENUINE).await.is_ok(), "a minute short of 3 days");
        clock.advance(Duration::from_secs(61));
        assert!(ask(&source, GENUINE).await.is_err(), "3 days and a second");
        let fetches = fake.fetched().len();
        // Its URL is still PayPal's: fetched again without a token once a minute.
        fake.set(Mode::Serve);
        clock.advance(RETRY_FAILED_AFTER + Duration::from_secs(1));
        assert!(ask(&source, GENUINE).await.is_ok());
        assert_eq!(fake.fetched().len(), fetches + 1);
    }

    /// The spellings `is_trusted_cert_url` accepts for one URL normalize to one.
    #[test]
    fn one_spelling_per_url() {
        let plain = "https://api.paypal.com/v1/notifications/certs/CERT-1";
        for url in [
            plain,
            "HTTPS://API.PayPal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com.:443/v1/notifications/certs/CERT-1",
            "https://api.paypal.com:/v1/notifications/certs/CERT-1",
            "hTTps://api.paypal.COM./v1/notifications/certs/CERT-1",
        ] {
            assert_eq!(normalized(url).as_deref(), Some(plain), "{url}");
        }
        // The path keeps its case.
        assert_eq!(
            normalized("https://api.paypal.com/v1/notifications/certs/cert-1").as_deref(),
            Some("https://api.paypal.com/v1/notifications/certs/cert-1")
        );
        for refused in [
            "http://api.paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
            "https://api.paypal.com../v1/notifications/certs/CERT-1",
            "https://paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com/c",
            "https://evil.example/c",
        ] {
            assert_eq!(normalized(refused), None, "{refused}");
        }
    }

    /// `Duration::MAX` saturates to the farthest time instead of panicking.
    #[test]
    fn later_saturates() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(later(now, Duration::from_secs(60)), now + Duration::from_secs(60));
        assert_eq!(later(now, Duration::MAX), PrimitiveDateTime::MAX.assume_utc());
        let end = PrimitiveDateTime::MAX.assume_utc();
        assert_eq!(later(end, Duration::from_secs(1)), end);
    }

    /// The bucket gives [`NEW_URL_BURST`] tokens at once, then one per [`NEW_URL_EVERY`]
    /// by the injected time, and survives a clock moved back.
    #[test]
    fn token_bucket() {
        let source = PayPalCertificates::new("WH").unwrap();
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_567_075_773);
        for n in 0..NEW_URL_BURST {
            assert!(source.take_token(t0), "token {n}");
        }
        assert!(!source.take_token(t0), "the bucket is empty");
        let almost = t0 + NEW_URL_EVERY - Duration::from_secs(1);
        assert!(!source.take_token(almost));
        let one_later = t0 + NEW_URL_EVERY;
        assert!(source.take_token(one_later));
        assert!(!source.take_token(one_later));
        // A quiet hour fills it up to the burst, no more.
        let hour = t0 + Duration::from_secs(3600);
        for n in 0..NEW_URL_BURST {
            assert!(source.take_token(hour), "token {n} after an hour");
        }
        assert!(!source.take_token(hour));
        // A clock moved back a day does not leave the bucket empty for a day.
        let back = t0 - Duration::from_secs(24 * 3600);
        assert!(source.take_token(back));
        // The ends of time do not panic.
        let _ = source.take_token(PrimitiveDateTime::MAX.assume_utc());
        assert!(source.take_token(PrimitiveDateTime::MIN.assume_utc()));
    }

    /// PayPal's sandbox certificate (the Java SDK's test vector): the name, the dates,
    /// and the chain (whose intermediate is not at hand) are what is checked.
    #[test]
    fn checks_of_the_vectors_certificate() {
        const CERT: &[u8] = include_bytes!("providers/testdata/paypal_cert.pem");
        let at = |secs| OffsetDateTime::UNIX_EPOCH + Duration::from_secs(secs);
        let sent = at(1_567_075_773); // 2019-08-29T10:49:33Z
        let cert = Certificate::from_der(&pem_certificates(CERT).unwrap()[0]).unwrap();
        assert!(names_paypal(&cert), "messageverificationcerts.sandbox.paypal.com");

        let pinned = Trust { pinned: pem_certificates(CERT).unwrap(), ..Trust::mozilla() };
        let checked = pinned.check(CERT, sent).unwrap();
        assert_eq!(checked.not_before, at(1_554_163_200)); // 2019-04-02T00:00:00Z
        assert_eq!(checked.not_after, at(1_621_857_600)); // 2021-05-24T12:00:00Z
        assert!(matches!(pinned.check(CERT, at(1_554_163_199)), Err(CertError::NotYetValid)));
        assert!(pinned.check(CERT, at(1_621_857_600)).is_ok(), "notAfter is included");
        assert!(matches!(pinned.check(CERT, at(1_621_857_601)), Err(CertError::Expired)));
        assert!(matches!(pinned.check(b"not a pem", sent), Err(CertError::Pem)));
        assert!(matches!(pinned.check(b"", sent), Err(CertError::Pem)));
        let too_many = CERT.repeat(MAX_CHAIN_LEN + 1);
        assert!(matches!(pinned.check(&too_many, sent), Err(CertError::Pem)));
        let chain = CERT.repeat(2);
        assert!(pinned.check(&chain, sent).is_ok(), "the PEM's first certificate is the one");

        // Without its intermediate (DigiCert SHA2 Extended Validation Server CA), it does
        // not chain to Mozilla's roots.
        let mozilla = Trust { chain: true, ..Trust::mozilla() };
        assert!(matches!(mozilla.check(CERT, sent), Err(CertError::Chain(_))));
        // By default its name and dates are checked, not its chain.
        assert!(Trust::mozilla().check(CERT, sent).is_ok());
        assert!(matches!(Trust::mozilla().check(CERT, at(1_621_857_601)), Err(CertError::Expired)));
    }

    /// A CA that may only issue names under `example.com` (name constraints, which look
    /// at SANs only) issues a certificate whose CN is PayPal's signing name but whose SAN
    /// is `foo.example.com`: it chains, and the chain check names no host. With a SAN, the
    /// CN is not one of the certificate's names (RFC 6125 §6.4.4): refused for its name.
    #[test]
    fn a_common_name_beside_a_san_that_is_not_paypals_is_refused() {
        // See tests/fixtures/paypal/README.md for how they were made.
        const CA: &[u8] = include_bytes!("../tests/fixtures/paypal/name-constrained-ca.pem");
        const LEAF: &[u8] = include_bytes!("../tests/fixtures/paypal/cn-outside-san.pem");
        let at = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_798_761_600); // 2027-01-01
        let der = &pem_certificates(LEAF).unwrap()[0];
        let cert = Certificate::from_der(der).unwrap();
        assert!(!names_paypal(&cert), "the CN does not count beside a SAN");

        let trust =
            PayPalCertificates::new(WEBHOOK_ID).unwrap().trust_anchors(CA).unwrap().config.trust.clone();
        assert!(trust.chain);
        // The chain alone is sound: the name constraints allow `foo.example.com`.
        let parsed = rustls::server::ParsedCertificate::try_from(der).unwrap();
        let secs = Duration::from_secs(at.unix_timestamp().try_into().unwrap());
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &trust.roots,
            &[],
            UnixTime::since_unix_epoch(secs),
            trust.algorithms.all,
        )
        .unwrap();
        // What refuses it is its name.
        assert!(matches!(trust.check(LEAF, at), Err(CertError::Name)), "{:?}", trust.check(LEAF, at).err());
        // Nor does the name pass without the chain check, or pinned.
        let unchecked = Trust { chain: false, ..trust.clone() };
        assert!(matches!(unchecked.check(LEAF, at), Err(CertError::Name)));
        let pinned = Trust { pinned: pem_certificates(LEAF).unwrap(), ..trust };
        assert!(matches!(pinned.check(LEAF, at), Err(CertError::Name)));
    }

    /// A made-up certificate URL on PayPal's host (PayPal answers 404) is something
    /// anyone can cause: held back (`Throttled`, counted apart, logged at debug), not an
    /// outage of the source. Any other failed fetch is one, as is a certificate that
    /// verified a delivery and whose re-fetch fails.
    #[tokio::test]
    async fn a_made_up_url_that_fails_is_not_an_outage() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = pinned(&fake, &clock);
        fake.set(Mode::NotFound);
        let made_up = "https://api.paypal.com/v1/notifications/certs/CERT-0000beef";
        let res = ask(&source, made_up).await;
        assert!(matches!(res, Err(SourceError::Throttled(_))), "{:?}", res.err());
        assert_eq!(fake.fetched(), [made_up]);
        // Another failure than PayPal's "not there" (no route to PayPal, after a restart
        // say) is an outage: it warns.
        fake.set(Mode::Down);
        let res = ask(&source, &attacker(1)).await;
        assert!(matches!(res, Err(SourceError::Unavailable(_))), "{:?}", res.err());

        // A certificate that verified a delivery: withdrawn (404) on its re-fetch.
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = verified_source(&fake, &clock).await;
        clock.advance(Duration::from_secs(24 * 3600 + 1));
        fake.set(Mode::NotFound);
        let res = ask(&source, GENUINE).await;
        assert!(matches!(res, Err(SourceError::Unavailable(_))), "{:?}", res.err());
        // Past the time it verifies while re-fetches fail, its re-fetch fails: an outage.
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        let source = verified_source(&fake, &clock).await;
        clock.advance(Duration::from_secs(3 * 24 * 3600 + 1));
        fake.set(Mode::Down);
        let res = ask(&source, GENUINE).await;
        assert!(matches!(res, Err(SourceError::Unavailable(_))), "{:?}", res.err());
        assert_eq!(fake.fetched().len(), 2);
    }

    /// `ttl(Duration::ZERO)`: a certificate fetched is still used by the deliveries that
    /// waited for its fetch (the time to live is at least a minute), not refused as if the
    /// fetch had failed.
    #[tokio::test]
    async fn a_zero_ttl_still_serves_the_deliveries_waiting_for_the_fetch() {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::new(CERT);
        fake.gate.forget_permits(1000);
        let source = pinned(&fake, &clock).ttl(Duration::ZERO);
        let (a, b, ()) = tokio::join!(ask(&source, GENUINE), ask(&source, GENUINE), async {
            // Both requests are waiting by now: one for the fetcher, one for its fetch.
            tokio::task::yield_now().await;
            fake.gate.add_permits(1000);
        });
        assert!(a.is_ok(), "{:?}", a.err());
        assert!(b.is_ok(), "{:?}", b.err());
        assert_eq!(fake.fetched(), [GENUINE]);
        // Used for a minute, then fetched again.
        clock.advance(Duration::from_secs(59));
        assert!(ask(&source, GENUINE).await.is_ok());
        assert_eq!(fake.fetched().len(), 1);
        clock.advance(Duration::from_secs(2));
        assert!(ask(&source, GENUINE).await.is_ok());
        assert_eq!(fake.fetched().len(), 2);
    }
}
