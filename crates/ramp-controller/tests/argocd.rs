//! Argo CD on Ramp's objects: a port of Argo CD's built-in health checks for Rollouts and
//! AnalysisRuns, and its Rollout resource actions applied the way Argo CD applies them (merge
//! patches, the status part through the `status` subresource) to rollouts the in-process
//! controller drives on ramp-sim. Effects are read from the sim's request log and objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use pretty_assertions::assert_eq;
use ramp_api::analysis::{AnalysisRun, AnalysisTemplate};
use ramp_api::rollout::Rollout;
use ramp_sim::LoggedRequest;
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------------------------------------
// Argo CD's health checks
// ---------------------------------------------------------------------------------------------

/// Lua's `tonumber` on a JSON field: numbers, and strings holding a decimal or `0x` number.
fn lua_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let text = s.trim();
            if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                return i64::from_str_radix(hex, 16).ok().map(|n| n as f64);
            }
            // Rust also reads `inf` and `NaN`, which Lua does not.
            let numeric = !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
            if numeric { text.parse().ok() } else { None }
        }
        _ => None,
    }
}

fn lua_string(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// A Lua table that is non-empty (`table.getn(t) > 0`).
fn non_empty_list(value: &Value) -> bool {
    value.as_array().is_some_and(|a| !a.is_empty())
}

fn health(status: &str, message: impl Into<String>) -> (String, String) {
    (status.to_owned(), message.into())
}

/// The health Argo CD's `argoproj.io/Rollout` check computes: `(status, message)`.
fn argocd_health(rollout: &Value) -> (String, String) {
    let status = &rollout["status"];
    // Only a numeric observedGeneration is compared; a legacy hash (or one from the future)
    // counts as observed.
    let generation_observed = !status.is_null()
        && match lua_number(&status["observedGeneration"]) {
            None => true,
            Some(observed) => {
                let generation = rollout["metadata"]["generation"].as_f64().unwrap_or(0.0);
                observed >= generation
            }
        };
    let annotations = &rollout["metadata"]["annotations"];
    let workload_observed = rollout["spec"]["workloadRef"].is_null()
        || annotations.is_null()
        || lua_number(&annotations["rollout.argoproj.io/workload-generation"])
            == lua_number(&status["workloadObservedGeneration"]);
    if !generation_observed || !workload_observed {
        return health(
            "Progressing",
            "Waiting for rollout spec update to be observed",
        );
    }

    if let Some(phase) = status["phase"].as_str() {
        let shown = if phase == "Paused" {
            "Suspended"
        } else {
            phase
        };
        return health(shown, lua_string(&status["message"]).unwrap_or_default());
    }

    // Controllers before v1.0 wrote no phase: Argo CD derives one.
    for condition in status["conditions"].as_array().into_iter().flatten() {
        let message = lua_string(&condition["message"]).unwrap_or_default();
        if condition["type"] == "InvalidSpec" {
            return health("Degraded", message);
        }
        if condition["type"] == "Progressing"
            && (condition["reason"] == "RolloutAborted"
                || condition["reason"] == "ProgressDeadlineExceeded")
        {
            return health("Degraded", message);
        }
    }
    if non_empty_list(&status["pauseConditions"]) || rollout["spec"]["paused"] == true {
        return health("Suspended", "Rollout is paused");
    }
    let Some(current) = lua_string(&status["currentPodHash"]) else {
        return health(
            "Progressing",
            "Waiting for rollout to finish: status has not been reconciled.",
        );
    };
    let desired = lua_number(&rollout["spec"]["replicas"]).unwrap_or(1.0);
    let replicas = lua_number(&status["replicas"]).unwrap_or(0.0);
    let updated = lua_number(&status["updatedReplicas"]).unwrap_or(0.0);
    let available = lua_number(&status["availableReplicas"]).unwrap_or(0.0);
    if updated < desired {
        return health(
            "Progressing",
            "Waiting for roll out to finish: More replicas need to be updated",
        );
    }
    if available < updated {
        return health(
            "Progressing",
            "Waiting for roll out to finish: updated replicas are still becoming available",
        );
    }
    // `status.stableRS`, else the pre-v0.8 `status.canary.stableRS` (nil when absent), else "".
    let stable: Option<String> = if !status["stableRS"].is_null() {
        lua_string(&status["stableRS"])
    } else if !status["canary"].is_null() {
        lua_string(&status["canary"]["stableRS"])
    } else {
        Some(String::new())
    };
    let strategy = &rollout["spec"]["strategy"];
    if !strategy["blueGreen"].is_null() {
        let active = lua_string(&status["blueGreen"]["activeSelector"]);
        if active.as_deref() != Some(current.as_str()) {
            return health("Progressing", "active service cutover pending");
        }
        if stable.as_deref() != Some("") && stable.as_deref() != Some(current.as_str()) {
            return health("Progressing", "waiting for analysis to complete");
        }
    } else if !strategy["canary"].is_null() {
        if replicas > updated {
            return health(
                "Progressing",
                "Waiting for roll out to finish: old replicas are pending termination",
            );
        }
        if stable.as_deref() == Some("") || stable.as_deref() != Some(current.as_str()) {
            return health("Progressing", "Waiting for rollout to finish steps");
        }
    }
    health("Healthy", "")
}

/// The health Argo CD's `argoproj.io/AnalysisRun` check computes; an unknown phase gives an
/// empty status, as the script leaves it unset.
fn argocd_analysis_run_health(run: &Value) -> (String, String) {
    let status = &run["status"];
    if status.is_null() {
        return health(
            "Progressing",
            "Waiting for analysis run to finish: status has not been reconciled.",
        );
    }
    let message_or = |default: &str| lua_string(&status["message"]).unwrap_or(default.to_owned());
    match status["phase"].as_str() {
        Some("Pending" | "Running") => health("Progressing", "Analysis run is running"),
        Some("Successful") => health("Healthy", message_or("Analysis run completed successfully")),
        Some("Failed") => health("Degraded", message_or("Analysis run failed")),
        Some("Error") => health("Degraded", message_or("Analysis run had an error")),
        Some("Inconclusive") => health("Unknown", message_or("Analysis run was inconclusive")),
        _ => health("", ""),
    }
}

// ---------------------------------------------------------------------------------------------
// Argo CD's Rollout actions
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Action {
    Resume,
    PromoteFull,
    Abort,
    Retry,
    Pause,
    /// With the UTC time the action ran at, to the second.
    Restart(String),
    SkipCurrentStep,
}

/// The object as the action's script leaves it.
fn run_action_script(live: &Value, action: &Action) -> Value {
    let mut object = live.clone();
    let status = object["status"].as_object().cloned().unwrap_or_default();
    let mut status = Value::Object(status);
    match action {
        Action::Resume => {
            if non_empty_list(&status["pauseConditions"]) {
                status.as_object_mut().unwrap().remove("pauseConditions");
            }
            if object["spec"]["paused"] == true {
                object["spec"]["paused"] = json!(false);
            }
        }
        Action::PromoteFull => status["promoteFull"] = json!(true),
        Action::Abort => status["abort"] = json!(true),
        Action::Retry => {
            status.as_object_mut().unwrap().remove("abort");
        }
        Action::Pause => object["spec"]["paused"] = json!(true),
        Action::Restart(now) => object["spec"]["restartAt"] = json!(now),
        Action::SkipCurrentStep => {
            let steps = object["spec"]["strategy"]["canary"]["steps"]
                .as_array()
                .map(Vec::len);
            let index = status["currentStepIndex"].as_u64();
            if let (Some(steps), Some(index)) = (steps, index)
                && index < steps as u64
            {
                if non_empty_list(&status["pauseConditions"]) {
                    status.as_object_mut().unwrap().remove("pauseConditions");
                }
                status["currentStepIndex"] = json!(index + 1);
            }
        }
    }
    if !live["status"].is_null() {
        object["status"] = status;
    }
    object
}

/// An RFC 7386 merge patch turning `old` into `new`, as Argo CD computes it.
fn merge_diff(old: &Value, new: &Value) -> Value {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return new.clone();
    };
    let mut patch = Map::new();
    for (key, old_value) in old {
        match new.get(key) {
            None => {
                patch.insert(key.clone(), Value::Null);
            }
            Some(new_value) if new_value != old_value => {
                let value = if old_value.is_object() && new_value.is_object() {
                    merge_diff(old_value, new_value)
                } else {
                    new_value.clone()
                };
                patch.insert(key.clone(), value);
            }
            Some(_) => {}
        }
    }
    for (key, new_value) in new {
        if !old.contains_key(key) {
            patch.insert(key.clone(), new_value.clone());
        }
    }
    Value::Object(patch)
}

/// The requests Argo CD sends for one action: the whole diff to the `status` subresource when
/// it touches status, then the rest to the object.
#[derive(Debug, PartialEq)]
struct ActionRequests {
    status: Option<Value>,
    object: Option<Value>,
}

fn rollout_objects(cluster: &Cluster) -> Api<DynamicObject> {
    Api::namespaced_with(
        cluster.client.clone(),
        ns(),
        &ApiResource::erase::<Rollout>(&()),
    )
}

async fn rollout_json(cluster: &Cluster, name: &str) -> Value {
    serde_json::to_value(
        rollout_objects(cluster)
            .get(name)
            .await
            .expect("rollout read"),
    )
    .unwrap()
}

/// Runs `action` on rollout `name` as Argo CD's server does and returns what it sent.
async fn run_action(cluster: &Cluster, name: &str, action: Action) -> ActionRequests {
    let live = rollout_json(cluster, name).await;
    let diff = merge_diff(&live, &run_action_script(&live, &action));
    let mut rest = diff.as_object().cloned().unwrap_or_default();
    let touches_status = rest.remove("status").is_some();
    let api = rollout_objects(cluster);
    let params = PatchParams::default();
    let status = if touches_status {
        api.patch_status(name, &params, &Patch::Merge(&diff))
            .await
            .expect("status subresource patched");
        Some(diff.clone())
    } else {
        None
    };
    let object = if rest.is_empty() {
        None
    } else {
        let rest = Value::Object(rest);
        api.patch(name, &params, &Patch::Merge(&rest))
            .await
            .expect("rollout patched");
        Some(rest)
    };
    ActionRequests { status, object }
}

/// Asserts the sim logged the action's requests as sent: merge patches, status first. The
/// controller's own status writes may come in between.
fn assert_action_logged(cluster: &Cluster, since: usize, name: &str, sent: &ActionRequests) {
    let log: Vec<LoggedRequest> = cluster
        .sim
        .request_log()
        .since_settled(since, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(|w| w.resource == "rollouts" && w.name.as_deref() == Some(name))
        .filter(|w| w.succeeded())
        .collect();
    let find = |subresource: Option<&str>, body: &Value| {
        log.iter()
            .position(|w| {
                w.subresource.as_deref() == subresource
                    && w.patch_type.as_deref() == Some("merge")
                    && w.body.as_ref() == Some(body)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no merge patch {body} to {subresource:?} in {:#?}",
                    summaries(&log)
                )
            })
    };
    let status_at = sent.status.as_ref().map(|b| find(Some("status"), b));
    let object_at = sent.object.as_ref().map(|b| find(None, b));
    if let (Some(status_at), Some(object_at)) = (status_at, object_at) {
        assert!(status_at < object_at, "{:#?}", summaries(&log));
    }
}

/// `%Y-%m-%dT%XZ` in UTC, the restart action's timestamp.
fn argocd_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Health as Argo CD would have seen it over time
// ---------------------------------------------------------------------------------------------

/// Every health Argo CD would compute for one rollout, from a watch: one entry per version.
struct HealthLog {
    seen: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HealthLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HealthLog {
    async fn start(cluster: &Cluster, name: &str) -> Self {
        let api = rollout_objects(cluster);
        let current = api.get(name).await.expect("rollout read");
        let version = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let seen = Arc::new(Mutex::new(vec![serde_json::to_value(&current).unwrap()]));
        let stream = api
            .watch(&WatchParams::default(), &version)
            .await
            .expect("rollout watch opened");
        let name = name.to_owned();
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                if let WatchEvent::Added(object) | WatchEvent::Modified(object) = event
                    && object.metadata.name.as_deref() == Some(name.as_str())
                {
                    let value = serde_json::to_value(&object).unwrap();
                    sink.lock().unwrap().push(value);
                }
            }
        });
        Self { seen, task }
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.objects().iter().map(argocd_health).collect()
    }

    /// Every version of the rollout seen, oldest first.
    fn objects(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until the latest health is `(status, message)`; returns every health seen.
    async fn wait_for(&self, status: &str, message: &str) -> Vec<(String, String)> {
        let what = format!("Argo CD health {status} {message:?}");
        eventually(&what, 10, || async {
            let seen = self.seen();
            let last = seen.last()?;
            (last.0 == status && last.1 == message).then_some(seen)
        })
        .await
    }

    /// Waits until the latest health is the last of `path` with `message`, and asserts the
    /// statuses seen on the way, repeats folded, are exactly `path`.
    async fn assert_path(&self, path: &[&str], message: &str) {
        let last = path.last().expect("a path ends somewhere");
        let seen = self.wait_for(last, message).await;
        assert_eq!(statuses(&seen), path, "{:#?}", transitions(&seen));
    }
}

/// The distinct healths in order, consecutive repeats folded.
fn transitions(seen: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for h in seen {
        if out.last() != Some(h) {
            out.push(h.clone());
        }
    }
    out
}

fn statuses(seen: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (status, _) in seen {
        if out.last() != Some(status) {
            out.push(status.clone());
        }
    }
    out
}

fn summaries(writes: &[LoggedRequest]) -> Vec<String> {
    writes.iter().map(LoggedRequest::summary).collect()
}

// ---------------------------------------------------------------------------------------------
// The health check on hand-written objects
// ---------------------------------------------------------------------------------------------

fn rollout_with(generation: i64, spec: Value, status: Value) -> Value {
    let mut object = json!({
        "metadata": {"name": "web", "generation": generation},
        "spec": {"replicas": 3, "strategy": {"canary": {"steps": [{"setWeight": 50}]}}}
    });
    json_patch::merge(&mut object["spec"], &spec);
    if !status.is_null() {
        object["status"] = status;
    }
    object
}

fn pair(status: &str, message: &str) -> (String, String) {
    health(status, message)
}

const WAITING: &str = "Waiting for rollout spec update to be observed";

#[test]
fn generation_not_yet_observed_is_progressing() {
    let phase = json!({"phase": "Healthy"});
    assert_eq!(
        argocd_health(&rollout_with(2, json!({}), Value::Null)),
        pair("Progressing", WAITING)
    );
    let mut behind = phase.clone();
    behind["observedGeneration"] = json!("1");
    assert_eq!(
        argocd_health(&rollout_with(2, json!({}), behind)),
        pair("Progressing", WAITING)
    );
    let mut numeric = phase.clone();
    numeric["observedGeneration"] = json!(1);
    assert_eq!(
        argocd_health(&rollout_with(2, json!({}), numeric)),
        pair("Progressing", WAITING)
    );
    for observed in [
        json!("2"),
        json!(2),
        json!("3"),
        json!("5f8d7c9b"),
        Value::Null,
    ] {
        let mut status = phase.clone();
        status["observedGeneration"] = observed.clone();
        assert_eq!(
            argocd_health(&rollout_with(2, json!({}), status)),
            pair("Healthy", ""),
            "observedGeneration {observed}"
        );
    }
}

#[test]
fn workload_generation_not_yet_observed_is_progressing() {
    let mut rollout = rollout_with(
        1,
        json!({"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}),
        json!({"observedGeneration": "1", "phase": "Healthy", "workloadObservedGeneration": "1"}),
    );
    rollout["metadata"]["annotations"] = json!({"rollout.argoproj.io/workload-generation": "2"});
    assert_eq!(argocd_health(&rollout), pair("Progressing", WAITING));
    rollout["status"]["workloadObservedGeneration"] = json!("2");
    assert_eq!(argocd_health(&rollout), pair("Healthy", ""));
}

#[test]
fn phase_is_surfaced_with_paused_shown_as_suspended() {
    for (phase, message, expected) in [
        ("Healthy", None, pair("Healthy", "")),
        (
            "Paused",
            Some("CanaryPauseStep"),
            pair("Suspended", "CanaryPauseStep"),
        ),
        (
            "Paused",
            Some("manually paused"),
            pair("Suspended", "manually paused"),
        ),
        (
            "Progressing",
            Some("more replicas need to be updated"),
            pair("Progressing", "more replicas need to be updated"),
        ),
        (
            "Degraded",
            Some("RolloutAborted: Rollout aborted update to revision 2"),
            pair(
                "Degraded",
                "RolloutAborted: Rollout aborted update to revision 2",
            ),
        ),
    ] {
        let mut status = json!({"observedGeneration": "4", "phase": phase});
        if let Some(message) = message {
            status["message"] = json!(message);
        }
        // The phase wins over anything the legacy path would derive.
        status["pauseConditions"] = json!([{"reason": "CanaryPauseStep"}]);
        assert_eq!(argocd_health(&rollout_with(4, json!({}), status)), expected);
    }
}

#[test]
fn legacy_status_without_phase_is_derived_from_conditions_and_counts() {
    let base = json!({
        "observedGeneration": "abc", "currentPodHash": "new", "stableRS": "new",
        "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3
    });
    let case = |spec: Value, status: Value| {
        let mut merged = base.clone();
        json_patch::merge(&mut merged, &status);
        argocd_health(&rollout_with(1, spec, merged))
    };
    assert_eq!(case(json!({}), json!({})), pair("Healthy", ""));
    assert_eq!(
        case(
            json!({}),
            json!({"conditions": [{"type": "InvalidSpec", "message": "bad"}]})
        ),
        pair("Degraded", "bad")
    );
    for reason in ["RolloutAborted", "ProgressDeadlineExceeded"] {
        assert_eq!(
            case(
                json!({}),
                json!({"conditions": [
                    {"type": "Available", "reason": reason, "message": "ignored"},
                    {"type": "Progressing", "reason": reason, "message": "why"}
                ]})
            ),
            pair("Degraded", "why")
        );
    }
    assert_eq!(
        case(
            json!({}),
            json!({"pauseConditions": [{"reason": "CanaryPauseStep"}]})
        ),
        pair("Suspended", "Rollout is paused")
    );
    assert_eq!(
        case(json!({"paused": true}), json!({})),
        pair("Suspended", "Rollout is paused")
    );
    assert_eq!(
        case(json!({}), json!({"pauseConditions": []})),
        pair("Healthy", "")
    );
    assert_eq!(
        case(json!({}), json!({"currentPodHash": null})),
        pair(
            "Progressing",
            "Waiting for rollout to finish: status has not been reconciled."
        )
    );
    assert_eq!(
        case(json!({}), json!({"updatedReplicas": 2})),
        pair(
            "Progressing",
            "Waiting for roll out to finish: More replicas need to be updated"
        )
    );
    assert_eq!(
        case(json!({}), json!({"availableReplicas": 2})),
        pair(
            "Progressing",
            "Waiting for roll out to finish: updated replicas are still becoming available"
        )
    );
    assert_eq!(
        case(json!({}), json!({"replicas": 4})),
        pair(
            "Progressing",
            "Waiting for roll out to finish: old replicas are pending termination"
        )
    );
    for stable in [json!("old"), json!("")] {
        assert_eq!(
            case(json!({}), json!({"stableRS": stable})),
            pair("Progressing", "Waiting for rollout to finish steps")
        );
    }
    // Pre-v0.8 rollouts kept the stable hash under status.canary.
    assert_eq!(
        case(
            json!({}),
            json!({"stableRS": null, "canary": {"stableRS": "new"}})
        ),
        pair("Healthy", "")
    );
    // spec.replicas defaults to 1.
    let mut one = rollout_with(
        1,
        json!({}),
        json!({"observedGeneration": "x", "currentPodHash": "h", "stableRS": "h", "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}),
    );
    one["spec"].as_object_mut().unwrap().remove("replicas");
    assert_eq!(argocd_health(&one), pair("Healthy", ""));
}

#[test]
fn legacy_blue_green_waits_for_the_active_service_and_analysis() {
    let blue_green = json!({"strategy": {"canary": null, "blueGreen": {"activeService": "a"}}});
    let status = |extra: Value| {
        let mut s = json!({
            "observedGeneration": "abc", "currentPodHash": "new", "stableRS": "new",
            "replicas": 6, "updatedReplicas": 3, "availableReplicas": 3,
            "blueGreen": {"activeSelector": "new"}
        });
        json_patch::merge(&mut s, &extra);
        argocd_health(&rollout_with(1, blue_green.clone(), s))
    };
    // Old replicas are no concern for blue-green.
    assert_eq!(status(json!({})), pair("Healthy", ""));
    assert_eq!(
        status(json!({"blueGreen": {"activeSelector": "old"}})),
        pair("Progressing", "active service cutover pending")
    );
    assert_eq!(
        status(json!({"blueGreen": null})),
        pair("Progressing", "active service cutover pending")
    );
    assert_eq!(
        status(json!({"stableRS": "old"})),
        pair("Progressing", "waiting for analysis to complete")
    );
    assert_eq!(status(json!({"stableRS": ""})), pair("Healthy", ""));
}

#[test]
fn analysis_run_phases_map_to_argocd_health() {
    let run = |status: Value| argocd_analysis_run_health(&json!({"status": status}));
    assert_eq!(
        argocd_analysis_run_health(&json!({"metadata": {}})),
        pair(
            "Progressing",
            "Waiting for analysis run to finish: status has not been reconciled."
        )
    );
    for phase in ["Pending", "Running"] {
        assert_eq!(
            run(json!({"phase": phase, "message": "x"})),
            pair("Progressing", "Analysis run is running")
        );
    }
    assert_eq!(
        run(json!({"phase": "Successful"})),
        pair("Healthy", "Analysis run completed successfully")
    );
    assert_eq!(
        run(json!({"phase": "Failed"})),
        pair("Degraded", "Analysis run failed")
    );
    assert_eq!(
        run(json!({"phase": "Failed", "message": "m"})),
        pair("Degraded", "m")
    );
    assert_eq!(
        run(json!({"phase": "Error"})),
        pair("Degraded", "Analysis run had an error")
    );
    assert_eq!(
        run(json!({"phase": "Inconclusive"})),
        pair("Unknown", "Analysis run was inconclusive")
    );
    assert_eq!(run(json!({})), pair("", ""));
}

#[test]
fn action_scripts_produce_argocd_merge_patches() {
    let live = json!({
        "metadata": {"name": "web", "generation": 3},
        "spec": {"paused": true, "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]}}},
        "status": {"currentStepIndex": 1, "pauseConditions": [{"reason": "CanaryPauseStep"}], "abort": true}
    });
    let diff = |action| merge_diff(&live, &run_action_script(&live, &action));
    assert_eq!(
        diff(Action::Resume),
        json!({"spec": {"paused": false}, "status": {"pauseConditions": null}})
    );
    assert_eq!(
        diff(Action::PromoteFull),
        json!({"status": {"promoteFull": true}})
    );
    assert_eq!(diff(Action::Abort), json!({}));
    assert_eq!(diff(Action::Retry), json!({"status": {"abort": null}}));
    assert_eq!(diff(Action::Pause), json!({}));
    assert_eq!(
        diff(Action::Restart("2026-01-02T03:04:05Z".into())),
        json!({"spec": {"restartAt": "2026-01-02T03:04:05Z"}})
    );
    assert_eq!(
        diff(Action::SkipCurrentStep),
        json!({"status": {"currentStepIndex": 2, "pauseConditions": null}})
    );
    let mut last = live.clone();
    last["status"]["currentStepIndex"] = json!(3);
    assert_eq!(
        merge_diff(&last, &run_action_script(&last, &Action::SkipCurrentStep)),
        json!({})
    );
}

// ---------------------------------------------------------------------------------------------
// Actions on live rollouts
// ---------------------------------------------------------------------------------------------

impl ActionRequests {
    /// What Argo CD sends for an action that only changes status.
    fn status_patch(patch: Value) -> Self {
        Self {
            status: Some(patch),
            object: None,
        }
    }

    /// What Argo CD sends for an action that only changes the spec.
    fn object_patch(patch: Value) -> Self {
        Self {
            status: None,
            object: Some(patch),
        }
    }
}

/// The controller's writes over a stretch of the request log; `{:#?}` prints one summary a
/// line, for assertion messages.
struct ControllerWrites(Vec<LoggedRequest>);

impl std::ops::Deref for ControllerWrites {
    type Target = Vec<LoggedRequest>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Debug for ControllerWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(summaries(&self.0)).finish()
    }
}

/// An action Argo CD applied to a live rollout, with what judging its aftermath needs: where
/// the request log stood just before it, the VirtualService as it was then, and every health
/// Argo CD computed from then on.
struct AppliedAction<'a> {
    cluster: &'a Cluster,
    rollout: String,
    checkpoint: usize,
    /// `web-vsvc` just before the action; `None` where the cluster has none (blue-green).
    vs_before: Option<Value>,
    health: HealthLog,
}

/// Applies `action` to rollout `name` as Argo CD does, asserting it sent `expected` and that
/// the sim logged those requests as sent, status first.
async fn apply_action<'a>(
    cluster: &'a Cluster,
    name: &str,
    action: Action,
    expected: ActionRequests,
) -> AppliedAction<'a> {
    let vs_before = cluster
        .virtual_services()
        .get_opt("web-vsvc")
        .await
        .expect("VirtualService read")
        .map(|vs| serde_json::to_value(vs).unwrap());
    let checkpoint = cluster.sim.request_log().len();
    let health = HealthLog::start(cluster, name).await;
    let sent = run_action(cluster, name, action).await;
    assert_eq!(sent, expected);
    assert_action_logged(cluster, checkpoint, name, &sent);
    AppliedAction {
        cluster,
        rollout: name.to_owned(),
        checkpoint,
        vs_before,
        health,
    }
}

impl AppliedAction<'_> {
    /// The controller's successful writes since just before the action.
    fn controller_writes(&self) -> ControllerWrites {
        ControllerWrites(controller_writes(&self.cluster.sim, self.checkpoint))
    }

    /// Canary weights the controller wrote since the action, replayed onto the VirtualService
    /// as it was just before it.
    fn canary_weights(&self) -> Vec<i64> {
        let vs = self
            .vs_before
            .as_ref()
            .expect("a VirtualService before the action");
        canary_weights(&self.controller_writes(), "web-vsvc", vs, "web-canary")
    }

    /// Waits until the controller has scaled ReplicaSet `rs` to `replicas` since the action.
    async fn wait_scaled(&self, what: &str, rs: &str, replicas: i64) {
        eventually(what, 20, || async {
            replica_writes(&self.controller_writes())
                .contains(&(rs.to_owned(), replicas))
                .then_some(())
        })
        .await;
    }

    /// Waits until the rollout is Healthy and fully promoted to ReplicaSet `rs`, and until
    /// Argo CD's health, watched since just before the action, is Healthy; returns every
    /// health seen.
    async fn wait_promoted_to(&self, rs: &str, secs: u64) -> Vec<(String, String)> {
        let done = self.cluster.wait_healthy(&self.rollout, secs).await;
        assert_eq!(current_rs(&done), rs);
        let seen = self.health.wait_for("Healthy", "").await;
        assert_eq!(statuses(&seen).last().map(String::as_str), Some("Healthy"));
        seen
    }
}

/// Argo CD's health of a rollout as read.
fn health_of(rollout: &Rollout) -> (String, String) {
    argocd_health(&serde_json::to_value(rollout).unwrap())
}

/// Argo CD's health of rollout `name` as it is now.
async fn live_health(cluster: &Cluster, name: &str) -> (String, String) {
    argocd_health(&rollout_json(cluster, name).await)
}

/// Waits until rollout `name` is Degraded (`what` says why it should be) and asserts Argo CD
/// shows it Degraded with a message starting with `message_prefix`.
async fn wait_degraded(cluster: &Cluster, name: &str, what: &str, message_prefix: &str) {
    let degraded = cluster
        .wait_rollout(name, what, 20, |r| {
            r.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Degraded")
        })
        .await;
    let (status, message) = health_of(&degraded);
    assert_eq!(status, "Degraded");
    assert!(message.starts_with(message_prefix), "{message}");
}

async fn vs_json(cluster: &Cluster) -> Value {
    serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap()
}

fn paused_at(rollout: &Rollout, step: i32) -> bool {
    let status = rollout.status.clone().unwrap_or_default();
    status.phase.as_deref() == Some("Paused")
        && status.current_step_index == Some(step)
        && status.has_pause_conditions()
        && status.observed_generation_number() == rollout.metadata.generation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_resume_and_promote_full_then_restart() {
    let cluster = istio_cluster().await;
    let steps = json!([
        {"setWeight": 25}, {"pause": {}},
        {"setWeight": 50}, {"pause": {}},
        {"setWeight": 75}
    ]);
    cluster
        .create_rollout(rollout_manifest("web", 4, istio_canary(steps)))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable_rs = current_rs(&v1);
    assert_eq!(live_health(&cluster, "web").await, pair("Healthy", ""));

    let log = HealthLog::start(&cluster, "web").await;
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at 25 %", 20, |r| paused_at(r, 1))
        .await;
    let canary_rs = current_rs(&paused);
    log.assert_path(&["Healthy", "Progressing", "Suspended"], "CanaryPauseStep")
        .await;
    assert_eq!(
        destination_weight(&vs_json(&cluster).await, "web-canary"),
        25
    );
    drop(log);

    // resume: the pause condition goes, the controller takes the next step and pauses again.
    let resumed = apply_action(
        &cluster,
        "web",
        Action::Resume,
        ActionRequests::status_patch(json!({"status": {"pauseConditions": null}})),
    )
    .await;
    cluster
        .wait_rollout("web", "paused at 50 %", 20, |r| paused_at(r, 3))
        .await;
    let seen = resumed
        .health
        .wait_for("Suspended", "CanaryPauseStep")
        .await;
    assert!(
        statuses(&seen).contains(&"Progressing".to_owned()),
        "{:#?}",
        transitions(&seen)
    );
    assert_eq!(resumed.canary_weights(), vec![50]);
    assert_eq!(
        replica_writes(&resumed.controller_writes()),
        vec![(canary_rs.clone(), 2)]
    );
    drop(resumed);

    // promote-full: the 75 % step is skipped, straight to 100 % and the new stable.
    let promoted = apply_action(
        &cluster,
        "web",
        Action::PromoteFull,
        ActionRequests::status_patch(json!({"status": {"promoteFull": true}})),
    )
    .await;
    promoted.wait_promoted_to(&canary_rs, 30).await;
    let writes = promoted.controller_writes();
    let weights = promoted.canary_weights();
    assert!(!weights.contains(&75), "{weights:?}");
    assert_eq!(weights.last(), Some(&0), "{writes:#?}");
    assert_eq!(
        replica_writes(&writes),
        vec![(canary_rs.clone(), 4), (stable_rs, 0)],
        "{writes:#?}"
    );
    drop(promoted);

    // restart: every pod older than restartAt is replaced, then restartedAt records it. The
    // action's timestamp has whole seconds: let the clock pass the newest pod's second.
    let newest_pod = cluster
        .sim
        .request_log()
        .since_settled(0, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(|w| w.resource == "pods" && w.subresource.is_none() && w.succeeded())
        .map(|w| w.time)
        .max()
        .unwrap();
    eventually("the clock a second past the newest pod", 5, || async {
        let elapsed = std::time::SystemTime::now()
            .duration_since(newest_pod)
            .ok()?;
        (elapsed.as_secs() >= 1).then_some(())
    })
    .await;
    let now = argocd_now();
    let restarted = apply_action(
        &cluster,
        "web",
        Action::Restart(now.clone()),
        ActionRequests::object_patch(json!({"spec": {"restartAt": now}})),
    )
    .await;
    cluster
        .wait_rollout("web", "status.restartedAt recorded", 30, |r| {
            r.status
                .as_ref()
                .and_then(|s| s.restarted_at.as_ref())
                .is_some_and(|t| t.0.to_string() == now)
        })
        .await;
    let seen = restarted.health.wait_for("Healthy", "").await;
    assert!(
        transitions(&seen).contains(&pair("Progressing", "rollout is restarting")),
        "{:#?}",
        transitions(&seen)
    );
    // Until restartedAt catches up with restartAt, Argo CD never sees anything but Progressing.
    for object in restarted.health.objects() {
        if object["spec"]["restartAt"] != object["status"]["restartedAt"] {
            assert_eq!(
                argocd_health(&object).0,
                "Progressing",
                "{:#}",
                object["status"]
            );
        }
    }
    let evictions = cluster
        .sim
        .request_log()
        .since_settled(restarted.checkpoint, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(|w| w.subresource.as_deref() == Some("eviction") && w.succeeded())
        .count();
    assert_eq!(evictions, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_skip_current_step_leaves_the_pause_for_the_next_weight() {
    let cluster = istio_cluster().await;
    let steps = json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}]);
    cluster
        .create_rollout(rollout_manifest("web", 4, istio_canary(steps)))
        .await;
    cluster.wait_healthy("web", 20).await;
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at 25 %", 20, |r| paused_at(r, 1))
        .await;
    let canary_rs = current_rs(&paused);
    assert_eq!(health_of(&paused), pair("Suspended", "CanaryPauseStep"));

    let skipped = apply_action(
        &cluster,
        "web",
        Action::SkipCurrentStep,
        ActionRequests::status_patch(
            json!({"status": {"currentStepIndex": 2, "pauseConditions": null}}),
        ),
    )
    .await;
    let seen = skipped.wait_promoted_to(&canary_rs, 30).await;
    assert_eq!(
        statuses(&seen),
        ["Suspended", "Progressing", "Healthy"],
        "{:#?}",
        transitions(&seen)
    );
    let writes = skipped.controller_writes();
    let weights = skipped.canary_weights();
    assert_eq!(weights.first(), Some(&75), "{writes:#?}");
    assert_eq!(
        replica_writes(&writes).first(),
        Some(&(canary_rs.clone(), 3)),
        "{writes:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_abort_is_degraded_until_retry_brings_the_canary_back() {
    let cluster = istio_cluster().await;
    let steps = json!([{"setWeight": 25}, {"pause": {}}]);
    cluster
        .create_rollout(rollout_manifest("web", 4, istio_canary(steps)))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let stable_rs = current_rs(&v1);
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused at 25 %", 20, |r| paused_at(r, 1))
        .await;
    let canary_rs = current_rs(&paused);

    let aborted = apply_action(
        &cluster,
        "web",
        Action::Abort,
        ActionRequests::status_patch(json!({"status": {"abort": true}})),
    )
    .await;
    wait_degraded(
        &cluster,
        "web",
        "aborted and Degraded",
        "RolloutAborted: Rollout aborted update to revision 2",
    )
    .await;
    aborted
        .wait_scaled(
            "the canary scaled to 0 after the abort delay",
            &canary_rs,
            0,
        )
        .await;
    let writes = aborted.controller_writes();
    assert_eq!(aborted.canary_weights(), vec![0], "{writes:#?}");
    assert!(
        !replica_writes(&writes)
            .iter()
            .any(|(rs, _)| rs == &stable_rs),
        "{writes:#?}"
    );
    // Still Degraded once the abort has played out: the condition stays until a retry.
    assert_eq!(live_health(&cluster, "web").await.0, "Degraded");
    drop(aborted);

    let retried = apply_action(
        &cluster,
        "web",
        Action::Retry,
        ActionRequests::status_patch(json!({"status": {"abort": null}})),
    )
    .await;
    cluster
        .wait_rollout("web", "paused at 25 % again", 20, |r| paused_at(r, 1))
        .await;
    retried
        .health
        .assert_path(&["Degraded", "Progressing", "Suspended"], "CanaryPauseStep")
        .await;
    let writes = retried.controller_writes();
    assert_eq!(retried.canary_weights(), vec![25], "{writes:#?}");
    assert_eq!(replica_writes(&writes), vec![(canary_rs, 1)], "{writes:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_pause_holds_a_running_update_and_resume_lets_it_go_on() {
    let cluster = istio_cluster().await;
    let steps = json!([{"setWeight": 25}, {"setWeight": 50}, {"pause": {}}]);
    cluster
        .create_rollout(rollout_manifest("web", 4, istio_canary(steps)))
        .await;
    cluster.wait_healthy("web", 20).await;
    // v2's pods take 3 s to be ready: the update is running, not paused, when Argo CD pauses it.
    let slow_v2 = json!({"spec": {"template": {
        "metadata": {"annotations": {"sim.ramp.dev/ready-after": "3s"}},
        "spec": {"containers": [{"name": "web", "image": "web:v2"}]}
    }}});
    cluster
        .rollouts()
        .patch("web", &PatchParams::default(), &Patch::Merge(&slow_v2))
        .await
        .expect("template changed");
    let running = cluster
        .wait_rollout("web", "v2 observed and progressing", 20, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Progressing")
                && s.current_pod_hash.is_some()
                && s.current_pod_hash != s.stable_rs
                && s.observed_generation_number() == r.metadata.generation
        })
        .await;
    let canary_rs = current_rs(&running);
    assert_eq!(health_of(&running).0, "Progressing");

    let paused = apply_action(
        &cluster,
        "web",
        Action::Pause,
        ActionRequests::object_patch(json!({"spec": {"paused": true}})),
    )
    .await;
    let rollout = cluster
        .wait_rollout("web", "manually paused", 20, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Paused")
                && s.observed_generation_number() == r.metadata.generation
        })
        .await;
    assert_eq!(health_of(&rollout), pair("Suspended", "manually paused"));
    // The canary pod becomes ready meanwhile; the paused rollout does not go on to 50 %.
    eventually("the canary pod available while paused", 20, || async {
        let rs = cluster
            .replica_sets()
            .await
            .into_iter()
            .find(|rs| rs.metadata.name.as_deref() == Some(canary_rs.as_str()))?;
        (rs.status?.available_replicas >= Some(1)).then_some(())
    })
    .await;
    let still = cluster.rollout("web").await;
    assert_eq!(health_of(&still), pair("Suspended", "manually paused"));
    let writes = paused.controller_writes();
    assert!(!paused.canary_weights().contains(&50), "{writes:#?}");
    assert!(
        !replica_writes(&writes).contains(&(canary_rs.clone(), 2)),
        "{writes:#?}"
    );
    drop(paused);

    let resumed = apply_action(
        &cluster,
        "web",
        Action::Resume,
        ActionRequests::object_patch(json!({"spec": {"paused": false}})),
    )
    .await;
    cluster
        .wait_rollout("web", "paused at the pause step", 30, |r| paused_at(r, 2))
        .await;
    resumed
        .health
        .assert_path(
            &["Suspended", "Progressing", "Suspended"],
            "CanaryPauseStep",
        )
        .await;
    assert_eq!(
        destination_weight(&vs_json(&cluster).await, "web-canary"),
        50
    );
    let writes = resumed.controller_writes();
    assert!(
        replica_writes(&writes).contains(&(canary_rs, 2)),
        "{writes:#?}"
    );
}

const ACTIVE: &str = "web-active";
const PREVIEW: &str = "web-preview";

fn blue_green_manifest(replicas: i32) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": ns()},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:v1", "ports": [{"containerPort": 8080}]}]}
            },
            "strategy": {"blueGreen": {
                "activeService": ACTIVE, "previewService": PREVIEW,
                "autoPromotionEnabled": false, "scaleDownDelaySeconds": 1
            }}
        }
    })
}

/// Whether `writes` switch Service `service` to the pods of template hash `hash`.
fn switches_service(writes: &[LoggedRequest], service: &str, hash: &str) -> bool {
    writes.iter().any(|w| {
        w.resource == "services"
            && w.name.as_deref() == Some(service)
            && w.body
                .as_ref()
                .is_some_and(|b| b["spec"]["selector"]["rollouts-pod-template-hash"] == hash)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_resume_abort_retry_and_promote_full_show_argocd_health() {
    let mut cluster = Cluster::start().await;
    cluster.create_services(&[ACTIVE, PREVIEW], "web").await;
    cluster.start_controller();
    cluster.create_rollout(blue_green_manifest(2)).await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let blue = current_rs(&v1);
    assert_eq!(health_of(&v1), pair("Healthy", ""));

    let log = HealthLog::start(&cluster, "web").await;
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "v2 paused for promotion", 20, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Paused")
                && s.has_pause_conditions()
                && s.observed_generation_number() == r.metadata.generation
        })
        .await;
    let green = current_rs(&paused);
    log.assert_path(&["Healthy", "Progressing", "Suspended"], "BlueGreenPause")
        .await;
    drop(log);

    let resumed = apply_action(
        &cluster,
        "web",
        Action::Resume,
        ActionRequests::status_patch(json!({"status": {"pauseConditions": null}})),
    )
    .await;
    resumed.wait_promoted_to(&green, 20).await;
    let writes = resumed.controller_writes();
    let green_hash = green.trim_start_matches("web-");
    let switches: Vec<String> = writes
        .iter()
        .filter(|w| w.resource == "services")
        .filter_map(|w| {
            let hash =
                w.body.as_ref()?["spec"]["selector"]["rollouts-pod-template-hash"].as_str()?;
            Some(format!("{} -> {hash}", w.name.clone().unwrap_or_default()))
        })
        .collect();
    assert_eq!(
        switches,
        vec![format!("{ACTIVE} -> {green_hash}")],
        "{writes:#?}"
    );
    resumed
        .wait_scaled("blue scaled down after the delay", &blue, 0)
        .await;
    // Old pods going away do not make a promoted blue-green rollout anything but Healthy.
    assert_eq!(live_health(&cluster, "web").await, pair("Healthy", ""));
    drop(resumed);

    // v3 paused for promotion, then abort: the active service stays on green, Degraded.
    cluster.set_image("web", "web:v3").await;
    let paused = cluster
        .wait_rollout("web", "v3 paused for promotion", 20, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Paused")
                && s.has_pause_conditions()
                && s.current_pod_hash.as_deref() != Some(green_hash)
                && s.observed_generation_number() == r.metadata.generation
        })
        .await;
    let v3 = current_rs(&paused);
    assert_eq!(health_of(&paused), pair("Suspended", "BlueGreenPause"));
    let aborted = apply_action(
        &cluster,
        "web",
        Action::Abort,
        ActionRequests::status_patch(json!({"status": {"abort": true}})),
    )
    .await;
    wait_degraded(
        &cluster,
        "web",
        "v3 aborted",
        "RolloutAborted: Rollout aborted update to revision 3",
    )
    .await;
    let writes = aborted.controller_writes();
    assert!(
        !writes
            .iter()
            .any(|w| w.resource == "services" && w.name.as_deref() == Some(ACTIVE)),
        "{writes:#?}"
    );
    drop(aborted);

    // retry brings the pause back; promote-full then skips it.
    apply_action(
        &cluster,
        "web",
        Action::Retry,
        ActionRequests::status_patch(json!({"status": {"abort": null}})),
    )
    .await;
    let paused = cluster
        .wait_rollout("web", "v3 paused for promotion after retry", 20, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Paused") && s.abort != Some(true)
        })
        .await;
    assert_eq!(health_of(&paused), pair("Suspended", "BlueGreenPause"));
    let promoted = apply_action(
        &cluster,
        "web",
        Action::PromoteFull,
        ActionRequests::status_patch(json!({"status": {"promoteFull": true}})),
    )
    .await;
    let done = cluster.wait_healthy("web", 20).await;
    assert_eq!(current_rs(&done), v3);
    assert_eq!(health_of(&done), pair("Healthy", ""));
    let writes = promoted.controller_writes();
    assert!(
        switches_service(&writes, ACTIVE, v3.trim_start_matches("web-")),
        "{writes:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// AnalysisRuns the controller produced
// ---------------------------------------------------------------------------------------------

async fn create_templates(cluster: &Cluster) {
    let api = Api::<AnalysisTemplate>::namespaced(cluster.client.clone(), ns());
    let smoke = json!({
        "name": "smoke", "interval": "1s", "count": 2,
        "failureLimit": 0, "inconclusiveLimit": 0,
        "successCondition": "result == true",
        "failureCondition": "result == false",
        "provider": {"web": {"url": "{{args.url}}", "jsonPath": "{$.ok}"}}
    });
    // Nothing listens on port 1: every measurement is an error.
    let unreachable = json!({
        "name": "unreachable", "interval": "1s", "count": 2, "consecutiveErrorLimit": 0,
        "successCondition": "result == true",
        "provider": {"web": {"url": "http://127.0.0.1:1/health", "jsonPath": "{$.ok}"}}
    });
    for (name, metric, args) in [
        ("smoke", smoke, json!([{"name": "url"}])),
        ("unreachable", unreachable, json!([])),
    ] {
        let template: AnalysisTemplate = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": name, "namespace": ns()},
            "spec": {"args": args, "metrics": [metric]}
        }))
        .unwrap();
        api.create(&PostParams::default(), &template)
            .await
            .expect("template created");
    }
}

fn run_objects(cluster: &Cluster) -> Api<DynamicObject> {
    Api::namespaced_with(
        cluster.client.clone(),
        ns(),
        &ApiResource::erase::<AnalysisRun>(&()),
    )
}

/// The runs owned by rollout `owner`, as JSON.
async fn runs_of(cluster: &Cluster, owner: &str) -> Vec<Value> {
    run_objects(cluster)
        .list(&Default::default())
        .await
        .expect("runs listed")
        .items
        .into_iter()
        .filter(|run| {
            run.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Rollout" && o.name == owner)
        })
        .map(|run| serde_json::to_value(run).unwrap())
        .collect()
}

/// Waits for a run of `owner` not in `known` to reach `phase`; returns it.
async fn wait_new_run(
    cluster: &Cluster,
    owner: &str,
    known: &[String],
    phase: &str,
    secs: u64,
) -> Value {
    eventually(&format!("a new run of {owner} {phase}"), secs, || async {
        runs_of(cluster, owner).await.into_iter().find(|run| {
            !known.iter().any(|k| run["metadata"]["name"] == k.as_str())
                && run["status"]["phase"] == phase
        })
    })
    .await
}

fn run_names(runs: &[Value]) -> Vec<String> {
    runs.iter()
        .filter_map(|r| r["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// Argo CD's health of a finished run: the run's message when it has one, else the default.
fn assert_run_health(run: &Value, status: &str, default_message: &str) {
    let expected = run["status"]["message"]
        .as_str()
        .unwrap_or(default_message)
        .to_owned();
    assert_eq!(
        argocd_analysis_run_health(run),
        pair(status, &expected),
        "{:#}",
        run["status"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_runs_of_each_outcome_show_argocd_health() {
    let endpoint = Health::new(true);
    let url = health_endpoint(endpoint.clone()).await;
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster
        .create_virtual_service("web-vsvc", "web-stable", "web-canary")
        .await;
    create_templates(&cluster).await;
    cluster.start_controller();
    let gated = istio_canary(json!([
        {"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "smoke"}], "args": [{"name": "url", "value": url}]}},
        {"setWeight": 60}
    ]));
    cluster
        .create_rollout(rollout_manifest("web", 5, gated))
        .await;
    cluster.wait_healthy("web", 20).await;

    // Successful: Progressing while it measures, Healthy once done; the rollout completes.
    cluster.set_image("web", "web:v2").await;
    let running = wait_new_run(&cluster, "web", &[], "Running", 20).await;
    assert_eq!(
        argocd_analysis_run_health(&running),
        pair("Progressing", "Analysis run is running")
    );
    assert_eq!(live_health(&cluster, "web").await.0, "Progressing");
    cluster.wait_healthy("web", 30).await;
    let done = wait_new_run(&cluster, "web", &[], "Successful", 10).await;
    assert_eq!(done["metadata"]["name"], running["metadata"]["name"]);
    assert_run_health(&done, "Healthy", "Analysis run completed successfully");
    assert_eq!(live_health(&cluster, "web").await, pair("Healthy", ""));

    // Inconclusive: Unknown, and the rollout pauses for a human.
    let known = run_names(&runs_of(&cluster, "web").await);
    endpoint.answer(json!("maybe"));
    cluster.set_image("web", "web:v3").await;
    let inconclusive = wait_new_run(&cluster, "web", &known, "Inconclusive", 20).await;
    assert_run_health(&inconclusive, "Unknown", "Analysis run was inconclusive");
    cluster
        .wait_rollout("web", "paused on the inconclusive run", 20, |r| {
            r.status
                .as_ref()
                .and_then(|s| s.pause_conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.reason == "InconclusiveAnalysisRun"))
                && r.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Paused")
        })
        .await;
    assert_eq!(
        live_health(&cluster, "web").await,
        pair("Suspended", "InconclusiveAnalysisRun")
    );

    // Failed: Degraded, and the rollout aborts.
    let known = run_names(&runs_of(&cluster, "web").await);
    endpoint.answer(json!(false));
    cluster.set_image("web", "web:v4").await;
    let failed = wait_new_run(&cluster, "web", &known, "Failed", 20).await;
    assert_run_health(&failed, "Degraded", "Analysis run failed");
    wait_degraded(
        &cluster,
        "web",
        "aborted by the failed run",
        "RolloutAborted: ",
    )
    .await;

    // Error: a provider that cannot be reached, on a second rollout.
    cluster
        .create_rollout(rollout_manifest(
            "broken",
            2,
            json!({"steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "unreachable"}]}}]}),
        ))
        .await;
    cluster.wait_healthy("broken", 20).await;
    cluster.set_image("broken", "web:v2").await;
    let errored = wait_new_run(&cluster, "broken", &[], "Error", 30).await;
    assert_run_health(&errored, "Degraded", "Analysis run had an error");
    // Only Degraded is asserted: the message of an abort by an errored run is not pinned.
    wait_degraded(&cluster, "broken", "aborted by the errored run", "").await;
}
