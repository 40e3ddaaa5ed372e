//! What the tests of several real `kvault serve` processes share: a fresh PostgreSQL database,
//! a fresh bucket of the test S3 server and the test broker behind one set of settings, and
//! replicas started, killed (SIGKILL) and restarted on loopback ports.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kvault_testkit::s3::{TestS3, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY};
use kvault_testkit::TestBroker;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

pub const SECRET: &str = "replica-test-secret-0123456789abcdef";
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const LEASE_TTL_SECS: u64 = 3;
/// The key prefix the replicas keep their archives under (`s3://{bucket}/{PREFIX}`).
pub const PREFIX: &str = "shared";

/// What the replicas of one test share.
pub struct Cluster {
    pub database: String,
    pub env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub token: String,
    pub bucket: String,
    pub s3_endpoint: String,
}

/// One `kvault serve` process.
pub struct Replica {
    pub name: String,
    pub port: u16,
    pub child: Child,
}

impl Replica {
    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A database no other test uses.
pub async fn fresh_database() -> String {
    let name = format!("kvault_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(PG_ADMIN).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

impl Cluster {
    pub async fn new(broker: &TestBroker, max_backups: usize) -> Self {
        let limit = max_backups.to_string();
        Self::with_settings(broker, &[("KVAULT__BACKUP__MAX_CONCURRENT_BACKUPS", limit)]).await
    }

    /// Replicas configured like [`Self::new`]'s, with `extra` settings on top.
    pub async fn with_settings(broker: &TestBroker, extra: &[(&str, String)]) -> Self {
        let database = fresh_database().await;
        let s3 = TestS3::shared();
        let bucket = s3.fresh_bucket("replicas");
        let mut env: Vec<(String, String)> = [
            ("KVAULT__DATABASE__URL", database.clone()),
            ("KVAULT__AUTH__JWT_SECRET", SECRET.into()),
            (
                "KVAULT__CLUSTERS__LOCAL__BOOTSTRAP_SERVERS",
                broker.bootstrap().into(),
            ),
            ("KVAULT__STORAGE__URL", format!("s3://{bucket}/{PREFIX}")),
            ("KVAULT__STORAGE__S3__ENDPOINT", s3.endpoint().into()),
            ("KVAULT__STORAGE__S3__REGION", "us-east-1".into()),
            ("KVAULT__STORAGE__S3__ALLOW_HTTP", "true".into()),
            (
                "KVAULT__STORAGE__S3__ACCESS_KEY_ID",
                S3_ACCESS_KEY_ID.into(),
            ),
            (
                "KVAULT__STORAGE__S3__SECRET_ACCESS_KEY",
                S3_SECRET_ACCESS_KEY.into(),
            ),
            (
                "KVAULT__WORKERS__LEASE_TTL_SECS",
                LEASE_TTL_SECS.to_string(),
            ),
            ("KVAULT__WORKERS__HEARTBEAT_SECS", "1".into()),
            ("KVAULT__WORKERS__SHUTDOWN_GRACE_SECS", "2".into()),
            ("KVAULT__LIMITS__REQUESTS_PER_MINUTE", "10000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push(((*key).to_owned(), value.clone()));
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kvault"))
            .current_dir(dir.path())
            .envs(env.iter().cloned())
            .args(["token", "--sub", "replica-tests", "--role", "admin"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Cluster {
            database,
            env,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            token,
            bucket,
            s3_endpoint: s3.endpoint().to_owned(),
        }
    }

    /// Starts replica `name` and waits for `/health`; a restarted replica appends to the log
    /// of its earlier lives.
    pub async fn start(&self, name: &str) -> Replica {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kvault"))
            .current_dir(self.dir.path())
            .envs(self.env.iter().cloned())
            .env("KVAULT__SERVER__PORT", port.to_string())
            .env("KVAULT__WORKERS__REPLICA_ID", name)
            .env("RUST_LOG", "info")
            .arg("serve")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let replica = Replica {
            name: name.to_owned(),
            port,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = self
                .http
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return replica;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not start: {}",
                self.log(name)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    pub fn url(&self, replica: &Replica, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", replica.port)
    }

    pub async fn post(&self, replica: &Replica, path: &str, body: Value) -> reqwest::Response {
        self.try_post(replica, path, body).await.unwrap()
    }

    /// A POST that may fail to connect (the replica may be gone).
    pub async fn try_post(
        &self,
        replica: &Replica,
        path: &str,
        body: Value,
    ) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(self.url(replica, path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
    }

    pub async fn get(&self, replica: &Replica, path: &str) -> Value {
        self.try_get(replica, path).await.unwrap()
    }

    /// A GET parsed as JSON that may fail (the replica may be gone).
    pub async fn try_get(&self, replica: &Replica, path: &str) -> reqwest::Result<Value> {
        self.http
            .get(self.url(replica, path))
            .bearer_auth(&self.token)
            .send()
            .await?
            .json()
            .await
    }

    pub async fn try_delete(
        &self,
        replica: &Replica,
        path: &str,
    ) -> reqwest::Result<reqwest::Response> {
        self.http
            .delete(self.url(replica, path))
            .bearer_auth(&self.token)
            .send()
            .await
    }

    /// Polls job `id` through `replica` until it leaves `running` or `within` passes.
    pub async fn wait_for_end(&self, replica: &Replica, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let job = self.get(replica, &format!("/api/kafka/jobs/{id}")).await;
            if job["state"] != "running" || Instant::now() >= deadline {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn db(&self) -> PgConnection {
        PgConnection::connect(&self.database).await.unwrap()
    }

    pub async fn job_row(&self, id: &str) -> (String, Option<String>, i64) {
        sqlx::query_as("SELECT state, owner, attempts FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&mut self.db().await)
            .await
            .unwrap()
    }
}
