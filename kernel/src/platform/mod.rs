//! The platform backend, chosen once at boot.
//!
//! [`init`] runs detection and stores one [`Backend`]; every request the guest makes to its
//! host (MMIO, port IO, CPUID, MSR, HLT) goes through it. Nothing else in the kernel branches
//! on the platform. Before `init` the early backend is legacy, which is what a guest can do
//! before it knows better (and all it needs to report an early failure on a legacy VM).
//!
//! TDX (`tdx.rs`) and SEV-ES (`sev_es.rs`) add a variant each to [`Backend`]; the match arms
//! in this file are the one place they plug in.

pub mod detect;
pub mod legacy;

use crate::arch::insn::{CpuidResult, Fault};
use protocol::access::Width;
use protocol::platform::PlatformKind;

/// A host answer the guest refuses (never used on legacy, where the CPU itself answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// The host answered `request` with error status `status`.
    Refused {
        /// What was asked.
        request: &'static str,
        /// The status the host returned.
        status: u64,
    },
    /// The host's answer to `request` is out of range (`value`).
    BadAnswer {
        /// What was asked.
        request: &'static str,
        /// The value returned.
        value: u64,
    },
    /// The request cannot be made on this platform (e.g. a RAM GPA given to the MMIO API).
    Unsupported {
        /// What was asked.
        request: &'static str,
    },
}

/// Why an MSR access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrError {
    /// The CPU (or the host on its behalf) raised an exception, e.g. #GP for a missing MSR.
    Fault(Fault),
    /// The host refused or gave a bad answer.
    Host(HostError),
}

/// The backend of one platform.
pub enum Backend {
    /// Plain loads/stores and `in`/`out`.
    Legacy(legacy::Legacy),
}

static BACKEND: spin::Once<Backend> = spin::Once::new();
static EARLY: Backend = Backend::Legacy(legacy::Legacy::EARLY);

#[inline(always)]
fn backend() -> &'static Backend {
    match BACKEND.get() {
        Some(b) => b,
        None => &EARLY,
    }
}

/// Detects the platform and fixes the backend for the rest of the run.
pub fn init(phys_offset: u64) -> PlatformKind {
    let detected = detect::detect();
    let b = BACKEND.call_once(|| match detected {
        detect::Detected::Legacy => Backend::Legacy(legacy::Legacy::new(phys_offset)),
    });
    b.kind()
}

/// The platform in use.
pub fn kind() -> PlatformKind {
    backend().kind()
}

/// Appends the platform's parameters to a KTAP diagnostic line (`gpaw=48 shared_bit=47`).
pub fn describe(line: &mut crate::ktap::Line) {
    match backend() {
        Backend::Legacy(_) => {
            line.str("(no confidential-computing extensions detected)");
        }
    }
}

impl Backend {
    fn kind(&self) -> PlatformKind {
        match self {
            Backend::Legacy(_) => PlatformKind::Legacy,
        }
    }
}

/// MMIO read of `w` bytes at `gpa`; the value is zero-extended.
#[inline(always)]
pub fn mmio_read(gpa: u64, w: Width) -> Result<u64, HostError> {
    match backend() {
        Backend::Legacy(l) => l.mmio_read(gpa, w),
    }
}

/// MMIO write of the low `w` bytes of `v` at `gpa`.
#[inline(always)]
pub fn mmio_write(gpa: u64, w: Width, v: u64) -> Result<(), HostError> {
    match backend() {
        Backend::Legacy(l) => l.mmio_write(gpa, w, v),
    }
}

/// Port read of `w` bytes (1, 2 or 4).
#[inline(always)]
pub fn pio_read(port: u16, w: Width) -> Result<u64, HostError> {
    match backend() {
        Backend::Legacy(_) => Ok(legacy::pio_read(port, w)),
    }
}

/// Port write of the low `w` bytes of `v` (1, 2 or 4).
#[inline(always)]
pub fn pio_write(port: u16, w: Width, v: u64) -> Result<(), HostError> {
    match backend() {
        Backend::Legacy(_) => {
            legacy::pio_write(port, w, v);
            Ok(())
        }
    }
}

/// CPUID.
pub fn cpuid(leaf: u32, subleaf: u32) -> Result<CpuidResult, HostError> {
    match backend() {
        Backend::Legacy(_) => Ok(legacy::cpuid(leaf, subleaf)),
    }
}

/// RDMSR.
pub fn rdmsr(msr: u32) -> Result<u64, MsrError> {
    match backend() {
        Backend::Legacy(_) => legacy::rdmsr(msr).map_err(MsrError::Fault),
    }
}

/// WRMSR.
///
/// # Safety
/// Writing an MSR can change any CPU behaviour; the caller knows what this MSR does.
pub unsafe fn wrmsr(msr: u32, v: u64) -> Result<(), MsrError> {
    match backend() {
        // SAFETY: per the function contract.
        Backend::Legacy(_) => unsafe { legacy::wrmsr(msr, v) }.map_err(MsrError::Fault),
    }
}

/// Halts until the next interrupt (interrupts are enabled only while halted).
pub fn halt() -> Result<(), HostError> {
    match backend() {
        Backend::Legacy(_) => {
            legacy::halt();
            Ok(())
        }
    }
}

/// Acknowledges device interrupt `vector` (called from the trap handler).
pub fn end_of_interrupt(vector: u8) {
    crate::timer::end_of_interrupt(vector);
}

/// Ends the run: writes `code` to the exit port through the backend, then stops the vCPU
/// for good if the port did not end the VM.
pub fn exit(code: u32) -> ! {
    let _ = pio_write(protocol::exit::EXIT_PORT, Width::B4, u64::from(code));
    crate::arch::insn::cli_hlt_loop()
}
