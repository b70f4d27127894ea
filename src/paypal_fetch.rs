//! PayPal certificates fetched from PayPal's own HTTPS hosts, cached (feature
//! `paypal-fetch`).
//!
//! [`PayPalCertificates`] is a [`SchemeSource`]: for each request it reads
//! `PAYPAL-CERT-URL`, refuses any URL that is not `https` on a PayPal host
//! ([`is_trusted_cert_url`]), fetches the certificate (over rustls with the Mozilla root
//! store, at most 64 KiB, 10 s), caches it (24 hours, 64 certificates) and verifies with it.
//! The verification core stays sans-IO: all I/O is here.
//!
//! The cache is keyed by the URL in one spelling (scheme and host in lower case, no
//! trailing dot on the host, no `:443`), and that spelling is what is fetched: the many
//! spellings of one URL are one certificate, one fetch. Anyone can name PayPal URLs, so
//! when the cache is full, expired certificates make room first, then the oldest one that
//! has not verified a delivery; a certificate that verified one goes only when every
//! cached certificate has (and then the oldest). Requests naming other URLs can thus
//! never push PayPal's own certificate out.
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
    borrow::Cow,
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::request::Parts;
use http_body_util::{BodyExt as _, Empty, Limited};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::{
    ConfigError,
    clock::{Clock, SystemClock},
    guard::{SchemeSource, SourceError},
    providers::paypal::{self, PayPalScheme, is_trusted_cert_url},
    replay::BoxFuture,
    verify::{Detail, Reason, Rejection, Scheme, Tolerance, Verified, WebhookRequest},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The certificates fetched, by [`normalized`] URL.
#[derive(Default)]
struct Cache {
    map: HashMap<String, Cached>,
    /// How many certificates were put in so far: each entry's age.
    puts: u64,
}

struct Cached {
    scheme: Arc<Tracked>,
    expires: OffsetDateTime,
    /// When it was put in (the value of [`Cache::puts`] then).
    put: u64,
}

/// A fetched certificate's scheme, remembering whether it verified a delivery (so that
/// certificates that never did, which anyone can have fetched, make room first).
#[derive(Debug)]
struct Tracked {
    scheme: PayPalScheme,
    verified: AtomicBool,
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
    let host = uri.host()?.trim_end_matches('.').to_ascii_lowercase();
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    Some(format!("https://{host}{path}"))
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
/// let source = PayPalCertificates::with_fetcher("0FV983392A0531201", mirror).unwrap();
/// let guard = Guard::builder_with_source("paypal", source)
///     .clock(ManualClock::at_unix(1_567_075_773))
///     .inbox(MemoryInbox::new())
///     .build();
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

impl CertificateFetcher for HttpsFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BoxError>> {
        Box::pin(async move {
            let uri: http::Uri = url.parse()?;
            let work = async {
                let res = self.client.get(uri).await?;
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

/// How long a URL whose fetch failed is not fetched again.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// The longest a request waits for one of the two fetch permits.
const PERMIT_WAIT: Duration = Duration::from_secs(10);

/// A [`SchemeSource`] for PayPal that fetches and caches the certificate each request
/// names (see the [module docs](self)).
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
/// let fetcher = Counting::default();
/// let source = PayPalCertificates::with_fetcher("0FV983392A0531201", fetcher.clone()).unwrap();
/// let guard = Guard::builder_with_source("paypal", source)
///     .clock(ManualClock::at_unix(1_567_075_773)) // when the delivery was sent
///     .inbox(MemoryInbox::new())
///     .build();
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
    webhook_id: Cow<'static, str>,
    tolerance: Tolerance,
    fetcher: Arc<dyn CertificateFetcher>,
    cache: Mutex<Cache>,
    /// URLs whose fetch failed lately, until when they are not fetched again.
    failed: Mutex<HashMap<String, OffsetDateTime>>,
    fetches: tokio::sync::Semaphore,
    ttl: Duration,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for PayPalCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayPalCertificates")
            .field("webhook_id", &self.webhook_id)
            .field("fetcher", &self.fetcher)
            .field("cached", &self.cache.lock().map_or(0, |c| c.map.len()))
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
    /// // Nothing is fetched until a request names a certificate.
    /// let source = PayPalCertificates::new("0FV983392A0531201").unwrap();
    /// assert!(format!("{source:?}").contains("HttpsFetcher"));
    /// ```
    pub fn new(webhook_id: impl Into<Cow<'static, str>>) -> Result<Self, ConfigError> {
        Self::with_fetcher(webhook_id, HttpsFetcher::new()?)
    }

    /// The same with another fetcher (tests, proxies).
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
        Ok(Self {
            webhook_id,
            tolerance: paypal::TOLERANCE,
            fetcher: Arc::new(fetcher),
            cache: Mutex::default(),
            failed: Mutex::new(HashMap::new()),
            fetches: tokio::sync::Semaphore::new(2),
            ttl: Duration::from_secs(24 * 3600),
            capacity: 64,
            clock: Arc::new(SystemClock),
        })
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
    ///     Guard::builder_with_source("paypal", source).clock(clock.clone()).inbox(MemoryInbox::new()).build()
    /// };
    /// // `Counting`: a `CertificateFetcher` serving PayPal's sandbox certificate from memory.
    /// let default = PayPalCertificates::with_fetcher("0FV983392A0531201", Counting::default()).unwrap();
    /// let strict = PayPalCertificates::with_fetcher("0FV983392A0531201", Counting::default())
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
        self.tolerance = tolerance;
        self
    }

    /// How long a fetched certificate is used before it is fetched again (default 24 h).
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
    /// guard.accept(&parts, body).await;
    /// assert_eq!(fetcher.0.load(Ordering::SeqCst), 2, "fetched again");
    /// # }
    /// ```
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The clock for cache expiry.
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
        self.clock = Arc::new(clock);
        self
    }

    fn cached(&self, url: &str, now: OffsetDateTime) -> Option<Arc<dyn Scheme>> {
        let cache = self.cache.lock().ok()?;
        let cached = cache.map.get(url).filter(|c| c.expires > now)?;
        Some(Arc::clone(&cached.scheme) as Arc<dyn Scheme>)
    }

    /// Whether a fetch of `url` failed less than [`RETRY_FAILED_AFTER`] ago.
    fn failed_lately(&self, url: &str, now: OffsetDateTime) -> bool {
        self.failed.lock().is_ok_and(|failed| failed.get(url).is_some_and(|until| *until > now))
    }

    /// Remembers that fetching `url` failed (bounded: the oldest are dropped first).
    fn remember_failure(&self, url: &str, now: OffsetDateTime) {
        let until = later(now, RETRY_FAILED_AFTER);
        if let Ok(mut failed) = self.failed.lock() {
            insert_bounded(&mut failed, self.capacity, url, until, |until| *until > now, |until| *until);
        }
    }

    /// Caches the certificate fetched from `url` (see the [module docs](self) for which
    /// makes room when the cache is full).
    fn remember(&self, url: &str, scheme: Arc<Tracked>, now: OffsetDateTime) {
        let expires = later(now, self.ttl);
        if let Ok(mut cache) = self.cache.lock() {
            let cache = &mut *cache;
            cache.puts = cache.puts.saturating_add(1);
            let entry = Cached { scheme, expires, put: cache.puts };
            insert_bounded(
                &mut cache.map,
                self.capacity,
                url,
                entry,
                |c| c.expires > now,
                |c| (c.scheme.verified.load(Ordering::Relaxed), c.put),
            );
        }
    }

    /// The scheme for the certificate at `url`, a [`normalized`] URL.
    async fn load(&self, url: &str) -> Result<Arc<dyn Scheme>, SourceError> {
        let now = self.clock.now();
        if let Some(scheme) = self.cached(url, now) {
            return Ok(scheme);
        }
        // A URL whose fetch just failed is not fetched again for each request naming it.
        if self.failed_lately(url, now) {
            return Err(SourceError::Unavailable("the certificate could not be fetched lately".into()));
        }
        // At most two fetches at once, whatever arrives; a request waits for its turn at
        // most as long as one fetch may take, not behind a queue of others.
        let _permit = tokio::time::timeout(PERMIT_WAIT, self.fetches.acquire())
            .await
            .map_err(|_| SourceError::Unavailable("busy fetching other certificates".into()))?
            .map_err(|e| SourceError::Unavailable(Box::new(e)))?;
        if let Some(scheme) = self.cached(url, now) {
            return Ok(scheme);
        }
        if self.failed_lately(url, now) {
            return Err(SourceError::Unavailable("the certificate could not be fetched lately".into()));
        }
        let fetched = self.fetcher.fetch(url).await.map_err(SourceError::Unavailable).and_then(|pem| {
            paypal::scheme(self.webhook_id.clone(), &pem).map_err(|e| SourceError::Unavailable(Box::new(e)))
        });
        let scheme = match fetched {
            Ok(scheme) => scheme.with_tolerance(self.tolerance),
            Err(e) => {
                self.remember_failure(url, now);
                return Err(e);
            }
        };
        let scheme = Arc::new(Tracked { scheme, verified: AtomicBool::new(false) });
        self.remember(url, Arc::clone(&scheme), now);
        tracing::info!(url, "fetched PayPal certificate");
        Ok(scheme)
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
            self.load(&url).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spellings `is_trusted_cert_url` accepts for one URL normalize to one.
    #[test]
    fn one_spelling_per_url() {
        let plain = "https://api.paypal.com/v1/notifications/certs/CERT-1";
        for url in [
            plain,
            "HTTPS://API.PayPal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com.:443/v1/notifications/certs/CERT-1",
            "https://api.paypal.com:/v1/notifications/certs/CERT-1",
            "hTTps://api.paypal.COM../v1/notifications/certs/CERT-1",
        ] {
            assert_eq!(normalized(url).as_deref(), Some(plain), "{url}");
        }
        // The path keeps its case; a URL without one has `/`.
        assert_eq!(
            normalized("https://api.paypal.com/v1/notifications/certs/cert-1").as_deref(),
            Some("https://api.paypal.com/v1/notifications/certs/cert-1")
        );
        assert_eq!(normalized("https://paypal.com").as_deref(), Some("https://paypal.com/"));
        for refused in ["http://api.paypal.com/c", "https://api.paypal.com:8443/c", "https://evil.example/c"]
        {
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
}
