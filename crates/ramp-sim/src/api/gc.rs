//! The garbage collector and namespace lifecycle controller: deletes dependents whose owners
//! are gone (background cascade), finishes foreground deletions once blocking dependents are
//! gone, and empties terminating namespaces. Runs asynchronously like the real controllers.

use super::deletion::{Propagation, delete_locked, remove_object};
use super::server::ApiServer;
use super::store::{ObjectKey, Stored};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Weak;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum GcWork {
    /// An object was removed: its dependents may now be orphans.
    OwnerGone(String),
    /// An object with owner references was written: some owners may not exist.
    CheckOwners(String),
    /// An owner may be waiting in foreground deletion for its dependents.
    Foreground(String),
    /// A namespace may be terminating and have content left.
    Namespace(String),
}

/// The handle writers use to tell the collector what changed.
#[derive(Clone, Debug)]
pub struct GcQueue {
    tx: mpsc::UnboundedSender<GcWork>,
}

impl GcQueue {
    pub fn new() -> (Self, GcReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (GcQueue { tx }, GcReceiver { rx })
    }

    fn send(&self, work: GcWork) {
        // The collector is gone only when the whole server is shutting down.
        let _ = self.tx.send(work);
    }

    pub fn object_written(&self, object: &Stored) {
        if object.uid.is_empty() {
            return;
        }
        if object.deleting {
            self.send(GcWork::Foreground(object.uid.clone()));
        }
        if !object.owners.is_empty() {
            self.send(GcWork::CheckOwners(object.uid.clone()));
        }
    }

    pub fn object_removed(&self, object: &Stored) {
        if !object.uid.is_empty() {
            self.send(GcWork::OwnerGone(object.uid.clone()));
        }
        for owner in &object.owners {
            self.send(GcWork::Foreground(owner.clone()));
        }
        if !object.namespace.is_empty() {
            self.send(GcWork::Namespace(object.namespace.clone()));
        }
    }

    pub fn foreground(&self, uid: &str) {
        self.send(GcWork::Foreground(uid.to_owned()));
    }

    pub fn namespace_terminating(&self, name: &str) {
        self.send(GcWork::Namespace(name.to_owned()));
    }
}

pub struct GcReceiver {
    rx: mpsc::UnboundedReceiver<GcWork>,
}

/// Runs until the server is dropped.
pub(crate) async fn run(server: Weak<ApiServer>, mut receiver: GcReceiver) {
    while let Some(first) = receiver.rx.recv().await {
        let mut batch = BTreeSet::from([first]);
        while let Ok(more) = receiver.rx.try_recv() {
            batch.insert(more);
        }
        let Some(server) = server.upgrade() else {
            return;
        };
        for work in batch {
            process(&server, work);
        }
    }
}

fn process(server: &ApiServer, work: GcWork) {
    let mut state = server.lock();
    match work {
        GcWork::OwnerGone(uid) => {
            for dependent in state.dependents(&uid) {
                let Some(stored) = state.get_key(&dependent).cloned() else {
                    continue;
                };
                if stored.owners.iter().any(|o| state.uid_exists(o)) {
                    // Other owners remain: only the dangling reference goes, as the real GC does.
                    let mut updated = stored.value();
                    if let Some(refs) = updated
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                    }
                    let written = state.put(&dependent.gr, updated);
                    server.gc.object_written(&written);
                } else if !stored.deleting {
                    delete_locked(&mut state, &server.gc, &dependent, Propagation::Background);
                }
            }
        }
        GcWork::CheckOwners(uid) => {
            // Owner references naming no live object are dangling: like the real GC, delete
            // the dependent when every owner is gone, else drop only the dangling references.
            let Some(key) = state.key_of_uid(&uid) else {
                return;
            };
            let Some(stored) = state.get_key(&key).cloned() else {
                return;
            };
            let dead: Vec<String> = stored
                .owners
                .iter()
                .filter(|o| !state.uid_exists(o))
                .cloned()
                .collect();
            if dead.is_empty() {
                return;
            }
            if dead.len() == stored.owners.len() {
                if !stored.deleting {
                    delete_locked(&mut state, &server.gc, &key, Propagation::Background);
                }
                return;
            }
            let mut updated = stored.value();
            if let Some(refs) = updated
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| {
                    r.get("uid")
                        .and_then(Value::as_str)
                        .is_none_or(|u| !dead.iter().any(|d| d == u))
                });
            }
            let written = state.put(&key.gr, updated);
            server.gc.object_written(&written);
        }
        GcWork::Foreground(uid) => {
            let Some(key) = state.key_of_uid(&uid) else {
                return;
            };
            let Some(owner) = state.get_key(&key).map(|o| o.value()) else {
                return;
            };
            let waiting = owner
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|v| v.as_str() == Some("foregroundDeletion")));
            if !waiting || owner.pointer("/metadata/deletionTimestamp").is_none() {
                return;
            }
            let mut blocking = false;
            for dependent in state.dependents(&uid) {
                let Some(object) = state.get_key(&dependent).map(|o| o.value()) else {
                    continue;
                };
                let blocks = object
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter().any(|r| {
                            r.get("uid").and_then(Value::as_str) == Some(uid.as_str())
                                && r.get("blockOwnerDeletion").and_then(Value::as_bool)
                                    == Some(true)
                        })
                    });
                if object.pointer("/metadata/deletionTimestamp").is_none() {
                    delete_locked(&mut state, &server.gc, &dependent, Propagation::Foreground);
                }
                if blocks && state.get_key(&dependent).is_some() {
                    blocking = true;
                }
            }
            if blocking {
                return;
            }
            let mut updated = owner;
            if let Some(list) = updated
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                list.retain(|f| f.as_str() != Some("foregroundDeletion"));
            }
            let done = updated
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            state.put(&key.gr, updated);
            if done {
                remove_object(&mut state, &server.gc, &key);
            }
        }
        GcWork::Namespace(name) => {
            let ns_key = ObjectKey {
                gr: super::catalog::GroupResource::new("", "namespaces"),
                namespace: String::new(),
                name: name.clone(),
            };
            let Some(namespace) = state.get_key(&ns_key).map(|o| o.value()) else {
                return;
            };
            if namespace.pointer("/metadata/deletionTimestamp").is_none() {
                return;
            }
            let content = state.keys_in_namespace(&name);
            for key in &content {
                let deleting = state.get_key(key).is_some_and(|o| o.deleting);
                if !deleting {
                    delete_locked(&mut state, &server.gc, key, Propagation::Background);
                }
            }
            if !state.keys_in_namespace(&name).is_empty() {
                return;
            }
            let mut updated = namespace;
            if let Some(list) = updated
                .pointer_mut("/spec/finalizers")
                .and_then(Value::as_array_mut)
            {
                list.retain(|f| f.as_str() != Some("kubernetes"));
            }
            let blocked = updated
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            state.put(&ns_key.gr, updated);
            if !blocked {
                remove_object(&mut state, &server.gc, &ns_key);
            }
        }
    }
}
