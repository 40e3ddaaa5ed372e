//! Reading record contents through a real `kvault serve` costs bounded memory and stops when
//! the client leaves: a page of 200 records of 8 MB keeps the server's peak RSS under 300 MB
//! (the page stops at its byte budget, values are cut), and a slow filter stops burning CPU
//! once its client has gone.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kvault_api::auth::{mint_token, Role};
use kvault_api::configuration::Settings;
use kvault_domain::ports::{ArchiveSpec, ArchiveStore};
use kvault_domain::{BackupId, Compression, CompressionType, Record, TimestampType, TopicMetadata};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes backup `id`: one partition of `count` records whose values are `value(i)`.
async fn seed(dir: &Path, id: &str, count: i64, value: fn(i64) -> Vec<u8>) {
    let store: Arc<dyn ArchiveStore> = Arc::new(kvault_storage::Store::local(dir).unwrap());
    let spec = ArchiveSpec {
        backup_id: BackupId::parse(id).unwrap(),
        archive_uid: kvault_domain::ids::new_uid(),
        cluster_id: kvault_domain::ClusterId::parse("local").expect("cluster id"),
        topic: TopicMetadata {
            name: "big".into(),
            partition_count: 1,
            replication_factor: 1,
            configs: Default::default(),
        },
        compression: Compression::new(CompressionType::Zstd, None).unwrap(),
        include_keys: true,
        include_headers: true,
        created_at: Utc::now(),
        consumer_groups: Vec::new(),
        backup_set: None,
        chain: None,
    };
    let writer = store.create(spec).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut w = writer.partition(0).unwrap();
        for offset in 0..count {
            w.append(&Record {
                offset,
                timestamp: 1_700_000_000_000 + offset,
                timestamp_type: TimestampType::CreateTime,
                key: Some(format!("k{offset}").into_bytes()),
                value: Some(value(offset)),
                headers: Vec::new(),
            })
            .unwrap();
        }
        let part = w.finish(0, count).unwrap();
        writer.commit(vec![part], Utc::now()).unwrap();
    })
    .await
    .unwrap();
}

/// Starts `kvault serve` on `dir`'s archives (SQLite job table) and waits until it answers.
async fn serve(dir: &Path, extra: &[(&str, &str)]) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kvault"));
    command
        .current_dir(dir)
        .env("KVAULT__DATABASE__URL", "sqlite://./jobs.db?mode=rwc")
        .env("KVAULT__BACKUP__BASE_PATH", dir.join("backups"))
        .env("KVAULT__SERVER__PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .arg("serve")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null());
    for (k, v) in extra {
        command.env(k, v);
    }
    let server = Server(command.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(format!("{base}/health"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "kvault serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, base)
}

fn operator_token() -> String {
    let settings = Settings::embedded_defaults().unwrap();
    mint_token(
        &settings.auth,
        "reader",
        Role::Operator,
        Duration::from_secs(600),
        None,
    )
    .unwrap()
}

fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024
}

/// User plus system CPU time of process `pid`, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

const MB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_200_records_of_8_mb_keeps_the_server_under_300_mb() {
    let dir = tempfile::tempdir().unwrap();
    // Compressible (small on disk), 8 MB each once decoded.
    seed(&dir.path().join("backups"), "big-values", 200, |i| {
        format!("{i:07} ").repeat(8 * MB / 8).into_bytes()
    })
    .await;
    let (server, base) = serve(dir.path(), &[]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let token = operator_token();
    let url = format!("{base}/api/kafka/backups/big-values/records");
    let page: serde_json::Value = http
        .get(&url)
        .query(&[("limit", "200")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = page["records"].as_array().unwrap();
    assert!(
        !records.is_empty() && records.len() < 200,
        "{}",
        records.len()
    );
    assert_eq!(page["truncated_by"], "bytes");
    assert_eq!(records[0]["value_truncated"], true);
    assert_eq!(records[0]["value_size"], 8 * MB);
    // Whole values: one 8 MB record per page (a page holds at least one).
    let whole: serde_json::Value = http
        .get(&url)
        .query(&[("limit", "200"), ("full_values", "true"), ("cursor", "0:7")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whole["records"].as_array().unwrap().len(), 1);
    assert_eq!(whole["records"][0]["value"].as_str().unwrap().len(), 8 * MB);
    assert_eq!(whole["next"], "0:8");
    let peak_mb = peak_rss_mb(server.0.id());
    eprintln!(
        "records load: {} records on the first page, peak RSS {peak_mb} MB",
        records.len()
    );
    assert!(peak_mb < 300, "peak RSS {peak_mb} MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_filter_stops_when_its_client_leaves() {
    let dir = tempfile::tempdir().unwrap();
    seed(&dir.path().join("backups"), "many", 50_000, |i| {
        format!("{i:07}-").repeat(128).into_bytes()
    })
    .await;
    // A deadline far away: only the client's leaving can stop the read.
    let (server, base) = serve(dir.path(), &[("KVAULT__BROWSE__DEADLINE_SECS", "600")]).await;
    let pid = server.0.id();
    let idle_before = cpu_ticks(pid);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // Accepted (one comprehension), matches nothing, ~1,000 iterations per record.
    let filter = "value.split('').exists(c, c == '~')";
    let started = Instant::now();
    let outcome = http
        .get(format!("{base}/api/kafka/backups/many/records"))
        .query(&[("filter", filter)])
        .bearer_auth(operator_token())
        .send()
        .await;
    assert!(
        outcome.is_err(),
        "the read should outlast the client's 2 s timeout"
    );
    let busy = cpu_ticks(pid) - idle_before;
    // The client has gone; give the server a moment to notice, then watch it for 2 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_leaving = cpu_ticks(pid) - before;
    eprintln!(
        "slow filter: {busy} ticks of CPU in the {:.1} s the client waited, {after_leaving} in \
         the 2 s after it left",
        started.elapsed().as_secs_f64()
    );
    assert!(
        busy >= 50,
        "the filter should have kept the server busy: {busy} ticks"
    );
    assert!(
        after_leaving <= 20,
        "{after_leaving} ticks of CPU after the client left"
    );
}
