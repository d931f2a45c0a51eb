//! The scalar API against scipy/numpy float64, from `tools/reference/geometry_fixtures.py`.

use nalgebra::{Matrix3, Quaternion, UnitQuaternion, Vector3};
use serde_json::Value;
use spear_geometry::{Pose, flow, quat, rotation, s3};

const TOL: f64 = 1e-9;

fn fixtures() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/geometry.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read fixture")).expect("parse fixture")
}

fn cases(key: &str) -> Vec<Value> {
    let all = fixtures()[key].as_array().unwrap_or_else(|| panic!("fixture has no {key}")).clone();
    assert!(!all.is_empty(), "fixture {key} is empty");
    all
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn raw(v: &Value) -> Quaternion<f64> {
    raw_slice(&floats(v))
}

fn unit(v: &Value) -> UnitQuaternion<f64> {
    UnitQuaternion::new_unchecked(raw(v))
}

fn vec3(v: &Value) -> Vector3<f64> {
    Vector3::from_vec(floats(v))
}

fn assert_close(what: &str, actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let error = actual.iter().zip(expected).map(|(a, e)| (a - e).abs()).fold(0.0, f64::max);
    assert!(
        error <= tol,
        "{what}: max error {error:e} > {tol:e}\n actual   {actual:?}\n expected {expected:?}"
    );
}

/// Compares canonical quaternions. On the half-space boundary (w = 0 to rounding, a half turn)
/// `q` and `−q` are both canonical, so there either sign matches.
fn assert_canonical_close(what: &str, actual: &UnitQuaternion<f64>, expected: &Value) {
    let expected = floats(expected);
    let q = if expected[0].abs() < 1e-12 && actual.coords.dot(&raw_slice(&expected).coords) < 0.0 {
        -actual.into_inner()
    } else {
        actual.into_inner()
    };
    assert_close(what, &q4(&q), &expected, TOL);
}

fn raw_slice(c: &[f64]) -> Quaternion<f64> {
    Quaternion::new(c[0], c[1], c[2], c[3])
}

fn q4(q: &Quaternion<f64>) -> [f64; 4] {
    [q.w, q.i, q.j, q.k]
}

#[test]
fn interpolate_and_target_velocity_match_equations_1_and_7() {
    for (i, c) in cases("flow").iter().enumerate() {
        let (noise, data, tau) = (unit(&c["noise"]), unit(&c["data"]), c["tau"].as_f64().unwrap());
        let what = format!("flow case {i} (angle {})", c["angle"]);
        assert_close(&what, &q4(&s3::interpolate(&noise, &data, tau)), &floats(&c["interpolate"]), TOL);
        assert_close(
            &what,
            &q4(&s3::target_velocity(&noise, &data, tau)),
            &floats(&c["target_velocity"]),
            TOL,
        );
        assert_close(&what, &[s3::arc_angle(&noise, &data)], &[c["angle"].as_f64().unwrap()], TOL);
    }
}

#[test]
fn integrate_matches_equation_6_and_scipy_rotvec_composition() {
    for (i, c) in cases("integrate").iter().enumerate() {
        let out = s3::integrate(&unit(&c["q"]), &raw(&c["velocity"]), c["dt"].as_f64().unwrap());
        assert_close(&format!("integrate case {i}"), &q4(&out), &floats(&c["expected"]), TOL);
    }
}

#[test]
fn losses_match_equations_8_to_10() {
    for c in cases("geodesic_loss") {
        assert_close(
            "geodesic",
            &[s3::geodesic_loss(&unit(&c["a"]), &unit(&c["b"]))],
            &[c["expected"].as_f64().unwrap()],
            TOL,
        );
    }
    for c in cases("cosine_loss") {
        assert_close(
            "cosine",
            &[s3::cosine_loss(&raw(&c["predicted"]), &raw(&c["target"]))],
            &[c["expected"].as_f64().unwrap()],
            TOL,
        );
    }
    for (i, c) in cases("rotation_loss").iter().enumerate() {
        let qs = |k: &str| c[k].as_array().unwrap().iter().map(unit).collect::<Vec<_>>();
        let predicted: Vec<_> = c["predicted"].as_array().unwrap().iter().map(raw).collect();
        let loss = s3::rotation_loss(
            &qs("noise"),
            &qs("data"),
            &predicted,
            c["tau"].as_f64().unwrap(),
            c["delta"].as_f64().unwrap(),
        )
        .unwrap();
        assert_close(&format!("rotation loss chunk {i}"), &[loss], &[c["expected"].as_f64().unwrap()], TOL);
    }
}

#[test]
fn hamilton_product_matches_scipy_composition() {
    for c in cases("hamilton") {
        assert_close(
            "hamilton",
            &q4(&quat::hamilton(&raw(&c["a"]), &raw(&c["b"]))),
            &floats(&c["expected"]),
            TOL,
        );
    }
}

#[test]
fn euler_matrix_rotvec_conversions_match_scipy() {
    for c in cases("euler_to_quat") {
        let e = floats(&c["euler"]);
        let q = rotation::quat_from_euler_xyz(e[0], e[1], e[2]);
        assert_close("from_euler xyz", &q4(&q.into_inner()), &floats(&c["expected"]), TOL);
    }
    for c in cases("quat_conversions") {
        let q = unit(&c["q"]);
        let (roll, pitch, yaw) = rotation::euler_xyz_from_quat(&q);
        assert_close("as_euler xyz", &[roll, pitch, yaw], &floats(&c["euler_xyz"]), TOL);
        let m = rotation::rotation_from_quat(&q);
        let expected: Vec<f64> = c["matrix"].as_array().unwrap().iter().flat_map(floats).collect();
        let actual: Vec<f64> = (0..3).flat_map(|r| (0..3).map(move |col| m[(r, col)])).collect();
        assert_close("as_matrix", &actual, &expected, TOL);
        assert_canonical_close("from_matrix", &rotation::quat_from_rotation(&m), &c["q"]);
        let rotvec = rotation::rotvec_from_quat(&q);
        assert_close("as_rotvec", rotvec.as_slice(), &floats(&c["rotvec"]), TOL);
        assert_canonical_close("from_rotvec", &rotation::quat_from_rotvec(&vec3(&c["rotvec"])), &c["q"]);
    }
}

#[test]
fn sixd_gram_schmidt_matches_numpy() {
    for c in cases("sixd") {
        let v: [f64; 6] = floats(&c["sixd"]).try_into().unwrap();
        let m = rotation::rotation_from_sixd(&v).unwrap();
        let expected: Vec<f64> = c["matrix"].as_array().unwrap().iter().flat_map(floats).collect();
        let actual: Vec<f64> = (0..3).flat_map(|r| (0..3).map(move |col| m[(r, col)])).collect();
        assert_close("6D -> matrix", &actual, &expected, TOL);
        assert_close(
            "6D -> quat",
            &q4(&rotation::quat_from_sixd(&v).unwrap().into_inner()),
            &floats(&c["quat"]),
            TOL,
        );
        let back = rotation::sixd_from_rotation(&m);
        let expected_back = [m[(0, 0)], m[(1, 0)], m[(2, 0)], m[(0, 1)], m[(1, 1)], m[(2, 1)]];
        assert_close("matrix -> 6D", &back, &expected_back, 0.0);
    }
}

#[test]
fn shortest_path_slerp_matches_scipy() {
    for c in cases("slerp") {
        let q = quat::slerp(&unit(&c["a"]), &unit(&c["b"]), c["t"].as_f64().unwrap());
        assert_close("slerp", &q4(&quat::canonicalize(&q).into_inner()), &floats(&c["expected"]), TOL);
    }
}

#[test]
fn pose_delta_matches_scipy() {
    for c in cases("pose_delta") {
        let p0 = Pose::new(vec3(&c["p0"]), unit(&c["q0"]));
        let p1 = Pose::new(vec3(&c["p1"]), unit(&c["q1"]));
        let delta = p0.delta_to(&p1);
        assert_close("delta translation", delta.translation.as_slice(), &floats(&c["translation"]), TOL);
        assert_close("delta rotation", &q4(&delta.rotation.into_inner()), &floats(&c["rotation"]), TOL);
        let back = p0.apply_delta(&delta);
        assert_close("apply_delta translation", back.translation.as_slice(), p1.translation.as_slice(), TOL);
        assert!(s3::geodesic_loss(&back.rotation, &p1.rotation) < TOL);
    }
}

#[test]
fn beta_samples_follow_scipy_quantiles() {
    use rand::{SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(7);
    for c in cases("beta_quantiles") {
        let (alpha, beta) = (c["alpha"].as_f64().unwrap(), c["beta"].as_f64().unwrap());
        let n = 200_000;
        let mut draws: Vec<f64> = (0..n).map(|_| flow::sample_beta(&mut rng, alpha, beta).unwrap()).collect();
        draws.sort_by(f64::total_cmp);
        for (p, q) in floats(&c["probabilities"]).iter().zip(floats(&c["quantiles"])) {
            let empirical = draws[(p * n as f64) as usize];
            // The quantile's standard error is sqrt(p(1−p)/n)/density ≲ 3e-3 here.
            assert!(
                (empirical - q).abs() < 0.01,
                "Beta({alpha}, {beta}) quantile {p}: {empirical} vs scipy {q}"
            );
        }
        let mean = draws.iter().sum::<f64>() / n as f64;
        assert!((mean - c["mean"].as_f64().unwrap()).abs() < 3e-3, "Beta({alpha}, {beta}) mean {mean}");
    }
}

#[test]
fn non_rotation_matrices_are_rejected_with_their_error() {
    let scaled = Matrix3::identity() * 1.1;
    let err = rotation::rotation_from_matrix(&scaled, 1e-6).unwrap_err();
    assert!(err.to_string().contains("not a rotation matrix"), "{err}");
    let reflection = Matrix3::from_diagonal(&Vector3::new(1.0, 1.0, -1.0));
    assert!(rotation::rotation_from_matrix(&reflection, 1e-6).is_err());
    assert!(rotation::rotation_from_matrix(&Matrix3::identity(), 1e-6).is_ok());
    // A rotation stored with 4 decimals comes back exactly orthonormal, with a unit quaternion.
    let stored = rotation::rotation_from_quat(&rotation::quat_from_euler_xyz(0.4, -0.3, 2.0))
        .matrix()
        .map(|x| (x * 1e4).round() / 1e4);
    let r = rotation::rotation_from_matrix(&stored, 1e-3).unwrap();
    assert!((r.matrix().transpose() * r.matrix() - Matrix3::identity()).amax() < 1e-14);
    assert!((rotation::quat_from_rotation(&r).norm() - 1.0).abs() < 1e-14);
    assert!((r.matrix() - stored).amax() < 1e-4);
}
