//! SPEAR-VLM's 3D visual-question-answering examples as token sequences.
//!
//! The annotation pipeline writes one JSON object per line ([`VqaExample`]): an image and 1–4
//! question–answer pairs (appendix A.1.1), each answer a list of [`Segment`]s — text, 3D values in
//! metres (each becomes one of the 1024 3D tokens through the run's [`CoordQuantizer`]), and 2D
//! image locations (PaliGemma's `<locNNNN>` tokens, for the back-projection task).
//!
//! [`encode`] lays a pair list out the way PaliGemma trains on prefix and suffix, extended to
//! several pairs: the prefix (attended bidirectionally) is `<bos>` + first question + `"\n"`; the
//! suffix (causal) is the first answer, then for each further pair `"\n"` + question + `"\n"` +
//! answer, then `<eos>`. The loss covers answer tokens and the final `<eos>` only; the 3D-token
//! mask marks the positions the trainer weights by λ (= 2 in the paper's stage 2).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::coord_tokens::{CoordError, CoordQuantizer};
use crate::tokenizer::{PaliGemmaTokenizer, TokenizerError};

/// A piece of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Segment {
    /// Text, tokenized as it is.
    Text {
        /// The text.
        text: String,
    },
    /// Values in metres (a point's x, y, z; a distance), one 3D token each.
    Coords {
        /// The values.
        coords: Vec<f64>,
    },
    /// A 2D location `[y, x]` normalised to [0, 1] by the image's height and width, as two of
    /// PaliGemma's 1024 `<locNNNN>` tokens.
    Loc {
        /// `[y, x]`.
        loc: [f64; 2],
    },
}

/// One question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QaPair {
    /// The question (the task's template filled in).
    pub question: String,
    /// The answer.
    pub answer: Vec<Segment>,
    /// The task family that produced it (e.g. `"box"`), for statistics and per-task evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The answer rendered as plain text (numbers in metres and normalised image coordinates),
    /// for people and for trainers without 3D tokens; not used by [`encode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One training example: an image and its question–answer pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqaExample {
    /// The image, relative to the annotation file's folder unless absolute.
    pub image: PathBuf,
    /// 1–4 pairs about different objects.
    pub pairs: Vec<QaPair>,
}

/// An example's token sequence (after the image tokens) and its masks, all of one length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VqaTokens {
    /// Token ids, starting with `<bos>`.
    pub ids: Vec<u32>,
    /// The first `prefix_len` ids are the prefix (bidirectional attention), the rest the suffix.
    pub prefix_len: usize,
    /// Positions whose token is trained on (answers and the final `<eos>`).
    pub loss: Vec<bool>,
    /// Positions holding 3D tokens.
    pub is_3d: Vec<bool>,
}

/// Why an example cannot be encoded or read.
#[derive(Debug, thiserror::Error)]
pub enum VqaError {
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// A 3D value could not be quantised.
    #[error("pair {pair}: {source}")]
    Coord {
        /// Index of the pair.
        pair: usize,
        /// The quantiser's error.
        source: CoordError,
    },
    /// Something else about the example.
    #[error("{0}")]
    Invalid(String),
    /// A line of an annotation file.
    #[error("{path}:{line}: {problem}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

/// PaliGemma's location bins per axis.
const LOC_BINS: f64 = 1024.0;

/// The `<locNNNN>` token of a normalised coordinate: bin `floor(v · 1024)`, clamped to 0..=1023.
fn loc_token(tokenizer: &PaliGemmaTokenizer, v: f64) -> Result<u32, VqaError> {
    if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
        return Err(VqaError::Invalid(format!("location {v} is not in [0, 1]")));
    }
    let bin = ((v * LOC_BINS) as u32).min(LOC_BINS as u32 - 1);
    let token = format!("<loc{bin:04}>");
    tokenizer.token_id(&token).ok_or_else(|| VqaError::Invalid(format!("the tokenizer has no {token}")))
}

/// Lays out `pairs` as described in the module documentation. 3D token `k` has id
/// `base_vocab + k`, where `base_vocab` is the language model's vocabulary (its embedding rows,
/// e.g. 257 216 for PaliGemma), which can exceed the tokenizer's.
pub fn encode(
    pairs: &[QaPair],
    tokenizer: &PaliGemmaTokenizer,
    quantizer: &CoordQuantizer,
    base_vocab: u32,
) -> Result<VqaTokens, VqaError> {
    let Some(first) = pairs.first() else {
        return Err(VqaError::Invalid("an example without question-answer pairs".into()));
    };
    let mut out = VqaTokens {
        ids: tokenizer.encode_prefix(&first.question)?,
        prefix_len: 0,
        loss: vec![],
        is_3d: vec![],
    };
    out.prefix_len = out.ids.len();
    out.loss = vec![false; out.prefix_len];
    out.is_3d = vec![false; out.prefix_len];
    let push = |out: &mut VqaTokens, ids: &[u32], loss: bool, is_3d: bool| {
        out.ids.extend_from_slice(ids);
        out.loss.extend(std::iter::repeat_n(loss, ids.len()));
        out.is_3d.extend(std::iter::repeat_n(is_3d, ids.len()));
    };
    for (p, pair) in pairs.iter().enumerate() {
        if p > 0 {
            let question = tokenizer.encode_text(&format!("\n{}\n", pair.question))?;
            push(&mut out, &question, false, false);
        }
        if pair.answer.is_empty() {
            return Err(VqaError::Invalid(format!("pair {p} has an empty answer")));
        }
        for segment in &pair.answer {
            match segment {
                Segment::Text { text } => push(&mut out, &tokenizer.encode_text(text)?, true, false),
                Segment::Coords { coords } => {
                    for &v in coords {
                        let k = quantizer
                            .encode(v as f32)
                            .map_err(|source| VqaError::Coord { pair: p, source })?;
                        push(&mut out, &[base_vocab + k], true, true);
                    }
                }
                Segment::Loc { loc } => {
                    let ids = [loc_token(tokenizer, loc[0])?, loc_token(tokenizer, loc[1])?];
                    push(&mut out, &ids, true, false);
                }
            }
        }
    }
    push(&mut out, &[tokenizer.eos_id()], true, false);
    Ok(out)
}

/// Reads an annotation file (JSON lines; blank lines skipped); image paths are made relative to
/// its folder.
pub fn read_examples(path: impl AsRef<Path>) -> Result<Vec<VqaExample>, VqaError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| VqaError::Line {
        path: path.to_path_buf(),
        line: 0,
        problem: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fail = |problem: String| VqaError::Line { path: path.to_path_buf(), line: i + 1, problem };
        let mut example: VqaExample = serde_json::from_str(line).map_err(|e| fail(e.to_string()))?;
        if example.pairs.is_empty() {
            return Err(fail("no question-answer pairs".into()));
        }
        example.image = base.join(&example.image);
        examples.push(example);
    }
    Ok(examples)
}

/// Fits the 3D-token quantiser of a run to every 3D value of its annotation set (appendix A.1.3:
/// range = 1st/99th percentiles, bins used about uniformly).
pub fn fit_quantizer(examples: &[VqaExample], tokens: u32) -> Result<CoordQuantizer, VqaError> {
    let values: Vec<f32> = examples
        .iter()
        .flat_map(|e| &e.pairs)
        .flat_map(|p| &p.answer)
        .filter_map(|s| match s {
            Segment::Coords { coords } => Some(coords.iter().map(|&v| v as f32)),
            _ => None,
        })
        .flatten()
        .collect();
    CoordQuantizer::from_samples(tokens, &values).map_err(|source| VqaError::Coord { pair: 0, source })
}
