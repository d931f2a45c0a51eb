#![doc = include_str!("../README.md")]

pub mod client;
pub mod openpi;
pub mod preset;
pub mod server;
pub mod wire;
pub mod worker;
