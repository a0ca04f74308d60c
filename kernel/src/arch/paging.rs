//! Page-table helpers for the kernel's identity map (`boot_pd` in `boot/pvh.rs`: 2048 2 MiB
//! pages covering the low 4 GiB), which the PVH boot and the UEFI hand-off run on. (Walks of
//! whatever tables are live, and changes to one leaf, are the guest library's:
//! `cvmprobe_guest::arch::paging`.)
//!
//! SEV-ES: private memory is mapped with the C-bit set and shared memory with it clear (AMD
//! APM vol. 2 15.34.5). After detection the guest sets the C-bit on the pages that hold RAM
//! and keeps the GHCB page shared by splitting its 2 MiB page into 4 KiB pages. MMIO windows
//! above RAM stay shared. (The simulated SEV-ES host aliases RAM at the C-bit, so both
//! mappings reach the same memory; the C-bit makes the guest's view of what is private real
//! for the #VC handler's page walk.)

use core::cell::UnsafeCell;
use cvmprobe_guest::arch::paging::virt_to_phys;

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
    let page_va = (shared_gpa & !0xfff) + cvmprobe_guest::platform::legacy::phys_offset();
    for line in (0..4096).step_by(64) {
        cvmprobe_guest::arch::insn::clflush(page_va + line);
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
