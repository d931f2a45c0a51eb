//! MoGe beyond its encoder (the encoder is [`crate::dinov2`]): so far the post-processing of its
//! point maps ([`post`]: the focal and shift, the intrinsics, MoGe-1's `infer` after the network).

pub mod post;
