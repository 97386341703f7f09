//! One logical client of the soak (src/soak.rs): subscribes to its channel, reads, and when told
//! to reconnect drops its socket and subscribes again on the next relay with `resume` from the
//! last cursor it saw, as an SDK client would. It keeps what the verdict needs: which messages
//! of its channel it received (a bit per message), how many twice, how many replayed, resets,
//! reconnects. Speaks wire protocol v1 (only our relay resumes).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::adapter::{realtime, short, Kind, Ws};
use crate::soak::SoakShared;
use crate::stats;
use crate::subscribers::{self, Target};

/// What one logical client saw over the whole soak.
pub struct ConnState {
    /// Global index (channel `bench:<index % channels>`).
    pub index: usize,
    /// Bit `s / channels` set when message `s` of this channel arrived.
    seen: Vec<u64>,
    /// Bits in `seen` (messages of one channel over the whole schedule).
    bits: usize,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Messages received (first time only).
    pub received: u64,
    /// Of `received`, how many came replayed after a resume.
    pub replayed: u64,
    /// `reset` frames: the relay could not replay (messages in the gap are then missing).
    pub resets: u64,
    /// Resumes whose reply said `recovered: false`.
    pub not_recovered: u64,
    /// Completed reconnects (the resume subscribe was answered).
    pub reconnects: u64,
    /// Attempts that failed (connect, handshake or subscribe), retried on the next relay.
    pub failed_attempts: u64,
    /// Messages for another channel, or without the load generator's fields.
    pub foreign: u64,
    /// Which relay (index into `--url`) it is connected to at the end.
    pub endpoint: usize,
}

impl ConnState {
    pub(crate) fn new(index: usize, bits: usize, endpoint: usize) -> Self {
        ConnState {
            index,
            seen: vec![0; bits.div_ceil(64)],
            bits,
            duplicates: 0,
            received: 0,
            replayed: 0,
            resets: 0,
            not_recovered: 0,
            reconnects: 0,
            failed_attempts: 0,
            foreign: 0,
            endpoint,
        }
    }

    /// Marks message `bit` received; false when it was already.
    pub(crate) fn mark(&mut self, bit: usize) -> bool {
        if bit >= self.bits {
            return false;
        }
        let (w, b) = (bit / 64, 1u64 << (bit % 64));
        match self.seen.get_mut(w) {
            Some(word) if *word & b == 0 => {
                *word |= b;
                true
            }
            Some(_) => false,
            None => false,
        }
    }

    pub fn has(&self, bit: usize) -> bool {
        self.seen.get(bit / 64).is_some_and(|w| w & (1u64 << (bit % 64)) != 0)
    }
}

/// How one WebSocket session of a client ended.
enum End {
    /// Told to reconnect.
    Reconnect,
    /// The soak is over.
    Stop,
    /// The socket failed or closed (counted; the client reconnects).
    Lost(String),
}

/// The client's tasks and signals, as the soak runner holds them.
pub struct Spec {
    pub index: usize,
    pub channels: u64,
    /// Bits per client: messages per channel over the whole schedule.
    pub bits: usize,
    pub reconnect: Arc<Notify>,
    pub stop: watch::Receiver<bool>,
    pub ready: mpsc::UnboundedSender<Result<(), String>>,
    pub gate: Arc<Semaphore>,
}

/// Runs the client until the soak stops; returns what it saw.
pub async fn run(spec: Spec, target: Arc<Target>, shared: Arc<SoakShared>) -> ConnState {
    let Spec { index, channels, bits, reconnect, mut stop, ready, gate } = spec;
    let n = target.endpoints.len();
    let channel = format!("bench:{}", index as u64 % channels);
    let mut st = ConnState::new(index, bits, index % n);

    // The first subscribe, under the setup gate, reported to the runner.
    let first = {
        let _permit = gate.acquire().await.expect("gate open");
        tokio::time::timeout(target.connect_timeout, open(&target, &mut st, &channel, None, 0)).await
    };
    let (mut ws, mut cursor) = match first {
        Ok(Ok(opened)) => {
            let _ = ready.send(Ok(()));
            opened
        }
        Ok(Err(e)) => {
            let _ = ready.send(Err(e));
            return st;
        }
        Err(_) => {
            let _ = ready.send(Err("setup timeout".into()));
            return st;
        }
    };
    drop(ready);

    let mut attempt = 0usize;
    loop {
        let end = read(&mut ws, &mut st, &mut cursor, channels, &reconnect, &shared, &mut stop).await;
        drop(ws);
        match end {
            End::Stop => return st,
            End::Reconnect => {}
            End::Lost(why) => {
                if *stop.borrow() {
                    return st;
                }
                shared.events.add(why);
            }
        }
        // Reconnect on the next relay, resuming from the last cursor seen; on failure, the next.
        loop {
            st.endpoint = (st.endpoint + 1) % n;
            attempt += 1;
            let resume = cursor.clone();
            let r = tokio::time::timeout(
                target.connect_timeout,
                open(&target, &mut st, &channel, resume.as_deref(), attempt),
            );
            let stopped = async {
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
            };
            tokio::select! {
                r = r => match r {
                    Ok(Ok((w, c))) => {
                        if resume.is_none() {
                            cursor = c;
                        }
                        st.reconnects += 1;
                        shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        ws = w;
                        break;
                    }
                    Ok(Err(e)) => {
                        st.failed_attempts += 1;
                        shared.events.add(format!("reconnect: {e}"));
                    }
                    Err(_) => {
                        st.failed_attempts += 1;
                        shared.events.add("reconnect: timeout");
                    }
                },
                _ = stopped => return st,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Connects to the client's current relay and subscribes (with `resume` when a cursor is
/// given); returns the socket and, for a plain subscribe, the reply's cursor.
async fn open(
    target: &Target,
    st: &mut ConnState,
    channel: &str,
    resume: Option<&str>,
    attempt: usize,
) -> Result<(Ws, Option<String>), String> {
    let ep = &target.endpoints[st.endpoint];
    let mut ws = subscribers::connect(st.index + attempt, target, ep.addr, &ep.url).await?;
    let frame = match resume {
        Some(c) => realtime::subscribe_resume(channel, 1, c),
        None => realtime::subscribe(channel, 1),
    };
    ws.send(Message::text(frame)).await.map_err(|e| format!("send: {}", short(&e.to_string())))?;
    loop {
        let t = crate::adapter::next_text(&mut ws).await.map_err(|e| format!("subscribe: {e}"))?;
        match realtime::subscribe_reply_fields(&t) {
            Some(Ok(reply)) => {
                if reply.recovered == Some(false) {
                    st.not_recovered += 1;
                }
                return Ok((ws, reply.cursor));
            }
            Some(Err(code)) => return Err(format!("subscribe: {code}")),
            None => {} // nothing of the channel comes before its reply
        }
    }
}

/// Reads until told to reconnect or stop, or the socket ends.
async fn read(
    ws: &mut Ws,
    st: &mut ConnState,
    cursor: &mut Option<String>,
    channels: u64,
    reconnect: &Notify,
    shared: &SoakShared,
    stop: &mut watch::Receiver<bool>,
) -> End {
    loop {
        if *stop.borrow() {
            return End::Stop;
        }
        tokio::select! {
            next = ws.next() => match next {
                Some(Ok(Message::Text(t))) => on_text(t.as_str(), st, cursor, channels, shared),
                Some(Ok(Message::Close(c))) => {
                    return End::Lost(format!("close {}", c.map_or(1005, |f| u16::from(f.code))));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return End::Lost(format!("read error: {}", short(&e.to_string()))),
                None => return End::Lost("eof".into()),
            },
            _ = reconnect.notified() => return End::Reconnect,
            r = stop.changed() => if r.is_err() || *stop.borrow() { return End::Stop },
        }
    }
}

fn on_text(text: &str, st: &mut ConnState, cursor: &mut Option<String>, channels: u64, shared: &SoakShared) {
    match realtime::classify(text) {
        Kind::Tick { seq, sent_us } => {
            let now = stats::now_us();
            let (c, replayed) = realtime::message_meta(text);
            if let Some(c) = c {
                *cursor = Some(c.to_string());
            }
            if seq % channels != st.index as u64 % channels {
                st.foreign += 1;
                return;
            }
            if !st.mark((seq / channels) as usize) {
                st.duplicates += 1;
                return;
            }
            st.received += 1;
            st.replayed += u64::from(replayed);
            shared.record(seq, sent_us, now, replayed, text.len());
        }
        Kind::ForeignMessage => st.foreign += 1,
        Kind::Other => {
            if let Some(c) = realtime::reset_cursor(text) {
                st.resets += 1;
                if !c.is_empty() {
                    *cursor = Some(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_counts_once_and_a_second_copy_is_a_duplicate() {
        let mut st = ConnState::new(3, 130, 0);
        assert!(st.mark(0) && st.mark(64) && st.mark(129));
        assert!(!st.mark(64), "already seen");
        assert!(!st.mark(130), "beyond the schedule");
        assert!(st.has(0) && st.has(64) && st.has(129) && !st.has(1) && !st.has(500));
    }
}
