//! Training checkpoints: everything a killed run needs to continue exactly — model, optimiser
//! state, EMA weights, step, the resolved config and the caller's state (loader position, RNG) —
//! written atomically and checked when read.
//!
//! Layout: `RUN/step-000000123/` holding `model.mpk`, `optimizer.mpk`, `ema.mpk` (burn's named
//! MessagePack records at full precision: parameter ids travel with the weights, so the optimiser
//! state finds its parameters again), `state.json` and, written last, `manifest.json` with every
//! file's SHA-256. The folder is assembled under a temporary name and renamed; `RUN/latest` then
//! names it. Reading verifies every checksum and refuses a checkpoint whose config differs from the
//! run's in anything but the run's length and cadence, saying which fields differ.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, ParamId};
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Record, Recorder};
use burn::tensor::backend::AutodiffBackend;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::TrainConfig;
use crate::dist::Owners;
use crate::optim::Ema;

/// Why a checkpoint cannot be written or used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing a file failed.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// A file's bytes are not the ones the manifest recorded.
    #[error("{path}: corrupted (SHA-256 {found}, the manifest says {expected})")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// Its hash now.
        found: String,
        /// Its hash when written.
        expected: String,
    },
    /// The checkpoint was made by a run with a different config.
    #[error("{path}: made with a different config ({})", differences.join("; "))]
    Mismatch {
        /// The checkpoint.
        path: PathBuf,
        /// `field: checkpoint → now` for each difference.
        differences: Vec<String>,
    },
}

fn file_error(path: &Path, problem: impl ToString) -> CheckpointError {
    CheckpointError::File { path: path.to_path_buf(), problem: problem.to_string() }
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimiser steps taken.
    pub step: u64,
    /// The run's resolved config (TOML).
    pub config: String,
    /// The trainer's own state (loader position, random generators, metrics so far).
    pub extra: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    files: Vec<(String, String)>,
}

/// Config fields a resumed run may change: its length, how often it logs, evaluates and saves, and
/// what it recomputes (which changes no result).
const RESUMABLE: [&str; 7] = [
    "run.steps",
    "run.log_every",
    "run.eval_every",
    "run.checkpoint_every",
    "run.keep_checkpoints",
    "memory.checkpointing",
    "memory.shard_optimizer",
];

/// The dotted paths where two TOML values differ, with both values.
fn differences(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => differences(&path, p, q, out),
                    (p, q) if !RESUMABLE.contains(&path.as_str()) => {
                        let show =
                            |v: Option<&toml::Value>| v.map_or("(absent)".to_string(), |v| v.to_string());
                        out.push(format!("{path}: {} → {}", show(p), show(q)));
                    }
                    _ => {}
                }
            }
        }
        (p, q) if p != q && !RESUMABLE.contains(&prefix) => out.push(format!("{prefix}: {p} → {q}")),
        _ => {}
    }
}

fn sha256_file(path: &Path) -> Result<String, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
}

/// The folder a checkpoint of `step` is assembled in before it is renamed into place.
fn staging(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join(format!(".step-{step:09}.tmp"))
}

/// Starts a checkpoint of `step` under `run_dir`: an empty staging folder (a stale one from a
/// killed run removed), which [`save_optimizer_shard`] and [`finish`] fill.
pub fn begin(run_dir: &Path, step: u64) -> Result<PathBuf, CheckpointError> {
    let tmp = staging(run_dir, step);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| file_error(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| file_error(&tmp, e))?;
    Ok(tmp)
}

/// The file name of rank `rank`'s share of a sharded optimiser state.
fn shard_name(rank: usize) -> String {
    format!("optimizer-rank{rank:04}.mpk")
}

/// Writes rank `rank`'s share of a sharded optimiser state (`[memory] shard_optimizer`: the
/// moments of the parameters it owns) into the staging folder of checkpoint `step` ([`begin`]).
pub fn save_optimizer_shard<B, M, O>(
    run_dir: &Path,
    step: u64,
    rank: usize,
    optimizer: &O,
) -> Result<(), CheckpointError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let path = staging(run_dir, step).join(shard_name(rank));
    recorder().record(optimizer.to_record(), path.with_extension("")).map_err(|e| file_error(&path, e))?;
    Ok(())
}

/// Writes a checkpoint of `step` under `run_dir` (the whole optimiser state in `optimizer.mpk`);
/// returns its folder.
pub fn save<B, M, O>(
    run_dir: &Path,
    step: u64,
    config: &TrainConfig,
    model: &M,
    optimizer: &O,
    ema: Option<&Ema<M::InnerModule>>,
    extra: &serde_json::Value,
) -> Result<PathBuf, CheckpointError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    begin(run_dir, step)?;
    finish(run_dir, step, config, model, Some(optimizer), ema, extra)
}

/// Completes the checkpoint [`begin`] started: the model, the optimiser state (`None`: its
/// shards are in the staging folder already, [`save_optimizer_shard`]), the EMA, the state and
/// the manifest, then moves it into place and points `latest` at it; returns its folder.
pub fn finish<B, M, O>(
    run_dir: &Path,
    step: u64,
    config: &TrainConfig,
    model: &M,
    optimizer: Option<&O>,
    ema: Option<&Ema<M::InnerModule>>,
    extra: &serde_json::Value,
) -> Result<PathBuf, CheckpointError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let name = format!("step-{step:09}");
    let (tmp, done) = (staging(run_dir, step), run_dir.join(&name));
    let record_error = |file: &str, e: burn::record::RecorderError| file_error(&tmp.join(file), e);
    recorder()
        .record(model.clone().into_record(), tmp.join("model"))
        .map_err(|e| record_error("model.mpk", e))?;
    if let Some(optimizer) = optimizer {
        recorder()
            .record(optimizer.to_record(), tmp.join("optimizer"))
            .map_err(|e| record_error("optimizer.mpk", e))?;
    }
    if let Some(ema) = ema {
        recorder()
            .record(burn::module::Module::<B::InnerBackend>::into_record(ema.model.clone()), tmp.join("ema"))
            .map_err(|e| record_error("ema.mpk", e))?;
    }
    let state = CheckpointState { step, config: config.to_toml(), extra: extra.clone() };
    let state_path = tmp.join("state.json");
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state).expect("state serialises"))
        .map_err(|e| file_error(&state_path, e))?;
    let mut shards: Vec<String> = std::fs::read_dir(&tmp)
        .map_err(|e| file_error(&tmp, e))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("optimizer-rank"))
        .collect();
    shards.sort();
    if optimizer.is_none() && shards.is_empty() {
        return Err(file_error(&tmp, "no optimiser state: neither optimizer.mpk nor a rank's shard"));
    }
    let mut files = Vec::new();
    let names = ["model.mpk", "optimizer.mpk", "ema.mpk", "state.json"].map(String::from);
    for file in names.into_iter().chain(shards) {
        let path = tmp.join(&file);
        if path.exists() {
            files.push((file, sha256_file(&path)?));
        }
    }
    let manifest_path = tmp.join("manifest.json");
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&Manifest { files }).expect("manifest serialises"),
    )
    .map_err(|e| file_error(&manifest_path, e))?;
    if done.exists() {
        std::fs::remove_dir_all(&done).map_err(|e| file_error(&done, e))?;
    }
    std::fs::rename(&tmp, &done).map_err(|e| file_error(&done, e))?;
    let latest = run_dir.join("latest");
    let latest_tmp = run_dir.join(".latest.tmp");
    std::fs::write(&latest_tmp, &name).map_err(|e| file_error(&latest_tmp, e))?;
    std::fs::rename(&latest_tmp, &latest).map_err(|e| file_error(&latest, e))?;
    Ok(done)
}

/// The checkpoint folders of a run (`step-NNNNNNNNN`), oldest first.
fn checkpoints(run_dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-"))
        })
        .collect();
    found.sort();
    found
}

/// Deletes the oldest checkpoints of `run_dir` beyond `keep` (never `newest`).
pub fn prune(run_dir: &Path, keep: usize, newest: &Path) -> Result<(), CheckpointError> {
    let all = checkpoints(run_dir);
    let excess = all.len().saturating_sub(keep.max(1));
    for old in all.iter().take(excess).filter(|p| p.as_path() != newest) {
        std::fs::remove_dir_all(old)
            .map_err(|e| file_error(old, format!("removing an old checkpoint: {e}")))?;
    }
    Ok(())
}

/// The checkpoint `RUN/latest` names, if any.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    let latest = run_dir.join("latest");
    match std::fs::read_to_string(&latest) {
        Ok(name) => Ok(Some(run_dir.join(name.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error(&latest, e)),
    }
}

/// What [`load`] restores.
pub struct Restored<M: AutodiffModule<B>, O, B: AutodiffBackend> {
    /// The model with the checkpoint's weights (and parameter ids).
    pub model: M,
    /// The optimiser with its state.
    pub optimizer: O,
    /// The EMA weights, if the checkpoint has them and one was passed in.
    pub ema: Option<Ema<M::InnerModule>>,
    /// Step, config and the trainer's state.
    pub state: CheckpointState,
}

/// Reads the checkpoint in `dir` into `model`, `optimizer` and `ema` (built as the run builds
/// them), after checking every file and that its config matches `config`. The optimiser state is
/// the checkpoint's whole one or its ranks' shards merged (so a sharded run resumes on any world
/// size, sharded or not); with `shard`, the rank whose share ([`Owners`] over `world` ranks) alone
/// is kept.
#[allow(clippy::too_many_arguments)]
pub fn load<B, M, O, R>(
    dir: &Path,
    config: &TrainConfig,
    world: usize,
    model: M,
    optimizer: O,
    ema: Option<Ema<M::InnerModule>>,
    shard: Option<usize>,
    device: &B::Device,
) -> Result<Restored<M, O, B>, CheckpointError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B, Record = HashMap<ParamId, R>>,
    R: Record<B>,
{
    let manifest_path = dir.join("manifest.json");
    let manifest: Manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|e| file_error(&manifest_path, format!("{e} (not a finished checkpoint)")))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| file_error(&manifest_path, e)))?;
    for (file, expected) in &manifest.files {
        let path = dir.join(file);
        let found = sha256_file(&path)?;
        if &found != expected {
            return Err(CheckpointError::Corrupted { path, found, expected: expected.clone() });
        }
    }
    let state_path = dir.join("state.json");
    let state: CheckpointState = std::fs::read_to_string(&state_path)
        .map_err(|e| file_error(&state_path, e))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| file_error(&state_path, e)))?;
    let saved: toml::Value = state
        .config
        .parse::<toml::Table>()
        .map(toml::Value::Table)
        .map_err(|e| file_error(&state_path, e))?;
    let now: toml::Value =
        config.to_toml().parse::<toml::Table>().map(toml::Value::Table).expect("a config's TOML parses");
    let mut diff = Vec::new();
    differences("", &saved, &now, &mut diff);
    // Another world size continues the same run when a step keeps its micro-batches: every rank
    // reads the whole stream, and a micro-batch draws by its number.
    let saved_world = state.extra.get("world").and_then(serde_json::Value::as_u64).unwrap_or(1) as usize;
    let saved_accum = saved.get("run").and_then(|r| r.get("grad_accum")).and_then(toml::Value::as_integer);
    let micro = |accum: usize, world: usize| accum * world;
    let accum_change = diff.iter().position(|d| d.starts_with("run.grad_accum:"));
    match (saved_accum, accum_change) {
        (Some(accum), Some(at))
            if micro(accum as usize, saved_world) == micro(config.run.grad_accum, world) =>
        {
            diff.remove(at);
        }
        _ if saved_world != world
            && saved_accum
                .is_some_and(|a| micro(a as usize, saved_world) != micro(config.run.grad_accum, world)) =>
        {
            let accum = saved_accum.unwrap_or(1) as usize;
            diff.push(format!(
                "micro-batches per step (run.grad_accum × devices): {accum} × {saved_world} → {} × {world}; keep \
                 their product ({}) to resume on {world} device(s)",
                config.run.grad_accum,
                micro(accum, saved_world)
            ));
        }
        _ => {}
    }
    if !diff.is_empty() {
        return Err(CheckpointError::Mismatch { path: dir.to_path_buf(), differences: diff });
    }
    let record_error = |file: &str, e: burn::record::RecorderError| file_error(&dir.join(file), e);
    let model_record =
        recorder().load(dir.join("model"), device).map_err(|e| record_error("model.mpk", e))?;
    let model = model.load_record(model_record);
    // The whole state, or every rank's shard merged; then only what this rank steps.
    let mut optimizer_record: HashMap<ParamId, R> = if dir.join("optimizer.mpk").exists() {
        recorder().load(dir.join("optimizer"), device).map_err(|e| record_error("optimizer.mpk", e))?
    } else {
        let shards: Vec<&String> =
            manifest.files.iter().map(|(f, _)| f).filter(|f| f.starts_with("optimizer-rank")).collect();
        if shards.is_empty() {
            return Err(file_error(dir, "no optimiser state (optimizer.mpk or optimizer-rank*.mpk)"));
        }
        let mut merged = HashMap::new();
        for file in shards {
            let path = dir.join(file).with_extension("");
            let shard: HashMap<ParamId, R> =
                recorder().load(path, device).map_err(|e| record_error(file, e))?;
            merged.extend(shard);
        }
        merged
    };
    if let Some(rank) = shard {
        let owners = Owners::new(&model, world);
        optimizer_record.retain(|id, _| owners.owner(*id).is_none_or(|o| o == rank));
    }
    let optimizer = optimizer.load_record(optimizer_record);
    let ema = match ema {
        Some(ema) if dir.join("ema.mpk").exists() => {
            let record = recorder().load(dir.join("ema"), device).map_err(|e| record_error("ema.mpk", e))?;
            Some(Ema::new(burn::module::Module::<B::InnerBackend>::load_record(ema.model, record), ema.decay))
        }
        other => other,
    };
    Ok(Restored { model, optimizer, ema, state })
}
