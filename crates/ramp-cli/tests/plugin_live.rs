//! The real `kubectl-ramp` binary against a cluster of either tier (ramp-sim, or the real
//! control plane) with the Rollout and AnalysisRun controllers running in-process: a canary
//! release through an Istio host split and an analysis step, an abort / retry / full promotion
//! / undo cycle, a blue-green release, and `get --watch` following the controller. Each
//! command's writes are compared with the upstream plugin's (§6) in the request log (the sim's,
//! or the real server's audit log), the controller's reaction is read back from the objects,
//! and `get rollout` / `history` are snapshotted once the cluster has settled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod live_support;

use axum::Router;
use axum::routing::get;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, PostParams};
use live_support::*;
use pretty_assertions::assert_eq;
use ramp_api::analysis::{AnalysisRun, AnalysisTemplate};
use ramp_api::rollout::{Rollout, RolloutStatus};
use ramp_sim::{LoggedRequest, Verb};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

const VSVC: &str = "web-vsvc";
const STABLE_SVC: &str = "web-stable";
const CANARY_SVC: &str = "web-canary";

/// An HTTP endpoint that always answers `{"ok": true}`: the analysis metric passes.
async fn healthy_endpoint() -> String {
    let app = Router::new().route("/health", get(|| async { axum::Json(json!({"ok": true})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}/health")
}

/// Two measurements one second apart, both `true`.
async fn create_smoke_template(cluster: &LiveCluster) {
    let template: AnalysisTemplate = typed(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "smoke", "namespace": ns()},
        "spec": {
            "args": [{"name": "url"}],
            "metrics": [{
                "name": "smoke",
                "interval": "1s",
                "count": 2,
                "failureLimit": 0,
                "successCondition": "result == true",
                "failureCondition": "result == false",
                "provider": {"web": {"url": "{{args.url}}", "jsonPath": "{$.ok}"}}
            }]
        }
    }));
    Api::<AnalysisTemplate>::namespaced(cluster.client.clone(), ns())
        .create(&PostParams::default(), &template)
        .await
        .expect("template created");
}

/// `web:v1` on 3 replicas, canary through the Istio host split: setWeight 20 → pause {} →
/// analysis → setWeight 60 → pause 1s. Rolling back to the revision before the stable one
/// skips the steps (`rollbackWindow`).
fn canary_rollout(url: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": ns()},
        "spec": {
            "replicas": 3,
            "revisionHistoryLimit": 3,
            "rollbackWindow": {"revisions": 1},
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:v1"}]}
            },
            "strategy": {"canary": {
                "canaryService": CANARY_SVC,
                "stableService": STABLE_SVC,
                "scaleDownDelaySeconds": 1,
                "trafficRouting": {"istio": {"virtualService": {"name": VSVC, "routes": ["primary"]}}},
                "steps": [
                    {"setWeight": 20},
                    {"pause": {}},
                    {"analysis": {
                        "templates": [{"templateName": "smoke"}],
                        "args": [{"name": "url", "value": url}]
                    }},
                    {"setWeight": 60},
                    {"pause": {"duration": "1s"}}
                ]
            }}
        }
    })
}

/// A cluster running `web:v1` Healthy behind the VirtualService, with the analysis endpoint.
async fn canary_cluster() -> LiveCluster {
    let url = healthy_endpoint().await;
    let cluster = LiveCluster::start().await;
    cluster
        .create_services(&[STABLE_SVC, CANARY_SVC], "web")
        .await;
    cluster
        .create_virtual_service(VSVC, STABLE_SVC, CANARY_SVC)
        .await;
    create_smoke_template(&cluster).await;
    cluster.create_rollout(canary_rollout(&url)).await;
    cluster
        .wait_settled("web", "web:v1 deployed and Healthy", 20, |r| {
            phase(r) == "Healthy" && fully_promoted(r)
        })
        .await;
    cluster
}

fn status(rollout: &Rollout) -> RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

fn phase(rollout: &Rollout) -> String {
    status(rollout).phase.unwrap_or_default()
}

fn fully_promoted(rollout: &Rollout) -> bool {
    let s = status(rollout);
    s.current_pod_hash.is_some() && s.current_pod_hash == s.stable_rs
}

fn hash_of(rs: &k8s_openapi::api::apps::v1::ReplicaSet) -> String {
    rs.metadata.labels.as_ref().unwrap()["rollouts-pod-template-hash"].clone()
}

/// Paused by the `pause {}` step (index 1) of an update not yet promoted.
fn paused_at_step_1(rollout: &Rollout) -> bool {
    let s = status(rollout);
    phase(rollout) == "Paused"
        && s.current_step_index == Some(1)
        && s.pause_conditions
            .iter()
            .flatten()
            .any(|c| c.reason == "CanaryPauseStep")
        && !fully_promoted(rollout)
}

fn system_time(t: k8s_openapi::jiff::Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(t.as_millisecond()).unwrap())
}

/// `set image` updates the whole rollout (as upstream's GET + Update does) with only the
/// container's image changed.
async fn set_image(cluster: &LiveCluster, rollout: &str, container_image: &str, image: &str) {
    let before = serde_json::to_value(cluster.rollout(rollout).await.spec).unwrap();
    let writes = cluster
        .command_writes(&["set", "image", rollout, container_image])
        .await;
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let (verb, resource, patch_type, body) = &writes[0];
    assert_eq!(
        (verb, resource.as_str(), patch_type),
        (&Verb::Update, "rollouts", &None)
    );
    let mut expected = before;
    expected["template"]["spec"]["containers"][0]["image"] = json!(image);
    assert_eq!(body["spec"], expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_release_with_an_analysis_step_under_the_live_controller() {
    let cluster = canary_cluster().await;
    let v1 = cluster.replica_set_of("web", "web:v1").await;
    let start = cluster.request_log().len();

    // set image starts the update; the controller sends 20 % to the canary and pauses.
    set_image(&cluster, "web", "web=web:v2", "web:v2").await;
    let paused = cluster
        .wait_settled("web", "paused at the pause {} step", 20, paused_at_step_1)
        .await;
    let v2 = cluster.replica_set_of("web", "web:v2").await;
    assert_eq!(status(&paused).current_pod_hash, Some(hash_of(&v2)));
    assert_eq!(status(&paused).stable_rs, Some(hash_of(&v1)));
    assert_eq!(cluster.route_weights(VSVC).await, (80, 20));
    insta::assert_snapshot!("live_canary_1_paused", cluster.get_tree("web").await);

    // promote clears the pause condition; the controller starts the analysis step's run.
    let checkpoint = cluster.request_log().len();
    let output = cluster.run(&["promote", "web"]).await;
    assert!(
        output.status.success(),
        "promote failed: {}",
        stderr(&output)
    );
    let promoted = cluster.request_log().len();
    // `status` follows the release from here, printing each change, until Healthy. It starts
    // before the promote's writes are read (that waits for the log to settle, which can take
    // longer than the analysis and the timed pause after it on a loaded machine).
    let following = {
        let mut cmd = cluster.plugin(&["status", "web", "--timeout", "30s"]);
        tokio::task::spawn_blocking(move || cmd.output().expect("the plugin runs"))
    };
    assert_eq!(
        cluster.plugin_writes(checkpoint, promoted),
        vec![merge_patch(
            "rollouts/status",
            json!({"status": {"pauseConditions": null}})
        )]
    );
    let run_name = format!("web-{}-2-2", hash_of(&v2));
    let runs: Api<AnalysisRun> = Api::namespaced(cluster.client.clone(), ns());
    let run = eventually("the analysis step's run succeeded", 20, || {
        let runs = runs.clone();
        let run_name = run_name.clone();
        async move {
            runs.get(&run_name)
                .await
                .ok()
                .filter(|r| r.status.as_ref().is_some_and(|s| s.phase == "Successful"))
        }
    })
    .await;
    // The succeeded run shows in the tree with its metric's measurements.
    let tree = eventually("the tree shows the successful run", 20, || async {
        let output = cluster.run(&["get", "rollout", "web"]).await;
        let text = stdout(&output);
        text.lines()
            .any(|l| l.contains(&run_name) && l.contains("AnalysisRun") && l.contains("Successful"))
            .then_some(text)
    })
    .await;
    let metric = tree
        .lines()
        .find(|l| l.contains("smoke") && l.contains("Metric"))
        .unwrap_or_else(|| panic!("no metric row in:\n{tree}"));
    assert!(
        metric.contains("Successful") && metric.contains("successful:2"),
        "{metric}"
    );

    cluster
        .wait_settled("web", "web:v2 promoted and Healthy", 30, |r| {
            phase(r) == "Healthy"
                && fully_promoted(r)
                && status(r).current_pod_hash == Some(hash_of(&v2))
        })
        .await;
    // The old ReplicaSet is scaled down once the delay passed.
    eventually("web:v1 scaled to 0", 20, || async {
        let v1 = cluster.replica_set_of("web", "web:v1").await;
        (v1.spec.replicas == Some(0)).then_some(())
    })
    .await;
    cluster
        .wait_settled("web", "pods of web:v1 gone", 20, |_| true)
        .await;
    insta::assert_snapshot!("live_canary_2_promoted", cluster.get_tree("web").await);

    // The controller's reaction, in order: the run is created only after promote, and 60 %
    // waits for its verdict.
    let log: Vec<LoggedRequest> = cluster
        .request_log()
        .since_settled(start, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(|w| w.succeeded())
        .collect();
    let summaries: Vec<String> = log.iter().map(LoggedRequest::summary).collect();
    let promoted_at = log
        .iter()
        .position(|w| {
            w.resource == "rollouts"
                && w.subresource.as_deref() == Some("status")
                && w.body == Some(json!({"status": {"pauseConditions": null}}))
        })
        .expect("promote logged");
    let created_at = log
        .iter()
        .position(|w| w.resource == "analysisruns" && w.verb == Verb::Create)
        .unwrap_or_else(|| panic!("no run created: {summaries:#?}"));
    let sixty_at =
        log.iter()
            .position(|w| {
                w.resource == "virtualservices"
                    && w.body.as_ref().is_some_and(|b| {
                        b.as_array().into_iter().flatten().any(|op| {
                            op["path"] == "/spec/http/0/route/1/weight" && op["value"] == 60
                        })
                    })
            })
            .unwrap_or_else(|| panic!("60 % never written: {summaries:#?}"));
    assert!(
        promoted_at < created_at && created_at < sixty_at,
        "{summaries:#?}"
    );
    let completed = run.status.unwrap().completed_at.unwrap().0;
    assert!(
        system_time(completed) <= log[sixty_at].time + Duration::from_millis(1),
        "60 % was written before the run completed"
    );
    assert_eq!(
        cluster.canary_weight_writes(VSVC, start),
        vec![20, 60, 100, 0]
    );
    assert_eq!(cluster.route_weights(VSVC).await, (100, 0));

    let followed = following.await.unwrap();
    assert_eq!(followed.status.code(), Some(0), "{}", stderr(&followed));
    let lines: Vec<String> = stdout(&followed).lines().map(str::to_owned).collect();
    assert!(
        lines.len() >= 2 && lines.last().is_some_and(|l| l == "Healthy"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "Paused - CanaryPauseStep"),
        "the timed pause was reported: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_retry_full_promotion_and_undo_under_the_live_controller() {
    let cluster = canary_cluster().await;
    let v1 = cluster.replica_set_of("web", "web:v1").await;
    set_image(&cluster, "web", "web=web:v2", "web:v2").await;
    cluster
        .wait_rollout("web", "paused at the pause {} step", 20, paused_at_step_1)
        .await;
    assert_eq!(cluster.route_weights(VSVC).await, (80, 20));

    // abort: traffic goes back to stable at once and the rollout is Degraded.
    let checkpoint = cluster.request_log().len();
    let writes = cluster.command_writes(&["abort", "web"]).await;
    assert_eq!(
        writes,
        vec![merge_patch(
            "rollouts/status",
            json!({"status": {"abort": true}})
        )]
    );
    cluster
        .wait_rollout("web", "Degraded after the abort", 20, |r| {
            phase(r) == "Degraded" && status(r).abort == Some(true)
        })
        .await;
    eventually("canary weight back to 0", 20, || async {
        (cluster.route_weights(VSVC).await == (100, 0)).then_some(())
    })
    .await;
    assert_eq!(cluster.canary_weight_writes(VSVC, checkpoint), vec![0]);
    let output = cluster.run(&["status", "web", "--timeout", "10s"]).await;
    assert_eq!(output.status.code(), Some(1), "a degraded rollout exits 1");
    assert!(
        stdout(&output).starts_with("Degraded - RolloutAborted: "),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).starts_with("error: the rollout is in a degraded state with message: "),
        "{}",
        stderr(&output)
    );
    let output = cluster.run(&["history", "web"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    insta::assert_snapshot!(
        "live_history_aborted",
        cluster.normalise("web", &stdout(&output)).await
    );

    // retry: the update starts over from the first step.
    let checkpoint = cluster.request_log().len();
    let writes = cluster.command_writes(&["retry", "rollout", "web"]).await;
    assert_eq!(
        writes,
        vec![merge_patch(
            "rollouts/status",
            json!({"status": {"abort": false}})
        )]
    );
    cluster
        .wait_rollout("web", "paused again after the retry", 20, |r| {
            paused_at_step_1(r) && status(r).abort != Some(true)
        })
        .await;
    assert_eq!(cluster.canary_weight_writes(VSVC, checkpoint), vec![20]);
    assert_eq!(cluster.route_weights(VSVC).await, (80, 20));

    // promote --full: straight to 100 %, skipping the analysis and the remaining steps.
    let checkpoint = cluster.request_log().len();
    let writes = cluster.command_writes(&["promote", "web", "--full"]).await;
    assert_eq!(
        writes,
        vec![merge_patch(
            "rollouts/status",
            json!({"status": {"promoteFull": true}})
        )]
    );
    let v2 = cluster.replica_set_of("web", "web:v2").await;
    cluster
        .wait_rollout("web", "web:v2 fully promoted and Healthy", 30, |r| {
            phase(r) == "Healthy"
                && fully_promoted(r)
                && status(r).current_pod_hash == Some(hash_of(&v2))
        })
        .await;
    let runs: Api<AnalysisRun> = Api::namespaced(cluster.client.clone(), ns());
    assert!(
        runs.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "promote --full skipped the analysis step"
    );
    // The canary's share goes back to 0 once the stable ReplicaSet is the new one.
    let weights = cluster.canary_weight_writes(VSVC, checkpoint);
    assert_eq!(weights.last(), Some(&0), "{weights:?}");
    assert!(
        !weights.contains(&60),
        "the setWeight 60 step was not skipped: {weights:?}"
    );
    assert_eq!(cluster.route_weights(VSVC).await, (100, 0));
    let output = cluster.run(&["status", "web", "--timeout", "10s"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "Healthy\n");

    // undo to revision 1: the template goes back to v1's and, within the rollback window,
    // the controller goes straight back to v1's ReplicaSet without the steps.
    // As upstream's, the template written is v1's ReplicaSet's as stored, its hash label
    // removed: with the fields the real API server defaults in a ReplicaSet's pod template,
    // which the controller matches to v1's all the same.
    let mut v1_template = serde_json::to_value(&v1.spec.template).unwrap();
    v1_template["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("rollouts-pod-template-hash");
    assert_eq!(v1_template["metadata"], json!({"labels": {"app": "web"}}));
    assert_eq!(
        v1_template["spec"]["containers"][0]["image"],
        json!("web:v1")
    );
    let checkpoint = cluster.request_log().len();
    let writes = cluster
        .command_writes(&["undo", "web", "--to-revision", "1"])
        .await;
    assert_eq!(
        writes,
        vec![(
            Verb::Patch,
            "rollouts".to_owned(),
            Some("json".to_owned()),
            json!([{"op": "replace", "path": "/spec/template", "value": v1_template}])
        )]
    );
    let rolled_back = cluster
        .wait_settled("web", "rolled back to web:v1 and Healthy", 30, |r| {
            phase(r) == "Healthy"
                && fully_promoted(r)
                && status(r).current_pod_hash == Some(hash_of(&v1))
        })
        .await;
    assert_eq!(status(&rolled_back).stable_rs, Some(hash_of(&v1)));
    // Fast: the steps were skipped — no first-step weight, no pause, no analysis.
    let weights = cluster.canary_weight_writes(VSVC, checkpoint);
    assert!(
        !weights.contains(&20),
        "the steps were not skipped: {weights:?}"
    );
    let phases: Vec<String> = cluster
        .request_log()
        .since_settled(checkpoint, std::time::Duration::from_secs(2))
        .iter()
        .filter(|w| w.succeeded() && w.resource == "rollouts")
        .filter_map(|w| {
            w.body.as_ref()?["status"]["phase"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        !phases.iter().any(|p| p == "Paused"),
        "the rollback paused: {phases:?}"
    );
    assert!(
        runs.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "the rollback ran the analysis step"
    );
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), ns());
    let notes: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("SkipSteps"))
        .filter_map(|e| e.note)
        .collect();
    assert_eq!(
        notes,
        vec!["Rollback to stable ReplicaSets within RollbackWindow".to_owned()]
    );
    assert_eq!(cluster.route_weights(VSVC).await, (100, 0));
    let v1_now = cluster.replica_set_of("web", "web:v1").await;
    assert_eq!(
        v1_now.metadata.name, v1.metadata.name,
        "v1's ReplicaSet is reused"
    );
    assert_eq!(
        v1_now.metadata.annotations.unwrap()["rollout.argoproj.io/revision"],
        "3"
    );

    let output = cluster.run(&["history", "web"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    insta::assert_snapshot!(
        "live_history_after_undo",
        cluster.normalise("web", &stdout(&output)).await
    );
}

const ACTIVE_SVC: &str = "shop-active";
const PREVIEW_SVC: &str = "shop-preview";

fn blue_green_rollout() -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "shop", "namespace": ns()},
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {
                "metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "shop", "image": "shop:blue"}]}
            },
            "strategy": {"blueGreen": {
                "activeService": ACTIVE_SVC,
                "previewService": PREVIEW_SVC,
                "autoPromotionEnabled": false,
                "scaleDownDelaySeconds": 1
            }}
        }
    })
}

fn selected_hash(selector: &Value) -> Option<String> {
    selector["rollouts-pod-template-hash"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_release_under_the_live_controller() {
    let cluster = LiveCluster::start().await;
    cluster
        .create_services(&[ACTIVE_SVC, PREVIEW_SVC], "shop")
        .await;
    cluster.create_rollout(blue_green_rollout()).await;
    cluster
        .wait_settled("shop", "shop:blue deployed and Healthy", 20, |r| {
            phase(r) == "Healthy" && fully_promoted(r)
        })
        .await;
    let blue = hash_of(&cluster.replica_set_of("shop", "shop:blue").await);

    set_image(&cluster, "shop", "shop=shop:green", "shop:green").await;
    let paused = cluster
        .wait_settled("shop", "paused with green in preview", 20, |r| {
            let s = status(r);
            let preview = s
                .blue_green
                .as_ref()
                .and_then(|b| b.preview_selector.clone());
            phase(r) == "Paused"
                && s.pause_conditions
                    .iter()
                    .flatten()
                    .any(|c| c.reason == "BlueGreenPause")
                && preview.is_some()
                && preview == s.current_pod_hash
        })
        .await;
    let green = hash_of(&cluster.replica_set_of("shop", "shop:green").await);
    assert_eq!(status(&paused).current_pod_hash, Some(green.clone()));
    assert_eq!(
        selected_hash(&cluster.service_selector(PREVIEW_SVC).await),
        Some(green.clone())
    );
    assert_eq!(
        selected_hash(&cluster.service_selector(ACTIVE_SVC).await),
        Some(blue.clone())
    );
    insta::assert_snapshot!("live_blue_green_1_preview", cluster.get_tree("shop").await);

    let writes = cluster.command_writes(&["promote", "shop"]).await;
    assert_eq!(
        writes,
        vec![merge_patch(
            "rollouts/status",
            json!({"status": {"pauseConditions": null}})
        )]
    );
    eventually("the active service switched to green", 20, || async {
        (selected_hash(&cluster.service_selector(ACTIVE_SVC).await) == Some(green.clone()))
            .then_some(())
    })
    .await;
    cluster
        .wait_settled("shop", "green active and Healthy", 20, |r| {
            phase(r) == "Healthy"
                && fully_promoted(r)
                && status(r).current_pod_hash == Some(green.clone())
        })
        .await;
    eventually("blue scaled to 0 after the delay", 20, || async {
        let blue = cluster.replica_set_of("shop", "shop:blue").await;
        (blue.spec.replicas == Some(0)).then_some(())
    })
    .await;
    cluster
        .wait_settled("shop", "blue's pods gone", 20, |_| true)
        .await;
    insta::assert_snapshot!("live_blue_green_2_active", cluster.get_tree("shop").await);

    let output = cluster.run(&["status", "shop", "--watch=false"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "Healthy\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_redraws_as_the_controller_progresses() {
    let cluster = LiveCluster::start().await;
    // A basic canary (no traffic routing) of 2 replicas: 50 %, then a pause.
    let mut manifest = canary_rollout("unused");
    manifest["spec"]["replicas"] = json!(2);
    manifest["spec"]["strategy"] = json!({"canary": {"steps": [
        {"setWeight": 50},
        {"pause": {}}
    ]}});
    cluster.create_rollout(manifest).await;
    cluster
        .wait_settled("web", "web:v1 deployed and Healthy", 20, |r| {
            phase(r) == "Healthy" && fully_promoted(r)
        })
        .await;

    let watching = Watching::spawn(&cluster, &["get", "rollout", "web", "--watch"]);
    let watching = tokio::task::spawn_blocking(move || {
        let mut watching = watching;
        watching.wait_for("the first frame, Healthy", 20, |l| {
            l.starts_with("Status:") && l.ends_with("Healthy")
        });
        watching
    })
    .await
    .unwrap();
    let frames_before = watching.frames().len();

    set_image(&cluster, "web", "web=web:v2", "web:v2").await;
    let mut watching = tokio::task::spawn_blocking(move || {
        let mut watching = watching;
        watching.wait_for("a frame of the paused rollout", 20, |l| {
            l.starts_with("Status:") && l.ends_with("Paused")
        });
        watching.wait_for("the paused frame at step 1 of 2", 20, |l| {
            l.trim() == "Step:          1/2"
        });
        watching
    })
    .await
    .unwrap();
    // Interrupted as with Ctrl-C; `interrupt` fails the test if the process lingers.
    let watching = tokio::task::spawn_blocking(move || {
        watching.interrupt();
        watching
    })
    .await
    .unwrap();

    let frames = watching.frames();
    let during_update: Vec<&String> = frames[frames_before..].iter().collect();
    assert!(
        during_update.len() >= 2,
        "expected at least two redraws during the update, got:\n{}",
        frames.join("\n----\n")
    );
    assert!(
        frames.windows(2).all(|pair| pair[0] != pair[1]),
        "a redraw repeated the previous frame"
    );
    assert!(
        frames[..frames_before]
            .iter()
            .all(|f| f.contains("Status:          Healthy")),
        "{}",
        frames.join("\n----\n")
    );
    assert!(
        during_update
            .iter()
            .any(|f| f.contains("Images:          web:v2 (canary)")),
        "{}",
        frames.join("\n----\n")
    );
    assert!(
        during_update
            .last()
            .is_some_and(|f| f.contains("Status:          Paused")),
        "{}",
        frames.join("\n----\n")
    );
}
