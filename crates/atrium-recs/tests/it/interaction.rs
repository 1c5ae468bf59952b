use atrium_recs::interaction::{decay_factor, products_from_segment_event};
use atrium_recs::{Csr, EventKind, Interaction, Interner, Weights};
use serde_json::json;

#[test]
fn reads_products_from_segment_ecommerce_events() {
    let viewed = json!({
        "type": "track", "event": "Product Viewed",
        "properties": {"product_id": "p-1", "price": 19.99, "category": "Shoes"}
    });
    let products = products_from_segment_event(&viewed);
    assert_eq!(products.len(), 1);
    assert_eq!(products[0].kind, EventKind::ProductViewed);
    assert_eq!(products[0].product_id, "p-1");
    assert_eq!(products[0].price, Some(19.99));
    assert_eq!(products[0].category.as_deref(), Some("Shoes"));

    let order = json!({
        "type": "track", "event": "Order Completed",
        "properties": {"order_id": "o-9", "products": [
            {"product_id": "p-1", "quantity": 2},
            {"sku": "SKU-2"},
            {"name": "no id"}
        ]}
    });
    let products = products_from_segment_event(&order);
    let ids: Vec<(&str, u32)> = products
        .iter()
        .map(|p| (p.product_id.as_str(), p.quantity))
        .collect();
    assert_eq!(ids, vec![("p-1", 2), ("SKU-2", 1)]);
    assert!(
        products
            .iter()
            .all(|p| p.basket_id.as_deref() == Some("o-9"))
    );

    let numeric = json!({"event": "Product Added", "properties": {"product_id": 42}});
    assert_eq!(products_from_segment_event(&numeric)[0].product_id, "42");
    let other = json!({"event": "Signed Up", "properties": {"product_id": "p"}});
    assert!(products_from_segment_event(&other).is_empty());
    assert!(products_from_segment_event(&json!({"type": "identify"})).is_empty());
}

#[test]
fn weights_by_kind_and_recency() {
    let weights = Weights::default();
    let day = 86_400_000;
    let bought = Interaction {
        user: 0,
        item: 0,
        kind: EventKind::OrderCompleted,
        timestamp_ms: 0,
        quantity: 1,
    };
    assert_eq!(weights.weight(&bought, 0), 5.0);
    assert!((weights.weight(&bought, 30 * day) - 2.5).abs() < 1e-5);
    assert_eq!(
        weights.weight(&bought, -day),
        5.0,
        "future events count as fresh"
    );
    assert!((decay_factor(2 * day, day) - 0.25).abs() < 1e-12);
    let viewed = Interaction {
        kind: EventKind::ProductViewed,
        ..bought
    };
    assert_eq!(weights.weight(&viewed, 0), 1.0);
}

#[test]
fn matrix_sums_duplicates_and_transposes() {
    let matrix = Csr::from_triplets(2, 3, &[(1, 2, 1.0), (0, 1, 2.0), (1, 2, 0.5), (0, 0, -1.0)]);
    assert_eq!(matrix.row(0), (&[1u32][..], &[2.0f32][..]));
    assert_eq!(matrix.row(1), (&[2u32][..], &[1.5f32][..]));
    let transposed = matrix.transpose();
    assert_eq!(transposed.rows(), 3);
    assert_eq!(transposed.row(2), (&[1u32][..], &[1.5f32][..]));
    assert_eq!(transposed.transpose(), matrix);
    let mut interner = Interner::new();
    assert_eq!(interner.intern("a"), 0);
    assert_eq!(interner.intern("b"), 1);
    assert_eq!(interner.intern("a"), 0);
    assert_eq!(interner.name(1), "b");
}
