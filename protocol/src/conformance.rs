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
//! KVM versions differ on a few answers (GHCB version 1 VMs, older kernels): the expectation
//! is current upstream KVM with GHCB version 2, as the simulated hosts model it, and the
//! other answers are recorded in [`Case::note`].

use crate::catalog::CaseSpec;
use crate::ghcb::{self, error, exit, ioio, off, result};
use crate::platform::{PlatformKind, Platforms};
use crate::tdx::{self, ExposeMask, TdcallRegs, leaf, status, vmcall};
use crate::testdev;
use core::fmt;

/// A port no device claims on the machines cvmprobe runs on (QEMU's PC and microvm, the
/// built-in VMM): reads answer all ones, writes are dropped (QEMU `unassigned_io_read`).
pub const UNASSIGNED_PORT: u16 = 0xf00;
/// A GPA whose MMIO is harmless: the test device's memory-like scratch window
/// ([`testdev::mmio::SCRATCH`]). The MMIO cases here are refused before any access, so the
/// device's access log stays empty.
pub const MMIO_GPA: u64 = testdev::MMIO_BASE + testdev::mmio::SCRATCH;
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
    /// KVM's answer (current upstream; GHCB version 2).
    pub expect: Expect,
    /// Where the expectation comes from: spec section and KVM function.
    pub source: &'static str,
    /// Other KVM versions' answers, or "".
    pub note: &'static str,
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

    /// Whether the TDX module answers (a refused exposure mask), so KVM never sees it.
    pub const fn answered_by_tdx_module(&self) -> bool {
        match self.request {
            Request::Tdx(r) => !ExposeMask(r.rcx).is_valid(),
            _ => false,
        }
    }
}

// ----- table-building helpers ------------------------------------------------------------

use Arg::{Ghcb, Shared, Val};

const fn v(x: u64) -> Reg {
    Reg::Is(Val(x))
}

const UNCHANGED: TdxExpect = TdxExpect {
    rax: v(tdx::TDX_SUCCESS),
    r10: Reg::Unchanged,
    r11: Reg::Unchanged,
    r12: Reg::Unchanged,
    r13: Reg::Unchanged,
    r14: Reg::Unchanged,
    r15: Reg::Unchanged,
};

/// TDX module success, R10 = `code`, R11-R15 unchanged.
const fn status_only(code: u64) -> Expect {
    Expect::Tdx(TdxExpect {
        r10: v(code),
        ..UNCHANGED
    })
}

/// A standard TDVMCALL exposing R10-R15.
const fn vmcall(sub: u64, r12: Arg, r13: Arg, r14: Arg, r15: Arg) -> Request {
    Request::Tdx(TdxRequest {
        rcx: EXPOSE_R10_R15,
        r10: vmcall::STANDARD,
        r11: sub,
        r12,
        r13,
        r14,
        r15,
    })
}

const fn io(size: u64, direction: u64) -> Request {
    vmcall(
        vmcall::IO,
        Val(size),
        Val(direction),
        Val(UNASSIGNED_PORT as u64),
        Val(0),
    )
}

const fn mmio(size: u64, gpa: Arg) -> Request {
    vmcall(vmcall::MMIO, Val(size), Val(tdx::DIR_READ), gpa, Val(0))
}

const fn map_gpa(gpa: Arg, size: u64) -> Request {
    vmcall(vmcall::MAP_GPA, gpa, Val(size), Val(0), Val(0))
}

const fn valid(offset: usize, value: Arg) -> Field {
    Field {
        offset,
        value,
        valid: true,
    }
}

const fn unmarked(offset: usize, value: Arg) -> Field {
    Field {
        offset,
        value,
        valid: false,
    }
}

const fn page(fields: &'static [Field]) -> Request {
    Request::GhcbPage(PageRequest {
        fields,
        protocol_version: ghcb::GHCB_VERSION_MAX,
        usage: 0,
    })
}

const fn page_error(reason: u64) -> Expect {
    Expect::Page(PageExpect {
        info1: result::ERROR,
        info2: reason,
        rax: Reg::Unchanged,
    })
}

const PAGE_OK: Expect = Expect::Page(PageExpect {
    info1: result::OK,
    info2: 0,
    rax: Reg::Any,
});

/// IOIO SW_EXITINFO1 for an OUT of `size_bits` to the unassigned port, 64-bit addresses.
const OUT_INFO: u64 = ((UNASSIGNED_PORT as u64) << ioio::PORT_SHIFT) | ioio::A64;

const SCRATCH_BUF: Arg = Ghcb(off::SHARED_BUFFER as u64);

/// The fields of a GHCB request: SW_EXITCODE, SW_EXITINFO1, SW_EXITINFO2 (marked valid),
/// then `extra` (a `&'static` slice built in a `const`, as the table needs).
macro_rules! ghcb_fields {
    ($code:expr, $info1:expr, $info2:expr $(, $extra:expr)* $(,)?) => {{
        const F: &[Field] = &[
            valid(off::SW_EXIT_CODE, Val($code)),
            valid(off::SW_EXIT_INFO_1, Val($info1)),
            valid(off::SW_EXIT_INFO_2, Val($info2)),
            $($extra),*
        ];
        F
    }};
}

/// Fields written exactly as listed.
macro_rules! raw_fields {
    ($($f:expr),* $(,)?) => {{
        const F: &[Field] = &[$($f),*];
        F
    }};
}

/// CPUID leaf 0 through the GHCB, with protocol version `version` and usage `usage`.
const fn cpuid_page(version: u16, usage: u32) -> Request {
    Request::GhcbPage(PageRequest {
        fields: ghcb_fields!(
            exit::CPUID,
            0,
            0,
            valid(off::RAX, Val(0)),
            valid(off::RCX, Val(0))
        ),
        protocol_version: version,
        usage,
    })
}

/// A request `code` (MMIO read or write) of `len` bytes at [`MMIO_GPA`] with the scratch
/// area at `scratch`, marked valid or not.
macro_rules! mmio_page {
    ($code:expr, $len:expr, $scratch:expr, $scratch_valid:expr) => {
        page(ghcb_fields!(
            $code,
            MMIO_GPA,
            $len,
            Field {
                offset: off::SW_SCRATCH,
                value: $scratch,
                valid: $scratch_valid,
            }
        ))
    };
}

const KVM_IO: &str = "GHCI 1.5 TDG.VP.VMCALL<Instruction.IO>; KVM tdx_emulate_io() (size in {1,2,4}, direction in {0,1}, else INVALID_OPERAND)";
const KVM_MMIO: &str = "GHCI 1.5 TDG.VP.VMCALL<#VE.RequestMMIO>; KVM tdx_emulate_mmio() (size in {1,2,4,8}, direction, shared GPA, in that order)";
const KVM_MAP_GPA: &str = "GHCI 1.5 TDG.VP.VMCALL<MapGPA>; KVM tdx_map_gpa() (range checks, then alignment; R11 = GPA on error) and tdx_complete_vmcall_map_gpa()";
const KVM_VALIDATE: &str =
    "GHCB spec 2.x 4.1 (valid bitmap); KVM sev_es_validate_vmgexit() (MISSING_INPUT)";
const KVM_SCRATCH: &str = "GHCB spec 2.x 4.1.x (SW_SCRATCH in the shared buffer); KVM setup_vmgexit_scratch() (INVALID_SCRATCH_AREA)";
const SCRATCH_V1: &str = "GHCB version 1 VMs (legacy KVM_SEV_INIT): KVM bounces up to 16 pages from outside the GHCB: SUCCESS";

/// Every case, TDX first, then SEV-ES, in the guest's run order.
pub const CASES: &[Case] = &[
    // ----- TDX: Instruction.IO ---------------------------------------------------------
    Case {
        id: "io_size_0",
        doc: "Instruction.IO read of 0 bytes from port 0xf00 -> INVALID_OPERAND",
        request: io(0, tdx::DIR_READ),
        expect: status_only(status::INVALID_OPERAND),
        source: KVM_IO,
        note: "",
    },
    Case {
        id: "io_size_3",
        doc: "Instruction.IO read of 3 bytes -> INVALID_OPERAND",
        request: io(3, tdx::DIR_READ),
        expect: status_only(status::INVALID_OPERAND),
        source: KVM_IO,
        note: "",
    },
    Case {
        id: "io_size_5",
        doc: "Instruction.IO read of 5 bytes -> INVALID_OPERAND (the KVM selftests' case)",
        request: io(5, tdx::DIR_READ),
        expect: status_only(status::INVALID_OPERAND),
        source: KVM_IO,
        note: "",
    },
    Case {
        id: "io_size_8",
        doc: "Instruction.IO read of 8 bytes -> INVALID_OPERAND",
        request: io(8, tdx::DIR_READ),
        expect: status_only(status::INVALID_OPERAND),
        source: KVM_IO,
        note: "",
    },
    Case {
        id: "io_bad_direction",
        doc: "Instruction.IO of 1 byte with direction 2 (neither read nor write) -> INVALID_OPERAND",
        request: io(1, 2),
        expect: status_only(status::INVALID_OPERAND),
        source: KVM_IO,
        note: "",
    },
    // ----- TDX: #VE.RequestMMIO --------------------------------------------------------
    Case {
        id: "mmio_size_0",
        doc: "MMIO read of 0 bytes at a shared GPA -> INVALID_OPERAND",
        request: mmio(0, Shared(MMIO_GPA)),
        expect: status_only(status::INVALID_OPERAND),
        source: KVM_MMIO,
        note: "",
    },
    Case {
        id: "mmio_size_3",
        doc: "MMIO read of 3 bytes at a shared GPA -> INVALID_OPERAND",
        request: mmio(3, Shared(MMIO_GPA)),
        expect: status_only(status::INVALID_OPERAND),
        source: KVM_MMIO,
        note: "",
    },
    Case {
        id: "mmio_size_16",
        doc: "MMIO read of 16 bytes at a shared GPA -> INVALID_OPERAND",
        request: mmio(16, Shared(MMIO_GPA)),
        expect: status_only(status::INVALID_OPERAND),
        source: KVM_MMIO,
        note: "",
    },
    Case {
        id: "mmio_private_gpa",
        doc: "MMIO read of 4 bytes at a private GPA (shared bit clear) -> INVALID_OPERAND",
        request: mmio(4, Val(MMIO_GPA)),
        expect: status_only(status::INVALID_OPERAND),
        source: "GHCI 1.5 TDG.VP.VMCALL<#VE.RequestMMIO> (shared GPA only); KVM tdx_emulate_mmio() (tdx_is_private_gpa)",
        note: "",
    },
    // ----- TDX: sub-function dispatch ----------------------------------------------------
    Case {
        id: "unknown_subfunction",
        doc: "standard TDVMCALL sub-function 0xffff -> SUBFUNC_UNSUPPORTED",
        request: vmcall(UNKNOWN_SUBFUNCTION, Val(0), Val(0), Val(0), Val(0)),
        expect: status_only(status::SUBFUNC_UNSUPPORTED),
        source: "GHCI 1.5 TDG.VP.VMCALL status codes; KVM handle_tdvmcall() default case",
        note: "v6.16-rc1 only: INVALID_OPERAND",
    },
    Case {
        id: "vendor_unknown_hypercall",
        doc: "R10 = 0x1234 (vendor-specific: a KVM hypercall KVM does not know) -> R10 = -KVM_ENOSYS",
        request: Request::Tdx(TdxRequest {
            rcx: EXPOSE_R10_R15,
            r10: UNKNOWN_KVM_HYPERCALL,
            r11: 0,
            r12: Val(0),
            r13: Val(0),
            r14: Val(0),
            r15: Val(0),
        }),
        expect: status_only(status::KVM_ENOSYS),
        source: "GHCI 1.5 2.4.1 (R10 != 0: vendor-specific); KVM tdx_emulate_vmcall() -> ____kvm_emulate_hypercall()",
        note: "",
    },
    Case {
        id: "get_td_vm_call_info_leaf0",
        doc: "GetTdVmCallInfo with R12 = 0 -> SUCCESS, R11-R14 = 0",
        request: vmcall(vmcall::GET_TD_VM_CALL_INFO, Val(0), Val(0), Val(0), Val(0)),
        expect: Expect::Tdx(TdxExpect {
            r10: v(status::SUCCESS),
            r11: v(0),
            r12: v(0),
            r13: v(0),
            r14: v(0),
            ..UNCHANGED
        }),
        source: "GHCI 1.5 TDG.VP.VMCALL<GetTdVmCallInfo>; KVM tdx_get_td_vm_call_info()",
        note: "",
    },
    Case {
        id: "get_td_vm_call_info_leaf2",
        doc: "GetTdVmCallInfo with R12 = 2 (undefined leaf) -> INVALID_OPERAND",
        request: vmcall(vmcall::GET_TD_VM_CALL_INFO, Val(2), Val(0), Val(0), Val(0)),
        expect: status_only(status::INVALID_OPERAND),
        source: "GHCI 1.5 TDG.VP.VMCALL<GetTdVmCallInfo>; KVM tdx_get_td_vm_call_info() default case",
        note: "",
    },
    // ----- TDX: MapGPA -------------------------------------------------------------------
    Case {
        id: "map_gpa_to_shared",
        doc: "MapGPA of one 4 KiB page (the guest's own spare page) to shared -> SUCCESS",
        request: map_gpa(Arg::MapGpaPage, 0x1000),
        expect: status_only(status::SUCCESS),
        source: KVM_MAP_GPA,
        note: "the VMM must enable KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE, else SUBFUNC_UNSUPPORTED (v6.16: INVALID_OPERAND)",
    },
    Case {
        id: "map_gpa_unaligned",
        doc: "MapGPA of a GPA 2 KiB into a page -> ALIGN_ERROR, R11 = the GPA",
        request: map_gpa(Shared(0x1800), 0x1000),
        expect: Expect::Tdx(TdxExpect {
            r10: v(status::ALIGN_ERROR),
            r11: Reg::Is(Shared(0x1800)),
            ..UNCHANGED
        }),
        source: KVM_MAP_GPA,
        note: "",
    },
    Case {
        id: "map_gpa_out_of_range",
        doc: "MapGPA of a GPA above MAXPHYADDR (bit 52) -> INVALID_OPERAND, R11 = the GPA",
        request: map_gpa(Val(ILLEGAL_GPA), 0x1000),
        expect: Expect::Tdx(TdxExpect {
            r10: v(status::INVALID_OPERAND),
            r11: v(ILLEGAL_GPA),
            ..UNCHANGED
        }),
        source: KVM_MAP_GPA,
        note: "",
    },
    Case {
        id: "map_gpa_size_0",
        doc: "MapGPA of 0 bytes -> INVALID_OPERAND, R11 = the GPA",
        request: map_gpa(Shared(0x2000), 0),
        expect: Expect::Tdx(TdxExpect {
            r10: v(status::INVALID_OPERAND),
            r11: Reg::Is(Shared(0x2000)),
            ..UNCHANGED
        }),
        source: KVM_MAP_GPA,
        note: "",
    },
    // ----- TDX: ReportFatalError ---------------------------------------------------------
    Case {
        id: "report_fatal_error",
        doc: "ReportFatalError with error code 0 -> the VM ends",
        request: vmcall(vmcall::REPORT_FATAL_ERROR, Val(0), Val(0), Val(0), Val(0)),
        expect: Expect::VmEnds {
            end: VmEnd::TdxFatal,
            why: "KVM exits to the VMM with KVM_SYSTEM_EVENT_TDX_FATAL and the TD ends: sending it would end the run",
        },
        source: "GHCI 1.5 TDG.VP.VMCALL<ReportFatalError>; KVM tdx_report_fatal_error()",
        note: "",
    },
    // ----- TDX: the RCX exposure mask ----------------------------------------------------
    Case {
        id: "rcx_hides_r12",
        doc: "Instruction.IO read of 1 byte with R12 (the size) not exposed: KVM sees size 0 -> INVALID_OPERAND, R12 keeps the guest's 1",
        request: Request::Tdx(TdxRequest {
            rcx: EXPOSE_R10_R15 & !ExposeMask::R12,
            r10: vmcall::STANDARD,
            r11: vmcall::IO,
            r12: Val(1),
            r13: Val(tdx::DIR_READ),
            r14: Val(UNASSIGNED_PORT as u64),
            r15: Val(0),
        }),
        expect: status_only(status::INVALID_OPERAND),
        source: "GHCI 1.5 2.4.1 (unexposed registers reach the VMM as 0); TDX module tdg_vp_vmcall(); KVM tdx_emulate_io()",
        note: "",
    },
    Case {
        id: "rcx_hides_r10_r11",
        doc: "Instruction.IO with R10 and R11 not exposed: KVM sees sub-function 0 and answers SUBFUNC_UNSUPPORTED into R10, which the guest never gets back (R10-R15 unchanged)",
        request: Request::Tdx(TdxRequest {
            rcx: EXPOSE_R10_R15 & !(ExposeMask::R10 | ExposeMask::R11),
            r10: vmcall::STANDARD,
            r11: vmcall::IO,
            r12: Val(1),
            r13: Val(tdx::DIR_READ),
            r14: Val(UNASSIGNED_PORT as u64),
            r15: Val(0),
        }),
        expect: Expect::Tdx(UNCHANGED),
        source: "GHCI 1.5 2.4.1; TDX module save_regs_after_tdvmcall() (only exposed registers are written back); KVM handle_tdvmcall()",
        note: "",
    },
    Case {
        id: "rcx_exposes_rbp",
        doc: "TDG.VP.VMCALL with RCX bit 5 (RBP) set: the TDX module refuses it with TDX_OPERAND_INVALID, no exit to KVM",
        request: Request::Tdx(TdxRequest {
            rcx: EXPOSE_R10_R15 | (1 << 5),
            r10: vmcall::STANDARD,
            r11: vmcall::IO,
            r12: Val(1),
            r13: Val(tdx::DIR_READ),
            r14: Val(UNASSIGNED_PORT as u64),
            r15: Val(0),
        }),
        expect: Expect::Tdx(TdxExpect {
            rax: Reg::StatusClass(tdx::TDX_OPERAND_INVALID),
            ..UNCHANGED
        }),
        source: "TDX module ABI spec TDG.VP.VMCALL (RCX bits 0, 1, 4, 5, 63:32 must be 0); intel/tdx-module tdg_vp_vmcall()",
        note: "answered by the TDX module, not KVM: a host cannot change it",
    },
    // ----- SEV-ES: MSR protocol ----------------------------------------------------------
    Case {
        id: "msr_unknown_request",
        doc: "GHCB MSR protocol request code 0xff0 (undefined) -> the MSR keeps the request",
        request: Request::GhcbMsr(UNKNOWN_MSR_REQUEST),
        expect: Expect::Msr(Reg::Unchanged),
        source: "GHCB spec 2.x 2.3.1 (MSR protocol); KVM sev_handle_vmgexit_msr_protocol() default case (\"keep GHCB MSR value as-is\")",
        note: "",
    },
    Case {
        id: "msr_snp_register_ghcb",
        doc: "GHCB MSR protocol 0x012 (GHCB GPA registration, SNP only) from an SEV-ES guest -> the VM ends",
        request: Request::GhcbMsr(ghcb::msr::REG_GPA_REQ),
        expect: Expect::VmEnds {
            end: VmEnd::SevTerm,
            why: "KVM terminates a non-SNP guest that sends an SNP-only MSR request (KVM_SYSTEM_EVENT_SEV_TERM): sending it would end the run",
        },
        source: "GHCB spec 2.x 2.3.1 (0x012, SNP); KVM sev_handle_vmgexit_msr_protocol() (!is_sev_snp_guest -> out_terminate)",
        note: "KVM before SNP host support (v6.10 and older): the MSR keeps the request",
    },
    // ----- SEV-ES: exit codes ------------------------------------------------------------
    Case {
        id: "hlt_via_ghcb",
        doc: "GHCB exit code HLT (0x78): an automatic exit under SEV-ES -> INVALID_EVENT",
        request: page(ghcb_fields!(exit::HLT, 0, 0)),
        expect: page_error(error::INVALID_EVENT),
        source: "AMD APM vol. 2 15.35 (HLT is an automatic exit); KVM sev_es_validate_vmgexit() default case",
        note: "",
    },
    Case {
        id: "unknown_exit_code",
        doc: "GHCB exit code 0x60 (SVM_EXIT_INTR, not a GHCB exit) -> INVALID_EVENT",
        request: page(ghcb_fields!(SVM_EXIT_INTR, 0, 0)),
        expect: page_error(error::INVALID_EVENT),
        source: "GHCB spec 2.x 4.1 (non-automatic exits); KVM sev_es_validate_vmgexit() default case",
        note: "",
    },
    Case {
        id: "unsupported_event_exit",
        doc: "GHCB exit code 0x8000FFFF (unsupported event) -> KVM_RUN fails",
        request: page(ghcb_fields!(exit::UNSUPPORTED, 0, 0)),
        expect: Expect::VmEnds {
            end: VmEnd::KvmRunError,
            why: "KVM logs the event and returns -EINVAL from KVM_RUN: the VM cannot go on",
        },
        source: "GHCB spec 2.x 4.1.x (Unsupported Event); KVM sev_handle_vmgexit() SVM_VMGEXIT_UNSUPPORTED_EVENT",
        note: "",
    },
    // ----- SEV-ES: valid bits ------------------------------------------------------------
    Case {
        id: "exit_info_2_not_valid",
        doc: "IOIO OUT with SW_EXITINFO2 written but not marked valid -> MISSING_INPUT",
        request: page(raw_fields![
            valid(off::SW_EXIT_CODE, Val(exit::IOIO)),
            valid(off::SW_EXIT_INFO_1, Val(OUT_INFO | ioio::SZ8)),
            unmarked(off::SW_EXIT_INFO_2, Val(0)),
            valid(off::RAX, Val(0)),
        ]),
        expect: page_error(error::MISSING_INPUT),
        source: KVM_VALIDATE,
        note: "",
    },
    Case {
        id: "ioio_out_rax_not_valid",
        doc: "IOIO OUT of 1 byte without RAX marked valid -> MISSING_INPUT",
        request: page(raw_fields![
            valid(off::SW_EXIT_CODE, Val(exit::IOIO)),
            valid(off::SW_EXIT_INFO_1, Val(OUT_INFO | ioio::SZ8)),
            valid(off::SW_EXIT_INFO_2, Val(0)),
            unmarked(off::RAX, Val(0x5a)),
        ]),
        expect: page_error(error::MISSING_INPUT),
        source: KVM_VALIDATE,
        note: "",
    },
    Case {
        id: "cpuid_rcx_not_valid",
        doc: "CPUID with RAX valid and RCX not marked valid -> MISSING_INPUT",
        request: page(raw_fields![
            valid(off::SW_EXIT_CODE, Val(exit::CPUID)),
            valid(off::SW_EXIT_INFO_1, Val(0)),
            valid(off::SW_EXIT_INFO_2, Val(0)),
            valid(off::RAX, Val(0)),
            unmarked(off::RCX, Val(0)),
        ]),
        expect: page_error(error::MISSING_INPUT),
        source: KVM_VALIDATE,
        note: "",
    },
    Case {
        id: "mmio_scratch_not_valid",
        doc: "MMIO write of 8 bytes with SW_SCRATCH (the shared buffer) not marked valid -> MISSING_INPUT",
        request: mmio_page!(exit::MMIO_WRITE, 8, SCRATCH_BUF, false),
        expect: page_error(error::MISSING_INPUT),
        source: KVM_VALIDATE,
        note: "",
    },
    // ----- SEV-ES: the scratch area ------------------------------------------------------
    Case {
        id: "scratch_zero",
        doc: "MMIO write of 8 bytes with SW_SCRATCH = 0 -> INVALID_SCRATCH_AREA",
        request: mmio_page!(exit::MMIO_WRITE, 8, Val(0), true),
        expect: page_error(error::INVALID_SCRATCH_AREA),
        source: KVM_SCRATCH,
        note: "",
    },
    Case {
        id: "scratch_before_shared_buffer",
        doc: "MMIO write of 8 bytes with SW_SCRATCH at GHCB+0x400 (in the page, before the shared buffer) -> INVALID_SCRATCH_AREA",
        request: mmio_page!(exit::MMIO_WRITE, 8, Ghcb(0x400), true),
        expect: page_error(error::INVALID_SCRATCH_AREA),
        source: KVM_SCRATCH,
        note: "",
    },
    Case {
        id: "scratch_past_shared_buffer",
        doc: "MMIO write of 8 bytes with SW_SCRATCH at GHCB+0xFEC (ends past the shared buffer at 0xFF0) -> INVALID_SCRATCH_AREA",
        request: mmio_page!(exit::MMIO_WRITE, 8, Ghcb(0xfec), true),
        expect: page_error(error::INVALID_SCRATCH_AREA),
        source: KVM_SCRATCH,
        note: "",
    },
    Case {
        id: "scratch_outside_ghcb",
        doc: "MMIO write of 8 bytes with SW_SCRATCH in the page after the GHCB -> INVALID_SCRATCH_AREA",
        request: mmio_page!(exit::MMIO_WRITE, 8, Ghcb(0x1800), true),
        expect: page_error(error::INVALID_SCRATCH_AREA),
        source: KVM_SCRATCH,
        note: SCRATCH_V1,
    },
    // ----- SEV-ES: MMIO sizes ------------------------------------------------------------
    Case {
        id: "mmio_size_0_ghcb",
        doc: "MMIO read of 0 bytes -> SUCCESS without any access (KVM treats it as a no-op)",
        request: mmio_page!(exit::MMIO_READ, 0, SCRATCH_BUF, true),
        expect: PAGE_OK,
        source: "GHCB spec 2.x 4.1.x (MMIO Access); KVM sev_handle_vmgexit() SVM_VMGEXIT_MMIO_READ (length 0)",
        note: "",
    },
    Case {
        id: "mmio_size_16_ghcb",
        doc: "MMIO read of 16 bytes -> INVALID_INPUT",
        request: mmio_page!(exit::MMIO_READ, 16, SCRATCH_BUF, true),
        expect: page_error(error::INVALID_INPUT),
        source: "GHCB spec 2.x 4.1.x (MMIO Access); KVM sev_handle_vmgexit() (\"Reject MMIO requests larger than 8 bytes with GHCB v2+\")",
        note: "GHCB version 1 VMs: SUCCESS, split into two 8-byte MMIO exits",
    },
    // ----- SEV-ES: IOIO size bits --------------------------------------------------------
    Case {
        id: "ioio_no_size_bits",
        doc: "IOIO OUT to port 0xf00 with no operand-size bit set -> SUCCESS without any access",
        request: page(raw_fields![
            valid(off::SW_EXIT_CODE, Val(exit::IOIO)),
            valid(off::SW_EXIT_INFO_1, Val(OUT_INFO)),
            valid(off::SW_EXIT_INFO_2, Val(0)),
            valid(off::RAX, Val(0x5a)),
        ]),
        expect: PAGE_OK,
        source: "AMD APM vol. 2 15.10.2 (IOIO size bits); KVM sev_handle_vmgexit() SVM_EXIT_IOIO (size 0)",
        note: "older KVM: forwarded to the VMM as a 0-byte OUT, SUCCESS",
    },
    Case {
        id: "ioio_two_size_bits",
        doc: "IOIO OUT to port 0xf00 with the 8- and 16-bit size bits set -> SUCCESS (KVM never validates them and forwards a 3-byte OUT)",
        request: page(raw_fields![
            valid(off::SW_EXIT_CODE, Val(exit::IOIO)),
            valid(off::SW_EXIT_INFO_1, Val(OUT_INFO | ioio::SZ8 | ioio::SZ16),),
            valid(off::SW_EXIT_INFO_2, Val(0)),
            valid(off::RAX, Val(0x5a)),
        ]),
        expect: PAGE_OK,
        source: "AMD APM vol. 2 15.10.2 (one-hot size bits); KVM io_interception() (size = SZ bits >> 4, unchecked) -> kvm_fast_pio()",
        note: "",
    },
    // ----- SEV-ES: usage and protocol version --------------------------------------------
    Case {
        id: "usage_nonzero",
        doc: "CPUID leaf 0 with GHCB usage 1 -> INVALID_USAGE (checked before anything else)",
        request: cpuid_page(ghcb::GHCB_VERSION_MAX, 1),
        expect: page_error(error::INVALID_USAGE),
        source: "GHCB spec 2.x 2.2 (GHCB usage 0 = standard); KVM sev_es_validate_vmgexit() (ghcb_usage)",
        note: "",
    },
    Case {
        id: "protocol_version_0",
        doc: "CPUID leaf 0 with protocol version 0 in the page -> SUCCESS (KVM never reads the field)",
        request: cpuid_page(0, 0),
        expect: PAGE_OK,
        source: "GHCB spec 2.x 2.2 (protocol version field); KVM sev.c: no reader of ghcb->protocol_version; version is negotiated by the MSR protocol (sev_es_vcpu_reset)",
        note: "",
    },
    Case {
        id: "protocol_version_3",
        doc: "CPUID leaf 0 with protocol version 3 in the page -> SUCCESS (KVM never reads the field)",
        request: cpuid_page(3, 0),
        expect: PAGE_OK,
        source: "GHCB spec 2.x 2.2 (protocol version field); KVM sev.c: no reader of ghcb->protocol_version",
        note: "",
    },
];

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

/// What came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The guest's registers after TDCALL.
    Tdx(TdcallRegs),
    /// The GHCB MSR read back after an MSR-protocol request.
    Msr(u64),
    /// The GHCB page after a page request.
    Page {
        /// SW_EXITINFO1.
        info1: u64,
        /// SW_EXITINFO2.
        info2: u64,
        /// RAX, if marked valid.
        rax: Option<u64>,
        /// Whether SW_EXITINFO1 and SW_EXITINFO2 came back marked valid: the page was zeroed
        /// before the request, so unmarked means the host did not answer it.
        exit_info_valid: bool,
    },
    /// The VM ended (host side only).
    VmEnded(VmEnd),
}

impl Answer {
    const fn kind(&self) -> &'static str {
        match self {
            Answer::Tdx(_) => "TDX registers",
            Answer::Msr(_) => "a GHCB MSR value",
            Answer::Page { .. } => "a GHCB page answer",
            Answer::VmEnded(e) => e.name(),
        }
    }
}

/// How an answer differs from the expectation (its `Display` is the diagnostic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// One value differs.
    Value {
        /// Which value (`status`, `R11`, `SW_EXITINFO2`, ...).
        what: &'static str,
        /// The expected value.
        expected: u64,
        /// A name for the expected value ("" if none).
        name: &'static str,
        /// Only bits 63:32 are compared.
        class: bool,
        /// What came back (`None`: not returned, e.g. RAX not marked valid).
        got: Option<u64>,
    },
    /// A different kind of answer (e.g. the VM ended instead of answering).
    Kind {
        /// The expected kind.
        expected: &'static str,
        /// What came back.
        got: &'static str,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Mismatch::Value {
                what,
                expected,
                name,
                class,
                got,
            } => {
                write!(f, "expected {what} {expected:#x}")?;
                if !name.is_empty() {
                    write!(f, " ({name})")?;
                }
                if class {
                    f.write_str(" in bits 63:32")?;
                }
                match got {
                    Some(g) => write!(f, " got {g:#x}"),
                    None => f.write_str(" got none (not marked valid)"),
                }
            }
            Mismatch::Kind { expected, got } => write!(f, "expected {expected} got {got}"),
        }
    }
}

/// A name for a TDX module status (RAX).
const fn module_status_name(s: u64) -> &'static str {
    if s == tdx::TDX_SUCCESS {
        "TDX_SUCCESS"
    } else if s >> 32 == tdx::TDX_OPERAND_INVALID >> 32 {
        "TDX_OPERAND_INVALID"
    } else {
        ""
    }
}

/// A name for a TDVMCALL status (R10).
fn vmcall_status_name(s: u64) -> &'static str {
    match status::name(s) {
        "unknown status" => "",
        n => n,
    }
}

const fn info1_name(v: u64) -> &'static str {
    match v {
        result::OK => "success",
        result::EXCEPTION => "exception",
        result::ERROR => "error",
        _ => "",
    }
}

fn info2_name(info1: u64, v: u64) -> &'static str {
    if info1 == result::ERROR {
        match error::name(v) {
            "unknown reason" => "",
            n => n,
        }
    } else {
        ""
    }
}

fn check_reg(
    what: &'static str,
    expect: Reg,
    sent: u64,
    got: Option<u64>,
    name: fn(u64) -> &'static str,
    a: &Addresses,
) -> Result<(), Mismatch> {
    let (expected, class) = match expect {
        Reg::Any => return Ok(()),
        Reg::Is(arg) => (arg.resolve(a), false),
        Reg::Unchanged => (sent, false),
        Reg::StatusClass(s) => (s, true),
    };
    let ok = match got {
        Some(g) if class => g >> 32 == expected >> 32,
        Some(g) => g == expected,
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Mismatch::Value {
            what,
            expected,
            name: name(expected),
            class,
            got,
        })
    }
}

fn no_name(_: u64) -> &'static str {
    ""
}

/// Checks `answer` against `case`'s expectation, with the run's addresses `a` (the same ones
/// the request was resolved with). The first difference is the error.
pub fn check(case: &Case, a: &Addresses, answer: &Answer) -> Result<(), Mismatch> {
    match (&case.expect, &case.request, answer) {
        (Expect::Tdx(e), Request::Tdx(r), Answer::Tdx(got)) => {
            let sent = r.regs(a);
            check_reg(
                "TDX module status (RAX)",
                e.rax,
                sent.rax,
                Some(got.rax),
                module_status_name,
                a,
            )?;
            check_reg(
                "status",
                e.r10,
                sent.r10,
                Some(got.r10),
                vmcall_status_name,
                a,
            )?;
            check_reg("R11", e.r11, sent.r11, Some(got.r11), no_name, a)?;
            check_reg("R12", e.r12, sent.r12, Some(got.r12), no_name, a)?;
            check_reg("R13", e.r13, sent.r13, Some(got.r13), no_name, a)?;
            check_reg("R14", e.r14, sent.r14, Some(got.r14), no_name, a)?;
            check_reg("R15", e.r15, sent.r15, Some(got.r15), no_name, a)
        }
        (Expect::Msr(e), Request::GhcbMsr(sent), Answer::Msr(got)) => {
            check_reg("GHCB MSR", *e, *sent, Some(*got), no_name, a)
        }
        (
            Expect::Page(e),
            Request::GhcbPage(p),
            Answer::Page {
                info1,
                info2,
                rax,
                exit_info_valid,
            },
        ) => {
            if !exit_info_valid {
                return Err(Mismatch::Kind {
                    expected: "a GHCB page answer",
                    got: "SW_EXITINFO1/2 not marked valid (no answer)",
                });
            }
            if *info1 != e.info1 || *info2 != e.info2 {
                let (what, expected, got) = if *info1 != e.info1 {
                    ("SW_EXITINFO1", e.info1, *info1)
                } else {
                    ("SW_EXITINFO2", e.info2, *info2)
                };
                let name = if what == "SW_EXITINFO1" {
                    info1_name(expected)
                } else {
                    info2_name(e.info1, expected)
                };
                return Err(Mismatch::Value {
                    what,
                    expected,
                    name,
                    class: false,
                    got: Some(got),
                });
            }
            let sent_rax = p
                .fields
                .iter()
                .find(|f| f.offset == off::RAX && f.valid)
                .map_or(0, |f| f.value.resolve(a));
            check_reg("RAX", e.rax, sent_rax, *rax, no_name, a)
        }
        (Expect::VmEnds { end, .. }, _, Answer::VmEnded(got)) if end == got => Ok(()),
        (Expect::VmEnds { end, .. }, _, got) => Err(Mismatch::Kind {
            expected: end.name(),
            got: got.kind(),
        }),
        (_, _, got) => Err(Mismatch::Kind {
            expected: match case.expect {
                Expect::Tdx(_) => "TDX registers",
                Expect::Msr(_) => "a GHCB MSR value",
                Expect::Page(_) => "a GHCB page answer",
                Expect::VmEnds { .. } => "the VM to end",
            },
            got: got.kind(),
        }),
    }
}

// ----- Markdown (README "Conformance cases") ---------------------------------------------

#[cfg(any(feature = "std", test))]
mod markdown {
    use super::*;
    use std::fmt::Write as _;
    use std::string::String;

    fn arg(a: Arg) -> String {
        match a {
            Arg::Val(v) => format!("{v:#x}"),
            Arg::Shared(v) => format!("{v:#x}|shared"),
            Arg::Ghcb(o) => format!("GHCB+{o:#x}"),
            Arg::MapGpaPage => "page|shared".into(),
        }
    }

    fn field_name(offset: usize) -> &'static str {
        match offset {
            off::RAX => "rax",
            off::RBX => "rbx",
            off::RCX => "rcx",
            off::RDX => "rdx",
            off::RSI => "rsi",
            off::SW_EXIT_CODE => "exit_code",
            off::SW_EXIT_INFO_1 => "info1",
            off::SW_EXIT_INFO_2 => "info2",
            off::SW_SCRATCH => "scratch",
            off::XCR0 => "xcr0",
            _ => "field",
        }
    }

    fn request(r: &Request) -> String {
        match r {
            Request::Tdx(t) => format!(
                "rcx={:#x} r10={:#x} r11={:#x} r12={} r13={} r14={} r15={}",
                t.rcx,
                t.r10,
                t.r11,
                arg(t.r12),
                arg(t.r13),
                arg(t.r14),
                arg(t.r15)
            ),
            Request::GhcbMsr(v) => format!("msr={v:#x}"),
            Request::GhcbPage(p) => {
                let mut s = String::new();
                for f in p.fields {
                    let _ = write!(s, "{}={} ", field_name(f.offset), arg(f.value));
                }
                let valid: Vec<&str> = p
                    .fields
                    .iter()
                    .filter(|f| f.valid)
                    .map(|f| field_name(f.offset))
                    .collect();
                let _ = write!(s, "valid={}", valid.join(","));
                if p.protocol_version != ghcb::GHCB_VERSION_MAX {
                    let _ = write!(s, " version={}", p.protocol_version);
                }
                if p.usage != 0 {
                    let _ = write!(s, " usage={}", p.usage);
                }
                s
            }
        }
    }

    fn reg(name: &str, r: Reg, status_name: fn(u64) -> &'static str) -> Option<String> {
        match r {
            Reg::Any | Reg::Unchanged => None,
            Reg::Is(Arg::Val(v)) => Some(match status_name(v) {
                "" => format!("{name}={v:#x}"),
                n => format!("{name}={n}"),
            }),
            Reg::Is(a) => Some(format!("{name}={}", arg(a))),
            Reg::StatusClass(v) => Some(format!("{name}={}", module_status_name(v))),
        }
    }

    fn expect(e: &Expect) -> String {
        match e {
            Expect::Tdx(t) => {
                let mut parts: Vec<String> = Vec::new();
                if t.rax != v(tdx::TDX_SUCCESS) {
                    parts.extend(reg("rax", t.rax, module_status_name));
                }
                parts.extend(reg("r10", t.r10, vmcall_status_name));
                for (n, r) in [
                    ("r11", t.r11),
                    ("r12", t.r12),
                    ("r13", t.r13),
                    ("r14", t.r14),
                    ("r15", t.r15),
                ] {
                    parts.extend(reg(n, r, no_name));
                }
                if parts.is_empty() {
                    "all unchanged".into()
                } else {
                    parts.join(" ")
                }
            }
            Expect::Msr(Reg::Unchanged) => "msr unchanged".into(),
            Expect::Msr(r) => reg("msr", *r, no_name).unwrap_or_default(),
            Expect::Page(p) if p.info1 == result::ERROR => {
                format!("info1=2 info2={}", error::name(p.info2))
            }
            Expect::Page(p) => format!("info1={:#x} info2={:#x}", p.info1, p.info2),
            Expect::VmEnds { end, why } => format!("VM ends: {} (not executed: {why})", end.name()),
        }
    }

    /// Text for a table cell outside a code span: `|` escaped, `<` `>` as entities (the
    /// GHCI's `TDG.VP.VMCALL<MapGPA>` would otherwise read as an HTML tag).
    fn cell(s: &str) -> String {
        s.replace('|', "\\|")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    /// The "Conformance cases" table: one row per case.
    pub fn render() -> String {
        let mut s = String::new();
        s.push_str("| case | request | KVM's answer | source |\n");
        s.push_str("|---|---|---|---|\n");
        for c in CASES {
            let suite = c.suite();
            let mut answer = expect(&c.expect);
            if !c.note.is_empty() {
                let _ = write!(answer, "; {}", c.note);
            }
            let _ = writeln!(
                s,
                "| `{suite}.{}` | `{}` | {} | {} |",
                c.id,
                request(&c.request).replace('|', "\\|"),
                cell(&answer),
                cell(c.source)
            );
        }
        s
    }
}

/// The README's "Conformance cases" table, rendered from [`CASES`].
#[cfg(any(feature = "std", test))]
pub fn markdown() -> std::string::String {
    markdown::render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::is_valid_name;

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
}
