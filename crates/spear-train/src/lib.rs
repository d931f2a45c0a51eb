#![doc = include_str!("../README.md")]

pub mod checkpoint;
pub mod config;
pub mod dist;
pub mod embedded;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod plan;
pub mod reach;
pub mod run;
pub mod stages;
