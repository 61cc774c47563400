//! How a simulated pod behaves, read from `sim.ramp.dev/*` annotations on its template (copied
//! onto the pod). Pure parsing: a bad value is reported with its annotation and object, and the
//! caller falls back to the default.

use std::collections::BTreeMap;
use std::time::Duration;

pub const READY_AFTER: &str = "sim.ramp.dev/ready-after";
pub const NEVER_READY: &str = "sim.ramp.dev/never-ready";
pub const CRASH_LOOP: &str = "sim.ramp.dev/crash-loop";
pub const IMAGE_PULL_FAILURE: &str = "sim.ramp.dev/image-pull-failure";
pub const JOB_RESULT: &str = "sim.ramp.dev/job-result";
pub const JOB_DURATION: &str = "sim.ramp.dev/job-duration";

/// What the containers of a pod do once started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Runs and becomes ready.
    None,
    /// Runs but its readiness probe never passes.
    NeverReady,
    /// Exits with an error right after starting, over and over.
    CrashLoop,
    /// Its image can never be pulled.
    ImagePull,
}

/// How a run-to-completion pod (a Job's pod) ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Succeed,
    Fail,
}

/// The simulated behaviour of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodBehaviour {
    pub ready_after: Duration,
    pub fault: Fault,
    /// Set for pods whose `restartPolicy` is not `Always`: when and how they terminate.
    pub completion: Option<(Duration, JobOutcome)>,
}

/// An annotation whose value could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: cannot understand {value:?}: {reason}")]
pub struct BadAnnotation {
    pub key: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// Reads the behaviour from annotations; returns it with defaults in place of bad values,
/// together with the problems found.
pub fn pod_behaviour(
    annotations: Option<&BTreeMap<String, String>>,
    run_to_completion: bool,
    default_ready_after: Duration,
    default_job_duration: Duration,
) -> (PodBehaviour, Vec<BadAnnotation>) {
    let empty = BTreeMap::new();
    let annotations = annotations.unwrap_or(&empty);
    let mut problems = Vec::new();
    let mut duration = |key: &'static str, default: Duration| match annotations.get(key) {
        None => default,
        Some(value) => parse_duration(value).unwrap_or_else(|reason| {
            problems.push(BadAnnotation {
                key,
                value: value.clone(),
                reason,
            });
            default
        }),
    };
    let ready_after = duration(READY_AFTER, default_ready_after);
    let job_duration = duration(JOB_DURATION, default_job_duration);
    let mut flag = |key: &'static str| match annotations.get(key).map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            problems.push(BadAnnotation {
                key,
                value: other.to_string(),
                reason: "expected \"true\" or \"false\"",
            });
            false
        }
    };
    // The most visible failure wins when several are asked for: a pod whose image cannot be
    // pulled never gets to crash, and a crashing one never gets to be merely unready.
    let fault = if flag(IMAGE_PULL_FAILURE) {
        Fault::ImagePull
    } else if flag(CRASH_LOOP) {
        Fault::CrashLoop
    } else if flag(NEVER_READY) {
        Fault::NeverReady
    } else {
        Fault::None
    };
    let outcome = match annotations.get(JOB_RESULT).map(String::as_str) {
        None | Some("succeed") => JobOutcome::Succeed,
        Some("fail") => JobOutcome::Fail,
        Some(other) => {
            problems.push(BadAnnotation {
                key: JOB_RESULT,
                value: other.to_string(),
                reason: "expected \"succeed\" or \"fail\"",
            });
            JobOutcome::Succeed
        }
    };
    let behaviour = PodBehaviour {
        ready_after,
        fault,
        completion: run_to_completion.then_some((job_duration, outcome)),
    };
    (behaviour, problems)
}

/// Parses Go-style durations as written in manifests: `250ms`, `2s`, `1.5s`, `1m`, `1m30s`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration");
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0.0_f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("missing unit (ms, s, m or h)")?;
        if number_len == 0 {
            return Err("expected a number");
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| "bad number")?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err("unknown unit (use ms, s, m or h)"),
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| "duration out of range")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn durations_in_manifest_syntax() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn behaviour_from_annotations_with_defaults_for_bad_values() {
        let default = Duration::from_millis(200);
        let job = Duration::from_secs(1);
        let (b, problems) = pod_behaviour(None, false, default, job);
        assert_eq!(b.fault, Fault::None);
        assert_eq!(b.ready_after, default);
        assert_eq!(b.completion, None);
        assert!(problems.is_empty());

        let a = annotations(&[
            (READY_AFTER, "2s"),
            (CRASH_LOOP, "true"),
            (NEVER_READY, "true"),
        ]);
        let (b, _) = pod_behaviour(Some(&a), false, default, job);
        assert_eq!(b.fault, Fault::CrashLoop);
        assert_eq!(b.ready_after, Duration::from_secs(2));

        let a = annotations(&[
            (READY_AFTER, "soon"),
            (JOB_RESULT, "fail"),
            (JOB_DURATION, "3s"),
        ]);
        let (b, problems) = pod_behaviour(Some(&a), true, default, job);
        assert_eq!(b.ready_after, default);
        assert_eq!(
            b.completion,
            Some((Duration::from_secs(3), JobOutcome::Fail))
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, READY_AFTER);
    }
}
