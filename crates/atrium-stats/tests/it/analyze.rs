//! `analyze` over several arms, settings validation and JSON round trips.

use atrium_stats::{
    Alternative, AnalysisSettings, Correction, Engine, Proportion, SampleMean, Statistic,
    StatsError, analyze,
};

fn mean_arm(n: u64, mean: f64, variance: f64) -> Statistic {
    let n_f64 = n as f64;
    Statistic::SampleMean(SampleMean {
        n,
        sum: mean * n_f64,
        sum_squares: variance * (n_f64 - 1.0) + mean * mean * n_f64,
    })
}

#[test]
fn one_result_per_treatment_in_order() {
    let control = mean_arm(1000, 10.0, 4.0);
    let treatments = [
        mean_arm(1000, 10.1, 4.0),
        mean_arm(1000, 10.5, 4.0),
        mean_arm(1000, 9.9, 4.0),
    ];
    let results = analyze(&control, &treatments, &AnalysisSettings::frequentist()).unwrap();
    assert_eq!(results.len(), 3);
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result.treatment_index, index);
        assert!(result.p_value.is_some());
        assert!(result.chance_to_win.is_none());
    }
    assert!((results[1].expected - 0.05).abs() < 1e-12);
    assert!(results[1].p_value.unwrap() < results[0].p_value.unwrap());
    assert!(results[2].expected < 0.0);
}

#[test]
fn corrections_never_shrink_p_values() {
    let control = mean_arm(500, 10.0, 4.0);
    let treatments = [
        mean_arm(500, 10.2, 4.0),
        mean_arm(500, 10.4, 4.0),
        mean_arm(500, 10.0, 4.0),
    ];
    for correction in [Correction::HolmBonferroni, Correction::BenjaminiHochberg] {
        let settings = AnalysisSettings {
            correction: Some(correction),
            ..AnalysisSettings::frequentist()
        };
        for result in analyze(&control, &treatments, &settings).unwrap() {
            let adjusted = result.p_value_adjusted.unwrap();
            assert!(adjusted >= result.p_value.unwrap());
            let ci_adjusted = result.ci_adjusted.unwrap();
            assert!(ci_adjusted[0] <= result.ci[0] && ci_adjusted[1] >= result.ci[1]);
        }
    }
}

#[test]
fn bayesian_results_carry_chance_to_win() {
    let control = Statistic::Proportion(Proportion { n: 100, sum: 49.0 });
    let treatments = [Statistic::Proportion(Proportion { n: 100, sum: 51.0 })];
    let results = analyze(&control, &treatments, &AnalysisSettings::bayesian()).unwrap();
    assert!((results[0].chance_to_win.unwrap() - 0.60918).abs() < 5e-6);
    assert_eq!(results[0].p_value, None);
}

#[test]
fn invalid_settings_are_errors_not_panics() {
    let control = mean_arm(100, 1.0, 1.0);
    let treatments = [mean_arm(100, 1.1, 1.0)];
    let bad_alpha = AnalysisSettings {
        alpha: 1.5,
        ..AnalysisSettings::frequentist()
    };
    assert!(matches!(
        analyze(&control, &treatments, &bad_alpha),
        Err(StatsError::InvalidAlpha { .. })
    ));
    let bad_weights = AnalysisSettings {
        traffic_weights: Some(vec![0.5]),
        ..AnalysisSettings::frequentist()
    };
    assert!(matches!(
        analyze(&control, &treatments, &bad_weights),
        Err(StatsError::WeightCount {
            expected: 2,
            actual: 1
        })
    ));
    assert!(matches!(
        analyze(&control, &[], &AnalysisSettings::frequentist()),
        Err(StatsError::NoTreatments)
    ));
    let mixed = [Statistic::Proportion(Proportion { n: 100, sum: 3.0 })];
    assert!(matches!(
        analyze(&control, &mixed, &AnalysisSettings::frequentist()),
        Err(StatsError::MismatchedStatistics)
    ));
    let sequential_one_sided = AnalysisSettings {
        engine: Engine::Frequentist {
            alternative: Alternative::Greater,
            sequential_tuning_parameter: Some(5000.0),
            test_value: 0.0,
        },
        ..AnalysisSettings::frequentist()
    };
    assert!(matches!(
        analyze(&control, &treatments, &sequential_one_sided),
        Err(StatsError::SequentialOneSided)
    ));
}

#[test]
fn settings_and_results_round_trip_through_json() {
    let settings: AnalysisSettings = serde_json::from_str(
        r#"{"engine": {"engine": "bayesian", "prior": {"mean": 0.0, "variance": 0.09, "proper": true}},
            "difference_type": "absolute", "inverse": true}"#,
    )
    .unwrap();
    assert_eq!(settings.alpha, 0.05);
    let control: Statistic =
        serde_json::from_str(r#"{"type": "proportion", "n": 100, "sum": 40}"#).unwrap();
    let treatments = [Statistic::Proportion(Proportion { n: 100, sum: 45.0 })];
    let results = analyze(&control, &treatments, &settings).unwrap();
    let text = serde_json::to_string(&results).unwrap();
    assert!(text.contains("\"chance_to_win\""));
    let back: Vec<atrium_stats::EffectResult> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, results);
}
