use burn::prelude::*;
use burn::tensor::Int;
use spear_models::SpearVlm;
use spear_models::generate::greedy;
use spear_models::import::checkpoint::Checkpoint;
use spear_models::import::hf_config::vlm_config;
use spear_models::import::layout::{Layout, load};

use crate::common::*;

const EXPECTED: &str = "paligemma_expected.safetensors";

pub fn load_tiny<B: Backend>(device: &B::Device) -> SpearVlm<B> {
    let checkpoint = Checkpoint::open(fixtures().join("paligemma-tiny")).unwrap();
    let layout = Layout::detect(checkpoint.names()).unwrap();
    assert_eq!(layout, Layout::PaliGemma);
    let config = vlm_config(checkpoint.config.as_ref().unwrap()).unwrap();
    let mut model = config.init::<B>(device);
    let report = load(&mut model, &checkpoint, layout, &[], "PaliGemma").unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    model
}

fn ids<B: Backend>(values: &TensorData, device: &B::Device) -> Tensor<B, 2, Int> {
    let v: Vec<i64> =
        values.clone().convert::<f32>().to_vec::<f32>().unwrap().iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(v, values.shape.clone()), device)
}

/// `[image tokens][prefix]`: the image tokens are the leading `<image>` ids of `input_ids`.
fn split_prefix(input_ids: &TensorData, image_tokens: usize) -> TensorData {
    let all: Vec<f32> = input_ids.clone().convert::<f32>().to_vec().unwrap();
    let rest = all[image_tokens..].to_vec();
    TensorData::new(rest.clone(), [1, rest.len()])
}

fn image_and_prefix<B: Backend>(
    model: &SpearVlm<B>,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 2, Int>, usize) {
    // The fixture stores SigLIP-range pixels; the model takes RGB in [0, 1].
    let pixels = tensor::<B, 4>(EXPECTED, "pixel_values", device);
    let rgb = pixels * 0.5 + 0.5;
    let [rows, cols] = model.check_image(&rgb).unwrap();
    let prefix = split_prefix(&read(EXPECTED, "input_ids"), rows * cols);
    (rgb, ids(&prefix, device), rows * cols)
}

#[test]
fn vision_features_match() {
    let device = Default::default();
    let model = load_tiny::<Cpu>(&device);
    let (rgb, _, _) = image_and_prefix(&model, &device);
    let siglip = model.siglip.forward(spear_models::vision::siglip_pixels(rgb.clone()));
    assert_close(siglip, &read(EXPECTED, "vision_last_hidden_state"), 1e-4, "PaliGemma SigLIP");
    assert_close(
        model.embed_image(rgb).unwrap(),
        &read(EXPECTED, "image_features"),
        1e-4,
        "projected image features",
    );
}

/// A snapshot saved with `vision_use_head: true` stores SigLIP's pooling head, which PaliGemma
/// never uses: it loads, the head's tensors are reported as ignored with the reason, and the
/// logits are transformers'.
#[test]
fn a_snapshot_with_siglips_pooling_head_loads_with_the_head_ignored() {
    const HEAD: &str = "paligemma_head_expected.safetensors";
    let device = Default::default();
    let checkpoint = Checkpoint::open(fixtures().join("paligemma-tiny-head")).unwrap();
    let config = checkpoint.config.as_ref().unwrap();
    assert_eq!(config["vision_config"]["vision_use_head"], true);
    let layout = Layout::detect(checkpoint.names()).unwrap();
    let mut model = vlm_config(config).unwrap().init::<Cpu>(&device);
    let report = load(&mut model, &checkpoint, layout, &[], "PaliGemma").unwrap();
    assert!(report.problems(&[]).is_empty(), "{:?}", report.problems(&[]));
    let head: Vec<_> = report
        .ignored
        .iter()
        .filter(|(name, _)| name.starts_with("vision_tower.vision_model.head."))
        .collect();
    let stored = checkpoint.names().filter(|n| n.contains(".head.")).count();
    assert!(stored > 0 && head.len() == stored, "{stored} head tensors stored, {} ignored", head.len());
    assert!(head.iter().all(|(_, why)| why.contains("pooling head")), "{head:?}");
    let rendered = report.render(false);
    assert!(rendered.contains("SigLIP's pooling head"), "{rendered}");

    let (rgb, prefix, _) = image_and_prefix(&model, &device);
    let siglip = model.siglip.forward(spear_models::vision::siglip_pixels(rgb.clone()));
    assert_close(siglip, &read(HEAD, "vision_last_hidden_state"), 1e-4, "SigLIP beside an unused head");
    let logits = model.forward(&[rgb], prefix, None).unwrap();
    assert_close(logits, &read(HEAD, "prefill_logits"), 1e-4, "prefill logits beside an unused head");
}

#[test]
fn prefill_logits_match() {
    let device = Default::default();
    let model = load_tiny::<Cpu>(&device);
    let (rgb, prefix, _) = image_and_prefix(&model, &device);
    let logits = model.forward(&[rgb], prefix, None).unwrap();
    assert_close(logits, &read(EXPECTED, "prefill_logits"), 1e-4, "prefill logits");
}

/// The fixture's training sequence after the image tokens, and its prefix length.
fn training_text(image_tokens: usize) -> (Vec<u32>, usize) {
    let all: Vec<f32> = read(EXPECTED, "train_input_ids").convert::<f32>().to_vec().unwrap();
    let types: Vec<f32> = read(EXPECTED, "train_token_type_ids").convert::<f32>().to_vec().unwrap();
    let prefix_len = types.iter().filter(|&&t| t == 0.0).count() - image_tokens;
    (all[image_tokens..].iter().map(|&x| x as u32).collect(), prefix_len)
}

#[test]
fn training_forward_with_causal_suffix_matches() {
    let device = Default::default();
    let model = load_tiny::<Cpu>(&device);
    let (rgb, _, image_tokens) = image_and_prefix(&model, &device);
    let (text, prefix_len) = training_text(image_tokens);
    let text: Vec<f32> = text.iter().map(|&x| x as f32).collect();
    let prefix = TensorData::new(text[..prefix_len].to_vec(), [1, prefix_len]);
    let suffix = TensorData::new(text[prefix_len..].to_vec(), [1, text.len() - prefix_len]);
    let logits = model.forward(&[rgb], ids(&prefix, &device), Some(ids(&suffix, &device))).unwrap();
    assert_close(logits, &read(EXPECTED, "train_logits"), 1e-4, "training logits (prefix-LM)");
}

/// Rows of different lengths in one padded batch: each row's logits are the ones it gets alone
/// (the longer one equal to transformers' prefix-LM training logits), padding invisible.
#[test]
fn padded_rows_compute_what_each_row_computes_alone() {
    let device = Default::default();
    let model = load_tiny::<Cpu>(&device);
    let (rgb, _, image_tokens) = image_and_prefix(&model, &device);
    let (text, prefix_len) = training_text(image_tokens);
    let short = &text[..text.len() - 3];
    let images = Tensor::cat(vec![rgb.clone(), rgb.clone()], 0);
    let logits = model.forward_rows(&[images], &[(&text, prefix_len), (short, prefix_len)]).unwrap();
    let [_, longest, vocab] = logits.dims();
    assert_eq!(longest, text.len());
    let long_row = logits.clone().narrow(0, 0, 1);
    let want = read(EXPECTED, "train_logits");
    let want_text: Vec<f32> = want.convert::<f32>().to_vec::<f32>().unwrap()[image_tokens * vocab..].to_vec();
    assert_close(
        long_row,
        &TensorData::new(want_text, [1, longest, vocab]),
        1e-4,
        "long row vs transformers",
    );
    let alone = |tokens: &[u32]| {
        let t = |v: &[u32]| TensorData::new(v.iter().map(|&x| x as f32).collect::<Vec<_>>(), [1, v.len()]);
        let out = model
            .forward(
                std::slice::from_ref(&rgb),
                ids(&t(&tokens[..prefix_len]), &device),
                Some(ids(&t(&tokens[prefix_len..]), &device)),
            )
            .unwrap();
        out.narrow(1, image_tokens, tokens.len())
    };
    let short_row = logits.narrow(0, 1, 1).narrow(1, 0, short.len());
    assert_close(short_row, &alone(short).into_data(), 1e-5, "short row vs alone");
    // Rows that cannot be laid out are refused.
    let bad =
        model.forward_rows(std::slice::from_ref(&rgb), &[(&text, text.len() + 1)]).unwrap_err().to_string();
    assert!(bad.contains("prefix"), "{bad}");
    let out_of_vocab = [2u32, u32::MAX];
    let bad = model.forward_rows(&[rgb], &[(&out_of_vocab, 1)]).unwrap_err().to_string();
    assert!(bad.contains("outside the vocabulary"), "{bad}");
}

fn check_greedy<B: Backend>(device: &B::Device, what: &str) {
    let model = load_tiny::<B>(device);
    let (rgb, prefix, _) = image_and_prefix(&model, device);
    let prefix: Vec<u32> =
        prefix.into_data().convert::<i64>().to_vec::<i64>().unwrap().iter().map(|&x| x as u32).collect();
    let want_ids: Vec<f32> = read(EXPECTED, "generated_ids").convert::<f32>().to_vec().unwrap();
    let out = greedy(&model, &[rgb], &prefix, want_ids.len(), None).unwrap();
    let got: Vec<f32> = out.tokens.iter().map(|&t| t as f32).collect();
    assert_eq!(got, want_ids, "{what}: greedy tokens");
    let logits: Vec<f32> = out.logits.concat();
    let steps = out.logits.len();
    let got = Tensor::<Cpu, 2>::from_data(
        TensorData::new(logits, [steps, out.logits[0].len()]),
        &Default::default(),
    );
    assert_close(got, &read(EXPECTED, "decode_logits"), 1e-4, &format!("{what}: KV-cached decode logits"));
}

#[test]
fn kv_cached_greedy_decoding_matches_generate() {
    check_greedy::<Cpu>(&Default::default(), "cpu");
}

/// The WGPU backend (lavapipe in CI) against the same fixture, hence against the CPU backend.
#[test]
fn wgpu_matches_the_reference_too() {
    if !spear_device::wgpu::test_should_run() {
        return;
    }
    check_greedy::<burn::backend::Wgpu>(&Default::default(), "wgpu");
}
