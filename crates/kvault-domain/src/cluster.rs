//! How to reach a cluster: the `clusters:` entries of the configuration. The API reads them
//! from its settings, the Kafka adapter turns them into client configurations.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

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
}
