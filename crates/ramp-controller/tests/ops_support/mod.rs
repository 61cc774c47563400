//! Shared by the `ops_*` tests: full controllers (`ops::run`) on a ramp-sim cluster, each with
//! its own client that records the writes it sends, short lease timings, and a plain HTTP
//! scrape of the endpoints.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use futures::future::BoxFuture;
use http::{Method, Request};
use kube::Client;
use kube::client::ClientBuilder;
use ramp_controller::analysis_run::AnalysisRunConfig;
use ramp_controller::context::ControllerConfig;
use ramp_controller::ops::client::{ClientOptions, RateLimitLayer, RequestMetricsLayer};
use ramp_controller::ops::health::Health;
use ramp_controller::ops::leader::LeaseConfig;
use ramp_controller::ops::metrics::Metrics;
use ramp_controller::ops::{self, RunError, RunOptions, WatchScope};
use ramp_sim::tier::{TestCluster, test_namespace};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::{Layer, Service};

/// One request a controller's client sent.
#[derive(Clone, Debug)]
pub struct SentRequest {
    pub at: Instant,
    pub method: Method,
    pub path: String,
    /// The query string (`watch=true&resourceVersion=...`), empty when there is none.
    pub query: String,
}

/// Records every request passing through a client: its writes, and its reads apart.
#[derive(Clone, Default)]
pub struct WriteLog(pub Arc<Mutex<Vec<SentRequest>>>);

impl WriteLog {
    /// Every non-GET request.
    pub fn writes(&self) -> Vec<SentRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != Method::GET)
            .collect()
    }

    /// Every request, reads included, in the order sent.
    pub fn requests(&self) -> Vec<SentRequest> {
        self.0.lock().unwrap().clone()
    }

    /// Writes other than the lease's.
    pub fn controller_writes(&self) -> Vec<SentRequest> {
        self.writes()
            .into_iter()
            .filter(|w| !w.path.contains("/leases"))
            .collect()
    }
}

impl<S> Layer<S> for WriteLog {
    type Service = Recording<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Recording {
            inner,
            log: self.clone(),
        }
    }
}

pub struct Recording<S> {
    inner: S,
    log: WriteLog,
}

impl<S, B> Service<Request<B>> for Recording<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.log.0.lock().unwrap().push(SentRequest {
            at: Instant::now(),
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or_default().to_owned(),
        });
        Box::pin(self.inner.call(request))
    }
}

/// A client of the cluster through Ramp's own stack, plus a write recorder.
pub fn recorded_client(cluster: &TestCluster, options: &ClientOptions) -> (Client, WriteLog) {
    recorded_client_for(cluster.client_config(), options)
}

/// [`recorded_client`] for a configuration of the caller's (another address, say).
pub fn recorded_client_for(config: kube::Config, options: &ClientOptions) -> (Client, WriteLog) {
    let log = WriteLog::default();
    let client = ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&log)
        .with_layer(&RequestMetricsLayer::new(options.metrics.clone()))
        .with_layer(&RateLimitLayer::new(options.qps, options.burst))
        .build();
    (client, log)
}

/// Timings for a full controller on a loaded test machine: a takeover stays second-scale
/// (3 s lease, 0.2 s retry) while a leader busy reconciling has 2 s to renew, so a slow
/// request under the whole suite's load does not cost it the lease.
pub fn controller_lease(identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        ..short_lease(identity)
    }
}

/// Short timings so a takeover is second-scale: 2 s lease, 1 s renew deadline, 0.2 s retry.
pub fn short_lease(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: test_namespace().to_owned(),
        name: LeaseConfig::lease_name(None),
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
    }
}

/// A full controller (`ops::run`) in a task.
pub struct RunningController {
    pub name: String,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub writes: WriteLog,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), RunError>>>,
}

impl RunningController {
    /// A controller watching every namespace on ramp-sim, and only the test's on the real
    /// tier, whose cluster the other tests share.
    pub fn start(cluster: &TestCluster, name: &str, lease: Option<LeaseConfig>) -> Self {
        let scope = WatchScope {
            namespace: cluster.is_real().then(|| test_namespace().to_owned()),
            ..WatchScope::default()
        };
        Self::start_with(cluster, name, lease, scope)
    }

    pub fn start_with(
        cluster: &TestCluster,
        name: &str,
        lease: Option<LeaseConfig>,
        scope: WatchScope,
    ) -> Self {
        Self::launch(cluster.client_config(), name, lease, scope, Health::new)
    }

    /// [`RunningController::start`] with its client on `config` (the cluster through a proxy,
    /// say) and readiness failing once a watch is down for longer than `watch_grace`.
    pub fn start_through(
        cluster: &TestCluster,
        name: &str,
        config: kube::Config,
        watch_grace: Duration,
    ) -> Self {
        let scope = WatchScope {
            namespace: cluster.is_real().then(|| test_namespace().to_owned()),
            ..WatchScope::default()
        };
        Self::launch(config, name, None, scope, |metrics| {
            Health::new(metrics).with_watch_grace(watch_grace)
        })
    }

    fn launch(
        config: kube::Config,
        name: &str,
        lease: Option<LeaseConfig>,
        scope: WatchScope,
        health: impl FnOnce(Arc<Metrics>) -> Health,
    ) -> Self {
        let metrics = Arc::new(Metrics::new("test"));
        let health = Arc::new(health(metrics.clone()));
        let (client, writes) = recorded_client_for(
            config,
            &ClientOptions {
                qps: 0.0,
                burst: 0,
                metrics: Some(metrics.clone()),
            },
        );
        let options = RunOptions {
            rollouts: ControllerConfig {
                concurrency: 4,
                backoff_min: Duration::from_millis(200),
                backoff_max: Duration::from_secs(2),
                invalid_spec_recheck: Duration::from_secs(2),
                instance: Some(name.to_owned()),
                scope: scope.clone(),
                ..ControllerConfig::default()
            },
            analysis_runs: AnalysisRunConfig {
                backoff_min: Duration::from_millis(200),
                backoff_max: Duration::from_secs(2),
                instance: Some(name.to_owned()),
                namespace: scope.namespace.clone(),
                instance_id: scope.instance_id.clone(),
                ..AnalysisRunConfig::default()
            },
            leader_election: lease,
            metrics: metrics.clone(),
            health: health.clone(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ops::run(client, options, async move {
            let _ = stopped.await;
        }));
        Self {
            name: name.to_owned(),
            metrics,
            health,
            writes,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Kills the controller as a crash would: dropped mid-flight, the lease not released.
    pub async fn kill(&mut self) -> Instant {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        Instant::now()
    }

    /// SIGTERM: drain, release, return what `ops::run` returned.
    pub async fn stop(&mut self) -> Result<(), RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the controller stops within 20 s of its shutdown signal")
                .expect("the controller task does not panic"),
            None => Ok(()),
        }
    }

    /// Waits for `ops::run` to return on its own (no shutdown signal sent).
    pub async fn finished(&mut self) -> Result<(), RunError> {
        match self.task.take() {
            Some(task) => task.await.expect("the controller task does not panic"),
            None => Ok(()),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves the metrics and health routes of a controller on an ephemeral port.
pub async fn serve_endpoints(metrics: Arc<Metrics>, health: Arc<Health>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = ops::http::metrics_routes(metrics).merge(ops::http::health_routes(health));
    tokio::spawn(ops::http::serve(listener, routes));
    addr
}

/// `GET path` over HTTP/1.0: `(status, body)`.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
