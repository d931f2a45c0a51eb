//! The training stages, each a [`crate::run::Task`]: SPEAR-VLM's ([`vlm`], stages 1 and 2) and
//! SPEAR-1's ([`vla`], pre- and post-training).

pub mod vla;
pub mod vlm;
