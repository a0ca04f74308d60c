//! Page walks over the environment's page tables: the #VE/#VC handlers, the SEV-ES backend
//! (where its GHCB is) and the tables (what a mapping says) ask what a virtual address maps
//! to. The tables are whatever the environment built (the kernel's identity map or the
//! bootloader's, kvm_util's); the walk reads them through the environment's physical-memory
//! mapping (`va = pa + phys_offset`, [`crate::env`]).

use core::sync::atomic::{AtomicU32, Ordering};

/// Address bits of a page-table entry (bits 51:12).
const PTE_ADDR: u64 = protocol::paging::PTE_ADDR;

/// Levels of the environment's page tables (4, or 5 with CR4.LA57), fixed at start: CR4 is not
/// read again (on a confidential VM the fewer privileged reads, the fewer questions for the
/// host).
static LEVELS: AtomicU32 = AtomicU32::new(4);

/// Records how many levels the environment's tables have.
pub fn set_levels(levels: u32) {
    LEVELS.store(if levels == 5 { 5 } else { 4 }, Ordering::Relaxed);
}

/// The leaf entry mapping `va`, the size of its page and the entry's physical address.
fn walk_entry(va: u64) -> Option<(u64, u64, u64)> {
    let (frame, _) = x86_64::registers::control::Cr3::read_raw();
    let phys_offset = crate::platform::legacy::phys_offset();
    let mut last = 0;
    let mut read = |pa: u64| {
        last = pa;
        // SAFETY: `pa` is the physical address of an entry of a live page table, which the
        // environment's physical-memory mapping makes readable.
        Some(unsafe { core::ptr::read_volatile(pa.wrapping_add(phys_offset) as *const u64) })
    };
    let leaf = protocol::paging::walk(
        &mut read,
        frame.start_address().as_u64(),
        LEVELS.load(Ordering::Relaxed),
        va,
        PTE_ADDR & !cbit_mask(),
    )?;
    Some((leaf.entry, leaf.size, last))
}

/// The leaf page-table entry that maps virtual address `va` and the size of its page.
pub fn walk(va: u64) -> Option<(u64, u64)> {
    walk_entry(va).map(|(e, size, _)| (e, size))
}

/// The leaf entry mapping `va` (see [`walk`]).
pub fn translate(va: u64) -> Option<u64> {
    walk(va).map(|(e, _)| e)
}

/// The physical address `va` maps to (the C-bit stripped).
pub fn virt_to_phys(va: u64) -> Option<u64> {
    let (e, size) = walk(va)?;
    Some((e & PTE_ADDR & !cbit_mask() & !(size - 1)) | (va & (size - 1)))
}

/// ORs `bits` into the leaf entry that maps `va` (its whole page: 4 KiB, 2 MiB or 1 GiB) and
/// flushes the TLB; returns the page's size, `None` if `va` is unmapped. The TDX shared bit on
/// the memslot page, the C-bit of the `ghcb-private` fault injection.
///
/// # Safety
/// Nothing may rely on the page's old attributes: its contents are reached through the new
/// ones from now on.
pub unsafe fn set_leaf_bits(va: u64, bits: u64) -> Option<u64> {
    let (_, size, entry_pa) = walk_entry(va)?;
    let p = entry_pa.wrapping_add(crate::platform::legacy::phys_offset()) as *mut u64;
    // SAFETY: `p` is the live leaf entry of `va`, reachable through the physical-memory
    // mapping; per the contract nothing depends on the old value. Reloading CR3 flushes it.
    unsafe {
        core::ptr::write_volatile(p, core::ptr::read_volatile(p) | bits);
        let (frame, flags) = x86_64::registers::control::Cr3::read_raw();
        x86_64::registers::control::Cr3::write_raw(frame, flags);
    }
    Some(size)
}

/// The C-bit of the current platform (0 if none), stripped from table addresses in walks.
fn cbit_mask() -> u64 {
    match crate::platform::sev_es::cbit() {
        0 => 0,
        c => 1 << c,
    }
}
