//! `spear policy act` through the binary: a tiny SPEAR-1 saved by spear-models, and the tiny π0 of
//! `tools/reference/pi0_fixtures.py`.

use std::path::{Path, PathBuf};

mod common;
use common::{fixtures, run_spear as spear, save_tiny_spear1};

/// A tiny random SPEAR-1 checkpoint with the tiny PaliGemma tokenizer, saved once per process.
fn tiny_checkpoint() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("spear-cli-policy-{}", std::process::id()));
        save_tiny_spear1(&dir, 7);
        dir
    })
    .clone()
}

fn image() -> String {
    fixtures().join("paligemma-tiny/image.png").display().to_string()
}

fn act(checkpoint: &Path, extra: &[&str]) -> (bool, String, String) {
    let image = image();
    let mut args = vec!["policy", "act", "--checkpoint", checkpoint.to_str().unwrap(), "--image", &image];
    args.extend_from_slice(extra);
    spear(&args)
}

#[test]
fn act_prints_a_chunk_of_canonical_quaternions() {
    let dir = tiny_checkpoint();
    let image = image();
    let state = "0.1,-0.2,0.3,1,0,0,0,1";
    let args = ["--wrist", &image, "--state", state, "--prompt", "pick up the cup", "--json"];
    let (ok, out, err) = act(&dir, &args);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["rotation"], "s3");
    let actions = json["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 5, "H = 5");
    for step in actions {
        let a: Vec<f64> = step.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(a.len(), 8);
        let norm = a[3..7].iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4 && a[3] >= 0.0, "quaternion {:?}", &a[3..7]);
    }
    // Same seed, same chunk; the table names the parts.
    let (ok, table, err) = act(&dir, &args[..6]);
    assert!(ok, "{err}");
    assert_eq!(table.lines().count(), 5, "{table}");
    assert!(table.starts_with("step 0: translation [") && table.contains("quaternion wxyz"), "{table}");
    // bf16 products: close to the f32 chunk, quaternions still unit (the S³ steps stay f32).
    let numbers = |out: &str| -> Vec<f64> {
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let steps = json["actions"].as_array().unwrap().iter();
        steps
            .flat_map(|s| s.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>())
            .collect()
    };
    let (ok, bf16, err) = act(&dir, &[&args[..], &["--precision", "bf16"]].concat());
    assert!(ok, "{err}");
    let (f32_chunk, bf16_chunk) = (numbers(&out), numbers(&bf16));
    let worst = f32_chunk.iter().zip(&bf16_chunk).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst > 0.0 && worst < 5e-2, "bf16 chunk differs from f32 by {worst}");
    for q in bf16_chunk.chunks(8) {
        let norm = q[3..7].iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "quaternion {:?}", &q[3..7]);
    }
    let (ok, _, err) = act(&dir, &[&args[..], &["--precision", "fp8"]].concat());
    assert!(!ok && err.contains("unknown precision `fp8`"), "{err}");
}

#[test]
fn act_rejects_bad_observations_with_clear_errors() {
    let dir = tiny_checkpoint();
    let image = image();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--state", "0,0,0,1,0,0,0,1", "--prompt", "go"],
            "observation 0: 1 cameras given; this policy takes 2 (main, wrist)",
        ),
        (
            &["--wrist", &image, "--state", "0,0,0,1,0,0,0", "--prompt", "go"],
            "observation 0: state has 7 values; this policy takes 8",
        ),
        (&["--wrist", &image, "--state", "0,0,nan,1,0,0,0,1", "--prompt", "go"], "value 2 is NaN"),
        (
            &["--wrist", &image, "--state", "0,0,x,1,0,0,0,1", "--prompt", "go"],
            "value 2 (\"x\") is not a number",
        ),
    ];
    for (args, message) in cases {
        let (ok, _, err) = act(&dir, args);
        assert!(!ok && err.contains(message), "{args:?}: expected {message:?} in\n{err}");
    }
}

#[test]
fn act_runs_a_pi0_checkpoint() {
    // The tiny π0 has a 1024-token vocabulary; the tiny tokenizer's ids for this prompt fit.
    let dir = fixtures().join("pi0-tiny");
    let tokenizer = fixtures().join("paligemma-tiny/tokenizer.json");
    let image = image();
    let args = [
        "--wrist",
        &image,
        "--cameras",
        "2",
        "--state",
        "0.5 -0.5",
        "--pad-state",
        "--prompt",
        "a",
        "--tokenizer",
        tokenizer.to_str().unwrap(),
    ];
    let (ok, out, err) = act(&dir, &args);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 6, "chunk_size 6:\n{out}");
    assert!(out.starts_with("step 0: ["), "{out}");
}

#[test]
fn inspect_recognises_a_pi0_checkpoint_as_a_policy() {
    let dir = fixtures().join("pi0-tiny");
    let (ok, out, err) = spear(&["weights", "inspect", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("layout:     pi0 (openpi PyTorch / lerobot / transformers"), "{out}");
    assert!(out.contains("policy: PaliGemma + action expert (32×2 layers), 6 actions of 8"), "{out}");
    assert!(out.contains("missing:    0") && out.contains("left over:  0"), "{out}");
    assert!(
        out.contains("the action expert's LM head (unused)") && out.contains("loads completely"),
        "{out}"
    );
}
