//! A real S3-compatible server for tests: moto in server mode (from PyPI, installed by
//! `scripts/install-s3.sh`), started on a free loopback port under the same kind of watchdog
//! as the broker, with a fresh bucket per test.
//!
//! moto keeps objects in memory and does not check signatures, so any credentials work.
//! `scripts/s3-server.py` serializes its requests so that conditional PUTs are decided
//! atomically, as S3 decides them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::watchdog::{spawn_watched, stop};

/// The environment variable naming the Python that has moto installed.
pub const S3_PYTHON_ENV: &str = "KVAULT_S3_PYTHON";
/// How to get the server, printed whenever it cannot be found or started.
pub const S3_INSTALL_HINT: &str =
    "install the test S3 server with: bash scripts/install-s3.sh (moto[server] from PyPI into \
     $HOME/.cache/kvault/s3/venv), or set KVAULT_S3_PYTHON to a python with moto[server]";

/// Credentials the tests use (moto accepts any).
pub const S3_ACCESS_KEY_ID: &str = "kvault-test";
pub const S3_SECRET_ACCESS_KEY: &str = "kvault-test-secret";

/// A running S3-compatible server.
pub struct TestS3 {
    endpoint: String,
    watchdog: Mutex<Child>,
    log: PathBuf,
}

impl std::fmt::Debug for TestS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestS3")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

static SHARED: OnceLock<Result<TestS3, String>> = OnceLock::new();
static BUCKETS: AtomicU32 = AtomicU32::new(0);

impl TestS3 {
    /// The server shared by every test of this test binary, started on first use. Panics
    /// with installation instructions when it cannot be started.
    pub fn shared() -> &'static TestS3 {
        match SHARED.get_or_init(Self::spawn) {
            Ok(server) => server,
            Err(message) => panic!("no S3 server for tests: {message}"),
        }
    }

    /// A server of its own (a test that stops it). Stopped when dropped.
    pub fn start_new() -> TestS3 {
        Self::spawn().unwrap_or_else(|message| panic!("no S3 server for tests: {message}"))
    }

    /// `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Creates a bucket no other test uses and returns its name.
    pub fn fresh_bucket(&self, prefix: &str) -> String {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        let response = self
            .request("PUT", &format!("/{name}"))
            .unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "create bucket {name}: {response}"
        );
        name
    }

    /// How many multipart uploads are open in `bucket` (S3's ListMultipartUploads, which
    /// `object_store` does not offer).
    pub fn open_uploads(&self, bucket: &str) -> usize {
        let response = self
            .request("GET", &format!("/{bucket}?uploads"))
            .unwrap_or_else(|e| panic!("list uploads of {bucket}: {e}"));
        response.matches("<UploadId>").count()
    }

    /// The requests the server has answered for `bucket` so far, in order, as `METHOD
    /// /path?query` (from its request log). Lets a test or a benchmark count what a call cost.
    pub fn requests_to(&self, bucket: &str) -> Vec<String> {
        // A request is logged just after its response is sent: wait for the log to settle.
        let mut last = String::new();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(50));
            let now = std::fs::read_to_string(&self.log).unwrap_or_default();
            if now.len() == last.len() {
                break;
            }
            last = now;
        }
        let prefix = format!("/{bucket}");
        last.lines()
            .filter_map(|line| line.split('"').nth(1))
            .filter_map(|request| request.rsplit_once(" HTTP/").map(|(r, _)| r))
            .filter(|request| {
                request.split_once(' ').is_some_and(|(_, path)| {
                    path.strip_prefix(&prefix)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
                })
            })
            .map(str::to_owned)
            .collect()
    }

    /// Kills the server (SIGKILL): requests fail from now on.
    pub fn kill(&self) {
        if let Ok(mut child) = self.watchdog.lock() {
            stop(&mut child);
        }
    }

    fn spawn() -> Result<TestS3, String> {
        let python = find_python().ok_or_else(|| format!("moto not found; {S3_INSTALL_HINT}"))?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3-server.py");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let script = script.display().to_string();
        let (child, log) = spawn_watched("s3", port, &python, &[script, port.to_string()])?;
        let server = TestS3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            watchdog: Mutex::new(child),
            log,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self.request("GET", "/") {
                if response.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
            if let Ok(mut child) = self.watchdog.lock() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "S3 server exited ({status}); log {}:\n{}",
                        self.log.display(),
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    ));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "S3 server did not answer within 30 s; log {}",
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One unsigned request; returns the whole response.
    fn request(&self, method: &str, path: &str) -> std::io::Result<String> {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_python() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(S3_PYTHON_ENV) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let root = std::env::var_os("KVAULT_S3_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/kvault/s3")))?;
    let python = root.join("venv/bin/python");
    python.is_file().then_some(python)
}
