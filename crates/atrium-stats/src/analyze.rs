//! One metric, one control, one or more treatments: each treatment against the control, as the
//! gbstats runner does (`analyze_metric_df`), no correction for multiple arms beyond the
//! optional p-value adjustment.

use serde::{Deserialize, Serialize};

use crate::bayesian::{BayesianConfig, GaussianPrior, PriorScale, RiskType, bayesian_test_moments};
use crate::corrections::{Correction, adjust_p_values, adjusted_confidence_interval};
use crate::effect::{DifferenceType, ResultError, Uplift};
use crate::error::StatsError;
use crate::frequentist::{Alternative, FrequentistConfig, frequentist_test_moments};
use crate::statistics::{ArmMoments, Statistic, ZeroThetaFallback, prepare_pair};

/// Engine-specific settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "engine", rename_all = "snake_case")]
pub enum Engine {
    Frequentist {
        #[serde(default)]
        alternative: Alternative,
        /// `Some(N*)` for sequential testing.
        #[serde(default)]
        sequential_tuning_parameter: Option<f64>,
        #[serde(default)]
        test_value: f64,
    },
    Bayesian {
        #[serde(default)]
        prior: GaussianPrior,
        #[serde(default)]
        prior_scale: PriorScale,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisSettings {
    pub engine: Engine,
    #[serde(default)]
    pub difference_type: DifferenceType,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Lower is better for this metric.
    #[serde(default)]
    pub inverse: bool,
    /// Planned traffic share per arm, control first (used by `Scaled`). Equal when absent.
    #[serde(default)]
    pub traffic_weights: Option<Vec<f64>>,
    #[serde(default = "default_phase_length_days")]
    pub phase_length_days: f64,
    /// Adjust p-values across the treatments (frequentist only).
    #[serde(default)]
    pub correction: Option<Correction>,
}

fn default_alpha() -> f64 {
    0.05
}

fn default_phase_length_days() -> f64 {
    1.0
}

impl AnalysisSettings {
    pub fn frequentist() -> AnalysisSettings {
        AnalysisSettings::with_engine(Engine::Frequentist {
            alternative: Alternative::TwoSided,
            sequential_tuning_parameter: None,
            test_value: 0.0,
        })
    }

    pub fn bayesian() -> AnalysisSettings {
        AnalysisSettings::with_engine(Engine::Bayesian {
            prior: GaussianPrior::default(),
            prior_scale: PriorScale::Relative,
        })
    }

    fn with_engine(engine: Engine) -> AnalysisSettings {
        AnalysisSettings {
            engine,
            difference_type: DifferenceType::Relative,
            alpha: default_alpha(),
            inverse: false,
            traffic_weights: None,
            phase_length_days: default_phase_length_days(),
            correction: None,
        }
    }
}

/// What the report shows for one arm in one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArmSummary {
    pub users: u64,
    /// Unadjusted mean (gbstats `cr`).
    pub mean: f64,
    /// Standard deviation of the (CUPED-adjusted) per-unit value.
    pub stddev: f64,
}

impl ArmSummary {
    fn from_moments(moments: &ArmMoments) -> ArmSummary {
        ArmSummary {
            users: moments.n,
            mean: moments.unadjusted_mean,
            stddev: moments.stddev(),
        }
    }
}

/// One treatment against the control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EffectResult {
    /// Position of the treatment in the `treatments` slice.
    pub treatment_index: usize,
    pub control: ArmSummary,
    pub treatment: ArmSummary,
    /// Pooled CUPED θ for this pair, when the metric is regression adjusted.
    pub theta: Option<f64>,
    /// Reported effect. As in the gbstats runner: 0 when the control mean is not positive, and
    /// the raw relative difference when the test returned its uninformative 0.
    pub expected: f64,
    pub ci: [f64; 2],
    pub uplift: Uplift,
    pub p_value: Option<f64>,
    pub p_value_adjusted: Option<f64>,
    pub ci_adjusted: Option<[f64; 2]>,
    pub degrees_of_freedom: Option<f64>,
    pub chance_to_win: Option<f64>,
    pub risk: Option<[f64; 2]>,
    pub risk_type: Option<RiskType>,
    pub error: Option<ResultError>,
}

/// Analyses each treatment against `control` for one metric.
pub fn analyze(
    control: &Statistic,
    treatments: &[Statistic],
    settings: &AnalysisSettings,
) -> Result<Vec<EffectResult>, StatsError> {
    if treatments.is_empty() {
        return Err(StatsError::NoTreatments);
    }
    if !(settings.alpha > 0.0 && settings.alpha < 1.0) {
        return Err(StatsError::InvalidAlpha {
            alpha: settings.alpha,
        });
    }
    let arm_count = treatments.len() + 1;
    let traffic_weights = match &settings.traffic_weights {
        Some(weights) if weights.len() != arm_count => {
            return Err(StatsError::WeightCount {
                expected: arm_count,
                actual: weights.len(),
            });
        }
        Some(weights) => weights.clone(),
        None => vec![1.0 / arm_count as f64; arm_count],
    };

    let mut results = Vec::with_capacity(treatments.len());
    for (treatment_index, treatment) in treatments.iter().enumerate() {
        let traffic_proportion = traffic_weights[treatment_index + 1];
        let result = match settings.engine {
            Engine::Frequentist {
                alternative,
                sequential_tuning_parameter,
                test_value,
            } => {
                let config = FrequentistConfig {
                    difference_type: settings.difference_type,
                    alpha: settings.alpha,
                    test_value,
                    alternative,
                    sequential_tuning_parameter,
                    traffic_proportion,
                    phase_length_days: settings.phase_length_days,
                };
                if sequential_tuning_parameter.is_some() && alternative != Alternative::TwoSided {
                    return Err(StatsError::SequentialOneSided);
                }
                let (control_moments, treatment_moments, theta) =
                    prepare_pair(control, treatment, ZeroThetaFallback::PostStatistic)?;
                let test = frequentist_test_moments(&control_moments, &treatment_moments, &config);
                EffectResult {
                    treatment_index,
                    control: ArmSummary::from_moments(&control_moments),
                    treatment: ArmSummary::from_moments(&treatment_moments),
                    theta,
                    expected: reported_expected(
                        &control_moments,
                        &treatment_moments,
                        test.expected,
                    ),
                    ci: test.ci,
                    uplift: test.uplift,
                    p_value: Some(test.p_value),
                    p_value_adjusted: None,
                    ci_adjusted: None,
                    degrees_of_freedom: test.degrees_of_freedom,
                    chance_to_win: None,
                    risk: None,
                    risk_type: None,
                    error: test.error,
                }
            }
            Engine::Bayesian { prior, prior_scale } => {
                if prior.proper && (prior.variance.is_nan() || prior.variance <= 0.0) {
                    return Err(StatsError::InvalidPriorVariance {
                        variance: prior.variance,
                    });
                }
                let config = BayesianConfig {
                    difference_type: settings.difference_type,
                    alpha: settings.alpha,
                    inverse: settings.inverse,
                    prior,
                    prior_scale,
                    traffic_proportion,
                    phase_length_days: settings.phase_length_days,
                };
                let (control_moments, treatment_moments, theta) =
                    prepare_pair(control, treatment, ZeroThetaFallback::KeepAdjusted)?;
                let test = bayesian_test_moments(&control_moments, &treatment_moments, &config);
                EffectResult {
                    treatment_index,
                    control: ArmSummary::from_moments(&control_moments),
                    treatment: ArmSummary::from_moments(&treatment_moments),
                    theta,
                    expected: reported_expected(
                        &control_moments,
                        &treatment_moments,
                        test.expected,
                    ),
                    ci: test.ci,
                    uplift: test.uplift,
                    p_value: None,
                    p_value_adjusted: None,
                    ci_adjusted: None,
                    degrees_of_freedom: None,
                    chance_to_win: Some(test.chance_to_win),
                    risk: Some(test.risk),
                    risk_type: Some(test.risk_type),
                    error: test.error,
                }
            }
        };
        results.push(result);
    }

    if let Some(correction) = settings.correction {
        apply_correction(&mut results, correction, settings.alpha);
    }
    Ok(results)
}

/// The runner's post-processing of `expected` (gbstats `analyze_metric_df`). Note that the
/// fallback is the *relative* difference whatever the difference type.
fn reported_expected(control: &ArmMoments, treatment: &ArmMoments, test_expected: f64) -> f64 {
    if control.unadjusted_mean <= 0.0 {
        0.0
    } else if test_expected == 0.0 {
        (treatment.mean - control.mean) / control.unadjusted_mean
    } else {
        test_expected
    }
}

fn apply_correction(results: &mut [EffectResult], correction: Correction, alpha: f64) {
    let mut indices = Vec::new();
    let mut p_values = Vec::new();
    for (index, result) in results.iter().enumerate() {
        if let Some(p_value) = result.p_value {
            indices.push(index);
            p_values.push(p_value);
        }
    }
    let adjusted = adjust_p_values(&p_values, correction);
    for (index, adjusted_p_value) in indices.into_iter().zip(adjusted) {
        let result = &mut results[index];
        result.p_value_adjusted = Some(adjusted_p_value);
        result.ci_adjusted = Some(adjusted_confidence_interval(
            adjusted_p_value,
            &result.uplift,
            result.ci,
            alpha,
        ));
    }
}
