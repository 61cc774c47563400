//! NGINX planners (research §5.3): the canary Ingress derived from a stable Ingress, its
//! annotations with prefixes and weight totals, header cohorts next to a weighted ramp, and
//! the merge patch that touches only Ramp's keys.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use pretty_assertions::assert_eq;
use ramp_api::rollout::{
    HeaderRoutingMatch, NginxTrafficRouting, RolloutTrafficRouting, StringMatch,
};
use ramp_controller::traffic::RolloutTrafficTarget;
use ramp_controller::traffic::nginx::{
    CanaryIngressWrite, canary_ingress_name, desired_canary_ingress, header_route_annotations,
    plan_canary_ingress,
};
use ramp_core::traffic::{HeaderRouteIntent, MirrorRouteIntent, TrafficIntent};
use serde_json::{Value, json};

fn stable_ingress() -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "api",
            "namespace": "shop",
            "annotations": {
                "kubernetes.io/ingress.class": "nginx",
                "nginx.ingress.kubernetes.io/rewrite-target": "/",
                "team": "payments"
            }
        },
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["api.example.com"], "secretName": "api-tls"}],
            "rules": [
                {"host": "api.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "api-stable", "port": {"number": 80}}}},
                    {"path": "/static", "pathType": "Prefix", "backend": {"service": {"name": "assets", "port": {"number": 80}}}}
                ]}},
                {"host": "admin.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "admin", "port": {"number": 80}}}}
                ]}}
            ]
        }
    }))
    .expect("valid ingress")
}

fn target(max_traffic_weight: Option<i32>) -> RolloutTrafficTarget {
    RolloutTrafficTarget {
        rollout: "api".to_owned(),
        namespace: "shop".to_owned(),
        uid: "uid-1".to_owned(),
        canary_service: Some("api-canary".to_owned()),
        stable_service: Some("api-stable".to_owned()),
        routing: RolloutTrafficRouting {
            max_traffic_weight,
            ..RolloutTrafficRouting::default()
        },
    }
}

fn nginx() -> NginxTrafficRouting {
    NginxTrafficRouting {
        stable_ingress: Some("api".to_owned()),
        ..NginxTrafficRouting::default()
    }
}

fn intent(weight: i32) -> TrafficIntent {
    TrafficIntent {
        canary_weight: weight,
        max_weight: 100,
        ..TrafficIntent::default()
    }
}

fn annotations(ingress: &Ingress) -> BTreeMap<String, String> {
    ingress.metadata.annotations.clone().unwrap_or_default()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn canary_ingress_copies_stable_rules_tls_and_class_with_canary_backends() {
    let canary = desired_canary_ingress(&stable_ingress(), &target(None), &nginx(), &intent(5))
        .expect("desired");
    let value = serde_json::to_value(&canary).expect("serializes");
    assert_eq!(value["metadata"]["name"], json!("api-api-canary"));
    assert_eq!(value["metadata"]["namespace"], json!("shop"));
    assert_eq!(
        value["metadata"]["ownerReferences"],
        json!([{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "api", "uid": "uid-1",
                "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(
        value["spec"],
        json!({
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["api.example.com"], "secretName": "api-tls"}],
            "rules": [{"host": "api.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "api-canary", "port": {"number": 80}}}},
                {"path": "/static", "pathType": "Prefix", "backend": {"service": {"name": "assets", "port": {"number": 80}}}}
            ]}}]
        })
    );
    // Only the class annotation is copied from the stable Ingress.
    assert_eq!(
        annotations(&canary),
        map(&[
            ("kubernetes.io/ingress.class", "nginx"),
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/canary-weight", "5"),
        ])
    );
}

#[test]
fn weight_total_prefixes_and_verbatim_annotations() {
    let nginx = NginxTrafficRouting {
        annotation_prefix: Some("custom.nginx.org".to_owned()),
        additional_ingress_annotations: Some(map(&[
            ("canary-by-header", "X-Canary"),
            ("other.io/already-prefixed", "kept"),
        ])),
        canary_ingress_annotations: Some(map(&[("my-org.io/owner", "team-a")])),
        ..nginx()
    };
    let canary =
        desired_canary_ingress(&stable_ingress(), &target(Some(1000)), &nginx, &intent(15))
            .expect("desired");
    assert_eq!(
        annotations(&canary),
        map(&[
            ("custom.nginx.org/canary", "true"),
            ("custom.nginx.org/canary-by-header", "X-Canary"),
            ("custom.nginx.org/canary-weight", "15"),
            ("custom.nginx.org/canary-weight-total", "1000"),
            ("kubernetes.io/ingress.class", "nginx"),
            ("my-org.io/owner", "team-a"),
            ("other.io/already-prefixed", "kept"),
        ])
    );
}

fn header(name: &str, value: StringMatch) -> HeaderRoutingMatch {
    HeaderRoutingMatch {
        header_name: name.to_owned(),
        header_value: value,
    }
}

fn exact(v: &str) -> StringMatch {
    StringMatch {
        exact: Some(v.to_owned()),
        ..StringMatch::default()
    }
}

fn header_route(matches: Vec<HeaderRoutingMatch>) -> HeaderRouteIntent {
    HeaderRouteIntent {
        name: "cohort".to_owned(),
        matches,
    }
}

#[test]
fn header_cohort_and_weight_live_on_the_same_canary_ingress() {
    let cohort = TrafficIntent {
        header_routes: vec![header_route(vec![
            header("X-Canary", exact("true")),
            header("Cookie", exact("beta_user=always")),
        ])],
        ..intent(20)
    };
    let canary = desired_canary_ingress(&stable_ingress(), &target(None), &nginx(), &cohort)
        .expect("desired");
    assert_eq!(
        annotations(&canary),
        map(&[
            ("kubernetes.io/ingress.class", "nginx"),
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/canary-by-cookie", "beta_user"),
            ("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary"),
            ("nginx.ingress.kubernetes.io/canary-by-header-value", "true"),
            ("nginx.ingress.kubernetes.io/canary-weight", "20"),
        ])
    );
}

#[test]
fn prefix_and_regex_become_anchored_patterns() {
    let prefix = header_route_annotations(
        "p",
        &[header_route(vec![header(
            "User-Agent",
            StringMatch {
                prefix: Some("Mozilla/5.0 (X11".to_owned()),
                ..StringMatch::default()
            },
        )])],
    )
    .expect("prefix is expressible");
    assert_eq!(
        prefix,
        map(&[
            ("p/canary-by-header", "User-Agent"),
            ("p/canary-by-header-pattern", "^Mozilla/5\\.0 \\(X11")
        ])
    );
    let regex = header_route_annotations(
        "p",
        &[header_route(vec![header(
            "agent",
            StringMatch {
                regex: Some("firefox(.*)".to_owned()),
                ..StringMatch::default()
            },
        )])],
    )
    .expect("regex is expressible");
    assert_eq!(regex["p/canary-by-header-pattern"], "^(?:firefox(.*))$");
    // A cookie whose value is not `always` is matched through the header slot, whole value.
    let cookie_header = header_route_annotations(
        "p",
        &[header_route(vec![header(
            "Cookie",
            exact("beta_user=true"),
        )])],
    )
    .expect("ok");
    assert_eq!(
        cookie_header,
        map(&[
            ("p/canary-by-header", "Cookie"),
            ("p/canary-by-header-value", "beta_user=true")
        ])
    );
}

#[test]
fn two_different_header_conditions_are_refused() {
    let err = header_route_annotations(
        "p",
        &[header_route(vec![
            header("X-Canary", exact("true")),
            header("X-Beta", exact("1")),
        ])],
    )
    .expect_err("NGINX has one header slot");
    assert_eq!(err.metric_label(), "unsupported_route");
    assert!(
        err.to_string()
            .contains("nginx cannot express managed route 'cohort'"),
        "{err}"
    );
}

#[test]
fn mirror_routes_are_refused_by_nginx() {
    let mirrored = TrafficIntent {
        mirror_routes: vec![MirrorRouteIntent {
            name: "mirror".to_owned(),
            matches: Vec::new(),
            percentage: 100,
        }],
        ..intent(0)
    };
    let err = desired_canary_ingress(&stable_ingress(), &target(None), &nginx(), &mirrored)
        .expect_err("no mirror");
    assert_eq!(err.metric_label(), "unsupported_route");
}

#[test]
fn stable_ingress_without_the_stable_service_is_named_in_the_error() {
    let mut stable = stable_ingress();
    let spec = stable.spec.as_mut().expect("spec");
    spec.rules.as_mut().expect("rules").remove(0);
    let err =
        desired_canary_ingress(&stable, &target(None), &nginx(), &intent(5)).expect_err("no rule");
    assert_eq!(
        err.to_string(),
        "Ingress shop/api: has no rules using service api-stable backend"
    );
}

fn existing_from(desired: &Ingress) -> Ingress {
    let mut existing = desired.clone();
    existing.metadata.resource_version = Some("12".to_owned());
    existing
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("someone.else/annotation".to_owned(), "keep-me".to_owned());
    existing
}

#[test]
fn patch_touches_only_ramps_keys_and_is_empty_when_nothing_changed() {
    let desired_5 = desired_canary_ingress(&stable_ingress(), &target(None), &nginx(), &intent(5))
        .expect("desired");
    assert!(matches!(
        plan_canary_ingress(None, &desired_5, &target(None), &nginx()).expect("plan"),
        CanaryIngressWrite::Create(_)
    ));
    let existing = existing_from(&desired_5);
    assert_eq!(
        plan_canary_ingress(Some(&existing), &desired_5, &target(None), &nginx()).expect("plan"),
        CanaryIngressWrite::Unchanged
    );

    let cohort = TrafficIntent {
        header_routes: vec![header_route(vec![header("X-Canary", exact("true"))])],
        ..intent(50)
    };
    let desired_50 = desired_canary_ingress(&stable_ingress(), &target(None), &nginx(), &cohort)
        .expect("desired");
    let CanaryIngressWrite::Patch(patch) =
        plan_canary_ingress(Some(&existing), &desired_50, &target(None), &nginx()).expect("plan")
    else {
        panic!("expected a patch");
    };
    assert_eq!(
        patch,
        json!({"metadata": {"resourceVersion": "12", "annotations": {
            "nginx.ingress.kubernetes.io/canary-weight": "50",
            "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
            "nginx.ingress.kubernetes.io/canary-by-header-value": "true"
        }}})
    );
    // Apply it the way the server does and step back: the header keys are removed again,
    // someone else's annotation stays.
    let mut applied = serde_json::to_value(&existing).expect("serializes");
    json_patch::merge(&mut applied, &patch);
    let with_cohort: Ingress = serde_json::from_value(applied).expect("ingress");
    let CanaryIngressWrite::Patch(back) =
        plan_canary_ingress(Some(&with_cohort), &desired_5, &target(None), &nginx()).expect("plan")
    else {
        panic!("expected a patch");
    };
    assert_eq!(
        back["metadata"]["annotations"],
        json!({
            "nginx.ingress.kubernetes.io/canary-weight": "5",
            "nginx.ingress.kubernetes.io/canary-by-header": Value::Null,
            "nginx.ingress.kubernetes.io/canary-by-header-value": Value::Null
        })
    );
}

#[test]
fn a_canary_ingress_controlled_by_someone_else_is_refused() {
    let desired = desired_canary_ingress(&stable_ingress(), &target(None), &nginx(), &intent(5))
        .expect("desired");
    let mut foreign = existing_from(&desired);
    foreign.metadata.owner_references = None;
    let err = plan_canary_ingress(Some(&foreign), &desired, &target(None), &nginx())
        .expect_err("foreign");
    assert_eq!(
        err.to_string(),
        "Ingress shop/api-api-canary exists but is not controlled by rollout 'api'"
    );
}

#[test]
fn canary_name_is_cut_to_253_characters() {
    assert_eq!(canary_ingress_name("ro", "web"), "ro-web-canary");
    let long = "a".repeat(300);
    let name = canary_ingress_name("ro", &long);
    assert_eq!(name.len(), 253);
    assert!(name.starts_with("ro-aaa") && name.ends_with("-canary"));
}

#[test]
fn each_stable_ingress_gets_its_own_canary_ingress() {
    let nginx = NginxTrafficRouting {
        stable_ingresses: Some(vec!["api".to_owned(), "api-internal".to_owned()]),
        ..NginxTrafficRouting::default()
    };
    let names: Vec<&str> = nginx.stable_ingress_names().collect();
    assert_eq!(names, vec!["api", "api-internal"]);
    let mut internal = stable_ingress();
    internal.metadata.name = Some("api-internal".to_owned());
    let canary =
        desired_canary_ingress(&internal, &target(None), &nginx, &intent(10)).expect("desired");
    assert_eq!(
        canary.metadata.name.as_deref(),
        Some("api-api-internal-canary")
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn header_match() -> impl Strategy<Value = Option<HeaderRouteIntent>> {
        prop::option::of((0usize..3, "[a-z]{1,8}").prop_map(|(kind, value)| {
            let value = match kind {
                0 => exact(&value),
                1 => StringMatch {
                    prefix: Some(value),
                    ..StringMatch::default()
                },
                _ => StringMatch {
                    regex: Some(format!("{value}.*")),
                    ..StringMatch::default()
                },
            };
            header_route(vec![header("X-Canary", value)])
        }))
    }

    proptest! {
        #[test]
        fn merge_patches_converge_and_keep_foreign_annotations(
            first_weight in 0i32..=100,
            second_weight in 0i32..=100,
            first_header in header_match(),
            second_header in header_match(),
            foreign in prop::collection::btree_map("[a-z]{1,6}\\.io/[a-z]{1,6}", "[a-z]{0,6}", 0..4),
        ) {
            let at = |weight: i32, header: &Option<HeaderRouteIntent>| TrafficIntent {
                header_routes: header.iter().cloned().collect(),
                ..intent(weight)
            };
            let first = desired_canary_ingress(&stable_ingress(), &target(None), &nginx(), &at(first_weight, &first_header))
                .expect("desired");
            let mut existing = first.clone();
            existing.metadata.resource_version = Some("1".to_owned());
            existing.metadata.annotations.get_or_insert_with(BTreeMap::new).extend(foreign.clone());

            let second = desired_canary_ingress(&stable_ingress(), &target(None), &nginx(), &at(second_weight, &second_header))
                .expect("desired");
            let updated = match plan_canary_ingress(Some(&existing), &second, &target(None), &nginx()).expect("plan") {
                CanaryIngressWrite::Unchanged => existing.clone(),
                CanaryIngressWrite::Patch(patch) => {
                    let mut value = serde_json::to_value(&existing).expect("serializes");
                    json_patch::merge(&mut value, &patch);
                    serde_json::from_value(value).expect("ingress")
                }
                CanaryIngressWrite::Create(_) => panic!("the canary ingress exists"),
            };
            prop_assert_eq!(
                plan_canary_ingress(Some(&updated), &second, &target(None), &nginx()).expect("plan"),
                CanaryIngressWrite::Unchanged
            );
            let mut expected = annotations(&second);
            expected.extend(foreign);
            prop_assert_eq!(annotations(&updated), expected);
            prop_assert_eq!(&updated.spec, &second.spec);
        }
    }
}
