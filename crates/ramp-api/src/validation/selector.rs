//! Label selector evaluation against a label set, as the API server does it for workloads:
//! `matchLabels` and every `matchExpressions` requirement must hold.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// Whether `selector` selects an object carrying `labels`. An operator the API does not know
/// never matches, so a selector that cannot be evaluated is reported as not matching.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_match = selector
        .match_expressions
        .iter()
        .flatten()
        .all(|requirement| {
            let values = requirement.values.as_deref().unwrap_or_default();
            let present = labels.get(&requirement.key);
            match requirement.operator.as_str() {
                "In" => present.is_some_and(|v| values.contains(v)),
                "NotIn" => present.is_none_or(|v| !values.contains(v)),
                "Exists" => present.is_some(),
                "DoesNotExist" => present.is_none(),
                _ => false,
            }
        });
    labels_match && expressions_match
}

/// Whether a selector has no requirement at all (it would select every pod).
pub(crate) fn is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn match_labels_must_all_be_present_with_equal_values() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "a")])),
            ..Default::default()
        };
        assert!(selector_matches(
            &selector,
            &labels(&[("app", "a"), ("tier", "web")])
        ));
        assert!(!selector_matches(&selector, &labels(&[("app", "b")])));
        assert!(!selector_matches(&selector, &labels(&[])));
    }

    #[test]
    fn match_expressions_follow_their_operator() {
        let pod = labels(&[("app", "a"), ("track", "canary")]);
        let with = |r: LabelSelectorRequirement| LabelSelector {
            match_expressions: Some(vec![r]),
            ..Default::default()
        };
        assert!(selector_matches(
            &with(requirement("track", "In", &["canary", "stable"])),
            &pod
        ));
        assert!(!selector_matches(
            &with(requirement("track", "NotIn", &["canary"])),
            &pod
        ));
        assert!(selector_matches(
            &with(requirement("zone", "NotIn", &["x"])),
            &pod
        ));
        assert!(selector_matches(
            &with(requirement("app", "Exists", &[])),
            &pod
        ));
        assert!(!selector_matches(
            &with(requirement("app", "DoesNotExist", &[])),
            &pod
        ));
        assert!(!selector_matches(
            &with(requirement("app", "Matches", &["a"])),
            &pod
        ));
    }

    #[test]
    fn empty_means_no_requirement() {
        assert!(is_empty(&LabelSelector::default()));
        assert!(is_empty(&LabelSelector {
            match_labels: Some(BTreeMap::new()),
            ..Default::default()
        }));
        assert!(!is_empty(&LabelSelector {
            match_labels: Some(labels(&[("a", "b")])),
            ..Default::default()
        }));
    }
}
