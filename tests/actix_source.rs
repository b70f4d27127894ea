//! `actix::SourceControls` over real loopback HTTP against an actix-web server: refused
//! addresses never reach the handler (nor is their body read), forged deliveries spend the
//! sender's failure budget until it is refused before verification while other senders
//! get through, and the budget refills on an injected clock (no sleeps).
#![cfg(all(feature = "source-controls", feature = "actix"))]

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use actix_web::{App, HttpResponse, web};
use hookguard::{
    actix::{SourceControls, Verify, webhook_route},
    clock::ManualClock,
    guard::{Guard, SchemeSource, SourceError},
    inbox::{Inbox as _, MemoryInbox},
    providers::github,
    replay::BoxFuture,
    source::{ClientAddr, PeerAddr, SourceLimiter, TrustedProxies},
    verify::{Outgoing, Scheme, Sign},
};
use tokio::net::{TcpSocket, TcpStream};

const SECRET: &str = "It's a Secret to Everybody";

#[derive(Clone)]
struct Setup {
    clock: ManualClock,
    /// Terminal mode (`webhook_route`) behind the failure budget.
    terminal: SourceLimiter,
    /// Middleware mode (`Verify` + handler) behind the failure budget.
    middleware: SourceLimiter,
    inbox: MemoryInbox,
    handled: Arc<AtomicUsize>,
}

impl Setup {
    fn new() -> Self {
        let clock = ManualClock::at_unix(1_700_000_000);
        let limiter = || {
            SourceLimiter::builder()
                .requests(1_000, Duration::from_secs(1))
                .failures(3, Duration::from_secs(60))
                .clock(clock.clone())
                .build()
                .unwrap()
        };
        Self {
            terminal: limiter(),
            middleware: limiter(),
            clock: clock.clone(),
            inbox: MemoryInbox::new(),
            handled: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn handled(&self) -> usize {
        self.handled.load(Ordering::SeqCst)
    }
}

fn guard(s: &Setup) -> Guard {
    Guard::builder("github", github::scheme(SECRET).unwrap())
        .clock(s.clock.clone())
        .inbox(s.inbox.clone())
        .build()
}

fn app(
    s: Setup,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let handled = Arc::clone(&s.handled);
    let counted = move |client: Option<web::ReqData<ClientAddr>>| {
        let handled = Arc::clone(&handled);
        async move {
            handled.fetch_add(1, Ordering::SeqCst);
            HttpResponse::Ok().body(client.map(|c| c.0.to_string()).unwrap_or_default())
        }
    };
    App::new()
        .service(
            web::resource("/allow")
                .wrap(SourceControls::new().allow_list("127.0.0.2/32".parse().unwrap()))
                .route(web::post().to(counted.clone())),
        )
        .service(
            web::resource("/hooks")
                .wrap(SourceControls::new().rate_limit(s.terminal.clone()).scope("github"))
                .route(webhook_route(guard(&s))),
        )
        .service(
            // A rate limit (outer) over an allow-list (inner) that allows the proxy's own
            // range, both behind the proxy 127.0.0.1.
            web::resource("/behind-proxy")
                .wrap(
                    SourceControls::new()
                        .allow_list("127.0.0.0/8\n203.0.113.0/24".parse().unwrap())
                        .trusted_proxies(proxy()),
                )
                .wrap(SourceControls::new().rate_limit(s.terminal.clone()).trusted_proxies(proxy()))
                .route(web::post().to(counted.clone())),
        )
        .service(
            // The guard's secret source reads the connection's peer address, with no
            // SourceControls in front.
            web::resource("/by-peer").route(webhook_route(
                Guard::builder_with_source("github", ByPeer)
                    .clock(s.clock.clone())
                    .inbox(s.inbox.clone())
                    .build(),
            )),
        )
        .service(
            // The guard's secret source reads the client address SourceControls resolved.
            web::resource("/by-client")
                .wrap(SourceControls::new().allow_list("127.0.0.0/8".parse().unwrap()))
                .route(webhook_route(
                    Guard::builder_with_source("github", ByClient)
                        .clock(s.clock.clone())
                        .inbox(s.inbox.clone())
                        .build(),
                )),
        )
        .service(
            // The same, but the inner allow-list has no proxies of its own: it reuses the
            // rate limit's answer, "unknown" included.
            web::resource("/behind-proxy-reused")
                .wrap(SourceControls::new().allow_list("127.0.0.0/8\n203.0.113.0/24".parse().unwrap()))
                .wrap(SourceControls::new().rate_limit(s.terminal.clone()).trusted_proxies(proxy()))
                .route(web::post().to(counted.clone())),
        )
        .service(
            web::resource("/limited-behind-proxy")
                .wrap(SourceControls::new().rate_limit(s.terminal.clone()).trusted_proxies(proxy()))
                .route(web::post().to(counted.clone())),
        )
        .service(
            web::resource("/verify")
                .wrap(Verify::new(guard(&s)))
                .wrap(SourceControls::new().rate_limit(s.middleware.clone()).scope("github"))
                .route(web::post().to(counted)),
        )
}

/// A secret source that knows only peers 127.0.0.4, by the [`PeerAddr`] in the request's
/// extensions.
#[derive(Debug)]
struct ByPeer;

impl SchemeSource for ByPeer {
    fn scheme<'a>(
        &'a self,
        parts: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Arc<dyn Scheme>, SourceError>> {
        let known = PeerAddr::from_extensions(&parts.extensions) == Some([127, 0, 0, 4].into());
        Box::pin(async move {
            if known {
                Ok(Arc::new(github::scheme(SECRET).unwrap()) as Arc<dyn Scheme>)
            } else {
                Err(SourceError::Unknown)
            }
        })
    }
}

/// A secret source that knows only clients in 127.0.0.0/8, by the [`ClientAddr`] in the
/// request's extensions.
#[derive(Debug)]
struct ByClient;

impl SchemeSource for ByClient {
    fn scheme<'a>(
        &'a self,
        parts: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Arc<dyn Scheme>, SourceError>> {
        let known = parts.extensions.get::<ClientAddr>().is_some_and(|c| c.0.is_loopback());
        Box::pin(async move {
            if known {
                Ok(Arc::new(github::scheme(SECRET).unwrap()) as Arc<dyn Scheme>)
            } else {
                Err(SourceError::Unknown)
            }
        })
    }
}

fn proxy() -> TrustedProxies {
    TrustedProxies::new(["127.0.0.1/32".parse().unwrap()])
}

struct Server {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// An actix server on its own thread and actix system.
    fn start(setup: &Setup) -> Self {
        let setup = setup.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = actix_web::HttpServer::new(move || app(setup.clone()))
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .bind(("127.0.0.1", 0))?;
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).expect("test is waiting");
                server.await
            })
        });
        let (addr, handle) = rx.recv_timeout(Duration::from_secs(30)).expect("actix server started");
        Self { addr, handle, thread }
    }

    async fn stop(self) {
        self.handle.stop(false).await;
        tokio::task::spawn_blocking(move || self.thread.join())
            .await
            .unwrap()
            .expect("actix thread")
            .expect("actix server");
    }
}

/// A client whose connections come from `local` (any 127.0.0.0/8 address is loopback).
/// No pooling: a server may close a connection after refusing a body it did not read.
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .local_address(local.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn signed_headers(body: &[u8], id: &str) -> Vec<(String, String)> {
    let scheme = github::scheme(SECRET).unwrap();
    scheme
        .sign(&Outgoing::new(body).id(id))
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .chain([("x-github-delivery".to_owned(), id.to_owned())])
        .collect()
}

async fn deliver(
    client: &reqwest::Client,
    server: SocketAddr,
    path: &str,
    id: &str,
    forged: bool,
) -> reqwest::Response {
    // Each delivery its own payload, as GitHub's are: GitHub signs the body only, so
    // deliveries are told apart (and replays recognised) by their signature.
    let body = format!(r#"{{"zen":"Keep it logically awesome.","n":"{id}"}}"#).into_bytes();
    let mut req = client.post(format!("http://{server}{path}")).body(body.clone());
    if forged {
        req = req.header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)));
    } else {
        for (k, v) in signed_headers(&body, id) {
            req = req.header(k, v);
        }
    }
    req.send().await.unwrap()
}

async fn problem_type(res: reqwest::Response) -> String {
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    problem["type"].as_str().unwrap_or_default().to_owned()
}

async fn write_all(stream: &mut TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        stream.writable().await.unwrap();
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
}

async fn read_some(stream: &TcpStream) -> String {
    let mut buf = vec![0u8; 1024];
    loop {
        stream.readable().await.unwrap();
        match stream.try_read(&mut buf) {
            Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn refused_addresses_get_403_before_the_body_is_read_and_the_handler_never_runs() {
    let setup = Setup::new();
    let server = Server::start(&setup);
    let (allowed, other) = (client_from("127.0.0.2"), client_from("127.0.0.3"));

    let refused = other.post(format!("http://{}/allow", server.addr)).body("{}").send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(problem_type(refused).await, "https://hookguard.dev/problems/source-not-allowed");
    assert_eq!(setup.handled(), 0, "the handler did not run");

    let ok = allowed.post(format!("http://{}/allow", server.addr)).body("{}").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "127.0.0.2", "the client address reaches the handler");
    assert_eq!(setup.handled(), 1);

    // Headers announce a large body that is never sent: the answer comes anyway.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    write_all(
        &mut stream,
        b"POST /allow HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n",
    )
    .await;
    let head = tokio::time::timeout(Duration::from_secs(10), read_some(&stream)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(setup.handled(), 1);
    drop(stream);

    server.stop().await;
}

#[tokio::test]
async fn a_client_the_rate_limit_could_not_resolve_is_not_passed_on_as_known() {
    let setup = Setup::new();
    let server = Server::start(&setup);
    let proxy = client_from("127.0.0.1");
    let post = |path: &'static str, forwarded: &'static str| {
        let req = proxy.post(format!("http://{}{path}", server.addr)).header("x-forwarded-for", forwarded);
        async move {
            let res = req.body("{}").send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    let (status, body) = post("/behind-proxy", "unknown").await;
    assert_eq!(status, 403, "the inner allow-list sees an unknown client, not the proxy: {body}");
    assert_eq!(post("/behind-proxy", "203.0.113.5").await, (200, "203.0.113.5".to_owned()));
    let (status, body) = post("/behind-proxy-reused", "unknown").await;
    assert_eq!(status, 403, "a reusing allow-list sees an unknown client, not the proxy: {body}");
    assert_eq!(post("/behind-proxy-reused", "203.0.113.5").await, (200, "203.0.113.5".to_owned()));
    // The rate limit alone: counted under the proxy, but the handler gets no client address.
    assert_eq!(post("/limited-behind-proxy", "unknown").await, (200, String::new()));
    assert_eq!(post("/limited-behind-proxy", "203.0.113.5").await, (200, "203.0.113.5".to_owned()));
    server.stop().await;
}

/// As with the Tower layers, the guard (and its secret source) sees the client address
/// that SourceControls resolved.
#[tokio::test]
async fn the_guard_sees_the_client_address_source_controls_resolved() {
    let setup = Setup::new();
    let server = Server::start(&setup);
    let res = deliver(&client_from("127.0.0.4"), server.addr, "/by-client", "c-1", false).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    server.stop().await;
}

/// As on a Tower server that records it, the guard (and its secret source) sees the
/// connection's peer address.
#[tokio::test]
async fn the_guard_sees_the_peer_address() {
    let setup = Setup::new();
    let server = Server::start(&setup);
    let res = deliver(&client_from("127.0.0.4"), server.addr, "/by-peer", "p-1", false).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let res = deliver(&client_from("127.0.0.5"), server.addr, "/by-peer", "p-2", false).await;
    assert_eq!(res.status(), 404, "another peer is unknown");
    server.stop().await;
}

#[tokio::test]
async fn forged_deliveries_exhaust_the_failure_budget_and_it_refills() {
    let setup = Setup::new();
    let server = Server::start(&setup);
    let (forger, sender) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let at = server.addr;

    // Terminal mode: webhook_route answers 401 for forgeries, 202 for valid deliveries.
    let mut statuses = Vec::new();
    for n in 0..8 {
        statuses.push(deliver(&forger, at, "/hooks", "", true).await.status().as_u16());
        let ok = deliver(&sender, at, "/hooks", &format!("valid-{n}"), false).await;
        assert_eq!(ok.status(), 202, "valid delivery {n} from another client");
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429, 429, 429]);
    assert_eq!(setup.inbox.depth().await.unwrap(), 8);

    // While its budget is empty even a genuine delivery from the forger's address is
    // refused before verification (one failure refills every 20 s).
    let refused = deliver(&forger, at, "/hooks", "from-forger-1", false).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "20");
    assert_eq!(problem_type(refused).await, "https://hookguard.dev/problems/rate-limited");
    assert_eq!(setup.inbox.depth().await.unwrap(), 8, "nothing kept");

    setup.clock.advance(Duration::from_secs(19));
    assert_eq!(
        deliver(&forger, at, "/hooks", "from-forger-2", false).await.status(),
        429,
        "not refilled yet"
    );
    setup.clock.advance(Duration::from_secs(1));
    assert_eq!(deliver(&forger, at, "/hooks", "from-forger-3", false).await.status(), 202, "recovered");
    assert_eq!(deliver(&forger, at, "/hooks", "from-forger-4", false).await.status(), 202, "verified: free");
    assert_eq!(deliver(&forger, at, "/hooks", "", true).await.status(), 401, "one refilled failure");
    assert_eq!(deliver(&forger, at, "/hooks", "", true).await.status(), 429);

    // Middleware mode: `Verify`'s refusals are marked too; the handler runs only for
    // verified deliveries.
    let mut statuses = Vec::new();
    for n in 0..5 {
        statuses.push(deliver(&forger, at, "/verify", "", true).await.status().as_u16());
        let ok = deliver(&sender, at, "/verify", &format!("mw-{n}"), false).await;
        assert_eq!(ok.status(), 200, "valid delivery {n} through Verify");
        assert_eq!(ok.text().await.unwrap(), "127.0.0.3");
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    assert_eq!(setup.handled(), 5);

    server.stop().await;
}

/// As with the Tower layers: a [`ClientAddr`] an outer `SourceControls` resolved is reused
/// only by one with the same trusted proxies (or none set). A rate limit without proxies
/// around an allow-list with them must not make the allow-list judge the balancer.
#[test]
fn a_client_address_is_reused_only_with_the_same_trusted_proxies() {
    use actix_web::{
        dev::{Service, ServiceRequest},
        test,
    };
    /// Between two controls: takes the forwarding header out, so that one that resolves
    /// again (rather than reusing) finds the balancer's address.
    fn strip<S: Service<ServiceRequest>>(mut req: ServiceRequest, srv: &S) -> S::Future {
        req.headers_mut().remove("x-forwarded-for");
        srv.call(req)
    }
    let proxies = || TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
    let limiter = || SourceLimiter::builder().requests(1_000, Duration::from_secs(1)).build().unwrap();
    let allow = || SourceControls::new().allow_list("203.0.113.0/24".parse().unwrap());
    let echo = |client: Option<web::ReqData<ClientAddr>>| async move {
        HttpResponse::Ok().body(client.map_or_else(|| "unknown".to_owned(), |c| c.0.to_string()))
    };
    actix_web::rt::System::new().block_on(async move {
        let app = test::init_service(
            App::new()
                .service(
                    // The reviewer's case: a rate limit without proxies (outer) over an
                    // allow-list with them (inner).
                    web::resource("/other")
                        .wrap(allow().trusted_proxies(proxies()))
                        .wrap(SourceControls::new().rate_limit(limiter()))
                        .route(web::post().to(echo)),
                )
                .service(
                    web::resource("/same")
                        .wrap(allow().trusted_proxies(proxies()))
                        .wrap_fn(strip)
                        .wrap(SourceControls::new().rate_limit(limiter()).trusted_proxies(proxies()))
                        .route(web::post().to(echo)),
                )
                .service(
                    web::resource("/unset")
                        .wrap(allow())
                        .wrap_fn(strip)
                        .wrap(SourceControls::new().rate_limit(limiter()).trusted_proxies(proxies()))
                        .route(web::post().to(echo)),
                )
                .service(
                    web::resource("/unresolved")
                        .wrap(SourceControls::new().rate_limit(limiter()).trusted_proxies(proxies()))
                        .wrap(SourceControls::new().rate_limit(limiter()))
                        .route(web::post().to(echo)),
                ),
        )
        .await;
        let call = |path: &str, forwarded: &str| {
            let req = test::TestRequest::post()
                .uri(path)
                .peer_addr("10.0.0.2:40000".parse().unwrap())
                .insert_header(("x-forwarded-for", forwarded))
                .to_request();
            let res = app.call(req);
            async move {
                let res = res.await.unwrap();
                let status = res.status().as_u16();
                (status, String::from_utf8(test::read_body(res).await.to_vec()).unwrap())
            }
        };
        assert_eq!(call("/other", "203.0.113.5").await, (200, "203.0.113.5".into()), "resolved again");
        assert_eq!(call("/other", "198.51.100.9").await.0, 403, "refused by its own reading");
        assert_eq!(call("/same", "203.0.113.5").await, (200, "203.0.113.5".into()), "same proxies: reused");
        assert_eq!(call("/unset", "203.0.113.5").await, (200, "203.0.113.5".into()), "none set: reused");
        assert_eq!(call("/unresolved", "unknown").await, (200, "unknown".into()), "not the balancer");
    });
}
