//! Provider handshakes, wired into the [`Guard`](crate::guard::Guard): requests a provider
//! sends to set up or check an endpoint, answered instead of being handed off.
//!
//! | provider | when | handshake |
//! |---|---|---|
//! | Slack | verified POST, `type: url_verification` | [`SlackUrlVerification`] |
//! | Zoom | verified POST, `endpoint.url_validation` | [`ZoomUrlValidation`] |
//! | Twitch | verified POST, `webhook_callback_verification` | [`TwitchCallbackVerification`] |
//! | Discord | verified POST, PING (`type: 1`) | `DiscordPing` (feature `ed25519`) |
//! | Meta / WhatsApp | GET with `hub.mode` (echoes `hub.challenge`) | [`MetaSubscription`] |
//! | Dropbox | GET with `challenge` | [`DropboxChallenge`] |
//! | Trello | HEAD when the hook is created | [`TrelloHead`] |
//! | Asana | POST with `X-Hook-Secret` | [`AsanaHookSecret`] |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use hookguard::{guard::Guard, handshake::TrelloHead, providers::trello};
//!
//! let scheme = trello::scheme("app-secret", "https://example.com/hooks/trello").unwrap();
//! let guard = Guard::builder("trello", scheme).handshake(TrelloHead).build();
//! let (parts, ()) = http::Request::head("/hooks/trello").body(()).unwrap().into_parts();
//! assert_eq!(guard.accept(&parts, bytes::Bytes::new()).await.status(), 200);
//! # }
//! ```

use std::sync::Arc;

use http::{Response, request::Parts};

use crate::{
    Secret,
    guard::{Handshake, HandshakeReply},
    providers,
    verify::{HmacScheme, Verified, WebhookRequest},
};

/// Slack's `url_verification`: answers the challenge (after verification; Slack signs it).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{clock::ManualClock, guard::Guard, handshake::SlackUrlVerification, providers::slack};
/// use hookguard::verify::{Outgoing, Sign};
///
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let scheme = slack::scheme("8f742231b10e8888abcd99yyyzzz85a5").unwrap();
/// let guard = Guard::builder("slack", scheme.clone()).handshake(SlackUrlVerification).clock(clock.clone()).build();
/// let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
/// let mut req = http::Request::post("/hooks/slack");
/// for (name, value) in scheme.sign(&Outgoing::new(body).timestamp(clock.now_for_tests())).unwrap() {
///     req = req.header(name, value);
/// }
/// let (parts, ()) = req.body(()).unwrap().into_parts();
/// let res = guard.accept(&parts, bytes::Bytes::from_static(body)).await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.body(), br#"{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#);
///
/// // Unsigned, the same body is refused: the challenge is answered only once verified.
/// let (unsigned, ()) = http::Request::post("/hooks/slack").body(()).unwrap().into_parts();
/// assert_eq!(guard.accept(&unsigned, bytes::Bytes::from_static(body)).await.status(), 401);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SlackUrlVerification;

impl Handshake for SlackUrlVerification {
    fn after(&self, _parts: &Parts, body: &[u8], _verified: &Verified<'_>) -> Option<Response<Vec<u8>>> {
        providers::slack::url_verification(body)
    }
}

/// Zoom's `endpoint.url_validation`: answers `plainToken` and its HMAC under the secret.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{clock::ManualClock, guard::Guard, handshake::ZoomUrlValidation, providers::zoom};
/// use hookguard::verify::{Outgoing, Sign};
///
/// let clock = ManualClock::at_unix(1_654_503_849);
/// let scheme = zoom::scheme("zoom_secret").unwrap();
/// let guard = Guard::builder("zoom", scheme.clone())
///     .handshake(ZoomUrlValidation::new(scheme.clone()))
///     .clock(clock.clone())
///     .build();
/// let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
/// let mut req = http::Request::post("/hooks/zoom");
/// for (name, value) in scheme.sign(&Outgoing::new(body).timestamp(clock.now_for_tests())).unwrap() {
///     req = req.header(name, value);
/// }
/// let (parts, ()) = req.body(()).unwrap().into_parts();
/// let res = guard.accept(&parts, bytes::Bytes::from_static(body)).await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(
///     res.body(),
///     br#"{"plainToken":"qgg8vlvZRS6UYooatFL8Aw","encryptedToken":"46a324cfb7c2ec760e4cd561586a53aadb6fc7561eb8d626d6ee1b71d808b3c0"}"#
/// );
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ZoomUrlValidation(Arc<HmacScheme>);

impl ZoomUrlValidation {
    /// Answers with the MAC under the secret of `scheme` that verified the request (see
    /// [`zoom::url_validation`](providers::zoom::url_validation)); give it the secrets
    /// the guard verifies with. A validation request that verified under the guard's
    /// scheme but not under this one (a tenant's secret, with one handshake for all) is
    /// refused (`403`, `handshake-refused`).
    ///
    /// ```
    /// use hookguard::{guard::Handshake, handshake::ZoomUrlValidation, providers::zoom};
    /// use hookguard::verify::{Outgoing, Scheme, Sign, WebhookRequest};
    ///
    /// let at = time::OffsetDateTime::from_unix_timestamp(1_654_503_849).unwrap();
    /// let rotating = zoom::scheme("new_secret").unwrap().with_secret("zoom_secret").unwrap();
    /// let handshake = ZoomUrlValidation::new(rotating.clone());
    /// let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event":"endpoint.url_validation"}"#;
    /// // Signed with the secret being rotated out.
    /// let mut req = http::Request::post("/hooks/zoom");
    /// for (name, value) in zoom::scheme("zoom_secret").unwrap().sign(&Outgoing::new(body).timestamp(at)).unwrap() {
    ///     req = req.header(name, value);
    /// }
    /// let (parts, ()) = req.body(()).unwrap().into_parts();
    /// // What the guard passes on once the request verified.
    /// let verified = rotating.verify(&WebhookRequest::from_parts(&parts, body), at).unwrap();
    /// let answer = handshake.after(&parts, body, &verified).unwrap();
    /// // Keyed with the secret that verified it, not the first one.
    /// assert_eq!(
    ///     answer.body(),
    ///     br#"{"plainToken":"qgg8vlvZRS6UYooatFL8Aw","encryptedToken":"46a324cfb7c2ec760e4cd561586a53aadb6fc7561eb8d626d6ee1b71d808b3c0"}"#
    /// );
    /// // Signed with a secret this handshake does not hold (another tenant's): refused.
    /// let other = ZoomUrlValidation::new(zoom::scheme("other_tenant").unwrap());
    /// assert_eq!(other.after(&parts, body, &verified).unwrap().status(), 403);
    /// // Any other event is handed off.
    /// assert!(handshake.after(&parts, br#"{"event":"meeting.started"}"#, &verified).is_none());
    /// ```
    #[must_use]
    pub fn new(scheme: HmacScheme) -> Self {
        Self(Arc::new(scheme))
    }
}

impl Handshake for ZoomUrlValidation {
    fn after(&self, parts: &Parts, body: &[u8], verified: &Verified<'_>) -> Option<Response<Vec<u8>>> {
        // Verified again with this handshake's own scheme, at the request's own signed
        // time (the guard checked its window): the answer must be keyed with the secret
        // that verified the request, and the guard's scheme may be another (a tenant's).
        let request = WebhookRequest::from_parts(parts, body);
        let at = verified.timestamp().unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        match providers::zoom::url_validation(&self.0, &request, at)? {
            Ok(answer) => Some(answer),
            // The guard counts and logs it (a configuration mismatch: the request verified).
            Err(_) => {
                let mut refused = crate::problem::known::HANDSHAKE_REFUSED.into_response();
                refused.extensions_mut().insert(crate::guard::RefusedAfterVerification);
                Some(refused)
            }
        }
    }
}

/// Twitch EventSub's `webhook_callback_verification`: answers the challenge. The message
/// is known by its signed body (a string `challenge`), not by the unsigned message-type
/// header: a verification message resent as a `notification` is answered again, never
/// handed off as an event.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{clock::ManualClock, guard::Guard, handshake::TwitchCallbackVerification, inbox::MemoryInbox};
/// use hookguard::{providers::twitch, verify::{Outgoing, Sign}};
///
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let scheme = twitch::scheme("twitch_secret").unwrap();
/// let guard = Guard::builder("twitch", scheme.clone())
///     .handshake(TwitchCallbackVerification)
///     .inbox(MemoryInbox::new())
///     .clock(clock.clone())
///     .build();
/// let deliver = |id: &str, body: &'static [u8]| {
///     let mut req = http::Request::post("/hooks/twitch");
///     for (name, value) in scheme.sign(&Outgoing::new(body).id(id).timestamp(clock.now_for_tests())).unwrap() {
///         req = req.header(name, value);
///     }
///     (req.body(()).unwrap().into_parts().0, bytes::Bytes::from_static(body))
/// };
///
/// let (parts, body) = deliver("m-1", br#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"type":"channel.follow"}}"#);
/// let res = guard.accept(&parts, body).await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.body(), b"pogchamp-kappa-360noscope-vohiyo");
/// // A notification carries no challenge: it is kept for the worker.
/// let (parts, body) = deliver("m-2", br#"{"subscription":{"type":"channel.follow"},"event":{}}"#);
/// assert_eq!(guard.accept(&parts, body).await.status(), 202);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TwitchCallbackVerification;

impl Handshake for TwitchCallbackVerification {
    fn after(&self, _parts: &Parts, body: &[u8], _verified: &Verified<'_>) -> Option<Response<Vec<u8>>> {
        providers::twitch::callback_verification(body)
    }
}

/// Discord's interaction PING: answers `{"type":1}`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{clock::ManualClock, guard::Guard, handshake::DiscordPing, providers::discord};
///
/// let scheme = discord::scheme("c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6").unwrap();
/// // A second after Discord sent the PING below (the preset refuses it 72 hours later).
/// let clock = ManualClock::at_unix(1_657_322_079);
/// let guard = Guard::builder("discord", scheme).handshake(DiscordPing).clock(clock).build();
/// // A PING as Discord sent it.
/// let body = br#"{"application_id":"827290144020496384","id":"995105663481028770","token":"aW50ZXJhY3Rpb246OTk1MTA1NjYzNDgxMDI4NzcwOmlReEtWOXNxMTJWYXF4UlRkc2RyVEp0MDdDMlVyem1na0FTT21xNTZQNHR0MUlORDU1bmNCUTZZdTI5akJkb3FycjBuUDltNVp3VVVJbnA0UUkzMG13cVBGWE5qZFQyb1dkZEpqVVFEdmZEcGE2UHV5dFAyTE5rS2c2a2lZNDlx","type":1,"user":{"avatar":"27aeb42cc902f7d8712aa64ff15bfb7d","avatar_decoration":null,"discriminator":"6969","id":"170531778354741248","public_flags":576,"username":"miles"},"version":1}"#;
/// let (parts, ()) = http::Request::post("/interactions")
///     .header("x-signature-ed25519", "28b4ab5f09cce30c7f7f4ab4b47c311f0ce83dd8fec06d34e402c44d64223be5016f95339e64bdabcbd395e9147afe3f8cd024868330ab41014ae51b5573a009")
///     .header("x-signature-timestamp", "1657322078")
///     .body(())
///     .unwrap()
///     .into_parts();
/// let res = guard.accept(&parts, bytes::Bytes::from_static(body)).await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.body(), br#"{"type":1}"#);
/// # }
/// ```
#[cfg(feature = "ed25519")]
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscordPing;

#[cfg(feature = "ed25519")]
impl Handshake for DiscordPing {
    fn after(&self, _parts: &Parts, body: &[u8], _verified: &Verified<'_>) -> Option<Response<Vec<u8>>> {
        providers::discord::ping_response(body)
    }
}

/// Meta's subscription check: a GET echoing `hub.challenge` when `hub.verify_token`
/// matches (compared in constant time). A wrong token is refused like a forged signature
/// ([`HandshakeReply::Refuse`]: `403 handshake-refused`, counted, and spent from the
/// sender's failure budget where a rate limit keeps one). A challenge over
/// [`meta::MAX_CHALLENGE_LEN`](providers::meta::MAX_CHALLENGE_LEN) is answered `400`
/// with an empty body, as [`DropboxChallenge`] answers one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::Guard, handshake::MetaSubscription, providers::meta};
///
/// let guard = Guard::builder("meta", meta::scheme("app-secret").unwrap())
///     .handshake(MetaSubscription::new("my-verify-token").unwrap())
///     .build();
/// let get = |uri: &str| http::Request::get(uri).body(()).unwrap().into_parts().0;
/// let ok = get("/hooks/meta?hub.mode=subscribe&hub.verify_token=my-verify-token&hub.challenge=1158201444");
/// let res = guard.accept(&ok, bytes::Bytes::new()).await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.body(), b"1158201444");
/// let wrong = get("/hooks/meta?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1158201444");
/// let refused = guard.accept(&wrong, bytes::Bytes::new()).await;
/// assert_eq!(refused.status(), 403);
/// assert_eq!(refused.headers()["content-type"], "application/problem+json");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MetaSubscription {
    verify_token: Secret,
}

impl MetaSubscription {
    /// The verify token configured in the Meta app dashboard.
    ///
    /// # Errors
    /// [`ConfigError`](crate::ConfigError) for an empty or non-UTF-8 token.
    ///
    /// ```
    /// use hookguard::{guard::{Handshake, HandshakeReply}, handshake::MetaSubscription};
    ///
    /// assert!(MetaSubscription::new("").is_err());
    /// assert!(MetaSubscription::new([0xff, 0xfe]).is_err());
    /// let handshake = MetaSubscription::new("my-verify-token").unwrap();
    /// let uri = "/hooks/meta?hub.mode=subscribe&hub.verify_token=my-verify-token&hub.challenge=42";
    /// let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
    /// let Some(HandshakeReply::Respond(res)) = handshake.before(&parts, b"") else { panic!("a handshake") };
    /// assert_eq!(res.body(), b"42");
    /// ```
    pub fn new(verify_token: impl AsRef<[u8]>) -> Result<Self, crate::ConfigError> {
        let secret = Secret::new(verify_token.as_ref())?;
        std::str::from_utf8(secret.expose())
            .map_err(|_| crate::ConfigError::InvalidSecret("the verify token must be text"))?;
        Ok(Self { verify_token: secret })
    }
}

impl Handshake for MetaSubscription {
    fn before(&self, parts: &Parts, _body: &[u8]) -> Option<HandshakeReply> {
        let token = std::str::from_utf8(self.verify_token.expose()).ok()?;
        match providers::meta::verify_subscription(&parts.method, &parts.uri, token)? {
            // A wrong token (or a check without a challenge): refused as a guess, which a
            // rate limit counts against the sender's failure budget.
            res if res.status() == http::StatusCode::FORBIDDEN => Some(HandshakeReply::Refuse),
            res => Some(HandshakeReply::Respond(res)),
        }
    }
}

/// Dropbox's GET verification: echoes the `challenge` query parameter.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::Guard, handshake::DropboxChallenge, providers::dropbox};
///
/// let guard = Guard::builder("dropbox", dropbox::scheme("app-secret").unwrap()).handshake(DropboxChallenge).build();
/// let (parts, ()) = http::Request::get("/hooks/dropbox?challenge=Xr8vM2").body(()).unwrap().into_parts();
/// let res = guard.accept(&parts, bytes::Bytes::new()).await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.body(), b"Xr8vM2");
/// assert_eq!(res.headers()["x-content-type-options"], "nosniff");
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DropboxChallenge;

impl Handshake for DropboxChallenge {
    fn before(&self, parts: &Parts, _body: &[u8]) -> Option<HandshakeReply> {
        providers::dropbox::challenge(&parts.method, &parts.uri).map(HandshakeReply::Respond)
    }
}

/// Trello's HEAD request when a webhook is created: answers 200.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::{guard::Guard, handshake::TrelloHead, providers::trello};
///
/// let scheme = trello::scheme("app-secret", "https://example.com/hooks/trello").unwrap();
/// let guard = Guard::builder("trello", scheme).handshake(TrelloHead).build();
/// let (head, ()) = http::Request::head("/hooks/trello").body(()).unwrap().into_parts();
/// let res = guard.accept(&head, bytes::Bytes::new()).await;
/// assert_eq!(res.status(), 200);
/// assert!(res.body().is_empty());
/// // Only the HEAD: an unsigned POST is still refused.
/// let (post, ()) = http::Request::post("/hooks/trello").body(()).unwrap().into_parts();
/// assert_eq!(guard.accept(&post, bytes::Bytes::from_static(b"{}")).await.status(), 401);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TrelloHead;

impl Handshake for TrelloHead {
    fn before(&self, parts: &Parts, _body: &[u8]) -> Option<HandshakeReply> {
        providers::trello::head_response(&parts.method).map(HandshakeReply::Respond)
    }
}

/// Asana's `X-Hook-Secret`: the secret is kept through the guard's
/// [`SchemeSource`](crate::guard::SchemeSource) and echoed back. With
/// [`TenantSchemes`](crate::tenant::TenantSchemes) only for a tenant you registered that
/// has no secret yet (`404` for an unknown one, `403` when it has one): register the
/// tenant just before you ask Asana to create the webhook. The first handshake wins,
/// whoever sends it: name a tenant that awaits its handshake by an unguessable token
/// (`/hooks/{token}`, 128 bits or more) rather than a name anyone can guess, and check
/// that Asana reports the webhook created. A fixed scheme keeps no
/// secret: every handshake is refused (`403 handshake-refused`), and the guard warns when
/// it is built.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::{Arc, Mutex};
/// use hookguard::{guard::Guard, handshake::AsanaHookSecret, inbox::MemoryInbox, providers::asana};
/// use hookguard::{Secret, tenant::{AlreadyStored, TenantSchemes}, verify::{Outgoing, Sign}};
///
/// // Your database: "acme" is registered and awaits its handshake.
/// let db = Arc::new(Mutex::new(vec![("acme".to_owned(), None::<Secret>)]));
/// let (reader, writer) = (Arc::clone(&db), Arc::clone(&db));
/// let source = TenantSchemes::new(
///     TenantSchemes::path_segment(2),
///     move |tenant: String| {
///         let row = reader.lock().unwrap().iter().find(|(t, _)| *t == tenant).cloned();
///         async move { Ok::<_, std::io::Error>(row.map(|(_, secret)| secret.into_iter().collect())) }
///     },
///     |secrets: &[Secret]| Ok(Arc::new(asana::scheme(secrets[0].expose())?)),
/// )
/// .store(move |tenant: String, secret: Secret| {
///     // Insert if absent: a secret another replica's handshake stored first is kept,
///     // and this handshake refused (403) instead of echoing a secret not kept.
///     let stored = match writer.lock().unwrap().iter_mut().find(|(t, _)| *t == tenant) {
///         Some((_, slot @ None)) => {
///             *slot = Some(secret);
///             Ok(())
///         }
///         Some(_) => Err(std::io::Error::other(AlreadyStored)),
///         None => Err(std::io::Error::other("no such tenant")),
///     };
///     async move { stored }
/// });
/// let guard = Guard::builder_with_source("asana", source)
///     .handshake(AsanaHookSecret)
///     .inbox(MemoryInbox::new())
///     .build();
/// let hello = |secret: &str| {
///     http::Request::post("/hooks/acme").header("x-hook-secret", secret).body(()).unwrap().into_parts().0
/// };
///
/// // Asana's first POST hands the secret over: kept, and echoed back.
/// let res = guard.accept(&hello("b537207f20cbfa02357cf448134da559"), bytes::Bytes::new()).await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.headers()["x-hook-secret"], "b537207f20cbfa02357cf448134da559");
/// // Events signed with it are verified and kept.
/// let body = br#"{"events":[]}"#;
/// let (name, value) = asana::scheme("b537207f20cbfa02357cf448134da559").unwrap().sign(&Outgoing::new(body)).unwrap().remove(0);
/// let (event, ()) = http::Request::post("/hooks/acme").header(name, value).body(()).unwrap().into_parts();
/// assert_eq!(guard.accept(&event, bytes::Bytes::from_static(body)).await.status(), 202);
/// // A later handshake cannot replace the secret.
/// assert_eq!(guard.accept(&hello("5f0c1e2d3a4b69788796a5b4c3d2e1f0"), bytes::Bytes::new()).await.status(), 403);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AsanaHookSecret;

impl Handshake for AsanaHookSecret {
    fn before(&self, parts: &Parts, _body: &[u8]) -> Option<HandshakeReply> {
        // Asana sends its handshake as a POST; any other method is no handshake.
        if parts.method != http::Method::POST {
            return None;
        }
        providers::asana::handshake(&parts.headers)
            .map(|(secret, res)| HandshakeReply::AdoptSecret(secret, res))
    }
    fn hands_over_secret(&self) -> bool {
        true
    }
}

/// The handshake a provider needs that takes no configuration of its own, by provider
/// name; `None` for providers without one (or needing configuration: Zoom, Meta).
///
/// ```
/// assert!(hookguard::handshake::for_provider("slack").is_some());
/// assert!(hookguard::handshake::for_provider("github").is_none());
/// ```
#[must_use]
pub fn for_provider(name: &str) -> Option<Box<dyn Handshake>> {
    Some(match name {
        "slack" => Box::new(SlackUrlVerification),
        "twitch" => Box::new(TwitchCallbackVerification),
        #[cfg(feature = "ed25519")]
        "discord" => Box::new(DiscordPing),
        "dropbox" => Box::new(DropboxChallenge),
        "trello" => Box::new(TrelloHead),
        "asana" => Box::new(AsanaHookSecret),
        _ => return None,
    })
}

impl Handshake for Box<dyn Handshake> {
    fn before(&self, parts: &Parts, body: &[u8]) -> Option<HandshakeReply> {
        (**self).before(parts, body)
    }
    fn after(&self, parts: &Parts, body: &[u8], verified: &Verified<'_>) -> Option<Response<Vec<u8>>> {
        (**self).after(parts, body, verified)
    }
    fn hands_over_secret(&self) -> bool {
        (**self).hands_over_secret()
    }
}
