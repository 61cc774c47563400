//! Where the upstream Argo Rollouts corpus (its `examples/` and `manifests/crds/`) is, for the
//! tests that hold Ramp to it. It lives outside this repository, so a test that needs it skips
//! when it is absent, unless `RAMP_REQUIRE_COMPAT=1` (CI) makes that a failure. Test support:
//! reads two environment variables and checks two directories exist, nothing more.

use std::path::{Path, PathBuf};

/// The folder holding `argo-rollouts/`; a relative path is taken from the workspace root.
/// Unset, it is `../shared/compat` beside the workspace.
pub const DIR_VAR: &str = "RAMP_COMPAT_DIR";
/// Set to `1` (any value but empty or `0`), an absent corpus fails the tests that need it.
pub const REQUIRE_VAR: &str = "RAMP_REQUIRE_COMPAT";

/// Upstream's repository, as far as the tests read it.
#[derive(Clone, Debug)]
pub struct ArgoRollouts {
    root: PathBuf,
}

impl ArgoRollouts {
    /// The `argo-rollouts/` folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn examples(&self) -> PathBuf {
        self.root.join("examples")
    }

    /// `file` under `examples/`, e.g. `rollout-canary.yaml`.
    pub fn example(&self, file: &str) -> PathBuf {
        self.examples().join(file)
    }

    pub fn crds(&self) -> PathBuf {
        self.root.join("manifests/crds")
    }

    /// `file` under `manifests/crds/`, e.g. `rollout-crd.yaml`.
    pub fn crd(&self, file: &str) -> PathBuf {
        self.crds().join(file)
    }
}

/// Where the corpus is looked for: `$RAMP_COMPAT_DIR/argo-rollouts`, by default
/// `<workspace>/../shared/compat/argo-rollouts`. It may not exist.
pub fn expected_location() -> PathBuf {
    // This crate sits at <workspace>/crates/ramp-sim.
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = crate_dir.ancestors().nth(2).unwrap_or(crate_dir);
    let compat = match std::env::var_os(DIR_VAR).filter(|dir| !dir.is_empty()) {
        Some(dir) => workspace.join(dir),
        None => workspace
            .parent()
            .unwrap_or(workspace)
            .join("shared/compat"),
    };
    compat.join("argo-rollouts")
}

/// The corpus, for a test that needs it. When it is absent this prints one line saying so and
/// returns `None`, and the caller returns (the test passes, skipped); with `RAMP_REQUIRE_COMPAT=1`
/// it panics with that line instead.
pub fn argo_rollouts() -> Option<ArgoRollouts> {
    let corpus = ArgoRollouts {
        root: expected_location(),
    };
    if corpus.examples().is_dir() && corpus.crds().is_dir() {
        return Some(corpus);
    }
    let absent = format!(
        "the Argo Rollouts corpus is not at {} (set {DIR_VAR} or clone ../shared beside the repo)",
        corpus.root.display()
    );
    let required = std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    if required {
        panic!("{REQUIRE_VAR} is set: {absent}");
    }
    // libtest names each test's thread after the test.
    match std::thread::current().name() {
        Some(test) if test != "main" => eprintln!("skipped {test}: {absent}"),
        _ => eprintln!("skipped: {absent}"),
    }
    None
}
