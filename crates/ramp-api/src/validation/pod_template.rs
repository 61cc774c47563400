//! The pod-template rules the Kubernetes API server applies to a Pod and to a ReplicaSet's
//! template (its `ValidatePodSpec` and `ValidatePodTemplateSpecForReplicaSet`), worded as it
//! words them, so that `ramp lint`, the controller's `InvalidSpec` and ramp-sim's 422 agree with
//! what a real cluster would refuse. Only the rules a manifest commonly breaks are here (names,
//! images, ports, environment, volumes and their mounts, probes, policies); resource quantities,
//! security contexts, affinity and labels are left to the server. A template is judged as the
//! server judges it after defaulting: a field the server defaults (restart, DNS and pull
//! policies, port protocols, probe thresholds) may be left out. No I/O.

use super::{FieldPath, Problem, Problems};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Probe, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeSet;

/// Which object a pod spec belongs to: the restart policy it may have depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodOwner {
    /// A Pod: any of Always, OnFailure, Never.
    Pod,
    /// The template of a ReplicaSet (and of a Deployment, Rollout or Experiment, whose
    /// ReplicaSets take it): Always only, and no activeDeadlineSeconds.
    ReplicaSet,
    /// The template of a Job: its restart policy is checked by the caller.
    Job,
}

/// Every problem of a ReplicaSet's pod template at `path` (e.g. `spec.template`).
pub fn validate_replica_set_template(template: &PodTemplateSpec, path: &FieldPath) -> Vec<Problem> {
    let mut problems = Problems::default();
    check_template(&mut problems, path, template, PodOwner::ReplicaSet);
    problems.into_vec()
}

/// Every problem of a Pod's spec at `path` (e.g. `spec`).
pub fn validate_pod_spec(spec: &PodSpec, path: &FieldPath) -> Vec<Problem> {
    let mut problems = Problems::default();
    check_pod_spec(&mut problems, path, spec, PodOwner::Pod);
    problems.into_vec()
}

/// A pod template: its spec, which must be there (a template without one has no containers).
pub(crate) fn check_template(
    problems: &mut Problems,
    path: &FieldPath,
    template: &PodTemplateSpec,
    owner: PodOwner,
) {
    let spec_path = path.child("spec");
    match &template.spec {
        Some(spec) => check_pod_spec(problems, &spec_path, spec, owner),
        None => problems.error(&spec_path.child("containers"), REQUIRED),
    }
}

/// The API server's field-error wordings (`k8s.io/apimachinery`'s `field.Error`).
const REQUIRED: &str = "Required value";

fn invalid(value: impl std::fmt::Debug, detail: &str) -> String {
    format!("Invalid value: {value:?}: {detail}")
}

fn duplicate(value: &str) -> String {
    format!("Duplicate value: {value:?}")
}

fn not_found(value: &str) -> String {
    format!("Not found: {value:?}")
}

fn not_supported(value: &str, supported: &[&str]) -> String {
    let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "Unsupported value: {value:?}: supported values: {}",
        supported.join(", ")
    )
}

fn forbidden(detail: &str) -> String {
    format!("Forbidden: {detail}")
}

const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";
const NEGATIVE: &str = "must be greater than or equal to 0";

pub(crate) fn check_pod_spec(
    problems: &mut Problems,
    path: &FieldPath,
    spec: &PodSpec,
    owner: PodOwner,
) {
    let volumes = check_volumes(
        problems,
        &path.child("volumes"),
        spec.volumes.as_deref().unwrap_or_default(),
    );
    let containers_path = path.child("containers");
    if spec.containers.is_empty() {
        problems.error(&containers_path, REQUIRED);
    }
    let mut names = BTreeSet::new();
    for (index, container) in spec.containers.iter().enumerate() {
        let container_path = containers_path.index(index);
        check_container(problems, &container_path, container, &volumes);
        if !names.insert(container.name.as_str()) {
            problems.error(&container_path.child("name"), duplicate(&container.name));
        }
        for (field, probe, must_be_one) in [
            ("livenessProbe", &container.liveness_probe, true),
            ("readinessProbe", &container.readiness_probe, false),
            ("startupProbe", &container.startup_probe, true),
        ] {
            if let Some(probe) = probe {
                check_probe(problems, &container_path.child(field), probe, must_be_one);
            }
        }
    }
    check_host_ports(problems, &containers_path, &spec.containers);
    // Init containers share the name space of the regular ones.
    let init_path = path.child("initContainers");
    for (index, container) in spec.init_containers.iter().flatten().enumerate() {
        let container_path = init_path.index(index);
        check_container(problems, &container_path, container, &volumes);
        if names.contains(container.name.as_str()) {
            problems.error(&container_path.child("name"), duplicate(&container.name));
        } else if !container.name.is_empty() {
            names.insert(container.name.as_str());
        }
        check_host_ports(problems, &init_path, std::slice::from_ref(container));
    }

    let restart_path = path.child("restartPolicy");
    // An empty policy is defaulted to Always by the server.
    let restart = spec.restart_policy.as_deref().filter(|p| !p.is_empty());
    if owner != PodOwner::Job
        && let Some(policy) = restart.filter(|p| !["Always", "OnFailure", "Never"].contains(p))
    {
        problems.error(
            &restart_path,
            not_supported(policy, &["Always", "OnFailure", "Never"]),
        );
    }
    if let Some(policy) = spec.dns_policy.as_deref() {
        let supported = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
        if !supported.contains(&policy) {
            problems.error(&path.child("dnsPolicy"), not_supported(policy, &supported));
        }
    }
    if let Some(seconds) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&seconds)
    {
        problems.error(
            &path.child("activeDeadlineSeconds"),
            format!("Invalid value: {seconds}: must be between 1 and 2147483647, inclusive"),
        );
    }
    if owner == PodOwner::ReplicaSet {
        // A ReplicaSet's pods are replaced, never finished: the server refuses anything else.
        if let Some(policy) = restart.filter(|p| *p != "Always") {
            problems.error(&restart_path, not_supported(policy, &["Always"]));
        }
        if spec.active_deadline_seconds.is_some() {
            problems.error(
                &path.child("activeDeadlineSeconds"),
                forbidden("activeDeadlineSeconds in ReplicaSet is not Supported"),
            );
        }
    }
}

/// The volume sources, in the order the API server counts them: a second one is reported at
/// its own path (with the server's spelling of two of them).
const VOLUME_SOURCES: [(&str, &str); 30] = [
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

/// Checks the volumes and returns the names of the valid ones, which mounts may refer to.
fn check_volumes<'a>(
    problems: &mut Problems,
    path: &FieldPath,
    volumes: &'a [Volume],
) -> BTreeSet<&'a str> {
    let mut valid = BTreeSet::new();
    for (index, volume) in volumes.iter().enumerate() {
        let volume_path = path.index(index);
        let name_path = volume_path.child("name");
        let mut own = Problems::default();
        let written = serde_json::to_value(volume).unwrap_or_default();
        let mut sources = VOLUME_SOURCES
            .iter()
            .filter(|(json, _)| written.get(json).is_some_and(|v| !v.is_null()));
        // No source at all is defaulted to emptyDir by the server.
        sources.next();
        for (_, field) in sources {
            own.error(
                &volume_path.child(field),
                forbidden("may not specify more than 1 volume type"),
            );
        }
        if volume.name.is_empty() {
            own.error(&name_path, REQUIRED);
        } else {
            for reason in dns1123_label_problems(&volume.name) {
                own.error(&name_path, invalid(&volume.name, &reason));
            }
        }
        if valid.contains(volume.name.as_str()) {
            own.error(&name_path, duplicate(&volume.name));
        }
        let own = own.into_vec();
        if own.is_empty() {
            valid.insert(volume.name.as_str());
        }
        problems.extend(own);
    }
    valid
}

/// The rules common to regular and init containers.
fn check_container(
    problems: &mut Problems,
    path: &FieldPath,
    container: &Container,
    volumes: &BTreeSet<&str>,
) {
    let name_path = path.child("name");
    if container.name.is_empty() {
        problems.error(&name_path, REQUIRED);
    } else {
        for reason in dns1123_label_problems(&container.name) {
            problems.error(&name_path, invalid(&container.name, &reason));
        }
    }
    if container.image.as_deref().is_none_or(str::is_empty) {
        problems.error(&path.child("image"), REQUIRED);
    }
    if let Some(policy) = container.termination_message_policy.as_deref() {
        let supported = ["File", "FallbackToLogsOnError"];
        if !supported.contains(&policy) {
            problems.error(
                &path.child("terminationMessagePolicy"),
                not_supported(policy, &supported),
            );
        }
    }
    check_ports(problems, &path.child("ports"), container);
    let env_path = path.child("env");
    for (index, var) in container.env.iter().flatten().enumerate() {
        let name_path = env_path.index(index).child("name");
        if var.name.is_empty() {
            problems.error(&name_path, REQUIRED);
        } else if var
            .name
            .chars()
            .any(|c| !c.is_ascii_graphic() && c != ' ' || c == '=')
        {
            problems.error(
                &name_path,
                invalid(
                    &var.name,
                    "a valid environment variable name must consist only of printable ASCII characters other than '='",
                ),
            );
        }
    }
    check_mounts(
        problems,
        &path.child("volumeMounts"),
        container.volume_mounts.as_deref().unwrap_or_default(),
        volumes,
    );
    if let Some(policy) = container.image_pull_policy.as_deref() {
        let supported = ["Always", "IfNotPresent", "Never"];
        if !supported.contains(&policy) {
            problems.error(
                &path.child("imagePullPolicy"),
                not_supported(policy, &supported),
            );
        }
    }
}

fn check_ports(problems: &mut Problems, path: &FieldPath, container: &Container) {
    let mut names = BTreeSet::new();
    for (index, port) in container.ports.iter().flatten().enumerate() {
        let port_path = path.index(index);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let reasons = port_name_problems(name);
            for reason in &reasons {
                problems.error(&port_path.child("name"), invalid(name, reason));
            }
            if reasons.is_empty() && !names.insert(name) {
                problems.error(&port_path.child("name"), duplicate(name));
            }
        }
        let container_port = port_path.child("containerPort");
        if port.container_port == 0 {
            problems.error(&container_port, REQUIRED);
        } else if !(1..=65535).contains(&port.container_port) {
            problems.error(
                &container_port,
                format!("Invalid value: {}: {PORT_RANGE}", port.container_port),
            );
        }
        if let Some(host_port) = port
            .host_port
            .filter(|p| *p != 0 && !(1..=65535).contains(p))
        {
            problems.error(
                &port_path.child("hostPort"),
                format!("Invalid value: {host_port}: {PORT_RANGE}"),
            );
        }
        if let Some(protocol) = port.protocol.as_deref() {
            let supported = ["SCTP", "TCP", "UDP"];
            if protocol.is_empty() {
                problems.error(&port_path.child("protocol"), REQUIRED);
            } else if !supported.contains(&protocol) {
                problems.error(
                    &port_path.child("protocol"),
                    not_supported(protocol, &supported),
                );
            }
        }
    }
}

/// Two ports of the containers may not take the same host port, protocol and host address.
fn check_host_ports(problems: &mut Problems, path: &FieldPath, containers: &[Container]) {
    let mut taken = BTreeSet::new();
    for (container_index, container) in containers.iter().enumerate() {
        for (port_index, port) in container.ports.iter().flatten().enumerate() {
            let Some(host_port) = port.host_port.filter(|p| *p != 0) else {
                continue;
            };
            let key = format!(
                "{}/{}/{host_port}",
                port.protocol.as_deref().unwrap_or("TCP"),
                port.host_ip.as_deref().unwrap_or_default()
            );
            if !taken.insert(key.clone()) {
                let port_path = path
                    .index(container_index)
                    .child("ports")
                    .index(port_index)
                    .child("hostPort");
                problems.error(&port_path, duplicate(&key));
            }
        }
    }
}

fn check_mounts(
    problems: &mut Problems,
    path: &FieldPath,
    mounts: &[VolumeMount],
    volumes: &BTreeSet<&str>,
) {
    let mut mount_paths = BTreeSet::new();
    for (index, mount) in mounts.iter().enumerate() {
        let mount_path = path.index(index);
        if mount.name.is_empty() {
            problems.error(&mount_path.child("name"), REQUIRED);
        }
        if !volumes.contains(mount.name.as_str()) {
            problems.error(&mount_path.child("name"), not_found(&mount.name));
        }
        if mount.mount_path.is_empty() {
            problems.error(&mount_path.child("mountPath"), REQUIRED);
        }
        if !mount_paths.insert(mount.mount_path.as_str()) {
            problems.error(
                &mount_path.child("mountPath"),
                invalid(&mount.mount_path, "must be unique"),
            );
        }
    }
}

fn check_probe(problems: &mut Problems, path: &FieldPath, probe: &Probe, must_be_one: bool) {
    let mut handlers = 0;
    if let Some(exec) = &probe.exec {
        handlers += 1;
        if exec.command.as_deref().is_none_or(<[String]>::is_empty) {
            problems.error(&path.child("exec").child("command"), REQUIRED);
        }
    }
    if let Some(http) = &probe.http_get {
        let http_path = path.child("httpGet");
        if handlers > 0 {
            problems.error(
                &http_path,
                forbidden("may not specify more than 1 handler type"),
            );
        } else {
            handlers += 1;
            check_port_num_or_name(problems, &http_path.child("port"), &http.port);
            if let Some(scheme) = http.scheme.as_deref()
                && !["HTTP", "HTTPS"].contains(&scheme)
            {
                problems.error(
                    &http_path.child("scheme"),
                    not_supported(scheme, &["HTTP", "HTTPS"]),
                );
            }
        }
    }
    if let Some(tcp) = &probe.tcp_socket {
        let tcp_path = path.child("tcpSocket");
        if handlers > 0 {
            problems.error(
                &tcp_path,
                forbidden("may not specify more than 1 handler type"),
            );
        } else {
            handlers += 1;
            check_port_num_or_name(problems, &tcp_path.child("port"), &tcp.port);
        }
    }
    if let Some(grpc) = &probe.grpc {
        let grpc_path = path.child("grpc");
        if handlers > 0 {
            problems.error(
                &grpc_path,
                forbidden("may not specify more than 1 handler type"),
            );
        } else {
            handlers += 1;
            check_port_num_or_name(
                problems,
                &grpc_path.child("port"),
                &IntOrString::Int(grpc.port),
            );
        }
    }
    if handlers == 0 {
        problems.error(path, format!("{REQUIRED}: must specify a handler type"));
    }
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if let Some(value) = value.filter(|v| *v < 0) {
            problems.error(
                &path.child(field),
                format!("Invalid value: {value}: {NEGATIVE}"),
            );
        }
    }
    if must_be_one && let Some(threshold) = probe.success_threshold.filter(|t| *t != 1) {
        problems.error(
            &path.child("successThreshold"),
            format!("Invalid value: {threshold}: must be 1"),
        );
    }
}

fn check_port_num_or_name(problems: &mut Problems, path: &FieldPath, port: &IntOrString) {
    match port {
        IntOrString::Int(number) if !(1..=65535).contains(number) => {
            problems.error(path, format!("Invalid value: {number}: {PORT_RANGE}"));
        }
        IntOrString::Int(_) => {}
        IntOrString::String(name) => {
            for reason in port_name_problems(name) {
                problems.error(path, invalid(name, &reason));
            }
        }
    }
}

/// Why `value` is not an RFC 1123 label (container and volume names), in the server's words.
pub(crate) fn dns1123_label_problems(value: &str) -> Vec<String> {
    let mut reasons = Vec::new();
    if value.len() > 63 {
        reasons.push("must be no more than 63 characters".to_owned());
    }
    if !is_dns1123_label(value) {
        if value.split('.').all(is_dns1123_label) {
            reasons.push("must not contain dots".to_owned());
        } else {
            reasons.push(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_owned(),
            );
        }
    }
    reasons
}

fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

/// Why `name` is not an IANA service name (a port's name), in the server's words.
fn port_name_problems(name: &str) -> Vec<String> {
    let mut reasons = Vec::new();
    if name.len() > 15 {
        reasons.push("must be no more than 15 characters".to_owned());
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        reasons.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        reasons.push("must contain at least one letter (a-z)".to_owned());
    }
    if name.contains("--") {
        reasons.push("must not contain consecutive hyphens".to_owned());
    }
    if name.starts_with('-') || name.ends_with('-') {
        reasons.push("must not begin or end with a hyphen".to_owned());
    }
    reasons
}
