//! Weight import: reading checkpoint files ([`checkpoint`]: safetensors, sharded snapshot folders,
//! PyTorch pickles), recognising their layout and mapping every tensor name onto our module paths
//! ([`layout`]), and the model configuration stored beside them ([`hf_config`]).

pub mod checkpoint;
pub mod hf_config;
pub mod layout;
