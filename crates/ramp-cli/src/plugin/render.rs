//! Text renderings of rollouts: the `get rollout` tree, the `list rollouts` table and the
//! `history` table. Pure functions of the objects, the current time and a `Style`, so they are
//! snapshot-tested without a cluster.

use super::health::rollout_health;
use super::patches::{POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, revision_of};
use super::style::Style;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use ramp_api::analysis::AnalysisRun;
use ramp_api::rollout::{CanaryStep, Rollout};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Everything `get rollout` shows: the rollout and the objects it owns.
#[derive(Clone, Debug)]
pub struct RolloutFamily {
    pub rollout: Rollout,
    pub replica_sets: Vec<ReplicaSet>,
    pub pods: Vec<Pod>,
    pub analysis_runs: Vec<AnalysisRun>,
}

fn owned_by(meta: &ObjectMeta, kind: &str, owner: &ObjectMeta) -> bool {
    meta.owner_references.iter().flatten().any(|r| {
        r.kind == kind
            && Some(&r.name) == owner.name.as_ref()
            && owner.uid.as_ref().is_none_or(|uid| uid == &r.uid)
    })
}

impl RolloutFamily {
    /// Picks the rollout's own ReplicaSets, their pods and its AnalysisRuns out of everything
    /// in the namespace (by owner reference).
    pub fn select(
        rollout: Rollout,
        replica_sets: impl IntoIterator<Item = ReplicaSet>,
        pods: impl IntoIterator<Item = Pod>,
        analysis_runs: impl IntoIterator<Item = AnalysisRun>,
    ) -> RolloutFamily {
        let replica_sets: Vec<ReplicaSet> = replica_sets
            .into_iter()
            .filter(|rs| owned_by(&rs.metadata, "Rollout", &rollout.metadata))
            .collect();
        let pods = pods
            .into_iter()
            .filter(|pod| {
                replica_sets
                    .iter()
                    .any(|rs| owned_by(&pod.metadata, "ReplicaSet", &rs.metadata))
            })
            .collect();
        let analysis_runs = analysis_runs
            .into_iter()
            .filter(|run| owned_by(&run.metadata, "Rollout", &rollout.metadata))
            .collect();
        RolloutFamily {
            rollout,
            replica_sets,
            pods,
            analysis_runs,
        }
    }
}

/// kubectl-style short age: `45s`, `12m`, `5h`, `3d`, `2y`.
pub fn age(created: Option<&Time>, now: Timestamp) -> String {
    let Some(created) = created else {
        return "-".to_owned();
    };
    let seconds = now.as_second().saturating_sub(created.0.as_second()).max(0);
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 365 * 86_400 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

fn hash_of(meta: &ObjectMeta) -> Option<&str> {
    meta.labels
        .as_ref()?
        .get(POD_TEMPLATE_HASH_LABEL)
        .map(String::as_str)
}

fn template_images(template: Option<&PodTemplateSpec>) -> Vec<String> {
    template
        .and_then(|t| t.spec.as_ref())
        .map(|spec| {
            spec.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The role markers of a ReplicaSet: stable, canary, active, preview.
fn markers(rollout: &Rollout, hash: Option<&str>) -> Vec<&'static str> {
    let Some(hash) = hash else {
        return Vec::new();
    };
    let Some(status) = &rollout.status else {
        return Vec::new();
    };
    let mut marks = Vec::new();
    let stable = status.stable_rs.as_deref() == Some(hash);
    if rollout.spec.canary().is_some() {
        if stable {
            marks.push("stable");
        } else if status.current_pod_hash.as_deref() == Some(hash) {
            marks.push("canary");
        }
    } else if rollout.spec.blue_green().is_some() {
        if stable {
            marks.push("stable");
        }
        let bg = status.blue_green.as_ref();
        if bg.and_then(|b| b.active_selector.as_deref()) == Some(hash) {
            marks.push("active");
        }
        if bg.and_then(|b| b.preview_selector.as_deref()) == Some(hash) {
            marks.push("preview");
        }
    }
    marks
}

/// `currentStepIndex` when it points at a step (none once all steps are done).
fn current_step(rollout: &Rollout) -> Option<(usize, &CanaryStep)> {
    let steps = rollout.spec.steps();
    if steps.is_empty() {
        return None;
    }
    let index = rollout
        .status
        .as_ref()
        .and_then(|s| s.current_step_index)
        .unwrap_or(0);
    let index = usize::try_from(index).ok()?;
    steps.get(index).map(|step| (index, step))
}

/// The weight the steps ask for now (upstream's "SetWeight").
pub fn set_weight(rollout: &Rollout) -> i32 {
    if rollout.status.as_ref().is_some_and(|s| s.is_aborted()) {
        return 0;
    }
    let Some((index, _)) = current_step(rollout) else {
        return 100;
    };
    rollout.spec.steps()[..=index]
        .iter()
        .rev()
        .find_map(|step| step.set_weight)
        .unwrap_or(0)
}

/// The weight really served: the router's recorded canary weight with traffic routing, the
/// canary's share of available pods without it.
pub fn actual_weight(family: &RolloutFamily) -> i32 {
    let rollout = &family.rollout;
    if current_step(rollout).is_none() {
        return 100;
    }
    let Some(status) = &rollout.status else {
        return 0;
    };
    let available = status.available_replicas.unwrap_or(0);
    if available <= 0 {
        return 0;
    }
    let routed = rollout
        .spec
        .canary()
        .is_some_and(|c| c.traffic_routing.is_some());
    if routed {
        return status
            .canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .map(|w| w.canary.weight)
            .unwrap_or_else(|| set_weight(rollout));
    }
    family
        .replica_sets
        .iter()
        .filter(|rs| markers(rollout, hash_of(&rs.metadata)).contains(&"canary"))
        .map(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
                * 100
                / available
        })
        .next()
        .unwrap_or(0)
}

/// One line of a canary step list.
pub fn describe_step(step: &CanaryStep) -> String {
    if let Some(weight) = step.set_weight {
        return format!("setWeight: {weight}");
    }
    if let Some(pause) = &step.pause {
        return match &pause.duration {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(s)) => {
                format!("pause: {s}s")
            }
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => {
                format!("pause: {s}")
            }
            None => "pause: until promoted".to_owned(),
        };
    }
    if let Some(analysis) = &step.analysis {
        let names: Vec<&str> = analysis
            .templates
            .iter()
            .flatten()
            .filter_map(|t| t.template_name.as_deref())
            .collect();
        return format!("analysis: {}", names.join(", "));
    }
    if let Some(experiment) = &step.experiment {
        let names: Vec<&str> = experiment
            .templates
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        return format!("experiment: {}", names.join(", "));
    }
    if let Some(scale) = &step.set_canary_scale {
        if let Some(replicas) = scale.replicas {
            return format!("setCanaryScale: {replicas} replicas");
        }
        if let Some(weight) = scale.weight {
            return format!("setCanaryScale: {weight}%");
        }
        return "setCanaryScale: match traffic weight".to_owned();
    }
    if let Some(route) = &step.set_header_route {
        return format!("setHeaderRoute: {}", route.name.as_deref().unwrap_or("-"));
    }
    if let Some(route) = &step.set_mirror_route {
        return format!("setMirrorRoute: {}", route.name);
    }
    if let Some(plugin) = &step.plugin {
        return format!("plugin: {}", plugin.name);
    }
    "(empty step)".to_owned()
}

fn strategy_name(rollout: &Rollout) -> &'static str {
    if rollout.spec.canary().is_some() {
        "Canary"
    } else if rollout.spec.blue_green().is_some() {
        "BlueGreen"
    } else {
        "-"
    }
}

/// `i/n` for a canary with steps.
fn step_progress(rollout: &Rollout) -> Option<String> {
    let steps = rollout.spec.steps();
    if rollout.spec.canary().is_none() || steps.is_empty() {
        return None;
    }
    let index = rollout
        .status
        .as_ref()
        .and_then(|s| s.current_step_index)
        .unwrap_or(0);
    Some(format!("{index}/{}", steps.len()))
}

/// A node of the tree below the rollout.
struct Node {
    label: String,
    kind: &'static str,
    status: String,
    age: String,
    info: String,
    children: Vec<Node>,
}

fn replica_set_status(rs: &ReplicaSet) -> &'static str {
    let desired = rs.spec.replicas.unwrap_or(1);
    let available = rs
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    if desired == 0 {
        "ScaledDown"
    } else if available >= desired {
        "Healthy"
    } else {
        "Progressing"
    }
}

/// A pod's status as kubectl shows it: a waiting or terminated reason wins over the phase.
pub fn pod_status(pod: &Pod) -> String {
    if pod.metadata.deletion_timestamp.is_some() {
        return "Terminating".to_owned();
    }
    let status = pod.status.as_ref();
    for container in status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
    {
        let state = container.state.as_ref();
        if let Some(reason) = state
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
        {
            return reason;
        }
        if let Some(reason) = state
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.reason.clone())
        {
            return reason;
        }
    }
    status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".to_owned())
}

fn pod_node(pod: &Pod, now: Timestamp, style: &Style) -> Node {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let total = pod
        .spec
        .as_ref()
        .map(|s| s.containers.len())
        .unwrap_or(statuses.len());
    let ready = statuses.iter().filter(|c| c.ready).count();
    let restarts: i32 = statuses.iter().map(|c| c.restart_count).sum();
    let mut info = format!("ready:{ready}/{total}");
    if restarts > 0 {
        let _ = write!(info, ",restarts:{restarts}");
    }
    Node {
        label: pod.metadata.name.clone().unwrap_or_default(),
        kind: "Pod",
        status: style.status(&pod_status(pod)),
        age: age(pod.metadata.creation_timestamp.as_ref(), now),
        info,
        children: Vec::new(),
    }
}

fn analysis_run_node(run: &AnalysisRun, now: Timestamp, style: &Style) -> Node {
    let status = run.status.as_ref();
    let phase = status
        .map(|s| s.phase.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("Pending");
    let metrics = status
        .and_then(|s| s.metric_results.as_ref())
        .cloned()
        .unwrap_or_default();
    let mut totals = (0, 0, 0, 0);
    let children = metrics
        .iter()
        .map(|m| {
            let counts = (
                m.successful.unwrap_or(0),
                m.failed.unwrap_or(0),
                m.inconclusive.unwrap_or(0),
                m.error.unwrap_or(0),
            );
            totals.0 += counts.0;
            totals.1 += counts.1;
            totals.2 += counts.2;
            totals.3 += counts.3;
            let mut info = style.counters(counts.0, counts.1, counts.2, counts.3);
            if let Some(value) = m.last_measurement().and_then(|x| x.value.as_deref()) {
                let _ = write!(info, " last:{value}");
            }
            Node {
                label: m.name.clone(),
                kind: "Metric",
                status: style.status(if m.phase.is_empty() {
                    "Pending"
                } else {
                    &m.phase
                }),
                age: String::new(),
                info,
                children: Vec::new(),
            }
        })
        .collect();
    Node {
        label: run.metadata.name.clone().unwrap_or_default(),
        kind: "AnalysisRun",
        status: style.status(phase),
        age: age(run.metadata.creation_timestamp.as_ref(), now),
        info: style.counters(totals.0, totals.1, totals.2, totals.3),
        children,
    }
}

fn analysis_run_revision(run: &AnalysisRun, replica_sets: &[ReplicaSet]) -> Option<i64> {
    let annotated = run
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok());
    annotated.or_else(|| {
        let hash = hash_of(&run.metadata)?;
        replica_sets
            .iter()
            .find(|rs| hash_of(&rs.metadata) == Some(hash))
            .and_then(revision_of)
    })
}

fn revision_nodes(family: &RolloutFamily, now: Timestamp, style: &Style) -> Vec<Node> {
    let rollout = &family.rollout;
    let mut by_revision: BTreeMap<i64, Vec<Node>> = BTreeMap::new();
    let mut replica_sets: Vec<&ReplicaSet> = family.replica_sets.iter().collect();
    replica_sets.sort_by_key(|rs| rs.metadata.name.clone());
    for rs in replica_sets {
        let mut pods: Vec<&Pod> = family
            .pods
            .iter()
            .filter(|p| owned_by(&p.metadata, "ReplicaSet", &rs.metadata))
            .collect();
        pods.sort_by_key(|p| p.metadata.name.clone());
        let mut info = markers(rollout, hash_of(&rs.metadata)).join(",");
        if let Some(deadline) = rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("scale-down-deadline"))
            .and_then(|d| d.parse::<Timestamp>().ok())
        {
            let left = deadline.as_second() - now.as_second();
            let delay = if left > 0 {
                format!("delay:{left}s")
            } else {
                "delay:passed".to_owned()
            };
            info = if info.is_empty() {
                delay
            } else {
                format!("{info},{delay}")
            };
        }
        by_revision
            .entry(revision_of(rs).unwrap_or(0))
            .or_default()
            .push(Node {
                label: rs.metadata.name.clone().unwrap_or_default(),
                kind: "ReplicaSet",
                status: style.status(replica_set_status(rs)),
                age: age(rs.metadata.creation_timestamp.as_ref(), now),
                info,
                children: pods.iter().map(|p| pod_node(p, now, style)).collect(),
            });
    }
    let mut runs: Vec<&AnalysisRun> = family.analysis_runs.iter().collect();
    runs.sort_by_key(|r| r.metadata.name.clone());
    for run in runs {
        let revision = analysis_run_revision(run, &family.replica_sets).unwrap_or(0);
        by_revision
            .entry(revision)
            .or_default()
            .push(analysis_run_node(run, now, style));
    }
    by_revision
        .into_iter()
        .rev()
        .map(|(revision, children)| Node {
            label: if revision > 0 {
                format!("revision:{revision}")
            } else {
                "revision:unknown".to_owned()
            },
            kind: "Revision",
            status: String::new(),
            age: String::new(),
            info: String::new(),
            children,
        })
        .collect()
}

fn flatten(
    node: &Node,
    prefix: &str,
    last: bool,
    root: bool,
    style: &Style,
    rows: &mut Vec<[String; 5]>,
) {
    let glyphs = style.tree();
    let (lead, child_prefix) = if root {
        (String::new(), String::new())
    } else if last {
        (
            format!("{prefix}{}", glyphs.last),
            format!("{prefix}{}", glyphs.blank),
        )
    } else {
        (
            format!("{prefix}{}", glyphs.branch),
            format!("{prefix}{}", glyphs.pipe),
        )
    };
    let kind = if node.kind == "Revision" {
        ""
    } else {
        node.kind
    };
    rows.push([
        format!("{lead}{}{}", style.kind_icon(node.kind), node.label),
        kind.to_owned(),
        node.status.clone(),
        node.age.clone(),
        node.info.clone(),
    ]);
    let count = node.children.len();
    for (i, child) in node.children.iter().enumerate() {
        flatten(child, &child_prefix, i + 1 == count, false, style, rows);
    }
}

/// Left-aligned columns two spaces apart; trailing blanks trimmed.
pub fn columns(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; width];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(Style::width(cell));
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - Style::width(cell) + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `get rollout` view: a summary of the rollout, then its tree.
pub fn rollout_tree(family: &RolloutFamily, now: Timestamp, style: &Style) -> String {
    let rollout = &family.rollout;
    let status = rollout.status.clone().unwrap_or_default();
    let health = rollout_health(rollout);
    let mut out = String::new();
    let field = |out: &mut String, key: &str, value: &str| {
        let label = if key.is_empty() {
            String::new()
        } else {
            format!("{key}:")
        };
        let _ = writeln!(out, "{label:<17}{value}");
    };
    field(
        &mut out,
        "Name",
        rollout.metadata.name.as_deref().unwrap_or(""),
    );
    field(
        &mut out,
        "Namespace",
        rollout.metadata.namespace.as_deref().unwrap_or(""),
    );
    field(&mut out, "Status", &style.status(&health.phase));
    if !health.message.is_empty() {
        field(&mut out, "Message", &health.message);
    }
    field(&mut out, "Strategy", strategy_name(rollout));
    if rollout.spec.canary().is_some() {
        if let Some(progress) = step_progress(rollout) {
            field(&mut out, "  Step", &progress);
        }
        field(&mut out, "  SetWeight", &set_weight(rollout).to_string());
        field(
            &mut out,
            "  ActualWeight",
            &actual_weight(family).to_string(),
        );
    }
    let steps = rollout.spec.steps();
    if !steps.is_empty() {
        out.push_str("Steps:\n");
        let current = current_step(rollout).map(|(i, _)| i);
        for (i, step) in steps.iter().enumerate() {
            let marker = if Some(i) == current {
                style.current_step_marker()
            } else {
                " ".to_owned()
            };
            let _ = writeln!(out, "  {marker} {i}: {}", describe_step(step));
        }
    }
    let mut images: Vec<(String, Vec<&'static str>)> = Vec::new();
    let mut replica_sets: Vec<&ReplicaSet> = family.replica_sets.iter().collect();
    replica_sets.sort_by_key(|rs| std::cmp::Reverse(revision_of(rs)));
    for rs in replica_sets {
        let marks = markers(rollout, hash_of(&rs.metadata));
        if marks.is_empty() {
            continue;
        }
        for image in template_images(rs.spec.template.as_ref()) {
            match images.iter_mut().find(|(i, _)| *i == image) {
                Some((_, existing)) => {
                    for m in &marks {
                        if !existing.contains(m) {
                            existing.push(m);
                        }
                    }
                }
                None => images.push((image, marks.clone())),
            }
        }
    }
    if images.is_empty() {
        images = template_images(rollout.spec.template.as_ref())
            .into_iter()
            .map(|i| (i, Vec::new()))
            .collect();
    }
    for (i, (image, marks)) in images.iter().enumerate() {
        let text = if marks.is_empty() {
            image.clone()
        } else {
            format!("{image} ({})", marks.join(", "))
        };
        field(&mut out, if i == 0 { "Images" } else { "" }, &text);
    }
    out.push_str("Replicas:\n");
    field(&mut out, "  Desired", &rollout.spec.replicas().to_string());
    field(
        &mut out,
        "  Current",
        &status.replicas.unwrap_or(0).to_string(),
    );
    field(
        &mut out,
        "  Updated",
        &status.updated_replicas.unwrap_or(0).to_string(),
    );
    field(
        &mut out,
        "  Ready",
        &status.ready_replicas.unwrap_or(0).to_string(),
    );
    field(
        &mut out,
        "  Available",
        &status.available_replicas.unwrap_or(0).to_string(),
    );
    out.push('\n');

    let root = Node {
        label: rollout.metadata.name.clone().unwrap_or_default(),
        kind: "Rollout",
        status: style.status(&health.phase),
        age: age(rollout.metadata.creation_timestamp.as_ref(), now),
        info: String::new(),
        children: revision_nodes(family, now, style),
    };
    let mut rows = vec![[
        "NAME".to_owned(),
        "KIND".to_owned(),
        "STATUS".to_owned(),
        "AGE".to_owned(),
        "INFO".to_owned(),
    ]];
    flatten(&root, "", true, true, style, &mut rows);
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    out.push_str(&columns(&rows));
    out
}

/// One row of `list rollouts`.
fn list_row(rollout: &Rollout, with_namespace: bool) -> Vec<String> {
    let health = rollout_health(rollout);
    let status = rollout.status.clone().unwrap_or_default();
    let family = RolloutFamily {
        rollout: rollout.clone(),
        replica_sets: Vec::new(),
        pods: Vec::new(),
        analysis_runs: Vec::new(),
    };
    let (set, actual) = if rollout.spec.canary().is_some() {
        let routed = rollout
            .spec
            .canary()
            .is_some_and(|c| c.traffic_routing.is_some());
        let actual = if routed {
            actual_weight(&family).to_string()
        } else {
            // Without the ReplicaSets the split of available pods is unknown; the updated
            // share of available pods is the closest a list can show.
            match (status.available_replicas, status.updated_replicas) {
                _ if current_step(rollout).is_none() => "100".to_owned(),
                (Some(available), Some(updated)) if available > 0 => {
                    (updated.min(available) * 100 / available).to_string()
                }
                _ => "0".to_owned(),
            }
        };
        (set_weight(rollout).to_string(), actual)
    } else {
        ("-".to_owned(), "-".to_owned())
    };
    let mut row = Vec::new();
    if with_namespace {
        row.push(rollout.metadata.namespace.clone().unwrap_or_default());
    }
    row.extend([
        rollout.metadata.name.clone().unwrap_or_default(),
        strategy_name(rollout).to_owned(),
        health.phase,
        step_progress(rollout).unwrap_or_else(|| "-".to_owned()),
        set,
        actual,
        status.ready_replicas.unwrap_or(0).to_string(),
        rollout.spec.replicas().to_string(),
        status.updated_replicas.unwrap_or(0).to_string(),
        status.available_replicas.unwrap_or(0).to_string(),
    ]);
    row
}

/// The `list rollouts` table, sorted by namespace and name.
pub fn rollout_table(rollouts: &[Rollout], with_namespace: bool) -> String {
    let mut sorted: Vec<&Rollout> = rollouts.iter().collect();
    sorted.sort_by_key(|r| (r.metadata.namespace.clone(), r.metadata.name.clone()));
    let mut header: Vec<String> = Vec::new();
    if with_namespace {
        header.push("NAMESPACE".to_owned());
    }
    header.extend(
        [
            "NAME",
            "STRATEGY",
            "STATUS",
            "STEP",
            "SET-WEIGHT",
            "ACTUAL-WEIGHT",
            "READY",
            "DESIRED",
            "UP-TO-DATE",
            "AVAILABLE",
        ]
        .map(str::to_owned),
    );
    let mut rows = vec![header];
    rows.extend(sorted.iter().map(|r| list_row(r, with_namespace)));
    columns(&rows)
}

/// One revision in `history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub revision: i64,
    pub replica_set: String,
    pub images: Vec<String>,
    /// RFC 3339 creation time of the revision's ReplicaSet.
    pub created: Option<String>,
    /// `stable`, `in progress`, `paused`, `aborted`, `superseded` or `rolled back to (rev N)`.
    pub outcome: String,
}

const REVISION_HISTORY_ANNOTATION: &str = "rollout.argoproj.io/revision-history";

/// The rollout's revisions, newest first, with how each one ended as far as the objects tell:
/// the stable one, the current update (in progress, paused or aborted), revisions an undo went
/// back to, and revisions that were replaced.
pub fn history(family: &RolloutFamily) -> Vec<HistoryEntry> {
    let rollout = &family.rollout;
    let status = rollout.status.clone().unwrap_or_default();
    let health = rollout_health(rollout);
    let mut entries: Vec<HistoryEntry> = family
        .replica_sets
        .iter()
        .filter_map(|rs| {
            let revision = revision_of(rs)?;
            let hash = hash_of(&rs.metadata);
            let is_stable = hash.is_some() && hash == status.stable_rs.as_deref();
            let is_current = hash.is_some() && hash == status.current_pod_hash.as_deref();
            let earlier: Vec<&str> = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_HISTORY_ANNOTATION))
                .map(|h| h.split(',').collect())
                .unwrap_or_default();
            let outcome = if is_current && !is_stable {
                if status.is_aborted() {
                    "aborted".to_owned()
                } else if health.phase == "Paused" {
                    "paused".to_owned()
                } else {
                    "in progress".to_owned()
                }
            } else if is_stable && !earlier.is_empty() {
                format!(
                    "stable (rolled back to, was revision {})",
                    earlier.join(",")
                )
            } else if is_stable {
                "stable".to_owned()
            } else {
                "superseded".to_owned()
            };
            Some(HistoryEntry {
                revision,
                replica_set: rs.metadata.name.clone().unwrap_or_default(),
                images: template_images(rs.spec.template.as_ref()),
                created: rs
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                outcome,
            })
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.revision));
    entries
}

pub fn history_table(entries: &[HistoryEntry]) -> String {
    let mut rows = vec![
        ["REVISION", "REPLICASET", "IMAGES", "CREATED", "OUTCOME"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for e in entries {
        rows.push(vec![
            e.revision.to_string(),
            e.replica_set.clone(),
            e.images.join(","),
            e.created.clone().unwrap_or_else(|| "-".to_owned()),
            e.outcome.clone(),
        ]);
    }
    columns(&rows)
}
