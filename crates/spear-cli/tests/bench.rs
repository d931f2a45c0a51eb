//! `spear bench policy` through the binary at tiny size on the CPU: the report's format, not its
//! timings.

mod common;
use common::run_spear as spear;

/// The three numbers of a `  who  prefix X ms   step Y ms   chunk Z ms` row.
fn row(out: &str, who: &str) -> Vec<[f64; 3]> {
    out.lines()
        .filter(|l| l.trim_start().starts_with(who))
        .map(|l| {
            let numbers: Vec<f64> = l.split_whitespace().filter_map(|w| w.parse().ok()).collect();
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

#[test]
fn bench_policy_reports_a_python_that_cannot_run() {
    let (ok, _, err) = spear(&[
        "bench",
        "policy",
        "--backend",
        "cpu",
        "--repeats",
        "1",
        "--only",
        "pi0",
        "--compare-torch",
        "/nonexistent/python",
    ]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/python") && err.contains("policy_torch.py"), "{err}");
}
