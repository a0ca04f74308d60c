//! Intel TDX guest-host interface numbers: TDCALL leaves, TDG.VP.VMCALL sub-functions and
//! status codes, and the register conventions of the GHCI.
//!
//! Sources: Intel "Guest-Hypervisor Communication Interface (GHCI) for Intel TDX 1.5"
//! (sections cited per item), Intel TDX Module ABI specification, Linux
//! `arch/x86/include/asm/shared/tdx.h`, `arch/x86/coco/tdx/tdx.c`, and KVM
//! `arch/x86/kvm/vmx/tdx.c` (`handle_tdvmcall` and its helpers) for what KVM answers.

/// `TDCALL` encoding (Intel TDX module ABI spec, "TDCALL instruction"): 66 0F 01 CC.
pub const TDCALL_BYTES: [u8; 4] = [0x66, 0x0f, 0x01, 0xcc];

/// Bytes of TDCALL: the simulated TDX host moves RIP this far after answering.
pub const TDCALL_LEN: u64 = TDCALL_BYTES.len() as u64;

/// CPUID leaf of the TDX identification (GHCI 1.5, 2.4.5; Linux `TDX_CPUID_LEAF_ID`): EBX,
/// EDX, ECX spell [`CPUID_IDENT`] in a TD.
pub const CPUID_LEAF: u32 = 0x21;
/// "IntelTDX    " as a TD reads it from leaf [`CPUID_LEAF`] (EBX, EDX, ECX; Linux
/// `TDX_IDENT`).
pub const CPUID_IDENT: &[u8; 12] = b"IntelTDX    ";

/// TDCALL leaf numbers (RAX on input). TDX module ABI spec, "TDCALL leaf functions";
/// Linux `asm/shared/tdx.h`.
pub mod leaf {
    /// TDG.VP.VMCALL: call the host VMM (GHCI 1.5, 2.4).
    pub const VP_VMCALL: u64 = 0;
    /// TDG.VP.INFO: TD execution environment (GPAW, attributes, vCPU counts).
    pub const VP_INFO: u64 = 1;
    /// TDG.VP.VEINFO.GET: the pending #VE's information.
    pub const VP_VEINFO_GET: u64 = 3;
    /// TDG.MR.REPORT.
    pub const MR_REPORT: u64 = 4;
    /// TDG.MEM.PAGE.ACCEPT.
    pub const MEM_PAGE_ACCEPT: u64 = 6;
    /// TDG.VM.RD.
    pub const VM_RD: u64 = 7;
    /// TDG.VM.WR.
    pub const VM_WR: u64 = 8;
}

/// TDX module completion status (RAX on output): success.
pub const TDX_SUCCESS: u64 = 0;
/// TDX module status TDX_OPERAND_INVALID (class 0xC000_0100): returned by TDG.VP.VMCALL when
/// the RCX exposure bitmap is invalid; no exit to the host (TDX module ABI spec, TDG.VP.VMCALL
/// "Completion status codes").
pub const TDX_OPERAND_INVALID: u64 = 0xc000_0100_0000_0000;

/// TDG.VP.INFO output: RCX[5:0] = GPAW (GHCI 1.5, 2.4.2; TDX module ABI TDG.VP.INFO).
pub const VP_INFO_GPAW_MASK: u64 = 0x3f;
/// TDG.VP.INFO output RDX bit 28: SEPT_VE_DISABLE attribute.
pub const ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;
/// TDG.VP.INFO output RDX bit 0: DEBUG attribute.
pub const ATTR_DEBUG: u64 = 1;

/// Exit reason in TDG.VP.VEINFO.GET RCX for an EPT violation (Intel SDM vol. 3C, appendix C,
/// basic exit reason 48).
pub const EXIT_REASON_EPT_VIOLATION: u64 = 48;

/// EPT-violation exit qualification bits, as TDG.VP.VEINFO.GET returns them in RDX (Intel SDM
/// vol. 3C 28.2.1, table 28-7 "Exit Qualification for EPT Violations").
pub mod ept_qual {
    /// Bit 0: the access was a data read.
    pub const READ: u64 = 1 << 0;
    /// Bit 1: the access was a data write.
    pub const WRITE: u64 = 1 << 1;
    /// Bit 2: the access was an instruction fetch.
    pub const FETCH: u64 = 1 << 2;
    /// Bits 2:0, the access type: exactly one of them for a plain load or store.
    pub const ACCESS_MASK: u64 = READ | WRITE | FETCH;
    /// Bit 7: the guest linear address (TDG.VP.VEINFO.GET R8) is valid.
    pub const GLA_VALID: u64 = 1 << 7;
    /// Bit 8 (with bit 7): the access was to the translated linear address, not to a
    /// paging-structure entry.
    pub const GLA_TRANSLATED: u64 = 1 << 8;
}

/// A guest physical-address width the TDX module reports in TDG.VP.INFO RCX\[5:0\]: 48 (4-level
/// secure EPT) or 52 (5-level) (TDX module ABI spec, TDG.VP.INFO; GHCI 1.5, 2.4.2).
///
/// One more kind exists, and only by the host's declaration: tdx-sim on a vCPU narrower than
/// 48 physical-address bits reports GPAW = that width (a shared bit at 47 would be a reserved
/// PTE bit there), and says so on the command line (`cmdline::KEY_SIM_PHYS_BITS`). Such a
/// width is built by [`Gpaw::simulated`] only; [`Gpaw::is_architectural`] tells it apart. A
/// real TD reporting 46 still fails: no real host declares a simulated platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gpaw(u32);

impl Gpaw {
    /// GPAW 48: the shared bit is bit 47.
    pub const W48: Gpaw = Gpaw(48);
    /// GPAW 52: the shared bit is bit 51.
    pub const W52: Gpaw = Gpaw(52);

    /// The width of `bits`, if it is one the TDX module defines.
    pub const fn new(bits: u64) -> Option<Self> {
        if bits == Self::W48.0 as u64 {
            Some(Self::W48)
        } else if bits == Self::W52.0 as u64 {
            Some(Self::W52)
        } else {
            None
        }
    }

    /// The width of `bits` when the host declared a simulated TDX on a vCPU with
    /// `declared` physical-address bits: an architectural width as [`Gpaw::new`], or exactly
    /// the declared width if that is narrower than 48 and at least
    /// [`crate::platform::PHYS_BITS_MIN`] (the only non-architectural GPAW tdx-sim reports).
    pub const fn simulated(bits: u64, declared: Option<u8>) -> Option<Self> {
        if let Some(g) = Self::new(bits) {
            return Some(g);
        }
        match declared {
            Some(d)
                if d as u64 == bits
                    && d >= crate::platform::PHYS_BITS_MIN
                    && (d as u32) < Self::W48.0 =>
            {
                Some(Gpaw(d as u32))
            }
            _ => None,
        }
    }

    /// Whether the TDX module could report this width (48 or 52).
    pub const fn is_architectural(self) -> bool {
        self.0 == Self::W48.0 || self.0 == Self::W52.0
    }

    /// The width in bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The shared bit (bit GPAW-1).
    pub const fn shared_bit(self) -> u64 {
        shared_bit(self.0)
    }

    /// Whether `gpa` lies below 2^GPAW.
    pub const fn contains(self, gpa: u64) -> bool {
        gpa >> self.0 == 0
    }
}

/// TDG.VP.VMCALL sub-function numbers (R11) of the GHCI "standard" (R10 = 0) interface.
/// GHCI 1.5 table 2-4 (TDG.VP.VMCALL leaf codes); Linux `asm/shared/tdx.h`.
pub mod vmcall {
    /// R10 value selecting a GHCI standard sub-function (non-zero: vendor-specific).
    pub const STANDARD: u64 = 0;
    /// `Instruction.CPUID`: R12 leaf, R13 subleaf -> R12..R15 = EAX..EDX.
    pub const CPUID: u64 = 10;
    /// `Instruction.HLT`: R12 = interrupt-blocked flag.
    pub const HLT: u64 = 12;
    /// `Instruction.IO`: R12 size, R13 direction (0 read, 1 write), R14 port, R15 value;
    /// read value in R11.
    pub const IO: u64 = 30;
    /// `Instruction.RDMSR`: R12 index -> R11 value.
    pub const RDMSR: u64 = 31;
    /// `Instruction.WRMSR`: R12 index, R13 value.
    pub const WRMSR: u64 = 32;
    /// `#VE.RequestMMIO` (EPT violation): R12 size, R13 direction, R14 GPA, R15 value; read
    /// value in R11.
    pub const MMIO: u64 = 48;
    /// `GetTdVmCallInfo`: R12 leaf.
    pub const GET_TD_VM_CALL_INFO: u64 = 0x10000;
    /// `MapGPA`: R12 GPA, R13 size.
    pub const MAP_GPA: u64 = 0x10001;
    /// `GetQuote`.
    pub const GET_QUOTE: u64 = 0x10002;
    /// `ReportFatalError`: ends the TD (KVM: KVM_EXIT_SYSTEM_EVENT, type TDX_FATAL).
    pub const REPORT_FATAL_ERROR: u64 = 0x10003;
    /// `SetupEventNotifyInterrupt`.
    pub const SETUP_EVENT_NOTIFY_INTERRUPT: u64 = 0x10004;
}

/// TDG.VP.VMCALL status (R10 on output). GHCI 1.5 table 2-5; Linux `asm/shared/tdx.h`.
pub mod status {
    /// Success.
    pub const SUCCESS: u64 = 0;
    /// Retry the call (MapGPA: R11 = the next GPA).
    pub const RETRY: u64 = 1;
    /// An operand is invalid.
    pub const INVALID_OPERAND: u64 = 0x8000_0000_0000_0000;
    /// GPA or size misaligned (MapGPA).
    pub const ALIGN_ERROR: u64 = 0x8000_0000_0000_0002;
    /// The sub-function is not supported.
    pub const SUBFUNC_UNSUPPORTED: u64 = 0x8000_0000_0000_0003;
    /// What KVM answers in R10 for an unknown KVM hypercall (R10 != 0): -KVM_ENOSYS.
    pub const KVM_ENOSYS: u64 = (-1000i64) as u64;

    /// A name for a status, for diagnostics.
    pub const fn name(s: u64) -> &'static str {
        match s {
            SUCCESS => "SUCCESS",
            RETRY => "RETRY",
            INVALID_OPERAND => "INVALID_OPERAND",
            ALIGN_ERROR => "ALIGN_ERROR",
            SUBFUNC_UNSUPPORTED => "SUBFUNC_UNSUPPORTED",
            KVM_ENOSYS => "-KVM_ENOSYS",
            _ => "unknown status",
        }
    }
}

/// IO / MMIO direction operand (R13).
pub const DIR_READ: u64 = 0;
/// IO / MMIO direction operand (R13).
pub const DIR_WRITE: u64 = 1;

/// The TDVMCALL register-exposure bitmap (RCX): bit n exposes GPR n to the host
/// (RAX = 0 ... R15 = 15). GHCI 1.5, 2.4.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExposeMask(pub u64);

impl ExposeMask {
    /// RDX.
    pub const RDX: u64 = 1 << 2;
    /// RBX.
    pub const RBX: u64 = 1 << 3;
    /// RSI.
    pub const RSI: u64 = 1 << 6;
    /// RDI.
    pub const RDI: u64 = 1 << 7;
    /// R8.
    pub const R8: u64 = 1 << 8;
    /// R9.
    pub const R9: u64 = 1 << 9;
    /// R10.
    pub const R10: u64 = 1 << 10;
    /// R11.
    pub const R11: u64 = 1 << 11;
    /// R12.
    pub const R12: u64 = 1 << 12;
    /// R13.
    pub const R13: u64 = 1 << 13;
    /// R14.
    pub const R14: u64 = 1 << 14;
    /// R15.
    pub const R15: u64 = 1 << 15;
    /// What Linux exposes for every TDVMCALL (`TDVMCALL_EXPOSE_REGS_MASK`): RDX, RBX, RSI,
    /// RDI and R8-R15 = 0xFFCC.
    pub const LINUX: ExposeMask = ExposeMask(0xffcc);
    /// R10-R15 only: the status, the sub-function and the four operand registers, all that
    /// the standard sub-functions the guest sends take and return (GHCI 1.5 2.4.x: IO, MMIO,
    /// CPUID, RDMSR, WRMSR and HLT use R12-R15). The TDX module preserves every register it
    /// does not expose (`save_regs_after_tdvmcall()` writes back only exposed ones), so the
    /// guest neither zeroes nor reloads RDX, RBX, RSI, RDI, R8 and R9 for a request.
    pub const ARGS: ExposeMask = ExposeMask(0xfc00);
    /// Bits the TDX module refuses (RAX, RCX, RSP, RBP, and 63:32): TDX_OPERAND_INVALID.
    pub const FORBIDDEN: u64 = 0xffff_ffff_0000_0033;

    /// Whether the TDX module accepts this bitmap.
    pub const fn is_valid(self) -> bool {
        self.0 & Self::FORBIDDEN == 0
    }

    /// Whether GPR `n` (0..16) is exposed.
    pub const fn exposes(self, n: u32) -> bool {
        n < 16 && self.0 & (1 << n) != 0
    }
}

/// The registers TDCALL reads and writes, in one struct (the guest's `tdcall` wrapper loads
/// and stores all of them; the simulated TDX module reads and writes the same set).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TdcallRegs {
    /// RAX: leaf in, TDX module status out.
    pub rax: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RBX.
    pub rbx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
}

/// Byte offsets of [`TdcallRegs`] fields (the guest's asm uses them through `offset_of!`).
pub mod regs_offset {
    use super::TdcallRegs;
    use core::mem::offset_of;
    /// RAX.
    pub const RAX: usize = offset_of!(TdcallRegs, rax);
    /// RCX.
    pub const RCX: usize = offset_of!(TdcallRegs, rcx);
    /// RDX.
    pub const RDX: usize = offset_of!(TdcallRegs, rdx);
    /// RBX.
    pub const RBX: usize = offset_of!(TdcallRegs, rbx);
    /// RSI.
    pub const RSI: usize = offset_of!(TdcallRegs, rsi);
    /// RDI.
    pub const RDI: usize = offset_of!(TdcallRegs, rdi);
    /// R8.
    pub const R8: usize = offset_of!(TdcallRegs, r8);
    /// R9.
    pub const R9: usize = offset_of!(TdcallRegs, r9);
    /// R10.
    pub const R10: usize = offset_of!(TdcallRegs, r10);
    /// R11.
    pub const R11: usize = offset_of!(TdcallRegs, r11);
    /// R12.
    pub const R12: usize = offset_of!(TdcallRegs, r12);
    /// R13.
    pub const R13: usize = offset_of!(TdcallRegs, r13);
    /// R14.
    pub const R14: usize = offset_of!(TdcallRegs, r14);
    /// R15.
    pub const R15: usize = offset_of!(TdcallRegs, r15);
    const _: () = assert!(RAX == 0 && RCX == 8 && R15 == 13 * 8);
}

/// Name of the guest's exported symbol on its single TDCALL instruction (the built-in VMM
/// puts a hardware breakpoint there).
pub const TDCALL_SYMBOL: &str = "cvmprobe_tdcall_insn";

/// The GPA with the shared bit for GPAW `gpaw` (48 -> bit 47, 52 -> bit 51).
pub const fn shared_bit(gpaw: u32) -> u64 {
    1u64 << (gpaw - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_args_mask_exposes_r10_to_r15_only() {
        assert!(ExposeMask::ARGS.is_valid());
        for n in 0..16 {
            assert_eq!(
                ExposeMask::ARGS.exposes(n),
                (10..16).contains(&n),
                "GPR {n}"
            );
        }
    }

    #[test]
    fn linux_mask_is_valid_and_exposes_the_argument_registers() {
        assert!(ExposeMask::LINUX.is_valid());
        for n in [2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
            assert!(ExposeMask::LINUX.exposes(n), "GPR {n}");
        }
        for n in [0, 1, 4, 5] {
            assert!(!ExposeMask::LINUX.exposes(n), "GPR {n}");
        }
        assert!(!ExposeMask(1 << 5).is_valid());
        assert!(!ExposeMask(1 << 32).is_valid());
        assert_eq!(
            ExposeMask::LINUX.0,
            ExposeMask::RDX
                | ExposeMask::RBX
                | ExposeMask::RSI
                | ExposeMask::RDI
                | ExposeMask::R8
                | ExposeMask::R9
                | ExposeMask::R10
                | ExposeMask::R11
                | ExposeMask::R12
                | ExposeMask::R13
                | ExposeMask::R14
                | ExposeMask::R15
        );
    }

    #[test]
    fn gpaw_is_48_or_52() {
        assert_eq!(Gpaw::new(48), Some(Gpaw::W48));
        assert_eq!(Gpaw::new(52), Some(Gpaw::W52));
        for bits in [0, 1, 47, 49, 51, 53, 63, 64, u64::MAX] {
            assert_eq!(Gpaw::new(bits), None, "{bits}");
        }
        assert_eq!(Gpaw::W48.shared_bit(), 1 << 47);
        assert!(Gpaw::W48.contains((1 << 48) - 1));
        assert!(!Gpaw::W48.contains(1 << 48));
        assert_eq!(ept_qual::ACCESS_MASK, 0b111);
        assert!(Gpaw::W48.is_architectural() && Gpaw::W52.is_architectural());
    }

    #[test]
    fn simulated_gpaw_only_as_declared() {
        // Architectural widths need no declaration.
        assert_eq!(Gpaw::simulated(48, None), Some(Gpaw::W48));
        assert_eq!(Gpaw::simulated(52, Some(39)), Some(Gpaw::W52));
        // A narrower width only when the host declared exactly it.
        let g = Gpaw::simulated(46, Some(46)).expect("declared 46");
        assert_eq!(
            (g.bits(), g.shared_bit(), g.is_architectural()),
            (46, 1 << 45, false)
        );
        assert_eq!(Gpaw::simulated(39, Some(39)).map(Gpaw::bits), Some(39));
        assert_eq!(Gpaw::simulated(47, Some(47)).map(Gpaw::bits), Some(47));
        // Undeclared, mismatched, not narrower than 48, or below the minimum: refused.
        for (bits, declared) in [
            (46, None),
            (46, Some(39)),
            (39, Some(46)),
            (50, Some(50)),
            (35, Some(35)),
            (0, Some(0)),
        ] {
            assert_eq!(
                Gpaw::simulated(bits, declared),
                None,
                "{bits} declared {declared:?}"
            );
        }
    }

    #[test]
    fn shared_bits() {
        assert_eq!(shared_bit(48), 1 << 47);
        assert_eq!(shared_bit(52), 1 << 51);
        assert_eq!(status::KVM_ENOSYS, 0xffff_ffff_ffff_fc18);
    }
}
