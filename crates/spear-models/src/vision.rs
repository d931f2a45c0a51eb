//! Shared helpers of the two vision encoders: token-grid checks and pixel normalisation.

use burn::prelude::*;

use crate::error::ModelError;

/// ImageNet channel means, which MoGe's DINOv2 expects (its `image_mean` buffer).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (MoGe's `image_std` buffer).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The `[rows, cols]` token grid of an `height × width` image, or an error naming the encoder
/// when a side is not a positive multiple of the patch.
pub fn token_grid(
    height: usize,
    width: usize,
    patch: usize,
    encoder: &str,
) -> Result<[usize; 2], ModelError> {
    if patch == 0
        || height == 0
        || width == 0
        || !height.is_multiple_of(patch)
        || !width.is_multiple_of(patch)
    {
        return Err(ModelError::ImageSize { encoder: encoder.to_string(), height, width, patch });
    }
    Ok([height / patch, width / patch])
}

/// [`token_grid`] for a `[B, 3, H, W]` batch, panicking with the same message. Used by module
/// `forward`s, whose callers validate sizes up front with [`token_grid`].
///
/// # Panics
/// When the image is not 3-channel or its sides are not multiples of `patch`.
pub fn check_image<B: Backend>(pixels: &Tensor<B, 4>, patch: usize, encoder: &str) -> [usize; 2] {
    let [_, channels, height, width] = pixels.dims();
    assert_eq!(channels, 3, "{encoder} expects RGB images [B, 3, H, W], got {channels} channels");
    token_grid(height, width, patch, encoder).unwrap_or_else(|e| panic!("{e}"))
}

/// RGB in [0, 1] → SigLIP's input range [−1, 1] (`(x − 0.5) / 0.5`).
pub fn siglip_pixels<B: Backend>(rgb: Tensor<B, 4>) -> Tensor<B, 4> {
    (rgb - 0.5) / 0.5
}

/// RGB in [0, 1] → ImageNet-normalised pixels for DINOv2/MoGe.
pub fn imagenet_pixels<B: Backend>(rgb: Tensor<B, 4>) -> Tensor<B, 4> {
    let device = rgb.device();
    let mean = Tensor::<B, 1>::from_floats(IMAGENET_MEAN, &device).reshape([1, 3, 1, 1]);
    let std = Tensor::<B, 1>::from_floats(IMAGENET_STD, &device).reshape([1, 3, 1, 1]);
    (rgb - mean) / std
}
