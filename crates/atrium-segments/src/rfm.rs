//! RFM scoring and population quintiles.
//!
//! An `rfm` computed trait scores three per-profile inputs ([`RfmInputs`]) from 1 to 5 with
//! four cut points per dimension ([`RfmCutPoints`]); [`rfm_score`] is the one scoring rule the
//! evaluators and the SQL compilation follow. With `"rfm": {"quintiles": true}` the cut points
//! are the population's quintiles, computed by [`rfm_quintiles`] from every profile's inputs
//! (the server reads those from the warehouse and writes the result into the definition).
//!
//! Quantile method: linear interpolation between closest ranks, numpy's default
//! (`method="linear"`, Hyndman & Fan type 7). Over the `n` values sorted ascending,
//! `x[0] <= … <= x[n-1]`, the `p`-quantile is at the fractional index `h = (n - 1) p`:
//! `x[⌊h⌋] + (h - ⌊h⌋) (x[⌊h⌋ + 1] - x[⌊h⌋])`. For quintiles `p = k / 5`, so `h` is computed
//! exactly in integers (`(n - 1) k` divided by 5, with its remainder as the fraction).
//!
//! Scoring with quintile cut points is right-closed (a value scores above bin `k` only when it
//! exceeds the `k`-th cut point), so over `n` distinct values each score 1..=5 goes to
//! `⌊(n-1)k/5⌋ - ⌊(n-1)(k-1)/5⌋` values (plus one for the first bin): within one of `n / 5`.

use crate::model::RfmCutPoints;

/// One profile's RFM inputs over the trait's counted orders.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RfmInputs {
    /// Whole days (24 h) since the latest counted order, 0 for orders dated in the future.
    pub recency_days: f64,
    /// Number of counted orders (at least 1 for a profile in the population).
    pub orders: f64,
    /// Sum of the numeric revenue values (0 when none is numeric).
    pub revenue: f64,
}

/// The `(r, f, m)` scores of `inputs`.
///
/// Recency always counts the cut points strictly below the days: `r = 5 - #{cut : days > cut}`.
/// Frequency and monetary count `value >= cut` for fixed thresholds (`right_closed` false, the
/// original rule) and `value > cut` for quintile cut points (`right_closed` true).
pub fn rfm_score(cuts: &RfmCutPoints, right_closed: bool, inputs: &RfmInputs) -> (u8, u8, u8) {
    let recency = 5 - count_above(inputs.recency_days, &cuts.recency_days, true);
    let frequency = 1 + count_above(inputs.orders, &cuts.frequency, right_closed);
    let monetary = 1 + count_above(inputs.revenue, &cuts.monetary, right_closed);
    (recency, frequency, monetary)
}

/// How many cut points `value` is above (`strictly`: `value > cut`, else `value >= cut`).
fn count_above(value: f64, cuts: &[f64; 4], strictly: bool) -> u8 {
    let above = |cut: &&f64| {
        if strictly {
            value > **cut
        } else {
            value >= **cut
        }
    };
    cuts.iter().filter(above).count() as u8
}

/// The `k`-th of `parts` quantiles (`0 <= k <= parts`) of `sorted` (ascending, not empty),
/// by linear interpolation (see the module docs).
///
/// # Panics
/// When `sorted` is empty or `k > parts` or `parts == 0` (callers check).
pub fn quantile_sorted(sorted: &[f64], k: usize, parts: usize) -> f64 {
    assert!(!sorted.is_empty() && parts > 0 && k <= parts);
    let scaled = (sorted.len() - 1) * k;
    let index = scaled / parts;
    let remainder = scaled % parts;
    let lower = sorted[index];
    if remainder == 0 {
        return lower;
    }
    let upper = sorted[index + 1];
    let interpolated = lower + (upper - lower) * (remainder as f64 / parts as f64);
    // Rounding never carries the cut point past its neighbours.
    interpolated.clamp(lower, upper)
}

/// The 20th, 40th, 60th and 80th percentiles of `values` (any order; `NaN`s are ignored), or
/// `None` when there is no value.
pub fn quintiles(values: &[f64]) -> Option<[f64; 4]> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    Some([1, 2, 3, 4].map(|k| quantile_sorted(&sorted, k, 5)))
}

/// Quintile cut points of each dimension over a population (one [`RfmInputs`] per profile with
/// at least one counted order); `None` for an empty population.
pub fn rfm_quintiles(population: &[RfmInputs]) -> Option<RfmCutPoints> {
    let column =
        |pick: fn(&RfmInputs) -> f64| -> Vec<f64> { population.iter().map(pick).collect() };
    Some(RfmCutPoints {
        recency_days: quintiles(&column(|inputs| inputs.recency_days))?,
        frequency: quintiles(&column(|inputs| inputs.orders))?,
        monetary: quintiles(&column(|inputs| inputs.revenue))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], [20, 40, 60, 80]) == [1.6, 2.2, 2.8, 3.4]
        let cuts = quintiles(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        for (cut, expected) in cuts.iter().zip([1.6, 2.2, 2.8, 3.4]) {
            assert!((cut - expected).abs() < 1e-12, "{cuts:?}");
        }
        // numpy.percentile(range(1, 26), [20, 40, 60, 80]) == [5.8, 10.6, 15.4, 20.2]
        let values: Vec<f64> = (1..=25).map(f64::from).collect();
        let cuts = quintiles(&values).unwrap();
        for (cut, expected) in cuts.iter().zip([5.8, 10.6, 15.4, 20.2]) {
            assert!((cut - expected).abs() < 1e-9, "{cuts:?}");
        }
        // Exact ranks need no interpolation: n = 6 gives h = 1, 2, 3, 4.
        assert_eq!(
            quintiles(&[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]),
            Some([20.0, 30.0, 40.0, 50.0])
        );
        assert_eq!(quintiles(&[7.0]), Some([7.0; 4]));
        assert_eq!(quintiles(&[]), None);
        assert_eq!(quintiles(&[f64::NAN]), None);
    }

    #[test]
    fn ties_stay_in_the_lower_bin() {
        // Most customers ordered once: the low quintiles are all 1 and a single order scores 1.
        let population: Vec<RfmInputs> = [1, 1, 1, 1, 1, 1, 2, 2, 3, 5]
            .iter()
            .map(|orders| RfmInputs {
                recency_days: 0.0,
                orders: f64::from(*orders),
                revenue: 10.0,
            })
            .collect();
        let cuts = rfm_quintiles(&population).unwrap();
        for (cut, expected) in cuts.frequency.iter().zip([1.0, 1.0, 1.4, 2.2]) {
            assert!((cut - expected).abs() < 1e-12, "{cuts:?}");
        }
        let one = rfm_score(&cuts, true, &population[0]);
        assert_eq!(one, (5, 1, 1));
        let five = rfm_score(&cuts, true, &population[9]);
        assert_eq!(five.1, 5);
    }

    #[test]
    fn fixed_thresholds_keep_their_rule() {
        let cuts = RfmCutPoints {
            recency_days: [1.0, 7.0, 30.0, 90.0],
            frequency: [1.0, 2.0, 5.0, 10.0],
            monetary: [50.0, 100.0, 500.0, 1000.0],
        };
        let inputs = RfmInputs {
            recency_days: 7.0,
            orders: 2.0,
            revenue: 1000.0,
        };
        assert_eq!(rfm_score(&cuts, false, &inputs), (4, 3, 5));
        assert_eq!(rfm_score(&cuts, true, &inputs), (4, 2, 4));
    }
}
