//! When to stop repairing drift: a controller (or a person with a script) that keeps writing a field Git
//! sets would otherwise be fought forever, one write each per change. Pure decisions; the daemon keeps one
//! [`Breaker`] and reports each tripped object once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tether_core::ObjectId;

/// Repairs of one object within [`WINDOW`] after which tether stops fighting over it.
pub const TRIP_AFTER: usize = 3;

/// The window in which [`TRIP_AFTER`] repairs mean a fight, not an occasional hand edit.
pub const WINDOW: Duration = Duration::from_secs(300);

/// Counts recent repairs per object and decides whether the next one may go ahead.
#[derive(Debug, Default)]
pub struct Breaker {
    repairs: HashMap<ObjectId, VecDeque<Instant>>,
    /// Objects tether stopped repairing, with the checksum of the manifest they were fought over.
    open: HashMap<ObjectId, String>,
}

/// What [`Breaker::repaired`] concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An occasional repair: go on repairing this object when it drifts.
    Repairing,
    /// This repair made it [`TRIP_AFTER`] in [`WINDOW`]: stop, and say so (once).
    Tripped,
}

impl Breaker {
    /// True when a drift of `id` (whose manifest has `checksum`) should be repaired now. A new manifest for a
    /// tripped object closes the breaker: the commit may have settled the fight.
    pub fn allows(&mut self, id: &ObjectId, checksum: &str) -> bool {
        match self.open.get(id) {
            Some(c) if c == checksum => false,
            Some(_) => {
                self.open.remove(id);
                self.repairs.remove(id);
                true
            }
            None => true,
        }
    }

    /// Records a repair (a write that set `id` back) at `now`.
    pub fn repaired(&mut self, id: &ObjectId, checksum: &str, now: Instant) -> Verdict {
        let times = self.repairs.entry(id.clone()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > WINDOW)
        {
            times.pop_front();
        }
        times.push_back(now);
        if times.len() >= TRIP_AFTER {
            self.open.insert(id.clone(), checksum.to_owned());
            Verdict::Tripped
        } else {
            Verdict::Repairing
        }
    }

    /// Forgets objects that are no longer in Git (bounded memory over a long-running agent).
    pub fn retain(&mut self, keep: impl Fn(&ObjectId) -> bool) {
        self.repairs.retain(|id, _| keep(id));
        self.open.retain(|id, _| keep(id));
    }
}

/// The field manager that most recently wrote the object, other than tether: who tether is fighting with.
/// `managed` is `metadata.managedFields` as the server returns it.
pub fn other_manager(managed: &[(String, Option<String>)], ours: &str) -> Option<String> {
    managed
        .iter()
        .filter(|(manager, _)| manager != ours)
        .max_by(|a, b| a.1.cmp(&b.1))
        .map(|(manager, _)| manager.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ObjectId {
        ObjectId {
            namespace: Some("a".into()),
            group: "apps".into(),
            kind: "Deployment".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_third_repair_within_the_window_trips_and_stops_repairs_until_the_manifest_changes() {
        let mut b = Breaker::default();
        let t = Instant::now();
        let web = id("web");
        assert!(b.allows(&web, "c1"));
        assert_eq!(b.repaired(&web, "c1", t), Verdict::Repairing);
        assert_eq!(
            b.repaired(&web, "c1", t + Duration::from_secs(10)),
            Verdict::Repairing
        );
        assert_eq!(
            b.repaired(&web, "c1", t + Duration::from_secs(20)),
            Verdict::Tripped
        );
        assert!(!b.allows(&web, "c1"), "tripped: no more repairs");
        assert!(b.allows(&id("other"), "c1"), "other objects are unaffected");
        assert!(
            b.allows(&web, "c2"),
            "a new commit for it closes the breaker"
        );
        assert_eq!(
            b.repaired(&web, "c2", t + Duration::from_secs(30)),
            Verdict::Repairing,
            "and the count starts again"
        );
    }

    #[test]
    fn repairs_spread_beyond_the_window_never_trip() {
        let mut b = Breaker::default();
        let t = Instant::now();
        let web = id("web");
        for i in 0..10u64 {
            assert_eq!(
                b.repaired(
                    &web,
                    "c1",
                    t + WINDOW * i as u32 / 2 + Duration::from_secs(i)
                ),
                Verdict::Repairing
            );
        }
    }

    #[test]
    fn the_other_manager_is_the_latest_writer_that_is_not_tether() {
        let m = |n: &str, t: &str| (n.to_owned(), Some(t.to_owned()));
        let managed = vec![
            m("tether", "2026-12-01T10:00:05Z"),
            m("kubectl-edit", "2026-12-01T10:00:01Z"),
            m("autoscaler", "2026-12-01T10:00:03Z"),
        ];
        assert_eq!(
            other_manager(&managed, "tether").as_deref(),
            Some("autoscaler")
        );
        assert_eq!(other_manager(&managed[..1], "tether"), None);
    }
}
