//! `Fit::Pad` against openpi's `image_tools.resize_with_pad` (PIL bilinear; the resize openpi's
//! server applies to every camera of a π0 policy), on fixtures from `tools/reference/serve_fixtures.py`.

use std::path::PathBuf;

use spear_data::images::{Fit, Image, resize};

#[test]
fn pad_fit_is_openpis_resize_with_pad() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize_with_pad");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let blob = std::fs::read(dir.join("images.bin")).unwrap();
    let mut worst = 0u8;
    for case in manifest["cases"].as_array().unwrap() {
        let dims = |k: &str| -> [usize; 2] {
            let v = case[k].as_array().unwrap();
            [v[0].as_u64().unwrap() as usize, v[1].as_u64().unwrap() as usize]
        };
        let ([h, w], [th, tw]) = (dims("input"), dims("target"));
        let at = |k: &str| case[k].as_u64().unwrap() as usize;
        let input = blob[at("input_offset")..at("input_offset") + h * w * 3].to_vec();
        let want = &blob[at("output_offset")..at("output_offset") + th * tw * 3];
        let image = Image { height: h, width: w, channels: 3, pixels: input };
        let got = resize(&image, tw, th, Fit::Pad);
        let diff = got.pixels.iter().zip(want).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        let differing = got.pixels.iter().zip(want).filter(|(a, b)| a != b).count();
        eprintln!("{h}×{w} → {th}×{tw}: max difference {diff}, {differing} of {} values differ", want.len());
        // The padding must be in the same place: the scaled size and the offsets agree.
        let rows = |p: &[u8]| p.chunks_exact(tw * 3).map(|r| r.iter().any(|&v| v != 0)).collect::<Vec<_>>();
        assert_eq!(rows(&got.pixels), rows(want), "{h}×{w} → {th}×{tw}: rows with content");
        worst = worst.max(diff);
    }
    assert!(worst <= 1, "pixels differ by up to {worst} levels from PIL's");
}
