//! When each repository is next due for a scheduled scan.
//!
//! A repository is scanned once per interval slot (see
//! [`tagrelay_proto::scan::interval_slot`]). Looking at every repository on
//! every tick to find the few whose slot began would make an idle fleet cost
//! in proportion to its size; this queue is ordered by the time each
//! repository is next due, so a tick costs O(due repositories + log N) and
//! a configuration change O(log N).

use std::collections::{BTreeSet, HashMap};

use tagrelay_proto::config::ObjectKey;
use tagrelay_proto::scan::{interval_slot, slot_start};

/// How one repository is scheduled: its interval and phase (seconds), and
/// the hash of what its scans depend on (a change starts the slots anew).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Seconds between scans.
    pub interval: u64,
    /// The repository's phase within the interval.
    pub offset: u64,
    /// The spec and interval the slots are claimed under.
    pub hash: String,
}

impl Plan {
    /// The claim of slot `slot`: what a scan request is deduplicated by.
    pub fn dedup(&self, slot: u64) -> String {
        format!("slot-{slot}-{}", self.hash)
    }

    fn slot(&self, now: u64) -> u64 {
        interval_slot(now, self.interval, self.offset)
    }
}

#[derive(Debug)]
struct Entry {
    plan: Plan,
    due: u64,
    asked: Option<String>,
}

/// A scan that fell due: queue it, then report it with [`ScanSchedule::asked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The repository.
    pub repository: ObjectKey,
    /// The interval slot the scan is for.
    pub slot: u64,
    /// The slot's claim (see [`Plan::dedup`]).
    pub dedup: String,
}

/// Every scheduled repository, by the second it is next due.
#[derive(Debug, Default)]
pub struct ScanSchedule {
    entries: HashMap<ObjectKey, Entry>,
    queue: BTreeSet<(u64, ObjectKey)>,
}

impl ScanSchedule {
    /// Schedules `repository` by `plan`, or stops scheduling it (`None`:
    /// deleted or suspended). The same plan again changes nothing; a new
    /// plan is due at once unless its current slot was already asked for.
    pub fn plan(&mut self, repository: &ObjectKey, plan: Option<Plan>, now: u64) {
        let Some(plan) = plan else {
            if let Some(entry) = self.entries.remove(repository) {
                self.queue.remove(&(entry.due, repository.clone()));
            }
            return;
        };
        let asked = match self.entries.get(repository) {
            Some(entry) if entry.plan == plan => return,
            Some(entry) => entry.asked.clone(),
            None => None,
        };
        let slot = plan.slot(now);
        let due = if asked.as_deref() == Some(plan.dedup(slot).as_str()) {
            slot_start(slot + 1, plan.interval, plan.offset)
        } else {
            now
        };
        self.place(repository, Entry { plan, due, asked });
    }

    /// The repositories whose next slot has begun by `now`, each with the
    /// slot to ask for; they stay due until reported [`ScanSchedule::asked`].
    pub fn due(&self, now: u64) -> Vec<Due> {
        self.queue
            .range(..(now.saturating_add(1), first_key()))
            .filter_map(|(_, repository)| {
                let entry = self.entries.get(repository)?;
                let slot = entry.plan.slot(now);
                Some(Due {
                    repository: repository.clone(),
                    slot,
                    dedup: entry.plan.dedup(slot),
                })
            })
            .collect()
    }

    /// Records that `due` was queued: the repository is next due when its
    /// following slot begins.
    pub fn asked(&mut self, due: &Due) {
        let Some(entry) = self.entries.remove(&due.repository) else {
            return;
        };
        self.queue.remove(&(entry.due, due.repository.clone()));
        let next = slot_start(due.slot + 1, entry.plan.interval, entry.plan.offset);
        self.place(
            &due.repository,
            Entry {
                due: next,
                asked: Some(due.dedup.clone()),
                plan: entry.plan,
            },
        );
    }

    /// How many repositories are scheduled.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn place(&mut self, repository: &ObjectKey, entry: Entry) {
        if let Some(old) = self.entries.remove(repository) {
            self.queue.remove(&(old.due, repository.clone()));
        }
        self.queue.insert((entry.due, repository.clone()));
        self.entries.insert(repository.clone(), entry);
    }
}

/// The smallest key: `(t, first_key())` bounds every entry due at `t`.
fn first_key() -> ObjectKey {
    ObjectKey::new(tagrelay_proto::config::Kind::ImageRepository, "", "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagrelay_proto::config::Kind;

    fn repository(i: usize) -> ObjectKey {
        ObjectKey::new(Kind::ImageRepository, "team", format!("app-{i}"))
    }

    fn plan(interval: u64, offset: u64, hash: &str) -> Option<Plan> {
        Some(Plan {
            interval,
            offset,
            hash: hash.into(),
        })
    }

    fn ask_all(schedule: &mut ScanSchedule, now: u64) -> Vec<Due> {
        let due = schedule.due(now);
        for d in &due {
            schedule.asked(d);
        }
        due
    }

    #[test]
    fn a_new_repository_is_due_at_once_then_once_per_slot() {
        let mut schedule = ScanSchedule::default();
        schedule.plan(&repository(1), plan(60, 15, "h"), 1_000);
        let first = ask_all(&mut schedule, 1_000);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].slot, interval_slot(1_000, 60, 15));
        // Slot k starts at 60k + 15: 1000 is in slot 16 (975..1035).
        assert_eq!(first[0].dedup, "slot-16-h");
        assert!(
            schedule.due(1_034).is_empty(),
            "asked for this slot already"
        );
        let next = ask_all(&mut schedule, 1_035);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].dedup, "slot-17-h");
    }

    #[test]
    fn a_due_repository_stays_due_until_asked() {
        let mut schedule = ScanSchedule::default();
        schedule.plan(&repository(1), plan(60, 0, "h"), 100);
        assert_eq!(schedule.due(100).len(), 1);
        // Queuing failed: still due on the next tick.
        assert_eq!(schedule.due(101).len(), 1);
    }

    #[test]
    fn the_same_plan_again_changes_nothing_and_a_new_one_is_due_at_once() {
        let mut schedule = ScanSchedule::default();
        schedule.plan(&repository(1), plan(60, 0, "h"), 100);
        ask_all(&mut schedule, 100);
        schedule.plan(&repository(1), plan(60, 0, "h"), 110);
        assert!(schedule.due(110).is_empty());
        schedule.plan(&repository(1), plan(60, 0, "changed"), 110);
        let due = schedule.due(110);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].dedup, "slot-1-changed");
    }

    #[test]
    fn a_removed_repository_is_never_due() {
        let mut schedule = ScanSchedule::default();
        schedule.plan(&repository(1), plan(60, 0, "h"), 100);
        schedule.plan(&repository(1), None, 100);
        assert!(schedule.due(10_000).is_empty());
        assert!(schedule.is_empty());
    }

    #[test]
    fn of_ten_thousand_idle_repositories_only_those_whose_slot_began_are_due() {
        let mut schedule = ScanSchedule::default();
        let start = 300_000;
        for i in 0..10_000 {
            schedule.plan(&repository(i), plan(300, i as u64 % 300, "h"), start);
        }
        assert_eq!(ask_all(&mut schedule, start).len(), 10_000);
        // Ten seconds on, the slots of offsets 1..=10 have begun (offset 0
        // began at `start` itself and is next due 300 s later).
        let due = ask_all(&mut schedule, start + 10);
        let expected = (0..10_000)
            .filter(|i| (1..=10).contains(&(i % 300)))
            .count();
        assert_eq!(due.len(), expected);
        assert!(schedule.due(start + 10).is_empty());
        assert_eq!(schedule.len(), 10_000);
    }
}
