//! The burn tensor API: equal to the scalar API on random batches (CPU and WGPU), gradients equal
//! to finite differences, and no NaN at the singular ends.

use burn::backend::{Autodiff, Flex, Wgpu};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use nalgebra::{Quaternion, UnitQuaternion};
use rand::{Rng, SeedableRng, rngs::StdRng};
use spear_geometry::{s3, tensor};

type Cpu = Flex;
type Grad = Autodiff<Flex>;

/// f32 rounding through a dozen trig and arithmetic operations on O(1) values.
const F32_TOL: f64 = 1e-4;

fn assert_backend_matches_scalar<B: Backend>(device: &B::Device, backend: &str) {
    for seed in [0, 1, 2] {
        for e in tensor::selfcheck::compare_with_scalar::<B>(device, 256, seed) {
            assert!(
                e.max_abs_error <= F32_TOL,
                "{backend} {}: max error {} (seed {seed})",
                e.name,
                e.max_abs_error
            );
        }
    }
}

#[test]
fn cpu_backend_matches_the_scalar_api() {
    assert_backend_matches_scalar::<Cpu>(&Default::default(), "cpu (flex)");
}

#[test]
fn autodiff_backend_matches_the_scalar_api() {
    assert_backend_matches_scalar::<Grad>(&Default::default(), "autodiff<flex>");
}

/// WGPU runs through Mesa's lavapipe in CI. Elsewhere it runs where a WGPU adapter opens.
#[test]
fn wgpu_backend_matches_the_scalar_api() {
    if !spear_device::wgpu::test_should_run() {
        return;
    }
    assert_backend_matches_scalar::<Wgpu>(&Default::default(), "wgpu");
}

fn tensor_of<B: Backend>(values: &[[f64; 4]], device: &B::Device) -> Tensor<B, 2> {
    let flat: Vec<f32> = values.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(flat, [values.len(), 4]), device)
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn random_rows(rng: &mut StdRng, n: usize) -> Vec<[f64; 4]> {
    (0..n).map(|_| std::array::from_fn(|_| rng.random_range(-1.0..1.0))).collect()
}

/// `n` random canonical unit quaternions as rows.
fn canonical_rows(rng: &mut StdRng, n: usize) -> Vec<[f64; 4]> {
    random_rows(rng, n)
        .iter()
        .map(|r| {
            let u = spear_geometry::quat::canonicalize(&UnitQuaternion::new_normalize(q(r)));
            [u.w, u.i, u.j, u.k]
        })
        .collect()
}

fn q(v: &[f64; 4]) -> Quaternion<f64> {
    Quaternion::new(v[0], v[1], v[2], v[3])
}

/// Central finite difference of `f` with respect to each component of each row.
fn finite_difference(rows: &[[f64; 4]], f: impl Fn(usize, &[f64; 4]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    let mut out = vec![];
    for (i, row) in rows.iter().enumerate() {
        for c in 0..4 {
            let (mut plus, mut minus) = (*row, *row);
            plus[c] += h;
            minus[c] -= h;
            out.push((f(i, &plus) - f(i, &minus)) / (2.0 * h));
        }
    }
    out
}

fn assert_gradient(name: &str, autodiff: &[f64], fd: &[f64]) {
    for (i, (a, f)) in autodiff.iter().zip(fd).enumerate() {
        assert!(
            (a - f).abs() <= 2e-3 * (1.0 + f.abs()),
            "{name}: gradient[{i}] autodiff {a} vs finite difference {f}"
        );
    }
}

#[test]
fn geodesic_and_cosine_loss_gradients_equal_finite_differences() {
    let device = Default::default();
    let mut rng = StdRng::seed_from_u64(11);
    let (a_rows, b_rows) = (random_rows(&mut rng, 16), random_rows(&mut rng, 16));
    let unit = |v: &[f64; 4]| UnitQuaternion::new_unchecked(q(v));

    let a = tensor_of::<Grad>(&a_rows, &device).require_grad();
    let b = tensor_of::<Grad>(&b_rows, &device).require_grad();
    let grads = tensor::geodesic_loss(a.clone(), b.clone()).sum().backward();
    let fd_a = finite_difference(&a_rows, |i, x| s3::geodesic_loss(&unit(x), &unit(&b_rows[i])));
    let fd_b = finite_difference(&b_rows, |i, x| s3::geodesic_loss(&unit(&a_rows[i]), &unit(x)));
    assert_gradient("geodesic d/da", &to_vec(a.grad(&grads).unwrap()), &fd_a);
    assert_gradient("geodesic d/db", &to_vec(b.grad(&grads).unwrap()), &fd_b);

    let v = tensor_of::<Grad>(&a_rows, &device).require_grad();
    let u = tensor_of::<Grad>(&b_rows, &device).require_grad();
    let grads = tensor::cosine_loss(v.clone(), u.clone()).sum().backward();
    let fd_v = finite_difference(&a_rows, |i, x| s3::cosine_loss(&q(x), &q(&b_rows[i])));
    let fd_u = finite_difference(&b_rows, |i, x| s3::cosine_loss(&q(&a_rows[i]), &q(x)));
    assert_gradient("cosine d/dv", &to_vec(v.grad(&grads).unwrap()), &fd_v);
    assert_gradient("cosine d/du", &to_vec(u.grad(&grads).unwrap()), &fd_u);
}

#[test]
fn rotation_loss_gradient_equals_finite_differences() {
    let device = Default::default();
    let mut rng = StdRng::seed_from_u64(12);
    let (noise, data) = (canonical_rows(&mut rng, 8), canonical_rows(&mut rng, 8));
    let predicted = random_rows(&mut rng, 8);
    let (tau, delta) = (0.3, 0.2);
    let chunk = |rows: &[[f64; 4]]| tensor_of::<Grad>(rows, &device).unsqueeze_dim::<3>(0);
    let v = chunk(&predicted).require_grad();
    let scalar_tensor = |x: f64| Tensor::<Grad, 3>::full([1, 1, 1], x, &device);
    let loss = tensor::rotation_loss(
        chunk(&noise),
        chunk(&data),
        v.clone(),
        scalar_tensor(tau),
        scalar_tensor(delta),
    );
    let grads = loss.sum().backward();
    let units =
        |rows: &[[f64; 4]]| rows.iter().map(|r| UnitQuaternion::new_unchecked(q(r))).collect::<Vec<_>>();
    let fd = finite_difference(&predicted, |i, x| {
        let mut p: Vec<_> = predicted.iter().map(q).collect();
        p[i] = q(x);
        s3::rotation_loss(&units(&noise), &units(&data), &p, tau, delta).unwrap()
    });
    assert_gradient("rotation loss d/dv", &to_vec(v.grad(&grads).unwrap()), &fd);
}

#[test]
fn values_and_gradients_stay_finite_at_zero_and_antipodal_angles() {
    let device = Default::default();
    let base = [0.5f64, -0.5, 0.5, 0.5];
    let tiny = [0.5 + 1e-7, -0.5, 0.5 - 1e-7, 0.5];
    let neg = base.map(|x| -x);
    let near_neg = tiny.map(|x| -x);
    let zero = [0.0; 4];
    // (noise, data) pairs: identical, 1e-7 apart, antipodal, near antipodal.
    let noise_rows = [base, base, base, base];
    let data_rows = [base, tiny, neg, near_neg];
    for tau_value in [0.0, 0.5, 1.0] {
        let noise = tensor_of::<Grad>(&noise_rows, &device).require_grad();
        let data = tensor_of::<Grad>(&data_rows, &device).require_grad();
        let velocity = tensor_of::<Grad>(&[zero, zero, base, tiny], &device).require_grad();
        let tau = Tensor::<Grad, 2>::full([4, 1], tau_value, &device).require_grad();
        let dt = Tensor::<Grad, 2>::full([4, 1], 0.1, &device);
        let noisy = tensor::interpolate(noise.clone(), data.clone(), tau.clone());
        let target = tensor::target_velocity(noise.clone(), data.clone(), tau.clone());
        let outputs = [
            noisy.clone(),
            target.clone(),
            tensor::integrate(noisy.clone(), velocity.clone(), dt.clone()),
            tensor::geodesic_loss(noisy.clone(), data.clone()),
            tensor::cosine_loss(velocity.clone(), target.clone()),
            tensor::rotation_loss(
                noise.clone().unsqueeze_dim::<3>(1),
                data.clone().unsqueeze_dim(1),
                velocity.clone().unsqueeze_dim(1),
                tau.clone().unsqueeze_dim(1),
                dt.unsqueeze_dim(1),
            )
            .squeeze_dim(1),
        ];
        let norms = to_vec(tensor::norm(noisy.clone()));
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "‖q^τ‖ at τ = {tau_value}: {norms:?}");
        let mut total = Tensor::<Grad, 1>::zeros([1], &device);
        for (i, out) in outputs.into_iter().enumerate() {
            let values = to_vec(out.clone());
            assert!(values.iter().all(|x| x.is_finite()), "output {i} at τ = {tau_value}: {values:?}");
            total = total + out.sum();
        }
        let grads = total.backward();
        for (name, t) in [("noise", noise), ("data", data), ("velocity", velocity)] {
            let g = to_vec(t.grad(&grads).unwrap());
            assert!(g.iter().all(|x| x.is_finite()), "d/d{name} at τ = {tau_value}: {g:?}");
        }
        let g = to_vec(tau.grad(&grads).unwrap());
        assert!(g.iter().all(|x| x.is_finite()), "d/dτ at τ = {tau_value}: {g:?}");
    }
    // Identical inputs interpolate to themselves.
    let noise = tensor_of::<Cpu>(&[base], &Default::default());
    let out =
        to_vec(tensor::interpolate(noise.clone(), noise, Tensor::full([1, 1], 0.3, &Default::default())));
    for (o, b) in out.iter().zip(base) {
        assert!((o - b).abs() < 1e-6);
    }
}

#[test]
fn antipodal_pairs_follow_the_scalar_apis_circle_on_s3() {
    let device = Default::default();
    let noise = [0.5f64, -0.5, 0.5, 0.5];
    let data = noise.map(|x| -x);
    let unit = |v: &[f64; 4]| UnitQuaternion::new_unchecked(q(v));
    for tau in [0.0, 0.3, 0.5, 0.8, 1.0] {
        let t = Tensor::<Cpu, 2>::full([1, 1], tau, &device);
        let point =
            to_vec(tensor::interpolate(tensor_of(&[noise], &device), tensor_of(&[data], &device), t.clone()));
        let velocity =
            to_vec(tensor::target_velocity(tensor_of(&[noise], &device), tensor_of(&[data], &device), t));
        let expected_point = s3::interpolate(&unit(&noise), &unit(&data), tau);
        let expected_velocity = s3::target_velocity(&unit(&noise), &unit(&data), tau);
        let norm: f64 = point.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "‖q^τ‖ = {norm} at τ = {tau}");
        let expected_point = [expected_point.w, expected_point.i, expected_point.j, expected_point.k];
        let expected_velocity =
            [expected_velocity.w, expected_velocity.i, expected_velocity.j, expected_velocity.k];
        for (a, e) in point.iter().zip(expected_point).chain(velocity.iter().zip(expected_velocity)) {
            assert!(
                (a - e).abs() < 1e-5,
                "τ = {tau}: tensor {point:?} {velocity:?} vs scalar {expected_point:?} {expected_velocity:?}"
            );
        }
    }
}

#[test]
fn rotation_loss_sums_each_chunk_like_the_scalar_api() {
    let device = Default::default();
    let mut rng = StdRng::seed_from_u64(13);
    let (batch, horizon) = (3, 5);
    let (noise, data) =
        (canonical_rows(&mut rng, batch * horizon), canonical_rows(&mut rng, batch * horizon));
    let predicted = random_rows(&mut rng, batch * horizon);
    let taus = [0.1, 0.5, 0.95];
    let deltas = [0.3, 0.05, 0.01];
    let chunks = |rows: &[[f64; 4]]| tensor_of::<Cpu>(rows, &device).reshape([batch, horizon, 4]);
    let per_chunk =
        |xs: [f64; 3]| Tensor::<Cpu, 1>::from_floats(xs.map(|x| x as f32), &device).reshape([batch, 1, 1]);
    let loss = tensor::rotation_loss(
        chunks(&noise),
        chunks(&data),
        chunks(&predicted),
        per_chunk(taus),
        per_chunk(deltas),
    );
    assert_eq!(loss.dims(), [batch, 1, 1]);
    let loss = to_vec(loss);
    for b in 0..batch {
        let range = b * horizon..(b + 1) * horizon;
        let units = |rows: &[[f64; 4]]| {
            rows[range.clone()].iter().map(|r| UnitQuaternion::new_unchecked(q(r))).collect::<Vec<_>>()
        };
        let expected = s3::rotation_loss(
            &units(&noise),
            &units(&data),
            &predicted[range.clone()].iter().map(q).collect::<Vec<_>>(),
            taus[b],
            deltas[b],
        )
        .unwrap();
        assert!((loss[b] - expected).abs() < 1e-4 * horizon as f64, "chunk {b}: {} vs {expected}", loss[b]);
    }
}

#[test]
fn tensor_sampling_draws_from_the_right_sets() {
    let device = Default::default();
    Cpu::seed(&device, 5);
    let q = tensor::sample_uniform::<Cpu>(20_000, &device);
    let rows = to_vec(q.clone());
    for row in rows.chunks(4) {
        let n: f64 = row.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
    }
    let w_mean_abs = rows.chunks(4).map(|r| r[0].abs()).sum::<f64>() / 20_000.0;
    assert!((w_mean_abs - 4.0 / (3.0 * std::f64::consts::PI)).abs() < 0.01, "E|w| = {w_mean_abs}");
    let canonical = to_vec(tensor::canonicalize(q));
    assert!(canonical.chunks(4).all(|r| r[0] >= 0.0));

    let mut rng = StdRng::seed_from_u64(9);
    let tau = tensor::sample_beta::<Cpu, _>(&mut rng, 50_000, 1.5, 1.0, &device).unwrap();
    let taus = to_vec(tau.clone());
    let mean = taus.iter().sum::<f64>() / taus.len() as f64;
    assert!((mean - 0.6).abs() < 5e-3, "Beta(1.5, 1) mean {mean}");
    assert!(taus.iter().all(|t| (0.0..=1.0).contains(t)));
    assert!(tensor::sample_beta::<Cpu, _>(&mut rng, 4, -1.0, 1.0, &device).is_err());
}

#[test]
#[should_panic(expected = "expected quaternions (w, x, y, z) in the last dimension")]
fn a_non_quaternion_tensor_is_refused_by_name() {
    let t = Tensor::<Cpu, 2>::zeros([2, 3], &Default::default());
    tensor::hamilton(t.clone(), t);
}

#[test]
fn cosine_loss_gradient_is_bounded_for_tiny_predictions() {
    let device = Default::default();
    for scale in [1e-2, 1e-4, 1e-6, 0.0] {
        let v = tensor_of::<Grad>(&[[0.3 * scale, -0.2 * scale, 0.5 * scale, 0.1 * scale]], &device)
            .require_grad();
        let u = tensor_of::<Grad>(&[[0.1, 0.7, -0.2, 0.4]], &device);
        let grads = tensor::cosine_loss(v.clone(), u).sum().backward();
        let g = to_vec(v.grad(&grads).unwrap());
        let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        // ∝ 1/max(‖v‖, 1e-3): at most ~1e3.
        assert!(norm.is_finite() && norm <= 1.01e3 * (1.0 + 1e-3), "‖v‖ = {scale}: gradient norm {norm}");
    }
}
