//! What a controller remembers about each of its objects between reconciles (its own recent
//! writes, failure counts), keyed by uid. Entries go when the object leaves the controller's
//! cache, so the memory never grows with objects that came and went.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Per-object memory of type `T`.
pub(crate) struct Memory<T> {
    entries: Mutex<HashMap<String, T>>,
}

impl<T> Default for Memory<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Default> Memory<T> {
    /// Runs `f` on the memory of the object with this uid (created empty when missing).
    pub fn with<R>(&self, uid: &str, f: impl FnOnce(&mut T) -> R) -> R {
        f(self.lock().entry(uid.to_owned()).or_default())
    }
}

impl<T> Memory<T> {
    /// Forgets what the cache tells us is gone.
    pub fn forget(&self, gone: &Gone) {
        let mut entries = self.lock();
        match gone {
            Gone::One(uid) => {
                entries.remove(uid);
            }
            Gone::AllBut(live) => entries.retain(|uid, _| live.contains(uid)),
        }
    }

    /// Objects remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, T>> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
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
}
