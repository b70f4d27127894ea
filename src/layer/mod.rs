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
//! and answer rejections with `application/problem+json`. Under axum's `Router::nest`,
//! they give the guard the whole path (which URL-signing providers and path tenant finders
//! need) only with the `axum` feature.
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
///
/// Read only with the `axum` feature (the core does not depend on axum for `tower`
/// users): without it, [`VerifyLayer`] and [`WebhookService`] under `Router::nest` see the
/// stripped path, and their docs say so.
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
#[cfg(feature = "actix")]
pub(crate) use body::ReadLimited;
pub(crate) use body::read as read_body;
#[cfg(feature = "source-controls")]
pub use source::{AllowListLayer, AllowListService, RateLimitLayer, RateLimitService, SourceFuture};
pub use verify::{Verify, VerifyFuture, VerifyLayer};

/// The bytes [`VerifyLayer`] verified, next to the [`Verified`](crate::verify::Verified)
/// it puts in the request's extensions: axum's extractors take them (a reference count,
/// not a copy) rather than the body, which a layer between the middleware and the handler
/// may have replaced (a decompression, a middleware that rebuilds the body) or consumed.
/// Crate-private: no one else can put it there (and a client cannot set extensions).
#[derive(Clone)]
#[cfg(feature = "axum")]
pub(crate) struct VerifiedBytes(pub(crate) bytes::Bytes);

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

/// The longest extension method a span records. A method is the sender's to choose too:
/// hyper takes a token as long as its head buffer (hundreds of KiB) and only then
/// refuses, so an unauthenticated request could put one that long in every log line.
const SPAN_METHOD_MAX: usize = 16;

/// `method` for a span: a standard method (and any method up to [`SPAN_METHOD_MAX`]
/// bytes) as it is, a longer one cut to its first [`SPAN_METHOD_MAX`] bytes (at a
/// character boundary, though methods are ASCII tokens).
pub(crate) fn span_method(method: &str) -> &str {
    if method.len() <= SPAN_METHOD_MAX {
        return method;
    }
    let mut end = SPAN_METHOD_MAX;
    while !method.is_char_boundary(end) {
        end -= 1;
    }
    &method[..end]
}

/// The `method` of each span opened while `f` runs (on this thread), for tests of what
/// spans record.
#[cfg(test)]
pub(crate) fn span_methods<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    struct Methods(Arc<Mutex<Vec<String>>>);
    struct Visit<'a>(&'a Mutex<Vec<String>>);
    impl tracing::field::Visit for Visit<'_> {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            if field.name() == "method" {
                self.0.lock().unwrap().push(value.to_owned());
            }
        }
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "method" {
                self.0.lock().unwrap().push(format!("{value:?}"));
            }
        }
    }
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Methods {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _id: &tracing::span::Id,
            _cx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            attrs.record(&mut Visit(&self.0));
        }
    }
    let methods = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Methods(Arc::clone(&methods)));
    let out = tracing::subscriber::with_default(subscriber, f);
    let methods = std::mem::take(&mut *methods.lock().unwrap());
    (out, methods)
}

#[cfg(test)]
mod tests {
    #[test]
    fn standard_methods_are_recorded_as_they_are_and_a_long_one_is_cut() {
        for method in [
            http::Method::GET,
            http::Method::POST,
            http::Method::PUT,
            http::Method::DELETE,
            http::Method::HEAD,
            http::Method::OPTIONS,
            http::Method::CONNECT,
            http::Method::PATCH,
            http::Method::TRACE,
        ] {
            assert_eq!(super::span_method(method.as_str()), method.as_str());
        }
        assert_eq!(super::span_method("PROPFIND"), "PROPFIND");
        // An extension method as long as hyper lets through: its first 16 bytes.
        let huge = http::Method::from_bytes(&vec![b'X'; 200 << 10]).unwrap();
        assert_eq!(super::span_method(huge.as_str()), "X".repeat(16));
        assert_eq!(super::span_method("ABCDEFGHIJKLMNOPQ"), "ABCDEFGHIJKLMNOP");
        // Not a token, but never a panic in the middle of a character.
        assert_eq!(super::span_method(&"é".repeat(20)), "é".repeat(8));
    }

    /// The Tower services' spans record a long extension method cut.
    #[tokio::test]
    async fn the_services_spans_record_a_long_method_cut() {
        use bytes::Bytes;
        use http_body_util::Full;
        use tower::Layer as _;

        use crate::{guard::Guard, inbox::MemoryInbox, providers::github};
        let guard =
            || Guard::builder("github", github::scheme("s3cr3t").unwrap()).inbox(MemoryInbox::new()).build();
        let method = http::Method::from_bytes(&[b'X'; 64 << 10]).unwrap();
        let req = || {
            http::Request::builder()
                .method(method.clone())
                .uri("/hooks/github")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap()
        };
        let handler = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
        });
        // Both are always ready; the span is opened in `call`.
        let (accepted, accept_spans) = super::span_methods(|| {
            tower_service::Service::call(&mut super::WebhookService::new(guard()), req())
        });
        let mut verify = super::VerifyLayer::new(guard()).layer(handler);
        let (verified, verify_spans) =
            super::span_methods(|| tower_service::Service::call(&mut verify, req()));
        for (name, answer, methods) in
            [("WebhookService", accepted.await, accept_spans), ("VerifyLayer", verified.await, verify_spans)]
        {
            assert_eq!(answer.unwrap().status(), 401, "{name}");
            assert_eq!(methods, ["X".repeat(16)], "{name}");
        }
    }

    #[test]
    fn a_long_path_is_cut_for_spans_at_a_character_boundary() {
        assert_eq!(super::span_path("/hooks/a"), "/hooks/a");
        let long = format!("/{}", "é".repeat(200));
        let cut = super::span_path(&long);
        assert!(cut.len() <= 256 && long.starts_with(cut) && cut.len() >= 250, "{}", cut.len());
    }
}
