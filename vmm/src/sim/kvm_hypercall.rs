//! KVM's hypercall handling, `____kvm_emulate_hypercall()` in arch/x86/kvm/x86.c, as a pure
//! function: both confidential platforms reach it (TDX: TDG.VP.VMCALL with R10 != 0, through
//! `tdx_emulate_vmcall()`; SEV-ES: the GHCB's VMMCALL exit, through
//! `kvm_emulate_hypercall()`), and KVM answers every hypercall itself except
//! KVM_HC_MAP_GPA_RANGE with the user exit enabled, which goes to the VMM.
//!
//! In order, as KVM checks:
//! - not a 64-bit hypercall: the number and arguments are cut to 32 bits
//!   (`is_64_bit_hypercall()` is always true with protected state: TDX and SEV-ES);
//! - CPL > 0: [`err::EPERM`] (TDX passes CPL 0: the TDX module checks the TDCALL);
//! - KVM_HC_VAPIC_POLL_IRQ: 0;
//! - KVM_HC_KICK_CPU, KVM_HC_SEND_IPI, KVM_HC_SCHED_YIELD: [`err::ENOSYS`] unless
//!   `guest_pv_has()` allows them, which it always does unless the VMM enabled
//!   KVM_CAP_ENFORCE_PV_FEATURE_CPUID ([`PvFeatures`]); allowed, KICK_CPU and SCHED_YIELD
//!   answer 0, SEND_IPI refuses an ICR with a destination or shorthand ([`err::EINVAL`]) and
//!   answers the count of vCPUs it sent the IPI to (`kvm_pv_send_ipi()`);
//! - KVM_HC_CLOCK_PAIRING: [`err::EOPNOTSUPP`] for a clock type other than the wall clock
//!   (`kvm_pv_clock_pairing()`); the wall clock depends on the host's clocksource and writes
//!   guest memory: not modelled;
//! - KVM_HC_MAP_GPA_RANGE: [`err::ENOSYS`] if the VMM did not enable the user exit,
//!   [`err::EINVAL`] for an unaligned GPA, zero pages or a wrapping range, else the exit;
//! - anything else: [`err::ENOSYS`].

use protocol::kvm_para::{CLOCK_PAIRING_WALLCLOCK, SEND_IPI_ICR_REFUSED, err, feature, hc};

/// Whether `guest_pv_has()` enforces the guest's PV CPUID bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PvFeatures {
    /// KVM_CAP_ENFORCE_PV_FEATURE_CPUID not enabled (KVM's default, QEMU's unless
    /// `kvm-pv-enforce-cpuid=on`, and the built-in VMM's): every PV hypercall is allowed.
    #[default]
    NotEnforced,
    /// Enforced, with these KVM_CPUID_FEATURES (CPUID 0x40000001 EAX) bits.
    Enforced(u32),
}

impl PvFeatures {
    fn has(self, bit: u32) -> bool {
        match self {
            Self::NotEnforced => true,
            Self::Enforced(eax) => eax & (1 << bit) != 0,
        }
    }
}

/// What the VMM set up that KVM's hypercall handling consults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypercallConfig {
    /// The VMM enabled KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE
    /// (`user_exit_on_hypercall()`).
    pub map_gpa_range_exit: bool,
    /// `guest_pv_has()`.
    pub pv: PvFeatures,
    /// The APIC IDs of the VM's vCPUs (SEND_IPI counts the ones it reaches).
    pub apic_ids: &'static [u32],
}

impl Default for HypercallConfig {
    fn default() -> Self {
        Self {
            map_gpa_range_exit: true,
            pv: PvFeatures::default(),
            apic_ids: &[0],
        }
    }
}

/// One hypercall as KVM reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hypercall {
    /// The number (TDX: R10; SEV-ES: RAX).
    pub nr: u64,
    /// a0..a3 (TDX: R11..R14; SEV-ES: RBX, RCX, RDX, RSI).
    pub args: [u64; 4],
    /// The caller's CPL (TDX: 0; SEV-ES: the GHCB's CPL field).
    pub cpl: u8,
    /// `is_64_bit_hypercall()`: true for guests with protected state.
    pub op_64_bit: bool,
}

/// What KVM does with a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallOutcome {
    /// KVM answers this value (TDX: into R10; SEV-ES: into RAX).
    Return(u64),
    /// KVM_EXIT_HYPERCALL with KVM_HC_MAP_GPA_RANGE: the VMM's `hypercall.ret` is the
    /// answer (`complete_hypercall_exit()`).
    MapGpaRange {
        /// a0: the GPA.
        gpa: u64,
        /// a1: pages.
        npages: u64,
        /// a2: attributes (KVM_MAP_GPA_RANGE_*).
        attrs: u64,
    },
    /// KVM answers from state the sims do not model.
    NotModelled(&'static str),
}

/// `____kvm_emulate_hypercall()`; a 32-bit caller's answer is cut to 32 bits
/// (`complete_hypercall_exit()`, `kvm_emulate_hypercall()`).
pub fn emulate(call: Hypercall, cfg: &HypercallConfig) -> HypercallOutcome {
    match answer(call, cfg) {
        HypercallOutcome::Return(v) if !call.op_64_bit => HypercallOutcome::Return(v & 0xffff_ffff),
        other => other,
    }
}

fn answer(call: Hypercall, cfg: &HypercallConfig) -> HypercallOutcome {
    use HypercallOutcome::{NotModelled, Return};
    let (mut nr, mut a) = (call.nr, call.args);
    if !call.op_64_bit {
        nr &= 0xffff_ffff;
        for x in &mut a {
            *x &= 0xffff_ffff;
        }
    }
    if call.cpl != 0 {
        return Return(err::EPERM);
    }
    match nr {
        hc::VAPIC_POLL_IRQ => Return(0),
        hc::KICK_CPU if cfg.pv.has(feature::PV_UNHALT) => Return(0),
        hc::SCHED_YIELD if cfg.pv.has(feature::PV_SCHED_YIELD) => Return(0),
        hc::SEND_IPI if cfg.pv.has(feature::PV_SEND_IPI) => {
            if a[3] & SEND_IPI_ICR_REFUSED != 0 {
                return Return(err::EINVAL);
            }
            // __pv_send_ipi(): bit i of the low bitmap is APIC ID min + i, of the high one
            // min + cluster + i (cluster = 64, or 32 for a 32-bit caller).
            let cluster: u64 = if call.op_64_bit { 64 } else { 32 };
            let min = a[2] & 0xffff_ffff;
            let hits = cfg.apic_ids.iter().any(|&id| {
                let id = u64::from(id);
                [(a[0], min), (a[1], min + cluster)]
                    .iter()
                    .any(|&(bits, base)| {
                        id >= base && id - base < cluster && bits >> (id - base) & 1 != 0
                    })
            });
            if hits {
                NotModelled("KVM_HC_SEND_IPI to an existing vCPU (delivers an interrupt)")
            } else {
                Return(0)
            }
        }
        hc::CLOCK_PAIRING if a[1] != CLOCK_PAIRING_WALLCLOCK => Return(err::EOPNOTSUPP),
        hc::CLOCK_PAIRING => {
            NotModelled("KVM_HC_CLOCK_PAIRING of the wall clock (host clocksource)")
        }
        hc::MAP_GPA_RANGE => {
            let (gpa, npages, attrs) = (a[0], a[1], a[2]);
            if !cfg.map_gpa_range_exit {
                return Return(err::ENOSYS);
            }
            let gfn = gpa >> 12;
            if gpa % crate::sim::PAGE_SIZE != 0 || npages == 0 || gfn.wrapping_add(npages) <= gfn {
                return Return(err::EINVAL);
            }
            HypercallOutcome::MapGpaRange { gpa, npages, attrs }
        }
        _ => Return(err::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(nr: u64, args: [u64; 4]) -> Hypercall {
        Hypercall {
            nr,
            args,
            cpl: 0,
            op_64_bit: true,
        }
    }

    fn ret(o: HypercallOutcome) -> u64 {
        match o {
            HypercallOutcome::Return(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answered_inside_kvm() {
        let cfg = HypercallConfig::default();
        assert_eq!(ret(emulate(call(hc::VAPIC_POLL_IRQ, [0; 4]), &cfg)), 0);
        assert_eq!(ret(emulate(call(hc::KICK_CPU, [0, 5, 0, 0]), &cfg)), 0);
        assert_eq!(ret(emulate(call(hc::SCHED_YIELD, [3, 0, 0, 0]), &cfg)), 0);
        assert_eq!(ret(emulate(call(0x1234, [0; 4]), &cfg)), err::ENOSYS);
        assert_eq!(ret(emulate(call(u64::MAX, [0; 4]), &cfg)), err::ENOSYS);
        assert_eq!(
            ret(emulate(call(hc::CLOCK_PAIRING, [0x1000, 1, 0, 0]), &cfg)),
            err::EOPNOTSUPP
        );
        assert!(matches!(
            emulate(call(hc::CLOCK_PAIRING, [0x1000, 0, 0, 0]), &cfg),
            HypercallOutcome::NotModelled(_)
        ));
        // CPL > 0 is refused before anything else.
        let user = Hypercall {
            cpl: 3,
            ..call(hc::VAPIC_POLL_IRQ, [0; 4])
        };
        assert_eq!(ret(emulate(user, &cfg)), err::EPERM);
    }

    #[test]
    fn pv_features_gate_three_hypercalls_only_when_enforced() {
        let none = HypercallConfig {
            pv: PvFeatures::Enforced(0),
            ..HypercallConfig::default()
        };
        for nr in [hc::KICK_CPU, hc::SEND_IPI, hc::SCHED_YIELD] {
            assert_eq!(ret(emulate(call(nr, [0; 4]), &none)), err::ENOSYS, "{nr}");
        }
        assert_eq!(ret(emulate(call(hc::VAPIC_POLL_IRQ, [0; 4]), &none)), 0);
        let yield_only = HypercallConfig {
            pv: PvFeatures::Enforced(1 << feature::PV_SCHED_YIELD),
            ..none
        };
        assert_eq!(ret(emulate(call(hc::SCHED_YIELD, [0; 4]), &yield_only)), 0);
        assert_eq!(
            ret(emulate(call(hc::KICK_CPU, [0; 4]), &yield_only)),
            err::ENOSYS
        );
    }

    #[test]
    fn send_ipi() {
        let cfg = HypercallConfig::default();
        // A destination-mode or shorthand bit in the ICR: -KVM_EINVAL.
        for icr in [0x800, 0x4_0000, 0xc_0000] {
            assert_eq!(
                ret(emulate(call(hc::SEND_IPI, [1, 0, 0, icr | 0x30]), &cfg)),
                err::EINVAL
            );
        }
        // No vCPU with those APIC IDs: none reached.
        assert_eq!(
            ret(emulate(call(hc::SEND_IPI, [0b10, 0, 0, 0x30]), &cfg)),
            0
        );
        assert_eq!(ret(emulate(call(hc::SEND_IPI, [1, 0, 1, 0x30]), &cfg)), 0);
        // APIC ID 0 (bit 0 from 0): the IPI would be delivered.
        assert!(matches!(
            emulate(call(hc::SEND_IPI, [1, 0, 0, 0x30]), &cfg),
            HypercallOutcome::NotModelled(_)
        ));
    }

    #[test]
    fn map_gpa_range() {
        let cfg = HypercallConfig::default();
        assert_eq!(
            emulate(call(hc::MAP_GPA_RANGE, [0x20_0000, 2, 0x10, 0]), &cfg),
            HypercallOutcome::MapGpaRange {
                gpa: 0x20_0000,
                npages: 2,
                attrs: 0x10
            }
        );
        for args in [
            [0x20_0010, 1, 0, 0],
            [0x20_0000, 0, 0, 0],
            [0x1000, u64::MAX, 0, 0],
        ] {
            assert_eq!(
                ret(emulate(call(hc::MAP_GPA_RANGE, args), &cfg)),
                err::EINVAL,
                "{args:x?}"
            );
        }
        let off = HypercallConfig {
            map_gpa_range_exit: false,
            ..cfg
        };
        // The exit check comes first: even a bad range answers -KVM_ENOSYS.
        assert_eq!(
            ret(emulate(call(hc::MAP_GPA_RANGE, [0x10, 0, 0, 0]), &off)),
            err::ENOSYS
        );
    }

    #[test]
    fn thirty_two_bit_callers_are_cut() {
        let cfg = HypercallConfig::default();
        let c = Hypercall {
            op_64_bit: false,
            ..call(0x1_0000_0001, [0; 4])
        };
        assert_eq!(
            ret(emulate(c, &cfg)),
            0,
            "nr 0x1_0000_0001 is VAPIC_POLL_IRQ in 32 bits"
        );
        let c = Hypercall {
            op_64_bit: false,
            ..call(0x99, [0; 4])
        };
        assert_eq!(ret(emulate(c, &cfg)), 0xffff_fc18, "(u32)-KVM_ENOSYS");
    }
}
