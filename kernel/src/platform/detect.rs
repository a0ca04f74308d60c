//! Platform detection, in the order that is safe on every platform.
//!
//! On SEV-ES, CPUID itself raises #VC, so SEV_STATUS (0xC0010131) is read first, under the
//! fault fixup: outside SEV it may #GP, and SEV-ES does not intercept it. Then CPUID leaf 0x21
//! tells TDX apart (on TDX the TDX module answers it without a #VE). This module, the legacy
//! backend and the SEV-ES backend's GHCB-MSR and HLT wrappers are the only places allowed to
//! run raw intercepted instructions (a host test disassembles the kernel to check).

use crate::arch::insn;
use protocol::ghcb::{MSR_SEV_STATUS, SEV_STATUS_SEV_ES};

/// CPUID leaf 0x21 subleaf 0 on TDX: EBX, EDX, ECX = "Inte", "lTDX", "    " (GHCI 1.5,
/// 2.4.5 "TDX detection"; Linux `tdx_early_init`).
const TDX_IDENT: [&[u8; 4]; 3] = [b"Inte", b"lTDX", b"    "];
/// The TDX identification leaf.
const TDX_LEAF: u32 = 0x21;

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
}

/// Runs the probes.
#[inline(never)]
pub fn detect() -> Detected {
    if let Ok(status) = insn::rdmsr_safe(MSR_SEV_STATUS)
        && status & SEV_STATUS_SEV_ES != 0
    {
        return Detected::SevEs { status };
    }
    let max = insn::cpuid(0, 0).eax;
    if max >= TDX_LEAF {
        let r = insn::cpuid(TDX_LEAF, 0);
        let got = [
            r.ebx.to_le_bytes(),
            r.edx.to_le_bytes(),
            r.ecx.to_le_bytes(),
        ];
        if got.iter().zip(TDX_IDENT).all(|(g, want)| g == want) {
            return Detected::Tdx;
        }
    }
    Detected::Legacy
}
