#![doc = include_str!("../README.md")]

pub mod coord_tokens;
pub mod example;
pub mod hash;
pub mod images;
pub mod loader;
pub mod oxe;
pub mod resample;
pub mod rlds;
pub mod schema;
pub mod stats;
pub mod tfrecord;
pub mod tokenizer;
pub mod vqa;

pub use coord_tokens::{CoordError, CoordQuantizer};
pub use rlds::{Episode, RldsDataset, RldsError};
pub use schema::{Schema, SchemaError};
pub use tokenizer::{PaliGemmaTokenizer, TokenizerError};
