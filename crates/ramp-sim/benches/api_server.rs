//! Scale benchmark of the emulated API server (plain timing main, no harness): memory for
//! ~100k objects (10k Rollouts with ReplicaSets, Pods, Services and VirtualServices), the time
//! to list 10k objects, and the time for one write to reach 100 open watches.
//! `RAMP_SIM_BENCH_ROLLOUTS` scales the object count (default 10000).
#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark aborts on any failure.

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use ramp_sim::{Sim, SimConfig};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn dynamic(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    client: &kube::Client,
) -> Api<DynamicObject> {
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(client.clone(), "default", &resource)
}

fn objects_for(i: usize, rollout: &Value) -> Vec<(&'static str, Value)> {
    let name = format!("app-{i}");
    let mut ro = rollout.clone();
    ro["metadata"]["name"] = json!(name);
    let labels = json!({"app": name});
    let pod_spec = json!({"containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]}]});
    let mut out = vec![("rollouts", ro)];
    for hash in ["stable", "canary"] {
        out.push(("replicasets", json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("{name}-{hash}"), "labels": labels},
            "spec": {"replicas": 3, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
        })));
    }
    for p in 0..5 {
        out.push((
            "pods",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-pod-{p}"), "labels": labels}, "spec": pod_spec,
            }),
        ));
    }
    out.push((
        "services",
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        }),
    ));
    out.push(("virtualservices", json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": name},
        "spec": {"hosts": [name], "http": [{"route": [
            {"destination": {"host": name, "subset": "stable"}, "weight": 100},
            {"destination": {"host": name, "subset": "canary"}, "weight": 0}]}]},
    })));
    out
}

#[tokio::main]
async fn main() {
    let Some(upstream) = ramp_sim::compat::argo_rollouts() else {
        return;
    };
    let rollouts: usize = std::env::var("RAMP_SIM_BENCH_ROLLOUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let baseline = rss_mib();
    // The request log is a test aid, not part of the emulated cluster: keep it small here.
    let config = SimConfig {
        request_log_limit: Some(1000),
        ..SimConfig::api_only()
    };
    let sim = Sim::start(config).await.unwrap();
    let client = sim.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(yaml(&upstream.crd("rollout-crd.yaml"))).unwrap(),
    )
    .await
    .unwrap();
    let vs_crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "virtualservices.networking.istio.io"},
        "spec": {"group": "networking.istio.io", "scope": "Namespaced",
            "names": {"plural": "virtualservices", "singular": "virtualservice", "kind": "VirtualService", "listKind": "VirtualServiceList", "shortNames": ["vs"]},
            "versions": [{"name": "v1beta1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
    });
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(vs_crd).unwrap(),
    )
    .await
    .unwrap();
    let apis = [
        (
            "rollouts",
            dynamic("argoproj.io", "v1alpha1", "Rollout", "rollouts", &client),
        ),
        (
            "replicasets",
            dynamic("apps", "v1", "ReplicaSet", "replicasets", &client),
        ),
        ("pods", dynamic("", "v1", "Pod", "pods", &client)),
        (
            "services",
            dynamic("", "v1", "Service", "services", &client),
        ),
        (
            "virtualservices",
            dynamic(
                "networking.istio.io",
                "v1beta1",
                "VirtualService",
                "virtualservices",
                &client,
            ),
        ),
    ];
    let registered = rss_mib();
    println!("resident memory after registering the CRDs: {registered:.0} MiB");
    let rollout = yaml(&upstream.example("rollout-canary.yaml"));
    let started = Instant::now();
    let writes = (0..rollouts).flat_map(|i| objects_for(i, &rollout));
    let created = stream::iter(writes)
        .map(|(plural, object)| {
            let api = apis
                .iter()
                .find(|(p, _)| *p == plural)
                .map(|(_, a)| a.clone())
                .unwrap();
            async move {
                let object: DynamicObject = serde_json::from_value(object).unwrap();
                api.create(&PostParams::default(), &object)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_fold(0usize, |n, ()| async move { Ok(n + 1) })
        .await
        .unwrap();
    let load_time = started.elapsed();
    let loaded = rss_mib();
    println!(
        "objects created: {created} in {:.1}s ({:.0}/s)",
        load_time.as_secs_f64(),
        created as f64 / load_time.as_secs_f64()
    );
    println!(
        "resident memory: {loaded:.0} MiB ({:.0} MiB above the {baseline:.0} MiB baseline)",
        loaded - baseline
    );

    let mut json_bytes = 0usize;
    for (_, api) in &apis {
        for item in api.list(&ListParams::default()).await.unwrap().items {
            json_bytes += serde_json::to_vec(&item).unwrap().len();
        }
    }
    println!(
        "stored JSON: {:.1} KiB per object on average",
        json_bytes as f64 / 1024.0 / created as f64
    );
    let rollouts_api = &apis[0].1;
    let mut list_times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let list = rollouts_api.list(&ListParams::default()).await.unwrap();
        list_times.push(t.elapsed());
        assert_eq!(list.items.len(), rollouts);
    }
    list_times.sort();
    println!(
        "list of {rollouts} rollouts (client decode included): median {:?}, best {:?}",
        list_times[2], list_times[0]
    );

    let configmaps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "fanout"}, "data": {"n": "0"}}))
            .unwrap();
    let rv = configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let watchers = 100;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut tasks = Vec::new();
    for w in 0..watchers {
        let mut events = configmaps
            .watch(&WatchParams::default().disable_bookmarks(), &rv)
            .await
            .unwrap()
            .boxed();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                if let WatchEvent::Modified(_) = event {
                    let _ = tx.send((w, Instant::now()));
                }
            }
        }));
    }
    let mut fanout = Vec::new();
    for round in 1..=20 {
        let t = Instant::now();
        configmaps
            .patch(
                "fanout",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"n": round.to_string()}})),
            )
            .await
            .unwrap();
        let mut last = t;
        for _ in 0..watchers {
            let (_, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            last = last.max(at);
        }
        fanout.push(last - t);
    }
    fanout.sort();
    println!(
        "one write reaching {watchers} watches (patch round trip included): median {:?}, p95 {:?}, max {:?}",
        fanout[fanout.len() / 2],
        fanout[fanout.len() * 95 / 100],
        fanout[fanout.len() - 1]
    );
    for task in tasks {
        task.abort();
    }
}
