//! Provider handshakes, wired into the [`Guard`](crate::guard::Guard): requests a provider
//! sends to set up or check an endpoint, answered instead of being handed off.
//!
//! | provider | when | handshake |
//! |---|---|---|
//! | Slack | verified POST, `type: url_verification` | [`SlackUrlVerification`] |
//! | Zoom | verified POST, `endpoint.url_validation` | [`ZoomUrlValidation`] |
//! | Twitch | verified POST, `webhook_callback_verification` | [`TwitchCallbackVerification`] |
//! | Discord | verified POST, PING (`type: 1`) | `DiscordPing` (feature `ed25519`) |
//! | Meta / WhatsApp | GET with `hub.challenge` | [`MetaSubscription`] |
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
    verify::{HmacScheme, Verified},
};

/// Slack's `url_verification`: answers the challenge (after verification; Slack signs it).
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
/// use hookguard::{handshake::ZoomUrlValidation, providers::zoom};
/// let handshake = ZoomUrlValidation::new(zoom::scheme("secret").unwrap());
/// # let _ = handshake;
/// ```
#[derive(Debug, Clone)]
pub struct ZoomUrlValidation(Arc<HmacScheme>);

impl ZoomUrlValidation {
    /// Answers with the MAC of `scheme`'s first secret.
    #[must_use]
    pub fn new(scheme: HmacScheme) -> Self {
        Self(Arc::new(scheme))
    }
}

impl Handshake for ZoomUrlValidation {
    fn after(&self, _parts: &Parts, body: &[u8], _verified: &Verified<'_>) -> Option<Response<Vec<u8>>> {
        providers::zoom::url_validation(&self.0, body)
    }
}

/// Twitch EventSub's `webhook_callback_verification`: answers the challenge. The message
/// is known by its signed body (a string `challenge`), not by the unsigned message-type
/// header: a verification message resent as a `notification` is answered again, never
/// handed off as an event.
#[derive(Debug, Clone, Copy, Default)]
pub struct TwitchCallbackVerification;

impl Handshake for TwitchCallbackVerification {
    fn after(&self, _parts: &Parts, body: &[u8], _verified: &Verified<'_>) -> Option<Response<Vec<u8>>> {
        providers::twitch::callback_verification(body)
    }
}

/// Discord's interaction PING: answers `{"type":1}`.
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
/// matches (compared in constant time).
///
/// ```
/// use hookguard::handshake::MetaSubscription;
/// let handshake = MetaSubscription::new("my-verify-token").unwrap();
/// # let _ = handshake;
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
        providers::meta::verify_subscription(&parts.method, &parts.uri, token).map(HandshakeReply::Respond)
    }
}

/// Dropbox's GET verification: echoes the `challenge` query parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct DropboxChallenge;

impl Handshake for DropboxChallenge {
    fn before(&self, parts: &Parts, _body: &[u8]) -> Option<HandshakeReply> {
        providers::dropbox::challenge(&parts.method, &parts.uri).map(HandshakeReply::Respond)
    }
}

/// Trello's HEAD request when a webhook is created: answers 200.
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
/// tenant just before you ask Asana to create the webhook. A fixed scheme keeps no
/// secret: every handshake is refused (`403 handshake-refused`), and the guard warns when
/// it is built.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsanaHookSecret;

impl Handshake for AsanaHookSecret {
    fn before(&self, parts: &Parts, _body: &[u8]) -> Option<HandshakeReply> {
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
