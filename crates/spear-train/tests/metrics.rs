//! Metrics lines: written, read back as series, the lost tail of a killed run dropped on resume,
//! bad lines named.

use spear_train::metrics::{MetricsWriter, metrics_path, read_metrics, series};

#[test]
fn metrics_round_trip_and_resume_drops_the_lost_tail() {
    let dir = std::env::temp_dir().join(format!("spear-train-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut writer = MetricsWriter::open(&dir, None).unwrap();
    for step in 1..=7u64 {
        writer.write(step, &[("loss", 1.0 / step as f64), ("lr", 1e-3)]).unwrap();
    }
    writer.write(8, &[("loss", f64::NAN)]).unwrap();
    drop(writer);
    // Killed after the checkpoint of step 5: resuming keeps steps 1-5 and appends from there.
    let mut writer = MetricsWriter::open(&dir, Some(5)).unwrap();
    writer.write(6, &[("loss", 0.5), ("val_loss", 0.7)]).unwrap();
    drop(writer);
    let lines = read_metrics(&metrics_path(&dir)).unwrap();
    let steps: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6]);
    let s = series(&lines);
    assert_eq!(s["loss"].last(), Some(&(6, 0.5)));
    assert_eq!(s["val_loss"], vec![(6, 0.7)]);
    assert_eq!(s["lr"].len(), 5);
    std::fs::write(metrics_path(&dir), "{\"step\": 1}\n[1, 2]\n").unwrap();
    let error = read_metrics(&metrics_path(&dir)).unwrap_err().to_string();
    assert!(error.contains("metrics.jsonl:2"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
