//! Provider presets: each one a row of the provider catalogue, built from the core parts
//! in [`verify`](crate::verify).
//!
//! Every preset module offers `scheme(secret)` (more secrets with `with_secret`, for
//! rotation), and the provider's handshake helper where it has one. Names are the
//! providers' in lower case with dashes ([`by_name`], [`NAMES`]). PROVIDERS.md in the
//! repository tabulates every preset: where its signature travels, what is signed, the
//! timestamp and default tolerance, the replay key, handshake, rotation and Cargo
//! feature, with each provider's pitfalls and official documentation.
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
#[cfg(feature = "ed25519")]
#[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
pub mod discord;
pub mod dropbox;
pub mod github;
pub mod gitlab;
pub mod hubspot;
pub mod intercom;
pub mod linear;
pub mod mailgun;
pub mod meta;
pub mod paddle;
pub mod pagerduty;
#[cfg(feature = "rsa")]
#[cfg_attr(docsrs, doc(cfg(feature = "rsa")))]
pub mod paypal;
mod respond;
#[cfg(feature = "ecdsa")]
#[cfg_attr(docsrs, doc(cfg(feature = "ecdsa")))]
pub mod sendgrid;
pub mod shopify;
pub mod slack;
pub mod square;
pub mod standard_webhooks;
#[cfg(feature = "ed25519")]
#[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
pub mod standard_webhooks_v1a;
pub mod stripe;
pub mod svix;
pub mod trello;
pub mod twilio;
pub mod twitch;
pub mod typeform;
pub mod vercel;
pub mod zoom;

/// Five minutes, the tolerance most providers' SDKs use.
pub(crate) const FIVE_MINUTES: Duration = Duration::from_secs(300);

/// 72 hours: how old a signed timestamp may be under the presets whose providers sign one
/// but whose SDKs check no age ([`zoom`], `discord`, `sendgrid`); those presets refuse
/// older ones (`Tolerance::past_only(SIGNED_TIMESTAMP_MAX_AGE)`), and check no future bound
/// (a sender's clock running ahead is not refused).
///
/// It equals the guard's
/// [`DEFAULT_UNTIMED_REPLAY_TTL`](crate::guard::DEFAULT_UNTIMED_REPLAY_TTL), how long a
/// replay mark lives by default when the scheme has no past bound: a copy of a genuine
/// delivery is either still marked or refused as `timestamp-too-old`, never handled as new
/// once its mark has expired, as it was with no tolerance at all. Genuine deliveries come well within it
/// (Zoom's last retry 85 minutes later, SendGrid's within 24 hours, Discord wants an answer
/// within 3 seconds). Change it with the schemes' `with_tolerance`.
///
/// ```
/// use std::time::Duration;
/// use hookguard::{providers::{self, zoom}, verify::{Scheme, Tolerance}};
///
/// assert_eq!(providers::SIGNED_TIMESTAMP_MAX_AGE, Duration::from_secs(72 * 3600));
/// let zoom = zoom::scheme("zoom_secret").unwrap();
/// assert_eq!(zoom.tolerance(), Tolerance::past_only(providers::SIGNED_TIMESTAMP_MAX_AGE));
/// # #[cfg(feature = "tower")]
/// assert_eq!(providers::SIGNED_TIMESTAMP_MAX_AGE, hookguard::guard::DEFAULT_UNTIMED_REPLAY_TTL);
/// ```
pub const SIGNED_TIMESTAMP_MAX_AGE: Duration = Duration::from_secs(72 * 3600);

/// A scheme that can also sign: what [`by_name`] returns.
///
/// ```
/// use hookguard::{providers, verify::{Outgoing, Scheme, WebhookRequest}};
/// let preset = providers::by_name("github", &["s3cr3t"]).unwrap();
/// let mut req = http::Request::post("/hooks/github");
/// for (name, value) in preset.sign(&Outgoing::new(b"{}")).unwrap() {
///     req = req.header(name, value);
/// }
/// let req = req.body(b"{}".to_vec()).unwrap();
/// assert!(preset.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok());
/// ```
pub trait Preset: Scheme + Sign {}
impl<T: Scheme + Sign> Preset for T {}

/// The names [`by_name`] knows, one per row of PROVIDERS.md in the repository (the
/// public-key presets only with their Cargo feature).
///
/// `square` and `trello` sign a URL fixed at registration, which a name and secrets
/// cannot give: [`by_name`] answers [`ConfigError::Invalid`] for them (use
/// [`square::scheme`] and [`trello::scheme`]).
///
/// ```
/// use hookguard::providers::{self, NAMES};
/// assert!(NAMES.contains(&"stripe") && NAMES.contains(&"hubspot-v2"));
/// // Every name but the URL-signing two builds from secrets (public keys for some).
/// for name in NAMES.iter().filter(|n| !["square", "trello"].contains(n)) {
///     let key = match *name {
///         "standard-webhooks-v1a" => "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=",
///         "discord" => "c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6",
///         "sendgrid" => "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==",
///         _ => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
///     };
///     assert!(providers::by_name(name, &[key]).is_ok(), "{name}");
/// }
/// ```
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
/// `hubspot` is v3 (`hubspot-v2`, `hubspot-v1` the legacy hashes); `gitlab` is the
/// `X-Gitlab-Token` check, `gitlab-signing-token` the signed deliveries.
///
/// The public-key presets take public keys in their usual text form instead
/// (`standard-webhooks-v1a`: `whpk_…`; `discord`: hex; `sendgrid`: base64 DER); those
/// schemes verify but do not sign. PayPal needs a webhook id and a certificate, so it is
/// not listed: use `paypal::scheme` (feature `rsa`).
///
/// # Errors
/// [`ConfigError::UnknownProvider`] for a name not in [`NAMES`]; [`ConfigError::NoSecret`]
/// without secrets; the preset's own errors for a bad secret; [`ConfigError::Invalid`]
/// for a preset that needs more than secrets (`square`, `trello`: their URL).
///
/// ```
/// use hookguard::{ConfigError, providers};
///
/// assert!(providers::by_name("twilio", &["token", "secondary-token"]).is_ok());
/// assert!(matches!(providers::by_name("square", &["key"]), Err(ConfigError::Invalid(_))));
/// assert!(matches!(providers::by_name("trello", &["s"]), Err(ConfigError::Invalid(_))));
/// assert_eq!(providers::by_name("gitlab", &["t"]).unwrap().provider(), "gitlab");
/// ```
pub fn by_name<S: AsRef<[u8]>>(name: &str, secrets: &[S]) -> Result<Box<dyn Preset>, ConfigError> {
    let (first, rest) = secrets.split_first().ok_or(ConfigError::NoSecret)?;
    macro_rules! with {
        ($make:path) => {{
            let mut scheme = $make(first)?;
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
        "standard-webhooks" => with!(standard_webhooks::scheme),
        "stripe" => with!(stripe::scheme),
        "github" => with!(github::scheme),
        "svix" => with!(svix::scheme),
        "slack" => with!(slack::scheme),
        "shopify" => with!(shopify::scheme),
        "twilio" => with!(twilio::scheme),
        "paddle" => with!(paddle::scheme),
        "zoom" => with!(zoom::scheme),
        "linear" => with!(linear::scheme),
        "square" => Err(ConfigError::Invalid(
            "Square signs its notification URL: build it with `providers::square::scheme(key, url)`",
        )),
        "intercom" => with!(intercom::scheme),
        "mailgun" => with!(mailgun::scheme),
        "gitlab" => {
            let mut scheme = gitlab::scheme(first)?;
            for s in rest {
                scheme = scheme.with_token(s)?;
            }
            Ok(Box::new(scheme) as Box<dyn Preset>)
        }
        "gitlab-signing-token" => with!(gitlab::signing_token_scheme),
        "typeform" => with!(typeform::scheme),
        "hubspot" => with!(hubspot::scheme),
        "hubspot-v2" => with!(hubspot::v2_scheme),
        "hubspot-v1" => with!(hubspot::v1_scheme),
        "pagerduty" => with!(pagerduty::scheme),
        "bitbucket" => with!(bitbucket::scheme),
        "meta" => with!(meta::scheme),
        "twitch" => with!(twitch::scheme),
        "trello" => Err(ConfigError::Invalid(
            "trello signs its callback URL: use providers::trello::scheme(secret, callback_url)",
        )),
        "asana" => with!(asana::scheme),
        "calendly" => with!(calendly::scheme),
        "coinbase" => with!(coinbase::scheme),
        "vercel" => with!(vercel::scheme),
        "dropbox" => with!(dropbox::scheme),
        #[cfg(feature = "ed25519")]
        "standard-webhooks-v1a" => public_keys!(standard_webhooks_v1a),
        #[cfg(feature = "ed25519")]
        "discord" => public_keys!(discord),
        #[cfg(feature = "ecdsa")]
        "sendgrid" => public_keys!(sendgrid),
        other => Err(ConfigError::UnknownProvider(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_known_and_keeps_its_name() {
        for name in NAMES {
            let keys: &[&str] = match *name {
                "standard-webhooks-v1a" => &["whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="],
                "discord" => &["d52880e28f61caa4c2a48a82e55f4751a92289a78009ea9f6532270c16ce8abe"],
                "sendgrid" => &[
                    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==",
                ],
                _ => &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"],
            };
            match by_name(name, keys) {
                Ok(scheme) => {
                    let base = name.split("-v").next().unwrap_or(name);
                    let base = base.strip_suffix("-signing-token").unwrap_or(base);
                    assert!(scheme.provider() == *name || scheme.provider() == base, "{name}");
                }
                Err(ConfigError::Invalid(why)) => assert!(why.contains("::scheme("), "{name}: {why}"),
                Err(e) => panic!("{name}: {e}"),
            }
        }
        assert!(matches!(by_name("nope", &["s"]), Err(ConfigError::UnknownProvider(_))));
        assert!(matches!(by_name::<&str>("gitlab", &[]), Err(ConfigError::NoSecret)));
    }

    /// A copy of a delivery whose replay mark has expired (it lives the guard's untimed
    /// time to live when the scheme has no past bound) is refused as stale.
    #[cfg(feature = "tower")]
    #[test]
    fn signed_timestamps_go_stale_when_untimed_marks_expire() {
        assert_eq!(SIGNED_TIMESTAMP_MAX_AGE, crate::guard::DEFAULT_UNTIMED_REPLAY_TTL);
    }
}
