//! The controllers' watches: each one retries on its own short backoff and reports whether it
//! is live. kube-runtime's `Controller` puts all its trigger streams behind one shared backoff
//! (0.8 s doubling to 30 s, jittered up to 60 s, reset only by an event): an error on any watch
//! paused every other one, and errors of several watches after one outage compounded into
//! minutes without a watch request. So a watch built here never yields an error: it backs off
//! alone, records the error in [`WatchLiveness`] and goes on.

use super::liveness::{Registration, WatchLiveness};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// First retry delay of a failed watch.
pub const RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest retry delay: a watch is retried at least this often while the API server fails.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// The watches of one controller (`rollout`, `analysisrun`), reported to a shared
/// [`WatchLiveness`] as `<controller>/<resource>`.
#[derive(Clone)]
pub struct Watches {
    client: Client,
    liveness: Arc<WatchLiveness>,
    controller: &'static str,
}

impl Watches {
    pub fn new(client: Client, liveness: Arc<WatchLiveness>, controller: &'static str) -> Self {
        Self {
            client,
            liveness,
            controller,
        }
    }

    /// Watches `resource` through the `Api` that `api` builds on the client it is given (one
    /// that reports each list and watch request's outcome). The stream never ends and never
    /// yields an error.
    pub fn watch<K>(
        &self,
        resource: &str,
        api: impl FnOnce(&Client) -> Api<K>,
        config: watcher::Config,
    ) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let registration = Arc::new(
            self.liveness
                .register(format!("{}/{resource}", self.controller), Instant::now()),
        );
        let client = Client::new(
            ObservedRequests {
                client: self.client.clone(),
                watch: registration.clone(),
            },
            self.client.default_namespace().to_owned(),
        );
        let seen = registration.clone();
        let backoff = WatchBackoff::new(registration.clone());
        watcher(api(&client), config)
            .map(move |item| {
                let (liveness, name) = (seen.liveness(), seen.name());
                match &item {
                    Ok(_) => liveness.connected(name, Instant::now()),
                    Err(error) => {
                        if liveness.failed(name, Instant::now(), error) {
                            tracing::warn!(watch = name, %error, "watch failed; retrying");
                        } else {
                            tracing::debug!(watch = name, %error, "watch retry failed");
                        }
                    }
                }
                item
            })
            .backoff(backoff)
            // Errors are recorded above and retried by the backoff; one passed on would pause
            // every other trigger stream of the `Controller`.
            .filter_map(|item| futures::future::ready(item.ok().map(Ok)))
    }
}

/// Reports the outcome of each request of one watch (its lists and watches): a successful
/// answer makes it live, a failed one takes it down. Transport concerns stay in the wrapped
/// client, whose layers (rate limit, request metrics) every request still passes.
#[derive(Clone)]
struct ObservedRequests {
    client: Client,
    watch: Arc<Registration>,
}

impl tower::Service<Request<Body>> for ObservedRequests {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let client = self.client.clone();
        let watch = self.watch.clone();
        Box::pin(async move {
            let answer = client.send(request).await;
            let (liveness, name) = (watch.liveness(), watch.name());
            match &answer {
                Ok(response) if response.status().is_success() => {
                    liveness.connected(name, Instant::now());
                }
                Ok(response) => {
                    liveness.failed(name, Instant::now(), format!("HTTP {}", response.status()));
                }
                Err(error) => {
                    liveness.failed(name, Instant::now(), error);
                }
            }
            answer
        })
    }
}

/// Doubles from [`RETRY_MIN`] to [`RETRY_MAX`] with up to a quarter of jitter, and starts
/// over once the watch was live again in between (kube's own backoff resets only on an
/// event, so a quiet watch kept its longest delay).
pub struct WatchBackoff {
    watch: Arc<Registration>,
    failures: u32,
    connections: u64,
    jitter: u64,
}

impl WatchBackoff {
    fn new(watch: Arc<Registration>) -> Self {
        let connections = watch.liveness().connections(watch.name());
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos().into());
        Self {
            watch,
            failures: 0,
            connections,
            jitter: seed | 1,
        }
    }

    /// A number in 0..1 from a xorshift: spreads the retries of many watches and replicas.
    fn unit(&mut self) -> f64 {
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        (self.jitter >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The delay before retry number `failures` (1-based) without jitter.
pub fn retry_delay(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    RETRY_MIN.saturating_mul(factor).min(RETRY_MAX)
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let connections = self.watch.liveness().connections(self.watch.name());
        if connections != self.connections {
            self.connections = connections;
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        let delay = retry_delay(self.failures);
        Some(delay.mul_f64(1.0 + self.unit() / 4.0))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_half_a_second_and_stay_within_five() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(4), Duration::from_secs(4));
        assert_eq!(retry_delay(5), RETRY_MAX);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn the_backoff_starts_over_once_the_watch_was_live_again() {
        let liveness = Arc::new(WatchLiveness::default());
        let now = Instant::now();
        let watch = Arc::new(liveness.register("rollout/services", now));
        let mut backoff = WatchBackoff::new(watch);
        let delays: Vec<Duration> = (0..6).filter_map(|_| backoff.next()).collect();
        for (n, delay) in delays.iter().enumerate() {
            let base = retry_delay(u32::try_from(n + 1).unwrap_or(u32::MAX));
            assert!(
                *delay >= base && *delay <= base.mul_f64(1.25),
                "{n}: {delay:?}"
            );
        }
        liveness.connected("rollout/services", now);
        liveness.failed("rollout/services", now, "refused");
        let after = backoff.next().unwrap_or_default();
        assert!(after <= RETRY_MIN.mul_f64(1.25), "{after:?}");
    }
}
