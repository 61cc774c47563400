//! A full controller whose connection to the API server goes down: through a TCP proxy the
//! test cuts (every open connection reset, new ones refused), on either tier. Every watch must
//! ask again within seconds of the API server's return, `/readyz` must fail naming the watches
//! while they are down, and a release made right after an outage must walk its traffic steps.
//! kube-runtime's `Controller` once held all six of the Rollout controller's watches behind one
//! backoff, which the errors of one outage grew to minutes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary_support;
mod ops_support;

use canary_support::{
    Cluster, canary_weights, controller_writes, eventually, istio_canary, rollout_manifest,
};
use http::Method;
use ops_support::{RunningController, SentRequest, http_get, serve_endpoints};
use pretty_assertions::assert_eq;
use ramp_sim::tier::TestCluster;
use ramp_sim::{FaultError, FaultTarget, Verb};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Every watch the two controllers keep, as [`watch_name`] names their requests.
const WATCHES: [&str; 8] = [
    "analysisrun/analysisruns",
    "rollout/analysisruns",
    "rollout/destinationrules",
    "rollout/ingresses",
    "rollout/replicasets",
    "rollout/rollouts",
    "rollout/services",
    "rollout/virtualservices",
];

/// How long after the API server is back every watch must have asked again: a few of the
/// controller's retry delays (at most 5 s each), with room for a loaded machine.
const RECOVERY: u64 = 10;

/// The watch a request belongs to, named as the controller's readiness names it.
fn watch_name(request: &SentRequest) -> Option<String> {
    let is_watch =
        request.method == Method::GET && request.query.split('&').any(|p| p == "watch=true");
    if !is_watch {
        return None;
    }
    let plural = request.path.rsplit('/').next()?;
    let controller = if plural == "analysisruns" && !request.query.contains("rollout-type") {
        "analysisrun"
    } else {
        "rollout"
    };
    Some(format!("{controller}/{plural}"))
}

/// The watches that sent a watch request at or after `since`.
fn watching_since(controller: &RunningController, since: Instant) -> BTreeSet<String> {
    controller
        .writes
        .requests()
        .iter()
        .filter(|r| r.at >= since)
        .filter_map(watch_name)
        .collect()
}

/// A TCP proxy to the cluster's API server whose "outage" resets every open connection and
/// refuses new ones until it ends, as a crashed or restarting API server does.
struct ApiProxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl ApiProxy {
    async fn start(cluster: &TestCluster) -> Self {
        let url = cluster.client_config().cluster_url;
        let upstream = format!(
            "{}:{}",
            url.host().expect("the API server's host"),
            url.port_u16().expect("the API server's port")
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, serving) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !*serving.borrow() {
                    let _ = inbound.set_zero_linger();
                    continue;
                }
                let mut serving = serving.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = serving.wait_for(|up| !*up) => {
                            let _ = inbound.set_zero_linger();
                            let _ = outbound.set_zero_linger();
                        }
                    }
                });
            }
        });
        Self { addr, up }
    }

    /// The cluster's client configuration pointed at the proxy (TLS still ends at the API
    /// server, whose certificate names 127.0.0.1 whatever the port).
    fn config(&self, cluster: &TestCluster) -> kube::Config {
        let mut config = cluster.client_config();
        let scheme = config.cluster_url.scheme_str().unwrap_or("http").to_owned();
        config.cluster_url = format!("{scheme}://{}", self.addr).parse().unwrap();
        config
    }

    fn down(&self) {
        self.up.send_replace(false);
    }

    fn up(&self) {
        self.up.send_replace(true);
    }
}

/// A cluster with the Istio objects of a canary, a controller connected through an
/// [`ApiProxy`] (readiness failing after `watch_grace` of a watch down), its endpoints, and
/// every watch open.
async fn controller_through_proxy(
    watch_grace: Duration,
) -> (Cluster, ApiProxy, RunningController, SocketAddr) {
    let cluster = Cluster::start().await;
    cluster
        .create_services(&["web-stable", "web-canary"], "web")
        .await;
    cluster
        .create_virtual_service("web-vsvc", "web-stable", "web-canary")
        .await;
    let proxy = ApiProxy::start(&cluster.sim).await;
    let start = Instant::now();
    let controller = RunningController::start_through(
        &cluster.sim,
        "a",
        proxy.config(&cluster.sim),
        watch_grace,
    );
    let addr = serve_endpoints(controller.metrics.clone(), controller.health.clone()).await;
    let running = &controller;
    eventually(
        "every watch open and the controller ready",
        30,
        || async move {
            let ready = http_get(addr, "/readyz").await == (200, "ok: leading".to_owned());
            (ready && watching_since(running, start).len() == WATCHES.len()).then_some(())
        },
    )
    .await;
    (cluster, proxy, controller, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_half_second_outage_every_watch_is_back_within_seconds_and_the_next_release_walks_its_weights()
 {
    let (cluster, proxy, controller, addr) =
        controller_through_proxy(Duration::from_secs(15)).await;
    let steps = json!([
        {"setWeight": 20}, {"pause": {"duration": "1s"}},
        {"setWeight": 40}, {"pause": {"duration": "1s"}},
        {"setWeight": 60}, {"pause": {"duration": "1s"}},
        {"setWeight": 80}, {"pause": {"duration": "1s"}}
    ]);
    cluster
        .create_rollout(rollout_manifest("web", 5, istio_canary(steps)))
        .await;
    let v1 = cluster.wait_healthy("web", 30).await;
    let vs_before =
        serde_json::to_value(cluster.virtual_services().get("web-vsvc").await.unwrap()).unwrap();
    // As in the incident: a share of the traffic writes fails (ramp-sim only; the real API
    // server cannot be told to).
    if let Some(sim) = cluster.sim.sim() {
        sim.add_error_fault(
            FaultTarget::verb_on(Verb::Patch, "virtualservices"),
            0.3,
            FaultError::Internal,
        );
    }

    proxy.down();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.up();
    let back = Instant::now();
    // A release made just after the outage: only the watches can tell the controller.
    let checkpoint = cluster.sim.request_log().len();
    cluster.set_image("web", "web:v2").await;

    let running = &controller;
    eventually(
        "every watch asking again after the outage",
        RECOVERY,
        || async move { (watching_since(running, back).len() == WATCHES.len()).then_some(()) },
    )
    .await;
    assert_eq!(
        watching_since(&controller, back),
        WATCHES.iter().map(|w| (*w).to_owned()).collect(),
    );

    let stable_before = v1.status.as_ref().and_then(|s| s.stable_rs.clone());
    cluster
        .wait_rollout("web", "v2 fully promoted", 60, |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase.as_deref() == Some("Healthy")
                && s.stable_rs.is_some()
                && s.stable_rs != stable_before
                && s.replicas == Some(5)
        })
        .await;
    // The canary got every step's share of the traffic, in order, before taking it all.
    let writes = controller_writes(&cluster.sim, checkpoint);
    let mut weights = canary_weights(&writes, "web-vsvc", &vs_before, "web-canary");
    weights.dedup();
    assert_eq!(
        weights,
        vec![20, 40, 60, 80, 100, 0],
        "writes: {:#?}",
        writes.iter().map(|w| w.summary()).collect::<Vec<_>>()
    );
    assert_eq!(
        http_get(addr, "/readyz").await,
        (200, "ok: leading".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_every_watch_down_past_its_grace_and_is_ready_again_once_they_are_back() {
    let grace = Duration::from_secs(2);
    let (_cluster, proxy, controller, addr) = controller_through_proxy(grace).await;

    proxy.down();
    let down = Instant::now();
    let (status, body) = eventually("/readyz failing for every watch", 20, || async move {
        let (status, body) = http_get(addr, "/readyz").await;
        WATCHES
            .iter()
            .all(|w| body.contains(&format!("watch {w} not live for ")))
            .then_some((status, body))
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: leading; watch "),
        "says why: {body}"
    );
    assert!(
        down.elapsed() > grace,
        "not before the grace period: {body}"
    );

    proxy.up();
    let back = Instant::now();
    eventually(
        "/readyz ready once the watches are back",
        RECOVERY,
        || async move {
            (http_get(addr, "/readyz").await == (200, "ok: leading".to_owned())).then_some(())
        },
    )
    .await;
    assert_eq!(
        watching_since(&controller, back).len(),
        WATCHES.len(),
        "ready only once every watch asked again"
    );
}
