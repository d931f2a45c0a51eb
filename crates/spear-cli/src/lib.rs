//! The library behind the `spear` binary: backend selection and the subcommands, each generic over
//! the burn backend so that tests can run them on any backend directly.

pub mod annotate;
pub mod backend;
pub mod bench;
pub mod data;
pub mod doctor;
pub mod draw;
pub mod plot;
pub mod policy;
pub mod train;
pub mod vlm;
pub mod weights;
