//! CPU time and memory of processes from /proc (Linux), to tell who used the cores.

use std::fs;

/// Clock ticks per second of /proc times (USER_HZ: 100 on every Linux ABI we run on).
const TICKS: f64 = 100.0;

/// User + system CPU seconds of a process (`self` or a pid).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

/// A `kB` line (`VmHWM`, `VmRSS`) of /proc/<pid>/status.
pub fn status_kb(pid: &str, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// Resets the peak RSS (VmHWM) of a process to its current RSS (`clear_refs` = 5). Needs to
/// own the process or be root; returns whether it worked.
pub fn reset_peak_rss(pid: &str) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Busy and total CPU seconds of the whole machine (all cores), from /proc/stat.
pub fn machine_cpu() -> Option<(f64, f64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some(((total - idle) / TICKS, total / TICKS))
}

/// The newest process whose name is `realtime-relay` (when no `--relay-pid` was given).
pub fn find_relay() -> Option<String> {
    let out = std::process::Command::new("pgrep").args(["-n", "-x", "realtime-relay"]).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    let pid = s.trim();
    (!pid.is_empty()).then(|| pid.to_string())
}

/// CPU seconds of a process and of all its children, living and reaped: its own user + system
/// time, the time of the children it waited for (`cutime`, `cstime`), and the time of every
/// living process whose parent it is (and of the children those reaped). For the whole of
/// Postgres, give the postmaster's pid: a backend that exits during the window moves its time
/// into the postmaster's `cutime`, so a before/after difference still counts it.
pub fn tree_cpu_seconds(pid: &str) -> Option<f64> {
    let own = stat_fields(pid)?;
    let mut total = own.cpu + own.children_cpu;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(child) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        if let Some(f) = stat_fields(child).filter(|f| f.ppid == pid) {
            total += f.cpu + f.children_cpu;
        }
    }
    Some(total)
}

struct StatFields {
    ppid: String,
    cpu: f64,
    children_cpu: f64,
}

fn stat_fields(pid: &str) -> Option<StatFields> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    Some(StatFields {
        ppid: f.get(1)?.to_string(),
        cpu: (n(11)? + n(12)?) / TICKS,
        children_cpu: (n(13)? + n(14)?) / TICKS,
    })
}

/// A process whose CPU the report shows beside the servers' (`--watch label=pid`, or
/// `label=tree:pid` for a process with all its children: [`tree_cpu_seconds`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub label: String,
    pub pid: String,
    pub tree: bool,
}

impl std::str::FromStr for Watch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (label, pid) = s.split_once('=').ok_or_else(|| format!("--watch {s:?}: expected label=pid"))?;
        let (pid, tree) = match pid.strip_prefix("tree:") {
            Some(p) => (p, true),
            None => (pid, false),
        };
        if label.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("--watch {s:?}: expected label=pid or label=tree:pid"));
        }
        Ok(Watch { label: label.to_string(), pid: pid.to_string(), tree })
    }
}

impl Watch {
    fn cpu(&self) -> Option<f64> {
        if self.tree {
            tree_cpu_seconds(&self.pid)
        } else {
            cpu_seconds(&self.pid)
        }
    }
}

/// The processes a run reads CPU of: the servers under test and the watched ones.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub servers: Vec<String>,
    pub watched: Vec<Watch>,
}

impl Probe {
    /// The servers given (`--relay-pid`), else the newest process named `realtime-relay`.
    pub fn of(args: &crate::Args) -> Self {
        let servers = if args.relay_pid.is_empty() {
            find_relay().into_iter().collect()
        } else {
            args.relay_pid.clone()
        };
        Probe { servers, watched: args.watch.clone() }
    }

    /// The first server's pid (for the RSS figures of one-server runs).
    pub fn first(&self) -> Option<&str> {
        self.servers.first().map(String::as_str)
    }
}

/// A before/after pair of CPU readings for the measured window.
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    /// All servers together.
    pub relay: Option<f64>,
    /// Each server, in [`Probe::servers`] order.
    pub servers: Vec<Option<f64>>,
    /// Each watched process, in [`Probe::watched`] order.
    pub watched: Vec<Option<f64>>,
    pub loadgen: Option<f64>,
    pub machine_busy: Option<f64>,
    pub machine_total: Option<f64>,
}

impl Cpu {
    pub fn read(probe: &Probe) -> Self {
        let machine = machine_cpu();
        let servers: Vec<Option<f64>> = probe.servers.iter().map(|p| cpu_seconds(p)).collect();
        Self {
            relay: sum(&servers),
            servers,
            watched: probe.watched.iter().map(Watch::cpu).collect(),
            loadgen: cpu_seconds("self"),
            machine_busy: machine.map(|m| m.0),
            machine_total: machine.map(|m| m.1),
        }
    }

    /// `after - self`, per field.
    pub fn delta(&self, after: &Cpu) -> Cpu {
        let d = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        let each = |a: &[Option<f64>], b: &[Option<f64>]| a.iter().zip(b).map(|(x, y)| d(*x, *y)).collect();
        let servers: Vec<Option<f64>> = each(&self.servers, &after.servers);
        Cpu {
            relay: sum(&servers),
            servers,
            watched: each(&self.watched, &after.watched),
            loadgen: d(self.loadgen, after.loadgen),
            machine_busy: d(self.machine_busy, after.machine_busy),
            machine_total: d(self.machine_total, after.machine_total),
        }
    }

    /// `{"<pid>": secs}` of the servers and `{"<label>": secs}` of the watched processes.
    pub fn maps(&self, probe: &Probe) -> (serde_json::Value, serde_json::Value) {
        let r2 = |x: &Option<f64>| x.map(|v| (v * 100.0).round() / 100.0);
        let servers =
            probe.servers.iter().zip(&self.servers).map(|(p, c)| (p.clone(), serde_json::json!(r2(c))));
        let watched =
            probe.watched.iter().zip(&self.watched).map(|(w, c)| (w.label.clone(), serde_json::json!(r2(c))));
        (serde_json::Value::Object(servers.collect()), serde_json::Value::Object(watched.collect()))
    }
}

/// The sum of the readable values; `None` when none was readable.
fn sum(v: &[Option<f64>]) -> Option<f64> {
    v.iter().flatten().copied().reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_specs_name_a_process_or_a_tree() {
        let w: Watch = "pg=tree:42".parse().unwrap();
        assert_eq!(w, Watch { label: "pg".into(), pid: "42".into(), tree: true });
        let w: Watch = "wal_r1=7".parse().unwrap();
        assert!(!w.tree && w.pid == "7");
        for bad in ["7", "=7", "x=", "x=tree:", "x=abc"] {
            assert!(bad.parse::<Watch>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tree_counts_at_least_its_root_and_living_children() {
        let me = std::process::id().to_string();
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let own = cpu_seconds(&me).unwrap();
        let tree = tree_cpu_seconds(&me).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(tree >= own, "tree {tree} < own {own}");
        assert!(tree_cpu_seconds("999999999").is_none());
    }
}
