//! `ramp demo` end to end: the binary runs the whole scenario on its in-process cluster and
//! exits 0 only when the objects show v2 promoted, and the broken v3 and the failing v4 aborted
//! back to v2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use std::time::Duration;

/// Runs `ramp demo` with `args` and checks it finished, within a minute, with the live view
/// showing the weights, the analysis passing for v2 and failing for v4, and both aborts.
fn canary_demo(args: &[&str]) -> String {
    let started = std::time::Instant::now();
    let output = Command::cargo_bin("ramp")
        .expect("ramp binary built")
        .arg("demo")
        .args(args)
        .timeout(Duration::from_secs(90))
        .output()
        .expect("ramp demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ramp demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    for expected in [
        "canary  20 %",
        "canary  50 %",
        "canary  80 %",
        // (A first measurement may be an Error while Prometheus has too few samples.)
        "-2-1 Successful: [",
        "has timed out progressing",
        "-4-1 Failed: [",
        "Step-based analysis phase failed: Metric \"success-rate\" assessed Failed",
        "demo finished: v2 promoted to 100 %, broken v3 and failing v4 aborted, traffic on v2",
    ] {
        assert!(
            stdout.contains(expected),
            "live view never showed {expected:?}:\n{stdout}"
        );
    }
    stdout
}

#[test]
fn demo_promotes_v2_then_aborts_the_broken_v3_and_the_failing_v4_within_a_minute() {
    let stdout = canary_demo(&[]);
    // This machine has Prometheus (the test command installs it), so `auto` uses it.
    assert!(
        stdout.contains("success-rate gate: Prometheus at"),
        "{stdout}"
    );
}

#[test]
fn demo_without_prometheus_gates_on_the_web_provider() {
    let stdout = canary_demo(&["--metrics", "web"]);
    assert!(
        stdout.contains("success-rate gate: the web provider reads http://127.0.0.1:"),
        "{stdout}"
    );
}

#[test]
fn demo_bluegreen_previews_v2_promotes_it_and_scales_v1_down_within_a_minute() {
    let started = std::time::Instant::now();
    let output = Command::cargo_bin("ramp")
        .expect("ramp binary built")
        .args(["demo", "bluegreen"])
        .timeout(Duration::from_secs(90))
        .output()
        .expect("ramp demo bluegreen runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ramp demo bluegreen failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    // The live view showed preview and active on different revisions while paused, the two
    // preview pods next to v1's four, the switch, and v1 going away.
    for expected in [
        "BlueGreenPause",
        "rev1 4/4, rev2 2/2",
        "Switched selector for service 'demo-preview' from '",
        "Scaled up ReplicaSet",
        "from 2 to 4",
        "Completed blue-green update",
        "Scaled down ReplicaSet",
        "pods rev2 4/4 ",
        "demo finished: v2 previewed, promoted by hand",
    ] {
        assert!(
            stdout.contains(expected),
            "live view never showed {expected:?}:\n{stdout}"
        );
    }
    let paused_line = stdout
        .lines()
        .find(|l| {
            // A view line, not the RolloutPaused event printed under one.
            !l.trim_start().starts_with("event:")
                && l.contains("Paused")
                && l.contains("BlueGreenPause")
        })
        .expect("a paused line");
    assert!(
        paused_line.contains("active rev1") && paused_line.contains("preview rev2"),
        "{paused_line}"
    );
    // The active service moved exactly once after v1's deploy: at the promotion, to v2.
    let active_switches: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("Switched selector for service 'demo-active'"))
        .collect();
    assert_eq!(active_switches.len(), 2, "{stdout}");
    assert!(active_switches[0].contains("from ''"), "{stdout}");
    assert!(!active_switches[1].contains("from ''"), "{stdout}");
}
