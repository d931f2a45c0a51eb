//! `spear weights inspect` and `spear vlm ask` through the binary, on the tiny fixtures of
//! `tools/reference/vlm_fixtures.py`.

use spear_models::import::checkpoint::Checkpoint;

mod common;
use common::{fixtures, run_spear as spear};

#[test]
fn inspect_recognises_a_sharded_paligemma_snapshot() {
    let dir = fixtures().join("paligemma-tiny");
    let (ok, out, err) = spear(&["weights", "inspect", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("ShardedSafetensors"), "{out}");
    assert!(out.contains("PaliGemma (transformers safetensors"), "{out}");
    assert!(out.contains("missing:    0") && out.contains("left over:  0"), "{out}");
    assert!(out.contains("loads completely"), "{out}");
}

#[test]
fn inspect_recognises_moge_checkpoints() {
    for (file, layout) in [("moge_v1/model.pt", "MoGe-1"), ("moge_v2/model.pt", "MoGe-2")] {
        let path = fixtures().join(file);
        let (ok, out, err) = spear(&["weights", "inspect", path.to_str().unwrap(), "--list"]);
        assert!(ok, "{err}");
        assert!(out.contains(layout) && out.contains("loads completely"), "{out}");
        assert!(out.contains("ignored:") && out.contains("SPEAR uses the encoder only"), "{out}");
    }
}

#[test]
fn inspect_names_missing_and_left_over_tensors() {
    // A single-file checkpoint holding all but one PaliGemma tensor plus a stray one.
    let snapshot = Checkpoint::open(fixtures().join("paligemma-tiny")).unwrap();
    let dir = std::env::temp_dir().join(format!("spear-cli-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixtures().join("paligemma-tiny/config.json"), dir.join("config.json")).unwrap();
    let dropped = "language_model.model.layers.0.self_attn.k_proj.weight";
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = snapshot
        .tensors
        .iter()
        .filter(|(n, _)| n.as_str() != dropped)
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.read().unwrap().to_vec().unwrap()))
        .collect();
    tensors.push(("language_model.model.layers.0.self_attn.q_norm.weight".into(), vec![2], vec![0.0; 2]));
    let file = dir.join("model.safetensors");
    spear_models::store::write_f32_safetensors(&tensors, &file).unwrap();
    let (ok, out, err) = spear(&["weights", "inspect", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("missing:    1") && out.contains("gemma.layers.0.self_attn.k_proj.weight"), "{out}");
    assert!(
        out.contains("left over:  1")
            && out.contains("language_model.model.layers.0.self_attn.q_norm.weight"),
        "{out}"
    );
    assert!(out.contains("2 problem(s)"), "{out}");
}

#[test]
fn vlm_ask_reproduces_the_reference_greedy_tokens() {
    let expected = Checkpoint::open(fixtures().join("paligemma_expected.safetensors")).unwrap();
    let want: Vec<u32> = expected.tensors["generated_ids"]
        .read()
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&x| x as u32)
        .collect();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("paligemma_expected.json")).unwrap())
            .unwrap();
    let prompt = meta["prompt"].as_str().unwrap();
    let dir = fixtures().join("paligemma-tiny");
    let image = dir.join("image.png");
    let max_new = want.len().to_string();
    let (ok, out, err) = spear(&[
        "vlm",
        "ask",
        "--backend",
        "cpu",
        "--weights",
        dir.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        prompt,
        "--max-new-tokens",
        &max_new,
        "--ids",
    ]);
    assert!(ok, "{err}");
    let ids_line = out.lines().find(|l| l.starts_with("answer ids:")).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(ids_line, format!("answer ids: {want:?}"), "{out}");
}

#[test]
fn vlm_ask_reports_a_missing_checkpoint() {
    let (ok, _, err) =
        spear(&["vlm", "ask", "--weights", "/nonexistent/ckpt", "--image", "x.png", "--prompt", "hi"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/ckpt"), "{err}");
}

#[test]
fn vlm_init_builds_a_spear_checkpoint_that_inspect_and_ask_accept() {
    let out = std::env::temp_dir().join(format!("spear-cli-init-{}", std::process::id()));
    let paligemma = fixtures().join("paligemma-tiny");
    let moge = fixtures().join("moge_v1/model.pt");
    let (ok, stdout, err) = spear(&[
        "vlm",
        "init",
        "--backend",
        "cpu",
        "--paligemma",
        paligemma.to_str().unwrap(),
        "--moge",
        moge.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--num-3d-tokens",
        "32",
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("MoGe blocks [2, 3, 4, 5]") && stdout.contains("32 3D tokens"), "{stdout}");
    let (ok, report, err) = spear(&["weights", "inspect", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        report.contains("spear checkpoint")
            && report.contains("SPEAR-VLM")
            && report.contains("loads completely"),
        "{report}"
    );
    // The tiny MoGe runs on the SPEAR camera size (210×280 main).
    let image = fixtures().join("paligemma-tiny/image.png");
    let (ok, answer, err) = spear(&[
        "vlm",
        "ask",
        "--backend",
        "cpu",
        "--weights",
        out.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        "where is the cup?",
        "--max-new-tokens",
        "3",
        "--ids",
    ]);
    assert!(ok, "{err}");
    assert!(answer.contains("answer ids:"), "{answer}");
}
