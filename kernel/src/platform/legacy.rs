//! The legacy backend: the CPU's own instructions, intercepted by the host directly.
//!
//! The access functions are `#[inline(never)]` on purpose: the raw `in`/`out`/`rdmsr`/
//! `wrmsr`/`cpuid`/`hlt` instructions then live only in this module's symbols, which is what
//! the host's disassembly check expects.

use crate::arch::insn::{self, CpuidResult, Fault};
use crate::platform::HostError;
use protocol::access::Width;

/// State of the legacy backend.
pub struct Legacy {
    /// Virtual address of GPA 0.
    phys_offset: u64,
}

impl Legacy {
    /// The backend used before detection (PVH identity map).
    pub const EARLY: Self = Self { phys_offset: 0 };

    /// The backend for a kernel whose GPA `g` is mapped at `g + phys_offset`.
    pub const fn new(phys_offset: u64) -> Self {
        Self { phys_offset }
    }

    /// MMIO read: one load of the access width.
    #[inline(always)]
    pub fn mmio_read(&self, gpa: u64, w: Width) -> Result<u64, HostError> {
        let va = gpa.wrapping_add(self.phys_offset);
        // SAFETY: the I/O API checked that `gpa` is not RAM the kernel owns; the mapping
        // covers it (identity map of the low 4 GiB, or the loader's physical-memory map).
        // A volatile load of the exact width is the access the test asked for.
        Ok(unsafe {
            match w {
                Width::B1 => u64::from(core::ptr::read_volatile(va as *const u8)),
                Width::B2 => u64::from(core::ptr::read_volatile(va as *const u16)),
                Width::B4 => u64::from(core::ptr::read_volatile(va as *const u32)),
                Width::B8 => core::ptr::read_volatile(va as *const u64),
            }
        })
    }

    /// MMIO write: one store of the access width.
    #[inline(always)]
    pub fn mmio_write(&self, gpa: u64, w: Width, v: u64) -> Result<(), HostError> {
        let va = gpa.wrapping_add(self.phys_offset);
        // SAFETY: as in `mmio_read`.
        unsafe {
            match w {
                Width::B1 => core::ptr::write_volatile(va as *mut u8, v as u8),
                Width::B2 => core::ptr::write_volatile(va as *mut u16, v as u16),
                Width::B4 => core::ptr::write_volatile(va as *mut u32, v as u32),
                Width::B8 => core::ptr::write_volatile(va as *mut u64, v),
            }
        }
        Ok(())
    }
}

/// IN of 1, 2 or 4 bytes (an 8-byte request reads 4).
#[inline(never)]
pub fn pio_read(port: u16, w: Width) -> u64 {
    // SAFETY: port IO has no memory-safety effect on the guest; the caller owns the port.
    unsafe {
        match w {
            Width::B1 => u64::from(insn::inb(port)),
            Width::B2 => u64::from(insn::inw(port)),
            Width::B4 | Width::B8 => u64::from(insn::inl(port)),
        }
    }
}

/// OUT of 1, 2 or 4 bytes.
#[inline(never)]
pub fn pio_write(port: u16, w: Width, v: u64) {
    // SAFETY: as in `pio_read`.
    unsafe {
        match w {
            Width::B1 => insn::outb(port, v as u8),
            Width::B2 => insn::outw(port, v as u16),
            Width::B4 | Width::B8 => insn::outl(port, v as u32),
        }
    }
}

/// CPUID.
#[inline(never)]
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    insn::cpuid(leaf, subleaf)
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

/// STI; HLT; CLI.
#[inline(never)]
pub fn halt() {
    insn::sti_hlt_cli();
}
