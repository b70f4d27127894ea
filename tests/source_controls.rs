//! Source controls over real loopback HTTP: allow-lists behind trusted proxies (IPv4 and
//! IPv6 listeners, run-time updates), rate limits and the failure budget (injected clock,
//! no sleeps).
#![cfg(all(feature = "source-controls", feature = "axum"))]

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Extension, Router, routing::post};
use hookguard::{
    clock::ManualClock,
    guard::Guard,
    layer::{AllowListLayer, RateLimitLayer, VerifyLayer},
    providers::github,
    source::{AllowList, ClientAddr, ForwardedHeader, PeerAddr, SourceLimiter, TrustedProxies},
    verify::{Outgoing, Sign},
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tower::{ServiceBuilder, ServiceExt as _};

const SECRET: &str = "It's a Secret to Everybody";

/// Serves `app` on `bind` (`127.0.0.1:0` or `[::1]:0`) with the peer address available.
async fn serve(app: Router, bind: &str) -> SocketAddr {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    addr
}

/// A client whose connections come from `local` (any 127.0.0.0/8 address is loopback).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder().no_proxy().local_address(local.parse::<IpAddr>().unwrap()).build().unwrap()
}

/// Echoes the client address the layers settled on.
fn echo_app() -> Router {
    Router::new().route(
        "/hooks",
        post(|Extension(ClientAddr(ip)): Extension<ClientAddr>| async move { ip.to_string() }),
    )
}

async fn post_from(client: &reqwest::Client, server: SocketAddr, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = client.post(format!("http://{server}/hooks")).body("{}");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

/// `hookguard_refused_total` by its `by` label (one snapshot: taking one resets the
/// debugging recorder's counters).
fn refusals(snapshotter: &Snapshotter) -> std::collections::HashMap<String, u64> {
    let mut counts = std::collections::HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if key.key().name() != "hookguard_refused_total" {
            continue;
        }
        if let (Some(by), DebugValue::Counter(n)) = (key.key().labels().find(|l| l.key() == "by"), value) {
            *counts.entry(by.value().to_owned()).or_default() += n;
        }
    }
    counts
}

#[tokio::test]
async fn allow_list_on_ipv4_and_ipv6_listeners_with_run_time_updates() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);

    let list: AllowList = "127.0.0.1/32".parse().unwrap();
    let app = echo_app().layer(AllowListLayer::new(list.clone()));
    let v4 = serve(app.clone(), "127.0.0.1:0").await;
    let v6 = serve(app, "[::1]:0").await;
    let (c1, c2, c6) = (client_from("127.0.0.1"), client_from("127.0.0.2"), client_from("::1"));

    assert_eq!(post_from(&c1, v4, &[]).await, (200, "127.0.0.1".into()), "allowed v4");
    let (status, body) = post_from(&c2, v4, &[]).await;
    assert_eq!(status, 403, "refused v4");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["type"], "https://hookguard.dev/problems/source-not-allowed");
    assert_eq!(post_from(&c6, v6, &[]).await.0, 403, "::1 not in the list yet");

    // Run-time update: every clone of the list sees it at once.
    list.replace(["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()]);
    assert_eq!(post_from(&c6, v6, &[]).await, (200, "::1".into()), "allowed v6 after update");

    // Reload from a file (a provider's published ranges, refreshed by a job).
    let path = std::env::temp_dir().join(format!("hookguard-allow-{}.txt", std::process::id()));
    std::fs::write(&path, "# refreshed\n127.0.0.2/32\n").unwrap();
    assert_eq!(list.reload_from_file(&path).unwrap(), 1);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(post_from(&c2, v4, &[]).await.0, 200, "127.0.0.2 allowed after reload");
    assert_eq!(post_from(&c1, v4, &[]).await.0, 403, "127.0.0.1 refused after reload");
    assert_eq!(post_from(&c6, v6, &[]).await.0, 403, "::1 refused after reload");

    assert_eq!(refusals(&snapshotter).get("allow-list"), Some(&4));
}

#[tokio::test]
async fn refused_before_the_body_is_read() {
    let handled = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&handled);
    let app = Router::new()
        .route(
            "/hooks",
            post(move |body: String| async move {
                seen.fetch_add(1, Ordering::SeqCst);
                body.len().to_string()
            }),
        )
        .layer(AllowListLayer::new("127.0.0.1/32".parse().unwrap()));
    let server = serve(app, "127.0.0.1:0").await;

    // Headers announce a large body that is never sent: the answer comes anyway.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    write_all(
        &mut stream,
        b"POST /hooks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n",
    )
    .await;
    let head = tokio::time::timeout(Duration::from_secs(10), read_some(&stream)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(handled.load(Ordering::SeqCst), 0);
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

/// (name, client, server, headers, expected status, expected client address)
type Row<'a> = (&'a str, &'a reqwest::Client, SocketAddr, &'a [(&'a str, &'a str)], u16, &'a str);

#[tokio::test]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let list: AllowList = "203.0.113.0/24\n2001:db8::/32".parse().unwrap();
    // 127.0.0.1 is the proxy next to us; 10.0.0.0/8 is a proxy further out.
    let trusted = || {
        TrustedProxies::new([
            "127.0.0.1/32".parse().unwrap(),
            "::1/128".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ])
    };
    let xff =
        serve(echo_app().layer(AllowListLayer::new(list.clone()).trusted_proxies(trusted())), "127.0.0.1:0")
            .await;
    let xff6 =
        serve(echo_app().layer(AllowListLayer::new(list.clone()).trusted_proxies(trusted())), "[::1]:0")
            .await;
    let fwd = serve(
        echo_app()
            .layer(AllowListLayer::new(list).trusted_proxies(trusted().header(ForwardedHeader::Forwarded))),
        "127.0.0.1:0",
    )
    .await;
    let (proxy, stranger, proxy6) = (client_from("127.0.0.1"), client_from("127.0.0.3"), client_from("::1"));

    let rows: &[Row<'_>] = &[
        (
            "forged XFF from an untrusted peer is ignored",
            &stranger,
            xff,
            &[("x-forwarded-for", "203.0.113.5")],
            403,
            "",
        ),
        ("one trusted proxy", &proxy, xff, &[("x-forwarded-for", "203.0.113.5")], 200, "203.0.113.5"),
        (
            "client-forged leftmost value is never used",
            &proxy,
            xff,
            &[("x-forwarded-for", "203.0.113.5, 198.51.100.9")],
            403,
            "",
        ),
        (
            "leftmost forgery ignored",
            &proxy,
            xff,
            &[("x-forwarded-for", "198.51.100.9, 203.0.113.5")],
            200,
            "203.0.113.5",
        ),
        (
            "two trusted proxies",
            &proxy,
            xff,
            &[("x-forwarded-for", "198.51.100.9, 203.0.113.5, 10.1.2.3")],
            200,
            "203.0.113.5",
        ),
        (
            "two header lines",
            &proxy,
            xff,
            &[("x-forwarded-for", "198.51.100.9"), ("x-forwarded-for", "203.0.113.5, 10.1.2.3")],
            200,
            "203.0.113.5",
        ),
        ("unusable hop from a proxy", &proxy, xff, &[("x-forwarded-for", "unknown")], 403, ""),
        (
            "IPv6 proxy and client",
            &proxy6,
            xff6,
            &[("x-forwarded-for", "[2001:db8::5]:443")],
            200,
            "2001:db8::5",
        ),
        (
            "Forwarded, one proxy",
            &proxy,
            fwd,
            &[("forwarded", "for=203.0.113.5;proto=https")],
            200,
            "203.0.113.5",
        ),
        (
            "Forwarded, two proxies",
            &proxy,
            fwd,
            &[("forwarded", r#"for=198.51.100.9, for="203.0.113.5:4711", for=10.1.2.3;by=127.0.0.1"#)],
            200,
            "203.0.113.5",
        ),
        (
            "XFF ignored where Forwarded is configured",
            &proxy,
            fwd,
            &[("x-forwarded-for", "203.0.113.5")],
            403,
            "",
        ),
        ("Forwarded from an untrusted peer", &stranger, fwd, &[("forwarded", "for=203.0.113.5")], 403, ""),
    ];
    for (name, client, server, headers, status, echoed) in rows {
        let (got, body) = post_from(client, *server, headers).await;
        assert_eq!(got, *status, "{name}: {body}");
        if *status == 200 {
            assert_eq!(body, *echoed, "{name}");
        }
    }
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

async fn deliver(client: &reqwest::Client, server: SocketAddr, id: &str, forged: bool) -> reqwest::Response {
    // Each delivery its own payload, as GitHub's are: GitHub signs the body only, so
    // deliveries are told apart (and replays recognised) by their signature.
    let body = format!(r#"{{"zen":"Keep it logically awesome.","n":"{id}"}}"#).into_bytes();
    let mut req = client.post(format!("http://{server}/hooks")).body(body.clone());
    if forged {
        req = req.header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)));
    } else {
        for (k, v) in signed_headers(&body, id) {
            req = req.header(k, v);
        }
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn failure_budget_refuses_forgers_before_verification_and_recovers() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);

    let clock = ManualClock::at_unix(1_700_000_000);
    let limiter = SourceLimiter::builder()
        .requests(1_000, Duration::from_secs(1))
        .failures(3, Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    let verified = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&verified);
    let guard = Guard::builder("github", github::scheme(SECRET).unwrap()).clock(clock.clone()).build();
    let app = Router::new()
        .route(
            "/hooks",
            post(move || async move {
                seen.fetch_add(1, Ordering::SeqCst);
                "ok"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(RateLimitLayer::new(limiter.clone()).scope("github"))
                .layer(VerifyLayer::new(guard)),
        );
    let server = serve(app, "127.0.0.1:0").await;
    let (forger, sender) = (client_from("127.0.0.2"), client_from("127.0.0.3"));

    let mut statuses = Vec::new();
    for n in 0..10 {
        statuses.push(deliver(&forger, server, "", true).await.status().as_u16());
        // Valid deliveries from another address keep getting through.
        let ok = deliver(&sender, server, &format!("valid-{n}"), false).await;
        assert_eq!(ok.status(), 200, "valid delivery {n}");
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    assert_eq!(verified.load(Ordering::SeqCst), 10);

    // While its budget is empty, even a genuine delivery from the forger's address is
    // refused before verification, with Retry-After (one failure refills every 20 s).
    let refused = deliver(&forger, server, "from-forger-1", false).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "20");
    assert_eq!(refused.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(problem["type"], "https://hookguard.dev/problems/rate-limited");

    clock.advance(Duration::from_secs(19));
    assert_eq!(deliver(&forger, server, "from-forger-2", false).await.status(), 429, "not refilled yet");
    clock.advance(Duration::from_secs(1));
    assert_eq!(deliver(&forger, server, "from-forger-3", false).await.status(), 200, "recovered");
    assert_eq!(
        deliver(&forger, server, "from-forger-4", false).await.status(),
        200,
        "verified requests spend nothing"
    );
    assert_eq!(deliver(&forger, server, "", true).await.status(), 401, "one refilled failure");
    assert_eq!(deliver(&forger, server, "", true).await.status(), 429);

    let counts = refusals(&snapshotter);
    assert_eq!(counts.get("failure-budget"), Some(&10));
    assert_eq!(counts.get("rate-limit"), None);
}

#[tokio::test]
async fn a_client_the_rate_limit_could_not_resolve_is_not_passed_on_as_known() {
    // The rate limit (outer) counts an unusable forwarding header under the proxy's own
    // address; the allow-list (inner) must still see an unknown client, not the proxy,
    // even when the proxy's range is allowed (internal senders).
    let proxies = || TrustedProxies::new(["127.0.0.1/32".parse().unwrap()]);
    let limiter = SourceLimiter::builder().requests(100, Duration::from_secs(10)).build().unwrap();
    let app = echo_app().layer(
        ServiceBuilder::new().layer(RateLimitLayer::new(limiter).trusted_proxies(proxies())).layer(
            AllowListLayer::new("127.0.0.0/8\n203.0.113.0/24".parse().unwrap()).trusted_proxies(proxies()),
        ),
    );
    let server = serve(app, "127.0.0.1:0").await;
    let proxy = client_from("127.0.0.1");
    let (status, body) = post_from(&proxy, server, &[("x-forwarded-for", "unknown")]).await;
    assert_eq!(status, 403, "an unresolved client is refused by the allow-list: {body}");
    let chain = vec!["127.0.0.1"; 33].join(",");
    assert_eq!(post_from(&proxy, server, &[("x-forwarded-for", &chain)]).await.0, 403, "too many hops");
    let (status, body) = post_from(&proxy, server, &[("x-forwarded-for", "203.0.113.5")]).await;
    assert_eq!((status, body.as_str()), (200, "203.0.113.5"), "a resolved client is passed on");

    // An inner allow-list with no proxies of its own reuses the outer layer's answer,
    // "unknown" included: it does not fall back to judging the proxy's own address.
    let limiter = SourceLimiter::builder().requests(100, Duration::from_secs(10)).build().unwrap();
    let app = echo_app().layer(
        ServiceBuilder::new()
            .layer(RateLimitLayer::new(limiter).trusted_proxies(proxies()))
            .layer(AllowListLayer::new("127.0.0.0/8\n203.0.113.0/24".parse().unwrap())),
    );
    let server = serve(app, "127.0.0.1:0").await;
    let (status, body) = post_from(&proxy, server, &[("x-forwarded-for", "unknown")]).await;
    assert_eq!(status, 403, "an unresolved client is refused by a reusing allow-list: {body}");
    let (status, body) = post_from(&proxy, server, &[("x-forwarded-for", "203.0.113.5")]).await;
    assert_eq!((status, body.as_str()), (200, "203.0.113.5"), "a resolved client is reused");
}

/// Clients a trusted proxy forwarded without a readable address are counted apart from
/// the proxy's own requests: their failures do not empty the proxy's failure budget. And
/// a malformed `X-Forwarded-For` left of the proxy's hop (an open quote, not ASCII) is
/// never read: the client is the hop the proxy wrote.
#[tokio::test]
async fn an_unreadable_client_spends_no_budget_of_its_proxy() {
    let proxies = TrustedProxies::new(["127.0.0.1/32".parse().unwrap()]);
    let limiter = SourceLimiter::builder()
        .requests(100, Duration::from_secs(10))
        .failures(1, Duration::from_secs(600))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/hooks",
            post(|client: Option<Extension<ClientAddr>>| async move {
                let who =
                    client.map_or_else(|| "unknown".to_owned(), |Extension(ClientAddr(ip))| ip.to_string());
                (http::StatusCode::UNAUTHORIZED, who)
            }),
        )
        .layer(
            RateLimitLayer::new(limiter)
                .trusted_proxies(proxies)
                .failure_statuses([http::StatusCode::UNAUTHORIZED]),
        );
    let server = serve(app, "127.0.0.1:0").await;
    let proxy = client_from("127.0.0.1");
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], (u16, &'a str));
    let cases: [Case; 6] = [
        ("unreadable: a first failure", &[("x-forwarded-for", "unknown")], (401, "unknown")),
        ("unreadable: its budget spent", &[("x-forwarded-for", "unknown")], (429, "")),
        ("the proxy's own request keeps its budget", &[], (401, "127.0.0.1")),
        (
            "an open quote left of the proxy's hop",
            &[("x-forwarded-for", "\"x, 203.0.113.5")],
            (401, "203.0.113.5"),
        ),
        (
            "the client it named has a budget of its own",
            &[("x-forwarded-for", "198.51.100.1")],
            (401, "198.51.100.1"),
        ),
        ("and so had 203.0.113.5", &[("x-forwarded-for", "203.0.113.5")], (429, "")),
    ];
    for (name, headers, (want_status, want_client)) in cases {
        let (status, body) = post_from(&proxy, server, headers).await;
        assert_eq!(status, want_status, "{name}: {body}");
        if status == 401 {
            assert_eq!(body, want_client, "{name}");
        }
    }
}

#[tokio::test]
async fn ordinary_limit_answers_429_with_retry_after_and_refills() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);

    let clock = ManualClock::at_unix(1_700_000_000);
    let limiter =
        SourceLimiter::builder().requests(2, Duration::from_secs(10)).clock(clock.clone()).build().unwrap();
    let app = echo_app().layer(
        ServiceBuilder::new()
            .layer(AllowListLayer::new("127.0.0.0/8\n::1".parse().unwrap()))
            .layer(RateLimitLayer::new(limiter)),
    );
    let v4 = serve(app.clone(), "127.0.0.1:0").await;
    let v6 = serve(app, "[::1]:0").await;
    let (a, b, c6) = (client_from("127.0.0.2"), client_from("127.0.0.3"), client_from("::1"));

    for client in [&a, &c6] {
        let server = if std::ptr::eq(client, &c6) { v6 } else { v4 };
        assert_eq!(post_from(client, server, &[]).await.0, 200);
        assert_eq!(post_from(client, server, &[]).await.0, 200);
        let res = client.post(format!("http://{server}/hooks")).send().await.unwrap();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "5");
    }
    assert_eq!(post_from(&b, v4, &[]).await.0, 200, "another address has its own budget");
    clock.advance(Duration::from_secs(5));
    assert_eq!(post_from(&a, v4, &[]).await.0, 200, "refilled");
    assert_eq!(post_from(&a, v4, &[]).await.0, 429);
    assert_eq!(refusals(&snapshotter).get("rate-limit"), Some(&3));
}

#[tokio::test]
async fn hyper_users_set_peer_addr_and_missing_peers_are_a_server_error() {
    let limiter = SourceLimiter::builder().build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(AllowListLayer::new("192.0.2.0/24".parse().unwrap()))
        .layer(RateLimitLayer::new(limiter.clone()))
        .service_fn(|req: http::Request<String>| async move {
            let ip = req.extensions().get::<ClientAddr>().map(|c| c.0.to_string()).unwrap_or_default();
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from(ip),
            )))
        });
    let mut req = http::Request::post("/").body(String::new()).unwrap();
    req.extensions_mut().insert(PeerAddr("192.0.2.7:5000".parse().unwrap()));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    assert_eq!(body, "192.0.2.7");
    assert_eq!(limiter.tracked(), 1);

    let res = svc.oneshot(http::Request::post("/").body(String::new()).unwrap()).await.unwrap();
    assert_eq!(res.status(), 500);
}

/// A [`ClientAddr`] an outer layer resolved is reused only by a layer with the same
/// trusted proxies (or none set): a router-wide rate limit without proxies must not make a
/// route's allow-list behind the load balancer judge the balancer's own address.
#[tokio::test]
async fn a_client_address_is_reused_only_with_the_same_trusted_proxies() {
    let proxies = || TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
    let limiter = || SourceLimiter::builder().requests(1_000, Duration::from_secs(1)).build().unwrap();
    let echo = tower::service_fn(|req: http::Request<String>| async move {
        let who =
            req.extensions().get::<ClientAddr>().map_or_else(|| "unknown".to_owned(), |c| c.0.to_string());
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(
            who,
        ))))
    });
    // Between the two layers: takes the forwarding header out, so that a layer that
    // resolves again (rather than reusing) finds the balancer's address.
    let strip = |mut req: http::Request<String>| {
        req.headers_mut().remove("x-forwarded-for");
        req
    };
    let via_balancer = |forwarded: &str| {
        let mut req =
            http::Request::post("/hooks").header("x-forwarded-for", forwarded).body(String::new()).unwrap();
        req.extensions_mut().insert(PeerAddr("10.0.0.2:40000".parse().unwrap()));
        req
    };
    async fn answer<S>(svc: S, req: http::Request<String>) -> (u16, String)
    where
        S: tower::Service<
                http::Request<String>,
                Response = http::Response<http_body_util::Full<bytes::Bytes>>,
            >,
        S::Error: std::fmt::Debug,
    {
        let res = svc.oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }
    let allow = || AllowListLayer::new("203.0.113.0/24".parse().unwrap());

    // The reviewer's case: a router-wide rate limit without proxies over a route's
    // allow-list with them. The allow-list judges the client, not the balancer.
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter()))
        .layer(allow().trusted_proxies(proxies()))
        .service(echo);
    assert_eq!(
        answer(svc.clone(), via_balancer("203.0.113.5")).await,
        (200, "203.0.113.5".into()),
        "resolved again"
    );
    assert_eq!(answer(svc, via_balancer("198.51.100.9")).await.0, 403, "and refused by its own reading");

    // Other proxies (here a narrower range that leaves the balancer out) resolve again too.
    let svc = ServiceBuilder::new()
        .layer(
            RateLimitLayer::new(limiter())
                .trusted_proxies(TrustedProxies::new(["10.9.0.0/16".parse().unwrap()])),
        )
        .layer(allow().trusted_proxies(proxies()))
        .service(echo);
    assert_eq!(answer(svc, via_balancer("203.0.113.5")).await, (200, "203.0.113.5".into()), "other proxies");

    // The same proxies (built twice, equal) are reused: the inner layer does not read the
    // header again (gone by then).
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter()).trusted_proxies(proxies()))
        .map_request(strip)
        .layer(allow().trusted_proxies(proxies()))
        .service(echo);
    assert_eq!(
        answer(svc, via_balancer("203.0.113.5")).await,
        (200, "203.0.113.5".into()),
        "same proxies: reused"
    );

    // A layer with no proxies set reuses what an outer layer resolved, as before.
    let svc = ServiceBuilder::new()
        .layer(AllowListLayer::new("0.0.0.0/0".parse().unwrap()).trusted_proxies(proxies()))
        .map_request(strip)
        .layer(allow())
        .service(echo);
    assert_eq!(
        answer(svc, via_balancer("203.0.113.5")).await,
        (200, "203.0.113.5".into()),
        "none set: reused"
    );

    // Resolved again and unresolved: the outer layer's client is not passed on.
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter()))
        .layer(RateLimitLayer::new(limiter()).trusted_proxies(proxies()))
        .service(echo);
    assert_eq!(answer(svc, via_balancer("unknown")).await, (200, "unknown".into()), "not the balancer");

    // A ClientAddr the application put in itself is believed.
    let svc = ServiceBuilder::new()
        .map_request(|mut req: http::Request<String>| {
            req.extensions_mut().insert(ClientAddr("203.0.113.77".parse().unwrap()));
            req
        })
        .layer(allow().trusted_proxies(proxies()))
        .service(echo);
    assert_eq!(
        answer(svc, via_balancer("198.51.100.9")).await,
        (200, "203.0.113.77".into()),
        "the app's own"
    );
}
