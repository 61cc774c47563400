//! The traffic simulator through the real API: the synthetic load follows VirtualService
//! weights and header routes, NGINX canary Ingress weights and plain Service selectors, and
//! shows up in the Prometheus exposition and the per-version JSON report.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use ramp_sim::traffic::TrafficConfig;
use ramp_sim::{Sim, SimConfig, SimHandle};
use serde_json::{Value, json};

const RPS: f64 = 400.0;

async fn sim() -> SimHandle {
    Sim::start(SimConfig {
        traffic: TrafficConfig {
            rps: RPS,
            ..TrafficConfig::default()
        },
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A parsed exposition: `(metric name, labels)` → value.
type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

fn parse_exposition(text: &str) -> Samples {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while let Some((key, after)) = rest.split_once("=\"") {
            let end = after.find('"').expect("closing quote");
            map.insert(
                key.trim_start_matches(',').to_string(),
                after[..end].to_string(),
            );
            rest = &after[end + 1..];
        }
        out.push((name.to_string(), map, value.parse().expect("numeric value")));
    }
    out
}

async fn scrape(url: &str) -> (String, Samples) {
    let text = http_get(url).await;
    let samples = parse_exposition(&text);
    (text, samples)
}

/// A plain HTTP/1.1 GET on loopback (no HTTP client crate needed for two endpoints).
async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect to metrics");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read response");
    let response = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

fn sum(samples: &Samples, name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && filter
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn replica_set(name: &str, hash: &str, replicas: i32, annotations: Value) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default", "labels": {"rollouts-pod-template-hash": hash}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web", "rollouts-pod-template-hash": hash}},
            "template": {
                "metadata": {"labels": {"app": "web", "rollouts-pod-template-hash": hash}, "annotations": annotations},
                "spec": {"containers": [{"name": "web", "image": "example/web:1"}]}
            }
        }
    }))
    .expect("valid replicaset")
}

fn service(name: &str, selector: Value) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": selector, "ports": [{"port": 80}]}
    }))
    .expect("valid service")
}

/// Stable `web-s` (hash `s`, 2 pods) and canary `web-c` (hash `c`, 1 pod, 20 % errors, 300 ms
/// median latency), with services `web-stable` and `web-canary`; waits until every pod is ready.
async fn two_versions(sim: &SimHandle) {
    versions_without_services(sim).await;
    let services = Api::<Service>::namespaced(sim.client(), "default");
    services
        .create(
            &PostParams::default(),
            &service(
                "web-stable",
                json!({"app": "web", "rollouts-pod-template-hash": "s"}),
            ),
        )
        .await
        .expect("create stable service");
    services
        .create(
            &PostParams::default(),
            &service(
                "web-canary",
                json!({"app": "web", "rollouts-pod-template-hash": "c"}),
            ),
        )
        .await
        .expect("create canary service");
}

/// The two versions of `two_versions` without their services.
async fn versions_without_services(sim: &SimHandle) {
    let replica_sets = Api::<ReplicaSet>::namespaced(sim.client(), "default");
    replica_sets
        .create(
            &PostParams::default(),
            &replica_set("web-s", "s", 2, json!({})),
        )
        .await
        .expect("create stable");
    replica_sets
        .create(
            &PostParams::default(),
            &replica_set(
                "web-c",
                "c",
                1,
                json!({"sim.ramp.dev/error-rate": "0.2", "sim.ramp.dev/latency-ms": "300"}),
            ),
        )
        .await
        .expect("create canary");
    for (name, replicas) in [("web-s", 2), ("web-c", 1)] {
        eventually(&format!("{name} ready"), Duration::from_secs(5), || {
            let api = replica_sets.clone();
            async move {
                let rs = api.get(name).await.ok()?;
                (rs.status?.ready_replicas == Some(replicas)).then_some(())
            }
        })
        .await;
    }
}

async fn install_crd(
    sim: &SimHandle,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> ApiResource {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": [{"name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]
        }
    }))
    .expect("valid crd");
    Api::<CustomResourceDefinition>::all(sim.client())
        .create(&PostParams::default(), &crd)
        .await
        .expect("create crd");
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn install_virtual_service_crd(sim: &SimHandle) -> ApiResource {
    install_crd(
        sim,
        "networking.istio.io",
        "v1beta1",
        "VirtualService",
        "virtualservices",
    )
    .await
}

/// Creates a custom object, retrying while its CRD is not served yet.
async fn create_custom(sim: &SimHandle, resource: &ApiResource, object: Value) {
    let api = Api::<DynamicObject>::namespaced_with(sim.client(), "default", resource);
    let object: DynamicObject = serde_json::from_value(object).expect("valid object");
    eventually("custom object created", Duration::from_secs(5), || {
        let api = api.clone();
        let object = object.clone();
        async move { api.create(&PostParams::default(), &object).await.ok() }
    })
    .await;
}

/// Requests per version (from the JSON report) between two reports `requests` apart.
async fn version_share(url: &str, requests: f64) -> (f64, f64) {
    let versions_url = url.replace("/metrics", "/api/v1/versions");
    let requests_of = |report: &Value, rs: &str| {
        report["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["replicaSet"] == rs)
            .and_then(|v| v["requests"].as_f64())
            .unwrap_or(0.0)
    };
    let report = |url: String| async move {
        serde_json::from_str::<Value>(&http_get(&url).await).expect("json report")
    };
    let before = report(versions_url.clone()).await;
    let after = eventually(
        "enough requests between reports",
        Duration::from_secs(10),
        || {
            let versions_url = versions_url.clone();
            let before = before.clone();
            async move {
                let now = report(versions_url).await;
                let total = requests_of(&now, "web-s") + requests_of(&now, "web-c")
                    - requests_of(&before, "web-s")
                    - requests_of(&before, "web-c");
                (total >= requests).then_some(now)
            }
        },
    )
    .await;
    (
        requests_of(&after, "web-s") - requests_of(&before, "web-s"),
        requests_of(&after, "web-c") - requests_of(&before, "web-c"),
    )
}

#[tokio::test]
async fn destination_rule_subsets_carry_the_virtual_service_weights() {
    let sim = sim().await;
    let url = sim.metrics_url().expect("metrics url");
    versions_without_services(&sim).await;
    Api::<Service>::namespaced(sim.client(), "default")
        .create(
            &PostParams::default(),
            &service("web", json!({"app": "web"})),
        )
        .await
        .expect("create service");
    let rules = install_crd(
        &sim,
        "networking.istio.io",
        "v1beta1",
        "DestinationRule",
        "destinationrules",
    )
    .await;
    let services = install_virtual_service_crd(&sim).await;
    create_custom(
        &sim,
        &rules,
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"host": "web", "subsets": [
                {"name": "stable", "labels": {"rollouts-pod-template-hash": "s"}},
                {"name": "canary", "labels": {"rollouts-pod-template-hash": "c"}}
            ]}
        }),
    )
    .await;
    create_custom(
        &sim,
        &services,
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 75},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 25}
            ]}]}
        }),
    )
    .await;
    // Without the routing, the service splits 2:1 by ready pods; wait for the subset split.
    eventually(
        "the subset split in effect",
        Duration::from_secs(5),
        || async {
            let (stable, canary) = version_share(&url, 200.0).await;
            ((canary / (stable + canary) - 0.25).abs() < 0.04).then_some(())
        },
    )
    .await;
    let (stable, canary) = version_share(&url, 1500.0).await;
    let share = canary / (stable + canary);
    assert!((share - 0.25).abs() < 0.02, "canary subset share {share}");
}

#[tokio::test]
async fn http_route_backend_weights_split_traffic() {
    let sim = sim().await;
    let url = sim.metrics_url().expect("metrics url");
    two_versions(&sim).await;
    let routes = install_crd(
        &sim,
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
    )
    .await;
    create_custom(
        &sim,
        &routes,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80, "weight": 60},
                {"name": "web-canary", "port": 80, "weight": 40}
            ]}]}
        }),
    )
    .await;
    // Before the route is seen, each service gets the full rate of its own (a 50 % share).
    eventually(
        "the route's split in effect",
        Duration::from_secs(5),
        || async {
            let (stable, canary, _) = istio_share(&url, 200.0).await;
            ((canary / (stable + canary) - 0.4).abs() < 0.05).then_some(())
        },
    )
    .await;
    let (stable, canary, _) = istio_share(&url, 1500.0).await;
    let share = canary / (stable + canary);
    assert!((share - 0.40).abs() < 0.02, "canary backend share {share}");
}

async fn create_virtual_service(
    sim: &SimHandle,
    resource: &ApiResource,
    http: Value,
) -> Api<DynamicObject> {
    let api = Api::<DynamicObject>::namespaced_with(sim.client(), "default", resource);
    let vs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"hosts": ["web"], "http": http}
    }))
    .expect("valid virtual service");
    // The CRD's resources may take a moment to be served after it is created.
    eventually("virtual service created", Duration::from_secs(5), || {
        let api = api.clone();
        let vs = vs.clone();
        async move { api.create(&PostParams::default(), &vs).await.ok() }
    })
    .await;
    api
}

fn primary_route(canary_weight: i64) -> Value {
    json!({"name": "primary", "route": [
        {"destination": {"host": "web-stable"}, "weight": 100 - canary_weight},
        {"destination": {"host": "web-canary"}, "weight": canary_weight}
    ]})
}

/// Requests by destination service (`reporter="destination"`) between two scrapes taken
/// `requests` requests apart.
async fn istio_share(url: &str, requests: f64) -> (f64, f64, Samples) {
    let destination = |s: &Samples, svc: &str| {
        sum(
            s,
            "istio_requests_total",
            &[
                ("reporter", "destination"),
                ("destination_service_name", svc),
            ],
        )
    };
    let (_, before) = scrape(url).await;
    let total_before = destination(&before, "web-stable") + destination(&before, "web-canary");
    let after = eventually(
        "enough requests between scrapes",
        Duration::from_secs(10),
        || async {
            let (_, now) = scrape(url).await;
            let total = destination(&now, "web-stable") + destination(&now, "web-canary");
            (total - total_before >= requests).then_some(now)
        },
    )
    .await;
    let stable = destination(&after, "web-stable") - destination(&before, "web-stable");
    let canary = destination(&after, "web-canary") - destination(&before, "web-canary");
    (stable, canary, after)
}

#[tokio::test]
async fn virtual_service_weight_change_shows_in_the_metrics_within_a_second() {
    let sim = sim().await;
    let url = sim.metrics_url().expect("metrics url");
    two_versions(&sim).await;
    let resource = install_virtual_service_crd(&sim).await;
    let vs = create_virtual_service(&sim, &resource, json!([primary_route(0)])).await;

    // Until the traffic simulator has seen the VirtualService, both services get load of
    // their own; wait for a stretch of requests that all go to stable.
    let samples = eventually("all requests to stable", Duration::from_secs(5), || async {
        let (stable, canary, samples) = istio_share(&url, 100.0).await;
        (stable >= 100.0 && canary == 0.0).then_some(samples)
    })
    .await;
    let canary_total_before = sum(
        &samples,
        "istio_requests_total",
        &[("destination_service_name", "web-canary")],
    );

    vs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"http": [primary_route(30)]}})),
    )
    .await
    .expect("set weight 30");
    let changed = Instant::now();
    eventually(
        "canary traffic after the weight change",
        Duration::from_secs(1),
        || async {
            let (_, now) = scrape(&url).await;
            (sum(
                &now,
                "istio_requests_total",
                &[("destination_service_name", "web-canary")],
            ) > canary_total_before)
                .then_some(())
        },
    )
    .await;
    assert!(changed.elapsed() < Duration::from_secs(1));

    let (stable, canary, samples) = istio_share(&url, 1000.0).await;
    let share = canary / (stable + canary);
    assert!(
        (share - 0.30).abs() < 0.02,
        "canary share {share} ({canary} of {})",
        stable + canary
    );

    // The canary's annotations: 20 % of its requests are 500s, with a 300 ms median.
    let canary_errors = sum(
        &samples,
        "istio_requests_total",
        &[
            ("reporter", "destination"),
            ("destination_service_name", "web-canary"),
            ("response_code", "500"),
        ],
    );
    let canary_all = sum(
        &samples,
        "istio_requests_total",
        &[
            ("reporter", "destination"),
            ("destination_service_name", "web-canary"),
        ],
    );
    assert!(
        (canary_errors / canary_all - 0.2).abs() < 0.02,
        "error ratio {}",
        canary_errors / canary_all
    );
    let labels = [
        ("reporter", "destination"),
        ("destination_service_name", "web-canary"),
    ];
    let below_250 = sum(
        &samples,
        "istio_request_duration_milliseconds_bucket",
        &[labels[0], labels[1], ("le", "250")],
    );
    let below_500 = sum(
        &samples,
        "istio_request_duration_milliseconds_bucket",
        &[labels[0], labels[1], ("le", "500")],
    );
    let count = sum(
        &samples,
        "istio_request_duration_milliseconds_count",
        &labels,
    );
    assert!(
        below_250 / count < 0.5 && below_500 / count > 0.5,
        "median between 250 and 500 ms: {below_250} {below_500} {count}"
    );
    let workloads: Vec<&String> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == "istio_requests_total"
                && l.get("destination_service_name").map(String::as_str) == Some("web-canary")
        })
        .filter_map(|(_, l, _)| l.get("destination_workload"))
        .collect();
    assert!(
        workloads.iter().all(|w| w.as_str() == "web"),
        "{workloads:?}"
    );
}

#[tokio::test]
async fn header_route_gets_the_share_of_requests_carrying_the_header() {
    let sim = sim().await;
    let url = sim.metrics_url().expect("metrics url");
    two_versions(&sim).await;
    let resource = install_virtual_service_crd(&sim).await;
    let header_route = json!({"name": "canary-header",
        "match": [{"headers": {"x-canary": {"exact": "true"}}}],
        "route": [{"destination": {"host": "web-canary"}, "weight": 100}]});
    create_virtual_service(&sim, &resource, json!([header_route, primary_route(0)])).await;
    // Until the traffic simulator has seen the VirtualService, the canary service gets load
    // of its own; wait for a stretch routed by the VirtualService.
    eventually(
        "requests routed by the header route",
        Duration::from_secs(5),
        || async {
            let (stable, canary, _) = istio_share(&url, 200.0).await;
            (canary > 0.0 && canary / (stable + canary) < 0.2).then_some(())
        },
    )
    .await;
    let (stable, canary, _) = istio_share(&url, 1000.0).await;
    let share = canary / (stable + canary);
    // The default load has 10 % of requests carrying `X-Canary: true`.
    assert!((share - 0.10).abs() < 0.02, "header share {share}");
}

#[tokio::test]
async fn nginx_canary_ingress_weight_splits_ingress_traffic() {
    let sim = sim().await;
    let url = sim.metrics_url().expect("metrics url");
    two_versions(&sim).await;
    let ingresses = Api::<Ingress>::namespaced(sim.client(), "default");
    let ingress = |name: &str, service: &str, annotations: Value| -> Ingress {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {"rules": [{"host": "web.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]}
        }))
        .expect("valid ingress")
    };
    ingresses
        .create(
            &PostParams::default(),
            &ingress("web", "web-stable", json!({})),
        )
        .await
        .expect("create stable ingress");
    ingresses
        .create(
            &PostParams::default(),
            &ingress(
                "web-web-canary",
                "web-canary",
                json!({
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": "20"
                }),
            ),
        )
        .await
        .expect("create canary ingress");
    let requests = |s: &Samples, canary: &str| {
        sum(
            s,
            "nginx_ingress_controller_requests",
            &[
                ("ingress", "web"),
                ("namespace", "default"),
                ("canary", canary),
            ],
        )
    };
    let upstream = "default-web-canary-80";
    eventually(
        "requests through the canary ingress",
        Duration::from_secs(5),
        || async {
            let (_, now) = scrape(&url).await;
            (requests(&now, upstream) > 0.0).then_some(())
        },
    )
    .await;
    let (_, before) = scrape(&url).await;
    let after = eventually("1000 ingress requests", Duration::from_secs(10), || async {
        let (_, now) = scrape(&url).await;
        let total = requests(&now, "") + requests(&now, upstream)
            - requests(&before, "")
            - requests(&before, upstream);
        (total >= 1000.0).then_some(now)
    })
    .await;
    let canary = requests(&after, upstream) - requests(&before, upstream);
    let stable = requests(&after, "") - requests(&before, "");
    let share = canary / (canary + stable);
    assert!((share - 0.20).abs() < 0.02, "nginx canary share {share}");
    let (text, _) = scrape(&url).await;
    assert!(text.contains("# TYPE nginx_ingress_controller_request_duration_seconds histogram"));
    assert!(text.contains("le=\"+Inf\""));
}

#[tokio::test]
async fn service_without_router_splits_by_ready_pods_and_reports_versions() {
    let sim = sim().await;
    let url = sim.metrics_url().expect("metrics url");
    versions_without_services(&sim).await;
    Api::<Service>::namespaced(sim.client(), "default")
        .create(
            &PostParams::default(),
            &service("web", json!({"app": "web"})),
        )
        .await
        .expect("create service");
    let (stable, canary) = version_share(&url, 1500.0).await;
    let share = canary / (stable + canary);
    // Two ready stable pods and one ready canary pod behind one selector.
    assert!((share - 1.0 / 3.0).abs() < 0.02, "canary share {share}");

    let (_, samples) = scrape(&url).await;
    let served = sum(
        &samples,
        "istio_requests_total",
        &[
            ("reporter", "destination"),
            ("destination_service_name", "web"),
            ("destination_workload", "web"),
        ],
    );
    assert!(served > 0.0, "the mesh reports the service's requests");

    let versions_url = url.replace("/metrics", "/api/v1/versions?podTemplateHash=c");
    let filtered: Value =
        serde_json::from_str(&http_get(&versions_url).await).expect("json report");
    let versions = filtered["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["replicaSet"], "web-c");
    assert_eq!(versions[0]["readyPods"], 1);
    let error_rate = versions[0]["errorRate"].as_f64().expect("error rate");
    assert!(
        (error_rate - 0.2).abs() < 0.02,
        "canary error rate {error_rate}"
    );
}

#[tokio::test]
async fn destination_without_ready_pods_answers_503() {
    let sim = sim().await;
    let url = sim.metrics_url().expect("metrics url");
    versions_without_services(&sim).await;
    // A service whose selector matches no pod at all.
    Api::<Service>::namespaced(sim.client(), "default")
        .create(
            &PostParams::default(),
            &service("ghost", json!({"app": "ghost"})),
        )
        .await
        .expect("create service");
    let unavailable = eventually(
        "503s for the empty service",
        Duration::from_secs(5),
        || async {
            let (_, now) = scrape(&url).await;
            let n = sum(
                &now,
                "istio_requests_total",
                &[
                    ("reporter", "source"),
                    ("destination_service_name", "ghost"),
                    ("response_code", "503"),
                    ("response_flags", "UH"),
                ],
            );
            (n > 0.0).then_some(now)
        },
    )
    .await;
    let served = sum(
        &unavailable,
        "istio_requests_total",
        &[
            ("destination_service_name", "ghost"),
            ("response_code", "200"),
        ],
    );
    assert_eq!(served, 0.0);
}
