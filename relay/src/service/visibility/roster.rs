//! A table gate's bound sessions grouped by identity, kept from batch to batch. Grouping
//! parses each session's claims and hashes them; doing it again for every batch cost more
//! relay CPU than the rest of the gate when batches are small (a change or two each, as under
//! a steady load). The roster is rebuilt only when the table's bindings changed (its
//! generation) or a session's identity did (a new token: a different `Arc`).

use std::collections::HashMap;
use std::sync::Arc;

use super::plan;
use crate::core::Identity;
use crate::hub::gated::{Subscriber, Table};

/// An identity: role and claims text without the claims that vary between tokens of one
/// sign-in ([`plan::shareable_claims`]).
pub(super) type Who = (String, String);

/// Most claims texts whose shareable form is remembered.
const MAX_KEYS: usize = 10_000;

/// One bound session.
pub(super) struct Member {
    pub id: u64,
    pub sub: Subscriber,
    /// The identity it was grouped by.
    identity: Arc<Identity>,
    /// Its identity's group (an index into [`Roster::groups`]).
    pub group: usize,
}

/// The sessions bound to one table, grouped by identity.
#[derive(Default)]
pub(super) struct Roster {
    /// The table's generation this was built at (None: never built).
    generation: Option<u64>,
    /// By session id, ascending.
    pub members: Vec<Member>,
    /// The distinct identities.
    pub groups: Vec<Who>,
    /// For each group, the full identity of its first session: what the check runs as.
    pub checked_as: Vec<Arc<Identity>>,
    /// Shareable claims by claims text, so each token is parsed once (cleared past
    /// [`MAX_KEYS`]).
    keys: HashMap<String, String>,
}

impl Roster {
    /// Brings the roster up to date with `table`'s bindings and its sessions' identities.
    /// Returns whether it was rebuilt.
    pub fn refresh(&mut self, table: &Table) -> bool {
        if self.generation == Some(table.generation()) && self.members.iter().all(Member::same_identity) {
            return false;
        }
        let (generation, subs) = table.subscribers();
        if self.keys.len() > MAX_KEYS {
            self.keys.clear();
        }
        let members: Vec<(u64, Subscriber, Arc<Identity>)> = subs
            .into_iter()
            .filter_map(|(id, sub)| {
                let identity = sub.session.identity()?;
                Some((id, sub, identity))
            })
            .collect();
        let whos: Vec<Who> = members
            .iter()
            .map(|(_, _, w)| {
                let shared =
                    self.keys.entry(w.claims.clone()).or_insert_with(|| plan::shareable_claims(&w.claims));
                (w.role.clone(), shared.clone())
            })
            .collect();
        let (groups, of) = plan::group(&whos);
        let mut checked_as: Vec<Option<Arc<Identity>>> = vec![None; groups.len()];
        for ((_, _, w), g) in members.iter().zip(&of) {
            checked_as[*g].get_or_insert_with(|| w.clone());
        }
        self.members = members
            .into_iter()
            .zip(of)
            .map(|((id, sub, identity), group)| Member { id, sub, identity, group })
            .collect();
        self.groups = groups;
        self.checked_as = checked_as.into_iter().map(|w| w.expect("every group has a session")).collect();
        self.generation = Some(generation);
        true
    }
}

impl Member {
    /// Whether its session still acts as the identity it was grouped by.
    fn same_identity(&self) -> bool {
        self.sub.session.identity().is_some_and(|now| Arc::ptr_eq(&now, &self.identity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::gated::Gated;
    use crate::hub::{session_queue, Budget, QueueLimits, SessionHandle, SessionQueue};
    use serde_json::Value;

    fn session(id: u64, sub: &str) -> (SessionHandle, SessionQueue) {
        let (session, queue) =
            session_queue(id, QueueLimits { bytes: 1 << 20, budget: Budget::new(1 << 20) });
        session.set_identity(identity(sub));
        (session, queue)
    }

    fn identity(sub: &str) -> Arc<Identity> {
        let claims = format!(r#"{{"sub":"{sub}","role":"authenticated","exp":{}}}"#, sub.len());
        Arc::new(Identity { role: "authenticated".into(), user_id: Some(sub.into()), claims, exp: None })
    }

    fn bind(g: &Gated, session: &SessionHandle) -> Option<Arc<Table>> {
        let sub = Subscriber { session: session.clone(), wants: Arc::new(|_: &Value| true) };
        g.bind("changes:public.todos", "public", "todos", None, sub)
    }

    #[test]
    fn sessions_are_grouped_once_and_again_only_after_a_binding_or_identity_changed() {
        let g = Gated::default();
        let (a, _qa) = session(1, "alice");
        let (b, _qb) = session(2, "bob");
        let (a2, _qa2) = session(3, "alice");
        let t = bind(&g, &a).expect("made");
        bind(&g, &b);
        bind(&g, &a2);
        let mut r = Roster::default();
        assert!(r.refresh(&t), "built the first time");
        assert_eq!(r.members.iter().map(|m| (m.id, m.group)).collect::<Vec<_>>(), [(1, 0), (2, 1), (3, 0)]);
        assert_eq!(r.groups.len(), 2, "alice's two sessions share one identity");
        assert!(!r.refresh(&t), "nothing changed: kept");

        // Another token of the same user (other timing claims): regrouped, still one identity.
        a2.set_identity(identity("alice"));
        assert!(r.refresh(&t), "a new identity Arc rebuilds");
        assert_eq!(r.groups.len(), 2);
        assert!(!r.refresh(&t));

        // A token for someone else: a third identity.
        a2.set_identity(identity("carol"));
        assert!(r.refresh(&t));
        assert_eq!(r.groups.len(), 3);

        assert!(g.unbind("changes:public.todos", 2));
        assert!(r.refresh(&t), "an unbinding rebuilds");
        assert_eq!(r.members.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 3]);
        let (d, _qd) = session(4, "dave");
        bind(&g, &d);
        assert!(r.refresh(&t), "a binding rebuilds");
        assert_eq!(r.members.len(), 3);
        assert_eq!(r.checked_as[r.members[2].group].claims, identity("dave").claims);
    }
}
