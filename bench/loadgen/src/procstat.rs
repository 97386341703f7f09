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

/// A before/after pair of CPU readings for the measured window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub relay: Option<f64>,
    pub loadgen: Option<f64>,
    pub machine_busy: Option<f64>,
    pub machine_total: Option<f64>,
}

impl Cpu {
    pub fn read(relay_pid: Option<&str>) -> Self {
        let machine = machine_cpu();
        Self {
            relay: relay_pid.and_then(cpu_seconds),
            loadgen: cpu_seconds("self"),
            machine_busy: machine.map(|m| m.0),
            machine_total: machine.map(|m| m.1),
        }
    }

    /// `after - self`, per field.
    pub fn delta(&self, after: &Cpu) -> Cpu {
        let d = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        Cpu {
            relay: d(self.relay, after.relay),
            loadgen: d(self.loadgen, after.loadgen),
            machine_busy: d(self.machine_busy, after.machine_busy),
            machine_total: d(self.machine_total, after.machine_total),
        }
    }
}
