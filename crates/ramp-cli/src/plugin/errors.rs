//! Errors of `kubectl ramp`, each worded for the person at the terminal: which object, which
//! namespace, which verb. API errors are translated here so no command prints a raw status.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("cannot reach the API server: {0}")]
    Unreachable(String),
    #[error("cannot reach the API server at {server}: {message}")]
    UnreachableServer { server: String, message: String },
    #[error("rollout \"{name}\" not found in namespace \"{namespace}\"")]
    RolloutNotFound { name: String, namespace: String },
    #[error("not authorised to {verb} {resource} in namespace \"{namespace}\"")]
    Forbidden {
        verb: Verb,
        resource: String,
        namespace: String,
    },
    #[error("cannot {verb} {resource} \"{name}\" in namespace \"{namespace}\": {message}")]
    Api {
        verb: Verb,
        resource: String,
        name: String,
        namespace: String,
        message: String,
    },
    #[error("rollout \"{name}\" is already fully promoted: there is nothing to promote")]
    AlreadyPromoted { name: String },
    #[error("rollout \"{name}\" is not aborted: only an aborted rollout can be retried")]
    NotAborted { name: String },
    #[error("rollout \"{name}\" is not paused: there is nothing to resume")]
    NotPaused { name: String },
    #[error("rollout \"{name}\": {reason}")]
    Refused { name: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("the rollout is in a degraded state with message: {0}")]
    Degraded(String),
    #[error("rollout status watch exceeded timeout {0}")]
    StatusTimeout(String),
    #[error("cannot write the output: {0}")]
    Output(String),
    #[error("the watch on {resource} ended: {message}")]
    Watch { resource: String, message: String },
}

/// The API verbs the plugin uses, named as RBAC names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Patch,
    Update,
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Patch => "patch",
            Verb::Update => "update",
        })
    }
}

/// What a request was about, so a failure can name it.
#[derive(Clone, Debug)]
pub struct RequestContext<'a> {
    pub verb: Verb,
    /// Plural resource, with the subresource when there is one (`rollouts/status`).
    pub resource: &'a str,
    pub namespace: &'a str,
    /// The object's name; empty for lists and watches.
    pub name: &'a str,
}

impl RequestContext<'_> {
    /// Translates a kube error into the message a person can act on. A 404 on a rollout
    /// becomes "not found"; other kinds keep the server's reason.
    pub fn error(&self, err: kube::Error) -> PluginError {
        match err {
            kube::Error::Api(status) => {
                let code = status.code;
                let message = status.message.clone();
                if code == 403 {
                    PluginError::Forbidden {
                        verb: self.verb,
                        resource: self.resource.to_owned(),
                        namespace: self.namespace.to_owned(),
                    }
                } else if code == 404
                    && self.resource.starts_with("rollouts")
                    && !self.name.is_empty()
                {
                    PluginError::RolloutNotFound {
                        name: self.name.to_owned(),
                        namespace: self.namespace.to_owned(),
                    }
                } else {
                    PluginError::Api {
                        verb: self.verb,
                        resource: self.resource.to_owned(),
                        name: self.name.to_owned(),
                        namespace: self.namespace.to_owned(),
                        message: if message.is_empty() {
                            format!("the server answered {code}")
                        } else {
                            message
                        },
                    }
                }
            }
            kube::Error::HyperError(err) => PluginError::Unreachable(error_chain(&err)),
            kube::Error::Service(err) => PluginError::Unreachable(error_chain(err.as_ref())),
            other => PluginError::Api {
                verb: self.verb,
                resource: self.resource.to_owned(),
                name: self.name.to_owned(),
                namespace: self.namespace.to_owned(),
                message: other.to_string(),
            },
        }
    }
}

/// An error and its causes on one line (`client error (Connect): tcp connect error: ...`).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether a kube error is the server's 404.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}
