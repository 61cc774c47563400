//! What one chaos run does, drawn from its seed alone: the rollout's shape (canary over Istio or
//! NGINX with steps in any order of weights, or blue-green), what its analysis answers, and
//! which faults strike when.

use std::fmt;
use std::time::Duration;

/// Weights a step may set; drawn independently, so steps often lower the weight.
const WEIGHTS: [i64; 9] = [5, 10, 20, 25, 40, 50, 60, 80, 99];
/// Faults strike within this long after the new version is applied; then the run is calm.
pub const FAULT_WINDOW: Duration = Duration::from_secs(7);

#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub seed: u64,
    pub replicas: i64,
    pub strategy: Strategy,
    pub analysis: Verdict,
    pub faults: FaultPlan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Router {
    Istio,
    Nginx,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    Canary {
        router: Router,
        steps: Vec<Step>,
        dynamic_stable_scale: bool,
    },
    BlueGreen,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    SetWeight(i64),
    /// A one-second pause.
    Pause,
    /// An inline analysis of the chaos template.
    Analysis,
}

/// What the analysis answers; `None`: the rollout has no analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    None,
    Pass,
    Fail,
    Error,
}

impl Verdict {
    pub fn aborts(self) -> bool {
        matches!(self, Verdict::Fail | Verdict::Error)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::None => "none",
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        }
    }
}

/// The kinds of fault a run can draw, as the report counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    ApiErrors,
    WatchCuts,
    Outage,
    HandEdit,
    Kill,
    KillMidAbort,
    LeaderChange,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::ApiErrors,
        FaultKind::WatchCuts,
        FaultKind::Outage,
        FaultKind::HandEdit,
        FaultKind::Kill,
        FaultKind::KillMidAbort,
        FaultKind::LeaderChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::ApiErrors => "api-errors",
            FaultKind::WatchCuts => "watch-cuts",
            FaultKind::Outage => "outage",
            FaultKind::HandEdit => "hand-edit",
            FaultKind::Kill => "kill",
            FaultKind::KillMidAbort => "kill-mid-abort",
            FaultKind::LeaderChange => "leader-change",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    /// Share of all API requests that fail, and the share of those failing writes that were
    /// applied before the 500.
    pub api_errors: Option<(f64, f64)>,
    /// Every watch is cut this long after it opens.
    pub watch_cut_after: Option<Duration>,
    /// `(at, length)`: the server restarts (every watch dropped) and answers 500 to everything.
    pub outages: Vec<(Duration, Duration)>,
    pub hand_edits: Vec<(Duration, HandEdit)>,
    /// `(at, down)`: every controller process is killed, and started again `down` later.
    pub kills: Vec<(Duration, Duration)>,
    /// Kill the controllers the moment the rollout is seen aborting.
    pub kill_mid_abort: bool,
    /// `(at, graceful)`: the leader stops (releasing its lease when graceful, else killed) and
    /// the standby takes over. Two controller processes run when there is any.
    pub leader_changes: Vec<(Duration, bool)>,
}

impl FaultPlan {
    pub fn kinds(&self) -> Vec<FaultKind> {
        let mut kinds = Vec::new();
        let mut add = |on: bool, kind| {
            if on {
                kinds.push(kind);
            }
        };
        add(self.api_errors.is_some(), FaultKind::ApiErrors);
        add(self.watch_cut_after.is_some(), FaultKind::WatchCuts);
        add(!self.outages.is_empty(), FaultKind::Outage);
        add(!self.hand_edits.is_empty(), FaultKind::HandEdit);
        add(!self.kills.is_empty(), FaultKind::Kill);
        add(self.kill_mid_abort, FaultKind::KillMidAbort);
        add(!self.leader_changes.is_empty(), FaultKind::LeaderChange);
        kinds
    }
}

/// A hand edit of the rollout's router object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandEdit {
    /// Someone sets the canary's weight to 50 %.
    HalfToCanary,
    /// Someone deletes the router object and applies it again as first written (all traffic on
    /// stable); for NGINX, deletes the canary Ingress.
    Reapplied,
}

impl Scenario {
    pub fn draw(seed: u64) -> Scenario {
        let mut rng = fastrand::Rng::with_seed(seed);
        let replicas = rng.i64(1..=5);
        let analysis = match rng.u8(0..20) {
            0..=4 => Verdict::None,
            5..=11 => Verdict::Pass,
            12..=15 => Verdict::Fail,
            _ => Verdict::Error,
        };
        let strategy = if rng.u8(0..4) == 0 {
            Strategy::BlueGreen
        } else {
            let router = if rng.bool() {
                Router::Istio
            } else {
                Router::Nginx
            };
            let mut steps = Vec::new();
            for _ in 0..rng.usize(2..=4) {
                steps.push(Step::SetWeight(WEIGHTS[rng.usize(..WEIGHTS.len())]));
                if rng.u8(0..10) < 6 {
                    steps.push(Step::Pause);
                }
            }
            if analysis != Verdict::None {
                let at = rng.usize(1..=steps.len());
                steps.insert(at, Step::Analysis);
            }
            Strategy::Canary {
                router,
                steps,
                dynamic_stable_scale: rng.u8(0..10) < 3,
            }
        };
        let faults = draw_faults(&mut rng, &strategy, analysis);
        Scenario {
            seed,
            replicas,
            strategy,
            analysis,
            faults,
        }
    }

    /// Does a step lower the weight set before it?
    pub fn lowers_weight(&self) -> bool {
        let Strategy::Canary { steps, .. } = &self.strategy else {
            return false;
        };
        let weights: Vec<i64> = steps
            .iter()
            .filter_map(|s| match s {
                Step::SetWeight(w) => Some(*w),
                _ => None,
            })
            .collect();
        weights.windows(2).any(|pair| pair[1] < pair[0])
    }
}

fn at(rng: &mut fastrand::Rng) -> Duration {
    Duration::from_millis(rng.u64(0..FAULT_WINDOW.as_millis() as u64 - 1_000))
}

fn draw_faults(rng: &mut fastrand::Rng, strategy: &Strategy, analysis: Verdict) -> FaultPlan {
    let mut kinds: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|kind| match kind {
            FaultKind::HandEdit => matches!(strategy, Strategy::Canary { .. }),
            FaultKind::KillMidAbort => analysis.aborts(),
            _ => true,
        })
        .collect();
    let mut chosen: Vec<FaultKind> = kinds
        .iter()
        .copied()
        .filter(|_| rng.u8(0..10) < 3)
        .collect();
    if chosen.is_empty() {
        chosen.push(kinds.swap_remove(rng.usize(..kinds.len())));
    }
    let mut plan = FaultPlan::default();
    for kind in chosen {
        match kind {
            FaultKind::ApiErrors => {
                let rate = 0.05 + 0.25 * rng.f64();
                plan.api_errors = Some((rate, 0.5 * rng.f64()));
            }
            FaultKind::WatchCuts => {
                plan.watch_cut_after = Some(Duration::from_millis(rng.u64(1_000..5_000)));
            }
            FaultKind::Outage => {
                for _ in 0..rng.usize(1..=2) {
                    let length = Duration::from_millis(rng.u64(300..2_000));
                    plan.outages.push((at(rng), length));
                }
            }
            FaultKind::HandEdit => {
                for _ in 0..rng.usize(1..=2) {
                    let edit = if rng.bool() {
                        HandEdit::HalfToCanary
                    } else {
                        HandEdit::Reapplied
                    };
                    plan.hand_edits.push((at(rng), edit));
                }
            }
            FaultKind::Kill => {
                for _ in 0..rng.usize(1..=3) {
                    let down = Duration::from_millis(rng.u64(0..1_000));
                    plan.kills.push((at(rng), down));
                }
            }
            FaultKind::KillMidAbort => plan.kill_mid_abort = true,
            FaultKind::LeaderChange => {
                for _ in 0..rng.usize(1..=2) {
                    plan.leader_changes.push((at(rng), rng.bool()));
                }
            }
        }
    }
    plan
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {}: {} replicas, ", self.seed, self.replicas)?;
        match &self.strategy {
            Strategy::BlueGreen => write!(f, "blue-green")?,
            Strategy::Canary {
                router,
                steps,
                dynamic_stable_scale,
            } => {
                let steps: Vec<String> = steps
                    .iter()
                    .map(|s| match s {
                        Step::SetWeight(w) => format!("{w}"),
                        Step::Pause => "pause".to_owned(),
                        Step::Analysis => "analysis".to_owned(),
                    })
                    .collect();
                write!(
                    f,
                    "{router:?} canary [{}]{}",
                    steps.join(" "),
                    if *dynamic_stable_scale {
                        " dynamicStableScale"
                    } else {
                        ""
                    }
                )?;
            }
        }
        let kinds: Vec<&str> = self.faults.kinds().iter().map(|k| k.as_str()).collect();
        write!(
            f,
            ", analysis {}, faults {}",
            self.analysis.as_str(),
            kinds.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_run_every_time() {
        for seed in 0..50 {
            assert_eq!(Scenario::draw(seed), Scenario::draw(seed));
        }
    }

    #[test]
    fn the_first_thousand_seeds_cover_every_shape_and_fault() {
        let scenarios: Vec<Scenario> = (1..=1000).map(Scenario::draw).collect();
        for kind in FaultKind::ALL {
            let runs = scenarios
                .iter()
                .filter(|s| s.faults.kinds().contains(&kind))
                .count();
            assert!(runs >= 50, "{kind:?} in only {runs} runs");
        }
        for verdict in [Verdict::None, Verdict::Pass, Verdict::Fail, Verdict::Error] {
            assert!(scenarios.iter().any(|s| s.analysis == verdict));
        }
        let lowering = scenarios.iter().filter(|s| s.lowers_weight()).count();
        assert!(lowering >= 300, "only {lowering} runs lower a weight");
        for router in [Router::Istio, Router::Nginx] {
            assert!(scenarios.iter().any(
                |s| matches!(&s.strategy, Strategy::Canary { router: r, .. } if *r == router)
            ));
        }
        assert!(scenarios.iter().any(|s| s.strategy == Strategy::BlueGreen));
        assert!(scenarios.iter().all(|s| !s.faults.kinds().is_empty()));
    }
}
