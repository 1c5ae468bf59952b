//! What both engines share: the effect scale, the delta-method effect variance, and the
//! conditions under which gbstats returns an uninformative result instead of an analysis.

use serde::{Deserialize, Serialize};

use crate::statistics::ArmMoments;

/// The scale an effect is reported on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceType {
    /// `(treatment - control) / control` (delta method).
    #[default]
    Relative,
    /// `treatment - control`.
    Absolute,
    /// Absolute effect times `n_treatment / traffic_proportion / phase_length_days`: impact per
    /// day if every unit received the treatment.
    Scaled,
}

/// Why gbstats returned its uninformative default result. Serialized with gbstats' message codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultError {
    #[serde(rename = "NO_UNITS_IN_VARIATION")]
    NoUnitsInVariation,
    #[serde(rename = "ZERO_NEGATIVE_VARIANCE")]
    ZeroNegativeVariance,
    #[serde(rename = "ZERO_NEGATIVE_BASELINE_VARIATION")]
    BaselineVariationZero,
    #[serde(rename = "ZERO_SCALED_VARIATION_WEIGHT")]
    ZeroScaledVariationWeight,
}

impl ResultError {
    /// gbstats' message code.
    pub fn code(&self) -> &'static str {
        match self {
            ResultError::NoUnitsInVariation => "NO_UNITS_IN_VARIATION",
            ResultError::ZeroNegativeVariance => "ZERO_NEGATIVE_VARIANCE",
            ResultError::BaselineVariationZero => "ZERO_NEGATIVE_BASELINE_VARIATION",
            ResultError::ZeroScaledVariationWeight => "ZERO_SCALED_VARIATION_WEIGHT",
        }
    }
}

/// The (approximately normal) distribution of the effect estimate.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Uplift {
    pub mean: f64,
    pub stddev: f64,
}

/// Point estimate of the effect (gbstats `frequentist_diff`). Relative effects divide by the
/// control's *unadjusted* mean, so CUPED changes the numerator only.
pub(crate) fn effect_point_estimate(
    control: &ArmMoments,
    treatment: &ArmMoments,
    relative: bool,
) -> f64 {
    if relative {
        (treatment.mean - control.mean) / control.unadjusted_mean
    } else {
        treatment.mean - control.mean
    }
}

/// Variance of the effect estimate (gbstats `frequentist_variance`); the relative form is the
/// delta method on `mean_t / mean_c` using unadjusted means.
pub(crate) fn effect_variance(control: &ArmMoments, treatment: &ArmMoments, relative: bool) -> f64 {
    let n_control = control.n as f64;
    let n_treatment = treatment.n as f64;
    if relative {
        let mean_control = control.unadjusted_mean;
        let mean_treatment = treatment.unadjusted_mean;
        treatment.variance / (mean_control.powi(2) * n_treatment)
            + control.variance * mean_treatment.powi(2) / (mean_control.powi(4) * n_control)
    } else {
        treatment.variance / n_treatment + control.variance / n_control
    }
}

/// Multiplier turning an absolute effect into a scaled (per-day, full-traffic) impact, or
/// `None` when the treatment's traffic proportion is 0.
pub(crate) fn scale_adjustment(
    treatment: &ArmMoments,
    traffic_proportion: f64,
    phase_length_days: f64,
) -> Option<f64> {
    if traffic_proportion == 0.0 {
        return None;
    }
    Some(treatment.n as f64 / traffic_proportion / phase_length_days)
}
