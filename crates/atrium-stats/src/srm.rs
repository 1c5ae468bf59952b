//! Sample-ratio-mismatch check (gbstats `utils.check_srm`).

use crate::distributions::chi2_sf;

/// GrowthBook's default threshold below which an SRM p-value is flagged.
pub const DEFAULT_SRM_THRESHOLD: f64 = 0.001;

/// Chi-square goodness-of-fit p-value of observed `users` per arm against expected `weights`
/// (any positive scale). Arms with a non-positive weight are left out of the statistic but still
/// count towards the `arms - 1` degrees of freedom, as in gbstats. Returns 1 with no users.
pub fn srm_p_value(users: &[u64], weights: &[f64]) -> f64 {
    let total_observed: u64 = users.iter().sum();
    if total_observed == 0 {
        return 1.0;
    }
    let total_weight: f64 = weights.iter().sum();
    let mut chi_square = 0.0;
    for (observed, weight) in users.iter().zip(weights) {
        if *weight <= 0.0 {
            continue;
        }
        let expected = weight / total_weight * total_observed as f64;
        chi_square += (*observed as f64 - expected).powi(2) / expected;
    }
    chi2_sf(chi_square, users.len() as f64 - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_value() {
        // gbstats check_srm([1000, 1100], [0.5, 0.5]): chi2 = 2 * 50^2 / 1050
        let p_value = srm_p_value(&[1000, 1100], &[0.5, 0.5]);
        assert!((p_value - 0.02910).abs() < 5e-6);
    }

    #[test]
    fn perfect_split_and_empty() {
        assert_eq!(srm_p_value(&[500, 500], &[1.0, 1.0]), 1.0);
        assert_eq!(srm_p_value(&[0, 0, 0], &[1.0, 1.0, 1.0]), 1.0);
    }
}
