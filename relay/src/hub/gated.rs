//! Gated subscriptions: sessions that get a table's changes (its `changes:<schema>.<table>`
//! channel) only after a per-row visibility check, instead of straight from dispatch. This is
//! the registry, no IO: which sessions are bound to which table, with what each wants. The
//! check and the delivery are `crate::service::visibility`'s: one gate per table per relay
//! subscribes to the channel like any session and hands each subscriber the changes its
//! identity may see, in commit order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::SessionHandle;

/// Whether a subscriber wants a change (the parsed `watch_table` payload: `{operation, schema,
/// table, record, old_record}`); its protocol's bindings and filters decide.
pub type Wants = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// One session bound to a table.
#[derive(Clone)]
pub struct Subscriber {
    pub session: SessionHandle,
    pub wants: Wants,
}

/// The sessions bound to one table's changes on this relay.
pub struct Table {
    /// The change channel (`changes:<schema>.<table>`).
    pub channel: String,
    pub schema: String,
    pub table: String,
    /// The primary key as last seen by a check (None: none, or not known yet).
    pk: Mutex<Option<Vec<String>>>,
    subs: Mutex<HashMap<u64, Subscriber>>,
    /// Counts the changes to `subs` (bindings and unbindings).
    generation: AtomicU64,
    /// Cancelled when the last subscriber left: the table's gate stops.
    pub stop: CancellationToken,
}

impl Table {
    /// The subscribers now, by session id (ascending, so deliveries are in a stable order),
    /// with the [`Table::generation`] they are of.
    pub fn subscribers(&self) -> (u64, Vec<(u64, Subscriber)>) {
        let subs = self.subs.lock().expect("gated lock");
        let mut all: Vec<(u64, Subscriber)> = subs.iter().map(|(id, s)| (*id, s.clone())).collect();
        let generation = self.generation.load(Ordering::Acquire);
        drop(subs);
        all.sort_by_key(|(id, _)| *id);
        (generation, all)
    }

    /// Changes with every binding and unbinding: what a gate's roster of the subscribers is
    /// kept by.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Changes `subs` under its lock, counting the change.
    fn change<R>(&self, f: impl FnOnce(&mut HashMap<u64, Subscriber>) -> R) -> R {
        let mut subs = self.subs.lock().expect("gated lock");
        let r = f(&mut subs);
        self.generation.fetch_add(1, Ordering::AcqRel);
        r
    }

    /// Whether session `id` is still bound (checked again before each delivery).
    pub fn is_bound(&self, id: u64) -> bool {
        self.subs.lock().expect("gated lock").contains_key(&id)
    }

    /// The primary key last seen.
    pub fn primary_key(&self) -> Option<Vec<String>> {
        self.pk.lock().expect("pk lock").clone()
    }

    /// Records the primary key a check reported.
    pub fn set_primary_key(&self, pk: Option<Vec<String>>) {
        *self.pk.lock().expect("pk lock") = pk;
    }
}

/// Every table with gated subscribers, by change channel.
#[derive(Default)]
pub struct Gated {
    tables: Mutex<HashMap<String, Arc<Table>>>,
}

impl Gated {
    /// Binds `session` to the changes of `schema.table` (channel `channel`), replacing an
    /// earlier binding of the same session. Returns the table when this made it: the caller
    /// starts its gate.
    pub fn bind(
        &self,
        channel: &str,
        schema: &str,
        table: &str,
        pk: Option<Vec<String>>,
        sub: Subscriber,
    ) -> Option<Arc<Table>> {
        let mut tables = self.tables.lock().expect("gated lock");
        let mut made = None;
        let t = tables.entry(channel.to_string()).or_insert_with(|| {
            let t = Arc::new(Table {
                channel: channel.to_string(),
                schema: schema.to_string(),
                table: table.to_string(),
                pk: Mutex::new(pk),
                subs: Mutex::default(),
                generation: AtomicU64::new(0),
                stop: CancellationToken::new(),
            });
            made = Some(t.clone());
            t
        });
        t.change(|subs| subs.insert(sub.session.id, sub));
        made
    }

    /// Unbinds session `id` from `channel`; returns whether it was bound. The last one to leave
    /// stops the table's gate.
    pub fn unbind(&self, channel: &str, id: u64) -> bool {
        let mut tables = self.tables.lock().expect("gated lock");
        let Some(t) = tables.get(channel) else { return false };
        let (removed, empty) = t.change(|subs| (subs.remove(&id).is_some(), subs.is_empty()));
        if empty {
            t.stop.cancel();
            tables.remove(channel);
        }
        removed
    }

    /// Every gated subscription (channel, session): what permission re-checks cover beside the
    /// hub's.
    pub fn subscriptions(&self) -> Vec<(String, SessionHandle)> {
        let tables = self.tables.lock().expect("gated lock");
        let mut all = Vec::new();
        for (channel, t) in tables.iter() {
            for s in t.subs.lock().expect("gated lock").values() {
                all.push((channel.clone(), s.session.clone()));
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{session_queue, Budget, QueueLimits};

    fn sub(id: u64) -> (Subscriber, crate::hub::SessionQueue) {
        let (session, queue) =
            session_queue(id, QueueLimits { bytes: 1 << 20, budget: Budget::new(1 << 20) });
        (Subscriber { session, wants: Arc::new(|_: &Value| true) }, queue)
    }

    #[test]
    fn the_first_binding_makes_the_table_and_the_last_unbinding_stops_it() {
        let g = Gated::default();
        let (a, _qa) = sub(1);
        let (b, _qb) = sub(2);
        let t = g.bind("changes:public.todos", "public", "todos", Some(vec!["id".into()]), a).expect("made");
        assert!(g.bind("changes:public.todos", "public", "todos", None, b).is_none(), "already there");
        assert_eq!(t.subscribers().1.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(t.generation(), 2, "each binding counts");
        assert_eq!(t.primary_key(), Some(vec!["id".to_string()]));
        assert_eq!(g.subscriptions().len(), 2);
        assert!(g.unbind("changes:public.todos", 1));
        assert!(!g.unbind("changes:public.todos", 1), "not bound any more");
        assert!(!t.stop.is_cancelled() && t.is_bound(2) && !t.is_bound(1));
        assert!(g.unbind("changes:public.todos", 2));
        assert!(t.stop.is_cancelled(), "the last one out stops the gate");
        assert!(g.subscriptions().is_empty());
        let (c, _qc) = sub(3);
        assert!(g.bind("changes:public.todos", "public", "todos", None, c).is_some(), "a new gate");
    }
}
