//! Welch t-tests (fixed horizon) and asymptotic confidence sequences (sequential), as in
//! gbstats `frequentist/tests.py`.

use serde::{Deserialize, Serialize};

use crate::distributions::{t_cdf, t_ppf};
use crate::effect::{
    DifferenceType, ResultError, Uplift, effect_point_estimate, effect_variance, scale_adjustment,
};
use crate::error::StatsError;
use crate::statistics::{ArmMoments, Statistic, ZeroThetaFallback, prepare_pair};

/// Which hypothesis is tested against `test_value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    #[default]
    TwoSided,
    /// H1: effect > test_value. Interval `[lower, +inf)`.
    Greater,
    /// H1: effect < test_value. Interval `(-inf, upper]`.
    Less,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FrequentistConfig {
    pub difference_type: DifferenceType,
    pub alpha: f64,
    /// The null effect (on the `difference_type` scale before scaling).
    pub test_value: f64,
    pub alternative: Alternative,
    /// `Some(N*)` switches to confidence sequences (gbstats' `sequential_tuning_parameter`,
    /// default 5000 there). Two-sided only.
    pub sequential_tuning_parameter: Option<f64>,
    /// Treatment's share of traffic, for [`DifferenceType::Scaled`].
    pub traffic_proportion: f64,
    /// Days of data, for [`DifferenceType::Scaled`].
    pub phase_length_days: f64,
}

impl Default for FrequentistConfig {
    fn default() -> Self {
        FrequentistConfig {
            difference_type: DifferenceType::Relative,
            alpha: 0.05,
            test_value: 0.0,
            alternative: Alternative::TwoSided,
            sequential_tuning_parameter: None,
            traffic_proportion: 1.0,
            phase_length_days: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrequentistResult {
    pub expected: f64,
    /// Confidence interval; one end is infinite for one-sided tests.
    pub ci: [f64; 2],
    pub p_value: f64,
    pub uplift: Uplift,
    /// Welch–Satterthwaite degrees of freedom (not set for sequential tests or errors).
    pub degrees_of_freedom: Option<f64>,
    pub error: Option<ResultError>,
}

impl FrequentistResult {
    /// gbstats' uninformative output.
    fn uninformative(error: ResultError) -> FrequentistResult {
        FrequentistResult {
            expected: 0.0,
            ci: [0.0, 0.0],
            p_value: 1.0,
            uplift: Uplift::default(),
            degrees_of_freedom: None,
            error: Some(error),
        }
    }
}

/// Welch–Satterthwaite degrees of freedom for the difference of two means.
pub fn welch_degrees_of_freedom(control: &ArmMoments, treatment: &ArmMoments) -> f64 {
    let n_control = control.n as f64;
    let n_treatment = treatment.n as f64;
    let numerator = (treatment.variance / n_treatment + control.variance / n_control).powi(2);
    let denominator = treatment.variance.powi(2) / (n_treatment.powi(2) * (n_treatment - 1.0))
        + control.variance.powi(2) / (n_control.powi(2) * (n_control - 1.0));
    numerator / denominator
}

/// Runs the configured frequentist test of `treatment` against `control`.
pub fn frequentist_test(
    control: &Statistic,
    treatment: &Statistic,
    config: &FrequentistConfig,
) -> Result<FrequentistResult, StatsError> {
    validate(config)?;
    let (control_moments, treatment_moments, _theta) =
        prepare_pair(control, treatment, ZeroThetaFallback::PostStatistic)?;
    Ok(frequentist_test_moments(
        &control_moments,
        &treatment_moments,
        config,
    ))
}

fn validate(config: &FrequentistConfig) -> Result<(), StatsError> {
    if !(config.alpha > 0.0 && config.alpha < 1.0) {
        return Err(StatsError::InvalidAlpha {
            alpha: config.alpha,
        });
    }
    if let Some(tuning) = config.sequential_tuning_parameter {
        if config.alternative != Alternative::TwoSided {
            return Err(StatsError::SequentialOneSided);
        }
        if tuning.is_nan() || tuning <= 0.0 {
            return Err(StatsError::InvalidTuningParameter { value: tuning });
        }
    }
    Ok(())
}

/// The test on already-resolved moments (θ applied for CUPED). Does not validate `config`.
pub fn frequentist_test_moments(
    control: &ArmMoments,
    treatment: &ArmMoments,
    config: &FrequentistConfig,
) -> FrequentistResult {
    if control.mean == 0.0 || control.unadjusted_mean == 0.0 {
        return FrequentistResult::uninformative(ResultError::BaselineVariationZero);
    }
    if control.has_zero_variance() || treatment.has_zero_variance() {
        return FrequentistResult::uninformative(ResultError::ZeroNegativeVariance);
    }

    let relative = config.difference_type == DifferenceType::Relative;
    let point_estimate = effect_point_estimate(control, treatment, relative);
    let variance = effect_variance(control, treatment, relative);
    let standard_error = variance.sqrt();

    let (ci, p_value, degrees_of_freedom) = match config.sequential_tuning_parameter {
        Some(tuning) => {
            let total_n = (control.n + treatment.n) as f64;
            let (ci, p_value) = confidence_sequence(
                point_estimate,
                variance,
                total_n,
                config.alpha,
                config.test_value,
                tuning,
            );
            (ci, p_value, None)
        }
        None => {
            let dof = welch_degrees_of_freedom(control, treatment);
            let t_statistic = (point_estimate - config.test_value) / standard_error;
            let (ci, p_value) = match config.alternative {
                Alternative::TwoSided => {
                    let width = t_ppf(1.0 - config.alpha / 2.0, dof) * standard_error;
                    let p_value = 2.0 * (1.0 - t_cdf(t_statistic.abs(), dof));
                    ([point_estimate - width, point_estimate + width], p_value)
                }
                Alternative::Greater => {
                    let width = t_ppf(1.0 - config.alpha, dof) * standard_error;
                    let p_value = 1.0 - t_cdf(t_statistic, dof);
                    ([point_estimate - width, f64::INFINITY], p_value)
                }
                Alternative::Less => {
                    let width = t_ppf(1.0 - config.alpha, dof) * standard_error;
                    let p_value = t_cdf(t_statistic, dof);
                    // gbstats 0.8.0 reports `point_estimate - width` as the upper bound here
                    // (it should be `+ width`); we keep the correct bound, see crate docs.
                    ([f64::NEG_INFINITY, point_estimate + width], p_value)
                }
            };
            (ci, p_value, Some(dof))
        }
    };

    let mut result = FrequentistResult {
        expected: point_estimate,
        ci,
        p_value,
        uplift: Uplift {
            mean: point_estimate,
            stddev: standard_error,
        },
        degrees_of_freedom,
        error: None,
    };
    if config.difference_type == DifferenceType::Scaled {
        let Some(adjustment) = scale_adjustment(
            treatment,
            config.traffic_proportion,
            config.phase_length_days,
        ) else {
            return FrequentistResult::uninformative(ResultError::ZeroScaledVariationWeight);
        };
        result.expected *= adjustment;
        result.ci = [result.ci[0] * adjustment, result.ci[1] * adjustment];
        result.uplift.mean *= adjustment;
        result.uplift.stddev *= adjustment;
    }
    result
}

/// Asymptotic confidence sequence of Waudby-Smith et al. (arXiv 2103.06476v7): interval from
/// eq. 9, ρ from eq. 161 and the always-valid p-value from eq. 155, with `N*` the tuning
/// parameter. `variance` is the variance of the effect estimate; `total_n` the units in both arms.
fn confidence_sequence(
    point_estimate: f64,
    variance: f64,
    total_n: f64,
    alpha: f64,
    test_value: f64,
    tuning_parameter: f64,
) -> ([f64; 2], f64) {
    let rho = ((-2.0 * alpha.ln() + (-2.0 * alpha.ln() + 1.0).ln()) / tuning_parameter).sqrt();
    let rho_squared = rho * rho;
    let per_unit_variance = variance * total_n;
    let n_rho_squared_plus_one = total_n * rho_squared + 1.0;
    let width = per_unit_variance.sqrt()
        * (2.0 * n_rho_squared_plus_one * (n_rho_squared_plus_one.sqrt() / alpha).ln()
            / (total_n * rho).powi(2))
        .sqrt();
    let standardized_squared = (point_estimate - test_value).powi(2) * total_n / variance;
    let e_value = (rho_squared * standardized_squared / (2.0 * n_rho_squared_plus_one)).exp()
        / n_rho_squared_plus_one.sqrt();
    let p_value = (1.0 / e_value).min(1.0);
    ([point_estimate - width, point_estimate + width], p_value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statistics::SampleMean;

    fn golden_pair() -> (Statistic, Statistic) {
        // gbstats tests/frequentist/test_tests.py
        let control = Statistic::SampleMean(SampleMean {
            n: 3407,
            sum: 1396.87,
            sum_squares: 52377.9767,
        });
        let treatment = Statistic::SampleMean(SampleMean {
            n: 3461,
            sum: 2422.7,
            sum_squares: 134698.29,
        });
        (control, treatment)
    }

    #[test]
    fn welch_relative_matches_gbstats_golden() {
        let (control, treatment) = golden_pair();
        let result = frequentist_test(&control, &treatment, &FrequentistConfig::default()).unwrap();
        assert!((result.expected - 0.70732).abs() < 5e-6);
        assert!((result.ci[0] - -0.03526).abs() < 5e-6);
        assert!((result.ci[1] - 1.44989).abs() < 5e-6);
        assert!((result.p_value - 0.06191).abs() < 5e-6);
    }

    #[test]
    fn welch_absolute_matches_gbstats_golden() {
        let (control, treatment) = golden_pair();
        let config = FrequentistConfig {
            difference_type: DifferenceType::Absolute,
            ..FrequentistConfig::default()
        };
        let result = frequentist_test(&control, &treatment, &config).unwrap();
        assert!((result.expected - 0.29).abs() < 1e-9);
        assert!((result.ci[0] - 0.04538).abs() < 5e-6);
        assert!((result.ci[1] - 0.53462).abs() < 5e-6);
        assert!((result.p_value - 0.02016).abs() < 5e-6);
    }

    #[test]
    fn sequential_matches_gbstats_golden() {
        let (control, treatment) = golden_pair();
        let config = FrequentistConfig {
            sequential_tuning_parameter: Some(5000.0),
            ..FrequentistConfig::default()
        };
        let result = frequentist_test(&control, &treatment, &config).unwrap();
        assert!((result.ci[0] - -0.44442).abs() < 5e-6);
        assert!((result.ci[1] - 1.85906).abs() < 5e-6);
        assert!((result.p_value - 0.69867).abs() < 5e-6);
    }

    #[test]
    fn zero_variance_is_uninformative() {
        let control = Statistic::SampleMean(SampleMean {
            n: 10,
            sum: 10.0,
            sum_squares: 10.0,
        });
        let (_, treatment) = golden_pair();
        let result = frequentist_test(&control, &treatment, &FrequentistConfig::default()).unwrap();
        assert_eq!(result.error, Some(ResultError::ZeroNegativeVariance));
        assert_eq!(result.p_value, 1.0);
        assert_eq!(result.ci, [0.0, 0.0]);
    }

    #[test]
    fn hand_checked_welch_dof() {
        // equal variances 4 and n 10 in both arms: dof = (0.8)^2 / (2 * 0.16 / 9) = 18
        let arm = ArmMoments {
            n: 10,
            mean: 1.0,
            unadjusted_mean: 1.0,
            variance: 4.0,
        };
        assert!((welch_degrees_of_freedom(&arm, &arm) - 18.0).abs() < 1e-12);
    }

    #[test]
    fn one_sided_p_values_split_the_two_sided_one() {
        let (control, treatment) = golden_pair();
        let two_sided =
            frequentist_test(&control, &treatment, &FrequentistConfig::default()).unwrap();
        let greater = frequentist_test(
            &control,
            &treatment,
            &FrequentistConfig {
                alternative: Alternative::Greater,
                ..FrequentistConfig::default()
            },
        )
        .unwrap();
        let less = frequentist_test(
            &control,
            &treatment,
            &FrequentistConfig {
                alternative: Alternative::Less,
                ..FrequentistConfig::default()
            },
        )
        .unwrap();
        assert!((greater.p_value * 2.0 - two_sided.p_value).abs() < 1e-12);
        assert!((greater.p_value + less.p_value - 1.0).abs() < 1e-12);
        assert!(greater.ci[0] > two_sided.ci[0]);
        assert!(less.ci[1] < two_sided.ci[1]);
    }
}
