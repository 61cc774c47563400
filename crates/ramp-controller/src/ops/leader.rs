//! Leader election on a `coordination.k8s.io/v1` Lease with client-go's semantics and upstream's
//! lease name, so Ramp replicas (and, during a migration, Argo Rollouts' controller) never act
//! at the same time. Only the lease protocol lives here; what runs while leading is `ops::run`'s.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Upstream's lease name; an instance id is appended so separate instances elect separately.
pub const LEASE_NAME: &str = "argo-rollouts-controller-lock";

/// Namespace of the lease when neither `POD_NAMESPACE` nor a service account says otherwise
/// (upstream's default).
pub const DEFAULT_NAMESPACE: &str = "argo-rollouts";

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Which lease, who we are, and client-go's three timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// `holderIdentity` written while leading; unique per process.
    pub identity: String,
    /// How long a lease stays valid after its last renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The lease name for an instance id.
    pub fn lease_name(instance_id: Option<&str>) -> String {
        match instance_id.filter(|id| !id.is_empty()) {
            Some(id) => format!("{LEASE_NAME}-{id}"),
            None => LEASE_NAME.to_owned(),
        }
    }

    /// The controller's namespace: `POD_NAMESPACE`, else the service account's, else
    /// `argo-rollouts`.
    pub fn controller_namespace() -> String {
        if let Ok(namespace) = std::env::var("POD_NAMESPACE")
            && !namespace.trim().is_empty()
        {
            return namespace.trim().to_owned();
        }
        std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
            .ok()
            .map(|namespace| namespace.trim().to_owned())
            .filter(|namespace| !namespace.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
    }

    /// `<pod>_<suffix>`: the pod name tells people who leads, the suffix keeps a restarted
    /// container from mistaking its predecessor's lease for its own.
    pub fn unique_identity(pod_name: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{pod_name}_{:x}{:x}", std::process::id(), nanos)
    }

    /// client-go's constraints: the lease outlives the renew deadline, and the deadline leaves
    /// room for more than one retry.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let invalid = |reason: String| LeaderError::Timings {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            reason,
        };
        if self.retry_period.is_zero() {
            return Err(invalid("the retry period must be positive".to_owned()));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(invalid(format!(
                "the lease duration ({:?}) must be longer than the renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            )));
        }
        if self.renew_deadline.as_secs_f64() <= 1.2 * self.retry_period.as_secs_f64() {
            return Err(invalid(format!(
                "the renew deadline ({:?}) must be longer than 1.2 × the retry period ({:?})",
                self.renew_deadline, self.retry_period
            )));
        }
        if i32::try_from(self.lease_duration.as_secs().max(1)).is_err() {
            return Err(invalid("the lease duration is too long".to_owned()));
        }
        Ok(())
    }

    /// `leaseDurationSeconds`: whole seconds, at least one (the field's unit).
    fn lease_duration_seconds(&self) -> i32 {
        let rounded_up = self
            .lease_duration
            .as_secs()
            .saturating_add(u64::from(self.lease_duration.subsec_nanos() > 0));
        i32::try_from(rounded_up.max(1)).unwrap_or(i32::MAX)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("lease {namespace}/{name}: invalid leader election timings: {reason}")]
    Timings {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("lease {namespace}/{name}: leadership lost: {reason}")]
    Lost {
        namespace: String,
        name: String,
        reason: String,
    },
}

/// What one attempt to acquire or renew found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease until at least `renewTime + leaseDurationSeconds`.
    Held,
    /// Someone else holds a lease that has not expired.
    HeldBy(String),
    /// Another writer changed the lease between our read and our write.
    Contended,
}

/// One participant in the election.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// When we last wrote the lease as its holder; `None` while not leading.
    renewed_at: Option<Instant>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Result<Self, LeaderError> {
        config.validate()?;
        Ok(Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            renewed_at: None,
        })
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Whether our last write made us the holder.
    pub fn is_leading(&self) -> bool {
        self.renewed_at.is_some()
    }

    /// One round of client-go's `tryAcquireOrRenew`: read the lease; take it when it is
    /// missing, released, expired or ours; write with the read `resourceVersion` so that of
    /// two contenders only one succeeds.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, LeaderError> {
        let now = Timestamp::now();
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.api_error(e))?;
        let Some(current) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(self.held()),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(self.contended()),
                Err(error) => Err(self.api_error(error)),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        if let Some(holder) = &holder
            && !ours
            && !expired(&spec, now)
        {
            self.renewed_at = None;
            return Ok(Attempt::HeldBy(holder.clone()));
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let spec = if ours {
            let acquired = spec.acquire_time.map_or(now, |t| t.0);
            self.spec(acquired, now, transitions)
        } else {
            self.spec(now, now, transitions.saturating_add(1))
        };
        let mut lease = current;
        lease.spec = Some(spec);
        // `replace` sends the resourceVersion we read: a concurrent writer makes it fail with
        // 409 instead of both believing they lead.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(self.held()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(self.contended()),
            Err(error) => Err(self.api_error(error)),
        }
    }

    /// Returns once we hold the lease, trying every retry period.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return;
                }
                Ok(Attempt::HeldBy(holder)) => {
                    tracing::debug!(lease = %self.config.name, %holder, "standing by");
                }
                Ok(Attempt::Contended) => {}
                Err(LeaderError::Api {
                    namespace,
                    source: kube::Error::Api(status),
                    ..
                }) if status.code == 404 => tracing::warn!(
                    %namespace,
                    "cannot acquire the lease: namespace {namespace} does not exist; create it, \
                     set POD_NAMESPACE, or run with --leader-elect=false"
                ),
                Err(error) => tracing::warn!(%error, "cannot acquire the lease"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews every retry period while leading; returns why leadership ended: another holder
    /// took the lease, or no renewal succeeded within the renew deadline. Safe to call again
    /// after being cancelled: the deadline counts from the last successful renewal.
    pub async fn hold(&mut self) -> LeaderError {
        loop {
            let Some(renewed_at) = self.renewed_at else {
                return self.lost("not holding the lease".to_owned());
            };
            let deadline = renewed_at + self.config.renew_deadline;
            let next = (Instant::now() + self.config.retry_period).min(deadline);
            tokio::time::sleep_until(next.into()).await;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                self.renewed_at = None;
                return self.lost(format!(
                    "not renewed within the renew deadline ({:?})",
                    self.config.renew_deadline
                ));
            }
            match tokio::time::timeout(remaining, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held)) => {}
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    return self.lost(format!("{holder} holds it now"));
                }
                Ok(Ok(Attempt::Contended)) => {
                    tracing::warn!(lease = %self.config.name, "lease renewal conflicted; retrying");
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot renew the lease; retrying"),
                // The next round sees the deadline has passed.
                Err(_elapsed) => {}
            }
        }
    }

    /// Gives the lease up so a standby can take it at once (client-go's `ReleaseOnCancel`):
    /// no holder, a one-second duration, the transition count kept.
    pub async fn release(&mut self) -> Result<(), LeaderError> {
        self.renewed_at = None;
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.api_error(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: spec.lease_transitions,
            ..spec
        });
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.api_error(e))?;
        tracing::info!(lease = %lease.name_any(), "released the lease");
        Ok(())
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration_seconds()),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    fn held(&mut self) -> Attempt {
        self.renewed_at = Some(Instant::now());
        Attempt::Held
    }

    fn contended(&mut self) -> Attempt {
        Attempt::Contended
    }

    fn api_error(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    fn lost(&self, reason: String) -> LeaderError {
        LeaderError::Lost {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            reason,
        }
    }
}

/// Whether the holder's claim has run out: `renewTime + leaseDurationSeconds` is in the past.
/// A lease without a renew time or duration claims nothing.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    match renewed.0.checked_add(duration) {
        Ok(valid_until) => valid_until < now,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaseConfig {
        LeaseConfig {
            namespace: "argo-rollouts".to_owned(),
            name: LEASE_NAME.to_owned(),
            identity: "pod_1".to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    #[test]
    fn upstream_defaults_are_valid_and_inverted_timings_are_not() {
        assert!(config().validate().is_ok());
        let inverted = LeaseConfig {
            renew_deadline: Duration::from_secs(20),
            ..config()
        };
        assert!(inverted.validate().is_err());
        let crowded = LeaseConfig {
            retry_period: Duration::from_secs(9),
            ..config()
        };
        assert!(crowded.validate().is_err());
    }

    #[test]
    fn the_instance_id_suffixes_the_lease_name() {
        assert_eq!(
            LeaseConfig::lease_name(None),
            "argo-rollouts-controller-lock"
        );
        assert_eq!(
            LeaseConfig::lease_name(Some("blue")),
            "argo-rollouts-controller-lock-blue"
        );
    }

    #[test]
    fn a_lease_expires_once_renew_time_plus_duration_has_passed() {
        let renewed = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let spec = LeaseSpec {
            holder_identity: Some("other".to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        };
        let at = |s: i64| Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH);
        assert!(!expired(&spec, at(1_014)));
        assert!(!expired(&spec, at(1_015)));
        assert!(expired(&spec, at(1_016)));
        assert!(expired(&LeaseSpec::default(), at(0)));
    }

    #[test]
    fn sub_second_durations_round_up_to_a_whole_second() {
        let short = LeaseConfig {
            lease_duration: Duration::from_millis(1_500),
            ..config()
        };
        assert_eq!(short.lease_duration_seconds(), 2);
        assert_eq!(config().lease_duration_seconds(), 15);
    }
}
