//! Coinbase Commerce: `X-CC-Webhook-Signature: <hex>`, HMAC-SHA256 over the body, keyed
//! with the shared secret's bytes. No timestamp (replay marks need a configured time to
//! live).
//!
//! The replay key is the body's `event.id` and the event type `event.type`. The payload's
//! top-level `id` names the webhook delivery record (a number in Coinbase's own SDK
//! fixture), while `event.id` is the event's UUID, the same whichever delivery carries it:
//! deduplicate on the event.
//!
//! ```
//! use hookguard::{providers::coinbase, verify::{Outgoing, Scheme, Sign, WebhookRequest}};
//!
//! let scheme = coinbase::scheme("30291a20-0bd1-4267-9b0f-e6e7b123c0bf").unwrap();
//! let body = br#"{"id":1,"event":{"id":"24934862-d980-46cb-9402-43c81b0cdba6","type":"charge:created"}}"#;
//! let (name, value) = scheme.sign(&Outgoing::new(body)).unwrap().remove(0);
//! let req = http::Request::post("/hooks/coinbase").header(name, value).body(body.to_vec()).unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
//! assert_eq!(verified.id(), Some("24934862-d980-46cb-9402-43c81b0cdba6"));
//! assert_eq!(verified.event(), Some("charge:created"));
//! ```

use http::HeaderName;

use crate::{
    ConfigError,
    verify::{Algorithm, Encoding, Field, HmacScheme, SignatureFormat},
};

/// `X-CC-Webhook-Signature`.
///
/// ```
/// assert_eq!(hookguard::providers::coinbase::HEADER, "x-cc-webhook-signature");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("x-cc-webhook-signature");

/// Coinbase Commerce with one shared secret.
///
/// # Errors
/// [`ConfigError::EmptySecret`] for an empty secret.
///
/// ```
/// use hookguard::{providers::coinbase, verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest}};
///
/// let scheme = coinbase::scheme("s3cr3t")?;
/// let now = time::OffsetDateTime::now_utc();
/// let body = br#"{"event":"ping"}"#;
/// let headers = scheme.sign(&Outgoing::new(body).timestamp(now))?;
/// assert!(headers.iter().any(|(name, _)| name == coinbase::HEADER));
/// let mut req = http::Request::post("/hooks");
/// for (name, value) in &headers {
///     req = req.header(name, value);
/// }
/// let req = req.body(body.to_vec())?;
/// let view = WebhookRequest::from_request(&req);
/// assert!(scheme.verify(&view, now).is_ok());
/// let other = coinbase::scheme("other")?;
/// assert_eq!(other.verify(&view, now).unwrap_err().reason(), Reason::SignatureMismatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheme(secret: impl AsRef<[u8]>) -> Result<HmacScheme, ConfigError> {
    HmacScheme::builder("coinbase", Algorithm::Sha256)
        .signature(Field::Header(HEADER), SignatureFormat::Plain { prefix: "" }, Encoding::Hex)
        .id(Field::Json(&["event", "id"]))
        .event(Field::Json(&["event", "type"]))
        .secret(secret)
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)] // tables of test rows

    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, WebhookRequest};

    /// coinbase/coinbase-commerce-node `test/testWebhook.spec.js` (vectors.md §4), 816 bytes.
    const BODY: &[u8] = br#"{"id":1,"scheduled_for":"2017-01-31T20:50:02Z","attempt_number":1,"event":{"id":"24934862-d980-46cb-9402-43c81b0cdba6","type":"charge:created","api_version":"2018-03-22","created_at":"2017-01-31T20:49:02Z","data":{"code":"66BEOV2A","name":"The Sovereign Individual","description":"Mastering the Transition to the Information Age","hosted_url":"https://commerce.coinbase.com/charges/66BEOV2A","created_at":"2017-01-31T20:49:02Z","expires_at":"2017-01-31T21:04:02Z","timeline":[{"time":"2017-01-31T20:49:02Z","status":"NEW"}],"metadata":{},"pricing_type":"no_price","payments":[],"addresses":{"bitcoin":"0000000000000000000000000000000000","ethereum":"0x0000000000000000000000000000000000000000","litecoin":"3000000000000000000000000000000000","bitcoincash":"bitcoincash:000000000000000000000000000000000000000000"}}}}"#;
    const SECRET: &str = "30291a20-0bd1-4267-9b0f-e6e7b123c0bf";
    const WRONG_SECRET: &str = "30291a20-0bd1-4267-9b0f-e6e7b123c0bg";
    const SIG: &str = "8be7742c7d372f08a6a3224edadf18a22b65fa9e28f3f2de97376cdaa092590d";

    fn verify(secret: &str, sig: &str, body: &[u8]) -> Result<(Option<String>, Option<String>), Reason> {
        let scheme = scheme(secret).unwrap();
        let req = http::Request::post("/").header("x-cc-webhook-signature", sig).body(body.to_vec()).unwrap();
        scheme
            .verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::UNIX_EPOCH)
            .map(|v| (v.id().map(str::to_owned), v.event().map(str::to_owned)))
            .map_err(|r| r.reason())
    }

    #[test]
    fn official_vector() {
        assert_eq!(BODY.len(), 816);
        let want =
            Ok((Some("24934862-d980-46cb-9402-43c81b0cdba6".to_owned()), Some("charge:created".to_owned())));
        let cases: &[(&str, &str, &str, &[u8], Result<(Option<String>, Option<String>), Reason>)] = &[
            ("sdk vector", SECRET, SIG, BODY, want),
            ("sdk wrong secret", WRONG_SECRET, SIG, BODY, Err(Reason::SignatureMismatch)),
            ("body changed", SECRET, SIG, b"{}", Err(Reason::SignatureMismatch)),
        ];
        for (name, secret, sig, body, want) in cases {
            assert_eq!(verify(secret, sig, body), *want, "case {name}");
        }
    }

    #[test]
    fn sign_reproduces_the_vector() {
        let scheme = scheme(SECRET).unwrap();
        assert_eq!(scheme.sign(&Outgoing::new(BODY)).unwrap()[0].1, SIG);
    }
}
