//! The web provider: one HTTP request per measurement. A 2xx JSON answer becomes `result`
//! through `jsonPath`; a body that is not JSON is `result` as a string; anything else is an
//! Error measurement.

use super::http::{self, error_chain};
use super::{MeasureContext, MetricProvider, errored, jsonpath, judged};
use prometheus_http_query::reqwest;
use ramp_api::analysis::{Measurement, Metric, WebMetric};
use ramp_core::analysis::MetricValue;

/// Calls web endpoints.
#[derive(Clone, Copy, Debug, Default)]
pub struct WebProvider;

impl WebProvider {
    async fn fetch(&self, spec: &WebMetric) -> Result<MetricValue, String> {
        let timeout = match spec.timeout_seconds() {
            t if t > 0 => t,
            _ => ramp_api::defaults::WEB_TIMEOUT_SECONDS,
        };
        let client = http::client(http::seconds(timeout), spec.insecure == Some(true))?;
        let method = match spec.method().to_ascii_uppercase().as_str() {
            "GET" | "" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            other => return Err(format!("method {other:?} is not GET, POST or PUT")),
        };
        let authorization = http::authorization(&client, spec.authentication.as_ref()).await?;
        let mut request = client.request(method.clone(), &spec.url);
        for header in spec.headers.iter().flatten() {
            // Header values may carry secrets; they are never part of a message.
            let value = reqwest::header::HeaderValue::from_str(&header.value).map_err(|_| {
                format!(
                    "header {:?} has a value that is not a valid header value",
                    header.key
                )
            })?;
            request = request.header(header.key.as_str(), value);
        }
        if let Some(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let has_body =
            spec.body.as_deref().is_some_and(|b| !b.is_empty()) || spec.json_body.is_some();
        if has_body && method == reqwest::Method::GET {
            return Err("body and jsonBody are only sent with POST or PUT".to_owned());
        }
        if let Some(json) = &spec.json_body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json.to_string());
        } else if let Some(body) = spec.body.as_deref().filter(|b| !b.is_empty()) {
            request = request.body(body.to_owned());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("request to {}: {}", spec.url, error_chain(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the response of {}: {}", spec.url, error_chain(&e)))?;
        if !status.is_success() {
            return Err(format!(
                "received non 2xx response code: {}",
                status.as_u16()
            ));
        }
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(document) => jsonpath::select(&document, spec.json_path())
                .map(|selected| MetricValue::from(selected.clone())),
            Err(_) => Ok(MetricValue::String(
                String::from_utf8_lossy(&body).into_owned(),
            )),
        }
    }
}

impl MetricProvider for WebProvider {
    async fn measure(&self, metric: &Metric, ctx: &MeasureContext<'_>) -> Measurement {
        let started = ctx.now;
        let Some(spec) = metric.provider.web.as_ref() else {
            return errored("the metric has no web provider", started, ctx);
        };
        match self.fetch(spec).await {
            Ok(value) => judged(metric, &value, started, ctx),
            Err(message) => errored(&message, started, ctx),
        }
    }
}
