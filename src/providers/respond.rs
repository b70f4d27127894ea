//! Small helpers the handshake functions share: responses built without fallible
//! builders, and query-string lookups.

use std::borrow::Cow;

use http::{HeaderValue, Response, StatusCode, header};

/// A response with a status and an empty body.
pub(crate) fn status(status: StatusCode) -> Response<Vec<u8>> {
    let mut response = Response::new(Vec::new());
    *response.status_mut() = status;
    response
}

/// `200 OK` with `body` as `text/plain`, `X-Content-Type-Options: nosniff` and
/// `Cache-Control: no-store` (the body echoes text the sender chose; browsers must not
/// sniff it into HTML, and no cache may serve it to anyone else).
pub(crate) fn plain_text(body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The longest challenge a GET handshake echoes, in bytes (decoded): Dropbox's
/// [`MAX_CHALLENGE_LEN`](super::dropbox::MAX_CHALLENGE_LEN) and Meta's
/// [`MAX_CHALLENGE_LEN`](super::meta::MAX_CHALLENGE_LEN).
pub(crate) const MAX_CHALLENGE_LEN: usize = 256;

/// Echoes a GET handshake's `challenge` ([`plain_text`]), or `400 Bad Request` with an
/// empty body when it is over [`MAX_CHALLENGE_LEN`]: so that a receiver's URL cannot be
/// made to serve a page of someone else's text.
pub(crate) fn echo_challenge(challenge: Cow<'_, str>) -> Response<Vec<u8>> {
    if challenge.len() > MAX_CHALLENGE_LEN {
        return status(StatusCode::BAD_REQUEST);
    }
    plain_text(challenge.into_owned())
}

/// The first value of query parameter `name` (percent- and `+`-decoded), if any.
pub(crate) fn query_param<'a>(uri: &'a http::Uri, name: &str) -> Option<Cow<'a, str>> {
    form_urlencoded::parse(uri.query()?.as_bytes()).find_map(|(k, v)| (k == name).then_some(v))
}

/// The JSON string at `path` (object keys from the root) of `body`, unescaped; `None`
/// when the body is not a JSON object holding a string there (a number, an object, an
/// array or a missing key). A duplicated key resolves to its first occurrence. The
/// handshakes read their bodies with this one reader.
pub(crate) fn json_string<'a>(body: &'a [u8], path: &[&str]) -> Option<Cow<'a, str>> {
    let raw = crate::verify::json::lookup(body, path).ok()??;
    if !raw.starts_with('"') {
        return None;
    }
    crate::verify::json::scalar_text(raw)
}

/// Constant-time equality of two tokens of any lengths: their SHA-256 digests are
/// compared, so neither the content nor the length leaks through timing.
pub(crate) fn tokens_match(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest as _, Sha256};
    use subtle::ConstantTimeEq as _;
    bool::from(Sha256::digest(a).as_slice().ct_eq(Sha256::digest(b).as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_lookup() {
        let uri: http::Uri = "/h?hub.mode=subscribe&hub.challenge=a%20b+c&x=1&x=2".parse().unwrap();
        assert_eq!(query_param(&uri, "hub.challenge").as_deref(), Some("a b c"));
        assert_eq!(query_param(&uri, "x").as_deref(), Some("1"));
        assert_eq!(query_param(&uri, "missing"), None);
        assert_eq!(query_param(&"/h".parse().unwrap(), "x"), None);
    }

    #[test]
    fn token_equality() {
        assert!(tokens_match(b"abc", b"abc"));
        assert!(!tokens_match(b"abc", b"abd"));
        assert!(!tokens_match(b"abc", b"abcd"));
        assert!(!tokens_match(b"", b"x"));
    }
}
