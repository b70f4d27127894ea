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
//! and secondary, during a rotation).
//!
//! Voice and messaging requests that expect TwiML in the answer are request/response:
//! run them in middleware mode, and mind that two genuine requests can be byte for byte
//! the same (a caller who presses the same digit twice at the same `<Gather>` action):
//! with a replay store, the second would be answered `200 duplicate`, not TwiML, and the
//! caller would hear an application error. For such endpoints build the guard with
//! [`no_replay_store`](crate::guard::GuardBuilder::no_replay_store); keep the replay store
//! for status callbacks, whose copies are redeliveries.
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
//!
//! # HMAC-SHA256 with a shared key (Webhooks Settings)
//!
//! When one of the account's Webhooks Rules matches the URL, Twilio signs with that Rule's
//! Setting — its shared key and algorithm — instead of the auth token, and says so in
//! [`SETTINGS_HEADER`]: `X-Twilio-Webhooks-Signature-Settings: key=<name>,algorithm=HMAC_SHA256`.
//! Only the hash and the key change: the signed string is still the URL and the sorted
//! parameters (or the URL alone with `bodySHA256`), the port variants are the same, and the
//! signature is still base64 in `X-Twilio-Signature`. Configure the Setting's key with
//! [`TwilioScheme::with_shared_key`] (several for a rotation; each is tried, whatever the
//! `key=` name says: the name is not a secret and selects nothing here). Then, as in
//! Twilio's SDKs:
//!
//! - header absent: HMAC-SHA1 with the auth tokens, as above;
//! - header present: *only* the shared keys, with the header's algorithm (`HMAC_SHA256` or
//!   `HMAC_SHA1`, exactly so written). The auth tokens are never tried, so a request cannot
//!   be verified under a weaker key or hash than the one it names (no downgrade);
//! - an `algorithm` other than those two: [`Reason::UnsupportedAlgorithm`];
//! - the header present while no shared key is configured: [`Reason::UnsupportedAlgorithm`]
//!   too, with the text "no shared key is configured". Twilio's SDK answers 500 here (the
//!   receiver is misconfigured), but every [`Reason`] is a 4xx — a rejection describes the
//!   request — and the closest one is this: the request asks for a signature this verifier
//!   is not set up to accept. The guard's `status_for(Reason::UnsupportedAlgorithm,
//!   StatusCode::INTERNAL_SERVER_ERROR)` gives Twilio's answer (for unknown algorithms too).
//!
//! The header is read strictly and within bounds: one header only (two are
//! [`Reason::MalformedHeader`]), at most [`MAX_SETTINGS_LEN`] bytes
//! ([`Reason::HeaderTooLarge`]), comma-separated `name=value` items (optional spaces around
//! each), `algorithm` required and at most one `algorithm` and one `key`, unknown names
//! ignored; an item without `=`, an empty name, or an item named twice is
//! [`Reason::MalformedHeader`]. An empty `key` (or unknown item) value is accepted, and
//! an empty `algorithm` is [`Reason::UnsupportedAlgorithm`], like any name other than
//! `HMAC_SHA256`.
//! [`Verified::key_index`] counts the auth tokens first (`0..n`), then the shared keys
//! (`n..`).
//!
//! To sign as a Webhooks Setting would (both headers, HMAC-SHA256), name the Setting with
//! [`TwilioScheme::sign_with_shared_key`]; by default [`Sign`] uses the first auth token and
//! HMAC-SHA1, as before.
//!
//! ```
//! use hookguard::{providers::twilio, verify::{Outgoing, Scheme, Sign, WebhookRequest}};
//!
//! let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
//! let body = b"CallSid=CA1234567890ABCDE&Digits=1234";
//! let sender = twilio::scheme("12345")?.with_shared_key("shared-key")?.sign_with_shared_key("my-setting")?;
//! let headers = sender.sign(&Outgoing::new(body).url(url))?;
//! assert_eq!(headers[1].1, "key=my-setting,algorithm=HMAC_SHA256");
//!
//! let mut req = http::Request::post("/myapp.php?foo=1&bar=2");
//! for (name, value) in &headers {
//!     req = req.header(name, value);
//! }
//! let req = req.body(body.to_vec())?;
//! let receiver = twilio::scheme("12345")?.with_shared_key("shared-key")?;
//! let view = WebhookRequest::from_request(&req).with_url(url);
//! assert!(receiver.verify(&view, time::OffsetDateTime::now_utc()).is_ok());
//! // Without the shared key, the request is refused (the auth token is not tried).
//! let err = twilio::scheme("12345")?.verify(&view, time::OffsetDateTime::now_utc()).unwrap_err();
//! assert_eq!(err.to_string(), "unsupported algorithm: Twilio signed with a shared key (`x-twilio-webhooks-signature-settings`) and no shared key is configured");
//! # Ok::<(), Box<dyn std::error::Error>>(())
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
///
/// ```
/// assert_eq!(hookguard::providers::twilio::HEADER, "x-twilio-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-twilio-signature");

/// `X-Twilio-Webhooks-Signature-Settings`: present when Twilio signed with a Webhooks
/// Setting's shared key (see the [module docs](self#hmac-sha256-with-a-shared-key-webhooks-settings)).
///
/// ```
/// assert_eq!(hookguard::providers::twilio::SETTINGS_HEADER, "x-twilio-webhooks-signature-settings");
/// ```
pub const SETTINGS_HEADER: HeaderName = HeaderName::from_static("x-twilio-webhooks-signature-settings");

/// The query parameter that carries the hex SHA-256 of a JSON body.
///
/// ```
/// use hookguard::providers::twilio;
/// let url = "https://example.com/hooks/twilio?bodySHA256=0a1f";
/// assert!(url.contains(&format!("{}=", twilio::BODY_SHA256)));
/// ```
pub const BODY_SHA256: &str = "bodySHA256";

/// At most this many form parameters are signed; a body with more is refused as
/// [`Reason::MalformedBody`] (Twilio sends a few dozen).
///
/// ```
/// assert_eq!(hookguard::providers::twilio::MAX_PARAMS, 1024);
/// ```
pub const MAX_PARAMS: usize = 1024;

/// A longer [`SETTINGS_HEADER`] is refused as [`Reason::HeaderTooLarge`] (Twilio's is
/// `key=<name>,algorithm=HMAC_SHA256`).
///
/// ```
/// assert_eq!(hookguard::providers::twilio::MAX_SETTINGS_LEN, 256);
/// ```
pub const MAX_SETTINGS_LEN: usize = 256;

/// The longest Setting name [`TwilioScheme::sign_with_shared_key`] accepts.
///
/// ```
/// use hookguard::providers::twilio;
/// let too_long = "k".repeat(twilio::MAX_KEY_NAME_LEN + 1);
/// assert!(twilio::scheme("token").unwrap().with_shared_key("key").unwrap().sign_with_shared_key(&too_long).is_err());
/// ```
pub const MAX_KEY_NAME_LEN: usize = 64;

/// The hashes [`SETTINGS_HEADER`] may name.
#[derive(Clone, Copy)]
enum SettingsHash {
    Sha256,
    Sha1,
}

/// The `algorithm` values of [`SETTINGS_HEADER`], written exactly so.
const ALGORITHMS: [(&str, SettingsHash); 2] =
    [("HMAC_SHA256", SettingsHash::Sha256), ("HMAC_SHA1", SettingsHash::Sha1)];

/// Twilio's request validation: see the [module docs](self).
///
/// ```
/// use hookguard::providers::twilio;
/// let scheme = twilio::scheme("primary-token").unwrap().with_secret("secondary-token").unwrap();
/// assert_eq!(format!("{scheme:?}"), "TwilioScheme { tokens: [2 redacted], shared_keys: [0 redacted], signs_with: \"auth token\" }");
/// let scheme = scheme.with_shared_key("shared").unwrap().sign_with_shared_key("my-setting").unwrap();
/// assert_eq!(
///     format!("{scheme:?}"),
///     "TwilioScheme { tokens: [2 redacted], shared_keys: [1 redacted], signs_with: \"shared key `my-setting`\" }"
/// );
/// ```
#[derive(Clone)]
pub struct TwilioScheme {
    /// Auth tokens, HMAC-SHA1.
    keys: Vec<KeyedMac>,
    /// Webhooks Settings' shared keys, keyed for each algorithm the settings header may name.
    shared: Vec<SharedKey>,
    /// The Setting name `Sign` puts in the settings header; `None`: sign with the auth token.
    signing_setting: Option<Box<str>>,
}

/// One shared key, keyed once per algorithm (so no request keys an HMAC).
#[derive(Clone)]
struct SharedKey {
    sha256: KeyedMac,
    sha1: KeyedMac,
}

impl SharedKey {
    fn for_hash(&self, hash: SettingsHash) -> &KeyedMac {
        match hash {
            SettingsHash::Sha256 => &self.sha256,
            SettingsHash::Sha1 => &self.sha1,
        }
    }
}

impl fmt::Debug for TwilioScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signs_with = match &self.signing_setting {
            Some(name) => format!("shared key `{name}`"),
            None => "auth token".to_owned(),
        };
        f.debug_struct("TwilioScheme")
            .field("tokens", &format_args!("[{} redacted]", self.keys.len()))
            .field("shared_keys", &format_args!("[{} redacted]", self.shared.len()))
            .field("signs_with", &signs_with)
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
    TwilioScheme { keys: Vec::new(), shared: Vec::new(), signing_setting: None }.with_secret(auth_token)
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

    /// Adds a Webhooks Setting's shared key: requests that carry [`SETTINGS_HEADER`] are
    /// verified with the shared keys (all of them, in the order added: several during a
    /// rotation) and the header's algorithm, never with the auth tokens.
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] for an empty key.
    ///
    /// ```
    /// # use hookguard::providers::twilio;
    /// let scheme = twilio::scheme("auth-token").unwrap().with_shared_key("shared-key").unwrap();
    /// assert_eq!((scheme.secret_count(), scheme.shared_key_count()), (1, 1));
    /// assert!(scheme.with_shared_key("").is_err());
    /// ```
    pub fn with_shared_key(mut self, shared_key: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = Secret::new(shared_key.as_ref())?;
        self.shared.push(SharedKey {
            sha256: KeyedMac::new(Algorithm::Sha256, &secret),
            sha1: KeyedMac::new(Algorithm::Sha1, &secret),
        });
        Ok(self)
    }

    /// Makes [`Sign`] sign as the Webhooks Setting `setting` would: HMAC-SHA256 with the
    /// first shared key, and [`SETTINGS_HEADER`] `key=<setting>,algorithm=HMAC_SHA256`
    /// after `X-Twilio-Signature`. Without it, [`Sign`] uses the first auth token and
    /// HMAC-SHA1.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] without a shared key (add one first with
    /// [`with_shared_key`](Self::with_shared_key)), or for a name that is empty, longer
    /// than [`MAX_KEY_NAME_LEN`], or not visible ASCII without `,` and `=`.
    ///
    /// ```
    /// # use hookguard::providers::twilio;
    /// let scheme = twilio::scheme("auth-token").unwrap();
    /// assert!(scheme.clone().sign_with_shared_key("my-setting").is_err()); // no shared key yet
    /// let scheme = scheme.with_shared_key("shared-key").unwrap();
    /// assert!(scheme.clone().sign_with_shared_key("a,b").is_err());
    /// assert!(scheme.sign_with_shared_key("my-setting").is_ok());
    /// ```
    pub fn sign_with_shared_key(mut self, setting: &str) -> Result<Self, ConfigError> {
        if self.shared.is_empty() {
            return Err(ConfigError::Invalid(
                "sign_with_shared_key: add the shared key first (`with_shared_key`)",
            ));
        }
        let valid = !setting.is_empty()
            && setting.len() <= MAX_KEY_NAME_LEN
            && setting.bytes().all(|b| b.is_ascii_graphic() && b != b',' && b != b'=');
        if !valid {
            return Err(ConfigError::Invalid(
                "a Setting name is 1 to 64 visible ASCII characters, without `,` or `=`",
            ));
        }
        self.signing_setting = Some(setting.into());
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

    /// How many shared keys verify requests that carry [`SETTINGS_HEADER`].
    ///
    /// ```
    /// # use hookguard::providers::twilio;
    /// assert_eq!(twilio::scheme("a").unwrap().shared_key_count(), 0);
    /// ```
    #[must_use]
    pub fn shared_key_count(&self) -> usize {
        self.shared.len()
    }
}

/// The algorithm [`SETTINGS_HEADER`] names, `None` without the header; see the
/// [module docs](self#hmac-sha256-with-a-shared-key-webhooks-settings) for the rules.
fn settings_hash(req: &WebhookRequest<'_>) -> Result<Option<SettingsHash>, Rejection> {
    let mut values = req.headers().get_all(&SETTINGS_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::with_detail(
            Reason::MalformedHeader,
            Detail::Text("`x-twilio-webhooks-signature-settings` is given more than once"),
        ));
    }
    if value.len() > MAX_SETTINGS_LEN {
        return Err(Rejection::with_detail(Reason::HeaderTooLarge, Detail::Limit { max: MAX_SETTINGS_LEN }));
    }
    let malformed = || Rejection::with_detail(Reason::MalformedHeader, Detail::Header(SETTINGS_HEADER));
    let text = value.to_str().map_err(|_| malformed())?;
    let ows = [' ', '\t'];
    let (mut algorithm, mut key) = (None, None);
    for item in text.split(',') {
        let (name, value) = item.split_once('=').ok_or_else(malformed)?;
        let (name, value) = (name.trim_matches(ows), value.trim_matches(ows));
        let slot = match name {
            "" => return Err(malformed()),
            "algorithm" => &mut algorithm,
            "key" => &mut key,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(malformed());
        }
    }
    let algorithm = algorithm.ok_or_else(|| {
        Rejection::with_detail(
            Reason::MalformedHeader,
            Detail::Text("`x-twilio-webhooks-signature-settings` has no `algorithm`"),
        )
    })?;
    ALGORITHMS
        .iter()
        .find(|(name, _)| *name == algorithm)
        .map(|(_, hash)| Some(*hash))
        .ok_or_else(|| Rejection::with_detail(Reason::UnsupportedAlgorithm, Detail::Header(SETTINGS_HEADER)))
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

    fn signs_called_url(&self) -> bool {
        true
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
        let hash = settings_hash(req)?;
        if hash.is_some() && self.shared.is_empty() {
            return Err(Rejection::with_detail(
                Reason::UnsupportedAlgorithm,
                Detail::Text(
                    "Twilio signed with a shared key (`x-twilio-webhooks-signature-settings`) and no shared key is configured",
                ),
            ));
        }

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
        // One MAC per key and URL variant; every variant is compared (constant time).
        let matches = |key: &KeyedMac| {
            let mut ok = Choice::from(0);
            for variant in &variants {
                ok |= mac(key, variant, &signed).ct_eq(&received);
            }
            bool::from(ok)
        };
        // With the settings header, only the shared keys (no downgrade to the auth token).
        let (matched, secrets) = match hash {
            None => (self.keys.iter().position(matches), self.keys.len()),
            Some(hash) => (
                self.shared.iter().position(|key| matches(key.for_hash(hash))).map(|i| self.keys.len() + i),
                self.shared.len(),
            ),
        };
        let Some(key_index) = matched else {
            return Err(Rejection::with_detail(
                Reason::SignatureMismatch,
                Detail::Compared { signatures: 1, secrets },
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
    /// there first for a JSON body). With the first auth token and HMAC-SHA1, or, after
    /// [`sign_with_shared_key`](TwilioScheme::sign_with_shared_key), with the first shared
    /// key and HMAC-SHA256, followed by [`SETTINGS_HEADER`].
    fn sign(&self, msg: &Outgoing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let (key, setting) = match &self.signing_setting {
            None => (self.keys.first().ok_or(SignError::Unsupported("no secret"))?, None),
            Some(setting) => {
                (&self.shared.first().ok_or(SignError::Unsupported("no shared key"))?.sha256, Some(setting))
            }
        };
        let url = msg.get_url().ok_or(SignError::MissingUrl)?;
        let signed =
            signed(url, msg.body()).map_err(|_| SignError::Unsupported("too many form parameters"))?;
        let tag = mac(key, url, &signed);
        let mut headers = vec![(HEADER, header_value(Encoding::Base64.encode(tag.as_bytes()))?)];
        if let Some(setting) = setting {
            headers.push((SETTINGS_HEADER, header_value(format!("key={setting},algorithm=HMAC_SHA256"))?));
        }
        Ok(headers)
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

    /// A header name and its raw value.
    type Header<'a> = (&'a str, &'a [u8]);

    /// Verifies with any headers (raw bytes, repeated names kept).
    fn verify_with(
        scheme: &TwilioScheme,
        url: &str,
        headers: &[Header<'_>],
        body: &[u8],
    ) -> Result<usize, Rejection> {
        let mut req = http::Request::post("/");
        for (name, value) in headers {
            req = req.header(*name, HeaderValue::from_bytes(value).unwrap());
        }
        let req = req.body(body.to_vec()).unwrap();
        let view = WebhookRequest::from_request(&req).with_url(url);
        scheme.verify(&view, OffsetDateTime::UNIX_EPOCH).map(|v| v.key_index())
    }

    /// A signature with the settings header `settings`.
    fn check_settings(
        scheme: &TwilioScheme,
        url: &str,
        sig: &str,
        settings: &str,
        body: &[u8],
    ) -> Result<(), Reason> {
        let headers = [
            ("x-twilio-signature", sig.as_bytes()),
            ("x-twilio-webhooks-signature-settings", settings.as_bytes()),
        ];
        verify_with(scheme, url, &headers, body).map(|_| ()).map_err(|r| r.reason())
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
        // Nor is an absolute request URI used: its scheme and host are the client's to
        // write, and a request signed for another URL (a staging host) would pass here.
        let req = http::Request::post(URL)
            .header("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            .body(FORM.to_vec())
            .unwrap();
        let err = scheme.verify(&WebhookRequest::from_request(&req), OffsetDateTime::UNIX_EPOCH).unwrap_err();
        assert_eq!(err.reason(), Reason::MissingUrl);
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

    // HMAC-SHA256 with a Webhooks Setting's shared key.

    const SHARED: &str = "twilio-shared-key";
    const SETTINGS: &str = "key=my-setting,algorithm=HMAC_SHA256";
    /// HMAC-SHA256(SHARED, URL + sorted FORM), computed outside this crate (Python's
    /// `hmac`, and again by hand in `sha256_value_computed_independently`).
    const SHA256_SIG: &str = "p6CwTztB/GFEKpiycl+NFVARK4Fl6b1LwIk49WvuJUE=";
    /// The same over `https://mycompany.com:443/…`.
    const SHA256_SIG_443: &str = "Ju4i7OzAUKLERUZ/ThvULSnwJM4adcNAx9xZBC6pirA=";
    /// The same over `json_url("mycompany.com")` (URL alone, `bodySHA256`).
    const SHA256_SIG_JSON: &str = "VxP9gtoZ0ufi8SnvVQ59xzAHiLmHNFzhFs07WaNpHd8=";

    fn shared() -> TwilioScheme {
        scheme(TOKEN).unwrap().with_shared_key(SHARED).unwrap()
    }

    fn sender() -> TwilioScheme {
        shared().sign_with_shared_key("my-setting").unwrap()
    }

    /// Signs with `sender()`: (signature, settings header).
    fn sign_sha256(url: &str, body: &[u8]) -> (String, String) {
        let headers = sender().sign(&Outgoing::new(body).url(url)).unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!((&headers[0].0, &headers[1].0), (&HEADER, &SETTINGS_HEADER));
        (headers[0].1.to_str().unwrap().to_owned(), headers[1].1.to_str().unwrap().to_owned())
    }

    /// The signed string built by hand (URL, then each sorted name and value, decoded) and
    /// MACed with the `hmac` and `sha2` crates directly, encoded with the `base64` crate:
    /// nothing of this module or of `verify` takes part.
    #[test]
    fn sha256_value_computed_independently() {
        use base64::Engine as _;
        use hmac::{KeyInit as _, Mac as _};

        let signed = format!(
            "{URL}CallSid{}Caller{}Digits{}From{}To{}",
            "CA1234567890ABCDE", "+14158675309", "1234", "+14158675309", "+18005551212"
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SHARED.as_bytes()).unwrap();
        mac.update(signed.as_bytes());
        let by_hand = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(by_hand, SHA256_SIG);

        assert_eq!(check_settings(&shared(), URL, SHA256_SIG, SETTINGS, FORM), Ok(()));
        assert_eq!(sign_sha256(URL, FORM), (SHA256_SIG.to_owned(), SETTINGS.to_owned()));
        assert_eq!(sign_sha256(&json_url("mycompany.com"), JSON).0, SHA256_SIG_JSON);
    }

    #[test]
    fn sha256_round_trip_form_and_json_with_port_variants() {
        let receiver = shared();
        let form_urls = [
            ("https, signed as received", URL, URL, Ok(())),
            ("https, signed with :443", "https://mycompany.com:443/myapp.php?foo=1&bar=2", URL, Ok(())),
            ("https, received with :443", URL, "https://mycompany.com:443/myapp.php?foo=1&bar=2", Ok(())),
            ("http, signed with :80", "http://mycompany.com:80/x", "http://mycompany.com/x", Ok(())),
            (
                "http :1234, signed without port",
                "http://mycompany.com/x",
                "http://mycompany.com:1234/x",
                Ok(()),
            ),
            ("other host", "https://evil.example/myapp.php?foo=1&bar=2", URL, Err(Reason::SignatureMismatch)),
            (
                "http received, https signed",
                URL,
                "http://mycompany.com/myapp.php?foo=1&bar=2",
                Err(Reason::SignatureMismatch),
            ),
        ];
        for (name, signed_url, received_url, want) in form_urls {
            let (sig, settings) = sign_sha256(signed_url, FORM);
            assert_eq!(check_settings(&receiver, received_url, &sig, &settings, FORM), want, "form: {name}");
            // Parameters in another order, or a parameter changed.
            let shuffled = b"To=%2B18005551212&Digits=1234&CallSid=CA1234567890ABCDE&From=%2B14158675309&Caller=%2B14158675309";
            assert_eq!(
                check_settings(&receiver, received_url, &sig, &settings, shuffled),
                want,
                "form shuffled: {name}"
            );
            let changed = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1235&From=%2B14158675309&To=%2B18005551212";
            assert_eq!(
                check_settings(&receiver, received_url, &sig, &settings, changed),
                Err(Reason::SignatureMismatch),
                "form changed: {name}"
            );
        }
        // The vector pair: a :443 signature verifies at the port-less URL and back.
        assert_eq!(check_settings(&receiver, URL, SHA256_SIG_443, SETTINGS, FORM), Ok(()));
        assert_eq!(
            check_settings(
                &receiver,
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                SHA256_SIG,
                SETTINGS,
                FORM
            ),
            Ok(())
        );

        let json_rows = [
            ("as given", json_url("mycompany.com"), json_url("mycompany.com"), JSON, Ok(())),
            ("signed with :443", json_url("mycompany.com:443"), json_url("mycompany.com"), JSON, Ok(())),
            ("received with :443", json_url("mycompany.com"), json_url("mycompany.com:443"), JSON, Ok(())),
            (
                "body changed",
                json_url("mycompany.com"),
                json_url("mycompany.com"),
                &br#"{"property": "evil", "boolean": true}"#[..],
                Err(Reason::SignatureMismatch),
            ),
        ];
        for (name, signed_url, received_url, body, want) in json_rows {
            let (sig, settings) = sign_sha256(&signed_url, JSON);
            assert_eq!(check_settings(&receiver, &received_url, &sig, &settings, body), want, "json: {name}");
        }
        assert_eq!(
            check_settings(&receiver, &json_url("mycompany.com"), SHA256_SIG_JSON, SETTINGS, JSON),
            Ok(())
        );
    }

    /// With the settings header, the auth token is never tried, even for `HMAC_SHA1`.
    #[test]
    fn settings_header_never_falls_back_to_the_auth_token() {
        let receiver = shared();
        let token_sig = "RSOYDt4T1cUTdK1PDd93/VVr8B8="; // HMAC-SHA1 with TOKEN (official vector)
        assert_eq!(check(&receiver, URL, token_sig, FORM), Ok(()));
        for settings in [SETTINGS, "key=my-setting,algorithm=HMAC_SHA1"] {
            assert_eq!(
                check_settings(&receiver, URL, token_sig, settings, FORM),
                Err(Reason::SignatureMismatch),
                "{settings}"
            );
        }
        // Nor an auth token that happens to be configured as well: only the shared keys count.
        let headers = [
            ("x-twilio-signature", token_sig.as_bytes()),
            ("x-twilio-webhooks-signature-settings", SETTINGS.as_bytes()),
        ];
        let err = verify_with(&receiver, URL, &headers, FORM).unwrap_err();
        assert_eq!(err.to_string(), "signature mismatch: 1 signature × 1 secret, none matched");
        // `HMAC_SHA1` with the shared key is what that header asks for.
        let sha1_shared = "D9psTN+hqPjC686J+D1lTmgOblY="; // HMAC-SHA1(SHARED, …), Python's `hmac`
        assert_eq!(check_settings(&receiver, URL, sha1_shared, "key=k,algorithm=HMAC_SHA1", FORM), Ok(()));
        // …and not what the SHA-256 header asks for.
        assert_eq!(
            check_settings(&receiver, URL, sha1_shared, SETTINGS, FORM),
            Err(Reason::SignatureMismatch)
        );
    }

    /// Without the settings header, a shared-key signature is checked against the auth
    /// tokens only, and fails.
    #[test]
    fn shared_key_signature_without_the_header_is_refused() {
        let receiver = shared();
        assert_eq!(check(&receiver, URL, SHA256_SIG, FORM), Err(Reason::SignatureMismatch));
        let sha1_shared = "D9psTN+hqPjC686J+D1lTmgOblY=";
        assert_eq!(check(&receiver, URL, sha1_shared, FORM), Err(Reason::SignatureMismatch));
    }

    #[test]
    fn settings_header_is_read_strictly() {
        let receiver = shared();
        let at_limit = format!("algorithm=HMAC_SHA256,key={}", "k".repeat(MAX_SETTINGS_LEN - 26));
        assert_eq!(at_limit.len(), MAX_SETTINGS_LEN);
        let over_limit = format!("{at_limit}k");
        let rows: &[(&str, &str, Result<(), Reason>)] = &[
            ("as Twilio sends it", SETTINGS, Ok(())),
            ("algorithm first", "algorithm=HMAC_SHA256,key=my-setting", Ok(())),
            ("no key", "algorithm=HMAC_SHA256", Ok(())),
            ("spaces around items", " key = my-setting ,\talgorithm= HMAC_SHA256 ", Ok(())),
            ("unknown names ignored", "key=s,version=2,algorithm=HMAC_SHA256,x=", Ok(())),
            ("empty key name value", "key=,algorithm=HMAC_SHA256", Ok(())),
            ("at the length limit", &at_limit, Ok(())),
            ("over the length limit", &over_limit, Err(Reason::HeaderTooLarge)),
            ("HMAC_SHA512", "key=s,algorithm=HMAC_SHA512", Err(Reason::UnsupportedAlgorithm)),
            ("lower case", "key=s,algorithm=hmac_sha256", Err(Reason::UnsupportedAlgorithm)),
            ("dashes", "key=s,algorithm=HMAC-SHA256", Err(Reason::UnsupportedAlgorithm)),
            ("empty algorithm", "key=s,algorithm=", Err(Reason::UnsupportedAlgorithm)),
            ("none", "key=s,algorithm=none", Err(Reason::UnsupportedAlgorithm)),
            ("empty", "", Err(Reason::MalformedHeader)),
            ("blank", "   ", Err(Reason::MalformedHeader)),
            ("no algorithm", "key=s", Err(Reason::MalformedHeader)),
            ("algorithm name case", "key=s,Algorithm=HMAC_SHA256", Err(Reason::MalformedHeader)),
            ("bare value", "HMAC_SHA256", Err(Reason::MalformedHeader)),
            ("empty item", "key=s,,algorithm=HMAC_SHA256", Err(Reason::MalformedHeader)),
            ("trailing comma", "key=s,algorithm=HMAC_SHA256,", Err(Reason::MalformedHeader)),
            ("semicolons", "key=s;algorithm=HMAC_SHA256", Err(Reason::MalformedHeader)),
            ("empty name", "=x,algorithm=HMAC_SHA256", Err(Reason::MalformedHeader)),
            ("two algorithms", "algorithm=HMAC_SHA256,algorithm=HMAC_SHA1", Err(Reason::MalformedHeader)),
            (
                "two algorithms, same",
                "algorithm=HMAC_SHA256,algorithm=HMAC_SHA256",
                Err(Reason::MalformedHeader),
            ),
            ("two keys", "key=a,key=b,algorithm=HMAC_SHA256", Err(Reason::MalformedHeader)),
        ];
        for (name, settings, want) in rows {
            assert_eq!(check_settings(&receiver, URL, SHA256_SIG, settings, FORM), *want, "case {name}");
        }
        let sig = SHA256_SIG.as_bytes();
        let settings_name = "x-twilio-webhooks-signature-settings";
        let huge = "a=b,".repeat(4096);
        let odd: [(&str, Vec<Header<'_>>, Reason); 3] = [
            (
                "not ASCII",
                vec![("x-twilio-signature", sig), (settings_name, b"key=\xff,algorithm=HMAC_SHA256")],
                Reason::MalformedHeader,
            ),
            (
                "given twice",
                vec![
                    ("x-twilio-signature", sig),
                    (settings_name, SETTINGS.as_bytes()),
                    (settings_name, SETTINGS.as_bytes()),
                ],
                Reason::MalformedHeader,
            ),
            (
                "huge",
                vec![("x-twilio-signature", sig), (settings_name, huge.as_bytes())],
                Reason::HeaderTooLarge,
            ),
        ];
        for (name, headers, want) in odd {
            let got = verify_with(&receiver, URL, &headers, FORM).map_err(|r| r.reason());
            assert_eq!(got, Err(want), "case {name}");
        }
        // What each refusal says.
        let texts = [
            ("key=s,algorithm=HMAC_SHA512", "unsupported algorithm: `x-twilio-webhooks-signature-settings`"),
            ("key=s", "malformed header: `x-twilio-webhooks-signature-settings` has no `algorithm`"),
            ("key=s,,algorithm=HMAC_SHA256", "malformed header: `x-twilio-webhooks-signature-settings`"),
            (&over_limit, "header too large: more than 256"),
        ];
        for (settings, want) in texts {
            let headers = [("x-twilio-signature", sig), (settings_name, settings.as_bytes())];
            assert_eq!(verify_with(&receiver, URL, &headers, FORM).unwrap_err().to_string(), want);
        }
    }

    /// The settings header with no shared key configured: the documented rejection, even
    /// when the signature would hold with the auth token.
    #[test]
    fn settings_header_without_a_shared_key_configured() {
        let receiver = scheme(TOKEN).unwrap();
        for sig in [SHA256_SIG, "RSOYDt4T1cUTdK1PDd93/VVr8B8="] {
            let headers = [
                ("x-twilio-signature", sig.as_bytes()),
                ("x-twilio-webhooks-signature-settings", SETTINGS.as_bytes()),
            ];
            let err = verify_with(&receiver, URL, &headers, FORM).unwrap_err();
            assert_eq!(err.reason(), Reason::UnsupportedAlgorithm);
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
            assert_eq!(
                err.to_string(),
                "unsupported algorithm: Twilio signed with a shared key (`x-twilio-webhooks-signature-settings`) and no shared key is configured"
            );
        }
        // A malformed header is still said to be malformed.
        assert_eq!(check_settings(&receiver, URL, SHA256_SIG, "key=s", FORM), Err(Reason::MalformedHeader));
    }

    #[test]
    fn shared_key_rotation_key_index_and_redaction() {
        let receiver = scheme("old-token")
            .unwrap()
            .with_secret(TOKEN)
            .unwrap()
            .with_shared_key("old-shared-key")
            .unwrap()
            .with_shared_key(SHARED)
            .unwrap();
        assert_eq!((receiver.secret_count(), receiver.shared_key_count()), (2, 2));
        let headers = [
            ("x-twilio-signature", SHA256_SIG.as_bytes()),
            ("x-twilio-webhooks-signature-settings", SETTINGS.as_bytes()),
        ];
        // Auth tokens are 0 and 1; the shared keys 2 and 3.
        assert_eq!(verify_with(&receiver, URL, &headers, FORM).unwrap(), 3);
        let token_headers = [("x-twilio-signature", &b"RSOYDt4T1cUTdK1PDd93/VVr8B8="[..])];
        assert_eq!(verify_with(&receiver, URL, &token_headers, FORM).unwrap(), 1);
        let err = verify_with(&receiver, URL, &headers, b"Digits=0").unwrap_err();
        assert_eq!(err.to_string(), "signature mismatch: 1 signature × 2 secrets, none matched");

        // The first shared key signs.
        let signer = receiver.sign_with_shared_key("rotating").unwrap();
        let signed = signer.sign(&Outgoing::new(FORM).url(URL)).unwrap();
        assert_eq!(signed[1].1, "key=rotating,algorithm=HMAC_SHA256");
        let headers = [
            ("x-twilio-signature", signed[0].1.as_bytes()),
            ("x-twilio-webhooks-signature-settings", signed[1].1.as_bytes()),
        ];
        assert_eq!(verify_with(&signer, URL, &headers, FORM).unwrap(), 2);
        assert_eq!(signer.sign(&Outgoing::new(FORM)).unwrap_err(), SignError::MissingUrl);

        // No secret in Debug or in any rejection.
        let debug = format!("{signer:?}");
        assert_eq!(
            debug,
            "TwilioScheme { tokens: [2 redacted], shared_keys: [2 redacted], signs_with: \"shared key `rotating`\" }"
        );
        for settings in ["", "key=s,algorithm=HMAC_SHA512", SETTINGS] {
            let headers = [
                ("x-twilio-signature", &b"AAAA"[..]),
                ("x-twilio-webhooks-signature-settings", settings.as_bytes()),
            ];
            let err = verify_with(&signer, URL, &headers, FORM).unwrap_err();
            let text = format!("{err} {err:?}");
            for secret in [TOKEN, SHARED, "old-shared-key", SHA256_SIG, SHA256_SIG_443] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    #[test]
    fn sign_with_shared_key_is_configured_carefully() {
        let no_shared = scheme(TOKEN).unwrap();
        assert!(matches!(no_shared.clone().sign_with_shared_key("s"), Err(ConfigError::Invalid(_))));
        assert!(matches!(no_shared.with_shared_key(""), Err(ConfigError::EmptySecret)));
        for bad in ["", "a,b", "a=b", "a b", "é", &"k".repeat(MAX_KEY_NAME_LEN + 1)] {
            assert!(matches!(shared().sign_with_shared_key(bad), Err(ConfigError::Invalid(_))), "{bad:?}");
        }
        assert!(shared().sign_with_shared_key(&"k".repeat(MAX_KEY_NAME_LEN)).is_ok());
        // By default the auth token still signs, alone.
        let headers = shared().sign(&Outgoing::new(FORM).url(URL)).unwrap();
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].1, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    }
}
