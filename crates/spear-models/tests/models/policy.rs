//! SPEAR-1's policy against transformers' PI0 on a tiny random π0 (fixtures from
//! `tools/reference/pi0_fixtures.py`): linear-mode velocity, loss and sampling; the S³ mode's loss
//! terms and sampled chunk against the fixture's numpy re-implementation of the paper's equations.

use std::path::Path;

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
    let dir = fixtures().join("pi0-tiny");
    let policy = load_policy::<B>(Path::new(&dir), device).unwrap().with_cameras(2);
    policy.with_rotation(RotationMode::S3).unwrap()
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
