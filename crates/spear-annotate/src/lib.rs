#![doc = include_str!("../README.md")]

pub mod geometry;
pub mod instances;
mod knn;
pub mod masks;
pub mod moge;
pub mod obb;
pub mod outliers;
pub mod pipeline;
pub mod qa;
pub mod synthetic;
