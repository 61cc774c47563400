//! From templates and arguments to what a run measures: merging several (Cluster)AnalysisTemplates
//! into one run spec, resolving arguments, and substituting `{{args.x}}` into a metric. Secret
//! arguments stay references until measurement time, and their values never reach an error.

use ramp_api::analysis::{
    AnalysisRunSpec, AnalysisTemplateRef, AnalysisTemplateSpec, Argument, Metric, SecretKeyRef,
    ValueFrom,
};
use ramp_api::common::{DryRun, MeasurementRetention};
use std::collections::{BTreeMap, BTreeSet};

/// What a secret argument's value is replaced by wherever a value could be seen.
pub const REDACTED: &str = "*****";

/// Why templates or arguments do not make a runnable analysis. Messages name the template,
/// metric or argument, and never a secret's value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("two metrics have the same name {metric:?} (in {first} and {second})")]
    DuplicateMetric {
        metric: String,
        first: String,
        second: String,
    },
    #[error(
        "argument {name:?} is specified multiple times with different values: {first:?}, {second:?}"
    )]
    ConflictingArgument {
        name: String,
        first: String,
        second: String,
    },
    #[error("args.{name} was not resolved")]
    Unresolved { name: String },
    #[error("metric {metric:?}: failed to resolve {placeholder}")]
    UnknownPlaceholder { metric: String, placeholder: String },
    #[error("metric {metric:?}: unterminated placeholder starting at {fragment:?}")]
    UnterminatedPlaceholder { metric: String, fragment: String },
    #[error("metric {metric:?}: after substituting arguments the metric is invalid: {reason}")]
    InvalidAfterSubstitution { metric: String, reason: String },
    #[error("args.{name}: reading secret {secret:?} key {key:?}: {reason}")]
    Secret {
        name: String,
        secret: String,
        key: String,
        reason: String,
    },
    #[error("{field}: metricName {pattern:?} is not a valid regular expression")]
    InvalidPattern {
        field: &'static str,
        pattern: String,
    },
    #[error("{kind} {name:?} not found (included by {included_by})")]
    MissingTemplate {
        kind: &'static str,
        name: String,
        included_by: String,
    },
    #[error("templates include each other in a cycle: {cycle}")]
    TemplateCycle { cycle: String },
    #[error("dryRun: metricName {pattern:?} matches no metric")]
    DryRunMatchesNothing { pattern: String },
}

/// A template found while following `templates[]` includes.
#[derive(Clone, Debug, PartialEq)]
pub struct IncludedTemplate {
    /// `AnalysisTemplate/name` or `ClusterAnalysisTemplate/name`.
    pub display_name: String,
    pub spec: AnalysisTemplateSpec,
}

/// Follows `templates[]` includes depth first, so the result lists every template whose
/// metrics and arguments the run gets, each once, includes before their includer.
/// `lookup` fetches a referenced template (`None` when it does not exist).
pub fn flatten_templates(
    roots: Vec<IncludedTemplate>,
    mut lookup: impl FnMut(&AnalysisTemplateRef) -> Option<IncludedTemplate>,
) -> Result<Vec<IncludedTemplate>, ArgsError> {
    fn visit(
        template: IncludedTemplate,
        lookup: &mut dyn FnMut(&AnalysisTemplateRef) -> Option<IncludedTemplate>,
        path: &mut Vec<String>,
        out: &mut Vec<IncludedTemplate>,
    ) -> Result<(), ArgsError> {
        if path.contains(&template.display_name) {
            return Err(ArgsError::TemplateCycle {
                cycle: format!("{} -> {}", path.join(" -> "), template.display_name),
            });
        }
        if out.iter().any(|t| t.display_name == template.display_name) {
            return Ok(());
        }
        path.push(template.display_name.clone());
        for include in template.spec.templates.iter().flatten() {
            let included = lookup(include).ok_or_else(|| ArgsError::MissingTemplate {
                kind: if include.cluster_scope == Some(true) {
                    "ClusterAnalysisTemplate"
                } else {
                    "AnalysisTemplate"
                },
                name: include.template_name.clone().unwrap_or_default(),
                included_by: template.display_name.clone(),
            })?;
            visit(included, lookup, path, out)?;
        }
        path.pop();
        out.push(template);
        Ok(())
    }
    let mut out = Vec::new();
    for root in roots {
        visit(root, &mut lookup, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// One template to instantiate, with what identifies it in messages.
#[derive(Clone, Copy, Debug)]
pub struct NamedTemplate<'a> {
    /// `AnalysisTemplate/name` or `ClusterAnalysisTemplate/name`.
    pub display_name: &'a str,
    pub spec: &'a AnalysisTemplateSpec,
}

/// Merges several templates (already flattened: included `templates[]` resolved by the caller)
/// and the caller's arguments and rules into a run spec: metrics are concatenated and must have
/// distinct names; arguments are unioned (one name with two different values is an error);
/// incoming arguments only set arguments some template declares; every argument must end with a
/// value or a source; dry-run and retention rules are unioned.
pub fn merge_templates(
    templates: &[NamedTemplate<'_>],
    incoming_args: &[Argument],
    dry_run: &[DryRun],
    measurement_retention: &[MeasurementRetention],
) -> Result<AnalysisRunSpec, ArgsError> {
    let mut metrics: Vec<Metric> = Vec::new();
    let mut metric_origin: BTreeMap<String, &str> = BTreeMap::new();
    let mut args: Vec<Argument> = Vec::new();
    let mut dry_run_rules: Vec<DryRun> = Vec::new();
    let mut retention_rules: Vec<MeasurementRetention> = Vec::new();
    for template in templates {
        for metric in template.spec.metrics() {
            if let Some(first) = metric_origin.insert(metric.name.clone(), template.display_name) {
                return Err(ArgsError::DuplicateMetric {
                    metric: metric.name.clone(),
                    first: first.to_owned(),
                    second: template.display_name.to_owned(),
                });
            }
            metrics.push(metric.clone());
        }
        for arg in template.spec.args() {
            union_argument(&mut args, arg)?;
        }
        for rule in template.spec.dry_run.iter().flatten() {
            if !dry_run_rules.contains(rule) {
                dry_run_rules.push(rule.clone());
            }
        }
        for rule in template.spec.measurement_retention.iter().flatten() {
            if !retention_rules.contains(rule) {
                retention_rules.push(rule.clone());
            }
        }
    }
    for incoming in incoming_args {
        // Undeclared incoming arguments are dropped, as upstream does.
        if let Some(declared) = args.iter_mut().find(|a| a.name == incoming.name) {
            if incoming.value.is_some() {
                declared.value.clone_from(&incoming.value);
                declared.value_from = None;
            } else if incoming.value_from.is_some() {
                declared.value_from.clone_from(&incoming.value_from);
                declared.value = None;
            }
        }
    }
    if let Some(unresolved) = args.iter().find(|a| !a.is_resolved()) {
        return Err(ArgsError::Unresolved {
            name: unresolved.name.clone(),
        });
    }
    for rule in dry_run {
        if !dry_run_rules.contains(rule) {
            dry_run_rules.push(rule.clone());
        }
    }
    for rule in measurement_retention {
        if !retention_rules.contains(rule) {
            retention_rules.push(rule.clone());
        }
    }
    Ok(AnalysisRunSpec {
        args: (!args.is_empty()).then_some(args),
        dry_run: (!dry_run_rules.is_empty()).then_some(dry_run_rules),
        measurement_retention: (!retention_rules.is_empty()).then_some(retention_rules),
        metrics,
        terminate: None,
        ttl_strategy: None,
    })
}

fn union_argument(args: &mut Vec<Argument>, arg: &Argument) -> Result<(), ArgsError> {
    let Some(existing) = args.iter_mut().find(|a| a.name == arg.name) else {
        args.push(arg.clone());
        return Ok(());
    };
    match (&existing.value, &arg.value) {
        (Some(first), Some(second))
            if !first.is_empty() && !second.is_empty() && first != second =>
        {
            Err(ArgsError::ConflictingArgument {
                name: arg.name.clone(),
                first: first.clone(),
                second: second.clone(),
            })
        }
        _ => {
            if !existing.is_resolved() {
                existing.value.clone_from(&arg.value);
                existing.value_from.clone_from(&arg.value_from);
            }
            Ok(())
        }
    }
}

/// Argument values ready for substitution; knows which came from Secrets so that anything
/// shown to a person can be redacted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedArgs {
    values: BTreeMap<String, String>,
    secret_names: BTreeSet<String>,
}

impl ResolvedArgs {
    /// The value of an argument.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether the argument's value came from a Secret.
    pub fn is_secret(&self, name: &str) -> bool {
        self.secret_names.contains(name)
    }

    /// `text` with every non-empty secret value replaced by [`REDACTED`]; for messages, logs
    /// and status fields built from substituted text.
    pub fn redact(&self, text: &str) -> String {
        let mut redacted = text.to_owned();
        for name in &self.secret_names {
            if let Some(value) = self.values.get(name).filter(|v| !v.is_empty()) {
                redacted = redacted.replace(value.as_str(), REDACTED);
            }
        }
        redacted
    }
}

/// Resolves a run's arguments: literal values as they are, secret references through
/// `read_secret` (which the controller backs with the run's namespace, and validation with
/// [`redacted_secret`]). An argument with neither, or with only a field reference (which the
/// rollout resolves before creating the run), is unresolved.
pub fn resolve_args(
    args: &[Argument],
    mut read_secret: impl FnMut(&SecretKeyRef) -> Result<String, String>,
) -> Result<ResolvedArgs, ArgsError> {
    let mut resolved = ResolvedArgs::default();
    for arg in args {
        let value = match (&arg.value, &arg.value_from) {
            (Some(value), _) => value.clone(),
            (
                None,
                Some(ValueFrom {
                    secret_key_ref: Some(secret),
                    ..
                }),
            ) => {
                let value = read_secret(secret).map_err(|reason| ArgsError::Secret {
                    name: arg.name.clone(),
                    secret: secret.name.clone(),
                    key: secret.key.clone(),
                    reason,
                })?;
                resolved.secret_names.insert(arg.name.clone());
                value
            }
            _ => {
                return Err(ArgsError::Unresolved {
                    name: arg.name.clone(),
                });
            }
        };
        resolved.values.insert(arg.name.clone(), value);
    }
    Ok(resolved)
}

/// A secret reader for validation and display: every secret reads as [`REDACTED`].
pub fn redacted_secret(_: &SecretKeyRef) -> Result<String, String> {
    Ok(REDACTED.to_owned())
}

/// The metric with every `{{args.name}}` (spaces inside the braces allowed) replaced by the
/// argument's value. Substitution happens on the metric's JSON, so values are JSON-escaped and
/// can land in any field, including int-or-string limits and durations. Any other `{{...}}`
/// tag is an error, as upstream.
pub fn substitute_metric(metric: &Metric, args: &ResolvedArgs) -> Result<Metric, ArgsError> {
    let json = serde_json::to_string(metric).map_err(|e| ArgsError::InvalidAfterSubstitution {
        metric: metric.name.clone(),
        reason: e.to_string(),
    })?;
    let substituted = substitute_text(&metric.name, &json, args, json_escape)?;
    serde_json::from_str(&substituted).map_err(|e| ArgsError::InvalidAfterSubstitution {
        metric: metric.name.clone(),
        // serde's message may quote the offending value, which could be a secret.
        reason: args.redact(&e.to_string()),
    })
}

/// Substitutes `{{args.name}}` in plain text (no escaping); for texts outside a metric, such
/// as an argument value templated by a rollout. `owner` names the text in errors.
pub fn substitute_plain(owner: &str, text: &str, args: &ResolvedArgs) -> Result<String, ArgsError> {
    substitute_text(owner, text, args, str::to_owned)
}

fn substitute_text(
    metric: &str,
    text: &str,
    args: &ResolvedArgs,
    escape: fn(&str) -> String,
) -> Result<String, ArgsError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after_open = &rest[start + 2..];
        let Some(end) = after_open.find("}}") else {
            return Err(ArgsError::UnterminatedPlaceholder {
                metric: metric.to_owned(),
                fragment: rest[start..].chars().take(40).collect(),
            });
        };
        let tag = after_open[..end].trim();
        let value = tag
            .strip_prefix("args.")
            .and_then(|name| args.get(name.trim()))
            .ok_or_else(|| ArgsError::UnknownPlaceholder {
                metric: metric.to_owned(),
                placeholder: format!("{{{{{tag}}}}}"),
            })?;
        out.push_str(&escape(value));
        rest = &after_open[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A string's JSON escaping without the surrounding quotes.
fn json_escape(value: &str) -> String {
    let quoted = serde_json::Value::String(value.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// Names of the metrics matched by the dry-run rules (Go regular expressions, unanchored).
/// A rule that matches no metric is an error, as upstream.
pub fn dry_run_metrics(
    metrics: &[Metric],
    rules: &[DryRun],
) -> Result<BTreeSet<String>, ArgsError> {
    let mut names = BTreeSet::new();
    for rule in rules {
        let pattern =
            regex::Regex::new(&rule.metric_name).map_err(|_| ArgsError::InvalidPattern {
                field: "dryRun",
                pattern: rule.metric_name.clone(),
            })?;
        let mut matched = false;
        for metric in metrics.iter().filter(|m| pattern.is_match(&m.name)) {
            matched = true;
            names.insert(metric.name.clone());
        }
        if !matched {
            return Err(ArgsError::DryRunMatchesNothing {
                pattern: rule.metric_name.clone(),
            });
        }
    }
    Ok(names)
}

/// How many measurements to keep per metric: the limit of the first matching retention rule
/// with a positive limit, else the default of 10.
pub fn retention_limits(
    metrics: &[Metric],
    rules: &[MeasurementRetention],
) -> Result<BTreeMap<String, usize>, ArgsError> {
    let mut compiled = Vec::with_capacity(rules.len());
    for rule in rules {
        let pattern =
            regex::Regex::new(&rule.metric_name).map_err(|_| ArgsError::InvalidPattern {
                field: "measurementRetention",
                pattern: rule.metric_name.clone(),
            })?;
        compiled.push((pattern, usize::try_from(rule.limit).unwrap_or(0)));
    }
    let default = usize::try_from(ramp_api::defaults::MEASUREMENT_RETENTION_LIMIT).unwrap_or(10);
    // A limit of 0 would drop the last measurement, which scheduling and verdicts read; as
    // upstream, only positive limits override the default.
    compiled.retain(|(_, limit)| *limit > 0);
    Ok(metrics
        .iter()
        .map(|metric| {
            let limit = compiled
                .iter()
                .find(|(pattern, _)| pattern.is_match(&metric.name))
                .map_or(default, |(_, limit)| *limit);
            (metric.name.clone(), limit)
        })
        .collect())
}

/// Reads a rollout field for an argument's `valueFrom.fieldRef.fieldPath`: dotted members with
/// optional `['key']` subscripts (`metadata.labels['app']`, `spec.template.metadata.labels.v`).
/// Strings are returned as they are, other values as JSON. A label or annotation the rollout
/// does not carry reads as an empty string, as upstream's downward-API lookup does; any other
/// missing field does not resolve.
pub fn field_ref_value(object: &serde_json::Value, field_path: &str) -> Option<String> {
    let segments = field_path_segments(field_path)?;
    if let [metadata, map, key] = segments.as_slice()
        && metadata == "metadata"
        && (map == "labels" || map == "annotations")
    {
        let value = object
            .get("metadata")
            .and_then(|m| m.get(map))
            .and_then(|m| m.get(key))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        return Some(value.to_owned());
    }
    let mut current = object;
    for segment in segments {
        current = match current {
            serde_json::Value::Object(map) => map.get(&segment)?,
            serde_json::Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match current {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn field_path_segments(path: &str) -> Option<Vec<String>> {
    let mut segments = Vec::new();
    let mut rest = path.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']')?;
            let key = after[..close].trim_matches(|c| c == '\'' || c == '"');
            segments.push(key.to_owned());
            rest = &after[close + 1..];
        } else {
            rest = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            segments.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    Some(segments)
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
