//! Small drawing and terminal helpers shared by the preview commands.

use std::io::Write;

use image::{Rgb, RgbImage};

/// A 2-pixel-wide line, clipped to the image.
pub fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), colour: Rgb<u8>) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for i in 0..=steps {
        let (x, y) = (x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            if let (Ok(x), Ok(y)) = (u32::try_from(x + dx), u32::try_from(y + dy))
                && x < img.width()
                && y < img.height()
            {
                img.put_pixel(x, y, colour);
            }
        }
    }
}

/// A filled rectangle, clipped to the image.
pub fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colour: Rgb<u8>) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, colour);
        }
    }
}

/// 3 × 5 glyphs, one row per entry, bit 2 = left column.
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [6, 1, 2, 4, 7],
        '3' => [6, 1, 2, 1, 6],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 6, 1, 6],
        '6' => [3, 4, 7, 5, 7],
        '7' => [7, 1, 2, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 6],
        '-' => [0, 0, 7, 0, 0],
        '.' => [0, 0, 0, 0, 2],
        '_' => [0, 0, 0, 0, 7],
        ' ' => [0; 5],
        _ => [6, 1, 2, 0, 2],
    }
}

/// Writes `text` with its top-left corner at `(x, y)`, each font pixel `scale` × `scale`, on a dark
/// box so it reads on any background.
pub fn text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, colour: Rgb<u8>) {
    let (x, y) = (x.max(0) as u32, y.max(0) as u32);
    let width = text.chars().count() as u32 * 4 * scale + scale;
    fill(img, x, y, width, 7 * scale, Rgb([0, 0, 0]));
    for (i, c) in text.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..3 {
                if bits >> (2 - col) & 1 == 1 {
                    let px = x + scale + (i as u32 * 4 + col) * scale;
                    fill(img, px, y + scale + row as u32 * scale, scale, scale, colour);
                }
            }
        }
    }
}

/// Rewrites a `[####    ] done/all what, seconds` line on stderr.
pub fn progress_line(done: usize, all: usize, what: &str, start: std::time::Instant) {
    let width = 30;
    let filled = done * width / all.max(1);
    eprint!(
        "\r  [{}{}] {done}/{all} {what}, {:.0} s",
        "#".repeat(filled),
        " ".repeat(width - filled),
        start.elapsed().as_secs_f64()
    );
    let _ = std::io::stderr().flush();
}
