//! From log records to table rows: the column lists of `events`, `orders` and `order_lines`,
//! and the conversion of one stored Segment event into rows of those tables.

use std::sync::Arc;

use atrium_types::parse_timestamp_ms;
use datafusion::arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

const MS_PER_DAY: i64 = 86_400_000;

/// The tables the materializer writes (profiles and identities are snapshots of the store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Events,
    Orders,
    OrderLines,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Events, Table::Orders, Table::OrderLines];

    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Orders => "orders",
            Table::OrderLines => "order_lines",
        }
    }

    pub fn parse(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|table| table.name() == name)
    }

    fn columns(self) -> &'static [(&'static str, Kind)] {
        match self {
            Table::Events => EVENT_COLUMNS,
            Table::Orders => ORDER_COLUMNS,
            Table::OrderLines => ORDER_LINE_COLUMNS,
        }
    }

    pub fn schema(self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns()
            .iter()
            .map(|(name, kind)| Field::new(*name, kind.data_type(), *name != "offset"))
            .collect();
        Arc::new(Schema::new(fields))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    UInt,
    Float,
    /// Milliseconds since the epoch, UTC.
    Time,
    /// Days since the epoch.
    Date,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::Int => DataType::Int64,
            Kind::UInt => DataType::UInt64,
            Kind::Float => DataType::Float64,
            Kind::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Kind::Date => DataType::Date32,
        }
    }
}

use Kind::*;

/// Columns common to every row: where it came from and when.
macro_rules! origin_columns {
    () => {
        [
            ("offset", UInt),
            ("message_id", Text),
            ("timestamp", Time),
            ("received_at", Time),
            ("event_date", Date),
        ]
    };
}

const EVENT_COLUMNS: &[(&str, Kind)] = &concat_columns::<5, 41, 46>(
    origin_columns!(),
    [
        ("type", Text),
        ("event", Text),
        ("name", Text),
        ("source", Text),
        ("channel", Text),
        ("anonymous_id", Text),
        ("user_id", Text),
        ("campaign_source", Text),
        ("campaign_medium", Text),
        ("campaign_name", Text),
        ("campaign_term", Text),
        ("campaign_content", Text),
        ("page_url", Text),
        ("page_path", Text),
        ("page_referrer", Text),
        ("page_title", Text),
        ("device_type", Text),
        ("os_name", Text),
        ("os_version", Text),
        ("app_name", Text),
        ("app_version", Text),
        ("locale", Text),
        ("country", Text),
        ("city", Text),
        ("ip", Text),
        ("user_agent", Text),
        ("order_id", Text),
        ("revenue", Float),
        ("value", Float),
        ("currency", Text),
        ("product_id", Text),
        ("sku", Text),
        ("category", Text),
        ("price", Float),
        ("quantity", Int),
        ("coupon", Text),
        // Typed copies of an exposure's `properties.experiment_id` / `variation_id` (or the
        // camel-case `experimentId` / `variationId`), so results never parse JSON.
        ("experiment_id", Text),
        ("variation_id", Text),
        ("properties", Text),
        ("traits", Text),
        ("context", Text),
    ],
);

const ORDER_COLUMNS: &[(&str, Kind)] = &concat_columns::<5, 18, 23>(
    origin_columns!(),
    [
        ("event", Text),
        ("status", Text),
        ("order_id", Text),
        ("checkout_id", Text),
        ("source", Text),
        ("channel", Text),
        ("anonymous_id", Text),
        ("user_id", Text),
        ("revenue", Float),
        ("total", Float),
        ("subtotal", Float),
        ("shipping", Float),
        ("tax", Float),
        ("discount", Float),
        ("coupon", Text),
        ("currency", Text),
        ("line_count", Int),
        ("item_count", Int),
    ],
);

const ORDER_LINE_COLUMNS: &[(&str, Kind)] = &concat_columns::<5, 17, 22>(
    origin_columns!(),
    [
        ("event", Text),
        ("order_id", Text),
        ("line", Int),
        ("product_id", Text),
        ("sku", Text),
        ("product_name", Text),
        ("category", Text),
        ("brand", Text),
        ("variant", Text),
        ("price", Float),
        ("quantity", Int),
        ("coupon", Text),
        ("currency", Text),
        ("source", Text),
        ("channel", Text),
        ("anonymous_id", Text),
        ("user_id", Text),
    ],
);

const fn concat_columns<const A: usize, const B: usize, const C: usize>(
    a: [(&'static str, Kind); A],
    b: [(&'static str, Kind); B],
) -> [(&'static str, Kind); C] {
    assert!(A + B == C);
    let mut out = [("", Text); C];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < C {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// One value of a row, in column order.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    UInt(u64),
    Float(f64),
}

/// Rows of one table that belong to one day partition.
pub type Row = Vec<Cell>;

/// The rows one event contributes, with the day (days since the epoch) they are filed under.
#[derive(Debug, Default)]
pub struct EventRows {
    pub day: i32,
    pub event: Row,
    pub order: Option<Row>,
    pub lines: Vec<Row>,
}

/// Converts one stored (normalized) Segment event at `offset` into table rows.
pub fn event_rows(offset: u64, event: &Value) -> EventRows {
    let received_ms = text(event, &["receivedAt"]).and_then(|t| parse_timestamp_ms(&t));
    let time_ms = text(event, &["timestamp"])
        .and_then(|t| parse_timestamp_ms(&t))
        .or(received_ms)
        .unwrap_or(0);
    let day = time_ms.div_euclid(MS_PER_DAY) as i32;
    let origin = [
        Cell::UInt(offset),
        text_cell(event, &["messageId"]),
        Cell::Int(time_ms),
        received_ms.map_or(Cell::Null, Cell::Int),
        Cell::Int(i64::from(day)),
    ];
    let event_type = text(event, &["type"]).unwrap_or_else(|| "track".into());
    let event_name = text(event, &["event"]);
    let source = text_cell(event, &["atrium", "source"]);
    let channel = text_cell(event, &["atrium", "channel"]);
    let anonymous_id = id_cell(event, "anonymousId");
    let user_id = id_cell(event, "userId");
    let empty = Map::new();
    let properties = event
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let props = |key: &str| properties.get(key).and_then(scalar_text);
    let prop_cell = |key: &str| props(key).map_or(Cell::Null, Cell::Text);
    let prop_float = |key: &str| {
        properties
            .get(key)
            .and_then(number)
            .map_or(Cell::Null, Cell::Float)
    };
    let is_page = event_type == "page" || event_type == "screen";
    let page = |key: &str| {
        let in_context = text(event, &["context", "page", key]);
        match in_context {
            Some(value) => Cell::Text(value),
            None if is_page => prop_cell(key),
            None => Cell::Null,
        }
    };
    let traits = event
        .get("traits")
        .or_else(|| event.get("context").and_then(|c| c.get("traits")));

    let mut row = Vec::with_capacity(EVENT_COLUMNS.len());
    row.extend(origin.iter().cloned());
    row.extend([
        Cell::Text(event_type.clone()),
        event_name.clone().map_or(Cell::Null, Cell::Text),
        text_cell(event, &["name"]),
        source.clone(),
        channel.clone(),
        anonymous_id.clone(),
        user_id.clone(),
        text_cell(event, &["context", "campaign", "source"]),
        text_cell(event, &["context", "campaign", "medium"]),
        text_cell(event, &["context", "campaign", "name"]),
        text_cell(event, &["context", "campaign", "term"]),
        text_cell(event, &["context", "campaign", "content"]),
        page("url"),
        page("path"),
        page("referrer"),
        page("title"),
        text_cell(event, &["context", "device", "type"]),
        text_cell(event, &["context", "os", "name"]),
        text_cell(event, &["context", "os", "version"]),
        text_cell(event, &["context", "app", "name"]),
        text_cell(event, &["context", "app", "version"]),
        text_cell(event, &["context", "locale"]),
        text_cell(event, &["context", "location", "country"]),
        text_cell(event, &["context", "location", "city"]),
        text_cell(event, &["context", "ip"]),
        text_cell(event, &["context", "userAgent"]),
        prop_cell("order_id"),
        prop_float("revenue"),
        prop_float("value"),
        prop_cell("currency"),
        prop_cell("product_id"),
        prop_cell("sku"),
        prop_cell("category"),
        prop_float("price"),
        properties
            .get("quantity")
            .and_then(integer)
            .map_or(Cell::Null, Cell::Int),
        prop_cell("coupon"),
        props("experiment_id")
            .or_else(|| props("experimentId"))
            .map_or(Cell::Null, Cell::Text),
        props("variation_id")
            .or_else(|| props("variationId"))
            .map_or(Cell::Null, Cell::Text),
        json_cell(event.get("properties")),
        json_cell(traits),
        json_cell(event.get("context")),
    ]);
    debug_assert_eq!(row.len(), EVENT_COLUMNS.len());

    let mut rows = EventRows {
        day,
        event: row,
        order: None,
        lines: Vec::new(),
    };
    let Some(name) = event_name.filter(|_| event_type == "track") else {
        return rows;
    };
    let Some(status) = order_status(&name) else {
        return rows;
    };
    let products: &[Value] = properties
        .get("products")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let mut item_count = 0i64;
    for (index, product) in products.iter().enumerate() {
        let field = |key: &str| {
            product
                .get(key)
                .and_then(scalar_text)
                .map_or(Cell::Null, Cell::Text)
        };
        let quantity = product.get("quantity").and_then(integer);
        item_count += quantity.unwrap_or(1);
        let mut line = Vec::with_capacity(ORDER_LINE_COLUMNS.len());
        line.extend(origin.iter().cloned());
        line.extend([
            Cell::Text(name.clone()),
            prop_cell("order_id"),
            Cell::Int(index as i64),
            field("product_id"),
            field("sku"),
            field("name"),
            field("category"),
            field("brand"),
            field("variant"),
            product
                .get("price")
                .and_then(number)
                .map_or(Cell::Null, Cell::Float),
            quantity.map_or(Cell::Null, Cell::Int),
            match field("coupon") {
                Cell::Null => prop_cell("coupon"),
                coupon => coupon,
            },
            prop_cell("currency"),
            source.clone(),
            channel.clone(),
            anonymous_id.clone(),
            user_id.clone(),
        ]);
        debug_assert_eq!(line.len(), ORDER_LINE_COLUMNS.len());
        rows.lines.push(line);
    }
    let mut order = Vec::with_capacity(ORDER_COLUMNS.len());
    order.extend(origin);
    order.extend([
        Cell::Text(name),
        Cell::Text(status.into()),
        prop_cell("order_id"),
        prop_cell("checkout_id"),
        source,
        channel,
        anonymous_id,
        user_id,
        prop_float("revenue"),
        prop_float("total"),
        prop_float("subtotal"),
        prop_float("shipping"),
        prop_float("tax"),
        prop_float("discount"),
        prop_cell("coupon"),
        prop_cell("currency"),
        Cell::Int(products.len() as i64),
        Cell::Int(item_count),
    ]);
    debug_assert_eq!(order.len(), ORDER_COLUMNS.len());
    rows.order = Some(order);
    rows
}

/// The e-commerce spec v2 order events (and their legacy spellings), as a status word.
fn order_status(event_name: &str) -> Option<&'static str> {
    match event_name {
        "Order Completed" | "Completed Order" => Some("completed"),
        "Order Updated" | "Updated Order" => Some("updated"),
        "Order Refunded" | "Refunded Order" => Some("refunded"),
        "Order Cancelled" | "Order Canceled" | "Cancelled Order" => Some("cancelled"),
        _ => None,
    }
}

fn lookup<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |current, key| current.get(key))
}

fn text(value: &Value, path: &[&str]) -> Option<String> {
    lookup(value, path).and_then(scalar_text)
}

fn text_cell(value: &Value, path: &[&str]) -> Cell {
    text(value, path).map_or(Cell::Null, Cell::Text)
}

/// `userId` / `anonymousId` as identity resolution keys them: scalars as text, trimmed.
fn id_cell(event: &Value, key: &str) -> Cell {
    match event.get(key).and_then(scalar_text) {
        Some(id) if !id.trim().is_empty() => Cell::Text(id.trim().to_owned()),
        _ => Cell::Null,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number
            .as_i64()
            .or_else(|| number.as_f64().map(|f| f.round() as i64)),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    }
}

fn json_cell(value: Option<&Value>) -> Cell {
    match value {
        None | Some(Value::Null) => Cell::Null,
        Some(value) => Cell::Text(value.to_string()),
    }
}

/// Builds one Arrow batch of `table` from rows (each in the table's column order).
pub fn build_batch(table: Table, rows: &[Row]) -> Result<RecordBatch, ArrowError> {
    let columns = table.columns();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (index, (_, kind)) in columns.iter().enumerate() {
        let cells = rows.iter().map(|row| &row[index]);
        let array: ArrayRef = match kind {
            Text => {
                let mut builder = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                for cell in cells {
                    match cell {
                        Cell::Text(text) => builder.append_value(text),
                        _ => builder.append_null(),
                    }
                }
                Arc::new(builder.finish())
            }
            Int => {
                let mut builder = Int64Builder::with_capacity(rows.len());
                cells.for_each(|cell| builder.append_option(as_i64(cell)));
                Arc::new(builder.finish())
            }
            UInt => {
                let mut builder = UInt64Builder::with_capacity(rows.len());
                for cell in cells {
                    match cell {
                        Cell::UInt(value) => builder.append_value(*value),
                        _ => builder.append_null(),
                    }
                }
                Arc::new(builder.finish())
            }
            Float => {
                let mut builder = Float64Builder::with_capacity(rows.len());
                for cell in cells {
                    match cell {
                        Cell::Float(value) => builder.append_value(*value),
                        _ => builder.append_null(),
                    }
                }
                Arc::new(builder.finish())
            }
            Time => {
                let mut builder =
                    TimestampMillisecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
                cells.for_each(|cell| builder.append_option(as_i64(cell)));
                Arc::new(builder.finish())
            }
            Date => {
                let mut builder = Date32Builder::with_capacity(rows.len());
                cells.for_each(|cell| builder.append_option(as_i64(cell).map(|d| d as i32)));
                Arc::new(builder.finish())
            }
        };
        arrays.push(array);
    }
    RecordBatch::try_new(table.schema(), arrays)
}

fn as_i64(cell: &Cell) -> Option<i64> {
    match cell {
        Cell::Int(value) => Some(*value),
        _ => None,
    }
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), for partition directory names.
pub fn day_name(day: i32) -> String {
    let text = atrium_types::format_timestamp_ms(i64::from(day) * MS_PER_DAY);
    text[..10].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_match_their_column_lists() {
        for table in Table::ALL {
            assert_eq!(table.schema().fields().len(), table.columns().len());
            build_batch(table, &[]).expect("empty batch builds");
        }
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(20_454), "2026-01-01");
    }

    #[test]
    fn an_order_becomes_an_event_an_order_and_one_line_per_product() {
        let event = serde_json::json!({
            "type": "track", "event": "Order Completed", "messageId": "m1",
            "timestamp": "2026-01-01T10:00:00.000Z", "receivedAt": "2026-01-01T10:00:01.000Z",
            "userId": " u1 ", "atrium": {"source": "web", "channel": "web"},
            "context": {"campaign": {"source": "google"}, "location": {"country": "FR"}},
            "properties": {"order_id": "o1", "revenue": "42.5", "currency": "EUR",
                "products": [{"product_id": "p1", "price": 10, "quantity": 2}, {"sku": "s2"}]}
        });
        let rows = event_rows(7, &event);
        assert_eq!(rows.day, 20_454);
        assert_eq!(rows.lines.len(), 2);
        let batch = build_batch(Table::Events, &[rows.event]).unwrap();
        assert_eq!(batch.num_rows(), 1);
        let order = build_batch(Table::Orders, &[rows.order.unwrap()]).unwrap();
        assert_eq!(order.num_rows(), 1);
        let lines = build_batch(Table::OrderLines, &rows.lines).unwrap();
        assert_eq!(lines.num_rows(), 2);
    }
}
