//! The kernel's IDT: one asm stub per vector saves every GPR into a
//! [`protocol::abi::TrapFrame`] (kvm_util's order, so the guest library's trap entry takes
//! the same frame from either environment) and calls the library's [`cvmprobe_guest::trap`].

use core::arch::global_asm;
use protocol::x86::{IRQ_BASE, IRQ_COUNT, SPURIOUS_VECTOR};
use x86_64::VirtAddr;
use x86_64::structures::idt::InterruptDescriptorTable;

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
    push r15
    push r14
    push r13
    push r12
    push r11
    push r10
    push r9
    push r8
    push rdi
    push rsi
    push rbp
    push rbx
    push rdx
    push rcx
    push rax
    mov rdi, rsp
    cld
    call {dispatch}
    pop rax
    pop rcx
    pop rdx
    pop rbx
    pop rbp
    pop rsi
    pop rdi
    pop r8
    pop r9
    pop r10
    pop r11
    pop r12
    pop r13
    pop r14
    pop r15
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
    dispatch = sym cvmprobe_guest::trap,
);

unsafe extern "C" {
    static trap_stub_table: [u64; 48];
    fn trap_stub_255();
}

struct IdtCell(core::cell::UnsafeCell<core::mem::MaybeUninit<InterruptDescriptorTable>>);

// SAFETY: filled once by `init` on the boot CPU with interrupts off; read only by the CPU after.
unsafe impl Sync for IdtCell {}

/// In `.bss`: a `const` table (`InterruptDescriptorTable::new()`, whose empty entries are not
/// all zero bytes) would put 4 KiB in `.data`, in the ELF. An all-zero entry is a valid
/// value (integers only) and, like `new()`'s, not present: a vector `init` leaves alone
/// faults on delivery (#NP or #GP, which have stubs) either way.
static IDT: IdtCell = IdtCell(core::cell::UnsafeCell::new(core::mem::MaybeUninit::zeroed()));

fn stub(v: usize) -> VirtAddr {
    // SAFETY: `trap_stub_table` is a read-only table of 48 code addresses built by the asm above.
    VirtAddr::new(unsafe { trap_stub_table[v] })
}

/// Fills and loads the IDT.
pub fn init() {
    use super::gdt;
    // SAFETY: runs once on the boot CPU with interrupts off, before any other access to IDT;
    // the zeroed table is a valid one (see `IDT`), so nothing is written before it is filled
    // (the 4 KiB of `new()` cost ~1,300 emulated instructions at boot).
    let idt: &'static mut InterruptDescriptorTable = unsafe { (*IDT.0.get()).assume_init_mut() };
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
