//! Standard Webhooks signing (<https://www.standardwebhooks.com/>): `webhook-signature` is
//! `v1,<base64 HMAC-SHA256>` over `"{webhook-id}.{webhook-timestamp}.{body}"`.
//!
//! How `realtime.channels.webhook_secret` is read, as the spec's reference libraries do:
//!
//! - `whsec_<base64>` (what `realtime.generate_webhook_secret()` makes): the key is the base64
//!   decoding of the part after the prefix, so receivers can pass the same string to the
//!   `standardwebhooks` / `svix` libraries unchanged;
//! - any other non-empty text: the key is its UTF-8 bytes;
//! - NULL or empty: the request is sent without a `webhook-signature` header.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of Standard Webhooks secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// A `webhook_secret` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("webhook_secret starts with whsec_ but the rest is not valid base64")]
    BadBase64,
}

/// The HMAC key of a channel's webhooks.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// The key of `secret`; `Ok(None)` when there is none (NULL or empty: unsigned requests).
    pub fn from_secret(secret: Option<&str>) -> Result<Option<Self>, SecretError> {
        let Some(secret) = secret.filter(|s| !s.is_empty()) else { return Ok(None) };
        match secret.strip_prefix(SECRET_PREFIX) {
            Some(b64) => {
                STANDARD.decode(b64.trim()).map(|k| Some(SigningKey(k))).map_err(|_| SecretError::BadBase64)
            }
            None => Ok(Some(SigningKey(secret.as_bytes().to_vec()))),
        }
    }

    /// The `webhook-signature` header value for one request.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks reference libraries' tests.
        let key = SigningKey::from_secret(Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap().unwrap();
        let sig = key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn plain_secrets_are_used_as_bytes_and_empty_means_unsigned() {
        let plain = SigningKey::from_secret(Some("s3cret")).unwrap().unwrap();
        assert_eq!(plain.0, b"s3cret");
        assert!(SigningKey::from_secret(None).unwrap().is_none());
        assert!(SigningKey::from_secret(Some("")).unwrap().is_none());
    }

    #[test]
    fn whsec_with_bad_base64_is_an_error() {
        assert_eq!(SigningKey::from_secret(Some("whsec_!!notbase64")).unwrap_err(), SecretError::BadBase64);
    }

    #[test]
    fn signature_covers_id_timestamp_and_body() {
        let key = SigningKey::from_secret(Some("k")).unwrap().unwrap();
        let base = key.sign("a", 1, b"{}");
        assert_ne!(base, key.sign("b", 1, b"{}"));
        assert_ne!(base, key.sign("a", 2, b"{}"));
        assert_ne!(base, key.sign("a", 1, b"{ }"));
    }
}
