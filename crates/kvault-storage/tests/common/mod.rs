//! Shared builders for the storage tests: realistic records and archive specs.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use kvault_domain::ports::ArchiveSpec;
use kvault_domain::{
    BackupId, Compression, CompressionType, Header, Record, TimestampType, TopicMetadata,
};

/// A record with a JSON-ish value, a key, two headers; every 7th is a tombstone with a null
/// key, every 11th has an empty value and a null header value.
pub fn record(offset: i64) -> Record {
    let value = if offset % 7 == 0 {
        None
    } else if offset % 11 == 0 {
        Some(Vec::new())
    } else {
        Some(
            format!(
                "{{\"id\":{offset},\"name\":\"user-{}\",\"bytes\":[0,255,{}]}}",
                offset % 97,
                offset % 256
            )
            .into_bytes(),
        )
    };
    Record {
        offset,
        timestamp: 1_700_000_000_000 + offset * 10,
        timestamp_type: TimestampType::CreateTime,
        key: if offset % 7 == 0 {
            None
        } else {
            Some(format!("key-{}", offset % 13).into_bytes())
        },
        value,
        headers: vec![
            Header {
                key: "trace".into(),
                value: Some(offset.to_le_bytes().to_vec()),
            },
            Header {
                key: "trace".into(),
                value: if offset % 11 == 0 {
                    None
                } else {
                    Some(vec![0xff, 0x00])
                },
            },
        ],
    }
}

pub fn spec(id: &str, codec: CompressionType, partitions: i32) -> ArchiveSpec {
    ArchiveSpec {
        backup_id: BackupId::parse(id).unwrap(),
        archive_uid: kvault_domain::ids::new_uid(),
        cluster_id: kvault_domain::ClusterId::parse("local").expect("cluster id"),
        topic: TopicMetadata {
            name: "events".into(),
            partition_count: partitions,
            replication_factor: 1,
            configs: BTreeMap::from([("cleanup.policy".to_owned(), "delete".to_owned())]),
        },
        compression: Compression::new(codec, None).unwrap(),
        include_keys: true,
        include_headers: true,
        created_at: Utc.timestamp_millis_opt(1_700_000_000_000).unwrap(),
        consumer_groups: Vec::new(),
        backup_set: None,
        chain: None,
    }
}
