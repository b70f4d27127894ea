//! HubSpot webhooks and app requests.
//!
//! **v3** ([`scheme`]): `X-HubSpot-Signature-v3: <base64>`, HMAC-SHA256 keyed with the
//! app's client secret over `{method}{url}{body}{ts}`, where `{ts}` is
//! `X-HubSpot-Request-Timestamp` (unix **milliseconds**) and `{url}` the full URL HubSpot
//! called, with the escapes `%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B` decoded as
//! HubSpot's docs require. The URL is the public one: the guard's
//! [`public_origin`](crate::guard::GuardBuilder::public_origin), or
//! [`WebhookRequest::with_url`] (never the request's own URI, whose host the client
//! writes). Tolerance 300 000 ms, too-old only (as HubSpot's docs). No delivery id: the
//! replay key is the MAC's fingerprint, since the timestamp follows the body with nothing
//! between (a key without it could be shifted); a retry signed anew gets a new key, so
//! deduplicate by each event's `eventId` in the handler.
//!
//! **v2** ([`v2_scheme`]) and **v1** ([`v1_scheme`]): `X-HubSpot-Signature: <hex>` with
//! `X-HubSpot-Signature-Version: v2|v1`, the plain SHA-256 of
//! `{client secret}{method}{url}{body}` (v2) or `{client secret}{body}` (v1), not an HMAC
//! ([`Construction::SecretPrefix`]). No timestamp: prefer v3 where HubSpot offers it.
//! That construction allows length extension: from one genuine body and its signature,
//! anyone can sign that body followed by SHA-256's padding and bytes of their choice. And
//! the version header is not bound to the signature: a v2 signature over `GET` and a URL
//! (an app request signed with the same client secret) verifies at a v1 endpoint as the
//! body `GET<url>`. Neither yields valid JSON, so parse the whole body strictly (as
//! axum and actix `VerifiedJson` extractors do: a body that does not parse is a `422`)
//! and never act on a prefix of it.
//!
//! ```
//! use hookguard::{providers::hubspot, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = hubspot::scheme("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy").unwrap();
//! let req = http::Request::post("/webhook_uri")
//!     .header("x-hubspot-signature-v3", "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=")
//!     .header("x-hubspot-request-timestamp", "15000000")
//!     .body(b"{'example_field':'example_value'}".to_vec())
//!     .unwrap();
//! let view = WebhookRequest::from_request(&req).with_url("https://www.example.com/webhook_uri");
//! let now = time::OffsetDateTime::from_unix_timestamp(15_000 + 60).unwrap();
//! assert!(scheme.verify(&view, now).is_ok());
//! ```
//!
//! [`WebhookRequest::with_url`]: crate::verify::WebhookRequest::with_url

use std::time::Duration;

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{
        Algorithm, Construction, Encoding, Field, HmacScheme, Piece, SignatureFormat, SignedContent,
        TimestampFormat, Tolerance,
    },
};

/// `X-HubSpot-Signature-v3`.
///
/// ```
/// assert_eq!(hookguard::providers::hubspot::HEADER_V3, "x-hubspot-signature-v3");
/// ```
pub const HEADER_V3: HeaderName = HeaderName::from_static("x-hubspot-signature-v3");
/// `X-HubSpot-Request-Timestamp` (unix milliseconds).
///
/// ```
/// assert_eq!(hookguard::providers::hubspot::TIMESTAMP, "x-hubspot-request-timestamp");
/// ```
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-hubspot-request-timestamp");
/// `X-HubSpot-Signature` (v1 and v2).
///
/// ```
/// assert_eq!(hookguard::providers::hubspot::HEADER, "x-hubspot-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-hubspot-signature");
/// `X-HubSpot-Signature-Version` (`v1` or `v2`), telling which of [`v1_scheme`] and
/// [`v2_scheme`] applies.
///
/// ```
/// assert_eq!(hookguard::providers::hubspot::VERSION, "x-hubspot-signature-version");
/// ```
pub const VERSION: HeaderName = HeaderName::from_static("x-hubspot-signature-version");

/// 300 000 ms, too-old only.
///
/// ```
/// use hookguard::{providers::hubspot, verify::Scheme};
/// assert_eq!(hubspot::TOLERANCE.as_millis(), 300_000);
/// assert_eq!(hubspot::scheme("s").unwrap().tolerance().past(), Some(hubspot::TOLERANCE));
/// ```
pub const TOLERANCE: Duration = Duration::from_millis(300_000);

/// The bytes whose `%XX` escapes HubSpot decodes in the v3 URL.
///
/// ```
/// use hookguard::providers::hubspot;
/// assert!(hubspot::V3_DECODED.contains(&b':') && !hubspot::V3_DECODED.contains(&b'&'));
/// ```
pub const V3_DECODED: &[u8] = b":/?@!$'()*,;";

/// v3: `{method}{url}{body}{ts}`, the URL partly decoded.
///
/// ```
/// use hookguard::{providers::hubspot, verify::Piece};
/// assert_eq!(hubspot::CONTENT_V3.pieces(), [Piece::Method, Piece::UrlDecoding(hubspot::V3_DECODED), Piece::Body, Piece::Timestamp]);
/// ```
pub const CONTENT_V3: SignedContent = SignedContent::from_static(&[
    Piece::Method,
    Piece::UrlDecoding(V3_DECODED),
    Piece::Body,
    Piece::Timestamp,
]);

/// v2: `{method}{url}{body}` after the secret.
///
/// ```
/// use hookguard::{providers::hubspot, verify::Piece};
/// assert_eq!(hubspot::CONTENT_V2.pieces(), [Piece::Method, Piece::Url, Piece::Body]);
/// ```
pub const CONTENT_V2: SignedContent = SignedContent::from_static(&[Piece::Method, Piece::Url, Piece::Body]);

/// HubSpot v3 with the app's client secret.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::hubspot, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = hubspot::scheme("client-secret")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now).url("https://example.com/hooks/hubspot"))?;
/// assert!(headers.iter().any(|(name, _)| name == hubspot::HEADER_V3));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req).with_url("https://example.com/hooks/hubspot");
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = hubspot::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(client_secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("hubspot", Algorithm::Sha256)
        .signature(Field::Header(HEADER_V3), SignatureFormat::Plain { prefix: "" }, Encoding::Base64)
        .timestamp(Field::Header(TIMESTAMP), TimestampFormat::UnixMillis)
        .tolerance(Tolerance::past_only(TOLERANCE))
        .content(CONTENT_V3)
        .secret(client_secret)
        .build()
}

/// HubSpot v2: hex SHA-256 of `{client secret}{method}{url}{body}` (not an HMAC).
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::hubspot, verify::{Scheme, WebhookRequest}};
///
/// let scheme = hubspot::v2_scheme("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy").unwrap();
/// let req = http::Request::get("/webhook_uri")
///     .header("x-hubspot-signature", "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e")
///     .body(Vec::new())
///     .unwrap();
/// // The URL HubSpot called: the guard makes it from its `public_origin`.
/// let request = WebhookRequest::from_request(&req).with_url("https://www.example.com/webhook_uri");
/// assert!(scheme.verify(&request, time::OffsetDateTime::now_utc()).is_ok());
/// ```
pub fn v2_scheme(client_secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    legacy(CONTENT_V2).secret(client_secret).build()
}

/// HubSpot v1: hex SHA-256 of `{client secret}{body}` (not an HMAC).
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::hubspot, verify::{Outgoing, Sign}};
///
/// let scheme = hubspot::v1_scheme("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy").unwrap();
/// let headers = scheme.sign(&Outgoing::new(b"{'example_field':'example_value'}")).unwrap();
/// assert_eq!(headers[0].1, "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750");
/// ```
pub fn v1_scheme(client_secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    legacy(SignedContent::BODY).secret(client_secret).build()
}

fn legacy(content: SignedContent) -> crate::verify::HmacSchemeBuilder {
    HmacScheme::builder("hubspot", Algorithm::Sha256)
        .construction(Construction::SecretPrefix)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
        .content(content)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const URL: &str = "https://www.example.com/webhook_uri";
    const PY_BODY: &[u8] = b"{'example_field':'example_value'}";
    const JSON_BODY: &[u8] = br#"{"example_field":"example_value"}"#;
    const V1_NODE_BODY: &[u8] = br#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;

    fn at_ms(ms: i128) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).unwrap()
    }

    fn request(method: &str, headers: &[(&str, &str)], body: &[u8]) -> http::Request<Vec<u8>> {
        let mut req = http::Request::builder().method(method).uri("/webhook_uri");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(body.to_vec()).unwrap()
    }

    /// vectors.md §4 (hubspot-api-python/ruby v3) and a self-computed one for the URL
    /// decoding: python3 base64(hmac.new(SECRET, b"POST" + decoded_url + b'{"a":1}' +
    /// b"1700000000000", sha256).digest()) with decoded_url
    /// `https://www.example.com/webhook_uri?x=a:b%20c`.
    #[test]
    fn v3_vectors() {
        let scheme = scheme(SECRET).unwrap();
        let cases: &[(&str, &str, &[u8], &str, &str, i128, Result<(), Reason>)] = &[
            (
                "sdk vector",
                URL,
                PY_BODY,
                "15000000",
                "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
                15_000_000,
                Ok(()),
            ),
            (
                "sdk vector, 300000 ms old",
                URL,
                PY_BODY,
                "15000000",
                "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
                15_300_000,
                Ok(()),
            ),
            (
                "sdk vector, 300001 ms old",
                URL,
                PY_BODY,
                "15000000",
                "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
                15_300_001,
                Err(Reason::TimestampTooOld),
            ),
            (
                "sdk vector, from the future",
                URL,
                PY_BODY,
                "15000000",
                "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
                0,
                Ok(()),
            ),
            (
                "sdk vector, other URL",
                "https://www.example.com/other",
                PY_BODY,
                "15000000",
                "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
                15_000_000,
                Err(Reason::SignatureMismatch),
            ),
            (
                "sdk vector, seconds",
                URL,
                PY_BODY,
                "15000",
                "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
                15_000,
                Err(Reason::SignatureMismatch),
            ),
            (
                "self-computed, escaped URL",
                "https://www.example.com/webhook_uri?x=a%3Ab%20c",
                br#"{"a":1}"#,
                "1700000000000",
                "JSDPCThAEgIC2hVhFytwuOiBgVKNgtUBCju+khlAEWw=",
                1_700_000_000_000,
                Ok(()),
            ),
            (
                "self-computed, lower-case escape",
                "https://www.example.com/webhook_uri?x=a%3ab%20c",
                br#"{"a":1}"#,
                "1700000000000",
                "JSDPCThAEgIC2hVhFytwuOiBgVKNgtUBCju+khlAEWw=",
                1_700_000_000_000,
                Ok(()),
            ),
            (
                "self-computed, %20 is not decoded",
                "https://www.example.com/webhook_uri?x=a:b c",
                br#"{"a":1}"#,
                "1700000000000",
                "JSDPCThAEgIC2hVhFytwuOiBgVKNgtUBCju+khlAEWw=",
                1_700_000_000_000,
                Err(Reason::SignatureMismatch),
            ),
        ];
        for (name, url, body, ts, sig, now, want) in cases {
            let req = request(
                "POST",
                &[("x-hubspot-signature-v3", sig), ("x-hubspot-request-timestamp", ts)],
                body,
            );
            let view = WebhookRequest::from_request(&req).with_url(url);
            let got = scheme.verify(&view, at_ms(*now)).map(|_| ()).map_err(|r| r.reason());
            assert_eq!(got, *want, "case {name}");
        }
    }

    #[test]
    fn v3_needs_a_url_and_rejects_wrong_secret() {
        let req = request(
            "POST",
            &[
                ("x-hubspot-signature-v3", "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="),
                ("x-hubspot-request-timestamp", "15000000"),
            ],
            PY_BODY,
        );
        let now = at_ms(15_000_000);
        let err = scheme(SECRET).unwrap().verify(&WebhookRequest::from_request(&req), now).unwrap_err();
        assert_eq!(err.reason(), Reason::MissingUrl);
        let view = WebhookRequest::from_request(&req).with_url(URL);
        let err = scheme("other").unwrap().verify(&view, now).unwrap_err();
        assert_eq!(err.reason(), Reason::SignatureMismatch);
    }

    #[test]
    fn v3_sign_round_trip() {
        let scheme = scheme(SECRET).unwrap();
        let now = at_ms(15_000_000);
        let headers = scheme.sign(&Outgoing::new(PY_BODY).url(URL).timestamp(now)).unwrap();
        assert_eq!(headers[0].1, "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=");
        assert_eq!(headers[1].1, "15000000");
    }

    /// vectors.md §4 and PROVIDERS.md: hubspot-api-python/ruby/nodejs/php v1 and v2.
    #[test]
    fn v1_v2_vectors() {
        let v1 = v1_scheme(SECRET).unwrap();
        let v2 = v2_scheme(SECRET).unwrap();
        let cases: &[(&str, &HmacScheme, &str, &[u8], &str)] = &[
            (
                "v1 python/ruby",
                &v1,
                "POST",
                PY_BODY,
                "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750",
            ),
            (
                "v1 nodejs/php",
                &v1,
                "POST",
                V1_NODE_BODY,
                "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de",
            ),
            (
                "v2 python/ruby POST",
                &v2,
                "POST",
                PY_BODY,
                "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383",
            ),
            (
                "v2 GET empty body",
                &v2,
                "GET",
                b"",
                "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e",
            ),
            (
                "v2 nodejs/php POST",
                &v2,
                "POST",
                JSON_BODY,
                "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900",
            ),
        ];
        for (name, scheme, method, body, sig) in cases {
            let req =
                request(method, &[("x-hubspot-signature", sig), ("x-hubspot-signature-version", "v2")], body);
            let view = WebhookRequest::from_request(&req).with_url(URL);
            assert!(scheme.verify(&view, time::OffsetDateTime::UNIX_EPOCH).is_ok(), "case {name}");
            let method = http::Method::from_bytes(method.as_bytes()).unwrap();
            let signed = scheme.sign(&Outgoing::new(body).url(URL).method(method)).unwrap();
            assert_eq!(signed[0].1, *sig, "case {name}: signing");
        }
    }

    #[test]
    fn v1_v2_reject() {
        let v2 = v2_scheme(SECRET).unwrap();
        let sig = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e";
        let check = |scheme: &HmacScheme, method: &str, body: &[u8]| {
            let req = request(method, &[("x-hubspot-signature", sig)], body);
            let view = WebhookRequest::from_request(&req).with_url(URL);
            scheme.verify(&view, time::OffsetDateTime::UNIX_EPOCH).map(|_| ()).map_err(|r| r.reason())
        };
        assert_eq!(check(&v2, "GET", b""), Ok(()));
        assert_eq!(check(&v2, "POST", b""), Err(Reason::SignatureMismatch), "method is signed");
        assert_eq!(check(&v2, "GET", b"x"), Err(Reason::SignatureMismatch), "body is signed");
        assert_eq!(check(&v2_scheme("other").unwrap(), "GET", b""), Err(Reason::SignatureMismatch));
        // An HMAC under the same secret is not the secret-prefix hash.
        let hmac = HmacScheme::builder("x", Algorithm::Sha256)
            .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
            .content(CONTENT_V2)
            .secret(SECRET)
            .build()
            .unwrap();
        assert_eq!(check(&hmac, "GET", b""), Err(Reason::SignatureMismatch));
        // Rotation works as for HMAC schemes.
        let rotated = v2_scheme("new").unwrap().with_secret(SECRET).unwrap();
        assert_eq!(check(&rotated, "GET", b""), Ok(()));
        assert!(!format!("{rotated:?}").contains(SECRET));
    }
}
