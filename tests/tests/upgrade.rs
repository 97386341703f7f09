//! Extension versions: `sql/realtime--0.1.0.sql` (frozen install script of the first release) and
//! one upgrade script `sql/realtime--A--B.sql` per later version.
//!
//! - `upgrading_from_every_older_version_gives_the_schema_of_a_fresh_install`: in one database
//!   `CREATE EXTENSION realtime VERSION '<old>'` + `ALTER EXTENSION realtime UPDATE`, in another a
//!   fresh `CREATE EXTENSION realtime`; the catalog snapshots of both (see [`snapshot`]) must be
//!   equal line for line. On a mismatch the test prints only the differing lines.
//! - `upgrade_scripts_chain_from_0_1_0_to_the_current_version`: no gap, no fork, no dead end.
//! - `released_scripts_are_unchanged`: `sql/released.sha256` pins every released script.
//!
//! Needs the scripts installed next to the generated one (`make install-ext`, which runs
//! `scripts/install-sql.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use realtime_e2e::cluster::pg_bin;
use realtime_e2e::{exec, pg_error_text, Cluster};
use tokio_postgres::{Client, NoTls};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// The extension crate's version (`realtime.control` has `default_version = '@CARGO_VERSION@'`).
fn current_version() -> String {
    let toml = std::fs::read_to_string(repo().join("extension/Cargo.toml")).expect("extension/Cargo.toml");
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \"").and_then(|v| v.strip_suffix('"')))
        .expect("extension/Cargo.toml must state its own version = \"x.y.z\"")
        .to_string()
}

/// `sql/realtime--A--B.sql` files as (A, B).
fn upgrade_scripts() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("sql")).expect("read sql/") {
        let name = entry.expect("dir entry").file_name().into_string().expect("utf-8 file name");
        let Some(stem) = name.strip_prefix("realtime--").and_then(|s| s.strip_suffix(".sql")) else {
            continue;
        };
        if let Some((from, to)) = stem.split_once("--") {
            out.push((from.to_string(), to.to_string()));
        }
    }
    out.sort();
    out
}

fn parse_version(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or_else(|_| panic!("version {v:?} is not x.y.z"))).collect()
}

/// The versions from 0.1.0 to the current one, following the upgrade scripts. Panics on a gap,
/// a fork (two scripts leaving one version) or a script that does not move forward.
fn version_chain() -> Vec<String> {
    let scripts = upgrade_scripts();
    let mut next: BTreeMap<String, String> = BTreeMap::new();
    for (from, to) in &scripts {
        assert!(
            parse_version(from) < parse_version(to),
            "sql/realtime--{from}--{to}.sql goes backwards or nowhere"
        );
        if let Some(other) = next.insert(from.clone(), to.clone()) {
            panic!("two upgrade scripts leave {from}: to {other} and to {to}; keep one linear chain");
        }
    }
    let current = current_version();
    let mut chain = vec!["0.1.0".to_string()];
    while chain.last() != Some(&current) {
        let last = chain.last().unwrap().clone();
        let Some(to) = next.get(&last) else {
            panic!(
                "no upgrade script leaves {last} (chain so far {chain:?}, current version {current}): \
                 add sql/realtime--{last}--{current}.sql"
            );
        };
        chain.push(to.clone());
        assert!(chain.len() <= scripts.len() + 1, "upgrade scripts loop: {chain:?}");
    }
    assert_eq!(
        chain.len(),
        scripts.len() + 1,
        "upgrade scripts not on the chain {chain:?}: {scripts:?} (a script past the current version {current}?)"
    );
    chain
}

#[test]
fn upgrade_scripts_chain_from_0_1_0_to_the_current_version() {
    assert!(repo().join("sql/realtime--0.1.0.sql").is_file(), "the frozen 0.1.0 install script is missing");
    let chain = version_chain();
    assert_eq!(chain.last(), Some(&current_version()));
    // Only 0.1.0 has a checked-in install script; later versions install through the chain or
    // from the script pgrx generates. A second install script would be ambiguous for Postgres.
    let installs: Vec<String> = std::fs::read_dir(repo().join("sql"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("realtime--") && n.ends_with(".sql") && n.matches("--").count() == 1)
        .collect();
    assert_eq!(installs, ["realtime--0.1.0.sql"], "only the 0.1.0 install script is checked in");
}

/// SHA-256 of a file, by `sha256sum` (coreutils), to keep the tests free of a hashing crate.
fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn released_scripts_are_unchanged() {
    let list = std::fs::read_to_string(repo().join("sql/released.sha256")).expect("sql/released.sha256");
    let mut pinned = BTreeSet::new();
    for line in list.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (sum, name) =
            line.split_once("  ").unwrap_or_else(|| panic!("bad line {line:?}: `<sha256>  <file>`"));
        let path = repo().join("sql").join(name);
        assert!(path.is_file(), "released script sql/{name} was deleted; released scripts are never removed");
        assert_eq!(
            sha256(&path),
            sum,
            "released script sql/{name} was edited. Released scripts are never edited: revert it and \
             put the change into a new upgrade script"
        );
        pinned.insert(name.to_string());
    }
    assert!(pinned.contains("realtime--0.1.0.sql"), "the 0.1.0 install script must be pinned");
    // Every pinned upgrade script is on the chain (a released step cannot disappear from it).
    let chain = version_chain();
    for name in &pinned {
        if let Some((from, to)) = name
            .strip_prefix("realtime--")
            .and_then(|s| s.strip_suffix(".sql"))
            .and_then(|s| s.split_once("--"))
        {
            let on_chain = chain.windows(2).any(|w| w[0] == from && w[1] == to);
            assert!(on_chain, "released {name} is not on the upgrade chain {chain:?}");
        }
    }
}

/// One line per catalog fact about the extension in the current database, sorted. Covers the
/// extension row and its config tables, member objects (`pg_depend` deptype `e`), relations in
/// schema `realtime` (kind, options, RLS flags, replica identity, ACL, comment), columns (position
/// among live columns, type, not-null, default, identity, generated, ACL, comment), constraints,
/// indexes, sequences, triggers (with their enabled state), views, policies, functions
/// (`pg_get_functiondef`, which includes language, volatility, parallel safety, strictness,
/// security definer, SET clauses, cost, and `prosrc` / `probin` with the C symbol), their ACLs and
/// comments, types, the schema's ACL, publications with their options and tables, and the rows of
/// the extension's tables (columns of time, xid and LSN types left out; `bytea` columns, such as
/// the random relay keys, by length only).
async fn snapshot(c: &Client) -> Vec<String> {
    const QUERIES: &[&str] = &[
        // the extension row, its config tables and member objects
        "SELECT 'extension ' || e.extname || ' version=' || e.extversion || ' schema=' || e.extnamespace::regnamespace
                || ' relocatable=' || e.extrelocatable
           FROM pg_extension e WHERE e.extname = 'realtime'",
        "SELECT 'extconfig ' || c::regclass || ' condition=' || coalesce(e.extcondition[i], 'NULL')
           FROM pg_extension e, generate_subscripts(e.extconfig, 1) i, LATERAL (SELECT e.extconfig[i] AS c) x
          WHERE e.extname = 'realtime'",
        "SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
           FROM pg_depend d JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
          WHERE e.extname = 'realtime' AND d.deptype = 'e'",
        "SELECT 'schema realtime owner=' || pg_get_userbyid(nspowner) || ' acl=' || coalesce(nspacl::text, 'default')
           FROM pg_namespace WHERE nspname = 'realtime'",
        // relations and columns
        "SELECT 'relation ' || c.oid::regclass || ' kind=' || c.relkind::text || ' persistence=' || c.relpersistence::text
                || ' rls=' || c.relrowsecurity || ' force_rls=' || c.relforcerowsecurity
                || ' replident=' || c.relreplident::text || ' options=' || coalesce(c.reloptions::text, '')
                || ' owner=' || pg_get_userbyid(c.relowner) || ' acl=' || coalesce(c.relacl::text, 'default')
                || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
           FROM pg_class c WHERE c.relnamespace = 'realtime'::regnamespace",
        "SELECT 'column ' || c.oid::regclass || '.' || a.attname
                || ' position=' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)
                || ' type=' || format_type(a.atttypid, a.atttypmod) || ' not_null=' || a.attnotnull
                || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
                || ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text
                || ' collation=' || coalesce(nullif(a.attcollation, 0)::regcollation::text, '')
                || ' acl=' || coalesce(a.attacl::text, 'default')
                || ' comment=' || coalesce(col_description(c.oid, a.attnum), '')
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
          WHERE c.relnamespace = 'realtime'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        "SELECT 'constraint ' || con.conrelid::regclass || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
                || ' deferrable=' || con.condeferrable || ' validated=' || con.convalidated
           FROM pg_constraint con WHERE con.connamespace = 'realtime'::regnamespace",
        "SELECT 'index ' || pg_get_indexdef(i.indexrelid)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE c.relnamespace = 'realtime'::regnamespace",
        "SELECT 'sequence ' || s.seqrelid::regclass || ' type=' || s.seqtypid::regtype || ' start=' || s.seqstart
                || ' increment=' || s.seqincrement || ' min=' || s.seqmin || ' max=' || s.seqmax
                || ' cache=' || s.seqcache || ' cycle=' || s.seqcycle
           FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
          WHERE c.relnamespace = 'realtime'::regnamespace",
        "SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE NOT t.tgisinternal AND c.relnamespace = 'realtime'::regnamespace",
        "SELECT 'view ' || c.oid::regclass || ' ' || pg_get_viewdef(c.oid)
           FROM pg_class c WHERE c.relnamespace = 'realtime'::regnamespace AND c.relkind IN ('v', 'm')",
        "SELECT 'policy ' || schemaname || '.' || tablename || ' ' || policyname || ' ' || permissive || ' ' || cmd
                || ' roles=' || roles::text || ' using=' || coalesce(qual, '') || ' check=' || coalesce(with_check, '')
           FROM pg_policies WHERE schemaname = 'realtime'",
        // functions: the definition (split into lines below), ACL and comment
        "SELECT 'function ' || p.oid::regprocedure || E'\\n' ||
                CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid)
                     ELSE 'kind=' || p.prokind::text END
           FROM pg_proc p WHERE p.pronamespace = 'realtime'::regnamespace",
        "SELECT 'function-acl ' || p.oid::regprocedure || ' ' || coalesce(p.proacl::text, 'default')
                || ' owner=' || pg_get_userbyid(p.proowner)
                || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
           FROM pg_proc p WHERE p.pronamespace = 'realtime'::regnamespace",
        "SELECT 'type ' || t.oid::regtype || ' kind=' || t.typtype::text
                || ' labels=' || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder)
                                             FROM pg_enum WHERE enumtypid = t.oid), '')
           FROM pg_type t WHERE t.typnamespace = 'realtime'::regnamespace AND t.typtype NOT IN ('c', 'b')",
        // publications (not extension members: Postgres does not allow it) and their tables
        "SELECT 'publication ' || p.pubname || ' all_tables=' || p.puballtables || ' insert=' || p.pubinsert
                || ' update=' || p.pubupdate || ' delete=' || p.pubdelete || ' truncate=' || p.pubtruncate
                || ' via_root=' || p.pubviaroot || ' owner=' || pg_get_userbyid(p.pubowner)
           FROM pg_publication p",
        "SELECT 'publication-table ' || p.pubname || ' ' || r.prrelid::regclass
                || ' where=' || coalesce(pg_get_expr(r.prqual, r.prrelid), '')
                || ' columns=' || coalesce(r.prattrs::text, 'all')
           FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid",
    ];
    let mut lines = Vec::new();
    for q in QUERIES {
        let rows = c
            .query(*q, &[])
            .await
            .unwrap_or_else(|e| panic!("snapshot query failed: {}\n{q}", pg_error_text(&e)));
        for row in rows {
            let text: String = row.get(0);
            let mut parts = text.lines();
            let head = parts.next().unwrap_or_default().to_string();
            let rest: Vec<&str> = parts.collect();
            if rest.is_empty() {
                lines.push(head);
            } else {
                // multi-line definitions: every line keyed by its object, numbered to keep order
                for (i, l) in rest.iter().enumerate() {
                    lines.push(format!("{head} | {i:03} {l}"));
                }
            }
        }
    }
    lines.extend(table_rows(c).await);
    lines.sort();
    lines
}

/// The rows of every table in schema `realtime` (seed data such as the `config` singleton), as
/// JSON, without columns whose values depend on when or in which transaction they were written.
async fn table_rows(c: &Client) -> Vec<String> {
    let tables = c
        .query(
            "SELECT c.oid::regclass::text,
                    coalesce(string_agg(CASE WHEN a.atttypid = 'bytea'::regtype
                                             THEN format('octet_length(%1$I) AS %1$I', a.attname)
                                             ELSE quote_ident(a.attname) END, ', ' ORDER BY a.attnum)
                             FILTER (WHERE a.atttypid NOT IN ('timestamptz'::regtype, 'timestamp'::regtype,
                                                              'xid8'::regtype, 'pg_lsn'::regtype)), '')
               FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              WHERE c.relnamespace = 'realtime'::regnamespace AND c.relkind IN ('r', 'p')
              GROUP BY c.oid",
            &[],
        )
        .await
        .expect("list tables");
    let mut out = Vec::new();
    for t in tables {
        let (table, cols): (String, String) = (t.get(0), t.get(1));
        if cols.is_empty() {
            continue;
        }
        let q = format!("SELECT to_jsonb(r)::text FROM (SELECT {cols} FROM {table}) r");
        for row in c.query(q.as_str(), &[]).await.unwrap_or_else(|e| panic!("{q}: {}", pg_error_text(&e))) {
            out.push(format!("row {table} {}", row.get::<_, String>(0)));
        }
    }
    out
}

/// Lines only in `a` (prefixed `-`) and only in `b` (prefixed `+`), for a readable failure.
fn diff(a: &[String], b: &[String]) -> String {
    let (sa, sb): (BTreeSet<&String>, BTreeSet<&String>) = (a.iter().collect(), b.iter().collect());
    let mut out = String::new();
    for l in sa.difference(&sb) {
        out.push_str(&format!("- {l}\n"));
    }
    for l in sb.difference(&sa) {
        out.push_str(&format!("+ {l}\n"));
    }
    if out.is_empty() && a != b {
        out.push_str("(same lines, different multiplicity)\n");
    }
    out
}

async fn connect(cluster: &Cluster, db: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(&cluster.url(db), NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {db}: {}", pg_error_text(&e)));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Creates database `db` and the extension in it at `version` (None: the default version).
async fn database_with_extension(
    cluster: &Cluster,
    admin: &Client,
    db: &str,
    version: Option<&str>,
) -> Client {
    exec(admin, &format!("CREATE DATABASE {db}")).await;
    let c = connect(cluster, db).await;
    let sql = match version {
        Some(v) => format!("CREATE EXTENSION realtime VERSION '{v}'"),
        None => "CREATE EXTENSION realtime".to_string(),
    };
    if let Err(e) = c.batch_execute(&sql).await {
        panic!(
            "{sql} in {db}: {}\n(are the scripts installed? `make install-ext PG_PREFIX=...` copies sql/realtime--*.sql \
             into {}/../../../share/postgresql/15/extension)",
            pg_error_text(&e),
            pg_bin()
        );
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_from_every_older_version_gives_the_schema_of_a_fresh_install() {
    let chain = version_chain();
    let current = current_version();
    let cluster = Cluster::start().await;
    let admin = cluster.client().await;
    exec(
        &admin,
        "CREATE ROLE anon NOLOGIN; CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN",
    )
    .await;

    let fresh = database_with_extension(&cluster, &admin, "fresh", None).await;
    let version: String = fresh
        .query_one("SELECT extversion FROM pg_extension WHERE extname = 'realtime'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        version, current,
        "the installed default version is not extension/Cargo.toml's (stale install?)"
    );
    let want = snapshot(&fresh).await;
    assert!(want.iter().any(|l| l.starts_with("member function realtime.publish(")), "snapshot sees members");
    assert!(want.iter().any(|l| l.starts_with("publication-table realtime_messages realtime.messages")));
    assert!(
        want.iter().any(|l| l.contains("'$libdir/realtime'") && l.contains("publish_wrapper")),
        "C symbols are compared"
    );

    for (i, old) in chain[..chain.len() - 1].iter().enumerate() {
        let db = format!("from_{i}");
        let c = database_with_extension(&cluster, &admin, &db, Some(old)).await;
        if let Err(e) = c.batch_execute("ALTER EXTENSION realtime UPDATE").await {
            panic!("ALTER EXTENSION realtime UPDATE from {old}: {}", pg_error_text(&e));
        }
        let got = snapshot(&c).await;
        assert!(
            got == want,
            "upgrading {old} → {current} does not give the schema of a fresh {current} install.\n\
             Lines only after the upgrade (-) and only in the fresh install (+):\n{}\n\
             Fix the upgrade script(s) sql/realtime--*--{current}.sql.",
            diff(&got, &want)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_notices_a_schema_difference() {
    // Guards the guard: a snapshot that misses real differences would let any upgrade pass.
    let cluster = Cluster::start().await;
    let admin = cluster.client().await;
    exec(
        &admin,
        "CREATE ROLE anon NOLOGIN; CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN",
    )
    .await;
    let a = database_with_extension(&cluster, &admin, "a", None).await;
    let b = database_with_extension(&cluster, &admin, "b", None).await;
    let base = snapshot(&a).await;
    assert_eq!(base, snapshot(&b).await, "two fresh installs are identical");
    for change in [
        "ALTER TABLE realtime.messages ALTER COLUMN event SET DEFAULT 'x'",
        "CREATE INDEX extra_idx ON realtime.messages (event)",
        "ALTER FUNCTION realtime.broadcast(text, text, jsonb) VOLATILE COST 7",
        "GRANT EXECUTE ON FUNCTION realtime.cleanup_messages(integer) TO anon",
        "ALTER PUBLICATION realtime_messages SET (publish = 'insert, update')",
        "UPDATE realtime.config SET retention = '1 day'",
    ] {
        exec(&b, &format!("BEGIN; {change}")).await;
        let changed = snapshot(&b).await;
        exec(&b, "ROLLBACK").await;
        assert_ne!(base, changed, "the snapshot does not see: {change}");
        assert!(!diff(&base, &changed).is_empty());
    }
}

#[test]
fn make_and_the_postgres_image_install_the_sql_scripts() {
    // pgrx installs only the current version's script; without install-sql.sh neither
    // `CREATE EXTENSION ... VERSION '0.1.0'` nor `ALTER EXTENSION realtime UPDATE` would work.
    let read = |rel: &str| std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert!(
        read("Makefile").contains("scripts/install-sql.sh"),
        "make install-ext must run scripts/install-sql.sh"
    );
    let image = read("deploy/postgres.Dockerfile");
    assert!(image.contains("COPY scripts/ scripts/") && image.contains("install-sql.sh /out/"), "{image}");
}
