//! What several test files share: the tfds-written fixture datasets of
//! `tools/reference/rlds_fixtures.py`.

use std::path::PathBuf;

/// The five fixture datasets: (name, version).
#[allow(dead_code)] // not every test file uses both
pub const DATASETS: [(&str, &str); 5] = [
    ("bridge_dataset", "1.0.0"),
    ("droid", "1.0.1"),
    ("fractal20220817_data", "0.1.0"),
    ("language_table", "0.0.1"),
    ("viola", "0.1.0"),
];

/// `tests/fixtures/rlds`.
#[allow(dead_code)]
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rlds")
}
