//! Raw intercepted instructions on the simulated platforms: what a real TD or SEV-ES guest
//! gets when it executes CPUID, RDMSR, WRMSR, IN/OUT or HLT itself instead of asking its
//! host through TDG.VP.VMCALL or the GHCB. A pure model: the instruction in, the outcome out.
//!
//! **TDX** (the TDX module decides, before KVM sees anything):
//! - CPUID ([`tdx_cpuid`]): answered by the module from the TD's CPUID configuration for the
//!   leaves of its virtualisation table that are not "faulting"; #VE for the others, for the
//!   leaves 0x40000000-0x4FFFFFFF and for sub-leaves the table does not list (intel/tdx-module
//!   `td_dispatcher/vm_exits/td_cpuid.c` `td_cpuid_exit()`, table
//!   `include/auto_gen/cpuid_configurations.c`; TDX module ABI spec, "CPUID Virtualization").
//! - RDMSR/WRMSR ([`tdx_msr`]): native (no exit: the CPU or the module answers), #VE or #GP
//!   per the module's MSR table (`td_msr_access.c` `td_rdmsr_exit()` / `td_wrmsr_exit()`,
//!   `include/auto_gen/msr_config_lookup.c`; ABI spec, "MSR Virtualization"): an MSR outside
//!   the MSR-bitmap ranges 0-0x1FFF and 0xC0000000-0xC0001FFF, or one the table does not list,
//!   is a #VE (SEV_STATUS 0xC0010131 among them).
//! - IN/OUT and HLT: #VE (the module injects a #VE for every exit it does not handle itself,
//!   `td_generic_ve_exit()`); Linux handles them in `tdx_handle_virt_exception()`.
//! - Every #VE carries the exit reason, the qualification and the instruction length the VM
//!   exit reported (`tdx_inject_ve()`; defined for these instruction exits, Intel SDM vol. 3C
//!   28.2.5), through TDG.VP.VEINFO.GET.
//!
//! **SEV-ES** (the CPU raises #VC for every intercepted non-automatic exit, AMD APM vol. 2
//! 15.35.4; KVM decides what it intercepts):
//! - CPUID: #VC with error code SVM_EXIT_CPUID 0x72 (`init_vmcb()` intercepts CPUID for every
//!   guest).
//! - IN/OUT: #VC 0x7B (the I/O permission map intercepts every port).
//! - RDMSR/WRMSR ([`sev_es_msr`]): #VC 0x7C for every intercepted MSR; not intercepted are the
//!   MSRs KVM passes through to every SVM guest (`svm_vcpu_init_msrpm()`: STAR, SYSENTER_CS,
//!   FS/GS/KERNEL_GS_BASE, LSTAR, CSTAR, SYSCALL_MASK) or to SEV-ES guests
//!   (`sev_es_recalc_msr_intercepts()`: the GHCB MSR, EFER, PAT), and SEV_STATUS, which the
//!   hardware answers (Linux `sme_enable()` reads it raw while its early #VC handler
//!   `do_vc_no_ghcb()` serves CPUID only).
//! - HLT: an automatic exit, no #VC (APM vol. 2 15.35.4).

use protocol::ghcb;
use protocol::x86::{efer, msr};

/// What the TDX module does with a raw CPUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdxCpuid {
    /// The module answers from the TD's configuration of `leaf` (the asked leaf, or the last
    /// basic leaf for a leaf past its range's maximum).
    Answer {
        /// The leaf whose configuration answers.
        leaf: u32,
    },
    /// #VE with exit reason CPUID.
    Ve,
}

/// The CPUID leaves of the TDX module's virtualisation table (`cpuid_lookup` in
/// intel/tdx-module `include/auto_gen/cpuid_configurations.c`, TDX 1.5): `(leaf, sub-leaf)`,
/// `None` for "sub-leaf not applicable" (any), and whether the entry is faulting (#VE).
const TDX_CPUID_TABLE: &[(u32, Option<u32>, bool)] = &[
    (0x0, None, false),
    (0x1, None, false),
    (0x3, None, false),
    (0x4, Some(0), false),
    (0x4, Some(1), false),
    (0x4, Some(2), false),
    (0x4, Some(3), false),
    (0x4, Some(4), false),
    (0x5, None, false),
    (0x6, None, true),
    (0x7, Some(0), false),
    (0x7, Some(1), false),
    (0x7, Some(2), false),
    (0x8, None, false),
    (0xa, None, false),
    (0xd, Some(0), false),
    (0xd, Some(1), false),
    (0xd, Some(2), false),
    (0xd, Some(3), false),
    (0xd, Some(4), false),
    (0xd, Some(5), false),
    (0xd, Some(6), false),
    (0xd, Some(7), false),
    (0xd, Some(8), false),
    (0xd, Some(9), false),
    (0xd, Some(10), false),
    (0xd, Some(11), false),
    (0xd, Some(12), false),
    (0xd, Some(13), false),
    (0xd, Some(14), false),
    (0xd, Some(15), false),
    (0xd, Some(16), false),
    (0xd, Some(17), false),
    (0xd, Some(18), false),
    (0xe, None, false),
    (0x11, None, false),
    (0x12, None, false),
    (0x13, None, false),
    (0x14, Some(0), false),
    (0x14, Some(1), false),
    (0x15, None, false),
    (0x19, None, false),
    (0x1c, None, false),
    (0x1d, Some(0), false),
    (0x1d, Some(1), false),
    (0x1e, None, false),
    (0x1f, Some(0), true),
    (0x1f, Some(1), true),
    (0x1f, Some(2), true),
    (0x1f, Some(3), true),
    (0x1f, Some(4), true),
    (0x1f, Some(5), true),
    (0x20, None, false),
    (0x21, Some(0), false),
    (0x22, None, false),
    (0x23, Some(0), false),
    (0x23, Some(1), false),
    (0x23, Some(2), false),
    (0x23, Some(3), false),
    (0x8000_0000, None, false),
    (0x8000_0001, None, false),
    (0x8000_0006, None, true),
    (0x8000_0007, None, false),
    (0x8000_0008, None, false),
];

/// The leaves the TDX module never virtualises: a #VE, so the TD asks its host
/// (`CPUID_RESERVED_START`/`END` in intel/tdx-module `x86_defs.h`).
pub const TDX_CPUID_HYPERVISOR_LEAVES: std::ops::RangeInclusive<u32> = 0x4000_0000..=0x4fff_ffff;

/// The start of the extended CPUID leaves (`CPUID_MAX_EXTENDED_VAL_LEAF`).
const CPUID_EXTENDED: u32 = 0x8000_0000;

/// `td_cpuid_exit()`: a leaf past its range's maximum (`last_base`, `last_extended`: what
/// leaves 0 and 0x80000000 report) is treated as the last basic leaf; then a leaf and
/// sub-leaf the table does not list, or lists as faulting, is a #VE.
pub fn tdx_cpuid(leaf: u32, subleaf: u32, last_base: u32, last_extended: u32) -> TdxCpuid {
    let leaf = if !TDX_CPUID_HYPERVISOR_LEAVES.contains(&leaf)
        && (leaf > last_extended || (leaf > last_base && leaf < CPUID_EXTENDED))
    {
        last_base
    } else {
        leaf
    };
    let entry = TDX_CPUID_TABLE
        .iter()
        .find(|&&(l, s, _)| l == leaf && s.is_none_or(|s| s == subleaf));
    match entry {
        Some(&(_, _, false)) => TdxCpuid::Answer { leaf },
        _ => TdxCpuid::Ve,
    }
}

/// What a raw RDMSR/WRMSR gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawMsr {
    /// No exit to the host: the CPU (or the TDX module, for the MSRs it answers itself)
    /// completes the access on the vCPU's own state.
    Native,
    /// TDX: #VE with exit reason MSR_READ / MSR_WRITE (qualification 0, length 2).
    Ve,
    /// #GP(0).
    Gp,
    /// SEV-ES: #VC with error code SVM_EXIT_MSR 0x7C.
    Vc,
    /// SEV-ES: the GHCB MSR or SEV_STATUS, which the GHCB model keeps.
    Ghcb,
}

/// The TDX module's MSR table entries that do not end in a #VE (`msr_lookup` in intel/tdx-module
/// `include/auto_gen/msr_config_lookup.c`, TDX 1.5), for the MSRs this guest and the common
/// kernel paths touch: `(first, last, read, write)`. [`RawMsr::Native`] stands for both
/// "bitmap bit fixed 0" (no exit) and the module's own answer (`MSR_ACTION_OTHER`, e.g.
/// MISC_ENABLE reads, EFER writes, below). MSRs in the bitmap ranges that the table does not
/// list are #VE, as are those listed with `MSR_ACTION_VE`; entries left out here (performance
/// monitoring, CET, LBR, PT, AMX: their outcome depends on the TD's XFAM and attributes) read
/// as #VE too, a known difference.
const TDX_MSR_TABLE: &[(u32, u32, RawMsr, RawMsr)] = {
    use RawMsr::{Gp, Native, Ve};
    &[
        (msr::TSC, msr::TSC, Native, Ve),
        (0x48, 0x49, Native, Native), // IA32_SPEC_CTRL, IA32_PRED_CMD
        (0x8c, 0x8f, Gp, Gp),         // IA32_SGXLEPUBKEYHASHx
        (0x98, 0x9b, Gp, Gp),         // WBINVDP, WBNOINVDP, INTR_PENDING, SMM_MONITOR_CTL
        (0x9e, 0x9e, Gp, Gp),         // IA32_SMBASE
        (0xbc, 0xbc, Native, Ve),     // IA32_MISC_PACKAGE_CTLS
        (0xbd, 0xbd, Native, Native), // IA32_XAPIC_DISABLE_STATUS (read: the module answers)
        (
            msr::ARCH_CAPABILITIES,
            msr::ARCH_CAPABILITIES,
            Native,
            Native,
        ),
        (0x10b, 0x10b, Native, Native), // IA32_FLUSH_CMD
        (msr::SYSENTER_CS, 0x176, Native, Native),
        (0x195, 0x195, Gp, Gp), // IA32_OVERCLOCKING_STATUS
        (msr::MISC_ENABLE, msr::MISC_ENABLE, Native, Ve),
        (0x1d9, 0x1d9, Native, Native), // IA32_DEBUGCTL (the module checks the write)
        (0x276, 0x276, Gp, Gp),         // MSR_SLAM_ENABLE
        (msr::CR_PAT, msr::CR_PAT, Native, Native),
        (0x600, 0x600, Native, Native), // IA32_DS_AREA
        // x2APIC: reserved registers #GP; TPR, PPR, EOI, ISR, TMR, IRR, self IPI are
        // virtualised by the CPU; every other x2APIC register (ID, version, LDR, SVR, ESR,
        // ICR, the LVTs and the timer) is not listed: #VE.
        (0x800, 0x801, Gp, Gp),
        (0x804, 0x807, Gp, Gp),
        (0x808, 0x80c, Native, Native),
        (0x80e, 0x80e, Native, Native),
        (0x810, 0x827, Native, Native),
        (0x829, 0x82e, Gp, Gp),
        (0x831, 0x831, Gp, Gp),
        (0x83f, 0x83f, Native, Native),
        (0x840, 0x8ff, Gp, Gp),
        (0xc80, 0xc80, Native, Ve),             // IA32_DEBUG_INTERFACE
        (0xd90, 0xd90, Gp, Gp),                 // IA32_BNDCFGS
        (0xd93, 0xd93, Gp, Gp),                 // IA32_PASID
        (0xda0, 0xda0, Native, Native),         // IA32_XSS (the module checks the write)
        (0x1b01, 0x1b01, Native, Native),       // IA32_UARCH_MISC_CTL
        (msr::EFER, msr::EFER, Native, Native), // the write: `tdx_efer_write`
        (msr::STAR, msr::LSTAR, Native, Native),
        (msr::SYSCALL_MASK, msr::SYSCALL_MASK, Native, Native),
        (msr::FS_BASE, msr::TSC_AUX, Native, Native),
    ]
};

/// The MSR-bitmap ranges (Intel SDM vol. 3C 25.6.9): an MSR outside them always exits, and
/// the TDX module turns that into a #VE (`rd_wr_msr_generic_checks()`).
fn in_msr_bitmap(index: u32) -> bool {
    index < 0x2000 || (0xc000_0000..0xc000_2000).contains(&index)
}

/// `td_rdmsr_exit()` / `td_wrmsr_exit()` for a raw RDMSR (`write` = `None`) or a WRMSR of
/// `write`. `efer` is the TD's EFER now (for `wrmsr_ia32_efer()`).
pub fn tdx_msr(index: u32, write: Option<u64>, efer: u64) -> RawMsr {
    if !in_msr_bitmap(index) {
        return RawMsr::Ve;
    }
    if let (msr::EFER, Some(v)) = (index, write) {
        return tdx_efer_write(efer, v);
    }
    let entry = TDX_MSR_TABLE
        .iter()
        .find(|&&(first, last, _, _)| (first..=last).contains(&index));
    match (entry, write) {
        (Some(&(_, _, rd, _)), None) => rd,
        (Some(&(_, _, _, wr)), Some(_)) => wr,
        (None, _) => RawMsr::Ve,
    }
}

/// `wrmsr_ia32_efer()`: LMA is read-only (the old value is kept), SCE may change; any other
/// change is a #VE.
fn tdx_efer_write(old: u64, new: u64) -> RawMsr {
    let new = (new & !efer::LMA) | (old & efer::LMA);
    if (new ^ old) & !efer::SCE != 0 {
        RawMsr::Ve
    } else {
        RawMsr::Native
    }
}

/// The TD's EFER at entry (intel/tdx-module `common/data_structures/td_vmcs_init.c`: guest
/// IA32_EFER 0x901 = SCE | LME | NXE): the TDX module enters a TD in 32-bit mode with long
/// mode already enabled, so the PVH entry's `wrmsr` of EFER.LME changes nothing and is
/// allowed.
pub const TDX_INITIAL_EFER: u64 = efer::SCE | efer::LME | efer::NXE;

/// A raw RDMSR/WRMSR in an SEV-ES guest under KVM.
pub fn sev_es_msr(index: u32) -> RawMsr {
    match index {
        ghcb::MSR_GHCB | ghcb::MSR_SEV_STATUS => RawMsr::Ghcb,
        msr::EFER
        | msr::CR_PAT
        | msr::STAR
        | msr::LSTAR
        | msr::CSTAR
        | msr::SYSCALL_MASK
        | msr::FS_BASE
        | msr::GS_BASE
        | msr::KERNEL_GS_BASE
        | msr::SYSENTER_CS => RawMsr::Native,
        _ => RawMsr::Vc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tdx-sim's table: leaf 0 says 0x21, leaf 0x80000000 says 0x80000008.
    fn cpuid(leaf: u32, subleaf: u32) -> TdxCpuid {
        tdx_cpuid(leaf, subleaf, 0x21, 0x8000_0008)
    }

    #[test]
    fn tdx_cpuid_table() {
        // Detection's leaves are the module's own: no #VE.
        assert_eq!(cpuid(0, 0), TdxCpuid::Answer { leaf: 0 });
        assert_eq!(cpuid(0x21, 0), TdxCpuid::Answer { leaf: 0x21 });
        assert_eq!(cpuid(1, 7), TdxCpuid::Answer { leaf: 1 }, "sub-leaf n/a");
        // The hypervisor range, faulting leaves, unlisted sub-leaves: #VE.
        for (l, s) in [
            (0x4000_0000, 0),
            (0x4fff_ffff, 0),
            (6, 0),
            (0x1f, 0),
            (0x8000_0006, 0),
            (0x21, 1),
            (4, 5),
            (2, 0),
        ] {
            assert_eq!(cpuid(l, s), TdxCpuid::Ve, "{l:#x}.{s}");
        }
        // Past the maxima: the last basic leaf answers.
        assert_eq!(
            cpuid(0x22, 0),
            TdxCpuid::Answer { leaf: 0x21 },
            "0x21 sub-leaf 0"
        );
        assert_eq!(cpuid(0x8000_001f, 0), TdxCpuid::Answer { leaf: 0x21 });
        assert_eq!(
            cpuid(0x3000_0000, 1),
            TdxCpuid::Ve,
            "remapped to 0x21.1: unlisted"
        );
    }

    #[test]
    fn tdx_msr_table() {
        use RawMsr::{Gp, Native, Ve};
        // SEV_STATUS and the GHCB MSR are outside the MSR bitmap: #VE, not #GP.
        assert_eq!(tdx_msr(ghcb::MSR_SEV_STATUS, None, 0), Ve);
        assert_eq!(tdx_msr(ghcb::MSR_GHCB, Some(1), 0), Ve);
        assert_eq!(tdx_msr(0x0bad_0000, None, 0), Ve);
        // Native reads, #VE writes.
        assert_eq!(tdx_msr(msr::TSC, None, 0), Native);
        assert_eq!(tdx_msr(msr::TSC, Some(0), 0), Ve);
        assert_eq!(tdx_msr(msr::KERNEL_GS_BASE, None, 0), Native);
        assert_eq!(tdx_msr(msr::KERNEL_GS_BASE, Some(0x1000), 0), Native);
        // Not in the table: #VE (the APIC base, the x2APIC timer registers).
        assert_eq!(tdx_msr(msr::APIC_BASE, None, 0), Ve);
        for timer in [0x80f, 0x832, 0x838, 0x83e, 0x802, 0x830] {
            assert_eq!(tdx_msr(timer, Some(0), 0), Ve, "{timer:#x}");
        }
        // Virtualised x2APIC registers, reserved ones.
        assert_eq!(tdx_msr(0x80b, Some(0), 0), Native, "EOI");
        assert_eq!(tdx_msr(0x808, None, 0), Native, "TPR");
        assert_eq!(tdx_msr(0x827, None, 0), Native, "IRR7");
        assert_eq!(tdx_msr(0x83f, Some(0x30), 0), Native, "self IPI");
        assert_eq!(tdx_msr(0x800, None, 0), Gp);
        assert_eq!(tdx_msr(0x840, None, 0), Gp);
        // EFER: reads native; writes only change SCE (LMA ignored).
        let td = TDX_INITIAL_EFER | efer::LMA;
        assert_eq!(tdx_msr(msr::EFER, None, td), Native);
        assert_eq!(tdx_msr(msr::EFER, Some(td), td), Native);
        assert_eq!(
            tdx_msr(msr::EFER, Some(TDX_INITIAL_EFER), td),
            Native,
            "LMA kept"
        );
        assert_eq!(tdx_msr(msr::EFER, Some(td & !efer::SCE), td), Native);
        assert_eq!(tdx_msr(msr::EFER, Some(td & !efer::NXE), td), Ve);
        assert_eq!(tdx_msr(msr::EFER, Some(td & !efer::LME), td), Ve);
        // The PVH entry's `rdmsr; or LME; wrmsr` from the TD's initial EFER changes nothing.
        assert_eq!(
            tdx_msr(
                msr::EFER,
                Some(TDX_INITIAL_EFER | efer::LME),
                TDX_INITIAL_EFER
            ),
            Native
        );
    }

    #[test]
    fn sev_es_msrs() {
        assert_eq!(sev_es_msr(ghcb::MSR_GHCB), RawMsr::Ghcb);
        assert_eq!(sev_es_msr(ghcb::MSR_SEV_STATUS), RawMsr::Ghcb);
        assert_eq!(sev_es_msr(msr::EFER), RawMsr::Native);
        assert_eq!(sev_es_msr(msr::KERNEL_GS_BASE), RawMsr::Native);
        for intercepted in [
            msr::TSC,
            msr::APIC_BASE,
            msr::MISC_ENABLE,
            0x80b,
            0x0bad_0000,
        ] {
            assert_eq!(sev_es_msr(intercepted), RawMsr::Vc, "{intercepted:#x}");
        }
    }
}
