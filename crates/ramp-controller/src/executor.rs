//! Steps 4 and 5 of a reconcile: apply a `RolloutPlan`'s actions in the order given, stop at
//! the first failure, then write the status (only the fields that changed, with
//! `observedGeneration`) and record the plan's events. Decides nothing: the order of the
//! actions is `ramp-core`'s safety argument, and this module keeps it.

use crate::context::Context;
use crate::error::Error;
use crate::traffic::{RolloutTrafficTarget, TrafficWrite};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType as KubeEventType};
use kube::{Resource, ResourceExt};
use ramp_api::analysis::AnalysisRun;
use ramp_api::rollout::{PodTemplateMetadata, Rollout};
use ramp_core::plan::EventType;
use ramp_core::snapshot::{
    EPHEMERAL_METADATA_ANNOTATION, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION,
};
use ramp_core::{Action, RolloutEvent, RolloutPlan};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Applies `plan` to the cluster for `rollout`. On error, nothing after the failed action was
/// attempted and the status was not written: the next reconcile plans again from the world as
/// it then is.
pub async fn apply_plan(ctx: &Context, rollout: &Rollout, plan: &RolloutPlan) -> Result<(), Error> {
    let acted = || {
        if let Some(metrics) = &ctx.config.metrics {
            metrics.rollout_acted(
                &rollout.namespace().unwrap_or_default(),
                &rollout.name_any(),
            );
        }
    };
    let mut router_writes = Vec::new();
    for action in &plan.actions {
        apply_action(ctx, rollout, action, &mut router_writes).await?;
        acted();
    }
    if write_status(ctx, rollout, plan).await? {
        acted();
    }
    let router_events = router_writes
        .into_iter()
        // The plan already announces selector switches and weight changes in upstream's words.
        .filter(|w| w.reason != "SwitchService")
        .map(|w| RolloutEvent::normal(w.reason, w.summary));
    for event in plan.events.iter().cloned().chain(router_events) {
        publish(ctx, rollout, &event).await;
    }
    Ok(())
}

/// Records one event on the rollout. A failure to record is logged, never fatal: the rollout's
/// progress must not depend on the events API.
pub async fn publish(ctx: &Context, rollout: &Rollout, event: &RolloutEvent) {
    let type_ = match event.type_ {
        EventType::Normal => KubeEventType::Normal,
        EventType::Warning => KubeEventType::Warning,
    };
    if let Some(metrics) = &ctx.config.metrics {
        let namespace = rollout.namespace().unwrap_or_default();
        let type_label = if type_ == KubeEventType::Normal {
            "Normal"
        } else {
            "Warning"
        };
        metrics.rollout_event(&namespace, &rollout.name_any(), type_label, &event.reason);
    }
    let kube_event = Event {
        type_,
        reason: event.reason.clone(),
        note: Some(event.message.clone()),
        // The recorder folds events with the same reason and action into one series that
        // keeps the first note; distinct messages (each scale, each switch) must stay apart.
        action: event.message.chars().take(128).collect(),
        secondary: None,
    };
    if let Err(error) = ctx
        .recorder
        .publish(&kube_event, &rollout.object_ref(&()))
        .await
    {
        tracing::warn!(rollout = %rollout.name_any(), reason = %event.reason, %error, "could not record event");
    }
}

async fn apply_action(
    ctx: &Context,
    rollout: &Rollout,
    action: &Action,
    router_writes: &mut Vec<TrafficWrite>,
) -> Result<(), Error> {
    let namespace = rollout.namespace().unwrap_or_else(|| "default".to_owned());
    let uid = rollout.uid().unwrap_or_default();
    let replica_sets = Api::<ReplicaSet>::namespaced(ctx.client.clone(), &namespace);
    let remember = |rs: ReplicaSet| {
        ctx.with_memory(&uid, |m| {
            m.replica_sets.insert(rs.name_any(), rs);
        });
    };
    match action {
        Action::CreateReplicaSet {
            name,
            pod_template_hash,
            revision,
            replicas,
            template,
        } => {
            let rs = new_replica_set(
                rollout,
                name,
                pod_template_hash,
                *revision,
                *replicas,
                template,
            );
            match replica_sets.create(&PostParams::default(), &rs).await {
                Ok(created) => remember(created),
                // Created by an earlier attempt whose answer we lost: the cache will show it.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::debug!(replica_set = %name, "ReplicaSet already exists");
                }
                Err(e) => {
                    return Err(Error::api(
                        format!("ReplicaSet {namespace}/{name}"),
                        "create",
                        e,
                    ));
                }
            }
        }
        Action::ScaleReplicaSet { name, to, .. } => {
            let patch = json!({ "spec": { "replicas": to } });
            let scaled = replica_sets
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::api(format!("ReplicaSet {namespace}/{name}"), "scale", e))?;
            remember(scaled);
        }
        Action::AnnotateReplicaSet { name, key, value } => {
            let patch = json!({ "metadata": { "annotations": { key: value } } });
            let annotated = replica_sets
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::api(format!("ReplicaSet {namespace}/{name}"), "annotate", e))?;
            remember(annotated);
        }
        Action::PointService {
            service,
            pod_template_hash,
        } => {
            let canary = rollout.spec.canary();
            let blue_green = rollout.spec.blue_green();
            let field = if canary.and_then(|c| c.canary_service.as_deref()) == Some(service) {
                "spec.strategy.canary.canaryService"
            } else if blue_green.is_some_and(|b| &b.active_service == service) {
                "spec.strategy.blueGreen.activeService"
            } else if blue_green.is_some() {
                "spec.strategy.blueGreen.previewService"
            } else {
                "spec.strategy.canary.stableService"
            };
            let written = ctx
                .services
                .point_at(
                    &namespace,
                    service,
                    field,
                    &rollout.name_any(),
                    pod_template_hash,
                )
                .await
                .map_err(|source| Error::Traffic {
                    rollout: format!("{namespace}/{}", rollout.name_any()),
                    source,
                })?;
            router_writes.extend(written);
        }
        Action::SetTraffic(intent) => {
            if let Some(target) = RolloutTrafficTarget::from_rollout(rollout) {
                let writes =
                    ctx.routers
                        .apply(&target, intent)
                        .await
                        .map_err(|source| Error::Traffic {
                            rollout: format!("{namespace}/{}", rollout.name_any()),
                            source,
                        })?;
                router_writes.extend(writes);
            }
            ctx.with_memory(&uid, |m| m.traffic = Some(intent.clone()));
        }
        Action::EvictPod { name } => {
            let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace);
            match pods.evict(name, &EvictParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(kube::Error::Api(status)) if status.code == 429 => {
                    return Err(Error::EvictionRefused {
                        object: format!("{namespace}/{name}"),
                        message: status.message,
                    });
                }
                Err(e) => return Err(Error::api(format!("Pod {namespace}/{name}"), "evict", e)),
            }
        }
        Action::CreateAnalysisRun { run } => {
            let mut run = run.as_ref().clone();
            let name = run.name_any();
            run.metadata.namespace = Some(namespace.clone());
            run.metadata.owner_references = rollout.controller_owner_ref(&()).map(|o| vec![o]);
            let runs = Api::<AnalysisRun>::namespaced(ctx.client.clone(), &namespace);
            match runs.create(&PostParams::default(), &run).await {
                Ok(created) => ctx.with_memory(&uid, |m| {
                    m.analysis_runs.insert(name, created);
                }),
                // Created by an earlier attempt whose answer we lost: the cache will show it.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::debug!(analysis_run = %name, "AnalysisRun already exists");
                }
                Err(e) => {
                    return Err(Error::api(
                        format!("AnalysisRun {namespace}/{name}"),
                        "create",
                        e,
                    ));
                }
            }
        }
        Action::TerminateAnalysisRun { name } => {
            let runs = Api::<AnalysisRun>::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({ "spec": { "terminate": true } });
            match runs
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(patched) => ctx.with_memory(&uid, |m| {
                    m.analysis_runs.insert(name.clone(), patched);
                }),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    return Err(Error::api(
                        format!("AnalysisRun {namespace}/{name}"),
                        "terminate",
                        e,
                    ));
                }
            }
        }
        Action::DeleteAnalysisRun { name } => {
            let runs = Api::<AnalysisRun>::namespaced(ctx.client.clone(), &namespace);
            match runs.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    return Err(Error::api(
                        format!("AnalysisRun {namespace}/{name}"),
                        "delete",
                        e,
                    ));
                }
            }
            ctx.with_memory(&uid, |m| m.analysis_runs.remove(name));
        }
        Action::DeleteReplicaSet { name } => {
            match replica_sets.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    return Err(Error::api(
                        format!("ReplicaSet {namespace}/{name}"),
                        "delete",
                        e,
                    ));
                }
            }
            ctx.with_memory(&uid, |m| m.replica_sets.remove(name));
        }
        Action::SetPodMetadata {
            replica_set,
            pod_template_hash,
            metadata,
            previous,
        } => {
            let changes = pod_metadata_patch(metadata, previous);
            let record = if metadata == &PodTemplateMetadata::default() {
                Value::Null
            } else {
                let encoded = serde_json::to_string(metadata).map_err(|source| Error::Encode {
                    object: format!("ReplicaSet {namespace}/{replica_set}"),
                    source,
                })?;
                Value::String(encoded)
            };
            // The template first, so pods created from now on carry the new metadata.
            let patch = json!({
                "metadata": {"annotations": {EPHEMERAL_METADATA_ANNOTATION: record}},
                "spec": {"template": {"metadata": changes}}
            });
            let patched = replica_sets
                .patch(replica_set, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| {
                    Error::api(
                        format!("ReplicaSet {namespace}/{replica_set}"),
                        "patch pod metadata of",
                        e,
                    )
                })?;
            remember(patched);
            let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace);
            // The rollout's own selector too: another rollout's pods may share a hash.
            let selector = rollout
                .spec
                .selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .into_iter()
                .flatten()
                .filter(|(key, _)| key.as_str() != POD_TEMPLATE_HASH_LABEL)
                .map(|(key, value)| format!("{key}={value},"))
                .collect::<String>()
                + &format!("{POD_TEMPLATE_HASH_LABEL}={pod_template_hash}");
            let listed = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| {
                    Error::api(
                        format!("Pods of ReplicaSet {namespace}/{replica_set}"),
                        "list",
                        e,
                    )
                })?;
            let patch = json!({ "metadata": changes });
            for pod in listed
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                let name = pod.name_any();
                match pods
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    // Deleted since the list: nothing left to label.
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(e) => {
                        return Err(Error::api(
                            format!("Pod {namespace}/{name}"),
                            "patch metadata of",
                            e,
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The merge-patch `metadata` that sets `wanted`'s labels and annotations and removes those
/// only `previous` had (never the pod-template hash, which selects the pods).
fn pod_metadata_patch(wanted: &PodTemplateMetadata, previous: &PodTemplateMetadata) -> Value {
    let section = |wanted: &Option<BTreeMap<String, String>>,
                   previous: &Option<BTreeMap<String, String>>| {
        let mut fields = Map::new();
        for key in previous.iter().flatten().map(|(k, _)| k) {
            if key != POD_TEMPLATE_HASH_LABEL {
                fields.insert(key.clone(), Value::Null);
            }
        }
        for (key, value) in wanted.iter().flatten() {
            fields.insert(key.clone(), Value::String(value.clone()));
        }
        Value::Object(fields)
    };
    json!({
        "labels": section(&wanted.labels, &previous.labels),
        "annotations": section(&wanted.annotations, &previous.annotations),
    })
}

/// `<rollout>-<hash>`, controlled by the rollout, selecting its pods by the rollout's selector
/// plus the hash label, and carrying the revision annotation as upstream's do.
fn new_replica_set(
    rollout: &Rollout,
    name: &str,
    hash: &str,
    revision: i64,
    replicas: i32,
    template: &PodTemplateSpec,
) -> ReplicaSet {
    let mut template = template.clone();
    let template_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    template_meta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.to_owned(), hash.to_owned());
    let labels = template_meta.labels.clone();
    let mut selector = rollout.spec.selector.clone().unwrap_or_default();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.to_owned(), hash.to_owned());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: rollout.namespace(),
            labels,
            annotations: Some(BTreeMap::from([(
                REVISION_ANNOTATION.to_owned(),
                revision.to_string(),
            )])),
            owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: rollout.spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    }
}

/// Writes the status fields that differ from what was read, plus `observedGeneration`; writes
/// nothing when nothing differs.
/// Writes the plan's status when it differs from the rollout's; whether it wrote.
async fn write_status(ctx: &Context, rollout: &Rollout, plan: &RolloutPlan) -> Result<bool, Error> {
    let name = rollout.name_any();
    let namespace = rollout.namespace().unwrap_or_else(|| "default".to_owned());
    let object = format!("Rollout {namespace}/{name}");
    let encode = |source| Error::Encode {
        object: object.clone(),
        source,
    };
    let old = serde_json::to_value(rollout.status.clone().unwrap_or_default()).map_err(encode)?;
    let new = serde_json::to_value(&plan.status).map_err(encode)?;
    let Some(mut diff) = merge_diff(&old, &new) else {
        return Ok(false);
    };
    if let (Value::Object(fields), Some(generation)) = (&mut diff, &plan.status.observed_generation)
    {
        fields.insert("observedGeneration".to_owned(), json!(generation));
    }
    let api = Api::<Rollout>::namespaced(ctx.client.clone(), &namespace);
    let written = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": diff })),
        )
        .await
        .map_err(|e| Error::api(object.clone(), "patch status", e))?;
    let uid = rollout.uid().unwrap_or_default();
    ctx.with_memory(&uid, |m| m.rollout = Some(written));
    Ok(true)
}

/// The JSON merge patch (RFC 7386) turning `old` into `new`; `None` when they are equal.
/// Arrays are replaced whole, as merge patches require.
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut diff = Map::new();
            for (key, new_value) in new {
                match old.get(key) {
                    Some(old_value) if old_value == new_value => {}
                    Some(old_value @ Value::Object(_)) if new_value.is_object() => {
                        if let Some(inner) = merge_diff(old_value, new_value) {
                            diff.insert(key.clone(), inner);
                        }
                    }
                    _ => {
                        diff.insert(key.clone(), new_value.clone());
                    }
                }
            }
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                diff.insert(key.clone(), Value::Null);
            }
            (!diff.is_empty()).then_some(Value::Object(diff))
        }
        _ if old == new => None,
        _ => Some(new.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::merge_diff;
    use serde_json::json;

    #[test]
    fn diff_carries_only_changed_and_removed_fields() {
        let old = json!({"phase": "Paused", "currentStepIndex": 1, "canary": {"weights": {"canary": {"weight": 5}}, "x": 1}, "pauseConditions": [{"reason": "CanaryPauseStep"}]});
        let new = json!({"phase": "Progressing", "currentStepIndex": 1, "canary": {"weights": {"canary": {"weight": 20}}, "x": 1}});
        assert_eq!(
            merge_diff(&old, &new),
            Some(
                json!({"phase": "Progressing", "canary": {"weights": {"canary": {"weight": 20}}}, "pauseConditions": null})
            )
        );
    }

    #[test]
    fn equal_documents_need_no_patch() {
        let doc = json!({"phase": "Healthy", "conditions": [{"type": "Available"}]});
        assert_eq!(merge_diff(&doc, &doc), None);
    }

    #[test]
    fn applying_the_diff_yields_the_new_document() {
        let old = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        let new = json!({"a": {"b": 2, "c": [1]}, "e": true});
        let mut patched = old.clone();
        json_patch::merge(&mut patched, &merge_diff(&old, &new).unwrap_or_default());
        assert_eq!(patched, new);
    }
}
