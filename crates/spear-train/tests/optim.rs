//! The optimisation pieces against hand computations: openpi's schedule, the λ-weighted VQA loss,
//! EMA, global-norm clipping; and each stage's freezing on the tiny SPEAR-VLM (frozen tensors
//! bit-identical after a step, trainable ones changed).

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::nn::LinearConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use spear_models::vlm::SpearVlmConfig;
use spear_train::config::TrainConfig;
use spear_train::optim::{Ema, WarmupCosine, adamw, clip_global_norm, vqa_loss};

type Cpu = Flex;
type Grad = Autodiff<Cpu>;

#[test]
fn the_schedule_is_optax_warmup_cosine() {
    let s = WarmupCosine { peak: 2.5e-5, warmup: 1000, decay_steps: 30_000, end: 2.5e-6 };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1e-30);
    assert!(close(s.lr(0), 2.5e-5 / 1001.0));
    assert!(close(s.lr(500), 2.5e-5 / 1001.0 + (2.5e-5 - 2.5e-5 / 1001.0) * 0.5));
    assert!(close(s.lr(1000), 2.5e-5));
    // Halfway through the cosine: the mean of peak and end.
    assert!(close(s.lr(15_500), (2.5e-5 + 2.5e-6) / 2.0));
    assert!(close(s.lr(30_000), 2.5e-6) && close(s.lr(90_000), 2.5e-6));
}

#[test]
fn the_vqa_loss_weights_3d_tokens_by_lambda() {
    let device = Default::default();
    // One row, 3 positions, vocabulary 4.
    let logits = [[0.1f32, 1.0, -0.5, 0.3], [2.0, 0.0, 0.5, -1.0], [0.0, 0.2, 0.4, 3.0]];
    let targets = [1i64, 2, 3];
    let (mask, is_3d) = ([1.0f32, 1.0, 1.0], [0.0f32, 1.0, 1.0]);
    let nll = |row: &[f32; 4], t: usize| {
        let lse = row.iter().map(|&v| f64::from(v).exp()).sum::<f64>().ln();
        lse - f64::from(row[t])
    };
    let lambda = 2.0;
    let want = (nll(&logits[0], 1) + lambda * nll(&logits[1], 2) + lambda * nll(&logits[2], 3)) / 3.0;
    let got = vqa_loss(
        Tensor::<Cpu, 3>::from_data([logits], &device),
        Tensor::<Cpu, 2, Int>::from_data([targets], &device),
        Tensor::<Cpu, 2>::from_data([mask], &device),
        Tensor::<Cpu, 2>::from_data([is_3d], &device),
        lambda,
    )
    .into_scalar();
    assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
    // Positions outside the loss mask count for nothing.
    let masked = vqa_loss(
        Tensor::<Cpu, 3>::from_data([logits], &device),
        Tensor::<Cpu, 2, Int>::from_data([targets], &device),
        Tensor::<Cpu, 2>::from_data([[0.0f32, 1.0, 0.0]], &device),
        Tensor::<Cpu, 2>::from_data([is_3d], &device),
        lambda,
    )
    .into_scalar();
    assert!((f64::from(masked) - lambda * nll(&logits[1], 2)).abs() < 1e-6);
}

/// Every float parameter's values, in visiting order.
fn values<B: Backend, M: Module<B>>(module: &M) -> Values {
    struct All(Vec<Vec<f32>>);
    impl<B: Backend> ModuleVisitor<B> for All {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut all = All(Vec::new());
    module.visit(&mut all);
    all.0
}

#[test]
fn ema_and_clipping_match_hand_computations() {
    let device = Default::default();
    Grad::seed(&device, 3);
    let model = LinearConfig::new(3, 2).init::<Grad>(&device);
    let mut ema = Ema::of(&model, 0.9);
    let before = values(&model.valid());
    let x = Tensor::<Grad, 2>::random([4, 3], Distribution::Normal(0.0, 1.0), &device);
    let loss = model.forward(x).powi_scalar(2).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    // The global norm is that of all gradients together; clipping halves it here.
    let manual: f64 = [model.weight.id, model.bias.as_ref().unwrap().id]
        .iter()
        .map(|&id| {
            let g: Vec<f32> = grads.get::<Cpu, 2>(id).map_or_else(
                || grads.get::<Cpu, 1>(id).unwrap().into_data().to_vec().unwrap(),
                |g| g.into_data().to_vec().unwrap(),
            );
            g.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>()
        })
        .sum::<f64>()
        .sqrt();
    let (clipped, norm) = clip_global_norm(&model, grads, 0.0);
    assert!((norm - manual).abs() < 1e-5 * manual, "{norm} vs {manual}");
    let (clipped, _) = clip_global_norm(&model, clipped, manual / 2.0);
    let (clipped, after) = clip_global_norm(&model, clipped, 0.0);
    assert!((after - manual / 2.0).abs() < 1e-5 * manual, "{after}");
    let model = SgdConfig::new().init().step(0.1, model, clipped);
    let trained = values(&model.valid());
    ema.update(&model);
    for ((e, b), t) in values(&ema.model).iter().zip(&before).zip(&trained) {
        for ((e, b), t) in e.iter().zip(b).zip(t) {
            let want = 0.9 * f64::from(*b) + 0.1 * f64::from(*t);
            assert!((f64::from(*e) - want).abs() < 1e-6, "{e} vs {want}");
        }
    }
    assert_ne!(before, trained);
}

/// A module's parameter values.
type Values = Vec<Vec<f32>>;

/// One AdamW step of the tiny SPEAR-VLM under `config`'s `[trainable]`; the parts' values
/// before and after: (siglip, moge, gemma, siglip projector, moge projector, 3D rows).
fn one_step(config: &str, overrides: &[&str]) -> [(Values, Values); 6] {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(config);
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let config = TrainConfig::load(path, &overrides).unwrap();
    let device = Default::default();
    Grad::seed(&device, 7);
    let mut vlm_config = SpearVlmConfig::tiny();
    vlm_config.image_size = [28, 28];
    let vlm = vlm_config.init::<Grad>(&device).with_trainable(config.trainable.vlm());
    let parts = |v: &spear_models::vlm::SpearVlm<Cpu>| {
        [
            values(&v.siglip),
            values(v.moge.as_ref().unwrap()),
            values(&v.gemma),
            values(&v.siglip_projector),
            values(v.moge_projector.as_ref().unwrap()),
            values(v.embed_3d.as_ref().unwrap()),
        ]
    };
    let before = parts(&vlm.valid());
    let image = Tensor::<Grad, 4>::random([2, 3, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
    let base = vlm.base_vocab() as i64;
    let prefix = Tensor::<Grad, 2, Int>::from_data([[2i64, 10, 11, 5], [2, 12, 13, 5]], &device);
    // Answers with a text token and two 3D tokens each.
    let suffix =
        Tensor::<Grad, 2, Int>::from_data([[20i64, base + 3, base + 900], [21, base + 7, base + 1]], &device);
    let logits = vlm.forward(&[image], prefix, Some(suffix.clone())).unwrap();
    let [batch, seq, vocab] = logits.dims();
    // Positions predicting the suffix tokens: the last 3 before each of them.
    let predicting = logits.slice([0..batch, seq - 3..seq - 1, 0..vocab]);
    let targets = suffix.slice([0..batch, 0..2]);
    let loss = vqa_loss(
        predicting,
        targets,
        Tensor::ones([batch, 2], &device),
        Tensor::from_data(TensorData::from([[0.0f32, 1.0], [0.0, 1.0]]), &device),
        config.loss.lambda_3d,
    );
    let grads = GradientsParams::from_grads(loss.backward(), &vlm);
    let (grads, _) = clip_global_norm(&vlm, grads, config.optim.clip_norm);
    let vlm = adamw(&config.optim).init().step(1e-3, vlm, grads);
    let after = parts(&vlm.valid());
    std::array::from_fn(|k| (before[k].clone(), after[k].clone()))
}

#[test]
fn each_stage_trains_only_its_parts() {
    let names = ["siglip", "moge", "gemma", "siglip projector", "moge projector", "3D rows"];
    let check = |config: &str, overrides: &[&str], trains: [bool; 6]| {
        for (k, (before, after)) in one_step(config, overrides).iter().enumerate() {
            if trains[k] {
                assert_ne!(before, after, "{config} {overrides:?}: {} should train", names[k]);
            } else {
                assert_eq!(before, after, "{config} {overrides:?}: {} should be bit-identical", names[k]);
            }
        }
    };
    // Stage 1: the new weights and the SigLIP projector.
    check("vlm/stage1.toml", &[], [false, false, false, true, true, true]);
    // Stage 2 as §3.1 writes it: everything but the two encoders.
    check(
        "vlm/stage2.toml",
        &["trainable.siglip=false", "trainable.moge=false"],
        [false, false, true, true, true, true],
    );
}

#[test]
fn accumulated_micro_batches_give_the_whole_batchs_gradient() {
    use burn::optim::GradientsAccumulator;
    use spear_train::optim::scale_grads;
    let device = Default::default();
    Grad::seed(&device, 5);
    let model = LinearConfig::new(3, 2).init::<Grad>(&device);
    let x = Tensor::<Grad, 2>::random([8, 3], Distribution::Normal(0.0, 1.0), &device);
    let loss = |x: Tensor<Grad, 2>| model.forward(x).powi_scalar(2).mean();
    let whole = GradientsParams::from_grads(loss(x.clone()).backward(), &model);
    let mut accumulator = GradientsAccumulator::new();
    for half in [0..4, 4..8] {
        let grads = GradientsParams::from_grads(loss(x.clone().slice([half, 0..3])).backward(), &model);
        accumulator.accumulate(&model, grads);
    }
    let accumulated = scale_grads(&model, accumulator.grads(), 0.5);
    let id = model.weight.id;
    let (a, b): (Vec<f32>, Vec<f32>) = (
        whole.get::<Cpu, 2>(id).unwrap().into_data().to_vec().unwrap(),
        accumulated.get::<Cpu, 2>(id).unwrap().into_data().to_vec().unwrap(),
    );
    for (a, b) in a.iter().zip(&b) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}
