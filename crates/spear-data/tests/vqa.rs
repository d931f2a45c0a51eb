//! VQA examples into token sequences, against the layout built with the Hugging Face `tokenizers`
//! library and numpy in `tools/reference/vqa_fixtures.py`.

use std::path::PathBuf;

use serde_json::Value;
use spear_data::vqa::{Segment, VqaError, encode, fit_quantizer, read_examples};
use spear_data::{CoordQuantizer, PaliGemmaTokenizer};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vqa")
}

fn tokenizer() -> PaliGemmaTokenizer {
    PaliGemmaTokenizer::from_file(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../spear-models/tests/fixtures/paligemma-tiny/tokenizer.json"),
    )
    .unwrap()
}

#[test]
fn token_sequences_and_masks_match_the_reference_layout() {
    let examples = read_examples(fixtures().join("examples.jsonl")).unwrap();
    let quantizer = CoordQuantizer::from_json_file(fixtures().join("quantizer.json")).unwrap();
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap();
    let base = want["base_vocab"].as_u64().unwrap() as u32;
    let tokenizer = tokenizer();
    assert_eq!(examples.len(), 3);
    assert_eq!(examples[1].image, fixtures().join("desk/img_0042.png"));
    assert_eq!(examples[2].image, PathBuf::from("/data/images/street.jpg"));
    for (example, want) in examples.iter().zip(want["examples"].as_array().unwrap()) {
        let tokens = encode(&example.pairs, &tokenizer, &quantizer, base).unwrap();
        let ids: Vec<u32> =
            want["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let flags = |key: &str| {
            want[key].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(tokens.ids, ids);
        assert_eq!(tokens.prefix_len, want["prefix_len"].as_u64().unwrap() as usize);
        assert_eq!(tokens.loss, flags("loss"));
        assert_eq!(tokens.is_3d, flags("is_3d"));
        // 3D tokens decode back to within half a bin of the values they came from.
        let values: Vec<f64> = example
            .pairs
            .iter()
            .flat_map(|p| &p.answer)
            .filter_map(|s| if let Segment::Coords { coords } = s { Some(coords.clone()) } else { None })
            .flatten()
            .collect();
        let decoded: Vec<f32> = tokens
            .ids
            .iter()
            .zip(&tokens.is_3d)
            .filter(|(_, d)| **d)
            .map(|(&id, _)| quantizer.decode(id - base).unwrap())
            .collect();
        assert_eq!(decoded.len(), values.len());
        let half_bin = 6.0 / 64.0 / 2.0;
        for (d, v) in decoded.iter().zip(values) {
            assert!((f64::from(*d) - v.clamp(-2.0, 4.0)).abs() <= half_bin + 1e-6, "{d} vs {v}");
        }
    }
}

#[test]
fn a_quantizer_fitted_to_an_annotation_set_uses_its_tokens() {
    let examples = read_examples(fixtures().join("examples.jsonl")).unwrap();
    let q = fit_quantizer(&examples, 8).unwrap();
    assert_eq!(q.num_tokens(), 8);
    let edges = q.edges();
    assert!(edges[0] < 0.0 && edges[8] > 3.0, "{edges:?}");
}

#[test]
fn bad_examples_are_refused_with_their_place() {
    let dir = std::env::temp_dir().join(format!("spear-vqa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.jsonl");
    std::fs::write(&path, "{\"image\": \"x.jpg\", \"pairs\": []}\n").unwrap();
    let message = read_examples(&path).unwrap_err().to_string();
    assert!(message.contains("a.jsonl:1") && message.contains("no question-answer pairs"), "{message}");
    std::fs::write(&path, "\n{\"image\": \"x.jpg\", \"pairs\": [{\"question\": \"q\", \"answr\": []}]}\n")
        .unwrap();
    let message = read_examples(&path).unwrap_err().to_string();
    assert!(message.contains("a.jsonl:2"), "{message}");

    let quantizer = CoordQuantizer::from_json_file(fixtures().join("quantizer.json")).unwrap();
    let tokenizer = tokenizer();
    let pairs = |answer: Vec<Segment>| {
        vec![spear_data::vqa::QaPair { question: "q".into(), answer, task: None, text: None }]
    };
    let error =
        encode(&pairs(vec![Segment::Loc { loc: [0.5, 1.5] }]), &tokenizer, &quantizer, 1700).unwrap_err();
    assert!(error.to_string().contains("1.5 is not in [0, 1]"), "{error}");
    let error =
        encode(&pairs(vec![Segment::Coords { coords: vec![f64::NAN] }]), &tokenizer, &quantizer, 1700)
            .unwrap_err();
    assert!(matches!(error, VqaError::Coord { pair: 0, .. }), "{error}");
    assert!(encode(&pairs(vec![]), &tokenizer, &quantizer, 1700).is_err());
    assert!(encode(&[], &tokenizer, &quantizer, 1700).is_err());
}
