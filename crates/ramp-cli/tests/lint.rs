//! `ramp lint` end to end: the exact findings for a fixture holding every error kind, the JSON
//! shape, exit codes for broken input, and a clean run over the upstream compat corpus and
//! Ramp's own examples.

use assert_cmd::cargo::cargo_bin_cmd;
use pretty_assertions::assert_eq;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint")
}

fn repository_examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn lint_in(dir: &Path, args: &[&str]) -> Outcome {
    let output = cargo_bin_cmd!("ramp")
        .current_dir(dir)
        .arg("lint")
        .args(args)
        .output()
        .expect("ramp runs");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

const ROLLOUT_FINDINGS: &[&str] = &[
    "error: rollout.yaml: Rollout default/checkout: spec.strategy.canary.canaryService: is required with trafficRouting (nginx)",
    "error: rollout.yaml: Rollout default/checkout: spec.strategy.canary.stableService: is required with trafficRouting (nginx)",
    r#"error: rollout.yaml: Rollout default/checkout: spec.strategy.canary.steps[1].pause.duration: "5x" is not a duration: unknown unit "x" (use ns, us, ms, s, m or h)"#,
    "error: rollout.yaml: Rollout default/checkout: spec.strategy.canary.steps[2].setWeight: 140 is outside 0..100",
];

const REFERENCE_FINDINGS: &[&str] = &[
    r#"error: rollout.yaml: Rollout default/checkout: spec.strategy.canary.steps[3].analysis.templates[0].templateName: AnalysisTemplate "success-rat" is not among the given templates"#,
    r#"error: rollout.yaml: Rollout default/checkout: spec.strategy.canary.steps[4].analysis.templates[0].templateName: metric "latency" of AnalysisTemplate "latency" has an interval but no count, so it never ends; only background analysis may run indefinitely"#,
    r#"error: rollout.yaml: Rollout default/checkout: spec.strategy.canary.steps[4].analysis.args: argument "service" required by AnalysisTemplate "latency" is not passed"#,
    r#"error: rollout.yaml: Rollout default/checkout: spec.strategy.canary.analysis.templates[1].templateName: duplicate metric name "success-rate": defined by both AnalysisTemplate "success-rate" and AnalysisTemplate "also-success-rate""#,
];

const OTHER_ROLLOUT_FINDINGS: &[&str] = &[
    "error: rollout.yaml: Rollout shop/same-services: spec.selector: does not match the template labels {app=website}",
    r#"error: rollout.yaml: Rollout shop/same-services: spec.strategy.canary.canaryService: "web" must differ from stableService"#,
    "error: rollout.yaml: Rollout default/two-strategies: spec.strategy: sets both canary and blueGreen; a rollout uses exactly one strategy",
    "error: rollout.yaml: Rollout default/no-strategy: spec.strategy: sets neither canary nor blueGreen; a rollout needs exactly one strategy",
    "error: rollout.yaml: Rollout default/no-active-service: spec.strategy.blueGreen.activeService: is required",
    r#"error: rollout.yaml: Rollout default/same-active-and-preview: spec.strategy.blueGreen.previewService: "web" must differ from activeService"#,
];

const PROMOTION_FINDINGS: &[&str] = &[
    r#"error: rollout.yaml: Rollout default/same-active-and-preview: spec.strategy.blueGreen.prePromotionAnalysis.templates[0].templateName: metric "latency" of AnalysisTemplate "latency" has an interval but no count, so it never ends; only background analysis may run indefinitely"#,
    r#"error: rollout.yaml: Rollout default/same-active-and-preview: spec.strategy.blueGreen.postPromotionAnalysis.templates[0].templateName: metric "latency" of AnalysisTemplate "latency" has an interval but no count, so it never ends; only background analysis may run indefinitely"#,
];

const ALB_WARNING: &str = "warning: rollout.yaml: Rollout default/alb-canary: spec.strategy.canary.trafficRouting.alb: the ALB traffic router is not implemented by Ramp yet";

const TEMPLATE_FINDINGS: &[&str] = &[
    r#"error: templates.yaml: AnalysisTemplate default/bad-metrics: spec.metrics[0].interval: "fast" is not a duration: a number must precede each unit"#,
    r#"error: templates.yaml: AnalysisTemplate default/bad-metrics: spec.metrics[1].name: duplicate metric name "errors": metric names must be unique"#,
    r#"error: templates.yaml: AnalysisTemplate default/bad-metrics: spec.metrics[0].successCondition: invalid expression "result[0] >=": --> 1:13 | 1 | result[0] >= | ^--- | = expected conditional_if, negation_op, sign_op, value, array, map, or ident"#,
    "warning: templates.yaml: AnalysisTemplate default/bad-metrics: spec.metrics[1].provider.datadog: the Datadog metric provider is not implemented by Ramp yet",
];

fn expected(groups: &[&[&str]]) -> String {
    groups
        .iter()
        .flat_map(|g| g.iter())
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn every_error_kind_is_reported_precisely_and_exits_1() {
    let outcome = lint_in(
        &fixtures().join("errors"),
        &["-f", "rollout.yaml", "-f", "templates.yaml"],
    );
    assert_eq!(
        outcome.stdout,
        expected(&[
            ROLLOUT_FINDINGS,
            REFERENCE_FINDINGS,
            OTHER_ROLLOUT_FINDINGS,
            PROMOTION_FINDINGS,
            &[ALB_WARNING],
            TEMPLATE_FINDINGS,
        ])
    );
    assert_eq!(outcome.code, Some(1), "stderr: {}", outcome.stderr);
    assert_eq!(
        outcome.stderr,
        "19 error(s), 2 warning(s), 0 unreadable input(s) in 11 document(s) from 2 file(s)\n"
    );
}

#[test]
fn template_references_are_checked_only_when_templates_are_given() {
    let errors = fixtures().join("errors");
    let alone = lint_in(&errors, &["-f", "rollout.yaml"]);
    assert_eq!(
        alone.stdout,
        expected(&[ROLLOUT_FINDINGS, OTHER_ROLLOUT_FINDINGS, &[ALB_WARNING]])
    );
    assert_eq!(alone.code, Some(1));
    // What was not checked is said, once.
    assert_eq!(
        alone.stderr,
        "note: 4 analysis template(s) referenced but not read were not checked (also-success-rate, latency, success-rat, success-rate); pass --templates-from DIR (or lint them with the rollouts) to check them\n\
         10 error(s), 1 warning(s), 0 unreadable input(s) in 7 document(s) from 1 file(s)\n"
    );

    // --templates-from makes the templates known without linting them.
    let with_templates = lint_in(&errors, &["-f", "rollout.yaml", "--templates-from", "."]);
    assert_eq!(
        with_templates.stdout,
        expected(&[
            ROLLOUT_FINDINGS,
            REFERENCE_FINDINGS,
            OTHER_ROLLOUT_FINDINGS,
            PROMOTION_FINDINGS,
            &[ALB_WARNING],
        ])
    );
}

#[test]
fn json_output_lists_findings_for_ci() {
    let outcome = lint_in(
        &fixtures().join("errors"),
        &["-f", "rollout.yaml", "-f", "templates.yaml", "-o", "json"],
    );
    assert_eq!(outcome.code, Some(1));
    let report: Value = serde_json::from_str(&outcome.stdout).expect("stdout is JSON");
    let findings = report["findings"].as_array().expect("findings is a list");
    assert_eq!(findings.len(), 21);
    assert_eq!(
        findings[3],
        serde_json::json!({
            "severity": "error",
            "file": "rollout.yaml",
            "kind": "Rollout",
            "namespace": "default",
            "name": "checkout",
            "field": "spec.strategy.canary.steps[2].setWeight",
            "message": "140 is outside 0..100"
        })
    );
    let warning = findings
        .iter()
        .find(|f| f["severity"] == "warning")
        .expect("a warning is reported");
    assert_eq!(warning["field"], "spec.strategy.canary.trafficRouting.alb");
    assert_eq!(report["unreadable"], serde_json::json!([]));
    assert_eq!(
        report["summary"],
        serde_json::json!({"files": 2, "documents": 11, "errors": 19, "warnings": 2, "unreadable": 0})
    );
}

#[test]
fn yaml_syntax_errors_exit_2_with_line_and_column() {
    let outcome = lint_in(&fixtures().join("broken"), &["-f", "rollout.yaml"]);
    assert_eq!(outcome.code, Some(2));
    assert_eq!(outcome.stdout, "");
    let first_line = outcome.stderr.lines().next().unwrap_or_default();
    assert!(
        first_line.starts_with("error: rollout.yaml:7:11: not valid YAML: "),
        "unexpected stderr: {}",
        outcome.stderr
    );
    assert!(
        !outcome.stderr.contains("panicked"),
        "stderr: {}",
        outcome.stderr
    );

    let json = lint_in(
        &fixtures().join("broken"),
        &["-f", "rollout.yaml", "-o", "json"],
    );
    assert_eq!(json.code, Some(2));
    let report: Value = serde_json::from_str(&json.stdout).expect("stdout is JSON");
    assert_eq!(report["unreadable"][0]["file"], "rollout.yaml");
    assert_eq!(report["unreadable"][0]["line"], 7);
    assert_eq!(report["unreadable"][0]["column"], 11);
}

#[test]
fn unreadable_input_wins_over_findings_elsewhere() {
    let outcome = lint_in(
        &fixtures(),
        &[
            "-f",
            "errors/rollout.yaml",
            "-f",
            "broken",
            "-f",
            "missing.yaml",
        ],
    );
    assert_eq!(outcome.code, Some(2));
    assert!(
        outcome.stdout.contains("140 is outside 0..100"),
        "stdout: {}",
        outcome.stdout
    );
    assert!(
        outcome
            .stderr
            .contains("error: broken/rollout.yaml:7:11: not valid YAML"),
        "stderr: {}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("error: missing.yaml: cannot read:"),
        "stderr: {}",
        outcome.stderr
    );
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let manifest =
        std::fs::read_to_string(fixtures().join("errors/templates.yaml")).expect("fixture");
    let output = cargo_bin_cmd!("ramp")
        .args(["lint", "-f", "-"])
        .write_stdin(manifest)
        .output()
        .expect("ramp runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout.contains(r#"error: <stdin>: AnalysisTemplate default/bad-metrics: spec.metrics[1].name: duplicate metric name "errors""#),
        "stdout: {stdout}"
    );
}

#[test]
fn compat_corpus_lints_clean_with_warnings() {
    let Some(upstream) = ramp_sim::compat::argo_rollouts() else {
        return;
    };
    let corpus = upstream.examples();
    let outcome = lint_in(&corpus, &["-f", "."]);
    assert_eq!(
        outcome.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        outcome.stdout,
        outcome.stderr
    );
    assert!(
        !outcome.stdout.lines().any(|l| l.starts_with("error:")),
        "stdout: {}",
        outcome.stdout
    );
    for expected in [
        "warning: ./traffic-routing-experiment-step/rollout-alb-experiment-step.yaml: Rollout default/alb-rollout: spec.strategy.canary.trafficRouting.alb: the ALB traffic router is not implemented by Ramp yet",
        "warning: ./experiment-with-analysis.yaml: Experiment default/experiment-with-analysis: kind: the Experiment kind is not implemented by Ramp yet",
        "warning: ./rollout-experiment-step.yaml: Rollout default/rollout-experiment-step: spec.strategy.canary.steps[1].experiment: the experiment step is not implemented by Ramp yet",
        "warning: ./workload-ref/workload-ref.yaml: Rollout default/rollout-ref-deployment: spec.workloadRef: workloadRef (taking the pod template from another workload) is not implemented by Ramp yet",
        r#"warning: ./traffic-management/rollout-linkerd.yaml: AnalysisTemplate default/load-test: spec.metrics[0].provider.job.spec.template.metadata.annotations.linkerd.io/inject: unquoted {{args.linkerd-enabled}} is read by YAML as a nested mapping, not as text; quote it ("{{args.linkerd-enabled}}")"#,
    ] {
        assert!(
            outcome.stdout.lines().any(|l| l == expected),
            "missing {expected:?} in:\n{}",
            outcome.stdout
        );
    }
}

fn manifest_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus directory is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            manifest_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(path);
        }
    }
}

#[test]
fn every_compat_file_lints_clean_on_its_own() {
    let Some(upstream) = ramp_sim::compat::argo_rollouts() else {
        return;
    };
    let mut files = Vec::new();
    manifest_files(&upstream.examples(), &mut files);
    assert!(files.len() > 20, "the compat corpus is missing: {files:?}");
    for file in files {
        let path = file.to_string_lossy().into_owned();
        let outcome = lint_in(Path::new(env!("CARGO_MANIFEST_DIR")), &["-f", &path]);
        assert_eq!(
            outcome.code,
            Some(0),
            "{path}:\n{}{}",
            outcome.stdout,
            outcome.stderr
        );
    }
}

#[test]
fn repository_examples_lint_clean() {
    let examples = repository_examples();
    let outcome = lint_in(&examples, &["-f", "."]);
    assert_eq!(
        outcome.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        outcome.stdout,
        outcome.stderr
    );
}

#[test]
fn services_among_the_inputs_must_select_the_rollout_pods() {
    let outcome = lint_in(&fixtures().join("services"), &["-f", "manifests.yaml"]);
    assert_eq!(
        outcome.stdout,
        "error: manifests.yaml: Rollout default/web: spec.strategy.blueGreen.previewService: Service \"web-preview\" selects track=preview, which the pod template labels {app=web} do not carry, so it would never reach the rollout's pods\n"
    );
    assert_eq!(outcome.code, Some(1));
}

/// The whole human-readable report over the upstream corpus, so any change in wording or in
/// what is reported shows up in review.
#[test]
fn compat_corpus_report_snapshot() {
    let Some(upstream) = ramp_sim::compat::argo_rollouts() else {
        return;
    };
    let outcome = lint_in(&upstream.examples(), &["-f", "."]);
    insta::assert_snapshot!("compat_corpus_report", outcome.stdout);
}

#[test]
fn router_objects_among_the_inputs_are_checked() {
    let outcome = lint_in(&fixtures().join("routers"), &["-f", "manifests.yaml"]);
    assert_eq!(
        outcome.stdout,
        "error: manifests.yaml: Rollout default/web: spec.strategy.canary.trafficRouting.istio.virtualService: route \"primary\" of VirtualService \"web\" has no destination host \"web-canary\"; it needs both the stable and the canary side\n"
    );
    assert_eq!(outcome.code, Some(1));
}

/// Cases from upstream's e2e manifests that upstream runs green, as our own fixtures: a
/// TLS-only VirtualService under a Rollout that also names an HTTP route, an analysis argument
/// from a label the Rollout does not carry (a warning: it reads as an empty string), and two
/// files that reuse the names of a VirtualService, Services and an AnalysisTemplate for
/// different objects (each Rollout is checked against the objects of its own file).
#[test]
fn upstream_e2e_cases_lint_clean() {
    let dir = fixtures().join("upstream-e2e");
    let outcome = lint_in(&dir, &["-f", "."]);
    assert_eq!(
        outcome.stdout,
        "warning: ./label-argument.yaml: Rollout default/orders: spec.strategy.canary.steps[1].analysis.args[0].valueFrom.fieldRef.fieldPath: \"metadata.labels['release']\" refers to the label \"release\", which the rollout does not have: the argument is an empty string until it does\n"
    );
    assert_eq!(outcome.code, Some(0), "stderr: {}", outcome.stderr);
}

/// A directory of this test's own under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ramp-lint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SMALL_TEMPLATE: &str = "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: t}\nspec: {metrics: [{name: m, provider: {web: {url: 'http://x'}}}]}\n";

/// `ramp lint` with a deadline: a run that does not end fails the test instead of hanging it.
fn lint_with_deadline(dir: &Path, args: &[&str]) -> Outcome {
    let output = cargo_bin_cmd!("ramp")
        .current_dir(dir)
        .arg("lint")
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("ramp runs");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn directory_links_are_followed_once_so_loops_end_and_files_count_once() {
    let scratch = Scratch::new("links");
    let manifests = scratch.0.join("manifests");
    std::fs::create_dir(&manifests).expect("manifests directory");
    std::fs::write(manifests.join("template.yaml"), SMALL_TEMPLATE).expect("manifest written");
    // A loop back up the tree and a link to the directory itself.
    std::os::unix::fs::symlink("..", manifests.join("up")).expect("link up");
    std::os::unix::fs::symlink(".", manifests.join("self")).expect("link to itself");

    let outcome = lint_with_deadline(&scratch.0, &["-f", "manifests"]);
    assert_eq!(
        outcome.code,
        Some(0),
        "a run that never ended has no code: {}",
        outcome.stderr
    );
    assert_eq!(
        outcome.stderr,
        "0 error(s), 0 warning(s), 0 unreadable input(s) in 1 document(s) from 1 file(s)\n"
    );
}

#[test]
fn a_stream_of_58000_documents_is_read_whole() {
    let scratch = Scratch::new("many-documents");
    let stream: String = (0..58_000)
        .map(|i| SMALL_TEMPLATE.replace("name: t}", &format!("name: t{i}}}")) + "---\n")
        .collect();
    std::fs::write(scratch.0.join("export.yaml"), stream).expect("stream written");

    let outcome = lint_with_deadline(&scratch.0, &["-f", "export.yaml"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    assert_eq!(
        outcome.stderr,
        "0 error(s), 0 warning(s), 0 unreadable input(s) in 58000 document(s) from 1 file(s)\n"
    );
}

#[test]
fn an_endless_input_is_refused_at_the_size_cap() {
    let outcome = lint_with_deadline(Path::new("/"), &["-f", "/dev/zero"]);
    assert_eq!(outcome.code, Some(2), "{}", outcome.stderr);
    assert_eq!(
        outcome.stderr,
        "error: /dev/zero: cannot read: larger than 128 MiB, the most ramp lint reads from one input; split it into smaller files\n\
         0 error(s), 0 warning(s), 1 unreadable input(s) in 0 document(s) from 1 file(s)\n"
    );
}

#[test]
fn a_failure_condition_alone_is_warned_about() {
    let template = "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: success-rate}\nspec:\n  metrics:\n  - name: success-rate\n    interval: 1m\n    count: 3\n    failureCondition: result[0] < 0.95\n    provider: {prometheus: {address: 'http://prometheus:9090', query: q}}\n";
    let output = cargo_bin_cmd!("ramp")
        .args(["lint", "-f", "-"])
        .write_stdin(template)
        .output()
        .expect("ramp runs");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "warning: <stdin>: AnalysisTemplate default/success-rate: spec.metrics[0].failureCondition: is the only condition, so a measurement passes whenever it is not true: a NaN result (e.g. a ratio over no traffic) passes and the rollout promotes, as upstream; add a successCondition (e.g. `result[0] >= 0.95`) to require a real value\n"
    );
}
