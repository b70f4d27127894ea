//! [Standard Webhooks](https://www.standardwebhooks.com/) v1a, the asymmetric variant
//! (feature `ed25519`): headers `webhook-id`, `webhook-timestamp`, `webhook-signature`;
//! Ed25519 over `{id}.{ts}.{body}`; base64, entries `v1a,<sig>` separated by spaces
//! (`v1,…` HMAC entries beside them are ignored); ±5 minutes; dedup key `webhook-id`;
//! rotation: several entries in one header, and several public keys
//! ([`Ed25519Scheme::with_public_key`]); any match accepts.
//!
//! Keys: `whpk_…` is the base64 of the 32-byte public key. `whsk_…` is the base64 of the
//! 32-byte private key seed, as the reference Go library reads it
//! (`ed25519.NewKeyFromSeed`); 64 bytes of seed followed by the public key are accepted
//! too. The prefixes are optional.
//!
//! ```
//! use hookguard::{providers::standard_webhooks_v1a, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = standard_webhooks_v1a::scheme("whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=").unwrap();
//! let req = http::Request::post("/")
//!     .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
//!     .header("webhook-timestamp", "1614265330")
//!     .header(
//!         "webhook-signature",
//!         "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==",
//!     )
//!     .body(br#"{"test": 2432232314}"#.to_vec())
//!     .unwrap();
//! let now = time::OffsetDateTime::from_unix_timestamp(1614265330 + 60).unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
//! assert_eq!(verified.id(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
//! ```

use base64::Engine as _;
use http::HeaderName;
use zeroize::Zeroizing;

use super::{FIVE_MINUTES, standard_webhooks::CONTENT};
use crate::{
    ConfigError,
    verify::{
        ED25519_KEY_LEN, Ed25519Scheme, Ed25519SchemeBuilder, Encoding, Field, SignatureFormat,
        TimestampFormat, Tolerance,
    },
};

/// The v1a signature entries.
///
/// ```
/// use hookguard::{providers::standard_webhooks_v1a, verify::SignatureFormat};
/// assert_eq!(standard_webhooks_v1a::FORMAT, SignatureFormat::Versioned { version: "v1a" });
/// ```
pub const FORMAT: SignatureFormat = SignatureFormat::Versioned { version: "v1a" };

const ID: Field = Field::Header(HeaderName::from_static("webhook-id"));
const TIMESTAMP: Field = Field::Header(HeaderName::from_static("webhook-timestamp"));
const SIGNATURE: Field = Field::Header(HeaderName::from_static("webhook-signature"));

/// Standard Webhooks v1a for a receiver, with one `whpk_…` public key (add more with
/// [`Ed25519Scheme::with_public_key`] and [`public_key`]). It cannot sign.
///
/// # Errors
/// [`ConfigError`] when the key is not base64 of a valid 32-byte Ed25519 public key.
///
/// ```
/// use hookguard::providers::standard_webhooks_v1a;
/// assert!(standard_webhooks_v1a::scheme("whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=").is_ok());
/// assert!(standard_webhooks_v1a::scheme("whpk_AAAA").is_err());
/// ```
pub fn scheme(public_key: impl AsRef<[u8]>) -> Result<Ed25519Scheme, ConfigError> {
    builder().public_key(self::public_key(public_key)?).build()
}

/// Standard Webhooks v1a for a sender, with a `whsk_…` private key: it signs, and
/// verifies with the key's public half.
///
/// # Errors
/// [`ConfigError`] when the key is not base64 of a 32-byte seed (or 64 bytes of seed and
/// matching public key).
///
/// ```
/// use hookguard::{providers::standard_webhooks_v1a, verify::{Outgoing, Sign}};
///
/// let signer = standard_webhooks_v1a::signer("whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=").unwrap();
/// let at = time::OffsetDateTime::from_unix_timestamp(1614265330).unwrap();
/// let headers = signer
///     .sign(&Outgoing::new(br#"{"test": 2432232314}"#).id("msg_p5jXN8AQM9LWM0D4loKWxJek").timestamp(at))
///     .unwrap();
/// assert_eq!(
///     headers[0].1,
///     "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
/// );
/// ```
pub fn signer(secret_key: impl AsRef<[u8]>) -> Result<Ed25519Scheme, ConfigError> {
    let key = decode(secret_key.as_ref(), "whsk_", "a `whsk_` key must be base64 after its prefix")?;
    builder().signing_key(&*key).build()
}

/// Decodes a `whpk_…` public key (prefix optional) into its 32 bytes.
///
/// # Errors
/// [`ConfigError::InvalidSecret`] when it is not base64 of 32 bytes.
///
/// ```
/// use hookguard::providers::standard_webhooks_v1a;
/// let key = standard_webhooks_v1a::public_key("whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=").unwrap();
/// assert_eq!(key[0], 0x66);
/// ```
pub fn public_key(text: impl AsRef<[u8]>) -> Result<[u8; ED25519_KEY_LEN], ConfigError> {
    let bytes = decode(text.as_ref(), "whpk_", "a `whpk_` key must be base64 after its prefix")?;
    <[u8; ED25519_KEY_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| ConfigError::InvalidSecret("a `whpk_` key is the base64 of 32 bytes"))
}

fn decode(text: &[u8], prefix: &str, why: &'static str) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    let text = text.trim_ascii();
    let encoded = text.strip_prefix(prefix.as_bytes()).unwrap_or(text);
    if encoded.is_empty() {
        return Err(ConfigError::EmptySecret);
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map(Zeroizing::new)
        .map_err(|_| ConfigError::InvalidSecret(why))
}

fn builder() -> Ed25519SchemeBuilder {
    Ed25519Scheme::builder("standard-webhooks-v1a")
        .signature(SIGNATURE, FORMAT, Encoding::Base64)
        .content(CONTENT)
        .id(ID)
        .timestamp(TIMESTAMP, TimestampFormat::UnixSeconds)
        .tolerance(Tolerance::symmetric(FIVE_MINUTES))
        .event(Field::Json(&["type"]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Outgoing, Reason, Scheme, Sign, SignError, WebhookRequest};

    const ID_V: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS_V: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn request(sig: &str, body: &[u8]) -> http::Request<Vec<u8>> {
        http::Request::post("/")
            .header("webhook-id", ID_V)
            .header("webhook-timestamp", TS_V)
            .header("webhook-signature", sig)
            .body(body.to_vec())
            .unwrap()
    }

    /// PROVIDERS.md (seed‖public secret) and vectors.md §6 (the Go library's seed).
    #[test]
    fn official_vectors() {
        let vectors = [
            (
                "PROVIDERS.md",
                "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=",
                "6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==",
                "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
            ),
            (
                "Go TestAsymmetricWebhookSign",
                "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=",
                "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=",
                "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==",
            ),
        ];
        for (name, public, secret, sig) in vectors {
            let now = at(1_614_265_330);
            let verifier = scheme(public).unwrap();
            let req = request(sig, BODY);
            let v = verifier.verify(&WebhookRequest::from_request(&req), now).unwrap();
            assert_eq!(v.id(), Some(ID_V), "{name}");
            assert_eq!(v.timestamp(), Some(now), "{name}");
            // Signing reproduces the vector (Ed25519 is deterministic).
            let signer = signer(secret).unwrap();
            let signed = signer.sign(&Outgoing::new(BODY).id(ID_V).timestamp(now)).unwrap();
            assert_eq!(signed[0].1, sig, "{name}");
            assert_eq!(signer.public_keys().next(), Some(public_key(public).unwrap()), "{name}");
            // The other vector's key rejects.
            let err = verifier
                .verify(&WebhookRequest::from_request(&request("v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag== v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==", b"{}")), now)
                .unwrap_err();
            assert_eq!(err.reason(), Reason::SignatureMismatch, "{name}");
        }
    }

    #[test]
    fn v1_entries_are_ignored_and_any_v1a_may_match() {
        let verifier = scheme("whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=").unwrap();
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==";
        assert!(
            verifier.verify(&WebhookRequest::from_request(&request(sig, BODY)), at(1_614_265_330)).is_ok()
        );
        let only_v1 = request("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", BODY);
        let err = verifier.verify(&WebhookRequest::from_request(&only_v1), at(1_614_265_330)).unwrap_err();
        assert_eq!(err.reason(), Reason::MissingSignature);
    }

    /// Each public-key check hashes the content again: at most four signatures are
    /// checked, and a request with more is refused before any of them.
    #[test]
    fn at_most_four_signatures_are_checked() {
        let verifier = scheme("whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=").unwrap();
        let good =
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==";
        let zero = format!("v1a,{}", "A".repeat(86) + "==");
        let four = format!("{} {good}", [zero.as_str(); 3].join(" "));
        let ok = request(&four, BODY);
        assert!(verifier.verify(&WebhookRequest::from_request(&ok), at(1_614_265_330)).is_ok());
        let five = format!("{} {good}", [zero.as_str(); 4].join(" "));
        let refused = request(&five, BODY);
        let err = verifier.verify(&WebhookRequest::from_request(&refused), at(1_614_265_330)).unwrap_err();
        assert_eq!(err.reason(), Reason::TooManySignatures);
    }

    #[test]
    fn rotation_and_tolerance() {
        let verifier = scheme("whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=")
            .unwrap()
            .with_public_key(public_key("whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=").unwrap())
            .unwrap();
        let req = request(
            "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==",
            BODY,
        );
        let view = WebhookRequest::from_request(&req);
        assert_eq!(verifier.verify(&view, at(1_614_265_330 + 300)).unwrap().key_index(), 1);
        assert!(verifier.verify(&view, at(1_614_265_330 - 300)).is_ok());
        assert_eq!(
            verifier.verify(&view, at(1_614_265_331 + 300)).unwrap_err().reason(),
            Reason::TimestampTooOld
        );
        assert_eq!(
            verifier.verify(&view, at(1_614_265_329 - 300)).unwrap_err().reason(),
            Reason::TimestampInFuture
        );
    }

    #[test]
    fn by_name_takes_whpk_keys() {
        let scheme = crate::providers::by_name(
            "standard-webhooks-v1a",
            &[
                "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=",
                "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=",
            ],
        )
        .unwrap();
        let req = request(
            "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==",
            BODY,
        );
        let v = scheme.verify(&WebhookRequest::from_request(&req), at(1_614_265_330)).unwrap();
        assert_eq!(v.key_index(), 1);
        assert_eq!(v.provider(), "standard-webhooks-v1a");
    }

    #[test]
    fn keys() {
        let cases: &[(&str, &str)] = &[
            ("empty", "whpk_"),
            ("not base64", "whpk_!!!"),
            ("31 bytes", "whpk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="),
        ];
        for (name, key) in cases {
            assert!(scheme(key).is_err(), "case {name}");
        }
        assert!(signer("whsk_AAAA").is_err());
        // A receiver holding only the public key cannot sign.
        let verifier = scheme("whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=").unwrap();
        let err = verifier.sign(&Outgoing::new(BODY).id(ID_V).timestamp(at(0))).unwrap_err();
        assert!(matches!(err, SignError::Unsupported(_)));
    }
}
