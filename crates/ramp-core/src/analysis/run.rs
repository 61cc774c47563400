//! The AnalysisRun reconcile (reference §3.5) as two pure functions: [`plan_measurements`]
//! says which metrics to measure, resume or terminate now; [`reconcile`] folds the finished
//! measurements into the status and judges metrics and run. The controller runs the providers
//! in between and sleeps until [`RunUpdate::wake_at`].

use super::args::{self, ArgsError, redacted_secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use ramp_api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisRunSpec, AnalysisRunStatus, Measurement, MeasurementCount,
    Metric, MetricLimits, MetricResult, RunSummary,
};
use ramp_api::validation::{Severity, validate_analysis_run};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Wait after an Error measurement before the next attempt, and between measurements of a
/// metric without `interval`.
pub const ERROR_RETRY_INTERVAL: Duration =
    Duration::from_secs(ramp_api::defaults::ERROR_RETRY_INTERVAL_SECONDS);

/// What to do for one metric in this reconcile.
#[derive(Clone, Debug, PartialEq)]
pub enum MeasurementTask {
    /// Take a new measurement.
    Measure { metric: String },
    /// Poll an in-flight measurement (e.g. a Job) again.
    Resume {
        metric: String,
        measurement: Measurement,
    },
    /// The run is terminating: stop an in-flight measurement (e.g. delete its Job).
    Terminate {
        metric: String,
        measurement: Measurement,
    },
}

impl MeasurementTask {
    /// The metric the task is about.
    pub fn metric(&self) -> &str {
        match self {
            Self::Measure { metric }
            | Self::Resume { metric, .. }
            | Self::Terminate { metric, .. } => metric,
        }
    }
}

/// A provider's answer to a task: a finished measurement (`finishedAt` set, phase final) or an
/// in-flight one (`finishedAt` unset, `resumeAt` saying when to poll again).
#[derive(Clone, Debug, PartialEq)]
pub struct MeasurementOutcome {
    pub metric: String,
    pub measurement: Measurement,
    /// Provider information about the metric, merged into `metricResults[].metadata` (e.g.
    /// `ResolvedPrometheusQuery`).
    pub metric_metadata: BTreeMap<String, String>,
}

/// A Kubernetes event to record on the AnalysisRun.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunEvent {
    /// `Metric<Phase>` or `AnalysisRun<Phase>`.
    pub reason: String,
    pub message: String,
    /// Failed and Error are warnings; everything else is normal.
    pub warning: bool,
}

/// Everything a reconcile decided.
#[derive(Clone, Debug, PartialEq)]
pub struct RunUpdate {
    /// The status to write.
    pub status: AnalysisRunStatus,
    /// Events to record, in order.
    pub events: Vec<RunEvent>,
    /// When the run needs the next reconcile for a measurement (exact, not rounded); `None`
    /// when nothing is scheduled (completed, or waiting only for a spec change).
    pub wake_at: Option<Timestamp>,
    /// Measurements dropped by retention, per metric, for the provider to clean up after
    /// (e.g. delete their Jobs).
    pub trimmed: Vec<(String, Vec<Measurement>)>,
    /// When a completed run should be deleted (`ttlStrategy`).
    pub expires_at: Option<Timestamp>,
}

/// The run's metrics with arguments substituted (secrets redacted), plus dry-run and
/// retention settings: what every rule of §3.5 reads.
struct PreparedRun {
    metrics: Vec<PreparedMetric>,
}

struct PreparedMetric {
    metric: Metric,
    limits: MetricLimits,
    count: MeasurementCount,
    interval: Option<Duration>,
    initial_delay: Option<Duration>,
    dry_run: bool,
    retention: usize,
}

/// Step 1: resolve arguments (secrets as placeholders), substitute, validate.
fn prepare(spec: &AnalysisRunSpec) -> Result<PreparedRun, String> {
    let resolved = args::resolve_args(spec.args.as_deref().unwrap_or_default(), redacted_secret)
        .map_err(|e| format!("Unable to resolve metric arguments: {e}"))?;
    let mut metrics = Vec::with_capacity(spec.metrics.len());
    for metric in &spec.metrics {
        metrics.push(
            args::substitute_metric(metric, &resolved)
                .map_err(|e| format!("Unable to resolve metric arguments: {e}"))?,
        );
    }
    let substituted = AnalysisRun::new(
        "run",
        AnalysisRunSpec {
            metrics: metrics.clone(),
            ..spec.clone()
        },
    );
    if let Some(problem) = validate_analysis_run(&substituted)
        .into_iter()
        .find(|p| p.severity == Severity::Error)
    {
        let field = problem
            .field
            .strip_prefix("spec.")
            .unwrap_or(&problem.field);
        return Err(format!(
            "Analysis spec invalid: {field}: {}",
            problem.message
        ));
    }
    let dry_run = args::dry_run_metrics(&metrics, spec.dry_run.as_deref().unwrap_or_default())
        .map_err(|e| format!("Analysis spec invalid: {e}"))?;
    let retention = args::retention_limits(
        &metrics,
        spec.measurement_retention.as_deref().unwrap_or_default(),
    )
    .map_err(|e| format!("Analysis spec invalid: {e}"))?;
    let invalid = |e: ramp_api::analysis::AnalysisFieldError| format!("Analysis spec invalid: {e}");
    let metrics = metrics
        .into_iter()
        .map(|metric| {
            Ok(PreparedMetric {
                limits: metric.limits().map_err(invalid)?,
                count: metric.effective_count().map_err(invalid)?,
                interval: metric.interval_duration().map_err(invalid)?,
                initial_delay: metric.initial_delay_duration().map_err(invalid)?,
                dry_run: dry_run.contains(&metric.name),
                retention: retention.get(&metric.name).copied().unwrap_or(usize::MAX),
                metric,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(PreparedRun { metrics })
}

fn phase_of(result: Option<&MetricResult>) -> Option<AnalysisPhase> {
    result.and_then(|r| r.phase().ok().flatten())
}

fn measurement_phase(measurement: &Measurement) -> Option<AnalysisPhase> {
    measurement.phase().ok().flatten()
}

fn started_at(status: &AnalysisRunStatus, now: Timestamp) -> Timestamp {
    status.started_at.as_ref().map_or(now, |t| t.0)
}

/// Status times are stored with whole seconds (the API's `metav1.Time`); truncating before
/// scheduling makes the in-memory status the one read back, and keeps a measurement that took
/// less than a second from pushing every later one back (no drift).
fn whole_seconds(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).unwrap_or(at)
}

fn whole_seconds_time(time: Option<Time>) -> Option<Time> {
    time.map(|t| Time(whole_seconds(t.0)))
}

fn plus(at: Timestamp, by: Duration) -> Timestamp {
    SignedDuration::try_from(by)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Step 7: the run is terminating when asked to, or when a metric that counts has already
/// ended Failed, Error or Inconclusive (fail fast).
fn is_terminating(
    spec: &AnalysisRunSpec,
    status: &AnalysisRunStatus,
    prepared: &PreparedRun,
) -> bool {
    spec.terminate_requested()
        || prepared.metrics.iter().any(|m| {
            !m.dry_run
                && matches!(
                    phase_of(status.metric_result(&m.metric.name)),
                    Some(
                        AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
                    )
                )
        })
}

/// When a metric that has a finished last measurement is due for its next one: 10 s after an
/// Error, `interval` otherwise (10 s without one).
fn next_due(metric: &PreparedMetric, last: &Measurement) -> Option<Timestamp> {
    let finished = last.finished_at.as_ref()?.0;
    let wait = if measurement_phase(last) == Some(AnalysisPhase::Error) {
        ERROR_RETRY_INTERVAL
    } else {
        metric.interval.unwrap_or(ERROR_RETRY_INTERVAL)
    };
    Some(plus(finished, wait))
}

/// Step 2: which metrics get a task now. Nothing for a completed run, or one whose spec cannot
/// be prepared ([`reconcile`] turns that into an Error).
pub fn plan_measurements(
    spec: &AnalysisRunSpec,
    status: Option<&AnalysisRunStatus>,
    now: Timestamp,
) -> Vec<MeasurementTask> {
    let empty = AnalysisRunStatus::default();
    let status = status.unwrap_or(&empty);
    if status
        .phase()
        .ok()
        .flatten()
        .is_some_and(AnalysisPhase::is_completed)
    {
        return Vec::new();
    }
    let Ok(prepared) = prepare(spec) else {
        return Vec::new();
    };
    let terminating = is_terminating(spec, status, &prepared);
    let run_started = started_at(status, now);
    let mut tasks = Vec::new();
    for metric in &prepared.metrics {
        let name = &metric.metric.name;
        let result = status.metric_result(name);
        if phase_of(result).is_some_and(AnalysisPhase::is_completed) {
            continue;
        }
        let last = result.and_then(MetricResult::last_measurement);
        if let Some(in_flight) = last.filter(|m| m.is_in_flight()) {
            if terminating {
                tasks.push(MeasurementTask::Terminate {
                    metric: name.clone(),
                    measurement: in_flight.clone(),
                });
            } else if in_flight.resume_at.as_ref().is_none_or(|at| at.0 <= now) {
                tasks.push(MeasurementTask::Resume {
                    metric: name.clone(),
                    measurement: in_flight.clone(),
                });
            }
            continue;
        }
        if terminating {
            continue;
        }
        let Some(last) = last else {
            let delay_over = metric
                .initial_delay
                .is_none_or(|delay| plus(run_started, delay) <= now);
            if delay_over {
                tasks.push(MeasurementTask::Measure {
                    metric: name.clone(),
                });
            }
            continue;
        };
        let taken = result.and_then(|r| r.count).unwrap_or(0);
        if metric.count.is_reached(taken) {
            continue;
        }
        // Due at exactly finishedAt + interval: the wake-up lands on that instant, so a strict
        // comparison would push every measurement one reconcile late.
        if next_due(metric, last).is_some_and(|due| due <= now) {
            tasks.push(MeasurementTask::Measure {
                metric: name.clone(),
            });
        }
    }
    tasks
}

/// Steps 4-9: record the outcomes of this reconcile's tasks, judge every metric and the run,
/// trim measurements, emit events and compute the next wake-up.
pub fn reconcile(
    spec: &AnalysisRunSpec,
    status: Option<&AnalysisRunStatus>,
    now: Timestamp,
    outcomes: Vec<MeasurementOutcome>,
) -> RunUpdate {
    let mut status = status.cloned().unwrap_or_default();
    let previous_phase = status.phase().ok().flatten();
    if previous_phase.is_some_and(AnalysisPhase::is_completed) {
        let expires_at = expiry(spec, &status);
        return RunUpdate {
            status,
            events: Vec::new(),
            wake_at: None,
            trimmed: Vec::new(),
            expires_at,
        };
    }
    if status.started_at.is_none() {
        status.started_at = Some(Time(whole_seconds(now)));
    }
    let prepared = match prepare(spec) {
        Ok(prepared) => prepared,
        Err(message) => return errored_run(spec, status, now, message),
    };

    let mut results = status.metric_results.take().unwrap_or_default();
    for metric in &prepared.metrics {
        if !results.iter().any(|r| r.name == metric.metric.name) {
            results.push(MetricResult {
                name: metric.metric.name.clone(),
                phase: AnalysisPhase::Pending.into(),
                dry_run: metric.dry_run.then_some(true),
                ..Default::default()
            });
        }
    }
    for outcome in outcomes {
        if let Some(result) = results.iter_mut().find(|r| r.name == outcome.metric) {
            record(result, outcome);
        }
    }
    let mut trimmed = Vec::new();
    for metric in &prepared.metrics {
        if let Some(result) = results.iter_mut().find(|r| r.name == metric.metric.name) {
            let measurements = result.measurements.get_or_insert_with(Vec::new);
            if measurements.len() > metric.retention {
                let excess = measurements.len() - metric.retention;
                let removed: Vec<_> = measurements.drain(..excess).collect();
                trimmed.push((metric.metric.name.clone(), removed));
            }
            if measurements.is_empty() {
                result.measurements = None;
            }
        }
    }
    status.metric_results = Some(results);

    let mut events = Vec::new();
    // Assess until the terminating flag settles: a metric failing in this pass makes the run
    // terminate, which upstream only notices on its next (self-triggered) reconcile. Same end
    // state, one API round trip less between a failed measurement and an aborted rollout.
    let mut terminating = is_terminating(spec, &status, &prepared);
    loop {
        assess_metrics(&prepared, &mut status, terminating, &mut events);
        let now_terminating = is_terminating(spec, &status, &prepared);
        if now_terminating == terminating {
            break;
        }
        terminating = now_terminating;
    }
    let (phase, message) = run_verdict(spec, &prepared, &status, terminating);
    status.phase = phase.into();
    status.message = message;
    let (run_summary, dry_run_summary) = summaries(&prepared, &status);
    status.run_summary = Some(run_summary);
    status.dry_run_summary = dry_run_summary;
    if phase.is_completed() {
        status.completed_at = Some(Time(whole_seconds(now)));
        events.push(run_event(phase));
    }
    let wake_at = if phase.is_completed() {
        None
    } else {
        next_wake(&prepared, &status, terminating, now)
    };
    let expires_at = expiry(spec, &status);
    RunUpdate {
        status,
        events,
        wake_at,
        trimmed,
        expires_at,
    }
}

fn errored_run(
    spec: &AnalysisRunSpec,
    mut status: AnalysisRunStatus,
    now: Timestamp,
    message: String,
) -> RunUpdate {
    status.phase = AnalysisPhase::Error.into();
    status.message = Some(message);
    status.completed_at = Some(Time(whole_seconds(now)));
    let expires_at = expiry(spec, &status);
    RunUpdate {
        status,
        events: vec![run_event(AnalysisPhase::Error)],
        wake_at: None,
        trimmed: Vec::new(),
        expires_at,
    }
}

fn run_event(phase: AnalysisPhase) -> RunEvent {
    RunEvent {
        reason: format!("AnalysisRun{phase}"),
        message: format!("Analysis Completed. Result: {phase}"),
        warning: matches!(phase, AnalysisPhase::Failed | AnalysisPhase::Error),
    }
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// Step 4: a finished measurement moves the counters; an in-flight one only replaces the
/// previous in-flight entry.
fn record(result: &mut MetricResult, mut outcome: MeasurementOutcome) {
    let m = &mut outcome.measurement;
    m.started_at = whole_seconds_time(m.started_at.take());
    m.finished_at = whole_seconds_time(m.finished_at.take());
    m.resume_at = whole_seconds_time(m.resume_at.take());
    let measurements = result.measurements.get_or_insert_with(Vec::new);
    if measurements.last().is_some_and(Measurement::is_in_flight) {
        measurements.pop();
    }
    let finished = !outcome.measurement.is_in_flight();
    let phase = measurement_phase(&outcome.measurement);
    measurements.push(outcome.measurement);
    if !outcome.metric_metadata.is_empty() {
        result
            .metadata
            .get_or_insert_with(BTreeMap::new)
            .extend(outcome.metric_metadata);
    }
    if !finished {
        return;
    }
    let get = |v: Option<i32>| v.unwrap_or(0);
    let (mut count, mut successful, mut failed, mut inconclusive, mut error) = (
        get(result.count),
        get(result.successful),
        get(result.failed),
        get(result.inconclusive),
        get(result.error),
    );
    let (mut consecutive_error, mut consecutive_success) = (
        get(result.consecutive_error),
        get(result.consecutive_success),
    );
    match phase {
        Some(AnalysisPhase::Successful) => {
            successful += 1;
            count += 1;
            consecutive_error = 0;
            consecutive_success += 1;
        }
        Some(AnalysisPhase::Failed) => {
            failed += 1;
            count += 1;
            consecutive_error = 0;
            consecutive_success = 0;
        }
        Some(AnalysisPhase::Inconclusive) => {
            inconclusive += 1;
            count += 1;
            consecutive_error = 0;
            consecutive_success = 0;
        }
        // A provider that reports a non-final phase for a finished measurement is treated as
        // an error: it must not count toward `count`.
        Some(AnalysisPhase::Error | AnalysisPhase::Pending | AnalysisPhase::Running) | None => {
            error += 1;
            consecutive_error += 1;
            consecutive_success = 0;
        }
    }
    result.count = nonzero(count);
    result.successful = nonzero(successful);
    result.failed = nonzero(failed);
    result.inconclusive = nonzero(inconclusive);
    result.error = nonzero(error);
    result.consecutive_error = nonzero(consecutive_error);
    result.consecutive_success = nonzero(consecutive_success);
}

/// A metric's verdict and, for the limit rules, the reason.
fn assess_metric(
    metric: &PreparedMetric,
    result: &MetricResult,
    terminating: bool,
) -> (AnalysisPhase, Option<String>) {
    // a. completed metrics keep their phase.
    if let Some(phase) = phase_of(Some(result)).filter(|p| p.is_completed()) {
        return (phase, None);
    }
    // b. nothing measured yet.
    let Some(last) = result.last_measurement() else {
        let phase = if terminating {
            AnalysisPhase::Successful
        } else {
            AnalysisPhase::Pending
        };
        return (phase, None);
    };
    // c. a measurement in flight.
    if last.is_in_flight() {
        return (AnalysisPhase::Running, None);
    }
    let get = |v: Option<i32>| v.unwrap_or(0);
    let limits = metric.limits;
    // d. limits; a later rule overrides an earlier one.
    let mut tripped = None;
    let failed = get(result.failed);
    if limits.failure >= 0 && failed > limits.failure {
        tripped = Some((
            AnalysisPhase::Failed,
            format!("failed ({failed}) > failureLimit ({})", limits.failure),
        ));
    }
    let inconclusive = get(result.inconclusive);
    if inconclusive > limits.inconclusive {
        tripped = Some((
            AnalysisPhase::Inconclusive,
            format!(
                "inconclusive ({inconclusive}) > inconclusiveLimit ({})",
                limits.inconclusive
            ),
        ));
    }
    let consecutive_error = get(result.consecutive_error);
    if consecutive_error > limits.consecutive_error {
        tripped = Some((
            AnalysisPhase::Error,
            format!(
                "consecutiveErrors ({consecutive_error}) > consecutiveErrorLimit ({})",
                limits.consecutive_error
            ),
        ));
    }
    if let Some((phase, reason)) = tripped {
        return (phase, Some(reason));
    }
    // e. success streak.
    let streak = get(result.consecutive_success);
    if limits.consecutive_success > 0 && streak >= limits.consecutive_success {
        return (
            AnalysisPhase::Successful,
            Some(format!(
                "consecutiveSuccess ({streak}) >= consecutiveSuccessLimit ({})",
                limits.consecutive_success
            )),
        );
    }
    // f. count reached.
    let count = get(result.count);
    if metric.count.is_reached(count) {
        if limits.consecutive_success > 0 {
            return if limits.failure >= 0 {
                (
                    AnalysisPhase::Inconclusive,
                    Some(format!(
                        "count ({count}) reached without consecutiveSuccess ({streak}) reaching consecutiveSuccessLimit ({})",
                        limits.consecutive_success
                    )),
                )
            } else {
                (
                    AnalysisPhase::Failed,
                    Some(format!(
                        "count ({count}) reached without consecutiveSuccess ({streak}) reaching consecutiveSuccessLimit ({})",
                        limits.consecutive_success
                    )),
                )
            };
        }
        return (AnalysisPhase::Successful, None);
    }
    // g. still measuring (unbounded, or bounded with measurements to go).
    if terminating {
        (AnalysisPhase::Successful, None)
    } else {
        (AnalysisPhase::Running, None)
    }
}

fn assess_metrics(
    prepared: &PreparedRun,
    status: &mut AnalysisRunStatus,
    terminating: bool,
    events: &mut Vec<RunEvent>,
) {
    let Some(results) = status.metric_results.as_mut() else {
        return;
    };
    for metric in &prepared.metrics {
        let Some(result) = results.iter_mut().find(|r| r.name == metric.metric.name) else {
            continue;
        };
        let before = phase_of(Some(result));
        let (phase, reason) = assess_metric(metric, result, terminating);
        if before == Some(phase) {
            continue;
        }
        result.phase = phase.into();
        if phase.is_completed() {
            let last_message = result
                .last_measurement()
                .and_then(|m| m.message.clone())
                .filter(|m| !m.is_empty());
            result.message = match (reason, last_message) {
                (Some(reason), Some(detail)) => {
                    Some(format!("{reason}: \"Error Message: {detail}\""))
                }
                (Some(reason), None) => Some(reason),
                (None, detail) => detail,
            };
            events.push(RunEvent {
                reason: format!("Metric{phase}"),
                message: format!("Metric '{}' Completed. Result: {phase}", metric.metric.name),
                warning: matches!(phase, AnalysisPhase::Failed | AnalysisPhase::Error),
            });
        }
    }
}

/// Step 8: the run's phase and message.
fn run_verdict(
    spec: &AnalysisRunSpec,
    prepared: &PreparedRun,
    status: &AnalysisRunStatus,
    terminating: bool,
) -> (AnalysisPhase, Option<String>) {
    let mut everything_completed = true;
    let mut worst: Option<(AnalysisPhase, &MetricResult)> = None;
    for metric in &prepared.metrics {
        let result = status.metric_result(&metric.metric.name);
        let phase = phase_of(result);
        match (phase, result) {
            (Some(phase), Some(result)) if phase.is_completed() => {
                if !metric.dry_run && worst.is_none_or(|(w, _)| phase.severity() > w.severity()) {
                    worst = Some((phase, result));
                }
            }
            _ => everything_completed = false,
        }
    }
    let describe = |phase: AnalysisPhase, result: &MetricResult| match &result.message {
        Some(reason) if phase != AnalysisPhase::Successful => Some(format!(
            "Metric \"{}\" assessed {phase} due to {reason}",
            result.name
        )),
        _ => None,
    };
    if terminating {
        // In-flight measurements are terminated by the next plan; upstream terminates them
        // before judging, so the run is only judged once none is left.
        let awaiting_termination = prepared.metrics.iter().any(|m| {
            status
                .metric_result(&m.metric.name)
                .and_then(MetricResult::last_measurement)
                .is_some_and(Measurement::is_in_flight)
        });
        if awaiting_termination {
            return (AnalysisPhase::Running, None);
        }
        return match worst {
            Some((phase, result)) if phase != AnalysisPhase::Successful => {
                (phase, describe(phase, result))
            }
            _ => (
                AnalysisPhase::Successful,
                spec.terminate_requested()
                    .then(|| "Run Terminated".to_owned()),
            ),
        };
    }
    if !everything_completed {
        return (AnalysisPhase::Running, None);
    }
    match worst {
        Some((phase, result)) => (phase, describe(phase, result)),
        None => (AnalysisPhase::Successful, None),
    }
}

fn summaries(
    prepared: &PreparedRun,
    status: &AnalysisRunStatus,
) -> (RunSummary, Option<RunSummary>) {
    let mut counted = [0i32; 5];
    let mut dry = [0i32; 5];
    let mut any_dry = false;
    for metric in &prepared.metrics {
        let tally = if metric.dry_run {
            any_dry = true;
            &mut dry
        } else {
            &mut counted
        };
        tally[0] += 1;
        match phase_of(status.metric_result(&metric.metric.name)) {
            Some(AnalysisPhase::Failed) => tally[2] += 1,
            Some(AnalysisPhase::Inconclusive) => tally[3] += 1,
            Some(AnalysisPhase::Error) => tally[4] += 1,
            _ => tally[1] += 1,
        }
    }
    let summary = |t: [i32; 5]| RunSummary {
        count: nonzero(t[0]),
        successful: nonzero(t[1]),
        failed: nonzero(t[2]),
        inconclusive: nonzero(t[3]),
        error: nonzero(t[4]),
    };
    (summary(counted), any_dry.then(|| summary(dry)))
}

/// Step 9: the earliest instant a metric needs attention.
fn next_wake(
    prepared: &PreparedRun,
    status: &AnalysisRunStatus,
    terminating: bool,
    now: Timestamp,
) -> Option<Timestamp> {
    let run_started = started_at(status, now);
    let mut earliest: Option<Timestamp> = None;
    let mut consider = |at: Timestamp| {
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    };
    for metric in &prepared.metrics {
        let result = status.metric_result(&metric.metric.name);
        if phase_of(result).is_some_and(AnalysisPhase::is_completed) {
            continue;
        }
        let last = result.and_then(MetricResult::last_measurement);
        match last {
            Some(in_flight) if in_flight.is_in_flight() => {
                if terminating {
                    consider(now);
                } else if let Some(at) = &in_flight.resume_at {
                    consider(at.0.max(now));
                }
            }
            _ if terminating => {}
            None => consider(
                metric
                    .initial_delay
                    .map_or(now, |delay| plus(run_started, delay)),
            ),
            Some(last) => {
                let taken = result.and_then(|r| r.count).unwrap_or(0);
                if !metric.count.is_reached(taken)
                    && let Some(due) = next_due(metric, last)
                {
                    consider(due);
                }
            }
        }
    }
    earliest
}

/// `ttlStrategy`: when a completed run should be deleted.
fn expiry(spec: &AnalysisRunSpec, status: &AnalysisRunStatus) -> Option<Timestamp> {
    let ttl = spec.ttl_strategy.as_ref()?;
    let completed = status.completed_at.as_ref()?.0;
    let successful = status.phase().ok().flatten() == Some(AnalysisPhase::Successful);
    let specific = if successful {
        ttl.seconds_after_success
    } else {
        ttl.seconds_after_failure
    };
    let seconds = specific.or(ttl.seconds_after_completion)?;
    Some(plus(
        completed,
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0)),
    ))
}

/// Why the run could not be prepared, for callers that want it before reconciling (e.g.
/// `ramp analyze`).
pub fn check_run_spec(spec: &AnalysisRunSpec) -> Result<(), String> {
    prepare(spec).map(|_| ())
}

/// Names of the run's dry-run metrics.
pub fn dry_run_metric_names(spec: &AnalysisRunSpec) -> Result<BTreeSet<String>, ArgsError> {
    args::dry_run_metrics(&spec.metrics, spec.dry_run.as_deref().unwrap_or_default())
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
