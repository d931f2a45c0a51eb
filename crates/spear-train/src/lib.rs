//! Training: the SPEAR-VLM stages 1 and 2, SPEAR-1 pre- and post-training, the optimiser and
//! schedules, EMA, checkpoints with resume, and metrics written as JSONL and plotted as PNG.
//!
//! Not built yet: this crate is a placeholder in the workspace layout of `docs/ARCHITECTURE.md`;
//! its issue in the tracker describes what will live here.
