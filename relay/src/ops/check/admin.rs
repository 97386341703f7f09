//! The `admin console` line of `realtime-relay check` (only with an admin token): the console
//! runs every statement as `realtime_admin`, so the relay's login must be a member of it.

use super::item::{CheckError, Item};
use crate::pg::admin::ROLE as ADMIN_ROLE;

const NAME: &str = "admin console";

/// What the catalog says about the console's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminFacts {
    pub login: String,
    pub role_exists: bool,
    /// `pg_has_role(current_user, 'realtime_admin', 'MEMBER')`: the login may `SET ROLE` to it.
    pub member: bool,
}

/// The line for `facts`. Pure.
pub fn evaluate(f: &AdminFacts) -> Item {
    if !f.role_exists {
        return Item::fail(
            NAME,
            format!("role {ADMIN_ROLE} does not exist (the extension predates the console)"),
            "ALTER EXTENSION realtime UPDATE; (0.2.0 creates the role)",
        );
    }
    if !f.member {
        return Item::fail(
            NAME,
            format!(
                "login '{}' is not a member of {ADMIN_ROLE}, so every console action would fail",
                f.login
            ),
            format!("GRANT {ADMIN_ROLE} TO \"{}\";", f.login.replace('"', "\"\"")),
        );
    }
    Item::ok(NAME, format!("on at /admin; login '{}' may SET ROLE {ADMIN_ROLE}", f.login))
}

/// Reads the [`AdminFacts`] on `client`.
pub async fn gather(client: &tokio_postgres::Client) -> Result<AdminFacts, CheckError> {
    let row = client
        .query_one(
            "SELECT current_user::text, r.oid IS NOT NULL, \
                    r.oid IS NOT NULL AND pg_has_role(current_user, r.oid, 'MEMBER') \
               FROM (SELECT 1) one LEFT JOIN pg_roles r ON r.rolname = $1",
            &[&ADMIN_ROLE],
        )
        .await?;
    Ok(AdminFacts { login: row.get(0), role_exists: row.get(1), member: row.get(2) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::item::Status;

    fn facts(role_exists: bool, member: bool) -> AdminFacts {
        AdminFacts { login: "relay".into(), role_exists, member }
    }

    #[test]
    fn a_member_login_passes() {
        let i = evaluate(&facts(true, true));
        assert_eq!(i.status, Status::Ok);
        assert_eq!(
            i.to_string(),
            "ok   admin console: on at /admin; login 'relay' may SET ROLE realtime_admin"
        );
    }

    #[test]
    fn a_login_outside_the_role_fails_with_the_grant() {
        let i = evaluate(&facts(true, false));
        assert_eq!(i.status, Status::Fail);
        assert!(i.to_string().ends_with("— fix: GRANT realtime_admin TO \"relay\";"), "{i}");
    }

    #[test]
    fn a_missing_role_asks_for_the_extension_update() {
        let i = evaluate(&facts(false, false));
        assert_eq!(i.status, Status::Fail);
        assert!(i.to_string().contains("ALTER EXTENSION realtime UPDATE"), "{i}");
    }
}
