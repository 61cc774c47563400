//! The Deployment controller's decisions (used for Rollouts' `workloadRef`): the ReplicaSet for
//! the current template (named with a pod-template hash), the replica counts of a rolling or
//! recreate update, and the Deployment's status. Pure: `mod.rs` does the reads and writes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// A hash of a pod template in Kubernetes' alphabet (FNV-1a over its JSON; not byte-identical
/// to the real controller's hash, which hashes Go's encoding).
pub fn template_hash(template: Option<&PodTemplateSpec>) -> String {
    let bytes = serde_json::to_vec(&template).unwrap_or_default();
    let hash = bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// The template of a ReplicaSet without the hash label the Deployment controller adds.
fn template_without_hash(rs: &ReplicaSet) -> Option<PodTemplateSpec> {
    let mut template = Some(&rs.spec)?.template.clone()?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    Some(template)
}

/// Whether `rs` runs the Deployment's current template.
pub fn runs_template(rs: &ReplicaSet, deployment: &Deployment) -> bool {
    let wanted = Some(&deployment.spec).map(|s| &s.template);
    template_without_hash(rs).as_ref() == wanted
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn desired(deployment: &Deployment) -> i32 {
    Some(&deployment.spec)
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    Some(&rs.spec).and_then(|s| s.replicas).unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// Resolves an int-or-percent against `total` (percentages round up for surge, down otherwise).
fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool, default: i32) -> i32 {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => (*n).max(0),
        Some(IntOrString::String(s)) => {
            let percent: f64 = s.trim_end_matches('%').parse().unwrap_or(25.0);
            let exact = f64::from(total) * percent / 100.0;
            let rounded = if round_up {
                exact.ceil()
            } else {
                exact.floor()
            };
            rounded as i32
        }
    }
}

/// `(maxSurge, maxUnavailable)` of a rolling update; both zero means one unavailable.
pub fn surge_and_unavailable(deployment: &Deployment) -> (i32, i32) {
    let replicas = desired(deployment);
    let rolling = deployment
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let default_surge = scaled(Some(&IntOrString::String("25%".into())), replicas, true, 0);
    let default_unavailable = scaled(Some(&IntOrString::String("25%".into())), replicas, false, 0);
    let surge = scaled(
        rolling.and_then(|r| r.max_surge.as_ref()),
        replicas,
        true,
        default_surge,
    );
    let unavailable = scaled(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        replicas,
        false,
        default_unavailable,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn is_recreate(deployment: &Deployment) -> bool {
    deployment
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// The ReplicaSet the controller creates for the Deployment's current template.
pub fn new_replica_set(deployment: &Deployment, revision: i64, replicas: i32) -> ReplicaSet {
    let spec = deployment.spec.clone();
    let hash = template_hash(Some(&spec.template));
    let name = format!(
        "{}-{hash}",
        deployment.metadata.name.as_deref().unwrap_or_default()
    );
    let mut template = spec.template;
    let template_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    let mut labels = template_meta.labels.clone().unwrap_or_default();
    labels.insert(POD_TEMPLATE_HASH.to_string(), hash.clone());
    template_meta.labels = Some(labels.clone());
    let mut selector = spec.selector;
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.to_string(), hash);
    let (surge, _) = surge_and_unavailable(deployment);
    let annotations = BTreeMap::from([
        (REVISION.to_string(), revision.to_string()),
        (
            DESIRED_REPLICAS.to_string(),
            desired(deployment).to_string(),
        ),
        (
            MAX_REPLICAS.to_string(),
            (desired(deployment) + surge).to_string(),
        ),
    ]);
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: deployment.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![super::replicaset::controller_ref(
                "apps/v1",
                "Deployment",
                &deployment.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector { ..selector },
            template: Some(template),
        },
        status: None,
    }
}

/// Target `spec.replicas` of the new ReplicaSet and of each old one (by name), one step of a
/// rolling (or recreate) update, from the current counts.
pub fn scale_step(
    deployment: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> (i32, BTreeMap<String, i32>) {
    let replicas = desired(deployment);
    let mut old_targets: BTreeMap<String, i32> = old
        .iter()
        .map(|rs| {
            (
                rs.metadata.name.clone().unwrap_or_default(),
                spec_replicas(rs),
            )
        })
        .collect();
    let new_current = new_rs.map_or(0, spec_replicas);
    let old_total: i32 = old.iter().map(|rs| spec_replicas(rs)).sum();
    if is_recreate(deployment) {
        // Recreate: every old pod is gone before any new one starts.
        let old_running: i32 = old
            .iter()
            .map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas))
            .sum();
        if old_total > 0 || old_running > 0 {
            old_targets.values_mut().for_each(|v| *v = 0);
            return (new_current.min(replicas), old_targets);
        }
        return (replicas, old_targets);
    }
    if old_total == 0 {
        return (replicas, old_targets);
    }
    let (surge, max_unavailable) = surge_and_unavailable(deployment);
    let mut new_target = new_current;
    let total = old_total + new_current;
    let max_total = replicas + surge;
    if new_current > replicas {
        new_target = replicas;
    } else if total < max_total {
        new_target = (new_current + (max_total - total)).min(replicas);
    }
    // Scale old ReplicaSets down as far as availability allows: first their unavailable pods,
    // then available ones, oldest ReplicaSet first.
    let min_available = replicas - max_unavailable;
    let new_unavailable = new_current - new_rs.map_or(0, available);
    let mut budget = total - min_available - new_unavailable.max(0);
    if budget <= 0 {
        return (new_target, old_targets);
    }
    let mut by_age: Vec<&&ReplicaSet> = old.iter().collect();
    by_age.sort_by_key(|rs| (revision(rs), rs.metadata.creation_timestamp.clone()));
    for rs in &by_age {
        let name = rs.metadata.name.clone().unwrap_or_default();
        let unhealthy = (spec_replicas(rs) - available(rs)).max(0);
        let cut = unhealthy.min(budget);
        budget -= cut;
        if let Some(target) = old_targets.get_mut(&name) {
            *target -= cut;
        }
    }
    let total_available: i32 =
        old.iter().map(|rs| available(rs)).sum::<i32>() + new_rs.map_or(0, available);
    let mut budget = (total_available - min_available).max(0);
    for rs in &by_age {
        let name = rs.metadata.name.clone().unwrap_or_default();
        if let Some(target) = old_targets.get_mut(&name) {
            let cut = (*target).min(budget);
            *target -= cut;
            budget -= cut;
        }
    }
    (new_target, old_targets)
}

/// The Deployment's status from its ReplicaSets.
pub fn status(
    deployment: &Deployment,
    new_rs: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    now: Timestamp,
) -> DeploymentStatus {
    let replicas = desired(deployment);
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let total = sum(&|rs| rs.status.as_ref().map_or(0, |s| s.replicas));
    let ready = sum(&|rs| {
        rs.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    });
    let available_total = sum(&available);
    let updated = new_rs
        .and_then(|rs| rs.status.as_ref())
        .map_or(0, |s| s.replicas);
    let (_, max_unavailable) = surge_and_unavailable(deployment);
    let previous = deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref());
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let before = previous.and_then(|cs| cs.iter().find(|c| c.type_.as_deref() == Some(type_)));
        let same_status = before.filter(|c| c.status.as_deref() == Some(status));
        let same_reason = same_status.filter(|c| {
            c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(message.as_str())
        });
        DeploymentCondition {
            type_: Some(type_.to_string()),
            status: Some(status.to_string()),
            reason: Some(reason.to_string()),
            message: Some(message),
            last_transition_time: Some(
                same_status
                    .and_then(|c| c.last_transition_time.clone())
                    .unwrap_or(Time(now)),
            ),
            last_update_time: Some(
                same_reason
                    .and_then(|c| c.last_update_time.clone())
                    .unwrap_or(Time(now)),
            ),
        }
    };
    let minimum = available_total >= replicas - max_unavailable;
    let available_condition = if minimum {
        condition(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
        )
    } else {
        condition(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    let new_name = new_rs
        .and_then(|rs| rs.metadata.name.clone())
        .unwrap_or_default();
    let complete = new_rs
        .is_some_and(|rs| spec_replicas(rs) == replicas && available(rs) >= replicas)
        && total == updated;
    let progressing = if complete {
        condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
        )
    } else {
        condition(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{new_name}\" is progressing."),
        )
    };
    DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available_total),
        unavailable_replicas: Some((replicas - available_total).max(0)),
        conditions: Some(vec![available_condition, progressing]),
        ..DeploymentStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetStatus};

    fn deployment(replicas: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn rs(name: &str, revision: i64, spec: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(BTreeMap::from([(REVISION.into(), revision.to_string())])),
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(spec),
                ..Default::default()
            },
            status: Some(ReplicaSetStatus {
                replicas: spec,
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn hash_is_stable_and_template_sensitive() {
        let d = deployment(1);
        let a = template_hash(Some(&d.spec).map(|s| &s.template));
        assert_eq!(a, template_hash(Some(&d.spec).map(|s| &s.template)));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let mut other = d.clone();
        other.spec.template.metadata = Some(ObjectMeta {
            labels: Some(BTreeMap::from([("v".into(), "2".into())])),
            ..Default::default()
        });
        assert_ne!(a, template_hash(Some(&other.spec.template)));
    }

    #[test]
    fn rolling_update_surges_then_scales_old_down_with_availability() {
        // 4 replicas: maxSurge 1 (25% up), maxUnavailable 1 (25% down).
        let d = deployment(4);
        let old = rs("web-old", 1, 4, 4);
        let new = rs("web-new", 2, 0, 0);
        let (new_target, old_targets) = scale_step(&d, Some(&new), &[&old]);
        assert_eq!(new_target, 1);
        assert_eq!(old_targets["web-old"], 3);

        let old = rs("web-old", 1, 3, 3);
        let new = rs("web-new", 2, 1, 1);
        let (new_target, old_targets) = scale_step(&d, Some(&new), &[&old]);
        assert_eq!(new_target, 2);
        assert_eq!(old_targets["web-old"], 2);

        // A new ReplicaSet that is not available yet holds the old ones at minimum availability.
        let old = rs("web-old", 1, 3, 3);
        let new = rs("web-new", 2, 2, 0);
        let (_, old_targets) = scale_step(&d, Some(&new), &[&old]);
        assert_eq!(old_targets["web-old"], 3);

        let done = rs("web-old", 1, 0, 0);
        let (new_target, _) = scale_step(&d, Some(&new), &[&done]);
        assert_eq!(new_target, 4);
    }
}
