//! Renderings of `kubectl ramp` from in-memory objects: the `get rollout` tree at each stage
//! of a canary and a blue-green release, `list rollouts` and `history`, with a fixed clock.
#![allow(clippy::unwrap_used)]

mod plugin_common;

use k8s_openapi::jiff::Timestamp;
use plugin_common::*;
use ramp_cli::plugin::render::{self, rollout_tree};
use ramp_cli::plugin::style::Style;

fn now() -> Timestamp {
    // Ten minutes after every fixture object was created.
    "2026-11-22T10:10:00Z".parse().unwrap()
}

fn tree(manifest: &serde_json::Value, stage: &Stage) -> String {
    rollout_tree(&family_at(manifest, stage), now(), &Style::plain())
}

#[test]
fn canary_stable() {
    insta::assert_snapshot!(tree(&canary_rollout_manifest(), &canary::stable()));
}

#[test]
fn canary_paused_at_step_1() {
    insta::assert_snapshot!(tree(
        &canary_rollout_manifest(),
        &canary::paused_at_step_1()
    ));
}

#[test]
fn canary_analysing_at_step_3() {
    insta::assert_snapshot!(tree(
        &canary_rollout_manifest(),
        &canary::analysing_at_step_3()
    ));
}

#[test]
fn canary_aborted() {
    insta::assert_snapshot!(tree(&canary_rollout_manifest(), &canary::aborted()));
}

#[test]
fn canary_promoted() {
    insta::assert_snapshot!(tree(&canary_rollout_manifest(), &canary::promoted()));
}

#[test]
fn blue_green_green_in_preview() {
    insta::assert_snapshot!(tree(
        &blue_green_rollout_manifest(),
        &blue_green::green_in_preview()
    ));
}

#[test]
fn blue_green_green_active() {
    insta::assert_snapshot!(tree(
        &blue_green_rollout_manifest(),
        &blue_green::green_active()
    ));
}

#[test]
fn terminal_style_uses_symbols_and_colour() {
    let family = family_at(&canary_rollout_manifest(), &canary::paused_at_step_1());
    let fancy = rollout_tree(&family, now(), &Style::fancy());
    assert!(fancy.contains("\x1b[90m॥ Paused\x1b[0m"), "{fancy}");
    assert!(fancy.contains("├──"), "{fancy}");
    let symbols_only = rollout_tree(
        &family,
        now(),
        &Style {
            color: false,
            symbols: true,
        },
    );
    assert!(!symbols_only.contains('\x1b'));
    insta::assert_snapshot!(symbols_only);
}

#[test]
fn plain_style_has_no_escape_codes_or_symbols() {
    let text = tree(&canary_rollout_manifest(), &canary::analysing_at_step_3());
    assert!(text.is_ascii(), "{text}");
}

#[test]
fn weights_follow_the_steps_and_the_available_pods() {
    let paused = family_at(&canary_rollout_manifest(), &canary::paused_at_step_1());
    assert_eq!(render::set_weight(&paused.rollout), 20);
    // One canary pod of five available.
    assert_eq!(render::actual_weight(&paused), 20);
    let analysing = family_at(&canary_rollout_manifest(), &canary::analysing_at_step_3());
    assert_eq!(render::set_weight(&analysing.rollout), 60);
    assert_eq!(render::actual_weight(&analysing), 60);
    let aborted = family_at(&canary_rollout_manifest(), &canary::aborted());
    assert_eq!(render::set_weight(&aborted.rollout), 0);
    assert_eq!(render::actual_weight(&aborted), 0);
    let promoted = family_at(&canary_rollout_manifest(), &canary::promoted());
    assert_eq!(render::set_weight(&promoted.rollout), 100);
    assert_eq!(render::actual_weight(&promoted), 100);
}

#[test]
fn list_table() {
    let mut rollouts = Vec::new();
    let mut web = family_at(&canary_rollout_manifest(), &canary::paused_at_step_1()).rollout;
    web.metadata.namespace = Some("team-a".into());
    rollouts.push(web);
    rollouts.push(family_at(&blue_green_rollout_manifest(), &blue_green::green_active()).rollout);
    insta::assert_snapshot!(render::rollout_table(&rollouts, true));
}

#[test]
fn history_of_an_aborted_update() {
    let family = family_at(&canary_rollout_manifest(), &canary::aborted());
    let entries = render::history(&family);
    let outcomes: Vec<(i64, &str)> = entries
        .iter()
        .map(|e| (e.revision, e.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, vec![(2, "aborted"), (1, "stable")]);
    insta::assert_snapshot!(render::history_table(&entries));
}

#[test]
fn history_names_a_rolled_back_revision() {
    // After `undo` to revision 1 the controller re-labels its ReplicaSet as revision 3 and
    // remembers the old number; once it is stable again the history says so.
    let mut stage = canary::stable();
    stage.replica_sets[0].revision = 3;
    stage.replica_sets.push(ReplicaSetFixture {
        app: "web",
        hash: CANARY_HASH,
        revision: 2,
        image: "registry.example/web:2.0",
        replicas: 0,
        ready: 0,
        restarts: 0,
    });
    let mut family = family_at(&canary_rollout_manifest(), &stage);
    let rolled_back = family
        .replica_sets
        .iter_mut()
        .find(|rs| rs.metadata.name.as_deref() == Some("web-6c8f9b7d4"))
        .unwrap();
    rolled_back
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("rollout.argoproj.io/revision-history".into(), "1".into());
    let outcomes: Vec<(i64, String)> = render::history(&family)
        .into_iter()
        .map(|e| (e.revision, e.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (3, "stable (rolled back to, was revision 1)".to_owned()),
            (2, "superseded".to_owned())
        ]
    );
}
