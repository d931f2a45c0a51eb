//! Checks a backend's tensor API against the f64 scalar API on a random batch.
//!
//! The tests run it on every backend CI has, and `spear doctor` runs it on the user's device, so
//! that "does my GPU compute the rotation flow right?" has a one-command answer.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use nalgebra::{Quaternion, UnitQuaternion};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::StandardNormal;

use crate::{quat, s3};

/// The largest absolute difference between one batched operation and the scalar reference.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    /// The operation, named as in [`crate::tensor`].
    pub name: &'static str,
    /// Max over the batch and components of `|tensor − scalar|`; NaN if the backend produced NaN
    /// or an output of the wrong size.
    pub max_abs_error: f64,
}

/// Random inputs for one comparison: canonical noise/data pairs whose arc angle stays 0.05 rad
/// away from π (where f32 loses digits as `1/sin θ`; the stability tests cover that end).
struct Batch {
    noise: Vec<UnitQuaternion<f64>>,
    data: Vec<UnitQuaternion<f64>>,
    velocity: Vec<Quaternion<f64>>,
    tau: Vec<f64>,
    delta: Vec<f64>,
}

impl Batch {
    fn draw(n: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut batch = Batch { noise: vec![], data: vec![], velocity: vec![], tau: vec![], delta: vec![] };
        while batch.noise.len() < n {
            let noise = quat::canonicalize(&quat::sample_uniform(&mut rng));
            let data = quat::canonicalize(&quat::sample_uniform(&mut rng));
            if s3::arc_angle(&noise, &data) > std::f64::consts::PI - 0.05 {
                continue;
            }
            let v: [f64; 4] = std::array::from_fn(|_| rng.sample(StandardNormal));
            let tau: f64 = rng.random();
            batch.delta.push(s3::sample_delta(&mut rng, tau));
            batch.noise.push(noise);
            batch.data.push(data);
            batch.velocity.push(Quaternion::new(v[0], v[1], v[2], v[3]));
            batch.tau.push(tau);
        }
        batch
    }
}

fn quats<B: Backend>(qs: impl Iterator<Item = Quaternion<f64>>, device: &B::Device) -> Tensor<B, 2> {
    let values: Vec<f32> = qs.flat_map(|q| [q.w, q.i, q.j, q.k]).map(|x| x as f32).collect();
    let n = values.len() / 4;
    Tensor::from_data(TensorData::new(values, [n, 4]), device)
}

fn column<B: Backend>(xs: &[f64], device: &B::Device) -> Tensor<B, 2> {
    let values: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(values, [xs.len(), 1]), device)
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn components(qs: impl Iterator<Item = Quaternion<f64>>) -> Vec<f64> {
    qs.flat_map(|q| [q.w, q.i, q.j, q.k]).collect()
}

/// Max `|actual − expected|` over paired entries; NaN if any entry is NaN or the lengths differ
/// (a wrongly shaped output is as wrong as a wrong number). NaN never hides behind `max`.
pub fn max_abs_error(actual: &[f64], expected: &[f64]) -> f64 {
    if actual.len() != expected.len() {
        return f64::NAN;
    }
    actual.iter().zip(expected).fold(0.0, |worst: f64, (a, e)| {
        let error = (a - e).abs();
        if error.is_nan() || worst.is_nan() { f64::NAN } else { worst.max(error) }
    })
}

fn op(name: &'static str, actual: Vec<f64>, expected: Vec<f64>) -> OpError {
    OpError { name, max_abs_error: max_abs_error(&actual, &expected) }
}

/// Runs every batched operation of [`crate::tensor`] on `n` random inputs drawn from `seed`, on
/// `device`, and returns its max absolute error against the f64 scalar API. In f32, errors below
/// 1e-4 are rounding.
pub fn compare_with_scalar<B: Backend>(device: &B::Device, n: usize, seed: u64) -> Vec<OpError> {
    let b = Batch::draw(n, seed);
    let unit = |qs: &[UnitQuaternion<f64>]| quats::<B>(qs.iter().map(|q| q.into_inner()), device);
    let (noise, data) = (unit(&b.noise), unit(&b.data));
    let velocity = quats::<B>(b.velocity.iter().copied(), device);
    let (tau, delta) = (column::<B>(&b.tau, device), column::<B>(&b.delta, device));
    let pairs = || b.noise.iter().zip(&b.data);
    let noisy: Vec<_> = pairs().zip(&b.tau).map(|((e, x), &t)| s3::interpolate(e, x, t)).collect();
    let noisy_tensor = super::interpolate(noise.clone(), data.clone(), tau.clone());

    vec![
        op(
            "hamilton",
            values(super::hamilton(noise.clone(), velocity.clone())),
            components(b.noise.iter().zip(&b.velocity).map(|(q, v)| quat::hamilton(q, v))),
        ),
        op(
            "canonicalize",
            values(super::canonicalize(noise.clone().neg())),
            components(
                b.noise.iter().map(|q| {
                    quat::canonicalize(&UnitQuaternion::new_unchecked(-q.into_inner())).into_inner()
                }),
            ),
        ),
        op("interpolate", values(noisy_tensor.clone()), components(noisy.iter().map(|q| q.into_inner()))),
        op(
            "target_velocity",
            values(super::target_velocity(noise.clone(), data.clone(), tau.clone())),
            components(pairs().zip(&b.tau).map(|((e, x), &t)| s3::target_velocity(e, x, t))),
        ),
        op(
            "integrate",
            values(super::integrate(noisy_tensor, velocity.clone(), delta.clone())),
            components(
                noisy
                    .iter()
                    .zip(&b.velocity)
                    .zip(&b.delta)
                    .map(|((q, v), &d)| s3::integrate(q, v, d).into_inner()),
            ),
        ),
        op(
            "geodesic_loss",
            values(super::geodesic_loss(noise.clone(), data.clone())),
            pairs().map(|(e, x)| s3::geodesic_loss(e, x)).collect(),
        ),
        op(
            "cosine_loss",
            values(super::cosine_loss(velocity.clone(), noise.clone())),
            b.velocity.iter().zip(&b.noise).map(|(v, q)| s3::cosine_loss(v, &q.into_inner())).collect(),
        ),
        op(
            "rotation_loss",
            // One-step chunks ([n, 1, 4]) so that every element is compared.
            values(super::rotation_loss(
                noise.unsqueeze_dim::<3>(1),
                data.unsqueeze_dim(1),
                velocity.unsqueeze_dim(1),
                tau.unsqueeze_dim(1),
                delta.unsqueeze_dim(1),
            )),
            (0..n)
                .map(|i| {
                    let (e, x, v) = (&b.noise[i..=i], &b.data[i..=i], &b.velocity[i..=i]);
                    s3::rotation_loss(e, x, v, b.tau[i], b.delta[i])
                        .expect("one-element chunks have equal lengths")
                })
                .collect(),
        ),
    ]
}
