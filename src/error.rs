//! Construction errors: what is wrong with a scheme's configuration.

use std::fmt;

/// A scheme, secret or key could not be built from what was given.
///
/// Verification fails closed: an empty secret, a missing secret or an unusable key is an
/// error when the scheme is built, never a scheme that accepts everything.
///
/// ```
/// use hookguard::{ConfigError, providers::github};
///
/// assert_eq!(github::scheme("").unwrap_err(), ConfigError::EmptySecret);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A secret with no bytes.
    EmptySecret,
    /// A scheme was built without any secret or key.
    NoSecret,
    /// A secret or key that cannot be decoded; the text says which form was expected
    /// (never the secret itself).
    InvalidSecret(&'static str),
    /// A configuration that cannot work: a scheme description (a signed piece that names
    /// a timestamp when the scheme has no timestamp source), a rate limit (a zero or too
    /// long period), a TLS setting.
    Invalid(&'static str),
    /// No preset has this name.
    UnknownProvider(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptySecret => f.write_str("secret is empty"),
            Self::NoSecret => f.write_str("no secret configured"),
            Self::InvalidSecret(why) => write!(f, "invalid secret: {why}"),
            Self::Invalid(why) => write!(f, "invalid configuration: {why}"),
            Self::UnknownProvider(name) => write!(f, "unknown provider `{name}`"),
        }
    }
}

impl std::error::Error for ConfigError {}
