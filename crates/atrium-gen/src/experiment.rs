//! Experiments with a planted effect: users exposed to variations (`Experiment Viewed`, Segment
//! convention) who then order with a known lift per variation. An A/A experiment is the same with
//! every lift 0.
//!
//! Each user has a latent propensity `u` (mean 1) that drives both an order in the 14 days before
//! exposure and the conversion after it, so the pre-exposure revenue is a useful CUPED covariate.
//! A user converts within 48 hours of exposure with probability
//! `conversion_rate * u * (1 + lift)`; the order value does not depend on the variation, so the
//! planted relative lift of revenue per user equals the conversion lift.

use chrono::{DateTime, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::{DAY, HOUR, MINUTE, SOURCE_FIELD, format_ts as iso};

/// What to plant.
#[derive(Clone, Debug, PartialEq)]
pub struct PlantedExperiment {
    pub seed: u64,
    /// The experiment key exposures carry as `experiment_id`.
    pub key: String,
    /// Exposed users.
    pub users: usize,
    /// Traffic split, control first (any positive scale).
    pub weights: Vec<f64>,
    /// Relative conversion lift per variation, control first (0 for the control).
    pub lifts: Vec<f64>,
    /// Control's probability of ordering within 48 hours of exposure.
    pub conversion_rate: f64,
    /// Mean order value.
    pub order_value: f64,
    /// First exposure time; exposures spread over `days`.
    pub start: DateTime<Utc>,
    pub days: u32,
    /// User ids are `<user_prefix><n>`.
    pub user_prefix: String,
}

impl PlantedExperiment {
    /// A two-arm experiment with a `lift` on conversion in the treatment.
    pub fn ab(seed: u64, key: &str, users: usize, lift: f64) -> PlantedExperiment {
        PlantedExperiment {
            seed,
            key: key.to_owned(),
            users,
            weights: vec![0.5, 0.5],
            lifts: vec![0.0, lift],
            conversion_rate: 0.1,
            order_value: 60.0,
            start: Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap(),
            days: 14,
            user_prefix: format!("{key}-user-"),
        }
    }

    /// A two-arm experiment where the variations do not differ.
    pub fn aa(seed: u64, key: &str, users: usize) -> PlantedExperiment {
        PlantedExperiment::ab(seed, key, users, 0.0)
    }

    /// The events, ordered by timestamp, each tagged with `_source: web`.
    pub fn events(&self) -> Vec<Value> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let total_weight: f64 = self.weights.iter().sum();
        let start_ms = self.start.timestamp_millis();
        let mut events: Vec<(i64, Value)> = Vec::with_capacity(self.users * 2);
        for index in 0..self.users {
            let user_id = format!("{}{index}", self.user_prefix);
            let mut draw = rng.r#gen::<f64>() * total_weight;
            let mut variation = self.weights.len() - 1;
            for (arm, weight) in self.weights.iter().enumerate() {
                if draw < *weight {
                    variation = arm;
                    break;
                }
                draw -= weight;
            }
            // Propensity 0.5, 1 or 1.5 with equal probability (mean 1).
            let propensity = [0.5, 1.0, 1.5][rng.gen_range(0..3)];
            let exposed_at = start_ms + rng.gen_range(0..(self.days as i64 * DAY).max(1));
            if rng.r#gen::<f64>() < self.conversion_rate * propensity {
                let at = exposed_at - rng.gen_range(HOUR..14 * DAY);
                events.push((at, self.order(&user_id, at, &mut rng)));
            }
            events.push((
                exposed_at,
                json!({
                    "type": "track",
                    "userId": user_id,
                    "event": "Experiment Viewed",
                    "timestamp": iso(exposed_at),
                    "properties": {"experiment_id": self.key, "variation_id": variation.to_string()},
                    SOURCE_FIELD: "web",
                }),
            ));
            let lift = self.lifts.get(variation).copied().unwrap_or(0.0);
            if rng.r#gen::<f64>() < self.conversion_rate * propensity * (1.0 + lift) {
                let at = exposed_at + rng.gen_range(MINUTE..48 * HOUR);
                events.push((at, self.order(&user_id, at, &mut rng)));
            }
        }
        events.sort_by_key(|(at, _)| *at);
        events.into_iter().map(|(_, event)| event).collect()
    }

    fn order(&self, user_id: &str, at: i64, rng: &mut ChaCha8Rng) -> Value {
        // Uniform on [0.5, 1.5] × the mean value, in cents.
        let revenue = (self.order_value * rng.gen_range(0.5..1.5) * 100.0).round() / 100.0;
        json!({
            "type": "track",
            "userId": user_id,
            "event": "Order Completed",
            "timestamp": iso(at),
            "properties": {
                "order_id": format!("{}-{}", self.key, uuid_like(rng)),
                "revenue": revenue,
                "currency": "USD",
            },
            SOURCE_FIELD: "web",
        })
    }
}

fn uuid_like(rng: &mut ChaCha8Rng) -> String {
    format!("{:016x}", rng.r#gen::<u64>())
}
