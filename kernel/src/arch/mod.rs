//! x86_64 CPU setup: GDT/TSS with IST stacks, the IDT and its trap entry, the exception
//! fixup table, and the raw instruction wrappers (used only by the legacy backend and the
//! platform detection probe).

pub mod fixup;
pub mod gdt;
pub mod insn;
pub mod paging;
pub mod trap;

/// Installs the GDT, TSS and IDT. Must run first in `kmain`: detection probes MSRs under
/// the fixup table.
pub fn init() {
    gdt::init();
    trap::init();
}
