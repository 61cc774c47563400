//! The metric provider union (`metrics[].provider`): one optional member per data source. Only
//! the shape lives here; querying a provider is the job of `ramp-core`/`ramp-controller`.
//! Exactly one member must be set, which [`MetricProvider::kind`] checks.

use super::AnalysisFieldError;
use crate::defaults;
use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Where a metric's measurements come from. Exactly one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    /// Amazon CloudWatch `GetMetricData` queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch: Option<CloudWatchMetric>,
    /// Datadog metrics API query (v1) or queries with a formula (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadog: Option<DatadogMetric>,
    /// Graphite render API query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphite: Option<GraphiteMetric>,
    /// InfluxDB Flux query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influxdb: Option<InfluxdbMetric>,
    /// A Kubernetes Job per measurement: succeeds or fails with the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobMetric>,
    /// Kayenta canary judgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kayenta: Option<KayentaMetric>,
    /// New Relic NRQL query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_relic: Option<NewRelicMetric>,
    /// Metric provider plugin: plugin name to its free-form configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub plugin: Option<BTreeMap<String, serde_json::Value>>,
    /// Prometheus (or compatible) PromQL query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// Apache SkyWalking GraphQL query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skywalking: Option<SkyWalkingMetric>,
    /// Wavefront query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wavefront: Option<WavefrontMetric>,
    /// Generic HTTP request whose (JSON) response is the measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
}

/// Which member of [`MetricProvider`] is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    CloudWatch,
    Datadog,
    Graphite,
    Influxdb,
    Job,
    Kayenta,
    NewRelic,
    Plugin,
    Prometheus,
    SkyWalking,
    Wavefront,
    Web,
}

impl ProviderKind {
    /// The provider's field name under `metrics[].provider`.
    pub fn json_name(self) -> &'static str {
        match self {
            Self::CloudWatch => "cloudWatch",
            Self::Datadog => "datadog",
            Self::Graphite => "graphite",
            Self::Influxdb => "influxdb",
            Self::Job => "job",
            Self::Kayenta => "kayenta",
            Self::NewRelic => "newRelic",
            Self::Plugin => "plugin",
            Self::Prometheus => "prometheus",
            Self::SkyWalking => "skywalking",
            Self::Wavefront => "wavefront",
            Self::Web => "web",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json_name())
    }
}

impl MetricProvider {
    /// Every provider member that is set, in field order. An empty `plugin` map does not count
    /// (upstream ignores it too).
    pub fn kinds_set(&self) -> Vec<ProviderKind> {
        let plugin_set = self.plugin.as_ref().is_some_and(|p| !p.is_empty());
        [
            (self.cloud_watch.is_some(), ProviderKind::CloudWatch),
            (self.datadog.is_some(), ProviderKind::Datadog),
            (self.graphite.is_some(), ProviderKind::Graphite),
            (self.influxdb.is_some(), ProviderKind::Influxdb),
            (self.job.is_some(), ProviderKind::Job),
            (self.kayenta.is_some(), ProviderKind::Kayenta),
            (self.new_relic.is_some(), ProviderKind::NewRelic),
            (plugin_set, ProviderKind::Plugin),
            (self.prometheus.is_some(), ProviderKind::Prometheus),
            (self.skywalking.is_some(), ProviderKind::SkyWalking),
            (self.wavefront.is_some(), ProviderKind::Wavefront),
            (self.web.is_some(), ProviderKind::Web),
        ]
        .into_iter()
        .filter_map(|(set, kind)| set.then_some(kind))
        .collect()
    }

    /// The single provider that is set; none or several is a spec error.
    pub fn kind(&self) -> Result<ProviderKind, AnalysisFieldError> {
        match self.kinds_set().as_slice() {
            [] => Err(AnalysisFieldError::NoProvider),
            [kind] => Ok(*kind),
            several => Err(AnalysisFieldError::MultipleProviders(
                several.iter().map(|k| k.json_name()).collect(),
            )),
        }
    }

    /// The JSON name of the single provider that is set (`prometheus`, `newRelic`, ...).
    pub fn kind_name(&self) -> Result<&'static str, AnalysisFieldError> {
        self.kind().map(ProviderKind::json_name)
    }

    /// The plugin name and configuration when the provider is a plugin; a metric names exactly
    /// one plugin.
    pub fn plugin(&self) -> Result<Option<(&str, &serde_json::Value)>, AnalysisFieldError> {
        let Some(plugins) = &self.plugin else {
            return Ok(None);
        };
        let mut entries = plugins.iter();
        match (entries.next(), entries.next()) {
            (None, _) => Ok(None),
            (Some((name, config)), None) => Ok(Some((name.as_str(), config))),
            (Some(_), Some(_)) => Err(AnalysisFieldError::MultiplePlugins(
                plugins.keys().cloned().collect(),
            )),
        }
    }
}

/// Credentials for HTTP based providers (Prometheus, web).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// OAuth2 client-credentials flow; the token is sent as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Config>,
    /// AWS SigV4 request signing (Amazon Managed Prometheus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<Sigv4Config>,
}

/// HTTP basic authentication credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// Password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// OAuth2 client-credentials settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Config {
    /// OAuth2 client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// OAuth2 client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Scopes requested with the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Token endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
}

/// AWS SigV4 signing settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sigv4Config {
    /// AWS profile to take credentials from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// AWS region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// IAM role to assume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// An HTTP header sent with a provider request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebMetricHeader {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: String,
}

/// A Prometheus query; an instant query unless `rangeQuery` is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// Base URL of the Prometheus server (falls back to the controller's configured address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Credentials for the Prometheus server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// Extra HTTP headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<WebMetricHeader>>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// PromQL expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Turns the query into a range query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_query: Option<PrometheusRangeQueryArgs>,
    /// Query timeout in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

impl PrometheusMetric {
    /// Query timeout in seconds, defaulted.
    pub fn timeout_seconds(&self) -> i64 {
        self.timeout.unwrap_or(defaults::PROMETHEUS_TIMEOUT_SECONDS)
    }
}

/// Range of a Prometheus range query; `start`/`end` are time expressions such as
/// `now() - duration("5m")`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRangeQueryArgs {
    /// End of the range (time expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Start of the range (time expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Resolution step (duration string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// An HTTP request whose response body is the measurement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebMetric {
    /// Credentials for the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// Request body as a string (POST/PUT only; exclusive with `jsonBody`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Extra HTTP headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<WebMetricHeader>>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Request body as JSON, sent with `Content-Type: application/json` (POST/PUT only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub json_body: Option<serde_json::Value>,
    /// Kubernetes JSONPath selecting the result in the response (default `{$}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// HTTP method: GET (default), POST or PUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request timeout in seconds (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// URL to request.
    pub url: String,
}

impl WebMetric {
    /// HTTP method, defaulted.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or(defaults::WEB_METHOD)
    }

    /// JSONPath selecting the result, defaulted.
    pub fn json_path(&self) -> &str {
        self.json_path.as_deref().unwrap_or(defaults::WEB_JSON_PATH)
    }

    /// Request timeout in seconds, defaulted.
    pub fn timeout_seconds(&self) -> i64 {
        self.timeout_seconds
            .unwrap_or(defaults::WEB_TIMEOUT_SECONDS)
    }
}

/// A Job run once per measurement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobMetric {
    /// Labels and annotations for the created Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JobMetricMetadata>,
    /// Spec of the created Job.
    #[schemars(schema_with = "crate::schema::embedded_job_spec")]
    pub spec: JobSpec,
}

/// Labels and annotations put on an analysis Job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobMetricMetadata {
    /// Annotations added to the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Labels added to the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A Kayenta canary analysis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KayentaMetric {
    /// Base URL of Kayenta.
    pub address: String,
    /// Application name sent to Kayenta.
    pub application: String,
    /// Kayenta canary configuration name.
    pub canary_config_name: String,
    /// Account holding the canary configuration.
    pub configuration_account_name: String,
    /// Whether the scopes look back from their end time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<bool>,
    /// Account the metrics are read from.
    pub metrics_account_name: String,
    /// Control/experiment scope pairs to compare.
    pub scopes: Vec<KayentaScope>,
    /// Account results are stored in.
    pub storage_account_name: String,
    /// Score thresholds.
    pub threshold: KayentaThreshold,
}

/// Kayenta score thresholds: at or above `pass` is Successful, at or above `marginal`
/// Inconclusive, below Failed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KayentaThreshold {
    /// Lowest score that is not a failure.
    pub marginal: i64,
    /// Lowest passing score.
    pub pass: i64,
}

/// A named pair of control and experiment scopes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KayentaScope {
    /// Scope of the baseline.
    pub control_scope: ScopeDetail,
    /// Scope of the canary.
    pub experiment_scope: ScopeDetail,
    /// Scope pair name.
    pub name: String,
}

/// One Kayenta scope: which series, where, and over which time range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeDetail {
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Region.
    pub region: String,
    /// Scope (series selector).
    pub scope: String,
    /// Start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Step in seconds.
    pub step: i64,
}

/// Datadog API version of a query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DatadogApiVersion {
    // Metrics query API (`query`). Plain comments on variants: doc comments would turn the
    // schema's `enum` into a `oneOf` of constants.
    #[default]
    #[serde(rename = "v1")]
    V1,
    // Formula and functions API (`queries` + `formula`).
    #[serde(rename = "v2")]
    V2,
}

/// How a Datadog v2 query reduces a series to one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatadogAggregator {
    Avg,
    Min,
    Max,
    Sum,
    Last,
    Percentile,
    Mean,
    L2norm,
    Area,
}

/// A Datadog query.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatadogMetric {
    /// Reducer for v2 queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::absent_or::<DatadogAggregator>")]
    pub aggregator: Option<DatadogAggregator>,
    /// API version: v1 (default) or v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::absent_or::<DatadogApiVersion>")]
    #[schemars(extend("default" = "v1"))]
    pub api_version: Option<DatadogApiVersion>,
    /// Formula combining the named `queries` (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<String>,
    /// Look-back window of the query (duration, default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "5m"))]
    pub interval: Option<String>,
    /// Named queries (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<BTreeMap<String, String>>,
    /// Single query (v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Timeout of the API request (duration, default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "10s"))]
    pub request_timeout: Option<String>,
    /// Secret holding the Datadog credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

impl DatadogMetric {
    /// API version, defaulted.
    pub fn api_version(&self) -> DatadogApiVersion {
        self.api_version.unwrap_or_default()
    }

    /// Look-back window, defaulted.
    pub fn interval(&self) -> &str {
        self.interval
            .as_deref()
            .unwrap_or(defaults::DATADOG_INTERVAL)
    }

    /// Request timeout, defaulted.
    pub fn request_timeout(&self) -> &str {
        self.request_timeout
            .as_deref()
            .unwrap_or(defaults::DATADOG_REQUEST_TIMEOUT)
    }
}

/// A Secret holding provider credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Read the Secret from the AnalysisRun's namespace instead of the controller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaced: Option<bool>,
}

/// A New Relic NRQL query.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewRelicMetric {
    /// Secret with the account credentials (default `newrelic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// NRQL query.
    pub query: String,
    /// Query timeout in seconds (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

impl NewRelicMetric {
    /// Credentials Secret name, defaulted.
    pub fn profile(&self) -> &str {
        self.profile
            .as_deref()
            .unwrap_or(defaults::NEW_RELIC_PROFILE)
    }

    /// Query timeout in seconds, defaulted.
    pub fn timeout_seconds(&self) -> i64 {
        self.timeout.unwrap_or(defaults::NEW_RELIC_TIMEOUT_SECONDS)
    }
}

/// A Wavefront query.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WavefrontMetric {
    /// Wavefront address (also the key of its API token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// A Graphite query.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphiteMetric {
    /// Base URL of Graphite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Graphite target expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// An InfluxDB Flux query.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InfluxdbMetric {
    /// Secret with address, token and organisation (default `influxdb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Flux query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl InfluxdbMetric {
    /// Credentials Secret name, defaulted.
    pub fn profile(&self) -> &str {
        self.profile
            .as_deref()
            .unwrap_or(defaults::INFLUXDB_PROFILE)
    }
}

/// An Apache SkyWalking GraphQL query.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkyWalkingMetric {
    /// SkyWalking OAP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Time window of the query (duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// GraphQL query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// Amazon CloudWatch `GetMetricData` queries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetric {
    /// Look-back window (duration, default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The queries sent in one request.
    pub metric_data_queries: Vec<CloudWatchMetricDataQuery>,
}

impl CloudWatchMetric {
    /// Look-back window, defaulted.
    pub fn interval(&self) -> &str {
        self.interval
            .as_deref()
            .unwrap_or(defaults::CLOUDWATCH_INTERVAL)
    }
}

/// One CloudWatch metric data query: a metric or a math expression over other queries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetricDataQuery {
    /// Metric math expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// Query id, referenced by expressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label of the returned series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The metric and statistic to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_stat: Option<CloudWatchMetricStat>,
    /// Granularity in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<IntOrString>,
    /// Whether this query's data is returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_data: Option<bool>,
}

/// A CloudWatch metric with the statistic to compute.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetricStat {
    /// The metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<CloudWatchMetricStatMetric>,
    /// Granularity in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<IntOrString>,
    /// Statistic (`Average`, `p99`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<String>,
    /// Unit of the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// A CloudWatch metric identity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetricStatMetric {
    /// Dimensions narrowing the metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<Vec<CloudWatchMetricStatMetricDimension>>,
    /// Metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    /// Metric namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A CloudWatch dimension.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetricStatMetricDimension {
    /// Dimension name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Dimension value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}
