//! Training metrics as JSON lines (`RUN/metrics.jsonl`): one object per logged step, `step` plus
//! any numeric fields (`loss`, `lr`, `grad_norm`, `val_loss`, …), flushed line by line so a killed
//! run keeps what it logged. A resumed run first drops the lines after its checkpoint's step, so
//! the file reads as one uninterrupted run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Why metrics cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not a metrics object.
    #[error("{path}:{line}: {problem}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

/// The metrics file of a run folder.
pub fn metrics_path(run_dir: &Path) -> PathBuf {
    run_dir.join("metrics.jsonl")
}

/// Appends metric lines to a run's `metrics.jsonl`.
pub struct MetricsWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsWriter {
    /// Opens `RUN/metrics.jsonl` for appending, first dropping the lines of steps after
    /// `resume_step` (those of a killed run's lost tail) when resuming.
    pub fn open(run_dir: &Path, resume_step: Option<u64>) -> Result<Self, MetricsError> {
        let path = metrics_path(run_dir);
        let io = |source| MetricsError::Io { path: path.clone(), source };
        if let Some(step) = resume_step
            && path.exists()
        {
            let kept: Vec<Map<String, Value>> = read_metrics(&path)?
                .into_iter()
                .filter(|m| m.get("step").and_then(Value::as_u64).is_some_and(|s| s <= step))
                .collect();
            let text: String = kept.iter().map(|m| serde_json::to_string(m).expect("JSON") + "\n").collect();
            std::fs::write(&path, text).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        Ok(Self { file, path })
    }

    /// Writes one line: `step` and the given numbers.
    pub fn write(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), MetricsError> {
        let mut line = Map::new();
        line.insert("step".into(), Value::from(step));
        for (key, value) in values {
            // JSON has no NaN or infinity: such values are written as null.
            line.insert(
                (*key).into(),
                serde_json::Number::from_f64(*value).map_or(Value::Null, Value::Number),
            );
        }
        let text = serde_json::to_string(&line).expect("JSON") + "\n";
        self.file
            .write_all(text.as_bytes())
            .map_err(|source| MetricsError::Io { path: self.path.clone(), source })
    }
}

/// Every line of a metrics file.
pub fn read_metrics(path: &Path) -> Result<Vec<Map<String, Value>>, MetricsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| MetricsError::Io { path: path.to_path_buf(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let fail =
                |problem: String| MetricsError::Line { path: path.to_path_buf(), line: i + 1, problem };
            match serde_json::from_str::<Value>(line).map_err(|e| fail(e.to_string()))? {
                Value::Object(m) if m.get("step").and_then(Value::as_u64).is_some() => Ok(m),
                _ => Err(fail("not an object with an integer `step`".into())),
            }
        })
        .collect()
}

/// Each numeric field's `(step, value)` points, by name (nulls skipped).
pub fn series(lines: &[Map<String, Value>]) -> BTreeMap<String, Vec<(u64, f64)>> {
    let mut out: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for line in lines {
        let step = line["step"].as_u64().expect("checked when read");
        for (key, value) in line.iter().filter(|(k, _)| *k != "step") {
            if let Some(v) = value.as_f64() {
                out.entry(key.clone()).or_default().push((step, v));
            }
        }
    }
    out
}
