//! The kinds the API server serves: the built-in ones Ramp and kubectl need, and those a
//! `CustomResourceDefinition` registers at run time. Only descriptions live here; the objects
//! themselves are in `store`.

use crate::apimachinery::KindKey;
use crate::apimachinery::schema::CompiledSchema;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A group and a plural resource name: the unit of storage and of watch fan-out.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        GroupResource {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }

    /// `rollouts.argoproj.io`, or `pods` for the core group: the form a real server uses in
    /// error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// Where the scale subresource reads and writes its three fields.
#[derive(Clone, Debug)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub json_path: String,
    pub priority: i64,
}

/// One served version of a resource.
#[derive(Clone, Debug)]
pub struct VersionDef {
    pub name: String,
    pub status: bool,
    pub scale: Option<ScalePaths>,
    pub printer_columns: Vec<PrinterColumn>,
    /// The CRD's `openAPIV3Schema` for this version; built-in kinds carry none.
    pub schema: Option<Arc<Value>>,
    /// The same schema compiled for admission (defaulting, pruning, validation).
    pub compiled: Option<Arc<CompiledSchema>>,
}

#[derive(Clone, Debug)]
pub struct ResourceDef {
    pub group: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Served versions, the preferred one first.
    pub versions: Vec<VersionDef>,
    /// The version objects are stored at (a CRD's `storage: true` one, served or not). With
    /// the `None` conversion strategy every served version shows the same fields, so storage
    /// only changes `apiVersion`; requests see their own version.
    pub storage_version: String,
    /// Whether `metadata.generation` is maintained (it is for CRDs and workload kinds).
    pub has_generation: bool,
    /// The CRD that registered it (`None` for built-in kinds).
    pub crd_name: Option<String>,
}

impl ResourceDef {
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    pub fn version(&self, name: &str) -> Option<&VersionDef> {
        self.versions.iter().find(|v| v.name == name)
    }

    pub fn preferred_version(&self) -> &str {
        self.versions
            .first()
            .map(|v| v.name.as_str())
            .unwrap_or("v1")
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// The `apiVersion` stored objects carry.
    pub fn storage_api_version(&self) -> String {
        self.api_version(&self.storage_version)
    }

    pub fn is_custom(&self) -> bool {
        self.crd_name.is_some()
    }

    pub fn verbs(&self) -> &'static [&'static str] {
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
    has_generation: bool,
}

#[rustfmt::skip]
const BUILTINS: &[Builtin] = &[
    Builtin { group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false, short_names: &["ns"], categories: &[], status: true, scale: false, has_generation: false },
    Builtin { group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true, short_names: &["po"], categories: &["all"], status: true, scale: false, has_generation: false },
    Builtin { group: "", version: "v1", plural: "services", kind: "Service", namespaced: true, short_names: &["svc"], categories: &["all"], status: true, scale: false, has_generation: false },
    Builtin { group: "", version: "v1", plural: "endpoints", kind: "Endpoints", namespaced: true, short_names: &["ep"], categories: &[], status: false, scale: false, has_generation: false },
    Builtin { group: "", version: "v1", plural: "events", kind: "Event", namespaced: true, short_names: &["ev"], categories: &[], status: false, scale: false, has_generation: false },
    Builtin { group: "", version: "v1", plural: "configmaps", kind: "ConfigMap", namespaced: true, short_names: &["cm"], categories: &[], status: false, scale: false, has_generation: false },
    Builtin { group: "", version: "v1", plural: "secrets", kind: "Secret", namespaced: true, short_names: &[], categories: &[], status: false, scale: false, has_generation: false },
    Builtin { group: "", version: "v1", plural: "serviceaccounts", kind: "ServiceAccount", namespaced: true, short_names: &["sa"], categories: &[], status: false, scale: false, has_generation: false },
    Builtin { group: "apps", version: "v1", plural: "replicasets", kind: "ReplicaSet", namespaced: true, short_names: &["rs"], categories: &["all"], status: true, scale: true, has_generation: true },
    Builtin { group: "apps", version: "v1", plural: "deployments", kind: "Deployment", namespaced: true, short_names: &["deploy"], categories: &["all"], status: true, scale: true, has_generation: true },
    Builtin { group: "batch", version: "v1", plural: "jobs", kind: "Job", namespaced: true, short_names: &[], categories: &["all"], status: true, scale: false, has_generation: true },
    Builtin { group: "networking.k8s.io", version: "v1", plural: "ingresses", kind: "Ingress", namespaced: true, short_names: &["ing"], categories: &[], status: true, scale: false, has_generation: true },
    Builtin { group: "policy", version: "v1", plural: "poddisruptionbudgets", kind: "PodDisruptionBudget", namespaced: true, short_names: &["pdb"], categories: &[], status: true, scale: false, has_generation: true },
    Builtin { group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease", namespaced: true, short_names: &[], categories: &[], status: false, scale: false, has_generation: false },
    Builtin { group: "autoscaling", version: "v2", plural: "horizontalpodautoscalers", kind: "HorizontalPodAutoscaler", namespaced: true, short_names: &["hpa"], categories: &["all"], status: true, scale: false, has_generation: true },
    Builtin { group: "rbac.authorization.k8s.io", version: "v1", plural: "roles", kind: "Role", namespaced: true, short_names: &[], categories: &[], status: false, scale: false, has_generation: false },
    Builtin { group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterroles", kind: "ClusterRole", namespaced: false, short_names: &[], categories: &[], status: false, scale: false, has_generation: false },
    Builtin { group: "rbac.authorization.k8s.io", version: "v1", plural: "rolebindings", kind: "RoleBinding", namespaced: true, short_names: &[], categories: &[], status: false, scale: false, has_generation: false },
    Builtin { group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterrolebindings", kind: "ClusterRoleBinding", namespaced: false, short_names: &[], categories: &[], status: false, scale: false, has_generation: false },
    Builtin { group: "apiextensions.k8s.io", version: "v1", plural: "customresourcedefinitions", kind: "CustomResourceDefinition", namespaced: false, short_names: &["crd", "crds"], categories: &["api-extensions"], status: true, scale: false, has_generation: true },
    Builtin { group: "events.k8s.io", version: "v1", plural: "events", kind: "Event", namespaced: true, short_names: &["ev"], categories: &[], status: false, scale: false, has_generation: false },
];

fn builtin_def(b: &Builtin) -> ResourceDef {
    let scale = b.scale.then(|| ScalePaths {
        spec_replicas: ".spec.replicas".to_owned(),
        status_replicas: ".status.replicas".to_owned(),
        label_selector: None,
    });
    ResourceDef {
        group: b.group.to_owned(),
        plural: b.plural.to_owned(),
        singular: b.kind.to_lowercase(),
        kind: b.kind.to_owned(),
        list_kind: format!("{}List", b.kind),
        namespaced: b.namespaced,
        short_names: b.short_names.iter().map(|s| (*s).to_owned()).collect(),
        categories: b.categories.iter().map(|s| (*s).to_owned()).collect(),
        versions: vec![VersionDef {
            name: b.version.to_owned(),
            status: b.status,
            scale,
            printer_columns: Vec::new(),
            schema: None,
            compiled: None,
        }],
        storage_version: b.version.to_owned(),
        has_generation: b.has_generation,
        crd_name: None,
    }
}

/// Every served resource, keyed by group and plural.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    resources: BTreeMap<GroupResource, Arc<ResourceDef>>,
}

impl Catalog {
    pub fn with_builtins() -> Self {
        let mut catalog = Catalog::default();
        for b in BUILTINS {
            catalog.insert(builtin_def(b));
        }
        catalog
    }

    pub fn insert(&mut self, def: ResourceDef) {
        self.resources.insert(def.group_resource(), Arc::new(def));
    }

    pub fn remove(&mut self, gr: &GroupResource) -> Option<Arc<ResourceDef>> {
        self.resources.remove(gr)
    }

    pub fn get(&self, gr: &GroupResource) -> Option<&Arc<ResourceDef>> {
        self.resources.get(gr)
    }

    /// The resource served at `/apis/{group}/{version}/{plural}`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        let def = self.resources.get(&GroupResource::new(group, plural))?;
        def.version(version).map(|_| Arc::clone(def))
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceDef>> {
        self.resources.values()
    }

    /// Groups and their served versions, the core group excluded, in a stable order.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for def in self.resources.values() {
            if def.group.is_empty() {
                continue;
            }
            let versions = groups.entry(def.group.clone()).or_default();
            for v in &def.versions {
                if !versions.contains(&v.name) {
                    versions.push(v.name.clone());
                }
            }
        }
        for versions in groups.values_mut() {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }
}

/// Kubernetes' version ordering: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stage, num) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stage, major, num)
}

/// Errors in a CRD that stop it from being served; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CrdError {
    pub field: String,
    pub message: String,
}

fn crd_err(field: &str, message: impl Into<String>) -> CrdError {
    CrdError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// The real server's rule for the root `metadata` of a CRD schema: the API server owns it, so
/// a schema may only say it is an object and constrain `name` and `generateName`; anything
/// else (a description included) refuses the CRD.
fn check_root_metadata(schema: &Value, version: usize) -> Result<(), CrdError> {
    let Some(metadata) = schema
        .pointer("/properties/metadata")
        .and_then(Value::as_object)
    else {
        return Ok(());
    };
    let allowed = metadata.iter().all(|(key, value)| match key.as_str() {
        "type" => value == "object",
        "properties" => value
            .as_object()
            .is_some_and(|p| p.keys().all(|k| k == "name" || k == "generateName")),
        _ => false,
    });
    if allowed {
        return Ok(());
    }
    Err(crd_err(
        &format!("spec.versions[{version}].schema.openAPIV3Schema.properties[metadata]"),
        "Forbidden: must not specify anything other than name and generateName, but metadata is \
         implicitly specified",
    ))
}

/// Reads a `CustomResourceDefinition` object into the resource it serves.
pub fn crd_to_def(crd: &Value) -> Result<ResourceDef, CrdError> {
    let str_at = |ptr: &str| crd.pointer(ptr).and_then(Value::as_str);
    let name = str_at("/metadata/name").unwrap_or_default();
    let group = str_at("/spec/group").ok_or_else(|| crd_err("spec.group", "Required value"))?;
    let plural = str_at("/spec/names/plural")
        .ok_or_else(|| crd_err("spec.names.plural", "Required value"))?;
    let kind =
        str_at("/spec/names/kind").ok_or_else(|| crd_err("spec.names.kind", "Required value"))?;
    if name != format!("{plural}.{group}") {
        return Err(crd_err(
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let namespaced = match str_at("/spec/scope") {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(crd_err(
                "spec.scope",
                format!(
                    "Unsupported value: {:?}: supported values: \"Cluster\", \"Namespaced\"",
                    other.unwrap_or("")
                ),
            ));
        }
    };
    let strings = |ptr: &str| -> Vec<String> {
        crd.pointer(ptr)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut versions = Vec::new();
    let mut storage_versions = Vec::new();
    for (i, v) in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let vname = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| crd_err(&format!("spec.versions[{i}].name"), "Required value"))?;
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage_versions.push(vname.to_owned());
        }
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let sub = v.get("subresources");
        let scale = sub.and_then(|s| s.get("scale")).map(|s| ScalePaths {
            spec_replicas: s
                .get("specReplicasPath")
                .and_then(Value::as_str)
                .unwrap_or(".spec.replicas")
                .to_owned(),
            status_replicas: s
                .get("statusReplicasPath")
                .and_then(Value::as_str)
                .unwrap_or(".status.replicas")
                .to_owned(),
            label_selector: s
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
        let printer_columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| {
                        let s = |k: &str| {
                            c.get(k)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned()
                        };
                        PrinterColumn {
                            name: s("name"),
                            type_: s("type"),
                            format: s("format"),
                            description: s("description"),
                            json_path: s("jsonPath"),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let schema = v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new);
        if let Some(schema) = &schema {
            check_root_metadata(schema, i)?;
        }
        let compiled = match &schema {
            Some(s) => Some(Arc::new(
                CompiledSchema::new(KindKey::new(group, kind), s).map_err(|e| {
                    crd_err(
                        &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                        format!("Invalid value: {}", e.message),
                    )
                })?,
            )),
            None => None,
        };
        versions.push(VersionDef {
            name: vname.to_owned(),
            status: sub.and_then(|s| s.get("status")).is_some(),
            scale,
            printer_columns,
            schema,
            compiled,
        });
    }
    let [storage_version] = <[String; 1]>::try_from(storage_versions).map_err(|_| {
        crd_err(
            "spec.versions",
            "Invalid value: must have exactly one version marked as storage version",
        )
    })?;
    versions.sort_by_key(|v| std::cmp::Reverse(version_priority(&v.name)));
    let singular = str_at("/spec/names/singular")
        .map(str::to_owned)
        .unwrap_or_else(|| kind.to_lowercase());
    Ok(ResourceDef {
        group: group.to_owned(),
        plural: plural.to_owned(),
        singular,
        kind: kind.to_owned(),
        list_kind: str_at("/spec/names/listKind")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{kind}List")),
        namespaced,
        short_names: strings("/spec/names/shortNames"),
        categories: strings("/spec/names/categories"),
        versions,
        storage_version,
        has_generation: true,
        crd_name: Some(name.to_owned()),
    })
}

/// The status a real apiextensions controller writes once a CRD is served.
pub fn crd_established_status(crd: &Value, now: &str) -> Value {
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    let condition = |type_: &str, reason: &str, message: &str| {
        serde_json::json!({
            "type": type_, "status": "True", "lastTransitionTime": now,
            "reason": reason, "message": message,
        })
    };
    serde_json::json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(Value::Null),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    })
}
