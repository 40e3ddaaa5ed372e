//! A real Azure Blob Storage emulator for tests: Azurite (from the npm registry, installed by
//! `scripts/install-azurite.sh`), in memory on a free loopback port under the same watchdog as
//! the S3 server, with a fresh container per test.
//!
//! Azurite checks shared-key signatures like Azure does, so creating a container (which
//! `object_store` does not offer) is one request signed here with the emulator's well-known
//! account key.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::watchdog::{spawn_watched, stop};

/// The emulator's account and its published key (the same in every Azurite).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// How to get the emulator, printed whenever it cannot be found or started.
pub const AZURITE_INSTALL_HINT: &str =
    "install the Azure Blob emulator with: bash scripts/install-azurite.sh (azurite from npm into \
     $HOME/.cache/kvault/azurite), or set KVAULT_AZURITE_BIN to an azurite-blob executable";

/// A running Azurite blob service.
pub struct TestAzurite {
    port: u16,
    watchdog: Mutex<Child>,
    log: PathBuf,
}

static SHARED: OnceLock<Result<TestAzurite, String>> = OnceLock::new();
static CONTAINERS: AtomicU32 = AtomicU32::new(0);

impl TestAzurite {
    /// The emulator shared by every test of this test binary, started on first use. Panics
    /// with installation instructions when it cannot be started.
    pub fn shared() -> &'static TestAzurite {
        match SHARED.get_or_init(Self::spawn) {
            Ok(server) => server,
            Err(message) => panic!("no Azure Blob emulator for tests: {message}"),
        }
    }

    /// The account's blob endpoint, path style: `http://127.0.0.1:port/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// Creates a container no other test uses and returns its name (lowercase, as Azure
    /// requires).
    pub fn fresh_container(&self, prefix: &str) -> String {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            CONTAINERS.fetch_add(1, Ordering::Relaxed)
        )
        .to_lowercase();
        let response = self
            .signed_put(&format!("/{AZURITE_ACCOUNT}/{name}"), "restype:container")
            .unwrap_or_else(|e| panic!("create container {name}: {e}"));
        assert!(
            response.starts_with("HTTP/1.1 201"),
            "create container {name}: {response}"
        );
        name
    }

    /// Kills the emulator: requests fail from now on.
    pub fn kill(&self) {
        if let Ok(mut child) = self.watchdog.lock() {
            stop(&mut child);
        }
    }

    fn spawn() -> Result<TestAzurite, String> {
        let program =
            find_azurite().ok_or_else(|| format!("azurite not found; {AZURITE_INSTALL_HINT}"))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let args = [
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ]
        .map(str::to_owned);
        let (child, log) = spawn_watched("azurite", port, &program, &args)?;
        let server = TestAzurite {
            port,
            watchdog: Mutex::new(child),
            log,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self
                .watchdog
                .lock()
                .ok()
                .and_then(|mut child| child.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                return Err(format!(
                    "Azurite did not start; log {}:\n{}",
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// A PUT of no body to `path?query` (query as `name:value`), signed with the account key
    /// (Azure's shared-key scheme); returns the whole response.
    fn signed_put(&self, path: &str, query: &str) -> std::io::Result<String> {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-12-02";
        let resource = format!("/{AZURITE_ACCOUNT}{path}\n{query}");
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
        );
        let signature = sign(&to_sign);
        let addr = format!("127.0.0.1:{}", self.port);
        let mut stream = TcpStream::connect(&addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let url_query = query.replacen(':', "=", 1);
        write!(
            stream,
            "PUT {path}?{url_query} HTTP/1.1\r\nHost: {addr}\r\nx-ms-date: {date}\r\n\
             x-ms-version: {version}\r\nAuthorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    }
}

impl Drop for TestAzurite {
    fn drop(&mut self) {
        self.kill();
    }
}

fn sign(text: &str) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(AZURITE_KEY)
        .expect("the emulator key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(text.as_bytes());
    engine.encode(mac.finalize().into_bytes())
}

fn find_azurite() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KVAULT_AZURITE_BIN") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let home = std::env::var_os("HOME")?;
    let bin = Path::new(&home).join(".cache/kvault/azurite/node_modules/.bin/azurite-blob");
    bin.is_file().then_some(bin)
}
