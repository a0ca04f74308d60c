//! The legacy backend: the CPU's own instructions, intercepted by the host directly.
//!
//! The port-IO, MSR, CPUID and HLT functions are `#[inline(never)]` on purpose: the raw
//! `in`/`out`/`rdmsr`/`wrmsr`/`cpuid`/`hlt` instructions then live only in this module's
//! symbols, which is what the host's disassembly check expects. They are generic over the
//! access type, so each is one instruction and a return. MMIO is a plain load or store, which
//! no platform forbids, and is inlined.

use crate::arch::insn::{self, CpuidResult, Fault};
use crate::io::{MmioValue, PioValue};
use core::sync::atomic::{AtomicU64, Ordering};
use protocol::access::Width;

/// Virtual address of GPA 0 (`va = gpa + PHYS_OFFSET`).
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);

/// Sets where GPA 0 is mapped (0 for the PVH identity map).
pub fn set_phys_offset(off: u64) {
    PHYS_OFFSET.store(off, Ordering::Relaxed);
}

/// Where GPA 0 is mapped.
pub fn phys_offset() -> u64 {
    PHYS_OFFSET.load(Ordering::Relaxed)
}

/// MMIO read: one load of the access width.
#[inline(always)]
pub fn mmio_read<T: MmioValue>(gpa: u64) -> T {
    let va = gpa.wrapping_add(PHYS_OFFSET.load(Ordering::Relaxed));
    // SAFETY: the I/O API checked that `gpa` is not RAM the kernel owns; the mapping covers
    // it (identity map of the low 4 GiB, or the loader's physical-memory map). A volatile
    // load of the exact width is the access the test asked for.
    unsafe { core::ptr::read_volatile(va as *const T) }
}

/// MMIO write: one store of the access width.
#[inline(always)]
pub fn mmio_write<T: MmioValue>(gpa: u64, v: T) {
    let va = gpa.wrapping_add(PHYS_OFFSET.load(Ordering::Relaxed));
    // SAFETY: as in `mmio_read`.
    unsafe { core::ptr::write_volatile(va as *mut T, v) }
}

/// IN of `T`'s width.
#[inline(never)]
pub fn pio_read<T: PioValue>(port: u16) -> T {
    // SAFETY: port IO has no memory-safety effect on the guest; the caller owns the port.
    let v = unsafe {
        match T::WIDTH {
            Width::B1 => u64::from(insn::inb(port)),
            Width::B2 => u64::from(insn::inw(port)),
            Width::B4 | Width::B8 => u64::from(insn::inl(port)),
        }
    };
    T::from_u64(v)
}

/// OUT of `T`'s width.
#[inline(never)]
pub fn pio_write<T: PioValue>(port: u16, v: T) {
    let v = v.to_u64();
    // SAFETY: as in `pio_read`.
    unsafe {
        match T::WIDTH {
            Width::B1 => insn::outb(port, v as u8),
            Width::B2 => insn::outw(port, v as u16),
            Width::B4 | Width::B8 => insn::outl(port, v as u32),
        }
    }
}

/// `rep outsb`: all of `bytes` to `port` in one instruction (one exit under KVM).
#[inline(never)]
pub fn pio_write_bytes(port: u16, bytes: &[u8]) {
    // SAFETY: as in `pio_read`; OUTSB only reads `bytes` (RSI..RSI+RCX), which is a live slice.
    unsafe { insn::rep_outsb(port, bytes) }
}

/// CPUID (the one raw-CPUID wrapper). On a legacy VM it never faults; if it does, the
/// platform is not what detection found, and the vector comes back as the error.
#[inline(never)]
pub fn cpuid(leaf: u32, subleaf: u32) -> Result<CpuidResult, super::HostError> {
    insn::cpuid(leaf, subleaf).map_err(|f| {
        super::HostError::refused(
            "raw CPUID raised an exception (status = vector): not a legacy VM",
            u64::from(f.vector),
        )
    })
}

/// RDMSR under the fixup table.
#[inline(never)]
pub fn rdmsr(msr: u32) -> Result<u64, Fault> {
    insn::rdmsr_safe(msr)
}

/// WRMSR under the fixup table.
///
/// # Safety
/// As [`crate::platform::wrmsr`].
#[inline(never)]
pub unsafe fn wrmsr(msr: u32, v: u64) -> Result<(), Fault> {
    // SAFETY: per the function contract.
    unsafe { insn::wrmsr_safe(msr, v) }
}

/// CLI; HLT forever (the exit port did not end the VM).
#[inline(never)]
pub fn stop_forever() -> ! {
    insn::cli_hlt_loop()
}

/// STI; HLT; CLI.
#[inline(never)]
pub fn halt() {
    insn::sti_hlt_cli();
}

/// `n` raw 4-byte INs from `port`: the exit floor the benchmark compares the API against.
#[inline(never)]
pub fn raw_pio_read_loop(port: u16, n: u64) {
    for _ in 0..n {
        // SAFETY: as in `pio_read`.
        core::hint::black_box(unsafe { insn::inl(port) });
    }
}
