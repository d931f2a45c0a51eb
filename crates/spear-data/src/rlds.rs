//! RLDS datasets as TensorFlow Datasets writes them: a folder `NAME/VERSION/` with
//! `dataset_info.json` (name, version, splits and their shard lengths), `features.json` (the
//! schema, see [`crate::schema`]) and TFRecord shards, one `tf.train.Example` per episode.
//!
//! [`RldsDataset::open`] reads the two JSON files and locates every shard; episodes are then
//! streamed shard by shard ([`RldsDataset::episodes`], or [`RldsDataset::shard_episodes`] for one
//! shard, which is what a parallel loader wants). An [`Episode`] holds each field as a typed
//! [`Column`] with one row per step; images stay encoded until [`Episode::image`] decodes one.
//! Values are what TFDS itself returns: float64 fields stored as `float_list` are float32 values
//! widened, integers are range-checked against their declared dtype, and every count is checked
//! against the declared shapes, so a damaged or mismatched file fails with the file, the record, its
//! byte offset and the field, never with a silently wrong array.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::example::{Example, Feature, encode_example, parse_example, parse_example_with};
use crate::images::{self, Image};
use crate::schema::{DType, Encoding, Field, Leaf, Schema, SchemaError};
use crate::tfrecord::{OnCorrupt, TfRecordError, TfRecordReader, TfRecordWriter};

/// Anything that can go wrong opening or reading an RLDS dataset.
#[derive(Debug, thiserror::Error)]
pub enum RldsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `dataset_info.json` is missing something or malformed.
    #[error("{path}: {problem}")]
    Info {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// `features.json` cannot be understood.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// TFRecord framing or checksum damage.
    #[error(transparent)]
    Record(#[from] TfRecordError),
    /// An episode's example does not fit the schema.
    #[error("{file}: episode record {record} (byte {offset}): `{key}`: {problem}")]
    Episode {
        /// The shard.
        file: PathBuf,
        /// Index of the record in the shard.
        record: u64,
        /// Byte offset of the record in the shard.
        offset: u64,
        /// The example key or field path.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// One shard file of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The file.
    pub path: PathBuf,
    /// Episodes in it, as `dataset_info.json` records.
    pub episodes: u64,
}

/// A split (`train`, `val`, …) and its shards, in TFDS's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The split's name.
    pub name: String,
    /// Its shards.
    pub shards: Vec<Shard>,
}

impl Split {
    /// Episodes in the split.
    pub fn episodes(&self) -> u64 {
        self.shards.iter().map(|s| s.episodes).sum()
    }
}

/// An opened dataset folder.
#[derive(Debug, Clone)]
pub struct RldsDataset {
    /// The folder holding `dataset_info.json`.
    pub dir: PathBuf,
    /// The dataset's name (`bridge_dataset`, `droid`, …).
    pub name: String,
    /// Its version (`1.0.0`).
    pub version: String,
    /// Its features.
    pub schema: Schema,
    /// Its splits.
    pub splits: Vec<Split>,
}

fn info_error(path: &Path, problem: impl Into<String>) -> RldsError {
    RldsError::Info { path: path.to_path_buf(), problem: problem.into() }
}

/// Reads a protobuf-JSON int64, written as a string or a number.
fn json_u64(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Expands TFDS's shard file template (`{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}` by default).
fn shard_name(
    template: &str,
    dataset: &str,
    split: &str,
    format: &str,
    index: usize,
    count: usize,
) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        out.push_str(&match &rest[open + 1..close] {
            "DATASET" => dataset.to_string(),
            "SPLIT" => split.to_string(),
            "FILEFORMAT" => format.to_string(),
            "SHARD_INDEX" => format!("{index:05}"),
            "NUM_SHARDS" => format!("{count:05}"),
            "SHARD_X_OF_Y" => format!("{index:05}-of-{count:05}"),
            _ => return None,
        });
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

impl RldsDataset {
    /// Opens the dataset in `dir` (the `NAME/VERSION` folder): reads `dataset_info.json` and
    /// `features.json` and checks that every shard file the splits list exists.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, RldsError> {
        let dir = dir.as_ref().to_path_buf();
        let info_path = dir.join("dataset_info.json");
        let text = std::fs::read_to_string(&info_path)
            .map_err(|source| RldsError::Io { path: info_path.clone(), source })?;
        let info: Value =
            serde_json::from_str(&text).map_err(|e| info_error(&info_path, format!("not JSON: {e}")))?;
        let name = info
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| info_error(&info_path, "no `name`"))?
            .to_string();
        let version = info.get("version").and_then(Value::as_str).unwrap_or("").to_string();
        let format = info.get("fileFormat").and_then(Value::as_str).unwrap_or("tfrecord");
        if format != "tfrecord" {
            return Err(info_error(
                &info_path,
                format!("file format `{format}` (only tfrecord is supported)"),
            ));
        }
        let schema = Schema::from_file(dir.join("features.json"))?;
        let mut splits = Vec::new();
        for split in info.get("splits").and_then(Value::as_array).into_iter().flatten() {
            let split_name = split
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| info_error(&info_path, "a split without `name`"))?;
            let lengths = split.get("shardLengths").and_then(Value::as_array).ok_or_else(|| {
                info_error(&info_path, format!("split `{split_name}` has no `shardLengths`"))
            })?;
            let lengths =
                lengths.iter().map(json_u64).collect::<Option<Vec<_>>>().ok_or_else(|| {
                    info_error(&info_path, format!("split `{split_name}`: bad `shardLengths`"))
                })?;
            let template = split
                .get("filepathTemplate")
                .and_then(Value::as_str)
                .unwrap_or("{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}");
            let mut shards = Vec::with_capacity(lengths.len());
            for (index, &episodes) in lengths.iter().enumerate() {
                let file = shard_name(template, &name, split_name, format, index, lengths.len()).ok_or_else(
                    || {
                        info_error(
                            &info_path,
                            format!("split `{split_name}`: unknown placeholder in `{template}`"),
                        )
                    },
                )?;
                let path = dir.join(file);
                if !path.is_file() {
                    return Err(info_error(
                        &info_path,
                        format!(
                            "split `{split_name}` lists shard {} of {}, but {} does not exist",
                            index + 1,
                            lengths.len(),
                            path.display()
                        ),
                    ));
                }
                shards.push(Shard { path, episodes });
            }
            splits.push(Split { name: split_name.to_string(), shards });
        }
        if splits.is_empty() {
            return Err(info_error(&info_path, "no splits"));
        }
        if schema.steps_key.is_none() {
            return Err(info_error(&info_path, "features.json has no step dataset: not an RLDS dataset"));
        }
        Ok(Self { dir, name, version, schema, splits })
    }

    /// The split called `name`.
    pub fn split(&self, name: &str) -> Result<&Split, RldsError> {
        self.splits.iter().find(|s| s.name == name).ok_or_else(|| {
            let known: Vec<_> = self.splits.iter().map(|s| s.name.as_str()).collect();
            info_error(&self.dir.join("dataset_info.json"), format!("no split `{name}` (it has {known:?})"))
        })
    }

    /// Streams the episodes of a split, shard after shard, in TFDS's unshuffled order.
    pub fn episodes(
        &self,
        split: &str,
        on_corrupt: OnCorrupt,
    ) -> Result<impl Iterator<Item = Result<Episode, RldsError>> + '_, RldsError> {
        let split = self.split(split)?;
        Ok(split.shards.iter().flat_map(move |shard| {
            let episodes: Box<dyn Iterator<Item = Result<Episode, RldsError>>> =
                match self.shard_episodes(shard, on_corrupt) {
                    Ok(it) => Box::new(it),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
            episodes
        }))
    }

    /// Streams the episodes of one shard.
    pub fn shard_episodes(
        &self,
        shard: &Shard,
        on_corrupt: OnCorrupt,
    ) -> Result<ShardEpisodes<'_>, RldsError> {
        let records = TfRecordReader::open(&shard.path, on_corrupt)?;
        Ok(ShardEpisodes { dataset: self, records, count: 0, expected: shard.episodes, done: false })
    }

    /// Decodes one serialised episode; `source` says where it came from, for errors.
    pub fn decode(&self, record: &[u8], source: EpisodeSource) -> Result<Episode, RldsError> {
        let example = parse_example(record).map_err(|e| source.error(e.context, e.problem))?;
        self.decode_example(&example, source)
    }

    /// Decodes only the fields at `paths` (step or episode paths; at least one step field), the
    /// others stepped over without being copied: what a loader that reads a few fields wants.
    pub fn decode_only(
        &self,
        record: &[u8],
        source: EpisodeSource,
        paths: &[&str],
    ) -> Result<Episode, RldsError> {
        let keys: Vec<&str> = paths
            .iter()
            .map(|p| {
                self.schema
                    .field(p)
                    .map(|f| f.example_key.as_str())
                    .ok_or_else(|| source.error(*p, "no such field in the schema"))
            })
            .collect::<Result<_, _>>()?;
        let example = parse_example_with(record, |name| keys.contains(&name))
            .map_err(|e| source.error(e.context, e.problem))?;
        self.decode_fields(&example, source, |f| paths.contains(&f.path.as_str()))
    }

    /// Turns a parsed example into an [`Episode`].
    pub fn decode_example(&self, example: &Example, source: EpisodeSource) -> Result<Episode, RldsError> {
        self.decode_fields(example, source, |_| true)
    }

    fn decode_fields(
        &self,
        example: &Example,
        source: EpisodeSource,
        keep: impl Fn(&Field) -> bool,
    ) -> Result<Episode, RldsError> {
        let mut len: Option<(usize, &str)> = None;
        let mut steps = BTreeMap::new();
        for field in self.schema.step_fields().filter(|f| keep(f)) {
            let feature =
                example.get(&field.example_key).ok_or_else(|| source.error(&field.example_key, "missing"))?;
            let column =
                Column::decode(field, feature, None).map_err(|p| source.error(&field.example_key, p))?;
            match len {
                None => len = Some((column.rows, &field.example_key)),
                Some((n, first)) if n != column.rows => {
                    return Err(source
                        .error(&field.example_key, format!("{} steps, but `{first}` has {n}", column.rows)));
                }
                Some(_) => {}
            }
            steps.insert(field.path.clone(), column);
        }
        let mut metadata = BTreeMap::new();
        for field in self.schema.episode_fields().filter(|f| keep(f)) {
            let feature =
                example.get(&field.example_key).ok_or_else(|| source.error(&field.example_key, "missing"))?;
            let column =
                Column::decode(field, feature, Some(1)).map_err(|p| source.error(&field.example_key, p))?;
            metadata.insert(field.path.clone(), column);
        }
        Ok(Episode { source, len: len.map_or(0, |(n, _)| n), steps, metadata })
    }
}

/// The episodes of one shard, streamed.
pub struct ShardEpisodes<'a> {
    dataset: &'a RldsDataset,
    records: TfRecordReader<std::io::BufReader<std::fs::File>>,
    count: u64,
    expected: u64,
    done: bool,
}

impl ShardEpisodes<'_> {
    /// Records skipped for a bad data checksum so far (with [`OnCorrupt::Skip`]).
    pub fn skipped(&self) -> &[TfRecordError] {
        self.records.skipped()
    }
}

impl Iterator for ShardEpisodes<'_> {
    type Item = Result<Episode, RldsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.records.next() {
            Some(Ok(record)) => {
                let (index, offset) = self.records.last_record();
                let source = EpisodeSource { file: self.records.path().to_path_buf(), record: index, offset };
                self.count += 1;
                self.dataset.decode(&record, source)
            }
            Some(Err(e)) => Err(e.into()),
            None => {
                self.done = true;
                let seen = self.count + self.records.skipped().len() as u64;
                if seen != self.expected {
                    return Some(Err(info_error(
                        self.records.path(),
                        format!("holds {seen} records, but dataset_info.json says {}", self.expected),
                    )));
                }
                return None;
            }
        };
        // Framing damage ends the shard (nothing after it can be trusted); an episode that does
        // not fit the schema is reported and the next one read.
        if matches!(item, Err(RldsError::Record(_)) | Err(RldsError::Io { .. })) {
            self.done = true;
        }
        Some(item)
    }
}

/// Where an episode was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpisodeSource {
    /// The shard.
    pub file: PathBuf,
    /// Index of the record in the shard.
    pub record: u64,
    /// Byte offset of the record in the shard.
    pub offset: u64,
}

impl EpisodeSource {
    /// An error about `key` of this episode.
    pub fn error(&self, key: impl Into<String>, problem: impl Into<String>) -> RldsError {
        RldsError::Episode {
            file: self.file.clone(),
            record: self.record,
            offset: self.offset,
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// A column's values, row-major, one row per step (or one row for an episode field).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// `bool`.
    Bool(Vec<bool>),
    /// Every integer dtype, range-checked against the declared one.
    Int(Vec<i64>),
    /// `float16`, `bfloat16` and `float32`.
    F32(Vec<f32>),
    /// `float64`.
    F64(Vec<f64>),
    /// Strings, text and encoded images: one byte string per row.
    Bytes(Vec<Vec<u8>>),
}

/// One field of an episode: `rows` values of `shape` each.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The field's declared type.
    pub leaf: Leaf,
    /// Shape of one row (resolved where the schema leaves a dimension open; `[]` for bytes).
    pub shape: Vec<usize>,
    /// Number of rows.
    pub rows: usize,
    /// The values.
    pub values: Values,
}

fn raw_elements(dtype: DType, bytes: &[u8]) -> Result<Values, String> {
    let size = dtype.size().ok_or("a string tensor cannot be raw-encoded")?;
    if !bytes.len().is_multiple_of(size) {
        return Err(format!("{} raw bytes are not a whole number of {}", bytes.len(), dtype.name()));
    }
    let chunks = bytes.chunks_exact(size);
    Ok(match dtype {
        DType::Bool => Values::Bool(bytes.iter().map(|&b| b != 0).collect()),
        DType::I8 => Values::Int(bytes.iter().map(|&b| i64::from(b as i8)).collect()),
        DType::U8 => Values::Int(bytes.iter().map(|&b| i64::from(b)).collect()),
        DType::I16 => Values::Int(chunks.map(|c| i64::from(i16::from_le_bytes([c[0], c[1]]))).collect()),
        DType::U16 => Values::Int(chunks.map(|c| i64::from(u16::from_le_bytes([c[0], c[1]]))).collect()),
        DType::I32 => {
            Values::Int(chunks.map(|c| i64::from(i32::from_le_bytes(c.try_into().expect("4")))).collect())
        }
        DType::U32 => {
            Values::Int(chunks.map(|c| i64::from(u32::from_le_bytes(c.try_into().expect("4")))).collect())
        }
        DType::I64 => Values::Int(chunks.map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect()),
        DType::U64 => Values::Int(
            chunks
                .map(|c| i64::try_from(u64::from_le_bytes(c.try_into().expect("8"))))
                .collect::<Result<_, _>>()
                .map_err(|_| "a uint64 value above 2^63")?,
        ),
        DType::F16 => Values::F32(chunks.map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        DType::BF16 => {
            Values::F32(chunks.map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect())
        }
        DType::F32 => Values::F32(chunks.map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect()),
        DType::F64 => Values::F64(chunks.map(|c| f64::from_le_bytes(c.try_into().expect("8"))).collect()),
        DType::String => unreachable!("size() is None for strings"),
    })
}

fn extend(into: &mut Option<Values>, more: Values) {
    match (into.as_mut(), more) {
        (None, more) => *into = Some(more),
        (Some(Values::Bool(a)), Values::Bool(b)) => a.extend(b),
        (Some(Values::Int(a)), Values::Int(b)) => a.extend(b),
        (Some(Values::F32(a)), Values::F32(b)) => a.extend(b),
        (Some(Values::F64(a)), Values::F64(b)) => a.extend(b),
        _ => unreachable!("one dtype per column"),
    }
}

fn inflate(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out).map_err(|e| format!("zlib: {e}"))?;
    Ok(out)
}

impl Column {
    /// Decodes one feature. `rows` is `Some(1)` for episode fields; for step fields it is derived
    /// from the value count.
    fn decode(field: &Field, feature: &Feature, rows: Option<usize>) -> Result<Column, String> {
        let kind_error =
            |want: &str| format!("{} stored as {}, expected {want}", field.leaf.describe(), feature.kind());
        let bytes_of = |feature: &Feature| match feature {
            Feature::Bytes(v) => Ok(v.clone()),
            Feature::Empty => Ok(Vec::new()),
            _ => Err(kind_error("bytes_list")),
        };
        match &field.leaf {
            Leaf::Image { .. }
            | Leaf::Text
            | Leaf::Tensor { dtype: DType::String, encoding: Encoding::None, .. } => {
                let values = bytes_of(feature)?;
                let per_row = field.leaf.elements().unwrap_or(1).max(1);
                if values.len() % per_row != 0 {
                    return Err(format!(
                        "{} strings are not a whole number of rows of {per_row}",
                        values.len()
                    ));
                }
                let n = values.len() / per_row;
                check_rows(rows, n)?;
                let shape = match &field.leaf {
                    Leaf::Tensor { shape, .. } => shape.iter().map(|d| d.unwrap_or(0)).collect(),
                    _ => Vec::new(),
                };
                Ok(Column { leaf: field.leaf.clone(), shape, rows: n, values: Values::Bytes(values) })
            }
            Leaf::Tensor { dtype, shape, encoding: Encoding::Bytes | Encoding::Zlib } => {
                let zlib = matches!(&field.leaf, Leaf::Tensor { encoding: Encoding::Zlib, .. });
                let blobs = bytes_of(feature)?;
                check_rows(rows, blobs.len())?;
                let mut values = None;
                let mut row_shape = None;
                for blob in &blobs {
                    let raw = if zlib { inflate(blob)? } else { blob.clone() };
                    let decoded = raw_elements(*dtype, &raw)?;
                    let count = values_len(&decoded);
                    let resolved = resolve(shape, count)?;
                    if row_shape.as_ref().is_some_and(|s| s != &resolved) {
                        return Err("rows of different shapes".into());
                    }
                    row_shape = Some(resolved);
                    extend(&mut values, decoded);
                }
                let shape = row_shape.unwrap_or_else(|| shape.iter().map(|d| d.unwrap_or(0)).collect());
                let values = values.unwrap_or_else(|| empty(*dtype));
                Ok(Column { leaf: field.leaf.clone(), shape, rows: blobs.len(), values })
            }
            Leaf::Tensor { dtype, shape, encoding: Encoding::None } => {
                let count = feature.len();
                let (n, shape) = match rows {
                    Some(n) => (n, resolve(shape, count)?),
                    None => {
                        let per = field.leaf.elements().expect("step tensors have known sizes");
                        if per == 0 {
                            return Err("a per-step field of zero elements has no step count".into());
                        }
                        if !count.is_multiple_of(per) {
                            return Err(format!("{count} values are not a whole number of steps of {per}"));
                        }
                        (count / per, shape.iter().map(|d| d.expect("known")).collect())
                    }
                };
                let values = match (dtype, feature) {
                    (_, Feature::Empty) => empty(*dtype),
                    (d, Feature::Float(v)) if d.is_float() => match d {
                        DType::F64 => Values::F64(v.iter().map(|&x| f64::from(x)).collect()),
                        _ => Values::F32(v.clone()),
                    },
                    (DType::Bool, Feature::Int64(v)) => Values::Bool(v.iter().map(|&x| x != 0).collect()),
                    (d, Feature::Int64(v)) if d.int_range().is_some() => {
                        let (lo, hi) = d.int_range().expect("integer");
                        if let Some(bad) = v.iter().find(|&&x| i128::from(x) < lo || i128::from(x) > hi) {
                            return Err(format!("value {bad} out of range for {}", d.name()));
                        }
                        Values::Int(v.clone())
                    }
                    _ => {
                        let want = if dtype.is_float() { "float_list" } else { "int64_list" };
                        return Err(kind_error(want));
                    }
                };
                Ok(Column { leaf: field.leaf.clone(), shape, rows: n, values })
            }
        }
    }

    /// Elements in one row.
    pub fn row_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Row `i` as f64 (any numeric column; bools as 0/1).
    pub fn row_f64(&self, i: usize) -> Option<Vec<f64>> {
        let n = self.row_len();
        let range = i * n..(i + 1) * n;
        if i >= self.rows {
            return None;
        }
        Some(match &self.values {
            Values::Bool(v) => v[range].iter().map(|&b| f64::from(u8::from(b))).collect(),
            Values::Int(v) => v[range].iter().map(|&x| x as f64).collect(),
            Values::F32(v) => v[range].iter().map(|&x| f64::from(x)).collect(),
            Values::F64(v) => v[range].to_vec(),
            Values::Bytes(_) => return None,
        })
    }

    /// Row `i`'s bytes (strings, text, encoded images).
    pub fn bytes(&self, i: usize) -> Option<&[u8]> {
        match &self.values {
            Values::Bytes(v) => v.get(i).map(Vec::as_slice),
            _ => None,
        }
    }
}

fn values_len(values: &Values) -> usize {
    match values {
        Values::Bool(v) => v.len(),
        Values::Int(v) => v.len(),
        Values::F32(v) => v.len(),
        Values::F64(v) => v.len(),
        Values::Bytes(v) => v.len(),
    }
}

fn empty(dtype: DType) -> Values {
    match dtype {
        DType::Bool => Values::Bool(Vec::new()),
        DType::F64 => Values::F64(Vec::new()),
        d if d.is_float() => Values::F32(Vec::new()),
        DType::String => Values::Bytes(Vec::new()),
        _ => Values::Int(Vec::new()),
    }
}

fn check_rows(expected: Option<usize>, found: usize) -> Result<(), String> {
    match expected {
        Some(n) if n != found => Err(format!("{found} values, expected {n}")),
        _ => Ok(()),
    }
}

/// Fills one unknown dimension of `shape` from the element count, and checks the count.
fn resolve(shape: &[Option<usize>], count: usize) -> Result<Vec<usize>, String> {
    let known: usize = shape.iter().flatten().product();
    let unknown = shape.iter().filter(|d| d.is_none()).count();
    let describe =
        || shape.iter().map(|d| d.map_or("?".into(), |d| d.to_string())).collect::<Vec<_>>().join(", ");
    match unknown {
        0 if known == count => Ok(shape.iter().map(|d| d.expect("known")).collect()),
        1 if known > 0 && count.is_multiple_of(known) => {
            Ok(shape.iter().map(|d| d.unwrap_or(count / known)).collect())
        }
        1 if known == 0 && count == 0 => Ok(shape.iter().map(|d| d.unwrap_or(0)).collect()),
        _ => Err(format!("{count} values do not fit the declared shape [{}]", describe())),
    }
}

/// One episode: its step fields (one row per step) and its episode fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// Where it was read from.
    pub source: EpisodeSource,
    /// Number of steps.
    pub len: usize,
    /// Step fields by path inside a step (`observation/state`).
    pub steps: BTreeMap<String, Column>,
    /// Episode fields by path (`episode_metadata/file_path`).
    pub metadata: BTreeMap<String, Column>,
}

impl Episode {
    /// The step field at `path`, or an error naming it and this episode.
    pub fn column(&self, path: &str) -> Result<&Column, RldsError> {
        self.steps.get(path).ok_or_else(|| self.source.error(path, "no such step field in this dataset"))
    }

    /// Decodes the image of field `path` at `step` (JPEG or PNG as stored; grey and RGBA kept as
    /// their channel count) and checks it against the declared shape.
    pub fn image(&self, path: &str, step: usize) -> Result<Image, RldsError> {
        let column = self.column(path)?;
        let Leaf::Image { shape, .. } = &column.leaf else {
            return Err(self.source.error(path, format!("{} is not an image", column.leaf.describe())));
        };
        let bytes = column
            .bytes(step)
            .ok_or_else(|| self.source.error(path, format!("step {step} of {}", self.len)))?;
        let image =
            images::decode(bytes).map_err(|p| self.source.error(path, format!("step {step}: {p}")))?;
        let found = [image.height, image.width, image.channels];
        if shape.iter().zip(found).any(|(d, f)| d.is_some_and(|d| d != f)) {
            return Err(self.source.error(
                path,
                format!("step {step}: decoded {found:?}, but the schema declares {}", column.leaf.describe()),
            ));
        }
        Ok(image)
    }
}

/// A written shard: temporary path, episodes, bytes.
type ShardDone = (PathBuf, u64, u64);
/// The shard being filled: its writer, temporary path, episodes and bytes so far.
type ShardOpen = (TfRecordWriter<std::io::BufWriter<std::fs::File>>, PathBuf, u64, u64);

/// Writes an RLDS dataset in tensorflow-datasets' on-disk layout (`NAME/VERSION/` holding
/// `features.json`, `dataset_info.json` and `NAME-SPLIT.tfrecord-0000i-of-0000n` shards), one
/// `tf.train.Example` per episode, as tfds' builders write them. Every episode is checked against
/// the schema before it is written (the reader's own decoding), so what is written reads back.
pub struct RldsWriter {
    dataset: RldsDataset,
    description: String,
    episodes_per_shard: usize,
    /// Per split: finished shards and the one being filled.
    splits: BTreeMap<String, (Vec<ShardDone>, Option<ShardOpen>)>,
}

impl RldsWriter {
    /// Starts the dataset `name` at `version` in `dir` (created; it becomes `dir` itself, the
    /// `NAME/VERSION` folder) with the features of `features` (a `features.json` document).
    pub fn create(
        dir: impl AsRef<Path>,
        name: &str,
        version: &str,
        description: &str,
        features: &Value,
        episodes_per_shard: usize,
    ) -> Result<Self, RldsError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|source| RldsError::Io { path: dir.clone(), source })?;
        let features_path = dir.join("features.json");
        let schema = Schema::from_json(features, &features_path)?;
        let text = serde_json::to_string_pretty(features).expect("JSON serialises");
        std::fs::write(&features_path, text)
            .map_err(|source| RldsError::Io { path: features_path, source })?;
        Ok(Self {
            dataset: RldsDataset {
                dir,
                name: name.to_string(),
                version: version.to_string(),
                schema,
                splits: Vec::new(),
            },
            description: description.to_string(),
            episodes_per_shard: episodes_per_shard.max(1),
            splits: BTreeMap::new(),
        })
    }

    /// Appends one episode to `split`, after checking it against the schema.
    pub fn write_episode(&mut self, split: &str, episode: &Example) -> Result<(), RldsError> {
        let (done, current) = self.splits.entry(split.to_string()).or_default();
        if current.is_none() {
            let path = self.dataset.dir.join(format!(".{split}-{:05}.tmp", done.len()));
            *current = Some((TfRecordWriter::create(&path)?, path, 0, 0));
        }
        let (writer, path, episodes, bytes) = current.as_mut().expect("just set");
        let source = EpisodeSource { file: path.clone(), record: *episodes, offset: *bytes };
        self.dataset.decode_example(episode, source)?;
        let record = encode_example(episode);
        writer.write_record(&record)?;
        *episodes += 1;
        *bytes += record.len() as u64 + 16;
        if *episodes as usize >= self.episodes_per_shard {
            let (writer, path, episodes, bytes) = current.take().expect("filled");
            writer.finish()?;
            done.push((path, episodes, bytes));
        }
        Ok(())
    }

    /// Closes the shards under their final names and writes `dataset_info.json`; returns the
    /// dataset folder, ready for [`RldsDataset::open`] (and tfds' `builder_from_directory`).
    pub fn finish(mut self) -> Result<PathBuf, RldsError> {
        let dir = self.dataset.dir.clone();
        let name = self.dataset.name.clone();
        let template = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}";
        let mut splits = Vec::new();
        for (split, (mut done, current)) in std::mem::take(&mut self.splits) {
            if let Some((writer, path, episodes, bytes)) = current {
                writer.finish()?;
                done.push((path, episodes, bytes));
            }
            let count = done.len();
            for (index, (tmp, ..)) in done.iter().enumerate() {
                let file = shard_name(template, &name, &split, "tfrecord", index, count)
                    .expect("known placeholders");
                let path = dir.join(file);
                std::fs::rename(tmp, &path).map_err(|source| RldsError::Io { path, source })?;
            }
            splits.push(serde_json::json!({
                "name": split,
                "filepathTemplate": template,
                "numBytes": done.iter().map(|d| d.2).sum::<u64>().to_string(),
                "shardLengths": done.iter().map(|d| d.1.to_string()).collect::<Vec<_>>(),
            }));
        }
        let info = serde_json::json!({
            "name": name,
            "version": self.dataset.version,
            "description": self.description,
            "fileFormat": "tfrecord",
            "moduleName": format!("spear_data.{name}"),
            "releaseNotes": { self.dataset.version.clone(): self.description },
            "splits": splits,
        });
        let path = dir.join("dataset_info.json");
        std::fs::write(&path, serde_json::to_string_pretty(&info).expect("JSON serialises"))
            .map_err(|source| RldsError::Io { path, source })?;
        Ok(dir)
    }
}
