//! The `kvault` binary against production-style clusters, configured with the example files
//! the README shows (`config/examples/kafka-*.yaml`): SCRAM-SHA-512 over TLS with the
//! password from the environment, for the CLI and for `kvault serve`; mutual-TLS settings with
//! a key passphrase file; PLAIN over TLS. Each refusal (wrong password, unknown CA, hostname
//! mismatch, expired certificate) is checked for its error kind, exit code or error body,
//! time bound, and for the secret being absent from stdout, stderr and the server log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kvault_testkit::secure::{SecureBroker, ServerCert, SASL_PASSWORD};
use kvault_testkit::{TestBroker, TestRecord};
use serde_json::{json, Value};

const BOUND: Duration = Duration::from_secs(10);
const WRONG_PASSWORD: &str = "wrong-pw-Qv55-never-printed";
const PASSWORD_ENV: &str = "KVAULT__CLUSTERS__PROD__PROPERTIES__SASL_PASSWORD";
const EXAMPLE_BOOTSTRAP: &str = "kafka-1.example.com:9093,kafka-2.example.com:9093";

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../config/examples/{name}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A directory with a config made of an example (its placeholders replaced) plus a private
/// backup directory, job database and port.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
}

impl Setup {
    fn new(example_name: &str, replace: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut text = example(example_name);
        for (from, to) in replace {
            assert!(text.contains(from), "{example_name} has no {from}");
            text = text.replace(from, to);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        text.push_str(&format!(
            "server:\n  port: {port}\nbackup:\n  base_path: \"{}\"\ndatabase:\n  url: \
             \"sqlite://{}?mode=rwc\"\n",
            dir.path().join("backups").display(),
            dir.path().join("kvault.db").display()
        ));
        let config = dir.path().join("kvault.yaml");
        std::fs::write(&config, text).unwrap();
        Self { dir, config, port }
    }

    /// The SCRAM example pointed at `broker`, trusting `ca`.
    fn scram(broker: &SecureBroker, ca: &Path) -> Self {
        Self::new(
            "kafka-scram-tls.yaml",
            &[
                (EXAMPLE_BOOTSTRAP, broker.bootstrap().to_owned()),
                ("sasl.username: kvault", "sasl.username: kvault-svc".into()),
                ("/etc/kvault/kafka-ca.pem", ca.display().to_string()),
            ],
        )
    }

    fn command(&self, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvault"));
        cmd.current_dir(self.dir.path())
            .arg("--config")
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env_remove(PASSWORD_ENV)
            .envs(env.iter().copied());
        cmd
    }

    fn kvault(&self, env: &[(&str, &str)], args: &[&str]) -> (Output, Duration) {
        let started = Instant::now();
        let out = self.command(env).args(args).output().expect("run kvault");
        (out, started.elapsed())
    }
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "kvault failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// A refusal: the exit code, within the bound, the cause named on stderr, no secret shown.
fn assert_refused(out: &Output, took: Duration, code: i32, cause: &str) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(took < BOUND, "took {took:?}: {stderr}");
    assert!(stderr.contains(cause), "no '{cause}' in: {stderr}");
    for secret in [SASL_PASSWORD, WRONG_PASSWORD] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "leaked: {stderr}"
        );
    }
}

fn records() -> Vec<TestRecord> {
    (0..40)
        .map(|i| TestRecord {
            partition: Some(i % 2),
            key: (i % 4 != 0).then(|| format!("k{i}").into_bytes()),
            value: (i % 9 != 0).then(|| vec![0xff, 0, i as u8]),
            headers: vec![("h".into(), None)],
            timestamp: Some(1_760_000_000_000 + i64::from(i)),
        })
        .collect()
}

async fn seeded_topic(broker: &TestBroker, prefix: &str) -> String {
    let topic = broker.unique_topic(prefix);
    broker.create_topic(&topic, 2).await;
    broker.produce(&topic, &records()).await;
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_backup_and_restore_with_the_password_from_the_environment() {
    let secure = SecureBroker::shared_sasl_ssl().await;
    let topic = seeded_topic(secure.broker(), "cli-sasl").await;
    let setup = Setup::scram(secure, &secure.pki().ca());
    let env = [(PASSWORD_ENV, SASL_PASSWORD)];
    let (out, _) = setup.kvault(&env, &["backup", "--cluster", "prod", "--topic", &topic]);
    let backup = json_of(&out);
    assert_eq!(backup["total_messages"], 40);
    let target = secure.broker().unique_topic("cli-sasl-copy");
    let id = backup["backup_id"].as_str().unwrap();
    let (out, _) = setup.kvault(
        &env,
        &["restore", "--backup-id", id, "--target-topic", &target],
    );
    assert_eq!(json_of(&out)["messages_restored"], 40);
    let strip = |r: Vec<kvault_testkit::ConsumedRecord>| {
        r.into_iter()
            .map(|r| {
                (
                    r.partition,
                    r.offset,
                    r.key,
                    r.value,
                    r.headers,
                    r.timestamp,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(secure.broker().consume_all(&target).await),
        strip(secure.broker().consume_all(&topic).await)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_refusals_have_their_exit_codes_and_name_the_cause() {
    let secure = SecureBroker::shared_sasl_ssl().await;
    let setup = Setup::scram(secure, &secure.pki().ca());
    let args = ["backup", "--cluster", "prod", "--topic", "t"];
    let (out, took) = setup.kvault(&[(PASSWORD_ENV, WRONG_PASSWORD)], &args);
    assert_refused(&out, took, 9, "authentication failed");

    let wrong_ca = Setup::scram(secure, &secure.pki().other_ca());
    let (out, took) = wrong_ca.kvault(&[(PASSWORD_ENV, SASL_PASSWORD)], &args);
    assert_refused(&out, took, 10, "unknown CA");

    for (cert, cause) in [
        (ServerCert::WrongHost, "hostname mismatch"),
        (ServerCert::Expired, "expired"),
    ] {
        let broker = SecureBroker::tls(cert).await;
        let ca = format!("ssl.ca.location={}", broker.pki().ca().display());
        let (out, took) = setup.kvault(
            &[],
            &[
                "topics",
                "-b",
                broker.bootstrap(),
                "-X",
                "security.protocol=SSL",
                "-X",
                &ca,
            ],
        );
        assert_refused(&out, took, 10, cause);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_examples_connect_or_fail_as_documented() {
    // Mutual TLS settings: nisshi does not ask for client certificates, so this proves the
    // settings load (the key passphrase from its file) and the TLS session works.
    let tls = SecureBroker::tls(ServerCert::Valid).await;
    let (client_cert, client_key) = tls.pki().client();
    // The key encrypted with a passphrase, which kvault reads from its file: librdkafka loads
    // the key when kvault creates its clients, so a passphrase not read would fail here.
    let passphrase = tls.pki().dir().join("key-password");
    std::fs::write(&passphrase, "key-Pass-6t2-never-printed\n").unwrap();
    let encrypted_key = tls.pki().dir().join("client-encrypted.key");
    let status = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in"])
        .arg(&client_key)
        .arg("-out")
        .arg(&encrypted_key)
        .arg("-passout")
        .arg(format!("file:{}", passphrase.display()))
        .status()
        .expect("run openssl (the openssl command line tool encrypts the test key)");
    assert!(status.success());
    let client_key = encrypted_key;
    let mtls = Setup::new(
        "kafka-mtls.yaml",
        &[
            (EXAMPLE_BOOTSTRAP, tls.bootstrap().to_owned()),
            (
                "/etc/kvault/kafka-ca.pem",
                tls.pki().ca().display().to_string(),
            ),
            (
                "/etc/kvault/kvault-client.pem",
                client_cert.display().to_string(),
            ),
            (
                "/etc/kvault/kvault-client.key",
                client_key.display().to_string(),
            ),
            (
                "/run/secrets/kafka-key-password",
                passphrase.display().to_string(),
            ),
        ],
    );
    let (out, _) = mtls.kvault(&[], &["topics", "--cluster", "prod"]);
    assert_eq!(json_of(&out)["cluster_id"], "prod");
    // A wrong passphrase: the key cannot be loaded, a TLS error naming the setting.
    std::fs::write(&passphrase, format!("{WRONG_PASSWORD}\n")).unwrap();
    let (out, took) = mtls.kvault(&[], &["topics", "--cluster", "prod"]);
    assert_refused(&out, took, 10, "ssl.key.location");

    // PLAIN over TLS: the test broker enables SCRAM only, so PLAIN is refused, as an
    // authentication error, at once.
    let secure = SecureBroker::shared_sasl_ssl().await;
    let secret = secure.pki().dir().join("confluent-secret");
    std::fs::write(&secret, format!("{WRONG_PASSWORD}\n")).unwrap();
    let plain = Setup::new(
        "kafka-plain-tls.yaml",
        &[
            (
                "pkc-12345.europe-west1.gcp.confluent.cloud:9092",
                secure.bootstrap().to_owned(),
            ),
            (
                "/run/secrets/confluent-api-secret",
                secret.display().to_string(),
            ),
        ],
    );
    let ca = format!("ssl.ca.location={}", secure.pki().ca().display());
    let (out, took) = plain.kvault(&[], &["topics", "--cluster", "cloud", "-X", &ca]);
    assert_refused(&out, took, 9, "authentication failed");
}

#[test]
fn the_readme_shows_the_example_configs_as_they_are() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    for name in [
        "kafka-scram-tls.yaml",
        "kafka-mtls.yaml",
        "kafka-plain-tls.yaml",
    ] {
        assert!(
            readme.contains(&example(name)),
            "README.md does not show config/examples/{name} verbatim"
        );
    }
}

/// `kvault serve` on the SCRAM example: cluster `prod` with the password from the
/// environment, and cluster `stale` (the same broker) whose password is wrong.
struct Served {
    setup: Setup,
    server: Child,
    http: reqwest::Client,
    token: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// `KVAULT__CLUSTERS__{ID}__...` variables defining a whole cluster, dots as underscores.
fn cluster_env(id: &str, bootstrap: &str, props: Vec<(String, String)>) -> Vec<(String, String)> {
    let id = id.to_ascii_uppercase();
    let mut env = vec![(
        format!("KVAULT__CLUSTERS__{id}__BOOTSTRAP_SERVERS"),
        bootstrap.to_owned(),
    )];
    for (key, value) in props {
        let key = key.replace('.', "_").to_ascii_uppercase();
        env.push((format!("KVAULT__CLUSTERS__{id}__PROPERTIES__{key}"), value));
    }
    env
}

impl Served {
    /// Also defines, through the environment, cluster `stale` (the SASL broker, a wrong
    /// password), `badca` (the SASL broker, trusting another CA) and one TLS-only cluster per
    /// `(id, broker)` of `tls`.
    async fn start(secure: &SecureBroker, tls: &[(&str, &SecureBroker)]) -> Self {
        let setup = Setup::scram(secure, &secure.pki().ca());
        let mut env: Vec<(String, String)> = vec![(PASSWORD_ENV.into(), SASL_PASSWORD.into())];
        for (id, password, ca) in [
            ("STALE", WRONG_PASSWORD, secure.pki().ca()),
            ("BADCA", SASL_PASSWORD, secure.pki().other_ca()),
        ] {
            let mut props = secure.properties(password);
            props.retain(|(k, _)| k != "ssl.ca.location");
            props.push(("ssl.ca.location".into(), ca.display().to_string()));
            env.extend(cluster_env(id, secure.bootstrap(), props));
        }
        for (id, broker) in tls {
            env.extend(cluster_env(id, broker.bootstrap(), broker.properties("")));
        }
        // The plain test broker, for migrations between the two kinds of cluster.
        let plain = TestBroker::get().await;
        env.extend(cluster_env("PLAIN", plain.bootstrap(), Vec::new()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let log = std::fs::File::create(setup.dir.path().join("serve.log")).unwrap();
        let server = setup
            .command(&env)
            .arg("serve")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let (out, _) = setup.kvault(&[], &["token", "--sub", "secure", "--role", "admin"]);
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let served = Self {
            setup,
            server,
            http,
            token,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !served
            .http
            .get(served.url("/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                Instant::now() < deadline,
                "serve did not start: {}",
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        served
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.setup.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.setup.dir.path().join("serve.log")).unwrap_or_default()
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, Duration) {
        let started = Instant::now();
        let url = self.url(&format!("/api/kafka{path}"));
        let request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        }
        .bearer_auth(&self.token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value, started.elapsed())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_the_secret_from_the_environment() {
    let secure = SecureBroker::shared_sasl_ssl().await;
    let broker = secure.broker();
    let topic = seeded_topic(broker, "serve-sasl").await;
    let group = broker.unique_topic("serve-group");
    broker
        .commit_group(&group, &topic, &[(0, 5), (1, 20)])
        .await;
    let served = Served::start(secure, &[]).await;

    let body = json!({"topic": topic});
    let (status, backup, _) = served
        .call("POST", "/clusters/prod/backup", Some(body))
        .await;
    assert_eq!(status, 200, "{backup}");
    assert_eq!(backup["total_messages"], 40, "{backup}");
    let id = backup["backup_id"].as_str().unwrap().to_owned();

    let target = broker.unique_topic("serve-copy");
    let body = json!({"backup_id": id, "target_topic": target, "preserve_offsets": true,
                      "restore_consumer_groups": true});
    let (status, restored, _) = served
        .call("POST", "/clusters/prod/restore", Some(body))
        .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["messages_restored"], 40, "{restored}");
    assert_eq!(
        broker.group_offsets(&group, &target, 2).await,
        vec![Some(5), Some(20)]
    );
    let page_path = format!("/backups/{id}/records?partition=1&limit=5");
    let (status, page, _) = served.call("GET", &page_path, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["records"].as_array().map(Vec::len), Some(5), "{page}");

    // Out to the plain cluster and back in, then drain the group on the SASL_SSL one.
    let plain = TestBroker::get().await;
    let out = plain.unique_topic("serve-out");
    let back = broker.unique_topic("serve-back");
    for (source, from, target, to) in [
        ("prod", &topic, "plain", &out),
        ("plain", &out, "prod", &back),
    ] {
        let body = json!({"source_cluster": source, "source_topic": from,
                          "target_cluster": target, "target_topic": to});
        let (status, migrated, _) = served.call("POST", "/migrate", Some(body)).await;
        assert_eq!(status, 200, "{migrated}");
        assert_eq!(migrated["messages_written"], 40, "{migrated}");
    }
    assert_eq!(broker.consume_all(&back).await.len(), 40);
    let drained_group = broker.unique_topic("serve-drained");
    broker
        .commit_group(&drained_group, &back, &[(0, 20), (1, 20)])
        .await;
    let body = json!({"group_id": drained_group, "topics": [back], "timeout_seconds": 10,
                      "check_interval_ms": 100});
    let (status, drained, _) = served
        .call("POST", "/clusters/prod/drain", Some(body))
        .await;
    assert_eq!(status, 200, "{drained}");
    assert_eq!(drained["status"], "drained", "{drained}");
    assert!(!served.log().contains(SASL_PASSWORD), "{}", served.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_names_each_refusal_in_the_error_body_at_once() {
    let secure = SecureBroker::shared_sasl_ssl().await;
    let (wrong_host, expired) = (
        SecureBroker::tls(ServerCert::WrongHost).await,
        SecureBroker::tls(ServerCert::Expired).await,
    );
    let served = Served::start(secure, &[("wronghost", &wrong_host), ("expired", &expired)]).await;
    let mut bodies = String::new();
    for (cluster, error, cause) in [
        (
            "stale",
            "KafkaAuthenticationFailed",
            "authentication failed",
        ),
        ("badca", "KafkaTlsFailed", "unknown CA"),
        ("wronghost", "KafkaTlsFailed", "hostname mismatch"),
        ("expired", "KafkaTlsFailed", "expired"),
    ] {
        let path = format!("/clusters/{cluster}/backup");
        let (status, body, took) = served
            .call("POST", &path, Some(json!({"topic": "t"})))
            .await;
        assert_eq!((status, &body["error"]), (502, &json!(error)), "{body}");
        assert!(body["details"].is_object(), "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(cause), "{cluster}: {body}");
        assert!(took < BOUND, "{cluster} took {took:?}");
        bodies.push_str(&body.to_string());
    }
    let shown = format!("{bodies} {}", served.log());
    for secret in [SASL_PASSWORD, WRONG_PASSWORD] {
        assert!(!shown.contains(secret), "the secret leaked: {shown}");
    }
}
