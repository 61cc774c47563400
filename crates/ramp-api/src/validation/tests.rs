//! One test per validation rule: a valid baseline is checked clean, then each test changes one
//! thing and expects exactly the finding that change causes.

use super::*;
use crate::analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use crate::experiment::Experiment;
use crate::rollout::Rollout;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// RFC 7386 merge patch, enough to derive test objects from a baseline.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn base_rollout() -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "checkout", "namespace": "shop", "labels": {"team": "payments"}},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{"name": "app", "image": "checkout:1"}]}
            },
            "strategy": {"canary": {
                "canaryService": "checkout-canary",
                "stableService": "checkout-stable",
                "steps": [{"setWeight": 20}, {"pause": {"duration": "30s"}}, {"setWeight": 100}]
            }}
        }
    })
}

fn rollout_with(patch: Value) -> Rollout {
    let mut value = base_rollout();
    merge(&mut value, &patch);
    serde_json::from_value(value).expect("test rollout deserializes")
}

fn canary_with(canary: Value) -> Rollout {
    rollout_with(json!({"spec": {"strategy": {"canary": canary}}}))
}

fn steps(steps: Value) -> Rollout {
    canary_with(json!({"steps": steps}))
}

fn lines(problems: &[Problem]) -> Vec<String> {
    problems
        .iter()
        .map(|p| format!("{}: {p}", p.severity))
        .collect()
}

fn rollout_lines(rollout: &Rollout) -> Vec<String> {
    lines(&validate_rollout(rollout))
}

fn error(text: &str) -> Vec<String> {
    vec![format!("error: {text}")]
}

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
        error("spec.template.spec.containers: at least one container is required")
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
            r#"error: spec.strategy.canary.steps[0].analysis.args[3].valueFrom.fieldRef.fieldPath: "metadata.labels['env']" refers to the label "env", which the rollout does not have"#,
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

// ---- analysis templates and runs ----

fn template_with_metrics(metrics: Value) -> AnalysisTemplate {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "t", "namespace": "shop"},
        "spec": {"metrics": metrics}
    }))
    .expect("test template deserializes")
}

fn prometheus_metric(extra: Value) -> Value {
    let mut metric = json!({"name": "success-rate", "provider": {"prometheus": {"address": "http://prom", "query": "up"}}});
    merge(&mut metric, &extra);
    metric
}

fn template_lines(metrics: Value) -> Vec<String> {
    lines(&validate_analysis_template(&template_with_metrics(metrics)))
}

#[test]
fn valid_template_is_clean() {
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"interval": "1m", "count": 5, "failureLimit": 2})
        )])),
        Vec::<String>::new()
    );
}

#[test]
fn duplicate_metric_names_in_one_template() {
    assert_eq!(
        template_lines(json!([
            prometheus_metric(json!({})),
            prometheus_metric(json!({}))
        ])),
        error(
            r#"spec.metrics[1].name: duplicate metric name "success-rate": metric names must be unique"#
        )
    );
}

#[test]
fn metric_limits() {
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"failureLimit": -2, "inconclusiveLimit": -1,
            "consecutiveErrorLimit": -1, "consecutiveSuccessLimit": -1})
        )])),
        vec![
            "error: spec.metrics[0].failureLimit: -2 must be -1 (disabled) or at least 0",
            "error: spec.metrics[0].inconclusiveLimit: -1 must not be negative",
            "error: spec.metrics[0].consecutiveErrorLimit: -1 must not be negative",
            "error: spec.metrics[0].consecutiveSuccessLimit: -1 must not be negative",
        ]
    );
    assert_eq!(
        template_lines(json!([prometheus_metric(json!({"failureLimit": -1}))])),
        error(
            "spec.metrics[0].failureLimit: -1 disables the failure limit, which needs consecutiveSuccessLimit above 0 so the metric can still end"
        )
    );
}

#[test]
fn count_against_limits_and_interval() {
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"interval": "1m", "count": 2, "failureLimit": 2,
            "consecutiveSuccessLimit": 1, "inconclusiveLimit": 3})
        )])),
        vec![
            "error: spec.metrics[0].count: 2 must be at least failureLimit + consecutiveSuccessLimit (3)",
            "error: spec.metrics[0].count: 2 must be at least inconclusiveLimit (3)",
        ]
    );
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"interval": "1m", "count": 2, "failureLimit": -1,
            "consecutiveSuccessLimit": 3})
        )])),
        error("spec.metrics[0].count: 2 must be at least consecutiveSuccessLimit (3)")
    );
    assert_eq!(
        template_lines(json!([prometheus_metric(json!({"count": 3}))])),
        error("spec.metrics[0].count: 3 measurements need an interval between them")
    );
}

#[test]
fn placeholders_are_not_judged_but_malformed_numbers_are() {
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"count": "{{args.count}}", "interval": "{{args.interval}}"})
        )])),
        Vec::<String>::new()
    );
    assert_eq!(
        template_lines(json!([prometheus_metric(json!({"failureLimit": "three"}))])),
        error(r#"spec.metrics[0].failureLimit: "three" is not an integer"#)
    );
}

#[test]
fn interval_and_initial_delay_must_parse() {
    assert_eq!(
        template_lines(json!([prometheus_metric(
            json!({"interval": "5", "initialDelay": "soon"})
        )])),
        vec![
            r#"error: spec.metrics[0].interval: "5" is not a duration: missing unit after "5" (use ns, us, ms, s, m or h)"#,
            r#"error: spec.metrics[0].initialDelay: "soon" is not a duration: a number must precede each unit"#,
        ]
    );
}

#[test]
fn exactly_one_provider() {
    assert_eq!(
        template_lines(json!([{"name": "none", "provider": {}}])),
        error("spec.metrics[0].provider: no provider specified")
    );
    assert_eq!(
        template_lines(
            json!([{"name": "two", "provider": {"prometheus": {"query": "up"}, "web": {"url": "http://x"}}}])
        ),
        error("spec.metrics[0].provider: multiple providers specified: prometheus, web")
    );
}

#[test]
fn provider_settings() {
    assert_eq!(
        template_lines(json!([
            {"name": "p", "provider": {"prometheus": {"timeout": -1}}},
            {"name": "w", "provider": {"web": {"url": "", "method": "PATCH", "body": "a", "jsonBody": {"a": 1}}}},
            {"name": "g", "provider": {"web": {"url": "http://x", "body": "a"}}},
            {"name": "j", "provider": {"job": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}}}
        ])),
        vec![
            "error: spec.metrics[0].provider.prometheus.query: is required",
            "error: spec.metrics[0].provider.prometheus.timeout: -1 must not be negative",
            "error: spec.metrics[1].provider.web.url: is required",
            r#"error: spec.metrics[1].provider.web.method: "PATCH" is not one of GET, POST, PUT"#,
            "error: spec.metrics[1].provider.web: sets both body and jsonBody; set one",
            "error: spec.metrics[2].provider.web.method: GET requests cannot carry body or jsonBody; use POST or PUT",
            "error: spec.metrics[3].provider.job.spec.template.spec.restartPolicy: is required for a Job (Never or OnFailure)",
        ]
    );
}

#[test]
fn template_needs_metrics_and_well_formed_args() {
    let template: ClusterAnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "ClusterAnalysisTemplate", "metadata": {"name": "c"},
        "spec": {"args": [
            {"name": "a"}, {"name": "a", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "b", "valueFrom": {}}
        ], "dryRun": [{"metricName": ""}], "measurementRetention": [{"metricName": "x", "limit": -1}]}
    }))
    .expect("deserializes");
    assert_eq!(
        lines(&validate_cluster_analysis_template(&template)),
        vec![
            "error: spec.metrics: at least one metric is required (or include other templates with spec.templates)",
            r#"error: spec.args[1].name: "a" is declared more than once"#,
            "error: spec.args[1]: sets both value and valueFrom; set one",
            "error: spec.args[2].valueFrom: sets neither secretKeyRef nor fieldRef",
            "error: spec.dryRun[0].metricName: is required",
            "error: spec.measurementRetention[0].limit: -1 must not be negative",
        ]
    );
}

#[test]
fn analysis_run_args_must_be_resolved() {
    let run: AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": "r"},
        "spec": {"metrics": [prometheus_metric(json!({}))], "args": [{"name": "service"}],
                 "ttlStrategy": {"secondsAfterCompletion": -5}}
    }))
    .expect("deserializes");
    assert_eq!(
        lines(&validate_analysis_run(&run)),
        vec![
            r#"error: spec.args[0]: argument "service" has neither value nor valueFrom, so it can never be resolved"#,
            "error: spec.ttlStrategy.secondsAfterCompletion: -5 must not be negative",
        ]
    );
}

// ---- experiments ----

#[test]
fn experiment_rules() {
    let experiment: Experiment = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "e"},
        "spec": {
            "duration": "forever",
            "templates": [
                {"name": "a", "selector": {"matchLabels": {"app": "a"}},
                 "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c"}]}}},
                {"name": "a", "replicas": -1, "selector": {"matchLabels": {"app": "a"}},
                 "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": []}}}
            ],
            "analyses": [{"name": "x", "templateName": ""}]
        }
    }))
    .expect("deserializes");
    assert_eq!(
        lines(&validate_experiment(&experiment)),
        vec![
            r#"error: spec.duration: "forever" is not a duration: a number must precede each unit"#,
            "error: spec.templates[0].selector: does not match the template labels {app=b}",
            r#"error: spec.templates[1].name: "a" is used by more than one template"#,
            "error: spec.templates[1].replicas: -1 must not be negative",
            "error: spec.templates[1].template.spec.containers: at least one container is required",
            "error: spec.analyses[0].templateName: is required",
        ]
    );
}

// ---- references ----

fn catalog() -> TemplateCatalog {
    let mut catalog = TemplateCatalog::new();
    let spec = |value: Value| serde_json::from_value(value).expect("template spec deserializes");
    catalog.add_analysis_template(
        Some("shop"),
        "success-rate",
        spec(
            json!({"args": [{"name": "service"}, {"name": "threshold", "value": "0.95"}],
            "metrics": [prometheus_metric(json!({"interval": "1m", "count": 3}))]}),
        ),
    );
    catalog.add_analysis_template(
        Some("shop"),
        "forever",
        spec(json!({"metrics": [prometheus_metric(json!({"name": "latency", "interval": "1m"}))]})),
    );
    catalog.add_analysis_template(
        Some("shop"),
        "also-success-rate",
        spec(json!({"args": [{"name": "threshold", "value": "0.99"}], "metrics": [prometheus_metric(json!({}))]})),
    );
    catalog.add_analysis_template(
        Some("shop"),
        "composite",
        spec(json!({"templates": [{"templateName": "forever"}, {"templateName": "gone"}]})),
    );
    catalog
}

fn reference_lines(rollout: &Rollout) -> Vec<String> {
    lines(&check_references(rollout, &catalog()))
}

#[test]
fn referenced_templates_must_exist_when_templates_are_known() {
    let rollout = steps(json!([{"analysis": {"templates": [{"templateName": "missing"}]}}]));
    assert_eq!(
        reference_lines(&rollout),
        error(
            r#"spec.strategy.canary.steps[0].analysis.templates[0].templateName: AnalysisTemplate "missing" is not among the given templates"#
        )
    );
    // No ClusterAnalysisTemplate is known at all, so a cluster-scoped reference is not judged.
    let cluster = steps(
        json!([{"analysis": {"templates": [{"templateName": "missing", "clusterScope": true}]}}]),
    );
    assert_eq!(reference_lines(&cluster), Vec::<String>::new());
    // Nor is anything when no template is known.
    assert_eq!(
        lines(&check_references(&rollout, &TemplateCatalog::new())),
        Vec::<String>::new()
    );
}

#[test]
fn required_args_must_be_passed() {
    let missing = steps(json!([{"analysis": {"templates": [{"templateName": "success-rate"}]}}]));
    assert_eq!(
        reference_lines(&missing),
        error(
            r#"spec.strategy.canary.steps[0].analysis.args: argument "service" required by AnalysisTemplate "success-rate" is not passed"#
        )
    );
    let passed = steps(
        json!([{"analysis": {"templates": [{"templateName": "success-rate"}],
        "args": [{"name": "service", "value": "checkout"}]}}]),
    );
    assert_eq!(reference_lines(&passed), Vec::<String>::new());
}

#[test]
fn passed_args_no_template_declares_are_flagged() {
    let rollout = steps(
        json!([{"analysis": {"templates": [{"templateName": "success-rate"}],
        "args": [{"name": "service", "value": "checkout"}, {"name": "servce", "value": "checkout"}]}}]),
    );
    assert_eq!(
        reference_lines(&rollout),
        vec![
            r#"warning: spec.strategy.canary.steps[0].analysis.args[1]: argument "servce" is not declared by any of the templates, so it is ignored"#
        ]
    );
    // With a template that cannot be judged, nothing is known about what is declared.
    let unknown = steps(json!([{"analysis": {
        "templates": [{"templateName": "success-rate"}, {"templateName": "x", "clusterScope": true}],
        "args": [{"name": "service", "value": "checkout"}, {"name": "servce", "value": "checkout"}]}}]));
    assert_eq!(reference_lines(&unknown), Vec::<String>::new());
}

#[test]
fn merged_templates_need_unique_metric_names_and_agreeing_args() {
    let rollout = canary_with(json!({"analysis": {
        "templates": [{"templateName": "success-rate"}, {"templateName": "also-success-rate"}],
        "args": [{"name": "service", "value": "checkout"}]
    }}));
    assert_eq!(
        reference_lines(&rollout),
        vec![
            r#"error: spec.strategy.canary.analysis.templates[1].templateName: duplicate metric name "success-rate": defined by both AnalysisTemplate "success-rate" and AnalysisTemplate "also-success-rate""#,
            r#"error: spec.strategy.canary.analysis.templates[1].templateName: argument "threshold" has conflicting values: "0.95" in AnalysisTemplate "success-rate" and "0.99" in AnalysisTemplate "also-success-rate""#,
        ]
    );
}

#[test]
fn unbounded_metrics_only_in_background_analysis() {
    let step = steps(json!([{"analysis": {"templates": [{"templateName": "forever"}]}}]));
    assert_eq!(
        reference_lines(&step),
        error(
            r#"spec.strategy.canary.steps[0].analysis.templates[0].templateName: metric "latency" of AnalysisTemplate "forever" has an interval but no count, so it never ends; only background analysis may run indefinitely"#
        )
    );
    let background = canary_with(json!({"analysis": {"templates": [{"templateName": "forever"}]}}));
    assert_eq!(reference_lines(&background), Vec::<String>::new());
    let post = rollout_with(json!({"spec": {"strategy": {"canary": null, "blueGreen": {
        "activeService": "web", "postPromotionAnalysis": {"templates": [{"templateName": "forever"}]}}}}}));
    assert_eq!(
        reference_lines(&post),
        error(
            r#"spec.strategy.blueGreen.postPromotionAnalysis.templates[0].templateName: metric "latency" of AnalysisTemplate "forever" has an interval but no count, so it never ends; only background analysis may run indefinitely"#
        )
    );
}

#[test]
fn included_templates_are_resolved() {
    let rollout = canary_with(json!({"analysis": {"templates": [{"templateName": "composite"}]}}));
    assert_eq!(
        reference_lines(&rollout),
        error(
            r#"spec.strategy.canary.analysis.templates[0].templateName: AnalysisTemplate "composite" includes AnalysisTemplate "gone", which is not among the given templates"#
        )
    );
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "x", "namespace": "shop"},
        "spec": {"templates": [{"templateName": "nope"}]}
    }))
    .expect("deserializes");
    assert_eq!(
        lines(&check_template_includes(
            Some("shop"),
            &template.spec,
            &catalog()
        )),
        error(
            r#"spec.templates[0].templateName: AnalysisTemplate "nope" is not among the given templates"#
        )
    );
}

#[test]
fn include_cycles_are_reported() {
    let mut catalog = TemplateCatalog::new();
    let spec = |value: Value| serde_json::from_value(value).expect("deserializes");
    catalog.add_analysis_template(
        None,
        "a",
        spec(json!({"templates": [{"templateName": "b"}]})),
    );
    catalog.add_analysis_template(
        None,
        "b",
        spec(json!({"templates": [{"templateName": "a"}]})),
    );
    let mut rollout = base_rollout();
    merge(
        &mut rollout,
        &json!({"metadata": {"namespace": null},
        "spec": {"strategy": {"canary": {"analysis": {"templates": [{"templateName": "a"}]}}}}}),
    );
    let rollout: Rollout = serde_json::from_value(rollout).expect("deserializes");
    assert_eq!(
        lines(&check_references(&rollout, &catalog)),
        error(
            r#"spec.strategy.canary.analysis.templates[0].templateName: templates include each other in a cycle: AnalysisTemplate "a" -> AnalysisTemplate "b" -> AnalysisTemplate "a""#
        )
    );
}

#[test]
fn experiment_analyses_are_checked_against_templates() {
    let experiment: Experiment = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "e", "namespace": "shop"},
        "spec": {"templates": [], "analyses": [
            {"name": "a", "templateName": "success-rate"},
            {"name": "b", "templateName": "nowhere"}
        ]}
    }))
    .expect("deserializes");
    assert_eq!(
        lines(&check_experiment_references(&experiment, &catalog())),
        vec![
            r#"error: spec.analyses[0].args: argument "service" required by AnalysisTemplate "success-rate" is not passed"#,
            r#"error: spec.analyses[1].templateName: AnalysisTemplate "nowhere" is not among the given templates"#,
        ]
    );
}

// ---- quirks worth a warning, metric-name rules, services ----

#[test]
fn string_budgets_without_a_percent_sign_are_percentages() {
    let rollout = canary_with(json!({"maxSurge": "3", "maxUnavailable": "10%"}));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            r#"warning: spec.strategy.canary.maxSurge: "3" is read as 3 percent, not 3 pods (any string is a percentage); write 3 for pods or "3%""#
        ]
    );
}

#[test]
fn metric_name_rules_must_be_regular_expressions() {
    let rollout = steps(json!([{"analysis": {"templates": [{"templateName": "t"}],
        "dryRun": [{"metricName": "*"}], "measurementRetention": [{"metricName": "ok.*", "limit": 5}]}}]));
    assert_eq!(
        rollout_lines(&rollout),
        error(
            r#"spec.strategy.canary.steps[0].analysis.dryRun[0].metricName: "*" is not a valid regular expression: repetition operator missing expression"#
        )
    );
}

#[test]
fn dry_run_rules_must_match_a_merged_metric() {
    let rollout = canary_with(json!({"analysis": {
        "templates": [{"templateName": "success-rate"}],
        "args": [{"name": "service", "value": "checkout"}],
        "dryRun": [{"metricName": "success.*"}, {"metricName": "latency"}]
    }}));
    assert_eq!(
        reference_lines(&rollout),
        error(
            r#"spec.strategy.canary.analysis.dryRun[1].metricName: "latency" matches none of the metrics (success-rate), which makes the AnalysisRun fail"#
        )
    );
}

#[test]
fn nil_helpers_that_ignore_their_argument_are_flagged() {
    assert_eq!(
        template_lines(json!([prometheus_metric(json!({
            "successCondition": "default(result[0], 0) < 0.05 && default(result, 1) > 0",
            "failureCondition": "isNil(result.value) || my.default(x)"
        }))])),
        vec![
            r#"warning: spec.metrics[0].successCondition: default(result[0], ...) tests `result` as a whole, not "result[0]": upstream's default() ignores its first argument"#,
            r#"warning: spec.metrics[0].failureCondition: isNil(result.value) tests `result` as a whole, not "result.value": upstream's isNil() ignores its first argument"#,
        ]
    );
}

#[test]
fn named_services_must_select_the_template_labels() {
    let mut services = ServiceCatalog::new();
    services.add_service(
        Some("shop"),
        "checkout-canary",
        [("app", "checkout"), ("rollouts-pod-template-hash", "abc")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    );
    services.add_service(
        Some("shop"),
        "checkout-stable",
        [("app", "checkout"), ("tier", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    );
    let rollout = rollout_with(json!({}));
    assert_eq!(
        lines(&check_services(&rollout, &services)),
        error(
            r#"spec.strategy.canary.stableService: Service "checkout-stable" selects tier=web, which the pod template labels {app=checkout} do not carry, so it would never reach the rollout's pods"#
        )
    );
    // A Service in another namespace is not the one the rollout names.
    let elsewhere = rollout_with(json!({"metadata": {"namespace": "other"}}));
    assert_eq!(
        lines(&check_services(&elsewhere, &services)),
        Vec::<String>::new()
    );
}
