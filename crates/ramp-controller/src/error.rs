//! The one error type of the Rollout controller: reading the world, applying a plan, writing
//! status. Every variant names the object it is about; `metric_label` gives the controller's
//! error metrics a low-cardinality label.

use crate::traffic::TrafficError;

/// Why one reconcile of one rollout failed. The error policy retries it with backoff; other
/// rollouts are not affected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request about `object` (`Kind namespace/name`).
    #[error("{verb} {object}: {source}")]
    Api {
        object: String,
        verb: &'static str,
        // Boxed: kube's error is large and travels through every Result of the controller.
        #[source]
        source: Box<kube::Error>,
    },
    /// A traffic router could not make the plan's traffic intent true.
    #[error("rollout {rollout}: {source}")]
    Traffic {
        rollout: String,
        #[source]
        source: TrafficError,
    },
    /// The Rollout object could not be decoded (it passed the CRD schema but not Ramp's types).
    #[error("Rollout {rollout} could not be decoded: {detail}")]
    Decode { rollout: String, detail: String },
    /// A value Ramp builds could not be encoded as JSON (a bug, reported rather than unwrapped).
    #[error("{object} could not be encoded: {source}")]
    Encode {
        object: String,
        #[source]
        source: serde_json::Error,
    },
    /// An eviction was refused (a PodDisruptionBudget): retried on a later reconcile.
    #[error("eviction of Pod {object} refused: {message}")]
    EvictionRefused { object: String, message: String },
}

impl Error {
    pub(crate) fn api(object: impl Into<String>, verb: &'static str, source: kube::Error) -> Self {
        Self::Api {
            object: object.into(),
            verb,
            source: Box::new(source),
        }
    }

    /// Low-cardinality label for the controller's error metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Api { .. } => "api",
            Self::Traffic { source, .. } => source.metric_label(),
            Self::Decode { .. } => "decode",
            Self::Encode { .. } => "encode",
            Self::EvictionRefused { .. } => "eviction_refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_failure_kind_and_messages_name_the_object() {
        let err = Error::EvictionRefused {
            object: "default/web-abc".to_owned(),
            message: "Cannot evict pod as it would violate the pod's disruption budget.".to_owned(),
        };
        assert_eq!(err.metric_label(), "eviction_refused");
        assert!(err.to_string().contains("default/web-abc"));
        let err = Error::Decode {
            rollout: "default/web".to_owned(),
            detail: "spec.replicas: invalid type".to_owned(),
        };
        assert_eq!(err.metric_label(), "decode");
        assert!(err.to_string().contains("spec.replicas"));
    }
}
