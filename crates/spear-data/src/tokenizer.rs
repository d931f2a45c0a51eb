//! The PaliGemma tokenizer: a Gemma `tokenizer.json` loaded with the Hugging Face `tokenizers`
//! crate, and the prefix/suffix layout of Hugging Face's `PaliGemmaProcessor`.
//!
//! The processor builds the string `"<image>" * n + "<bos>" + prompt + "\n"` and tokenizes it as
//! one text; with `suffix=` (training) it tokenizes `answer + "<eos>"` as the second sequence of a
//! pair. [`PaliGemmaTokenizer::encode_prefix`] returns the ids after the image tokens and
//! [`PaliGemmaTokenizer::encode_suffix`] the ids of the second sequence. Both tokenize the text
//! exactly as the processor does, as one string, so a byte-pair merge across the end of the
//! prompt and the `"\n"` comes out as it does there; text in the prompt that spells a special token
//! (`<bos>`, `<image>`, ...) becomes that token, as it does there.
//!
//! Neither method runs the tokenizer's post-processor: it adds nothing for PaliGemma, whose
//! tokenizer has `add_bos_token = false`, and the processor writes `<bos>` and `<eos>` into the
//! text itself.

use std::path::{Path, PathBuf};

/// Errors of [`PaliGemmaTokenizer`]. Each names the `tokenizer.json` it concerns.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file could not be read.
    #[error("cannot read tokenizer file {}: {source}", path.display())]
    Io {
        /// The tokenizer file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a tokenizer the `tokenizers` crate can load.
    #[error("{} is not a valid tokenizer.json: {source}", path.display())]
    Parse {
        /// The tokenizer file.
        path: PathBuf,
        /// The error of the `tokenizers` crate.
        source: tokenizers::Error,
    },
    /// A special token that PaliGemma needs is not among the tokenizer's added special tokens.
    #[error("{}: the tokenizer has no special token {token} (added_tokens with \"special\": true)", path.display())]
    MissingSpecialToken {
        /// The tokenizer file.
        path: PathBuf,
        /// The token's text, e.g. `<bos>`.
        token: &'static str,
    },
    /// The `tokenizers` crate failed to encode a text.
    #[error("{}: cannot encode {text:?}: {source}", path.display())]
    Encode {
        /// The tokenizer file.
        path: PathBuf,
        /// The text that was being encoded.
        text: String,
        /// The error of the `tokenizers` crate.
        source: tokenizers::Error,
    },
    /// An id to decode is not in the vocabulary.
    #[error("{}: token id {id} is not in the vocabulary ({vocab_size} tokens)", path.display())]
    UnknownId {
        /// The tokenizer file.
        path: PathBuf,
        /// The unknown id.
        id: u32,
        /// The tokenizer's vocabulary size, added tokens included.
        vocab_size: usize,
    },
    /// The `tokenizers` crate failed to decode ids.
    #[error("{}: cannot decode token ids: {source}", path.display())]
    Decode {
        /// The tokenizer file.
        path: PathBuf,
        /// The error of the `tokenizers` crate.
        source: tokenizers::Error,
    },
}

/// The text of the beginning-of-sequence token.
const BOS: &str = "<bos>";
/// The text of the end-of-sequence token.
const EOS: &str = "<eos>";
/// The text of the padding token.
const PAD: &str = "<pad>";
/// The text of the image placeholder token.
const IMAGE: &str = "<image>";

/// A Gemma tokenizer with PaliGemma's special tokens, encoding prompts and answers the way
/// Hugging Face's `PaliGemmaProcessor` does.
///
/// ```
/// use spear_data::PaliGemmaTokenizer;
///
/// let path = concat!(
///     env!("CARGO_MANIFEST_DIR"),
///     "/../spear-models/tests/fixtures/paligemma-tiny/tokenizer.json"
/// );
/// let tokenizer = PaliGemmaTokenizer::from_file(path)?;
/// let prefix = tokenizer.encode_prefix("pick up the red cup")?;
/// assert_eq!(prefix[0], tokenizer.bos_id());
/// assert_eq!(tokenizer.decode(&prefix, true)?, "pick up the red cup\n");
/// # Ok::<(), spear_data::TokenizerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PaliGemmaTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    image_token_id: Option<u32>,
    vocab_size: usize,
}

impl PaliGemmaTokenizer {
    /// Loads a `tokenizer.json` (the Hugging Face `tokenizers` format). `<bos>`, `<eos>` and
    /// `<pad>` must be added special tokens; `<image>` may be absent (a plain Gemma tokenizer).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref().to_path_buf();
        let bytes =
            std::fs::read(&path).map_err(|source| TokenizerError::Io { path: path.clone(), source })?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|source| TokenizerError::Parse { path: path.clone(), source })?;
        let added = inner.get_added_tokens_decoder();
        let special_id =
            |token: &str| added.iter().find(|(_, t)| t.special && t.content == token).map(|(&id, _)| id);
        let required = |token: &'static str| {
            special_id(token).ok_or_else(|| TokenizerError::MissingSpecialToken { path: path.clone(), token })
        };
        let (bos_id, eos_id, pad_id) = (required(BOS)?, required(EOS)?, required(PAD)?);
        let image_token_id = special_id(IMAGE);
        let vocab_size = inner.get_vocab_size(true);
        Ok(Self { inner, path, bos_id, eos_id, pad_id, image_token_id, vocab_size })
    }

    /// The id of `<bos>`.
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// The id of `<eos>`.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// The id of `<pad>`.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The id of `<image>`, if the tokenizer has it as an added special token.
    pub fn image_token_id(&self) -> Option<u32> {
        self.image_token_id
    }

    /// The number of distinct tokens, added tokens included (Python's `len(tokenizer)`). A model's
    /// embedding table may have more rows (PaliGemma rounds up to a multiple of 64).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The ids that `PaliGemmaProcessor` puts after the image tokens: the tokens of
    /// `"<bos>" + prompt + "\n"`, tokenized as one string.
    pub fn encode_prefix(&self, prompt: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode(format!("{BOS}{prompt}\n"))
    }

    /// The ids openpi's `PaligemmaTokenizer` gives π0 for `prompt`: `<bos>`, the tokens of the
    /// prompt stripped and with `_` and newlines made spaces, then the tokens of `"\n"` encoded
    /// on their own (so no merge across the end of the prompt, unlike [`Self::encode_prefix`]),
    /// the whole cut to `max_tokens` (openpi's `max_token_len`, 48 for π0).
    pub fn encode_pi0_prompt(&self, prompt: &str, max_tokens: usize) -> Result<Vec<u32>, TokenizerError> {
        let cleaned = prompt.trim().replace(['_', '\n'], " ");
        let mut ids = vec![self.bos_id];
        ids.extend(self.encode_text(&cleaned)?);
        ids.extend(self.encode_text("\n")?);
        ids.truncate(max_tokens);
        Ok(ids)
    }

    /// The ids that `PaliGemmaProcessor` appends for `suffix=answer` (training): the tokens of
    /// `answer + "<eos>"`, tokenized as one string.
    pub fn encode_suffix(&self, answer: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode(format!("{answer}{EOS}"))
    }

    /// The ids of `text` alone: no `<bos>`, no `<eos>` (pieces of a longer sequence).
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode(text.to_string())
    }

    /// The id of a token given by its text (`<loc0123>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of `ids`; with `skip_special`, special tokens (`<bos>`, `<eos>`, `<pad>`, `<image>`,
    /// ...) are left out. An id outside the vocabulary is an error (the `tokenizers` crate would
    /// drop it silently).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        if let Some(&id) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            return Err(TokenizerError::UnknownId {
                path: self.path.clone(),
                id,
                vocab_size: self.vocab_size,
            });
        }
        self.inner
            .decode(ids, skip_special)
            .map_err(|source| TokenizerError::Decode { path: self.path.clone(), source })
    }

    /// The ids of `text`, special-token text included, without the post-processor's additions.
    fn encode(&self, text: String) -> Result<Vec<u32>, TokenizerError> {
        match self.inner.encode(text.as_str(), false) {
            Ok(encoding) => Ok(encoding.get_ids().to_vec()),
            Err(source) => Err(TokenizerError::Encode { path: self.path.clone(), text, source }),
        }
    }
}
