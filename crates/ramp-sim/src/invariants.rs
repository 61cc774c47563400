//! Safety invariants of a progressive delivery, checked over a write log (ramp-sim's request
//! log, or a real server's audit log read with [`crate::audit`]). The checker replays every
//! applied write into a model of the namespace's objects and, at each write the controller
//! made, asks whether that write broke one of these rules:
//!
//! - **weights**: every managed VirtualService route's weights sum to 100, and an NGINX canary
//!   Ingress's weight is a number from 0 to 100;
//! - **traffic-to-unready**: a version's share of traffic only grows (a weight raised, a
//!   Service selector switched to it) when the version has the available pods that share needs
//!   (`ceil(weight × replicas / 100)` for a canary, all replicas behind a blue-green active
//!   Service);
//! - **pods-before-traffic**: a ReplicaSet is never scaled below what its current share of
//!   traffic needs, so traffic leaves a version before its pods do, stable keeps the pods for
//!   its share, and an abort has moved all traffic to stable before any canary pod goes;
//! - **step-without-traffic**: a canary step index only moves past a `setWeight` step when the
//!   router holds that step's weight (moving past other steps is not judged).
//!
//! Traffic and pods are judged by the objects as they are, hand edits included: what a write
//! does to traffic really flowing is what counts. **step-without-traffic** also accepts the
//! weight the controller last wrote while a hand edit (a write the caller marks
//! [`Writer::HandEdit`]) is unanswered, since the edit may land between the controller's
//! check of the weight and its status write; and a hand edit that happens to set the step's
//! weight backs the step as well as the controller's own write would. The first version of a rollout, which has
//! nowhere else to send traffic, is exempt from **traffic-to-unready**.
//!
//! Routers understood: Istio host-split VirtualServices (`canaryService`/`stableService`
//! hosts), the NGINX canary Ingress `<rollout>-<stableIngress>-canary`, and blue-green active
//! Services. Rollouts with other routers are not checked.

use crate::api::{LoggedRequest, Verb};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Who made a write, as the caller knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// The controller under test: its writes are checked.
    Controller,
    /// Someone changing a router object behind the controller's back.
    HandEdit,
    /// Anyone else (the user applying manifests, the kubelet, the ReplicaSet controller).
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    Weights,
    TrafficToUnready,
    PodsBeforeTraffic,
    StepWithoutTraffic,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Weights => "weights",
            Rule::TrafficToUnready => "traffic-to-unready",
            Rule::PodsBeforeTraffic => "pods-before-traffic",
            Rule::StepWithoutTraffic => "step-without-traffic",
        }
    }
}

/// One broken rule: the write that broke it (its place in the log and summary) and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub index: usize,
    pub write: String,
    pub rollout: String,
    pub rule: Rule,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "write #{} ({}), rollout {}: {}: {}",
            self.index,
            self.write,
            self.rollout,
            self.rule.as_str(),
            self.detail
        )
    }
}

/// `(plural, namespace, name)` of an object in the model.
type Key = (String, String, String);

/// Checks every write of `log` in order; `writer` says who made each one.
pub fn check(log: &[LoggedRequest], writer: impl Fn(&LoggedRequest) -> Writer) -> Vec<Violation> {
    let mut model = Model::default();
    let mut violations = Vec::new();
    for (index, write) in log.iter().enumerate() {
        let who = writer(write);
        let Some(key) = key_of(write) else { continue };
        let before = (who == Writer::Controller).then(|| model.clone());
        model.apply(write, &key, who);
        if let Some(before) = before {
            for (rollout, rule, detail) in model.judge(&before, write, &key) {
                violations.push(Violation {
                    index,
                    write: write.summary(),
                    rollout,
                    rule,
                    detail,
                });
            }
        }
    }
    violations
}

fn key_of(write: &LoggedRequest) -> Option<Key> {
    Some((
        write.resource.clone(),
        write.namespace.clone().unwrap_or_default(),
        write.name.clone()?,
    ))
}

/// The objects as the writes left them, and the router objects as they were before hand edits
/// the controller has not answered yet.
#[derive(Clone, Debug, Default)]
struct Model {
    objects: HashMap<Key, Value>,
    before_hand_edits: HashMap<Key, Option<Value>>,
}

impl Model {
    fn apply(&mut self, write: &LoggedRequest, key: &Key, who: Writer) {
        let applied = write.succeeded() || write.object.is_some();
        if !applied {
            return;
        }
        match who {
            Writer::HandEdit => {
                if !self.before_hand_edits.contains_key(key) {
                    self.before_hand_edits
                        .insert(key.clone(), self.objects.get(key).cloned());
                }
            }
            Writer::Controller => {
                self.before_hand_edits.remove(key);
            }
            Writer::Other => {}
        }
        let gone = write.verb == Verb::Delete
            && write.object.as_ref().is_none_or(|o| {
                o["metadata"]["deletionTimestamp"].is_null()
                    || o["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|f| f.is_empty())
            });
        if gone {
            self.objects.remove(key);
            return;
        }
        let Some(object) = &write.object else { return };
        if object["kind"] == "Scale" {
            return;
        }
        let newer = self
            .objects
            .get(key)
            .is_none_or(|held| resource_version(object) >= resource_version(held));
        if newer {
            self.objects.insert(key.clone(), object.clone());
        }
    }

    /// The object as it is, or (`View::Controller`) as the controller last wrote it when a
    /// hand edit has changed it since.
    fn seen(&self, view: View, resource: &str, namespace: &str, name: &str) -> Option<&Value> {
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        match (view, self.before_hand_edits.get(&key)) {
            (View::Controller, Some(before)) => before.as_ref(),
            _ => self.objects.get(&key),
        }
    }

    fn rollouts(&self, namespace: &str) -> impl Iterator<Item = &Value> {
        self.objects
            .iter()
            .filter(move |((resource, ns, _), _)| resource == "rollouts" && ns == namespace)
            .map(|(_, rollout)| rollout)
    }

    fn replica_set(&self, namespace: &str, hash: &str) -> Option<&Value> {
        self.objects
            .iter()
            .filter(|((resource, ns, _), _)| resource == "replicasets" && ns == namespace)
            .map(|(_, rs)| rs)
            .find(|rs| rs["metadata"]["labels"][HASH_LABEL] == hash)
    }

    fn available(&self, namespace: &str, hash: &str) -> i64 {
        self.replica_set(namespace, hash)
            .and_then(|rs| rs["status"]["availableReplicas"].as_i64())
            .unwrap_or(0)
    }

    /// The rules `write` (the controller's, already applied) broke, per rollout of its namespace.
    fn judge(
        &self,
        before: &Model,
        write: &LoggedRequest,
        key: &Key,
    ) -> Vec<(String, Rule, String)> {
        let namespace = &key.1;
        let mut found = Vec::new();
        for rollout in self.rollouts(namespace) {
            let Some(shape) = Shape::of(rollout) else {
                continue;
            };
            let name = rollout["metadata"]["name"].as_str().unwrap_or_default();
            let mut broke =
                |rule: Rule, detail: String| found.push((name.to_owned(), rule, detail));
            match key.0.as_str() {
                "virtualservices" | "ingresses" | "services" if shape.reads(key) => {
                    let now = self.traffic(View::Actual, &shape, namespace, &mut broke);
                    let then = before.traffic(View::Actual, &shape, namespace, &mut |_, _| {});
                    self.judge_traffic_growth(&shape, namespace, &then, &now, &mut broke);
                }
                "replicasets" if write.subresource.is_none() => {
                    self.judge_scale(&shape, namespace, key, &mut broke);
                }
                "rollouts" if key.2 == name => {
                    let previous = before.objects.get(key);
                    self.judge_step(&shape, namespace, previous, rollout, &mut broke);
                }
                _ => {}
            }
        }
        found
    }

    /// Weight (0–100) per pod-template hash, as the controller could know the routers; `None`
    /// when the rollout's router objects are not all there.
    fn traffic(
        &self,
        view: View,
        shape: &Shape,
        namespace: &str,
        broke: &mut dyn FnMut(Rule, String),
    ) -> Option<BTreeMap<String, i64>> {
        let hash_of = |service: &str| {
            self.seen(view, "services", namespace, service)
                .and_then(|s| s["spec"]["selector"][HASH_LABEL].as_str())
                .map(str::to_owned)
        };
        let mut traffic = BTreeMap::new();
        let mut add = |hash: Option<String>, weight: i64| {
            if let Some(hash) = hash.filter(|_| weight > 0) {
                *traffic.entry(hash).or_insert(0) += weight;
            }
        };
        match &shape.router {
            Router::Istio {
                virtual_service,
                routes,
            } => {
                let vs = self.seen(view, "virtualservices", namespace, virtual_service)?;
                let (stable, canary) = (&shape.stable_service, &shape.canary_service);
                let (mut stable_weight, mut canary_weight) = (0, 0);
                for route in vs["spec"]["http"].as_array().into_iter().flatten() {
                    let named = route["name"].as_str().unwrap_or_default();
                    if !routes.is_empty() && !routes.iter().any(|r| r == named) {
                        continue;
                    }
                    let destinations = route["route"].as_array().cloned().unwrap_or_default();
                    let weight_of = |host: &str| {
                        destinations
                            .iter()
                            .filter(|d| d["destination"]["host"] == host)
                            .filter_map(|d| d["weight"].as_i64())
                            .sum::<i64>()
                    };
                    let sum: i64 = destinations
                        .iter()
                        .map(|d| d["weight"].as_i64().unwrap_or(0))
                        .sum();
                    if destinations.len() > 1 && sum != 100 {
                        broke(
                            Rule::Weights,
                            format!(
                                "VirtualService {virtual_service} route {named:?} weights sum to {sum}"
                            ),
                        );
                    }
                    stable_weight = weight_of(stable);
                    canary_weight = weight_of(canary);
                    if destinations.len() == 1 {
                        stable_weight = if destinations[0]["destination"]["host"] == canary.as_str()
                        {
                            0
                        } else {
                            100
                        };
                        canary_weight = 100 - stable_weight;
                    }
                }
                add(hash_of(stable), stable_weight);
                add(hash_of(canary), canary_weight);
            }
            Router::Nginx { canary_ingress } => {
                let canary_weight = match self.seen(view, "ingresses", namespace, canary_ingress) {
                    None => 0,
                    Some(ingress) => {
                        let annotations = &ingress["metadata"]["annotations"];
                        if annotations["nginx.ingress.kubernetes.io/canary"] != "true" {
                            0
                        } else {
                            let text = annotations["nginx.ingress.kubernetes.io/canary-weight"]
                                .as_str()
                                .unwrap_or("0");
                            match text.parse::<i64>() {
                                Ok(w) if (0..=100).contains(&w) => w,
                                _ => {
                                    broke(
                                        Rule::Weights,
                                        format!(
                                            "Ingress {canary_ingress} canary-weight {text:?} is not 0–100"
                                        ),
                                    );
                                    0
                                }
                            }
                        }
                    }
                };
                add(hash_of(&shape.stable_service), 100 - canary_weight);
                add(hash_of(&shape.canary_service), canary_weight);
            }
            Router::Active => add(hash_of(&shape.stable_service), 100),
        }
        Some(traffic)
    }

    fn judge_traffic_growth(
        &self,
        shape: &Shape,
        namespace: &str,
        then: &Option<BTreeMap<String, i64>>,
        now: &Option<BTreeMap<String, i64>>,
        broke: &mut dyn FnMut(Rule, String),
    ) {
        let (Some(then), Some(now)) = (then, now) else {
            return;
        };
        // A first version has nowhere else to send traffic.
        if then.is_empty() {
            return;
        }
        for (hash, &weight) in now {
            let previous = then.get(hash).copied().unwrap_or(0);
            if weight <= previous {
                continue;
            }
            let needed = shape.pods_for(weight);
            let available = self.available(namespace, hash);
            if available < needed {
                broke(
                    Rule::TrafficToUnready,
                    format!(
                        "version {hash} went from {previous} % to {weight} % of the traffic with {available} available pods (needs {needed})"
                    ),
                );
            }
        }
    }

    fn judge_scale(
        &self,
        shape: &Shape,
        namespace: &str,
        key: &Key,
        broke: &mut dyn FnMut(Rule, String),
    ) {
        let Some(rs) = self.objects.get(key) else {
            return;
        };
        let Some(hash) = rs["metadata"]["labels"][HASH_LABEL].as_str() else {
            return;
        };
        let Some(traffic) = self.traffic(View::Actual, shape, namespace, &mut |_, _| {}) else {
            return;
        };
        let weight = traffic.get(hash).copied().unwrap_or(0);
        let replicas = rs["spec"]["replicas"].as_i64().unwrap_or(1);
        let needed = shape.pods_for(weight);
        if replicas < needed {
            broke(
                Rule::PodsBeforeTraffic,
                format!(
                    "ReplicaSet {} (version {hash}) scaled to {replicas} while it has {weight} % of the traffic (needs {needed})",
                    key.2
                ),
            );
        }
    }

    fn judge_step(
        &self,
        shape: &Shape,
        namespace: &str,
        previous: Option<&Value>,
        rollout: &Value,
        broke: &mut dyn FnMut(Rule, String),
    ) {
        if matches!(shape.router, Router::Active) {
            return;
        }
        let (Some(previous), status) = (previous, &rollout["status"]) else {
            return;
        };
        let index = status["currentStepIndex"].as_i64().unwrap_or(0);
        let was = previous["status"]["currentStepIndex"].as_i64().unwrap_or(0);
        let same_revision = status["currentPodHash"] == previous["status"]["currentPodHash"];
        let steps = rollout["spec"]["strategy"]["canary"]["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if index <= was
            || !same_revision
            || status["abort"] == true
            || index as usize >= steps.len()
        {
            return;
        }
        // Only a `setWeight` step is done by a traffic write.
        if !steps[was.max(0) as usize..index as usize]
            .iter()
            .any(|step| step.get("setWeight").is_some())
        {
            return;
        }
        let wanted = steps[..index as usize]
            .iter()
            .rev()
            .find_map(|step| step["setWeight"].as_i64())
            .unwrap_or(0);
        let canary_hash = status["currentPodHash"].as_str().unwrap_or_default();
        let stable_hash = status["stableRS"].as_str().unwrap_or_default();
        if canary_hash == stable_hash {
            return;
        }
        // The weight is in force, or the controller's own last write set it (a hand edit may
        // have landed since its check).
        let held = |view| {
            self.traffic(view, shape, namespace, &mut |_, _| {})
                .map(|t| t.get(canary_hash).copied().unwrap_or(0))
        };
        let (Some(held), Some(written)) = (held(View::Actual), held(View::Controller)) else {
            return;
        };
        if held != wanted && written != wanted {
            broke(
                Rule::StepWithoutTraffic,
                format!(
                    "step index moved from {was} to {index} while the canary has {held} % of the traffic, not the {wanted} % of its last setWeight"
                ),
            );
        }
    }
}

const HASH_LABEL: &str = "rollouts-pod-template-hash";

/// Which state of a router object a check reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    Actual,
    Controller,
}

/// What the checker needs of a rollout.
struct Shape {
    replicas: i64,
    /// The stable Service of a canary, the active Service of a blue-green.
    stable_service: String,
    canary_service: String,
    router: Router,
}

enum Router {
    Istio {
        virtual_service: String,
        routes: Vec<String>,
    },
    Nginx {
        canary_ingress: String,
    },
    Active,
}

impl Shape {
    fn of(rollout: &Value) -> Option<Self> {
        let spec = &rollout["spec"];
        let replicas = spec["replicas"].as_i64().unwrap_or(1);
        let text = |v: &Value| v.as_str().map(str::to_owned);
        if let Some(active) = text(&spec["strategy"]["blueGreen"]["activeService"]) {
            return Some(Shape {
                replicas,
                stable_service: active,
                canary_service: String::new(),
                router: Router::Active,
            });
        }
        let canary = &spec["strategy"]["canary"];
        let routing = &canary["trafficRouting"];
        let router = if let Some(vs) = routing["istio"]["virtualService"]["name"].as_str() {
            Router::Istio {
                virtual_service: vs.split('.').next().unwrap_or(vs).to_owned(),
                routes: routing["istio"]["virtualService"]["routes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(text)
                    .collect(),
            }
        } else if let Some(stable_ingress) = routing["nginx"]["stableIngress"].as_str() {
            let name = rollout["metadata"]["name"].as_str()?;
            Router::Nginx {
                canary_ingress: format!("{name}-{stable_ingress}-canary"),
            }
        } else {
            return None;
        };
        Some(Shape {
            replicas,
            stable_service: text(&canary["stableService"])?,
            canary_service: text(&canary["canaryService"])?,
            router,
        })
    }

    /// Does the rollout's traffic read this object?
    fn reads(&self, (resource, _, name): &Key) -> bool {
        match (resource.as_str(), &self.router) {
            ("services", _) => name == &self.stable_service || name == &self.canary_service,
            (
                "virtualservices",
                Router::Istio {
                    virtual_service, ..
                },
            ) => name == virtual_service,
            ("ingresses", Router::Nginx { canary_ingress }) => name == canary_ingress,
            _ => false,
        }
    }

    /// Available pods a version needs for `weight` % of the traffic.
    fn pods_for(&self, weight: i64) -> i64 {
        match self.router {
            Router::Active if weight > 0 => self.replicas,
            _ => (weight * self.replicas + 99) / 100,
        }
    }
}

fn resource_version(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
