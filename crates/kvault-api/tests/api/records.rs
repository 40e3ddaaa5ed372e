//! `GET /api/kafka/backups/{id}/records`: paging, filters, encodings and refusals, over a
//! backup written straight into the app's archive store.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::Utc;
use kvault_api::auth::Role;
use kvault_domain::ports::ArchiveSpec;
use kvault_domain::{
    BackupId, Compression, CompressionType, Header, Record, TimestampType, TopicMetadata,
};
use serde_json::Value;

use std::time::Duration;

use kvault_api::auth::mint_token_with_data;

use crate::helpers::{error_body, spawn_app, spawn_app_with, TestApp};

/// A viewer token with the data permission.
fn data_token(app: &TestApp, sub: &str, clusters: Option<Vec<String>>) -> String {
    let ttl = Duration::from_secs(600);
    mint_token_with_data(&app.settings.auth, sub, Role::Viewer, ttl, clusters, true).unwrap()
}

async fn get_with(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    let url = app.url(path);
    app.client.get(url).bearer_auth(token).send().await.unwrap()
}

/// Record `i` of partition `p`: odd offsets carry a binary key, every third a header
/// `kind=special`, values are JSON `{"n": i, "p": p}`.
fn record(p: i32, i: i64) -> Record {
    Record {
        offset: i,
        timestamp: 1_700_000_000_000 + i * 1_000,
        timestamp_type: TimestampType::CreateTime,
        key: Some(if i % 2 == 1 {
            vec![0xff, 0xfe, p as u8, i as u8]
        } else {
            format!("k{i}").into_bytes()
        }),
        value: Some(format!(r#"{{"n":{i},"p":{p}}}"#).into_bytes()),
        headers: vec![Header {
            key: "kind".into(),
            value: Some(if i % 3 == 0 { "special" } else { "plain" }.into()),
        }],
    }
}

/// Writes backup `id` of cluster `local`: 3 partitions of 50 records each.
async fn seed(app: &TestApp, id: &str) {
    let spec = ArchiveSpec {
        backup_id: BackupId::parse(id).unwrap(),
        archive_uid: kvault_domain::ids::new_uid(),
        cluster_id: kvault_domain::ClusterId::parse("local").expect("cluster id"),
        topic: TopicMetadata {
            name: "events".into(),
            partition_count: 3,
            replication_factor: 1,
            configs: BTreeMap::new(),
        },
        compression: Compression::new(CompressionType::Lz4, None).unwrap(),
        include_keys: true,
        include_headers: true,
        created_at: Utc::now(),
        consumer_groups: Vec::new(),
        backup_set: None,
        chain: None,
    };
    let writer = app.app_state.archives.create(spec).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut parts = Vec::new();
        for p in 0..3 {
            let mut w = writer.partition(p).unwrap();
            for i in 0..50 {
                w.append(&record(p, i)).unwrap();
            }
            parts.push(w.finish(0, 50).unwrap());
        }
        writer.commit(parts, Utc::now()).unwrap();
    })
    .await
    .unwrap();
}

async fn page(app: &TestApp, id: &str, query: &str) -> Value {
    let resp = app
        .get(
            &format!("/api/kafka/backups/{id}/records?{query}"),
            Role::Operator,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn paging_returns_every_record_exactly_once_in_order() {
    let app = spawn_app().await;
    seed(&app, "pages").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=7&cursor={c}"),
            None => "limit=7".into(),
        };
        let body = page(&app, "pages", &q).await;
        for r in body["records"].as_array().unwrap() {
            seen.push((
                r["partition"].as_i64().unwrap(),
                r["offset"].as_i64().unwrap(),
            ));
        }
        match body["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
    }
    let expected: Vec<(i64, i64)> = (0..3).flat_map(|p| (0..50).map(move |o| (p, o))).collect();
    assert_eq!(seen, expected);

    // One partition from an offset; default limit.
    let body = page(&app, "pages", "partition=2&from_offset=45").await;
    let offsets: Vec<i64> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, vec![45, 46, 47, 48, 49]);
    assert!(body["next"].is_null());
}

#[tokio::test]
async fn filters_on_a_header_and_on_a_json_field() {
    let app = spawn_app().await;
    seed(&app, "filtered").await;
    let q = "partition=0&limit=1000&filter=headers%5B%27kind%27%5D%20%3D%3D%20%27special%27";
    let body = page(&app, "filtered", q).await;
    let offsets: Vec<i64> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, (0..50).filter(|i| i % 3 == 0).collect::<Vec<_>>());

    let q = "limit=1000&filter=json.n%20%3D%3D%2010%20%26%26%20json.p%20%3E%200";
    let body = page(&app, "filtered", q).await;
    let got: Vec<(i64, i64)> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().unwrap(),
                r["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(1, 10), (2, 10)]);
}

#[tokio::test]
async fn binary_keys_come_back_as_base64_of_the_original_bytes() {
    let app = spawn_app().await;
    seed(&app, "binary").await;
    let body = page(&app, "binary", "partition=1&from_offset=2&limit=2").await;
    let records = body["records"].as_array().unwrap();
    assert_eq!(records[0]["key"], "k2");
    assert_eq!(records[0]["key_encoding"], "utf8");
    assert_eq!(records[1]["key_encoding"], "base64");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(records[1]["key"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, vec![0xff, 0xfe, 1, 3]);
    assert_eq!(records[1]["value"], r#"{"n":3,"p":1}"#);
    assert_eq!(records[1]["value_encoding"], "utf8");
    assert_eq!(records[1]["headers"][0]["key"], "kind");
    assert_eq!(records[1]["headers"][0]["value"], "special");
    assert_eq!(records[1]["headers"][0]["value_encoding"], "utf8");
    assert_eq!(records[1]["timestamp_type"], "create_time");
}

#[tokio::test]
async fn bad_filter_and_limit_over_the_maximum_are_400() {
    let app = spawn_app().await;
    seed(&app, "refused").await;
    let resp = app
        .get(
            "/api/kafka/backups/refused/records?filter=value.contains(",
            Role::Operator,
        )
        .await;
    let body = error_body(resp, 400).await;
    assert_eq!(body["details"]["field"], "filter");

    let resp = app
        .get(
            "/api/kafka/backups/refused/records?limit=10001",
            Role::Operator,
        )
        .await;
    let body = error_body(resp, 400).await;
    assert_eq!(body["details"]["field"], "limit");
}

#[tokio::test]
async fn a_token_scoped_to_another_cluster_gets_404() {
    let app = spawn_app().await;
    seed(&app, "scoped").await;
    let token = data_token(&app, "other", Some(vec!["elsewhere".into()]));
    let resp = app
        .client
        .get(app.url("/api/kafka/backups/scoped/records"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    error_body(resp, 404).await;
}

#[tokio::test]
async fn reading_contents_needs_the_data_permission() {
    let app = spawn_app().await;
    seed(&app, "guarded").await;
    let path = "/api/kafka/backups/guarded/records?limit=1";
    let resp = app.get(path, Role::Viewer).await;
    let body = error_body(resp, 403).await;
    assert_eq!(body["details"]["field"], "data");
    let resp = get_with(&app, path, &data_token(&app, "reader", None)).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(app.get(path, Role::Operator).await.status().as_u16(), 200);
    // Listing stays a viewer's right.
    let resp = app.get("/api/kafka/backups/guarded", Role::Viewer).await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn nested_comprehensions_are_refused_when_compiled() {
    let app = spawn_app().await;
    seed(&app, "nested").await;
    let mut filter = "true".to_owned();
    for v in ["a", "b", "c", "d", "e", "f", "g"] {
        filter = format!("[0,1,2,3,4,5,6,7,8,9].all({v}, {filter})");
    }
    let started = std::time::Instant::now();
    let resp = app
        .client
        .get(app.url("/api/kafka/backups/nested/records"))
        .query(&[("filter", filter.as_str())])
        .bearer_auth(app.token(Role::Operator))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let body = error_body(resp, 400).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(body["details"]["field"], "filter");
    assert!(body["message"].as_str().unwrap().contains("nest"), "{body}");
    // One level is fine.
    let one = "[0,1,2,3,4,5,6,7,8,9].exists(a, a == json.n)";
    let resp = app
        .client
        .get(app.url("/api/kafka/backups/nested/records"))
        .query(&[("filter", one), ("partition", "0"), ("limit", "1000")])
        .bearer_auth(app.token(Role::Operator))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["records"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn a_page_stops_at_its_byte_budget_and_cuts_long_values() {
    let app = spawn_app_with(|s| {
        s.browse.page_max_bytes = 2_000;
        s.browse.value_preview_bytes = 8;
    })
    .await;
    seed(&app, "budget").await;
    let body = page(&app, "budget", "partition=0&limit=1000").await;
    let records = body["records"].as_array().unwrap();
    assert!(
        !records.is_empty() && records.len() < 50,
        "{}",
        records.len()
    );
    assert_eq!(body["truncated_by"], "bytes");
    let next = body["next"].as_str().unwrap();
    assert_eq!(next, format!("0:{}", records.len()));
    // `{"n":0,"p":0}` is 13 bytes: cut to 8, with its full size.
    assert_eq!(records[0]["value"], r#"{"n":0,""#);
    assert_eq!(records[0]["value_truncated"], true);
    assert_eq!(records[0]["value_size"], 13);
    let full = page(&app, "budget", "partition=0&limit=3&full_values=true").await;
    assert_eq!(full["records"][0]["value"], r#"{"n":0,"p":0}"#);
    assert!(full["records"][0].get("value_truncated").is_none());
    assert_eq!(full["truncated_by"], "limit");
    let end = page(&app, "budget", "partition=0&from_offset=49").await;
    assert!(end["truncated_by"].is_null() && end["next"].is_null());
}
