//! The `kubectl ramp` command line: global connection flags and one subcommand per runbook
//! action. Only argument shapes live here; behaviour is in `commands`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-ramp",
    bin_name = "kubectl ramp",
    version,
    about = "The release operator's console for Ramp (and Argo Rollouts) rollouts"
)]
pub struct PluginCli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the cluster; accepted before or after the subcommand, like kubectl's.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnectionArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of the rollout (default: the context's namespace, then `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a rollout as a tree of revisions, ReplicaSets, pods and AnalysisRuns.
    Get(GetArgs),
    /// List rollouts with their strategy, status, step and weights.
    List(ListArgs),
    /// Resume a paused rollout or skip the current step; `--full` skips every remaining step.
    Promote(PromoteArgs),
    /// Abort the update in progress and go back to the stable revision.
    Abort(RolloutName),
    /// Retry an aborted rollout.
    Retry(RetryArgs),
    /// Pause a rollout (`spec.paused`).
    Pause(RolloutName),
    /// Clear the pause conditions and `spec.paused` of a rollout.
    Resume(RolloutName),
    /// Roll back to an earlier revision's pod template.
    Undo(UndoArgs),
    /// Restart the rollout's pods, now or after a delay.
    Restart(RestartArgs),
    /// Change an image of a rollout's pod template.
    Set(SetArgs),
    /// Wait until the rollout is Healthy (exit 0) or Degraded (exit 1), printing progress.
    Status(StatusArgs),
    /// The rollout's revisions with their images, dates and how each ended.
    History(HistoryArgs),
    /// Check manifests offline (the same checks as `ramp lint`).
    Lint(crate::lint::LintArgs),
    /// Run an AnalysisTemplate's metrics against the live providers (the same as `ramp analyze`).
    Analyze(crate::analyze::AnalyzeArgs),
    /// Print the plugin's version.
    Version(VersionArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RolloutName {
    /// Name of the rollout.
    pub name: String,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Json,
    Yaml,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(subcommand)]
    pub what: GetWhat,
}

#[derive(Subcommand, Debug)]
pub enum GetWhat {
    /// Show one rollout.
    #[command(visible_aliases = ["ro", "rollouts"])]
    Rollout(GetRolloutArgs),
}

#[derive(Args, Debug)]
pub struct GetRolloutArgs {
    /// Name of the rollout.
    pub name: String,
    /// Redraw the tree on every change until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Never use colour, even on a terminal.
    #[arg(long)]
    pub no_color: bool,
    /// Print the Rollout object instead of the tree.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(subcommand)]
    pub what: ListWhat,
}

#[derive(Subcommand, Debug)]
pub enum ListWhat {
    /// List rollouts.
    #[command(visible_aliases = ["ro", "rollout"])]
    Rollouts(ListRolloutsArgs),
}

#[derive(Args, Debug)]
pub struct ListRolloutsArgs {
    /// List rollouts of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Print the Rollout objects instead of the table.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// Name of the rollout.
    pub name: String,
    /// Skip every remaining step, pause and analysis and go straight to 100%.
    #[arg(long)]
    pub full: bool,
}

#[derive(Args, Debug)]
pub struct RetryArgs {
    #[command(subcommand)]
    pub what: RetryWhat,
}

#[derive(Subcommand, Debug)]
pub enum RetryWhat {
    /// Retry an aborted rollout.
    #[command(visible_aliases = ["ro", "rollouts"])]
    Rollout(RolloutName),
}

#[derive(Args, Debug)]
pub struct UndoArgs {
    /// Name of the rollout.
    pub name: String,
    /// The revision to go back to (default: the previous one).
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    /// Name of the rollout.
    pub name: String,
    /// Restart after this delay (Go duration syntax: `30s`, `5m`, `1h30m`).
    #[arg(
        short = 'i',
        long = "in",
        value_name = "DURATION",
        default_value = "0s"
    )]
    pub delay: String,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(subcommand)]
    pub what: SetWhat,
}

#[derive(Subcommand, Debug)]
pub enum SetWhat {
    /// Set the image of a container (`*` for every container).
    Image(SetImageArgs),
}

#[derive(Args, Debug)]
pub struct SetImageArgs {
    /// Name of the rollout.
    pub name: String,
    /// `CONTAINER=IMAGE`.
    pub container_image: String,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Name of the rollout.
    pub name: String,
    /// Keep watching until Healthy or Degraded (`--watch=false` prints the status once).
    #[arg(
        short = 'w',
        long,
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub watch: bool,
    /// Give up after this long (Go duration syntax; `0` waits forever).
    #[arg(short = 't', long, value_name = "DURATION", default_value = "0")]
    pub timeout: String,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Name of the rollout.
    pub name: String,
    /// Print the revisions as JSON or YAML.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Print only the version number.
    #[arg(long)]
    pub short: bool,
}
