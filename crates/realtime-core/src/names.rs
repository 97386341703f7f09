//! Channel names, event names and channel patterns: validation and matching.
//!
//! Pure Rust, no Postgres. The extension (`realtime.publish`, `realtime.validate_*`,
//! `realtime.match_channel`) and the relay (client frames, HTTP bodies) both call into here, so
//! this module alone owns the rules that decide
//!
//! - what a valid channel *pattern* is (a row of `realtime.channels`): an exact channel name
//!   (`chat:lobby`) or a `LIKE` pattern whose only wildcard is `%` (`order:%`);
//! - what a valid channel *name* and *event* are (arguments of `realtime.publish` / `broadcast`);
//! - how a name matches a pattern (`LIKE` with `%` as the only wildcard, byte for byte);
//! - which of several matching patterns wins: an exact pattern beats any wildcard pattern; among
//!   wildcard patterns the longest (in bytes) wins; ties are broken by pattern text, ascending
//!   (byte order, i.e. `COLLATE "C"`).
//!
//! The extension's SQL layer only fetches candidate rows and calls into here. Error texts carry no
//! prefix: the extension reports them as `realtime: <text>`, the relay as they are.

use thiserror::Error;

/// Longest allowed pattern, channel name or event name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// The one wildcard a pattern may contain.
pub const WILDCARD: char = '%';

/// Why a channel pattern, channel name or event name was rejected.
///
/// The `Display` text is the error message without a prefix (Postgres reports it after
/// `realtime: `).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("{what} must not be null")]
    Null { what: &'static str },

    #[error("{what} must not be empty")]
    Empty { what: &'static str },

    #[error(
        "{what} is {len} bytes long; the limit is {max} bytes",
        max = MAX_NAME_BYTES
    )]
    TooLong { what: &'static str, len: usize },

    #[error(
        "channel pattern '{pattern}' contains '{ch}'; only '%' is a wildcard and '_' and '\\' are not allowed"
    )]
    ForbiddenPatternChar { pattern: String, ch: char },

    #[error(
        "{what} '{shown}' contains {kind} at byte {at}; {what}s cannot contain control characters{extra}"
    )]
    BadChar {
        what: &'static str,
        /// The offending text with control characters escaped, so the message stays printable.
        shown: String,
        kind: &'static str,
        at: usize,
        extra: &'static str,
    },
}

/// Validates a `realtime.channels.pattern` value.
///
/// Rejects empty patterns, patterns over [`MAX_NAME_BYTES`], `_` and `\` (so that `LIKE`'s other
/// wildcard and its escape character never have a meaning), whitespace and control characters.
pub fn validate_pattern(pattern: &str) -> Result<(), NameError> {
    const WHAT: &str = "channel pattern";
    check_len(WHAT, pattern)?;
    if let Some(ch) = pattern.chars().find(|c| matches!(c, '_' | '\\')) {
        return Err(NameError::ForbiddenPatternChar { pattern: pattern.to_owned(), ch });
    }
    if let Some((at, c)) = pattern.char_indices().find(|(_, c)| c.is_control() || c.is_whitespace()) {
        return Err(NameError::BadChar {
            what: WHAT,
            shown: pattern.escape_debug().to_string(),
            kind: if c.is_control() { "a control character" } else { "whitespace" },
            at,
            extra: " or whitespace",
        });
    }
    Ok(())
}

/// Validates a channel name passed to `publish` / `broadcast` / `can_subscribe`.
///
/// Non-null, non-empty, at most [`MAX_NAME_BYTES`], no control characters.
pub fn validate_channel(name: Option<&str>) -> Result<&str, NameError> {
    const WHAT: &str = "channel";
    let name = name.ok_or(NameError::Null { what: WHAT })?;
    check_len(WHAT, name)?;
    if let Some((at, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(NameError::BadChar {
            what: WHAT,
            shown: name.escape_debug().to_string(),
            kind: "a control character",
            at,
            extra: "",
        });
    }
    Ok(name)
}

/// Validates an event name: non-null, non-empty, at most [`MAX_NAME_BYTES`].
pub fn validate_event(event: Option<&str>) -> Result<&str, NameError> {
    const WHAT: &str = "event";
    let event = event.ok_or(NameError::Null { what: WHAT })?;
    check_len(WHAT, event)?;
    Ok(event)
}

fn check_len(what: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        Err(NameError::Empty { what })
    } else if s.len() > MAX_NAME_BYTES {
        Err(NameError::TooLong { what, len: s.len() })
    } else {
        Ok(())
    }
}

/// True when `pattern` contains the `%` wildcard.
pub fn is_wildcard(pattern: &str) -> bool {
    pattern.contains(WILDCARD)
}

/// `name LIKE pattern` for patterns whose only special character is `%`.
///
/// Valid patterns never contain `_` or `\`, so for them this is exactly Postgres' `LIKE`.
pub fn like_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split(WILDCARD);
    let first = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    let Some((last, middle)) = rest.split_last() else {
        return pattern == name; // no wildcard at all
    };
    let Some(mut tail) = name.strip_prefix(first) else {
        return false;
    };
    let Some(inner) = tail.strip_suffix(last) else {
        return false;
    };
    tail = inner;
    for part in middle.iter().filter(|p| !p.is_empty()) {
        match tail.find(part) {
            Some(i) => tail = &tail[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Picks the best channel for `name` among `(id, pattern)` candidates.
///
/// An exact pattern (`pattern == name`) beats any wildcard pattern. Otherwise, among wildcard
/// patterns that match, the longest pattern (in bytes) wins and ties go to the smaller pattern
/// text (byte order). Returns `None` when nothing matches.
pub fn best_match<'a, I>(name: &str, candidates: I) -> Option<i64>
where
    I: IntoIterator<Item = (i64, &'a str)>,
{
    let mut best: Option<(i64, &str)> = None;
    for (id, pattern) in candidates {
        if pattern == name {
            return Some(id);
        }
        if !is_wildcard(pattern) || !like_match(pattern, name) {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, b)) => pattern.len() > b.len() || (pattern.len() == b.len() && pattern < b),
        };
        if better {
            best = Some((id, pattern));
        }
    }
    best.map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_patterns_are_valid() {
        for p in ["chat:lobby", "order:%", "%", "%:%:x", "héllo:wörld", "a%b%c"] {
            assert_eq!(validate_pattern(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn empty_pattern_is_rejected() {
        let err = validate_pattern("").unwrap_err();
        assert_eq!(err.to_string(), "channel pattern must not be empty");
    }

    #[test]
    fn pattern_over_255_bytes_is_rejected() {
        assert_eq!(validate_pattern(&"a".repeat(255)), Ok(()));
        let err = validate_pattern(&"a".repeat(256)).unwrap_err();
        assert_eq!(err.to_string(), "channel pattern is 256 bytes long; the limit is 255 bytes");
        // bytes, not characters: 128 two-byte characters are 256 bytes
        assert!(validate_pattern(&"é".repeat(128)).is_err());
    }

    #[test]
    fn underscore_in_pattern_is_rejected_with_reason() {
        let err = validate_pattern("a_b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "channel pattern 'a_b' contains '_'; only '%' is a wildcard and '_' and '\\' are not allowed"
        );
    }

    #[test]
    fn backslash_in_pattern_is_rejected_with_reason() {
        let err = validate_pattern("a\\%").unwrap_err();
        assert_eq!(
            err.to_string(),
            "channel pattern 'a\\%' contains '\\'; only '%' is a wildcard and '_' and '\\' are not allowed"
        );
    }

    #[test]
    fn whitespace_and_control_characters_in_pattern_are_rejected() {
        let err = validate_pattern("chat lobby").unwrap_err();
        assert_eq!(
            err.to_string(),
            "channel pattern 'chat lobby' contains whitespace at byte 4; channel patterns cannot contain control characters or whitespace"
        );
        let err = validate_pattern("chat\nlobby").unwrap_err();
        assert_eq!(
            err.to_string(),
            "channel pattern 'chat\\nlobby' contains a control character at byte 4; channel patterns cannot contain control characters or whitespace"
        );
        assert!(validate_pattern("x\u{7f}").is_err());
        assert!(validate_pattern("x\u{a0}y").is_err());
    }

    #[test]
    fn channel_name_rules() {
        assert_eq!(validate_channel(Some("chat:lobby")), Ok("chat:lobby"));
        assert_eq!(validate_channel(Some("room 1_%")), Ok("room 1_%"));
        assert_eq!(validate_channel(None).unwrap_err().to_string(), "channel must not be null");
        assert_eq!(validate_channel(Some("")).unwrap_err().to_string(), "channel must not be empty");
        assert!(validate_channel(Some(&"c".repeat(256))).is_err());
        assert_eq!(
            validate_channel(Some("a\tb")).unwrap_err().to_string(),
            "channel 'a\\tb' contains a control character at byte 1; channels cannot contain control characters"
        );
    }

    #[test]
    fn event_name_rules() {
        assert_eq!(validate_event(Some("INSERT")), Ok("INSERT"));
        assert_eq!(validate_event(Some("")).unwrap_err().to_string(), "event must not be empty");
        assert_eq!(
            validate_event(Some(&"e".repeat(300))).unwrap_err().to_string(),
            "event is 300 bytes long; the limit is 255 bytes"
        );
        assert_eq!(validate_event(None).unwrap_err().to_string(), "event must not be null");
    }

    #[test]
    fn like_match_behaves_like_postgres_like_with_percent_only() {
        let cases = [
            ("chat:lobby", "chat:lobby", true),
            ("chat:lobby", "chat:lobbyx", false),
            ("order:%", "order:42", true),
            ("order:%", "order:", true),
            ("order:%", "order", false),
            ("%", "", true),
            ("%", "anything", true),
            ("%:42", "order:42", true),
            ("%:42", "order:421", false),
            ("a%b%c", "abc", true),
            ("a%b%c", "axxbyyc", true),
            ("a%b%c", "acb", false),
            ("ab%ba", "aba", false),
            ("ab%ba", "abba", true),
            ("%%", "x", true),
            ("é%ö", "éxyzö", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(like_match(pattern, name), want, "{name:?} LIKE {pattern:?}");
        }
    }

    #[test]
    fn exact_pattern_beats_any_wildcard() {
        let rows = [(1, "chat:%"), (2, "chat:lobby"), (3, "%")];
        assert_eq!(best_match("chat:lobby", rows), Some(2));
    }

    #[test]
    fn longest_wildcard_pattern_wins() {
        let rows = [(1, "%"), (2, "order:%"), (3, "order:4%"), (4, "user:%")];
        assert_eq!(best_match("order:42", rows), Some(3));
        assert_eq!(best_match("order:7", rows), Some(2));
        assert_eq!(best_match("misc", rows), Some(1));
    }

    #[test]
    fn equal_length_tie_goes_to_smaller_pattern_text() {
        let rows = [(1, "ab%"), (2, "%bc"), (3, "a%c")];
        // all three are 3 bytes and match "abc"; "%bc" < "a%c" < "ab%" in byte order
        assert_eq!(best_match("abc", rows), Some(2));
        let reversed = [(3, "a%c"), (1, "ab%")];
        assert_eq!(best_match("abc", reversed), Some(3));
    }

    #[test]
    fn no_match_and_non_wildcard_mismatch_give_none() {
        let rows = [(1, "chat:lobby"), (2, "order:%")];
        assert_eq!(best_match("chat:other", rows), None);
        assert_eq!(best_match("x", std::iter::empty()), None);
    }
}
