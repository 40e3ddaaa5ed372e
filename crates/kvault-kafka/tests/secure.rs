//! Production-style clusters on a real broker: SCRAM-SHA-512 over TLS and TLS alone, with
//! certificates made at test time. Backup, restore (offsets and consumer groups), migrate
//! between a plain and an authenticated cluster, drain; a password read from a file that is
//! rotated between operations; and the refusals (wrong password, unknown CA, hostname
//! mismatch, expired certificate), each reported as what it is within seconds, never with the
//! secret in the message. The independent client of the testkit checks what reached the
//! broker.

mod common;

use std::time::{Duration, Instant};

use common::{backup, request, restore, store};
use kvault_domain::drain::{DrainRequest, DrainStatus, DrainStrategy};
use kvault_domain::groups::{GroupChoice, GroupTranslationStatus};
use kvault_domain::job::OperationControl;
use kvault_domain::migrate::{MigrateRequest, OnEvaluationError};
use kvault_domain::restore::RestoreRequest;
use kvault_domain::{ClusterId, CompressionType, DomainError, ErrorKind, KafkaFailure};
use kvault_kafka::{migrate, ClusterConfig, KafkaCluster};
use kvault_testkit::secure::{SecureBroker, ServerCert, SASL_PASSWORD};
use kvault_testkit::{TestBroker, TestRecord};

/// A refusal must be reported well before librdkafka's own timeouts would end the operation.
const REFUSAL_BOUND: Duration = Duration::from_secs(10);
const WRONG_PASSWORD: &str = "wrong-pw-Zx81-never-printed";

fn cluster_with(id: &str, bootstrap: &str, props: Vec<(String, String)>) -> KafkaCluster {
    let mut config = ClusterConfig::new(bootstrap);
    config.properties.extend(props);
    KafkaCluster::connect(ClusterId::parse(id).unwrap(), &config).unwrap()
}

fn sasl_cluster(broker: &SecureBroker, password: &str) -> KafkaCluster {
    cluster_with("secure", broker.bootstrap(), broker.properties(password))
}

/// Records exercising the byte-for-byte promise: null key, tombstone, empty value, headers
/// (duplicate, empty, null), across three partitions.
fn awkward_records() -> Vec<TestRecord> {
    (0..90)
        .map(|i| TestRecord {
            partition: Some(i % 3),
            key: (i % 10 != 0).then(|| format!("k{i}").into_bytes()),
            value: match i % 15 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(format!("v{i}").into_bytes()),
            },
            headers: vec![
                ("h".into(), Some(b"1".to_vec())),
                ("h".into(), Some(Vec::new())),
                ("n".into(), None),
            ],
            timestamp: Some(1_760_000_000_000 + i64::from(i)),
        })
        .collect()
}

/// The records of `topic` as the independent client reads them (offsets left out).
async fn contents(broker: &TestBroker, topic: &str) -> Vec<String> {
    broker
        .consume_all(topic)
        .await
        .into_iter()
        .map(|r| {
            format!(
                "{}:{:?}:{:?}:{:?}:{:?}",
                r.partition, r.key, r.value, r.headers, r.timestamp
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_over_sasl_ssl_keep_bytes_offsets_and_groups() {
    let secure = SecureBroker::shared_sasl_ssl().await;
    let broker = secure.broker();
    let kafka = sasl_cluster(secure, SASL_PASSWORD);
    let (_dir, store) = store();
    let topic = broker.unique_topic("sasl-src");
    broker.create_topic(&topic, 3).await;
    broker.produce(&topic, &awkward_records()).await;
    let group = broker.unique_topic("sasl-reader");
    broker
        .commit_group(&group, &topic, &[(0, 7), (1, 30), (2, 0)])
        .await;

    let result = backup(&kafka, &store, request(&topic, CompressionType::Zstd))
        .await
        .expect("backup over SASL_SSL");
    assert_eq!(result.total_messages, 90);
    assert!(result.consumer_groups.contains(&group), "{result:?}");

    let target = broker.unique_topic("sasl-dst");
    let mut req = RestoreRequest::new(&result.backup_id, &target);
    req.preserve_offsets = true;
    req.restore_consumer_groups = Some(GroupChoice::Only(vec![group.clone()]));
    let restored = restore(&kafka, &store, req)
        .await
        .expect("restore over SASL_SSL");
    assert_eq!(restored.messages_restored, 90);
    assert_eq!(
        restored.consumer_groups_restored[0].status,
        GroupTranslationStatus::Translated
    );
    assert_eq!(
        contents(broker, &target).await,
        contents(broker, &topic).await
    );
    let offsets = |records: Vec<kvault_testkit::ConsumedRecord>| -> Vec<(i32, i64)> {
        records.iter().map(|r| (r.partition, r.offset)).collect()
    };
    assert_eq!(
        offsets(broker.consume_all(&target).await),
        offsets(broker.consume_all(&topic).await),
        "preserve_offsets"
    );
    assert_eq!(
        broker.group_offsets(&group, &target, 3).await,
        vec![Some(7), Some(30), Some(0)]
    );
}

fn migration(source: &str, topic: &str, target: &str, target_topic: &str) -> MigrateRequest {
    MigrateRequest {
        source_cluster: source.into(),
        source_topic: topic.into(),
        target_cluster: target.into(),
        target_topic: target_topic.into(),
        max_messages: None,
        transformation: None,
        rate_limit_per_second: None,
        on_error: OnEvaluationError::Skip,
        translate_consumer_groups: Vec::new(),
        consumer_groups_mode: Default::default(),
        if_exists: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_between_a_plain_and_a_sasl_ssl_cluster_and_drain_there() {
    let secure = SecureBroker::shared_sasl_ssl().await;
    let plain = TestBroker::get().await;
    let (plain_kafka, sasl_kafka) = (
        cluster_with("plain", plain.bootstrap(), Vec::new()),
        sasl_cluster(secure, SASL_PASSWORD),
    );
    let topic = plain.unique_topic("plain-src");
    plain.create_topic(&topic, 3).await;
    plain.produce(&topic, &awkward_records()).await;

    // Plain -> authenticated.
    let target = secure.broker().unique_topic("mig-dst");
    let req = migration("plain", &topic, "secure", &target);
    let result = migrate(
        &plain_kafka,
        &sasl_kafka,
        "m-in".into(),
        req,
        OperationControl::new(),
    )
    .await
    .expect("migrate into the SASL_SSL cluster");
    assert_eq!(result.messages_written, 90);
    assert_eq!(
        contents(secure.broker(), &target).await,
        contents(plain, &topic).await
    );
    // And back out again.
    let back = plain.unique_topic("mig-back");
    let req = migration("secure", &target, "plain", &back);
    migrate(
        &sasl_kafka,
        &plain_kafka,
        "m-out".into(),
        req,
        OperationControl::new(),
    )
    .await
    .expect("migrate out of the SASL_SSL cluster");
    assert_eq!(contents(plain, &back).await, contents(plain, &topic).await);

    // Drain on the authenticated cluster: a group that has read everything is drained.
    let group = secure.broker().unique_topic("sasl-drained");
    secure
        .broker()
        .commit_group(&group, &target, &[(0, 30), (1, 30), (2, 30)])
        .await;
    let drained = sasl_kafka
        .drain(
            DrainRequest {
                group_id: group,
                topics: vec![target],
                max_lag: 0,
                timeout_seconds: 10,
                check_interval_ms: 100,
                strategy: DrainStrategy::LagBased,
            },
            OperationControl::new(),
        )
        .await
        .expect("drain over SASL_SSL");
    assert_eq!(drained.status, DrainStatus::Drained, "{drained:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_over_tls_only() {
    let secure = SecureBroker::tls(ServerCert::Valid).await;
    let broker = secure.broker();
    let kafka = cluster_with("tls", secure.bootstrap(), secure.properties(""));
    let (_dir, store) = store();
    let topic = broker.unique_topic("tls-src");
    broker.create_topic(&topic, 3).await;
    broker.produce(&topic, &awkward_records()).await;
    let result = backup(&kafka, &store, request(&topic, CompressionType::Lz4))
        .await
        .expect("backup over SSL");
    let target = broker.unique_topic("tls-dst");
    let restored = restore(
        &kafka,
        &store,
        RestoreRequest::new(&result.backup_id, &target),
    )
    .await
    .expect("restore over SSL");
    assert_eq!(restored.messages_restored, 90);
    assert_eq!(
        contents(broker, &target).await,
        contents(broker, &topic).await
    );
}

/// Runs `ping` and the start of a backup against `kafka`, both of which must fail with
/// `failure` within the bound; returns the backup's error.
async fn refused(kafka: &KafkaCluster, topic: &str, failure: KafkaFailure) -> DomainError {
    let started = Instant::now();
    let ping = kafka.ping().await.expect_err("ping must be refused");
    assert_eq!(ping.kind(), ErrorKind::Kafka(failure), "{ping}");
    let (_dir, store) = store();
    let err = backup(kafka, &store, request(topic, CompressionType::None))
        .await
        .expect_err("backup must be refused");
    assert_eq!(err.kind(), ErrorKind::Kafka(failure), "{err}");
    assert!(
        started.elapsed() < REFUSAL_BOUND * 2,
        "two refusals took {:?}",
        started.elapsed()
    );
    let text = format!("{err} {err:?} {ping} {ping:?}");
    for secret in [SASL_PASSWORD, WRONG_PASSWORD] {
        assert!(!text.contains(secret), "the secret leaked: {text}");
    }
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_authentication_error_at_once() {
    let secure = SecureBroker::shared_sasl_ssl().await;
    let kafka = sasl_cluster(secure, WRONG_PASSWORD);
    let started = Instant::now();
    let err = refused(&kafka, "anything", KafkaFailure::Authentication).await;
    assert!(started.elapsed() < REFUSAL_BOUND, "{:?}", started.elapsed());
    let text = err.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains("cluster 'secure'"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_problems_are_tls_errors_that_say_which() {
    // An unknown CA: the client trusts a CA that did not sign the broker's certificate.
    let secure = SecureBroker::shared_sasl_ssl().await;
    let mut props = secure.properties(SASL_PASSWORD);
    let other = secure.pki().other_ca().to_string_lossy().into_owned();
    props.retain(|(k, _)| k != "ssl.ca.location");
    props.push(("ssl.ca.location".into(), other));
    let kafka = cluster_with("secure", secure.bootstrap(), props);
    let text = refused(&kafka, "t", KafkaFailure::Tls).await.to_string();
    assert!(text.contains("certificate verify failed"), "{text}");
    assert!(text.contains("unknown CA"), "{text}");

    for (cert, cause) in [
        (ServerCert::WrongHost, "hostname mismatch"),
        (ServerCert::Expired, "expired"),
    ] {
        let broker = SecureBroker::tls(cert).await;
        let kafka = cluster_with("tls", broker.bootstrap(), broker.properties(""));
        let text = refused(&kafka, "t", KafkaFailure::Tls).await.to_string();
        assert!(text.contains(cause), "{cert:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_is_read_again_by_each_operation() {
    let secure = SecureBroker::shared_sasl_ssl().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kafka-password");
    std::fs::write(&file, format!("{WRONG_PASSWORD}\n")).unwrap();
    let mut props = secure.properties("");
    props.retain(|(k, _)| k != "sasl.password");
    props.push((
        "sasl.password_file".into(),
        file.to_string_lossy().into_owned(),
    ));
    let kafka = cluster_with("secure", secure.bootstrap(), props);
    refused(&kafka, "t", KafkaFailure::Authentication).await;
    // Rotated in place, as a secret store does: the same cluster object, no restart.
    std::fs::write(&file, format!("{SASL_PASSWORD}\n")).unwrap();
    kafka.ping().await.expect("the rotated password is used");
    let topics = kafka.list_topics().await.expect("list topics");
    assert!(!topics.iter().any(|t| t.contains(SASL_PASSWORD)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_against_a_tls_listener_and_tls_against_a_plaintext_one() {
    let tls = SecureBroker::tls(ServerCert::Valid).await;
    let kafka = cluster_with("tls", tls.bootstrap(), Vec::new());
    let text = refused(&kafka, "t", KafkaFailure::Tls).await.to_string();
    assert!(text.contains("does the listener speak TLS"), "{text}");

    let plain = TestBroker::get().await;
    let props = vec![("security.protocol".to_owned(), "SSL".to_owned())];
    let kafka = cluster_with("plain", plain.bootstrap(), props);
    let text = refused(&kafka, "t", KafkaFailure::Tls).await.to_string();
    assert!(text.contains("SSL handshake failed"), "{text}");
}
