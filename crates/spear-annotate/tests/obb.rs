//! Oriented boxes against Open3D 0.20's `get_oriented_bounding_box()` on the clouds of
//! `tools/reference/annotate_fixtures.py`: the same hull vertices, box corners within 1e-9 as
//! sets, and Open3D's exceptions as errors.

use serde_json::Value;
use spear_annotate::obb::{ObbError, oriented_bounding_box};

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/obb.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn rows(v: &Value) -> Vec<[f64; 3]> {
    v.as_array()
        .map(|rows| rows.iter().map(|p| std::array::from_fn(|d| p[d].as_f64().unwrap())).collect())
        .unwrap_or_default()
}

/// Largest distance from a corner of `a` to the nearest corner of `b`, both ways.
fn set_distance(a: &[[f64; 3]], b: &[[f64; 3]]) -> f64 {
    let one_way = |a: &[[f64; 3]], b: &[[f64; 3]]| {
        a.iter()
            .map(|p| {
                b.iter()
                    .map(|q| (0..3).map(|d| (p[d] - q[d]).abs()).fold(0.0, f64::max))
                    .fold(f64::INFINITY, f64::min)
            })
            .fold(0.0, f64::max)
    };
    one_way(a, b).max(one_way(b, a))
}

#[test]
fn boxes_and_hull_vertices_are_open3ds() {
    let mut compared = 0;
    for case in fixture()["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let points = rows(&case["points"]);
        let want = &case["plain"];
        let got = oriented_bounding_box(&points);
        if let Some(error) = want.get("error") {
            let message = error["message"].as_str().unwrap();
            let got = got.expect_err(name);
            let expected = if message.contains("need 4") || message.contains("Got 0") {
                ObbError::TooFewPoints(points.len())
            } else if message.contains("MAXwidth") {
                ObbError::Identical
            } else if name == "collinear" {
                ObbError::Collinear
            } else {
                ObbError::Coplanar
            };
            assert_eq!(got, expected, "{name}: Open3D says {message}");
            continue;
        }
        let fit = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        let vertices: Vec<usize> = want["hull"]["vertex_indices_sorted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(fit.hull_vertices, vertices, "{name}: hull vertices");
        let corners = fit.obb.open3d_box_points();
        let gap = set_distance(&corners, &rows(&want["box_points"]));
        assert!(gap < 1e-9, "{name}: corners {gap:e} from Open3D's");
        let extent: Vec<f64> =
            want["extent"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        for (k, (got, want)) in fit.obb.extent.iter().zip(&extent).enumerate() {
            assert!((got - want).abs() < 1e-9, "{name}: extent {k}");
        }
        compared += 1;
    }
    assert!(compared >= 8, "{compared} boxes compared");
}
