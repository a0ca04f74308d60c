//! Platform detection, in an order that is safe on every platform.
//!
//! 1. **CPUID leaf 0, raw, under the fault fixup.** On SEV-ES the CPU raises #VC for CPUID
//!    (error code SVM_EXIT_CPUID 0x72: KVM intercepts CPUID for every guest), and that #VC
//!    alone tells SEV-ES apart; RDMSR of SEV_STATUS then confirms it, which is safe there:
//!    SEV-ES does not intercept SEV_STATUS (Linux `sme_enable()` reads it raw while its
//!    early #VC handler `do_vc_no_ghcb()` serves CPUID only). In a TD the TDX module answers
//!    leaf 0 itself, without a #VE (intel/tdx-module `td_cpuid_exit()`, leaf 0 in its
//!    CPUID table). Elsewhere CPUID simply answers.
//! 2. **CPUID leaf 0x21**, if leaf 0 reaches it: "IntelTDX    " means TDX (GHCI 1.5 2.4.5,
//!    Linux `tdx_early_init()`); the TDX module answers this leaf itself too.
//! 3. **SEV_STATUS only where it exists**, as Linux's `sme_enable()` orders it: when CPUID
//!    0x80000000 reaches 0x8000001F and 0x8000001F EAX says SEV (an SEV-ES guest whose
//!    hypervisor does not intercept CPUID would get this far).
//!
//! Why not SEV_STATUS first (what this kernel did before): in a TD, RDMSR of 0xC0010131
//! raises a **#VE**, not a #GP — the MSR is outside the MSR-bitmap ranges, which the TDX
//! module answers with a #VE (`rd_wr_msr_generic_checks()` in `td_msr_access.c`) — and the
//! #VE information stays valid until TDG.VP.VEINFO.GET reads it, so a fixup that swallowed
//! it would turn the TD's next #VE into a #DF (`tdx_inject_ve()`). The fixup calls
//! TDG.VP.VEINFO.GET for any #VE it takes (`crate::arch::trap`), but with this order no
//! TD ever takes one here. On older AMD parts without SEV the MSR does not exist at all
//! (#GP; the 2021 Hygon fix to `sme_enable()`), which step 3's CPUID check avoids as well.
//!
//! This module, the legacy backend and the SEV-ES backend's GHCB-MSR and HLT wrappers are
//! the only places allowed to run raw intercepted instructions (a host test disassembles the
//! kernel to check); every raw CPUID is the one wrapper `crate::arch::insn::cpuid`.

use crate::arch::insn::{self, Fault};
use protocol::ghcb::{self, MSR_SEV_STATUS, SEV_STATUS_SEV_ES};
use protocol::x86::vector;

/// The TDX identification leaf (`protocol::tdx::CPUID_LEAF`, 0x21).
const TDX_LEAF: u32 = protocol::tdx::CPUID_LEAF;
/// The extended-leaf range's maximum leaf.
const EXT_MAX_LEAF: u32 = 0x8000_0000;

/// What detection found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// Neither SEV-ES nor TDX.
    Legacy,
    /// Intel TDX.
    Tdx,
    /// AMD SEV-ES, with the SEV_STATUS value read.
    SevEs {
        /// SEV_STATUS.
        status: u64,
    },
    /// The platform contradicted itself (a #VC for CPUID but no SEV-ES in SEV_STATUS, or
    /// an exception no platform raises for CPUID): `what`, with the value concerned.
    Inconsistent {
        /// What was wrong.
        what: &'static str,
        /// The SEV_STATUS read, or the exception's vector and error code.
        value: u64,
    },
}

/// Runs the probes (see the module documentation for the order).
#[inline(never)]
pub fn detect() -> Detected {
    let leaf0 = match insn::cpuid(0, 0) {
        Ok(r) => r,
        Err(Fault {
            vector: vector::VC,
            error_code,
        }) if error_code == ghcb::exit::CPUID => return sev_es_confirmed(),
        // A TD whose CPUID raises #VE (the TD asked for it with TDG.VP.CPUIDVE.SET; the fixup
        // has read the #VE's information): only a TD has #VE.
        Err(Fault {
            vector: vector::VE, ..
        }) => return Detected::Tdx,
        Err(f) => {
            return Detected::Inconsistent {
                what: "CPUID leaf 0 raised an exception no platform raises for it (vector << 32 | error code)",
                value: u64::from(f.vector) << 32 | f.error_code,
            };
        }
    };
    if leaf0.eax >= TDX_LEAF
        && let Ok(r) = insn::cpuid(TDX_LEAF, 0)
    {
        // EBX, EDX, ECX spell "IntelTDX    " (GHCI 1.5 2.4.5 "TDX detection"; Linux
        // `tdx_early_init`).
        let got = [
            r.ebx.to_le_bytes(),
            r.edx.to_le_bytes(),
            r.ecx.to_le_bytes(),
        ];
        if got.as_flattened() == protocol::tdx::CPUID_IDENT {
            return Detected::Tdx;
        }
    }
    // Not a TD: SEV_STATUS exists where CPUID says SEV does (Linux `sme_enable()`).
    let sev = insn::cpuid(EXT_MAX_LEAF, 0).is_ok_and(|r| r.eax >= ghcb::CPUID_SEV_LEAF)
        && insn::cpuid(ghcb::CPUID_SEV_LEAF, 0).is_ok_and(|r| r.eax & ghcb::CPUID_SEV != 0);
    if sev
        && let Ok(status) = insn::rdmsr_safe(MSR_SEV_STATUS)
        && status & SEV_STATUS_SEV_ES != 0
    {
        return Detected::SevEs { status };
    }
    Detected::Legacy
}

/// CPUID raised #VC: SEV-ES, if SEV_STATUS (not intercepted under SEV-ES) says so.
fn sev_es_confirmed() -> Detected {
    match insn::rdmsr_safe(MSR_SEV_STATUS) {
        Ok(status) if status & SEV_STATUS_SEV_ES != 0 => Detected::SevEs { status },
        Ok(status) => Detected::Inconsistent {
            what: "CPUID raised #VC but SEV_STATUS has no SEV-ES bit",
            value: status,
        },
        Err(f) => Detected::Inconsistent {
            what: "CPUID raised #VC but RDMSR of SEV_STATUS faulted (vector)",
            value: u64::from(f.vector),
        },
    }
}

/// Reads SEV_STATUS raw under the fixup, whatever the platform: what detection did before it
/// asked CPUID first (`cvmprobe.inject=sev-status-probe`). In a TD this takes a #VE, which
/// the fixup swallows after reading its information (or without, after
/// `crate::platform::tdx::skip_veinfo_in_fixup`). Returns the fault taken, if any.
#[inline(never)]
pub fn probe_sev_status() -> Result<u64, Fault> {
    insn::rdmsr_safe(MSR_SEV_STATUS)
}
