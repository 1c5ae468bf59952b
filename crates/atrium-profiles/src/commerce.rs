//! The transaction history from Segment's e-commerce spec v2 order events:
//! `Order Completed`, `Order Updated`, `Order Refunded`, `Order Cancelled`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::EventFacts;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Completed,
    PartiallyRefunded,
    Refunded,
    Cancelled,
    /// Only updates or refunds were seen for this order id, never the completion.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub status: OrderStatus,
    /// Revenue as the spec defines it (`revenue`, else `total`, else the sum of product lines).
    pub revenue: f64,
    pub refunded: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placed_ms: Option<i64>,
    pub updated_ms: i64,
    pub updated_offset: u64,
    pub channel: String,
    pub product_ids: Vec<String>,
    pub item_count: u64,
}

impl Order {
    fn empty(facts: EventFacts<'_>) -> Order {
        Order {
            status: OrderStatus::Unknown,
            revenue: 0.0,
            refunded: 0.0,
            currency: None,
            placed_ms: None,
            updated_ms: facts.time_ms,
            updated_offset: facts.offset,
            channel: facts.channel.to_owned(),
            product_ids: Vec::new(),
            item_count: 0,
        }
    }

    pub(crate) fn absorb(&mut self, other: Order) {
        let other_is_newer =
            (other.updated_ms, other.updated_offset) > (self.updated_ms, self.updated_offset);
        let placed_ms = match (self.placed_ms, other.placed_ms) {
            (Some(mine), Some(theirs)) => Some(mine.min(theirs)),
            (mine, theirs) => mine.or(theirs),
        };
        let refunded = self.refunded.max(other.refunded);
        if other_is_newer {
            *self = other;
        }
        self.placed_ms = placed_ms;
        self.refunded = refunded;
    }

    fn set_lines(&mut self, properties: &Map<String, Value>) {
        if let Some(products) = properties.get("products").and_then(Value::as_array) {
            self.product_ids.clear();
            self.item_count = 0;
            for product in products {
                let id = product
                    .get("product_id")
                    .or_else(|| product.get("sku"))
                    .and_then(value_as_text);
                if let Some(id) = id {
                    self.product_ids.push(id);
                }
                self.item_count += product
                    .get("quantity")
                    .and_then(value_as_f64)
                    .unwrap_or(1.0)
                    .max(0.0) as u64;
            }
        }
    }

    fn refresh_status(&mut self) {
        if matches!(self.status, OrderStatus::Cancelled | OrderStatus::Unknown) {
            return;
        }
        self.status = if self.refunded <= 0.0 {
            OrderStatus::Completed
        } else if self.refunded + 1e-9 >= self.revenue {
            OrderStatus::Refunded
        } else {
            OrderStatus::PartiallyRefunded
        };
    }
}

/// The profile-level summary of all orders.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Commerce {
    /// Completed orders, not counting cancelled ones.
    pub order_count: u64,
    pub cancelled_count: u64,
    pub refund_count: u64,
    /// Sum of order revenue before refunds (cancelled orders excluded). Currencies are not converted.
    pub gross_revenue: f64,
    pub refunded: f64,
    pub net_revenue: f64,
    pub revenue_by_currency: BTreeMap<String, f64>,
    pub average_order_value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_order_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_order_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_order_id: Option<String>,
}

impl Commerce {
    pub fn summarize(orders: &BTreeMap<String, Order>) -> Commerce {
        let mut summary = Commerce::default();
        for (order_id, order) in orders {
            if order.refunded > 0.0 {
                summary.refund_count += 1;
            }
            match order.status {
                OrderStatus::Cancelled => {
                    summary.cancelled_count += 1;
                    continue;
                }
                OrderStatus::Unknown => continue,
                _ => {}
            }
            summary.order_count += 1;
            summary.gross_revenue += order.revenue;
            summary.refunded += order.refunded;
            let currency = order.currency.clone().unwrap_or_else(|| "USD".to_owned());
            *summary.revenue_by_currency.entry(currency).or_default() +=
                order.revenue - order.refunded;
            if let Some(placed) = order.placed_ms {
                summary.first_order_ms = Some(
                    summary
                        .first_order_ms
                        .map_or(placed, |first| first.min(placed)),
                );
                let is_latest = summary.last_order_ms.is_none_or(|last| placed >= last);
                if is_latest {
                    summary.last_order_ms = Some(placed);
                    summary.last_order_id = Some(order_id.clone());
                }
            }
        }
        summary.net_revenue = summary.gross_revenue - summary.refunded;
        if summary.order_count > 0 {
            summary.average_order_value = summary.gross_revenue / summary.order_count as f64;
        }
        summary
    }
}

/// Applies an order lifecycle event. Returns whether anything changed.
pub(crate) fn apply_order_event(
    orders: &mut BTreeMap<String, Order>,
    event_name: &str,
    properties: Option<&Map<String, Value>>,
    facts: EventFacts<'_>,
) -> bool {
    let Some(kind) = OrderEvent::from_name(event_name) else {
        return false;
    };
    let Some(properties) = properties else {
        return false;
    };
    let Some(order_id) = properties
        .get("order_id")
        .or_else(|| properties.get("orderId"))
        .and_then(value_as_text)
    else {
        return false;
    };
    let order = orders
        .entry(order_id)
        .or_insert_with(|| Order::empty(facts));
    order.updated_ms = order.updated_ms.max(facts.time_ms);
    order.updated_offset = order.updated_offset.max(facts.offset);
    match kind {
        OrderEvent::Completed | OrderEvent::Updated => {
            if let Some(revenue) = order_revenue(properties) {
                order.revenue = revenue;
            }
            if let Some(currency) = properties.get("currency").and_then(Value::as_str) {
                order.currency = Some(currency.to_uppercase());
            }
            order.set_lines(properties);
            if kind == OrderEvent::Completed {
                order.placed_ms = Some(
                    order
                        .placed_ms
                        .map_or(facts.time_ms, |placed| placed.min(facts.time_ms)),
                );
                order.channel = facts.channel.to_owned();
                if order.status == OrderStatus::Unknown {
                    order.status = OrderStatus::Completed;
                }
            }
        }
        OrderEvent::Refunded => {
            let remaining = (order.revenue - order.refunded).max(0.0);
            let amount = refund_amount(properties).unwrap_or(remaining);
            order.refunded += amount.max(0.0);
        }
        OrderEvent::Cancelled => order.status = OrderStatus::Cancelled,
    }
    order.refresh_status();
    true
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OrderEvent {
    Completed,
    Updated,
    Refunded,
    Cancelled,
}

impl OrderEvent {
    /// E-commerce spec v2 names, and their v1 aliases.
    fn from_name(event_name: &str) -> Option<OrderEvent> {
        match event_name {
            "Order Completed" | "Completed Order" => Some(OrderEvent::Completed),
            "Order Updated" | "Updated Order" => Some(OrderEvent::Updated),
            "Order Refunded" | "Refunded Order" => Some(OrderEvent::Refunded),
            "Order Cancelled" | "Order Canceled" | "Cancelled Order" => Some(OrderEvent::Cancelled),
            _ => None,
        }
    }
}

/// Whether a track event of this name changes the order history (so its properties matter).
pub fn is_order_event(event_name: &str) -> bool {
    OrderEvent::from_name(event_name).is_some()
}

fn order_revenue(properties: &Map<String, Value>) -> Option<f64> {
    if let Some(revenue) = properties.get("revenue").and_then(value_as_f64) {
        return Some(revenue);
    }
    if let Some(total) = properties.get("total").and_then(value_as_f64) {
        return Some(total);
    }
    product_sum(properties)
}

fn refund_amount(properties: &Map<String, Value>) -> Option<f64> {
    for key in ["total", "revenue", "value"] {
        if let Some(amount) = properties.get(key).and_then(value_as_f64) {
            return Some(amount.abs());
        }
    }
    product_sum(properties)
}

fn product_sum(properties: &Map<String, Value>) -> Option<f64> {
    let products = properties.get("products").and_then(Value::as_array)?;
    let mut sum = 0.0;
    let mut any = false;
    for product in products {
        if let Some(price) = product.get("price").and_then(value_as_f64) {
            sum += price
                * product
                    .get("quantity")
                    .and_then(value_as_f64)
                    .unwrap_or(1.0);
            any = true;
        }
    }
    any.then_some(sum)
}

/// Numbers in Segment payloads are sometimes sent as strings ("19.99").
pub(crate) fn value_as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
    .filter(|number: &f64| number.is_finite())
}

pub(crate) fn value_as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}
