//! From `storage.url` to a client: `s3://bucket/prefix` builds an S3 client, `az://container/prefix`
//! an Azure Blob one. Everything after this (leases, conditional writes, multipart uploads,
//! listing, the sweep) goes through `object_store`'s two traits, the same for both.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use super::lock::{Locker, SharedLocker};
use super::{ObjectConfig, MIN_PART_SIZE};
use crate::error::{Result, StorageError};

/// A client and where in it the backups live.
pub(super) struct Connected {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) multipart: Arc<dyn MultipartStore>,
    /// The key prefix every backup lives under (may be empty).
    pub(super) root: Key,
    /// `s3://bucket/prefix` or `az://container/prefix`, for messages.
    pub(super) location: String,
    /// Object Lock requests to the bucket, when `storage.s3.object_lock` is set.
    pub(super) lock: Option<SharedLocker>,
}

/// The object storage providers kvault writes to, by url scheme.
#[derive(Clone, Copy)]
enum Provider {
    S3,
    Azure,
}

impl Provider {
    fn of(url: &str) -> Option<(Self, &str)> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return Some((Self::S3, rest));
        }
        url.strip_prefix("az://").map(|rest| (Self::Azure, rest))
    }

    fn scheme(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Azure => "az",
        }
    }

    /// What the top-level name is called, for messages.
    fn container_word(self) -> &'static str {
        match self {
            Self::S3 => "bucket",
            Self::Azure => "container",
        }
    }
}

fn invalid(field: &'static str, value: &str, message: String) -> StorageError {
    StorageError::InvalidInput {
        field,
        value: value.to_owned(),
        message,
    }
}

/// Checks `config` and builds the client its url names.
pub(super) fn connect(config: &ObjectConfig) -> Result<Connected> {
    let url = config.url.as_str();
    let (provider, rest) = Provider::of(url).ok_or_else(|| {
        invalid(
            "storage.url",
            url,
            "object storage urls start with s3:// (s3://bucket/prefix) or az:// \
             (az://container/prefix)"
                .into(),
        )
    })?;
    let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let word = provider.container_word();
    if container.is_empty() {
        return Err(invalid("storage.url", url, format!("names no {word}")));
    }
    if prefix.trim_matches('/').is_empty() && !config.exclusive_bucket {
        return Err(invalid(
            "storage.url",
            url,
            format!(
                "names no prefix: kvault keeps its backups under a prefix of a {word} others \
                 may share ({scheme}://{word}/kvault); to use the whole {word}, set \
                 storage.s3.exclusive_bucket: true, which says nothing but kvault writes there",
                scheme = provider.scheme()
            ),
        ));
    }
    if config.part_size < MIN_PART_SIZE {
        return Err(invalid(
            "storage.s3.part_size",
            &config.part_size.to_string(),
            format!("must be at least {MIN_PART_SIZE} bytes (S3's smallest part)"),
        ));
    }
    let mut lock = None;
    let (store, multipart): (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) = match provider {
        Provider::S3 => {
            let (client, addressed) = s3(config, container)?;
            let client = Arc::new(client);
            if let Some(policy) = config.object_lock {
                let locker = Locker::new(
                    &client,
                    &client_options(config),
                    addressed.bucket_url(container),
                    addressed.region,
                    policy,
                )
                .map_err(|e| cannot_configure(config, "S3 Object Lock", e))?;
                lock = Some(Arc::new(locker));
            }
            (client.clone(), client)
        }
        Provider::Azure if config.object_lock.is_some() => {
            return Err(invalid(
                "storage.s3.object_lock",
                url,
                "Object Lock is an S3 feature; kvault does not set Azure immutability \
                 policies"
                    .into(),
            ))
        }
        Provider::Azure => {
            let client = Arc::new(azure(config, container)?);
            (client.clone(), client)
        }
    };
    let root = Key::from(prefix.trim_matches('/'));
    let location = format!("{}://{container}/{root}", provider.scheme());
    Ok(Connected {
        store,
        multipart,
        root,
        location: location.trim_end_matches('/').to_owned(),
        lock,
    })
}

/// Retries and timeouts, the same for every provider.
fn retry(config: &ObjectConfig) -> RetryConfig {
    RetryConfig {
        max_retries: config.max_retries,
        retry_timeout: config.retry_timeout,
        ..RetryConfig::default()
    }
}

fn client_options(config: &ObjectConfig) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(config.connect_timeout)
        .with_timeout(config.request_timeout)
        .with_allow_http(config.allow_http)
}

fn cannot_configure(config: &ObjectConfig, what: &str, e: object_store::Error) -> StorageError {
    invalid(
        "storage",
        &config.url,
        format!("cannot configure the {what} client: {e}"),
    )
}

/// Where the S3 client sends its requests, as the builder resolved it (settings, then the
/// `AWS_*` environment): what Object Lock requests, made outside the client, must match.
struct Addressed {
    endpoint: Option<String>,
    region: String,
    virtual_hosted: bool,
}

impl Addressed {
    /// `{endpoint}/{bucket}` (path style), the endpoint itself when it is virtual-hosted
    /// style, or AWS's `https://{bucket}.s3.{region}.amazonaws.com`.
    fn bucket_url(&self, bucket: &str) -> String {
        match &self.endpoint {
            Some(endpoint) if self.virtual_hosted => endpoint.trim_end_matches('/').to_owned(),
            Some(endpoint) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            None => format!("https://{bucket}.s3.{}.amazonaws.com", self.region),
        }
    }
}

fn s3(config: &ObjectConfig, bucket: &str) -> Result<(object_store::aws::AmazonS3, Addressed)> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_allow_http(config.allow_http)
        .with_retry(retry(config))
        .with_client_options(client_options(config));
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &config.region {
        builder = builder.with_region(region);
    }
    if config.object_lock.is_some() {
        // A bucket with a default retention rule takes a PUT only with a checksum.
        builder = builder.with_checksum_algorithm(object_store::aws::Checksum::SHA256);
    }
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
    }
    let addressed = Addressed {
        endpoint: builder.get_config_value(&AmazonS3ConfigKey::Endpoint),
        region: builder
            .get_config_value(&AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".to_owned()),
        virtual_hosted: builder
            .get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest)
            .is_some_and(|v| v == "true"),
    };
    let client = builder
        .build()
        .map_err(|e| cannot_configure(config, "S3", e))?;
    Ok((client, addressed))
}

/// Without an account key the crate's chain is used (`AZURE_STORAGE_*` environment, workload
/// identity, managed identity, the Azure CLI).
fn azure(config: &ObjectConfig, container: &str) -> Result<object_store::azure::MicrosoftAzure> {
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_allow_http(config.allow_http)
        .with_retry(retry(config))
        .with_client_options(client_options(config));
    if let Some(account) = &config.azure_account {
        builder = builder.with_account(account);
    }
    if let Some(key) = &config.azure_access_key {
        builder = builder.with_access_key(key);
    }
    // A custom endpoint names the account's blob service (Azurite:
    // http://127.0.0.1:10000/devstoreaccount1); containers go under it.
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    builder
        .build()
        .map_err(|e| cannot_configure(config, "Azure Blob", e))
}

#[cfg(test)]
mod tests {
    use super::Addressed;

    #[test]
    fn lock_requests_go_where_the_client_sends_its_own() {
        let at = |endpoint: Option<&str>, virtual_hosted| Addressed {
            endpoint: endpoint.map(str::to_owned),
            region: "eu-west-1".into(),
            virtual_hosted,
        };
        assert_eq!(
            at(None, false).bucket_url("b"),
            "https://b.s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            at(Some("http://127.0.0.1:9000/"), false).bucket_url("b"),
            "http://127.0.0.1:9000/b"
        );
        assert_eq!(
            at(Some("https://b.s3.example.com"), true).bucket_url("b"),
            "https://b.s3.example.com"
        );
    }
}
