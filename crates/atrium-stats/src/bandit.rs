//! Thompson-sampling bandit weights, after gbstats `bayesian/bandits.py` (not in the PyPI
//! 0.8.0 release; taken from the GrowthBook repository).
//!
//! Per arm `k` the posterior on the arm mean is Gaussian:
//! `precision_k = proper / prior_variance + n_k / variance_k` (data term 0 when
//! `variance_k <= 0`), `mean_k = (proper · prior_mean / prior_variance + n_k / variance_k ·
//! arm_mean_k) / precision_k`. We draw `draws` joint samples (independent arms), count how often
//! each arm is best (largest, or smallest for inverse metrics) and, with `top_two`, also second
//! best. Shares below `min_variation_weight` are raised to it and the vector is renormalised.
//! Weights are only returned once there are at least `100 · arms` units.
//!
//! Draws use ChaCha8 seeded with `seed` and a Box–Muller transform, so results are exactly
//! reproducible here but are *not* the numbers numpy's generator gives for the same seed; they
//! agree with gbstats only up to Monte-Carlo error.
//!
//! CUPED arms use one θ pooled over all arms (`cov(post, pre) / var(pre)` of the pooled sample)
//! and add back `θ · pooled pre mean`, as gbstats' `BanditsCuped` does for its leaderboard.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::distributions::norm_ppf;
use crate::error::StatsError;
use crate::statistics::{RegressionAdjusted, Statistic};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BanditConfig {
    pub seed: u64,
    pub draws: usize,
    pub top_two: bool,
    pub min_variation_weight: f64,
    pub inverse: bool,
    pub alpha: f64,
    /// Prior on each arm's mean; gbstats bandits use N(0, 10⁴) with `proper = true`.
    pub prior_mean: f64,
    pub prior_variance: f64,
    pub prior_proper: bool,
}

impl Default for BanditConfig {
    fn default() -> Self {
        BanditConfig {
            seed: 100,
            draws: 10_000,
            top_two: true,
            min_variation_weight: 0.01,
            inverse: false,
            alpha: 0.05,
            prior_mean: 0.0,
            prior_variance: 10_000.0,
            prior_proper: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanditWeights {
    pub users: Vec<u64>,
    /// Arm means (CUPED: adjusted, with the pooled add-back).
    pub means: Vec<f64>,
    pub posterior_means: Vec<f64>,
    pub posterior_variances: Vec<f64>,
    /// Credible intervals around each arm mean with the posterior standard deviation.
    pub credible_intervals: Vec<[f64; 2]>,
    /// Share of draws in which each arm was best.
    pub best_arm_probabilities: Vec<f64>,
    /// New traffic weights, `None` until there are at least `100 · arms` units.
    pub weights: Option<Vec<f64>>,
    pub seed: u64,
}

fn arm_means_and_variances(arms: &[Statistic]) -> Result<Vec<(u64, f64, f64)>, StatsError> {
    let all_adjusted: Option<Vec<&RegressionAdjusted>> = arms
        .iter()
        .map(|arm| match arm {
            Statistic::RegressionAdjusted(adjusted) => Some(adjusted),
            _ => None,
        })
        .collect();
    if let Some(adjusted_arms) = all_adjusted {
        let theta = pooled_theta(&adjusted_arms)?;
        let total_n: u64 = adjusted_arms.iter().map(|arm| arm.n).sum();
        let addback = if total_n == 0 {
            0.0
        } else {
            theta
                * adjusted_arms
                    .iter()
                    .map(|arm| arm.n as f64 * arm.pre.mean())
                    .sum::<f64>()
                / total_n as f64
        };
        return Ok(adjusted_arms
            .iter()
            .map(|arm| {
                let moments = arm.moments_with_theta(theta);
                (arm.n, moments.mean + addback, moments.variance)
            })
            .collect());
    }
    let mut rows = Vec::with_capacity(arms.len());
    for arm in arms {
        if matches!(arm, Statistic::RegressionAdjusted(_)) || !same_kind(arm, &arms[0]) {
            return Err(StatsError::MismatchedStatistics);
        }
        let moments = arm.moments();
        rows.push((moments.n, moments.mean, moments.variance));
    }
    Ok(rows)
}

fn same_kind(left: &Statistic, right: &Statistic) -> bool {
    std::mem::discriminant(left) == std::mem::discriminant(right)
}

fn pooled_theta(arms: &[&RegressionAdjusted]) -> Result<f64, StatsError> {
    let mut pooled = *arms[0];
    for arm in &arms[1..] {
        let n = pooled.n + arm.n;
        pooled = RegressionAdjusted {
            n,
            post: pooled.post.joint(&arm.post, n)?,
            pre: pooled.pre.joint(&arm.pre, n)?,
            post_pre_sum_of_products: pooled.post_pre_sum_of_products
                + arm.post_pre_sum_of_products,
        };
    }
    let pre_variance = pooled.pre.variance();
    if pre_variance == 0.0 || pooled.post.variance() == 0.0 {
        return Ok(0.0);
    }
    Ok(pooled.covariance() / pre_variance)
}

/// One standard-normal draw (Box–Muller, one of the pair).
fn standard_normal_draw(rng: &mut ChaCha8Rng) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let uniform_radius: f64 = 1.0 - rng.r#gen::<f64>();
    let uniform_angle: f64 = rng.r#gen::<f64>();
    (-2.0 * uniform_radius.ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform_angle).cos()
}

/// Thompson-sampling traffic weights for `arms` (all of one statistic kind).
pub fn thompson_weights(
    arms: &[Statistic],
    config: &BanditConfig,
) -> Result<BanditWeights, StatsError> {
    if arms.len() < 2 {
        return Err(StatsError::TooFewBanditArms { arms: arms.len() });
    }
    if !(config.alpha > 0.0 && config.alpha < 1.0) {
        return Err(StatsError::InvalidAlpha {
            alpha: config.alpha,
        });
    }
    if config.prior_proper && (config.prior_variance.is_nan() || config.prior_variance <= 0.0) {
        return Err(StatsError::InvalidPriorVariance {
            variance: config.prior_variance,
        });
    }
    let rows = arm_means_and_variances(arms)?;
    let prior_precision = if config.prior_proper {
        1.0 / config.prior_variance
    } else {
        0.0
    };
    let mut posterior_means = Vec::with_capacity(rows.len());
    let mut posterior_variances = Vec::with_capacity(rows.len());
    for (arm_index, &(n, mean, variance)) in rows.iter().enumerate() {
        let data_precision = if variance > 0.0 {
            n as f64 / variance
        } else {
            0.0
        };
        let precision = prior_precision + data_precision;
        if precision <= 0.0 {
            return Err(StatsError::UninformativeBanditArm { arm: arm_index });
        }
        let posterior_variance = 1.0 / precision;
        posterior_means.push(
            posterior_variance * (prior_precision * config.prior_mean + data_precision * mean),
        );
        posterior_variances.push(posterior_variance);
    }

    let arm_count = rows.len();
    let mut best_counts = vec![0u64; arm_count];
    let mut second_counts = vec![0u64; arm_count];
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut draw = vec![0.0; arm_count];
    let sign = if config.inverse { -1.0 } else { 1.0 };
    for _ in 0..config.draws {
        for arm_index in 0..arm_count {
            let standard_draw = standard_normal_draw(&mut rng);
            draw[arm_index] = sign
                * (posterior_means[arm_index]
                    + posterior_variances[arm_index].sqrt() * standard_draw);
        }
        let mut best = 0;
        for arm_index in 1..arm_count {
            if draw[arm_index] > draw[best] {
                best = arm_index;
            }
        }
        let mut second = if best == 0 { 1 } else { 0 };
        for arm_index in 0..arm_count {
            if arm_index != best && draw[arm_index] > draw[second] {
                second = arm_index;
            }
        }
        best_counts[best] += 1;
        second_counts[second] += 1;
    }
    let draws = config.draws.max(1) as f64;
    let best_arm_probabilities: Vec<f64> = best_counts
        .iter()
        .map(|count| *count as f64 / draws)
        .collect();
    let mut shares: Vec<f64> = if config.top_two {
        best_counts
            .iter()
            .zip(&second_counts)
            .map(|(best, second)| (best + second) as f64 / (2.0 * draws))
            .collect()
    } else {
        best_arm_probabilities.clone()
    };
    for share in shares.iter_mut() {
        if *share < config.min_variation_weight {
            *share = config.min_variation_weight;
        }
    }
    let total_share: f64 = shares.iter().sum();
    for share in shares.iter_mut() {
        *share /= total_share;
    }

    let z_score = norm_ppf(1.0 - config.alpha / 2.0);
    let credible_intervals = rows
        .iter()
        .zip(&posterior_variances)
        .map(|(&(_, mean, _), variance)| {
            let half_width = z_score * variance.sqrt();
            [mean - half_width, mean + half_width]
        })
        .collect();
    let users: Vec<u64> = rows.iter().map(|row| row.0).collect();
    let total_users: u64 = users.iter().sum();
    let enough_data = total_users >= 100 * arm_count as u64;
    Ok(BanditWeights {
        means: rows.iter().map(|row| row.1).collect(),
        users,
        posterior_means,
        posterior_variances,
        credible_intervals,
        best_arm_probabilities,
        weights: enough_data.then_some(shares),
        seed: config.seed,
    })
}
