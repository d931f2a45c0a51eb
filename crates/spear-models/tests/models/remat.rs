//! Block-level rematerialisation ([`spear_models::remat`]) against one backward pass: every
//! parameter's gradient, for the policy (π0's fixture with an absent camera; the tiny SPEAR-1 with
//! MoGe, SigLIP and MoGe each frozen or training) and for the VLM's token rows, at f32 and bf16.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use rand::{SeedableRng, rngs::StdRng};
use spear_models::policy::{FlowDraws, Observation, SpearPolicy};
use spear_models::vlm::Trainable;
use spear_models::{Precision, SpearPolicyConfig, SpearVlm};

use crate::common::Cpu;
use crate::policy::{observation, tiny_pi0};

type Grad = Autodiff<Cpu>;

/// Every float parameter's gradient in `a` and `b`: the same parameters have one, and each pair
/// agrees within `tol` of the larger of its own magnitude and a thousandth of the largest
/// gradient of all (a gradient that is nearly zero differs by rounding alone). Returns how many
/// were compared and the largest error so measured.
fn assert_same_grads<M: AutodiffModule<Grad>>(
    module: &M,
    a: &GradientsParams,
    b: &GradientsParams,
    tol: f32,
    what: &str,
) -> (usize, f32) {
    struct Collect<'a> {
        a: &'a GradientsParams,
        b: &'a GradientsParams,
        what: &'a str,
        pairs: Vec<(ParamId, Vec<f32>, Vec<f32>)>,
    }
    impl ModuleVisitor<Grad> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Grad, D>>) {
            let id = param.id;
            let data = |t: Tensor<Cpu, D>| t.into_data().to_vec::<f32>().unwrap();
            match (self.a.get::<Cpu, D>(id), self.b.get::<Cpu, D>(id)) {
                (None, None) => {}
                (Some(a), Some(b)) => self.pairs.push((id, data(a), data(b))),
                (a, b) => panic!(
                    "{}: parameter {id}: a gradient in one pass only ({} vs {})",
                    self.what,
                    a.is_some(),
                    b.is_some()
                ),
            }
        }
    }
    let mut collect = Collect { a, b, what, pairs: Vec::new() };
    module.visit(&mut collect);
    let largest = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let global = collect.pairs.iter().fold(0f32, |m, (_, a, _)| m.max(largest(a)));
    assert!(global > 0.0, "{what}: no gradient compared");
    let mut worst = 0f32;
    for (id, a, b) in &collect.pairs {
        let scale = largest(a).max(global * 1e-3);
        let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
        assert!(err <= tol, "{what}: parameter {id}: relative error {err:e} (scale {scale:e})");
        worst = worst.max(err);
    }
    (collect.pairs.len(), worst)
}

/// The loss and gradients of `policy` by one backward pass and by stages.
fn policy_grads(
    policy: &SpearPolicy<Grad>,
    obs: &Observation<Grad>,
    actions: Tensor<Grad, 3>,
    what: &str,
    tol: f32,
) {
    let device = Default::default();
    let draws = policy.draw(obs.prompts.len(), &mut StdRng::seed_from_u64(7), &device);
    let valid = Tensor::<Grad, 2, Bool>::from_data(
        TensorData::new(
            (0..obs.prompts.len() * policy.horizon()).map(|i| i % 4 != 3).collect::<Vec<_>>(),
            [obs.prompts.len(), policy.horizon()],
        ),
        &device,
    );
    let loss = policy.loss(obs, actions.clone(), Some(valid.clone()), &draws).unwrap();
    let plain_value = loss.total.clone().into_scalar();
    let plain = GradientsParams::from_grads(loss.total.backward(), policy);
    let staged = policy.staged_loss(obs, actions, Some(valid), &draws).unwrap();
    let (loss, grads) = staged.gradients(|_| Ok::<_, ()>(())).unwrap();
    let staged_value = loss.total.into_scalar();
    assert!(
        (plain_value - staged_value).abs() <= 1e-6 * plain_value.abs(),
        "{what}: loss {plain_value} vs {staged_value}"
    );
    let (compared, worst) = assert_same_grads(policy, &plain, &grads, tol, what);
    eprintln!(
        "{what}: loss {plain_value:.6}, {compared} gradients agree (largest relative error {worst:.1e})"
    );
}

#[test]
fn staged_policy_gradients_equal_one_backward_pass() {
    let device = Default::default();
    Grad::seed(&device, 2);
    // π0's fixture: linear flow, no MoGe, sample 1's second camera absent, prompts of 5 and 3.
    let obs = observation::<Grad>(&device);
    for precision in [Precision::F32, Precision::Bf16] {
        let policy = tiny_pi0::<Grad>(&device).with_precision(precision);
        let actions = Tensor::random(
            [2, policy.horizon(), policy.action_dim()],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        policy_grads(&policy, &obs, actions, &format!("tiny π0 at {precision}"), 1e-5);
    }
    // The tiny SPEAR-1 (S³, MoGe fused): as the VLA stage trains it (MoGe frozen), with MoGe
    // training too, and with SigLIP frozen.
    Grad::seed(&device, 3);
    let config = SpearPolicyConfig::tiny();
    let obs = Observation::<Grad> {
        cameras: vec![
            Tensor::random([2, 3, 210, 280], Distribution::Uniform(0.0, 1.0), &device),
            Tensor::random([2, 3, 112, 112], Distribution::Uniform(0.0, 1.0), &device),
        ],
        camera_present: None,
        prompts: vec![vec![2, 17, 40, 9], vec![2, 33]],
        state: Tensor::random([2, 8], Distribution::Normal(0.0, 1.0), &device),
    };
    let all = Trainable { moge: true, ..Trainable::VLA };
    let frozen_siglip = Trainable { siglip: false, ..Trainable::VLA };
    for (trainable, name) in
        [(Trainable::VLA, "VLA stage"), (all, "MoGe training"), (frozen_siglip, "SigLIP frozen")]
    {
        for precision in [Precision::F32, Precision::Bf16] {
            let policy = config
                .init::<Grad>(&device)
                .unwrap()
                .with_trainable(trainable, true)
                .with_precision(precision);
            let actions = policy.noise(2, &device);
            policy_grads(&policy, &obs, actions, &format!("tiny SPEAR-1, {name}, {precision}"), 1e-5);
        }
    }
}

#[test]
fn staged_vlm_rows_gradients_equal_one_backward_pass() {
    let device = Default::default();
    Grad::seed(&device, 5);
    let config = SpearPolicyConfig::tiny().vlm;
    let cameras = vec![Tensor::<Grad, 4>::random([2, 3, 210, 280], Distribution::Uniform(0.0, 1.0), &device)];
    let rows: Vec<(Vec<u32>, usize)> = vec![(vec![2, 5, 9, 1100, 1500, 1], 3), (vec![2, 7, 1030, 1], 2)];
    let rows: Vec<(&[u32], usize)> = rows.iter().map(|(ids, p)| (ids.as_slice(), *p)).collect();
    // A loss that reads every logit, weighted per position.
    let loss = |logits: Tensor<Grad, 3>| {
        let [b, l, v] = logits.dims();
        let weights = Tensor::<Grad, 1>::from_data(
            TensorData::new((0..l).map(|i| 1.0 + i as f32).collect::<Vec<_>>(), [l]),
            &device,
        );
        let log_probs = burn::tensor::activation::log_softmax(logits, 2);
        (log_probs.mean_dim(2).reshape([b, l]) * weights.unsqueeze::<2>()).sum().neg() / (b * v) as f64
    };
    for (trainable, name) in
        [(Trainable::STAGE_1, "stage 1"), (Trainable::STAGE_2, "stage 2"), (Trainable::VLA, "all but MoGe")]
    {
        for precision in [Precision::F32, Precision::Bf16] {
            let vlm: SpearVlm<Grad> =
                config.init(&device).with_trainable(trainable).with_precision(precision);
            let value = loss(vlm.forward_rows(&cameras, &rows).unwrap());
            let plain = GradientsParams::from_grads(value.clone().backward(), &vlm);
            let staged = vlm.staged_rows(&cameras, &rows).unwrap();
            let (staged_value, grads) = staged
                .gradients(|logits| {
                    let value = loss(logits);
                    Ok::<_, ()>((value.clone(), value.into_scalar()))
                })
                .unwrap();
            let plain_value = value.into_scalar();
            let what = format!("tiny SPEAR-VLM, {name}, {precision}");
            assert!(
                (plain_value - staged_value).abs() <= 1e-6 * plain_value.abs(),
                "{what}: loss {plain_value} vs {staged_value}"
            );
            let (compared, worst) = assert_same_grads(&vlm, &plain, &grads, 1e-5, &what);
            eprintln!("{what}: {compared} gradients agree (largest relative error {worst:.1e})");
        }
    }
}

#[test]
fn a_failing_check_stops_before_the_backward_pass() {
    let device = Default::default();
    let policy = tiny_pi0::<Grad>(&device);
    let obs = observation::<Grad>(&device);
    let actions = Tensor::zeros([2, policy.horizon(), policy.action_dim()], &device);
    let draws: FlowDraws<Grad> = policy.draw(2, &mut StdRng::seed_from_u64(1), &device);
    let staged = policy.staged_loss(&obs, actions, None, &draws).unwrap();
    let error =
        staged.gradients(|loss| Err(format!("stopped at {}", loss.total.clone().into_scalar()))).unwrap_err();
    assert!(error.starts_with("stopped at "), "{error}");
    // Bad input is refused when staging, as by the loss.
    let short = Tensor::zeros([2, policy.horizon() - 1, policy.action_dim()], &device);
    let error = policy.staged_loss(&obs, short, None, &draws).err().expect("a chunk of the wrong length");
    assert!(error.to_string().contains("target actions"), "{error}");
}
