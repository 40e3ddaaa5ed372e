//! How long listing backups takes, and how many S3 requests it costs, with many archives in an
//! S3-compatible server (moto, started by the testkit; `bash scripts/install-s3.sh` first):
//! what `GET /api/kafka/backups` does (`ArchiveStore::list`) before building its summaries.
//!
//! `cargo run --release -p kvault-storage --example list_many -- 10000`
//!
//! One real archive is written, then copied N times by plain PUTs (its manifest rewritten
//! with each copy's id). Then: the first listing of a new store (what every listing cost
//! before the catalog: a LIST of the bucket plus one GET per manifest), and repeated listings
//! of the same store (the catalog: the LIST only).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kvault_domain::manifest::TopicMetadata;
use kvault_domain::ports::ArchiveSpec;
use kvault_domain::{BackupId, Compression, CompressionType, Record, TimestampType};
use kvault_storage::backend::object::{ObjectBackend, ObjectConfig};
use kvault_storage::{Store, StoreOptions};
use kvault_testkit::s3::{TestS3, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn store_on(server: &TestS3, bucket: &str) -> Store {
    let config = ObjectConfig {
        url: format!("s3://{bucket}/vault"),
        endpoint: Some(server.endpoint().to_owned()),
        region: Some("us-east-1".into()),
        allow_http: true,
        access_key_id: Some(S3_ACCESS_KEY_ID.into()),
        secret_access_key: Some(S3_SECRET_ACCESS_KEY.into()),
        request_timeout: Duration::from_secs(120),
        ..ObjectConfig::default()
    };
    Store::on(
        Arc::new(ObjectBackend::connect(&config).unwrap()),
        StoreOptions::default(),
    )
    .unwrap()
}

fn seed(store: &Store) {
    let spec = ArchiveSpec {
        backup_id: BackupId::parse("seed").unwrap(),
        archive_uid: kvault_domain::ids::new_uid(),
        cluster_id: kvault_domain::ClusterId::parse("local").expect("cluster id"),
        topic: TopicMetadata {
            name: "events".into(),
            partition_count: 1,
            replication_factor: 1,
            configs: Default::default(),
        },
        compression: Compression::new(CompressionType::Zstd, None).unwrap(),
        include_keys: true,
        include_headers: true,
        created_at: chrono::Utc::now(),
        consumer_groups: Vec::new(),
        backup_set: None,
        chain: None,
    };
    let writer = store.blocking_create(spec).unwrap();
    let mut pw = writer.partition(0).unwrap();
    for offset in 0..100 {
        let record = Record {
            offset,
            timestamp: 1_700_000_000_000 + offset,
            timestamp_type: TimestampType::CreateTime,
            key: Some(format!("key-{offset}").into_bytes()),
            value: Some(format!("value-{offset}").into_bytes()),
            headers: Vec::new(),
        };
        pw.append(&record).unwrap();
    }
    let part = pw.finish(0, 100).unwrap();
    writer.commit(vec![part], chrono::Utc::now()).unwrap();
}

/// Copies backup `seed` to `bench-00000` … under the root, `count` times.
fn copy_seed(raw: Arc<dyn ObjectStore>, count: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let objects: Vec<(String, Vec<u8>)> = {
            let metas: Vec<_> = raw
                .list(Some(&Key::from("vault/seed")))
                .try_collect()
                .await
                .unwrap();
            let mut out = Vec::new();
            for meta in metas {
                let rel = meta
                    .location
                    .as_ref()
                    .trim_start_matches("vault/seed/")
                    .to_owned();
                let bytes = raw
                    .get(&meta.location)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                out.push((rel, bytes.to_vec()));
            }
            out
        };
        futures::stream::iter(0..count)
            .flat_map(|i| {
                let id = format!("bench-{i:05}");
                futures::stream::iter(objects.clone().into_iter().map(move |(rel, bytes)| {
                    let bytes = if rel == "manifest.json" {
                        let mut manifest: serde_json::Value =
                            serde_json::from_slice(&bytes).unwrap();
                        manifest["backup_id"] = serde_json::Value::String(id.clone());
                        serde_json::to_vec(&manifest).unwrap()
                    } else {
                        bytes
                    };
                    (format!("vault/{id}/{rel}"), bytes)
                }))
            })
            .map(|(key, bytes)| {
                let raw = raw.clone();
                async move {
                    raw.put(&Key::from(key), PutPayload::from(bytes))
                        .await
                        .unwrap()
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
    });
}

/// Lists, and reports how long it took and which requests it sent.
fn measure(label: &str, server: &TestS3, bucket: &str, store: &Store, expected: usize) {
    let before = server.requests_to(bucket).len();
    let started = Instant::now();
    let listed = store.blocking_list().unwrap();
    let took = started.elapsed();
    let requests = server.requests_to(bucket);
    let sent = &requests[before..];
    let lists = sent.iter().filter(|r| r.contains("list-type=2")).count();
    let gets = sent
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/manifest.json"))
        .count();
    assert_eq!(listed.len(), expected);
    println!(
        "{label:<28} {:>9.1} ms  {:>6} requests ({lists} LIST, {gets} manifest GET)",
        took.as_secs_f64() * 1000.0,
        sent.len()
    );
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |n| n.parse().expect("a number of archives"));
    let server = TestS3::start_new();
    let bucket = server.fresh_bucket("list-bench");
    let raw: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_endpoint(server.endpoint())
            .with_region("us-east-1")
            .with_allow_http(true)
            .with_access_key_id(S3_ACCESS_KEY_ID)
            .with_secret_access_key(S3_SECRET_ACCESS_KEY)
            .build()
            .unwrap(),
    );
    seed(&store_on(&server, &bucket));
    let started = Instant::now();
    copy_seed(raw, count);
    println!(
        "{count} archives copied in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let store = store_on(&server, &bucket);
    measure("first listing (cold)", &server, &bucket, &store, count + 1);
    for round in 1..=3 {
        measure(
            &format!("listing {round} (catalog)"),
            &server,
            &bucket,
            &store,
            count + 1,
        );
    }
    let other = store_on(&server, &bucket);
    measure(
        "new process, first listing",
        &server,
        &bucket,
        &other,
        count + 1,
    );
}
