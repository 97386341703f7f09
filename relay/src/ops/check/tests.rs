//! Unit tests of [`super::evaluate`] and the report format: every rule on hand-made facts.

use super::deploy::jwt_item;
use super::*;

fn good() -> Facts {
    Facts {
        server_version_num: 150_004,
        server_version: "15.4".into(),
        database: "app".into(),
        login: "relay".into(),
        superuser: false,
        replication: true,
        extension_version: Some(EXPECTED_EXTENSION_VERSION.into()),
        extension_available: Some(EXPECTED_EXTENSION_VERSION.into()),
        wal_level: "logical".into(),
        max_replication_slots: 10,
        replication_slots_used: 2,
        max_wal_senders: 10,
        wal_senders_used: 1,
        publication_exists: true,
        publication_has_messages: true,
        slot_name: "realtime_r1".into(),
        slot: None,
        pool: None,
        roles: vec![
            RoleFacts { name: "anon".into(), exists: true, member: true },
            RoleFacts { name: "authenticated".into(), exists: true, member: true },
        ],
        grants: Grants {
            select_messages: Some(true),
            insert_messages: Some(true),
            insert_commits: Some(true),
            execute_publish: Some(true),
            execute_webhooks: Some(true),
            presence_tables: Some(true),
            select_relay_keys: Some(true),
        },
    }
}

fn jwt() -> JwtFacts {
    JwtFacts { secret_len: Some(40), jwks_keys: 0 }
}

fn item<'a>(items: &'a [Item], name: &str) -> &'a Item {
    items.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no item {name} in {items:#?}"))
}

#[test]
fn good_setup_passes_with_only_ok_lines() {
    let items = evaluate(&good(), &jwt());
    assert!(passed(&items));
    for i in &items {
        assert_eq!(i.status, Status::Ok, "{i}");
        assert!(i.to_string().starts_with("ok   "), "{i}");
    }
    assert_eq!(items.len(), 12, "one line per role, plus the fixed items");
    assert_eq!(summary(&items), "realtime-relay check: 12 ok, 0 warn, 0 FAIL");
}

#[test]
fn pooled_relays_report_the_pool_instead_of_one_slot() {
    let f = Facts { pool: Some((3, 2)), ..good() };
    let i = item(&evaluate(&f, &jwt()), "slot pool").clone();
    assert_eq!(i.status, Status::Ok);
    assert!(i.detail.starts_with("3 relay slots realtime_relay[_<n>], 2 streaming"), "{i}");
}

#[test]
fn fail_line_carries_the_fix_and_ok_line_does_not() {
    let i = Item::fail("wal_level", "is 'replica'", "set it");
    assert_eq!(i.to_string(), "FAIL wal_level: is 'replica' — fix: set it");
    assert_eq!(Item::ok("x", "fine").to_string(), "ok   x: fine");
    assert_eq!(Item::warn("jwt", "short", "longer").to_string(), "warn jwt: short — fix: longer");
}

#[test]
fn missing_extension_fails_with_create_extension_fix() {
    let mut f = good();
    f.extension_version = None;
    f.publication_exists = false;
    f.publication_has_messages = false;
    f.grants = Grants::default();
    let items = evaluate(&f, &jwt());
    assert!(!passed(&items));
    let e = item(&items, "extension");
    assert_eq!(e.status, Status::Fail);
    assert!(e.detail.contains("not installed in database 'app'"), "{e}");
    assert!(e.fix.as_deref().unwrap().starts_with("CREATE EXTENSION realtime"), "{e}");
    assert!(item(&items, "publication").fix.as_deref().unwrap().contains("CREATE EXTENSION"));
    assert_eq!(item(&items, "grants").status, Status::Fail);
}

#[test]
fn extension_without_server_files_says_to_install_them() {
    let mut f = good();
    f.extension_version = None;
    f.extension_available = None;
    let e = evaluate(&f, &jwt()).into_iter().find(|i| i.name == "extension").unwrap();
    assert!(e.fix.unwrap().contains("cargo pgrx install"));
}

#[test]
fn older_extension_version_fails_with_alter_extension_update() {
    let mut f = good();
    f.extension_version = Some("0.0.9".into());
    let items = evaluate(&f, &jwt());
    let e = item(&items, "extension");
    assert_eq!(e.status, Status::Fail);
    let want = format!("ALTER EXTENSION realtime UPDATE TO '{EXPECTED_EXTENSION_VERSION}'");
    assert!(e.fix.as_deref().unwrap().starts_with(&want), "{e}");
    f.extension_version = Some("0.10.0".into());
    let items = evaluate(&f, &jwt());
    assert!(item(&items, "extension").fix.as_deref().unwrap().contains("built for extension 0.10.0"));
}

#[test]
fn wal_level_replica_fails_and_names_the_restart() {
    let mut f = good();
    f.wal_level = "replica".into();
    let items = evaluate(&f, &jwt());
    let w = item(&items, "wal_level");
    assert_eq!(w.status, Status::Fail);
    assert!(w.to_string().contains("ALTER SYSTEM SET wal_level = logical"), "{w}");
}

#[test]
fn old_server_fails() {
    let mut f = good();
    f.server_version_num = 140_009;
    f.server_version = "14.9".into();
    assert_eq!(item(&evaluate(&f, &jwt()), "server version").status, Status::Fail);
}

#[test]
fn full_slots_fail_unless_this_relays_slot_already_exists() {
    let mut f = good();
    f.replication_slots_used = 10;
    assert_eq!(item(&evaluate(&f, &jwt()), "max_replication_slots").status, Status::Fail);
    f.slot = Some(SlotFacts { plugin: Some("pgoutput".into()), same_database: true, active: false });
    let items = evaluate(&f, &jwt());
    assert_eq!(item(&items, "max_replication_slots").status, Status::Ok);
    assert!(item(&items, "slot realtime_r1").detail.starts_with("exists (pgoutput)"));
    f.wal_senders_used = 10;
    assert_eq!(item(&evaluate(&f, &jwt()), "max_wal_senders").status, Status::Fail);
}

#[test]
fn slot_in_use_warns_and_foreign_slot_fails() {
    let mut f = good();
    f.slot = Some(SlotFacts { plugin: Some("pgoutput".into()), same_database: true, active: true });
    let items = evaluate(&f, &jwt());
    assert_eq!(item(&items, "slot realtime_r1").status, Status::Warn);
    assert!(passed(&items), "a warning does not fail the check");
    f.slot = Some(SlotFacts { plugin: Some("test_decoding".into()), same_database: true, active: false });
    let s = item(&evaluate(&f, &jwt()), "slot realtime_r1").clone();
    assert_eq!(s.status, Status::Fail);
    assert!(s.fix.unwrap().contains("pg_drop_replication_slot('realtime_r1')"));
    assert_eq!(item(&good_items(), "slot realtime_r1").status, Status::Ok);
}

fn good_items() -> Vec<Item> {
    evaluate(&good(), &jwt())
}

#[test]
fn login_without_replication_fails_unless_superuser() {
    let mut f = good();
    f.replication = false;
    let r = item(&evaluate(&f, &jwt()), "replication privilege").clone();
    assert_eq!(r.status, Status::Fail);
    assert_eq!(r.fix.as_deref(), Some("ALTER ROLE \"relay\" REPLICATION;"));
    f.superuser = true;
    assert_eq!(item(&evaluate(&f, &jwt()), "replication privilege").status, Status::Ok);
}

#[test]
fn missing_role_and_missing_membership_name_the_role() {
    let mut f = good();
    f.roles.push(RoleFacts { name: "ghost".into(), exists: false, member: false });
    f.roles[0].member = false;
    let items = evaluate(&f, &jwt());
    let ghost = item(&items, "role ghost");
    assert_eq!(ghost.status, Status::Fail);
    assert!(ghost.detail.contains("'ghost' (in --roles) does not exist"), "{ghost}");
    assert!(ghost.fix.as_deref().unwrap().starts_with("CREATE ROLE \"ghost\" NOLOGIN"));
    let anon = item(&items, "role anon");
    assert_eq!(anon.status, Status::Fail);
    assert_eq!(anon.fix.as_deref(), Some("GRANT \"anon\" TO \"relay\";"));
}

#[test]
fn missing_grants_are_listed_with_their_grant_statements() {
    let mut f = good();
    f.grants.insert_commits = Some(false);
    f.grants.execute_publish = None;
    let g = item(&evaluate(&f, &jwt()), "grants").clone();
    assert_eq!(g.status, Status::Fail);
    assert!(
        g.detail.contains("INSERT on realtime.commits, EXECUTE on realtime.publish (object missing)"),
        "{g}"
    );
    let fix = g.fix.unwrap();
    assert!(fix.contains("GRANT INSERT ON realtime.commits TO \"relay\";"), "{fix}");
    assert!(!fix.contains("realtime.messages"), "{fix}");
}

#[test]
fn short_secret_warns_and_jwks_keys_are_counted() {
    let items = evaluate(&good(), &JwtFacts { secret_len: Some(20), jwks_keys: 2 });
    let j = item(&items, "jwt");
    assert_eq!(j.status, Status::Warn);
    assert_eq!(j.detail, "HS256 secret of 20 bytes; JWKS with 2 keys");
    assert!(passed(&items));
    let j = jwt_item(&JwtFacts { secret_len: None, jwks_keys: 1 });
    assert_eq!(j.to_string(), "ok   jwt: no HS256 secret; JWKS with 1 key");
    assert_eq!(jwt_item(&JwtFacts::default()).status, Status::Fail);
}

#[test]
fn target_description_hides_the_password() {
    let d = describe_target("postgres://relay:s3cret@db.example:6543/app");
    assert_eq!(d, "database 'app' on db.example:6543");
    assert_eq!(describe_target("host=/tmp port=5433 user=u dbname=d"), "database 'd' on /tmp:5433");
}

#[test]
fn expected_extension_version_is_the_extension_crates_version() {
    // The relay and the extension are released together: `check` must expect the version the
    // extension build installs (realtime.control's default_version is @CARGO_VERSION@).
    let manifest = include_str!("../../../../extension/Cargo.toml");
    let line = format!("version = \"{EXPECTED_EXTENSION_VERSION}\"");
    assert!(manifest.lines().any(|l| l.trim() == line), "extension/Cargo.toml does not say {line}");
}

#[test]
fn missing_presence_table_rights_fail_with_the_grant() {
    let mut f = good();
    f.grants.presence_tables = Some(false);
    let items = evaluate(&f, &jwt());
    let g = item(&items, "grants");
    assert_eq!(g.status, Status::Fail, "{g}");
    assert!(g.detail.contains("realtime.presence and realtime.relays"), "{g}");
    assert!(g.fix.as_deref().unwrap_or("").contains("ON realtime.presence, realtime.relays"), "{g}");
    assert!(!passed(&items));
}

#[test]
fn missing_select_on_the_relay_keys_fails_with_the_grant() {
    let mut f = good();
    f.grants.select_relay_keys = Some(false);
    let items = evaluate(&f, &jwt());
    let g = item(&items, "grants");
    assert_eq!(g.status, Status::Fail, "{g}");
    assert!(g.detail.contains("SELECT on realtime.relay_keys"), "{g}");
    assert!(g.fix.as_deref().unwrap_or("").contains("GRANT SELECT ON realtime.relay_keys TO"), "{g}");
    assert!(!passed(&items));
}
