//! MoGe beyond its encoder (the encoder is [`crate::dinov2`]): so far the working sizes
//! ([`sizes`]) and the post-processing of its
//! point maps ([`post`]: the focal and shift, the intrinsics, MoGe-1's `infer` after the network).

pub mod post;
pub mod sizes;
