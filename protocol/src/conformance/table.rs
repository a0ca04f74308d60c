//! The conformance table: one row per case, its request, current KVM's answer, the older
//! releases' answers where they differ ([`Era`]), and where each comes from. Read it top to
//! bottom as the guest sends it; the helpers below only build requests and answers.

use super::*;
use crate::ghcb::{self, error, exit, ioio, off, result};
use crate::kvm::KvmProfile::{Current, V6_11};
use crate::tdx::{self, ExposeMask, status, vmcall};

// ----- table-building helpers ------------------------------------------------------------

use Arg::{Ghcb, Shared, Val};

pub(super) const fn v(x: u64) -> Reg {
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
const KVM_VALIDATE: &str = "GHCB spec 2.x 4.1 (valid bitmap); KVM sev_handle_vmgexit() -> sev_es_are_required_ghcb_fields_valid() (MISSING_INPUT; before the rewrite: sev_es_validate_vmgexit())";
const KVM_SNP_ONLY: &str = "GHCB spec 2.x 4.1.x (SNP Guest Request, SNP only); KVM sev_handle_vmgexit(): is_snp_only_vmgexit() && !is_sev_snp_guest() -> INVALID_EVENT, before sev_es_are_required_ghcb_fields_valid()";
const WHY_SNP_V6_11: &str = "v6.11 (SEV-SNP host support): sev_es_validate_vmgexit() checks the SW_EXITCODE/SW_EXITINFO1/SW_EXITINFO2 valid bits, then `if (!sev_snp_guest()) goto vmgexit_err` with reason MISSING_INPUT";
const WHY_SNP_V6_10: &str = "v6.10 and older (no SEV-SNP host support): an unknown exit code, INVALID_EVENT after the valid-bit check";
const WHY_V2_LIMITS: &str = "before the 2026 fix series (\"KVM: SEV: Reject MMIO requests larger than 8 bytes with GHCB v2+\", the GHCB v2 scratch check in setup_vmgexit_scratch(); tagged for stable) a version 2 VM was treated as version 1";
const KVM_SCRATCH: &str = "GHCB spec 2.x 4.1.x (SW_SCRATCH in the shared buffer); KVM setup_vmgexit_scratch() (INVALID_SCRATCH_AREA)";
const SCRATCH_V1: &str = "GHCB version 1 VMs (legacy KVM_SEV_INIT), any release: KVM bounces up to 16 pages from outside the GHCB: SUCCESS";

/// Every case, TDX first, then SEV-ES, in the guest's run order.
pub const CASES: &[Case] = &[
    // ----- TDX: Instruction.IO ---------------------------------------------------------
    Case {
        id: "io_size_0",
        doc: "Instruction.IO read of 0 bytes from port 0xf00 -> INVALID_OPERAND",
        request: io(0, tdx::DIR_READ),
        expect: status_only(status::INVALID_OPERAND),
        older: &[],
        source: KVM_IO,
        note: "",
    },
    Case {
        id: "io_size_3",
        doc: "Instruction.IO read of 3 bytes -> INVALID_OPERAND",
        request: io(3, tdx::DIR_READ),
        expect: status_only(status::INVALID_OPERAND),
        older: &[],
        source: KVM_IO,
        note: "",
    },
    Case {
        id: "io_size_5",
        doc: "Instruction.IO read of 5 bytes -> INVALID_OPERAND (the KVM selftests' case)",
        request: io(5, tdx::DIR_READ),
        expect: status_only(status::INVALID_OPERAND),
        older: &[],
        source: KVM_IO,
        note: "",
    },
    Case {
        id: "io_size_8",
        doc: "Instruction.IO read of 8 bytes -> INVALID_OPERAND",
        request: io(8, tdx::DIR_READ),
        expect: status_only(status::INVALID_OPERAND),
        older: &[],
        source: KVM_IO,
        note: "",
    },
    Case {
        id: "io_bad_direction",
        doc: "Instruction.IO of 1 byte with direction 2 (neither read nor write) -> INVALID_OPERAND",
        request: io(1, 2),
        expect: status_only(status::INVALID_OPERAND),
        older: &[],
        source: KVM_IO,
        note: "",
    },
    // ----- TDX: #VE.RequestMMIO --------------------------------------------------------
    Case {
        id: "mmio_size_0",
        doc: "MMIO read of 0 bytes at a shared GPA -> INVALID_OPERAND",
        request: mmio(0, Shared(MMIO_GPA)),
        expect: status_only(status::INVALID_OPERAND),
        older: &[],
        source: KVM_MMIO,
        note: "",
    },
    Case {
        id: "mmio_size_3",
        doc: "MMIO read of 3 bytes at a shared GPA -> INVALID_OPERAND",
        request: mmio(3, Shared(MMIO_GPA)),
        expect: status_only(status::INVALID_OPERAND),
        older: &[],
        source: KVM_MMIO,
        note: "",
    },
    Case {
        id: "mmio_size_16",
        doc: "MMIO read of 16 bytes at a shared GPA -> INVALID_OPERAND",
        request: mmio(16, Shared(MMIO_GPA)),
        expect: status_only(status::INVALID_OPERAND),
        older: &[],
        source: KVM_MMIO,
        note: "",
    },
    Case {
        id: "mmio_private_gpa",
        doc: "MMIO read of 4 bytes at a private GPA (shared bit clear) -> INVALID_OPERAND",
        request: mmio(4, Val(MMIO_GPA)),
        expect: status_only(status::INVALID_OPERAND),
        older: &[],
        source: "GHCI 1.5 TDG.VP.VMCALL<#VE.RequestMMIO> (shared GPA only); KVM tdx_emulate_mmio() (tdx_is_private_gpa)",
        note: "",
    },
    // ----- TDX: sub-function dispatch ----------------------------------------------------
    Case {
        id: "unknown_subfunction",
        doc: "standard TDVMCALL sub-function 0xffff -> SUBFUNC_UNSUPPORTED",
        request: vmcall(UNKNOWN_SUBFUNCTION, Val(0), Val(0), Val(0), Val(0)),
        expect: status_only(status::SUBFUNC_UNSUPPORTED),
        older: &[],
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
        older: &[],
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
        older: &[],
        source: "GHCI 1.5 TDG.VP.VMCALL<GetTdVmCallInfo>; KVM tdx_get_td_vm_call_info()",
        note: "",
    },
    Case {
        id: "get_td_vm_call_info_leaf2",
        doc: "GetTdVmCallInfo with R12 = 2 (undefined leaf) -> INVALID_OPERAND",
        request: vmcall(vmcall::GET_TD_VM_CALL_INFO, Val(2), Val(0), Val(0), Val(0)),
        expect: status_only(status::INVALID_OPERAND),
        older: &[],
        source: "GHCI 1.5 TDG.VP.VMCALL<GetTdVmCallInfo>; KVM tdx_get_td_vm_call_info() default case",
        note: "",
    },
    // ----- TDX: MapGPA -------------------------------------------------------------------
    Case {
        id: "map_gpa_to_shared",
        doc: "MapGPA of one 4 KiB page (the guest's own spare page) to shared -> SUCCESS",
        request: map_gpa(Arg::MapGpaPage, 0x1000),
        expect: status_only(status::SUCCESS),
        older: &[],
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
        older: &[],
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
        older: &[],
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
        older: &[],
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
        older: &[],
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
        older: &[],
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
        older: &[],
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
        older: &[],
        source: "TDX module ABI spec TDG.VP.VMCALL (RCX bits 0, 1, 4, 5, 63:32 must be 0); intel/tdx-module tdg_vp_vmcall()",
        note: "answered by the TDX module, not KVM: a host cannot change it",
    },
    // ----- SEV-ES: MSR protocol ----------------------------------------------------------
    Case {
        id: "msr_unknown_request",
        doc: "GHCB MSR protocol request code 0xff0 (undefined) -> the MSR keeps the request",
        request: Request::GhcbMsr(UNKNOWN_MSR_REQUEST),
        expect: Expect::Msr(Reg::Unchanged),
        older: &[],
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
        older: &[Era {
            kvm: Kvms::before(V6_11),
            expect: Expect::Msr(Reg::Unchanged),
            why: "v6.10 and older (no SEV-SNP host support): an unknown MSR-protocol code, the MSR keeps the request",
        }],
        source: "GHCB spec 2.x 2.3.1 (0x012, SNP); KVM sev_handle_vmgexit_msr_protocol() (!is_sev_snp_guest -> out_terminate)",
        note: "",
    },
    // ----- SEV-ES: exit codes ------------------------------------------------------------
    Case {
        id: "hlt_via_ghcb",
        doc: "GHCB exit code HLT (0x78): an automatic exit under SEV-ES -> INVALID_EVENT",
        request: page(ghcb_fields!(exit::HLT, 0, 0)),
        expect: page_error(error::INVALID_EVENT),
        older: &[],
        source: "AMD APM vol. 2 15.35 (HLT is an automatic exit); KVM sev_handle_vmgexit() dispatch, default case (before the rewrite: sev_es_validate_vmgexit() default case)",
        note: "",
    },
    Case {
        id: "unknown_exit_code",
        doc: "GHCB exit code 0x60 (SVM_EXIT_INTR, not a GHCB exit) -> INVALID_EVENT",
        request: page(ghcb_fields!(SVM_EXIT_INTR, 0, 0)),
        expect: page_error(error::INVALID_EVENT),
        older: &[],
        source: "GHCB spec 2.x 4.1 (non-automatic exits); KVM sev_handle_vmgexit() dispatch, default case (before the rewrite: sev_es_validate_vmgexit() default case)",
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
        older: &[],
        source: "GHCB spec 2.x 4.1.x (Unsupported Event); KVM sev_handle_vmgexit() SVM_VMGEXIT_UNSUPPORTED_EVENT",
        note: "",
    },
    Case {
        id: "snp_only_exit_code",
        doc: "GHCB exit code 0x80000011 (SNP guest request) from an SEV-ES guest, every field marked valid, request = response page -> INVALID_EVENT",
        request: page(ghcb_fields!(SNP_GUEST_REQUEST, 0, 0)),
        expect: page_error(error::INVALID_EVENT),
        older: &[Era {
            kvm: Kvms::since(V6_11).and(Kvms::before(Current)),
            expect: page_error(error::MISSING_INPUT),
            why: WHY_SNP_V6_11,
        }],
        source: KVM_SNP_ONLY,
        note: "",
    },
    Case {
        id: "snp_only_exit_code_unmarked",
        doc: "GHCB exit code 0x80000011 (SNP guest request) with SW_EXITCODE not marked valid -> INVALID_EVENT (current KVM reads the exit code without its valid bit)",
        request: page(raw_fields![
            unmarked(off::SW_EXIT_CODE, Val(SNP_GUEST_REQUEST)),
            valid(off::SW_EXIT_INFO_1, Val(0)),
            valid(off::SW_EXIT_INFO_2, Val(0)),
        ]),
        expect: page_error(error::INVALID_EVENT),
        older: &[Era {
            kvm: Kvms::before(Current),
            expect: page_error(error::MISSING_INPUT),
            why: WHY_SNP_V6_10,
        }],
        source: KVM_SNP_ONLY,
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
        older: &[],
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
        older: &[],
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
        older: &[],
        source: KVM_VALIDATE,
        note: "",
    },
    Case {
        id: "mmio_scratch_not_valid",
        doc: "MMIO write of 8 bytes with SW_SCRATCH (the shared buffer) not marked valid -> MISSING_INPUT",
        request: mmio_page!(exit::MMIO_WRITE, 8, SCRATCH_BUF, false),
        expect: page_error(error::MISSING_INPUT),
        older: &[],
        source: KVM_VALIDATE,
        note: "",
    },
    // ----- SEV-ES: the scratch area ------------------------------------------------------
    Case {
        id: "scratch_zero",
        doc: "MMIO write of 8 bytes with SW_SCRATCH = 0 -> INVALID_SCRATCH_AREA",
        request: mmio_page!(exit::MMIO_WRITE, 8, Val(0), true),
        expect: page_error(error::INVALID_SCRATCH_AREA),
        older: &[],
        source: KVM_SCRATCH,
        note: "",
    },
    Case {
        id: "scratch_before_shared_buffer",
        doc: "MMIO write of 8 bytes with SW_SCRATCH at GHCB+0x400 (in the page, before the shared buffer) -> INVALID_SCRATCH_AREA",
        request: mmio_page!(exit::MMIO_WRITE, 8, Ghcb(0x400), true),
        expect: page_error(error::INVALID_SCRATCH_AREA),
        older: &[],
        source: KVM_SCRATCH,
        note: "",
    },
    Case {
        id: "scratch_past_shared_buffer",
        doc: "MMIO write of 8 bytes with SW_SCRATCH at GHCB+0xFEC (ends past the shared buffer at 0xFF0) -> INVALID_SCRATCH_AREA",
        request: mmio_page!(exit::MMIO_WRITE, 8, Ghcb(0xfec), true),
        expect: page_error(error::INVALID_SCRATCH_AREA),
        older: &[],
        source: KVM_SCRATCH,
        note: "",
    },
    Case {
        id: "scratch_outside_ghcb",
        doc: "MMIO write of 8 bytes with SW_SCRATCH in the page after the GHCB -> INVALID_SCRATCH_AREA",
        request: page(ghcb_fields!(
            exit::MMIO_WRITE,
            UNASSIGNED_MMIO_GPA,
            8,
            valid(off::SW_SCRATCH, Ghcb(0x1800))
        )),
        expect: page_error(error::INVALID_SCRATCH_AREA),
        older: &[Era {
            kvm: Kvms::before(Current),
            expect: PAGE_OK,
            why: WHY_V2_LIMITS,
        }],
        source: KVM_SCRATCH,
        note: SCRATCH_V1,
    },
    // ----- SEV-ES: MMIO sizes ------------------------------------------------------------
    Case {
        id: "mmio_size_0_ghcb",
        doc: "MMIO read of 0 bytes -> SUCCESS without any access (KVM treats it as a no-op)",
        request: mmio_page!(exit::MMIO_READ, 0, SCRATCH_BUF, true),
        expect: PAGE_OK,
        older: &[],
        source: "GHCB spec 2.x 4.1.x (MMIO Access); KVM sev_handle_vmgexit() SVM_VMGEXIT_MMIO_READ (length 0)",
        note: "",
    },
    Case {
        id: "mmio_size_16_ghcb",
        doc: "MMIO read of 16 bytes -> INVALID_INPUT",
        request: page(ghcb_fields!(
            exit::MMIO_READ,
            UNASSIGNED_MMIO_GPA,
            16,
            valid(off::SW_SCRATCH, SCRATCH_BUF)
        )),
        expect: page_error(error::INVALID_INPUT),
        older: &[Era {
            kvm: Kvms::before(Current),
            expect: PAGE_OK,
            why: WHY_V2_LIMITS,
        }],
        source: "GHCB spec 2.x 4.1.x (MMIO Access); KVM sev_handle_vmgexit() (\"Reject MMIO requests larger than 8 bytes with GHCB v2+\")",
        note: "GHCB version 1 VMs, any release: SUCCESS, split into two 8-byte MMIO exits",
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
        older: &[],
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
        older: &[],
        source: "AMD APM vol. 2 15.10.2 (one-hot size bits); KVM io_interception() (size = SZ bits >> 4, unchecked) -> kvm_fast_pio()",
        note: "",
    },
    // ----- SEV-ES: usage and protocol version --------------------------------------------
    Case {
        id: "usage_nonzero",
        doc: "CPUID leaf 0 with GHCB usage 1 -> INVALID_USAGE (checked before anything else)",
        request: cpuid_page(ghcb::GHCB_VERSION_MAX, 1),
        expect: page_error(error::INVALID_USAGE),
        older: &[],
        source: "GHCB spec 2.x 2.2 (GHCB usage 0 = standard); KVM sev_handle_vmgexit() (ghcb_usage, its first check; before the rewrite: sev_es_validate_vmgexit())",
        note: "",
    },
    Case {
        id: "protocol_version_0",
        doc: "CPUID leaf 0 with protocol version 0 in the page -> SUCCESS (KVM never reads the field)",
        request: cpuid_page(0, 0),
        expect: PAGE_OK,
        older: &[],
        source: "GHCB spec 2.x 2.2 (protocol version field); KVM sev.c: no reader of ghcb->protocol_version; version is negotiated by the MSR protocol (sev_es_vcpu_reset)",
        note: "",
    },
    Case {
        id: "protocol_version_3",
        doc: "CPUID leaf 0 with protocol version 3 in the page -> SUCCESS (KVM never reads the field)",
        request: cpuid_page(3, 0),
        expect: PAGE_OK,
        older: &[],
        source: "GHCB spec 2.x 2.2 (protocol version field); KVM sev.c: no reader of ghcb->protocol_version",
        note: "",
    },
];
