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

pub mod github;
pub mod intercom;
pub mod linear;
pub mod mailgun;
pub mod paddle;
pub mod shopify;
pub mod slack;
pub mod square;
pub mod standard_webhooks;
pub mod stripe;
pub mod svix;
pub mod twilio;
pub mod zoom;

/// Five minutes, the tolerance most providers' SDKs use.
pub(crate) const FIVE_MINUTES: Duration = Duration::from_secs(300);

/// A scheme that can also sign: what [`by_name`] returns.
pub trait Preset: Scheme + Sign {}
impl<T: Scheme + Sign> Preset for T {}

/// The names [`by_name`] knows, as in PROVIDERS.md.
///
/// `square` signs its notification URL, which a name and secrets cannot give:
/// [`by_name`] answers [`ConfigError::Invalid`] for it (use [`square::scheme`]).
pub const NAMES: &[&str] = &[
    "standard-webhooks",
    "stripe",
    "github",
    "svix",
    "slack",
    "shopify",
    "twilio",
    "paddle",
    "zoom",
    "linear",
    "square",
    "intercom",
    "mailgun",
];

/// A preset by its name (`stripe`, `github`, `standard-webhooks`, …) with one or more
/// secrets (the first signs; all verify).
///
/// # Errors
/// [`ConfigError::UnknownProvider`] for a name not in [`NAMES`]; [`ConfigError::NoSecret`]
/// without secrets; the preset's own errors for a bad secret; [`ConfigError::Invalid`]
/// for a preset that needs more than secrets (`square`: its notification URL).
///
/// ```
/// use hookguard::{ConfigError, providers};
///
/// assert!(providers::by_name("twilio", &["token", "secondary-token"]).is_ok());
/// assert!(matches!(providers::by_name("square", &["key"]), Err(ConfigError::Invalid(_))));
/// ```
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
    match name {
        "standard-webhooks" => hmac!(standard_webhooks),
        "stripe" => hmac!(stripe),
        "github" => hmac!(github),
        "svix" => hmac!(svix),
        "slack" => hmac!(slack),
        "shopify" => hmac!(shopify),
        "twilio" => hmac!(twilio),
        "paddle" => hmac!(paddle),
        "zoom" => hmac!(zoom),
        "linear" => hmac!(linear),
        "square" => Err(ConfigError::Invalid(
            "Square signs its notification URL: build it with `providers::square::scheme(key, url)`",
        )),
        "intercom" => hmac!(intercom),
        "mailgun" => hmac!(mailgun),
        other => Err(ConfigError::UnknownProvider(other.to_owned())),
    }
}
