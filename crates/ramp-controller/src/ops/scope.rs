//! Which objects a controller instance owns: every namespace or only one (`--namespaced`), and
//! the objects of its controller instance (`--instance-id`). Turns both into the `Api`s and
//! watch label selectors the controllers use; the controllers decide nothing about scope.

use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::NamespaceResourceScope;
use kube::runtime::watcher;
use kube::{Client, Resource};

/// The label that assigns an object to one controller instance (upstream's name, so objects
/// labelled for an Argo Rollouts instance stay with that instance).
pub const INSTANCE_ID_LABEL: &str = "argo-rollouts.argoproj.io/controller-instance-id";

/// Where and what a controller instance watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchScope {
    /// Only this namespace; `None` watches every namespace.
    pub namespace: Option<String>,
    /// Only objects labelled with this instance id; `None` takes only unlabelled objects.
    pub instance_id: Option<String>,
}

impl WatchScope {
    /// The `Api` over the namespaced resource `K` in scope.
    pub fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }

    /// The `Api` over a namespaced resource known only at run time (Istio's kinds).
    pub fn api_with(&self, client: &Client, resource: &ApiResource) -> Api<DynamicObject> {
        match &self.namespace {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
            None => Api::all_with(client.clone(), resource),
        }
    }

    /// The watch configuration of the objects an instance reconciles (Rollouts, AnalysisRuns):
    /// filtered on the instance label by the API server, so other instances' objects never
    /// reach the cache.
    pub fn instance_watch(&self) -> watcher::Config {
        watcher::Config::default().labels(&instance_selector(self.instance_id.as_deref()))
    }
}

/// The label selector of an instance's objects: labelled with its id, or, without an id, not
/// labelled at all (an object labelled for a named instance is never the default's).
pub fn instance_selector(instance_id: Option<&str>) -> String {
    match instance_id.filter(|id| !id.is_empty()) {
        Some(id) => format!("{INSTANCE_ID_LABEL}={id}"),
        None => format!("!{INSTANCE_ID_LABEL}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_instance_selects_its_label_and_the_default_selects_its_absence() {
        assert_eq!(
            instance_selector(Some("blue")),
            "argo-rollouts.argoproj.io/controller-instance-id=blue"
        );
        assert_eq!(
            instance_selector(None),
            "!argo-rollouts.argoproj.io/controller-instance-id"
        );
        assert_eq!(instance_selector(Some("")), instance_selector(None));
    }
}
