//! MoGe's pre- and post-processing against MoGe's own code and PyTorch
//! (`tools/reference/moge_fixtures.py`, dlr-moge 2.0.0): antialiased bicubic and bilinear resizes;
//! the view-plane UV grid and `recover_focal_shift` on synthetic point maps of known focal and
//! shift — odd sizes, a portrait map, holes, noise, one valid pixel repeated or missed — with and
//! without a given field of view.

use burn::prelude::*;
use spear_models::moge::post::{
    finish, focal_from_fov_x, normalized_focal, recover_focal_shift, view_plane_uv,
};
use spear_models::resize::{Antialias, resize_antialiased};

use crate::common::{Cpu, assert_close, read, tensor};

const FILE: &str = "moge_post_expected.safetensors";

fn values(name: &str) -> Vec<f32> {
    read(FILE, name).convert::<f32>().to_vec().unwrap()
}

fn scalar(name: &str) -> f32 {
    values(name)[0]
}

#[test]
fn view_plane_uv_is_moges() {
    for (h, w) in [(30, 40), (37, 53), (64, 64)] {
        let want = values(&format!("uv_{h}x{w}"));
        let got: Vec<f32> = view_plane_uv(w, h).into_iter().flatten().collect();
        assert_eq!(got.len(), want.len());
        let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-7, "{h}×{w}: max error {err:e}");
    }
}

#[test]
fn recovered_focal_and_shift_are_moges() {
    for (name, h, w) in [
        ("exact", 30, 40),
        ("odd", 37, 53),
        ("tall", 90, 41),
        ("noisy", 70, 100),
        ("lonely", 20, 24),
        ("sparse", 100, 130),
    ] {
        let flat = values(&format!("{name}_points"));
        let points: Vec<[f32; 3]> = flat.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
        let mask: Vec<bool> =
            read(FILE, &format!("{name}_mask")).convert::<i64>().iter::<i64>().map(|v| v != 0).collect();
        let got = recover_focal_shift(&points, Some(&mask), h, w, None);
        let (focal, shift) = (scalar(&format!("{name}_focal")), scalar(&format!("{name}_shift")));
        eprintln!("{name}: focal {} vs MoGe {focal}, shift {} vs MoGe {shift}", got.focal, got.shift);
        assert!(
            (got.shift - shift).abs() <= 1e-5 * shift.abs().max(1.0),
            "{name}: shift {} vs {shift}",
            got.shift
        );
        assert!((got.focal - focal).abs() <= 1e-4 * focal.abs(), "{name}: focal {} vs {focal}", got.focal);
        // With the field of view known (MoGe's `fov_x`): the focal it implies, the shift alone fitted.
        let aspect = w as f64 / h as f64;
        let given = focal_from_fov_x(f64::from(scalar(&format!("{name}_fov_x"))), aspect) as f32;
        let fixed = recover_focal_shift(&points, Some(&mask), h, w, Some(given));
        let want = scalar(&format!("{name}_shift_given"));
        assert_eq!(fixed.focal, given);
        assert!(
            (fixed.shift - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{name}: shift {} vs {want} (fov given)",
            fixed.shift
        );
        // The intrinsics MoGe's `infer` derives from the focal.
        let (fx, fy) = normalized_focal(f64::from(got.focal), aspect);
        for (what, ours, theirs) in
            [("fx", fx, scalar(&format!("{name}_fx"))), ("fy", fy, scalar(&format!("{name}_fy")))]
        {
            assert!((ours as f32 - theirs).abs() <= 1e-4 * theirs.abs(), "{name}: {what} {ours} vs {theirs}");
        }
    }
}

#[test]
fn antialiased_resizes_are_pytorchs() {
    let device = Default::default();
    for (name, filter) in [
        ("bicubic_down", Antialias::Bicubic),
        ("bicubic_up", Antialias::Bicubic),
        ("bicubic_mixed", Antialias::Bicubic),
        ("bilinear_down", Antialias::Bilinear),
        ("bilinear_mixed", Antialias::Bilinear),
    ] {
        let input: Tensor<Cpu, 4> = tensor(FILE, &format!("resize_{name}_in"), &device);
        let want = read(FILE, &format!("resize_{name}_out"));
        let size = [want.shape[2], want.shape[3]];
        assert_close(resize_antialiased(input, size, filter), &want, 1e-6, &format!("{name} resize"));
    }
}

#[test]
fn finishing_a_map_is_moge_1s_infer() {
    for (name, h, w) in [("tall", 90, 41), ("noisy", 70, 100)] {
        let flat = values(&format!("{name}_points"));
        let points: Vec<[f32; 3]> = flat.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
        let raw = values(&format!("{name}_raw_mask"));
        let fov = f64::from(scalar(&format!("{name}_fov_x_deg")));
        for (tag, fov) in [("infer", None), ("infer_fov", Some(fov))] {
            let got = finish(&points, &raw, h, w, 0.5, fov);
            let what = format!("{name} {tag}");
            let mask: Vec<bool> = read(FILE, &format!("{name}_{tag}_mask"))
                .convert::<i64>()
                .iter::<i64>()
                .map(|v| v != 0)
                .collect();
            assert_eq!(got.mask, mask, "{what}: mask");
            let k = values(&format!("{name}_{tag}_intrinsics"));
            let (fx, fy) = got.focal_xy;
            assert!(
                (fx - k[0]).abs() <= 1e-5 * k[0] && (fy - k[4]).abs() <= 1e-5 * k[4],
                "{what}: {fx} {fy} vs {k:?}"
            );
            assert_eq!([k[2], k[5]], [0.5, 0.5], "{what}: principal point");
            let depth = values(&format!("{name}_{tag}_depth"));
            let want = values(&format!("{name}_{tag}_points"));
            let ours: Vec<f32> = got.points.iter().flatten().copied().collect();
            for (what, ours, theirs) in [("depth", &got.depth, &depth), ("points", &ours, &want)] {
                let mut worst = 0f32;
                for (a, b) in ours.iter().zip(theirs.iter()) {
                    if b.is_infinite() {
                        assert!(*a == *b, "{name} {tag} {what}: {a} where MoGe has {b}");
                    } else {
                        worst = worst.max((a - b).abs() / b.abs().max(1.0));
                    }
                }
                eprintln!("{name} {tag} {what}: largest relative error {worst:.1e}");
                assert!(worst <= 1e-5, "{name} {tag} {what}: relative error {worst:e}");
            }
        }
    }
}
