//! gbstats' Bayesian effect model (`EffectBayesianABTest`): a Gaussian posterior on the effect,
//! from the normal approximation of the data and an optional proper Gaussian prior.

use serde::{Deserialize, Serialize};

use crate::distributions::{norm_ppf, norm_sf, normal_expected_losses};
use crate::effect::{
    DifferenceType, ResultError, Uplift, effect_point_estimate, effect_variance, scale_adjustment,
};
use crate::error::StatsError;
use crate::statistics::{ArmMoments, Statistic, ZeroThetaFallback, prepare_pair};

/// Gaussian prior on the effect. With `proper = false` the prior is flat and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GaussianPrior {
    pub mean: f64,
    pub variance: f64,
    pub proper: bool,
}

impl Default for GaussianPrior {
    fn default() -> Self {
        GaussianPrior {
            mean: 0.0,
            variance: 1.0,
            proper: false,
        }
    }
}

/// The scale the prior is stated on; it is rescaled by the control mean when it differs from
/// the effect's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorScale {
    #[default]
    Relative,
    Absolute,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BayesianConfig {
    pub difference_type: DifferenceType,
    /// Credible intervals cover `1 - alpha`.
    pub alpha: f64,
    /// Lower is better: flips chance to win and swaps the two risks.
    pub inverse: bool,
    pub prior: GaussianPrior,
    pub prior_scale: PriorScale,
    /// Treatment's share of traffic, for [`DifferenceType::Scaled`].
    pub traffic_proportion: f64,
    /// Days of data, for [`DifferenceType::Scaled`].
    pub phase_length_days: f64,
}

impl Default for BayesianConfig {
    fn default() -> Self {
        BayesianConfig {
            difference_type: DifferenceType::Relative,
            alpha: 0.05,
            inverse: false,
            prior: GaussianPrior::default(),
            prior_scale: PriorScale::Relative,
            traffic_proportion: 1.0,
            phase_length_days: 1.0,
        }
    }
}

/// Whether `risk` is on the relative or the absolute scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskType {
    Relative,
    Absolute,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BayesianResult {
    /// Posterior mean of the effect.
    pub expected: f64,
    /// Equal-tailed credible interval.
    pub ci: [f64; 2],
    pub uplift: Uplift,
    /// P(treatment better than control); P(Δ < 0) for inverse metrics.
    pub chance_to_win: f64,
    /// Expected loss `[if control is shipped, if treatment is shipped]`.
    pub risk: [f64; 2],
    pub risk_type: RiskType,
    pub error: Option<ResultError>,
}

/// Runs the Bayesian effect test of `treatment` against `control`.
pub fn bayesian_test(
    control: &Statistic,
    treatment: &Statistic,
    config: &BayesianConfig,
) -> Result<BayesianResult, StatsError> {
    if !(config.alpha > 0.0 && config.alpha < 1.0) {
        return Err(StatsError::InvalidAlpha {
            alpha: config.alpha,
        });
    }
    if config.prior.proper && (config.prior.variance.is_nan() || config.prior.variance <= 0.0) {
        return Err(StatsError::InvalidPriorVariance {
            variance: config.prior.variance,
        });
    }
    let (control_moments, treatment_moments, _theta) =
        prepare_pair(control, treatment, ZeroThetaFallback::KeepAdjusted)?;
    Ok(bayesian_test_moments(
        &control_moments,
        &treatment_moments,
        config,
    ))
}

/// The prior on the effect's scale.
fn rescaled_prior(control: &ArmMoments, config: &BayesianConfig) -> GaussianPrior {
    let relative = config.difference_type == DifferenceType::Relative;
    let control_mean = control.unadjusted_mean;
    let prior = config.prior;
    match (relative, config.prior_scale) {
        (true, PriorScale::Absolute) => GaussianPrior {
            mean: prior.mean / control_mean.abs(),
            variance: prior.variance / control_mean.powi(2),
            proper: prior.proper,
        },
        (false, PriorScale::Relative) => GaussianPrior {
            mean: prior.mean * control_mean.abs(),
            variance: prior.variance * control_mean.powi(2),
            proper: prior.proper,
        },
        _ => prior,
    }
}

/// The test on already-resolved moments (θ applied for CUPED). Does not validate `config`.
pub fn bayesian_test_moments(
    control: &ArmMoments,
    treatment: &ArmMoments,
    config: &BayesianConfig,
) -> BayesianResult {
    let relative = config.difference_type == DifferenceType::Relative;
    let risk_type = if relative {
        RiskType::Relative
    } else {
        RiskType::Absolute
    };
    let uninformative = |error: ResultError| BayesianResult {
        expected: 0.0,
        ci: [0.0, 0.0],
        uplift: Uplift::default(),
        chance_to_win: 0.5,
        risk: [0.0, 0.0],
        risk_type,
        error: Some(error),
    };
    if relative && (control.mean == 0.0 || control.unadjusted_mean == 0.0) {
        return uninformative(ResultError::BaselineVariationZero);
    }
    if control.n == 0 || treatment.n == 0 {
        return uninformative(ResultError::NoUnitsInVariation);
    }
    if control.has_zero_variance() || treatment.has_zero_variance() {
        return uninformative(ResultError::ZeroNegativeVariance);
    }

    let prior = rescaled_prior(control, config);
    let data_variance = effect_variance(control, treatment, relative);
    let data_mean = effect_point_estimate(control, treatment, relative);
    let prior_precision = if prior.proper {
        1.0 / prior.variance
    } else {
        0.0
    };
    let posterior_precision = 1.0 / data_variance + prior_precision;
    let posterior_mean = if prior.proper {
        (data_mean / data_variance + prior.mean / prior.variance) / posterior_precision
    } else {
        data_mean
    };
    let posterior_stddev = (1.0 / posterior_precision).sqrt();

    let probability_positive = norm_sf(-posterior_mean / posterior_stddev);
    let chance_to_win = if config.inverse {
        1.0 - probability_positive
    } else {
        probability_positive
    };
    let ci = [
        posterior_mean + posterior_stddev * norm_ppf(config.alpha / 2.0),
        posterior_mean + posterior_stddev * norm_ppf(1.0 - config.alpha / 2.0),
    ];
    let [loss_control, loss_treatment] = normal_expected_losses(posterior_mean, posterior_stddev);
    let risk = if config.inverse {
        [loss_treatment, loss_control]
    } else {
        [loss_control, loss_treatment]
    };

    let mut result = BayesianResult {
        expected: posterior_mean,
        ci,
        uplift: Uplift {
            mean: posterior_mean,
            stddev: posterior_stddev,
        },
        chance_to_win,
        risk,
        risk_type,
        error: None,
    };
    if config.difference_type == DifferenceType::Scaled {
        let Some(adjustment) = scale_adjustment(
            treatment,
            config.traffic_proportion,
            config.phase_length_days,
        ) else {
            return uninformative(ResultError::ZeroScaledVariationWeight);
        };
        result.expected *= adjustment;
        result.ci = [result.ci[0] * adjustment, result.ci[1] * adjustment];
        result.uplift.mean *= adjustment;
        result.uplift.stddev *= adjustment;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statistics::{Proportion, SampleMean};

    #[test]
    fn binomial_golden() {
        // gbstats tests/bayesian/test_tests.py, 49/100 vs 51/100
        let control = Statistic::Proportion(Proportion { n: 100, sum: 49.0 });
        let treatment = Statistic::Proportion(Proportion { n: 100, sum: 51.0 });
        let result = bayesian_test(&control, &treatment, &BayesianConfig::default()).unwrap();
        assert!((result.expected - 0.04082).abs() < 5e-6);
        assert!((result.ci[0] - -0.24779).abs() < 5e-6);
        assert!((result.ci[1] - 0.32943).abs() < 5e-6);
        assert!((result.chance_to_win - 0.60918).abs() < 5e-6);
        assert!((result.risk[0] - 0.08140).abs() < 5e-6);
        assert!((result.risk[1] - 0.04058).abs() < 5e-6);
    }

    #[test]
    fn gaussian_golden_with_and_without_prior() {
        let control = Statistic::SampleMean(SampleMean {
            n: 10,
            sum: 100.0,
            sum_squares: 1002.25,
        });
        let treatment = Statistic::SampleMean(SampleMean {
            n: 10,
            sum: 105.0,
            sum_squares: 1111.5,
        });
        let flat = bayesian_test(&control, &treatment, &BayesianConfig::default()).unwrap();
        assert!((flat.expected - 0.05).abs() < 1e-12);
        assert!((flat.chance_to_win - 0.91923).abs() < 5e-6);
        let config = BayesianConfig {
            prior: GaussianPrior {
                mean: 0.1,
                variance: 0.1,
                proper: true,
            },
            ..BayesianConfig::default()
        };
        let informed = bayesian_test(&control, &treatment, &config).unwrap();
        assert!((informed.expected - 0.05063).abs() < 5e-6);
        assert!((informed.chance_to_win - 0.92315).abs() < 5e-6);
    }

    #[test]
    fn inverse_flips_chance_and_risk() {
        let control = Statistic::Proportion(Proportion { n: 100, sum: 49.0 });
        let treatment = Statistic::Proportion(Proportion { n: 100, sum: 51.0 });
        let normal = bayesian_test(&control, &treatment, &BayesianConfig::default()).unwrap();
        let config = BayesianConfig {
            inverse: true,
            ..BayesianConfig::default()
        };
        let inverse = bayesian_test(&control, &treatment, &config).unwrap();
        assert!((normal.chance_to_win + inverse.chance_to_win - 1.0).abs() < 1e-15);
        assert_eq!(normal.risk, [inverse.risk[1], inverse.risk[0]]);
    }

    #[test]
    fn empty_arm_is_uninformative() {
        let control = Statistic::Proportion(Proportion { n: 100, sum: 49.0 });
        let treatment = Statistic::Proportion(Proportion { n: 0, sum: 0.0 });
        let result = bayesian_test(&control, &treatment, &BayesianConfig::default()).unwrap();
        assert_eq!(result.error, Some(ResultError::NoUnitsInVariation));
        assert_eq!(result.chance_to_win, 0.5);
    }
}
