//! Rollouts gated by analysis, on the simulated world: which runs are created (names, labels,
//! arguments), how their verdicts move the rollout, and which runs are retired.

use crate::plan::Action;
use crate::sim::{Sim, promote, rollout, weight};
use crate::snapshot::AnalysisRunKind;
use ramp_api::analysis::{AnalysisRun, AnalysisTemplateSpec};
use ramp_api::rollout::{CanaryStep, RolloutAnalysis, RolloutAnalysisBackground, pause_reason};
use serde_json::json;

fn template() -> AnalysisTemplateSpec {
    serde_json::from_value(json!({
        "args": [{"name": "service"}, {"name": "hash"}, {"name": "env", "value": "prod"}],
        "metrics": [{
            "name": "success-rate",
            "interval": "1s",
            "count": 3,
            "successCondition": "result[0] >= 0.95",
            "provider": {"prometheus": {"address": "http://prom:9090",
                "query": "rate(requests_{{args.service}}_{{args.hash}}[1m])"}}
        }]
    }))
    .unwrap()
}

fn analysis() -> RolloutAnalysis {
    serde_json::from_value(json!({
        "templates": [{"templateName": "success-rate"}],
        "args": [
            {"name": "service", "value": "web-canary"},
            {"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
            {"name": "ignored", "value": "x"}
        ],
        "analysisRunMetadata": {"labels": {"team": "payments"}}
    }))
    .unwrap()
}

fn analysis_step() -> CanaryStep {
    CanaryStep {
        analysis: Some(analysis()),
        ..CanaryStep::default()
    }
}

/// A rollout at v1, stable and healthy, with the template installed.
fn healthy(steps: Vec<CanaryStep>) -> Sim {
    let mut sim = Sim::new(rollout(4, steps, true));
    sim.world
        .analysis_templates
        .namespaced
        .insert("success-rate".to_owned(), Some(template()));
    assert!(sim.run());
    sim.log.clear();
    sim.events.clear();
    sim.weights.clear();
    sim
}

fn created(sim: &Sim) -> Vec<AnalysisRun> {
    sim.log
        .iter()
        .filter_map(|a| match a {
            Action::CreateAnalysisRun { run } => Some(run.as_ref().clone()),
            _ => None,
        })
        .collect()
}

fn terminated(sim: &Sim) -> Vec<String> {
    sim.log
        .iter()
        .filter_map(|a| match a {
            Action::TerminateAnalysisRun { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn set_phase(sim: &mut Sim, name: &str, phase: &str, message: Option<&str>) {
    let run = sim
        .world
        .analysis_runs
        .iter_mut()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no run {name}"));
    run.phase = phase.to_owned();
    run.message = message.map(str::to_owned);
}

fn status(sim: &Sim) -> ramp_api::rollout::RolloutStatus {
    sim.world.rollout.status.clone().unwrap()
}

fn new_hash(sim: &Sim) -> String {
    status(sim).current_pod_hash.unwrap()
}

#[test]
fn a_step_run_is_created_with_upstream_name_labels_and_resolved_arguments() {
    let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
    sim.set_image("web:2");
    sim.run();
    let hash = new_hash(&sim);
    let runs = created(&sim);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(
        run.metadata.name.as_deref(),
        Some(format!("web-{hash}-2-1").as_str())
    );
    let labels = run.metadata.labels.clone().unwrap();
    assert_eq!(labels["rollout-type"], "Step");
    assert_eq!(labels["step-index"], "1");
    assert_eq!(labels["rollouts-pod-template-hash"], hash);
    assert_eq!(labels["app"], "web");
    assert_eq!(labels["team"], "payments");
    assert_eq!(
        run.metadata.annotations.clone().unwrap()["rollout.argoproj.io/revision"],
        "2"
    );
    let args: Vec<(String, Option<String>)> = run
        .spec
        .args
        .iter()
        .flatten()
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect();
    assert_eq!(
        args,
        vec![
            ("service".to_owned(), Some("web-canary".to_owned())),
            ("hash".to_owned(), Some(hash.clone())),
            ("env".to_owned(), Some("prod".to_owned())),
        ]
    );
    assert_eq!(run.spec.metrics[0].name, "success-rate");
    // The step waits for the run, at 20 %, with the run recorded in the status.
    let st = status(&sim);
    assert_eq!(st.current_step_index, Some(1));
    assert_eq!(sim.weights, vec![20]);
    let recorded = st.canary.unwrap().current_step_analysis_run_status.unwrap();
    assert_eq!(recorded.name, format!("web-{hash}-2-1"));
    assert_eq!(recorded.status, "Pending");
}

/// Upstream's rollback-window e2e passes `metadata.labels['rev']` before any update gives the
/// Rollout that label: the argument is an empty string (overriding the template's default),
/// not an InvalidSpec; once the label exists, the next run carries its value.
#[test]
fn a_field_ref_to_a_label_the_rollout_lacks_passes_an_empty_argument() {
    let mut analysis = analysis();
    analysis.args.get_or_insert_default().push(
        serde_json::from_value(json!({
            "name": "env",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['rev']"}}
        }))
        .unwrap(),
    );
    let step = CanaryStep {
        analysis: Some(analysis),
        ..CanaryStep::default()
    };
    let mut sim = healthy(vec![weight(20), step, weight(50)]);
    let env_of = |run: &AnalysisRun| {
        run.spec
            .args
            .iter()
            .flatten()
            .find(|a| a.name == "env")
            .and_then(|a| a.value.clone())
    };
    sim.set_image("web:2");
    sim.run();
    assert!(status(&sim).condition("InvalidSpec").is_none());
    let runs = created(&sim);
    assert_eq!(runs.len(), 1, "{:?}", sim.log);
    assert_eq!(env_of(&runs[0]), Some(String::new()));

    sim.log.clear();
    sim.world
        .rollout
        .metadata
        .labels
        .get_or_insert_default()
        .insert("rev".to_owned(), "three".to_owned());
    sim.set_image("web:3");
    sim.run();
    let runs = created(&sim);
    assert_eq!(runs.len(), 1, "{:?}", sim.log);
    assert_eq!(env_of(&runs[0]), Some("three".to_owned()));
}

#[test]
fn a_successful_step_run_completes_the_step_and_the_update() {
    let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
    sim.set_image("web:2");
    sim.run();
    let name = created(&sim)[0].metadata.name.clone().unwrap();
    set_phase(&mut sim, &name, "Running", None);
    sim.run();
    assert_eq!(status(&sim).current_step_index, Some(1));
    set_phase(&mut sim, &name, "Successful", None);
    assert!(sim.run());
    let st = status(&sim);
    assert_eq!(st.stable_rs, st.current_pod_hash, "promoted");
    assert_eq!(sim.weights, vec![20, 50, 100, 0]);
    assert!(
        st.canary
            .unwrap()
            .current_step_analysis_run_status
            .is_none()
    );
    assert!(
        terminated(&sim).is_empty(),
        "a finished run needs no terminate"
    );
    assert!(
        sim.events
            .iter()
            .any(|e| e == "RolloutStepCompleted: Rollout step 2/3 completed (analysis)"),
        "{:?}",
        sim.events
    );
}

#[test]
fn a_failed_step_run_aborts_in_the_same_plan_and_a_retry_runs_a_fresh_analysis() {
    let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
    sim.set_image("web:2");
    sim.run();
    let hash = new_hash(&sim);
    let name = format!("web-{hash}-2-1");
    set_phase(
        &mut sim,
        &name,
        "Failed",
        Some("Metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0)"),
    );
    sim.log.clear();
    // One plan takes traffic back and retires the run.
    let plan = sim.tick();
    let st = plan.status.clone();
    assert_eq!(st.abort, Some(true));
    let progressing = st.condition("Progressing").unwrap();
    assert_eq!(progressing.reason, "RolloutAborted");
    assert_eq!(
        progressing.message,
        "Rollout aborted update to revision 2: Step-based analysis phase failed: \
         Metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0)"
    );
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::SetTraffic(i) if i.canary_weight == 0)),
        "traffic back to stable in the same plan: {:?}",
        plan.actions
    );
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::TerminateAnalysisRun { name: n } if *n == name)),
        "the failed run retired: {:?}",
        plan.actions
    );
    sim.run();
    assert_eq!(status(&sim).phase.as_deref(), Some("Degraded"));

    // Retry: the steps start over and the analysis step gets a fresh run.
    sim.log.clear();
    sim.status_mut().abort = Some(false);
    sim.run();
    let runs = created(&sim);
    assert_eq!(
        runs.iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        vec![format!("{name}.1")]
    );
    set_phase(&mut sim, &format!("{name}.1"), "Successful", None);
    assert!(sim.run());
    let st = status(&sim);
    assert_eq!(st.stable_rs, st.current_pod_hash);
}

#[test]
fn an_inconclusive_step_run_pauses_until_promoted_past_it() {
    let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
    sim.set_image("web:2");
    sim.run();
    let name = format!("web-{}-2-1", new_hash(&sim));
    set_phase(&mut sim, &name, "Inconclusive", None);
    assert!(!sim.run(), "paused indefinitely");
    let st = status(&sim);
    assert_eq!(st.phase.as_deref(), Some("Paused"));
    assert_eq!(
        st.pause_conditions.unwrap()[0].reason,
        pause_reason::INCONCLUSIVE_ANALYSIS_RUN
    );
    assert_eq!(st.controller_pause, Some(true));
    // `kubectl argo rollouts promote` on an Inconclusive step run skips the step.
    let st = sim.status_mut();
    st.pause_conditions = None;
    st.controller_pause = Some(false);
    st.current_step_index = Some(2);
    sim.log.clear();
    assert!(sim.run());
    assert!(created(&sim).is_empty(), "no new run for a skipped step");
    let st = status(&sim);
    assert_eq!(st.stable_rs, st.current_pod_hash);
}

#[test]
fn an_inconclusive_run_resumed_without_skipping_gets_a_fresh_run() {
    let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
    sim.set_image("web:2");
    sim.run();
    let name = format!("web-{}-2-1", new_hash(&sim));
    set_phase(&mut sim, &name, "Inconclusive", None);
    sim.run();
    sim.log.clear();
    promote(&mut sim);
    sim.run();
    assert_eq!(terminated(&sim), vec![name.clone()]);
    assert_eq!(
        created(&sim)
            .iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        vec![format!("{name}.1")]
    );
    assert_eq!(status(&sim).current_step_index, Some(1));
    assert!(status(&sim).pause_conditions.is_none());
}

fn background(starting_step: Option<i32>) -> RolloutAnalysisBackground {
    let a = analysis();
    RolloutAnalysisBackground {
        templates: a.templates,
        args: a.args,
        starting_step,
        ..RolloutAnalysisBackground::default()
    }
}

fn with_background(sim: &mut Sim, starting_step: Option<i32>) {
    let strategy = sim.world.rollout.spec.strategy.as_mut().unwrap();
    strategy.canary.as_mut().unwrap().analysis = Some(background(starting_step));
}

#[test]
fn background_analysis_starts_at_its_step_never_on_initial_deploy_and_ends_with_the_update() {
    let mut sim = Sim::new(rollout(
        4,
        vec![weight(20), crate::sim::pause(None), weight(50)],
        true,
    ));
    sim.world
        .analysis_templates
        .namespaced
        .insert("success-rate".to_owned(), Some(template()));
    with_background(&mut sim, Some(1));
    assert!(sim.run());
    assert!(
        created(&sim).is_empty(),
        "no analysis on the initial deploy"
    );

    sim.set_image("web:2");
    sim.run();
    let hash = new_hash(&sim);
    let runs = created(&sim);
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].metadata.name.clone().unwrap(),
        format!("web-{hash}-2")
    );
    assert_eq!(
        runs[0].metadata.labels.clone().unwrap()["rollout-type"],
        "Background"
    );
    assert!(
        !runs[0]
            .metadata
            .labels
            .clone()
            .unwrap()
            .contains_key("step-index")
    );
    // Created once the rollout reached step 1 (the pause), not before.
    assert_eq!(status(&sim).current_step_index, Some(1));
    set_phase(&mut sim, &format!("web-{hash}-2"), "Running", None);
    promote(&mut sim);
    assert!(sim.run());
    let st = status(&sim);
    assert_eq!(st.stable_rs, st.current_pod_hash);
    assert_eq!(terminated(&sim), vec![format!("web-{hash}-2")]);
    assert_eq!(created(&sim).len(), 1);
}

#[test]
fn a_failed_background_run_aborts_and_an_inconclusive_one_pauses() {
    let mut sim = healthy(vec![weight(20), crate::sim::pause(None), weight(50)]);
    with_background(&mut sim, None);
    sim.set_image("web:2");
    sim.run();
    let name = format!("web-{}-2", new_hash(&sim));
    set_phase(&mut sim, &name, "Inconclusive", None);
    sim.run();
    let st = status(&sim);
    assert!(
        st.pause_conditions
            .iter()
            .flatten()
            .any(|c| c.reason == pause_reason::INCONCLUSIVE_ANALYSIS_RUN)
    );
    // Resuming replaces the run; its failure then aborts.
    promote(&mut sim);
    sim.run();
    let fresh = format!("{name}.1");
    assert!(sim.world.analysis_runs.iter().any(|r| r.name == fresh));
    set_phase(
        &mut sim,
        &fresh,
        "Error",
        Some(
            "Metric \"success-rate\" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4)",
        ),
    );
    sim.run();
    let st = status(&sim);
    assert_eq!(st.abort, Some(true));
    assert!(
        st.condition("Progressing")
            .unwrap()
            .message
            .contains("Background analysis phase error: Metric")
    );
    assert_eq!(sim.weights.last(), Some(&0));
}

#[test]
fn a_new_revision_retires_the_running_analysis_of_the_old_one() {
    let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
    sim.set_image("web:2");
    sim.run();
    let old = format!("web-{}-2-1", new_hash(&sim));
    set_phase(&mut sim, &old, "Running", None);
    sim.log.clear();
    sim.set_image("web:3");
    sim.run();
    assert_eq!(terminated(&sim), vec![old]);
    let hash = new_hash(&sim);
    assert_eq!(
        created(&sim)
            .iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        vec![format!("web-{hash}-3-1")]
    );
}

#[test]
fn a_missing_template_is_an_invalid_spec_and_nothing_is_created() {
    let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
    sim.world.analysis_templates.namespaced.clear();
    sim.set_image("web:2");
    sim.run();
    assert!(sim.log.is_empty(), "{:?}", sim.log);
    let st = status(&sim);
    let invalid = st.condition("InvalidSpec").unwrap();
    assert_eq!(
        invalid.message,
        "The Rollout \"web\" is invalid: spec.strategy.canary.steps[1].analysis: \
         AnalysisTemplate \"success-rate\" not found"
    );
    // The template arrives: the rollout proceeds.
    sim.world
        .analysis_templates
        .namespaced
        .insert("success-rate".to_owned(), Some(template()));
    sim.run();
    assert_eq!(created(&sim).len(), 1);
}

#[test]
fn finished_runs_beyond_the_history_limits_are_deleted_oldest_first() {
    let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
    sim.world.rollout.spec.analysis = Some(ramp_api::rollout::AnalysisRunStrategy {
        successful_run_history_limit: Some(1),
        unsuccessful_run_history_limit: Some(1),
    });
    let mut names = Vec::new();
    for image in ["web:2", "web:3", "web:4"] {
        sim.set_image(image);
        sim.run();
        let name = created(&sim).last().unwrap().metadata.name.clone().unwrap();
        set_phase(&mut sim, &name, "Successful", None);
        assert!(sim.run());
        names.push(name);
        sim.world.now = sim
            .world
            .now
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(5))
            .unwrap();
    }
    let deleted: Vec<String> = sim
        .log
        .iter()
        .filter_map(|a| match a {
            Action::DeleteAnalysisRun { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, vec![names[0].clone(), names[1].clone()]);
    let left: Vec<&str> = sim
        .world
        .analysis_runs
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(left, vec![names[2].as_str()]);
    assert!(
        sim.world
            .analysis_runs
            .iter()
            .all(|r| r.kind == AnalysisRunKind::Step)
    );
}

#[test]
fn a_manual_pause_keeps_the_running_step_analysis() {
    let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
    sim.set_image("web:2");
    sim.run();
    let name = format!("web-{}-2-1", new_hash(&sim));
    set_phase(&mut sim, &name, "Running", None);
    sim.world.rollout.spec.paused = Some(true);
    sim.log.clear();
    sim.run();
    assert!(terminated(&sim).is_empty(), "{:?}", sim.log);
    sim.world.rollout.spec.paused = None;
    set_phase(&mut sim, &name, "Successful", None);
    assert!(sim.run());
    assert!(created(&sim).is_empty(), "the same run decided");
    let st = status(&sim);
    assert_eq!(st.stable_rs, st.current_pod_hash);
}

#[test]
fn promote_full_during_a_running_analysis_retires_it_and_creates_no_other() {
    let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
    sim.set_image("web:2");
    sim.run();
    let name = format!("web-{}-2-1", new_hash(&sim));
    set_phase(&mut sim, &name, "Running", None);
    sim.log.clear();
    sim.status_mut().promote_full = Some(true);
    assert!(sim.run());
    let st = status(&sim);
    assert_eq!(st.stable_rs, st.current_pod_hash);
    assert_eq!(terminated(&sim), vec![name]);
    assert!(created(&sim).is_empty());
}

#[test]
fn a_rollback_within_the_window_skips_the_analysis_and_one_outside_runs_it() {
    for (window, analysed) in [(Some(3), false), (None, true)] {
        let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
        sim.world.rollout.spec.rollback_window =
            window.map(|revisions| ramp_api::rollout::RollbackWindowSpec {
                revisions: Some(revisions),
            });
        for image in ["web:2", "web:3"] {
            sim.set_image(image);
            sim.run();
            let name = created(&sim).last().unwrap().metadata.name.clone().unwrap();
            set_phase(&mut sim, &name, "Successful", None);
            assert!(sim.run());
        }
        sim.log.clear();
        sim.set_image("web:2");
        sim.run();
        assert_eq!(
            !created(&sim).is_empty(),
            analysed,
            "window {window:?}: {:?}",
            sim.log
        );
    }
}

#[test]
fn several_templates_of_one_step_make_one_merged_run() {
    let mut sim = healthy(vec![weight(20), analysis_step(), weight(50)]);
    let latency: AnalysisTemplateSpec = serde_json::from_value(json!({
        "args": [{"name": "service"}],
        "metrics": [{
            "name": "latency",
            "interval": "1s",
            "count": 2,
            "successCondition": "result[0] <= 500",
            "provider": {"prometheus": {"address": "http://prom:9090",
                "query": "p95_{{args.service}}"}}
        }]
    }))
    .unwrap();
    sim.world
        .analysis_templates
        .namespaced
        .insert("latency".to_owned(), Some(latency));
    let step = &mut sim
        .world
        .rollout
        .spec
        .strategy
        .as_mut()
        .unwrap()
        .canary
        .as_mut()
        .unwrap()
        .steps
        .as_mut()
        .unwrap()[1];
    step.analysis
        .as_mut()
        .unwrap()
        .templates
        .as_mut()
        .unwrap()
        .push(serde_json::from_value(json!({"templateName": "latency"})).unwrap());
    sim.set_image("web:2");
    sim.run();
    let runs = created(&sim);
    assert_eq!(runs.len(), 1);
    let metrics: Vec<&str> = runs[0]
        .spec
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(metrics, vec!["success-rate", "latency"]);
    let service = runs[0]
        .spec
        .args
        .iter()
        .flatten()
        .find(|a| a.name == "service")
        .unwrap();
    assert_eq!(
        service.value.as_deref(),
        Some("web-canary"),
        "one shared argument"
    );
}
