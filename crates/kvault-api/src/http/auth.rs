//! JWT bearer authentication: token minting for the CLI, verification with a pinned algorithm,
//! roles (`viewer` < `operator` < `admin`), the optional `clusters` claim, the data
//! permission (record contents: operator and above, or a viewer with `"data": true`), a cap on
//! token lifetime, and the per-subject request rate limit, all applied by the [`Authed`]
//! extractor (in `crate::http::extract`).

use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::configuration::{AuthSettings, JwtAlgorithm};
use crate::error::ApiError;
use crate::http::rate_limit::KeyedQuota;

mod mint;
pub use mint::{mint_token, mint_token_with_data};

/// What a token may do. Ordered: each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// GET routes.
    Viewer,
    /// Backup, drain, verify, cancel.
    Operator,
    /// Restore, migrate, delete.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role '{other}' (expected viewer, operator or admin)"
            )),
        }
    }
}

/// `roles` may be a single string or a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Roles {
    One(Role),
    Many(Vec<Role>),
}

/// The claims kvault reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Checked against `auth.audience` when that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    roles: Roles,
    /// When present, the only cluster ids this token may touch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<String>>,
    /// Lets a viewer read record contents (operators and admins may anyway).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data: bool,
}

impl Claims {
    /// The highest role granted.
    pub fn role(&self) -> Option<Role> {
        match &self.roles {
            Roles::One(r) => Some(*r),
            Roles::Many(rs) => rs.iter().max().copied(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("auth: cannot read key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("auth: {0}")]
    Key(String),
    #[error("auth: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

/// Verifies tokens and counts requests per subject.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    quota: KeyedQuota<String>,
    /// Longest accepted token lifetime, seconds (`auth.max_token_ttl_secs`).
    max_ttl_secs: u64,
}

impl Authenticator {
    pub fn new(settings: &AuthSettings, requests_per_minute: u32) -> Result<Self, AuthError> {
        let (alg, key) = match settings.algorithm {
            JwtAlgorithm::Hs256 => {
                let secret = settings
                    .jwt_secret
                    .as_ref()
                    .ok_or_else(|| AuthError::Key("auth.jwt_secret is not set".into()))?;
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.expose().as_bytes()),
                )
            }
            JwtAlgorithm::Rs256 => {
                let path = settings
                    .public_key_file
                    .as_ref()
                    .ok_or_else(|| AuthError::Key("RS256 needs auth.public_key_file".into()))?;
                let pem = std::fs::read(path).map_err(|source| AuthError::KeyFile {
                    path: path.display().to_string(),
                    source,
                })?;
                (Algorithm::RS256, DecodingKey::from_rsa_pem(&pem)?)
            }
        };
        // `Validation::new` pins the one algorithm and requires `exp`.
        let mut validation = Validation::new(alg);
        validation.leeway = 5;
        // A token that is not valid yet (`nbf` in the future) is refused like an expired one.
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &settings.issuer {
            validation.set_issuer(&[iss]);
        }
        // With an audience configured, a token must name it (a token minted for another
        // service that shares the key is refused); without one, `aud` is not looked at.
        match &settings.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.set_required_spec_claims(&["exp", "sub", "aud"]);
            }
            None => validation.validate_aud = false,
        }
        let per_minute = NonZeroU32::new(requests_per_minute).ok_or_else(|| {
            AuthError::Key("limits.requests_per_minute must be at least 1".into())
        })?;
        Ok(Self {
            key,
            validation,
            quota: KeyedQuota::per_minute(per_minute),
            max_ttl_secs: settings.max_token_ttl_secs,
        })
    }

    /// Counts every request the per-subject limit refuses in `counter`.
    pub fn counting_refusals(mut self, counter: prometheus::IntCounter) -> Self {
        self.quota = self.quota.counting_refusals(counter);
        self
    }

    /// Checks signature, algorithm, expiry and issuer. Reasons stay vague on purpose: a client
    /// learns the token was refused, not which check a forger got wrong — except expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized("token expired")
                }
                _ => {
                    tracing::debug!(reason = %e, "token refused");
                    ApiError::unauthorized("invalid token")
                }
            },
        )?;
        // A token's lifetime is `exp - iat`; without `iat`, what is left of it from now.
        let claims = data.claims;
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let lifetime = claims.exp.saturating_sub(claims.iat.unwrap_or(now));
        if lifetime > self.max_ttl_secs {
            return Err(ApiError::unauthorized(format!(
                "token lifetime ({lifetime} s from iat to exp) is over this server's limit \
                 ({} s, auth.max_token_ttl_secs): ask for a shorter-lived token",
                self.max_ttl_secs
            )));
        }
        Ok(claims)
    }

    /// Counts one request for `subject`; 429 with the wait when the quota is spent.
    pub fn check_rate(&self, subject: &str) -> Result<(), ApiError> {
        self.quota.check(
            &subject.to_owned(),
            "request rate limit reached for this token subject",
        )
    }

    /// Drops limiter state of subjects that have been idle, so memory stays bounded.
    pub fn forget_idle(&self) {
        self.quota.forget_idle();
    }
}

/// The minimum role a route needs, as a type so that [`Authed`] checks it during extraction
/// (before the body is parsed: a viewer gets 403, not a validation error).
pub trait RoleRequirement {
    const ROLE: Role;
}

pub struct Viewer;
pub struct Operator;
pub struct Admin;

impl RoleRequirement for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl RoleRequirement for Operator {
    const ROLE: Role = Role::Operator;
}
impl RoleRequirement for Admin {
    const ROLE: Role = Role::Admin;
}

/// The caller: a verified token with at least role `R`, within its request rate.
pub struct Authed<R> {
    pub claims: Arc<Claims>,
    _role: PhantomData<R>,
}

impl<R> Authed<R> {
    /// The caller whose verified `claims` hold at least role `R` (checked by the extractor).
    pub(crate) fn new(claims: Arc<Claims>) -> Self {
        Self {
            claims,
            _role: PhantomData,
        }
    }

    pub fn subject(&self) -> &str {
        &self.claims.sub
    }

    /// Whether the token holds at least `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.claims.role().is_some_and(|held| held >= role)
    }

    /// 403 unless the token's `clusters` claim (when present) names `cluster_id`.
    pub fn require_cluster(&self, cluster_id: &str) -> Result<(), ApiError> {
        if self.may_touch(cluster_id) {
            Ok(())
        } else {
            Err(
                ApiError::forbidden(format!("this token may not access cluster '{cluster_id}'"))
                    .on("cluster_id", cluster_id),
            )
        }
    }

    /// 403 unless the token may read record contents: role operator or above, or the
    /// `"data": true` claim.
    pub fn require_data(&self) -> Result<(), ApiError> {
        if self.claims.data || self.has_role(Role::Operator) {
            return Ok(());
        }
        Err(ApiError::forbidden(
            "reading record contents needs role 'operator' or a viewer token with \
             \"data\": true (kvault token --data)",
        )
        .on("data", "false"))
    }

    /// The token's `clusters` claim: `None` when it may touch every cluster.
    pub fn allowed_clusters(&self) -> Option<&[String]> {
        self.claims.clusters.as_deref()
    }

    pub fn may_touch(&self, cluster_id: &str) -> bool {
        match &self.claims.clusters {
            None => true,
            Some(allowed) => allowed.iter().any(|c| c == cluster_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::Settings;
    use std::time::Duration;

    #[test]
    fn minted_tokens_verify_and_carry_role_and_clusters() {
        let s = Settings::embedded_defaults().unwrap();
        let auth = Authenticator::new(&s.auth, 100).unwrap();
        let t = mint_token(
            &s.auth,
            "ci",
            Role::Operator,
            Duration::from_secs(60),
            Some(vec!["local".into()]),
        )
        .unwrap();
        let c = auth.verify(&t).unwrap();
        assert_eq!(c.sub, "ci");
        assert_eq!(c.role(), Some(Role::Operator));
        assert_eq!(c.clusters.as_deref(), Some(&["local".to_owned()][..]));
    }

    #[test]
    fn tokens_living_longer_than_the_cap_are_refused() {
        let mut s = Settings::embedded_defaults().unwrap();
        s.auth.max_token_ttl_secs = 3600;
        let auth = Authenticator::new(&s.auth, 100).unwrap();
        let ok = mint_token(&s.auth, "a", Role::Viewer, Duration::from_secs(3600), None);
        assert!(auth.verify(&ok.unwrap()).is_ok());
        assert!(mint_token(&s.auth, "a", Role::Viewer, Duration::from_secs(3601), None).is_err());
        // Minted elsewhere with the same key, living a year: refused with a reason.
        let mut long = s.auth.clone();
        long.max_token_ttl_secs = u64::MAX;
        let year = Duration::from_secs(365 * 86_400);
        let token = mint_token_with_data(&long, "a", Role::Viewer, year, None, true).unwrap();
        let err = auth.verify(&token).unwrap_err();
        assert_eq!(err.status.as_u16(), 401);
        assert!(
            err.message.contains("max_token_ttl_secs"),
            "{}",
            err.message
        );
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn the_quota_is_per_subject() {
        let s = Settings::embedded_defaults().unwrap();
        let auth = Authenticator::new(&s.auth, 3).unwrap();
        for _ in 0..3 {
            auth.check_rate("a").unwrap();
        }
        let err = auth.check_rate("a").unwrap_err();
        assert_eq!(err.status.as_u16(), 429);
        assert!(err.retry_after.unwrap() >= 1);
        auth.check_rate("b").unwrap();
    }
}
