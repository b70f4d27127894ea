//! End-to-end tests of the `hookguard` binary: `serve` with a configuration, `sign` →
//! `verify` → `send` for every provider that can sign with secrets alone, each accepted
//! delivery once in the JSON-lines output; `verify` on the vectors of PROVIDERS.md; bad
//! configurations give the documented errors.
#![cfg(feature = "cli")]

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_hookguard");
const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Presets that verify but cannot sign with what a configuration gives them.
const VERIFY_ONLY: &[&str] = &["mailgun", "standard-webhooks-v1a", "discord", "sendgrid"];
/// Presets that sign the URL they were registered with.
const REGISTERED_URL: &[&str] = &["square", "trello"];
/// Presets that sign the URL they are called at (origin from `public_origin`).
const CALLED_URL: &[&str] = &["twilio", "hubspot", "hubspot-v2"];
const ORIGIN: &str = "https://hooks.example.com";
/// Presets whose deliveries have no replay key: each verified one is new, a copy too
/// (Dropbox's notices carry no id or timestamp, and two changes can come as the same bytes).
const NO_REPLAY_KEY: &[&str] = &["dropbox"];

fn hookguard(args: &[&str], stdin: &[u8]) -> Output {
    hookguard_env(args, stdin, &[])
}

fn hookguard_env(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("HOOKGUARD_SECRET")
        .env_remove("HOOKGUARD_SHARED_KEY")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hookguard");
    // A command refused before it reads its input (a usage error) may exit first: the
    // write then meets a closed pipe, which is not the test's failure.
    match child.stdin.take().expect("stdin").write_all(stdin) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("write stdin"),
    }
    child.wait_with_output().expect("hookguard output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hookguard-cli-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A running `hookguard serve`.
struct Server {
    child: Child,
    addr: String,
    /// Its stderr from the start, as it comes.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// The thread reading it, done when the server has exited.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(config: &Path) -> Self {
        Self::start_with_env(config, &[])
    }

    /// With these environment variables too (`RUST_LOG` is `warn` unless given).
    fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        Self::launch(Command::new(BIN), config, env)
    }

    /// Run by `nohup` (SIGHUP ignored, as from a terminal about to close).
    #[cfg(unix)]
    fn start_under_nohup(config: &Path) -> Self {
        let mut nohup = Command::new("nohup");
        nohup.arg(BIN);
        Self::launch(nohup, config, &[])
    }

    /// With SIGHUP's default action (coreutils' `env --default-signal`), whatever this test
    /// inherited: run under `nohup`, the tests' processes ignore SIGHUP, and so would it.
    #[cfg(target_os = "linux")]
    fn start_with_default_hangup(config: &Path) -> Self {
        let mut env = Command::new("env");
        env.args(["--default-signal=HUP"]).arg(BIN);
        Self::launch(env, config, &[])
    }

    fn launch(mut command: Command, config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = command
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = String::new();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line
                        .strip_prefix("hookguard: listening on http://")
                        .or_else(|| line.strip_prefix("hookguard: listening on https://"))
                    {
                        break addr.trim().to_owned();
                    }
                    seen.push_str(&line);
                    seen.push('\n');
                }
                _ => {
                    let _ = child.kill();
                    panic!("serve did not start:\n{seen}");
                }
            }
        };
        // Keep draining stderr so the server never blocks on it.
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(seen));
        let kept = std::sync::Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut kept = kept.lock().expect("stderr");
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        Self { child, addr, stderr, reader: Some(reader) }
    }

    /// Its stderr so far, once it holds `needle` (or after 20 s).
    fn stderr_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stderr = self.stderr.lock().expect("stderr").clone();
            if stderr.contains(needle) || Instant::now() > deadline {
                return stderr;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, then the exit status and the whole of stderr (within 15 s).
    fn stop_with_stderr(mut self) -> (std::process::ExitStatus, String) {
        let status = self.terminate();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the stderr reader");
        }
        let stderr = self.stderr.lock().expect("stderr").clone();
        (status, stderr)
    }

    /// SIGTERM, then the exit status within 15 s.
    fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    /// `signal` (`HUP`, …), then the exit status and the whole of stderr (within 15 s).
    fn signal_with_stderr(mut self, signal: &str) -> (std::process::ExitStatus, String) {
        let status = self.send_signal(signal);
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the stderr reader");
        }
        let stderr = self.stderr.lock().expect("stderr").clone();
        (status, stderr)
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_signal("TERM")
    }

    fn send_signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not stop after SIG{signal}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// A one-request-per-connection HTTP server on a random port: `answer(n, request)` is the
/// whole response to the `n`th request (from 0; say `Connection: close`); each request
/// (head and body) is sent on the channel once answered.
fn http_target(
    answer: impl Fn(usize, &str) -> String + Send + 'static,
) -> (std::net::SocketAddr, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head and the body (Content-Length).
            while let Ok(k) = stream.read(&mut chunk) {
                if k == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..k]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let request = String::from_utf8_lossy(&buf).into_owned();
            // The client may stop reading (a capped body): that is not the target's concern.
            let _ = stream.write_all(answer(n, &request).as_bytes());
            let _ = tx.send(request);
        }
    });
    (addr, rx)
}

fn signable() -> Vec<&'static str> {
    hookguard::providers::NAMES.iter().copied().filter(|n| !VERIFY_ONLY.contains(n)).collect()
}

#[test]
fn serve_accepts_each_signed_delivery_once() {
    let dir = temp_dir("serve");
    let out = dir.join("out.jsonl");
    let mut config = String::from("[server]\nlisten = \"127.0.0.1:0\"\n\n[worker]\nconcurrency = 2\n");
    for name in signable() {
        config.push_str(&format!(
            "\n[[endpoint]]\npath = \"/hooks/{name}\"\nprovider = \"{name}\"\nsecret_env = \"SECRET_{var}\"\n\
             secret_env_default = \"{KEY}\"\nappend_to = \"out.jsonl\"\n",
            var = name.replace('-', "_").to_uppercase(),
        ));
        if REGISTERED_URL.contains(&name) {
            config.push_str(&format!("url = \"{ORIGIN}/registered/{name}\"\n"));
        }
        if CALLED_URL.contains(&name) {
            config.push_str(&format!("public_origin = \"{ORIGIN}\"\n"));
        }
    }
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let server = Server::start(&config_path);

    assert_eq!(http_get(&server.addr, "/healthz"), (200, "ok\n".to_owned()));

    let now = time::OffsetDateTime::now_utc();
    let now_s = now.unix_timestamp().to_string();
    let mut expected = HashMap::new();
    for name in signable() {
        let body = format!(
            r#"{{"id":"evt_{name}","event_id":"ev_{name}","type":"test","action":{{"id":"act_{name}","type":"test"}},"event":{{"id":"pd_{name}"}},"webhookTimestamp":{}}}"#,
            now.unix_timestamp() * 1000
        );
        let path = format!("/hooks/{name}");
        let signed_url = if REGISTERED_URL.contains(&name) {
            format!("{ORIGIN}/registered/{name}")
        } else if CALLED_URL.contains(&name) {
            format!("{ORIGIN}{path}")
        } else {
            server.url(&path)
        };
        let id = format!("delivery-{name}");

        // sign → verify, through the command line.
        let signed = hookguard(
            &["sign", "-p", name, "-s", KEY, "--id", &id, "--timestamp", &now_s, "--url", &signed_url],
            body.as_bytes(),
        );
        assert!(signed.status.success(), "{name}: sign failed: {}", text(&signed.stderr));
        let headers = text(&signed.stdout);
        assert!(!headers.trim().is_empty(), "{name}: no headers");
        let mut args = vec!["verify", "-p", name, "-s", KEY, "--url", &signed_url];
        for line in headers.lines() {
            assert!(line.contains(": "), "{name}: `{line}` is not `Name: value`");
            args.extend(["-H", line]);
        }
        let verified = hookguard(&args, body.as_bytes());
        assert!(verified.status.success(), "{name}: verify failed: {}", text(&verified.stderr));
        let meta: serde_json::Value = serde_json::from_slice(&verified.stdout).expect("verify prints JSON");
        assert_eq!(meta["verified"], true, "{name}");

        // send, twice: the second is a duplicate (for a preset with a replay key).
        let target = server.url(&path);
        for attempt in 0..2 {
            let sent = hookguard(
                &[
                    "send",
                    "-p",
                    name,
                    "-s",
                    KEY,
                    "--url",
                    &target,
                    "--signed-url",
                    &signed_url,
                    "--id",
                    &id,
                    "--timestamp",
                    &now_s,
                ],
                body.as_bytes(),
            );
            let said = text(&sent.stdout);
            assert!(sent.status.success(), "{name}: send #{attempt}: {said}{}", text(&sent.stderr));
            let new = attempt == 0 || NO_REPLAY_KEY.contains(&name);
            let want = if new { "HTTP 202 Accepted" } else { "HTTP 200 OK" };
            assert!(said.starts_with(want), "{name}: send #{attempt} answered {said}");
        }
        expected.insert(format!("hooks-{name}"), name);
    }

    // Each accepted delivery appears once (twice for a preset with no replay key: both were new).
    let times = |name: &str| if NO_REPLAY_KEY.contains(&name) { 2 } else { 1 };
    let accepted: usize = expected.values().map(|name| times(name)).sum();
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let content = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<serde_json::Value> =
            content.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
        if lines.len() >= accepted || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in &lines {
        let endpoint = line["endpoint"].as_str().expect("endpoint").to_owned();
        let provider = expected.get(&endpoint).copied().unwrap_or("?");
        assert!(line["body"].as_str().expect("body").contains(&format!("evt_{provider}")), "{line}");
        *seen.entry(endpoint).or_default() += 1;
    }
    for (endpoint, name) in &expected {
        assert_eq!(seen.get(endpoint), Some(&times(name)), "{endpoint}: {seen:?}");
    }
    assert_eq!(lines.len(), accepted);

    let (status, metrics) = http_get(&server.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("hookguard_accepted_total"), "{metrics}");
    assert!(metrics.contains("hookguard_duplicates_total"), "{metrics}");

    let status = server.stop();
    assert!(status.success(), "serve exited with {status} after SIGTERM");
    // Stopped (its workers drained the inbox and its files are closed): no line can come
    // any more, and none came after the ones counted above.
    let after = std::fs::read_to_string(&out).expect("output").lines().count();
    assert_eq!(after, accepted, "lines kept coming");
    let _ = std::fs::remove_dir_all(&dir);
}

struct Vector {
    name: &'static str,
    provider: &'static str,
    secret: &'static str,
    headers: &'static [&'static str],
    body: &'static [u8],
    now: &'static str,
    url: Option<&'static str>,
    method: &'static str,
    /// The signature, which no output may contain on a mismatch.
    signature: &'static str,
}

const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SQUARE_BODY: &[u8] = br#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#;

fn vectors() -> Vec<Vector> {
    let mut v = vec![
        Vector {
            name: "standard webhooks 1",
            provider: "standard-webhooks",
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            headers: &[
                "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp: 1614265330",
                "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ],
            body: br#"{"test": 2432232314}"#,
            now: "1614265330",
            url: None,
            method: "POST",
            signature: "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        },
        Vector {
            name: "standard webhooks 2",
            provider: "standard-webhooks",
            secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            headers: &[
                "webhook-id: msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                "webhook-timestamp: 1649367553",
                "webhook-signature: v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ],
            body: br#"{"email":"test@example.com","username":"test_user"}"#,
            now: "2022-04-07T21:39:13Z",
            url: None,
            method: "POST",
            signature: "tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        },
        Vector {
            name: "github 1",
            provider: "github",
            secret: "It's a Secret to Everybody",
            headers: &["X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"],
            body: b"Hello, World!",
            now: "1700000000",
            url: None,
            method: "POST",
            signature: "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        },
        Vector {
            name: "github 2",
            provider: "github",
            secret: "mysecret",
            headers: &["X-Hub-Signature-256: sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3"],
            body: br#"{"foo":"bar"}"#,
            now: "1700000000",
            url: None,
            method: "POST",
            signature: "4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3",
        },
        Vector {
            name: "slack",
            provider: "slack",
            secret: "8f742231b10e8888abcd99yyyzzz85a5",
            headers: &[
                "X-Slack-Request-Timestamp: 1531420618",
                "X-Slack-Signature: v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ],
            body: SLACK_BODY,
            now: "1531420618",
            url: None,
            method: "POST",
            signature: "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        },
        Vector {
            name: "twilio",
            provider: "twilio",
            secret: "12345",
            headers: &[
                "Content-Type: application/x-www-form-urlencoded",
                "X-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            ],
            body: b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212",
            now: "1700000000",
            url: Some("https://mycompany.com/myapp.php?foo=1&bar=2"),
            method: "POST",
            signature: "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        },
        Vector {
            name: "paddle",
            provider: "paddle",
            secret: "VALID_SECRET",
            headers: &["Paddle-Signature: ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9"],
            body: br#"{"data": ["1", "2"]}"#,
            now: "1698796800",
            url: None,
            method: "POST",
            signature: "a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9",
        },
        Vector {
            name: "square 1",
            provider: "square",
            secret: "Ibxx_5AKakO-3qeNVR61Dw",
            headers: &["x-square-hmacsha256-signature: GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4="],
            body: SQUARE_BODY,
            now: "1700000000",
            url: Some("https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9"),
            method: "POST",
            signature: "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=",
        },
        Vector {
            name: "square 2",
            provider: "square",
            secret: "signature-key",
            headers: &["x-square-hmacsha256-signature: W3FlCNk5IA3ZQ2LHTWoajvzfaDu/OwY2tNHIHC3IUOA="],
            body: br#"{"data":{"type":"webhooks","id":"fake_id"}}"#,
            now: "1700000000",
            url: Some("https://webhook.site/webhooks"),
            method: "POST",
            signature: "W3FlCNk5IA3ZQ2LHTWoajvzfaDu/OwY2tNHIHC3IUOA=",
        },
        Vector {
            name: "hubspot v2 GET",
            provider: "hubspot-v2",
            secret: "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy",
            headers: &[
                "X-HubSpot-Signature-Version: v2",
                "X-HubSpot-Signature: eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e",
            ],
            body: b"",
            now: "1700000000",
            url: Some("https://www.example.com/webhook_uri"),
            method: "GET",
            signature: "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e",
        },
        Vector {
            name: "hubspot v2 POST",
            provider: "hubspot-v2",
            secret: "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy",
            headers: &[
                "X-HubSpot-Signature-Version: v2",
                "X-HubSpot-Signature: 9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900",
            ],
            body: br#"{"example_field":"example_value"}"#,
            now: "1700000000",
            url: Some("https://www.example.com/webhook_uri"),
            method: "POST",
            signature: "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900",
        },
    ];
    if cfg!(feature = "ed25519") {
        v.push(Vector {
            name: "standard webhooks v1a",
            provider: "standard-webhooks-v1a",
            secret: "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=",
            headers: &[
                "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp: 1614265330",
                "webhook-signature: v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
            ],
            body: br#"{"test": 2432232314}"#,
            now: "1614265330",
            url: None,
            method: "POST",
            signature: "hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
        });
    }
    if cfg!(feature = "ecdsa") {
        v.push(Vector {
            name: "sendgrid",
            provider: "sendgrid",
            secret: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==",
            headers: &[
                "X-Twilio-Email-Event-Webhook-Timestamp: 1600112502",
                "X-Twilio-Email-Event-Webhook-Signature: MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=",
            ],
            body: b"[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n",
            now: "1600112502",
            url: None,
            method: "POST",
            signature: "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=",
        });
    }
    v
}

fn verify_args<'a>(v: &'a Vector, now: &'a str) -> Vec<&'a str> {
    let mut args =
        vec!["verify", "--provider", v.provider, "--secret", v.secret, "--now", now, "--method", v.method];
    if let Some(url) = v.url {
        args.extend(["--url", url]);
    }
    for h in v.headers {
        args.extend(["-H", h]);
    }
    args
}

#[test]
fn verify_accepts_every_vector_and_explains_tampering() {
    for v in vectors() {
        let ok = hookguard(&verify_args(&v, v.now), v.body);
        assert!(ok.status.success(), "{}: {}", v.name, text(&ok.stderr));
        let meta: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("JSON");
        assert_eq!(meta["verified"], true, "{}", v.name);
        assert_eq!(meta["provider"].as_str().map(|p| v.provider.starts_with(p)), Some(true), "{}", v.name);

        let mut tampered = v.body.to_vec();
        tampered.extend_from_slice(b" ");
        let bad = hookguard(&verify_args(&v, v.now), &tampered);
        assert_eq!(bad.status.code(), Some(1), "{}", v.name);
        let said = text(&bad.stderr);
        assert!(said.contains("none matched") || said.contains("signature"), "{}: {said}", v.name);
        let all = format!("{said}{}", text(&bad.stdout));
        assert!(!all.contains(v.signature), "{}: the signature was printed: {all}", v.name);
    }
}

#[test]
fn verify_reasons_help() {
    let v = &vectors()[0];
    // Too old: 612 s after the timestamp.
    let late = hookguard(&verify_args(v, "1614265942"), v.body);
    assert_eq!(late.status.code(), Some(1));
    assert!(text(&late.stderr).contains("timestamp 612 s old, tolerance 300 s"), "{}", text(&late.stderr));
    // RFC 3339 for --now, and a tolerance of our own.
    let mut args = verify_args(v, "2021-02-25T15:12:10Z");
    args.extend(["--tolerance", "900"]);
    assert!(hookguard(&args, v.body).status.success());

    // Two signatures, one secret, none matching.
    let two = hookguard(
        &[
            "verify",
            "-p",
            "github",
            "-s",
            "wrong",
            "-H",
            "X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ],
        b"Hello, World!",
    );
    assert_eq!(two.status.code(), Some(1));
    let said = text(&two.stderr);
    assert!(said.contains("1 signature × 1 secret, none matched"), "{said}");
    assert!(!said.contains("757107ea"), "{said}");
    let rotation = hookguard(
        &[
            "verify",
            "-p",
            "stripe",
            "-s",
            "whsec_a",
            "--now",
            "1700000000",
            "-H",
            "Stripe-Signature: t=1700000000,v1=00000000000000000000000000000000000000000000000000000000000000aa,v1=00000000000000000000000000000000000000000000000000000000000000bb",
        ],
        b"{}",
    );
    assert!(
        text(&rotation.stderr).contains("2 signatures × 1 secret, none matched"),
        "{}",
        text(&rotation.stderr)
    );

    // Content-Length that does not fit the body.
    let short = hookguard(
        &["verify", "-p", "github", "-s", "It's a Secret to Everybody", "-H", "Content-Length: 15"],
        b"Hello, World!x",
    );
    assert_eq!(short.status.code(), Some(1));
    assert!(
        text(&short.stderr).contains("body is 14 bytes but Content-Length said 15"),
        "{}",
        text(&short.stderr)
    );

    // Missing headers name what was given.
    let bare = hookguard(&["verify", "-p", "github", "-s", "s", "-H", "X-Other: 1"], b"{}");
    assert_eq!(bare.status.code(), Some(1));
    assert!(text(&bare.stderr).contains("headers given: x-other"), "{}", text(&bare.stderr));

    // Usage errors exit 2.
    let unknown = hookguard(&["verify", "-p", "gitbub", "-s", "s"], b"");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("unknown provider `gitbub`"), "{}", text(&unknown.stderr));
}

#[test]
fn sign_prints_the_headers_a_sender_sends() {
    let out = hookguard(
        &["sign", "-p", "github", "-s", "It's a Secret to Everybody", "--id", "d-1"],
        b"Hello, World!",
    );
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "x-hub-signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17\nx-github-delivery: d-1\n"
    );
    let out = hookguard(
        &[
            "sign",
            "-p",
            "standard-webhooks",
            "-s",
            KEY,
            "--id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "--timestamp",
            "2021-02-25T15:02:10Z",
        ],
        br#"{"test": 2432232314}"#,
    );
    assert!(text(&out.stdout).contains("webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    let mailgun = hookguard(&["sign", "-p", "mailgun", "-s", "k"], b"{}");
    assert_eq!(mailgun.status.code(), Some(2));
    for cmd in ["serve", "verify", "sign", "send"] {
        let help = hookguard(&[cmd, "--help"], b"");
        assert!(help.status.success());
        assert!(text(&help.stdout).contains("Example"), "{cmd} --help has no example");
    }
}

/// Twilio's Webhooks Settings: `--shared-key` (and `--shared-key-name` to sign) on the
/// commands, `shared_key_file` / `shared_key_env` in the configuration.
#[test]
fn twilio_shared_keys() {
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const FORM: &[u8] =
        b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    // HMAC-SHA256("twilio-shared-key", URL + sorted parameters), from Python's `hmac`.
    const SIG: &str = "p6CwTztB/GFEKpiycl+NFVARK4Fl6b1LwIk49WvuJUE=";
    const SETTINGS: &str = "key=my-setting,algorithm=HMAC_SHA256";
    let shared = ["--shared-key", "twilio-shared-key"];

    let signed = hookguard(
        &[
            &["sign", "-p", "twilio", "-s", "12345", "--shared-key-name", "my-setting", "--url", URL][..],
            &shared,
        ]
        .concat(),
        FORM,
    );
    assert!(signed.status.success(), "{}", text(&signed.stderr));
    assert_eq!(
        text(&signed.stdout),
        format!("x-twilio-signature: {SIG}\nx-twilio-webhooks-signature-settings: {SETTINGS}\n")
    );

    let sig_header = format!("X-Twilio-Signature: {SIG}");
    let settings_header = format!("X-Twilio-Webhooks-Signature-Settings: {SETTINGS}");
    let verify =
        ["verify", "-p", "twilio", "-s", "12345", "--url", URL, "-H", &sig_header, "-H", &settings_header];
    let verified = hookguard(&[&verify[..], &shared].concat(), FORM);
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&verified.stdout).expect("verify prints JSON");
    assert_eq!(meta["key_index"], 1, "the shared key comes after the auth token");
    // The shared key from the environment, out of sight of `ps`; --help does not show it.
    let from_env = hookguard_env(&verify, FORM, &[("HOOKGUARD_SHARED_KEY", "twilio-shared-key")]);
    assert!(from_env.status.success(), "HOOKGUARD_SHARED_KEY: {}", text(&from_env.stderr));
    let help = hookguard_env(&["verify", "--help"], b"", &[("HOOKGUARD_SHARED_KEY", "twilio-shared-key")]);
    assert!(text(&help.stdout).contains("HOOKGUARD_SHARED_KEY"), "{}", text(&help.stdout));
    assert!(!text(&help.stdout).contains("twilio-shared-key"), "--help shows the key");
    // Without the shared key: refused, and the reason says what to configure.
    let refused = hookguard(&verify, FORM);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("no shared key is configured"), "{}", text(&refused.stderr));
    assert!(!text(&refused.stderr).contains(SIG));
    // Shared keys belong to Twilio.
    let other = hookguard(&["verify", "-p", "github", "-s", "s", "--shared-key", "k"], b"");
    assert_eq!(other.status.code(), Some(2));
    assert!(
        text(&other.stderr).contains("are for twilio's Webhooks Settings, not github"),
        "{}",
        text(&other.stderr)
    );

    // serve, the shared key from a file.
    let dir = temp_dir("twilio");
    std::fs::write(dir.join("twilio-shared.txt"), "twilio-shared-key\n").expect("write key");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[endpoint]]\npath = \"/hooks/twilio\"\nprovider = \"twilio\"\n\
         secret = \"12345\"\nshared_key_file = \"twilio-shared.txt\"\npublic_origin = \"{ORIGIN}\"\nappend_to = \"out.jsonl\"\n"
    );
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let server = Server::start(&config_path);
    let target = server.url("/hooks/twilio");
    let signed_url = format!("{ORIGIN}/hooks/twilio");
    let send = ["send", "-p", "twilio", "-s", "12345", "--url", &target, "--signed-url", &signed_url];
    let cases: [(&[&str], &str); 4] = [
        // As a Webhooks Setting signs: HMAC-SHA256 with the shared key.
        (&["--shared-key", "twilio-shared-key", "--shared-key-name", "my-setting"], "HTTP 202 Accepted"),
        // The auth token, no settings header: still accepted.
        (&[], "HTTP 202 Accepted"),
        // The auth token's signature with the settings header: no fallback to the auth token.
        (&["-H", &settings_header], "HTTP 401 Unauthorized"),
        // Another shared key.
        (&["--shared-key", "another-key", "--shared-key-name", "my-setting"], "HTTP 401 Unauthorized"),
    ];
    for (extra, want) in cases {
        let sent = hookguard(&[&send[..], extra].concat(), FORM);
        let said = text(&sent.stdout);
        assert!(said.starts_with(want), "{extra:?}: answered {said}{}", text(&sent.stderr));
        assert_eq!(sent.status.success(), want.contains("202"), "{extra:?}");
    }
    let status = server.stop();
    assert!(status.success(), "serve exited with {status}");
    let _ = std::fs::remove_dir_all(&dir);

    let base = "[server]\nlisten = \"127.0.0.1:0\"\n\n[[endpoint]]\npath = \"/hooks/t\"\nprovider = \"twilio\"\n\
                secret = \"s\"\npublic_origin = \"https://h\"\nappend_to = \"x\"\n";
    let err = config_error(&format!("{base}shared_key_env = \"HG_TEST_UNSET_SHARED_KEY\"\n"), &[]);
    assert!(
        err.contains("bad.toml:10:18: endpoint `hooks-t`: environment variable HG_TEST_UNSET_SHARED_KEY is not set (shared_key_env)"),
        "{err}"
    );
    let err = config_error(
        &format!(
            "{}shared_key_env = \"HG_TEST_SHARED_KEY\"\n",
            base.replace("\"twilio\"", "\"github\"").replace("public_origin = \"https://h\"\n", "")
        ),
        &[("HG_TEST_SHARED_KEY", "k")],
    );
    assert!(err.contains("endpoint `hooks-t`: shared keys"), "{err}");
}

fn config_error(config: &str, env: &[(&str, &str)]) -> String {
    let dir = temp_dir("bad");
    let path = dir.join("bad.toml");
    std::fs::write(&path, config).expect("write");
    let out = hookguard_env(&["serve", "--config", path.to_str().expect("utf-8 path")], b"", env);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    text(&out.stderr).replace(path.to_str().expect("utf-8 path"), "bad.toml")
}

#[test]
fn bad_configs_name_file_and_line() {
    let base = "[server]\nlisten = \"127.0.0.1:0\"\n\n[[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\n";
    let err = config_error(&format!("{base}secret = \"s\"\nappend_to = \"x.jsonl\"\nsecrte = \"t\"\n"), &[]);
    assert!(err.starts_with("hookguard: bad.toml:9:1: unknown field `secrte`, expected one of"), "{err}");

    let err =
        config_error(&format!("{base}secret_env = \"HG_TEST_UNSET_SECRET\"\nappend_to = \"x.jsonl\"\n"), &[]);
    assert_eq!(
        err.trim_end(),
        "hookguard: bad.toml:7:14: endpoint `hooks-github`: environment variable HG_TEST_UNSET_SECRET is not set (secret_env)"
    );
    // Set but empty (`NAME=` in a compose file): an error, even with a default, which
    // is a published demo secret (it was used). With --check: a server that started
    // would not exit.
    let dir = temp_dir("empty");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "{base}secret_env = \"HG_TEST_EMPTY_SECRET\"\nsecret_env_default = \"t0ken-demo\"\nappend_to = \"x.jsonl\"\n"
        ),
    )
    .expect("write");
    let path = path.to_str().expect("utf-8 path");
    let out = hookguard_env(&["serve", "--check", "--config", path], b"", &[("HG_TEST_EMPTY_SECRET", "")]);
    let _ = std::fs::remove_dir_all(&dir);
    let err = text(&out.stderr).replace(path, "bad.toml");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        "hookguard: bad.toml:7:14: endpoint `hooks-github`: environment variable HG_TEST_EMPTY_SECRET is set \
         but empty or not UTF-8 (secret_env); secret_env_default applies only when it is unset"
    );
    // Set but not UTF-8: the same (it read as unset, and the demo default verified).
    let dir = temp_dir("not-utf8");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "{base}secret_env = \"HG_TEST_BAD_SECRET\"\nsecret_env_default = \"t0ken-demo\"\nappend_to = \"x.jsonl\"\n"
        ),
    )
    .expect("write");
    let path = path.to_str().expect("utf-8 path");
    let out = {
        use std::os::unix::ffi::OsStrExt as _;
        Command::new(BIN)
            .args(["serve", "--check", "--config", path])
            .env("HG_TEST_BAD_SECRET", std::ffi::OsStr::from_bytes(b"t0ken\xff"))
            .stdin(Stdio::null())
            .output()
            .expect("run hookguard")
    };
    let _ = std::fs::remove_dir_all(&dir);
    let err = text(&out.stderr).replace(path, "bad.toml");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("environment variable HG_TEST_BAD_SECRET is set but empty or not UTF-8"), "{err}");
    assert!(!err.contains("t0ken"), "the value is never shown: {err}");
    // Set, it starts (checked with --check).
    let dir = temp_dir("good");
    let path = dir.join("good.toml");
    std::fs::write(&path, format!("{base}secret_env = \"HG_TEST_SECRET\"\nappend_to = \"x.jsonl\"\n"))
        .expect("write");
    let ok = hookguard_env(
        &["serve", "--check", "--config", path.to_str().expect("path")],
        b"",
        &[("HG_TEST_SECRET", "s3cret")],
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let _ = std::fs::remove_dir_all(&dir);

    let err = config_error(&format!("{base}secret_file = \"missing.txt\"\nappend_to = \"x.jsonl\"\n"), &[]);
    assert!(err.contains("bad.toml:7:15: endpoint `hooks-github`: cannot read secret file"), "{err}");
    let err = config_error(&format!("{base}secret = \"s\"\n"), &[]);
    assert!(
        err.contains("bad.toml:4:1: endpoint `hooks-github`: say what a processed webhook does"),
        "{err}"
    );
    let err = config_error(
        &format!("[inbox]\nbackend = \"mysql\"\n{base}secret = \"s\"\nappend_to = \"x\"\n"),
        &[],
    );
    assert!(err.contains("bad.toml:2:11: [inbox] unknown backend: `backend` is one of memory"), "{err}");
    let err = config_error(&format!("{base}secret = \"s\"\nappend_to = \"x\"\ntolerance_secs = 60\n"), &[]);
    assert!(err.contains("bad.toml:9:18: endpoint `hooks-github`: github signs no timestamp"), "{err}");
    // Paths the router would refuse at start (it panicked after `--check` had passed).
    for path in ["/hooks/:provider", "/hooks/*rest", "/hooks/{provider}"] {
        let text = format!("{base}secret = \"s\"\nappend_to = \"x\"\n").replace("/hooks/github", path);
        let err = config_error(&text, &[]);
        assert!(err.contains(&format!("bad.toml:5:8: endpoint path `{path}` has")), "{path}: {err}");
    }
}

/// A `backend` that is a URL with a password is not repeated, with or without `--check`;
/// the user is told to give it with `url`.
#[test]
fn a_backend_url_is_not_repeated() {
    let config = "[inbox]\nbackend = \"redis://:pa55word@cache.internal:6379\"\n\n\
                  [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"s\"\nappend_to = \"x\"\n";
    let err = config_error(config, &[]);
    assert!(err.contains("bad.toml:2:11: [inbox] unknown backend"), "{err}");
    assert!(err.contains("set backend = \"redis\" and give the URL with `url`"), "{err}");
    assert!(!err.contains("pa55word"), "{err}");
    let dir = temp_dir("bad-backend");
    let path = dir.join("bad.toml");
    std::fs::write(&path, config).expect("write");
    let out = hookguard(&["serve", "--check", "--config", path.to_str().expect("utf-8 path")], b"");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(said.contains("unknown backend") && !said.contains("pa55word"), "{said}");
}

/// A malformed `-H` is not repeated in the error: at most the name it starts with.
#[test]
fn a_malformed_header_is_not_repeated() {
    for command in ["verify", "send"] {
        for (header, shown) in [
            ("Authorization Bearer eyJt0ken", "header `Authorization …` is not `Name: value`"),
            ("Authorization Bearer eyJt0ken:x", "header `Authorization …` is not `Name: value`"),
            ("eyJt0ken", "a header is not `Name: value`"),
        ] {
            let out = hookguard(
                &[command, "-p", "github", "-s", "s", "--url", "http://127.0.0.1:9/", "-H", header],
                b"{}",
            );
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {header}: {err}");
            assert!(err.contains(shown), "{command} {header}: {err}");
            assert!(!err.contains("t0ken"), "{command} {header}: {err}");
        }
    }
}

/// The example configuration is valid: with its secrets' variables set, `--check` passes
/// with nothing on stderr; without them, its endpoints would verify with the published demo
/// secrets, which `--check` names (file and line, never the secret) and fails with exit 1.
#[test]
fn the_example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hookguard.toml");
    let example = example.to_str().expect("path");
    let vars = ["GITHUB_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET", "STANDARD_WEBHOOKS_SECRET"];
    let set: Vec<(&str, &str)> = vars.iter().map(|v| (*v, "whsec_dDBrZW4tcmVhbA==")).collect();
    let out = hookguard_env(&["serve", "--check", "--config", example], b"", &set);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "the example config draws a warning");

    let mut command = Command::new(BIN);
    command.args(["serve", "--check", "--config", example]);
    for var in vars {
        command.env_remove(var);
    }
    let out = command.stdin(Stdio::null()).output().expect("run hookguard");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(text(&out.stdout), "", "not ok");
    let example_text = std::fs::read_to_string(example).expect("the example");
    for var in vars {
        let line = example_text.lines().position(|l| l.contains(var)).expect("the variable's line") + 2;
        let at = format!("hookguard: {example}:{line}:22: endpoint `");
        let said = err.lines().find(|l| l.contains(var)).unwrap_or_else(|| panic!("{var} not named: {err}"));
        assert!(said.starts_with(&at), "{said}\nexpected {at}");
        assert!(said.contains("would verify with the demo secret of secret_env_default"), "{said}");
    }
    assert!(err.contains("not ok: 3 endpoint(s) would verify with a published demo secret"), "{err}");
    for secret in ["demo-github-secret", "whsec_demo_stripe_secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    {
        assert!(!err.contains(secret), "a demo secret is shown: {err}");
    }
}

/// `serve` on each durable backend: a delivery is accepted once and written once; on
/// SQLite it is still a duplicate after a restart. Redis and PostgreSQL run when their
/// `HOOKGUARD_TEST_*_URL` variable is set (and say they skipped otherwise).
#[test]
fn serve_on_durable_backends() {
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    );
    // Empty, and never pushed to, with `--features cli` alone.
    #[cfg_attr(not(any(feature = "sqlite", feature = "redis", feature = "postgres")), allow(unused_mut))]
    let mut backends: Vec<(&str, String)> = Vec::new();
    #[cfg(feature = "sqlite")]
    backends.push(("sqlite", "[inbox]\nbackend = \"sqlite\"\npath = \"inbox.db\"\n".to_owned()));
    #[cfg(feature = "redis")]
    match std::env::var("HOOKGUARD_TEST_REDIS_URL") {
        Ok(_) => backends.push((
            "redis",
            "[replay]\nbackend = \"redis\"\nurl_env = \"HOOKGUARD_TEST_REDIS_URL\"\n\n\
             [inbox]\nbackend = \"redis\"\nurl_env = \"HOOKGUARD_TEST_REDIS_URL\"\n"
                .to_owned(),
        )),
        Err(_) => eprintln!("skipped redis: HOOKGUARD_TEST_REDIS_URL is not set"),
    }
    #[cfg(feature = "postgres")]
    match std::env::var("HOOKGUARD_TEST_POSTGRES_URL") {
        Ok(_) => backends.push((
            "postgres",
            "[inbox]\nbackend = \"postgres\"\nurl_env = \"HOOKGUARD_TEST_POSTGRES_URL\"\n".to_owned(),
        )),
        Err(_) => eprintln!("skipped postgres: HOOKGUARD_TEST_POSTGRES_URL is not set"),
    }
    for (backend, section) in backends {
        let dir = temp_dir(&format!("durable-{backend}"));
        let inbox_section =
            section.replace("path = \"inbox.db\"", &format!("path = {:?}", dir.join("inbox.db")));
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n{inbox_section}\n[[endpoint]]\npath = \"/hooks/github\"\n\
             provider = \"github\"\nsecret = \"{KEY}\"\nappend_to = {:?}\n",
            dir.join("out.jsonl")
        );
        let config_path = dir.join("hookguard.toml");
        std::fs::write(&config_path, &config).expect("write config");
        let id = format!("durable-{backend}-{unique}");
        // GitHub deliveries are keyed by their signature: a payload of its own per run, as
        // the shared Redis and PostgreSQL stores remember earlier runs' deliveries.
        let body = format!(r#"{{"zen":"durable","n":"{id}"}}"#);
        let send = |server: &Server| {
            let sent = hookguard(
                &["send", "-p", "github", "-s", KEY, "--url", &server.url("/hooks/github"), "--id", &id],
                body.as_bytes(),
            );
            assert!(sent.status.success(), "{backend}: {}", text(&sent.stderr));
            text(&sent.stdout)
        };
        let server = Server::start(&config_path);
        assert!(send(&server).starts_with("HTTP 202"), "{backend}: first send");
        assert!(send(&server).starts_with("HTTP 200"), "{backend}: second send is a duplicate");
        let deadline = Instant::now() + Duration::from_secs(15);
        let written = loop {
            let lines = std::fs::read_to_string(dir.join("out.jsonl")).unwrap_or_default();
            let n = lines.lines().filter(|l| l.contains(&id)).count();
            if n > 0 || Instant::now() > deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(written, 1, "{backend}: the delivery is processed once");
        assert!(server.stop().success(), "{backend}: clean stop");
        if backend == "sqlite" {
            // The inbox file remembers the delivery across a restart.
            let server = Server::start(&config_path);
            assert!(send(&server).starts_with("HTTP 200"), "{backend}: duplicate after restart");
            assert!(server.stop().success());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `serve` applies the allow-list and the rate limit's failure budget from the config
/// (addresses in an endpoint's allow-list, a provider's shared ones, spend none of it);
/// a bad range is a start-up error naming the line.
#[test]
fn serve_applies_source_controls() {
    let dir = temp_dir("source");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [[endpoint]]\npath = \"/hooks/closed\"\nprovider = \"github\"\nsecret = \"{KEY}\"\nappend_to = \"out.jsonl\"\n\
         allow = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n\n\
         [[endpoint]]\npath = \"/hooks/open\"\nprovider = \"github\"\nsecret = \"{KEY}\"\nappend_to = \"out.jsonl\"\n\
         allow = [\"127.0.0.0/8\"]\nallow_shared = true\n\
         rate_limit = {{ requests = 100, per_secs = 60, failures = 2, failures_per_secs = 3600 }}\n\n\
         [[endpoint]]\npath = \"/hooks/limited\"\nprovider = \"github\"\nsecret = \"{KEY}\"\nappend_to = \"out.jsonl\"\n\
         allow = [\"127.0.0.0/8\"]\n\
         rate_limit = {{ requests = 100, per_secs = 60, failures = 2, failures_per_secs = 3600 }}\n"
    );
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let server = Server::start(&config_path);
    let send = |path: &str, secret: &str, id: &str| {
        let sent = hookguard(
            &["send", "-p", "github", "-s", secret, "--url", &server.url(path), "--id", id],
            format!(r#"{{"zen":"{id}"}}"#).as_bytes(),
        );
        text(&sent.stdout)
    };
    let cases = [
        ("outside the allow-list", "/hooks/closed", KEY, "c1", "HTTP 403"),
        ("inside the allow-list", "/hooks/open", KEY, "o1", "HTTP 202"),
        ("forged 1", "/hooks/open", "wrong", "f1", "HTTP 401"),
        ("forged 2", "/hooks/open", "wrong", "f2", "HTTP 401"),
        ("forged 3", "/hooks/open", "wrong", "f3", "HTTP 401"),
        ("allowed: a shared sender keeps its budget", "/hooks/open", KEY, "o2", "HTTP 202"),
        ("not shared: forged 1", "/hooks/limited", "wrong", "l1", "HTTP 401"),
        ("not shared: forged 2", "/hooks/limited", "wrong", "l2", "HTTP 401"),
        ("not shared: failure budget spent", "/hooks/limited", KEY, "l3", "HTTP 429"),
    ];
    for (name, path, secret, id, want) in cases {
        let said = send(path, secret, id);
        assert!(said.starts_with(want), "case {name}: {said}");
    }
    assert!(server.stop().success());

    let bad = config.replace("\"10.0.0.0/8\"", "\"10.0.0.0/33\"");
    std::fs::write(&config_path, &bad).expect("write config");
    let out = hookguard(&["serve", "--config", config_path.to_str().expect("utf-8 path"), "--check"], b"");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("hookguard.toml:9:9: endpoint `hooks-closed`: allow:"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `run` and `forward_to` actions: the command gets the body on stdin and the metadata
/// in `HOOKGUARD_*`; the forward target gets the body and `X-Hookguard-*` headers, and a
/// failing target (an error status, a redirect) is retried by the worker until it answers
/// 2xx.
#[test]
fn serve_runs_commands_and_forwards_with_retries() {
    let dir = temp_dir("actions");
    // A forward target that redirects the first request, answers 500 to the second, then
    // 200. A redirect is not followed (a POST would come back as a GET without its body).
    let (target_addr, rx) = http_target(|n, _| match n {
        0 => "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_owned(),
        1 => "HTTP/1.1 500 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
        _ => "HTTP/1.1 200 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    });
    let ran = dir.join("ran.txt");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[worker]\nbackoff_base_ms = 10\nbackoff_max_secs = 1\n\n\
         [[endpoint]]\npath = \"/hooks/run\"\nprovider = \"github\"\nsecret = \"{KEY}\"\n\
         run = [\"sh\", \"-c\", \"cat > \\\"$1\\\"; echo \\\" id=$HOOKGUARD_ID provider=$HOOKGUARD_PROVIDER\\\" >> \\\"$1\\\"\", \"sh\", {ran:?}]\n\n\
         [[endpoint]]\npath = \"/hooks/forward\"\nprovider = \"github\"\nsecret = \"{KEY}\"\n\
         forward_to = \"http://{target_addr}/internal\"\n"
    );
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let server = Server::start(&config_path);
    for (path, id) in [("/hooks/run", "run-1"), ("/hooks/forward", "fwd-1")] {
        let sent = hookguard(
            &["send", "-p", "github", "-s", KEY, "--url", &server.url(path), "--id", id],
            br#"{"zen":"actions"}"#,
        );
        assert!(text(&sent.stdout).starts_with("HTTP 202"), "{path}: {}", text(&sent.stdout));
    }
    // The forward target saw the delivery three times: 302 and 500, each retried, then 200.
    let requests: Vec<String> = (0..3)
        .map(|n| rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|e| panic!("forward #{n}: {e}")))
        .collect();
    for request in &requests {
        let lower = request.to_ascii_lowercase();
        assert!(request.starts_with("POST /internal "), "{request}");
        assert!(lower.contains("x-hookguard-id: fwd-1"), "{request}");
        assert!(request.ends_with(r#"{"zen":"actions"}"#), "{request}");
    }
    // The command got the body on stdin and the metadata in its environment.
    let deadline = Instant::now() + Duration::from_secs(20);
    let written = loop {
        let content = std::fs::read_to_string(&ran).unwrap_or_default();
        if content.contains("provider=") || Instant::now() > deadline {
            break content;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(written, "{\"zen\":\"actions\"} id=run-1 provider=github\n");
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A self-signed certificate for localhost and its key (test-only files in
/// `tests/fixtures/tls`, so that the tests need no `openssl` program), written to `cert`
/// and `key`.
fn make_certificate(cert: &Path, key: &Path) {
    write_fixture_pair("a", cert, key);
}

/// Another certificate and key, not [`make_certificate`]'s.
fn make_other_certificate(cert: &Path, key: &Path) {
    write_fixture_pair("b", cert, key);
}

fn write_fixture_pair(pair: &str, cert: &Path, key: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    for (from, to) in [(format!("cert-{pair}.pem"), cert), (format!("key-{pair}.pem"), key)] {
        std::fs::copy(dir.join(&from), to).unwrap_or_else(|e| panic!("copy {from}: {e}"));
    }
}

/// `[server] tls`: the receiver answers over HTTPS with the configured certificate.
#[test]
fn serve_over_tls() {
    use hookguard::verify::{Outgoing, Sign as _};
    let dir = temp_dir("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    make_certificate(&cert, &key);
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = {cert:?}, key = {key:?} }}\n\n\
         [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"{KEY}\"\nappend_to = \"out.jsonl\"\n"
    );
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let server = Server::start(&config_path);
    let pem = std::fs::read(&cert).expect("cert");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .no_proxy()
            .build()
            .expect("client");
        let base = format!("https://{}", server.addr);
        let health = client.get(format!("{base}/healthz")).send().await.expect("https /healthz");
        assert_eq!(health.status(), 200);
        // The client offers h2 too; ALPN gives HTTP/1.1 only, whose head is timed.
        assert_eq!(health.version(), reqwest::Version::HTTP_11);
        let body = br#"{"zen":"tls"}"#;
        let scheme = hookguard::providers::github::scheme(KEY).expect("scheme");
        let mut req = client.post(format!("{base}/hooks/github")).header("x-github-delivery", "tls-1");
        for (name, value) in scheme.sign(&Outgoing::new(body)).expect("sign") {
            req = req.header(name.as_str(), value.to_str().expect("ascii"));
        }
        let res = req.body(body.to_vec()).send().await.expect("https delivery");
        assert_eq!(res.status(), 202);
        // Plain HTTP to the TLS port is not served.
        let plain = client
            .get(format!("http://{}/healthz", server.addr))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    });
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Output that cannot be written fails the command (exit 1, the reason on stderr); a
/// reader that went away (`| head -1`) does not. `send --repeat 0` is a usage error.
#[test]
fn output_errors_and_usage() {
    let sign = ["sign", "-p", "github", "-s", "It's a Secret to Everybody", "--id", "d-1"];
    if Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("open /dev/full");
        let mut child = Command::new(BIN)
            .args(sign)
            .env_remove("HOOKGUARD_SECRET")
            .stdin(Stdio::piped())
            .stdout(full)
            .stderr(Stdio::piped())
            .spawn()
            .expect("run hookguard");
        child.stdin.take().expect("stdin").write_all(b"Hello, World!").expect("write stdin");
        let out = child.wait_with_output().expect("output");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("cannot write to stdout"), "{}", text(&out.stderr));
    } else {
        eprintln!("skipped the full-disk case: no /dev/full");
    }

    // The reader is gone before anything is written (the command waits for its stdin).
    let mut child = Command::new(BIN)
        .args(sign)
        .env_remove("HOOKGUARD_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hookguard");
    drop(child.stdout.take());
    child.stdin.take().expect("stdin").write_all(b"Hello, World!").expect("write stdin");
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success(), "a closed pipe: {:?} {}", out.status, text(&out.stderr));

    let zero = hookguard(
        &["send", "-p", "github", "-s", "s", "--url", "http://127.0.0.1:9/", "--repeat", "0"],
        b"{}",
    );
    assert_eq!(zero.status.code(), Some(2), "{}", text(&zero.stderr));
    assert!(text(&zero.stderr).contains("--repeat"), "{}", text(&zero.stderr));
}

/// `HOOKGUARD_SHARED_KEY`, exported for Twilio, is ignored by the other providers'
/// commands (they failed with exit status 2); `--shared-key` given on the command line is
/// still refused for them.
#[test]
fn a_shared_key_from_the_environment_is_for_twilio_only() {
    const GITHUB_SIG: &str =
        "X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let env = [("HOOKGUARD_SHARED_KEY", "t0ken-shared-env")];
    let github = ["-p", "github", "-s", "It's a Secret to Everybody"];

    let verified =
        hookguard_env(&[&["verify"][..], &github, &["-H", GITHUB_SIG]].concat(), b"Hello, World!", &env);
    assert_eq!(verified.status.code(), Some(0), "verify: {}", text(&verified.stderr));

    let signed = hookguard_env(&[&["sign"][..], &github, &["--id", "d-1"]].concat(), b"Hello, World!", &env);
    assert_eq!(signed.status.code(), Some(0), "sign: {}", text(&signed.stderr));
    assert_eq!(
        text(&signed.stdout),
        format!("{}\nx-github-delivery: d-1\n", GITHUB_SIG.to_ascii_lowercase())
    );

    let (addr, rx) = http_target(|_, _| {
        "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
    });
    let url = format!("http://{addr}/hooks/github");
    let sent = hookguard_env(&[&["send"][..], &github, &["--url", &url]].concat(), b"Hello, World!", &env);
    assert_eq!(sent.status.code(), Some(0), "send: {}", text(&sent.stderr));
    let request = rx.recv_timeout(Duration::from_secs(5)).expect("the POST");
    assert!(request.to_ascii_lowercase().contains(&GITHUB_SIG.to_ascii_lowercase()), "{request}");

    // Given explicitly, it is a mistake, with or without the variable.
    for env in [&env[..], &[]] {
        let explicit = hookguard_env(
            &[&["verify"][..], &github, &["--shared-key", "t0ken-explicit", "-H", GITHUB_SIG]].concat(),
            b"Hello, World!",
            env,
        );
        assert_eq!(explicit.status.code(), Some(2), "{env:?}: {}", text(&explicit.stderr));
        let err = text(&explicit.stderr);
        assert!(err.contains("are for twilio's Webhooks Settings, not github"), "{err}");
        assert!(!err.contains("t0ken"), "{err}");
    }
    for command in [&["sign"][..], &["send", "--url", &url]] {
        let explicit =
            hookguard_env(&[command, &github, &["--shared-key", "t0ken-explicit"]].concat(), b"{}", &env);
        assert_eq!(explicit.status.code(), Some(2), "{command:?}: {}", text(&explicit.stderr));
    }
    assert!(rx.try_recv().is_err(), "a refused send sent nothing");
}

/// `send --timeout 0` is a usage error (every request timed out at once).
#[test]
fn send_refuses_a_zero_timeout() {
    let zero = hookguard(
        &["send", "-p", "github", "-s", "s", "--url", "http://127.0.0.1:9/", "--timeout", "0"],
        b"{}",
    );
    assert_eq!(zero.status.code(), Some(2), "{}", text(&zero.stderr));
    assert!(text(&zero.stderr).contains("--timeout"), "{}", text(&zero.stderr));
}

/// `send --url` that is not an http or https URL with a host (`localhost:8080/…`, read as
/// the scheme `localhost`) is a usage error at once, in one line (exit 2): each attempt
/// failed in turn, and the command with exit status 1. The URL is not repeated.
#[test]
fn send_refuses_a_url_it_cannot_send_to() {
    for url in [
        "localhost:8080/hooks/github",
        "127.0.0.1:8080/hooks/github",
        "/hooks/github",
        "ftp://t0ken@example.com/hooks",
        "http://",
        "file:///etc/t0ken",
    ] {
        let out = hookguard(&["send", "-p", "github", "-s", "s", "--url", url, "--repeat", "3"], b"{}");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(
            stderr.starts_with("hookguard: --url must be an http:// or https:// URL with a host"),
            "{url}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{url}: {stderr}");
        assert_eq!(text(&out.stdout), "", "{url}: nothing sent");
        assert!(!stderr.contains("t0ken"), "{url}: {stderr}");
    }
    let out = hookguard(&["send", "-p", "github", "-s", "s", "--url", "localhost:8080/x"], b"{}");
    assert!(text(&out.stderr).contains("(the scheme is missing)"), "{}", text(&out.stderr));
}

/// A loopback port free a moment ago, for a server the test starts on it.
fn free_port() -> u16 {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    free.local_addr().expect("addr").port()
}

/// Without `--signed-url`, `send` signs the URL it sends: as the `url` crate normalizes
/// it (a space or a non-ASCII character percent-encoded, a dot segment removed), which the
/// receiver sees. It signed `--url` as typed, and Twilio's signature over it was refused.
#[test]
fn send_signs_the_url_it_sends() {
    let dir = temp_dir("send-url");
    let port = free_port();
    let config = dir.join("hookguard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[[endpoint]]\npath = \"/hooks/twilio\"\n\
             provider = \"twilio\"\nsecret = \"{KEY}\"\npublic_origin = \"http://127.0.0.1:{port}\"\n\
             append_to = \"out.jsonl\"\n\n[[endpoint]]\npath = \"/hooks/square\"\nprovider = \"square\"\n\
             secret = \"{KEY}\"\nurl = \"HTTP://127.0.0.1:{port}/hooks/square\"\nappend_to = \"out.jsonl\"\n"
        ),
    )
    .expect("config");
    let server = Server::start(&config);
    // Square signs the URL registered with it, which the receiver holds as configured: as
    // typed, not as sent (`http://` lowercased).
    let square = format!("HTTP://127.0.0.1:{port}/hooks/square");
    let sent = hookguard(&["send", "-p", "square", "-s", KEY, "--url", &square], b"{}");
    assert_eq!(text(&sent.stdout).lines().next(), Some("HTTP 202 Accepted"), "{}", text(&sent.stderr));
    for url in [
        format!("http://127.0.0.1:{port}/hooks/twilio?q=a b"),
        format!("http://127.0.0.1:{port}/hooks/twilio?q=caf\u{e9}"),
        format!("http://127.0.0.1:{port}/hooks/x/../twilio?q=1#fragment"),
    ] {
        let sent = hookguard(&["send", "-p", "twilio", "-s", KEY, "--url", &url], b"CallSid=CA1&Digits=1");
        assert!(sent.status.success(), "{url}: {}{}", text(&sent.stdout), text(&sent.stderr));
        assert_eq!(text(&sent.stdout).lines().next(), Some("HTTP 202 Accepted"), "{url}");
    }
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// PayPal verifies with its certificate and the webhook id: `--secret` is refused (it was
/// taken, and not used); `HOOKGUARD_SECRET`, exported for another provider, is ignored.
#[test]
fn paypal_takes_no_secret() {
    let cert = concat!(env!("CARGO_MANIFEST_DIR"), "/src/providers/testdata/paypal_cert.pem");
    let args = ["verify", "-p", "paypal", "--webhook-id", "WH-1", "--cert", cert];
    let refused = hookguard(&[&args[..], &["--secret", "t0ken"]].concat(), b"{}");
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("paypal verifies with PayPal's certificate"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!text(&refused.stderr).contains("t0ken"), "{}", text(&refused.stderr));
    // From the environment: the delivery is checked (and, unsigned, rejected).
    let from_env = hookguard_env(&args, b"{}", &[("HOOKGUARD_SECRET", "t0ken")]);
    assert_eq!(from_env.status.code(), Some(1), "{}", text(&from_env.stderr));
    assert!(text(&from_env.stderr).contains("rejected"), "{}", text(&from_env.stderr));
}

/// The `cli` feature alone builds the public-key presets the README presents, and
/// `--provider`'s help lists every name (the top-level help says it does).
#[test]
fn the_cli_knows_the_public_key_presets() {
    let help = text(&hookguard(&["verify", "--help"], b"").stdout);
    let listed: Vec<&str> = help.split(|c: char| c.is_whitespace() || c == ',').collect();
    for name in ["discord", "sendgrid", "standard-webhooks-v1a", "paypal", "github", "hubspot-v2", "twilio"] {
        assert!(listed.contains(&name), "verify --help does not list {name}:\n{help}");
    }
    // A discord public key builds (it was an unknown provider).
    let discord = hookguard(
        &[
            "verify",
            "-p",
            "discord",
            "-s",
            "c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6",
        ],
        b"{}",
    );
    assert_eq!(discord.status.code(), Some(1), "{}", text(&discord.stderr));
    assert!(!text(&discord.stderr).contains("unknown provider"), "{}", text(&discord.stderr));
}

/// `send` reports a redirect as it is: not followed (the POST would come back as a GET
/// without its body), and not a success.
#[test]
fn send_reports_a_redirect_as_it_is() {
    let (addr, rx) = http_target(|_, _| {
        "HTTP/1.1 302 Found\r\nLocation: /moved\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
    });
    let url = format!("http://{addr}/hooks/github");
    let redirected = hookguard(&["send", "-p", "github", "-s", KEY, "--url", &url], br#"{"zen":"redirect"}"#);
    assert_eq!(
        text(&redirected.stdout).lines().next(),
        Some("HTTP 302 Found"),
        "{}",
        text(&redirected.stdout)
    );
    assert_eq!(redirected.status.code(), Some(1), "a 3xx is not a success");
    assert!(rx.recv_timeout(Duration::from_secs(5)).expect("the POST").starts_with("POST /hooks/github "));
    assert!(rx.try_recv().is_err(), "the redirect was followed");
}

/// `send` reads and prints at most 64 KiB of a response body, and says it cut it.
#[test]
fn send_prints_at_most_64_kib_of_the_body() {
    let (addr, _rx) = http_target(|n, _| {
        let body = "x".repeat(if n == 0 { 1 << 20 } else { 64 * 1024 });
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    });
    let url = format!("http://{addr}/hooks/github");
    let send = ["send", "-p", "github", "-s", KEY, "--url", &url];
    for (name, want_truncated) in [("1 MiB", true), ("exactly 64 KiB", false)] {
        let out = hookguard(&send, br#"{"zen":"large"}"#);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let said = text(&out.stdout);
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(lines.first(), Some(&"HTTP 200 OK"), "{name}");
        assert_eq!(lines.get(1).map(|l| l.len()), Some(64 * 1024), "{name}: the body is cut at 64 KiB");
        let note = lines.get(2).is_some_and(|l| l.starts_with("(truncated"));
        assert_eq!(note, want_truncated, "{name}: {:?}", lines.get(2));
        assert_eq!(lines.len(), if want_truncated { 3 } else { 2 }, "{name}");
    }
}

/// A `forward_to` URL's credentials, path and query are shown nowhere (Discord's and
/// Slack's webhook URLs hold their secret in the path): not in the line describing the
/// endpoint at start, not in a failed attempt's error.
#[test]
fn serve_shows_no_forward_credentials() {
    let dir = temp_dir("redact");
    // A port nothing listens on: every attempt fails to connect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[worker]\nmax_attempts = 1\n\n\
         [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"{KEY}\"\n\
         forward_to = \"http://hookguard:t0ken-in-url@{closed}/api/webhooks/123/t0ken-in-path?key=t0ken-in-query\"\n"
    );
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let server = Server::start_with_env(&config_path, &[("RUST_LOG", "info")]);
    let sent = hookguard(
        &["send", "-p", "github", "-s", KEY, "--url", &server.url("/hooks/github"), "--id", "r-1"],
        br#"{"zen":"redact"}"#,
    );
    assert!(text(&sent.stdout).starts_with("HTTP 202"), "{}", text(&sent.stdout));
    let stderr = server.stderr_with("dead-lettered");
    assert!(stderr.contains("dead-lettered"), "the attempt did not fail: {stderr}");
    assert!(stderr.contains(&format!("forward to http://***@{closed}/…")), "{stderr}");
    assert!(!stderr.contains("t0ken"), "a credential was logged: {stderr}");
    // The dead letter is lost with the memory inbox: exit status 1.
    let (status, stderr) = server.stop_with_stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("t0ken"), "a credential was logged: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `run` command does not inherit the secrets' variables (the configuration's
/// `secret_env`, and `HOOKGUARD_SECRET` / `HOOKGUARD_SHARED_KEY`); other variables stay.
#[test]
fn run_commands_do_not_inherit_secrets() {
    let dir = temp_dir("run-env");
    let dump = dir.join("env.txt");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\n\
         secret_env = \"HG_TEST_RUN_SECRET\"\n\
         run = [\"sh\", \"-c\", \"env > \\\"$1.part\\\" && mv \\\"$1.part\\\" \\\"$1\\\"\", \"sh\", {dump:?}]\n"
    );
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let secrets = [
        ("HG_TEST_RUN_SECRET", "s3cret-from-secret-env"),
        ("HOOKGUARD_SECRET", "s3cret-from-hookguard-secret"),
        ("HOOKGUARD_SHARED_KEY", "s3cret-from-hookguard-shared-key"),
    ];
    let server = Server::start_with_env(&config_path, &[&secrets[..], &[("HG_TEST_PLAIN", "kept")]].concat());
    let sent = hookguard(
        &["send", "-p", "github", "-s", secrets[0].1, "--url", &server.url("/hooks/github"), "--id", "env-1"],
        br#"{"zen":"env"}"#,
    );
    assert!(text(&sent.stdout).starts_with("HTTP 202"), "{}", text(&sent.stdout));
    let deadline = Instant::now() + Duration::from_secs(20);
    let env = loop {
        if let Ok(env) = std::fs::read_to_string(&dump) {
            break env;
        }
        assert!(Instant::now() < deadline, "the command did not run");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(env.contains("HOOKGUARD_ID=env-1"), "the metadata is there: {env}");
    assert!(env.contains("HG_TEST_PLAIN=kept"), "other variables stay: {env}");
    for (var, value) in secrets {
        assert!(!env.contains(value) && !env.contains(&format!("{var}=")), "{var} reached the command");
    }
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `run = ["./handle.sh"]` is the script next to the configuration, wherever the server
/// runs from (it ran from the server's folder: every delivery failed, after `--check` had
/// passed); a program that does not exist, and an `append_to` folder that does not, stop
/// the start at their line.
#[cfg(unix)]
#[test]
fn a_run_program_is_found_from_the_configurations_folder() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir("run-relative");
    let script = dir.join("handle.sh");
    std::fs::write(&script, "#!/bin/sh\ncat > \"$1.part\" && mv \"$1.part\" \"$1\"\n").expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = dir.join("ran.txt");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\n\
         secret = \"{KEY}\"\nrun = [\"./handle.sh\", {out:?}]\n"
    );
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    // The server's folder is this crate's, not the configuration's.
    assert_ne!(std::env::current_dir().expect("cwd"), dir);
    let server = Server::start(&config_path);
    let sent = hookguard(
        &["send", "-p", "github", "-s", KEY, "--url", &server.url("/hooks/github"), "--id", "rel-1"],
        br#"{"zen":"relative"}"#,
    );
    assert!(text(&sent.stdout).starts_with("HTTP 202"), "{}", text(&sent.stdout));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !out.exists() {
        let stderr = server.stderr.lock().expect("stderr").clone();
        assert!(Instant::now() < deadline && !stderr.contains("failed"), "the script did not run: {stderr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&out).expect("out"), r#"{"zen":"relative"}"#);
    assert!(server.stop().success());

    let base = "[server]\nlisten = \"127.0.0.1:0\"\n\n[[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"s\"\n";
    let err = config_error(&format!("{base}run = [\"./missing.sh\"]\n"), &[]);
    assert!(err.contains("bad.toml:8:7: endpoint `hooks-github`: `run` program "), "{err}");
    assert!(err.contains("missing.sh does not exist"), "{err}");
    let err = config_error(&format!("{base}append_to = \"nowhere/out.jsonl\"\n"), &[]);
    assert!(err.contains("bad.toml:8:13: endpoint `hooks-github`: append_to "), "{err}");
    assert!(err.contains("the folder it is written in does not exist"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A delivery whose id and event (read from its JSON body, as Stripe's) hold control
/// characters reaches `forward_to` and `run` with them percent-encoded, as does `%`: a
/// header value cannot carry them, nor an environment value a NUL, and the acknowledged
/// delivery failed every attempt, then was dead-lettered.
#[test]
fn control_characters_in_metadata_are_percent_encoded() {
    let dir = temp_dir("control");
    let (target_addr, rx) =
        http_target(|_, _| "HTTP/1.1 200 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned());
    let dump = dir.join("env.txt");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[worker]\nmax_attempts = 1\n\n\
         [[endpoint]]\npath = \"/hooks/forward\"\nprovider = \"stripe\"\nsecret = \"{KEY}\"\n\
         forward_to = \"http://{target_addr}/internal\"\n\n\
         [[endpoint]]\npath = \"/hooks/run\"\nprovider = \"stripe\"\nsecret = \"{KEY}\"\n\
         run = [\"sh\", \"-c\", \"env > \\\"$1.part\\\" && mv \\\"$1.part\\\" \\\"$1\\\"\", \"sh\", {dump:?}]\n"
    );
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let server = Server::start(&config_path);
    let body = r#"{"id":"evt_a\u0000b%","type":"a\u0001b\r\nX-Injected: 1\u007f"}"#;
    for path in ["/hooks/forward", "/hooks/run"] {
        let sent =
            hookguard(&["send", "-p", "stripe", "-s", KEY, "--url", &server.url(path)], body.as_bytes());
        assert!(text(&sent.stdout).starts_with("HTTP 202"), "{path}: {}", text(&sent.stdout));
    }
    let (id, event) = ("evt_a%00b%25", "a%01b%0D%0AX-Injected: 1%7F");
    let request = rx.recv_timeout(Duration::from_secs(20)).expect("the delivery was forwarded");
    let head = request.split("\r\n\r\n").next().expect("head").to_ascii_lowercase();
    for (name, value) in [("id", id), ("event", event), ("key", &format!("hooks-forward:{id}"))] {
        let line = format!("\r\nx-hookguard-{name}: {}\r\n", value.to_ascii_lowercase());
        assert!(head.contains(&line), "{name}: {head}");
    }
    assert!(!head.contains("\r\nx-injected"), "{head}");
    assert!(request.ends_with(body), "the body is forwarded as it is: {request}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let env = loop {
        if let Ok(env) = std::fs::read_to_string(&dump) {
            break env;
        }
        assert!(Instant::now() < deadline, "the command did not run: {}", server.stderr_with(""));
        std::thread::sleep(Duration::from_millis(50));
    };
    for line in [format!("HOOKGUARD_ID={id}"), format!("HOOKGUARD_EVENT={event}")] {
        assert!(env.lines().any(|l| l == line), "{line}: {env}");
    }
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `verify` prints the replay key the library uses: the delivery id when the signature
/// covers it (Stripe's, in the signed body), else the signature's fingerprint (GitHub's
/// `X-GitHub-Delivery` is not signed: it printed the id); none for Dropbox's notices.
#[test]
fn verify_prints_the_replay_key_the_library_uses() {
    let body = br#"{"id":"evt_signed","type":"ping"}"#;
    for (provider, id, keyed_by_id) in [("github", "d-unsigned", false), ("stripe", "evt_signed", true)] {
        let signed = hookguard(&["sign", "-p", provider, "-s", KEY, "--id", id], body);
        assert!(signed.status.success(), "{provider}: {}", text(&signed.stderr));
        let mut args = vec!["verify", "-p", provider, "-s", KEY];
        let headers = text(&signed.stdout);
        for line in headers.lines() {
            args.extend(["-H", line]);
        }
        let verified = hookguard(&args, body);
        assert!(verified.status.success(), "{provider}: {}", text(&verified.stderr));
        let meta: serde_json::Value = serde_json::from_slice(&verified.stdout).expect("JSON");
        assert_eq!(meta["id"], id, "{provider}");
        let key = meta["dedup_key"].as_str().expect("dedup_key");
        if keyed_by_id {
            assert_eq!(key, id, "{provider}");
        } else {
            assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()), "{provider}: {key}");
        }
        assert_eq!(meta["id_signed"], keyed_by_id, "{provider}");
        assert_eq!(meta["replay_key"], true, "{provider}");
    }
    // Dropbox's notices have none: each is new.
    let signed = hookguard(&["sign", "-p", "dropbox", "-s", KEY], body);
    assert!(signed.status.success(), "{}", text(&signed.stderr));
    let mut args = vec!["verify", "-p", "dropbox", "-s", KEY];
    let headers = text(&signed.stdout);
    for line in headers.lines() {
        args.extend(["-H", line]);
    }
    let verified = hookguard(&args, body);
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&verified.stdout).expect("JSON");
    assert_eq!(
        (&meta["replay_key"], &meta["dedup_key"]),
        (&serde_json::json!(false), &serde_json::Value::Null)
    );
}

/// A body on stdin past 16 MiB is refused with a usage error, not read whole.
#[test]
fn stdin_past_its_limit_is_refused() {
    let big = vec![b'x'; (16 << 20) + 1];
    for command in ["verify", "sign", "send"] {
        let out = hookguard(&[command, "-p", "github", "-s", KEY, "--url", "http://127.0.0.1:9/"], &big);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains("cannot read the body from stdin: it holds more than 16 MiB"),
            "{command}: {err}"
        );
    }
    let out = hookguard(&["sign", "-p", "github", "-s", KEY], &big[1..]);
    assert!(out.status.success(), "16 MiB exactly: {}", text(&out.stderr));
}

/// TLS files that exist but do not hold a usable certificate and key are configuration
/// errors naming the file: `--check` finds them, and `serve` stops before it listens.
#[test]
fn tls_files_are_checked_before_anything_listens() {
    let dir = temp_dir("tls-bad");
    make_certificate(&dir.join("cert.pem"), &dir.join("key.pem"));
    make_other_certificate(&dir.join("other-cert.pem"), &dir.join("other-key.pem"));
    std::fs::write(dir.join("garbage.pem"), "not a PEM file\n").expect("write");
    let config_path = dir.join("hookguard.toml");
    let cases = [
        ("garbage certificate", "garbage.pem", "key.pem", "3:16: TLS certificate", "garbage.pem"),
        ("garbage key", "cert.pem", "garbage.pem", "3:34: TLS key", "garbage.pem"),
        (
            "another pair's key",
            "cert.pem",
            "other-key.pem",
            "3:34: TLS key",
            "does not go with the certificate",
        ),
    ];
    for (name, cert, key, at, says) in cases {
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = {cert:?}, key = {key:?} }}\n\n\
             [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"{KEY}\"\nappend_to = \"out.jsonl\"\n"
        );
        std::fs::write(&config_path, &config).expect("write config");
        let path = config_path.to_str().expect("utf-8 path");
        for args in [&["serve", "--check", "--config", path][..], &["serve", "--config", path]] {
            let out = hookguard(args, b"");
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {err}");
            assert!(err.contains(&format!("hookguard.toml:{at}")) && err.contains(says), "{name}: {err}");
            assert!(!err.contains("listening"), "{name}: {err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Files of secrets that other users can read (the TLS key, a `secret_file`) are served
/// all the same, with a warning naming the file's place in the configuration and its mode;
/// once they are `0600`, nothing is said.
#[cfg(unix)]
#[test]
fn secret_files_others_can_read_are_warned_of() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir("loose-secrets");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    make_certificate(&cert, &key);
    let secret = dir.join("gh.secret");
    std::fs::write(&secret, format!("{KEY}\n")).expect("write");
    let config = "[server]\nlisten = \"127.0.0.1:0\"\ntls = { cert = \"cert.pem\", key = \"key.pem\" }\n\n\
         [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret_file = \"gh.secret\"\nappend_to = \"out.jsonl\"\n";
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, config).expect("write config");
    let path = config_path.to_str().expect("utf-8 path");
    let chmod = |file: &Path, mode: u32| {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    chmod(&key, 0o640);
    chmod(&secret, 0o604);
    let out = hookguard(&["serve", "--check", "--config", path], b"");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings[0].contains("hookguard.toml:3:34: [server.tls] key: ")
            && warnings[0].contains("key.pem")
            && warnings[0].contains("(mode 0640)"),
        "{err}"
    );
    assert!(
        warnings[1].contains("hookguard.toml:8:15: endpoint `hooks-github`: ")
            && warnings[1].contains("gh.secret")
            && warnings[1].contains("(mode 0604)"),
        "{err}"
    );
    assert!(warnings.iter().all(|w| w.ends_with("`chmod 600` it") && !w.contains(KEY)), "{err}");
    chmod(&key, 0o600);
    chmod(&secret, 0o400);
    let out = hookguard(&["serve", "--check", "--config", path], b"");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `allow` and `allow_file` together: after the file is reloaded, the listed ranges still
/// admit (a reload put the file's ranges alone in force). The client addresses come from
/// `X-Forwarded-For`, sent through the local proxy range the server trusts.
#[test]
fn an_allow_file_reload_keeps_the_listed_ranges() {
    let dir = temp_dir("allow-reload");
    std::fs::write(dir.join("allow.txt"), "192.0.2.0/24\n").expect("write");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n\
         [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"{KEY}\"\nappend_to = \"out.jsonl\"\n\
         allow = [\"198.51.100.0/24\"]\nallow_file = \"allow.txt\"\nallow_reload_secs = 1\n"
    );
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let server = Server::start(&config_path);
    let url = server.url("/hooks/github");
    let n = AtomicUsize::new(0);
    let send_from = |client: &str| {
        let id = format!("allow-{}", n.fetch_add(1, Ordering::Relaxed));
        let xff = format!("X-Forwarded-For: {client}");
        // A body of its own: a provider whose delivery id is not signed (GitHub) may be
        // keyed by its body.
        let body = format!(r#"{{"id":"{id}"}}"#);
        let sent = hookguard(
            &["send", "-p", "github", "-s", KEY, "--url", &url, "--id", &id, "-H", &xff],
            body.as_bytes(),
        );
        text(&sent.stdout).lines().next().unwrap_or_default().to_owned()
    };
    assert!(send_from("198.51.100.7").starts_with("HTTP 202"), "listed, at start");
    assert!(send_from("192.0.2.7").starts_with("HTTP 202"), "in the file, at start");
    assert!(send_from("203.0.113.7").starts_with("HTTP 403"), "in neither");

    // The file changes; wait for the reload to take it in.
    std::fs::write(dir.join("allow.txt"), "203.0.113.0/24\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !send_from("203.0.113.7").starts_with("HTTP 202") {
        assert!(Instant::now() < deadline, "the file was not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(send_from("198.51.100.7").starts_with("HTTP 202"), "listed, after the reload");
    assert!(send_from("192.0.2.7").starts_with("HTTP 403"), "gone from the file");
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM with the memory inbox: the workers go on until the inbox is empty (every
/// accepted delivery was acknowledged to its sender), within `shutdown_grace_secs`; what
/// the grace period cannot cover is reported lost, never dropped in silence, and the exit
/// status is then 1.
#[test]
fn sigterm_processes_what_the_memory_inbox_holds() {
    let dir = temp_dir("drain");
    let out = dir.join("out.txt");
    let config = |grace: u32| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = {grace}\n\n[worker]\nconcurrency = 1\n\n\
             [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"{KEY}\"\n\
             run = [\"sh\", \"-c\", \"sleep 0.3; printf '%s\\\\n' \\\"$HOOKGUARD_ID\\\" >> \\\"$1\\\"\", \"sh\", {out:?}]\n"
        )
    };
    let config_path = dir.join("hookguard.toml");
    let deliver = |server: &Server, ids: &[String]| {
        for id in ids {
            let sent = hookguard(
                &["send", "-p", "github", "-s", KEY, "--url", &server.url("/hooks/github"), "--id", id],
                format!(r#"{{"id":"{id}"}}"#).as_bytes(),
            );
            assert!(text(&sent.stdout).starts_with("HTTP 202"), "{id}: {}", text(&sent.stdout));
        }
    };

    // Time enough: every delivery is processed before the server exits.
    std::fs::write(&config_path, config(10)).expect("write config");
    let server = Server::start(&config_path);
    let ids: Vec<String> = (0..5).map(|n| format!("drain-{n}")).collect();
    deliver(&server, &ids);
    let (status, stderr) = server.stop_with_stderr();
    assert!(status.success(), "{status}: {stderr}");
    let done = std::fs::read_to_string(&out).unwrap_or_default();
    let mut lines: Vec<&str> = done.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ids, "every accepted delivery was processed before exit");
    assert!(!stderr.contains("lost"), "{stderr}");

    // Not enough: what is left is counted in a warning.
    std::fs::remove_file(&out).expect("remove");
    std::fs::write(&config_path, config(1)).expect("write config");
    let server = Server::start(&config_path);
    let ids: Vec<String> = (0..10).map(|n| format!("late-{n}")).collect();
    deliver(&server, &ids);
    let (status, stderr) = server.stop_with_stderr();
    // Acknowledged webhooks were lost: the exit status says so, for the supervisor.
    assert_eq!(status.code(), Some(1), "{stderr}");
    let lost: usize = stderr
        .lines()
        .find_map(|l| l.strip_prefix("hookguard: warning: ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no warning of lost webhooks: {stderr}"));
    assert!(stderr.contains("are lost with the memory inbox"), "{stderr}");
    let processed = std::fs::read_to_string(&out).unwrap_or_default().lines().count();
    assert!(lost >= 1 && processed + lost >= ids.len(), "{processed} processed, {lost} reported lost");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One POST on its own connection: the status, the head (lower-cased) and the body.
fn http_post(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).expect("write");
    stream.write_all(body).expect("write body");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// An asana endpoint whose `secret_file` does not exist yet awaits Asana's handshake:
/// `--check` accepts it with a note; deliveries get 404 until the handshake, which is
/// answered 200 with its secret echoed and writes the file (0600); signed deliveries are
/// then accepted, and a second handshake gets 403. After a restart the file is read like
/// any secret file. An asana endpoint with a configured secret refuses handshakes (403).
/// The secret appears in no log line.
#[test]
fn serve_answers_asanas_handshake() {
    const SECRET: &str = "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81";
    let dir = temp_dir("asana");
    std::fs::create_dir_all(dir.join("secrets")).expect("secrets folder");
    let file = dir.join("secrets/asana.secret");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [[endpoint]]\npath = \"/hooks/asana\"\nprovider = \"asana\"\nsecret_file = \"secrets/asana.secret\"\nappend_to = \"out.jsonl\"\n\n\
         [[endpoint]]\npath = \"/hooks/asana-fixed\"\nprovider = \"asana\"\nsecret = \"{KEY}\"\nappend_to = \"out.jsonl\"\n"
    );
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let check = || hookguard(&["serve", "--check", "--config", config_path.to_str().expect("path")], b"");

    let checked = check();
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert!(text(&checked.stdout).contains("ok (2 endpoint(s))"), "{}", text(&checked.stdout));
    let note = text(&checked.stderr);
    assert!(note.contains("endpoint `hooks-asana` awaits Asana's handshake"), "{note}");
    assert!(!file.exists(), "--check writes nothing");

    let send = |server: &Server, path: &str, secret: &str, body: &str| {
        let sent =
            hookguard(&["send", "-p", "asana", "-s", secret, "--url", &server.url(path)], body.as_bytes());
        text(&sent.stdout)
    };
    let handshake = |server: &Server, path: &str, secret: &str| {
        http_post(&server.addr, path, &[("X-Hook-Secret", secret)], b"")
    };
    let server = Server::start_with_env(&config_path, &[("RUST_LOG", "debug")]);
    let said = send(&server, "/hooks/asana", SECRET, r#"{"events":["early"]}"#);
    assert!(said.starts_with("HTTP 404"), "a delivery before the handshake: {said}");

    let (status, head, _) = handshake(&server, "/hooks/asana", SECRET);
    assert_eq!(status, 200, "the handshake: {head}");
    assert!(head.contains(&format!("\r\nx-hook-secret: {SECRET}")), "the echo: {head}");
    assert_eq!(std::fs::read_to_string(&file).expect("the secret file"), format!("{SECRET}\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the secret file's mode");
    }

    for (name, path, secret, want) in [
        ("a signed delivery", "/hooks/asana", SECRET, "HTTP 202"),
        ("another secret's signature", "/hooks/asana", "forged", "HTTP 401"),
        ("the configured secret", "/hooks/asana-fixed", KEY, "HTTP 202"),
    ] {
        let said = send(&server, path, secret, &format!(r#"{{"events":["{name}"]}}"#));
        assert!(said.starts_with(want), "{name}: {said}");
    }
    for (name, path) in
        [("a second handshake", "/hooks/asana"), ("a configured secret", "/hooks/asana-fixed")]
    {
        let (status, head, _) = handshake(&server, path, "another-secret-0123456789");
        assert_eq!(status, 403, "{name}: {head}");
        assert!(!head.contains("x-hook-secret"), "{name}: no echo");
    }
    assert_eq!(std::fs::read_to_string(&file).expect("the secret file"), format!("{SECRET}\n"));
    let (status, stderr) = server.stop_with_stderr();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("Asana handshake answered"), "{stderr}");
    assert!(!stderr.contains(SECRET), "the secret is logged:\n{stderr}");

    // After a restart the file is the secret.
    let checked = check();
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert!(!text(&checked.stderr).contains("awaits"), "{}", text(&checked.stderr));
    let server = Server::start(&config_path);
    let said = send(&server, "/hooks/asana", SECRET, r#"{"events":["after a restart"]}"#);
    assert!(said.starts_with("HTTP 202"), "after a restart: {said}");
    assert_eq!(handshake(&server, "/hooks/asana", SECRET).0, 403, "a handshake after a restart");
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether process `pid` is still running (a zombie, killed and not yet reaped by whoever
/// adopted it, is not).
#[cfg(unix)]
fn process_runs(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        // `/proc/PID/stat`: "PID (NAME) STATE …", the name in parentheses.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z")
        })
    } else {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// Polls for up to 10 s for process `pid` to be gone.
#[cfg(unix)]
fn process_ends_within_10s(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_runs(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// A `run` command that starts a background process (`sleep 30 &`): when the attempt times
/// out, and when the server's shutdown grace period ends with the command still running,
/// the whole process group is killed, the background process included (only the command
/// was: what it started kept running while the job was retried, and after the server
/// stopped); after a failure, what is left of the group is killed. What a command that
/// exited successfully leaves running is left alone.
#[cfg(unix)]
#[test]
fn a_stopped_run_command_leaves_no_process_behind() {
    let dir = temp_dir("run-group");
    let pidfile = dir.join("background.pid");
    let config_path = dir.join("hookguard.toml");
    // The background process's output goes elsewhere: it would hold the server's stderr
    // open, which the test reads to its end.
    let write_config = |grace: u32, timeout: u32, then: &str| {
        let script = format!(
            "sleep 30 >/dev/null 2>&1 </dev/null & echo $! > \\\"$1.part\\\" && mv \\\"$1.part\\\" \\\"$1\\\"; {then}"
        );
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = {grace}\n\n\
             [worker]\nlease_secs = 60\nmax_attempts = 1\n\n\
             [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"{KEY}\"\n\
             timeout_secs = {timeout}\nrun = [\"sh\", \"-c\", \"{script}\", \"sh\", {pidfile:?}]\n"
        );
        std::fs::write(&config_path, config).expect("write config");
    };
    // Starts a server, delivers one webhook, and returns the server and the process id of
    // the background process its command started.
    let started = |id: &str| {
        let _ = std::fs::remove_file(&pidfile);
        let server = Server::start(&config_path);
        let sent = hookguard(
            &["send", "-p", "github", "-s", KEY, "--url", &server.url("/hooks/github"), "--id", id],
            br#"{"zen":"group"}"#,
        );
        assert!(text(&sent.stdout).starts_with("HTTP 202"), "{id}: {}", text(&sent.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid: u32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse().ok()) {
                break pid;
            }
            assert!(Instant::now() < deadline, "{id}: the command did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        (server, pid)
    };

    // The attempt times out after 1 s (the lease of 60 s is far from over).
    write_config(10, 1, "wait");
    let (server, pid) = started("group-timeout");
    let stderr = server.stderr_with("dead-lettered");
    assert!(stderr.contains("did not finish within 1 s"), "{stderr}");
    assert!(process_ends_within_10s(pid), "the background process of a timed-out command still runs");
    let _ = server.stop();

    // The command fails: what is left of its group is killed too (the job is retried).
    write_config(10, 30, "exit 3");
    let (server, pid) = started("group-failure");
    let stderr = server.stderr_with("dead-lettered");
    assert!(stderr.contains("exited with"), "{stderr}");
    assert!(process_ends_within_10s(pid), "the background process of a failed command still runs");
    let _ = server.stop();

    // The server stops while the command runs: it is killed at the end of the grace period.
    write_config(1, 30, "wait");
    let (server, pid) = started("group-shutdown");
    let _ = server.stop();
    assert!(process_ends_within_10s(pid), "the background process of a stopped command still runs");

    // The command exits successfully: its background process is its own business.
    write_config(10, 30, "exit 0");
    let (server, pid) = started("group-success");
    let stderr = server.stop_with_stderr().1;
    let still_runs = process_runs(pid);
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    assert!(still_runs, "the background process of a successful command was killed: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `run` command that exits successfully without reading a body larger than a pipe holds,
/// while a process it started keeps its input open: the attempt succeeds when the command
/// exits (the server went on writing the body until the time limit, then killed the group
/// and retried a command that had done its work).
#[cfg(unix)]
#[test]
fn a_run_command_that_exits_without_reading_its_input_is_done() {
    let dir = temp_dir("run-unread");
    let pidfile = dir.join("background.pid");
    let config_path = dir.join("hookguard.toml");
    // fd 3, a copy of the command's input, is inherited by the background process.
    let script = "exec 3<&0; sleep 30 >/dev/null 2>&1 & echo $! > \\\"$1.part\\\" && mv \\\"$1.part\\\" \\\"$1\\\"; exit 0";
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[worker]\nmax_attempts = 1\n\n\
         [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"{KEY}\"\n\
         timeout_secs = 3\nrun = [\"sh\", \"-c\", \"{script}\", \"sh\", {pidfile:?}]\n"
    );
    std::fs::write(&config_path, config).expect("write config");
    let server = Server::start_with_env(&config_path, &[("RUST_LOG", "info")]);
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(256 * 1024));
    let sent = hookguard(
        &["send", "-p", "github", "-s", KEY, "--url", &server.url("/hooks/github"), "--id", "unread-1"],
        body.as_bytes(),
    );
    assert!(text(&sent.stdout).starts_with("HTTP 202"), "{}", text(&sent.stdout));
    let stderr = server.stderr_with("webhook processed");
    let (_, stderr_all) = server.stop_with_stderr();
    if let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(stderr.contains("webhook processed"), "{stderr_all}");
    assert!(!stderr_all.contains("did not finish within"), "{stderr_all}");
    assert!(!stderr_all.contains("dead-lettered"), "{stderr_all}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a durable inbox, the workers stop taking jobs at the signal and finish the ones
/// they hold, while a connection still sending its body holds the grace period open: the
/// next job is left for the next start (it was started after the signal, then killed when
/// the grace period ended, and run again at the next start).
#[cfg(all(unix, feature = "sqlite"))]
#[test]
fn a_durable_inbox_starts_no_job_after_the_signal() {
    use std::io::Write as _;
    let dir = temp_dir("stop-taking");
    let marks = dir.join("marks.txt");
    let config_path = dir.join("hookguard.toml");
    let script = "echo start $HOOKGUARD_ID >> \\\"$1\\\"; sleep 2; echo end $HOOKGUARD_ID >> \\\"$1\\\"";
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 5\n\n\
         [inbox]\nbackend = \"sqlite\"\npath = \"inbox.db\"\n\n[worker]\nconcurrency = 1\n\n\
         [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"{KEY}\"\n\
         run = [\"sh\", \"-c\", \"{script}\", \"sh\", {marks:?}]\n"
    );
    std::fs::write(&config_path, config).expect("write config");
    let server = Server::start(&config_path);
    for id in ["a", "b"] {
        let sent = hookguard(
            &["send", "-p", "github", "-s", KEY, "--url", &server.url("/hooks/github"), "--id", id],
            format!(r#"{{"id":"{id}"}}"#).as_bytes(),
        );
        assert!(text(&sent.stdout).starts_with("HTTP 202"), "{id}: {}", text(&sent.stdout));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let read = std::fs::read_to_string(&marks).unwrap_or_default();
        if let Some(line) = read.lines().next() {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no job started: {}", server.stderr_with(""));
        std::thread::sleep(Duration::from_millis(20));
    };
    // A request whose body never comes: the connection holds the grace period open.
    let mut stream = TcpStream::connect(server.addr.as_str()).expect("connect");
    stream
        .write_all(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .expect("write");
    let (status, stderr) = server.stop_with_stderr();
    drop(stream);
    let started = first.strip_prefix("start ").expect("a start").to_owned();
    let marked = std::fs::read_to_string(&marks).expect("marks");
    assert_eq!(marked, format!("start {started}\nend {started}\n"), "{stderr}");
    assert!(status.success(), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `append_to` a file that is not a regular one (`/dev/null` here; `/dev/stdout` in a
/// container is the usual case): the line is written and the job done (the sync after it
/// failed with EINVAL, so every attempt wrote the line again and the job was
/// dead-lettered).
#[cfg(unix)]
#[test]
fn append_to_a_device_is_done_once_written() {
    let dir = temp_dir("append-device");
    let config_path = dir.join("hookguard.toml");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[worker]\nmax_attempts = 2\nbackoff_base_ms = 10\nbackoff_max_secs = 1\n\n\
         [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"{KEY}\"\nappend_to = \"/dev/null\"\n"
    );
    std::fs::write(&config_path, config).expect("write config");
    let server = Server::start_with_env(&config_path, &[("RUST_LOG", "info")]);
    assert!(send_github(&server, "device-1").starts_with("HTTP 202"));
    let processed = server.stderr_with("webhook processed");
    let (status, stderr) = server.stop_with_stderr();
    assert!(processed.contains("webhook processed"), "{stderr}");
    assert!(!stderr.contains("cannot write") && !stderr.contains("dead-lettered"), "{stderr}");
    assert!(status.success(), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pushes a GitHub webhook of `endpoint` with `body` into the SQLite inbox at `db`, as a
/// server that ran before would have kept it.
#[cfg(feature = "sqlite")]
fn kept_in_sqlite(db: &Path, endpoint: &str, body: &'static str) {
    use hookguard::inbox::{Inbox as _, SqliteInbox, Webhook};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let inbox = SqliteInbox::builder(db).open().await.expect("open the inbox");
        let verified = hookguard::verify::Verified::new("github", Some("d-1".into()), None, None, [0; 32], 0);
        let hook = Webhook::new(
            endpoint,
            &verified,
            http::HeaderMap::new(),
            body.into(),
            time::OffsetDateTime::now_utc(),
        );
        inbox.push(hook).await.expect("push");
    });
}

/// A job kept under an endpoint name the configuration no longer has (a changed `path`
/// changes the default name) is dead-lettered with an error that says what to do: give the
/// endpoint that name, then re-drive it; done so, it is processed.
#[cfg(feature = "sqlite")]
#[test]
fn a_job_of_an_endpoint_no_longer_configured_says_how_to_get_it_processed() {
    let dir = temp_dir("renamed-endpoint");
    let db = dir.join("inbox.db");
    kept_in_sqlite(&db, "hooks-old", r#"{"id":"kept-before"}"#);
    let config_path = dir.join("hookguard.toml");
    let out = dir.join("out.jsonl");
    let config = |name: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[inbox]\nbackend = \"sqlite\"\npath = {db:?}\n\n\
             [worker]\nmax_attempts = 1\n\n[[endpoint]]\npath = \"/hooks/github\"\n{name}provider = \"github\"\n\
             secret = \"{KEY}\"\nappend_to = {out:?}\n"
        )
    };
    std::fs::write(&config_path, config("")).expect("config");
    let server = Server::start(&config_path);
    let stderr = server.stderr_with("dead-lettered");
    assert!(server.stop().success());
    assert!(
        stderr.contains("no action for endpoint `hooks-old`") && stderr.contains(r#"`name = "hooks-old"`"#),
        "{stderr}"
    );
    assert!(!out.exists());

    std::fs::write(&config_path, config("name = \"hooks-old\"\n")).expect("config");
    let path = config_path.to_str().expect("utf-8 path");
    let dead = hookguard(&["inbox", "dead", "-c", path], b"");
    let listed = text(&dead.stdout);
    let key = listed.split("\"key\":\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a key");
    assert!(key.starts_with("hooks-old:"), "{listed}");
    let redriven = hookguard(&["inbox", "redrive", "-c", path, key], b"");
    assert!(redriven.status.success(), "{}", text(&redriven.stderr));
    let server = Server::start(&config_path);
    let written = file_with_lines(&out, 1);
    assert!(server.stop().success());
    assert!(written.contains("kept-before"), "{written}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A configuration with one GitHub endpoint appending to `out.jsonl`, and `server` in
/// `[server]` besides `listen`.
fn one_endpoint_config(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("hookguard.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\n[[endpoint]]\npath = \"/hooks/github\"\n\
             provider = \"github\"\nsecret = \"{KEY}\"\nappend_to = \"out.jsonl\"\n"
        ),
    )
    .expect("write config");
    path
}

/// A client that sends part of a request line and then nothing is cut off once
/// `header_read_timeout_secs` has passed (there was no header timeout: it held its
/// connection as long as it liked); the server goes on serving.
#[test]
fn a_client_that_never_finishes_its_head_is_cut_off() {
    let dir = temp_dir("header-timeout");
    let server = Server::start(&one_endpoint_config(&dir, "header_read_timeout_secs = 1"));
    // Part of a head; nothing at all (the head's timer must start with the connection);
    // the start of HTTP/2's preface (plain TCP is HTTP/1 only: no version guessed first).
    for sent in [&b"POST /hooks/gi"[..], b"", b"PRI * HTTP/2"] {
        let mut stream = TcpStream::connect(&server.addr).expect("connect");
        stream.write_all(sent).expect("write");
        // Generous: the timeout is 1 s; a connection still open after 30 s was never cut off.
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{sent:?}: the connection was not closed: {e}"),
        }
    }
    assert_eq!(http_get(&server.addr, "/healthz"), (200, "ok\n".to_owned()));
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that pipelines requests and never reads the answers is cut off once a write to
/// it has waited `header_read_timeout_secs` with none of it taken. hyper times a head only
/// while it reads one, not while an answer waits to be written: the connection, and its
/// `max_connections` permit, were held until the shutdown, so that `max_connections` such
/// clients locked every sender out. Here `max_connections = 1`: the next client is served
/// once the one that does not read is gone.
#[test]
fn a_client_that_never_reads_its_answers_is_cut_off() {
    let dir = temp_dir("write-stall");
    let server =
        Server::start(&one_endpoint_config(&dir, "max_connections = 1\nheader_read_timeout_secs = 1"));
    let stream = TcpStream::connect(&server.addr).expect("connect");
    let mut writer = stream.try_clone().expect("clone the stream");
    let (done, finished) = std::sync::mpsc::channel();
    let started = Instant::now();
    // Writes from a thread of its own: once the server stops reading (its answers wait), the
    // writes wait too, until the server closes the connection.
    std::thread::spawn(move || {
        const BATCH: usize = 1000;
        let requests = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".repeat(BATCH);
        let mut sent = 0;
        let error = loop {
            match writer.write_all(&requests) {
                Ok(()) => sent += BATCH,
                Err(e) => break e,
            }
        };
        let _ = done.send((sent, error, started.elapsed()));
    });
    // Generous: the limit is 1 s once the buffers are full; a connection still open after
    // 60 s was never cut off.
    let outcome = finished.recv_timeout(Duration::from_secs(60));
    // Lets the writing thread go if it still waits.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let (sent, error, took) = outcome.expect("the connection of a client that never reads was not closed");
    use std::io::ErrorKind as Kind;
    let closed = matches!(error.kind(), Kind::BrokenPipe | Kind::ConnectionReset | Kind::ConnectionAborted);
    assert!(closed, "the writes failed, but not for a closed connection: {error}");
    eprintln!("closed after {took:?}, {sent}+ pipelined requests written: {error}");
    assert_eq!(http_get(&server.addr, "/healthz"), (200, "ok\n".to_owned()), "the next client");
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// At shutdown, plain HTTP as HTTPS: a connection still open (here one that never finishes
/// its head) is given `shutdown_grace_secs`, then the server exits (it waited for it
/// without end).
#[test]
fn shutdown_does_not_wait_for_an_open_connection_past_the_grace_period() {
    let dir = temp_dir("shutdown-open");
    let server =
        Server::start(&one_endpoint_config(&dir, "header_read_timeout_secs = 3600\nshutdown_grace_secs = 1"));
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    stream.write_all(b"POST /hooks/gi").expect("write");
    // Connections are accepted in turn: once this one is answered, the other was accepted.
    assert_eq!(http_get(&server.addr, "/healthz").0, 200);
    let started = Instant::now();
    // `stop` fails the test past 15 s.
    let (status, stderr) = server.stop_with_stderr();
    assert!(status.success(), "{status}: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(15), "{stderr}");
    drop(stream);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits (at most 20 s) until `file` holds `lines` lines; returns its text.
fn file_with_lines(file: &Path, lines: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.lines().count() >= lines || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends a GitHub delivery whose body names `id` (GitHub's replay key is its signature);
/// returns the status line.
fn send_github(server: &Server, id: &str) -> String {
    let sent = hookguard(
        &["send", "-p", "github", "-s", KEY, "--url", &server.url("/hooks/github"), "--id", id],
        format!(r#"{{"id":"{id}"}}"#).as_bytes(),
    );
    text(&sent.stdout).lines().next().unwrap_or_default().to_owned()
}

/// A configuration whose GitHub endpoint's action always fails (`false`), with one attempt:
/// every delivery becomes a dead letter. `inbox` is the `[inbox]` section's body.
fn failing_config(dir: &Path, inbox: &str) -> PathBuf {
    let path = dir.join("hookguard.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 2\n\n[inbox]\n{inbox}\n\n\
             [worker]\nmax_attempts = 1\n\n[[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\n\
             secret = \"{KEY}\"\nrun = [\"false\"]\n"
        ),
    )
    .expect("write config");
    path
}

/// With the memory inbox, dead letters are lost with the process: the warning counts them,
/// and the exit status is 1 (they vanished with exit status 0).
#[test]
fn dead_letters_in_the_memory_inbox_are_counted_as_lost() {
    let dir = temp_dir("dead-memory");
    let server = Server::start(&failing_config(&dir, "backend = \"memory\""));
    assert_eq!(send_github(&server, "dead-1"), "HTTP 202 Accepted");
    let stderr = server.stderr_with("webhook dead-lettered");
    assert!(stderr.contains("webhook dead-lettered"), "{stderr}");
    let (status, stderr) = server.stop_with_stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "hookguard: warning: 1 accepted webhook(s) are lost with the memory inbox: 0 not processed \
             within shutdown_grace_secs (2 s), 1 dead letter(s)"
        ),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[inbox] dead_letters_to`: each dead letter is appended to the file (mode 0600), with
/// its attempts and last error, and discarded from the inbox: its room is free again (a
/// capacity of 1 takes the next delivery), and nothing is lost at shutdown.
#[test]
fn dead_letters_go_to_their_file_and_free_their_room() {
    let dir = temp_dir("dead-file");
    let dead = dir.join("dead.jsonl");
    let server = Server::start(&failing_config(&dir, "capacity = 1\ndead_letters_to = \"dead.jsonl\""));
    for (n, id) in ["dead-a", "dead-b"].into_iter().enumerate() {
        // The second is refused (503) while the first holds the only room: it is written
        // to the file, then discarded. A sender retries a 503.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = send_github(&server, id);
            if status == "HTTP 202 Accepted" {
                break;
            }
            assert!(n > 0 && status.starts_with("HTTP 503"), "{id}: {status}");
            assert!(Instant::now() < deadline, "{id}: the room was never freed");
            std::thread::sleep(Duration::from_millis(100));
        }
        let written = file_with_lines(&dead, n + 1);
        let line = written.lines().nth(n).unwrap_or_else(|| panic!("{id} not written: {written}"));
        let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(record["endpoint"], "hooks-github", "{line}");
        assert_eq!(record["body"], format!(r#"{{"id":"{id}"}}"#), "{line}");
        assert_eq!(record["attempts"], 1, "{line}");
        assert!(record["error"].as_str().is_some_and(|e| e.contains("false")), "{line}");
        assert!(record["failed_at"].is_string() && record["key"].is_string(), "{line}");
        assert!(!line.contains(KEY), "{line}");
    }
    let (status, stderr) = server.stop_with_stderr();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("lost"), "{stderr}");
    assert_eq!(file_with_lines(&dead, 2).lines().count(), 2, "each written once");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&dead).expect("dead.jsonl").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `append_to` files are created readable by their owner alone (they hold the bodies).
#[test]
fn append_to_files_are_the_owners_alone() {
    let dir = temp_dir("append-mode");
    let server = Server::start(&one_endpoint_config(&dir, ""));
    assert_eq!(send_github(&server, "mode-1"), "HTTP 202 Accepted");
    let out = dir.join("out.jsonl");
    assert_eq!(file_with_lines(&out, 1).lines().count(), 1);
    assert!(server.stop().success());
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&out).expect("out.jsonl").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `hookguard inbox dead|redrive|discard` on a durable inbox (SQLite): the dead letters are
/// listed as JSON lines; one re-driven is processed by the next start, one discarded is
/// gone (one that cannot be read too, by the key the warning on stderr names); a key that
/// is no dead letter's is exit status 1. The memory inbox is refused.
#[cfg(feature = "sqlite")]
#[test]
fn the_inbox_command_lists_redrives_and_discards_dead_letters() {
    let dir = temp_dir("dead-sqlite");
    let inbox = format!("backend = \"sqlite\"\npath = {:?}", dir.join("inbox.db"));
    let config = failing_config(&dir, &inbox);
    let server = Server::start(&config);
    for id in ["redriven", "discarded", "swept-1", "swept-2"] {
        assert_eq!(send_github(&server, id), "HTTP 202 Accepted", "{id}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.stderr_with("dead-lettered").matches("webhook dead-lettered").count() < 4 {
        assert!(Instant::now() < deadline, "not dead-lettered");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.stop().success());

    let config_arg = config.to_str().expect("path");
    let listed = hookguard(&["inbox", "dead", "-c", config_arg], b"");
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let records: Vec<serde_json::Value> =
        text(&listed.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(records.len(), 4, "{}", text(&listed.stdout));
    let key_of = |id: &str| {
        let record = records
            .iter()
            .find(|r| r["body"] == format!(r#"{{"id":"{id}"}}"#))
            .unwrap_or_else(|| panic!("{id} not listed"));
        assert_eq!(record["attempts"], 1);
        record["key"].as_str().expect("a key").to_owned()
    };
    let (redriven, discarded) = (key_of("redriven"), key_of("discarded"));

    // A dead letter that cannot be read is left out of the list: the library's warning,
    // on stderr, names its key (it went nowhere), and `discard` takes that key (below).
    let db = rusqlite::Connection::open(dir.join("inbox.db")).expect("open the inbox");
    let damaged = db
        .execute("UPDATE hookguard_inbox SET headers = x'01' WHERE key = ?1", [&discarded])
        .expect("damage a row");
    assert_eq!(damaged, 1);
    drop(db);
    let listed = hookguard(&["inbox", "dead", "-c", config_arg], b"");
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert_eq!(text(&listed.stdout).lines().count(), 3, "{}", text(&listed.stdout));
    assert!(!text(&listed.stdout).contains(&discarded), "{}", text(&listed.stdout));
    let warned = text(&listed.stderr);
    assert!(warned.contains("unreadable") && warned.contains(&discarded), "{warned}");
    assert!(!warned.contains(KEY), "{warned}");

    let out = hookguard(&["inbox", "redrive", "-c", config_arg, &redriven], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1 dead letter(s) re-driven\n");
    let out = hookguard(&["inbox", "discard", "-c", config_arg, &discarded], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1 dead letter(s) discarded\n");
    let out = hookguard(&["inbox", "discard", "-c", config_arg, "--all"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "2 dead letter(s) discarded\n", "the swept ones, a page at a time");
    let out = hookguard(&["inbox", "discard", "-c", config_arg, &discarded], b"");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no dead letter has the key"), "{}", text(&out.stderr));
    let listed = hookguard(&["inbox", "dead", "-c", config_arg], b"");
    assert_eq!(text(&listed.stdout), "", "no dead letter left");

    // Fixed: the next start processes the re-driven job, and only it.
    let text_now = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text_now.replace("run = [\"false\"]", "append_to = \"out.jsonl\""))
        .expect("write");
    let server = Server::start(&config);
    let out = dir.join("out.jsonl");
    let written = file_with_lines(&out, 1);
    assert!(server.stop().success());
    let written = std::fs::read_to_string(&out).unwrap_or(written);
    assert_eq!(written.lines().count(), 1, "{written}");
    assert!(written.contains(r#"\"redriven\""#), "{written}");

    // The memory inbox lives in the server: there is nothing to open.
    let memory = failing_config(&dir, "backend = \"memory\"");
    let out = hookguard(&["inbox", "dead", "-c", memory.to_str().expect("path")], b"");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("set [inbox] dead_letters_to"), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `send -H` replaces a signed header of the same name (it was sent beside it, and the
/// receiver read the genuine one: a tampered signature could not be tried); the same name
/// given twice is sent twice. A body's trailing line end does not change its guessed type.
#[test]
fn send_headers_replace_the_signed_ones() {
    let (addr, rx) =
        http_target(|_, _| "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned());
    let url = format!("http://{addr}/hooks/github");
    let sent = hookguard(
        &[
            "send",
            "-p",
            "github",
            "-s",
            KEY,
            "--url",
            &url,
            "-H",
            "X-Hub-Signature-256: sha256=00",
            "-H",
            "X-Extra: a",
            "-H",
            "x-extra: b",
        ],
        b"a=1&b=2\n",
    );
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let request = rx.recv_timeout(Duration::from_secs(5)).expect("the POST");
    let head = request.split("\r\n\r\n").next().unwrap_or_default().to_ascii_lowercase();
    let values = |name: &str| -> Vec<String> {
        head.lines()
            .filter_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_owned()))
            .collect()
    };
    assert_eq!(values("x-hub-signature-256"), ["sha256=00"], "{head}");
    assert_eq!(values("x-extra"), ["a", "b"], "{head}");
    assert_eq!(values("x-github-delivery").len(), 1, "{head}");
    assert_eq!(values("content-type"), ["application/x-www-form-urlencoded"], "{head}");
}

/// A backend this build does not have is an error at load, naming its line (`--check`
/// passed it, and the start failed); one it has is accepted by `--check`.
#[test]
fn a_backend_not_built_in_is_a_configuration_error() {
    let endpoint = format!(
        "[[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"{KEY}\"\nappend_to = \"x\"\n"
    );
    for (backend, built, keys) in [
        ("sqlite", cfg!(feature = "sqlite"), "path = \"inbox.db\""),
        ("redis", cfg!(feature = "redis"), "url = \"redis://127.0.0.1:6379\""),
        ("postgres", cfg!(feature = "postgres"), "url = \"postgres://127.0.0.1/hooks\""),
    ] {
        let dir = temp_dir("not-built");
        let path = dir.join("hookguard.toml");
        std::fs::write(&path, format!("[inbox]\nbackend = \"{backend}\"\n{keys}\n\n{endpoint}"))
            .expect("write");
        let path = path.to_str().expect("path");
        let out = hookguard(&["serve", "--check", "--config", path], b"");
        let err = text(&out.stderr).replace(path, "bad.toml");
        if built {
            assert!(out.status.success(), "{backend}: {err}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{backend}: {err}");
            assert_eq!(
                err.trim_end(),
                format!(
                    "hookguard: bad.toml:2:11: [inbox] the {backend} backend is not built into this hookguard: \
                     build it with `--features cli,{backend}` (cargo install hookguard --features cli,{backend})"
                )
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `send` (and `forward_to`, the same client) trusts the system's certificate store besides
/// the bundled web roots: a private CA installed there (here through `SSL_CERT_FILE`, which
/// the store honours) is trusted; without it, the certificate is refused.
#[test]
fn send_trusts_the_systems_certificate_store() {
    let dir = temp_dir("native-roots");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    make_certificate(&cert, &key);
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = {cert:?}, key = {key:?} }}\n\n\
         [[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\nsecret = \"{KEY}\"\nappend_to = \"out.jsonl\"\n"
    );
    let config_path = dir.join("hookguard.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let server = Server::start(&config_path);
    let url = format!("https://{}/hooks/github", server.addr);
    let args = ["send", "-p", "github", "-s", KEY, "--url", &url];
    let trusted =
        hookguard_env(&args, br#"{"zen":"native"}"#, &[("SSL_CERT_FILE", cert.to_str().expect("path"))]);
    assert_eq!(text(&trusted.stdout).lines().next(), Some("HTTP 202 Accepted"), "{}", text(&trusted.stderr));
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let refused =
        hookguard_env(&args, br#"{"zen":"refused"}"#, &[("SSL_CERT_FILE", empty.to_str().expect("path"))]);
    assert!(text(&refused.stdout).starts_with("error:"), "{}", text(&refused.stdout));
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP stops `serve` gracefully, as SIGTERM does (the server has no reload for SIGHUP to
/// mean): the memory inbox's jobs are processed first and the exit status is 0. It killed
/// it at once, the accepted webhooks with it.
#[cfg(target_os = "linux")]
#[test]
fn sighup_stops_serve_gracefully() {
    let dir = temp_dir("sighup");
    let server = Server::start_with_default_hangup(&one_endpoint_config(&dir, ""));
    assert_eq!(send_github(&server, "sig-hup"), "HTTP 202 Accepted");
    let (status, stderr) = server.signal_with_stderr("HUP");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("hookguard: stopped"), "{stderr}");
    let written = std::fs::read_to_string(dir.join("out.jsonl")).unwrap_or_default();
    assert_eq!(written.lines().count(), 1, "the accepted webhook was processed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Under `nohup` (SIGHUP ignored), a SIGHUP (the terminal closing) does not stop `serve`:
/// the ignore it inherited holds, as before SIGHUP was a graceful stop.
#[cfg(target_os = "linux")]
#[test]
fn sighup_ignored_by_nohup_stays_ignored() {
    let dir = temp_dir("nohup");
    let mut server = Server::start_under_nohup(&one_endpoint_config(&dir, ""));
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    // A request after the signal is answered: the server is still up (a signal is handled
    // before the process is scheduled to answer the next request).
    assert_eq!(send_github(&server, "after-hup"), "HTTP 202 Accepted");
    assert_eq!(http_get(&server.addr, "/healthz"), (200, "ok\n".to_owned()));
    assert!(server.child.try_wait().expect("status").is_none(), "still running");
    // Decisive whatever the timing: the process still ignores SIGHUP and has no handler
    // for it (a handler would stop it gracefully, perhaps after the request above).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let mask = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).expect(name);
        u64::from_str_radix(line[name.len()..].trim(), 16).expect("a hex mask")
    };
    let hup = 1 << (1 - 1);
    assert_ne!(mask("SigIgn:") & hup, 0, "SIGHUP is still ignored");
    assert_eq!(mask("SigCgt:") & hup, 0, "no handler for SIGHUP");
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// While the inbox opens (here a PostgreSQL that never answers), the port is bound but not
/// listened on: a client is refused at once, not held without an answer; and a signal then
/// stops the start (exit status 0) instead of waiting for the open to fail or succeed and
/// then starting the workers.
#[cfg(all(unix, feature = "postgres"))]
#[test]
fn while_the_inbox_opens_clients_are_refused_and_a_signal_stops_the_start() {
    let dir = temp_dir("slow-open");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free_port();
    let config = dir.join("hookguard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[inbox]\nbackend = \"postgres\"\n\
             url = \"postgres://postgres@{}/test?connect_timeout=30\"\n\n[[endpoint]]\npath = \"/hooks/github\"\n\
             provider = \"github\"\nsecret = \"{KEY}\"\nappend_to = \"out.jsonl\"\n",
            silent.local_addr().expect("addr")
        ),
    )
    .expect("config");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    // It has installed its signal handlers, bound the port and is opening the inbox once
    // it connects to the "database".
    let (_db, _) = silent.accept().expect("serve connects to the database");
    let refused = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(std::io::ErrorKind::ConnectionRefused), "refused, not held");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("status") {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop within 15 s of the signal");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stopped before it started"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A port already in use stops `serve` before it opens the inbox: the job waiting there is
/// not leased (no attempt charged, no lease to wait out) and its action does not run; the
/// next start, on a free port, processes it at once. The inbox was opened and the workers
/// started before the bind: a start that failed to listen had leased the job, charged an
/// attempt and started its action, then killed it (a restart loop dead-lettered it).
#[cfg(feature = "sqlite")]
#[test]
fn a_port_in_use_stops_serve_before_any_job_is_touched() {
    use hookguard::inbox::{Inbox as _, SqliteInbox};
    let dir = temp_dir("bind-first");
    let db = dir.join("inbox.db");
    kept_in_sqlite(&db, "hooks-github", r#"{"id":"waiting"}"#);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let config_path = dir.join("hookguard.toml");
    let out = dir.join("out.jsonl");
    let config = |listen: &str| {
        format!(
            "[server]\nlisten = \"{listen}\"\n\n[inbox]\nbackend = \"sqlite\"\npath = {db:?}\n\n\
             [worker]\nlease_secs = 3600\n\n[[endpoint]]\npath = \"/hooks/github\"\nprovider = \"github\"\n\
             secret = \"{KEY}\"\nappend_to = {out:?}\n"
        )
    };
    std::fs::write(&config_path, config(&held.local_addr().expect("addr").to_string())).expect("config");
    // A supervisor restarting it, as long as the port is taken.
    let mut stderr = String::new();
    for _ in 0..10 {
        let refused = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("serve");
        stderr = text(&refused.stderr);
        assert!(!refused.status.success(), "{stderr}");
        assert!(stderr.contains("cannot listen on"), "{stderr}");
        assert!(!out.exists(), "the action ran: {stderr}");
    }
    // Still waiting, at its first attempt: it was not leased.
    runtime.block_on(async {
        let inbox = SqliteInbox::builder(&db).open().await.expect("open the inbox");
        let jobs = inbox.pull(10, Duration::from_secs(1)).await.expect("pull");
        let attempts: Vec<u32> = jobs.iter().map(|job| job.attempt()).collect();
        assert_eq!(attempts, [1], "the waiting job was leased by the start that failed: {stderr}");
        inbox.give_back(&jobs[0], time::OffsetDateTime::now_utc()).await.expect("give back");
    });
    drop(held);

    std::fs::write(&config_path, config("127.0.0.1:0")).expect("config");
    let server = Server::start(&config_path);
    let written = file_with_lines(&out, 1);
    assert!(server.stop().success());
    assert!(written.contains("waiting"), "not processed at once: {written}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[server] max_connections = 1`: one connection at a time is served, and the next waits in
/// the backlog, not refused, until it ends. (That a second connection is not served while
/// the first is open is shown by the accept loop's unit test, without waiting on a clock.)
/// Here a client connects and sends its request while the only connection is held by a
/// client that never finishes its head: it is answered once that one is gone.
#[test]
fn max_connections_makes_the_next_client_wait_not_fail() {
    let dir = temp_dir("max-connections");
    let server =
        Server::start(&one_endpoint_config(&dir, "max_connections = 1\nheader_read_timeout_secs = 3600"));
    for _ in 0..3 {
        assert_eq!(http_get(&server.addr, "/healthz"), (200, "ok\n".to_owned()), "one after the other");
    }
    let mut held = TcpStream::connect(&server.addr).expect("connect");
    held.write_all(b"POST /hooks/gi").expect("write");
    let mut waiting = TcpStream::connect(&server.addr).expect("connect: the backlog takes it");
    write!(waiting, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    drop(held);
    let mut response = String::new();
    waiting.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}
