//! SigLIP, Gemma, the DINOv2/MoGe encoder, SPEAR-VLM (with its 1024 3D tokens), the flow-matching
//! action expert and the SPEAR-1 policy, as burn modules generic over the backend, with weight import
//! from Hugging Face safetensors and openpi checkpoints by key remapping.
//!
//! Not built yet: this crate is a placeholder in the workspace layout of `docs/ARCHITECTURE.md`;
//! its issue in the tracker describes what will live here.
