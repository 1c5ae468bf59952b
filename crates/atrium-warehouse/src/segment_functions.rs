//! The `seg_*` SQL functions that compiled segment queries call (`atrium_segments::compile_sql`).
//! Each one wraps the function of the same meaning in `atrium_segments::sql_functions`, which
//! documents it; this module only moves values between Arrow arrays and Rust.

use std::sync::Arc;

use atrium_segments::sql_functions as seg;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Array, Int64Builder, ListBuilder,
    StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

/// The functions, to register on every query session.
pub(crate) fn functions() -> Vec<ScalarUDF> {
    use DataType::{Boolean, Float64, Int64, Utf8};
    let list = DataType::List(Arc::new(
        datafusion::arrow::datatypes::Field::new_list_field(Utf8, true),
    ));
    let udf = |name: &str, inputs: Vec<DataType>, output: DataType, body: Body| {
        create_udf(
            name,
            inputs,
            output,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| body(args)),
        )
    };
    vec![
        udf("seg_json", vec![Utf8, Utf8], Utf8, Arc::new(seg_json)),
        udf("seg_kind", vec![Utf8], Utf8, Arc::new(seg_kind)),
        udf("seg_str", vec![Utf8], Utf8, Arc::new(seg_str)),
        udf("seg_key", vec![Utf8], Utf8, Arc::new(seg_key)),
        udf("seg_num", vec![Utf8], Float64, Arc::new(seg_num)),
        udf("seg_has", vec![Utf8, Utf8], Boolean, Arc::new(seg_has)),
        udf("seg_time", vec![Utf8, Utf8], Int64, Arc::new(seg_time)),
        udf("seg_zone", vec![Utf8, Utf8], Utf8, Arc::new(seg_zone)),
        udf(
            "seg_local_date",
            vec![Int64, Utf8],
            Int64,
            Arc::new(seg_local_date),
        ),
        udf("seg_regex", vec![Utf8, Utf8], Boolean, Arc::new(seg_regex)),
        udf(
            "seg_bucket",
            vec![Utf8, Utf8],
            Float64,
            Arc::new(seg_bucket),
        ),
        udf("seg_items", vec![Utf8, Utf8], list, Arc::new(seg_items)),
    ]
}

type Body = Arc<dyn Fn(&[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> + Send + Sync>;

fn arrays(args: &[ColumnarValue], count: usize) -> Result<Vec<ArrayRef>, DataFusionError> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    if arrays.len() != count {
        return Err(DataFusionError::Plan(format!(
            "expected {count} arguments, got {}",
            arrays.len()
        )));
    }
    Ok(arrays)
}

fn strings(array: &ArrayRef) -> Result<&StringArray, DataFusionError> {
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Plan("seg_* arguments must be text".into()))
}

fn text_at(array: &StringArray, row: usize) -> Option<&str> {
    (!array.is_null(row)).then(|| array.value(row))
}

fn done(array: ArrayRef) -> Result<ColumnarValue, DataFusionError> {
    Ok(ColumnarValue::Array(array))
}

/// One text argument → text.
fn unary_text(
    args: &[ColumnarValue],
    each: impl Fn(&str) -> Option<String>,
) -> Result<ColumnarValue, DataFusionError> {
    let arrays = arrays(args, 1)?;
    let input = strings(&arrays[0])?;
    let mut out = StringBuilder::new();
    for row in 0..input.len() {
        out.append_option(text_at(input, row).and_then(&each));
    }
    done(Arc::new(out.finish()))
}

/// Two text arguments → any builder.
fn binary_text<B>(
    args: &[ColumnarValue],
    mut out: B,
    mut each: impl FnMut(&mut B, Option<&str>, Option<&str>),
    finish: impl FnOnce(B) -> ArrayRef,
) -> Result<ColumnarValue, DataFusionError> {
    let arrays = arrays(args, 2)?;
    let (left, right) = (strings(&arrays[0])?, strings(&arrays[1])?);
    for row in 0..left.len() {
        each(&mut out, text_at(left, row), text_at(right, row));
    }
    done(finish(out))
}

fn seg_json(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    binary_text(
        args,
        StringBuilder::new(),
        |out, document, path| match (document, path) {
            (Some(document), Some(path)) => out.append_option(seg::json_at(document, path)),
            _ => out.append_null(),
        },
        |mut out| Arc::new(out.finish()),
    )
}

fn seg_kind(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    unary_text(args, |value| seg::kind(value).map(str::to_string))
}

fn seg_str(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    unary_text(args, seg::string)
}

fn seg_key(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    unary_text(args, seg::key)
}

fn seg_num(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    let arrays = arrays(args, 1)?;
    let input = strings(&arrays[0])?;
    let mut out = Float64Builder::new();
    for row in 0..input.len() {
        out.append_option(text_at(input, row).and_then(seg::number));
    }
    done(Arc::new(out.finish()))
}

fn seg_has(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    binary_text(
        args,
        BooleanBuilder::new(),
        |out, value, key| match (value, key) {
            (Some(value), Some(key)) => out.append_value(seg::has(value, key)),
            _ => out.append_null(),
        },
        |mut out| Arc::new(out.finish()),
    )
}

fn seg_time(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    binary_text(
        args,
        Int64Builder::new(),
        |out, value, zone| match (value, zone) {
            (Some(value), Some(zone)) => out.append_option(seg::instant(value, zone)),
            _ => out.append_null(),
        },
        |mut out| Arc::new(out.finish()),
    )
}

fn seg_zone(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    binary_text(
        args,
        StringBuilder::new(),
        |out, value, fallback| match fallback {
            Some(fallback) => out.append_value(seg::zone(value, fallback)),
            None => out.append_null(),
        },
        |mut out| Arc::new(out.finish()),
    )
}

fn seg_local_date(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    let arrays = arrays(args, 2)?;
    let instants = arrays[0]
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| DataFusionError::Plan("seg_local_date takes epoch ms".into()))?;
    let zones = strings(&arrays[1])?;
    let mut out = Int64Builder::new();
    for row in 0..instants.len() {
        let date = match (instants.is_null(row), text_at(zones, row)) {
            (false, Some(zone)) => seg::local_date(instants.value(row), zone),
            _ => None,
        };
        out.append_option(date);
    }
    done(Arc::new(out.finish()))
}

fn seg_regex(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    // The pattern is a literal: compile it once per batch (per distinct text).
    let mut compiled: Option<(String, Option<_>)> = None;
    binary_text(
        args,
        BooleanBuilder::new(),
        |out, text, pattern| {
            let (Some(text), Some(pattern)) = (text, pattern) else {
                out.append_null();
                return;
            };
            if compiled.as_ref().is_none_or(|(held, _)| held != pattern) {
                compiled = Some((pattern.to_string(), seg::pattern(pattern)));
            }
            match compiled.as_ref().and_then(|(_, regex)| regex.as_ref()) {
                Some(regex) => out.append_value(regex.is_match(text)),
                None => out.append_value(false),
            }
        },
        |mut out| Arc::new(out.finish()),
    )
}

fn seg_bucket(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    binary_text(
        args,
        Float64Builder::new(),
        |out, salt, profile| match (salt, profile) {
            (Some(salt), Some(profile)) => out.append_value(seg::bucket(salt, profile)),
            _ => out.append_null(),
        },
        |mut out| Arc::new(out.finish()),
    )
}

fn seg_items(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    binary_text(
        args,
        ListBuilder::new(StringBuilder::new()),
        |out, document, path| {
            if let (Some(document), Some(path)) = (document, path) {
                for item in seg::items(document, path) {
                    out.values().append_value(item);
                }
            }
            out.append(true);
        },
        |mut out| Arc::new(out.finish()),
    )
}
