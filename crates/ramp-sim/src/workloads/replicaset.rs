//! The ReplicaSet controller's decisions: which pods to delete first on scale-down and what
//! status to report. Pure: the loop in `mod.rs` gathers the pods and writes the results.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::kubelet;

/// Whether a pod still counts toward its owner's replicas (the real controller's "active").
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// A pod built from a template the way the ReplicaSet and Job controllers do it.
pub fn pod_from_template(
    namespace: &str,
    generate_name: String,
    template: Option<&PodTemplateSpec>,
    owner: OwnerReference,
    extra_labels: &BTreeMap<String, String>,
    extra_annotations: &BTreeMap<String, String>,
) -> Pod {
    let meta = template.and_then(|t| t.metadata.as_ref());
    let mut labels = meta.and_then(|m| m.labels.clone()).unwrap_or_default();
    for (k, v) in extra_labels {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut annotations = meta.and_then(|m| m.annotations.clone()).unwrap_or_default();
    for (k, v) in extra_annotations {
        annotations.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: Some(namespace.to_string()),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: meta.and_then(|m| m.finalizers.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.and_then(|t| t.spec.clone()),
        status: None,
    }
}

/// The controller owner reference an owner puts on what it creates.
pub fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Facts about a pod that decide the order in which the controller deletes pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionRank {
    pub name: String,
    pub phase: Option<String>,
    pub ready_since: Option<Timestamp>,
    /// `controller.kubernetes.io/pod-deletion-cost` (default 0): cheaper pods go first.
    pub deletion_cost: i32,
    pub restarts: i32,
    pub created: Option<Timestamp>,
    /// The order in which this simulator created the pod: breaks ties between pods created
    /// within the same second (creation timestamps only have second precision).
    pub created_seq: u64,
}

impl DeletionRank {
    pub fn of(pod: &Pod, created_seq: u64) -> Self {
        let restarts = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| {
                cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
            });
        Self {
            name: pod.metadata.name.clone().unwrap_or_default(),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            ready_since: kubelet::ready_since(pod),
            deletion_cost: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(0),
            restarts,
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
            created_seq,
        }
    }
}

/// Sorts pods so that the ones to delete first come first, like the real controller: pending
/// before running, unready before ready, lower pod-deletion-cost first, recently ready before
/// long ready, more restarts before fewer, and newer before older.
pub fn sort_for_deletion(pods: &mut [DeletionRank]) {
    let phase_rank = |p: &Option<String>| match p.as_deref() {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    pods.sort_by_key(|p| {
        (
            phase_rank(&p.phase),
            p.ready_since.is_some(),
            p.deletion_cost,
            Reverse(p.ready_since),
            Reverse(p.restarts),
            Reverse(p.created),
            Reverse(p.created_seq),
        )
    });
}

/// Whether a ready pod has been ready for `min_ready_seconds` at `now`, and if not, when it will.
pub fn availability(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> (bool, Option<Timestamp>) {
    let Some(since) = kubelet::ready_since(pod) else {
        return (false, None);
    };
    if min_ready_seconds <= 0 {
        return (true, None);
    }
    let at = since.saturating_add(SignedDuration::from_secs(i64::from(min_ready_seconds)));
    match at {
        Ok(at) if at > now => (false, Some(at)),
        _ => (true, None),
    }
}

/// The status the controller reports for `rs` given its active pods; also when the next pod
/// becomes available (the instant to look again).
pub fn status(
    rs: &ReplicaSet,
    active_pods: &[&Pod],
    manage_error: Option<(&str, String)>,
    now: Timestamp,
) -> (ReplicaSetStatus, Option<Timestamp>) {
    let spec = Some(&rs.spec);
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    let mut next: Option<Timestamp> = None;
    for pod in active_pods {
        let labels = pod.metadata.labels.as_ref();
        if template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            fully_labeled += 1;
        }
        if kubelet::is_ready(pod) {
            ready += 1;
        }
        let (is_available, at) = availability(pod, min_ready, now);
        if is_available {
            available += 1;
        }
        if let Some(at) = at {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    let previous = rs.status.as_ref();
    let conditions = match manage_error {
        Some((reason, message)) => {
            let kept = previous
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.type_.as_deref() == Some("ReplicaFailure"))
                })
                .filter(|c| {
                    c.status.as_deref() == Some("True") && c.reason.as_deref() == Some(reason)
                })
                .and_then(|c| c.last_transition_time.clone());
            Some(vec![ReplicaSetCondition {
                type_: Some("ReplicaFailure".to_string()),
                status: Some("True".to_string()),
                reason: Some(reason.to_string()),
                message: Some(message),
                last_transition_time: Some(kept.unwrap_or(Time(now))),
            }])
        }
        None => None,
    };
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    // As kube-controller-manager writes it: the counts but `replicas` are left out when zero
    // (`omitempty`), and terminating pods are counted (none: the sim's pods go at once).
    let nonzero = |n: usize| (n > 0).then(|| count(n));
    let status = ReplicaSetStatus {
        replicas: count(active_pods.len()),
        fully_labeled_replicas: nonzero(fully_labeled),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        terminating_replicas: Some(0),
        observed_generation: rs.metadata.generation,
        conditions,
    };
    (status, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(
        name: &str,
        phase: &str,
        ready_since: Option<i64>,
        created: i64,
        seq: u64,
    ) -> DeletionRank {
        DeletionRank {
            name: name.to_string(),
            phase: Some(phase.to_string()),
            ready_since: ready_since.map(|s| Timestamp::from_second(s).unwrap_or_default()),
            deletion_cost: 0,
            restarts: 0,
            created: Timestamp::from_second(created).ok(),
            created_seq: seq,
        }
    }

    #[test]
    fn deletes_unready_then_newest_first() {
        let mut pods = vec![
            rank("old-ready", "Running", Some(100), 10, 1),
            rank("new-ready", "Running", Some(100), 10, 3),
            rank("pending", "Pending", None, 5, 0),
            rank("unready", "Running", None, 1, 0),
            rank("recently-ready", "Running", Some(200), 10, 2),
        ];
        sort_for_deletion(&mut pods);
        let order: Vec<_> = pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            order,
            [
                "pending",
                "unready",
                "recently-ready",
                "new-ready",
                "old-ready"
            ]
        );
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let mut pod = Pod::default();
        let since = Timestamp::from_second(1_000).unwrap_or_default();
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "Ready".to_string(),
                status: "True".to_string(),
                last_transition_time: Some(Time(since)),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let at = |s: i64| Timestamp::from_second(s).unwrap_or_default();
        assert_eq!(availability(&pod, 0, at(1_000)), (true, None));
        assert_eq!(availability(&pod, 5, at(1_002)), (false, Some(at(1_005))));
        assert_eq!(availability(&pod, 5, at(1_005)), (true, None));
    }
}
