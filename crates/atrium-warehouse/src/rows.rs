//! From log records to table rows: the column lists of `events`, `orders` and `order_lines`,
//! and the conversion of one stored Segment event into rows of those tables.

use std::borrow::Cow;
use std::sync::Arc;

use atrium_types::parse_timestamp_ms;
use datafusion::arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampMillisecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use crate::stored::{self, Context, Origin, Page, Product, Properties, Scalar, Stored};

pub(crate) const MS_PER_DAY: i64 = 86_400_000;

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

    /// The columns compaction orders a day's rows by (see the crate's "Layout"): those that
    /// selective reads filter on, most selective grouping first, time last.
    pub fn cluster_columns(self) -> &'static [&'static str] {
        match self {
            Table::Events => &["type", "event", "campaign_source", "timestamp"],
            Table::Orders | Table::OrderLines => &["event", "timestamp"],
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
    /// An identifier (`user_id`, `anonymous_id`): text, dictionary-encoded in Arrow too, so a
    /// reader sees each distinct id of a row group once (see [`id_type`]).
    Id,
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
            Kind::Id => id_type(),
            Kind::Int => DataType::Int64,
            Kind::UInt => DataType::UInt64,
            Kind::Float => DataType::Float64,
            Kind::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Kind::Date => DataType::Date32,
        }
    }
}

use Kind::*;

/// The Arrow type of `user_id` and `anonymous_id`: the Parquet column is dictionary-encoded
/// anyway, and reading it as a dictionary keeps each row group's distinct ids once instead of
/// copying the text into every row. Identity resolution in the analytics loader then resolves
/// each distinct id once per row group rather than once per row.
pub fn id_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

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
        ("anonymous_id", Id),
        ("user_id", Id),
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
        ("anonymous_id", Id),
        ("user_id", Id),
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
        ("anonymous_id", Id),
        ("user_id", Id),
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

/// One value of a row, in column order; text borrows from the log payload where it can.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell<'a> {
    Null,
    Text(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
}

/// Rows of one table that belong to one day partition.
pub type Row<'a> = Vec<Cell<'a>>;

/// The rows one event contributes, with the day (days since the epoch) they are filed under.
#[derive(Debug, Default, PartialEq)]
pub struct EventRows<'a> {
    pub day: i32,
    pub event: Row<'a>,
    pub order: Option<Row<'a>>,
    pub lines: Vec<Row<'a>>,
}

/// Converts one stored (normalized) Segment event at `offset` into table rows.
pub(crate) fn event_rows<'a>(offset: u64, event: &Stored<'a>) -> EventRows<'a> {
    let received_ms = event
        .received_at
        .text()
        .and_then(|t| parse_timestamp_ms(&t));
    let time_ms = event
        .timestamp
        .text()
        .and_then(|t| parse_timestamp_ms(&t))
        .or(received_ms)
        .unwrap_or(0);
    let day = time_ms.div_euclid(MS_PER_DAY) as i32;
    let origin = [
        Cell::UInt(offset),
        cell(&event.message_id),
        Cell::Int(time_ms),
        received_ms.map_or(Cell::Null, Cell::Int),
        Cell::Int(i64::from(day)),
    ];
    let event_type = event.kind.text().unwrap_or(Cow::Borrowed("track"));
    let event_name = event.event.text();
    let no_origin = Origin::default();
    let atrium = event.atrium.0.as_ref().unwrap_or(&no_origin);
    let source = cell(&atrium.source);
    let channel = cell(&atrium.channel);
    let anonymous_id = id_cell(&event.anonymous_id);
    let user_id = id_cell(&event.user_id);
    let properties: Properties<'a> = stored::object(event.properties);
    let context: Context<'_> = stored::object(event.context);
    let is_page = event_type == "page" || event_type == "screen";
    let no_page = Page::default();
    let context_page = context.page.0.as_ref().unwrap_or(&no_page);
    let page = |in_context: &Scalar<'a>, in_properties: &Scalar<'a>| match in_context.text() {
        Some(value) => Cell::Text(value),
        None if is_page => cell(in_properties),
        None => Cell::Null,
    };
    let campaign = context.campaign.0.unwrap_or_default();
    let device = context.device.0.unwrap_or_default();
    let os = context.os.0.unwrap_or_default();
    let app = context.app.0.unwrap_or_default();
    let location = context.location.0.unwrap_or_default();
    let traits = event.traits.or(context.traits);
    let either = |snake: &Scalar<'a>, camel: &Scalar<'a>| {
        snake
            .text()
            .or_else(|| camel.text())
            .map_or(Cell::Null, Cell::Text)
    };

    let mut row = Vec::with_capacity(EVENT_COLUMNS.len());
    row.extend(origin.iter().cloned());
    row.extend([
        Cell::Text(event_type.clone()),
        event_name.clone().map_or(Cell::Null, Cell::Text),
        cell(&event.name),
        source.clone(),
        channel.clone(),
        anonymous_id.clone(),
        user_id.clone(),
        cell(&campaign.source),
        cell(&campaign.medium),
        cell(&campaign.name),
        cell(&campaign.term),
        cell(&campaign.content),
        page(&context_page.url, &properties.url),
        page(&context_page.path, &properties.path),
        page(&context_page.referrer, &properties.referrer),
        page(&context_page.title, &properties.title),
        cell(&device.kind),
        cell(&os.name),
        cell(&os.version),
        cell(&app.name),
        cell(&app.version),
        cell(&context.locale),
        cell(&location.country),
        cell(&location.city),
        cell(&context.ip),
        cell(&context.user_agent),
        cell(&properties.order_id),
        float_cell(&properties.revenue),
        float_cell(&properties.value),
        cell(&properties.currency),
        cell(&properties.product_id),
        cell(&properties.sku),
        cell(&properties.category),
        float_cell(&properties.price),
        properties.quantity.integer().map_or(Cell::Null, Cell::Int),
        cell(&properties.coupon),
        either(&properties.experiment_id, &properties.experiment_id_camel),
        either(&properties.variation_id, &properties.variation_id_camel),
        raw_cell(event.properties),
        raw_cell(traits),
        raw_cell(event.context),
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
    let products = &properties.products.0;
    let no_product = Product::default();
    let mut item_count = 0i64;
    for (index, product) in products.iter().enumerate() {
        let product = product.0.as_ref().unwrap_or(&no_product);
        let quantity = product.quantity.integer();
        item_count += quantity.unwrap_or(1);
        let mut line = Vec::with_capacity(ORDER_LINE_COLUMNS.len());
        line.extend(origin.iter().cloned());
        line.extend([
            Cell::Text(name.clone()),
            cell(&properties.order_id),
            Cell::Int(index as i64),
            cell(&product.product_id),
            cell(&product.sku),
            cell(&product.name),
            cell(&product.category),
            cell(&product.brand),
            cell(&product.variant),
            float_cell(&product.price),
            quantity.map_or(Cell::Null, Cell::Int),
            match cell(&product.coupon) {
                Cell::Null => cell(&properties.coupon),
                coupon => coupon,
            },
            cell(&properties.currency),
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
        Cell::Text(Cow::Borrowed(status)),
        cell(&properties.order_id),
        cell(&properties.checkout_id),
        source,
        channel,
        anonymous_id,
        user_id,
        float_cell(&properties.revenue),
        float_cell(&properties.total),
        float_cell(&properties.subtotal),
        float_cell(&properties.shipping),
        float_cell(&properties.tax),
        float_cell(&properties.discount),
        cell(&properties.coupon),
        cell(&properties.currency),
        Cell::Int(products.len() as i64),
        Cell::Int(item_count),
    ]);
    debug_assert_eq!(order.len(), ORDER_COLUMNS.len());
    rows.order = Some(order);
    rows
}

/// The e-commerce spec v2 order events (and their legacy spellings), as a status word.
pub fn order_status(event_name: &str) -> Option<&'static str> {
    match event_name {
        "Order Completed" | "Completed Order" => Some("completed"),
        "Order Updated" | "Updated Order" => Some("updated"),
        "Order Refunded" | "Refunded Order" => Some("refunded"),
        "Order Cancelled" | "Order Canceled" | "Cancelled Order" => Some("cancelled"),
        _ => None,
    }
}

fn cell<'a>(value: &Scalar<'a>) -> Cell<'a> {
    value.text().map_or(Cell::Null, Cell::Text)
}

fn float_cell<'a>(value: &Scalar<'a>) -> Cell<'a> {
    value.number().map_or(Cell::Null, Cell::Float)
}

/// The raw JSON text of an object column (`None` for absent or null).
fn raw_cell(raw: Option<&serde_json::value::RawValue>) -> Cell<'_> {
    stored::raw_text(raw).map_or(Cell::Null, |text| Cell::Text(Cow::Borrowed(text)))
}

/// `userId` / `anonymousId` as identity resolution keys them: scalars as text, trimmed.
fn id_cell<'a>(value: &Scalar<'a>) -> Cell<'a> {
    match value.text() {
        Some(Cow::Borrowed(id)) if !id.trim().is_empty() => Cell::Text(Cow::Borrowed(id.trim())),
        Some(Cow::Owned(id)) if !id.trim().is_empty() => Cell::Text(Cow::Owned(id.trim().into())),
        _ => Cell::Null,
    }
}

/// Builds one Arrow batch of `table` from rows (each in the table's column order).
pub fn build_batch(table: Table, rows: &[Row<'_>]) -> Result<RecordBatch, ArrowError> {
    let columns = table.columns();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (index, (_, kind)) in columns.iter().enumerate() {
        let cells = rows.iter().map(|row| &row[index]);
        let array: ArrayRef = match kind {
            Text => {
                let mut builder = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                for cell in cells {
                    match cell {
                        Cell::Text(text) => builder.append_value(text.as_ref()),
                        _ => builder.append_null(),
                    }
                }
                Arc::new(builder.finish())
            }
            Id => {
                let mut builder = StringDictionaryBuilder::<Int32Type>::with_capacity(
                    rows.len(),
                    rows.len() / 4,
                    rows.len() * 8,
                );
                for cell in cells {
                    match cell {
                        Cell::Text(text) => {
                            builder.append_value(text.as_ref());
                        }
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

fn as_i64(cell: &Cell<'_>) -> Option<i64> {
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
        let payload = serde_json::to_vec(&event).unwrap();
        let Ok(stored::Record::Event(stored)) = stored::decode(&payload) else {
            panic!("an event");
        };
        let rows = event_rows(7, &stored);
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
