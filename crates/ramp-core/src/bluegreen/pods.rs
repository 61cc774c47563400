//! What blue-green puts on pods besides the rollout's own template: the anti-affinity that
//! keeps a new revision's pods off the nodes of the stable revision's, and the
//! `activeMetadata` / `previewMetadata` a ReplicaSet's pods carry while they play that role.

use crate::plan::Action;
use crate::snapshot::{POD_TEMPLATE_HASH_LABEL, ReplicaSetView};
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use ramp_api::rollout::{AntiAffinity, BlueGreenStrategy, PodTemplateMetadata};

/// Topology of the injected anti-affinity term: one node.
const HOSTNAME_TOPOLOGY: &str = "kubernetes.io/hostname";

/// Adds the `antiAffinity` term against the stable ReplicaSet's pods to the template of the
/// ReplicaSet `actions` create for `new_hash`. Nothing on an initial deploy (no other stable
/// revision) or without `antiAffinity`.
pub(super) fn inject_anti_affinity(
    strategy: &BlueGreenStrategy,
    stable_hash: Option<&str>,
    new_hash: &str,
    actions: &mut [Action],
) {
    let (Some(anti_affinity), Some(stable)) = (strategy.anti_affinity.as_ref(), stable_hash) else {
        return;
    };
    if stable == new_hash {
        return;
    }
    for action in actions {
        if let Action::CreateReplicaSet {
            pod_template_hash,
            template,
            ..
        } = action
            && pod_template_hash == new_hash
        {
            add_anti_affinity(template, anti_affinity, stable);
        }
    }
}

/// Appends the term to the template's own anti-affinity (which stays as the user wrote it).
fn add_anti_affinity(template: &mut PodTemplateSpec, anti_affinity: &AntiAffinity, stable: &str) {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: POD_TEMPLATE_HASH_LABEL.to_owned(),
                operator: "In".to_owned(),
                values: Some(vec![stable.to_owned()]),
            }]),
            match_labels: None,
        }),
        topology_key: HOSTNAME_TOPOLOGY.to_owned(),
        ..PodAffinityTerm::default()
    };
    let pod_anti_affinity = template
        .spec
        .get_or_insert_with(Default::default)
        .affinity
        .get_or_insert_with(Affinity::default)
        .pod_anti_affinity
        .get_or_insert_with(PodAntiAffinity::default);
    match &anti_affinity.preferred_during_scheduling_ignored_during_execution {
        Some(preferred) => pod_anti_affinity
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight: preferred.weight,
                pod_affinity_term: term,
            }),
        None => pod_anti_affinity
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term),
    }
}

/// The `SetPodMetadata` actions that give every live ReplicaSet's pods the metadata of their
/// role: the newest ReplicaSet carries `previewMetadata` until it is stable and
/// `activeMetadata` from then on, the stable ReplicaSet of an update in progress carries
/// `activeMetadata`, and every other ReplicaSet loses what was injected before.
pub(super) fn ephemeral_metadata(
    strategy: &BlueGreenStrategy,
    stable_hash: Option<&str>,
    new_rs: &ReplicaSetView,
    live: &[&ReplicaSetView],
) -> Vec<Action> {
    let new_hash = new_rs.pod_template_hash.as_deref();
    let promoted = stable_hash.is_none_or(|s| Some(s) == new_hash);
    let role = |rs: &ReplicaSetView| {
        let hash = rs.pod_template_hash.as_deref();
        let metadata = if rs.name == new_rs.name {
            if promoted {
                strategy.active_metadata.as_ref()
            } else {
                strategy.preview_metadata.as_ref()
            }
        } else if !promoted && hash.is_some() && hash == stable_hash {
            strategy.active_metadata.as_ref()
        } else {
            None
        };
        normalized(metadata)
    };
    live.iter()
        .filter_map(|rs| {
            let hash = rs.pod_template_hash.clone()?;
            let wanted = role(rs);
            let previous = normalized(rs.ephemeral_metadata.as_ref());
            (wanted != previous).then(|| Action::SetPodMetadata {
                replica_set: rs.name.clone(),
                pod_template_hash: hash,
                metadata: wanted,
                previous,
            })
        })
        .collect()
}

/// Empty maps and absent ones mean the same: nothing injected.
fn normalized(metadata: Option<&PodTemplateMetadata>) -> PodTemplateMetadata {
    let non_empty = |map: &Option<std::collections::BTreeMap<String, String>>| {
        map.clone().filter(|m| !m.is_empty())
    };
    metadata.map_or_else(PodTemplateMetadata::default, |m| PodTemplateMetadata {
        labels: non_empty(&m.labels),
        annotations: non_empty(&m.annotations),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramp_api::rollout::{
        PreferredDuringSchedulingIgnoredDuringExecution,
        RequiredDuringSchedulingIgnoredDuringExecution,
    };
    use serde_json::json;
    use std::collections::BTreeMap;

    fn create(hash: &str, template: PodTemplateSpec) -> Action {
        Action::CreateReplicaSet {
            name: format!("web-{hash}"),
            pod_template_hash: hash.to_owned(),
            revision: 2,
            replicas: 0,
            template: Box::new(template),
        }
    }

    fn template_of(action: &Action) -> serde_json::Value {
        match action {
            Action::CreateReplicaSet { template, .. } => serde_json::to_value(template).unwrap(),
            other => panic!("not a create: {other:?}"),
        }
    }

    fn with_anti_affinity(anti: AntiAffinity) -> BlueGreenStrategy {
        BlueGreenStrategy {
            active_service: "web-active".to_owned(),
            anti_affinity: Some(anti),
            ..BlueGreenStrategy::default()
        }
    }

    fn preferred(weight: i32) -> AntiAffinity {
        AntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(
                PreferredDuringSchedulingIgnoredDuringExecution { weight },
            ),
            ..AntiAffinity::default()
        }
    }

    #[test]
    fn preferred_anti_affinity_avoids_the_stable_hash_on_the_same_node() {
        let mut actions = vec![create("new", PodTemplateSpec::default())];
        inject_anti_affinity(
            &with_anti_affinity(preferred(40)),
            Some("old"),
            "new",
            &mut actions,
        );
        assert_eq!(
            template_of(&actions[0])["spec"]["affinity"],
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 40,
                "podAffinityTerm": {
                    "labelSelector": {"matchExpressions": [
                        {"key": "rollouts-pod-template-hash", "operator": "In", "values": ["old"]}
                    ]},
                    "topologyKey": "kubernetes.io/hostname"
                }
            }]}})
        );
    }

    #[test]
    fn required_anti_affinity_is_appended_to_the_templates_own_terms() {
        let own: PodTemplateSpec = serde_json::from_value(json!({"spec": {
            "containers": [],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}
            ]}}
        }}))
        .unwrap();
        let mut actions = vec![create("new", own)];
        let required = AntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(
                RequiredDuringSchedulingIgnoredDuringExecution {},
            ),
            ..AntiAffinity::default()
        };
        inject_anti_affinity(
            &with_anti_affinity(required),
            Some("old"),
            "new",
            &mut actions,
        );
        let terms = template_of(&actions[0])["spec"]["affinity"]["podAntiAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]
            .clone();
        assert_eq!(
            terms,
            json!([
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"},
                {"labelSelector": {"matchExpressions": [
                    {"key": "rollouts-pod-template-hash", "operator": "In", "values": ["old"]}
                ]}, "topologyKey": "kubernetes.io/hostname"}
            ])
        );
    }

    #[test]
    fn no_anti_affinity_on_an_initial_deploy_or_without_the_field() {
        let mut actions = vec![create("new", PodTemplateSpec::default())];
        inject_anti_affinity(
            &with_anti_affinity(preferred(10)),
            Some("new"),
            "new",
            &mut actions,
        );
        inject_anti_affinity(
            &with_anti_affinity(preferred(10)),
            None,
            "new",
            &mut actions,
        );
        let plain = BlueGreenStrategy::default();
        inject_anti_affinity(&plain, Some("old"), "new", &mut actions);
        assert_eq!(
            actions,
            vec![create("new", PodTemplateSpec::default())],
            "nothing injected"
        );
    }

    fn rs(hash: &str, recorded: Option<PodTemplateMetadata>) -> ReplicaSetView {
        ReplicaSetView {
            name: format!("web-{hash}"),
            pod_template_hash: Some(hash.to_owned()),
            revision: None,
            revision_history: None,
            spec_replicas: 1,
            replicas: 1,
            ready_replicas: 1,
            available_replicas: 1,
            scale_down_deadline: None,
            created_at: None,
            template: None,
            being_deleted: false,
            ephemeral_metadata: recorded,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> PodTemplateMetadata {
        PodTemplateMetadata {
            labels: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            annotations: None,
        }
    }

    fn roles() -> BlueGreenStrategy {
        BlueGreenStrategy {
            active_service: "web-active".to_owned(),
            active_metadata: Some(labels(&[("role", "active")])),
            preview_metadata: Some(labels(&[("role", "preview")])),
            ..BlueGreenStrategy::default()
        }
    }

    /// `(replica set, wanted, previous)` of each action.
    fn changes(actions: &[Action]) -> Vec<(String, PodTemplateMetadata, PodTemplateMetadata)> {
        actions
            .iter()
            .map(|a| match a {
                Action::SetPodMetadata {
                    replica_set,
                    metadata,
                    previous,
                    ..
                } => (replica_set.clone(), metadata.clone(), previous.clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn during_an_update_the_new_pods_are_preview_and_the_stable_pods_active() {
        let old = rs("old", None);
        let new = rs("new", None);
        let actions = ephemeral_metadata(&roles(), Some("old"), &new, &[&old, &new]);
        assert_eq!(
            changes(&actions),
            vec![
                (
                    "web-old".to_owned(),
                    labels(&[("role", "active")]),
                    PodTemplateMetadata::default()
                ),
                (
                    "web-new".to_owned(),
                    labels(&[("role", "preview")]),
                    PodTemplateMetadata::default()
                ),
            ]
        );
    }

    #[test]
    fn promotion_moves_the_active_metadata_and_strips_the_previous_revision() {
        let old = rs("old", Some(labels(&[("role", "active")])));
        let new = rs("new", Some(labels(&[("role", "preview")])));
        let actions = ephemeral_metadata(&roles(), Some("new"), &new, &[&old, &new]);
        assert_eq!(
            changes(&actions),
            vec![
                (
                    "web-old".to_owned(),
                    PodTemplateMetadata::default(),
                    labels(&[("role", "active")])
                ),
                (
                    "web-new".to_owned(),
                    labels(&[("role", "active")]),
                    labels(&[("role", "preview")])
                ),
            ]
        );
    }

    #[test]
    fn metadata_already_in_place_needs_no_write_and_empty_maps_count_as_none() {
        let old = rs("old", Some(labels(&[("role", "active")])));
        let new = rs("new", Some(labels(&[("role", "preview")])));
        assert_eq!(
            ephemeral_metadata(&roles(), Some("old"), &new, &[&old, &new]),
            vec![]
        );
        let plain = BlueGreenStrategy {
            active_metadata: Some(PodTemplateMetadata {
                labels: Some(BTreeMap::new()),
                annotations: None,
            }),
            ..BlueGreenStrategy::default()
        };
        let bare = rs("new", None);
        assert_eq!(ephemeral_metadata(&plain, None, &bare, &[&bare]), vec![]);
    }
}
