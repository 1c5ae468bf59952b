//! Thompson sampling: reproducible for a seed and close to the exact P(best) for two arms.

use atrium_stats::{BanditConfig, Proportion, SampleMean, Statistic, StatsError, thompson_weights};

fn normal_cdf(x: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().cdf(x)
}

/// An arm of `n` units with the given mean and sample variance exactly.
fn mean_arm(n: u64, mean: f64, variance: f64) -> Statistic {
    let n_f64 = n as f64;
    Statistic::SampleMean(SampleMean {
        n,
        sum: mean * n_f64,
        sum_squares: variance * (n_f64 - 1.0) + n_f64 * mean * mean,
    })
}

#[test]
fn same_seed_same_weights() {
    let arms = [
        Statistic::Proportion(Proportion {
            n: 1000,
            sum: 100.0,
        }),
        Statistic::Proportion(Proportion {
            n: 1000,
            sum: 110.0,
        }),
        Statistic::Proportion(Proportion { n: 1000, sum: 95.0 }),
    ];
    let config = BanditConfig::default();
    let first = thompson_weights(&arms, &config).unwrap();
    let second = thompson_weights(&arms, &config).unwrap();
    assert_eq!(first, second);
    let weights = first.weights.unwrap();
    assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(weights.iter().all(|weight| *weight >= 0.0099));
    assert!(weights[1] > weights[2]);
}

#[test]
fn best_arm_probability_matches_closed_form() {
    let arms = [mean_arm(400, 1.0, 1.0), mean_arm(400, 1.1, 1.0)];
    let config = BanditConfig {
        top_two: false,
        min_variation_weight: 0.0,
        draws: 40_000,
        seed: 7,
        ..BanditConfig::default()
    };
    let result = thompson_weights(&arms, &config).unwrap();
    let difference = result.posterior_means[1] - result.posterior_means[0];
    let spread = (result.posterior_variances[0] + result.posterior_variances[1]).sqrt();
    let exact = normal_cdf(difference / spread);
    assert!(
        (result.best_arm_probabilities[1] - exact).abs() < 0.01,
        "{} vs {exact}",
        result.best_arm_probabilities[1]
    );
    let inverse = thompson_weights(
        &arms,
        &BanditConfig {
            inverse: true,
            ..config
        },
    )
    .unwrap();
    assert!((inverse.best_arm_probabilities[0] - exact).abs() < 0.01);
}

#[test]
fn too_little_data_gives_no_weights() {
    let arms = [
        Statistic::Proportion(Proportion { n: 50, sum: 5.0 }),
        Statistic::Proportion(Proportion { n: 60, sum: 9.0 }),
    ];
    let result = thompson_weights(&arms, &BanditConfig::default()).unwrap();
    assert!(result.weights.is_none());
    assert!(matches!(
        thompson_weights(&arms[..1], &BanditConfig::default()),
        Err(StatsError::TooFewBanditArms { arms: 1 })
    ));
}
