//! A throwaway Postgres 15 cluster for one test.
//!
//! The cluster lives in a fresh directory under `/tmp`, owned by the `postgres` user when the tests
//! run as root (Postgres refuses to run as root), and is created with `initdb -A trust --no-sync`.
//! Its settings (port, socket directory, `wal_level = logical` for the relay's replication stream,
//! slots and senders, `fsync = off`) are appended to its `postgresql.conf`, so `pg_ctl restart`
//! brings it back exactly as it was. Dropping the cluster stops it (`-m immediate`) and deletes
//! the directory; when the drop happens during a panic, the server log is printed first.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio_postgres::{Client, NoTls};

use crate::{exec, free_port, pg_error_text, unique_id};

/// Directory of the Postgres 15 server binaries: `$PG_BIN` when set (the Makefile sets it, and
/// points it at a private copy when `PG_PREFIX` is set), else the system Postgres 15.
pub fn pg_bin() -> String {
    std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_string())
}

/// A running (or stopped) throwaway cluster. See the module docs.
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    run_as_postgres: bool,
}

impl Cluster {
    /// Creates and starts a new cluster on a free port. Panics with the tools' output on failure.
    pub async fn start() -> Cluster {
        let run_as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = std::env::temp_dir().join(unique_id("realtime_e2e_pg_"));
        fs::create_dir_all(&dir).expect("create cluster directory");
        if run_as_postgres {
            chown_to_postgres(&dir);
        }
        let mut cluster = Cluster { dir, port: 0, run_as_postgres };
        cluster
            .run_tool(
                "initdb",
                &["-D", "data", "-A", "trust", "--no-sync", "-U", "postgres", "-E", "UTF8", "--locale=C"],
            )
            .await;
        // A port can be taken between free_port() and the server's bind: try a few.
        for attempt in 1..=5 {
            cluster.port = free_port();
            cluster.write_settings();
            match cluster.try_pg_ctl(&["start", "-w", "-t", "60", "-D", "data", "-l", "postgres.log"]).await {
                Ok(()) => return cluster,
                Err(e) if attempt < 5 => {
                    eprintln!("cluster start failed on port {}, retrying: {e}", cluster.port)
                }
                Err(e) => panic!("could not start Postgres: {e}\n{}", cluster.log_tail(60)),
            }
        }
        unreachable!()
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (data directory is `data/` inside it, server log `postgres.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Connection URL for database `db` as superuser `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new superuser connection to database `postgres`.
    pub async fn client(&self) -> Client {
        match self.try_client().await {
            Ok(c) => c,
            Err(e) => panic!("connect to {}: {}", self.url("postgres"), pg_error_text(&e)),
        }
    }

    /// Like [`Cluster::client`], returning the error (for reconnect loops while Postgres restarts).
    pub async fn try_client(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(&self.url("postgres"), NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Prepares database `postgres` for the relay: roles `anon`, `authenticated`, `service_role`
    /// (NOLOGIN) if missing, and `CREATE EXTENSION realtime`. Panics with a clear message when the
    /// extension is not installed into the system Postgres.
    pub async fn setup_db(&self) {
        let client = self.client().await;
        let available = client
            .query_opt("SELECT default_version FROM pg_available_extensions WHERE name = 'realtime'", &[])
            .await
            .expect("query pg_available_extensions");
        if available.is_none() {
            panic!(
                "the `realtime` extension is not installed into the Postgres 15 in {bin} \
                 (no realtime.control). Install it first: `cargo pgrx install --pg-config \
                 {bin}/pg_config` in extension/ (`make test` does this).",
                bin = pg_bin()
            );
        }
        exec(
            &client,
            "DO $$
             DECLARE r text;
             BEGIN
               FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
                   EXECUTE format('CREATE ROLE %I NOLOGIN', r);
                 END IF;
               END LOOP;
             END $$;
             CREATE EXTENSION realtime;",
        )
        .await;
    }

    /// Restarts the server with `pg_ctl restart -m fast` (existing connections are terminated).
    pub async fn restart(&self) {
        if let Err(e) = self.try_pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60", "-D", "data"]).await {
            panic!("pg_ctl restart failed: {e}\n{}", self.log_tail(60));
        }
    }

    /// Stops the server with `pg_ctl stop -m fast`.
    pub async fn stop(&self) {
        if let Err(e) = self.try_pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60", "-D", "data"]).await {
            panic!("pg_ctl stop failed: {e}\n{}", self.log_tail(60));
        }
    }

    /// Starts a stopped server again (same data, port and settings).
    pub async fn start_again(&self) {
        if let Err(e) =
            self.try_pg_ctl(&["start", "-w", "-t", "60", "-D", "data", "-l", "postgres.log"]).await
        {
            panic!("pg_ctl start failed: {e}\n{}", self.log_tail(60));
        }
    }

    /// Writes `contents` to `name` in the data directory, owned by the server's user, with
    /// permission bits `mode` (server keys must be 0600).
    pub fn write_data_file(&self, name: &str, contents: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join("data").join(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod data file");
        if self.run_as_postgres {
            chown_to_postgres(&path);
        }
    }

    /// A superuser connection over the cluster's Unix socket (which `pg_hba.conf` may treat
    /// differently from TCP).
    pub async fn socket_client(&self) -> Client {
        let url = format!("host={} port={} user=postgres dbname=postgres", self.dir.display(), self.port);
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect over the socket: {}", pg_error_text(&e)));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- postgres.log (last {} lines) ---\n{}\n--- end postgres.log ---",
            lines,
            all[from..].join("\n")
        )
    }

    fn write_settings(&self) {
        let conf = self.dir.join("data").join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).expect("read postgresql.conf");
        if let Some(cut) = text.find("\n# realtime-e2e settings\n") {
            text.truncate(cut);
        }
        text.push_str(&format!(
            "\n# realtime-e2e settings\n\
             port = {}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             wal_level = logical\n\
             max_replication_slots = 20\n\
             max_wal_senders = 20\n\
             fsync = off\n",
            self.port,
            self.dir.display()
        ));
        fs::write(&conf, text).expect("write postgresql.conf");
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let bin = format!("{}/{tool}", pg_bin());
        let mut cmd = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &bin]);
            c
        } else {
            Command::new(&bin)
        };
        cmd.args(args).current_dir(&self.dir);
        cmd
    }

    /// Runs a tool to completion with captured output; panics with that output on failure.
    async fn run_tool(&self, tool: &str, args: &[&str]) {
        let out =
            tokio::process::Command::from(self.command(tool, args)).output().await.unwrap_or_else(|e| {
                panic!(
                    "run {tool}: {e} (is runuser installed? are the Postgres 15 binaries in {}?)",
                    pg_bin()
                )
            });
        if !out.status.success() {
            panic!(
                "{tool} {args:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Runs pg_ctl. Its output (and, for `restart`, the server's own output) goes to the server
    /// log file, never to a pipe: the server inherits those descriptors and outlives pg_ctl.
    async fn try_pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut cmd = self.command("pg_ctl", args);
        let log = self.open_log();
        cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("dup log fd")).stderr(log);
        let status =
            tokio::process::Command::from(cmd).status().await.map_err(|e| format!("spawn pg_ctl: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("pg_ctl {args:?} exited with {status}"))
        }
    }

    fn open_log(&self) -> fs::File {
        let path = self.dir.join("postgres.log");
        let file = OpenOptions::new().create(true).append(true).open(&path).expect("open postgres.log");
        if self.run_as_postgres {
            chown_to_postgres(&path);
        }
        file
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(120));
        }
        let mut cmd = self.command("pg_ctl", &["stop", "-m", "immediate", "-w", "-D", "data"]);
        let _ = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if std::env::var_os("REALTIME_E2E_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("keeping cluster directory {}", self.dir.display());
        }
    }
}

fn chown_to_postgres(path: &Path) {
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns a pointer to static storage or null; we only read two fields.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        panic!("running as root but there is no `postgres` user to run the cluster as");
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
}
