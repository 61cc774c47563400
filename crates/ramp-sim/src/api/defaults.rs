//! The defaults a real API server fills into built-in objects on every write, so that what a
//! controller reads back from the sim is what it would read from a real cluster: the pod spec
//! of Pods and of every pod template (restart and DNS policy, grace period, scheduler, image
//! pull policy, termination message, probe timings, port protocols), the fields of Deployments
//! and ReplicaSets left out, and a Service's type, affinity, traffic policy, target ports and
//! allocated cluster IP (kept across updates, as the real registry does). Found by the
//! differential test of the two tiers (ramp-controller's `tier_differential`).
//! Admission plugins' additions (ServiceAccount token volumes, default tolerations) are not
//! emulated; the validation that follows defaulting is in `validation.rs`.

use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU32, Ordering};

/// Fills the defaults of a built-in object of `group`/`plural` being written over `old`.
pub fn apply(group: &str, plural: &str, old: Option<&Value>, object: &mut Value) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    match (group, plural) {
        ("", "pods") => pod_spec(spec, true),
        ("apps", "replicasets") => {
            spec.entry("replicas").or_insert(json!(1));
            template(spec, true);
        }
        ("apps", "deployments") => {
            deployment(spec);
            template(spec, true);
        }
        ("apps", "statefulsets" | "daemonsets") | ("", "replicationcontrollers") => {
            template(spec, true);
        }
        // A Job's template must name its restart policy; the real server refuses one that does
        // not, so none is made up here.
        ("batch", "jobs") => template(spec, false),
        ("batch", "cronjobs") => {
            if let Some(job) = spec
                .get_mut("jobTemplate")
                .and_then(|t| t.get_mut("spec"))
                .and_then(Value::as_object_mut)
            {
                template(job, false);
            }
        }
        ("", "services") => service(spec, old.and_then(|o| o.get("spec"))),
        _ => {}
    }
}

fn template(spec: &mut Map<String, Value>, restart_policy: bool) {
    if let Some(pod) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        pod_spec(pod, restart_policy);
    }
}

fn pod_spec(spec: &mut Map<String, Value>, restart_policy: bool) {
    if restart_policy {
        spec.entry("restartPolicy").or_insert(json!("Always"));
    }
    spec.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    spec.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    spec.entry("securityContext").or_insert(json!({}));
    spec.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        for container in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            self::container(container);
        }
    }
}

fn container(container: &mut Map<String, Value>) {
    container
        .entry("terminationMessagePath")
        .or_insert(json!("/dev/termination-log"));
    container
        .entry("terminationMessagePolicy")
        .or_insert(json!("File"));
    container.entry("resources").or_insert(json!({}));
    if !container.contains_key("imagePullPolicy") {
        let image = container
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        container.insert("imagePullPolicy".into(), json!(pull_policy(image)));
    }
    for port in container
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        port.entry("protocol").or_insert(json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = container.get_mut(probe).and_then(Value::as_object_mut) {
            probe.entry("timeoutSeconds").or_insert(json!(1));
            probe.entry("periodSeconds").or_insert(json!(10));
            probe.entry("successThreshold").or_insert(json!(1));
            probe.entry("failureThreshold").or_insert(json!(3));
        }
    }
}

/// `Always` for an image without a tag or tagged `latest` (a digest pins it), `IfNotPresent`
/// otherwise.
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // A tag follows the last ':' after the last '/' (a registry may carry a port).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn deployment(spec: &mut Map<String, Value>) {
    spec.entry("replicas").or_insert(json!(1));
    spec.entry("revisionHistoryLimit").or_insert(json!(10));
    spec.entry("progressDeadlineSeconds").or_insert(json!(600));
    let strategy = spec.entry("strategy").or_insert(json!({})).as_object_mut();
    if let Some(strategy) = strategy {
        strategy.entry("type").or_insert(json!("RollingUpdate"));
        if strategy.get("type") == Some(&json!("RollingUpdate")) {
            let rolling = strategy.entry("rollingUpdate").or_insert(json!({}));
            if let Some(rolling) = rolling.as_object_mut() {
                rolling.entry("maxSurge").or_insert(json!("25%"));
                rolling.entry("maxUnavailable").or_insert(json!("25%"));
            }
        }
    }
}

/// The next address of the service range (10.96.0.0/12, as kube-apiserver's default), from
/// 10.96.0.10 on; unique for the process, which is all a controller can observe.
fn next_cluster_ip() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(10);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % (1 << 20);
    format!("10.{}.{}.{}", 96 + (n >> 16), (n >> 8) & 0xff, n & 0xff)
}

fn next_node_port() -> i64 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    30000 + i64::from(NEXT.fetch_add(1, Ordering::Relaxed) % 2768)
}

fn service(spec: &mut Map<String, Value>, old: Option<&Value>) {
    spec.entry("type").or_insert(json!("ClusterIP"));
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    spec.entry("sessionAffinity").or_insert(json!("None"));
    if kind == "ExternalName" {
        return;
    }
    spec.entry("internalTrafficPolicy")
        .or_insert(json!("Cluster"));
    let node_ports = matches!(kind.as_str(), "NodePort" | "LoadBalancer");
    if node_ports {
        spec.entry("externalTrafficPolicy")
            .or_insert(json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        spec.entry("allocateLoadBalancerNodePorts")
            .or_insert(json!(true));
    }
    // What the registry allocated stays when an update leaves it out.
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        if !spec.contains_key(field)
            && let Some(kept) = old.and_then(|o| o.get(field))
        {
            spec.insert(field.into(), kept.clone());
        }
    }
    if !spec.contains_key("clusterIP") {
        let ip = spec
            .get("clusterIPs")
            .and_then(|ips| ips.get(0))
            .cloned()
            .unwrap_or_else(|| json!(next_cluster_ip()));
        spec.insert("clusterIP".into(), ip);
    }
    if !spec.contains_key("clusterIPs") {
        let ip = spec["clusterIP"].clone();
        spec.insert("clusterIPs".into(), json!([ip]));
    }
    spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
    spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
    let old_ports = old
        .and_then(|o| o.get("ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        port.entry("protocol").or_insert(json!("TCP"));
        if !port.contains_key("targetPort")
            && let Some(number) = port.get("port").cloned()
        {
            port.insert("targetPort".into(), number);
        }
        if node_ports && !port.contains_key("nodePort") {
            let kept = old_ports
                .iter()
                .find(|p| p.get("port") == port.get("port"))
                .and_then(|p| p.get("nodePort"))
                .cloned();
            port.insert(
                "nodePort".into(),
                kept.unwrap_or_else(|| json!(next_node_port())),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_replica_sets_pod_template_gets_the_real_servers_defaults() {
        let mut rs = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "web:v1", "ports": [{"containerPort": 8080}],
             "readinessProbe": {"httpGet": {"path": "/", "port": 8080}}},
            {"name": "sidecar", "image": "registry:5000/proxy"}
        ]}}}});
        apply("apps", "replicasets", None, &mut rs);
        assert_eq!(
            rs,
            json!({"spec": {"replicas": 1, "template": {"spec": {
                "containers": [
                    {"name": "web", "image": "web:v1", "imagePullPolicy": "IfNotPresent",
                     "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                     "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "timeoutSeconds": 1,
                        "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                     "resources": {}, "terminationMessagePath": "/dev/termination-log",
                     "terminationMessagePolicy": "File"},
                    {"name": "sidecar", "image": "registry:5000/proxy", "imagePullPolicy": "Always",
                     "resources": {}, "terminationMessagePath": "/dev/termination-log",
                     "terminationMessagePolicy": "File"}
                ],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30
            }}}})
        );
    }

    #[test]
    fn set_fields_are_kept_and_a_jobs_restart_policy_is_not_made_up() {
        let mut job = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:latest", "imagePullPolicy": "Never"}],
            "dnsPolicy": "Default"
        }}}});
        apply("batch", "jobs", None, &mut job);
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["dnsPolicy"], "Default");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Never");
        assert!(pod.get("restartPolicy").is_none());
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy("host:5000/nginx"), "Always");
        assert_eq!(pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn a_service_gets_an_address_that_updates_keep() {
        let mut created = json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        apply("", "services", None, &mut created);
        let spec = &created["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(
            spec["ports"],
            json!([{"port": 80, "protocol": "TCP", "targetPort": 80}])
        );
        let ip = spec["clusterIP"].as_str().expect("an address").to_owned();
        assert!(ip.starts_with("10.9"), "{ip}");
        assert_eq!(spec["clusterIPs"], json!([ip]));

        let mut updated = json!({"spec": {"selector": {"app": "other"}, "ports": [{"port": 80}]}});
        apply("", "services", Some(&created), &mut updated);
        assert_eq!(updated["spec"]["clusterIP"], json!(ip));
        assert_eq!(updated["spec"]["clusterIPs"], json!([ip]));
    }

    #[test]
    fn a_node_port_service_keeps_its_node_ports() {
        let mut created = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        apply("", "services", None, &mut created);
        let node_port = created["spec"]["ports"][0]["nodePort"]
            .as_i64()
            .expect("a node port");
        assert!((30000..=32767).contains(&node_port));
        assert_eq!(created["spec"]["externalTrafficPolicy"], "Cluster");
        let mut updated = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        apply("", "services", Some(&created), &mut updated);
        assert_eq!(updated["spec"]["ports"][0]["nodePort"], json!(node_port));
    }
}
