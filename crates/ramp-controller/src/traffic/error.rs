//! The one error type of the traffic routers. Every variant names the object (kind, namespace,
//! name) and what about it is wrong, so the controller can turn it into a condition and a
//! Warning event without adding context of its own.

use std::fmt;

/// A Kubernetes object a router reads or writes, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectName {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ObjectName {
    pub fn new(kind: &'static str, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Why a router could not make a `TrafficIntent` true.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// A referenced object does not exist.
    #[error("{object} not found: it is referenced by {referenced_by}")]
    NotFound {
        object: ObjectName,
        /// The rollout field naming it, e.g. `spec.strategy.canary.stableService`.
        referenced_by: String,
    },
    /// The object exists but lacks what the rollout needs in it (a route, a destination, a
    /// subset, a rule using the stable service).
    #[error("{object}: {detail}")]
    MissingInObject { object: ObjectName, detail: String },
    /// The object is claimed by another rollout through the managed-by annotation.
    #[error("{object} is managed by rollout '{owner}', not by '{rollout}'")]
    ManagedByOtherRollout {
        object: ObjectName,
        owner: String,
        rollout: String,
    },
    /// The canary Ingress exists but is not controlled by this rollout.
    #[error("{object} exists but is not controlled by rollout '{rollout}'")]
    NotControlledByRollout { object: ObjectName, rollout: String },
    /// The rollout's traffic configuration cannot be carried out as written.
    #[error("{field}: {detail}")]
    InvalidConfig { field: String, detail: String },
    /// A header or mirror route asks for something this router cannot express.
    #[error("{router} cannot express managed route '{route}': {detail}")]
    UnsupportedRoute {
        router: &'static str,
        route: String,
        detail: String,
    },
    /// Someone else kept changing the object between our read and our write.
    #[error(
        "{object} changed concurrently {attempts} times in a row; giving up for this reconcile"
    )]
    Conflict { object: ObjectName, attempts: u32 },
    /// The API server refused or failed a request.
    #[error("{verb} {object}: {source}")]
    Api {
        object: ObjectName,
        verb: &'static str,
        // Boxed: kube's error is large and this enum travels through every Result here.
        #[source]
        source: Box<kube::Error>,
    },
    /// The object read from the API server could not be decoded.
    #[error("{object} could not be decoded: {detail}")]
    Decode { object: ObjectName, detail: String },
}

impl TrafficError {
    /// Low-cardinality label for the controller's error metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::MissingInObject { .. } => "missing_in_object",
            Self::ManagedByOtherRollout { .. } => "managed_by_other_rollout",
            Self::NotControlledByRollout { .. } => "not_controlled_by_rollout",
            Self::InvalidConfig { .. } => "invalid_config",
            Self::UnsupportedRoute { .. } => "unsupported_route",
            Self::Conflict { .. } => "conflict",
            Self::Api { .. } => "api",
            Self::Decode { .. } => "decode",
        }
    }

    /// Reason of the Warning event upstream emits on the Rollout for this error.
    pub fn event_reason(&self) -> &'static str {
        match self {
            Self::NotFound { object, .. } if object.kind == "VirtualService" => {
                "VirtualServiceNotFound"
            }
            Self::NotFound { object, .. } if object.kind == "DestinationRule" => {
                "DestinationRuleNotFound"
            }
            _ => "TrafficRoutingError",
        }
    }

    /// Whether retrying later can succeed without anyone changing the rollout or the cluster
    /// (a transient API failure or a write race), as opposed to a configuration problem.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Conflict { .. } => true,
            Self::Api { source, .. } => !matches!(
                source.as_ref(),
                kube::Error::Api(status) if status.code == 400 || status.code == 403 || status.code == 422
            ),
            _ => false,
        }
    }

    pub(crate) fn api(object: ObjectName, verb: &'static str, source: kube::Error) -> Self {
        Self::Api {
            object,
            verb,
            source: Box::new(source),
        }
    }
}
