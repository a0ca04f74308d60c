//! AMD SEV-ES guest-host interface: the GHCB MSR protocol, the GHCB page layout, exit codes
//! and KVM's error answers.
//!
//! Sources: AMD "SEV-ES Guest-Hypervisor Communication Block Standardization" (pub. 56421,
//! revision 2.x; sections cited per item), AMD APM vol. 2 15.35 (SEV-ES), Linux
//! `arch/x86/include/asm/sev-common.h`, `arch/x86/include/asm/svm.h` (`struct ghcb`), and KVM
//! `arch/x86/kvm/svm/sev.c` (`sev_handle_vmgexit_msr_protocol`, `sev_handle_vmgexit`,
//! `setup_vmgexit_scratch`) for what KVM answers.

use core::mem::offset_of;

/// SEV_STATUS MSR (AMD APM vol. 2 15.34.10): bit 0 SEV, bit 1 SEV-ES, bit 2 SNP.
pub const MSR_SEV_STATUS: u32 = 0xc001_0131;
/// SEV_STATUS bit: SEV enabled.
pub const SEV_STATUS_SEV: u64 = 1 << 0;
/// SEV_STATUS bit: SEV-ES enabled.
pub const SEV_STATUS_SEV_ES: u64 = 1 << 1;
/// SEV_STATUS bit: SEV-SNP enabled.
pub const SEV_STATUS_SNP: u64 = 1 << 2;
/// The GHCB MSR (GHCB spec 2.3.1): holds an MSR-protocol request/response or the GHCB GPA.
pub const MSR_GHCB: u32 = 0xc001_0130;

/// `VMGEXIT` encoding: F3 0F 01 D9 (REP VMMCALL), AMD APM vol. 3.
pub const VMGEXIT_BYTES: [u8; 4] = [0xf3, 0x0f, 0x01, 0xd9];
/// Name of the guest's exported symbol on its single VMGEXIT instruction (the built-in VMM
/// puts a hardware breakpoint there).
pub const VMGEXIT_SYMBOL: &str = "cvmprobe_vmgexit_insn";

/// The kernel symbol of its GHCB page (the hostile host's "rewrite after the guest read it"
/// lie watches the page's last field read with a data breakpoint).
pub const GHCB_SYMBOL: &str = "cvmprobe_ghcb";
/// The guest case whose verdict the built-in VMM's own check of the GHCB's mapping decides
/// too (`vmm::simulated::GhcbMapping`): it passes only if the guest's self-check said `ok`
/// and the host found the page mapped shared at every GHCB-page request.
pub const GHCB_MAPPING_CASE: (&str, &str) = ("platform", "sev_es_ghcb_shared");

/// CPUID leaf 0x8000001F (AMD APM vol. 3 E.4.17): EAX bit 1 SEV, bit 3 SEV-ES; EBX[5:0]
/// C-bit position.
pub const CPUID_SEV_LEAF: u32 = 0x8000_001f;
/// 0x8000001F EAX: SEV supported.
pub const CPUID_SEV: u32 = 1 << 1;
/// 0x8000001F EAX: SEV-ES supported.
pub const CPUID_SEV_ES: u32 = 1 << 3;
/// 0x8000001F EBX\[5:0\]: the C-bit position.
pub const CPUID_SEV_CBIT_MASK: u32 = 0x3f;

/// Lowest C-bit position this guest accepts. The C-bit is a page-table address bit (AMD APM
/// vol. 2 7.10.1: CPUID 0x8000001F EBX\[5:0\] gives its position); one below bit 32 would cut
/// into the addresses of the guest's RAM below 4 GiB.
pub const CBIT_MIN: u8 = 32;
/// Highest C-bit position this guest accepts: bit 51, the top of the 52-bit architectural
/// physical-address limit (AMD APM vol. 2 5.3, long-mode page translation).
pub const CBIT_MAX: u8 = 51;

/// The C-bit position of AMD EPYC 7002/7003 (Rome, Milan): bit 47 (QEMU
/// docs/system/i386/amd-memory-encryption.rst, `cbitpos`; what `sev_enc_bit` reads from CPUID
/// 0x8000001F EBX\[5:0\] on those parts).
pub const CBIT_MILAN: u8 = 47;
/// The C-bit position of AMD EPYC 9004 (Genoa) and later: bit 51.
pub const CBIT_GENOA: u8 = 51;

/// GHCB MSR protocol codes (low 12 bits). GHCB spec 2.3.1 table 3; Linux `sev-common.h`.
pub mod msr {
    /// Mask of the request/response code.
    pub const INFO_MASK: u64 = 0xfff;
    /// SEV information response: [63:48] max version, [47:32] min version, [31:24] C-bit.
    pub const SEV_INFO_RESP: u64 = 0x001;
    /// SEV information request.
    pub const SEV_INFO_REQ: u64 = 0x002;
    /// CPUID request: [63:32] function, [31:30] register.
    pub const CPUID_REQ: u64 = 0x004;
    /// CPUID response: value in [63:32].
    pub const CPUID_RESP: u64 = 0x005;
    /// AP reset hold request.
    pub const AP_RESET_HOLD_REQ: u64 = 0x006;
    /// Preferred GHCB GPA request (SNP).
    pub const PREF_GPA_REQ: u64 = 0x010;
    /// GHCB GPA registration request (SNP only: KVM terminates an SEV-ES guest that sends it).
    pub const REG_GPA_REQ: u64 = 0x012;
    /// Page state change request (SNP).
    pub const PSC_REQ: u64 = 0x014;
    /// Hypervisor feature support request.
    pub const HV_FT_REQ: u64 = 0x080;
    /// Hypervisor feature support response: features in [63:12].
    pub const HV_FT_RESP: u64 = 0x081;
    /// Termination request: [15:12] reason-code set, [23:16] reason code.
    pub const TERM_REQ: u64 = 0x100;
}

/// General termination reason-code set (GHCB spec 2.3.1, table 4).
pub const TERM_SET_GENERAL: u8 = 0;
/// Reason: general request termination.
pub const TERM_GENERAL_REQUEST: u8 = 0;
/// Reason: the SEV-ES / GHCB protocol range is not supported.
pub const TERM_PROTOCOL_UNSUPPORTED: u8 = 1;

/// CPUID register selector of an MSR-protocol CPUID request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidReg {
    /// EAX.
    Eax = 0,
    /// EBX.
    Ebx = 1,
    /// ECX.
    Ecx = 2,
    /// EDX.
    Edx = 3,
}

/// A GHCB MSR-protocol request, encoded for the GHCB MSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrRequest {
    /// SEV information (versions, C-bit).
    SevInfo,
    /// One CPUID register.
    Cpuid {
        /// Leaf (subleaf 0).
        function: u32,
        /// Which register.
        register: CpuidReg,
    },
    /// Hypervisor features.
    HvFeatures,
    /// Terminate the guest.
    Terminate {
        /// Reason-code set (4 bits).
        set: u8,
        /// Reason code.
        code: u8,
    },
}

impl From<MsrRequest> for u64 {
    fn from(r: MsrRequest) -> u64 {
        match r {
            MsrRequest::SevInfo => msr::SEV_INFO_REQ,
            MsrRequest::Cpuid { function, register } => {
                (u64::from(function) << 32) | ((register as u64) << 30) | msr::CPUID_REQ
            }
            MsrRequest::HvFeatures => msr::HV_FT_REQ,
            MsrRequest::Terminate { set, code } => {
                (u64::from(code) << 16) | (u64::from(set & 0xf) << 12) | msr::TERM_REQ
            }
        }
    }
}

/// A GHCB MSR-protocol response, decoded from the GHCB MSR after VMGEXIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrResponse {
    /// 0x001.
    SevInfo {
        /// Highest GHCB protocol version the host supports.
        max: u16,
        /// Lowest GHCB protocol version the host supports.
        min: u16,
        /// C-bit position.
        cbit: u8,
    },
    /// 0x005: the requested register.
    Cpuid {
        /// Value.
        value: u32,
    },
    /// 0x081.
    HvFeatures {
        /// Feature bits ([63:12] of the MSR, shifted down).
        features: u64,
    },
    /// Anything else (the raw MSR value): never assume, check.
    Other(u64),
}

impl MsrResponse {
    /// Decodes a GHCB MSR value.
    pub const fn decode(v: u64) -> Self {
        match v & msr::INFO_MASK {
            msr::SEV_INFO_RESP if (v >> 12) & 0xfff == 0 => MsrResponse::SevInfo {
                max: (v >> 48) as u16,
                min: (v >> 32) as u16,
                cbit: (v >> 24) as u8,
            },
            // KVM keeps the request's bits 31:12 (the register selector) in the response
            // (sev_handle_vmgexit_msr_protocol), and Linux's guest checks only the code.
            msr::CPUID_RESP => MsrResponse::Cpuid {
                value: (v >> 32) as u32,
            },
            msr::HV_FT_RESP => MsrResponse::HvFeatures { features: v >> 12 },
            _ => MsrResponse::Other(v),
        }
    }

    /// Encodes (the host side of the sim uses it).
    pub const fn encode(self) -> u64 {
        match self {
            MsrResponse::SevInfo { max, min, cbit } => {
                ((max as u64) << 48)
                    | ((min as u64) << 32)
                    | ((cbit as u64) << 24)
                    | msr::SEV_INFO_RESP
            }
            MsrResponse::Cpuid { value } => ((value as u64) << 32) | msr::CPUID_RESP,
            MsrResponse::HvFeatures { features } => (features << 12) | msr::HV_FT_RESP,
            MsrResponse::Other(v) => v,
        }
    }
}

/// GHCB protocol versions this guest speaks (GHCB spec: version 1 = SEV-ES, 2 adds
/// features the guest does not need but accepts).
pub const GHCB_VERSION_MIN: u16 = 1;
/// Highest version this guest speaks.
pub const GHCB_VERSION_MAX: u16 = 2;

/// The GHCB page (GHCB spec 2.x, table 1 "GHCB layout"; Linux `struct ghcb`). Shared with the
/// host: the guest maps it with the C-bit clear.
#[repr(C, align(4096))]
pub struct Ghcb {
    /// 0x000.
    pub reserved_000: [u8; 0xcb],
    /// 0x0CB: CPL.
    pub cpl: u8,
    /// 0x0CC.
    pub reserved_0cc: [u8; 0x1f8 - 0xcc],
    /// 0x1F8: RAX.
    pub rax: u64,
    /// 0x200.
    pub reserved_200: [u8; 0x308 - 0x200],
    /// 0x308: RCX.
    pub rcx: u64,
    /// 0x310: RDX.
    pub rdx: u64,
    /// 0x318: RBX.
    pub rbx: u64,
    /// 0x320.
    pub reserved_320: [u8; 0x330 - 0x320],
    /// 0x330: RSI.
    pub rsi: u64,
    /// 0x338.
    pub reserved_338: [u8; 0x390 - 0x338],
    /// 0x390: SW_EXITCODE.
    pub sw_exit_code: u64,
    /// 0x398: SW_EXITINFO1.
    pub sw_exit_info_1: u64,
    /// 0x3A0: SW_EXITINFO2.
    pub sw_exit_info_2: u64,
    /// 0x3A8: SW_SCRATCH.
    pub sw_scratch: u64,
    /// 0x3B0.
    pub reserved_3b0: [u8; 0x3e8 - 0x3b0],
    /// 0x3E8: XCR0.
    pub xcr0: u64,
    /// 0x3F0: valid bitmap, bit n = the 8-byte field at offset 8n.
    pub valid_bitmap: [u8; 16],
    /// 0x400.
    pub reserved_400: [u8; 0x800 - 0x400],
    /// 0x800: shared buffer.
    pub shared_buffer: [u8; SHARED_BUFFER_LEN],
    /// 0xFF0.
    pub reserved_ff0: [u8; 0xa],
    /// 0xFFA: protocol version.
    pub protocol_version: u16,
    /// 0xFFC: GHCB usage (0 = standard).
    pub ghcb_usage: u32,
}

/// Size of the shared buffer.
pub const SHARED_BUFFER_LEN: usize = 0x7f0;

/// Field offsets in the GHCB (bytes).
pub mod off {
    use super::*;
    /// CPL.
    pub const CPL: usize = offset_of!(Ghcb, cpl);
    /// RAX.
    pub const RAX: usize = offset_of!(Ghcb, rax);
    /// RCX.
    pub const RCX: usize = offset_of!(Ghcb, rcx);
    /// RDX.
    pub const RDX: usize = offset_of!(Ghcb, rdx);
    /// RBX.
    pub const RBX: usize = offset_of!(Ghcb, rbx);
    /// RSI.
    pub const RSI: usize = offset_of!(Ghcb, rsi);
    /// SW_EXITCODE.
    pub const SW_EXIT_CODE: usize = offset_of!(Ghcb, sw_exit_code);
    /// SW_EXITINFO1.
    pub const SW_EXIT_INFO_1: usize = offset_of!(Ghcb, sw_exit_info_1);
    /// SW_EXITINFO2.
    pub const SW_EXIT_INFO_2: usize = offset_of!(Ghcb, sw_exit_info_2);
    /// SW_SCRATCH.
    pub const SW_SCRATCH: usize = offset_of!(Ghcb, sw_scratch);
    /// XCR0.
    pub const XCR0: usize = offset_of!(Ghcb, xcr0);
    /// Valid bitmap.
    pub const VALID_BITMAP: usize = offset_of!(Ghcb, valid_bitmap);
    /// Shared buffer.
    pub const SHARED_BUFFER: usize = offset_of!(Ghcb, shared_buffer);
    /// Protocol version.
    pub const PROTOCOL_VERSION: usize = offset_of!(Ghcb, protocol_version);
    /// GHCB usage.
    pub const GHCB_USAGE: usize = offset_of!(Ghcb, ghcb_usage);
}

const _: () = {
    assert!(core::mem::size_of::<Ghcb>() == 4096);
    assert!(off::CPL == 0x0cb);
    assert!(off::RAX == 0x1f8);
    assert!(off::RCX == 0x308);
    assert!(off::RDX == 0x310);
    assert!(off::RBX == 0x318);
    assert!(off::RSI == 0x330);
    assert!(off::SW_EXIT_CODE == 0x390);
    assert!(off::SW_EXIT_INFO_1 == 0x398);
    assert!(off::SW_EXIT_INFO_2 == 0x3a0);
    assert!(off::SW_SCRATCH == 0x3a8);
    assert!(off::XCR0 == 0x3e8);
    assert!(off::VALID_BITMAP == 0x3f0);
    assert!(off::SHARED_BUFFER == 0x800);
    assert!(off::PROTOCOL_VERSION == 0xffa);
    assert!(off::GHCB_USAGE == 0xffc);
};

/// The valid-bitmap bit of the 8-byte field at byte offset `offset`.
pub const fn valid_bit(offset: usize) -> usize {
    offset / 8
}

/// SW_EXITCODE values (GHCB spec 2.x, 4.1 table 6 "non-automatic exits" and 4.1.x
/// "software-defined exits"; AMD APM vol. 2 appendix C for the SVM codes).
pub mod exit {
    /// CPUID (SVM_EXIT_CPUID).
    pub const CPUID: u64 = 0x72;
    /// HLT (SVM_EXIT_HLT); an automatic exit under SEV-ES, so KVM refuses it in a GHCB.
    pub const HLT: u64 = 0x78;
    /// IOIO (SVM_EXIT_IOIO).
    pub const IOIO: u64 = 0x7b;
    /// MSR (SVM_EXIT_MSR): SW_EXITINFO1 0 = read, 1 = write.
    pub const MSR: u64 = 0x7c;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// Nested page fault (#VC error code for MMIO on an unmapped GPA).
    pub const NPF: u64 = 0x400;
    /// MMIO read: SW_EXITINFO1 = GPA, SW_EXITINFO2 = size, SW_SCRATCH = buffer GPA.
    pub const MMIO_READ: u64 = 0x8000_0001;
    /// MMIO write.
    pub const MMIO_WRITE: u64 = 0x8000_0002;
    /// NMI complete.
    pub const NMI_COMPLETE: u64 = 0x8000_0003;
    /// AP HLT loop.
    pub const AP_HLT_LOOP: u64 = 0x8000_0004;
    /// AP jump table.
    pub const AP_JUMP_TABLE: u64 = 0x8000_0005;
    /// Hypervisor features (GHCB v2).
    pub const HV_FEATURES: u64 = 0x8000_fffd;
    /// Unsupported.
    pub const UNSUPPORTED: u64 = 0x8000_ffff;
}

/// IOIO SW_EXITINFO1 bits (AMD APM vol. 2 15.10.2, "IOIO intercept information").
pub mod ioio {
    /// IN (1) or OUT (0).
    pub const TYPE_IN: u64 = 1 << 0;
    /// String instruction.
    pub const STR: u64 = 1 << 2;
    /// REP prefix.
    pub const REP: u64 = 1 << 3;
    /// 8-bit operand.
    pub const SZ8: u64 = 1 << 4;
    /// 16-bit operand.
    pub const SZ16: u64 = 1 << 5;
    /// 32-bit operand.
    pub const SZ32: u64 = 1 << 6;
    /// 16-bit address size.
    pub const A16: u64 = 1 << 7;
    /// 32-bit address size.
    pub const A32: u64 = 1 << 8;
    /// 64-bit address size.
    pub const A64: u64 = 1 << 9;
    /// Port number shift ([31:16]).
    pub const PORT_SHIFT: u32 = 16;
}

/// SW_EXITINFO1 on return: 0 = success, 1 = an exception to inject (in SW_EXITINFO2),
/// 2 = an error (reason in SW_EXITINFO2). GHCB spec 2.x, 4.1 "GHCB response".
pub mod result {
    /// Success.
    pub const OK: u64 = 0;
    /// Inject the exception in SW_EXITINFO2.
    pub const EXCEPTION: u64 = 1;
    /// Error; SW_EXITINFO2 holds the reason.
    pub const ERROR: u64 = 2;
}

/// SW_EXITINFO2 when SW_EXITINFO1 = 1: the exception to inject, in the VMCB EVENTINJ format
/// (GHCB spec 2.x, 4.1 "GHCB response"; AMD APM vol. 2 15.20 "Event Injection"; Linux
/// `SVM_EVTINJ_*` in `asm/svm.h`).
pub mod event {
    /// Bits 7:0: the vector.
    pub const VECTOR_MASK: u64 = 0xff;
    /// Bits 10:8: the event type.
    pub const TYPE_MASK: u64 = 7 << 8;
    /// Event type 3: exception (fault or trap).
    pub const TYPE_EXCEPTION: u64 = 3 << 8;
    /// Bit 11: an error code is in bits 63:32.
    pub const ERROR_CODE_VALID: u64 = 1 << 11;
    /// Bit 31: the event is valid.
    pub const VALID: u64 = 1 << 31;
    /// #UD, one of the two exceptions a guest accepts from the host (Linux
    /// `verify_exception_info()` in `arch/x86/coco/sev/vc-shared.c`; AMD APM vol. 2 8.2).
    pub const VECTOR_UD: u8 = 6;
    /// #GP, what KVM injects for a refused MSR (`svm_vmgexit_inject_exception()`).
    pub const VECTOR_GP: u8 = 13;
}

/// Error reasons in SW_EXITINFO2 when SW_EXITINFO1 = 2 (GHCB spec 2.x; Linux
/// `GHCB_ERR_*` in `sev-common.h`; KVM `sev_handle_vmgexit()`, `svm_vmgexit_bad_input()`).
pub mod error {
    /// GHCB not registered (SNP).
    pub const NOT_REGISTERED: u64 = 1;
    /// ghcb_usage is not 0.
    pub const INVALID_USAGE: u64 = 2;
    /// SW_SCRATCH is 0, misplaced or too small.
    pub const INVALID_SCRATCH_AREA: u64 = 3;
    /// A required field is not marked valid.
    pub const MISSING_INPUT: u64 = 4;
    /// An input value is invalid.
    pub const INVALID_INPUT: u64 = 5;
    /// The exit code is unknown or not allowed.
    pub const INVALID_EVENT: u64 = 6;

    /// A name for a reason, for diagnostics.
    pub const fn name(r: u64) -> &'static str {
        match r {
            NOT_REGISTERED => "NOT_REGISTERED",
            INVALID_USAGE => "INVALID_USAGE",
            INVALID_SCRATCH_AREA => "INVALID_SCRATCH_AREA",
            MISSING_INPUT => "MISSING_INPUT",
            INVALID_INPUT => "INVALID_INPUT",
            INVALID_EVENT => "INVALID_EVENT",
            _ => "unknown reason",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msr_requests_encode() {
        assert_eq!(u64::from(MsrRequest::SevInfo), 0x002);
        assert_eq!(
            u64::from(MsrRequest::Cpuid {
                function: 0x8000_001f,
                register: CpuidReg::Ebx
            }),
            0x8000_001f_4000_0004
        );
        assert_eq!(u64::from(MsrRequest::HvFeatures), 0x080);
        assert_eq!(
            u64::from(MsrRequest::Terminate { set: 0, code: 1 }),
            0x0001_0100
        );
        assert_eq!(
            u64::from(MsrRequest::Terminate { set: 0x1f, code: 2 }),
            0x0002_f100
        );
    }

    #[test]
    fn msr_responses_round_trip_and_reject_reserved_bits() {
        for r in [
            MsrResponse::SevInfo {
                max: 2,
                min: 1,
                cbit: 47,
            },
            MsrResponse::Cpuid { value: 0xdead_beef },
            MsrResponse::HvFeatures { features: 3 },
        ] {
            assert_eq!(MsrResponse::decode(r.encode()), r);
        }
        // KVM's answer to a hypervisor-feature request: 0x3081.
        assert_eq!(
            MsrResponse::decode(0x3081),
            MsrResponse::HvFeatures { features: 3 }
        );
        // Reserved bits set: not a valid SEV-info response.
        assert_eq!(MsrResponse::decode(0x1001), MsrResponse::Other(0x1001));
        // KVM's CPUID answer keeps the request's register selector in bits 31:30.
        assert_eq!(
            MsrResponse::decode(0x0000_002f_4000_0005),
            MsrResponse::Cpuid { value: 0x2f }
        );
        // An unknown code comes back unchanged.
        assert_eq!(MsrResponse::decode(0x0ff), MsrResponse::Other(0x0ff));
        assert_eq!(
            MsrResponse::decode(0x0002_0001_2f00_0001),
            MsrResponse::SevInfo {
                max: 2,
                min: 1,
                cbit: 0x2f
            }
        );
    }

    #[test]
    fn valid_bits() {
        assert_eq!(valid_bit(off::RAX), 0x3f);
        assert_eq!(valid_bit(off::SW_EXIT_CODE), 0x72);
        assert_eq!(valid_bit(off::SW_SCRATCH), 0x75);
        assert_eq!(valid_bit(off::XCR0), 0x7d);
    }
}
