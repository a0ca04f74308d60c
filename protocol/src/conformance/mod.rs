//! The raw GHCI / GHCB conformance cases: one table, used by the guest's `ghci_raw` and
//! `ghcb_raw` suites, by the simulated hosts' tests (`vmm/src/sim/conformance_tests.rs`), by
//! `cvmprobe list` and by the README's "Conformance cases" section.
//!
//! Each [`Case`] is a protocol-level request exactly as the guest sends it (TDX: the
//! TDG.VP.VMCALL registers, RCX exposure mask included; SEV-ES: a GHCB MSR value, or GHCB
//! fields with the valid bits the guest sets, protocol version and usage), the answer KVM
//! gives (read from KVM's code: each case names the function), and where the expectation
//! comes from. [`check`] compares an answer with the expectation; the guest and the host
//! tests call the same function, so a diagnostic reads the same in a KTAP log and in a
//! failed `cargo test`: `expected status 0x8000000000000000 (INVALID_OPERAND) got 0x0`.
//!
//! Some requests end the VM under KVM (ReportFatalError, an SNP-only MSR request from an
//! SEV-ES guest, the "unsupported event" exit): they are documented here with the way the VM
//! ends ([`Expect::VmEnds`]) and checked against the simulated hosts, but never sent by the
//! guest, whose run would stop there. The guest's suites hold only the executed cases
//! ([`executed`]).
//!
//! Addresses that depend on the run (the TDX shared bit, the GHCB page, the page the MapGPA
//! case converts) are symbolic ([`Arg`]) and resolved against [`Addresses`]. Requests that
//! KVM accepts are aimed where they cannot hurt: port [`UNASSIGNED_PORT`] (no device, reads
//! all ones), the test device's memory-like scratch window, a page of the guest's own that
//! nothing else uses.
//!
//! KVM releases differ on a few answers: each case carries current upstream KVM's answer
//! ([`Case::expect`], with a GHCB version 2 VM) and the answers of older releases that differ
//! ([`Case::older`], by [`KvmProfile`]). On a real host the guest accepts any release's
//! answer and says which one it matched ([`check_eras`]); told which KVM to expect
//! (`cvmprobe.kvm=`, which the built-in VMM sets to the profile its sims play), it accepts
//! exactly that release's answer. Answers that depend on the VM rather than the release
//! (GHCB version 1 VMs, a VMM that did not enable the MapGPA exit) are in [`Case::note`].
//!
//! Layout: this file holds the types; [`table`] is the table itself, one row per case;
//! `check.rs` compares answers with it; `markdown.rs` renders the README's table.

use crate::catalog::CaseSpec;
pub use crate::kvm::{KvmProfile, Kvms};
use crate::platform::{PlatformKind, Platforms};
use crate::tdx::{ExposeMask, TdcallRegs, leaf};
use crate::testdev;

/// A port no device claims on the machines cvmprobe runs on (QEMU's PC and microvm, the
/// built-in VMM): reads answer all ones, writes are dropped (QEMU `unassigned_io_read`).
pub const UNASSIGNED_PORT: u16 = 0xf00;
/// A GPA whose MMIO is harmless: the test device's memory-like scratch window
/// ([`testdev::mmio::SCRATCH`]). The MMIO cases here are refused before any access, so the
/// device's access log stays empty.
pub const MMIO_GPA: u64 = testdev::MMIO_BASE + testdev::mmio::SCRATCH;
/// A GPA no device claims, just past the test device's MMIO window: the cases whose MMIO an
/// older KVM performs (the GHCB version 2 limits came in 2026) aim there, so the access
/// reads all ones or is dropped and no device logs it.
pub const UNASSIGNED_MMIO_GPA: u64 = testdev::MMIO_BASE + testdev::MMIO_LEN;
/// SVM_VMGEXIT_GUEST_REQUEST (GHCB spec 2.x table 7, SNP only; Linux `uapi/asm/svm.h`).
pub const SNP_GUEST_REQUEST: u64 = 0x8000_0011;
/// A GPA beyond any MAXPHYADDR (bit 52): `kvm_vcpu_is_legal_gpa()` refuses it for GPAW 48 and 52.
pub const ILLEGAL_GPA: u64 = 1 << 52;
/// The TDVMCALL exposure mask the table uses: R10-R15 (the sub-function and its arguments).
pub const EXPOSE_R10_R15: u64 = ExposeMask::R10
    | ExposeMask::R11
    | ExposeMask::R12
    | ExposeMask::R13
    | ExposeMask::R14
    | ExposeMask::R15;
/// An SVM exit code KVM does not accept in a GHCB: SVM_EXIT_INTR (AMD APM vol. 2 appendix C).
pub const SVM_EXIT_INTR: u64 = 0x60;
/// A KVM hypercall number KVM does not know (Linux `include/uapi/linux/kvm_para.h` stops at 12).
pub const UNKNOWN_KVM_HYPERCALL: u64 = 0x1234;
/// A TDG.VP.VMCALL sub-function neither the GHCI nor KVM defines.
pub const UNKNOWN_SUBFUNCTION: u64 = 0xffff;
/// A GHCB MSR-protocol request code the GHCB spec does not define (low 12 bits 0xff0), with
/// data bits set so "unchanged" is visible.
pub const UNKNOWN_MSR_REQUEST: u64 = 0x0000_cafe_0000_0ff0;

/// An operand whose value may depend on the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// This value.
    Val(u64),
    /// `value | shared bit`: the shared alias of a TDX GPA.
    Shared(u64),
    /// The GPA of the guest's GHCB page plus this offset.
    Ghcb(u64),
    /// The shared alias of the page the guest sets aside for MapGPA (`Addresses::map_gpa_page
    /// | shared bit`).
    MapGpaPage,
}

/// The run's addresses the symbolic operands refer to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Addresses {
    /// The TDX shared bit (`1 << (GPAW - 1)`); 0 on SEV-ES.
    pub shared_bit: u64,
    /// The GPA of the GHCB page; 0 on TDX.
    pub ghcb_gpa: u64,
    /// The GPA (private alias) of a 4 KiB page of the guest that nothing else uses, which the
    /// MapGPA case converts to shared.
    pub map_gpa_page: u64,
}

impl Arg {
    /// The value for this run.
    pub const fn resolve(self, a: &Addresses) -> u64 {
        match self {
            Arg::Val(v) => v,
            Arg::Shared(v) => v | a.shared_bit,
            Arg::Ghcb(o) => a.ghcb_gpa.wrapping_add(o),
            Arg::MapGpaPage => a.map_gpa_page | a.shared_bit,
        }
    }
}

/// A TDG.VP.VMCALL as sent: RAX = TDG.VP.VMCALL, the registers below, every other register 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdxRequest {
    /// RCX: the exposure mask.
    pub rcx: u64,
    /// R10: 0 = GHCI standard, else a vendor-specific (KVM: hypercall number).
    pub r10: u64,
    /// R11: the sub-function.
    pub r11: u64,
    /// R12.
    pub r12: Arg,
    /// R13.
    pub r13: Arg,
    /// R14.
    pub r14: Arg,
    /// R15.
    pub r15: Arg,
}

impl TdxRequest {
    /// The registers loaded for TDCALL.
    pub const fn regs(&self, a: &Addresses) -> TdcallRegs {
        TdcallRegs {
            rax: leaf::VP_VMCALL,
            rcx: self.rcx,
            rdx: 0,
            rbx: 0,
            rsi: 0,
            rdi: 0,
            r8: 0,
            r9: 0,
            r10: self.r10,
            r11: self.r11,
            r12: self.r12.resolve(a),
            r13: self.r13.resolve(a),
            r14: self.r14.resolve(a),
            r15: self.r15.resolve(a),
        }
    }
}

/// One 8-byte GHCB field as written: offset, value, and whether its valid bit is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Byte offset in the GHCB ([`ghcb::off`]).
    pub offset: usize,
    /// Value.
    pub value: Arg,
    /// Marked valid in the valid bitmap.
    pub valid: bool,
}

/// A GHCB-page request: the page is zeroed, these fields written, the GHCB MSR set to the
/// page's GPA, VMGEXIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// The fields written (SW_EXITCODE, SW_EXITINFO1/2 and the exit's inputs).
    pub fields: &'static [Field],
    /// The protocol-version field (offset 0xFFA).
    pub protocol_version: u16,
    /// The GHCB-usage field (offset 0xFFC; 0 = standard).
    pub usage: u32,
}

/// A request exactly as the guest sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// TDCALL(TDG.VP.VMCALL).
    Tdx(TdxRequest),
    /// This value written to the GHCB MSR, VMGEXIT, the MSR read back.
    GhcbMsr(u64),
    /// A GHCB-page request.
    GhcbPage(PageRequest),
}

/// What one output register must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// This value.
    Is(Arg),
    /// The value the request sent, unchanged (GHCB RAX: the RAX the request marked valid, 0
    /// if none, as KVM starts from the valid fields only).
    Unchanged,
    /// Anything (host data, e.g. a CPUID value).
    Any,
    /// A TDX-module status: bits 63:32 equal this value's (bits 31:0 name the operand;
    /// Linux `TDX_SEAMCALL_STATUS_MASK`).
    StatusClass(u64),
}

/// The registers the guest sees after TDCALL(TDG.VP.VMCALL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdxExpect {
    /// RAX: the TDX module's status.
    pub rax: Reg,
    /// R10: the TDVMCALL status.
    pub r10: Reg,
    /// R11.
    pub r11: Reg,
    /// R12.
    pub r12: Reg,
    /// R13.
    pub r13: Reg,
    /// R14.
    pub r14: Reg,
    /// R15.
    pub r15: Reg,
}

/// A GHCB-page answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageExpect {
    /// SW_EXITINFO1 (0 success, 2 error).
    pub info1: u64,
    /// SW_EXITINFO2 (the error reason when SW_EXITINFO1 = 2).
    pub info2: u64,
    /// RAX as returned (KVM marks it valid on every answer).
    pub rax: Reg,
}

/// How KVM ends the VM instead of answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmEnd {
    /// KVM_EXIT_SYSTEM_EVENT, KVM_SYSTEM_EVENT_TDX_FATAL.
    TdxFatal,
    /// KVM_EXIT_SYSTEM_EVENT, KVM_SYSTEM_EVENT_SEV_TERM.
    SevTerm,
    /// KVM_RUN fails (an error from KVM's exit handler).
    KvmRunError,
}

impl VmEnd {
    /// A short name.
    pub const fn name(self) -> &'static str {
        match self {
            VmEnd::TdxFatal => "KVM_SYSTEM_EVENT_TDX_FATAL",
            VmEnd::SevTerm => "KVM_SYSTEM_EVENT_SEV_TERM",
            VmEnd::KvmRunError => "KVM_RUN error",
        }
    }
}

/// The expected answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// TDX registers.
    Tdx(TdxExpect),
    /// The GHCB MSR after an MSR-protocol request.
    Msr(Reg),
    /// The GHCB page after a page request.
    Page(PageExpect),
    /// KVM ends the VM: documented and checked against the sims, never sent by the guest.
    VmEnds {
        /// How.
        end: VmEnd,
        /// Why the guest does not send it.
        why: &'static str,
    },
}

/// One conformance case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// The KTAP case name, `[a-z0-9_]+`, unique in the table.
    pub id: &'static str,
    /// One sentence: what is sent and what KVM answers.
    pub doc: &'static str,
    /// The request.
    pub request: Request,
    /// Current upstream KVM's answer (GHCB version 2).
    pub expect: Expect,
    /// Older releases whose answer differs, each with the releases that give it; every
    /// release not listed gives [`Self::expect`].
    pub older: &'static [Era],
    /// Where the expectation comes from: spec section and KVM function.
    pub source: &'static str,
    /// Answers that depend on the VM's or the VMM's set-up rather than the release, or "".
    pub note: &'static str,
}

/// What a set of KVM releases answers, where it differs from current KVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Era {
    /// The releases.
    pub kvm: Kvms,
    /// Their answer.
    pub expect: Expect,
    /// Why: the function and change that made the difference.
    pub why: &'static str,
}

impl Case {
    /// The guest suite of the TDX cases.
    pub const SUITE_TDX: &'static str = "ghci_raw";
    /// The guest suite of the SEV-ES cases.
    pub const SUITE_SEV_ES: &'static str = "ghcb_raw";

    /// The platform the request belongs to.
    pub const fn platform(&self) -> PlatformKind {
        match self.request {
            Request::Tdx(_) => PlatformKind::Tdx,
            Request::GhcbMsr(_) | Request::GhcbPage(_) => PlatformKind::SevEs,
        }
    }

    /// The guest suite the case belongs to (`ghci_raw` for TDX, `ghcb_raw` for SEV-ES).
    pub const fn suite(&self) -> &'static str {
        match self.platform() {
            PlatformKind::Tdx => Self::SUITE_TDX,
            _ => Self::SUITE_SEV_ES,
        }
    }

    /// Whether the guest sends it (KVM answers instead of ending the VM).
    pub const fn executed(&self) -> bool {
        !matches!(self.expect, Expect::VmEnds { .. })
    }

    /// The releases that give current KVM's answer ([`Self::expect`]).
    pub fn current_kvms(&self) -> Kvms {
        let mut older = 0;
        for e in self.older {
            older |= e.kvm.0;
        }
        Kvms(Kvms::ALL.0 & !older)
    }

    /// The answer of `kvm`.
    pub fn expect_for(&self, kvm: KvmProfile) -> &Expect {
        self.older
            .iter()
            .find(|e| e.kvm.contains(kvm))
            .map_or(&self.expect, |e| &e.expect)
    }

    /// Every answer with the releases that give it, current first.
    pub fn answers(&self) -> impl Iterator<Item = (Kvms, &Expect)> {
        core::iter::once((self.current_kvms(), &self.expect))
            .chain(self.older.iter().map(|e| (e.kvm, &e.expect)))
    }

    /// Whether the answer depends on the KVM release.
    pub const fn varies_by_release(&self) -> bool {
        !self.older.is_empty()
    }

    /// Whether the TDX module answers (a refused exposure mask), so KVM never sees it.
    pub const fn answered_by_tdx_module(&self) -> bool {
        match self.request {
            Request::Tdx(r) => !ExposeMask(r.rcx).is_valid(),
            _ => false,
        }
    }
}

mod check;
#[cfg(any(feature = "std", test))]
mod markdown;
pub mod table;

pub use check::{Answer, Mismatch, check, check_eras, check_expect};
#[cfg(any(feature = "std", test))]
pub use markdown::markdown;
pub use table::CASES;

/// Finds a case by id.
pub fn find(id: &str) -> Option<&'static Case> {
    CASES.iter().find(|c| c.id == id)
}

const fn same_platform(a: PlatformKind, b: PlatformKind) -> bool {
    a as u8 == b as u8
}

/// How many cases of `platform` the guest sends.
pub const fn executed_count(platform: PlatformKind) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < CASES.len() {
        if same_platform(CASES[i].platform(), platform) && CASES[i].executed() {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The cases of `platform` the guest sends, in table order (`N` = [`executed_count`]).
pub const fn executed<const N: usize>(platform: PlatformKind) -> [&'static Case; N] {
    let mut out = [&CASES[0]; N];
    let (mut i, mut n) = (0, 0);
    while i < CASES.len() {
        if same_platform(CASES[i].platform(), platform) && CASES[i].executed() {
            out[n] = &CASES[i];
            n += 1;
        }
        i += 1;
    }
    assert!(n == N, "executed::<N>: N is not executed_count(platform)");
    out
}

/// The catalog entries of the executed cases of `platform` (a guest suite).
pub const fn catalog_cases<const N: usize>(platform: PlatformKind) -> [CaseSpec; N] {
    let cases = executed::<N>(platform);
    let mut out = [const {
        CaseSpec {
            name: "",
            platforms: Platforms::ALL,
            needs: crate::catalog::Needs::NONE,
            doc: "",
            source: "",
        }
    }; N];
    let mut i = 0;
    while i < N {
        out[i] = CaseSpec {
            name: cases[i].id,
            platforms: Platforms::only(platform),
            needs: crate::catalog::Needs::NONE,
            doc: cases[i].doc,
            source: cases[i].source,
        };
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::is_valid_name;
    use crate::ghcb::error;
    use crate::tdx::{self, status, vmcall};
    use Arg::Ghcb;

    const A: Addresses = Addresses {
        shared_bit: 1 << 47,
        ghcb_gpa: 0x1_0000,
        map_gpa_page: 0x20_0000,
    };

    #[test]
    fn ids_are_valid_unique_and_sourced() {
        let mut seen = std::collections::HashSet::new();
        for c in CASES {
            assert!(is_valid_name(c.id), "{}", c.id);
            assert!(seen.insert(c.id), "duplicate {}", c.id);
            assert!(!c.doc.is_empty() && !c.source.is_empty(), "{}", c.id);
            if let Expect::VmEnds { why, .. } = c.expect {
                assert!(!why.is_empty());
            }
        }
    }

    #[test]
    fn counts_and_order() {
        let tdx = executed::<{ executed_count(PlatformKind::Tdx) }>(PlatformKind::Tdx);
        assert!(
            tdx.iter()
                .all(|c| c.platform() == PlatformKind::Tdx && c.executed())
        );
        let sev = executed::<{ executed_count(PlatformKind::SevEs) }>(PlatformKind::SevEs);
        assert!(sev.iter().all(|c| c.platform() == PlatformKind::SevEs));
        let documented = CASES.iter().filter(|c| !c.executed()).count();
        assert_eq!(tdx.len() + sev.len() + documented, CASES.len());
        assert_eq!(executed_count(PlatformKind::Legacy), 0);
        assert!(
            documented >= 3,
            "ReportFatalError, SNP MSR, unsupported event"
        );
    }

    #[test]
    fn requests_resolve() {
        let c = find("map_gpa_to_shared").unwrap();
        let Request::Tdx(r) = c.request else { panic!() };
        let regs = r.regs(&A);
        assert_eq!(regs.rax, leaf::VP_VMCALL);
        assert_eq!(regs.r11, vmcall::MAP_GPA);
        assert_eq!(regs.r12, 0x20_0000 | 1 << 47);
        assert_eq!(Ghcb(0x800).resolve(&A), 0x1_0800);
        assert!(find("rcx_exposes_rbp").unwrap().answered_by_tdx_module());
        assert!(!find("io_size_0").unwrap().answered_by_tdx_module());
    }

    #[test]
    fn check_accepts_the_expected_answer_and_names_a_wrong_status() {
        let c = find("io_size_5").unwrap();
        let Request::Tdx(r) = c.request else { panic!() };
        let mut regs = r.regs(&A);
        regs.rax = 0;
        regs.r10 = status::INVALID_OPERAND;
        assert_eq!(check(c, &A, &Answer::Tdx(regs)), Ok(()));
        regs.r10 = 0;
        let m = check(c, &A, &Answer::Tdx(regs)).unwrap_err();
        assert_eq!(
            m.to_string(),
            "expected status 0x8000000000000000 (INVALID_OPERAND) got 0x0"
        );
        regs.r10 = status::INVALID_OPERAND;
        regs.r13 = 7;
        assert_eq!(
            check(c, &A, &Answer::Tdx(regs)).unwrap_err().to_string(),
            "expected R13 0x0 got 0x7"
        );
        assert_eq!(
            check(c, &A, &Answer::VmEnded(VmEnd::TdxFatal))
                .unwrap_err()
                .to_string(),
            "expected TDX registers got KVM_SYSTEM_EVENT_TDX_FATAL"
        );
    }

    #[test]
    fn check_compares_module_status_classes() {
        let c = find("rcx_exposes_rbp").unwrap();
        let Request::Tdx(r) = c.request else { panic!() };
        let mut regs = r.regs(&A);
        regs.rax = tdx::TDX_OPERAND_INVALID | 1;
        assert_eq!(check(c, &A, &Answer::Tdx(regs)), Ok(()));
        regs.rax = 0;
        assert_eq!(
            check(c, &A, &Answer::Tdx(regs)).unwrap_err().to_string(),
            "expected TDX module status (RAX) 0xc000010000000000 (TDX_OPERAND_INVALID) in bits 63:32 got 0x0"
        );
    }

    #[test]
    fn check_pages_and_msr() {
        let c = find("hlt_via_ghcb").unwrap();
        let good = Answer::Page {
            info1: 2,
            info2: error::INVALID_EVENT,
            rax: Some(0),
            exit_info_valid: true,
        };
        assert_eq!(check(c, &A, &good), Ok(()));
        let bad = Answer::Page {
            info1: 2,
            info2: error::MISSING_INPUT,
            rax: Some(0),
            exit_info_valid: true,
        };
        assert_eq!(
            check(c, &A, &bad).unwrap_err().to_string(),
            "expected SW_EXITINFO2 0x6 (INVALID_EVENT) got 0x4"
        );
        let ok_but_error = Answer::Page {
            info1: 0,
            info2: 0,
            rax: Some(0),
            exit_info_valid: true,
        };
        assert_eq!(
            check(c, &A, &ok_but_error).unwrap_err().to_string(),
            "expected SW_EXITINFO1 0x2 (error) got 0x0"
        );
        // RAX comes back as sent (marked valid) for an error answer.
        let c = find("ioio_out_rax_not_valid").unwrap();
        let r = Answer::Page {
            info1: 2,
            info2: error::MISSING_INPUT,
            rax: Some(0x5a),
            exit_info_valid: true,
        };
        assert_eq!(
            check(c, &A, &r).unwrap_err().to_string(),
            "expected RAX 0x0 got 0x5a"
        );
        let c = find("protocol_version_3").unwrap();
        let unanswered = Answer::Page {
            info1: 0,
            info2: 0,
            rax: None,
            exit_info_valid: false,
        };
        assert_eq!(
            check(c, &A, &unanswered).unwrap_err().to_string(),
            "expected a GHCB page answer got SW_EXITINFO1/2 not marked valid (no answer)"
        );
        let c = find("msr_unknown_request").unwrap();
        assert_eq!(check(c, &A, &Answer::Msr(UNKNOWN_MSR_REQUEST)), Ok(()));
        assert!(check(c, &A, &Answer::Msr(UNKNOWN_MSR_REQUEST ^ 1)).is_err());
        let c = find("report_fatal_error").unwrap();
        assert_eq!(check(c, &A, &Answer::VmEnded(VmEnd::TdxFatal)), Ok(()));
        assert!(check(c, &A, &Answer::VmEnded(VmEnd::SevTerm)).is_err());
    }

    #[test]
    fn markdown_has_a_row_per_case() {
        let md = markdown();
        assert_eq!(md.lines().count(), CASES.len() + 2);
        assert!(md.contains("| `ghci_raw.io_size_5` | `rcx=0xfc00 r10=0x0 r11=0x1e r12=0x5"));
        assert!(md.contains("r10=INVALID_OPERAND"));
        assert!(md.contains("info2=INVALID_EVENT"));
        assert!(md.contains("not executed"));
    }

    #[test]
    fn eras_are_disjoint_non_empty_and_differ_from_current() {
        for c in CASES {
            let mut seen = c.current_kvms().0;
            assert_ne!(seen, 0, "{}: no release gives current KVM's answer", c.id);
            for e in c.older {
                assert_ne!(e.kvm.0, 0, "{}: an era without releases", c.id);
                assert_eq!(seen & e.kvm.0, 0, "{}: a release in two eras", c.id);
                seen |= e.kvm.0;
                assert_ne!(
                    e.expect, c.expect,
                    "{}: an era answers as current KVM",
                    c.id
                );
                assert!(!e.why.is_empty(), "{}: an era without its reason", c.id);
            }
            assert_eq!(seen, Kvms::ALL.0, "{}", c.id);
        }
    }

    #[test]
    fn the_snp_only_rows_tell_the_three_eras_apart() {
        let all = find("snp_only_exit_code").unwrap();
        let unmarked = find("snp_only_exit_code_unmarked").unwrap();
        let ans = |c: &Case, p| match c.expect_for(p) {
            Expect::Page(e) => e.info2,
            e => panic!("{e:?}"),
        };
        use KvmProfile::*;
        assert_eq!(
            (ans(all, V6_10), ans(unmarked, V6_10)),
            (error::INVALID_EVENT, error::MISSING_INPUT)
        );
        for p in [V6_11, V6_16] {
            assert_eq!(
                (ans(all, p), ans(unmarked, p)),
                (error::MISSING_INPUT, error::MISSING_INPUT)
            );
        }
        assert_eq!(
            (ans(all, Current), ans(unmarked, Current)),
            (error::INVALID_EVENT, error::INVALID_EVENT)
        );
    }

    #[test]
    fn check_eras_names_the_releases_an_answer_matches() {
        use crate::ghcb::result;
        let c = find("snp_only_exit_code").unwrap();
        let page = |info2| Answer::Page {
            info1: result::ERROR,
            info2,
            rax: Some(0),
            exit_info_valid: true,
        };
        let mi = page(error::MISSING_INPUT);
        let ie = page(error::INVALID_EVENT);
        let mut b = [0; 48];
        // Any release.
        assert_eq!(
            check_eras(c, &A, &mi, None).unwrap().label(&mut b),
            "6.11-6.16"
        );
        assert_eq!(
            check_eras(c, &A, &ie, None).unwrap().label(&mut b),
            "6.10, current"
        );
        let none = page(error::INVALID_INPUT);
        let m = check_eras(c, &A, &none, None).unwrap_err();
        assert!(m.to_string().contains("INVALID_EVENT"), "{m}");
        // Exactly one release.
        assert!(check_eras(c, &A, &mi, Some(KvmProfile::V6_11)).is_ok());
        let m = check_eras(c, &A, &mi, Some(KvmProfile::Current)).unwrap_err();
        assert_eq!(
            m.to_string(),
            "expected SW_EXITINFO2 0x6 (INVALID_EVENT) got 0x4"
        );
        assert!(check_eras(c, &A, &ie, Some(KvmProfile::V6_16)).is_err());
    }
}
