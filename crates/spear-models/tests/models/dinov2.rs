use spear_models::dinov2::{Dinov2, Dinov2Config};
use spear_models::import::checkpoint::Checkpoint;
use spear_models::import::layout::{Layout, load_mapped, strip_prefix};
use spear_models::vision::imagenet_pixels;

use crate::common::*;

fn tiny_config() -> Dinov2Config {
    Dinov2Config::new().with_hidden_size(32).with_intermediate_size(128).with_num_layers(6).with_num_heads(4)
}

fn load_moge(file: &str, device: &burn::prelude::Device<Cpu>) -> Dinov2<Cpu> {
    let mut model = tiny_config().init::<Cpu>(device);
    let checkpoint = Checkpoint::open(fixtures().join(file)).unwrap();
    let layout = Layout::detect(checkpoint.names()).unwrap();
    let mapping = strip_prefix(layout.map_names(checkpoint.names()), "moge");
    let report = load_mapped(&mut model, &checkpoint, mapping, &[], "DINOv2").unwrap();
    assert!(!report.ignored.is_empty(), "{file}: MoGe's head tensors must be reported as ignored");
    model
}

#[test]
fn moge_layouts_are_recognised() {
    for (file, layout) in [("moge_v1/model.pt", Layout::MogeV1), ("moge_v2/model.pt", Layout::MogeV2)] {
        let checkpoint = Checkpoint::open(fixtures().join(file)).unwrap();
        assert_eq!(Layout::detect(checkpoint.names()), Some(layout), "{file}");
    }
}

#[test]
fn position_tables_use_dinov2_offset_bicubic() {
    let device = Default::default();
    let model = load_moge("moge_v1/model.pt", &device);
    let want = read("dinov2_expected.safetensors", "pos_15x20");
    assert_close(model.position_table(15, 20), &want, 1e-5, "DINOv2 position table 37×37 → 15×20");
    let want = read("dinov2_expected.safetensors", "pos_8x8");
    assert_close(model.position_table(8, 8), &want, 1e-5, "DINOv2 position table 37×37 → 8×8");
}

#[test]
fn intermediate_layers_match_torch_for_both_moge_versions() {
    let device = Default::default();
    for file in ["moge_v1/model.pt", "moge_v2/model.pt"] {
        let model = load_moge(file, &device);
        let image = imagenet_pixels(tensor::<Cpu, 4>("dinov2_expected.safetensors", "image", &device));
        let last4 =
            burn::tensor::Tensor::stack::<4>(model.intermediate_layers(image.clone(), &[2, 3, 4, 5]), 0);
        assert_close(
            last4,
            &read("dinov2_expected.safetensors", "main_last4"),
            1e-4,
            &format!("{file}: last 4 blocks"),
        );
        let sel = burn::tensor::Tensor::stack::<4>(model.intermediate_layers(image, &[1, 3, 5]), 0);
        assert_close(
            sel,
            &read("dinov2_expected.safetensors", "main_sel"),
            1e-4,
            &format!("{file}: blocks 1, 3, 5"),
        );
    }
    let model = load_moge("moge_v1/model.pt", &device);
    let wrist = imagenet_pixels(tensor::<Cpu, 4>("dinov2_expected.safetensors", "wrist_image", &device));
    let last4 = burn::tensor::Tensor::stack::<4>(model.intermediate_layers(wrist, &[2, 3, 4, 5]), 0);
    assert_close(last4, &read("dinov2_expected.safetensors", "wrist_last4"), 1e-4, "112×112 last 4 blocks");
}
