//! zero2prod-style harness: a fresh PostgreSQL database and archive directory per test, the
//! shared test broker as cluster `local`, the server on a random port, tokens on demand.

use std::time::Duration;

use kvault_api::auth::{mint_token, Role};
use kvault_api::configuration::Settings;
use kvault_api::Application;
use kvault_kafka::ClusterConfig;
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
    pub broker: &'static TestBroker,
    pub app_state: actix_web::web::Data<kvault_api::startup::AppState>,
    pub _archive_dir: tempfile::TempDir,
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

pub async fn test_settings(database_url: String) -> (Settings, tempfile::TempDir) {
    let broker = TestBroker::get().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::embedded_defaults().unwrap();
    settings.server.port = 0;
    settings.database.url = kvault_api::configuration::Secret::new(database_url);
    settings.database.max_connections = 5;
    settings.backup.base_path = dir.path().join("backups");
    settings.auth.jwt_secret = Some(kvault_api::configuration::Secret::new(
        "a-test-secret-that-is-long-enough-0123456789",
    ));
    settings.clusters.clear();
    settings.clusters.insert(
        "local".into(),
        ClusterConfig {
            bootstrap_servers: broker.bootstrap().to_owned(),
            properties: Default::default(),
        },
    );
    (settings, dir)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let (mut settings, dir) = test_settings(fresh_database().await).await;
    tweak(&mut settings);
    spawn_with_settings(settings, dir).await
}

pub async fn spawn_with_settings(settings: Settings, dir: tempfile::TempDir) -> TestApp {
    let app = Application::build(settings.clone())
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
        broker: TestBroker::get().await,
        app_state,
        _archive_dir: dir,
    }
}

impl TestApp {
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
        let topic = self.broker.unique_topic("api");
        self.broker.create_topic(&topic, partitions).await;
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
            self.broker.produce(&topic, &records).await;
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
