//! zero2prod-style harness: a fresh PostgreSQL database and archive directory per test, the
//! server on a random port, tokens on demand. Cluster `local` is served by the in-memory
//! [`FakeEngine`] ([`spawn_app`], fast, no broker) or by the shared test broker through the
//! real Kafka engine ([`spawn_app_on_broker`], for Kafka behaviour).

use std::sync::Arc;
use std::time::Duration;

use kvault_api::auth::{mint_token, Role};
use kvault_api::configuration::Settings;
use kvault_api::{Adapters, Application};
use kvault_domain::ports::ArchiveStore;
use kvault_domain::{ClusterConfig, ClusterId};
use kvault_testkit::fake::FakeEngine;
use kvault_testkit::{TestBroker, TestRecord};
use serde_json::{json, Value};
use sqlx::Connection;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestApp {
    pub address: String,
    #[allow(dead_code)]
    pub port: u16,
    pub settings: Settings,
    pub client: reqwest::Client,
    pub kafka: Kafka,
    pub app_state: actix_web::web::Data<kvault_api::AppState>,
    pub _archive_dir: tempfile::TempDir,
}

/// What serves the app's clusters.
pub enum Kafka {
    Fake(FakeEngine),
    Broker(&'static TestBroker),
}

/// A database no other test uses.
pub async fn fresh_database() -> String {
    let name = format!("kvault_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(PG_ADMIN_URL)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (user postgres) is needed for these tests");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .expect("create test database");
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// Settings for a test: its own database and archive directory, the test secret, one cluster
/// `local` (its address is filled in when the app runs on the broker).
pub fn test_settings(database_url: String) -> (Settings, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::embedded_defaults().unwrap();
    settings.server.port = 0;
    settings.database.url = kvault_api::configuration::Secret::new(database_url);
    settings.database.max_connections = 5;
    // Schedule tests run every second or two; the floor has a test of its own.
    settings.schedules.min_interval_secs = 1;
    settings.backup.base_path = dir.path().join("backups");
    settings.auth.jwt_secret = Some(kvault_api::configuration::Secret::new(
        "a-test-secret-that-is-long-enough-0123456789",
    ));
    settings.clusters.clear();
    settings.clusters.insert(
        "local".into(),
        ClusterConfig {
            bootstrap_servers: "in-memory:9092".into(),
            properties: Default::default(),
        },
    );
    (settings, dir)
}

fn archive_store(settings: &Settings) -> Arc<dyn ArchiveStore> {
    Arc::new(kvault_storage::Store::local(&settings.backup.base_path).unwrap())
}

/// The in-memory engine over every configured cluster, and the adapters that use it.
pub fn fake_adapters(settings: &Settings) -> (Adapters, FakeEngine) {
    let archives = archive_store(settings);
    let ids: Vec<&str> = settings.clusters.keys().map(String::as_str).collect();
    let fake = FakeEngine::new(&ids, archives.clone());
    let adapters = Adapters {
        engine: Arc::new(fake.clone()),
        archives,
        filters: Arc::new(kvault_kafka::transform::CelFilters),
        lag: Arc::new(fake.clone()),
    };
    (adapters, fake)
}

/// The real Kafka engine, every configured cluster pointed at the shared test broker.
async fn broker_adapters(
    settings: &mut Settings,
    archives: Arc<dyn ArchiveStore>,
) -> (Adapters, &'static TestBroker) {
    let broker = TestBroker::get().await;
    for config in settings.clusters.values_mut() {
        config.bootstrap_servers = broker.bootstrap().to_owned();
    }
    let clusters = settings
        .clusters
        .iter()
        .map(|(id, c)| (ClusterId::parse(id).unwrap(), c.clone()));
    let engine = Arc::new(kvault_kafka::KafkaEngine::new(clusters, archives.clone()).unwrap());
    let adapters = Adapters {
        engine: engine.clone(),
        archives,
        filters: Arc::new(kvault_kafka::transform::CelFilters),
        lag: engine,
    };
    (adapters, broker)
}

/// The app on the in-memory engine.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let (mut settings, dir) = test_settings(fresh_database().await);
    tweak(&mut settings);
    spawn_with_settings(settings, dir).await
}

/// The app on the test broker, for tests of Kafka behaviour.
pub async fn spawn_app_on_broker() -> TestApp {
    spawn_app_on_broker_with(|_| {}).await
}

pub async fn spawn_app_on_broker_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let (mut settings, dir) = test_settings(fresh_database().await);
    tweak(&mut settings);
    let archives = archive_store(&settings);
    let (adapters, broker) = broker_adapters(&mut settings, archives).await;
    start(settings, dir, adapters, Kafka::Broker(broker)).await
}

/// A bucket of the shared test S3 server, and raw access to what is in it.
pub struct TestBucket {
    raw: object_store::aws::AmazonS3,
}

impl TestBucket {
    /// Every object in the bucket.
    pub async fn objects(&self) -> Vec<String> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        self.raw
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap()
    }
}

/// The app on the test broker with its archives in a fresh bucket of the test S3 server.
pub async fn spawn_app_on_broker_with_s3() -> (TestApp, TestBucket) {
    let bucket = kvault_testkit::s3::TestS3::shared().fresh_bucket("api");
    let (app, raw, _) = spawn_app_on_broker_with_bucket(&bucket, None).await;
    (app, raw)
}

/// The app on the test broker with its archives in a fresh bucket with S3 Object Lock, every
/// archive locked for `retain`; also a store of its own over the same bucket.
pub async fn spawn_app_on_broker_with_locked_s3(
    retain: std::time::Duration,
) -> (TestApp, TestBucket, Arc<dyn ArchiveStore>) {
    use kvault_storage::backend::object::{LockMode, ObjectLock};
    let bucket = kvault_testkit::s3::TestS3::shared().fresh_locked_bucket("api-lock");
    let lock = ObjectLock {
        mode: LockMode::Governance,
        retain,
    };
    spawn_app_on_broker_with_bucket(&bucket, Some(lock)).await
}

async fn spawn_app_on_broker_with_bucket(
    bucket: &str,
    object_lock: Option<kvault_storage::backend::object::ObjectLock>,
) -> (TestApp, TestBucket, Arc<dyn ArchiveStore>) {
    use kvault_storage::backend::object::{ObjectBackend, ObjectConfig};
    use kvault_testkit::s3::{TestS3, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY};
    let s3 = TestS3::shared();
    let config = ObjectConfig {
        url: format!("s3://{bucket}/api"),
        endpoint: Some(s3.endpoint().to_owned()),
        region: Some("us-east-1".into()),
        allow_http: true,
        access_key_id: Some(S3_ACCESS_KEY_ID.into()),
        secret_access_key: Some(S3_SECRET_ACCESS_KEY.into()),
        object_lock,
        ..ObjectConfig::default()
    };
    let store = || -> Arc<dyn ArchiveStore> {
        let backend = ObjectBackend::connect(&config).unwrap();
        Arc::new(kvault_storage::Store::on(Arc::new(backend), Default::default()).unwrap())
    };
    let archives = store();
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(s3.endpoint())
        .with_region("us-east-1")
        .with_allow_http(true)
        .with_access_key_id(S3_ACCESS_KEY_ID)
        .with_secret_access_key(S3_SECRET_ACCESS_KEY)
        .build()
        .unwrap();
    let (mut settings, dir) = test_settings(fresh_database().await);
    // No local archive directory is used: the test checks none appears.
    settings.backup.base_path = dir.path().join("unused");
    let (adapters, broker) = broker_adapters(&mut settings, archives).await;
    let app = start(settings, dir, adapters, Kafka::Broker(broker)).await;
    assert!(!app._archive_dir.path().join("unused").exists());
    (app, TestBucket { raw }, store())
}

/// The app on the in-memory engine with exactly these settings.
pub async fn spawn_with_settings(settings: Settings, dir: tempfile::TempDir) -> TestApp {
    let (adapters, fake) = fake_adapters(&settings);
    start(settings, dir, adapters, Kafka::Fake(fake)).await
}

async fn start(
    settings: Settings,
    dir: tempfile::TempDir,
    adapters: Adapters,
    kafka: Kafka,
) -> TestApp {
    let app = Application::build(settings.clone(), adapters)
        .await
        .expect("application builds");
    let port = app.port();
    let app_state = app.state();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        settings,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
        kafka,
        app_state,
        _archive_dir: dir,
    }
}

/// Another replica of `app` (an app from [`spawn_app`]): its own server and lease owner on the
/// same database, archive directory and in-memory cluster.
#[allow(dead_code)]
pub async fn spawn_replica_of(app: &TestApp) -> TestApp {
    let fake = app.fake().clone();
    let adapters = Adapters {
        engine: Arc::new(fake.clone()),
        archives: archive_store(&app.settings),
        filters: Arc::new(kvault_kafka::transform::CelFilters),
        lag: Arc::new(fake.clone()),
    };
    let dir = tempfile::tempdir().unwrap();
    start(app.settings.clone(), dir, adapters, Kafka::Fake(fake)).await
}

impl TestApp {
    /// The test broker; only for apps from [`spawn_app_on_broker`].
    pub fn broker(&self) -> &'static TestBroker {
        match self.kafka {
            Kafka::Broker(broker) => broker,
            Kafka::Fake(_) => panic!("this test needs spawn_app_on_broker()"),
        }
    }

    /// The in-memory engine; only for apps from [`spawn_app`].
    #[allow(dead_code)]
    pub fn fake(&self) -> &FakeEngine {
        match &self.kafka {
            Kafka::Fake(fake) => fake,
            Kafka::Broker(_) => panic!("this test needs spawn_app()"),
        }
    }

    /// A topic name no other test uses.
    pub fn unique_topic(&self, prefix: &str) -> String {
        format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
    }

    pub fn token(&self, role: Role) -> String {
        self.token_for(
            &format!("tester-{}", uuid::Uuid::new_v4().simple()),
            role,
            None,
        )
    }

    pub fn token_for(&self, sub: &str, role: Role, clusters: Option<Vec<String>>) -> String {
        mint_token(
            &self.settings.auth,
            sub,
            role,
            Duration::from_secs(600),
            clusters,
        )
        .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str, role: Role) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(self.token(role))
            .send()
            .await
            .unwrap()
    }

    /// GET as `role`, parsed as JSON (the status is the caller's to check when it matters).
    pub async fn get_json(&self, path: &str, role: Role) -> Value {
        self.get(path, role).await.json().await.unwrap()
    }

    /// A synchronous backup of `topic` on cluster `local` that must complete; its body.
    pub async fn completed_backup(&self, topic: &str) -> Value {
        let resp = self
            .post(
                "/api/kafka/clusters/local/backup",
                Role::Operator,
                &json!({ "topic": topic }),
            )
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, role: Role, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(self.token(role))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A topic with `n` small records over `partitions` partitions.
    pub async fn topic_with(&self, partitions: i32, n: usize) -> String {
        let topic = self.unique_topic("api");
        let broker = match &self.kafka {
            Kafka::Broker(broker) => broker,
            Kafka::Fake(fake) => {
                fake.create_topic("local", &topic, partitions);
                let values: Vec<Vec<u8>> = (0..n)
                    .map(|i| format!("value-{i}").repeat(4).into_bytes())
                    .collect();
                let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("k{i}").into_bytes()).collect();
                let records: Vec<kvault_testkit::fake::KeyValue<'_>> = (0..n)
                    .map(|i| (Some(&keys[i][..]), Some(&values[i][..])))
                    .collect();
                fake.produce("local", &topic, &records);
                return topic;
            }
        };
        broker.create_topic(&topic, partitions).await;
        let records: Vec<TestRecord> = (0..n)
            .map(|i| TestRecord {
                partition: Some(i as i32 % partitions),
                key: if i % 5 == 0 {
                    None
                } else {
                    Some(format!("k{i}").into_bytes())
                },
                value: if i % 7 == 3 {
                    None
                } else {
                    Some(format!("value-{i}").repeat(4).into_bytes())
                },
                headers: vec![("h".into(), Some(vec![i as u8]))],
                timestamp: None,
            })
            .collect();
        if n > 0 {
            broker.produce(&topic, &records).await;
        }
        topic
    }

    /// Polls a job until it leaves `running`.
    pub async fn wait_for_job(&self, id: &str) -> Value {
        for _ in 0..600 {
            let job: Value = self
                .get(&format!("/api/kafka/jobs/{id}"), Role::Viewer)
                .await
                .json()
                .await
                .unwrap();
            if job["state"] != "running" {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {id} still running after 60 s");
    }
}

/// Asserts the documented error shape and returns it.
pub async fn error_body(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status, "unexpected status");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.unwrap();
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct}: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(body["error"].is_string(), "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(body["details"].is_object(), "{body}");
    assert!(body["details"].get("field").is_some(), "{body}");
    assert!(body["details"].get("value").is_some(), "{body}");
    body
}
