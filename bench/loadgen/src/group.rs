//! Several load-generator processes as one load (`--group FILE --group-size K --group-index I`):
//! one machine's file-descriptor limit (20,000 here) caps a process's connections, and one
//! process's runtime can become the bottleneck, so a run may be split over K processes. They
//! share one memory-mapped file (under /dev/shm): a small header to agree on the moment
//! publishing starts and ends, and the commit-acknowledgement time of every message, so every
//! process measures ack→recv and knows which messages were published. Process 0 (the leader)
//! publishes; the others only subscribe and read. Each prints its own JSON line (with its
//! histograms); `--mode merge` combines them into one.
//!
//! The file is created by whichever process comes first and sized by each (the same length: all
//! get the same schedule arguments); it must not exist before the run (the scripts make a fresh
//! name per run and remove it afterwards).

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memmap2::MmapMut;

use crate::stats;

/// Header words before the ack times.
const HEADER: usize = 8;
const READY: usize = 0;
const START_US: usize = 1;
const DONE: usize = 2;
const ABORTED: usize = 3;
const SIZE: usize = 4;
const BASELINE: usize = 5;

/// A process's view of the group's shared file.
pub struct Group {
    map: MmapMut,
    pub index: usize,
    pub size: usize,
    msgs: usize,
}

impl Group {
    /// Opens (or creates) the group file for `msgs` messages.
    pub fn open(path: &Path, size: usize, index: usize, msgs: usize) -> Result<Self, String> {
        if size == 0 || index >= size {
            return Err(format!("--group-index {index} must be below --group-size {size}"));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("--group {}: {e}", path.display()))?;
        let len = ((HEADER + msgs.max(1)) * 8) as u64;
        file.set_len(len).map_err(|e| format!("--group {}: {e}", path.display()))?;
        // SAFETY: the file is private to this run (a fresh name made by the calling script) and
        // is only ever accessed through the atomics below, by this group's processes.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| format!("--group mmap: {e}"))?;
        let g = Group { map, index, size, msgs };
        let prev = g.word(SIZE).compare_exchange(0, size as u64, Ordering::AcqRel, Ordering::Acquire);
        if let Err(other) = prev {
            if other != size as u64 {
                return Err(format!("--group file was made for {other} processes, not {size}"));
            }
        }
        Ok(g)
    }

    pub fn is_leader(&self) -> bool {
        self.index == 0
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < HEADER + self.msgs.max(1));
        // SAFETY: the map is at least (HEADER + msgs) × 8 bytes, page-aligned, so every
        // 8-byte word in it is a valid, aligned AtomicU64 for the map's lifetime.
        unsafe { &*(self.map.as_ptr() as *const AtomicU64).add(i) }
    }

    /// This process finished its subscribe phase.
    pub fn mark_ready(&self) {
        self.word(READY).fetch_add(1, Ordering::AcqRel);
    }

    /// Leader: waits until every process is ready (or `limit` passed: then the error).
    pub async fn wait_all_ready(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let n = self.word(READY).load(Ordering::Acquire) as usize;
            if n >= self.size {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.abort();
                return Err(format!("only {n} of {} load-generator processes got ready in time", self.size));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Leader: publishing starts at `start_us` (µs since the epoch).
    pub fn announce_start(&self, start_us: u64) {
        self.word(START_US).store(start_us.max(1), Ordering::Release);
    }

    /// Follower: waits for the leader's start time (µs since the epoch).
    pub async fn wait_start(&self, limit: Duration) -> Result<u64, String> {
        self.wait_word(START_US, limit, "never started publishing").await
    }

    /// Leader: every publish call has finished (its ack time, if any, is stored).
    pub fn announce_done(&self) {
        self.word(DONE).store(1, Ordering::Release);
    }

    /// Follower: waits until publishing is over.
    pub async fn wait_done(&self, limit: Duration) -> Result<(), String> {
        self.wait_word(DONE, limit, "never finished publishing").await.map(drop)
    }

    /// Leader: the servers' memory before any connection was read; the others may connect.
    pub fn announce_baseline(&self) {
        self.word(BASELINE).store(1, Ordering::Release);
    }

    /// Follower: waits until the leader read the servers' baseline memory.
    pub async fn wait_baseline(&self, limit: Duration) -> Result<(), String> {
        self.wait_word(BASELINE, limit, "never read the baseline").await.map(drop)
    }

    /// Waits until header word `i` is set by the leader; its value, or why not (`never`: what
    /// the leader did not do in time).
    async fn wait_word(&self, i: usize, limit: Duration, never: &str) -> Result<u64, String> {
        let deadline = Instant::now() + limit;
        loop {
            if self.aborted() {
                return Err("the group's leader gave up".into());
            }
            let v = self.word(i).load(Ordering::Acquire);
            if v != 0 {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(format!("the group's leader {never}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn abort(&self) {
        self.word(ABORTED).store(1, Ordering::Release);
    }

    fn aborted(&self) -> bool {
        self.word(ABORTED).load(Ordering::Acquire) != 0
    }

    pub fn set_ack(&self, seq: u64, us: u64) {
        if (seq as usize) < self.msgs {
            self.word(HEADER + seq as usize).store(us.max(1), Ordering::Release);
        }
    }

    pub fn ack(&self, seq: u64) -> Option<u64> {
        if (seq as usize) >= self.msgs {
            return None;
        }
        let v = self.word(HEADER + seq as usize).load(Ordering::Acquire);
        (v != 0).then_some(v)
    }
}

/// The `Instant` at which wall-clock time `us` (µs since the epoch) arrives (now, if past).
pub fn instant_at(us: u64) -> Instant {
    let now = stats::now_us();
    Instant::now() + Duration::from_micros(us.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("loadgen-group-test-{}-{name}", std::process::id()))
    }

    #[tokio::test]
    async fn two_members_share_readiness_start_and_acks() {
        let p = path("share");
        let leader = Group::open(&p, 2, 0, 10).unwrap();
        let follower = Group::open(&p, 2, 1, 10).unwrap();
        assert!(leader.wait_all_ready(Duration::from_millis(30)).await.is_err(), "nobody ready yet");
        // That timeout aborted the group: a follower waiting for the start now gives up.
        assert!(follower.wait_start(Duration::from_secs(1)).await.is_err());
        std::fs::remove_file(&p).unwrap();

        let leader = Group::open(&p, 2, 0, 10).unwrap();
        let follower = Group::open(&p, 2, 1, 10).unwrap();
        leader.mark_ready();
        follower.mark_ready();
        leader.wait_all_ready(Duration::from_secs(1)).await.unwrap();
        leader.announce_start(123);
        assert_eq!(follower.wait_start(Duration::from_secs(1)).await.unwrap(), 123);
        leader.set_ack(3, 456);
        leader.set_ack(99, 1); // beyond the schedule: ignored
        leader.announce_done();
        follower.wait_done(Duration::from_secs(1)).await.unwrap();
        assert_eq!((follower.ack(3), follower.ack(4), follower.ack(99)), (Some(456), None, None));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_file_made_for_another_group_size_is_refused() {
        let p = path("size");
        let _a = Group::open(&p, 3, 0, 4).unwrap();
        let err = Group::open(&p, 2, 1, 4).err().unwrap();
        assert!(err.contains("3 processes"), "{err}");
        assert!(Group::open(&p, 2, 2, 4).is_err(), "index out of range");
        std::fs::remove_file(&p).unwrap();
    }
}
