//! Multiple-testing corrections of frequentist p-values, as GrowthBook applies them (in its
//! TypeScript layer, `packages/shared/src/experiments.ts`, not in gbstats): over every
//! (variation, metric) p-value of a report, then confidence intervals are widened to match.

use serde::{Deserialize, Serialize};

use crate::distributions::norm_ppf;
use crate::effect::Uplift;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Correction {
    /// Family-wise error rate (step-down Bonferroni).
    HolmBonferroni,
    /// False discovery rate (step-up).
    BenjaminiHochberg,
}

/// Adjusted p-values, in the order given.
pub fn adjust_p_values(p_values: &[f64], correction: Correction) -> Vec<f64> {
    match correction {
        Correction::HolmBonferroni => holm_bonferroni(p_values),
        Correction::BenjaminiHochberg => benjamini_hochberg(p_values),
    }
}

fn ascending_order(p_values: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p_values.len()).collect();
    order.sort_by(|&left, &right| p_values[left].total_cmp(&p_values[right]));
    order
}

/// Holm–Bonferroni: sorted ascending, `p_(i) · (m - i)` capped at 1 (0-based `i`), made
/// non-decreasing by a running maximum.
pub fn holm_bonferroni(p_values: &[f64]) -> Vec<f64> {
    let count = p_values.len();
    let mut adjusted = vec![0.0; count];
    let mut running_max: f64 = 0.0;
    for (rank, &index) in ascending_order(p_values).iter().enumerate() {
        let candidate = (p_values[index] * (count - rank) as f64).min(1.0);
        running_max = running_max.max(candidate);
        adjusted[index] = running_max;
    }
    adjusted
}

/// Benjamini–Hochberg: sorted ascending, `p_(i) · m / i` capped at 1 (1-based `i`), made
/// non-decreasing by a running minimum from the largest p-value down.
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let count = p_values.len();
    let mut adjusted = vec![0.0; count];
    let mut running_min: f64 = 1.0;
    let order = ascending_order(p_values);
    for (rank, &index) in order.iter().enumerate().rev() {
        let candidate = (p_values[index] * count as f64 / (rank + 1) as f64).min(1.0);
        running_min = running_min.min(candidate);
        adjusted[index] = running_min;
    }
    adjusted
}

/// The confidence interval implied by an adjusted p-value (GrowthBook `setAdjustedCIs`): the
/// standard error is backed out of the adjusted p-value under a normal approximation, and the
/// interval is only ever widened. An adjusted p-value above 0.999999 gives `(-inf, inf)`.
pub fn adjusted_confidence_interval(
    adjusted_p_value: f64,
    uplift: &Uplift,
    ci: [f64; 2],
    alpha: f64,
) -> [f64; 2] {
    if adjusted_p_value > 0.999_999 {
        return [f64::NEG_INFINITY, f64::INFINITY];
    }
    if uplift.mean == 0.0 {
        return [0.0, 0.0];
    }
    let z_score = norm_ppf(1.0 - alpha / 2.0);
    let adjusted_stddev = (uplift.mean / norm_ppf(1.0 - adjusted_p_value / 2.0)).abs();
    let width = z_score * adjusted_stddev;
    let candidate = [uplift.mean - width, uplift.mean + width];
    if candidate[0] < ci[0] && candidate[1] > ci[1] {
        candidate
    } else {
        ci
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_hand_checked() {
        // sorted 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04
        let adjusted = holm_bonferroni(&[0.04, 0.01, 0.02]);
        let expected = [0.04, 0.03, 0.04];
        for (got, want) in adjusted.iter().zip(expected) {
            assert!((got - want).abs() < 1e-15, "{adjusted:?}");
        }
    }

    #[test]
    fn bh_hand_checked() {
        // sorted 0.01, 0.02, 0.04, 0.5 with m = 4 -> 0.04, 0.04, 0.0533.., 0.5
        let adjusted = benjamini_hochberg(&[0.5, 0.04, 0.01, 0.02]);
        let expected = [0.5, 0.16 / 3.0, 0.04, 0.04];
        for (got, want) in adjusted.iter().zip(expected) {
            assert!((got - want).abs() < 1e-15, "{adjusted:?}");
        }
    }

    #[test]
    fn empty_input() {
        assert!(holm_bonferroni(&[]).is_empty());
        assert!(benjamini_hochberg(&[]).is_empty());
    }
}
