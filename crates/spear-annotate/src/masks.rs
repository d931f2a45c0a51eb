//! Instance masks as annotation tools store them: COCO run-length encoding (cocoapi's
//! `maskApi.c`, which SAM/SAM2 outputs and COCO JSON use) and Ego-Exo4D's LZString-wrapped RLE.
//!
//! COCO RLE reads the mask **column-major** (down each column, columns left to right); counts
//! alternate runs of 0s and 1s, starting with 0s (a first count of 0 when the first pixel is set).
//! The compressed string stores each count as 5-bit groups, low first, in characters `48 + group`
//! (`| 0x20` when more follow, sign-extended from bit 4 of the last), and counts after the second as
//! differences from the count two before.

/// Why a mask cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    /// The compressed counts string is malformed.
    #[error("RLE counts string: {0}")]
    Counts(String),
    /// The runs do not cover the mask exactly.
    #[error("RLE runs cover {covered} pixels, but the mask is {height}×{width} = {pixels}")]
    Coverage {
        /// Pixels the runs cover.
        covered: u64,
        /// Mask height.
        height: usize,
        /// Mask width.
        width: usize,
        /// `height × width`.
        pixels: u64,
    },
    /// An LZString payload is malformed.
    #[error("LZString: {0}")]
    LzString(String),
}

/// A COCO run-length-encoded mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Alternating 0-run and 1-run lengths in column-major order, starting with 0s.
    pub counts: Vec<u64>,
}

/// A decoded binary mask, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `pixels[row * width + column]`.
    pub pixels: Vec<bool>,
}

impl Mask {
    /// Set pixels.
    pub fn area(&self) -> u64 {
        self.pixels.iter().filter(|&&p| p).count() as u64
    }

    /// pycocotools' `toBbox`: `[x, y, width, height]` of the set pixels, `[0, 0, 0, 0]` when none.
    pub fn bbox(&self) -> [f64; 4] {
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for (i, _) in self.pixels.iter().enumerate().filter(|(_, p)| **p) {
            let (y, x) = (i / self.width, i % self.width);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
        if x0 == usize::MAX {
            return [0.0; 4];
        }
        [x0 as f64, y0 as f64, (x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64]
    }
}

impl Rle {
    /// Runs from uncompressed counts (SAM2's `uncompressed_rle`), checked to cover the mask.
    pub fn from_counts(height: usize, width: usize, counts: Vec<u64>) -> Result<Self, MaskError> {
        let rle = Self { height, width, counts };
        rle.check()?;
        Ok(rle)
    }

    /// Decodes cocoapi's compressed counts string (`rleFrString`).
    pub fn from_compressed(height: usize, width: usize, text: &str) -> Result<Self, MaskError> {
        let bytes = text.as_bytes();
        let mut counts: Vec<u64> = Vec::new();
        let mut p = 0;
        while p < bytes.len() {
            let (mut x, mut k, mut more) = (0i64, 0u32, true);
            while more {
                let c =
                    i64::from(*bytes.get(p).ok_or_else(|| MaskError::Counts("ends inside a count".into()))?)
                        - 48;
                if !(0..64).contains(&c) || k >= 12 {
                    return Err(MaskError::Counts(format!("bad character {:?} at {p}", bytes[p] as char)));
                }
                x |= (c & 0x1f) << (5 * k);
                more = c & 0x20 != 0;
                p += 1;
                k += 1;
                if !more && c & 0x10 != 0 {
                    x |= -1i64 << (5 * k);
                }
            }
            if counts.len() > 2 {
                x += counts[counts.len() - 2] as i64;
            }
            counts.push(
                u64::try_from(x)
                    .map_err(|_| MaskError::Counts(format!("negative run {x} at count {}", counts.len())))?,
            );
        }
        Self::from_counts(height, width, counts)
    }

    fn check(&self) -> Result<(), MaskError> {
        let pixels = self.height as u64 * self.width as u64;
        let covered = self.counts.iter().try_fold(0u64, |a, &c| a.checked_add(c)).unwrap_or(u64::MAX);
        if covered != pixels {
            return Err(MaskError::Coverage { covered, height: self.height, width: self.width, pixels });
        }
        Ok(())
    }

    /// The mask, row-major.
    pub fn decode(&self) -> Mask {
        let (h, w) = (self.height, self.width);
        let mut pixels = vec![false; h * w];
        let mut i = 0usize;
        for (run, &count) in self.counts.iter().enumerate() {
            if run % 2 == 1 {
                for j in i..i + count as usize {
                    // Column-major index j is row j % h of column j / h.
                    pixels[(j % h) * w + j / h] = true;
                }
            }
            i += count as usize;
        }
        Mask { height: h, width: w, pixels }
    }
}

/// LZString's `decompressFromEncodedURIComponent` (lz-string 1.4/1.5), which Ego-Exo4D wraps its
/// COCO counts strings in.
pub fn lzstring_decompress_uri(input: &str) -> Result<String, MaskError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-$";
    let values: Vec<u32> = input
        .bytes()
        .map(|b| if b == b' ' { b'+' } else { b })
        .map(|b| {
            ALPHABET.iter().position(|&a| a == b).map(|v| v as u32).ok_or_else(|| {
                MaskError::LzString(format!("character {:?} outside the URI alphabet", b as char))
            })
        })
        .collect::<Result<_, _>>()?;
    if values.is_empty() {
        return Ok(String::new());
    }
    let mut bits = Bits { values: &values, val: values[0], position: RESET, index: 1 };
    let mut dictionary: Vec<Vec<u16>> = vec![Vec::new(); 3];
    let (mut enlarge_in, mut num_bits) = (4u32, 3u32);
    let first = match bits.read(2) {
        0 => bits.read(8) as u16,
        1 => bits.read(16) as u16,
        _ => return Ok(String::new()),
    };
    dictionary.push(vec![first]);
    let mut w = vec![first];
    let mut result = w.clone();
    loop {
        // Past the input without an end code: truncated.
        if bits.index > values.len() {
            return Err(MaskError::LzString("input ends without an end marker".into()));
        }
        let mut c = bits.read(num_bits) as usize;
        match c {
            0 | 1 => {
                let unit = bits.read(if c == 0 { 8 } else { 16 }) as u16;
                dictionary.push(vec![unit]);
                c = dictionary.len() - 1;
                enlarge_in -= 1;
            }
            2 => break,
            _ => {}
        }
        if enlarge_in == 0 {
            enlarge_in = 1 << num_bits;
            num_bits += 1;
        }
        let entry = if c < dictionary.len() && !dictionary[c].is_empty() {
            dictionary[c].clone()
        } else if c == dictionary.len() {
            let mut e = w.clone();
            e.push(w[0]);
            e
        } else {
            return Err(MaskError::LzString(format!(
                "code {c} beyond the dictionary of {}",
                dictionary.len()
            )));
        };
        result.extend(&entry);
        let mut added = w.clone();
        added.push(entry[0]);
        dictionary.push(added);
        enlarge_in -= 1;
        w = entry;
        if enlarge_in == 0 {
            enlarge_in = 1 << num_bits;
            num_bits += 1;
        }
        if num_bits > 32 {
            return Err(MaskError::LzString("code width beyond 32 bits".into()));
        }
    }
    String::from_utf16(&result).map_err(|e| MaskError::LzString(e.to_string()))
}

/// LZString's bit reader over 6-bit URI-alphabet values (most significant bit first per value,
/// bits of a number least significant first).
struct Bits<'a> {
    values: &'a [u32],
    val: u32,
    position: u32,
    index: usize,
}

const RESET: u32 = 32;

impl Bits<'_> {
    fn read(&mut self, bits: u32) -> u32 {
        let mut out = 0u32;
        for power in 0..bits {
            let bit = self.val & self.position;
            self.position >>= 1;
            if self.position == 0 {
                self.position = RESET;
                self.val = self.values.get(self.index).copied().unwrap_or(0);
                self.index += 1;
            }
            if bit > 0 {
                out |= 1 << power;
            }
        }
        out
    }
}
