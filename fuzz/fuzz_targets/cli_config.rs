//! The `hookguard` command's configuration file (`src/bin/hookguard/config.rs`): `load`
//! (read, `parse`, then the inbox's backend checked against the build), `parse` itself and
//! `load_inbox`, over the input's bytes as the file (the seeds are configuration files),
//! and over a document assembled from the file's own sections and keys (each key once; each
//! endpoint with a path, a provider, a secret and an action), most values the key's own
//! (valid ones, ones at and past their bounds, wrong ones), the others any number, string,
//! inline table or text, with a fake environment. `HOOKGUARD_FUZZ_SHOW=1` prints what
//! `parse` answers.
//!
//! The CLI's `config.rs` and `common.rs` are compiled into this target as they are
//! (`#[path]`): the library has no configuration API. Their `reqwest::Url` is `url::Url`
//! (which reqwest re-exports), and the features they test stand for `--features cli,redis`
//! (the fuzz crate's default features `rsa`, `ed25519`, `ecdsa`, `redis`): the public-key
//! presets and PayPal are known, the redis inbox is built, SQLite and PostgreSQL are not.
//!
//! Paths are relative to a folder of the target's (`hookguard-fuzz-cli-config-PID` in the
//! temporary folder), which holds the file and what the configuration may name: `secret.txt`,
//! `secret2.txt`, `empty.txt`, `newlines.txt`, `binary.bin`, `paypal-cert.pem`,
//! `tls-cert.pem`, `tls-key.pem`, `tls-key-b.pem` (not the certificate's), `allow.txt`,
//! `allow-bad.txt`, `handle.sh` (executable), `noexec.sh` and the folder `dir`. An input
//! whose file names a file to read (`cert`, `key`, `secret_file`, `shared_key_file`,
//! `certificate_file`, `allow_file`) by an absolute path or through `..` is skipped: it
//! could read a pipe (`/proc/self/fd/1`) and block.
//!
//! The environment: in the document, the variables the input sets; for the bytes, once
//! every variable set (to a secret; a URL for a name with `URL`; empty for a name with
//! `EMPTY`; unset for a name with `UNSET`) and once none. `PATH` is the target's folder.
//!
//! What must hold, besides no panic:
//! - every refusal starts with the file's name and a `LINE:COLUMN` inside the text
//!   (`FILE:LINE:COL: …`), environment variables and backends not built included, except
//!   what concerns the whole file: `FILE: cannot read: …`, `FILE: no [[endpoint]]: …`,
//!   `FILE: two endpoints have the path …`, `FILE: two endpoints are named …`;
//! - no secret in an accepted configuration's `Debug` (its backends, actions, schemes,
//!   handshakes, allow-lists, limiters, demo-secret notes, worker, TLS configuration), nor
//!   in a refusal: secrets are those of the environment and of the secret files (and, in the
//!   document, `secret`, `secret_env_default`, `verify_token`, a backend's `url` or wrong
//!   `backend`, `forward_to`'s URL, `run`'s arguments and the credentials and query of an
//!   endpoint's `url`, whose path Square's and Trello's schemes show), all marked `Zq9SECRET`, and
//!   `31415926535`, a secret given as a number (checked when nothing else in the input
//!   holds them);
//! - `load` and `parse` give the same result (the configuration's `Debug`, or the same
//!   refusal), except that `load` refuses an inbox backend not built
//!   (`FILE:LINE:COL: [inbox] the sqlite backend is not built …`): the same text parsed
//!   twice gives the same result;
//! - `load_inbox` gives the inbox `load` gives when `load` accepts the file (the memory
//!   inbox refused, as are backends not built), and the same answer twice.
//!
//! The command-line parsers of `common.rs` get the input as text too (no panic for any):
//! `-H`'s `parse_header` never repeats what follows a space after the text (a credential
//! typed without its colon); `--timestamp`'s `parse_time` reads back the RFC 3339 form of
//! what it read; `redact_url` shows none of a URL's user, password, path, query or fragment.
#![no_main]

// `config.rs` and `common.rs` name `reqwest::Url`, the `url` crate's type.
extern crate url as reqwest;

#[allow(dead_code)]
#[path = "../../src/bin/hookguard/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../../src/bin/hookguard/config.rs"]
mod config;

use std::{
    fmt::Write as _,
    path::{Component, Path, PathBuf},
    sync::OnceLock,
};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

/// In every secret the target gives.
const MARKER: &str = "Zq9SECRET";
/// A secret given as a number (`secret = 31415926535`): refusals must not repeat it.
const NUMBER: &str = "31415926535";

/// The target's folder and the configuration file's path in it.
struct Sandbox {
    dir: PathBuf,
    file: PathBuf,
}

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hookguard-fuzz-cli-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("dir")).unwrap();
        let files: [(&str, &[u8]); 13] = [
            ("secret.txt", b"Zq9SECRET-file-1\n"),
            ("secret2.txt", b"Zq9SECRET-file-2"),
            ("empty.txt", b""),
            ("newlines.txt", b"\n\r\n"),
            ("binary.bin", b"\xff\xfe\0"),
            ("paypal-cert.pem", include_bytes!("../../src/providers/testdata/paypal_cert.pem")),
            ("tls-cert.pem", include_bytes!("../../tests/fixtures/tls/cert-a.pem")),
            ("tls-key.pem", include_bytes!("../../tests/fixtures/tls/key-a.pem")),
            ("tls-key-b.pem", include_bytes!("../../tests/fixtures/tls/key-b.pem")),
            ("allow.txt", b"10.0.0.0/8\n192.0.2.0/24\n"),
            ("allow-bad.txt", b"10.0.0.0/8\nnot a range\n"),
            ("handle.sh", b"#!/bin/sh\ncat >/dev/null\n"),
            ("noexec.sh", b"#!/bin/sh\n"),
        ];
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.join("handle.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(dir.join("noexec.sh"), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let file = dir.join("hookguard.toml");
        Sandbox { dir, file }
    })
}

// ---------------------------------------------------------------------------------------
// The document mode: sections, keys and values of the configuration.

#[derive(Arbitrary, Debug)]
struct Doc {
    server: Option<Vec<(u8, u8)>>,
    replay: Option<Vec<(u8, u8)>>,
    inbox: Option<Vec<(u8, u8)>>,
    worker: Option<Vec<(u8, u8)>>,
    endpoints: Vec<EndpointDoc>,
    /// The values of the entries whose pick is `0xF0` or more, in turn.
    others: Vec<Val>,
    env: Vec<(u8, EnvValue)>,
}

/// An endpoint: the keys it needs, then any (each key once: a key given twice is TOML's
/// error, which the bytes reach).
#[derive(Arbitrary, Debug)]
struct EndpointDoc {
    path: u8,
    provider: u8,
    /// `secret`, `secret_env` or `secret_file`, and its value.
    secret: (u8, u8),
    /// `append_to`, `run` or `forward_to`, and its value.
    action: (u8, u8),
    more: Vec<(u8, u8)>,
}

/// A value other than the key's own.
#[derive(Arbitrary, Debug)]
enum Val {
    Int(i64),
    Bool(bool),
    Str(String),
    /// An inline table of the key's own keys (`rate_limit`, `tls`), or of `[server]`'s.
    Table(Vec<(u8, u8)>),
    /// A secret written as a number.
    SecretNumber,
    /// Any text as the value (broken TOML too).
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum EnvValue {
    /// `Zq9SECRET-env-N`.
    Secret(u8),
    Empty,
    /// One of the values secrets and URLs take: a Standard Webhooks secret, public keys,
    /// backend URLs with a password.
    Known(u8),
    Any(String),
}

const SERVER_KEYS: &[&str] = &[
    "listen",
    "tls",
    "shutdown_grace_secs",
    "header_read_timeout_secs",
    "metrics",
    "trusted_proxies",
    "forwarded_header",
    "max_connections",
];
const BACKEND_KEYS: &[&str] = &["backend", "capacity", "path", "url", "url_env", "dead_letters_to"];
const WORKER_KEYS: &[&str] =
    &["concurrency", "max_attempts", "backoff_base_ms", "backoff_max_secs", "lease_secs"];
const ENDPOINT_KEYS: &[&str] = &[
    "path",
    "name",
    "provider",
    "secret",
    "secret_env",
    "secret_file",
    "secret_env_default",
    "shared_key_env",
    "shared_key_file",
    "tolerance_secs",
    "body_limit",
    "url",
    "public_origin",
    "webhook_id",
    "certificate_file",
    "verify_token",
    "verify_token_env",
    "handshake",
    "append_to",
    "run",
    "forward_to",
    "timeout_secs",
    "allow",
    "allow_file",
    "allow_reload_secs",
    "allow_shared",
    "rate_limit",
];
const TLS_KEYS: &[&str] = &["cert", "key"];
const RATE_KEYS: &[&str] = &["requests", "per_secs", "failures", "failures_per_secs", "max_addresses"];

/// The variables the document's environment may set (and `UNSET_VAR`, never set).
const VARS: &[&str] = &["SECRET_A", "SECRET_B", "SHARED_KEY", "VERIFY_TOKEN", "INBOX_URL", "UNSET_VAR"];

/// Values the environment's variables take: a Standard Webhooks secret (base64), the
/// public keys of Discord and Standard Webhooks v1a (not secrets), SendGrid's, backend URLs.
const ENV_VALUES: &[&str] = &[
    "whsec_Zq9SECRETAAAAAAAAAAAAAAAAAAAAAAA",
    "c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6",
    "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=",
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==",
    "redis://:Zq9SECRET@cache.internal:6379/0",
    "postgres://app:Zq9SECRET@db/hooks?sslmode=disable",
    "Zq9SECRET not a URL",
];

/// The provider names, with PayPal's (feature `rsa`) and two the tool does not know.
fn providers() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<String> = common::provider_names().iter().map(|n| format!("{n:?}")).collect();
        names.extend(["\"nope\"".to_owned(), "\"GitHub\"".to_owned()]);
        names
    })
}

/// The key's own values, as TOML: valid ones, ones at and past a bound, wrong ones. Those
/// holding `Zq9SECRET` are secrets (never shown).
fn known(key: &str) -> &'static [&'static str] {
    const INTS: &[&str] = &["0", "1", "-1", "18446744073709551615", "9223372036854775807", "\"1\"", "1.5"];
    match key {
        "listen" => &[
            "\"127.0.0.1:8080\"",
            "\"[::1]:0\"",
            "\"localhost:8080\"",
            "\"127.0.0.1\"",
            "\":8080\"",
            "\"http://127.0.0.1:8080\"",
            "\"\"",
        ],
        "tls" => &[
            "{ cert = \"tls-cert.pem\", key = \"tls-key.pem\" }",
            "{ cert = \"tls-cert.pem\", key = \"tls-key-b.pem\" }",
            "{ cert = \"missing.pem\", key = \"tls-key.pem\" }",
            "{ cert = \"tls-key.pem\", key = \"tls-cert.pem\" }",
            "{ cert = \"empty.txt\", key = \"tls-key.pem\" }",
            "{ cert = \"tls-cert.pem\", key = \"empty.txt\" }",
            "{ cert = \"dir\", key = \"tls-key.pem\" }",
            "{ cert = \"tls-cert.pem\" }",
        ],
        "cert" | "key" => &["\"tls-cert.pem\"", "\"tls-key.pem\"", "\"tls-key-b.pem\"", "\"missing.pem\""],
        "shutdown_grace_secs" => &["0", "10", "18446744073709551615", "-1"],
        "header_read_timeout_secs" => &["0", "1", "30", "3600", "3601"],
        "metrics" | "handshake" | "allow_shared" => &["true", "false", "\"true\""],
        "trusted_proxies" | "allow" => &[
            "[\"10.0.0.0/8\"]",
            "[\"10.0.0.0/8\", \"::ffff:192.0.2.0/120\", \"::1\"]",
            "[]",
            "[\"not a range\"]",
            "\"10.0.0.0/8\"",
        ],
        "forwarded_header" => &["\"x-forwarded-for\"", "\"forwarded\"", "\"X-Forwarded-For\"", "\"via\""],
        "max_connections" => &["0", "1", "1024", "1000000", "1000001"],
        "backend" => &[
            "\"memory\"",
            "\"sqlite\"",
            "\"redis\"",
            "\"postgres\"",
            "\"redis://:Zq9SECRET@cache.internal\"",
            "\"postgresql://app:Zq9SECRET@db/hooks\"",
            "\"ftp://Zq9SECRET@h.example\"",
            "\"Zq9SECRET\"",
        ],
        "capacity" | "body_limit" | "max_addresses" => &["0", "1", "10000", "18446744073709551615"],
        "path" => &[
            "\"inbox.db\"",
            "\"dir/inbox.db\"",
            "\"/hooks/a\"",
            "\"/hooks/b\"",
            "\"/\"",
            "\"/healthz\"",
            "\"hooks\"",
            "\"/a/{id}\"",
            "\"/a/:id\"",
            "\"/a?x=1\"",
            "\"/a b\"",
            "\"/a%zz\"",
            "\"/a%20b\"",
            "\"/a|b\"",
        ],
        "url" => &[
            "\"redis://:Zq9SECRET@cache.internal:6379/0\"",
            "\"postgres://app:Zq9SECRET@db/hooks?sslmode=Zq9SECRET\"",
            "\"redis://127.0.0.1:6379\"",
            "\"Zq9SECRET not a URL\"",
            "\"\"",
        ],
        // An endpoint's `url`, the one Square and Trello sign: its path is shown (by the
        // schemes' `Debug` too), its credentials and query are not.
        "registered_url" => &[
            "\"https://h.example/registered\"",
            "\"https://u:Zq9SECRET@h.example/registered\"",
            "\"https://h.example/registered?token=Zq9SECRET\"",
            "\"not a URL\"",
            "\"\"",
        ],
        "url_env" | "verify_token_env" => &["\"INBOX_URL\"", "\"VERIFY_TOKEN\"", "\"UNSET_VAR\"", "\"\""],
        "dead_letters_to" | "append_to" => &[
            "\"webhooks.jsonl\"",
            "\"dir/w.jsonl\"",
            "\"nodir/w.jsonl\"",
            "\"dir\"",
            "\"/\"",
            "\".\"",
            "\"secret.txt\"",
        ],
        "concurrency" => &["0", "1", "4", "10000", "10001"],
        "max_attempts" => &["0", "1", "8", "4294967296"],
        "backoff_base_ms" => &["0", "1", "500", "300000", "300001"],
        "backoff_max_secs" => &["0", "1", "300", "18446744073709551615"],
        "lease_secs" => &["0", "1", "30", "60", "31536000", "31536001"],
        "name" => &["\"a\"", "\"b\"", "\"\"", "\"hooks-a\""],
        "secret" => &[
            "\"Zq9SECRET-lit-1\"",
            "[\"Zq9SECRET-lit-1\", \"Zq9SECRET-lit-2\"]",
            "\"whsec_Zq9SECRETAAAAAAAAAAAAAAAAAAAAAAA\"",
            "\"c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6\"",
            "\"whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=\"",
            "\"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==\"",
            "\"\"",
            "[]",
            "[\"Zq9SECRET-lit-1\", 31415926535]",
        ],
        "secret_env" | "shared_key_env" => &[
            "\"SECRET_A\"",
            "[\"SECRET_A\", \"SECRET_B\"]",
            "\"SHARED_KEY\"",
            "[\"SHARED_KEY\", \"UNSET_VAR\"]",
            "\"UNSET_VAR\"",
            "[]",
            "\"\"",
        ],
        "secret_file" | "shared_key_file" | "certificate_file" => &[
            "\"secret.txt\"",
            "[\"secret.txt\", \"secret2.txt\"]",
            "\"paypal-cert.pem\"",
            "[\"paypal-cert.pem\", \"paypal-cert.pem\"]",
            "\"empty.txt\"",
            "\"newlines.txt\"",
            "\"missing.txt\"",
            "\"binary.bin\"",
            "\"dir\"",
            "\"nodir/secret.txt\"",
            "\"dir/awaiting.txt\"",
        ],
        "secret_env_default" | "verify_token" => &["\"Zq9SECRET-demo\"", "\"\""],
        "tolerance_secs" | "allow_reload_secs" => {
            &["0", "1", "60", "300", "86400", "86401", "18446744073709551615"]
        }
        "public_origin" => &[
            "\"https://hooks.example.com\"",
            "\"https://hooks.example.com/\"",
            "\"http://h.example:8080\"",
            "\"https://u:p@h.example\"",
            "\"https://h.example/path\"",
            "\"https://h.example?x\"",
            "\"ftp://h.example\"",
            "\"https://h.example/.\"",
            "\"https:\\\\h.example\"",
            "\"https:// h.example\"",
        ],
        "webhook_id" => &["\"WH-1\"", "\"\""],
        "run" => &[
            "[\"handle.sh\", \"Zq9SECRET-arg\"]",
            "[\"./handle.sh\"]",
            "[\"./noexec.sh\"]",
            "[\"./missing.sh\"]",
            "[\"./dir\"]",
            "[\"sh\", \"-c\", \"Zq9SECRET\"]",
            "[]",
            "\"handle.sh\"",
        ],
        "forward_to" => &[
            "\"https://discord.com/api/webhooks/1/Zq9SECRET\"",
            "\"http://127.0.0.1:9000/hook?key=Zq9SECRET\"",
            "\"https://u:Zq9SECRET@h.example/\"",
            "\"ftp://h.example/Zq9SECRET\"",
            "\"http://\"",
            "\"https://exa mple.com/Zq9SECRET\"",
        ],
        "timeout_secs" => &["0", "1", "29", "30", "59", "60", "18446744073709551615"],
        "allow_file" => {
            &["\"allow.txt\"", "\"allow-bad.txt\"", "\"empty.txt\"", "\"missing.txt\"", "\"dir\""]
        }
        "rate_limit" => &[
            "{ requests = 100, per_secs = 10 }",
            "{ requests = 100, per_secs = 10, failures = 10, failures_per_secs = 600, max_addresses = 1000 }",
            "{ requests = 0, per_secs = 0 }",
            "{ requests = 1, per_secs = 18446744073709551615, failures = 1, failures_per_secs = 18446744073709551615 }",
            "{ per_secs = 10 }",
            "{ requests = 100, per_secs = 10, failures_per_secs = 600 }",
            "{ requests = 100, per_secs = 10, max_addresses = 0 }",
        ],
        "requests" | "failures" => &["0", "1", "100", "4294967295", "4294967296"],
        "per_secs" | "failures_per_secs" => INTS,
        _ => INTS,
    }
}

/// `text` as a TOML basic string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether a text of the input's own holds what the target counts as a secret.
fn holds_secret(text: &str) -> bool {
    text.contains(MARKER) || text.contains(NUMBER)
}

struct Writer<'a> {
    text: String,
    /// Whether every secret in the text is one the target put there.
    clean: bool,
    others: &'a [Val],
    next: usize,
}

impl Writer<'_> {
    /// The value of `key` that `pick` chooses: below `0xE0` one of the key's own values,
    /// below `0xF0` a list of two of them, else the next of the document's other values.
    fn value(&mut self, key: &str, pick: u8, depth: u8) {
        let own = |i: u8| {
            let pool = known(key);
            pool[usize::from(i) % pool.len()]
        };
        if key == "provider" && pick < 0xF0 {
            let names = providers();
            self.text.push_str(&names[usize::from(pick) % names.len()]);
            return;
        }
        if pick < 0xE0 || self.others.is_empty() {
            self.text.push_str(own(pick));
            return;
        }
        if pick < 0xF0 {
            let _ = write!(self.text, "[{}, {}]", own(pick), own(pick / 7));
            return;
        }
        let others = self.others;
        let value = &others[self.next % others.len()];
        self.next += 1;
        match value {
            Val::Int(n) => {
                let _ = write!(self.text, "{n}");
                self.clean &= !holds_secret(&n.to_string());
            }
            Val::Bool(b) => {
                let _ = write!(self.text, "{b}");
            }
            Val::Str(s) => {
                self.clean &= !holds_secret(s);
                self.text.push_str(&quoted(s));
            }
            Val::Table(entries) if depth < 2 => {
                let keys = match key {
                    "tls" => TLS_KEYS,
                    "rate_limit" => RATE_KEYS,
                    _ => SERVER_KEYS,
                };
                self.text.push('{');
                for (n, (k, pick)) in entries.iter().enumerate() {
                    let k = keys[usize::from(*k) % keys.len()];
                    self.text.push_str(if n == 0 { " " } else { ", " });
                    self.text.push_str(k);
                    self.text.push_str(" = ");
                    self.value(k, *pick, depth + 1);
                }
                self.text.push_str(" }");
            }
            Val::Table(_) => self.text.push_str("{}"),
            Val::SecretNumber => self.text.push_str(NUMBER),
            Val::Raw(raw) => {
                self.clean &= !holds_secret(raw);
                self.text.push_str(raw);
            }
        }
    }

    /// A section: `header`, then each entry's key (from `keys`, each once) and value.
    fn section(&mut self, header: &str, keys: &[&str], entries: impl IntoIterator<Item = (u8, u8)>) {
        self.text.push_str(header);
        self.text.push('\n');
        let mut given = Vec::new();
        for (k, pick) in entries {
            let key = keys[usize::from(k) % keys.len()];
            if given.contains(&key) {
                continue;
            }
            given.push(key);
            self.text.push_str(key);
            self.text.push_str(" = ");
            let pool = if key == "url" && header == "[[endpoint]]" { "registered_url" } else { key };
            self.value(pool, pick, 0);
            self.text.push('\n');
        }
    }
}

impl Doc {
    /// The file's text, and whether the target alone put secrets in it.
    fn text(&self) -> (String, bool) {
        let mut w = Writer { text: String::new(), clean: true, others: &self.others, next: 0 };
        let sections = [
            ("[server]", SERVER_KEYS, &self.server),
            ("[replay]", BACKEND_KEYS, &self.replay),
            ("[inbox]", BACKEND_KEYS, &self.inbox),
            ("[worker]", WORKER_KEYS, &self.worker),
        ];
        for (header, keys, entries) in sections {
            if let Some(entries) = entries {
                w.section(header, keys, entries.iter().copied());
            }
        }
        let at = |list: &[&'static str], i: u8| -> u8 {
            let name = list[usize::from(i) % list.len()];
            ENDPOINT_KEYS.iter().position(|k| *k == name).and_then(|p| u8::try_from(p).ok()).unwrap_or(0)
        };
        for e in &self.endpoints {
            let required = [
                (at(&["path"], 0), e.path),
                (at(&["provider"], 0), e.provider),
                (at(&["secret", "secret_env", "secret_file"], e.secret.0), e.secret.1),
                (at(&["append_to", "run", "forward_to"], e.action.0), e.action.1),
            ];
            w.section("[[endpoint]]", ENDPOINT_KEYS, required.into_iter().chain(e.more.iter().copied()));
        }
        (w.text, w.clean)
    }

    /// The variables the document sets, and whether their values hold no secret of the
    /// input's own.
    fn env(&self) -> (Vec<(&'static str, String)>, bool) {
        let mut clean = true;
        let vars = self
            .env
            .iter()
            .filter_map(|(var, value)| {
                let var = VARS[usize::from(*var) % VARS.len()];
                let value = match value {
                    EnvValue::Secret(n) => format!("{MARKER}-env-{n}"),
                    EnvValue::Empty => String::new(),
                    EnvValue::Known(i) => ENV_VALUES[usize::from(*i) % ENV_VALUES.len()].to_owned(),
                    EnvValue::Any(s) => {
                        clean &= !holds_secret(s);
                        s.clone()
                    }
                };
                (var != "UNSET_VAR").then_some((var, value))
            })
            .collect();
        (vars, clean)
    }
}

// ---------------------------------------------------------------------------------------
// The checks.

/// Keys naming a file the configuration reads.
const READ_KEYS: &[&str] =
    &["cert", "key", "secret_file", "shared_key_file", "certificate_file", "allow_file"];

/// Whether every file the text names to read is a relative path without `..`: inside
/// the target's folder, where no pipe waits. Read as the configuration reads it: into a
/// value that takes every integer the configuration's `u64` fields take (a `toml::Value`
/// refuses those above `i64::MAX`, which would let such a text through unread). A text
/// that is not TOML reads nothing.
fn reads_inside(text: &str) -> bool {
    fn inside(value: &serde_json::Value, read: bool) -> bool {
        match value {
            serde_json::Value::String(s) => {
                let path = Path::new(s);
                !read || (!path.is_absolute() && !path.components().any(|c| c == Component::ParentDir))
            }
            serde_json::Value::Array(items) => items.iter().all(|item| inside(item, read)),
            serde_json::Value::Object(table) => {
                table.iter().all(|(key, value)| inside(value, read || READ_KEYS.contains(&key.as_str())))
            }
            _ => true,
        }
    }
    match toml::from_str::<serde_json::Value>(text) {
        Ok(value) => inside(&value, false),
        // Not TOML (the configuration refuses it before reading anything), unless it is
        // TOML this reading refuses for another reason: then not run.
        Err(_) => toml::from_str::<toml::Table>(text).is_err() && !READ_KEYS.iter().any(|k| text.contains(k)),
    }
}

/// The refusals that concern the whole file, and name no line.
const WHOLE_FILE: &[&str] = &[
    "cannot read: ",
    "no [[endpoint]]: nothing to serve",
    "two endpoints have the path ",
    "two endpoints are named ",
];

/// A refusal names the file, and a line and column of `text` unless it is about the
/// whole file.
fn check_refusal(err: &str, text: Option<&str>, clean: bool) {
    let file = sandbox().file.display().to_string();
    let rest = err.strip_prefix(&file).and_then(|r| r.strip_prefix(':')).unwrap_or_else(|| {
        panic!("a refusal that does not start with the file's name: {err:?}");
    });
    if let Some(whole) = rest.strip_prefix(' ') {
        assert!(WHOLE_FILE.iter().any(|w| whole.starts_with(w)), "a refusal without LINE:COL: {err:?}");
    } else {
        let mut parts = rest.splitn(3, ':');
        let (line, col) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (line, col) = match (line.parse::<usize>(), col.parse::<usize>()) {
            (Ok(line), Ok(col)) => (line, col),
            _ => panic!("a refusal without LINE:COL: {err:?}"),
        };
        assert!(parts.next().is_some_and(|m| m.starts_with(' ') && m.len() > 1), "no message: {err:?}");
        let text = text.expect("a refusal with a line of a file that is not text");
        let lines: Vec<&str> = text.split('\n').collect();
        assert!(line >= 1 && line <= lines.len(), "line {line} of {} lines: {err:?}", lines.len());
        let width = lines[line - 1].chars().count();
        assert!(col >= 1 && col <= width + 1, "column {col} of a line of {width} characters: {err:?}");
    }
    if clean {
        assert!(!holds_secret(err), "a refusal shows a secret: {err:?}");
    }
}

/// Everything an accepted configuration shows with `Debug`.
fn shown(c: &config::Config) -> String {
    let mut s = format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        c.listen,
        c.trusted_proxies,
        c.tls,
        c.shutdown_grace,
        c.header_read_timeout,
        c.max_connections,
        c.metrics,
        c.replay,
        c.inbox,
        c.inbox_at,
        c.dead_letters_to,
        c.worker,
        c.secret_vars,
        c.unused_replay_note(),
    );
    for e in &c.endpoints {
        let keys = match &e.keys {
            config::Keys::Configured(scheme) => format!("Configured({scheme:?})"),
            config::Keys::Handshake(file) => format!("Handshake({file:?})"),
        };
        let allow = e.allow.as_ref().map(|(list, reload)| (list, list.ranges(), reload));
        let _ = write!(
            s,
            "\n{:?} {:?} {} {keys} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            e.name,
            e.path,
            e.keys.provider(),
            e.handshake,
            e.body_limit,
            e.public_origin,
            e.action,
            allow,
            e.rate_limit,
            e.demo_secret,
        );
    }
    s
}

/// Checks `load`, `parse` and `load_inbox` on the file (written with `bytes`) with `env`.
fn check(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>, clean: bool) {
    let sb = sandbox();
    let text = std::str::from_utf8(bytes).ok();
    std::fs::write(&sb.file, bytes).unwrap();
    let loaded = config::load(&sb.file, env);
    let inbox = config::load_inbox(&sb.file, env);
    let inbox_again = config::load_inbox(&sb.file, env);
    match (&inbox, &inbox_again) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "load_inbox twice"),
        (Err(a), Err(b)) => assert_eq!(a, b, "load_inbox twice"),
        _ => panic!("load_inbox twice: {inbox:?} then {inbox_again:?}"),
    }
    if let Err(err) = &inbox {
        check_refusal(err, text, clean);
    }
    if let Ok(backend) = &inbox {
        assert!(
            clean_shown(&format!("{backend:?}"), clean),
            "load_inbox's backend shows a secret: {backend:?}"
        );
    }
    let Some(text) = text else {
        let err = loaded.err().expect("a file that is not UTF-8 loads");
        assert!(err.ends_with(": cannot read: it is not UTF-8 text"), "{err}");
        check_refusal(&err, None, clean);
        return;
    };
    let parsed = config::parse(text, &sb.file, env);
    if show() {
        match &parsed {
            Ok(c) => eprintln!("accepted: {} endpoints, inbox {}", c.endpoints.len(), c.inbox.name()),
            Err(e) => eprintln!("refused: {e}"),
        }
    }
    match (&loaded, &parsed) {
        (Err(l), Err(p)) => {
            assert_eq!(l, p, "load and parse refuse alike");
            check_refusal(l, Some(text), clean);
        }
        (Ok(l), Ok(p)) => {
            let (shown_l, shown_p) = (shown(l), shown(p));
            assert_eq!(shown_l, shown_p, "the same text gives the same configuration");
            assert!(clean_shown(&shown_l, clean), "an accepted configuration shows a secret: {shown_l}");
            let inbox = inbox.as_ref();
            match config::missing_feature(l.inbox.name()) {
                _ if l.inbox.name() == "memory" => {
                    assert!(inbox.is_err_and(|e| e.contains("the memory inbox")))
                }
                Some(_) => panic!("load accepted an inbox not built: {:?}", l.inbox),
                None => assert_eq!(inbox, Ok(&l.inbox), "load_inbox's inbox is load's"),
            }
        }
        (Err(l), Ok(p)) => {
            check_refusal(l, Some(text), clean);
            let feature = config::missing_feature(p.inbox.name()).expect("load refuses what parse accepts");
            let want = format!("{}: [inbox] {}", p.inbox_at, config::not_built(p.inbox.name(), feature));
            assert_eq!(*l, want);
            assert_eq!(inbox.as_ref().err(), Some(&want), "load_inbox refuses the inbox not built");
            assert!(clean_shown(&shown(p), clean), "an accepted configuration shows a secret");
        }
        (Ok(_), Err(p)) => panic!("load accepts what parse refuses: {p}"),
    }
}

/// Whether to print what `parse` answers (`HOOKGUARD_FUZZ_SHOW=1`): which inputs a seed
/// or a corpus gets accepted.
fn show() -> bool {
    static SHOW: OnceLock<bool> = OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("HOOKGUARD_FUZZ_SHOW").is_some())
}

/// Whether `shown` holds none of the target's secrets (when the input holds none itself).
fn clean_shown(shown: &str, clean: bool) -> bool {
    !clean || !holds_secret(shown)
}

/// The command-line parsers of `common.rs` over `text`.
fn command_line(text: &str) {
    if !text.contains(MARKER) {
        let typed = format!("{text} {MARKER}value");
        if let Err(e) = common::parse_header(&typed) {
            assert!(!e.contains(MARKER), "-H {typed:?}: {e}");
        }
    }
    if let Ok(at) = common::parse_time(text) {
        let again = at.format(&time::format_description::well_known::Rfc3339);
        if let Ok(again) = again {
            assert_eq!(common::parse_time(&again), Ok(at), "{text:?} read as {again}");
        }
    }
    let shown = common::redact_url(text);
    if let Ok(url) = url::Url::parse(text) {
        let host = url.host_str().unwrap_or_default();
        let user = Some(url.username()).filter(|u| !u.is_empty());
        let hidden =
            [user, url.password(), Some(url.path()).filter(|p| *p != "/"), url.query(), url.fragment()];
        for part in hidden.into_iter().flatten() {
            // Long enough to be told apart from what may be shown.
            if part.len() >= 8 && !host.contains(part) && !url.scheme().contains(part) {
                assert!(!shown.contains(part), "{text:?} shown as {shown:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    command_line(&String::from_utf8_lossy(data));
    let sb = sandbox();
    let dir = sb.dir.to_str().expect("a UTF-8 temporary folder").to_owned();

    // The bytes as the file: every variable set, then none.
    let text_ok = std::str::from_utf8(data).map_or(true, reads_inside);
    if text_ok {
        let clean = !holds_secret(&String::from_utf8_lossy(data));
        let all = |name: &str| -> Option<String> {
            Some(if name == "PATH" {
                dir.clone()
            } else if name.contains("UNSET") {
                return None;
            } else if name.contains("EMPTY") {
                String::new()
            } else if name.contains("URL") {
                format!("redis://:{MARKER}-env@cache.internal:6379/0")
            } else {
                format!("{MARKER}-env-{name}")
            })
        };
        check(data, &all, clean);
        let none = |name: &str| (name == "PATH").then(|| dir.clone());
        check(data, &none, clean);
    }

    // The bytes as a document of the configuration's keys.
    let Ok(doc) = Doc::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let (text, text_clean) = doc.text();
    if !reads_inside(&text) {
        return;
    }
    let (vars, env_clean) = doc.env();
    let env = |name: &str| {
        if name == "PATH" {
            return Some(dir.clone());
        }
        vars.iter().rev().find(|(var, _)| *var == name).map(|(_, value)| value.clone())
    };
    check(text.as_bytes(), &env, text_clean && env_clean);
});
