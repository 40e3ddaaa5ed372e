//! [`ObjectConfig`]: how to reach a bucket (or an Azure container) and how to use it. Credentials never show in
//! `Debug` output.

use std::fmt;
use std::time::Duration;

/// How to reach the bucket and how to use it.
#[derive(Clone)]
pub struct ObjectConfig {
    /// `s3://bucket/prefix` or `az://container/prefix`; without the prefix when
    /// `exclusive_bucket`.
    pub url: String,
    /// The bucket holds nothing but kvault's backups, so a url without a prefix may use its
    /// root. Without it such a url is refused: the sweep must never judge others' objects.
    pub exclusive_bucket: bool,
    /// For S3-compatible servers: `http://127.0.0.1:9000`. `None` for AWS. For Azure, the
    /// account's blob service (`http://127.0.0.1:10000/devstoreaccount1` for Azurite); `None`
    /// for `https://{account}.blob.core.windows.net`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint (local servers only).
    pub allow_http: bool,
    /// Static credentials; when absent the crate's chain is used (`AWS_*` environment,
    /// web identity, ECS task role, EC2 instance metadata).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Azure: the storage account and its shared key; without the key the crate's chain is
    /// used (`AZURE_STORAGE_*` environment, workload or managed identity, the Azure CLI).
    pub azure_account: Option<String>,
    pub azure_access_key: Option<String>,
    /// Bytes per multipart part (at least [`MIN_PART_SIZE`]).
    pub part_size: usize,
    /// Bytes per ranged GET when reading a segment.
    pub read_window: usize,
    /// A lease not refreshed for this long belongs to a dead writer.
    pub abandoned_after: Duration,
    /// Retries of a failed request (with exponential backoff) and their overall deadline.
    pub max_retries: usize,
    pub retry_timeout: Duration,
    /// Deadline to connect, and for a whole request.
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// S3 Object Lock: every committed archive's objects are locked for this long. `None`:
    /// kvault sets no retention.
    pub object_lock: Option<ObjectLock>,
}

/// The retention kvault puts on every object of an archive it commits to a bucket with S3
/// Object Lock enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    /// How long after its commit an archive stays locked.
    pub retain: Duration,
}

/// S3's two retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may still delete a locked object version.
    Governance,
    /// No one, the account's root user included, can delete a locked version before its date.
    Compliance,
}

impl LockMode {
    /// The mode as S3 spells it.
    pub fn as_s3(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }
}

impl Default for ObjectConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            exclusive_bucket: false,
            endpoint: None,
            region: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            azure_account: None,
            azure_access_key: None,
            part_size: 8 << 20,
            read_window: 4 << 20,
            abandoned_after: Duration::from_secs(15 * 60),
            max_retries: 5,
            retry_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            object_lock: None,
        }
    }
}

/// Credentials never reach a log line or an error message through `Debug`.
impl fmt::Debug for ObjectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "[redacted]");
        f.debug_struct("ObjectConfig")
            .field("url", &self.url)
            .field("exclusive_bucket", &self.exclusive_bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &redact(&self.access_key_id))
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("azure_account", &self.azure_account)
            .field("azure_access_key", &redact(&self.azure_access_key))
            .field("part_size", &self.part_size)
            .field("read_window", &self.read_window)
            .field("abandoned_after", &self.abandoned_after)
            .field("max_retries", &self.max_retries)
            .field("object_lock", &self.object_lock)
            .finish_non_exhaustive()
    }
}
