//! Renders the meters in the Prometheus text exposition format (version 0.0.4) and as the
//! per-version JSON report. Pure.

use std::fmt::Write;

use serde::Serialize;

use super::meter::{Family, ISTIO_BUCKETS_MS, Labels, Meter, NGINX_BUCKETS_S};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_set(labels: &Labels, extra: Option<(&str, &str)>) -> String {
    let mut out = String::from("{");
    let all = labels.iter().map(|(k, v)| (*k, v.as_str())).chain(extra);
    for (i, (k, v)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    out.push('}');
    out
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{value}")
    }
}

/// One family: a counter `<name>` (or `<name>_total`) and the histogram `<duration>`.
fn family(
    out: &mut String,
    (counter, counter_help): (&str, &str),
    (histogram, histogram_help): (&str, &str),
    bounds: &[f64],
    family: &Family,
) {
    let series = family.sorted();
    let _ = writeln!(out, "# HELP {counter} {counter_help}");
    let _ = writeln!(out, "# TYPE {counter} counter");
    for s in &series {
        let _ = writeln!(
            out,
            "{counter}{} {}",
            label_set(&s.labels, None),
            s.requests
        );
    }
    let _ = writeln!(out, "# HELP {histogram} {histogram_help}");
    let _ = writeln!(out, "# TYPE {histogram} histogram");
    for s in &series {
        let h = &s.duration;
        for (i, bound) in bounds.iter().enumerate() {
            let le = number(*bound);
            let labels = label_set(&s.labels, Some(("le", &le)));
            let _ = writeln!(out, "{histogram}_bucket{labels} {}", h.bucket(i));
        }
        let labels = label_set(&s.labels, Some(("le", "+Inf")));
        let _ = writeln!(out, "{histogram}_bucket{labels} {}", h.count);
        let labels = label_set(&s.labels, None);
        let _ = writeln!(out, "{histogram}_sum{labels} {}", number(h.sum));
        let _ = writeln!(out, "{histogram}_count{labels} {}", h.count);
    }
}

/// The whole exposition: Istio's and ingress-nginx's request counters and duration histograms.
pub fn render(meter: &Meter) -> String {
    let mut out = String::new();
    family(
        &mut out,
        ("istio_requests_total", "Total requests."),
        (
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds.",
        ),
        &ISTIO_BUCKETS_MS,
        &meter.istio,
    );
    family(
        &mut out,
        (
            "nginx_ingress_controller_requests",
            "The total number of client requests",
        ),
        (
            "nginx_ingress_controller_request_duration_seconds",
            "The request processing time in seconds",
        ),
        &NGINX_BUCKETS_S,
        &meter.nginx,
    );
    out
}

/// One version in the JSON report (`/api/v1/versions`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionReport {
    pub namespace: String,
    /// The ReplicaSet (or other owner) whose pods make up the version.
    pub replica_set: String,
    pub pod_template_hash: Option<String>,
    pub workload: String,
    pub ready_pods: usize,
    pub requests: u64,
    pub successes: u64,
    pub errors: u64,
    /// `errors / requests`, 0 before the first request.
    pub error_rate: f64,
    pub unavailable_requests: u64,
    pub mirrored_requests: u64,
}

/// The JSON report's body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VersionsReport {
    pub versions: Vec<VersionReport>,
}

/// Per-version totals, optionally only those matching the given namespace / ReplicaSet / hash.
pub fn versions_report(
    meter: &Meter,
    namespace: Option<&str>,
    replica_set: Option<&str>,
    pod_template_hash: Option<&str>,
) -> VersionsReport {
    let versions = meter
        .versions
        .iter()
        .filter(|(key, (version, _))| {
            namespace.is_none_or(|n| n == key.namespace)
                && replica_set.is_none_or(|r| r == key.owner)
                && pod_template_hash.is_none_or(|h| version.pod_template_hash.as_deref() == Some(h))
        })
        .map(|(key, (version, totals))| VersionReport {
            namespace: key.namespace.clone(),
            replica_set: key.owner.clone(),
            pod_template_hash: version.pod_template_hash.clone(),
            workload: version.workload.clone(),
            ready_pods: version.ready_pods,
            requests: totals.requests,
            successes: totals.requests - totals.errors,
            errors: totals.errors,
            error_rate: if totals.requests == 0 {
                0.0
            } else {
                totals.errors as f64 / totals.requests as f64
            },
            unavailable_requests: totals.unavailable,
            mirrored_requests: totals.mirrored,
        })
        .collect();
    VersionsReport { versions }
}

#[cfg(test)]
mod tests {
    use super::super::meter::{Histogram, Series};
    use super::*;

    #[test]
    fn histogram_lines_are_cumulative_with_inf_sum_and_count() {
        let mut meter = Meter::default();
        let labels: Labels = vec![("ingress", "web".into()), ("path", "/a\"b".into())];
        meter.nginx.insert(Series {
            labels,
            requests: 7,
            duration: Histogram {
                count: 7,
                sum: 0.35,
                cumulative: vec![0.0, 1.0, 2.5, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0],
            },
        });
        let text = render(&meter);
        assert!(text.contains("# TYPE nginx_ingress_controller_requests counter\n"));
        assert!(
            text.contains(
                "nginx_ingress_controller_requests{ingress=\"web\",path=\"/a\\\"b\"} 7\n"
            )
        );
        assert!(
            text.contains("# TYPE nginx_ingress_controller_request_duration_seconds histogram\n")
        );
        assert!(text.contains(
            "nginx_ingress_controller_request_duration_seconds_bucket{ingress=\"web\",path=\"/a\\\"b\",le=\"0.025\"} 2\n"
        ));
        assert!(text.contains(
            "nginx_ingress_controller_request_duration_seconds_bucket{ingress=\"web\",path=\"/a\\\"b\",le=\"+Inf\"} 7\n"
        ));
        assert!(text.contains("nginx_ingress_controller_request_duration_seconds_sum{ingress=\"web\",path=\"/a\\\"b\"} 0.35\n"));
        assert!(text.contains("nginx_ingress_controller_request_duration_seconds_count{ingress=\"web\",path=\"/a\\\"b\"} 7\n"));
        assert!(text.contains("# TYPE istio_requests_total counter\n"));
        assert!(text.contains("# TYPE istio_request_duration_milliseconds histogram\n"));
    }
}
