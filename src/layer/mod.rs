//! Tower services and layers over the [`Guard`](crate::guard::Guard) pipeline.
//!
//! - [`WebhookService`]: terminal. Verify, refuse replays, keep in the inbox, answer
//!   `202`; a [`Worker`](crate::worker::Worker) processes the inbox later.
//! - [`VerifyLayer`]: middleware. Verify and refuse replays, then call your handler with
//!   the verified bytes and a [`Verified`](crate::verify::Verified) extension. The replay
//!   mark is *reserved* while your handler runs (a copy meanwhile gets `409` +
//!   `Retry-After`) and *confirmed* once it answered with a success (`2xx`)
//!   ([`Guard::reserve`](crate::guard::Guard::reserve)).
//! - `AllowListLayer` and `RateLimitLayer` (feature `source-controls`): source controls in
//!   front of either, refusing before the body is read (see `hookguard::source`).
//!
//! `WebhookService` and `VerifyLayer` refuse an over-limit `Content-Length` before reading
//! (413), read the body with a hard cap (413, chunked bodies too) and a time limit (408),
//! and answer rejections with `application/problem+json`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use hookguard::{guard::Guard, inbox::MemoryInbox, layer::WebhookService, providers::stripe};
//! use axum::Router;
//!
//! let inbox = MemoryInbox::new();
//! let guard = Guard::builder("stripe", stripe::scheme("whsec_…").unwrap()).inbox(inbox.clone()).build();
//! let app: Router = Router::new().route_service("/hooks/stripe", WebhookService::new(guard));
//! # let _ = app;
//! # }
//! ```

/// Under axum's `Router::nest`, a nested router (and a layer on it) sees the path with the
/// prefix stripped; axum keeps the request's whole URI as `OriginalUri`. The guard needs
/// the whole one: some providers sign the URL, and tenant finders read path segments.
/// `None` when they are the same (no nesting), or outside axum.
#[cfg(feature = "axum")]
fn original_uri(parts: &http::request::Parts) -> Option<&http::Uri> {
    parts.extensions.get::<axum::extract::OriginalUri>().map(|o| &o.0).filter(|o| **o != parts.uri)
}

#[cfg(not(feature = "axum"))]
fn original_uri(_parts: &http::request::Parts) -> Option<&http::Uri> {
    None
}

mod accept;
pub(crate) mod body;
#[cfg(feature = "source-controls")]
pub(crate) mod source;
mod verify;

pub use accept::{AcceptFuture, WebhookService};
pub(crate) use body::read as read_body;
#[cfg(feature = "actix")]
pub(crate) use body::{Gather, Within};
#[cfg(feature = "source-controls")]
pub use source::{AllowListLayer, AllowListService, RateLimitLayer, RateLimitService, SourceFuture};
pub use verify::{Verify, VerifyFuture, VerifyLayer};

/// The longest path a span records: a request's path is the sender's to choose (up to
/// about 64 KiB with hyper), and every log line in the span would carry it.
const SPAN_PATH_MAX: usize = 256;

/// `path` for a span: its first [`SPAN_PATH_MAX`] bytes at most, cut at a character
/// boundary.
pub(crate) fn span_path(path: &str) -> &str {
    if path.len() <= SPAN_PATH_MAX {
        return path;
    }
    let mut end = SPAN_PATH_MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_path_is_cut_for_spans_at_a_character_boundary() {
        assert_eq!(super::span_path("/hooks/a"), "/hooks/a");
        let long = format!("/{}", "é".repeat(200));
        let cut = super::span_path(&long);
        assert!(cut.len() <= 256 && long.starts_with(cut) && cut.len() >= 250, "{}", cut.len());
    }
}
