//! `hookguard.toml`: what `hookguard serve` reads. Every problem is reported as
//! `FILE:LINE:COL: what is wrong`, before anything listens.
//!
//! Relative paths in the file (secret files, certificates, `append_to`, TLS files, SQLite
//! databases) are relative to the folder holding the configuration file.

use std::{
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use hookguard::{
    guard::Handshake,
    handshake,
    providers::Preset,
    source::{AllowList, ForwardedHeader, SourceLimiter, TrustedProxies},
    verify::Scheme as _,
};
use serde::Deserialize;
use toml::Spanned;

use crate::common::{self, SchemeOptions, redacted};

/// Paths the server answers itself.
pub(crate) const RESERVED_PATHS: &[&str] = &["/healthz", "/metrics"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    replay: RawBackend,
    #[serde(default)]
    inbox: RawBackend,
    #[serde(default)]
    worker: RawWorker,
    #[serde(default)]
    endpoint: Vec<Spanned<RawEndpoint>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen")]
    listen: Spanned<String>,
    tls: Option<RawTls>,
    #[serde(default = "default_grace")]
    shutdown_grace_secs: u64,
    /// The most a client may take to send a request's head.
    #[serde(default = "default_header_read_timeout")]
    header_read_timeout_secs: Spanned<u64>,
    #[serde(default = "yes")]
    metrics: bool,
    /// Proxies whose `X-Forwarded-For` (or `Forwarded`) is believed.
    trusted_proxies: Option<Spanned<Vec<String>>>,
    /// `x-forwarded-for` (default) or `forwarded`.
    forwarded_header: Option<Spanned<String>>,
    /// The most connections served at once; more wait in the system's backlog.
    #[serde(default = "default_max_connections")]
    max_connections: Spanned<usize>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls: None,
            shutdown_grace_secs: default_grace(),
            header_read_timeout_secs: default_header_read_timeout(),
            metrics: true,
            trusted_proxies: None,
            forwarded_header: None,
            max_connections: default_max_connections(),
        }
    }
}

/// `rate_limit = { requests = 100, per_secs = 10, failures = 10, failures_per_secs = 600 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    requests: u32,
    per_secs: u64,
    failures: Option<u32>,
    failures_per_secs: Option<u64>,
    max_addresses: Option<usize>,
}

fn default_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:8080".to_owned())
}
fn default_grace() -> u64 {
    10
}
fn default_header_read_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}
fn default_max_connections() -> Spanned<usize> {
    Spanned::new(0..0, DEFAULT_MAX_CONNECTIONS)
}

/// `[server] max_connections` when not given. With the default body limit (1 MiB) the
/// bodies being read take at most 1 GiB.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The most `[server] max_connections` may ask for: far more than a process has open
/// files for, and within what a semaphore counts.
const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// The longest `[server] header_read_timeout_secs`, an hour: a head takes a client
/// milliseconds, and a connection held longer is most likely an attack.
const MAX_HEADER_READ_TIMEOUT_SECS: u64 = 3600;
fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<PathBuf>,
    key: Spanned<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    #[serde(default = "default_backend")]
    backend: Spanned<String>,
    capacity: Option<Spanned<usize>>,
    path: Option<Spanned<PathBuf>>,
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    /// `[inbox]` only: the file dead letters are appended to (then discarded).
    dead_letters_to: Option<Spanned<PathBuf>>,
}

impl Default for RawBackend {
    fn default() -> Self {
        Self {
            backend: default_backend(),
            capacity: None,
            path: None,
            url: None,
            url_env: None,
            dead_letters_to: None,
        }
    }
}

fn default_backend() -> Spanned<String> {
    Spanned::new(0..0, "memory".to_owned())
}

/// The backends `backend` may name.
const BACKENDS: [&str; 4] = ["memory", "sqlite", "redis", "postgres"];

/// The URL as [`common::redact_url`] shows it, and `backend` only when it names a backend
/// (a user may have put the URL there).
impl std::fmt::Debug for RawBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { backend, capacity, path, url, url_env, dead_letters_to } = self;
        let backend = backend.get_ref().as_str();
        let backend: &dyn std::fmt::Debug =
            if BACKENDS.contains(&backend) { &backend } else { &redacted::Secret };
        f.debug_struct("RawBackend")
            .field("backend", backend)
            .field("capacity", &capacity.as_ref().map(Spanned::get_ref))
            .field("path", path)
            .field("url", &url.as_ref().map(|u| redacted::Url(u.get_ref())))
            .field("url_env", url_env)
            .field("dead_letters_to", dead_letters_to)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorker {
    /// How many handlers run at once: each is a long-lived task (a lane).
    #[serde(default = "default_concurrency")]
    pub(crate) concurrency: Spanned<usize>,
    #[serde(default = "default_attempts")]
    pub(crate) max_attempts: Spanned<u32>,
    #[serde(default = "default_backoff_base")]
    pub(crate) backoff_base_ms: Spanned<u64>,
    #[serde(default = "default_backoff_max")]
    pub(crate) backoff_max_secs: Spanned<u64>,
    /// How long a job is leased, which is also its handler's time limit.
    #[serde(default = "default_lease")]
    pub(crate) lease_secs: Spanned<u64>,
}

impl Default for RawWorker {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            max_attempts: default_attempts(),
            backoff_base_ms: default_backoff_base(),
            backoff_max_secs: default_backoff_max(),
            lease_secs: default_lease(),
        }
    }
}

fn default_concurrency() -> Spanned<usize> {
    Spanned::new(0..0, 4)
}
fn default_attempts() -> Spanned<u32> {
    Spanned::new(0..0, 8)
}
fn default_backoff_base() -> Spanned<u64> {
    Spanned::new(0..0, 500)
}
fn default_backoff_max() -> Spanned<u64> {
    Spanned::new(0..0, 300)
}
fn default_lease() -> Spanned<u64> {
    Spanned::new(0..0, 60)
}

/// A string or a list of strings (`secret_env = "NAME"` or `["NAME", "OLD_NAME"]`). A
/// value of another type is refused as "expected a string or a list of strings" (serde's
/// untagged enum said "data did not match any variant of untagged enum OneOrMany").
#[derive(Debug, Clone)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(value.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, value: String) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(value))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl OneOrMany {
    fn items(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    path: Spanned<String>,
    name: Option<Spanned<String>>,
    provider: Spanned<String>,
    secret: Option<Spanned<OneOrMany>>,
    secret_env: Option<Spanned<OneOrMany>>,
    secret_file: Option<Spanned<OneOrMany>>,
    secret_env_default: Option<Spanned<String>>,
    shared_key_env: Option<Spanned<OneOrMany>>,
    shared_key_file: Option<Spanned<OneOrMany>>,
    tolerance_secs: Option<Spanned<u64>>,
    body_limit: Option<Spanned<usize>>,
    url: Option<Spanned<String>>,
    public_origin: Option<Spanned<String>>,
    webhook_id: Option<Spanned<String>>,
    certificate_file: Option<Spanned<OneOrMany>>,
    verify_token: Option<Spanned<String>>,
    verify_token_env: Option<Spanned<String>>,
    #[serde(default = "yes")]
    handshake: bool,
    append_to: Option<Spanned<PathBuf>>,
    run: Option<Spanned<Vec<String>>>,
    forward_to: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<u64>>,
    allow: Option<Spanned<Vec<String>>>,
    allow_file: Option<Spanned<PathBuf>>,
    allow_reload_secs: Option<Spanned<u64>>,
    /// The allow-list names a provider's addresses, shared by all its customers.
    allow_shared: Option<Spanned<bool>>,
    rate_limit: Option<Spanned<RawRateLimit>>,
}

/// `allow_reload_secs` when not given.
const DEFAULT_ALLOW_RELOAD_SECS: u64 = 60;

/// Secrets (`secret`, `secret_env_default`, `verify_token`) are `[redacted]`; URLs
/// (`url`, `forward_to`) as [`common::redact_url`] shows them; of `run`, the program only,
/// as the logs show it.
impl std::fmt::Debug for RawEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            path,
            name,
            provider,
            secret,
            secret_env,
            secret_file,
            secret_env_default,
            shared_key_env,
            shared_key_file,
            tolerance_secs,
            body_limit,
            url,
            public_origin,
            webhook_id,
            certificate_file,
            verify_token,
            verify_token_env,
            handshake,
            append_to,
            run,
            forward_to,
            timeout_secs,
            allow,
            allow_file,
            allow_reload_secs,
            allow_shared,
            rate_limit,
        } = self;
        f.debug_struct("RawEndpoint")
            .field("path", path.get_ref())
            .field("name", &name.as_ref().map(Spanned::get_ref))
            .field("provider", provider.get_ref())
            .field("secret", &secret.as_ref().map(|s| redacted::List(s.get_ref().items().len())))
            .field("secret_env", &secret_env.as_ref().map(Spanned::get_ref))
            .field("secret_file", &secret_file.as_ref().map(Spanned::get_ref))
            .field("secret_env_default", &redacted::option(secret_env_default.as_ref()))
            .field("shared_key_env", &shared_key_env.as_ref().map(Spanned::get_ref))
            .field("shared_key_file", &shared_key_file.as_ref().map(Spanned::get_ref))
            .field("tolerance_secs", &tolerance_secs.as_ref().map(Spanned::get_ref))
            .field("body_limit", &body_limit.as_ref().map(Spanned::get_ref))
            .field("url", &url.as_ref().map(|u| redacted::Url(u.get_ref())))
            .field("public_origin", &public_origin.as_ref().map(Spanned::get_ref))
            .field("webhook_id", &webhook_id.as_ref().map(Spanned::get_ref))
            .field("certificate_file", &certificate_file.as_ref().map(Spanned::get_ref))
            .field("verify_token", &redacted::option(verify_token.as_ref()))
            .field("verify_token_env", &verify_token_env.as_ref().map(Spanned::get_ref))
            .field("handshake", handshake)
            .field("append_to", &append_to.as_ref().map(Spanned::get_ref))
            .field("run", &run.as_ref().map(|argv| Program(argv.get_ref())))
            .field("forward_to", &forward_to.as_ref().map(|u| redacted::Url(u.get_ref())))
            .field("timeout_secs", &timeout_secs.as_ref().map(Spanned::get_ref))
            .field("allow", &allow.as_ref().map(Spanned::get_ref))
            .field("allow_file", &allow_file.as_ref().map(Spanned::get_ref))
            .field("allow_reload_secs", &allow_reload_secs.as_ref().map(Spanned::get_ref))
            .field("allow_shared", &allow_shared.as_ref().map(Spanned::get_ref))
            .field("rate_limit", &rate_limit.as_ref().map(Spanned::get_ref))
            .finish()
    }
}

/// A `run` command as the logs show it: the program, and `[redacted]` for each argument
/// (one may be a token).
struct Program<'a>(&'a [String]);

impl std::fmt::Debug for Program<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.split_first() {
            Some((program, args)) => {
                f.debug_list().entry(program).entries(args.iter().map(|_| redacted::Secret)).finish()
            }
            None => f.debug_list().finish(),
        }
    }
}

/// `timeout_secs` when not given.
const DEFAULT_ACTION_TIMEOUT: u64 = 30;

/// The most lanes `[worker] concurrency` may ask for: each is a task of its own, and far
/// more than any machine runs handlers at once (a typo's billion would exhaust memory).
const MAX_CONCURRENCY: usize = 10_000;

/// The longest `[worker] lease_secs`, a year: the inboxes add the lease to the clock
/// (Redis and PostgreSQL in milliseconds), where a value near `u64::MAX` overflows, and no
/// handler needs longer. An endpoint's `timeout_secs` is below it, so bounded too.
const MAX_LEASE_SECS: u64 = 365 * 86_400;

/// The longest `allow_reload_secs`, a day: the reload timer adds the period to the clock
/// (tokio's interval panics past about 9.2e18 s), and a provider's published ranges
/// change more often than that.
const MAX_ALLOW_RELOAD_SECS: u64 = 86_400;

/// A replay store or inbox backend. `Debug` shows a URL as [`common::redact_url`] does.
///
/// Connections to Redis and PostgreSQL are not encrypted (the library connects with
/// `NoTls`, the redis crate is built without TLS: `rediss://` and `sslmode=require` fail):
/// the documentation says to use them on loopback, a private network or a TLS tunnel.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    Memory { capacity: Option<usize> },
    Sqlite { path: PathBuf, capacity: Option<usize> },
    Redis { url: String, capacity: Option<usize> },
    Postgres { url: String, capacity: Option<usize> },
}

impl Backend {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Memory { .. } => "memory",
            Self::Sqlite { .. } => "sqlite",
            Self::Redis { .. } => "redis",
            Self::Postgres { .. } => "postgres",
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory { capacity } => f.debug_struct("Memory").field("capacity", capacity).finish(),
            Self::Sqlite { path, capacity } => {
                f.debug_struct("Sqlite").field("path", path).field("capacity", capacity).finish()
            }
            Self::Redis { url, capacity } => {
                f.debug_struct("Redis").field("url", &redacted::Url(url)).field("capacity", capacity).finish()
            }
            Self::Postgres { url, capacity } => f
                .debug_struct("Postgres")
                .field("url", &redacted::Url(url))
                .field("capacity", capacity)
                .finish(),
        }
    }
}

/// What a processed webhook does. `Debug` shows a URL as [`common::redact_url`] does, and
/// of a command its program only.
#[derive(Clone)]
pub(crate) enum Action {
    /// Append one JSON line to this file: its folder's canonical path and its name, so
    /// that endpoints naming one file in different ways share its writer.
    AppendTo(PathBuf),
    /// Run this command with the body on stdin and the metadata in `HOOKGUARD_*`.
    Run { argv: Vec<String>, timeout: Duration },
    /// POST the body to this URL.
    Forward { url: String, timeout: Duration },
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AppendTo(path) => f.debug_tuple("AppendTo").field(path).finish(),
            Self::Run { argv, timeout } => {
                f.debug_struct("Run").field("argv", &Program(argv)).field("timeout", timeout).finish()
            }
            Self::Forward { url, timeout } => {
                f.debug_struct("Forward").field("url", &redacted::Url(url)).field("timeout", timeout).finish()
            }
        }
    }
}

/// Where an endpoint's scheme comes from.
pub(crate) enum Keys {
    /// The secrets the configuration gives.
    Configured(Box<dyn Preset>),
    /// Asana, awaiting its handshake: the secret it hands over is written to this file
    /// (which does not exist yet, or is empty).
    Handshake(PathBuf),
}

impl Keys {
    /// The provider's name.
    pub(crate) fn provider(&self) -> &str {
        match self {
            Self::Configured(scheme) => scheme.provider(),
            Self::Handshake(_) => "asana",
        }
    }
}

/// One endpoint, ready to serve.
pub(crate) struct Endpoint {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) keys: Keys,
    pub(crate) handshake: Option<Box<dyn Handshake>>,
    pub(crate) body_limit: Option<usize>,
    pub(crate) public_origin: Option<String>,
    pub(crate) action: Action,
    /// Addresses allowed to call, and how the list is reloaded from `allow_file`.
    pub(crate) allow: Option<(AllowList, Option<AllowReload>)>,
    /// Per-address rate limit with a failure budget.
    pub(crate) rate_limit: Option<SourceLimiter>,
    /// The demo secret in use (from `secret_env_default`), if any.
    pub(crate) demo_secret: Option<DemoSecret>,
}

/// An endpoint verifying with the demo secret of `secret_env_default`: none of its
/// `secret_env` variables is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DemoSecret {
    /// The variables to set.
    pub(crate) vars: Vec<String>,
    /// Where `secret_env_default` is: `FILE:LINE:COL`.
    pub(crate) at: String,
}

/// An endpoint's `allow_file`, reloaded while the server runs.
#[derive(Debug)]
pub(crate) struct AllowReload {
    /// The file of ranges.
    pub(crate) file: PathBuf,
    /// How often it is read again.
    pub(crate) every: Duration,
    /// The ranges listed in the configuration (`allow`), in force with the file's.
    pub(crate) listed: Vec<ipnet::IpNet>,
}

/// Reads `reload.file` ([`AllowList::read_file`]: at most 16 MiB, and a file with no range
/// is an error) and puts its ranges and the listed ones in force in `list`; on any error
/// the ranges in force stay. Returns how many ranges are in force. Blocking file I/O.
pub(crate) fn reload_allow(list: &AllowList, reload: &AllowReload) -> Result<usize, String> {
    let mut ranges =
        AllowList::read_file(&reload.file).map_err(|e| format!("{}: {e}", reload.file.display()))?;
    ranges.extend_from_slice(&reload.listed);
    list.replace(ranges);
    Ok(list.ranges().len())
}

/// The whole configuration, checked.
pub(crate) struct Config {
    pub(crate) listen: String,
    pub(crate) trusted_proxies: TrustedProxies,
    /// HTTPS: the rustls configuration, built from the files at load (a bad file is a
    /// configuration error, found by `--check` and before anything listens).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// The whole shutdown's time: connections, then workers, then the dead letters' last
    /// move, each get what is left of it.
    pub(crate) shutdown_grace: Duration,
    /// The most a client may take to send a request's head.
    pub(crate) header_read_timeout: Duration,
    /// The most connections served at once (more wait in the system's backlog).
    pub(crate) max_connections: usize,
    pub(crate) metrics: bool,
    /// `[replay]`: accepted (an older file may have it) and checked, but not used (its
    /// `url_env` is not read: a URL read from it would be empty).
    pub(crate) replay: Backend,
    pub(crate) inbox: Backend,
    /// Where `[inbox] backend` is (`FILE:LINE:COL`), for what is checked after parsing.
    pub(crate) inbox_at: String,
    /// `[inbox] dead_letters_to`: its folder's canonical path and its name.
    pub(crate) dead_letters_to: Option<PathBuf>,
    pub(crate) worker: RawWorker,
    pub(crate) endpoints: Vec<Endpoint>,
    /// The environment variables the file names for secrets, tokens and URLs
    /// (`secret_env`, `shared_key_env`, `verify_token_env`, `url_env`), set or not: kept
    /// out of `run` commands' environments.
    pub(crate) secret_vars: Vec<String>,
    /// Warnings about files of secrets that other users can read (`FILE:LINE:COL: …`):
    /// served all the same, and printed to stderr.
    pub(crate) warnings: Vec<String>,
}

impl Config {
    /// What to tell the user when the file sets `[replay]`: nothing uses it any more (the
    /// endpoints are terminal, and there the inbox's unique key refuses replays).
    pub(crate) fn unused_replay_note(&self) -> Option<&'static str> {
        (self.replay != Backend::Memory { capacity: None }).then_some(
            "[replay] is not used: the endpoints refuse replays by the inbox's unique key \
             (a copy of a kept or processed delivery gets `200 duplicate`); remove the section",
        )
    }
}

/// The configuration file's text.
fn read_text(path: &Path) -> Result<String, String> {
    let bytes = common::read_limited(path, common::FILE_LIMIT)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{}: cannot read: it is not UTF-8 text", path.display()))
}

/// Reads the configuration at `path` for its `[inbox]` alone (`hookguard inbox`): the
/// endpoints' secrets need not be set. The backend must be durable and built.
pub(crate) fn load_inbox(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Backend, String> {
    let text = read_text(path)?;
    let src = Source { file: path, text: &text };
    let raw = raw_file(&src)?;
    let at = src.place(raw.inbox.backend.span());
    let inbox = backend(&src, raw.inbox, env, "inbox")?;
    if let Some(feature) = missing_feature(inbox.name()) {
        return Err(format!("{at}: [inbox] {}", not_built(inbox.name(), feature)));
    }
    if inbox.name() == "memory" {
        return Err(format!(
            "{at}: [inbox] the memory inbox lives in the server's process, and its dead letters with it: \
             set [inbox] dead_letters_to to have the server write them to a file"
        ));
    }
    Ok(inbox)
}

/// Reads and checks the configuration at `path`, with environment variables from `env`.
pub(crate) fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
    let text = read_text(path)?;
    let config = parse(&text, path, env)?;
    // After parsing (which the tests run with any features): what this build can serve.
    if let Some(feature) = missing_feature(config.inbox.name()) {
        return Err(format!("{}: [inbox] {}", config.inbox_at, not_built(config.inbox.name(), feature)));
    }
    Ok(config)
}

/// The cargo feature `backend` needs, when this build does not have it.
pub(crate) fn missing_feature(backend: &str) -> Option<&'static str> {
    match backend {
        "sqlite" if !cfg!(feature = "sqlite") => Some("sqlite"),
        "redis" if !cfg!(feature = "redis") => Some("redis"),
        "postgres" if !cfg!(feature = "postgres") => Some("postgres"),
        _ => None,
    }
}

/// Why a backend whose feature is not built cannot be used.
pub(crate) fn not_built(backend: &str, feature: &str) -> String {
    format!(
        "the {backend} backend is not built into this hookguard: build it with `--features cli,{feature}` \
         (cargo install hookguard --features cli,{feature})"
    )
}

/// Where problems are reported.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn at(&self, span: Range<usize>, message: impl std::fmt::Display) -> String {
        format!("{}: {message}", self.place(span))
    }

    /// `FILE:LINE:COL` of `span`.
    fn place(&self, span: Range<usize>) -> String {
        let (line, col) = line_col(self.text, span.start);
        format!("{}:{line}:{col}", self.file.display())
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_path_buf();
        }
        self.file.parent().map_or_else(|| path.to_path_buf(), |dir| dir.join(path))
    }
}

/// A deserialization error's message without the value it quotes: serde's "invalid type"
/// and "invalid value" errors repeat it (`integer `123456``, `string "…"`), and the value
/// may be a secret in the wrong key or a token written as a number. What kind of value it
/// was and what was expected stay (with the position, enough to find it).
fn without_value(message: &str) -> String {
    let Some((prefix, rest)) =
        ["invalid type: ", "invalid value: "].into_iter().find_map(|p| Some((p, message.strip_prefix(p)?)))
    else {
        return message.to_owned();
    };
    // `sequence, expected …`: no value to hide.
    let Some(open) = rest.find(['`', '"']) else {
        return message.to_owned();
    };
    let kind = rest[..open].trim_end();
    let value = &rest[open + 1..];
    let end = if rest[open..].starts_with('"') {
        // A string, `Debug`-quoted: it ends at the first quote that is not escaped.
        let mut escaped = false;
        value.char_indices().find_map(|(i, c)| match c {
            '\\' if !escaped => {
                escaped = true;
                None
            }
            '"' if !escaped => Some(i),
            _ => {
                escaped = false;
                None
            }
        })
    } else if kind == "character" {
        // One character, which may itself be a backquote.
        value.char_indices().nth(1).map(|(i, _)| i).filter(|&i| value[i..].starts_with('`'))
    } else {
        value.find('`')
    };
    match end {
        Some(end) => format!("{prefix}{kind}{} (the value is not shown)", &value[end + 1..]),
        None => format!("{prefix}{kind} (the value is not shown)"),
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The file as TOML, unchecked.
fn raw_file(src: &Source<'_>) -> Result<RawFile, String> {
    toml::from_str(src.text).map_err(|e| {
        let message = without_value(e.message().trim_end());
        match e.span() {
            Some(span) => src.at(span, message),
            None => format!("{}: {message}", src.file.display()),
        }
    })
}

/// Parses and checks `text` (read from `file`).
pub(crate) fn parse(text: &str, file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
    let src = Source { file, text };
    let raw = raw_file(&src)?;

    let server = raw.server;
    let tls = match &server.tls {
        Some(tls) => {
            for f in [&tls.cert, &tls.key] {
                if !src.resolve(f.get_ref()).is_file() {
                    return Err(src.at(f.span(), format!("TLS file {} not found", f.get_ref().display())));
                }
            }
            Some(tls_config(&src, tls)?)
        }
        None => None,
    };
    let mut warnings = Vec::new();
    if let Some(tls) = &server.tls {
        warnings.extend(exposed(&src, tls.key.span(), "[server.tls] key", &src.resolve(tls.key.get_ref())));
    }
    let mut secret_vars: Vec<String> = [&raw.replay.url_env, &raw.inbox.url_env]
        .into_iter()
        .flatten()
        .map(|var| var.get_ref().clone())
        .collect();
    for endpoint in &raw.endpoint {
        let e = endpoint.get_ref();
        for vars in [&e.secret_env, &e.shared_key_env].into_iter().flatten() {
            secret_vars.extend(vars.get_ref().items());
        }
        secret_vars.extend(e.verify_token_env.as_ref().map(|var| var.get_ref().clone()));
    }
    secret_vars.sort_unstable();
    secret_vars.dedup();
    if let Some(to) = &raw.replay.dead_letters_to {
        return Err(src.at(to.span(), "[replay] `dead_letters_to` belongs to [inbox]"));
    }
    let dead_letters_to = match &raw.inbox.dead_letters_to {
        Some(to) => Some(
            append_file(&src.resolve(to.get_ref()))
                .map_err(|e| src.at(to.span(), format!("[inbox] dead_letters_to {e}")))?,
        ),
        None => None,
    };
    let replay_at = raw.replay.backend.span();
    // `[replay]` is not used: its `url_env` is not read (it need not be set).
    let replay = backend(&src, raw.replay, &|_| Some(String::from("unused")), "replay")?;
    let inbox_at = src.place(raw.inbox.backend.span());
    let inbox = backend(&src, raw.inbox, env, "inbox")?;
    if replay.name() != "memory" && inbox.name() == "memory" {
        // It was ignored: the user thought replays shared between replicas (or kept
        // across restarts), while the memory inbox's keys are this process's alone.
        return Err(src.at(
            replay_at,
            format!(
                "[replay] backend = \"{}\" is not used: replays are refused by the inbox's unique keys, \
                 and the memory inbox keeps them in this process alone; to keep them across restarts or \
                 share them between replicas, set [inbox] backend to \"{}\" (or another durable backend), \
                 then remove [replay]",
                replay.name(),
                replay.name()
            ),
        ));
    }
    let concurrency = &raw.worker.concurrency;
    if !(1..=MAX_CONCURRENCY).contains(concurrency.get_ref()) {
        return Err(src.at(
            concurrency.span(),
            format!("[worker] concurrency must be between 1 and {MAX_CONCURRENCY}"),
        ));
    }
    if *raw.worker.max_attempts.get_ref() == 0 {
        return Err(src.at(raw.worker.max_attempts.span(), "[worker] max_attempts must be at least 1"));
    }
    let lease = &raw.worker.lease_secs;
    if *lease.get_ref() == 0 {
        // A job leased for no time is given back unstarted, every time: nothing would run.
        return Err(src.at(lease.span(), "[worker] lease_secs must be at least 1"));
    }
    if *lease.get_ref() > MAX_LEASE_SECS {
        return Err(
            src.at(lease.span(), format!("[worker] lease_secs must be at most {MAX_LEASE_SECS} (a year)"))
        );
    }
    let (base, max) = (&raw.worker.backoff_base_ms, &raw.worker.backoff_max_secs);
    if *base.get_ref() == 0 {
        // Every retry at once: a failing action would spend all its attempts in a moment.
        return Err(src.at(base.span(), "[worker] backoff_base_ms must be at least 1"));
    }
    if *max.get_ref() == 0 {
        // The back-off is capped there: every retry at once.
        return Err(src.at(max.span(), "[worker] backoff_max_secs must be at least 1"));
    }
    if u128::from(*base.get_ref()) > u128::from(*max.get_ref()) * 1000 {
        // The back-off starts at its cap: it would never grow.
        return Err(src.at(
            base.span(),
            format!(
                "[worker] backoff_base_ms ({} ms) is above backoff_max_secs ({} s), which caps every delay",
                base.get_ref(),
                max.get_ref()
            ),
        ));
    }

    if raw.endpoint.is_empty() {
        return Err(format!("{}: no [[endpoint]]: nothing to serve", file.display()));
    }
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for spanned in raw.endpoint {
        let span = spanned.span();
        let lease = *raw.worker.lease_secs.get_ref();
        let endpoint = endpoint(&src, span, spanned.into_inner(), env, lease, &mut warnings)?;
        endpoints.push(endpoint);
    }
    let proxy_ranges = match &server.trusted_proxies {
        Some(list) => AllowList::parse_ranges(&list.get_ref().join("\n"))
            .map_err(|e| src.at(list.span(), format!("[server] trusted_proxies: {e}")))?,
        None => Vec::new(),
    };
    let no_proxy_range = proxy_ranges.is_empty();
    let mut trusted_proxies = TrustedProxies::new(proxy_ranges);
    if let Some(header) = &server.forwarded_header {
        if server.trusted_proxies.is_none() {
            // Without trusted proxies no forwarded header is believed: it would be ignored.
            return Err(src.at(
                header.span(),
                "[server] forwarded_header needs trusted_proxies (the proxies whose header is believed)",
            ));
        }
        let parsed = ForwardedHeader::from_name(header.get_ref()).ok_or_else(|| {
            src.at(header.span(), "[server] forwarded_header must be `x-forwarded-for` or `forwarded`")
        })?;
        if let Some(list) = server.trusted_proxies.as_ref().filter(|_| no_proxy_range) {
            // No range (`[]`, or comments only): no proxy's header would be believed.
            return Err(src.at(
                list.span(),
                "[server] trusted_proxies holds no range: forwarded_header would never be believed (list \
                 your proxies' ranges, or remove forwarded_header)",
            ));
        }
        trusted_proxies = trusted_proxies.header(parsed);
    }
    if let Some(problem) = listen_problem(server.listen.get_ref()) {
        return Err(src.at(server.listen.span(), format!("[server] listen {problem}")));
    }
    let header_read = &server.header_read_timeout_secs;
    if !(1..=MAX_HEADER_READ_TIMEOUT_SECS).contains(header_read.get_ref()) {
        return Err(src.at(
            header_read.span(),
            format!("[server] header_read_timeout_secs must be between 1 and {MAX_HEADER_READ_TIMEOUT_SECS}"),
        ));
    }
    let max_connections = &server.max_connections;
    if !(1..=MAX_MAX_CONNECTIONS).contains(max_connections.get_ref()) {
        return Err(src.at(
            max_connections.span(),
            format!("[server] max_connections must be between 1 and {MAX_MAX_CONNECTIONS}"),
        ));
    }
    Ok(Config {
        header_read_timeout: Duration::from_secs(*header_read.get_ref()),
        listen: server.listen.into_inner(),
        trusted_proxies,
        tls,
        shutdown_grace: Duration::from_secs(server.shutdown_grace_secs),
        max_connections: *max_connections.get_ref(),
        metrics: server.metrics,
        replay,
        inbox,
        inbox_at,
        dead_letters_to,
        worker: raw.worker,
        endpoints,
        secret_vars,
        warnings,
    })
    .and_then(|config| no_duplicates(&src, config))
}

fn no_duplicates(src: &Source<'_>, config: Config) -> Result<Config, String> {
    for (i, e) in config.endpoints.iter().enumerate() {
        for earlier in &config.endpoints[..i] {
            if earlier.path == e.path {
                return Err(format!("{}: two endpoints have the path {}", src.file.display(), e.path));
            }
            if earlier.name == e.name {
                return Err(format!(
                    "{}: two endpoints are named `{}` (set `name` on one of them)",
                    src.file.display(),
                    e.name
                ));
            }
        }
    }
    Ok(config)
}

fn backend(
    src: &Source<'_>,
    raw: RawBackend,
    env: &dyn Fn(&str) -> Option<String>,
    section: &str,
) -> Result<Backend, String> {
    let url = || -> Result<String, String> {
        match (&raw.url, &raw.url_env) {
            (Some(url), None) => Ok(url.get_ref().clone()),
            (None, Some(var)) => env(var.get_ref()).filter(|v| !v.is_empty()).ok_or_else(|| {
                src.at(
                    var.span(),
                    format!("[{section}] environment variable {} is not set (url_env)", var.get_ref()),
                )
            }),
            (Some(url), Some(_)) => {
                Err(src.at(url.span(), format!("[{section}] give `url` or `url_env`, not both")))
            }
            (None, None) => Err(src.at(
                raw.backend.span(),
                format!("[{section}] backend `{}` needs `url` or `url_env`", raw.backend.get_ref()),
            )),
        }
    };
    // A key the backend does not use is an error: ignored, it would let the user think
    // the section durable (`path` with the default memory backend).
    let no_path = || match &raw.path {
        Some(path) => {
            Err(src.at(path.span(), format!("[{section}] `path` is only for backend = \"sqlite\"")))
        }
        None => Ok(()),
    };
    let no_url = || {
        for (key, given) in [("url", &raw.url), ("url_env", &raw.url_env)] {
            if let Some(given) = given {
                return Err(src.at(
                    given.span(),
                    format!("[{section}] `{key}` is only for backend = \"redis\" or \"postgres\""),
                ));
            }
        }
        Ok(())
    };
    if let Some(capacity) = raw.capacity.as_ref().filter(|c| *c.get_ref() == 0) {
        return Err(src.at(
            capacity.span(),
            format!("[{section}] capacity must be at least 1 (0 would refuse every delivery)"),
        ));
    }
    let capacity = raw.capacity.map(Spanned::into_inner);
    Ok(match raw.backend.get_ref().as_str() {
        "memory" => {
            no_path()?;
            no_url()?;
            Backend::Memory { capacity }
        }
        "sqlite" => {
            no_url()?;
            let path = raw.path.as_ref().ok_or_else(|| {
                src.at(
                    raw.backend.span(),
                    format!("[{section}] backend `sqlite` needs `path` (the database file)"),
                )
            })?;
            Backend::Sqlite { path: src.resolve(path.get_ref()), capacity }
        }
        "redis" => {
            no_path()?;
            Backend::Redis { url: url()?, capacity }
        }
        "postgres" => {
            no_path()?;
            Backend::Postgres { url: url()?, capacity }
        }
        // The value is not repeated: it may be a URL with a password (`redis://:pw@host`).
        other => {
            return Err(src.at(raw.backend.span(), unknown_backend(section, other)));
        }
    })
}

/// Why `backend = "{given}"` is refused, without repeating `given`: a URL there is told
/// to go to `url` (with the backend its scheme names, when it names one).
fn unknown_backend(section: &str, given: &str) -> String {
    let known = BACKENDS.join(", ");
    let Some((scheme, _)) = given.split_once("://") else {
        return format!("[{section}] unknown backend: `backend` is one of {known} (the value is not shown)");
    };
    let named = match scheme.to_ascii_lowercase().as_str() {
        "redis" | "rediss" => Some("redis"),
        "postgres" | "postgresql" => Some("postgres"),
        _ => None,
    };
    let choose = match named {
        Some(name) => format!("set backend = \"{name}\""),
        None => format!("set `backend` to one of {known}"),
    };
    format!(
        "[{section}] unknown backend: `backend` names the kind of store ({known}), and this one looks \
         like a URL (not shown: it may hold a password): {choose} and give the URL with `url` or \
         `url_env` (recommended for a URL with a password)"
    )
}

fn endpoint(
    src: &Source<'_>,
    span: Range<usize>,
    raw: RawEndpoint,
    env: &dyn Fn(&str) -> Option<String>,
    lease_secs: u64,
    warnings: &mut Vec<String>,
) -> Result<Endpoint, String> {
    let path = raw.path.get_ref().clone();
    if !path.starts_with('/') {
        return Err(src.at(raw.path.span(), format!("endpoint path `{path}` must start with `/`")));
    }
    if let Some(problem) = path_problem(&path) {
        return Err(src.at(raw.path.span(), format!("endpoint path `{path}` {problem}")));
    }
    if RESERVED_PATHS.contains(&path.as_str()) {
        return Err(src.at(raw.path.span(), format!("endpoint path {path} is the server's own")));
    }
    let name = match &raw.name {
        Some(name) => name.get_ref().clone(),
        None => path.trim_matches('/').replace('/', "-"),
    };
    let name = if name.is_empty() { "root".to_owned() } else { name };
    let label = format!("endpoint `{name}`");
    let provider = raw.provider.get_ref().clone();
    if !common::provider_names().contains(&provider.as_str()) {
        return Err(src.at(
            raw.provider.span(),
            format!(
                "{label}: unknown provider `{provider}` (known: {})",
                common::provider_names().join(", ")
            ),
        ));
    }

    // Keys for other providers are refused: ignored, they let the user think them in force.
    let span_of = |s: &Option<Spanned<String>>| s.as_ref().map(Spanned::span);
    let span_of_list = |s: &Option<Spanned<OneOrMany>>| s.as_ref().map(Spanned::span);
    for (key, at, providers) in [
        ("url", span_of(&raw.url), common::REGISTERED_URL),
        ("public_origin", span_of(&raw.public_origin), &["twilio", "hubspot", "hubspot-v2"]),
        ("webhook_id", span_of(&raw.webhook_id), &["paypal"]),
        ("certificate_file", span_of_list(&raw.certificate_file), &["paypal"]),
        ("verify_token", span_of(&raw.verify_token), &["meta"]),
        ("verify_token_env", span_of(&raw.verify_token_env), &["meta"]),
    ] {
        if let Some(at) = at.filter(|_| !providers.contains(&provider.as_str())) {
            return Err(
                src.at(at, format!("{label}: `{key}` is for {}, not {provider}", providers.join(", ")))
            );
        }
    }

    // PayPal verifies with its certificate and the webhook id: a secret would be read, then
    // ignored (and `--check` warned of a demo secret never used).
    if provider == "paypal" {
        for (key, at) in [
            ("secret_env", span_of_list(&raw.secret_env)),
            ("secret_env_default", span_of(&raw.secret_env_default)),
            ("secret_file", span_of_list(&raw.secret_file)),
            ("secret", span_of_list(&raw.secret)),
        ] {
            if let Some(at) = at {
                return Err(src.at(
                    at,
                    format!(
                        "{label}: `{key}` is not for paypal, which verifies with PayPal's certificate \
                         (`certificate_file`) and `webhook_id`: remove it"
                    ),
                ));
            }
        }
    }

    // Secrets: every source given, in the order env, file, literal (the first signs).
    let mut secrets = Vec::new();
    let mut demo_secret = None;
    if let Some(default) = &raw.secret_env_default {
        // The demo secret would verify beside the real one (and sign, being first).
        for (key, given) in [
            ("secret_file", raw.secret_file.as_ref().map(Spanned::span)),
            ("secret", raw.secret.as_ref().map(Spanned::span)),
        ] {
            if given.is_some() {
                return Err(src.at(
                    default.span(),
                    format!(
                        "{label}: secret_env_default (a demo secret) cannot go with `{key}`: it would \
                         verify beside the real secret; remove secret_env_default"
                    ),
                ));
            }
        }
    }
    if let Some(vars) = &raw.secret_env {
        let names = vars.get_ref().items();
        let mut missing = Vec::new();
        for var in &names {
            match env(var) {
                // Set but empty (`NAME=` in a compose file) is a mistake, not "unset": the
                // demo default would then verify in its place.
                Some(value) if value.is_empty() => {
                    let default = if raw.secret_env_default.is_some() {
                        "; secret_env_default applies only when it is unset"
                    } else {
                        ""
                    };
                    return Err(src.at(
                        vars.span(),
                        format!("{label}: environment variable {var} is set but empty or not UTF-8 (secret_env){default}"),
                    ));
                }
                Some(value) => secrets.push(value),
                None => missing.push(var.clone()),
            }
        }
        if !missing.is_empty() {
            match (&raw.secret_env_default, secrets.is_empty()) {
                (Some(default), true) => {
                    secrets.push(default.get_ref().clone());
                    demo_secret = Some(DemoSecret { vars: missing, at: src.place(default.span()) });
                }
                _ => {
                    let list = missing.join(", ");
                    let what =
                        if missing.len() == 1 { "environment variable" } else { "environment variables" };
                    let verb = if missing.len() == 1 { "is" } else { "are" };
                    return Err(
                        src.at(vars.span(), format!("{label}: {what} {list} {verb} not set (secret_env)"))
                    );
                }
            }
        }
    } else if let Some(default) = &raw.secret_env_default {
        return Err(src.at(default.span(), format!("{label}: secret_env_default without secret_env")));
    }
    // Asana hands its secret over in its handshake: a lone secret file that does not exist
    // yet (or is empty) awaits it.
    let awaiting = match &raw.secret_file {
        Some(files)
            if provider == "asana" && raw.handshake && raw.secret_env.is_none() && raw.secret.is_none() =>
        {
            match files.get_ref().items().as_slice() {
                [file] => awaiting_handshake(src, &label, files.span(), file)?,
                _ => None,
            }
        }
        _ => None,
    };
    if let Some(files) = raw.secret_file.as_ref().filter(|_| awaiting.is_none()) {
        for f in files.get_ref().items() {
            secrets.push(secret_file(src, &label, files.span(), &f, warnings)?);
        }
    }
    // Twilio's Webhooks Settings shared keys: every variable must be set.
    let mut shared_keys = Vec::new();
    if let Some(vars) = &raw.shared_key_env {
        for var in vars.get_ref().items() {
            let value = env(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
                src.at(
                    vars.span(),
                    format!("{label}: environment variable {var} is not set (shared_key_env)"),
                )
            })?;
            shared_keys.push(value);
        }
    }
    if let Some(files) = &raw.shared_key_file {
        for f in files.get_ref().items() {
            shared_keys.push(secret_file(src, &label, files.span(), &f, warnings)?);
        }
    }
    if let Some(literal) = &raw.secret {
        secrets.extend(literal.get_ref().items());
    }
    let certificates = match &raw.certificate_file {
        Some(files) => files
            .get_ref()
            .items()
            .iter()
            .map(|f| {
                common::read_file(&src.resolve(Path::new(f)))
                    .map_err(|e| src.at(files.span(), format!("{label}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    if secrets.is_empty() && provider != "paypal" && awaiting.is_none() {
        return Err(src.at(
            span,
            format!("{label}: no secret: set `secret_env` (recommended), `secret_file` or `secret`"),
        ));
    }
    let options = SchemeOptions {
        url: raw.url.as_ref().map(|u| u.get_ref().clone()),
        tolerance_secs: raw.tolerance_secs.as_ref().map(|t| *t.get_ref()),
        webhook_id: raw.webhook_id.as_ref().map(|w| w.get_ref().clone()),
        certificates,
        shared_keys,
        shared_key_name: None,
    };
    let at_provider = |e: String| src.at(raw.provider.span(), format!("{label}: {e}"));
    // Awaiting the handshake, the options are checked with a stand-in secret, never used.
    let stand_in = ["awaiting-the-handshake".to_owned()];
    let checked_with = if awaiting.is_some() { &stand_in[..] } else { &secrets[..] };
    let scheme =
        common::build_scheme(&provider, checked_with, &options).map_err(|e| match &raw.tolerance_secs {
            Some(t) if e.contains("tolerance") => src.at(t.span(), format!("{label}: {e}")),
            _ => at_provider(e),
        })?;
    let keys = match awaiting {
        Some(file) => Keys::Handshake(file),
        None => Keys::Configured(scheme),
    };

    if !raw.handshake {
        // Meta's token is only for its handshake: with the handshake off it would be ignored.
        for (key, at) in [
            ("verify_token", span_of(&raw.verify_token)),
            ("verify_token_env", span_of(&raw.verify_token_env)),
        ] {
            if let Some(at) = at {
                return Err(src.at(
                    at,
                    format!(
                        "{label}: `{key}` is for Meta's subscription handshake, which handshake = false \
                         turns off: remove one of them"
                    ),
                ));
            }
        }
    }
    let handshake: Option<Box<dyn Handshake>> = if !raw.handshake {
        None
    } else {
        match provider.as_str() {
            "zoom" => {
                // Every secret the endpoint verifies with: the answer is keyed with the one
                // that verified the validation request.
                let zoom = common::with_secrets(|first| hookguard::providers::zoom::scheme(first), &secrets)
                    .map_err(|e| at_provider(e.to_string()))?;
                Some(Box::new(handshake::ZoomUrlValidation::new(zoom)))
            }
            "meta" => {
                let token = match (&raw.verify_token, &raw.verify_token_env) {
                    (Some(t), _) => Some(t.get_ref().clone()),
                    (None, Some(var)) => {
                        Some(env(var.get_ref()).filter(|v| !v.is_empty()).ok_or_else(|| {
                            src.at(
                                var.span(),
                                format!(
                                    "{label}: environment variable {} is not set (verify_token_env)",
                                    var.get_ref()
                                ),
                            )
                        })?)
                    }
                    (None, None) => None,
                };
                match token {
                    Some(token) => Some(Box::new(
                        handshake::MetaSubscription::new(token).map_err(|e| at_provider(e.to_string()))?,
                    )),
                    None => None,
                }
            }
            other => handshake::for_provider(other),
        }
    };

    // Appending has no time limit: it would be ignored.
    if let Some(t) = raw
        .timeout_secs
        .as_ref()
        .filter(|_| raw.append_to.is_some() && raw.run.is_none() && raw.forward_to.is_none())
    {
        return Err(src.at(
            t.span(),
            format!("{label}: timeout_secs is for `run` and `forward_to`: `append_to` has no time limit"),
        ));
    }
    let timeout_secs = raw.timeout_secs.as_ref().map_or(DEFAULT_ACTION_TIMEOUT, |t| *t.get_ref());
    let timeout_span = raw.timeout_secs.as_ref().map_or(span.clone(), Spanned::span);
    if timeout_secs == 0 {
        return Err(src.at(timeout_span, format!("{label}: timeout_secs must be at least 1")));
    }
    // The worker stops a handler when its job's lease ends: a longer time limit is cut there.
    if (raw.run.is_some() || raw.forward_to.is_some()) && timeout_secs >= lease_secs {
        let given = if raw.timeout_secs.is_some() { "" } else { ", the default" };
        return Err(src.at(
            timeout_span,
            format!(
                "{label}: timeout_secs ({timeout_secs}{given}) is not below [worker] lease_secs \
                 ({lease_secs}), where the worker stops a handler: raise lease_secs or lower timeout_secs"
            ),
        ));
    }
    let timeout = Duration::from_secs(timeout_secs);
    let actions = [raw.append_to.is_some(), raw.run.is_some(), raw.forward_to.is_some()];
    let action = match (&raw.append_to, &raw.run, &raw.forward_to) {
        _ if actions.iter().filter(|a| **a).count() > 1 => {
            return Err(
                src.at(span, format!("{label}: give one of `append_to`, `run`, `forward_to`, not several"))
            );
        }
        (Some(file), None, None) => {
            let at = |e: String| src.at(file.span(), format!("{label}: append_to {e}"));
            Action::AppendTo(append_file(&src.resolve(file.get_ref())).map_err(at)?)
        }
        (None, Some(argv), None) => {
            let Some((program, args)) = argv.get_ref().split_first() else {
                return Err(
                    src.at(argv.span(), format!("{label}: `run` needs a program: [\"program\", \"arg\", …]"))
                );
            };
            let program = run_program(src, program, env)
                .map_err(|e| src.at(argv.span(), format!("{label}: `run` program {e}")))?;
            Action::Run { argv: std::iter::once(program).chain(args.iter().cloned()).collect(), timeout }
        }
        (None, None, Some(url)) => {
            let u = url.get_ref();
            if !(u.starts_with("http://") || u.starts_with("https://")) || reqwest::Url::parse(u).is_err() {
                return Err(
                    src.at(url.span(), format!("{label}: forward_to must be an http:// or https:// URL"))
                );
            }
            Action::Forward { url: u.clone(), timeout }
        }
        _ => {
            return Err(src.at(
                span,
                format!("{label}: say what a processed webhook does: `append_to`, `run` or `forward_to`"),
            ));
        }
    };

    let public_origin = match &raw.public_origin {
        Some(origin) => Some(
            public_origin(origin.get_ref())
                .map_err(|e| src.at(origin.span(), format!("{label}: public_origin {e}")))?,
        ),
        None => None,
    };
    if raw.public_origin.is_none() && matches!(provider.as_str(), "twilio" | "hubspot" | "hubspot-v2") {
        return Err(src.at(
            raw.provider.span(),
            format!("{label}: {provider} signs the URL it calls: set `public_origin` (https://your.host)"),
        ));
    }
    if let Some(reload_secs) = &raw.allow_reload_secs {
        if !(1..=MAX_ALLOW_RELOAD_SECS).contains(reload_secs.get_ref()) {
            return Err(src.at(
                reload_secs.span(),
                format!("{label}: allow_reload_secs must be between 1 and {MAX_ALLOW_RELOAD_SECS} (a day)"),
            ));
        }
        if raw.allow_file.is_none() {
            // Only a file is reloaded: it would be ignored.
            return Err(src.at(
                reload_secs.span(),
                format!("{label}: allow_reload_secs is how often `allow_file` is read again: it needs `allow_file`"),
            ));
        }
    }
    let reload_secs = raw.allow_reload_secs.as_ref().map_or(DEFAULT_ALLOW_RELOAD_SECS, |r| *r.get_ref());
    let allow = match (&raw.allow, &raw.allow_file) {
        (None, None) => None,
        (ranges, file) => {
            let mut listed = Vec::new();
            if let Some(ranges) = ranges {
                listed = AllowList::parse_ranges(&ranges.get_ref().join("\n"))
                    .map_err(|e| src.at(ranges.span(), format!("{label}: allow: {e}")))?;
                // An empty list (a template that rendered nothing) would refuse every
                // delivery: refused as an empty `allow_file` is.
                if listed.is_empty() && file.is_none() {
                    return Err(src.at(
                        ranges.span(),
                        format!("{label}: allow holds no range (it would refuse every delivery)"),
                    ));
                }
            }
            let allow_list = AllowList::new(listed.iter().copied());
            let reload = match file {
                Some(file) => {
                    let reload = AllowReload {
                        file: src.resolve(file.get_ref()),
                        every: Duration::from_secs(reload_secs),
                        listed,
                    };
                    reload_allow(&allow_list, &reload)
                        .map_err(|e| src.at(file.span(), format!("{label}: allow_file: {e}")))?;
                    Some(reload)
                }
                None => None,
            };
            Some((allow_list, reload))
        }
    };
    // Opt-in: an allow-list of a partner's own addresses must keep the failure budget.
    let allow_shared = match &raw.allow_shared {
        Some(shared) if *shared.get_ref() && allow.is_none() => {
            return Err(src.at(shared.span(), format!("{label}: allow_shared needs `allow` or `allow_file`")));
        }
        Some(shared) => *shared.get_ref(),
        None => false,
    };
    let rate_limit = match &raw.rate_limit {
        None => None,
        Some(spanned) => {
            let r = spanned.get_ref();
            if r.failures.is_none() && r.failures_per_secs.is_some() {
                // Alone it would be ignored, and the default failure budget (10 per 600 s)
                // would apply unnoticed.
                return Err(src.at(
                    spanned.span(),
                    format!(
                        "{label}: rate_limit: `failures_per_secs` is the period of `failures`: give both"
                    ),
                ));
            }
            let mut builder = SourceLimiter::builder().requests(r.requests, Duration::from_secs(r.per_secs));
            if let Some(n) = r.failures {
                builder = builder.failures(n, Duration::from_secs(r.failures_per_secs.unwrap_or(600)));
            }
            if let Some(n) = r.max_addresses {
                builder = builder.max_addresses(n);
            }
            if let Some((list, _)) = allow.as_ref().filter(|_| allow_shared) {
                // The allowed ranges are the provider's, shared by all its customers: a
                // stranger's webhook sent through it must not spend the genuine ones' budget.
                builder = builder.shared_senders(list.clone());
            }
            Some(builder.build().map_err(|e| src.at(spanned.span(), format!("{label}: rate_limit: {e}")))?)
        }
    };
    let body_limit = match &raw.body_limit {
        Some(limit) if *limit.get_ref() == 0 => {
            return Err(src.at(
                limit.span(),
                format!("{label}: body_limit must be at least 1 (0 would refuse every delivery with a body)"),
            ));
        }
        limit => limit.as_ref().map(|l| *l.get_ref()),
    };
    Ok(Endpoint {
        name,
        path,
        keys,
        handshake,
        body_limit,
        public_origin,
        action,
        allow,
        rate_limit,
        demo_secret,
    })
}

/// `public_origin` checked: an `http://` or `https://` origin (a host, a port perhaps),
/// with no credentials, path, query or fragment; a trailing `/` is dropped (the guard
/// appends the request's path to it).
fn public_origin(origin: &str) -> Result<String, String> {
    let problem = "must be an origin, `https://hooks.example.com`: http or https, a host and a port \
                   perhaps, no path, query or fragment";
    let url = reqwest::Url::parse(origin).map_err(|_| problem.to_owned())?;
    let fine = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && !origin.contains(['?', '#']);
    if !fine {
        return Err(problem.to_owned());
    }
    // The text is what the guard prepends, so it must be the origin as written: no space,
    // backslash or dot segment that the parser above forgave (`https:\\h`, `https://h/.`).
    let trimmed = origin.strip_suffix('/').unwrap_or(origin);
    let after_scheme = trimmed.split_once("://").map_or("", |(_, rest)| rest);
    if after_scheme.is_empty()
        || after_scheme.contains('/')
        || origin.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(problem.to_owned());
    }
    Ok(trimmed.to_owned())
}

/// The file `append_to` names (resolved): its folder, which must exist, made canonical,
/// and its name. Two endpoints appending to one file then name it the same way and share
/// its writer, so that their lines never interleave.
fn append_file(path: &Path) -> Result<PathBuf, String> {
    if path.is_dir() {
        return Err(format!("{} is a folder: name a file in it", path.display()));
    }
    let name = path.file_name().ok_or_else(|| format!("{} does not name a file", path.display()))?;
    let folder = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let canonical = folder.canonicalize().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("{}: the folder it is written in does not exist", path.display())
        } else {
            format!("{}: cannot resolve its folder: {e}", path.display())
        }
    })?;
    if !canonical.is_dir() {
        return Err(format!("{}: the folder it is written in does not exist", path.display()));
    }
    Ok(canonical.join(name))
}

/// The program a `run` command starts, checked at load so that a mistake stops the start
/// instead of failing every delivery the server has already acknowledged. A path (with a
/// `/`) is relative to the configuration's folder, like the file's other paths, and must be
/// an executable file; a bare name stays a PATH lookup, and must be found on the `PATH` in
/// `env` (when it is set: the command inherits it).
fn run_program(
    src: &Source<'_>,
    program: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if program.contains('/') {
        let path = src.resolve(Path::new(program));
        let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{} does not exist", path.display()),
            _ => format!("{}: {e}", path.display()),
        })?;
        if !meta.is_file() {
            return Err(format!("{} is not a file", path.display()));
        }
        if !is_executable(&meta) {
            return Err(format!("{} is not executable (chmod +x)", path.display()));
        }
        return path.into_os_string().into_string().map_err(|_| "is not a UTF-8 path".to_owned());
    }
    let Some(search) = env("PATH").filter(|p| !p.is_empty()) else {
        return Ok(program.to_owned());
    };
    let found = std::env::split_paths(&search).any(|dir| {
        std::fs::metadata(dir.join(program)).is_ok_and(|meta| meta.is_file() && is_executable(&meta))
    });
    if found {
        Ok(program.to_owned())
    } else {
        Err(format!("`{program}` is not found on PATH (give a path, relative to the configuration's folder)"))
    }
}

/// Whether anyone may execute the file (the kernel has the last word: this catches the
/// common mistake, a script without `chmod +x`).
fn is_executable(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        true
    }
}

/// What is wrong with `[server] listen`, if anything: it must be an address and a port
/// (`127.0.0.1:8080`, `[::1]:8080`), or a host name and a port (`localhost:8080`).
fn listen_problem(listen: &str) -> Option<&'static str> {
    if listen.parse::<std::net::SocketAddr>().is_ok() {
        return None;
    }
    let fine = listen.rsplit_once(':').is_some_and(|(host, port)| {
        port.parse::<u16>().is_ok()
            && !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    });
    if fine {
        None
    } else {
        Some("must be an address and a port: `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080`")
    }
}

/// What is wrong with an endpoint path (it starts with `/`), if anything: the router
/// takes `{…}`, and `:…` or `*…` segments, for captures (which the command does not
/// support) or refuses them at start, and a path must be a URI path without a query.
fn path_problem(path: &str) -> Option<&'static str> {
    if path.contains(['{', '}']) {
        return Some("has `{` or `}`: paths are literal (no captures)");
    }
    if path.split('/').any(|segment| segment.starts_with([':', '*'])) {
        return Some("has a segment starting with `:` or `*`: paths are literal (no captures or wildcards)");
    }
    if path.contains(['?', '#']) {
        return Some("has a `?` or `#`: give the path alone, without a query or fragment");
    }
    // `PathAndQuery` lets through characters RFC 3986 does not allow in a path (`"`, `|`, …),
    // which no sender can reach; hence the check of each character.
    if path.parse::<http::uri::PathAndQuery>().is_err() || !is_rfc3986_path(path) {
        return Some("is not a valid URI path (percent-encode spaces and other special characters)");
    }
    None
}

/// Whether `path` is made of RFC 3986 path characters only: unreserved, percent-encoded
/// (`%` and two hex digits), sub-delimiters, `:`, `@` and `/`.
fn is_rfc3986_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let ok = match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
                i += 2;
                hex
            }
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b','
            | b';' | b'=' | b':' | b'@' | b'/' => true,
            b => b.is_ascii_alphanumeric(),
        };
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// The rustls configuration (ring provider, HTTP/1.1 only: ALPN offers `http/1.1`) from the PEM files.
fn tls_config(src: &Source<'_>, tls: &RawTls) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let (cert, key) = (src.resolve(tls.cert.get_ref()), src.resolve(tls.key.get_ref()));
    let at_cert = |e: &dyn std::fmt::Display| {
        src.at(tls.cert.span(), format!("TLS certificate {}: {e}", cert.display()))
    };
    let at_key =
        |e: &dyn std::fmt::Display| src.at(tls.key.span(), format!("TLS key {}: {e}", key.display()));
    let cert_pem = common::read_limited(&cert, common::FILE_LIMIT).map_err(|e| at_cert(&e))?;
    let key_pem = common::read_limited(&key, common::FILE_LIMIT).map_err(|e| at_key(&e))?;
    let certs =
        CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<Vec<_>, _>>().map_err(|e| at_cert(&e))?;
    if certs.is_empty() {
        return Err(at_cert(&"no certificate in the file"));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => at_key(&"no private key in the file"),
        e => at_key(&e),
    })?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| at_cert(&e))?
            .with_no_client_auth()
            .with_single_cert(certs, private_key)
            .map_err(|e| at_key(&format_args!("does not go with the certificate {}: {e}", cert.display())))?;
    // HTTP/1.1 only (senders speak it): its head is timed from the connection's start,
    // while an HTTP/2 connection that never sends a request would be held for ever.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The secret file an asana endpoint awaits its handshake with: `file` when it does not
/// exist or holds no secret (line ends only) and its folder exists; `None` when it holds
/// something (or cannot be read: [`secret_file`] says why).
fn awaiting_handshake(
    src: &Source<'_>,
    label: &str,
    span: Range<usize>,
    file: &str,
) -> Result<Option<PathBuf>, String> {
    let full = src.resolve(Path::new(file));
    match common::read_limited(&full, common::FILE_LIMIT) {
        Ok(bytes) if bytes.iter().all(|b| matches!(b, b'\n' | b'\r')) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        _ => return Ok(None),
    }
    let folder = match full.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if full.file_name().is_none() || !folder.is_dir() {
        return Err(src.at(
            span,
            format!(
                "{label}: secret file {}: the folder the handshake's secret is written to does not exist",
                full.display()
            ),
        ));
    }
    Ok(Some(full))
}

/// One secret from a file (a final newline is not part of it). A file that other users
/// can read is read all the same, with a warning in `warnings` ([`exposed`]).
fn secret_file(
    src: &Source<'_>,
    label: &str,
    span: Range<usize>,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let full = src.resolve(Path::new(file));
    warnings.extend(exposed(src, span.clone(), label, &full));
    let bytes = common::read_limited(&full, common::FILE_LIMIT).map_err(|e| {
        src.at(span.clone(), format!("{label}: cannot read secret file {}: {e}", full.display()))
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| src.at(span.clone(), format!("{label}: secret file {} is not text", full.display())))?;
    let text = text.trim_end_matches(['\n', '\r']).to_owned();
    if text.is_empty() {
        return Err(src.at(span, format!("{label}: secret file {} is empty", full.display())));
    }
    Ok(text)
}

/// A warning when the file at `full`, which holds a secret, can be read or written by users
/// other than its owner (its mode has group or other bits; the file the path leads to,
/// through links). Not an error: a container's mounted secrets are often `0644`, in a
/// container with one user. Elsewhere it tells the user to `chmod 600` it.
fn exposed(src: &Source<'_>, span: Range<usize>, label: &str, full: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(full).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            src.at(
                span,
                format!(
                    "{label}: {} holds a secret and other users can read or change it (mode {mode:04o}); \
                     `chmod 600` it",
                    full.display()
                ),
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (src, span, label, full);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn check(text: &str) -> Result<Config, String> {
        parse(text, Path::new("t.toml"), &no_env)
    }

    const OK: &str = r#"
[[endpoint]]
path = "/hooks/github"
provider = "github"
secret = "s"
append_to = "/tmp/x.jsonl"
"#;

    #[test]
    fn a_minimal_config_is_enough() {
        let c = check(OK).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.replay, Backend::Memory { capacity: None });
        assert_eq!(c.endpoints[0].name, "hooks-github");
    }

    /// A file from before the endpoints stopped using `[replay]` still loads with a durable
    /// inbox; the user is told the section is not used, and its `url_env` need not be set.
    /// With the memory inbox, a durable `[replay]` is refused: it was ignored, and the
    /// replays it shared between replicas were this process's alone.
    #[test]
    fn a_replay_section_is_accepted_and_reported_unused() {
        assert_eq!(check(OK).unwrap().unused_replay_note(), None);
        let inbox = "[inbox]\nbackend = \"sqlite\"\npath = \"i.db\"\n";
        let with = format!("[replay]\nbackend = \"redis\"\nurl_env = \"UNSET_REPLAY_URL\"\n{inbox}{OK}");
        let note = check(&with).unwrap().unused_replay_note().expect("a note");
        assert!(note.starts_with("[replay] is not used"), "{note}");
        let capacity = format!("[replay]\ncapacity = 10\n{OK}");
        assert!(check(&capacity).unwrap().unused_replay_note().is_some());

        for backend in [
            "redis\"\nurl = \"redis://127.0.0.1:6379",
            "sqlite\"\npath = \"r.db",
            "postgres\"\nurl_env = \"UNSET",
        ] {
            let name = backend.split('"').next().unwrap();
            let err = check(&format!("[replay]\nbackend = \"{backend}\"\n{OK}")).err().expect("refused");
            assert!(
                err.starts_with(&format!("t.toml:2:11: [replay] backend = \"{name}\" is not used")),
                "{err}"
            );
            assert!(err.contains(&format!("set [inbox] backend to \"{name}\"")), "{err}");
        }
    }

    /// `[server] listen` is checked at load (`--check` passed an address the start could not
    /// bind, naming no line); so is `header_read_timeout_secs`.
    #[test]
    fn the_listen_address_is_checked() {
        for (listen, ok) in [
            ("127.0.0.1:8080", true),
            ("[::1]:0", true),
            ("0.0.0.0:443", true),
            ("localhost:8080", true),
            ("hooks.internal:80", true),
            ("127.0.0.1", false),
            ("127.0.0.1:http", false),
            ("127.0.0.1:70000", false),
            (":8080", false),
            ("http://127.0.0.1:8080", false),
            ("[::1:80", false),
            ("", false),
        ] {
            let text = format!("[server]\nlisten = \"{listen}\"\n{OK}");
            match check(&text) {
                Ok(c) if ok => assert_eq!(c.listen, listen),
                Err(err) if !ok => assert!(
                    err.starts_with("t.toml:2:10: [server] listen must be an address and a port"),
                    "{listen}: {err}"
                ),
                other => panic!("{listen}: {:?}", other.map(|c| c.listen)),
            }
        }
        for (value, ok) in [("1", true), ("3600", true), ("0", false), ("3601", false)] {
            let text = format!("[server]\nheader_read_timeout_secs = {value}\n{OK}");
            match check(&text) {
                Ok(c) => assert!(ok && c.header_read_timeout.as_secs().to_string() == value, "{value}"),
                Err(err) => assert!(
                    !ok && err.starts_with(
                        "t.toml:2:28: [server] header_read_timeout_secs must be between 1 and 3600"
                    ),
                    "{value}: {err}"
                ),
            }
        }
        assert_eq!(check(OK).unwrap().header_read_timeout, Duration::from_secs(30));
    }

    /// `[inbox] dead_letters_to` names a file in a folder that exists; `[replay]` has none.
    #[test]
    fn dead_letters_to_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dead.jsonl");
        let c = check(&format!("[inbox]\ndead_letters_to = {file:?}\n{OK}")).unwrap();
        assert_eq!(c.dead_letters_to, Some(dir.path().canonicalize().unwrap().join("dead.jsonl")));
        assert_eq!(check(OK).unwrap().dead_letters_to, None);
        let missing = dir.path().join("nowhere/dead.jsonl");
        let err = check(&format!("[inbox]\ndead_letters_to = {missing:?}\n{OK}")).err().unwrap();
        assert!(err.starts_with("t.toml:2:19: [inbox] dead_letters_to "), "{err}");
        assert!(err.ends_with("the folder it is written in does not exist"), "{err}");
        let err = check(&format!("[replay]\ndead_letters_to = {file:?}\n{OK}")).err().unwrap();
        assert_eq!(err, "t.toml:2:19: [replay] `dead_letters_to` belongs to [inbox]");
    }

    /// `public_origin` is an http(s) origin: no path, query, fragment or credentials (the
    /// guard appends the request's path); a trailing `/` is dropped.
    #[test]
    fn public_origin_is_an_origin() {
        let twilio = |origin: &str| {
            OK.replace("\"github\"", "\"twilio\"") + &format!("public_origin = \"{origin}\"\n")
        };
        for (origin, kept) in [
            ("https://hooks.example.com", Some("https://hooks.example.com")),
            ("https://hooks.example.com/", Some("https://hooks.example.com")),
            ("http://127.0.0.1:8080", Some("http://127.0.0.1:8080")),
            ("https://[::1]:8443/", Some("https://[::1]:8443")),
            ("hooks.example.com", None),
            ("ftp://hooks.example.com", None),
            ("https://hooks.example.com/hooks", None),
            ("https://hooks.example.com//", None),
            ("https://hooks.example.com?x=1", None),
            ("https://hooks.example.com/#x", None),
            ("https://user:t0ken@hooks.example.com", None),
            ("https://", None),
            // Forgiven by the URL parser, but not the origin as written.
            ("https://hooks.example.com ", None),
            (" https://hooks.example.com", None),
            ("https:\\\\hooks.example.com", None),
            ("https://hooks.example.com/.", None),
            ("https://hooks.example.com/./", None),
        ] {
            match (check(&twilio(origin)), kept) {
                (Ok(c), Some(kept)) => {
                    assert_eq!(c.endpoints[0].public_origin.as_deref(), Some(kept), "{origin}")
                }
                (Err(err), None) => {
                    assert!(
                        err.starts_with(
                            "t.toml:7:17: endpoint `hooks-github`: public_origin must be an origin"
                        ),
                        "{origin}: {err}"
                    );
                    assert!(!err.contains("t0ken"), "{err}");
                }
                (Ok(_), None) => panic!("{origin}: accepted"),
                (Err(err), Some(_)) => panic!("{origin}: {err}"),
            }
        }
    }

    /// A key for another provider is refused at its position (it was ignored).
    #[test]
    fn keys_for_other_providers_are_refused() {
        for (line, error) in [
            (
                "url = \"https://e.com/x\"",
                "t.toml:7:7: endpoint `hooks-github`: `url` is for square, trello, not github",
            ),
            (
                "public_origin = \"https://h\"",
                "t.toml:7:17: endpoint `hooks-github`: `public_origin` is for twilio, hubspot, hubspot-v2, not github",
            ),
            (
                "webhook_id = \"WH-1\"",
                "t.toml:7:14: endpoint `hooks-github`: `webhook_id` is for paypal, not github",
            ),
            (
                "certificate_file = \"c.pem\"",
                "t.toml:7:20: endpoint `hooks-github`: `certificate_file` is for paypal, not github",
            ),
            (
                "verify_token = \"t0ken\"",
                "t.toml:7:16: endpoint `hooks-github`: `verify_token` is for meta, not github",
            ),
            (
                "verify_token_env = \"TOKEN\"",
                "t.toml:7:20: endpoint `hooks-github`: `verify_token_env` is for meta, not github",
            ),
        ] {
            assert_eq!(check(&format!("{OK}{line}\n")).err().as_deref(), Some(error), "{line}");
        }
        // Where they apply, they are taken.
        let meta = OK.replace("\"github\"", "\"meta\"") + "verify_token = \"t0ken\"\n";
        assert!(check(&meta).unwrap().endpoints[0].handshake.is_some());

        // PayPal verifies with its certificate and the webhook id: a secret was read, then
        // ignored (and `serve --check` failed over a demo secret it would never use).
        #[cfg(feature = "rsa")]
        {
            let cert = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/providers/testdata/paypal_cert.pem");
            let paypal =
                OK.replace("\"github\"", "\"paypal\"").replace("secret = \"s\"", "webhook_id = \"WH-1\"");
            for (line, at) in [
                ("secret = \"t0ken\"", "7:10: endpoint `hooks-github`: `secret`"),
                ("secret = [\"t0ken\", \"t1ken\"]", "7:10: endpoint `hooks-github`: `secret`"),
                ("secret_env = \"PP_SECRET\"", "7:14: endpoint `hooks-github`: `secret_env`"),
                ("secret_env_default = \"t0ken\"", "7:22: endpoint `hooks-github`: `secret_env_default`"),
                ("secret_file = \"pp.secret\"", "7:15: endpoint `hooks-github`: `secret_file`"),
            ] {
                let text = format!("{paypal}{line}\ncertificate_file = {cert:?}\n");
                let err = check(&text).err().unwrap_or_else(|| panic!("{line}: accepted"));
                assert_eq!(
                    err,
                    format!(
                        "t.toml:{at} is not for paypal, which verifies with PayPal's certificate \
                         (`certificate_file`) and `webhook_id`: remove it"
                    ),
                    "{line}"
                );
            }
            // Its own keys are taken, and no secret is asked for.
            let config = check(&format!("{paypal}certificate_file = {cert:?}\n")).unwrap();
            assert!(config.endpoints[0].demo_secret.is_none());
        }
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let err = check(&OK.replace("secret = \"s\"", "secret = \"s\"\nsecrte = \"t\"")).err().unwrap();
        assert!(err.starts_with("t.toml:6:1: unknown field `secrte`"), "{err}");
    }

    #[test]
    fn missing_env_is_an_error_unless_a_default_is_given() {
        let text = OK.replace("secret = \"s\"", "secret_env = \"GH_SECRET\"");
        let err = check(&text).err().unwrap();
        assert_eq!(
            err,
            "t.toml:5:14: endpoint `hooks-github`: environment variable GH_SECRET is not set (secret_env)"
        );
        let text = OK.replace("secret = \"s\"", "secret_env = \"GH_SECRET\"\nsecret_env_default = \"demo\"");
        let c = check(&text).unwrap();
        let demo = c.endpoints[0].demo_secret.as_ref().expect("the demo secret");
        assert_eq!(demo.vars, ["GH_SECRET"]);
        assert_eq!(demo.at, "t.toml:6:22");
        let found = parse(&text.replace("secret_env_default = \"demo\"", ""), Path::new("t.toml"), &|v| {
            (v == "GH_SECRET").then(|| "x".to_owned())
        });
        assert!(found.unwrap().endpoints[0].demo_secret.is_none());
    }

    /// The demo secret of `secret_env_default` cannot go with a real secret source: it
    /// verified beside the real secret (and signed, being first).
    #[test]
    fn a_demo_secret_goes_with_no_other_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gh.secret");
        std::fs::write(&file, "t0ken\n").unwrap();
        let demo = "secret_env = \"GH_SECRET\"\nsecret_env_default = \"demo\"";
        for (key, with) in
            [("secret_file", format!("secret_file = {file:?}")), ("secret", "secret = \"t0ken\"".into())]
        {
            let text = OK.replace("secret = \"s\"", &format!("{demo}\n{with}"));
            let err = check(&text).err().unwrap_or_else(|| panic!("{key}: accepted"));
            assert_eq!(
                err,
                format!(
                    "t.toml:6:22: endpoint `hooks-github`: secret_env_default (a demo secret) cannot go with \
                     `{key}`: it would verify beside the real secret; remove secret_env_default"
                )
            );
            assert!(!err.contains("\"demo\"") && !err.contains("t0ken"), "{err}");
        }
    }

    /// A variable set but empty (`GH_SECRET=` in a compose file) is an error naming it,
    /// with a default or without: the default (a published demo secret) was used.
    #[test]
    fn an_empty_secret_env_is_an_error_even_with_a_default() {
        let empty = |v: &str| (v == "GH_SECRET").then(String::new);
        let with_default =
            OK.replace("secret = \"s\"", "secret_env = \"GH_SECRET\"\nsecret_env_default = \"demo\"");
        let err = parse(&with_default, Path::new("t.toml"), &empty).err().unwrap();
        assert_eq!(
            err,
            "t.toml:5:14: endpoint `hooks-github`: environment variable GH_SECRET is set but empty or not UTF-8 \
             (secret_env); secret_env_default applies only when it is unset"
        );
        let without = OK.replace("secret = \"s\"", "secret_env = \"GH_SECRET\"");
        let err = parse(&without, Path::new("t.toml"), &empty).err().unwrap();
        assert_eq!(
            err,
            "t.toml:5:14: endpoint `hooks-github`: environment variable GH_SECRET is set but empty or not UTF-8 (secret_env)"
        );
        // One of two (rotation) empty: an error too, though the other is set.
        let two = OK.replace(
            "secret = \"s\"",
            "secret_env = [\"GH_SECRET\", \"GH_OLD\"]\nsecret_env_default = \"demo\"",
        );
        let one_empty = |v: &str| match v {
            "GH_SECRET" => Some("x".to_owned()),
            "GH_OLD" => Some(String::new()),
            _ => None,
        };
        let err = parse(&two, Path::new("t.toml"), &one_empty).err().unwrap();
        assert!(err.contains("environment variable GH_OLD is set but empty"), "{err}");
    }

    #[test]
    fn mistakes_are_located() {
        for (from, to, expected) in [
            (
                "provider = \"github\"",
                "provider = \"gitbub\"",
                "t.toml:4:12: endpoint `hooks-github`: unknown provider `gitbub`",
            ),
            (
                "append_to = \"/tmp/x.jsonl\"",
                "",
                "t.toml:2:1: endpoint `hooks-github`: say what a processed webhook does",
            ),
            (
                "path = \"/hooks/github\"",
                "path = \"hooks\"",
                "t.toml:3:8: endpoint path `hooks` must start with `/`",
            ),
            (
                "append_to = \"/tmp/x.jsonl\"",
                "forward_to = \"http://[::1/x\"",
                "t.toml:6:14: endpoint `hooks-github`: forward_to must be an http:// or https:// URL",
            ),
            (
                "secret = \"s\"",
                "secret = \"s\"\ntolerance_secs = 60",
                "t.toml:6:18: endpoint `hooks-github`: github signs no timestamp",
            ),
        ] {
            let err = check(&OK.replace(from, to)).err().unwrap();
            assert!(err.starts_with(expected), "{err}\nexpected: {expected}");
        }
        let err = check(&format!("[inbox]\nbackend = \"mysql\"\n{OK}")).err().unwrap();
        assert!(
            err.starts_with("t.toml:2:11: [inbox] unknown backend: `backend` is one of memory, sqlite"),
            "{err}"
        );
        let err = check(&format!("{OK}\n[[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"s\"\nappend_to = \"x\"\n"))
            .err()
            .unwrap();
        assert!(err.contains("two endpoints have the path /hooks/github"), "{err}");
    }

    /// An allow-list from `allow` and `allow_file` keeps the listed ranges when the file is
    /// reloaded (a reload put the file's ranges alone in force); a bad or empty file keeps
    /// the ranges in force.
    #[test]
    fn an_allow_file_reload_keeps_the_listed_ranges() {
        let dir = std::env::temp_dir().join(format!("hookguard-allow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("allow.txt");
        std::fs::write(&file, "192.0.2.0/24\n").unwrap();
        let text = format!("{OK}allow = [\"198.51.100.0/24\"]\nallow_file = {file:?}\n");
        let c = check(&text).unwrap();
        let (list, reload) = c.endpoints[0].allow.as_ref().expect("an allow-list");
        let reload = reload.as_ref().expect("a reload");
        let allows = |ip: &str| list.contains(ip.parse().unwrap());
        assert!(allows("198.51.100.7") && allows("192.0.2.7"), "both at start");

        std::fs::write(&file, "203.0.113.0/24\n").unwrap();
        assert_eq!(reload_allow(list, reload), Ok(2));
        for (name, ip, want) in [
            ("listed", "198.51.100.7", true),
            ("the file's new range", "203.0.113.7", true),
            ("the file's old range", "192.0.2.7", false),
        ] {
            assert_eq!(allows(ip), want, "{name}");
        }

        for (name, content) in [("a bad line", "not a range\n"), ("no range (truncated)", "")] {
            std::fs::write(&file, content).unwrap();
            assert!(reload_allow(list, reload).is_err(), "{name}");
            assert!(allows("198.51.100.7") && allows("203.0.113.7"), "{name}: the ranges stay");
        }
        let err = check(&text).err().unwrap();
        assert!(err.starts_with("t.toml:8:14: endpoint `hooks-github`: allow_file: "), "{err}");
        assert!(err.contains("holds no range"), "{err}");

        // Read again every minute unless told; at most once a day.
        std::fs::write(&file, "192.0.2.0/24\n").unwrap();
        let every = |text: &str| {
            let c = check(text).unwrap();
            c.endpoints[0].allow.as_ref().and_then(|(_, r)| r.as_ref()).map(|r| r.every)
        };
        assert_eq!(every(&text), Some(Duration::from_secs(60)));
        assert_eq!(every(&format!("{text}allow_reload_secs = 86400\n")), Some(Duration::from_secs(86_400)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Values that were accepted and broke the server without a word (an inbox or body
    /// limit of 0 refusing every delivery, a back-off of 0 spending every attempt at once),
    /// and options that were ignored without a word, are refused at their position.
    #[test]
    fn values_that_would_break_or_be_ignored_are_refused() {
        let meta = OK.replace("\"github\"", "\"meta\"");
        for (name, text, error) in [
            (
                "an inbox of no room",
                format!("[inbox]\ncapacity = 0\n{OK}"),
                "t.toml:2:12: [inbox] capacity must be at least 1 (0 would refuse every delivery)",
            ),
            (
                "a body limit of 0",
                format!("{OK}body_limit = 0\n"),
                "t.toml:7:14: endpoint `hooks-github`: body_limit must be at least 1 (0 would refuse every \
                 delivery with a body)",
            ),
            (
                "a back-off of 0",
                format!("[worker]\nbackoff_base_ms = 0\n{OK}"),
                "t.toml:2:19: [worker] backoff_base_ms must be at least 1",
            ),
            (
                "a back-off capped at 0",
                format!("[worker]\nbackoff_max_secs = 0\n{OK}"),
                "t.toml:2:20: [worker] backoff_max_secs must be at least 1",
            ),
            (
                "a back-off starting above its cap",
                format!("[worker]\nbackoff_base_ms = 5001\nbackoff_max_secs = 5\n{OK}"),
                "t.toml:2:19: [worker] backoff_base_ms (5001 ms) is above backoff_max_secs (5 s), which caps \
                 every delay",
            ),
            (
                "a time limit for append_to",
                format!("{OK}timeout_secs = 5\n"),
                "t.toml:7:16: endpoint `hooks-github`: timeout_secs is for `run` and `forward_to`: `append_to` \
                 has no time limit",
            ),
            (
                "a reload period without a file",
                format!("{OK}allow = [\"192.0.2.0/24\"]\nallow_reload_secs = 30\n"),
                "t.toml:8:21: endpoint `hooks-github`: allow_reload_secs is how often `allow_file` is read \
                 again: it needs `allow_file`",
            ),
            (
                "a reload period of 0",
                format!("{OK}allow_file = \"ranges.txt\"\nallow_reload_secs = 0\n"),
                "t.toml:8:21: endpoint `hooks-github`: allow_reload_secs must be between 1 and 86400 (a day)",
            ),
            (
                "a forwarded header with no proxy to believe",
                format!("[server]\nforwarded_header = \"forwarded\"\n{OK}"),
                "t.toml:2:20: [server] forwarded_header needs trusted_proxies (the proxies whose header is \
                 believed)",
            ),
            (
                "a forwarded header with an empty list of proxies",
                format!("[server]\ntrusted_proxies = []\nforwarded_header = \"forwarded\"\n{OK}"),
                "t.toml:2:19: [server] trusted_proxies holds no range: forwarded_header would never be believed \
                 (list your proxies' ranges, or remove forwarded_header)",
            ),
            (
                "a forwarded header with a list of proxies holding no range",
                format!(
                    "[server]\nforwarded_header = \"x-forwarded-for\"\ntrusted_proxies = [\" # none\"]\n{OK}"
                ),
                "t.toml:3:19: [server] trusted_proxies holds no range: forwarded_header would never be believed \
                 (list your proxies' ranges, or remove forwarded_header)",
            ),
            (
                "a verify token with the handshake off",
                format!("{meta}handshake = false\nverify_token = \"t0ken\"\n"),
                "t.toml:8:16: endpoint `hooks-github`: `verify_token` is for Meta's subscription handshake, \
                 which handshake = false turns off: remove one of them",
            ),
            (
                "a verify token variable with the handshake off",
                format!("{meta}verify_token_env = \"TOKEN\"\nhandshake = false\n"),
                "t.toml:7:20: endpoint `hooks-github`: `verify_token_env` is for Meta's subscription handshake, \
                 which handshake = false turns off: remove one of them",
            ),
            (
                "no connection at a time",
                format!("[server]\nmax_connections = 0\n{OK}"),
                "t.toml:2:19: [server] max_connections must be between 1 and 1000000",
            ),
        ] {
            assert_eq!(check(&text).err().as_deref(), Some(error), "{name}");
        }
        // Their sound neighbours are taken.
        for (name, text) in [
            ("no grace at shutdown", format!("[server]\nshutdown_grace_secs = 0\n{OK}")),
            ("an inbox of one", format!("[inbox]\ncapacity = 1\n{OK}")),
            ("a body of one byte", format!("{OK}body_limit = 1\n")),
            (
                "a back-off at its cap",
                format!("[worker]\nbackoff_base_ms = 5000\nbackoff_max_secs = 5\n{OK}"),
            ),
            (
                "a forwarded header with its proxies",
                format!(
                    "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\nforwarded_header = \"forwarded\"\n{OK}"
                ),
            ),
            ("no trusted proxy, and no header to believe", format!("[server]\ntrusted_proxies = []\n{OK}")),
            ("a verify token with the handshake", format!("{meta}verify_token = \"t0ken\"\n")),
            ("a meta endpoint without its handshake", format!("{meta}handshake = false\n")),
            ("one connection at a time", format!("[server]\nmax_connections = 1\n{OK}")),
        ] {
            if let Err(err) = check(&text) {
                panic!("{name}: refused: {err}");
            }
        }
        assert_eq!(check(OK).unwrap().max_connections, DEFAULT_MAX_CONNECTIONS);
    }

    /// A key that takes a string or a list of strings says so when given something else
    /// (serde's untagged enum said "data did not match any variant of untagged enum
    /// OneOrMany"), without the value.
    #[test]
    fn a_string_or_a_list_of_strings_is_asked_for() {
        for (name, given, error) in [
            (
                "a number",
                "secret_env = 123456",
                "t.toml:5:14: invalid type: integer, expected a string or a list of strings (the value is not shown)",
            ),
            (
                "a boolean",
                "secret = true",
                "t.toml:5:10: invalid type: boolean, expected a string or a list of strings (the value is not shown)",
            ),
            (
                "a table",
                "secret_file = { path = \"t0ken\" }",
                "t.toml:5:15: invalid type: map, expected a string or a list of strings",
            ),
            (
                "a list holding a number",
                "secret_env = [\"GH_SECRET\", 123456]",
                "t.toml:5:28: invalid type: integer, expected a string (the value is not shown)",
            ),
        ] {
            let err = check(&OK.replace("secret = \"s\"", given))
                .err()
                .unwrap_or_else(|| panic!("{name}: accepted"));
            assert_eq!(err, error, "{name}");
        }
        let both = OK.replace("secret = \"s\"", "secret = [\"s\", \"old\"]");
        assert!(check(&both).is_ok());
    }

    /// Every variable the file names for a secret, token or URL is recorded, set or not.
    #[test]
    fn the_secret_variables_are_recorded() {
        let text = format!(
            "[inbox]\nbackend = \"redis\"\nurl_env = \"INBOX_URL\"\n[replay]\nbackend = \"redis\"\nurl_env = \"REPLAY_URL\"\n{}\n\
             [[endpoint]]\npath = \"/hooks/meta\"\nprovider = \"meta\"\nsecret_env = \"META_SECRET\"\nverify_token_env = \"META_TOKEN\"\nappend_to = \"x\"\n\
             [[endpoint]]\npath = \"/hooks/twilio\"\nprovider = \"twilio\"\nsecret = \"s\"\nshared_key_env = [\"TW_KEY\", \"TW_OLD_KEY\"]\n\
             public_origin = \"https://h\"\nappend_to = \"x\"\n",
            OK.replace("secret = \"s\"", "secret_env = [\"GH_SECRET\", \"GH_OLD_SECRET\"]")
        );
        let c = parse(&text, Path::new("t.toml"), &|v| (v != "UNREAD").then(|| "x".to_owned())).unwrap();
        assert_eq!(
            c.secret_vars,
            [
                "GH_OLD_SECRET",
                "GH_SECRET",
                "INBOX_URL",
                "META_SECRET",
                "META_TOKEN",
                "REPLAY_URL",
                "TW_KEY",
                "TW_OLD_KEY",
            ]
        );
    }

    /// A lease of 0 runs nothing, a time limit of 0 fails everything, and a time limit at or
    /// above the lease is cut at the lease: all three are refused.
    #[test]
    fn time_limits_fit_the_lease() {
        let run = OK.replace("append_to = \"/tmp/x.jsonl\"", "run = [\"true\"]");
        for (name, text, error) in [
            (
                "lease 0",
                format!("[worker]\nlease_secs = 0\n{OK}"),
                Some("t.toml:2:14: [worker] lease_secs must be at least 1"),
            ),
            (
                "timeout 0",
                format!("{run}timeout_secs = 0\n"),
                Some("t.toml:7:16: endpoint `hooks-github`: timeout_secs must be at least 1"),
            ),
            (
                "timeout 0, append_to",
                format!("{OK}timeout_secs = 0\n"),
                Some("t.toml:7:16: endpoint `hooks-github`: timeout_secs is for `run` and `forward_to`"),
            ),
            (
                "timeout at the lease",
                format!("[worker]\nlease_secs = 20\n{run}timeout_secs = 20\n"),
                Some(
                    "t.toml:9:16: endpoint `hooks-github`: timeout_secs (20) is not below [worker] lease_secs (20), where the worker stops a handler: raise lease_secs or lower timeout_secs",
                ),
            ),
            (
                "default timeout above the lease",
                format!("[worker]\nlease_secs = 10\n{run}"),
                Some(
                    "t.toml:4:1: endpoint `hooks-github`: timeout_secs (30, the default) is not below [worker] lease_secs (10)",
                ),
            ),
            (
                "forward_to",
                format!(
                    "[worker]\nlease_secs = 10\n{}",
                    OK.replace("append_to = \"/tmp/x.jsonl\"", "forward_to = \"http://127.0.0.1:9/\"")
                ),
                Some("t.toml:4:1: endpoint `hooks-github`: timeout_secs (30, the default) is not below"),
            ),
            ("append_to has no time limit", format!("[worker]\nlease_secs = 10\n{OK}"), None),
            ("timeout below the lease", format!("[worker]\nlease_secs = 20\n{run}timeout_secs = 19\n"), None),
            ("defaults", run.clone(), None),
        ] {
            match (check(&text), error) {
                (Ok(_), None) => {}
                (Err(err), Some(error)) => assert!(err.starts_with(error), "{name}: {err}"),
                (Ok(_), Some(_)) => panic!("{name}: accepted"),
                (Err(err), None) => panic!("{name}: refused: {err}"),
            }
        }
    }

    /// Values past what the server can use are refused at their position: a billion lanes,
    /// a lease or reload period whose time arithmetic overflows, a rate-limit period
    /// governor cannot count (the library's error, located), `failures_per_secs` without
    /// the `failures` it is the period of.
    #[test]
    fn absurd_values_are_refused() {
        let limit = |fields: &str| format!("{OK}rate_limit = {{ {fields} }}\n");
        for (name, text, error) in [
            (
                "concurrency 0",
                format!("[worker]\nconcurrency = 0\n{OK}"),
                Some("t.toml:2:15: [worker] concurrency must be between 1 and 10000"),
            ),
            (
                "a billion lanes",
                format!("[worker]\nconcurrency = 1000000000\n{OK}"),
                Some("t.toml:2:15: [worker] concurrency must be between 1 and 10000"),
            ),
            ("10000 lanes", format!("[worker]\nconcurrency = 10000\n{OK}"), None),
            (
                "max_attempts 0",
                format!("[worker]\nmax_attempts = 0\n{OK}"),
                Some("t.toml:2:16: [worker] max_attempts must be at least 1"),
            ),
            (
                "a lease past a year",
                format!("[worker]\nlease_secs = 31536001\n{OK}"),
                Some("t.toml:2:14: [worker] lease_secs must be at most 31536000 (a year)"),
            ),
            (
                "the longest lease",
                format!("[worker]\nlease_secs = 18446744073709551615\n{OK}"),
                Some("t.toml:2:14: [worker] lease_secs must be at most 31536000 (a year)"),
            ),
            ("a year's lease", format!("[worker]\nlease_secs = 31536000\n{OK}"), None),
            (
                "a reload past a day",
                format!("{OK}allow = [\"192.0.2.0/24\"]\nallow_reload_secs = 86401\n"),
                Some(
                    "t.toml:8:21: endpoint `hooks-github`: allow_reload_secs must be between 1 and 86400 (a day)",
                ),
            ),
            (
                "the longest reload",
                format!("{OK}allow_reload_secs = 18446744073709551615\n"),
                Some("t.toml:7:21: endpoint `hooks-github`: allow_reload_secs must be between 1 and 86400"),
            ),
            (
                "an empty allow-list",
                format!("{OK}allow = []\n"),
                Some(
                    "t.toml:7:9: endpoint `hooks-github`: allow holds no range (it would refuse every delivery)",
                ),
            ),
            (
                "an allow-list of comments only",
                format!("{OK}allow = [\"# nothing yet\"]\n"),
                Some("t.toml:7:9: endpoint `hooks-github`: allow holds no range"),
            ),
            (
                "shared senders without an allow-list",
                format!("{OK}allow_shared = true\n"),
                Some("t.toml:7:16: endpoint `hooks-github`: allow_shared needs `allow` or `allow_file`"),
            ),
            (
                "shared senders with one",
                format!("{OK}allow = [\"192.0.2.0/24\"]\nallow_shared = true\n"),
                None,
            ),
            (
                "a request period governor cannot count",
                limit("requests = 100, per_secs = 18446744073709551615"),
                Some("t.toml:7:14: endpoint `hooks-github`: rate_limit: "),
            ),
            (
                "a failure period governor cannot count",
                limit(
                    "requests = 100, per_secs = 10, failures = 3, failures_per_secs = 18446744073709551615",
                ),
                Some("t.toml:7:14: endpoint `hooks-github`: rate_limit: "),
            ),
            (
                "failures_per_secs without failures",
                limit("requests = 100, per_secs = 10, failures_per_secs = 3600"),
                Some(
                    "t.toml:7:14: endpoint `hooks-github`: rate_limit: `failures_per_secs` is the period of `failures`: give both",
                ),
            ),
            (
                "failures without failures_per_secs",
                limit("requests = 100, per_secs = 10, failures = 3"),
                None,
            ),
        ] {
            match (check(&text), error) {
                (Ok(_), None) => {}
                (Err(err), Some(error)) => assert!(err.starts_with(error), "{name}: {err}"),
                (Ok(_), Some(_)) => panic!("{name}: accepted"),
                (Err(err), None) => panic!("{name}: refused: {err}"),
            }
        }
    }

    /// A `run` program given as a path is resolved against the configuration's folder (the
    /// server may run elsewhere) and must be an executable file; a bare name stays a PATH
    /// lookup and must be found there. `append_to`'s folder must exist. Each mistake is
    /// located.
    #[cfg(unix)]
    #[test]
    fn actions_name_what_exists() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (conf, bin) = (dir.path().join("conf"), dir.path().join("bin"));
        for folder in [conf.join("scripts"), bin.clone()] {
            std::fs::create_dir_all(folder).unwrap();
        }
        for (file, mode) in
            [(conf.join("handle.sh"), 0o755), (conf.join("plain.txt"), 0o644), (bin.join("tool"), 0o755)]
        {
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let file = conf.join("t.toml");
        let path = bin.to_str().unwrap().to_owned();
        let env = move |v: &str| (v == "PATH").then(|| path.clone());
        let action = |line: &str| {
            let text = OK.replace("append_to = \"/tmp/x.jsonl\"", line);
            parse(&text, &file, &env).map(|c| c.endpoints[0].action.clone())
        };
        let run = |program: &str| action(&format!("run = [{program:?}, \"arg\"]"));
        let argv = |action: Action| match action {
            Action::Run { argv, .. } => argv,
            other => panic!("{other:?}"),
        };
        assert_eq!(argv(run("./handle.sh").unwrap()), [conf.join("./handle.sh").to_str().unwrap(), "arg"]);
        assert_eq!(
            argv(run("scripts/../handle.sh").unwrap())[0],
            conf.join("scripts/../handle.sh").to_str().unwrap()
        );
        let absolute = conf.join("handle.sh");
        assert_eq!(argv(run(absolute.to_str().unwrap()).unwrap())[0], absolute.to_str().unwrap());
        assert_eq!(argv(run("tool").unwrap()), ["tool", "arg"], "a bare name stays a PATH lookup");
        for (name, program, says) in [
            ("missing", "./missing.sh", "does not exist"),
            ("not executable", "./plain.txt", "is not executable"),
            ("a folder", "./scripts", "is not a file"),
            ("a bare name not on PATH", "handle.sh", "is not found on PATH"),
        ] {
            let err = run(program).err().unwrap_or_else(|| panic!("{name}: accepted"));
            let at = format!("{}:6:7: endpoint `hooks-github`: `run` program ", file.display());
            assert!(err.starts_with(&at), "{name}: {err}");
            assert!(err.contains(says), "{name}: {err}");
        }

        let canonical = conf.canonicalize().unwrap();
        for (given, want) in [
            ("out.jsonl", "out.jsonl"),
            ("scripts/../out.jsonl", "out.jsonl"),
            ("scripts/o.jsonl", "scripts/o.jsonl"),
        ] {
            match action(&format!("append_to = {given:?}")) {
                Ok(Action::AppendTo(path)) => assert_eq!(path, canonical.join(want), "{given}"),
                other => panic!("{given}: {other:?}"),
            }
        }
        for (name, given, says) in [
            ("a missing folder", "nowhere/out.jsonl", "the folder it is written in does not exist"),
            ("a folder", "scripts", "is a folder"),
        ] {
            let err =
                action(&format!("append_to = {given:?}")).err().unwrap_or_else(|| panic!("{name}: accepted"));
            let at = format!("{}:6:13: endpoint `hooks-github`: append_to ", file.display());
            assert!(err.starts_with(&at) && err.contains(says), "{name}: {err}");
        }
    }

    /// A value of the wrong type is not repeated (a secret in the wrong key, or a secret
    /// token written as a number); where it is and what was expected are.
    #[test]
    fn a_value_of_the_wrong_type_is_not_repeated() {
        for (name, line, error) in [
            (
                "a number token",
                "verify_token = 123456",
                "t.toml:7:16: invalid type: integer, expected a string",
            ),
            (
                "a secret where a number goes",
                "tolerance_secs = \"whsec_t0ken\"",
                "t.toml:7:18: invalid type: string, expected u64",
            ),
            (
                "a secret that looks like the message",
                "handshake = \"t0ken\\\", expected u64\"",
                "t.toml:7:13: invalid type: string, expected a boolean",
            ),
            (
                "a negative number",
                "body_limit = -1234560",
                "t.toml:7:14: invalid value: integer, expected usize",
            ),
            ("a float", "timeout_secs = 123456.5", "t.toml:7:16: invalid type: floating point, expected u64"),
            (
                "a huge number",
                "timeout_secs = 123456999999999999999999",
                "t.toml:7:16: invalid type: integer",
            ),
            (
                "a boolean",
                "secret_env_default = true",
                "t.toml:7:22: invalid type: boolean, expected a string",
            ),
            (
                "a list",
                "verify_token = [\"t0ken\"]",
                "t.toml:7:16: invalid type: sequence, expected a string",
            ),
            ("unquoted", "verify_token = t0ken", "t.toml:7:16: "),
        ] {
            let err = check(&format!("{OK}{line}\n")).err().unwrap_or_else(|| panic!("{name}: accepted"));
            assert!(err.starts_with(error), "{name}: {err}");
            for shown in ["t0ken", "123456"] {
                assert!(!err.contains(shown), "{name}: {err}");
            }
        }
        // The key of an unknown field is still named.
        let err = check(&format!("{OK}secrte = \"t0ken\"\n")).err().unwrap();
        assert!(err.starts_with("t.toml:7:1: unknown field `secrte`, expected one of"), "{err}");
        assert!(!err.contains("t0ken"), "{err}");
    }

    /// A configuration, secret or certificate file past 1 MiB is refused, not read whole.
    #[test]
    fn files_past_their_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; (1 << 20) + 1]).unwrap();
        let err = load(&big, &no_env).err().unwrap();
        assert_eq!(err, format!("{}: cannot read: it holds more than 1 MiB, the most it may", big.display()));
        for key in ["secret_file", "shared_key_file", "certificate_file"] {
            let text = OK.replace("secret = \"s\"", &format!("secret = \"s\"\n{key} = {big:?}"));
            let text = match key {
                "shared_key_file" => {
                    text.replace("\"github\"", "\"twilio\"") + "public_origin = \"https://h\"\n"
                }
                // PayPal takes no secret: its webhook id in the secret's place.
                "certificate_file" => text
                    .replace("\"github\"", "\"paypal\"")
                    .replace("secret = \"s\"", "webhook_id = \"WH-1\""),
                _ => text,
            };
            let err = check(&text).err().unwrap();
            assert!(err.starts_with("t.toml:6:"), "{key}: {err}");
            assert!(err.ends_with("it holds more than 1 MiB, the most it may"), "{key}: {err}");
        }
    }

    /// A backend key the chosen backend does not use is an error at its position (it was
    /// ignored: `path` with the default memory backend looked durable).
    #[test]
    fn backend_keys_belong_to_their_backend() {
        let env = |v: &str| (v == "REDIS_URL").then(|| "redis://127.0.0.1:6379".to_owned());
        for (name, section, error) in [
            (
                "path without a backend",
                "[inbox]\npath = \"inbox.db\"",
                Some("t.toml:2:8: [inbox] `path` is only for backend = \"sqlite\""),
            ),
            (
                "path with memory",
                "[inbox]\nbackend = \"memory\"\npath = \"inbox.db\"",
                Some("t.toml:3:8: [inbox] `path` is only for backend = \"sqlite\""),
            ),
            (
                "url with sqlite",
                "[inbox]\nbackend = \"sqlite\"\npath = \"i.db\"\nurl = \"redis://h\"",
                Some("t.toml:4:7: [inbox] `url` is only for backend = \"redis\" or \"postgres\""),
            ),
            (
                "url_env with memory",
                "[inbox]\nurl_env = \"REDIS_URL\"",
                Some("t.toml:2:11: [inbox] `url_env` is only for backend = \"redis\" or \"postgres\""),
            ),
            (
                "path with redis",
                "[inbox]\nbackend = \"redis\"\nurl = \"redis://h\"\npath = \"i.db\"",
                Some("t.toml:4:8: [inbox] `path` is only for backend = \"sqlite\""),
            ),
            (
                "path with postgres",
                "[inbox]\nbackend = \"postgres\"\nurl_env = \"REDIS_URL\"\npath = \"i.db\"",
                Some("t.toml:4:8: [inbox] `path` is only for backend = \"sqlite\""),
            ),
            (
                "replay: path with memory",
                "[replay]\npath = \"r.db\"",
                Some("t.toml:2:8: [replay] `path` is only for backend = \"sqlite\""),
            ),
            ("sqlite", "[inbox]\nbackend = \"sqlite\"\npath = \"i.db\"\ncapacity = 10", None),
            ("redis", "[inbox]\nbackend = \"redis\"\nurl_env = \"REDIS_URL\"\ncapacity = 10", None),
            ("memory", "[inbox]\ncapacity = 10", None),
        ] {
            let text = format!("{section}\n{OK}");
            match (parse(&text, Path::new("t.toml"), &env), error) {
                (Ok(_), None) => {}
                (Err(err), Some(error)) => assert_eq!(err, error, "{name}"),
                (Ok(_), Some(_)) => panic!("{name}: accepted"),
                (Err(err), None) => panic!("{name}: refused: {err}"),
            }
        }
    }

    /// Paths the router would refuse at start (or take for captures) are refused by the
    /// check, naming the line and column.
    #[test]
    fn endpoint_paths_are_literal_uri_paths() {
        for (name, path, problem) in [
            ("axum 0.7 capture", "/hooks/:provider", Some("has a segment starting with `:` or `*`")),
            ("wildcard", "/hooks/*rest", Some("has a segment starting with `:` or `*`")),
            ("capture", "/hooks/{provider}", Some("has `{` or `}`")),
            ("lone brace", "/hooks/a}b", Some("has `{` or `}`")),
            ("query", "/hooks/github?x=1", Some("has a `?` or `#`")),
            ("fragment", "/hooks/github#x", Some("has a `?` or `#`")),
            ("space", "/hooks/git hub", Some("is not a valid URI path")),
            ("quote", "/hooks/\\\"x\\\"", Some("is not a valid URI path")),
            ("pipe", "/hooks/a|b", Some("is not a valid URI path")),
            ("bad percent-encoding", "/hooks/a%2", Some("is not a valid URI path")),
            ("non-ASCII", "/hooks/é", Some("is not a valid URI path")),
            ("colon inside a segment", "/hooks/a:b", None),
            ("star inside a segment", "/hooks/a*b", None),
            ("unreserved and encoded", "/hooks/a-b_c.d~e%20f", None),
            ("trailing slash", "/hooks/github/", None),
        ] {
            let text = OK.replace("\"/hooks/github\"", &format!("\"{path}\""));
            match (check(&text), problem) {
                (Ok(_), None) => {}
                (Err(err), Some(problem)) => {
                    assert!(err.starts_with("t.toml:3:8: endpoint path `"), "{name}: {err}");
                    assert!(err.contains(problem), "{name}: {err}");
                }
                (Ok(_), Some(_)) => panic!("{name}: {path} was accepted"),
                (Err(err), None) => panic!("{name}: {path} was refused: {err}"),
            }
        }
    }

    /// An asana endpoint whose lone secret file does not exist yet, or is empty, awaits its
    /// handshake; one that holds a secret is read as today. Without the handshake, with
    /// other secrets, or in a folder that does not exist, a missing file is an error.
    #[test]
    fn an_asana_secret_file_may_await_the_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| dir.path().join(name);
        std::fs::write(file("empty.secret"), "\n").unwrap();
        std::fs::write(file("full.secret"), "s3cret\n").unwrap();
        let asana = |keys: &str| {
            format!(
                "[[endpoint]]\npath = \"/hooks/asana\"\nprovider = \"asana\"\nappend_to = \"x\"\n{keys}\n"
            )
        };
        let at = |name: &str| format!("secret_file = {:?}", file(name));
        let awaits = |name: &str| Some(file(name));
        for (name, keys, want) in [
            ("missing", at("missing.secret"), Ok(awaits("missing.secret"))),
            ("empty", at("empty.secret"), Ok(awaits("empty.secret"))),
            ("holding a secret", at("full.secret"), Ok(None)),
            (
                "handshake off",
                format!("{}\nhandshake = false", at("missing.secret")),
                Err("cannot read secret file"),
            ),
            (
                "with a literal",
                format!("{}\nsecret = \"s\"", at("missing.secret")),
                Err("cannot read secret file"),
            ),
            (
                "in a missing folder",
                at("nowhere/missing.secret"),
                Err("the folder the handshake's secret is written to does not exist"),
            ),
            (
                "with a tolerance",
                format!("{}\ntolerance_secs = 60", at("missing.secret")),
                Err("asana signs no timestamp"),
            ),
        ] {
            match (check(&asana(&keys)), want) {
                (Ok(c), Ok(want)) => {
                    let got = match &c.endpoints[0].keys {
                        Keys::Handshake(file) => Some(file.clone()),
                        Keys::Configured(scheme) => {
                            assert_eq!(scheme.provider(), "asana", "{name}");
                            None
                        }
                    };
                    assert_eq!(got, want, "{name}");
                }
                (Err(err), Err(want)) => assert!(err.contains(want), "{name}: {err}"),
                (Ok(_), Err(want)) => panic!("{name}: accepted, expected {want}"),
                (Err(err), Ok(_)) => panic!("{name}: refused: {err}"),
            }
        }
        // A secret file elsewhere than asana is read as today.
        let err = check(&OK.replace("secret = \"s\"", &at("missing.secret"))).err().unwrap();
        assert!(err.contains("cannot read secret file"), "{err}");
    }

    /// An unknown backend is not repeated (it may be a URL with a password); one that looks
    /// like a URL is told to go to `url`.
    #[test]
    fn an_unknown_backend_is_not_repeated() {
        for (name, given, says) in [
            (
                "a name",
                "mysql",
                "[inbox] unknown backend: `backend` is one of memory, sqlite, redis, postgres",
            ),
            ("a word", "pa55word", "[inbox] unknown backend: `backend` is one of"),
            (
                "redis URL",
                "redis://:pa55word@cache:6379",
                "set backend = \"redis\" and give the URL with `url`",
            ),
            ("rediss URL", "rediss://u:pa55word@cache", "set backend = \"redis\""),
            ("postgres URL", "postgresql://app:pa55word@db/hooks", "set backend = \"postgres\""),
            (
                "other URL",
                "mysql://root:pa55word@db",
                "set `backend` to one of memory, sqlite, redis, postgres and give the URL with `url`",
            ),
        ] {
            for section in ["inbox", "replay"] {
                let err = check(&format!("[{section}]\nbackend = \"{given}\"\n{OK}")).err().unwrap();
                assert!(err.starts_with("t.toml:2:11: "), "{name}: {err}");
                assert!(err.contains(&says.replace("inbox", section)), "{name}: {err}");
                assert!(!err.contains("pa55word") && !err.contains(given), "{name}: {err}");
            }
        }
    }

    /// The raw configuration's, the backends' and the actions' `Debug` show no secret, no
    /// URL path or query, no credentials, no command argument.
    #[test]
    fn debug_shows_no_secret() {
        let text = r#"
[inbox]
backend = "redis"
url = "redis://:t0ken-inbox@cache.internal:6379/0"

[replay]
backend = "redis://:t0ken-backend@cache.internal"

[[endpoint]]
path = "/hooks/meta"
provider = "meta"
secret = ["t0ken-secret-1", "t0ken-secret-2"]
secret_env = "META_SECRET"
secret_env_default = "t0ken-demo"
verify_token = "t0ken-verify"
url = "https://h.example/t0ken-signed"
forward_to = "https://discord.com/api/webhooks/123/t0ken-discord"

[[endpoint]]
path = "/hooks/slack"
provider = "slack"
secret = "t0ken-slack-secret"
forward_to = "https://hooks.slack.com/services/T0/B0/t0ken-slack"

[[endpoint]]
path = "/hooks/github"
provider = "github"
secret = "t0ken-github-secret"
run = ["curl", "-H", "Authorization: Bearer t0ken-run"]
"#;
        let raw: RawFile = toml::from_str(text).unwrap();
        let shown = format!("{raw:?}\n{raw:#?}\n{:?}", raw.endpoint[0].get_ref());
        assert!(!shown.contains("t0ken"), "{shown}");
        for part in [
            "secret: Some([[redacted], [redacted]])",
            "secret_env_default: Some([redacted])",
            "verify_token: Some([redacted])",
            "secret_env: Some(One(\"META_SECRET\"))",
            "url: Some(\"https://h.example/…\")",
            "forward_to: Some(\"https://discord.com/…\")",
            "forward_to: Some(\"https://hooks.slack.com/…\")",
            "run: Some([\"curl\", [redacted], [redacted]])",
            "backend: \"redis\"",
            "url: Some(\"redis://***@cache.internal:6379/…\")",
            "backend: [redacted]",
        ] {
            assert!(shown.contains(part), "{part}: {shown}");
        }

        for (value, want) in [
            (
                format!("{:?}", Backend::Redis { url: "redis://:t0ken@cache:6379/0".into(), capacity: None }),
                "Redis { url: \"redis://***@cache:6379/…\", capacity: None }",
            ),
            (
                format!(
                    "{:?}",
                    Backend::Postgres { url: "postgres://app:t0ken@db/h".into(), capacity: Some(5) }
                ),
                "Postgres { url: \"postgres://***@db/…\", capacity: Some(5) }",
            ),
            (
                format!(
                    "{:?}",
                    Action::Forward {
                        url: "https://hooks.slack.com/services/T0/B0/t0ken".into(),
                        timeout: Duration::from_secs(5),
                    }
                ),
                "Forward { url: \"https://hooks.slack.com/…\", timeout: 5s }",
            ),
            (
                format!(
                    "{:?}",
                    Action::Run {
                        argv: vec!["notify".into(), "--token=t0ken".into()],
                        timeout: Duration::from_secs(5),
                    }
                ),
                "Run { argv: [\"notify\", [redacted]], timeout: 5s }",
            ),
        ] {
            assert_eq!(value, want);
        }

        // Parsed, the same: the backends and actions as loaded.
        let env = |v: &str| (v == "META_SECRET").then(|| "t0ken-env".to_owned());
        let c = parse(
            // A demo secret goes with no other secret.
            &text
                .replace("backend = \"redis://:t0ken-backend@cache.internal\"", "")
                .replace("secret_env_default = \"t0ken-demo\"\n", "")
                // And `url` is for the providers that sign their registered URL.
                .replace("url = \"https://h.example/t0ken-signed\"\n", ""),
            Path::new("t.toml"),
            &env,
        )
        .unwrap();
        let shown = format!(
            "{:?} {:?} {:?} {:?}",
            c.inbox, c.endpoints[0].action, c.endpoints[1].action, c.endpoints[2].action
        );
        assert!(!shown.contains("t0ken"), "{shown}");
    }

    #[test]
    fn url_providers_need_their_url() {
        let text = OK.replace("\"github\"", "\"square\"");
        assert!(check(&text).err().unwrap().contains("square signs the URL it was registered with"));
        assert!(check(&text.replace("secret = \"s\"", "secret = \"s\"\nurl = \"https://e.com/sq\"")).is_ok());
    }
}
