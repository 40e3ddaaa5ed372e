//! End-to-end tests of the `kvault` binary against a real broker: what a CI pipeline does when
//! it calls `kvault backup` and `kvault restore` and trusts the exit code.

use std::path::{Path, PathBuf};
use std::process::Output;

use kvault_testkit::{TestBroker, TestRecord};
use serde_json::Value;

/// A config file naming the test broker as cluster `test` and a private backup directory.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(broker: &TestBroker) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("kvault.yaml");
        std::fs::write(
            &config,
            format!(
                "backup:\n  base_path: \"{}\"\nclusters:\n  test:\n    bootstrap_servers: \"{}\"\n\
                 database:\n  url: \"sqlite://{}?mode=rwc\"\n",
                dir.path().join("backups").display(),
                broker.bootstrap(),
                dir.path().join("kvault.db").display()
            ),
        )
        .unwrap();
        Self { dir, config }
    }

    fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    fn kvault(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_kvault"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run kvault")
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

/// The exit code a pipeline would see, with kvault's stderr in the failure message.
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn records(n: usize) -> Vec<TestRecord> {
    (0..n)
        .map(|i| TestRecord {
            partition: Some((i % 2) as i32),
            key: (i % 5 != 0).then(|| format!("key-{i}").into_bytes()),
            value: (i % 7 != 0).then(|| vec![0xff, 0x00, i as u8]),
            headers: vec![("h".into(), Some(b"v".to_vec())), ("h".into(), None)],
            timestamp: Some(1_700_000_000_000 + i as i64),
        })
        .collect()
}

fn first_segment(dir: &Path) -> PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "seg") {
                return path;
            }
        }
    }
    panic!("no segment under {}", dir.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_verify_list_restore_round_trip_through_the_cli() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let topic = broker.unique_topic("cli-src");
    broker.create_topic(&topic, 2).await;
    broker.produce(&topic, &records(500)).await;

    let backup = json(&setup.kvault(&[
        "backup",
        "--cluster",
        "test",
        "--topic",
        &topic,
        "--compression",
        "zstd",
    ]));
    assert_eq!(backup["status"], "completed");
    assert_eq!(backup["total_messages"], 500);
    assert_eq!(backup["compression"], "zstd");
    let backup_id = backup["backup_id"].as_str().unwrap().to_owned();

    let report = json(&setup.kvault(&["verify", "--backup-id", &backup_id]));
    assert_eq!(report["valid"], true);
    assert_eq!(report["messages_checked"], 500);

    let listed = json(&setup.kvault(&["list", "--topic", &topic]));
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1);
    assert_eq!(listed["backups"][0]["backup_id"], backup_id.as_str());
    let shown = json(&setup.kvault(&["show", "--backup-id", &backup_id]));
    assert_eq!(shown["partition_count"], 2);
    let manifest = json(&setup.kvault(&["show", "--backup-id", &backup_id, "--manifest"]));
    assert_eq!(manifest["topic"]["partition_count"], 2);

    // No --cluster: restore goes back to the cluster the backup came from.
    let target = broker.unique_topic("cli-dst");
    let restored = json(&setup.kvault(&[
        "restore",
        "--backup-id",
        &backup_id,
        "--target-topic",
        &target,
    ]));
    assert_eq!(restored["messages_restored"], 500);
    assert_eq!(restored["checksum_validated"], true);
    let mut original = broker.consume_all(&topic).await;
    let mut copy = broker.consume_all(&target).await;
    original.sort_by_key(|r| (r.partition, r.offset));
    copy.sort_by_key(|r| (r.partition, r.offset));
    assert_eq!(original, copy);

    // The target now holds messages: a second restore is a conflict, exit code 4.
    let again = setup.kvault(&[
        "restore",
        "--backup-id",
        &backup_id,
        "--target-topic",
        &target,
    ]);
    assert_exit(&again, 4);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("or pass --if-exists append"), "{stderr}");
    assert!(!stderr.contains("\"if_exists\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_and_migrate_dry_runs_print_the_plan_and_write_nothing() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let topic = broker.unique_topic("cli-dry");
    broker.create_topic(&topic, 2).await;
    broker.produce(&topic, &records(300)).await;
    let backup = json(&setup.kvault(&["backup", "--cluster", "test", "--topic", &topic]));
    let backup_id = backup["backup_id"].as_str().unwrap().to_owned();

    let target = broker.unique_topic("cli-dry-dst");
    let restore = [
        "restore",
        "--backup-id",
        &backup_id,
        "--target-topic",
        &target,
    ];
    let plan = json(&setup.kvault(&[&restore[..], &["--dry-run"]].concat()));
    assert_eq!(plan["dry_run"], true, "{plan}");
    assert_eq!(plan["topic"]["create"], true, "{plan}");
    assert_eq!(plan["total_messages"], 300, "{plan}");
    assert_eq!(
        broker.partition_count(&target).await,
        None,
        "the dry run created the topic"
    );
    let restored = json(&setup.kvault(&restore));
    assert_eq!(
        restored["partitions_created"], plan["partitions"],
        "{restored}"
    );
    // What the real run refuses, the dry run refuses with the same exit code.
    assert_exit(&setup.kvault(&[&restore[..], &["--dry-run"]].concat()), 4);

    let copy = broker.unique_topic("cli-dry-copy");
    let migrate = [
        "migrate",
        "--source-cluster",
        "test",
        "--source-topic",
        &topic,
        "--target-cluster",
        "test",
        "--target-topic",
        &copy,
        "--dry-run",
    ];
    let plan = json(&setup.kvault(&migrate));
    assert_eq!(plan["dry_run"], true, "{plan}");
    assert_eq!(plan["total_messages"], 300, "{plan}");
    assert_eq!(plan["partitions_kept"], true, "{plan}");
    assert_eq!(
        broker.partition_count(&copy).await,
        None,
        "the dry run created the topic"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_archive_fails_verify_and_restore_with_exit_code_5() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let topic = broker.unique_topic("cli-corrupt");
    broker.create_topic(&topic, 2).await;
    broker.produce(&topic, &records(200)).await;
    let backup = json(&setup.kvault(&["backup", "--cluster", "test", "--topic", &topic]));
    let backup_id = backup["backup_id"].as_str().unwrap().to_owned();

    let segment = first_segment(&setup.backups().join(&backup_id));
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&segment, bytes).unwrap();

    let verify = setup.kvault(&["verify", "--backup-id", &backup_id]);
    assert_exit(&verify, 5);
    let target = broker.unique_topic("cli-corrupt-dst");
    let restore = setup.kvault(&[
        "restore",
        "--backup-id",
        &backup_id,
        "--target-topic",
        &target,
    ]);
    assert_exit(&restore, 5);
    assert_eq!(
        broker.partition_count(&target).await,
        None,
        "nothing may be created"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_with_a_message_and_the_right_code() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);

    let unknown_cluster = setup.kvault(&["backup", "--cluster", "nope", "--topic", "t"]);
    assert_exit(&unknown_cluster, 3);
    assert!(String::from_utf8_lossy(&unknown_cluster.stderr).contains("nope"));

    let bad_offset = setup.kvault(&[
        "backup",
        "--cluster",
        "test",
        "--topic",
        "t",
        "--start-offset",
        "10",
        "--end-offset",
        "5",
    ]);
    assert_exit(&bad_offset, 2);
    assert!(String::from_utf8_lossy(&bad_offset.stderr).contains("--start-offset"));

    let missing_topic = setup.kvault(&[
        "backup",
        "--cluster",
        "test",
        "--topic",
        &broker.unique_topic("absent"),
    ]);
    assert_exit(&missing_topic, 3);

    let missing_backup = setup.kvault(&["verify", "--backup-id", "no-such-backup"]);
    assert_exit(&missing_backup, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_filters_with_cel_and_drain_reports_unknown_groups() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let source = broker.unique_topic("cli-mig-src");
    broker.create_topic(&source, 2).await;
    let messages: Vec<TestRecord> = (0..100)
        .map(|i| TestRecord {
            partition: Some(i % 2),
            key: Some(format!("k{i}").into_bytes()),
            value: Some(
                if i % 4 == 0 {
                    format!("important {i}")
                } else {
                    format!("noise {i}")
                }
                .into_bytes(),
            ),
            ..TestRecord::default()
        })
        .collect();
    broker.produce(&source, &messages).await;

    let target = broker.unique_topic("cli-mig-dst");
    let result = json(&setup.kvault(&[
        "migrate",
        "--source-cluster",
        "test",
        "--source-topic",
        &source,
        "--target-cluster",
        "test",
        "--target-topic",
        &target,
        "--filter-expression",
        "value.contains('important')",
        "--key-transformation",
        "key + '-dr'",
        "--header",
        "migrated-from=test",
    ]));
    assert_eq!(result["messages_read"], 100);
    assert_eq!(result["messages_migrated"], 25);
    assert_eq!(result["transformation_applied"], true);
    let copied = broker.consume_all(&target).await;
    assert_eq!(copied.len(), 25);
    for record in &copied {
        assert!(record.value.as_deref().unwrap().starts_with(b"important"));
        assert!(record.key.as_deref().unwrap().ends_with(b"-dr"));
        assert_eq!(
            record.headers.last().unwrap(),
            &("migrated-from".to_string(), Some(b"test".to_vec()))
        );
    }

    let bad = setup.kvault(&[
        "migrate",
        "--source-cluster",
        "test",
        "--source-topic",
        &source,
        "--target-cluster",
        "test",
        "--target-topic",
        &broker.unique_topic("cli-mig-bad"),
        "--filter-expression",
        "value.contains(",
    ]);
    assert_exit(&bad, 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--filter-expression"));

    let drain = setup.kvault(&[
        "drain",
        "--cluster",
        "test",
        "--group-id",
        "no-such-group",
        "--topics",
        &source,
        "--timeout-seconds",
        "1",
        "--check-interval-ms",
        "100",
    ]);
    assert_exit(&drain, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn sample_data_fills_a_new_topic_that_backs_up_with_tombstones_and_null_keys() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let topic = broker.unique_topic("cli-sample");
    let report = json(&setup.kvault(&[
        "sample-data",
        "--cluster",
        "test",
        "--topic",
        &topic,
        "--partitions",
        "2",
        "--messages",
        "300",
    ]));
    assert_eq!(report["topic_created"], true);
    assert_eq!(report["messages_produced"], 300);
    let records = broker.consume_all(&topic).await;
    assert_eq!(records.len(), 300);
    assert!(records.iter().any(|r| r.key.is_none()));
    assert!(records.iter().any(|r| r.value.is_none()));

    let backup = json(&setup.kvault(&["backup", "--cluster", "test", "--topic", &topic]));
    assert_eq!(backup["total_messages"], 300);
}

/// `kvault topics` and `kvault groups` list what is on a cluster; `sample-data --group` gives
/// a group committed offsets at the end of the topic (a drain of it is drained at once).
#[tokio::test(flavor = "multi_thread")]
async fn topics_and_groups_list_a_clusters_topics_and_consumer_groups() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let topic = broker.unique_topic("cli-topics");
    let group = broker.unique_topic("cli-group");
    let report = json(&setup.kvault(&[
        "sample-data",
        "--cluster",
        "test",
        "--topic",
        &topic,
        "--partitions",
        "3",
        "--messages",
        "90",
        "--group",
        &group,
    ]));
    assert_eq!(report["consumer_group"], group.as_str());

    let topics = json(&setup.kvault(&["topics", "--cluster", "test"]));
    assert_eq!(topics["cluster_id"], "test");
    let entry = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == topic.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{topic} not in {topics}"));
    assert_eq!(entry["partition_count"], 3);

    let groups = json(&setup.kvault(&["groups", "--cluster", "test"]));
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == group.as_str()),
        "{group} not in {groups}"
    );
    let drained = json(&setup.kvault(&[
        "drain",
        "--cluster",
        "test",
        "--group-id",
        &group,
        "--topics",
        &topic,
        "--timeout-seconds",
        "10",
    ]));
    assert_eq!(drained["status"], "drained", "{drained}");
}

/// `kvault list --latest` keeps the newest backup of each topic; `--ids` prints ids only.
#[tokio::test(flavor = "multi_thread")]
async fn list_latest_and_ids_for_scripts() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let (a, b) = (broker.unique_topic("cli-la"), broker.unique_topic("cli-lb"));
    for topic in [&a, &b] {
        broker.create_topic(topic, 2).await;
        broker.produce(topic, &records(10)).await;
    }
    for (topic, id) in [(&a, "a-old"), (&b, "b-only"), (&a, "a-new")] {
        json(&setup.kvault(&[
            "backup",
            "--cluster",
            "test",
            "--topic",
            topic,
            "--backup-id",
            id,
        ]));
        // Listing is newest first by creation time: keep the three apart.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let latest = json(&setup.kvault(&["list", "--latest"]));
    let ids: Vec<&str> = latest["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["backup_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a-new", "b-only"], "{latest}");

    let only_ids = setup.kvault(&["list", "--ids", "--topic", &a]);
    assert_eq!(
        String::from_utf8(json_free(&only_ids)).unwrap(),
        "a-new\na-old\n"
    );
    let newest = setup.kvault(&["list", "--ids", "--latest", "--topic", &a]);
    assert_eq!(String::from_utf8(json_free(&newest)).unwrap(), "a-new\n");
}

/// Errors speak the command line's language: the flag, not the JSON field; a time says which
/// format it wants; an unreachable broker is one line with its address and the cause.
#[tokio::test(flavor = "multi_thread")]
async fn errors_name_flags_formats_and_the_unreachable_address() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    std::fs::create_dir_all(setup.backups()).unwrap();

    let bad_target = setup.kvault(&[
        "restore",
        "--backup-id",
        "any",
        "--target-topic",
        "no spaces allowed",
    ]);
    assert_exit(&bad_target, 2);
    assert!(
        stderr(&bad_target).starts_with("error: --target-topic: "),
        "{}",
        stderr(&bad_target)
    );

    let bad_time = setup.kvault(&[
        "restore",
        "--backup-id",
        "any",
        "--target-topic",
        "t",
        "--until-time",
        "2026-12-03",
    ]);
    assert_exit(&bad_time, 2);
    let text = stderr(&bad_time);
    assert!(
        text.contains("RFC 3339") && text.contains("2026-12-03T10:00:00Z"),
        "{text}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let started = std::time::Instant::now();
    let down = std::process::Command::new(env!("CARGO_BIN_EXE_kvault"))
        .arg("--config")
        .arg(&setup.config)
        .args(["backup", "-b", &address, "--topic", "events"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_exit(&down, 7);
    let text = stderr(&down);
    assert_eq!(
        text.lines().count(),
        1,
        "one line, not librdkafka's retries: {text}"
    );
    assert!(
        text.contains(&address) && text.contains("connection refused"),
        "{text}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// A store-reading command pointed at a backup directory that does not exist says where it
/// looked (exit 8) instead of creating an empty store and printing nothing.
#[tokio::test(flavor = "multi_thread")]
async fn reading_a_missing_backup_directory_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("elsewhere").join("backups");
    for args in [vec!["list"], vec!["show", "--backup-id", "b1"]] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kvault"))
            .current_dir(dir.path())
            .args(&args)
            .env_remove("RUST_LOG")
            .env_remove("KVAULT_CONFIG")
            .env("KVAULT__BACKUP__BASE_PATH", &missing)
            .output()
            .unwrap();
        assert_exit(&output, 8);
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(!missing.exists(), "{args:?} created the store");
    }
}

/// `storage.s3.allow_http: false` with an `http://` endpoint is a setting to fix: said so,
/// exit 8.
#[test]
fn plain_http_without_allow_http_is_refused_with_exit_8() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kvault"))
        .current_dir(dir.path())
        .arg("list")
        .env_remove("RUST_LOG")
        .env_remove("KVAULT_CONFIG")
        .env("KVAULT__STORAGE__URL", "s3://bucket/prefix")
        .env("KVAULT__STORAGE__S3__ENDPOINT", "http://127.0.0.1:9")
        .env("KVAULT__STORAGE__S3__REGION", "us-east-1")
        .env("KVAULT__STORAGE__S3__ALLOW_HTTP", "false")
        .output()
        .unwrap();
    assert_exit(&output, 8);
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("allow_http"), "{text}");
}

/// A kcat user's command line: no config file, the broker given with `-b`, a librdkafka
/// property with `-X`; backup and restore round-trip and the backup names the `adhoc` cluster.
#[tokio::test]
async fn bootstrap_servers_on_the_command_line_need_no_config_file() {
    let broker = TestBroker::get().await;
    let dir = tempfile::tempdir().unwrap();
    let topic = broker.unique_topic("cli-adhoc");
    broker.create_topic(&topic, 2).await;
    broker.produce(&topic, &records(40)).await;
    let kvault = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kvault"))
            .current_dir(dir.path())
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("KVAULT_CONFIG")
            .env("KVAULT__BACKUP__BASE_PATH", dir.path().join("backups"))
            .env("KVAULT__DATABASE__URL", "sqlite::memory:")
            .output()
            .expect("run kvault")
    };
    let backup = json(&kvault(&[
        "backup",
        "-b",
        broker.bootstrap(),
        "-X",
        "client.id=kvault-adhoc-test",
        "--topic",
        &topic,
    ]));
    assert_eq!(backup["cluster_id"], "adhoc");
    assert_eq!(backup["total_messages"], 40);

    let target = broker.unique_topic("cli-adhoc-dst");
    let restored = json(&kvault(&[
        "restore",
        "--bootstrap-servers",
        broker.bootstrap(),
        "--backup-id",
        backup["backup_id"].as_str().unwrap(),
        "--target-topic",
        &target,
    ]));
    assert_eq!(restored["messages_restored"], 40);
    assert_eq!(broker.consume_all(&target).await.len(), 40);

    // Without -b or --cluster the command says how to name one.
    let output = kvault(&["backup", "--topic", &topic]);
    assert_exit(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("-b host:port"), "{stderr}");
    // A malformed -X is refused before anything runs.
    let output = kvault(&[
        "backup",
        "-b",
        broker.bootstrap(),
        "-X",
        "novalue",
        "--topic",
        &topic,
    ]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Hardening: `kvault backup` killed with SIGKILL mid-way leaves nothing listed, and the same
/// `backup_id` can be used again at once (the dead writer's staging directory is swept).
#[tokio::test(flavor = "multi_thread")]
async fn a_cli_backup_killed_mid_way_lists_nothing_and_frees_its_id() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let topic = broker.unique_topic("cli-killed");
    broker.create_topic(&topic, 2).await;
    broker.produce(&topic, &records(1_000)).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kvault"))
        .arg("--config")
        .arg(&setup.config)
        .args([
            "backup",
            "--cluster",
            "test",
            "--topic",
            &topic,
            "--backup-id",
            "killed-once",
            "--rate-limit-per-second",
            "100",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the backup is writing (its staging directory exists), then kill it.
    let partial = setup.backups().join("killed-once.partial");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !partial.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        partial.exists(),
        "the kill left no staging directory to test with"
    );

    let listed = json(&setup.kvault(&["list"]));
    assert!(listed["backups"].as_array().unwrap().is_empty(), "{listed}");
    let again = json(&setup.kvault(&[
        "backup",
        "--cluster",
        "test",
        "--topic",
        &topic,
        "--backup-id",
        "killed-once",
    ]));
    assert_eq!(again["total_messages"], 1_000);
    assert!(!partial.exists());
    let listed = json(&setup.kvault(&["list"]));
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cat_prints_a_backups_records_as_json_lines_and_text() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let topic = broker.unique_topic("cli-cat");
    broker.create_topic(&topic, 2).await;
    broker.produce(&topic, &records(40)).await;
    let backup = json(&setup.kvault(&["backup", "--cluster", "test", "--topic", &topic]));
    let id = backup["backup_id"].as_str().unwrap().to_owned();

    let out = setup.kvault(&["cat", "--backup-id", &id]);
    assert_exit(&out, 0);
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 40);
    assert!(lines
        .iter()
        .all(|r| r["value"].is_null() || r["value_encoding"] == "base64"));
    let parts: Vec<i64> = lines
        .iter()
        .map(|r| r["partition"].as_i64().unwrap())
        .collect();
    assert!(
        parts.windows(2).all(|w| w[0] <= w[1]),
        "partitions in order"
    );

    let out = setup.kvault(&[
        "cat",
        "--backup-id",
        &id,
        "--partition",
        "1",
        "--from-offset",
        "3",
        "--limit",
        "2",
        "--filter",
        "!key_is_null",
        "--format",
        "text",
    ]);
    assert_exit(&out, 0);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("1:") && l.contains("key-")),
        "{text}"
    );
}

/// Progress on stderr: off a terminal (as here) a line every five seconds with the total from
/// the watermarks and an ETA; `--quiet` prints none; stdout is the JSON result either way.
/// `kvault completions` prints a script naming the subcommands.
#[tokio::test(flavor = "multi_thread")]
async fn long_runs_report_progress_unless_quiet() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let topic = broker.unique_topic("cli-progress");
    broker.create_topic(&topic, 2).await;
    broker.produce(&topic, &records(600)).await;
    // 100 messages a second: about six seconds, one progress line.
    let slow = ["--rate-limit-per-second", "100"];
    let backup = setup.kvault(
        &[
            &["backup", "--cluster", "test", "--topic", &topic][..],
            &slow,
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&backup.stderr).into_owned();
    let backup_id = json(&backup)["backup_id"].as_str().unwrap().to_owned();
    assert!(
        stderr.contains(&format!("backup {backup_id}: ")) && stderr.contains(" of 600 ("),
        "no progress line with the total: {stderr}"
    );
    assert!(stderr.contains("ETA"), "{stderr}");

    let target = broker.unique_topic("cli-progress-dst");
    let quiet = setup.kvault(
        &[
            &[
                "--quiet",
                "restore",
                "--backup-id",
                &backup_id,
                "--target-topic",
                &target,
            ][..],
            &slow,
        ]
        .concat(),
    );
    assert_eq!(json(&quiet)["messages_restored"], 600);
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );

    let completions = setup.kvault(&["completions", "bash"]);
    let script = String::from_utf8(json_free(&completions)).unwrap();
    for word in ["backup", "restore", "cat", "--backup-id"] {
        assert!(script.contains(word), "completion script lacks {word}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_set_with_its_consumer_groups_through_the_cli() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let prefix = broker.unique_topic("cli-set");
    let (first, second) = (format!("{prefix}-a"), format!("{prefix}-b"));
    for topic in [&first, &second] {
        broker.create_topic(topic, 2).await;
        broker.produce(topic, &records(40)).await;
    }
    let group = broker.unique_topic("cli-group");
    broker.commit_group(&group, &first, &[(0, 7)]).await;

    let set = json(&setup.kvault(&[
        "backup",
        "--cluster",
        "test",
        "--topic-pattern",
        &format!("{prefix}-.*"),
        "--backup-id",
        &prefix,
    ]));
    assert_eq!(set["set_id"], prefix.as_str());
    assert_eq!(set["topic_count"], 2);
    assert_eq!(set["topics"][0]["consumer_groups"][0], group.as_str());
    let shown = json(&setup.kvault(&["show", "--backup-id", &format!("{prefix}.{first}")]));
    assert_eq!(shown["consumer_groups"][0]["group_id"], group.as_str());
    assert_eq!(shown["backup_set"]["topic_count"], 2);

    let restored = json(&setup.kvault(&[
        "restore",
        "--backup-id",
        &prefix,
        "--topic-prefix",
        "dr-",
        "--preserve-offsets",
        "--restore-consumer-groups",
        "true",
    ]));
    assert_eq!(restored["messages_restored"], 80);
    let groups = &restored["topics"][0]["consumer_groups_restored"];
    assert_eq!(groups[0]["status"], "translated", "{restored}");
    assert_eq!(
        broker
            .group_offsets(&group, &format!("dr-{first}"), 2)
            .await,
        vec![Some(7), None]
    );
    // Both flags at once cannot work: a usage error.
    let both = setup.kvault(&["backup", "--topic", &first, "--topics", &second]);
    assert_exit(&both, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_are_created_listed_shown_and_deleted_through_the_cli() {
    let broker = TestBroker::get().await;
    let setup = Setup::new(broker);
    let topic = broker.unique_topic("cli-schedule");
    broker.create_topic(&topic, 1).await;
    let create = |extra: &[&str]| {
        let mut args = vec!["schedule", "create", "--cluster", "test"];
        args.extend_from_slice(extra);
        setup.kvault(&args)
    };
    let created = json(&create(&[
        "--schedule-id",
        "cli-hourly",
        "--topic",
        &topic,
        "--every",
        "1h",
        "--retention",
        "7d",
        "--compression",
        "zstd",
    ]));
    assert_eq!(created["schedule_id"], "cli-hourly");
    assert_eq!(created["every"], "1h");
    assert_eq!(created["created_by"], "cli");
    assert!(created["next_run_at"].is_string());
    // A second one with the same id, a bad interval, a missing topic, a missing cadence.
    assert_exit(
        &create(&[
            "--schedule-id",
            "cli-hourly",
            "--topic",
            &topic,
            "--every",
            "1h",
        ]),
        4,
    );
    assert_exit(&create(&["--topic", &topic, "--every", "soon"]), 2);
    assert_exit(&create(&["--topic", "no-such-topic", "--every", "1m"]), 3);
    assert_exit(&create(&["--topic", &topic]), 2);

    let listed = json(&setup.kvault(&["schedule", "list"]));
    assert_eq!(listed["schedules"][0]["schedule_id"], "cli-hourly");
    let shown = json(&setup.kvault(&["schedule", "show", "--schedule-id", "cli-hourly"]));
    assert_eq!(shown["topic"], topic.as_str());
    assert_exit(
        &setup.kvault(&["schedule", "show", "--schedule-id", "nope"]),
        3,
    );
    // Nothing ran yet (`kvault serve` runs schedules): nothing to restore.
    let restore = setup.kvault(&[
        "restore",
        "--schedule-id",
        "cli-hourly",
        "--target-topic",
        "x",
    ]);
    assert_exit(&restore, 3);
    let deleted = json(&setup.kvault(&["schedule", "delete", "--schedule-id", "cli-hourly"]));
    assert_eq!(deleted["deleted"], true);
    assert_exit(
        &setup.kvault(&["schedule", "delete", "--schedule-id", "cli-hourly"]),
        3,
    );
}

/// stdout of a successful run that prints text, not JSON.
fn json_free(output: &Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout.clone()
}
