//! The `realtime-relay` binary as a child process of one test.
//!
//! The binary is `$REALTIME_RELAY_BIN`, or else `<workspace>/target/debug/realtime-relay`. Its
//! stdout and stderr go to one log file; when the relay is dropped during a panic the log is
//! printed, so a failing test shows what the relay said. Dropping a relay kills it.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::{free_port, http_get, unique_id, Cluster, JWT_SECRET};

/// How a test relay is started; [`Default`] gives the brief's defaults (anonymous allowed, default
/// role allowlist, secret [`JWT_SECRET`], a fresh relay id).
#[derive(Debug, Clone, Default)]
pub struct RelayOptions {
    /// `--allow-anon <bool>`; not passed when `None` (the relay's default is true).
    pub allow_anon: Option<bool>,
    /// `--roles <list>`; not passed when `None`.
    pub roles: Option<String>,
    /// `--jwt-secret`; [`JWT_SECRET`] when `None`.
    pub jwt_secret: Option<String>,
    /// `--relay-id`; a fresh unique id when `None` (unless `pooled`).
    pub relay_id: Option<String>,
    /// No `--relay-id` at all: the relay claims a member of the slot pool, as identical
    /// replicas do.
    pub pooled: bool,
    /// `--database-url`; the cluster's [`Cluster::url`] for database `postgres` when `None`.
    pub database_url: Option<String>,
    /// Any further flags, appended as given.
    pub extra_args: Vec<String>,
}

/// A running relay. See the module docs.
pub struct Relay {
    child: Mutex<Child>,
    pid: u32,
    port: u16,
    log_path: PathBuf,
    relay_id: String,
    secret: String,
}

/// Path of the relay binary (`REALTIME_RELAY_BIN`, else `realtime-relay` in the profile folder
/// this test binary was built into, e.g. `target/debug/`); panics with instructions when it does
/// not exist. Taken from the running test's own path, never from a path baked in at compile
/// time: a build folder copied between checkouts must not run another checkout's relay.
pub fn relay_bin() -> PathBuf {
    let path = match std::env::var_os("REALTIME_RELAY_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("the test binary's path");
            // target/<profile>/deps/<test binary>
            let profile = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
            profile.join("realtime-relay")
        }
    };
    if !path.is_file() {
        panic!(
            "relay binary not found at {}: build it first (`cargo build -p realtime-relay`) or set REALTIME_RELAY_BIN",
            path.display()
        );
    }
    path
}

impl Relay {
    /// Spawns the relay against `cluster`'s database `postgres` on a free port. Does not wait for
    /// readiness: call [`Relay::wait_ready`].
    pub async fn start(cluster: &Cluster, options: RelayOptions) -> Relay {
        let bin = relay_bin();
        let port = free_port();
        let relay_id = options.relay_id.clone().unwrap_or_else(|| unique_id("e2e"));
        let secret = options.jwt_secret.clone().unwrap_or_else(|| JWT_SECRET.to_string());
        let log_path = std::env::temp_dir().join(format!("{}.log", unique_id("realtime_e2e_relay_")));
        let log = File::create(&log_path).expect("create relay log file");
        let mut cmd = Command::new(&bin);
        cmd.arg("--database-url")
            .arg(options.database_url.clone().unwrap_or_else(|| cluster.url("postgres")))
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--jwt-secret")
            .arg(&secret);
        if !options.pooled {
            cmd.arg("--relay-id").arg(&relay_id);
        }
        if let Some(allow) = options.allow_anon {
            cmd.arg("--allow-anon").arg(allow.to_string());
        }
        if let Some(roles) = &options.roles {
            cmd.arg("--roles").arg(roles);
        }
        cmd.args(&options.extra_args);
        for var in [
            "DATABASE_URL",
            "REALTIME_BIND",
            "REALTIME_JWT_SECRET",
            "REALTIME_JWKS_FILE",
            "REALTIME_ROLES",
            "REALTIME_ALLOW_ANON",
            "REALTIME_RELAY_ID",
        ] {
            cmd.env_remove(var);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info,realtime_relay=debug");
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup relay log fd"))
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let pid = child.id().expect("relay pid");
        Relay { child: Mutex::new(child), pid, port, log_path, relay_id, secret }
    }

    /// Polls `GET /readyz` until it answers 200 (30 s at most); panics with the relay log when the
    /// relay exits or never becomes ready.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit_status() {
                panic!("relay exited with {status} before it was ready\n{}", self.log());
            }
            match http_get(self.port, "/readyz").await {
                Ok((200, _)) => return,
                Ok((status, body)) => last = format!("HTTP {status}: {body}"),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("relay not ready within 30 s (last /readyz: {last})\n{}", self.log());
    }

    /// The HTTP/WebSocket port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The relay's resident memory in KiB (`VmRSS` of /proc/<pid>/status).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("read relay status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// `ws://127.0.0.1:PORT/v1/socket`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/socket", self.port)
    }

    /// The relay id it was started with (meaningless for a `pooled` relay).
    pub fn relay_id(&self) -> &str {
        &self.relay_id
    }

    /// A token signed with this relay's secret.
    pub fn token(&self, sub: Option<&str>, role: &str) -> String {
        crate::mint_token(&self.secret, sub, role)
    }

    /// Everything the relay has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        format!("--- relay log {} ---\n{text}\n--- end relay log ---", self.log_path.display())
    }

    /// The exit status if the process has exited.
    pub fn try_exit_status(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    /// SIGKILL, then reap.
    pub async fn kill(&self) {
        let _ = self.child.lock().unwrap().start_kill();
        self.wait_exit(Duration::from_secs(10)).await;
    }

    /// SIGTERM, then waits up to 20 s for the process to exit and returns its status.
    pub async fn stop(&self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(20)).await
    }

    /// Sends SIGTERM without waiting (see [`Relay::wait_exit`]).
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `signal` to the relay process.
    pub fn signal(&self, signal: libc::c_int) {
        if self.try_exit_status().is_none() {
            // SAFETY: plain kill(2) on our own child's pid, which has not been reaped yet.
            unsafe { libc::kill(self.pid as libc::pid_t, signal) };
        }
    }

    /// Waits for the process to exit; panics with the log after `limit`.
    pub async fn wait_exit(&self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exit_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!("relay did not exit within {limit:?}\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.start_kill();
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if std::env::var_os("REALTIME_E2E_KEEP").is_none() {
            let _ = fs::remove_file(&self.log_path);
        }
    }
}
