//! PVH entry: the Xen ELF note, the 32-bit stub that enters long mode, and the parse of
//! `hvm_start_info` into [`BootParams`].
//!
//! QEMU (`-kernel kernel.elf`) and the built-in VMM find the 32-bit entry through the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note and start the vCPU there in 32-bit protected mode, paging
//! off, with EBX = GPA of `struct hvm_start_info` (Xen public/arch-x86/hvm/start_info.h).
//! The stub runs at its physical address (the kernel is linked in the top 2 GiB, see
//! linker.ld) and needs no runtime page-table build: the identity map of the first 4 GiB and
//! the kernel's high mapping are static tables in `.data.pagetables` (2 MiB pages), so
//! entering long mode costs a handful of instructions.
//!
//! The loaders zero `.bss` (QEMU's ELF loader and the bootloader zero-fill `p_memsz`; the
//! built-in VMM loads into fresh anonymous memory), so the stub does not.

use super::{BootParams, BootPath, MemoryKind, MemoryRegion};
use core::arch::global_asm;

/// `XEN_ELFNOTE_PHYS32_ENTRY` (Xen public/elfnote.h).
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// `hvm_start_info.magic` (Xen public/arch-x86/hvm/start_info.h).
const HVM_START_MAGIC: u32 = 0x336e_c578;
/// `hvm_memmap_table_entry.type` for usable RAM (E820 type 1).
const HVM_MEMMAP_TYPE_RAM: u32 = 1;

global_asm!(
    r#"
    .set KERNEL_VMA, 0xffffffff80000000

    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long {note_type}
    .asciz "Xen"
    .balign 4
    .quad pvh_start32 - KERNEL_VMA
    .balign 4

    /* Runs at its physical address with paging off: every address is `symbol - KERNEL_VMA`. */
    .section .text.boot32, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi
    mov $(boot_pml4 - KERNEL_VMA), %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0
    lgdt (boot_gdt_ptr - KERNEL_VMA)
    ljmp $0x08, $(pvh_start64_low - KERNEL_VMA)

    .code64
pvh_start64_low:
    /* Still at the physical address (identity map): move to the kernel's own addresses. */
    movabs $pvh_start64, %rax
    jmp *%rax
pvh_start64:
    lgdt boot_gdt_ptr64
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    movabs $boot_stack_top, %rsp
    mov %esi, %edi
    movabs ${pvh_main}, %rax
    call *%rax
    ud2

    .section .rodata.boot_gdt, "a"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt - KERNEL_VMA
    .balign 8
    .global boot_gdt_ptr64
boot_gdt_ptr64:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    /* Identity map of the low 4 GiB (2 MiB pages), and the top 2 GiB -> physical 0..1 GiB
       for the kernel image, sharing the first page directory. */
    .section .data.pagetables, "aw"
    .balign 4096
    .global boot_pml4
boot_pml4:
    .quad boot_pdpt - KERNEL_VMA + 0x3
    .fill 510, 8, 0
    .quad boot_pdpt_high - KERNEL_VMA + 0x3
    .global boot_pdpt
boot_pdpt:
    .quad boot_pd - KERNEL_VMA + 0x0003
    .quad boot_pd - KERNEL_VMA + 0x1003
    .quad boot_pd - KERNEL_VMA + 0x2003
    .quad boot_pd - KERNEL_VMA + 0x3003
    .fill 508, 8, 0
    .global boot_pdpt_high
boot_pdpt_high:
    .fill 510, 8, 0
    .quad boot_pd - KERNEL_VMA + 0x0003
    .quad 0
    .global boot_pd
boot_pd:
    .set pvh_page, 0
    .rept 2048
    .quad (pvh_page << 21) | 0x83
    .set pvh_page, pvh_page + 1
    .endr

    .section .bss.boot_stack, "aw", @nobits
    .balign 16
boot_stack:
    .skip 0x10000
    .global boot_stack_top
boot_stack_top:
    .text
"#,
    note_type = const XEN_ELFNOTE_PHYS32_ENTRY,
    pvh_main = sym pvh_main,
    options(att_syntax)
);

unsafe extern "C" {
    /// Physical address of the end of the kernel image (linker.ld).
    static __kernel_end_phys: u8;
}

/// `struct hvm_start_info` (version 1), the fields read here.
#[repr(C)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

const _: () = {
    assert!(core::mem::offset_of!(HvmStartInfo, cmdline_paddr) == 24);
    assert!(core::mem::offset_of!(HvmStartInfo, memmap_paddr) == 40);
    assert!(core::mem::offset_of!(HvmStartInfo, memmap_entries) == 48);
};

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy)]
struct HvmMemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

const _: () = assert!(core::mem::size_of::<HvmMemmapEntry>() == 24);

/// Rust side of the PVH entry: 64-bit mode, identity-mapped low 4 GiB, boot stack.
extern "C" fn pvh_main(start_info_gpa: u32) -> ! {
    let params = super::params_mut();
    params.path = BootPath::Pvh;
    params.phys_offset = 0;
    // The PVH loader put the image at its load (physical) addresses.
    params.image_end_gpa = (&raw const __kernel_end_phys) as u64;
    // SAFETY: the loader put a start-info block at this GPA; the low 4 GiB are identity
    // mapped, and the block is only read. The magic is checked before anything else is used.
    let info = unsafe { core::ptr::read_unaligned(start_info_gpa as usize as *const HvmStartInfo) };
    if info.magic != HVM_START_MAGIC {
        super::early_fail(b"PVH start info has a bad magic");
    }
    if info.cmdline_paddr != 0 && info.cmdline_paddr < (1 << 32) {
        // SAFETY: the loader wrote a NUL-terminated string at this GPA (identity mapped);
        // at most `BootParams::CMDLINE_MAX` bytes are read.
        unsafe { params.set_cmdline_from_cstr(info.cmdline_paddr as usize as *const u8) };
    }
    let n = info.memmap_entries as usize;
    if info.memmap_paddr != 0 && info.memmap_paddr < (1 << 32) {
        for i in 0..n.min(BootParams::MEMORY_MAX) {
            // SAFETY: `memmap_entries` entries follow `memmap_paddr` (identity mapped).
            let e = unsafe {
                core::ptr::read_unaligned(
                    (info.memmap_paddr as usize as *const HvmMemmapEntry).add(i),
                )
            };
            let kind = if e.kind == HVM_MEMMAP_TYPE_RAM {
                MemoryKind::Ram
            } else {
                MemoryKind::Reserved
            };
            params.push_region(MemoryRegion {
                base: e.addr,
                len: e.size,
                kind,
            });
        }
    }
    crate::kmain()
}
