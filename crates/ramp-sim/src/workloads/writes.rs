//! The workload simulators' writes to the API: creating and deleting pods, the Deployment
//! controller's pass over its ReplicaSets, and replacing a status. Everything here goes
//! through the kube client; the decisions come from the pure modules.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde::Serialize;

use super::{Key, deployment, is_not_found};

/// Pods a reconcile created and deleted, by owner uid, in order.
#[derive(Default)]
pub(super) struct Written {
    pub(super) created: Vec<(String, Key)>,
    pub(super) deleted: Vec<(String, Key)>,
}

impl Written {
    pub(super) async fn create_pod(
        &mut self,
        client: &kube::Client,
        owner_uid: &str,
        pod: &Pod,
    ) -> Result<(), kube::Error> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let created = Api::<Pod>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), pod)
            .await?;
        self.created
            .push((owner_uid.to_string(), Key::of(&created)));
        Ok(())
    }

    pub(super) async fn delete_pod(
        &mut self,
        client: &kube::Client,
        owner_uid: &str,
        key: &Key,
    ) -> Result<(), kube::Error> {
        match Api::<Pod>::namespaced(client.clone(), &key.namespace)
            .delete(&key.name, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
        self.deleted.push((owner_uid.to_string(), key.clone()));
        Ok(())
    }
}

/// One pass of the Deployment controller: the ReplicaSet for the current template, one step
/// of the rollout, history clean-up, then status.
pub(super) async fn sync_deployment(
    client: &kube::Client,
    d: &Deployment,
    owned: &[Arc<ReplicaSet>],
    namespace: &str,
    name: &str,
) -> Result<Option<Instant>, (&'static str, kube::Error)> {
    let new_rs = owned
        .iter()
        .find(|rs| deployment::runs_template(rs, d))
        .cloned();
    let old: Vec<&ReplicaSet> = owned
        .iter()
        .filter(|rs| {
            new_rs
                .as_ref()
                .is_none_or(|n| n.metadata.uid != rs.metadata.uid)
        })
        .map(|rs| rs.as_ref())
        .collect();
    let rs_api = Api::<ReplicaSet>::namespaced(client.clone(), namespace);
    if !d.spec.paused.unwrap_or(false) {
        let (new_target, old_targets) = deployment::scale_step(d, new_rs.as_deref(), &old);
        match new_rs.as_deref() {
            None => {
                let revision = old
                    .iter()
                    .map(|rs| deployment::revision(rs))
                    .max()
                    .unwrap_or(0)
                    + 1;
                let rs = deployment::new_replica_set(d, revision, new_target);
                match rs_api.create(&PostParams::default(), &rs).await {
                    Ok(_) => {}
                    // Created by an earlier pass whose watch event is still on its way.
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(("create replicaset for", e)),
                }
                annotate_revision(client, d, revision)
                    .await
                    .map_err(|e| ("annotate", e))?;
            }
            Some(rs) => {
                scale_replica_set(&rs_api, rs, new_target, d)
                    .await
                    .map_err(|e| ("scale replicaset of", e))?;
                annotate_revision(client, d, deployment::revision(rs))
                    .await
                    .map_err(|e| ("annotate", e))?;
            }
        }
        for rs in &old {
            if let Some(target) = old_targets.get(rs.metadata.name.as_deref().unwrap_or_default()) {
                scale_replica_set(&rs_api, rs, *target, d)
                    .await
                    .map_err(|e| ("scale replicaset of", e))?;
            }
        }
        clean_up_history(d, &old, &rs_api)
            .await
            .map_err(|e| ("delete old replicaset of", e))?;
    }
    let all: Vec<&ReplicaSet> = owned.iter().map(|rs| rs.as_ref()).collect();
    let status = deployment::status(d, new_rs.as_deref(), &all, Timestamp::now());
    if d.status.as_ref() != Some(&status) {
        let api = Api::<Deployment>::namespaced(client.clone(), namespace);
        replace_status(&api, name, &status)
            .await
            .map_err(|e| ("update status of", e))?;
    }
    Ok(None)
}

pub(super) async fn annotate_revision(
    client: &kube::Client,
    d: &Deployment,
    revision: i64,
) -> Result<(), kube::Error> {
    let current = d.annotations().get(deployment::REVISION);
    if current.map(String::as_str) == Some(revision.to_string().as_str()) {
        return Ok(());
    }
    let api = Api::<Deployment>::namespaced(client.clone(), &d.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"annotations": {deployment::REVISION: revision.to_string()}}});
    api.patch(
        &d.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Deletes scaled-down old ReplicaSets beyond `revisionHistoryLimit` (default 10).
pub(super) async fn clean_up_history(
    d: &Deployment,
    old: &[&ReplicaSet],
    api: &Api<ReplicaSet>,
) -> Result<(), kube::Error> {
    let limit = d.spec.revision_history_limit.unwrap_or(10);
    let mut idle: Vec<&&ReplicaSet> = old
        .iter()
        .filter(|rs| {
            rs.spec.replicas == Some(0) && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
        })
        .collect();
    let excess = idle
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    idle.sort_by_key(|rs| deployment::revision(rs));
    for rs in idle.into_iter().take(excess) {
        match api
            .delete(&rs.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets `spec.replicas` (and the desired-replicas annotation) when it differs.
pub(super) async fn scale_replica_set(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    replicas: i32,
    d: &Deployment,
) -> Result<(), kube::Error> {
    if Some(&rs.spec).and_then(|s| s.replicas) == Some(replicas) {
        return Ok(());
    }
    let desired = Some(&d.spec).and_then(|s| s.replicas).unwrap_or(1);
    let patch = serde_json::json!({
        "metadata": {"annotations": {deployment::DESIRED_REPLICAS: desired.to_string()}},
        "spec": {"replicas": replicas},
    });
    api.patch(
        &rs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Replaces the whole `status` through the status subresource (a JSON patch, so that fields
/// the new status leaves out are removed, as the real controllers' updates do).
pub(super) async fn replace_status<K, S>(
    api: &Api<K>,
    name: &str,
    status: &S,
) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let value = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
    let patch: json_patch::Patch = serde_json::from_value(
        serde_json::json!([{"op": "add", "path": "/status", "value": value}]),
    )
    .map_err(kube::Error::SerdeError)?;
    api.patch_status(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await?;
    Ok(())
}
