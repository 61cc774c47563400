//! `ramp lint`: reads Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun and
//! Experiment manifests from files, directories or stdin, runs `ramp_api::validation` and the
//! table of unimplemented features over them, and prints the findings. All the rules live in
//! `ramp-api`; this module only loads documents, attributes findings and chooses exit codes.

use anyhow::Context;
use ramp_api::analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use ramp_api::experiment::Experiment;
use ramp_api::features;
use ramp_api::rollout::Rollout;
use ramp_api::validation::{
    self, DEFAULT_NAMESPACE, Problem, RouterObjects, ServiceCatalog, Severity, TemplateCatalog,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code when every input was read and no error was found (warnings allowed).
const EXIT_CLEAN: u8 = 0;
/// Exit code when at least one error was found.
const EXIT_ERRORS: u8 = 1;
/// Exit code when an input could not be read or parsed.
const EXIT_UNREADABLE: u8 = 2;

#[derive(clap::Args, Debug)]
pub struct LintArgs {
    /// A manifest file, a directory (searched recursively for *.yaml, *.yml and *.json) or `-`
    /// for standard input. Repeat to lint several.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    pub filenames: Vec<PathBuf>,
    /// A directory of AnalysisTemplates and ClusterAnalysisTemplates that the linted manifests
    /// may refer to. They are used to check references only, not linted themselves.
    #[arg(long, value_name = "DIR")]
    pub templates_from: Vec<PathBuf>,
    /// Output format: `text` (one line per finding) or `json` (for CI).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

/// The object a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DocumentRef {
    pub kind: String,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for DocumentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {namespace}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One problem, attributed to a file and an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub file: String,
    #[serde(flatten)]
    pub document: DocumentRef,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}: {}",
            self.file, self.document, self.field, self.message
        )
    }
}

/// An input that could not be read or is not YAML/JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.file, self.message)
            }
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Everything one `ramp lint` invocation found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub unreadable: Vec<Unreadable>,
    /// What could not be checked, in one line each (e.g. templates no input defines).
    pub notes: Vec<String>,
    pub summary: Summary,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub files: usize,
    pub documents: usize,
    pub errors: usize,
    pub warnings: usize,
    pub unreadable: usize,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        if !self.unreadable.is_empty() {
            EXIT_UNREADABLE
        } else if self.summary.errors > 0 {
            EXIT_ERRORS
        } else {
            EXIT_CLEAN
        }
    }
}

pub fn run(args: &LintArgs) -> anyhow::Result<ExitCode> {
    let report = lint(args);
    match args.output {
        OutputFormat::Json => {
            let text =
                serde_json::to_string_pretty(&report).context("rendering the findings as JSON")?;
            println!("{text}");
        }
        OutputFormat::Text => {
            for finding in &report.findings {
                println!("{}: {finding}", finding.severity);
            }
            for unreadable in &report.unreadable {
                eprintln!("error: {unreadable}");
            }
            for note in &report.notes {
                eprintln!("note: {note}");
            }
            let s = &report.summary;
            eprintln!(
                "{} error(s), {} warning(s), {} unreadable input(s) in {} document(s) from {} file(s)",
                s.errors, s.warnings, s.unreadable, s.documents, s.files
            );
        }
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// Loads every input, validates every argoproj document and collects the findings.
pub fn lint(args: &LintArgs) -> Report {
    let mut report = Report::default();
    let mut inputs = Loaded::default();
    for source in collect_sources(&args.filenames, &mut report.unreadable) {
        report.summary.files += 1;
        load_source(&source, &mut inputs, &mut report.unreadable);
    }
    // `--templates-from` only feeds the catalogs: its documents are not linted, but its
    // templates (and Services, router objects) are known when checking the inputs.
    let mut extra = Loaded::default();
    for source in collect_sources(&args.templates_from, &mut report.unreadable) {
        load_source(&source, &mut extra, &mut report.unreadable);
    }
    let referable: Vec<Referable> = inputs
        .referable
        .into_iter()
        .chain(extra.referable)
        .collect();
    let shared = Catalogs::build(referable.iter());
    let shadowing = files_with_shadowing_objects(&referable);
    let mut own_catalogs: BTreeMap<&str, Catalogs> = BTreeMap::new();

    let documents = inputs.documents;
    report.summary.documents = documents.len();
    report
        .notes
        .extend(unchecked_templates_note(&documents, &referable));
    for document in &documents {
        let catalogs = if shadowing.contains(document.file.as_str()) {
            own_catalogs
                .entry(document.file.as_str())
                .or_insert_with(|| Catalogs::for_file(&document.file, &referable))
        } else {
            &shared
        };
        for problem in check_document(document, catalogs) {
            report.findings.push(Finding {
                severity: problem.severity,
                file: document.file.clone(),
                document: document.reference.clone(),
                field: problem.field,
                message: problem.message,
            });
        }
    }
    report.summary.errors = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    report.summary.warnings = report.findings.len() - report.summary.errors;
    report.summary.unreadable = report.unreadable.len();
    report
}

/// Where manifest text comes from.
enum Source {
    File(PathBuf),
    Stdin,
}

impl Source {
    fn display(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Stdin => "<stdin>".to_owned(),
        }
    }
}

/// Expands the command-line inputs into the files to read, in a stable order.
fn collect_sources(inputs: &[PathBuf], unreadable: &mut Vec<Unreadable>) -> Vec<Source> {
    let mut sources = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            sources.push(Source::Stdin);
            continue;
        }
        match std::fs::metadata(input) {
            Ok(meta) if meta.is_dir() => {
                let mut walk = DirectoryWalk::default();
                walk.directory(input, unreadable);
                sources.extend(walk.files.into_iter().map(Source::File));
            }
            Ok(_) => sources.push(Source::File(input.clone())),
            Err(err) => unreadable.push(Unreadable {
                file: input.display().to_string(),
                line: None,
                column: None,
                message: format!("cannot read: {err}"),
            }),
        }
    }
    sources
}

fn is_manifest_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

/// A recursive walk that follows symbolic links but enters each directory, and reads each
/// file, once: a link back up the tree (`ln -s .. d/up`) or to itself (`ln -s . d/self`) would
/// otherwise never end or lint the same documents again under another name.
#[derive(Default)]
struct DirectoryWalk {
    files: Vec<PathBuf>,
    seen: std::collections::HashSet<PathBuf>,
}

impl DirectoryWalk {
    /// Whether `path` (resolved through its links) has not been visited yet; marks it.
    fn first_visit(&mut self, path: &Path) -> bool {
        match std::fs::canonicalize(path) {
            Ok(real) => self.seen.insert(real),
            // Unresolvable (a dangling link): reading it reports the problem.
            Err(_) => true,
        }
    }

    fn directory(&mut self, dir: &Path, unreadable: &mut Vec<Unreadable>) {
        if !self.first_visit(dir) {
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                unreadable.push(Unreadable {
                    file: dir.display().to_string(),
                    line: None,
                    column: None,
                    message: format!("cannot read directory: {err}"),
                });
                return;
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                self.directory(&path, unreadable);
            } else if is_manifest_file(&path) && self.first_visit(&path) {
                self.files.push(path);
            }
        }
    }
}

/// What the inputs hold: the argoproj documents to lint, and the objects they may refer to.
#[derive(Default)]
struct Loaded {
    documents: Vec<LoadedDocument>,
    referable: Vec<Referable>,
}

/// An object a linted document may refer to by name — a Service, VirtualService,
/// DestinationRule, Ingress, AnalysisTemplate or ClusterAnalysisTemplate — with the file it
/// came from.
struct Referable {
    file: String,
    kind: String,
    namespace: Option<String>,
    name: String,
    value: Value,
}

/// The objects references are checked against.
#[derive(Default)]
struct Catalogs {
    templates: TemplateCatalog,
    services: ServiceCatalog,
    routers: RouterObjects,
}

impl Catalogs {
    /// Every object of `objects`; when two share a name, the first one counts.
    fn build<'a>(objects: impl Iterator<Item = &'a Referable>) -> Self {
        let mut catalogs = Self::default();
        for object in objects {
            catalogs.add(object);
        }
        catalogs
    }

    /// The catalogs seen from `file`: its own objects come first, so they win over same-named
    /// objects of other files. Manifests are applied one file at a time (upstream's e2e
    /// suite reuses names such as `istio-host-split-vsvc` in several files), so a Rollout
    /// means the VirtualService or template written next to it.
    fn for_file(file: &str, objects: &[Referable]) -> Self {
        Self::build(
            objects
                .iter()
                .filter(|o| o.file == file)
                .chain(objects.iter().filter(|o| o.file != file)),
        )
    }

    fn add(&mut self, object: &Referable) {
        let namespace = object.namespace.as_deref();
        match object.kind.as_str() {
            "Service" => {
                self.services
                    .add_service(namespace, &object.name, service_selector(&object.value))
            }
            "AnalysisTemplate" => {
                if let Ok(template) =
                    serde_json::from_value::<AnalysisTemplate>(object.value.clone())
                {
                    self.templates
                        .add_analysis_template(namespace, &object.name, template.spec);
                }
            }
            "ClusterAnalysisTemplate" => {
                if let Ok(template) =
                    serde_json::from_value::<ClusterAnalysisTemplate>(object.value.clone())
                {
                    self.templates
                        .add_cluster_analysis_template(&object.name, template.spec.0);
                }
            }
            kind => self
                .routers
                .add(kind, namespace, &object.name, object.value.clone()),
        }
    }
}

/// A template reference is only checked when templates of its kind (namespaced or cluster)
/// were read; otherwise it passes silently, which this one line says, naming the templates.
fn unchecked_templates_note(documents: &[LoadedDocument], objects: &[Referable]) -> Option<String> {
    let known = |kind: &str| objects.iter().any(|o| o.kind == kind);
    let (namespaced_known, cluster_known) =
        (known("AnalysisTemplate"), known("ClusterAnalysisTemplate"));
    let mut unchecked = BTreeSet::new();
    for document in documents {
        template_references(&document.value, &mut |name, cluster| {
            let scope_known = if cluster {
                cluster_known
            } else {
                namespaced_known
            };
            if !scope_known {
                unchecked.insert(name.to_owned());
            }
        });
    }
    if unchecked.is_empty() {
        return None;
    }
    let names: Vec<&str> = unchecked.iter().map(String::as_str).collect();
    Some(format!(
        "{} analysis template(s) referenced but not read were not checked ({}); pass --templates-from DIR (or lint them with the rollouts) to check them",
        names.len(),
        names.join(", ")
    ))
}

/// Calls `found` with every `templateName` under `value` and whether it is cluster-scoped.
fn template_references(value: &Value, found: &mut impl FnMut(&str, bool)) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map.get("templateName").and_then(Value::as_str) {
                let cluster = map.get("clusterScope").and_then(Value::as_bool) == Some(true);
                found(name, cluster);
            }
            for child in map.values() {
                template_references(child, found);
            }
        }
        Value::Array(items) => {
            for item in items {
                template_references(item, found);
            }
        }
        _ => {}
    }
}

/// Files holding an object whose kind and name another file also uses: documents of those
/// files get catalogs of their own ([`Catalogs::for_file`]); all others share one.
fn files_with_shadowing_objects(objects: &[Referable]) -> BTreeSet<&str> {
    let mut files_by_name: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for object in objects {
        files_by_name
            .entry((object.kind.as_str(), object.name.as_str()))
            .or_default()
            .insert(object.file.as_str());
    }
    files_by_name
        .into_values()
        .filter(|files| files.len() > 1)
        .flatten()
        .collect()
}

/// One argoproj document read from an input.
struct LoadedDocument {
    file: String,
    reference: DocumentRef,
    value: Value,
    /// What reading the YAML itself revealed (e.g. an unquoted `{{...}}` placeholder).
    notes: Vec<Problem>,
}

/// The most `ramp lint` reads from one input. A manifest stream this large is already far
/// beyond anything applied in one go; the cap keeps an endless input (`/dev/zero`, a pipe that
/// never closes) from filling memory.
pub const MAX_INPUT_BYTES: u64 = 128 * 1024 * 1024;

/// Reads one input, refusing more than [`MAX_INPUT_BYTES`] and text that is not UTF-8.
fn read_source(source: &Source) -> Result<String, String> {
    let mut bytes = Vec::new();
    let read = match source {
        Source::File(path) => std::fs::File::open(path)
            .and_then(|file| file.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes)),
        Source::Stdin => std::io::stdin()
            .lock()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes),
    };
    read.map_err(|err| format!("cannot read: {err}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!(
            "cannot read: larger than {} MiB, the most ramp lint reads from one input; split it into smaller files",
            MAX_INPUT_BYTES / (1024 * 1024)
        ));
    }
    String::from_utf8(bytes).map_err(|err| format!("cannot read: not UTF-8 text ({err})"))
}

/// Parses one input into its argoproj documents; other documents (Services, Ingresses, Helm
/// values...) are skipped.
fn load_source(source: &Source, loaded: &mut Loaded, unreadable: &mut Vec<Unreadable>) {
    let file = source.display();
    let text = match read_source(source) {
        Ok(text) => text,
        Err(message) => {
            unreadable.push(Unreadable {
                file,
                line: None,
                column: None,
                message,
            });
            return;
        }
    };
    let parsed = match ramp_api::manifest::parse_stream(&text) {
        Ok(parsed) => parsed,
        Err(err) => {
            unreadable.push(Unreadable {
                file,
                line: err.line,
                column: err.column,
                message: format!("not valid YAML: {}", err.message),
            });
            return;
        }
    };
    for (index, value) in parsed.documents.into_iter().enumerate() {
        let notes: Vec<Problem> = parsed
            .notices
            .iter()
            .filter(|notice| notice.document == index)
            .map(|notice| Problem::warning(notice.field.clone(), notice.message.clone()))
            .collect();
        push_documents(&file, value, &notes, loaded);
    }
}

fn push_documents(file: &str, value: Value, notes: &[Problem], loaded: &mut Loaded) {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // `kubectl get -o yaml` wraps several objects in a v1 List.
    if api_version == "v1" && kind == "List" {
        if let Some(Value::Array(items)) = value.get("items") {
            for (index, item) in items.iter().enumerate() {
                // Notes carry paths from the List's root; keep those under this item.
                let prefix = format!("items[{index}].");
                let item_notes: Vec<Problem> = notes
                    .iter()
                    .filter_map(|note| {
                        let field = note.field.strip_prefix(&prefix)?;
                        Some(Problem {
                            field: field.to_owned(),
                            ..note.clone()
                        })
                    })
                    .collect();
                push_documents(file, item.clone(), &item_notes, loaded);
            }
        }
        return;
    }
    let group = api_version.split('/').next().unwrap_or_default();
    let is_router_object = matches!(
        (group, kind),
        ("networking.istio.io", "VirtualService" | "DestinationRule")
            | ("networking.k8s.io" | "extensions", "Ingress")
    );
    if (api_version == "v1" && kind == "Service") || is_router_object {
        let metadata = value.get("metadata");
        if let Some(name) = metadata.and_then(|m| m.get("name")).and_then(Value::as_str) {
            let namespace = metadata
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str);
            loaded.referable.push(Referable {
                file: file.to_owned(),
                kind: kind.to_owned(),
                namespace: namespace.map(str::to_owned),
                name: name.to_owned(),
                value: value.clone(),
            });
        }
        return;
    }
    let is_argoproj = api_version.split('/').next() == Some(ramp_api::GROUP);
    let known = matches!(
        kind,
        "Rollout" | "AnalysisTemplate" | "ClusterAnalysisTemplate" | "AnalysisRun" | "Experiment"
    );
    if !is_argoproj || !known {
        return;
    }
    let metadata = value.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            metadata
                .and_then(|m| m.get("generateName"))
                .and_then(Value::as_str)
                .map(|prefix| format!("{prefix}*"))
        })
        .unwrap_or_else(|| "<unnamed>".to_owned());
    let namespace = (kind != "ClusterAnalysisTemplate").then(|| {
        metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_owned()
    });
    if matches!(kind, "AnalysisTemplate" | "ClusterAnalysisTemplate") {
        loaded.referable.push(Referable {
            file: file.to_owned(),
            kind: kind.to_owned(),
            // As written: a template without a namespace matches references from any.
            namespace: metadata
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: name.clone(),
            value: value.clone(),
        });
    }
    loaded.documents.push(LoadedDocument {
        file: file.to_owned(),
        reference: DocumentRef {
            kind: kind.to_owned(),
            namespace,
            name,
        },
        value,
        notes: notes.to_vec(),
    });
}

/// A Service's `spec.selector`, so the Rollouts naming it can be checked against it.
fn service_selector(service: &Value) -> BTreeMap<String, String> {
    service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Every problem of one document: shape, unknown fields, semantic rules, unimplemented
/// features and references.
fn check_document(document: &LoadedDocument, catalogs: &Catalogs) -> Vec<Problem> {
    let catalog = &catalogs.templates;
    let kind = document.reference.kind.as_str();
    let mut problems = document.notes.clone();
    problems.extend(match kind {
        "Rollout" => typed::<Rollout>(&document.value, |rollout| {
            let mut found = validation::validate_rollout(rollout);
            found.extend(validation::check_references(rollout, catalog));
            found.extend(validation::check_services(rollout, &catalogs.services));
            found.extend(validation::check_router_objects(rollout, &catalogs.routers));
            found
        }),
        "AnalysisTemplate" => typed::<AnalysisTemplate>(&document.value, |template| {
            let mut found = validation::validate_analysis_template(template);
            found.extend(condition_problems(
                template.spec.metrics.as_deref().unwrap_or_default(),
            ));
            found.extend(validation::check_template_includes(
                template.metadata.namespace.as_deref(),
                &template.spec,
                catalog,
            ));
            found
        }),
        "ClusterAnalysisTemplate" => {
            typed::<ClusterAnalysisTemplate>(&document.value, |template| {
                let mut found = validation::validate_cluster_analysis_template(template);
                found.extend(condition_problems(
                    template.spec.metrics.as_deref().unwrap_or_default(),
                ));
                found.extend(validation::check_template_includes(
                    None,
                    &template.spec,
                    catalog,
                ));
                found
            })
        }
        "AnalysisRun" => typed::<AnalysisRun>(&document.value, |run| {
            let mut found = validation::validate_analysis_run(run);
            found.extend(condition_problems(&run.spec.metrics));
            found
        }),
        "Experiment" => typed::<Experiment>(&document.value, |experiment| {
            let mut found = validation::validate_experiment(experiment);
            found.extend(validation::check_experiment_references(experiment, catalog));
            found
        }),
        _ => Vec::new(),
    });
    problems.extend(
        features::find_unimplemented(kind, &document.value)
            .into_iter()
            .map(|feature_use| Problem::warning(&feature_use.field, feature_use.message())),
    );
    problems
}

/// Success and failure conditions that the expression engine cannot compile: caught here, they
/// would otherwise only surface as Error measurements in the middle of a release.
fn condition_problems(metrics: &[ramp_api::analysis::Metric]) -> Vec<Problem> {
    metrics
        .iter()
        .enumerate()
        .flat_map(|(index, metric)| {
            ramp_core::analysis::condition::check_metric_conditions(metric)
                .into_iter()
                .map(move |(field, err)| {
                    Problem::error(format!("spec.metrics[{index}].{field}"), err.to_string())
                })
        })
        .collect()
}

/// Deserializes `value` as `T` and validates it; a value that does not have `T`'s shape gives
/// one error naming the offending field instead.
fn typed<T: DeserializeOwned + Serialize>(
    value: &Value,
    validate: impl FnOnce(&T) -> Vec<Problem>,
) -> Vec<Problem> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(object) => {
            let mut problems = unknown_fields(value, &object);
            problems.extend(validate(&object));
            problems
        }
        Err(err) => vec![shape_problem(&err)],
    }
}

fn shape_problem(err: &serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let path = err.path().to_string();
    let message = err.inner().to_string();
    // serde reports a missing field at its parent; point at the field itself.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let field_path = if path == "." {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
        return Problem::error(field_path, "is required");
    }
    let field_path = if path == "." {
        "(document)".to_owned()
    } else {
        path
    };
    Problem::error(field_path, message)
}

/// Fields of the manifest that the typed object does not carry: they are not part of the
/// schema, so the API server would drop them (typically a misspelt field name).
fn unknown_fields<T: Serialize>(original: &Value, object: &T) -> Vec<Problem> {
    let Ok(round_trip) = serde_json::to_value(object) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    compare_fields(original, &round_trip, "", &mut problems);
    problems
}

fn compare_fields(original: &Value, kept: &Value, path: &str, problems: &mut Vec<Problem>) {
    match (original, kept) {
        (Value::Object(original), Value::Object(kept)) => {
            for (key, value) in original {
                if value.is_null() {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match kept.get(key) {
                    Some(kept_value) => compare_fields(value, kept_value, &child, problems),
                    None => problems.push(Problem::warning(
                        child,
                        "unknown field: not part of the schema, so it is ignored (misspelt?)",
                    )),
                }
            }
        }
        (Value::Array(original), Value::Array(kept)) => {
            for (index, (value, kept_value)) in original.iter().zip(kept).enumerate() {
                compare_fields(value, kept_value, &format!("{path}[{index}]"), problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_but_nulls_are_not() {
        let manifest = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "t", "creationTimestamp": null},
            "spec": {"metrics": [{"name": "m", "intreval": "1m", "provider": {"web": {"url": "http://x"}}}]}
        });
        let problems = typed::<AnalysisTemplate>(&manifest, |_| Vec::new());
        assert_eq!(
            problems,
            vec![Problem::warning(
                "spec.metrics[0].intreval",
                "unknown field: not part of the schema, so it is ignored (misspelt?)"
            )]
        );
    }

    #[test]
    fn shape_errors_name_the_field() {
        let missing = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": "r"},
            "spec": {"metrics": [{"provider": {}}]}});
        assert_eq!(
            typed::<AnalysisRun>(&missing, |_| Vec::new()),
            vec![Problem::error("spec.metrics[0].name", "is required")]
        );
        let wrong_type = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": "r"},
            "spec": {"metrics": [], "terminate": "yes"}});
        assert_eq!(
            typed::<AnalysisRun>(&wrong_type, |_| Vec::new()),
            vec![Problem::error(
                "spec.terminate",
                r#"invalid type: string "yes", expected a boolean"#
            )]
        );
    }

    #[test]
    fn documents_are_named_by_kind_namespace_and_name() {
        let mut loaded = Loaded::default();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "a", "namespace": "shop"}},
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "ClusterAnalysisTemplate", "metadata": {"generateName": "t-"}},
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "argo-cd-app"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}}
        ]});
        push_documents("f.yaml", list, &[], &mut loaded);
        let names: Vec<String> = loaded
            .documents
            .iter()
            .map(|d| d.reference.to_string())
            .collect();
        assert_eq!(names, vec!["Rollout shop/a", "ClusterAnalysisTemplate t-*"]);
    }
}
