//! The `pods/{name}/eviction` subresource: a `policy/v1` Eviction deletes the pod unless a
//! PodDisruptionBudget selecting it would be violated (429). With no disruption controller in
//! the sim, budgets are judged on the live pods at the moment of the request.

use super::catalog::GroupResource;
use super::deletion::{Propagation, delete_locked};
use super::objects::decode_body;
use super::server::{ApiRequest, ApiServer, Target, json_response};
use super::status::{ApiError, ApiResult, Cause};
use super::store::{ObjectKey, State, meta_str};
use crate::apimachinery::selector::LabelSelector;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// Handles `POST .../pods/{name}/eviction`.
pub fn evict(
    server: &Arc<ApiServer>,
    target: &Target,
    request: &ApiRequest,
) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or_default();
    let namespace = target.namespace_or_empty();
    let eviction = decode_body(&request.body, request.content_type())?;
    check_eviction(&eviction, name)?;
    let options = eviction
        .get("deleteOptions")
        .cloned()
        .unwrap_or(Value::Null);
    let dry_run = request.dry_run()
        || options
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|d| d == "All"));
    let pods = GroupResource::new("", "pods");
    let mut state = server.lock();
    let pod = state
        .get(&pods, namespace, name)
        .map(|p| p.value())
        .ok_or_else(|| ApiError::not_found(&pods, name))?;
    check_preconditions(&pods, name, &pod, &options)?;
    if !exempt_from_budgets(&pod) {
        check_budgets(&state, namespace, &pod)?;
    }
    if !dry_run {
        let key = ObjectKey {
            gr: pods,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        delete_locked(&mut state, &server.gc, &key, Propagation::Background);
    }
    drop(state);
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

fn check_eviction(eviction: &Value, name: &str) -> ApiResult<()> {
    let kind = eviction
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Eviction");
    let api_version = eviction
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("policy/v1");
    if kind != "Eviction" || !matches!(api_version, "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::bad_request(format!(
            "the body of the request was not a policy/v1 Eviction: {api_version}, Kind={kind}"
        )));
    }
    let body_name = meta_str(eviction, "name");
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    Ok(())
}

fn check_preconditions(
    gr: &GroupResource,
    name: &str,
    pod: &Value,
    options: &Value,
) -> ApiResult<()> {
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let Some(expected) = options
            .pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let actual = meta_str(pod, field);
        if expected != actual {
            return Err(ApiError::conflict(
                gr,
                name,
                &format!(
                    "Precondition failed: {label} in precondition: {expected}, {label} in object meta: {actual}"
                ),
            ));
        }
    }
    Ok(())
}

/// Pods that are not running (pending or finished) or already terminating are evicted
/// without consulting any budget, as on a real server.
fn exempt_from_budgets(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    matches!(phase, Some("Pending" | "Succeeded" | "Failed") | None)
        || pod.pointer("/metadata/deletionTimestamp").is_some()
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_none()
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// `intOrString` scaled against `total`: integers as is, percentages rounded up.
fn scaled(value: &Value, total: i64) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((percent * total + 99) / 100)
        }
        _ => None,
    }
}

fn check_budgets(state: &State, namespace: &str, pod: &Value) -> ApiResult<()> {
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    let budgets = GroupResource::new("policy", "poddisruptionbudgets");
    let mut matching = Vec::new();
    for (_, stored) in state.range(&budgets, Some(namespace), None) {
        let pdb = stored.value();
        let selector = pdb
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or(Value::Null);
        let selects = LabelSelector::from_object(&selector).is_ok_and(|s| s.matches_labels(labels));
        if selects {
            matching.push((pdb, selector));
        }
    }
    let (pdb, selector) = match matching.len() {
        0 => return Ok(()),
        1 => matching.remove(0),
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
    };
    let selector =
        LabelSelector::from_object(&selector).unwrap_or_else(|_| LabelSelector::nothing());
    let pods = GroupResource::new("", "pods");
    let selected: Vec<Value> = state
        .range(&pods, Some(namespace), None)
        .filter(|(_, p)| selector.matches_map(&p.labels))
        .map(|(_, p)| p.value())
        .collect();
    let healthy =
        i64::try_from(selected.iter().filter(|p| is_ready(p)).count()).unwrap_or(i64::MAX);
    let expected = expected_pods(state, namespace, &selected);
    let spec = pdb.get("spec").cloned().unwrap_or(Value::Null);
    let desired =
        if let Some(max_unavailable) = spec.get("maxUnavailable").filter(|v| !v.is_null()) {
            expected - scaled(max_unavailable, expected).unwrap_or(0)
        } else if let Some(min_available) = spec.get("minAvailable").filter(|v| !v.is_null()) {
            scaled(min_available, expected).unwrap_or(0)
        } else {
            0
        }
        .max(0);
    let pdb_name = meta_str(&pdb, "name").to_owned();
    let always_allow_unhealthy = spec
        .get("unhealthyPodEvictionPolicy")
        .and_then(Value::as_str)
        == Some("AlwaysAllow");
    let allowed = if is_ready(pod) {
        healthy - desired > 0
    } else {
        always_allow_unhealthy || healthy >= desired
    };
    if allowed {
        return Ok(());
    }
    let mut err = ApiError::new(429, "TooManyRequests", VIOLATION);
    err.causes = vec![Cause {
        reason: "DisruptionBudget".to_owned(),
        message: format!(
            "The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
        ),
        field: String::new(),
    }];
    Err(err)
}

/// What the disruption controller would expect: the replicas of the ReplicaSets controlling
/// the selected pods, and one for each pod no ReplicaSet controls.
fn expected_pods(state: &State, namespace: &str, selected: &[Value]) -> i64 {
    let replica_sets = GroupResource::new("apps", "replicasets");
    let mut owners = BTreeSet::new();
    let mut loose = 0i64;
    for pod in selected {
        let owner = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true && r["kind"] == "ReplicaSet")
            .and_then(|r| r["name"].as_str());
        match owner {
            Some(name) => {
                owners.insert(name.to_owned());
            }
            None => loose += 1,
        }
    }
    let owned: i64 = owners
        .iter()
        .map(|name| {
            state
                .get(&replica_sets, namespace, name)
                .and_then(|rs| rs.value().pointer("/spec/replicas").and_then(Value::as_i64))
                .unwrap_or(1)
        })
        .sum();
    owned + loose
}
