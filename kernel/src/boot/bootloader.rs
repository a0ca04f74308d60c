//! The bootloader_api entry (BIOS and UEFI disk images made by the `bootloader` crate).
//!
//! The bootloader maps the kernel at its link addresses and passes a `BootInfo`. There is no
//! command line: the host puts it in the ramdisk (`protocol::cmdline::RAMDISK_*`).
//!
//! Physical memory: the kernel reaches RAM and MMIO by physical address through a mapping of
//! the low 4 GiB. The bootloader could make one, but it maps page by page, which takes over a
//! minute under an emulated CPU; instead the bootloader only installs a recursive PML4 entry,
//! and the kernel plugs its own static 2 MiB-page tables (`boot_pdpt`/`boot_pd`, the same
//! ones PVH uses) into a free PML4 slot: four page-table walks and one entry.

use super::{BootParams, BootPath, MemoryKind, MemoryRegion};
use bootloader_api::config::Mapping;
use bootloader_api::info::MemoryRegionKind;
use bootloader_api::{BootInfo, BootloaderConfig, entry_point};

/// The kernel's requirements of the bootloader.
pub static CONFIG: BootloaderConfig = {
    let mut c = BootloaderConfig::new_default();
    c.mappings.physical_memory = None;
    c.mappings.page_table_recursive = Some(Mapping::Dynamic);
    c.kernel_stack_size = 128 * 1024;
    c
};

unsafe extern "C" {
    /// The PVH page-directory-pointer table for the low 4 GiB (`boot/pvh.rs`).
    static mut boot_pdpt: [u64; 512];
    /// The four page directories it points to (2 MiB identity pages).
    static boot_pd: [u64; 2048];
}

/// Present | writable.
const PTE_PW: u64 = 0x3;
/// Page size bit.
const PTE_PS: u64 = 0x80;
/// Address bits of an entry.
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// The virtual address whose page-table indices are `i4..i1`, sign-extended.
fn va(i4: u64, i3: u64, i2: u64, i1: u64) -> u64 {
    let v = (i4 << 39) | (i3 << 30) | (i2 << 21) | (i1 << 12);
    ((v << 16) as i64 >> 16) as u64
}

/// Reads one page-table entry through the recursive mapping.
fn entry(table_va: u64, index: u64) -> u64 {
    // SAFETY: `table_va` addresses a live page table through the recursive PML4 entry the
    // bootloader installed; reading an entry has no side effect.
    unsafe { core::ptr::read_volatile((table_va as *const u64).add(index as usize)) }
}

/// The physical address `v` maps to, walking through recursive slot `r`.
fn recursive_translate(r: u64, v: u64) -> Option<u64> {
    let (i4, i3, i2, i1) = (
        (v >> 39) & 511,
        (v >> 30) & 511,
        (v >> 21) & 511,
        (v >> 12) & 511,
    );
    let e4 = entry(va(r, r, r, r), i4);
    if e4 & 1 == 0 {
        return None;
    }
    let e3 = entry(va(r, r, r, i4), i3);
    if e3 & 1 == 0 {
        return None;
    }
    if e3 & PTE_PS != 0 {
        return Some((e3 & PTE_ADDR & !((1 << 30) - 1)) | (v & ((1 << 30) - 1)));
    }
    let e2 = entry(va(r, r, i4, i3), i2);
    if e2 & 1 == 0 {
        return None;
    }
    if e2 & PTE_PS != 0 {
        return Some((e2 & PTE_ADDR & !((1 << 21) - 1)) | (v & ((1 << 21) - 1)));
    }
    let e1 = entry(va(r, i4, i3, i2), i1);
    (e1 & 1 != 0).then_some((e1 & PTE_ADDR) | (v & 0xfff))
}

/// Maps the low 4 GiB at a free PML4 slot with the static 2 MiB tables; returns the offset.
fn map_physical_memory(r: u64) -> Option<u64> {
    let pml4 = va(r, r, r, r);
    // A free slot in the lower half (the kernel lives in the upper one).
    let slot = (1..256).find(|&i| i != r && entry(pml4, i) & 1 == 0)?;
    let pdpt_va = (&raw mut boot_pdpt).cast::<u64>();
    for n in 0..4u64 {
        // SAFETY: taking the address of the static page directories, not reading them.
        let pd_va = unsafe { (&raw const boot_pd).cast::<u64>().add(n as usize * 512) } as u64;
        let pd_pa = recursive_translate(r, pd_va)?;
        // SAFETY: boot_pdpt is unused on this boot path until it is linked in below; the
        // kernel image is writable where the ELF says (no RELRO).
        unsafe { pdpt_va.add(n as usize).write_volatile(pd_pa | PTE_PW) };
    }
    let pdpt_pa = recursive_translate(r, pdpt_va as u64)?;
    // SAFETY: writing a free PML4 entry through the recursive mapping, then reloading CR3 so
    // no stale translation survives.
    unsafe {
        ((pml4 as *mut u64).add(slot as usize)).write_volatile(pdpt_pa | PTE_PW);
        let (frame, flags) = x86_64::registers::control::Cr3::read_raw();
        x86_64::registers::control::Cr3::write_raw(frame, flags);
    }
    Some(slot << 39)
}

entry_point!(bootloader_main, config = &CONFIG);

fn bootloader_main(info: &'static mut BootInfo) -> ! {
    let params = super::params_mut();
    params.path = BootPath::Bootloader;
    let Some(r) = info.recursive_index.into_option() else {
        super::early_fail(b"the bootloader installed no recursive page-table mapping")
    };
    let Some(offset) = map_physical_memory(u64::from(r)) else {
        super::early_fail(b"cannot map physical memory (no free PML4 slot or an unmapped table)")
    };
    params.phys_offset = offset;
    // The image's frames are marked in use in the memory map, so the heap never meets them.
    params.image_end_gpa = 0;
    for r in info.memory_regions.iter() {
        let kind = match r.kind {
            MemoryRegionKind::Usable => MemoryKind::Ram,
            MemoryRegionKind::Bootloader => MemoryKind::RamInUse,
            _ => MemoryKind::Reserved,
        };
        params.push_region(MemoryRegion {
            base: r.start,
            len: r.end.saturating_sub(r.start),
            kind,
        });
    }
    if let Some(addr) = info.ramdisk_addr.into_option() {
        let len = (info.ramdisk_len as usize).min(BootParams::CMDLINE_MAX);
        // SAFETY: the bootloader mapped `ramdisk_len` bytes of ramdisk at `ramdisk_addr` for
        // the kernel; at most that many are read, once, before anything else uses them.
        let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
        params.set_cmdline(protocol::cmdline::cmdline_from_ramdisk(bytes));
    }
    crate::kmain()
}
