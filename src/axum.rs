//! axum extractors for requests that went through [`VerifyLayer`](crate::layer::VerifyLayer).
//!
//! - [`VerifiedWebhook`]: the [`Verified`] metadata and the raw body bytes.
//! - [`VerifiedJson<T>`]: the body as `T`; a body that does not fit is a `422` problem
//!   (the signature having already passed).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{Router, routing::post};
//! use hookguard::{axum::VerifiedJson, guard::Guard, layer::VerifyLayer, providers::github};
//! use tower::ServiceExt as _;
//!
//! #[derive(serde::Deserialize)]
//! struct Push { r#ref: String }
//!
//! let guard = Guard::builder("github", github::scheme("It's a Secret to Everybody").unwrap()).build();
//! let app = Router::new()
//!     .route("/hooks/github", post(|VerifiedJson(push): VerifiedJson<Push>| async move { push.r#ref }))
//!     .layer(VerifyLayer::new(guard));
//! let body = r#"{"ref":"refs/heads/main"}"#;
//! let sig = "sha256=9d76ad5a4a6bb4f3ad4d45d7c2dd0a6e8e8e4b0d4f2e1b8f1f0fa6f57a0c2f4e"; // not the right one
//! let req = http::Request::post("/hooks/github").header("x-hub-signature-256", sig).body(axum::body::Body::from(body)).unwrap();
//! assert_eq!(app.oneshot(req).await.unwrap().status(), 401);
//! # }
//! ```

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    response::{IntoResponse, Response},
};
use http::StatusCode;

use crate::{
    guard::{BodyLimit, DEFAULT_READ_TIMEOUT},
    problem::Problem,
    verify::Verified,
};

/// Why an extractor could not give its value. Its answer, `Display` and `Debug` never
/// quote the body.
///
/// ```
/// use axum::response::IntoResponse as _;
/// use hookguard::axum::WebhookRejection;
///
/// #[derive(Debug, serde::Deserialize)]
/// struct Order { amount: u32 }
///
/// let e = serde_json::from_str::<Order>(r#"{"amount":"4111 1111 1111 1111"}"#).unwrap_err();
/// let rejection = WebhookRejection::Json(e);
/// assert_eq!(rejection.to_string(), "body does not fit the expected type (line 1, column 31)");
/// assert!(!format!("{rejection:?}").contains("4111"));
/// assert_eq!(rejection.into_response().status(), 422);
/// ```
#[non_exhaustive]
pub enum WebhookRejection {
    /// The route is not behind a [`VerifyLayer`](crate::layer::VerifyLayer) (a server
    /// bug: 500).
    NotVerified,
    /// The body could not be read (400).
    Body,
    /// The body is over the guard's limit (413): a layer between
    /// [`VerifyLayer`](crate::layer::VerifyLayer) and the handler (a decompression, say)
    /// replaced the bytes that were verified. With no guard's limit known (the
    /// application's own layer put the [`Verified`] there), over [`DEFAULT_BODY_LIMIT`](crate::guard::DEFAULT_BODY_LIMIT).
    TooLarge,
    /// The body did not arrive within [`DEFAULT_READ_TIMEOUT`] (408): only possible when
    /// something other than [`VerifyLayer`](crate::layer::VerifyLayer) gave the handler a
    /// body still coming from the network.
    Timeout,
    /// The verified body does not fit the type (422). The answer, `Display` and `Debug`
    /// say where and how, never the offending value.
    Json(serde_json::Error),
}

impl std::fmt::Debug for WebhookRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotVerified => f.write_str("NotVerified"),
            Self::Body => f.write_str("Body"),
            Self::TooLarge => f.write_str("TooLarge"),
            Self::Timeout => f.write_str("Timeout"),
            // serde_json's own `Debug` and `Display` quote the value that did not fit (a
            // card number, say).
            Self::Json(e) => f.debug_tuple("Json").field(&crate::problem::json_detail(e)).finish(),
        }
    }
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::NotVerified => {
                tracing::error!("VerifiedWebhook used on a route without VerifyLayer");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "not-verified", "Webhook was not verified")
            }
            Self::Body => Problem::new(StatusCode::BAD_REQUEST, "body-error", "Body could not be read"),
            Self::TooLarge => crate::problem::known::BODY_TOO_LARGE,
            Self::Timeout => crate::problem::known::BODY_TIMEOUT,
            Self::Json(e) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable-body", "Body does not fit")
                    .detail(crate::problem::json_detail(&e))
            }
        };
        problem.into_response().map(axum::body::Body::from).into_response()
    }
}

impl std::fmt::Display for WebhookRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

/// The verified metadata and the raw body, exactly as received.
///
/// Its `Debug` prints the body's length, not the body (a `Debug` line may end up in a log,
/// and payloads may hold personal data).
///
/// ```
/// use hookguard::axum::VerifiedWebhook;
/// async fn handler(hook: VerifiedWebhook) -> String {
///     format!("{} sent {} bytes", hook.verified.provider(), hook.body.len())
/// }
/// # let _ = axum::routing::post::<_, _, ()>(handler);
/// ```
#[derive(Clone)]
pub struct VerifiedWebhook {
    /// What verification proved.
    pub verified: Verified<'static>,
    /// The raw body.
    pub body: Bytes,
}

impl std::fmt::Debug for VerifiedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedWebhook")
            .field("verified", &self.verified)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl<S: Send + Sync> FromRequest<S> for VerifiedWebhook {
    type Rejection = WebhookRejection;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let verified =
            req.extensions().get::<Verified<'static>>().cloned().ok_or(WebhookRejection::NotVerified)?;
        // The verify layer read the body within the guard's limit and put the bytes back;
        // read again within the same limit (not axum's default 2 MiB, which would refuse
        // what the guard allows), in case a layer in between replaced them. Without one
        // (the application's own layer put the `Verified` there), within the guard's
        // default; and never without a timeout (bytes put back take none of it).
        let known = req.extensions().get::<BodyLimit>().copied();
        let limit = BodyLimit::of(known);
        let read = axum::body::to_bytes(req.into_body(), limit);
        let body = match crate::layer::body::Within::new(DEFAULT_READ_TIMEOUT, read).await {
            None => return Err(WebhookRejection::Timeout),
            Some(Ok(body)) => body,
            Some(Err(e)) if crate::layer::body::over_a_limit(&e) => {
                if known.is_none() {
                    tracing::warn!(
                        limit,
                        "webhook body over hookguard's default limit (no hookguard VerifyLayer read it)"
                    );
                }
                return Err(WebhookRejection::TooLarge);
            }
            Some(Err(_)) => return Err(WebhookRejection::Body),
        };
        Ok(Self { verified, body })
    }
}

/// The verified body deserialized as `T` (a `422` problem when it does not fit).
///
/// ```
/// use hookguard::axum::VerifiedJson;
/// async fn handler(VerifiedJson(event): VerifiedJson<serde_json::Value>) -> String {
///     event["type"].to_string()
/// }
/// # let _ = axum::routing::post::<_, _, ()>(handler);
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedJson<T>(pub T);

impl<T, S> FromRequest<S> for VerifiedJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = WebhookRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let hook = VerifiedWebhook::from_request(req, state).await?;
        serde_json::from_slice(&hook.body).map(VerifiedJson).map_err(WebhookRejection::Json)
    }
}
