//! axum extractors for requests that went through [`VerifyLayer`](crate::layer::VerifyLayer).
//!
//! - [`VerifiedWebhook`]: the [`Verified`] metadata and the raw body bytes: the ones the
//!   layer verified, even when a layer between it and the handler replaced the body.
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

use crate::{
    guard::{DEFAULT_BODY_LIMIT, DEFAULT_READ_TIMEOUT},
    verify::Verified,
};
use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    response::{IntoResponse, Response},
};

pub use crate::extract::WebhookRejection;

/// The rejection's problem response.
///
/// ```
/// use axum::response::IntoResponse as _;
/// use hookguard::axum::WebhookRejection;
/// assert_eq!(WebhookRejection::TooLarge.into_response().status(), 413);
/// ```
impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        if matches!(self, Self::NotVerified) {
            tracing::error!("VerifiedWebhook used on a route without VerifyLayer");
        }
        self.problem().into_response().map(axum::body::Body::from).into_response()
    }
}

/// The verified metadata and the raw body, exactly as
/// [`VerifyLayer`](crate::layer::VerifyLayer) received and verified it: the bytes it left
/// in the request's extensions (a reference count, not a copy), not the request's body,
/// which is not read. A layer between the middleware and the handler that replaced the body
/// (a decompression, a middleware that rebuilt it) or consumed it changes nothing here; a
/// handler that wants such a layer's output reads the body itself (axum's `Bytes`
/// extractor).
///
/// Without [`VerifyLayer`](crate::layer::VerifyLayer) in front, on a route whose
/// [`Verified`] the application's own middleware put in the extensions, it reads the body,
/// within [`DEFAULT_BODY_LIMIT`] and
/// [`DEFAULT_READ_TIMEOUT`]; on a route outside any verifying middleware it is
/// [`WebhookRejection::NotVerified`] (a `500` problem).
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
        // The bytes the verify layer verified, not the body: a layer in between may have
        // replaced it (a decompression, a middleware that rebuilt it) or consumed it.
        if let Some(bytes) = req.extensions().get::<crate::layer::VerifiedBytes>() {
            return Ok(Self { verified, body: bytes.0.clone() });
        }
        // No verify layer in front (the application's own layer put the `Verified` there):
        // the body, read within the guard's default limit (no guard's limit is known; not
        // axum's 2 MiB), and never without a timeout.
        let limit = DEFAULT_BODY_LIMIT;
        // Read as the verify layer reads bodies.
        let read = crate::layer::body::ReadLimited::new(req.into_body(), limit, DEFAULT_READ_TIMEOUT);
        let body = read.await.map_err(|unread| {
            if unread == crate::layer::body::Unread::TooLarge {
                tracing::warn!(
                    limit,
                    "webhook body over hookguard's default limit (no hookguard VerifyLayer read it)"
                );
            }
            WebhookRejection::from(unread)
        })?;
        Ok(Self { verified, body })
    }
}

/// The verified body deserialized as `T` (a `422` problem when it does not fit).
///
/// Unlike `axum::Json`, the `Content-Type` is not checked (the signature vouches for the
/// bytes, whatever the sender labelled them): a body that is not JSON (a form body from
/// Slack or Twilio) is a `422`, not a `415`. In middleware mode that `422` ends the
/// delivery's reservation, so the sender's retries reach the handler again.
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
