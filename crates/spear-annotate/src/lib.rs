#![doc = include_str!("../README.md")]

pub mod masks;
pub mod outliers;
