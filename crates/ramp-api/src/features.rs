//! The Argo Rollouts features Ramp accepts (and round-trips) but does not implement yet, as data:
//! each entry names the kinds it applies to, the field that switches it on and a human name.
//! `ramp lint` turns matches into warnings; the controller reports them in a status condition.

use serde_json::Value;

/// One upstream feature that Ramp does not implement yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnimplementedFeature {
    /// Kinds whose manifests can carry the feature.
    pub kinds: &'static [&'static str],
    /// Dotted path of the field that enables it; `[]` stands for every element of a list
    /// (`spec.strategy.canary.steps[].experiment`).
    pub path: &'static str,
    /// What a user would call it, written to precede "is not implemented by Ramp yet".
    pub name: &'static str,
}

/// A use of an [`UnimplementedFeature`] at a concrete field of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureUse {
    pub feature: &'static UnimplementedFeature,
    /// The concrete field path, e.g. `spec.strategy.canary.steps[2].experiment`.
    pub field: String,
}

impl FeatureUse {
    /// The sentence a user reads next to the field path.
    pub fn message(&self) -> String {
        format!("{} is not implemented by Ramp yet", self.feature.name)
    }
}

const ROLLOUT: &[&str] = &["Rollout"];
const METRIC_HOLDERS: &[&str] = &["AnalysisTemplate", "ClusterAnalysisTemplate", "AnalysisRun"];
const EXPERIMENT: &[&str] = &["Experiment"];

macro_rules! feature {
    ($kinds:expr, $path:literal, $name:literal) => {
        UnimplementedFeature {
            kinds: $kinds,
            path: $path,
            name: $name,
        }
    };
}

/// Every feature Ramp does not implement yet. Ramp implements the basic canary, Istio and NGINX
/// traffic routing, header and mirror routes on Istio, blue-green, and analysis with the
/// Prometheus, web and job providers; everything else upstream offers is listed here.
pub const UNIMPLEMENTED: &[UnimplementedFeature] = &[
    feature!(
        ROLLOUT,
        "spec.workloadRef",
        "workloadRef (taking the pod template from another workload)"
    ),
    feature!(
        ROLLOUT,
        "spec.strategy.canary.trafficRouting.alb",
        "the ALB traffic router"
    ),
    feature!(
        ROLLOUT,
        "spec.strategy.canary.trafficRouting.smi",
        "the SMI traffic router"
    ),
    feature!(
        ROLLOUT,
        "spec.strategy.canary.trafficRouting.ambassador",
        "the Ambassador traffic router"
    ),
    feature!(
        ROLLOUT,
        "spec.strategy.canary.trafficRouting.apisix",
        "the APISIX traffic router"
    ),
    feature!(
        ROLLOUT,
        "spec.strategy.canary.trafficRouting.appMesh",
        "the App Mesh traffic router"
    ),
    feature!(
        ROLLOUT,
        "spec.strategy.canary.trafficRouting.traefik",
        "the Traefik traffic router"
    ),
    feature!(
        ROLLOUT,
        "spec.strategy.canary.trafficRouting.plugins",
        "the traffic-router plugin mechanism"
    ),
    feature!(
        ROLLOUT,
        "spec.strategy.canary.steps[].experiment",
        "the experiment step"
    ),
    feature!(
        ROLLOUT,
        "spec.strategy.canary.steps[].plugin",
        "the step plugin mechanism"
    ),
    feature!(
        ROLLOUT,
        "spec.strategy.canary.pingPong",
        "pingPong (alternating ping and pong services)"
    ),
    feature!(
        ROLLOUT,
        "spec.strategy.canary.replicaProgressThreshold",
        "replicaProgressThreshold"
    ),
    feature!(
        METRIC_HOLDERS,
        "spec.metrics[].provider.kayenta",
        "the Kayenta metric provider"
    ),
    feature!(
        METRIC_HOLDERS,
        "spec.metrics[].provider.datadog",
        "the Datadog metric provider"
    ),
    feature!(
        METRIC_HOLDERS,
        "spec.metrics[].provider.newRelic",
        "the New Relic metric provider"
    ),
    feature!(
        METRIC_HOLDERS,
        "spec.metrics[].provider.wavefront",
        "the Wavefront metric provider"
    ),
    feature!(
        METRIC_HOLDERS,
        "spec.metrics[].provider.cloudWatch",
        "the CloudWatch metric provider"
    ),
    feature!(
        METRIC_HOLDERS,
        "spec.metrics[].provider.graphite",
        "the Graphite metric provider"
    ),
    feature!(
        METRIC_HOLDERS,
        "spec.metrics[].provider.influxdb",
        "the InfluxDB metric provider"
    ),
    feature!(
        METRIC_HOLDERS,
        "spec.metrics[].provider.skywalking",
        "the SkyWalking metric provider"
    ),
    feature!(
        METRIC_HOLDERS,
        "spec.metrics[].provider.plugin",
        "the metric provider plugin mechanism"
    ),
    feature!(
        METRIC_HOLDERS,
        "spec.metrics[].provider.prometheus.authentication.sigv4",
        "Prometheus SigV4 authentication"
    ),
    feature!(EXPERIMENT, "kind", "the Experiment kind"),
];

/// Every use of an unimplemented feature in `object` (a manifest of kind `kind` as JSON), in
/// table order. A field set to `null` does not count as a use.
pub fn find_unimplemented(kind: &str, object: &Value) -> Vec<FeatureUse> {
    let mut uses = Vec::new();
    for feature in UNIMPLEMENTED.iter().filter(|f| f.kinds.contains(&kind)) {
        let segments: Vec<&str> = feature.path.split('.').collect();
        let mut fields = Vec::new();
        collect_matches(object, &segments, String::new(), &mut fields);
        uses.extend(
            fields
                .into_iter()
                .map(|field| FeatureUse { feature, field }),
        );
    }
    uses
}

fn collect_matches(value: &Value, segments: &[&str], prefix: String, out: &mut Vec<String>) {
    let Some((segment, rest)) = segments.split_first() else {
        if !value.is_null() {
            out.push(prefix);
        }
        return;
    };
    let (key, every_element) = match segment.strip_suffix("[]") {
        Some(key) => (key, true),
        None => (*segment, false),
    };
    let Some(child) = value.get(key) else {
        return;
    };
    let path = if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    };
    if every_element {
        if let Some(items) = child.as_array() {
            for (index, item) in items.iter().enumerate() {
                collect_matches(item, rest, format!("{path}[{index}]"), out);
            }
        }
    } else {
        collect_matches(child, rest, path, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(kind: &str, object: &Value) -> Vec<(String, String)> {
        find_unimplemented(kind, object)
            .into_iter()
            .map(|u| (u.field.clone(), u.message()))
            .collect()
    }

    #[test]
    fn finds_unimplemented_routers_and_steps_with_concrete_paths() {
        let rollout = json!({
            "kind": "Rollout",
            "spec": {"strategy": {"canary": {
                "trafficRouting": {"alb": {"ingress": "x", "servicePort": 80}},
                "steps": [{"setWeight": 10}, {"experiment": {"templates": []}}, {"plugin": {"name": "p"}}]
            }}}
        });
        assert_eq!(
            fields("Rollout", &rollout),
            vec![
                (
                    "spec.strategy.canary.trafficRouting.alb".to_owned(),
                    "the ALB traffic router is not implemented by Ramp yet".to_owned()
                ),
                (
                    "spec.strategy.canary.steps[1].experiment".to_owned(),
                    "the experiment step is not implemented by Ramp yet".to_owned()
                ),
                (
                    "spec.strategy.canary.steps[2].plugin".to_owned(),
                    "the step plugin mechanism is not implemented by Ramp yet".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn implemented_features_and_null_fields_are_not_reported() {
        let rollout = json!({
            "kind": "Rollout",
            "spec": {"workloadRef": null, "strategy": {"canary": {
                "trafficRouting": {"istio": {"virtualService": {"name": "vs"}}, "nginx": {"stableIngress": "i"}},
                "steps": [{"setWeight": 10}, {"pause": {}}, {"analysis": {"templates": []}}]
            }}}
        });
        assert_eq!(fields("Rollout", &rollout), vec![]);
    }

    #[test]
    fn metric_providers_are_checked_on_every_metric_holder_only() {
        let template = json!({
            "kind": "AnalysisTemplate",
            "spec": {"metrics": [
                {"name": "a", "provider": {"prometheus": {"query": "up", "authentication": {"sigv4": {"region": "eu"}}}}},
                {"name": "b", "provider": {"datadog": {"query": "q"}}}
            ]}
        });
        let found = fields("ClusterAnalysisTemplate", &template);
        assert_eq!(
            found.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
            vec![
                "spec.metrics[1].provider.datadog",
                "spec.metrics[0].provider.prometheus.authentication.sigv4"
            ]
        );
        assert_eq!(fields("Rollout", &template), vec![]);
    }

    #[test]
    fn the_experiment_kind_itself_is_reported() {
        let experiment = json!({"kind": "Experiment", "spec": {"templates": []}});
        assert_eq!(
            fields("Experiment", &experiment),
            vec![(
                "kind".to_owned(),
                "the Experiment kind is not implemented by Ramp yet".to_owned()
            )]
        );
    }
}
