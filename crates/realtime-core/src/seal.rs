//! Sealed logical messages: how the extension proves to the relay that a `realtime:` logical
//! message came from its own code (`realtime.emit_message`), not from any login that may call
//! `pg_logical_emit_message()`.
//!
//! A sealed message body is `rt1.<key id>.<mac>.<content>`: `<key id>` is the id of the row of
//! `realtime.relay_keys` whose key made the seal (decimal), `<mac>` is 64 lowercase hex digits
//! of HMAC-SHA256 over the domain tag, the logical message's prefix, the key id and the content
//! (each separated by a NUL byte, which none of the first three contains), and `<content>` is
//! the original body, unchanged. [`seal`] makes it; [`Sealed::parse`] splits it without
//! trusting it; [`Sealed::verify`] checks the MAC in constant time and returns the content.
//!
//! The seal authenticates the origin of a message and binds it to its prefix (a sealed presence
//! op cannot be re-emitted as a broadcast); it does not make a message fresh: whoever can read
//! sealed bodies (roles with `REPLICATION`) could re-emit one. No I/O here.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Version tag that starts every sealed body.
pub const SEAL_TAG: &str = "rt1";
/// Shortest key accepted (bytes): a 256-bit key, as the extension generates.
pub const MIN_KEY_BYTES: usize = 32;
const DOMAIN: &[u8] = b"realtime-seal-v1";
const MAC_HEX: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a body is not a valid sealed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not a sealed message (no `rt1.<key id>.<mac>.` head)")]
    Unsealed,
    #[error("sealed message has a malformed key id")]
    BadKeyId,
    #[error("sealed message has a malformed MAC")]
    BadMac,
    #[error("seal does not verify with key {0}")]
    Mismatch(i64),
    #[error("key is {0} bytes; at least {MIN_KEY_BYTES} are required")]
    ShortKey(usize),
}

fn mac(key: &[u8], key_id: i64, prefix: &str, content: &[u8]) -> Result<HmacSha256, SealError> {
    if key.len() < MIN_KEY_BYTES {
        return Err(SealError::ShortKey(key.len()));
    }
    let mut m = HmacSha256::new_from_slice(key).map_err(|_| SealError::ShortKey(key.len()))?;
    m.update(DOMAIN);
    m.update(b"\0");
    m.update(prefix.as_bytes());
    m.update(b"\0");
    m.update(key_id.to_string().as_bytes());
    m.update(b"\0");
    m.update(content);
    Ok(m)
}

/// Seals `content` for logical-message `prefix` with key `key_id` / `key`:
/// `rt1.<key id>.<mac>.<content>`.
pub fn seal(key_id: i64, key: &[u8], prefix: &str, content: &str) -> Result<String, SealError> {
    let tag = mac(key, key_id, prefix, content.as_bytes())?.finalize().into_bytes();
    let mut out = String::with_capacity(SEAL_TAG.len() + 24 + MAC_HEX + content.len());
    out.push_str(SEAL_TAG);
    out.push('.');
    out.push_str(&key_id.to_string());
    out.push('.');
    for b in tag {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out.push('.');
    out.push_str(content);
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A body split into its seal and content; nothing about it is verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed<'a> {
    pub key_id: i64,
    mac: [u8; 32],
    pub content: &'a [u8],
}

impl<'a> Sealed<'a> {
    /// Splits `rt1.<key id>.<mac>.<content>`.
    pub fn parse(body: &'a [u8]) -> Result<Self, SealError> {
        let rest = body
            .strip_prefix(SEAL_TAG.as_bytes())
            .and_then(|r| r.strip_prefix(b"."))
            .ok_or(SealError::Unsealed)?;
        let dot = rest.iter().take(21).position(|&b| b == b'.').ok_or(SealError::BadKeyId)?;
        let (id, rest) = (&rest[..dot], &rest[dot + 1..]);
        let canonical = !id.is_empty() && id.iter().all(u8::is_ascii_digit) && (id == b"0" || id[0] != b'0');
        let key_id: i64 = std::str::from_utf8(id)
            .ok()
            .filter(|_| canonical)
            .and_then(|s| s.parse().ok())
            .ok_or(SealError::BadKeyId)?;
        if rest.len() <= MAC_HEX || rest[MAC_HEX] != b'.' {
            return Err(SealError::BadMac);
        }
        let mut mac = [0u8; 32];
        for (i, pair) in rest[..MAC_HEX].chunks_exact(2).enumerate() {
            mac[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Sealed { key_id, mac, content: &rest[MAC_HEX + 1..] })
    }

    /// Checks the MAC for `prefix` with `key` (the key of [`Self::key_id`]) in constant time;
    /// returns the content when it verifies.
    pub fn verify(&self, key: &[u8], prefix: &str) -> Result<&'a [u8], SealError> {
        mac(key, self.key_id, prefix, self.content)?
            .verify_slice(&self.mac)
            .map_err(|_| SealError::Mismatch(self.key_id))?;
        Ok(self.content)
    }
}

fn nibble(c: u8) -> Result<u8, SealError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(SealError::BadMac),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const OTHER: [u8; 32] = [8; 32];

    #[test]
    fn sealed_body_round_trips_and_keeps_the_content() {
        let body = r#"{"channel":"private:alice","event":"e","payload":{}}"#;
        let s = seal(3, &KEY, "realtime:broadcast", body).unwrap();
        assert!(s.starts_with("rt1.3.") && s.ends_with(body), "{s}");
        let p = Sealed::parse(s.as_bytes()).unwrap();
        assert_eq!(p.key_id, 3);
        assert_eq!(p.verify(&KEY, "realtime:broadcast").unwrap(), body.as_bytes());
        let empty = seal(1, &KEY, "realtime:channels", "").unwrap();
        assert_eq!(Sealed::parse(empty.as_bytes()).unwrap().verify(&KEY, "realtime:channels").unwrap(), b"");
    }

    #[test]
    fn wrong_key_prefix_or_changed_content_does_not_verify() {
        let s = seal(3, &KEY, "realtime:presence", "{\"op\":\"track\"}").unwrap();
        let p = Sealed::parse(s.as_bytes()).unwrap();
        assert_eq!(p.verify(&OTHER, "realtime:presence"), Err(SealError::Mismatch(3)));
        assert_eq!(p.verify(&KEY, "realtime:broadcast"), Err(SealError::Mismatch(3)));
        let changed = s.replace("track", "trick");
        let p = Sealed::parse(changed.as_bytes()).unwrap();
        assert_eq!(p.verify(&KEY, "realtime:presence"), Err(SealError::Mismatch(3)));
        // the key id is covered too: the same MAC under another id fails
        let moved = s.replacen("rt1.3.", "rt1.4.", 1);
        let p = Sealed::parse(moved.as_bytes()).unwrap();
        assert_eq!(p.verify(&KEY, "realtime:presence"), Err(SealError::Mismatch(4)));
    }

    #[test]
    fn unsealed_and_malformed_bodies_are_errors() {
        let good = seal(12, &KEY, "p", "x").unwrap();
        let mac = &good["rt1.12.".len().."rt1.12.".len() + 64];
        for (body, want) in [
            (r#"{"channel":"private:alice"}"#.to_string(), SealError::Unsealed),
            (String::new(), SealError::Unsealed),
            ("rt1".into(), SealError::Unsealed),
            ("rt2.1.".into(), SealError::Unsealed),
            ("rt1..".into(), SealError::BadKeyId),
            (format!("rt1.012.{mac}.x"), SealError::BadKeyId),
            (format!("rt1.-1.{mac}.x"), SealError::BadKeyId),
            (format!("rt1.99999999999999999999.{mac}.x"), SealError::BadKeyId),
            ("rt1.12.abc.x".into(), SealError::BadMac),
            (format!("rt1.12.{mac}"), SealError::BadMac),
            (format!("rt1.12.{}.x", mac.to_uppercase()), SealError::BadMac),
        ] {
            assert_eq!(Sealed::parse(body.as_bytes()).map(|_| ()), Err(want), "{body:?}");
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(seal(1, &[1; 16], "p", "x"), Err(SealError::ShortKey(16)));
        let s = seal(1, &KEY, "p", "x").unwrap();
        assert_eq!(Sealed::parse(s.as_bytes()).unwrap().verify(&[1; 31], "p"), Err(SealError::ShortKey(31)));
    }
}
