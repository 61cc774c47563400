//! End to end on ramp-sim: blue-green promotions gated by pre- and post-promotion analysis.
//! The runbook flow measures the preview and active Services with a real Prometheus scraping
//! the sim's traffic; the failure paths use the web provider against an in-test endpoint whose
//! answer the test sets. Assertions read the sim's request log: when each run is created, that
//! the switch waits for the verdicts, and that a failed verdict switches back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;
mod support_prometheus;

use canary_support::*;
use kube::api::{Api, PostParams};
use pretty_assertions::assert_eq;
use ramp_api::analysis::{AnalysisRun, AnalysisTemplate};
use ramp_api::rollout::Rollout;
use ramp_sim::{LoggedRequest, SimConfig, Verb};
use serde_json::{Value, json};
use std::time::Duration;
use support_prometheus::Prometheus;

const ACTIVE: &str = "web-active";
const PREVIEW: &str = "web-preview";
const TEMPLATES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/analysis-templates.yaml"
);

fn manifest(strategy: Value) -> Value {
    let mut blue_green = json!({"activeService": ACTIVE, "previewService": PREVIEW});
    json_patch::merge(&mut blue_green, &strategy);
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": ns()},
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:v1"}]}
            },
            "strategy": {"blueGreen": blue_green}
        }
    })
}

async fn create_template(cluster: &Cluster, template: Value) {
    let template: AnalysisTemplate = serde_json::from_value(template).unwrap();
    Api::<AnalysisTemplate>::namespaced(cluster.client.clone(), ns())
        .create(&PostParams::default(), &template)
        .await
        .expect("template created");
}

fn runs(cluster: &Cluster) -> Api<AnalysisRun> {
    Api::namespaced(cluster.client.clone(), ns())
}

fn status(rollout: &Rollout) -> ramp_api::rollout::RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

/// The controller's writes, as a story: run creations, Service switches (to a hash), scales.
fn story(writes: &[LoggedRequest]) -> Vec<String> {
    writes
        .iter()
        .filter_map(|w| {
            let name = w.name.clone().unwrap_or_default();
            match (w.resource.as_str(), w.verb) {
                ("analysisruns", Verb::Create) => Some(format!(
                    "create run {}",
                    w.body.as_ref()?["metadata"]["name"].as_str()?
                )),
                ("analysisruns", Verb::Patch) if w.field_manager.is_none() => {
                    Some(format!("terminate run {name}"))
                }
                ("services", _) => Some(format!(
                    "{name} -> {}",
                    w.body.as_ref()?["spec"]["selector"]["rollouts-pod-template-hash"].as_str()?
                )),
                ("replicasets", Verb::Patch) if w.subresource.is_none() => {
                    let replicas = w.body.as_ref()?["spec"]["replicas"].as_i64()?;
                    Some(format!("scale {name} {replicas}"))
                }
                _ => None,
            }
        })
        .collect()
}

/// The run's status writes by the AnalysisRun controller, up to the one that completed it.
fn completed_at(writes: &[LoggedRequest], run: &str) -> usize {
    writes
        .iter()
        .position(|w| {
            w.resource == "analysisruns"
                && w.name.as_deref() == Some(run)
                && w.field_manager.is_some()
                && w.body.as_ref().is_some_and(|b| {
                    matches!(
                        b["status"]["phase"].as_str(),
                        Some("Successful" | "Failed" | "Error")
                    )
                })
        })
        .unwrap_or_else(|| panic!("{run} never completed"))
}

fn position(writes: &[LoggedRequest], what: impl Fn(&LoggedRequest) -> bool) -> usize {
    writes.iter().position(what).expect("write present")
}

fn switch_to(service: &'static str, hash: String) -> impl Fn(&LoggedRequest) -> bool {
    move |w| {
        w.resource == "services"
            && w.name.as_deref() == Some(service)
            && w.body.as_ref().is_some_and(|b| {
                b["spec"]["selector"]["rollouts-pod-template-hash"] == hash.as_str()
            })
    }
}

/// Waits until Prometheus holds a scrape of every target (a fresh server answers empty
/// vectors for a few seconds).
async fn wait_scraping(prometheus: &Prometheus) {
    prometheus
        .wait_for_targets(Duration::from_secs(30))
        .await
        .expect("prometheus scrapes the sim");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_flow_preview_checks_manual_promote_switch_verification_then_blue_goes() {
    let mut cluster = Cluster::start_with(SimConfig::default()).await;
    let metrics = cluster.sim.metrics_url().expect("traffic metrics");
    let prometheus = Prometheus::start(&[metrics], Duration::from_secs(1))
        .await
        .expect("prometheus starts");
    wait_scraping(&prometheus).await;
    cluster.create_services(&[ACTIVE, PREVIEW], "web").await;
    // The examples' success-rate gate, measuring whichever Service the analysis names.
    let text = std::fs::read_to_string(TEMPLATES).unwrap();
    let mut template = ramp_api::manifest::parse_stream(&text)
        .unwrap()
        .documents
        .into_iter()
        .find(|d| d["metadata"]["name"] == "success-rate")
        .unwrap();
    template["metadata"]["namespace"] = json!(ns());
    query_test_namespace(&mut template);
    json_patch::merge(
        &mut template["spec"]["metrics"][0],
        &json!({"interval": "1s", "count": 2, "initialDelay": "3s"}),
    );
    create_template(&cluster, template).await;
    cluster.start_controller();
    let gate = |service: &str| {
        json!({
            "templates": [{"templateName": "success-rate"}],
            "args": [
                {"name": "service-name", "value": service},
                {"name": "prometheus-address", "value": prometheus.url()}
            ]
        })
    };
    cluster
        .create_rollout(manifest(json!({
            "autoPromotionEnabled": false,
            "scaleDownDelaySeconds": 2,
            "prePromotionAnalysis": gate(PREVIEW),
            "postPromotionAnalysis": gate(ACTIVE)
        })))
        .await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let blue = status(&v1).stable_rs.unwrap();
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
            "paused for promotion with the pre-promotion run Successful",
            40,
            |r| {
                let s = status(r);
                s.pause_conditions
                    .iter()
                    .flatten()
                    .any(|c| c.reason == "BlueGreenPause")
                    && s.blue_green
                        .as_ref()
                        .and_then(|b| b.pre_promotion_analysis_run_status.as_ref())
                        .is_some_and(|run| run.status == "Successful")
            },
        )
        .await;
    let green = status(&paused).current_pod_hash.unwrap();
    let pre = format!("web-{green}-2-pre");
    let post = format!("web-{green}-2-post");
    assert_eq!(
        runs(&cluster).get(&pre).await.unwrap().spec.args.unwrap()[0]
            .value
            .as_deref(),
        Some(PREVIEW)
    );
    cluster
        .patch_status("web", json!({"pauseConditions": null}))
        .await;
    cluster
        .wait_rollout("web", "v2 stable and v1 scaled down", 40, |r| {
            let s = status(r);
            s.phase.as_deref() == Some("Healthy")
                && s.stable_rs.as_deref() == Some(green.as_str())
                && s.replicas == Some(2)
        })
        .await;
    let writes = controller_writes(&cluster.sim, checkpoint);
    let story = story(&writes);
    let green_rs = format!("web-{green}");
    let blue_rs = format!("web-{blue}");
    assert_eq!(
        story,
        vec![
            format!("scale {green_rs} 2"),
            format!("{PREVIEW} -> {green}"),
            format!("create run {pre}"),
            format!("{ACTIVE} -> {green}"),
            format!("create run {post}"),
            format!("scale {blue_rs} 0"),
        ],
        "{:#?}",
        writes
            .iter()
            .map(LoggedRequest::summary)
            .collect::<Vec<_>>()
    );
    // The switch waited for the pre-promotion verdict, blue waited for the post-promotion one.
    let switched = position(&writes, switch_to(ACTIVE, green.clone()));
    assert!(completed_at(&writes, &pre) < switched);
    let blue_gone = position(&writes, |w| {
        w.resource == "replicasets"
            && w.name.as_deref() == Some(blue_rs.as_str())
            && w.body.as_ref().is_some_and(|b| b["spec"]["replicas"] == 0)
    });
    assert!(completed_at(&writes, &post) < blue_gone);
    for run in [&pre, &post] {
        let run = runs(&cluster).get(run).await.unwrap();
        let status = run.status.unwrap();
        assert_eq!(status.phase, "Successful");
        let values: Vec<String> = status
            .metric_results
            .unwrap()
            .into_iter()
            .flat_map(|m| m.measurements.unwrap_or_default())
            .map(|m| m.value.unwrap_or_default())
            .collect();
        assert_eq!(
            values,
            vec!["[1]", "[1]"],
            "{run:?}",
            run = run.metadata.name
        );
    }
}

/// A blue-green rollout whose gate is the in-test endpoint, at v1 and Healthy.
async fn web_gated(strategy: impl Fn(Value) -> Value) -> (Cluster, Health, String) {
    let health = Health::new(true);
    let url = health_endpoint(health.clone()).await;
    let mut cluster = Cluster::start().await;
    cluster.create_services(&[ACTIVE, PREVIEW], "web").await;
    create_template(
        &cluster,
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "smoke", "namespace": ns()},
            "spec": {"metrics": [{
                "name": "smoke", "interval": "1s", "count": 2, "failureLimit": 0,
                "successCondition": "result == true",
                "provider": {"web": {"url": url, "jsonPath": "{$.ok}"}}
            }]}
        }),
    )
    .await;
    cluster.start_controller();
    let gate = json!({"templates": [{"templateName": "smoke"}]});
    cluster.create_rollout(manifest(strategy(gate))).await;
    let v1 = cluster.wait_healthy("web", 20).await;
    let blue = status(&v1).stable_rs.unwrap();
    (cluster, health, blue)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pre_promotion_analysis_keeps_blue_active_and_a_retry_after_a_fix_promotes() {
    let (cluster, health, blue) =
        web_gated(|gate| json!({"prePromotionAnalysis": gate, "scaleDownDelaySeconds": 1})).await;
    health.answer(json!(false));
    let checkpoint = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let aborted = cluster
        .wait_rollout("web", "aborted by the pre-promotion analysis", 30, |r| {
            status(r).abort == Some(true) && status(r).phase.as_deref() == Some("Degraded")
        })
        .await;
    let s = status(&aborted);
    let green = s.current_pod_hash.clone().unwrap();
    let pre = format!("web-{green}-2-pre");
    assert!(
        s.message
            .unwrap()
            .contains("Blue/green pre-promotion analysis phase failed: Metric \"smoke\""),
    );
    let bg = s.blue_green.unwrap();
    assert_eq!(bg.active_selector.as_deref(), Some(blue.as_str()));
    assert_eq!(bg.preview_selector.as_deref(), Some(green.as_str()));
    let writes = controller_writes(&cluster.sim, checkpoint);
    assert!(
        !writes.iter().any(switch_to(ACTIVE, green.clone())),
        "the active Service never moved"
    );
    let story_so_far = story(&writes);
    assert!(
        story_so_far.contains(&format!("terminate run {pre}")),
        "the failed run is retired: {story_so_far:#?}"
    );

    health.answer(json!(true));
    let checkpoint = cluster.sim.request_log().len();
    cluster.patch_status("web", json!({"abort": false})).await;
    cluster
        .wait_rollout("web", "v2 promoted after the retry", 30, |r| {
            status(r).phase.as_deref() == Some("Healthy")
                && status(r).stable_rs.as_deref() == Some(green.as_str())
        })
        .await;
    let writes = controller_writes(&cluster.sim, checkpoint);
    let story = story(&writes);
    let fresh = format!("{pre}.1");
    let created = story
        .iter()
        .position(|l| *l == format!("create run {fresh}"))
        .expect("a fresh pre-promotion run");
    let switched = story
        .iter()
        .position(|l| *l == format!("{ACTIVE} -> {green}"))
        .expect("the switch");
    assert!(created < switched, "{story:#?}");
    assert!(completed_at(&writes, &fresh) < position(&writes, switch_to(ACTIVE, green)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_post_promotion_analysis_switches_the_active_service_back_to_blue() {
    let (cluster, health, blue) =
        web_gated(|gate| json!({"postPromotionAnalysis": gate, "scaleDownDelaySeconds": 5})).await;
    health.answer(json!(false));
    let checkpoint = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;
    let aborted = cluster
        .wait_rollout("web", "aborted by the post-promotion analysis", 30, |r| {
            status(r).abort == Some(true) && status(r).phase.as_deref() == Some("Degraded")
        })
        .await;
    let s = status(&aborted);
    let green = s.current_pod_hash.clone().unwrap();
    assert_eq!(
        s.stable_rs.as_deref(),
        Some(blue.as_str()),
        "blue stays stable"
    );
    assert!(
        s.message
            .unwrap()
            .contains("Blue/green post-promotion analysis phase failed"),
    );
    eventually("active back on blue", 10, || async {
        let writes = controller_writes(&cluster.sim, checkpoint);
        writes
            .iter()
            .any(switch_to(ACTIVE, blue.clone()))
            .then_some(())
    })
    .await;
    let writes = controller_writes(&cluster.sim, checkpoint);
    let post = format!("web-{green}-2-post");
    let to_green = position(&writes, switch_to(ACTIVE, green.clone()));
    let created = position(&writes, |w| {
        w.resource == "analysisruns" && w.verb == Verb::Create
    });
    let back = position(&writes, switch_to(ACTIVE, blue.clone()));
    assert!(to_green < created, "the run judges the switched Service");
    assert!(
        completed_at(&writes, &post) < back,
        "back only on the verdict"
    );
    let blue_pods = cluster
        .replica_sets()
        .await
        .into_iter()
        .find(|rs| rs.metadata.name.as_deref() == Some(format!("web-{blue}").as_str()))
        .and_then(|rs| rs.status)
        .and_then(|s| s.available_replicas);
    assert_eq!(blue_pods, Some(2), "blue kept its pods for the way back");
}
