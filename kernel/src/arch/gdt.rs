//! GDT and TSS with separate IST stacks for the faults that must not reuse a broken stack.

use core::cell::UnsafeCell;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot (0-based in the TSS) for #DF.
pub const IST_DOUBLE_FAULT: u16 = 0;
/// IST slot for NMI.
pub const IST_NMI: u16 = 1;
/// IST slot for #MC.
pub const IST_MACHINE_CHECK: u16 = 2;
/// IST slot for #VC (it can arrive on any instruction, including with a bad stack).
pub const IST_VC: u16 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;
const IST_STACKS: usize = 4;

#[repr(C, align(16))]
struct Stacks([[u8; IST_STACK_SIZE]; IST_STACKS]);

struct Tables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
}

struct TablesCell(UnsafeCell<Tables>);

// SAFETY: written once by `init` on the boot CPU before interrupts are enabled; afterwards
// only the CPU reads it (GDTR, TR, IST pointers).
unsafe impl Sync for TablesCell {}

static TABLES: TablesCell = TablesCell(UnsafeCell::new(Tables {
    gdt: GlobalDescriptorTable::new(),
    tss: TaskStateSegment::new(),
}));

struct StacksCell(UnsafeCell<Stacks>);

// SAFETY: only the CPU uses the stacks (through the IST pointers); Rust code takes their
// addresses once in `init`.
unsafe impl Sync for StacksCell {}

/// Kept apart from `TABLES` so that 64 KiB of zeros land in `.bss`, not in the ELF.
static STACKS: StacksCell = StacksCell(UnsafeCell::new(Stacks([[0; IST_STACK_SIZE]; IST_STACKS])));

/// Builds and loads the GDT and TSS, reloads the segment registers.
pub fn init() {
    // SAFETY: runs once on the boot CPU before anything else touches TABLES; the tables
    // live in a static for the rest of the run, as GDTR and TR require.
    let t: &'static mut Tables = unsafe { &mut *TABLES.0.get() };
    let stacks = STACKS.0.get() as u64;
    // Indexed: the TSS is packed, so its array cannot be borrowed for an iterator.
    #[allow(clippy::needless_range_loop)]
    for i in 0..IST_STACKS {
        t.tss.interrupt_stack_table[i] = VirtAddr::new(stacks + ((i + 1) * IST_STACK_SIZE) as u64);
    }
    let code = t.gdt.append(Descriptor::kernel_code_segment());
    let data = t.gdt.append(Descriptor::kernel_data_segment());
    let tss: &'static TaskStateSegment = &t.tss;
    let tss_sel = t.gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = &t.gdt;
    gdt.load();
    // SAFETY: the selectors index valid descriptors of the GDT just loaded.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss_sel);
    }
}
