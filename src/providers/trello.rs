//! Trello: `X-Trello-Webhook: <base64>`, HMAC-SHA1 over `{body}{callbackURL}`, where the
//! callback URL is the one registered with the webhook, exactly as registered (not the URL
//! the request arrived on, which a proxy may have rewritten), and the key is the
//! application's secret. No timestamp (replay marks need a configured time to live). The
//! replay key is the MAC's fingerprint, which Trello's retries keep (see "Weakness" for
//! why not the action's `id`, which is still the delivery's [`id`](Verified::id)); the
//! event is the action's `type`.
//!
//! When a webhook is created Trello sends a `HEAD` to the callback URL and expects `200`:
//! [`head_response`] answers it.
//!
//! # What Trello signs: "binary" strings
//!
//! Trello computes the MAC in Node over the JavaScript string `body + callbackURL` taken
//! as a "binary" (latin1) string: each UTF-16 code unit counts for its low 8 bits only.
//! An en dash `–` (U+2013) is signed as the one byte `0x13`, and a character outside the
//! Basic Multilingual Plane (an emoji) as two bytes, one per surrogate. For ASCII text
//! that is its UTF-8 bytes; for any other it is not, and a MAC over the raw bytes would
//! refuse every delivery whose cards or comments hold an accent, a dash or an emoji.
//!
//! [`TrelloScheme`] checks the MAC over the raw bytes first (all an ASCII delivery
//! costs). Only when that fails with [`Reason::SignatureMismatch`] and the body is UTF-8
//! holding non-ASCII text (or the callback URL does) does it check the MAC over the binary
//! form of body and URL, in constant time as every comparison here; that form is at most
//! as long as they are and is allocated on that path only. It signs as Trello does, and
//! refuses to sign what it would refuse to verify (see the weakness below).
//!
//! ```
//! use hookguard::{providers::trello, verify::{Scheme, WebhookRequest}};
//!
//! assert_eq!(trello::head_response(&http::Method::HEAD).unwrap().status(), 200);
//!
//! let scheme = trello::scheme("trello_secret", "https://example.com/trello").unwrap();
//! let now = time::OffsetDateTime::now_utc();
//! let ascii = http::Request::post("/trello")
//!     .header("x-trello-webhook", "v9BlqlXkPU79ugpvUedcO/GTMFs=")
//!     .body(br#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard"}}"#.to_vec())
//!     .unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&ascii), now).unwrap();
//! assert_eq!(verified.id(), Some("51f9424bcd6e040f3c002412"));
//! assert_eq!(verified.event(), Some("updateCard"));
//!
//! // A card named "A – B": Trello signs the en dash as its low byte.
//! let body = r#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard","data":{"card":{"name":"A – B"}}}}"#;
//! let dash = http::Request::post("/trello")
//!     .header("x-trello-webhook", "JZksOnOEif3nrhEAJj6gvGnhYJ0=")
//!     .body(body.as_bytes().to_vec())
//!     .unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&dash), now).unwrap();
//! assert_eq!(verified.id(), Some("51f9424bcd6e040f3c002412"));
//! assert_eq!(verified.dedup_key(), verified.fingerprint());
//! ```
//!
//! # Weakness
//!
//! The binary form drops the high byte of every UTF-16 unit, so characters that share
//! their low byte are interchangeable under one signature: `–` (U+2013) and `ē` (U+0113),
//! and also an ASCII character and those a multiple of 256 above it (`1` U+0031 and `ı`
//! U+0131, `"` U+0022 and `Ģ` U+0122); one bit flipped in the first byte of `–` gives `〓`
//! (U+3013). Whoever holds a signed delivery, even an ASCII one, can alter its text in
//! such characters without breaking the signature (the raw check accepts the binary form
//! itself as a body too: it is the very bytes signed). Of such copies:
//!
//! - every such copy carries the genuine delivery's MAC, and the replay key is that MAC's
//!   fingerprint (not the action's `id`, which a copy could change: see the last point),
//!   so it is caught once the delivery has been seen; one that arrives first (the genuine
//!   delivery held back) is accepted with its altered text;
//! - one whose `id` or `type` was altered holds a non-ASCII character there (Trello's
//!   ids are 24 hex digits, its types ASCII names): a body that verifies only under the
//!   binary form with a non-ASCII `id` or `type` is refused, so such a copy cannot take a
//!   replay key of its own;
//! - text that someone could write on the board (a card name, a comment) whose
//!   characters' low bytes spell JSON (`Ģ` for `"`) can become JSON structure in a copy,
//!   an `action` member placed before the real one included (the first of duplicated keys
//!   is read), with an `id` and `type` of its author's choosing (it still carries the
//!   genuine MAC, so the replay key catches it once either was seen). Only Trello's
//!   signature scheme could rule that out; where it matters, act on the action as the
//!   Trello API returns it for its id rather than on the webhook's body.
//!
//! ```
//! use hookguard::{providers::trello, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = trello::scheme("trello_secret", "https://example.com/trello").unwrap();
//! let now = time::OffsetDateTime::now_utc();
//! let request = |body: &str| {
//!     http::Request::post("/trello")
//!         .header("x-trello-webhook", "JZksOnOEif3nrhEAJj6gvGnhYJ0=")
//!         .body(body.as_bytes().to_vec())
//!         .unwrap()
//! };
//! let genuine = request(r#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard","data":{"card":{"name":"A – B"}}}}"#);
//! let genuine = scheme.verify(&WebhookRequest::from_request(&genuine), now).unwrap().dedup_key().to_vec();
//! // `ē` for `–`: the signature still holds, and the copy has the genuine delivery's key.
//! let swapped = request(r#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard","data":{"card":{"name":"A ē B"}}}}"#);
//! let verified = scheme.verify(&WebhookRequest::from_request(&swapped), now).unwrap();
//! assert_eq!(verified.dedup_key(), genuine);
//! // `ı` for the id's first `1`: refused.
//! let new_id = request(r#"{"action":{"id":"5ıf9424bcd6e040f3c002412","type":"updateCard","data":{"card":{"name":"A – B"}}}}"#);
//! assert!(scheme.verify(&WebhookRequest::from_request(&new_id), now).is_err());
//! ```

use std::borrow::Cow;

use http::{HeaderName, HeaderValue, Method, Response, StatusCode};
use time::OffsetDateTime;

use super::respond;
use crate::{
    ConfigError,
    verify::{
        Algorithm, Encoding, Field, HmacScheme, Outgoing, Piece, Reason, Rejection, Scheme, Sign, SignError,
        SignatureFormat, SignedContent, Tolerance, Verified, WebhookRequest, header_value, json,
    },
};

/// `X-Trello-Webhook`.
///
/// ```
/// assert_eq!(hookguard::providers::trello::HEADER, "x-trello-webhook");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-trello-webhook");

/// `{body}{callbackURL}`, as bytes; Trello signs their "binary" form (see the
/// [module docs](self)).
///
/// ```
/// use hookguard::{providers::trello, verify::Piece};
/// assert_eq!(trello::CONTENT.pieces(), [Piece::Body, Piece::Url]);
/// ```
pub const CONTENT: SignedContent = SignedContent::from_static(&[Piece::Body, Piece::Url]);

/// Where the action's id is: the delivery's id (the replay key is the MAC's fingerprint).
const ID: &[&str] = &["action", "id"];
/// Where the action's type is: the event.
const TYPE: &[&str] = &["action", "type"];

/// Trello with the application secret and the callback URL exactly as registered (change
/// it later with [`TrelloScheme::with_url`]).
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret, [`ConfigError::Invalid`] for an
/// empty callback URL.
///
/// ```
/// use hookguard::{providers::trello, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = trello::scheme("app-secret", "https://example.com/hooks/trello")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = r#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"commentCard","data":{"text":"Café 🚀"}}}"#;
/// let headers = scheme.sign(&Outgoing::new(body.as_bytes()))?;
/// assert!(headers.iter().any(|(name, _)| name == trello::HEADER));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.as_bytes().to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert_eq!(scheme.verify(&view, now)?.event(), Some("commentCard"));
/// let other = trello::scheme("other", "https://example.com/hooks/trello")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(
    secret: impl AsRef<[u8]>,
    callback_url: impl Into<Cow<'static, str>>,
) -> Result<TrelloScheme, ConfigError> {
    let url = callback_url.into();
    if url.is_empty() {
        return Err(ConfigError::Invalid("trello needs the callback URL the webhook was registered with"));
    }
    let hmac = HmacScheme::builder("trello", Algorithm::Sha1)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        .content(CONTENT)
        .url(url.clone())
        .id(Field::Json(ID))
        .event(Field::Json(TYPE))
        .secret(secret)
        .build()?;
    Ok(TrelloScheme { hmac, url })
}

/// Trello's scheme: HMAC-SHA1 over the body and callback URL as bytes, or over their
/// "binary" form for text that is not ASCII, as Trello signs it. Built by [`scheme`]; see
/// the [module docs](self) for the check, an example and the weakness of Trello's scheme.
/// Its `Debug` shows no secret.
///
/// ```
/// use hookguard::{providers::trello, verify::{Outgoing, Scheme, Sign}};
///
/// let scheme = trello::scheme("trello_secret", "https://example.com/trello").unwrap();
/// assert_eq!(scheme.provider(), "trello");
/// assert!(!scheme.signs_called_url(), "the registered URL is signed, not the request's");
/// assert!(!format!("{scheme:?}").contains("trello_secret"));
/// let body = r#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard","data":{"card":{"name":"A – B"}}}}"#;
/// let headers = scheme.sign(&Outgoing::new(body.as_bytes())).unwrap();
/// assert_eq!(headers[0].1, "JZksOnOEif3nrhEAJj6gvGnhYJ0=");
/// ```
#[derive(Clone)]
pub struct TrelloScheme {
    /// The check over the bytes as received (its `Debug` redacts the secrets).
    hmac: HmacScheme,
    /// The callback URL `hmac` signs, for the binary form.
    url: Cow<'static, str>,
}

/// The callback URL without its query or user information (a token may travel there).
impl std::fmt::Debug for TrelloScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrelloScheme")
            .field("hmac", &self.hmac)
            .field("url", &crate::verify::redacted_url(&self.url))
            .finish()
    }
}

impl TrelloScheme {
    /// Adds a secret (rotation: the first secret signs, every secret verifies).
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] for an empty secret.
    ///
    /// ```
    /// use hookguard::providers::trello;
    /// let scheme = trello::scheme("new", "https://example.com/trello").unwrap().with_secret("old").unwrap();
    /// assert_eq!(scheme.secret_count(), 2);
    /// ```
    pub fn with_secret(mut self, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        self.hmac = self.hmac.with_secret(secret)?;
        Ok(self)
    }

    /// Replaces the callback URL that is signed (a webhook moved to another URL).
    ///
    /// ```
    /// use hookguard::{providers::trello, verify::{Outgoing, Scheme, Sign, WebhookRequest}};
    /// let old = trello::scheme("secret", "https://example.com/trello").unwrap();
    /// let moved = old.clone().with_url("https://example.com/trello2");
    /// let body = r#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard","data":{"card":{"name":"Ünïcödé"}}}}"#;
    /// let mut req = http::Request::post("/internal/trello");
    /// for (name, value) in moved.sign(&Outgoing::new(body.as_bytes())).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let req = req.body(body.as_bytes().to_vec()).unwrap();
    /// let (req, now) = (WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc());
    /// assert!(moved.verify(&req, now).is_ok());
    /// assert!(old.verify(&req, now).is_err(), "signed for the other URL");
    /// ```
    #[must_use]
    pub fn with_url(mut self, url: impl Into<Cow<'static, str>>) -> Self {
        self.url = url.into();
        self.hmac = self.hmac.with_url(self.url.clone());
        self
    }

    /// How many secrets verify.
    ///
    /// ```
    /// use hookguard::providers::trello;
    /// assert_eq!(trello::scheme("s", "https://example.com/trello").unwrap().secret_count(), 1);
    /// ```
    #[must_use]
    pub fn secret_count(&self) -> usize {
        self.hmac.secret_count()
    }
}

impl Scheme for TrelloScheme {
    fn provider(&self) -> &str {
        self.hmac.provider()
    }

    fn signs_called_url(&self) -> bool {
        self.hmac.signs_called_url()
    }

    fn tolerance(&self) -> Tolerance {
        self.hmac.tolerance()
    }

    fn verify<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        now: OffsetDateTime,
    ) -> Result<Verified<'a>, Rejection> {
        // Keyed by the MAC's fingerprint, not the action's id: every copy of a delivery
        // altered under the binary form (or sent as the binary form itself, which the raw
        // check accepts) carries its MAC, and not always its id.
        let refused = match self.hmac.verify(req, now) {
            Err(refused) if refused.reason() == Reason::SignatureMismatch => refused,
            done => return done.map(Verified::with_unsigned_id),
        };
        let Some(binary) = binary_form(req.body(), &self.url) else {
            return Err(refused);
        };
        match self.hmac.verify_message(req, now, &binary) {
            Ok(verified) if is_ascii(verified.id()) && is_ascii(verified.event()) => {
                Ok(verified.with_unsigned_id())
            }
            _ => Err(refused),
        }
    }
}

impl Sign for TrelloScheme {
    fn sign(&self, msg: &Outgoing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let Some(binary) = binary_form(msg.body(), &self.url) else {
            return self.hmac.sign(msg);
        };
        let read = |path| json::text_at(msg.body(), path).ok().flatten();
        if !(is_ascii(read(ID).as_deref()) && is_ascii(read(TYPE).as_deref())) {
            return Err(SignError::Unsupported(
                "Trello's action ids and types are ASCII: this body would not verify",
            ));
        }
        let tag = self.hmac.mac_primary(&binary);
        Ok(vec![(HEADER, header_value(Encoding::Base64.encode(tag.as_bytes()))?)])
    }
}

/// Whether an action id or type read from a body that verified (or is signed) under the
/// binary form may be kept: Trello's ids (24 hex digits) and types (`updateCard`) are
/// ASCII, and a copy with one of their characters swapped for another sharing its low
/// byte verifies too, which would give it a replay key or an event of its own.
fn is_ascii(text: Option<&str>) -> bool {
    text.is_none_or(str::is_ascii)
}

/// What Node's `"binary"` encoding makes of the string `body + url`: the low byte of each
/// UTF-16 code unit. `None` when it is the bytes themselves (ASCII), or when the body is
/// not UTF-8 (no string Trello sends). At most `body.len() + url.len()` bytes: each code
/// unit comes from one to three bytes of UTF-8, a surrogate pair from four.
fn binary_form(body: &[u8], url: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    if text.is_ascii() && url.is_ascii() {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + url.len());
    out.extend(text.encode_utf16().chain(url.encode_utf16()).map(|unit| {
        let [low, _] = unit.to_le_bytes();
        low
    }));
    Some(out)
}

/// Answers the `HEAD` Trello sends when a webhook is created: `200` with an empty body
/// for `HEAD`, `None` for any other method (a pre-verify step).
///
/// ```
/// use hookguard::providers::trello;
/// assert!(trello::head_response(&http::Method::POST).is_none());
/// ```
#[must_use]
pub fn head_response(method: &Method) -> Option<Response<Vec<u8>>> {
    (method == Method::HEAD).then(|| respond::status(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Detail, Verified};

    // Self-computed (no official vector exists): python3
    // base64(hmac.new(b"trello_secret", BODY + b"https://example.com/trello", sha1).digest()).
    const BODY: &[u8] = br#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard"}}"#;
    const URL: &str = "https://example.com/trello";
    const SIG: &str = "v9BlqlXkPU79ugpvUedcO/GTMFs=";

    // A card named with an en dash (U+2013). Self-computed with python3, where
    // binary(s) = bytes(u & 0xff for u in the UTF-16 code units of s), and checked with
    // node 20's `crypto.createHmac('sha1', secret).update(BODY + URL, 'binary')`:
    // base64(hmac(b"trello_secret", binary(DASH + URL), sha1)) and, over the UTF-8 bytes,
    // base64(hmac(b"trello_secret", (DASH + URL).encode(), sha1)).
    const DASH: &str = r#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"updateCard","data":{"card":{"name":"A – B"}}}}"#;
    const DASH_BINARY: &str = "JZksOnOEif3nrhEAJj6gvGnhYJ0=";
    const DASH_UTF8: &str = "AFuUdLa95UNs5gJTF6eY2aEgjOU=";
    // An emoji (U+1F680) outside the BMP: two surrogate code units, two bytes. Same
    // computation (python3's UTF-16 surrogates; node agrees).
    const ROCKET: &str =
        r#"{"action":{"id":"51f9424bcd6e040f3c002412","type":"commentCard","data":{"text":"ship it 🚀"}}}"#;
    const ROCKET_BINARY: &str = "JTHg8oAo0P975X95PwypsKJ/mR8=";
    const ROCKET_UTF8: &str = "FII2i90/wRitVcP8bcvv77uZGPA=";

    fn request(sig: &str, body: &[u8]) -> http::Request<Vec<u8>> {
        // The request arrives on another URL (behind a proxy): the registered one is signed.
        http::Request::post("http://internal:8080/x")
            .header("x-trello-webhook", sig)
            .body(body.to_vec())
            .unwrap()
    }

    fn verify_with(scheme: &TrelloScheme, sig: &str, body: &[u8]) -> Result<Verified<'static>, Rejection> {
        let req = request(sig, body);
        scheme
            .verify(&WebhookRequest::from_request(&req), OffsetDateTime::UNIX_EPOCH)
            .map(Verified::into_owned)
    }

    fn verify(secret: &str, url: &str, sig: &str, body: &[u8]) -> Result<(), Reason> {
        verify_with(&scheme(secret, url.to_owned()).unwrap(), sig, body).map(|_| ()).map_err(|r| r.reason())
    }

    #[test]
    fn signatures() {
        let mismatch = Err(Reason::SignatureMismatch);
        let cases: &[(&str, &str, &str, &str, &[u8], Result<(), Reason>)] = &[
            ("self-computed vector", "trello_secret", URL, SIG, BODY, Ok(())),
            ("other callback URL", "trello_secret", "https://example.com/trello/", SIG, BODY, mismatch),
            ("wrong secret", "other", URL, SIG, BODY, mismatch),
            ("body changed", "trello_secret", URL, SIG, b"{}", mismatch),
            ("en dash, as Trello signs it", "trello_secret", URL, DASH_BINARY, DASH.as_bytes(), Ok(())),
            ("en dash, over the UTF-8 bytes", "trello_secret", URL, DASH_UTF8, DASH.as_bytes(), Ok(())),
            ("emoji, as Trello signs it", "trello_secret", URL, ROCKET_BINARY, ROCKET.as_bytes(), Ok(())),
            ("emoji, over the UTF-8 bytes", "trello_secret", URL, ROCKET_UTF8, ROCKET.as_bytes(), Ok(())),
            ("en dash, wrong signature", "trello_secret", URL, SIG, DASH.as_bytes(), mismatch),
            ("en dash, another body's", "trello_secret", URL, ROCKET_BINARY, DASH.as_bytes(), mismatch),
            ("en dash, wrong secret", "other", URL, DASH_BINARY, DASH.as_bytes(), mismatch),
            (
                "en dash, other callback URL",
                "trello_secret",
                "https://example.com/trello/",
                DASH_BINARY,
                DASH.as_bytes(),
                mismatch,
            ),
            ("not base64", "trello_secret", URL, "%%%", DASH.as_bytes(), Err(Reason::MalformedSignature)),
            ("no signature", "trello_secret", URL, "", DASH.as_bytes(), Err(Reason::MissingSignature)),
        ];
        for (name, secret, url, sig, body, want) in cases {
            assert_eq!(verify(secret, url, sig, body), *want, "case {name}");
        }
    }

    #[test]
    fn id_event_and_replay_key_are_the_same_under_both_forms() {
        let scheme = scheme("trello_secret", URL).unwrap();
        for (name, sig, body, event) in [
            ("ASCII", SIG, BODY, "updateCard"),
            ("en dash, binary", DASH_BINARY, DASH.as_bytes(), "updateCard"),
            ("en dash, UTF-8", DASH_UTF8, DASH.as_bytes(), "updateCard"),
            ("emoji, binary", ROCKET_BINARY, ROCKET.as_bytes(), "commentCard"),
        ] {
            let v = verify_with(&scheme, sig, body).unwrap_or_else(|e| panic!("case {name}: {e:?}"));
            assert_eq!(v.provider(), "trello", "case {name}");
            assert_eq!(v.id(), Some("51f9424bcd6e040f3c002412"), "case {name}");
            assert!(!v.id_is_signed(), "case {name}: a copy can change it");
            assert_eq!(v.dedup_key(), v.fingerprint(), "case {name}");
            assert_eq!(v.event(), Some(event), "case {name}");
            assert_eq!(v.timestamp(), None, "case {name}");
            assert_eq!(v.key_index(), 0, "case {name}");
        }
        // The fingerprint is the SHA-256 of the MAC that held, never the MAC.
        let binary = binary_form(DASH.as_bytes(), URL).unwrap();
        let v = verify_with(&scheme, DASH_BINARY, DASH.as_bytes()).unwrap();
        assert_eq!(v.fingerprint(), &scheme.hmac.mac_primary(&binary).fingerprint());
    }

    #[test]
    fn the_documented_weakness_and_its_limits() {
        let scheme = scheme("trello_secret", URL).unwrap();
        let swap = |from: &str, to: &str| DASH.replacen(from, to, 1);
        let cases = [
            // – U+2013 and ē U+0113 share their low byte: same signature, same replay key.
            ("ē for –", swap("–", "ē"), Ok(())),
            // The dash's first byte with its last bit flipped (E2 → E3): U+3013.
            ("one bit flipped: 〓 for –", swap("–", "〓"), Ok(())),
            // The id or the type with a character swapped: a replay key or event of its own.
            ("ı for the id's 1", swap("51f9", "5ıf9"), Err(Reason::SignatureMismatch)),
            ("Ń for the type's C", swap("updateCard", "updateŃard"), Err(Reason::SignatureMismatch)),
            ("ASCII id, swapped in the text only", swap("A – B", "Ł – B"), Ok(())),
        ];
        let genuine = verify_with(&scheme, DASH_BINARY, DASH.as_bytes()).unwrap().dedup_key().to_vec();
        for (name, body, want) in cases {
            let got = verify_with(&scheme, DASH_BINARY, body.as_bytes());
            assert_eq!(got.as_ref().map(|_| ()).map_err(Rejection::reason), want, "case {name}");
            if let Ok(v) = got {
                assert_eq!(v.dedup_key(), genuine, "case {name}: the genuine delivery's key");
            }
        }
        // The binary form itself, sent as the body: the raw check accepts it (it is the
        // very bytes signed), and it is a copy of the genuine delivery, not a new one.
        let mut raw = binary_form(DASH.as_bytes(), URL).unwrap();
        raw.truncate(raw.len() - URL.len());
        let v = verify_with(&scheme, DASH_BINARY, &raw).unwrap();
        assert_eq!(v.dedup_key(), genuine, "the binary form sent as the body");
        // A refused copy reports the check over the bytes it failed.
        let refused = verify_with(&scheme, DASH_BINARY, swap("51f9", "5ıf9").as_bytes()).unwrap_err();
        assert_eq!(refused.detail(), &Detail::Compared { signatures: 1, secrets: 1 });
    }

    #[test]
    fn rotation_checks_every_secret_under_both_forms() {
        let rotating = scheme("new", URL).unwrap().with_secret("trello_secret").unwrap();
        assert_eq!(rotating.secret_count(), 2);
        for (name, sig, body) in
            [("binary", DASH_BINARY, DASH.as_bytes()), ("UTF-8", DASH_UTF8, DASH.as_bytes())]
        {
            let v = verify_with(&rotating, sig, body).unwrap_or_else(|e| panic!("case {name}: {e:?}"));
            assert_eq!(v.key_index(), 1, "case {name}");
            assert_eq!(v.dedup_key(), v.fingerprint(), "case {name}");
        }
        let refused = verify_with(&rotating, SIG, DASH.as_bytes()).unwrap_err();
        assert_eq!(refused.detail(), &Detail::Compared { signatures: 1, secrets: 2 });
    }

    #[test]
    fn debug_hides_the_callback_urls_query() {
        let scheme = scheme("s3cr3t", "https://user:pw@example.com/trello?token=Zq9SECRET").unwrap();
        let debug = format!("{scheme:?}");
        assert!(!debug.contains("Zq9SECRET") && !debug.contains("pw@"), "{debug}");
        assert!(debug.contains(r#"url: "https://[redacted]@example.com/trello?[redacted]""#), "{debug}");
    }

    #[test]
    fn sign_round_trip_and_with_url() {
        let scheme = scheme("trello_secret", URL).unwrap();
        let sign = |scheme: &TrelloScheme, body: &[u8]| scheme.sign(&Outgoing::new(body)).unwrap();
        assert_eq!(sign(&scheme, BODY)[0].1, SIG);
        assert_eq!(sign(&scheme, DASH.as_bytes()), [(HEADER, HeaderValue::from_static(DASH_BINARY))]);
        assert_eq!(sign(&scheme, ROCKET.as_bytes())[0].1, ROCKET_BINARY);
        // Not UTF-8 (no body Trello sends): the bytes are signed.
        let bytes: &[u8] = b"{\xff}";
        assert_eq!(
            sign(&scheme, bytes)[0].1,
            Encoding::Base64.encode(scheme.hmac.mac_primary(b"{\xff}https://example.com/trello").as_bytes())
        );
        // A non-ASCII id or type, which would not verify, is not signed either.
        for body in [DASH.replacen("51f9", "5ıf9", 1), DASH.replacen("updateCard", "updateŃard", 1)] {
            assert!(matches!(scheme.sign(&Outgoing::new(body.as_bytes())), Err(SignError::Unsupported(_))));
        }
        for body in [BODY, DASH.as_bytes(), ROCKET.as_bytes(), bytes] {
            let sig = sign(&scheme, body)[0].1.to_str().unwrap().to_owned();
            assert!(verify_with(&scheme, &sig, body).is_ok(), "{body:?}");
        }
        let moved = scheme.clone().with_url("https://example.com/moved");
        for body in [BODY, DASH.as_bytes()] {
            let sig = sign(&moved, body)[0].1.to_str().unwrap().to_owned();
            assert_ne!(sign(&scheme, body)[0].1, sig);
            assert!(verify_with(&moved, &sig, body).is_ok(), "{body:?}");
            assert_eq!(verify_with(&scheme, &sig, body).unwrap_err().reason(), Reason::SignatureMismatch);
        }
    }

    #[test]
    fn binary_form_is_the_low_byte_of_each_utf16_unit() {
        let cases: &[(&str, &[u8], &str, Option<&[u8]>)] = &[
            ("ASCII: the bytes themselves", b"{}", "https://e.com/t", None),
            ("not UTF-8", b"{\"a\":\"\xe2\x80\"}", "https://e.com/t", None),
            ("en dash", "–".as_bytes(), "/u", Some(b"\x13/u")),
            ("latin-1", "é".as_bytes(), "/u", Some(b"\xe9/u")),
            ("emoji: two surrogates", "🚀".as_bytes(), "/u", Some(b"\x3d\x80/u")),
            ("non-ASCII URL", b"{}", "/ü", Some(b"{}/\xfc")),
        ];
        for (name, body, url, want) in cases {
            let got = binary_form(body, url);
            assert_eq!(got.as_deref(), *want, "case {name}");
            assert!(got.is_none_or(|b| b.len() <= body.len() + url.len()), "case {name}");
        }
    }

    #[test]
    fn debug_redacts_the_secret() {
        let shown =
            format!("{:?}", scheme("trello_secret", URL).unwrap().with_secret("older_secret").unwrap());
        assert!(!shown.contains("trello_secret") && !shown.contains("older_secret"), "{shown}");
        assert!(shown.contains("TrelloScheme") && shown.contains(URL), "{shown}");
    }

    #[test]
    fn configuration_and_head() {
        assert!(matches!(super::scheme("s", ""), Err(ConfigError::Invalid(_))));
        assert_eq!(super::scheme("", URL).unwrap_err(), ConfigError::EmptySecret);
        assert_eq!(super::scheme("s", URL).unwrap().with_secret("").unwrap_err(), ConfigError::EmptySecret);
        assert_eq!(head_response(&Method::HEAD).unwrap().status(), 200);
        assert!(head_response(&Method::HEAD).unwrap().body().is_empty());
        assert!(head_response(&Method::GET).is_none());
    }
}
