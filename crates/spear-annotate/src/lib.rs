//! The 3D-VQA annotator: point maps and masks become object point clouds, outliers are removed,
//! oriented boxes fitted, and question-answer pairs written in SPEAR-VLM's 3D-token vocabulary.
//!
//! Not built yet: this crate is a placeholder in the workspace layout of `docs/ARCHITECTURE.md`;
//! its issue in the tracker describes what will live here.
