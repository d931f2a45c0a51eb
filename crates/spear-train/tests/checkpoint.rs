//! A run stopped at a checkpoint and resumed takes exactly the steps the uninterrupted run takes;
//! damaged and mismatched checkpoints are refused with the reason.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spear_train::checkpoint::{CheckpointError, latest, load, save};
use spear_train::config::TrainConfig;
use spear_train::optim::{Ema, WarmupCosine, adamw, clip_global_norm, materialize};

type Grad = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Mlp<B: burn::tensor::backend::Backend> {
    a: Linear<B>,
    b: Linear<B>,
}

impl<B: burn::tensor::backend::Backend> Mlp<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.b.forward(burn::tensor::activation::gelu(self.a.forward(x)))
    }
}

fn config() -> TrainConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/vla/tiny.toml");
    TrainConfig::load(path, &["optim.warmup_steps=2".into(), "optim.decay_steps=8".into()]).unwrap()
}

/// A model with its weights drawn now (burn initialises parameters lazily, and clones of an
/// uninitialised model would each draw their own).
fn fresh(seed: u64) -> Mlp<Grad> {
    let device = Default::default();
    <Grad as burn::tensor::backend::Backend>::seed(&device, seed);
    let model = Mlp { a: LinearConfig::new(4, 16).init(&device), b: LinearConfig::new(16, 2).init(&device) };
    materialize(&model);
    model
}

/// The next batch from the run's generator (whose state a checkpoint carries).
fn batch(rng: &mut ChaCha8Rng) -> (Tensor<Grad, 2>, Tensor<Grad, 2>) {
    let device = Default::default();
    let x: Vec<f32> = (0..32).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = Tensor::<Grad, 1>::from_floats(x.as_slice(), &device).reshape([8, 4]);
    let y = x.clone().slice([0..8, 0..2]).sin();
    (x, y)
}

/// Steps `from..to`; returns the losses.
fn train(
    model: &mut Mlp<Grad>,
    optimizer: &mut impl Optimizer<Mlp<Grad>, Grad>,
    ema: &mut Ema<Mlp<Flex>>,
    rng: &mut ChaCha8Rng,
    from: u64,
    to: u64,
) -> Vec<f32> {
    let config = config();
    let schedule = WarmupCosine::new(&config.optim);
    let mut losses = Vec::new();
    for step in from..to {
        let (x, y) = batch(rng);
        let loss = (model.forward(x) - y).powi_scalar(2).mean();
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &*model);
        let (grads, _) = clip_global_norm(&*model, grads, config.optim.clip_norm);
        *model = optimizer.step(schedule.lr(step), model.clone(), grads);
        ema.update(&*model);
    }
    losses
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spear-train-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn params(model: &Mlp<Grad>) -> Vec<f32> {
    [model.a.weight.val(), model.b.weight.val()]
        .into_iter()
        .flat_map(|t| t.into_data().to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn a_resumed_run_takes_the_same_steps() {
    let config = config();
    // Uninterrupted: 8 steps. (Both runs start from clones of one model: the backend's seed is
    // global, and the other test draws from it concurrently.)
    let initial = fresh(1);
    let mut model = initial.clone();
    let mut optimizer = adamw(&config.optim).init();
    let mut ema = Ema::of(&model, config.ema.decay);
    let mut rng = ChaCha8Rng::seed_from_u64(config.run.seed);
    let straight = train(&mut model, &mut optimizer, &mut ema, &mut rng, 0, 8);

    // Killed after 5 steps; resumed into a differently initialised model and a fresh optimiser.
    let dir = temp("resume");
    let mut first = initial;
    let mut optimizer1 = adamw(&config.optim).init();
    let mut ema1 = Ema::of(&first, config.ema.decay);
    let mut rng1 = ChaCha8Rng::seed_from_u64(config.run.seed);
    let mut resumed = train(&mut first, &mut optimizer1, &mut ema1, &mut rng1, 0, 5);
    let extra = serde_json::json!({ "rng": rng1 });
    save(&dir, 5, &config, &first, &optimizer1, Some(&ema1), &extra).unwrap();
    drop((first, optimizer1, ema1, rng1));

    let other = fresh(99);
    let ema_start = Ema::of(&other, config.ema.decay);
    let checkpoint = latest(&dir).unwrap().unwrap();
    let restored = load(
        &checkpoint,
        &config,
        1,
        other,
        adamw(&config.optim).init(),
        Some(ema_start),
        None,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(restored.state.step, 5);
    let (mut model2, mut optimizer2, mut ema2) = (restored.model, restored.optimizer, restored.ema.unwrap());
    let mut rng2: ChaCha8Rng = serde_json::from_value(restored.state.extra["rng"].clone()).unwrap();
    resumed.extend(train(&mut model2, &mut optimizer2, &mut ema2, &mut rng2, 5, 8));

    assert_eq!(resumed, straight, "losses, bit for bit");
    assert_eq!(params(&model2), params(&model));
    let ema_values = |m: &Mlp<Flex>| m.a.weight.val().into_data().to_vec::<f32>().unwrap();
    assert_eq!(ema_values(&ema2.model), ema_values(&ema.model));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_or_mismatched_checkpoints_are_refused() {
    let config = config();
    let dir = temp("refuse");
    let model = fresh(2);
    let optimizer = adamw(&config.optim).init();
    // One step so that the optimiser has state.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (mut model, mut optimizer, mut ema) = (model.clone(), optimizer, Ema::of(&model, 0.9));
    train(&mut model, &mut optimizer, &mut ema, &mut rng, 0, 1);
    let checkpoint = save(&dir, 1, &config, &model, &optimizer, None, &serde_json::Value::Null).unwrap();
    let reload = |config: &TrainConfig| {
        load(
            &checkpoint,
            config,
            1,
            fresh(3),
            adamw(&config.optim).init(),
            None::<Ema<Mlp<Flex>>>,
            None,
            &Default::default(),
        )
    };
    assert!(reload(&config).is_ok());
    // A longer run with other cadence resumes; another learning rate does not.
    let mut longer = config.clone();
    longer.run.steps += 100;
    longer.run.log_every = 1;
    assert!(reload(&longer).is_ok());
    let mut other = config.clone();
    other.optim.peak_lr *= 2.0;
    other.trainable.moge = true;
    let error = reload(&other).err().unwrap();
    let text = error.to_string();
    assert!(matches!(error, CheckpointError::Mismatch { .. }), "{text}");
    assert!(
        text.contains("optim.peak_lr: 0.003 → 0.006") && text.contains("trainable.moge: false → true"),
        "{text}"
    );
    // A flipped byte.
    let weights = checkpoint.join("model.mpk");
    let mut bytes = std::fs::read(&weights).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let text = reload(&config).err().unwrap().to_string();
    assert!(text.contains("model.mpk") && text.contains("corrupted"), "{text}");
    // An unfinished checkpoint (no manifest).
    std::fs::remove_file(checkpoint.join("manifest.json")).unwrap();
    let text = reload(&config).err().unwrap().to_string();
    assert!(text.contains("manifest.json") && text.contains("not a finished checkpoint"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
