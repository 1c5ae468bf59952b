//! Thin wrappers over `statrs` distributions, named after the scipy calls gbstats makes.

use statrs::distribution::{ChiSquared, Continuous, ContinuousCDF, Normal, StudentsT};

fn standard_normal() -> Normal {
    Normal::standard()
}

/// Standard normal density.
pub(crate) fn norm_pdf(x: f64) -> f64 {
    standard_normal().pdf(x)
}

/// Standard normal survival function `1 - Φ(x)`, accurate in the upper tail.
pub(crate) fn norm_sf(x: f64) -> f64 {
    standard_normal().sf(x)
}

/// Standard normal quantile.
pub(crate) fn norm_ppf(probability: f64) -> f64 {
    standard_normal().inverse_cdf(probability)
}

/// Student's t CDF with `dof` degrees of freedom; NaN when `dof` is not a valid parameter.
pub(crate) fn t_cdf(x: f64, dof: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, dof) {
        Ok(distribution) => distribution.cdf(x),
        Err(_) => f64::NAN,
    }
}

/// Student's t quantile with `dof` degrees of freedom; NaN when `dof` is not a valid parameter.
pub(crate) fn t_ppf(probability: f64, dof: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, dof) {
        Ok(distribution) => distribution.inverse_cdf(probability),
        Err(_) => f64::NAN,
    }
}

/// Chi-square survival function.
pub(crate) fn chi2_sf(x: f64, dof: f64) -> f64 {
    match ChiSquared::new(dof) {
        Ok(distribution) => distribution.sf(x),
        Err(_) => f64::NAN,
    }
}

/// Expected loss of shipping the control and of shipping the treatment when the effect
/// Δ ~ N(mu, sigma²): `[E[max(Δ, 0)], E[max(-Δ, 0)]]`.
///
/// gbstats computes `P(Δ > 0) · E[Δ | Δ > 0]` and `-P(Δ < 0) · E[Δ | Δ < 0]` with scipy's
/// truncated normal; here the truncated means are written with the inverse Mills ratio, which
/// stays accurate far into the tails, while the probabilities are formed as gbstats forms them.
pub(crate) fn normal_expected_losses(mu: f64, sigma: f64) -> [f64; 2] {
    let z = mu / sigma;
    // P(Δ < 0) = Φ(-z). Like gbstats, P(Δ > 0) is `1 - P(Δ < 0)`, so it rounds to exactly 0
    // (and the control's risk with it) once P(Δ < 0) is within 1e-17 of 1.
    let probability_negative = norm_sf(z);
    let probability_positive = 1.0 - probability_negative;
    // E[Δ | Δ > 0] = mu + sigma φ(z) / Φ(z)
    let density = norm_pdf(z);
    let loss_control = if probability_positive > 0.0 {
        probability_positive * sigma * (z + density / probability_positive)
    } else {
        0.0
    };
    // E[Δ | Δ < 0] = mu - sigma φ(z) / Φ(-z)
    let loss_treatment = if probability_negative > 0.0 {
        probability_negative * sigma * (density / probability_negative - z)
    } else {
        0.0
    };
    [loss_control, loss_treatment]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_tables() {
        assert!((norm_ppf(0.975) - 1.959_963_984_540_054).abs() < 1e-12);
        // t(10) 97.5% quantile from tables: 2.228138851986273
        assert!((t_ppf(0.975, 10.0) - 2.228_138_851_986_273).abs() < 1e-9);
        // chi-square(1) survival at 3.841458820694124 is 0.05
        assert!((chi2_sf(3.841_458_820_694_124, 1.0) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn expected_losses_at_zero_mean() {
        // E[max(Δ,0)] for Δ ~ N(0, 1) is φ(0) = 1/sqrt(2π)
        let [control, treatment] = normal_expected_losses(0.0, 1.0);
        let expected = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
        assert!((control - expected).abs() < 1e-15);
        assert!((treatment - expected).abs() < 1e-15);
    }
}
