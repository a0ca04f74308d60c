//! The guest's RAM as the environment describes it (`cvmprobe_ops.ram_end`, `ram_end_high`):
//! the MMIO API refuses it.

use core::sync::atomic::{AtomicU64, Ordering};

/// Bounds of the RAM the guest may touch: `[0, RAM_LOW_END)` holds every RAM region below
/// 4 GiB. MMIO windows live above it (the MMIO API refuses GPAs below it that the memory
/// map calls RAM). One compare per access keeps the check cheap.
static RAM_LOW_END: AtomicU64 = AtomicU64::new(0);
/// RAM regions at or above 4 GiB: `[4 GiB, RAM_HIGH_END)`, 0 if none.
static RAM_HIGH_END: AtomicU64 = AtomicU64::new(0);

const FOUR_GIB: u64 = 1 << 32;

/// Records the RAM bounds.
pub fn set_ram(low_end: u64, high_end: u64) {
    RAM_LOW_END.store(low_end.min(FOUR_GIB), Ordering::Relaxed);
    RAM_HIGH_END.store(high_end, Ordering::Relaxed);
}

/// Whether `[start, end)` overlaps RAM. Hot path of every MMIO access: the common case
/// (device memory above the low RAM, below 4 GiB) is one load and two compares.
#[inline(always)]
pub fn overlaps_ram(start: u64, end: u64) -> bool {
    if start < RAM_LOW_END.load(Ordering::Relaxed) {
        return true;
    }
    if end <= FOUR_GIB {
        return false;
    }
    start < RAM_HIGH_END.load(Ordering::Relaxed)
}
