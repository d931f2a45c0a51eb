//! `CoordQuantizer`: bins, clamping, fitting to samples, files, errors and round-trip properties.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use spear_data::{CoordError, CoordQuantizer};

fn scratch(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Standard normal draws by Box–Muller from a SplitMix64 stream: deterministic, no dependency.
fn normal_samples(count: usize, mean: f64, std: f64) -> Vec<f32> {
    let mut state = 0x5EA2_u64;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // 53 random bits in (0, 1].
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 + f64::EPSILON / 2.0
    };
    (0..count)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            (mean + std * z) as f32
        })
        .collect()
}

#[test]
fn uniform_bins_have_equal_width() {
    let q = CoordQuantizer::uniform(4, -1.0, 1.0).unwrap();
    assert_eq!(q.num_tokens(), 4);
    assert_eq!(q.edges(), [-1.0, -0.5, 0.0, 0.5, 1.0]);
    assert_eq!([-0.9, -0.5, -0.1, 0.0, 0.7, 1.0].map(|x| q.encode(x).unwrap()), [0, 1, 1, 2, 3, 3]);
    assert_eq!([0, 1, 2, 3].map(|t| q.decode(t).unwrap()), [-0.75, -0.25, 0.25, 0.75]);
}

#[test]
fn values_outside_the_range_go_to_the_end_tokens() {
    let q = CoordQuantizer::normal(1024, 0.2, 0.5, -0.8, 1.2).unwrap();
    for x in [-0.8, -0.81, -3.0, f32::NEG_INFINITY, f32::MIN] {
        assert_eq!(q.encode(x).unwrap(), 0, "{x}");
    }
    for x in [1.2, 1.21, 7.0, f32::INFINITY, f32::MAX] {
        assert_eq!(q.encode(x).unwrap(), 1023, "{x}");
    }
}

#[test]
fn normal_bins_are_finest_at_the_mean_and_symmetric_about_it() {
    let (n, mean) = (1024, 0.25);
    let q = CoordQuantizer::normal(n, mean, 0.5, mean - 1.0, mean + 1.0).unwrap();
    let edges = q.edges();
    let widths: Vec<f64> = edges.windows(2).map(|w| w[1] - w[0]).collect();
    let middle = n as usize / 2;
    assert!(widths[middle] < widths[middle + 100] && widths[middle + 100] < widths[n as usize - 1]);
    assert!(widths[middle - 1] < widths[middle - 101] && widths[middle - 101] < widths[0]);
    for i in 0..=n as usize {
        let mirrored = 2.0 * mean - edges[n as usize - i];
        assert!((edges[i] - mirrored).abs() < 1e-14, "edge {i}: {} vs mirrored {mirrored}", edges[i]);
    }
    assert!((edges[middle] - mean).abs() < 1e-15, "{}", edges[middle]);
}

#[test]
fn normal_samples_use_the_tokens_uniformly() {
    let samples = normal_samples(400_000, 0.3, 0.4);
    let q = CoordQuantizer::from_samples(1024, &samples).unwrap();
    let mut counts = vec![0u32; 1024];
    for &x in &samples {
        counts[q.encode(x).unwrap() as usize] += 1;
    }
    // 98% of the samples lie between the 1st and 99th percentile, spread over 1024 tokens; the
    // end tokens also get the 1% beyond the range on their side.
    let expected = 0.98 * samples.len() as f64 / 1024.0;
    for (token, &count) in counts.iter().enumerate().take(1023).skip(1) {
        let ratio = f64::from(count) / expected;
        assert!((0.7..1.3).contains(&ratio), "token {token}: {count} samples, expected about {expected}");
    }
    let tail = 0.01 * samples.len() as f64 + expected;
    for token in [0, 1023] {
        let ratio = f64::from(counts[token]) / tail;
        assert!(
            (0.9..1.1).contains(&ratio),
            "token {token}: {} samples, expected about {tail}",
            counts[token]
        );
    }
}

#[test]
fn from_samples_uses_numpy_percentiles_mean_and_std() {
    // numpy: rng = default_rng(0); s = rng.normal(0.1, 0.3, 37).astype(float32).
    let samples: [f32; 37] = [
        0.13771906,
        0.06036854,
        0.2921268,
        0.13147004,
        -0.06070081,
        0.20847851,
        0.4912,
        0.38412428,
        -0.111120574,
        -0.27962643,
        -0.08698234,
        0.1123978,
        -0.5975092,
        0.034362502,
        -0.27377328,
        -0.1196802,
        -0.06327769,
        0.005109953,
        0.22348917,
        0.412754,
        0.0614396,
        0.509939,
        -0.099558406,
        0.20545302,
        0.37104106,
        0.12820369,
        -0.12304977,
        -0.1765176,
        -0.03731775,
        0.16605854,
        -0.20288545,
        0.037247326,
        0.052232496,
        0.26225367,
        0.16439773,
        0.20661181,
        -0.09614858,
    ];
    // np.percentile(s.astype(float64), [1, 99]), s.mean(), s.std() in float64.
    let (p1, p99, mean, std) =
        (-0.4830714058876038, 0.5031929695606232, 0.06298190603234075, 0.22870502537991858);
    let fitted = CoordQuantizer::from_samples(256, &samples).unwrap();
    assert_eq!((fitted.edges()[0], fitted.edges()[256]), (p1, p99));
    let reference = CoordQuantizer::normal(256, mean, std, p1, p99).unwrap();
    for (a, b) in fitted.edges().iter().zip(reference.edges()) {
        assert!((a - b).abs() < 1e-14, "{a} vs {b}");
    }
}

#[test]
fn json_files_round_trip_exactly() {
    let q = CoordQuantizer::normal(1024, 0.1, 0.3, -0.5, 0.7).unwrap();
    let path = scratch("coord_quantizer.json");
    q.to_json_file(&path).unwrap();
    assert_eq!(CoordQuantizer::from_json_file(&path).unwrap(), q);
}

#[test]
fn invalid_parameters_are_errors() {
    use CoordError::*;
    let err = |r: Result<CoordQuantizer, CoordError>| r.unwrap_err();
    assert!(matches!(err(CoordQuantizer::uniform(1, 0.0, 1.0)), TokenCount { n: 1 }));
    assert!(matches!(err(CoordQuantizer::uniform(4, 1.0, 1.0)), EmptyRange { .. }));
    assert!(
        matches!(err(CoordQuantizer::uniform(4, 0.0, f64::INFINITY)), NotFinite { ref field, .. } if field == "max")
    );
    assert!(
        matches!(err(CoordQuantizer::normal(4, f64::NAN, 1.0, 0.0, 1.0)), NotFinite { ref field, .. } if field == "mean")
    );
    assert!(matches!(err(CoordQuantizer::normal(4, 0.0, 0.0, 0.0, 1.0)), NonPositiveStd { .. }));
    // No probability left in the range: every interior edge lands on an end.
    assert!(matches!(err(CoordQuantizer::normal(4, 0.0, 0.01, 5.0, 6.0)), NotIncreasing { .. }));
    assert!(matches!(err(CoordQuantizer::from_edges(vec![0.0, 1.0])), TokenCount { n: 1 }));
    assert!(matches!(err(CoordQuantizer::from_edges(vec![])), TokenCount { n: 0 }));
    let e = err(CoordQuantizer::from_edges(vec![0.0, 1.0, 1.0, 2.0]));
    assert!(matches!(e, NotIncreasing { index: 2, .. }));
    assert_eq!(e.to_string(), "edges must increase strictly: edges[2] = 1 is not above edges[1] = 1");
    let e = err(CoordQuantizer::from_edges(vec![0.0, f64::NAN, 2.0]));
    assert!(matches!(e, NotFinite { ref field, .. } if field == "edges[1]"), "{e}");
    assert!(matches!(err(CoordQuantizer::from_samples(8, &[1.0])), TooFewSamples { count: 1 }));
    assert!(matches!(err(CoordQuantizer::from_samples(8, &[1.0, f32::NAN])), NotFinite { .. }));
    assert!(matches!(err(CoordQuantizer::from_samples(8, &[1.0, 1.0, 1.0])), EmptyRange { .. }));

    let q = CoordQuantizer::uniform(4, -1.0, 1.0).unwrap();
    assert!(matches!(q.encode(f32::NAN), Err(NaN)));
    assert!(matches!(q.decode(4), Err(TokenOutOfRange { token: 4, n: 4 })));
}

#[test]
fn file_errors_name_the_file() {
    let missing = scratch("no_such_dir/quantizer.json");
    let e = CoordQuantizer::from_json_file(&missing).unwrap_err();
    assert!(
        matches!(e, CoordError::Io { .. }) && e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );

    for (name, text, needle) in [
        ("garbage.json", "{\"edges\": [0.0, ", "EOF"),
        ("unknown_field.json", r#"{"edges": [0.0, 1.0, 2.0], "n": 2}"#, "unknown field"),
        ("decreasing.json", r#"{"edges": [0.0, 2.0, 1.0]}"#, "edges must increase strictly"),
        ("one_bin.json", r#"{"edges": [0.0, 1.0]}"#, "needs 2"),
    ] {
        let path = scratch(name);
        std::fs::write(&path, text).unwrap();
        let e = CoordQuantizer::from_json_file(&path).unwrap_err();
        let message = e.to_string();
        assert!(matches!(e, CoordError::Json { .. }), "{message}");
        assert!(message.contains(&path.display().to_string()) && message.contains(needle), "{message}");
    }
}

/// Quantizers of the sizes and ranges 3D coordinates need: 2 to 2048 tokens over 0.1 m to 10 m,
/// uniform or normal with the mean in the range and a std of at least a tenth of it.
fn quantizers() -> impl Strategy<Value = CoordQuantizer> {
    (2u32..=2048, -5.0f64..5.0, 0.1f64..10.0, 0.0f64..1.0, 0.1f64..2.0, any::<bool>()).prop_map(
        |(n, min, width, mean_at, std_scale, normal)| {
            let max = min + width;
            if normal {
                CoordQuantizer::normal(n, min + mean_at * width, std_scale * width, min, max).unwrap()
            } else {
                CoordQuantizer::uniform(n, min, max).unwrap()
            }
        },
    )
}

proptest! {
    #[test]
    fn encode_is_monotone(q in quantizers(), a in -20.0f32..20.0, b in -20.0f32..20.0) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(q.encode(lo).unwrap() <= q.encode(hi).unwrap());
    }

    #[test]
    fn decode_of_encode_is_within_half_a_bin(q in quantizers(), t in 0.0f64..=1.0) {
        let (min, max) = (q.edges()[0], q.edges()[q.edges().len() - 1]);
        let x = (min + t * (max - min)) as f32;
        let token = q.encode(x).unwrap() as usize;
        let half_width = (q.edges()[token + 1] - q.edges()[token]) / 2.0;
        let centre = f64::from(q.decode(token as u32).unwrap());
        // The inputs and the centre are f32: allow their rounding on top of half a bin.
        let rounding = 2.0 * f64::from(f32::EPSILON) * f64::from(x).abs().max(centre.abs());
        prop_assert!((centre - f64::from(x)).abs() <= half_width + rounding);
    }

    #[test]
    fn every_token_decodes_into_its_own_bin(q in quantizers()) {
        for token in 0..q.num_tokens() {
            prop_assert_eq!(q.encode(q.decode(token).unwrap()).unwrap(), token);
        }
    }
}
