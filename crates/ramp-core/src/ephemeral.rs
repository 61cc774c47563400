//! Ephemeral pod metadata shared by both strategies: which labels and annotations each live
//! ReplicaSet's pods carry for their role in an update (new and not yet promoted, or stable).
//! Only decides the `SetPodMetadata` actions; the executor writes templates and pods.

use crate::plan::Action;
use crate::snapshot::ReplicaSetView;
use ramp_api::rollout::PodTemplateMetadata;

/// The metadata of each role, as the strategy names them: blue-green's `previewMetadata` /
/// `activeMetadata`, canary's `canaryMetadata` / `stableMetadata`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RoleMetadata<'a> {
    /// Carried by the newest ReplicaSet while its update is not promoted.
    pub(crate) unpromoted: Option<&'a PodTemplateMetadata>,
    /// Carried by the stable ReplicaSet, and by the newest one from its promotion on.
    pub(crate) stable: Option<&'a PodTemplateMetadata>,
}

/// The `SetPodMetadata` actions that give every live ReplicaSet's pods the metadata of their
/// role: the newest ReplicaSet carries `roles.unpromoted` until it is stable and
/// `roles.stable` from then on, the stable ReplicaSet of an update in progress carries
/// `roles.stable`, and every other ReplicaSet loses what was injected before. The newest
/// ReplicaSet is written first and the stripped ones last, so a Service or a query selecting
/// on a role label never finds it on no pod at all while the role moves.
pub(crate) fn ephemeral_metadata(
    roles: RoleMetadata<'_>,
    stable_hash: Option<&str>,
    new_rs: &ReplicaSetView,
    live: &[&ReplicaSetView],
) -> Vec<Action> {
    let new_hash = new_rs.pod_template_hash.as_deref();
    let promoted = stable_hash.is_none_or(|s| Some(s) == new_hash);
    let role = |rs: &ReplicaSetView| {
        let hash = rs.pod_template_hash.as_deref();
        let metadata = if rs.name == new_rs.name {
            if promoted {
                roles.stable
            } else {
                roles.unpromoted
            }
        } else if !promoted && hash.is_some() && hash == stable_hash {
            roles.stable
        } else {
            None
        };
        normalized(metadata)
    };
    let mut ordered: Vec<&&ReplicaSetView> = live.iter().collect();
    ordered.sort_by_key(|rs| {
        let hash = rs.pod_template_hash.as_deref();
        if rs.name == new_rs.name {
            0
        } else if hash.is_some() && hash == stable_hash {
            1
        } else {
            2
        }
    });
    ordered
        .into_iter()
        .filter_map(|rs| {
            let hash = rs.pod_template_hash.clone()?;
            let wanted = role(rs);
            let previous = normalized(rs.ephemeral_metadata.as_ref());
            (wanted != previous).then(|| Action::SetPodMetadata {
                replica_set: rs.name.clone(),
                pod_template_hash: hash,
                metadata: wanted,
                previous,
            })
        })
        .collect()
}

/// Empty maps and absent ones mean the same: nothing injected.
fn normalized(metadata: Option<&PodTemplateMetadata>) -> PodTemplateMetadata {
    let non_empty = |map: &Option<std::collections::BTreeMap<String, String>>| {
        map.clone().filter(|m| !m.is_empty())
    };
    metadata.map_or_else(PodTemplateMetadata::default, |m| PodTemplateMetadata {
        labels: non_empty(&m.labels),
        annotations: non_empty(&m.annotations),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rs(hash: &str, recorded: Option<PodTemplateMetadata>) -> ReplicaSetView {
        ReplicaSetView {
            name: format!("web-{hash}"),
            pod_template_hash: Some(hash.to_owned()),
            revision: None,
            revision_history: None,
            spec_replicas: 1,
            replicas: 1,
            ready_replicas: 1,
            available_replicas: 1,
            status_current: true,
            scale_down_deadline: None,
            created_at: None,
            template: None,
            being_deleted: false,
            ephemeral_metadata: recorded,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> PodTemplateMetadata {
        PodTemplateMetadata {
            labels: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            annotations: None,
        }
    }

    /// `(replica set, wanted, previous)` of each action.
    fn changes(actions: &[Action]) -> Vec<(String, PodTemplateMetadata, PodTemplateMetadata)> {
        actions
            .iter()
            .map(|a| match a {
                Action::SetPodMetadata {
                    replica_set,
                    metadata,
                    previous,
                    ..
                } => (replica_set.clone(), metadata.clone(), previous.clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn during_an_update_the_new_pods_are_unpromoted_and_the_stable_pods_stable() {
        let (preview, active) = (
            labels(&[("role", "preview")]),
            labels(&[("role", "active")]),
        );
        let roles = RoleMetadata {
            unpromoted: Some(&preview),
            stable: Some(&active),
        };
        let old = rs("old", None);
        let new = rs("new", None);
        let actions = ephemeral_metadata(roles, Some("old"), &new, &[&old, &new]);
        assert_eq!(
            changes(&actions),
            vec![
                (
                    "web-new".to_owned(),
                    labels(&[("role", "preview")]),
                    PodTemplateMetadata::default()
                ),
                (
                    "web-old".to_owned(),
                    labels(&[("role", "active")]),
                    PodTemplateMetadata::default()
                ),
            ]
        );
    }

    #[test]
    fn promotion_gives_the_new_revision_the_stable_metadata_before_stripping_the_old() {
        let (preview, active) = (
            labels(&[("role", "preview")]),
            labels(&[("role", "active")]),
        );
        let roles = RoleMetadata {
            unpromoted: Some(&preview),
            stable: Some(&active),
        };
        let old = rs("old", Some(labels(&[("role", "active")])));
        let new = rs("new", Some(labels(&[("role", "preview")])));
        let actions = ephemeral_metadata(roles, Some("new"), &new, &[&old, &new]);
        assert_eq!(
            changes(&actions),
            vec![
                (
                    "web-new".to_owned(),
                    labels(&[("role", "active")]),
                    labels(&[("role", "preview")])
                ),
                (
                    "web-old".to_owned(),
                    PodTemplateMetadata::default(),
                    labels(&[("role", "active")])
                ),
            ]
        );
    }

    #[test]
    fn metadata_already_in_place_needs_no_write_and_empty_maps_count_as_none() {
        let (preview, active) = (
            labels(&[("role", "preview")]),
            labels(&[("role", "active")]),
        );
        let roles = RoleMetadata {
            unpromoted: Some(&preview),
            stable: Some(&active),
        };
        let old = rs("old", Some(labels(&[("role", "active")])));
        let new = rs("new", Some(labels(&[("role", "preview")])));
        assert_eq!(
            ephemeral_metadata(roles, Some("old"), &new, &[&old, &new]),
            vec![]
        );
        let empty = PodTemplateMetadata {
            labels: Some(BTreeMap::new()),
            annotations: None,
        };
        let plain = RoleMetadata {
            unpromoted: None,
            stable: Some(&empty),
        };
        let bare = rs("new", None);
        assert_eq!(ephemeral_metadata(plain, None, &bare, &[&bare]), vec![]);
    }
}
