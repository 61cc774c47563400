//! Field coverage: every field path of Argo Rollouts' own CRDs must exist in Ramp's generated
//! CRDs with a compatible type, so that no manifest accepted upstream loses a field on Ramp.
//! On failure the test prints every missing or mismatched path.

use ramp_api::crd;
use ramp_sim::compat::{self, ArgoRollouts};
use serde_json::Value;
use std::collections::BTreeMap;

fn upstream_crd(upstream: &ArgoRollouts, file: &str) -> Value {
    let path = upstream.crd(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading upstream CRD {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn v1alpha1_schema(crd: &Value) -> &Value {
    crd["spec"]["versions"]
        .as_array()
        .and_then(|versions| versions.iter().find(|v| v["name"] == "v1alpha1"))
        .map(|v| &v["schema"]["openAPIV3Schema"])
        .expect("the CRD serves v1alpha1 with a schema")
}

/// What the API server makes of one node of a structural schema.
#[derive(Clone, Debug, PartialEq)]
struct Shape {
    /// `integer`, `string`, `object`, ..., `int-or-string`, or `any` (preserve-unknown, no type).
    ty: String,
    /// `x-kubernetes-preserve-unknown-fields: true`: everything below is kept verbatim.
    preserves_unknown: bool,
}

fn shape_of(node: &Value) -> Shape {
    let preserves_unknown = node["x-kubernetes-preserve-unknown-fields"] == true;
    let ty = if node["x-kubernetes-int-or-string"] == true {
        "int-or-string".to_string()
    } else if let Some(ty) = node["type"].as_str() {
        ty.to_string()
    } else if preserves_unknown {
        "any".to_string()
    } else {
        "untyped".to_string()
    };
    Shape {
        ty,
        preserves_unknown,
    }
}

/// Flattens a schema into `path -> shape`, e.g. `spec.strategy.canary.steps[].setWeight`.
/// `[]` stands for list items and `{}` for map values.
fn collect(node: &Value, path: &str, out: &mut BTreeMap<String, Shape>) {
    if !path.is_empty() {
        out.insert(path.to_string(), shape_of(node));
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    if let Some(props) = node["properties"].as_object() {
        for (key, child) in props {
            collect(child, &join(key), out);
        }
    }
    if node["items"].is_object() {
        collect(&node["items"], &format!("{path}[]"), out);
    }
    if node["additionalProperties"].is_object() {
        collect(&node["additionalProperties"], &format!("{path}{{}}"), out);
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for branch in node[combinator].as_array().into_iter().flatten() {
            if let Some(props) = branch["properties"].as_object() {
                for (key, child) in props {
                    collect(child, &join(key), out);
                }
            }
        }
    }
}

/// The closest ancestor (or the path itself) of `path` that Ramp's schema keeps verbatim.
fn preserved_ancestor<'a>(path: &str, ramp: &'a BTreeMap<String, Shape>) -> Option<&'a str> {
    let mut prefix = path;
    loop {
        if let Some((key, shape)) = ramp.get_key_value(prefix)
            && shape.preserves_unknown
        {
            return Some(key.as_str());
        }
        let cut = prefix.rfind(['.', '[', '{'])?;
        prefix = &prefix[..cut];
    }
}

/// Type differences that are not incompatibilities, each with the reason it is safe.
fn equivalent(upstream: &Shape, ramp: &Shape) -> bool {
    upstream.ty == ramp.ty
        // Ramp's schema keeps the value verbatim: whatever upstream accepts is kept.
        || ramp.ty == "any"
}

struct Report {
    kind: &'static str,
    total: usize,
    missing: Vec<String>,
    mismatched: Vec<String>,
}

fn compare(upstream: &ArgoRollouts, kind: &'static str, upstream_file: &str) -> Report {
    let upstream = upstream_crd(upstream, upstream_file);
    let ours = crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("ramp_api::crd::all() has no {kind}"));
    let ours = serde_json::to_value(&ours).expect("a CRD serializes");

    let mut up = BTreeMap::new();
    collect(v1alpha1_schema(&upstream), "", &mut up);
    let mut ramp = BTreeMap::new();
    collect(v1alpha1_schema(&ours), "", &mut ramp);

    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (path, up_shape) in &up {
        match ramp.get(path) {
            Some(ramp_shape) => {
                if !equivalent(up_shape, ramp_shape) && preserved_ancestor(path, &ramp).is_none() {
                    mismatched.push(format!(
                        "{path}: upstream {} but Ramp {}",
                        up_shape.ty, ramp_shape.ty
                    ));
                } else if up_shape.preserves_unknown && preserved_ancestor(path, &ramp).is_none() {
                    mismatched.push(format!(
                        "{path}: upstream keeps unknown fields here but Ramp would prune them"
                    ));
                }
            }
            None if preserved_ancestor(path, &ramp).is_some() => {}
            None => missing.push(path.clone()),
        }
    }
    Report {
        kind,
        total: up.len(),
        missing,
        mismatched,
    }
}

#[test]
fn every_upstream_field_path_exists_in_ramps_crds() {
    let Some(upstream) = compat::argo_rollouts() else {
        return;
    };
    let reports = [
        compare(&upstream, "Rollout", "rollout-crd.yaml"),
        compare(&upstream, "AnalysisTemplate", "analysis-template-crd.yaml"),
        compare(
            &upstream,
            "ClusterAnalysisTemplate",
            "cluster-analysis-template-crd.yaml",
        ),
        compare(&upstream, "AnalysisRun", "analysis-run-crd.yaml"),
        compare(&upstream, "Experiment", "experiment-crd.yaml"),
    ];
    let mut failed = false;
    for r in &reports {
        let bad = r.missing.len() + r.mismatched.len();
        let covered = r.total - bad;
        println!(
            "{}: {covered}/{} upstream field paths covered ({:.1} %)",
            r.kind,
            r.total,
            100.0 * covered as f64 / r.total as f64
        );
        for path in &r.missing {
            println!("  missing    {path}");
        }
        for line in &r.mismatched {
            println!("  mismatched {line}");
        }
        failed |= bad > 0;
    }
    assert!(
        !failed,
        "some upstream field paths are missing from Ramp's CRDs (listed above)"
    );
}

#[test]
fn the_walker_sees_nested_lists_maps_and_preserved_objects() {
    // Guards the walker itself: if it stopped descending, the test above would pass vacuously.
    let Some(corpus) = compat::argo_rollouts() else {
        return;
    };
    let upstream = upstream_crd(&corpus, "rollout-crd.yaml");
    let mut up = BTreeMap::new();
    collect(v1alpha1_schema(&upstream), "", &mut up);
    assert!(
        up.len() > 1000,
        "only {} paths found in the upstream Rollout CRD",
        up.len()
    );
    for path in [
        "spec.strategy.canary.steps[].setWeight",
        "spec.strategy.canary.trafficRouting.istio.virtualServices[].routes[]",
        "spec.template.spec.containers[].resources.limits",
        "status.HPAReplicas",
        "status.observedGeneration",
    ] {
        assert!(up.contains_key(path), "walker did not find {path}");
    }
    assert_eq!(up["status.observedGeneration"].ty, "string");
    assert!(up["spec.strategy.canary.steps[].plugin.config"].preserves_unknown);
}
