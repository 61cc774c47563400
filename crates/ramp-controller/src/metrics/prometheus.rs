//! The Prometheus provider: an instant or range PromQL query whose answer becomes `result` as
//! upstream maps it — a scalar is a number, a vector a list with one number per series, a
//! matrix a flat list of every sample; NaN and ±Inf are kept.

use super::http::{self, error_chain};
use super::{MeasureContext, MetricProvider, errored, judged};
use k8s_openapi::jiff::Timestamp;
use prometheus_http_query::response::Data;
use prometheus_http_query::{Client, reqwest};
use ramp_api::analysis::{Measurement, Metric, PrometheusMetric};
use ramp_core::analysis::MetricValue;
use ramp_core::analysis::args::ResolvedArgs;
use ramp_core::analysis::condition::evaluate_time;
use std::collections::BTreeMap;

/// Key of the metric metadata holding the query as sent (secrets redacted).
pub const RESOLVED_QUERY_METADATA: &str = "ResolvedPrometheusQuery";

/// Queries Prometheus; `default_address` serves metrics that name no `address`.
#[derive(Clone, Debug, Default)]
pub struct PrometheusProvider {
    default_address: Option<String>,
}

impl PrometheusProvider {
    pub fn new(default_address: Option<String>) -> Self {
        Self {
            default_address: default_address.filter(|a| !a.is_empty()),
        }
    }

    async fn query(&self, spec: &PrometheusMetric, now: Timestamp) -> Result<MetricValue, String> {
        let address = spec
            .address
            .as_deref()
            .filter(|a| !a.is_empty())
            .or(self.default_address.as_deref())
            .ok_or("no Prometheus address: set provider.prometheus.address or the controller's default address")?;
        let query = spec
            .query
            .as_deref()
            .filter(|q| !q.is_empty())
            .ok_or("provider.prometheus.query is empty")?;
        // A zero timeout would fail every request at once; upstream treats it as unset.
        let timeout = match spec.timeout_seconds() {
            t if t > 0 => t,
            _ => ramp_api::defaults::PROMETHEUS_TIMEOUT_SECONDS,
        };
        let client = http::client(http::seconds(timeout), spec.insecure == Some(true))?;
        let authorization = http::authorization(&client, spec.authentication.as_ref()).await?;
        let prometheus = Client::from(client, address)
            .map_err(|e| format!("invalid Prometheus address {address:?}: {e}"))?;
        let mut headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)> =
            Vec::new();
        for header in spec.headers.iter().flatten() {
            headers.push(header_pair(&header.key, &header.value)?);
        }
        if let Some(value) = authorization {
            headers.push(header_pair("Authorization", &value)?);
        }
        let response = match &spec.range_query {
            None => {
                let mut request = prometheus.query(query);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                request.get().await
            }
            Some(range) => {
                let now_seconds = now.as_duration().as_secs_f64();
                let start = time_bound("rangeQuery.start", range.start.as_deref(), now_seconds)?;
                let end = time_bound("rangeQuery.end", range.end.as_deref(), now_seconds)?;
                let step = range
                    .step
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .ok_or("rangeQuery.step is required")
                    .and_then(|s| {
                        ramp_api::duration::parse(s)
                            .map_err(|_| "rangeQuery.step is not a duration")
                    })?;
                let mut request = prometheus.query_range(query, start, end, step.as_secs_f64());
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                request.get().await
            }
        };
        let result = response.map_err(|e| {
            format!(
                "Prometheus query {query:?} at {address}: {}",
                error_chain(&e)
            )
        })?;
        Ok(match result.data() {
            Data::Scalar(sample) => MetricValue::Number(sample.value()),
            Data::Vector(series) => MetricValue::numbers(series.iter().map(|s| s.sample().value())),
            Data::Matrix(series) => MetricValue::numbers(
                series
                    .iter()
                    .flat_map(|s| s.samples().iter().map(|sample| sample.value())),
            ),
        })
    }
}

fn header_pair(
    key: &str,
    value: &str,
) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue), String> {
    let name = reqwest::header::HeaderName::from_bytes(key.as_bytes())
        .map_err(|_| format!("header {key:?} is not a valid header name"))?;
    // The value is never echoed: it may hold a secret.
    let value = reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("header {key:?} has a value that is not a valid header value"))?;
    Ok((name, value))
}

/// A range bound in whole seconds since the epoch, from a time expression.
fn time_bound(field: &str, expr: Option<&str>, now_seconds: f64) -> Result<i64, String> {
    let expr = expr
        .filter(|e| !e.is_empty())
        .ok_or_else(|| format!("{field} is required"))?;
    let seconds = evaluate_time(expr, now_seconds).map_err(|e| format!("{field}: {e}"))?;
    #[allow(clippy::cast_possible_truncation)]
    Ok(seconds.floor() as i64)
}

impl MetricProvider for PrometheusProvider {
    async fn measure(&self, metric: &Metric, ctx: &MeasureContext<'_>) -> Measurement {
        // The reconcile instant, so a run driven on its schedule records the scheduled time.
        let started = ctx.now;
        let Some(spec) = metric.provider.prometheus.as_ref() else {
            return errored("the metric has no prometheus provider", started, ctx);
        };
        match self.query(spec, ctx.now).await {
            Ok(value) => judged(metric, &value, started, ctx),
            Err(message) => errored(&message, started, ctx),
        }
    }

    fn metric_metadata(&self, metric: &Metric, args: &ResolvedArgs) -> BTreeMap<String, String> {
        metric
            .provider
            .prometheus
            .as_ref()
            .and_then(|p| p.query.as_deref())
            .map(|q| BTreeMap::from([(RESOLVED_QUERY_METADATA.to_owned(), args.redact(q))]))
            .unwrap_or_default()
    }
}
