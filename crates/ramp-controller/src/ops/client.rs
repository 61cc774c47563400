//! The controller's API client: kube's default stack plus client-go's token-bucket rate limit
//! (`--qps`/`--burst`; kube has none) and a per-request count for
//! `controller_clientset_k8s_request_total`. Only transport concerns live here.

use super::metrics::{Metrics, RequestLabels};
use futures::future::BoxFuture;
use http::{Method, Request, Response};
use kube::Client;
use kube::client::ClientBuilder;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

/// How the controller talks to the API server.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Sustained requests per second; zero or less disables the limit.
    pub qps: f32,
    /// Requests allowed in a burst above the sustained rate.
    pub burst: u32,
    /// Where requests are counted.
    pub metrics: Option<Arc<Metrics>>,
}

/// A client for `config` with the rate limit and the request metrics.
pub fn build_client(
    mut config: kube::Config,
    options: &ClientOptions,
) -> Result<Client, kube::Error> {
    // kube retries 429/503/504 up to 15 times with a backoff growing towards minutes, inside
    // the request: a refused eviction (429 from a PodDisruptionBudget) would hold its
    // reconcile for minutes. A failed request fails the reconcile instead, and the controller's
    // own per-rollout backoff decides when to look again.
    config.default_retry = false;
    let builder = ClientBuilder::try_from(config)?
        .with_layer(&RequestMetricsLayer::new(options.metrics.clone()))
        .with_layer(&RateLimitLayer::new(options.qps, options.burst));
    Ok(builder.build())
}

/// client-go's token bucket: `burst` tokens, refilled at `qps` per second; a request takes one.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// `None` when `qps` disables limiting.
    pub fn new(qps: f32, burst: u32, now: Instant) -> Option<Self> {
        let rate = f64::from(qps);
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        let capacity = f64::from(burst.max(1));
        Some(Self {
            rate,
            capacity,
            tokens: capacity,
            updated: now,
        })
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Applies a [`TokenBucket`] in `poll_ready`: kube's client buffers requests in front of this
/// service, so waiting here delays requests in arrival order without blocking callers' tasks.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    qps: f32,
    burst: u32,
}

impl RateLimitLayer {
    pub fn new(qps: f32, burst: u32) -> Self {
        Self { qps, burst }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            bucket: TokenBucket::new(self.qps, self.burst, Instant::now()),
            token_held: false,
            waiting: None,
        }
    }
}

pub struct RateLimited<S> {
    inner: S,
    bucket: Option<TokenBucket>,
    /// A token was taken for the next `call`.
    token_held: bool,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S, B> Service<Request<B>> for RateLimited<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            if let Some(waiting) = self.waiting.as_mut() {
                ready!(waiting.as_mut().poll(cx));
                self.waiting = None;
            }
            let Some(bucket) = self.bucket.as_mut() else {
                break;
            };
            if self.token_held {
                break;
            }
            match bucket.take(Instant::now()) {
                Ok(()) => self.token_held = true,
                Err(wait) => self.waiting = Some(Box::pin(tokio::time::sleep(wait))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.token_held = false;
        self.inner.call(request)
    }
}

/// Counts every request by resource, verb and answer.
#[derive(Clone, Debug)]
pub struct RequestMetricsLayer {
    metrics: Option<Arc<Metrics>>,
}

impl RequestMetricsLayer {
    pub fn new(metrics: Option<Arc<Metrics>>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    metrics: Option<Arc<Metrics>>,
}

impl<S, B, R> Service<Request<B>> for RequestMetrics<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (kind, verb) = classify(request.method(), request.uri());
        let answer = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let outcome = answer.await;
            if let Some(metrics) = metrics {
                let status_code = match &outcome {
                    Ok(response) => response.status().as_u16().to_string(),
                    Err(_) => "error".to_owned(),
                };
                metrics.request(RequestLabels {
                    kind,
                    verb,
                    status_code,
                });
            }
            outcome
        })
    }
}

/// `(resource[/subresource], verb)` of a request, from its method and path. Non-resource
/// paths (discovery, version) are one `discovery` kind, so the label set stays bounded by the
/// resources the code uses.
pub fn classify(method: &Method, uri: &http::Uri) -> (String, &'static str) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] | ["apis", _, _version, rest @ ..] => rest,
        _ => &[][..],
    };
    let rest = match rest {
        ["namespaces", _namespace, resource, more @ ..] => {
            let mut named = vec![*resource];
            named.extend_from_slice(more);
            named
        }
        other => other.to_vec(),
    };
    let (resource, name, subresource) = match rest.as_slice() {
        [] => return ("discovery".to_owned(), "get"),
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, subresource, ..] => (*resource, Some(*name), Some(*subresource)),
    };
    let kind = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    let watching = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    });
    let verb = match *method {
        Method::GET if watching => "watch",
        Method::GET if name.is_some() => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    (kind, verb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(method: Method, uri: &str) -> (String, &'static str) {
        let uri: http::Uri = uri.parse().unwrap_or_else(|e| panic!("{uri}: {e}"));
        classify(&method, &uri)
    }

    #[test]
    fn requests_are_labelled_by_resource_and_verb() {
        assert_eq!(
            classified(
                Method::PATCH,
                "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/web/status?fieldManager=x"
            ),
            ("rollouts/status".to_owned(), "patch")
        );
        assert_eq!(
            classified(
                Method::GET,
                "/apis/apps/v1/replicasets?watch=true&resourceVersion=5"
            ),
            ("replicasets".to_owned(), "watch")
        );
        assert_eq!(
            classified(Method::GET, "/apis/apps/v1/namespaces/default/replicasets"),
            ("replicasets".to_owned(), "list")
        );
        assert_eq!(
            classified(Method::GET, "/api/v1/namespaces/default"),
            ("namespaces".to_owned(), "get")
        );
        assert_eq!(
            classified(
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/argo-rollouts/leases/lock"
            ),
            ("leases".to_owned(), "update")
        );
        assert_eq!(
            classified(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events"
            ),
            ("events".to_owned(), "create")
        );
        assert_eq!(
            classified(Method::GET, "/apis"),
            ("discovery".to_owned(), "get")
        );
        assert_eq!(
            classified(Method::GET, "/apis/argoproj.io/v1alpha1"),
            ("discovery".to_owned(), "get")
        );
    }

    #[test]
    fn the_bucket_allows_a_burst_then_refills_at_the_rate() {
        let start = Instant::now();
        let Some(mut bucket) = TokenBucket::new(2.0, 3, start) else {
            panic!("a positive rate limits");
        };
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        assert_eq!(bucket.take(start), Err(Duration::from_millis(500)));
        assert_eq!(bucket.take(start + Duration::from_millis(500)), Ok(()));
        assert!(bucket.take(start + Duration::from_millis(600)).is_err());
        // Idle time refills up to the burst, never beyond it.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Ok(()));
        }
        assert!(bucket.take(later).is_err());
        assert!(TokenBucket::new(0.0, 10, start).is_none());
    }
}
