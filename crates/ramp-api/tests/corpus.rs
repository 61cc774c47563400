//! The compatibility corpus: every `argoproj.io` document of Argo Rollouts' examples must
//! deserialize into Ramp's types, validate against Ramp's generated CRD schema with a real
//! JSON-schema validator, and survive parse -> serialize -> parse with no field lost or changed.

use ramp_api::analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use ramp_api::crd;
use ramp_api::experiment::Experiment;
use ramp_api::rollout::Rollout;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

/// Every `argoproj.io` document under `examples`, with the file it came from.
fn corpus(examples: &Path) -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(examples, &mut files);
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable corpus file");
        let parsed: Vec<Value> = ramp_api::manifest::parse_stream(&text)
            .map(|p| p.documents)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", file.display()));
        for doc in parsed {
            if doc["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("argoproj.io/"))
            {
                docs.push((file.clone(), doc));
            }
        }
    }
    docs
}

/// A null field and an absent one mean the same to the API server, which drops both.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Lists the paths where two JSON values differ (first few only).
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (va, vb) = (
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                );
                differences(&format!("{path}.{key}"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} became {b}")),
        _ => {}
    }
}

fn round_trip<K: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let original = without_nulls(doc);
    let typed: K = serde_json::from_value(original.clone())
        .map_err(|e| format!("does not deserialize: {e}"))?;
    let written = serde_json::to_value(&typed).map_err(|e| format!("does not serialize: {e}"))?;
    let reread: K =
        serde_json::from_value(written.clone()).map_err(|e| format!("does not re-read: {e}"))?;
    let rewritten =
        serde_json::to_value(&reread).map_err(|e| format!("does not serialize again: {e}"))?;
    let mut diffs = Vec::new();
    differences("", &original, &written, &mut diffs);
    differences("", &written, &rewritten, &mut diffs);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!("changed on round-trip: {}", diffs.join("; ")))
    }
}

/// Turns the Kubernetes dialect of OpenAPI v3 into plain JSON Schema for a standard validator.
fn as_json_schema(node: &Value) -> Value {
    match node {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, value) in map {
                match key.as_str() {
                    // Annotations only; a standard validator would not know the k8s formats.
                    "format" | "description" | "x-kubernetes-validations" => {}
                    _ if key.starts_with("x-kubernetes-") => {}
                    _ => {
                        out.insert(key.clone(), as_json_schema(value));
                    }
                }
            }
            if map.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(ty)) = out.get("type").cloned()
            {
                out.insert("type".into(), serde_json::json!([ty, "null"]));
            }
            out.remove("nullable");
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(as_json_schema).collect()),
        other => other.clone(),
    }
}

fn validators() -> BTreeMap<String, jsonschema::Validator> {
    crd::all()
        .into_iter()
        .map(|c| {
            let crd = serde_json::to_value(&c).expect("CRD serializes");
            let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            let validator = jsonschema::validator_for(&as_json_schema(schema))
                .unwrap_or_else(|e| panic!("{} schema does not compile: {e}", c.spec.names.kind));
            (c.spec.names.kind.clone(), validator)
        })
        .collect()
}

#[test]
fn every_corpus_document_parses_validates_and_round_trips() {
    let Some(upstream) = ramp_sim::compat::argo_rollouts() else {
        return;
    };
    let examples = upstream.examples();
    let validators = validators();
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (file, doc) in corpus(&examples) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_string();
        let label = format!(
            "{}: {kind} {name}",
            file.strip_prefix(&examples).unwrap_or(&file).display()
        );
        let outcome = match kind.as_str() {
            "Rollout" => round_trip::<Rollout>(&doc),
            "AnalysisTemplate" => round_trip::<AnalysisTemplate>(&doc),
            "ClusterAnalysisTemplate" => round_trip::<ClusterAnalysisTemplate>(&doc),
            "AnalysisRun" => round_trip::<AnalysisRun>(&doc),
            "Experiment" => round_trip::<Experiment>(&doc),
            other => Err(format!("unexpected argoproj.io kind {other}")),
        };
        if let Err(why) = outcome {
            failures.push(format!("{label}: {why}"));
        }
        match validators.get(&kind) {
            Some(validator) => {
                for error in validator.iter_errors(&without_nulls(&doc)) {
                    failures.push(format!(
                        "{label}: schema: {} at {}",
                        error,
                        error.instance_path()
                    ));
                }
            }
            None => failures.push(format!("{label}: Ramp has no CRD for {kind}")),
        }
        *per_kind.entry(kind).or_default() += 1;
    }
    println!("corpus documents per kind: {per_kind:?}");
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for kind in [
        "Rollout",
        "AnalysisTemplate",
        "ClusterAnalysisTemplate",
        "Experiment",
    ] {
        assert!(
            per_kind.get(kind).copied().unwrap_or(0) > 0,
            "the corpus has no {kind}: wrong directory?"
        );
    }
}

#[test]
fn the_schema_check_rejects_what_upstream_rejects() {
    // Guards the validator plumbing: a wrong type must be caught, or the test above proves nothing.
    let validators = validators();
    let bad = serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "bad"},
        "spec": {"replicas": "three", "strategy": {"canary": {"steps": [{"setWeight": "ten"}]}}}
    });
    let errors: Vec<String> = validators["Rollout"]
        .iter_errors(&bad)
        .map(|e| e.instance_path().to_string())
        .collect();
    assert!(errors.iter().any(|p| p == "/spec/replicas"), "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|p| p == "/spec/strategy/canary/steps/0/setWeight"),
        "{errors:?}"
    );
}
