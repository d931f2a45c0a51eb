//! The TFRecord/RLDS reader, the Open X-Embodiment dataset registry and its standardisation into one
//! step schema (5 Hz, H = 5 chunks of end-effector deltas), resampling, normalisation statistics,
//! image transforms, mixtures, the batch loader, 3D-VQA data and the PaliGemma tokenizer.
//!
//! Not built yet: this crate is a placeholder in the workspace layout of `docs/ARCHITECTURE.md`;
//! its issue in the tracker describes what will live here.
