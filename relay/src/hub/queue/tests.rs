//! Unit tests of the session queue.

use super::*;

fn frame(n: usize) -> Outbound {
    Outbound::Frame(WireFrame::text("x".repeat(n)))
}

#[test]
fn offers_are_refused_past_the_session_or_the_shared_budget_and_replies_are_not() {
    let budget = Budget::new(10_000);
    let (a, mut qa) = session_queue(1, QueueLimits { bytes: 3_000, budget: budget.clone() });
    let (b, _qb) = session_queue(2, QueueLimits { bytes: 100_000, budget: budget.clone() });
    assert_eq!(a.offer(frame(1_000)), Ok(()));
    assert_eq!(a.offer(frame(1_000)), Ok(()));
    assert_eq!(a.offer(frame(1_000)), Err(Refused::Full), "over the session's 3,000 bytes");
    assert!(a.send(frame(5_000)), "a reply is queued whatever the budget");
    assert!(!a.has_room());
    assert_eq!(b.offer(frame(3_000)), Err(Refused::Full), "over the shared 10,000 bytes");
    assert_eq!(budget.used(), 2 * 1_160 + 5_160);
    while qa.try_recv().is_some() {}
    assert_eq!((a.queued_bytes(), budget.used()), (0, 0));
    assert!(a.has_room());
    assert_eq!(b.offer(frame(3_000)), Ok(()));
}

#[test]
fn a_dropped_writer_returns_its_bytes_and_refuses_more() {
    let budget = Budget::new(1 << 20);
    let (a, qa) = session_queue(1, QueueLimits { bytes: 1 << 20, budget: budget.clone() });
    a.send(frame(100));
    drop(qa);
    assert_eq!(budget.used(), 0);
    assert!(a.is_gone());
    assert_eq!(a.offer(frame(1)), Err(Refused::Gone));
}

#[tokio::test]
async fn a_queue_that_holds_bytes_without_progress_is_stalled() {
    let (a, q) = session_queue(1, QueueLimits { bytes: 1 << 20, budget: Budget::new(1 << 20) });
    assert_eq!(a.stalled_for(), Duration::ZERO, "empty: never stalled");
    a.send(frame(10));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(a.stalled_for() >= Duration::from_millis(25));
    q.progressed();
    assert!(a.stalled_for() < Duration::from_millis(25));
}

#[test]
fn an_ordered_queue_refuses_everything_after_its_first_refusal() {
    let (a, mut q) = session_queue(1, QueueLimits { bytes: 3_000, budget: Budget::new(1 << 20) });
    a.keep_order();
    assert_eq!(a.offer(frame(1_000)), Ok(()));
    assert_eq!(a.offer(frame(2_000)), Err(Refused::Full), "over the budget");
    assert_eq!(a.offer(frame(10)), Err(Refused::Full), "it would fit, but comes after a refusal");
    while q.try_recv().is_some() {}
    assert_eq!(a.offer(frame(10)), Err(Refused::Full), "still refused once there is room");
    assert!(a.send(frame(10)), "the session's own items still go in");
}

#[tokio::test]
async fn recv_hands_out_every_item_then_ends_once_every_handle_is_gone() {
    let (a, mut q) = session_queue(1, QueueLimits { bytes: 1 << 20, budget: Budget::new(1 << 20) });
    let b = a.clone();
    a.send(frame(1));
    drop(a);
    assert!(q.recv().await.is_some());
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while q.recv().await.is_some() {
            n += 1;
        }
        n
    });
    b.send(frame(2));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!reader.is_finished(), "a handle is left: the queue waits for more");
    b.send(frame(3));
    drop(b);
    assert_eq!(reader.await.unwrap(), 2, "items queued before the last handle went are read");
}

#[test]
fn an_idle_queue_holds_no_storage_and_an_emptied_one_gives_a_burst_back() {
    let (a, mut q) = session_queue(1, QueueLimits { bytes: 1 << 30, budget: Budget::new(1 << 30) });
    let capacity = |h: &SessionHandle| h.shared.items.lock().unwrap().capacity();
    assert_eq!(capacity(&a), 0, "nothing allocated before the first item");
    for _ in 0..100 {
        a.send(frame(1));
    }
    assert!(capacity(&a) >= 100);
    while q.try_recv().is_some() {}
    assert_eq!(capacity(&a), 0, "a burst's storage is given back once read");
    a.send(frame(1));
    q.try_recv();
    assert!((1..=KEEP_SLOTS).contains(&capacity(&a)), "a small queue keeps its few slots");
}

#[tokio::test]
async fn lagging_channels_are_taken_once() {
    let (a, _q) = session_queue(1, QueueLimits { bytes: 1 << 20, budget: Budget::new(1 << 20) });
    a.lagged("b");
    a.lagged("a");
    a.lagged("b");
    assert_eq!(a.next_lagging().await, ["a", "b"]);
    assert!(tokio::time::timeout(Duration::from_millis(20), a.next_lagging()).await.is_err());
}

#[tokio::test]
async fn a_batch_gives_its_bytes_back_when_dropped_and_the_writer_wakes_for_the_next_item() {
    let budget = Budget::new(1 << 20);
    let (a, mut q) = session_queue(1, QueueLimits { bytes: 1 << 20, budget: budget.clone() });
    a.send(frame(100));
    a.send(frame(200));
    assert!(q.ready().await);
    let mut batch = q.batch();
    assert!(batch.next().is_some());
    assert_eq!(a.queued_bytes(), 100 + 200 + 2 * 160, "taken but not yet written: still counted");
    assert!(batch.next().is_some());
    assert!(batch.next().is_none());
    drop(batch);
    assert_eq!((a.queued_bytes(), budget.used()), (0, 0));
    // The queue is empty now: the next item (into an empty queue) wakes the waiting writer,
    // and one queued behind it while the writer is busy is taken in the same batch.
    let writer = tokio::spawn(async move {
        let woke = q.ready().await;
        let n = q.batch().count();
        (woke, n, q)
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.send(frame(10));
    a.send(frame(10));
    let (woke, n, _q) = tokio::time::timeout(Duration::from_secs(5), writer).await.unwrap().unwrap();
    assert!(woke && (1..=2).contains(&n));
    assert_eq!(a.queued_bytes(), if n == 2 { 0 } else { 170 });
    drop(a);
}

#[tokio::test]
async fn ready_is_false_once_every_handle_is_gone_and_the_queue_is_empty() {
    let (a, mut q) = session_queue(1, QueueLimits { bytes: 1 << 20, budget: Budget::new(1 << 20) });
    a.send(frame(1));
    drop(a);
    assert!(q.ready().await, "what was queued is still delivered");
    assert_eq!(q.batch().count(), 1);
    assert!(!q.ready().await);
}

#[tokio::test]
async fn a_writer_dropped_mid_batch_returns_the_bytes_it_took() {
    let budget = Budget::new(1 << 20);
    let (a, mut q) = session_queue(1, QueueLimits { bytes: 1 << 20, budget: budget.clone() });
    a.send(frame(100));
    a.send(frame(100));
    let mut batch = q.batch();
    assert!(batch.next().is_some());
    drop(batch);
    drop(q);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_session_marked_slow_is_gone() {
    let (a, _q) = session_queue(1, QueueLimits { bytes: 1 << 20, budget: Budget::new(1 << 20) });
    let signal = a.slow_signal();
    assert!(!a.is_gone());
    a.mark_slow();
    assert!(a.is_gone() && signal.is_cancelled());
    assert_eq!(a.offer(frame(1)), Err(Refused::Gone));
}
