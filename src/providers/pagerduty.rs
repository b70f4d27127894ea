//! PagerDuty (v3 webhooks): `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>]`, HMAC-SHA256
//! over the body. One `v1` entry per secret configured on the subscription: every entry is
//! checked, so a secret can be rolled. No timestamp (replay marks need a configured time
//! to live). The replay key is the body's `event.id`; the event type is `event.event_type`.
//!
//! ```
//! use hookguard::{providers::pagerduty, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = pagerduty::scheme("pd_secret").unwrap();
//! let req = http::Request::post("/hooks/pagerduty")
//!     .header("x-pagerduty-signature", "v1=d897446179a4bbf79bf18a92fb058ad8dc98381a9de9ce0a9f40940f46db19b8")
//!     .body(br#"{"event":{"id":"01DEN4HPBQAXDZS1XXVL6LVJK8","event_type":"incident.triggered"}}"#.to_vec())
//!     .unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
//! assert_eq!(verified.id(), Some("01DEN4HPBQAXDZS1XXVL6LVJK8"));
//! assert_eq!(verified.event(), Some("incident.triggered"));
//! ```

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat},
};

/// `X-PagerDuty-Signature`.
///
/// ```
/// assert_eq!(hookguard::providers::pagerduty::HEADER, "x-pagerduty-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-pagerduty-signature");

/// PagerDuty v3 with one subscription secret.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::pagerduty, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = pagerduty::scheme("s3cr3t")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// let (_, signature) = headers.iter().find(|(name, _)| name == pagerduty::HEADER).unwrap();
/// assert!(signature.to_str()?.starts_with("v1="));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = pagerduty::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("pagerduty", Algorithm::Sha256)
        .signature(
            Field::Header(HEADER),
            SignatureFormat::Pairs { separator: b',', signature_key: "v1", timestamp_key: None },
            Encoding::Hex,
        )
        .id(Field::Json(&["event", "id"]))
        .event(Field::Json(&["event", "event_type"]))
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    // Self-computed (no official vector exists): python3
    // hmac.new(b"pd_secret", BODY, sha256).hexdigest().
    const BODY: &[u8] = br#"{"event":{"id":"01DEN4HPBQAXDZS1XXVL6LVJK8","event_type":"incident.triggered"}}"#;
    const SIG: &str = "v1=d897446179a4bbf79bf18a92fb058ad8dc98381a9de9ce0a9f40940f46db19b8";
    const OTHER: &str = "v1=0000000000000000000000000000000000000000000000000000000000000000";

    fn verify(scheme: &HmacScheme, sig: &str, body: &[u8]) -> Result<Option<String>, Reason> {
        let req = http::Request::post("/").header("x-pagerduty-signature", sig).body(body.to_vec()).unwrap();
        scheme
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|v| v.id().map(str::to_owned))
            .map_err(|r| r.reason())
    }

    #[test]
    fn table() {
        let good = scheme("pd_secret").unwrap();
        let id = Ok(Some("01DEN4HPBQAXDZS1XXVL6LVJK8".to_owned()));
        let two_first = format!("{SIG},{OTHER}");
        let two_last = format!("{OTHER}, {SIG}");
        let cases: Vec<(&str, &str, &[u8], Result<Option<String>, Reason>)> = vec![
            ("self-computed vector", SIG, BODY, id.clone()),
            ("rolling: first of two", &two_first, BODY, id.clone()),
            ("rolling: last of two", &two_last, BODY, id),
            ("only the other secret", OTHER, BODY, Err(Reason::SignatureMismatch)),
            ("body changed", SIG, b"{}", Err(Reason::SignatureMismatch)),
            ("unknown version only", "v2=abcd", BODY, Err(Reason::MissingSignature)),
        ];
        for (name, sig, body, want) in cases {
            assert_eq!(verify(&good, sig, body), want, "case {name}");
        }
        assert_eq!(verify(&scheme("wrong").unwrap(), SIG, BODY), Err(Reason::SignatureMismatch));
    }

    #[test]
    fn sign_round_trip() {
        let scheme = scheme("pd_secret").unwrap();
        let headers = scheme.sign(&Outgoing::new(BODY)).unwrap();
        assert_eq!(headers[0].1, SIG);
        assert!(verify(&scheme, headers[0].1.to_str().unwrap(), BODY).is_ok());
    }
}
