//! Recommendations and the catalog through real HTTP: events ingested with the collection API,
//! catalog writes through the log, placements, rules, errors, attribution, restart.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

fn products() -> Value {
    json!({"items": [
        {"id": "shoe", "name": "Trail Shoe", "category": "Apparel > Shoes", "brand": "Acme", "price": 80.0, "stock": 5, "image_url": "https://shop.example/shoe.jpg"},
        {"id": "sock", "name": "Wool Sock", "category": ["Apparel", "Socks"], "price": 5.0},
        {"id": "lace", "name": "Spare Laces", "category": "Apparel > Accessories", "price": 3.0, "attributes": {"color": "red"}},
        {"id": "lamp", "name": "Desk Lamp", "category": "Home > Lighting", "price": 40.0, "replenish_every_days": 30},
    ]})
}

fn view(anonymous_id: &str, product: &str, minute: u32) -> Value {
    json!({"type": "track", "anonymousId": anonymous_id, "event": "Product Viewed",
           "properties": {"product_id": product},
           "timestamp": format!("2026-03-01T10:{minute:02}:00.000Z")})
}

async fn recommend(server: &TestServer, body: Value) -> (StatusCode, Value) {
    server.admin_post("/v1/recommendations", &body).await
}

fn ids(response: &Value) -> Vec<String> {
    response["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {response}"))
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_events_placements_rules_and_attribution() {
    let mut server = TestServer::start().await;

    // Catalog: validated, then visible at once.
    let (status, written) = server.admin_put("/v1/catalog/items", &products()).await;
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(written["status"], "applied");
    let (status, item) = server.admin_get("/v1/catalog/items/shoe").await;
    assert_eq!(status, StatusCode::OK, "{item}");
    assert_eq!(item["category"], json!(["Apparel", "Shoes"]));
    assert_eq!(item["currency"], "USD");
    let (status, error) = server
        .admin_put(
            "/v1/catalog/items",
            &json!({"items": [{"id": "ok"}, {"id": "bad", "price": -1}, {"name": "no id"}]}),
        )
        .await;
    assert_error(status, &error, 400, "invalid_catalog_item");
    assert_eq!(error["errors"][0]["path"], "items[1].price", "{error}");
    assert_eq!(error["errors"][1]["path"], "items[2].id", "{error}");
    let (status, error) = server.admin_get("/v1/catalog/items/ok").await;
    assert_error(status, &error, 404, "item_not_found");

    // Anonymous browsing in one session each; a-1 later identifies as u-1.
    let mut batch = Vec::new();
    for (n, visitor) in ["a-1", "a-2", "a-3"].iter().enumerate() {
        let minute = n as u32 * 2;
        batch.push(view(visitor, "shoe", minute));
        batch.push(view(visitor, "sock", minute + 1));
    }
    batch.push(json!({"type": "track", "userId": "buyer", "event": "Order Completed", "timestamp": "2026-03-01T11:00:00.000Z",
        "properties": {"order_id": "o-1", "products": [{"product_id": "shoe", "price": 80.0}, {"product_id": "lace", "price": 3.0}]}}));
    batch.push(json!({"type": "identify", "anonymousId": "a-1", "userId": "u-1", "timestamp": "2026-03-01T10:30:00.000Z"}));
    let (status, body, end) = server.ingest("/v1/batch", &json!({"batch": batch})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, similar) = server
        .admin_get(&format!(
            "/v1/recommendations?placement=similar&item=shoe&k=2&min_offset={end}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{similar}");
    assert_eq!(ids(&similar)[0], "sock", "{similar}");
    assert_eq!(similar["items"][0]["reason"]["kind"], "viewed_together");
    assert_eq!(similar["items"][0]["reason"]["with"], "shoe");
    assert!(
        similar["items"][0]["reason"]["text"]
            .as_str()
            .unwrap()
            .contains("Trail Shoe")
    );
    let recommendation_id = similar["recommendation_id"].as_str().unwrap().to_owned();

    let (status, together) = recommend(
        &server,
        json!({"placement": "bought_together", "cart": ["shoe"], "k": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{together}");
    assert_eq!(ids(&together), ["lace"]);
    assert_eq!(together["items"][0]["reason"]["kind"], "bought_together");

    // Anonymous browsing counts for the identified profile.
    let (status, recent) = recommend(
        &server,
        json!({"placement": "recently_viewed", "profile": "user_id:u-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{recent}");
    assert_eq!(ids(&recent), ["sock", "shoe"], "{recent}");
    assert!(recent["profile_id"].as_str().unwrap().starts_with("p_"));

    // Out of stock: gone from the very next request.
    let (status, _) = server
        .admin_put(
            "/v1/catalog/items",
            &json!({"items": [{"id": "sock", "name": "Wool Sock", "category": "Apparel > Socks", "price": 5.0, "stock": 0}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, similar) = recommend(&server, json!({"placement": "similar", "item": "shoe"})).await;
    assert!(!ids(&similar).contains(&"sock".to_owned()), "{similar}");

    // Rules: price range and pins.
    let (status, ranged) = recommend(
        &server,
        json!({"placement": "trending", "k": 3, "rules": {"max_price": 50, "pins": [{"item": "lamp", "position": 0}]}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ranged}");
    assert_eq!(ids(&ranged)[0], "lamp");
    assert!(
        ranged["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["price"].as_f64().unwrap() <= 50.0)
    );

    // Training on demand, then "for you".
    let (status, trained) = server
        .admin_post("/v1/recommendations/train", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{trained}");
    assert_eq!(trained["version"], 1);
    let (status, for_you) = recommend(
        &server,
        json!({"placement": "for_you", "profile": "anonymous_id:a-2", "k": 2, "rules": {"in_stock": false}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{for_you}");
    assert_eq!(for_you["model"], "als");
    assert_eq!(for_you["model_version"], 1);
    assert!(!ids(&for_you).is_empty());

    // Attribution of a click and an order carrying the recommendation id.
    let events = json!({"batch": [
        {"type": "track", "anonymousId": "a-2", "event": "Product Clicked", "properties": {"product_id": "sock", "recommendation_id": recommendation_id}},
        {"type": "track", "anonymousId": "a-2", "event": "Order Completed", "properties": {"order_id": "o-2", "revenue": 5.0, "recommendation_id": recommendation_id, "products": [{"product_id": "sock", "price": 5.0}]}},
    ]});
    let (_, _, end) = server.ingest("/v1/batch", &events).await;
    let (_, _) = server
        .admin_get(&format!("/v1/catalog/items/shoe?min_offset={end}"))
        .await;
    let (status, stats) = server.admin_get("/v1/recommendations/stats").await;
    assert_eq!(status, StatusCode::OK);
    let row = stats["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["placement"] == "similar" && row["model"] == "covisit")
        .cloned()
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(row["impressions"], 2, "{stats}");
    assert_eq!(row["clicks"], 1);
    assert_eq!(row["ctr"], 0.5);
    assert_eq!(row["conversions"], 1);
    assert_eq!(row["revenue"], 5.0);

    // Delete; then restart: the state is rebuilt from the log, counters survive.
    let (status, _) = server.admin_delete("/v1/catalog/items/lace").await;
    assert_eq!(status, StatusCode::OK);
    let (status, error) = server.admin_delete("/v1/catalog/items/lace").await;
    assert_error(status, &error, 404, "item_not_found");
    server.restart().await;
    let end = server.catch_up().await;
    let (status, similar) = server
        .admin_get(&format!(
            "/v1/recommendations?placement=similar&item=shoe&in_stock=false&min_offset={end}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{similar}");
    assert_eq!(ids(&similar)[0], "sock", "{similar}");
    let (_, together) = recommend(
        &server,
        json!({"placement": "bought_together", "item": "shoe", "rules": {"in_stock": false}}),
    )
    .await;
    assert!(!ids(&together).contains(&"lace".to_owned()), "{together}");
    let (_, stats) = server.admin_get("/v1/recommendations/stats").await;
    let row = stats["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["placement"] == "similar" && row["model"] == "covisit")
        .cloned()
        .unwrap();
    assert_eq!(row["impressions"], 3, "{stats}");
    assert_eq!(row["clicks"], 1, "{stats}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_recommendation_requests_get_clear_errors() {
    let server = TestServer::start().await;
    let (status, _) = server.admin_put("/v1/catalog/items", &products()).await;
    assert_eq!(status, StatusCode::OK);
    let cases = [
        (json!({"placement": "everything"}), 400, "unknown_placement"),
        (json!({"item": "shoe"}), 400, "invalid_rules"),
        (
            json!({"placement": "similar", "item": "ghost"}),
            404,
            "item_not_found",
        ),
        (
            json!({"placement": "trending", "k": 0}),
            400,
            "invalid_request",
        ),
        (
            json!({"placement": "trending", "k": 500}),
            400,
            "invalid_request",
        ),
        (json!({"placement": "for_you"}), 400, "invalid_request"),
        (
            json!({"placement": "trending", "rules": {"min_price": 10, "max_price": 1}}),
            400,
            "invalid_rules",
        ),
        (
            json!({"placement": "trending", "rules": {"boosts": [{"category": "Apparel", "factor": -2}]}}),
            400,
            "invalid_rules",
        ),
        (
            json!({"placement": "trending", "rules": {"pins": "shoe"}}),
            400,
            "invalid_rules",
        ),
        (
            json!({"placement": "for_you", "profile": "p_doesnotexist"}),
            404,
            "profile_not_found",
        ),
    ];
    for (body, expected_status, code) in cases {
        let (status, error) = recommend(&server, body.clone()).await;
        assert_error(status, &error, expected_status, code);
    }
    for (query, expected_status, code) in [
        ("placement=nope", 400, "unknown_placement"),
        ("", 400, "unknown_placement"),
        ("placement=trending&k=abc", 400, "invalid_request"),
        ("placement=trending&min_price=x", 400, "invalid_rules"),
        ("placement=trending&colour=red", 400, "invalid_request"),
    ] {
        let (status, error) = server
            .admin_get(&format!("/v1/recommendations?{query}"))
            .await;
        assert_error(status, &error, expected_status, code);
    }
    let response = server
        .client
        .post(server.url("/v1/recommendations"))
        .bearer_auth(ADMIN_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, error) = into_json(response).await;
    assert_error(status, &error, 400, "invalid_json");
    let response = server
        .client
        .get(server.url("/v1/recommendations?placement=trending"))
        .send()
        .await
        .unwrap();
    let (status, error) = into_json(response).await;
    assert_error(status, &error, 401, "missing_admin_key");
    server.stop().await;
}
