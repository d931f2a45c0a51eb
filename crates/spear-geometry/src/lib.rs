#![doc = include_str!("../README.md")]

pub mod error;
pub mod flow;
pub mod pose;
pub mod quat;
pub mod rotation;
pub mod s3;
#[cfg(feature = "tensor")]
pub mod tensor;

pub use error::GeometryError;
pub use pose::Pose;
