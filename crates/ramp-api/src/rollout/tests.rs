//! Tests of the Rollout types: surge/unavailability math, defaults, exact round-trips of the
//! upstream example manifests and of a fully populated status, and the shape of the CRD.

use super::*;
use kube::CustomResourceExt;
use kube::core::Resource;
use pretty_assertions::assert_eq;
use serde_json::json;
use std::path::{Path, PathBuf};

fn int(n: i32) -> IntOrString {
    IntOrString::Int(n)
}

fn text(s: &str) -> IntOrString {
    IntOrString::String(s.to_owned())
}

fn canary(max_surge: Option<IntOrString>, max_unavailable: Option<IntOrString>) -> CanaryStrategy {
    CanaryStrategy {
        max_surge,
        max_unavailable,
        ..CanaryStrategy::default()
    }
}

fn budget(surge: i32, unavailable: i32) -> RolloutBudget {
    RolloutBudget {
        max_surge: surge,
        max_unavailable: unavailable,
    }
}

#[test]
fn default_canary_budget_is_25_percent_surge_up_unavailable_down() {
    let strategy = canary(None, None);
    assert_eq!(strategy.rollout_budget(10), Ok(budget(3, 2)));
    assert_eq!(strategy.rollout_budget(4), Ok(budget(1, 1)));
    assert_eq!(strategy.rollout_budget(1), Ok(budget(1, 0)));
}

#[test]
fn percentages_round_surge_up_and_unavailable_down() {
    let strategy = canary(Some(text("10%")), Some(text("19%")));
    assert_eq!(strategy.rollout_budget(11), Ok(budget(2, 2)));
    assert_eq!(strategy.rollout_budget(5), Ok(budget(1, 0)));
}

#[test]
fn integers_are_pod_counts() {
    let strategy = canary(Some(int(2)), Some(int(1)));
    assert_eq!(strategy.rollout_budget(10), Ok(budget(2, 1)));
}

#[test]
fn a_string_without_percent_sign_is_still_a_percentage() {
    // Upstream quirk: "3" is 3 %, not 3 pods.
    let strategy = canary(Some(text("3")), Some(text("50")));
    assert_eq!(strategy.rollout_budget(10), Ok(budget(1, 5)));
    assert_eq!(strategy.rollout_budget(100), Ok(budget(3, 50)));
}

#[test]
fn both_zero_allows_one_unavailable_pod() {
    assert_eq!(
        canary(Some(int(0)), Some(int(0))).rollout_budget(10),
        Ok(budget(0, 1))
    );
    assert_eq!(
        canary(Some(text("0%")), Some(text("0%"))).rollout_budget(10),
        Ok(budget(0, 1))
    );
    // Rounding down to zero counts too: 5 % of 10 pods is 0 unavailable, surge 0.
    assert_eq!(
        canary(Some(int(0)), Some(text("5%"))).rollout_budget(10),
        Ok(budget(0, 1))
    );
    // A non-zero surge leaves a zero unavailability alone.
    assert_eq!(
        canary(Some(text("1%")), Some(text("1%"))).rollout_budget(10),
        Ok(budget(1, 0))
    );
}

#[test]
fn unavailable_is_capped_at_replicas() {
    assert_eq!(
        canary(Some(int(0)), Some(int(5))).rollout_budget(3),
        Ok(budget(0, 3))
    );
    assert_eq!(
        canary(Some(int(0)), Some(int(0))).rollout_budget(0),
        Ok(budget(0, 0))
    );
    assert_eq!(
        canary(Some(text("200%")), Some(text("200%"))).rollout_budget(2),
        Ok(budget(4, 2))
    );
}

#[test]
fn invalid_strings_name_the_field() {
    let err = canary(Some(text("a lot")), None).rollout_budget(10);
    assert_eq!(
        err.map_err(|e| (e.field, e.value)),
        Err(("maxSurge", "a lot".to_owned()))
    );
    let err = canary(Some(text("99999999999999999%")), None).rollout_budget(1000);
    assert_eq!(err.map_err(|e| e.field), Err("maxSurge"));
    let err = canary(None, Some(text("%"))).rollout_budget(10);
    assert_eq!(err.map_err(|e| e.field), Err("maxUnavailable"));
}

#[test]
fn blue_green_never_surges() {
    let strategy = BlueGreenStrategy {
        active_service: "active".to_owned(),
        ..BlueGreenStrategy::default()
    };
    assert_eq!(strategy.rollout_budget(10), Ok(budget(0, 2)));
    // 25 % of 3 pods rounds down to 0, and zero/zero becomes one unavailable pod.
    assert_eq!(strategy.rollout_budget(3), Ok(budget(0, 1)));
}

#[test]
fn spec_budget_follows_the_strategy_and_replicas() {
    let spec = RolloutSpec {
        replicas: Some(8),
        strategy: Some(RolloutStrategy {
            canary: Some(canary(Some(text("50%")), Some(int(1)))),
            blue_green: None,
        }),
        ..RolloutSpec::default()
    };
    assert_eq!(spec.rollout_budget(), Ok(budget(4, 1)));
    // Without replicas the default of one pod applies.
    let spec = RolloutSpec {
        replicas: None,
        ..spec
    };
    assert_eq!(spec.rollout_budget(), Ok(budget(1, 1)));
}

#[test]
fn absent_fields_read_as_upstream_defaults() {
    let spec = RolloutSpec::default();
    assert_eq!(spec.replicas(), 1);
    assert_eq!(spec.revision_history_limit(), 10);
    assert_eq!(spec.progress_deadline_seconds(), 600);
    assert_eq!(spec.min_ready_seconds(), 0);
    assert!(!spec.progress_deadline_abort());
    assert!(!spec.is_paused());
    assert_eq!(spec.successful_run_history_limit(), 5);
    assert_eq!(spec.unsuccessful_run_history_limit(), 5);
    assert!(spec.steps().is_empty());

    let strategy = CanaryStrategy::default();
    assert_eq!(strategy.scale_down_delay_seconds(), 0);
    assert_eq!(strategy.abort_scale_down(), AbortScaleDown::AfterSeconds(0));
    assert_eq!(strategy.max_traffic_weight(), 100);
    assert!(!strategy.dynamic_stable_scale());

    let strategy = BlueGreenStrategy::default();
    assert!(strategy.auto_promotion_enabled());
    assert_eq!(strategy.auto_promotion_seconds(), 0);
    assert_eq!(strategy.scale_down_delay_seconds(), 30);
    assert_eq!(
        strategy.abort_scale_down(),
        AbortScaleDown::AfterSeconds(30)
    );

    assert_eq!(
        NginxTrafficRouting::default().annotation_prefix(),
        "nginx.ingress.kubernetes.io"
    );
    assert_eq!(
        AlbTrafficRouting::default().annotation_prefix(),
        "alb.ingress.kubernetes.io"
    );
    assert_eq!(SetMirrorRoute::default().percentage(), 100);
}

#[test]
fn set_fields_override_defaults() {
    let spec: RolloutSpec = serde_json::from_value(json!({
        "replicas": 0,
        "revisionHistoryLimit": 2,
        "progressDeadlineSeconds": 60,
        "progressDeadlineAbort": true,
        "paused": true,
        "analysis": {"successfulRunHistoryLimit": 1, "unsuccessfulRunHistoryLimit": 3},
        "strategy": {"blueGreen": {
            "activeService": "a",
            "autoPromotionEnabled": false,
            "autoPromotionSeconds": 20,
            "scaleDownDelaySeconds": 5,
            "abortScaleDownDelaySeconds": 0
        }}
    }))
    .expect("valid spec");
    assert_eq!(spec.replicas(), 0);
    assert_eq!(spec.revision_history_limit(), 2);
    assert_eq!(spec.progress_deadline_seconds(), 60);
    assert!(spec.progress_deadline_abort());
    assert!(spec.is_paused());
    assert_eq!(spec.successful_run_history_limit(), 1);
    assert_eq!(spec.unsuccessful_run_history_limit(), 3);
    let blue_green = spec.blue_green().expect("blue-green strategy");
    assert!(!blue_green.auto_promotion_enabled());
    assert_eq!(blue_green.auto_promotion_seconds(), 20);
    assert_eq!(blue_green.scale_down_delay_seconds(), 5);
    assert_eq!(blue_green.abort_scale_down(), AbortScaleDown::Never);
    assert!(spec.canary().is_none());
}

#[test]
fn canary_delays_apply_only_with_traffic_routing() {
    let basic = CanaryStrategy {
        scale_down_delay_seconds: Some(60),
        abort_scale_down_delay_seconds: Some(0),
        ..CanaryStrategy::default()
    };
    assert_eq!(basic.scale_down_delay_seconds(), 0);
    assert_eq!(basic.abort_scale_down(), AbortScaleDown::AfterSeconds(0));

    let routed = CanaryStrategy {
        traffic_routing: Some(RolloutTrafficRouting::default()),
        ..basic
    };
    assert_eq!(routed.scale_down_delay_seconds(), 60);
    assert_eq!(routed.abort_scale_down(), AbortScaleDown::Never);
    let routed_defaults = CanaryStrategy {
        traffic_routing: Some(RolloutTrafficRouting::default()),
        ..CanaryStrategy::default()
    };
    assert_eq!(routed_defaults.scale_down_delay_seconds(), 30);
    assert_eq!(
        routed_defaults.abort_scale_down(),
        AbortScaleDown::AfterSeconds(30)
    );
    let routed_delay = CanaryStrategy {
        abort_scale_down_delay_seconds: Some(90),
        ..routed_defaults
    };
    assert_eq!(
        routed_delay.abort_scale_down(),
        AbortScaleDown::AfterSeconds(90)
    );
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            out.push(path);
        }
    }
}

/// Every upstream example Rollout deserializes into the typed `Rollout` and serializes back to
/// exactly the same JSON (no field lost, renamed or defaulted).
#[test]
fn upstream_example_rollouts_round_trip_exactly() {
    let Some(upstream) = ramp_sim::compat::argo_rollouts() else {
        return;
    };
    let mut files = Vec::new();
    yaml_files(&upstream.examples(), &mut files);
    files.sort();
    let mut checked = 0;
    for file in &files {
        let source = std::fs::read_to_string(file).expect("readable example");
        // Parsed one document at a time: a few non-Rollout documents use YAML that has no JSON
        // equivalent (e.g. `{{args.x}}` is a mapping used as a key) and must not hide the rest.
        for text in source.split("\n---") {
            let declares_rollout = text.lines().any(|line| line.trim_end() == "kind: Rollout");
            let documents: Vec<serde_json::Value> = match serde_saphyr::from_multiple(text) {
                Ok(documents) => documents,
                Err(e) if declares_rollout => panic!("{}: not YAML: {e}", file.display()),
                Err(_) => continue,
            };
            for document in documents {
                let is_rollout = document["kind"] == "Rollout"
                    && document["apiVersion"]
                        .as_str()
                        .is_some_and(|v| v.starts_with("argoproj.io/"));
                if !is_rollout {
                    continue;
                }
                let typed: Rollout = serde_json::from_value(document.clone())
                    .unwrap_or_else(|e| panic!("{}: does not deserialize: {e}", file.display()));
                let back = serde_json::to_value(&typed).expect("serializable");
                assert_eq!(back, document, "{} changed on round-trip", file.display());
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} example Rollouts found under {:?}",
        upstream.examples()
    );
}

/// A status with every field set survives a round-trip, including the Go-style names.
#[test]
fn full_status_round_trips_with_upstream_names() {
    let aws = |name: &str| json!({"name": name, "arn": format!("arn:aws:{name}"), "fullName": format!("app/{name}")});
    let alb = json!({
        "loadBalancer": aws("lb"),
        "canaryTargetGroup": aws("canary-tg"),
        "stableTargetGroup": aws("stable-tg"),
        "ingress": "ingress"
    });
    let analysis_run = json!({"name": "run", "status": "Running", "message": "m"});
    let canary = json!({
        "currentStepAnalysisRunStatus": analysis_run,
        "currentBackgroundAnalysisRunStatus": analysis_run,
        "currentExperiment": "exp",
        "weights": {
            "canary": {"weight": 20, "serviceName": "canary", "podTemplateHash": "abc"},
            "stable": {"weight": 80, "serviceName": "stable", "podTemplateHash": "xyz"},
            "additional": [{"weight": 0}],
            "verified": true
        },
        "stablePingPong": "ping",
        "stepPluginStatuses": [{
            "index": 2, "name": "plugin", "operation": "Run", "phase": "Running",
            "message": "m", "startedAt": "2026-01-02T03:04:05Z",
            "updatedAt": "2026-01-02T03:04:05Z", "finishedAt": "2026-01-02T03:04:05Z",
            "backoff": "5s", "executions": 3, "disabled": false,
            "status": {"anything": ["goes", 1, {"nested": true}]}
        }]
    });
    let blue_green = json!({
        "previewSelector": "abc", "activeSelector": "xyz", "scaleUpPreviewCheckPoint": true,
        "prePromotionAnalysisRunStatus": analysis_run,
        "postPromotionAnalysisRunStatus": analysis_run
    });
    let status = json!({
        "abort": true,
        "abortedAt": "2026-01-02T03:04:05Z",
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-01-02T03:04:05Z"}],
        "controllerPause": true,
        "promoteFull": false,
        "observedGeneration": "7",
        "replicas": 5,
        "updatedReplicas": 2,
        "readyReplicas": 4,
        "availableReplicas": 4,
        "currentStepIndex": 1,
        "collisionCount": 1,
        "currentPodHash": "abc",
        "currentStepHash": "def",
        "stableRS": "xyz",
        "conditions": [{
            "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
            "message": "progressing", "lastUpdateTime": "2026-01-02T03:04:05Z",
            "lastTransitionTime": "2026-01-02T03:04:05Z"
        }],
        "canary": canary,
        "blueGreen": blue_green,
        "HPAReplicas": 5,
        "selector": "app=demo",
        "restartedAt": "2026-01-02T03:04:05Z",
        "workloadObservedGeneration": "3",
        "phase": "Paused",
        "message": "CanaryPauseStep",
        "alb": alb,
        "albs": [alb],
        "duration": {
            "rolloutStartedAt": "2026-01-02T03:04:05Z",
            "manualPauseStartedAt": "2026-01-02T03:04:05Z",
            "totalManualPauseDurationSeconds": 12,
            "finishedAt": "2026-01-02T03:04:05Z",
            "completionStatus": "Promoted"
        }
    });
    let typed: RolloutStatus = serde_json::from_value(status.clone()).expect("valid status");
    assert_eq!(typed.hpa_replicas, Some(5));
    assert_eq!(typed.stable_rs.as_deref(), Some("xyz"));
    assert_eq!(typed.observed_generation_number(), Some(7));
    assert!(typed.is_aborted());
    assert!(!typed.is_fully_promoted());
    assert!(typed.has_pause_conditions());
    assert_eq!(
        typed
            .condition(condition_type::PROGRESSING)
            .map(|c| c.reason.as_str()),
        Some("ReplicaSetUpdated")
    );
    assert!(typed.condition(condition_type::HEALTHY).is_none());
    assert_eq!(serde_json::to_value(&typed).expect("serializable"), status);
}

/// Free-form plugin configuration survives a round-trip untouched.
#[test]
fn plugin_configs_are_kept_verbatim() {
    let strategy = json!({
        "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "r", "namespace": "n"}}},
        "steps": [{"plugin": {"name": "step", "config": {"a": [1, 2], "b": {"c": null}}}}]
    });
    let typed: CanaryStrategy = serde_json::from_value(strategy.clone()).expect("valid canary");
    assert_eq!(
        serde_json::to_value(&typed).expect("serializable"),
        strategy
    );
}

fn schema_at<'a>(schema: &'a serde_json::Value, path: &[&str]) -> &'a serde_json::Value {
    path.iter().fold(schema, |node, key| match *key {
        "[]" => &node["items"],
        key => &node["properties"][key],
    })
}

#[test]
fn crd_matches_upstream_names_subresources_and_columns() {
    let crd = serde_json::to_value(Rollout::crd()).expect("serializable CRD");
    assert_eq!(crd["metadata"]["name"], "rollouts.argoproj.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["ro"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(
        version["subresources"],
        json!({
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.HPAReplicas",
                "labelSelectorPath": ".status.selector"
            }
        })
    );
    let columns: Vec<(&str, &str, &str)> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["type"].as_str().unwrap_or_default(),
                c["jsonPath"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        columns,
        vec![
            ("Desired", "integer", ".spec.replicas"),
            ("Current", "integer", ".status.replicas"),
            ("Up-to-date", "integer", ".status.updatedReplicas"),
            ("Available", "integer", ".status.availableReplicas"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
    assert_eq!(Rollout::group(&()), "argoproj.io");
}

#[test]
fn crd_schema_marks_free_form_int_or_string_and_immutable_fields_like_upstream() {
    let crd = serde_json::to_value(Rollout::crd()).expect("serializable CRD");
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    fn path(tail: &[&'static str]) -> Vec<&'static str> {
        ["spec", "strategy", "canary"]
            .iter()
            .chain(tail)
            .copied()
            .collect()
    }

    for free_form in [
        path(&["steps", "[]", "plugin", "config"]),
        path(&["trafficRouting", "plugins"]),
        vec!["status", "canary", "stepPluginStatuses", "[]", "status"],
    ] {
        let node = schema_at(root, &free_form);
        assert_eq!(
            node["x-kubernetes-preserve-unknown-fields"], true,
            "{free_form:?}"
        );
        assert_eq!(node["type"], "object", "{free_form:?}");
    }
    for int_or_string in [
        path(&["maxSurge"]),
        path(&["maxUnavailable"]),
        path(&["steps", "[]", "pause", "duration"]),
        vec!["spec", "strategy", "blueGreen", "maxUnavailable"],
    ] {
        let node = schema_at(root, &int_or_string);
        assert_eq!(
            node["x-kubernetes-int-or-string"], true,
            "{int_or_string:?}"
        );
    }
    let selector = schema_at(root, &["spec", "selector"]);
    assert_eq!(selector["x-kubernetes-map-type"], "atomic");
    assert_eq!(
        selector["x-kubernetes-validations"][0]["rule"],
        "self == oldSelf"
    );
    assert!(selector["properties"]["matchLabels"].is_object());
    let template_selector = schema_at(
        root,
        &path(&["steps", "[]", "experiment", "templates", "[]", "selector"]),
    );
    assert_eq!(template_selector["x-kubernetes-map-type"], "atomic");

    assert_eq!(
        schema_at(root, &["status", "observedGeneration"])["type"],
        "string"
    );
    assert!(schema_at(root, &["status", "HPAReplicas"]).is_object());
    assert!(schema_at(root, &["status", "stableRS"]).is_object());
    let mut required: Vec<&str> = schema_at(root, &["status", "alb", "loadBalancer"])["required"]
        .as_array()
        .expect("required list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["arn", "name"]);
    assert_eq!(
        schema_at(root, &["spec", "strategy", "blueGreen"])["required"],
        json!(["activeService"])
    );
}

#[test]
fn crd_pod_template_is_shaped_like_upstreams() {
    let crd = serde_json::to_value(Rollout::crd()).expect("serializable CRD");
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let template = schema_at(root, &["spec", "template"]);
    let metadata_fields: Vec<&String> = template["properties"]["metadata"]["properties"]
        .as_object()
        .expect("metadata properties")
        .keys()
        .collect();
    assert_eq!(metadata_fields, ["annotations", "labels"]);
    let pod = &template["properties"]["spec"];
    assert_eq!(
        pod["properties"]["volumes"],
        json!({"x-kubernetes-preserve-unknown-fields": true})
    );
    let container = schema_at(pod, &["containers"]);
    assert_eq!(container["x-kubernetes-list-type"], "map");
    assert_eq!(container["x-kubernetes-list-map-keys"], json!(["name"]));
    let resources = schema_at(container, &["[]", "resources"]);
    for quantities in ["limits", "requests"] {
        assert_eq!(
            resources["properties"][quantities],
            json!({"x-kubernetes-preserve-unknown-fields": true}),
            "{quantities}"
        );
    }
    let ports = schema_at(container, &["[]", "ports"]);
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    assert_eq!(schema_at(ports, &["[]", "protocol"])["default"], "TCP");
    assert_eq!(
        schema_at(container, &["[]", "args"])["x-kubernetes-list-type"],
        "atomic"
    );
    let secret_ref = schema_at(container, &["[]", "envFrom", "[]", "secretRef"]);
    assert_eq!(secret_ref["x-kubernetes-map-type"], "atomic");
    assert!(secret_ref.get("required").is_none(), "{secret_ref}");
    assert_eq!(secret_ref["properties"]["name"]["default"], "");
}

#[test]
fn fully_promoted_needs_a_current_hash_equal_to_stable() {
    let status = |current: Option<&str>, stable: Option<&str>| RolloutStatus {
        current_pod_hash: current.map(str::to_owned),
        stable_rs: stable.map(str::to_owned),
        ..RolloutStatus::default()
    };
    assert!(status(Some("a"), Some("a")).is_fully_promoted());
    assert!(!status(Some("b"), Some("a")).is_fully_promoted());
    assert!(!status(None, None).is_fully_promoted());
    let legacy = RolloutStatus {
        observed_generation: Some("7d9f8c".to_owned()),
        ..RolloutStatus::default()
    };
    assert_eq!(legacy.observed_generation_number(), None);
}

#[test]
fn pause_durations_accept_seconds_and_go_durations() {
    let pause = |duration: Option<IntOrString>| RolloutPause { duration };
    let seconds = |p: RolloutPause| p.parsed_duration().map(|d| d.map(|d| d.as_secs()));
    assert_eq!(seconds(pause(None)), None);
    assert_eq!(seconds(pause(Some(int(30)))), Some(Ok(30)));
    assert_eq!(seconds(pause(Some(text("45")))), Some(Ok(45)));
    assert_eq!(seconds(pause(Some(text("1h")))), Some(Ok(3600)));
    assert!(matches!(seconds(pause(Some(text("soon")))), Some(Err(_))));
}
