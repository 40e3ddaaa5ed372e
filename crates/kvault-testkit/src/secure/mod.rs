//! Brokers that speak TLS, and brokers that also require SASL/SCRAM, for the tests of
//! production-style clusters. Each has its own certificates made at test time ([`TestPki`]).
//!
//! - [`SecureBroker::tls`]: a TLS-only listener (in-memory storage) with a valid, expired or
//!   wrong-host certificate.
//! - [`SecureBroker::sasl_ssl`]: a listener requiring SCRAM-SHA-512 over TLS. nisshi keeps
//!   SCRAM users only in a storage engine that can hold them, so this broker runs on a fresh
//!   PostgreSQL database (`127.0.0.1:5432`, user `postgres`). Users are created through a
//!   plain broker on the same database first (`nisshi user create`: on an authenticating
//!   broker that request would itself need a user), which is then stopped.
//!
//! nisshi's TLS listener does not ask for client certificates, so mutual TLS cannot be tested
//! against it; PLAIN is not enabled either (it offers SCRAM-SHA-256 and SCRAM-SHA-512 only).

mod certs;

use std::process::Command;

use rdkafka::config::ClientConfig;
use tokio::sync::OnceCell;

pub use certs::{ServerCert, TestPki};

use crate::process::{
    find_nisshi, wait_until_answering, wait_until_ready, BrokerProcess, MEMORY_STORAGE,
};
use crate::{TestBroker, INSTALL_HINT};

/// The SCRAM user every SASL broker has, and its password (a value no output may show).
pub const SASL_USER: &str = "kvault-svc";
pub const SASL_PASSWORD: &str = "pw-7Hq2-never-printed";
/// Where the tests' PostgreSQL listens (trust auth); nisshi's databases are made there.
pub const PG_HOST: &str = "127.0.0.1";

static SHARED_SASL: OnceCell<SecureBroker> = OnceCell::const_new();

/// A broker with a TLS listener, optionally requiring SCRAM-SHA-512.
pub struct SecureBroker {
    broker: TestBroker,
    pki: TestPki,
    sasl: bool,
}

impl SecureBroker {
    /// A TLS-only broker whose certificate is of kind `cert`. The independent client of the
    /// tests ([`Self::broker`]) skips certificate checks for the broken kinds.
    pub async fn tls(cert: ServerCert) -> SecureBroker {
        run(move || Self::start(cert, false)).await
    }

    /// A broker requiring SCRAM-SHA-512 over TLS (user [`SASL_USER`]), started for the caller.
    pub async fn sasl_ssl() -> SecureBroker {
        run(move || Self::start(ServerCert::Valid, true)).await
    }

    /// One SASL_SSL broker shared by every test of this test binary.
    pub async fn shared_sasl_ssl() -> &'static SecureBroker {
        SHARED_SASL.get_or_init(Self::sasl_ssl).await
    }

    /// The broker as the tests' independent client reaches it (with the right credentials).
    pub fn broker(&self) -> &TestBroker {
        &self.broker
    }

    pub fn bootstrap(&self) -> &str {
        self.broker.bootstrap()
    }

    /// The certificates: `ca()` signed the broker's, `other_ca()` did not.
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// The librdkafka properties of a kvault cluster definition for this broker, with
    /// `password` for the SASL user (ignored by a TLS-only broker).
    pub fn properties(&self, password: &str) -> Vec<(String, String)> {
        let ca = self.pki.ca().to_string_lossy().into_owned();
        let mut props = vec![("ssl.ca.location".to_owned(), ca)];
        if self.sasl {
            props.extend([
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
                ("sasl.mechanism".to_owned(), "SCRAM-SHA-512".to_owned()),
                ("sasl.username".to_owned(), SASL_USER.to_owned()),
                ("sasl.password".to_owned(), password.to_owned()),
            ]);
        } else {
            props.push(("security.protocol".to_owned(), "SSL".to_owned()));
        }
        props
    }

    fn start(cert: ServerCert, sasl: bool) -> Result<SecureBroker, String> {
        let binary = find_nisshi().ok_or_else(|| format!("nisshi not found; {INSTALL_HINT}"))?;
        let pki = TestPki::new(cert)?;
        let (server_cert, server_key) = pki.server();
        let mut args = vec![
            "--cert".to_owned(),
            server_cert.to_string_lossy().into_owned(),
            "--key".to_owned(),
            server_key.to_string_lossy().into_owned(),
        ];
        let storage = if sasl {
            let storage = fresh_database()?;
            create_user(&binary, &storage)?;
            args.push("--authentication".to_owned());
            storage
        } else {
            MEMORY_STORAGE.to_owned()
        };
        let process = BrokerProcess::spawn(&binary, &storage, &args)?;
        let mut settings = vec![
            ("security.protocol".to_owned(), "SSL".to_owned()),
            (
                "ssl.ca.location".to_owned(),
                pki.ca().to_string_lossy().into_owned(),
            ),
        ];
        if cert != ServerCert::Valid {
            settings.push((
                "enable.ssl.certificate.verification".to_owned(),
                "false".to_owned(),
            ));
        }
        if sasl {
            settings[0].1 = "SASL_SSL".to_owned();
            settings.extend(
                [
                    ("sasl.mechanism", "SCRAM-SHA-512"),
                    ("sasl.username", SASL_USER),
                    ("sasl.password", SASL_PASSWORD),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
        }
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &process.bootstrap);
        for (key, value) in &settings {
            config.set(key, value);
        }
        wait_until_answering(&config, Some(&process))?;
        let admin = config
            .create()
            .map_err(|e| format!("create admin client: {e}"))?;
        Ok(SecureBroker {
            broker: TestBroker {
                bootstrap: process.bootstrap.clone(),
                settings,
                admin,
                process: Some(process),
            },
            pki,
            sasl,
        })
    }
}

async fn run(
    start: impl FnOnce() -> Result<SecureBroker, String> + Send + 'static,
) -> SecureBroker {
    match tokio::task::spawn_blocking(start).await {
        Ok(Ok(broker)) => broker,
        Ok(Err(message)) => panic!("could not start a TLS broker: {message}"),
        Err(e) => panic!("broker start-up thread failed: {e}"),
    }
}

/// A PostgreSQL database of its own for one broker's storage (named like the other tests'
/// databases, so the test script's cleanup removes it).
fn fresh_database() -> Result<String, String> {
    let name = format!("kvault_test_nisshi_{}", uuid::Uuid::new_v4().simple());
    let out = Command::new("psql")
        .args(["-h", PG_HOST, "-U", "postgres", "-d", "postgres", "-v"])
        .arg("ON_ERROR_STOP=1")
        .arg("-c")
        .arg(format!("CREATE DATABASE \"{name}\""))
        .output()
        .map_err(|e| format!("run psql (PostgreSQL on {PG_HOST}:5432 is needed): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "create database {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The local server's certificate names `localhost`, not the address: the broker's
    // connection to it stays on the loopback without TLS.
    Ok(format!(
        "postgres://postgres@{PG_HOST}:5432/{name}?sslmode=disable"
    ))
}

/// Creates [`SASL_USER`] in `storage` through a plain broker on it, then stops that broker.
fn create_user(binary: &std::path::Path, storage: &str) -> Result<(), String> {
    let plain = BrokerProcess::spawn(binary, storage, &[])?;
    wait_until_ready(&plain.bootstrap, Some(&plain))?;
    let out = Command::new(binary)
        .args(["user", "create", "--mechanism", "scram512", "--broker"])
        .arg(format!("tcp://{}", plain.bootstrap))
        .args([SASL_USER, SASL_PASSWORD])
        .output()
        .map_err(|e| format!("run nisshi user create: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nisshi user create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}
