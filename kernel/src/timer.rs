//! A one-shot timer interrupt for the `halt` suite: the local APIC timer.
//!
//! The APIC is programmed through the I/O API (`mmio_*` at its default base), like any device.

use crate::io::{cpuid, mmio_write, try_mmio_write};
use crate::platform::HostError;
use core::sync::atomic::{AtomicBool, Ordering};
use protocol::qemu_devices::LAPIC_BASE;

/// Vector the timer interrupt arrives on.
pub const TIMER_VECTOR: u8 = crate::arch::trap::IRQ_BASE;

/// APIC register offsets (Intel SDM vol. 3A table 11-1).
const APIC_EOI: u64 = 0xb0;
const APIC_SVR: u64 = 0xf0;
const APIC_LVT_TIMER: u64 = 0x320;
const APIC_TIMER_INITIAL: u64 = 0x380;
const APIC_TIMER_DIVIDE: u64 = 0x3e0;
/// SVR bit 8: APIC software enable.
const APIC_SVR_ENABLE: u32 = 1 << 8;
/// Divide configuration 0b1011: divide by 1.
const APIC_DIVIDE_BY_1: u32 = 0xb;
/// CPUID.1:EDX bit 9: APIC on chip.
const CPUID_1_EDX_APIC: u32 = 1 << 9;

static LAPIC_ARMED: AtomicBool = AtomicBool::new(false);

/// Whether the CPU reports a local APIC.
pub fn lapic_present() -> bool {
    cpuid(1, 0).edx & CPUID_1_EDX_APIC != 0
}

/// Arms the APIC timer to fire once on [`TIMER_VECTOR`] after `ticks` bus clocks. If the
/// host refuses or garbles any of the writes, the timer may or may not be armed: the error
/// comes back (the caller must not halt on it), after a best-effort disarm (a zero initial
/// count stops the timer; the host makes the write whatever it answers).
pub fn arm_lapic_oneshot(ticks: u32) -> Result<(), HostError> {
    LAPIC_ARMED.store(true, Ordering::Relaxed);
    let armed = try_mmio_write(
        LAPIC_BASE + APIC_SVR,
        APIC_SVR_ENABLE | u32::from(crate::arch::trap::SPURIOUS_VECTOR),
    )
    .and_then(|()| try_mmio_write(LAPIC_BASE + APIC_TIMER_DIVIDE, APIC_DIVIDE_BY_1))
    // LVT timer: one-shot mode (bits 18:17 = 0), unmasked, our vector.
    .and_then(|()| try_mmio_write(LAPIC_BASE + APIC_LVT_TIMER, u32::from(TIMER_VECTOR)))
    .and_then(|()| try_mmio_write(LAPIC_BASE + APIC_TIMER_INITIAL, ticks));
    if armed.is_err()
        && let Err(e) = try_mmio_write(LAPIC_BASE + APIC_TIMER_INITIAL, 0u32)
    {
        // The caller reports the first error; this one is the running case's too.
        crate::io::record_host_error(e);
    }
    armed
}

/// Acknowledges an interrupt on `vector` at whichever controller raised it.
pub fn end_of_interrupt(vector: u8) {
    if vector == TIMER_VECTOR && LAPIC_ARMED.load(Ordering::Relaxed) {
        mmio_write(LAPIC_BASE + APIC_EOI, 0u32);
    }
}
