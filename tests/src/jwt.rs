//! HS256 test tokens with the claims the relay reads: `sub`, `role`, `exp`.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

/// A token signed with `secret`, valid for an hour, with `role` and (when given) `sub`.
pub fn mint_token(secret: &str, sub: Option<&str>, role: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64;
    mint_token_with_exp(secret, sub, role, now + 3600)
}

/// A token signed with `secret` expiring at `exp` (seconds since the epoch).
pub fn mint_token_with_exp(secret: &str, sub: Option<&str>, role: &str, exp: i64) -> String {
    let mut claims = json!({ "role": role, "exp": exp });
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("sign HS256 token")
}
