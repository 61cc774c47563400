//! Watches against the emulated API server with the real kube client and kube-runtime:
//! resuming from a resourceVersion, 410 Gone, bookmarks, selector transitions, timeouts,
//! watcher/reflector (list-watch and streaming lists), restarts and injected faults.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use pretty_assertions::assert_eq;
use ramp_sim::{FaultError, FaultTarget, Sim, SimConfig, Verb};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn configmap(name: &str, tier: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"tier": tier}}, "data": {"k": "v"},
    }))
    .expect("valid configmap")
}

fn describe(event: &WatchEvent<ConfigMap>) -> String {
    match event {
        WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Modified(o) => {
            format!("MODIFIED {}", o.metadata.name.clone().unwrap_or_default())
        }
        WatchEvent::Deleted(o) => {
            format!("DELETED {}", o.metadata.name.clone().unwrap_or_default())
        }
        WatchEvent::Bookmark(_) => "BOOKMARK".to_owned(),
        WatchEvent::Error(e) => format!("ERROR {}", e.code),
    }
}

async fn next_events<S>(stream: &mut S, n: usize) -> Vec<String>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    let mut out = Vec::new();
    while out.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap_or_else(|_| panic!("no watch event within 5s after {out:?}"))
            .unwrap_or_else(|| panic!("watch ended after {out:?}"))
            .expect("watch event decodes");
        if !matches!(event, WatchEvent::Bookmark(_)) {
            out.push(describe(&event));
        }
    }
    out
}

#[tokio::test]
async fn watch_from_a_resource_version_sees_later_changes_in_order() {
    let sim = Sim::start(SimConfig::api_only()).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    api.create(&PostParams::default(), &configmap("before", "web"))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &configmap("a", "web"))
        .await
        .unwrap();
    api.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        next_events(&mut stream, 3).await,
        ["ADDED a", "MODIFIED before", "DELETED a"]
    );
}

#[tokio::test]
async fn watch_without_a_version_starts_with_the_current_state() {
    let sim = Sim::start(SimConfig::api_only()).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    api.create(&PostParams::default(), &configmap("x", "web"))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    assert_eq!(next_events(&mut stream, 1).await, ["ADDED x"]);
}

#[tokio::test]
async fn a_version_older_than_the_history_gets_410_gone() {
    let config = SimConfig {
        watch_history: 3,
        ..SimConfig::api_only()
    };
    let sim = Sim::start(config).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let first = api
        .create(&PostParams::default(), &configmap("c0", "web"))
        .await
        .unwrap();
    for i in 1..8 {
        api.create(&PostParams::default(), &configmap(&format!("c{i}"), "web"))
            .await
            .unwrap();
    }
    let old_rv = first.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match event {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status.message.starts_with("too old resource version"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {}", describe(&other)),
    }
}

#[tokio::test]
async fn bookmarks_arrive_when_allowed() {
    let config = SimConfig {
        bookmark_interval: Duration::from_millis(100),
        ..SimConfig::api_only()
    };
    let sim = Sim::start(config).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let created = api
        .create(&PostParams::default(), &configmap("b", "web"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match event {
        WatchEvent::Bookmark(b) => {
            let bookmark_rv: u64 = b.metadata.resource_version.parse().unwrap();
            assert!(bookmark_rv >= rv.parse::<u64>().unwrap());
        }
        other => panic!("expected a bookmark, got {}", describe(&other)),
    }
}

#[tokio::test]
async fn label_selector_watches_see_objects_enter_and_leave() {
    let sim = Sim::start(SimConfig::api_only()).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().labels("tier=web"), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &configmap("m", "db"))
        .await
        .unwrap();
    api.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "db"}}})),
    )
    .await
    .unwrap();
    assert_eq!(next_events(&mut stream, 2).await, ["ADDED m", "DELETED m"]);
}

#[tokio::test]
async fn timeout_seconds_ends_the_stream() {
    let sim = Sim::start(SimConfig::api_only()).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let started = Instant::now();
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("stream ends by itself");
    assert!(end.is_none(), "no events expected");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

async fn wait_for_store(
    store: &reflector::Store<ConfigMap>,
    what: &str,
    check: impl Fn(&reflector::Store<ConfigMap>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check(store) {
        assert!(
            Instant::now() < deadline,
            "reflector store never showed {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn reflector_follows_writes(config: watcher::Config) {
    let sim = Sim::start(SimConfig::api_only()).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    api.create(&PostParams::default(), &configmap("early", "web"))
        .await
        .unwrap();
    let (store, writer) = reflector::store();
    let task = tokio::spawn(
        reflector::reflector(writer, watcher(api.clone(), config))
            .applied_objects()
            .try_for_each(|_| async { Ok(()) }),
    );
    store.wait_until_ready().await.unwrap();
    assert_eq!(store.state().len(), 1);
    api.create(&PostParams::default(), &configmap("late", "web"))
        .await
        .unwrap();
    wait_for_store(&store, "the late object", |s| s.state().len() == 2).await;
    api.delete("early", &DeleteParams::default()).await.unwrap();
    wait_for_store(&store, "the early object deleted", |s| s.state().len() == 1).await;

    // A restart drops the watch; the watcher re-lists or resumes and keeps following.
    sim.restart().await.unwrap();
    api.create(&PostParams::default(), &configmap("after-restart", "web"))
        .await
        .unwrap();
    wait_for_store(&store, "the object created after the restart", |s| {
        s.state().len() == 2
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn watcher_and_reflector_follow_writes_across_a_restart() {
    reflector_follows_writes(watcher::Config::default()).await;
}

#[tokio::test]
async fn streaming_list_watcher_follows_writes() {
    reflector_follows_writes(watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn paged_watcher_lists_every_object() {
    let sim = Sim::start(SimConfig::api_only()).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    for i in 0..25 {
        api.create(
            &PostParams::default(),
            &configmap(&format!("p{i:02}"), "web"),
        )
        .await
        .unwrap();
    }
    let (store, writer) = reflector::store();
    let task = tokio::spawn(
        reflector::reflector(
            writer,
            watcher(api.clone(), watcher::Config::default().page_size(10)),
        )
        .applied_objects()
        .try_for_each(|_| async { Ok(()) }),
    );
    store.wait_until_ready().await.unwrap();
    assert_eq!(store.state().len(), 25);
    task.abort();
}

#[tokio::test]
async fn cut_watches_are_resumed_by_the_watcher() {
    let sim = Sim::start(SimConfig::api_only()).await.unwrap();
    sim.set_watch_cut_after(Some(Duration::from_millis(300)));
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let started = Instant::now();
    let mut raw = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let end = tokio::time::timeout(Duration::from_secs(5), raw.next())
        .await
        .expect("the cut ends the stream");
    assert!(end.is_none());
    assert!(started.elapsed() < Duration::from_secs(3));

    let (store, writer) = reflector::store();
    let task = tokio::spawn(
        reflector::reflector(writer, watcher(api.clone(), watcher::Config::default()))
            .applied_objects()
            .try_for_each(|_| async { Ok(()) }),
    );
    store.wait_until_ready().await.unwrap();
    for i in 0..3 {
        api.create(&PostParams::default(), &configmap(&format!("w{i}"), "web"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_for_store(&store, "three objects across cut watches", |s| {
        s.state().len() == 3
    })
    .await;
    task.abort();
}

/// A raw HTTP/1.1 request, to see status lines and headers the kube client hides.
async fn raw_request(sim: &ramp_sim::SimHandle, method: &str, path: &str, body: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn injected_errors_answer_500_429_with_retry_after_and_409() {
    let sim = Sim::start(SimConfig::api_only()).await.unwrap();
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"f"}}"#;
    sim.add_error_fault(
        FaultTarget::verb_on(Verb::Create, "configmaps"),
        1.0,
        FaultError::TooManyRequests {
            retry_after_seconds: 7,
        },
    );
    let response = raw_request(&sim, "POST", "/api/v1/namespaces/default/configmaps", body).await;
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after: 7"),
        "{response}"
    );
    assert!(
        response.contains("\"reason\":\"TooManyRequests\""),
        "{response}"
    );

    sim.clear_faults();
    sim.add_error_fault(
        FaultTarget::resource("configmaps"),
        1.0,
        FaultError::Internal,
    );
    let response = raw_request(&sim, "GET", "/api/v1/namespaces/default/configmaps", "").await;
    assert!(response.starts_with("HTTP/1.1 500"), "{response}");
    // Other resources are untouched.
    let response = raw_request(&sim, "GET", "/api/v1/namespaces/default/secrets", "").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    sim.clear_faults();
    sim.add_error_fault(FaultTarget::verb(Verb::Create), 1.0, FaultError::Conflict);
    let response = raw_request(&sim, "POST", "/api/v1/namespaces/default/configmaps", body).await;
    assert!(response.starts_with("HTTP/1.1 409"), "{response}");
    assert_eq!(
        sim.request_log().writes_to("configmaps").len(),
        0,
        "failed writes are logged as failures only"
    );
    assert_eq!(
        sim.request_log()
            .filter(|e| e.resource == "configmaps")
            .len(),
        2
    );

    sim.clear_faults();
    sim.add_error_fault(FaultTarget::any(), 0.5, FaultError::Internal);
    let mut failures = 0;
    for _ in 0..60 {
        let response = raw_request(&sim, "GET", "/api/v1/namespaces/default/secrets", "").await;
        if response.starts_with("HTTP/1.1 500") {
            failures += 1;
        }
    }
    assert!(
        (10..=50).contains(&failures),
        "a 50% rate failed {failures} of 60"
    );
}

#[tokio::test]
async fn a_500_after_apply_changes_the_object_and_the_log_keeps_what_it_wrote() {
    let sim = Sim::start(SimConfig::api_only()).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let map: ConfigMap = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "lost"}, "data": {"k": "before"}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &map).await.unwrap();
    sim.seed_faults(7);
    sim.add_error_fault(
        FaultTarget::verb(Verb::Patch),
        1.0,
        FaultError::InternalAfterApply,
    );
    let patch = serde_json::json!({"data": {"k": "after"}});
    let err = api
        .patch("lost", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("the answer is a 500");
    assert!(
        matches!(&err, kube::Error::Api(status) if status.code == 500),
        "{err:?}"
    );
    sim.clear_faults();
    let stored = api.get("lost").await.unwrap();
    assert_eq!(stored.data.unwrap()["k"], "after", "the write was applied");
    let logged = sim.request_log().filter(|e| e.verb == Verb::Patch);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].code, 500);
    assert_eq!(
        logged[0].object.as_ref().map(|o| o["data"]["k"].clone()),
        Some(serde_json::json!("after"))
    );
    let counts = sim.injected_faults();
    assert_eq!(
        (
            counts.applied_then_internal,
            counts.internal,
            counts.total()
        ),
        (1, 0, 1)
    );
    // A successful write logs the object it left; a refused one logs none.
    let created = sim.request_log().filter(|e| e.verb == Verb::Create);
    assert_eq!(created[0].object.as_ref().unwrap()["data"]["k"], "before");
}

#[tokio::test]
async fn injected_latency_delays_matching_requests() {
    let sim = Sim::start(SimConfig::api_only()).await.unwrap();
    sim.add_latency(
        FaultTarget::verb_on(Verb::List, "configmaps"),
        Duration::from_millis(400),
    );
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let started = Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
}
