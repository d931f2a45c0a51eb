//! Live heap bytes, counted when the binary is built with the `heap-stats` feature (a global
//! allocator wrapping the system's): what `spear bench train` compares with the memory plan. The
//! process's resident memory is a poor stand-in there: freed memory stays resident, so a second
//! run in one process grows less than its tensors.

#[cfg(feature = "heap-stats")]
#[global_allocator]
static HEAP: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// Live heap bytes now, where counted.
pub fn current() -> Option<usize> {
    #[cfg(feature = "heap-stats")]
    return Some(HEAP.current_usage());
    #[cfg(not(feature = "heap-stats"))]
    None
}

/// The most live heap bytes since the last [`reset_peak`], where counted.
pub fn peak() -> Option<usize> {
    #[cfg(feature = "heap-stats")]
    return Some(HEAP.peak_usage());
    #[cfg(not(feature = "heap-stats"))]
    None
}

/// Restarts [`peak`] from the live bytes now.
pub fn reset_peak() {
    #[cfg(feature = "heap-stats")]
    HEAP.reset_peak_usage();
}
