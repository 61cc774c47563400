//! DestinationRule planning: the hash labels of the canary and stable subsets and the
//! managed-by annotation, and their removal when a rollout lets go. Other subsets are kept.

use json_patch::Patch;
use ramp_api::rollout::IstioDestinationRule;
use ramp_core::traffic::TrafficIntent;
use serde_json::{Value, json};

use super::DESTINATION_RULE_FIELD;
use super::virtual_service::route_name;
use crate::traffic::error::{ObjectName, TrafficError};
use crate::traffic::patch::PatchBuilder;
use crate::traffic::{MANAGED_BY_ANNOTATION, POD_TEMPLATE_HASH_LABEL};

/// Plans the patch that labels the DestinationRule's canary and stable subsets with the
/// intent's pod-template hashes (removing a label whose hash is absent) and marks the rule
/// managed by `rollout`. Other subsets are never touched — upstream deletes them.
pub fn plan_destination_rule(
    destination_rule: &Value,
    object: &ObjectName,
    config: &IstioDestinationRule,
    rollout: &str,
    intent: &TrafficIntent,
) -> Result<Patch, TrafficError> {
    let mut builder = PatchBuilder::default();
    claim_annotation(&mut builder, destination_rule, object, rollout)?;
    let subsets = destination_rule
        .pointer("/spec/subsets")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (subset_name, hash) in [
        (&config.canary_subset_name, intent.canary_hash.as_deref()),
        (&config.stable_subset_name, intent.stable_hash.as_deref()),
    ] {
        let index = subsets
            .iter()
            .position(|subset| route_name(subset) == Some(subset_name.as_str()))
            .ok_or_else(|| TrafficError::MissingInObject {
                object: object.clone(),
                detail: format!(
                    "has no subset named '{subset_name}' (named in {DESTINATION_RULE_FIELD})"
                ),
            })?;
        let subset = &subsets[index];
        let at = index.to_string();
        let labels = subset.get("labels").and_then(Value::as_object);
        let current = labels
            .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
            .and_then(Value::as_str);
        if current == hash {
            continue;
        }
        builder.test(&["spec", "subsets", &at, "name"], json!(subset_name));
        match (hash, labels) {
            (Some(hash), Some(_)) => {
                builder.add(
                    &["spec", "subsets", &at, "labels", POD_TEMPLATE_HASH_LABEL],
                    json!(hash),
                );
            }
            (Some(hash), None) => {
                builder.add(
                    &["spec", "subsets", &at, "labels"],
                    json!({ POD_TEMPLATE_HASH_LABEL: hash }),
                );
            }
            (None, _) => {
                builder.remove(&["spec", "subsets", &at, "labels", POD_TEMPLATE_HASH_LABEL])
            }
        }
    }
    Ok(builder.finish(destination_rule))
}

/// The pod-template hash label of subset `subset_name`, as the DestinationRule holds it now.
pub(super) fn subset_hash<'v>(destination_rule: &'v Value, subset_name: &str) -> Option<&'v str> {
    destination_rule
        .pointer("/spec/subsets")
        .and_then(Value::as_array)?
        .iter()
        .find(|subset| route_name(subset) == Some(subset_name))?
        .pointer("/labels")
        .and_then(|labels| labels.get(POD_TEMPLATE_HASH_LABEL))
        .and_then(Value::as_str)
}

/// Plans the patch that hands a DestinationRule back when `rollout` stops referencing it: the
/// managed-by annotation and the hash labels of the two subsets go. Empty when `rollout` does
/// not manage the rule (someone else's rule is never touched).
pub fn plan_destination_rule_release(
    destination_rule: &Value,
    config: &IstioDestinationRule,
    rollout: &str,
) -> Patch {
    let mut builder = PatchBuilder::default();
    let owner = destination_rule
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MANAGED_BY_ANNOTATION))
        .and_then(Value::as_str);
    if owner != Some(rollout) {
        return builder.finish(destination_rule);
    }
    builder.remove(&["metadata", "annotations", MANAGED_BY_ANNOTATION]);
    let subsets = destination_rule
        .pointer("/spec/subsets")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (index, subset) in subsets.iter().enumerate() {
        let Some(name) = route_name(subset) else {
            continue;
        };
        let managed = name == config.canary_subset_name || name == config.stable_subset_name;
        if managed
            && subset
                .pointer("/labels")
                .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
                .is_some()
        {
            let at = index.to_string();
            builder.test(&["spec", "subsets", &at, "name"], json!(name));
            builder.remove(&["spec", "subsets", &at, "labels", POD_TEMPLATE_HASH_LABEL]);
        }
    }
    builder.finish(destination_rule)
}

/// Adds the managed-by annotation unless present; refuses an object another rollout claims.
fn claim_annotation(
    builder: &mut PatchBuilder,
    object_json: &Value,
    object: &ObjectName,
    rollout: &str,
) -> Result<(), TrafficError> {
    let annotations = object_json
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    match annotations
        .and_then(|a| a.get(MANAGED_BY_ANNOTATION))
        .and_then(Value::as_str)
    {
        Some(owner) if owner == rollout => {}
        Some(owner) => {
            return Err(TrafficError::ManagedByOtherRollout {
                object: object.clone(),
                owner: owner.to_owned(),
                rollout: rollout.to_owned(),
            });
        }
        None if annotations.is_some() => {
            builder.add(
                &["metadata", "annotations", MANAGED_BY_ANNOTATION],
                json!(rollout),
            );
        }
        None => builder.add(
            &["metadata", "annotations"],
            json!({ MANAGED_BY_ANNOTATION: rollout }),
        ),
    }
    Ok(())
}
