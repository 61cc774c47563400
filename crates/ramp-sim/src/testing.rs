//! Support for the tests and `ramp demo` that drive the emulated cluster: starting it with
//! CRDs installed, stand-in CRDs for the mesh, deadline-bound polling, and a background task
//! (a controller, say) that stops on a signal. Nothing here knows Ramp's controllers: callers
//! bring them, so every crate that depends on the sim can share this.

use crate::{Sim, SimConfig, SimError, SimHandle};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("creating CustomResourceDefinition {name}: {source}")]
    Crd {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Starts a sim and creates `crds` in it, in order.
pub async fn start_with_crds(
    config: SimConfig,
    crds: impl IntoIterator<Item = CustomResourceDefinition>,
) -> Result<SimHandle, StartError> {
    let sim = Sim::start(config).await?;
    let api = Api::<CustomResourceDefinition>::all(sim.client());
    for crd in crds {
        api.create(&PostParams::default(), &crd)
            .await
            .map_err(|source| StartError::Crd {
                name: crd.metadata.name.clone().unwrap_or_default(),
                source,
            })?;
    }
    Ok(sim)
}

/// A namespaced `networking.istio.io` CRD of `kind` served at each of `versions` (the first
/// one stored), whose spec and status take anything: the sim needs the type, not Istio's
/// schema.
pub fn istio_crd(plural: &str, kind: &str, versions: &[&str]) -> CustomResourceDefinition {
    let anything = JSONSchemaProps {
        type_: Some("object".to_owned()),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..JSONSchemaProps::default()
    };
    let schema = JSONSchemaProps {
        type_: Some("object".to_owned()),
        properties: Some(BTreeMap::from([
            ("spec".to_owned(), anything.clone()),
            ("status".to_owned(), anything),
        ])),
        ..JSONSchemaProps::default()
    };
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{plural}.networking.istio.io")),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: "networking.istio.io".to_owned(),
            scope: "Namespaced".to_owned(),
            names: CustomResourceDefinitionNames {
                plural: plural.to_owned(),
                singular: Some(kind.to_lowercase()),
                kind: kind.to_owned(),
                list_kind: Some(format!("{kind}List")),
                ..CustomResourceDefinitionNames::default()
            },
            versions: versions
                .iter()
                .enumerate()
                .map(|(n, version)| CustomResourceDefinitionVersion {
                    name: (*version).to_owned(),
                    served: true,
                    storage: n == 0,
                    schema: Some(CustomResourceValidation {
                        open_api_v3_schema: Some(schema.clone()),
                    }),
                    ..CustomResourceDefinitionVersion::default()
                })
                .collect(),
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    }
}

/// Polls `check` every 50 ms until it returns `Some`, and returns that.
///
/// # Panics
///
/// After `secs` seconds without `Some`, with `what` in the message: a test's failure saying
/// what never happened.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never happened within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads object `name` through `api` every 50 ms until it satisfies `check`, and returns it;
/// read errors (not there yet, say) count as not yet.
///
/// # Panics
///
/// As [`eventually`]: after `secs` seconds, with `what` in the message.
pub async fn eventually_object<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    secs: u64,
    check: impl Fn(&K) -> bool,
) -> K
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(what, secs, || {
        let check = &check;
        async move { api.get(name).await.ok().filter(|object| check(object)) }
    })
    .await
}

/// The signal a [`Background`] task gets: resolves once the task is asked to stop. Cloneable,
/// so one signal can reach several controllers.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// A task spawned on the runtime with a [`Shutdown`] signal, stopped gracefully or killed.
#[derive(Debug)]
pub struct Background {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Background {
    /// Spawns what `start` returns for a fresh shutdown signal.
    pub fn spawn<Fut>(start: impl FnOnce(Shutdown) -> Fut) -> Self
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        }
        .boxed()
        .shared();
        Self {
            stop,
            task: tokio::spawn(start(shutdown)),
        }
    }

    /// Signals shutdown and waits for the task to finish on its own.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// Drops the task mid-flight, as a crash would, and waits until it is gone.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Signals shutdown and drops the task without waiting: for `Drop` impls, which cannot.
    pub fn abort(self) {
        let _ = self.stop.send(());
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    use serde_json::json;

    fn virtual_services(client: kube::Client, version: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("networking.istio.io", version, "VirtualService");
        Api::namespaced_with(client, "default", &ApiResource::from_gvk(&gvk))
    }

    #[tokio::test]
    async fn an_istio_crd_is_served_at_each_of_its_versions() {
        let crd = istio_crd(
            "virtualservices",
            "VirtualService",
            &["v1alpha3", "v1beta1"],
        );
        let sim = start_with_crds(SimConfig::api_only(), [crd]).await.unwrap();
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"hosts": ["web"], "anything": {"goes": true}},
        }))
        .unwrap();
        virtual_services(sim.client(), "v1beta1")
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
        let read = virtual_services(sim.client(), "v1alpha3")
            .get("web")
            .await
            .unwrap();
        assert_eq!(read.data["spec"]["anything"], json!({"goes": true}));
        assert!(
            virtual_services(sim.client(), "v1")
                .get("web")
                .await
                .is_err(),
            "v1 was not asked for"
        );
    }

    #[tokio::test]
    async fn a_refused_crd_is_named_in_the_error() {
        let crd = istio_crd("destinationrules", "DestinationRule", &["v1beta1"]);
        let Err(error) = start_with_crds(SimConfig::api_only(), [crd.clone(), crd]).await else {
            panic!("a second create of the same CRD succeeded");
        };
        assert!(
            matches!(&error, StartError::Crd { name, .. } if name == "destinationrules.networking.istio.io"),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn eventually_returns_the_first_value_found() {
        let mut polls = 0;
        let found = eventually("the third poll", 5, || {
            polls += 1;
            let now = polls;
            async move { (now == 3).then_some(now) }
        })
        .await;
        assert_eq!(found, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "the impossible: never happened within 0 s")]
    async fn eventually_names_what_never_happened() {
        eventually("the impossible", 0, || async { None::<()> }).await;
    }

    #[tokio::test]
    async fn a_background_task_stops_on_its_signal_and_dies_when_killed() {
        let (finished, mut finished_rx) = tokio::sync::mpsc::unbounded_channel();
        let graceful = Background::spawn(|shutdown| {
            let finished = finished.clone();
            async move {
                shutdown.await;
                let _ = finished.send("stopped");
            }
        });
        tokio::time::timeout(Duration::from_secs(5), graceful.stop())
            .await
            .unwrap();
        assert_eq!(finished_rx.try_recv().ok(), Some("stopped"));

        let killed = Background::spawn(|shutdown| async move {
            shutdown.await;
            let _ = finished.send("killed");
        });
        killed.kill().await;
        assert!(
            finished_rx.try_recv().is_err(),
            "a killed task ran to its end"
        );
    }
}
