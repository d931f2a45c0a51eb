#![doc = include_str!("../README.md")]

pub mod attention;
pub mod dinov2;
pub mod embedding;
pub mod error;
pub mod expert;
pub mod gemma;
pub mod generate;
pub mod import;
pub mod moge;
pub mod patch;
pub mod policy;
pub mod precision;
pub mod remat;
pub mod resize;
pub mod siglip;
pub mod store;
pub mod vision;
pub mod vlm;

pub use error::ModelError;
pub use policy::{Observation, RotationMode, SpearPolicy, SpearPolicyConfig};
pub use precision::Precision;
pub use vlm::{SpearVlm, SpearVlmConfig};
