//! Upstream's canary replica math (research doc §4): which weight applies, how a weight becomes
//! canary and stable pod counts with and without a traffic router, and the surge and
//! unavailability budgets. Pure integer arithmetic; the step machine decides when to apply it.

use ramp_api::rollout::{AbortScaleDown, CanaryStep, CanaryStrategy, RolloutBudget};

/// Spec and available pods of one ReplicaSet, the only facts the math needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pods {
    pub spec: i32,
    pub available: i32,
}

/// How big the canary should be: an explicit count (`setCanaryScale.replicas`) or a weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryScale {
    Replicas(i32),
    Weight(i32),
}

/// The rollout facts §4.1 looks at.
#[derive(Clone, Copy, Debug)]
pub struct WeightInputs<'a> {
    pub strategy: &'a CanaryStrategy,
    pub replicas: i32,
    pub promote_full: bool,
    /// A stable ReplicaSet exists and differs from the newest one.
    pub update_in_progress: bool,
    pub aborted: bool,
    pub current_step_index: Option<i32>,
    pub stable_available: i32,
}

/// `ceil(weight × replicas / max)`: pods needed to serve `weight` out of `max`.
pub fn traffic_weight_to_replicas(replicas: i32, weight: i32, max_weight: i32) -> i32 {
    if max_weight <= 0 {
        return 0;
    }
    let product = i64::from(replicas) * i64::from(weight);
    let pods = (product + i64::from(max_weight) - 1).div_euclid(i64::from(max_weight));
    i32::try_from(pods.max(0)).unwrap_or(i32::MAX)
}

/// Raises a non-zero count to `minPodsPerReplicaSet` (never above `replicas`).
pub fn with_min_pods(strategy: &CanaryStrategy, replicas: i32, count: i32) -> i32 {
    let floor = strategy.min_pods_per_replica_set().min(replicas);
    if count == 0 || floor <= 0 {
        count
    } else {
        count.max(floor)
    }
}

/// The step at `index`, if the update has not gone past the last one.
fn current_step(steps: &[CanaryStep], index: Option<i32>) -> Option<(usize, &CanaryStep)> {
    let index = usize::try_from(index.unwrap_or(0)).ok()?;
    steps.get(index).map(|s| (index, s))
}

/// The last `setWeight` at or before `index`, or 0 when none came yet (a leading pause keeps
/// the canary at zero pods).
pub fn set_weight_at(steps: &[CanaryStep], index: usize) -> i32 {
    steps
        .iter()
        .take(index + 1)
        .rev()
        .find_map(|s| s.set_weight)
        .unwrap_or(0)
}

/// The `setCanaryScale` in force at the current step, unless `matchTrafficWeight` cancelled it
/// or an abort with a scale-down delay ignores it.
fn canary_scale_override(input: &WeightInputs<'_>) -> Option<CanaryScale> {
    let strategy = input.strategy;
    strategy.traffic_routing.as_ref()?;
    let (index, _) = current_step(strategy.steps(), input.current_step_index)?;
    if input.aborted && strategy.abort_scale_down() != AbortScaleDown::Never {
        return None;
    }
    let scale = strategy.steps()[..=index]
        .iter()
        .rev()
        .find_map(|s| s.set_canary_scale.as_ref())?;
    if scale.match_traffic_weight.unwrap_or(false) {
        return None;
    }
    scale
        .replicas
        .map(CanaryScale::Replicas)
        .or(scale.weight.map(CanaryScale::Weight))
}

/// §4.1: the canary size the rollout wants right now.
pub fn desired_scale(input: &WeightInputs<'_>) -> CanaryScale {
    let strategy = input.strategy;
    let max = strategy.max_traffic_weight();
    if input.promote_full || !input.update_in_progress {
        return CanaryScale::Weight(max);
    }
    if let Some(scale) = canary_scale_override(input) {
        return scale;
    }
    if input.aborted && strategy.dynamic_stable_scale() && strategy.traffic_routing.is_some() {
        return CanaryScale::Weight(dynamic_abort_weight(input));
    }
    if input.aborted {
        return CanaryScale::Weight(0);
    }
    match current_step(strategy.steps(), input.current_step_index) {
        None => CanaryScale::Weight(max),
        Some((index, _)) => CanaryScale::Weight(set_weight_at(strategy.steps(), index)),
    }
}

/// Aborting with `dynamicStableScale`: traffic steps back down through the `setWeight` values
/// as stable pods come back, to the lowest one the available stable pods can already serve.
/// (Upstream's description of this walk, which also counts the canary's own pods as still
/// needed, never lets the weight drop while the canary is up; Ramp uses the stable's capacity.)
fn dynamic_abort_weight(input: &WeightInputs<'_>) -> i32 {
    let strategy = input.strategy;
    let max = strategy.max_traffic_weight();
    let stable_serves = |w: i32| {
        let needed = i64::from(max - w) * i64::from(input.replicas) / i64::from(max.max(1));
        i64::from(input.stable_available) >= needed
    };
    let mut candidates: Vec<i32> = strategy
        .steps()
        .iter()
        .filter_map(|s| s.set_weight)
        .collect();
    candidates.push(0);
    candidates.sort_unstable();
    candidates
        .into_iter()
        .find(|w| stable_serves(*w))
        .unwrap_or(max)
}

/// Upstream's `approximateWeightedCanaryStableReplicaCounts`: the (canary, stable) split whose
/// replica ratio is closest to `weight`, allowing one surge pod when `max_surge > 0`.
pub fn approximate_weighted_counts(
    replicas: i32,
    weight: i32,
    max_weight: i32,
    max_surge: i32,
) -> (i32, i32) {
    if replicas <= 0 || max_weight <= 0 {
        return (0, 0);
    }
    let product = i64::from(replicas) * i64::from(weight);
    let max = i64::from(max_weight);
    let ceil = i32::try_from((product + max - 1).div_euclid(max)).unwrap_or(replicas);
    let floor = i32::try_from(product.div_euclid(max)).unwrap_or(replicas);
    // Equidistant from floor and ceiling: only the ceiling is a candidate.
    let tied = 2 * product.rem_euclid(max) == max;
    let zero_allowed = weight == max_weight || weight == 0 || (replicas == 1 && max_surge == 0);
    let floor_ok = !tied && (floor != 0 || zero_allowed);
    let mut options = Vec::with_capacity(4);
    if ceil < replicas || zero_allowed {
        options.push((ceil, replicas));
    }
    if floor_ok {
        options.push((floor, replicas));
    }
    if max_surge > 0 {
        options.push((ceil, replicas + 1));
        if floor_ok {
            options.push((floor, replicas + 1));
        }
    }
    let delta = |(canary, total): (i32, i32)| {
        (f64::from(canary) / f64::from(total) * f64::from(max_weight) - f64::from(weight)).abs()
    };
    let mut best = match options.first() {
        Some(first) => *first,
        None => return (0, replicas),
    };
    for option in options.into_iter().skip(1) {
        if delta(option) < delta(best) {
            best = option;
        }
    }
    (best.0, best.1 - best.0)
}

/// Pods of an RS that may count toward availability when deciding how much can shrink:
/// surplus available pods above spec are about to go, so spec caps them.
fn replicas_for_scale_down(rs: Option<Pods>, ignore_availability: bool) -> i32 {
    match rs {
        None => 0,
        Some(rs) if rs.spec < rs.available || ignore_availability => rs.spec,
        Some(rs) => rs.available,
    }
}

/// Brings the two ReplicaSets within `max_allowed` pods: `adjust` gives up the excess, except
/// for the available pods `min_available` still needs, which `drain` gives up instead (its
/// availability was not counted). Returns the (drain, adjust) counts.
fn adjust_within_limits(
    drain: Option<Pods>,
    adjust: Option<Pods>,
    drain_count: i32,
    adjust_count: i32,
    max_allowed: i32,
    min_available: i32,
) -> (i32, i32) {
    let Some(adjust) = adjust else {
        return (drain_count, adjust_count);
    };
    let over = (drain_count + adjust_count - max_allowed).max(0);
    let mut adjusted = adjust_count - over;
    let available =
        drain.map_or(0, |d| d.available.min(drain_count)) + adjust.available.min(adjusted);
    let available_given_up = (adjust.available - adjusted).max(0);
    let missing = (min_available - available).max(0);
    adjusted += available_given_up.min(missing);
    let still_over = (drain_count + adjusted - max_allowed).max(0);
    ((drain_count - still_over).max(0), adjusted.max(0))
}

/// Everything the basic (no traffic router) canary sizing looks at.
#[derive(Clone, Copy, Debug)]
pub struct BasicCanaryInput {
    pub replicas: i32,
    pub weight: i32,
    pub max_weight: i32,
    pub budget: RolloutBudget,
    pub canary: Option<Pods>,
    pub stable: Option<Pods>,
    /// Sum of `spec.replicas` of every other (older) ReplicaSet.
    pub others_spec: i32,
}

/// §4.2: (canary, stable) spec replicas for a canary without traffic routing.
pub fn basic_canary_counts(input: &BasicCanaryInput) -> (i32, i32) {
    let r = input.replicas;
    let surge = input.budget.max_surge;
    let (desired_canary, desired_stable) =
        approximate_weighted_counts(r, input.weight, input.max_weight, surge);
    let Some(stable) = input.stable else {
        return (r, 0);
    };
    let mut canary_count = input.canary.map_or(0, |c| c.spec);
    let mut stable_count = stable.spec;
    let max_allowed = r + surge;
    let total = input.others_spec + canary_count + stable_count;
    let mut scale_up = max_allowed - total;
    if scale_up > 0 {
        // Surge pods go to the stable first: it must be whole before the canary grows.
        if desired_stable > stable_count {
            let grown = (stable_count + scale_up).min(desired_stable);
            scale_up -= grown - stable_count;
            stable_count = grown;
        }
        if input.canary.is_some() && desired_canary > canary_count && scale_up > 0 {
            canary_count = (canary_count + scale_up).min(desired_canary);
        }
    }
    if input.others_spec > 0 {
        return (canary_count, stable_count);
    }
    let min_available = r - input.budget.max_unavailable;
    let increasing = input.canary.is_none_or(|c| desired_canary >= c.spec);
    let to_scale_down = replicas_for_scale_down(input.canary, !increasing)
        + replicas_for_scale_down(Some(stable), increasing);
    if to_scale_down <= min_available {
        return (canary_count, stable_count);
    }
    let scale_down = to_scale_down - min_available;
    let shrink = |rs: Option<Pods>, desired: i32, current: i32| match rs {
        Some(rs) if rs.spec > desired => desired.max(current - scale_down),
        _ => current,
    };
    if increasing {
        stable_count = shrink(Some(stable), desired_stable, stable_count);
        (stable_count, canary_count) = adjust_within_limits(
            Some(stable),
            input.canary,
            stable_count,
            canary_count,
            max_allowed,
            min_available,
        );
    } else {
        canary_count = shrink(input.canary, desired_canary, canary_count);
        (canary_count, stable_count) = adjust_within_limits(
            input.canary,
            Some(stable),
            canary_count,
            stable_count,
            max_allowed,
            min_available,
        );
    }
    (canary_count, stable_count)
}

/// Weights last written to the router, as recorded in `status.canary.weights`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenWeights {
    pub canary: i32,
    pub stable: i32,
}

/// §4.3: (canary, stable) spec replicas for a traffic-routed canary.
pub fn traffic_routed_counts(
    strategy: &CanaryStrategy,
    replicas: i32,
    scale: CanaryScale,
    aborted: bool,
    written: Option<WrittenWeights>,
) -> (i32, i32) {
    let max = strategy.max_traffic_weight();
    let (mut canary, weight) = match scale {
        CanaryScale::Replicas(count) => (count, 0),
        CanaryScale::Weight(weight) => (
            with_min_pods(
                strategy,
                replicas,
                traffic_weight_to_replicas(replicas, weight, max),
            ),
            weight,
        ),
    };
    if !strategy.dynamic_stable_scale() {
        return (canary, replicas);
    }
    // The stable shrinks only after traffic left it, and grows before traffic returns; on
    // abort it comes back whole at once, since everything is heading its way.
    let mut stable = if aborted {
        replicas
    } else {
        traffic_weight_to_replicas(replicas, max - weight, max)
    };
    if let Some(written) = written {
        stable = stable.max(traffic_weight_to_replicas(replicas, written.stable, max));
        if aborted {
            let serving = traffic_weight_to_replicas(replicas, written.canary, max);
            canary = with_min_pods(strategy, replicas, canary.max(serving));
        }
    }
    (canary, with_min_pods(strategy, replicas, stable))
}

#[cfg(test)]
#[path = "replicas_tests.rs"]
mod tests;
