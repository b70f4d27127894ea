//! PayPal certificates fetched per request (only from PayPal hosts), cached.
#![cfg(feature = "paypal-fetch")]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hookguard::{
    clock::ManualClock,
    guard::Guard,
    inbox::{Inbox, MemoryInbox},
    paypal_fetch::{CertificateFetcher, PayPalCertificates},
    replay::BoxFuture,
};

const CERT: &str = include_str!("../src/providers/testdata/paypal_cert.pem");
const BODY: &[u8] = include_bytes!("../src/providers/testdata/paypal_body.json");
const CERT_URL: &str =
    "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270";
const SIG: &str = "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg==";

#[derive(Debug, Default)]
struct Fake {
    calls: AtomicUsize,
    fail: bool,
    /// Serves the certificate at any URL (not only at `CERT_URL`).
    any: bool,
}

#[derive(Debug)]
struct Shared(Arc<Fake>);

impl CertificateFetcher for Shared {
    fn fetch<'a>(
        &'a self,
        url: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let result = if self.0.fail || (url != CERT_URL && !self.0.any) {
            Err("unreachable".into())
        } else {
            Ok(CERT.as_bytes().to_vec())
        };
        Box::pin(std::future::ready(result))
    }
}

/// The clock at the test vector's transmission time (2019-08-29T10:49:33Z): the default
/// tolerance refuses it years later.
fn sent() -> ManualClock {
    ManualClock::at_unix(1_567_075_773)
}

fn request(cert_url: &str, id: &str) -> http::request::Parts {
    http::Request::post("/hooks/paypal")
        .header("paypal-transmission-id", id)
        .header("paypal-transmission-time", "2019-08-29T10:49:33Z")
        .header("paypal-transmission-sig", SIG)
        .header("paypal-cert-url", cert_url)
        .header("paypal-auth-algo", "SHA256withRSA")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

#[tokio::test]
async fn fetched_once_then_cached_and_only_from_paypal() {
    let fake = Arc::new(Fake::default());
    let inbox = MemoryInbox::new();
    let source = PayPalCertificates::with_fetcher("0FV983392A0531201", Shared(Arc::clone(&fake))).unwrap();
    let guard = Guard::builder_with_source("paypal", source).clock(sent()).inbox(inbox.clone()).build();

    let genuine = request(CERT_URL, "afa30d40-ca4a-11e9-ab68-7d4e2605c70c");
    assert_eq!(guard.accept(&genuine, Bytes::from_static(BODY)).await.status(), 202);
    assert_eq!(guard.accept(&genuine, Bytes::from_static(BODY)).await.status(), 200, "replay is a duplicate");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "the certificate is cached");

    let cases = [
        ("plain http", "http://api.sandbox.paypal.com/v1/notifications/certs/X", 400),
        ("look-alike host", "https://api.paypal.com.evil.example/cert", 400),
        ("other host", "https://evil.example/cert.pem", 400),
    ];
    for (name, url, status) in cases {
        let res = guard.accept(&request(url, "x"), Bytes::from_static(BODY)).await;
        assert_eq!(res.status(), status, "case {name}");
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "untrusted URLs are never fetched");
    assert_eq!(inbox.depth().await.unwrap(), 1);

    // A tampered body fails verification with the cached certificate.
    let mut tampered = BODY.to_vec();
    tampered[10] ^= 1;
    let res = guard.accept(&request(CERT_URL, "other-id"), Bytes::from(tampered)).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn fetch_failure_is_a_503_so_paypal_retries() {
    let fake = Arc::new(Fake { fail: true, ..Fake::default() });
    let source = PayPalCertificates::with_fetcher("0FV983392A0531201", Shared(Arc::clone(&fake))).unwrap();
    let guard = Guard::builder_with_source("paypal", source).clock(sent()).inbox(MemoryInbox::new()).build();
    let res = guard
        .accept(&request(CERT_URL, "afa30d40-ca4a-11e9-ab68-7d4e2605c70c"), Bytes::from_static(BODY))
        .await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
}

/// A URL whose fetch failed is not fetched again for a while, however many requests name
/// it: a flood of requests naming a bogus PayPal URL costs one outbound fetch, not one each.
#[tokio::test]
async fn a_failed_fetch_is_not_repeated_for_every_request() {
    let fake = Arc::new(Fake { fail: true, ..Fake::default() });
    let source = PayPalCertificates::with_fetcher("0FV983392A0531201", Shared(Arc::clone(&fake))).unwrap();
    let guard = Guard::builder_with_source("paypal", source).clock(sent()).inbox(MemoryInbox::new()).build();
    for n in 0..5 {
        let res = guard.accept(&request(CERT_URL, &format!("id-{n}")), Bytes::from_static(BODY)).await;
        assert_eq!(res.status(), 503, "{n}");
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "fetched once");
    // A query would make one certificate many URLs: refused before any fetch.
    let res = guard.accept(&request(&format!("{CERT_URL}?n=1"), "q"), Bytes::from_static(BODY)).await;
    assert_eq!(res.status(), 400);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
}

/// One URL has many spellings that `is_trusted_cert_url` accepts (host case, `HTTPS`,
/// `:443`, a trailing dot): they are one certificate, fetched once (at its plain
/// spelling), not one cache entry and one download each that flush the cache.
#[tokio::test]
async fn spellings_of_one_url_are_one_certificate() {
    let fake = Arc::new(Fake::default());
    let source = PayPalCertificates::with_fetcher("0FV983392A0531201", Shared(Arc::clone(&fake))).unwrap();
    let guard = Guard::builder_with_source("paypal", source).clock(sent()).inbox(MemoryInbox::new()).build();
    let path = CERT_URL.strip_prefix("https://api.sandbox.paypal.com").unwrap();
    let id = "afa30d40-ca4a-11e9-ab68-7d4e2605c70c";

    // The fake serves only `CERT_URL`: this odd spelling is fetched at the plain one.
    let odd = format!("HTTPS://API.Sandbox.PayPal.COM.:443{path}");
    assert_eq!(guard.accept(&request(&odd, id), Bytes::from_static(BODY)).await.status(), 202);
    for n in 0..100u32 {
        let host: String = "api.sandbox.paypal.com"
            .chars()
            .enumerate()
            .map(|(i, c)| if i < 10 && n & (1 << i) != 0 { c.to_ascii_uppercase() } else { c })
            .collect();
        let port = if n % 3 == 0 { ":443" } else { "" };
        let dot = if n % 5 == 0 { "." } else { "" };
        let url = format!("https://{host}{dot}{port}{path}");
        let res = guard.accept(&request(&url, id), Bytes::from_static(BODY)).await;
        assert_eq!(res.status(), 200, "{url} is the cached certificate: a duplicate");
    }
    let res = guard.accept(&request(CERT_URL, id), Bytes::from_static(BODY)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "one certificate, one fetch");
}

/// Certificates that never verified a delivery, however many (anyone can name PayPal
/// URLs), push out one another, oldest first, but never a certificate that verified one.
#[tokio::test]
async fn unverified_certificates_never_push_out_one_that_verified() {
    let fake = Arc::new(Fake { any: true, ..Fake::default() });
    let source = PayPalCertificates::with_fetcher("0FV983392A0531201", Shared(Arc::clone(&fake))).unwrap();
    let guard = Guard::builder_with_source("paypal", source).clock(sent()).inbox(MemoryInbox::new()).build();
    let id = "afa30d40-ca4a-11e9-ab68-7d4e2605c70c";
    assert_eq!(guard.accept(&request(CERT_URL, id), Bytes::from_static(BODY)).await.status(), 202);

    let mut tampered = BODY.to_vec();
    tampered[10] ^= 1;
    for n in 0..200 {
        let url = format!("https://api.sandbox.paypal.com/v1/notifications/certs/CERT-{n}");
        let res = guard.accept(&request(&url, id), Bytes::from(tampered.clone())).await;
        assert_eq!(res.status(), 401, "{url}");
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 201);
    // The certificate that verified is still cached.
    assert_eq!(guard.accept(&request(CERT_URL, id), Bytes::from_static(BODY)).await.status(), 200);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 201);
    // The most recent unverified ones are cached too; the oldest made room.
    let last = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-199";
    assert_eq!(guard.accept(&request(last, id), Bytes::from(tampered.clone())).await.status(), 401);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 201);
    let first = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-0";
    assert_eq!(guard.accept(&request(first, id), Bytes::from(tampered)).await.status(), 401);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 202);
}

/// `ttl(Duration::MAX)` caches for ever (the expiry saturates), and does not panic.
#[tokio::test]
async fn a_ttl_of_duration_max_caches_for_ever() {
    let fake = Arc::new(Fake::default());
    let clock = sent();
    let source = PayPalCertificates::with_fetcher("0FV983392A0531201", Shared(Arc::clone(&fake)))
        .unwrap()
        .ttl(Duration::MAX)
        .clock(clock.clone());
    let guard = Guard::builder_with_source("paypal", source).clock(sent()).inbox(MemoryInbox::new()).build();
    let genuine = request(CERT_URL, "afa30d40-ca4a-11e9-ab68-7d4e2605c70c");
    assert_eq!(guard.accept(&genuine, Bytes::from_static(BODY)).await.status(), 202);
    clock.advance(Duration::from_secs(100 * 365 * 24 * 3600));
    assert_eq!(guard.accept(&genuine, Bytes::from_static(BODY)).await.status(), 200);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "cached");
}
