//! Reading checkpoint files into lazily loaded tensors: safetensors (one file, or a Hugging Face
//! sharded folder with `model.safetensors.index.json`) and PyTorch pickles (`model.pt` as MoGe
//! saves it, weights under `"model"`). Headers and indexes are validated up front, so a
//! truncated or inconsistent file is reported by name before any model is touched; tensor bytes
//! are read only when a tensor is loaded.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use burn::module::ParamId;
use burn::tensor::{DType, TensorData};
use burn_store::pytorch::PytorchReader;
use burn_store::pytorch::reader::PickleValue;
use burn_store::{TensorSnapshot, TensorSnapshotError};
use serde_json::Value;

use crate::error::ModelError;

/// Element types a checkpoint tensor may have; every one is converted to f32 on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// Single.
    F32,
    /// Double.
    F64,
    /// 64-bit integers (token ids in fixtures), read as f32: exact below 2²⁴.
    I64,
}

impl Dtype {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "F32" => Self::F32,
            "F64" => Self::F64,
            "I64" => Self::I64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::F16 | Self::BF16 => 2,
            Self::F32 => 4,
            Self::F64 | Self::I64 => 8,
        }
    }

    fn from_burn(dtype: DType) -> Option<Self> {
        Some(match dtype {
            DType::F16 => Self::F16,
            DType::BF16 => Self::BF16,
            DType::F32 => Self::F32,
            DType::F64 => Self::F64,
            DType::I64 => Self::I64,
            _ => return None,
        })
    }
}

/// Where a tensor's bytes live.
#[derive(Clone)]
enum Source {
    Safetensors { file: Arc<PathBuf>, offset: u64, bytes: usize },
    Pytorch { file: Arc<PathBuf>, snapshot: TensorSnapshot },
}

/// One tensor of a checkpoint.
#[derive(Clone)]
pub struct TensorEntry {
    /// Shape as stored (PyTorch conventions: `Linear` weights are `[out, in]`).
    pub shape: Vec<usize>,
    /// Stored element type.
    pub dtype: Dtype,
    source: Source,
}

impl std::fmt::Debug for TensorEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {:?} in {}", self.dtype, self.shape, self.file().display())
    }
}

impl TensorEntry {
    /// The file holding the tensor.
    pub fn file(&self) -> &Path {
        match &self.source {
            Source::Safetensors { file, .. } | Source::Pytorch { file, .. } => file,
        }
    }

    /// Reads the tensor as f32.
    pub fn read(&self) -> Result<TensorData, ModelError> {
        let data = match &self.source {
            Source::Safetensors { file, offset, bytes } => {
                let io = |source| ModelError::Io { path: file.to_path_buf(), source };
                let mut f = File::open(file.as_ref()).map_err(io)?;
                f.seek(SeekFrom::Start(*offset)).map_err(io)?;
                let mut raw = vec![0u8; *bytes];
                f.read_exact(&mut raw).map_err(io)?;
                decode_le(&raw, self.dtype)
            }
            Source::Pytorch { file, snapshot } => {
                let data = snapshot.to_data().map_err(|e| ModelError::Format {
                    path: file.to_path_buf(),
                    message: format!("reading tensor {}: {e:?}", snapshot.full_path()),
                })?;
                data.convert::<f32>().to_vec::<f32>().map_err(|e| ModelError::Format {
                    path: file.to_path_buf(),
                    message: format!("tensor {}: {e:?}", snapshot.full_path()),
                })?
            }
        };
        Ok(TensorData::new(data, self.shape.clone()))
    }

    /// A lazy burn-store snapshot of this tensor under the module path `name`.
    pub fn snapshot(&self, name: &str) -> TensorSnapshot {
        let entry = self.clone();
        let path: Vec<String> = name.split('.').map(str::to_string).collect();
        let read = move || entry.read().map_err(|e| TensorSnapshotError::IoError(e.to_string()));
        TensorSnapshot::from_closure(
            Rc::new(read),
            DType::F32,
            self.shape.clone().into(),
            path,
            Vec::new(),
            ParamId::new(),
        )
    }
}

fn decode_le(raw: &[u8], dtype: Dtype) -> Vec<f32> {
    match dtype {
        Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32)
            .collect(),
        Dtype::I64 => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32)
            .collect(),
        Dtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => {
            raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
    }
}

/// The on-disk format of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One `.safetensors` file.
    Safetensors,
    /// A folder of shards with `model.safetensors.index.json`.
    ShardedSafetensors,
    /// A PyTorch pickle (`torch.save`).
    Pytorch,
}

/// A checkpoint opened for reading: every tensor's name, shape and dtype, plus the model
/// configuration stored with it (`config.json` beside safetensors, `model_config` inside a MoGe
/// `model.pt`), if any.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The file or folder opened.
    pub path: PathBuf,
    /// How it is stored.
    pub format: Format,
    /// Tensors by their stored name.
    pub tensors: BTreeMap<String, TensorEntry>,
    /// The stored configuration.
    pub config: Option<Value>,
}

impl Checkpoint {
    /// Opens a `.safetensors` file, a `.pt`/`.pth`/`.bin` pickle, or a folder holding either a
    /// sharded index, one `model.safetensors`, or one `model.pt`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let io = |source| ModelError::Io { path: path.to_path_buf(), source };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            let config = read_json_if_exists(&path.join("config.json"))?;
            let index = path.join("model.safetensors.index.json");
            if index.exists() {
                return Ok(Self {
                    path: path.to_path_buf(),
                    format: Format::ShardedSafetensors,
                    tensors: read_sharded(&index)?,
                    config,
                });
            }
            for name in ["model.safetensors", "model.pt"] {
                if path.join(name).exists() {
                    let mut checkpoint = Self::open(path.join(name))?;
                    checkpoint.config = checkpoint.config.or(config);
                    return Ok(checkpoint);
                }
            }
            return Err(ModelError::Format {
                path: path.to_path_buf(),
                message: "folder has no model.safetensors.index.json, model.safetensors or model.pt".into(),
            });
        }
        let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
        if is_safetensors {
            let config =
                path.parent().map(|p| read_json_if_exists(&p.join("config.json"))).transpose()?.flatten();
            let tensors = read_safetensors(path)?;
            return Ok(Self { path: path.to_path_buf(), format: Format::Safetensors, tensors, config });
        }
        read_pytorch(path)
    }

    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Total number of stored elements.
    pub fn num_elements(&self) -> usize {
        self.tensors.values().map(|t| t.shape.iter().product::<usize>()).sum()
    }
}

fn read_json_if_exists(path: &Path) -> Result<Option<Value>, ModelError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ModelError::Format { path: path.to_path_buf(), message: format!("invalid JSON: {e}") })
}

fn read_sharded(index: &Path) -> Result<BTreeMap<String, TensorEntry>, ModelError> {
    let folder = index.parent().unwrap_or(Path::new("."));
    let bad = |message: String| ModelError::Format { path: index.to_path_buf(), message };
    let value = read_json_if_exists(index)?.ok_or_else(|| bad("missing".into()))?;
    let map = value
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no \"weight_map\" object".into()))?;
    let mut shards: BTreeMap<&str, BTreeMap<String, TensorEntry>> = BTreeMap::new();
    let mut tensors = BTreeMap::new();
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| bad(format!("weight_map[{name:?}] is not a file name")))?;
        if !shards.contains_key(file) {
            shards.insert(file, read_safetensors(&folder.join(file))?);
        }
        let entry = shards[file].get(name).ok_or_else(|| {
            bad(format!("weight_map puts tensor {name} in {file}, which does not contain it"))
        })?;
        tensors.insert(name.clone(), entry.clone());
    }
    for (file, contents) in &shards {
        if let Some(stray) = contents.keys().find(|k| !map.contains_key(*k)) {
            return Err(bad(format!("{file} holds tensor {stray}, which the weight_map does not list")));
        }
    }
    Ok(tensors)
}

/// Parses a safetensors header (`u64` little-endian length, then JSON) and checks every tensor's
/// byte range against the file length.
fn read_safetensors(path: &Path) -> Result<BTreeMap<String, TensorEntry>, ModelError> {
    let io = |source| ModelError::Io { path: path.to_path_buf(), source };
    let bad = |message: String| ModelError::Format { path: path.to_path_buf(), message };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| bad(format!("truncated: {file_len} bytes, no safetensors header")))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > 100_000_000 || 8 + header_len > file_len {
        return Err(bad(format!(
            "truncated or not safetensors: header of {header_len} bytes in a {file_len}-byte file"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("invalid safetensors header: {e}")))?;
    let data_start = 8 + header_len;
    let file = Arc::new(path.to_path_buf());
    let mut tensors = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| info.get(key).ok_or_else(|| bad(format!("tensor {name}: no \"{key}\"")));
        let dtype_name = field("dtype")?.as_str().unwrap_or_default();
        let dtype = Dtype::parse(dtype_name)
            .ok_or_else(|| bad(format!("tensor {name}: dtype {dtype_name} is not a float or int64 type")))?;
        let shape: Vec<usize> = serde_json::from_value(field("shape")?.clone())
            .map_err(|e| bad(format!("tensor {name}: bad shape: {e}")))?;
        let [begin, end]: [u64; 2] = serde_json::from_value(field("data_offsets")?.clone())
            .map_err(|e| bad(format!("tensor {name}: bad data_offsets: {e}")))?;
        let bytes = shape.iter().product::<usize>() * dtype.size();
        if end < begin || (end - begin) as usize != bytes {
            return Err(bad(format!(
                "tensor {name}: {} bytes for shape {shape:?} {dtype_name}",
                end.saturating_sub(begin)
            )));
        }
        if data_start + end > file_len {
            return Err(bad(format!(
                "truncated: tensor {name} ends at byte {} but the file has {file_len}",
                data_start + end
            )));
        }
        let source = Source::Safetensors { file: file.clone(), offset: data_start + begin, bytes };
        tensors.insert(name, TensorEntry { shape, dtype, source });
    }
    Ok(tensors)
}

fn read_pytorch(path: &Path) -> Result<Checkpoint, ModelError> {
    let bad =
        |e: &dyn std::fmt::Display| ModelError::Format { path: path.to_path_buf(), message: e.to_string() };
    // MoGe (and most training code) nests the weights under "model"; plain state dicts do not.
    let (reader, config) = match PytorchReader::with_top_level_key(path, "model") {
        Ok(reader) => {
            (reader, PytorchReader::read_pickle_data(path, Some("model_config")).ok().map(pickle_to_json))
        }
        Err(_) => (PytorchReader::new(path).map_err(|e| bad(&e))?, None),
    };
    let file = Arc::new(path.to_path_buf());
    let mut tensors = BTreeMap::new();
    for (name, snapshot) in reader.into_tensors() {
        let dtype = Dtype::from_burn(snapshot.dtype).ok_or_else(|| {
            bad(&format!("tensor {name}: dtype {:?} is not a float or int64 type", snapshot.dtype))
        })?;
        let shape = snapshot.shape.to_vec();
        tensors.insert(
            name,
            TensorEntry { shape, dtype, source: Source::Pytorch { file: file.clone(), snapshot } },
        );
    }
    Ok(Checkpoint { path: path.to_path_buf(), format: Format::Pytorch, tensors, config })
}

/// A pickled configuration as JSON (bytes become arrays of numbers).
fn pickle_to_json(value: PickleValue) -> Value {
    match value {
        PickleValue::None => Value::Null,
        PickleValue::Bool(b) => Value::Bool(b),
        PickleValue::Int(i) => Value::from(i),
        PickleValue::Float(f) => Value::from(f),
        PickleValue::String(s) => Value::String(s),
        PickleValue::List(items) => Value::Array(items.into_iter().map(pickle_to_json).collect()),
        PickleValue::Dict(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, pickle_to_json(v))).collect())
        }
        PickleValue::Bytes(bytes) => Value::from(bytes),
    }
}
