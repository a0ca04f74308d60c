//! Architectural x86 numbers the guest and the simulated platforms both use: exception
//! vectors, the VMX basic exit reasons the TDX module reports in its #VE information, the
//! I/O exit qualification, MSR indices, and the port-IO instruction forms.
//!
//! Sources: Intel SDM vol. 3A 6.3.1 (vectors), vol. 3C appendix C (basic exit reasons) and
//! 28.2.1 (exit qualifications), vol. 4 (MSRs); AMD APM vol. 2 8.2 (vectors) and 15.35
//! (#VC); Linux `arch/x86/include/asm/msr-index.h` for the names.

/// Exception vectors (Intel SDM vol. 3A table 6-1; AMD APM vol. 2 table 8-1).
pub mod vector {
    /// #DF, double fault (error code 0). The TDX module raises it for a #VE while the last
    /// #VE's information is still unread (`tdx_inject_ve()`).
    pub const DF: u8 = 8;
    /// #GP, general protection.
    pub const GP: u8 = 13;
    /// #VE, virtualization exception (Intel SDM vol. 3A 6.15; TDX: raised by the TDX module).
    pub const VE: u8 = 20;
    /// #VC, VMM communication exception (AMD APM vol. 2 15.35.5; SEV-ES), error code = the
    /// exit code (`protocol::ghcb::exit`).
    pub const VC: u8 = 29;
}

/// VMX basic exit reasons (Intel SDM vol. 3C appendix C), as the TDX module puts them in the
/// #VE information (TDG.VP.VEINFO.GET RCX\[31:0\]) and as GHCI 1.5 reuses them for the
/// TDG.VP.VMCALL sub-functions.
pub mod exit_reason {
    /// CPUID.
    pub const CPUID: u32 = 10;
    /// HLT.
    pub const HLT: u32 = 12;
    /// IN, OUT, INS, OUTS.
    pub const IO_INSTRUCTION: u32 = 30;
    /// RDMSR.
    pub const MSR_READ: u32 = 31;
    /// WRMSR.
    pub const MSR_WRITE: u32 = 32;
    /// EPT violation.
    pub const EPT_VIOLATION: u32 = 48;
}

/// Control-register bits (Intel SDM vol. 3A 2.5; AMD APM vol. 2 3.1).
pub mod cr {
    /// CR0.PG: paging enabled.
    pub const CR0_PG: u64 = 1 << 31;
    /// CR4.LA57: 5-level paging (57-bit linear addresses) when long mode is active.
    pub const CR4_LA57: u64 = 1 << 12;
}

/// EPT-violation exit qualification (Intel SDM vol. 3C 28.2.1, table 28-7), as the TDX module
/// posts it in the #VE information (TDG.VP.VEINFO.GET RDX) for an access to an unmapped GPA.
pub mod ept_qual {
    /// Bit 0: the access was a data read.
    pub const READ: u64 = 1 << 0;
    /// Bit 1: the access was a data write.
    pub const WRITE: u64 = 1 << 1;
    /// Bit 7: the guest linear address field is valid.
    pub const GLA_VALID: u64 = 1 << 7;
    /// Bit 8 (with bit 7): the access was to the translated linear address, not to a
    /// paging-structure entry.
    pub const GLA_TRANSLATED: u64 = 1 << 8;
}

/// Debug-register bits (Intel SDM vol. 3B 18.2; AMD APM vol. 2 13.1.1): what the simulated
/// platforms set with KVM_SET_GUEST_DEBUG and read back in KVM_EXIT_DEBUG.
pub mod debug {
    /// DR6.B0: the DR0 breakpoint condition was met.
    pub const DR6_B0: u64 = 1 << 0;
    /// DR6.B1: the DR1 breakpoint condition was met.
    pub const DR6_B1: u64 = 1 << 1;
    /// DR6.BS: a single-step trap (RFLAGS.TF).
    pub const DR6_BS: u64 = 1 << 14;
    /// DR7.G0: the DR0 breakpoint enabled (all tasks).
    pub const DR7_G0: u64 = 1 << 1;
    /// DR7.G1: the DR1 breakpoint enabled.
    pub const DR7_G1: u64 = 1 << 3;
    /// DR7 bit 10: reserved, reads as 1.
    pub const DR7_FIXED1: u64 = 1 << 10;
    /// DR7 R/W and LEN fields of DR0..DR3 (bits 31:16): 0 for all is "break on execution of
    /// the one byte at the address".
    pub const DR7_RW_LEN_MASK: u64 = 0xffff_0000;
}

/// Exit qualification for I/O instructions (Intel SDM vol. 3C 28.2.1, table 28-5), as the
/// TDX module posts it for a #VE on IN/OUT.
pub mod io_qual {
    /// Bits 2:0: size of the access minus one (0 = 1 byte, 1 = 2 bytes, 3 = 4 bytes).
    pub const SIZE_MASK: u64 = 0b111;
    /// Bit 3: direction, 1 = IN.
    pub const IN: u64 = 1 << 3;
    /// Bit 4: string instruction (INS/OUTS).
    pub const STRING: u64 = 1 << 4;
    /// Bit 5: REP prefixed.
    pub const REP: u64 = 1 << 5;
    /// Bit 6: operand encoding, 1 = immediate port (0 = DX).
    pub const IMMEDIATE: u64 = 1 << 6;
    /// Bits 31:16: the port.
    pub const PORT_SHIFT: u32 = 16;
}

/// MSR indices (Intel SDM vol. 4 table 2-2; AMD APM vol. 2 appendix A; Linux
/// `asm/msr-index.h`).
pub mod msr {
    /// IA32_TIME_STAMP_COUNTER.
    pub const TSC: u32 = 0x10;
    /// IA32_APIC_BASE (`apic::BASE_*` for its bits).
    pub const APIC_BASE: u32 = 0x1b;
    /// IA32_FEATURE_CONTROL (Linux `MSR_IA32_FEAT_CTL`).
    pub const FEAT_CTL: u32 = 0x3a;
    /// IA32_BIOS_SIGN_ID (Linux `MSR_IA32_UCODE_REV`).
    pub const UCODE_REV: u32 = 0x8b;
    /// MSR_PLATFORM_INFO.
    pub const PLATFORM_INFO: u32 = 0xce;
    /// IA32_MTRRCAP.
    pub const MTRR_CAP: u32 = 0xfe;
    /// IA32_ARCH_CAPABILITIES.
    pub const ARCH_CAPABILITIES: u32 = 0x10a;
    /// MSR_MISC_FEATURES_ENABLES.
    pub const MISC_FEATURES_ENABLES: u32 = 0x140;
    /// IA32_SYSENTER_CS.
    pub const SYSENTER_CS: u32 = 0x174;
    /// IA32_MCG_CAP.
    pub const MCG_CAP: u32 = 0x179;
    /// IA32_MCG_STATUS.
    pub const MCG_STATUS: u32 = 0x17a;
    /// IA32_MCG_CTL.
    pub const MCG_CTL: u32 = 0x17b;
    /// IA32_MISC_ENABLE.
    pub const MISC_ENABLE: u32 = 0x1a0;
    /// MSR_IA32_POWER_CTL.
    pub const POWER_CTL: u32 = 0x1fc;
    /// IA32_MTRR_PHYSBASE0, the first variable-range MTRR.
    pub const MTRR_PHYS_BASE0: u32 = 0x200;
    /// IA32_MTRR_FIX4K_F8000, the last fixed-range MTRR (Linux `MSR_MTRRfix4K_F8000`).
    pub const MTRR_FIX4K_F8000: u32 = 0x26f;
    /// IA32_MC0_CTL2, the first of the MCx_CTL2 MSRs.
    pub const MC0_CTL2: u32 = 0x280;
    /// IA32_PAT.
    pub const CR_PAT: u32 = 0x277;
    /// IA32_MTRR_DEF_TYPE.
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    /// IA32_MC0_CTL, the first of the MCx_{CTL, STATUS, ADDR, MISC} MSRs (4 per bank).
    pub const MC0_CTL: u32 = 0x400;
    /// IA32_MCG_EXT_CTL.
    pub const MCG_EXT_CTL: u32 = 0x4d0;
    /// IA32_TSC_DEADLINE.
    pub const TSC_DEADLINE: u32 = 0x6e0;
    /// The x2APIC registers' MSR range, 0x800-0x8FF (`apic::x2apic_msr`).
    pub const X2APIC_FIRST: u32 = 0x800;
    /// The last MSR of the x2APIC range.
    pub const X2APIC_LAST: u32 = 0x8ff;
    /// IA32_EFER.
    pub const EFER: u32 = 0xc000_0080;
    /// IA32_STAR.
    pub const STAR: u32 = 0xc000_0081;
    /// IA32_LSTAR.
    pub const LSTAR: u32 = 0xc000_0082;
    /// IA32_CSTAR (AMD: compatibility-mode SYSCALL target).
    pub const CSTAR: u32 = 0xc000_0083;
    /// IA32_FMASK (Linux `MSR_SYSCALL_MASK`).
    pub const SYSCALL_MASK: u32 = 0xc000_0084;
    /// IA32_FS_BASE.
    pub const FS_BASE: u32 = 0xc000_0100;
    /// IA32_GS_BASE.
    pub const GS_BASE: u32 = 0xc000_0101;
    /// IA32_KERNEL_GS_BASE.
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// IA32_TSC_AUX.
    pub const TSC_AUX: u32 = 0xc000_0103;
    /// MSR_KVM_POLL_CONTROL (Linux `include/uapi/asm/kvm_para.h`).
    pub const KVM_POLL_CONTROL: u32 = 0x4b56_4d05;
}

/// IA32_EFER bits (Intel SDM vol. 3A 2.2.1).
pub mod efer {
    /// SYSCALL enable.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active (read-only).
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
}

/// One port-IO instruction, as [`decode_port_io`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortIo {
    /// Instruction length in bytes (prefixes included).
    pub len: u8,
    /// Bytes per element: 1, 2 or 4.
    pub size: u8,
    /// IN/INS (else OUT/OUTS).
    pub input: bool,
    /// INS/OUTS.
    pub string: bool,
    /// A REP prefix (F3 or F2) on a string instruction.
    pub rep: bool,
    /// The immediate port of `in al, imm8` / `out imm8, al` (else the port is in DX).
    pub imm_port: Option<u8>,
}

impl PortIo {
    /// The I/O exit qualification of this instruction at `port` (Intel SDM vol. 3C table
    /// 28-5), as the TDX module posts it with a #VE.
    pub const fn exit_qualification(&self, port: u16) -> u64 {
        let mut q = (self.size as u64 - 1) & io_qual::SIZE_MASK;
        if self.input {
            q |= io_qual::IN;
        }
        if self.string {
            q |= io_qual::STRING;
        }
        if self.rep {
            q |= io_qual::REP;
        }
        if self.imm_port.is_some() {
            q |= io_qual::IMMEDIATE;
        }
        q | (port as u64) << io_qual::PORT_SHIFT
    }
}

/// Decodes the port-IO instruction at the start of `bytes` in 64-bit mode (Intel SDM vol.
/// 2B IN, OUT, INS, OUTS): optional 66 (16-bit operand) and F3/F2 (REP) prefixes, then
/// E4/E5/E6/E7 ib, EC/ED/EE/EF, 6C/6D/6E/6F. `None` for anything else (other prefixes
/// included: the guest's wrappers use none).
pub fn decode_port_io(bytes: &[u8]) -> Option<PortIo> {
    let mut i = 0;
    let mut opsize16 = false;
    let mut rep = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            0x66 if !opsize16 => opsize16 = true,
            0xf2 | 0xf3 if !rep => rep = true,
            _ => break,
        }
        i += 1;
    }
    let op = *bytes.get(i)?;
    let wide = if opsize16 { 2 } else { 4 };
    let (size, input, string, imm) = match op {
        0xe4 => (1, true, false, true),
        0xe5 => (wide, true, false, true),
        0xe6 => (1, false, false, true),
        0xe7 => (wide, false, false, true),
        0xec => (1, true, false, false),
        0xed => (wide, true, false, false),
        0xee => (1, false, false, false),
        0xef => (wide, false, false, false),
        0x6c => (1, true, true, false),
        0x6d => (wide, true, true, false),
        0x6e => (1, false, true, false),
        0x6f => (wide, false, true, false),
        _ => return None,
    };
    let imm_port = if imm {
        i += 1;
        Some(*bytes.get(i)?)
    } else {
        None
    };
    Some(PortIo {
        len: (i + 1) as u8,
        size,
        input,
        string,
        rep: rep && string,
        imm_port,
    })
}

/// Name of the guest's exported symbol on its one raw CPUID instruction (every raw CPUID the
/// kernel runs is there, so the built-in VMM's simulated platforms can put one hardware
/// breakpoint on it and give it what the platform gives a raw CPUID).
pub const CPUID_SYMBOL: &str = "cvmprobe_cpuid_insn";

/// `CPUID` encoding: 0F A2.
pub const CPUID_BYTES: [u8; 2] = [0x0f, 0xa2];

/// `HLT` (Intel SDM vol. 2A): one byte.
pub const HLT_OPCODE: u8 = 0xf4;
/// `STI` (Intel SDM vol. 2B): one byte.
pub const STI_OPCODE: u8 = 0xfb;
/// Bytes of `CPUID` (0F A2), `RDMSR` (0F 32) and `WRMSR` (0F 30).
pub const TWO_BYTE_INSN_LEN: u32 = 2;

/// First interrupt vector for devices (the 32 below are exceptions): the guest's local APIC
/// timer fires on it.
pub const IRQ_BASE: u8 = 32;
/// Device-interrupt vectors the guest handles, from [`IRQ_BASE`].
pub const IRQ_COUNT: u8 = 16;
/// The local APIC's spurious-interrupt vector the guest programs (SVR); ignored.
pub const SPURIOUS_VECTOR: u8 = 0xff;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_io_forms() {
        let d = |b: &[u8]| decode_port_io(b).expect("decodes");
        let inb = d(&[0xec]);
        assert_eq!(
            (inb.len, inb.size, inb.input, inb.string),
            (1, 1, true, false)
        );
        assert_eq!(inb.exit_qualification(0xf00), 0x0f00_0008);
        let outw = d(&[0x66, 0xef]);
        assert_eq!((outw.len, outw.size, outw.input), (2, 2, false));
        assert_eq!(outw.exit_qualification(0x3f8), 0x03f8_0001);
        let inl_imm = d(&[0xe5, 0x80, 0x90]);
        assert_eq!(
            (inl_imm.len, inl_imm.size, inl_imm.imm_port),
            (2, 4, Some(0x80))
        );
        assert_eq!(inl_imm.exit_qualification(0x80), 0x0080_004b);
        let rep_outsb = d(&[0xf3, 0x6e]);
        assert_eq!(
            (rep_outsb.len, rep_outsb.string, rep_outsb.rep),
            (2, true, true)
        );
        assert_eq!(rep_outsb.exit_qualification(0x3f8), 0x03f8_0030);
        // REP on a non-string instruction is ignored; other bytes are not port IO.
        assert!(!d(&[0xf3, 0xec]).rep);
        for bad in [
            &[0x90][..],
            &[0x0f, 0xa2],
            &[0xe4],
            &[0x66],
            &[],
            &[0x48, 0xec],
        ] {
            assert_eq!(decode_port_io(bad), None, "{bad:x?}");
        }
    }
}
