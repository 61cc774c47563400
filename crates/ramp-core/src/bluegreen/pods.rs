//! What blue-green puts on pods besides the rollout's own template: the anti-affinity that
//! keeps a new revision's pods off the nodes of the stable revision's. The role metadata
//! (`activeMetadata` / `previewMetadata`) is decided in `crate::ephemeral`, shared with canary.

use crate::plan::Action;
use crate::snapshot::POD_TEMPLATE_HASH_LABEL;
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use ramp_api::rollout::{AntiAffinity, BlueGreenStrategy};

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

#[cfg(test)]
mod tests {
    use super::*;
    use ramp_api::rollout::{
        PreferredDuringSchedulingIgnoredDuringExecution,
        RequiredDuringSchedulingIgnoredDuringExecution,
    };
    use serde_json::json;

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
}
