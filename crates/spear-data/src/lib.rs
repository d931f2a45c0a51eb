#![doc = include_str!("../README.md")]

pub mod coord_tokens;
pub mod example;
pub mod tfrecord;
pub mod tokenizer;

pub use coord_tokens::{CoordError, CoordQuantizer};
pub use tokenizer::{PaliGemmaTokenizer, TokenizerError};
