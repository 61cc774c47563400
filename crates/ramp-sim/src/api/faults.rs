//! Fault injection for reliability tests: error rates per verb and resource (500, a 500 after
//! the write was applied, 429 with Retry-After, 409), added latency, and watch streams cut after
//! a fixed time. Applied by the router before a request reaches the handlers; the injector
//! counts what it injected.

use super::status::ApiError;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// The Kubernetes verbs, as a real server's audit log names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    pub fn is_mutating(self) -> bool {
        !matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which requests a fault applies to. `None` matches everything; a resource matches by its
/// plural (`rollouts`) or its qualified name (`rollouts.argoproj.io`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultTarget {
    pub verb: Option<Verb>,
    pub resource: Option<String>,
}

impl FaultTarget {
    pub fn any() -> Self {
        FaultTarget::default()
    }

    pub fn verb(verb: Verb) -> Self {
        FaultTarget {
            verb: Some(verb),
            resource: None,
        }
    }

    pub fn resource(resource: impl Into<String>) -> Self {
        FaultTarget {
            verb: None,
            resource: Some(resource.into()),
        }
    }

    pub fn verb_on(verb: Verb, resource: impl Into<String>) -> Self {
        FaultTarget {
            verb: Some(verb),
            resource: Some(resource.into()),
        }
    }

    fn matches(&self, verb: Verb, plural: &str, qualified: &str) -> bool {
        self.verb.is_none_or(|v| v == verb)
            && self
                .resource
                .as_deref()
                .is_none_or(|r| r == plural || r == qualified)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum FaultError {
    /// 500 InternalError.
    Internal,
    /// The write is applied, then answered 500 InternalError, as when a server's answer is
    /// lost after the commit (reads just fail).
    InternalAfterApply,
    /// 429 TooManyRequests with a `Retry-After` header.
    TooManyRequests { retry_after_seconds: u64 },
    /// 409 Conflict, as if another writer had just changed the object.
    Conflict,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ErrorFault {
    pub target: FaultTarget,
    /// Share of matching requests that fail, 0.0..=1.0.
    pub rate: f64,
    pub error: FaultError,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LatencyFault {
    pub target: FaultTarget,
    pub delay: Duration,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    pub errors: Vec<ErrorFault>,
    pub latency: Vec<LatencyFault>,
    /// Every watch stream is closed by the server this long after it opened.
    pub watch_cut_after: Option<Duration>,
}

impl std::str::FromStr for Verb {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        [
            Verb::Get,
            Verb::List,
            Verb::Watch,
            Verb::Create,
            Verb::Update,
            Verb::Patch,
            Verb::Delete,
            Verb::DeleteCollection,
        ]
        .into_iter()
        .find(|verb| verb.as_str() == text)
        .ok_or_else(|| {
            format!(
                "{text:?} is not a verb (get, list, watch, create, update, patch, delete, deletecollection)"
            )
        })
    }
}

impl Faults {
    /// Adds one fault written as on `ramp sim`'s command line (see [`Faults::parse_rule`]).
    pub fn add_rule(&mut self, rule: &str) -> Result<(), String> {
        match Self::parse_rule(rule)? {
            Rule::Error(fault) => self.errors.push(fault),
            Rule::Latency(fault) => self.latency.push(fault),
        }
        Ok(())
    }

    /// Reads `error=500|500-applied|429|409[,rate=R][,retry-after=S][,verb=V][,resource=R]` or
    /// `latency=D[,verb=V][,resource=R]`: the error or delay, the share of matching requests
    /// that fail (default 1), the `Retry-After` of a 429 (default 1 s), and which requests it
    /// applies to (default all; a resource by plural or `plural.group`).
    fn parse_rule(rule: &str) -> Result<Rule, String> {
        let mut target = FaultTarget::any();
        let mut kind = None;
        let mut rate = 1.0;
        let mut retry_after_seconds = 1;
        for part in rule.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=value"))?;
            match key {
                "error" | "latency" if kind.is_some() => {
                    return Err(format!("{rule:?} names more than one fault"));
                }
                "error" => kind = Some(("error", value)),
                "latency" => kind = Some(("latency", value)),
                "rate" => {
                    rate = value
                        .parse::<f64>()
                        .ok()
                        .filter(|r| (0.0..=1.0).contains(r))
                        .ok_or_else(|| format!("rate {value:?} is not a number from 0 to 1"))?;
                }
                "retry-after" => {
                    retry_after_seconds = value
                        .parse()
                        .map_err(|_| format!("retry-after {value:?} is not a number of seconds"))?;
                }
                "verb" => target.verb = Some(value.parse()?),
                "resource" => target.resource = Some(value.to_owned()),
                other => {
                    return Err(format!(
                        "unknown key {other:?} (error, latency, rate, retry-after, verb, resource)"
                    ));
                }
            }
        }
        match kind {
            Some(("error", code)) => {
                let error = match code {
                    "500" => FaultError::Internal,
                    "500-applied" => FaultError::InternalAfterApply,
                    "429" => FaultError::TooManyRequests {
                        retry_after_seconds,
                    },
                    "409" => FaultError::Conflict,
                    other => {
                        return Err(format!(
                            "error {other:?} is not 500, 500-applied, 429 or 409"
                        ));
                    }
                };
                Ok(Rule::Error(ErrorFault {
                    target,
                    rate,
                    error,
                }))
            }
            Some((_, delay)) => {
                let delay = ramp_api::duration::parse(delay)
                    .map_err(|err| format!("latency {delay:?}: {err}"))?;
                Ok(Rule::Latency(LatencyFault { target, delay }))
            }
            None => Err(format!(
                "{rule:?} names no fault (error=... or latency=...)"
            )),
        }
    }
}

/// One fault read from the command line.
enum Rule {
    Error(ErrorFault),
    Latency(LatencyFault),
}

/// One error the injector decided on: the answer, and whether the write is applied first.
#[derive(Debug)]
pub struct InjectedFault {
    pub error: ApiError,
    pub applied: bool,
}

/// How many requests each kind of fault has hit since the server started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InjectedCounts {
    /// 500s answered without applying the request.
    pub internal: u64,
    /// Writes applied and then answered 500 (reads failed by that fault count in `internal`).
    pub applied_then_internal: u64,
    pub too_many_requests: u64,
    pub conflicts: u64,
}

impl InjectedCounts {
    pub fn total(&self) -> u64 {
        self.internal + self.applied_then_internal + self.too_many_requests + self.conflicts
    }
}

/// The live fault settings, the random source deciding which requests fail, and the counts.
#[derive(Debug, Default)]
pub struct FaultInjector {
    inner: Mutex<Injection>,
}

#[derive(Debug, Default)]
struct Injection {
    faults: Faults,
    rng: u64,
    counts: InjectedCounts,
}

impl FaultInjector {
    pub fn new(faults: Faults) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        FaultInjector {
            inner: Mutex::new(Injection {
                faults,
                rng: seed | 1,
                counts: InjectedCounts::default(),
            }),
        }
    }

    pub fn set(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    pub fn get(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.lock().faults);
    }

    /// Starts the random source over from `seed`, so one run's draws can be repeated.
    pub fn seed(&self, seed: u64) {
        // splitmix64 of the seed: nearby seeds give unrelated sequences, and never 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.lock().rng = (z ^ (z >> 31)) | 1;
    }

    pub fn counts(&self) -> InjectedCounts {
        self.lock().counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Injection> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The delay to add and the error to answer with (if any) for one request.
    pub fn decide(
        &self,
        verb: Verb,
        plural: &str,
        qualified: &str,
    ) -> (Duration, Option<InjectedFault>) {
        let mut guard = self.lock();
        let Injection {
            faults,
            rng,
            counts,
        } = &mut *guard;
        let delay = faults
            .latency
            .iter()
            .filter(|l| l.target.matches(verb, plural, qualified))
            .map(|l| l.delay)
            .sum();
        let mut injected = None;
        for fault in &faults.errors {
            if !fault.target.matches(verb, plural, qualified) {
                continue;
            }
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            let roll = (*rng >> 11) as f64 / (1u64 << 53) as f64;
            if roll < fault.rate {
                let applied = fault.error == FaultError::InternalAfterApply && verb.is_mutating();
                match (&fault.error, applied) {
                    (FaultError::TooManyRequests { .. }, _) => counts.too_many_requests += 1,
                    (FaultError::Conflict, _) => counts.conflicts += 1,
                    (_, true) => counts.applied_then_internal += 1,
                    (_, false) => counts.internal += 1,
                }
                injected = Some(InjectedFault {
                    error: fault_error(&fault.error, qualified),
                    applied,
                });
                break;
            }
        }
        (delay, injected)
    }

    pub fn watch_cut_after(&self) -> Option<Duration> {
        self.lock().faults.watch_cut_after
    }
}

fn fault_error(error: &FaultError, qualified: &str) -> ApiError {
    match error {
        FaultError::Internal | FaultError::InternalAfterApply => {
            ApiError::internal("Internal error occurred: injected by ramp-sim")
        }
        FaultError::TooManyRequests {
            retry_after_seconds,
        } => {
            let mut err = ApiError::new(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            );
            err.retry_after_seconds = Some(*retry_after_seconds);
            err
        }
        FaultError::Conflict => ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified}: the object has been modified; please apply your changes to the latest version and try again"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_as_written_on_the_command_line() {
        let mut faults = Faults::default();
        faults
            .add_rule("error=429,rate=0.25,retry-after=3,verb=patch,resource=rollouts")
            .expect("a 429 rule");
        faults.add_rule("error=500").expect("a 500 rule");
        faults
            .add_rule("latency=250ms,verb=list")
            .expect("a latency rule");
        assert_eq!(
            faults.errors,
            vec![
                ErrorFault {
                    target: FaultTarget::verb_on(Verb::Patch, "rollouts"),
                    rate: 0.25,
                    error: FaultError::TooManyRequests {
                        retry_after_seconds: 3
                    },
                },
                ErrorFault {
                    target: FaultTarget::any(),
                    rate: 1.0,
                    error: FaultError::Internal,
                },
            ]
        );
        assert_eq!(
            faults.latency,
            vec![LatencyFault {
                target: FaultTarget::verb(Verb::List),
                delay: Duration::from_millis(250),
            }]
        );
    }

    #[test]
    fn a_wrong_rule_says_what_is_wrong() {
        let mut faults = Faults::default();
        for (rule, message) in [
            (
                "error=404",
                r#"error "404" is not 500, 500-applied, 429 or 409"#,
            ),
            (
                "error=500,rate=2",
                r#"rate "2" is not a number from 0 to 1"#,
            ),
            (
                "error=500,verb=read",
                r#""read" is not a verb (get, list, watch, create, update, patch, delete, deletecollection)"#,
            ),
            (
                "verb=get",
                r#""verb=get" names no fault (error=... or latency=...)"#,
            ),
            (
                "error=500,latency=1s",
                r#""error=500,latency=1s" names more than one fault"#,
            ),
            ("latency", r#""latency" is not key=value"#),
            (
                "error=500,colour=red",
                r#"unknown key "colour" (error, latency, rate, retry-after, verb, resource)"#,
            ),
        ] {
            assert_eq!(faults.add_rule(rule), Err(message.to_owned()), "{rule}");
        }
        assert_eq!(faults, Faults::default());
    }
}
