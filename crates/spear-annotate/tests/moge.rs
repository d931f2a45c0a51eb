//! MoGe's output folder (written as `moge infer --maps` writes it, by
//! `tools/reference/annotate_fixtures.py`) into a point map, intrinsics and object clouds, and
//! Open3D's outlier removal on those clouds.

use std::path::PathBuf;

use serde_json::Value;
use spear_annotate::moge::{InputError, NpyFloat, PointMap, npy_points, read_mask_png};
use spear_annotate::obb::oriented_bounding_box;
use spear_annotate::outliers::remove_statistical_outliers;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/moge")
}

fn scene() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("scene.json")).unwrap()).unwrap()
}

#[test]
fn the_point_map_validity_and_intrinsics_are_moges() {
    let scene = scene();
    let map = PointMap::read_dir(dir()).unwrap();
    assert_eq!([map.height, map.width], [48, 64]);
    assert_eq!(
        map.valid.iter().filter(|&&v| v).count() as u64,
        scene["counts"]["valid_pixels"].as_u64().unwrap()
    );
    // The top three rows are +inf and masked out.
    assert!(map.valid[..3 * 64].iter().all(|&v| !v) && map.points[0][2].is_infinite());
    let k = map.intrinsics;
    let want = &scene["focal_from_fov_json_px"];
    assert!(
        (k.fx - want["fx"].as_f64().unwrap()).abs() < 1e-9
            && (k.fy - want["fy"].as_f64().unwrap()).abs() < 1e-9
    );
    assert_eq!((k.cx, k.cy), (32.0, 24.0));
}

#[test]
fn object_clouds_and_their_outlier_removal_match_the_reference() {
    let scene = scene();
    let map = PointMap::read_dir(dir()).unwrap();
    for object in scene["objects"].as_array().unwrap() {
        let path = dir().join(object["mask"].as_str().unwrap());
        let (h, w, mask) = read_mask_png(&path).unwrap();
        assert_eq!([h, w], [48, 64]);
        let cloud = map.object_cloud(&mask, &path).unwrap();
        let want = &object["cloud"];
        let pixels: Vec<[usize; 2]> = want["pixels_row_col"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| [p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize])
            .collect();
        assert_eq!(cloud.pixels, pixels, "{}", object["label"]);
        let points: Vec<[f64; 3]> = want["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| std::array::from_fn(|d| p[d].as_f64().unwrap()))
            .collect();
        assert_eq!(cloud.points, points, "{}: the EXR's float32 values, bit for bit", object["label"]);
        for step in object["pipeline"].as_array().unwrap() {
            let sor = &step["sor"];
            let (k, ratio) =
                (sor["nb_neighbors"].as_u64().unwrap() as usize, sor["std_ratio"].as_f64().unwrap());
            let kept: Vec<usize> =
                sor["kept"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(
                remove_statistical_outliers(&cloud.points, k, ratio).unwrap().kept,
                kept,
                "{}",
                object["label"]
            );
            // Then Open3D's box on the kept points.
            let kept_points: Vec<[f64; 3]> = kept.iter().map(|&i| cloud.points[i]).collect();
            let fit = oriented_bounding_box(&kept_points).unwrap();
            let obb = &step["obb"];
            let want: Vec<[f64; 3]> = obb["box_points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| std::array::from_fn(|d| p[d].as_f64().unwrap()))
                .collect();
            let gap = fit
                .obb
                .open3d_box_points()
                .iter()
                .map(|p| {
                    want.iter()
                        .map(|q| (0..3).map(|d| (p[d] - q[d]).abs()).fold(0.0, f64::max))
                        .fold(f64::INFINITY, f64::min)
                })
                .fold(0.0, f64::max);
            assert!(gap < 1e-9, "{} k={k}: box corners {gap:e} from Open3D's", object["label"]);
        }
    }
}

#[test]
fn mismatched_and_missing_inputs_name_their_file() {
    let map = PointMap::read_dir(dir()).unwrap();
    let error = map.object_cloud(&[true; 10], &dir().join("small.png")).unwrap_err();
    assert!(matches!(error, InputError::Size { .. }) && error.to_string().contains("small.png"), "{error}");
    let error = PointMap::read_dir(dir().join("masks")).unwrap_err().to_string();
    assert!(error.contains("points.exr"), "{error}");
}

#[test]
fn intrinsics_are_fitted_when_no_json_gives_them() {
    // A pinhole map with an off-centre principal point, as .npy without fov.json.
    let (h, w, fx, fy, cx, cy) = (30usize, 40usize, 50.0, 52.0, 21.5, 14.0);
    let mut points = Vec::new();
    for i in 0..h {
        for j in 0..w {
            let z = 1.0 + 0.01 * ((i * 7 + j * 3) % 11) as f64;
            points.push([(j as f64 + 0.5 - cx) / fx * z, (i as f64 + 0.5 - cy) / fy * z, z]);
        }
    }
    let valid = vec![true; h * w];
    let points32: Vec<[f32; 3]> = points.iter().map(|p| p.map(|v| v as f32)).collect();
    let k = spear_annotate::moge::fit_intrinsics(w, &points32, &valid).unwrap();
    for (got, want) in [(k.fx, fx), (k.fy, fy), (k.cx, cx), (k.cy, cy)] {
        assert!((got - want).abs() < 1e-3, "{k:?}");
    }
    let dir = std::env::temp_dir().join(format!("spear-annotate-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = npy_points(h, w, &points, NpyFloat::F64);
    std::fs::write(dir.join("points.npy"), &bytes).unwrap();
    let map = PointMap::read_dir(&dir).unwrap();
    assert_eq!((map.height, map.width, map.points, map.intrinsics.cx.round()), (h, w, points32, 22.0));
    // Truncated data names the file.
    std::fs::write(dir.join("points.npy"), &bytes[..bytes.len() - 8]).unwrap();
    let error = PointMap::read_dir(&dir).unwrap_err().to_string();
    assert!(error.contains("points.npy") && error.contains("data bytes"), "{error}");
    // Headers that would overflow or slice inside a character are errors, not panics.
    for shape in ["(4611686018427387904, 2, 3)", "é1, 1, 3)", "(1, 1)"] {
        let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        std::fs::write(dir.join("points.npy"), &bytes).unwrap();
        let error = PointMap::read_dir(&dir).unwrap_err().to_string();
        assert!(error.contains("points.npy"), "{shape}: {error}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
