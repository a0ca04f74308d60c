//! The library's trap entry: the environment's interrupt stubs save every GPR into a
//! [`TrapFrame`] and call [`trap`] (cvmprobe's kernel: `kernel/src/arch/idt.rs`; a KVM
//! selftest: kvm_util's `route_exception`, whose `struct ex_regs` is the frame's start).
//!
//! The handlers get the whole register file (not the `x86-interrupt` ABI's partial frame)
//! because the #VE/#VC MMIO emulation must read and write guest GPRs.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
pub use protocol::abi::TrapFrame;
pub use protocol::x86::{IRQ_BASE, IRQ_COUNT, SPURIOUS_VECTOR};

/// #VE (Intel SDM vol. 3A 6.15): TDX's virtualization exception.
const VECTOR_VE: u8 = protocol::x86::vector::VE;
/// #VC (AMD APM vol. 2 15.35.5): SEV-ES's VMM communication exception.
const VECTOR_VC: u8 = protocol::x86::vector::VC;

/// Count of interrupts taken per IRQ vector (index = vector - IRQ_BASE).
static IRQ_COUNTS: [AtomicU64; IRQ_COUNT as usize] =
    [const { AtomicU64::new(0) }; IRQ_COUNT as usize];

/// How many interrupts arrived on `vector` so far.
pub fn irq_count(vector: u8) -> u64 {
    IRQ_COUNTS[usize::from(vector - IRQ_BASE)].load(Ordering::Relaxed)
}

/// Names of the exception vectors, for reports.
pub fn vector_name(v: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#MF(9)", "#TS", "#NP",
        "#SS", "#GP", "#PF", "(15)", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "(22)", "(23)",
        "(24)", "(25)", "(26)", "(27)", "#HV", "#VC", "#SX", "(31)",
    ];
    NAMES.get(v as usize).copied().unwrap_or("IRQ")
}

/// Traps being handled now (a #VE can arrive inside an interrupt handler), and
/// `platform::request_seq` when the outermost one arrived.
static TRAP_DEPTH: AtomicU32 = AtomicU32::new(0);
static OUTER_ENTRY_REQUEST: AtomicU64 = AtomicU64::new(0);

/// One trap being handled; leaving it (returning, or unwinding the guard) ends it.
struct Nesting {
    outer_request: u64,
}

impl Nesting {
    fn enter() -> Self {
        if TRAP_DEPTH.fetch_add(1, Ordering::Relaxed) == 0 {
            OUTER_ENTRY_REQUEST.store(crate::platform::request_seq(), Ordering::Relaxed);
        }
        Self {
            outer_request: OUTER_ENTRY_REQUEST.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Nesting {
    fn drop(&mut self) {
        TRAP_DEPTH.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Handles one trap: the environment's stub calls it with the saved state; returning resumes
/// the interrupted code (possibly changed: RIP past an emulated instruction, registers).
/// Exceptions, the device interrupts `IRQ_BASE..IRQ_BASE + IRQ_COUNT` and the spurious vector
/// must all come here.
pub extern "C" fn trap(frame: &mut TrapFrame) {
    // Requests made in here must not rename the answer the interrupted code is checking.
    let _answering = crate::platform::AnsweringGuard::new();
    // The request an event followed, for a refusal's note: the last one before the outermost
    // trap (an event the host injects with an interrupt pending can arrive inside that
    // interrupt's handler, after its EOI request).
    let nesting = Nesting::enter();
    let vector = frame.vector as u8;
    if vector == SPURIOUS_VECTOR {
        return;
    }
    if (IRQ_BASE..IRQ_BASE + IRQ_COUNT).contains(&vector) {
        IRQ_COUNTS[usize::from(vector - IRQ_BASE)].fetch_add(1, Ordering::Relaxed);
        crate::platform::end_of_interrupt(vector);
        return;
    }
    // An instruction that may fault (a probe under the fixup table) resumes at its fixup,
    // whatever the platform: the wrapper gets the fault as an error. A #VE is consumed with
    // TDG.VP.VEINFO.GET first: its information stays valid until read, and the TDX module
    // turns the next #VE into a #DF while it is (`tdx_inject_ve()`).
    if let Some(resume) = super::fixup::search(frame.rip) {
        let code = if vector == VECTOR_VE {
            crate::platform::tdx::consume_ve_for_fixup()
        } else {
            frame.error_code
        };
        super::fixup::record(vector, code);
        frame.rip = resume;
        return;
    }
    // The request an event followed (a spurious one names it; a #VE's own TDG.VP.VEINFO.GET
    // comes after).
    let entry_request = nesting.outer_request;
    match (vector, crate::platform::kind()) {
        (VECTOR_VE, protocol::platform::PlatformKind::Tdx) => {
            if let Err(e) = crate::platform::tdx::handle_ve(frame) {
                crate::platform::emulate::refuse("#VE", frame, &e, entry_request);
            }
            return;
        }
        (VECTOR_VC, protocol::platform::PlatformKind::SevEs) => {
            if let Err(e) = crate::platform::sev_es::handle_vc(frame) {
                crate::platform::emulate::refuse("#VC", frame, &e, entry_request);
            }
            return;
        }
        _ => {}
    }
    crate::report::unexpected_exception(frame)
}
