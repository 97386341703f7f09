//! Client authentication: verifies JWTs and turns them into an [`Identity`] (Postgres role,
//! user id, the claims passed to Postgres as `request.jwt.claims`).
//!
//! Only HS256 with the shared secret is accepted; `alg:none` and every other algorithm are
//! refused by construction because the validation names exactly one algorithm.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("a token is required (anonymous access is disabled)")]
    TokenRequired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("role '{0}' is not allowed")]
    RoleNotAllowed(String),
}

/// Who a connection is, as far as Postgres permission checks are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Postgres role to `SET LOCAL ROLE` to; always one of the allowlist.
    pub role: String,
    /// The `sub` claim, if any.
    pub user_id: Option<String>,
    /// Claims as JSON text for `request.jwt.claims`.
    pub claims: String,
    /// Expiry (seconds since the epoch), if the token has one.
    pub exp: Option<u64>,
}

/// Verifies tokens against one HS256 secret and a role allowlist.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    roles: Vec<String>,
    allow_anon: bool,
}

impl Authenticator {
    pub fn new(secret: &str, roles: Vec<String>, allow_anon: bool) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Self { key: DecodingKey::from_secret(secret.as_bytes()), validation, roles, allow_anon }
    }

    /// Authenticates a connection: no token means `anon` when allowed.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        match token {
            None | Some("") => {
                if self.allow_anon {
                    Ok(Identity {
                        role: "anon".into(),
                        user_id: None,
                        claims: r#"{"role":"anon"}"#.into(),
                        exp: None,
                    })
                } else {
                    Err(AuthError::TokenRequired)
                }
            }
            Some(t) => self.verify(t),
        }
    }

    fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data =
            decode::<Map<String, Value>>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            })?;
        let claims = data.claims;
        let role = match claims.get("role") {
            Some(Value::String(r)) => r.clone(),
            None => "authenticated".to_string(),
            Some(_) => return Err(AuthError::Invalid("claim 'role' is not a string".into())),
        };
        if !self.roles.contains(&role) {
            return Err(AuthError::RoleNotAllowed(role));
        }
        let user_id = match claims.get("sub") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let exp = claims.get("exp").and_then(Value::as_u64);
        let mut claims = claims;
        claims.insert("role".into(), Value::String(role.clone()));
        Ok(Identity { role, user_id, claims: Value::Object(claims).to_string(), exp })
    }
}

/// Signs an HS256 token (for `realtime-relay token`, the demo and tests).
pub fn mint(secret: &str, role: &str, sub: Option<&str>, ttl_secs: u64) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut claims = Map::new();
    claims.insert("role".into(), role.into());
    if let Some(s) = sub {
        claims.insert("sub".into(), s.into());
    }
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + ttl_secs).into());
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("HS256 signing cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn auth(anon: bool) -> Authenticator {
        Authenticator::new(SECRET, vec!["anon".into(), "authenticated".into()], anon)
    }

    #[test]
    fn valid_token_yields_role_sub_and_claims() {
        let id = auth(true).authenticate(Some(&mint(SECRET, "authenticated", Some("alice"), 60))).unwrap();
        assert_eq!(id.role, "authenticated");
        assert_eq!(id.user_id.as_deref(), Some("alice"));
        let v: Value = serde_json::from_str(&id.claims).unwrap();
        assert_eq!(v["sub"], "alice");
    }

    #[test]
    fn missing_token_is_anon_only_when_allowed() {
        assert_eq!(auth(true).authenticate(None).unwrap().role, "anon");
        assert_eq!(auth(false).authenticate(None), Err(AuthError::TokenRequired));
    }

    #[test]
    fn wrong_secret_is_refused() {
        let t = mint("another-secret-that-is-long", "authenticated", None, 60);
        assert!(matches!(auth(true).authenticate(Some(&t)), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn role_outside_allowlist_is_refused() {
        let t = mint(SECRET, "postgres", None, 60);
        assert_eq!(auth(true).authenticate(Some(&t)), Err(AuthError::RoleNotAllowed("postgres".into())));
    }

    #[test]
    fn expired_token_is_refused() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = serde_json::json!({"role": "anon", "exp": now - 10});
        let t = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes()))
            .unwrap();
        assert_eq!(auth(true).authenticate(Some(&t)), Err(AuthError::Expired));
    }

    #[test]
    fn alg_none_is_refused() {
        // header {"alg":"none","typ":"JWT"}, payload {"role":"anon","exp":9999999999}, no signature
        let t = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJyb2xlIjoiYW5vbiIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(matches!(auth(true).authenticate(Some(t)), Err(AuthError::Invalid(_))));
    }
}
