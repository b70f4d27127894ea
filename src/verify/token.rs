//! A shared token sent in a header (GitLab's `X-Gitlab-Token`), compared in constant
//! time through SHA-256 digests so that neither content nor length leaks.

use std::{borrow::Cow, fmt};

use http::{HeaderName, HeaderValue};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{
    Detail, Field, Outgoing, Reason, Rejection, Scheme, Sign, SignError, Verified, WebhookRequest,
    scheme::header_value,
};
use crate::{error::ConfigError, secret::Secret};

/// Verifies a shared token carried in a header.
///
/// Only the SHA-256 digest of each token is kept. A request's token is hashed and the
/// digests compared in constant time; several tokens may be configured (rotation).
/// The replay key is the delivery id header when present, else a SHA-256 of the body.
///
/// ```
/// use hookguard::verify::{Field, Scheme, TokenScheme, WebhookRequest};
///
/// let scheme = TokenScheme::new("gitlab", Field::header("x-gitlab-token"), "tok3n")
///     .unwrap()
///     .with_id(Field::header("x-gitlab-webhook-uuid"));
/// let req = http::Request::post("/").header("x-gitlab-token", "tok3n").body(Vec::new()).unwrap();
/// let now = time::OffsetDateTime::now_utc();
/// assert!(scheme.verify(&WebhookRequest::from_request(&req), now).is_ok());
/// ```
#[derive(Clone)]
pub struct TokenScheme {
    provider: Cow<'static, str>,
    header: Field,
    digests: Vec<Zeroizing<[u8; 32]>>,
    raw_first: Secret,
    id: Option<Field>,
    event: Option<Field>,
    /// The headers `header` reads the token from: left out of what the guard keeps.
    token_headers: Vec<HeaderName>,
}

impl fmt::Debug for TokenScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenScheme")
            .field("provider", &self.provider)
            .field("header", &self.header)
            .field("tokens", &format_args!("[{} redacted]", self.digests.len()))
            .field("id", &self.id)
            .field("event", &self.event)
            .finish()
    }
}

impl TokenScheme {
    /// A scheme for `provider` reading the token from `header`.
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] for an empty token.
    ///
    /// ```
    /// use hookguard::{ConfigError, verify::{Field, Scheme, TokenScheme, WebhookRequest}};
    /// let scheme = TokenScheme::new("acme", Field::header("x-acme-token"), "tok3n").unwrap();
    /// let wrong = http::Request::post("/").header("x-acme-token", "guess").body(Vec::new()).unwrap();
    /// assert!(scheme.verify(&WebhookRequest::from_request(&wrong), time::OffsetDateTime::now_utc()).is_err());
    /// assert!(matches!(TokenScheme::new("acme", Field::header("x-acme-token"), ""), Err(ConfigError::EmptySecret)));
    /// ```
    pub fn new(
        provider: impl Into<Cow<'static, str>>,
        header: Field,
        token: impl AsRef<[u8]>,
    ) -> Result<Self, ConfigError> {
        let secret = Secret::new(token.as_ref())?;
        let mut token_headers = Vec::new();
        headers_of(&header, &mut token_headers);
        Ok(Self {
            provider: provider.into(),
            token_headers,
            header,
            digests: vec![digest(secret.expose())],
            raw_first: secret,
            id: None,
            event: None,
        })
    }

    /// Adds another accepted token (rotation).
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] for an empty token.
    ///
    /// ```
    /// use hookguard::verify::{Field, Scheme, TokenScheme, WebhookRequest};
    /// let s = TokenScheme::new("gitlab", Field::header("x-gitlab-token"), "new").unwrap().with_token("old").unwrap();
    /// let verify = |token: &str| {
    ///     let req = http::Request::post("/").header("x-gitlab-token", token).body(Vec::new()).unwrap();
    ///     s.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).is_ok()
    /// };
    /// assert!(verify("new") && verify("old"));
    /// assert!(!verify("older"));
    /// assert!(s.with_token("").is_err());
    /// ```
    pub fn with_token(mut self, token: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = Secret::new(token.as_ref())?;
        self.digests.push(digest(secret.expose()));
        Ok(self)
    }

    /// Where the delivery id is (the replay key; without one, the body's SHA-256).
    ///
    /// ```
    /// use hookguard::verify::{Field, Scheme, TokenScheme, WebhookRequest};
    /// let scheme = TokenScheme::new("gitlab", Field::header("x-gitlab-token"), "tok3n")
    ///     .unwrap()
    ///     .with_id(Field::header("x-gitlab-webhook-uuid"));
    /// let req = http::Request::post("/")
    ///     .header("x-gitlab-token", "tok3n")
    ///     .header("x-gitlab-webhook-uuid", "u-1")
    ///     .body(Vec::new())
    ///     .unwrap();
    /// let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
    /// assert_eq!(verified.dedup_key(), b"u-1");
    /// ```
    #[must_use]
    pub fn with_id(mut self, field: Field) -> Self {
        self.id = Some(field);
        self
    }

    /// Where the event type is.
    ///
    /// ```
    /// use hookguard::verify::{Field, Scheme, TokenScheme, WebhookRequest};
    /// let scheme = TokenScheme::new("gitlab", Field::header("x-gitlab-token"), "tok3n")
    ///     .unwrap()
    ///     .with_event(Field::header("x-gitlab-event"));
    /// let req = http::Request::post("/")
    ///     .header("x-gitlab-token", "tok3n")
    ///     .header("x-gitlab-event", "Push Hook")
    ///     .body(Vec::new())
    ///     .unwrap();
    /// let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc()).unwrap();
    /// assert_eq!(verified.event(), Some("Push Hook"));
    /// ```
    #[must_use]
    pub fn with_event(mut self, field: Field) -> Self {
        self.event = Some(field);
        self
    }
}

/// The headers `field` reads, into `names`.
fn headers_of(field: &Field, names: &mut Vec<HeaderName>) {
    match field {
        Field::Header(name) => names.push(name.clone()),
        Field::Any(fields) => fields.iter().for_each(|f| headers_of(f, names)),
        Field::Json(_) | Field::SignatureParam => {}
    }
}

fn digest(bytes: &[u8]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(Sha256::digest(bytes).into())
}

impl Scheme for TokenScheme {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn verify<'a>(
        &'a self,
        req: &WebhookRequest<'a>,
        _now: OffsetDateTime,
    ) -> Result<Verified<'a>, Rejection> {
        // A header's bytes as they are; any other field (a list of headers, a JSON member)
        // by its text.
        let token: Option<Cow<'_, [u8]>> = match &self.header {
            Field::Header(name) => req.headers().get(name).map(|v| Cow::Borrowed(v.as_bytes())),
            other => other.text(req, None)?.map(|text| match text {
                Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            }),
        };
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Rejection::with_detail(Reason::MissingSignature, self.header.detail()))?;
        let got = Sha256::digest(&token);
        let mut index = None;
        for (i, want) in self.digests.iter().enumerate() {
            if bool::from(got.as_slice().ct_eq(want.as_slice())) {
                index = Some(i);
                break;
            }
        }
        let Some(key_index) = index else {
            return Err(Rejection::with_detail(
                Reason::SignatureMismatch,
                Detail::Compared { signatures: 1, secrets: self.digests.len() },
            ));
        };
        let id = match &self.id {
            Some(field) => field.text(req, None).ok().flatten(),
            None => None,
        };
        let fingerprint = if id.is_none() { Sha256::digest(req.body()).into() } else { [0; 32] };
        let event = match &self.event {
            Some(field) => field.text(req, None).ok().flatten(),
            None => None,
        };
        Ok(Verified::new(self.provider.as_ref(), id, None, event, fingerprint, key_index)
            .with_secret_headers(&self.token_headers))
    }
}

impl Sign for TokenScheme {
    fn sign(&self, _msg: &Outgoing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let Field::Header(name) = &self.header else {
            return Err(SignError::Unsupported("the token is not in a header"));
        };
        let text = String::from_utf8(self.raw_first.expose().to_vec())
            .map_err(|_| SignError::Unsupported("the token is not text"))?;
        let mut value = header_value(text)?;
        value.set_sensitive(true);
        Ok(vec![(name.clone(), value)])
    }
}
