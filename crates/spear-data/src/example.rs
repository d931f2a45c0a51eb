//! `tf.train.Example` decoding and encoding (TensorFlow's `core/example/{example,feature}.proto`), written out
//! for the five messages involved rather than through a protobuf code generator:
//!
//! ```text
//! Example   { Features features = 1; }
//! Features  { map<string, Feature> feature = 1; }       // entries: key = 1, value = 2
//! Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
//! BytesList { repeated bytes value = 1; }
//! FloatList { repeated float value = 1 [packed = true]; }
//! Int64List { repeated int64 value = 1 [packed = true]; }
//! ```
//!
//! Packed and unpacked encodings are both accepted (protobuf parsers must), unknown fields are
//! skipped, and a later value for the same map key replaces the earlier one, as protobuf's map
//! semantics say.

use std::collections::BTreeMap;

/// One feature's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature {
    /// Byte strings (encoded images, text).
    Bytes(Vec<Vec<u8>>),
    /// 32-bit floats.
    Float(Vec<f32>),
    /// 64-bit integers.
    Int64(Vec<i64>),
    /// A feature with no kind set (an empty `Feature` message).
    Empty,
}

impl Feature {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Feature::Bytes(v) => v.len(),
            Feature::Float(v) => v.len(),
            Feature::Int64(v) => v.len(),
            Feature::Empty => 0,
        }
    }

    /// Whether the feature holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kind's name as in the proto (`bytes_list`, `float_list`, `int64_list`, `none`).
    pub fn kind(&self) -> &'static str {
        match self {
            Feature::Bytes(_) => "bytes_list",
            Feature::Float(_) => "float_list",
            Feature::Int64(_) => "int64_list",
            Feature::Empty => "none",
        }
    }
}

/// A decoded `tf.train.Example`: feature name → values.
pub type Example = BTreeMap<String, Feature>;

/// A malformed `tf.train.Example`, naming where in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tf.train.Example: {context}: {problem}")]
pub struct ExampleError {
    /// The message or feature being read (e.g. `feature "steps/action"`).
    pub context: String,
    /// What is wrong.
    pub problem: String,
}

/// Protobuf wire reader over a byte slice.
struct Wire<'a> {
    bytes: &'a [u8],
    context: String,
}

impl<'a> Wire<'a> {
    fn new(bytes: &'a [u8], context: impl Into<String>) -> Self {
        Self { bytes, context: context.into() }
    }

    fn fail<T>(&self, problem: impl Into<String>) -> Result<T, ExampleError> {
        Err(ExampleError { context: self.context.clone(), problem: problem.into() })
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn varint(&mut self) -> Result<u64, ExampleError> {
        let mut value = 0u64;
        for (i, &b) in self.bytes.iter().enumerate().take(10) {
            value |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                self.bytes = &self.bytes[i + 1..];
                return Ok(value);
            }
        }
        self.fail("truncated or over-long varint")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ExampleError> {
        if n > self.bytes.len() {
            return self.fail(format!("field of {n} bytes but only {} left", self.bytes.len()));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn length_delimited(&mut self) -> Result<&'a [u8], ExampleError> {
        let n = self.varint()?;
        let n = usize::try_from(n).or_else(|_| self.fail(format!("length {n} too large")))?;
        self.take(n)
    }

    /// The next field's number and wire type.
    fn key(&mut self) -> Result<(u64, u8), ExampleError> {
        let key = self.varint()?;
        Ok((key >> 3, (key & 7) as u8))
    }

    /// Skips a field of an unknown number.
    fn skip(&mut self, wire_type: u8) -> Result<(), ExampleError> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.length_delimited().map(drop),
            5 => self.take(4).map(drop),
            other => self.fail(format!("unsupported wire type {other}")),
        }
    }
}

/// Decodes a serialised `tf.train.Example`.
pub fn parse_example(bytes: &[u8]) -> Result<Example, ExampleError> {
    parse_example_with(bytes, |_| true)
}

/// Decodes a serialised `tf.train.Example`, keeping only the features whose names `keep` accepts;
/// the others are stepped over without being decoded or copied.
pub fn parse_example_with(bytes: &[u8], keep: impl Fn(&str) -> bool) -> Result<Example, ExampleError> {
    let mut example = Example::new();
    let mut wire = Wire::new(bytes, "Example");
    while !wire.is_empty() {
        match wire.key()? {
            (1, 2) => parse_features(wire.length_delimited()?, &mut example, &keep)?,
            (_, wire_type) => wire.skip(wire_type)?,
        }
    }
    Ok(example)
}

fn parse_features(
    bytes: &[u8],
    example: &mut Example,
    keep: &impl Fn(&str) -> bool,
) -> Result<(), ExampleError> {
    let mut wire = Wire::new(bytes, "Features");
    while !wire.is_empty() {
        match wire.key()? {
            (1, 2) => {
                let mut entry = Wire::new(wire.length_delimited()?, "Features.feature entry");
                let (mut name, mut value) = (String::new(), None);
                while !entry.is_empty() {
                    match entry.key()? {
                        (1, 2) => {
                            let raw = entry.length_delimited()?;
                            name = String::from_utf8(raw.to_vec())
                                .or_else(|_| entry.fail("feature name is not UTF-8"))?;
                        }
                        (2, 2) => value = Some(entry.length_delimited()?),
                        (_, wire_type) => entry.skip(wire_type)?,
                    }
                }
                if !keep(&name) {
                    continue;
                }
                let feature = match value {
                    Some(bytes) => parse_feature(bytes, &format!("feature {name:?}"))?,
                    None => Feature::Empty,
                };
                example.insert(name, feature);
            }
            (_, wire_type) => wire.skip(wire_type)?,
        }
    }
    Ok(())
}

fn parse_feature(bytes: &[u8], context: &str) -> Result<Feature, ExampleError> {
    let mut wire = Wire::new(bytes, context);
    let mut feature = Feature::Empty;
    while !wire.is_empty() {
        match wire.key()? {
            (kind @ 1..=3, 2) => {
                let mut list = Wire::new(wire.length_delimited()?, context);
                feature = match kind {
                    1 => Feature::Bytes(bytes_list(&mut list)?),
                    2 => Feature::Float(float_list(&mut list)?),
                    _ => Feature::Int64(int64_list(&mut list)?),
                };
            }
            (_, wire_type) => wire.skip(wire_type)?,
        }
    }
    Ok(feature)
}

fn bytes_list(wire: &mut Wire<'_>) -> Result<Vec<Vec<u8>>, ExampleError> {
    let mut values = Vec::new();
    while !wire.is_empty() {
        match wire.key()? {
            (1, 2) => values.push(wire.length_delimited()?.to_vec()),
            (_, wire_type) => wire.skip(wire_type)?,
        }
    }
    Ok(values)
}

fn float_list(wire: &mut Wire<'_>) -> Result<Vec<f32>, ExampleError> {
    let mut values = Vec::new();
    let f32_at = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    while !wire.is_empty() {
        match wire.key()? {
            (1, 2) => {
                let packed = wire.length_delimited()?;
                if packed.len() % 4 != 0 {
                    return wire
                        .fail(format!("packed float_list of {} bytes (not a multiple of 4)", packed.len()));
                }
                values.extend(packed.chunks_exact(4).map(f32_at));
            }
            (1, 5) => values.push(f32_at(wire.take(4)?)),
            (_, wire_type) => wire.skip(wire_type)?,
        }
    }
    Ok(values)
}

fn int64_list(wire: &mut Wire<'_>) -> Result<Vec<i64>, ExampleError> {
    let mut values = Vec::new();
    while !wire.is_empty() {
        match wire.key()? {
            (1, 2) => {
                let mut packed = Wire::new(wire.length_delimited()?, wire.context.clone());
                while !packed.is_empty() {
                    // int64 is two's complement in a varint.
                    values.push(packed.varint()? as i64);
                }
            }
            (1, 0) => values.push(wire.varint()? as i64),
            (_, wire_type) => wire.skip(wire_type)?,
        }
    }
    Ok(values)
}

/// Appends `value` as a protobuf varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-delimited field.
fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes a `tf.train.Example` as TensorFlow writes it: features in key order, floats and
/// integers packed (TensorFlow's serialiser packs them too), so [`parse_example`] reads back the
/// same map.
pub fn encode_example(example: &Example) -> Vec<u8> {
    let mut features = Vec::new();
    for (name, feature) in example {
        let mut list = Vec::new();
        let kind = match feature {
            Feature::Bytes(values) => {
                for v in values {
                    put_bytes(&mut list, 1, v);
                }
                Some(1)
            }
            Feature::Float(values) => {
                let packed: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                if !packed.is_empty() {
                    put_bytes(&mut list, 1, &packed);
                }
                Some(2)
            }
            Feature::Int64(values) => {
                let mut packed = Vec::new();
                for &v in values {
                    put_varint(&mut packed, v as u64);
                }
                if !packed.is_empty() {
                    put_bytes(&mut list, 1, &packed);
                }
                Some(3)
            }
            Feature::Empty => None,
        };
        let mut value = Vec::new();
        if let Some(kind) = kind {
            put_bytes(&mut value, kind, &list);
        }
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, name.as_bytes());
        put_bytes(&mut entry, 2, &value);
        put_bytes(&mut features, 1, &entry);
    }
    let mut out = Vec::new();
    put_bytes(&mut out, 1, &features);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacked_lists_and_unknown_fields_are_accepted() {
        // Feature { float_list { value: 1.5 (unpacked, wire type 5) } } with an unknown field 9.
        let mut float_list = vec![0x0D];
        float_list.extend(1.5f32.to_le_bytes());
        let mut feature = vec![0x12, float_list.len() as u8];
        feature.extend(&float_list);
        feature.extend([0x48, 0x01]); // field 9, varint 1
        assert_eq!(parse_feature(&feature, "test").unwrap(), Feature::Float(vec![1.5]));
        // Int64List { value: -1 (unpacked varint) }
        let mut list = vec![0x08];
        list.extend([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
        let mut feature = vec![0x1A, list.len() as u8];
        feature.extend(&list);
        assert_eq!(parse_feature(&feature, "test").unwrap(), Feature::Int64(vec![-1]));
    }

    #[test]
    fn truncated_messages_name_the_feature() {
        // A float_list claiming 8 bytes with only 4 present.
        let feature = [0x12, 0x06, 0x0A, 0x08, 0, 0, 0x80, 0x3F];
        let e = parse_feature(&feature, "feature \"steps/action\"").unwrap_err();
        assert_eq!(e.context, "feature \"steps/action\"");
        assert_eq!(e.problem, "field of 8 bytes but only 4 left");
    }
}
