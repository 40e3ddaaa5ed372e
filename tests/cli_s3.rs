//! The `kvault` binary with its archives in object storage (a real S3-compatible server and a
//! real Azure Blob emulator, started by the testkit): a backup written by one process is
//! listed, shown, verified and restored byte for byte by others, from working directories with
//! no local data directory at all.

use std::path::Path;
use std::process::Output;

use kvault_testkit::azure::{TestAzurite, AZURITE_ACCOUNT, AZURITE_KEY};
use kvault_testkit::s3::{TestS3, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY};
use kvault_testkit::{TestBroker, TestRecord};
use serde_json::Value;

/// Runs kvault in `cwd` configured only through the environment: cluster `test` and the
/// bucket as storage.
fn kvault(cwd: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kvault"))
        .current_dir(cwd)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("RUST_LOG")
        .output()
        .expect("run kvault")
}

fn settings(broker: &TestBroker, endpoint: &str, bucket: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "KVAULT__CLUSTERS__TEST__BOOTSTRAP_SERVERS",
            broker.bootstrap().to_owned(),
        ),
        ("KVAULT__STORAGE__URL", format!("s3://{bucket}/ci")),
        ("KVAULT__STORAGE__S3__ENDPOINT", endpoint.to_owned()),
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
        ("KVAULT__STORAGE__S3__MAX_RETRIES", "1".into()),
        ("KVAULT__STORAGE__S3__RETRY_TIMEOUT_SECS", "3".into()),
        ("KVAULT__STORAGE__S3__CONNECT_TIMEOUT_SECS", "1".into()),
    ]
}

/// The same for `container` of the Azurite at `endpoint`.
fn azure_settings(
    broker: &TestBroker,
    endpoint: &str,
    container: &str,
) -> Vec<(&'static str, String)> {
    vec![
        (
            "KVAULT__CLUSTERS__TEST__BOOTSTRAP_SERVERS",
            broker.bootstrap().to_owned(),
        ),
        ("KVAULT__STORAGE__URL", format!("az://{container}/ci")),
        ("KVAULT__STORAGE__AZURE__ENDPOINT", endpoint.to_owned()),
        ("KVAULT__STORAGE__AZURE__ALLOW_HTTP", "true".into()),
        ("KVAULT__STORAGE__AZURE__ACCOUNT", AZURITE_ACCOUNT.into()),
        ("KVAULT__STORAGE__AZURE__ACCESS_KEY", AZURITE_KEY.into()),
        ("KVAULT__STORAGE__S3__MAX_RETRIES", "1".into()),
        ("KVAULT__STORAGE__S3__RETRY_TIMEOUT_SECS", "3".into()),
        ("KVAULT__STORAGE__S3__CONNECT_TIMEOUT_SECS", "1".into()),
    ]
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
            partition: Some((i % 3) as i32),
            key: (i % 5 != 0).then(|| format!("key-{i}").into_bytes()),
            value: (i % 7 != 0).then(|| vec![0xff, 0x00, i as u8]),
            headers: vec![("h".into(), Some(Vec::new())), ("h".into(), None)],
            timestamp: Some(1_700_000_000_000 + i as i64),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_in_s3_restores_byte_for_byte_from_another_process_without_local_data() {
    let broker = TestBroker::get().await;
    let s3 = TestS3::shared();
    let bucket = s3.fresh_bucket("cli");
    round_trip(broker, &settings(broker, s3.endpoint(), &bucket)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_in_azure_blob_restores_byte_for_byte_from_another_process_without_local_data() {
    let broker = TestBroker::get().await;
    let azurite = TestAzurite::shared();
    let container = azurite.fresh_container("cli");
    round_trip(
        broker,
        &azure_settings(broker, &azurite.endpoint(), &container),
    )
    .await;
}

/// Backup by one process; list, show, verify and restore by another, in other directories.
async fn round_trip(broker: &TestBroker, env: &[(&str, String)]) {
    let env = env.to_vec();
    let topic = broker.unique_topic("s3-src");
    broker.create_topic(&topic, 3).await;
    broker.produce(&topic, &records(900)).await;

    let writer_dir = tempfile::tempdir().unwrap();
    let backup = json(&kvault(
        writer_dir.path(),
        &env,
        &[
            "backup",
            "--cluster",
            "test",
            "--topic",
            &topic,
            "--compression",
            "lz4",
        ],
    ));
    assert_eq!(backup["status"], "completed");
    assert_eq!(backup["total_messages"], 900);
    let id = backup["backup_id"].as_str().unwrap().to_owned();

    // Another process, another directory: everything comes from the bucket.
    let reader_dir = tempfile::tempdir().unwrap();
    let listed = json(&kvault(
        reader_dir.path(),
        &env,
        &["list", "--topic", &topic],
    ));
    assert_eq!(listed["backups"][0]["backup_id"], id.as_str());
    let shown = json(&kvault(
        reader_dir.path(),
        &env,
        &["show", "--backup-id", &id],
    ));
    assert_eq!(shown["partition_count"], 3);
    let report = json(&kvault(
        reader_dir.path(),
        &env,
        &["verify", "--backup-id", &id],
    ));
    assert_eq!(report["valid"], true);
    assert_eq!(report["messages_checked"], 900);

    let target = broker.unique_topic("s3-dst");
    let restored = json(&kvault(
        reader_dir.path(),
        &env,
        &["restore", "--backup-id", &id, "--target-topic", &target],
    ));
    assert_eq!(restored["messages_restored"], 900);
    assert_eq!(restored["checksum_validated"], true);
    let mut original = broker.consume_all(&topic).await;
    let mut copy = broker.consume_all(&target).await;
    original.sort_by_key(|r| (r.partition, r.offset));
    copy.sort_by_key(|r| (r.partition, r.offset));
    assert_eq!(original, copy);

    for dir in [writer_dir.path(), reader_dir.path()] {
        let left: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        assert!(left.is_empty(), "{left:?} in {}", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_store_exits_7_and_a_missing_bucket_exits_8() {
    let broker = TestBroker::get().await;
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = kvault(
        dir.path(),
        &settings(broker, &endpoint, "anything"),
        &["list"],
    );
    assert_eq!(
        down.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("s3://anything/ci"), "{stderr}");
    assert!(!stderr.contains(S3_SECRET_ACCESS_KEY), "{stderr}");

    let s3 = TestS3::shared();
    let missing = kvault(
        dir.path(),
        &settings(broker, s3.endpoint(), "never-created"),
        &["list"],
    );
    assert_eq!(
        missing.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let azurite = TestAzurite::shared();
    let missing = kvault(
        dir.path(),
        &azure_settings(broker, &azurite.endpoint(), "never-created"),
        &["list"],
    );
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("az://never-created/ci"), "{stderr}");
    assert!(!stderr.contains(AZURITE_KEY), "{stderr}");
}
