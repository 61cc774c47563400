//! A real kube-apiserver's audit log (JSON lines, one `audit.k8s.io/v1` Event each) read as the
//! sim's request log: the writes to one namespace, in the order the server answered them, as
//! [`LoggedRequest`]s, so that a test asserts the same sequence of writes on either tier.
//! Reads the file; knows nothing of the server that writes it.
//! The audit policy `scripts/cluster up` writes logs every write but events.

use crate::{LoggedRequest, Verb};
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
    let time = event["stageTimestamp"]
        .as_str()
        .and_then(parse_rfc3339)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Some(LoggedRequest {
        time,
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
        code: event["responseStatus"]["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(0),
    })
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

#[derive(Debug, Default)]
struct Read {
    /// Bytes of the file consumed so far (whole lines only).
    offset: u64,
    entries: Vec<LoggedRequest>,
}

/// The writes to one namespace in a live audit log, read on demand. Clones share what was read.
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
    namespace: String,
    read: Arc<Mutex<Read>>,
}

impl AuditLog {
    /// The log at `path`, from its current end on, keeping the writes to `namespace`: the
    /// test's and the controller's, and the cluster's own (kube-controller-manager's,
    /// the scheduler's, the fake kubelet's), as the sim logs its simulators' writes.
    pub fn follow(path: &Path, namespace: &str) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        AuditLog {
            path: path.to_path_buf(),
            namespace: namespace.to_string(),
            read: Arc::new(Mutex::new(Read {
                offset,
                entries: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Read> {
        self.read
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads whatever whole lines were appended since the last call; returns how many bytes.
    fn catch_up(&self) -> u64 {
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
            if let Some(entry) = logged_request(&event)
                .filter(|e| e.namespace.as_deref() == Some(self.namespace.as_str()))
            {
                read.entries.push(entry);
            }
        }
        read.offset += consumed;
        consumed
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.catch_up();
        self.lock().entries.clone()
    }

    /// How many writes were logged so far: a checkpoint for [`AuditLog::since`].
    pub fn len(&self) -> usize {
        self.catch_up();
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn filter(&self, keep: impl Fn(&LoggedRequest) -> bool) -> Vec<LoggedRequest> {
        self.entries().into_iter().filter(|e| keep(e)).collect()
    }

    /// Entries after the first `n`.
    pub fn since(&self, n: usize) -> Vec<LoggedRequest> {
        self.catch_up();
        self.lock().entries.iter().skip(n).cloned().collect()
    }

    /// Like [`AuditLog::since`], once the log has stopped growing for a moment (at most
    /// `within`): the server writes an event as it answers, so an effect a client saw may be a
    /// moment ahead of its line. Blocks the calling thread while it waits.
    pub fn since_settled(&self, n: usize, within: Duration) -> Vec<LoggedRequest> {
        let deadline = Instant::now() + within;
        let mut quiet_since = Instant::now();
        loop {
            if self.catch_up() > 0 {
                quiet_since = Instant::now();
            }
            let now = Instant::now();
            if now.duration_since(quiet_since) >= Duration::from_millis(150) || now >= deadline {
                return self.since(n);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

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
