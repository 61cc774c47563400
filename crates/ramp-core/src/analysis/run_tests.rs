//! One test per rule of the reference's §3.5 (named after the rule), then properties over
//! random measurement scripts.

use super::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use ramp_api::analysis::{MetricProvider, TtlStrategy, WebMetric};
use ramp_api::common::{DryRun, MeasurementRetention};

use AnalysisPhase::{Error, Failed, Inconclusive, Pending, Running, Successful};

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid timestamp")
}

fn at(seconds: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_secs(seconds))
        .expect("in range")
}

fn metric(name: &str) -> Metric {
    Metric {
        name: name.into(),
        provider: MetricProvider {
            web: Some(WebMetric {
                url: "http://metrics.invalid/".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn every(mut m: Metric, interval: &str, count: i32) -> Metric {
    m.interval = Some(interval.into());
    m.count = Some(IntOrString::Int(count));
    m
}

fn spec(metrics: Vec<Metric>) -> AnalysisRunSpec {
    AnalysisRunSpec {
        metrics,
        ..Default::default()
    }
}

fn finished(metric: &str, phase: AnalysisPhase, when: Timestamp) -> MeasurementOutcome {
    MeasurementOutcome {
        metric: metric.into(),
        measurement: Measurement {
            phase: phase.into(),
            started_at: Some(Time(when)),
            finished_at: Some(Time(when)),
            value: Some("1".into()),
            message: (phase == Error).then(|| "connection refused".to_owned()),
            ..Default::default()
        },
        metric_metadata: BTreeMap::new(),
    }
}

fn in_flight(metric: &str, started: Timestamp, resume: Timestamp) -> MeasurementOutcome {
    MeasurementOutcome {
        metric: metric.into(),
        measurement: Measurement {
            phase: Running.into(),
            started_at: Some(Time(started)),
            resume_at: Some(Time(resume)),
            ..Default::default()
        },
        metric_metadata: BTreeMap::new(),
    }
}

fn phase(status: &AnalysisRunStatus) -> AnalysisPhase {
    status.phase().ok().flatten().unwrap_or(Pending)
}

fn metric_phase(status: &AnalysisRunStatus, name: &str) -> AnalysisPhase {
    status
        .metric_result(name)
        .and_then(|r| r.phase().ok().flatten())
        .unwrap_or(Pending)
}

/// Feeds one outcome per reconcile for metric `m` with the given phases, one second apart.
fn run_with(spec: &AnalysisRunSpec, name: &str, phases: &[AnalysisPhase]) -> RunUpdate {
    let mut status: Option<AnalysisRunStatus> = None;
    let mut update = reconcile(spec, None, t0(), Vec::new());
    for (i, p) in phases.iter().enumerate() {
        let when = at(i64::try_from(i).unwrap_or(0) + 1);
        update = reconcile(spec, status.as_ref(), when, vec![finished(name, *p, when)]);
        status = Some(update.status.clone());
    }
    update
}

// Step 1: spec problems turn the run into an Error.

#[test]
fn step1_invalid_spec_errors_the_run_with_a_completion_event() {
    let mut m = metric("m");
    m.failure_limit = Some(IntOrString::Int(-1));
    let update = reconcile(&spec(vec![m]), None, t0(), Vec::new());
    assert_eq!(phase(&update.status), Error);
    let message = update.status.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("Analysis spec invalid: metrics[0].failureLimit"),
        "{message}"
    );
    assert_eq!(update.status.completed_at, Some(Time(t0())));
    assert_eq!(update.events[0].reason, "AnalysisRunError");
    assert!(update.events[0].warning);
    assert!(plan_measurements(&spec(vec![metric("x"), metric("x")]), None, t0()).is_empty());
}

#[test]
fn step1_unresolved_arguments_error_the_run() {
    let mut m = metric("m");
    m.success_condition = Some("result == '{{args.expected}}'".into());
    let update = reconcile(&spec(vec![m]), None, t0(), Vec::new());
    assert_eq!(phase(&update.status), Error);
    assert_eq!(
        update.status.message.as_deref(),
        Some(
            r#"Unable to resolve metric arguments: metric "m": failed to resolve {{args.expected}}"#
        )
    );
}

// Step 2: which metrics get a task.

#[test]
fn step2_first_measurement_is_immediate_without_initial_delay() {
    let tasks = plan_measurements(&spec(vec![metric("m")]), None, t0());
    assert_eq!(tasks, [MeasurementTask::Measure { metric: "m".into() }]);
}

#[test]
fn step2_first_measurement_waits_for_initial_delay_from_started_at() {
    let mut m = metric("m");
    m.initial_delay = Some("30s".into());
    let s = spec(vec![m]);
    let first = reconcile(&s, None, t0(), Vec::new());
    assert_eq!(first.wake_at, Some(at(30)));
    assert!(plan_measurements(&s, Some(&first.status), at(29)).is_empty());
    assert_eq!(plan_measurements(&s, Some(&first.status), at(30)).len(), 1);
}

#[test]
fn step2_next_measurement_is_due_exactly_at_finished_at_plus_interval() {
    let s = spec(vec![every(metric("m"), "5s", 3)]);
    let update = reconcile(&s, None, t0(), vec![finished("m", Successful, t0())]);
    assert_eq!(update.wake_at, Some(at(5)));
    assert!(plan_measurements(&s, Some(&update.status), at(4)).is_empty());
    assert_eq!(
        plan_measurements(&s, Some(&update.status), at(5)),
        [MeasurementTask::Measure { metric: "m".into() }]
    );
}

#[test]
fn step2_error_is_retried_after_ten_seconds_whatever_the_interval() {
    let s = spec(vec![every(metric("m"), "1m", 3)]);
    let update = reconcile(&s, None, t0(), vec![finished("m", Error, t0())]);
    assert_eq!(update.wake_at, Some(at(10)));
    assert_eq!(plan_measurements(&s, Some(&update.status), at(10)).len(), 1);
}

#[test]
fn step2_metric_without_interval_retries_after_ten_seconds() {
    let s = spec(vec![metric("m")]);
    let update = reconcile(&s, None, t0(), vec![finished("m", Error, t0())]);
    assert_eq!(update.wake_at, Some(at(10)));
}

#[test]
fn step2_count_reached_takes_no_more_measurements() {
    let mut m = every(metric("m"), "1s", 2);
    m.consecutive_error_limit = Some(IntOrString::Int(10));
    let s = spec(vec![m, every(metric("other"), "1s", 0)]);
    let update = run_with(&s, "m", &[Successful, Successful]);
    let tasks = plan_measurements(&s, Some(&update.status), at(100));
    assert!(tasks.iter().all(|t| t.metric() != "m"), "{tasks:?}");
}

#[test]
fn step2_errors_do_not_use_up_the_count() {
    let s = spec(vec![every(metric("m"), "1s", 2)]);
    let update = run_with(&s, "m", &[Error, Successful]);
    assert_eq!(metric_phase(&update.status, "m"), Running);
    assert_eq!(plan_measurements(&s, Some(&update.status), at(12)).len(), 1);
}

#[test]
fn step2_in_flight_measurement_is_resumed_at_resume_at() {
    let s = spec(vec![metric("m")]);
    let update = reconcile(&s, None, t0(), vec![in_flight("m", t0(), at(3))]);
    assert_eq!(metric_phase(&update.status, "m"), Running);
    assert_eq!(update.wake_at, Some(at(3)));
    assert!(plan_measurements(&s, Some(&update.status), at(2)).is_empty());
    assert!(matches!(
        plan_measurements(&s, Some(&update.status), at(3)).as_slice(),
        [MeasurementTask::Resume { metric, .. }] if metric == "m"
    ));
    // The finished measurement replaces the in-flight one.
    let done = reconcile(
        &s,
        Some(&update.status),
        at(3),
        vec![finished("m", Successful, at(3))],
    );
    let result = done.status.metric_result("m").cloned().unwrap_or_default();
    assert_eq!(result.measurements.map(|m| m.len()), Some(1));
    assert_eq!(result.count, Some(1));
    assert_eq!(phase(&done.status), Successful);
}

#[test]
fn step2_terminating_run_terminates_in_flight_measurements_and_starts_none() {
    let s = spec(vec![metric("job"), every(metric("m"), "1s", 0)]);
    let update = reconcile(
        &s,
        None,
        t0(),
        vec![
            in_flight("job", t0(), at(60)),
            finished("m", Successful, t0()),
        ],
    );
    let mut terminated = s.clone();
    terminated.terminate = Some(true);
    let tasks = plan_measurements(&terminated, Some(&update.status), at(5));
    assert!(
        matches!(tasks.as_slice(), [MeasurementTask::Terminate { metric, .. }] if metric == "job"),
        "{tasks:?}"
    );
    let after = reconcile(&terminated, Some(&update.status), at(5), Vec::new());
    assert_eq!(
        after.wake_at,
        Some(at(5)),
        "terminate tasks are due at once"
    );
}

#[test]
fn step2_completed_run_gets_no_tasks() {
    let s = spec(vec![metric("m")]);
    let update = reconcile(&s, None, t0(), vec![finished("m", Successful, t0())]);
    assert_eq!(phase(&update.status), Successful);
    assert!(plan_measurements(&s, Some(&update.status), at(100)).is_empty());
}

// Step 4: counters.

#[test]
fn step4_counters_follow_each_measurement_phase() {
    let mut m = every(metric("m"), "1s", 0);
    m.failure_limit = Some(IntOrString::Int(10));
    m.inconclusive_limit = Some(IntOrString::Int(10));
    let s = spec(vec![m]);
    let update = run_with(
        &s,
        "m",
        &[Successful, Successful, Failed, Inconclusive, Error, Error],
    );
    let r = update
        .status
        .metric_result("m")
        .cloned()
        .unwrap_or_default();
    assert_eq!(r.count, Some(4), "errors do not count");
    assert_eq!(r.successful, Some(2));
    assert_eq!(r.failed, Some(1));
    assert_eq!(r.inconclusive, Some(1));
    assert_eq!(r.error, Some(2));
    assert_eq!(r.consecutive_error, Some(2));
    assert_eq!(
        r.consecutive_success, None,
        "reset by failed/inconclusive/error"
    );
    let update = run_with(&s, "m", &[Error, Successful, Successful]);
    let r = update
        .status
        .metric_result("m")
        .cloned()
        .unwrap_or_default();
    assert_eq!(r.consecutive_error, None, "reset by any non-error");
    assert_eq!(r.consecutive_success, Some(2));
}

// Step 6: the metric verdict.

#[test]
fn step6b_no_measurement_is_pending_or_successful_when_terminating() {
    let mut m = metric("slow");
    m.initial_delay = Some("1h".into());
    let s = spec(vec![m.clone()]);
    let update = reconcile(&s, None, t0(), Vec::new());
    assert_eq!(metric_phase(&update.status, "slow"), Pending);
    assert_eq!(phase(&update.status), Running);
    let mut terminated = spec(vec![m]);
    terminated.terminate = Some(true);
    let update = reconcile(&terminated, Some(&update.status), at(1), Vec::new());
    assert_eq!(metric_phase(&update.status, "slow"), Successful);
}

#[test]
fn step6c_in_flight_measurement_is_running() {
    let update = reconcile(
        &spec(vec![metric("m")]),
        None,
        t0(),
        vec![in_flight("m", t0(), at(1))],
    );
    assert_eq!(metric_phase(&update.status, "m"), Running);
}

#[test]
fn step6d_default_failure_limit_zero_fails_on_first_failure() {
    let s = spec(vec![every(metric("m"), "1s", 5)]);
    let update = run_with(&s, "m", &[Failed]);
    assert_eq!(metric_phase(&update.status, "m"), Failed);
    assert_eq!(
        update.status.message.as_deref(),
        Some(r#"Metric "m" assessed Failed due to failed (1) > failureLimit (0)"#)
    );
}

#[test]
fn step6d_failure_limit_allows_that_many_failures() {
    let mut m = every(metric("m"), "1s", 5);
    m.failure_limit = Some(IntOrString::Int(2));
    let s = spec(vec![m]);
    assert_eq!(
        metric_phase(&run_with(&s, "m", &[Failed, Failed]).status, "m"),
        Running
    );
    assert_eq!(
        metric_phase(&run_with(&s, "m", &[Failed, Failed, Failed]).status, "m"),
        Failed
    );
}

#[test]
fn step6d_failure_limit_minus_one_disables_the_failure_rule() {
    let mut m = every(metric("m"), "1s", 4);
    m.failure_limit = Some(IntOrString::Int(-1));
    m.consecutive_success_limit = Some(IntOrString::Int(2));
    let s = spec(vec![m]);
    assert_eq!(
        metric_phase(&run_with(&s, "m", &[Failed, Failed, Failed]).status, "m"),
        Running
    );
    assert_eq!(
        metric_phase(
            &run_with(&s, "m", &[Failed, Failed, Successful, Successful]).status,
            "m"
        ),
        Successful
    );
}

#[test]
fn step6d_inconclusive_limit() {
    let mut m = every(metric("m"), "1s", 5);
    m.inconclusive_limit = Some(IntOrString::Int(1));
    let s = spec(vec![m]);
    assert_eq!(
        metric_phase(&run_with(&s, "m", &[Inconclusive]).status, "m"),
        Running
    );
    let update = run_with(&s, "m", &[Inconclusive, Inconclusive]);
    assert_eq!(metric_phase(&update.status, "m"), Inconclusive);
    assert_eq!(phase(&update.status), Inconclusive);
}

#[test]
fn step6d_default_consecutive_error_limit_errors_on_the_fifth_error() {
    let s = spec(vec![every(metric("m"), "1s", 5)]);
    assert_eq!(
        metric_phase(&run_with(&s, "m", &[Error; 4]).status, "m"),
        Running
    );
    let update = run_with(&s, "m", &[Error; 5]);
    assert_eq!(metric_phase(&update.status, "m"), Error);
    assert_eq!(
        update.status.message.as_deref(),
        Some(
            r#"Metric "m" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4): "Error Message: connection refused""#
        )
    );
    // A success in between resets the streak.
    assert_eq!(
        metric_phase(
            &run_with(&s, "m", &[Error, Error, Error, Error, Successful, Error]).status,
            "m"
        ),
        Running
    );
}

#[test]
fn step6d_later_limits_override_earlier_ones() {
    let mut m = every(metric("m"), "1s", 0);
    m.consecutive_error_limit = Some(IntOrString::Int(0));
    m.inconclusive_limit = Some(IntOrString::Int(0));
    m.failure_limit = Some(IntOrString::Int(0));
    // Hand-built status where all three limits trip at once.
    let status = AnalysisRunStatus {
        phase: "Running".into(),
        started_at: Some(Time(t0())),
        metric_results: Some(vec![MetricResult {
            name: "m".into(),
            phase: "Running".into(),
            count: Some(2),
            failed: Some(1),
            inconclusive: Some(1),
            error: Some(1),
            consecutive_error: Some(1),
            measurements: Some(vec![finished("m", Error, t0()).measurement]),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let update = reconcile(&spec(vec![m.clone()]), Some(&status), at(1), Vec::new());
    assert_eq!(
        metric_phase(&update.status, "m"),
        Error,
        "Error beats the rest"
    );
    let mut no_error = status.clone();
    if let Some(r) = no_error.metric_results.as_mut().and_then(|r| r.first_mut()) {
        r.consecutive_error = None;
    }
    let update = reconcile(&spec(vec![m]), Some(&no_error), at(1), Vec::new());
    assert_eq!(
        metric_phase(&update.status, "m"),
        Inconclusive,
        "Inconclusive beats Failed"
    );
}

#[test]
fn step6e_consecutive_success_limit_ends_the_metric_early() {
    let mut m = every(metric("m"), "1s", 10);
    m.consecutive_success_limit = Some(IntOrString::Int(3));
    m.failure_limit = Some(IntOrString::Int(5));
    let s = spec(vec![m]);
    let update = run_with(
        &s,
        "m",
        &[Successful, Failed, Successful, Successful, Successful],
    );
    assert_eq!(metric_phase(&update.status, "m"), Successful);
    assert_eq!(phase(&update.status), Successful);
}

#[test]
fn step6f_count_reached_without_streak_is_inconclusive_with_failure_limit() {
    let mut m = every(metric("m"), "1s", 4);
    m.consecutive_success_limit = Some(IntOrString::Int(3));
    m.failure_limit = Some(IntOrString::Int(1));
    let s = spec(vec![m]);
    let update = run_with(&s, "m", &[Successful, Successful, Failed, Successful]);
    assert_eq!(metric_phase(&update.status, "m"), Inconclusive);
}

#[test]
fn step6f_count_reached_without_streak_is_failed_when_failure_limit_is_minus_one() {
    let mut m = every(metric("m"), "1s", 3);
    m.consecutive_success_limit = Some(IntOrString::Int(3));
    m.failure_limit = Some(IntOrString::Int(-1));
    let s = spec(vec![m]);
    let update = run_with(&s, "m", &[Successful, Failed, Successful]);
    assert_eq!(metric_phase(&update.status, "m"), Failed);
}

#[test]
fn step6f_count_reached_is_successful_otherwise() {
    let mut m = every(metric("m"), "1s", 3);
    m.failure_limit = Some(IntOrString::Int(1));
    let update = run_with(&spec(vec![m]), "m", &[Successful, Failed, Successful]);
    assert_eq!(metric_phase(&update.status, "m"), Successful);
    assert_eq!(phase(&update.status), Successful);
}

#[test]
fn step6g_unbounded_metric_runs_until_the_run_terminates() {
    let s = spec(vec![every(metric("m"), "1s", 0)]);
    let update = run_with(&s, "m", &[Successful; 20]);
    assert_eq!(metric_phase(&update.status, "m"), Running);
    assert_eq!(phase(&update.status), Running);
    let mut terminated = s.clone();
    terminated.terminate = Some(true);
    let done = reconcile(&terminated, Some(&update.status), at(30), Vec::new());
    assert_eq!(metric_phase(&done.status, "m"), Successful);
    assert_eq!(phase(&done.status), Successful);
    assert_eq!(done.status.message.as_deref(), Some("Run Terminated"));
}

// Steps 7 and 8: termination and the run verdict.

#[test]
fn step7_fail_fast_one_failed_metric_ends_the_others() {
    let s = spec(vec![
        every(metric("bad"), "1s", 5),
        every(metric("endless"), "1s", 0),
    ]);
    let first = reconcile(
        &s,
        None,
        t0(),
        vec![
            finished("bad", Successful, t0()),
            finished("endless", Successful, t0()),
        ],
    );
    let update = reconcile(
        &s,
        Some(&first.status),
        at(1),
        vec![finished("bad", Failed, at(1))],
    );
    assert_eq!(metric_phase(&update.status, "bad"), Failed);
    assert_eq!(metric_phase(&update.status, "endless"), Successful);
    assert_eq!(phase(&update.status), Failed);
    assert_eq!(update.status.completed_at, Some(Time(at(1))));
    assert_eq!(update.wake_at, None);
    assert!(plan_measurements(&s, Some(&update.status), at(2)).is_empty());
}

#[test]
fn step7_fail_fast_with_an_in_flight_measurement_waits_for_its_termination() {
    let s = spec(vec![metric("bad"), metric("job")]);
    let update = reconcile(
        &s,
        None,
        t0(),
        vec![
            finished("bad", Failed, t0()),
            in_flight("job", t0(), at(30)),
        ],
    );
    assert_eq!(phase(&update.status), Running, "the job is still running");
    assert_eq!(update.wake_at, Some(t0()));
    let tasks = plan_measurements(&s, Some(&update.status), t0());
    assert!(matches!(
        tasks.as_slice(),
        [MeasurementTask::Terminate { .. }]
    ));
    // The provider reports the terminated job as an Inconclusive finished measurement.
    let done = reconcile(
        &s,
        Some(&update.status),
        t0(),
        vec![finished("job", Inconclusive, t0())],
    );
    assert_eq!(
        phase(&done.status),
        Failed,
        "Failed is worse than Inconclusive"
    );
}

#[test]
fn step8_worst_phase_wins_failed_error_inconclusive() {
    let cases = [
        ([Failed, Error], Failed),
        ([Error, Inconclusive], Error),
        ([Inconclusive, Successful], Inconclusive),
        ([Successful, Successful], Successful),
    ];
    for (phases, expected) in cases {
        let s = spec(vec![metric("a"), metric("b")]);
        let update = reconcile(
            &s,
            None,
            t0(),
            vec![
                finished("a", phases[0], t0()),
                finished("b", phases[1], t0()),
            ],
        );
        // A single Error measurement does not error a metric: give Error metrics their limit.
        let phase_of_run = if phases.contains(&Error) {
            let mut s = s.clone();
            for m in &mut s.metrics {
                m.consecutive_error_limit = Some(IntOrString::Int(0));
            }
            phase(
                &reconcile(
                    &s,
                    None,
                    t0(),
                    vec![
                        finished("a", phases[0], t0()),
                        finished("b", phases[1], t0()),
                    ],
                )
                .status,
            )
        } else {
            phase(&update.status)
        };
        assert_eq!(phase_of_run, expected, "{phases:?}");
    }
}

#[test]
fn step8_dry_run_metrics_never_decide_the_run() {
    let mut s = spec(vec![metric("real"), metric("trial")]);
    s.dry_run = Some(vec![DryRun {
        metric_name: "tri.*".into(),
    }]);
    let update = reconcile(
        &s,
        None,
        t0(),
        vec![
            finished("real", Successful, t0()),
            finished("trial", Failed, t0()),
        ],
    );
    assert_eq!(metric_phase(&update.status, "trial"), Failed);
    assert_eq!(phase(&update.status), Successful);
    let trial = update
        .status
        .metric_result("trial")
        .cloned()
        .unwrap_or_default();
    assert_eq!(trial.dry_run, Some(true));
    assert_eq!(
        update.status.run_summary,
        Some(RunSummary {
            count: Some(1),
            successful: Some(1),
            ..Default::default()
        })
    );
    assert_eq!(
        update.status.dry_run_summary,
        Some(RunSummary {
            count: Some(1),
            failed: Some(1),
            ..Default::default()
        })
    );
}

#[test]
fn step8_all_dry_run_metrics_make_a_successful_run() {
    let mut s = spec(vec![metric("trial")]);
    s.dry_run = Some(vec![DryRun {
        metric_name: ".*".into(),
    }]);
    let update = reconcile(&s, None, t0(), vec![finished("trial", Failed, t0())]);
    assert_eq!(phase(&update.status), Successful);
}

#[test]
fn step8_run_summary_counts_unfinished_metrics_as_successful() {
    let s = spec(vec![every(metric("a"), "1s", 3), metric("b")]);
    let update = reconcile(
        &s,
        None,
        t0(),
        vec![
            finished("a", Successful, t0()),
            finished("b", Successful, t0()),
        ],
    );
    assert_eq!(phase(&update.status), Running);
    assert_eq!(
        update.status.run_summary,
        Some(RunSummary {
            count: Some(2),
            successful: Some(2),
            ..Default::default()
        })
    );
}

// Step 9: retention, events, wake-up, ttl.

#[test]
fn step9_measurements_are_trimmed_to_ten_by_default_and_per_rule() {
    let s = spec(vec![every(metric("m"), "1s", 0)]);
    let update = run_with(&s, "m", &[Successful; 12]);
    let r = update
        .status
        .metric_result("m")
        .cloned()
        .unwrap_or_default();
    assert_eq!(r.measurements.map(|m| m.len()), Some(10));
    assert_eq!(r.count, Some(12), "counters keep counting");
    let mut s = s.clone();
    s.measurement_retention = Some(vec![MeasurementRetention {
        metric_name: "m".into(),
        limit: 2,
    }]);
    let mut status = None;
    let mut trimmed = Vec::new();
    for i in 0..4 {
        let update = reconcile(
            &s,
            status.as_ref(),
            at(i),
            vec![finished("m", Successful, at(i))],
        );
        trimmed.extend(update.trimmed);
        status = Some(update.status);
    }
    let kept = status
        .and_then(|s| s.metric_result("m").cloned())
        .and_then(|r| r.measurements)
        .unwrap_or_default();
    assert_eq!(kept.len(), 2);
    assert_eq!(
        kept[0].finished_at,
        Some(Time(at(2))),
        "the newest are kept"
    );
    let removed: usize = trimmed.iter().map(|(_, m)| m.len()).sum();
    assert_eq!(
        removed, 2,
        "trimmed measurements are handed back for cleanup"
    );
}

#[test]
fn step9_events_on_metric_completion_and_run_completion() {
    let s = spec(vec![metric("ok"), metric("bad")]);
    let update = reconcile(
        &s,
        None,
        t0(),
        vec![
            finished("ok", Successful, t0()),
            finished("bad", Failed, t0()),
        ],
    );
    let reasons: Vec<_> = update
        .events
        .iter()
        .map(|e| (e.reason.as_str(), e.warning))
        .collect();
    assert_eq!(
        reasons,
        [
            ("MetricSuccessful", false),
            ("MetricFailed", true),
            ("AnalysisRunFailed", true)
        ]
    );
    let again = reconcile(&s, Some(&update.status), at(1), Vec::new());
    assert!(
        again.events.is_empty(),
        "a completed run emits nothing more"
    );
}

#[test]
fn step9_wake_up_is_the_earliest_due_metric() {
    let s = spec(vec![
        every(metric("fast"), "2s", 0),
        every(metric("slow"), "1m", 0),
    ]);
    let update = reconcile(
        &s,
        None,
        t0(),
        vec![
            finished("fast", Successful, t0()),
            finished("slow", Successful, t0()),
        ],
    );
    assert_eq!(update.wake_at, Some(at(2)));
}

#[test]
fn step9_a_one_second_interval_stays_one_second_over_an_hour() {
    let s = spec(vec![every(metric("m"), "1s", 0)]);
    let mut status: Option<AnalysisRunStatus> = None;
    let mut now = t0();
    let mut measured = 0;
    while now < at(3600) {
        let tasks = plan_measurements(&s, status.as_ref(), now);
        let outcomes: Vec<_> = tasks
            .iter()
            .map(|t| finished(t.metric(), Successful, now))
            .collect();
        measured += outcomes.len();
        let update = reconcile(&s, status.as_ref(), now, outcomes);
        now = update.wake_at.unwrap_or(at(3600));
        status = Some(update.status);
    }
    assert_eq!(measured, 3600);
}

#[test]
fn step9_sub_second_measurement_latency_does_not_drift() {
    let s = spec(vec![every(metric("m"), "1s", 0)]);
    let mut status: Option<AnalysisRunStatus> = None;
    let mut now = t0();
    let mut measured = 0;
    let latency = SignedDuration::from_millis(700);
    while now < at(3600) {
        let tasks = plan_measurements(&s, status.as_ref(), now);
        let done = now.checked_add(latency).expect("in range");
        let outcomes: Vec<_> = tasks
            .iter()
            .map(|t| {
                let mut o = finished(t.metric(), Successful, done);
                o.measurement.started_at = Some(Time(now));
                o
            })
            .collect();
        measured += outcomes.len();
        let update = reconcile(&s, status.as_ref(), done, outcomes);
        now = update.wake_at.unwrap_or(at(3600)).max(done);
        status = Some(update.status);
    }
    assert_eq!(measured, 3600, "one measurement per second for an hour");
}

#[test]
fn step10_ttl_strategy_sets_the_expiry_of_a_completed_run() {
    let mut s = spec(vec![metric("m")]);
    s.ttl_strategy = Some(TtlStrategy {
        seconds_after_completion: Some(600),
        seconds_after_success: Some(60),
        seconds_after_failure: None,
    });
    let ok = reconcile(&s, None, t0(), vec![finished("m", Successful, t0())]);
    assert_eq!(ok.expires_at, Some(at(60)));
    let failed = reconcile(&s, None, t0(), vec![finished("m", Failed, t0())]);
    assert_eq!(failed.expires_at, Some(at(600)));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn outcome_phase() -> impl Strategy<Value = AnalysisPhase> {
        prop_oneof![
            4 => Just(Successful),
            1 => Just(Failed),
            1 => Just(Inconclusive),
            1 => Just(Error),
        ]
    }

    #[derive(Clone, Debug)]
    struct Scenario {
        count: i32,
        failure_limit: i32,
        inconclusive_limit: i32,
        error_limit: i32,
        success_limit: i32,
        phases: Vec<AnalysisPhase>,
        dry_phases: Vec<AnalysisPhase>,
    }

    fn scenario() -> impl Strategy<Value = Scenario> {
        (
            0i32..6,
            -1i32..3,
            0i32..3,
            0i32..5,
            0i32..4,
            proptest::collection::vec(outcome_phase(), 1..40),
            proptest::collection::vec(outcome_phase(), 1..40),
        )
            .prop_filter_map(
                "valid limits",
                |(count, failure, inconclusive, error, success, phases, dry_phases)| {
                    let success = if failure == -1 {
                        success.max(1)
                    } else {
                        success
                    };
                    let valid_count = count == 0
                        || (count >= inconclusive
                            && if failure >= 0 {
                                count >= failure + success
                            } else {
                                count >= success
                            });
                    valid_count.then_some(Scenario {
                        count,
                        failure_limit: failure,
                        inconclusive_limit: inconclusive,
                        error_limit: error,
                        success_limit: success,
                        phases,
                        dry_phases,
                    })
                },
            )
    }

    fn the_metric(sc: &Scenario, name: &str) -> Metric {
        let mut m = every(metric(name), "1s", sc.count);
        m.failure_limit = Some(IntOrString::Int(sc.failure_limit));
        m.inconclusive_limit = Some(IntOrString::Int(sc.inconclusive_limit));
        m.consecutive_error_limit = Some(IntOrString::Int(sc.error_limit));
        m.consecutive_success_limit = Some(IntOrString::Int(sc.success_limit));
        m
    }

    /// Drives a run: measures whatever is planned, with each metric's scripted phases (cycled),
    /// until it completes or the script is used up several times. Returns every status seen.
    fn drive(
        spec: &AnalysisRunSpec,
        scripts: &BTreeMap<&str, &[AnalysisPhase]>,
    ) -> Vec<AnalysisRunStatus> {
        let mut seen = Vec::new();
        let mut status: Option<AnalysisRunStatus> = None;
        let mut used: BTreeMap<String, usize> = BTreeMap::new();
        let mut now = t0();
        for _ in 0..200 {
            let tasks = plan_measurements(spec, status.as_ref(), now);
            let outcomes = tasks
                .iter()
                .map(|task| {
                    let index = used.entry(task.metric().to_owned()).or_insert(0);
                    let script = scripts.get(task.metric()).copied().unwrap_or(&[Successful]);
                    let p = script[*index % script.len()];
                    *index += 1;
                    finished(task.metric(), p, now)
                })
                .collect();
            let update = reconcile(spec, status.as_ref(), now, outcomes);
            seen.push(update.status.clone());
            let done = phase(&update.status).is_completed();
            status = Some(update.status);
            match update.wake_at {
                Some(next) if !done => now = next.max(now),
                _ => break,
            }
        }
        seen
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn completed_phases_never_go_back_to_running(sc in scenario()) {
            let s = spec(vec![the_metric(&sc, "m")]);
            let statuses = drive(&s, &BTreeMap::from([("m", sc.phases.as_slice())]));
            let mut run_done = false;
            let mut metric_done = false;
            for status in &statuses {
                prop_assert!(!run_done || phase(status).is_completed(), "run left a completed phase");
                prop_assert!(!metric_done || metric_phase(status, "m").is_completed(), "metric left a completed phase");
                run_done |= phase(status).is_completed();
                metric_done |= metric_phase(status, "m").is_completed();
            }
        }

        #[test]
        fn count_is_successful_plus_failed_plus_inconclusive(sc in scenario()) {
            let s = spec(vec![the_metric(&sc, "m")]);
            for status in drive(&s, &BTreeMap::from([("m", sc.phases.as_slice())])) {
                if let Some(r) = status.metric_result("m") {
                    let g = |v: Option<i32>| v.unwrap_or(0);
                    prop_assert_eq!(g(r.count), g(r.successful) + g(r.failed) + g(r.inconclusive));
                    prop_assert!(g(r.consecutive_error) <= g(r.error));
                    prop_assert!(g(r.consecutive_success) <= g(r.successful));
                }
            }
        }

        #[test]
        fn dry_run_metrics_never_change_the_verdict(sc in scenario()) {
            let alone = spec(vec![the_metric(&sc, "m")]);
            let mut with_trial = spec(vec![the_metric(&sc, "m"), the_metric(&sc, "trial")]);
            with_trial.dry_run = Some(vec![DryRun { metric_name: "^trial$".into() }]);
            let scripts = BTreeMap::from([("m", sc.phases.as_slice()), ("trial", sc.dry_phases.as_slice())]);
            let final_alone = drive(&alone, &scripts).last().map(phase);
            let final_with = drive(&with_trial, &scripts).last().map(phase);
            // Unbounded metrics never complete; compare only runs that did.
            if final_alone.is_some_and(AnalysisPhase::is_completed) && final_with.is_some_and(AnalysisPhase::is_completed) {
                prop_assert_eq!(final_alone, final_with);
            }
            if final_alone.is_some_and(|p| p != Successful && p.is_completed()) {
                prop_assert_eq!(final_with, final_alone, "a failing run fails with a dry-run metric too");
            }
        }

        #[test]
        fn wake_up_is_never_in_the_past(sc in scenario()) {
            let s = spec(vec![the_metric(&sc, "m")]);
            let mut status: Option<AnalysisRunStatus> = None;
            let mut now = t0();
            for p in sc.phases.iter().take(20) {
                let tasks = plan_measurements(&s, status.as_ref(), now);
                let outcomes = tasks.iter().map(|t| finished(t.metric(), *p, now)).collect();
                let update = reconcile(&s, status.as_ref(), now, outcomes);
                if let Some(next) = update.wake_at {
                    prop_assert!(next >= now);
                    now = next;
                } else {
                    break;
                }
                status = Some(update.status);
            }
        }
    }
}
