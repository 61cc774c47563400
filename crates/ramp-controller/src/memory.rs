//! What a controller remembers about each of its objects between reconciles (its own recent
//! writes, failure counts), keyed by uid. Entries go when the object leaves the controller's
//! cache, so the memory never grows with objects that came and went.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a deleted object's uid is remembered as deleted: longer than any reconcile that
/// was already running when the deletion arrived (uids are never reused, so a stale tombstone
/// can never hide a new object).
const TOMBSTONE_TTL: Duration = Duration::from_secs(600);

/// Per-object memory of type `T`.
pub(crate) struct Memory<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    entries: HashMap<String, T>,
    /// Deleted objects, with when: a reconcile or an error handler still running for one must
    /// not bring its entry back after it was forgotten.
    tombstones: HashMap<String, Instant>,
}

impl<T> Default for Memory<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                entries: HashMap::new(),
                tombstones: HashMap::new(),
            }),
        }
    }
}

impl<T: Default> Memory<T> {
    /// Runs `f` on the memory of the object with this uid (created empty when missing). For a
    /// deleted object `f` gets a scratch entry that is not kept.
    pub fn with<R>(&self, uid: &str, f: impl FnOnce(&mut T) -> R) -> R {
        let mut state = self.lock();
        if state.tombstones.contains_key(uid) {
            return f(&mut T::default());
        }
        f(state.entries.entry(uid.to_owned()).or_default())
    }
}

impl<T> Memory<T> {
    /// Forgets what the cache tells us is gone.
    pub fn forget(&self, gone: &Gone) {
        self.forget_at(gone, Instant::now());
    }

    fn forget_at(&self, gone: &Gone, now: Instant) {
        let mut state = self.lock();
        match gone {
            Gone::One(uid) => {
                state.entries.remove(uid);
                state
                    .tombstones
                    .retain(|_, at| now.saturating_duration_since(*at) < TOMBSTONE_TTL);
                state.tombstones.insert(uid.clone(), now);
            }
            Gone::AllBut(live) => state.entries.retain(|uid, _| live.contains(uid)),
        }
    }

    /// Objects remembered.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What left a controller's cache: one deleted object, or, after a (re)list, every object but
/// the listed ones (a list replaces the cache without a delete event per missing object).
#[derive(Debug)]
pub enum Gone {
    One(String),
    AllBut(HashSet<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_object_and_objects_missing_from_a_relist_are_forgotten() {
        let memory = Memory::<u32>::default();
        for uid in ["a", "b", "c"] {
            memory.with(uid, |m| *m += 1);
        }
        memory.forget(&Gone::One("a".to_owned()));
        assert_eq!(memory.len(), 2);
        memory.forget(&Gone::AllBut(HashSet::from(["c".to_owned()])));
        assert_eq!(memory.len(), 1);
        assert_eq!(memory.with("c", |m| *m), 1, "what stays is kept as it was");
    }

    #[test]
    fn a_reconcile_finishing_after_the_deletion_does_not_bring_the_entry_back() {
        let memory = Memory::<u32>::default();
        memory.with("a", |m| *m = 3);
        let deleted_at = Instant::now();
        memory.forget_at(&Gone::One("a".to_owned()), deleted_at);
        assert_eq!(memory.with("a", |m| std::mem::replace(m, 7)), 0);
        assert_eq!(
            memory.len(),
            0,
            "a late write to a deleted object's memory is not kept"
        );

        // Tombstones expire with the next deletion after their time to live.
        let later = deleted_at + TOMBSTONE_TTL + Duration::from_secs(1);
        memory.forget_at(&Gone::One("b".to_owned()), later);
        let tombstones: Vec<String> = memory.lock().tombstones.keys().cloned().collect();
        assert_eq!(tombstones, ["b"]);
    }
}
