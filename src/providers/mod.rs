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

pub mod asana;
pub mod bitbucket;
pub mod calendly;
pub mod coinbase;
pub mod dropbox;
pub mod github;
pub mod gitlab;
pub mod hubspot;
pub mod meta;
pub mod pagerduty;
mod respond;
pub mod standard_webhooks;
pub mod stripe;
pub mod trello;
pub mod twitch;
pub mod typeform;
pub mod vercel;

/// Five minutes, the tolerance most providers' SDKs use.
pub(crate) const FIVE_MINUTES: Duration = Duration::from_secs(300);

/// A scheme that can also sign: what [`by_name`] returns.
pub trait Preset: Scheme + Sign {}
impl<T: Scheme + Sign> Preset for T {}

/// The names [`by_name`] knows, as in PROVIDERS.md.
///
/// `trello` is listed but needs its callback URL: [`by_name`] refuses it with a
/// [`ConfigError::Invalid`] naming [`trello::scheme`].
pub const NAMES: &[&str] = &[
    "standard-webhooks",
    "stripe",
    "github",
    "gitlab",
    "gitlab-signing-token",
    "typeform",
    "hubspot",
    "hubspot-v2",
    "hubspot-v1",
    "pagerduty",
    "bitbucket",
    "meta",
    "twitch",
    "trello",
    "asana",
    "calendly",
    "coinbase",
    "vercel",
    "dropbox",
];

/// A preset by its name (`stripe`, `github`, `standard-webhooks`, …) with one or more
/// secrets (the first signs; all verify).
///
/// `hubspot` is v3 (`hubspot-v2`, `hubspot-v1` the legacy hashes); `gitlab` is the
/// `X-Gitlab-Token` check, `gitlab-signing-token` the signed deliveries.
///
/// # Errors
/// [`ConfigError::UnknownProvider`] for a name not in [`NAMES`]; [`ConfigError::NoSecret`]
/// without secrets; the preset's own errors for a bad secret; [`ConfigError::Invalid`]
/// for a preset that needs more than secrets (`trello`: use [`trello::scheme`]).
///
/// ```
/// use hookguard::{ConfigError, providers};
///
/// assert!(matches!(providers::by_name("trello", &["s"]), Err(ConfigError::Invalid(_))));
/// assert_eq!(providers::by_name("gitlab", &["t"]).unwrap().provider(), "gitlab");
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
    macro_rules! with {
        ($make:path) => {{
            let mut scheme = $make(first)?;
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
        "gitlab" => {
            let mut scheme = gitlab::scheme(first)?;
            for s in rest {
                scheme = scheme.with_token(s)?;
            }
            Ok(Box::new(scheme) as Box<dyn Preset>)
        }
        "gitlab-signing-token" => with!(gitlab::signing_token_scheme),
        "typeform" => hmac!(typeform),
        "hubspot" => hmac!(hubspot),
        "hubspot-v2" => with!(hubspot::v2_scheme),
        "hubspot-v1" => with!(hubspot::v1_scheme),
        "pagerduty" => hmac!(pagerduty),
        "bitbucket" => hmac!(bitbucket),
        "meta" => hmac!(meta),
        "twitch" => hmac!(twitch),
        "trello" => Err(ConfigError::Invalid(
            "trello signs its callback URL: use providers::trello::scheme(secret, callback_url)",
        )),
        "asana" => hmac!(asana),
        "calendly" => hmac!(calendly),
        "coinbase" => hmac!(coinbase),
        "vercel" => hmac!(vercel),
        "dropbox" => hmac!(dropbox),
        other => Err(ConfigError::UnknownProvider(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_known_and_keeps_its_name() {
        for name in NAMES {
            match by_name(
                name,
                &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"],
            ) {
                Ok(scheme) => {
                    let base = name.split("-v").next().unwrap_or(name);
                    let base = base.strip_suffix("-signing-token").unwrap_or(base);
                    assert_eq!(scheme.provider(), base, "{name}");
                }
                Err(ConfigError::Invalid(why)) => assert!(why.contains("::scheme("), "{name}: {why}"),
                Err(e) => panic!("{name}: {e}"),
            }
        }
        assert!(matches!(by_name("nope", &["s"]), Err(ConfigError::UnknownProvider(_))));
        assert!(matches!(by_name::<&str>("gitlab", &[]), Err(ConfigError::NoSecret)));
    }
}
