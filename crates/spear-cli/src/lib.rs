//! The library behind the `spear` binary: backend selection and the subcommands, each generic over
//! the burn backend so that tests can run them on any backend directly.

pub mod backend;
pub mod commands;
pub mod draw;
pub mod heap;
