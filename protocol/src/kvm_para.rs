//! KVM's paravirtual hypercall interface, as a TDX guest reaches it (TDG.VP.VMCALL with
//! R10 != 0) and an SEV-ES guest does (GHCB exit VMMCALL): numbers, error values, feature
//! bits (Linux `include/uapi/linux/kvm_para.h`, `include/uapi/asm/kvm_para.h`,
//! `Documentation/virt/kvm/x86/hypercalls.rst`).

/// Hypercall numbers `____kvm_emulate_hypercall()` (arch/x86/kvm/x86.c) knows; any other
/// number answers [`err::ENOSYS`].
pub mod hc {
    /// KVM_HC_VAPIC_POLL_IRQ: answers 0, does nothing.
    pub const VAPIC_POLL_IRQ: u64 = 1;
    /// KVM_HC_KICK_CPU (a1 = APIC ID to wake).
    pub const KICK_CPU: u64 = 5;
    /// KVM_HC_CLOCK_PAIRING (a0 = GPA of `struct kvm_clock_pairing`, a1 = clock type).
    pub const CLOCK_PAIRING: u64 = 9;
    /// KVM_HC_SEND_IPI (a0/a1 = APIC-ID bitmap low/high, a2 = first APIC ID, a3 = ICR).
    pub const SEND_IPI: u64 = 10;
    /// KVM_HC_SCHED_YIELD (a0 = APIC ID of the vCPU to yield to).
    pub const SCHED_YIELD: u64 = 11;
    /// KVM_HC_MAP_GPA_RANGE (a0 = GPA, a1 = pages, a2 = attributes): exits to the VMM when
    /// it enabled KVM_CAP_EXIT_HYPERCALL for it.
    pub const MAP_GPA_RANGE: u64 = 12;
}

/// The values KVM returns for a failed hypercall (the negative of `KVM_E*`, as the
/// 64-bit register holds them).
pub mod err {
    /// `-KVM_EPERM` (KVM_EPERM = EPERM = 1): a hypercall from CPL > 0.
    pub const EPERM: u64 = (-1i64) as u64;
    /// `-KVM_EFAULT` (KVM_EFAULT = EFAULT = 14).
    pub const EFAULT: u64 = (-14i64) as u64;
    /// `-KVM_EINVAL` (KVM_EINVAL = EINVAL = 22): MAP_GPA_RANGE with an unaligned GPA, no
    /// pages or a wrapping range; SEND_IPI with a destination or shorthand in the ICR.
    pub const EINVAL: u64 = (-22i64) as u64;
    /// `-KVM_EOPNOTSUPP` (KVM_EOPNOTSUPP = 95): CLOCK_PAIRING of an unknown clock type.
    pub const EOPNOTSUPP: u64 = (-95i64) as u64;
    /// `-KVM_ENOSYS` (KVM_ENOSYS = 1000): an unknown hypercall, or one the VMM did not
    /// enable.
    pub const ENOSYS: u64 = (-1000i64) as u64;
}

/// KVM_CPUID_FEATURES (CPUID 0x40000001 EAX) bits that gate hypercalls when the VMM enabled
/// KVM_CAP_ENFORCE_PV_FEATURE_CPUID (`guest_pv_has()`).
pub mod feature {
    /// KVM_FEATURE_PV_UNHALT: KVM_HC_KICK_CPU.
    pub const PV_UNHALT: u32 = 7;
    /// KVM_FEATURE_PV_SEND_IPI: KVM_HC_SEND_IPI.
    pub const PV_SEND_IPI: u32 = 11;
    /// KVM_FEATURE_PV_SCHED_YIELD: KVM_HC_SCHED_YIELD.
    pub const PV_SCHED_YIELD: u32 = 13;
}

/// KVM_CLOCK_PAIRING_WALLCLOCK: the only clock type KVM_HC_CLOCK_PAIRING accepts.
pub const CLOCK_PAIRING_WALLCLOCK: u64 = 0;

/// SEND_IPI ICR bits KVM refuses with [`err::EINVAL`] (`kvm_pv_send_ipi()`: APIC_DEST_MASK
/// 0x800, logical destination mode, and APIC_SHORT_MASK 0xc0000, a shorthand).
pub const SEND_IPI_ICR_REFUSED: u64 = 0x800 | 0xc_0000;
/// SEND_IPI ICR bits 7:0: the vector.
pub const SEND_IPI_ICR_VECTOR: u64 = 0xff;
