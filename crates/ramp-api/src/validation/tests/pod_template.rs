//! The API server's pod-template rules, as a Rollout, an Experiment, an analysis Job and a bare
//! Pod meet them. Expected lines are the real server's (kube-apiserver v1.36 refusing the same
//! template in a ReplicaSet), minus the object prefix.

use super::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

fn with_pod(pod: Value) -> Rollout {
    rollout_with(json!({"spec": {"template": {"spec": pod}}}))
}

#[test]
fn a_container_needs_an_image() {
    let rollout = with_pod(json!({"containers": [{"name": "app"}]}));
    assert_eq!(
        rollout_lines(&rollout),
        error("spec.template.spec.containers[0].image: Required value")
    );
    let empty = with_pod(json!({"containers": [{"name": "app", "image": ""}]}));
    assert_eq!(
        rollout_lines(&empty),
        error("spec.template.spec.containers[0].image: Required value")
    );
}

#[test]
fn container_names_are_required_unique_rfc1123_labels_across_init_containers() {
    let rollout = with_pod(json!({
        "initContainers": [{"name": "app", "image": "i"}, {"name": "", "image": "i"}],
        "containers": [
            {"name": "app", "image": "i"},
            {"name": "App_1", "image": "i"},
            {"name": "a.b", "image": "i"},
            {"name": "app", "image": "i"}
        ]
    }));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            r#"error: spec.template.spec.containers[1].name: Invalid value: "App_1": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
            r#"error: spec.template.spec.containers[2].name: Invalid value: "a.b": must not contain dots"#,
            r#"error: spec.template.spec.containers[3].name: Duplicate value: "app""#,
            r#"error: spec.template.spec.initContainers[0].name: Duplicate value: "app""#,
            "error: spec.template.spec.initContainers[1].name: Required value",
        ]
    );
}

#[test]
fn ports_are_in_range_with_unique_valid_names_and_known_protocols() {
    let rollout = with_pod(json!({"containers": [
        {"name": "a", "image": "i", "ports": [
            {"containerPort": 70000, "name": "http"},
            {"containerPort": 0, "name": "http", "hostPort": 99999, "protocol": "XYZ"},
            {"containerPort": 80, "name": "Too-Long-Port-Name-123"},
            {"containerPort": 81, "hostPort": 8080}
        ]},
        {"name": "b", "image": "i", "ports": [{"containerPort": 82, "hostPort": 8080}]}
    ]}));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            r#"error: spec.template.spec.containers[0].ports[1].name: Duplicate value: "http""#,
            "error: spec.template.spec.containers[0].ports[1].containerPort: Required value",
            "error: spec.template.spec.containers[0].ports[1].hostPort: Invalid value: 99999: must be between 1 and 65535, inclusive",
            r#"error: spec.template.spec.containers[0].ports[1].protocol: Unsupported value: "XYZ": supported values: "SCTP", "TCP", "UDP""#,
            r#"error: spec.template.spec.containers[0].ports[2].name: Invalid value: "Too-Long-Port-Name-123": must be no more than 15 characters"#,
            r#"error: spec.template.spec.containers[0].ports[2].name: Invalid value: "Too-Long-Port-Name-123": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
            r#"error: spec.template.spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080""#,
        ]
    );
}

#[test]
fn env_names_are_required_printable_and_without_equals() {
    let rollout = with_pod(json!({"containers": [{"name": "a", "image": "i",
        "env": [{"name": ""}, {"name": "A=B"}, {"name": "my.env-name with space"}]}]}));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.template.spec.containers[0].env[0].name: Required value",
            r#"error: spec.template.spec.containers[0].env[1].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
        ]
    );
}

#[test]
fn volumes_are_unique_labels_of_one_type_and_mounts_refer_to_them() {
    let rollout = with_pod(json!({
        "volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "data", "emptyDir": {}},
            {"name": "Bad_Vol"},
            {"name": "two", "emptyDir": {}, "hostPath": {"path": "/x"}}
        ],
        "containers": [{"name": "a", "image": "i", "volumeMounts": [
            {"name": "nope", "mountPath": "/a"},
            {"name": "data", "mountPath": "/a"},
            {"name": "data", "mountPath": ""},
            {"name": "two", "mountPath": "/b"}
        ]}]
    }));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            r#"error: spec.template.spec.volumes[1].name: Duplicate value: "data""#,
            r#"error: spec.template.spec.volumes[2].name: Invalid value: "Bad_Vol": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
            "error: spec.template.spec.volumes[3].hostPath: Forbidden: may not specify more than 1 volume type",
            r#"error: spec.template.spec.containers[0].volumeMounts[0].name: Not found: "nope""#,
            r#"error: spec.template.spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/a": must be unique"#,
            "error: spec.template.spec.containers[0].volumeMounts[2].mountPath: Required value",
            r#"error: spec.template.spec.containers[0].volumeMounts[3].name: Not found: "two""#,
        ]
    );
}

#[test]
fn a_replica_set_template_restarts_always_and_has_no_deadline() {
    let rollout = with_pod(
        json!({"restartPolicy": "OnFailure", "activeDeadlineSeconds": 30,
        "containers": [{"name": "a", "image": "i"}]}),
    );
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            r#"error: spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always""#,
            "error: spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
        ]
    );
    // What the server defaults may be left out.
    let defaulted = with_pod(
        json!({"restartPolicy": "", "containers": [{"name": "a", "image": "i",
        "ports": [{"containerPort": 80}], "readinessProbe": {"httpGet": {"port": 80}}}]}),
    );
    assert_eq!(rollout_lines(&defaulted), Vec::<String>::new());
}

#[test]
fn probes_need_exactly_one_handler_and_liveness_succeeds_once() {
    let rollout = with_pod(json!({"containers": [{"name": "a", "image": "i",
        "livenessProbe": {"successThreshold": 2, "httpGet": {"port": 0}},
        "readinessProbe": {"periodSeconds": -1},
        "startupProbe": {"exec": {}, "tcpSocket": {"port": "http"}}}]}));
    assert_eq!(
        rollout_lines(&rollout),
        vec![
            "error: spec.template.spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "error: spec.template.spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            "error: spec.template.spec.containers[0].readinessProbe: Required value: must specify a handler type",
            "error: spec.template.spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
            "error: spec.template.spec.containers[0].startupProbe.exec.command: Required value",
            "error: spec.template.spec.containers[0].startupProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
        ]
    );
}

#[test]
fn a_workload_ref_rollout_has_no_template_to_check() {
    // Its template is the Deployment's, which the API server validated when it was written.
    let rollout = rollout_with(json!({"spec": {"template": null,
        "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}}));
    assert_eq!(rollout_lines(&rollout), Vec::<String>::new());
}

#[test]
fn a_pod_may_restart_on_failure_but_not_sometimes() {
    let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(json!({
        "restartPolicy": "OnFailure", "containers": [{"name": "a", "image": "i"}]
    }))
    .expect("pod spec deserializes");
    assert_eq!(
        validate_pod_spec(&spec, &FieldPath::root("spec")),
        Vec::new()
    );
    let sometimes: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(json!({
        "restartPolicy": "Sometimes", "containers": [{"name": "a"}]
    }))
    .expect("pod spec deserializes");
    assert_eq!(
        lines(&validate_pod_spec(&sometimes, &FieldPath::root("spec"))),
        vec![
            "error: spec.containers[0].image: Required value",
            r#"error: spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
        ]
    );
}

#[test]
fn an_analysis_job_template_meets_the_pod_rules() {
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "t"},
        "spec": {"metrics": [{"name": "j", "provider": {"job": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c"}]}}}}}}]}
    }))
    .expect("template deserializes");
    assert_eq!(
        lines(&validate_analysis_template(&template)),
        vec![
            "error: spec.metrics[0].provider.job.spec.template.spec.containers[0].image: Required value"
        ]
    );
}
