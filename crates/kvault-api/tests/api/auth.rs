//! Tokens: missing, expired, wrong signature, `alg: none`, another algorithm, wrong role,
//! the `clusters` claim.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kvault_api::auth::Role;
use serde_json::json;

use crate::helpers::{error_body, fresh_database, spawn_app, spawn_app_with, test_settings};
use kvault_api::configuration::Settings;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn missing_and_malformed_tokens_get_401() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/api/kafka/jobs"))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("www-authenticate").is_some());
    let body = error_body(resp, 401).await;
    assert_eq!(body["error"], "Unauthorized");
    assert_eq!(body["details"]["field"], "Authorization");

    let resp = app
        .client
        .get(app.url("/api/kafka/jobs"))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    error_body(resp, 401).await;
    let resp = app
        .client
        .get(app.url("/api/kafka/jobs"))
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    error_body(resp, 401).await;
}

#[tokio::test]
async fn expired_wrong_signature_alg_none_and_other_algorithms_are_refused() {
    let app = spawn_app().await;
    let secret = app
        .settings
        .auth
        .jwt_secret
        .as_ref()
        .unwrap()
        .expose()
        .as_bytes()
        .to_vec();
    let claims = |exp: u64| json!({"sub": "mallory", "exp": exp, "roles": ["admin"]});
    let sign = |alg: Algorithm, key: &[u8], exp: u64| {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims(exp),
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    };
    let good = sign(Algorithm::HS256, &secret, now() + 600);
    let cases = [
        ("expired", sign(Algorithm::HS256, &secret, now() - 120)),
        (
            "wrong secret",
            sign(
                Algorithm::HS256,
                b"some-other-secret-of-decent-length",
                now() + 600,
            ),
        ),
        (
            "HS384 with the right secret",
            sign(Algorithm::HS384, &secret, now() + 600),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(claims(now() + 600).to_string().as_bytes())
            ),
        ),
        (
            "no exp",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &json!({"sub": "mallory", "roles": ["admin"]}),
                &EncodingKey::from_secret(&secret),
            )
            .unwrap(),
        ),
        ("tampered payload", {
            let parts: Vec<&str> = good.split('.').collect();
            let forged = b64(
                json!({"sub": "mallory", "exp": now() + 6000, "roles": ["admin"]})
                    .to_string()
                    .as_bytes(),
            );
            format!("{}.{}.{}", parts[0], forged, parts[2])
        }),
    ];
    for (what, token) in cases {
        let resp = app
            .client
            .get(app.url("/api/kafka/jobs"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let body = error_body(resp, 401).await;
        assert_eq!(body["error"], "Unauthorized", "{what}");
        if what == "expired" {
            assert_eq!(body["message"], "token expired");
        }
    }
    let resp = app
        .client
        .get(app.url("/api/kafka/jobs"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn roles_gate_routes() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 3).await;
    // viewer may read, not back up
    assert_eq!(
        app.get("/api/kafka/metrics", Role::Viewer)
            .await
            .status()
            .as_u16(),
        200
    );
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Viewer,
            &json!({"topic": topic}),
        )
        .await;
    let body = error_body(resp, 403).await;
    assert_eq!(body["error"], "Forbidden");
    assert_eq!(body["details"]["field"], "roles");
    // operator may not restore, migrate or delete; the role check comes before body parsing
    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Operator,
            &json!({"nonsense": 1}),
        )
        .await;
    error_body(resp, 403).await;
    let resp = app
        .post("/api/kafka/migrate", Role::Operator, &json!({}))
        .await;
    error_body(resp, 403).await;
    let resp = app
        .client
        .delete(app.url("/api/kafka/backups/whatever"))
        .bearer_auth(app.token(Role::Operator))
        .send()
        .await
        .unwrap();
    error_body(resp, 403).await;
}

#[tokio::test]
async fn the_clusters_claim_limits_which_clusters_a_token_touches() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 1).await;
    let token = app.token_for("ci", Role::Admin, Some(vec!["elsewhere".into()]));
    let resp = app
        .client
        .post(app.url("/api/kafka/clusters/local/backup"))
        .bearer_auth(&token)
        .json(&json!({"topic": topic}))
        .send()
        .await
        .unwrap();
    let body = error_body(resp, 403).await;
    assert_eq!(body["details"]["field"], "cluster_id");
    assert_eq!(body["details"]["value"], "local");
    let token = app.token_for("ci", Role::Admin, Some(vec!["local".into()]));
    let resp = app
        .client
        .post(app.url("/api/kafka/clusters/local/backup"))
        .bearer_auth(&token)
        .json(&json!({"topic": topic}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
}

/// RS256: the server verifies with the public key, `kvault token` signs with the private key,
/// and an HS256 token signed with the (still configured) shared secret is refused.
#[tokio::test]
async fn rs256_tokens_verify_with_the_public_key_and_hs256_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("jwt-private.pem");
    let public = keys.path().join("jwt-public.pem");
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is needed to generate a test key pair");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&["genrsa", "-out", private.to_str().unwrap(), "2048"]);
    openssl(&[
        "rsa",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);

    let hs_secret = "a-shared-secret-that-must-not-work-now";
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.auth.algorithm = kvault_api::configuration::JwtAlgorithm::Rs256;
        settings.auth.public_key_file = Some(public.clone());
        settings.auth.private_key_file = Some(private.clone());
        settings.auth.jwt_secret = Some(kvault_api::configuration::Secret::new(hs_secret));
    })
    .await;

    let resp = app.get("/api/kafka/jobs", Role::Viewer).await;
    assert_eq!(
        resp.status().as_u16(),
        200,
        "RS256 token minted from the private key"
    );

    let hs_token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "mallory", "exp": now() + 600, "roles": ["admin"]}),
        &EncodingKey::from_secret(hs_secret.as_bytes()),
    )
    .unwrap();
    let resp = app
        .client
        .get(app.url("/api/kafka/jobs"))
        .bearer_auth(hs_token)
        .send()
        .await
        .unwrap();
    error_body(resp, 401).await;
}

/// The Dockerfile listens on 0.0.0.0: with the published dev secret anyone could mint tokens.
#[tokio::test]
async fn a_public_address_with_the_dev_or_a_short_secret_refuses_to_start() {
    use kvault_api::configuration::Secret;
    let cases = [
        (
            Settings::embedded_defaults().unwrap().auth.jwt_secret,
            "development secret",
        ),
        (
            Some(Secret::new("only-twenty-bytes-ok")),
            "shorter than 32 bytes",
        ),
    ];
    for (secret, reason) in cases {
        let (mut settings, _dir) = test_settings(fresh_database().await);
        settings.server.host = "0.0.0.0".into();
        settings.auth.jwt_secret = secret;
        let err = match kvault_api::Application::build(
            settings.clone(),
            crate::helpers::fake_adapters(&settings).0,
        )
        .await
        {
            Err(e) => e.to_string(),
            Ok(_) => panic!("started on 0.0.0.0 with an insecure secret"),
        };
        assert!(err.contains(reason), "{err}");
        assert!(err.contains("KVAULT__AUTH__JWT_SECRET"), "{err}");
    }
    // Loopback keeps the zero-setup start with the dev secret.
    let (mut settings, _dir) = test_settings(fresh_database().await);
    settings.auth.jwt_secret = Settings::embedded_defaults().unwrap().auth.jwt_secret;
    settings.server.host = "127.0.0.1".into();
    assert!(kvault_api::Application::build(
        settings.clone(),
        crate::helpers::fake_adapters(&settings).0
    )
    .await
    .is_ok());
}

/// A token whose `nbf` lies in the future is not valid yet.
#[tokio::test]
async fn a_token_not_valid_before_a_future_instant_is_refused() {
    let app = spawn_app().await;
    let secret = app
        .settings
        .auth
        .jwt_secret
        .as_ref()
        .unwrap()
        .expose()
        .to_owned();
    let sign = |nbf: u64| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "early", "exp": now() + 3600, "nbf": nbf, "roles": ["viewer"]}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let status = |token: String| {
        let request = app
            .client
            .get(app.url("/api/kafka/jobs"))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(sign(now() + 600)).await, 401);
    assert_eq!(status(sign(now() - 60)).await, 200);
}

/// A token scoped to the target cluster may not restore a backup taken from another cluster.
#[tokio::test]
async fn restore_checks_the_backups_source_cluster_against_the_claim() {
    let app = spawn_app_with(|s| {
        let local = s.clusters["local"].clone();
        s.clusters.insert("dst".into(), local);
    })
    .await;
    let topic = app.topic_with(1, 5).await;
    let backup = app.completed_backup(&topic).await;
    let backup_id = backup["backup_id"].as_str().unwrap();
    let restore = |clusters: Vec<String>| {
        let token = app.token_for("scoped", Role::Admin, Some(clusters));
        let request = app
            .client
            .post(app.url("/api/kafka/clusters/dst/restore"))
            .bearer_auth(token)
            .json(&json!({"backup_id": backup_id, "target_topic": format!("{topic}-r")}));
        async move { request.send().await.unwrap() }
    };
    let body = error_body(restore(vec!["dst".into()]).await, 404).await;
    assert_eq!(body["details"]["field"], "backup_id");
    let allowed = restore(vec!["dst".into(), "local".into()]).await;
    assert_eq!(
        allowed.status().as_u16(),
        200,
        "{}",
        allowed.text().await.unwrap()
    );
}

/// Restore and migrate need an admin to start, so an operator may not cancel them either.
#[tokio::test]
async fn an_operator_may_not_cancel_an_admin_only_job() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 20).await;
    let backup = app.completed_backup(&topic).await;
    let resp = app
        .post(
            "/api/kafka/clusters/local/restore?wait=false",
            Role::Admin,
            &json!({"backup_id": backup["backup_id"], "target_topic": format!("{topic}-r"),
                    "rate_limit_per_second": 1}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let job: serde_json::Value = resp.json().await.unwrap();
    let cancel = format!("/api/kafka/jobs/{}/cancel", job["job_id"].as_str().unwrap());
    let body = error_body(app.post(&cancel, Role::Operator, &json!({})).await, 403).await;
    assert!(
        body["message"].as_str().unwrap().contains("admin"),
        "{body}"
    );
    let resp = app.post(&cancel, Role::Admin, &json!({})).await;
    assert_eq!(resp.status().as_u16(), 202);
    let ended = app.wait_for_job(job["job_id"].as_str().unwrap()).await;
    assert_eq!(ended["state"], "cancelled", "{ended}");
}

/// The `clusters` claim filters `GET /jobs` in the query: a scoped token gets a full page of
/// its own jobs, not a page emptied of other clusters' jobs.
#[tokio::test]
async fn a_scoped_token_gets_full_pages_of_its_own_jobs() {
    let app = spawn_app_with(|s| {
        let local = s.clusters["local"].clone();
        s.clusters.insert("other".into(), local);
    })
    .await;
    let topic = app.topic_with(1, 3).await;
    app.completed_backup(&topic).await;
    app.fake().create_topic("other", &topic, 1);
    for _ in 0..3 {
        let resp = app
            .post(
                "/api/kafka/clusters/other/backup",
                Role::Operator,
                &json!({ "topic": topic }),
            )
            .await;
        assert_eq!(resp.status().as_u16(), 200);
    }
    let token = app.token_for("scoped", Role::Viewer, Some(vec!["local".into()]));
    let page: serde_json::Value = app
        .client
        .get(app.url("/api/kafka/jobs?limit=1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jobs = page["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{page}");
    assert_eq!(jobs[0]["cluster_id"], "local");
}

/// A migration touches two clusters: a token scoped to its target sees it (list and get), one
/// scoped to neither does not.
#[tokio::test]
async fn a_migration_is_visible_from_its_target_cluster() {
    let app = spawn_app_with(|s| {
        let local = s.clusters["local"].clone();
        s.clusters.insert("other".into(), local.clone());
        s.clusters.insert("third".into(), local);
    })
    .await;
    let topic = app.topic_with(1, 3).await;
    let resp = app
        .post(
            "/api/kafka/migrate",
            Role::Admin,
            &json!({
                "source_cluster": "local", "source_topic": topic,
                "target_cluster": "other", "target_topic": app.unique_topic("migrated")
            }),
        )
        .await;
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
    let list = |scope: &str| {
        let token = app.token_for("scoped", Role::Viewer, Some(vec![scope.into()]));
        let url = app.url("/api/kafka/jobs?kind=migrate");
        let client = app.client.clone();
        async move {
            let page: serde_json::Value = client
                .get(url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (token, page["jobs"].as_array().unwrap().clone())
        }
    };
    let (token, jobs) = list("other").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["cluster_id"], "local");
    assert_eq!(jobs[0]["target_cluster_id"], "other");
    let job_url = app.url(&format!(
        "/api/kafka/jobs/{}",
        jobs[0]["id"].as_str().unwrap()
    ));
    let one = app
        .client
        .get(&job_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status().as_u16(), 200);
    // `cluster_id=other` finds the migration into `other` too.
    let by_cluster: serde_json::Value = app
        .client
        .get(app.url("/api/kafka/jobs?kind=migrate&cluster_id=other"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_cluster["jobs"].as_array().unwrap().len(), 1);
    let (token, jobs) = list("third").await;
    assert!(jobs.is_empty(), "{jobs:?}");
    let hidden = app
        .client
        .get(&job_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status().as_u16(), 404);
}

#[tokio::test]
async fn with_an_audience_configured_tokens_must_name_it() {
    let app = spawn_app_with(|s| s.auth.audience = Some("kvault-prod".into())).await;
    // `kvault token` (mint_token) puts the configured audience in.
    let ok = app.get("/api/kafka/backups", Role::Viewer).await;
    assert_eq!(ok.status().as_u16(), 200);
    for aud in [None, Some("another-service")] {
        let mut other = app.settings.auth.clone();
        other.audience = aud.map(str::to_owned);
        let token = kvault_api::auth::mint_token(
            &other,
            "someone",
            Role::Admin,
            std::time::Duration::from_secs(60),
            None,
        )
        .unwrap();
        let resp = app
            .client
            .get(app.url("/api/kafka/backups"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        error_body(resp, 401).await;
    }
}

#[tokio::test]
async fn metrics_auth_puts_the_prometheus_endpoint_behind_a_token() {
    let open = spawn_app().await;
    let resp = open.client.get(open.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let closed = spawn_app_with(|s| s.server.metrics_auth = true).await;
    let resp = closed
        .client
        .get(closed.url("/metrics"))
        .send()
        .await
        .unwrap();
    error_body(resp, 401).await;
    let resp = closed.get("/metrics", Role::Viewer).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.text().await.unwrap().contains("kvault_jobs"));
}
