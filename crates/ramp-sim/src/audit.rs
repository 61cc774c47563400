//! A real kube-apiserver's audit log (JSON lines, one `audit.k8s.io/v1` Event each) read as the
//! sim's request log: the writes to one namespace, in the order the server answered them, as
//! [`LoggedRequest`]s, so that a test asserts the same sequence of writes on either tier; and
//! the requests the authorizer refused one user, as the sim's [`DeniedRequest`]s.
//! Reads the file; knows nothing of the server that writes it.
//! The audit policy `scripts/cluster up` writes logs every write but events, and the reads of
//! service accounts outside kube-system (at Metadata level, so their denials show); reads never
//! reach the request log.

use crate::{DeniedRequest, LoggedRequest, Verb};
use serde_json::Value;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// One audit event as a request-log entry, or `None` for what the sim's log never holds
/// (reads, events the server makes itself).
pub fn logged_request(event: &Value) -> Option<LoggedRequest> {
    let verb = match event["verb"].as_str()? {
        "create" => Verb::Create,
        "update" => Verb::Update,
        "patch" | "apply" => Verb::Patch,
        "delete" => Verb::Delete,
        "deletecollection" => Verb::DeleteCollection,
        _ => return None,
    };
    let object = &event["objectRef"];
    let uri = event["requestURI"].as_str().unwrap_or_default();
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let param = |key: &str| {
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    };
    let body = event.get("requestObject").cloned();
    let patch_type = (verb == Verb::Patch).then(|| {
        if event["verb"] == "apply" {
            "apply"
        } else {
            match &body {
                Some(Value::Array(_)) => "json",
                // An apply body names its kind; merge and strategic patches of ours never do.
                Some(Value::Object(fields))
                    if fields.contains_key("apiVersion") && fields.contains_key("kind") =>
                {
                    "apply"
                }
                _ => "merge",
            }
        }
        .to_string()
    });
    let name = object["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .or_else(|| event["responseObject"]["metadata"]["name"].as_str())
        .map(str::to_string);
    let code = event["responseStatus"]["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(0);
    Some(LoggedRequest {
        time: event_time(event),
        verb,
        group: object["apiGroup"].as_str().unwrap_or_default().to_string(),
        version: object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        resource: object["resource"].as_str().unwrap_or_default().to_string(),
        namespace: object["namespace"].as_str().map(str::to_string),
        name,
        subresource: object["subresource"].as_str().map(str::to_string),
        patch_type,
        field_manager: param("fieldManager"),
        body,
        code,
        object: (200..300)
            .contains(&code)
            .then(|| event["responseObject"].clone())
            .filter(|o| o.get("metadata").is_some() && o["kind"] != "Status"),
    })
}

/// The request an audit event records as refused by the authorizer, or `None`. The server marks
/// its decision in the `authorization.k8s.io/decision` annotation; an event without one (a
/// policy level below Metadata) counts when it was answered 403. A 403 from admission (a quota,
/// a terminating namespace) is not a denial: its decision is `allow`. Verbs the sim does not
/// model (`proxy`, `impersonate`, ...) are left out; a non-resource URL has an empty resource
/// and its path as the name.
pub fn denied_request(event: &Value) -> Option<DeniedRequest> {
    let code = event["responseStatus"]["code"].as_u64();
    let denied = match event["annotations"]["authorization.k8s.io/decision"].as_str() {
        Some(decision) => decision == "forbid",
        None => code == Some(403),
    };
    if !denied {
        return None;
    }
    let verb = match event["verb"].as_str()? {
        "get" => Verb::Get,
        "list" => Verb::List,
        "watch" => Verb::Watch,
        "create" => Verb::Create,
        "update" => Verb::Update,
        "patch" | "apply" => Verb::Patch,
        "delete" => Verb::Delete,
        "deletecollection" => Verb::DeleteCollection,
        _ => return None,
    };
    let object = &event["objectRef"];
    let text = |value: &Value| value.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let name = if object.is_object() {
        text(&object["name"])
    } else {
        let uri = event["requestURI"].as_str().unwrap_or_default();
        Some(
            uri.split_once('?')
                .map_or(uri, |(path, _)| path)
                .to_string(),
        )
    };
    let message = text(&event["responseStatus"]["message"])
        .or_else(|| text(&event["annotations"]["authorization.k8s.io/reason"]))
        .unwrap_or_default();
    Some(DeniedRequest {
        time: event_time(event),
        user: event["user"]["username"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        verb,
        group: object["apiGroup"].as_str().unwrap_or_default().to_string(),
        resource: object["resource"].as_str().unwrap_or_default().to_string(),
        subresource: text(&object["subresource"]),
        namespace: text(&object["namespace"]),
        name,
        message,
    })
}

fn event_time(event: &Value) -> SystemTime {
    event["stageTimestamp"]
        .as_str()
        .and_then(parse_rfc3339)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `2026-12-07T17:31:21.123456Z` as a time; `None` for anything else.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let (date, rest) = text.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let rest = rest.strip_suffix('Z')?;
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, "0"));
    let mut hms = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (hms.next()??, hms.next()??, hms.next()??);
    let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + min * 60 + s).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// What was kept of a live log so far.
#[derive(Debug)]
struct Read<T> {
    /// Bytes of the file consumed so far (whole lines only).
    offset: u64,
    kept: Vec<T>,
}

/// A live audit log read on demand from where it ended when followed: each request once (its
/// `ResponseComplete` stage), kept when `keep` maps it to a `T`. Clones share what was read.
#[derive(Debug)]
struct Tail<T> {
    path: PathBuf,
    read: Arc<Mutex<Read<T>>>,
}

impl<T> Clone for Tail<T> {
    fn clone(&self) -> Self {
        Tail {
            path: self.path.clone(),
            read: Arc::clone(&self.read),
        }
    }
}

impl<T: Clone> Tail<T> {
    fn follow(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Tail {
            path: path.to_path_buf(),
            read: Arc::new(Mutex::new(Read {
                offset,
                kept: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Read<T>> {
        self.read
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads whatever whole lines were appended since the last call; returns how many bytes.
    fn catch_up(&self, keep: impl Fn(&Value) -> Option<T>) -> u64 {
        let mut read = self.lock();
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return 0;
        };
        if file.seek(SeekFrom::Start(read.offset)).is_err() {
            return 0;
        }
        let mut reader = BufReader::new(file);
        let mut consumed = 0;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                // A line still being written: read it whole next time.
                Ok(_) if !line.ends_with('\n') => break,
                Ok(n) => consumed += n as u64,
            }
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["stage"] != "ResponseComplete" {
                continue;
            }
            if let Some(kept) = keep(&event) {
                read.kept.push(kept);
            }
        }
        read.offset += consumed;
        consumed
    }

    fn since(&self, n: usize) -> Vec<T> {
        self.lock().kept.iter().skip(n).cloned().collect()
    }

    /// Catches up until the log has stopped growing for a moment (at most `within`): the
    /// server writes an event as it answers, so an effect a client saw may be a moment ahead
    /// of its line. Blocks the calling thread while it waits.
    fn settle(&self, within: Duration, keep: impl Fn(&Value) -> Option<T>) {
        let deadline = Instant::now() + within;
        let mut quiet_since = Instant::now();
        loop {
            if self.catch_up(&keep) > 0 {
                quiet_since = Instant::now();
            }
            let now = Instant::now();
            if now.duration_since(quiet_since) >= Duration::from_millis(150) || now >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The writes to one namespace in a live audit log, read on demand. Clones share what was read.
#[derive(Clone, Debug)]
pub struct AuditLog {
    namespace: String,
    tail: Tail<Committed>,
}

/// A logged write and the resourceVersion it committed at, when its response names one.
type Committed = (Option<u64>, LoggedRequest);

/// The revision a write committed at: the resourceVersion of the object it answered with
/// (etcd's revisions order every write to every resource). `None` for a failed write, and for
/// a delete, whose answer shows the object as it was.
fn committed_revision(event: &Value, request: &LoggedRequest) -> Option<u64> {
    if request.verb == Verb::Delete || request.verb == Verb::DeleteCollection {
        return None;
    }
    event["responseObject"]["metadata"]["resourceVersion"]
        .as_str()?
        .parse()
        .ok()
}

/// The writes in the order the server committed them. The server writes an audit line as it
/// answers, so two writes that race (a controller's patch made on a watch event, and the
/// write that caused that event, still being answered) may be logged the other way round.
/// Writes with a revision are put in revision order among the places they hold; the others
/// (failed writes, deletes, writes that changed nothing) stay where they were logged.
fn commit_order(mut entries: Vec<Committed>) -> Vec<LoggedRequest> {
    // A write that changed nothing answers with the revision the object already had: it
    // committed nothing, and stays where it was logged.
    let mut last: std::collections::HashMap<(String, Option<String>, Option<String>), u64> =
        std::collections::HashMap::new();
    for (revision, e) in &mut entries {
        if let Some(r) = *revision {
            let key = (e.resource.clone(), e.namespace.clone(), e.name.clone());
            match last.get(&key) {
                Some(&seen) if r <= seen => *revision = None,
                _ => {
                    last.insert(key, r);
                }
            }
        }
    }
    let slots: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, (revision, _))| revision.is_some())
        .map(|(i, _)| i)
        .collect();
    let mut committed: Vec<(u64, LoggedRequest)> = entries
        .iter()
        .filter_map(|(revision, e)| revision.map(|r| (r, e.clone())))
        .collect();
    committed.sort_by_key(|(revision, _)| *revision);
    let mut ordered: Vec<LoggedRequest> = entries.into_iter().map(|(_, e)| e).collect();
    for (slot, (_, entry)) in slots.into_iter().zip(committed) {
        ordered[slot] = entry;
    }
    ordered
}

impl AuditLog {
    /// The log at `path`, from its current end on, keeping the writes to `namespace`: the
    /// test's and the controller's, and the cluster's own (kube-controller-manager's,
    /// the scheduler's, the fake kubelet's), as the sim logs its simulators' writes.
    pub fn follow(path: &Path, namespace: &str) -> Self {
        AuditLog {
            namespace: namespace.to_string(),
            tail: Tail::follow(path),
        }
    }

    fn keep(&self, event: &Value) -> Option<Committed> {
        let request = logged_request(event)
            .filter(|e| e.namespace.as_deref() == Some(self.namespace.as_str()))?;
        Some((committed_revision(event, &request), request))
    }

    fn catch_up(&self) -> u64 {
        self.tail.catch_up(|event| self.keep(event))
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.since(0)
    }

    /// How many writes were logged so far: a checkpoint for [`AuditLog::since`].
    pub fn len(&self) -> usize {
        self.catch_up();
        self.tail.lock().kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn filter(&self, keep: impl Fn(&LoggedRequest) -> bool) -> Vec<LoggedRequest> {
        self.entries().into_iter().filter(|e| keep(e)).collect()
    }

    /// Entries after the first `n` logged, in the order they were committed (see
    /// [`commit_order`]).
    pub fn since(&self, n: usize) -> Vec<LoggedRequest> {
        self.catch_up();
        commit_order(self.tail.since(n))
    }

    /// Like [`AuditLog::since`], once the log has stopped growing for a moment (at most
    /// `within`). Blocks the calling thread while it waits.
    pub fn since_settled(&self, n: usize, within: Duration) -> Vec<LoggedRequest> {
        self.tail.settle(within, |event| self.keep(event));
        commit_order(self.tail.since(n))
    }
}

/// The requests the authorizer refused one user (any namespace, reads included), in a live
/// audit log from where it ended when followed: what the sim's
/// [`SimHandle::denied_requests`](crate::SimHandle::denied_requests) holds for that user.
/// Clones share what was read.
#[derive(Clone, Debug)]
pub struct AuditDenials {
    user: String,
    tail: Tail<DeniedRequest>,
}

impl AuditDenials {
    /// The log at `path`, from its current end on, keeping the denials of `user` (e.g.
    /// `system:serviceaccount:<namespace>:<name>`).
    pub fn follow(path: &Path, user: &str) -> Self {
        AuditDenials {
            user: user.to_string(),
            tail: Tail::follow(path),
        }
    }

    fn keep(&self, event: &Value) -> Option<DeniedRequest> {
        denied_request(event).filter(|d| d.user == self.user)
    }

    /// The denials logged so far.
    pub fn entries(&self) -> Vec<DeniedRequest> {
        self.tail.catch_up(|event| self.keep(event));
        self.tail.since(0)
    }

    /// The denials, once the log has stopped growing for a moment (at most `within`). Blocks
    /// the calling thread while it waits.
    pub fn settled(&self, within: Duration) -> Vec<DeniedRequest> {
        self.tail.settle(within, |event| self.keep(event));
        self.tail.since(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_logged_out_of_order_are_read_in_commit_order() {
        let write = |verb: Verb, name: &str| LoggedRequest {
            time: SystemTime::UNIX_EPOCH,
            verb,
            group: String::new(),
            version: "v1".into(),
            resource: "services".into(),
            namespace: Some("t1".into()),
            name: Some(name.into()),
            subresource: None,
            patch_type: None,
            field_manager: None,
            body: None,
            code: 200,
            object: None,
        };
        // Logged: a (rev 5), c (rev 9), a delete, b (rev 7), a refused write, d (rev 10).
        let logged = vec![
            (Some(5), write(Verb::Patch, "a")),
            (Some(9), write(Verb::Patch, "c")),
            (None, write(Verb::Delete, "gone")),
            (Some(7), write(Verb::Patch, "b")),
            (None, write(Verb::Patch, "refused")),
            (Some(10), write(Verb::Create, "d")),
            // A no-op patch of a answers with a's revision: it stays where it was logged.
            (Some(5), write(Verb::Patch, "a")),
        ];
        let names: Vec<String> = commit_order(logged)
            .into_iter()
            .map(|e| e.name.unwrap_or_default())
            .collect();
        assert_eq!(names, ["a", "b", "gone", "c", "refused", "d", "a"]);
    }

    #[test]
    fn a_write_commits_at_its_answers_revision_but_a_delete_has_none() {
        let event = |verb: &str| {
            json!({"stage": "ResponseComplete", "verb": verb,
                "objectRef": {"resource": "services", "namespace": "t1", "name": "a", "apiVersion": "v1"},
                "responseStatus": {"code": 200},
                "responseObject": {"metadata": {"name": "a", "resourceVersion": "42"}}})
        };
        let patch = event("patch");
        let request = logged_request(&patch).unwrap();
        assert_eq!(committed_revision(&patch, &request), Some(42));
        let delete = event("delete");
        let request = logged_request(&delete).unwrap();
        assert_eq!(committed_revision(&delete, &request), None);
    }

    fn event(verb: &str, user: &str, body: Value) -> Value {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "stage": "ResponseComplete", "verb": verb,
            "requestURI": "/apis/networking.istio.io/v1alpha3/namespaces/t1/virtualservices/web?fieldManager=ramp",
            "user": {"username": user},
            "objectRef": {"resource": "virtualservices", "namespace": "t1", "name": "web",
                          "apiGroup": "networking.istio.io", "apiVersion": "v1alpha3"},
            "responseStatus": {"code": 200},
            "requestObject": body,
            "stageTimestamp": "2026-12-07T17:31:21.250000Z"
        })
    }

    #[test]
    fn a_patch_event_reads_as_the_sims_entry() {
        let entry = logged_request(&event(
            "patch",
            "ramp-admin",
            json!([{"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 20}]),
        ))
        .unwrap();
        assert_eq!(entry.summary(), "patch virtualservices t1/web -> 200");
        assert_eq!(entry.patch_type.as_deref(), Some("json"));
        assert_eq!(entry.field_manager.as_deref(), Some("ramp"));
        assert_eq!(entry.version, "v1alpha3");
        assert!(entry.succeeded());
        let since_epoch = entry.time.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(since_epoch.as_millis(), 1_796_664_681_250);
    }

    #[test]
    fn merge_and_apply_bodies_are_told_apart() {
        let merge = logged_request(&event("patch", "u", json!({"spec": {"paused": true}})));
        assert_eq!(merge.unwrap().patch_type.as_deref(), Some("merge"));
        let apply = logged_request(&event(
            "patch",
            "u",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}),
        ));
        assert_eq!(apply.unwrap().patch_type.as_deref(), Some("apply"));
        assert!(logged_request(&event("get", "u", Value::Null)).is_none());
    }

    /// A request the RBAC authorizer refused, as the real server logs it at Metadata level.
    fn forbidden(verb: &str, user: &str, object: Value) -> Value {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "stage": "ResponseComplete", "verb": verb,
            "requestURI": "/api/v1/namespaces/t1/secrets?limit=500",
            "user": {"username": user, "groups": ["system:serviceaccounts", "system:authenticated"]},
            "objectRef": object,
            "responseStatus": {"metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
                               "message": "secrets is forbidden: User \"u\" cannot list resource \"secrets\" in API group \"\" in the namespace \"t1\""},
            "annotations": {"authorization.k8s.io/decision": "forbid",
                            "authorization.k8s.io/reason": ""},
            "stageTimestamp": "2026-12-07T17:31:21.250000Z"
        })
    }

    #[test]
    fn reads_logged_at_metadata_level_are_not_request_log_entries() {
        for verb in ["get", "list", "watch"] {
            let mut read = forbidden(
                verb,
                "u",
                json!({"resource": "secrets", "namespace": "t1", "apiVersion": "v1"}),
            );
            read["responseStatus"] = json!({"metadata": {}, "code": 200});
            read["annotations"]["authorization.k8s.io/decision"] = json!("allow");
            assert!(logged_request(&read).is_none(), "{verb}");
            assert!(denied_request(&read).is_none(), "{verb}");
        }
    }

    #[test]
    fn a_forbidden_event_reads_as_the_sims_denial() {
        let denial = denied_request(&forbidden(
            "list",
            "system:serviceaccount:t1:ramp",
            json!({"resource": "secrets", "namespace": "t1", "apiVersion": "v1"}),
        ))
        .unwrap();
        assert_eq!(denial.user, "system:serviceaccount:t1:ramp");
        assert_eq!(denial.verb, Verb::List);
        assert_eq!(
            (denial.group.as_str(), denial.resource.as_str()),
            ("", "secrets")
        );
        assert_eq!(denial.namespace.as_deref(), Some("t1"));
        assert_eq!(denial.name, None);
        assert!(
            denial.message.starts_with("secrets is forbidden"),
            "{}",
            denial.message
        );

        let status = denied_request(&forbidden(
            "patch",
            "u",
            json!({"resource": "rollouts", "subresource": "status", "namespace": "t1",
                   "name": "web", "apiGroup": "argoproj.io", "apiVersion": "v1alpha1"}),
        ))
        .unwrap();
        assert_eq!(status.verb, Verb::Patch);
        assert_eq!(status.subresource.as_deref(), Some("status"));
        assert_eq!(status.name.as_deref(), Some("web"));

        // A non-resource URL names its path.
        let mut discovery = forbidden("get", "u", Value::Null);
        discovery.as_object_mut().unwrap().remove("objectRef");
        discovery["requestURI"] = json!("/metrics?x=1");
        let denial = denied_request(&discovery).unwrap();
        assert_eq!(
            (denial.resource.as_str(), denial.name.as_deref()),
            ("", Some("/metrics"))
        );
    }

    #[test]
    fn a_403_from_admission_is_not_a_denial() {
        let mut quota = forbidden(
            "create",
            "u",
            json!({"resource": "pods", "namespace": "t1", "apiVersion": "v1"}),
        );
        quota["annotations"]["authorization.k8s.io/decision"] = json!("allow");
        assert!(denied_request(&quota).is_none());
        // Without the annotation (a level below Metadata), the status code decides.
        quota.as_object_mut().unwrap().remove("annotations");
        assert!(denied_request(&quota).is_some());
    }

    #[test]
    fn denials_are_followed_for_one_user() {
        let dir = std::env::temp_dir().join(format!("ramp-audit-denials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let secrets = json!({"resource": "secrets", "namespace": "t1", "apiVersion": "v1"});
        std::fs::write(
            &path,
            format!("{}\n", forbidden("list", "sa", secrets.clone())),
        )
        .unwrap();
        let denials = AuditDenials::follow(&path, "sa");
        assert!(
            denials.entries().is_empty(),
            "what was there before is not followed"
        );
        let mut text = std::fs::read_to_string(&path).unwrap();
        for line in [
            forbidden("get", "sa", secrets.clone()),
            forbidden("get", "someone-else", secrets.clone()),
            event("update", "sa", json!({})),
            forbidden("delete", "sa", secrets),
        ] {
            text.push_str(&format!("{line}\n"));
        }
        std::fs::write(&path, text).unwrap();
        let verbs: Vec<Verb> = denials
            .settled(Duration::from_secs(2))
            .iter()
            .map(|d| d.verb)
            .collect();
        assert_eq!(verbs, [Verb::Get, Verb::Delete]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_log_keeps_one_namespaces_writes_in_order() {
        let dir = std::env::temp_dir().join(format!("ramp-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        std::fs::write(&path, format!("{}\n", event("create", "u", json!({})))).unwrap();
        let log = AuditLog::follow(&path, "t1");
        assert_eq!(log.len(), 0, "what was there before is not followed");
        let mut other_ns = event("update", "u", json!({}));
        other_ns["objectRef"]["namespace"] = json!("t2");
        let lines = [
            event("update", "ramp-admin", json!({})),
            other_ns,
            event(
                "update",
                "system:serviceaccount:kube-system:replicaset-controller",
                json!({}),
            ),
            event("delete", "ramp-admin", Value::Null),
        ];
        let mut text = std::fs::read_to_string(&path).unwrap();
        for line in &lines {
            text.push_str(&format!("{line}\n"));
        }
        text.push_str("{\"partial");
        std::fs::write(&path, text).unwrap();
        let verbs: Vec<Verb> = log.entries().iter().map(|e| e.verb).collect();
        assert_eq!(verbs, [Verb::Update, Verb::Update, Verb::Delete]);
        assert_eq!(log.since(2).len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
