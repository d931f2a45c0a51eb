//! The subcommands: each module owns its clap arguments, its backend job and its rendering.

pub mod annotate;
pub mod bench;
pub mod data;
pub mod doctor;
pub mod plot;
pub mod policy;
pub mod serve;
pub mod train;
pub mod vlm;
pub mod weights;
