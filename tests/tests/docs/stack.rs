//! `make run`, as the reader starts it: `scripts/run.sh` (what `make run` runs once the extension
//! is installed and the relay built) in its own process group, on free ports and with its own
//! data folder, so it can run beside a developer's `make run` and other tests. Ctrl-C is a
//! SIGINT to the group, as a terminal sends it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use realtime_e2e::{free_port, http_get, unique_id};

pub struct Stack {
    child: Option<Child>,
    pub root: PathBuf,
    /// `REALTIME_DATA_DIR`: what `.data/` is for the reader.
    pub data: PathBuf,
    /// The reader's `$HOME` (the quickstart makes `~/hello-realtime`).
    pub home: PathBuf,
    pub pg_port: u16,
    pub relay_port: u16,
    pub demo_port: u16,
    log: PathBuf,
}

impl Stack {
    /// Starts `scripts/run.sh` and waits until the demo page answers (it starts last, after the
    /// relay is ready and the demo rows are in).
    pub async fn start(root: &Path) -> Stack {
        let base = std::env::temp_dir().join(unique_id("realtime_docs_"));
        let (data, home) = (base.join("data"), base.join("home"));
        std::fs::create_dir_all(&data).expect("make the data folder");
        std::fs::create_dir_all(&home).expect("make the reader's home");
        let log = base.join("make-run.log");
        let (pg_port, relay_port, demo_port) = (free_port(), free_port(), free_port());
        let out = File::create(&log).expect("make-run.log");
        let mut cmd = Command::new(root.join("scripts/run.sh"));
        cmd.current_dir(root)
            .env("PG_PORT", pg_port.to_string())
            .env("REALTIME_BIND", format!("127.0.0.1:{relay_port}"))
            .env("DEMO_PORT", demo_port.to_string())
            .env("REALTIME_DATA_DIR", &data)
            .env("PG_BIN", realtime_e2e::cluster::pg_bin())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start scripts/run.sh");
        let mut stack = Stack {
            child: Some(child),
            root: root.to_path_buf(),
            data,
            home,
            pg_port,
            relay_port,
            demo_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if matches!(http_get(stack.demo_port, "/").await, Ok((200, _))) {
                break;
            }
            if let Some(status) = stack.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "make run (scripts/run.sh) exited with {status} before it was ready:\n{}",
                    stack.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "make run was not ready within 10 minutes:\n{}",
                stack.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stack
    }

    /// Everything `make run` printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The textual addresses of a page and what they are here (ports and folders differ).
    pub fn substitutions(&self) -> Vec<(String, String)> {
        vec![
            ("127.0.0.1:54329".into(), format!("127.0.0.1:{}", self.pg_port)),
            ("127.0.0.1:4000".into(), format!("127.0.0.1:{}", self.relay_port)),
            ("127.0.0.1:4001".into(), format!("127.0.0.1:{}", self.demo_port)),
            (".data/".into(), format!("{}/", self.data.display())),
        ]
    }

    /// The pid of the relay run.sh started (its child running `realtime-relay`).
    pub fn relay_pid(&self) -> Option<u32> {
        let parent = self.child.as_ref()?.id();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid ...
            let (comm, rest) = stat.split_once(") ")?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent && comm.ends_with("realtime-relay")).then_some(pid)
        })
    }

    /// Ctrl-C: SIGINT to the process group; returns run.sh's exit code (None: killed by a signal).
    pub async fn interrupt(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("make run is running");
        // SAFETY: a plain kill(2) of the process group this test started.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait for run.sh") {
                return status.code();
            }
            if Instant::now() > deadline {
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                panic!("make run did not stop within 60 s of Ctrl-C:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signals to the process group this test started.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if child.try_wait().ok().flatten().is_none() {
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
            }
            if std::thread::panicking() {
                eprintln!("--- make run (scripts/run.sh) output ---\n{}", self.log_tail());
            }
        }
        // Postgres runs as its own user outside the group when we are root: stop it for sure.
        let pgdata = self.data.join("pg");
        if pgdata.join("postmaster.pid").exists() {
            let mut stop = Command::new(format!("{}/pg_ctl", realtime_e2e::cluster::pg_bin()));
            stop.args(["-D", &pgdata.to_string_lossy(), "stop", "-m", "immediate"]);
            if unsafe { libc::geteuid() } == 0 {
                stop = Command::new("runuser");
                stop.args(["-u", "postgres", "--"])
                    .arg(format!("{}/pg_ctl", realtime_e2e::cluster::pg_bin()))
                    .args(["-D", &pgdata.to_string_lossy(), "stop", "-m", "immediate"]);
            }
            let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(self.data.parent().expect("base folder"));
    }
}
