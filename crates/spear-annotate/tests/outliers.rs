//! Statistical outlier removal against Open3D 0.20 on the clouds of
//! `tools/reference/annotate_fixtures.py`: the kept indices must be Open3D's, the per-point scores
//! bit-equal to its k-d tree's.

use serde_json::Value;
use sha2::{Digest, Sha256};
use spear_annotate::outliers::{OutlierError, remove_statistical_outliers};

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sor.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn points(case: &Value) -> Vec<[f64; 3]> {
    let points: Vec<[f64; 3]> = case["points"]
        .as_array()
        .map(|rows| rows.iter().map(|p| std::array::from_fn(|d| p[d].as_f64().unwrap())).collect())
        .unwrap_or_default();
    // The input must be bit-exact for the comparison to mean anything.
    let bytes: Vec<u8> = points.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    let hash: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hash, case["points_sha256_f64le"].as_str().unwrap(), "{}", case["name"]);
    points
}

#[test]
fn kept_points_and_scores_are_open3ds() {
    let mut runs = 0;
    for case in fixture()["cases"].as_array().unwrap() {
        let cloud = points(case);
        for run in case["runs"].as_array().unwrap() {
            let (k, ratio) =
                (run["nb_neighbors"].as_u64().unwrap() as usize, run["std_ratio"].as_f64().unwrap());
            let what = format!("{} k={k} ratio={ratio}", case["name"]);
            let result = remove_statistical_outliers(&cloud, k, ratio);
            if run.get("error").is_some() {
                assert!(matches!(result, Err(OutlierError::Parameters { .. })), "{what}");
                continue;
            }
            let result = result.unwrap();
            let kept: Vec<usize> =
                run["kept"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(result.kept, kept, "{what}");
            let scores: Vec<f64> =
                run["avg_distances"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(result.scores, scores, "{what}: scores bit for bit");
            if let Some(threshold) = run["threshold"].as_f64() {
                assert_eq!(result.threshold, threshold, "{what}");
            }
            runs += 1;
        }
    }
    assert!(runs >= 14, "{runs} runs compared");
}

#[test]
fn invalid_points_are_refused() {
    let error =
        remove_statistical_outliers(&[[0.0, 0.0, 1.0], [f64::INFINITY, 0.0, 1.0]], 2, 1.0).unwrap_err();
    assert_eq!(error, OutlierError::NonFinite { index: 1, point: [f64::INFINITY, 0.0, 1.0] });
    assert!(error.to_string().contains("point 1"));
}
