//! What every described scheme reads around its signature: the signed pieces, the
//! timestamp and its tolerance, the delivery id, the event type and the signed URL.
//! Shared by [`HmacScheme`](super::HmacScheme) and the asymmetric schemes, so that they
//! extract, check and sign these values the same way.

use std::borrow::Cow;

use http::{HeaderName, HeaderValue};
use sha2::Digest as _;
use time::OffsetDateTime;

use super::{
    Detail, Field, Outgoing, Piece, Reason, Rejection, SignError, SignatureFormat, SignedContent,
    TimestampFormat, Tolerance, Verified, WebhookRequest,
    content::Values,
    request::{Event, is_visible},
    scheme::header_value,
};
use crate::error::ConfigError;

/// The description of everything but the signature and the keys.
#[derive(Clone)]
pub(crate) struct Envelope {
    pub(crate) content: SignedContent,
    pub(crate) timestamp: Option<(Field, TimestampFormat)>,
    pub(crate) tolerance: Tolerance,
    pub(crate) id: Option<Field>,
    pub(crate) event: Option<Field>,
    pub(crate) url: Option<Cow<'static, str>>,
    /// Whether a copy can be told from a new delivery ([`Verified::has_replay_key`]).
    pub(crate) replay_key: bool,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("content", &self.content)
            .field("timestamp", &self.timestamp)
            .field("tolerance", &self.tolerance)
            .field("id", &self.id)
            .field("event", &self.event)
            .field("url", &self.url_shown())
            .field("replay_key", &self.replay_key)
            .finish()
    }
}

impl Envelope {
    /// The scheme's URL for a `Debug` output: its query and any user information hidden
    /// (a callback URL may carry a token: `?token=…`), as [`WebhookRequest`]'s `Debug`
    /// hides the request's.
    pub(crate) fn url_shown(&self) -> ShownUrl<'_> {
        ShownUrl(self.url.as_deref())
    }
}

/// A URL in a `Debug` output without what may be secret in it ([`Envelope::url_shown`]).
pub(crate) struct ShownUrl<'a>(Option<&'a str>);

impl std::fmt::Debug for ShownUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(url) => write!(f, "Some({:?})", redacted_url(url)),
            None => f.write_str("None"),
        }
    }
}

/// `url` for a `Debug` output: its query (and fragment) and any user information shown as
/// `[redacted]`.
pub(crate) fn redacted_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let (head, tail) = url.split_at(end);
    let hidden = if tail.is_empty() { "" } else { "?[redacted]" };
    // User information ends at an `@`: hidden up to the last one (a password may hold an
    // unescaped `/`; an `@` in the path hides more than needed, which a `Debug` can afford).
    match head.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => format!("{scheme}://[redacted]@{}{hidden}", &rest[at + 1..]),
            None => format!("{head}{hidden}"),
        },
        None => format!("{head}{hidden}"),
    }
}

/// The values read from one request before its signature is checked.
pub(crate) struct Inputs<'a> {
    /// The timestamp as received (ASCII once checked).
    ts_text: Cow<'a, [u8]>,
    /// Nanoseconds since the epoch.
    timestamp: Option<i128>,
    /// Whether the place it was read from is covered by the signature.
    timestamp_signed: bool,
    id: Option<Cow<'a, str>>,
    url: Cow<'a, str>,
    body: &'a [u8],
    method: &'a str,
}

/// The checked timestamp (in nanoseconds) and id of a request: what
/// [`Envelope::check_raw`] finds and what [`Envelope::verified`] takes. Small, unlike
/// [`Inputs`]: the MAC has already had the signed values.
#[derive(Debug)]
pub(crate) struct Checked<'a> {
    pub(crate) timestamp: Option<i128>,
    /// Whether the place the timestamp was read from is covered by the signature.
    pub(crate) timestamp_signed: bool,
    pub(crate) id: Option<Cow<'a, str>>,
}

impl<'a> Inputs<'a> {
    /// The checked timestamp and id, once the signed values are no longer needed.
    pub(crate) fn into_checked(self) -> Checked<'a> {
        Checked { timestamp: self.timestamp, timestamp_signed: self.timestamp_signed, id: self.id }
    }

    /// The values of the signed pieces.
    pub(crate) fn values(&self) -> Values<'_> {
        Values {
            id: self.id.as_deref().unwrap_or("").as_bytes(),
            timestamp: &self.ts_text,
            body: self.body,
            url: &self.url,
            method: self.method,
        }
    }
}

/// What a sender adds around the signature, and the values it signs.
pub(crate) struct Prepared<'m> {
    /// The timestamp and id headers, in that order, when they travel in headers.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// The timestamp text that is signed.
    pub(crate) ts_text: Option<String>,
    url: &'m str,
    id: &'m str,
    body: &'m [u8],
    method: &'m str,
}

impl Prepared<'_> {
    /// The values of the signed pieces.
    pub(crate) fn values(&self) -> Values<'_> {
        Values {
            id: self.id.as_bytes(),
            timestamp: self.ts_text.as_deref().unwrap_or("").as_bytes(),
            body: self.body,
            url: self.url,
            method: self.method,
        }
    }
}

impl Envelope {
    /// Replaces the tolerance of a scheme that reads a timestamp; one without keeps
    /// `Tolerance::NONE` rather than a window nothing checks.
    pub(crate) fn retime(&mut self, tolerance: Tolerance) {
        if self.timestamp.is_some() {
            self.tolerance = tolerance;
        }
    }

    /// The body alone, no timestamp, no id.
    pub(crate) const fn new() -> Self {
        Self {
            content: SignedContent::BODY,
            timestamp: None,
            tolerance: Tolerance::NONE,
            id: None,
            event: None,
            url: None,
            replay_key: true,
        }
    }

    /// Checks that the description fits together (what `build` refuses).
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.timestamp.is_none() && (self.content.uses(Piece::Timestamp) || self.tolerance.is_checked()) {
            return Err(ConfigError::Invalid("a timestamp is signed or checked but has no source"));
        }
        if self.id.is_none() && self.content.uses(Piece::Id) {
            return Err(ConfigError::Invalid("the id is signed but has no source"));
        }
        // A signed id or timestamp tells a copy from a new delivery: without a replay key,
        // every replayed copy would be handled again for nothing.
        let signed_id = self.id.is_some() && self.id_signed();
        if !self.replay_key && (signed_id || (self.timestamp.is_some() && self.timestamp_signed())) {
            return Err(ConfigError::Invalid(
                "no_replay_key with a signed id or timestamp, which tells a copy from a new delivery",
            ));
        }
        Ok(())
    }

    /// Reads the timestamp (and checks it against the tolerance), the id the content
    /// signs or that sits in a header, and the URL, before the signature is checked.
    pub(crate) fn read<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        signature_param: Option<&'a [u8]>,
        now: OffsetDateTime,
    ) -> Result<Inputs<'a>, Rejection> {
        let mut ts_text: Cow<'a, [u8]> = Cow::Borrowed(b"");
        let mut timestamp = None;
        let mut timestamp_signed = true;
        if let Some((field, format)) = &self.timestamp {
            let (text, from) = field
                .text_from(req, signature_param)?
                .ok_or_else(|| Rejection::with_detail(Reason::MissingTimestamp, field.detail()))?;
            timestamp_signed = self.covers_timestamp_at(from);
            timestamp = Some(self.checked_timestamp(field, *format, text.as_bytes(), now)?);
            ts_text = match text {
                Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            };
        }

        let needs_id = self.content.signs_id();
        let id = match &self.id {
            Some(field) if needs_id || !matches!(field, Field::Json(_)) => field.text(req, None)?,
            _ => None,
        };
        if needs_id && id.is_none() {
            let detail = self.id.as_ref().map_or(Detail::None, Field::detail);
            return Err(Rejection::with_detail(Reason::MissingHeader, detail));
        }

        let url = self.signed_url(req)?;

        Ok(Inputs {
            ts_text,
            timestamp,
            timestamp_signed,
            id,
            url,
            body: req.body(),
            method: req.method().as_str(),
        })
    }

    /// Parses a timestamp and checks it against the tolerance. Parsed before any text
    /// check: what parses is visible ASCII; what does not is a malformed header when it is
    /// not text (as [`Field::text`] would say), else a malformed timestamp.
    fn checked_timestamp(
        &self,
        field: &Field,
        format: TimestampFormat,
        bytes: &[u8],
        now: OffsetDateTime,
    ) -> Result<i128, Rejection> {
        let Some(at) = format.parse_nanos(bytes) else {
            let reason = if is_visible(bytes) { Reason::MalformedTimestamp } else { Reason::MalformedHeader };
            return Err(Rejection::with_detail(reason, field.detail()));
        };
        self.tolerance.check_nanos(at, now.unix_timestamp_nanos()).map_err(Rejection::skew)?;
        Ok(at)
    }

    /// Whether the timestamp and the id (where there are) are plain headers and the URL
    /// is not signed: then [`read_raw`](Self::read_raw) and [`check_raw`](Self::check_raw)
    /// can stand in for [`read`](Self::read).
    pub(crate) fn headers_only(&self) -> bool {
        matches!(self.timestamp, None | Some((Field::Header(_), _)))
            && matches!(self.id, None | Some(Field::Header(_)))
            && !self.content.uses_url()
    }

    /// The timestamp and id headers, looked up once and not yet checked (for a
    /// [`headers_only`](Self::headers_only) envelope), so the MAC can start before the
    /// checks; [`check_raw`](Self::check_raw) then checks them.
    pub(crate) fn read_raw<'a>(&self, req: &WebhookRequest<'a>, signature: Option<&HeaderName>) -> Raw<'a> {
        fn name(field: Option<&Field>) -> Option<&HeaderName> {
            match field {
                Some(Field::Header(name)) => Some(name),
                _ => None,
            }
        }
        let (ts_name, id_name) =
            (name(self.timestamp.as_ref().map(|(field, _)| field)), name(self.id.as_ref()));
        let headers = req.headers();
        if headers.keys_len() > SCAN_MAX {
            let get = |name: Option<&HeaderName>| name.and_then(|name| headers.get(name));
            return Raw { timestamp: get(ts_name), id: get(id_name), signature: Scanned::Skipped };
        }
        // A request's few headers are compared by name in one pass: cheaper than hashing
        // each wanted name (a multiply per byte, in sequence), and the MAC waits for these.
        // (`HeaderName` equality tells a well-known header from a custom one at once.)
        let mut raw = Raw {
            timestamp: None,
            id: None,
            signature: if signature.is_some() { Scanned::Absent } else { Scanned::Skipped },
        };
        let is = |wanted: Option<&HeaderName>, name: &HeaderName| {
            wanted.is_some_and(|wanted| same_bytes(wanted.as_str().as_bytes(), name.as_str().as_bytes()))
        };
        for (name, value) in headers {
            if is(signature, name) {
                raw.signature = match raw.signature {
                    Scanned::Absent => Scanned::One(value),
                    _ => Scanned::Several,
                };
            } else if raw.timestamp.is_none() && is(ts_name, name) {
                raw.timestamp = Some(value);
            } else if raw.id.is_none() && is(id_name, name) {
                raw.id = Some(value);
            }
        }
        raw
    }

    /// The signed values as received, unchecked; `None` when one the content signs is
    /// missing (then [`check_raw`](Self::check_raw) refuses the request).
    pub(crate) fn raw_values<'a>(&self, raw: &Raw<'a>, req: &WebhookRequest<'a>) -> Option<Values<'a>> {
        if (self.timestamp.is_some() && raw.timestamp.is_none())
            || (self.content.signs_id() && raw.id.is_none())
        {
            return None;
        }
        Some(Values {
            id: raw.id.map_or(&[][..], HeaderValue::as_bytes),
            timestamp: raw.timestamp.map_or(&[][..], HeaderValue::as_bytes),
            body: req.body(),
            url: "",
            method: req.method().as_str(),
        })
    }

    /// [`read`](Self::read)'s checks, in its order and with its reasons, on values
    /// [`read_raw`](Self::read_raw) looked up.
    #[inline]
    pub(crate) fn check_raw<'a>(
        &'a self,
        raw: Raw<'a>,
        now: OffsetDateTime,
    ) -> Result<Checked<'a>, Rejection> {
        let mut timestamp = None;
        if let Some((field, format)) = &self.timestamp {
            let bytes = raw
                .timestamp
                .ok_or_else(|| Rejection::with_detail(Reason::MissingTimestamp, field.detail()))?
                .as_bytes();
            timestamp = Some(self.checked_timestamp(field, *format, bytes, now)?);
        }
        let id = match &self.id {
            Some(field) => field.header_text(raw.id)?.map(Cow::Borrowed),
            None => None,
        };
        if self.content.signs_id() && id.is_none() {
            let detail = self.id.as_ref().map_or(Detail::None, Field::detail);
            return Err(Rejection::with_detail(Reason::MissingHeader, detail));
        }
        // Only plain headers come this way: the one field decides.
        Ok(Checked { timestamp, timestamp_signed: self.timestamp_signed(), id })
    }

    /// The result for a request whose signature held: values read from the body are
    /// only read now.
    #[inline]
    pub(crate) fn verified<'a>(
        &'a self,
        provider: &'a str,
        req: &WebhookRequest<'a>,
        Checked { timestamp, timestamp_signed, id }: Checked<'a>,
        fingerprint: [u8; 32],
        key_index: usize,
    ) -> Verified<'a> {
        let id = match (&self.id, id) {
            (Some(field @ Field::Json(_)), None) => field.text(req, None).ok().flatten(),
            (_, id) => id,
        };
        let event = match &self.event {
            Some(Field::Json(path)) => Event::in_body(req.body(), path),
            Some(field) => Event::Known(field.text(req, None).ok().flatten()),
            None => Event::Known(None),
        };
        let signed = (self.id_signed(), timestamp_signed);
        // Keyed by the signature, a delivery without a signed id would change key with
        // every retry when the signature covers a timestamp: providers sign each try anew
        // (Zoom retries 5, 25 and 85 minutes later, past any tolerance). What else it
        // signs does not change, and only the sender can sign it: the key is its hash.
        let fingerprint = if (id.is_none() || !signed.0) && self.retries_sign_anew() {
            self.signed_but_timestamp(req)
        } else {
            fingerprint
        };
        let verified = Verified::assemble(provider, id, timestamp, event, fingerprint, key_index, signed);
        if self.replay_key { verified } else { verified.without_replay_key() }
    }

    /// Whether the signature covers a timestamp piece and the body, so that a retry of
    /// one body is signed anew ([`verified`](Self::verified)), and the timestamp's text has
    /// ends that cannot move: a literal or the content's edge on both sides, or RFC 3339's
    /// fixed shape. Where digits could move between a numeric timestamp and its neighbour
    /// (Discord's and SendGrid's `{timestamp}{body}`, HubSpot v3's `…{body}{timestamp}`),
    /// the same MAC signs several splits, and only a key that covers the timestamp (the
    /// MAC's) tells a copy with digits moved from the delivery it copies.
    fn retries_sign_anew(&self) -> bool {
        let pieces = self.content.pieces();
        let Some(at) = pieces.iter().position(|p| matches!(p, Piece::Timestamp)) else {
            return false;
        };
        if !pieces.iter().any(|p| matches!(p, Piece::Body)) {
            return false;
        }
        let fixed_shape = matches!(self.timestamp, Some((_, TimestampFormat::Rfc3339)));
        // A literal ends the timestamp if its byte next to it is not a digit.
        let edge = |piece: Option<&Piece>, next: fn(&[u8]) -> Option<&u8>| match piece {
            None => true,
            Some(Piece::Literal(bytes)) => next(bytes).is_some_and(|b| !b.is_ascii_digit()),
            Some(_) => false,
        };
        fixed_shape
            || (edge(at.checked_sub(1).and_then(|i| pieces.get(i)), <[u8]>::last)
                && edge(pieces.get(at + 1), <[u8]>::first))
    }

    /// The URL the signature covers: the one the scheme was given
    /// ([`url`](super::HmacSchemeBuilder::url)), else the request's; empty when the
    /// content signs none.
    fn signed_url<'a>(&'a self, req: &WebhookRequest<'a>) -> Result<Cow<'a, str>, Rejection> {
        if !self.content.uses_url() {
            return Ok(Cow::Borrowed(""));
        }
        match &self.url {
            Some(url) => Ok(Cow::Borrowed(url.as_ref())),
            None => req.url(),
        }
    }

    /// SHA-256 of every signed piece but the timestamp (and the fixed literals), each
    /// length-prefixed: the method, the URL and the body as signed. The URL as the MAC
    /// took it: the scheme's own when it has one (a query added to the request's is not
    /// signed, and must not make a copy another delivery), with the escapes a
    /// [`Piece::UrlDecoding`] decodes decoded (`%3A` and `:` sign alike).
    fn signed_but_timestamp(&self, req: &WebhookRequest<'_>) -> [u8; 32] {
        let mut hash = sha2::Sha256::new();
        // The request verified, so the URL its signature needs is there.
        let url = self.signed_url(req).unwrap_or_default();
        let mut decoded = Vec::new();
        for piece in self.content.pieces() {
            let bytes = match piece {
                Piece::Body => req.body(),
                Piece::Method => req.method().as_str().as_bytes(),
                Piece::Url => url.as_bytes(),
                Piece::UrlDecoding(set) => {
                    decoded.clear();
                    super::content::decode_url(url.as_bytes(), set, |b| decoded.extend_from_slice(b));
                    &decoded
                }
                Piece::Id | Piece::Timestamp | Piece::Literal(_) => continue,
            };
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        }
        hash.finalize().into()
    }

    /// Whether the signature covers the timestamp wherever the scheme may read it: a
    /// signed piece ([`Piece::Timestamp`]), or a member of a signed body. With a choice of
    /// sources ([`Field::Any`]), every one must be covered; a request is judged by the
    /// place its timestamp came from ([`covers_timestamp_at`](Self::covers_timestamp_at)).
    pub(crate) fn timestamp_signed(&self) -> bool {
        self.timestamp.as_ref().is_none_or(|(field, _)| self.covers_timestamp_at(field))
    }

    /// Whether a timestamp read from `field` is covered by the signature.
    pub(crate) fn covers_timestamp_at(&self, field: &Field) -> bool {
        match field {
            Field::Json(_) => self.content.uses(Piece::Body) || self.content.uses(Piece::Timestamp),
            Field::Header(_) | Field::SignatureParam => self.content.uses(Piece::Timestamp),
            Field::Any(fields) => fields.iter().all(|f| self.covers_timestamp_at(f)),
        }
    }

    /// Whether the signature covers the delivery id: the id is a signed piece
    /// ([`Piece::Id`]), or a member of a signed body. An id header the provider does not
    /// sign could be changed on a replay, so it cannot be the replay key. Nor can an id
    /// signed right next to a numeric timestamp (Mailgun's `{timestamp}{token}`): a digit
    /// moved across the boundary gives another id under the same MAC, so the boundary
    /// makes the id unsigned in effect and the replay key is the MAC's fingerprint.
    pub(crate) fn id_signed(&self) -> bool {
        let numeric =
            matches!(self.timestamp, Some((_, TimestampFormat::UnixSeconds | TimestampFormat::UnixMillis)));
        if numeric
            && self
                .content
                .pieces()
                .windows(2)
                .any(|w| matches!(w, [Piece::Id, Piece::Timestamp] | [Piece::Timestamp, Piece::Id]))
        {
            return false;
        }
        fn covered(field: &Field, content: &SignedContent) -> bool {
            match field {
                Field::Json(_) => content.uses(Piece::Body) || content.uses(Piece::Id),
                Field::Header(_) => content.uses(Piece::Id),
                Field::SignatureParam => true,
                Field::Any(fields) => fields.iter().all(|f| covered(f, content)),
            }
        }
        self.id.as_ref().is_none_or(|field| covered(field, &self.content))
    }

    /// The sender's side: the timestamp and id headers and the values to sign.
    pub(crate) fn prepare<'m>(&'m self, msg: &'m Outgoing<'m>) -> Result<Prepared<'m>, SignError> {
        let mut headers = Vec::with_capacity(3);
        if self.content.uses(Piece::Id) && msg.get_id().is_none() {
            return Err(SignError::MissingId);
        }
        let ts_text = match &self.timestamp {
            Some((field, format)) => {
                let at = msg.get_timestamp().ok_or(SignError::MissingTimestamp)?;
                let text = format.format(at);
                if let Some(name) = first_header(field) {
                    headers.push((name.clone(), header_value(text.clone())?));
                }
                Some(text)
            }
            None => None,
        };
        if let (Some(field), Some(id)) = (&self.id, msg.get_id())
            && let Some(name) = first_header(field)
        {
            headers.push((name.clone(), header_value(id.to_owned())?));
        }
        let url = if self.content.uses_url() {
            match (&self.url, msg.get_url()) {
                (Some(url), _) => url.as_ref(),
                (None, Some(url)) => url,
                (None, None) => return Err(SignError::MissingUrl),
            }
        } else {
            ""
        };
        Ok(Prepared {
            headers,
            ts_text,
            url,
            id: msg.get_id().unwrap_or(""),
            body: msg.body(),
            method: msg.get_method().as_str(),
        })
    }

    /// Whether the timestamp is written into the signature header itself (Stripe's `t=`).
    pub(crate) fn timestamp_in_signature(&self, format: SignatureFormat) -> bool {
        matches!(format, SignatureFormat::Pairs { timestamp_key: Some(_), .. })
            && matches!(self.timestamp, Some((Field::SignatureParam, _)))
    }
}

/// Up to this many header names, [`Envelope::read_raw`] scans the map instead of hashing
/// each wanted name.
const SCAN_MAX: usize = 16;

/// Byte equality of two short strings (header names) compared eight bytes at a time in
/// place: no call to `memcmp`, which costs more than the comparison for a 10–20 byte
/// name. (Names are public: no constant time needed.)
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return a == b;
    }
    let word =
        |s: &[u8], at: usize| s.get(at..at + 8).map(|w| u64::from_ne_bytes(w.try_into().unwrap_or([0; 8])));
    let mut at = 0;
    while at + 8 < a.len() {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    // The last eight bytes (overlapping the previous word when the length is not a
    // multiple of eight).
    word(a, a.len() - 8) == word(b, b.len() - 8)
}

/// Header values looked up by [`Envelope::read_raw`], not yet checked.
pub(crate) struct Raw<'a> {
    timestamp: Option<&'a HeaderValue>,
    id: Option<&'a HeaderValue>,
    /// The signature header, when the scan looked for it.
    pub(crate) signature: Scanned<'a>,
}

/// What [`Envelope::read_raw`]'s scan found of the signature header.
#[derive(Clone, Copy)]
pub(crate) enum Scanned<'a> {
    /// Not looked for (a large map, or no single header name): look it up.
    Skipped,
    /// Not in the request.
    Absent,
    /// Exactly one value.
    One(&'a HeaderValue),
    /// Several values: read them all with `get_all`.
    Several,
}

/// The first header of a field that is present in the request.
#[cfg(any(feature = "ed25519", feature = "ecdsa"))]
pub(crate) fn first_present_header<'f>(field: &'f Field, req: &WebhookRequest<'_>) -> Option<&'f HeaderName> {
    match field {
        Field::Header(name) => req.headers().contains_key(name).then_some(name),
        Field::Any(fields) => fields.iter().find_map(|f| first_present_header(f, req)),
        _ => None,
    }
}

/// The values of the first header of a field that is present in the request, looked up
/// once per header name.
pub(crate) fn first_present_values<'a>(
    field: &Field,
    req: &WebhookRequest<'a>,
) -> Option<http::header::GetAll<'a, HeaderValue>> {
    match field {
        Field::Header(name) => {
            let values = req.headers().get_all(name);
            values.iter().next().is_some().then_some(values)
        }
        Field::Any(fields) => fields.iter().find_map(|f| first_present_values(f, req)),
        _ => None,
    }
}

/// The first header a field names (where a sender writes it).
pub(crate) fn first_header(field: &Field) -> Option<&HeaderName> {
    match field {
        Field::Header(name) => Some(name),
        Field::Any(fields) => fields.iter().find_map(first_header),
        _ => None,
    }
}

/// Whether a field can hold a signature (a header or a body member).
pub(crate) fn is_signature_location(field: &Field) -> bool {
    !(matches!(field, Field::Any(list) if list.is_empty()) || *field == Field::SignatureParam)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            content: crate::providers::standard_webhooks::CONTENT,
            timestamp: Some((
                Field::Header(HeaderName::from_static("webhook-timestamp")),
                TimestampFormat::UnixSeconds,
            )),
            tolerance: Tolerance::symmetric(Duration::from_secs(300)),
            id: Some(Field::Header(HeaderName::from_static("webhook-id"))),
            event: None,
            url: None,
            replay_key: true,
        }
    }

    /// No replay key is refused beside a signed id or a signed timestamp, which tell a
    /// copy from a new delivery; with neither (Dropbox), or an id the signature does not
    /// cover, it is taken.
    #[test]
    fn no_replay_key_goes_only_with_nothing_that_tells_copies_apart() {
        let without = |e: Envelope| Envelope { replay_key: false, ..e };
        assert!(without(envelope()).check().is_err(), "a signed id and timestamp");
        let id_only = Envelope { timestamp: None, tolerance: Tolerance::NONE, ..envelope() };
        let id_only = Envelope { content: SignedContent::new(vec![Piece::Id, Piece::Body]), ..id_only };
        assert!(without(id_only).check().is_err(), "a signed id");
        let stamp_only = Envelope {
            id: None,
            content: SignedContent::new(vec![Piece::Timestamp, Piece::Body]),
            ..envelope()
        };
        assert!(without(stamp_only).check().is_err(), "a signed timestamp");
        let neither = Envelope {
            id: Some(Field::Header(HeaderName::from_static("x-delivery"))),
            timestamp: None,
            tolerance: Tolerance::NONE,
            content: SignedContent::new(vec![Piece::Body]),
            ..envelope()
        };
        assert!(without(neither).check().is_ok(), "an unsigned id");
    }

    /// A scheme's `Debug` shows its URL without the query or user information: a
    /// callback URL may carry a token.
    #[test]
    fn a_schemes_debug_hides_its_urls_query_and_user_information() {
        use crate::verify::{Algorithm, Encoding, HmacScheme, SignatureFormat};
        let shown = |url: &'static str| {
            let scheme = HmacScheme::builder("acme", Algorithm::Sha256)
                .signature(Field::header("x-sig"), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
                .content(SignedContent::new(vec![Piece::Url, Piece::Body]))
                .url(url)
                .secret("s")
                .build()
                .unwrap();
            let debug = format!("{scheme:?}");
            debug[debug.find("url: ").unwrap()..].split(", replay_key").next().unwrap().to_owned()
        };
        assert_eq!(shown("https://x.example/cb"), r#"url: Some("https://x.example/cb")"#);
        assert_eq!(
            shown("https://x.example/cb?token=s3cret"),
            r#"url: Some("https://x.example/cb?[redacted]")"#
        );
        assert_eq!(shown("https://x.example/cb#s3cret"), r#"url: Some("https://x.example/cb?[redacted]")"#);
        assert_eq!(
            shown("https://user:pw@x.example/a?t=s3cret"),
            r#"url: Some("https://[redacted]@x.example/a?[redacted]")"#
        );
        assert_eq!(shown("https://user:p/w@x.example/a"), r#"url: Some("https://[redacted]@x.example/a")"#);
        assert_eq!(shown("x.example/cb?t=1"), r#"url: Some("x.example/cb?[redacted]")"#);
    }

    /// A header value from arbitrary bytes, or none when `http` refuses them.
    fn value(bytes: &[u8]) -> Option<HeaderValue> {
        HeaderValue::from_bytes(bytes).ok()
    }

    /// What a read found: the signed timestamp text, the timestamp, the id.
    type Read = (Vec<u8>, Option<i128>, Option<String>);

    fn outcome(r: Result<Inputs<'_>, Rejection>) -> Result<Read, Reason> {
        r.map(|i| (i.values().timestamp.to_vec(), i.timestamp, i.id.map(Cow::into_owned)))
            .map_err(|e| e.reason())
    }

    fn checked_outcome(r: Result<Checked<'_>, Rejection>) -> Result<(Option<i128>, Option<String>), Reason> {
        r.map(|c| (c.timestamp, c.id.map(Cow::into_owned))).map_err(|e| e.reason())
    }

    proptest! {
        /// The in-place comparison agrees with slice equality at every length, for equal
        /// strings and strings differing in one byte anywhere.
        #[test]
        fn same_bytes_is_equality(
            a in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            flip in proptest::option::of((proptest::num::usize::ANY, 1_u8..)),
            cut in proptest::option::of(proptest::num::usize::ANY),
        ) {
            let mut b = a.clone();
            if let Some((at, x)) = flip && !b.is_empty() {
                let at = at % b.len();
                b[at] ^= x;
            }
            if let Some(cut) = cut && !b.is_empty() {
                b.truncate(cut % b.len());
            }
            prop_assert_eq!(same_bytes(&a, &b), a == b);
            prop_assert!(same_bytes(&a, &a));
        }
    }

    proptest! {
        /// `read_raw` + `check_raw` (the MAC-first path) read and refuse exactly as `read`:
        /// same values, same reasons, for small maps (scanned) and large ones (hashed),
        /// repeated headers, and values that are missing, not text, or not numbers.
        #[test]
        fn raw_path_agrees_with_read(
            ts in proptest::option::of(prop_oneof![
                Just(b"1700000000".to_vec()),
                Just(b"1699999000".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..24),
            ]),
            id in proptest::option::of(prop_oneof![
                Just(b"msg_1".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..24),
            ]),
            second_ts in proptest::option::of(Just(b"1".to_vec())),
            padding in 0_usize..24,
        ) {
            let env = envelope();
            let mut req = http::Request::post("/").body(b"{}".to_vec()).unwrap();
            // Padding names as long as the wanted ones and sharing their `webhook-` prefix
            // (17 bytes like `webhook-timestamp`, 10 like `webhook-id`): the scan's name
            // comparison has to look past the length and the first word.
            for i in 0..padding {
                let name = if i % 2 == 0 { format!("webhook-pad-{i:05}") } else { format!("webhook-{i:02}") };
                req.headers_mut().insert(HeaderName::try_from(name).unwrap(), HeaderValue::from_static("p"));
            }
            if let Some(v) = ts.as_deref().and_then(value) {
                req.headers_mut().append("webhook-timestamp", v);
            }
            if let Some(v) = second_ts.as_deref().and_then(value) {
                req.headers_mut().append("webhook-timestamp", v);
            }
            if let Some(v) = id.as_deref().and_then(value) {
                req.headers_mut().append("webhook-id", v);
            }
            let view = WebhookRequest::from_request(&req);
            let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
            let raw = env.read_raw(&view, None);
            let signed = env.raw_values(&raw, &view).map(|v| (v.timestamp.to_vec(), v.id.to_vec()));
            let fast = checked_outcome(env.check_raw(raw, now));
            let slow = outcome(env.read(&view, None, now));
            prop_assert_eq!(&fast, &slow.clone().map(|(_, timestamp, id)| (timestamp, id)));
            // What the MAC was fed early is what the checks then accept.
            if let Ok((ts_text, _, id)) = &slow {
                prop_assert_eq!(signed, Some((ts_text.clone(), id.clone().unwrap_or_default().into_bytes())));
            }
        }
    }
}
