//! Loads kvault's settings: `config/default.yaml` (a file next to the working directory or the
//! binary, else the copy compiled into the binary), then an optional `--config` file, then
//! `KVAULT__SECTION__KEY` environment variables. Secrets are redacted from every `Debug` output.

mod auth;
mod browse;
mod encryption;
pub mod masking;
mod monitoring;
mod schedules;
mod secret;
mod storage;
mod workers;
pub use auth::{is_loopback_host, AuthSettings, JwtAlgorithm, MIN_PUBLIC_SECRET_BYTES};
pub use browse::BrowseSettings;
pub use encryption::{EncryptionSettings, KeySource};
pub use monitoring::{MonitoredGroup, MonitoringSettings};
pub use schedules::ScheduleSettings;
pub use secret::Secret;
pub use storage::{ObjectLockMode, ObjectLockSettings, S3Settings, StorageSettings, StorageTarget};
pub use workers::WorkerSettings;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use kvault_domain::backup::BackupDefaults;
use kvault_domain::ClusterConfig;
use kvault_domain::CompressionType;
use serde::Deserialize;

/// The defaults shipped with the source tree, used when no `config/default.yaml` is found on
/// disk so that `kvault serve` works from any directory.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../../../../config/default.yaml");

/// The HS256 secret in `config/default.yaml`. A server running with it logs a loud warning.
pub const DEV_JWT_SECRET: &str = "kvault-insecure-development-secret-change-me";

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {field}: {message}")]
    Invalid { field: String, message: String },
}

impl ConfigError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Everything `kvault serve` and the CLI need.
#[derive(Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub backup: BackupSettings,
    pub limits: LimitSettings,
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
    pub auth: AuthSettings,
    pub database: DatabaseSettings,
    #[serde(default)]
    pub storage: StorageSettings,
    #[serde(default)]
    pub encryption: EncryptionSettings,
    #[serde(default)]
    pub workers: WorkerSettings,
    #[serde(default)]
    pub monitoring: MonitoringSettings,
    #[serde(default)]
    pub schedules: ScheduleSettings,
    pub browse: BrowseSettings,
    #[serde(default)]
    pub masking: masking::MaskingSettings,
}

impl fmt::Debug for Settings {
    // Cluster properties may hold SASL passwords or key material: only ids and bootstrap
    // servers are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clusters: BTreeMap<&str, &str> = self
            .clusters
            .iter()
            .map(|(id, c)| (id.as_str(), c.bootstrap_servers.as_str()))
            .collect();
        f.debug_struct("Settings")
            .field("server", &self.server)
            .field("backup", &self.backup)
            .field("limits", &self.limits)
            .field("clusters", &clusters)
            .field("auth", &self.auth)
            .field("database", &self.database)
            .field("storage", &self.storage)
            .field("encryption", &self.encryption)
            .field("workers", &self.workers)
            .field("monitoring", &self.monitoring)
            .field("schedules", &self.schedules)
            .field("browse", &self.browse)
            .field("masking", &self.masking)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// Largest accepted request body in bytes.
    #[serde(default = "default_body_limit")]
    pub max_body_bytes: usize,
    /// Require a viewer token for the Prometheus endpoint `/metrics` too.
    #[serde(default)]
    pub metrics_auth: bool,
    /// Count requests without a valid token under the client named by the `Forwarded` /
    /// `X-Forwarded-For` headers instead of the connection's address. Only behind a proxy
    /// that sets them.
    #[serde(default)]
    pub trust_forwarded_for: bool,
}

fn default_body_limit() -> usize {
    1024 * 1024
}

/// The documented `backup:` section.
#[derive(Debug, Clone, Deserialize)]
pub struct BackupSettings {
    pub base_path: PathBuf,
    #[serde(default)]
    pub compression: CompressionType,
    /// Concurrent backups per cluster (documented: 10).
    #[serde(default = "default_backups")]
    pub max_concurrent_backups: usize,
    /// Days a backup is kept; 0 keeps backups forever.
    #[serde(default)]
    pub retention_days: u32,
    #[serde(default = "default_sweep")]
    pub retention_sweep_interval_secs: u64,
    /// Upper bound on one backup's size on disk; 0 means no limit.
    #[serde(default)]
    pub max_backup_size_gb: f64,
    #[serde(default = "default_backup_rate")]
    pub rate_limit_per_second: u32,
}

fn default_backups() -> usize {
    10
}
fn default_sweep() -> u64 {
    3600
}
fn default_backup_rate() -> u32 {
    10_000
}

impl BackupSettings {
    /// The request defaults this section supplies.
    pub fn request_defaults(&self) -> BackupDefaults {
        BackupDefaults {
            compression: self.compression,
            rate_limit_per_second: self.rate_limit_per_second,
            max_bytes: self.max_backup_bytes(),
        }
    }

    /// `max_backup_size_gb` in bytes (GB = 10^9 bytes), `None` when unlimited.
    pub fn max_backup_bytes(&self) -> Option<u64> {
        (self.max_backup_size_gb > 0.0).then_some((self.max_backup_size_gb * 1e9) as u64)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    #[serde(default = "default_restores")]
    pub max_concurrent_restores: usize,
    #[serde(default = "default_migrations")]
    pub max_concurrent_migrations: usize,
    #[serde(default = "default_drains")]
    pub max_concurrent_drains: usize,
    #[serde(default = "default_rpm")]
    pub requests_per_minute: u32,
    /// Requests per minute per client address to the routes open without a token (`/health`,
    /// `/ready`, `/metrics`) and with a missing or refused token.
    #[serde(default = "default_anonymous_rpm")]
    pub anonymous_requests_per_minute: u32,
}

fn default_restores() -> usize {
    5
}
fn default_migrations() -> usize {
    3
}
fn default_drains() -> usize {
    10
}
fn default_rpm() -> u32 {
    100
}
fn default_anonymous_rpm() -> u32 {
    600
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://...` or `postgres://...`; may contain a password, hence a [`Secret`].
    pub url: Secret,
    #[serde(default = "default_pool")]
    pub max_connections: u32,
}

fn default_pool() -> u32 {
    10
}

impl Settings {
    /// Defaults, then `config_file` (which must exist when given), then `KVAULT__*` env vars.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(config_file, None)
    }

    /// [`Self::load`] with `env` standing in for the process environment when given.
    fn load_with_env(
        config_file: Option<&Path>,
        env: Option<config::Map<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = Config::builder();
        builder = match find_default_file() {
            Some(path) => builder.add_source(File::from(path).format(FileFormat::Yaml)),
            None => builder.add_source(File::from_str(EMBEDDED_DEFAULTS, FileFormat::Yaml)),
        };
        if let Some(path) = config_file {
            builder = builder.add_source(
                File::from(path.to_path_buf())
                    .format(FileFormat::Yaml)
                    .required(true),
            );
        }
        let mut settings: Settings = builder
            .add_source(
                Environment::with_prefix("KVAULT")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(env),
            )
            .build()?
            .try_deserialize()?;
        settings.normalize_cluster_properties()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Only the embedded defaults: for tests and tools that must not read the environment.
    pub fn embedded_defaults() -> Result<Settings, ConfigError> {
        let settings: Settings = Config::builder()
            .add_source(File::from_str(EMBEDDED_DEFAULTS, FileFormat::Yaml))
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Cluster property names as librdkafka spells them: environment variables cannot hold
    /// dots, so `KVAULT__CLUSTERS__PROD__PROPERTIES__SASL_PASSWORD` arrives as `sasl_password`
    /// and becomes `sasl.password` (see [`ClusterConfig::normalize_property_names`]).
    fn normalize_cluster_properties(&mut self) -> Result<(), ConfigError> {
        for (id, cluster) in &mut self.clusters {
            cluster.normalize_property_names().map_err(|e| {
                ConfigError::invalid(&format!("clusters.{id}.{}", e.field), e.message)
            })?;
        }
        Ok(())
    }

    /// Cross-field checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.auth_keys_are_usable()?;
        self.storage.validate(&self.backup.base_path)?;
        self.encryption.validate()?;
        self.workers.validate()?;
        self.monitoring.validate(&self.clusters)?;
        self.limits_are_positive()?;
        let size = self.backup.max_backup_size_gb;
        if size.is_nan() || size < 0.0 {
            return Err(ConfigError::invalid(
                "backup.max_backup_size_gb",
                "must be 0 (unlimited) or positive",
            ));
        }
        for id in self.clusters.keys() {
            kvault_domain::ClusterId::parse(id)
                .map_err(|e| ConfigError::invalid(&format!("clusters.{id}"), e.message))?;
        }
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(ConfigError::invalid(
                "database.url",
                "must start with sqlite: or postgres:",
            ));
        }
        Ok(())
    }

    /// The token key the algorithm needs is there (and an HS256 secret is long enough).
    fn auth_keys_are_usable(&self) -> Result<(), ConfigError> {
        match self.auth.algorithm {
            JwtAlgorithm::Hs256 => match &self.auth.jwt_secret {
                None => Err(ConfigError::invalid(
                    "auth.jwt_secret",
                    "HS256 needs a secret",
                )),
                Some(s) if s.expose().len() < 16 => Err(ConfigError::invalid(
                    "auth.jwt_secret",
                    "must be at least 16 bytes",
                )),
                Some(_) => Ok(()),
            },
            JwtAlgorithm::Rs256 if self.auth.public_key_file.is_none() => Err(
                ConfigError::invalid("auth.public_key_file", "RS256 needs a public key file"),
            ),
            JwtAlgorithm::Rs256 => Ok(()),
        }
    }

    /// Every concurrency, rate and request limit lets at least one through.
    fn limits_are_positive(&self) -> Result<(), ConfigError> {
        let at_least_one = [
            (
                "backup.max_concurrent_backups",
                self.backup.max_concurrent_backups as u64,
            ),
            (
                "backup.rate_limit_per_second",
                self.backup.rate_limit_per_second as u64,
            ),
            (
                "limits.max_concurrent_restores",
                self.limits.max_concurrent_restores as u64,
            ),
            (
                "limits.max_concurrent_migrations",
                self.limits.max_concurrent_migrations as u64,
            ),
            (
                "limits.max_concurrent_drains",
                self.limits.max_concurrent_drains as u64,
            ),
            (
                "limits.requests_per_minute",
                self.limits.requests_per_minute as u64,
            ),
            (
                "limits.anonymous_requests_per_minute",
                self.limits.anonymous_requests_per_minute as u64,
            ),
        ];
        match at_least_one.iter().find(|(_, value)| *value == 0) {
            Some((field, _)) => Err(ConfigError::invalid(field, "must be at least 1")),
            None => Ok(()),
        }
    }
}

/// `config/default.yaml` under the working directory, next to the binary, or one or two levels
/// above it (`target/debug/kvault` in a checkout).
fn find_default_file() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("config/default.yaml")];
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_path_buf);
        for _ in 0..3 {
            if let Some(d) = dir {
                candidates.push(d.join("config/default.yaml"));
                dir = d.parent().map(Path::to_path_buf);
            } else {
                break;
            }
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_the_documented_ones() {
        let s = Settings::embedded_defaults().unwrap();
        assert_eq!(s.server.host, "127.0.0.1");
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.backup.max_concurrent_backups, 10);
        assert_eq!(s.limits.max_concurrent_restores, 5);
        assert_eq!(s.limits.max_concurrent_migrations, 3);
        assert_eq!(s.limits.requests_per_minute, 100);
        assert_eq!(s.backup.compression, CompressionType::Gzip);
        assert_eq!(s.backup.max_backup_bytes(), Some(100_000_000_000));
        assert!(s.auth.uses_dev_secret());
        assert!(s.database.url.expose().starts_with("sqlite:"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mut s = Settings::embedded_defaults().unwrap();
        s.database.url = Secret::new("postgres://u:hunter2@db/kvault");
        let mut props = BTreeMap::new();
        props.insert("sasl.password".to_owned(), "hunter3".to_owned());
        s.clusters.insert(
            "prod".into(),
            ClusterConfig {
                bootstrap_servers: "k:9092".into(),
                properties: props,
            },
        );
        let text = format!("{s:?}");
        assert!(!text.contains(DEV_JWT_SECRET), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("hunter3"),
            "{text}"
        );
        assert!(text.contains("k:9092"));
    }

    #[test]
    fn a_config_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvault.yaml");
        std::fs::write(
            &path,
            "server:\n  port: 9191\nclusters:\n  prod:\n    bootstrap_servers: \"k:9092\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        assert_eq!(s.server.port, 9191);
        assert_eq!(s.clusters["prod"].bootstrap_servers, "k:9092");
        assert!(Settings::load(Some(&dir.path().join("missing.yaml"))).is_err());
    }

    #[test]
    fn cluster_properties_come_from_the_environment_with_underscores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvault.yaml");
        std::fs::write(
            &path,
            "clusters:\n  prod:\n    bootstrap_servers: \"k:9093\"\n    properties:\n      \
             security.protocol: SASL_SSL\n      sasl.password: from-the-file\n",
        )
        .unwrap();
        let env = [
            (
                "KVAULT__CLUSTERS__PROD__PROPERTIES__SASL_PASSWORD",
                "from-env",
            ),
            (
                "KVAULT__CLUSTERS__PROD__PROPERTIES__SASL_MECHANISM",
                "SCRAM-SHA-512",
            ),
            (
                "KVAULT__CLUSTERS__PROD__PROPERTIES__SSL_CA_LOCATION_FILE",
                "/run/ca",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let loaded = Settings::load_with_env(Some(&path), Some(env)).unwrap();
        let props = &loaded.clusters["prod"].properties;
        assert_eq!(props["sasl.password"], "from-env");
        assert_eq!(props["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(props["security.protocol"], "SASL_SSL");
        assert_eq!(props["ssl.ca.location_file"], "/run/ca");
        assert!(!props.contains_key("sasl_password"), "{props:?}");
    }

    #[test]
    fn short_secrets_are_refused() {
        let mut s = Settings::embedded_defaults().unwrap();
        s.auth.jwt_secret = Some(Secret::new("short"));
        assert!(matches!(s.validate(), Err(ConfigError::Invalid { .. })));
    }
}
