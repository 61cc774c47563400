//! The object store: every object as shared JSON per resource, one global monotonic
//! resourceVersion, a bounded history of changes per resource for watches that resume from a
//! version, and the owner index garbage collection walks. No HTTP and no admission here.

use super::catalog::{Catalog, GroupResource};
use axum::body::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One stored object: its JSON at the storage version of its last write, plus the few fields
/// every list, watch and garbage-collection pass reads. Serialized bytes take a fraction of the
/// memory of a parsed `serde_json::Value` and are written without re-serializing to clients
/// asking for that version (`server::served` presents the object at any other).
#[derive(Debug)]
pub struct Stored {
    pub json: Bytes,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub owners: Vec<String>,
    pub deleting: bool,
}

impl Stored {
    pub fn from_value(object: &Value) -> Self {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Stored {
            json: Bytes::from(serde_json::to_vec(object).unwrap_or_default()),
            api_version: object
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            namespace: meta_str(object, "namespace").to_owned(),
            name: meta_str(object, "name").to_owned(),
            uid: meta_str(object, "uid").to_owned(),
            labels,
            owners: owner_uids(object),
            deleting: object.pointer("/metadata/deletionTimestamp").is_some(),
        }
    }

    /// The object parsed back into JSON.
    pub fn value(&self) -> Value {
        // The bytes were produced by serializing a `Value`, so they always parse.
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// One change to one object, shared by every watcher of its resource.
#[derive(Debug)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub rv: u64,
    pub object: Arc<Stored>,
    /// The object before the change, so selector watches can turn a change that leaves the
    /// selection into DELETED and one that enters it into ADDED.
    pub previous: Option<Arc<Stored>>,
}

/// Namespace ("" for cluster-scoped objects) and name: etcd's key order.
pub type ObjectName = (String, String);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub gr: GroupResource,
    pub namespace: String,
    pub name: String,
}

pub struct ResourceStore {
    pub objects: BTreeMap<ObjectName, Arc<Stored>>,
    history: VecDeque<Arc<WatchEvent>>,
    /// Every event with a version above this one is still in `history`.
    history_start: u64,
    tx: broadcast::Sender<Arc<WatchEvent>>,
}

impl ResourceStore {
    fn new(channel_capacity: usize) -> Self {
        ResourceStore {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_start: 0,
            tx: broadcast::channel(channel_capacity).0,
        }
    }
}

/// The retained events to replay and the receiver of live ones.
pub type Subscription = (Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>);

/// Why a watch cannot start from the version it asked for.
#[derive(Debug)]
pub struct TooOld {
    pub oldest: u64,
}

pub struct State {
    pub rv: u64,
    pub catalog: Catalog,
    stores: HashMap<GroupResource, ResourceStore>,
    /// Owner uid -> the objects whose ownerReferences name it.
    owners: HashMap<String, BTreeSet<ObjectKey>>,
    /// uid -> object, to tell a live owner from a dangling reference.
    uids: HashMap<String, ObjectKey>,
    history_limit: usize,
    channel_capacity: usize,
    rng: u64,
}

impl State {
    pub fn new(history_limit: usize, channel_capacity: usize) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        State {
            rv: 1,
            catalog: Catalog::with_builtins(),
            stores: HashMap::new(),
            owners: HashMap::new(),
            uids: HashMap::new(),
            history_limit: history_limit.max(1),
            channel_capacity: channel_capacity.max(16),
            rng: seed | 1,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: uids only need to be unique and unpredictable enough for tests.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A random version-4 UUID string.
    pub fn new_uid(&mut self) -> String {
        let a = self.next_random();
        let b = self.next_random();
        let hex = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-4{}-{:x}{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            8 + (b as u8 & 0x3),
            &hex[17..20],
            &hex[20..32]
        )
    }

    /// Five lowercase alphanumerics, as generateName appends.
    pub fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.next_random();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    fn store_mut(&mut self, gr: &GroupResource) -> &mut ResourceStore {
        let capacity = self.channel_capacity;
        self.stores
            .entry(gr.clone())
            .or_insert_with(|| ResourceStore::new(capacity))
    }

    pub fn get(&self, gr: &GroupResource, namespace: &str, name: &str) -> Option<&Arc<Stored>> {
        self.stores
            .get(gr)?
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
    }

    pub fn get_key(&self, key: &ObjectKey) -> Option<&Arc<Stored>> {
        self.get(&key.gr, &key.namespace, &key.name)
    }

    pub fn count(&self, gr: &GroupResource) -> usize {
        self.stores.get(gr).map_or(0, |s| s.objects.len())
    }

    /// Objects in key order, restricted to a namespace, starting strictly after `after`.
    pub fn range<'a>(
        &'a self,
        gr: &GroupResource,
        namespace: Option<&str>,
        after: Option<ObjectName>,
    ) -> Box<dyn Iterator<Item = (&'a ObjectName, &'a Arc<Stored>)> + 'a> {
        let Some(store) = self.stores.get(gr) else {
            return Box::new(std::iter::empty());
        };
        let lower = match (&after, namespace) {
            (Some(a), _) => Bound::Excluded(a.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_owned(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let ns = namespace.map(str::to_owned);
        Box::new(
            store
                .objects
                .range((lower, Bound::Unbounded))
                .take_while(move |((obj_ns, _), _)| ns.as_ref().is_none_or(|n| n == obj_ns)),
        )
    }

    pub fn keys_in_namespace(&self, namespace: &str) -> Vec<ObjectKey> {
        let mut keys = Vec::new();
        for (gr, store) in &self.stores {
            for (ns, name) in store.objects.keys() {
                if ns == namespace {
                    keys.push(ObjectKey {
                        gr: gr.clone(),
                        namespace: ns.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
        keys
    }

    pub fn dependents(&self, owner_uid: &str) -> Vec<ObjectKey> {
        self.owners
            .get(owner_uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn key_of_uid(&self, uid: &str) -> Option<ObjectKey> {
        self.uids.get(uid).cloned()
    }

    pub fn uid_exists(&self, uid: &str) -> bool {
        self.uids.contains_key(uid)
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Writes an object (new or replacing) at its resource's storage version, stamping the
    /// next resourceVersion.
    pub fn put(&mut self, gr: &GroupResource, mut object: Value) -> Arc<Stored> {
        let rv = self.next_rv();
        if let Some(def) = self.catalog.get(gr)
            && let Some(map) = object.as_object_mut()
        {
            map.insert(
                "apiVersion".to_owned(),
                Value::String(def.storage_api_version()),
            );
        }
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".to_owned(), Value::String(rv.to_string()));
        }
        let object = Arc::new(Stored::from_value(&object));
        let key = ObjectKey {
            gr: gr.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
        };
        let previous = self.store_mut(gr).objects.insert(
            (key.namespace.clone(), key.name.clone()),
            Arc::clone(&object),
        );
        if let Some(prev) = &previous {
            self.unindex(&key, prev);
        }
        self.index(&key, &object);
        let kind = if previous.is_some() {
            EventKind::Modified
        } else {
            EventKind::Added
        };
        self.publish(
            gr,
            WatchEvent {
                kind,
                rv,
                object: Arc::clone(&object),
                previous,
            },
        );
        object
    }

    /// Removes an object; the DELETED event carries the version of the deletion.
    pub fn remove(
        &mut self,
        gr: &GroupResource,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Stored>> {
        let existing = self
            .stores
            .get(gr)?
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))?
            .clone();
        let rv = self.next_rv();
        self.store_mut(gr)
            .objects
            .remove(&(namespace.to_owned(), name.to_owned()));
        let key = ObjectKey {
            gr: gr.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.unindex(&key, &existing);
        let mut last = existing.value();
        if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".to_owned(), Value::String(rv.to_string()));
        }
        let last = Arc::new(Stored::from_value(&last));
        self.publish(
            gr,
            WatchEvent {
                kind: EventKind::Deleted,
                rv,
                object: Arc::clone(&last),
                previous: Some(existing),
            },
        );
        Some(last)
    }

    /// Drops a whole resource (its CRD went away); watchers see their stream end.
    pub fn drop_resource(&mut self, gr: &GroupResource) {
        let names: Vec<ObjectName> = self
            .stores
            .get(gr)
            .map(|s| s.objects.keys().cloned().collect())
            .unwrap_or_default();
        for (ns, name) in names {
            self.remove(gr, &ns, &name);
        }
        self.stores.remove(gr);
    }

    fn publish(&mut self, gr: &GroupResource, event: WatchEvent) {
        let limit = self.history_limit;
        let store = self.store_mut(gr);
        let event = Arc::new(event);
        store.history.push_back(Arc::clone(&event));
        while store.history.len() > limit {
            if let Some(old) = store.history.pop_front() {
                store.history_start = old.rv;
            }
        }
        // No receivers is normal: nobody is watching this resource.
        let _ = store.tx.send(event);
    }

    /// Subscribes to a resource's changes after `from_rv`: the retained events to replay and
    /// the live receiver, taken together under the state lock so nothing falls in between.
    pub fn subscribe(&mut self, gr: &GroupResource, from_rv: u64) -> Result<Subscription, TooOld> {
        let store = self.store_mut(gr);
        if from_rv < store.history_start {
            return Err(TooOld {
                oldest: store.history_start,
            });
        }
        let replay = store
            .history
            .iter()
            .filter(|e| e.rv > from_rv)
            .cloned()
            .collect();
        Ok((replay, store.tx.subscribe()))
    }

    fn index(&mut self, key: &ObjectKey, object: &Stored) {
        if !object.uid.is_empty() {
            self.uids.insert(object.uid.clone(), key.clone());
        }
        for owner in &object.owners {
            self.owners
                .entry(owner.clone())
                .or_default()
                .insert(key.clone());
        }
    }

    fn unindex(&mut self, key: &ObjectKey, object: &Stored) {
        if !object.uid.is_empty() {
            self.uids.remove(&object.uid);
        }
        for owner in &object.owners {
            if let Some(set) = self.owners.get_mut(owner) {
                set.remove(key);
                if set.is_empty() {
                    self.owners.remove(owner);
                }
            }
        }
    }
}

pub fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The current time as Kubernetes serializes `metav1.Time` (RFC 3339, whole seconds, UTC).
pub fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::catalog::crd_to_def;
    use serde_json::json;

    #[test]
    fn objects_are_stored_at_their_resource_storage_version() {
        let mut state = State::new(10, 16);
        let crd = json!({
            "metadata": {"name": "virtualservices.networking.istio.io"},
            "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                "names": {"plural": "virtualservices", "kind": "VirtualService"},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true},
                ]},
        });
        state.catalog.insert(crd_to_def(&crd).expect("a valid CRD"));
        let gr = GroupResource::new("networking.istio.io", "virtualservices");
        let stored = state.put(
            &gr,
            json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                "metadata": {"name": "web", "namespace": "default"}, "spec": {"hosts": ["web"]}}),
        );
        assert_eq!(stored.api_version, "networking.istio.io/v1");
        assert_eq!(stored.value()["apiVersion"], "networking.istio.io/v1");
        assert_eq!(stored.value()["spec"], json!({"hosts": ["web"]}));
    }
}
