//! What each `kubectl ramp` command does against the API server: read the objects, ask
//! `patches` for the exact writes, send them (status subresource first where upstream does),
//! and print the outcome. Watches drive `get --watch` and `status`; nothing polls.

use super::cli::{
    Command, GetRolloutArgs, GetWhat, HistoryArgs, ListRolloutsArgs, ListWhat, OutputFormat,
    PluginCli, PromoteArgs, RestartArgs, RetryWhat, SetImageArgs, SetWhat, StatusArgs, UndoArgs,
    VersionArgs,
};
use super::connection::{Connection, connect};
use super::errors::{PluginError, RequestContext, Verb, is_not_found};
use super::health::rollout_health;
use super::patches::{self, RolloutPatches, UndoPlan};
use super::render::{self, RolloutFamily};
use super::style::Style;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use ramp_api::analysis::AnalysisRun;
use ramp_api::rollout::Rollout;
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

pub fn version(args: &VersionArgs) {
    let version = env!("CARGO_PKG_VERSION");
    if args.short {
        println!("v{version}");
    } else {
        println!("kubectl-ramp: v{version}");
    }
}

pub async fn run(cli: PluginCli) -> Result<ExitCode, PluginError> {
    let conn = connect(&cli.connection).await?;
    let server = conn.server.clone();
    dispatch(&conn, cli.command).await.map_err(|err| match err {
        PluginError::Unreachable(message) => PluginError::UnreachableServer { server, message },
        other => other,
    })
}

async fn dispatch(conn: &Connection, command: Command) -> Result<ExitCode, PluginError> {
    match command {
        Command::Get(args) => match args.what {
            GetWhat::Rollout(args) => get_rollout(conn, &args).await,
        },
        Command::List(args) => match args.what {
            ListWhat::Rollouts(args) => list_rollouts(conn, &args).await,
        },
        Command::Promote(args) => promote(conn, &args).await,
        Command::Abort(args) => {
            let rollouts = RolloutApi::new(conn);
            rollouts.send(&args.name, &patches::abort()).await?;
            println!("rollout '{}' aborted", args.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Retry(args) => match args.what {
            RetryWhat::Rollout(args) => {
                let rollouts = RolloutApi::new(conn);
                let rollout = rollouts.get(&args.name).await?;
                rollouts
                    .send(&args.name, &patches::retry(&rollout)?)
                    .await?;
                println!("rollout '{}' retried", args.name);
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Pause(args) => {
            let rollouts = RolloutApi::new(conn);
            rollouts.send(&args.name, &patches::pause()).await?;
            println!("rollout '{}' paused", args.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume(args) => {
            let rollouts = RolloutApi::new(conn);
            let rollout = rollouts.get(&args.name).await?;
            rollouts
                .send(&args.name, &patches::resume(&rollout)?)
                .await?;
            println!("rollout '{}' resumed", args.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Undo(args) => undo(conn, &args).await,
        Command::Restart(args) => restart(conn, &args).await,
        Command::Set(args) => match args.what {
            SetWhat::Image(args) => set_image(conn, &args).await,
        },
        Command::Status(args) => status(conn, &args).await,
        Command::History(args) => history(conn, &args).await,
        // Handled before a connection is made; kept here so the match stays exhaustive.
        Command::Lint(args) => {
            crate::lint::run(&args).map_err(|e| PluginError::Usage(format!("{e:#}")))
        }
        // `analyze` drives its own runtime; leave this one's context while it does.
        Command::Analyze(args) => Ok(tokio::task::block_in_place(|| crate::analyze::run(&args))),
        Command::Version(args) => {
            version(&args);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The rollouts of one namespace, with errors that name what was asked.
struct RolloutApi<'a> {
    api: Api<Rollout>,
    namespace: &'a str,
}

impl<'a> RolloutApi<'a> {
    fn new(conn: &'a Connection) -> Self {
        RolloutApi {
            api: Api::namespaced(conn.client.clone(), &conn.namespace),
            namespace: &conn.namespace,
        }
    }

    fn context<'b>(&'b self, verb: Verb, resource: &'b str, name: &'b str) -> RequestContext<'b> {
        RequestContext {
            verb,
            resource,
            namespace: self.namespace,
            name,
        }
    }

    async fn get(&self, name: &str) -> Result<Rollout, PluginError> {
        self.api
            .get(name)
            .await
            .map_err(|e| self.context(Verb::Get, "rollouts", name).error(e))
    }

    async fn merge(&self, name: &str, body: &Value) -> Result<Rollout, PluginError> {
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(body))
            .await
            .map_err(|e| self.context(Verb::Patch, "rollouts", name).error(e))
    }

    /// Sends a command's patches: the status patch to the status subresource, falling back to
    /// the unified patch on the main resource when the server has no such subresource (it
    /// answers 404), then the spec patch.
    async fn send(&self, name: &str, patches: &RolloutPatches) -> Result<(), PluginError> {
        let mut spec_sent = false;
        if let Some(status) = &patches.status {
            let outcome = self
                .api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
                .await;
            match outcome {
                Ok(_) => {}
                Err(err) if is_not_found(&err) => {
                    let unified = patches.unified.as_ref().unwrap_or(status);
                    self.merge(name, unified).await?;
                    spec_sent = true;
                }
                Err(err) => {
                    return Err(self
                        .context(Verb::Patch, "rollouts/status", name)
                        .error(err));
                }
            }
        }
        if let Some(spec) = &patches.spec
            && !spec_sent
        {
            self.merge(name, spec).await?;
        }
        Ok(())
    }
}

async fn list_or_empty<K>(
    api: Api<K>,
    resource: &str,
    namespace: &str,
) -> Result<Vec<K>, PluginError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        // A cluster without the AnalysisRun kind simply has none to show.
        Err(err) if is_not_found(&err) => Ok(Vec::new()),
        Err(err) => Err(RequestContext {
            verb: Verb::List,
            resource,
            namespace,
            name: "",
        }
        .error(err)),
    }
}

async fn load_family(conn: &Connection, name: &str) -> Result<RolloutFamily, PluginError> {
    let rollout = RolloutApi::new(conn).get(name).await?;
    let ns = &conn.namespace;
    let replica_sets = list_or_empty(
        Api::<ReplicaSet>::namespaced(conn.client.clone(), ns),
        "replicasets",
        ns,
    )
    .await?;
    let pods = list_or_empty(Api::<Pod>::namespaced(conn.client.clone(), ns), "pods", ns).await?;
    let runs = list_or_empty(
        Api::<AnalysisRun>::namespaced(conn.client.clone(), ns),
        "analysisruns",
        ns,
    )
    .await?;
    Ok(RolloutFamily::select(rollout, replica_sets, pods, runs))
}

fn print_object<T: Serialize>(value: &T, format: OutputFormat) -> Result<(), PluginError> {
    let text = match format {
        OutputFormat::Json => serde_json::to_string_pretty(value)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| PluginError::Output(e.to_string()))?,
        OutputFormat::Yaml => {
            serde_saphyr::to_string(value).map_err(|e| PluginError::Output(e.to_string()))?
        }
    };
    write_stdout(&text)
}

fn write_stdout(text: &str) -> Result<(), PluginError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| PluginError::Output(e.to_string()))
}

async fn get_rollout(conn: &Connection, args: &GetRolloutArgs) -> Result<ExitCode, PluginError> {
    if let Some(format) = args.output {
        let rollout = RolloutApi::new(conn).get(&args.name).await?;
        print_object(&rollout, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let style = Style::for_stdout(args.no_color);
    if !args.watch {
        let family = load_family(conn, &args.name).await?;
        write_stdout(&render::rollout_tree(&family, Timestamp::now(), &style))?;
        return Ok(ExitCode::SUCCESS);
    }
    watch_tree(conn, &args.name, &style).await
}

/// Which of the four watched kinds an event came from.
#[derive(Clone, Copy)]
enum Watched {
    Rollouts = 0,
    ReplicaSets = 1,
    Pods = 2,
    AnalysisRuns = 3,
}

impl Watched {
    fn resource(self) -> &'static str {
        match self {
            Watched::Rollouts => "rollouts",
            Watched::ReplicaSets => "replicasets",
            Watched::Pods => "pods",
            Watched::AnalysisRuns => "analysisruns",
        }
    }
}

/// `get rollout --watch`: keeps a local copy of the rollout's namespace (rollouts,
/// ReplicaSets, pods, AnalysisRuns) current through watches and redraws whenever the rendered
/// tree changes. On a terminal the screen is cleared first; piped, frames follow each other
/// separated by a blank line.
async fn watch_tree(conn: &Connection, name: &str, style: &Style) -> Result<ExitCode, PluginError> {
    use kube::runtime::WatchStreamExt;
    use kube::runtime::reflector;

    // Fail fast with a clear message rather than wait for a rollout that is not there.
    RolloutApi::new(conn).get(name).await?;
    let ns = &conn.namespace;
    let client = &conn.client;
    let config = watcher::Config::default();
    let (rollouts, rollouts_writer) = reflector::store::<Rollout>();
    let (replica_sets, rs_writer) = reflector::store::<ReplicaSet>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let (runs, runs_writer) = reflector::store::<AnalysisRun>();

    fn tag<E>(
        which: Watched,
    ) -> impl FnMut(Result<watcher::Event<E>, watcher::Error>) -> (Watched, bool, Option<String>)
    {
        move |event| match event {
            Ok(watcher::Event::InitDone) => (which, true, None),
            Ok(_) => (which, false, None),
            Err(err) => (which, true, Some(err.to_string())),
        }
    }

    let rollout_events = reflector(
        rollouts_writer,
        watcher(
            Api::<Rollout>::namespaced(client.clone(), ns),
            config.clone().fields(&format!("metadata.name={name}")),
        ),
    )
    .default_backoff()
    .map(tag(Watched::Rollouts))
    .boxed();
    let rs_events = reflector(
        rs_writer,
        watcher(
            Api::<ReplicaSet>::namespaced(client.clone(), ns),
            config.clone(),
        ),
    )
    .default_backoff()
    .map(tag(Watched::ReplicaSets))
    .boxed();
    let pod_events = reflector(
        pods_writer,
        watcher(Api::<Pod>::namespaced(client.clone(), ns), config.clone()),
    )
    .default_backoff()
    .map(tag(Watched::Pods))
    .boxed();
    let run_events = reflector(
        runs_writer,
        watcher(Api::<AnalysisRun>::namespaced(client.clone(), ns), config),
    )
    .default_backoff()
    .map(tag(Watched::AnalysisRuns))
    .boxed();
    let mut events =
        futures::stream::select_all([rollout_events, rs_events, pod_events, run_events]);

    let mut ready = [false; 4];
    let mut last_frame = String::new();
    let mut first = true;
    let mut warned = [false; 4];
    while let Some((which, init_done, error)) = events.next().await {
        // A kind the cluster does not serve (no AnalysisRun CRD) or that the user may not
        // watch errors instead of listing; say so once and render the rest without it.
        if let Some(error) = error
            && !warned[which as usize]
        {
            eprintln!("warning: cannot watch {}: {error}", which.resource());
            warned[which as usize] = true;
        }
        if init_done {
            ready[which as usize] = true;
        }
        if !ready.iter().all(|r| *r) {
            continue;
        }
        let Some(rollout) = rollouts.state().into_iter().next() else {
            continue;
        };
        let family = RolloutFamily::select(
            (*rollout).clone(),
            replica_sets.state().iter().map(|rs| (**rs).clone()),
            pods.state().iter().map(|p| (**p).clone()),
            runs.state().iter().map(|r| (**r).clone()),
        );
        let frame = render::rollout_tree(&family, Timestamp::now(), style);
        if frame == last_frame {
            continue;
        }
        let mut text = String::new();
        if style.symbols {
            text.push_str("\x1b[H\x1b[2J");
        } else if !first {
            text.push('\n');
        }
        text.push_str(&frame);
        write_stdout(&text)?;
        last_frame = frame;
        first = false;
    }
    Err(PluginError::Watch {
        resource: "rollouts".to_owned(),
        message: "the API server closed every watch".to_owned(),
    })
}

async fn list_rollouts(
    conn: &Connection,
    args: &ListRolloutsArgs,
) -> Result<ExitCode, PluginError> {
    let (api, namespace) = if args.all_namespaces {
        (Api::<Rollout>::all(conn.client.clone()), "(all namespaces)")
    } else {
        (
            Api::<Rollout>::namespaced(conn.client.clone(), &conn.namespace),
            conn.namespace.as_str(),
        )
    };
    let rollouts = api
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            RequestContext {
                verb: Verb::List,
                resource: "rollouts",
                namespace,
                name: "",
            }
            .error(e)
        })?
        .items;
    if let Some(format) = args.output {
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": rollouts,
        });
        print_object(&list, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rollouts.is_empty() {
        eprintln!(
            "No rollouts found in {}.",
            describe_namespace(args.all_namespaces, &conn.namespace)
        );
        return Ok(ExitCode::SUCCESS);
    }
    write_stdout(&render::rollout_table(&rollouts, args.all_namespaces))?;
    Ok(ExitCode::SUCCESS)
}

fn describe_namespace(all: bool, namespace: &str) -> String {
    if all {
        "any namespace".to_owned()
    } else {
        format!("namespace \"{namespace}\"")
    }
}

async fn promote(conn: &Connection, args: &PromoteArgs) -> Result<ExitCode, PluginError> {
    let rollouts = RolloutApi::new(conn);
    let rollout = rollouts.get(&args.name).await?;
    let plan = patches::promote(&rollout, args.full)?;
    rollouts.send(&args.name, &plan).await?;
    if args.full {
        println!("rollout '{}' fully promoted", args.name);
    } else {
        println!("rollout '{}' promoted", args.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_duration(flag: &str, text: &str) -> Result<Duration, PluginError> {
    ramp_api::duration::parse_seconds_or_duration(text)
        .map_err(|e| PluginError::Usage(format!("{flag}: {e}")))
}

async fn restart(conn: &Connection, args: &RestartArgs) -> Result<ExitCode, PluginError> {
    let delay = parse_duration("--in", &args.delay)?;
    let plan = patches::restart(Timestamp::now(), delay)?;
    RolloutApi::new(conn).send(&args.name, &plan).await?;
    if delay.is_zero() {
        println!("rollout '{}' restarts", args.name);
    } else {
        println!("rollout '{}' restarts in {}", args.name, args.delay);
    }
    Ok(ExitCode::SUCCESS)
}

async fn undo(conn: &Connection, args: &UndoArgs) -> Result<ExitCode, PluginError> {
    let family = load_family(conn, &args.name).await?;
    match patches::undo(&family.rollout, &family.replica_sets, args.to_revision)? {
        UndoPlan::AlreadyAt { revision } => {
            println!(
                "rollout '{}' already has the template of revision {revision}: nothing to undo",
                args.name
            );
        }
        UndoPlan::Patch {
            revision,
            json_patch,
        } => {
            let operations: json_patch::Patch =
                serde_json::from_value(json_patch).map_err(|e| PluginError::Refused {
                    name: args.name.clone(),
                    reason: format!("cannot build the undo patch: {e}"),
                })?;
            let api = Api::<Rollout>::namespaced(conn.client.clone(), &conn.namespace);
            api.patch(
                &args.name,
                &PatchParams::default(),
                &Patch::Json::<()>(operations),
            )
            .await
            .map_err(|e| {
                RequestContext {
                    verb: Verb::Patch,
                    resource: "rollouts",
                    namespace: &conn.namespace,
                    name: &args.name,
                }
                .error(e)
            })?;
            println!("rollout '{}' undo to revision {revision}", args.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_image(conn: &Connection, args: &SetImageArgs) -> Result<ExitCode, PluginError> {
    let (container, image) = patches::parse_container_image(&args.container_image)?;
    let rollouts = RolloutApi::new(conn);
    let rollout = rollouts.get(&args.name).await?;
    let updated = patches::set_image(&rollout, container, image)?;
    rollouts
        .api
        .replace(&args.name, &PostParams::default(), &updated)
        .await
        .map_err(|e| {
            rollouts
                .context(Verb::Update, "rollouts", &args.name)
                .error(e)
        })?;
    println!("rollout \"{}\" image updated", args.name);
    Ok(ExitCode::SUCCESS)
}

/// `status`: prints `Phase - message` whenever it changes until the rollout is Healthy
/// (exit 0) or Degraded (exit 1); `Paused` is not an end. Driven by a watch on the rollout.
async fn status(conn: &Connection, args: &StatusArgs) -> Result<ExitCode, PluginError> {
    let timeout = parse_duration("--timeout", &args.timeout)?;
    let rollouts = RolloutApi::new(conn);
    let rollout = rollouts.get(&args.name).await?;
    if !args.watch {
        let health = rollout_health(&rollout);
        println!("{}", health.line());
        if health.is_degraded() {
            return Err(PluginError::Degraded(health.message));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let follow = async {
        let mut last: Option<String> = None;
        let stream = watcher(
            rollouts.api.clone(),
            watcher::Config::default().fields(&format!("metadata.name={}", args.name)),
        );
        let mut stream = std::pin::pin!(stream);
        loop {
            let event = stream.try_next().await.map_err(|e| PluginError::Watch {
                resource: format!("rollout \"{}\"", args.name),
                message: e.to_string(),
            })?;
            let Some(event) = event else {
                return Err(PluginError::Watch {
                    resource: format!("rollout \"{}\"", args.name),
                    message: "the API server closed the watch".to_owned(),
                });
            };
            let rollout = match event {
                watcher::Event::Apply(r) | watcher::Event::InitApply(r) => r,
                watcher::Event::Delete(_) => {
                    return Err(PluginError::RolloutNotFound {
                        name: args.name.clone(),
                        namespace: conn.namespace.clone(),
                    });
                }
                watcher::Event::Init | watcher::Event::InitDone => continue,
            };
            let health = rollout_health(&rollout);
            let line = health.line();
            if last.as_deref() != Some(line.as_str()) {
                write_stdout(&format!("{line}\n"))?;
                last = Some(line);
            }
            if health.is_healthy() {
                return Ok(ExitCode::SUCCESS);
            }
            if health.is_degraded() {
                return Err(PluginError::Degraded(health.message));
            }
        }
    };
    if timeout.is_zero() {
        return follow.await;
    }
    match tokio::time::timeout(timeout, follow).await {
        Ok(outcome) => outcome,
        Err(_) => Err(PluginError::StatusTimeout(args.timeout.clone())),
    }
}

async fn history(conn: &Connection, args: &HistoryArgs) -> Result<ExitCode, PluginError> {
    let family = load_family(conn, &args.name).await?;
    let entries = render::history(&family);
    match args.output {
        Some(format) => print_object(&entries, format)?,
        None => write_stdout(&render::history_table(&entries))?,
    }
    Ok(ExitCode::SUCCESS)
}
