//! The committed CRDs in `crds/` are exactly what the types generate, and every generated schema
//! is structural (the rules a real API server enforces before it accepts a CRD).

use ramp_api::crd;
use serde_json::Value;
use std::path::PathBuf;

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

#[test]
fn committed_crds_are_identical_to_the_generated_ones() {
    let mut stale = Vec::new();
    for file in crd::files() {
        let generated = crd::to_yaml(&file.crd).expect("CRD serializes to YAML");
        let path = crds_dir().join(file.file_name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "these CRD files differ from the types: {stale:?}\nregenerate them with `cargo run -p ramp-cli --bin ramp -- crds --write crds`"
    );
    let committed_files = std::fs::read_dir(crds_dir()).expect("crds/ exists").count();
    assert_eq!(
        committed_files,
        crd::files().len(),
        "crds/ holds a file that is not generated"
    );
}

#[test]
fn crd_names_columns_and_subresources_match_upstream() {
    let crds = crd::all();
    let get = |kind: &str| {
        serde_json::to_value(crds.iter().find(|c| c.spec.names.kind == kind).expect(kind))
            .expect("serializes")
    };
    let rollout = get("Rollout");
    assert_eq!(
        rollout["spec"]["names"]["shortNames"],
        serde_json::json!(["ro"])
    );
    let version = &rollout["spec"]["versions"][0];
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    assert_eq!(
        version["subresources"]["scale"],
        serde_json::json!({
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.HPAReplicas",
            "labelSelectorPath": ".status.selector"
        })
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        ["Desired", "Current", "Up-to-date", "Available", "Age"]
    );
    let selector =
        &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["selector"];
    assert_eq!(
        selector["x-kubernetes-validations"][0]["rule"],
        "self == oldSelf"
    );

    for (kind, short, scope) in [
        ("AnalysisTemplate", "at", "Namespaced"),
        ("ClusterAnalysisTemplate", "cat", "Cluster"),
        ("AnalysisRun", "ar", "Namespaced"),
        ("Experiment", "exp", "Namespaced"),
    ] {
        let crd = get(kind);
        assert_eq!(
            crd["spec"]["names"]["shortNames"],
            serde_json::json!([short]),
            "{kind}"
        );
        assert_eq!(crd["spec"]["scope"], scope, "{kind}");
        // Upstream serves none of these with a status subresource: status is written in place.
        assert_eq!(
            crd["spec"]["versions"][0]["subresources"],
            serde_json::json!({}),
            "{kind}"
        );
    }
    for kind in ["AnalysisRun", "Experiment"] {
        let crd = get(kind);
        let first_column = &crd["spec"]["versions"][0]["additionalPrinterColumns"][0];
        assert_eq!(first_column["name"], "Status", "{kind}");
        assert_eq!(first_column["jsonPath"], ".status.phase", "{kind}");
    }
}

/// Collects violations of the structural-schema rules of apiextensions.k8s.io/v1.
fn structural_violations(node: &Value, path: &str, in_combinator: bool, out: &mut Vec<String>) {
    let Some(map) = node.as_object() else { return };
    // The root metadata is the server's: a schema may say it is an object and nothing more
    // (the real kube-apiserver: "must not specify anything other than name and generateName,
    // but metadata is implicitly specified"; a description counts).
    if path == ".metadata" && !in_combinator {
        let extra: Vec<&String> = map.keys().filter(|k| *k != "type").collect();
        if !extra.is_empty() || map.get("type").is_some_and(|t| t != "object") {
            out.push(format!(
                "{path}: the root metadata may only say `type: object`, not {extra:?}"
            ));
        }
    }
    let int_or_string = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    for forbidden in ["$ref", "definitions", "$defs", "$schema"] {
        if map.contains_key(forbidden) {
            out.push(format!("{path}: `{forbidden}` is not allowed"));
        }
    }
    if in_combinator {
        for key in [
            "type",
            "description",
            "default",
            "additionalProperties",
            "nullable",
        ] {
            if map.contains_key(key) && !int_or_string {
                out.push(format!("{path}: `{key}` inside allOf/anyOf/oneOf/not"));
            }
        }
    } else if !map.contains_key("type") && !int_or_string && !preserves && !path.is_empty() {
        out.push(format!("{path}: no type"));
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        out.push(format!("{path}: both properties and additionalProperties"));
    }
    if map.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.push(format!("{path}: additionalProperties: false"));
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for (key, child) in props {
            structural_violations(child, &format!("{path}.{key}"), in_combinator, out);
        }
    }
    if let Some(items) = map.get("items") {
        structural_violations(items, &format!("{path}[]"), in_combinator, out);
    }
    if let Some(values) = map.get("additionalProperties") {
        structural_violations(values, &format!("{path}{{}}"), in_combinator, out);
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for (i, branch) in map
            .get(combinator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let int_or_string_branch = int_or_string
                && branch
                    .as_object()
                    .is_some_and(|b| b.len() == 1 && b.contains_key("type"));
            if !int_or_string_branch {
                structural_violations(branch, &format!("{path}.{combinator}[{i}]"), true, out);
            }
        }
    }
    if let Some(not) = map.get("not") {
        structural_violations(not, &format!("{path}.not"), true, out);
    }
}

#[test]
fn every_generated_schema_is_structural() {
    for c in crd::all() {
        let crd = serde_json::to_value(&c).expect("serializes");
        for version in crd["spec"]["versions"].as_array().expect("versions") {
            let mut violations = Vec::new();
            structural_violations(
                &version["schema"]["openAPIV3Schema"],
                "",
                false,
                &mut violations,
            );
            assert!(
                violations.is_empty(),
                "{} is not structural:\n{}",
                c.spec.names.kind,
                violations.join("\n")
            );
        }
    }
}

#[test]
fn the_structural_check_catches_violations() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "untyped": {"properties": {"a": {"type": "string"}}},
            "choice": {"type": "object", "anyOf": [{"type": "string"}]},
            "ref": {"$ref": "#/definitions/x"},
            "metadata": {"type": "object", "description": "Standard object metadata."}
        }
    });
    let mut violations = Vec::new();
    structural_violations(&schema, "", false, &mut violations);
    assert_eq!(violations.len(), 5, "{violations:?}");
}
