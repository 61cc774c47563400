//! Services a Rollout names, checked against the Service manifests given alongside it: the
//! controller only adds the pod-template hash to a Service's selector, so every other selector
//! label must already be on the rollout's pods or the Service never reaches them. A Service
//! that is not among the inputs is not judged (it may live elsewhere).

use super::{ByName, FieldPath, Problem, Problems};
use crate::rollout::Rollout;
use std::collections::BTreeMap;

/// The selector label the controller manages itself.
const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";

/// The Services known to the validator, with their selectors.
#[derive(Clone, Debug, Default)]
pub struct ServiceCatalog {
    selectors: ByName<BTreeMap<String, String>>,
}

impl ServiceCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a Service with the namespace its manifest names, if any; one without a namespace
    /// matches Rollouts in every namespace.
    pub fn add_service(
        &mut self,
        namespace: Option<&str>,
        name: &str,
        selector: BTreeMap<String, String>,
    ) {
        self.selectors.insert(namespace, name, selector);
    }

    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }
}

/// Every Service the rollout names whose selector cannot match the rollout's pod template.
pub fn check_services(rollout: &Rollout, services: &ServiceCatalog) -> Vec<Problem> {
    let mut problems = Problems::default();
    let Some(template_labels) = rollout
        .spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
    else {
        return problems.into_vec();
    };
    let namespace = rollout.metadata.namespace.as_deref();
    let strategy = FieldPath::root("spec").child("strategy");
    let mut named: Vec<(FieldPath, &str)> = Vec::new();
    if let Some(canary) = rollout.spec.canary() {
        let path = strategy.child("canary");
        named.extend(
            canary
                .canary_service
                .as_deref()
                .map(|s| (path.child("canaryService"), s)),
        );
        named.extend(
            canary
                .stable_service
                .as_deref()
                .map(|s| (path.child("stableService"), s)),
        );
        if let Some(ping_pong) = &canary.ping_pong {
            let ping_path = path.child("pingPong");
            named.push((ping_path.child("pingService"), &ping_pong.ping_service));
            named.push((ping_path.child("pongService"), &ping_pong.pong_service));
        }
    }
    if let Some(blue_green) = rollout.spec.blue_green() {
        let path = strategy.child("blueGreen");
        named.push((path.child("activeService"), &blue_green.active_service));
        named.extend(
            blue_green
                .preview_service
                .as_deref()
                .map(|s| (path.child("previewService"), s)),
        );
    }
    for (path, name) in named {
        let Some((_, selector)) = services.selectors.find(namespace, name) else {
            continue;
        };
        let missing: Vec<String> = selector
            .iter()
            .filter(|(key, value)| {
                key.as_str() != POD_TEMPLATE_HASH_LABEL && template_labels.get(*key) != Some(value)
            })
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        if !missing.is_empty() {
            let labels: Vec<String> = template_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            problems.error(
                &path,
                format!(
                    "Service {name:?} selects {}, which the pod template labels {{{}}} do not carry, so it would never reach the rollout's pods",
                    missing.join(", "),
                    labels.join(", ")
                ),
            );
        }
    }
    problems.into_vec()
}
