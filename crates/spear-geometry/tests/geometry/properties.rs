//! Properties of the scalar API that hold for all inputs.

use std::f64::consts::PI;

use nalgebra::{Quaternion, UnitQuaternion, Vector3};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};
use spear_geometry::{GeometryError, Pose, flow, quat, rotation, s3};

fn any_unit() -> impl Strategy<Value = UnitQuaternion<f64>> {
    prop::array::uniform4(-1.0f64..1.0)
        .prop_filter("not near zero", |v| v.iter().map(|x| x * x).sum::<f64>() > 0.01)
        .prop_map(|[w, x, y, z]| UnitQuaternion::new_normalize(Quaternion::new(w, x, y, z)))
}

fn any_vec4() -> impl Strategy<Value = Quaternion<f64>> {
    prop::array::uniform4(-3.0f64..3.0).prop_map(|[w, x, y, z]| Quaternion::new(w, x, y, z))
}

fn dist(a: &Quaternion<f64>, b: &Quaternion<f64>) -> f64 {
    (a - b).norm()
}

proptest! {
    #[test]
    fn scaling_an_angle_keeps_the_axis_and_is_undone_below_the_cap(
        q in any_unit(), factor in 0.2f64..6.0,
    ) {
        let q = quat::canonicalize(&q);
        let scaled = quat::scale_angle(&q, factor);
        prop_assert!(scaled.w >= 0.0);
        let want = (q.angle() * factor).min(PI);
        prop_assert!((scaled.angle() - want).abs() < 1e-9, "{} vs {want}", scaled.angle());
        if q.angle() > 1e-6 && want < PI - 1e-6 {
            let (a, b) = (q.axis().unwrap(), scaled.axis().unwrap());
            prop_assert!((a.dot(&b) - 1.0).abs() < 1e-9);
            prop_assert!(quat::scale_angle(&scaled, 1.0 / factor).angle_to(&q) < 1e-9);
        }
        prop_assert!(quat::scale_angle(&UnitQuaternion::identity(), factor).angle() == 0.0);
    }

    #[test]
    fn interpolation_starts_at_noise_ends_at_data_and_stays_unit(
        noise in any_unit(), data in any_unit(), tau in 0.0f64..1.0,
    ) {
        prop_assert!(s3::interpolate(&noise, &data, 0.0).angle_to(&noise) < 1e-7);
        prop_assert!(dist(&s3::interpolate(&noise, &data, 0.0), &noise) < 1e-12);
        prop_assert!(dist(&s3::interpolate(&noise, &data, 1.0), &data) < 1e-12);
        prop_assert!((s3::interpolate(&noise, &data, tau).norm() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn target_velocity_is_the_derivative_of_interpolation(
        noise in any_unit(), data in any_unit(), tau in 0.0f64..1.0,
    ) {
        prop_assume!(s3::arc_angle(&noise, &data) < PI - 1e-2);
        let h = 1e-6;
        let fd = (s3::interpolate(&noise, &data, tau + h).into_inner()
            - s3::interpolate(&noise, &data, tau - h).into_inner()) / (2.0 * h);
        let u = s3::target_velocity(&noise, &data, tau);
        prop_assert!(dist(&fd, &u) < 1e-6, "fd {fd:?} vs u {u:?}");
        // Tangent to S³ at q^τ, with speed θ.
        prop_assert!(s3::interpolate(&noise, &data, tau).coords.dot(&u.coords).abs() < 1e-9);
        prop_assert!((u.norm() - s3::arc_angle(&noise, &data)).abs() < 1e-9);
    }

    #[test]
    fn integrating_the_target_velocity_from_tau_to_one_reaches_the_data(
        noise in any_unit(), data in any_unit(), tau in 0.0f64..0.99,
    ) {
        // One exact step: slerp has constant body-frame angular velocity.
        let q = s3::interpolate(&noise, &data, tau);
        let one_step = s3::integrate(&q, &s3::target_velocity(&noise, &data, tau), 1.0 - tau);
        prop_assert!(dist(&one_step, &data) < 1e-9);
        // The sampler's way: ten Euler steps on S³ along the exact field.
        let mut q = noise;
        for k in 0..10 {
            q = s3::euler_step(&q, &s3::target_velocity(&noise, &data, k as f64 / 10.0), 0.1);
        }
        prop_assert!(dist(&q, &data) < 1e-9);
    }

    #[test]
    fn losses_are_symmetric_and_sign_invariant(a in any_unit(), b in any_unit(), v in any_vec4(), s in 0.1f64..10.0) {
        let neg = |q: &UnitQuaternion<f64>| UnitQuaternion::new_unchecked(-q.into_inner());
        prop_assert!((s3::geodesic_loss(&a, &b) - s3::geodesic_loss(&b, &a)).abs() < 1e-15);
        prop_assert!((s3::geodesic_loss(&a, &neg(&b)) - s3::geodesic_loss(&a, &b)).abs() < 1e-15);
        prop_assert!(s3::geodesic_loss(&a, &neg(&a)) < 1e-15);
        prop_assert!(s3::geodesic_loss(&a, &b) <= 2f64.sqrt() + 1e-12);
        let u = b.into_inner();
        prop_assume!(v.norm() > 1e-3);
        prop_assert!((s3::cosine_loss(&v, &u) - s3::cosine_loss(&u, &v)).abs() < 1e-12);
        prop_assert!((s3::cosine_loss(&(v * s), &u) - s3::cosine_loss(&v, &u)).abs() < 1e-12);
        prop_assert!(s3::cosine_loss(&v, &v).abs() < 1e-12);
        prop_assert!((s3::cosine_loss(&v, &-v) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn perfect_prediction_has_zero_rotation_loss(noise in any_unit(), data in any_unit(), tau in 0.0f64..0.9) {
        let (noise, data) = (quat::canonicalize(&noise), quat::canonicalize(&data));
        let u = s3::target_velocity(&noise, &data, tau);
        let loss = s3::rotation_loss(&[noise], &[data], &[u], tau, 0.05).unwrap();
        prop_assert!(loss < 1e-9, "loss {loss}");
    }

    #[test]
    fn canonicalize_keeps_the_rotation_in_the_w_positive_half(q in any_unit()) {
        let c = quat::canonicalize(&q);
        prop_assert!(c.w >= 0.0);
        prop_assert!(c.angle_to(&q) < 1e-7);
    }

    #[test]
    fn conversions_round_trip(q in any_unit()) {
        let q = quat::canonicalize(&q);
        let (r, p, y) = rotation::euler_xyz_from_quat(&q);
        prop_assert!(dist(&rotation::quat_from_euler_xyz(r, p, y), &q) < 1e-9);
        prop_assert!(dist(&rotation::quat_from_rotvec(&rotation::rotvec_from_quat(&q)), &q) < 1e-9);
        prop_assert!(dist(&rotation::quat_from_rotation(&rotation::rotation_from_quat(&q)), &q) < 1e-9);
        prop_assert!(dist(&rotation::quat_from_sixd(&rotation::sixd_from_quat(&q)).unwrap(), &q) < 1e-9);
        prop_assert!(rotation::rotvec_from_quat(&q).norm() <= PI + 1e-12);
    }

    #[test]
    fn pose_delta_round_trips(
        p0 in prop::array::uniform3(-2.0f64..2.0), p1 in prop::array::uniform3(-2.0f64..2.0),
        q0 in any_unit(), q1 in any_unit(),
    ) {
        let a = Pose::new(Vector3::from(p0), q0);
        let b = Pose::new(Vector3::from(p1), q1);
        let delta = a.delta_to(&b);
        prop_assert!(delta.rotation.w >= 0.0);
        let back = a.apply_delta(&delta);
        prop_assert!((back.translation - b.translation).norm() < 1e-12);
        prop_assert!(s3::geodesic_loss(&back.rotation, &b.rotation) < 1e-9);
        // The rotation delta is in the end-effector frame: R1 = R0 · ΔR.
        prop_assert!((q0.to_rotation_matrix() * delta.rotation.to_rotation_matrix()).matrix()
            .relative_eq(q1.to_rotation_matrix().matrix(), 1e-9, 1e-9));
    }

    #[test]
    fn slerp_takes_the_short_way(a in any_unit(), b in any_unit(), t in 0.0f64..1.0) {
        prop_assert!(s3::geodesic_loss(&quat::slerp(&a, &b, 0.0), &a) < 1e-9);
        prop_assert!(s3::geodesic_loss(&quat::slerp(&a, &b, 1.0), &b) < 1e-9);
        let total = a.angle_to(&b);
        let part = a.angle_to(&quat::slerp(&a, &b, t));
        prop_assert!((part - t * total).abs() < 1e-7, "rotation angle {part} vs {}", t * total);
    }

    #[test]
    fn delta_is_drawn_from_its_interval(tau in 0.0f64..1.0, seed in any::<u64>()) {
        let delta = s3::sample_delta(&mut StdRng::seed_from_u64(seed), tau);
        prop_assert!(delta >= s3::MIN_DELTA);
        prop_assert!(delta <= (1.0 - tau).max(s3::MIN_DELTA));
    }
}

#[test]
fn identical_and_antipodal_inputs_give_finite_unit_paths() {
    let q = rotation::quat_from_euler_xyz(0.3, -0.2, 1.0);
    let minus = UnitQuaternion::new_unchecked(-q.into_inner());
    for tau in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let same = s3::interpolate(&q, &q, tau);
        assert!(dist(&same, &q) < 1e-15);
        assert!(s3::target_velocity(&q, &q, tau).norm() < 1e-15);
        let opposite = s3::interpolate(&q, &minus, tau);
        assert!((opposite.norm() - 1.0).abs() < 1e-12, "antipodal path leaves S³ at τ = {tau}");
        assert!((s3::target_velocity(&q, &minus, tau).norm() - PI).abs() < 1e-12);
    }
    assert!(dist(&s3::interpolate(&q, &minus, 1.0), &minus) < 1e-12);
    assert!(dist(&s3::integrate(&q, &Quaternion::new(0.0, 0.0, 0.0, 0.0), 1.0), &q) < 1e-15);
}

#[test]
fn uniform_samples_cover_s3_evenly() {
    let mut rng = StdRng::seed_from_u64(3);
    let n = 100_000;
    let samples: Vec<_> = (0..n).map(|_| quat::sample_uniform(&mut rng)).collect();
    for (i, name) in ["w", "x", "y", "z"].iter().enumerate() {
        let c = |q: &UnitQuaternion<f64>| q.coords[(i + 3) % 4];
        let mean = samples.iter().map(c).sum::<f64>() / n as f64;
        let second = samples.iter().map(|q| c(q).powi(2)).sum::<f64>() / n as f64;
        let abs = samples.iter().map(|q| c(q).abs()).sum::<f64>() / n as f64;
        // Uniform on S³: E[c] = 0, E[c²] = 1/4, E|c| = 4/(3π).
        assert!(mean.abs() < 0.01, "{name}: mean {mean}");
        assert!((second - 0.25).abs() < 0.005, "{name}: E[c²] {second}");
        assert!((abs - 4.0 / (3.0 * PI)).abs() < 0.005, "{name}: E|c| {abs}");
    }
}

#[test]
fn bad_inputs_get_errors_that_name_them() {
    let q = UnitQuaternion::identity();
    let err = s3::rotation_loss(&[q, q], &[q], &[q.into_inner(); 2], 0.5, 0.1).unwrap_err();
    assert_eq!(err, GeometryError::LengthMismatch { what: "data", expected: 2, got: 1 });
    assert!(err.to_string().contains("data"));
    let mut rng = StdRng::seed_from_u64(0);
    for (alpha, beta, bad) in [(0.0, 1.0, "alpha"), (1.5, -1.0, "beta"), (f64::NAN, 1.0, "alpha")] {
        let err = flow::sample_beta(&mut rng, alpha, beta).unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
    for bad in [[0.0; 6], [1.0, 0.0, 0.0, 2.0, 0.0, 0.0], [f64::NAN, 0.0, 0.0, 0.0, 1.0, 0.0]] {
        assert!(matches!(rotation::rotation_from_sixd(&bad), Err(GeometryError::Degenerate6d(_))), "{bad:?}");
    }
}

#[test]
fn linear_flow_steps_reach_the_data() {
    let noise = nalgebra::Vector3::new(0.3, -1.2, 0.5);
    let data = nalgebra::Vector3::new(-0.1, 0.4, 0.9);
    let mut x = flow::interpolate(&noise, &data, 0.0);
    for _ in 0..10 {
        x = flow::euler_step(&x, &flow::target_velocity(&noise, &data), 0.1);
    }
    assert!((x - data).norm() < 1e-12);
    assert!((flow::interpolate(&noise, &data, 0.3) - (data * 0.3 + noise * 0.7)).norm() < 1e-15);
}

#[test]
fn euler_angles_stay_accurate_at_and_near_gimbal_lock() {
    for pitch in [PI / 2.0, PI / 2.0 - 1e-9, PI / 2.0 - 1e-6, -PI / 2.0 + 1e-8, -PI / 2.0] {
        for (roll, yaw) in [(0.3, -1.1), (-2.0, 0.4), (1.0, 0.0)] {
            let q = rotation::quat_from_euler_xyz(roll, pitch, yaw);
            let (r, p, y) = rotation::euler_xyz_from_quat(&q);
            let back = rotation::quat_from_euler_xyz(r, p, y);
            // Within 1e-7 of lock, yaw is folded into roll (as in scipy), which is exact only at
            // the lock itself: the error is of the order of the distance to it.
            let tolerance = if (pitch.abs() - PI / 2.0).abs() < 1e-7 { 1e-7 } else { 1e-9 };
            assert!(
                s3::geodesic_loss(&back, &q) < tolerance,
                "pitch {pitch}: ({roll}, {yaw}) -> ({r}, {p}, {y})"
            );
            assert!((p - pitch).abs() < 1e-8, "pitch {pitch} came back as {p}");
        }
    }
}
