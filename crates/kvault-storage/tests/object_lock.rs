//! S3 Object Lock on a real S3 server (moto, started by the testkit): every object of a
//! committed archive is locked, as an independent client sees it; a delete, a sweep and a
//! crypto-shred leave a locked archive whole and say why; a re-wrap keeps the lock; once the
//! lock expires the delete works; a bucket without Object Lock is refused at connect.

mod common;

use std::sync::Arc;
use std::time::Duration;

use kvault_domain::{BackupId, CompressionType, DomainError, StorageFailure};
use kvault_storage::backend::object::{
    LockMode, ObjectBackend, ObjectConfig, ObjectLock, MIN_PART_SIZE,
};
use kvault_storage::crypt::{Kek, LocalKeys};
use kvault_storage::{Store, StoreOptions};
use kvault_testkit::s3::{TestS3, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY};

const SMALL: StoreOptions = StoreOptions {
    block_size: 4096,
    segment_size: 32 * 1024,
};

fn id(s: &str) -> BackupId {
    BackupId::parse(s).unwrap()
}

fn config(bucket: &str, retain: Duration) -> ObjectConfig {
    ObjectConfig {
        url: format!("s3://{bucket}/vault"),
        endpoint: Some(TestS3::shared().endpoint().to_owned()),
        region: Some("us-east-1".into()),
        allow_http: true,
        access_key_id: Some(S3_ACCESS_KEY_ID.into()),
        secret_access_key: Some(S3_SECRET_ACCESS_KEY.into()),
        part_size: MIN_PART_SIZE,
        max_retries: 1,
        retry_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(20),
        object_lock: Some(ObjectLock {
            mode: LockMode::Governance,
            retain,
        }),
        ..ObjectConfig::default()
    }
}

fn locked_store(bucket: &str, retain: Duration) -> Store {
    let backend = ObjectBackend::connect(&config(bucket, retain)).unwrap();
    Store::on(Arc::new(backend), SMALL).unwrap()
}

/// Writes and commits backup `name`: one partition of `records` records.
fn write(store: &Store, name: &str, records: i64) {
    let writer = store
        .blocking_create(common::spec(name, CompressionType::None, 1))
        .unwrap();
    let mut pw = writer.partition(0).unwrap();
    for o in 0..records {
        pw.append(&common::record(o)).unwrap();
    }
    let manifests = vec![pw.finish(0, records).unwrap()];
    writer.commit(manifests, chrono::Utc::now()).unwrap();
}

/// The retain-until date the server reports for `key`, asked by an independent client.
fn retention_seen(bucket: &str, key: &str) -> Option<String> {
    TestS3::shared()
        .retention_of(bucket, key)
        .map(|(mode, until)| {
            assert_eq!(mode, "GOVERNANCE");
            until
        })
}

fn assert_locked(e: DomainError, name: &str) {
    let text = e.to_string();
    assert!(
        matches!(
            e,
            DomainError::Storage {
                failure: StorageFailure::Locked,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(text.contains(name) && text.contains("locked"), "{text}");
}

#[test]
fn every_object_of_a_committed_archive_is_locked_and_a_delete_leaves_it_whole() {
    let bucket = TestS3::shared().fresh_locked_bucket("lock");
    let store = locked_store(&bucket, Duration::from_secs(86_400));
    write(&store, "kept", 3_000);

    let manifest = store.blocking_manifest(&id("kept")).unwrap();
    let until = manifest
        .immutable_until
        .expect("the manifest records its lock");
    let ahead = until - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::hours(23) && ahead <= chrono::Duration::hours(24),
        "{until}"
    );
    let segments: Vec<&str> = manifest.partitions[0]
        .segments
        .iter()
        .map(|s| s.file.as_str())
        .collect();
    assert!(segments.len() >= 2, "{segments:?}");
    // The server, asked directly, holds every object of the archive until that instant.
    let expected = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for file in segments.iter().copied().chain(["manifest.json"]) {
        let seen = retention_seen(&bucket, &format!("vault/kept/{file}"));
        let seen = seen.unwrap_or_else(|| panic!("{file} has no retention"));
        assert!(
            seen.starts_with(expected.trim_end_matches('Z')),
            "{file}: {seen} vs {expected}"
        );
    }

    // Someone holding the bucket's credentials cannot erase a locked version either.
    let erased = TestS3::shared().try_erase(&bucket, &format!("vault/kept/{}", segments[0]));
    assert_eq!(erased, ["AccessDenied"]);
    let versions_before = TestS3::shared().versions(&bucket);
    assert_locked(store.blocking_delete(&id("kept")).unwrap_err(), "kept");
    store.sweep_abandoned();
    assert_eq!(TestS3::shared().versions(&bucket), versions_before);
    let listed: Vec<String> = store
        .blocking_list()
        .unwrap()
        .into_iter()
        .map(|m| m.backup_id)
        .collect();
    assert_eq!(listed, ["kept"]);
    let records: usize = store
        .blocking_read_partition(&id("kept"), 0, Default::default())
        .unwrap()
        .count();
    assert_eq!(records, 3_000);
}

#[test]
fn once_the_lock_expires_the_delete_works() {
    let bucket = TestS3::shared().fresh_locked_bucket("expiry");
    let store = locked_store(&bucket, Duration::from_secs(3));
    write(&store, "brief", 100);
    let until = store
        .blocking_manifest(&id("brief"))
        .unwrap()
        .immutable_until
        .unwrap();
    assert_locked(store.blocking_delete(&id("brief")).unwrap_err(), "brief");
    let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default();
    std::thread::sleep(wait + Duration::from_millis(1_500));
    store.blocking_delete(&id("brief")).unwrap();
    assert!(store.blocking_list().unwrap().is_empty());
}

#[test]
fn a_locked_archive_cannot_be_shredded_but_its_rewrapped_manifest_stays_locked() {
    let bucket = TestS3::shared().fresh_locked_bucket("keys");
    let kek = |b: u8| Kek::parse(&hex::encode([b; 32])).unwrap();
    let keys = [("k1".to_owned(), kek(1)), ("k2".to_owned(), kek(2))];
    let store = locked_store(&bucket, Duration::from_secs(86_400)).with_keys(Arc::new(
        LocalKeys::new(keys.into_iter().collect(), Some("k1")).unwrap(),
    ));
    write(&store, "secret", 200);
    let until = store
        .blocking_manifest(&id("secret"))
        .unwrap()
        .immutable_until;

    assert_locked(store.blocking_shred(&id("secret")).unwrap_err(), "secret");
    assert!(store.blocking_rewrap(&id("secret"), "k2").unwrap().changed);
    let rewrapped = store.blocking_manifest(&id("secret")).unwrap();
    assert_eq!(rewrapped.encryption.unwrap().key_id, "k2");
    assert_eq!(rewrapped.immutable_until, until);
    let seen = retention_seen(&bucket, "vault/secret/manifest.json");
    assert!(seen.is_some(), "the re-wrapped manifest is locked too");
    assert_locked(store.blocking_delete(&id("secret")).unwrap_err(), "secret");
}

#[test]
fn a_lock_kvault_did_not_set_is_honoured_too() {
    let bucket = TestS3::shared().fresh_locked_bucket("theirs");
    let unlocked = ObjectConfig {
        object_lock: None,
        ..config(&bucket, Duration::from_secs(60))
    };
    let plain = Store::on(Arc::new(ObjectBackend::connect(&unlocked).unwrap()), SMALL).unwrap();
    write(&plain, "owned", 50);
    assert!(plain
        .blocking_manifest(&id("owned"))
        .unwrap()
        .immutable_until
        .is_none());
    // The bucket's owner locks the manifest (a default retention rule would do the same).
    TestS3::shared().lock_for_days(&bucket, "vault/owned/manifest.json", 1);
    let store = locked_store(&bucket, Duration::from_secs(60));
    assert_locked(store.blocking_delete(&id("owned")).unwrap_err(), "owned");
    assert_eq!(store.blocking_list().unwrap().len(), 1);
}

#[test]
fn a_bucket_without_object_lock_is_refused_at_connect() {
    let bucket = TestS3::shared().fresh_bucket("unlocked");
    let e = ObjectBackend::connect(&config(&bucket, Duration::from_secs(60))).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("does not have Object Lock enabled"), "{text}");
}
