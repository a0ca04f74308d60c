//! GDT and TSS with separate IST stacks for the faults that must not reuse a broken stack.

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot (1-based in the IDT, 0-based in the TSS) for #DF.
pub const IST_DOUBLE_FAULT: u16 = 0;
/// IST slot for NMI.
pub const IST_NMI: u16 = 1;
/// IST slot for #MC.
pub const IST_MACHINE_CHECK: u16 = 2;
/// IST slot for #VC (it can arrive on any instruction, including with a bad stack).
pub const IST_VC: u16 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_SIZE]);

static mut IST_STACKS: [Stack; 4] = [const { Stack([0; IST_STACK_SIZE]) }; 4];

struct Tables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
    code: SegmentSelector,
    data: SegmentSelector,
    tss_sel: SegmentSelector,
}

static mut TABLES: Tables = Tables {
    gdt: GlobalDescriptorTable::new(),
    tss: TaskStateSegment::new(),
    code: SegmentSelector(0),
    data: SegmentSelector(0),
    tss_sel: SegmentSelector(0),
};

/// The kernel code selector (for IDT gates).
pub fn code_selector() -> SegmentSelector {
    // SAFETY: written once by `init` before any reader; read-only after.
    unsafe { (*(&raw const TABLES)).code }
}

/// Builds and loads the GDT and TSS, reloads the segment registers.
pub fn init() {
    // SAFETY: runs once on the boot CPU before interrupts are enabled and before anything
    // else touches TABLES or IST_STACKS; afterwards both are only read by the CPU.
    let t = unsafe { &mut *(&raw mut TABLES) };
    for (i, _) in [(); 4].iter().enumerate() {
        // SAFETY: taking the address of a static without creating a reference.
        let base = unsafe { (&raw const IST_STACKS[i]) as u64 };
        t.tss.interrupt_stack_table[i] = VirtAddr::new(base + IST_STACK_SIZE as u64);
    }
    t.code = t.gdt.append(Descriptor::kernel_code_segment());
    t.data = t.gdt.append(Descriptor::kernel_data_segment());
    // SAFETY: `t.tss` lives in a static for the rest of the run.
    let tss: &'static TaskStateSegment = unsafe { &*(&raw const TABLES.tss) };
    t.tss_sel = t.gdt.append(Descriptor::tss_segment(tss));
    // SAFETY: same static; the GDT outlives every use of its selectors.
    let gdt: &'static GlobalDescriptorTable = unsafe { &*(&raw const TABLES.gdt) };
    gdt.load();
    // SAFETY: the selectors index valid descriptors of the GDT just loaded.
    unsafe {
        CS::set_reg(t.code);
        DS::set_reg(t.data);
        ES::set_reg(t.data);
        SS::set_reg(t.data);
        load_tss(t.tss_sel);
    }
}
