//! The request log: every mutating request the API server answered, in arrival order, so tests
//! can assert the exact writes a controller made. A request takes its place when it arrives and
//! is filled in once answered, so a write caused by another one's effect (a pod the ReplicaSet
//! simulator creates after an eviction) is always logged after it.

use super::faults::Verb;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub time: SystemTime,
    pub verb: Verb,
    pub group: String,
    pub version: String,
    /// The plural resource name (`rollouts`).
    pub resource: String,
    pub namespace: Option<String>,
    /// The object's name: from the path, or for a create the name the server gave it.
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// `json`, `merge`, `strategic` or `apply` for patches.
    pub patch_type: Option<String>,
    pub field_manager: Option<String>,
    /// The request body as JSON (YAML apply bodies are converted).
    pub body: Option<Value>,
    /// The HTTP status the server answered with.
    pub code: u16,
    /// The object as the write left it (the server's answer), when the write was applied and
    /// answered with an object: what invariant checks replay. A write the server applied and
    /// then answered with an error (an injected `500` after apply) still has it.
    pub object: Option<Value>,
}

impl LoggedRequest {
    /// `patch rollouts/status default/web` — a compact form for assertion messages.
    pub fn summary(&self) -> String {
        let resource = match &self.subresource {
            Some(sub) => format!("{}/{}", self.resource, sub),
            None => self.resource.clone(),
        };
        let object = match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => format!("{ns}/{name}"),
            (None, Some(name)) => name.clone(),
            (Some(ns), None) => format!("{ns}/*"),
            (None, None) => "*".to_owned(),
        };
        format!("{} {} {} -> {}", self.verb, resource, object, self.code)
    }

    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// A successful write to a resource, by plural name (`rollouts`) or `plural/subresource`
    /// (`rollouts/status`, which then matches only that subresource).
    pub fn is_write_to(&self, resource: &str) -> bool {
        let (plural, sub) = match resource.split_once('/') {
            Some((p, s)) => (p, Some(s)),
            None => (resource, None),
        };
        self.succeeded()
            && self.resource == plural
            && sub.is_none_or(|s| self.subresource.as_deref() == Some(s))
    }

    /// A successful write to one object (any subresource).
    pub fn is_write_to_object(&self, resource: &str, namespace: Option<&str>, name: &str) -> bool {
        self.succeeded()
            && self.resource == resource
            && self.namespace.as_deref() == namespace
            && self.name.as_deref() == Some(name)
    }
}

#[derive(Debug, Default)]
struct Entries {
    /// In arrival order; `None` while the request is still being answered.
    kept: VecDeque<Option<LoggedRequest>>,
    /// Entries recorded before the oldest kept one (dropped by the limit or `clear`).
    dropped: usize,
    /// Most entries kept; `None` keeps everything.
    limit: Option<usize>,
}

/// A request's place in the log, taken on arrival.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogSlot(usize);

/// Shared, append-only log; clones see the same entries.
#[derive(Clone, Debug, Default)]
pub struct RequestLog {
    entries: Arc<Mutex<Entries>>,
}

impl RequestLog {
    /// A log keeping at most `limit` entries (the oldest go first); `None` keeps everything.
    pub(crate) fn with_limit(limit: Option<usize>) -> Self {
        RequestLog {
            entries: Arc::new(Mutex::new(Entries {
                limit,
                ..Entries::default()
            })),
        }
    }

    #[cfg(test)]
    pub(crate) fn record(&self, entry: LoggedRequest) {
        let slot = self.reserve();
        self.fill(slot, entry);
    }

    /// Takes the next place in the log for a request that just arrived.
    pub(crate) fn reserve(&self) -> LogSlot {
        let mut entries = self.lock();
        entries.kept.push_back(None);
        let slot = LogSlot(entries.dropped + entries.kept.len() - 1);
        while entries
            .limit
            .is_some_and(|limit| entries.kept.len() > limit)
        {
            entries.kept.pop_front();
            entries.dropped += 1;
        }
        slot
    }

    /// Records the answered request in the place it took on arrival (unless the limit or
    /// `clear` dropped that place meanwhile).
    pub(crate) fn fill(&self, slot: LogSlot, entry: LoggedRequest) {
        let mut entries = self.lock();
        let Some(index) = slot.0.checked_sub(entries.dropped) else {
            return;
        };
        if let Some(place) = entries.kept.get_mut(index) {
            *place = Some(entry);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A snapshot of every entry kept so far.
    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.lock().kept.iter().flatten().cloned().collect()
    }

    /// How many requests ever arrived: a checkpoint for [`RequestLog::since`] (a request still
    /// being answered counts, and is not part of what `since` returns for a later checkpoint).
    pub fn len(&self) -> usize {
        let entries = self.lock();
        entries.dropped + entries.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the entries so far (`len()` keeps counting them).
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.dropped += entries.kept.len();
        entries.kept.clear();
    }

    pub fn filter(&self, keep: impl Fn(&LoggedRequest) -> bool) -> Vec<LoggedRequest> {
        self.lock()
            .kept
            .iter()
            .flatten()
            .filter(|e| keep(e))
            .cloned()
            .collect()
    }

    /// Successful writes to a resource: see [`LoggedRequest::is_write_to`].
    pub fn writes_to(&self, resource: &str) -> Vec<LoggedRequest> {
        self.filter(|e| e.is_write_to(resource))
    }

    /// Successful writes to one object (any subresource).
    pub fn writes_to_object(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Vec<LoggedRequest> {
        self.filter(|e| e.is_write_to_object(resource, namespace, name))
    }

    /// Like [`RequestLog::since`], once every request that had arrived when it was called has
    /// been answered (waiting at most `within`). A request's effect can be visible to another
    /// client a moment before its entry is filled in; a caller that saw the effect and then
    /// reads the log wants the entry too. Blocks the calling thread while it waits.
    pub fn since_settled(&self, n: usize, within: std::time::Duration) -> Vec<LoggedRequest> {
        let until = self.len();
        let deadline = std::time::Instant::now() + within;
        loop {
            let pending = {
                let entries = self.lock();
                let from = n.saturating_sub(entries.dropped);
                let to = until.saturating_sub(entries.dropped);
                entries.kept.iter().take(to).skip(from).any(Option::is_none)
            };
            if !pending || std::time::Instant::now() >= deadline {
                return self.since(n);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Entries after the first `n`: what happened since a checkpoint taken with `len()`.
    pub fn since(&self, n: usize) -> Vec<LoggedRequest> {
        let entries = self.lock();
        entries
            .kept
            .iter()
            .skip(n.saturating_sub(entries.dropped))
            .flatten()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn settled_reads_wait_for_requests_still_being_answered() {
        let log = RequestLog::default();
        let slot = log.reserve();
        let filler = log.clone();
        let answer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            filler.fill(slot, entry("a", "pods", None, 200));
        });
        assert_eq!(log.since(0).len(), 0, "not answered yet");
        let settled = log.since_settled(0, std::time::Duration::from_secs(5));
        assert_eq!(settled.len(), 1, "waited for the answer");
        answer.join().expect("the answering thread ends");
        // A request that never gets its answer only costs the wait.
        let _pending = log.reserve();
        let started = std::time::Instant::now();
        assert_eq!(
            log.since_settled(0, std::time::Duration::from_millis(30))
                .len(),
            1
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(30));
    }

    use super::*;

    fn entry(name: &str, resource: &str, subresource: Option<&str>, code: u16) -> LoggedRequest {
        LoggedRequest {
            time: SystemTime::now(),
            verb: Verb::Patch,
            group: String::new(),
            version: "v1".into(),
            resource: resource.into(),
            namespace: Some("default".into()),
            name: Some(name.into()),
            subresource: subresource.map(str::to_owned),
            patch_type: Some("merge".into()),
            field_manager: None,
            body: None,
            code,
            object: None,
        }
    }

    #[test]
    fn writes_to_filters_by_resource_subresource_and_success() {
        let log = RequestLog::default();
        log.record(entry("a", "rollouts", None, 200));
        log.record(entry("a", "rollouts", Some("status"), 200));
        log.record(entry("b", "rollouts", None, 409));
        log.record(entry("c", "services", None, 200));
        assert_eq!(log.writes_to("rollouts").len(), 2);
        assert_eq!(log.writes_to("rollouts/status").len(), 1);
        assert_eq!(
            log.writes_to_object("rollouts", Some("default"), "b").len(),
            0
        );
        assert_eq!(
            log.entries()[2].summary(),
            "patch rollouts default/b -> 409"
        );
    }

    #[test]
    fn requests_keep_their_arrival_place_whenever_they_are_answered() {
        let log = RequestLog::default();
        let first = log.reserve();
        let second = log.reserve();
        let checkpoint = log.len();
        let third = log.reserve();
        // Answered out of order: the second, caused by the first's effect, finishes first.
        log.fill(second, entry("b", "pods", None, 201));
        assert_eq!(log.entries().len(), 1, "an unanswered request is not shown");
        log.fill(third, entry("c", "pods", None, 201));
        log.fill(first, entry("a", "pods", Some("eviction"), 201));
        let names: Vec<_> = log.entries().into_iter().filter_map(|e| e.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let after: Vec<_> = log
            .since(checkpoint)
            .into_iter()
            .filter_map(|e| e.name)
            .collect();
        assert_eq!(after, ["c"]);
    }

    #[test]
    fn a_limited_log_keeps_the_newest_and_checkpoints_stay_valid() {
        let log = RequestLog::with_limit(Some(2));
        log.record(entry("a", "pods", None, 200));
        let checkpoint = log.len();
        log.record(entry("b", "pods", None, 200));
        log.record(entry("c", "pods", None, 200));
        assert_eq!(log.len(), 3);
        let names: Vec<_> = log
            .since(checkpoint)
            .into_iter()
            .filter_map(|e| e.name)
            .collect();
        assert_eq!(names, ["b", "c"]);
        log.clear();
        assert!(log.entries().is_empty());
        assert_eq!(log.since(checkpoint).len(), 0);
        assert_eq!(log.len(), 3);
    }
}
