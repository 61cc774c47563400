//! Meters the split load: every tick adds each flow's requests (expected counts accumulated
//! exactly and exposed as their integer part, so shares are exact to one request) to the
//! Istio and ingress-nginx series and to per-version totals. Pure: the caller owns the clock.

use std::collections::{BTreeMap, HashMap};

use super::model::{Behaviour, LatencyModel};
use super::split::{Exporter, Outcome, Split, Version, VersionKey};

/// Istio's default request-duration buckets, in milliseconds.
pub const ISTIO_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// ingress-nginx's default request-duration buckets (Prometheus' defaults), in seconds.
pub const NGINX_BUCKETS_S: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A proxy's own answer when there is no ready upstream: immediate.
const NO_UPSTREAM_LATENCY_MS: f64 = 0.2;

/// Label names and values of one series, in exposition order.
pub type Labels = Vec<(&'static str, String)>;

/// A histogram series: exact count and sum, and the expected cumulative count per bucket
/// (exposed rounded down, so buckets stay cumulative and never exceed the count).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub count: u64,
    pub sum: f64,
    pub cumulative: Vec<f64>,
}

impl Histogram {
    fn record(
        &mut self,
        n: u64,
        latency: &LatencyModel,
        bounds_ms: impl Iterator<Item = f64>,
        scale: f64,
    ) {
        let n_f = n as f64;
        self.count += n;
        self.sum += n_f * latency.mean_ms() * scale;
        for (i, bound_ms) in bounds_ms.enumerate() {
            if self.cumulative.len() <= i {
                self.cumulative.push(0.0);
            }
            self.cumulative[i] += n_f * latency.cdf(bound_ms);
        }
    }

    /// The exposed cumulative count of bucket `i`.
    pub fn bucket(&self, i: usize) -> u64 {
        let expected = self.cumulative.get(i).copied().unwrap_or(0.0);
        ((expected + 1e-6).floor() as u64).min(self.count)
    }
}

/// Requests a version received since the simulator started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionTotals {
    pub requests: u64,
    pub errors: u64,
    /// Of `requests`/`errors`: 503s because the version had no ready pod.
    pub unavailable: u64,
    /// Shadow copies received from mirror routes (not in `requests`).
    pub mirrored: u64,
}

#[derive(Clone, Debug, Default)]
struct FlowTotals {
    ok_expected: f64,
    errors_expected: f64,
    ok: u64,
    errors: u64,
    /// The series (indexes into the exporter's family) each response code of this flow
    /// counts in, built once: labels are the same on every tick.
    series: Vec<(u16, Vec<usize>)>,
}

/// One labelled request counter with its duration histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub requests: u64,
    pub duration: Histogram,
}

/// The series of one exporter (Istio or ingress-nginx).
#[derive(Clone, Debug, Default)]
pub struct Family {
    index: HashMap<Labels, usize>,
    series: Vec<Series>,
}

impl Family {
    fn slot(&mut self, labels: Labels) -> usize {
        if let Some(i) = self.index.get(&labels) {
            return *i;
        }
        let i = self.series.len();
        self.index.insert(labels.clone(), i);
        self.series.push(Series {
            labels,
            ..Series::default()
        });
        i
    }

    /// Adds a finished series (for building expositions directly).
    #[cfg(test)]
    pub fn insert(&mut self, series: Series) {
        let i = self.slot(series.labels.clone());
        self.series[i] = series;
    }

    /// The series in label order.
    pub fn sorted(&self) -> Vec<&Series> {
        let mut all: Vec<&Series> = self.series.iter().collect();
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        all
    }
}

/// All metered series and totals.
#[derive(Clone, Debug, Default)]
pub struct Meter {
    flows: HashMap<(Exporter, Outcome), FlowTotals>,
    pub istio: Family,
    pub nginx: Family,
    pub versions: BTreeMap<VersionKey, (Version, VersionTotals)>,
}

impl Meter {
    /// Adds `seconds` of the load split as `split`.
    pub fn advance(&mut self, split: &Split, seconds: f64) {
        // Versions that are gone keep their totals but have no pods any more.
        for (key, (version, _)) in self.versions.iter_mut() {
            if !split.versions.contains_key(key) {
                version.ready_pods = 0;
            }
        }
        for (key, version) in &split.versions {
            let entry = self
                .versions
                .entry(key.clone())
                .or_insert_with(|| (version.clone(), VersionTotals::default()));
            entry.0 = version.clone();
        }
        for ((exporter, outcome), rps) in &split.flows {
            let behaviour = match outcome {
                Outcome::Served(v) | Outcome::Mirrored(v) => {
                    split.versions.get(v).map(|v| v.behaviour)
                }
                Outcome::NoUpstream(_) => None,
            }
            .unwrap_or(Behaviour {
                error_rate: 1.0,
                error_code: 503,
                latency: LatencyModel::constant(NO_UPSTREAM_LATENCY_MS),
            });
            let totals = self
                .flows
                .entry((exporter.clone(), outcome.clone()))
                .or_default();
            let requests = rps * seconds;
            totals.ok_expected += requests * (1.0 - behaviour.error_rate);
            totals.errors_expected += requests * behaviour.error_rate;
            let ok = (totals.ok_expected + 1e-9).floor() as u64;
            let errors = (totals.errors_expected + 1e-9).floor() as u64;
            let new_ok = ok.saturating_sub(totals.ok);
            let new_errors = errors.saturating_sub(totals.errors);
            totals.ok = totals.ok.max(ok);
            totals.errors = totals.errors.max(errors);
            let version = match outcome {
                Outcome::Served(v) | Outcome::Mirrored(v) => split.versions.get(v),
                Outcome::NoUpstream(_) => None,
            };
            for (n, code) in [(new_ok, 200), (new_errors, behaviour.error_code)] {
                if n == 0 {
                    continue;
                }
                let family = match exporter {
                    Exporter::Istio { .. } => &mut self.istio,
                    Exporter::Nginx { .. } => &mut self.nginx,
                };
                let slots = match totals.series.iter().find(|(c, _)| *c == code) {
                    Some((_, slots)) => slots.clone(),
                    None => {
                        let slots: Vec<usize> = series_labels(exporter, outcome, version, code)
                            .into_iter()
                            .map(|labels| family.slot(labels))
                            .collect();
                        totals.series.push((code, slots.clone()));
                        slots
                    }
                };
                for slot in slots {
                    if let Some(series) = family.series.get_mut(slot) {
                        series.requests += n;
                        match exporter {
                            Exporter::Istio { .. } => series.duration.record(
                                n,
                                &behaviour.latency,
                                ISTIO_BUCKETS_MS.into_iter(),
                                1.0,
                            ),
                            Exporter::Nginx { .. } => series.duration.record(
                                n,
                                &behaviour.latency,
                                NGINX_BUCKETS_S.iter().map(|s| s * 1000.0),
                                0.001,
                            ),
                        }
                    }
                }
            }
            let version_key = match outcome {
                Outcome::Served(v) | Outcome::Mirrored(v) | Outcome::NoUpstream(Some(v)) => Some(v),
                Outcome::NoUpstream(None) => None,
            };
            if let Some((_, t)) = version_key.and_then(|v| self.versions.get_mut(v)) {
                match outcome {
                    Outcome::Served(_) => {
                        t.requests += new_ok + new_errors;
                        t.errors += new_errors;
                    }
                    Outcome::Mirrored(_) => t.mirrored += new_ok + new_errors,
                    Outcome::NoUpstream(_) => {
                        t.requests += new_ok + new_errors;
                        t.errors += new_ok + new_errors;
                        t.unavailable += new_ok + new_errors;
                    }
                }
            }
        }
    }
}

/// The label sets a flow's responses with `code` are counted under (Istio: one per reporter).
fn series_labels(
    exporter: &Exporter,
    outcome: &Outcome,
    version: Option<&Version>,
    code: u16,
) -> Vec<Labels> {
    match exporter {
        Exporter::Istio {
            service,
            service_namespace,
            source_namespace,
        } => {
            let reporters: &[&str] = match outcome {
                Outcome::Served(_) => &["source", "destination"],
                Outcome::Mirrored(_) => &["destination"],
                Outcome::NoUpstream(_) => &["source"],
            };
            let destination_namespace = match outcome {
                Outcome::NoUpstream(_) => "unknown",
                _ => service_namespace.as_str(),
            };
            reporters
                .iter()
                .map(|reporter| {
                    let unknown = || "unknown".to_string();
                    let labels: Labels = vec![
                        ("reporter", reporter.to_string()),
                        ("source_workload", "loadgenerator".into()),
                        ("source_workload_namespace", source_namespace.clone()),
                        ("source_principal", unknown()),
                        ("source_app", "loadgenerator".into()),
                        ("source_version", unknown()),
                        ("source_cluster", "Kubernetes".into()),
                        ("source_canonical_service", "loadgenerator".into()),
                        ("source_canonical_revision", "latest".into()),
                        (
                            "destination_workload",
                            version.map_or_else(unknown, |v| v.workload.clone()),
                        ),
                        (
                            "destination_workload_namespace",
                            destination_namespace.to_string(),
                        ),
                        ("destination_principal", unknown()),
                        (
                            "destination_app",
                            version.map_or_else(unknown, |v| v.app.clone()),
                        ),
                        (
                            "destination_version",
                            version.map_or_else(unknown, |v| v.version_label.clone()),
                        ),
                        (
                            "destination_service",
                            format!("{service}.{service_namespace}.svc.cluster.local"),
                        ),
                        ("destination_service_name", service.clone()),
                        ("destination_service_namespace", service_namespace.clone()),
                        ("destination_cluster", "Kubernetes".into()),
                        (
                            "destination_canonical_service",
                            version.map_or_else(unknown, |v| v.canonical_service.clone()),
                        ),
                        (
                            "destination_canonical_revision",
                            version
                                .map_or_else(|| "latest".into(), |v| v.canonical_revision.clone()),
                        ),
                        ("request_protocol", "http".into()),
                        ("response_code", code.to_string()),
                        ("grpc_response_status", String::new()),
                        (
                            "response_flags",
                            if matches!(outcome, Outcome::NoUpstream(_)) {
                                "UH".into()
                            } else {
                                "-".into()
                            },
                        ),
                        (
                            "connection_security_policy",
                            if *reporter == "destination" {
                                "none".into()
                            } else {
                                unknown()
                            },
                        ),
                    ];
                    labels
                })
                .collect()
        }
        Exporter::Nginx {
            ingress,
            namespace,
            service,
            canary,
            host,
            path,
        } => {
            let labels: Labels = vec![
                ("canary", canary.clone()),
                ("controller_class", "k8s.io/ingress-nginx".into()),
                ("controller_namespace", "ingress-nginx".into()),
                ("controller_pod", "ingress-nginx-controller-sim".into()),
                ("host", host.clone()),
                ("ingress", ingress.clone()),
                ("method", "GET".into()),
                ("namespace", namespace.clone()),
                ("path", path.clone()),
                ("service", service.clone()),
                ("status", code.to_string()),
            ];
            vec![labels]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(error_rate: f64) -> Version {
        Version {
            pod_template_hash: Some("abc".into()),
            workload: "web".into(),
            app: "web".into(),
            version_label: "unknown".into(),
            canonical_service: "web".into(),
            canonical_revision: "latest".into(),
            behaviour: Behaviour {
                error_rate,
                error_code: 500,
                latency: LatencyModel::from_p50_p95(100.0, 400.0),
            },
            ready_pods: 1,
        }
    }

    #[test]
    fn counts_are_exact_shares_of_the_rate() {
        let key = VersionKey {
            namespace: "ns".into(),
            owner: "web-abc".into(),
        };
        let exporter = Exporter::Istio {
            service: "web".into(),
            service_namespace: "ns".into(),
            source_namespace: "ns".into(),
        };
        let split = Split {
            flows: BTreeMap::from([((exporter, Outcome::Served(key.clone())), 30.0)]),
            versions: BTreeMap::from([(key.clone(), version(0.1))]),
        };
        let mut meter = Meter::default();
        for _ in 0..100 {
            meter.advance(&split, 0.1);
        }
        let totals = &meter.versions[&key].1;
        assert_eq!(totals.requests, 300);
        assert_eq!(totals.errors, 30);
        let destination: u64 = meter
            .istio
            .sorted()
            .iter()
            .filter(|s| s.labels.contains(&("reporter", "destination".into())))
            .map(|s| s.requests)
            .sum();
        assert_eq!(destination, 300);
        for histogram in meter.istio.sorted().iter().map(|s| &s.duration) {
            let buckets: Vec<u64> = (0..ISTIO_BUCKETS_MS.len())
                .map(|i| histogram.bucket(i))
                .collect();
            assert!(
                buckets.windows(2).all(|w| w[0] <= w[1]),
                "cumulative: {buckets:?}"
            );
            assert_eq!(buckets.last().copied(), Some(histogram.count));
            let at_100ms = histogram.bucket(6) as f64 / histogram.count as f64;
            assert!(
                (at_100ms - 0.5).abs() < 0.02,
                "half the requests within the median: {at_100ms}"
            );
        }
    }
}
