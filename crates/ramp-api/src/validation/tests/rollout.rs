//! Rollout rules, one test per rule.

use super::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

#[test]
fn baseline_rollout_is_clean() {
    assert_eq!(
        rollout_lines(&rollout_with(json!({}))),
        Vec::<String>::new()
    );
}

#[test]
fn set_weight_outside_0_to_100() {
    let rollout =
        steps(json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 140}, {"setWeight": -1}]));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.strategy.canary.steps[2].setWeight: 140 is outside 0..100",
            "error: spec.strategy.canary.steps[3].setWeight: -1 is outside 0..100",
        ]
    );
}

#[test]
fn set_weight_is_bounded_by_max_traffic_weight() {
    let rollout = canary_with(json!({
        "trafficRouting": {"nginx": {"stableIngress": "web"}, "maxTrafficWeight": 1000},
        "steps": [{"setWeight": 500}, {"setWeight": 1001}]
    }));
    assert_eq!(
        rollout_lines(&rollout),
        error("spec.strategy.canary.steps[1].setWeight: 1001 is outside 0..1000")
    );
}

#[test]
fn pause_durations_must_parse() {
    let rollout = steps(json!([
        {"pause": {"duration": "30s"}}, {"pause": {"duration": "5m"}}, {"pause": {"duration": "1h"}},
        {"pause": {"duration": 45}}, {"pause": {"duration": "60"}},
        {"pause": {"duration": "5x"}}, {"pause": {"duration": -3}}
    ]));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            r#"error: spec.strategy.canary.steps[5].pause.duration: "5x" is not a duration: unknown unit "x" (use ns, us, ms, s, m or h)"#,
            r#"error: spec.strategy.canary.steps[6].pause.duration: "-3" is negative"#,
        ]
    );
}

#[test]
fn traffic_routing_needs_canary_and_stable_services() {
    let rollout = canary_with(json!({
        "canaryService": null, "stableService": null,
        "trafficRouting": {"nginx": {"stableIngress": "web"}}
    }));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.strategy.canary.canaryService: is required with trafficRouting (nginx)",
            "error: spec.strategy.canary.stableService: is required with trafficRouting (nginx)",
        ]
    );
}

#[test]
fn istio_subset_split_and_plugins_do_not_need_services() {
    let subset = canary_with(json!({
        "canaryService": null, "stableService": null,
        "trafficRouting": {"istio": {
            "virtualService": {"name": "vs"},
            "destinationRule": {"name": "dr", "canarySubsetName": "canary", "stableSubsetName": "stable"}
        }}
    }));
    assert_eq!(rollout_lines(&subset), Vec::<String>::new());
    let host = canary_with(json!({
        "stableService": null,
        "trafficRouting": {"istio": {"virtualService": {"name": "vs"}}}
    }));
    assert_eq!(
        rollout_lines(&host),
        error("spec.strategy.canary.stableService: is required with trafficRouting (istio)")
    );
}

#[test]
fn canary_service_must_differ_from_stable_service() {
    let rollout = canary_with(json!({"canaryService": "same", "stableService": "same"}));
    assert_eq!(
        rollout_lines(&rollout),
        error(r#"spec.strategy.canary.canaryService: "same" must differ from stableService"#)
    );
}

#[test]
fn blue_green_needs_an_active_service_distinct_from_preview() {
    let missing = rollout_with(
        json!({"spec": {"strategy": {"canary": null, "blueGreen": {"activeService": ""}}}}),
    );
    assert_eq!(
        rollout_lines(&missing),
        error("spec.strategy.blueGreen.activeService: is required")
    );
    let same = rollout_with(json!({"spec": {"strategy": {"canary": null,
        "blueGreen": {"activeService": "web", "previewService": "web"}}}}));
    assert_eq!(
        rollout_lines(&same),
        error(r#"spec.strategy.blueGreen.previewService: "web" must differ from activeService"#)
    );
}

#[test]
fn selector_must_match_template_labels() {
    let rollout = rollout_with(json!({"spec": {"selector": {"matchLabels": {"app": "other"}}}}));
    assert_eq!(
        rollout_lines(&rollout),
        error("spec.selector: does not match the template labels {app=checkout}")
    );
}

#[test]
fn selector_is_required_and_not_empty() {
    let missing = rollout_with(json!({"spec": {"selector": null}}));
    assert_eq!(rollout_lines(&missing), error("spec.selector: is required"));
    let empty = rollout_with(json!({"spec": {"selector": {"matchLabels": null}}}));
    assert_eq!(
        rollout_lines(&empty),
        error("spec.selector: is empty; it would select every pod in the namespace")
    );
}

#[test]
fn template_needs_containers_unless_workload_ref() {
    let no_containers = rollout_with(json!({"spec": {"template": {"spec": {"containers": []}}}}));
    assert_eq!(
        rollout_lines(&no_containers),
        error("spec.template.spec.containers: Required value")
    );
    let both = rollout_with(
        json!({"spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}}),
    );
    assert_eq!(
        rollout_lines(&both),
        error("spec.template: must be empty when workloadRef is set")
    );
    let bad_ref = rollout_with(json!({"spec": {"template": null,
        "workloadRef": {"kind": "StatefulSet", "name": "", "scaleDown": "sometimes"}}}));
    assert_eq!(
        rollout_lines(&bad_ref),
        vec![
            r#"error: spec.workloadRef.kind: "StatefulSet" is not a Deployment, ReplicaSet or PodTemplate"#,
            "error: spec.workloadRef.name: is required",
            r#"error: spec.workloadRef.scaleDown: "sometimes" is not one of never, onsuccess, progressively"#,
        ]
    );
}

#[test]
fn exactly_one_strategy() {
    let both = rollout_with(json!({"spec": {"strategy": {"blueGreen": {"activeService": "web"}}}}));
    assert_eq!(
        rollout_lines(&both),
        error("spec.strategy: sets both canary and blueGreen; a rollout uses exactly one strategy")
    );
    let neither = rollout_with(json!({"spec": {"strategy": {"canary": null}}}));
    assert_eq!(
        rollout_lines(&neither),
        error(
            "spec.strategy: sets neither canary nor blueGreen; a rollout needs exactly one strategy"
        )
    );
}

#[test]
fn negative_counts_and_deadline_not_above_min_ready() {
    let rollout = rollout_with(
        json!({"spec": {"replicas": -1, "revisionHistoryLimit": -2, "minReadySeconds": 30,
        "progressDeadlineSeconds": 30}}),
    );
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.replicas: -1 must not be negative",
            "error: spec.revisionHistoryLimit: -2 must not be negative",
            "error: spec.progressDeadlineSeconds: 30 must be greater than minReadySeconds (30)",
        ]
    );
}

#[test]
fn max_surge_and_max_unavailable_cannot_both_be_zero() {
    let rollout = canary_with(json!({"maxSurge": 0, "maxUnavailable": "0%"}));
    assert_eq!(
        rollout_lines(&rollout),
        error(
            "spec.strategy.canary.maxUnavailable: maxSurge and maxUnavailable are both 0, so no pod could ever be replaced"
        )
    );
    let malformed = canary_with(json!({"maxSurge": "lots"}));
    assert_eq!(
        rollout_lines(&malformed),
        error(r#"spec.strategy.canary.maxSurge: "lots" is neither an integer nor a percentage"#)
    );
}

#[test]
fn routing_only_fields_without_traffic_routing() {
    let rollout = canary_with(
        json!({"scaleDownDelaySeconds": 10, "dynamicStableScale": true,
        "abortScaleDownDelaySeconds": 5, "minPodsPerReplicaSet": 2}),
    );
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.strategy.canary.scaleDownDelaySeconds: is only valid with trafficRouting",
            "error: spec.strategy.canary.dynamicStableScale: is only valid with trafficRouting",
            "warning: spec.strategy.canary.abortScaleDownDelaySeconds: has no effect without trafficRouting: a basic canary scales down at once on abort",
            "warning: spec.strategy.canary.minPodsPerReplicaSet: has no effect without trafficRouting",
            "error: spec.strategy.canary.dynamicStableScale: cannot be combined with scaleDownDelaySeconds",
        ]
    );
}

#[test]
fn max_traffic_weight_only_with_nginx_or_plugins() {
    let rollout = canary_with(
        json!({"trafficRouting": {"istio": {"virtualService": {"name": "vs"}}, "maxTrafficWeight": 1000}}),
    );
    assert_eq!(
        rollout_lines(&rollout),
        error(
            "spec.strategy.canary.trafficRouting.maxTrafficWeight: is only supported with nginx or plugins, not istio"
        )
    );
}

#[test]
fn set_canary_scale_needs_traffic_routing_and_one_member() {
    let rollout = steps(json!([{"setCanaryScale": {"weight": 10, "replicas": 2}}]));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.strategy.canary.steps[0].setCanaryScale: is only valid with trafficRouting",
            "error: spec.strategy.canary.steps[0].setCanaryScale: must set exactly one of weight, replicas, matchTrafficWeight: true",
        ]
    );
}

#[test]
fn steps_set_exactly_one_exclusive_kind() {
    let rollout = steps(json!([{}, {"setWeight": 10, "pause": {}}]));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.strategy.canary.steps[0]: sets no step kind (setWeight, pause, analysis, experiment, setCanaryScale, setHeaderRoute, setMirrorRoute or plugin)",
            "error: spec.strategy.canary.steps[1]: sets setWeight and pause; a step may set only one of setWeight, pause, experiment, analysis",
        ]
    );
}

fn istio_routing(managed: Value) -> Value {
    json!({"istio": {"virtualService": {"name": "vs", "routes": ["primary"]}}, "managedRoutes": managed})
}

#[test]
fn header_routes_need_a_listed_managed_route_and_valid_matches() {
    let rollout = canary_with(json!({
        "trafficRouting": istio_routing(json!([{"name": "header"}])),
        "steps": [
            {"setHeaderRoute": {"name": "header", "match": [{"headerName": "x-canary", "headerValue": {"exact": "yes"}}]}},
            {"setHeaderRoute": {"name": "other", "match": [{"headerName": "x", "headerValue": {}}]}},
            {"setHeaderRoute": {"name": "header", "match": [{"headerName": "x", "headerValue": {"exact": "a", "regex": "b"}}]}}
        ]
    }));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            r#"error: spec.strategy.canary.steps[1].setHeaderRoute.name: "other" is not listed in spec.strategy.canary.trafficRouting.managedRoutes"#,
            "error: spec.strategy.canary.steps[1].setHeaderRoute.match[0].headerValue: sets 0 of exact, prefix, regex; exactly one is required",
            "error: spec.strategy.canary.steps[2].setHeaderRoute.match[0].headerValue: sets 2 of exact, prefix, regex; exactly one is required",
        ]
    );
}

#[test]
fn header_and_mirror_routes_need_managed_routes_and_a_supporting_router() {
    let rollout = canary_with(json!({
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [
            {"setHeaderRoute": {"name": "header"}},
            {"setMirrorRoute": {"name": "mirror", "percentage": 150, "match": [{"path": {"prefix": "/a", "exact": "/b"}}]}}
        ]
    }));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.strategy.canary.steps[0].setHeaderRoute: is not supported by the nginx traffic router (only istio, alb, apisix, plugins)",
            r#"error: spec.strategy.canary.steps[0].setHeaderRoute.name: "header" needs spec.strategy.canary.trafficRouting.managedRoutes, which is empty"#,
            "error: spec.strategy.canary.steps[1].setMirrorRoute: is not supported by the nginx traffic router (only istio, plugins)",
            r#"error: spec.strategy.canary.steps[1].setMirrorRoute.name: "mirror" needs spec.strategy.canary.trafficRouting.managedRoutes, which is empty"#,
            "error: spec.strategy.canary.steps[1].setMirrorRoute.percentage: 150 is outside 0..100",
            "error: spec.strategy.canary.steps[1].setMirrorRoute.match[0].path: sets 2 of exact, prefix, regex; exactly one is required",
        ]
    );
}

#[test]
fn alb_header_routes_match_exact_values_only() {
    let rollout = canary_with(json!({
        "trafficRouting": {"alb": {"ingress": "web", "servicePort": 80}, "managedRoutes": [{"name": "h"}]},
        "steps": [{"setHeaderRoute": {"name": "h", "match": [{"headerName": "x", "headerValue": {"prefix": "a"}}]}}]
    }));
    assert_eq!(
        rollout_lines(&rollout),
        error(
            "spec.strategy.canary.steps[0].setHeaderRoute.match[0].headerValue: the alb traffic router only supports exact header matches"
        )
    );
}

#[test]
fn duplicate_managed_routes() {
    let rollout = canary_with(
        json!({"trafficRouting": istio_routing(json!([{"name": "a"}, {"name": "a"}]))}),
    );
    assert_eq!(
        rollout_lines(&rollout),
        error(
            r#"spec.strategy.canary.trafficRouting.managedRoutes[1].name: "a" is listed more than once"#
        )
    );
}

#[test]
fn traffic_router_shapes() {
    let rollout = canary_with(json!({"trafficRouting": {
        "istio": {"virtualService": {"name": "a"}, "virtualServices": [{"name": "b"}]},
        "nginx": {}
    }}));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.strategy.canary.trafficRouting.istio: sets both virtualService and virtualServices; use one or the other",
            "error: spec.strategy.canary.trafficRouting.nginx: needs stableIngress or stableIngresses",
        ]
    );
    let empty = canary_with(json!({"trafficRouting": {}}));
    assert_eq!(
        rollout_lines(&empty),
        error(
            "spec.strategy.canary.trafficRouting: names no traffic router (istio, nginx, alb, smi, ambassador, appMesh, traefik, apisix or plugins)"
        )
    );
}

#[test]
fn anti_affinity_needs_exactly_one_kind_and_a_weight_in_range() {
    let both = canary_with(json!({"antiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {},
        "preferredDuringSchedulingIgnoredDuringExecution": {"weight": 0}
    }}));
    assert_eq!(
        rollout_lines(&both),
        vec![
            "error: spec.strategy.canary.antiAffinity: sets both requiredDuringSchedulingIgnoredDuringExecution and preferredDuringSchedulingIgnoredDuringExecution; set exactly one",
            "error: spec.strategy.canary.antiAffinity.preferredDuringSchedulingIgnoredDuringExecution.weight: 0 is outside 1..100",
        ]
    );
    let neither = canary_with(json!({"antiAffinity": {}}));
    assert_eq!(
        rollout_lines(&neither),
        error(
            "spec.strategy.canary.antiAffinity: sets neither requiredDuringSchedulingIgnoredDuringExecution nor preferredDuringSchedulingIgnoredDuringExecution; set exactly one"
        )
    );
}

#[test]
fn ping_pong_rules() {
    let rollout = canary_with(json!({
        "pingPong": {"pingService": "ping", "pongService": "ping"},
        "trafficRouting": {"alb": {"ingress": "web", "servicePort": 80}}
    }));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            r#"error: spec.strategy.canary.pingPong.pongService: "ping" must differ from pingService"#,
            "error: spec.strategy.canary.trafficRouting.alb.rootService: is required when pingPong is used with alb",
        ]
    );
    let nginx = canary_with(json!({
        "pingPong": {"pingService": "ping", "pongService": "pong"},
        "trafficRouting": {"nginx": {"stableIngress": "web"}}
    }));
    assert_eq!(
        rollout_lines(&nginx),
        error(
            "spec.strategy.canary.pingPong: is not supported with the nginx traffic router (only alb, istio, plugins)"
        )
    );
}

#[test]
fn scale_down_delay_revision_limit_cannot_exceed_history() {
    let rollout = rollout_with(
        json!({"spec": {"revisionHistoryLimit": 2, "strategy": {"canary": null,
        "blueGreen": {"activeService": "web", "scaleDownDelayRevisionLimit": 3}}}}),
    );
    assert_eq!(
        rollout_lines(&rollout),
        error(
            "spec.strategy.blueGreen.scaleDownDelayRevisionLimit: 3 must not exceed revisionHistoryLimit (2)"
        )
    );
}

#[test]
fn experiment_step_rules() {
    let rollout = steps(json!([{"experiment": {
        "duration": "1 hour",
        "templates": [
            {"name": "a", "specRef": "canary", "weight": 10},
            {"name": "a", "specRef": "newest"}
        ],
        "analyses": [{"name": "x", "templateName": "t"}, {"name": "x", "templateName": "t"}]
    }}]));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            r#"error: spec.strategy.canary.steps[0].experiment.duration: "1 hour" is not a duration: unknown unit " hour" (use ns, us, ms, s, m or h)"#,
            "error: spec.strategy.canary.steps[0].experiment.templates[0].weight: is only valid with trafficRouting",
            r#"error: spec.strategy.canary.steps[0].experiment.templates[1].name: "a" is used by more than one template"#,
            r#"error: spec.strategy.canary.steps[0].experiment.templates[1].specRef: "newest" is not canary or stable"#,
            r#"error: spec.strategy.canary.steps[0].experiment.analyses[1].name: "x" is used by more than one analysis"#,
        ]
    );
}

#[test]
fn analysis_arguments_on_the_rollout() {
    let rollout = steps(
        json!([{"analysis": {"templates": [{"templateName": "t"}], "args": [
            {"name": "a", "value": "1", "valueFrom": {"podTemplateHashValue": "Latest"}},
            {"name": "b", "valueFrom": {"podTemplateHashValue": "Newest"}},
            {"name": "c", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
            {"name": "d", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['env']"}}},
            {"name": "d", "value": "x"}
        ]}}]),
    );
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.strategy.canary.steps[0].analysis.args[0]: sets both value and valueFrom; set one",
            r#"error: spec.strategy.canary.steps[0].analysis.args[1].valueFrom.podTemplateHashValue: "Newest" is not Stable or Latest"#,
            r#"warning: spec.strategy.canary.steps[0].analysis.args[3].valueFrom.fieldRef.fieldPath: "metadata.labels['env']" refers to the label "env", which the rollout does not have: the argument is an empty string until it does"#,
            r#"error: spec.strategy.canary.steps[0].analysis.args[4].name: "d" is passed more than once"#,
        ]
    );
}

#[test]
fn background_analysis_starting_step_within_steps() {
    let rollout =
        canary_with(json!({"analysis": {"templates": [{"templateName": "t"}], "startingStep": 4}}));
    assert_eq!(
        rollout_lines(&rollout),
        error(
            "spec.strategy.canary.analysis.startingStep: 4 is outside 0..3 (the number of steps)"
        )
    );
}
