//! Starting the test broker: the cluster named by `KVAULT_TEST_BOOTSTRAP`, or a nisshi
//! process on a free loopback port under a watchdog, and waiting until it answers.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{TestBroker, BOOTSTRAP_ENV, INSTALL_HINT, NISSHI_BIN_ENV, STARTUP_TIMEOUT};

pub(crate) fn start_shared() -> Result<TestBroker, String> {
    match std::env::var(BOOTSTRAP_ENV) {
        Ok(bootstrap) if !bootstrap.trim().is_empty() => {
            let bootstrap = bootstrap.trim().to_owned();
            wait_until_ready(&bootstrap, None).map_err(|e| {
                format!("{BOOTSTRAP_ENV}={bootstrap} does not answer metadata requests: {e}")
            })?;
            Ok(TestBroker {
                admin: admin_client(&bootstrap)?,
                bootstrap,
                settings: Vec::new(),
                process: None,
            })
        }
        _ => start_nisshi(),
    }
}

pub(crate) fn start_nisshi() -> Result<TestBroker, String> {
    let binary = find_nisshi().ok_or_else(|| format!("nisshi not found; {INSTALL_HINT}"))?;
    // A free port can be taken between probing and binding; a second attempt covers that.
    let mut last_error = String::new();
    for _ in 0..3 {
        match BrokerProcess::spawn(&binary, MEMORY_STORAGE, &[]) {
            Ok(process) => {
                let bootstrap = process.bootstrap.clone();
                match wait_until_ready(&bootstrap, Some(&process)) {
                    Ok(()) => {
                        return Ok(TestBroker {
                            admin: admin_client(&bootstrap)?,
                            bootstrap,
                            settings: Vec::new(),
                            process: Some(process),
                        })
                    }
                    Err(e) => last_error = e,
                }
            }
            Err(e) => last_error = e,
        }
    }
    Err(format!(
        "could not start {}: {last_error}; {INSTALL_HINT}",
        binary.display()
    ))
}

/// The in-memory storage engine the shared and `start_new` brokers run on.
pub(crate) const MEMORY_STORAGE: &str = "memory://nisshi/";

pub(crate) fn find_nisshi() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(NISSHI_BIN_ENV) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cached = Path::new(&home).join(".cache/kvault/nisshi/bin/nisshi");
        if cached.is_file() {
            return Some(cached);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nisshi"))
            .find(|p| p.is_file())
    })
}

pub(crate) fn admin_client(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>, String> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("create admin client: {e}"))
}

/// Polls metadata until the broker answers; fails early when the broker process died.
pub(crate) fn wait_until_ready(
    bootstrap: &str,
    process: Option<&BrokerProcess>,
) -> Result<(), String> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    wait_until_answering(&config, process)
}

/// [`wait_until_ready`] for a client configured by `config` (TLS, SASL).
pub(crate) fn wait_until_answering(
    config: &ClientConfig,
    process: Option<&BrokerProcess>,
) -> Result<(), String> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("create metadata client: {e}"))?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(process) = process {
            process.check_alive()?;
        }
        match consumer.fetch_metadata(None, Duration::from_millis(500)) {
            Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
            Ok(_) => {}
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "no metadata answer within {STARTUP_TIMEOUT:?}: {e}"
                ))
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(format!("no broker in metadata within {STARTUP_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A nisshi broker under a `sh` watchdog.
pub(crate) struct BrokerProcess {
    pub(crate) bootstrap: String,
    watchdog: Mutex<Child>,
    log: PathBuf,
}

impl BrokerProcess {
    /// A broker on a free loopback port over `storage`, with `extra` arguments
    /// (`--authentication`, `--cert`, ...).
    pub(crate) fn spawn(binary: &Path, storage: &str, extra: &[String]) -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let bootstrap = format!("127.0.0.1:{port}");
        let log =
            std::env::temp_dir().join(format!("kvault-nisshi-{}-{port}.log", std::process::id()));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("open {}: {e}", log.display()))?;
        // The broker runs in the background of a shell that polls the test process: when the
        // test process is gone (finished, panicked, killed), the shell kills the broker. A TERM
        // to the shell (our Drop) does the same at once.
        let script = r#"
"$NISSHI" broker --listener-url "tcp://$ADDR" --advertised-listener-url "tcp://$ADDR" \
    --storage-engine "$STORAGE" --group-initial-rebalance-delay 0s "$@" &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker; exit 0' TERM INT
while kill -0 "$OWNER" 2>/dev/null && kill -0 "$broker" 2>/dev/null; do sleep 0.5; done
kill $broker 2>/dev/null
wait $broker
"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(extra)
            .env("NISSHI", binary)
            .env("STORAGE", storage)
            .env("ADDR", &bootstrap)
            .env("OWNER", std::process::id().to_string())
            .env(
                "RUST_LOG",
                std::env::var("NISSHI_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("spawn sh for {}: {e}", binary.display()))?;
        Ok(Self {
            bootstrap,
            watchdog: Mutex::new(child),
            log,
        })
    }

    pub(crate) fn check_alive(&self) -> Result<(), String> {
        let mut child = self
            .watchdog
            .lock()
            .map_err(|_| "broker handle poisoned".to_owned())?;
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "broker exited ({status}); log {}:\n{}",
                self.log.display(),
                tail(&self.log)
            )),
            Err(e) => Err(format!("broker status: {e}")),
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Ok(mut child) = self.watchdog.lock() {
            // TERM lets the watchdog's trap stop the broker; `Child::kill` would SIGKILL the
            // shell and leave the broker to the (slower) owner check.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}
