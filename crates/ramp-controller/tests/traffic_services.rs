//! Service selector patches: only `spec.selector.rollouts-pod-template-hash` and the
//! managed-by annotation, never a Service another rollout manages.

use k8s_openapi::api::core::v1::Service;
use pretty_assertions::assert_eq;
use ramp_controller::traffic::services::{release_patch, selected_hash, selector_patch};
use serde_json::json;

fn service(annotations: serde_json::Value, selector: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "api-canary", "namespace": "shop", "resourceVersion": "4", "annotations": annotations},
        "spec": {"selector": selector, "ports": [{"port": 80}]}
    }))
    .expect("valid service")
}

#[test]
fn first_adoption_adds_the_annotation_and_the_hash() {
    let fresh = service(json!({}), json!({"app": "api"}));
    let patch = selector_patch(&fresh, "api", "6c9b8f4d7")
        .expect("plan")
        .expect("a write");
    assert_eq!(
        patch,
        json!({
            "metadata": {"resourceVersion": "4", "annotations": {"argo-rollouts.argoproj.io/managed-by-rollouts": "api"}},
            "spec": {"selector": {"rollouts-pod-template-hash": "6c9b8f4d7"}}
        })
    );
}

#[test]
fn switching_an_adopted_service_patches_only_the_hash_and_is_idempotent() {
    let adopted = service(
        json!({"argo-rollouts.argoproj.io/managed-by-rollouts": "api"}),
        json!({"app": "api", "rollouts-pod-template-hash": "old"}),
    );
    assert_eq!(selected_hash(&adopted), Some("old"));
    let patch = selector_patch(&adopted, "api", "new")
        .expect("plan")
        .expect("a write");
    assert_eq!(
        patch,
        json!({"metadata": {"resourceVersion": "4"}, "spec": {"selector": {"rollouts-pod-template-hash": "new"}}})
    );
    assert_eq!(selector_patch(&adopted, "api", "old").expect("plan"), None);
}

#[test]
fn a_service_managed_by_another_rollout_is_refused() {
    let theirs = service(
        json!({"argo-rollouts.argoproj.io/managed-by-rollouts": "other"}),
        json!({"app": "api"}),
    );
    let err = selector_patch(&theirs, "api", "h").expect_err("refused");
    assert_eq!(err.metric_label(), "managed_by_other_rollout");
    assert_eq!(
        err.to_string(),
        "Service shop/api-canary is managed by rollout 'other', not by 'api'"
    );
    assert_eq!(release_patch(&theirs, "api"), None);
}

#[test]
fn release_removes_only_what_ramp_added() {
    let adopted = service(
        json!({"argo-rollouts.argoproj.io/managed-by-rollouts": "api"}),
        json!({"app": "api", "rollouts-pod-template-hash": "h"}),
    );
    assert_eq!(
        release_patch(&adopted, "api"),
        Some(json!({
            "metadata": {"resourceVersion": "4", "annotations": {"argo-rollouts.argoproj.io/managed-by-rollouts": null}},
            "spec": {"selector": {"rollouts-pod-template-hash": null}}
        }))
    );
}

#[test]
fn referenced_objects_list_everything_the_routers_touch() {
    use ramp_api::rollout::{
        IstioDestinationRule, IstioTrafficRouting, IstioVirtualService, NginxTrafficRouting,
        RolloutTrafficRouting,
    };
    use ramp_controller::traffic::{ObjectName, RolloutTrafficTarget};
    let vs = |name: &str| IstioVirtualService {
        name: name.to_owned(),
        ..IstioVirtualService::default()
    };
    let target = RolloutTrafficTarget {
        rollout: "api".to_owned(),
        namespace: "shop".to_owned(),
        uid: "u".to_owned(),
        canary_service: Some("api-canary".to_owned()),
        stable_service: Some("api-stable".to_owned()),
        routing: RolloutTrafficRouting {
            istio: Some(IstioTrafficRouting {
                virtual_services: Some(vec![vs("api-vs"), vs("edge-vs.gateways")]),
                destination_rule: Some(IstioDestinationRule {
                    name: "api-dr".to_owned(),
                    ..IstioDestinationRule::default()
                }),
                ..IstioTrafficRouting::default()
            }),
            nginx: Some(NginxTrafficRouting {
                stable_ingress: Some("api".to_owned()),
                ..NginxTrafficRouting::default()
            }),
            ..RolloutTrafficRouting::default()
        },
    };
    assert_eq!(
        target.referenced_objects(),
        vec![
            ObjectName::new("Service", "shop", "api-canary"),
            ObjectName::new("Service", "shop", "api-stable"),
            ObjectName::new("VirtualService", "shop", "api-vs"),
            ObjectName::new("VirtualService", "gateways", "edge-vs"),
            ObjectName::new("DestinationRule", "shop", "api-dr"),
            ObjectName::new("Ingress", "shop", "api"),
            ObjectName::new("Ingress", "shop", "api-api-canary"),
        ]
    );
}
