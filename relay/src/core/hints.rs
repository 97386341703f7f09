//! Refusal texts that say the fix. The error code tells a program what happened; the message
//! tells the person reading it what to change: which row of `realtime.channels` is missing and
//! the `INSERT` that adds one, or which kind of policy did not allow the request.
//!
//! The texts are protocol-neutral: WebSocket replies and HTTP error bodies carry the same ones.

/// Where the policy recipes are documented.
const PERMISSIONS_DOC: &str = "docs/permissions.md";

/// `REALTIME_NOT_FOUND`: no enabled row of `realtime.channels` matches `channel`.
pub fn channel_not_found(channel: &str) -> String {
    let patterns = suggested_patterns(channel);
    let alternative = match patterns.get(1) {
        Some(own) => format!("or {} for this channel alone; ", sql_literal(own)),
        None => String::new(),
    };
    format!(
        "no enabled row of realtime.channels matches '{channel}'; add one: \
         INSERT INTO realtime.channels (pattern) VALUES ({}); ({alternative}a disabled row matches nothing)",
        sql_literal(&patterns[0]),
    )
}

/// `REALTIME_UNAUTHORIZED` for a subscribe.
pub fn subscribe_denied(role: &str, user_id: Option<&str>, channel: &str) -> String {
    select_denied(&format!("subscribe to '{channel}'"), role, user_id)
}

/// `REALTIME_UNAUTHORIZED` for a history read, which needs subscribe permission.
pub fn history_denied(role: &str, user_id: Option<&str>, channel: &str) -> String {
    select_denied(&format!("read the history of '{channel}' (it takes subscribe permission)"), role, user_id)
}

fn select_denied(action: &str, role: &str, user_id: Option<&str>) -> String {
    format!(
        "{} may not {action}: no SELECT policy on realtime.channels lets this role see the channel's \
         row; add or fix one ({PERMISSIONS_DOC})",
        who(role, user_id),
    )
}

/// `REALTIME_UNAUTHORIZED` for a client publish.
pub fn publish_denied(role: &str, user_id: Option<&str>, channel: &str) -> String {
    format!(
        "{} may not publish to '{channel}': no INSERT policy on realtime.messages allows this \
         message; add or fix one ({PERMISSIONS_DOC}#publish-rules)",
        who(role, user_id),
    )
}

/// `role 'authenticated' (sub 'alice')`, or `role 'anon'` without a subject.
fn who(role: &str, user_id: Option<&str>) -> String {
    match user_id {
        Some(sub) => format!("role '{role}' (sub '{sub}')"),
        None => format!("role '{role}'"),
    }
}

/// Patterns that would make `channel` exist, most useful first: the family of names sharing
/// its prefix up to the last `:` (`order:42` → `order:%`), then the name itself. Patterns cannot
/// hold `_` or `\` (they would be LIKE wildcards and escapes), so those become `%`.
fn suggested_patterns(channel: &str) -> Vec<String> {
    let own = channel.replace(['_', '\\'], "%");
    let mut out = Vec::with_capacity(2);
    if let Some(at) = channel.rfind(':') {
        let family = format!("{}%", &channel[..=at]);
        if family != own && !family.contains(['_', '\\']) {
            out.push(family);
        }
    }
    out.push(own);
    out
}

/// `text` as an SQL string literal.
fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_insert_that_adds_the_channel_family() {
        assert_eq!(
            channel_not_found("order:42"),
            "no enabled row of realtime.channels matches 'order:42'; add one: INSERT INTO \
             realtime.channels (pattern) VALUES ('order:%'); (or 'order:42' for this channel alone; \
             a disabled row matches nothing)"
        );
    }

    #[test]
    fn not_found_for_a_plain_name_suggests_the_name_itself() {
        assert_eq!(
            channel_not_found("lounge"),
            "no enabled row of realtime.channels matches 'lounge'; add one: INSERT INTO \
             realtime.channels (pattern) VALUES ('lounge'); (a disabled row matches nothing)"
        );
    }

    #[test]
    fn suggested_patterns_are_valid_patterns_and_quoted_as_sql() {
        assert_eq!(suggested_patterns("my_room:1"), vec!["my%room:1"]);
        assert_eq!(suggested_patterns("a:b:c"), vec!["a:b:%", "a:b:c"]);
        assert_eq!(suggested_patterns("room:"), vec!["room:%", "room:"]);
        assert_eq!(suggested_patterns("x:%"), vec!["x:%"]);
        assert!(channel_not_found("it's").contains("VALUES ('it''s');"));
    }

    #[test]
    fn denials_name_the_role_the_subject_and_the_policy_to_write() {
        assert_eq!(
            subscribe_denied("authenticated", Some("bob"), "chat:design"),
            "role 'authenticated' (sub 'bob') may not subscribe to 'chat:design': no SELECT policy on \
             realtime.channels lets this role see the channel's row; add or fix one (docs/permissions.md)"
        );
        assert_eq!(
            history_denied("anon", None, "user:alice"),
            "role 'anon' may not read the history of 'user:alice' (it takes subscribe permission): no \
             SELECT policy on realtime.channels lets this role see the channel's row; add or fix one \
             (docs/permissions.md)"
        );
        assert_eq!(
            publish_denied("anon", None, "room:lobby"),
            "role 'anon' may not publish to 'room:lobby': no INSERT policy on realtime.messages allows \
             this message; add or fix one (docs/permissions.md#publish-rules)"
        );
    }
}
