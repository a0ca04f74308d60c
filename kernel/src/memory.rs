//! The guest's view of its RAM: the ranges the memory map calls RAM, and the heap carved
//! from them.

use crate::boot::{BootParams, MemoryKind};
use core::sync::atomic::{AtomicU64, Ordering};
use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Heap size carved after the kernel image.
const HEAP_SIZE: u64 = 256 * 1024;

/// Bounds of the RAM the kernel may touch: `[0, RAM_END)` holds every RAM region below
/// 4 GiB. MMIO windows live above it (the MMIO API refuses GPAs below it that the memory
/// map calls RAM). One compare per access keeps the check cheap.
static RAM_LOW_END: AtomicU64 = AtomicU64::new(0);
/// RAM regions at or above 4 GiB: `[4 GiB, RAM_HIGH_END)`, 0 if none.
static RAM_HIGH_END: AtomicU64 = AtomicU64::new(0);

const FOUR_GIB: u64 = 1 << 32;

/// Records the RAM bounds and sets up the heap in usable RAM.
pub fn init(params: &BootParams) -> Result<(), &'static str> {
    let (mut low, mut high) = (0u64, 0u64);
    for r in params
        .regions()
        .iter()
        .filter(|r| matches!(r.kind, MemoryKind::Ram | MemoryKind::RamInUse))
    {
        let end = r.base.saturating_add(r.len);
        if r.base < FOUR_GIB {
            low = low.max(end.min(FOUR_GIB));
        }
        if end > FOUR_GIB {
            high = high.max(end);
        }
    }
    RAM_LOW_END.store(low, Ordering::Relaxed);
    RAM_HIGH_END.store(high, Ordering::Relaxed);

    // The first usable RAM above 1 MiB (below it live the BIOS data areas and, on PVH, the
    // start info) with room for the heap, after the kernel image if the region holds it.
    let start = params
        .regions()
        .iter()
        .filter(|r| r.kind == MemoryKind::Ram)
        .find_map(|r| {
            let end = r.base.saturating_add(r.len);
            let mut s = r.base.max(1 << 20);
            if (r.base..end).contains(&params.image_end_gpa) {
                s = s.max(params.image_end_gpa);
            }
            let s = (s + 0xfff) & !0xfff;
            (s + HEAP_SIZE <= end).then_some(s)
        })
        .ok_or("no usable RAM region of the memory map has room for the heap")?;
    let va = start + params.phys_offset;
    // SAFETY: [start, start + HEAP_SIZE) is usable RAM (after the kernel image when they share
    // a region) that nothing else uses; it is mapped at `va`; the heap is initialised once.
    unsafe { HEAP.lock().init(va as *mut u8, HEAP_SIZE as usize) };
    Ok(())
}

/// Whether `[start, end)` overlaps RAM from the memory map. Hot path of every MMIO access:
/// the common case (device memory above the low RAM, below 4 GiB) is one load and two
/// compares.
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
