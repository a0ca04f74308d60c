//! The guest's checks of what its host answers, as pure functions.
//!
//! Under TDX and SEV-ES the host is untrusted: every value it returns (a TDVMCALL status and
//! its result registers, a GHCB page after VMGEXIT, a GHCB MSR-protocol response, the #VE
//! information of an EPT violation) is checked before the guest uses it. The decisions live
//! here, apart from the asm that fetches the values, so the guest kernel, the host unit tests
//! and the `validators` cargo-fuzz target (`fuzz/fuzz_targets/validators.rs`) run the same
//! code. Each check returns the value the guest may use, or an [`Invalid`] naming what was
//! wrong; the kernel turns that into its own error types.
//!
//! Nothing here panics, whatever the input (the fuzz target holds it to that).
#![forbid(unsafe_code)]

use crate::access::{Direction, Width};
use crate::ghcb::{self, MsrResponse, event, off, result, valid_bit};
use crate::tdx::{self, Gpaw, ept_qual, status};

/// A host answer the guest refuses: `what` names the check (a diagnostic for the KTAP
/// output), `value` is the offending value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// What was wrong.
    pub what: &'static str,
    /// The value concerned.
    pub value: u64,
}

impl Invalid {
    const fn new(what: &'static str, value: u64) -> Self {
        Self { what, value }
    }
}

/// Checks that `value`, a host's answer to a `width`-byte read, fits the access: a wider
/// value is a lie the guest would otherwise truncate silently.
#[inline]
pub const fn width_fits(width: Width, value: u64, what: &'static str) -> Result<u64, Invalid> {
    if width.fits(value) {
        Ok(value)
    } else {
        Err(Invalid::new(what, value))
    }
}

// ----- TDX ------------------------------------------------------------------------------------

/// Why a TDG.VP.VMCALL did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdvmcallError {
    /// The TDX module refused the TDCALL itself (RAX, e.g. TDX_OPERAND_INVALID for a bad
    /// exposure bitmap); the host never saw it.
    Module(u64),
    /// The host answered with a TDVMCALL status other than SUCCESS (R10, GHCI 1.5 table 2-5).
    Vmcall(u64),
}

/// Checks the two statuses of a TDG.VP.VMCALL: the TDX module's completion status (RAX) and
/// the host's TDVMCALL status (R10). Both must be success before any result register is used.
#[inline]
pub const fn tdvmcall_status(module: u64, vmcall: u64) -> Result<(), TdvmcallError> {
    if module != tdx::TDX_SUCCESS {
        Err(TdvmcallError::Module(module))
    } else if vmcall != status::SUCCESS {
        Err(TdvmcallError::Vmcall(vmcall))
    } else {
        Ok(())
    }
}

/// The GPAW in TDG.VP.INFO RCX\[5:0\], which must be 48 or 52 (TDX module ABI spec,
/// TDG.VP.INFO), or exactly `declared_sim_bits` when the host declared a simulated TDX on a
/// narrower vCPU ([`Gpaw::simulated`]; `cmdline::KEY_SIM_PHYS_BITS`). The invalid value
/// reported is the whole RCX.
pub const fn vp_info_gpaw(rcx: u64, declared_sim_bits: Option<u8>) -> Result<Gpaw, Invalid> {
    match Gpaw::simulated(rcx & tdx::VP_INFO_GPAW_MASK, declared_sim_bits) {
        Some(g) => Ok(g),
        None => Err(Invalid::new("TDG.VP.INFO GPAW (48 or 52)", rcx)),
    }
}

/// What TDG.VP.VEINFO.GET returned for the #VE being handled (TDX module ABI spec,
/// TDG.VP.VEINFO.GET; Linux `tdx_get_ve_info()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VeReport {
    /// RCX\[31:0\]: the exit reason.
    pub exit_reason: u32,
    /// RDX: the exit qualification.
    pub qualification: u64,
    /// R8: the guest linear address.
    pub gla: u64,
    /// R9: the guest physical address.
    pub gpa: u64,
    /// R10\[31:0\]: the instruction length. Not defined for an EPT violation (Intel SDM vol.
    /// 3C 28.2.5 defines the VM-exit instruction length only for instruction exits, and the
    /// TDX module copies the VMCS field as it is: `tdx_inject_ve()`), so [`ve_report`] never
    /// looks at it: the length is the decoded instruction's (Linux `ve_instr_len()` refuses
    /// to use it too).
    pub insn_len: u32,
}

/// What the guest itself found out about the access that raised the #VE: the decoded
/// instruction and the page-table walk of its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedAccess {
    /// Load or store.
    pub direction: Direction,
    /// The linear address it accessed.
    pub linear: u64,
    /// The GPA `linear` maps to in the guest's page tables (`None`: unmapped).
    pub mapped_gpa: Option<u64>,
}

/// The checks of a #VE report that need no decoding: an EPT violation (the only #VE the guest
/// emulates) on a GPA with the shared bit, below 2^GPAW. [`ve_report`] repeats them; the
/// handler runs them first so a #VE that is not MMIO is named as such, not as an
/// undecodable instruction.
pub const fn ve_header(report: &VeReport, gpaw: Gpaw) -> Result<(), Invalid> {
    if report.exit_reason as u64 != tdx::EXIT_REASON_EPT_VIOLATION {
        return Err(Invalid::new(
            "#VE for an exit reason other than EPT violation",
            report.exit_reason as u64,
        ));
    }
    if report.gpa & gpaw.shared_bit() == 0 || !gpaw.contains(report.gpa) {
        return Err(Invalid::new(
            "#VE EPT violation on a GPA that is not shared (or beyond GPAW)",
            report.gpa,
        ));
    }
    Ok(())
}

/// Checks the TDX module's #VE report against the access the guest decoded: [`ve_header`],
/// then the qualification's access type (bits 2:0) must be exactly the instruction's
/// direction, a valid GLA the accessed address, and the GPA the one that address maps to.
/// Returns the GPA without the shared bit, where the emulated access goes. The reported
/// instruction length is not checked: it is undefined for EPT violations
/// ([`VeReport::insn_len`]); the guest moves RIP by the decoded length.
pub const fn ve_report(
    report: &VeReport,
    access: &DecodedAccess,
    gpaw: Gpaw,
) -> Result<u64, Invalid> {
    if let Err(e) = ve_header(report, gpaw) {
        return Err(e);
    }
    let want = match access.direction {
        Direction::Read => ept_qual::READ,
        Direction::Write => ept_qual::WRITE,
    };
    if report.qualification & ept_qual::ACCESS_MASK != want {
        return Err(Invalid::new(
            "#VE exit qualification's access type differs from the instruction",
            report.qualification,
        ));
    }
    if report.qualification & ept_qual::GLA_VALID != 0 && report.gla != access.linear {
        return Err(Invalid::new(
            "#VE guest linear address differs from the instruction's",
            report.gla,
        ));
    }
    let Some(mapped) = access.mapped_gpa else {
        return Err(Invalid::new(
            "#VE on an unmapped linear address",
            access.linear,
        ));
    };
    if mapped != report.gpa {
        return Err(Invalid::new(
            "#VE GPA differs from the accessed address's mapping",
            report.gpa,
        ));
    }
    Ok(report.gpa & !gpaw.shared_bit())
}

// ----- SEV-ES: the GHCB MSR protocol ----------------------------------------------------------

/// A checked SEV information response (GHCB MSR protocol 0x001, GHCB spec 2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevInfoReply {
    /// Highest GHCB protocol version the host speaks.
    pub max: u16,
    /// Lowest GHCB protocol version the host speaks.
    pub min: u16,
    /// C-bit position, in [`ghcb::CBIT_MIN`]..=[`ghcb::CBIT_MAX`].
    pub cbit: u8,
}

impl SevInfoReply {
    /// The version both sides speak: the host's highest, capped at this guest's.
    pub const fn version(&self) -> u16 {
        if self.max < ghcb::GHCB_VERSION_MAX {
            self.max
        } else {
            ghcb::GHCB_VERSION_MAX
        }
    }
}

/// Checks the GHCB MSR value after an SEV information request: a 0x001 response (reserved
/// bits 23:12 clear) whose version range overlaps this guest's
/// ([`ghcb::GHCB_VERSION_MIN`]..=[`ghcb::GHCB_VERSION_MAX`]) with min <= max, and whose
/// C-bit is in [`ghcb::CBIT_MIN`]..=[`ghcb::CBIT_MAX`].
pub const fn sev_info(raw: u64) -> Result<SevInfoReply, Invalid> {
    let MsrResponse::SevInfo { max, min, cbit } = MsrResponse::decode(raw) else {
        return Err(Invalid::new(
            "GHCB MSR SEV information request (expected response 0x001)",
            raw,
        ));
    };
    if min > ghcb::GHCB_VERSION_MAX || max < ghcb::GHCB_VERSION_MIN || min > max {
        return Err(Invalid::new(
            "GHCB protocol version range (this guest speaks 1-2)",
            raw,
        ));
    }
    if cbit < ghcb::CBIT_MIN || cbit > ghcb::CBIT_MAX {
        return Err(Invalid::new(
            "C-bit position in the SEV information response (32-51)",
            cbit as u64,
        ));
    }
    Ok(SevInfoReply { max, min, cbit })
}

/// Checks the GHCB MSR value after an MSR-protocol CPUID request: a 0x005 response; returns
/// the register value (GHCBData\[63:32\]).
pub const fn msr_cpuid_response(raw: u64) -> Result<u32, Invalid> {
    match MsrResponse::decode(raw) {
        MsrResponse::Cpuid { value } => Ok(value),
        _ => Err(Invalid::new(
            "GHCB MSR CPUID request (expected response 0x005)",
            raw,
        )),
    }
}

/// Checks CPUID 0x8000001F EAX as the host reported it: SEV and SEV-ES must both be set (the
/// guest runs under SEV-ES, so a host denying it lies).
pub const fn sev_cpuid_features(eax: u32) -> Result<(), Invalid> {
    let both = ghcb::CPUID_SEV | ghcb::CPUID_SEV_ES;
    if eax & both == both {
        Ok(())
    } else {
        Err(Invalid::new(
            "CPUID 0x8000001F EAX through the MSR protocol (SEV and SEV-ES bits)",
            eax as u64,
        ))
    }
}

/// Checks CPUID 0x8000001F EBX as the host reported it: EBX\[5:0\] must be the C-bit of the
/// SEV information response.
pub const fn sev_cpuid_cbit(ebx: u32, cbit: u8) -> Result<(), Invalid> {
    if ebx & ghcb::CPUID_SEV_CBIT_MASK == cbit as u32 {
        Ok(())
    } else {
        Err(Invalid::new(
            "CPUID 0x8000001F EBX[5:0] (C-bit) disagrees with the SEV information",
            ebx as u64,
        ))
    }
}

// ----- SEV-ES: the GHCB page ------------------------------------------------------------------

/// The host's answer in the GHCB page, copied out of the shared page once (so the host cannot
/// change a value between its check and its use).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GhcbReply {
    /// SW_EXITINFO1 as returned.
    pub info1: u64,
    /// SW_EXITINFO2 as returned.
    pub info2: u64,
    /// The valid bitmap as returned.
    pub valid: [u8; 16],
    /// RAX as returned.
    pub rax: u64,
    /// RBX as returned.
    pub rbx: u64,
    /// RCX as returned.
    pub rcx: u64,
    /// RDX as returned.
    pub rdx: u64,
}

/// What a GHCB request came to, once [`GhcbReply::outcome`] accepted SW_EXITINFO1/2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GhcbOutcome {
    /// SW_EXITINFO1 = 0: done.
    Ok,
    /// SW_EXITINFO1 = 1: the host asks the guest to take this exception (#GP or #UD).
    Exception(u8),
    /// SW_EXITINFO1 = 2: the host refused, reason in SW_EXITINFO2 ([`ghcb::error`]).
    Error(u64),
}

/// The diagnostic of an unanswered GHCB request.
pub const GHCB_UNANSWERED: &str =
    "GHCB answer: SW_EXITINFO1/2 not marked valid (the host did not answer)";

impl GhcbReply {
    /// Whether the host returned the 8-byte field at GHCB offset `off` marked valid (no
    /// other check; an offset beyond the bitmap is unmarked).
    pub const fn raw_is_marked(&self, off: usize) -> bool {
        let bit = valid_bit(off);
        let byte = bit / 8;
        byte < self.valid.len() && self.valid[byte] & (1 << (bit % 8)) != 0
    }

    /// The register at GHCB offset `off` (RAX, RBX, RCX, RDX), if the host marked it valid.
    pub const fn reg(&self, off: usize) -> Option<u64> {
        if !self.raw_is_marked(off) {
            return None;
        }
        match off {
            off::RAX => Some(self.rax),
            off::RBX => Some(self.rbx),
            off::RCX => Some(self.rcx),
            off::RDX => Some(self.rdx),
            _ => None,
        }
    }

    /// Checks SW_EXITINFO1/2 (GHCB spec 2.x, 4.1 "GHCB response"). Both must be marked valid,
    /// as the host does for every request it processed (Linux `svm_vmgexit_success()` and
    /// friends; the guest zeroed the page before the request, so unmarked means the host did
    /// not answer). SW_EXITINFO1 must be 0, 1 with a valid exception event in SW_EXITINFO2
    /// (#GP or #UD only, as Linux's `verify_exception_info()`), or 2 with an error reason.
    /// `request` names the request in the diagnostics of a bad SW_EXITINFO1/2.
    pub const fn outcome(&self, request: &'static str) -> Result<GhcbOutcome, Invalid> {
        if !self.raw_is_marked(off::SW_EXIT_INFO_1) || !self.raw_is_marked(off::SW_EXIT_INFO_2) {
            return Err(Invalid::new(GHCB_UNANSWERED, self.info1));
        }
        match self.info1 {
            result::OK => Ok(GhcbOutcome::Ok),
            result::EXCEPTION => {
                let e = self.info2;
                let vector = (e & event::VECTOR_MASK) as u8;
                if e & event::VALID != 0
                    && e & event::TYPE_MASK == event::TYPE_EXCEPTION
                    && (vector == event::VECTOR_GP || vector == event::VECTOR_UD)
                {
                    Ok(GhcbOutcome::Exception(vector))
                } else {
                    Err(Invalid::new(request, e))
                }
            }
            result::ERROR => Ok(GhcbOutcome::Error(self.info2)),
            other => Err(Invalid::new(request, other)),
        }
    }

    /// The register at `off`, which the host must have marked valid (the invalid value
    /// reported is SW_EXITINFO1). No width check: see [`Self::reg_fits`].
    pub const fn reg_valid(&self, off: usize, what: &'static str) -> Result<u64, Invalid> {
        match self.reg(off) {
            Some(v) => Ok(v),
            None => Err(Invalid::new(what, self.info1)),
        }
    }

    /// The register at `off`, marked valid and within `width`.
    pub const fn reg_fits(
        &self,
        off: usize,
        width: Width,
        what: &'static str,
    ) -> Result<u64, Invalid> {
        match self.reg_valid(off, what) {
            Ok(v) => width_fits(width, v, what),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ghcb::MsrResponse;

    const W: &str = "what";

    #[test]
    fn width_boundaries() {
        assert_eq!(width_fits(Width::B1, 0xff, W), Ok(0xff));
        assert_eq!(
            width_fits(Width::B1, 0x100, W),
            Err(Invalid {
                what: W,
                value: 0x100
            })
        );
        assert_eq!(width_fits(Width::B2, 0xffff, W), Ok(0xffff));
        assert!(width_fits(Width::B2, 0x1_0000, W).is_err());
        assert_eq!(width_fits(Width::B4, 0xffff_ffff, W), Ok(0xffff_ffff));
        assert!(width_fits(Width::B4, 1 << 32, W).is_err());
        assert!(width_fits(Width::B4, 1 << 63, W).is_err());
        assert_eq!(width_fits(Width::B8, u64::MAX, W), Ok(u64::MAX));
    }

    #[test]
    fn tdvmcall_statuses() {
        assert_eq!(tdvmcall_status(0, 0), Ok(()));
        assert_eq!(
            tdvmcall_status(tdx::TDX_OPERAND_INVALID, 0),
            Err(TdvmcallError::Module(tdx::TDX_OPERAND_INVALID))
        );
        // The module status wins: R10 means nothing when the TDCALL itself failed.
        assert_eq!(
            tdvmcall_status(1, status::INVALID_OPERAND),
            Err(TdvmcallError::Module(1))
        );
        for s in [status::RETRY, status::INVALID_OPERAND, status::KVM_ENOSYS] {
            assert_eq!(tdvmcall_status(0, s), Err(TdvmcallError::Vmcall(s)));
        }
    }

    #[test]
    fn gpaw_from_vp_info() {
        assert_eq!(vp_info_gpaw(48, None), Ok(Gpaw::W48));
        assert_eq!(vp_info_gpaw(52, None), Ok(Gpaw::W52));
        // Bits above RCX[5:0] are not the GPAW.
        assert_eq!(vp_info_gpaw(0x100 | 48, None), Ok(Gpaw::W48));
        for rcx in [0, 47, 49, 51, 53, 0x3f, 64 | 47] {
            assert_eq!(
                vp_info_gpaw(rcx, None),
                Err(Invalid {
                    what: "TDG.VP.INFO GPAW (48 or 52)",
                    value: rcx
                })
            );
        }
        // A real TD reporting 46 fails; the same answer passes only where the host declared
        // a simulated TDX on a 46-bit vCPU, and then with exactly that width.
        assert!(vp_info_gpaw(46, None).is_err());
        assert!(vp_info_gpaw(46, Some(39)).is_err());
        let g = vp_info_gpaw(46, Some(46)).expect("declared");
        assert_eq!((g.bits(), g.is_architectural()), (46, false));
        assert_eq!(vp_info_gpaw(48, Some(46)), Ok(Gpaw::W48));
    }

    const SHARED: u64 = 1 << 47;
    const GPA: u64 = SHARED | 0xfeb0_0010;

    fn good_ve(direction: Direction) -> (VeReport, DecodedAccess) {
        let qual = match direction {
            Direction::Read => ept_qual::READ,
            Direction::Write => ept_qual::WRITE,
        } | ept_qual::GLA_VALID
            | ept_qual::GLA_TRANSLATED;
        (
            VeReport {
                exit_reason: tdx::EXIT_REASON_EPT_VIOLATION as u32,
                qualification: qual,
                gla: 0xffff_8000_0010_0010,
                gpa: GPA,
                insn_len: 3,
            },
            DecodedAccess {
                direction,
                linear: 0xffff_8000_0010_0010,
                mapped_gpa: Some(GPA),
            },
        )
    }

    fn what(r: Result<u64, Invalid>) -> &'static str {
        r.expect_err("accepted").what
    }

    #[test]
    fn ve_accepts_a_consistent_report() {
        for d in [Direction::Read, Direction::Write] {
            let (r, a) = good_ve(d);
            assert_eq!(ve_header(&r, Gpaw::W48), Ok(()));
            assert_eq!(ve_report(&r, &a, Gpaw::W48), Ok(0xfeb0_0010));
            // Without a valid GLA the GLA is not compared.
            let r = VeReport {
                qualification: r.qualification & !ept_qual::GLA_VALID,
                gla: 0,
                ..r
            };
            assert_eq!(ve_report(&r, &a, Gpaw::W48), Ok(0xfeb0_0010));
        }
    }

    #[test]
    fn ve_rejects_each_lie() {
        let (r, a) = good_ve(Direction::Read);
        let g = Gpaw::W48;
        let other_reason = VeReport {
            exit_reason: 30,
            ..r
        };
        assert_eq!(
            what(ve_report(&other_reason, &a, g)),
            "#VE for an exit reason other than EPT violation"
        );
        assert!(ve_header(&other_reason, g).is_err());
        // A private GPA (no shared bit), and one beyond GPAW.
        for gpa in [GPA & !SHARED, GPA | 1 << 48, GPA | 1 << 63] {
            let lie = VeReport { gpa, ..r };
            let mapped = DecodedAccess {
                mapped_gpa: Some(gpa),
                ..a
            };
            assert_eq!(
                what(ve_report(&lie, &mapped, g)),
                "#VE EPT violation on a GPA that is not shared (or beyond GPAW)",
                "{gpa:#x}"
            );
        }
        // The GPAW 52 shared bit is not the GPAW 48 one.
        assert!(ve_header(&r, Gpaw::W52).is_err());
        // The length is undefined for EPT violations: whatever it says, it is not a lie.
        for insn_len in [0, 2, 4, 15, u32::MAX] {
            assert_eq!(
                ve_report(&VeReport { insn_len, ..r }, &a, g),
                Ok(0xfeb0_0010)
            );
        }
        // A write qualification for a load, both bits, none, and a fetch alongside the read.
        for q in [
            ept_qual::WRITE,
            ept_qual::READ | ept_qual::WRITE,
            0,
            ept_qual::READ | ept_qual::FETCH,
        ] {
            assert_eq!(
                what(ve_report(
                    &VeReport {
                        qualification: q,
                        ..r
                    },
                    &a,
                    g
                )),
                "#VE exit qualification's access type differs from the instruction",
                "{q:#x}"
            );
        }
        let (w, wa) = good_ve(Direction::Write);
        assert!(
            ve_report(
                &VeReport {
                    qualification: ept_qual::READ,
                    ..w
                },
                &wa,
                g
            )
            .is_err()
        );
        assert_eq!(
            what(ve_report(
                &VeReport {
                    gla: r.gla + 1,
                    ..r
                },
                &a,
                g
            )),
            "#VE guest linear address differs from the instruction's"
        );
        let unmapped = DecodedAccess {
            mapped_gpa: None,
            ..a
        };
        assert_eq!(
            ve_report(&r, &unmapped, g),
            Err(Invalid {
                what: "#VE on an unmapped linear address",
                value: a.linear
            })
        );
        let elsewhere = DecodedAccess {
            mapped_gpa: Some(GPA + 0x1000),
            ..a
        };
        assert_eq!(
            what(ve_report(&r, &elsewhere, g)),
            "#VE GPA differs from the accessed address's mapping"
        );
    }

    fn sev_info_raw(max: u16, min: u16, cbit: u8) -> u64 {
        MsrResponse::SevInfo { max, min, cbit }.encode()
    }

    #[test]
    fn sev_info_boundaries() {
        assert_eq!(
            sev_info(sev_info_raw(2, 1, 47)),
            Ok(SevInfoReply {
                max: 2,
                min: 1,
                cbit: 47
            })
        );
        assert_eq!(sev_info(sev_info_raw(2, 1, 47)).unwrap().version(), 2);
        assert_eq!(sev_info(sev_info_raw(9, 2, 51)).unwrap().version(), 2);
        assert_eq!(sev_info(sev_info_raw(1, 1, 32)).unwrap().version(), 1);
        // Version ranges that miss 1..=2, or are upside down.
        for (max, min) in [(0, 0), (3, 3), (1, 2), (9, 3), (u16::MAX, 3)] {
            assert_eq!(
                what(sev_info(sev_info_raw(max, min, 47)).map(|_| 0)),
                "GHCB protocol version range (this guest speaks 1-2)",
                "{max} {min}"
            );
        }
        for cbit in [0, 31, 52, 63, 255] {
            assert_eq!(
                sev_info(sev_info_raw(2, 1, cbit)),
                Err(Invalid {
                    what: "C-bit position in the SEV information response (32-51)",
                    value: u64::from(cbit)
                })
            );
        }
        // Another response code, and reserved bits 23:12 set.
        for raw in [0x005, sev_info_raw(2, 1, 47) | 0x1000, 0] {
            assert_eq!(
                what(sev_info(raw).map(|_| 0)),
                "GHCB MSR SEV information request (expected response 0x001)"
            );
        }
    }

    #[test]
    fn msr_cpuid_responses() {
        assert_eq!(msr_cpuid_response(0x0000_002f_4000_0005), Ok(0x2f));
        assert_eq!(msr_cpuid_response(0xdead_beef_0000_0005), Ok(0xdead_beef));
        for raw in [0x004, 0x001, 0x0000_002f_4000_0004, 0] {
            assert!(msr_cpuid_response(raw).is_err(), "{raw:#x}");
        }
    }

    #[test]
    fn sev_cpuid_checks() {
        assert_eq!(sev_cpuid_features(0b1010), Ok(()));
        assert_eq!(sev_cpuid_features(0xffff_ffff), Ok(()));
        for eax in [0, 0b0010, 0b1000] {
            assert!(sev_cpuid_features(eax).is_err());
        }
        assert_eq!(sev_cpuid_cbit(0x16f, 47), Ok(()));
        assert!(sev_cpuid_cbit(0x170, 47).is_err());
        assert!(sev_cpuid_cbit(47 | 0x40, 51).is_err());
    }

    fn mark(r: &mut GhcbReply, off: usize) {
        let bit = valid_bit(off);
        r.valid[bit / 8] |= 1 << (bit % 8);
    }

    fn answered(info1: u64, info2: u64) -> GhcbReply {
        let mut r = GhcbReply {
            info1,
            info2,
            ..GhcbReply::default()
        };
        mark(&mut r, off::SW_EXIT_INFO_1);
        mark(&mut r, off::SW_EXIT_INFO_2);
        r
    }

    const GP_EVENT: u64 = event::VALID | event::TYPE_EXCEPTION | event::VECTOR_GP as u64;

    #[test]
    fn ghcb_outcomes() {
        assert_eq!(answered(0, 0).outcome(W), Ok(GhcbOutcome::Ok));
        assert_eq!(
            answered(result::EXCEPTION, GP_EVENT).outcome(W),
            Ok(GhcbOutcome::Exception(event::VECTOR_GP))
        );
        let ud = event::VALID | event::TYPE_EXCEPTION | event::VECTOR_UD as u64;
        assert_eq!(
            answered(result::EXCEPTION, ud).outcome(W),
            Ok(GhcbOutcome::Exception(event::VECTOR_UD))
        );
        assert_eq!(
            answered(result::ERROR, ghcb::error::INVALID_EVENT).outcome(W),
            Ok(GhcbOutcome::Error(ghcb::error::INVALID_EVENT))
        );
        // SW_EXITINFO1 beyond 2.
        for info1 in [3, 0x100, u64::MAX] {
            assert_eq!(
                answered(info1, 0).outcome(W),
                Err(Invalid {
                    what: W,
                    value: info1
                })
            );
        }
        // Exception events without the valid bit, of another type (2 = NMI, 0 = external
        // interrupt), or with a vector other than #GP/#UD.
        for info2 in [
            GP_EVENT & !event::VALID,
            (GP_EVENT & !event::TYPE_MASK) | 2 << 8,
            GP_EVENT & !event::TYPE_MASK,
            event::VALID | event::TYPE_EXCEPTION | 14,
            event::VALID | event::TYPE_EXCEPTION | 0x80,
            0,
        ] {
            assert_eq!(
                answered(result::EXCEPTION, info2).outcome(W),
                Err(Invalid {
                    what: W,
                    value: info2
                }),
                "{info2:#x}"
            );
        }
    }

    #[test]
    fn ghcb_unanswered() {
        let mut r = GhcbReply::default();
        assert_eq!(
            r.outcome(W),
            Err(Invalid {
                what: GHCB_UNANSWERED,
                value: 0
            })
        );
        mark(&mut r, off::SW_EXIT_INFO_1);
        assert!(r.outcome(W).is_err());
        let mut r = GhcbReply::default();
        mark(&mut r, off::SW_EXIT_INFO_2);
        assert!(r.outcome(W).is_err());
    }

    #[test]
    fn ghcb_registers() {
        let mut r = answered(0, 0);
        r.rax = 0x1_0000_0000;
        r.rbx = 0xffff_ffff;
        // Unmarked RAX: refused whatever its value.
        assert_eq!(r.reg(off::RAX), None);
        assert_eq!(
            r.reg_fits(off::RAX, Width::B8, W),
            Err(Invalid { what: W, value: 0 })
        );
        assert!(r.reg_valid(off::RAX, W).is_err());
        mark(&mut r, off::RAX);
        mark(&mut r, off::RBX);
        assert_eq!(r.reg(off::RAX), Some(0x1_0000_0000));
        assert_eq!(r.reg_valid(off::RAX, W), Ok(0x1_0000_0000));
        assert_eq!(
            r.reg_fits(off::RAX, Width::B4, W),
            Err(Invalid {
                what: W,
                value: 0x1_0000_0000
            })
        );
        assert_eq!(r.reg_fits(off::RBX, Width::B4, W), Ok(0xffff_ffff));
        assert!(r.reg_fits(off::RBX, Width::B2, W).is_err());
        // A marked field that is not one of the four registers, and offsets off the page.
        mark(&mut r, off::SW_SCRATCH);
        assert_eq!(r.reg(off::SW_SCRATCH), None);
        assert!(!r.raw_is_marked(4096));
        assert!(!r.raw_is_marked(usize::MAX));
        assert_eq!(r.reg(usize::MAX), None);
    }
}
