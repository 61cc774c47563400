//! Every default of the Argo Rollouts API, in one place. Upstream applies almost all of them at
//! run time rather than in the CRD schema, so Ramp does the same: the types keep `None` for an
//! absent field (round-trips stay exact) and readers fall back to these values.

/// `spec.replicas` when absent. Upstream writes it back into the spec so HPAs can scale it.
pub const REPLICAS: i32 = 1;
/// `spec.revisionHistoryLimit`: old, fully scaled-down ReplicaSets kept for rollback.
pub const REVISION_HISTORY_LIMIT: i32 = 10;
/// `spec.progressDeadlineSeconds`: seconds without progress before `ProgressDeadlineExceeded`.
pub const PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// `spec.minReadySeconds`: seconds a pod must be ready to count as available.
pub const MIN_READY_SECONDS: i32 = 0;
/// `canary.maxSurge` / `rollingUpdate`-style surge: 25 percent, rounded up.
pub const MAX_SURGE: &str = "25%";
/// `canary.maxUnavailable` and `blueGreen.maxUnavailable`: 25 percent, rounded down.
pub const MAX_UNAVAILABLE: &str = "25%";
/// `canary.scaleDownDelaySeconds` and `blueGreen.scaleDownDelaySeconds`: how long the previous
/// stable/active ReplicaSet stays up after promotion (canary: traffic routing only).
pub const SCALE_DOWN_DELAY_SECONDS: i32 = 30;
/// `abortScaleDownDelaySeconds`: how long the canary/preview ReplicaSet stays up after an abort.
pub const ABORT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;
/// `trafficRouting.maxTrafficWeight`: the denominator of every weight.
pub const MAX_TRAFFIC_WEIGHT: i32 = 100;
/// `setMirrorRoute.percentage`: share of matching requests mirrored to the canary.
pub const MIRROR_PERCENTAGE: i32 = 100;
/// `trafficRouting.nginx.annotationPrefix`.
pub const NGINX_ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io";
/// `trafficRouting.alb.annotationPrefix`.
pub const ALB_ANNOTATION_PREFIX: &str = "alb.ingress.kubernetes.io";
/// `blueGreen.autoPromotionEnabled`: promote as soon as the new ReplicaSet is ready.
pub const AUTO_PROMOTION_ENABLED: bool = true;
/// `blueGreen.autoPromotionSeconds`: extra wait before an automatic promotion.
pub const AUTO_PROMOTION_SECONDS: i32 = 0;
/// `spec.analysis.successfulRunHistoryLimit`: successful AnalysisRuns/Experiments kept.
pub const SUCCESSFUL_RUN_HISTORY_LIMIT: i32 = 5;
/// `spec.analysis.unsuccessfulRunHistoryLimit`: failed/error/inconclusive runs kept.
pub const UNSUCCESSFUL_RUN_HISTORY_LIMIT: i32 = 5;

/// `metrics[].failureLimit`: a metric fails once `failed > failureLimit`.
pub const FAILURE_LIMIT: i32 = 0;
/// `metrics[].inconclusiveLimit`: a metric is inconclusive once `inconclusive > limit`.
pub const INCONCLUSIVE_LIMIT: i32 = 0;
/// `metrics[].consecutiveErrorLimit`: a metric errors once `consecutiveError > limit`
/// (five errors in a row by default).
pub const CONSECUTIVE_ERROR_LIMIT: i32 = 4;
/// `metrics[].consecutiveSuccessLimit`: 0 disables the success-streak rule.
pub const CONSECUTIVE_SUCCESS_LIMIT: i32 = 0;
/// Measurements kept per metric in `status.metricResults[].measurements`.
pub const MEASUREMENT_RETENTION_LIMIT: i32 = 10;
/// Seconds to wait before measuring again after an Error measurement (and the interval used
/// when a bounded metric has none).
pub const ERROR_RETRY_INTERVAL_SECONDS: u64 = 10;
/// `provider.prometheus.timeout` in seconds.
pub const PROMETHEUS_TIMEOUT_SECONDS: i64 = 30;
/// `provider.web.timeoutSeconds`.
pub const WEB_TIMEOUT_SECONDS: i64 = 10;
/// `provider.web.method`.
pub const WEB_METHOD: &str = "GET";
/// `provider.web.jsonPath`: the whole body.
pub const WEB_JSON_PATH: &str = "{$}";
/// `provider.newRelic.timeout` in seconds.
pub const NEW_RELIC_TIMEOUT_SECONDS: i64 = 5;
/// `Experiment.spec.progressDeadlineSeconds`.
pub const EXPERIMENT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// `provider.datadog.interval`: look-back window of the query (also a CRD schema default).
pub const DATADOG_INTERVAL: &str = "5m";
/// `provider.datadog.requestTimeout` (also a CRD schema default).
pub const DATADOG_REQUEST_TIMEOUT: &str = "10s";
/// `provider.newRelic.profile`: name of the Secret holding the New Relic credentials.
pub const NEW_RELIC_PROFILE: &str = "newrelic";
/// `provider.influxdb.profile`: name of the Secret holding the InfluxDB credentials.
pub const INFLUXDB_PROFILE: &str = "influxdb";
/// `provider.cloudWatch.interval`: look-back window of the queries.
pub const CLOUDWATCH_INTERVAL: &str = "5m";
/// `Experiment.spec.templates[].replicas`.
pub const EXPERIMENT_TEMPLATE_REPLICAS: i32 = 1;
/// `Experiment.spec.scaleDownDelaySeconds`: how long template ReplicaSets stay up after the
/// experiment ends.
pub const EXPERIMENT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;
/// How often upstream re-examines a rollout with an invalid spec.
pub const INVALID_SPEC_RETRY_SECONDS: u64 = 20;
