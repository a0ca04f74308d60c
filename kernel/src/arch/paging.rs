//! Page-table helpers for the kernel's identity map (`boot_pd` in `boot/pvh.rs`: 2048 2 MiB
//! pages covering the low 4 GiB), which the PVH boot and the UEFI hand-off run on.
//!
//! SEV-ES: private memory is mapped with the C-bit set and shared memory with it clear (AMD
//! APM vol. 2 15.34.5). After detection the guest sets the C-bit on the pages that hold RAM
//! and keeps the GHCB page shared by splitting its 2 MiB page into 4 KiB pages. MMIO windows
//! above RAM stay shared. (The simulated SEV-ES host aliases RAM at the C-bit, so both
//! mappings reach the same memory; the C-bit makes the guest's view of what is private real
//! for the #VC handler's page walk.)

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// Present | writable.
const PTE_PW: u64 = 0x3;
/// Page size (2 MiB leaf in a PD entry).
const PTE_PS: u64 = 0x80;
/// Entries of the identity-mapping page directory.
const PD_ENTRIES: usize = 2048;

unsafe extern "C" {
    /// The PVH identity map's page directory (4 x 512 entries).
    static mut boot_pd: [u64; PD_ENTRIES];
}

#[repr(C, align(4096))]
struct PageTable([u64; 512]);

struct PtCell(UnsafeCell<PageTable>);

// SAFETY: written once by `set_cbit_on_ram` on the boot CPU before it is linked into the
// paging structures; only the CPU reads it afterwards.
unsafe impl Sync for PtCell {}

/// The 4 KiB page table that maps the 2 MiB around the shared GHCB page.
static SPLIT_PT: PtCell = PtCell(UnsafeCell::new(PageTable([0; 512])));

/// Sets C-bit `cbit` on every 2 MiB page below `ram_end` (identity map, PVH boot only),
/// except the 4 KiB page at `shared_gpa` ([`share_page`]), and reloads CR3.
///
/// # Safety
/// Only on the PVH identity map, with RAM reachable at both GPA and GPA | C-bit (the SEV-ES
/// host's view), and before anything else depends on the old mappings' attributes.
pub unsafe fn set_cbit_on_ram(cbit: u8, ram_end: u64, shared_gpa: u64) {
    let c = 1u64 << cbit;
    // SAFETY: per the function contract, nothing else uses the page directory now; raw
    // pointer accesses avoid references to the `static mut`.
    unsafe {
        let pd = (&raw mut boot_pd).cast::<u64>();
        let last = protocol::paging::private_pd_entries(ram_end).min(PD_ENTRIES as u64) as usize;
        for i in 0..last {
            *pd.add(i) |= c;
        }
        share_page(cbit, shared_gpa);
    }
}

/// Maps the 4 KiB page at `shared_gpa` without C-bit `cbit` (the SEV-ES GHCB): its 2 MiB page
/// in `boot_pd` (which must carry the C-bit already) becomes a 4 KiB table with the C-bit on
/// every other page (`protocol::paging::split_2m`); the page's cache lines are flushed first
/// (dirty private lines must not be written back over shared data, AMD APM vol. 2 15.34.7);
/// CR3 is reloaded. Used by the PVH boot after it set the C-bit, and by the UEFI hand-off,
/// whose tables carry it from entry on.
///
/// # Safety
/// Only on the kernel's identity map (`boot_pd`: PVH and UEFI hand-off), once, before the
/// page is used shared.
pub unsafe fn share_page(cbit: u8, shared_gpa: u64) {
    let c = 1u64 << cbit;
    let big = (shared_gpa >> 21) as usize;
    // The split table's physical address, found before any entry changes (the kernel runs
    // in the high half: its virtual address is not a GPA).
    let Some(pt_pa) = virt_to_phys(SPLIT_PT.0.get() as u64) else {
        return;
    };
    if big >= PD_ENTRIES {
        return;
    }
    let page_va = (shared_gpa & !0xfff) + crate::platform::legacy::phys_offset();
    for line in (0..4096).step_by(64) {
        crate::arch::insn::clflush(page_va + line);
    }
    // SAFETY: per the function contract; raw pointer accesses avoid references to the
    // `static mut`.
    unsafe {
        let pd = (&raw mut boot_pd).cast::<u64>();
        let pt = SPLIT_PT.0.get().cast::<u64>();
        let entries = protocol::paging::split_2m((big as u64) << 21, c, shared_gpa);
        for (j, e) in entries.iter().enumerate() {
            *pt.add(j) = *e;
        }
        // The page table itself is private RAM; the PS bit is clear: it is a table.
        *pd.add(big) = pt_pa | PTE_PW | c;
        debug_assert!(*pd.add(big) & PTE_PS == 0);
        let (frame, flags) = x86_64::registers::control::Cr3::read_raw();
        x86_64::registers::control::Cr3::write_raw(frame, flags);
    }
}

/// Sets C-bit `cbit` on the 4 KiB mapping of `shared_gpa` that [`set_cbit_on_ram`] left
/// shared, and reloads CR3; returns false if that split mapping does not map `shared_gpa`.
/// Used only by the `ghcb-private` fault injection: it makes the GHCB private, the bug the
/// host's check of the GHCB's mapping must catch.
///
/// # Safety
/// After [`set_cbit_on_ram`] with the same `shared_gpa`, on the boot CPU; the page's data is
/// then reached through the private alias.
pub unsafe fn set_cbit_on_split_page(cbit: u8, shared_gpa: u64) -> bool {
    let c = 1u64 << cbit;
    // SAFETY: per the contract the split table is in use and only this CPU changes it; raw
    // pointer accesses avoid references to the `static mut`.
    unsafe {
        let pd = (&raw const boot_pd).cast::<u64>();
        let big = (shared_gpa >> 21) as usize;
        let Some(pt_pa) = virt_to_phys(SPLIT_PT.0.get() as u64) else {
            return false;
        };
        if big >= PD_ENTRIES || *pd.add(big) & PTE_ADDR & !c != pt_pa {
            return false;
        }
        let pt = SPLIT_PT.0.get().cast::<u64>();
        *pt.add(((shared_gpa >> 12) & 511) as usize) |= c;
        let (frame, flags) = x86_64::registers::control::Cr3::read_raw();
        x86_64::registers::control::Cr3::write_raw(frame, flags);
    }
    true
}

/// ORs `bits` into the kernel identity map's 2 MiB entry for `gpa` and flushes the TLB (the TDX
/// shared bit on an MMIO region, so its accesses leave the TD as shared GPAs).
///
/// # Safety
/// Only on the kernel identity map (PVH, UEFI hand-off), for a region nothing else maps or uses with the old bits.
pub unsafe fn set_2m_bits(gpa: u64, bits: u64) {
    let i = (gpa >> 21) as usize;
    if i >= PD_ENTRIES {
        return;
    }
    // SAFETY: per the contract; a raw pointer access avoids references to the `static mut`.
    unsafe {
        let pd = (&raw mut boot_pd).cast::<u64>();
        *pd.add(i) |= bits;
        let (frame, flags) = x86_64::registers::control::Cr3::read_raw();
        x86_64::registers::control::Cr3::write_raw(frame, flags);
    }
}

/// Address bits of a page-table entry (bits 51:12).
const PTE_ADDR: u64 = protocol::paging::PTE_ADDR;

/// Whether the kernel runs with 5-level paging (the UEFI hand-off under firmware with
/// CR4.LA57); set once at entry, read by [`walk`] (CR4 is not read again: on a confidential VM
/// the fewer privileged reads, the fewer questions for the host).
static FIVE_LEVEL: AtomicBool = AtomicBool::new(false);

/// Records whether the kernel's tables are 5-level (the UEFI hand-off entry calls it).
pub fn set_five_level(on: bool) {
    FIVE_LEVEL.store(on, Ordering::Relaxed);
}

/// The leaf page-table entry that maps virtual address `va` and the size of its page, walking
/// the current page tables (4 or 5 levels) through the physical-memory mapping
/// (`va = pa + phys_offset`).
pub fn walk(va: u64) -> Option<(u64, u64)> {
    let (frame, _) = x86_64::registers::control::Cr3::read_raw();
    let phys_offset = crate::platform::legacy::phys_offset();
    let levels = if FIVE_LEVEL.load(Ordering::Relaxed) {
        5
    } else {
        4
    };
    let mut read = |pa: u64| {
        // SAFETY: `pa` is the physical address of an entry of a live page table, which the
        // loader's physical-memory mapping (or the kernel's identity map) makes readable.
        Some(unsafe { core::ptr::read_volatile(pa.wrapping_add(phys_offset) as *const u64) })
    };
    protocol::paging::walk(
        &mut read,
        frame.start_address().as_u64(),
        levels,
        va,
        PTE_ADDR & !cbit_mask(),
    )
    .map(|l| (l.entry, l.size))
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

/// The C-bit of the current platform (0 if none), stripped from table addresses in walks.
fn cbit_mask() -> u64 {
    match crate::platform::sev_es::cbit() {
        0 => 0,
        c => 1 << c,
    }
}
