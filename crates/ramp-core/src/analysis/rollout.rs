//! The rollout's side of analysis: building the AnalysisRun an update needs from its templates
//! and arguments, following that run's phase, and retiring runs the rollout is done with.
//! Measuring is the AnalysisRun controller's job; nothing here looks at measurements.

use crate::analysis::args::{
    ArgsError, IncludedTemplate, NamedTemplate, field_ref_value, flatten_templates, merge_templates,
};
use crate::plan::Action;
use crate::snapshot::{
    AnalysisRunKind, AnalysisRunSummary, AnalysisTemplates, POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION, ROLLOUT_TYPE_LABEL, STEP_INDEX_LABEL, Snapshot,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use ramp_api::analysis::{AnalysisRun, AnalysisTemplateRef, Argument};
use ramp_api::rollout::{
    AnalysisRunArgument, Rollout, RolloutAnalysis, RolloutAnalysisRunStatus,
    pod_template_hash_value,
};
use std::collections::BTreeMap;

/// Label upstream uses to shard controllers; copied from the rollout onto its runs.
pub const INSTANCE_ID_LABEL: &str = "argo-rollouts.argoproj.io/controller-instance-id";

/// Which run of a rollout: why it exists and for which revision.
#[derive(Clone, Copy, Debug)]
pub struct RunIdentity<'a> {
    pub kind: AnalysisRunKind,
    /// Pod-template hash of the revision under analysis (`Latest`).
    pub hash: &'a str,
    /// Its revision number.
    pub revision: i64,
    /// The step, for step runs.
    pub step_index: Option<i32>,
    /// Hash of the stable ReplicaSet (`Stable`), if there is one.
    pub stable_hash: Option<&'a str>,
}

impl RunIdentity<'_> {
    /// `<rollout>-<hash>-<revision>[-<step>|-pre|-post]`, as upstream names runs.
    pub fn base_name(&self, rollout: &str) -> String {
        let base = format!("{rollout}-{}-{}", self.hash, self.revision);
        match self.kind {
            AnalysisRunKind::Step => format!("{base}-{}", self.step_index.unwrap_or(0)),
            AnalysisRunKind::Background => base,
            AnalysisRunKind::PrePromotion => format!("{base}-pre"),
            AnalysisRunKind::PostPromotion => format!("{base}-post"),
        }
    }

    fn matches(&self, run: &AnalysisRunSummary) -> bool {
        run.kind == self.kind
            && run.pod_template_hash.as_deref() == Some(self.hash)
            && run.revision == Some(self.revision)
            && (self.kind != AnalysisRunKind::Step || run.step_index == self.step_index)
    }
}

/// How the run gating a step or promotion stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Created in this pass, or still measuring.
    Running,
    Successful,
    /// `Failed` or `Error`: the update must abort. Carries upstream's abort cause.
    Failed(String),
    /// The rollout must pause (`InconclusiveAnalysisRun`) until a person decides.
    Inconclusive,
}

/// The outcome of following one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Followed {
    /// What the rollout's status records about the run.
    pub status: RolloutAnalysisRunStatus,
    pub verdict: Verdict,
}

/// Follows the run `id` needs: the newest matching run the rollout is not done with, created
/// when there is none. An Inconclusive run a person resumed from (`recorded` shows it was
/// seen Inconclusive, and `inconclusive_pause` is gone) is retired and replaced by a fresh
/// run, as upstream does on promote.
pub fn follow(
    snap: &Snapshot,
    analysis: &RolloutAnalysis,
    id: &RunIdentity<'_>,
    recorded: Option<&RolloutAnalysisRunStatus>,
    inconclusive_pause: bool,
    actions: &mut Vec<Action>,
) -> Result<Followed, String> {
    let current = snap
        .analysis_runs
        .iter()
        .filter(|r| id.matches(r) && !r.terminate && !retired_in(actions, &r.name))
        .max_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
    let resumed_from = |run: &AnalysisRunSummary| {
        run.phase == "Inconclusive"
            && !inconclusive_pause
            && recorded.is_some_and(|r| r.name == run.name && r.status == "Inconclusive")
    };
    let run = match current {
        Some(run) if resumed_from(run) => {
            actions.push(Action::TerminateAnalysisRun {
                name: run.name.clone(),
            });
            None
        }
        other => other,
    };
    let Some(run) = run else {
        let rollout_name = snap.rollout.metadata.name.as_deref().unwrap_or_default();
        let name = free_name(snap, actions, &id.base_name(rollout_name));
        let created = build_run(snap, analysis, id, &name)?;
        actions.push(Action::CreateAnalysisRun {
            run: Box::new(created),
        });
        return Ok(Followed {
            status: RolloutAnalysisRunStatus {
                name,
                status: "Pending".to_owned(),
                message: None,
            },
            verdict: Verdict::Running,
        });
    };
    let verdict = match run.phase.as_str() {
        "Successful" => Verdict::Successful,
        phase @ ("Failed" | "Error") => Verdict::Failed(failure_cause(id.kind, phase, run)),
        "Inconclusive" => Verdict::Inconclusive,
        _ => Verdict::Running,
    };
    Ok(Followed {
        status: RolloutAnalysisRunStatus {
            name: run.name.clone(),
            status: run.phase.clone(),
            message: run.message.clone(),
        },
        verdict,
    })
}

/// Upstream's wording of an abort caused by a run.
fn failure_cause(kind: AnalysisRunKind, phase: &str, run: &AnalysisRunSummary) -> String {
    let what = match kind {
        AnalysisRunKind::Step => "Step-based analysis",
        AnalysisRunKind::Background => "Background analysis",
        AnalysisRunKind::PrePromotion => "Blue/green pre-promotion analysis",
        AnalysisRunKind::PostPromotion => "Blue/green post-promotion analysis",
    };
    let verb = if phase == "Error" { "error" } else { "failed" };
    match run.message.as_deref().filter(|m| !m.is_empty()) {
        Some(message) => format!("{what} phase {verb}: {message}"),
        None => format!("{what} phase {verb}: AnalysisRun '{}'", run.name),
    }
}

fn retired_in(actions: &[Action], name: &str) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::TerminateAnalysisRun { name: n } if n == name))
}

/// `base`, else `base.1`, `base.2`, ...: the first name no run has (upstream's suffix on a
/// name collision).
fn free_name(snap: &Snapshot, actions: &[Action], base: &str) -> String {
    let taken = |name: &str| {
        snap.analysis_runs.iter().any(|r| r.name == name)
            || actions.iter().any(|a| {
                matches!(a, Action::CreateAnalysisRun { run } if run.metadata.name.as_deref() == Some(name))
            })
    };
    if !taken(base) {
        return base.to_owned();
    }
    (1u32..)
        .map(|n| format!("{base}.{n}"))
        .find(|name| !taken(name))
        .unwrap_or_else(|| base.to_owned())
}

/// The run object for `id`: templates flattened and merged, the rollout's arguments resolved
/// (`podTemplateHashValue`, `fieldRef`), labels and annotations as upstream writes them.
pub fn build_run(
    snap: &Snapshot,
    analysis: &RolloutAnalysis,
    id: &RunIdentity<'_>,
    name: &str,
) -> Result<AnalysisRun, String> {
    let rollout = &snap.rollout;
    let spec = run_spec(rollout, &snap.analysis_templates, analysis, id)?;
    let mut labels = BTreeMap::from([
        (POD_TEMPLATE_HASH_LABEL.to_owned(), id.hash.to_owned()),
        (ROLLOUT_TYPE_LABEL.to_owned(), id.kind.label().to_owned()),
    ]);
    if let Some(step) = id.step_index.filter(|_| id.kind == AnalysisRunKind::Step) {
        labels.insert(STEP_INDEX_LABEL.to_owned(), step.to_string());
    }
    let selector_labels = rollout
        .spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    labels.extend(selector_labels);
    if let Some(instance) = rollout
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(INSTANCE_ID_LABEL))
    {
        labels.insert(INSTANCE_ID_LABEL.to_owned(), instance.clone());
    }
    let mut annotations =
        BTreeMap::from([(REVISION_ANNOTATION.to_owned(), id.revision.to_string())]);
    if let Some(metadata) = &analysis.analysis_run_metadata {
        labels.extend(metadata.labels.clone().unwrap_or_default());
        annotations.extend(metadata.annotations.clone().unwrap_or_default());
    }
    Ok(AnalysisRun {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: rollout.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    })
}

/// The merged spec of the templates `analysis` names, with the rollout's arguments.
pub fn run_spec(
    rollout: &Rollout,
    templates: &AnalysisTemplates,
    analysis: &RolloutAnalysis,
    id: &RunIdentity<'_>,
) -> Result<ramp_api::analysis::AnalysisRunSpec, String> {
    let included = |cluster: bool, name: &str| {
        templates.get(cluster, name).map(|spec| IncludedTemplate {
            display_name: display_name(cluster, name),
            spec: spec.clone(),
        })
    };
    let mut roots = Vec::new();
    for reference in analysis.templates.iter().flatten() {
        let cluster = reference.cluster_scope == Some(true);
        let name = reference.template_name.as_deref().unwrap_or_default();
        let root = included(cluster, name)
            .ok_or_else(|| format!("{} not found", display_name(cluster, name)))?;
        roots.push(root);
    }
    let flattened = flatten_templates(roots, |include: &AnalysisTemplateRef| {
        included(
            include.cluster_scope == Some(true),
            include.template_name.as_deref().unwrap_or_default(),
        )
    })
    .map_err(|e| e.to_string())?;
    let named: Vec<NamedTemplate<'_>> = flattened
        .iter()
        .map(|t| NamedTemplate {
            display_name: &t.display_name,
            spec: &t.spec,
        })
        .collect();
    let incoming = rollout_arguments(rollout, analysis.args.as_deref().unwrap_or_default(), id)?;
    merge_templates(
        &named,
        &incoming,
        analysis.dry_run.as_deref().unwrap_or_default(),
        analysis
            .measurement_retention
            .as_deref()
            .unwrap_or_default(),
    )
    .map_err(|e: ArgsError| e.to_string())
}

fn display_name(cluster: bool, name: &str) -> String {
    if cluster {
        format!("ClusterAnalysisTemplate \"{name}\"")
    } else {
        format!("AnalysisTemplate \"{name}\"")
    }
}

/// The rollout's `args[]` as template arguments: literal values kept, `podTemplateHashValue`
/// and `fieldRef` read now from the rollout (the run records values, not references).
fn rollout_arguments(
    rollout: &Rollout,
    args: &[AnalysisRunArgument],
    id: &RunIdentity<'_>,
) -> Result<Vec<Argument>, String> {
    let mut object: Option<serde_json::Value> = None;
    let mut resolved = Vec::with_capacity(args.len());
    for arg in args {
        let value = if let Some(value) = &arg.value {
            value.clone()
        } else if let Some(from) = &arg.value_from {
            if let Some(which) = &from.pod_template_hash_value {
                match which.as_str() {
                    pod_template_hash_value::STABLE => id.stable_hash.unwrap_or(id.hash).to_owned(),
                    _ => id.hash.to_owned(),
                }
            } else if let Some(field) = &from.field_ref {
                let object = object.get_or_insert_with(|| {
                    serde_json::to_value(rollout).unwrap_or(serde_json::Value::Null)
                });
                field_ref_value(object, &field.field_path).ok_or_else(|| {
                    format!(
                        "args.{}: fieldRef {:?} does not resolve on the Rollout",
                        arg.name, field.field_path
                    )
                })?
            } else {
                return Err(format!("args.{}: valueFrom names no source", arg.name));
            }
        } else {
            return Err(format!("args.{}: neither value nor valueFrom", arg.name));
        };
        resolved.push(Argument {
            name: arg.name.clone(),
            value: Some(value),
            value_from: None,
        });
    }
    Ok(resolved)
}

/// Retires and prunes the rollout's runs once a pass decided which it still `wanted`:
/// a run the rollout moved past that is still measuring is terminated; while the update
/// `aborted`, every run of the revision under update is retired, finished or not, so that a
/// retry starts fresh runs instead of reusing a verdict from before the abort. Finished runs
/// beyond the history limits are deleted, oldest first, never one the status names.
pub fn retire_runs(
    snap: &Snapshot,
    wanted: &[String],
    update_hash: Option<&str>,
    aborted: bool,
    recorded: &[&str],
    actions: &mut Vec<Action>,
) {
    for run in &snap.analysis_runs {
        if run.terminate || wanted.contains(&run.name) || retired_in(actions, &run.name) {
            continue;
        }
        let of_update = update_hash.is_some() && run.pod_template_hash.as_deref() == update_hash;
        if !run.is_completed() || (aborted && of_update) {
            actions.push(Action::TerminateAnalysisRun {
                name: run.name.clone(),
            });
        }
    }
    let spec = &snap.rollout.spec;
    let mut finished: Vec<&AnalysisRunSummary> = snap
        .analysis_runs
        .iter()
        .filter(|r| {
            r.is_completed() && !wanted.contains(&r.name) && !recorded.contains(&r.name.as_str())
        })
        .collect();
    finished.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.name.cmp(&a.name)));
    let mut kept_successful = 0;
    let mut kept_unsuccessful = 0;
    for run in finished {
        let (kept, limit) = if run.phase == "Successful" {
            (&mut kept_successful, spec.successful_run_history_limit())
        } else {
            (
                &mut kept_unsuccessful,
                spec.unsuccessful_run_history_limit(),
            )
        };
        if *kept < limit.max(0) {
            *kept += 1;
        } else {
            actions.push(Action::DeleteAnalysisRun {
                name: run.name.clone(),
            });
        }
    }
}

/// Every analysis of the rollout with the field it was read from, for checks before any run
/// is created.
pub fn analyses(rollout: &Rollout) -> Vec<(String, RolloutAnalysis)> {
    let mut out = Vec::new();
    if let Some(canary) = rollout.spec.canary() {
        if let Some(background) = &canary.analysis {
            out.push((
                "spec.strategy.canary.analysis".to_owned(),
                background.analysis(),
            ));
        }
        for (i, step) in canary.steps().iter().enumerate() {
            if let Some(analysis) = &step.analysis {
                out.push((
                    format!("spec.strategy.canary.steps[{i}].analysis"),
                    analysis.clone(),
                ));
            }
        }
    }
    if let Some(blue_green) = rollout.spec.blue_green() {
        for (field, analysis) in [
            (
                "spec.strategy.blueGreen.prePromotionAnalysis",
                &blue_green.pre_promotion_analysis,
            ),
            (
                "spec.strategy.blueGreen.postPromotionAnalysis",
                &blue_green.post_promotion_analysis,
            ),
        ] {
            if let Some(analysis) = analysis {
                out.push((field.to_owned(), analysis.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
