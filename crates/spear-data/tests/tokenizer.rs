//! `PaliGemmaTokenizer` against ids from Hugging Face's `PaliGemmaProcessor` (transformers 4.57.6)
//! on a tiny Gemma-style tokenizer (`tools/reference/vlm_fixtures.py`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use spear_data::{PaliGemmaTokenizer, TokenizerError};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../spear-models/tests/fixtures");

fn tokenizer_path() -> PathBuf {
    Path::new(FIXTURES).join("paligemma-tiny/tokenizer.json")
}

#[derive(Deserialize)]
struct Cases {
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    image_token_id: u32,
    newline_id: u32,
    tokenizer_len: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    prefix_ids: Vec<u32>,
    suffix: String,
    suffix_ids: Vec<u32>,
    decoded: String,
}

fn cases() -> Cases {
    let path = Path::new(FIXTURES).join("tokenizer_cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tokenizer() -> PaliGemmaTokenizer {
    PaliGemmaTokenizer::from_file(tokenizer_path()).unwrap()
}

/// The fixture's tokenizer.json as JSON, to derive broken or altered tokenizers from.
fn tokenizer_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(tokenizer_path()).unwrap()).unwrap()
}

/// Writes `json` to a file named `name` in this test target's scratch folder.
fn write_tokenizer(name: &str, json: &Value) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, serde_json::to_string(json).unwrap()).unwrap();
    path
}

/// `json` without the added token whose content is `content`.
fn without_added_token(mut json: Value, content: &str) -> Value {
    json["added_tokens"].as_array_mut().unwrap().retain(|t| t["content"] != content);
    json
}

#[test]
fn special_ids_and_vocab_size_match_the_processor() {
    let (expected, tokenizer) = (cases(), tokenizer());
    assert_eq!(tokenizer.bos_id(), expected.bos_id);
    assert_eq!(tokenizer.eos_id(), expected.eos_id);
    assert_eq!(tokenizer.pad_id(), expected.pad_id);
    assert_eq!(tokenizer.image_token_id(), Some(expected.image_token_id));
    assert_eq!(tokenizer.vocab_size(), expected.tokenizer_len);
}

#[test]
fn prefix_ids_match_the_processor() {
    let (expected, tokenizer) = (cases(), tokenizer());
    for case in &expected.cases {
        assert_eq!(
            tokenizer.encode_prefix(&case.prompt).unwrap(),
            case.prefix_ids,
            "prompt {:?}",
            case.prompt
        );
    }
    assert_eq!(tokenizer.encode_prefix("").unwrap(), [expected.bos_id, expected.newline_id]);
}

#[test]
fn suffix_ids_match_the_processor() {
    let (expected, tokenizer) = (cases(), tokenizer());
    for case in &expected.cases {
        assert_eq!(
            tokenizer.encode_suffix(&case.suffix).unwrap(),
            case.suffix_ids,
            "suffix {:?}",
            case.suffix
        );
    }
    assert_eq!(tokenizer.encode_suffix("").unwrap(), [expected.eos_id]);
}

#[test]
fn decode_matches_the_processor_and_round_trips() {
    let (expected, tokenizer) = (cases(), tokenizer());
    for case in &expected.cases {
        assert_eq!(
            tokenizer.decode(&case.prefix_ids, true).unwrap(),
            case.decoded,
            "prompt {:?}",
            case.prompt
        );
        assert_eq!(tokenizer.decode(&case.suffix_ids, true).unwrap(), case.suffix);
        assert_eq!(tokenizer.decode(&case.suffix_ids, false).unwrap(), format!("{}<eos>", case.suffix));
    }
    // As Python's tokenizers.Tokenizer.decode gives (331 is "▁red").
    let ids = [expected.image_token_id, expected.image_token_id, expected.bos_id, 331];
    assert_eq!(tokenizer.decode(&ids, false).unwrap(), "<image><image><bos> red");
    assert_eq!(tokenizer.decode(&ids, true).unwrap(), " red");
}

#[test]
fn prompt_and_newline_are_tokenized_as_one_text() {
    // The tiny vocabulary has no merge with "\n"; add "▁" + "\n" → "▁\n" so that tokenizing the
    // prompt and the newline separately would give "▁", "\n" instead.
    let mut json = tokenizer_json();
    let id = 1645;
    json["model"]["vocab"]["▁\n"] = id.into();
    json["model"]["merges"].as_array_mut().unwrap().push(serde_json::json!(["▁", "\n"]));
    let tokenizer = PaliGemmaTokenizer::from_file(write_tokenizer("merge_newline.json", &json)).unwrap();
    let (bos, a) = (tokenizer.bos_id(), 280);
    assert_eq!(tokenizer.encode_prefix("a ").unwrap(), [bos, a, id]);
    assert_eq!(tokenizer.encode_prefix("a").unwrap(), [bos, a, 260]);
    // openpi's π0 layout encodes the newline on its own: no merge across the prompt's end. The
    // prompt is stripped before `_` becomes a space, so "a_" keeps its trailing space.
    let pi0 = tokenizer.encode_pi0_prompt("a_", 48).unwrap();
    assert_eq!(pi0.first(), Some(&bos));
    assert_eq!(pi0.last(), Some(&260));
    assert!(!pi0.contains(&id), "{pi0:?}");
    assert_eq!(pi0, tokenizer.encode_pi0_prompt(" a_\n", 48).unwrap());
    assert_eq!(tokenizer.encode_pi0_prompt(" a ", 48).unwrap(), [bos, a, 260]);
    // Cut to openpi's max_token_len, <bos> included.
    let long = tokenizer.encode_pi0_prompt(&"a b ".repeat(40), 48).unwrap();
    assert_eq!(long.len(), 48);
    assert_eq!(long[..3], tokenizer.encode_pi0_prompt("a b", 48).unwrap()[..3]);
}

#[test]
fn unknown_ids_do_not_decode() {
    let tokenizer = tokenizer();
    let id = tokenizer.vocab_size() as u32;
    let err = tokenizer.decode(&[2, id], true).unwrap_err();
    assert!(matches!(err, TokenizerError::UnknownId { id: bad, .. } if bad == id), "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn image_token_is_optional() {
    let path = write_tokenizer("no_image.json", &without_added_token(tokenizer_json(), "<image>"));
    let tokenizer = PaliGemmaTokenizer::from_file(path).unwrap();
    assert_eq!(tokenizer.image_token_id(), None);
    assert_eq!(tokenizer.vocab_size(), cases().tokenizer_len - 1);
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("does_not_exist/tokenizer.json");
    let err = PaliGemmaTokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[test]
fn garbage_is_an_error_naming_the_file() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("garbage.json");
    std::fs::write(&path, "{\"model\": [not json").unwrap();
    let err = PaliGemmaTokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::Parse { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[test]
fn each_required_special_token_is_checked() {
    for token in ["<bos>", "<eos>", "<pad>"] {
        let name = format!("no_{}.json", token.trim_matches(['<', '>']));
        let path = write_tokenizer(&name, &without_added_token(tokenizer_json(), token));
        let err = PaliGemmaTokenizer::from_file(&path).unwrap_err();
        assert!(matches!(err, TokenizerError::MissingSpecialToken { token: t, .. } if t == token), "{err}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()) && message.contains(token), "{message}");
    }
}
