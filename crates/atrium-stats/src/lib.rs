//! Experiment statistics for Atrium, compatible with GrowthBook's `gbstats` engine.
//!
//! **Architecture invariant:** this crate performs no IO. Every function is pure and works on
//! sufficient statistics (counts, sums, sums of squares, cross products) that the pipeline
//! computes elsewhere.
//!
//! **API boundary:** [`analyze`] for a whole metric (control + treatments); the individual
//! tests ([`frequentist_test`], [`bayesian_test`]), [`srm_p_value`], [`adjust_p_values`] and
//! [`thompson_weights`] for callers that need one piece.
//!
//! Reference: gbstats 0.8.0 (PyPI), cross-checked by `tests/gbstats/crosscheck.py`. Known
//! deliberate differences from that release:
//! - the one-sided "treatment lesser" interval is `(-inf, estimate + width]`; gbstats 0.8.0
//!   returns `estimate - width` as the upper bound (fixed in GrowthBook's later engine);
//! - risk uses a closed form of the truncated-normal means (same quantity, better tails);
//! - bandit draws use ChaCha8, not numpy's generator (see [`bandit`]).

pub mod analyze;
pub mod bandit;
pub mod bayesian;
pub mod corrections;
mod distributions;
pub mod effect;
pub mod error;
pub mod frequentist;
pub mod srm;
pub mod statistics;

pub use analyze::{AnalysisSettings, ArmSummary, EffectResult, Engine, analyze};
pub use bandit::{BanditConfig, BanditWeights, thompson_weights};
pub use bayesian::{
    BayesianConfig, BayesianResult, GaussianPrior, PriorScale, RiskType, bayesian_test,
    bayesian_test_moments,
};
pub use corrections::{
    Correction, adjust_p_values, adjusted_confidence_interval, benjamini_hochberg, holm_bonferroni,
};
pub use effect::{DifferenceType, ResultError, Uplift};
pub use error::StatsError;
pub use frequentist::{
    Alternative, FrequentistConfig, FrequentistResult, frequentist_test, frequentist_test_moments,
    welch_degrees_of_freedom,
};
pub use srm::{DEFAULT_SRM_THRESHOLD, srm_p_value};
pub use statistics::{
    ArmMoments, BaseStatistic, Proportion, Ratio, RegressionAdjusted, SampleMean, Statistic,
    compute_theta,
};
