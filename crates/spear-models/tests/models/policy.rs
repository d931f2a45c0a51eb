//! SPEAR-1's policy against transformers' PI0 on a tiny random π0 (fixtures from
//! `tools/reference/pi0_fixtures.py`): linear-mode velocity, loss and sampling; the S³ mode's loss
//! terms and sampled chunk against the fixture's numpy re-implementation of the paper's equations.

use burn::prelude::*;
use spear_geometry::tensor::linear_interpolate;
use spear_models::RotationMode;
use spear_models::policy::{FlowDraws, Observation, SpearPolicy};
use spear_models::store::load_policy;

use crate::common::*;

const PI0: &str = "pi0_expected.safetensors";
const S3: &str = "s3_expected.safetensors";

/// The tiny π0 of the fixture (2 cameras: the config does not record them).
pub fn tiny_pi0<B: Backend>(device: &B::Device) -> SpearPolicy<B> {
    load_policy::<B>(&fixtures().join("pi0-tiny"), device).unwrap().with_cameras(2)
}

/// The fixture's observation: sample 0 with both cameras and 5 prompt tokens, sample 1 with its
/// second camera absent and 3 prompt tokens.
pub fn observation<B: Backend>(device: &B::Device) -> Observation<B> {
    let images: Tensor<B, 5> = tensor(PI0, "images", device);
    let cameras = (0..2).map(|c| images.clone().narrow(1, c, 1).squeeze_dim(1)).collect();
    let mask: Vec<f32> = read(PI0, "camera_mask").to_vec().unwrap();
    let camera_present = (0..2).map(|c| (0..2).map(|b| mask[b * 2 + c] != 0.0).collect()).collect();
    let prompt: Vec<f32> = read(PI0, "prompt").to_vec().unwrap();
    let lengths: Vec<f32> = read(PI0, "prompt_lengths").to_vec().unwrap();
    let prompts = (0..2)
        .map(|b| prompt[b * 5..b * 5 + lengths[b] as usize].iter().map(|&id| id as u32).collect())
        .collect();
    Observation {
        cameras,
        camera_present: Some(camera_present),
        prompts,
        state: tensor(PI0, "state", device),
    }
}

/// Paper times of the fixture's code times `t` (τ = 1 − t).
fn fixture_tau(file: &str, name: &str, code_time: bool) -> Vec<f64> {
    let values: Vec<f32> = read(file, name).to_vec().unwrap();
    values.iter().map(|&v| if code_time { 1.0 - f64::from(v) } else { f64::from(v) }).collect()
}

#[test]
fn pi0_velocity_matches_transformers_jointly_and_from_the_cache() {
    let device = Default::default();
    let policy = tiny_pi0::<Cpu>(&device);
    assert_eq!(policy.config().rotation, RotationMode::Linear);
    let obs = observation::<Cpu>(&device);
    let tau = fixture_tau(PI0, "t", true);
    let noise: Tensor<Cpu, 3> = tensor(PI0, "noise", &device);
    let actions: Tensor<Cpu, 3> = tensor(PI0, "actions", &device);
    let tau_tensor =
        Tensor::<Cpu, 1>::from_floats(tau.iter().map(|&t| t as f32).collect::<Vec<_>>().as_slice(), &device)
            .reshape([2, 1, 1]);
    let noisy = linear_interpolate(noise, actions, tau_tensor);
    // The network predicts dx/dt in π0's time; ours is dA/dτ = −dx/dt.
    let want = read(PI0, "velocity");
    let joint = policy.velocity(&obs, noisy.clone(), &tau).unwrap();
    assert_close(-joint, &want, 1e-4, "π0 velocity (joint pass)");
    let encoded = policy.encode(&obs).unwrap();
    let cached = policy.velocity_cached(&encoded, noisy, &tau);
    assert_close(-cached, &want, 1e-4, "π0 velocity (prefix KV cache)");
}

#[test]
fn pi0_loss_matches_transformers_per_element() {
    let device = Default::default();
    let policy = tiny_pi0::<Cpu>(&device);
    let draws = FlowDraws {
        noise: tensor(PI0, "noise", &device),
        tau: fixture_tau(PI0, "t", true),
        delta: Tensor::zeros([2, 1, 1], &device),
    };
    let loss = policy.loss(&observation(&device), tensor(PI0, "actions", &device), None, &draws).unwrap();
    let want = read(PI0, "loss");
    assert_close(loss.squared_error, &want, 1e-4, "π0 per-element loss");
    let mean: f32 = want.to_vec::<f32>().unwrap().iter().sum::<f32>() / 96.0;
    let total = loss.total.into_scalar();
    assert!((total - mean).abs() <= 1e-4 * mean.abs().max(1.0), "π0 mean loss: {total} vs {mean}");
}

#[test]
fn pi0_sampled_chunk_matches_transformers() {
    let device = Default::default();
    let policy = tiny_pi0::<Cpu>(&device);
    let sampled = policy.sample(&observation(&device), tensor(PI0, "sample_noise", &device)).unwrap();
    assert_close(sampled, &read(PI0, "sampled"), 1e-4, "π0 10-step sample");
}

/// The same network in the paper's S³ mode.
fn tiny_s3<B: Backend>(device: &B::Device) -> SpearPolicy<B> {
    tiny_pi0(device).with_rotation(RotationMode::S3).unwrap()
}

#[test]
fn s3_loss_terms_match_the_papers_equations() {
    let device = Default::default();
    let policy = tiny_s3::<Cpu>(&device);
    let draws = FlowDraws {
        noise: tensor(S3, "noise", &device),
        tau: fixture_tau(S3, "tau", false),
        delta: tensor::<Cpu, 1>(S3, "delta", &device).reshape([2, 1, 1]),
    };
    let loss = policy.loss(&observation(&device), tensor(S3, "data", &device), None, &draws).unwrap();
    let cosine = loss.cosine.unwrap();
    let geodesic = loss.geodesic.unwrap();
    assert_close(cosine, &read(S3, "cosine"), 1e-4, "S³ cosine loss (eq. 8)");
    assert_close(geodesic, &read(S3, "geodesic"), 1e-4, "S³ geodesic loss (eq. 9)");
    let translation = loss.squared_error.clone().narrow(2, 0, 3).sum_dim(2).squeeze_dim::<2>(2);
    assert_close(translation, &read(S3, "translation"), 1e-4, "S³ translation loss (eq. 2)");
    let gripper = loss.squared_error.narrow(2, 7, 1).squeeze_dim::<2>(2);
    assert_close(gripper, &read(S3, "gripper"), 1e-4, "S³ gripper loss");
}

#[test]
fn s3_sampled_chunk_matches_the_papers_integration() {
    let device = Default::default();
    let policy = tiny_s3::<Cpu>(&device);
    let sampled = policy.sample(&observation(&device), tensor(S3, "start", &device)).unwrap();
    assert_close(sampled.clone(), &read(S3, "sampled"), 1e-4, "S³ 10-step sample");
    let q: Vec<f32> = sampled.narrow(2, 3, 4).into_data().to_vec().unwrap();
    for quat in q.chunks(4) {
        let norm = quat.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5 && quat[0] >= 0.0, "unit canonical quaternion: {quat:?}");
    }
}

/// bf16 products with f32 masters: the loss and its gradients stay within bf16's rounding of
/// f32's, the parameters and gradients stay f32, and the S³ geometry still runs in f32 (sampled
/// quaternions unit to f32 precision, which bf16 arithmetic — 8 mantissa bits — could not give).
#[test]
fn bf16_products_keep_the_loss_gradients_and_s3_geometry_close_to_f32() {
    use burn::backend::Autodiff;
    use burn::tensor::DType;
    use spear_models::Precision;

    type Grad = Autodiff<Cpu>;
    let device = Default::default();
    let draws = FlowDraws {
        noise: tensor(S3, "noise", &device),
        tau: fixture_tau(S3, "tau", false),
        delta: tensor::<Grad, 1>(S3, "delta", &device).reshape([2, 1, 1]),
    };
    let obs = observation::<Grad>(&device);
    let run = |precision: Precision| {
        let policy = tiny_s3::<Grad>(&device).with_precision(precision);
        assert_eq!(policy.precision(), precision);
        let loss = policy.loss(&obs, tensor(S3, "data", &device), None, &draws).unwrap();
        assert_eq!(loss.cosine.as_ref().unwrap().dtype(), DType::F32, "S³ cosine term in f32");
        assert_eq!(loss.geodesic.as_ref().unwrap().dtype(), DType::F32, "S³ geodesic term in f32");
        let value = loss.total.clone().into_scalar();
        let grads = loss.total.backward();
        let grad = |p: &burn::module::Param<Tensor<Grad, 2>>| {
            let g = p.val().grad(&grads).expect("a trained parameter has a gradient");
            assert_eq!(g.dtype(), DType::F32, "gradients of f32 parameters are f32");
            g.into_data().to_vec::<f32>().unwrap()
        };
        let grads = [
            grad(&policy.expert.action_out_proj.weight),
            grad(&policy.vlm.gemma.layers[0].self_attn.q_proj.weight),
            grad(&policy.vlm.siglip_projector.weight),
        ];
        (value, grads)
    };
    let (exact, exact_grads) = run(Precision::F32);
    let (bf16, bf16_grads) = run(Precision::Bf16);
    let relative = ((bf16 - exact) / exact).abs();
    eprintln!("tiny S³ policy loss: f32 {exact:.6}, bf16 {bf16:.6} (relative {relative:.2e})");
    assert!(bf16 != exact, "bf16 must change the arithmetic");
    assert!(relative < 2e-3, "bf16 loss {bf16} vs f32 {exact}: relative {relative:.2e} ≥ 2e-3");
    for (what, (a, b)) in ["action_out_proj", "gemma layer 0 q_proj", "siglip_projector"]
        .iter()
        .zip(exact_grads.iter().zip(&bf16_grads))
    {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let cosine = dot / (norm(a) * norm(b));
        let ratio = norm(b) / norm(a);
        eprintln!("{what} gradient: cosine {cosine:.5}, norm ratio {ratio:.4}");
        assert!(cosine > 0.999 && (ratio - 1.0).abs() < 0.02, "{what}: cosine {cosine}, norm ratio {ratio}");
    }
    // Sampling at bf16: the S³ integration (f32) keeps every quaternion unit and canonical.
    let policy = tiny_s3::<Cpu>(&device).with_precision(Precision::Bf16);
    let sampled = policy.sample(&observation(&device), tensor(S3, "start", &device)).unwrap();
    assert_close(sampled.clone(), &read(S3, "sampled"), 2e-2, "S³ sample at bf16 against the f32 reference");
    let q: Vec<f32> = sampled.narrow(2, 3, 4).into_data().to_vec().unwrap();
    for quat in q.chunks(4) {
        let norm = quat.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5 && quat[0] >= 0.0, "unit canonical quaternion: {quat:?}");
    }
}

/// burn's balanced checkpointing recomputes the memory-bound operations in the backward pass from
/// the kept outputs of the compute-bound ones: the same arithmetic, so the same gradients, bit for
/// bit, at both precisions.
#[test]
fn balanced_checkpointing_gives_the_gradients_of_none_bit_for_bit() {
    use burn::backend::Autodiff;
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    use burn::tensor::backend::AutodiffBackend;
    use spear_models::Precision;

    fn gradients<B: AutodiffBackend>(precision: Precision) -> Vec<Vec<f32>> {
        let device = Default::default();
        let policy = tiny_s3::<B>(&device).with_precision(precision);
        let draws = FlowDraws {
            noise: tensor(S3, "noise", &device),
            tau: fixture_tau(S3, "tau", false),
            delta: tensor::<B, 1>(S3, "delta", &device).reshape([2, 1, 1]),
        };
        let loss = policy.loss(&observation(&device), tensor(S3, "data", &device), None, &draws).unwrap();
        let grads = loss.total.backward();
        let grad = |p: &burn::module::Param<Tensor<B, 2>>| {
            p.val().grad(&grads).expect("a gradient").into_data().to_vec::<f32>().unwrap()
        };
        let layer = &policy.vlm.gemma.layers[0];
        vec![
            grad(&policy.expert.action_out_proj.weight),
            grad(&policy.expert.layers[0].mlp.gate_proj.weight),
            grad(&layer.self_attn.q_proj.weight),
            grad(&layer.mlp.down_proj.weight),
            grad(&policy.vlm.siglip.encoder.layers[0].mlp.fc1.weight),
            policy.expert.norm.weight.val().grad(&grads).expect("a gradient").into_data().to_vec().unwrap(),
        ]
    }
    for precision in [Precision::F32, Precision::Bf16] {
        let none = gradients::<Autodiff<Cpu>>(precision);
        let balanced = gradients::<Autodiff<Cpu, BalancedCheckpointing>>(precision);
        assert!(none.iter().all(|g| g.iter().any(|v| *v != 0.0)), "every gradient is non-zero");
        assert_eq!(none, balanced, "{precision}: balanced checkpointing changed a gradient");
    }
}

#[test]
fn wgpu_matches_the_reference_too() {
    if !spear_device::wgpu::test_should_run() {
        return;
    }
    type Gpu = burn::backend::Wgpu;
    let device = Default::default();
    // WGPU has no bf16 arithmetic: asking for it is refused by name (the CPU has it).
    let error = spear_models::Precision::Bf16.check::<Gpu>(&device).unwrap_err();
    assert!(error.to_string().contains("no bf16 arithmetic"), "{error}");
    spear_models::Precision::Bf16.check::<Cpu>(&Default::default()).unwrap();
    let policy = tiny_pi0::<Gpu>(&device);
    let sampled = policy.sample(&observation(&device), tensor(PI0, "sample_noise", &device)).unwrap();
    assert_close(sampled, &read(PI0, "sampled"), 1e-4, "π0 10-step sample on WGPU");
    let s3 = policy.with_rotation(RotationMode::S3).unwrap();
    let sampled = s3.sample(&observation(&device), tensor(S3, "start", &device)).unwrap();
    assert_close(sampled, &read(S3, "sampled"), 1e-4, "S³ 10-step sample on WGPU");
}

/// Writes the fixture's tensors under new names (and its config) into a fresh folder.
fn renamed_copy(tag: &str, rename: impl Fn(&str) -> String) -> std::path::PathBuf {
    let source = fixtures().join("pi0-tiny");
    let checkpoint = spear_models::import::checkpoint::Checkpoint::open(&source).unwrap();
    let dir = std::env::temp_dir().join(format!("spear-pi0-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(source.join("config.json"), dir.join("config.json")).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = checkpoint
        .tensors
        .iter()
        .map(|(n, t)| (rename(n), t.shape.clone(), t.read().unwrap().to_vec().unwrap()))
        .collect();
    spear_models::store::write_f32_safetensors(&tensors, &dir.join("model.safetensors")).unwrap();
    dir
}

/// transformers 5's in-memory names for the names `save_pretrained` wrote.
fn in_memory_name(name: &str) -> String {
    let rules = [
        ("paligemma_with_expert.paligemma.model.language_model.model.", "model.vlm.language_model."),
        ("paligemma_with_expert.paligemma.model.", "model.vlm."),
        ("paligemma_with_expert.gemma_expert.model.", "model.dit."),
        ("paligemma_with_expert.gemma_expert.lm_head.", "model.dit.embed_tokens."),
        ("action_in_proj.", "embed_action_time.action_in_proj."),
        ("state_proj.", "embed_action_time.state_proj."),
        ("action_time_mlp_", "embed_action_time.action_time_mlp_"),
    ];
    rules
        .iter()
        .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")))
        .unwrap_or_else(|| name.to_string())
}

#[test]
fn lerobot_transformers_and_openpi_layouts_load_the_same_policy() {
    let device = Default::default();
    let obs = observation::<Cpu>(&device);
    let noise: Tensor<Cpu, 3> = tensor(PI0, "sample_noise", &device);
    let want = tiny_pi0::<Cpu>(&device).sample(&obs, noise.clone()).unwrap().into_data();
    let lerobot = renamed_copy("lerobot", |n| format!("model.{}", n.replace("action_time_mlp", "time_mlp")));
    let in_memory = renamed_copy("in-memory", in_memory_name);
    // openpi's converter saves with safetensors' `save_model`, which may keep a tied tensor under
    // the LM head's name only.
    let head_only = renamed_copy("head-only", |n| {
        n.replace("paligemma.model.language_model.model.embed_tokens", "paligemma.lm_head")
    });
    for dir in [lerobot, in_memory, head_only] {
        let policy = load_policy::<Cpu>(&dir, &device).unwrap().with_cameras(2);
        let got = policy.sample(&obs, noise.clone()).unwrap();
        assert_close(got, &want, 0.0, &format!("sample from {}", dir.display()));
    }
}

#[test]
fn saved_policy_reloads_to_identical_samples() {
    let device = Default::default();
    let policy = tiny_s3::<Cpu>(&device);
    let dir = std::env::temp_dir().join(format!("spear-policy-save-{}", std::process::id()));
    spear_models::store::save_policy(&policy, &dir).unwrap();
    let reloaded = load_policy::<Cpu>(&dir, &device).unwrap();
    assert_eq!(reloaded.config(), policy.config(), "config round trip (S³ mode, 2 cameras included)");
    let obs = observation::<Cpu>(&device);
    let start: Tensor<Cpu, 3> = tensor(S3, "start", &device);
    let want = policy.sample(&obs, start.clone()).unwrap().into_data();
    assert_close(reloaded.sample(&obs, start).unwrap(), &want, 0.0, "reloaded sample");
}

#[test]
fn invalid_inputs_get_clear_errors() {
    let device = Default::default();
    let policy = tiny_s3::<Cpu>(&device);
    let start: Tensor<Cpu, 3> = tensor(S3, "start", &device);
    let error = |obs: Observation<Cpu>| policy.sample(&obs, start.clone()).unwrap_err().to_string();

    let mut obs = observation::<Cpu>(&device);
    obs.cameras.pop();
    assert!(
        error(obs)
            .contains("expected 2 camera images (main, then wrist), got 1 (is the wrist camera missing?)")
    );

    let mut obs = observation::<Cpu>(&device);
    obs.cameras[1] = Tensor::zeros([2, 3, 28, 56], &device);
    let e = error(obs);
    assert!(
        e.contains("camera 1 (wrist 1) must be [2, 3, 56, 56]") && e.contains("got [2, 3, 28, 56]"),
        "{e}"
    );

    let mut obs = observation::<Cpu>(&device);
    obs.state = Tensor::zeros([2, 5], &device);
    assert!(error(obs).contains("state must be [2, 6], got [2, 5]"));

    let mut obs = observation::<Cpu>(&device);
    obs.state = Tensor::from_floats([[0.0, f32::NAN, 0.0, 0.0, 0.0, 0.0]; 2], &device);
    assert!(error(obs).contains("state contains NaN"));

    let mut obs = observation::<Cpu>(&device);
    obs.cameras[0] = obs.cameras[0].clone().mask_fill(obs.cameras[0].clone().greater_elem(0.5), f32::NAN);
    assert!(error(obs).contains("camera 0 (main) contains NaN"));

    let mut obs = observation::<Cpu>(&device);
    obs.prompts[1] = vec![2, 5000];
    assert!(error(obs).contains("prompt 1 has token id 5000 outside the vocabulary (1024)"));

    let obs = observation::<Cpu>(&device);
    let e = policy.sample(&obs, start.narrow(1, 0, 5)).unwrap_err().to_string();
    assert!(e.contains("noise must be [2, 6, 8], got [2, 5, 8]"), "{e}");
}

#[test]
fn configs_that_cannot_work_are_rejected() {
    use spear_models::SpearPolicyConfig;
    let mut config = SpearPolicyConfig::tiny();
    config.expert.gemma.num_layers = 3;
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("the action expert's num_layers (3) must equal the VLM's (2)"), "{e}");
    let mut config = SpearPolicyConfig::tiny();
    config.expert.action_dim = 32;
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("S³ rotations need the action layout"), "{e}");
}

/// A tiny SPEAR-1 (S³ mode, MoGe fused and frozen, small images) learns a fixed synthetic batch:
/// its loss on held-out draws of noise and times falls at least 10× within 500 Adam steps, with
/// fresh noise, times and integration steps drawn every step.
#[test]
fn tiny_spear1_learns_a_fixed_batch() {
    use burn::backend::Autodiff;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::tensor::Distribution;
    use rand::{SeedableRng, rngs::StdRng};
    use spear_geometry::tensor::{canonicalize, sample_uniform};
    use spear_models::SpearPolicyConfig;
    use spear_models::vlm::Trainable;

    type Grad = Autodiff<Cpu>;
    let device = Default::default();
    Grad::seed(&device, 11);
    let mut config = SpearPolicyConfig::tiny();
    config.vlm.image_size = [56, 56];
    config.vlm.wrist_image_size = [28, 28];
    let mut policy = config.init::<Grad>(&device).unwrap().with_trainable(Trainable::VLA, true);
    let batch = 4;
    let obs = Observation::<Grad> {
        cameras: vec![
            Tensor::random([batch, 3, 56, 56], Distribution::Uniform(0.0, 1.0), &device),
            Tensor::random([batch, 3, 28, 28], Distribution::Uniform(0.0, 1.0), &device),
        ],
        camera_present: None,
        prompts: (0..batch as u32).map(|b| vec![2, 10 + b, 20 + 3 * b, 260]).collect(),
        state: Tensor::random([batch, 8], Distribution::Normal(0.0, 1.0), &device),
    };
    let translation = Tensor::<Grad, 3>::random([batch, 5, 3], Distribution::Normal(0.0, 0.5), &device);
    let quaternion = canonicalize(sample_uniform::<Grad>(batch * 5, &device)).reshape([batch, 5, 4]);
    let gripper = Tensor::<Grad, 3>::random([batch, 5, 1], Distribution::Uniform(0.0, 1.0), &device)
        .greater_elem(0.5)
        .float();
    let actions = Tensor::cat(vec![translation, quaternion, gripper], 2).detach();
    let mut rng = StdRng::seed_from_u64(5);
    let held_out: Vec<_> = (0..4).map(|_| policy.draw(batch, &mut rng, &device)).collect();
    let evaluate = |policy: &SpearPolicy<Grad>| -> f32 {
        let losses =
            held_out.iter().map(|d| policy.loss(&obs, actions.clone(), None, d).unwrap().total.into_scalar());
        losses.sum::<f32>() / held_out.len() as f32
    };
    let before = evaluate(&policy);
    let mut optimizer = AdamConfig::new().init();
    let steps = 800;
    for step in 0..steps {
        let draws = policy.draw(batch, &mut rng, &device);
        let loss = policy.loss(&obs, actions.clone(), None, &draws).unwrap().total;
        let grads = GradientsParams::from_grads(loss.backward(), &policy);
        // Cosine decay from 3e-3.
        let lr = 3e-3 * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / steps as f64).cos());
        policy = optimizer.step(lr, policy, grads);
    }
    let after = evaluate(&policy);
    eprintln!("tiny SPEAR-1 held-out loss: {before:.4} → {after:.4} ({:.1}× lower)", before / after);
    assert!(after * 10.0 <= before, "loss fell only from {before} to {after}");
}

#[test]
fn pi0_configs_of_openpi_and_lerobot_are_read() {
    use serde_json::json;
    use spear_models::import::hf_config::policy_config;
    // openpi's converter writes only these fields.
    let openpi = json!({"action_dim": 32, "action_horizon": 10, "paligemma_variant": "gemma_2b",
                        "action_expert_variant": "gemma_300m", "precision": "bfloat16"});
    let config = policy_config(&openpi).unwrap();
    assert_eq!((config.horizon, config.expert.action_dim, config.expert.state_dim), (10, 32, 32));
    assert_eq!(
        (config.cameras, config.rotation, config.vlm.gemma.vocab_size),
        (3, RotationMode::Linear, 257152)
    );
    let lerobot = json!({"type": "pi0", "chunk_size": 50, "max_action_dim": 32, "max_state_dim": 32,
                         "num_inference_steps": 5, "input_features": {
                             "observation.images.base_0_rgb": {"type": "VISUAL", "shape": [3, 224, 224]},
                             "observation.images.left_wrist_0_rgb": {"type": "VISUAL", "shape": [3, 224, 224]},
                             "observation.state": {"type": "STATE", "shape": [8]}}});
    let config = policy_config(&lerobot).unwrap();
    assert_eq!((config.cameras, config.flow.num_steps, config.horizon), (2, 5, 50));
    let pi05 = json!({"type": "pi0", "paligemma_variant": "gemma_2b", "action_expert_variant": "gemma_2b"});
    let e = policy_config(&pi05).unwrap_err().to_string();
    assert!(e.contains("action_expert_variant \"gemma_2b\" is not supported"), "{e}");
}

#[test]
fn vla_stage_trains_the_vlm_through_shared_attention_but_not_moge() {
    use burn::backend::Autodiff;
    use burn::tensor::Distribution;
    use rand::{SeedableRng, rngs::StdRng};
    use spear_models::SpearPolicyConfig;
    use spear_models::vlm::Trainable;

    type Grad = Autodiff<Cpu>;
    let device = Default::default();
    let mut config = SpearPolicyConfig::tiny();
    config.vlm.image_size = [28, 28];
    config.vlm.wrist_image_size = [28, 28];
    let policy = config.init::<Grad>(&device).unwrap().with_trainable(Trainable::VLA, true);
    let obs = Observation::<Grad> {
        cameras: (0..2)
            .map(|_| Tensor::random([1, 3, 28, 28], Distribution::Uniform(0.0, 1.0), &device))
            .collect(),
        camera_present: None,
        prompts: vec![vec![2, 7, 260]],
        state: Tensor::zeros([1, 8], &device),
    };
    let draws = policy.draw(1, &mut StdRng::seed_from_u64(0), &device);
    let actions = draws.noise.clone().detach();
    let grads = policy.loss(&obs, actions, None, &draws).unwrap().total.backward();
    assert!(policy.expert.action_out_proj.weight.grad(&grads).is_some(), "the expert trains");
    assert!(policy.vlm.gemma.layers[0].self_attn.k_proj.weight.grad(&grads).is_some(), "Gemma trains");
    assert!(policy.vlm.siglip.post_layernorm.gamma.grad(&grads).is_some(), "SigLIP trains");
    assert!(policy.vlm.moge.as_ref().unwrap().norm.gamma.grad(&grads).is_none(), "MoGe is frozen");
}
