//! `spear data inspect | stats | preview` on spear-data's tfds-written fixtures.

mod common;

use common::run_spear;

fn rlds(path: &str) -> String {
    format!("{}/../spear-data/tests/fixtures/rlds/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn inspect_reports_schema_registry_and_the_first_frame() {
    let (ok, out, err) = run_spear(&["data", "inspect", &rlds("viola/0.1.0"), "--json"]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["name"], "viola");
    assert_eq!(report["splits"][0]["episodes"], 2);
    let fields = report["fields"].as_array().unwrap();
    let ee = fields.iter().find(|f| f["path"] == "observation/ee_states").unwrap();
    assert_eq!(ee["type"], "float32[16]");
    assert_eq!(report["cameras"][0]["shape"], serde_json::json!([224, 224, 3]));
    let first = &report["first_episode"];
    assert_eq!(first["registry"]["rate_hz"], 20.0);
    assert_eq!(first["frame0"]["state"].as_array().unwrap().len(), 8);
    assert_eq!(first["frame0"]["actions"].as_array().unwrap().len(), 5);

    let (ok, text, err) = run_spear(&["data", "inspect", &rlds("language_table/0.0.1")]);
    assert!(ok, "{err}");
    assert!(text.contains("observation/instruction") && text.contains("int32[512]"), "{text}");
    assert!(text.contains("10.0 Hz") || text.contains("10 Hz"), "{text}");
}

#[test]
fn inspect_names_what_is_wrong_with_a_damaged_dataset() {
    let (ok, _, err) =
        run_spear(&["data", "inspect", &rlds("corrupt/missing_features/language_table/0.0.1")]);
    assert!(!ok);
    assert!(err.contains("features.json"), "{err}");
}

#[test]
fn preview_draws_a_contact_sheet() {
    let out = std::env::temp_dir().join(format!("spear-preview-{}.png", std::process::id()));
    let (ok, stdout, err) = run_spear(&[
        "data",
        "preview",
        &rlds("droid/1.0.1"),
        "--episode",
        "1",
        "--frames",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("frames [0, 4, 8]"), "{stdout}");
    let sheet = image::open(&out).unwrap();
    // Three rows of external (280) + wrist (112) + plot (210) with 4-pixel gaps.
    assert_eq!((sheet.width(), sheet.height()), (280 + 4 + 112 + 4 + 210, 3 * (210 + 4)));
}

#[test]
fn stats_writes_the_mixtures_statistics() {
    let out = std::env::temp_dir().join(format!("spear-stats-{}.json", std::process::id()));
    let (ok, stdout, err) =
        run_spear(&["data", "stats", "--mixture", &rlds("mixture.toml"), "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("6/6 shards"), "progress: {err}");
    assert!(stdout.contains("droid") && stdout.contains("action translation"), "{stdout}");
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(stats["datasets"].as_array().unwrap().len(), 5);
    assert_eq!(stats["action_translation"]["q01"].as_array().unwrap().len(), 3);
}
