//! The demo shop's experiments: metrics, an A/B test with a planted lift and an A/A test,
//! defined and ingested through the HTTP API so `GET /v1/experiments/{key}/results` has
//! something to show.

use anyhow::Context;
use atrium_gen::PlantedExperiment;
use serde_json::{Value, json};

/// The A/B experiment's key and its planted relative lift on conversion.
pub const AB_EXPERIMENT: &str = "checkout-redesign";
pub const AB_LIFT: f64 = 0.2;
/// The A/A experiment's key.
pub const AA_EXPERIMENT: &str = "homepage-aa";

/// `PUT {base}{path}` with the admin key; an error names the path and the server's answer.
pub(crate) async fn put(
    client: &reqwest::Client,
    base: &str,
    admin_key: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<()> {
    let response = client
        .put(format!("{base}{path}"))
        .bearer_auth(admin_key)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("PUT {path}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "PUT {path}: {} {}",
        response.status(),
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

fn experiment(feature: &str, hypothesis: &str) -> Value {
    json!({
        "feature": feature,
        "hypothesis": hypothesis,
        "variations": [{"value": false, "name": "control"}, {"value": true, "name": "treatment"}],
        "status": "running",
        "started_at": "2026-02-01T00:00:00.000Z",
        "goal_metrics": ["purchase", "revenue"],
        "guardrail_metrics": ["aov"],
    })
}

/// Defines the metrics and experiments, then sends their generated exposures and orders as the
/// `web` source: an eighth of the shop's event count as A/B users (2,000 to 20,000), two thirds
/// of that as A/A users.
pub async fn define_and_ingest(
    base: &str,
    admin_key: &str,
    web_write_key: &str,
    seed: u64,
    shop_events: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let metrics = [
        (
            "purchase",
            json!({"type": "conversion", "event": "Order Completed", "window_hours": 72, "name": "Purchase within 72 h"}),
        ),
        (
            "revenue",
            json!({"type": "sum", "event": "Order Completed", "value": "revenue", "name": "Revenue per user",
            "covariate": {"lookback_days": 14}, "cap": {"type": "percentile", "value": 0.999}}),
        ),
        (
            "orders",
            json!({"type": "count", "event": "Order Completed", "name": "Orders per user"}),
        ),
        (
            "aov",
            json!({"type": "ratio", "numerator": "revenue", "denominator": "orders", "name": "Average order value"}),
        ),
    ];
    for (key, body) in metrics {
        put(
            &client,
            base,
            admin_key,
            &format!("/v1/metrics/{key}"),
            body,
        )
        .await?;
    }
    put(
        &client,
        base,
        admin_key,
        &format!("/v1/experiments/{AB_EXPERIMENT}"),
        experiment(
            "new-checkout",
            "a one-page checkout makes more visitors buy",
        ),
    )
    .await?;
    put(
        &client,
        base,
        admin_key,
        &format!("/v1/experiments/{AA_EXPERIMENT}"),
        experiment("homepage-copy", "an A/A test: both arms are identical"),
    )
    .await?;
    let ab_users = (shop_events / 8).clamp(2_000, 20_000);
    let mut events = PlantedExperiment::ab(seed, AB_EXPERIMENT, ab_users, AB_LIFT).events();
    events.extend(PlantedExperiment::aa(seed + 1, AA_EXPERIMENT, ab_users * 2 / 3).events());
    for chunk in events.chunks_mut(500) {
        for event in chunk.iter_mut() {
            atrium_gen::take_source(event);
        }
        let response = client
            .post(format!("{base}/v1/batch"))
            .basic_auth(web_write_key, Some(""))
            .json(&json!({"batch": chunk}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "demo experiment ingest failed: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}
