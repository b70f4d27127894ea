//! PayPal, whose scheme reads more than a signature: the certificate reader (PEM, X.509,
//! RSA key) over any bytes, `is_trusted_cert_url` over any text, and verification of any
//! request under the certificate of PayPal's Java SDK vector.
//!
//! What must hold, besides no panic:
//! - only a PEM certificate makes a scheme;
//! - a URL `is_trusted_cert_url` approves is, read by the WHATWG URL parser too (the `url`
//!   crate, when it reads it), `https` on port 443 without user info, query or fragment,
//!   on one of PayPal's four REST API hosts, with a path under `/v1/notifications/certs/`;
//! - a request verifies only with the vector's transmission id and time, and a body with
//!   the vector body's CRC-32 (only that signature exists); a refusal is one of the
//!   reasons PayPal's checks give.
//!
//! Input: a mode byte (0: certificate bytes, 1: a URL, else a request: `name: value`
//! header lines, an empty line, the body).
#![no_main]

use hookguard::{
    providers::paypal,
    verify::{Reason, Scheme, TimestampFormat, WebhookRequest},
};
use libfuzzer_sys::fuzz_target;

const CERT: &[u8] = include_bytes!("../../src/providers/testdata/paypal_cert.pem");
const BODY: &[u8] = include_bytes!("../../src/providers/testdata/paypal_body.json");
const WEBHOOK_ID: &str = "0FV983392A0531201";
const ID: &str = "afa30d40-ca4a-11e9-ab68-7d4e2605c70c";
const TIME: &str = "2019-08-29T10:49:33Z";

fn certificate(data: &[u8]) {
    if let Ok(scheme) = paypal::scheme(WEBHOOK_ID, data) {
        let pem = b"-----BEGIN CERTIFICATE-----";
        assert!(
            data.windows(pem.len()).any(|w| w == pem),
            "a scheme from bytes that are not a PEM certificate"
        );
        assert_eq!(scheme.certificate_count(), 1);
    }
}

fn url(text: &str) {
    if !paypal::is_trusted_cert_url(text) {
        return;
    }
    let Ok(parsed) = url::Url::parse(text) else { return };
    assert_eq!(parsed.scheme(), "https", "{text}");
    assert_eq!(parsed.port_or_known_default(), Some(443), "{text}");
    assert!(parsed.username().is_empty() && parsed.password().is_none(), "{text}");
    let host = parsed.host_str().unwrap_or_default().trim_end_matches('.').to_ascii_lowercase();
    let hosts = ["api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com", "api-m.sandbox.paypal.com"];
    assert!(hosts.contains(&host.as_str()), "{text} is on {host}");
    assert!(parsed.path().starts_with("/v1/notifications/certs/"), "{text}");
    assert!(parsed.query().is_none() && parsed.fragment().is_none(), "{text}");
}

fn request(data: &[u8]) {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut req = http::Request::post("/hooks/paypal");
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.trim_ascii()),
            http::HeaderValue::from_bytes(value.trim_ascii()),
        ) else {
            continue;
        };
        if let Ok(text) = value.to_str() {
            url(text);
        }
        req = req.header(name, value);
    }
    let Ok(req) = req.body(body.to_vec()) else { return };
    let scheme = paypal::scheme(WEBHOOK_ID, CERT).expect("the vector's certificate");
    let at = TimestampFormat::Rfc3339.parse(TIME.as_bytes()).expect("a time");
    match scheme.verify(&WebhookRequest::from_request(&req), at) {
        Ok(verified) => {
            assert_eq!(verified.id(), Some(ID), "only the vector is signed");
            assert_eq!(verified.timestamp(), Some(at));
            assert_eq!(crc32fast::hash(body), crc32fast::hash(BODY), "a body with another CRC-32 verified");
        }
        Err(rejection) => assert!(
            matches!(
                rejection.reason(),
                Reason::MissingSignature
                    | Reason::MissingHeader
                    | Reason::MissingTimestamp
                    | Reason::UnsupportedAlgorithm
                    | Reason::MalformedHeader
                    | Reason::MalformedTimestamp
                    // The default tolerance (4 days back, 5 minutes ahead of the vector's time).
                    | Reason::TimestampTooOld
                    | Reason::TimestampInFuture
                    | Reason::MalformedSignature
                    | Reason::HeaderTooLarge
                    | Reason::SignatureMismatch
            ),
            "{rejection:?}"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode {
        0 => certificate(rest),
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                url(text);
            }
        }
        _ => request(rest),
    }
});
