//! `hookguard serve`: a ready-made receiver run from a configuration file.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use axum::{Router, http::header, routing::get};
use base64::Engine as _;
use hookguard::{
    guard::Guard,
    inbox::{DeadLetter, Inbox, MemoryInbox, Webhook},
    layer::{AllowListLayer, RateLimitLayer, WebhookService},
    verify::Scheme as _,
    worker::{Backoff, Worker},
};
use time::format_description::well_known::Rfc3339;
use tokio::{io::AsyncWriteExt as _, sync::Mutex};

use crate::{
    adopt::HandshakeSecret,
    common::{self, Failure},
    config::{self, Action, Backend, Config, Keys},
};

const EXAMPLE: &str = "\
The configuration (TOML) lists the endpoints (path, provider, where the secrets come from,
tolerance, body limit, what a processed webhook does), the inbox backend (its unique keys
refuse replays: a copy of a kept or processed delivery gets `200 duplicate`),
the worker pool, the listening address and TLS. Unknown keys and missing secrets are errors
naming FILE:LINE:COL. Besides the endpoints the server answers GET /healthz and, unless
`metrics = false`, GET /metrics (Prometheus text format) on the same listener: its labels
name the endpoints counted (`name`, by default the path: give an endpoint whose path is secret,
such as Asana's random segment, a `name`, or set `metrics = false`, when strangers can
reach the port). A client gets header_read_timeout_secs (30) to send a request's head,
and as long to take some of an answer being written: one that stops reading its answers
(pipelining requests whose answers it never reads) is cut off too. At most max_connections
(1024) connections are served at once; the next wait in the system's listen backlog (1024,
or the system's somaxconn if lower; past it they are refused) until one ends, so the bodies
being read take at most max_connections × body_limit of memory (1 GiB with the defaults).
Clients that send their heads slowly, or stop reading, can hold the connections for
header_read_timeout_secs each (one that reads its answers a few bytes at a time, longer):
put a proxy that limits connections per address in front of a public listener. `listen`
with a name (localhost:8080) binds the first address it resolves to that binds, which may
be ::1 alone: give a literal address (127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080) to know
which. The port is bound before the inbox is opened, and listened on once it is open: a
port in use stops the start before any job is touched, and a client connecting meanwhile
is refused, not held. A signal while the inbox opens stops the start (exit status 0).

SIGTERM or SIGINT stops it gracefully, and on Linux SIGHUP too unless it is ignored (as
under nohup; there is no reload); SIGQUIT quits at once. No new connections are accepted,
and the whole shutdown has one deadline, shutdown_grace_secs (10) after the signal:
requests in flight may take all of it (connections still open then are closed), the
workers get what is left (with a durable inbox they stop taking jobs at the signal and
finish those they hold meanwhile), then the dead letters' last move to dead_letters_to gets
what they leave, at least 1 s (an inbox that stops answering can add up to 11 s).
shutdown_grace_secs = 0 stops at once: open connections are closed and running actions
stopped. With the memory inbox (the default), whose jobs die with the
process, the workers keep processing until it is empty (jobs waiting or due for a retry
included) or the deadline; what is left then, dead letters (jobs out of attempts) included,
is lost, a warning on stderr says how many, and the exit status is 1.
[inbox] dead_letters_to = \"dead.jsonl\" appends each dead letter to that file and removes
it from the inbox (freeing its room); `hookguard inbox` lists, re-drives or discards those
of a durable inbox. A durable inbox (sqlite, redis, postgres) keeps what is left for the
next start: the workers only finish the jobs they hold at the signal. Connections to
PostgreSQL and Redis are not encrypted (no TLS: rediss:// and sslmode=require fail): use
them on loopback or a private network, or through a TLS tunnel.

A `run` program given as a path (./handle.sh) is relative to the configuration's folder; a
bare name is looked up on PATH. The command inherits the server's environment except the
variables the file names for secrets, tokens and URLs (secret_env, shared_key_env,
verify_token_env, url_env) and HOOKGUARD_SECRET, HOOKGUARD_SHARED_KEY. In the HOOKGUARD_*
variables and forward_to's X-Hookguard-* headers, control characters and `%` are
percent-encoded. On unix the command runs in a process group of its own (a terminal's
Ctrl-C reaches the server, which stops it after the grace period): when it times out, is
stopped, or fails, the whole group is killed; what a successful command leaves running is
left alone.

Example:
  GITHUB_WEBHOOK_SECRET=… hookguard serve --config examples/hookguard.toml
  hookguard serve --config hookguard.toml --check   # check the file and exit
  # (exit status 1 when an endpoint would verify with secret_env_default's demo secret)";

/// Run a webhook receiver from a configuration file.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub(crate) struct Args {
    /// The configuration file
    #[arg(long, short = 'c', value_name = "FILE", env = "HOOKGUARD_CONFIG")]
    config: PathBuf,
    /// Check the configuration (secrets included) and exit: 0 when it is fit to serve, 1
    /// when an endpoint would verify with the demo secret of `secret_env_default`, 2 when
    /// it is wrong
    #[arg(long)]
    check: bool,
}

/// An environment variable's value for the configuration: `None` when it is unset. One
/// that is set but not UTF-8 reads as empty, which the configuration refuses for a
/// secret: it is set, so no `secret_env_default` may stand in for it.
pub(crate) fn env_value(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => Some(String::new()),
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Failure> {
    let config = config::load(&args.config, &env_value)?;
    if let Some(note) = config.unused_replay_note() {
        eprintln!("warning: {}: {note}", args.config.display());
    }
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    for endpoint in &config.endpoints {
        if let Keys::Handshake(file) = &endpoint.keys {
            eprintln!(
                "note: {}: endpoint `{}` awaits Asana's handshake: secret file {} does not exist yet \
                 (or is empty); the secret the handshake hands over will be written there",
                args.config.display(),
                endpoint.name,
                file.display()
            );
        }
    }
    if args.check {
        // A check passes only for a configuration fit to serve: an endpoint verifying with a
        // published demo secret (`secret_env_default`) is not.
        let demos: Vec<_> =
            config.endpoints.iter().filter_map(|e| Some((&e.name, e.demo_secret.as_ref()?))).collect();
        for (name, demo) in &demos {
            eprintln!(
                "hookguard: {}: endpoint `{name}` would verify with the demo secret of secret_env_default: \
                 {} not set",
                demo.at,
                demo.vars.join(", ")
            );
        }
        if !demos.is_empty() {
            eprintln!(
                "hookguard: {}: not ok: {} endpoint(s) would verify with a published demo secret (set the \
                 variables, or remove secret_env_default)",
                args.config.display(),
                demos.len()
            );
            return Ok(ExitCode::from(1));
        }
        common::say(format_args!("{}: ok ({} endpoint(s))", args.config.display(), config.endpoints.len()))?;
        return Ok(ExitCode::SUCCESS);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hookguard=info".into()),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    Ok(runtime.block_on(serve(config))?)
}

/// Serves until SIGTERM, SIGINT or SIGHUP. The exit status is 1 when acknowledged webhooks
/// were lost with the memory inbox at the end of the grace period, so that a supervisor (or
/// a deploy script) sees it, not only a line on stderr.
async fn serve(config: Config) -> Result<ExitCode, String> {
    // Heard from here on: a signal while the inbox opens stops the start.
    let mut shutdown = std::pin::pin!(shutdown_signal());
    // The port first (the TLS configuration was built at load): a port that is taken stops
    // the start before the inbox is opened and the workers lease jobs, charge attempts and
    // start actions that the failed start would then kill (a restart loop dead-lettered
    // them). Bound, not listening yet: a client connecting while the inbox opens (up to a
    // connect timeout of a database that does not answer) is refused at once, not held
    // without an answer.
    let reserved =
        reserve(&config.listen).await.map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = reserved.local_addr().map_err(|e| format!("cannot read the listening address: {e}"))?;

    let metrics = if config.metrics {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
        let upkeep = handle.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
        Some(handle)
    } else {
        None
    };

    let inbox = tokio::select! {
        inbox = open_inbox(&config.inbox) => inbox?,
        () = &mut shutdown => {
            eprintln!("hookguard: stopped before it started");
            return Ok(ExitCode::SUCCESS);
        }
    };

    let mut app = Router::new().route("/healthz", get(|| async { "ok\n" }));
    if let Some(handle) = metrics {
        app = app.route(
            "/metrics",
            get(move || {
                let text = handle.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        );
    }
    // A redirect is not followed: it would turn the POST into a GET without the body, and
    // the job would count as done. A 3xx is a failure, retried like any other.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    // What `run` commands do not inherit: the secrets' variables.
    let hidden: Arc<[String]> =
        config.secret_vars.iter().map(String::as_str).chain(SECRET_VARS).map(str::to_owned).collect();
    let mut actions = HashMap::new();
    let mut writers = HashMap::new();
    for endpoint in config.endpoints {
        if let Some(demo) = &endpoint.demo_secret {
            tracing::warn!(
                endpoint = %endpoint.name,
                "using the demo secret from secret_env_default ({}): set {} for real deliveries",
                demo.at,
                demo.vars.join(", ")
            );
        }
        tracing::info!(
            endpoint = %endpoint.name,
            path = %endpoint.path,
            provider = endpoint.keys.provider(),
            action = %describe(&endpoint.action),
            "endpoint"
        );
        let name = endpoint.name.clone();
        let guard = match endpoint.keys {
            Keys::Handshake(file) => {
                tracing::info!(
                    endpoint = %name,
                    file = %file.display(),
                    "awaiting Asana's handshake: deliveries get 404 until it has been answered"
                );
                Guard::builder_with_source(name.clone(), HandshakeSecret::awaiting(name, file))
            }
            // Asana with its secret configured: a handshake is refused (403).
            Keys::Configured(scheme) if endpoint.handshake.is_some() && scheme.provider() == "asana" => {
                Guard::builder_with_source(name.clone(), HandshakeSecret::known(name, scheme))
            }
            Keys::Configured(scheme) => Guard::builder(name, scheme),
        };
        let mut guard = guard.inbox(Arc::clone(&inbox));
        if let Some(handshake) = endpoint.handshake {
            guard = guard.handshake(handshake);
        }
        if let Some(limit) = endpoint.body_limit {
            guard = guard.body_limit(limit);
        }
        if let Some(origin) = endpoint.public_origin {
            guard = guard.public_origin(origin);
        }
        let mut route = Router::new().route_service(&endpoint.path, WebhookService::new(guard.build()));
        // Source controls sit in front of the guard and refuse before the body is read.
        if let Some(limiter) = endpoint.rate_limit {
            route = route.route_layer(
                RateLimitLayer::new(limiter)
                    .trusted_proxies(config.trusted_proxies.clone())
                    .scope(endpoint.name.clone()),
            );
        }
        if let Some((list, reload)) = endpoint.allow {
            if let Some(reload) = reload {
                let list = list.clone();
                let name = endpoint.name.clone();
                let reload = Arc::new(reload);
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(reload.every);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        // The file's ranges and the listed ones; a bad file keeps the ranges
                        // in force. Blocking file I/O, off the runtime's threads.
                        let (list, reload) = (list.clone(), Arc::clone(&reload));
                        match tokio::task::spawn_blocking(move || config::reload_allow(&list, &reload)).await
                        {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::warn!(endpoint = %name, error = %e, "allow_file not reloaded")
                            }
                            Err(e) => tracing::warn!(endpoint = %name, error = %e, "allow_file not reloaded"),
                        }
                    }
                });
            }
            route =
                route.route_layer(AllowListLayer::new(list).trusted_proxies(config.trusted_proxies.clone()));
        }
        app = app.merge(route);
        let runner = Runner::new(endpoint.action, &mut writers, client.clone(), Arc::clone(&hidden));
        actions.insert(endpoint.name, runner);
    }
    let actions = Arc::new(actions);
    // A signal during the start: nothing leased, nothing started.
    tokio::select! {
        biased;
        () = &mut shutdown => {
            eprintln!("hookguard: stopped before it started");
            return Ok(ExitCode::SUCCESS);
        }
        () = std::future::ready(()) => {}
    }
    // Before the workers: a listen that fails (another process took the port since the
    // bind) stops the start with nothing leased.
    let listener =
        reserved.listen(LISTEN_BACKLOG).map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    // Dead letters go to their file (sharing its writer with endpoints appending there).
    let sweeper = config.dead_letters_to.as_ref().map(|path| {
        let lock = Arc::clone(writers.entry(path.clone()).or_default());
        Sweeper::spawn(Arc::clone(&inbox), Appender { path: path.clone(), lock })
    });

    let w = &config.worker;
    let worker = Worker::new(Arc::clone(&inbox), move |hook: Webhook| {
        let actions = Arc::clone(&actions);
        async move {
            match actions.get(hook.endpoint()) {
                Some(runner) => runner.run(&hook).await,
                // A job kept under a name this file no longer has (a changed `path` changes
                // the default name), or by a replica with another configuration.
                None => Err(format!(
                    "no action for endpoint `{0}` in this configuration: give the endpoint that \
                     should process it `name = \"{0}\"` (the name it was kept under), then \
                     `hookguard inbox redrive` its dead letters",
                    hook.endpoint()
                )),
            }
        }
    })
    .concurrency(*w.concurrency.get_ref())
    .max_attempts(*w.max_attempts.get_ref())
    .backoff(Backoff::new(
        Duration::from_millis(*w.backoff_base_ms.get_ref()),
        Duration::from_secs(*w.backoff_max_secs.get_ref()),
    ))
    .lease(Duration::from_secs(*w.lease_secs.get_ref()))
    .spawn();

    let scheme = if config.tls.is_some() { "https" } else { "http" };
    // A fixed line on stderr that scripts (and the tests) read the address from.
    eprintln!("hookguard: listening on {scheme}://{addr}");
    tracing::info!(%addr, inbox = config.inbox.name(), "listening");

    let memory = matches!(config.inbox, Backend::Memory { .. });
    // A durable inbox keeps what is left for the next start: at the signal its workers stop
    // taking jobs and finish those they hold while the connections finish (they went on
    // starting new jobs until the connections were done, then were stopped in them when the
    // grace period ended). The memory inbox's workers go on until it is empty (wind_down).
    let (signalled, heard) = tokio::sync::oneshot::channel::<Deadline>();
    let grace = config.shutdown_grace;
    let shutdown = async move {
        shutdown.await;
        let _ = signalled.send(Deadline::after(grace));
    };
    let workers = if memory {
        Workers::Draining(worker)
    } else {
        Workers::Stopping(tokio::spawn(async move {
            // The sender goes only once the signal was heard (or the server stopped).
            let deadline = heard.await.unwrap_or_else(|_| Deadline::after(grace));
            worker.shutdown(deadline.left()).await
        }))
    };

    let deadline = connections::serve(
        listener,
        app,
        config.tls.clone(),
        connections::Limits {
            header_read: config.header_read_timeout,
            grace: config.shutdown_grace,
            max_connections: config.max_connections,
        },
        shutdown,
    )
    .await;
    tracing::info!("no longer accepting; letting the workers finish");
    let code = wind_down(inbox, workers, sweeper, deadline, config.shutdown_grace).await;
    eprintln!("hookguard: stopped");
    Ok(code)
}

/// The least time the dead letters' last move to `dead_letters_to` gets at shutdown, past the
/// deadline if need be: a local file's write, and otherwise those dead letters are lost with
/// the memory inbox.
const LAST_SWEEP: Duration = Duration::from_secs(1);

/// The listen backlog: the connections the system holds for the server to accept (past
/// `max_connections`, they wait there).
const LISTEN_BACKLOG: u32 = 1024;

/// `listen` resolved and bound (the first address that binds), not listening yet. A name
/// binds one address only, whichever the resolver gives first that binds (`localhost` may
/// give `::1` first: IPv4 clients are then refused); the documentation recommends a literal
/// address.
async fn reserve(listen: &str) -> std::io::Result<tokio::net::TcpSocket> {
    let mut failed = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket =
            if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        // As `TcpListener::bind` does on unix: a restart binds while the last run's closed
        // connections linger (a port another socket listens on is still refused).
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return Ok(socket),
            Err(e) => failed = Some(e),
        }
    }
    Err(failed.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")))
}

/// The end of the shutdown: `shutdown_grace_secs` after the signal, for the whole of it.
/// The open connections, then the workers, then the dead letters' last move each get what
/// is left (each got the whole grace period: three of them in all); a durable inbox's
/// workers stop taking jobs at the signal and finish theirs alongside the connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(tokio::time::Instant);

impl Deadline {
    /// `grace` from now (a grace too long to add, from a huge `shutdown_grace_secs`, is a
    /// century: never reached).
    pub(crate) fn after(grace: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Self(now.checked_add(grace).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400)))
    }

    /// What is left of it (zero once it has passed).
    pub(crate) fn left(self) -> Duration {
        self.0.saturating_duration_since(tokio::time::Instant::now())
    }

    pub(crate) fn instant(self) -> tokio::time::Instant {
        self.0
    }
}

/// The workers at the shutdown: a memory inbox's, drained after the connections; a durable
/// inbox's, stopping since the signal.
enum Workers {
    Draining(hookguard::worker::WorkerHandle),
    Stopping(tokio::task::JoinHandle<hookguard::worker::ShutdownReport>),
}

/// After the connections: the workers finish, then the dead letters are moved a last time,
/// within what is left of `deadline`. The memory inbox dies with the process: every webhook
/// it holds (waiting, leased, or due for a retry) was acknowledged to its sender, so the
/// workers keep going until it is empty or the deadline; what is left then is counted as
/// lost, and the exit status is 1. A durable inbox keeps what is left for the next start:
/// the workers only finish the jobs they held at the signal. `grace` is
/// `shutdown_grace_secs`, for the warning.
async fn wind_down(
    inbox: Arc<dyn Inbox>,
    workers: Workers,
    sweeper: Option<Sweeper>,
    deadline: Deadline,
    grace: Duration,
) -> ExitCode {
    let worker = match workers {
        Workers::Draining(worker) => worker,
        Workers::Stopping(stopping) => {
            match stopping.await {
                Ok(report) => tracing::info!(?report, "stopped"),
                Err(e) => tracing::error!(error = %e, "the workers' shutdown failed"),
            }
            if let Some(sweeper) = sweeper {
                sweeper.finish(deadline.left().max(LAST_SWEEP)).await;
            }
            return ExitCode::SUCCESS;
        }
    };
    let mut code = ExitCode::SUCCESS;
    let drained = worker.drain(deadline.left()).await;
    tracing::info!(report = ?drained.report, "stopped");
    if let Some(sweeper) = sweeper {
        sweeper.finish(deadline.left().max(LAST_SWEEP)).await;
    }
    // Dead letters are lost too (unless `dead_letters_to` took them, just above).
    let dead = match inbox.dead_letters(usize::MAX).await {
        Ok(dead) => Some(dead.len()),
        Err(e) => {
            tracing::error!(error = %e, "cannot count the dead letters left in the memory inbox");
            None
        }
    };
    let (left, dead) = (drained.left, dead);
    if left.is_none() || dead.is_none() {
        tracing::error!("cannot count the webhooks left in the memory inbox");
        eprintln!("hookguard: warning: cannot count the webhooks left in the memory inbox: some may be lost");
        code = ExitCode::from(1);
    }
    let shown = |n: Option<usize>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let lost = left.unwrap_or(0) + dead.unwrap_or(0);
    if lost > 0 {
        tracing::error!(left, dead, "webhooks left in the memory inbox at the end are lost");
        eprintln!(
            "hookguard: warning: {lost} accepted webhook(s) are lost with the memory inbox: {} not \
             processed within shutdown_grace_secs ({} s), {} dead letter(s) (out of attempts: \
             [inbox] dead_letters_to keeps them in a file)",
            shown(left),
            grace.as_secs(),
            shown(dead)
        );
        code = ExitCode::from(1);
    }
    code
}

/// Resolves on SIGINT (Ctrl-C), SIGTERM or SIGHUP (on Linux, unless ignored): each is a graceful stop
/// (the server has no configuration reload for SIGHUP to mean; it killed the process at
/// once, in-flight actions and the memory inbox's jobs with it). On unix the
/// handlers are installed when it is called, not when it is first polled: a signal that
/// arrives before the server first waits for it is heard, instead of killing the process.
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        // SIGHUP only when it is not ignored: under `nohup` (SIGHUP ignored), a closed
        // terminal must not stop the server. SIGQUIT keeps its own meaning (quit at once,
        // a core dump): the way out of a graceful stop that takes too long.
        let hangup = (!hangup_ignored()).then(SignalKind::hangup);
        [Some(SignalKind::interrupt()), Some(SignalKind::terminate()), hangup]
            .map(|kind| kind.and_then(|kind| signal(kind).ok()))
    };
    async move {
        #[cfg(unix)]
        {
            let [interrupt, terminate, hangup] = signals.map(|signal| async move {
                match signal {
                    Some(mut signal) => drop(signal.recv().await),
                    None => std::future::pending::<()>().await,
                }
            });
            tokio::select! {
                () = interrupt => {}
                () = terminate => {}
                () = hangup => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down");
    }
}

/// Whether this process ignores SIGHUP (it inherited that from `nohup`): read from Linux's
/// `/proc/self/status` (`SigIgn`, SIGHUP its lowest bit). Elsewhere, or when that cannot be
/// read, taken as ignored: SIGHUP then keeps the action the process started with.
#[cfg(unix)]
fn hangup_ignored() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return true };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_none_or(|mask| mask & 1 != 0)
}

#[cfg(not(all(feature = "sqlite", feature = "redis", feature = "postgres")))]
use config::not_built;

/// Opens the configured inbox.
pub(crate) async fn open_inbox(backend: &Backend) -> Result<Arc<dyn Inbox>, String> {
    match backend {
        Backend::Memory { capacity } => {
            let inbox = MemoryInbox::new();
            Ok(Arc::new(match capacity {
                Some(c) => inbox.capacity(*c),
                None => inbox,
            }))
        }
        Backend::Sqlite { path, capacity } => {
            #[cfg(feature = "sqlite")]
            {
                let mut builder = hookguard::inbox::SqliteInbox::builder(path);
                if let Some(c) = capacity {
                    builder = builder.capacity(*c);
                }
                let inbox = builder
                    .open()
                    .await
                    .map_err(|e| format!("[inbox] cannot open {}: {e}", path.display()))?;
                Ok(Arc::new(inbox))
            }
            #[cfg(not(feature = "sqlite"))]
            {
                let _ = (path, capacity);
                Err(format!("[inbox] {}", not_built("sqlite", "sqlite")))
            }
        }
        Backend::Redis { url, capacity } => {
            #[cfg(feature = "redis")]
            {
                let mut inbox = hookguard::inbox::RedisInbox::connect(url)
                    .await
                    .map_err(|e| format!("[inbox] cannot connect to redis: {e}"))?;
                if let Some(c) = capacity {
                    inbox = inbox.capacity(*c);
                }
                Ok(Arc::new(inbox))
            }
            #[cfg(not(feature = "redis"))]
            {
                let _ = (url, capacity);
                Err(format!("[inbox] {}", not_built("redis", "redis")))
            }
        }
        Backend::Postgres { url, capacity } => {
            #[cfg(feature = "postgres")]
            {
                let mut inbox = hookguard::inbox::PostgresInbox::connect(url)
                    .await
                    .map_err(|e| format!("[inbox] cannot connect to postgres: {e}"))?;
                if let Some(c) = capacity {
                    inbox = inbox.capacity(*c);
                }
                Ok(Arc::new(inbox))
            }
            #[cfg(not(feature = "postgres"))]
            {
                let _ = (url, capacity);
                Err(format!("[inbox] {}", not_built("postgres", "postgres")))
            }
        }
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::AppendTo(path) => format!("append to {}", path.display()),
        Action::Run { argv, .. } => format!("run {}", argv.first().map_or("", String::as_str)),
        Action::Forward { url, .. } => format!("forward to {}", common::redact_url(url)),
    }
}

/// The variables the other commands read secrets from, never passed on to `run` commands.
const SECRET_VARS: [&str; 2] = ["HOOKGUARD_SECRET", "HOOKGUARD_SHARED_KEY"];

/// Carries out an endpoint's action for each processed webhook.
struct Runner {
    action: Action,
    /// `append_to`: the file's writer, shared with the other endpoints appending to it.
    appender: Option<Appender>,
    client: reqwest::Client,
    /// Environment variables `run` commands do not inherit.
    hidden: Arc<[String]>,
}

impl Runner {
    /// `writers`: the lock of each file appended to so far, by path (the configuration
    /// gives each `append_to` as its folder's canonical path and its name).
    fn new(
        action: Action,
        writers: &mut HashMap<PathBuf, Arc<Mutex<()>>>,
        client: reqwest::Client,
        hidden: Arc<[String]>,
    ) -> Self {
        let appender = match &action {
            Action::AppendTo(path) => Some(Appender {
                path: path.clone(),
                lock: Arc::clone(writers.entry(path.clone()).or_default()),
            }),
            _ => None,
        };
        Self { action, appender, client, hidden }
    }

    async fn run(&self, hook: &Webhook) -> Result<(), String> {
        match &self.action {
            Action::AppendTo(path) => {
                let mut line = json_line(hook).to_string();
                line.push('\n');
                match &self.appender {
                    Some(appender) => appender.append(line.into_bytes()).await,
                    None => Err(format!("no writer for {}", path.display())),
                }
            }
            Action::Run { argv, timeout } => run_command(argv, *timeout, hook, &self.hidden).await,
            Action::Forward { url, timeout } => {
                let mut request = self.client.post(url).timeout(*timeout).body(hook.body().clone());
                if let Some(ct) = hook.headers().get(header::CONTENT_TYPE) {
                    request = request.header(header::CONTENT_TYPE, ct.clone());
                }
                for (name, value) in metadata(hook) {
                    request = request.header(format!("x-hookguard-{}", name.replace('_', "-")), value);
                }
                // Errors show the URL without its credentials (reqwest's would show it all).
                let res = request.send().await.map_err(|e| {
                    let e = common::error_chain(&e.without_url());
                    format!("forward to {} failed: {e}", common::redact_url(url))
                })?;
                if res.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("forward to {} answered {}", common::redact_url(url), res.status()))
                }
            }
        }
    }
}

/// Moves the inbox's dead letters to `[inbox] dead_letters_to`: every [`SWEEP_EVERY`], and
/// once more when it is told to finish, each dead letter is appended to the file (one JSON
/// line, synced: [`dead_letter_line`]), then discarded from the inbox, which frees its room
/// (it counted against the capacity until re-driven or discarded). A dead letter is written
/// at least once: one written just before a crash, not yet discarded, is written again.
struct Sweeper {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// How often [`Sweeper`] looks for dead letters.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How many dead letters [`Sweeper`] moves in one write.
const SWEEP_BATCH: usize = 100;

impl Sweeper {
    fn spawn(inbox: Arc<dyn Inbox>, appender: Appender) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Written to the file, not yet discarded (the discard failed): not written again.
            let mut written = HashSet::new();
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // A sweep is never cancelled part-way: only the wait for the next one is.
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut stopped => true,
                };
                match sweep(inbox.as_ref(), &appender, &mut written).await {
                    Ok(0) => {}
                    Ok(moved) => tracing::warn!(
                        moved,
                        file = %appender.path.display(),
                        "dead letters (out of attempts) moved to dead_letters_to"
                    ),
                    Err(e) => tracing::error!(error = %e, "dead letters not moved to dead_letters_to"),
                }
                if last {
                    return;
                }
            }
        });
        Self { stop, task }
    }

    /// Moves what is left, then stops; within `grace` (a durable inbox keeps what is not
    /// moved by then; the memory inbox's are counted as lost).
    async fn finish(self, grace: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        match tokio::time::timeout(grace, &mut task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the dead-letter sweeper failed"),
            Err(_) => {
                task.abort();
                tracing::warn!("dead letters not all moved to dead_letters_to within the grace period");
            }
        }
    }
}

/// Appends the inbox's dead letters to `appender`'s file, then discards them from the inbox,
/// [`SWEEP_BATCH`] at a time; returns how many were moved. `written` holds the dead letters
/// (key and time of failure) written whose discard failed: they are not written again, only
/// discarded.
async fn sweep(
    inbox: &dyn Inbox,
    appender: &Appender,
    written: &mut HashSet<(String, time::OffsetDateTime)>,
) -> Result<usize, String> {
    let mut moved = 0;
    let id = |letter: &DeadLetter| (letter.webhook.key().to_owned(), letter.failed_at);
    loop {
        let dead = inbox.dead_letters(SWEEP_BATCH).await.map_err(|e| format!("cannot read them: {e}"))?;
        if dead.is_empty() {
            written.clear();
            return Ok(moved);
        }
        // What is no longer among them went another way (re-driven, discarded).
        let ids: HashSet<_> = dead.iter().map(id).collect();
        written.retain(|written| ids.contains(written));
        let mut lines = Vec::new();
        for letter in dead.iter().filter(|letter| !written.contains(&id(letter))) {
            lines.extend_from_slice(dead_letter_line(letter).to_string().as_bytes());
            lines.push(b'\n');
        }
        if !lines.is_empty() {
            appender.append(lines).await?;
        }
        written.extend(ids);
        let mut discarded = 0;
        for letter in &dead {
            let key = letter.webhook.key();
            // `false`: re-driven or discarded meanwhile (by `hookguard inbox`), written anyway.
            if inbox.discard(key).await.map_err(|e| {
                format!("cannot discard a dead letter written to {}: {e}", appender.path.display())
            })? {
                discarded += 1;
            }
            written.remove(&id(letter));
        }
        moved += discarded;
        if dead.len() < SWEEP_BATCH || discarded == 0 {
            return Ok(moved);
        }
    }
}

/// A dead letter as one JSON line: [`json_line`]'s, with `attempts`, `error` (the last
/// attempt's, as the action reported it) and `failed_at`.
pub(crate) fn dead_letter_line(letter: &DeadLetter) -> serde_json::Value {
    let mut line = json_line(&letter.webhook);
    if let Some(obj) = line.as_object_mut() {
        obj.insert("attempts".into(), letter.attempts.into());
        obj.insert("error".into(), letter.error.clone().into());
        obj.insert("failed_at".into(), letter.failed_at.format(&Rfc3339).ok().into());
    }
    line
}

/// Appends lines to one file, one writer at a time.
struct Appender {
    path: PathBuf,
    /// Held while a line is written, by every endpoint appending to this file: a big line
    /// takes several writes, and two writers' would interleave.
    lock: Arc<Mutex<()>>,
}

impl Appender {
    /// Appends `line` and syncs it to disk before it counts as written: the worker then
    /// acknowledges the job, and a durable inbox deletes it (a line still in the page cache
    /// would be lost with the machine). On a failure the file is cut back to where it was
    /// (best effort), so that the retry appends one clean line, not a second after a torn
    /// one. The file is opened for each line, so that a rotated file is picked up. A file
    /// that is not a regular one (a pipe, `/dev/stdout`, a terminal, `/dev/null`) cannot be
    /// synced or cut back: there a line counts as written once it is handed over whole.
    async fn append(&self, line: Vec<u8>) -> Result<(), String> {
        // The guard moves to the thread that writes: if this attempt is cancelled (its
        // lease ran out), the write still ends before the next one starts.
        let guard = Arc::clone(&self.lock).lock_owned().await;
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let created = !path.exists();
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            // The webhooks' bodies and headers are the owner's to read (a file created
            // before keeps its mode).
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let regular = file.metadata().map_or(true, |meta| meta.file_type().is_file());
            let wrote = if regular {
                append_line(&mut file, &line)
            } else {
                // `fdatasync` and `ftruncate` fail there (EINVAL) after the line went out:
                // every attempt printed it again, then the job was dead-lettered.
                std::io::Write::write_all(&mut file, &line)
            };
            wrote.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            if created {
                // The new file's entry in its folder must reach the disk too.
                sync_folder(&path)
                    .map_err(|e| format!("cannot sync the folder of {}: {e}", path.display()))?;
            }
            Ok(())
        })
        .await;
        written.map_err(|e| format!("cannot write {}: {e}", self.path.display()))?
    }
}

/// Syncs the folder holding `path` (unix: elsewhere a folder cannot be opened to sync).
fn sync_folder(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// What [`append_line`] needs of a file opened for appending (a trait so that the tests can
/// fail a write part-way).
trait AppendFile {
    fn len(&mut self) -> std::io::Result<u64>;
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    fn sync_data(&mut self) -> std::io::Result<()>;
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
}

impl AppendFile for std::fs::File {
    fn len(&mut self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(self, bytes)
    }
    fn sync_data(&mut self) -> std::io::Result<()> {
        std::fs::File::sync_data(self)
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
}

/// Writes `line` at the end of `file` and syncs it; on a failure, cuts the file back to its
/// length before (best effort: another program appending meanwhile would lose its bytes
/// too, which the lock cannot prevent).
fn append_line(file: &mut impl AppendFile, line: &[u8]) -> std::io::Result<()> {
    let before = file.len()?;
    match file.write_all(line).and_then(|()| file.sync_data()) {
        Ok(()) => Ok(()),
        Err(e) => {
            if let Err(cut) = file.truncate(before) {
                tracing::warn!(error = %cut, "cannot cut a failed line off the file: it may end with part of it");
            }
            Err(e)
        }
    }
}

/// The metadata of a webhook as (name, value) pairs, for environment variables and
/// forwarded headers, each value made [`carriable`].
fn metadata(hook: &Webhook) -> Vec<(&'static str, String)> {
    let mut out = raw_metadata(hook);
    for (_, value) in &mut out {
        if let std::borrow::Cow::Owned(safe) = carriable(value) {
            *value = safe;
        }
    }
    out
}

/// `value` with the bytes a header value or an environment value cannot carry
/// percent-encoded (`%00`): the control characters (`\0`, `\r`, `\n`, … and DEL), and `%`
/// itself so that percent-decoding gives the value back. The id and event of some
/// providers come from the JSON body, where `"\u0000"` decodes to a NUL: as they were, every
/// attempt to forward (an invalid header) or run (a NUL in the environment) such an
/// acknowledged delivery failed, and it was dead-lettered.
fn carriable(value: &str) -> std::borrow::Cow<'_, str> {
    let needs = |b: u8| b.is_ascii_control() || b == b'%';
    if !value.bytes().any(needs) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match u8::try_from(c) {
            Ok(b) if needs(b) => out.push_str(&format!("%{b:02X}")),
            _ => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The metadata as the webhook holds it.
fn raw_metadata(hook: &Webhook) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("key", hook.key().to_owned()),
        ("endpoint", hook.endpoint().to_owned()),
        ("provider", hook.provider().to_owned()),
        ("received_at", hook.received_at().format(&Rfc3339).unwrap_or_default()),
    ];
    if let Some(id) = hook.id() {
        out.push(("id", id.to_owned()));
    }
    if let Some(event) = hook.event() {
        out.push(("event", event.to_owned()));
    }
    if let Some(ts) = hook.timestamp() {
        out.push(("timestamp", ts.format(&Rfc3339).unwrap_or_default()));
    }
    out
}

/// One JSON line: the metadata, the kept headers, and the body (as text when it is UTF-8,
/// else as `body_base64`).
fn json_line(hook: &Webhook) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for name in hook.headers().keys() {
        let values: Vec<String> = hook
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_owned(), values.join(", ").into());
    }
    let mut line = serde_json::json!({
        "key": hook.key(),
        "endpoint": hook.endpoint(),
        "provider": hook.provider(),
        "id": hook.id(),
        "event": hook.event(),
        "timestamp": hook.timestamp().and_then(|t| t.format(&Rfc3339).ok()),
        "received_at": hook.received_at().format(&Rfc3339).ok(),
        "headers": headers,
    });
    if let Some(obj) = line.as_object_mut() {
        match std::str::from_utf8(hook.body()) {
            Ok(text) => obj.insert("body".into(), text.into()),
            Err(_) => obj.insert(
                "body_base64".into(),
                base64::engine::general_purpose::STANDARD.encode(hook.body()).into(),
            ),
        };
    }
    line
}

/// Runs `argv` with the body on stdin and the metadata in `HOOKGUARD_*`, in the server's
/// environment less the variables in `hidden`.
///
/// On unix the command leads a process group of its own, killed whole (SIGKILL) when the
/// attempt ends without the command having exited successfully: a timeout, an attempt
/// cancelled (its lease ran out, or the grace period of a shutdown ended), or a failure.
/// Killing the command alone left what it started (`sh -c 'a | b'`, a script's children)
/// running while the job was retried, the same work twice at once, and after the server
/// stopped. After a successful exit, what it left running in the background is its own
/// business and is left alone. Being in its own group, the command does not get a
/// terminal's Ctrl-C: the server's shutdown ends it, after the grace period.
async fn run_command(
    argv: &[String],
    timeout: Duration,
    hook: &Webhook,
    hidden: &[String],
) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        // Also reaps the command once it is killed.
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    for var in hidden {
        command.env_remove(var);
    }
    for (name, value) in metadata(hook) {
        command.env(format!("HOOKGUARD_{}", name.to_ascii_uppercase()), value);
    }
    let mut running = Running::new(command.spawn().map_err(|e| format!("cannot run {program}: {e}"))?);
    let body = hook.body().clone();
    let mut stdin = running.child.stdin.take();
    let child = &mut running.child;
    let status = tokio::time::timeout(timeout, async move {
        // The body is written while the command runs: a command that exits without reading
        // it all is done (its input is closed then), even when something it started holds
        // the pipe open. A command that does not read its input is fine.
        let write = async move {
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(&body).await;
            }
        };
        tokio::pin!(write);
        let mut writing = true;
        loop {
            tokio::select! {
                () = &mut write, if writing => writing = false,
                // Cancel-safe: a wait cut short by the write's end is started again.
                status = child.wait() => break status,
            }
        }
    })
    .await
    .map_err(|_| format!("{program} did not finish within {} s", timeout.as_secs()))?
    .map_err(|e| format!("{program} failed: {e}"))?;
    // Every other way out (an error above, this function's future dropped) kills the group
    // when `running` is dropped, with no `.await` in between from the command's exit.
    if status.success() {
        running.exited_successfully();
        Ok(())
    } else {
        Err(format!("{program} exited with {status}"))
    }
}

/// A `run` command started by [`run_command`]; when dropped, it kills the command's process
/// group (unix) unless [`exited_successfully`](Self::exited_successfully) said otherwise,
/// and the command itself (`kill_on_drop`, which also reaps it).
struct Running {
    child: tokio::process::Child,
    /// The command's process group (its process id), to kill when dropped.
    #[cfg(unix)]
    group: Option<u32>,
}

impl Running {
    fn new(child: tokio::process::Child) -> Self {
        #[cfg(unix)]
        let group = child.id();
        Self {
            child,
            #[cfg(unix)]
            group,
        }
    }

    /// The command exited with success: what it left running is not killed.
    fn exited_successfully(&mut self) {
        #[cfg(unix)]
        {
            self.group = None;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Before `child` is dropped (and reaped): the command's process id, unreaped, still
        // names its group and no other. After a failed exit it was reaped just before,
        // without an `.await` since: the id stays the group's while any process is left in
        // it, and an empty group's id could only be taken by a new group after the ids
        // wrapped around in the meantime.
        #[cfg(unix)]
        if let Some(group) = self.group.take() {
            kill_process_group(group);
        }
    }
}

/// Sends SIGKILL to every process of process group `group`. That no process is left in it
/// (ESRCH) is fine: they all exited.
#[cfg(unix)]
fn kill_process_group(group: u32) {
    use rustix::process::{Pid, Signal, kill_process_group};
    // 0 would be the server's own group, 1 init's: never a command's.
    let Some(pgid) = i32::try_from(group).ok().filter(|&g| g > 1).and_then(Pid::from_raw) else { return };
    match kill_process_group(pgid, Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(error) => tracing::warn!(group, %error, "cannot kill the process group of a command"),
    }
}

mod connections {
    //! The connections, plain HTTP or HTTPS with rustls (ring provider), served by hyper's
    //! HTTP/1.1 with a timer: a client gets `header_read` to send a request's head (one
    //! that dribbles it, or never sends it, is cut off) and as long to take each part of
    //! the answers (one that stops reading them is cut off: [`WriteStall`]), at most
    //! `max_connections` are served at once (the others wait in the system's backlog), and
    //! at shutdown the open connections get `grace` to finish.

    use std::{
        io,
        net::SocketAddr,
        pin::Pin,
        sync::Arc,
        task::{Context, Poll},
        time::Duration,
    };

    use axum::Router;
    use hyper_util::{
        rt::{TokioExecutor, TokioIo, TokioTimer},
        server::{conn::auto, graceful::GracefulShutdown},
        service::TowerToHyperService,
    };
    use tokio::{
        io::{AsyncRead, AsyncWrite, ReadBuf},
        net::{TcpListener, TcpStream},
        sync::{OwnedSemaphorePermit, Semaphore},
        time::{Instant, Sleep},
    };
    use tokio_rustls::TlsAcceptor;

    use super::Deadline;

    /// How long a TLS handshake may take.
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Limits {
        /// The most a client may take to send a request's head (HTTP/1.1), and the most a
        /// write to it may wait without any of it being taken ([`WriteStall`]).
        pub(crate) header_read: Duration,
        /// The whole shutdown's time, from the signal; the open connections may take all
        /// of it, and the workers get what they leave (a durable inbox's finish theirs
        /// alongside them).
        pub(crate) grace: Duration,
        /// The most connections served at once: a connection is accepted only when one of
        /// these is free, so that the bodies being read take at most `max_connections` ×
        /// the body limit.
        pub(crate) max_connections: usize,
    }

    /// hyper's builder for HTTP/1 alone, with a timer (without one hyper applies no header
    /// timeout). Senders speak HTTP/1.1, and its head is timed from the connection's start:
    /// guessing the version would first read the connection's opening bytes with no time
    /// limit, and an HTTP/2 connection that never sends a request would be held for ever,
    /// so a client that sends nothing could hold a connection for ever (TLS offers only
    /// `http/1.1` by ALPN for the same reason).
    fn builder(header_read: Duration) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read);
        builder.http1_only()
    }

    /// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` resolves, then
    /// lets the open connections finish within the grace period. Returns the shutdown's
    /// deadline (the grace period from `shutdown`), which the rest of the shutdown keeps to.
    pub(super) async fn serve(
        listener: TcpListener,
        app: Router,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: Limits,
        shutdown: impl Future<Output = ()>,
    ) -> Deadline {
        let acceptor = tls.map(TlsAcceptor::from);
        let http1 = Arc::new(builder(limits.header_read));
        let free = Arc::new(Semaphore::new(limits.max_connections));
        let graceful = GracefulShutdown::new();
        // Every connection's task, so that those still open after the grace period are
        // stopped then (a request still in flight must not keep a webhook coming in after
        // the workers counted what was left).
        let mut connections = tokio::task::JoinSet::new();
        let listening = &listener;
        accept_loop(
            || listening.accept(),
            shutdown,
            &free,
            |(tcp, peer): (TcpStream, SocketAddr), permit: OwnedSemaphorePermit| {
                // The tasks of connections that ended are let go as new ones come.
                while connections.try_join_next().is_some() {}
                let acceptor = acceptor.clone();
                let http1 = Arc::clone(&http1);
                // The peer address, for the allow-list and rate limits.
                let service = TowerToHyperService::new(
                    app.clone().layer(axum::Extension(hookguard::source::PeerAddr(peer))),
                );
                let watcher = graceful.watcher();
                let stall = limits.header_read;
                connections.spawn(async move {
                    // Held until the connection ends: then the next one may be accepted.
                    let _permit = permit;
                    let ended = match acceptor {
                        None => {
                            let io = TokioIo::new(WriteStall::new(tcp, stall));
                            watcher.watch(http1.serve_connection(io, service)).await
                        }
                        Some(acceptor) => {
                            // Under TLS: the socket's writes, each of which shows progress
                            // (TLS's own flush waits as a whole while the socket takes its
                            // records bit by bit).
                            let tcp = WriteStall::new(tcp, stall);
                            let Ok(Ok(tls)) =
                                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                            else {
                                return;
                            };
                            let io = TokioIo::new(tls);
                            watcher.watch(http1.serve_connection(io, service)).await
                        }
                    };
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            },
        )
        .await;
        let deadline = Deadline::after(limits.grace);
        drop(listener);
        if tokio::time::timeout_at(deadline.instant(), graceful.shutdown()).await.is_err() {
            while connections.try_join_next().is_some() {}
            tracing::warn!(
                open = connections.len(),
                "some connections were still open after the grace period: closed"
            );
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        deadline
    }

    pin_project_lite::pin_project! {
        /// A connection whose writes may wait at most `limit` without progress: a write
        /// (or flush, or shutdown) that has waited that long since the last one that got
        /// anywhere fails with [`io::ErrorKind::TimedOut`], and hyper closes the connection,
        /// freeing its `max_connections` permit. Reads are passed through untouched.
        ///
        /// hyper times a request's head only while it reads one, which it does not do while
        /// an answer waits to be written: a client that pipelines requests (404s, `/metrics`)
        /// and never reads the answers fills the socket's buffers, and the write waited with
        /// no timer at all, holding the connection and its permit until the shutdown
        /// (`max_connections` such clients locked every sender out).
        ///
        /// The limit is `header_read_timeout_secs` (30 s by default), not a key of its own:
        /// it is already the time the server gives a client to do its part of the exchange,
        /// and a sender that reads its answer takes every byte at once (an answer is small,
        /// the largest `/metrics`' text of some kilobytes, and the socket's send buffer
        /// takes it whole), so a write that waits that long is a client that stopped
        /// reading. Over TLS the stream wrapped is the TCP one under it: the writes timed are
        /// the socket's, each of which shows progress (the TLS stream's flush waits as a whole
        /// while a slow reader takes its records bit by bit); the handshake has its own limit. A client that goes on reading, however slowly (a few bytes within each
        /// limit), is not cut off: a proxy that limits connections per address is still the
        /// answer to many of them.
        ///
        /// Cheap where writes do not wait: the timer is made (one allocation) only the
        /// first time a write waits, and touched only while writes wait.
        pub(super) struct WriteStall<T> {
            #[pin]
            inner: T,
            limit: Duration,
            // Made the first time a write waits; armed from then until a write, flush or
            // shutdown completes.
            timer: Option<Pin<Box<Sleep>>>,
            armed: bool,
        }
    }

    impl<T> WriteStall<T> {
        pub(super) fn new(inner: T, limit: Duration) -> Self {
            Self { inner, limit, timer: None, armed: false }
        }

        /// Whether a write ever waited (the timer was made).
        #[cfg(test)]
        pub(super) fn ever_waited(&self) -> bool {
            self.timer.is_some()
        }

        /// `write` (a write, flush or shutdown of the inner connection), timed while it
        /// waits: from the first time it returns `Pending` after the last completed one.
        fn timed<R>(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            write: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
        ) -> Poll<io::Result<R>> {
            let this = self.project();
            if let Poll::Ready(done) = write(this.inner, cx) {
                *this.armed = false;
                return Poll::Ready(done);
            }
            let limit = *this.limit;
            let made = this.timer.is_some();
            let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
            if made && !*this.armed {
                timer.as_mut().reset(Instant::now() + limit);
            }
            *this.armed = true;
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took none of the answer within header_read_timeout_secs",
                ))),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    impl<T: AsyncRead> AsyncRead for WriteStall<T> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.project().inner.poll_read(cx, buf)
        }
    }

    impl<T: AsyncWrite> AsyncWrite for WriteStall<T> {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.timed(cx, |inner, cx| inner.poll_write(cx, buf))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.timed(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
        }

        fn is_write_vectored(&self) -> bool {
            self.inner.is_write_vectored()
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.timed(cx, AsyncWrite::poll_flush)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.timed(cx, AsyncWrite::poll_shutdown)
        }
    }

    /// The pause after an accept that failed for a reason other than the connection itself
    /// (too many open files, out of memory): as `axum::serve`, 1 s.
    pub(super) const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

    /// Accepts connections and hands each to `serve`, with a permit of `free` to hold
    /// while it is served, until `shutdown` resolves. A connection is accepted only once a
    /// permit is free: past `max_connections` the next waits in the system's backlog (the
    /// clients wait, they are not refused, and no request is read into memory). An accept
    /// error of one connection (reset or aborted before it was taken) is skipped; any other
    /// (`EMFILE`) is logged and followed by [`ACCEPT_PAUSE`], while `shutdown` is still
    /// heard, instead of an immediate retry that would spin as long as the error lasts.
    pub(super) async fn accept_loop<C, A>(
        mut accept: impl FnMut() -> A,
        shutdown: impl Future<Output = ()>,
        free: &Arc<Semaphore>,
        mut serve: impl FnMut(C, OwnedSemaphorePermit),
    ) where
        A: Future<Output = std::io::Result<C>>,
    {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(free).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // Closed: never (the semaphore is not closed).
                    Err(_) => return,
                },
                () = &mut shutdown => return,
            };
            let accepted = tokio::select! {
                accepted = accept() => accepted,
                () = &mut shutdown => return,
            };
            match accepted {
                Ok(connection) => serve(connection, permit),
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(error = %e, "a connection was lost before it was accepted");
                }
                Err(e) => {
                    tracing::warn!(error = %e, pause = ?ACCEPT_PAUSE, "cannot accept connections; pausing");
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_PAUSE) => {}
                        () = &mut shutdown => return,
                    }
                }
            }
        }
    }

    fn is_connection_error(e: &std::io::Error) -> bool {
        use std::io::ErrorKind;
        matches!(
            e.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line describing an endpoint at start shows a forward URL's origin only (Discord's
    /// and Slack's webhook URLs hold their secret in the path), and a command's program.
    #[test]
    fn actions_are_described_without_secrets() {
        let forward = |url: &str| Action::Forward { url: url.to_owned(), timeout: Duration::from_secs(1) };
        for (url, described) in [
            (
                "https://hookguard:t0ken@internal.example/hooks?key=t0ken",
                "forward to https://***@internal.example/…",
            ),
            ("https://discord.com/api/webhooks/123/t0ken", "forward to https://discord.com/…"),
            ("https://hooks.slack.com/services/T0/B0/t0ken", "forward to https://hooks.slack.com/…"),
        ] {
            assert_eq!(describe(&forward(url)), described);
        }
        let run = Action::Run {
            argv: vec!["notify".into(), "--token=t0ken".into()],
            timeout: Duration::from_secs(1),
        };
        assert_eq!(describe(&run), "run notify");
    }

    /// What a header value or an environment value cannot carry is percent-encoded, and so
    /// is `%`; the rest (UTF-8 included) is left as it is.
    #[test]
    fn metadata_values_are_made_carriable() {
        for (given, carried) in [
            ("evt_1", "evt_1"),
            ("a\0b", "a%00b"),
            ("a\r\nX-Injected: 1", "a%0D%0AX-Injected: 1"),
            ("\t\u{1f}\u{7f}", "%09%1F%7F"),
            ("100%", "100%25"),
            ("%00", "%2500"),
            ("été \u{85}", "été \u{85}"),
        ] {
            let value = carriable(given);
            assert_eq!(value, carried, "{given:?}");
            assert!(http::HeaderValue::from_str(&value).is_ok(), "{given:?}");
            assert!(!value.contains('\0'), "{given:?}");
        }
    }

    /// A file that takes `budget` more bytes, then fails writes part-way; its syncs fail
    /// while `sync_fails`.
    struct Flaky {
        content: Vec<u8>,
        budget: usize,
        sync_fails: bool,
        synced: usize,
    }

    impl AppendFile for Flaky {
        fn len(&mut self) -> std::io::Result<u64> {
            Ok(self.content.len() as u64)
        }
        fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            let n = bytes.len().min(self.budget);
            self.content.extend_from_slice(&bytes[..n]);
            self.budget -= n;
            if n < bytes.len() { Err(std::io::ErrorKind::StorageFull.into()) } else { Ok(()) }
        }
        fn sync_data(&mut self) -> std::io::Result<()> {
            if self.sync_fails {
                return Err(std::io::ErrorKind::Other.into());
            }
            self.synced = self.content.len();
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> std::io::Result<()> {
            self.content.truncate(usize::try_from(len).unwrap());
            Ok(())
        }
    }

    /// A line is synced before it counts as written; a write or sync that fails leaves the
    /// file as it was (no torn line), so that the retry writes one clean line.
    #[test]
    fn a_failed_append_leaves_no_torn_line() {
        let mut file = Flaky { content: b"old\n".to_vec(), budget: 3, sync_fails: false, synced: 0 };
        assert!(append_line(&mut file, b"a long line\n").is_err(), "the disk filled up part-way");
        assert_eq!(file.content, b"old\n", "the torn line is cut off");
        file.budget = usize::MAX;
        file.sync_fails = true;
        assert!(append_line(&mut file, b"a long line\n").is_err(), "the sync failed");
        assert_eq!(file.content, b"old\n", "an unsynced line is cut off");
        file.sync_fails = false;
        append_line(&mut file, b"a long line\n").unwrap();
        assert_eq!(file.content, b"old\na long line\n");
        assert_eq!(file.synced, file.content.len(), "synced before it counts as written");
    }

    /// Endpoints appending to one file share its writer (each had its own lock: lines of
    /// big bodies could interleave); other files have their own.
    #[test]
    fn endpoints_appending_to_one_file_share_its_writer() {
        let client = reqwest::Client::new();
        let hidden: Arc<[String]> = Arc::from(Vec::new());
        let mut writers = HashMap::new();
        let mut runner = |path: &str| {
            Runner::new(Action::AppendTo(path.into()), &mut writers, client.clone(), Arc::clone(&hidden))
        };
        let (a, b, c) = (runner("/srv/hooks.jsonl"), runner("/srv/hooks.jsonl"), runner("/srv/other.jsonl"));
        let lock = |r: &Runner| Arc::clone(&r.appender.as_ref().expect("an appender").lock);
        assert!(Arc::ptr_eq(&lock(&a), &lock(&b)));
        assert!(!Arc::ptr_eq(&lock(&a), &lock(&c)));
    }

    /// Appended lines reach the file whole, one after the other.
    #[tokio::test]
    async fn lines_are_appended_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let appender = Appender { path: path.clone(), lock: Arc::default() };
        appender.append(b"one\n".to_vec()).await.unwrap();
        appender.append(b"two\n".to_vec()).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    }

    /// An accept error that lasts (too many open files) is retried once per pause, not in a
    /// busy loop, and a shutdown during a pause is heard at once. In paused time: a busy
    /// loop would never let the clock move, so the accept counts its calls.
    #[tokio::test(start_paused = true)]
    async fn a_failing_accept_pauses_and_still_hears_the_shutdown() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = AtomicUsize::new(0);
        let accept = || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            assert!(n < 100, "accept retried in a busy loop");
            // EMFILE.
            std::future::ready(Err::<(), _>(std::io::Error::from_raw_os_error(24)))
        };
        let started = tokio::time::Instant::now();
        let free = Arc::new(tokio::sync::Semaphore::new(1));
        connections::accept_loop(
            accept,
            tokio::time::sleep(connections::ACCEPT_PAUSE * 10),
            &free,
            |(), _| {},
        )
        .await;
        let n = calls.load(Ordering::SeqCst);
        assert!((10..=11).contains(&n), "{n} accepts in 10 pauses");
        assert_eq!(started.elapsed(), connections::ACCEPT_PAUSE * 10);

        // A shutdown in the middle of a pause ends the loop then, not at the pause's end.
        let started = tokio::time::Instant::now();
        let soon = connections::ACCEPT_PAUSE / 5;
        connections::accept_loop(
            || std::future::ready(Err::<(), _>(std::io::Error::from_raw_os_error(24))),
            tokio::time::sleep(soon),
            &free,
            |(), _| {},
        )
        .await;
        assert_eq!(started.elapsed(), soon);
    }

    /// A connection lost before it was taken is skipped at once; the next is served.
    #[tokio::test(start_paused = true)]
    async fn a_lost_connection_is_skipped_without_a_pause() {
        use std::io::ErrorKind;
        let mut results = vec![Ok(2), Err(ErrorKind::ConnectionAborted.into()), Ok(1)];
        let mut served = Vec::new();
        let started = tokio::time::Instant::now();
        connections::accept_loop(
            || {
                let next = results.pop();
                async move {
                    match next {
                        Some(result) => result,
                        None => std::future::pending().await,
                    }
                }
            },
            tokio::time::sleep(Duration::from_millis(1)),
            &Arc::new(tokio::sync::Semaphore::new(1024)),
            |n: u32, _| served.push(n),
        )
        .await;
        assert_eq!(served, [1, 2]);
        assert_eq!(started.elapsed(), Duration::from_millis(1));
    }

    /// With `max_connections` = 1, a second connection is not accepted while the first is
    /// served (it waits in the backlog: the accept is not even called), and is accepted as
    /// soon as the first ends; a shutdown is heard while waiting. There was no limit: every
    /// connection was accepted and served at once, each able to hold a body in memory.
    /// Paused time only moves when every task waits, so an hour passing proves it waited.
    #[tokio::test(start_paused = true)]
    async fn past_max_connections_the_next_waits_until_one_ends() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (backlog, queued) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let queued = Arc::new(Mutex::new(queued));
        let accepts = Arc::new(AtomicUsize::new(0));
        let (served, mut serving) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let free = Arc::new(tokio::sync::Semaphore::new(1));
        let looping = {
            let (queued, accepts) = (Arc::clone(&queued), Arc::clone(&accepts));
            tokio::spawn(async move {
                connections::accept_loop(
                    || {
                        accepts.fetch_add(1, Ordering::SeqCst);
                        let queued = Arc::clone(&queued);
                        async move { queued.lock().await.recv().await.ok_or(std::io::ErrorKind::Other.into()) }
                    },
                    async move { drop(stopped.await) },
                    &free,
                    |n, permit| served.send((n, permit)).unwrap(),
                )
                .await;
            })
        };
        for n in [1, 2, 3] {
            backlog.send(n).unwrap();
        }
        let (first, held) = serving.recv().await.unwrap();
        assert_eq!(first, 1);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(serving.try_recv().is_err(), "a second connection was served while the first is open");
        assert_eq!(accepts.load(Ordering::SeqCst), 1, "a second connection was taken from the backlog");

        drop(held);
        let (second, held) = serving.recv().await.unwrap();
        assert_eq!(second, 2, "the next is served once the first ends");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(serving.try_recv().is_err());

        // The shutdown is heard while no permit is free.
        stop.send(()).unwrap();
        looping.await.unwrap();
        assert_eq!(accepts.load(Ordering::SeqCst), 2);
        drop(held);
    }

    /// A write that waits (the client takes none of it) fails with `TimedOut` once it has
    /// waited the limit; writes that complete at once make no timer; reads are not timed
    /// (one waits ten limits, then gets its bytes). In paused time: the clock moves only
    /// while every task waits, so the times are exact.
    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_takes_none_of_fails_after_the_limit() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let limit = Duration::from_secs(30);
        let (near, mut far) = tokio::io::duplex(16);
        let mut conn = connections::WriteStall::new(near, limit);
        conn.write_all(&[1; 16]).await.unwrap();
        conn.flush().await.unwrap();
        assert!(!conn.ever_waited(), "a timer was made for writes that did not wait");

        let mut got = [0; 4];
        assert!(
            tokio::time::timeout(limit * 10, conn.read(&mut got)).await.is_err(),
            "a read that waits is still waiting, not failed"
        );
        far.write_all(b"hi").await.unwrap();
        assert_eq!(conn.read(&mut got).await.unwrap(), 2);

        // The pipe is full (16 bytes the client does not read). Bounded: without the limit
        // the write waited for ever.
        let started = tokio::time::Instant::now();
        let stalled = tokio::time::timeout(limit * 10, conn.write_all(b"more")).await;
        let error = stalled.expect("the write still waits after ten limits").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
        assert_eq!(started.elapsed(), limit);
        assert!(conn.ever_waited());
        // The reads still work.
        far.write_all(b"ok").await.unwrap();
        assert_eq!(conn.read(&mut got).await.unwrap(), 2);
        drop(far);
    }

    /// A write that waits but gets somewhere within the limit each time is not cut off,
    /// however long it takes in all (each wait is timed afresh); once the client stops
    /// reading, the next wait fails after the limit.
    #[tokio::test(start_paused = true)]
    async fn a_write_that_gets_somewhere_within_the_limit_is_not_cut_off() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let limit = Duration::from_secs(30);
        let (near, mut far) = tokio::io::duplex(16);
        let mut conn = connections::WriteStall::new(near, limit);
        let reader = tokio::spawn(async move {
            let mut taken = 0;
            while taken < 160 {
                tokio::time::sleep(limit * 3 / 4).await;
                let mut chunk = [0; 16];
                taken += far.read(&mut chunk).await.unwrap();
            }
            // Stops reading, keeping the connection open.
            far
        });
        let started = tokio::time::Instant::now();
        conn.write_all(&[7; 160]).await.unwrap();
        assert!(started.elapsed() > limit * 5, "{:?}", started.elapsed());
        let far = reader.await.unwrap();

        let started = tokio::time::Instant::now();
        let stalled = tokio::time::timeout(limit * 10, conn.write_all(&[8; 32])).await;
        let error = stalled.expect("the write still waits after ten limits").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
        assert_eq!(started.elapsed(), limit);
        drop(far);
    }

    /// One deadline for the whole shutdown: what the connections took of the grace period
    /// is not given again to the workers, nor the workers' to the dead letters' last move
    /// (each stage got the whole grace period: up to three in all). Here the connections
    /// took 4 s of 10, and an action never finishes: the shutdown ends 10 s after the
    /// signal, and the job is counted as lost (exit status 1).
    #[tokio::test(start_paused = true)]
    async fn the_whole_shutdown_keeps_to_one_deadline() {
        let inbox: Arc<dyn Inbox> = Arc::new(MemoryInbox::new());
        let verified = hookguard::verify::Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
        let hook = Webhook::new(
            "github",
            &verified,
            Default::default(),
            "{}".into(),
            time::OffsetDateTime::now_utc(),
        );
        inbox.push(hook).await.unwrap();
        let (started, mut running) = tokio::sync::mpsc::unbounded_channel();
        let worker = Worker::new(Arc::clone(&inbox), move |_hook: Webhook| {
            let _ = started.send(());
            std::future::pending::<Result<(), String>>()
        })
        .spawn();
        running.recv().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sweeper = Sweeper::spawn(
            Arc::clone(&inbox),
            Appender { path: dir.path().join("dead.jsonl"), lock: Arc::default() },
        );

        let grace = Duration::from_secs(10);
        let signal = tokio::time::Instant::now();
        let deadline = Deadline::after(grace);
        // The open connections took 4 s of the grace period.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(deadline.left(), Duration::from_secs(6));
        let code =
            wind_down(Arc::clone(&inbox), Workers::Draining(worker), Some(sweeper), deadline, grace).await;
        let took = signal.elapsed();
        assert!(took >= grace && took < grace + Duration::from_secs(1), "the shutdown took {took:?}");
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(1)), "the job is lost");
        assert_eq!(deadline.left(), Duration::ZERO);
    }
}
