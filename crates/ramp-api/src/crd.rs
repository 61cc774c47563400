//! CRD generation: the five `argoproj.io/v1alpha1` CustomResourceDefinitions derived from the
//! types, with the few adjustments the derive cannot express, and their canonical YAML form
//! (the files in `crds/` and the output of `ramp crds`).

use crate::analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use crate::experiment::Experiment;
use crate::rollout::Rollout;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceSubresources, JSONSchemaProps,
};
use kube::CustomResourceExt;

/// One generated CRD and the file it lives in under `crds/`.
pub struct CrdFile {
    pub file_name: &'static str,
    pub crd: CustomResourceDefinition,
}

/// Every CRD Ramp serves, in a stable order (Rollout first, as `ramp crds` prints them).
pub fn all() -> Vec<CustomResourceDefinition> {
    files().into_iter().map(|f| f.crd).collect()
}

/// Every CRD with the file name it is committed under in `crds/`.
pub fn files() -> Vec<CrdFile> {
    let files = vec![
        CrdFile {
            file_name: "rollout-crd.yaml",
            crd: Rollout::crd(),
        },
        CrdFile {
            file_name: "analysis-template-crd.yaml",
            crd: without_status_subresource(AnalysisTemplate::crd()),
        },
        CrdFile {
            file_name: "cluster-analysis-template-crd.yaml",
            crd: without_status_subresource(ClusterAnalysisTemplate::crd()),
        },
        CrdFile {
            file_name: "analysis-run-crd.yaml",
            crd: without_status_subresource(AnalysisRun::crd()),
        },
        CrdFile {
            file_name: "experiment-crd.yaml",
            crd: without_status_subresource(Experiment::crd()),
        },
    ];
    files
        .into_iter()
        .map(|f| CrdFile {
            file_name: f.file_name,
            crd: without_nullable(with_upstream_header(f.crd)),
        })
        .collect()
}

/// The canonical YAML of one CRD, as committed in `crds/`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(crd)
}

/// All CRDs as one multi-document YAML stream (what `ramp crds` prints).
pub fn all_to_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}

/// Upstream's schemas (controller-gen) declare the object's own `apiVersion`, `kind` and
/// `metadata` at the root; the derive leaves them implicit. Declaring them keeps a diff of the two
/// CRDs down to the fields that matter. The root `metadata` is `type: object` and nothing else:
/// kube-apiserver refuses a CRD whose root metadata schema says more ("must not specify anything
/// other than name and generateName, but metadata is implicitly specified"), a description
/// included.
fn with_upstream_header(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let header = [
        (
            "apiVersion",
            "APIVersion defines the versioned schema of this representation of an object.",
            "string",
        ),
        (
            "kind",
            "Kind is a string value representing the REST resource this object represents.",
            "string",
        ),
        ("metadata", "", "object"),
    ];
    // controller-gen also names the list kind; clients that build typed lists read it.
    crd.spec.names.list_kind = Some(format!("{}List", crd.spec.names.kind));
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        let properties = root.properties.get_or_insert_with(Default::default);
        for (name, description, type_) in header {
            properties
                .entry(name.to_string())
                .or_insert_with(|| JSONSchemaProps {
                    description: Some(description.to_string()).filter(|d| !d.is_empty()),
                    type_: Some(type_.to_string()),
                    ..JSONSchemaProps::default()
                });
        }
    }
    crd
}

/// The derive marks every `Option` field `nullable`; upstream marks none. Without the marker a
/// real API server drops an explicit `null` instead of storing it, which is what Argo's users
/// get today and what Ramp's types expect (absent and null both read as `None`).
fn without_nullable(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn strip(node: &mut serde_json::Value) {
        match node {
            serde_json::Value::Object(map) => {
                if map.get("nullable") == Some(&serde_json::Value::Bool(true)) {
                    map.remove("nullable");
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    for version in value["spec"]["versions"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        strip(&mut version["schema"]);
    }
    serde_json::from_value(value).unwrap_or(crd)
}

/// Templates, AnalysisRuns and Experiments have no subresource upstream (`subresources: {}`):
/// their status is written through the main resource, and clients (the upstream plugin, Argo CD)
/// expect exactly that.
fn without_status_subresource(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        version.subresources = Some(CustomResourceSubresources::default());
    }
    crd
}
