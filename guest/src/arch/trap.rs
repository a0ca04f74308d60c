//! Trap entry: one asm stub per vector saves every GPR into a [`TrapFrame`] and calls
//! [`trap_dispatch`]; the IDT points at the stubs.
//!
//! The handlers get the whole register file (not the `x86-interrupt` ABI's partial frame)
//! because the #VE/#VC MMIO emulation must read and write guest GPRs.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use x86_64::VirtAddr;
use x86_64::structures::idt::InterruptDescriptorTable;

/// First vector used for device interrupts.
pub const IRQ_BASE: u8 = 32;
/// Number of device-interrupt vectors with stubs (32..48).
pub const IRQ_COUNT: u8 = 16;
/// #VE (Intel SDM vol. 3A 6.15): TDX's virtualization exception.
const VECTOR_VE: u8 = protocol::x86::vector::VE;
/// #VC (AMD APM vol. 2 15.35.5): SEV-ES's VMM communication exception.
const VECTOR_VC: u8 = protocol::x86::vector::VC;
/// Spurious-interrupt vector (LAPIC SVR); ignored.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Saved state of the interrupted code, in stack order (lowest address first).
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rax: u64,
    /// Pushed by the stub.
    pub vector: u64,
    /// Pushed by the CPU, or 0 by the stub for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = {
    assert!(core::mem::offset_of!(TrapFrame, rax) == 14 * 8);
    assert!(core::mem::offset_of!(TrapFrame, vector) == 15 * 8);
    assert!(core::mem::offset_of!(TrapFrame, rip) == 17 * 8);
    assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);
};

global_asm!(
    r#"
    .macro TRAP_NOERR n
    .balign 16
    .global trap_stub_\n
trap_stub_\n:
    push 0
    push \n
    jmp trap_common
    .endm

    .macro TRAP_ERR n
    .balign 16
    .global trap_stub_\n
trap_stub_\n:
    push \n
    jmp trap_common
    .endm

    .text
    .irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    TRAP_NOERR \n
    .endr
    .irp n, 8,10,11,12,13,14,17,21,29,30
    TRAP_ERR \n
    .endr
    .irp n, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,255
    TRAP_NOERR \n
    .endr

trap_common:
    push rax
    push rcx
    push rdx
    push rbx
    push rbp
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call {dispatch}
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rbp
    pop rbx
    pop rdx
    pop rcx
    pop rax
    add rsp, 16
    iretq

    .section .rodata.trap_stubs, "a"
    .balign 8
    .global trap_stub_table
trap_stub_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    .quad trap_stub_\n
    .endr
    .text
"#,
    dispatch = sym trap_dispatch,
);

unsafe extern "C" {
    static trap_stub_table: [u64; 48];
    fn trap_stub_255();
}

struct IdtCell(core::cell::UnsafeCell<InterruptDescriptorTable>);

// SAFETY: filled once by `init` on the boot CPU with interrupts off; read only by the CPU after.
unsafe impl Sync for IdtCell {}

static IDT: IdtCell = IdtCell(core::cell::UnsafeCell::new(InterruptDescriptorTable::new()));

fn stub(v: usize) -> VirtAddr {
    // SAFETY: `trap_stub_table` is a read-only table of 48 code addresses built by the asm above.
    VirtAddr::new(unsafe { trap_stub_table[v] })
}

/// Fills and loads the IDT.
pub fn init() {
    use super::gdt;
    // SAFETY: runs once on the boot CPU with interrupts off, before any other access to IDT.
    let idt: &'static mut InterruptDescriptorTable = unsafe { &mut *IDT.0.get() };
    // SAFETY: every address is one of our stubs, which save state, call `trap_dispatch` and
    // return with IRETQ; IST indexes name stacks set up in `gdt::init`.
    unsafe {
        idt.divide_error.set_handler_addr(stub(0));
        idt.debug.set_handler_addr(stub(1));
        idt.non_maskable_interrupt
            .set_handler_addr(stub(2))
            .set_stack_index(gdt::IST_NMI);
        idt.breakpoint.set_handler_addr(stub(3));
        idt.overflow.set_handler_addr(stub(4));
        idt.bound_range_exceeded.set_handler_addr(stub(5));
        idt.invalid_opcode.set_handler_addr(stub(6));
        idt.device_not_available.set_handler_addr(stub(7));
        idt.double_fault
            .set_handler_addr(stub(8))
            .set_stack_index(gdt::IST_DOUBLE_FAULT);
        idt.invalid_tss.set_handler_addr(stub(10));
        idt.segment_not_present.set_handler_addr(stub(11));
        idt.stack_segment_fault.set_handler_addr(stub(12));
        idt.general_protection_fault.set_handler_addr(stub(13));
        idt.page_fault.set_handler_addr(stub(14));
        idt.x87_floating_point.set_handler_addr(stub(16));
        idt.alignment_check.set_handler_addr(stub(17));
        idt.machine_check
            .set_handler_addr(stub(18))
            .set_stack_index(gdt::IST_MACHINE_CHECK);
        idt.simd_floating_point.set_handler_addr(stub(19));
        idt.virtualization.set_handler_addr(stub(20));
        idt.cp_protection_exception.set_handler_addr(stub(21));
        idt.hv_injection_exception.set_handler_addr(stub(28));
        idt.vmm_communication_exception
            .set_handler_addr(stub(29))
            .set_stack_index(gdt::IST_VC);
        idt.security_exception.set_handler_addr(stub(30));
        for v in IRQ_BASE..IRQ_BASE + IRQ_COUNT {
            idt[v].set_handler_addr(stub(usize::from(v)));
        }
        idt[SPURIOUS_VECTOR].set_handler_addr(VirtAddr::new(trap_stub_255 as *const () as u64));
    }
    let idt: &'static InterruptDescriptorTable = idt;
    idt.load();
}

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

/// Called by `trap_common` with the saved state; returning resumes it (possibly changed).
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
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
