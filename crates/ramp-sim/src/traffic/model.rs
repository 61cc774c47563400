//! What a version does with a request: its error rate and response code, and its latency
//! distribution (log-normal, given by its median and 95th percentile). Pure arithmetic.

/// A version's response behaviour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Behaviour {
    /// Fraction of requests answered with `error_code`.
    pub error_rate: f64,
    pub error_code: u16,
    pub latency: LatencyModel,
}

/// A log-normal latency distribution in milliseconds; `sigma == 0` is a constant latency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyModel {
    pub p50_ms: f64,
    pub sigma: f64,
}

/// The 95th percentile of the standard normal distribution.
const Z95: f64 = 1.644_853_626_951_472_2;

impl LatencyModel {
    /// The distribution with these median and 95th percentile (a p95 at or below the median
    /// gives a constant latency).
    pub fn from_p50_p95(p50_ms: f64, p95_ms: f64) -> Self {
        let p50_ms = p50_ms.max(0.0);
        let sigma = if p50_ms > 0.0 && p95_ms > p50_ms {
            (p95_ms / p50_ms).ln() / Z95
        } else {
            0.0
        };
        Self { p50_ms, sigma }
    }

    /// A constant latency.
    pub fn constant(ms: f64) -> Self {
        Self {
            p50_ms: ms.max(0.0),
            sigma: 0.0,
        }
    }

    /// Fraction of requests that take at most `ms`.
    pub fn cdf(&self, ms: f64) -> f64 {
        if ms.is_infinite() && ms > 0.0 {
            return 1.0;
        }
        if self.sigma == 0.0 || self.p50_ms == 0.0 {
            return if ms >= self.p50_ms { 1.0 } else { 0.0 };
        }
        if ms <= 0.0 {
            return 0.0;
        }
        let z = (ms / self.p50_ms).ln() / self.sigma;
        0.5 * erfc(-z / std::f64::consts::SQRT_2)
    }

    /// The mean latency in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        self.p50_ms * (self.sigma * self.sigma / 2.0).exp()
    }
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error below
/// 1.2e-7 everywhere), enough for bucket fractions.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95_are_where_they_were_asked_for() {
        let m = LatencyModel::from_p50_p95(100.0, 400.0);
        assert!((m.cdf(100.0) - 0.5).abs() < 1e-6);
        assert!((m.cdf(400.0) - 0.95).abs() < 1e-6);
        assert!(m.cdf(10.0) < 0.01);
        assert_eq!(m.cdf(f64::INFINITY), 1.0);
        assert!(m.mean_ms() > 100.0);
    }

    #[test]
    fn constant_latency_is_a_step() {
        let m = LatencyModel::constant(800.0);
        assert_eq!(m.cdf(799.0), 0.0);
        assert_eq!(m.cdf(800.0), 1.0);
        assert_eq!(m.mean_ms(), 800.0);
        assert_eq!(
            LatencyModel::from_p50_p95(50.0, 50.0),
            LatencyModel::constant(50.0)
        );
    }
}
