//! What the framework adapters' extractors share: why one could not give its value
//! ([`WebhookRejection`], re-exported as `hookguard::axum::WebhookRejection` and
//! `hookguard::actix::WebhookRejection`, one type).
//!
//! ```
//! use hookguard::extract::WebhookRejection;
//!
//! let rejection = WebhookRejection::NotVerified; // a route outside the verifying middleware
//! assert_eq!(rejection.to_string(), "webhook was not verified");
//! #[cfg(feature = "axum")]
//! {
//!     use axum::response::IntoResponse;
//!     let res = hookguard::axum::WebhookRejection::NotVerified.into_response();
//!     assert_eq!(res.status(), 500);
//!     assert_eq!(res.headers()["content-type"], "application/problem+json");
//! }
//! #[cfg(feature = "actix")]
//! {
//!     use actix_web::ResponseError;
//!     let res = hookguard::actix::WebhookRejection::TooLarge.error_response();
//!     assert_eq!(res.status(), 413);
//! }
//! ```

use std::fmt;

use http::StatusCode;

use crate::problem::{Problem, known};

/// Why an extractor could not give its value. Its answer, `Display` and `Debug` never
/// quote the body.
///
/// Behind the verifying middleware (`VerifyLayer`, actix's `Verify`) only
/// [`NotVerified`](Self::NotVerified) and [`Json`](Self::Json) happen. On a route whose
/// [`Verified`](crate::verify::Verified) the application's own middleware put in the
/// extensions, the extractors read the body themselves within
/// [`DEFAULT_BODY_LIMIT`](crate::guard::DEFAULT_BODY_LIMIT) and
/// [`DEFAULT_READ_TIMEOUT`](crate::guard::DEFAULT_READ_TIMEOUT), and the other variants
/// may happen too. The answer is a problem response: axum's `IntoResponse`, actix's
/// `ResponseError`.
///
/// ```
/// use hookguard::extract::WebhookRejection;
///
/// #[derive(Debug, serde::Deserialize)]
/// struct Order { amount: u32 }
///
/// let e = serde_json::from_str::<Order>(r#"{"amount":"4111 1111 1111 1111"}"#).unwrap_err();
/// let rejection = WebhookRejection::Json(e);
/// assert_eq!(rejection.to_string(), "body does not fit the expected type (line 1, column 31)");
/// assert!(!format!("{rejection:?}").contains("4111"));
/// ```
#[non_exhaustive]
pub enum WebhookRejection {
    /// The route is not behind the verifying middleware (a server bug: 500).
    NotVerified,
    /// The body could not be read (400).
    Body,
    /// The body is over [`DEFAULT_BODY_LIMIT`](crate::guard::DEFAULT_BODY_LIMIT) (413):
    /// only when the extractor read the body itself (no verifying middleware of
    /// hookguard's in front: behind one, the extractors take the bytes it verified and
    /// read nothing).
    TooLarge,
    /// The body did not arrive within
    /// [`DEFAULT_READ_TIMEOUT`](crate::guard::DEFAULT_READ_TIMEOUT) (408): only when
    /// something other than the verifying middleware gave the handler a body still coming
    /// from the network.
    Timeout,
    /// The verified body does not fit the type (422). The answer, `Display` and `Debug`
    /// say where and how, never the offending value.
    Json(serde_json::Error),
}

impl WebhookRejection {
    /// The problem this rejection answers with.
    pub(crate) fn problem(&self) -> Problem {
        match self {
            Self::NotVerified => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "not-verified", "Webhook was not verified")
            }
            Self::Body => known::BODY_ERROR,
            Self::TooLarge => known::BODY_TOO_LARGE,
            Self::Timeout => known::BODY_TIMEOUT,
            Self::Json(e) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable-body", "Body does not fit")
                    .detail(crate::problem::json_detail(e))
            }
        }
    }
}

impl From<crate::layer::body::Unread> for WebhookRejection {
    fn from(unread: crate::layer::body::Unread) -> Self {
        match unread {
            crate::layer::body::Unread::TooLarge => Self::TooLarge,
            crate::layer::body::Unread::Timeout => Self::Timeout,
            crate::layer::body::Unread::Failed => Self::Body,
        }
    }
}

impl fmt::Debug for WebhookRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotVerified => f.write_str("NotVerified"),
            Self::Body => f.write_str("Body"),
            Self::TooLarge => f.write_str("TooLarge"),
            Self::Timeout => f.write_str("Timeout"),
            // serde_json's own `Debug` and `Display` quote the value that did not fit (a
            // card number, say), and actix's `Logger` writes `{:?}` of error responses.
            Self::Json(e) => f.debug_tuple("Json").field(&crate::problem::json_detail(e)).finish(),
        }
    }
}

impl fmt::Display for WebhookRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotVerified => f.write_str("webhook was not verified"),
            Self::Body => f.write_str("body could not be read"),
            Self::TooLarge => f.write_str("body over the limit"),
            Self::Timeout => f.write_str("body not received in time"),
            Self::Json(e) => f.write_str(&crate::problem::json_detail(e)),
        }
    }
}

impl std::error::Error for WebhookRejection {}
