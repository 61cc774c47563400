//! `ramp demo` end to end: the binary runs the whole scenario on its in-process cluster and
//! exits 0 only when the objects show v2 promoted and the broken v3 aborted back to v2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use std::time::Duration;

#[test]
fn demo_promotes_v2_then_aborts_the_broken_v3_within_a_minute() {
    let output = Command::cargo_bin("ramp")
        .expect("ramp binary built")
        .arg("demo")
        .timeout(Duration::from_secs(90))
        .output()
        .expect("ramp demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ramp demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The live view showed the canary walking its weights and the abort.
    for expected in [
        "canary  20 %",
        "canary  50 %",
        "canary  80 %",
        "Degraded",
        "RolloutAborted",
    ] {
        assert!(
            stdout.contains(expected),
            "live view never showed {expected:?}:\n{stdout}"
        );
    }
    assert!(stdout.contains("demo finished"), "{stdout}");
}
