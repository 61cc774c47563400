//! The workload simulators through the real API: ReplicaSets get pods that become ready,
//! scale both ways (newest first down), honour minReadySeconds and the `sim.ramp.dev/*` failure
//! annotations; Jobs succeed or fail; Deployments roll out a new template.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use ramp_sim::{FaultError, FaultTarget, Sim, SimConfig, SimHandle, Verb};
use serde_json::{Value, json};

async fn sim() -> SimHandle {
    Sim::start(SimConfig {
        traffic_enabled: false,
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

/// Polls `check` until it returns `Some`, failing with `what` after `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn replica_set(
    name: &str,
    replicas: i32,
    annotations: Value,
    min_ready_seconds: i32,
) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready_seconds,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}
            }
        }
    }))
    .expect("valid replicaset")
}

async fn owned_pods(sim: &SimHandle, rs: &ReplicaSet) -> Vec<Pod> {
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    Api::<Pod>::namespaced(sim.client(), "default")
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn wait_rs(
    sim: &SimHandle,
    name: &str,
    what: &str,
    within: Duration,
    check: impl Fn(&ReplicaSet) -> bool,
) -> ReplicaSet {
    let api = Api::<ReplicaSet>::namespaced(sim.client(), "default");
    eventually(what, within, || {
        let api = api.clone();
        let check = &check;
        async move { api.get(name).await.ok().filter(|rs| check(rs)) }
    })
    .await
}

fn counts(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

#[tokio::test]
async fn replica_set_gets_ready_pods_and_a_status_like_the_real_controller() {
    let sim = sim().await;
    let api = Api::<ReplicaSet>::namespaced(sim.client(), "default");
    let created = api
        .create(&PostParams::default(), &replica_set("web", 2, json!({}), 0))
        .await
        .expect("create replicaset");
    let rs = wait_rs(
        &sim,
        "web",
        "2 ready and available replicas",
        Duration::from_secs(5),
        |rs| counts(rs) == (2, 2, 2),
    )
    .await;
    let status = rs.status.clone().unwrap_or_default();
    assert_eq!(status.observed_generation, created.metadata.generation);
    assert_eq!(status.fully_labeled_replicas, Some(2));
    let pods = owned_pods(&sim, &rs).await;
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        assert!(
            pod.metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with("web-")
        );
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("web")
        );
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ReplicaSet", "web")
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        let status = pod.status.as_ref().expect("pod status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.pod_ip.is_some() && status.start_time.is_some());
        let types: BTreeSet<&str> = status
            .conditions
            .iter()
            .flatten()
            .filter(|c| c.status == "True")
            .map(|c| c.type_.as_str())
            .collect();
        assert!(
            types.contains("Ready") && types.contains("ContainersReady"),
            "{types:?}"
        );
        let container = &status
            .container_statuses
            .as_ref()
            .expect("container statuses")[0];
        assert!(container.ready);
        assert!(
            container
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .is_some()
        );
    }
}

#[tokio::test]
async fn scale_down_deletes_the_newest_pods_first() {
    let sim = sim().await;
    let api = Api::<ReplicaSet>::namespaced(sim.client(), "default");
    api.create(
        &PostParams::default(),
        &replica_set("scale", 1, json!({}), 0),
    )
    .await
    .expect("create replicaset");
    let rs = wait_rs(
        &sim,
        "scale",
        "1 ready replica",
        Duration::from_secs(5),
        |rs| counts(rs).1 == 1,
    )
    .await;
    let first = owned_pods(&sim, &rs).await[0].metadata.name.clone();

    let scale = |n: i32| json!({"spec": {"replicas": n}});
    api.patch("scale", &PatchParams::default(), &Patch::Merge(scale(3)))
        .await
        .expect("scale up");
    let rs = wait_rs(
        &sim,
        "scale",
        "3 ready replicas",
        Duration::from_secs(5),
        |rs| counts(rs) == (3, 3, 3),
    )
    .await;
    assert_eq!(owned_pods(&sim, &rs).await.len(), 3);

    api.patch("scale", &PatchParams::default(), &Patch::Merge(scale(1)))
        .await
        .expect("scale down");
    let rs = wait_rs(
        &sim,
        "scale",
        "1 replica after scale-down",
        Duration::from_secs(5),
        |rs| {
            counts(rs) == (1, 1, 1)
                && rs.status.as_ref().and_then(|s| s.observed_generation) == rs.metadata.generation
        },
    )
    .await;
    let pods = eventually("only one pod left", Duration::from_secs(5), || async {
        let pods = owned_pods(&sim, &rs).await;
        (pods.len() == 1).then_some(pods)
    })
    .await;
    assert_eq!(pods[0].metadata.name, first, "the oldest pod is kept");
}

#[tokio::test]
async fn pods_count_as_available_only_after_min_ready_seconds() {
    let sim = sim().await;
    let api = Api::<ReplicaSet>::namespaced(sim.client(), "default");
    api.create(
        &PostParams::default(),
        &replica_set("slow", 1, json!({}), 2),
    )
    .await
    .expect("create replicaset");
    let ready = wait_rs(
        &sim,
        "slow",
        "1 ready replica",
        Duration::from_secs(5),
        |rs| counts(rs).1 == 1,
    )
    .await;
    let ready_at = Instant::now();
    assert_eq!(counts(&ready).2, 0, "not available the moment it is ready");
    wait_rs(
        &sim,
        "slow",
        "1 available replica",
        Duration::from_secs(5),
        |rs| counts(rs).2 == 1,
    )
    .await;
    // Ready times have second precision, so availability comes 1-2 s after readiness.
    assert!(
        ready_at.elapsed() >= Duration::from_millis(900),
        "available after {:?}",
        ready_at.elapsed()
    );
}

async fn only_pod(sim: &SimHandle, name: &str, annotations: Value) -> (ReplicaSet, Api<Pod>) {
    let api = Api::<ReplicaSet>::namespaced(sim.client(), "default");
    let rs = api
        .create(
            &PostParams::default(),
            &replica_set(name, 1, annotations, 0),
        )
        .await
        .expect("create replicaset");
    (rs, Api::namespaced(sim.client(), "default"))
}

fn waiting_reason(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

#[tokio::test]
async fn ready_after_annotation_delays_readiness() {
    let sim = sim().await;
    let started = Instant::now();
    only_pod(&sim, "late", json!({"sim.ramp.dev/ready-after": "1500ms"})).await;
    wait_rs(
        &sim,
        "late",
        "1 ready replica",
        Duration::from_secs(5),
        |rs| counts(rs).1 == 1,
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "ready after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn never_ready_pod_runs_without_becoming_ready() {
    let sim = sim().await;
    let (rs, _) = only_pod(&sim, "unready", json!({"sim.ramp.dev/never-ready": "true"})).await;
    let pod = eventually("pod running", Duration::from_secs(5), || async {
        owned_pods(&sim, &rs)
            .await
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    assert!(!is_ready(&pod));
    let container = &pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .expect("statuses")[0];
    assert!(
        container
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .is_some()
    );
    assert!(!container.ready);
    let rs = wait_rs(
        &sim,
        "unready",
        "status with 1 replica",
        Duration::from_secs(5),
        |rs| counts(rs).0 == 1,
    )
    .await;
    assert_eq!(counts(&rs), (1, 0, 0));
}

#[tokio::test]
async fn crash_looping_pod_restarts_and_backs_off() {
    let sim = sim().await;
    let (rs, _) = only_pod(&sim, "crashy", json!({"sim.ramp.dev/crash-loop": "true"})).await;
    let pod = eventually("two restarts", Duration::from_secs(6), || async {
        owned_pods(&sim, &rs).await.into_iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| cs[0].restart_count >= 2)
        })
    })
    .await;
    assert_eq!(waiting_reason(&pod).as_deref(), Some("CrashLoopBackOff"));
    assert!(!is_ready(&pod));
    let last = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .expect("statuses")[0]
        .last_state
        .clone();
    assert_eq!(
        last.and_then(|s| s.terminated).map(|t| t.exit_code),
        Some(1)
    );
}

#[tokio::test]
async fn image_pull_failure_goes_from_err_image_pull_to_back_off() {
    let sim = sim().await;
    let (rs, _) = only_pod(
        &sim,
        "nopull",
        json!({"sim.ramp.dev/image-pull-failure": "true"}),
    )
    .await;
    let pod = eventually("ErrImagePull", Duration::from_secs(5), || async {
        owned_pods(&sim, &rs)
            .await
            .into_iter()
            .find(|p| waiting_reason(p).as_deref() == Some("ErrImagePull"))
    })
    .await;
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    eventually("ImagePullBackOff", Duration::from_secs(5), || async {
        owned_pods(&sim, &rs)
            .await
            .into_iter()
            .find(|p| waiting_reason(p).as_deref() == Some("ImagePullBackOff"))
    })
    .await;
}

fn job(name: &str, annotations: Value, backoff_limit: i32) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "check", "image": "example/check:1"}]}
            }
        }
    }))
    .expect("valid job")
}

async fn wait_job_condition(sim: &SimHandle, name: &str, condition: &str) -> Job {
    let api = Api::<Job>::namespaced(sim.client(), "default");
    eventually(
        &format!("job {name} {condition}"),
        Duration::from_secs(8),
        || {
            let api = api.clone();
            async move {
                api.get(name).await.ok().filter(|j| {
                    j.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c.type_ == condition && c.status == "True")
                        })
                })
            }
        },
    )
    .await
}

#[tokio::test]
async fn job_succeeds_after_its_duration() {
    let sim = sim().await;
    let started = Instant::now();
    Api::<Job>::namespaced(sim.client(), "default")
        .create(
            &PostParams::default(),
            &job(
                "ok",
                json!({"sim.ramp.dev/job-result": "succeed", "sim.ramp.dev/job-duration": "1s"}),
                0,
            ),
        )
        .await
        .expect("create job");
    let done = wait_job_condition(&sim, "ok", "Complete").await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    let status = done.status.expect("status");
    assert_eq!(
        (status.succeeded, status.failed, status.active),
        (Some(1), Some(0), Some(0))
    );
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let pods = Api::<Pod>::namespaced(sim.client(), "default")
        .list(&ListParams::default().labels("job-name=ok"))
        .await
        .expect("list pods");
    assert_eq!(pods.items.len(), 1);
    assert_eq!(
        pods.items[0]
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref()),
        Some("Succeeded")
    );
}

#[tokio::test]
async fn job_fails_once_its_backoff_limit_is_exceeded() {
    let sim = sim().await;
    Api::<Job>::namespaced(sim.client(), "default")
        .create(
            &PostParams::default(),
            &job(
                "bad",
                json!({"sim.ramp.dev/job-result": "fail", "sim.ramp.dev/job-duration": "300ms"}),
                1,
            ),
        )
        .await
        .expect("create job");
    let failed = wait_job_condition(&sim, "bad", "Failed").await;
    let status = failed.status.expect("status");
    assert_eq!((status.succeeded, status.failed), (Some(0), Some(2)));
    assert!(status.completion_time.is_none());
    let reason = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed")
        .and_then(|c| c.reason.clone());
    assert_eq!(reason.as_deref(), Some("BackoffLimitExceeded"));
}

fn deployment(image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": image}]}
            }
        }
    }))
    .expect("valid deployment")
}

#[tokio::test]
async fn deployment_rolls_a_new_template_out_through_replica_sets() {
    let sim = sim().await;
    let deployments = Api::<Deployment>::namespaced(sim.client(), "default");
    deployments
        .create(&PostParams::default(), &deployment("example/api:1"))
        .await
        .expect("create deployment");
    let available = |image: &'static str| {
        let deployments = deployments.clone();
        move || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("api").await.ok()?;
                let s = d.status.clone()?;
                let current = d.spec.template.spec.as_ref()?.containers[0]
                    .image
                    .as_deref()
                    == Some(image);
                (current
                    && s.observed_generation == d.metadata.generation
                    && s.updated_replicas == Some(2)
                    && s.available_replicas == Some(2)
                    && s.replicas == Some(2))
                .then_some(d)
            }
        }
    };
    eventually(
        "first rollout",
        Duration::from_secs(8),
        available("example/api:1"),
    )
    .await;
    deployments
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "example/api:2"}]}}}})),
        )
        .await
        .expect("update template");
    let d = eventually(
        "second rollout",
        Duration::from_secs(10),
        available("example/api:2"),
    )
    .await;
    assert_eq!(
        d.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .map(String::as_str),
        Some("2")
    );
    let replica_sets = Api::<ReplicaSet>::namespaced(sim.client(), "default")
        .list(&ListParams::default())
        .await
        .expect("list replicasets");
    let mut sizes: Vec<(String, i32)> = replica_sets
        .items
        .iter()
        .map(|rs| {
            let revision = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .cloned()
                .unwrap_or_default();
            (revision, rs.spec.replicas.unwrap_or(0))
        })
        .collect();
    sizes.sort();
    assert_eq!(sizes, [("1".to_string(), 0), ("2".to_string(), 2)]);
    for rs in &replica_sets.items {
        let hash = rs
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"))
            .expect("hash label");
        assert!(
            rs.metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .ends_with(&format!("-{hash}"))
        );
    }
}

#[tokio::test]
async fn converges_through_failed_writes_and_cut_watches() {
    let sim = sim().await;
    sim.set_watch_cut_after(Some(Duration::from_millis(700)));
    for verb in [Verb::Create, Verb::Patch, Verb::Delete] {
        sim.add_error_fault(
            FaultTarget::verb_on(verb, "pods"),
            0.3,
            FaultError::Internal,
        );
    }
    sim.add_error_fault(
        FaultTarget::verb_on(Verb::Patch, "replicasets"),
        0.3,
        FaultError::TooManyRequests {
            retry_after_seconds: 1,
        },
    );
    let api = Api::<ReplicaSet>::namespaced(sim.client(), "default");
    api.create(
        &PostParams::default(),
        &replica_set("flaky", 3, json!({}), 0),
    )
    .await
    .expect("create replicaset");
    let rs = wait_rs(
        &sim,
        "flaky",
        "3 ready replicas despite faults",
        Duration::from_secs(15),
        |rs| counts(rs) == (3, 3, 3),
    )
    .await;
    assert_eq!(owned_pods(&sim, &rs).await.len(), 3, "no pod created twice");
    sim.clear_faults();
    api.patch(
        "flaky",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("scale down");
    let rs = wait_rs(&sim, "flaky", "1 replica", Duration::from_secs(10), |rs| {
        counts(rs) == (1, 1, 1)
    })
    .await;
    assert_eq!(owned_pods(&sim, &rs).await.len(), 1);
}
