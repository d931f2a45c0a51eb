//! The joint-attention interface: two streams through the same layers equal one stream over their
//! concatenation, and a KV-cached continuation equals the uncached forward.

use burn::prelude::*;
use burn::tensor::Distribution;
use spear_models::attention::TokenLayout;
use spear_models::gemma::{GemmaConfig, Rope, Stream, joint_forward};

use crate::common::*;

fn config() -> GemmaConfig {
    GemmaConfig::new()
        .with_vocab_size(32)
        .with_hidden_size(32)
        .with_intermediate_size(48)
        .with_num_layers(2)
        .with_num_heads(4)
        .with_head_dim(8)
}

#[test]
fn two_streams_equal_one_concatenated_stream() {
    let device = Default::default();
    Cpu::seed(&device, 3);
    let layers = config().init_layers::<Cpu>(&device);
    let x = Tensor::<Cpu, 3>::random([2, 7, 32], Distribution::Normal(0.0, 1.0), &device);
    // Prefix of 4 bidirectional tokens, then 3 causal ones.
    let ar: Vec<bool> = (0..7).map(|i| i >= 4).collect();
    let layout = TokenLayout::new(vec![vec![true; 7]; 2], &[ar.clone(), ar]);
    let positions = layout.positions(7);
    let rope = |range: std::ops::Range<usize>| {
        let p: Vec<Vec<i64>> = positions.iter().map(|r| r[range.clone()].to_vec()).collect();
        Rope::new(&p, 8, 10000.0, &device)
    };
    let mask = layout.mask::<Cpu>(7, &device);
    let one = joint_forward(
        vec![Stream { layers: &layers, hidden: x.clone(), rope: rope(0..7) }],
        mask.clone(),
        None,
    );
    let two = joint_forward(
        vec![
            Stream { layers: &layers, hidden: x.clone().narrow(1, 0, 4), rope: rope(0..4) },
            Stream { layers: &layers, hidden: x.narrow(1, 4, 3), rope: rope(4..7) },
        ],
        mask,
        None,
    );
    let joined = Tensor::cat(two, 1);
    assert_close(joined, &one[0].clone().into_data(), 1e-6, "two streams vs one");
}

#[test]
fn cached_continuation_equals_the_full_forward() {
    let device = Default::default();
    Cpu::seed(&device, 4);
    let gemma = config().init::<Cpu>(&device);
    let x = Tensor::<Cpu, 3>::random([1, 6, 32], Distribution::Normal(0.0, 1.0), &device);
    let ar: Vec<bool> = (0..6).map(|i| i >= 3).collect();
    let full = gemma.forward_embeds(x.clone(), &TokenLayout::new(vec![vec![true; 6]], &[ar]), None);
    let mut cache = gemma.new_cache();
    let mut layout = TokenLayout::new(vec![vec![true; 3]], &[vec![false; 3]]);
    let mut parts = vec![gemma.forward_embeds(x.clone().narrow(1, 0, 3), &layout, Some(&mut cache))];
    for t in 3..6 {
        layout.extend(1, true, true);
        parts.push(gemma.forward_embeds(x.clone().narrow(1, t, 1), &layout, Some(&mut cache)));
    }
    assert_eq!(cache.len(), 6);
    assert_close(Tensor::cat(parts, 1), &full.into_data(), 1e-5, "cached vs full");
}
