//! x86_64 CPU setup: GDT/TSS with IST stacks, the IDT whose stubs call the guest library's
//! trap entry, and the identity map's C-bit and shared-page changes.

pub mod gdt;
pub mod idt;
pub mod paging;

/// Installs the GDT, TSS and IDT. Must run first in `kmain`: detection probes MSRs under
/// the fixup table.
pub fn init() {
    gdt::init();
    idt::init();
}
