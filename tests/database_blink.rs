//! A PostgreSQL restart while a job runs: a private PostgreSQL instance (initdb + pg_ctl on a
//! free port, so no other test loses its database) is stopped and started again under a
//! running `kvault serve`; the job's end is recorded once the database is back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kvault_testkit::{TestBroker, TestRecord};
use serde_json::{json, Value};

const SECRET: &str = "blink-test-secret-0123456789abcdef";

/// A PostgreSQL server of this test's own.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("initdb under /usr/lib/postgresql/*/bin")
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (the server refuses root).
fn as_postgres(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    };
    cmd.args(args).stdin(Stdio::null()).output().unwrap()
}

impl PrivatePostgres {
    fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new()
            .prefix("kvault-pg-")
            .tempdir()
            .unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let data = dir.path().join("data");
        let out = as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Self {
            bin,
            data,
            port,
            _dir: dir,
        };
        pg.up();
        pg
    }

    fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.data.display()
        );
        let log = self.data.join("log.txt");
        let out = as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn down(&self) {
        let out = as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_ending_during_a_database_restart_is_recorded_once_it_is_back() {
    let broker = TestBroker::get().await;
    let pg = PrivatePostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = [
        ("KVAULT__DATABASE__URL", pg.url()),
        ("KVAULT__AUTH__JWT_SECRET", SECRET.to_owned()),
        (
            "KVAULT__CLUSTERS__LOCAL__BOOTSTRAP_SERVERS",
            broker.bootstrap().to_owned(),
        ),
        ("KVAULT__SERVER__PORT", port.to_string()),
        ("KVAULT__WORKERS__LEASE_TTL_SECS", "4".into()),
        ("KVAULT__WORKERS__HEARTBEAT_SECS", "1".into()),
    ];
    let token = Command::new(env!("CARGO_BIN_EXE_kvault"))
        .current_dir(dir.path())
        .envs(env.iter().cloned())
        .args(["token", "--sub", "blink", "--role", "admin"])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_kvault"))
            .current_dir(dir.path())
            .envs(env.iter().cloned())
            .arg("serve")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let n = 600;
    let topic = broker.unique_topic("blink");
    broker.create_topic(&topic, 2).await;
    let records: Vec<TestRecord> = (0..n)
        .map(|i| TestRecord {
            partition: Some(i % 2),
            key: Some(format!("k{i}").into_bytes()),
            value: Some(vec![1; 10]),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect();
    broker.produce(&topic, &records).await;
    // About 3 seconds of work, ending while the database is down.
    let accepted: Value = http
        .post(format!("{base}/api/kafka/clusters/local/backup?wait=false"))
        .bearer_auth(&token)
        .json(&json!({"topic": topic, "rate_limit_per_second": 200}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["job_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.down();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.up();

    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let resp = http
            .get(format!("{base}/api/kafka/jobs/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if resp.status().is_success() {
            let job: Value = resp.json().await.unwrap();
            if job["state"] != "running" {
                break job;
            }
        }
        assert!(
            Instant::now() < deadline,
            "job still running a minute after the database came back:\n{}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["result"]["total_messages"], n as u64, "{job}");
}
