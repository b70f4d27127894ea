//! `paypal_fetch` (feature `paypal-fetch`): `PayPalCertificates` asked for the scheme of
//! any request, with a fetcher of the target's that serves any bytes and records the URLs
//! it is asked for. That runs the parsers that read unauthenticated input before any
//! signature is checked: the certificate URL's normal form (the cache key and what is
//! fetched), the precheck of the headers, and on the bytes fetched the PEM reader, the
//! X.509 reader, the name and validity checks and the chain check (rustls-webpki).
//! (`HttpsFetcher` parses nothing of the answer itself: it parses the normalized URL as
//! an `http::Uri`, checked here, and collects at most 64 KiB of body.)
//!
//! What must hold, besides no panic:
//! - a fresh source fetches for a request exactly when its `paypal-cert-url` (trimmed)
//!   passes `is_trusted_cert_url` and the precheck passes; otherwise the scheme it answers
//!   refuses with `missing-header`/`malformed-header` for the URL, or with the precheck's
//!   own rejection;
//! - the URL fetched is `https://`, the host in lower case without its trailing dot, no
//!   port, the path as the request's; it parses as an `http::Uri` (what `HttpsFetcher`
//!   does) and passes `is_trusted_cert_url`; named again, it is the same cache entry (no
//!   second fetch): one spelling;
//! - the precheck refuses only what verification under any certificate refuses; when it
//!   passes, verification can refuse only for the checks it does not make (the
//!   certificate URL, the transmission id, the signature itself);
//! - a certificate fetched and trusted verifies as `paypal::scheme` over the same
//!   certificate does (only the Java SDK vector's delivery verifies);
//! - the trust checks run in order (PEM, name, dates, then the chain or pins, then the
//!   key): with the chain checked (Mozilla's roots, or the PEM's own certificates as
//!   anchors) a certificate fails as it does with names and dates only, or for its chain;
//!   pinned to its own PEM's certificates, exactly as with names and dates only; a
//!   certificate trusted at the source's clock is within its validity period at that
//!   time.
//!
//! Input: a mode byte, 8 bytes of the clock (Unix seconds, little-endian), then by mode
//! (the byte mod 3): 0: the bytes fetched (the vector's delivery asks for them); 1: a
//! certificate URL (in the vector's delivery, the vector's certificate served); 2: a
//! request (`name: value` header lines, an empty line, the body; the vector's certificate
//! served; the mode byte / 3 chooses the tolerance).
#![no_main]

use std::sync::{Arc, Mutex};

use hookguard::{
    __fuzz,
    clock::ManualClock,
    guard::{SchemeSource, SourceError},
    paypal_fetch::{CertificateFetcher, PayPalCertificates},
    providers::paypal,
    replay::BoxFuture,
    verify::{Detail, Reason, Scheme, Tolerance, Verified, WebhookRequest},
};
use libfuzzer_sys::fuzz_target;

const CERT: &[u8] = include_bytes!("../../src/providers/testdata/paypal_cert.pem");
const BODY: &[u8] = include_bytes!("../../src/providers/testdata/paypal_body.json");
const WEBHOOK_ID: &str = "0FV983392A0531201";
const ID: &str = "afa30d40-ca4a-11e9-ab68-7d4e2605c70c";
const TIME: &str = "2019-08-29T10:49:33Z";
const SIG: &str = "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg==";
const URL: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270";
const VALIDITY: &str = "PayPal's certificate is outside its validity period";

/// Serves `pem` at any URL, recording the URLs asked for.
#[derive(Debug, Clone)]
struct Served {
    pem: Arc<Vec<u8>>,
    fetched: Arc<Mutex<Vec<String>>>,
}

impl Served {
    fn new(pem: &[u8]) -> Self {
        Self { pem: Arc::new(pem.to_vec()), fetched: Arc::default() }
    }

    fn fetched(&self) -> Vec<String> {
        self.fetched.lock().unwrap().clone()
    }
}

impl CertificateFetcher for Served {
    fn fetch<'a>(
        &'a self,
        url: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>> {
        self.fetched.lock().unwrap().push(url.to_owned());
        Box::pin(std::future::ready(Ok(self.pem.to_vec())))
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
}

/// What the source answered for a request.
enum Answer {
    Scheme(Arc<dyn Scheme>),
    /// A certificate fetched and refused (or not fetched): the error's text.
    Unavailable(String),
    /// Not fetched now (a URL that failed lately).
    Throttled,
}

fn ask(source: &PayPalCertificates, parts: &http::request::Parts) -> Answer {
    match RUNTIME.with(|rt| rt.block_on(source.scheme(parts))) {
        Ok(scheme) => Answer::Scheme(scheme),
        Err(SourceError::Unavailable(e)) => Answer::Unavailable(e.to_string()),
        Err(SourceError::Throttled(_)) => Answer::Throttled,
        Err(e) => panic!("the source answered {e:?}"),
    }
}

/// Why a fetched certificate was refused, from the error's text (`CertError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Trusted,
    Pem,
    Name,
    NotYetValid,
    Expired,
    Chain,
    NotPinned,
    Key,
    Clock,
}

impl Kind {
    fn of(answer: &Answer) -> Self {
        let text = match answer {
            Answer::Scheme(_) => return Self::Trusted,
            Answer::Unavailable(text) => text,
            Answer::Throttled => panic!("a fresh source throttled its first request"),
        };
        let kinds = [
            ("the certificate is not 1 to ", Self::Pem),
            ("the certificate is not issued to ", Self::Name),
            ("the certificate is not valid yet", Self::NotYetValid),
            ("the certificate has expired", Self::Expired),
            ("the certificate does not chain", Self::Chain),
            ("the certificate is not one of the pinned", Self::NotPinned),
            ("the certificate's key", Self::Key),
            ("the clock is before 1970", Self::Clock),
        ];
        kinds.iter().find(|(prefix, _)| text.starts_with(prefix)).map(|(_, k)| *k).unwrap_or_else(|| {
            panic!("an unknown refusal of a fetched certificate: {text}");
        })
    }

    /// Refused by a check that every trust makes before its own (PEM, name, dates).
    fn before_chain(self) -> bool {
        matches!(self, Self::Pem | Self::Name | Self::NotYetValid | Self::Expired)
    }
}

/// PayPal's sandbox delivery (the Java SDK's vector), its certificate URL replaced.
fn vector(url: &[u8]) -> Option<http::Request<Vec<u8>>> {
    let url = http::HeaderValue::from_bytes(url).ok()?;
    http::Request::post("/hooks/paypal")
        .header("paypal-transmission-id", ID)
        .header("paypal-transmission-time", TIME)
        .header("paypal-transmission-sig", SIG)
        .header("paypal-cert-url", url)
        .header("paypal-auth-algo", "SHA256withRSA")
        .body(BODY.to_vec())
        .ok()
}

fn new_source(served: &Served, clock: &ManualClock, tolerance: Tolerance) -> PayPalCertificates {
    PayPalCertificates::with_fetcher(WEBHOOK_ID, served.clone())
        .expect("a webhook id")
        .clock(clock.clone())
        .tolerance(tolerance)
}

/// The bytes fetched, through each way of trusting them.
fn certificate(pem: &[u8], clock: &ManualClock) {
    let now = clock.now_for_tests();
    let req = vector(URL.as_bytes()).expect("the vector");
    let (parts, _) = req.clone().into_parts();
    // The precheck's clock is not what this mode is about.
    let tolerance = Tolerance::NONE;
    let run = |source: PayPalCertificates, served: &Served| {
        let answer = ask(&source, &parts);
        assert_eq!(served.fetched(), [URL], "one fetch, of the URL as named");
        answer
    };
    let served = Served::new(pem);
    let names = run(new_source(&served, clock, tolerance).without_chain_check(), &served);
    let kind = Kind::of(&names);
    assert!(
        !matches!(kind, Kind::Chain | Kind::NotPinned | Kind::Clock),
        "{kind:?} without a chain check or pins"
    );
    if let Answer::Scheme(scheme) = &names {
        let verified = scheme.verify(&WebhookRequest::from_request(&req), now);
        if let Err(rejection) = &verified {
            assert_ne!(
                rejection.detail(),
                &Detail::Text(VALIDITY),
                "trusted at {now}, outside its period then"
            );
        }
    }

    let served = Served::new(pem);
    let mozilla = Kind::of(&run(new_source(&served, clock, tolerance), &served));
    assert!(
        mozilla == kind || (!kind.before_chain() && matches!(mozilla, Kind::Chain | Kind::Clock)),
        "Mozilla's roots: {mozilla:?}, names and dates only: {kind:?}"
    );

    let served = Served::new(pem);
    if let Ok(anchored) = new_source(&served, clock, tolerance).trust_anchors(pem) {
        let anchored = Kind::of(&run(anchored, &served));
        assert!(
            anchored == kind || (!kind.before_chain() && matches!(anchored, Kind::Chain | Kind::Clock)),
            "its own anchors: {anchored:?}, names and dates only: {kind:?}"
        );
    }

    let served = Served::new(pem);
    if let Ok(pinned) = new_source(&served, clock, tolerance).pin_certificates(pem) {
        let pinned = Kind::of(&run(pinned, &served));
        assert_eq!(pinned, kind, "pinned to its own certificates");
    }

    let served = Served::new(pem);
    if let Ok(pinned) = new_source(&served, clock, tolerance).pin_certificates(CERT) {
        let pinned = Kind::of(&run(pinned, &served));
        assert!(
            pinned == kind || (!kind.before_chain() && pinned == Kind::NotPinned),
            "pinned to the vector's: {pinned:?}, names and dates only: {kind:?}"
        );
    }
}

/// Any request, the vector's certificate served.
fn request(req: &http::Request<Vec<u8>>, clock: &ManualClock, tolerance: Tolerance) {
    let now = clock.now_for_tests();
    let served = Served::new(CERT);
    let source = new_source(&served, clock, tolerance).without_chain_check();
    let (parts, _) = req.clone().into_parts();
    let answer = ask(&source, &parts);
    let fetched = served.fetched();

    let named = req.headers().get("paypal-cert-url");
    let text = named.and_then(|v| v.to_str().ok()).map(str::trim);
    let trusted = text.is_some_and(paypal::is_trusted_cert_url);
    let prechecked = __fuzz::paypal_precheck(req.headers(), tolerance, now);
    let expected = usize::from(trusted && prechecked.is_ok());
    assert_eq!(
        fetched.len(),
        expected,
        "fetched {fetched:?}; URL trusted: {trusted}, precheck: {prechecked:?}"
    );

    let reference =
        paypal::scheme(WEBHOOK_ID, CERT).expect("the vector's certificate").with_tolerance(tolerance);
    let wreq = WebhookRequest::from_request(req);
    let verified = reference.verify(&wreq, now);
    check_verified(&verified, req.body());
    match &prechecked {
        Err(rejection) => {
            assert!(verified.is_err(), "the precheck refused {rejection:?}, verification did not")
        }
        Ok(()) => {
            if let Err(rejection) = &verified {
                assert!(
                    matches!(
                        rejection.reason(),
                        Reason::MissingHeader | Reason::MalformedHeader | Reason::SignatureMismatch
                    ),
                    "the precheck passed, verification refused for a check they share: {rejection:?}"
                );
            }
        }
    }

    if fetched.is_empty() {
        let Answer::Scheme(refusing) = &answer else { panic!("nothing fetched, yet unavailable") };
        let refused = refusing.verify(&wreq, now).expect_err("a refusal");
        match (named, text) {
            (None, _) => assert_eq!(refused.reason(), Reason::MissingHeader),
            (Some(_), None) => assert_eq!(refused.reason(), Reason::MalformedHeader),
            (Some(_), Some(_)) if !trusted => assert_eq!(refused.reason(), Reason::MalformedHeader),
            (Some(_), Some(_)) => assert_eq!(Err(refused), prechecked, "the precheck's own refusal"),
        }
        return;
    }

    // The URL fetched: the one spelling.
    let url = &fetched[0];
    let text = text.expect("a URL was named");
    assert!(paypal::is_trusted_cert_url(url), "{url} fetched for {text}");
    let uri: http::Uri = url.parse().expect("HttpsFetcher parses what it is given");
    let named_uri: http::Uri = text.parse().expect("a trusted URL parses");
    let host = uri.host().expect("a host");
    assert_eq!(uri.scheme_str(), Some("https"), "{url}");
    assert_eq!(uri.port(), None, "{url}");
    assert!(!host.ends_with('.') && host == host.to_ascii_lowercase(), "{url}");
    assert!(
        host.eq_ignore_ascii_case(named_uri.host().unwrap_or_default().trim_end_matches('.')),
        "{url} for {text}"
    );
    assert_eq!(uri.path(), named_uri.path(), "{url} for {text}");
    assert_eq!(*url, format!("https://{host}{}", uri.path()));

    match &answer {
        Answer::Scheme(scheme) => {
            // The fetched certificate verifies as `paypal::scheme` over it does.
            let through_source = scheme.verify(&wreq, now);
            check_verified(&through_source, req.body());
            match (&through_source, &verified) {
                (Ok(a), Ok(b)) => assert_eq!((a.id(), a.timestamp()), (b.id(), b.timestamp())),
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("through the source: {a:?}; paypal::scheme: {b:?}"),
            }
        }
        Answer::Unavailable(error) => {
            let kind = Kind::of(&answer);
            assert!(matches!(kind, Kind::NotYetValid | Kind::Expired), "the vector's: {error}");
        }
        Answer::Throttled => panic!("a fresh source throttled its first request"),
    }

    // Named in its one spelling, it is the same URL: a fetch of it that failed (served
    // nothing) is not tried again at once for either spelling.
    let served = Served::new(b"");
    let source = new_source(&served, clock, tolerance).without_chain_check();
    assert!(matches!(Kind::of(&ask(&source, &parts)), Kind::Pem));
    let mut again = req.clone();
    again.headers_mut().insert("paypal-cert-url", http::HeaderValue::from_str(url).expect("a header value"));
    let (again, _) = again.into_parts();
    assert!(matches!(ask(&source, &again), Answer::Throttled), "{url} is not its own spelling");
    assert_eq!(served.fetched(), [url.clone()], "{url} is not its own spelling");
}

fn check_verified(verified: &Result<Verified<'_>, hookguard::verify::Rejection>, body: &[u8]) {
    if let Ok(verified) = verified {
        assert_eq!(verified.id(), Some(ID), "only the vector is signed");
        assert_eq!(crc32fast::hash(body), crc32fast::hash(BODY), "a body with another CRC-32 verified");
    }
}

/// `name: value` lines, an empty line, the body.
fn parse_request(data: &[u8]) -> Option<http::Request<Vec<u8>>> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut req = http::Request::post("/hooks/paypal");
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.trim_ascii()),
            http::HeaderValue::from_bytes(value.trim_ascii_start()),
        ) else {
            continue;
        };
        req = req.header(name, value);
    }
    req.body(body.to_vec()).ok()
}

const TOLERANCES: [Tolerance; 4] = [
    paypal::TOLERANCE,
    Tolerance::NONE,
    Tolerance::symmetric(std::time::Duration::from_secs(60)),
    Tolerance::new(None, Some(std::time::Duration::ZERO)),
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Some((secs, rest)) = rest.split_first_chunk::<8>() else { return };
    let clock = ManualClock::at_unix(i64::from_le_bytes(*secs));
    match mode % 3 {
        0 => certificate(rest, &clock),
        1 => {
            if let Some(req) = vector(rest) {
                request(&req, &clock, paypal::TOLERANCE);
            }
        }
        _ => {
            if let Some(req) = parse_request(rest) {
                request(&req, &clock, TOLERANCES[usize::from(mode / 3) % TOLERANCES.len()]);
            }
        }
    }
});
