//! The real `ramp controller` binary against a cluster of either tier (an in-process ramp-sim,
//! or the real control plane, where it watches only the test's namespace and keeps its lease
//! there): it takes the leader lease, serves `/metrics` and `/readyz`, logs JSON, and on SIGTERM
//! drains, releases the lease and exits 0; when another holder takes its lease it exits
//! non-zero; bad timings are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use ramp_sim::SimConfig;
use ramp_sim::testing::eventually;
use ramp_sim::tier::{TestCluster, test_namespace};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEASE: &str = "argo-rollouts-controller-lock";

async fn cluster_with_crds() -> TestCluster {
    TestCluster::start(SimConfig::api_only(), ramp_api::crd::all())
        .await
        .unwrap()
}

/// The namespace the test works in (and the controller's lease is in): `default` on ramp-sim,
/// a fresh one on the real tier.
fn ns() -> &'static str {
    test_namespace()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Controller {
    child: Child,
    metrics: SocketAddr,
    health: SocketAddr,
    log: PathBuf,
}

impl Controller {
    /// Leader election with a 2 s lease, `renew_deadline` and a 0.2 s retry period. On the real
    /// tier, which other tests share, it watches only the test's namespace (`--namespaced`: its
    /// kubeconfig's context is that namespace).
    fn start(cluster: &TestCluster, renew_deadline: &str) -> Self {
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::env::temp_dir().join(format!(
            "ramp-controller-cli-{}-{}.log",
            std::process::id(),
            metrics.port()
        ));
        let mut command = Command::new(env!("CARGO_BIN_EXE_ramp"));
        command
            .arg("controller")
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig_path());
        if cluster.is_real() {
            command.arg("--namespaced");
        }
        let child = command
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--health-addr", &health.to_string()])
            .args(["--leader-election-lease-duration", "2s"])
            .args(["--leader-election-renew-deadline", renew_deadline])
            .args(["--leader-election-retry-period", "200ms"])
            .args(["--log-format", "json"])
            .env("POD_NAMESPACE", ns())
            .env("POD_NAME", "ctl-test")
            .env_remove("RUST_LOG")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            metrics,
            health,
            log,
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    async fn exit_status(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the controller did not exit within {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(self.log.with_extension("err"));
    }
}

/// `GET path` over HTTP/1.0: `(status, body)`, or `None` while nothing listens.
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

async fn lease(cluster: &TestCluster) -> Option<Lease> {
    Api::<Lease>::namespaced(cluster.client(), ns())
        .get_opt(LEASE)
        .await
        .unwrap()
}

fn holder(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default()
}

async fn wait_leading(cluster: &TestCluster, controller: &Controller) -> Lease {
    let lease = eventually("the controller holds the lease", 20, || async move {
        lease(cluster)
            .await
            .filter(|l| holder(l).starts_with("ctl-test_"))
    })
    .await;
    let health = controller.health;
    eventually("/readyz reports a ready leader", 20, || async move {
        http_get(health, "/readyz")
            .await
            .filter(|(status, body)| *status == 200 && body.contains("leading"))
    })
    .await;
    lease
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_releases_the_lease_and_exits_zero() {
    let cluster = cluster_with_crds().await;
    let mut controller = Controller::start(&cluster, "1s");
    let acquired = wait_leading(&cluster, &controller).await;
    assert_eq!(
        acquired.spec.as_ref().unwrap().lease_duration_seconds,
        Some(2)
    );

    let (status, body) = http_get(controller.metrics, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    let version = format!(
        r#"argo_rollouts_controller_info{{version="{}"}} 1"#,
        env!("CARGO_PKG_VERSION")
    );
    assert!(body.lines().any(|l| l == version), "{body}");
    assert!(
        body.lines().any(|l| l.starts_with(
            r#"controller_clientset_k8s_request_total{kind="leases",verb="create",status_code="201"}"#
        )),
        "{body}"
    );
    assert_eq!(
        http_get(controller.health, "/healthz").await,
        Some((200, "ok".to_owned()))
    );

    controller.terminate();
    let status = controller.exit_status(20).await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let released = lease(&cluster).await.unwrap();
    assert_eq!(
        holder(&released),
        "",
        "the lease is released on the way out"
    );
    assert_eq!(
        released.spec.as_ref().unwrap().lease_transitions,
        acquired.spec.as_ref().unwrap().lease_transitions
    );

    let log = controller.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    for expected in [
        "became leader",
        "termination signal received",
        "released the lease",
        "ramp controller stopped",
    ] {
        assert!(
            messages.contains(&expected),
            "{expected:?} not in {messages:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lease_stops_the_controller_with_a_failure() {
    let cluster = cluster_with_crds().await;
    let mut controller = Controller::start(&cluster, "1s");
    let mut taken = wait_leading(&cluster, &controller).await;
    let spec = taken.spec.as_mut().unwrap();
    spec.holder_identity = Some("argo-rollouts-5f7d_1".to_owned());
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    spec.lease_duration_seconds = Some(60);
    Api::<Lease>::namespaced(cluster.client(), ns())
        .replace(LEASE, &PostParams::default(), &taken)
        .await
        .unwrap();

    let status = controller.exit_status(10).await;
    assert_eq!(status.code(), Some(1), "exit status after losing the lease");
    assert_eq!(
        holder(&lease(&cluster).await.unwrap()),
        "argo-rollouts-5f7d_1"
    );
    assert!(controller.log().contains("leadership lost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inconsistent_leader_election_timings_are_refused() {
    let cluster = cluster_with_crds().await;
    let mut controller = Controller::start(&cluster, "20s");
    let status = controller.exit_status(20).await;
    assert_eq!(status.code(), Some(2));
    let stderr = controller.stderr();
    assert!(
        stderr.contains("must be longer than the renew deadline"),
        "{stderr}"
    );
    assert!(lease(&cluster).await.is_none(), "no lease taken");
}
