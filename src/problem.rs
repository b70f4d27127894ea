//! RFC 9457 `application/problem+json` answers, with a stable `type` per reason and
//! nothing secret in them.
//!
//! Every refusal the [`Guard`](crate::guard::Guard) answers is one: a verification
//! failure names its [`Reason`](crate::verify::Reason)'s code in `type`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use hookguard::{guard::Guard, problem::TYPE_BASE, providers::github};
//!
//! let guard = Guard::builder("github", github::scheme("s3cr3t").unwrap()).build();
//! let (parts, ()) = http::Request::post("/").body(()).unwrap().into_parts();
//! let res = guard.accept(&parts, "{}".into()).await;
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! let problem: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
//! assert_eq!(problem["type"], format!("{TYPE_BASE}missing-signature"));
//! assert_eq!(problem["status"], 401);
//! # }
//! ```

use http::{HeaderValue, Response, StatusCode, header};

use crate::verify::Rejection;

/// Where problem `type` URIs point; each reason's code is appended.
///
/// ```
/// use hookguard::problem::{Problem, TYPE_BASE};
/// let json = Problem::new(http::StatusCode::CONFLICT, "pending", "Pending").to_json();
/// assert!(json.contains(&format!("{TYPE_BASE}pending")));
/// ```
pub const TYPE_BASE: &str = "https://hookguard.dev/problems/";

/// A problem answer: status, stable code, title, optional safe detail, optional
/// `Retry-After`.
///
/// ```
/// use hookguard::problem::Problem;
/// use http::StatusCode;
///
/// let res = Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "Body too large").into_response();
/// assert_eq!(res.status(), 413);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
/// assert_eq!(body["type"], "https://hookguard.dev/problems/body-too-large");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: Option<String>,
    retry_after: Option<u64>,
}

impl Problem {
    /// A problem with no detail.
    ///
    /// ```
    /// use hookguard::problem::Problem;
    /// const GONE: Problem = Problem::new(http::StatusCode::GONE, "endpoint-gone", "Endpoint gone");
    /// assert_eq!((GONE.status(), GONE.code()), (http::StatusCode::GONE, "endpoint-gone"));
    /// ```
    #[must_use]
    pub const fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        Self { status, code, title, detail: None, retry_after: None }
    }

    /// The problem for a verification rejection, with `status` (the reason's default
    /// unless configured otherwise).
    ///
    /// ```
    /// use hookguard::{problem::Problem, verify::{Reason, Rejection}};
    /// let p = Problem::from_rejection(&Rejection::new(Reason::SignatureMismatch), None);
    /// assert_eq!(p.status(), 401);
    /// assert_eq!(p.code(), "signature-mismatch");
    /// ```
    #[must_use]
    pub fn from_rejection(rejection: &Rejection, status: Option<StatusCode>) -> Self {
        let reason = rejection.reason();
        Self {
            status: status.unwrap_or_else(|| rejection.status()),
            code: reason.code(),
            title: reason.title(),
            detail: Some(rejection.public_detail()),
            retry_after: None,
        }
    }

    /// Adds a safe, human detail.
    ///
    /// ```
    /// use hookguard::problem::Problem;
    /// let p = Problem::new(http::StatusCode::BAD_REQUEST, "bad", "Bad").detail("the `type` member is missing");
    /// assert!(p.to_json().contains("the `type` member is missing"));
    /// ```
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds `Retry-After` (seconds).
    ///
    /// ```
    /// use hookguard::problem::Problem;
    /// let res = Problem::new(http::StatusCode::SERVICE_UNAVAILABLE, "inbox-full", "Inbox full").retry_after(30).into_response();
    /// assert_eq!(res.headers()["retry-after"], "30");
    /// ```
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The same problem with another status (a configured one).
    #[must_use]
    pub(crate) const fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The status.
    ///
    /// ```
    /// use hookguard::{problem::Problem, verify::{Reason, Rejection}};
    /// let p = Problem::from_rejection(&Rejection::new(Reason::MissingUrl), None);
    /// assert_eq!(p.status(), 400);
    /// ```
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code (last segment of `type`).
    ///
    /// ```
    /// use hookguard::{problem::Problem, verify::{Reason, Rejection}};
    /// let p = Problem::from_rejection(&Rejection::new(Reason::TimestampTooOld), None);
    /// assert_eq!(p.code(), "timestamp-too-old");
    /// ```
    #[must_use]
    pub const fn code(&self) -> &'static str {
        self.code
    }

    /// The JSON body.
    ///
    /// ```
    /// use hookguard::problem::Problem;
    /// let json: serde_json::Value = serde_json::from_str(&Problem::new(http::StatusCode::GONE, "gone", "Gone").to_json()).unwrap();
    /// assert_eq!((json["status"].as_u64(), json["title"].as_str()), (Some(410), Some("Gone")));
    /// assert!(json.get("detail").is_none());
    /// ```
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut body = serde_json::json!({
            "type": format!("{TYPE_BASE}{}", self.code),
            "title": self.title,
            "status": self.status.as_u16(),
        });
        if let Some(detail) = &self.detail {
            body["detail"] = serde_json::Value::String(detail.clone());
        }
        body.to_string()
    }

    /// The HTTP answer.
    ///
    /// ```
    /// use hookguard::problem::Problem;
    /// let res = Problem::new(http::StatusCode::GONE, "gone", "Gone").into_response();
    /// assert_eq!(res.status(), 410);
    /// assert_eq!(res.headers()["content-type"], "application/problem+json");
    /// ```
    #[must_use]
    pub fn into_response(self) -> Response<Vec<u8>> {
        let mut res = Response::new(self.to_json().into_bytes());
        *res.status_mut() = self.status;
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// The fixed problems of the HTTP pipeline.
pub(crate) mod known {
    use super::Problem;
    use http::StatusCode;

    pub(crate) const BODY_TOO_LARGE: Problem =
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "Body too large");
    pub(crate) const HEADERS_TOO_LARGE: Problem = Problem::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers-too-large",
        "Request headers too large",
    );
    pub(crate) const BODY_TIMEOUT: Problem =
        Problem::new(StatusCode::REQUEST_TIMEOUT, "body-timeout", "Body not received in time");
    pub(crate) const BODY_ERROR: Problem =
        Problem::new(StatusCode::BAD_REQUEST, "body-error", "Body could not be read");
    pub(crate) const INBOX_FULL: Problem =
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "inbox-unavailable", "Inbox full or unavailable");
    pub(crate) const REPLAY_UNAVAILABLE: Problem = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "replay-store-unavailable",
        "Replay store full or unavailable",
    );
    /// Middleware mode: another request holds the delivery's reservation (its handler is
    /// running, or its receiver died and the lease has not run out). Retryable.
    pub(crate) const IN_PROGRESS: Problem =
        Problem::new(StatusCode::CONFLICT, "delivery-in-progress", "Delivery is being handled; retry later");
    pub(crate) const SECRETS_UNAVAILABLE: Problem = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "secrets-unavailable",
        "Secrets could not be looked up",
    );
    pub(crate) const HANDSHAKE_REFUSED: Problem =
        Problem::new(StatusCode::FORBIDDEN, "handshake-refused", "Handshake refused");
    pub(crate) const UNKNOWN_TENANT: Problem =
        Problem::new(StatusCode::NOT_FOUND, "unknown-endpoint", "No webhook endpoint here");
}

/// What is wrong with a body that does not fit a type, without quoting it: serde_json's
/// own message repeats the offending value (`invalid type: string "4111 …"`), which an
/// answer or a log line must not carry.
#[cfg(any(feature = "axum", feature = "actix"))]
pub(crate) fn json_detail(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "could not be read",
        Category::Syntax => "is not valid JSON",
        Category::Data => "does not fit the expected type",
        Category::Eof => "ends too early",
    };
    format!("body {what} (line {}, column {})", e.line(), e.column())
}
