//! The kernel's RAM: the bounds the guest library's MMIO API refuses (from the memory map),
//! and the heap carved from it.

use crate::boot::{BootParams, MemoryKind};
use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Heap size carved after the kernel image.
const HEAP_SIZE: u64 = 256 * 1024;

const FOUR_GIB: u64 = 1 << 32;

/// `(low, high)`: every RAM region of the memory map below 4 GiB ends at or below `low`,
/// every one above at or below `high` (0: none) (`cvmprobe_ops.ram_end`, `ram_end_high`).
pub fn ram_bounds(params: &BootParams) -> (u64, u64) {
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
    (low, high)
}

/// Sets up the heap in usable RAM. Runs once the platform is fixed: on SEV-ES the heap's
/// memory is private from then on.
pub fn init_heap(params: &BootParams) -> Result<(), &'static core::ffi::CStr> {
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
        .ok_or(c"no usable RAM region of the memory map has room for the heap")?;
    let va = start + params.phys_offset;
    // SAFETY: [start, start + HEAP_SIZE) is usable RAM (after the kernel image when they share
    // a region) that nothing else uses; it is mapped at `va`; the heap is initialised once.
    unsafe { HEAP.lock().init(va as *mut u8, HEAP_SIZE as usize) };
    Ok(())
}
