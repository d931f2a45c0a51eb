#![doc = include_str!("../README.md")]

mod knn;
pub mod masks;
pub mod moge;
pub mod obb;
pub mod outliers;
