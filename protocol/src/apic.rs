//! The local APIC as the guest programs it and the VMM models it: xAPIC register offsets,
//! their x2APIC MSR numbers, IA32_APIC_BASE and the CPUID bits.
//!
//! Sources: Intel SDM vol. 3A 11.4 (xAPIC, table 11-1 register map), 11.12 (x2APIC, table
//! 11-6 MSR map: MSR = 0x800 + offset / 16), 11.5 (LVT, timer); Linux
//! `arch/x86/include/asm/apicdef.h`.

pub use crate::qemu_devices::LAPIC_BASE;

/// IA32_APIC_BASE bit 8: this is the bootstrap processor.
pub const BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE bit 10: x2APIC mode enabled (EXTD).
pub const BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bit 11: APIC global enable (EN).
pub const BASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE bits 35:12 (MAXPHYADDR-1:12): the xAPIC page's base.
pub const BASE_ADDR_MASK: u64 = 0xf_ffff_f000;

/// CPUID.1:EDX bit 9: an on-chip APIC.
pub const CPUID_1_EDX_APIC: u32 = 1 << 9;
/// CPUID.1:ECX bit 21: x2APIC supported.
pub const CPUID_1_ECX_X2APIC: u32 = 1 << 21;

/// Register offsets in the xAPIC page (Intel SDM vol. 3A table 11-1); the x2APIC MSR of each
/// is [`x2apic_msr`].
pub mod reg {
    /// Local APIC ID.
    pub const ID: u64 = 0x20;
    /// Local APIC version (read-only).
    pub const VERSION: u64 = 0x30;
    /// Task priority.
    pub const TPR: u64 = 0x80;
    /// Arbitration priority (xAPIC only).
    pub const APR: u64 = 0x90;
    /// Processor priority (read-only).
    pub const PPR: u64 = 0xa0;
    /// End of interrupt (write-only).
    pub const EOI: u64 = 0xb0;
    /// Remote read (xAPIC only).
    pub const RRD: u64 = 0xc0;
    /// Logical destination.
    pub const LDR: u64 = 0xd0;
    /// Destination format (xAPIC only).
    pub const DFR: u64 = 0xe0;
    /// Spurious interrupt vector; bit 8 enables the APIC in software.
    pub const SVR: u64 = 0xf0;
    /// In-service register, eight 32-bit words at 16-byte strides.
    pub const ISR: u64 = 0x100;
    /// Trigger mode register, eight words.
    pub const TMR: u64 = 0x180;
    /// Interrupt request register, eight words.
    pub const IRR: u64 = 0x200;
    /// Error status.
    pub const ESR: u64 = 0x280;
    /// LVT CMCI.
    pub const LVT_CMCI: u64 = 0x2f0;
    /// Interrupt command, low half (x2APIC: the whole 64-bit ICR at one MSR).
    pub const ICR_LOW: u64 = 0x300;
    /// Interrupt command, high half (xAPIC only).
    pub const ICR_HIGH: u64 = 0x310;
    /// LVT timer.
    pub const LVT_TIMER: u64 = 0x320;
    /// LVT thermal sensor.
    pub const LVT_THERMAL: u64 = 0x330;
    /// LVT performance counters.
    pub const LVT_PMC: u64 = 0x340;
    /// LVT LINT0.
    pub const LVT_LINT0: u64 = 0x350;
    /// LVT LINT1.
    pub const LVT_LINT1: u64 = 0x360;
    /// LVT error.
    pub const LVT_ERROR: u64 = 0x370;
    /// Timer initial count.
    pub const TIMER_INITIAL: u64 = 0x380;
    /// Timer current count (read-only).
    pub const TIMER_CURRENT: u64 = 0x390;
    /// Timer divide configuration.
    pub const TIMER_DIVIDE: u64 = 0x3e0;
    /// Self IPI (x2APIC only, write-only).
    pub const SELF_IPI: u64 = 0x3f0;
}

/// The x2APIC MSR of the register at xAPIC `offset` (Intel SDM vol. 3A 11.12.1.2: 0x800 +
/// offset / 16; Linux `X2APIC_MSR()`).
pub const fn x2apic_msr(offset: u64) -> u32 {
    crate::x86::msr::X2APIC_FIRST + (offset >> 4) as u32
}

/// The xAPIC offset of x2APIC MSR `msr` (the inverse of [`x2apic_msr`]), if `msr` is in the
/// x2APIC range.
pub const fn x2apic_offset(msr: u32) -> Option<u64> {
    if msr >= crate::x86::msr::X2APIC_FIRST && msr <= crate::x86::msr::X2APIC_LAST {
        Some(((msr - crate::x86::msr::X2APIC_FIRST) as u64) << 4)
    } else {
        None
    }
}

/// SVR bit 8: APIC software enable (Intel SDM vol. 3A 11.9).
pub const SVR_ENABLE: u32 = 1 << 8;
/// LVT bit 16: masked (Intel SDM vol. 3A figure 11-8).
pub const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration 0b1011: divide by 1 (Intel SDM vol. 3A figure 11-10).
pub const DIVIDE_BY_1: u32 = 0xb;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x2apic_msr_numbers() {
        // Intel SDM vol. 3A table 11-6.
        assert_eq!(x2apic_msr(reg::TPR), 0x808);
        assert_eq!(x2apic_msr(reg::EOI), 0x80b);
        assert_eq!(x2apic_msr(reg::SVR), 0x80f);
        assert_eq!(x2apic_msr(reg::ISR), 0x810);
        assert_eq!(x2apic_msr(reg::IRR + 0x70), 0x827);
        assert_eq!(x2apic_msr(reg::ICR_LOW), 0x830);
        assert_eq!(x2apic_msr(reg::LVT_TIMER), 0x832);
        assert_eq!(x2apic_msr(reg::TIMER_INITIAL), 0x838);
        assert_eq!(x2apic_msr(reg::TIMER_DIVIDE), 0x83e);
        assert_eq!(x2apic_msr(reg::SELF_IPI), 0x83f);
        assert_eq!(x2apic_offset(0x80f), Some(reg::SVR));
        assert_eq!(x2apic_offset(0x7ff), None);
        assert_eq!(x2apic_offset(0x900), None);
        assert_eq!(BASE_ADDR_MASK & LAPIC_BASE, LAPIC_BASE);
    }
}
