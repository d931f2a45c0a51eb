//! Fixed, portable hashes for deterministic choices that must not depend on the machine, the
//! process or the order of work (held-out episodes, per-image and per-step seeds). Not for
//! security.

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// splitmix64's finaliser: spreads every input bit over the output, so that neighbouring inputs
/// (step 7 and step 8) give unrelated values.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64's increment (the golden ratio in 64 bits), for mixing an index into a hash.
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
