//! A one-shot timer interrupt for the `halt` suite: the local APIC timer, through the APIC
//! the platform offers.
//!
//! - Legacy and SEV-ES: the xAPIC page, programmed through the I/O API (`mmio_*` at its
//!   default base) like any device; under SEV-ES those accesses go through the GHCB.
//! - TDX: a TD's APIC is an x2APIC, and the TDX module keeps it so (no xAPIC page). Its
//!   registers are MSRs (Intel SDM vol. 3A 11.12): the timer's (SVR, LVT timer, divide,
//!   initial count) reach KVM, which emulates them, through TDG.VP.VMCALL<Instruction.WRMSR>
//!   (a raw WRMSR would raise #VE: the TDX module's MSR table does not list them); EOI is
//!   virtualised by the CPU, so it is a raw WRMSR, which no host sees (KVM refuses it through
//!   TDG.VP.VMCALL: `tdx_has_emulated_msr()`). `crate::platform::tdx::x2apic_eoi`.

use crate::io::{cpuid, mmio_write, try_mmio_write};
use crate::platform::{HostError, MsrError};
use core::sync::atomic::{AtomicBool, Ordering};
use protocol::apic::{self, LAPIC_BASE, reg};
use protocol::platform::PlatformKind;

/// Vector the timer interrupt arrives on.
pub const TIMER_VECTOR: u8 = crate::arch::trap::IRQ_BASE;

static LAPIC_ARMED: AtomicBool = AtomicBool::new(false);

/// How this platform reaches its local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Apic {
    /// The xAPIC MMIO page.
    Xapic,
    /// x2APIC MSRs.
    X2apic,
}

fn apic() -> Apic {
    match crate::platform::kind() {
        PlatformKind::Tdx => Apic::X2apic,
        PlatformKind::Legacy | PlatformKind::SevEs => Apic::Xapic,
    }
}

/// Whether the CPU reports the local APIC this platform uses (CPUID.1:EDX\[9\]; on TDX also
/// CPUID.1:ECX\[21\], x2APIC).
pub fn lapic_present() -> bool {
    let leaf1 = cpuid(1, 0);
    leaf1.edx & apic::CPUID_1_EDX_APIC != 0
        && (apic() == Apic::Xapic || leaf1.ecx & apic::CPUID_1_ECX_X2APIC != 0)
}

/// Writes APIC register `offset` (an xAPIC offset; on x2APIC its MSR).
fn write_reg(offset: u64, v: u32) -> Result<(), HostError> {
    match apic() {
        Apic::Xapic => try_mmio_write(LAPIC_BASE + offset, v),
        Apic::X2apic => {
            // SAFETY: an x2APIC timer register: it changes when the timer interrupt comes,
            // which the IDT handles.
            match unsafe { crate::io::wrmsr(apic::x2apic_msr(offset), u64::from(v)) } {
                Ok(()) => Ok(()),
                Err(MsrError::Host(e)) => Err(e),
                Err(MsrError::Fault(f)) => Err(HostError::refused(
                    "x2APIC WRMSR (status = vector)",
                    u64::from(f.vector),
                )),
            }
        }
    }
}

/// Arms the APIC timer to fire once on [`TIMER_VECTOR`] after `ticks` bus clocks. If the
/// host refuses or garbles any of the writes, the timer may or may not be armed: the error
/// comes back (the caller must not halt on it), after a best-effort disarm (a zero initial
/// count stops the timer; the host makes the write whatever it answers).
pub fn arm_lapic_oneshot(ticks: u32) -> Result<(), HostError> {
    LAPIC_ARMED.store(true, Ordering::Relaxed);
    let armed = write_reg(
        reg::SVR,
        apic::SVR_ENABLE | u32::from(crate::arch::trap::SPURIOUS_VECTOR),
    )
    .and_then(|()| write_reg(reg::TIMER_DIVIDE, apic::DIVIDE_BY_1))
    // LVT timer: one-shot mode (bits 18:17 = 0), unmasked, our vector.
    .and_then(|()| write_reg(reg::LVT_TIMER, u32::from(TIMER_VECTOR)))
    .and_then(|()| write_reg(reg::TIMER_INITIAL, ticks));
    if armed.is_err()
        && let Err(e) = write_reg(reg::TIMER_INITIAL, 0)
    {
        // The caller reports the first error; this one is the running case's too.
        crate::io::record_host_error(e);
    }
    armed
}

/// Acknowledges an interrupt on `vector` at whichever controller raised it.
pub fn end_of_interrupt(vector: u8) {
    if vector == TIMER_VECTOR && LAPIC_ARMED.load(Ordering::Relaxed) {
        match apic() {
            Apic::Xapic => mmio_write(LAPIC_BASE + reg::EOI, 0u32),
            Apic::X2apic => {
                if let Err(f) = crate::platform::tdx::x2apic_eoi() {
                    crate::io::record_host_error(HostError::refused(
                        "x2APIC EOI (raw WRMSR 0x80B) faulted (status = vector)",
                        u64::from(f.vector),
                    ));
                }
            }
        }
    }
}
