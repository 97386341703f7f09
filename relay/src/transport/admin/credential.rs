//! The console's credential and sessions: the admin token (`--admin-token`) kept only as keys
//! derived from it, and the signed session a sign-in gives (`v1.<expiry>.<name>.<HMAC>`, keyed
//! by a key derived from the token), so a cookie never holds the token itself. Sessions last
//! [`SESSION_TTL_SECS`], work on every relay with the same token, and all end when the token
//! changes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How long a sign-in lasts.
pub const SESSION_TTL_SECS: u64 = 8 * 3600;
/// Who a bearer-token request is, in the audit log.
pub const API_NAME: &str = "api";

/// A signed-in admin: the name given at sign-in (or [`API_NAME`]) and when the session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub name: String,
    /// Seconds since the epoch.
    pub expires: u64,
}

/// The admin token, kept only as keys derived from it.
pub struct Credential {
    /// Per-process key of the constant-time token comparison.
    compare_key: [u8; 32],
    /// `HMAC(compare_key, token)`.
    token_tag: Vec<u8>,
    /// Signs session cookies: `HMAC(token, "realtime admin session v1")`.
    session_key: Vec<u8>,
}

fn mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Credential {
    pub fn new(token: &str) -> Self {
        let compare_key: [u8; 32] = rand::random();
        let mut m = mac(&compare_key);
        m.update(token.as_bytes());
        let token_tag = m.finalize().into_bytes().to_vec();
        let mut m = mac(token.as_bytes());
        m.update(b"realtime admin session v1");
        let session_key = m.finalize().into_bytes().to_vec();
        Credential { compare_key, token_tag, session_key }
    }

    /// Is `presented` the admin token? Constant time in its content.
    pub fn token_matches(&self, presented: &str) -> bool {
        let mut m = mac(&self.compare_key);
        m.update(presented.as_bytes());
        m.verify_slice(&self.token_tag).is_ok()
    }

    fn sign(&self, body: &str) -> HmacSha256 {
        let mut m = mac(&self.session_key);
        m.update(body.as_bytes());
        m
    }

    /// A session cookie value for `name`, valid until `expires`.
    pub fn issue(&self, name: &str, expires: u64) -> String {
        let body = format!("v1.{expires}.{}", B64.encode(name));
        let sig = B64.encode(self.sign(&body).finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// The admin a cookie value stands for, if its signature is ours and it has not expired.
    pub fn verify(&self, value: &str, now: u64) -> Option<Admin> {
        let (body, sig) = value.rsplit_once('.')?;
        let sig = B64.decode(sig).ok()?;
        self.sign(body).verify_slice(&sig).ok()?;
        let mut parts = body.split('.');
        let (Some("v1"), Some(expires), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let expires: u64 = expires.parse().ok()?;
        let name = String::from_utf8(B64.decode(name).ok()?).ok()?;
        (now < expires).then_some(Admin { name, expires })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn only_the_exact_token_matches() {
        let c = Credential::new(TOKEN);
        assert!(c.token_matches(TOKEN));
        assert!(!c.token_matches(&TOKEN[1..]));
        assert!(!c.token_matches(&format!("{TOKEN}x")));
        assert!(!c.token_matches(""));
    }

    #[test]
    fn session_cookies_verify_until_they_expire_and_only_with_the_same_token() {
        let c = Credential::new(TOKEN);
        let v = c.issue("Ada Lovelace", 1_000);
        assert_eq!(c.verify(&v, 999), Some(Admin { name: "Ada Lovelace".into(), expires: 1_000 }));
        assert_eq!(c.verify(&v, 1_000), None, "expired");
        let other = Credential::new("another-token-that-is-long-enough-000");
        assert_eq!(other.verify(&v, 10), None, "a new token ends every session");
        assert_eq!(Credential::new(TOKEN).verify(&v, 10).map(|a| a.name), Some("Ada Lovelace".into()));
    }

    #[test]
    fn tampered_session_cookies_are_refused() {
        let c = Credential::new(TOKEN);
        let v = c.issue("ada", 5_000);
        let (body, sig) = v.rsplit_once('.').unwrap();
        let later = body.replace("5000", "9999");
        assert_eq!(c.verify(&format!("{later}.{sig}"), 10), None);
        let renamed = format!("v1.5000.{}", B64.encode("root"));
        assert_eq!(c.verify(&format!("{renamed}.{sig}"), 10), None);
        for junk in ["", ".", "v1", "v1.5000.YWRh", "v1.x.YWRh.AAAA", "a.b.c.d.e"] {
            assert_eq!(c.verify(junk, 10), None, "{junk}");
        }
    }
}
