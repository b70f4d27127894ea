//! The two traits every scheme implements: verifying what arrives, signing what a sender
//! would send.

use std::{fmt, sync::Arc};

use http::{HeaderName, HeaderValue, Method};
use time::OffsetDateTime;

use super::{Rejection, Tolerance, Verified, WebhookRequest};

/// A way of proving a webhook genuine: sans-IO, synchronous, pure.
///
/// Given the request and "now", answer [`Verified`] or a [`Rejection`]; never panic,
/// never allocate in proportion to hostile input beyond the body already held.
///
/// ```
/// use hookguard::{providers::stripe, verify::{Reason, Scheme, WebhookRequest}};
///
/// let scheme = stripe::scheme("whsec_test").unwrap();
/// let req = http::Request::post("/").body(b"{}".to_vec()).unwrap();
/// let now = time::OffsetDateTime::now_utc();
/// let err = scheme.verify(&WebhookRequest::from_request(&req), now).unwrap_err();
/// assert_eq!(err.reason(), Reason::MissingSignature);
/// ```
pub trait Scheme: fmt::Debug + Send + Sync {
    /// The provider's name (`stripe`, `github`, `standard-webhooks`, …).
    ///
    /// ```
    /// use hookguard::{providers::{github, stripe}, verify::Scheme};
    /// assert_eq!(github::scheme("s3cr3t").unwrap().provider(), "github");
    /// assert_eq!(stripe::scheme("whsec_test").unwrap().provider(), "stripe");
    /// ```
    fn provider(&self) -> &str;

    /// Verifies one request.
    ///
    /// # Errors
    /// A [`Rejection`] saying why the request is not accepted.
    ///
    /// ```
    /// use hookguard::{providers::github, verify::{Reason, Scheme, WebhookRequest}};
    /// let scheme = github::scheme("It's a Secret to Everybody").unwrap();
    /// let now = time::OffsetDateTime::now_utc();
    /// let signed = http::Request::post("/")
    ///     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    ///     .header("x-github-delivery", "d-1")
    ///     .body(b"Hello, World!".to_vec())
    ///     .unwrap();
    /// let verified = scheme.verify(&WebhookRequest::from_request(&signed), now).unwrap();
    /// assert_eq!(verified.id(), Some("d-1"));
    /// let tampered = http::Request::post("/")
    ///     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    ///     .body(b"Hello, World?".to_vec())
    ///     .unwrap();
    /// let err = scheme.verify(&WebhookRequest::from_request(&tampered), now).unwrap_err();
    /// assert_eq!(err.reason(), Reason::SignatureMismatch);
    /// ```
    fn verify<'a>(&'a self, req: &WebhookRequest<'a>, now: OffsetDateTime)
    -> Result<Verified<'a>, Rejection>;

    /// The timestamp tolerance this scheme enforces ([`Tolerance::NONE`] when it has no
    /// timestamp); replay marks must live at least this long.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::{providers::{github, stripe}, verify::{Scheme, Tolerance}};
    /// assert_eq!(github::scheme("s3cr3t").unwrap().tolerance(), Tolerance::NONE);
    /// assert_eq!(stripe::scheme("whsec_test").unwrap().tolerance().past(), Some(Duration::from_secs(300)));
    /// ```
    fn tolerance(&self) -> Tolerance {
        Tolerance::NONE
    }

    /// Whether the scheme signs the URL it is called at, which it takes from
    /// [`WebhookRequest::with_url`] (the guard's
    /// [`public_origin`](crate::guard::GuardBuilder::public_origin)) and never from the
    /// request: without one it refuses every request (`missing-url`). `false` for schemes
    /// that sign no URL or a URL of their own (Square's and Trello's registered one).
    ///
    /// ```
    /// use hookguard::{providers::{github, hubspot, twilio}, verify::Scheme};
    /// assert!(twilio::scheme("token").unwrap().signs_called_url());
    /// assert!(hubspot::scheme("secret").unwrap().signs_called_url());
    /// assert!(hubspot::v2_scheme("secret").unwrap().signs_called_url());
    /// assert!(!github::scheme("secret").unwrap().signs_called_url());
    /// // Square signs its notification URL as registered: no URL is needed from the guard.
    /// let square = hookguard::providers::square::scheme("key", "https://example.com/hooks").unwrap();
    /// assert!(!square.signs_called_url());
    /// ```
    fn signs_called_url(&self) -> bool {
        false
    }
}

macro_rules! forward_scheme {
    ($($ty:ty),*) => {$(
        impl<S: Scheme + ?Sized> Scheme for $ty {
            fn provider(&self) -> &str {
                (**self).provider()
            }
            fn verify<'a>(&'a self, req: &WebhookRequest<'a>, now: OffsetDateTime) -> Result<Verified<'a>, Rejection> {
                (**self).verify(req, now)
            }
            fn tolerance(&self) -> Tolerance {
                (**self).tolerance()
            }
            fn signs_called_url(&self) -> bool {
                (**self).signs_called_url()
            }
        }
    )*};
}
forward_scheme!(Box<S>, Arc<S>, &S);

/// What a sender is about to send, for [`Sign`].
///
/// ```
/// use hookguard::verify::Outgoing;
///
/// let msg = Outgoing::new(b"{}").id("msg_1").timestamp(time::OffsetDateTime::UNIX_EPOCH);
/// assert_eq!(msg.body(), b"{}");
/// ```
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    body: &'a [u8],
    id: Option<&'a str>,
    timestamp: Option<OffsetDateTime>,
    url: Option<&'a str>,
    method: Method,
}

impl<'a> Outgoing<'a> {
    /// A `POST` of `body`, with no id, timestamp or URL yet.
    ///
    /// ```
    /// use hookguard::{providers::github, verify::{Outgoing, Sign}};
    /// let headers = github::scheme("s3cr3t").unwrap().sign(&Outgoing::new(b"{}")).unwrap();
    /// assert_eq!(headers[0].0, github::HEADER);
    /// ```
    #[must_use]
    pub fn new(body: &'a [u8]) -> Self {
        Self { body, id: None, timestamp: None, url: None, method: Method::POST }
    }

    /// Sets the delivery id (required by schemes that sign it).
    ///
    /// ```
    /// use hookguard::{providers::standard_webhooks, verify::{Outgoing, Sign, SignError}};
    /// let scheme = standard_webhooks::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    /// let at = time::OffsetDateTime::now_utc();
    /// assert!(matches!(scheme.sign(&Outgoing::new(b"{}").timestamp(at)), Err(SignError::MissingId)));
    /// let headers = scheme.sign(&Outgoing::new(b"{}").timestamp(at).id("msg_1")).unwrap();
    /// assert!(headers.iter().any(|(name, value)| name == "webhook-id" && value == "msg_1"));
    /// ```
    #[must_use]
    pub fn id(mut self, id: &'a str) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the timestamp (required by schemes that read one).
    ///
    /// ```
    /// use hookguard::{providers::slack, verify::{Outgoing, Sign, SignError}};
    /// let scheme = slack::scheme("s3cr3t").unwrap();
    /// assert!(matches!(scheme.sign(&Outgoing::new(b"{}")), Err(SignError::MissingTimestamp)));
    /// let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    /// let headers = scheme.sign(&Outgoing::new(b"{}").timestamp(at)).unwrap();
    /// assert!(headers.iter().any(|(name, value)| name == slack::TIMESTAMP && value == "1700000000"));
    /// ```
    #[must_use]
    pub fn timestamp(mut self, at: OffsetDateTime) -> Self {
        self.timestamp = Some(at);
        self
    }

    /// Sets the URL the message is sent to (required by schemes that sign it).
    ///
    /// ```
    /// use hookguard::{providers::hubspot, verify::{Outgoing, Sign, SignError}};
    /// let scheme = hookguard::providers::hubspot::v2_scheme("client-secret").unwrap();
    /// assert!(matches!(scheme.sign(&Outgoing::new(b"{}")), Err(SignError::MissingUrl)));
    /// assert!(scheme.sign(&Outgoing::new(b"{}").url("https://example.com/hooks/hubspot")).is_ok());
    /// ```
    #[must_use]
    pub fn url(mut self, url: &'a str) -> Self {
        self.url = Some(url);
        self
    }

    /// Sets the method (default `POST`).
    ///
    /// ```
    /// use hookguard::{providers::hubspot, verify::{Outgoing, Sign}};
    /// let scheme = hubspot::v2_scheme("client-secret").unwrap();
    /// let msg = Outgoing::new(b"").url("https://example.com/hooks/hubspot");
    /// // HubSpot v2 signs the method: a GET is signed differently.
    /// assert_ne!(scheme.sign(&msg).unwrap(), scheme.sign(&msg.method(http::Method::GET)).unwrap());
    /// ```
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The body.
    ///
    /// ```
    /// use hookguard::verify::Outgoing;
    /// assert_eq!(Outgoing::new(b"{}").id("d-1").body(), b"{}");
    /// ```
    #[must_use]
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    pub(crate) fn get_id(&self) -> Option<&'a str> {
        self.id
    }
    pub(crate) fn get_timestamp(&self) -> Option<OffsetDateTime> {
        self.timestamp
    }
    pub(crate) fn get_url(&self) -> Option<&'a str> {
        self.url
    }
    pub(crate) fn get_method(&self) -> &Method {
        &self.method
    }
}

/// Why a message could not be signed.
///
/// ```
/// use hookguard::{providers::standard_webhooks, verify::{Outgoing, Sign, SignError}};
///
/// let scheme = standard_webhooks::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
/// assert_eq!(scheme.sign(&Outgoing::new(b"{}")).unwrap_err(), SignError::MissingId);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The scheme signs a delivery id and none was given.
    MissingId,
    /// The scheme signs a timestamp and none was given.
    MissingTimestamp,
    /// The scheme signs the URL and none was given.
    MissingUrl,
    /// This scheme cannot produce signatures (a verify-only key, or a value the provider
    /// signs inside the body).
    Unsupported(&'static str),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingId => f.write_str("a delivery id is needed to sign"),
            Self::MissingTimestamp => f.write_str("a timestamp is needed to sign"),
            Self::MissingUrl => f.write_str("the URL is needed to sign"),
            Self::Unsupported(why) => write!(f, "cannot sign: {why}"),
        }
    }
}

impl std::error::Error for SignError {}

/// The sender's side of a scheme: the headers a provider would send with `msg`.
///
/// ```
/// use hookguard::{providers::github, verify::{Outgoing, Sign}};
///
/// let scheme = github::scheme("It's a Secret to Everybody").unwrap();
/// let headers = scheme.sign(&Outgoing::new(b"Hello, World!")).unwrap();
/// assert_eq!(headers[0].0, "x-hub-signature-256");
/// assert_eq!(
///     headers[0].1,
///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
/// );
/// ```
pub trait Sign {
    /// Signs with the first configured secret.
    ///
    /// # Errors
    /// [`SignError`] when a value the scheme signs is missing.
    ///
    /// ```
    /// use hookguard::{providers::{github, twilio}, verify::{Outgoing, Sign, SignError}};
    /// let headers = github::scheme("s3cr3t").unwrap().sign(&Outgoing::new(b"{}")).unwrap();
    /// assert_eq!(headers[0].0, "x-hub-signature-256");
    /// // Twilio signs the URL it calls: without one, nothing can be signed.
    /// let err = twilio::scheme("12345").unwrap().sign(&Outgoing::new(b"{}")).unwrap_err();
    /// assert_eq!(err, SignError::MissingUrl);
    /// ```
    fn sign(&self, msg: &Outgoing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, SignError>;
}

pub(crate) fn header_value(text: String) -> Result<HeaderValue, SignError> {
    HeaderValue::try_from(text).map_err(|_| SignError::Unsupported("value is not a valid header"))
}
