//! The UEFI hand-off entry: where `cvmprobe.efi` (and the built-in VMM's `efi-handoff` boot,
//! which rebuilds the same state) jumps after ExitBootServices.
//!
//! Entry state (`protocol::efi`): 64-bit mode, at the entry's physical address under the
//! firmware's identity page tables (4- or 5-level: TDVF runs with CR4.LA57), interrupts off,
//! the firmware's GDT, IDT and stack, RDI = GPA of the [`protocol::efi::Handoff`] block. On
//! SEV-ES the firmware maps private memory with the C-bit; on TDX private memory has the shared
//! bit clear.
//!
//! Until the kernel's own IDT is installed (`arch::init` in `kmain`) an exception goes to the
//! firmware's handlers, or nowhere (the VMM's rebuild has an empty IDT: a triple fault). So
//! nothing here runs an intercepted instruction (CPUID, MSRs, port IO, HLT): the stub only
//! reads CR4, writes its own tables and CR3, loads its GDT and stack. It reads the encryption
//! mask and the end of private low memory from the block and ORs the mask into its static
//! tables exactly as `protocol::paging::identity_pd_entry` says (the `boot_pd` entries below
//! that end, every table pointer and CR3; Linux does the same with `__sme_pa` in
//! `__startup_64`), before anything reads them through those tables. With CR4.LA57 it enters
//! through `boot_pml5`, whose entries 0 and 511 point at `boot_pml4`. Then it jumps to its link
//! address and calls [`efi_main`].

use super::{BootParams, BootPath, MemoryKind, MemoryRegion};
use core::arch::global_asm;
use protocol::efi::{self, Handoff, RegionKind, handoff_off};

/// CR4.LA57 (Intel SDM vol. 3A 2.5: 5-level paging).
const CR4_LA57_BIT: u32 = 12;
/// Entries of `boot_pd` (4 x 512: the low 4 GiB in 2 MiB pages).
const PD_ENTRIES: u64 = 2048;
/// The PML4 and PML5 slot of the kernel's link address (0xffffffff80000000) and the PDPT slot
/// of `boot_pdpt_high` that maps it.
const TOP_SLOT: u64 = 511;
const HIGH_PDPT_SLOT: u64 = 510;

global_asm!(
    r#"
    /* The entry symbol is protocol::efi::ENTRY_SYMBOL (the loader and the VMM find it by
       name; tests/efi.rs checks the ELF has it). */
    .section .text.efi_entry, "ax"
    .code64
    .global cvmprobe_efi_entry
cvmprobe_efi_entry:
    cli
    cld
    mov %rdi, %r12
    mov {enc}(%rdi), %r13
    mov {end}(%rdi), %rcx
    add $0x1fffff, %rcx
    shr $21, %rcx
    cmp ${pd_entries}, %rcx
    jbe 1f
    mov ${pd_entries}, %rcx
1:
    test %r13, %r13
    jz 3f
    lea boot_pd(%rip), %rdi
    xor %edx, %edx
2:
    cmp %rcx, %rdx
    jae 4f
    or %r13, (%rdi,%rdx,8)
    inc %rdx
    jmp 2b
4:
    lea boot_pml4(%rip), %rax
    or %r13, (%rax)
    or %r13, {top}*8(%rax)
    lea boot_pml5(%rip), %rax
    or %r13, (%rax)
    or %r13, {top}*8(%rax)
    lea boot_pdpt(%rip), %rax
    or %r13, (%rax)
    or %r13, 8(%rax)
    or %r13, 16(%rax)
    or %r13, 24(%rax)
    lea boot_pdpt_high(%rip), %rax
    or %r13, {high}*8(%rax)
3:
    xor %r14d, %r14d
    mov %cr4, %rax
    bt ${la57}, %rax
    jnc 5f
    mov $1, %r14d
    lea boot_pml5(%rip), %rax
    jmp 6f
5:
    lea boot_pml4(%rip), %rax
6:
    or %r13, %rax
    mov %rax, %cr3
    movabs $8f, %rax
    jmp *%rax
8:
    movabs $boot_stack_top, %rsp
    lgdt boot_gdt_ptr64
    pushq $0x08
    movabs $7f, %rax
    pushq %rax
    lretq
7:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov %r12, %rdi
    mov %r14, %rsi
    movabs ${main}, %rax
    call *%rax
    ud2

    /* 5-level root for firmware that runs with CR4.LA57: the low identity map and the kernel's
       link address both go through PML5 slots 0 and 511 to the 4-level tables. */
    .section .data.pagetables, "aw"
    .balign 4096
    .global boot_pml5
boot_pml5:
    .quad boot_pml4 - 0xffffffff80000000 + 0x3
    .fill 510, 8, 0
    .quad boot_pml4 - 0xffffffff80000000 + 0x3
    .text
"#,
    enc = const handoff_off::ENC_MASK,
    end = const handoff_off::PRIVATE_END,
    pd_entries = const PD_ENTRIES,
    top = const TOP_SLOT,
    high = const HIGH_PDPT_SLOT,
    la57 = const CR4_LA57_BIT,
    main = sym efi_main,
    options(att_syntax)
);

unsafe extern "C" {
    /// Physical address of the end of the kernel image (linker.ld).
    static __kernel_end_phys: u8;
}

/// Rust side of the hand-off: the kernel's own tables, its stack and GDT; fills
/// [`BootParams`] from the block and calls `kmain`.
extern "C" fn efi_main(handoff_gpa: u64, la57: u64) -> ! {
    let params = super::params_mut();
    params.five_level = la57 != 0;
    params.path = BootPath::Efi;
    params.phys_offset = 0;
    // The loader put the image at its physical addresses, in memory the map marks in use.
    params.image_end_gpa = (&raw const __kernel_end_phys) as u64;
    // SAFETY: the loader wrote the block at this GPA below 4 GiB (identity mapped); it is only
    // read, and its magic and version are checked before anything else is used.
    let h = unsafe { core::ptr::read_unaligned(handoff_gpa as usize as *const Handoff) };
    if let Err(e) = h.check() {
        super::early_fail(e.describe().as_bytes());
    }
    params.enc_mask = h.enc_mask;
    if h.cmdline_gpa != 0 && h.cmdline_gpa < efi::FOUR_GIB {
        let n = (h.cmdline_len as usize).min(BootParams::CMDLINE_MAX);
        // SAFETY: the loader wrote `cmdline_len` bytes at this GPA (identity mapped); at most
        // CMDLINE_MAX of them are read.
        let c = unsafe { core::slice::from_raw_parts(h.cmdline_gpa as usize as *const u8, n) };
        params.set_cmdline(c);
    }
    if h.memmap_gpa != 0 && h.memmap_gpa.saturating_add(h.memmap_size) <= efi::FOUR_GIB {
        // SAFETY: the loader wrote `memmap_size` bytes of descriptors at this GPA (identity
        // mapped) and nothing writes them while the kernel reads them.
        let map = unsafe {
            core::slice::from_raw_parts(h.memmap_gpa as usize as *const u8, h.memmap_size as usize)
        };
        for r in efi::regions(map, h.desc_size as usize) {
            params.push_region(MemoryRegion {
                base: r.base,
                len: r.len,
                kind: match r.kind {
                    RegionKind::Ram => MemoryKind::Ram,
                    RegionKind::RamInUse => MemoryKind::RamInUse,
                    RegionKind::Reserved => MemoryKind::Reserved,
                },
            });
        }
    }
    crate::kmain()
}
