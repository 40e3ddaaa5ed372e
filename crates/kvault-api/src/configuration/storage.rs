//! The `storage:` section: where archives live. `storage.url` is `file://<dir>` (the default,
//! from `backup.base_path`, which stays the documented alias), `s3://bucket/prefix` with the
//! `storage.s3.*` settings, or `az://container/prefix` with `storage.azure.*` (and the tuning
//! of `storage.s3.*`: part size, read window, retries, timeouts, `exclusive_bucket`, which
//! apply to every object store). Credentials are [`Secret`]s: never in `Debug` output.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Secret};

/// The `storage:` section.
#[derive(Debug, Clone, Deserialize)]
pub struct StorageSettings {
    /// `file:///srv/backups`, `file://./data/backups`, `s3://bucket/prefix` or
    /// `az://container/prefix`. When absent, backups live in `backup.base_path`.
    #[serde(default)]
    pub url: Option<String>,
    /// A segment file is closed once it reaches this many MiB (1 to 1024, default 128): what
    /// a taken-over backup keeps is whole segments.
    #[serde(default = "default_segment_size_mib")]
    pub segment_size_mib: u64,
    #[serde(default)]
    pub s3: S3Settings,
    #[serde(default)]
    pub azure: AzureSettings,
}

/// `storage.azure.*`: how to reach an Azure Blob Storage account (or Azurite).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AzureSettings {
    /// The storage account.
    #[serde(default)]
    pub account: Option<String>,
    /// The account's shared key. When absent, `object_store`'s chain is used
    /// (`AZURE_STORAGE_*` variables, workload identity, managed identity, the Azure CLI).
    #[serde(default)]
    pub access_key: Option<Secret>,
    /// The account's blob service, for emulators and private endpoints
    /// (`http://127.0.0.1:10000/devstoreaccount1`); `https://{account}.blob.core.windows.net`
    /// when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Allows a plain-HTTP endpoint. Off by default.
    #[serde(default)]
    pub allow_http: bool,
}

fn default_segment_size_mib() -> u64 {
    128
}

/// `storage.s3.*`: how to reach an S3 bucket or an S3-compatible server.
#[derive(Debug, Clone, Deserialize)]
pub struct S3Settings {
    /// For S3-compatible servers (`http://127.0.0.1:9000`); AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Allows a plain-HTTP endpoint. Off by default.
    #[serde(default)]
    pub allow_http: bool,
    /// Static credentials. When absent, the standard AWS chain is used: `AWS_ACCESS_KEY_ID`
    /// and friends, web identity (EKS), the ECS task role, EC2 instance metadata.
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// The bucket holds nothing but kvault's backups, so `storage.url` may name it without a
    /// prefix. Off by default: a prefix-less url is refused at startup, because the sweep
    /// must never have to judge objects other applications keep in the bucket.
    #[serde(default)]
    pub exclusive_bucket: bool,
    /// Multipart part size in MiB (5 to 512).
    #[serde(default = "default_part_size_mib")]
    pub part_size_mib: usize,
    /// Bytes per ranged GET when reading, in MiB.
    #[serde(default = "default_read_window_mib")]
    pub read_window_mib: usize,
    /// A writer whose lease was not refreshed for this long is dead; its objects are swept.
    #[serde(default = "default_abandoned_after")]
    pub abandoned_after_secs: u64,
    /// Retries of a failed request, with exponential backoff, within `retry_timeout_secs`.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout_secs: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// S3 Object Lock: every object of each archive kvault commits is locked this long, and a
    /// locked archive is never deleted. The bucket must have Object Lock enabled (checked at
    /// start). Absent: kvault sets no retention.
    #[serde(default)]
    pub object_lock: Option<ObjectLockSettings>,
}

/// `storage.s3.object_lock`: the retention kvault puts on every archive it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockSettings {
    /// `governance` (the default: users allowed to bypass governance retention may still
    /// delete) or `compliance` (no one can, until the date).
    #[serde(default)]
    pub mode: ObjectLockMode,
    /// Days from each archive's commit until its lock expires (1 to 36500).
    pub retain_days: u32,
}

/// S3's retention modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectLockMode {
    #[default]
    Governance,
    Compliance,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            exclusive_bucket: false,
            part_size_mib: default_part_size_mib(),
            read_window_mib: default_read_window_mib(),
            abandoned_after_secs: default_abandoned_after(),
            max_retries: default_max_retries(),
            retry_timeout_secs: default_retry_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            request_timeout_secs: default_request_timeout(),
            object_lock: None,
        }
    }
}

fn default_part_size_mib() -> usize {
    8
}
fn default_read_window_mib() -> usize {
    4
}
fn default_abandoned_after() -> u64 {
    900
}
fn default_max_retries() -> usize {
    5
}
fn default_retry_timeout() -> u64 {
    60
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_request_timeout() -> u64 {
    60
}

/// Where the archives are, resolved from `storage.url` and `backup.base_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageTarget {
    /// A local directory.
    Local(PathBuf),
    /// `s3://bucket/prefix`, with the settings in `storage.s3`.
    S3(String),
    /// `az://container/prefix`, with the settings in `storage.azure`.
    Azure(String),
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            url: None,
            segment_size_mib: default_segment_size_mib(),
            s3: S3Settings::default(),
            azure: AzureSettings::default(),
        }
    }
}

impl StorageSettings {
    /// The segment size in bytes, or why the setting is refused.
    pub fn segment_size(&self) -> Result<u64, ConfigError> {
        if !(1..=1024).contains(&self.segment_size_mib) {
            return Err(ConfigError::invalid(
                "storage.segment_size_mib",
                "must be 1 to 1024 (MiB)",
            ));
        }
        Ok(self.segment_size_mib << 20)
    }

    /// The resolved target; `base_path` is `backup.base_path`.
    pub fn target(&self, base_path: &std::path::Path) -> Result<StorageTarget, ConfigError> {
        let Some(url) = self.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(StorageTarget::Local(base_path.to_path_buf()));
        };
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(ConfigError::invalid(
                    "storage.url",
                    "file:// names no directory",
                ));
            }
            return Ok(StorageTarget::Local(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            if rest.split('/').next().unwrap_or_default().is_empty() {
                return Err(ConfigError::invalid("storage.url", "s3:// names no bucket"));
            }
            return Ok(StorageTarget::S3(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("az://") {
            if rest.split('/').next().unwrap_or_default().is_empty() {
                return Err(ConfigError::invalid(
                    "storage.url",
                    "az:// names no container",
                ));
            }
            return Ok(StorageTarget::Azure(url.to_owned()));
        }
        Err(ConfigError::invalid(
            "storage.url",
            "must start with file://, s3:// or az:// (gs:// is not built in yet)",
        ))
    }

    /// Checks what serde cannot.
    pub fn validate(&self, base_path: &std::path::Path) -> Result<(), ConfigError> {
        if let StorageTarget::S3(url) | StorageTarget::Azure(url) = self.target(base_path)? {
            let rest = url.split_once("://").map_or("", |(_, rest)| rest);
            let prefix = rest.split_once('/').map_or("", |(_, p)| p);
            if prefix.trim_matches('/').is_empty() && !self.s3.exclusive_bucket {
                return Err(ConfigError::invalid(
                    "storage.s3.exclusive_bucket",
                    "storage.url names a bucket or container without a prefix: use \
                     s3://bucket/prefix or az://container/prefix if other applications may \
                     keep objects there, or set storage.s3.exclusive_bucket: true if nothing \
                     but kvault writes there",
                ));
            }
        }
        if !(5..=512).contains(&self.s3.part_size_mib) {
            return Err(ConfigError::invalid(
                "storage.s3.part_size_mib",
                "must be 5 to 512 (S3 parts are at least 5 MiB)",
            ));
        }
        if !(1..=64).contains(&self.s3.read_window_mib) {
            return Err(ConfigError::invalid(
                "storage.s3.read_window_mib",
                "must be 1 to 64",
            ));
        }
        if self.s3.abandoned_after_secs < 10 {
            return Err(ConfigError::invalid(
                "storage.s3.abandoned_after_secs",
                "must be at least 10",
            ));
        }
        self.validate_object_lock(base_path)?;
        if self.s3.access_key_id.is_some() != self.s3.secret_access_key.is_some() {
            return Err(ConfigError::invalid(
                "storage.s3.access_key_id",
                "set both access_key_id and secret_access_key, or neither",
            ));
        }
        Ok(())
    }
}

impl StorageSettings {
    fn validate_object_lock(&self, base_path: &std::path::Path) -> Result<(), ConfigError> {
        let Some(lock) = self.s3.object_lock else {
            return Ok(());
        };
        if !matches!(self.target(base_path)?, StorageTarget::S3(_)) {
            return Err(ConfigError::invalid(
                "storage.s3.object_lock",
                "S3 Object Lock needs storage.url to be an s3:// bucket",
            ));
        }
        if !(1..=36_500).contains(&lock.retain_days) {
            return Err(ConfigError::invalid(
                "storage.s3.object_lock.retain_days",
                "must be 1 to 36500 (days)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn with_url(url: &str) -> StorageSettings {
        StorageSettings {
            url: Some(url.into()),
            ..StorageSettings::default()
        }
    }

    #[test]
    fn the_url_picks_the_backend_and_base_path_is_the_default() {
        let base = Path::new("./data/backups");
        assert_eq!(
            StorageSettings::default().target(base).unwrap(),
            StorageTarget::Local(base.into())
        );
        assert_eq!(
            with_url(" ").target(base).unwrap(),
            StorageTarget::Local(base.into())
        );
        assert_eq!(
            with_url("file:///srv/vault").target(base).unwrap(),
            StorageTarget::Local("/srv/vault".into())
        );
        assert_eq!(
            with_url("s3://bucket/some/prefix").target(base).unwrap(),
            StorageTarget::S3("s3://bucket/some/prefix".into())
        );
        assert_eq!(
            with_url("az://container/kvault").target(base).unwrap(),
            StorageTarget::Azure("az://container/kvault".into())
        );
        for bad in [
            "s3://",
            "s3:///x",
            "az://",
            "az:///x",
            "file://",
            "gs://b",
            "/plain/path",
        ] {
            assert!(with_url(bad).target(base).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_never_show_in_debug_and_come_in_pairs() {
        let mut s = with_url("s3://b/kvault");
        s.s3.access_key_id = Some(Secret::new("AKIAEXAMPLEKEYID"));
        s.s3.secret_access_key = Some(Secret::new("wJalrXUtnFEMI-secret"));
        s.azure.access_key = Some(Secret::new("azure-shared-key-secret"));
        let shown = format!("{s:?}");
        assert!(!shown.contains("azure-shared-key-secret"), "{shown}");
        assert!(
            !shown.contains("AKIAEXAMPLEKEYID") && !shown.contains("wJalr"),
            "{shown}"
        );
        assert!(s.validate(Path::new(".")).is_ok());
        s.s3.secret_access_key = None;
        assert!(s.validate(Path::new(".")).is_err());
        let mut small = with_url("s3://b/kvault");
        small.s3.part_size_mib = 4;
        assert!(small.validate(Path::new(".")).is_err());
    }

    #[test]
    fn a_bucket_root_is_used_only_when_the_bucket_is_declared_kvaults_alone() {
        for url in ["s3://b", "s3://b/", "s3://b//", "az://c", "az://c/"] {
            let mut s = with_url(url);
            let e = s.validate(Path::new(".")).unwrap_err().to_string();
            assert!(e.contains("storage.s3.exclusive_bucket"), "{url}: {e}");
            s.s3.exclusive_bucket = true;
            assert!(s.validate(Path::new(".")).is_ok(), "{url}");
        }
        assert!(with_url("s3://b/kvault").validate(Path::new(".")).is_ok());
    }

    #[test]
    fn object_lock_needs_an_s3_bucket_and_a_retention_in_days() {
        let parsed: S3Settings =
            serde_json::from_value(serde_json::json!({"object_lock": {"retain_days": 30}}))
                .unwrap();
        let lock = parsed.object_lock.unwrap();
        assert_eq!(lock.mode, ObjectLockMode::Governance);
        let mut s = with_url("s3://b/kvault");
        s.s3.object_lock = Some(lock);
        assert!(s.validate(Path::new(".")).is_ok());
        s.s3.object_lock = Some(ObjectLockSettings {
            mode: ObjectLockMode::Compliance,
            retain_days: 0,
        });
        let e = s.validate(Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("retain_days"), "{e}");
        let mut local = with_url("file:///srv/backups");
        local.s3.object_lock = Some(lock);
        let e = local.validate(Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("storage.s3.object_lock"), "{e}");
        let unknown = serde_json::from_value::<S3Settings>(
            serde_json::json!({"object_lock": {"retain_days": 1, "mode": "forever"}}),
        );
        assert!(unknown.is_err());
    }
}
