//! Checks that need more than one document: the AnalysisTemplates and ClusterAnalysisTemplates a
//! Rollout or Experiment names must exist, merge cleanly (unique metric names, no conflicting
//! argument values), receive every argument they require, and, for step and promotion
//! analyses, end on their own. A scope (namespaced or cluster) with no known template at all is
//! not checked for existence: the templates are then simply not among the inputs.

use super::{ByName, FieldPath, Problem, Problems, metric_name_pattern};
use crate::analysis::{AnalysisTemplateSpec, Argument, MeasurementCount, Metric};
use crate::experiment::Experiment;
use crate::rollout::{Rollout, RolloutAnalysis};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Namespace shown for a document that names none (where `kubectl apply` puts it without `-n`).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Whether two documents can live in the same namespace. One that names no namespace goes
/// wherever `kubectl apply -n` sends it, so it is compatible with any.
pub(crate) fn same_namespace(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// The templates known to the validator, by scope.
#[derive(Clone, Debug, Default)]
pub struct TemplateCatalog {
    namespaced: ByName<AnalysisTemplateSpec>,
    cluster: BTreeMap<String, AnalysisTemplateSpec>,
}

impl TemplateCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an AnalysisTemplate with the namespace its manifest names, if any; one without a
    /// namespace matches references from every namespace.
    pub fn add_analysis_template(
        &mut self,
        namespace: Option<&str>,
        name: &str,
        spec: AnalysisTemplateSpec,
    ) {
        self.namespaced.insert(namespace, name, spec);
    }

    /// Adds a ClusterAnalysisTemplate; when two share a name the first one added counts, as
    /// for AnalysisTemplates.
    pub fn add_cluster_analysis_template(&mut self, name: &str, spec: AnalysisTemplateSpec) {
        self.cluster.entry(name.to_owned()).or_insert(spec);
    }

    pub fn is_empty(&self) -> bool {
        self.namespaced.is_empty() && self.cluster.is_empty()
    }

    fn lookup(&self, id: &TemplateId) -> Lookup<'_> {
        let (found, scope_known) = if id.cluster {
            (
                self.cluster.get(&id.name).map(|spec| (None, spec)),
                !self.cluster.is_empty(),
            )
        } else {
            let found = self.namespaced.find(id.namespace.as_deref(), &id.name);
            (found, !self.namespaced.is_empty())
        };
        match found {
            Some((namespace, spec)) => Lookup::Found(namespace, spec),
            None if scope_known => Lookup::Missing,
            None => Lookup::Unknown,
        }
    }
}

enum Lookup<'a> {
    /// The template, and the namespace its manifest names (none for cluster templates).
    Found(Option<&'a str>, &'a AnalysisTemplateSpec),
    /// Templates of this scope are known, and this one is not among them.
    Missing,
    /// No template of this scope is known: nothing can be said.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TemplateId {
    cluster: bool,
    /// The referring document's namespace, if it names one.
    namespace: Option<String>,
    name: String,
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cluster {
            write!(f, "ClusterAnalysisTemplate {:?}", self.name)
        } else {
            write!(f, "AnalysisTemplate {:?}", self.name)
        }
    }
}

/// Where an analysis runs; step and promotion analyses must end on their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AnalysisUse {
    MustEnd,
    MayRunForever,
}

/// One `templates[]` entry of an analysis, with the path it was read from.
struct TemplateUse {
    path: FieldPath,
    id: TemplateId,
}

/// Every cross-document problem of a Rollout's step, background, pre- and post-promotion
/// analyses and of its experiment steps' analyses.
pub fn check_references(rollout: &Rollout, catalog: &TemplateCatalog) -> Vec<Problem> {
    let mut problems = Problems::default();
    if catalog.is_empty() {
        return problems.into_vec();
    }
    let namespace = rollout.metadata.namespace.as_deref();
    let strategy = FieldPath::root("spec").child("strategy");
    if let Some(canary) = rollout.spec.canary() {
        let canary_path = strategy.child("canary");
        for (index, step) in canary.steps().iter().enumerate() {
            let step_path = canary_path.child("steps").index(index);
            if let Some(analysis) = &step.analysis {
                let analysis_path = step_path.child("analysis");
                check_rollout_analysis(
                    &mut problems,
                    catalog,
                    namespace,
                    &analysis_path,
                    analysis,
                    AnalysisUse::MustEnd,
                );
            }
            if let Some(experiment) = &step.experiment {
                for (a, analysis) in experiment.analyses.iter().flatten().enumerate() {
                    let analysis_path = step_path.child("experiment").child("analyses").index(a);
                    let uses = vec![TemplateUse {
                        path: analysis_path.child("templateName"),
                        id: template_id(namespace, &analysis.template_name, analysis.cluster_scope),
                    }];
                    let passed: Vec<&str> = analysis
                        .args
                        .iter()
                        .flatten()
                        .map(|a| a.name.as_str())
                        .collect();
                    check_analysis(
                        &mut problems,
                        catalog,
                        &analysis_path,
                        &uses,
                        &passed,
                        AnalysisUse::MayRunForever,
                    );
                }
            }
        }
        if let Some(background) = &canary.analysis {
            check_rollout_analysis(
                &mut problems,
                catalog,
                namespace,
                &canary_path.child("analysis"),
                &background.analysis(),
                AnalysisUse::MayRunForever,
            );
        }
    }
    if let Some(blue_green) = rollout.spec.blue_green() {
        let blue_green_path = strategy.child("blueGreen");
        for (field, analysis) in [
            ("prePromotionAnalysis", &blue_green.pre_promotion_analysis),
            ("postPromotionAnalysis", &blue_green.post_promotion_analysis),
        ] {
            if let Some(analysis) = analysis {
                check_rollout_analysis(
                    &mut problems,
                    catalog,
                    namespace,
                    &blue_green_path.child(field),
                    analysis,
                    AnalysisUse::MustEnd,
                );
            }
        }
    }
    problems.into_vec()
}

/// Every cross-document problem of an Experiment's analyses.
pub fn check_experiment_references(
    experiment: &Experiment,
    catalog: &TemplateCatalog,
) -> Vec<Problem> {
    let mut problems = Problems::default();
    if catalog.is_empty() {
        return problems.into_vec();
    }
    let namespace = experiment.metadata.namespace.as_deref();
    for (index, analysis) in experiment.spec.analyses().iter().enumerate() {
        let path = FieldPath::root("spec").child("analyses").index(index);
        let uses = vec![TemplateUse {
            path: path.child("templateName"),
            id: template_id(namespace, &analysis.template_name, analysis.cluster_scope),
        }];
        let passed: Vec<&str> = analysis
            .args
            .iter()
            .flatten()
            .map(|a: &Argument| a.name.as_str())
            .collect();
        check_analysis(
            &mut problems,
            catalog,
            &path,
            &uses,
            &passed,
            AnalysisUse::MayRunForever,
        );
    }
    problems.into_vec()
}

/// Problems of the templates an AnalysisTemplate or ClusterAnalysisTemplate includes
/// (`spec.templates[]`): they must exist and merge cleanly with each other.
pub fn check_template_includes(
    namespace: Option<&str>,
    spec: &AnalysisTemplateSpec,
    catalog: &TemplateCatalog,
) -> Vec<Problem> {
    let mut problems = Problems::default();
    let path = FieldPath::root("spec").child("templates");
    for (index, include) in spec.templates.iter().flatten().enumerate() {
        let Some(name) = include.template_name.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        let id = template_id(namespace, name, include.cluster_scope);
        let mut merged = Merged::default();
        resolve(
            &mut problems,
            catalog,
            &path.index(index).child("templateName"),
            &id,
            &mut Vec::new(),
            &mut merged,
        );
    }
    problems.into_vec()
}

fn template_id(namespace: Option<&str>, name: &str, cluster_scope: Option<bool>) -> TemplateId {
    TemplateId {
        cluster: cluster_scope.unwrap_or(false),
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
    }
}

fn check_rollout_analysis(
    problems: &mut Problems,
    catalog: &TemplateCatalog,
    namespace: Option<&str>,
    path: &FieldPath,
    analysis: &RolloutAnalysis,
    analysis_use: AnalysisUse,
) {
    let templates = analysis.templates.as_deref().unwrap_or_default();
    let args = analysis.args.as_deref().unwrap_or_default();
    let dry_run = analysis.dry_run.as_deref().unwrap_or_default();
    let uses: Vec<TemplateUse> = templates
        .iter()
        .enumerate()
        .filter_map(|(index, reference)| {
            let name = reference
                .template_name
                .as_deref()
                .filter(|n| !n.is_empty())?;
            Some(TemplateUse {
                path: path.child("templates").index(index).child("templateName"),
                id: template_id(namespace, name, reference.cluster_scope),
            })
        })
        .collect();
    let passed: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
    let rules: Vec<(FieldPath, &str)> = dry_run
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            (
                path.child("dryRun").index(index).child("metricName"),
                rule.metric_name.as_str(),
            )
        })
        .collect();
    let merged_names = check_analysis(problems, catalog, path, &uses, &passed, analysis_use);
    if let Some(merged_names) = merged_names.filter(|_| !uses.is_empty()) {
        // Upstream fails a run whose dry-run rule matches none of its metrics.
        for (rule_path, pattern) in rules {
            if let Ok(regex) = metric_name_pattern(pattern)
                && !merged_names.iter().any(|name| regex.is_match(name))
            {
                problems.error(
                    &rule_path,
                    format!(
                        "{pattern:?} matches none of the metrics ({}), which makes the AnalysisRun fail",
                        merged_names.join(", ")
                    ),
                );
            }
        }
    }
}

/// The metrics and arguments of one analysis after merging its templates.
#[derive(Default)]
struct Merged<'a> {
    metrics: Vec<(&'a Metric, TemplateId, FieldPath)>,
    args: Vec<(&'a Argument, TemplateId, FieldPath)>,
}

/// Checks one analysis against the templates it names; returns the merged metric names when
/// every template involved was found.
fn check_analysis(
    problems: &mut Problems,
    catalog: &TemplateCatalog,
    path: &FieldPath,
    uses: &[TemplateUse],
    passed: &[&str],
    analysis_use: AnalysisUse,
) -> Option<Vec<String>> {
    let mut merged = Merged::default();
    let mut all_found = true;
    for template_use in uses {
        all_found &= resolve(
            problems,
            catalog,
            &template_use.path,
            &template_use.id,
            &mut Vec::new(),
            &mut merged,
        );
    }

    let mut metric_owner: BTreeMap<&str, &TemplateId> = BTreeMap::new();
    for (metric, owner, use_path) in &merged.metrics {
        match metric_owner.get(metric.name.as_str()) {
            Some(first) if *first == owner => problems.error(
                use_path,
                format!("{owner} is included more than once, so its metric {:?} would be measured twice", metric.name),
            ),
            Some(first) => problems.error(
                use_path,
                format!("duplicate metric name {:?}: defined by both {first} and {owner}", metric.name),
            ),
            None => {
                metric_owner.insert(&metric.name, owner);
            }
        }
        if analysis_use == AnalysisUse::MustEnd
            && matches!(metric.effective_count(), Ok(MeasurementCount::Unbounded))
        {
            problems.error(
                use_path,
                format!(
                    "metric {:?} of {owner} has an interval but no count, so it never ends; only background analysis may run indefinitely",
                    metric.name
                ),
            );
        }
    }

    // Upstream unions the templates' arguments: a value from any template satisfies the
    // argument, two different values conflict.
    let mut values: BTreeMap<&str, (&str, &TemplateId)> = BTreeMap::new();
    let mut resolved: BTreeSet<&str> = BTreeSet::new();
    for (arg, owner, use_path) in &merged.args {
        if arg.value_from.is_some() {
            resolved.insert(&arg.name);
        }
        let Some(value) = arg.value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        resolved.insert(&arg.name);
        match values.get(arg.name.as_str()) {
            Some((other, other_owner)) if *other != value => problems.error(
                use_path,
                format!(
                    "argument {:?} has conflicting values: {other:?} in {other_owner} and {value:?} in {owner}",
                    arg.name
                ),
            ),
            Some(_) => {}
            None => {
                values.insert(&arg.name, (value, owner));
            }
        }
    }
    // Upstream drops arguments no template declares; that is almost always a misspelt name.
    if all_found && !uses.is_empty() {
        let declared: BTreeSet<&str> = merged
            .args
            .iter()
            .map(|(arg, _, _)| arg.name.as_str())
            .collect();
        for (index, name) in passed.iter().enumerate() {
            if !declared.contains(name) {
                problems.warning(
                    &path.child("args").index(index),
                    format!("argument {name:?} is not declared by any of the templates, so it is ignored"),
                );
            }
        }
    }
    let mut reported = BTreeSet::new();
    for (arg, owner, _) in &merged.args {
        let name = arg.name.as_str();
        if !resolved.contains(name) && !passed.contains(&name) && reported.insert(name) {
            problems.error(
                &path.child("args"),
                format!("argument {name:?} required by {owner} is not passed"),
            );
        }
    }
    all_found.then(|| {
        merged
            .metrics
            .iter()
            .map(|(metric, _, _)| metric.name.clone())
            .collect()
    })
}

/// Adds the metrics and arguments of `id` and of every template it includes to `merged`.
/// Returns whether every template involved was found.
fn resolve<'a>(
    problems: &mut Problems,
    catalog: &'a TemplateCatalog,
    use_path: &FieldPath,
    id: &TemplateId,
    chain: &mut Vec<TemplateId>,
    merged: &mut Merged<'a>,
) -> bool {
    if chain.contains(id) {
        let cycle: Vec<String> = chain
            .iter()
            .chain(std::iter::once(id))
            .map(ToString::to_string)
            .collect();
        problems.error(
            use_path,
            format!(
                "templates include each other in a cycle: {}",
                cycle.join(" -> ")
            ),
        );
        return false;
    }
    let (found_namespace, spec) = match catalog.lookup(id) {
        Lookup::Found(namespace, spec) => (namespace, spec),
        Lookup::Unknown => return false,
        Lookup::Missing => {
            let message = match chain.last() {
                None => format!("{id} is not among the given templates"),
                Some(parent) => {
                    format!("{parent} includes {id}, which is not among the given templates")
                }
            };
            problems.error(use_path, message);
            return false;
        }
    };
    for metric in spec.metrics() {
        merged.metrics.push((metric, id.clone(), use_path.clone()));
    }
    for arg in spec.args() {
        merged.args.push((arg, id.clone(), use_path.clone()));
    }
    chain.push(id.clone());
    let mut all_found = true;
    for include in spec.templates.iter().flatten() {
        if let Some(name) = include.template_name.as_deref().filter(|n| !n.is_empty()) {
            // Included namespaced templates live in the including template's namespace.
            let namespace = found_namespace.or(id.namespace.as_deref());
            let included = template_id(namespace, name, include.cluster_scope);
            all_found &= resolve(problems, catalog, use_path, &included, chain, merged);
        }
    }
    chain.pop();
    all_found
}
