//! The training loop: a run killed after a checkpoint and resumed writes the uninterrupted run's
//! metrics byte for byte; gradient accumulation, divergence and run-folder misuse; two
//! data-parallel peers in one process equal one device accumulating their two micro-batches,
//! bit for bit.
//!
//! The task draws its noise from the micro-batch's generator, never from burn's CPU generator,
//! which is global (shared by the test functions and by in-process peers).

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spear_train::config::TrainConfig;
use spear_train::dist::{Launch, Rank, own_copy};
use spear_train::metrics::metrics_path;
use spear_train::run::{Loss, Quiet, Task, TrainError, train};

type Grad = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Mlp<B: Backend> {
    a: Linear<B>,
    b: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    fn new(device: &B::Device) -> Self {
        Self { a: LinearConfig::new(4, 16).init(device), b: LinearConfig::new(16, 2).init(device) }
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.b.forward(burn::tensor::activation::gelu(self.a.forward(x)))
    }
}

/// Regression onto `sin(x[..2])`, with inputs from a seeded host stream (the task's state) and
/// noise from the micro-batch's generator, as the policy draws its flow noise.
struct Regression {
    rng: ChaCha8Rng,
    /// Fail when asked for this batch (a kill).
    fail_at: Option<u64>,
    batches: u64,
    nan: bool,
}

impl Regression {
    fn new(fail_at: Option<u64>) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(7), fail_at, batches: 0, nan: false }
    }
}

fn batch<B: Backend>(rng: &mut ChaCha8Rng, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let x: Vec<f32> = (0..32).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = Tensor::<B, 1>::from_floats(x.as_slice(), device).reshape([8, 4]);
    let y = x.clone().slice([0..8, 0..2]).sin();
    (x, y)
}

impl Task<Grad> for Regression {
    type Model = Mlp<Grad>;
    type Batch = (Tensor<Grad, 2>, Tensor<Grad, 2>);

    fn next_batch(&mut self) -> Result<Self::Batch, TrainError> {
        self.batches += 1;
        if self.fail_at == Some(self.batches) {
            return Err(TrainError::Task("killed".into()));
        }
        Ok(batch(&mut self.rng, &Default::default()))
    }

    fn loss(
        &mut self,
        model: &Mlp<Grad>,
        (x, y): Self::Batch,
        rng: &mut ChaCha8Rng,
    ) -> Result<Loss<Grad>, TrainError> {
        let noise: Vec<f32> = (0..32).map(|_| rng.random_range(-0.1..0.1)).collect();
        let noise = Tensor::<Grad, 1>::from_floats(noise.as_slice(), &x.device()).reshape([8, 4]);
        let error = model.forward(x + noise) - y;
        let loss = if self.nan { error.powi_scalar(2).mean() / 0.0 } else { error.powi_scalar(2).mean() };
        Ok((
            loss,
            vec![("first_weight", model.a.weight.val().into_data().to_vec::<f32>().unwrap()[0].into())],
        ))
    }

    fn validate(&mut self, model: &Mlp<Flex>) -> Result<Vec<(String, f64)>, TrainError> {
        let (x, y) = batch::<Flex>(&mut ChaCha8Rng::seed_from_u64(99), &Default::default());
        let loss: f32 = (model.forward(x) - y).powi_scalar(2).mean().into_scalar();
        Ok(vec![("val_loss".into(), loss.into())])
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "rng": self.rng })
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), TrainError> {
        self.rng = serde_json::from_value(state["rng"].clone()).map_err(|e| TrainError::task("state", e))?;
        Ok(())
    }
}

fn run_config(overrides: &[&str]) -> TrainConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/vla/tiny.toml");
    let mut all: Vec<String> = [
        "run.steps=12",
        "run.log_every=1",
        "run.eval_every=3",
        "run.checkpoint_every=4",
        "optim.warmup_steps=1",
        "optim.peak_lr=0.01",
        "optim.decay_steps=12",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(overrides.iter().map(|s| s.to_string()));
    TrainConfig::load(path, &all).unwrap()
}

/// [`train`] on one device.
fn alone(
    config: &TrainConfig,
    task: &mut Regression,
    model: Mlp<Grad>,
    dir: &Path,
    resume: bool,
) -> Result<spear_train::run::Trained<Grad, Mlp<Grad>>, TrainError> {
    train(config, task, model, dir, resume, &Default::default(), &mut Quiet, &Rank::single())
}

fn model() -> Mlp<Grad> {
    let device = Default::default();
    Grad::seed(&device, 5);
    let model = Mlp::new(&device);
    spear_train::optim::materialize(&model);
    model
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spear-train-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_loop_resumes_exactly_and_refuses_misuse() {
    let device = Default::default();
    let config = run_config(&[]);
    let start = model();

    // Uninterrupted.
    let straight = temp("straight");
    let done = alone(&config, &mut Regression::new(None), start.clone(), &straight, false).unwrap();
    assert_eq!(done.steps, 12);
    let expected = read(metrics_path(&straight));
    assert_eq!(expected.lines().count(), 12);
    assert!(expected.lines().nth(2).unwrap().contains("\"val_loss\""));
    // It learns: the validation loss on a fixed batch falls.
    let validation: Vec<f64> = expected
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["val_loss"].as_f64())
        .collect();
    eprintln!("validation losses {validation:?}");
    assert!(validation.len() == 4 && validation[3] < validation[0], "{validation:?}");

    // Killed while taking step 7: steps 5 and 6 are logged after the checkpoint of step 4.
    let killed = temp("killed");
    let error = alone(&config, &mut Regression::new(Some(7)), start.clone(), &killed, false).err().unwrap();
    assert!(error.to_string().contains("killed"), "{error}");
    assert_eq!(read(metrics_path(&killed)).lines().count(), 6);
    // A new run may not overwrite it; resuming continues it, into a differently drawn model.
    let again = alone(&config, &mut Regression::new(None), start.clone(), &killed, false);
    assert!(again.err().unwrap().to_string().contains("--resume"));
    Grad::seed(&device, 1234);
    let other = Mlp::new(&device);
    spear_train::optim::materialize(&other);
    let resumed = alone(&config, &mut Regression::new(None), other, &killed, true).unwrap();
    assert_eq!((resumed.resumed_from, resumed.steps), (4, 12));
    assert_eq!(read(metrics_path(&killed)), expected, "metrics of the resumed run, byte for byte");
    let weights = |m: &Mlp<Flex>| m.b.weight.val().into_data().to_vec::<f32>().unwrap();
    assert_eq!(weights(&resumed.weights()), weights(&done.weights()), "EMA weights, bit for bit");
    assert_eq!(weights(&resumed.model.valid()), weights(&done.model.valid()));
    // keep_checkpoints = 3 in the tiny config: 4, 8 and 12 are left.
    let names: Vec<String> = std::fs::read_dir(&killed)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    // Nothing to resume.
    let empty = temp("empty");
    let error = alone(&config, &mut Regression::new(None), start.clone(), &empty, true);
    assert!(error.err().unwrap().to_string().contains("no checkpoint to resume from"));

    // With accumulation, each step takes `grad_accum` micro-batches (their summed gradients
    // scaled to the mean are tested in optim.rs).
    let accumulated = temp("accumulated");
    let config2 = run_config(&["run.batch_size=64", "run.grad_accum=2", "run.steps=3"]);
    let mut task = Regression::new(None);
    let trained = alone(&config2, &mut task, start.clone(), &accumulated, false).unwrap();
    assert_eq!((trained.steps, task.batches), (3, 6));

    // A loss that is not a number stops the run at that step.
    let diverged = temp("diverged");
    let mut task = Regression::new(None);
    task.nan = true;
    let error = alone(&config, &mut task, start, &diverged, false).err().unwrap();
    assert!(matches!(error, TrainError::Diverged { step: 1, .. }), "{error}");
    for dir in [straight, killed, empty, accumulated, diverged] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// burn-collective's local server is one per process and backend: one test at a time uses it.
static COLLECTIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn two_peers_equal_one_device_accumulating_their_micro_batches_bit_for_bit() {
    let _collective = COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let start = model();
    // One device: two micro-batches per step.
    let single = temp("single");
    let config =
        run_config(&["run.steps=6", "run.batch_size=64", "run.grad_accum=2", "run.checkpoint_every=3"]);
    let one = alone(&config, &mut Regression::new(None), start.clone(), &single, false).unwrap();

    // Two peers in this process, one micro-batch each per step.
    let two_peers = |dir: &Path, steps: &str, resume: bool| -> Vec<_> {
        let config = run_config(&[steps, "run.batch_size=64", "run.grad_accum=1", "run.checkpoint_every=3"]);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|r| {
                    let (config, start) = (&config, own_copy(start.clone()));
                    scope.spawn(move || {
                        // Small buckets: several per step, one of them a single whole parameter.
                        let launch = Launch { bucket_bytes: 256, ..Launch::local(vec![device; 2]) };
                        let rank = Rank::join::<Flex>(&launch, r, None).unwrap();
                        let mut task = Regression::new(None);
                        let trained =
                            train(config, &mut task, start, dir, resume, &device, &mut Quiet, &rank).unwrap();
                        rank.finish::<Flex>().unwrap();
                        (trained, task.batches)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let peers = temp("peers");
    let runs = two_peers(&peers, "run.steps=6", false);

    // Every rank read the whole stream; the main rank logged what one device logged.
    assert!(runs.iter().all(|(t, batches)| t.steps == 6 && *batches == 12));
    assert_eq!(read(metrics_path(&peers)), read(metrics_path(&single)), "metrics, byte for byte");
    let params =
        |m: &Mlp<Flex>| [&m.a.weight, &m.b.weight].map(|w| w.val().into_data().to_vec::<f32>().unwrap());
    for (trained, _) in &runs {
        assert_eq!(params(&trained.model.valid()), params(&one.model.valid()), "weights");
        assert_eq!(params(&trained.weights()), params(&one.weights()), "EMA weights");
    }
    // The checkpoints hold the same weights, AdamW moments and EMA, bit for bit (compared as
    // values: a record's map keyed by parameter id is written in no fixed order).
    let last = |dir: &Path| dir.join(std::fs::read_to_string(dir.join("latest")).unwrap().trim());
    assert_eq!(last(&peers).file_name(), last(&single).file_name());
    let record =
        |path: PathBuf| canonical(rmpv::decode::read_value(&mut &std::fs::read(path).unwrap()[..]).unwrap());
    let mut compared = 0;
    for file in std::fs::read_dir(last(&single)).unwrap().flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        if name.ends_with(".mpk") {
            assert!(record(file.path()) == record(last(&peers).join(&name)), "{name}");
            compared += 1;
        }
    }
    assert_eq!(compared, 3, "model, optimizer and EMA records");

    // Stopped at the checkpoint of step 3 and resumed by both ranks: the same metrics again.
    let resumed = temp("peers-resumed");
    two_peers(&resumed, "run.steps=3", false);
    let runs = two_peers(&resumed, "run.steps=6", true);
    assert!(runs.iter().all(|(t, _)| (t.resumed_from, t.steps) == (3, 6)));
    assert_eq!(read(metrics_path(&resumed)), read(metrics_path(&single)), "resumed metrics");

    // Resumed on one device: the same run when a step keeps its two micro-batches, refused when
    // it would not.
    let moved = temp("peers-to-one");
    two_peers(&moved, "run.steps=3", false);
    let config1 =
        run_config(&["run.steps=6", "run.batch_size=64", "run.grad_accum=1", "run.checkpoint_every=3"]);
    let error = alone(&config1, &mut Regression::new(None), start.clone(), &moved, true).err().unwrap();
    assert!(
        error.to_string().contains("micro-batches per step (run.grad_accum × devices): 1 × 2 → 1 × 1"),
        "{error}"
    );
    let config2 =
        run_config(&["run.steps=6", "run.batch_size=64", "run.grad_accum=2", "run.checkpoint_every=3"]);
    alone(&config2, &mut Regression::new(None), start.clone(), &moved, true).unwrap();
    assert_eq!(read(metrics_path(&moved)), read(metrics_path(&single)), "metrics resumed on one device");
}

/// A msgpack value with every map's entries sorted by key.
fn canonical(value: rmpv::Value) -> rmpv::Value {
    match value {
        rmpv::Value::Map(entries) => {
            let mut entries: Vec<_> = entries.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            entries.sort_by_key(|(k, _)| format!("{k:?}"));
            rmpv::Value::Map(entries)
        }
        rmpv::Value::Array(items) => rmpv::Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[test]
fn a_rank_that_stops_ends_the_run_on_every_rank_with_its_cause() {
    let _collective = COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let start = model();
    let config = run_config(&["run.steps=6", "run.batch_size=64", "run.grad_accum=1"]);
    let run = |dir: &str, peer_fails: fn(&mut Regression)| {
        let dir = temp(dir);
        let main = |rank: &Rank, device: &burn::backend::flex::FlexDevice| {
            train(
                &config,
                &mut Regression::new(None),
                own_copy(start.clone()),
                &dir,
                false,
                device,
                &mut Quiet,
                rank,
            )
        };
        let peer = |rank: &Rank, device: &burn::backend::flex::FlexDevice| {
            let mut task = Regression::new(None);
            peer_fails(&mut task);
            train(&config, &mut task, own_copy(start.clone()), &dir, false, device, &mut Quiet, rank)
                .map(|_| ())
        };
        spear_train::run::data_parallel::<Grad, _>(&Launch::local(vec![device, device]), main, peer)
            .err()
            .unwrap()
    };
    // Rank 1's data fails while rank 0 waits in the step's exchange: the run ends, naming rank 1.
    let error = run("stopped", |task| task.fail_at = Some(5));
    assert!(matches!(error, TrainError::Rank { rank: 1, world: 2, .. }), "{error}");
    assert!(error.to_string().contains("killed"), "{error}");
    // A loss that is not a number on rank 1 at step 1.
    let error = run("diverged-rank", |task| task.nan = true);
    assert!(error.to_string().contains("rank 1 of 2: step 1: the loss is inf"), "{error}");
}
