//! The patch each `kubectl ramp` command builds, compared with the upstream plugin's exact
//! bodies (compatibility reference §6), and the refusals that protect the operator.
#![allow(clippy::unwrap_used)]

mod plugin_common;

use plugin_common::*;
use pretty_assertions::assert_eq;
use ramp_api::rollout::Rollout;
use ramp_cli::plugin::PluginError;
use ramp_cli::plugin::patches::{self, RolloutPatches, UndoPlan};
use serde_json::json;

fn canary_at(stage: &Stage) -> Rollout {
    family_at(&canary_rollout_manifest(), stage).rollout
}

#[test]
fn promote_clears_the_pause_conditions_of_a_paused_step() {
    let plan = patches::promote(&canary_at(&canary::paused_at_step_1()), false).unwrap();
    assert_eq!(
        plan,
        RolloutPatches {
            spec: None,
            status: Some(json!({"status": {"pauseConditions": null}})),
            unified: Some(json!({"status": {"pauseConditions": null}})),
        }
    );
}

#[test]
fn promote_skips_the_current_step_when_nothing_is_paused() {
    let plan = patches::promote(&canary_at(&canary::analysing_at_step_3()), false).unwrap();
    assert_eq!(
        plan.status,
        Some(json!({"status": {"pauseConditions": null, "currentStepIndex": 4}}))
    );
    assert_eq!(plan.spec, None);
}

#[test]
fn promote_after_an_inconclusive_analysis_moves_past_the_step() {
    let mut stage = canary::analysing_at_step_3();
    stage.status["canary"]["currentStepAnalysisRunStatus"]["status"] = json!("Inconclusive");
    stage.status["controllerPause"] = json!(true);
    stage.status["pauseConditions"] =
        json!([{"reason": "InconclusiveAnalysisRun", "startTime": CREATED}]);
    let plan = patches::promote(&canary_at(&stage), false).unwrap();
    assert_eq!(
        plan.status,
        Some(
            json!({"status": {"pauseConditions": null, "controllerPause": false, "currentStepIndex": 4}})
        )
    );
}

#[test]
fn promote_of_a_manually_paused_rollout_also_unpauses_the_spec() {
    let mut stage = canary::paused_at_step_1();
    stage.paused = true;
    let plan = patches::promote(&canary_at(&stage), false).unwrap();
    assert_eq!(plan.spec, Some(json!({"spec": {"paused": false}})));
    assert_eq!(
        plan.status,
        Some(json!({"status": {"pauseConditions": null}}))
    );
    assert_eq!(
        plan.unified,
        Some(json!({"spec": {"paused": false}, "status": {"pauseConditions": null}}))
    );
}

#[test]
fn promote_full_sets_promote_full() {
    let plan = patches::promote(&canary_at(&canary::paused_at_step_1()), true).unwrap();
    assert_eq!(plan.status, Some(json!({"status": {"promoteFull": true}})));
    assert_eq!(plan.spec, None);
}

#[test]
fn promote_of_a_fully_promoted_rollout_is_refused() {
    for full in [false, true] {
        let err = patches::promote(&canary_at(&canary::stable()), full).unwrap_err();
        assert!(matches!(err, PluginError::AlreadyPromoted { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "rollout \"web\" is already fully promoted: there is nothing to promote"
        );
    }
}

#[test]
fn blue_green_promote_clears_the_blue_green_pause() {
    let rollout = family_at(
        &blue_green_rollout_manifest(),
        &blue_green::green_in_preview(),
    )
    .rollout;
    let plan = patches::promote(&rollout, false).unwrap();
    assert_eq!(
        plan.status,
        Some(json!({"status": {"pauseConditions": null}}))
    );
}

#[test]
fn abort_and_retry() {
    assert_eq!(
        patches::abort().status,
        Some(json!({"status": {"abort": true}}))
    );
    let retry = patches::retry(&canary_at(&canary::aborted())).unwrap();
    assert_eq!(retry.status, Some(json!({"status": {"abort": false}})));
    let err = patches::retry(&canary_at(&canary::paused_at_step_1())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rollout \"web\" is not aborted: only an aborted rollout can be retried"
    );
}

#[test]
fn pause_and_resume() {
    assert_eq!(
        patches::pause().spec,
        Some(json!({"spec": {"paused": true}}))
    );
    assert_eq!(patches::pause().status, None);
    let mut stage = canary::paused_at_step_1();
    stage.paused = true;
    let resume = patches::resume(&canary_at(&stage)).unwrap();
    assert_eq!(resume.spec, Some(json!({"spec": {"paused": false}})));
    assert_eq!(
        resume.status,
        Some(json!({"status": {"pauseConditions": null}}))
    );
    let err = patches::resume(&canary_at(&canary::stable())).unwrap_err();
    assert!(matches!(err, PluginError::NotPaused { .. }), "{err}");
}

#[test]
fn restart_sets_restart_at_in_utc_whole_seconds() {
    let now = "2026-11-22T10:00:00.750Z".parse().unwrap();
    let plan = patches::restart(now, std::time::Duration::from_secs(90)).unwrap();
    assert_eq!(
        plan.spec,
        Some(json!({"spec": {"restartAt": "2026-11-22T10:01:30Z"}}))
    );
}

#[test]
fn undo_replaces_the_template_without_the_hash_label() {
    let family = family_at(&canary_rollout_manifest(), &canary::aborted());
    let plan = patches::undo(&family.rollout, &family.replica_sets, 0).unwrap();
    assert_eq!(
        plan,
        UndoPlan::Patch {
            revision: 1,
            json_patch: json!([{"op": "replace", "path": "/spec/template", "value": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:1.0"}]}
            }}]),
        }
    );
    let same = patches::undo(&family.rollout, &family.replica_sets, 2).unwrap();
    assert_eq!(same, UndoPlan::AlreadyAt { revision: 2 });
    let missing = patches::undo(&family.rollout, &family.replica_sets, 7).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "rollout \"web\": revision 7 not found in its history"
    );
}

#[test]
fn set_image_replaces_the_named_container_or_all() {
    let rollout = canary_at(&canary::stable());
    let updated = patches::set_image(&rollout, "web", "registry.example/web:3.0").unwrap();
    let containers = &updated.spec.template.unwrap().spec.unwrap().containers;
    assert_eq!(
        containers[0].image.as_deref(),
        Some("registry.example/web:3.0")
    );
    let all = patches::set_image(&rollout, "*", "registry.example/web:4.0").unwrap();
    assert_eq!(
        all.spec.template.unwrap().spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("registry.example/web:4.0")
    );
    let err = patches::set_image(&rollout, "sidecar", "x:1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "rollout \"web\": it has no container named \"sidecar\""
    );
    assert!(patches::parse_container_image("web").is_err());
    assert_eq!(
        patches::parse_container_image("web=a:b=c").unwrap(),
        ("web", "a:b=c")
    );
}

#[test]
fn api_errors_name_the_verb_resource_and_namespace() {
    use ramp_cli::plugin::errors::{RequestContext, Verb};
    let status = |code: u16| {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: "denied by policy".into(),
            ..Default::default()
        }))
    };
    let ctx = RequestContext {
        verb: Verb::Patch,
        resource: "rollouts/status",
        namespace: "shop",
        name: "web",
    };
    assert_eq!(
        ctx.error(status(403)).to_string(),
        "not authorised to patch rollouts/status in namespace \"shop\""
    );
    assert_eq!(
        ctx.error(status(404)).to_string(),
        "rollout \"web\" not found in namespace \"shop\""
    );
    assert_eq!(
        ctx.error(status(500)).to_string(),
        "cannot patch rollouts/status \"web\" in namespace \"shop\": denied by policy"
    );
}
