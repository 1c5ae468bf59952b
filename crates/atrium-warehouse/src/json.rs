//! SQL functions over the JSON text columns (`properties`, `traits`, `context`):
//! `prop_text(json, 'key')` and `prop_number(json, 'key')` read one top-level member.
//!
//! `prop_text` gives strings as they are, numbers and booleans as their JSON text, objects and
//! arrays as JSON; `prop_number` gives numbers, and strings that parse as numbers. Anything
//! else, a missing member, or text that is not a JSON object is NULL.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Builder, StringArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use serde_json::{Map, Value};

/// The functions, to register on every query session.
pub(crate) fn functions() -> [ScalarUDF; 2] {
    [
        create_udf(
            "prop_text",
            vec![DataType::Utf8, DataType::Utf8],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(prop_text),
        ),
        create_udf(
            "prop_number",
            vec![DataType::Utf8, DataType::Utf8],
            DataType::Float64,
            Volatility::Immutable,
            Arc::new(prop_number),
        ),
    ]
}

fn string_arrays(args: &[ColumnarValue]) -> Result<(ArrayRef, ArrayRef), DataFusionError> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let [json, key] = arrays.as_slice() else {
        return Err(DataFusionError::Plan(
            "expected two arguments: a JSON text column and a member name".into(),
        ));
    };
    Ok((json.clone(), key.clone()))
}

fn as_strings(array: &ArrayRef) -> Result<&StringArray, DataFusionError> {
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Plan("arguments must be text".into()))
}

/// The member `key` of the JSON object `text`. Skips parsing when the key's text does not occur.
fn member(text: &str, key: &str) -> Option<Value> {
    if !text.contains(key) {
        return None;
    }
    let mut object: Map<String, Value> = serde_json::from_str(text).ok()?;
    object.remove(key)
}

fn for_each_member(
    args: &[ColumnarValue],
    mut each: impl FnMut(Option<Value>),
) -> Result<(), DataFusionError> {
    let (json, key) = string_arrays(args)?;
    let json = as_strings(&json)?;
    let key = as_strings(&key)?;
    for row in 0..json.len() {
        if json.is_null(row) || key.is_null(row) {
            each(None);
        } else {
            each(member(json.value(row), key.value(row)));
        }
    }
    Ok(())
}

fn prop_text(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    let mut out = StringBuilder::new();
    for_each_member(args, |value| match value {
        None | Some(Value::Null) => out.append_null(),
        Some(Value::String(text)) => out.append_value(text),
        Some(other) => out.append_value(other.to_string()),
    })?;
    Ok(ColumnarValue::Array(Arc::new(out.finish())))
}

fn prop_number(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    let mut out = Float64Builder::new();
    for_each_member(args, |value| {
        let number = match value {
            Some(Value::Number(number)) => number.as_f64(),
            Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
            _ => None,
        };
        out.append_option(number.filter(|number| number.is_finite()));
    })?;
    Ok(ColumnarValue::Array(Arc::new(out.finish())))
}
