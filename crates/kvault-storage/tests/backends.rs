//! The store's promises, checked the same way on every backend: a local directory, a real
//! S3-compatible server (moto) and a real Azure Blob emulator (Azurite), both started by the
//! testkit. Round trips per codec, multipart
//! segments, corruption, concurrent creates of one id, a writer killed with SIGKILL, a server
//! that dies mid-upload, and backups copied by hand between a disk and a bucket.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use kvault_domain::job::OperationControl;
use kvault_domain::ports::ReadBounds;
use kvault_domain::{BackupId, CompressionType, DomainError, Record, StorageFailure};
use kvault_storage::backend::object::{ObjectBackend, ObjectConfig, MIN_PART_SIZE};
use kvault_storage::{Store, StoreOptions};
use kvault_testkit::azure::{TestAzurite, AZURITE_ACCOUNT, AZURITE_KEY};
use kvault_testkit::s3::{TestS3, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn id(s: &str) -> BackupId {
    BackupId::parse(s).unwrap()
}

const SMALL: StoreOptions = StoreOptions {
    block_size: 4096,
    segment_size: 32 * 1024,
};

/// Settings for a store in `bucket` of `endpoint` that gives up quickly and calls a lease
/// stale after two seconds.
fn s3_config(endpoint: &str, bucket: &str) -> ObjectConfig {
    ObjectConfig {
        url: format!("s3://{bucket}/vault"),
        endpoint: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        allow_http: true,
        access_key_id: Some(S3_ACCESS_KEY_ID.into()),
        secret_access_key: Some(S3_SECRET_ACCESS_KEY.into()),
        part_size: MIN_PART_SIZE,
        abandoned_after: Duration::from_secs(2),
        max_retries: 1,
        retry_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(20),
        ..ObjectConfig::default()
    }
}

/// The same for `container` of the Azurite at `endpoint`.
fn azure_config(endpoint: &str, container: &str) -> ObjectConfig {
    ObjectConfig {
        url: format!("az://{container}/vault"),
        endpoint: Some(endpoint.to_owned()),
        region: None,
        access_key_id: None,
        secret_access_key: None,
        azure_account: Some(AZURITE_ACCOUNT.into()),
        azure_access_key: Some(AZURITE_KEY.into()),
        ..s3_config(endpoint, container)
    }
}

/// Raw access to `container` of the shared Azurite.
fn raw_container(container: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        MicrosoftAzureBuilder::new()
            .with_account(AZURITE_ACCOUNT)
            .with_access_key(AZURITE_KEY)
            .with_endpoint(TestAzurite::shared().endpoint())
            .with_container_name(container)
            .with_allow_http(true)
            .build()
            .unwrap(),
    )
}

/// One store under test and raw access to where it keeps its bytes.
enum Place {
    Dir(tempfile::TempDir),
    Bucket {
        raw: Arc<dyn ObjectStore>,
        /// The bucket, or the Azure container.
        bucket: String,
        /// `s3` or `azure`.
        provider: &'static str,
    },
}

struct Harness {
    store: Store,
    place: Place,
}

impl Harness {
    fn local(options: StoreOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            store: Store::local_with_options(dir.path(), options).unwrap(),
            place: Place::Dir(dir),
        }
    }

    fn s3(options: StoreOptions) -> Self {
        Self::s3_on(TestS3::shared(), options)
    }

    fn s3_on(server: &TestS3, options: StoreOptions) -> Self {
        let bucket = server.fresh_bucket("store");
        let config = s3_config(server.endpoint(), &bucket);
        let backend = ObjectBackend::connect(&config).unwrap();
        let raw = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_endpoint(server.endpoint())
            .with_region("us-east-1")
            .with_allow_http(true)
            .with_access_key_id(S3_ACCESS_KEY_ID)
            .with_secret_access_key(S3_SECRET_ACCESS_KEY)
            .build()
            .unwrap();
        Self {
            store: Store::on(Arc::new(backend), options).unwrap(),
            place: Place::Bucket {
                raw: Arc::new(raw),
                bucket,
                provider: "s3",
            },
        }
    }

    fn azure(options: StoreOptions) -> Self {
        let server = TestAzurite::shared();
        let container = server.fresh_container("store");
        let backend =
            ObjectBackend::connect(&azure_config(&server.endpoint(), &container)).unwrap();
        Self {
            store: Store::on(Arc::new(backend), options).unwrap(),
            place: Place::Bucket {
                raw: raw_container(&container),
                bucket: container,
                provider: "azure",
            },
        }
    }

    /// A store on every backend: the local disk, S3, Azure Blob.
    fn every(options: StoreOptions) -> [Self; 3] {
        [
            Self::local(options),
            Self::s3(options),
            Self::azure(options),
        ]
    }

    /// A store on every object storage backend.
    fn objects(options: StoreOptions) -> [Self; 2] {
        [Self::s3(options), Self::azure(options)]
    }

    fn name(&self) -> &'static str {
        match self.place {
            Place::Dir(_) => "local",
            Place::Bucket { provider, .. } => provider,
        }
    }

    /// Open multipart uploads, where the server can list them (S3); `None` elsewhere.
    fn open_uploads(&self) -> Option<usize> {
        match &self.place {
            Place::Bucket {
                bucket,
                provider: "s3",
                ..
            } => Some(TestS3::shared().open_uploads(bucket)),
            _ => None,
        }
    }

    /// Every file or object under the root, relative to it, sorted.
    fn contents(&self) -> Vec<String> {
        let mut names = match &self.place {
            Place::Dir(dir) => walk(dir.path(), dir.path()),
            Place::Bucket { raw, .. } => runtime()
                .block_on(raw.list(Some(&Key::from("vault"))).try_collect::<Vec<_>>())
                .unwrap()
                .into_iter()
                .map(|m| m.location.as_ref().trim_start_matches("vault/").to_owned())
                .collect(),
        };
        names.sort();
        names
    }

    fn read_raw(&self, rel: &str) -> Vec<u8> {
        match &self.place {
            Place::Dir(dir) => std::fs::read(dir.path().join(rel)).unwrap(),
            Place::Bucket { raw, .. } => runtime().block_on(async {
                let key = Key::from(format!("vault/{rel}"));
                raw.get(&key).await.unwrap().bytes().await.unwrap().to_vec()
            }),
        }
    }

    fn write_raw(&self, rel: &str, bytes: Vec<u8>) {
        match &self.place {
            Place::Dir(dir) => {
                let path = dir.path().join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap()
            }
            Place::Bucket { raw, .. } => runtime().block_on(async {
                let key = Key::from(format!("vault/{rel}"));
                raw.put(&key, PutPayload::from(bytes)).await.unwrap();
            }),
        };
    }
}

fn walk(root: &std::path::Path, dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(root, &path));
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push(rel);
        }
    }
    out
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

/// Writes and commits backup `name`: `partitions` partitions of `per_partition` records.
fn write(store: &Store, name: &str, codec: CompressionType, per_partition: i64) -> Vec<Record> {
    let writer = store.blocking_create(common::spec(name, codec, 2)).unwrap();
    let mut manifests = Vec::new();
    let mut all = Vec::new();
    for p in 0..2 {
        let mut pw = writer.partition(p).unwrap();
        for o in 0..per_partition {
            let r = common::record(o);
            pw.append(&r).unwrap();
            all.push(r);
        }
        manifests.push(pw.finish(0, per_partition).unwrap());
    }
    writer.commit(manifests, chrono::Utc::now()).unwrap();
    all
}

fn read_all(store: &Store, name: &str) -> Result<Vec<Record>, DomainError> {
    let mut out = Vec::new();
    for p in 0..2 {
        for r in store.blocking_read_partition(&id(name), p, ReadBounds::default())? {
            out.push(r?);
        }
    }
    Ok(out)
}

#[test]
fn every_codec_round_trips_on_every_backend() {
    for h in Harness::every(SMALL) {
        for codec in CompressionType::ALL {
            let name = format!("rt-{codec}");
            let written = write(&h.store, &name, codec, 700);
            assert_eq!(
                read_all(&h.store, &name).unwrap(),
                written,
                "{} {codec}",
                h.name()
            );
            let report = h
                .store
                .blocking_verify(&id(&name), &OperationControl::default())
                .unwrap();
            assert!(report.valid, "{} {codec}: {:?}", h.name(), report.problems);
            assert_eq!(report.messages_checked, 1400);
        }
        let listed: Vec<String> = h
            .store
            .blocking_list()
            .unwrap()
            .into_iter()
            .map(|m| m.backup_id)
            .collect();
        assert_eq!(listed.len(), CompressionType::ALL.len(), "{}", h.name());
        // Nothing but manifests and segments is left once every backup is committed.
        for name in h.contents() {
            assert!(
                name.ends_with("manifest.json") || name.ends_with(".seg"),
                "{}: {name}",
                h.name()
            );
        }
    }
}

#[test]
fn segments_larger_than_a_part_go_up_in_parts_and_read_back() {
    let options = StoreOptions {
        block_size: 256 << 10,
        segment_size: 64 << 20,
    };
    for h in Harness::objects(options) {
        // ~1.1 KB per record, 6,000 per partition: one 6.6 MB segment each, two parts.
        let writer = h
            .store
            .blocking_create(common::spec("big", CompressionType::None, 2))
            .unwrap();
        let mut manifests = Vec::new();
        let mut written = Vec::new();
        for p in 0..2 {
            let mut pw = writer.partition(p).unwrap();
            for o in 0..6_000 {
                let mut r = common::record(o);
                r.value = Some(vec![(o % 251) as u8; 1100]);
                pw.append(&r).unwrap();
                written.push(r);
            }
            manifests.push(pw.finish(0, 6_000).unwrap());
        }
        let manifest = writer.commit(manifests, chrono::Utc::now()).unwrap();
        let seg = &manifest.partitions[0].segments[0];
        assert!(seg.size_bytes > MIN_PART_SIZE as u64, "{}", seg.size_bytes);
        assert_eq!(read_all(&h.store, "big").unwrap(), written);
        assert!(matches!(h.open_uploads(), None | Some(0)), "{}", h.name());
    }
}

#[test]
fn a_flipped_byte_is_refused_by_verify_and_by_reads() {
    for h in Harness::every(SMALL) {
        write(&h.store, "flip", CompressionType::Zstd, 300);
        let manifest = h.store.blocking_manifest(&id("flip")).unwrap();
        let file = format!("flip/{}", manifest.partitions[1].segments[0].file);
        let mut bytes = h.read_raw(&file);
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        h.write_raw(&file, bytes);

        let report = h
            .store
            .blocking_verify(&id("flip"), &OperationControl::default())
            .unwrap();
        assert!(!report.valid, "{}", h.name());
        assert!(
            report.problems.iter().any(|p| p.contains("p1/")),
            "{}: {:?}",
            h.name(),
            report.problems
        );
        let integrity = h
            .store
            .blocking_verify_integrity(&id("flip"), &OperationControl::default())
            .unwrap();
        assert!(!integrity.valid, "{}", h.name());
        assert!(
            matches!(
                read_all(&h.store, "flip"),
                Err(DomainError::CorruptArchive { .. })
            ),
            "{}",
            h.name()
        );
    }
}

#[test]
fn of_concurrent_creates_of_one_id_exactly_one_wins() {
    for h in Harness::every(SMALL) {
        for round in 0..3 {
            let name = format!("race-{round}");
            let outcomes: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..6)
                    .map(|_| {
                        scope.spawn(|| {
                            h.store
                                .blocking_create(common::spec(&name, CompressionType::None, 1))
                        })
                    })
                    .collect();
                handles.into_iter().map(|t| t.join().unwrap()).collect()
            });
            let (won, lost): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(Result::is_ok);
            assert_eq!(won.len(), 1, "{} round {round}", h.name());
            for e in lost {
                assert!(
                    matches!(e, Err(DomainError::Conflict { .. })),
                    "{}: {:?}",
                    h.name(),
                    e.err()
                );
            }
            for w in won {
                w.unwrap().abort().unwrap();
            }
        }
        // Aborted writers leave nothing.
        assert!(h.contents().is_empty(), "{}: {:?}", h.name(), h.contents());
    }
}

#[test]
fn a_committed_id_conflicts_and_delete_frees_it() {
    for h in Harness::every(SMALL) {
        write(&h.store, "once", CompressionType::Lz4, 50);
        assert!(matches!(
            h.store
                .blocking_create(common::spec("once", CompressionType::None, 1)),
            Err(DomainError::Conflict { .. })
        ));
        h.store.blocking_delete(&id("once")).unwrap();
        assert!(h.contents().is_empty(), "{}: {:?}", h.name(), h.contents());
        assert!(matches!(
            h.store.blocking_delete(&id("once")),
            Err(DomainError::NotFound { .. })
        ));
        write(&h.store, "once", CompressionType::Lz4, 50);
        assert_eq!(h.store.blocking_list().unwrap().len(), 1, "{}", h.name());
    }
}

#[test]
fn a_backup_copied_by_hand_reads_the_same_on_the_other_backend() {
    let [local, s3, azure] = Harness::every(SMALL);
    for cloud in [s3, azure] {
        let (disk, up) = (
            format!("disk-{}", cloud.name()),
            format!("up-{}", cloud.name()),
        );
        let written = write(&local.store, &disk, CompressionType::Snappy, 400);
        for file in local
            .contents()
            .into_iter()
            .filter(|f| f.starts_with(&disk))
        {
            cloud.write_raw(&file, local.read_raw(&file));
        }
        assert_eq!(
            read_all(&cloud.store, &disk).unwrap(),
            written,
            "{}",
            cloud.name()
        );

        let written = write(&cloud.store, &up, CompressionType::Gzip, 400);
        for file in cloud.contents().into_iter().filter(|f| f.starts_with(&up)) {
            local.write_raw(&file, cloud.read_raw(&file));
        }
        assert_eq!(
            read_all(&local.store, &up).unwrap(),
            written,
            "{}",
            cloud.name()
        );
        assert!(
            local
                .store
                .blocking_verify(&id(&up), &OperationControl::default())
                .unwrap()
                .valid
        );
    }
}

#[test]
fn a_server_gone_mid_upload_fails_with_a_storage_error_naming_the_bucket() {
    let server = TestS3::start_new();
    let h = Harness::s3_on(&server, SMALL);
    let writer = h
        .store
        .blocking_create(common::spec("cut", CompressionType::None, 1))
        .unwrap();
    let mut pw = writer.partition(0).unwrap();
    for o in 0..100 {
        pw.append(&common::record(o)).unwrap();
    }
    server.kill();
    let started = std::time::Instant::now();
    let failure = (100..100_000)
        .find_map(|o| pw.append(&common::record(o)).err())
        .or_else(|| pw.finish(0, 100_000).err())
        .expect("writing to a dead server must fail");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    match failure {
        DomainError::Storage {
            failure, message, ..
        } => {
            assert_eq!(failure, StorageFailure::Unavailable, "{message}");
            let Place::Bucket { bucket, .. } = &h.place else {
                unreachable!()
            };
            assert!(message.contains(bucket.as_str()), "{message}");
            assert!(!message.contains(S3_SECRET_ACCESS_KEY), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_bucket_is_reported_as_missing() {
    let server = TestS3::shared();
    let config = s3_config(server.endpoint(), "no-such-bucket-here");
    let store = Store::on(Arc::new(ObjectBackend::connect(&config).unwrap()), SMALL).unwrap();
    match store.blocking_list() {
        Err(DomainError::Storage {
            failure, message, ..
        }) => {
            assert_eq!(failure, StorageFailure::Missing, "{message}");
            assert!(message.contains("no-such-bucket-here"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// Tells the child side below where to write (endpoint and bucket, or a directory).
const HOLD_ENV: &str = "KVAULT_TEST_HOLD_UPLOAD";

/// The child side: starts a backup with a segment bigger than a part (so a multipart upload
/// is open) and waits to be killed. Runs only when spawned by the test below.
#[test]
#[ignore = "a child process of a_writer_killed_mid_upload_is_never_listed_and_its_id_is_freed_by_the_sweep, not a test"]
fn hold_an_upload_until_killed() {
    let Ok(target) = std::env::var(HOLD_ENV) else {
        return;
    };
    let options = StoreOptions {
        block_size: 256 << 10,
        segment_size: 64 << 20,
    };
    let config = match target.splitn(3, ' ').collect::<Vec<_>>()[..] {
        ["s3", endpoint, bucket] => Some(s3_config(endpoint, bucket)),
        ["azure", endpoint, container] => Some(azure_config(endpoint, container)),
        _ => None,
    };
    let store = match config {
        Some(config) => {
            Store::on(Arc::new(ObjectBackend::connect(&config).unwrap()), options).unwrap()
        }
        None => Store::local(&target).unwrap(),
    };
    let writer = store
        .blocking_create(common::spec("held", CompressionType::None, 1))
        .unwrap();
    let mut pw = writer.partition(0).unwrap();
    for o in 0..6_000 {
        let mut r = common::record(o);
        r.value = Some(vec![7; 1100]);
        pw.append(&r).unwrap();
    }
    println!("upload-open");
    std::thread::sleep(Duration::from_secs(120));
    drop((pw, writer));
}

#[test]
fn a_writer_killed_mid_upload_is_never_listed_and_its_id_is_freed_by_the_sweep() {
    for h in Harness::every(SMALL) {
        let target = match &h.place {
            Place::Dir(dir) => dir.path().display().to_string(),
            Place::Bucket {
                bucket, provider, ..
            } => {
                let endpoint = match *provider {
                    "s3" => TestS3::shared().endpoint().to_owned(),
                    _ => TestAzurite::shared().endpoint(),
                };
                format!("{provider} {endpoint} {bucket}")
            }
        };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "hold_an_upload_until_killed",
                "--ignored",
                "--nocapture",
            ])
            .env(HOLD_ENV, &target)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let ready = stdout
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("upload-open"));
        assert!(ready, "{}: the child never started its upload", h.name());
        child.kill().unwrap();
        child.wait().unwrap();

        assert!(
            !h.contents().is_empty(),
            "{}: the child wrote nothing",
            h.name()
        );
        assert!(h.store.blocking_list().unwrap().is_empty(), "{}", h.name());
        if matches!(h.place, Place::Bucket { .. }) {
            assert!(matches!(h.open_uploads(), None | Some(1)), "{}", h.name());
            // The dead writer's lease still holds the id until it goes stale.
            assert!(matches!(
                h.store
                    .blocking_create(common::spec("held", CompressionType::None, 1)),
                Err(DomainError::Conflict { .. })
            ));
            std::thread::sleep(Duration::from_millis(2_500));
        }
        assert_eq!(h.store.sweep_abandoned(), 1, "{}", h.name());
        assert!(h.contents().is_empty(), "{}: {:?}", h.name(), h.contents());
        assert!(matches!(h.open_uploads(), None | Some(0)), "{}", h.name());
        write(&h.store, "held", CompressionType::None, 10);
        assert_eq!(h.store.blocking_list().unwrap().len(), 1, "{}", h.name());
    }
}

/// Raw access to `bucket` of the shared test server.
fn raw_bucket(bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(TestS3::shared().endpoint())
            .with_region("us-east-1")
            .with_allow_http(true)
            .with_access_key_id(S3_ACCESS_KEY_ID)
            .with_secret_access_key(S3_SECRET_ACCESS_KEY)
            .build()
            .unwrap(),
    )
}

fn put_raw(raw: &Arc<dyn ObjectStore>, key: &str, body: &[u8]) {
    runtime()
        .block_on(raw.put(&Key::from(key), PutPayload::from(body.to_vec())))
        .unwrap();
}

fn raw_keys(raw: &Arc<dyn ObjectStore>) -> Vec<String> {
    let mut keys: Vec<String> = runtime()
        .block_on(raw.list(None).try_collect::<Vec<_>>())
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    keys.sort();
    keys
}

/// Objects another application keeps beside kvault's: under a name that is a valid backup
/// id, beside a backup, deeper, and under names kvault never writes.
const FOREIGN: [&str; 5] = [
    "other-app/report.csv",
    "other-app/p0/notes.txt",
    "other-app/_uploads/list",
    "readme.txt",
    ".hidden/x",
];

#[test]
fn a_foreign_object_in_an_exclusive_bucket_root_survives_the_sweep() {
    let server = TestS3::shared();
    let bucket = server.fresh_bucket("bare");
    let raw = raw_bucket(&bucket);
    for key in FOREIGN {
        put_raw(&raw, key, b"not kvault's");
    }
    let config = ObjectConfig {
        url: format!("s3://{bucket}"),
        exclusive_bucket: true,
        ..s3_config(server.endpoint(), &bucket)
    };
    let store = Store::on(Arc::new(ObjectBackend::connect(&config).unwrap()), SMALL).unwrap();
    write(&store, "mine", CompressionType::None, 50);
    // Older than `abandoned_after` (2 s): the sweep judges them by age too.
    std::thread::sleep(Duration::from_millis(3_000));
    store.sweep_abandoned();
    let keys = raw_keys(&raw);
    for key in FOREIGN {
        assert!(keys.contains(&key.to_owned()), "{key} is gone: {keys:?}");
    }
    assert!(
        store
            .blocking_verify(&id("mine"), &OperationControl::default())
            .unwrap()
            .valid
    );
}

#[test]
fn a_foreign_object_under_a_shared_prefix_survives_the_sweep() {
    for h in Harness::objects(SMALL) {
        write(&h.store, "kept", CompressionType::None, 50);
        let Place::Bucket { raw, .. } = &h.place else {
            unreachable!()
        };
        let mut foreign: Vec<String> = FOREIGN.iter().map(|k| format!("vault/{k}")).collect();
        foreign.push("vault/kept/README.md".into());
        foreign.push("outside/report.csv".into());
        for key in &foreign {
            put_raw(raw, key, b"not kvault's");
        }
        std::thread::sleep(Duration::from_millis(3_000));
        h.store.sweep_abandoned();
        let keys = raw_keys(raw);
        for key in &foreign {
            assert!(keys.contains(key), "{key} is gone: {keys:?}");
        }
    }
}

#[test]
fn a_prefixless_url_is_refused_unless_the_bucket_is_exclusive() {
    let server = TestS3::shared();
    let config = ObjectConfig {
        url: "s3://some-bucket".into(),
        ..s3_config(server.endpoint(), "some-bucket")
    };
    match ObjectBackend::connect(&config) {
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("storage.s3.exclusive_bucket"), "{text}");
        }
        Ok(_) => panic!("a bucket root shared with others was accepted"),
    }
}

#[test]
fn a_stale_lease_beside_a_manifest_leaves_the_backup_whole() {
    for h in Harness::objects(SMALL) {
        let written = write(&h.store, "kept", CompressionType::Zstd, 300);
        let before = h.contents();
        // What a writer killed between its manifest and its lease delete leaves, in the format
        // of this version and of the previous one (no attempt).
        h.write_raw(
            "kept/_writing",
            br#"{"pid":1,"host":"gone","refreshed_at":"2026-01-01T00:00:00Z"}"#.to_vec(),
        );
        std::thread::sleep(Duration::from_millis(3_000));
        h.store.sweep_abandoned();
        assert_eq!(h.contents(), before);
        let report = h
            .store
            .blocking_verify(&id("kept"), &OperationControl::default())
            .unwrap();
        assert!(report.valid, "{:?}", report.problems);
        assert_eq!(read_all(&h.store, "kept").unwrap(), written);
    }
}

#[test]
fn a_writer_whose_id_was_taken_over_cannot_touch_the_new_writers_objects() {
    use kvault_domain::ports::ArchiveStore;
    for h in Harness::objects(SMALL) {
        let first = h
            .store
            .blocking_create(common::spec("taken", CompressionType::None, 2))
            .unwrap();
        let mut pw = first.partition(0).unwrap();
        for o in 0..200 {
            pw.append(&common::record(o)).unwrap();
        }
        let first_p0 = pw.finish(0, 200).unwrap();
        let mut first_p1 = first.partition(1).unwrap();
        // Another replica takes the backup over (this one lost the database, not the bucket)
        // and writes it again under the same id.
        runtime()
            .block_on(h.store.discard_unfinished(&id("taken")))
            .unwrap();
        let second = h
            .store
            .blocking_create(common::spec("taken", CompressionType::None, 2))
            .unwrap();
        let mut manifests = Vec::new();
        let mut written = Vec::new();
        for p in 0..2 {
            let mut pw = second.partition(p).unwrap();
            for o in 0..300 {
                let r = common::record(o);
                pw.append(&r).unwrap();
                written.push(r);
            }
            manifests.push(pw.finish(0, 300).unwrap());
        }
        // The first writer's heartbeat runs meanwhile (every 0.5 s); then it writes on, tries to
        // commit, and (committing failed) aborts.
        std::thread::sleep(Duration::from_millis(1_500));
        let finished = (0..200)
            .try_for_each(|o| first_p1.append(&common::record(o)))
            .and_then(|()| first_p1.finish(0, 200));
        let mut parts = vec![first_p0];
        if let Ok(p1) = finished {
            parts.push(p1);
        }
        assert!(
            first.commit(parts, chrono::Utc::now()).is_err(),
            "a writer that lost its lease committed"
        );
        second.commit(manifests, chrono::Utc::now()).unwrap();
        assert_eq!(read_all(&h.store, "taken").unwrap(), written);
        let report = h
            .store
            .blocking_verify(&id("taken"), &OperationControl::default())
            .unwrap();
        assert!(report.valid, "{:?}", report.problems);
        // Once the first writer's remains are old, the sweep leaves the backup alone.
        std::thread::sleep(Duration::from_millis(2_500));
        h.store.sweep_abandoned();
        assert_eq!(read_all(&h.store, "taken").unwrap(), written);
    }
}

#[test]
fn the_local_sweep_leaves_directories_that_are_not_kvaults_alone() {
    let dir = tempfile::tempdir().unwrap();
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(3_600);
    // Named like a staging directory, but not one kvault made: a name that is no backup id,
    // and a valid id whose directory holds someone else's file.
    for (name, file) in [
        ("my photos.partial", "a.jpg"),
        ("album.partial", "notes.txt"),
    ] {
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join(file), b"not kvault's").unwrap();
        std::fs::File::open(&path)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }
    // A dead writer's staging directory (no lock file, long ago) still goes.
    let dead = dir.path().join("dead.partial");
    std::fs::create_dir_all(dead.join("p0")).unwrap();
    std::fs::write(dead.join("p0/00000000000000000000.seg"), b"x").unwrap();
    std::fs::File::open(&dead)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let store = Store::local_with_options(dir.path(), SMALL).unwrap();
    store.sweep_abandoned();
    assert!(dir.path().join("my photos.partial/a.jpg").is_file());
    assert!(dir.path().join("album.partial/notes.txt").is_file());
    assert!(!dead.exists());
}

#[test]
fn an_interrupted_delete_is_never_listed_and_the_sweep_finishes_it_around_a_new_backup() {
    for h in Harness::objects(SMALL) {
        write(&h.store, "again", CompressionType::Lz4, 200);
        let old_files: Vec<String> = h
            .store
            .blocking_manifest(&id("again"))
            .unwrap()
            .partitions
            .iter()
            .flat_map(|p| p.segments.iter().map(|s| format!("again/{}", s.file)))
            .collect();
        let Place::Bucket { raw, .. } = &h.place else {
            unreachable!()
        };
        // What a delete killed right after removing the manifest leaves: its marker and files.
        let manifest = Key::from("vault/again/manifest.json");
        let etag = runtime()
            .block_on(raw.head(&manifest))
            .unwrap()
            .e_tag
            .unwrap();
        let files: Vec<String> = old_files
            .iter()
            .map(|f| f.trim_start_matches("again/").to_owned())
            .collect();
        let marker = serde_json::json!({"manifest_etag": etag, "files": files}).to_string();
        h.write_raw(
            "again/_deleting/0123456789abcdef0123456789abcdef",
            marker.into_bytes(),
        );
        runtime().block_on(raw.delete(&manifest)).unwrap();
        assert!(h.store.blocking_list().unwrap().is_empty());
        // The id is free: a new backup of it is written before any sweep.
        let written = write(&h.store, "again", CompressionType::Zstd, 300);
        std::thread::sleep(Duration::from_millis(2_500));
        assert_eq!(h.store.sweep_abandoned(), 1);
        let left = h.contents();
        for f in &old_files {
            assert!(!left.contains(f), "{f} stayed: {left:?}");
        }
        assert!(!left.iter().any(|f| f.contains("_deleting")), "{left:?}");
        assert_eq!(read_all(&h.store, "again").unwrap(), written);
        assert!(
            h.store
                .blocking_verify(&id("again"), &OperationControl::default())
                .unwrap()
                .valid
        );
    }
}
