//! Message cursors and `pg_lsn` text helpers (pure, no I/O).
//!
//! A cursor is `lpad(hex(commit_lsn), 16) || lpad(hex(seq), 16)`: 32 lowercase hex characters.
//! `commit_lsn` is the LSN of the publishing transaction's commit record (the same on every
//! relay, because every relay decodes the same WAL) and `seq` is `realtime.messages.seq`.
//!
//! [`Cursor`]'s `Ord` is exactly the byte order of its string form: LSN first, then `seq`
//! compared as the unsigned 64-bit value that is printed. (`seq` is a positive identity in
//! practice; comparing it as `u64` only matters for negative values, and keeps the two orders
//! identical for every possible value.)

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Length of a cursor's text form.
pub const CURSOR_LEN: usize = 32;

/// Errors from parsing cursors and LSNs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("cursor must be {CURSOR_LEN} characters, got {0}")]
    Length(usize),
    #[error("cursor must be lowercase hexadecimal")]
    NotHex,
    #[error("invalid pg_lsn {0:?}: expected two hex parts like 16/B374D848")]
    Lsn(String),
}

/// Position of a stored message in commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cursor {
    /// LSN of the commit record of the transaction that inserted the message.
    pub commit_lsn: u64,
    /// `realtime.messages.seq` of the message (insertion order inside the transaction).
    pub seq: i64,
}

impl Cursor {
    /// The smallest cursor; every real message sorts after it.
    pub const MIN: Cursor = Cursor { commit_lsn: 0, seq: 0 };

    pub const fn new(commit_lsn: u64, seq: i64) -> Self {
        Cursor { commit_lsn, seq }
    }

    /// The largest cursor of a commit: `Cursor::end_of_commit(lsn) >= c` for every `c` of
    /// that commit. Useful as "current position" after the commit at `lsn`.
    pub const fn end_of_commit(commit_lsn: u64) -> Self {
        Cursor {
            commit_lsn,
            seq: -1, // prints as ffffffffffffffff, the largest u64
        }
    }

    fn key(&self) -> (u64, u64) {
        (self.commit_lsn, self.seq as u64)
    }
}

impl Ord for Cursor {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Cursor {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.commit_lsn, self.seq as u64)
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != CURSOR_LEN {
            return Err(CursorError::Length(s.len()));
        }
        if !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(CursorError::NotHex);
        }
        let lsn = u64::from_str_radix(&s[..16], 16).map_err(|_| CursorError::NotHex)?;
        let seq = u64::from_str_radix(&s[16..], 16).map_err(|_| CursorError::NotHex)?;
        Ok(Cursor { commit_lsn: lsn, seq: seq as i64 })
    }
}

/// Formats an LSN the way Postgres prints `pg_lsn`: `16/B374D848` (uppercase, no padding).
pub fn format_pg_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses `pg_lsn` text (`16/B374D848`, either case, each part up to 8 hex digits).
pub fn parse_pg_lsn(s: &str) -> Result<u64, CursorError> {
    let bad = || CursorError::Lsn(s.to_string());
    let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
    let part = |p: &str| -> Result<u64, CursorError> {
        if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u64::from_str_radix(p, 16).map_err(|_| bad())
    };
    Ok((part(hi)? << 32) | part(lo)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_text_is_32_lowercase_hex_and_roundtrips() {
        let c = Cursor::new(0x16_B374_D848, 42);
        let s = c.to_string();
        assert_eq!(s, "00000016b374d848000000000000002a");
        assert_eq!(s.parse::<Cursor>().unwrap(), c);
        for c in [Cursor::MIN, Cursor::new(u64::MAX, i64::MAX), Cursor::new(1, -1)] {
            assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        }
    }

    #[test]
    fn cursor_order_matches_string_order_across_lsns_and_seqs() {
        let cursors = [
            Cursor::new(0, 0),
            Cursor::new(0, 5),
            Cursor::new(1, 0),
            Cursor::new(0x1_0000_0000, 1),
            Cursor::new(0x1_0000_0000, 2),
            Cursor::new(0x1_0000_0000, i64::MAX),
            Cursor::end_of_commit(0x1_0000_0000),
            Cursor::new(0x1_0000_0001, 0),
            Cursor::new(u64::MAX, 0),
        ];
        for a in &cursors {
            for b in &cursors {
                assert_eq!(a.cmp(b), a.to_string().cmp(&b.to_string()), "{a:?} vs {b:?}");
            }
        }
        // a later commit sorts after an earlier one even with a smaller seq
        assert!(Cursor::new(200, 1) > Cursor::new(100, 999));
        assert!(Cursor::new(100, 2) > Cursor::new(100, 1));
    }

    #[test]
    fn cursor_rejects_bad_input() {
        assert_eq!("".parse::<Cursor>(), Err(CursorError::Length(0)));
        assert_eq!("00000016b374d848000000000000002".parse::<Cursor>(), Err(CursorError::Length(31)));
        assert_eq!("00000016B374D848000000000000002a".parse::<Cursor>(), Err(CursorError::NotHex));
        assert_eq!("00000016b374d848000000000000002g".parse::<Cursor>(), Err(CursorError::NotHex));
        assert_eq!("+0000016b374d848000000000000002a".parse::<Cursor>(), Err(CursorError::NotHex));
        // multibyte characters of the right byte length
        assert!("é0000016b374d848000000000000002".parse::<Cursor>().is_err());
    }

    #[test]
    fn pg_lsn_text_roundtrips() {
        assert_eq!(format_pg_lsn(0), "0/0");
        assert_eq!(format_pg_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_pg_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert_eq!(parse_pg_lsn("16/b374d848").unwrap(), 0x16_B374_D848);
        assert_eq!(parse_pg_lsn("0/16B6C50").unwrap(), 0x16B6C50);
        assert_eq!(parse_pg_lsn("FFFFFFFF/FFFFFFFF").unwrap(), u64::MAX);
        for v in [0, 1, 0xFFFF_FFFF, 0x1_0000_0000, u64::MAX] {
            assert_eq!(parse_pg_lsn(&format_pg_lsn(v)).unwrap(), v);
        }
    }

    #[test]
    fn pg_lsn_rejects_bad_input() {
        for s in ["", "16", "/1", "1/", "1/2/3", "G/0", "123456789/0", "-1/0", "1 /0"] {
            assert!(parse_pg_lsn(s).is_err(), "{s}");
        }
    }
}
