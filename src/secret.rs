//! Secrets: key material with redacted `Debug`, zeroized on drop, never empty.
//!
//! A [`Secret`] is what a provider shares with you (an HMAC key, a shared token). It is
//! only held long enough to key a MAC: schemes keep the keyed MAC state, not the text.
//!
//! ```
//! use hookguard::Secret;
//!
//! let secret = Secret::new("It's a Secret to Everybody").unwrap();
//! assert_eq!(format!("{secret:?}"), "Secret(\"[redacted]\")");
//! assert!(Secret::new("").is_err()); // fail closed
//! ```

use std::fmt;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::ConfigError;

/// Key material shared with a webhook sender.
///
/// `Debug` prints `Secret("[redacted]")`; the bytes are overwritten with zeros when the
/// value is dropped. An empty secret cannot be built: verification fails closed.
///
/// ```
/// use hookguard::Secret;
///
/// let s = Secret::new(b"0123".to_vec()).unwrap();
/// assert_eq!(s.expose().len(), 4);
/// ```
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes the secret's bytes as they are (for most providers, the UTF-8 bytes of
    /// the secret string shown in their dashboard).
    ///
    /// # Errors
    /// [`ConfigError`] when the secret is empty.
    ///
    /// ```
    /// # use hookguard::Secret;
    /// assert!(Secret::new("whsec_abc").is_ok());
    /// ```
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let bytes = Zeroizing::new(bytes.into());
        if bytes.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        Ok(Self(bytes))
    }

    /// Decodes a Standard Webhooks / Svix secret: the `whsec_` prefix (optional) is
    /// stripped and the rest base64-decoded; the decoded bytes are the HMAC key.
    ///
    /// # Errors
    /// [`ConfigError::InvalidSecret`] when the rest is not base64;
    /// [`ConfigError::EmptySecret`] when it decodes to nothing.
    ///
    /// ```
    /// # use hookguard::{ConfigError, Secret};
    /// let key = Secret::from_standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    /// assert_eq!(key.expose().len(), 24);
    /// assert!(matches!(Secret::from_standard_webhooks("whsec_!"), Err(ConfigError::InvalidSecret(_))));
    /// assert_eq!(Secret::from_standard_webhooks("whsec_").unwrap_err(), ConfigError::EmptySecret);
    /// ```
    pub fn from_standard_webhooks(text: impl AsRef<str>) -> Result<Self, ConfigError> {
        let text = text.as_ref().trim();
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| ConfigError::InvalidSecret("a `whsec_` secret must be base64 after its prefix"))?;
        Self::new(decoded)
    }

    /// The secret's bytes. Use sparingly: every copy is one more place to leak from.
    ///
    /// ```
    /// # use hookguard::Secret;
    /// assert_eq!(Secret::new("k").unwrap().expose(), b"k");
    /// ```
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Secret").field(&"[redacted]").finish()
    }
}

impl TryFrom<&str> for Secret {
    type Error = ConfigError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for Secret {
    type Error = ConfigError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<&[u8]> for Secret {
    type Error = ConfigError;
    fn try_from(value: &[u8]) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_secret_fails_closed() {
        assert_eq!(Secret::new("").unwrap_err(), ConfigError::EmptySecret);
        assert_eq!(Secret::from_standard_webhooks("whsec_").unwrap_err(), ConfigError::EmptySecret);
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("super-secret-value").unwrap();
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("super-secret-value"), "{shown}");
    }

    #[test]
    fn standard_webhooks_secret_is_base64_decoded() {
        let s = Secret::from_standard_webhooks("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(s.expose().len(), 24);
        assert!(Secret::from_standard_webhooks("whsec_!!!").is_err());
    }
}
