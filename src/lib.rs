//! Receive webhooks safely, and dully.
//!
//! hookguard proves a webhook genuine (HMAC, Ed25519, ECDSA or RSA signatures, shared
//! tokens), fresh (timestamp tolerance) and new (replay keys), for the providers that
//! send them: Standard Webhooks/Svix, Stripe, GitHub, Slack, Shopify, Twilio and more.
//!
//! The core ([`verify`]) is sans-IO and synchronous: give it the request's parts, the raw
//! body bytes and "now"; it answers [`Verified`](verify::Verified) or a
//! [`Rejection`](verify::Rejection) with a stable reason code. Provider presets
//! ([`providers`]) are built from the core's parts.
//!
//! ```
//! use hookguard::{providers::github, verify::{Scheme, WebhookRequest}};
//!
//! let scheme = github::scheme("It's a Secret to Everybody")?;
//! let req = http::Request::post("/hooks/github")
//!     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
//!     .body(b"Hello, World!".to_vec())?;
//! let verified = scheme.verify(&WebhookRequest::from_request(&req), time::OffsetDateTime::now_utc());
//! assert!(verified.is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! | feature | adds | default |
//! |---|---|---|
//! | `tower` | [`guard`], [`layer`], [`replay`], [`inbox`], [`worker`], [`handshake`], [`tenant`], [`problem`] | yes |
//! | `axum` | axum extractors (module `axum`) | no |
//! | `actix` | actix-web 4 middleware, terminal route and extractors over the same guard (module `actix`) | no |
//! | `sqlite` | the durable SQLite inbox (`inbox::SqliteInbox`) | no |
//! | `ed25519` | Ed25519 schemes: Standard Webhooks v1a, Discord | no |
//! | `ecdsa` | ECDSA P-256: SendGrid | no |
//! | `rsa` | RSA with an X.509 certificate: PayPal | no |
//! | `paypal-fetch` | PayPal certificates fetched from PayPal's HTTPS hosts, cached | no |
//! | `asymmetric` | `ed25519`, `ecdsa` and `rsa` | no |
//! | `redis` | `RedisReplayStore`, `RedisInbox` (Redis Streams) | no |
//! | `postgres` | `PostgresInbox` | no |
//! | `source-controls` | IP allow-lists and rate limits (`source`, `layer::{AllowListLayer, RateLimitLayer}`) | no |
//! | `full` | everything above | no |
//! | `cli` | the `hookguard` command (serve, verify, sign, send, inbox); not in `full` | no |
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate's own page links the modules of every feature (the table above); built
// without `tower`, those links have nothing to point at.
#![cfg_attr(not(feature = "tower"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "tower")]
#[macro_use]
mod macros;

#[doc(hidden)]
pub mod __fuzz;
#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;
pub mod clock;
mod error;
#[cfg(any(feature = "axum", feature = "actix"))]
pub mod extract;
#[cfg(feature = "tower")]
pub mod guard;
#[cfg(feature = "tower")]
pub mod handshake;
#[cfg(feature = "tower")]
pub mod inbox;
#[cfg(feature = "tower")]
pub mod layer;
#[cfg(feature = "paypal-fetch")]
pub mod paypal_fetch;
#[cfg(feature = "tower")]
pub mod problem;
pub mod providers;
#[cfg(feature = "tower")]
pub mod replay;
mod secret;
#[cfg(feature = "source-controls")]
pub mod source;
#[cfg(feature = "tower")]
pub mod tenant;
pub mod verify;
#[cfg(feature = "tower")]
pub mod worker;

pub use error::ConfigError;
pub use secret::Secret;

/// The README's Rust examples, compiled (and the one not marked `no_run` run) as doctests,
/// so that the front page cannot drift from the API.
#[cfg(all(doctest, feature = "axum", feature = "actix", feature = "source-controls"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
