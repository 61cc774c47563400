//! End to end on ramp-sim: canary steps gated by AnalysisRuns. The Rollout and AnalysisRun
//! controllers run in-process; the metric is a web provider against an in-test HTTP endpoint
//! whose answer the test flips, so the verdicts are known. Asserts the request log: when each
//! run is created, that traffic waits for it, and that a failure takes traffic back at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;

use canary_support::*;
use kube::api::{Api, PostParams};
use pretty_assertions::assert_eq;
use ramp_api::analysis::{AnalysisRun, AnalysisTemplate};
use ramp_sim::{LoggedRequest, Verb};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// `smoke` (two measurements a second apart) and `smoke-forever` (measures until terminated):
/// the in-test endpoint's `ok` must be `true`; `false` fails, anything else is inconclusive.
async fn create_templates(cluster: &Cluster) {
    let api = Api::<AnalysisTemplate>::namespaced(cluster.client.clone(), ns());
    for (name, count) in [("smoke", Some(2)), ("smoke-forever", None)] {
        let mut metric = json!({
            "name": "smoke",
            "interval": "1s",
            "failureLimit": 0,
            "inconclusiveLimit": 0,
            "successCondition": "result == true",
            "failureCondition": "result == false",
            "provider": {"web": {"url": "{{args.url}}", "jsonPath": "{$.ok}"}}
        });
        if let Some(count) = count {
            metric["count"] = json!(count);
        }
        let template: AnalysisTemplate = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": name, "namespace": ns()},
            "spec": {
                "args": [{"name": "url"}, {"name": "canary-hash", "value": ""}],
                "metrics": [metric]
            }
        }))
        .unwrap();
        api.create(&PostParams::default(), &template)
            .await
            .expect("template created");
    }
}

fn gated_canary(url: &str) -> Value {
    json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 1,
        "trafficRouting": {"istio": {"virtualService": {"name": "web-vsvc", "routes": ["primary"]}}},
        "steps": [
            {"setWeight": 20},
            {"analysis": {
                "templates": [{"templateName": "smoke"}],
                "args": [
                    {"name": "url", "value": url},
                    {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}
                ]
            }},
            {"setWeight": 60}
        ]
    })
}

/// A Healthy v1 of `strategy(url)` with the templates installed and the endpoint answering
/// `ok`.
async fn analysed_cluster(
    ok: bool,
    replicas: i32,
    strategy: fn(&str) -> Value,
) -> (Cluster, Health, String) {
    let health = Health::new(ok);
    let url = health_endpoint(health.clone()).await;
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster
        .create_virtual_service("web-vsvc", "web-stable", "web-canary")
        .await;
    create_templates(&cluster).await;
    cluster.start_controller();
    cluster
        .create_rollout(rollout_manifest("web", replicas, strategy(&url)))
        .await;
    cluster.wait_healthy("web", 20).await;
    (cluster, health, url)
}

async fn gated_cluster(ok: bool) -> (Cluster, Health, String) {
    analysed_cluster(ok, 5, gated_canary).await
}

fn runs(cluster: &Cluster) -> Api<AnalysisRun> {
    Api::namespaced(cluster.client.clone(), ns())
}

/// Writes of the Rollout controller to AnalysisRuns (the AnalysisRun controller writes status
/// with its own field manager).
fn run_writes(writes: &[LoggedRequest]) -> Vec<String> {
    writes
        .iter()
        .filter(|w| w.resource == "analysisruns" && w.field_manager.is_none())
        .map(|w| {
            let name = w
                .name
                .clone()
                .or_else(|| {
                    w.body
                        .as_ref()
                        .and_then(|b| b["metadata"]["name"].as_str().map(str::to_owned))
                })
                .unwrap_or_default();
            match w.verb {
                Verb::Create => format!("create {name}"),
                _ => format!("{} {name} {}", w.verb, w.body.clone().unwrap_or_default()),
            }
        })
        .collect()
}

fn index_of(writes: &[LoggedRequest], what: impl Fn(&LoggedRequest) -> bool) -> usize {
    writes.iter().position(what).expect("write present")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_analysis_step_gates_the_next_weight_and_the_rollout_completes() {
    let (cluster, _ok, url) = gated_cluster(true).await;
    let vs_before =
        serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap();
    let checkpoint = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let v2 = cluster.wait_healthy("web", 40).await;
    let hash = v2.status.clone().unwrap().current_pod_hash.unwrap();
    let writes = controller_writes(&cluster.sim, checkpoint);
    let summaries: Vec<String> = writes.iter().map(LoggedRequest::summary).collect();

    assert_eq!(
        canary_weights(&writes, "web-vsvc", &vs_before, "web-canary"),
        vec![20, 60, 100, 0],
        "{summaries:#?}"
    );
    let name = format!("web-{hash}-2-1");
    assert_eq!(run_writes(&writes), vec![format!("create {name}")]);

    // The run is created after 20 % was written, and 60 % waits for its verdict.
    let weight_write = |weight: i64| {
        move |w: &LoggedRequest| {
            w.resource == "virtualservices"
                && w.body.as_ref().is_some_and(|b| {
                    b.as_array().into_iter().flatten().any(|op| {
                        op["path"] == "/spec/http/0/route/1/weight" && op["value"] == weight
                    })
                })
        }
    };
    let at_20 = index_of(&writes, weight_write(20));
    let created = index_of(&writes, |w| {
        w.resource == "analysisruns" && w.verb == Verb::Create
    });
    let at_60 = index_of(&writes, weight_write(60));
    assert!(at_20 < created && created < at_60, "{summaries:#?}");
    let run = runs(&cluster).get(&name).await.unwrap();
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, "Successful");
    let completed = status.completed_at.unwrap().0;
    let sixty = writes[at_60].time;
    assert!(
        system_time(completed) <= sixty + Duration::from_millis(1),
        "60 % was written before the run completed"
    );
    // The run carries the rollout's arguments, resolved.
    let args: Vec<(String, Option<String>)> = run
        .spec
        .args
        .iter()
        .flatten()
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect();
    assert_eq!(
        args,
        vec![
            ("url".to_owned(), Some(url.clone())),
            ("canary-hash".to_owned(), Some(hash.clone()))
        ]
    );
    let labels = run.metadata.labels.clone().unwrap();
    assert_eq!(labels["rollout-type"], "Step");
    assert_eq!(labels["step-index"], "1");
    assert_eq!(
        run.metadata.owner_references.unwrap()[0].name,
        "web".to_owned()
    );
}

fn system_time(t: k8s_openapi::jiff::Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(t.as_millisecond()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_analysis_aborts_with_traffic_back_at_once_and_a_retry_analyses_afresh() {
    let (cluster, ok, _url) = gated_cluster(false).await;
    let vs_before =
        serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap();
    let checkpoint = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let aborted = cluster
        .wait_rollout("web", "aborted by the analysis", 30, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.abort == Some(true) && s.phase.as_deref() == Some("Degraded")
        })
        .await;
    let status = aborted.status.clone().unwrap();
    let hash = status.current_pod_hash.clone().unwrap();
    let name = format!("web-{hash}-2-1");
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains("Step-based analysis phase failed: Metric \"smoke\" assessed Failed"),
        "{message}"
    );
    // Traffic back on stable, the canary scaled down only after.
    eventually("canary weight back to 0", 10, || async {
        let writes = controller_writes(&cluster.sim, checkpoint);
        let weights = canary_weights(&writes, "web-vsvc", &vs_before, "web-canary");
        (weights == vec![20, 0]).then_some(())
    })
    .await;
    let writes = controller_writes(&cluster.sim, checkpoint);
    let summaries: Vec<String> = writes.iter().map(LoggedRequest::summary).collect();
    let run = runs(&cluster).get(&name).await.unwrap();
    let run_status = run.status.clone().unwrap();
    assert_eq!(run_status.phase, "Failed");
    let back_to_stable = index_of(&writes, |w| {
        w.resource == "virtualservices"
            && w.body.as_ref().is_some_and(|b| {
                b.as_array()
                    .into_iter()
                    .flatten()
                    .any(|op| op["path"] == "/spec/http/0/route/1/weight" && op["value"] == 0)
            })
    });
    // From the failed verdict to 100 % stable: one reaction, well inside the 3 s budget.
    let failed_at = system_time(run_status.completed_at.unwrap().0);
    let reaction = writes[back_to_stable]
        .time
        .duration_since(failed_at)
        .unwrap_or_default();
    eprintln!("failed run -> 100 % stable: {reaction:?}");
    assert!(
        reaction < Duration::from_secs(3),
        "traffic went back {reaction:?} after the failure"
    );
    // The failed run is retired once acted on, so a retry cannot reuse its verdict.
    assert_eq!(
        run_writes(&writes),
        vec![
            format!("create {name}"),
            format!("patch {name} {}", json!({"spec": {"terminate": true}})),
        ],
        "{summaries:#?}"
    );

    // Fix the canary's health and retry: the analysis runs again under a new name.
    ok.answer(json!(true));
    let checkpoint = cluster.sim.request_log().len();
    cluster.patch_status("web", json!({"abort": false})).await;
    cluster.wait_healthy("web", 40).await;
    let writes = controller_writes(&cluster.sim, checkpoint);
    assert_eq!(run_writes(&writes), vec![format!("create {name}.1")]);
    let retried = runs(&cluster).get(&format!("{name}.1")).await.unwrap();
    assert_eq!(retried.status.unwrap().phase, "Successful");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_template_is_reported_and_the_rollout_proceeds_once_it_exists() {
    let url = health_endpoint(Health::new(true)).await;
    let mut cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster
        .create_virtual_service("web-vsvc", "web-stable", "web-canary")
        .await;
    cluster.start_controller();
    cluster
        .create_rollout(rollout_manifest("web", 2, gated_canary(&url)))
        .await;
    let invalid = cluster
        .wait_rollout("web", "InvalidSpec for the missing template", 20, |r| {
            r.status
                .as_ref()
                .and_then(|s| s.condition("InvalidSpec"))
                .is_some()
        })
        .await;
    let condition = invalid
        .status
        .unwrap()
        .condition("InvalidSpec")
        .cloned()
        .unwrap();
    assert_eq!(
        condition.message,
        "The Rollout \"web\" is invalid: spec.strategy.canary.steps[1].analysis: \
         AnalysisTemplate \"smoke\" not found"
    );
    assert!(cluster.replica_sets().await.is_empty(), "nothing created");
    create_templates(&cluster).await;
    cluster.wait_healthy("web", 30).await;
}

/// Background analysis from step 1 with a metric that measures until terminated.
fn background_canary(url: &str) -> Value {
    json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "scaleDownDelaySeconds": 1,
        "trafficRouting": {"istio": {"virtualService": {"name": "web-vsvc", "routes": ["primary"]}}},
        "analysis": {
            "templates": [{"templateName": "smoke-forever"}],
            "startingStep": 1,
            "args": [{"name": "url", "value": url}]
        },
        "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]
    })
}

async fn background_cluster() -> (Cluster, Health) {
    let (cluster, health, _) = analysed_cluster(true, 4, background_canary).await;
    (cluster, health)
}

fn paused_by(rollout: &ramp_api::rollout::Rollout, reason: &str) -> bool {
    rollout
        .status
        .as_ref()
        .and_then(|s| s.pause_conditions.as_ref())
        .is_some_and(|p| p.iter().any(|c| c.reason == reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_analysis_runs_from_its_step_and_is_terminated_by_the_promotion() {
    let (cluster, _health) = background_cluster().await;
    assert!(
        runs(&cluster)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no analysis on the initial deploy"
    );
    let checkpoint = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout(
            "web",
            "paused at step 2 with the background run measuring",
            30,
            |r| {
                paused_by(r, "CanaryPauseStep")
                    && r.status
                        .as_ref()
                        .and_then(|s| s.canary.as_ref())
                        .and_then(|c| c.current_background_analysis_run_status.as_ref())
                        .is_some_and(|run| run.status == "Running")
            },
        )
        .await;
    let hash = paused.status.clone().unwrap().current_pod_hash.unwrap();
    let name = format!("web-{hash}-2");
    // Created once the rollout reached step index 1 (after 20 % was written).
    let writes = controller_writes(&cluster.sim, checkpoint);
    let summaries: Vec<String> = writes.iter().map(LoggedRequest::summary).collect();
    assert_eq!(
        run_writes(&writes),
        vec![format!("create {name}")],
        "{summaries:#?}"
    );
    let labels = runs(&cluster)
        .get(&name)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap();
    assert_eq!(labels["rollout-type"], "Background");
    assert!(!labels.contains_key("step-index"));

    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    cluster.wait_healthy("web", 30).await;
    let run = eventually(
        "the background run ends after its termination",
        10,
        || async {
            runs(&cluster)
                .get(&name)
                .await
                .ok()
                .filter(|r| r.status.as_ref().is_some_and(|s| s.phase == "Successful"))
        },
    )
    .await;
    assert_eq!(run.spec.terminate, Some(true));
    let writes = controller_writes(&cluster.sim, checkpoint);
    assert_eq!(
        run_writes(&writes),
        vec![
            format!("create {name}"),
            format!("patch {name} {}", json!({"spec": {"terminate": true}})),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconclusive_background_run_pauses_and_promote_starts_a_fresh_one() {
    let (cluster, health) = background_cluster().await;
    health.answer(json!("unknown"));
    cluster.set_image("web", "web:v2").await;
    let paused = cluster
        .wait_rollout("web", "paused by the Inconclusive run", 30, |r| {
            paused_by(r, "InconclusiveAnalysisRun")
        })
        .await;
    let status = paused.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Paused"));
    let name = format!("web-{}-2", status.current_pod_hash.clone().unwrap());
    assert_eq!(
        runs(&cluster)
            .get(&name)
            .await
            .unwrap()
            .status
            .unwrap()
            .phase,
        "Inconclusive"
    );

    // The canary is fine after all: promote (as the plugin does) and the update finishes
    // under a fresh background run.
    health.answer(json!(true));
    cluster
        .patch_status(
            "web",
            json!({"pauseConditions": null, "controllerPause": false}),
        )
        .await;
    let fresh = format!("{name}.1");
    eventually("a fresh background run", 20, || async {
        runs(&cluster).get(&fresh).await.ok()
    })
    .await;
    // The rollout still stops at its own pause step, then completes.
    cluster
        .wait_rollout("web", "at the pause step", 30, |r| {
            paused_by(r, "CanaryPauseStep")
        })
        .await;
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    cluster.wait_healthy("web", 30).await;
    let old = runs(&cluster).get(&name).await.unwrap();
    assert_eq!(
        old.spec.terminate,
        Some(true),
        "the Inconclusive run was retired"
    );
}
