//! `ramp analyze`: runs the metrics of AnalysisTemplates (or of an AnalysisRun manifest) against
//! the live providers from a terminal, without a cluster, and prints the measurements and the
//! verdict. Scheduling and verdicts are `ramp_core::analysis::run`, measuring is
//! `ramp_controller::metrics`; this module loads manifests, fills arguments from the command
//! line, drives the clock and prints.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use ramp_api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplate,
    AnalysisTemplateRef, AnalysisTemplateSpec, Argument, ClusterAnalysisTemplate, MeasurementCount,
    Metric, ProviderKind, SecretKeyRef, ValueFrom,
};
use ramp_api::manifest::{self, SyntaxError};
use ramp_controller::metrics::{ProviderConfig, Providers};
use ramp_core::analysis::args::{self, ArgsError, IncludedTemplate, NamedTemplate, ResolvedArgs};
use ramp_core::analysis::run::{
    MeasurementOutcome, MeasurementTask, check_run_spec, dry_run_metric_names, plan_measurements,
    reconcile,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The run was Successful.
pub const EXIT_SUCCESSFUL: u8 = 0;
/// The run was Failed.
pub const EXIT_FAILED: u8 = 1;
/// The run ended in Error, or the command line or a manifest is wrong.
pub const EXIT_ERROR: u8 = 2;
/// The run was Inconclusive.
pub const EXIT_INCONCLUSIVE: u8 = 3;
/// Interrupted (Ctrl-C) before the run completed.
pub const EXIT_INTERRUPTED: u8 = 130;

const AFTER_HELP: &str = "\
Reads AnalysisTemplates, ClusterAnalysisTemplates or an AnalysisRun (several documents are
merged as a Rollout would merge the templates it names, following `templates[]` includes
among the given documents) and measures every metric against the live providers, exactly as
the AnalysisRun controller does: same schedule, limits and verdicts. No cluster is needed.

Arguments: every argument without a value needs `--arg NAME=VALUE`. Arguments read from a
Secret (`valueFrom.secretKeyRef`) or a field of the rollout (`valueFrom.fieldRef`) cannot be
read without a cluster: give them with `--arg` too (secret values are still redacted in the
output).

Prometheus: a metric's own `address`, else `--prometheus`, else
$ARGO_ROLLOUTS_PROMETHEUS_ADDRESS; a metric with none is an error before anything is measured.
Job metrics (and providers Ramp does not implement) need a cluster: each gets one Error
measurement saying so, and the other metrics run normally.

Timing: by default the metrics' schedule runs in real time to completion (`initialDelay`,
`interval`, `count`, the 10 s retry after an Error); a metric without `count` is measured
once. `--once` instead takes exactly one measurement of every metric right away, ignoring
`initialDelay`, `interval`, `count` and the limits: each metric's verdict is that
measurement's phase. This is the runbooks' \"verify the metric queries\" step.

Exit status: 0 Successful, 1 Failed, 2 Error (also for usage and manifest errors),
3 Inconclusive, 130 interrupted.

Examples:
  ramp analyze -f success-rate.yaml --arg service-name=web-canary --once
  ramp analyze -f templates.yaml --arg service-name=web --prometheus http://localhost:9090 --watch
  kubectl get analysistemplate success-rate -o yaml | ramp analyze -f - --arg service-name=web -o json";

#[derive(clap::Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub struct AnalyzeArgs {
    /// An AnalysisTemplate, ClusterAnalysisTemplate or AnalysisRun manifest, or `-` for
    /// standard input. Repeat to merge several; documents of other kinds are skipped.
    #[arg(short = 'f', long = "filename", value_name = "FILE|-", required = true)]
    pub filenames: Vec<PathBuf>,
    /// A value for an argument of the templates (repeatable). Overrides the template's value.
    #[arg(long = "arg", value_name = "NAME=VALUE", value_parser = parse_arg)]
    pub args: Vec<(String, String)>,
    /// Prometheus address for metrics that name none.
    #[arg(
        long,
        value_name = "URL",
        env = "ARGO_ROLLOUTS_PROMETHEUS_ADDRESS",
        hide_env_values = true
    )]
    pub prometheus: Option<String>,
    /// Print each measurement as it arrives instead of a table at the end.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Take exactly one measurement of every metric now, ignoring initialDelay, interval,
    /// count and the limits.
    #[arg(long)]
    pub once: bool,
    /// Output format: `text` (a table and the verdict) or `json` (with --watch: one JSON line
    /// per measurement, then the result).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

fn parse_arg(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// Why the analysis could not start. Each message names the file, object, field or argument.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Syntax { file: String, source: SyntaxError },
    #[error("{file}: {object}: {field}: {message}")]
    Manifest {
        file: String,
        object: String,
        field: String,
        message: String,
    },
    #[error(
        "{files}: no AnalysisTemplate, ClusterAnalysisTemplate or AnalysisRun found (documents seen: {seen})"
    )]
    NothingToAnalyze { files: String, seen: String },
    #[error("{object}: {source}")]
    Templates { object: String, source: ArgsError },
    #[error("--arg {name}: no template declares an argument {name:?} (declared: {declared})")]
    UndeclaredArgument { name: String, declared: String },
    #[error("{}", missing_message(.0))]
    MissingArguments(Vec<(String, String)>),
    #[error(
        "{object}: argument {name:?} reads key {key:?} of Secret {secret:?}, which needs a cluster: pass --arg {name}=VALUE"
    )]
    SecretArgument {
        object: String,
        name: String,
        secret: String,
        key: String,
    },
    #[error(
        "{object}: argument {name:?} comes from valueFrom.fieldRef {field_path:?}, which a Rollout resolves: pass --arg {name}=VALUE"
    )]
    FieldRefArgument {
        object: String,
        name: String,
        field_path: String,
    },
    #[error(
        "{object}: metric {metric:?}: no Prometheus address: set provider.prometheus.address, or pass --prometheus URL"
    )]
    NoPrometheusAddress { object: String, metric: String },
    #[error("{object}: {message}")]
    InvalidSpec { object: String, message: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

fn missing_message(missing: &[(String, String)]) -> String {
    let described: Vec<String> = missing
        .iter()
        .map(|(object, name)| format!("{name:?} (declared by {object})"))
        .collect();
    let example = missing
        .iter()
        .map(|(_, name)| format!("--arg {name}=VALUE"))
        .collect::<Vec<_>>()
        .join(" ");
    let noun = if missing.len() == 1 {
        "argument"
    } else {
        "arguments"
    };
    format!("missing {noun} {}: pass {example}", described.join(", "))
}

/// Runs `ramp analyze` (also `kubectl ramp analyze`) and returns the exit status.
pub fn run(args: &AnalyzeArgs) -> ExitCode {
    let plan = match prepare(args) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {}", AnalyzeError::Runtime(error));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let mut printer = Printer::new(args, &plan);
    let report = runtime.block_on(execute(&plan, &mut printer));
    printer.finish(&report);
    ExitCode::from(report.exit_code())
}

/// One loaded analysis object.
struct Loaded {
    file: String,
    /// `AnalysisTemplate/name`, `ClusterAnalysisTemplate/name` or `AnalysisRun/name`.
    display_name: String,
    kind: &'static str,
    name: String,
    spec: AnalysisTemplateSpec,
}

/// What `execute` runs: the run spec the controller would get, the arguments with secrets
/// filled from the command line, and the metrics that cannot be measured without a cluster.
pub struct Plan {
    /// The objects analysed, for messages.
    object: String,
    spec: AnalysisRunSpec,
    args: ResolvedArgs,
    prometheus: Option<String>,
    /// Job metrics and providers Ramp does not implement; measured once, outside the run.
    unmeasurable: Vec<Metric>,
    /// Dry-run metrics among `unmeasurable` (the run's own are in its status).
    unmeasurable_dry_run: BTreeSet<String>,
    /// Metric names in manifest order, for the output.
    order: Vec<String>,
}

/// Loads the manifests and turns them into a run, or says what is wrong.
pub fn prepare(cli: &AnalyzeArgs) -> Result<Plan, AnalyzeError> {
    let loaded = load(&cli.filenames)?;
    // Messages say where an object came from: `file: Kind/name`.
    let located = |display_name: &str| {
        loaded
            .iter()
            .find(|l| l.display_name == display_name)
            .map_or_else(
                || display_name.to_owned(),
                |l| format!("{}: {display_name}", l.file),
            )
    };
    let object = loaded
        .iter()
        .map(|l| format!("{}: {}", l.file, l.display_name))
        .collect::<Vec<_>>()
        .join(", ");
    let templates_error = |source| AnalyzeError::Templates {
        object: object.clone(),
        source,
    };
    let roots = loaded
        .iter()
        .map(|l| IncludedTemplate {
            display_name: l.display_name.clone(),
            spec: l.spec.clone(),
        })
        .collect();
    let flattened = args::flatten_templates(roots, |reference: &AnalysisTemplateRef| {
        let kind = if reference.cluster_scope == Some(true) {
            "ClusterAnalysisTemplate"
        } else {
            "AnalysisTemplate"
        };
        let name = reference.template_name.as_deref().unwrap_or_default();
        loaded
            .iter()
            .find(|l| l.kind == kind && l.name == name)
            .map(|l| IncludedTemplate {
                display_name: l.display_name.clone(),
                spec: l.spec.clone(),
            })
    })
    .map_err(templates_error)?;

    let given: BTreeMap<&str, &str> = cli
        .args
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let declared = declared_arguments(&flattened, located);
    for name in given.keys() {
        if !declared.contains_key(*name) {
            return Err(AnalyzeError::UndeclaredArgument {
                name: (*name).to_owned(),
                declared: declared.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
    }
    let missing: Vec<(String, String)> = declared
        .iter()
        .filter(|(name, declaration)| {
            declaration.source.is_none() && !given.contains_key(name.as_str())
        })
        .map(|(name, declaration)| (declaration.object.clone(), name.clone()))
        .collect();
    if !missing.is_empty() {
        return Err(AnalyzeError::MissingArguments(missing));
    }

    // Secret arguments stay references so that their values are redacted like the
    // controller's; the command line stands in for the Secret.
    let mut secret_values: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut incoming = Vec::new();
    for (name, declaration) in &declared {
        let value = given.get(name.as_str()).copied();
        match (&declaration.source, value) {
            (Some(DeclaredSource::Secret(secret)), Some(value)) => {
                secret_values.insert((secret.name.clone(), secret.key.clone()), value.to_owned());
            }
            (Some(DeclaredSource::Secret(secret)), None) => {
                return Err(AnalyzeError::SecretArgument {
                    object: declaration.object.clone(),
                    name: name.clone(),
                    secret: secret.name.clone(),
                    key: secret.key.clone(),
                });
            }
            (Some(DeclaredSource::FieldRef(field_path)), None) => {
                return Err(AnalyzeError::FieldRefArgument {
                    object: declaration.object.clone(),
                    name: name.clone(),
                    field_path: field_path.clone(),
                });
            }
            (_, Some(value)) => incoming.push(Argument {
                name: name.clone(),
                value: Some(value.to_owned()),
                value_from: None,
            }),
            (Some(DeclaredSource::Value) | None, None) => {}
        }
    }
    let named: Vec<NamedTemplate<'_>> = flattened
        .iter()
        .map(|t| NamedTemplate {
            display_name: &t.display_name,
            spec: &t.spec,
        })
        .collect();
    let spec = args::merge_templates(&named, &incoming, &[], &[]).map_err(templates_error)?;
    let invalid = |message: String| AnalyzeError::InvalidSpec {
        object: object.clone(),
        message,
    };
    check_run_spec(&spec).map_err(invalid)?;
    let resolved = args::resolve_args(spec.args.as_deref().unwrap_or_default(), |secret| {
        secret_values
            .get(&(secret.name.clone(), secret.key.clone()))
            .cloned()
            .ok_or_else(|| "no --arg was given for it".to_owned())
    })
    .map_err(templates_error)?;

    let order = spec.metrics.iter().map(|m| m.name.clone()).collect();
    let dry_run = dry_run_metric_names(&spec).map_err(templates_error)?;
    let (unmeasurable, mut runnable): (Vec<Metric>, Vec<Metric>) = spec
        .metrics
        .iter()
        .cloned()
        .partition(|m| !measurable_here(m));
    for metric in &mut runnable {
        let substituted = args::substitute_metric(metric, &resolved).map_err(templates_error)?;
        if cli.once {
            take_once(metric);
        } else if matches!(
            substituted.effective_count(),
            Ok(MeasurementCount::Unbounded)
        ) {
            // Without a count the controller measures until the rollout moves on; here the
            // schedule must end, so the metric is measured once.
            metric.count = Some(IntOrString::Int(1));
        }
        if let Some(prometheus) = &substituted.provider.prometheus
            && prometheus.address.as_deref().is_none_or(str::is_empty)
            && cli.prometheus.as_deref().is_none_or(str::is_empty)
        {
            return Err(AnalyzeError::NoPrometheusAddress {
                object: object.clone(),
                metric: metric.name.clone(),
            });
        }
    }
    // Rules that only matched metrics taken out of the run would make it invalid.
    let dry_run_rules = spec.dry_run.clone().map(|rules| {
        rules
            .into_iter()
            .filter(|rule| args::dry_run_metrics(&runnable, std::slice::from_ref(rule)).is_ok())
            .collect::<Vec<_>>()
    });
    let unmeasurable_dry_run = unmeasurable
        .iter()
        .filter(|m| dry_run.contains(&m.name))
        .map(|m| m.name.clone())
        .collect();
    let spec = AnalysisRunSpec {
        metrics: runnable,
        dry_run: dry_run_rules.filter(|rules| !rules.is_empty()),
        ..spec
    };
    if !spec.metrics.is_empty() {
        check_run_spec(&spec).map_err(invalid)?;
    }
    Ok(Plan {
        object,
        spec,
        args: resolved,
        prometheus: cli.prometheus.clone().filter(|p| !p.is_empty()),
        unmeasurable,
        unmeasurable_dry_run,
        order,
    })
}

/// `--once`: one measurement now, and its phase is the metric's verdict.
fn take_once(metric: &mut Metric) {
    metric.count = Some(IntOrString::Int(1));
    metric.interval = None;
    metric.initial_delay = None;
    metric.failure_limit = Some(IntOrString::Int(0));
    metric.inconclusive_limit = Some(IntOrString::Int(0));
    metric.consecutive_error_limit = Some(IntOrString::Int(0));
    metric.consecutive_success_limit = None;
}

/// Whether the metric's provider works without a cluster and is implemented.
fn measurable_here(metric: &Metric) -> bool {
    match metric.provider.kind() {
        Ok(ProviderKind::Job) => false,
        Ok(kind) => ramp_core::analysis::provider_supported(kind),
        // No or several providers: the run's validation reports it.
        Err(_) => true,
    }
}

enum DeclaredSource {
    Value,
    Secret(SecretKeyRef),
    FieldRef(String),
}

struct Declared {
    /// The first template declaring the argument.
    object: String,
    /// Where a value comes from when the command line gives none: the first template that
    /// gives one, as the merge takes it.
    source: Option<DeclaredSource>,
}

fn declared_arguments(
    templates: &[IncludedTemplate],
    located: impl Fn(&str) -> String,
) -> BTreeMap<String, Declared> {
    let mut declared: BTreeMap<String, Declared> = BTreeMap::new();
    for template in templates {
        for arg in template.spec.args() {
            let source = match (&arg.value, &arg.value_from) {
                (Some(_), _) => Some(DeclaredSource::Value),
                (
                    None,
                    Some(ValueFrom {
                        secret_key_ref: Some(secret),
                        ..
                    }),
                ) => Some(DeclaredSource::Secret(secret.clone())),
                (
                    None,
                    Some(ValueFrom {
                        field_ref: Some(field),
                        ..
                    }),
                ) => Some(DeclaredSource::FieldRef(field.field_path.clone())),
                (None, _) => None,
            };
            let entry = declared.entry(arg.name.clone()).or_insert(Declared {
                object: located(&template.display_name),
                source: None,
            });
            if entry.source.is_none() {
                entry.source = source;
            }
        }
    }
    declared
}

fn load(filenames: &[PathBuf]) -> Result<Vec<Loaded>, AnalyzeError> {
    let mut loaded = Vec::new();
    let mut seen = Vec::new();
    let mut stdin_read = false;
    for path in filenames {
        let (file, text) = if path.as_os_str() == "-" {
            let file = "<stdin>".to_owned();
            let mut text = String::new();
            if !stdin_read {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|source| AnalyzeError::Read {
                        file: file.clone(),
                        source,
                    })?;
                stdin_read = true;
            }
            (file, text)
        } else {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| AnalyzeError::Read {
                file: file.clone(),
                source,
            })?;
            (file, text)
        };
        let stream = manifest::parse_stream(&text).map_err(|source| AnalyzeError::Syntax {
            file: file.clone(),
            source,
        })?;
        for (index, document) in stream.documents.iter().enumerate() {
            if let Some(notice) = stream.notices.iter().find(|n| n.document == index) {
                return Err(AnalyzeError::Manifest {
                    object: object_name(document),
                    file,
                    field: notice.field.clone(),
                    message: notice.message.clone(),
                });
            }
            // `kubectl get ... -o yaml` of several objects writes one List.
            let objects: Vec<&Value> = if document["kind"] == "List" {
                document["items"].as_array().into_iter().flatten().collect()
            } else {
                vec![document]
            };
            for document in objects {
                if let Some(analysis) = load_object(&file, document, &mut seen)? {
                    loaded.push(analysis);
                }
            }
        }
    }
    if loaded.is_empty() {
        return Err(AnalyzeError::NothingToAnalyze {
            files: filenames
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            seen: if seen.is_empty() {
                "none".to_owned()
            } else {
                seen.join(", ")
            },
        });
    }
    for skipped in &seen {
        eprintln!("note: skipping {skipped}: not an analysis object");
    }
    Ok(loaded)
}

/// `Kind/name` of a manifest document.
fn object_name(document: &Value) -> String {
    format!(
        "{}/{}",
        document["kind"].as_str().unwrap_or_default(),
        document["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// Decodes one document; `None` (noted in `seen`) when it is not an analysis object.
fn load_object(
    file: &str,
    document: &Value,
    seen: &mut Vec<String>,
) -> Result<Option<Loaded>, AnalyzeError> {
    let kind = document["kind"].as_str().unwrap_or_default();
    let name = document["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let object = object_name(document);
    let (kind, spec) = match kind {
        "AnalysisTemplate" => (
            "AnalysisTemplate",
            decode::<AnalysisTemplate>(file, &object, document)?.spec,
        ),
        "ClusterAnalysisTemplate" => (
            "ClusterAnalysisTemplate",
            decode::<ClusterAnalysisTemplate>(file, &object, document)?
                .spec
                .0,
        ),
        "AnalysisRun" => {
            let run = decode::<AnalysisRun>(file, &object, document)?;
            (
                "AnalysisRun",
                AnalysisTemplateSpec {
                    args: run.spec.args,
                    dry_run: run.spec.dry_run,
                    measurement_retention: run.spec.measurement_retention,
                    metrics: Some(run.spec.metrics),
                    templates: None,
                },
            )
        }
        _ => {
            seen.push(if kind.is_empty() {
                format!("{file}: a document without kind")
            } else {
                format!("{file}: {object}")
            });
            return Ok(None);
        }
    };
    Ok(Some(Loaded {
        display_name: object,
        file: file.to_owned(),
        kind,
        name,
        spec,
    }))
}

fn decode<T: DeserializeOwned>(file: &str, object: &str, value: &Value) -> Result<T, AnalyzeError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        // serde reports a missing field at its parent; point at the field itself.
        let (field, message) = match message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            Some(missing) if path == "." => (missing.to_owned(), "is required".to_owned()),
            Some(missing) => (format!("{path}.{missing}"), "is required".to_owned()),
            None if path == "." => ("(document)".to_owned(), message),
            None => (path, message),
        };
        AnalyzeError::Manifest {
            file: file.to_owned(),
            object: object.to_owned(),
            field,
            message,
        }
    })
}

/// One finished measurement as printed.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRow {
    pub metric: String,
    /// 1 for the metric's first measurement.
    pub number: usize,
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// A metric's verdict and every measurement taken.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricReport {
    pub name: String,
    pub provider: String,
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub dry_run: bool,
    pub measurements: Vec<MeasurementRow>,
}

/// The outcome of `ramp analyze`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisReport {
    /// The analysed objects.
    pub analysis: String,
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub interrupted: bool,
    pub metrics: Vec<MetricReport>,
}

impl AnalysisReport {
    fn exit_code(&self) -> u8 {
        if self.interrupted {
            return EXIT_INTERRUPTED;
        }
        match AnalysisPhase::parse_field("phase", &self.phase) {
            Ok(Some(AnalysisPhase::Successful)) => EXIT_SUCCESSFUL,
            Ok(Some(AnalysisPhase::Failed)) => EXIT_FAILED,
            Ok(Some(AnalysisPhase::Inconclusive)) => EXIT_INCONCLUSIVE,
            _ => EXIT_ERROR,
        }
    }
}

fn seconds(time: Option<&Time>) -> Option<String> {
    time.map(|t| {
        Timestamp::from_second(t.0.as_second())
            .unwrap_or(t.0)
            .to_string()
    })
}

/// Measures on the run's schedule until it completes (or Ctrl-C), feeding each measurement to
/// the printer as it arrives.
async fn execute(plan: &Plan, printer: &mut Printer) -> AnalysisReport {
    let providers = Providers::new(
        ProviderConfig {
            prometheus_address: plan.prometheus.clone(),
        },
        None,
    );
    let mut rows: BTreeMap<String, Vec<MeasurementRow>> = BTreeMap::new();
    let mut record = |outcome: &MeasurementOutcome, printer: &mut Printer| {
        if outcome.measurement.is_in_flight() {
            return;
        }
        let taken = rows.entry(outcome.metric.clone()).or_default();
        let m = &outcome.measurement;
        let row = MeasurementRow {
            metric: outcome.metric.clone(),
            number: taken.len() + 1,
            phase: m.phase.clone(),
            value: m.value.clone().filter(|v| !v.is_empty()),
            message: m.message.clone().filter(|v| !v.is_empty()),
            started_at: seconds(m.started_at.as_ref()),
            finished_at: seconds(m.finished_at.as_ref()),
        };
        printer.measurement(&row);
        taken.push(row);
    };

    let unmeasurable_run = AnalysisRun {
        metadata: run_metadata(),
        spec: AnalysisRunSpec {
            metrics: plan.unmeasurable.clone(),
            ..AnalysisRunSpec::default()
        },
        status: None,
    };
    let now = Timestamp::now();
    let unmeasurable = futures::future::join_all(plan.unmeasurable.iter().map(|metric| {
        let task = MeasurementTask::Measure {
            metric: metric.name.clone(),
        };
        providers.run_task(task, &unmeasurable_run, &plan.args, now)
    }))
    .await;
    for outcome in &unmeasurable {
        record(outcome, printer);
    }

    let mut run = AnalysisRun {
        metadata: run_metadata(),
        spec: plan.spec.clone(),
        status: None,
    };
    let mut interrupted = false;
    let mut status: Option<AnalysisRunStatus> = None;
    if !run.spec.metrics.is_empty() {
        let interrupt = tokio::signal::ctrl_c();
        tokio::pin!(interrupt);
        loop {
            let now = Timestamp::now();
            let tasks = plan_measurements(&run.spec, status.as_ref(), now);
            run.status.clone_from(&status);
            let measuring = futures::future::join_all(
                tasks
                    .into_iter()
                    .map(|task| providers.run_task(task, &run, &plan.args, now)),
            );
            // A query may take its whole timeout; Ctrl-C does not wait for it.
            let outcomes = tokio::select! {
                outcomes = measuring => outcomes,
                _ = &mut interrupt => {
                    interrupted = true;
                    break;
                }
            };
            for outcome in &outcomes {
                record(outcome, printer);
            }
            let update = reconcile(&run.spec, status.as_ref(), now, outcomes);
            let completed = update
                .status
                .phase()
                .ok()
                .flatten()
                .is_some_and(AnalysisPhase::is_completed);
            status = Some(update.status);
            let Some(wake_at) = update.wake_at.filter(|_| !completed) else {
                break;
            };
            let wait = Duration::try_from(wake_at.duration_since(Timestamp::now()))
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = &mut interrupt => {
                    interrupted = true;
                    break;
                }
            }
        }
    }
    report(plan, status.as_ref(), &unmeasurable, rows, interrupted)
}

fn run_metadata() -> ObjectMeta {
    ObjectMeta {
        name: Some("ramp-analyze".to_owned()),
        namespace: Some("default".to_owned()),
        ..ObjectMeta::default()
    }
}

fn report(
    plan: &Plan,
    status: Option<&AnalysisRunStatus>,
    unmeasurable: &[MeasurementOutcome],
    mut rows: BTreeMap<String, Vec<MeasurementRow>>,
    interrupted: bool,
) -> AnalysisReport {
    let mut metrics = Vec::new();
    let mut unmeasurable_worst: Option<(AnalysisPhase, String, String)> = None;
    for name in &plan.order {
        let measurements = rows.remove(name).unwrap_or_default();
        let provider = plan
            .spec
            .metrics
            .iter()
            .chain(&plan.unmeasurable)
            .find(|m| &m.name == name)
            .and_then(|m| m.provider.kind().ok())
            .map_or_else(|| "unknown".to_owned(), |k| k.json_name().to_owned());
        if let Some(outcome) = unmeasurable.iter().find(|o| &o.metric == name) {
            let phase = outcome
                .measurement
                .phase()
                .ok()
                .flatten()
                .unwrap_or(AnalysisPhase::Error);
            let message = outcome.measurement.message.clone();
            let dry_run = plan.unmeasurable_dry_run.contains(name);
            if !dry_run
                && unmeasurable_worst
                    .as_ref()
                    .is_none_or(|(w, ..)| phase.worse(*w) != *w)
            {
                unmeasurable_worst =
                    Some((phase, name.clone(), message.clone().unwrap_or_default()));
            }
            metrics.push(MetricReport {
                name: name.clone(),
                provider,
                phase: phase.to_string(),
                message,
                dry_run,
                measurements,
            });
            continue;
        }
        let result = status.and_then(|s| s.metric_result(name));
        metrics.push(MetricReport {
            name: name.clone(),
            provider,
            phase: result
                .map(|r| r.phase.clone())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| AnalysisPhase::Pending.to_string()),
            message: result.and_then(|r| r.message.clone()),
            dry_run: result.and_then(|r| r.dry_run) == Some(true),
            measurements,
        });
    }
    let run_phase = if plan.spec.metrics.is_empty() {
        Some(AnalysisPhase::Successful)
    } else {
        status.and_then(|s| s.phase().ok().flatten())
    };
    let mut phase = run_phase.unwrap_or(AnalysisPhase::Running);
    let mut message = status.and_then(|s| s.message.clone());
    if let Some((unmeasurable_phase, metric, detail)) = unmeasurable_worst
        && unmeasurable_phase.worse(phase) != phase
    {
        phase = unmeasurable_phase;
        message = Some(format!(
            "Metric \"{metric}\" assessed {unmeasurable_phase} due to: {detail}"
        ));
    }
    if !interrupted && !phase.is_completed() {
        message = Some(format!(
            "the analysis stopped in phase {phase} with nothing left to measure"
        ));
        phase = AnalysisPhase::Error;
    }
    AnalysisReport {
        analysis: plan.object.clone(),
        phase: phase.to_string(),
        message,
        interrupted,
        metrics,
    }
}

/// Writes measurements as they arrive (`--watch`) or the whole table at the end. Output goes
/// to stdout; a closed pipe (`| head`) only stops the printing, never the exit status.
struct Printer {
    format: OutputFormat,
    watch: bool,
    widths: Widths,
    header_printed: bool,
}

#[derive(Clone, Copy)]
struct Widths {
    metric: usize,
    number: usize,
    time: usize,
    phase: usize,
    value: usize,
}

const HEADERS: [&str; 6] = ["METRIC", "#", "TIME", "PHASE", "VALUE", "MESSAGE"];

fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
}

impl Printer {
    fn new(args: &AnalyzeArgs, plan: &Plan) -> Self {
        let metric = plan
            .order
            .iter()
            .map(String::len)
            .chain([HEADERS[0].len()])
            .max()
            .unwrap_or(6);
        Self {
            format: args.output,
            watch: args.watch,
            widths: Widths {
                metric,
                number: 3,
                time: "2006-01-02T15:04:05Z".len(),
                phase: "Inconclusive".len(),
                value: 12,
            },
            header_printed: false,
        }
    }

    fn measurement(&mut self, row: &MeasurementRow) {
        if !self.watch {
            return;
        }
        match self.format {
            OutputFormat::Json => {
                if let Ok(line) = serde_json::to_string(row) {
                    out(&line);
                }
            }
            OutputFormat::Text => {
                if !self.header_printed {
                    out(&header_line(self.widths));
                    self.header_printed = true;
                }
                out(&row_line(row, self.widths));
            }
        }
        // Piped output is block-buffered; a watcher wants each line now.
        let _ = std::io::stdout().flush();
    }

    fn finish(&mut self, report: &AnalysisReport) {
        if self.format == OutputFormat::Json {
            let text = if self.watch {
                serde_json::to_string(report)
            } else {
                serde_json::to_string_pretty(report)
            };
            match text {
                Ok(text) => out(&text),
                Err(error) => eprintln!("error: rendering the result as JSON: {error}"),
            }
            return;
        }
        if !self.watch {
            // At the end the table is grouped by metric, in the manifests' order.
            let rows = report.metrics.iter().flat_map(|m| &m.measurements);
            let mut widths = self.widths;
            widths.value = rows
                .clone()
                .filter_map(|r| r.value.as_deref().map(str::len))
                .chain([HEADERS[4].len()])
                .max()
                .unwrap_or(5);
            out(&header_line(widths));
            for row in rows {
                out(&row_line(row, widths));
            }
        } else if !self.header_printed {
            out(&header_line(self.widths));
        }
        out("");
        for metric in &report.metrics {
            let dry_run = if metric.dry_run { " (dry run)" } else { "" };
            match &metric.message {
                Some(message) => out(&format!(
                    "Metric {}{dry_run}: {}: {message}",
                    metric.name, metric.phase
                )),
                None => out(&format!(
                    "Metric {}{dry_run}: {}",
                    metric.name, metric.phase
                )),
            }
        }
        if report.interrupted {
            out("Result: interrupted before the analysis completed");
        } else {
            match &report.message {
                Some(message) => out(&format!("Result: {}: {message}", report.phase)),
                None => out(&format!("Result: {}", report.phase)),
            }
        }
    }
}

fn header_line(w: Widths) -> String {
    format!(
        "{:<mw$}  {:>nw$}  {:<tw$}  {:<pw$}  {:<vw$}  {}",
        HEADERS[0],
        HEADERS[1],
        HEADERS[2],
        HEADERS[3],
        HEADERS[4],
        HEADERS[5],
        mw = w.metric,
        nw = w.number,
        tw = w.time,
        pw = w.phase,
        vw = w.value,
    )
    .trim_end()
    .to_owned()
}

fn row_line(row: &MeasurementRow, w: Widths) -> String {
    // A message spans one line of the table.
    let message = row
        .message
        .as_deref()
        .unwrap_or_default()
        .replace('\n', " ");
    format!(
        "{:<mw$}  {:>nw$}  {:<tw$}  {:<pw$}  {:<vw$}  {}",
        row.metric,
        row.number,
        row.finished_at
            .as_deref()
            .or(row.started_at.as_deref())
            .unwrap_or("-"),
        row.phase,
        row.value.as_deref().unwrap_or("-"),
        message,
        mw = w.metric,
        nw = w.number,
        tw = w.time,
        pw = w.phase,
        vw = w.value,
    )
    .trim_end()
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_arg("query=a=b"),
            Ok(("query".to_owned(), "a=b".to_owned()))
        );
        assert_eq!(parse_arg("empty="), Ok(("empty".to_owned(), String::new())));
        assert!(parse_arg("=value").is_err());
        assert!(parse_arg("novalue").is_err());
    }

    #[test]
    fn taking_once_makes_one_measurement_the_verdict() {
        let mut metric = Metric {
            name: "m".to_owned(),
            count: Some(IntOrString::Int(5)),
            interval: Some("1m".to_owned()),
            initial_delay: Some("5m".to_owned()),
            failure_limit: Some(IntOrString::Int(3)),
            consecutive_success_limit: Some(IntOrString::Int(2)),
            ..Metric::default()
        };
        take_once(&mut metric);
        assert_eq!(metric.effective_count(), Ok(MeasurementCount::Bounded(1)));
        assert_eq!(metric.interval, None);
        assert_eq!(metric.initial_delay, None);
        let limits = metric.limits().map(|l| {
            (
                l.failure,
                l.inconclusive,
                l.consecutive_error,
                l.consecutive_success,
            )
        });
        assert_eq!(limits, Ok((0, 0, 0, 0)));
    }

    #[test]
    fn missing_arguments_are_all_named_with_the_flag_to_pass() {
        let message = missing_message(&[
            ("AnalysisTemplate/a".to_owned(), "service-name".to_owned()),
            ("AnalysisTemplate/b".to_owned(), "ingress".to_owned()),
        ]);
        assert_eq!(
            message,
            "missing arguments \"service-name\" (declared by AnalysisTemplate/a), \"ingress\" (declared by AnalysisTemplate/b): pass --arg service-name=VALUE --arg ingress=VALUE"
        );
    }
}
