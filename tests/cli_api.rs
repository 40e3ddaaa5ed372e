//! The CLI and the API answer alike: `kvault list/show/backup/restore/verify` print the bodies
//! of the routes for the same operation, and `kvault jobs` follows a real `kvault serve`'s
//! jobs. Both run on one config (one backup directory, one broker).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kvault_testkit::{TestBroker, TestRecord};
use serde_json::{json, Value};

/// A config naming the test broker as cluster `test`, a backup directory and a job database,
/// and a `kvault serve` on it.
struct Served {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    token: String,
    server: Child,
    http: reqwest::Client,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Served {
    async fn start(broker: &TestBroker) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("kvault.yaml");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            &config,
            format!(
                "server:\n  port: {port}\nbackup:\n  base_path: \"{}\"\nclusters:\n  test:\n    \
                 bootstrap_servers: \"{}\"\ndatabase:\n  url: \"sqlite://{}?mode=rwc\"\n\
                 workers:\n  heartbeat_secs: 1\n",
                dir.path().join("backups").display(),
                broker.bootstrap(),
                dir.path().join("kvault.db").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let server = Command::new(env!("CARGO_BIN_EXE_kvault"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut served = Self {
            dir,
            config,
            port,
            token: String::new(),
            server,
            http,
        };
        let token = served.kvault(&["token", "--sub", "cli-api", "--role", "admin"]);
        served.token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !served.up().await {
            assert!(
                Instant::now() < deadline,
                "serve did not start: {}",
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        served
    }

    async fn up(&self) -> bool {
        self.http
            .get(self.url("/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn kvault(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kvault"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("KVAULT_SERVER")
            .env_remove("KVAULT_TOKEN")
            .output()
            .expect("run kvault")
    }

    /// `kvault jobs ...` against this server, the token from the environment.
    fn jobs(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kvault"))
            .arg("jobs")
            .args(args)
            .env_remove("RUST_LOG")
            .env("KVAULT_SERVER", self.url(""))
            .env("KVAULT_TOKEN", &self.token)
            .output()
            .expect("run kvault jobs")
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "kvault failed ({:?}): {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn records(n: usize) -> Vec<TestRecord> {
    (0..n)
        .map(|i| TestRecord {
            partition: Some((i % 2) as i32),
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(format!("value-{i}").into_bytes()),
            headers: vec![],
            timestamp: Some(1_700_000_000_000 + i as i64),
        })
        .collect()
}

/// The body with what differs between two runs of one operation blanked: ids, topic names
/// and timings. Every field must be present in both, with the same type.
fn comparable(body: &Value) -> Value {
    match body {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let varies = k.ends_with("_at")
                        || k.contains("duration")
                        || k.contains("per_second")
                        || k.contains("throughput")
                        || k == "backup_id"
                        || k == "target_topic";
                    let v = if varies {
                        json!(type_name(v))
                    } else {
                        comparable(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(comparable).collect()),
        other => other.clone(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_prints_the_routes_bodies_field_for_field() {
    let broker = TestBroker::get().await;
    let topic = broker.unique_topic("cli-api");
    broker.create_topic(&topic, 2).await;
    broker.produce(&topic, &records(300)).await;
    let served = Served::start(broker).await;

    let by_cli = json(&served.kvault(&[
        "backup",
        "--cluster",
        "test",
        "--topic",
        &topic,
        "--backup-id",
        "by-cli",
    ]));
    let by_api = served
        .post(
            "/api/kafka/clusters/test/backup",
            &json!({"topic": topic, "backup_id": "by-api"}),
        )
        .await;
    assert_eq!(comparable(&by_cli), comparable(&by_api));

    let listed = json(&served.kvault(&["list"]));
    assert_eq!(listed, served.get("/api/kafka/backups").await);
    assert_eq!(listed["backups"].as_array().unwrap().len(), 2);
    assert!(
        listed["backups"][0]["partition_count"].is_number(),
        "{listed}"
    );
    let filtered = json(&served.kvault(&["list", "--topic", &topic, "--cluster", "test"]));
    let query = format!("/api/kafka/backups?topic={topic}&cluster_id=test");
    assert_eq!(filtered, served.get(&query).await);

    let shown = json(&served.kvault(&["show", "--backup-id", "by-cli"]));
    assert_eq!(shown, served.get("/api/kafka/backups/by-cli").await);

    let verified = json(&served.kvault(&["verify", "--backup-id", "by-cli"]));
    let api_verified = served
        .post("/api/kafka/backups/by-cli/verify", &json!({}))
        .await;
    assert_eq!(verified, api_verified);
    assert_eq!(verified["messages_checked"], 300);

    let cli_target = broker.unique_topic("cli-api-cli");
    let restored_by_cli = json(&served.kvault(&[
        "restore",
        "--backup-id",
        "by-cli",
        "--target-topic",
        &cli_target,
    ]));
    let restored_by_api = served
        .post(
            "/api/kafka/clusters/test/restore",
            &json!({"backup_id": "by-cli", "target_topic": broker.unique_topic("cli-api-api")}),
        )
        .await;
    assert_eq!(comparable(&restored_by_cli), comparable(&restored_by_api));
    assert_eq!(restored_by_cli["messages_restored"], 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_list_show_watch_and_cancel_against_a_running_server() {
    let broker = TestBroker::get().await;
    let topic = broker.unique_topic("cli-jobs");
    broker.create_topic(&topic, 2).await;
    broker.produce(&topic, &records(800)).await;
    let served = Served::start(broker).await;

    // A backup slow enough to be watched while it runs: 800 records at 150/s.
    let accepted = served
        .post(
            "/api/kafka/clusters/test/backup?wait=false",
            &json!({"topic": topic, "rate_limit_per_second": 150}),
        )
        .await;
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();

    let listed = json(&served.jobs(&["list", "--state", "running"]));
    assert!(
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == job_id.as_str()),
        "{listed}"
    );
    let shown = json(&served.jobs(&["show", "--job-id", &job_id]));
    assert_eq!(shown["kind"], "backup");

    let watched = served.jobs(&["watch", "--job-id", &job_id, "--interval-ms", "200"]);
    let finished = json(&watched);
    assert_eq!(finished["state"], "completed", "{finished}");
    assert_eq!(finished["progress"]["total_messages"], 800, "{finished}");
    assert_eq!(finished["progress"]["percent"], 100.0, "{finished}");
    let stderr = String::from_utf8_lossy(&watched.stderr);
    assert!(
        stderr.contains(&format!("job {job_id} backup: ")),
        "{stderr}"
    );
    assert!(
        stderr.contains(" of 800 messages ("),
        "total and percent: {stderr}"
    );
    assert_eq!(
        finished,
        served.get(&format!("/api/kafka/jobs/{job_id}")).await
    );

    // Cancel a running job: watch then exits non-zero, saying how it ended.
    let accepted = served
        .post(
            "/api/kafka/clusters/test/backup?wait=false",
            &json!({"topic": topic, "rate_limit_per_second": 10}),
        )
        .await;
    let slow = accepted["job_id"].as_str().unwrap().to_owned();
    let cancelled = json(&served.jobs(&["cancel", "--job-id", &slow]));
    assert_eq!(cancelled["id"], slow.as_str());
    let watched = served.jobs(&["watch", "--job-id", &slow, "-q"]);
    assert_eq!(watched.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&watched.stderr);
    assert!(stderr.contains("cancelled"), "{stderr}");
    // Cancelling what has ended is a conflict (exit 4); no token is a usage error (exit 2).
    assert_eq!(
        served.jobs(&["cancel", "--job-id", &slow]).status.code(),
        Some(4)
    );
    let no_token = Command::new(env!("CARGO_BIN_EXE_kvault"))
        .args(["jobs", "list", "--server", &served.url("")])
        .env_remove("KVAULT_TOKEN")
        .output()
        .unwrap();
    assert_eq!(no_token.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("--token"));
}
