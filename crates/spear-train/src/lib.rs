#![doc = include_str!("../README.md")]

pub mod checkpoint;
pub mod config;
pub mod metrics;
pub mod optim;
pub mod plan;
