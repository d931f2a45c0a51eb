//! Camera frames as robots send them: 8-bit or float pixels, channels last (HWC) or first (CHW),
//! grey, RGB or RGBA, any size. [`Frame::to_image`] turns one into the 8-bit HWC image the data
//! pipeline decodes from datasets, so that from there on inference and training share one path.

use std::path::Path;

use spear_data::images::{self, Image};

/// Where the channel axis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelOrder {
    /// `height × width × channels` (numpy images, OpenCV, PIL).
    #[default]
    Hwc,
    /// `channels × height × width` (PyTorch tensors, openpi's ALOHA clients).
    Chw,
}

/// A frame's pixel values.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// 0–255.
    U8(Vec<u8>),
    /// 0–1, the usual float convention (`x / 255`); each value is rounded to the nearest of the 256
    /// levels.
    F32(Vec<f32>),
}

impl Pixels {
    fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }
}

/// One camera frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// 1 (grey), 2 (grey and alpha), 3 (RGB) or 4 (RGBA).
    pub channels: usize,
    /// Where the channel axis is.
    pub order: ChannelOrder,
    /// `height · width · channels` values in `order`.
    pub pixels: Pixels,
}

impl From<Image> for Frame {
    fn from(image: Image) -> Self {
        let Image { height, width, channels, pixels } = image;
        Self { height, width, channels, order: ChannelOrder::Hwc, pixels: Pixels::U8(pixels) }
    }
}

impl Frame {
    /// Reads a PNG or JPEG file with the decoder that reads datasets' images.
    pub fn read(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let image = images::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(image.into())
    }

    /// The frame as the 8-bit, channels-last image the data pipeline works on. Errors say what is
    /// wrong: a size that does not match the pixel count, an unsupported channel count, a float
    /// outside [0, 1] or NaN.
    pub fn to_image(&self) -> Result<Image, String> {
        let (h, w, c) = (self.height, self.width, self.channels);
        if h == 0 || w == 0 {
            return Err(format!("an empty frame ({h}×{w})"));
        }
        if !(1..=4).contains(&c) {
            return Err(format!("{c} channels (expected 1 grey, 2 grey and alpha, 3 RGB or 4 RGBA)"));
        }
        if self.pixels.len() != h * w * c {
            return Err(format!(
                "{} values for a {h}×{w} frame of {c} channels (expected {})",
                self.pixels.len(),
                h * w * c
            ));
        }
        let bytes: Vec<u8> = match &self.pixels {
            Pixels::U8(v) => v.clone(),
            Pixels::F32(v) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    if (0.0..=1.0).contains(&x) {
                        Ok((x * 255.0).round() as u8)
                    } else {
                        Err(format!("value {i} is {x}; float frames hold values in [0, 1]"))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let pixels = match self.order {
            ChannelOrder::Hwc => bytes,
            ChannelOrder::Chw => {
                let plane = h * w;
                (0..plane)
                    .flat_map(|p| (0..c).map(move |k| (p, k)))
                    .map(|(p, k)| bytes[k * plane + p])
                    .collect()
            }
        };
        Ok(Image { height: h, width: w, channels: c, pixels })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(order: ChannelOrder, pixels: Pixels) -> Frame {
        Frame { height: 1, width: 2, channels: 3, order, pixels }
    }

    #[test]
    fn chw_and_float_frames_become_the_same_hwc_bytes() {
        let hwc = frame(ChannelOrder::Hwc, Pixels::U8(vec![1, 2, 3, 4, 5, 6]));
        let chw = frame(ChannelOrder::Chw, Pixels::U8(vec![1, 4, 2, 5, 3, 6]));
        let float =
            frame(ChannelOrder::Hwc, Pixels::F32([1, 2, 3, 4, 5, 6].map(|v| v as f32 / 255.0).to_vec()));
        let want = hwc.to_image().unwrap();
        assert_eq!(want.pixels, [1, 2, 3, 4, 5, 6]);
        assert_eq!(chw.to_image().unwrap(), want);
        assert_eq!(float.to_image().unwrap(), want);
    }

    #[test]
    fn bad_frames_are_refused_with_what_is_wrong() {
        let short = frame(ChannelOrder::Hwc, Pixels::U8(vec![0; 5]));
        assert_eq!(short.to_image().unwrap_err(), "5 values for a 1×2 frame of 3 channels (expected 6)");
        let loud = frame(ChannelOrder::Hwc, Pixels::F32(vec![0.0, 0.5, 1.5, 0.0, 0.0, 0.0]));
        assert!(loud.to_image().unwrap_err().starts_with("value 2 is 1.5"));
        let nan = frame(ChannelOrder::Hwc, Pixels::F32(vec![f32::NAN; 6]));
        assert!(nan.to_image().unwrap_err().starts_with("value 0 is NaN"));
        let five = Frame { channels: 5, pixels: Pixels::U8(vec![0; 10]), ..short };
        assert!(five.to_image().unwrap_err().starts_with("5 channels"));
    }
}
