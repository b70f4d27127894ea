//! The sans-IO verification core: no framework, no I/O, no clock of its own.
//!
//! A [`Scheme`] takes a [`WebhookRequest`] (method, URI, headers, raw body bytes) and
//! "now", and answers [`Verified`] or a [`Rejection`] with a stable [`Reason`]. Schemes
//! are built from small parts that the provider presets share:
//!
//! - [`KeyedMac`]: HMAC-SHA1/256/512 keyed once, cloned per request (or, for HubSpot's
//!   legacy signatures, a hash that has absorbed the secret: [`Construction`]);
//! - [`SignedContent`]: the pieces a provider signs, fed into the MAC one by one;
//! - [`SignatureFormat`] and [`Encoding`]: how signatures sit in their header;
//! - [`TimestampFormat`] and [`Tolerance`]: strict timestamps, separate past/future windows;
//! - [`Field`]: where a value lives (header, JSON body member, signature parameter);
//! - [`HmacScheme`]: all of the above as data, with a builder for unlisted providers;
//! - [`TokenScheme`]: a shared token compared in constant time;
//! - [`FormPairs`]: form-urlencoded pairs, for schemes that sign form parameters;
//! - `Ed25519Scheme` (feature `ed25519`) and `EcdsaP256Scheme` (feature `ecdsa`): the same
//!   description with public keys instead of secrets.
//!
//! ```
//! use hookguard::{providers::standard_webhooks, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = standard_webhooks::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let req = http::Request::post("/hooks")
//!     .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
//!     .header("webhook-timestamp", "1614265330")
//!     .header("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
//!     .body(br#"{"test": 2432232314}"#.to_vec())
//!     .unwrap();
//! let now = time::OffsetDateTime::from_unix_timestamp(1614265330).unwrap();
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap();
//! assert_eq!(verified.id(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
//! ```

#[cfg(any(feature = "ed25519", feature = "ecdsa"))]
mod asymmetric;
mod content;
#[cfg(feature = "ecdsa")]
mod ecdsa;
#[cfg(feature = "ed25519")]
mod ed25519;
mod encoding;
mod envelope;
pub(crate) use envelope::redacted_url;
mod form;
mod hmac_scheme;
pub(crate) mod json;
mod mac;
mod rejection;
mod request;
mod scheme;
mod signature;
mod timestamp;
mod token;

#[cfg(any(feature = "ed25519", feature = "ecdsa"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "ed25519", feature = "ecdsa"))))]
pub use asymmetric::MAX_PUBLIC_KEY_SIGNATURES;
pub use content::{Piece, SignedContent};
#[cfg(feature = "ecdsa")]
#[cfg_attr(docsrs, doc(cfg(feature = "ecdsa")))]
pub use ecdsa::{EcdsaP256Scheme, EcdsaP256SchemeBuilder};
#[cfg(feature = "ed25519")]
#[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
pub use ed25519::{ED25519_KEY_LEN, Ed25519Scheme, Ed25519SchemeBuilder};
pub use encoding::Encoding;
pub use form::FormPairs;
pub use hmac_scheme::{HmacScheme, HmacSchemeBuilder, KeyFormat};
pub use mac::{Algorithm, Construction, KeyedMac, MAX_TAG_LEN, MacState, Tag};
pub use rejection::{Detail, Reason, Rejection};
#[allow(unused_imports)] // for the asymmetric schemes
pub(crate) use request::fingerprint;
pub use request::{Field, Verified, WebhookRequest};
#[allow(unused_imports)] // for the asymmetric schemes
pub(crate) use scheme::header_value;
pub use scheme::{Outgoing, Scheme, Sign, SignError};
pub(crate) use signature::Candidates;
pub use signature::{MAX_SIGNATURE_HEADER_LEN, MAX_SIGNATURES, SignatureFormat};
pub use timestamp::{TimestampFormat, Tolerance};
pub use token::TokenScheme;
