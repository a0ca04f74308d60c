//! Guest-physical layout: RAM, where the PVH boot data goes, and the memory map the guest sees.
//!
//! Modelled on QEMU's PVH boot (`-kernel` with an ELF that has a PVH note): its option ROM
//! (pc-bios/optionrom/pvh_main.c) keeps `hvm_start_info`, the command line (a 4 KiB buffer)
//! and the E820 table inside the option-ROM image below 1 MiB, an area the memory map does
//! not offer as RAM; the kernel goes at its ELF physical addresses (1 MiB here). The VMM does
//! the same without a ROM: one memslot of RAM from GPA 0, the boot data in a block at
//! [`BOOT_INFO_START`] that the memory map marks reserved, conventional RAM below it and RAM
//! from [`HIMEM_START`] up.
//!
//! ```text
//! 0x0000_0000 .. 0x0009_fc00  RAM (conventional memory, as SeaBIOS's E820 reports it)
//! 0x000c_0000 .. 0x000c_2000  reserved: start info, memory map, command line
//! 0x0010_0000 .. mem_size     RAM: kernel image (linker.ld), its heap, the rest
//! 0xfee0_0000                 local APIC (MMIO, no RAM behind it)
//! ```

use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_start_info};

/// Start of high memory: the kernel's load address (linker.ld, BOOT-NOTES.md: 0x100000
/// works on every QEMU machine) and the lowest ELF entry point accepted.
pub const HIMEM_START: u64 = 0x10_0000;

/// End of conventional RAM: 640 KiB less the 1 KiB EBDA, which is where PC firmware's E820
/// (SeaBIOS, which QEMU's PVH option ROM asks) ends the first RAM range.
pub const LOW_RAM_END: u64 = 0x9_fc00;

/// Start of the boot-data block, in the option-ROM area (0xc0000..0xf0000) where QEMU's
/// PVH option ROM keeps the same data.
pub const BOOT_INFO_START: u64 = 0xc_0000;
/// GPA of `struct hvm_start_info` (EBX at entry).
pub const START_INFO_GPA: u64 = BOOT_INFO_START;
/// GPA of the `hvm_memmap_table_entry` array (after the 56-byte start info).
pub const MEMMAP_GPA: u64 = BOOT_INFO_START + 0x100;
/// Memory-map entries that fit between [`MEMMAP_GPA`] and [`CMDLINE_GPA`].
pub const MEMMAP_MAX_ENTRIES: usize = (CMDLINE_GPA - MEMMAP_GPA) as usize / MEMMAP_ENTRY_SIZE;
/// GPA of the NUL-terminated command line.
pub const CMDLINE_GPA: u64 = BOOT_INFO_START + 0x1000;
/// Bytes reserved for the command line, NUL included (QEMU's PVH ROM: `CMDLINE_BUFSIZE`).
pub const CMDLINE_CAPACITY: usize = 4096;
/// End of the boot-data block.
pub const BOOT_INFO_END: u64 = CMDLINE_GPA + CMDLINE_CAPACITY as u64;

/// Size of one `hvm_memmap_table_entry` (Xen public/arch-x86/hvm/start_info.h).
const MEMMAP_ENTRY_SIZE: usize = 24;
const _: () = {
    assert!(std::mem::size_of::<hvm_memmap_table_entry>() == MEMMAP_ENTRY_SIZE);
    // The boot-data block sits between conventional RAM and the kernel, and the start info
    // (56 bytes, version 1) ends before the memory map.
    assert!(LOW_RAM_END <= BOOT_INFO_START && BOOT_INFO_END <= HIMEM_START);
    assert!(START_INFO_GPA + std::mem::size_of::<hvm_start_info>() as u64 <= MEMMAP_GPA);
};

/// RAM ends below this: the top GiB under 4 GiB is kept free of RAM for MMIO (the local APIC
/// at 0xfee00000, the guest's MMIO test windows at 0xff000000), and the guest identity-maps
/// only the low 4 GiB at boot.
pub const RAM_LIMIT: u64 = 0xc000_0000;
const _: () = assert!(RAM_LIMIT <= protocol::qemu_devices::LAPIC_BASE);
/// Smallest guest RAM: the kernel image at 1 MiB plus its 256 KiB heap fit below 2 MiB.
pub const MIN_MEM_MIB: u64 = 2;
/// Largest guest RAM ([`RAM_LIMIT`] in MiB).
pub const MAX_MEM_MIB: u64 = RAM_LIMIT >> 20;

/// E820 / `hvm_memmap_table_entry.type` for usable RAM (ACPI spec, "Address Range Types").
pub const E820_RAM: u32 = 1;
/// E820 type for reserved memory.
pub const E820_RESERVED: u32 = 2;

/// The memory map handed to the guest for `mem_size` bytes of RAM at GPA 0.
///
/// `mem_size` must be at least [`MIN_MEM_MIB`] MiB (checked by the caller).
pub fn memmap(mem_size: u64) -> Vec<hvm_memmap_table_entry> {
    let entry = |addr: u64, end: u64, type_: u32| hvm_memmap_table_entry {
        addr,
        size: end - addr,
        type_,
        reserved: 0,
    };
    vec![
        entry(0, LOW_RAM_END, E820_RAM),
        entry(BOOT_INFO_START, BOOT_INFO_END, E820_RESERVED),
        entry(HIMEM_START, mem_size, E820_RAM),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memmap_fits_its_slot() {
        assert!(MEMMAP_MAX_ENTRIES >= memmap(64 << 20).len());
    }

    #[test]
    fn memmap_is_sorted_and_keeps_boot_data_out_of_ram() {
        let m = memmap(64 << 20);
        for w in m.windows(2) {
            assert!(
                w[0].addr + w[0].size <= w[1].addr,
                "overlap or unsorted: {m:x?}"
            );
        }
        let in_ram = |gpa: u64| {
            m.iter()
                .any(|e| e.type_ == E820_RAM && e.addr <= gpa && gpa < e.addr + e.size)
        };
        for gpa in [START_INFO_GPA, MEMMAP_GPA, CMDLINE_GPA, BOOT_INFO_END - 1] {
            assert!(!in_ram(gpa), "{gpa:#x} is offered as RAM");
        }
        assert!(in_ram(HIMEM_START));
        assert!(in_ram((64 << 20) - 1));
        assert!(!in_ram(64 << 20));
        assert!(in_ram(0x1000), "the low RAM the kernel may use");
    }

    #[test]
    fn limits() {
        assert_eq!(MAX_MEM_MIB, 3072);
    }
}
