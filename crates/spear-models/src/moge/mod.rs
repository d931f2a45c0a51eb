//! MoGe beyond its encoder (the encoder is [`crate::dinov2`]): so far the post-processing of its
//! point maps ([`post`]).

pub mod post;
