//! kvault's Kafka adapter: backup, restore, migrate and drain over rdkafka (librdkafka).
//!
//! - [`engine`]: [`KafkaEngine`], the domain's operation traits (`Engine`) over every
//!   configured cluster and one archive store: what the composition root wires in.
//! - [`cluster`]: [`KafkaCluster`], one cluster (ping, topic checks, admin client).
//! - [`client`]: [`ClusterConfig`] and the librdkafka settings for readers, producers and
//!   admin clients.
//! - [`security`]: the connection check every operation starts with, failing fast and naming
//!   the cause when the cluster refuses kvault's credentials or its TLS handshake fails.
//! - [`admin`]: topic metadata, watermarks, offsets for timestamps, topic configs, creating
//!   and deleting topics.
//! - `backup`: a consistent cut of a topic streamed into an
//!   [`ArchiveStore`](kvault_domain::ports::ArchiveStore), partitions read concurrently.
//! - `restore`: an archive produced back into a topic, byte for byte.
//! - `groups`: consumer groups' committed offsets read, translated and committed without
//!   joining (what backups record and restore and migrate put back).
//! - `produce`: the record building and back-pressured sending restore and migrate share.
//! - [`sample`]: sample data for trying kvault on an empty broker.
//! - [`partitioner`]: Kafka's murmur2 key partitioner; [`throttle`]: messages-per-second limits.
//! - `migrate`, `transform`, `drain`: cluster-to-cluster copy with per-message transformations,
//!   and consumer-group draining.
//! - [`lag`]: consumer-group lag (records, and the next unconsumed record's timestamp) read
//!   without joining the group: the domain's `ConsumerLag` port.
//!
//! This crate never knows the archive format: it drives the `ArchiveStore` port of
//! `kvault-domain`, and archive I/O runs on blocking threads fed by bounded channels.

pub mod admin;
mod backup;
pub mod client;
pub mod cluster;
mod consume;
pub mod engine;
pub mod error;
mod groups;
pub mod partitioner;
mod produce;
mod restore;
pub mod sample;
pub mod security;
pub mod throttle;

pub mod drain;
pub mod lag;
pub mod migrate;
pub mod transform;
mod tuning;

pub use client::ClusterConfig;
pub use cluster::KafkaCluster;
pub use engine::KafkaEngine;
pub use migrate::migrate;
