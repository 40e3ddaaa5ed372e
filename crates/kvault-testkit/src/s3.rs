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

    /// Creates a bucket with S3 Object Lock enabled (and so versioning), no default
    /// retention rule, that no other test uses; returns its name.
    pub fn fresh_locked_bucket(&self, prefix: &str) -> String {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        let response = self
            .request_with(
                "PUT",
                &format!("/{name}"),
                "x-amz-bucket-object-lock-enabled: true\r\n",
            )
            .unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "create bucket {name}: {response}"
        );
        name
    }

    /// The keys of every object version in `bucket` that is not a delete marker, one entry
    /// per version (S3's ListObjectVersions): what survives deletes on a versioned bucket.
    pub fn versions(&self, bucket: &str) -> Vec<String> {
        let response = self
            .request("GET", &format!("/{bucket}?versions"))
            .unwrap_or_else(|e| panic!("list versions of {bucket}: {e}"));
        response
            .split("<Version>")
            .skip(1)
            .filter_map(|v| v.split("<Key>").nth(1)?.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }

    /// The retention of the current version of `key` in `bucket`, as boto3 (AWS's own client,
    /// beside moto) reads it with a signed HEAD: `Some((mode, retain-until))`, `None` when
    /// the object is not locked.
    pub fn retention_of(&self, bucket: &str, key: &str) -> Option<(String, String)> {
        let out = self.boto3(
            "h = s3.head_object(Bucket=sys.argv[2], Key=sys.argv[3])['ResponseMetadata']['HTTPHeaders']\n\
             print(h.get('x-amz-object-lock-mode', ''), h.get('x-amz-object-lock-retain-until-date', ''))",
            &[bucket, key],
        );
        let (mode, until) = out.trim().split_once(' ')?;
        (!mode.is_empty()).then(|| (mode.to_owned(), until.to_owned()))
    }

    /// Locks the current version of `key` in `bucket` for `days` days (governance mode) with
    /// boto3, as a bucket's default retention or its owner would.
    pub fn lock_for_days(&self, bucket: &str, key: &str, days: u32) {
        self.boto3(
            "import datetime\n\
             until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=int(sys.argv[4]))\n\
             s3.put_object_retention(Bucket=sys.argv[2], Key=sys.argv[3], \
             Retention={'Mode': 'GOVERNANCE', 'RetainUntilDate': until})",
            &[bucket, key, &days.to_string()],
        );
    }

    /// Tries to delete every version of `key` in `bucket` with boto3, as someone holding the
    /// bucket's credentials would, without bypassing governance retention; returns what each
    /// delete answered (`deleted` or the S3 error code).
    pub fn try_erase(&self, bucket: &str, key: &str) -> Vec<String> {
        let out = self.boto3(
            "b, k = sys.argv[2], sys.argv[3]\n\
             for v in s3.list_object_versions(Bucket=b, Prefix=k).get('Versions', []):\n\
             \x20   try:\n\
             \x20       s3.delete_object(Bucket=b, Key=k, VersionId=v['VersionId']); print('deleted')\n\
             \x20   except botocore.exceptions.ClientError as e:\n\
             \x20       print(e.response['Error']['Code'])",
            &[bucket, key],
        );
        out.lines().map(str::to_owned).collect()
    }

    /// Runs `body` in the server's Python with `s3` a boto3 client of this server and
    /// `sys.argv[2..]` the `args`; returns what it printed.
    fn boto3(&self, body: &str, args: &[&str]) -> String {
        let python = find_python().expect("the S3 server's python");
        let script = format!(
            "import sys, boto3, botocore\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='{S3_ACCESS_KEY_ID}', \
             aws_secret_access_key='{S3_SECRET_ACCESS_KEY}', region_name='us-east-1')\n{body}\n"
        );
        let output = std::process::Command::new(python)
            .arg("-c")
            .arg(script)
            .arg(&self.endpoint)
            .args(args)
            .output()
            .expect("run boto3");
        assert!(
            output.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
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
        self.request_with(method, path, "")
    }

    /// One unsigned request with extra header lines (each ending in CRLF).
    pub fn request_with(&self, method: &str, path: &str, headers: &str) -> std::io::Result<String> {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
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
