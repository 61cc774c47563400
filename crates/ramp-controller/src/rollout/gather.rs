//! Step 1 of a reconcile: the snapshot of one rollout's world, read from the caches (its
//! ReplicaSets) and the API server (the Services and router objects it references, its pods
//! when a restart needs them). Reads only; nothing here writes or decides.

use crate::context::{Context, is_newer};
use crate::error::Error;
use crate::traffic::{ObjectName, RolloutTrafficTarget, RouterObjects, read_traffic};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::{Resource, ResourceExt};
use ramp_api::analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use ramp_api::rollout::Rollout;
use ramp_core::analysis::rollout::analyses;
use ramp_core::{
    AnalysisRunSummary, AnalysisTemplates, PodView, ReplicaSetView, RouterObjectView, ServiceView,
    Snapshot,
};

/// Reads everything `plan_rollout` looks at for `rollout`.
pub async fn snapshot(ctx: &Context, rollout: &Rollout, now: Timestamp) -> Result<Snapshot, Error> {
    let namespace = rollout.namespace().unwrap_or_else(|| "default".to_owned());
    let uid = rollout.uid().unwrap_or_default();
    let mut snapshot = Snapshot::new(rollout.clone(), now);
    snapshot.replica_sets = owned_replica_sets(ctx, &namespace, &uid)
        .iter()
        .map(ReplicaSetView::from_replica_set)
        .collect();
    snapshot.services = referenced_services(ctx, rollout, &namespace).await?;
    let (views, found) = router_objects(ctx, rollout).await?;
    snapshot.router_objects = views;
    snapshot.analysis_runs = owned_analysis_runs(ctx, &namespace, &uid)
        .iter()
        .filter_map(AnalysisRunSummary::from_run)
        .collect();
    snapshot.analysis_templates = analysis_templates(ctx, rollout, &namespace).await?;
    snapshot.traffic = ctx.with_memory(&uid, |m| m.traffic.clone());
    // What the routers hold now: anyone may have changed Ramp's fields since its last write.
    if let (Some(target), Some(last)) = (
        RolloutTrafficTarget::from_rollout(rollout),
        ramp_core::traffic::last_written(&snapshot),
    ) {
        snapshot.traffic_read = read_traffic(&target, &found, &last);
    }
    if rollout.spec.restart_at.is_some() {
        snapshot.pods = Some(pods(ctx, rollout, &namespace).await?);
    }
    Ok(snapshot)
}

/// The ReplicaSets the rollout controls: from the cache, each replaced by the object our own
/// last write returned when the cache has not caught up with it yet.
fn owned_replica_sets(ctx: &Context, namespace: &str, uid: &str) -> Vec<ReplicaSet> {
    let owned_by_rollout = |rs: &ReplicaSet| {
        rs.metadata.namespace.as_deref() == Some(namespace)
            && rs
                .owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true))
    };
    let cached: Vec<ReplicaSet> = ctx
        .replica_sets
        .state()
        .iter()
        .filter(|rs| owned_by_rollout(rs))
        .map(|rs| rs.as_ref().clone())
        .collect();
    ctx.with_memory(uid, |memory| {
        let mut merged = Vec::with_capacity(cached.len());
        for rs in cached {
            let name = rs.name_any();
            match memory.replica_sets.get(&name) {
                Some(written)
                    if is_newer(
                        written.resource_version().as_deref(),
                        rs.resource_version().as_deref(),
                    ) =>
                {
                    merged.push(written.clone());
                }
                _ => {
                    memory.replica_sets.remove(&name);
                    merged.push(rs);
                }
            }
        }
        // Created by us but not in the cache yet.
        for (name, written) in &memory.replica_sets {
            if merged.iter().all(|rs| &rs.name_any() != name)
                && written.meta().deletion_timestamp.is_none()
            {
                merged.push(written.clone());
            }
        }
        merged.sort_by_key(ResourceExt::name_any);
        merged
    })
}

/// The rollout's AnalysisRuns: the cache, each replaced by the object our own last write
/// returned when the cache has not caught up with it yet (so a run just created is never
/// created twice).
fn owned_analysis_runs(ctx: &Context, namespace: &str, uid: &str) -> Vec<AnalysisRun> {
    let cached: Vec<AnalysisRun> = ctx
        .analysis_runs
        .state()
        .iter()
        .filter(|run| {
            run.metadata.namespace.as_deref() == Some(namespace)
                && run
                    .owner_references()
                    .iter()
                    .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .map(|run| run.as_ref().clone())
        .collect();
    ctx.with_memory(uid, |memory| {
        let mut merged = Vec::with_capacity(cached.len());
        for run in cached {
            let name = run.name_any();
            match memory.analysis_runs.get(&name) {
                Some(written)
                    if is_newer(
                        written.resource_version().as_deref(),
                        run.resource_version().as_deref(),
                    ) =>
                {
                    merged.push(written.clone());
                }
                _ => {
                    memory.analysis_runs.remove(&name);
                    merged.push(run);
                }
            }
        }
        for (name, written) in &memory.analysis_runs {
            if merged.iter().all(|run| &run.name_any() != name) {
                merged.push(written.clone());
            }
        }
        merged
    })
}

/// Every AnalysisTemplate and ClusterAnalysisTemplate the rollout's analyses name, following
/// `templates[]` includes; a template not found is recorded as such (preflight reports it).
async fn analysis_templates(
    ctx: &Context,
    rollout: &Rollout,
    namespace: &str,
) -> Result<AnalysisTemplates, Error> {
    let mut found = AnalysisTemplates::default();
    let mut pending: Vec<(bool, String)> = analyses(rollout)
        .iter()
        .flat_map(|(_, analysis)| analysis.templates.iter().flatten())
        .map(|t| {
            (
                t.cluster_scope == Some(true),
                t.template_name.clone().unwrap_or_default(),
            )
        })
        .collect();
    let namespaced = Api::<AnalysisTemplate>::namespaced(ctx.client.clone(), namespace);
    let cluster = Api::<ClusterAnalysisTemplate>::all(ctx.client.clone());
    while let Some((cluster_scope, name)) = pending.pop() {
        let known = if cluster_scope {
            found.cluster.contains_key(&name)
        } else {
            found.namespaced.contains_key(&name)
        };
        if known || name.is_empty() {
            continue;
        }
        let spec = if cluster_scope {
            cluster
                .get_opt(&name)
                .await
                .map_err(|e| Error::api(format!("ClusterAnalysisTemplate {name}"), "get", e))?
                .map(|t| t.spec.0)
        } else {
            namespaced
                .get_opt(&name)
                .await
                .map_err(|e| Error::api(format!("AnalysisTemplate {namespace}/{name}"), "get", e))?
                .map(|t| t.spec)
        };
        for include in spec.iter().flat_map(|s| s.templates.iter().flatten()) {
            pending.push((
                include.cluster_scope == Some(true),
                include.template_name.clone().unwrap_or_default(),
            ));
        }
        if cluster_scope {
            found.cluster.insert(name, spec);
        } else {
            found.namespaced.insert(name, spec);
        }
    }
    Ok(found)
}

async fn referenced_services(
    ctx: &Context,
    rollout: &Rollout,
    namespace: &str,
) -> Result<Vec<ServiceView>, Error> {
    let names: Vec<&String> = if let Some(canary) = rollout.spec.canary() {
        [&canary.canary_service, &canary.stable_service]
            .into_iter()
            .flatten()
            .collect()
    } else if let Some(blue_green) = rollout.spec.blue_green() {
        std::iter::once(&blue_green.active_service)
            .chain(blue_green.preview_service.as_ref())
            .collect()
    } else {
        Vec::new()
    };
    let api = Api::<Service>::namespaced(ctx.client.clone(), namespace);
    let mut views = Vec::new();
    for name in names.into_iter().filter(|n| !n.is_empty()) {
        if views.iter().any(|v: &ServiceView| &v.name == name) {
            continue;
        }
        let service = api
            .get_opt(name)
            .await
            .map_err(|e| Error::api(format!("Service {namespace}/{name}"), "get", e))?;
        views.push(match service {
            Some(service) => ServiceView::from_service(&service),
            None => ServiceView::missing(name),
        });
    }
    Ok(views)
}

/// The router objects the rollout references, read whole: whether each one the rollout needs
/// exists (the canary Ingress is Ramp's to create, so its absence is no problem), and the
/// objects found, for reading what they hold.
async fn router_objects(
    ctx: &Context,
    rollout: &Rollout,
) -> Result<(Vec<RouterObjectView>, RouterObjects), Error> {
    let mut found = RouterObjects::default();
    let Some(target) = RolloutTrafficTarget::from_rollout(rollout) else {
        return Ok((Vec::new(), found));
    };
    let version = ctx.config.istio_version;
    let canary_ingresses: Vec<String> = target
        .routing
        .nginx
        .iter()
        .flat_map(|n| n.stable_ingress_names())
        .map(|stable| crate::traffic::nginx::canary_ingress_name(&target.rollout, stable))
        .collect();
    let mut views = Vec::new();
    for object in target.referenced_objects() {
        let value = match object.kind {
            "VirtualService" => {
                dynamic_get(ctx, &version.virtual_service_resource(), &object).await?
            }
            "DestinationRule" => {
                dynamic_get(ctx, &version.destination_rule_resource(), &object).await?
            }
            "Ingress" => Api::<Ingress>::namespaced(ctx.client.clone(), &object.namespace)
                .get_opt(&object.name)
                .await
                .map_err(|e| Error::api(object.to_string(), "get", e))?
                .and_then(|ingress| serde_json::to_value(ingress).ok()),
            // Services are in `services`.
            _ => continue,
        };
        // The canary Ingress is created by the router.
        if !(object.kind == "Ingress" && canary_ingresses.contains(&object.name)) {
            views.push(RouterObjectView {
                kind: object.kind.to_owned(),
                name: object.name.clone(),
                exists: value.is_some(),
            });
        }
        if let Some(value) = value {
            found.insert(object, value);
        }
    }
    Ok((views, found))
}

async fn dynamic_get(
    ctx: &Context,
    resource: &ApiResource,
    object: &ObjectName,
) -> Result<Option<serde_json::Value>, Error> {
    let api =
        Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &object.namespace, resource);
    match api.get_opt(&object.name).await {
        Ok(found) => Ok(found.and_then(|o| serde_json::to_value(o).ok())),
        // The kind itself is not served (Istio not installed): the object cannot exist.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(Error::api(object.to_string(), "get", e)),
    }
}

/// The rollout's pods, for `spec.restartAt`.
async fn pods(ctx: &Context, rollout: &Rollout, namespace: &str) -> Result<Vec<PodView>, Error> {
    let name = rollout.name_any();
    let selector = rollout
        .spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let api = Api::<Pod>::namespaced(ctx.client.clone(), namespace);
    let pods = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::api(format!("Pods of Rollout {namespace}/{name}"), "list", e))?;
    Ok(pods
        .items
        .iter()
        .filter_map(|pod| {
            let replica_set = pod
                .owner_references()
                .iter()
                .find(|o| o.kind == "ReplicaSet" && o.controller == Some(true))?
                .name
                .clone();
            let available = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Some(PodView {
                name: pod.name_any(),
                replica_set,
                created_at: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
                available,
                being_deleted: pod.metadata.deletion_timestamp.is_some(),
            })
        })
        .collect())
}
