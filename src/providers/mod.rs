//! Provider presets: each one a row of the provider catalogue, built from the core parts
//! in [`verify`](crate::verify).
//!
//! Every preset module offers `scheme(secret)` (more secrets with `with_secret`, for
//! rotation), and the provider's handshake helper where it has one. Names follow
//! PROVIDERS.md in lower case with dashes ([`by_name`]).
//!
//! ```
//! use hookguard::{providers, verify::Scheme};
//!
//! let scheme = providers::by_name("github", &["It's a Secret to Everybody"]).unwrap();
//! assert_eq!(scheme.provider(), "github");
//! ```

use std::time::Duration;

use crate::{
    ConfigError,
    verify::{Scheme, Sign},
};

#[cfg(feature = "ed25519")]
#[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
pub mod discord;
pub mod github;
#[cfg(feature = "rsa")]
#[cfg_attr(docsrs, doc(cfg(feature = "rsa")))]
pub mod paypal;
#[cfg(feature = "ecdsa")]
#[cfg_attr(docsrs, doc(cfg(feature = "ecdsa")))]
pub mod sendgrid;
pub mod standard_webhooks;
#[cfg(feature = "ed25519")]
#[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
pub mod standard_webhooks_v1a;
pub mod stripe;

/// Five minutes, the tolerance most providers' SDKs use.
pub(crate) const FIVE_MINUTES: Duration = Duration::from_secs(300);

/// A scheme that can also sign: what [`by_name`] returns.
pub trait Preset: Scheme + Sign {}
impl<T: Scheme + Sign> Preset for T {}

/// The names [`by_name`] knows, as in PROVIDERS.md (the public-key presets only with
/// their Cargo feature).
pub const NAMES: &[&str] = &[
    "standard-webhooks",
    "stripe",
    "github",
    #[cfg(feature = "ed25519")]
    "standard-webhooks-v1a",
    #[cfg(feature = "ed25519")]
    "discord",
    #[cfg(feature = "ecdsa")]
    "sendgrid",
];

/// A preset by its name (`stripe`, `github`, `standard-webhooks`, …) with one or more
/// secrets (the first signs; all verify).
///
/// The public-key presets take public keys in their usual text form instead
/// (`standard-webhooks-v1a`: `whpk_…`; `discord`: hex; `sendgrid`: base64 DER); those
/// schemes verify but do not sign. PayPal needs a webhook id and a certificate, so it is
/// not listed: use `paypal::scheme` (feature `rsa`).
///
/// # Errors
/// [`ConfigError::UnknownProvider`] for a name not in [`NAMES`]; [`ConfigError::NoSecret`]
/// without secrets; the preset's own errors for a bad secret.
pub fn by_name<S: AsRef<[u8]>>(name: &str, secrets: &[S]) -> Result<Box<dyn Preset>, ConfigError> {
    let (first, rest) = secrets.split_first().ok_or(ConfigError::NoSecret)?;
    macro_rules! hmac {
        ($module:ident) => {{
            let mut scheme = $module::scheme(first)?;
            for s in rest {
                scheme = scheme.with_secret(s)?;
            }
            Ok(Box::new(scheme) as Box<dyn Preset>)
        }};
    }
    #[cfg(any(feature = "ed25519", feature = "ecdsa"))]
    macro_rules! public_keys {
        ($module:ident) => {{
            let mut scheme = $module::scheme(first)?;
            for s in rest {
                scheme = scheme.with_public_key($module::public_key(s)?)?;
            }
            Ok(Box::new(scheme) as Box<dyn Preset>)
        }};
    }
    match name {
        "standard-webhooks" => hmac!(standard_webhooks),
        #[cfg(feature = "ed25519")]
        "standard-webhooks-v1a" => public_keys!(standard_webhooks_v1a),
        #[cfg(feature = "ed25519")]
        "discord" => public_keys!(discord),
        #[cfg(feature = "ecdsa")]
        "sendgrid" => public_keys!(sendgrid),
        "stripe" => hmac!(stripe),
        "github" => hmac!(github),
        other => Err(ConfigError::UnknownProvider(other.to_owned())),
    }
}
