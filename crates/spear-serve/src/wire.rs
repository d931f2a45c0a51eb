//! openpi's wire format: msgpack with numpy arrays as `openpi_client.msgpack_numpy` packs them.
//!
//! An array is a map of four entries whose keys are msgpack **bin** (not str), in this order:
//! `__ndarray__: true`, `data: bin` (C order, little-endian), `dtype: str` (numpy's `dtype.str`,
//! `"<f4"`), `shape: [ints]`. A numpy scalar is `{__npgeneric__: true, data: value, dtype: str}`.
//! Everything else is ordinary msgpack. [`decode`] turns a message into an [`Item`] tree, checking
//! every array (known dtype, little-endian, `len(data) = prod(shape) · itemsize`); [`encode`] writes
//! one byte for byte as `msgpack_numpy.packb` would.

use rmpv::Value;

/// A numpy dtype this format carries (numpy's `dtype.str` spelling in [`Dtype::numpy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `|b1`.
    Bool,
    /// `|u1`.
    U8,
    /// `<u2`.
    U16,
    /// `<u4`.
    U32,
    /// `<u8`.
    U64,
    /// `|i1`.
    I8,
    /// `<i2`.
    I16,
    /// `<i4`.
    I32,
    /// `<i8`.
    I64,
    /// `<f2`.
    F16,
    /// `<f4`.
    F32,
    /// `<f8`.
    F64,
}

const DTYPES: [(Dtype, &str, usize); 12] = [
    (Dtype::Bool, "|b1", 1),
    (Dtype::U8, "|u1", 1),
    (Dtype::U16, "<u2", 2),
    (Dtype::U32, "<u4", 4),
    (Dtype::U64, "<u8", 8),
    (Dtype::I8, "|i1", 1),
    (Dtype::I16, "<i2", 2),
    (Dtype::I32, "<i4", 4),
    (Dtype::I64, "<i8", 8),
    (Dtype::F16, "<f2", 2),
    (Dtype::F32, "<f4", 4),
    (Dtype::F64, "<f8", 8),
];

impl Dtype {
    /// numpy's `dtype.str` of this dtype.
    pub fn numpy(self) -> &'static str {
        DTYPES.iter().find(|d| d.0 == self).expect("every dtype is listed").1
    }

    /// Bytes per value.
    pub fn itemsize(self) -> usize {
        DTYPES.iter().find(|d| d.0 == self).expect("every dtype is listed").2
    }

    /// The dtype of a numpy `dtype.str` (byte order `<`, `|` or `=`, then kind and size), or why
    /// it is refused.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (order, rest) = s.split_at(s.char_indices().nth(1).map_or(s.len(), |(i, _)| i));
        let found = DTYPES.iter().find(|d| &d.1[1..] == rest);
        match (order, found) {
            ("<" | "|" | "=", Some(d)) => Ok(d.0),
            (">", Some(d)) if d.2 == 1 => Ok(d.0),
            (">", Some(_)) => Err(format!("dtype {s:?} is big-endian (send little-endian arrays)")),
            _ if rest.starts_with(['O', 'V', 'c', 'U', 'S', 'M', 'm']) => Err(format!(
                "dtype {s:?} is not a number type (object, void, complex, string and time are refused)"
            )),
            _ => Err(format!("unknown dtype {s:?}")),
        }
    }
}

/// A numpy array as the wire carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The element type.
    pub dtype: Dtype,
    /// The shape (empty for a 0-d array).
    pub shape: Vec<usize>,
    /// `prod(shape) · itemsize` bytes, C order, little-endian.
    pub data: Vec<u8>,
}

impl Array {
    /// A float32 array of `shape` (the values' count must match).
    pub fn f32(shape: Vec<usize>, values: &[f32]) -> Self {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "shape and values disagree");
        Self { dtype: Dtype::F32, shape, data: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
    }

    /// A float64 array of `shape` (the values' count must match).
    pub fn f64(shape: Vec<usize>, values: &[f64]) -> Self {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "shape and values disagree");
        Self { dtype: Dtype::F64, shape, data: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every value as f64 (booleans as 0 and 1; exact but for 64-bit integers beyond 2⁵³).
    pub fn to_f64(&self) -> Vec<f64> {
        let n = self.dtype.itemsize();
        self.data
            .chunks_exact(n)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..n].copy_from_slice(c);
                let [b0, b1, b2, b3, ..] = b;
                match self.dtype {
                    Dtype::Bool => f64::from(u8::from(b0 != 0)),
                    Dtype::U8 => f64::from(b0),
                    Dtype::U16 => f64::from(u16::from_le_bytes([b0, b1])),
                    Dtype::U32 => f64::from(u32::from_le_bytes([b0, b1, b2, b3])),
                    Dtype::U64 => u64::from_le_bytes(b) as f64,
                    Dtype::I8 => f64::from(b0 as i8),
                    Dtype::I16 => f64::from(i16::from_le_bytes([b0, b1])),
                    Dtype::I32 => f64::from(i32::from_le_bytes([b0, b1, b2, b3])),
                    Dtype::I64 => i64::from_le_bytes(b) as f64,
                    Dtype::F16 => f64::from(half::f16::from_le_bytes([b0, b1])),
                    Dtype::F32 => f64::from(f32::from_le_bytes([b0, b1, b2, b3])),
                    Dtype::F64 => f64::from_le_bytes(b),
                }
            })
            .collect()
    }
}

/// A decoded message: msgpack values, with numpy arrays and scalars recognised.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `None`.
    Nil,
    /// A bool (or a numpy bool scalar).
    Bool(bool),
    /// An integer (or a numpy integer scalar).
    Int(i64),
    /// A float (or a numpy float scalar).
    Float(f64),
    /// A str.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A numpy array.
    Array(Array),
    /// A list or tuple.
    List(Vec<Item>),
    /// A dict, its keys in order (str keys; bin keys that are UTF-8 read as str).
    Map(Vec<(String, Item)>),
}

impl Item {
    /// The value of `key` in a map.
    pub fn get(&self, key: &str) -> Option<&Item> {
        match self {
            Item::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// What kind of value it is, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Nil => "None",
            Item::Bool(_) => "a bool",
            Item::Int(_) => "an int",
            Item::Float(_) => "a float",
            Item::Str(_) => "a str",
            Item::Bytes(_) => "bytes",
            Item::Array(_) => "an array",
            Item::List(_) => "a list",
            Item::Map(_) => "a dict",
        }
    }
}

/// Nesting deeper than this is refused (observations are a few levels deep).
const MAX_DEPTH: usize = 32;

/// Decodes one message. Errors are short and name the key path (`images.cam_high: …`).
pub fn decode(bytes: &[u8]) -> Result<Item, String> {
    let mut reader = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH).map_err(|e| {
        use rmpv::decode::Error;
        match e {
            Error::InvalidMarkerRead(e) | Error::InvalidDataRead(e)
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                "not a msgpack message: it ends early".to_string()
            }
            Error::DepthLimitExceeded => {
                format!("not a msgpack message: nested deeper than {MAX_DEPTH} levels")
            }
            e => format!("not a msgpack message ({e})"),
        }
    })?;
    if !reader.is_empty() {
        return Err(format!("{} bytes after the end of the msgpack message", reader.len()));
    }
    item(value, "")
}

fn at(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn named(path: &str) -> String {
    if path.is_empty() { "the message".into() } else { format!("`{path}`") }
}

fn item(value: Value, path: &str) -> Result<Item, String> {
    Ok(match value {
        Value::Nil => Item::Nil,
        Value::Boolean(b) => Item::Bool(b),
        Value::Integer(i) => Item::Int(
            i.as_i64()
                .ok_or_else(|| format!("{}: integer {i} does not fit in 64 signed bits", named(path)))?,
        ),
        Value::F32(f) => Item::Float(f64::from(f)),
        Value::F64(f) => Item::Float(f),
        Value::String(s) => {
            Item::Str(s.into_str().ok_or_else(|| format!("{}: a str that is not UTF-8", named(path)))?)
        }
        Value::Binary(b) => Item::Bytes(b),
        Value::Array(values) => Item::List(
            values
                .into_iter()
                .enumerate()
                .map(|(i, v)| item(v, &at(path, &i.to_string())))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(entries) => {
            if entries.iter().any(|(k, _)| is_marker(k, "__ndarray__")) {
                return array(entries, path).map(Item::Array);
            }
            if entries.iter().any(|(k, _)| is_marker(k, "__npgeneric__")) {
                return scalar(entries, path);
            }
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match k {
                    Value::String(s) => s.into_str(),
                    Value::Binary(b) => String::from_utf8(b).ok(),
                    other => {
                        return Err(format!(
                            "{}: a dict key that is {other} (keys must be str)",
                            named(path)
                        ));
                    }
                }
                .ok_or_else(|| format!("{}: a dict key that is not UTF-8", named(path)))?;
                if out.iter().any(|(seen, _): &(String, Item)| *seen == key) {
                    return Err(format!("{}: key {key:?} twice", named(path)));
                }
                let value = item(v, &at(path, &key))?;
                out.push((key, value));
            }
            Item::Map(out)
        }
        Value::Ext(t, _) => {
            return Err(format!("{}: msgpack extension type {t} is not used here", named(path)));
        }
    })
}

/// Whether `key` is the marker `name`: openpi writes bin keys; a str key would not be recognised by
/// its client, but is accepted here.
fn is_marker(key: &Value, name: &str) -> bool {
    match key {
        Value::Binary(b) => b == name.as_bytes(),
        Value::String(s) => s.as_str() == Some(name),
        _ => false,
    }
}

fn field<'a>(entries: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    entries.iter().find(|(k, _)| is_marker(k, name)).map(|(_, v)| v)
}

fn array(entries: Vec<(Value, Value)>, path: &str) -> Result<Array, String> {
    let fail = |problem: String| format!("{}: {problem}", named(path));
    let dtype = match field(&entries, "dtype") {
        Some(Value::String(s)) => Dtype::parse(s.as_str().unwrap_or_default()).map_err(fail)?,
        _ => return Err(fail("an array without a str `dtype`".into())),
    };
    let shape: Vec<usize> = match field(&entries, "shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| fail("an array whose `shape` is not a list of non-negative ints".into()))?,
        _ => return Err(fail("an array without a `shape` list".into())),
    };
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.itemsize()))
        .ok_or_else(|| fail(format!("shape {shape:?} is too large")))?;
    let data = match entries.into_iter().find(|(k, _)| is_marker(k, "data")) {
        Some((_, Value::Binary(b))) => b,
        _ => return Err(fail("an array without bin `data`".into())),
    };
    if data.len() != count {
        return Err(fail(format!(
            "{} bytes of data for shape {shape:?} of {} ({count} expected)",
            data.len(),
            dtype.numpy()
        )));
    }
    Ok(Array { dtype, shape, data })
}

fn scalar(entries: Vec<(Value, Value)>, path: &str) -> Result<Item, String> {
    let fail = |problem: String| format!("{}: {problem}", named(path));
    match field(&entries, "dtype") {
        Some(Value::String(s)) => Dtype::parse(s.as_str().unwrap_or_default()).map_err(fail)?,
        _ => return Err(fail("a numpy scalar without a str `dtype`".into())),
    };
    match field(&entries, "data") {
        Some(Value::Boolean(b)) => Ok(Item::Bool(*b)),
        Some(Value::Integer(i)) => i
            .as_i64()
            .map(Item::Int)
            .ok_or_else(|| fail(format!("integer {i} does not fit in 64 signed bits"))),
        Some(Value::F64(f)) => Ok(Item::Float(*f)),
        Some(Value::F32(f)) => Ok(Item::Float(f64::from(*f))),
        _ => Err(fail("a numpy scalar whose `data` is not a number".into())),
    }
}

fn bin(name: &str) -> Value {
    Value::Binary(name.as_bytes().to_vec())
}

fn value(item: &Item) -> Value {
    match item {
        Item::Nil => Value::Nil,
        Item::Bool(b) => Value::Boolean(*b),
        Item::Int(i) => Value::from(*i),
        Item::Float(f) => Value::F64(*f),
        Item::Str(s) => Value::from(s.as_str()),
        Item::Bytes(b) => Value::Binary(b.clone()),
        Item::Array(a) => Value::Map(vec![
            (bin("__ndarray__"), Value::Boolean(true)),
            (bin("data"), Value::Binary(a.data.clone())),
            (bin("dtype"), Value::from(a.dtype.numpy())),
            (bin("shape"), Value::Array(a.shape.iter().map(|&d| Value::from(d as u64)).collect())),
        ]),
        Item::List(items) => Value::Array(items.iter().map(value).collect()),
        Item::Map(entries) => {
            Value::Map(entries.iter().map(|(k, v)| (Value::from(k.as_str()), value(v))).collect())
        }
    }
}

/// Encodes `item` as `msgpack_numpy.packb` encodes the same Python value (tuples as lists).
pub fn encode(item: &Item) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value(item)).expect("writing to a Vec cannot fail");
    out
}
