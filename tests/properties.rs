//! Properties every signing preset must have, over arbitrary bodies (any bytes), ids
//! and timestamps:
//!
//! - what the preset signs, it verifies (round trip);
//! - changing any one byte of the body, of the signature header or of the timestamp is
//!   refused (unless the change is equivalent: a hex letter's case, base64 padding
//!   turned into trailing white space);
//! - any header values at all give `Ok` or a `Rejection`, never a panic.
//!
//! Add a preset with one line in the `presets!` table at the bottom. Presets that sign the
//! URL get it from `Row::url` (Twilio: a URL carrying the body's `bodySHA256`, so that every
//! body byte is signed).

use std::ops::Range;

use hookguard::{
    ConfigError,
    providers::{Preset, github, standard_webhooks, stripe, twilio},
    verify::{Outgoing, Reason, Scheme, WebhookRequest},
};
use http::{HeaderName, HeaderValue};
use proptest::{prelude::*, sample::Index};
use time::OffsetDateTime;

/// Where a preset's timestamp travels.
#[derive(Clone, Copy)]
enum Ts {
    /// No timestamp (GitHub).
    None,
    /// In its own header.
    Header(&'static str),
    /// As a `key=` parameter of the signature header (Stripe's `t=`).
    Param(&'static str),
}

/// A preset and what the properties need to know of it.
struct Row {
    scheme: Box<dyn Preset>,
    /// Signatures are hex, so a letter's case does not matter.
    hex: bool,
    ts: Ts,
    /// The header `Verified::id` comes from, if the id travels in a header.
    id_header: Option<&'static str>,
    /// The URL the message is signed for and received at, made from the body.
    url: Option<fn(&[u8]) -> String>,
    /// Another header the scheme reads, given any value in `any_header_values_never_panic`.
    other_header: Option<&'static str>,
}

impl Row {
    fn new<P: Preset + 'static>(scheme: Result<P, ConfigError>) -> Self {
        Self {
            scheme: Box::new(scheme.expect("valid preset")),
            hex: false,
            ts: Ts::None,
            id_header: None,
            url: None,
            other_header: None,
        }
    }
    fn hex(mut self) -> Self {
        self.hex = true;
        self
    }
    fn ts(mut self, ts: Ts) -> Self {
        self.ts = ts;
        self
    }
    fn id_header(mut self, name: &'static str) -> Self {
        self.id_header = Some(name);
        self
    }
    fn url(mut self, url: fn(&[u8]) -> String) -> Self {
        self.url = Some(url);
        self
    }
    fn other_header(mut self, name: &'static str) -> Self {
        self.other_header = Some(name);
        self
    }

    /// The signed headers for one message, signature header first.
    fn sign(&self, body: &[u8], id: &str, now: OffsetDateTime) -> Vec<(HeaderName, HeaderValue)> {
        let url = self.url.map(|url| url(body));
        let mut msg = Outgoing::new(body).id(id).timestamp(now);
        if let Some(url) = &url {
            msg = msg.url(url);
        }
        self.scheme.sign(&msg).expect("the preset signs")
    }

    /// Verifies `body` as received with `headers`; the URL (for presets that sign it) is
    /// the one made from `signed_body`, the body the sender signed.
    fn verify_sent(
        &self,
        headers: &[(HeaderName, HeaderValue)],
        signed_body: &[u8],
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<(Option<String>, Option<OffsetDateTime>), Reason> {
        let url = self.url.map(|url| url(signed_body));
        let req = request(headers, body);
        let mut view = WebhookRequest::from_request(&req);
        if let Some(url) = &url {
            view = view.with_url(url);
        }
        match self.scheme.verify(&view, now) {
            Ok(v) => Ok((v.id().map(str::to_owned), v.timestamp())),
            Err(r) => {
                // Displaying a rejection never panics either.
                let _ = r.to_string();
                assert!(Reason::ALL.contains(&r.reason()));
                Err(r.reason())
            }
        }
    }

    fn verify(
        &self,
        headers: &[(HeaderName, HeaderValue)],
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<(Option<String>, Option<OffsetDateTime>), Reason> {
        self.verify_sent(headers, body, body, now)
    }

    /// Where the timestamp text is: which header and which bytes of its value.
    fn ts_location(&self, headers: &[(HeaderName, HeaderValue)]) -> Option<(usize, Range<usize>)> {
        match self.ts {
            Ts::None => None,
            Ts::Header(name) => {
                let i = headers.iter().position(|(h, _)| h == name)?;
                Some((i, 0..headers[i].1.len()))
            }
            Ts::Param(key) => {
                // In the signature header (first), `key=` at the start or after a separator.
                let value = headers[0].1.as_bytes();
                let pat = format!("{key}=");
                let start = (0..value.len()).find(|&i| {
                    value[i..].starts_with(pat.as_bytes())
                        && (i == 0 || !value[i - 1].is_ascii_alphanumeric())
                })? + pat.len();
                let end = value[start..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(value.len(), |n| start + n);
                Some((0, start..end))
            }
        }
    }

    /// A one-byte change to a signature that this preset may legitimately still accept.
    fn equivalent(&self, old: u8, new: u8) -> bool {
        (self.hex && old.is_ascii_alphabetic() && new == old ^ 0x20)
            || (!self.hex && old == b'=' && (new == b' ' || new == b'\t'))
    }
}

type Headers = Vec<(HeaderName, HeaderValue)>;

fn request(headers: &[(HeaderName, HeaderValue)], body: &[u8]) -> http::Request<Vec<u8>> {
    let mut req = http::Request::post("/hooks");
    for (name, value) in headers {
        req = req.header(name, value);
    }
    req.body(body.to_vec()).expect("valid request")
}

/// `headers` with byte `at` of header `which` xored with `mask`; `None` when the result is
/// no longer a header value.
fn flip(
    headers: &[(HeaderName, HeaderValue)],
    which: usize,
    at: usize,
    mask: u8,
) -> Option<(Headers, u8, u8)> {
    let mut bytes = headers[which].1.as_bytes().to_vec();
    let old = bytes[at];
    bytes[at] ^= mask;
    let new = bytes[at];
    let value = HeaderValue::from_bytes(&bytes).ok()?;
    let mut out = headers.to_vec();
    out[which].1 = value;
    Some((out, old, new))
}

/// Timestamps from 1970 to the end of year 9999, whole seconds.
fn timestamp() -> impl Strategy<Value = OffsetDateTime> {
    (0_i64..=253_402_300_799).prop_map(|s| OffsetDateTime::from_unix_timestamp(s).expect("in range"))
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..4096)
}

fn id() -> impl Strategy<Value = String> {
    "[!-~]{1,64}"
}

/// Bytes a `HeaderValue` accepts: visible ASCII, space, tab, and obs-text.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![0x20_u8..=0x7e, Just(b'\t'), 0x80_u8..=0xff];
    prop_oneof![
        proptest::collection::vec(byte, 0..160),
        // Near misses, to get past the first checks of each parser.
        "(v1[a ]?,[A-Za-z0-9+/=]{0,48} ?){0,3}".prop_map(String::into_bytes),
        "(t=[0-9 ]{0,14},)?(v[01]=[0-9a-fA-F]{0,70},?){0,3}".prop_map(String::into_bytes),
        "sha256=[0-9a-fA-F]{0,70}".prop_map(String::into_bytes),
        "[0-9]{0,20}".prop_map(String::into_bytes),
        "( ?(key|algorithm|x)=(HMAC_SHA(1|256|512)|[A-Za-z0-9_-]{0,12}) ?,?){0,4}"
            .prop_map(String::into_bytes),
    ]
}

macro_rules! presets {
    ($($name:ident => $row:expr;)*) => {$(
        mod $name {
            use super::*;

            static ROW: std::sync::LazyLock<Row> = std::sync::LazyLock::new(|| $row);

            proptest! {
                #[test]
                fn round_trip(body in body(), id in id(), now in timestamp()) {
                    let row = &*ROW;
                    let headers = row.sign(&body, &id, now);
                    let (got_id, got_ts) = row.verify(&headers, &body, now).map_err(|r| {
                        TestCaseError::fail(format!("signed message refused: {r:?}"))
                    })?;
                    if row.id_header.is_some() {
                        prop_assert_eq!(got_id.as_deref(), Some(id.as_str()));
                    }
                    if !matches!(row.ts, Ts::None) {
                        prop_assert_eq!(got_ts, Some(now));
                    }
                }

                #[test]
                fn body_byte_flip_rejects(
                    body in proptest::collection::vec(any::<u8>(), 1..4096),
                    id in id(),
                    now in timestamp(),
                    at in any::<Index>(),
                    mask in 1_u8..=255,
                ) {
                    let row = &*ROW;
                    let headers = row.sign(&body, &id, now);
                    let mut bad = body.clone();
                    let i = at.index(bad.len());
                    bad[i] ^= mask;
                    prop_assert_eq!(row.verify_sent(&headers, &body, &bad, now), Err(Reason::SignatureMismatch));
                }

                #[test]
                fn signature_byte_flip_rejects(
                    body in body(),
                    id in id(),
                    now in timestamp(),
                    at in any::<Index>(),
                    mask in 1_u8..=255,
                ) {
                    let row = &*ROW;
                    let headers = row.sign(&body, &id, now);
                    let at = at.index(headers[0].1.len());
                    let Some((bad, old, new)) = flip(&headers, 0, at, mask) else {
                        return Ok(()); // not a header value: cannot be sent
                    };
                    let got = row.verify(&bad, &body, now);
                    prop_assert!(
                        got.is_err() || row.equivalent(old, new),
                        "{:?} accepted after byte {} changed {:?} -> {:?}",
                        bad[0].1, at, char::from(old), char::from(new)
                    );
                }

                #[test]
                fn timestamp_byte_flip_rejects(
                    body in body(),
                    id in id(),
                    now in timestamp(),
                    at in any::<Index>(),
                    mask in 1_u8..=255,
                ) {
                    let row = &*ROW;
                    let headers = row.sign(&body, &id, now);
                    let Some((which, range)) = row.ts_location(&headers) else {
                        return Ok(()); // no timestamp in this scheme
                    };
                    prop_assert!(!range.is_empty());
                    let at = range.start + at.index(range.len());
                    let Some((bad, _, _)) = flip(&headers, which, at, mask) else {
                        return Ok(());
                    };
                    let got = row.verify(&bad, &body, now);
                    prop_assert!(got.is_err(), "{:?} accepted", bad[which].1);
                }

                #[test]
                fn any_header_values_never_panic(
                    sig in proptest::option::of(header_bytes()),
                    ts in proptest::option::of(header_bytes()),
                    id in proptest::option::of(header_bytes()),
                    other in proptest::option::of(header_bytes()),
                    body in body(),
                    now in timestamp(),
                ) {
                    let row = &*ROW;
                    // Start from a genuine request, then replace (or remove) each header.
                    let mut headers = row.sign(&body, "msg_1", now);
                    let sig_name = headers[0].0.clone();
                    let ts_name = match row.ts {
                        Ts::Header(name) => Some(HeaderName::from_static(name)),
                        _ => None,
                    };
                    let id_name = row.id_header.map(HeaderName::from_static);
                    let other_name = row.other_header.map(HeaderName::from_static);
                    for (name, value) in [(Some(sig_name), sig), (ts_name, ts), (id_name, id), (other_name, other)] {
                        let Some(name) = name else { continue };
                        headers.retain(|(h, _)| *h != name);
                        if let Some(bytes) = value {
                            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                                headers.push((name, value));
                            }
                        }
                    }
                    // Ok or a Rejection (checked inside), whatever came in.
                    let _ = row.verify(&headers, &body, now);
                }
            }
        }
    )*};
}

presets! {
    standard_webhooks_v1 => Row::new(standard_webhooks::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).ts(Ts::Header("webhook-timestamp")).id_header("webhook-id");
    stripe_v1 => Row::new(stripe::scheme("whsec_test_secret")).hex().ts(Ts::Param("t"));
    github_sha256 => Row::new(github::scheme("It's a Secret to Everybody")).hex().id_header("x-github-delivery");
    twilio_sha1 => Row::new(twilio::scheme("12345")).url(twilio_url).other_header("x-twilio-webhooks-signature-settings");
    twilio_sha256 => Row::new(twilio_shared_key()).url(twilio_url).other_header("x-twilio-webhooks-signature-settings");
}

/// Twilio's JSON form: the URL alone is signed, and it carries the body's hash.
fn twilio_url(body: &[u8]) -> String {
    use sha2::Digest as _;
    format!(
        "https://hooks.example.com:8443/twilio?a=1&bodySHA256={}",
        const_hex::encode(sha2::Sha256::digest(body))
    )
}

/// Twilio signing with a Webhooks Setting's shared key (HMAC-SHA256, two headers).
fn twilio_shared_key() -> Result<twilio::TwilioScheme, ConfigError> {
    twilio::scheme("12345")?.with_shared_key("twilio-shared-key")?.sign_with_shared_key("my-setting")
}
