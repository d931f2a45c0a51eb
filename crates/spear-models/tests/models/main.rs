//! Parity of spear-models with transformers/torch on tiny random models (fixtures from
//! `tools/reference/vlm_fixtures.py`), checkpoint loading and its errors, and WGPU against CPU.

mod common;
mod dinov2;
mod joint;
mod loading;
mod mean_resizing;
mod moge_post;
mod paligemma;
mod policy;
mod remat;
mod siglip;
mod store;
