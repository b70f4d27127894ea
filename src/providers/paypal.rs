//! [PayPal REST webhooks](https://developer.paypal.com/api/rest/webhooks/rest/) (feature
//! `rsa`): headers `PAYPAL-TRANSMISSION-ID`, `PAYPAL-TRANSMISSION-TIME`,
//! `PAYPAL-TRANSMISSION-SIG` (base64), `PAYPAL-CERT-URL`, `PAYPAL-AUTH-ALGO`;
//! RSASSA-PKCS1-v1_5 with SHA-256 (`SHA256withRSA`) over
//! `{transmission_id}|{transmission_time}|{webhook_id}|{crc32(body) in decimal}`; the key
//! is the RSA key of PayPal's X.509 certificate; dedup key: the transmission id; event
//! type: the body's `event_type`.
//!
//! - **The certificate is yours to supply.** [`scheme`] takes the PEM certificate you
//!   trust (downloaded once from PayPal, or fetched by your own code from the
//!   `PAYPAL-CERT-URL` of a request, after [`is_trusted_cert_url`] approved it). This
//!   module does no I/O and checks **neither the certificate's name, validity period nor
//!   chain**: only that the signature verifies under the certificate's public key (you
//!   chose to trust it). `hookguard::paypal_fetch` (feature `paypal-fetch`)
//!   fetches certificates per request and checks the name and validity period before
//!   trusting one (the chain too, when asked: `PayPalCertificates::check_chain`).
//!   Several certificates may be configured ([`PayPalScheme::with_certificate`]), for
//!   PayPal's certificate rotation.
//! - The `PAYPAL-CERT-URL` header must still be an `https` URL under
//!   `/v1/notifications/certs/` on one of PayPal's four REST API hosts
//!   ([`is_trusted_cert_url`]), or the request is refused.
//! - Any `PAYPAL-AUTH-ALGO` other than `SHA256withRSA` fails closed
//!   ([`Reason::UnsupportedAlgorithm`]).
//! - Tolerance: PayPal prescribes none; it is the receiver's choice. The default is
//!   [`TOLERANCE`], 4 days into the past and 5 minutes into the future: longer than
//!   PayPal's retries (3 days), whatever transmission time they carry, and it makes a
//!   delivery stale before its replay mark (kept for the whole window) expires, which
//!   matters because of the CRC-32 (below). Set another with
//!   [`PayPalScheme::with_tolerance`]. The transmission time must parse as RFC 3339.
//! - **The body is covered by its CRC-32, not by a cryptographic hash** (PayPal's design).
//!   Whoever holds one genuine delivery (its headers and body) can make another body with
//!   the same CRC-32 (four chosen bytes are enough), and it verifies under that
//!   delivery's signature and transmission id. The replay guard refuses it while it
//!   remembers that transmission id (the genuine delivery is normally first); once the
//!   mark expires, only the tolerance refuses it. So keep a tolerance no longer than the
//!   replay store's time to live (the default replay time to live is the tolerance's
//!   window), and keep the replay guard on.
//!
//! ```
//! use hookguard::{providers::paypal, verify::{Scheme, WebhookRequest}};
//!
//! # let cert_pem = include_str!("testdata/paypal_cert.pem");
//! # let body = include_bytes!("testdata/paypal_body.json");
//! let scheme = paypal::scheme("0FV983392A0531201", cert_pem).unwrap();
//! let req = http::Request::post("/hooks/paypal")
//!     .header("paypal-transmission-id", "afa30d40-ca4a-11e9-ab68-7d4e2605c70c")
//!     .header("paypal-transmission-time", "2019-08-29T10:49:33Z")
//!     .header("paypal-transmission-sig", "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg==")
//!     .header("paypal-cert-url", "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270")
//!     .header("paypal-auth-algo", "SHA256withRSA")
//!     .body(body.to_vec())
//!     .unwrap();
//! let sent = time::OffsetDateTime::from_unix_timestamp(1567075773).unwrap(); // 2019-08-29T10:49:33Z
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), sent).unwrap();
//! assert_eq!(verified.id(), Some("afa30d40-ca4a-11e9-ab68-7d4e2605c70c"));
//! ```

use std::{borrow::Cow, fmt, time::Duration};

use http::{HeaderName, HeaderValue, Uri};
use rsa::{
    PublicKey as RsaPublicKey,
    pkcs1v15::{Signature, VerifyingKey},
    pkcs8::DecodePublicKey as _,
    signature::Verifier as _,
};
use sha2::Sha256;
use time::OffsetDateTime;
use x509_cert::{
    Certificate,
    der::{DecodePem as _, Encode as _},
};

use crate::{
    ConfigError,
    verify::{
        Detail, Encoding, Field, MAX_SIGNATURE_HEADER_LEN, Outgoing, Reason, Rejection, Scheme, Sign,
        SignError, TimestampFormat, Tolerance, Verified, WebhookRequest, fingerprint,
    },
};

const TRANSMISSION_ID: HeaderName = HeaderName::from_static("paypal-transmission-id");
const TRANSMISSION_TIME: HeaderName = HeaderName::from_static("paypal-transmission-time");
const TRANSMISSION_SIG: HeaderName = HeaderName::from_static("paypal-transmission-sig");
const CERT_URL: HeaderName = HeaderName::from_static("paypal-cert-url");
const AUTH_ALGO: HeaderName = HeaderName::from_static("paypal-auth-algo");

/// The only algorithm accepted.
///
/// ```
/// assert_eq!(hookguard::providers::paypal::AUTH_ALGO_SHA256_WITH_RSA, "SHA256withRSA");
/// ```
pub const AUTH_ALGO_SHA256_WITH_RSA: &str = "SHA256withRSA";

/// PayPal's webhook signature check; build it with [`scheme`]. Verify-only:
/// [`Sign`] answers [`SignError::Unsupported`].
///
/// ```
/// use hookguard::{providers::paypal, verify::Scheme};
/// # let cert_pem = include_str!("testdata/paypal_cert.pem");
/// let scheme = paypal::scheme("0FV983392A0531201", cert_pem).unwrap();
/// assert_eq!(scheme.provider(), "paypal");
/// assert_eq!(scheme.webhook_id(), "0FV983392A0531201");
/// ```
#[derive(Clone)]
pub struct PayPalScheme {
    webhook_id: Cow<'static, str>,
    keys: Vec<VerifyingKey<Sha256>>,
    tolerance: Tolerance,
}

impl fmt::Debug for PayPalScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayPalScheme")
            .field("webhook_id", &self.webhook_id)
            .field("certificates", &self.keys.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// PayPal webhooks for the webhook id shown in the Developer Portal, with the PEM
/// certificate whose key verifies (see the [module docs](self) for what is and is not
/// checked about it).
///
/// # Errors
/// [`ConfigError`] when the webhook id is empty, or the PEM is not an X.509 certificate
/// with an RSA key.
///
/// ```
/// use hookguard::{ConfigError, providers::paypal};
/// assert!(paypal::scheme("0FV983392A0531201", "not a certificate").is_err());
/// # let cert_pem = include_str!("testdata/paypal_cert.pem");
/// assert_eq!(paypal::scheme("", cert_pem).unwrap_err(), ConfigError::EmptySecret);
/// ```
pub fn scheme(
    webhook_id: impl Into<Cow<'static, str>>,
    cert_pem: impl AsRef<[u8]>,
) -> Result<PayPalScheme, ConfigError> {
    let webhook_id = webhook_id.into();
    if webhook_id.trim().is_empty() {
        return Err(ConfigError::EmptySecret);
    }
    Ok(PayPalScheme { webhook_id, keys: vec![certificate_key(cert_pem.as_ref())?], tolerance: TOLERANCE })
}

/// The default tolerance: 4 days into the past, 5 minutes into the future (see the module
/// docs).
///
/// ```
/// use hookguard::providers::paypal;
/// use std::time::Duration;
/// assert_eq!(paypal::TOLERANCE.past(), Some(Duration::from_secs(4 * 24 * 3600)));
/// assert_eq!(paypal::TOLERANCE.future(), Some(Duration::from_secs(300)));
/// ```
pub const TOLERANCE: Tolerance =
    Tolerance::new(Some(Duration::from_secs(4 * 24 * 3600)), Some(Duration::from_secs(300)));

fn certificate_key(pem: &[u8]) -> Result<VerifyingKey<Sha256>, ConfigError> {
    let cert = Certificate::from_pem(pem)
        .map_err(|_| ConfigError::InvalidSecret("a PayPal certificate is one X.509 certificate in PEM"))?;
    key_of(&cert)
}

/// The RSA key of a certificate already parsed.
fn key_of(cert: &Certificate) -> Result<VerifyingKey<Sha256>, ConfigError> {
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|_| ConfigError::InvalidSecret("the certificate's public key cannot be encoded"))?;
    let key = RsaPublicKey::from_public_key_der(&spki)
        .map_err(|_| ConfigError::InvalidSecret("the certificate's public key is not an RSA key"))?;
    Ok(VerifyingKey::new(key))
}

/// A scheme with the key of a certificate already parsed and checked (the fetcher's: it
/// reads a PEM that may hold a chain, and checks the certificate before this).
#[cfg(feature = "paypal-fetch")]
pub(crate) fn scheme_for_certificate(
    webhook_id: Cow<'static, str>,
    cert: &Certificate,
    tolerance: Tolerance,
) -> Result<PayPalScheme, ConfigError> {
    if webhook_id.trim().is_empty() {
        return Err(ConfigError::EmptySecret);
    }
    Ok(PayPalScheme { webhook_id, keys: vec![key_of(cert)?], tolerance })
}

impl PayPalScheme {
    /// Adds a certificate (PEM) whose key also verifies (rotation).
    ///
    /// # Errors
    /// [`ConfigError::InvalidSecret`] when it is not an X.509 certificate with an RSA key.
    ///
    /// ```
    /// use hookguard::providers::paypal;
    /// # let cert_pem = include_str!("testdata/paypal_cert.pem");
    /// let scheme = paypal::scheme("0FV983392A0531201", cert_pem).unwrap().with_certificate(cert_pem).unwrap();
    /// assert_eq!(scheme.certificate_count(), 2);
    /// ```
    pub fn with_certificate(mut self, cert_pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        self.keys.push(certificate_key(cert_pem.as_ref())?);
        Ok(self)
    }

    /// Sets how far the transmission time may be from now (default: [`TOLERANCE`], 4 days
    /// into the past and 5 minutes into the future). Keep it no longer than the replay
    /// marks live (see the module docs: the body is covered by a CRC-32 only).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use hookguard::{providers::paypal, verify::{Scheme, Tolerance}};
    /// # let cert_pem = include_str!("testdata/paypal_cert.pem");
    /// let scheme = paypal::scheme("0FV983392A0531201", cert_pem).unwrap();
    /// assert_eq!(scheme.tolerance(), paypal::TOLERANCE);
    /// let scheme = scheme.with_tolerance(Tolerance::symmetric(Duration::from_secs(600)));
    /// assert_eq!(scheme.tolerance().past(), Some(Duration::from_secs(600)));
    /// ```
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Tolerance) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The webhook id that is signed.
    ///
    /// ```
    /// # use hookguard::providers::paypal;
    /// # let cert_pem = include_str!("testdata/paypal_cert.pem");
    /// assert_eq!(paypal::scheme("WH1", cert_pem).unwrap().webhook_id(), "WH1");
    /// ```
    #[must_use]
    pub fn webhook_id(&self) -> &str {
        &self.webhook_id
    }

    /// How many certificates verify.
    ///
    /// ```
    /// # use hookguard::providers::paypal;
    /// # let cert_pem = include_str!("testdata/paypal_cert.pem");
    /// assert_eq!(paypal::scheme("WH1", cert_pem).unwrap().certificate_count(), 1);
    /// ```
    #[must_use]
    pub fn certificate_count(&self) -> usize {
        self.keys.len()
    }
}

/// The hosts PayPal's certificate URLs are on: the live and sandbox REST API hosts.
const CERT_HOSTS: [&str; 4] =
    ["api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com", "api-m.sandbox.paypal.com"];

/// The path every certificate URL starts with; one segment (the certificate's name,
/// `CERT-…`) follows.
const CERT_PATH: &str = "/v1/notifications/certs/";

/// The longest certificate name accepted after [`CERT_PATH`] (PayPal's are about 30
/// characters).
const MAX_CERT_NAME_LEN: usize = 128;

/// Whether a `PAYPAL-CERT-URL` may be fetched: an `https` URL, without user info, on
/// the default port (no port, an empty one or `:443` exactly), on one of PayPal's REST
/// API hosts **exactly** (`api.paypal.com`, `api-m.paypal.com`, `api.sandbox.paypal.com`,
/// `api-m.sandbox.paypal.com`; any case, a trailing dot allowed), whose path is `/v1/notifications/certs/` followed by one
/// segment of letters, digits, `-`, `_` and `.` (PayPal's look like
/// `CERT-360caa42-fca2a594-1d93a270`; no `%` escapes, no `..`, no further `/`), with no
/// query or fragment (a query would make one certificate many URLs, each fetched and
/// cached on its own). For a fetcher that downloads and caches certificates; the
/// verification itself refuses requests whose header fails this check.
///
/// PayPal does not publish where its certificates may be: the URLs seen in its
/// deliveries and SDK tests are on `api.paypal.com` and `api.sandbox.paypal.com`, and
/// `api-m.` are the current names of the same APIs (*unconfirmed* as certificate hosts).
/// Other `paypal.com` subdomains are refused: any of them that serves bytes someone else
/// can shape (a dangling DNS name, a third-party-hosted site) would otherwise choose the
/// key. The URL is only where to look; a fetched certificate must still be PayPal's
/// (see `hookguard::paypal_fetch`, feature `paypal-fetch`).
///
/// ```
/// use hookguard::providers::paypal::is_trusted_cert_url;
/// assert!(is_trusted_cert_url("https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270"));
/// assert!(is_trusted_cert_url("https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-1"));
/// assert!(!is_trusted_cert_url("http://api.paypal.com/v1/notifications/certs/CERT-1"));
/// assert!(!is_trusted_cert_url("https://www.paypal.com/v1/notifications/certs/CERT-1"));
/// assert!(!is_trusted_cert_url("https://api.paypal.com/v1/oauth2/token"));
/// assert!(!is_trusted_cert_url("https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1"));
/// assert!(!is_trusted_cert_url("https://api.paypal.com/v1/notifications/certs/CERT-1?n=2"));
/// ```
#[must_use]
pub fn is_trusted_cert_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<Uri>() else {
        return false;
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("https") || authority.as_str().contains('@') || uri.query().is_some() {
        return false;
    }
    if url.contains('#') {
        return false;
    }
    // The default port only: a port must be empty or exactly `443` (`port_u16` is `None`
    // for `:99999` or `:abc`, and `0443` would parse as 443).
    if let Some((_, port)) = authority.as_str().rsplit_once(':')
        && !port.is_empty()
        && port != "443"
    {
        return false;
    }
    let host = authority.host().strip_suffix('.').unwrap_or(authority.host());
    if !CERT_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return false;
    }
    let Some(name) = uri.path().strip_prefix(CERT_PATH) else {
        return false;
    };
    !name.is_empty()
        && name.len() <= MAX_CERT_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.bytes().any(|b| b != b'.')
}

/// The shortest and longest signature a PayPal certificate's RSA key can make: 2048 to
/// 8192 bits (CAs no longer issue shorter keys).
#[cfg(feature = "paypal-fetch")]
const RSA_SIGNATURE_LEN: std::ops::RangeInclusive<usize> = 256..=1024;

/// The checks of a delivery that need no certificate: `PAYPAL-AUTH-ALGO` is
/// `SHA256withRSA`, `PAYPAL-TRANSMISSION-TIME` is within `tolerance` of `now`, and
/// `PAYPAL-TRANSMISSION-SIG` is base64 of an RSA signature's length. The fetcher runs them
/// before it spends anything on a certificate URL: a request that fails them would fail
/// verification whatever the certificate.
#[cfg(feature = "paypal-fetch")]
pub(crate) fn precheck(
    headers: &http::HeaderMap,
    tolerance: Tolerance,
    now: OffsetDateTime,
) -> Result<(), Rejection> {
    check_algorithm(header(headers, &AUTH_ALGO, Reason::MissingHeader)?)?;
    transmission_time(headers, tolerance, now)?;
    match signature(header(headers, &TRANSMISSION_SIG, Reason::MissingSignature)?) {
        Ok(sig) if RSA_SIGNATURE_LEN.contains(&sig.len()) => Ok(()),
        Err(too_large) if too_large.reason() == Reason::HeaderTooLarge => Err(too_large),
        _ => Err(Rejection::with_detail(
            Reason::MalformedSignature,
            Detail::Text("`paypal-transmission-sig` is not base64 of an RSA signature"),
        )),
    }
}

fn header<'a>(
    headers: &'a http::HeaderMap,
    name: &HeaderName,
    missing: Reason,
) -> Result<&'a str, Rejection> {
    let value =
        headers.get(name).ok_or_else(|| Rejection::with_detail(missing, Detail::Header(name.clone())))?;
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| Rejection::with_detail(Reason::MalformedHeader, Detail::Header(name.clone())))
}

/// `PAYPAL-AUTH-ALGO` names the one algorithm PayPal signs with.
fn check_algorithm(algo: &str) -> Result<(), Rejection> {
    if algo == AUTH_ALGO_SHA256_WITH_RSA {
        Ok(())
    } else {
        Err(Rejection::with_detail(Reason::UnsupportedAlgorithm, Detail::Header(AUTH_ALGO)))
    }
}

/// `PAYPAL-TRANSMISSION-TIME` as sent (it is signed as written) and as a time, within
/// `tolerance` of `now`.
fn transmission_time(
    headers: &http::HeaderMap,
    tolerance: Tolerance,
    now: OffsetDateTime,
) -> Result<(&str, OffsetDateTime), Rejection> {
    let text = header(headers, &TRANSMISSION_TIME, Reason::MissingTimestamp)?;
    let at = TimestampFormat::Rfc3339.parse(text.as_bytes()).ok_or_else(|| {
        Rejection::with_detail(Reason::MalformedTimestamp, Detail::Header(TRANSMISSION_TIME))
    })?;
    tolerance.check(at, now).map_err(Rejection::skew)?;
    Ok((text, at))
}

/// `PAYPAL-TRANSMISSION-SIG` decoded: base64 of something, within the header's size limit.
fn signature(text: &str) -> Result<Vec<u8>, Rejection> {
    if text.len() > MAX_SIGNATURE_HEADER_LEN {
        return Err(Rejection::with_detail(
            Reason::HeaderTooLarge,
            Detail::Limit { max: MAX_SIGNATURE_HEADER_LEN },
        ));
    }
    Encoding::Base64
        .decode_vec(text.as_bytes())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Rejection::new(Reason::MalformedSignature))
}

impl Scheme for PayPalScheme {
    fn provider(&self) -> &str {
        "paypal"
    }

    fn tolerance(&self) -> Tolerance {
        self.tolerance
    }

    fn verify<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        now: OffsetDateTime,
    ) -> Result<Verified<'a>, Rejection> {
        let headers = req.headers();
        let sig_text = header(headers, &TRANSMISSION_SIG, Reason::MissingSignature)?;
        check_algorithm(header(headers, &AUTH_ALGO, Reason::MissingHeader)?)?;
        let cert_url = header(headers, &CERT_URL, Reason::MissingHeader)?;
        if !is_trusted_cert_url(cert_url) {
            return Err(Rejection::with_detail(
                Reason::MalformedHeader,
                Detail::Text("`paypal-cert-url` is not an https URL on a PayPal host"),
            ));
        }
        let id = header(headers, &TRANSMISSION_ID, Reason::MissingHeader)?;
        let (time_text, at) = transmission_time(headers, self.tolerance, now)?;
        let sig_bytes = signature(sig_text)?;

        let message = format!("{id}|{time_text}|{}|{}", self.webhook_id, crc32fast::hash(req.body()));
        let matched = Signature::try_from(sig_bytes.as_slice())
            .ok()
            .and_then(|sig| self.keys.iter().position(|key| key.verify(message.as_bytes(), &sig).is_ok()));
        let Some(key_index) = matched else {
            return Err(Rejection::with_detail(
                Reason::SignatureMismatch,
                Detail::Compared { signatures: 1, secrets: self.keys.len() },
            ));
        };
        const EVENT: Field = Field::Json(&["event_type"]);
        let event = EVENT.text(req, None).ok().flatten();
        Ok(Verified::new(
            "paypal",
            Some(Cow::Borrowed(id)),
            Some(at),
            event,
            fingerprint(&sig_bytes),
            key_index,
        ))
    }
}

impl Sign for PayPalScheme {
    /// Always [`SignError::Unsupported`]: PayPal holds the private key.
    fn sign(&self, _msg: &Outgoing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        Err(SignError::Unsupported("PayPal signs with its own private key"))
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // one tuple per table row
mod tests {
    use std::time::Duration;

    use super::*;

    // PayPal-Java-SDK ValidateCertTest.java and clientCertTest.crt (vectors.md §3). The
    // certificate expired in 2021: only the signature is checked.
    const CERT: &str = include_str!("testdata/paypal_cert.pem");
    const BODY: &[u8] = include_bytes!("testdata/paypal_body.json");
    const WEBHOOK_ID: &str = "0FV983392A0531201";
    const ID: &str = "afa30d40-ca4a-11e9-ab68-7d4e2605c70c";
    const TIME: &str = "2019-08-29T10:49:33Z";
    const SIG: &str = "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg==";
    const URL: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270";

    fn request(overrides: &[(&str, Option<&str>)], body: &[u8]) -> http::Request<Vec<u8>> {
        let mut headers = vec![
            ("paypal-transmission-id", Some(ID)),
            ("paypal-transmission-time", Some(TIME)),
            ("paypal-transmission-sig", Some(SIG)),
            ("paypal-cert-url", Some(URL)),
            ("paypal-auth-algo", Some("SHA256withRSA")),
        ];
        for (name, value) in overrides {
            if let Some(slot) = headers.iter_mut().find(|(n, _)| n == name) {
                slot.1 = *value;
            }
        }
        let mut req = http::Request::post("/hooks/paypal");
        for (name, value) in headers {
            if let Some(value) = value {
                req = req.header(name, value);
            }
        }
        req.body(body.to_vec()).unwrap()
    }

    fn at(text: &str) -> OffsetDateTime {
        TimestampFormat::Rfc3339.parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn fixture_is_intact() {
        assert_eq!(BODY.len(), 3241);
        assert_eq!(crc32fast::hash(BODY), 3_674_300_368);
    }

    #[test]
    fn java_sdk_vector() {
        let scheme = scheme(WEBHOOK_ID, CERT).unwrap();
        let req = request(&[], BODY);
        let v = scheme.verify(&WebhookRequest::from_request(&req), at(TIME)).unwrap();
        assert_eq!(v.id(), Some(ID));
        assert_eq!(v.dedup_key(), ID.as_bytes());
        assert_eq!(v.timestamp(), Some(at(TIME)));
        assert!(v.event().is_some());
        // The Java test's negative case: another webhook id.
        let other = super::scheme("NotToBeFound", CERT).unwrap();
        let err = other.verify(&WebhookRequest::from_request(&request(&[], BODY)), at(TIME)).unwrap_err();
        assert_eq!(err.reason(), Reason::SignatureMismatch);
    }

    #[test]
    fn rejections() {
        let scheme = scheme(WEBHOOK_ID, CERT).unwrap();
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        let cases: Vec<(&str, Vec<(&str, Option<&str>)>, &[u8], Reason)> = vec![
            ("body changed", vec![], &tampered, Reason::SignatureMismatch),
            (
                "other transmission id",
                vec![("paypal-transmission-id", Some("x"))],
                BODY,
                Reason::SignatureMismatch,
            ),
            (
                "other time",
                vec![("paypal-transmission-time", Some("2019-08-29T10:49:34Z"))],
                BODY,
                Reason::SignatureMismatch,
            ),
            (
                "SHA1withRSA",
                vec![("paypal-auth-algo", Some("SHA1withRSA"))],
                BODY,
                Reason::UnsupportedAlgorithm,
            ),
            (
                "lower-case algo",
                vec![("paypal-auth-algo", Some("sha256withrsa"))],
                BODY,
                Reason::UnsupportedAlgorithm,
            ),
            ("no algo", vec![("paypal-auth-algo", None)], BODY, Reason::MissingHeader),
            (
                "http cert url",
                vec![("paypal-cert-url", Some("http://api.sandbox.paypal.com/c"))],
                BODY,
                Reason::MalformedHeader,
            ),
            (
                "foreign cert url",
                vec![("paypal-cert-url", Some("https://evil.example/c"))],
                BODY,
                Reason::MalformedHeader,
            ),
            ("no cert url", vec![("paypal-cert-url", None)], BODY, Reason::MissingHeader),
            ("no id", vec![("paypal-transmission-id", None)], BODY, Reason::MissingHeader),
            ("no time", vec![("paypal-transmission-time", None)], BODY, Reason::MissingTimestamp),
            (
                "bad time",
                vec![("paypal-transmission-time", Some("yesterday"))],
                BODY,
                Reason::MalformedTimestamp,
            ),
            ("no signature", vec![("paypal-transmission-sig", None)], BODY, Reason::MissingSignature),
            (
                "signature not base64",
                vec![("paypal-transmission-sig", Some("***"))],
                BODY,
                Reason::MalformedSignature,
            ),
            (
                "short signature",
                vec![("paypal-transmission-sig", Some("AAAA"))],
                BODY,
                Reason::SignatureMismatch,
            ),
        ];
        for (name, overrides, body, want) in cases {
            let req = request(&overrides, body);
            let err = scheme.verify(&WebhookRequest::from_request(&req), at(TIME)).unwrap_err();
            assert_eq!(err.reason(), want, "case {name}");
        }
    }

    #[test]
    fn tolerance_is_the_receivers_choice() {
        let req = request(&[], BODY);
        let view = WebhookRequest::from_request(&req);
        // By default, 4 days into the past and 5 minutes into the future.
        let default = scheme(WEBHOOK_ID, CERT).unwrap();
        assert!(default.verify(&view, at("2019-09-02T10:49:33Z")).is_ok());
        assert_eq!(
            default.verify(&view, at("2019-09-02T10:49:34Z")).unwrap_err().reason(),
            Reason::TimestampTooOld
        );
        assert_eq!(
            default.verify(&view, at("2026-01-01T00:00:00Z")).unwrap_err().reason(),
            Reason::TimestampTooOld
        );
        assert!(default.verify(&view, at("2019-08-29T10:44:33Z")).is_ok());
        let none = scheme(WEBHOOK_ID, CERT).unwrap().with_tolerance(Tolerance::NONE);
        assert!(none.verify(&view, at("2026-01-01T00:00:00Z")).is_ok());
        let strict =
            scheme(WEBHOOK_ID, CERT).unwrap().with_tolerance(Tolerance::symmetric(Duration::from_secs(300)));
        assert!(strict.verify(&view, at("2019-08-29T10:54:33Z")).is_ok());
        assert_eq!(
            strict.verify(&view, at("2019-08-29T10:54:34Z")).unwrap_err().reason(),
            Reason::TimestampTooOld
        );
        assert!(strict.verify(&view, at("2019-08-29T10:44:33Z")).is_ok());
        assert_eq!(
            strict.verify(&view, at("2019-08-29T10:44:32Z")).unwrap_err().reason(),
            Reason::TimestampInFuture
        );
    }

    #[test]
    fn cert_urls() {
        let too_long = format!("https://api.paypal.com/v1/notifications/certs/{}", "C".repeat(129));
        let longest = format!("https://api.paypal.com/v1/notifications/certs/{}", "C".repeat(128));
        let cases: &[(&str, bool)] = &[
            (URL, true),
            ("https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270", true),
            ("https://api-m.paypal.com/v1/notifications/certs/CERT-1", true),
            ("https://api.sandbox.paypal.com/v1/notifications/certs/CERT-1", true),
            ("https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-1", true),
            ("HTTPS://API.PAYPAL.COM/v1/notifications/certs/CERT-1", true),
            ("https://api.paypal.com:443/v1/notifications/certs/CERT-1", true),
            ("https://api.paypal.com./v1/notifications/certs/CERT-1", true),
            ("https://api.paypal.com/v1/notifications/certs/cert_1.pem", true),
            // Other PayPal hosts: any of them whose bytes someone else can shape would
            // choose the key.
            ("https://paypal.com/v1/notifications/certs/CERT-1", false),
            ("https://www.paypal.com/v1/notifications/certs/CERT-1", false),
            ("https://messageverificationcerts.paypal.com/v1/notifications/certs/CERT-1", false),
            ("https://x.api.paypal.com/v1/notifications/certs/CERT-1", false),
            ("https://api.paypal.com../v1/notifications/certs/CERT-1", false),
            ("https://evilpaypal.com/v1/notifications/certs/CERT-1", false),
            ("https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1", false),
            // Other paths on the right host.
            ("https://api.paypal.com/c", false),
            ("https://api.paypal.com/", false),
            ("https://api.paypal.com", false),
            ("https://api.paypal.com/v1/notifications/certs/", false),
            ("https://api.paypal.com/v1/notifications/certs/..", false),
            ("https://api.paypal.com/v1/notifications/certs/../../oauth2/token", false),
            ("https://api.paypal.com/v1/notifications/certs/CERT-1/x", false),
            ("https://api.paypal.com/v1/notifications/certs/CERT%2D1", false),
            ("https://api.paypal.com/V1/notifications/certs/CERT-1", false),
            ("https://api.paypal.com/v1/notifications/webhooks-events/WH-1", false),
            (&longest, true),
            (&too_long, false),
            // Other schemes, ports, user info, queries, fragments.
            ("https://api.paypal.com:8443/v1/notifications/certs/CERT-1", false),
            // Only an empty port or `443` exactly: not one out of range, not letters, not
            // another spelling of 443.
            ("https://api.paypal.com:/v1/notifications/certs/CERT-1", true),
            ("https://api.paypal.com:99999/v1/notifications/certs/CERT-1", false),
            ("https://api.paypal.com:65979/v1/notifications/certs/CERT-1", false),
            ("https://api.paypal.com:abc/v1/notifications/certs/CERT-1", false),
            ("https://api.paypal.com:0443/v1/notifications/certs/CERT-1", false),
            ("https://api.paypal.com:+443/v1/notifications/certs/CERT-1", false),
            ("https://api.paypal.com:443:443/v1/notifications/certs/CERT-1", false),
            ("http://api.paypal.com/v1/notifications/certs/CERT-1", false),
            ("https://user@api.paypal.com/v1/notifications/certs/CERT-1", false),
            ("https://api.paypal.com/v1/notifications/certs/CERT-1?n=2", false),
            ("https://api.paypal.com/v1/notifications/certs/CERT-1#x", false),
            ("/v1/notifications/certs/CERT-1", false),
            ("", false),
            ("not a url", false),
        ];
        for (url, want) in cases {
            assert_eq!(is_trusted_cert_url(url), *want, "case {url}");
        }
    }

    /// What the fetcher checks before it spends anything on a certificate URL: what
    /// verification would refuse whatever the certificate.
    #[cfg(feature = "paypal-fetch")]
    #[test]
    fn precheck_needs_no_certificate() {
        let check = |overrides: &[(&str, Option<&str>)], now: &str| {
            let req = request(overrides, BODY);
            precheck(req.headers(), TOLERANCE, at(now))
        };
        assert!(check(&[], TIME).is_ok());
        assert!(check(&[], "2019-09-02T10:49:33Z").is_ok(), "4 days late");
        let short = "A".repeat(340); // 255 bytes
        let long = "A".repeat(1368); // 1026 bytes
        let cases: Vec<(&str, Vec<(&str, Option<&str>)>, &str, Reason)> = vec![
            (
                "SHA1withRSA",
                vec![("paypal-auth-algo", Some("SHA1withRSA"))],
                TIME,
                Reason::UnsupportedAlgorithm,
            ),
            ("no algo", vec![("paypal-auth-algo", None)], TIME, Reason::MissingHeader),
            ("no time", vec![("paypal-transmission-time", None)], TIME, Reason::MissingTimestamp),
            ("bad time", vec![("paypal-transmission-time", Some("now"))], TIME, Reason::MalformedTimestamp),
            ("too old", vec![], "2019-09-02T10:49:34Z", Reason::TimestampTooOld),
            ("in the future", vec![], "2019-08-29T10:44:32Z", Reason::TimestampInFuture),
            ("no signature", vec![("paypal-transmission-sig", None)], TIME, Reason::MissingSignature),
            ("not base64", vec![("paypal-transmission-sig", Some("***"))], TIME, Reason::MalformedSignature),
            ("short", vec![("paypal-transmission-sig", Some("AAAA"))], TIME, Reason::MalformedSignature),
            ("255 bytes", vec![("paypal-transmission-sig", Some(&short))], TIME, Reason::MalformedSignature),
            ("1026 bytes", vec![("paypal-transmission-sig", Some(&long))], TIME, Reason::MalformedSignature),
        ];
        for (name, overrides, now, want) in cases {
            assert_eq!(check(&overrides, now).map_err(|r| r.reason()), Err(want), "case {name}");
        }
    }

    #[test]
    fn config_and_sign() {
        assert!(
            super::scheme(WEBHOOK_ID, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert_eq!(super::scheme(" ", CERT).unwrap_err(), ConfigError::EmptySecret);
        let scheme = super::scheme(WEBHOOK_ID, CERT).unwrap();
        assert!(matches!(scheme.sign(&Outgoing::new(BODY)), Err(SignError::Unsupported(_))));
        assert!(format!("{scheme:?}").contains("certificates: 1"));
    }

    /// The body with four bytes appended so that its CRC-32 is `crc32(original)` again
    /// (CRC-32 is linear: the register is run back from the wanted value).
    fn same_crc(original: &[u8], mut body: Vec<u8>) -> Vec<u8> {
        const POLY: u32 = 0xedb8_8320;
        let forward = |mut crc: u32, bytes: &[u8]| {
            for &b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
                }
            }
            crc
        };
        // Undoes one byte's step: the byte's bits decide which of the register's
        // shifted-out bits were set.
        let backward = |mut crc: u32, byte: u8| {
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 { ((crc ^ POLY) << 1) | 1 } else { crc << 1 };
            }
            crc ^ u32::from(byte)
        };
        let state = forward(u32::MAX, &body);
        let mut wanted = !crc32fast::hash(original);
        for &b in state.to_le_bytes().iter().rev() {
            wanted = backward(wanted, b);
        }
        body.extend_from_slice(&wanted.to_le_bytes());
        body
    }

    #[test]
    fn the_body_is_only_as_safe_as_its_crc32() {
        // PayPal signs the body's CRC-32, not a hash of it: another body with the same
        // CRC-32 verifies under a genuine delivery's headers (the module docs say what
        // guards against it: the replay guard, a tolerance).
        let forged = same_crc(BODY, br#"{"event_type":"PAYMENT.SALE.COMPLETED","forged":true}"#.to_vec());
        assert_ne!(forged.as_slice(), BODY);
        assert_eq!(crc32fast::hash(&forged), crc32fast::hash(BODY));
        let scheme = super::scheme(WEBHOOK_ID, CERT).unwrap();
        let req = request(&[], &forged);
        let v = scheme.verify(&WebhookRequest::from_request(&req), at(TIME)).unwrap();
        assert_eq!(v.id(), Some(ID), "the same transmission id: a replay guard refuses the second");
        assert_eq!(v.event(), Some("PAYMENT.SALE.COMPLETED"));
    }
}
