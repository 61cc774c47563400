//! The real `kubectl-ramp` binary against a cluster of either tier (ramp-sim's API server, or the
//! test's namespace of the real control plane with its controllers kept out): the objects a
//! controller would write at each stage of a canary and a blue-green release, each command's
//! effect on them, the exact patch (type and body) in the request log (the sim's, or the real
//! server's audit log) compared with the upstream plugin's (§6), `get` snapshots, `status` exit
//! codes, `--watch` redraws, listing, output formats, error messages, and the real `kubectl`
//! finding the plugin on the PATH.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod live_support;
mod plugin_common;

use assert_cmd::assert::OutputAssertExt;
use live_support::{RolloutWrite, as_in_default, merge_patch, rollout_write, stderr, stdout};
use plugin_common::*;
use pretty_assertions::assert_eq;
use ramp_sim::tier::skip_on_real_tier;
use ramp_sim::{LoggedRequest, Verb};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs the binary off the async runtime so the sim keeps serving meanwhile.
async fn run(mut cmd: assert_cmd::Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("the plugin runs"))
        .await
        .unwrap()
}

/// `(verb, resource[/subresource], patch type, body)` of each successful write to rollouts.
fn rollout_writes(cluster: &Cluster, since: usize) -> Vec<RolloutWrite> {
    cluster
        .cluster
        .request_log()
        .since_settled(since, std::time::Duration::from_secs(2))
        .into_iter()
        .filter(|e: &LoggedRequest| e.succeeded() && e.resource == "rollouts")
        .map(|e| rollout_write(&e))
        .collect()
}

async fn get_tree(cluster: &Cluster, name: &str) -> String {
    let mut cmd = cluster.plugin();
    cmd.args(["get", "rollout", name]);
    let output = run(cmd).await;
    assert!(
        output.status.success(),
        "get rollout failed: {}",
        stderr(&output)
    );
    as_in_default(&normalise_ages(&stdout(&output)))
}

/// Runs a command that must succeed and returns the rollout writes it made.
async fn command_writes(cluster: &Cluster, args: &[&str]) -> Vec<RolloutWrite> {
    let checkpoint = cluster.cluster.request_log().len();
    let mut cmd = cluster.plugin();
    cmd.args(args);
    let output = run(cmd).await;
    assert!(
        output.status.success(),
        "{args:?} failed: {}{}",
        stdout(&output),
        stderr(&output)
    );
    rollout_writes(cluster, checkpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_release_through_the_plugin() {
    let cluster = Cluster::start().await;
    let manifest = canary_rollout_manifest();

    cluster
        .apply_stage(&manifest, &canary::stable(), ns())
        .await;
    insta::assert_snapshot!("cluster_canary_1_stable", get_tree(&cluster, "web").await);

    // Step 1 pauses: promote clears the pause condition on the status subresource.
    cluster
        .apply_stage(&manifest, &canary::paused_at_step_1(), ns())
        .await;
    insta::assert_snapshot!("cluster_canary_2_paused", get_tree(&cluster, "web").await);
    let writes = command_writes(&cluster, &["promote", "web"]).await;
    assert_eq!(
        writes,
        vec![merge_patch(
            "rollouts/status",
            json!({"status": {"pauseConditions": null}})
        )]
    );
    let status = cluster.rollout(ns(), "web").await.status.unwrap();
    assert_eq!(status.pause_conditions, None);

    // During the analysis step nothing is paused: promote skips the step.
    cluster
        .apply_stage(&manifest, &canary::analysing_at_step_3(), ns())
        .await;
    insta::assert_snapshot!(
        "cluster_canary_3_analysing",
        get_tree(&cluster, "web").await
    );
    let writes = command_writes(&cluster, &["promote", "web"]).await;
    assert_eq!(
        writes,
        vec![merge_patch(
            "rollouts/status",
            json!({"status": {"pauseConditions": null, "currentStepIndex": 4}})
        )]
    );
    assert_eq!(
        cluster
            .rollout(ns(), "web")
            .await
            .status
            .unwrap()
            .current_step_index,
        Some(4)
    );

    // Abort, then the controller reports the aborted update.
    let writes = command_writes(&cluster, &["abort", "web"]).await;
    assert_eq!(
        writes,
        vec![merge_patch(
            "rollouts/status",
            json!({"status": {"abort": true}})
        )]
    );
    assert_eq!(
        cluster.rollout(ns(), "web").await.status.unwrap().abort,
        Some(true)
    );
    cluster
        .apply_stage(&manifest, &canary::aborted(), ns())
        .await;
    insta::assert_snapshot!("cluster_canary_4_aborted", get_tree(&cluster, "web").await);

    let mut cmd = cluster.plugin();
    cmd.args(["status", "web", "--timeout", "20s"]);
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(1), "degraded exits 1");
    assert!(
        stdout(&output)
            .starts_with("Degraded - RolloutAborted: Rollout aborted update to revision 2")
    );
    assert_eq!(
        stderr(&output).lines().collect::<Vec<_>>(),
        vec![
            "error: the rollout is in a degraded state with message: RolloutAborted: Rollout aborted update to revision 2: Metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0)"
        ]
    );

    let mut cmd = cluster.plugin();
    cmd.args(["history", "web"]);
    let history = stdout(&run(cmd).await);
    let outcomes: Vec<String> = history
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}", cols[0], cols[cols.len() - 1])
        })
        .collect();
    assert_eq!(outcomes, vec!["2 aborted", "1 stable"]);

    let writes = command_writes(&cluster, &["retry", "rollout", "web"]).await;
    assert_eq!(
        writes,
        vec![merge_patch(
            "rollouts/status",
            json!({"status": {"abort": false}})
        )]
    );
    assert_eq!(
        cluster.rollout(ns(), "web").await.status.unwrap().abort,
        Some(false)
    );

    cluster
        .apply_stage(&manifest, &canary::promoted(), ns())
        .await;
    insta::assert_snapshot!("cluster_canary_5_promoted", get_tree(&cluster, "web").await);
    let mut cmd = cluster.plugin();
    cmd.args(["status", "web"]);
    let output = run(cmd).await;
    output.clone().assert().success();
    assert_eq!(stdout(&output), "Healthy\n");

    let mut cmd = cluster.plugin();
    cmd.args(["promote", "web"]);
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: rollout \"web\" is already fully promoted: there is nothing to promote\n"
    );

    // Undo to revision 1: a JSON patch replacing the template with revision 1's ReplicaSet's
    // as stored (with the fields the real API server defaults in a ReplicaSet's pod template),
    // hash label stripped.
    let stable_rs: k8s_openapi::api::apps::v1::ReplicaSet =
        kube::Api::namespaced(cluster.cluster.client(), ns())
            .get(&format!("web-{STABLE_HASH}"))
            .await
            .unwrap();
    let mut template = serde_json::to_value(&stable_rs.spec.template).unwrap();
    template["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("rollouts-pod-template-hash");
    assert_eq!(template["metadata"], json!({"labels": {"app": "web"}}));
    assert_eq!(
        template["spec"]["containers"][0]["image"],
        json!("registry.example/web:1.0")
    );
    let writes = command_writes(&cluster, &["undo", "web", "--to-revision", "1"]).await;
    assert_eq!(
        writes,
        vec![(
            Verb::Patch,
            "rollouts".to_owned(),
            Some("json".to_owned()),
            json!([{"op": "replace", "path": "/spec/template", "value": template}])
        )]
    );
    let rollout = cluster.rollout(ns(), "web").await;
    assert_eq!(
        rollout.spec.template.unwrap().spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("registry.example/web:1.0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_release_through_the_plugin() {
    let cluster = Cluster::start().await;
    let manifest = blue_green_rollout_manifest();
    cluster
        .apply_stage(&manifest, &blue_green::active_blue(), ns())
        .await;
    insta::assert_snapshot!(
        "cluster_blue_green_1_blue",
        get_tree(&cluster, "shop").await
    );

    cluster
        .apply_stage(&manifest, &blue_green::green_in_preview(), ns())
        .await;
    insta::assert_snapshot!(
        "cluster_blue_green_2_preview",
        get_tree(&cluster, "shop").await
    );
    let writes = command_writes(&cluster, &["promote", "shop", "--full"]).await;
    assert_eq!(
        writes,
        vec![merge_patch(
            "rollouts/status",
            json!({"status": {"promoteFull": true}})
        )]
    );
    assert_eq!(
        cluster
            .rollout(ns(), "shop")
            .await
            .status
            .unwrap()
            .promote_full,
        Some(true)
    );
    let writes = command_writes(&cluster, &["promote", "shop"]).await;
    assert_eq!(
        writes,
        vec![merge_patch(
            "rollouts/status",
            json!({"status": {"pauseConditions": null}})
        )]
    );

    cluster
        .apply_stage(&manifest, &blue_green::green_active(), ns())
        .await;
    insta::assert_snapshot!(
        "cluster_blue_green_3_green",
        get_tree(&cluster, "shop").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_restart_and_set_image() {
    let cluster = Cluster::start().await;
    let manifest = canary_rollout_manifest();
    cluster
        .apply_stage(&manifest, &canary::paused_at_step_1(), ns())
        .await;

    let writes = command_writes(&cluster, &["pause", "web"]).await;
    assert_eq!(
        writes,
        vec![merge_patch("rollouts", json!({"spec": {"paused": true}}))]
    );
    assert_eq!(cluster.rollout(ns(), "web").await.spec.paused, Some(true));

    // Resume clears both the step's pause condition and the manual pause.
    let writes = command_writes(&cluster, &["resume", "web"]).await;
    assert_eq!(
        writes,
        vec![
            merge_patch(
                "rollouts/status",
                json!({"status": {"pauseConditions": null}})
            ),
            merge_patch("rollouts", json!({"spec": {"paused": false}})),
        ]
    );
    let rollout = cluster.rollout(ns(), "web").await;
    assert_eq!(rollout.spec.paused, Some(false));
    assert_eq!(rollout.status.unwrap().pause_conditions, None);

    let mut cmd = cluster.plugin();
    cmd.args(["resume", "web"]);
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: rollout \"web\" is not paused: there is nothing to resume\n"
    );

    let before = k8s_openapi::jiff::Timestamp::now();
    let writes = command_writes(&cluster, &["restart", "web", "--in", "1h"]).await;
    assert_eq!(writes.len(), 1);
    let (verb, resource, patch_type, body) = &writes[0];
    assert_eq!(
        (verb, resource.as_str(), patch_type.as_deref()),
        (&Verb::Patch, "rollouts", Some("merge"))
    );
    let restart_at = body["spec"]["restartAt"].as_str().unwrap();
    assert_eq!(body, &json!({"spec": {"restartAt": restart_at}}));
    assert!(
        restart_at.ends_with('Z') && !restart_at.contains('.'),
        "{restart_at}"
    );
    let at: k8s_openapi::jiff::Timestamp = restart_at.parse().unwrap();
    let offset = at.as_second() - before.as_second();
    assert!(
        (3590..=3610).contains(&offset),
        "restartAt {restart_at} is not an hour from now"
    );

    let writes = command_writes(
        &cluster,
        &["set", "image", "web", "web=registry.example/web:3.0"],
    )
    .await;
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].0, Verb::Update);
    assert_eq!(writes[0].1, "rollouts");
    let rollout = cluster.rollout(ns(), "web").await;
    assert_eq!(
        rollout.spec.template.unwrap().spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("registry.example/web:3.0")
    );

    let mut cmd = cluster.plugin();
    cmd.args(["set", "image", "web", "sidecar=busybox"]);
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: rollout \"web\": it has no container named \"sidecar\"\n"
    );
}

/// Reads a child's stdout on a thread so the test can wait for lines with a deadline.
struct LineReader {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LineReader {
    fn new(child: &mut std::process::Child) -> Self {
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineReader {
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Blocks until a line satisfying `wanted` arrives.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = wanted(&line);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("never saw {what}; output so far:\n{}", self.seen.join("\n")),
            }
        }
    }
}

fn spawn_plugin(cluster: &Cluster, args: &[&str]) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("kubectl-ramp"))
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the plugin never exited");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_the_rollout_until_healthy() {
    let cluster = Cluster::start().await;
    let manifest = canary_rollout_manifest();
    cluster
        .apply_stage(&manifest, &canary::paused_at_step_1(), ns())
        .await;

    let mut child = spawn_plugin(&cluster, &["status", "web", "--timeout", "30s"]);
    let mut reader = LineReader::new(&mut child);
    let mut waiting = tokio::task::spawn_blocking(move || {
        reader.wait_for("the paused status line", |l| {
            l == "Paused - CanaryPauseStep"
        });
        reader
    });
    let mut reader = (&mut waiting).await.unwrap();
    cluster
        .apply_stage(&manifest, &canary::promoted(), ns())
        .await;
    let (status, reader) = tokio::task::spawn_blocking(move || {
        reader.wait_for("the healthy status line", |l| l == "Healthy");
        (wait_exit(&mut child), reader)
    })
    .await
    .unwrap();
    assert!(status.success(), "status exits 0 once Healthy");
    assert_eq!(reader.seen, vec!["Paused - CanaryPauseStep", "Healthy"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_times_out_on_a_paused_rollout() {
    let cluster = Cluster::start().await;
    cluster
        .apply_stage(
            &canary_rollout_manifest(),
            &canary::paused_at_step_1(),
            ns(),
        )
        .await;
    let mut cmd = cluster.plugin();
    cmd.args(["status", "web", "--timeout", "3s"]);
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "Paused - CanaryPauseStep\n");
    assert_eq!(
        stderr(&output),
        "error: rollout status watch exceeded timeout 3s\n"
    );

    let mut cmd = cluster.plugin();
    cmd.args(["status", "web", "--watch=false"]);
    let output = run(cmd).await;
    assert!(output.status.success(), "paused is not degraded");
    assert_eq!(stdout(&output), "Paused - CanaryPauseStep\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_redraws_when_the_rollout_changes() {
    let cluster = Cluster::start().await;
    let manifest = canary_rollout_manifest();
    cluster
        .apply_stage(&manifest, &canary::paused_at_step_1(), ns())
        .await;

    let mut child = spawn_plugin(&cluster, &["get", "rollout", "web", "--watch"]);
    let reader = LineReader::new(&mut child);
    let mut reader = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        reader.wait_for("the first frame", |l| {
            l.starts_with("Status:") && l.ends_with("Paused")
        });
        reader.wait_for("the first frame's last pod", |l| {
            l.contains("web-6c8f9b7d4-p3")
        });
        reader
    })
    .await
    .unwrap();
    cluster
        .apply_stage(&manifest, &canary::analysing_at_step_3(), ns())
        .await;
    reader = tokio::task::spawn_blocking(move || {
        reader.wait_for("a redrawn frame at step 3", |l| {
            l.trim() == "Step:          3/4"
        });
        reader.wait_for("the analysis run in the redrawn tree", |l| {
            l.contains("AnalysisRun  Running")
        });
        reader
    })
    .await
    .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        reader
            .seen
            .iter()
            .any(|l| l.starts_with("Status:") && l.ends_with("Progressing"))
    );
}

/// `list rollouts -A` as it reads on ramp-sim, where the test's namespaces are all there is:
/// on the real tier only the rows of `namespaces` (real name, name on the sim), renamed, with
/// the columns re-aligned as the plugin aligns them (two spaces after the widest cell).
fn listed_as_in_sim(cluster: &Cluster, text: &str, namespaces: &[(&str, &str)]) -> String {
    if !cluster.cluster.is_real() {
        return text.to_owned();
    }
    let rows: Vec<Vec<String>> = text
        .lines()
        .enumerate()
        .filter_map(|(n, line)| {
            let mut cells: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            if n == 0 {
                return Some(cells);
            }
            let (_, on_sim) = namespaces
                .iter()
                .find(|(real, _)| cells.first().is_some_and(|c| c == real))?;
            cells[0] = (*on_sim).to_owned();
            Some(cells)
        })
        .collect();
    let mut widths = vec![0; rows.iter().map(Vec::len).max().unwrap_or(0)];
    for row in &rows {
        for (n, cell) in row.iter().enumerate() {
            widths[n] = widths[n].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: String = row
            .iter()
            .enumerate()
            .map(|(n, cell)| format!("{cell:<width$}  ", width = widths[n]))
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_output_formats() {
    let mut cluster = Cluster::start().await;
    let team_b = cluster.second_namespace().await;
    cluster
        .apply_stage(
            &canary_rollout_manifest(),
            &canary::paused_at_step_1(),
            ns(),
        )
        .await;
    cluster
        .apply_stage(
            &blue_green_rollout_manifest(),
            &blue_green::green_in_preview(),
            &team_b,
        )
        .await;

    let mut cmd = cluster.plugin();
    cmd.args(["list", "rollouts", "-A"]);
    let output = run(cmd).await;
    assert!(output.status.success(), "{}", stderr(&output));
    insta::assert_snapshot!(
        "cluster_list_all_namespaces",
        listed_as_in_sim(
            &cluster,
            &stdout(&output),
            &[(ns(), "default"), (&team_b, "team-b")]
        )
    );

    let mut cmd = cluster.plugin();
    cmd.args(["list", "rollouts", "-n", &team_b]);
    let listed = stdout(&run(cmd).await);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.lines().nth(1).unwrap().starts_with("shop "),
        "{listed}"
    );

    let mut cmd = cluster.plugin();
    cmd.args(["get", "rollout", "web", "-o", "json"]);
    let json: Value = serde_json::from_str(&stdout(&run(cmd).await)).unwrap();
    assert_eq!(json["kind"], "Rollout");
    assert_eq!(json["metadata"]["name"], "web");
    assert_eq!(json["status"]["phase"], "Paused");

    let mut cmd = cluster.plugin();
    cmd.args(["get", "rollout", "shop", "-n", &team_b, "-o", "yaml"]);
    let yaml: Value = serde_saphyr::from_str(&stdout(&run(cmd).await)).unwrap();
    assert_eq!(yaml["metadata"]["namespace"], json!(team_b));
    assert_eq!(
        yaml["spec"]["strategy"]["blueGreen"]["activeService"],
        "shop-active"
    );

    let mut cmd = cluster.plugin();
    cmd.args(["list", "rollouts", "-A", "-o", "json"]);
    let list: Value = serde_json::from_str(&stdout(&run(cmd).await)).unwrap();
    // On the real tier, other tests' rollouts are listed too.
    let mut names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            let namespace = i["metadata"]["namespace"].as_str();
            namespace == Some(ns()) || namespace == Some(team_b.as_str())
        })
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec!["shop", "web"]);

    let mut cmd = cluster.plugin();
    cmd.args(["history", "web", "-o", "json"]);
    let history: Value = serde_json::from_str(&stdout(&run(cmd).await)).unwrap();
    assert_eq!(history[0]["revision"], 2);
    assert_eq!(history[0]["outcome"], "paused");
    assert_eq!(history[0]["images"], json!(["registry.example/web:2.0"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_with_exit_code_1() {
    let cluster = Cluster::start().await;
    cluster
        .apply_stage(
            &canary_rollout_manifest(),
            &canary::paused_at_step_1(),
            ns(),
        )
        .await;
    let not_found_here = format!(
        "error: rollout \"nope\" not found in namespace \"{}\"\n",
        ns()
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["get", "rollout", "nope"], &not_found_here),
        (
            vec!["promote", "nope", "-n", "elsewhere"],
            "error: rollout \"nope\" not found in namespace \"elsewhere\"\n",
        ),
        (vec!["abort", "nope"], &not_found_here),
        (
            vec!["retry", "rollout", "web"],
            "error: rollout \"web\" is not aborted: only an aborted rollout can be retried\n",
        ),
        (
            vec!["restart", "web", "--in", "soon"],
            "error: --in: \"soon\" is not a duration: a number must precede each unit\n",
        ),
    ];
    for (args, expected) in cases {
        let checkpoint = cluster.cluster.request_log().len();
        let mut cmd = cluster.plugin();
        cmd.args(&args);
        let output = run(cmd).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&output), expected, "{args:?}");
        assert!(
            rollout_writes(&cluster, checkpoint).is_empty(),
            "{args:?} wrote nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_finds_the_plugin_on_the_path() {
    let kubectl = std::path::Path::new("/usr/bin/kubectl");
    assert!(kubectl.exists(), "kubectl is installed on every machine");
    let cluster = Cluster::start().await;
    cluster
        .apply_stage(&canary_rollout_manifest(), &canary::stable(), ns())
        .await;
    let plugin = assert_cmd::cargo::cargo_bin("kubectl-ramp");
    let dir = plugin.parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut cmd = assert_cmd::Command::new(kubectl);
    cmd.args(["ramp", "version"]).env("PATH", &path);
    let output = run(cmd).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!("kubectl-ramp: v{}\n", env!("CARGO_PKG_VERSION"))
    );

    let mut cmd = assert_cmd::Command::new(kubectl);
    cmd.args(["ramp", "get", "rollout", "web", "--kubeconfig"])
        .arg(cluster.kubeconfig())
        .env("PATH", &path)
        .env("NO_COLOR", "1");
    let output = run(cmd).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("Name:            web\n"), "{text}");
    assert!(text.contains("Status:          Healthy\n"), "{text}");
}

/// Without a status subresource the server answers 404 to `/status`; like upstream, the plugin
/// then sends the same change (spec and status together) to the main resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_patches_fall_back_to_the_main_resource() {
    let cluster = Cluster::start_without_rollout_status_subresource().await;
    if skip_on_real_tier(
        &cluster.cluster,
        "the Rollout CRD is cluster-wide there, shared by every test: it cannot lose its status \
         subresource for one",
    ) {
        return;
    }
    let mut stage = canary::paused_at_step_1();
    stage.paused = true;
    let mut value = rollout_at(&canary_rollout_manifest(), &stage);
    value["status"]["observedGeneration"] = json!("1");
    let rollouts: kube::Api<ramp_api::rollout::Rollout> =
        kube::Api::namespaced(cluster.cluster.client(), ns());
    rollouts
        .create(&Default::default(), &serde_json::from_value(value).unwrap())
        .await
        .unwrap();

    // The sim rejects the `/status` request before it reaches its request log, so only the
    // successful fallback write shows there; the command succeeding proves it fell back.
    let checkpoint = cluster.cluster.request_log().len();
    let mut cmd = cluster.plugin();
    cmd.args(["promote", "web"]);
    let output = run(cmd).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        rollout_writes(&cluster, checkpoint),
        vec![merge_patch(
            "rollouts",
            json!({"spec": {"paused": false}, "status": {"pauseConditions": null}})
        )]
    );
    let rollout = cluster.rollout(ns(), "web").await;
    assert_eq!(rollout.spec.paused, Some(false));
    assert_eq!(rollout.status.unwrap().pause_conditions, None);

    let writes = command_writes(&cluster, &["abort", "web"]).await;
    assert_eq!(
        writes,
        vec![merge_patch("rollouts", json!({"status": {"abort": true}}))]
    );
    assert_eq!(
        cluster.rollout(ns(), "web").await.status.unwrap().abort,
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_one_line_naming_it() {
    let dir = std::env::temp_dir().join(format!("kubectl-ramp-dead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    // Port 1 on loopback: nothing listens there.
    ramp_sim::api::write_kubeconfig(&kubeconfig, "http://127.0.0.1:1").unwrap();
    let mut cmd = assert_cmd::Command::cargo_bin("kubectl-ramp").unwrap();
    cmd.arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "rollout", "web"]);
    let output = run(cmd).await;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot reach the API server at http://127.0.0.1:1/: "),
        "{err}"
    );
}

/// `kubectl ramp lint` is `ramp lint`: same findings, same exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_is_the_ramp_lint_command() {
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lint/errors/rollout.yaml"
    );
    let mut plugin = assert_cmd::Command::cargo_bin("kubectl-ramp").unwrap();
    plugin.args(["lint", "-f", manifest]);
    let mut ramp = assert_cmd::Command::cargo_bin("ramp").unwrap();
    ramp.args(["lint", "-f", manifest]);
    let (from_plugin, from_ramp) = (run(plugin).await, run(ramp).await);
    assert_eq!(
        from_plugin.status.code(),
        Some(1),
        "{}",
        stderr(&from_plugin)
    );
    assert_eq!(from_plugin.status.code(), from_ramp.status.code());
    assert_eq!(stdout(&from_plugin), stdout(&from_ramp));
    assert!(!stdout(&from_plugin).is_empty());
}

/// On a terminal (a pseudo-terminal from util-linux `script`) the tree has colour and symbols;
/// `--no-color` keeps the symbols and drops the colour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_colour_and_symbols() {
    let cluster = Cluster::start().await;
    cluster
        .apply_stage(
            &canary_rollout_manifest(),
            &canary::paused_at_step_1(),
            ns(),
        )
        .await;
    let plugin = assert_cmd::cargo::cargo_bin("kubectl-ramp");
    let on_terminal = |extra: &str| {
        let line = format!(
            "{} --kubeconfig {} get rollout web{extra}",
            plugin.display(),
            cluster.kubeconfig()
        );
        let mut cmd = assert_cmd::Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env_remove("NO_COLOR");
        cmd
    };
    let coloured = run(on_terminal("")).await;
    assert!(coloured.status.success(), "{}", stderr(&coloured));
    let text = stdout(&coloured);
    assert!(text.contains("\x1b[90m॥ Paused\x1b[0m"), "{text}");
    assert!(text.contains("├──# revision:2"), "{text}");
    assert!(text.contains("\x1b[32m✔ Running\x1b[0m"), "{text}");

    let uncoloured = run(on_terminal(" --no-color")).await;
    let text = stdout(&uncoloured);
    assert!(
        text.contains("॥ Paused") && !text.contains("\x1b[90m"),
        "{text}"
    );
}

/// `--context` picks a kubeconfig context, whose namespace becomes the default; `-n` wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_comes_from_the_context_unless_given() {
    let mut cluster = Cluster::start().await;
    let team_b = cluster.second_namespace().await;
    cluster
        .apply_stage(
            &blue_green_rollout_manifest(),
            &blue_green::active_blue(),
            &team_b,
        )
        .await;
    // The cluster's kubeconfig (its server and credentials) with two contexts: `main`, the
    // current one, in the test's namespace, and `team-b` in the second one.
    let mut config = kube::config::Kubeconfig::read_from(cluster.cluster.kubeconfig_path())
        .expect("the cluster's kubeconfig");
    let first = config.contexts.first().cloned().expect("a context");
    let named = |name: &str, namespace: &str| {
        let mut named = first.clone();
        named.name = name.to_owned();
        if let Some(context) = named.context.as_mut() {
            context.namespace = Some(namespace.to_owned());
        }
        named
    };
    config.contexts = vec![named("main", ns()), named("team-b", &team_b)];
    config.current_context = Some("main".to_owned());
    let kubeconfig =
        std::env::temp_dir().join(format!("kubectl-ramp-contexts-{}.yaml", std::process::id()));
    std::fs::write(&kubeconfig, serde_json::to_vec(&config).unwrap()).unwrap();
    let plugin = |args: &[&str]| {
        let mut cmd = assert_cmd::Command::cargo_bin("kubectl-ramp").unwrap();
        cmd.arg("--kubeconfig").arg(&kubeconfig).args(args);
        cmd
    };
    let in_current = run(plugin(&["status", "shop", "--watch=false"])).await;
    let with_context = run(plugin(&[
        "--context",
        "team-b",
        "status",
        "shop",
        "--watch=false",
    ]))
    .await;
    let with_namespace = run(plugin(&["status", "shop", "--watch=false", "-n", &team_b])).await;
    std::fs::remove_file(&kubeconfig).unwrap();
    assert_eq!(
        stderr(&in_current),
        format!(
            "error: rollout \"shop\" not found in namespace \"{}\"\n",
            ns()
        )
    );
    assert_eq!(
        stdout(&with_context),
        "Healthy\n",
        "{}",
        stderr(&with_context)
    );
    assert_eq!(
        stdout(&with_namespace),
        "Healthy\n",
        "{}",
        stderr(&with_namespace)
    );
}
