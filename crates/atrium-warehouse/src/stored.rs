//! A stored event as the materializer reads it, decoded in one pass over the log payload.
//!
//! `properties`, `traits` and `context` are stored as JSON text, so they are kept as the raw
//! text of the payload (which the collector wrote with serde_json, so it is already the compact
//! text a `Value` would serialize to); only the fields that become typed columns are parsed, and
//! everything else is skipped without building values. Decoding every event into a
//! `serde_json::Value` and serializing its objects back to text was over half of the
//! materializer's time.
//!
//! Lookups behave like `serde_json::Value::get` chains: a field inside something that is not an
//! object is absent, and a field that is an object or an array where a scalar is read is absent
//! too.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use atrium_types::{LogRecord, RecordError};
use serde::Deserialize as DeriveDeserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Reads every scalar JSON value (booleans, numbers, strings, null) as `$value`, in a visitor.
macro_rules! reads_scalars_as {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A JSON value where a scalar is read: absent (also for null, objects and arrays) or the
/// scalar, numbers as serde_json reads them. Strings borrow from the payload unless they hold
/// escapes.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Scalar<'a> {
    #[default]
    Absent,
    Text(Cow<'a, str>),
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    Float(f64),
}

impl<'a> Scalar<'a> {
    /// Strings as they are (borrowed when the payload's text is), numbers and booleans as JSON
    /// writes them.
    pub(crate) fn text(&self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Absent => None,
            Scalar::Text(text) => Some(text.clone()),
            Scalar::Bool(flag) => Some(Cow::Owned(flag.to_string())),
            Scalar::UInt(number) => Some(Cow::Owned(number.to_string())),
            Scalar::Int(number) => Some(Cow::Owned(number.to_string())),
            Scalar::Float(number) => {
                serde_json::Number::from_f64(*number).map(|n| Cow::Owned(n.to_string()))
            }
        }
    }

    /// Numbers, and strings that parse as a finite number.
    pub(crate) fn number(&self) -> Option<f64> {
        match self {
            Scalar::UInt(number) => Some(*number as f64),
            Scalar::Int(number) => Some(*number as f64),
            Scalar::Float(number) => Some(*number),
            Scalar::Text(text) => text.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
            Scalar::Absent | Scalar::Bool(_) => None,
        }
    }

    /// Integers, fractions rounded, and strings that parse as an integer.
    pub(crate) fn integer(&self) -> Option<i64> {
        match self {
            Scalar::UInt(number) => {
                Some(i64::try_from(*number).unwrap_or_else(|_| (*number as f64).round() as i64))
            }
            Scalar::Int(number) => Some(*number),
            Scalar::Float(number) => Some(number.round() as i64),
            Scalar::Text(text) => text.trim().parse::<i64>().ok(),
            Scalar::Absent | Scalar::Bool(_) => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("any JSON value")
            }
            fn visit_bool<E>(self, value: bool) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Bool(value))
            }
            fn visit_u64<E>(self, value: u64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::UInt(value))
            }
            fn visit_i64<E>(self, value: i64) -> Result<Scalar<'a>, E> {
                Ok(if value >= 0 {
                    Scalar::UInt(value as u64)
                } else {
                    Scalar::Int(value)
                })
            }
            fn visit_f64<E>(self, value: f64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Float(value))
            }
            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Text(Cow::Borrowed(value)))
            }
            fn visit_str<E>(self, value: &str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Text(Cow::Owned(value.to_owned())))
            }
            fn visit_string<E>(self, value: String) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Text(Cow::Owned(value)))
            }
            fn visit_unit<E>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Absent)
            }
            fn visit_none<E>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Absent)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'a>, A::Error> {
                skip_seq(seq).map(|()| Scalar::Absent)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'a>, A::Error> {
                skip_map(map).map(|()| Scalar::Absent)
            }
        }
        deserializer.deserialize_any(ScalarVisitor(PhantomData))
    }
}

/// `T` read from a JSON object; any other JSON value is skipped and reads as `None`.
#[derive(Debug)]
pub(crate) struct Obj<T>(pub Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|value| Obj(Some(value)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Obj<T>, A::Error> {
                skip_seq(seq).map(|()| Obj(None))
            }
            reads_scalars_as!(Obj(None));
        }
        deserializer.deserialize_any(ObjVisitor(PhantomData))
    }
}

/// The elements of a JSON array; any other JSON value reads as no elements.
#[derive(Debug)]
pub(crate) struct Arr<T>(pub Vec<T>);

impl<T> Default for Arr<T> {
    fn default() -> Self {
        Arr(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Arr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ArrVisitor<T> {
            type Value = Arr<T>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Arr<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Arr<T>, A::Error> {
                skip_map(map).map(|()| Arr(Vec::new()))
            }
            reads_scalars_as!(Arr(Vec::new()));
        }
        deserializer.deserialize_any(ArrVisitor(PhantomData))
    }
}

/// A present field as its raw text, `null` included (absent fields are `None`), so "`traits`
/// is null" and "there is no `traits`" stay different, as with `Value::get`.
fn raw_present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// The raw text of a JSON value as a stored text cell: `None` for absent or null.
pub(crate) fn raw_text(raw: Option<&RawValue>) -> Option<&str> {
    raw.map(RawValue::get).filter(|text| *text != "null")
}

/// The top level of a stored event.
#[derive(DeriveDeserialize, Default)]
#[serde(default, bound(deserialize = "'de: 'a"))]
pub(crate) struct Stored<'a> {
    #[serde(rename = "type")]
    pub kind: Scalar<'a>,
    pub event: Scalar<'a>,
    pub name: Scalar<'a>,
    #[serde(rename = "messageId")]
    pub message_id: Scalar<'a>,
    pub timestamp: Scalar<'a>,
    #[serde(rename = "receivedAt")]
    pub received_at: Scalar<'a>,
    #[serde(rename = "anonymousId")]
    pub anonymous_id: Scalar<'a>,
    #[serde(rename = "userId")]
    pub user_id: Scalar<'a>,
    pub atrium: Obj<Origin<'a>>,
    #[serde(borrow, deserialize_with = "raw_present")]
    pub properties: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "raw_present")]
    pub traits: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "raw_present")]
    pub context: Option<&'a RawValue>,
}

/// `atrium`: where the collector received the event.
#[derive(DeriveDeserialize, Default)]
#[serde(default, bound(deserialize = "'de: 'a"))]
pub(crate) struct Origin<'a> {
    pub source: Scalar<'a>,
    pub channel: Scalar<'a>,
}

/// The `context` fields that become columns.
#[derive(DeriveDeserialize, Default)]
#[serde(default, bound(deserialize = "'de: 'a"))]
pub(crate) struct Context<'a> {
    pub campaign: Obj<Campaign<'a>>,
    pub page: Obj<Page<'a>>,
    pub device: Obj<Device<'a>>,
    pub os: Obj<NameVersion<'a>>,
    pub app: Obj<NameVersion<'a>>,
    pub locale: Scalar<'a>,
    pub location: Obj<Location<'a>>,
    pub ip: Scalar<'a>,
    #[serde(rename = "userAgent")]
    pub user_agent: Scalar<'a>,
    #[serde(borrow, deserialize_with = "raw_present")]
    pub traits: Option<&'a RawValue>,
}

#[derive(DeriveDeserialize, Default)]
#[serde(default, bound(deserialize = "'de: 'a"))]
pub(crate) struct Campaign<'a> {
    pub source: Scalar<'a>,
    pub medium: Scalar<'a>,
    pub name: Scalar<'a>,
    pub term: Scalar<'a>,
    pub content: Scalar<'a>,
}

/// `context.page`, and the same keys of a page or screen event's properties.
#[derive(DeriveDeserialize, Default)]
#[serde(default, bound(deserialize = "'de: 'a"))]
pub(crate) struct Page<'a> {
    pub url: Scalar<'a>,
    pub path: Scalar<'a>,
    pub referrer: Scalar<'a>,
    pub title: Scalar<'a>,
}

#[derive(DeriveDeserialize, Default)]
#[serde(default, bound(deserialize = "'de: 'a"))]
pub(crate) struct Device<'a> {
    #[serde(rename = "type")]
    pub kind: Scalar<'a>,
}

#[derive(DeriveDeserialize, Default)]
#[serde(default, bound(deserialize = "'de: 'a"))]
pub(crate) struct NameVersion<'a> {
    pub name: Scalar<'a>,
    pub version: Scalar<'a>,
}

#[derive(DeriveDeserialize, Default)]
#[serde(default, bound(deserialize = "'de: 'a"))]
pub(crate) struct Location<'a> {
    pub country: Scalar<'a>,
    pub city: Scalar<'a>,
}

/// The `properties` that become columns (e-commerce spec v2, exposures, page fields).
#[derive(DeriveDeserialize, Default)]
#[serde(default, bound(deserialize = "'de: 'a"))]
pub(crate) struct Properties<'a> {
    pub order_id: Scalar<'a>,
    pub checkout_id: Scalar<'a>,
    pub revenue: Scalar<'a>,
    pub value: Scalar<'a>,
    pub total: Scalar<'a>,
    pub subtotal: Scalar<'a>,
    pub shipping: Scalar<'a>,
    pub tax: Scalar<'a>,
    pub discount: Scalar<'a>,
    pub currency: Scalar<'a>,
    pub product_id: Scalar<'a>,
    pub sku: Scalar<'a>,
    pub category: Scalar<'a>,
    pub price: Scalar<'a>,
    pub quantity: Scalar<'a>,
    pub coupon: Scalar<'a>,
    pub experiment_id: Scalar<'a>,
    #[serde(rename = "experimentId")]
    pub experiment_id_camel: Scalar<'a>,
    pub variation_id: Scalar<'a>,
    #[serde(rename = "variationId")]
    pub variation_id_camel: Scalar<'a>,
    pub url: Scalar<'a>,
    pub path: Scalar<'a>,
    pub referrer: Scalar<'a>,
    pub title: Scalar<'a>,
    pub products: Arr<Obj<Product<'a>>>,
}

/// One element of `properties.products`.
#[derive(DeriveDeserialize, Default)]
#[serde(default, bound(deserialize = "'de: 'a"))]
pub(crate) struct Product<'a> {
    pub product_id: Scalar<'a>,
    pub sku: Scalar<'a>,
    pub name: Scalar<'a>,
    pub category: Scalar<'a>,
    pub brand: Scalar<'a>,
    pub variant: Scalar<'a>,
    pub price: Scalar<'a>,
    pub quantity: Scalar<'a>,
    pub coupon: Scalar<'a>,
}

/// A log record as the materializer reads it.
pub(crate) enum Record<'a> {
    Event(Stored<'a>),
    Control(LogRecord),
}

/// Decodes a log payload: events in one pass (see the module docs), control records (a
/// `type` starting with `atrium.`) fully.
pub(crate) fn decode(payload: &[u8]) -> Result<Record<'_>, RecordError> {
    let stored: Stored<'_> = serde_json::from_slice(payload)?;
    if matches!(&stored.kind, Scalar::Text(kind) if kind.starts_with("atrium.")) {
        return LogRecord::decode(payload).map(Record::Control);
    }
    Ok(Record::Event(stored))
}

/// Parses raw JSON text as `T` if it is an object (`T`'s fields default otherwise).
pub(crate) fn object<'a, T: Deserialize<'a> + Default>(raw: Option<&'a RawValue>) -> T {
    raw.and_then(|raw| serde_json::from_str::<Obj<T>>(raw.get()).ok())
        .and_then(|obj| obj.0)
        .unwrap_or_default()
}
