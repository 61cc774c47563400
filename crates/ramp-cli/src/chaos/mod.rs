//! `ramp bench chaos`: randomized runs of Ramp's controllers against ramp-sim under faults,
//! each checked for the safety invariants of [`ramp_sim::invariants`] and for ending where it
//! must. A seed draws one run ([`scenario`]); [`driver`] carries it out. The report gives the
//! runs, the faults injected by kind and every violation with the seed that reproduces it.

use futures::StreamExt;
use scenario::{FaultKind, Scenario, Strategy};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod driver;
pub mod scenario;

#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// How many runs, with seeds from `--first-seed` on.
    #[arg(long, default_value_t = 100)]
    pub runs: u64,
    /// Seed of the first run.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Run exactly these seeds instead (comma-separated), to reproduce runs.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["runs", "first_seed"])]
    pub seeds: Vec<u64>,
    /// Runs carried out at once, each with its own ramp-sim and controllers.
    #[arg(long, default_value_t = 6)]
    pub lanes: usize,
    /// A run that has not ended this long after its new version was applied counts as a
    /// violation (it did not converge).
    #[arg(long, default_value_t = 90)]
    pub run_timeout_seconds: u64,
    /// Print each run's scenario and outcome as it ends.
    #[arg(long)]
    pub verbose: bool,
    /// Write the request log of every run that found a violation to `DIR/seed-<N>.log`, a
    /// write a line with the object it left.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<std::path::PathBuf>,
}

impl ChaosArgs {
    pub fn seeds(&self) -> Vec<u64> {
        if self.seeds.is_empty() {
            (self.first_seed..self.first_seed + self.runs).collect()
        } else {
            self.seeds.clone()
        }
    }
}

/// Everything a set of runs found.
#[derive(Debug, Default)]
pub struct Report {
    pub runs: u64,
    pub elapsed: Duration,
    /// Runs per shape: `canary Istio`, `blue-green`, `analysis fail`, `lowers a weight`...
    pub shapes: BTreeMap<String, u64>,
    /// Runs that drew each kind of fault.
    pub runs_with: BTreeMap<FaultKind, u64>,
    /// Faults injected, summed over the runs.
    pub injected: BTreeMap<&'static str, u64>,
    pub takeovers: u64,
    /// `(seed, scenario, violation)`.
    pub violations: Vec<(u64, String, String)>,
    /// Runs that could not be carried out: `(seed, why)`.
    pub broken: Vec<(u64, String)>,
}

impl Report {
    fn add(&mut self, scenario: &Scenario, outcome: anyhow::Result<driver::Outcome>) {
        self.runs += 1;
        let mut shape = |name: String| *self.shapes.entry(name).or_insert(0) += 1;
        match &scenario.strategy {
            Strategy::Canary { router, .. } => shape(format!("canary {router:?}")),
            Strategy::BlueGreen => shape("blue-green".to_owned()),
        }
        shape(format!("analysis {}", scenario.analysis.as_str()));
        if scenario.lowers_weight() {
            shape("a step lowers the weight".to_owned());
        }
        for kind in scenario.faults.kinds() {
            *self.runs_with.entry(kind).or_insert(0) += 1;
        }
        match outcome {
            Ok(outcome) => {
                for (kind, count) in outcome.injected {
                    *self.injected.entry(kind).or_insert(0) += count;
                }
                self.takeovers += outcome.takeovers;
                for violation in outcome.violations {
                    self.violations
                        .push((scenario.seed, scenario.to_string(), violation));
                }
            }
            Err(err) => self.broken.push((scenario.seed, format!("{err:#}"))),
        }
    }

    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.broken.is_empty()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "chaos: {} runs in {:.0} s",
            self.runs,
            self.elapsed.as_secs_f64()
        );
        let shapes: Vec<String> = self
            .shapes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "shapes: {}", shapes.join(", "));
        let _ = writeln!(
            out,
            "faults (runs that drew each kind, then what was injected):"
        );
        for kind in FaultKind::ALL {
            let runs = self.runs_with.get(&kind).copied().unwrap_or(0);
            let injected: Vec<String> = self
                .injected
                .iter()
                .filter(|(name, _)| name.split(':').next() == Some(kind.as_str()))
                .map(|(name, count)| format!("{name} {count}"))
                .collect();
            let extra = match kind {
                FaultKind::LeaderChange => {
                    format!(", lease takeovers in all runs {}", self.takeovers)
                }
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {:<15} {runs:>5} runs; {}{extra}",
                kind.as_str(),
                if injected.is_empty() {
                    "none injected".to_owned()
                } else {
                    injected.join(", ")
                }
            );
        }
        let _ = writeln!(out, "violations: {}", self.violations.len());
        for (seed, scenario, violation) in &self.violations {
            let _ = writeln!(out, "  seed {seed} ({scenario}): {violation}");
        }
        if !self.broken.is_empty() {
            let _ = writeln!(
                out,
                "runs that could not be carried out: {}",
                self.broken.len()
            );
            for (seed, why) in &self.broken {
                let _ = writeln!(out, "  seed {seed}: {why}");
            }
        }
        out
    }
}

/// Carries out the runs of `args` and reports; `--verbose` prints each run as it ends.
pub async fn run_all(args: &ChaosArgs) -> anyhow::Result<Report> {
    let endpoint = AnalysisEndpoint::start().await?;
    let url = endpoint.url();
    let started = Instant::now();
    let timeout = Duration::from_secs(args.run_timeout_seconds);
    let mut report = Report::default();
    let mut runs = futures::stream::iter(args.seeds())
        .map(|seed| {
            let url = url.clone();
            let log_dir = args.log_dir.clone();
            async move {
                let scenario = Scenario::draw(seed);
                let task_scenario = scenario.clone();
                let log_dir = log_dir.clone();
                let outcome = tokio::spawn(async move {
                    driver::run(&task_scenario, &url, timeout, log_dir.as_deref()).await
                })
                .await
                .unwrap_or_else(|err| Err(anyhow::anyhow!("the run panicked: {err}")));
                (scenario, outcome)
            }
        })
        .buffer_unordered(args.lanes.max(1));
    while let Some((scenario, outcome)) = runs.next().await {
        if args.verbose {
            let verdict = match &outcome {
                Ok(o) if o.violations.is_empty() => {
                    format!("ok in {:.1} s", o.elapsed.as_secs_f64())
                }
                Ok(o) => format!(
                    "{} violations: {}",
                    o.violations.len(),
                    o.violations.join("; ")
                ),
                Err(err) => format!("could not run: {err:#}"),
            };
            println!("{scenario}: {verdict}");
        }
        report.add(&scenario, outcome);
    }
    report.elapsed = started.elapsed();
    drop(endpoint);
    Ok(report)
}

/// `ramp bench chaos`.
pub fn run(args: &ChaosArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::controller::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run_all(args))?;
    print!("{}", report.render());
    Ok(if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// What the runs' analyses measure: `GET /pass` answers `{"ok": true}`, `/fail`
/// `{"ok": false}`, anything else a 500.
struct AnalysisEndpoint {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AnalysisEndpoint {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&request);
                    let path = head.split_whitespace().nth(1).unwrap_or_default();
                    let (status, body) = match path {
                        "/pass" | "/none" => ("200 OK", r#"{"ok": true}"#),
                        "/fail" => ("200 OK", r#"{"ok": false}"#),
                        _ => ("500 Internal Server Error", r#"{"error": "down"}"#),
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(AnalysisEndpoint { addr, task })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for AnalysisEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}
