//! The demo's SLO gate: a success-rate AnalysisTemplate the canary must pass at its first step.
//! Measured by a private Prometheus scraping the traffic simulator's Istio metrics when a
//! `prometheus` binary is at hand, else by the web provider reading its per-version JSON report,
//! so the demo runs anywhere. Also renders the newest run's measurements for the live view.

use super::{CANARY, ROLLOUT};
use anyhow::Context;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use ramp_api::analysis::{AnalysisRun, AnalysisTemplate};
use ramp_sim::prometheus::{Prometheus, find_binary};
use serde_json::{Value, json};
use std::time::Duration;

pub const TEMPLATE: &str = "demo-success-rate";

/// The user's choice of measurement.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Prometheus when a `prometheus` binary is found, the web provider otherwise.
    Auto,
    Prometheus,
    Web,
}

/// Where the gate reads its numbers.
pub enum Source {
    /// A private Prometheus (kept running while the demo runs).
    Prometheus(Prometheus),
    /// The traffic simulator's `/api/v1/versions` report at this base URL.
    Web(String),
}

impl Source {
    /// Prometheus when asked or (for `Auto`) when the binary exists, the web report otherwise;
    /// both read the traffic simulator serving `metrics_url`.
    pub async fn start(metrics_url: Option<String>, measure: Measure) -> anyhow::Result<Self> {
        let metrics = metrics_url.context("the traffic simulator is not running")?;
        let prometheus = match measure {
            Measure::Auto => find_binary().is_some(),
            Measure::Prometheus => true,
            Measure::Web => false,
        };
        if prometheus {
            let prometheus = Prometheus::start(&[metrics], Duration::from_secs(1))
                .await
                .map_err(anyhow::Error::msg)
                .context("cannot start Prometheus")?;
            prometheus
                .wait_for_targets(Duration::from_secs(20))
                .await
                .map_err(anyhow::Error::msg)?;
            return Ok(Self::Prometheus(prometheus));
        }
        let base = metrics.trim_end_matches("/metrics").to_owned();
        Ok(Self::Web(base))
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Prometheus(p) => {
                format!("Prometheus at {} scraping the traffic simulator", p.url())
            }
            Self::Web(base) => {
                format!("the web provider reads {base}/api/v1/versions")
            }
        }
    }

    /// The template: 3 measurements a second apart, any failure fails the run.
    fn template(&self) -> Value {
        let (metric, args) = match self {
            Self::Prometheus(prometheus) => (
                json!({
                    "name": "success-rate",
                    "initialDelay": "3s",
                    "interval": "1s",
                    "count": 3,
                    "failureLimit": 0,
                    "successCondition": "result[0] >= 0.95",
                    "provider": {"prometheus": {
                        "address": prometheus.url(),
                        "query": format!(
                            "sum(rate(istio_requests_total{{reporter=\"destination\",destination_service_name=\"{CANARY}\",response_code!~\"5.*\"}}[10s])) / sum(rate(istio_requests_total{{reporter=\"destination\",destination_service_name=\"{CANARY}\"}}[10s]))"
                        )
                    }}
                }),
                json!([]),
            ),
            Self::Web(base) => (
                json!({
                    "name": "success-rate",
                    "interval": "1s",
                    "count": 3,
                    "failureLimit": 0,
                    "successCondition": "result <= 0.05",
                    "provider": {"web": {
                        "url": format!("{base}/api/v1/versions?podTemplateHash={{{{args.canary-hash}}}}"),
                        "jsonPath": "{$.versions[0].errorRate}"
                    }}
                }),
                json!([{"name": "canary-hash"}]),
            ),
        };
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": TEMPLATE},
            "spec": {"args": args, "metrics": [metric]}
        })
    }

    pub async fn install(&self, client: &Client) -> anyhow::Result<()> {
        let template: AnalysisTemplate = serde_json::from_value(self.template())?;
        Api::<AnalysisTemplate>::default_namespaced(client.clone())
            .create(&PostParams::default(), &template)
            .await
            .context("cannot create the AnalysisTemplate")?;
        Ok(())
    }
}

/// The rollout's analysis step (the web template reads the canary's hash from it).
pub fn step() -> Value {
    json!({"analysis": {
        "templates": [{"templateName": TEMPLATE}],
        "args": [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]
    }})
}

/// The newest AnalysisRun of the demo rollout and its measurements, one line.
pub async fn newest_run(client: &Client) -> anyhow::Result<Option<String>> {
    let runs = Api::<AnalysisRun>::default_namespaced(client.clone())
        .list(&ListParams::default().labels(&format!("app={ROLLOUT}")))
        .await
        .context("cannot list AnalysisRuns")?;
    let Some(run) = runs
        .items
        .iter()
        .max_by_key(|r| r.metadata.creation_timestamp.as_ref().map(|t| t.0))
    else {
        return Ok(None);
    };
    let status = run.status.clone().unwrap_or_default();
    let measurements: Vec<String> = status
        .metric_results
        .iter()
        .flatten()
        .flat_map(|result| result.measurements.iter().flatten())
        .map(|m| {
            format!(
                "{}={}",
                m.phase,
                m.value
                    .as_deref()
                    .unwrap_or(m.message.as_deref().unwrap_or("-"))
            )
        })
        .collect();
    let phase = if status.phase.is_empty() {
        "Pending"
    } else {
        status.phase.as_str()
    };
    Ok(Some(format!(
        "analysis {} {phase}: [{}]",
        run.metadata.name.as_deref().unwrap_or_default(),
        measurements.join(", ")
    )))
}
