//! Sufficient statistics per experiment arm, and the moments gbstats derives from them.
//!
//! Conventions follow gbstats (`gbstats/models/statistics.py`, PyPI 0.8.0):
//! - sample variance divides by `n - 1` and is 0 when `n <= 1`;
//! - a proportion's variance is `p (1 - p)` (no `n - 1` correction);
//! - covariances divide by `n - 1` and are 0 when `n <= 1`;
//! - a ratio's variance is the delta-method variance of `mean(m) / mean(d)` *per unit*
//!   (divide by `n` for the variance of the estimate).

use serde::{Deserialize, Serialize};

use crate::error::StatsError;

/// A count/revenue style metric: `n` units, the sum of their values and the sum of squares.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleMean {
    pub n: u64,
    pub sum: f64,
    pub sum_squares: f64,
}

impl SampleMean {
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        self.sum / self.n as f64
    }

    /// Sample variance with the `n - 1` denominator; 0 for `n <= 1`.
    pub fn variance(&self) -> f64 {
        if self.n <= 1 {
            return 0.0;
        }
        let n = self.n as f64;
        (self.sum_squares - self.sum * self.sum / n) / (n - 1.0)
    }
}

/// A binomial metric: `sum` of `n` units converted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    pub n: u64,
    pub sum: f64,
}

impl Proportion {
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        self.sum / self.n as f64
    }

    /// Bernoulli variance `p (1 - p)`.
    pub fn variance(&self) -> f64 {
        let proportion = self.mean();
        proportion * (1.0 - proportion)
    }

    /// For 0/1 data the sum of squares equals the sum.
    pub fn sum_squares(&self) -> f64 {
        self.sum
    }
}

/// One component of a ratio or regression-adjusted metric: either a sample mean or a proportion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BaseStatistic {
    SampleMean(SampleMean),
    Proportion(Proportion),
}

impl BaseStatistic {
    pub fn n(&self) -> u64 {
        match self {
            BaseStatistic::SampleMean(statistic) => statistic.n,
            BaseStatistic::Proportion(statistic) => statistic.n,
        }
    }

    pub fn sum(&self) -> f64 {
        match self {
            BaseStatistic::SampleMean(statistic) => statistic.sum,
            BaseStatistic::Proportion(statistic) => statistic.sum,
        }
    }

    pub fn sum_squares(&self) -> f64 {
        match self {
            BaseStatistic::SampleMean(statistic) => statistic.sum_squares,
            BaseStatistic::Proportion(statistic) => statistic.sum_squares(),
        }
    }

    pub fn mean(&self) -> f64 {
        match self {
            BaseStatistic::SampleMean(statistic) => statistic.mean(),
            BaseStatistic::Proportion(statistic) => statistic.mean(),
        }
    }

    pub fn variance(&self) -> f64 {
        match self {
            BaseStatistic::SampleMean(statistic) => statistic.variance(),
            BaseStatistic::Proportion(statistic) => statistic.variance(),
        }
    }

    /// Pools two arms into one statistic with `n` units (gbstats `create_joint_statistic`).
    pub fn joint(&self, other: &BaseStatistic, n: u64) -> Result<BaseStatistic, StatsError> {
        match (self, other) {
            (BaseStatistic::Proportion(a), BaseStatistic::Proportion(b)) => {
                Ok(BaseStatistic::Proportion(Proportion {
                    n,
                    sum: a.sum + b.sum,
                }))
            }
            (BaseStatistic::SampleMean(a), BaseStatistic::SampleMean(b)) => {
                Ok(BaseStatistic::SampleMean(SampleMean {
                    n,
                    sum: a.sum + b.sum,
                    sum_squares: a.sum_squares + b.sum_squares,
                }))
            }
            _ => Err(StatsError::MismatchedStatistics),
        }
    }
}

/// A ratio metric `sum(m) / sum(d)` over `n` units (e.g. revenue per session).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub n: u64,
    pub numerator: BaseStatistic,
    pub denominator: BaseStatistic,
    pub m_d_sum_of_products: f64,
}

impl Ratio {
    /// A ratio of two count metrics, each observed on the same `n` units.
    pub fn from_sums(
        n: u64,
        m_sum: f64,
        m_sum_squares: f64,
        d_sum: f64,
        d_sum_squares: f64,
        m_d_sum_of_products: f64,
    ) -> Ratio {
        Ratio {
            n,
            numerator: BaseStatistic::SampleMean(SampleMean {
                n,
                sum: m_sum,
                sum_squares: m_sum_squares,
            }),
            denominator: BaseStatistic::SampleMean(SampleMean {
                n,
                sum: d_sum,
                sum_squares: d_sum_squares,
            }),
            m_d_sum_of_products,
        }
    }

    pub fn mean(&self) -> f64 {
        if self.denominator.sum() == 0.0 {
            return 0.0;
        }
        self.numerator.sum() / self.denominator.sum()
    }

    /// Sample covariance of numerator and denominator (`n - 1` denominator).
    pub fn covariance(&self) -> f64 {
        if self.n <= 1 {
            return 0.0;
        }
        let n = self.n as f64;
        (self.m_d_sum_of_products - self.numerator.sum() * self.denominator.sum() / n) / (n - 1.0)
    }

    /// Delta-method variance of the ratio, per unit.
    pub fn variance(&self) -> f64 {
        let denominator_mean = self.denominator.mean();
        if denominator_mean == 0.0 || self.n <= 1 {
            return 0.0;
        }
        let numerator_mean = self.numerator.mean();
        self.numerator.variance() / denominator_mean.powi(2)
            - 2.0 * self.covariance() * numerator_mean / denominator_mean.powi(3)
            + numerator_mean.powi(2) * self.denominator.variance() / denominator_mean.powi(4)
    }
}

/// CUPED: a post-exposure metric adjusted by a pre-exposure covariate, over `n` units.
///
/// θ is not stored: it is pooled over the two arms being compared, see [`compute_theta`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionAdjusted {
    pub n: u64,
    pub post: BaseStatistic,
    pub pre: BaseStatistic,
    pub post_pre_sum_of_products: f64,
}

impl RegressionAdjusted {
    /// Sample covariance of post and pre values (`n - 1` denominator).
    pub fn covariance(&self) -> f64 {
        if self.n <= 1 {
            return 0.0;
        }
        let n = self.n as f64;
        (self.post_pre_sum_of_products - self.post.sum() * self.pre.sum() / n) / (n - 1.0)
    }

    /// `mean(post) - θ mean(pre)`.
    pub fn adjusted_mean(&self, theta: f64) -> f64 {
        self.post.mean() - theta * self.pre.mean()
    }

    /// `var(post) + θ² var(pre) - 2 θ cov(post, pre)`; 0 for `n <= 1`.
    pub fn adjusted_variance(&self, theta: f64) -> f64 {
        if self.n <= 1 {
            return 0.0;
        }
        self.post.variance() + theta * theta * self.pre.variance() - 2.0 * theta * self.covariance()
    }
}

/// θ pooled over both arms: `cov(post, pre) / var(pre)` of the joint sample (gbstats
/// `compute_theta`). Returns 0 when either pooled variance is 0; callers then fall back to the
/// unadjusted post statistic.
pub fn compute_theta(a: &RegressionAdjusted, b: &RegressionAdjusted) -> Result<f64, StatsError> {
    let n = a.n + b.n;
    let joint_post = a.post.joint(&b.post, n)?;
    let joint_pre = a.pre.joint(&b.pre, n)?;
    if joint_pre.variance() == 0.0 || joint_post.variance() == 0.0 {
        return Ok(0.0);
    }
    let joint = RegressionAdjusted {
        n,
        post: joint_post,
        pre: joint_pre,
        post_pre_sum_of_products: a.post_pre_sum_of_products + b.post_pre_sum_of_products,
    };
    Ok(joint.covariance() / joint_pre.variance())
}

/// The sufficient statistics of one arm for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Statistic {
    SampleMean(SampleMean),
    Proportion(Proportion),
    Ratio(Ratio),
    RegressionAdjusted(RegressionAdjusted),
}

impl Statistic {
    pub fn n(&self) -> u64 {
        match self {
            Statistic::SampleMean(statistic) => statistic.n,
            Statistic::Proportion(statistic) => statistic.n,
            Statistic::Ratio(statistic) => statistic.n,
            Statistic::RegressionAdjusted(statistic) => statistic.n,
        }
    }

    /// Moments with no regression adjustment (θ = 0 for CUPED statistics).
    pub fn moments(&self) -> ArmMoments {
        match self {
            Statistic::SampleMean(statistic) => ArmMoments {
                n: statistic.n,
                mean: statistic.mean(),
                unadjusted_mean: statistic.mean(),
                variance: statistic.variance(),
            },
            Statistic::Proportion(statistic) => ArmMoments {
                n: statistic.n,
                mean: statistic.mean(),
                unadjusted_mean: statistic.mean(),
                variance: statistic.variance(),
            },
            Statistic::Ratio(statistic) => ArmMoments {
                n: statistic.n,
                mean: statistic.mean(),
                unadjusted_mean: statistic.mean(),
                variance: statistic.variance(),
            },
            Statistic::RegressionAdjusted(statistic) => statistic.moments_with_theta(0.0),
        }
    }

    fn same_kind(&self, other: &Statistic) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl RegressionAdjusted {
    /// Moments of the adjusted statistic for a given θ.
    pub fn moments_with_theta(&self, theta: f64) -> ArmMoments {
        ArmMoments {
            n: self.n,
            mean: self.adjusted_mean(theta),
            unadjusted_mean: self.post.mean(),
            variance: self.adjusted_variance(theta),
        }
    }
}

/// What a test needs from one arm: units, (adjusted) mean, unadjusted mean and per-unit variance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArmMoments {
    pub n: u64,
    pub mean: f64,
    pub unadjusted_mean: f64,
    pub variance: f64,
}

impl ArmMoments {
    /// gbstats' `stddev`: 0 when the variance is not positive.
    pub fn stddev(&self) -> f64 {
        if self.variance <= 0.0 {
            0.0
        } else {
            self.variance.sqrt()
        }
    }

    pub fn has_zero_variance(&self) -> bool {
        self.variance <= 0.0
    }
}

/// How a CUPED pair with θ = 0 is treated: the frequentist tests switch to the post statistic,
/// the Bayesian test keeps the regression-adjusted statistic with θ = 0 (gbstats 0.8.0 resets
/// its statistics after the base class swapped them). The two differ only in edge cases where
/// the post component's `n` differs from the unit count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZeroThetaFallback {
    PostStatistic,
    KeepAdjusted,
}

/// Resolves a control/treatment pair into the moments a test uses, computing the pooled θ for
/// CUPED statistics. Returns `(control, treatment, theta)`.
pub(crate) fn prepare_pair(
    control: &Statistic,
    treatment: &Statistic,
    zero_theta_fallback: ZeroThetaFallback,
) -> Result<(ArmMoments, ArmMoments, Option<f64>), StatsError> {
    if !control.same_kind(treatment) {
        return Err(StatsError::MismatchedStatistics);
    }
    if let (
        Statistic::RegressionAdjusted(control_ra),
        Statistic::RegressionAdjusted(treatment_ra),
    ) = (control, treatment)
    {
        let theta = compute_theta(control_ra, treatment_ra)?;
        if theta == 0.0 && zero_theta_fallback == ZeroThetaFallback::PostStatistic {
            let control_post = base_moments(&control_ra.post);
            let treatment_post = base_moments(&treatment_ra.post);
            return Ok((control_post, treatment_post, Some(0.0)));
        }
        return Ok((
            control_ra.moments_with_theta(theta),
            treatment_ra.moments_with_theta(theta),
            Some(theta),
        ));
    }
    Ok((control.moments(), treatment.moments(), None))
}

fn base_moments(statistic: &BaseStatistic) -> ArmMoments {
    ArmMoments {
        n: statistic.n(),
        mean: statistic.mean(),
        unadjusted_mean: statistic.mean(),
        variance: statistic.variance(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_mean_uses_n_minus_one() {
        // values 1, 2, 3, 4: mean 2.5, sample variance 5/3
        let statistic = SampleMean {
            n: 4,
            sum: 10.0,
            sum_squares: 30.0,
        };
        assert_eq!(statistic.mean(), 2.5);
        assert!((statistic.variance() - 5.0 / 3.0).abs() < 1e-15);
        let single = SampleMean {
            n: 1,
            sum: 3.0,
            sum_squares: 9.0,
        };
        assert_eq!(single.variance(), 0.0);
    }

    #[test]
    fn proportion_is_bernoulli() {
        let statistic = Proportion { n: 100, sum: 25.0 };
        assert_eq!(statistic.mean(), 0.25);
        assert_eq!(statistic.variance(), 0.1875);
    }

    #[test]
    fn ratio_delta_method() {
        // units (m, d): (1, 2), (2, 2), (3, 4)
        // mean m = 2, var m = 1; mean d = 8/3, var d = 4/3; cov = (2+4+12 - 6*8/3)/2 = 1
        let ratio = Ratio::from_sums(3, 6.0, 14.0, 8.0, 24.0, 18.0);
        assert_eq!(ratio.mean(), 0.75);
        assert!((ratio.covariance() - 1.0).abs() < 1e-15);
        let d: f64 = 8.0 / 3.0;
        let expected =
            1.0 / d.powi(2) - 2.0 * 1.0 * 2.0 / d.powi(3) + 4.0 * (4.0 / 3.0) / d.powi(4);
        assert!((ratio.variance() - expected).abs() < 1e-15);
    }

    #[test]
    fn theta_is_pooled_regression_slope() {
        // post = 2 * pre exactly, so θ = 2 and the adjusted variance is 0.
        let arm = |pre: &[f64]| {
            let post: Vec<f64> = pre.iter().map(|x| 2.0 * x).collect();
            RegressionAdjusted {
                n: pre.len() as u64,
                post: BaseStatistic::SampleMean(SampleMean {
                    n: pre.len() as u64,
                    sum: post.iter().sum(),
                    sum_squares: post.iter().map(|x| x * x).sum(),
                }),
                pre: BaseStatistic::SampleMean(SampleMean {
                    n: pre.len() as u64,
                    sum: pre.iter().sum(),
                    sum_squares: pre.iter().map(|x| x * x).sum(),
                }),
                post_pre_sum_of_products: pre.iter().zip(&post).map(|(x, y)| x * y).sum(),
            }
        };
        let a = arm(&[1.0, 2.0, 3.0]);
        let b = arm(&[2.0, 5.0, 7.0, 1.0]);
        let theta = compute_theta(&a, &b).unwrap();
        assert!((theta - 2.0).abs() < 1e-12);
        assert!(a.adjusted_variance(theta).abs() < 1e-12);
    }

    #[test]
    fn mixed_kinds_are_rejected() {
        let control = Statistic::Proportion(Proportion { n: 10, sum: 3.0 });
        let treatment = Statistic::SampleMean(SampleMean {
            n: 10,
            sum: 3.0,
            sum_squares: 3.0,
        });
        assert!(prepare_pair(&control, &treatment, ZeroThetaFallback::PostStatistic).is_err());
    }
}
