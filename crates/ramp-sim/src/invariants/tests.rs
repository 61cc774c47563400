//! The checker on hand-written logs: a safe canary passes, and each kind of unsafe write is
//! caught at the write that made it.

use super::*;
use serde_json::json;
use std::time::SystemTime;

/// A log under construction: every write gets the next resourceVersion.
#[derive(Default)]
struct Log {
    entries: Vec<LoggedRequest>,
    writers: Vec<Writer>,
    rv: u64,
}

impl Log {
    fn write(&mut self, who: Writer, resource: &str, mut object: Value) -> &mut Self {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let name = object["metadata"]["name"].as_str().map(str::to_owned);
        self.entries.push(LoggedRequest {
            time: SystemTime::UNIX_EPOCH,
            verb: Verb::Patch,
            group: String::new(),
            version: "v1".into(),
            resource: resource.into(),
            namespace: Some("ns".into()),
            name,
            subresource: None,
            patch_type: Some("merge".into()),
            field_manager: None,
            body: None,
            code: 200,
            object: Some(object),
        });
        self.writers.push(who);
        self
    }

    fn ramp(&mut self, resource: &str, object: Value) -> &mut Self {
        self.write(Writer::Controller, resource, object)
    }

    fn check(&self) -> Vec<(usize, Rule)> {
        let writers: HashMap<usize, Writer> = self.writers.iter().copied().enumerate().collect();
        let index_of = |w: &LoggedRequest| {
            self.entries
                .iter()
                .position(|e| std::ptr::eq(e, w))
                .unwrap_or_default()
        };
        check(&self.entries, |w| writers[&index_of(w)])
            .into_iter()
            .map(|v| (v.index, v.rule))
            .collect()
    }
}

fn rollout(index: i64, pod_hash: &str, stable: &str) -> Value {
    json!({
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "replicas": 4,
            "strategy": {"canary": {
                "stableService": "web-stable", "canaryService": "web-canary",
                "trafficRouting": {"istio": {"virtualService": {"name": "web-vsvc", "routes": ["primary"]}}},
                "steps": [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {}}]
            }}
        },
        "status": {"currentStepIndex": index, "currentPodHash": pod_hash, "stableRS": stable}
    })
}

fn vs(canary: i64, stable: i64) -> Value {
    json!({
        "kind": "VirtualService",
        "metadata": {"name": "web-vsvc", "namespace": "ns"},
        "spec": {"http": [{"name": "primary", "route": [
            {"destination": {"host": "web-stable"}, "weight": stable},
            {"destination": {"host": "web-canary"}, "weight": canary}
        ]}]}
    })
}

fn service(name: &str, hash: &str) -> Value {
    json!({"kind": "Service", "metadata": {"name": name, "namespace": "ns"},
           "spec": {"selector": {"app": "web", "rollouts-pod-template-hash": hash}}})
}

fn rs(hash: &str, replicas: i64, available: i64) -> Value {
    json!({"kind": "ReplicaSet",
           "metadata": {"name": format!("web-{hash}"), "namespace": "ns",
                        "labels": {"rollouts-pod-template-hash": hash}},
           "spec": {"replicas": replicas},
           "status": {"availableReplicas": available}})
}

/// v1 (hash `a`) stable behind both Services and a 100/0 VirtualService, v2 (hash `b`) created.
fn v1_stable_v2_started() -> Log {
    let mut log = Log::default();
    log.write(Writer::Other, "rollouts", rollout(0, "a", "a"))
        .write(Writer::Other, "virtualservices", vs(0, 100))
        .ramp("replicasets", rs("a", 4, 0))
        .ramp("services", service("web-stable", "a"))
        .ramp("services", service("web-canary", "a"))
        .write(Writer::Other, "replicasets", rs("a", 4, 4))
        .ramp("rollouts", rollout(0, "b", "a"))
        .ramp("replicasets", rs("b", 1, 0))
        .ramp("services", service("web-canary", "b"));
    log
}

#[test]
fn a_safe_canary_breaks_no_rule() {
    let mut log = v1_stable_v2_started();
    log.write(Writer::Other, "replicasets", rs("b", 1, 1))
        .ramp("virtualservices", vs(25, 75))
        .ramp("rollouts", rollout(1, "b", "a"))
        .ramp("rollouts", rollout(2, "b", "a"))
        .ramp("replicasets", rs("b", 2, 1))
        .write(Writer::Other, "replicasets", rs("b", 2, 2))
        .ramp("virtualservices", vs(50, 50))
        .ramp("rollouts", rollout(3, "b", "a"))
        // Abort: traffic back to stable first, then the canary's pods go.
        .ramp("virtualservices", vs(0, 100))
        .ramp("replicasets", rs("b", 0, 2));
    assert_eq!(log.check(), vec![]);
}

#[test]
fn weight_raised_before_the_canary_has_pods_is_caught() {
    let mut log = v1_stable_v2_started();
    log.ramp("virtualservices", vs(25, 75));
    assert_eq!(log.check(), vec![(9, Rule::TrafficToUnready)]);
}

#[test]
fn weight_needing_more_pods_than_are_available_is_caught() {
    let mut log = v1_stable_v2_started();
    log.write(Writer::Other, "replicasets", rs("b", 1, 1))
        .ramp("virtualservices", vs(50, 50));
    assert_eq!(log.check(), vec![(10, Rule::TrafficToUnready)]);
}

#[test]
fn canary_pods_removed_before_its_traffic_is_caught() {
    let mut log = v1_stable_v2_started();
    log.write(Writer::Other, "replicasets", rs("b", 1, 1))
        .ramp("virtualservices", vs(25, 75))
        .ramp("replicasets", rs("b", 0, 1))
        .ramp("virtualservices", vs(0, 100));
    assert_eq!(log.check(), vec![(11, Rule::PodsBeforeTraffic)]);
}

#[test]
fn stable_scaled_below_its_share_is_caught() {
    let mut log = v1_stable_v2_started();
    log.write(Writer::Other, "replicasets", rs("b", 1, 1))
        .ramp("virtualservices", vs(25, 75))
        .ramp("replicasets", rs("a", 2, 2));
    assert_eq!(log.check(), vec![(11, Rule::PodsBeforeTraffic)]);
}

#[test]
fn a_step_done_without_its_weight_is_caught() {
    let mut log = v1_stable_v2_started();
    log.write(Writer::Other, "replicasets", rs("b", 1, 1))
        .ramp("rollouts", rollout(1, "b", "a"));
    assert_eq!(log.check(), vec![(10, Rule::StepWithoutTraffic)]);
}

#[test]
fn weights_that_do_not_sum_to_100_are_caught() {
    let mut log = v1_stable_v2_started();
    log.write(Writer::Other, "replicasets", rs("b", 4, 4))
        .ramp("virtualservices", vs(25, 70));
    assert_eq!(log.check(), vec![(10, Rule::Weights)]);
}

#[test]
fn a_hand_edit_is_judged_by_what_the_controller_wrote_last() {
    let mut log = v1_stable_v2_started();
    log.write(Writer::Other, "replicasets", rs("b", 1, 1))
        .ramp("virtualservices", vs(25, 75))
        // Someone sends half the traffic to the one canary pod: not the controller's doing,
        // and its next step is judged by the 25 % it set.
        .write(Writer::HandEdit, "virtualservices", vs(50, 50))
        .ramp("rollouts", rollout(1, "b", "a"))
        // Putting 25 % back is no growth; then the same edit written by the controller is.
        .ramp("virtualservices", vs(25, 75))
        .ramp("virtualservices", vs(50, 50));
    assert_eq!(log.check(), vec![(14, Rule::TrafficToUnready)]);
}

#[test]
fn pods_may_go_once_a_hand_edit_took_their_traffic_away() {
    // `ramp bench chaos` seed 64: the VirtualService re-applied at 100/0 by hand, then the
    // controller shrinks the canary for the next step before writing its weight back.
    let mut log = v1_stable_v2_started();
    log.write(Writer::Other, "replicasets", rs("b", 2, 2))
        .ramp("virtualservices", vs(50, 50))
        .write(Writer::HandEdit, "virtualservices", vs(0, 100))
        .ramp("replicasets", rs("b", 1, 2))
        .ramp("virtualservices", vs(25, 75));
    assert_eq!(log.check(), vec![]);
}

#[test]
fn a_hand_edit_that_sets_the_steps_weight_backs_the_step() {
    // `ramp bench chaos` seed 237: someone set 50/50 by hand while the next step wanted 50 %;
    // the controller saw the weight in force and moved on without writing it again.
    let mut steps = rollout(0, "b", "a");
    steps["spec"]["strategy"]["canary"]["steps"] =
        json!([{"setWeight": 25}, {"setWeight": 50}, {"pause": {}}]);
    let at = |index| {
        let mut r = steps.clone();
        r["status"]["currentStepIndex"] = json!(index);
        r
    };
    let mut log = v1_stable_v2_started();
    log.write(Writer::Other, "rollouts", at(0))
        .write(Writer::Other, "replicasets", rs("b", 2, 2))
        .ramp("virtualservices", vs(25, 75))
        .ramp("rollouts", at(1))
        .write(Writer::HandEdit, "virtualservices", vs(50, 50))
        .ramp("rollouts", at(2));
    assert_eq!(log.check(), vec![]);
    // Without the edit, the same status write is a step done without its weight.
    log.entries.remove(13);
    log.writers.remove(13);
    assert_eq!(log.check(), vec![(13, Rule::StepWithoutTraffic)]);
}

#[test]
fn a_write_applied_then_answered_500_counts_and_a_refused_one_does_not() {
    let mut log = v1_stable_v2_started();
    log.write(Writer::Other, "replicasets", rs("b", 1, 1))
        .ramp("virtualservices", vs(25, 75));
    log.entries[10].code = 500;
    log.ramp("rollouts", rollout(1, "b", "a"));
    assert_eq!(log.check(), vec![], "the 500 after apply moved the traffic");
    log.entries[10].object = None;
    assert_eq!(log.check(), vec![(11, Rule::StepWithoutTraffic)]);
}

#[test]
fn the_first_version_is_exempt_but_a_blue_green_switch_needs_every_pod() {
    let bluegreen = |name: &str| {
        json!({"kind": "Rollout", "metadata": {"name": name, "namespace": "ns"},
               "spec": {"replicas": 2, "strategy": {"blueGreen": {"activeService": "active"}}}})
    };
    let mut log = Log::default();
    log.write(Writer::Other, "rollouts", bluegreen("bg"))
        .ramp("replicasets", rs("a", 2, 0))
        .ramp("services", service("active", "a"))
        .ramp("replicasets", rs("b", 2, 1))
        .ramp("services", service("active", "b"));
    assert_eq!(log.check(), vec![(4, Rule::TrafficToUnready)]);
}
