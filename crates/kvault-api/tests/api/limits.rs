//! The documented limits: 100 requests per minute per subject, 10 concurrent backups per
//! cluster; and cancelling jobs.

use std::time::Duration;

use kvault_api::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{error_body, spawn_app};

#[tokio::test]
async fn the_101st_request_in_a_minute_gets_429() {
    let app = spawn_app().await;
    let token = app.token_for("busy-bee", Role::Viewer, None);
    let started = std::time::Instant::now();
    let requests = (0..100).map(|_| {
        app.client
            .get(app.url("/api/kafka/jobs?limit=1"))
            .bearer_auth(&token)
            .send()
    });
    let responses = futures::future::join_all(requests).await;
    for r in responses {
        assert_eq!(r.unwrap().status().as_u16(), 200);
    }
    // The quota refills one request every 0.6 s, so on a slow machine a few more may pass;
    // never more than the time elapsed allows, and the next ones are refused.
    let mut extra_allowed = 0u32;
    let resp = loop {
        let resp = app
            .client
            .get(app.url("/api/kafka/jobs?limit=1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() != 200 {
            break resp;
        }
        extra_allowed += 1;
        let earned = (started.elapsed().as_secs_f64() / 0.6).ceil() as u32;
        assert!(
            extra_allowed <= earned,
            "{extra_allowed} requests past the 100th passed, only {earned} earned"
        );
    };
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let body = error_body(resp, 429).await;
    assert_eq!(body["error"], "TooManyRequests");
    // Another subject is unaffected.
    let resp = app.get("/api/kafka/jobs?limit=1", Role::Viewer).await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn the_11th_concurrent_backup_gets_429_and_jobs_can_be_cancelled() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 50).await;
    // 1 message per second: each backup runs for most of a minute unless cancelled.
    let slow = json!({"topic": topic, "rate_limit_per_second": 1});
    let mut jobs = Vec::new();
    for _ in 0..10 {
        let resp = app
            .post(
                "/api/kafka/clusters/local/backup?wait=false",
                Role::Operator,
                &slow,
            )
            .await;
        assert_eq!(resp.status().as_u16(), 202);
        let accepted: Value = resp.json().await.unwrap();
        jobs.push(accepted["job_id"].as_str().unwrap().to_owned());
    }
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup?wait=false",
            Role::Operator,
            &slow,
        )
        .await;
    assert!(resp.headers().get("retry-after").is_some());
    let body = error_body(resp, 429).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("10 concurrent backup"),
        "{body}"
    );

    let metrics: Value = app.get_json("/api/kafka/metrics", Role::Viewer).await;
    assert_eq!(metrics["active_backups"], 10);
    let running: Value = app
        .get_json("/api/kafka/jobs?kind=backup&state=running", Role::Viewer)
        .await;
    assert_eq!(running["jobs"].as_array().unwrap().len(), 10);

    for id in &jobs {
        let resp = app
            .post(
                &format!("/api/kafka/jobs/{id}/cancel"),
                Role::Operator,
                &json!({}),
            )
            .await;
        assert_eq!(resp.status().as_u16(), 202);
    }
    for id in &jobs {
        let job = app.wait_for_job(id).await;
        assert_eq!(job["state"], "cancelled", "{job}");
    }
    // Cancelling an ended job is a conflict; the permits are back.
    let body = error_body(
        app.post(
            &format!("/api/kafka/jobs/{}/cancel", jobs[0]),
            Role::Operator,
            &json!({}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(body["details"]["field"], "job_id");
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.completed_backup(&topic).await;
    let list: Value = app.get_json("/api/kafka/backups", Role::Viewer).await;
    assert_eq!(
        list["backups"].as_array().unwrap().len(),
        1,
        "cancelled backups left archives"
    );
}
