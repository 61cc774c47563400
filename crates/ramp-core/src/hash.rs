//! Hashes that name a revision (`rollouts-pod-template-hash`) and a step list
//! (`currentStepHash`), and the template equality used to adopt ReplicaSets that another
//! controller (Argo Rollouts) created, so a migration restarts no pod.

use crate::snapshot::POD_TEMPLATE_HASH_LABEL;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use ramp_api::rollout::CanaryStep;
use serde_json::Value;

/// Alphabet of Kubernetes' `rand.SafeEncodeString`: no vowels (no words), no look-alikes.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 32 bits.
fn fnv32a(chunks: &[&[u8]]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for chunk in chunks {
        for byte in *chunk {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash
}

/// Upstream prints the hash as a decimal number and maps every digit through the alphabet.
fn safe_encode(value: u32) -> String {
    value
        .to_string()
        .bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// Pod-template hash of a revision: FNV-32a over the template's JSON, then the collision
/// count as 8 little-endian bytes. The JSON comes from k8s-openapi's field order, not Go's,
/// so hashes differ from upstream's; existing ReplicaSets are matched by
/// [`same_pod_template`] instead, as upstream itself falls back to.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let collision = collision_count.map(|c| {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&c.to_le_bytes());
        bytes
    });
    match collision {
        Some(bytes) => safe_encode(fnv32a(&[&json, &bytes])),
        None => safe_encode(fnv32a(&[&json])),
    }
}

/// `status.currentStepHash`: FNV-32a over the JSON of the steps. Ramp's step types serialize
/// their fields in upstream's order, so common step lists hash like upstream's.
pub fn steps_hash(steps: &[CanaryStep]) -> String {
    let json = serde_json::to_vec(steps).unwrap_or_default();
    safe_encode(fnv32a(&[&json]))
}

/// Whether a ReplicaSet's template is the rollout's, ignoring the hash label and the fields
/// the API server defaults on a ReplicaSet's pod template (a rollout's template, stored in a
/// CRD, is never defaulted).
pub fn same_pod_template(rollout: &PodTemplateSpec, replica_set: &PodTemplateSpec) -> bool {
    normalized(rollout) == normalized(replica_set)
}

fn normalized(template: &PodTemplateSpec) -> Value {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        meta.remove("creationTimestamp");
    }
    if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
        default_pod_spec(spec);
    }
    strip_empty(&mut value);
    value
}

fn set_default(object: &mut serde_json::Map<String, Value>, key: &str, default: Value) {
    object.entry(key.to_owned()).or_insert(default);
}

/// The defaults `SetDefaults_PodSpec` and `SetDefaults_Container` apply to a ReplicaSet's
/// template; applying them to both sides makes a defaulted and a raw template compare equal.
fn default_pod_spec(spec: &mut serde_json::Map<String, Value>) {
    set_default(spec, "restartPolicy", Value::from("Always"));
    set_default(spec, "terminationGracePeriodSeconds", Value::from(30));
    set_default(spec, "dnsPolicy", Value::from("ClusterFirst"));
    set_default(spec, "schedulerName", Value::from("default-scheduler"));
    if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for volume in volumes.iter_mut().filter_map(Value::as_object_mut) {
            for source in ["configMap", "secret", "downwardAPI", "projected"] {
                if let Some(source) = volume.get_mut(source).and_then(Value::as_object_mut) {
                    set_default(source, "defaultMode", Value::from(420));
                }
            }
        }
    }
    for key in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(key).and_then(Value::as_array_mut) {
            containers
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(default_container);
        }
    }
}

fn default_container(container: &mut serde_json::Map<String, Value>) {
    set_default(
        container,
        "terminationMessagePath",
        Value::from("/dev/termination-log"),
    );
    set_default(container, "terminationMessagePolicy", Value::from("File"));
    let image = container.get("image").and_then(Value::as_str).unwrap_or("");
    // Kubernetes pulls `:latest` and untagged images always, pinned ones only when missing.
    let last = image.rsplit('/').next().unwrap_or(image);
    let pull = if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
        "IfNotPresent"
    } else {
        "Always"
    };
    set_default(container, "imagePullPolicy", Value::from(pull));
    if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(port, "protocol", Value::from("TCP"));
        }
    }
    if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
        for var in env.iter_mut().filter_map(Value::as_object_mut) {
            let field_ref = var
                .get_mut("valueFrom")
                .and_then(Value::as_object_mut)
                .and_then(|v| v.get_mut("fieldRef"))
                .and_then(Value::as_object_mut);
            if let Some(field_ref) = field_ref {
                set_default(field_ref, "apiVersion", Value::from("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = container.get_mut(probe).and_then(Value::as_object_mut) {
            set_default(probe, "timeoutSeconds", Value::from(1));
            set_default(probe, "periodSeconds", Value::from(10));
            set_default(probe, "successThreshold", Value::from(1));
            set_default(probe, "failureThreshold", Value::from(3));
            if let Some(get) = probe.get_mut("httpGet").and_then(Value::as_object_mut) {
                set_default(get, "scheme", Value::from("HTTP"));
            }
        }
    }
}

/// Empty objects and arrays carry no meaning in a template (`resources: {}` is what the API
/// server writes back for an absent field).
fn strip_empty(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(strip_empty);
            map.retain(|_, v| !is_empty(v));
        }
        Value::Array(items) => items.iter_mut().for_each(strip_empty),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".to_owned(),
                    image: Some(image.to_owned()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn fnv32a_matches_the_reference_vectors() {
        assert_eq!(fnv32a(&[b""]), 0x811c_9dc5);
        assert_eq!(fnv32a(&[b"a"]), 0xe40c_292c);
        assert_eq!(fnv32a(&[b"foobar"]), 0xbf9c_f968);
    }

    #[test]
    fn safe_encoding_maps_each_decimal_digit() {
        // '1' is byte 49, 49 % 27 = 22 -> '5'; '0' is 48 -> 21 -> '4'.
        assert_eq!(safe_encode(10), "54");
        assert!(
            safe_encode(u32::MAX)
                .bytes()
                .all(|b| SAFE_ALPHABET.contains(&b))
        );
    }

    #[test]
    fn hash_changes_with_the_template_and_the_collision_count() {
        let v1 = template("nginx:1.0");
        assert_eq!(
            pod_template_hash(&v1, None),
            pod_template_hash(&v1.clone(), None)
        );
        assert_ne!(
            pod_template_hash(&v1, None),
            pod_template_hash(&template("nginx:2.0"), None)
        );
        assert_ne!(
            pod_template_hash(&v1, None),
            pod_template_hash(&v1, Some(1))
        );
    }

    #[test]
    fn a_defaulted_replica_set_template_with_the_hash_label_is_the_same_template() {
        let rollout = template("nginx:1.0");
        let mut rs: Value = serde_json::to_value(&rollout).unwrap();
        rs["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL] = Value::from("abc123");
        rs["metadata"]["creationTimestamp"] = Value::Null;
        rs["spec"]["restartPolicy"] = Value::from("Always");
        rs["spec"]["dnsPolicy"] = Value::from("ClusterFirst");
        rs["spec"]["securityContext"] = serde_json::json!({});
        rs["spec"]["containers"][0]["imagePullPolicy"] = Value::from("IfNotPresent");
        rs["spec"]["containers"][0]["resources"] = serde_json::json!({});
        rs["spec"]["containers"][0]["terminationMessagePath"] = Value::from("/dev/termination-log");
        let rs: PodTemplateSpec = serde_json::from_value(rs).unwrap();
        assert!(same_pod_template(&rollout, &rs));
        assert!(!same_pod_template(&template("nginx:2.0"), &rs));
    }

    #[test]
    fn steps_hash_depends_on_the_steps() {
        let a = vec![CanaryStep {
            set_weight: Some(20),
            ..CanaryStep::default()
        }];
        let b = vec![CanaryStep {
            set_weight: Some(30),
            ..CanaryStep::default()
        }];
        assert_ne!(steps_hash(&a), steps_hash(&b));
        assert_eq!(steps_hash(&a), steps_hash(&a.clone()));
    }
}
