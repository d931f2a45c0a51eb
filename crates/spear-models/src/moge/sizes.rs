//! The working sizes MoGe derives from an image and a token budget (`moge/model/v1.py`, `v2.py`).

/// The token budget at `level` (0–9) of `range` (`num_tokens_range`):
/// `int(min + level/9 · (max − min))`, as both versions' `infer` compute it.
pub fn tokens_at_level(range: [usize; 2], level: u8) -> usize {
    let [min, max] = range.map(|t| t as f64);
    (min + f64::from(level) / 9.0 * (max - min)) as usize
}

/// MoGe-1's sizes for an image of `height × width` at `tokens`: the bicubic resize
/// `(int(H·r), int(W·r))` with `r = √(tokens·14² / (H·W))`, then the encoder's input, that size
/// floored to multiples of 14 (returned `[height, width]` each).
pub fn v1_sizes(height: usize, width: usize, tokens: usize) -> ([usize; 2], [usize; 2]) {
    let factor = ((tokens * 14 * 14) as f64 / (height * width) as f64).sqrt();
    let resized = [(height as f64 * factor) as usize, (width as f64 * factor) as usize];
    (resized, resized.map(|side| side / 14 * 14))
}

/// MoGe-2's token grid for an image of `height × width` at `tokens`: `[round(√(tokens/a)),
/// round(√(tokens·a))]` with `a = W/H`, rounded half to even as Python's `round` does.
pub fn v2_grid(height: usize, width: usize, tokens: usize) -> [usize; 2] {
    let aspect = width as f64 / height as f64;
    let tokens = tokens as f64;
    [(tokens / aspect).sqrt().round_ties_even() as usize, (tokens * aspect).sqrt().round_ties_even() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values: MoGe's own expressions (moge/model/v1.py:273-279, v2.py:143-147, the level in
    // each `infer`) evaluated by Python 3.11: they are inline in its forward, not callable alone.
    #[test]
    fn sizes_are_moges() {
        assert_eq!(v1_sizes(630, 840, 2551), ([612, 816], [602, 812]));
        assert_eq!(v1_sizes(630, 840, 1275), ([432, 577], [420, 574]));
        assert_eq!(v1_sizes(480, 640, 2500), ([606, 808], [602, 798]));
        assert_eq!(v1_sizes(37, 53, 1200), ([405, 580], [392, 574]));
        assert_eq!(v1_sizes(1080, 1920, 2551), ([530, 942], [518, 938]));
        assert_eq!(v2_grid(630, 840, 3600), [52, 69]);
        assert_eq!(v2_grid(630, 840, 1200), [30, 40]);
        assert_eq!(v2_grid(480, 640, 2500), [43, 58]);
        assert_eq!(v2_grid(1080, 1920, 3600), [45, 80]);
        assert_eq!(v2_grid(37, 53, 1200), [29, 41]);
        // √(25/4) = 2.5: Python rounds half to even.
        assert_eq!(v2_grid(10, 40, 25), [2, 10]);
    }

    #[test]
    fn levels_span_the_range() {
        let levels = |range| (0..10).map(|l| tokens_at_level(range, l)).collect::<Vec<_>>();
        assert_eq!(levels([1275, 2551]), [1275, 1416, 1558, 1700, 1842, 1983, 2125, 2267, 2409, 2551]);
        assert_eq!(levels([1200, 3600]), [1200, 1466, 1733, 2000, 2266, 2533, 2800, 3066, 3333, 3600]);
    }
}
