//! Camera images for the policy: decoding, aspect-preserving resizing to the paper's input sizes
//! (280×210 external, 112×112 wrist), the black stand-in for a missing camera, and optional
//! training augmentations.
//!
//! Resizing never stretches (section 3.2: stretching distorts the intrinsics that depth and point
//! estimates rely on). [`Fit::Crop`] cuts the centred largest window of the target's aspect ratio
//! out of the source and scales it; [`Fit::Pad`] scales the whole source to fit and centres it on
//! black. Scaling is a separable triangle (bilinear, widened when shrinking) filter.

use image::{RgbImage, imageops};
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

/// Decodes a JPEG or PNG (8-bit grey, grey-alpha, RGB or RGBA).
pub fn decode(bytes: &[u8]) -> Result<Image, String> {
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
    let rgb = image.to_rgb();
    let (w, h) = (image.width as f64, image.height as f64);
    let (tw, th) = (width as u32, height as u32);
    if image.width == width && image.height == height {
        return Image::from_rgb(rgb);
    }
    match fit {
        Fit::Crop => {
            // The largest centred window with the target's aspect ratio.
            let scale = (w / width as f64).min(h / height as f64);
            let (cw, ch) =
                ((width as f64 * scale).round().max(1.0), (height as f64 * scale).round().max(1.0));
            let (x, y) = (((w - cw) / 2.0).round() as u32, ((h - ch) / 2.0).round() as u32);
            let window = imageops::crop_imm(&rgb, x, y, cw as u32, ch as u32).to_image();
            Image::from_rgb(imageops::resize(&window, tw, th, imageops::FilterType::Triangle))
        }
        Fit::Pad => {
            let scale = (width as f64 / w).min(height as f64 / h);
            let (sw, sh) =
                (((w * scale).round() as u32).clamp(1, tw), ((h * scale).round() as u32).clamp(1, th));
            let scaled = imageops::resize(&rgb, sw, sh, imageops::FilterType::Triangle);
            let mut canvas = RgbImage::new(tw, th);
            imageops::replace(&mut canvas, &scaled, i64::from((tw - sw) / 2), i64::from((th - sh) / 2));
            Image::from_rgb(canvas)
        }
    }
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
            source = imageops::crop_imm(&source, x, y, cw, ch).to_image();
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
