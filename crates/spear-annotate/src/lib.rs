#![doc = include_str!("../README.md")]

pub mod masks;
pub mod moge;
pub mod outliers;
