//! Primitives of the compact binary encodings of stored state (segment states, profiles).
//!
//! Integers are LEB128 varints (signed ones zigzag-encoded), `f64` are their 8 IEEE bytes
//! (little endian), strings are a length and UTF-8 bytes, and JSON values are a type byte then
//! the value (objects in their own key order). The reader accepts only what the writer
//! produces (minimal varints, negative numbers tagged as such), so encodings built on these
//! primitives can be canonical: `encode(decode(bytes)) == bytes`.

use serde_json::{Map, Number, Value};

/// Bytes that are not a valid encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed stored bytes at byte {position}: {what}")]
pub struct CodecError {
    pub position: usize,
    pub what: &'static str,
}

/// Appends primitives to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn new(bytes: Vec<u8>) -> Writer {
        Writer { bytes }
    }

    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub fn u64(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    pub fn i64(&mut self, value: i64) {
        self.u64(((value << 1) ^ (value >> 63)) as u64);
    }

    pub fn f64(&mut self, value: f64) {
        self.bytes.extend_from_slice(&value.to_bits().to_le_bytes());
    }

    pub fn bool(&mut self, value: bool) {
        self.bytes.push(u8::from(value));
    }

    pub fn str(&mut self, value: &str) {
        self.u64(value.len() as u64);
        self.bytes.extend_from_slice(value.as_bytes());
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    pub fn opt_i64(&mut self, value: Option<i64>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.i64(value);
            }
        }
    }

    pub fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.u8(0),
            Value::Bool(false) => self.u8(1),
            Value::Bool(true) => self.u8(2),
            Value::Number(number) => {
                if let Some(positive) = number.as_u64() {
                    self.u8(3);
                    self.u64(positive);
                } else if let Some(negative) = number.as_i64() {
                    self.u8(4);
                    self.i64(negative);
                } else {
                    self.u8(5);
                    self.f64(number.as_f64().unwrap_or(0.0));
                }
            }
            Value::String(text) => {
                self.u8(6);
                self.str(text);
            }
            Value::Array(items) => {
                self.u8(7);
                self.u64(items.len() as u64);
                for item in items {
                    self.value(item);
                }
            }
            Value::Object(members) => {
                self.u8(8);
                self.u64(members.len() as u64);
                for (key, member) in members {
                    self.str(key);
                    self.value(member);
                }
            }
        }
    }
}

/// Reads primitives from a slice.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn is_empty(&self) -> bool {
        self.position >= self.bytes.len()
    }

    pub fn error(&self, what: &'static str) -> CodecError {
        CodecError {
            position: self.position,
            what,
        }
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        let byte = *self
            .bytes
            .get(self.position)
            .ok_or_else(|| self.error("unexpected end"))?;
        self.position += 1;
        Ok(byte)
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.u8()?;
            if shift == 63 && byte > 1 {
                return Err(self.error("varint overflows"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 {
                    return Err(self.error("varint is not minimal"));
                }
                return Ok(value);
            }
            shift += 7;
        }
    }

    pub fn i64(&mut self) -> Result<i64, CodecError> {
        let raw = self.u64()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    pub fn f64(&mut self) -> Result<f64, CodecError> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(f64::from_bits(u64::from_le_bytes(array)))
    }

    pub fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.error("bad boolean")),
        }
    }

    pub fn take(&mut self, length: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .position
            .checked_add(length)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.error("length past the end"))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    /// A length that cannot exceed the remaining bytes (each item takes at least one byte).
    pub fn len(&mut self) -> Result<usize, CodecError> {
        let length = self.u64()?;
        if length > (self.bytes.len() - self.position) as u64 {
            return Err(self.error("count past the end"));
        }
        Ok(length as usize)
    }

    pub fn str(&mut self) -> Result<&'a str, CodecError> {
        let length = self.len()?;
        let bytes = self.take(length)?;
        std::str::from_utf8(bytes).map_err(|_| self.error("invalid UTF-8"))
    }

    pub fn opt_i64(&mut self) -> Result<Option<i64>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.i64()?)),
            _ => Err(self.error("bad option tag")),
        }
    }

    pub fn value(&mut self) -> Result<Value, CodecError> {
        self.value_at_depth(0)
    }

    fn value_at_depth(&mut self, depth: usize) -> Result<Value, CodecError> {
        if depth > 256 {
            return Err(self.error("value nested too deeply"));
        }
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Number(Number::from(self.u64()?)),
            4 => {
                let value = self.i64()?;
                if value >= 0 {
                    return Err(self.error("non-negative number tagged negative"));
                }
                Value::Number(Number::from(value))
            }
            5 => {
                let value = self.f64()?;
                Value::Number(Number::from_f64(value).ok_or_else(|| self.error("non-finite"))?)
            }
            6 => Value::String(self.str()?.to_owned()),
            7 => {
                let count = self.len()?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value_at_depth(depth + 1)?);
                }
                Value::Array(items)
            }
            8 => {
                let count = self.len()?;
                let mut members = Map::new();
                for _ in 0..count {
                    let key = self.str()?.to_owned();
                    let member = self.value_at_depth(depth + 1)?;
                    members.insert(key, member);
                }
                Value::Object(members)
            }
            _ => return Err(self.error("bad value tag")),
        })
    }
}
