#![doc = include_str!("../README.md")]

pub mod frame;
pub mod inputs;
pub mod policy;
pub mod spec;

pub use frame::{ChannelOrder, Frame, Pixels};
pub use policy::{LoadOptions, ModelInputs, Policy, PolicyError, RawObservation};
pub use spec::{CameraSpec, PolicySpec};
