//! How to reach a cluster: the `clusters:` entries of the configuration. The API reads them
//! from its settings, the Kafka adapter turns them into client configurations.
//!
//! Two spellings of a property name are accepted, because environment variables cannot hold
//! dots: `sasl.password` and `sasl_password` are the same property (librdkafka names have no
//! underscores). A property named `X_file` (`sasl.password_file`) gives the path of a file
//! holding the value of `X`; the adapter reads it whenever it creates a client.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// The suffix that makes a property name a file to read the value from: `sasl.password_file`.
pub const FILE_SUFFIX: &str = "_file";

/// Property names whose values are secrets: never printed by `Debug`, never logged. `key`
/// covers `ssl.key.pem` and `*.private.key`; `oauthbearer.config` holds client credentials
/// (`clientSecret=...`) in one string; `jaas` a JAAS line with a password.
const SECRET_MARKERS: [&str; 7] = [
    "password",
    "secret",
    "key",
    "token",
    "oauthbearer.config",
    "jaas",
    "credential",
];

/// One cluster definition.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct ClusterConfig {
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (SASL, TLS, timeouts...), applied last so they win.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl ClusterConfig {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
        }
    }

    /// Renames properties spelled with underscores (as `KVAULT__CLUSTERS__PROD__PROPERTIES__
    /// SASL_PASSWORD` arrives) to librdkafka's dotted names, keeping an `_file` suffix:
    /// `sasl_password_file` becomes `sasl.password_file`. The underscore spelling wins over a
    /// dotted one of the same property (the environment is layered over files). A property
    /// given both as a value and as a file is refused.
    pub fn normalize_property_names(&mut self) -> Result<(), ValidationError> {
        let mut dotted = BTreeMap::new();
        let mut from_underscores = Vec::new();
        for (name, value) in std::mem::take(&mut self.properties) {
            let normalized = dotted_name(&name);
            if normalized == name {
                dotted.insert(name, value);
            } else {
                from_underscores.push((normalized, value));
            }
        }
        dotted.extend(from_underscores);
        for name in dotted.keys() {
            if let Some(base) = name.strip_suffix(FILE_SUFFIX) {
                if dotted.contains_key(base) {
                    return Err(ValidationError::new(
                        format!("properties.{name}"),
                        "",
                        format!("give either {base} or {name}, not both"),
                    ));
                }
            }
        }
        self.properties = dotted;
        Ok(())
    }

    /// The properties whose value is read from a file: `(property, path)`, e.g.
    /// `("sasl.password", "/run/secrets/kafka")` for `sasl.password_file`.
    pub fn file_properties(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties.iter().filter_map(|(name, path)| {
            name.strip_suffix(FILE_SUFFIX)
                .map(|base| (base, path.as_str()))
        })
    }

    /// The properties with every secret value replaced by `[redacted]`, for logs and output.
    pub fn redacted_properties(&self) -> BTreeMap<String, String> {
        self.properties
            .iter()
            .map(|(k, v)| {
                let value = if is_secret_property(k) {
                    "[redacted]".to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), value)
            })
            .collect()
    }
}

/// `sasl_password` -> `sasl.password`, `ssl_key_password_file` -> `ssl.key.password_file`.
fn dotted_name(name: &str) -> String {
    let (base, suffix) = match name.strip_suffix(FILE_SUFFIX) {
        Some(base) => (base, FILE_SUFFIX),
        None => (name, ""),
    };
    format!("{}{suffix}", base.replace('_', "."))
}

/// Whether a librdkafka property holds a secret (`sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, `ssl.key.pem`, ...).
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| name.contains(m))
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &self.redacted_properties())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secret_properties() {
        let mut c = ClusterConfig::new("b:9092");
        c.properties
            .insert("sasl.password".into(), "hunter2-secret".into());
        c.properties
            .insert("ssl.key.pem".into(), "-----BEGIN PRIVATE".into());
        c.properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        c.properties.insert(
            "sasl.oauthbearer.config".into(),
            "principal=svc clientSecret=oauth-s3cr3t".into(),
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("oauth-s3cr3t"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("BEGIN PRIVATE"), "{shown}");
        assert!(shown.contains("SASL_SSL"), "{shown}");
    }

    #[test]
    fn underscore_names_become_librdkafka_names() {
        let mut c = ClusterConfig::new("b:9093");
        for (k, v) in [
            ("security_protocol", "SASL_SSL"),
            ("sasl.password", "from-file"),
            ("sasl_password", "from-env"),
            ("ssl_ca_location", "/etc/ca.pem"),
            ("ssl_key_password_file", "/run/secrets/key"),
        ] {
            c.properties.insert(k.into(), v.into());
        }
        c.normalize_property_names().unwrap();
        let names: Vec<&str> = c.properties.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "sasl.password",
                "security.protocol",
                "ssl.ca.location",
                "ssl.key.password_file"
            ]
        );
        assert_eq!(c.properties["sasl.password"], "from-env");
        let files: Vec<_> = c.file_properties().collect();
        assert_eq!(files, [("ssl.key.password", "/run/secrets/key")]);
    }

    #[test]
    fn a_value_and_a_file_for_one_property_are_refused() {
        let mut c = ClusterConfig::new("b:9093");
        c.properties.insert("sasl.password".into(), "x".into());
        c.properties
            .insert("sasl_password_file".into(), "/run/secrets/k".into());
        let err = c.normalize_property_names().unwrap_err();
        assert_eq!(err.field, "properties.sasl.password_file");
    }
}
