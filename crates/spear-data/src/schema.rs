//! The typed schema of a TFDS dataset, read from its `features.json`.
//!
//! TFDS describes a dataset's features as a tree (`FeaturesDict` → `Dataset` of steps →
//! `FeaturesDict` → `Tensor` / `Image` / `Text` / …) and serialises each episode as one
//! `tf.train.Example` whose keys are the tree's paths joined with `/`; everything under the RLDS
//! `steps` dataset is written back to back for all steps. This module flattens the tree into
//! [`Field`]s: the path inside an episode or a step, the example key, and the leaf's type
//! ([`Leaf`]), which is all a reader needs to turn an `Example` back into typed arrays.
//!
//! How TFDS 4.x stores each leaf (its `example_serializer` and feature `encode_example`s):
//! floating tensors as `float_list` (float64 is rounded to float32 on write), integers and bools
//! as `int64_list`, strings and `Text` as `bytes_list`, images as one encoded JPEG/PNG per value in
//! `bytes_list`, and tensors with `encoding: zlib` or `bytes` as one `bytes_list` entry holding the
//! raw little-endian array (zlib-compressed for `zlib`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Element type of a tensor leaf, as TFDS names it (`tf.dtypes` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `bool`.
    Bool,
    /// `int8`.
    I8,
    /// `int16`.
    I16,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// `uint8`.
    U8,
    /// `uint16`.
    U16,
    /// `uint32`.
    U32,
    /// `uint64` (stored as `int64`, so only values below 2⁶³ survive TFDS's own round trip).
    U64,
    /// `float16`.
    F16,
    /// `bfloat16`.
    BF16,
    /// `float32`.
    F32,
    /// `float64` (TFDS writes it as `float_list`, i.e. rounded to float32, unless zlib/bytes encoded).
    F64,
    /// `string` (bytes).
    String,
}

impl DType {
    /// Parses a TFDS dtype name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "bool" => Self::Bool,
            "int8" => Self::I8,
            "int16" => Self::I16,
            "int32" => Self::I32,
            "int64" => Self::I64,
            "uint8" => Self::U8,
            "uint16" => Self::U16,
            "uint32" => Self::U32,
            "uint64" => Self::U64,
            "float16" => Self::F16,
            "bfloat16" => Self::BF16,
            "float32" => Self::F32,
            "float64" => Self::F64,
            "string" => Self::String,
            _ => return None,
        })
    }

    /// The TFDS name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::I32 => "int32",
            Self::I64 => "int64",
            Self::U8 => "uint8",
            Self::U16 => "uint16",
            Self::U32 => "uint32",
            Self::U64 => "uint64",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::String => "string",
        }
    }

    /// Whether values are floating point.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F16 | Self::BF16 | Self::F32 | Self::F64)
    }

    /// Bytes per element in a raw (`bytes`/`zlib`-encoded) array; `None` for strings.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            Self::Bool | Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 | Self::F16 | Self::BF16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
            Self::String => return None,
        })
    }

    /// The inclusive range an integer dtype can hold (`None` for floats, bools and strings).
    pub fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            Self::I8 => (i8::MIN.into(), i8::MAX.into()),
            Self::I16 => (i16::MIN.into(), i16::MAX.into()),
            Self::I32 => (i32::MIN.into(), i32::MAX.into()),
            Self::I64 => (i64::MIN.into(), i64::MAX.into()),
            Self::U8 => (0, u8::MAX.into()),
            Self::U16 => (0, u16::MAX.into()),
            Self::U32 => (0, u32::MAX.into()),
            Self::U64 => (0, u64::MAX.into()),
            _ => return None,
        })
    }
}

/// How a tensor's values are laid out in the example (TFDS's `Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One value per element in the list of the dtype's kind (the usual case).
    None,
    /// One byte string per tensor: the raw little-endian array.
    Bytes,
    /// One byte string per tensor: the raw little-endian array, zlib-compressed.
    Zlib,
}

/// One dimension of a declared shape.
pub type Dim = Option<usize>;

/// What a field holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf {
    /// A tensor (TFDS `Tensor`, `Scalar`, `ClassLabel` as int64); `shape` excludes the step axis,
    /// `None` marks a dimension of unknown size.
    Tensor {
        /// Element type.
        dtype: DType,
        /// Declared shape of one value.
        shape: Vec<Dim>,
        /// Storage layout.
        encoding: Encoding,
    },
    /// An encoded image (TFDS `Image`), decoded on demand.
    Image {
        /// Declared `[height, width, channels]` (any may be unknown).
        shape: Vec<Dim>,
        /// Pixel type (`uint8` for the RLDS datasets; `uint16` images are PNG).
        dtype: DType,
        /// `jpeg` or `png` as declared; `None` when the builder left it open (TFDS then writes PNG).
        format: Option<String>,
    },
    /// UTF-8 text (TFDS `Text`), stored as bytes.
    Text,
}

impl Leaf {
    /// Elements per value, when every dimension is known.
    pub fn elements(&self) -> Option<usize> {
        match self {
            Leaf::Tensor { shape, .. } => shape.iter().try_fold(1usize, |n, d| d.map(|d| n * d)),
            Leaf::Image { .. } | Leaf::Text => Some(1),
        }
    }

    /// A short description (`float32[7]`, `image[256, 256, 3] jpeg`, `text`).
    pub fn describe(&self) -> String {
        let dims = |shape: &[Dim]| {
            shape.iter().map(|d| d.map_or("?".to_string(), |d| d.to_string())).collect::<Vec<_>>().join(", ")
        };
        match self {
            Leaf::Tensor { dtype, shape, encoding } => {
                let enc = match encoding {
                    Encoding::None => "",
                    Encoding::Bytes => " (bytes)",
                    Encoding::Zlib => " (zlib)",
                };
                format!("{}[{}]{enc}", dtype.name(), dims(shape))
            }
            Leaf::Image { shape, format, .. } => {
                format!("image[{}] {}", dims(shape), format.as_deref().unwrap_or("png"))
            }
            Leaf::Text => "text".into(),
        }
    }
}

/// One leaf of the feature tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Path inside a step (`observation/image`) for step fields, inside the episode
    /// (`episode_metadata/file_path`) otherwise.
    pub path: String,
    /// The key in the serialised `tf.train.Example` (`steps/observation/image`).
    pub example_key: String,
    /// Whether the field has one value per step.
    pub per_step: bool,
    /// What it holds.
    pub leaf: Leaf,
}

/// A dataset's features, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// Fields by path; step fields and episode fields never share a path (the latter are outside
    /// `steps`).
    pub fields: BTreeMap<String, Field>,
    /// The name of the per-step dataset feature (`steps` in RLDS), if any.
    pub steps_key: Option<String>,
}

/// A `features.json` that cannot be understood, naming the file and the feature path.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path}: not JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A feature is malformed or of a kind this reader does not support.
    #[error("{path}: feature `{feature}`: {problem}")]
    Feature {
        /// The file.
        path: PathBuf,
        /// The feature's path in the tree (`/` for the root).
        feature: String,
        /// What is wrong.
        problem: String,
    },
}

impl Schema {
    /// Reads and flattens `features.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SchemaError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| SchemaError::Io { path: path.to_path_buf(), source })?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|source| SchemaError::Json { path: path.to_path_buf(), source })?;
        Self::from_json(&json, path)
    }

    /// Flattens an already parsed `features.json`; `path` names it in errors.
    pub fn from_json(json: &Value, path: &Path) -> Result<Self, SchemaError> {
        let mut flattener = Flattener { path, fields: BTreeMap::new(), steps_key: None };
        flattener.visit(json, "", false, &[])?;
        Ok(Schema { fields: flattener.fields, steps_key: flattener.steps_key })
    }

    /// The per-step fields, in path order.
    pub fn step_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.values().filter(|f| f.per_step)
    }

    /// The per-episode fields, in path order.
    pub fn episode_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.values().filter(|f| !f.per_step)
    }

    /// The field at `path`.
    pub fn field(&self, path: &str) -> Option<&Field> {
        self.fields.get(path)
    }
}

struct Flattener<'a> {
    path: &'a Path,
    fields: BTreeMap<String, Field>,
    steps_key: Option<String>,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") }
}

impl Flattener<'_> {
    fn fail<T>(&self, feature: &str, problem: impl Into<String>) -> Result<T, SchemaError> {
        Err(SchemaError::Feature {
            path: self.path.to_path_buf(),
            feature: if feature.is_empty() { "/".into() } else { feature.to_string() },
            problem: problem.into(),
        })
    }

    /// Visits one feature node. `key` is its example key; `outer` holds the dimensions that
    /// enclosing (non-step) `Sequence` features add in front of a leaf's shape.
    fn visit(&mut self, node: &Value, key: &str, per_step: bool, outer: &[Dim]) -> Result<(), SchemaError> {
        let class = node.get("pythonClassName").and_then(Value::as_str).unwrap_or("");
        let short = class.rsplit('.').next().unwrap_or(class);
        if let Some(dict) = node.get("featuresDict") {
            let Some(features) = dict.get("features").and_then(Value::as_object) else {
                return self.fail(key, "FeaturesDict without `features`");
            };
            for (name, child) in features {
                self.visit(child, &join(key, name), per_step, outer)?;
            }
            return Ok(());
        }
        if let Some(sequence) = node.get("sequence") {
            let Some(feature) = sequence.get("feature") else {
                return self.fail(key, "sequence without `feature`");
            };
            let length = sequence.get("length").map(|l| self.dim(l, key)).transpose()?.flatten();
            if short == "Dataset" && !per_step && outer.is_empty() {
                // The RLDS steps: one value per step for every leaf below.
                if let Some(existing) = &self.steps_key {
                    return self.fail(key, format!("a second step dataset (the first is `{existing}`)"));
                }
                self.steps_key = Some(key.to_string());
                return self.visit(feature, key, true, outer);
            }
            if short == "Dataset" {
                return self.fail(key, "a nested Dataset feature is not supported");
            }
            let mut dims = outer.to_vec();
            dims.push(length);
            return self.visit(feature, key, per_step, &dims);
        }
        let leaf = if let Some(tensor) = node.get("tensor") {
            let dtype = self.dtype(tensor, key)?;
            let encoding = match tensor.get("encoding").and_then(Value::as_str).unwrap_or("none") {
                "none" => Encoding::None,
                "bytes" => Encoding::Bytes,
                "zlib" => Encoding::Zlib,
                other => return self.fail(key, format!("unknown tensor encoding `{other}`")),
            };
            let mut shape = outer.to_vec();
            shape.extend(self.shape(tensor, key)?);
            Leaf::Tensor { dtype, shape, encoding }
        } else if let Some(image) = node.get("image") {
            if !outer.is_empty() {
                return self.fail(key, "a sequence of images is not supported");
            }
            let format = image.get("encodingFormat").and_then(Value::as_str).map(str::to_string);
            if let Some(f) = &format
                && f != "jpeg"
                && f != "png"
            {
                return self.fail(key, format!("unknown image encoding `{f}`"));
            }
            let dtype = if image.get("dtype").is_some() { self.dtype(image, key)? } else { DType::U8 };
            Leaf::Image { shape: self.shape(image, key)?, dtype, format }
        } else if node.get("text").is_some() || short == "Text" {
            if !outer.is_empty() {
                return self.fail(key, "a sequence of texts is not supported");
            }
            Leaf::Text
        } else if node.get("classLabel").is_some() || short == "ClassLabel" {
            Leaf::Tensor { dtype: DType::I64, shape: outer.to_vec(), encoding: Encoding::None }
        } else {
            return self.fail(key, format!("unsupported feature kind `{class}`"));
        };
        if per_step && leaf.elements().is_none() {
            // TFDS writes these as ragged `…/ragged_flat_values` + `…/ragged_row_lengths_*` pairs.
            return self.fail(
                key,
                format!("{}: a per-step field of unknown size is not supported", leaf.describe()),
            );
        }
        let steps = self.steps_key.as_deref().filter(|_| per_step);
        let path = match steps {
            Some(steps) if key == steps => String::new(),
            Some(steps) => key[steps.len() + 1..].to_string(),
            None => key.to_string(),
        };
        if path.is_empty() {
            return self.fail(key, "the step dataset holds a bare leaf, not a FeaturesDict");
        }
        self.fields.insert(path.clone(), Field { path, example_key: key.to_string(), per_step, leaf });
        Ok(())
    }

    fn dtype(&self, node: &Value, key: &str) -> Result<DType, SchemaError> {
        let name = node.get("dtype").and_then(Value::as_str).unwrap_or("");
        DType::parse(name).map_or_else(|| self.fail(key, format!("unknown dtype `{name}`")), Ok)
    }

    fn dim(&self, value: &Value, key: &str) -> Result<Dim, SchemaError> {
        // Protobuf JSON writes int64 as strings; accept numbers too.
        let n = match value {
            Value::String(s) => s.parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        match n {
            Some(-1) => Ok(None),
            Some(n) if n >= 0 => Ok(Some(n as usize)),
            _ => self.fail(key, format!("bad dimension {value}")),
        }
    }

    fn shape(&self, node: &Value, key: &str) -> Result<Vec<Dim>, SchemaError> {
        match node.get("shape").and_then(|s| s.get("dimensions")) {
            None => Ok(Vec::new()),
            Some(Value::Array(dims)) => dims.iter().map(|d| self.dim(d, key)).collect(),
            Some(other) => self.fail(key, format!("shape dimensions are not a list: {other}")),
        }
    }
}
