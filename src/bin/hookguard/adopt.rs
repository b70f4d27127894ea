//! Asana's secret for `hookguard serve`. Asana hands the secret over at run time: its
//! first request carries `X-Hook-Secret`, which the endpoint echoes in a `200` answer and
//! then verifies every delivery with. An asana endpoint whose `secret_file` does not exist
//! yet (or is empty) awaits that handshake: the secret it hands over is written to the
//! file (created once, never replaced) and used from then on; after a restart the file is
//! read like any `secret_file`.
//!
//! | request | no secret yet | a secret (handed over, or configured) |
//! |---|---|---|
//! | handshake (`X-Hook-Secret`) | `200` echoing it, the file written | `403 handshake-refused` |
//! | another request | `404 unknown-endpoint` | verified as usual |
//!
//! An `X-Hook-Secret` that is not 16 to 256 bytes of visible ASCII (Asana sends 64 hex
//! digits) is no handshake: the request is another request.
//!
//! A delivery before the handshake gets `404`: the endpoint is not set up yet, and Asana
//! sends nothing before its handshake was answered, so such a request is not Asana's.
//! One handshake runs at a time: a second one meanwhile gets `403`. A handshake whose
//! answer did not reach Asana (the connection dropped) still keeps its secret, and Asana's
//! next attempt gets `403`: delete the file and restart to start over.
//!
//! The first handshake wins, whoever sends it: the README tells users to await only just
//! before they create the webhook, on a path with a random segment, and to start over if
//! Asana's handshake got `403`.

use std::{
    fmt, fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use hookguard::{
    Secret,
    guard::{SchemeSource, SourceError},
    providers::asana,
    replay::BoxFuture,
    verify::Scheme,
};
use http::request::Parts;

/// The [`SchemeSource`] of an asana endpoint that answers the handshake (see the module
/// docs). Cheap to clone.
#[derive(Clone)]
pub(crate) struct HandshakeSecret {
    shared: Arc<Shared>,
}

struct Shared {
    /// The endpoint's name, for the logs.
    endpoint: String,
    /// Where a handed-over secret is written; `None` when the configuration gave the secret.
    file: Option<PathBuf>,
    /// The scheme, once there is a secret.
    scheme: OnceLock<Arc<dyn Scheme>>,
    /// A handshake is storing its secret.
    adopting: AtomicBool,
}

impl fmt::Debug for HandshakeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("HandshakeSecret")
            .field("endpoint", &s.endpoint)
            .field("file", &s.file)
            .field("has_secret", &s.scheme.get().is_some())
            .finish()
    }
}

impl HandshakeSecret {
    /// An endpoint with its secret from the configuration: handshakes are refused (`403`).
    pub(crate) fn known(endpoint: impl Into<String>, scheme: impl Scheme + 'static) -> Self {
        let shared = Self::new(endpoint.into(), None);
        let _ = shared.shared.scheme.set(Arc::new(scheme));
        shared
    }

    /// An endpoint awaiting its handshake: the secret goes to `file`, which does not exist
    /// yet or is empty.
    pub(crate) fn awaiting(endpoint: impl Into<String>, file: PathBuf) -> Self {
        Self::new(endpoint.into(), Some(file))
    }

    fn new(endpoint: String, file: Option<PathBuf>) -> Self {
        let shared = Shared { endpoint, file, scheme: OnceLock::new(), adopting: AtomicBool::new(false) };
        Self { shared: Arc::new(shared) }
    }
}

impl SchemeSource for HandshakeSecret {
    /// The scheme once there is a secret; `Unknown` (`404`) before the handshake.
    fn scheme<'a>(&'a self, _parts: &'a Parts) -> BoxFuture<'a, Result<Arc<dyn Scheme>, SourceError>> {
        let scheme = self.shared.scheme.get().cloned().ok_or(SourceError::Unknown);
        Box::pin(std::future::ready(scheme))
    }

    /// Writes the secret to the file and uses it; `Refused` (`403`) when there is a
    /// secret, another handshake is storing one, or the file holds one meanwhile;
    /// `Unavailable` (`503`) when it cannot be written.
    fn adopt_secret<'a>(
        &'a self,
        _parts: &'a Parts,
        secret: Secret,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        let started = Adopting::start(&self.shared);
        Box::pin(async move {
            let started = started?;
            // Blocking file I/O, off the runtime's threads. It runs to its end even if this
            // request is dropped, so that the secret in the file is the one in use.
            tokio::task::spawn_blocking(move || started.adopt(&secret))
                .await
                .map_err(|e| SourceError::Unavailable(Box::new(e)))?
        })
    }
}

/// A handshake storing its secret; another is refused until this one is dropped.
struct Adopting(Arc<Shared>);

impl Adopting {
    /// `Refused` when the endpoint has a secret or another handshake is storing one.
    fn start(shared: &Arc<Shared>) -> Result<Self, SourceError> {
        if shared.scheme.get().is_some()
            || shared.adopting.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            return Err(SourceError::Refused);
        }
        let started = Self(Arc::clone(shared));
        // Looked at again: a handshake may have finished between the two looks.
        if shared.scheme.get().is_some() {
            return Err(SourceError::Refused);
        }
        Ok(started)
    }

    /// Writes the secret to the file, then verifies with it. Blocking.
    fn adopt(self, secret: &Secret) -> Result<(), SourceError> {
        let shared = &self.0;
        let Some(file) = &shared.file else { return Err(SourceError::Refused) };
        let unavailable = |e: Box<dyn std::error::Error + Send + Sync>| SourceError::Unavailable(e);
        // The file is read back as text at the next start.
        let text = std::str::from_utf8(secret.expose()).map_err(|_| {
            unavailable("the handed-over secret is not text: it would not load from a file".into())
        })?;
        let scheme = asana::scheme(text).map_err(|e| unavailable(Box::new(e)))?;
        match store(file, text) {
            Ok(()) => {}
            Err(Stored::Exists) => {
                tracing::warn!(
                    endpoint = %shared.endpoint,
                    file = %file.display(),
                    "handshake refused: the secret file holds a secret now (restart to use it)"
                );
                return Err(SourceError::Refused);
            }
            Err(Stored::Failed(e)) => {
                let e = io::Error::new(e.kind(), format!("cannot write secret file {}: {e}", file.display()));
                return Err(unavailable(Box::new(e)));
            }
        }
        let _ = shared.scheme.set(Arc::new(scheme));
        tracing::info!(
            endpoint = %shared.endpoint,
            file = %file.display(),
            "Asana handshake answered: secret stored, deliveries are verified with it"
        );
        Ok(())
    }
}

impl Drop for Adopting {
    fn drop(&mut self) {
        self.0.adopting.store(false, Ordering::Release);
    }
}

/// Why [`store`] did not store.
#[derive(Debug)]
enum Stored {
    /// The file holds a secret.
    Exists,
    Failed(io::Error),
}

impl From<io::Error> for Stored {
    fn from(e: io::Error) -> Self {
        Self::Failed(e)
    }
}

/// Writes `secret` and a newline to `file` unless it holds a secret: to a new temporary
/// file in the same folder (mode 0600 on unix, synced to disk), then hard-linked to
/// `file`, which fails if `file` exists: a file that appeared meanwhile is never
/// replaced, and `file` is whole or absent after a crash. A `file` that exists empty (a
/// placeholder) is replaced by a rename. On a filesystem without hard links (vfat, exFAT,
/// some network mounts: the link fails with another error than "exists") a rename puts it
/// in place too, when `file` holds no secret just before: this process makes one handshake
/// at a time, but another process writing `file` in between could be replaced there.
/// Blocking.
fn store(file: &Path, secret: &str) -> Result<(), Stored> {
    store_with(file, secret, |from, to| fs::hard_link(from, to))
}

/// [`store`] with the hard link made by `link` (the tests' way to a filesystem without).
fn store_with(
    file: &Path,
    secret: &str,
    link: impl Fn(&Path, &Path) -> io::Result<()>,
) -> Result<(), Stored> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = file.file_name().ok_or_else(|| io::Error::other("the secret file has no file name"))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let temp = dir.join(format!(
        ".{}.{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        nanos.as_nanos(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let stored = (|| {
        let mut out = create_new(&temp)?;
        out.write_all(secret.as_bytes())?;
        out.write_all(b"\n")?;
        out.sync_all()?;
        drop(out);
        match link(&temp, file) {
            Ok(()) => Ok(()),
            Err(e) => {
                let held = match holds_secret(file) {
                    Ok(held) => held,
                    Err(missing) if missing.kind() == io::ErrorKind::NotFound => {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            // Gone again since the link saw it: try no further.
                            return Err(e.into());
                        }
                        false
                    }
                    Err(other) => return Err(other.into()),
                };
                if held {
                    return Err(Stored::Exists);
                }
                tracing::debug!(error = %e, "no hard link to the secret file: renamed into place");
                fs::rename(&temp, file)?;
                Ok(())
            }
        }
    })();
    // Linked, renamed away or failed: the temporary name goes.
    let _ = fs::remove_file(&temp);
    if stored.is_ok() {
        sync_dir(dir);
    }
    stored
}

/// A new file (never an existing one), readable by its owner only on unix.
fn create_new(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Whether `file` holds a secret: anything but line ends, as the configuration reads it
/// (within its limit: a larger file is an error, and is not replaced).
fn holds_secret(file: &Path) -> io::Result<bool> {
    Ok(crate::common::read_limited(file, crate::common::FILE_LIMIT)?
        .iter()
        .any(|b| !matches!(b, b'\n' | b'\r')))
}

/// Syncs the folder, so that the new name survives a crash (unix).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot sync the secret file's folder");
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use hookguard::{
        guard::Guard,
        handshake::AsanaHookSecret,
        inbox::MemoryInbox,
        verify::{Outgoing, Sign as _},
    };

    use super::*;

    const SECRET: &str = "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81";
    const BODY: &[u8] = br#"{"events":[{"action":"changed"}]}"#;

    fn guard(source: HandshakeSecret) -> Guard {
        Guard::builder_with_source("asana", source)
            .handshake(AsanaHookSecret)
            .inbox(MemoryInbox::new())
            .build()
    }

    fn handshake(secret: &str) -> (Parts, Bytes) {
        let (parts, ()) = http::Request::post("/hooks/asana")
            .header("x-hook-secret", secret)
            .body(())
            .unwrap()
            .into_parts();
        (parts, Bytes::new())
    }

    fn delivery(secret: &str) -> (Parts, Bytes) {
        let mut req = http::Request::post("/hooks/asana");
        for (name, value) in asana::scheme(secret).unwrap().sign(&Outgoing::new(BODY)).unwrap() {
            req = req.header(name, value);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        (parts, Bytes::from_static(BODY))
    }

    async fn status(guard: &Guard, (parts, body): (Parts, Bytes)) -> u16 {
        guard.accept(&parts, body).await.status().as_u16()
    }

    /// Deliveries are refused until the handshake; the handshake is answered and stored
    /// once (the file mode 0600); deliveries then verify; a second handshake is refused and
    /// leaves the file as it was.
    #[tokio::test]
    async fn a_handshake_stores_the_secret_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("asana.secret");
        let guard = guard(HandshakeSecret::awaiting("asana", file.clone()));

        assert_eq!(status(&guard, delivery(SECRET)).await, 404, "a delivery before the handshake");
        assert!(!file.exists(), "nothing written before the handshake");

        let (parts, body) = handshake(SECRET);
        let res = guard.accept(&parts, body).await;
        assert_eq!(res.status(), 200, "the handshake");
        assert_eq!(res.headers()["x-hook-secret"], SECRET, "the echo");
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("{SECRET}\n"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, ["asana.secret"], "no temporary file left");

        for (name, request, want) in [
            ("a signed delivery", delivery(SECRET), 202),
            ("another secret's signature", delivery("forged"), 401),
            ("a second handshake", handshake("another-secret-0123456789"), 403),
            ("the same handshake again", handshake(SECRET), 403),
        ] {
            assert_eq!(status(&guard, request).await, want, "{name}");
        }
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("{SECRET}\n"), "the file is not replaced");
    }

    /// A file that holds a secret by the time of the handshake is never replaced, and the
    /// handshake is refused; an empty file (a placeholder) is filled.
    #[tokio::test]
    async fn a_file_that_appeared_meanwhile_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("asana.secret");
        let guard = guard(HandshakeSecret::awaiting("asana", file.clone()));
        fs::write(&file, "written-meanwhile\n").unwrap();
        assert_eq!(status(&guard, handshake(SECRET)).await, 403);
        assert_eq!(fs::read_to_string(&file).unwrap(), "written-meanwhile\n");
        assert_eq!(status(&guard, delivery(SECRET)).await, 404, "still no secret in use");

        let placeholder = dir.path().join("placeholder.secret");
        fs::write(&placeholder, "\n").unwrap();
        let guard = self::guard(HandshakeSecret::awaiting("asana", placeholder.clone()));
        assert_eq!(status(&guard, handshake(SECRET)).await, 200);
        assert_eq!(fs::read_to_string(&placeholder).unwrap(), format!("{SECRET}\n"));
        assert_eq!(status(&guard, delivery(SECRET)).await, 202);
    }

    /// While a handshake is storing its secret, another is refused; once it is over (here:
    /// failed), the next one may try.
    #[tokio::test]
    async fn one_handshake_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("asana.secret");
        let source = HandshakeSecret::awaiting("asana", file.clone());
        let guard = guard(source.clone());
        let first = Adopting::start(&source.shared).expect("the first handshake starts");
        assert_eq!(status(&guard, handshake(SECRET)).await, 403, "a second one meanwhile");
        assert!(!file.exists());
        drop(first);
        assert_eq!(status(&guard, handshake(SECRET)).await, 200, "once the first is over");
    }

    /// Where hard links fail (vfat answers EPERM), the secret is renamed into place, whole
    /// and alone; a file that holds a secret is still never replaced.
    #[test]
    fn without_hard_links_the_secret_is_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("asana.secret");
        let refused = |_: &Path, _: &Path| Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(store_with(&file, SECRET, refused).is_ok());
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("{SECRET}\n"));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, ["asana.secret"], "no temporary file left");
        assert!(matches!(store_with(&file, "another-secret-0123456789", refused), Err(Stored::Exists)));
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("{SECRET}\n"), "not replaced");
    }

    /// A file that cannot be written: `503`, and a later handshake may try again.
    #[tokio::test]
    async fn a_write_failure_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("missing-folder").join("asana.secret");
        let guard = guard(HandshakeSecret::awaiting("asana", file.clone()));
        assert_eq!(status(&guard, handshake(SECRET)).await, 503);
        fs::create_dir(dir.path().join("missing-folder")).unwrap();
        assert_eq!(status(&guard, handshake(SECRET)).await, 200);
    }

    /// A secret from the configuration: deliveries verify, a handshake is refused (`403`,
    /// as by any source that keeps no secret).
    #[tokio::test]
    async fn a_configured_secret_refuses_handshakes() {
        let guard = guard(HandshakeSecret::known("asana", asana::scheme(SECRET).unwrap()));
        assert_eq!(status(&guard, delivery(SECRET)).await, 202);
        assert_eq!(status(&guard, handshake("another-secret-0123456789")).await, 403);
    }
}
