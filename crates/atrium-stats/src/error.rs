//! Errors for inputs the engine cannot analyse. Data-driven conditions that gbstats reports as
//! an uninformative result (zero variance, empty arms, ...) are not errors: see
//! [`crate::ResultError`].

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    #[error("control and treatment statistics must be of the same kind")]
    MismatchedStatistics,
    #[error("alpha must be in (0, 1), got {alpha}")]
    InvalidAlpha { alpha: f64 },
    #[error("expected {expected} traffic weights (one per arm), got {actual}")]
    WeightCount { expected: usize, actual: usize },
    #[error("at least one treatment arm is required")]
    NoTreatments,
    #[error("sequential testing supports only two-sided tests")]
    SequentialOneSided,
    #[error("sequential tuning parameter must be positive, got {value}")]
    InvalidTuningParameter { value: f64 },
    #[error("prior variance must be positive for a proper prior, got {variance}")]
    InvalidPriorVariance { variance: f64 },
    #[error("bandit needs at least two arms, got {arms}")]
    TooFewBanditArms { arms: usize },
    #[error("bandit arm {arm} has no information: improper prior and zero variance")]
    UninformativeBanditArm { arm: usize },
}
