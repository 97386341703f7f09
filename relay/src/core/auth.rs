//! Client authentication: verifies JWTs and turns them into an [`Identity`] (Postgres role,
//! user id, the claims passed to Postgres as `request.jwt.claims`).
//!
//! Accepted: HS256 with the shared secret, and RS256 / ES256 with a public key from the JWKS
//! file, chosen by the token's `kid`. The key is picked by the algorithm the token names and
//! each key is bound to one algorithm, and the validation names exactly that algorithm — so
//! `alg:none`, HS/RS confusion (an HS256 token "signed" with a public key) and a key used with
//! another algorithm are all refused.
//!
//! Claims: `exp` is required and must be a number (fractional seconds, as issuers using
//! `Date.now() / 1000` write them, count to the fraction); `nbf`, when present, must be a number
//! and not in the future; `aud` and `iss` are required and checked when the relay is configured
//! with an audience or issuer ([`ClaimRules`]). `role` picks the Postgres role; a token without
//! one is refused unless a default role is configured.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Why a token was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("a token is required (anonymous access is disabled)")]
    TokenRequired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("token is not valid yet (its 'nbf' is in the future)")]
    NotYetValid,
    #[error("role '{0}' is not allowed")]
    RoleNotAllowed(String),
    /// Credentials that are present but empty or not of the form the relay reads.
    #[error("{0}")]
    Malformed(String),
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
    /// Expiry (whole seconds since the epoch, rounded down from a fractional `exp`, so a
    /// token is never honoured past it), if the token has one.
    pub exp: Option<u64>,
}

/// A Postgres role name we are willing to `SET ROLE` to: a plain identifier (letters, digits,
/// `_`, not starting with a digit, at most 63 bytes), so it can be quoted without escaping.
pub fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a JWKS file was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a JWK set: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("{path}: key #{index} has no 'kid'")]
    NoKid { path: String, index: usize },
    #[error("{path}: key '{kid}' is not an RS256 or ES256 (P-256) signing key")]
    Unsupported { path: String, kid: String },
    #[error("{path}: key '{kid}' is unusable: {reason}")]
    BadKey { path: String, kid: String, reason: String },
    #[error("{path} holds no keys")]
    Empty { path: String },
}

/// Public keys by `kid`, each bound to the one algorithm it may verify.
#[derive(Clone, Default)]
pub struct PublicKeys {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<_> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("PublicKeys").field("kids", &kids).finish()
    }
}

impl PublicKeys {
    /// Loads a JWKS file (`{"keys":[...]}`) of RS256 and ES256 keys.
    pub fn from_file(path: &str) -> Result<Self, JwksError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| JwksError::Read { path: path.into(), source })?;
        Self::from_json(path, &text)
    }

    fn from_json(path: &str, text: &str) -> Result<Self, JwksError> {
        let set: JwkSet =
            serde_json::from_str(text).map_err(|source| JwksError::Parse { path: path.into(), source })?;
        let mut keys = HashMap::new();
        for (index, jwk) in set.keys.iter().enumerate() {
            let kid = jwk.common.key_id.clone().ok_or(JwksError::NoKid { path: path.into(), index })?;
            let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => return Err(JwksError::Unsupported { path: path.into(), kid }),
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| JwksError::BadKey {
                path: path.into(),
                kid: kid.clone(),
                reason: e.to_string(),
            })?;
            keys.insert(kid, (alg, key));
        }
        if keys.is_empty() {
            return Err(JwksError::Empty { path: path.into() });
        }
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What a token's registered claims must say beyond a valid signature and `exp`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimRules {
    /// Accepted `aud` values; empty: `aud` is not checked.
    pub audience: Vec<String>,
    /// Accepted `iss` values; empty: `iss` is not checked.
    pub issuer: Vec<String>,
    /// The role of a token without a `role` claim; `None`: such tokens are refused.
    pub default_role: Option<String>,
}

/// Verifies tokens against the HS256 secret and/or the JWKS keys, and a role allowlist.
#[derive(Clone)]
pub struct Authenticator {
    secret: Option<DecodingKey>,
    public: PublicKeys,
    roles: Vec<String>,
    allow_anon: bool,
    rules: ClaimRules,
}

/// Signature and algorithm only: every claim is checked by [`Authenticator::check_claims`], on
/// the exact values (the library rounds fractional dates and reads a malformed one as absent).
fn signature_only(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v
}

/// Seconds since the epoch, with the fraction.
fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A numeric date claim (`exp`, `nbf`) as seconds: absent is `Ok(None)`, anything but a finite,
/// non-negative number is refused.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f)),
            _ => Err(AuthError::Invalid(format!("claim '{name}' is not a valid date"))),
        },
        Some(_) => Err(AuthError::Invalid(format!("claim '{name}' must be a number (seconds since 1970)"))),
    }
}

/// Whether `claim` (a string or an array of strings) names one of `accepted`.
fn names_one_of(claim: Option<&Value>, accepted: &[String]) -> bool {
    match claim {
        Some(Value::String(s)) => accepted.contains(s),
        Some(Value::Array(items)) => {
            items.iter().any(|v| v.as_str().is_some_and(|s| accepted.iter().any(|a| a == s)))
        }
        _ => false,
    }
}

impl Authenticator {
    pub fn new(secret: &str, roles: Vec<String>, allow_anon: bool) -> Self {
        Self::with_keys(Some(secret), PublicKeys::default(), roles, allow_anon)
    }

    /// An authenticator with an optional HS256 secret and JWKS public keys.
    pub fn with_keys(secret: Option<&str>, public: PublicKeys, roles: Vec<String>, allow_anon: bool) -> Self {
        Self {
            secret: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            public,
            roles,
            allow_anon,
            rules: ClaimRules::default(),
        }
    }

    /// The same authenticator with these claim rules.
    pub fn with_rules(mut self, rules: ClaimRules) -> Self {
        self.rules = rules;
        self
    }

    fn key_for(&self, token: &str) -> Result<(&DecodingKey, Algorithm), AuthError> {
        let header = decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        match header.alg {
            Algorithm::HS256 => {
                self.secret.as_ref().map(|k| (k, Algorithm::HS256)).ok_or_else(|| {
                    AuthError::Invalid("HS256 tokens are not accepted (no --jwt-secret)".into())
                })
            }
            Algorithm::RS256 | Algorithm::ES256 => {
                let kid = header.kid.ok_or_else(|| AuthError::Invalid("token has no 'kid'".into()))?;
                match self.public.keys.get(&kid) {
                    Some((alg, key)) if *alg == header.alg => Ok((key, *alg)),
                    Some((alg, _)) => {
                        Err(AuthError::Invalid(format!("key '{kid}' is for {alg:?}, not {:?}", header.alg)))
                    }
                    None => Err(AuthError::Invalid(format!("unknown key id '{kid}'"))),
                }
            }
            other => Err(AuthError::Invalid(format!("algorithm {other:?} is not accepted"))),
        }
    }

    /// Checks `exp`, `nbf`, `aud` and `iss` of a token whose signature verified; returns `exp`.
    fn check_claims(&self, claims: &Map<String, Value>) -> Result<f64, AuthError> {
        let now = now_secs();
        let exp = numeric_date(claims, "exp")?
            .ok_or_else(|| AuthError::Invalid("token has no 'exp' claim".into()))?;
        if exp <= now {
            return Err(AuthError::Expired);
        }
        if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now) {
            return Err(AuthError::NotYetValid);
        }
        if !self.rules.audience.is_empty() && !names_one_of(claims.get("aud"), &self.rules.audience) {
            let why = if claims.contains_key("aud") { "is not accepted here" } else { "is missing" };
            return Err(AuthError::Invalid(format!("token audience ('aud') {why}")));
        }
        if !self.rules.issuer.is_empty()
            && !matches!(claims.get("iss"), Some(Value::String(i)) if self.rules.issuer.contains(i))
        {
            let why = if claims.contains_key("iss") { "is not accepted here" } else { "is missing" };
            return Err(AuthError::Invalid(format!("token issuer ('iss') {why}")));
        }
        Ok(exp)
    }

    /// Authenticates a connection: no token means `anon` when allowed; an empty one is refused.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        match token {
            Some(t) if t.trim().is_empty() => Err(AuthError::Malformed("the token is empty".into())),
            None => {
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
        let (key, alg) = self.key_for(token)?;
        let data = decode::<Map<String, Value>>(token, key, &signature_only(alg))
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let exp = self.check_claims(&claims)?;
        let role = match (claims.get("role"), &self.rules.default_role) {
            (Some(Value::String(r)), _) => r.clone(),
            (None, Some(default)) => default.clone(),
            (None, None) => {
                return Err(AuthError::Invalid(
                    "token has no 'role' claim (this relay has no default role)".into(),
                ))
            }
            (Some(_), _) => return Err(AuthError::Invalid("claim 'role' is not a string".into())),
        };
        if !self.roles.contains(&role) {
            return Err(AuthError::RoleNotAllowed(role));
        }
        let user_id = match claims.get("sub") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        // Saturating float-to-int cast: an `exp` beyond u64 seconds is u64::MAX.
        let exp = Some(exp.floor() as u64);
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
    fn missing_token_is_anon_only_when_allowed_and_an_empty_one_is_never_anon() {
        assert_eq!(auth(true).authenticate(None).unwrap().role, "anon");
        assert_eq!(auth(false).authenticate(None), Err(AuthError::TokenRequired));
        assert_eq!(
            auth(true).authenticate(Some(" ")),
            Err(AuthError::Malformed("the token is empty".into()))
        );
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

    fn sign(claims: &Value) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    }

    fn now_f() -> f64 {
        super::now_secs()
    }

    #[test]
    fn fractional_exp_counts_to_the_fraction() {
        let live = sign(&serde_json::json!({"role": "anon", "exp": now_f() + 30.75}));
        let id = auth(true).authenticate(Some(&live)).unwrap();
        let floor = (now_f() + 30.75).floor() as u64;
        assert!(id.exp == Some(floor) || id.exp == Some(floor - 1), "rounded down: {:?}", id.exp);
        let gone = sign(&serde_json::json!({"role": "anon", "exp": now_f() - 0.25}));
        assert_eq!(auth(true).authenticate(Some(&gone)), Err(AuthError::Expired));
    }

    #[test]
    fn exp_near_u64_max_is_accepted_and_saturates() {
        let t = sign(&serde_json::json!({"role": "anon", "exp": u64::MAX}));
        assert_eq!(auth(true).authenticate(Some(&t)).unwrap().exp, Some(u64::MAX));
        let t = sign(&serde_json::json!({"role": "anon", "exp": 1e300}));
        assert_eq!(auth(true).authenticate(Some(&t)).unwrap().exp, Some(u64::MAX));
    }

    #[test]
    fn malformed_dates_are_refused_with_their_name() {
        for (claims, want) in [
            (serde_json::json!({"role": "anon"}), "token has no 'exp' claim"),
            (serde_json::json!({"role": "anon", "exp": "9999999999"}), "claim 'exp' must be a number"),
            (serde_json::json!({"role": "anon", "exp": -5}), "claim 'exp' is not a valid date"),
            (
                serde_json::json!({"role": "anon", "exp": 9_999_999_999u64, "nbf": "0"}),
                "claim 'nbf' must be a number",
            ),
        ] {
            let e = auth(true).authenticate(Some(&sign(&claims))).unwrap_err();
            assert!(e.to_string().contains(want), "{claims}: {e}");
        }
    }

    #[test]
    fn nbf_in_the_future_is_refused_and_in_the_past_accepted() {
        let later = sign(&serde_json::json!({"role": "anon", "exp": now_f() + 600.0, "nbf": now_f() + 60.0}));
        assert_eq!(auth(true).authenticate(Some(&later)), Err(AuthError::NotYetValid));
        let earlier =
            sign(&serde_json::json!({"role": "anon", "exp": now_f() + 600.0, "nbf": now_f() - 1.5}));
        assert!(auth(true).authenticate(Some(&earlier)).is_ok());
    }

    #[test]
    fn audience_and_issuer_are_checked_only_when_configured() {
        let rules = ClaimRules {
            audience: vec!["authenticated".into()],
            issuer: vec!["https://id.example".into()],
            default_role: None,
        };
        let strict = auth(true).with_rules(rules);
        let exp = now_f() + 600.0;
        let good = sign(
            &serde_json::json!({"role": "anon", "exp": exp, "aud": ["other", "authenticated"], "iss": "https://id.example"}),
        );
        assert!(strict.authenticate(Some(&good)).is_ok());
        for (claims, want) in [
            (
                serde_json::json!({"role": "anon", "exp": exp, "iss": "https://id.example"}),
                "audience ('aud') is missing",
            ),
            (
                serde_json::json!({"role": "anon", "exp": exp, "aud": "other", "iss": "https://id.example"}),
                "audience ('aud') is not accepted",
            ),
            (
                serde_json::json!({"role": "anon", "exp": exp, "aud": "authenticated"}),
                "issuer ('iss') is missing",
            ),
            (
                serde_json::json!({"role": "anon", "exp": exp, "aud": "authenticated", "iss": "https://evil.example"}),
                "issuer ('iss') is not accepted",
            ),
        ] {
            let e = strict.authenticate(Some(&sign(&claims))).unwrap_err();
            assert!(e.to_string().contains(want), "{claims}: {e}");
        }
        let any = sign(&serde_json::json!({"role": "anon", "exp": exp, "aud": "whatever", "iss": "anyone"}));
        assert!(auth(true).authenticate(Some(&any)).is_ok(), "no rules: aud and iss are not checked");
    }

    #[test]
    fn token_without_role_needs_a_default_role() {
        let t = sign(&serde_json::json!({"sub": "dave", "exp": now_f() + 600.0}));
        let e = auth(true).authenticate(Some(&t)).unwrap_err();
        assert!(e.to_string().contains("no 'role' claim"), "{e}");
        let rules = ClaimRules { default_role: Some("authenticated".into()), ..Default::default() };
        let id = auth(true).with_rules(rules).authenticate(Some(&t)).unwrap();
        assert_eq!((id.role.as_str(), id.user_id.as_deref()), ("authenticated", Some("dave")));
        let claims: Value = serde_json::from_str(&id.claims).unwrap();
        assert_eq!(claims["role"], "authenticated", "the claims Postgres sees carry the role used");
    }

    const JWKS: &str = include_str!("../../tests/fixtures/jwks.json");

    fn with_jwks(secret: Option<&str>) -> Authenticator {
        let keys = PublicKeys::from_json("jwks.json", JWKS).unwrap();
        Authenticator::with_keys(secret, keys, vec!["authenticated".into()], false)
    }

    fn signed(alg: Algorithm, kid: &str, pem: &[u8]) -> String {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).unwrap(),
            _ => EncodingKey::from_ec_pem(pem).unwrap(),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        let claims = serde_json::json!({"role": "authenticated", "sub": "carol", "exp": 9_999_999_999u64});
        encode(&header, &claims, &key).unwrap()
    }

    const RSA_PEM: &[u8] = include_bytes!("../../tests/fixtures/rsa.pem");
    const EC_PEM: &[u8] = include_bytes!("../../tests/fixtures/ec.pem");

    #[test]
    fn rs256_and_es256_tokens_verify_by_kid() {
        let a = with_jwks(None);
        assert_eq!(
            a.authenticate(Some(&signed(Algorithm::RS256, "rsa-1", RSA_PEM))).unwrap().user_id.unwrap(),
            "carol"
        );
        assert_eq!(
            a.authenticate(Some(&signed(Algorithm::ES256, "ec-1", EC_PEM))).unwrap().role,
            "authenticated"
        );
    }

    #[test]
    fn unknown_kid_and_key_of_other_algorithm_are_refused() {
        let a = with_jwks(None);
        let e = a.authenticate(Some(&signed(Algorithm::RS256, "nope", RSA_PEM))).unwrap_err();
        assert_eq!(e, AuthError::Invalid("unknown key id 'nope'".into()));
        let e = a.authenticate(Some(&signed(Algorithm::ES256, "rsa-1", EC_PEM))).unwrap_err();
        assert!(e.to_string().contains("is for RS256"), "{e}");
    }

    #[test]
    fn hs256_token_made_with_the_public_key_is_refused() {
        // HS/RS confusion: an attacker "signs" HS256 using the RSA public key material as the secret.
        let public_n =
            serde_json::from_str::<Value>(JWKS).unwrap()["keys"][0]["n"].as_str().unwrap().to_string();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let claims = serde_json::json!({"role": "authenticated", "exp": 9_999_999_999u64});
        let forged = encode(&header, &claims, &EncodingKey::from_secret(public_n.as_bytes())).unwrap();
        assert!(matches!(with_jwks(None).authenticate(Some(&forged)), Err(AuthError::Invalid(_))));
        assert!(matches!(with_jwks(Some(SECRET)).authenticate(Some(&forged)), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn jwks_without_kid_or_with_other_key_types_is_refused_at_load() {
        let no_kid = r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#;
        assert!(matches!(PublicKeys::from_json("f", no_kid), Err(JwksError::NoKid { index: 0, .. })));
        let hs = r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#;
        assert!(matches!(PublicKeys::from_json("f", hs), Err(JwksError::Unsupported { .. })));
        assert!(matches!(PublicKeys::from_json("f", r#"{"keys":[]}"#), Err(JwksError::Empty { .. })));
        assert!(matches!(PublicKeys::from_json("f", "nope"), Err(JwksError::Parse { .. })));
    }

    #[test]
    fn alg_none_is_refused() {
        // header {"alg":"none","typ":"JWT"}, payload {"role":"anon","exp":9999999999}, no signature
        let t = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJyb2xlIjoiYW5vbiIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(matches!(auth(true).authenticate(Some(t)), Err(AuthError::Invalid(_))));
    }
}
