//! The exception-fixup table: instructions allowed to fault, and where to resume.
//!
//! A wrapper that may fault (`rdmsr_safe`) emits an entry `(faulting RIP, resume RIP)` into
//! the `cvmprobe_ex_table` section; the trap handler looks the faulting RIP up here, records the
//! fault, and resumes at the fixup code instead of reporting an unexpected exception.

use super::insn::Fault;
use core::sync::atomic::{AtomicU64, Ordering};

#[repr(C)]
struct Entry {
    insn: u64,
    fixup: u64,
}

unsafe extern "C" {
    // Linkers define these for an output section whose name is a C identifier: GNU ld and
    // lld for the KVM selftest's ordinary link, the kernel's link script explicitly.
    static __start_cvmprobe_ex_table: Entry;
    static __stop_cvmprobe_ex_table: Entry;
}

fn table() -> &'static [Entry] {
    // SAFETY: the linker brackets `cvmprobe_ex_table` with these symbols; the section holds
    // only `Entry`-shaped pairs (8-byte aligned quads) and is read-only.
    unsafe {
        let start = &raw const __start_cvmprobe_ex_table;
        let end = &raw const __stop_cvmprobe_ex_table;
        let n = (end as usize - start as usize) / core::mem::size_of::<Entry>();
        core::slice::from_raw_parts(start, n)
    }
}

static LAST_VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);
static LAST_ERROR: AtomicU64 = AtomicU64::new(0);

/// The resume address for a fault at `rip`, if the instruction there may fault.
pub fn search(rip: u64) -> Option<u64> {
    table().iter().find(|e| e.insn == rip).map(|e| e.fixup)
}

/// Records the fault a fixup resumes from, for [`take_fault`]: the vector and the error
/// code (for a #VE, which has none, the exit reason TDG.VP.VEINFO.GET reported).
pub fn record(vector: u8, error_code: u64) {
    LAST_VECTOR.store(u64::from(vector), Ordering::Relaxed);
    LAST_ERROR.store(error_code, Ordering::Relaxed);
}

/// The fault recorded by the last fixup (called by the wrapper that resumed).
pub fn take_fault() -> Fault {
    let v = LAST_VECTOR.swap(u64::MAX, Ordering::Relaxed);
    Fault {
        vector: v as u8,
        error_code: LAST_ERROR.load(Ordering::Relaxed),
    }
}
