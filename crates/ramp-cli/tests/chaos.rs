//! The chaos suite's fixed sample for CI: for each kind of fault, the first seed that draws it,
//! plus the first seeds of each rollout shape the others miss, run as `ramp bench chaos` runs
//! them (ramp-sim, the controllers in-process) and checked for every invariant. The full
//! figure comes from `ramp bench chaos --runs 1000`, not from here.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use ramp_cli::chaos::scenario::{FaultKind, Router, Scenario, Strategy, Verdict};
use ramp_cli::chaos::{ChaosArgs, run_all};
use std::collections::BTreeSet;

/// The first seed whose scenario satisfies `wanted`.
fn first_seed(wanted: impl Fn(&Scenario) -> bool) -> u64 {
    (1..10_000)
        .find(|seed| wanted(&Scenario::draw(*seed)))
        .expect("some seed draws it")
}

fn sample() -> BTreeSet<u64> {
    let mut seeds = BTreeSet::new();
    for kind in FaultKind::ALL {
        seeds.insert(first_seed(|s| s.faults.kinds().contains(&kind)));
    }
    let covered = |seeds: &BTreeSet<u64>, wanted: &dyn Fn(&Scenario) -> bool| {
        seeds.iter().any(|seed| wanted(&Scenario::draw(*seed)))
    };
    let shapes: [&dyn Fn(&Scenario) -> bool; 8] = [
        &|s| s.strategy == Strategy::BlueGreen,
        &|s| {
            matches!(
                s.strategy,
                Strategy::Canary {
                    router: Router::Istio,
                    ..
                }
            )
        },
        &|s| {
            matches!(
                s.strategy,
                Strategy::Canary {
                    router: Router::Nginx,
                    ..
                }
            )
        },
        &|s| s.lowers_weight(),
        &|s| s.analysis == Verdict::Pass,
        &|s| s.analysis == Verdict::Fail,
        &|s| s.analysis == Verdict::Error,
        &|s| {
            matches!(
                s.strategy,
                Strategy::Canary {
                    dynamic_stable_scale: true,
                    ..
                }
            )
        },
    ];
    for shape in shapes {
        if !covered(&seeds, shape) {
            seeds.insert(first_seed(shape));
        }
    }
    seeds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fixed_sample_of_seeds_covering_every_fault_breaks_no_invariant() {
    ramp_cli::controller::install_crypto_provider();
    let seeds: Vec<u64> = sample().into_iter().collect();
    let args = ChaosArgs {
        runs: 0,
        first_seed: 0,
        seeds: seeds.clone(),
        lanes: 4,
        run_timeout_seconds: 90,
        verbose: true,
        log_dir: None,
    };
    let report = run_all(&args).await.unwrap();
    let text = report.render();
    println!("seeds {seeds:?}\n{text}");
    assert!(report.passed(), "{text}");
    assert_eq!(report.runs, seeds.len() as u64);
    for kind in FaultKind::ALL {
        let injected: u64 = report
            .injected
            .iter()
            .filter(|(name, _)| name.split(':').next() == Some(kind.as_str()))
            .map(|(_, count)| count)
            .sum();
        assert!(injected > 0, "no {} was injected:\n{text}", kind.as_str());
    }
}
