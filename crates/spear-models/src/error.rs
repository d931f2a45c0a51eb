//! Errors of model construction, inputs and checkpoint import.

use std::path::PathBuf;

/// Everything that can go wrong building, feeding or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An image whose sides are not positive multiples of the encoder's patch.
    #[error(
        "{encoder}: image of {height}×{width} pixels is not a positive multiple of the {patch}-pixel patch"
    )]
    ImageSize {
        /// Which encoder.
        encoder: String,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Patch side.
        patch: usize,
    },
    /// Two inputs that must agree do not.
    #[error("{0}")]
    Input(String),
    /// A checkpoint file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A checkpoint file is malformed (truncated, bad header, bad index).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tensor or field.
        message: String,
    },
    /// The tensor names match no known layout.
    #[error("{path}: unrecognised checkpoint layout ({hint})")]
    UnknownLayout {
        /// The file or folder.
        path: PathBuf,
        /// A few of its tensor names.
        hint: String,
    },
    /// Loading left tensors missing, unused or mismatched, and the load was not declared partial.
    #[error("loading {path} into {model}:\n{report}")]
    Incomplete {
        /// The checkpoint.
        path: PathBuf,
        /// The model loaded into.
        model: String,
        /// The full list of problems, one per line.
        report: String,
    },
}
