//! `spear bench policy` and `spear bench train` through the binary at tiny size on the CPU: the
//! report's format, not its timings.

mod common;
use common::run_spear as spear;

/// The words of `line` that parse as numbers, in order.
fn numbers(line: &str) -> Vec<f64> {
    line.split_whitespace().filter_map(|w| w.parse().ok()).collect()
}

/// The numbers of each line of `out` that starts with `who` (after indentation) and holds `word`.
fn rows_with(out: &str, who: &str, word: &str) -> Vec<Vec<f64>> {
    out.lines().filter(|l| l.trim_start().starts_with(who) && l.contains(word)).map(numbers).collect()
}

/// The three numbers of a `  who  prefix X ms   step Y ms   chunk Z ms` row.
fn row(out: &str, who: &str) -> Vec<[f64; 3]> {
    out.lines()
        .filter(|l| l.trim_start().starts_with(who))
        .map(|l| {
            let numbers = numbers(l);
            assert!(numbers.len() >= 3 && l.contains("prefix") && l.contains("chunk"), "{l}");
            [numbers[0], numbers[1], numbers[2]]
        })
        .collect()
}

#[test]
fn bench_policy_reports_both_shapes_with_their_roofline() {
    let (ok, out, err) =
        spear(&["bench", "policy", "--backend", "cpu", "--repeats", "1", "--prompt-tokens", "8"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("bench policy: batch 1, 8 prompt tokens, median over 1 timed round(s)"), "{out}");
    assert!(out.contains("  peak      matmul ") && out.contains("GFLOP/s") && out.contains("GB/s"), "{out}");
    assert!(out.contains("π0-shaped (no MoGe, no 3D tokens, linear flow) tiny: 2 cameras 224×224, 5 actions × 8, 10 flow steps"), "{out}");
    assert!(
        out.contains("SPEAR-1 (MoGe + S³) tiny: main 280×210 + wrist 112×112, 5 actions × 8, 10 flow steps"),
        "{out}"
    );
    // 2·256 + 8 and 300 + 64 + 8 prefix tokens.
    assert!(out.contains("prefix of 520 tokens") && out.contains("prefix of 372 tokens"), "{out}");
    let (ours, bounds) = (row(&out, "spear (cpu)"), row(&out, "roofline"));
    assert_eq!((ours.len(), bounds.len()), (2, 2), "{out}");
    for [prefix, step, chunk] in ours.into_iter().chain(bounds) {
        assert!(prefix > 0.0 && step > 0.0 && chunk >= prefix, "{out}");
    }
    assert_eq!(out.matches("measured/bound   spear ").count(), 2, "{out}");
    assert!(!out.contains("torch"), "no PyTorch row without --compare-torch: {out}");
}

#[test]
fn bench_policy_can_time_one_shape() {
    let (ok, out, err) = spear(&[
        "bench",
        "policy",
        "--backend",
        "cpu",
        "--repeats",
        "1",
        "--prompt-tokens",
        "2",
        "--only",
        "pi0",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("π0-shaped") && !out.contains("SPEAR-1"), "{out}");
}

/// `spear bench COMMAND … --compare-torch /nonexistent/python` fails, naming the Python and the
/// PyTorch twin `script`.
fn fails_naming_a_python_that_cannot_run(command: &str, script: &str) {
    let line =
        format!("bench {command} --backend cpu --repeats 1 --only pi0 --compare-torch /nonexistent/python");
    let (ok, _, err) = spear(&line.split(' ').collect::<Vec<_>>());
    assert!(!ok);
    assert!(err.contains("/nonexistent/python") && err.contains(script), "{err}");
}

#[test]
fn bench_policy_reports_a_python_that_cannot_run() {
    fails_naming_a_python_that_cannot_run("policy", "policy_torch.py");
}

#[test]
fn bench_train_reports_a_python_that_cannot_run() {
    fails_naming_a_python_that_cannot_run("train", "train_torch.py");
}

#[test]
fn bench_train_reports_both_shapes_per_step_sample_and_token() {
    let line = "bench train --backend cpu --repeats 1 --batch 2 --prompt-tokens 4";
    let (ok, out, err) = spear(&line.split(' ').collect::<Vec<_>>());
    assert!(ok, "{err}");
    assert!(out.starts_with("bench train: one optimiser step"), "{out}");
    assert!(out.contains("at batch 2, 4 prompt tokens, median over 1 timed step(s)"), "{out}");
    // 2·256 + 4 and 300 + 64 + 4 prefix tokens; the state and 5 actions.
    assert!(
        out.contains(
            "π0-shaped (no MoGe, no 3D tokens, linear flow) tiny: 2 cameras 224×224, 5 actions × 8, \
             522 tokens per sample (516 prefix + 6 suffix)"
        ),
        "{out}"
    );
    assert!(
        out.contains("tiny: main 280×210 + wrist 112×112, 5 actions × 8, 374 tokens per sample"),
        "{out}"
    );
    let steps = rows_with(&out, "spear (cpu)", "ms/step");
    assert_eq!(steps.len(), 2, "{out}");
    for (n, tokens) in steps.iter().zip([522.0, 374.0]) {
        // ms/step, steps/s, samples/s, tokens/s, peak memory MB, the plan's MB
        assert!(n.len() == 6 && n.iter().all(|&x| x > 0.0), "{out}");
        assert!((n[2] / n[1] - 2.0).abs() < 1e-2 && (n[3] / n[2] / tokens - 1.0).abs() < 1e-2, "{out}");
    }
    let parts = rows_with(&out, "spear (cpu)", "forward");
    assert_eq!(parts.len(), 2, "{out}");
    for n in parts {
        // forward, backward and update ms, then the loss
        assert!(n.len() == 4 && n.iter().all(|&x| x > 0.0), "{out}");
    }
    assert!(!out.contains("torch"), "no PyTorch row without --compare-torch: {out}");
    assert_eq!(rows_with(&out, "spear (cpu) f32 none", "ms/step").len(), 2, "{out}");
    // One row per precision and checkpointing asked for.
    let line = format!("{line} --precision f32,bf16 --checkpointing balanced");
    let (ok, out, err) = spear(&line.split(' ').collect::<Vec<_>>());
    assert!(ok, "{err}");
    for who in ["spear (cpu) f32 balanced", "spear (cpu) bf16 balanced"] {
        assert_eq!(rows_with(&out, who, "ms/step").len(), 2, "{out}");
    }
}
