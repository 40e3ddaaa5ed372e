//! Minting tokens for `kvault token` (and tests): the claims kvault reads, signed with the
//! configured HS256 secret or RS256 private key.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::{AuthError, Claims, Role, Roles};
use crate::configuration::{AuthSettings, JwtAlgorithm};

/// Signs a token for `sub` with `role`, valid for `ttl`, optionally limited to `clusters`.
/// HS256 signs with `jwt_secret`; RS256 with `private_key_file`.
pub fn mint_token(
    settings: &AuthSettings,
    sub: &str,
    role: Role,
    ttl: Duration,
    clusters: Option<Vec<String>>,
) -> Result<String, AuthError> {
    mint_token_with_data(settings, sub, role, ttl, clusters, false)
}

/// [`mint_token`], with `data` granting a viewer the permission to read record contents.
/// A `ttl` over `auth.max_token_ttl_secs` is refused (the server would refuse the token).
pub fn mint_token_with_data(
    settings: &AuthSettings,
    sub: &str,
    role: Role,
    ttl: Duration,
    clusters: Option<Vec<String>>,
    data: bool,
) -> Result<String, AuthError> {
    if ttl.as_secs() > settings.max_token_ttl_secs {
        return Err(AuthError::Key(format!(
            "a lifetime of {} s is over auth.max_token_ttl_secs ({} s)",
            ttl.as_secs(),
            settings.max_token_ttl_secs
        )));
    }
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now + ttl.as_secs(),
        iat: Some(now),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        roles: Roles::Many(vec![role]),
        clusters,
        data,
    };
    let (alg, key) = match settings.algorithm {
        JwtAlgorithm::Hs256 => {
            let secret = settings
                .jwt_secret
                .as_ref()
                .ok_or_else(|| AuthError::Key("auth.jwt_secret is not set".into()))?;
            (
                Algorithm::HS256,
                EncodingKey::from_secret(secret.expose().as_bytes()),
            )
        }
        JwtAlgorithm::Rs256 => {
            let path = settings.private_key_file.as_ref().ok_or_else(|| {
                AuthError::Key("RS256 minting needs auth.private_key_file".into())
            })?;
            let pem = std::fs::read(path).map_err(|source| AuthError::KeyFile {
                path: path.display().to_string(),
                source,
            })?;
            (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)?)
        }
    };
    Ok(jsonwebtoken::encode(&Header::new(alg), &claims, &key)?)
}
