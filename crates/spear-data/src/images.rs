//! Camera images for the policy: decoding, aspect-preserving resizing to the paper's input sizes
//! (280×210 external, 112×112 wrist), the black stand-in for a missing camera, and optional
//! training augmentations.
//!
//! Resizing never stretches (section 3.2: stretching distorts the intrinsics that depth and point
//! estimates rely on). [`Fit::Crop`] cuts the centred largest window of the target's aspect ratio
//! out of the source and scales it; [`Fit::Pad`] scales the whole source to fit and centres it on
//! black. Scaling is a separable triangle (bilinear, widened when shrinking) filter with SIMD
//! kernels (`fast_image_resize`).

use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// One decoded image: row-major `height × width × channels` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Channels (3 for RGB, 1 for grey, 4 for RGBA).
    pub channels: usize,
    /// The pixels.
    pub pixels: Vec<u8>,
}

impl Image {
    /// A black RGB image (the stand-in for a camera a dataset does not have).
    pub fn black(width: usize, height: usize) -> Self {
        Self { height, width, channels: 3, pixels: vec![0; width * height * 3] }
    }

    /// The image as RGB: grey is replicated, alpha dropped.
    pub fn to_rgb(&self) -> RgbImage {
        let mut out = Vec::with_capacity(self.width * self.height * 3);
        match self.channels {
            3 => out.extend_from_slice(&self.pixels),
            1 | 2 => self.pixels.chunks_exact(self.channels).for_each(|p| out.extend([p[0]; 3])),
            _ => self.pixels.chunks_exact(self.channels).for_each(|p| out.extend(&p[..3])),
        }
        RgbImage::from_raw(self.width as u32, self.height as u32, out).expect("size matches")
    }

    fn from_rgb(image: RgbImage) -> Self {
        let (width, height) = (image.width() as usize, image.height() as usize);
        Self { height, width, channels: 3, pixels: image.into_raw() }
    }
}

/// Decodes a JPEG (to RGB, with zune-jpeg's SIMD paths, straight from the slice) or a PNG
/// (8-bit grey, grey-alpha, RGB or RGBA, channels kept).
pub fn decode(bytes: &[u8]) -> Result<Image, String> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
        let options = DecoderOptions::new_fast().jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
        let pixels = decoder.decode().map_err(|e| format!("cannot decode JPEG: {e:?}"))?;
        let (width, height) = decoder.dimensions().ok_or("JPEG without dimensions")?;
        return Ok(Image { height, width, channels: 3, pixels });
    }
    use image::{DynamicImage, ImageReader};
    let decoded = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| format!("cannot decode image: {e}"))?;
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let (channels, pixels) = match decoded {
        DynamicImage::ImageLuma8(img) => (1, img.into_raw()),
        DynamicImage::ImageLumaA8(img) => (2, img.into_raw()),
        DynamicImage::ImageRgb8(img) => (3, img.into_raw()),
        DynamicImage::ImageRgba8(img) => (4, img.into_raw()),
        other => return Err(format!("unsupported pixel format {:?} (8-bit images only)", other.color())),
    };
    Ok(Image { height, width, channels, pixels })
}

/// How an image meets a target of another aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Cut the centred window of the target's aspect ratio, then scale (loses the edges).
    #[default]
    Crop,
    /// Scale the whole image to fit, then centre it on black (keeps everything).
    Pad,
}

/// Resizes `image` to `width × height` RGB without distorting it.
pub fn resize(image: &Image, width: usize, height: usize, fit: Fit) -> Image {
    let mut out = Image { height, width, channels: 3, pixels: vec![0; width * height * 3] };
    resize_into(image, &mut out.pixels, width, height, fit);
    out
}

/// [`resize`] into `out` (`width × height × 3` bytes, e.g. a batch's slot). With [`Fit::Pad`] the
/// borders are written black.
pub fn resize_into(image: &Image, out: &mut [u8], width: usize, height: usize, fit: Fit) {
    assert_eq!(out.len(), width * height * 3, "output of {width}×{height} RGB");
    let rgb;
    let pixels = if image.channels == 3 {
        &image.pixels
    } else {
        rgb = image.to_rgb().into_raw();
        &rgb
    };
    if image.width == width && image.height == height {
        out.copy_from_slice(pixels);
        return;
    }
    let (w, h) = (image.width as f64, image.height as f64);
    match fit {
        Fit::Crop => {
            // The largest centred window with the target's aspect ratio.
            let scale = (w / width as f64).min(h / height as f64);
            let (cw, ch) = (width as f64 * scale, height as f64 * scale);
            let window = [(w - cw) / 2.0, (h - ch) / 2.0, cw, ch];
            scale_into(pixels, image.width, image.height, window, out, width, height);
        }
        Fit::Pad => {
            // openpi's `resize_with_pad` exactly (π0's inputs): the sizes truncated, not rounded.
            let ratio = (w / width as f64).max(h / height as f64);
            let sw = ((w / ratio) as usize).clamp(1, width);
            let sh = ((h / ratio) as usize).clamp(1, height);
            let mut scaled = vec![0; sw * sh * 3];
            scale_into(pixels, image.width, image.height, [0.0, 0.0, w, h], &mut scaled, sw, sh);
            out.fill(0);
            let (x0, y0) = ((width - sw) / 2, (height - sh) / 2);
            for (row, line) in scaled.chunks_exact(sw * 3).enumerate() {
                let start = ((y0 + row) * width + x0) * 3;
                out[start..start + sw * 3].copy_from_slice(line);
            }
        }
    }
}

/// Scales the window `[left, top, width, height]` (fractional pixels) of an RGB image into `out`
/// with a bilinear filter whose support widens when shrinking (antialiasing), with SIMD kernels.
fn scale_into(pixels: &[u8], w: usize, h: usize, window: [f64; 4], out: &mut [u8], ow: usize, oh: usize) {
    use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images};
    let src = images::ImageRef::new(w as u32, h as u32, pixels, PixelType::U8x3)
        .expect("RGB buffer of w·h·3 bytes");
    let mut dst = images::Image::from_slice_u8(ow as u32, oh as u32, out, PixelType::U8x3)
        .expect("RGB buffer of ow·oh·3 bytes");
    let [left, top, cw, ch] = window;
    let options =
        ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(left, top, cw, ch);
    Resizer::new().resize(&src, &mut dst, &options).expect("same pixel types, window inside the source");
}

/// Training augmentations; all off by default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Augment {
    /// Random crop keeping at least this fraction of the area (1 = off), at the image's aspect
    /// ratio, before resizing.
    pub min_crop_area: f64,
    /// Maximum rotation in degrees, either way (0 = off); corners outside the source are black.
    pub max_rotation_deg: f64,
    /// Brightness factor drawn from `[1 − b, 1 + b]` (0 = off).
    pub brightness: f64,
    /// Contrast factor drawn from `[1 − c, 1 + c]` around the mean grey (0 = off).
    pub contrast: f64,
    /// Saturation factor drawn from `[1 − s, 1 + s]` (0 = off).
    pub saturation: f64,
}

impl Default for Augment {
    fn default() -> Self {
        Self { min_crop_area: 1.0, max_rotation_deg: 0.0, brightness: 0.0, contrast: 0.0, saturation: 0.0 }
    }
}

impl Augment {
    /// Checks the ranges: crop area in (0, 1], rotation in [0, 180), factors in [0, 1).
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            ("min_crop_area", self.min_crop_area, self.min_crop_area > 0.0 && self.min_crop_area <= 1.0),
            ("max_rotation_deg", self.max_rotation_deg, (0.0..180.0).contains(&self.max_rotation_deg)),
            ("brightness", self.brightness, (0.0..1.0).contains(&self.brightness)),
            ("contrast", self.contrast, (0.0..1.0).contains(&self.contrast)),
            ("saturation", self.saturation, (0.0..1.0).contains(&self.saturation)),
        ];
        match checks.iter().find(|(_, _, ok)| !ok) {
            Some((name, value, _)) => Err(format!("{name} = {value} is out of range")),
            None => Ok(()),
        }
    }

    /// Whether any augmentation is on.
    pub fn is_active(&self) -> bool {
        *self != Self::default()
    }

    /// Augments `image` and resizes it to `width × height` with `fit`.
    pub fn apply<R: Rng + ?Sized>(
        &self,
        image: &Image,
        width: usize,
        height: usize,
        fit: Fit,
        rng: &mut R,
    ) -> Image {
        let mut source = image.to_rgb();
        if self.min_crop_area < 1.0 {
            let area = rng.random_range(self.min_crop_area.clamp(0.01, 1.0)..=1.0);
            let side = area.sqrt();
            let (cw, ch) = (
                ((source.width() as f64 * side).round() as u32).max(1),
                ((source.height() as f64 * side).round() as u32).max(1),
            );
            let x = rng.random_range(0..=source.width() - cw);
            let y = rng.random_range(0..=source.height() - ch);
            source = image::imageops::crop_imm(&source, x, y, cw, ch).to_image();
        }
        if self.max_rotation_deg > 0.0 {
            let angle = rng.random_range(-self.max_rotation_deg..=self.max_rotation_deg).to_radians();
            source = rotate(&source, angle);
        }
        let mut out = resize(&Image::from_rgb(source), width, height, fit);
        let factor = |r: &mut R, s: f64| if s > 0.0 { r.random_range(1.0 - s..=1.0 + s) } else { 1.0 };
        let (b, c, s) =
            (factor(rng, self.brightness), factor(rng, self.contrast), factor(rng, self.saturation));
        if (b, c, s) != (1.0, 1.0, 1.0) {
            jitter(&mut out.pixels, b, c, s);
        }
        out
    }
}

/// Rotates about the centre by `angle` radians (bilinear; outside the source is black).
fn rotate(image: &RgbImage, angle: f64) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f64 - cx, y as f64 - cy);
        let (sx, sy) = (cos * dx + sin * dy + cx, -sin * dx + cos * dy + cy);
        if sx < 0.0 || sy < 0.0 || sx > (w - 1) as f64 || sy > (h - 1) as f64 {
            return image::Rgb([0, 0, 0]);
        }
        let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
        let p = |x, y| image.get_pixel(x, y).0.map(f64::from);
        let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
        image::Rgb(std::array::from_fn(|k| {
            let top = a[k] + (b[k] - a[k]) * fx;
            let bottom = c[k] + (d[k] - c[k]) * fx;
            (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8
        }))
    })
}

/// Brightness, contrast (around the mean grey) and saturation (around each pixel's grey), as
/// torchvision's `ColorJitter` defines them.
fn jitter(pixels: &mut [u8], brightness: f64, contrast: f64, saturation: f64) {
    let grey = |p: &[f64]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let mut values: Vec<f64> =
        pixels.iter().map(|&v| (f64::from(v) * brightness).clamp(0.0, 255.0)).collect();
    let mean = values.chunks_exact(3).map(grey).sum::<f64>() / (values.len() / 3).max(1) as f64;
    for p in values.chunks_exact_mut(3) {
        for v in p.iter_mut() {
            *v = (mean + (*v - mean) * contrast).clamp(0.0, 255.0);
        }
        let g = grey(p);
        for v in p.iter_mut() {
            *v = (g + (*v - g) * saturation).clamp(0.0, 255.0);
        }
    }
    for (out, v) in pixels.iter_mut().zip(values) {
        *out = v.round() as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A 40×20 image: left half red, right half blue, a green 2-pixel border.
    fn two_tone() -> Image {
        let (w, h) = (40, 20);
        let mut pixels = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let border = x < 2 || y < 2 || x >= w - 2 || y >= h - 2;
                pixels.extend(if border {
                    [0, 255, 0]
                } else if x < w / 2 {
                    [255, 0, 0]
                } else {
                    [0, 0, 255]
                });
            }
        }
        Image { height: h, width: w, channels: 3, pixels }
    }

    fn px(img: &Image, x: usize, y: usize) -> [u8; 3] {
        let i = (y * img.width + x) * 3;
        [img.pixels[i], img.pixels[i + 1], img.pixels[i + 2]]
    }

    #[test]
    fn crop_keeps_the_centre_at_the_target_aspect_and_pad_keeps_everything_on_black() {
        let img = two_tone();
        // 2:1 → 1:1 crop: the centred 20×20 window, half red, half blue, no side border.
        let c = resize(&img, 10, 10, Fit::Crop);
        assert_eq!((c.width, c.height, c.channels), (10, 10, 3));
        assert_eq!(px(&c, 2, 5), [255, 0, 0]);
        assert_eq!(px(&c, 7, 5), [0, 0, 255]);
        // 2:1 → 1:1 pad: 10×5 content centred, black above and below.
        let p = resize(&img, 10, 10, Fit::Pad);
        assert_eq!(px(&p, 5, 0), [0, 0, 0]);
        assert_eq!(px(&p, 5, 9), [0, 0, 0]);
        assert_ne!(px(&p, 5, 4), [0, 0, 0]);
        // Same size: untouched.
        assert_eq!(resize(&img, 40, 20, Fit::Crop), img);
        // Grey is replicated.
        let grey = Image { height: 1, width: 2, channels: 1, pixels: vec![7, 9] };
        assert_eq!(resize(&grey, 2, 1, Fit::Crop).pixels, vec![7, 7, 7, 9, 9, 9]);
    }

    #[test]
    fn augmentation_is_off_by_default_seeded_and_changes_pixels_when_on() {
        let img = two_tone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        assert!(!Augment::default().is_active());
        assert_eq!(
            Augment::default().apply(&img, 20, 10, Fit::Crop, &mut rng),
            resize(&img, 20, 10, Fit::Crop)
        );
        let on = Augment {
            min_crop_area: 0.8,
            max_rotation_deg: 5.0,
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
        };
        let a = on.apply(&img, 20, 10, Fit::Crop, &mut rand::rngs::StdRng::seed_from_u64(1));
        let b = on.apply(&img, 20, 10, Fit::Crop, &mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(a, b);
        assert_eq!((a.width, a.height), (20, 10));
        assert_ne!(a, resize(&img, 20, 10, Fit::Crop));
    }
}
