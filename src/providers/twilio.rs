//! Twilio: `X-Twilio-Signature: <base64>`, HMAC-SHA1 with the account's auth token over
//! the full URL Twilio called followed by each form parameter of the body, sorted by
//! name, as `name` + `value` (a repeated name contributes each of its distinct values,
//! sorted; identical name/value pairs count once, as in Twilio's SDKs). Parameters are
//! percent-decoded as `application/x-www-form-urlencoded` ([`FormPairs`]).
//!
//! JSON bodies are not signed parameter by parameter: Twilio adds
//! `bodySHA256=<hex SHA-256 of the body>` to the URL's query and signs the URL alone.
//! When the URL carries `bodySHA256`, the body's hash must match it (compared in
//! constant time) *and* the signature must hold over the URL.
//!
//! As Twilio's SDKs do, the signature is checked over the URL both with and without its
//! port (`https://host/x` and `https://host:443/x`; `http://host:1234/x` and
//! `http://host/x`): Twilio's signing side is not consistent about it.
//!
//! No timestamp and no delivery id: the replay key is the signature's fingerprint (an
//! identical redelivery is recognised). Several auth tokens may be configured (primary
//! and secondary, during a rotation). Twilio's optional HMAC-SHA256 signatures
//! (`X-Twilio-Webhooks-Signature-Settings`) are not supported.
//!
//! The URL comes from [`WebhookRequest::url`]: behind a proxy, give the public URL with
//! [`WebhookRequest::with_url`]. Verification allocates (the URL variants and the sorted
//! parameter list); at most [`MAX_PARAMS`] parameters are considered.
//!
//! ```
//! use hookguard::{providers::twilio, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = twilio::scheme("12345").unwrap();
//! let body = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
//! let req = http::Request::post("/myapp.php?foo=1&bar=2")
//!     .header("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body(body.to_vec())
//!     .unwrap();
//! let view = WebhookRequest::from_request(&req).with_url("https://mycompany.com/myapp.php?foo=1&bar=2");
//! assert!(scheme.verify(&view, time::OffsetDateTime::now_utc()).is_ok());
//! ```

use std::{borrow::Cow, fmt};

use http::{HeaderName, HeaderValue};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};
use time::OffsetDateTime;

use crate::{
    ConfigError, Secret,
    verify::{
        Algorithm, Detail, Encoding, FormPairs, KeyedMac, MAX_SIGNATURE_HEADER_LEN, Outgoing, Reason,
        Rejection, Scheme, Sign, SignError, Tag, Verified, WebhookRequest, fingerprint, header_value,
    },
};

/// `X-Twilio-Signature`.
pub const HEADER: HeaderName = HeaderName::from_static("x-twilio-signature");

/// The query parameter that carries the hex SHA-256 of a JSON body.
pub const BODY_SHA256: &str = "bodySHA256";

/// At most this many form parameters are signed; a body with more is refused as
/// [`Reason::MalformedBody`] (Twilio sends a few dozen).
pub const MAX_PARAMS: usize = 1024;

/// Twilio's request validation: see the [module docs](self).
///
/// ```
/// use hookguard::providers::twilio;
/// let scheme = twilio::scheme("primary-token").unwrap().with_secret("secondary-token").unwrap();
/// assert_eq!(format!("{scheme:?}"), "TwilioScheme { tokens: [2 redacted] }");
/// ```
#[derive(Clone)]
pub struct TwilioScheme {
    keys: Vec<KeyedMac>,
}

impl fmt::Debug for TwilioScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioScheme")
            .field("tokens", &format_args!("[{} redacted]", self.keys.len()))
            .finish()
    }
}

/// Twilio with the account's auth token.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty token.
///
/// ```
/// use hookguard::{providers::twilio, verify::Scheme};
/// assert_eq!(twilio::scheme("12345").unwrap().provider(), "twilio");
/// ```
pub fn scheme(auth_token: impl AsRef<[u8]>) -> Result<TwilioScheme, ConfigError> {
    TwilioScheme { keys: Vec::new() }.with_secret(auth_token)
}

impl TwilioScheme {
    /// Adds another accepted auth token (the first one signs).
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] for an empty token.
    ///
    /// ```
    /// # use hookguard::providers::twilio;
    /// assert!(twilio::scheme("a").unwrap().with_secret("").is_err());
    /// ```
    pub fn with_secret(mut self, auth_token: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = Secret::new(auth_token.as_ref())?;
        self.keys.push(KeyedMac::new(Algorithm::Sha1, &secret));
        Ok(self)
    }

    /// How many auth tokens verify.
    ///
    /// ```
    /// # use hookguard::providers::twilio;
    /// assert_eq!(twilio::scheme("a").unwrap().secret_count(), 1);
    /// ```
    #[must_use]
    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }
}

/// One decoded form parameter.
type Param<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// What is signed besides the URL.
enum Signed<'a> {
    /// Form parameters, sorted and de-duplicated.
    Params(Vec<Param<'a>>),
    /// A JSON body: the URL alone is signed; the body must hash to `bodySHA256`.
    BodyHash(Cow<'a, [u8]>),
}

fn query(url: &str) -> &[u8] {
    let before_fragment = url.split('#').next().unwrap_or("");
    before_fragment.split_once('?').map_or(&b""[..], |(_, q)| q.as_bytes())
}

/// Decides what is signed for this URL and body.
fn signed<'a>(url: &'a str, body: &'a [u8]) -> Result<Signed<'a>, Rejection> {
    if let Some((_, hash)) =
        FormPairs::new(query(url)).find(|(name, _)| name.as_ref() == BODY_SHA256.as_bytes())
    {
        return Ok(Signed::BodyHash(hash));
    }
    let mut params = Vec::new();
    for pair in FormPairs::new(body) {
        if params.len() == MAX_PARAMS {
            return Err(Rejection::with_detail(Reason::MalformedBody, Detail::Limit { max: MAX_PARAMS }));
        }
        params.push(pair);
    }
    params.sort_unstable();
    params.dedup();
    Ok(Signed::Params(params))
}

fn mac(key: &KeyedMac, url: &str, signed: &Signed<'_>) -> Tag {
    let mut state = key.start();
    state.update(url.as_bytes());
    if let Signed::Params(params) = signed {
        for (name, value) in params {
            state.update(name);
            state.update(value);
        }
    }
    state.finish()
}

/// The URL with and without its port, as Twilio's SDKs build them: without a port,
/// `:443` (https) or `:80` (anything else) is added; with one, it is removed.
fn port_variants(url: &str) -> [Cow<'_, str>; 2] {
    let Some(scheme_end) = url.find("://") else {
        return [Cow::Borrowed(url), Cow::Borrowed(url)];
    };
    let (scheme, rest) = url.split_at(scheme_end);
    let start = scheme_end + 3;
    let authority_len =
        rest.get(3..).and_then(|r| r.find(['/', '?', '#'])).unwrap_or(rest.len().saturating_sub(3));
    let end = start + authority_len;
    let (Some(authority), Some(head), Some(tail)) = (url.get(start..end), url.get(..end), url.get(end..))
    else {
        return [Cow::Borrowed(url), Cow::Borrowed(url)];
    };
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host = authority.get(host_start..).unwrap_or("");
    // A `:` after any `]` (IPv6 literals hold colons) starts the port.
    match host.rfind(':').filter(|&i| !host.get(i..).unwrap_or("").contains(']')) {
        Some(i) => {
            let colon = start + host_start + i;
            let without = format!("{}{}", url.get(..colon).unwrap_or(""), tail);
            [Cow::Borrowed(url), Cow::Owned(without)]
        }
        None => {
            let port = if scheme.eq_ignore_ascii_case("https") { "443" } else { "80" };
            [Cow::Owned(format!("{head}:{port}{tail}")), Cow::Borrowed(url)]
        }
    }
}

impl Scheme for TwilioScheme {
    fn provider(&self) -> &str {
        "twilio"
    }

    fn verify<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        _now: OffsetDateTime,
    ) -> Result<Verified<'a>, Rejection> {
        let value = req
            .headers()
            .get(&HEADER)
            .map(HeaderValue::as_bytes)
            .map(<[u8]>::trim_ascii)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Rejection::with_detail(Reason::MissingSignature, Detail::Header(HEADER)))?;
        if value.len() > MAX_SIGNATURE_HEADER_LEN {
            return Err(Rejection::with_detail(
                Reason::HeaderTooLarge,
                Detail::Limit { max: MAX_SIGNATURE_HEADER_LEN },
            ));
        }
        let received =
            Encoding::Base64.decode(value).map_err(|()| Rejection::new(Reason::MalformedSignature))?;

        let url = req.url()?;
        let signed = signed(&url, req.body())?;
        let body_ok = match &signed {
            Signed::Params(_) => Choice::from(1),
            Signed::BodyHash(hash) => match Encoding::Hex.decode(hash) {
                Ok(expected) => expected.as_bytes().ct_eq(Sha256::digest(req.body()).as_slice()),
                Err(()) => Choice::from(0),
            },
        };
        let variants = port_variants(&url);

        let mut matched = None;
        for (index, key) in self.keys.iter().enumerate() {
            let mut ok = Choice::from(0);
            for variant in &variants {
                ok |= mac(key, variant, &signed).ct_eq(&received);
            }
            if bool::from(ok) {
                matched = Some(index);
                break;
            }
        }
        let Some(key_index) = matched else {
            return Err(Rejection::with_detail(
                Reason::SignatureMismatch,
                Detail::Compared { signatures: 1, secrets: self.keys.len() },
            ));
        };
        if !bool::from(body_ok) {
            return Err(Rejection::with_detail(
                Reason::SignatureMismatch,
                Detail::Text("the body does not match `bodySHA256`"),
            ));
        }
        Ok(Verified::new("twilio", None, None, None, fingerprint(received.as_bytes()), key_index))
    }
}

impl Sign for TwilioScheme {
    /// Signs `msg` for its [`url`](Outgoing::url) (required): the form parameters of its
    /// body, or the URL alone when the URL carries `bodySHA256` (put the body's hash
    /// there first for a JSON body).
    fn sign(&self, msg: &Outgoing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let key = self.keys.first().ok_or(SignError::Unsupported("no secret"))?;
        let url = msg.get_url().ok_or(SignError::MissingUrl)?;
        let signed =
            signed(url, msg.body()).map_err(|_| SignError::Unsupported("too many form parameters"))?;
        let tag = mac(key, url, &signed);
        Ok(vec![(HEADER, header_value(Encoding::Base64.encode(tag.as_bytes()))?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const FORM: &[u8] =
        b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    const JSON: &[u8] = br#"{"property": "value", "boolean": true}"#;
    const JSON_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

    fn check(scheme: &TwilioScheme, url: &str, sig: &str, body: &[u8]) -> Result<(), Reason> {
        let req = http::Request::post("/").header("x-twilio-signature", sig).body(body.to_vec()).unwrap();
        let view = WebhookRequest::from_request(&req).with_url(url);
        scheme.verify(&view, OffsetDateTime::UNIX_EPOCH).map(|_| ()).map_err(|r| r.reason())
    }

    fn json_url(host: &str) -> String {
        format!("https://{host}/myapp.php?foo=1&bar=2&bodySHA256={JSON_HASH}")
    }

    /// twilio-python `test_request_validator.py` (vectors.md §4): each URL form with the
    /// same parameters.
    #[test]
    fn official_vectors() {
        let scheme = scheme(TOKEN).unwrap();
        let rows = [
            ("as given", URL.to_owned(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            (
                "https with :443",
                "https://mycompany.com:443/myapp.php?foo=1&bar=2".to_owned(),
                "kvajT1Ptam85bY51eRf/AJRuM3w=",
            ),
            (
                "http with :80",
                "http://mycompany.com:80/myapp.php?foo=1&bar=2".to_owned(),
                "0ZXoZLH/DfblKGATFgpif+LLRf4=",
            ),
            (
                "http with :1234",
                "http://mycompany.com:1234/myapp.php?foo=1&bar=2".to_owned(),
                "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
            ),
        ];
        for (name, url, sig) in &rows {
            assert_eq!(check(&scheme, url, sig, FORM), Ok(()), "case {name}");
            let signed = scheme.sign(&Outgoing::new(FORM).url(url)).unwrap();
            assert_eq!(signed[0].1, *sig, "case {name}: signing reproduces the vector");
        }
    }

    /// The SDKs' port handling: a signature over either form verifies whichever form the
    /// receiver sees.
    #[test]
    fn port_added_or_removed() {
        let scheme = scheme(TOKEN).unwrap();
        let rows = [
            ("received without port, signed with :443", URL, "kvajT1Ptam85bY51eRf/AJRuM3w=", Ok(())),
            (
                "received with :443, signed without",
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                Ok(()),
            ),
            (
                "received with :80, signed with :80",
                "http://mycompany.com:80/myapp.php?foo=1&bar=2",
                "0ZXoZLH/DfblKGATFgpif+LLRf4=",
                Ok(()),
            ),
            (
                "received with :1234, signed without port",
                "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
                "0ZXoZLH/DfblKGATFgpif+LLRf4=",
                Err(Reason::SignatureMismatch),
            ),
            (
                "http received, https signature",
                "http://mycompany.com/myapp.php?foo=1&bar=2",
                "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                Err(Reason::SignatureMismatch),
            ),
        ];
        for (name, url, sig, want) in rows {
            assert_eq!(check(&scheme, url, sig, FORM), want, "case {name}");
        }
        // The http no-port form is the same string as `http://…:80` minus the port.
        let sig =
            scheme.sign(&Outgoing::new(FORM).url("http://mycompany.com/myapp.php?foo=1&bar=2")).unwrap();
        let sig = sig[0].1.to_str().unwrap();
        assert_eq!(check(&scheme, "http://mycompany.com:1234/myapp.php?foo=1&bar=2", sig, FORM), Ok(()));
    }

    #[test]
    fn port_variants_table() {
        let rows = [
            ("https no port", "https://h/x?a=1", ["https://h:443/x?a=1", "https://h/x?a=1"]),
            ("http no port", "http://h/x", ["http://h:80/x", "http://h/x"]),
            ("with port", "http://h:1234/x", ["http://h:1234/x", "http://h/x"]),
            ("no path", "https://h", ["https://h:443", "https://h"]),
            ("query right after host", "https://h?x=1", ["https://h:443?x=1", "https://h?x=1"]),
            ("userinfo", "https://u:p@h/x", ["https://u:p@h:443/x", "https://u:p@h/x"]),
            ("ipv6", "https://[::1]/x", ["https://[::1]:443/x", "https://[::1]/x"]),
            ("ipv6 with port", "https://[::1]:8443/x", ["https://[::1]:8443/x", "https://[::1]/x"]),
            ("colon in path", "https://h/a:b", ["https://h:443/a:b", "https://h/a:b"]),
            ("not a url", "nope", ["nope", "nope"]),
            ("multibyte host", "https://é:1/x", ["https://é:1/x", "https://é/x"]),
        ];
        for (name, url, want) in rows {
            let got = port_variants(url);
            assert_eq!([got[0].as_ref(), got[1].as_ref()], want, "case {name}");
        }
    }

    /// vectors.md §4: repeated names, values sorted (signed string `…Digits1234Digits5678SidCA123SidAccountAC123`).
    #[test]
    fn repeated_params() {
        let scheme = scheme(TOKEN).unwrap();
        let body = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
        assert_eq!(check(&scheme, URL, "IK+Dwps556ElfBT0I3Rgjkr1wJU=", body), Ok(()));
        // Identical pairs count once (`sorted(set(values))` in twilio-python).
        let doubled = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234";
        assert_eq!(check(&scheme, URL, "IK+Dwps556ElfBT0I3Rgjkr1wJU=", doubled), Ok(()));
        // Order of arrival does not matter.
        let shuffled = b"Digits=1234&SidAccount=AC123&Digits=5678&Sid=CA123";
        assert_eq!(check(&scheme, URL, "IK+Dwps556ElfBT0I3Rgjkr1wJU=", shuffled), Ok(()));
    }

    /// vectors.md §4: JSON body, URL carries `bodySHA256`.
    #[test]
    fn json_body_hash() {
        let scheme = scheme(TOKEN).unwrap();
        assert_eq!(const_hex::encode(Sha256::digest(JSON)), JSON_HASH);
        let rows = [
            ("vector", json_url("mycompany.com"), "a9nBmqA0ju/hNViExpshrM61xv4=", JSON, Ok(())),
            ("vector with :443", json_url("mycompany.com:443"), "uzN7O1319XdYoYMfTT2eUM1PJT0=", JSON, Ok(())),
            (
                "port-less signature, :443 received",
                json_url("mycompany.com:443"),
                "a9nBmqA0ju/hNViExpshrM61xv4=",
                JSON,
                Ok(()),
            ),
            (
                "body changed",
                json_url("mycompany.com"),
                "a9nBmqA0ju/hNViExpshrM61xv4=",
                &br#"{"property": "evil", "boolean": true}"#[..],
                Err(Reason::SignatureMismatch),
            ),
            (
                "signature wrong",
                json_url("mycompany.com"),
                "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                JSON,
                Err(Reason::SignatureMismatch),
            ),
        ];
        for (name, url, sig, body, want) in rows {
            assert_eq!(check(&scheme, &url, sig, body), want, "case {name}");
        }
        let signed = scheme.sign(&Outgoing::new(JSON).url(&json_url("mycompany.com"))).unwrap();
        assert_eq!(signed[0].1, "a9nBmqA0ju/hNViExpshrM61xv4=");
        // The body-hash failure is explained.
        let req = http::Request::post("/")
            .header("x-twilio-signature", "a9nBmqA0ju/hNViExpshrM61xv4=")
            .body(b"{}".to_vec())
            .unwrap();
        let url = json_url("mycompany.com");
        let err =
            scheme.verify(&WebhookRequest::from_request(&req).with_url(&url), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(err.unwrap_err().to_string(), "signature mismatch: the body does not match `bodySHA256`");
    }

    #[test]
    fn malformed_body_hash_is_refused() {
        let scheme = scheme(TOKEN).unwrap();
        let url = "https://mycompany.com/myapp.php?bodySHA256=nothex";
        let sig = scheme.sign(&Outgoing::new(JSON).url(url)).unwrap();
        assert_eq!(check(&scheme, url, sig[0].1.to_str().unwrap(), JSON), Err(Reason::SignatureMismatch));
    }

    #[test]
    fn rejections() {
        let scheme = scheme(TOKEN).unwrap();
        let wrong = super::scheme("54321").unwrap();
        assert_eq!(check(&wrong, URL, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", FORM), Err(Reason::SignatureMismatch));
        assert_eq!(check(&scheme, URL, "not base64!", FORM), Err(Reason::MalformedSignature));
        assert_eq!(check(&scheme, URL, "", FORM), Err(Reason::MissingSignature));
        // No public URL: the request URI is a bare path.
        let req =
            http::Request::post("/myapp.php").header("x-twilio-signature", "AAAA").body(Vec::new()).unwrap();
        let err = scheme.verify(&WebhookRequest::from_request(&req), OffsetDateTime::UNIX_EPOCH).unwrap_err();
        assert_eq!(err.reason(), Reason::MissingUrl);
        // An absolute request URI is used when no URL is given.
        let req = http::Request::post(URL)
            .header("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            .body(FORM.to_vec())
            .unwrap();
        assert!(scheme.verify(&WebhookRequest::from_request(&req), OffsetDateTime::UNIX_EPOCH).is_ok());
    }

    #[test]
    fn too_many_params() {
        let scheme = scheme(TOKEN).unwrap();
        let body = "a=1&".repeat(MAX_PARAMS + 1);
        assert_eq!(check(&scheme, URL, "AAAA", body.as_bytes()), Err(Reason::MalformedBody));
        let body = "a=1&".repeat(MAX_PARAMS);
        assert_eq!(check(&scheme, URL, "AAAA", body.as_bytes()), Err(Reason::SignatureMismatch));
    }

    #[test]
    fn rotation_and_dedup_key() {
        let scheme = super::scheme("old").unwrap().with_secret(TOKEN).unwrap();
        let req = http::Request::post("/")
            .header("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            .body(FORM.to_vec())
            .unwrap();
        let v = scheme
            .verify(&WebhookRequest::from_request(&req).with_url(URL), OffsetDateTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(v.key_index(), 1);
        assert_eq!(v.id(), None);
        assert_eq!(v.dedup_key().len(), 32);
        assert_eq!(scheme.sign(&Outgoing::new(FORM)).unwrap_err(), SignError::MissingUrl);
    }
}
