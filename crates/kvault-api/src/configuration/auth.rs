//! The `auth:` section: how tokens are signed and checked, and what counts as an insecure
//! setting on a public address.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Secret, DEV_JWT_SECRET};

/// The JWT algorithms kvault accepts; exactly one is pinned per server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    #[serde(rename = "HS256")]
    Hs256,
    #[serde(rename = "RS256")]
    Rs256,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// HS256 shared secret.
    #[serde(default)]
    pub jwt_secret: Option<Secret>,
    #[serde(default = "default_alg")]
    pub algorithm: JwtAlgorithm,
    /// RS256: PEM public key that verifies tokens.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// RS256: PEM private key that `kvault token` signs with.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// When set, tokens must carry this `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud` (and `kvault token` puts it in).
    #[serde(default)]
    pub audience: Option<String>,
    /// Tokens that live longer than this (`exp - iat`, seconds) are refused with 401: a
    /// leaked or forgotten token stops working on its own.
    #[serde(default = "default_max_token_ttl")]
    pub max_token_ttl_secs: u64,
}

/// 30 days.
fn default_max_token_ttl() -> u64 {
    30 * 86_400
}

fn default_alg() -> JwtAlgorithm {
    JwtAlgorithm::Hs256
}

impl AuthSettings {
    /// True when the server would accept tokens signed with the published development secret.
    pub fn uses_dev_secret(&self) -> bool {
        self.algorithm == JwtAlgorithm::Hs256
            && self.jwt_secret.as_ref().map(Secret::expose) == Some(DEV_JWT_SECRET)
    }

    /// Why these settings must not serve a non-loopback address, if they must not: the
    /// published development secret, or an HS256 secret shorter than 32 bytes.
    pub fn insecure_for_public_address(&self) -> Option<&'static str> {
        if self.algorithm != JwtAlgorithm::Hs256 {
            return None;
        }
        if self.uses_dev_secret() {
            return Some("auth.jwt_secret is the published development secret");
        }
        match &self.jwt_secret {
            Some(s) if s.expose().len() < MIN_PUBLIC_SECRET_BYTES => {
                Some("auth.jwt_secret is shorter than 32 bytes")
            }
            _ => None,
        }
    }
}

/// Shortest HS256 secret accepted on a non-loopback address.
pub const MIN_PUBLIC_SECRET_BYTES: usize = 32;

/// Whether `host` (from `server.host`) only accepts connections from this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
