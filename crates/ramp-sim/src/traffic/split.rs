//! How the data plane splits the synthetic load, as a pure function of the live objects:
//! entry points (VirtualServices, stable NGINX Ingresses, HTTPRoutes, Services behind no
//! router) → routes → destinations → ready pods → versions. No I/O and no clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::DynamicObject;
use serde_json::Value;

use super::model::{Behaviour, LatencyModel};
use super::routes::{
    gateway_backends, gateway_rule_for, ingress_paths, is_canary_ingress, istio_route_matches,
    mirror_destination, nginx_canary_fraction, resolve_host, route_destinations,
};

pub const ROLLOUTS_HASH: &str = "rollouts-pod-template-hash";
pub const DEPLOYMENT_HASH: &str = "pod-template-hash";
pub const RPS_ANNOTATION: &str = "sim.ramp.dev/rps";
pub const ERROR_RATE: &str = "sim.ramp.dev/error-rate";
pub const ERROR_CODE: &str = "sim.ramp.dev/error-code";
pub const LATENCY_MS: &str = "sim.ramp.dev/latency-ms";
pub const LATENCY_P95_MS: &str = "sim.ramp.dev/latency-p95-ms";

/// The live objects the split is computed from.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub pods: Vec<Arc<Pod>>,
    pub replica_sets: Vec<Arc<ReplicaSet>>,
    pub services: Vec<Arc<Service>>,
    pub ingresses: Vec<Arc<Ingress>>,
    pub virtual_services: Vec<Arc<DynamicObject>>,
    pub destination_rules: Vec<Arc<DynamicObject>>,
    pub http_routes: Vec<Arc<DynamicObject>>,
}

/// A kind of request in the synthetic load: a share of all requests that carry these headers
/// and cookies. Requests not in any class carry none.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestClass {
    pub share: f64,
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<(String, String)>,
}

/// What enters each entry point, and what versions do when they say nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    pub rps: f64,
    pub classes: Vec<RequestClass>,
    pub default_behaviour: Behaviour,
}

/// A version of an application: the pods of one ReplicaSet (or of one other owner).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionKey {
    pub namespace: String,
    /// The ReplicaSet's name (or the pod's other controller, or the pod itself).
    pub owner: String,
}

/// What the meters need to know about a version.
#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    pub pod_template_hash: Option<String>,
    /// Istio's workload name: the Deployment or Rollout name for their ReplicaSets.
    pub workload: String,
    pub app: String,
    pub version_label: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub behaviour: Behaviour,
    pub ready_pods: usize,
}

/// Who reports a flow, with the labels that do not depend on the response.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exporter {
    /// The mesh's sidecars: `istio_requests_total` and friends.
    Istio {
        service: String,
        service_namespace: String,
        source_namespace: String,
    },
    /// ingress-nginx: `nginx_ingress_controller_requests` and friends.
    Nginx {
        ingress: String,
        namespace: String,
        service: String,
        /// The canary upstream (`<namespace>-<service>-<port>`) when the canary served it.
        canary: String,
        host: String,
        path: String,
    },
}

/// Where the requests of a flow end up.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Served by a ready pod of this version.
    Served(VersionKey),
    /// A mirrored (shadow) copy served by this version; its response goes nowhere.
    Mirrored(VersionKey),
    /// No ready pod behind the destination: 503 from the proxy. The version the destination
    /// names (by its pod-template hash), if any.
    NoUpstream(Option<VersionKey>),
}

/// The split: requests per second per (exporter, outcome), and the versions involved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub flows: BTreeMap<(Exporter, Outcome), f64>,
    pub versions: BTreeMap<VersionKey, Version>,
}

/// Computes the split of `load` over the objects of `snapshot`.
pub fn split(snapshot: &Snapshot, load: &Load) -> Split {
    let cluster = Cluster::new(snapshot, &load.default_behaviour);
    let mut out = Split {
        flows: BTreeMap::new(),
        versions: cluster.versions.clone(),
    };
    let classes = request_classes(load);
    let mut routed: BTreeSet<(String, String)> = BTreeSet::new();

    for vs in &snapshot.virtual_services {
        let namespace = vs.metadata.namespace.clone().unwrap_or_default();
        let rps = entry_rps(&vs.metadata, load.rps);
        let routes = vs.data.pointer("/spec/http").and_then(Value::as_array);
        for route in routes.into_iter().flatten() {
            for destination in route_destinations(route).chain(mirror_destination(route)) {
                routed.insert(resolve_host(&destination.0, &namespace));
            }
        }
        for (class, share) in &classes {
            let Some(route) = routes
                .into_iter()
                .flatten()
                .find(|r| istio_route_matches(r, class))
            else {
                continue;
            };
            let weighted: Vec<_> = route_destinations(route).collect();
            let total: f64 = weighted.iter().map(|d| d.2).sum();
            for (host, subset, weight) in &weighted {
                let fraction = if total > 0.0 {
                    weight / total
                } else {
                    1.0 / weighted.len() as f64
                };
                let rps = rps * share * fraction;
                cluster.send_istio(&mut out, &namespace, host, subset.as_deref(), rps, false);
            }
            if let Some((host, subset, percent)) = mirror_destination(route) {
                let rps = rps * share * percent / 100.0;
                cluster.send_istio(&mut out, &namespace, &host, subset.as_deref(), rps, true);
            }
        }
    }

    for route in &snapshot.http_routes {
        let namespace = route.metadata.namespace.clone().unwrap_or_default();
        let rps = entry_rps(&route.metadata, load.rps);
        let rules = route.data.pointer("/spec/rules").and_then(Value::as_array);
        for rule in rules.into_iter().flatten() {
            for backend in gateway_backends(rule, &namespace) {
                routed.insert((backend.0.clone(), backend.1.clone()));
            }
        }
        for (class, share) in &classes {
            let Some(rule) = gateway_rule_for(rules.map(Vec::as_slice).unwrap_or_default(), class)
            else {
                continue;
            };
            let backends = gateway_backends(rule, &namespace);
            let total: f64 = backends.iter().map(|b| b.2).sum();
            if total <= 0.0 {
                continue;
            }
            for (backend_ns, service, weight) in &backends {
                let rps = rps * share * weight / total;
                let host = format!("{service}.{backend_ns}");
                cluster.send_istio(&mut out, &namespace, &host, None, rps, false);
            }
        }
    }

    for stable in snapshot.ingresses.iter().filter(|i| !is_canary_ingress(i)) {
        let namespace = stable.metadata.namespace.clone().unwrap_or_default();
        let rps = entry_rps(&stable.metadata, load.rps);
        let paths = ingress_paths(stable);
        for (_, _, service, _) in &paths {
            routed.insert((namespace.clone(), service.clone()));
        }
        let per_path = if paths.is_empty() {
            0.0
        } else {
            rps / paths.len() as f64
        };
        for (host, path, service, _) in &paths {
            let canary = snapshot
                .ingresses
                .iter()
                .filter(|i| {
                    is_canary_ingress(i) && i.metadata.namespace == stable.metadata.namespace
                })
                .find_map(|i| {
                    ingress_paths(i)
                        .into_iter()
                        .find(|(h, p, _, _)| h == host && p == path)
                        .map(|(_, _, svc, port)| (i.clone(), svc, port))
                });
            if let Some((_, svc, _)) = &canary {
                routed.insert((namespace.clone(), svc.clone()));
            }
            for (class, share) in &classes {
                let to_canary = canary
                    .as_ref()
                    .map_or(0.0, |(ingress, _, _)| nginx_canary_fraction(ingress, class));
                let exporter = |canary_upstream: String| Exporter::Nginx {
                    ingress: stable.metadata.name.clone().unwrap_or_default(),
                    namespace: namespace.clone(),
                    service: service.clone(),
                    canary: canary_upstream,
                    host: host.clone(),
                    path: path.clone(),
                };
                let stable_rps = per_path * share * (1.0 - to_canary);
                cluster.send(
                    &mut out,
                    exporter(String::new()),
                    &namespace,
                    service,
                    None,
                    stable_rps,
                    false,
                );
                if let Some((_, canary_service, port)) = &canary {
                    let upstream = format!("{namespace}-{canary_service}-{port}");
                    let canary_rps = per_path * share * to_canary;
                    cluster.send(
                        &mut out,
                        exporter(upstream),
                        &namespace,
                        canary_service,
                        None,
                        canary_rps,
                        false,
                    );
                }
            }
        }
    }

    for service in &snapshot.services {
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let has_selector = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|s| !s.is_empty());
        if !has_selector || routed.contains(&(namespace.clone(), name.clone())) {
            continue;
        }
        let rps = entry_rps(&service.metadata, load.rps);
        let exporter = Exporter::Istio {
            service: name.clone(),
            service_namespace: namespace.clone(),
            source_namespace: namespace.clone(),
        };
        cluster.send(&mut out, exporter, &namespace, &name, None, rps, false);
    }
    out.flows.retain(|_, rps| *rps > 0.0);
    out
}

/// The entry point's own rate (`sim.ramp.dev/rps`) or the configured one.
fn entry_rps(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    default: f64,
) -> f64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(RPS_ANNOTATION))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(default)
}

/// The classes of the load with their shares, plus the plain requests (the rest).
fn request_classes(load: &Load) -> Vec<(RequestClass, f64)> {
    let mut classes = Vec::new();
    let mut left = 1.0_f64;
    for class in &load.classes {
        let share = class.share.clamp(0.0, left);
        if share > 0.0 {
            classes.push((class.clone(), share));
            left -= share;
        }
    }
    if left > 0.0 {
        classes.push((
            RequestClass {
                share: left,
                headers: Vec::new(),
                cookies: Vec::new(),
            },
            left,
        ));
    }
    classes
}

/// The objects indexed for routing.
struct Cluster<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    ready_pods: Vec<(&'a Pod, VersionKey)>,
    /// Ready pods (indexes into `ready_pods`) by namespace and label, so a selector only
    /// looks at the pods carrying its rarest label.
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<usize>>,
    destination_rules: &'a [Arc<DynamicObject>],
    replica_sets: &'a [Arc<ReplicaSet>],
    versions: BTreeMap<VersionKey, Version>,
}

impl<'a> Cluster<'a> {
    fn new(snapshot: &'a Snapshot, defaults: &Behaviour) -> Self {
        let services = snapshot
            .services
            .iter()
            .map(|s| {
                let key = (
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default(),
                );
                (key, s.as_ref())
            })
            .collect();
        let mut versions: BTreeMap<VersionKey, Version> = BTreeMap::new();
        for rs in &snapshot.replica_sets {
            let key = VersionKey {
                namespace: rs.metadata.namespace.clone().unwrap_or_default(),
                owner: rs.metadata.name.clone().unwrap_or_default(),
            };
            let template = rs.spec.template.as_ref().and_then(|t| t.metadata.as_ref());
            let labels = template.and_then(|m| m.labels.clone()).unwrap_or_default();
            let annotations = template
                .and_then(|m| m.annotations.clone())
                .unwrap_or_default();
            versions.insert(
                key.clone(),
                version_of(&key, "ReplicaSet", &labels, &annotations, defaults),
            );
        }
        let mut ready_pods: Vec<(&Pod, VersionKey)> = Vec::new();
        let mut by_label: HashMap<(&str, &str, &str), Vec<usize>> = HashMap::new();
        for pod in &snapshot.pods {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            let controller = pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true));
            let key = VersionKey {
                namespace: namespace.to_string(),
                owner: controller
                    .map(|o| o.name.clone())
                    .or_else(|| pod.metadata.name.clone())
                    .unwrap_or_default(),
            };
            let version = versions.entry(key.clone()).or_insert_with(|| {
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                let annotations = pod.metadata.annotations.clone().unwrap_or_default();
                let kind = controller.map_or("Pod", |o| o.kind.as_str());
                version_of(&key, kind, &labels, &annotations, defaults)
            });
            if is_ready(pod) {
                version.ready_pods += 1;
                for (k, v) in pod.metadata.labels.iter().flatten() {
                    by_label
                        .entry((namespace, k.as_str(), v.as_str()))
                        .or_default()
                        .push(ready_pods.len());
                }
                ready_pods.push((pod.as_ref(), key));
            }
        }
        Self {
            services,
            ready_pods,
            by_label,
            destination_rules: &snapshot.destination_rules,
            replica_sets: &snapshot.replica_sets,
            versions,
        }
    }

    /// Sends `rps` from a mesh client to an Istio host (and subset).
    fn send_istio(
        &self,
        out: &mut Split,
        source_namespace: &str,
        host: &str,
        subset: Option<&str>,
        rps: f64,
        mirror: bool,
    ) {
        let (namespace, service) = resolve_host(host, source_namespace);
        let exporter = Exporter::Istio {
            service: service.clone(),
            service_namespace: namespace.clone(),
            source_namespace: source_namespace.to_string(),
        };
        let subset_labels = match subset {
            None => Some(BTreeMap::new()),
            Some(subset) => self.subset_labels(&namespace, &service, subset),
        };
        match subset_labels {
            Some(labels) => self.send(
                out,
                exporter,
                &namespace,
                &service,
                Some(&labels),
                rps,
                mirror,
            ),
            // A subset no DestinationRule defines has no endpoints.
            None if !mirror => add(out, exporter, Outcome::NoUpstream(None), rps),
            None => {}
        }
    }

    /// Sends `rps` to the ready pods of a Service (restricted to `extra` labels), split by
    /// ready pods per version; with no ready pod, the proxy answers 503.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        out: &mut Split,
        exporter: Exporter,
        namespace: &str,
        service: &str,
        extra: Option<&BTreeMap<String, String>>,
        rps: f64,
        mirror: bool,
    ) {
        if rps <= 0.0 {
            return;
        }
        let mut selector = self
            .services
            .get(&(namespace, service))
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let service_exists = !selector.is_empty();
        for (k, v) in extra.into_iter().flatten() {
            selector.insert(k.clone(), v.clone());
        }
        let mut by_version: BTreeMap<&VersionKey, usize> = BTreeMap::new();
        if service_exists {
            let rarest = selector
                .iter()
                .map(|(k, v)| {
                    self.by_label
                        .get(&(namespace, k.as_str(), v.as_str()))
                        .map_or(&[][..], Vec::as_slice)
                })
                .min_by_key(|candidates| candidates.len())
                .unwrap_or_default();
            for (pod, version) in rarest.iter().filter_map(|i| self.ready_pods.get(*i)) {
                let labels = pod.metadata.labels.as_ref();
                if selector
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
                {
                    *by_version.entry(version).or_default() += 1;
                }
            }
        }
        let total: usize = by_version.values().sum();
        if total == 0 {
            if !mirror {
                let hint = self.version_named_by(namespace, &selector);
                add(out, exporter, Outcome::NoUpstream(hint), rps);
            }
            return;
        }
        for (version, pods) in by_version {
            let share = rps * pods as f64 / total as f64;
            let outcome = if mirror {
                Outcome::Mirrored(version.clone())
            } else {
                Outcome::Served(version.clone())
            };
            add(out, exporter.clone(), outcome, share);
        }
    }

    /// Labels of a subset of the DestinationRule for a service.
    fn subset_labels(
        &self,
        namespace: &str,
        service: &str,
        subset: &str,
    ) -> Option<BTreeMap<String, String>> {
        self.destination_rules.iter().find_map(|dr| {
            let dr_namespace = dr.metadata.namespace.as_deref().unwrap_or_default();
            let host = dr.data.pointer("/spec/host").and_then(Value::as_str)?;
            if resolve_host(host, dr_namespace) != (namespace.to_string(), service.to_string()) {
                return None;
            }
            let subsets = dr.data.pointer("/spec/subsets").and_then(Value::as_array)?;
            let found = subsets
                .iter()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(subset))?;
            let labels = found
                .get("labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            Some(labels)
        })
    }

    /// The ReplicaSet a selector names through its pod-template hash, if any.
    fn version_named_by(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Option<VersionKey> {
        let (label, hash) = selector
            .get_key_value(ROLLOUTS_HASH)
            .or_else(|| selector.get_key_value(DEPLOYMENT_HASH))?;
        self.replica_sets.iter().find_map(|rs| {
            let same_namespace = rs.metadata.namespace.as_deref() == Some(namespace);
            let labels = rs.metadata.labels.as_ref();
            (same_namespace && labels.and_then(|l| l.get(label)) == Some(hash)).then(|| {
                VersionKey {
                    namespace: namespace.to_string(),
                    owner: rs.metadata.name.clone().unwrap_or_default(),
                }
            })
        })
    }
}

fn add(out: &mut Split, exporter: Exporter, outcome: Outcome, rps: f64) {
    *out.flows.entry((exporter, outcome)).or_default() += rps;
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A version's identity labels (as Istio derives them) and behaviour (from its annotations).
fn version_of(
    key: &VersionKey,
    owner_kind: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    defaults: &Behaviour,
) -> Version {
    let hash = labels
        .get(ROLLOUTS_HASH)
        .or_else(|| labels.get(DEPLOYMENT_HASH))
        .cloned();
    let workload = match (owner_kind, &hash) {
        ("ReplicaSet", Some(h)) => key
            .owner
            .strip_suffix(&format!("-{h}"))
            .unwrap_or(&key.owner)
            .to_string(),
        _ => key.owner.clone(),
    };
    let label = |names: &[&str]| names.iter().find_map(|n| labels.get(*n).cloned());
    let parse = |name: &str| {
        annotations
            .get(name)
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let p50 = parse(LATENCY_MS).filter(|v| *v > 0.0);
    let p95 = parse(LATENCY_P95_MS).filter(|v| *v > 0.0);
    let latency = match (p50, p95) {
        (None, None) => defaults.latency,
        (Some(p50), p95) => LatencyModel::from_p50_p95(p50, p95.unwrap_or(p50 * 2.0)),
        (None, Some(p95)) => LatencyModel::from_p50_p95(defaults.latency.p50_ms.min(p95), p95),
    };
    let behaviour = Behaviour {
        error_rate: parse(ERROR_RATE)
            .filter(|r| (0.0..=1.0).contains(r))
            .unwrap_or(defaults.error_rate),
        error_code: annotations
            .get(ERROR_CODE)
            .and_then(|c| c.trim().parse::<u16>().ok())
            .filter(|c| (100..600).contains(c))
            .unwrap_or(defaults.error_code),
        latency,
    };
    Version {
        pod_template_hash: hash,
        app: label(&["app"]).unwrap_or_else(|| "unknown".into()),
        version_label: label(&["version"]).unwrap_or_else(|| "unknown".into()),
        canonical_service: label(&[
            "service.istio.io/canonical-name",
            "app.kubernetes.io/name",
            "app",
        ])
        .unwrap_or_else(|| workload.clone()),
        canonical_revision: label(&[
            "service.istio.io/canonical-revision",
            "app.kubernetes.io/version",
            "version",
        ])
        .unwrap_or_else(|| "latest".into()),
        workload,
        behaviour,
        ready_pods: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(classes: Vec<RequestClass>) -> Load {
        Load {
            rps: 100.0,
            classes,
            default_behaviour: Behaviour {
                error_rate: 0.0,
                error_code: 500,
                latency: LatencyModel::constant(10.0),
            },
        }
    }

    fn canary_header_class(share: f64) -> RequestClass {
        RequestClass {
            share,
            headers: vec![("X-Canary".into(), "true".into())],
            cookies: vec![("canary".into(), "always".into())],
        }
    }

    fn replica_set(name: &str, hash: &str, annotations: Value) -> Arc<ReplicaSet> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "labels": {ROLLOUTS_HASH: hash}},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {
                    "labels": {"app": "web", ROLLOUTS_HASH: hash}, "annotations": annotations}}}
            }))
            .expect("replica set"),
        )
    }

    fn pods(rs: &str, hash: &str, ready: usize, unready: usize) -> Vec<Arc<Pod>> {
        (0..ready + unready)
            .map(|i| {
                let status = if i < ready { "True" } else { "False" };
                Arc::new(
                    serde_json::from_value(json!({
                        "metadata": {"name": format!("{rs}-{i}"), "namespace": "ns",
                            "labels": {"app": "web", ROLLOUTS_HASH: hash},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                "name": rs, "uid": rs, "controller": true}]},
                        "status": {"conditions": [{"type": "Ready", "status": status}]}
                    }))
                    .expect("pod"),
                )
            })
            .collect()
    }

    fn service(name: &str, selector: Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"selector": selector}
            }))
            .expect("service"),
        )
    }

    fn dynamic(value: Value) -> Arc<DynamicObject> {
        Arc::new(serde_json::from_value(value).expect("dynamic object"))
    }

    fn ingress(value: Value) -> Arc<Ingress> {
        Arc::new(serde_json::from_value(value).expect("ingress"))
    }

    /// Two versions: stable `web-s` (hash s, 2 ready pods) and canary `web-c` (hash c, 1 ready).
    fn two_versions() -> Snapshot {
        let mut pods_all = pods("web-s", "s", 2, 0);
        pods_all.extend(pods("web-c", "c", 1, 0));
        Snapshot {
            pods: pods_all,
            replica_sets: vec![
                replica_set("web-s", "s", json!({})),
                replica_set("web-c", "c", json!({ERROR_RATE: "0.1"})),
            ],
            services: vec![
                service("web-stable", json!({"app": "web", ROLLOUTS_HASH: "s"})),
                service("web-canary", json!({"app": "web", ROLLOUTS_HASH: "c"})),
            ],
            ..Snapshot::default()
        }
    }

    fn served(split: &Split, owner: &str) -> f64 {
        split
            .flows
            .iter()
            .filter(|((_, o), _)| matches!(o, Outcome::Served(v) if v.owner == owner))
            .map(|(_, rps)| rps)
            .sum()
    }

    fn mirrored(split: &Split, owner: &str) -> f64 {
        split
            .flows
            .iter()
            .filter(|((_, o), _)| matches!(o, Outcome::Mirrored(v) if v.owner == owner))
            .map(|(_, rps)| rps)
            .sum()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn host_split_vs(canary_weight: i64) -> Arc<DynamicObject> {
        dynamic(json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
                {"destination": {"host": "web-stable"}, "weight": 100 - canary_weight},
                {"destination": {"host": "web-canary.ns.svc.cluster.local"}, "weight": canary_weight}
            ]}]}
        }))
    }

    #[test]
    fn virtual_service_weights_split_host_destinations() {
        let mut snapshot = two_versions();
        snapshot.virtual_services = vec![host_split_vs(30)];
        let split = split(&snapshot, &load(Vec::new()));
        assert!(close(served(&split, "web-s"), 70.0));
        assert!(close(served(&split, "web-c"), 30.0));
        assert_eq!(
            split.versions[&VersionKey {
                namespace: "ns".into(),
                owner: "web-c".into()
            }]
                .behaviour
                .error_rate,
            0.1
        );
        assert_eq!(
            split.versions[&VersionKey {
                namespace: "ns".into(),
                owner: "web-s".into()
            }]
                .workload,
            "web"
        );
        // The services behind the VirtualService get no load of their own.
        assert_eq!(split.flows.len(), 2);
    }

    #[test]
    fn subsets_select_pods_by_destination_rule_labels() {
        let mut snapshot = two_versions();
        snapshot.services = vec![service("web", json!({"app": "web"}))];
        snapshot.destination_rules = vec![dynamic(json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"host": "web", "subsets": [
                {"name": "stable", "labels": {ROLLOUTS_HASH: "s"}},
                {"name": "canary", "labels": {ROLLOUTS_HASH: "c"}}
            ]}
        }))];
        snapshot.virtual_services = vec![dynamic(json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"http": [{"route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 90},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 10}
            ]}]}
        }))];
        let split = split(&snapshot, &load(Vec::new()));
        assert!(close(served(&split, "web-s"), 90.0));
        assert!(close(served(&split, "web-c"), 10.0));
    }

    #[test]
    fn header_route_takes_the_share_of_requests_carrying_the_header() {
        let mut snapshot = two_versions();
        let mut vs = (*host_split_vs(20)).clone();
        if let Some(http) = vs
            .data
            .pointer_mut("/spec/http")
            .and_then(Value::as_array_mut)
        {
            http.insert(
                0,
                json!({"name": "canary-header",
                "match": [{"headers": {"x-canary": {"exact": "true"}}}],
                "route": [{"destination": {"host": "web-canary"}, "weight": 100}]}),
            );
        }
        snapshot.virtual_services = vec![Arc::new(vs)];
        let split = split(&snapshot, &load(vec![canary_header_class(0.1)]));
        // 10 rps carry the header and go to the canary; the other 90 split 80/20.
        assert!(close(served(&split, "web-c"), 10.0 + 90.0 * 0.2));
        assert!(close(served(&split, "web-s"), 90.0 * 0.8));
    }

    #[test]
    fn mirror_route_copies_a_percentage_to_the_mirror() {
        let mut snapshot = two_versions();
        snapshot.virtual_services = vec![dynamic(json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"http": [{"name": "mirror", "route": [
                {"destination": {"host": "web-stable"}, "weight": 100},
                {"destination": {"host": "web-canary"}, "weight": 0}
            ], "mirror": {"host": "web-canary"}, "mirrorPercentage": {"value": 40.0}}]}
        }))];
        let split = split(&snapshot, &load(Vec::new()));
        assert!(close(served(&split, "web-s"), 100.0));
        assert!(close(served(&split, "web-c"), 0.0));
        assert!(close(mirrored(&split, "web-c"), 40.0));
    }

    fn stable_ingress() -> Arc<Ingress> {
        ingress(json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"rules": [{"host": "web.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}}]}}]}
        }))
    }

    fn canary_ingress(annotations: Value) -> Arc<Ingress> {
        ingress(json!({
            "metadata": {"name": "web-web-canary", "namespace": "ns", "annotations": annotations},
            "spec": {"rules": [{"host": "web.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web-canary", "port": {"number": 80}}}}]}}]}
        }))
    }

    #[test]
    fn nginx_canary_weight_and_weight_total() {
        let mut snapshot = two_versions();
        snapshot.ingresses = vec![
            stable_ingress(),
            canary_ingress(json!({
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "50",
                "nginx.ingress.kubernetes.io/canary-weight-total": "200"
            })),
        ];
        let split = split(&snapshot, &load(Vec::new()));
        assert!(close(served(&split, "web-c"), 25.0));
        assert!(close(served(&split, "web-s"), 75.0));
        let canary_label = split.flows.keys().find_map(|(e, o)| match (e, o) {
            (
                Exporter::Nginx {
                    canary, ingress, ..
                },
                Outcome::Served(v),
            ) if v.owner == "web-c" => Some((canary.clone(), ingress.clone())),
            _ => None,
        });
        assert_eq!(
            canary_label,
            Some(("ns-web-canary-80".into(), "web".into()))
        );
    }

    #[test]
    fn nginx_header_and_cookie_take_precedence_over_weight() {
        let mut snapshot = two_versions();
        snapshot.ingresses = vec![
            stable_ingress(),
            canary_ingress(json!({
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "0",
                "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
                "nginx.ingress.kubernetes.io/canary-by-header-value": "true"
            })),
        ];
        let by_header = split(&snapshot, &load(vec![canary_header_class(0.2)]));
        assert!(close(served(&by_header, "web-c"), 20.0));
        snapshot.ingresses[1] = canary_ingress(json!({
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-by-cookie": "canary"
        }));
        let by_cookie = split(&snapshot, &load(vec![canary_header_class(0.2)]));
        assert!(close(served(&by_cookie, "web-c"), 20.0));
    }

    #[test]
    fn http_route_backend_weights() {
        let mut snapshot = two_versions();
        snapshot.http_routes = vec![dynamic(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80, "weight": 60},
                {"name": "web-canary", "port": 80, "weight": 40}
            ]}]}
        }))];
        let split = split(&snapshot, &load(Vec::new()));
        assert!(close(served(&split, "web-s"), 60.0));
        assert!(close(served(&split, "web-c"), 40.0));
    }

    #[test]
    fn plain_service_splits_by_ready_pods_and_unready_pods_get_nothing() {
        let mut snapshot = two_versions();
        snapshot.pods.extend(pods("web-s-extra", "s", 0, 3));
        snapshot.services = vec![service("web", json!({"app": "web"}))];
        let split = split(&snapshot, &load(Vec::new()));
        assert!(close(served(&split, "web-s"), 100.0 * 2.0 / 3.0));
        assert!(close(served(&split, "web-c"), 100.0 / 3.0));
        assert!(close(served(&split, "web-s-extra"), 0.0));
    }

    #[test]
    fn no_ready_pods_means_503_for_the_version_the_destination_names() {
        let mut snapshot = two_versions();
        snapshot.pods.retain(|p| {
            !p.metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with("web-c")
        });
        snapshot.virtual_services = vec![host_split_vs(30)];
        let split = split(&snapshot, &load(Vec::new()));
        let unavailable: f64 = split
            .flows
            .iter()
            .filter(|((_, o), _)| matches!(o, Outcome::NoUpstream(Some(v)) if v.owner == "web-c"))
            .map(|(_, rps)| rps)
            .sum();
        assert!(close(unavailable, 30.0));
    }

    proptest::proptest! {
        /// Whatever the weights, header share and readiness, a VirtualService's requests are
        /// all accounted for: served by a ready version or answered 503, never more or less.
        #[test]
        fn virtual_service_load_is_conserved(
            canary_weight in 0_i64..=100,
            header_share in 0.0_f64..1.0,
            stable_ready in 0_usize..3,
            canary_ready in 0_usize..3,
        ) {
            let mut snapshot = two_versions();
            snapshot.pods = pods("web-s", "s", stable_ready, 1);
            snapshot.pods.extend(pods("web-c", "c", canary_ready, 1));
            let mut vs = (*host_split_vs(canary_weight)).clone();
            if let Some(http) = vs.data.pointer_mut("/spec/http").and_then(Value::as_array_mut) {
                http.insert(0, json!({"match": [{"headers": {"x-canary": {"exact": "true"}}}],
                    "route": [{"destination": {"host": "web-canary"}}]}));
            }
            snapshot.virtual_services = vec![Arc::new(vs)];
            let split = split(&snapshot, &load(vec![canary_header_class(header_share)]));
            let total: f64 = split.flows.values().sum();
            proptest::prop_assert!((total - 100.0).abs() < 1e-6, "total {}", total);
            let canary_expected = 100.0 * (header_share + (1.0 - header_share) * canary_weight as f64 / 100.0);
            let to_canary: f64 = split
                .flows
                .iter()
                .filter(|((e, _), _)| matches!(e, Exporter::Istio { service, .. } if service == "web-canary"))
                .map(|(_, rps)| rps)
                .sum();
            proptest::prop_assert!((to_canary - canary_expected).abs() < 1e-6);
            if canary_ready == 0 {
                proptest::prop_assert!(served(&split, "web-c") == 0.0);
            }
        }
    }
}
