//! The TDX module and KVM's TDG.VP.VMCALL handling, as a pure model.
//!
//! Input: the guest's registers at its TDCALL ([`TdcallRegs`]). Output ([`TdxStep`]): the
//! registers to write back now, a [`HostRequest`] the VMM serves first (then
//! [`TdxModel::complete`]), or a [`Stop`].
//!
//! Two layers, as on real hardware:
//! - **The TDX module** (Intel `intel/tdx-module`, `src/td_dispatcher/tdx_td_dispatcher.c`
//!   `td_call()` and the leaf handlers) decodes RAX, answers TDG.VP.INFO and
//!   TDG.VP.VEINFO.GET itself, and for TDG.VP.VMCALL checks the RCX exposure bitmap, hands
//!   KVM the exposed registers (the others as 0) and, on resume, copies back only the exposed
//!   ones (`tdg_vp_vmcall()`, `save_regs_after_tdvmcall()`). A hostile host can not change
//!   this layer.
//! - **KVM** (Linux `arch/x86/kvm/vmx/tdx.c`, `tdx_handle_exit()` and `handle_tdvmcall()`)
//!   works on that register view (its `vp_enter_args`) and answers in it. Its answer passes
//!   through [`Tamper::tdvmcall`] in [`TdxModel`]'s single `finish` step.
//!
//! Where this model follows KVM or the TDX module rather than PROTOCOLS.md:
//! - A bad exposure bitmap answers `TDX_OPERAND_INVALID | OPERAND_ID_RCX`
//!   ([`TDX_OPERAND_INVALID_RCX`] = 0xC000_0100_0000_0001), not the bare class value: the
//!   module ORs the operand id into bits 31:0 (`tdg_vp_vmcall()`). Compare the upper 32 bits
//!   (Linux `TDX_SEAMCALL_STATUS_MASK`).
//! - A failed MapGPA chunk answers as current KVM does (`tdx_complete_vmcall_map_gpa()`):
//!   the VMM's EAGAIN -> RETRY, EINVAL -> INVALID_OPERAND ([`MapGpaErrors::RetryOnEagain`],
//!   the default); v6.16's "any error -> INVALID_OPERAND" is [`MapGpaErrors::AllInvalid`].
//! - KVM reads the MMIO size and direction into `int`s (`tdx_emulate_mmio()`), so only their
//!   low 32 bits count: R12 = 0x1_0000_0004 is a valid 4-byte access. IO uses `u64`s
//!   (`tdx_emulate_io()`): no such truncation there.
//! - GetQuote and SetupEventNotifyInterrupt are known sub-functions in current KVM (they exit
//!   to the VMM, pre-answered SUBFUNC_UNSUPPORTED), not "unknown".

use super::kvm_hypercall::{self, Hypercall, HypercallConfig, HypercallOutcome, PvFeatures};
use super::{
    Honest, HostRequest, HostResult, MapGpaResult, PAGE_SIZE, SimError, Stop, Tamper,
    low_bytes_mask,
};
use protocol::tdx::{self, ExposeMask, TdcallRegs, leaf, status, vmcall};
use protocol::x86::msr;

/// TDX module status TDX_NO_VALID_VE_INFO: TDG.VP.VEINFO.GET with no #VE information
/// (intel/tdx-module `include/auto_gen_1_5/tdx_error_codes_defs.h`; `tdg_vp_veinfo_get()`).
pub const TDX_NO_VALID_VE_INFO: u64 = 0xc000_0704_0000_0000;
/// TDX module operand id of RCX, ORed into bits 31:0 of a status (`OPERAND_ID_RCX`).
pub const OPERAND_ID_RCX: u64 = 1;
/// What TDCALL(TDG.VP.VMCALL) returns in RAX for a bad RCX bitmap:
/// `api_error_with_operand_id(TDX_OPERAND_INVALID, OPERAND_ID_RCX)` (`tdg_vp_vmcall()`).
pub const TDX_OPERAND_INVALID_RCX: u64 = tdx::TDX_OPERAND_INVALID | OPERAND_ID_RCX;
/// What an unknown leaf, a leaf with reserved RAX bits set or an unsupported version returns:
/// `TDX_OPERAND_INVALID` with operand id RAX (= 0) (`td_call()`).
pub const TDX_OPERAND_INVALID_RAX: u64 = tdx::TDX_OPERAND_INVALID;
/// VMX basic exit reason TDCALL (Linux `asm/vmx.h` `EXIT_REASON_TDCALL`): TDH.VP.ENTER's
/// return value for a TDG.VP.VMCALL exit, and so word 0 of the fatal-error data.
pub const EXIT_REASON_TDCALL: u64 = 77;
/// KVM maps GPAs in chunks of this size, checking for pending events in between
/// (`TDX_MAP_GPA_MAX_LEN`).
pub const MAP_GPA_CHUNK: u64 = 2 << 20;

/// RAX\[15:0\] of TDCALL: the leaf (`tdx_leaf_and_version_t`).
const LEAF_MASK: u64 = 0xffff;
/// RAX\[23:16\]: the leaf version.
const VERSION_SHIFT: u32 = 16;
/// RAX\[63:24\]: reserved, must be 0.
const RESERVED_SHIFT: u32 = 24;

/// How the VMM's MapGPA errors reach the guest (`tdx_complete_vmcall_map_gpa()`): a KVM
/// version difference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MapGpaErrors {
    /// v6.16 until the 2026 change: any non-zero `hypercall.ret` answers INVALID_OPERAND with
    /// R11 = the first GPA not mapped.
    AllInvalid,
    /// Current KVM ("KVM: TDX: Allow userspace to return errors to guest for MAPGPA",
    /// Annapurve/Shahar, 2026; PROTOCOLS.md "Corrections" checked it merged in kvm-x86):
    /// EAGAIN answers RETRY, EINVAL INVALID_OPERAND (R11 = the next GPA for both), anything
    /// else fails KVM_RUN with EINVAL.
    #[default]
    RetryOnEagain,
}

/// What KVM answers for a standard TDG.VP.VMCALL sub-function it does not know
/// (`handle_tdvmcall()`'s default case): a KVM version difference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownSubfunction {
    /// v6.16 final and newer: TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED.
    #[default]
    SubfuncUnsupported,
    /// v6.16-rc1 only (no release): TDVMCALL_STATUS_INVALID_OPERAND.
    InvalidOperand,
}

impl UnknownSubfunction {
    /// The TDVMCALL status.
    pub const fn status(self) -> u64 {
        match self {
            Self::SubfuncUnsupported => status::SUBFUNC_UNSUPPORTED,
            Self::InvalidOperand => status::INVALID_OPERAND,
        }
    }
}

/// Which x2APIC MSRs KVM refuses to emulate for a TD because the CPU virtualises them
/// (`tdx_has_emulated_msr()`): a KVM version difference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum X2apicMsrs {
    /// Current KVM (the 2026-03 fix, Maluka, "KVM: TDX: Fix APIC MSR ranges in
    /// tdx_has_emulated_msr()"): TPR, PPR, EOI and all eight ISR, TMR and IRR registers
    /// (0x810-0x827) are refused.
    #[default]
    Fixed,
    /// KVM from v6.16 until that fix: `X2APIC_MSR(APIC_ISR + APIC_ISR_NR)` shifted the 8 away,
    /// so only the first ISR, TMR and IRR registers (0x810, 0x818, 0x820) were refused and
    /// KVM emulated the other 21.
    BeforeFix,
}

/// IA32_FEAT_CTL as `tdx_get_msr()` reads it: FEAT_CTL_LOCKED (bit 0), plus
/// FEAT_CTL_LMCE_ENABLED when the vCPU's MCG_CAP has LMCE_P (the sim offers no LMCE).
pub const FEAT_CTL_LOCKED: u64 = 1;

/// `tdx_has_emulated_msr()` (arch/x86/kvm/vmx/tdx.c): the MSRs KVM emulates for a TD's
/// TDG.VP.VMCALL<Instruction.RDMSR/WRMSR>. Every other MSR is refused; x2APIC registers the
/// CPU virtualises are refused too (KVM has no access to the virtual-APIC page), which ones
/// depending on `x2apic` ([`X2apicMsrs`]).
pub fn tdx_has_emulated_msr(index: u32, x2apic: X2apicMsrs) -> bool {
    use protocol::apic::{reg, x2apic_msr};
    /// KVM_MAX_MCE_BANKS (arch/x86/include/asm/kvm_host.h).
    const MCE_BANKS: u32 = 32;
    match index {
        msr::UCODE_REV
        | msr::ARCH_CAPABILITIES
        | msr::POWER_CTL
        | msr::CR_PAT
        | msr::MTRR_CAP
        | msr::MTRR_PHYS_BASE0..=msr::MTRR_FIX4K_F8000
        | msr::MTRR_DEF_TYPE
        | msr::TSC_DEADLINE
        | msr::MISC_ENABLE
        | msr::PLATFORM_INFO
        | msr::MISC_FEATURES_ENABLES
        | msr::APIC_BASE
        | msr::EFER
        | msr::FEAT_CTL
        | msr::MCG_CAP
        | msr::MCG_STATUS
        | msr::MCG_CTL
        | msr::MCG_EXT_CTL
        | msr::KVM_POLL_CONTROL => true,
        i if (msr::MC0_CTL..msr::MC0_CTL + 4 * MCE_BANKS).contains(&i) => true,
        i if (msr::MC0_CTL2..msr::MC0_CTL2 + MCE_BANKS).contains(&i) => true,
        msr::X2APIC_FIRST..=msr::X2APIC_LAST => {
            // Eight registers from ISR, TMR and IRR (APIC_ISR_NR), or, before the fix, the
            // first one only.
            let n = match x2apic {
                X2apicMsrs::Fixed => 8,
                X2apicMsrs::BeforeFix => 1,
            };
            let virtualised = [reg::ISR, reg::TMR, reg::IRR]
                .iter()
                .any(|&r| (x2apic_msr(r)..x2apic_msr(r) + n).contains(&index));
            !(virtualised
                || index == x2apic_msr(reg::TPR)
                || index == x2apic_msr(reg::PPR)
                || index == x2apic_msr(reg::EOI))
        }
        _ => false,
    }
}

/// `tdx_is_read_only_msr()`: MSRs KVM reads for a TD but refuses to write (the TDX module
/// owns them).
pub fn tdx_is_read_only_msr(index: u32) -> bool {
    matches!(index, msr::APIC_BASE | msr::EFER | msr::FEAT_CTL)
}

/// The simulated TD's configuration (what `KVM_TDX_INIT_VM` and the VMM set up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxConfig {
    /// Guest physical address width, 48 or 52; the shared bit is bit `gpaw - 1`.
    pub gpaw: u32,
    /// The vCPU's MAXPHYADDR for `kvm_vcpu_is_legal_gpa()` (MapGPA's range check).
    pub maxphyaddr: u32,
    /// TD attributes (TDG.VP.INFO RDX): bit 0 DEBUG, bit 28 SEPT_VE_DISABLE.
    pub attributes: u64,
    /// Number of vCPUs (TDG.VP.INFO R8\[31:0\]).
    pub num_vcpus: u32,
    /// Maximum vCPUs (R8\[63:32\]).
    pub max_vcpus: u32,
    /// This vCPU's index (R9\[31:0\]).
    pub vcpu_index: u32,
    /// The VMM enabled KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE
    /// (`user_exit_on_hypercall()`); without it MapGPA answers SUBFUNC_UNSUPPORTED and the
    /// KVM_HC_MAP_GPA_RANGE hypercall (R10 = 12) `-KVM_ENOSYS`.
    pub map_gpa_exit_enabled: bool,
    /// Whether KVM enforces the PV CPUID bits on KVM hypercalls (`guest_pv_has()`).
    pub pv_features: PvFeatures,
    /// How MapGPA errors from the VMM reach the guest.
    pub map_gpa_errors: MapGpaErrors,
    /// Which x2APIC MSRs KVM refuses for TDG.VP.VMCALL<RDMSR/WRMSR>.
    pub x2apic_msrs: X2apicMsrs,
    /// What an unknown standard sub-function answers.
    pub unknown_subfunction: UnknownSubfunction,
}

impl Default for TdxConfig {
    fn default() -> Self {
        Self {
            gpaw: 48,
            maxphyaddr: 48,
            attributes: 0,
            num_vcpus: 1,
            max_vcpus: 1,
            vcpu_index: 0,
            map_gpa_exit_enabled: true,
            pv_features: PvFeatures::default(),
            map_gpa_errors: MapGpaErrors::default(),
            x2apic_msrs: X2apicMsrs::default(),
            unknown_subfunction: UnknownSubfunction::default(),
        }
    }
}

/// #VE information the VMM posts when it injects a #VE (the TDX module's `VE_INFO`), returned
/// once by TDG.VP.VEINFO.GET.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VeInfo {
    /// Exit reason (RCX\[31:0\]; 48 = EPT violation).
    pub exit_reason: u32,
    /// Exit qualification (RDX).
    pub exit_qualification: u64,
    /// Guest linear address (R8).
    pub gla: u64,
    /// Guest physical address (R9).
    pub gpa: u64,
    /// Instruction length (R10\[31:0\]).
    pub insn_len: u32,
    /// Instruction information (R10\[63:32\]).
    pub insn_info: u32,
}

/// What the TDX module delivers when it raises a #VE ([`TdxModel::raise_ve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VeDelivery {
    /// #VE (vector 20), with the information posted.
    Ve,
    /// #DF (vector 8, error code 0): the last #VE's information was still unread.
    DoubleFault,
}

impl VeDelivery {
    /// The vector and error code to inject.
    pub const fn event(self) -> (u8, Option<u32>) {
        match self {
            Self::Ve => (protocol::x86::vector::VE, None),
            Self::DoubleFault => (protocol::x86::vector::DF, Some(0)),
        }
    }
}

/// What tdx-sim reports in TDG.VP.VEINFO.GET R10\[31:0\] (instruction length) and
/// R10\[63:32\] (instruction information) for an EPT-violation #VE: 0. The TDX module copies
/// the VMCS's VM-exit instruction length and information (`tdx_inject_ve()`), which the
/// SDM leaves undefined for EPT violations (vol. 3C 28.2.5); a real TD sees whatever the
/// CPU left there. 0 is never an instruction's length, so a guest that trusted the field
/// would visibly misbehave here, as it could on hardware (Linux `ve_instr_len()` returns 0
/// for EPT violations and warns).
pub const EPT_VIOLATION_INSN_LEN: u32 = 0;

/// What the model does with one TDCALL, or with a completed host request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TdxStep {
    /// Write these registers back and resume after the TDCALL.
    Done(TdcallRegs),
    /// Serve this, then call [`TdxModel::complete`].
    Host(HostRequest),
    /// The VM stops (the guest is not resumed unless the VMM calls
    /// [`TdxModel::complete`] with [`HostResult::Done`], as re-entering KVM would).
    Stop(Stop),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    PortRead {
        size: u64,
    },
    PortWrite,
    MmioRead {
        size: u64,
    },
    MmioWrite,
    Cpuid,
    Rdmsr,
    Wrmsr,
    Hlt,
    MapGpa {
        next: u64,
        end: u64,
    },
    TdVmCallInfo,
    /// GetQuote, SetupEventNotifyInterrupt: `tdx_complete_simple()`.
    KvmExitTdx,
    Hypercall,
    Fatal,
}

impl Op {
    const fn name(self) -> &'static str {
        match self {
            Op::PortRead { .. } => "PortRead",
            Op::PortWrite => "PortWrite",
            Op::MmioRead { .. } => "MmioRead",
            Op::MmioWrite => "MmioWrite",
            Op::Cpuid => "Cpuid",
            Op::Rdmsr => "Rdmsr",
            Op::Wrmsr => "Wrmsr",
            Op::Hlt => "Hlt",
            Op::MapGpa { .. } => "MapGpa",
            Op::TdVmCallInfo => "TdVmCallInfo",
            Op::KvmExitTdx => "GetQuote/SetupEventNotify",
            Op::Hypercall => "KvmHypercall",
            Op::Fatal => "ReportFatalError (resume)",
        }
    }
}

/// A TDG.VP.VMCALL in flight at the VMM.
#[derive(Clone, Debug)]
struct Pending {
    /// The guest's registers at TDCALL.
    guest: TdcallRegs,
    /// KVM's view at the exit (unexposed registers 0), for [`Tamper::tdvmcall`].
    seen: TdcallRegs,
    /// KVM's view now.
    kvm: TdcallRegs,
    op: Op,
    request: Option<HostRequest>,
}

/// The simulated TDX module + KVM for one vCPU.
#[derive(Clone, Debug)]
pub struct TdxModel<T: Tamper = Honest> {
    cfg: TdxConfig,
    ve: Option<VeInfo>,
    pending: Option<Pending>,
    tamper: T,
}

impl TdxModel<Honest> {
    /// An honest TDX host.
    pub fn new(cfg: TdxConfig) -> Self {
        Self::with_tamper(cfg, Honest)
    }
}

impl<T: Tamper> TdxModel<T> {
    /// A TDX host whose KVM answers pass through `tamper`.
    pub fn with_tamper(cfg: TdxConfig, tamper: T) -> Self {
        Self {
            cfg,
            ve: None,
            pending: None,
            tamper,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TdxConfig {
        &self.cfg
    }

    /// The tamper hook.
    pub fn tamper_mut(&mut self) -> &mut T {
        &mut self.tamper
    }

    /// The shared bit (bit GPAW-1; 0 for a nonsensical GPAW of 0 or above 64).
    pub fn shared_bit(&self) -> u64 {
        match self.cfg.gpaw {
            1..=64 => 1u64 << (self.cfg.gpaw - 1),
            _ => 0,
        }
    }

    /// `vt_is_tdx_private_gpa()`: the shared bit is clear (Linux `kvm_is_addr_direct()`).
    fn is_private(&self, gpa: u64) -> bool {
        gpa & self.shared_bit() == 0
    }

    /// `kvm_vcpu_is_legal_gpa()`: no bit at or above MAXPHYADDR.
    fn is_legal_gpa(&self, gpa: u64) -> bool {
        match self.cfg.maxphyaddr {
            0 => gpa == 0,
            1..=63 => gpa >> self.cfg.maxphyaddr == 0,
            _ => true,
        }
    }

    /// The TDX module raises a #VE with information `ve` (`tdx_inject_ve()` in
    /// `td_dispatcher/vm_exits/td_other_exits.c`): if the last #VE's information is still
    /// valid (not yet read by TDG.VP.VEINFO.GET) it delivers #DF instead and keeps the old
    /// information; otherwise it posts `ve` and delivers #VE. The VMM injects what this
    /// returns. (The module's comment there says #GP(0); its code injects #DF.)
    pub fn raise_ve(&mut self, ve: VeInfo) -> VeDelivery {
        if self.ve.is_some() {
            return VeDelivery::DoubleFault;
        }
        self.ve = Some(ve);
        VeDelivery::Ve
    }

    /// Whether #VE information is waiting for TDG.VP.VEINFO.GET.
    pub fn ve_pending(&self) -> bool {
        self.ve.is_some()
    }

    /// The host request the model is waiting for, if any.
    pub fn pending_request(&self) -> Option<&HostRequest> {
        self.pending.as_ref().and_then(|p| p.request.as_ref())
    }

    /// One TDCALL with the guest's registers `regs` (`td_call()` in the TDX module). A request
    /// still pending from an earlier TDCALL is dropped (the vCPU can not TDCALL while stopped,
    /// so the VMM abandoned it).
    pub fn tdcall(&mut self, regs: &TdcallRegs) -> TdxStep {
        self.pending = None;
        let leaf_nr = regs.rax & LEAF_MASK;
        let version = (regs.rax >> VERSION_SHIFT) & 0xff;
        let module_error = |status| {
            let mut out = *regs;
            out.rax = status;
            TdxStep::Done(out)
        };
        // td_call(): reserved bits, then "only a few functions have multiple versions".
        if regs.rax >> RESERVED_SHIFT != 0 {
            return module_error(TDX_OPERAND_INVALID_RAX);
        }
        if version > 0 && leaf_nr != leaf::VM_RD && leaf_nr != leaf::VP_VEINFO_GET {
            return module_error(TDX_OPERAND_INVALID_RAX);
        }
        match leaf_nr {
            leaf::VP_VMCALL => self.vmcall(regs),
            leaf::VP_INFO => TdxStep::Done(self.vp_info(regs)),
            leaf::VP_VEINFO_GET => TdxStep::Done(self.veinfo_get(regs, version)),
            // Unknown leaves and the leaves this sim does not model (TDG.MR.REPORT,
            // TDG.MEM.PAGE.ACCEPT, TDG.VM.RD/WR, ...): the dispatcher's default case.
            _ => module_error(TDX_OPERAND_INVALID_RAX),
        }
    }

    /// TDG.VP.INFO (`tdg_vp_info()`): RCX = GPAW, RDX = attributes, R8 = vCPUs | max << 32,
    /// R9 = vCPU index, R10 = commands available, R11 = 0. The real module sets R10 bit 0
    /// (TDG.SYS.RD available); this sim does not implement TDG.SYS.RD and reports 0.
    fn vp_info(&self, regs: &TdcallRegs) -> TdcallRegs {
        TdcallRegs {
            rax: tdx::TDX_SUCCESS,
            rcx: u64::from(self.cfg.gpaw),
            rdx: self.cfg.attributes,
            r8: u64::from(self.cfg.num_vcpus) | (u64::from(self.cfg.max_vcpus) << 32),
            r9: u64::from(self.cfg.vcpu_index),
            r10: 0,
            r11: 0,
            ..*regs
        }
    }

    /// TDG.VP.VEINFO.GET (`tdg_vp_veinfo_get()`): RCX, RDX, R8, R9, R10 are zeroed first, even
    /// on failure; version > 1 answers TDX_OPERAND_INVALID; no information answers
    /// [`TDX_NO_VALID_VE_INFO`]; the information is consumed (single-shot). Version 1 puts the
    /// #VE category in RCX\[63:32\]; this sim's #VEs have category 0.
    fn veinfo_get(&mut self, regs: &TdcallRegs, version: u64) -> TdcallRegs {
        let mut out = TdcallRegs {
            rcx: 0,
            rdx: 0,
            r8: 0,
            r9: 0,
            r10: 0,
            ..*regs
        };
        if version > 1 {
            out.rax = TDX_OPERAND_INVALID_RAX;
            return out;
        }
        match self.ve.take() {
            None => out.rax = TDX_NO_VALID_VE_INFO,
            Some(ve) => {
                out.rax = tdx::TDX_SUCCESS;
                out.rcx = u64::from(ve.exit_reason);
                out.rdx = ve.exit_qualification;
                out.r8 = ve.gla;
                out.r9 = ve.gpa;
                out.r10 = u64::from(ve.insn_len) | (u64::from(ve.insn_info) << 32);
            }
        }
        out
    }

    /// TDG.VP.VMCALL (`tdg_vp_vmcall()`): RCX bits 0, 1, 4, 5 (RBP: KVM sets NO_RBP_MOD) and
    /// 63:32 must be 0, else [`TDX_OPERAND_INVALID_RCX`] with every other register unchanged
    /// and no exit. Otherwise KVM sees the exposed registers, 0 for the rest
    /// (`copy_gprs_data_from_td_to_vmm()`), RAX = the exit reason and RCX = the bitmap.
    fn vmcall(&mut self, guest: &TdcallRegs) -> TdxStep {
        if !ExposeMask(guest.rcx).is_valid() {
            let mut out = *guest;
            out.rax = TDX_OPERAND_INVALID_RCX;
            return TdxStep::Done(out);
        }
        let mask = ExposeMask(guest.rcx);
        let mut kvm = TdcallRegs {
            rax: EXIT_REASON_TDCALL,
            rcx: guest.rcx,
            ..TdcallRegs::default()
        };
        for n in 2..16 {
            if mask.exposes(n) {
                set_gpr(&mut kvm, n, gpr(guest, n));
            }
        }
        let p = Pending {
            guest: *guest,
            seen: kvm,
            kvm,
            op: Op::Fatal,
            request: None,
        };
        if kvm.r10 != vmcall::STANDARD {
            return self.kvm_hypercall(p);
        }
        // tdx_to_vmx_exit_reason() / tdcall_to_vmx_exit_reason(), then tdx_handle_exit():
        // R11 is compared as a whole 64-bit value.
        match kvm.r11 {
            vmcall::CPUID => self.cpuid(p),
            vmcall::HLT => self.hlt(p),
            vmcall::IO => self.io(p),
            vmcall::RDMSR => self.rdmsr(p),
            vmcall::WRMSR => self.wrmsr(p),
            vmcall::MMIO => self.mmio(p),
            // handle_tdvmcall()
            vmcall::MAP_GPA => self.map_gpa(p),
            vmcall::REPORT_FATAL_ERROR => self.report_fatal_error(p),
            vmcall::GET_TD_VM_CALL_INFO => self.get_td_vm_call_info(p),
            vmcall::GET_QUOTE => self.get_quote(p),
            vmcall::SETUP_EVENT_NOTIFY_INTERRUPT => self.setup_event_notify(p),
            _ => {
                let code = self.cfg.unknown_subfunction.status();
                self.status(p, code)
            }
        }
    }

    /// Answers now with R10 = `code` (`tdvmcall_set_return_code()`).
    fn status(&mut self, mut p: Pending, code: u64) -> TdxStep {
        p.kvm.r10 = code;
        self.answer(p)
    }

    /// Answers now with KVM's current view.
    fn answer(&mut self, p: Pending) -> TdxStep {
        TdxStep::Done(self.finish(&p.guest, &p.seen, p.kvm))
    }

    /// Leaves the call with the VMM.
    fn ask(&mut self, mut p: Pending, op: Op, request: HostRequest) -> TdxStep {
        p.op = op;
        p.request = Some(request.clone());
        self.pending = Some(p);
        TdxStep::Host(request)
    }

    /// The one place a TDG.VP.VMCALL answer is written: KVM's view passes through the tamper
    /// hook, then the TDX module copies the exposed registers back ([`Self::write_back`]).
    fn finish(&mut self, guest: &TdcallRegs, seen: &TdcallRegs, mut kvm: TdcallRegs) -> TdcallRegs {
        self.tamper.tdvmcall(seen, &mut kvm);
        Self::write_back(guest, &kvm)
    }

    /// The TDX module's resume after TDG.VP.VMCALL (`save_regs_after_tdvmcall()`): RAX =
    /// TDX_SUCCESS, RCX = the guest's bitmap, each exposed GPR from KVM's `answer`, every
    /// other register as the guest left it.
    pub fn write_back(guest: &TdcallRegs, answer: &TdcallRegs) -> TdcallRegs {
        let mask = ExposeMask(guest.rcx);
        let mut out = *guest;
        out.rax = tdx::TDX_SUCCESS;
        for n in 2..16 {
            if mask.exposes(n) {
                set_gpr(&mut out, n, gpr(answer, n));
            }
        }
        out
    }

    /// R10 != 0: a KVM hypercall (`tdx_emulate_vmcall()` -> `____kvm_emulate_hypercall()`,
    /// CPL 0, 64-bit): number R10, arguments R11-R14, return value in R10
    /// (`complete_hypercall_exit()`). KVM answers it inside ([`kvm_hypercall::emulate`]);
    /// only KVM_HC_MAP_GPA_RANGE with the user exit enabled reaches the VMM.
    fn kvm_hypercall(&mut self, p: Pending) -> TdxStep {
        let call = Hypercall {
            nr: p.kvm.r10,
            args: [p.kvm.r11, p.kvm.r12, p.kvm.r13, p.kvm.r14],
            cpl: 0,
            op_64_bit: true,
        };
        let cfg = HypercallConfig {
            map_gpa_range_exit: self.cfg.map_gpa_exit_enabled,
            pv: self.cfg.pv_features,
            ..HypercallConfig::default()
        };
        match kvm_hypercall::emulate(call, &cfg) {
            HypercallOutcome::Return(v) => self.status(p, v),
            HypercallOutcome::MapGpaRange { gpa, npages, attrs } => self.ask(
                p,
                Op::Hypercall,
                HostRequest::KvmMapGpaRange { gpa, npages, attrs },
            ),
            HypercallOutcome::NotModelled(what) => {
                TdxStep::Stop(Stop::NotModelled { what: what.into() })
            }
        }
    }

    /// Instruction.CPUID (`tdx_emulate_cpuid()`): leaf R12, subleaf R13 (as `u32`); the
    /// answer goes to R12..R15, zero-extended; R10 is left as is (SUCCESS).
    fn cpuid(&mut self, p: Pending) -> TdxStep {
        let request = HostRequest::Cpuid {
            leaf: p.kvm.r12 as u32,
            subleaf: p.kvm.r13 as u32,
            xcr0: None,
        };
        self.ask(p, Op::Cpuid, request)
    }

    /// Instruction.HLT (`kvm_emulate_halt_noskip()`; `tdx_interrupt_allowed()` reads R12).
    fn hlt(&mut self, p: Pending) -> TdxStep {
        let request = HostRequest::Hlt {
            interrupts_blocked: p.kvm.r12 != 0,
        };
        self.ask(p, Op::Hlt, request)
    }

    /// Instruction.IO (`tdx_emulate_io()`): R12 size must be 1, 2 or 4 and R13 direction 0
    /// or 1 (both `u64`), else INVALID_OPERAND; port = R14 as `u16`. A write sends the low
    /// `size` bytes of R15; a read's value comes back zero-extended in R11
    /// (`tdx_complete_pio_in()`).
    fn io(&mut self, p: Pending) -> TdxStep {
        let (size, write, port) = (p.kvm.r12, p.kvm.r13, p.kvm.r14 as u16);
        if (write != tdx::DIR_READ && write != tdx::DIR_WRITE) || !matches!(size, 1 | 2 | 4) {
            return self.status(p, status::INVALID_OPERAND);
        }
        if write == tdx::DIR_WRITE {
            let value = p.kvm.r15 & low_bytes_mask(size);
            self.ask(
                p,
                Op::PortWrite,
                HostRequest::PortWrite {
                    port,
                    size: size as u8,
                    value,
                },
            )
        } else {
            self.ask(
                p,
                Op::PortRead { size },
                HostRequest::PortRead {
                    port,
                    size: size as u8,
                },
            )
        }
    }

    /// #VE.RequestMMIO (`tdx_emulate_mmio()`): in this order, size (low 32 bits of R12) must
    /// be 1, 2, 4 or 8, direction (low 32 bits of R13) 0 or 1, and both GPA and GPA+size-1
    /// shared (shared bit set; the sum wraps as in C), else INVALID_OPERAND. KVM strips the
    /// shared bit for KVM_EXIT_MMIO; a write sends the low `size` bytes of R15; a read's
    /// value comes back zero-extended in R11 (`tdx_complete_mmio_read()`).
    fn mmio(&mut self, p: Pending) -> TdxStep {
        let size = i64::from(p.kvm.r12 as u32 as i32);
        let write = i64::from(p.kvm.r13 as u32 as i32);
        let guest_gpa = p.kvm.r14;
        if !matches!(size, 1 | 2 | 4 | 8) || (write != 0 && write != 1) {
            return self.status(p, status::INVALID_OPERAND);
        }
        let size = size as u64;
        let last = guest_gpa.wrapping_add(size).wrapping_sub(1);
        if self.is_private(guest_gpa) || self.is_private(last) {
            return self.status(p, status::INVALID_OPERAND);
        }
        let gpa = guest_gpa & !self.shared_bit();
        if write == 1 {
            let value = p.kvm.r15 & low_bytes_mask(size);
            self.ask(
                p,
                Op::MmioWrite,
                HostRequest::MmioWrite {
                    gpa,
                    guest_gpa,
                    size: size as u8,
                    value,
                },
            )
        } else {
            self.ask(
                p,
                Op::MmioRead { size },
                HostRequest::MmioRead {
                    gpa,
                    guest_gpa,
                    size: size as u8,
                },
            )
        }
    }

    /// Instruction.RDMSR (`handle_tdvmcall()` -> `kvm_emulate_rdmsr()` with RCX = R12, index
    /// as `u32`, -> `tdx_get_msr()`): IA32_FEAT_CTL answers LOCKED (KVM computes it; the sim
    /// offers no LMCE), IA32_MCG_EXT_CTL is refused (no LMCE), an MSR outside
    /// [`tdx_has_emulated_msr`] is refused; the others go to the VMM (KVM's
    /// `kvm_get_msr_common()`). The value comes back in R11, a refusal answers
    /// INVALID_OPERAND (`tdx_complete_emulated_msr()`).
    fn rdmsr(&mut self, p: Pending) -> TdxStep {
        let index = p.kvm.r12 as u32;
        match index {
            msr::FEAT_CTL => {
                let mut p = p;
                p.kvm.r11 = FEAT_CTL_LOCKED;
                self.answer(p)
            }
            msr::MCG_EXT_CTL => self.status(p, status::INVALID_OPERAND),
            i if !tdx_has_emulated_msr(i, self.cfg.x2apic_msrs) => {
                self.status(p, status::INVALID_OPERAND)
            }
            _ => self.ask(p, Op::Rdmsr, HostRequest::Rdmsr { index }),
        }
    }

    /// Instruction.WRMSR (`kvm_emulate_wrmsr()` with RCX = R12, EAX:EDX = R13, ->
    /// `tdx_set_msr()`): IA32_MCG_EXT_CTL is refused (no LMCE), so are the read-only MSRs
    /// ([`tdx_is_read_only_msr`]: APIC base, EFER, FEAT_CTL) and any MSR outside
    /// [`tdx_has_emulated_msr`]; the others go to the VMM. A refusal answers INVALID_OPERAND
    /// (`tdx_complete_emulated_msr()`).
    fn wrmsr(&mut self, p: Pending) -> TdxStep {
        let (index, value) = (p.kvm.r12 as u32, p.kvm.r13);
        if index == msr::MCG_EXT_CTL
            || tdx_is_read_only_msr(index)
            || !tdx_has_emulated_msr(index, self.cfg.x2apic_msrs)
        {
            return self.status(p, status::INVALID_OPERAND);
        }
        self.ask(p, Op::Wrmsr, HostRequest::Wrmsr { index, value })
    }

    /// MapGPA (`tdx_map_gpa()`), checks in KVM's order: the MAP_GPA_RANGE user exit not
    /// enabled -> SUBFUNC_UNSUPPORTED; GPA + size overflowing or equal to GPA (size 0), GPA or
    /// GPA+size-1 not legal, or the two on different sides of the shared bit ->
    /// INVALID_OPERAND; GPA or size not 4 KiB aligned -> ALIGN_ERROR. R11 = GPA on every error.
    /// Then one [`HostRequest::MapGpa`] per 2 MiB chunk (`__tdx_map_gpa()`).
    fn map_gpa(&mut self, mut p: Pending) -> TdxStep {
        let (gpa, size) = (p.kvm.r12, p.kvm.r13);
        let error = |this: &mut Self, mut p: Pending, code| {
            p.kvm.r11 = gpa;
            this.status(p, code)
        };
        if !self.cfg.map_gpa_exit_enabled {
            return error(self, p, status::SUBFUNC_UNSUPPORTED);
        }
        let end = gpa.wrapping_add(size);
        if end <= gpa
            || !self.is_legal_gpa(gpa)
            || !self.is_legal_gpa(end - 1)
            || self.is_private(gpa) != self.is_private(end - 1)
        {
            return error(self, p, status::INVALID_OPERAND);
        }
        if gpa % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
            return error(self, p, status::ALIGN_ERROR);
        }
        p.op = Op::MapGpa { next: gpa, end };
        self.map_gpa_chunk(p, gpa, end)
    }

    /// One KVM_HC_MAP_GPA_RANGE exit (`__tdx_map_gpa()`).
    fn map_gpa_chunk(&mut self, p: Pending, next: u64, end: u64) -> TdxStep {
        let request = HostRequest::MapGpa {
            gpa: next & !self.shared_bit(),
            size: (end - next).min(MAP_GPA_CHUNK),
            to_private: self.is_private(next),
        };
        self.ask(p, Op::MapGpa { next, end }, request)
    }

    /// ReportFatalError (`tdx_report_fatal_error()`): KVM_EXIT_SYSTEM_EVENT with type
    /// TDX_FATAL and 16 data words: RAX (the exit reason), RCX, RDX, RBX, 0, 0, RSI, RDI,
    /// R8..R15 as KVM saw them. If the VMM re-enters anyway, the guest resumes with KVM's
    /// view unchanged ([`TdxModel::complete`] with [`HostResult::Done`]).
    fn report_fatal_error(&mut self, p: Pending) -> TdxStep {
        let k = &p.kvm;
        let data = [
            k.rax, k.rcx, k.rdx, k.rbx, 0, 0, k.rsi, k.rdi, k.r8, k.r9, k.r10, k.r11, k.r12, k.r13,
            k.r14, k.r15,
        ];
        let mut p = p;
        p.op = Op::Fatal;
        p.request = None;
        self.pending = Some(p);
        TdxStep::Stop(Stop::TdxFatal { data })
    }

    /// GetTdVmCallInfo (`tdx_get_td_vm_call_info()`): R12 = 0 -> SUCCESS, R11..R14 = 0;
    /// R12 = 1 -> KVM_EXIT_TDX for the VMM, pre-filled SUCCESS and zeros; other ->
    /// INVALID_OPERAND.
    fn get_td_vm_call_info(&mut self, mut p: Pending) -> TdxStep {
        match p.kvm.r12 {
            0 => {
                p.kvm.r11 = 0;
                p.kvm.r12 = 0;
                p.kvm.r13 = 0;
                p.kvm.r14 = 0;
                self.status(p, status::SUCCESS)
            }
            1 => self.ask(p, Op::TdVmCallInfo, HostRequest::TdVmCallInfo { leaf: 1 }),
            _ => self.status(p, status::INVALID_OPERAND),
        }
    }

    /// GetQuote (`tdx_get_quote()`): a private buffer GPA -> INVALID_OPERAND; else
    /// KVM_EXIT_TDX with the shared bit stripped, pre-answered SUBFUNC_UNSUPPORTED.
    fn get_quote(&mut self, p: Pending) -> TdxStep {
        let (gpa, size) = (p.kvm.r12, p.kvm.r13);
        if self.is_private(gpa) {
            return self.status(p, status::INVALID_OPERAND);
        }
        let gpa = gpa & !self.shared_bit();
        self.ask(p, Op::KvmExitTdx, HostRequest::GetQuote { gpa, size })
    }

    /// SetupEventNotifyInterrupt (`tdx_setup_event_notify_interrupt()`): vector (R12) outside
    /// 32..=255 -> INVALID_OPERAND; else KVM_EXIT_TDX, pre-answered SUBFUNC_UNSUPPORTED.
    fn setup_event_notify(&mut self, p: Pending) -> TdxStep {
        let vector = p.kvm.r12;
        if !(32..=255).contains(&vector) {
            return self.status(p, status::INVALID_OPERAND);
        }
        let request = HostRequest::SetupEventNotify {
            vector: vector as u8,
        };
        self.ask(p, Op::KvmExitTdx, request)
    }

    /// The VMM served the pending request: KVM's completion for it (the
    /// `complete_userspace_io` callbacks named on each request). A result that does not fit
    /// the request is refused and the request stays pending.
    pub fn complete(&mut self, result: HostResult) -> Result<TdxStep, SimError> {
        let Some(mut p) = self.pending.take() else {
            return Err(SimError::NothingPending);
        };
        let op = p.op;
        match (op, result) {
            // tdx_complete_pio_in(), tdx_complete_mmio_read(): `size` bytes into a zeroed
            // unsigned long.
            (Op::PortRead { size } | Op::MmioRead { size }, HostResult::Value(v)) => {
                p.kvm.r11 = v & low_bytes_mask(size);
                Ok(self.answer(p))
            }
            (Op::PortWrite | Op::MmioWrite | Op::Hlt, HostResult::Done) => Ok(self.answer(p)),
            (Op::Cpuid, HostResult::Cpuid([a, b, c, d])) => {
                p.kvm.r12 = u64::from(a);
                p.kvm.r13 = u64::from(b);
                p.kvm.r14 = u64::from(c);
                p.kvm.r15 = u64::from(d);
                Ok(self.answer(p))
            }
            (Op::Rdmsr, HostResult::Value(v)) => {
                p.kvm.r11 = v;
                Ok(self.answer(p))
            }
            (Op::Wrmsr, HostResult::Done) => Ok(self.answer(p)),
            (Op::Rdmsr | Op::Wrmsr, HostResult::Refused) => {
                Ok(self.status(p, status::INVALID_OPERAND))
            }
            (Op::MapGpa { next, end }, HostResult::Done) => {
                Ok(self.map_gpa_done(p, next, end, false))
            }
            (Op::MapGpa { next, end }, HostResult::MapGpa(r)) => Ok(match r {
                MapGpaResult::Ok { event_pending } => {
                    self.map_gpa_done(p, next, end, event_pending)
                }
                err => self.map_gpa_error(p, next, err),
            }),
            (Op::TdVmCallInfo, HostResult::Done) => {
                // The pre-filled answer.
                p.kvm.r11 = 0;
                p.kvm.r12 = 0;
                p.kvm.r13 = 0;
                p.kvm.r14 = 0;
                Ok(self.status(p, status::SUCCESS))
            }
            // tdx_complete_get_td_vm_call_info()
            (
                Op::TdVmCallInfo,
                HostResult::TdVmCallInfo {
                    status: s,
                    r11,
                    r12,
                    r13,
                    r14,
                },
            ) => {
                p.kvm.r11 = r11;
                p.kvm.r12 = r12;
                p.kvm.r13 = r13;
                p.kvm.r14 = r14;
                Ok(self.status(p, s))
            }
            // tdx_complete_simple()
            (Op::KvmExitTdx, HostResult::Done) => Ok(self.status(p, status::SUBFUNC_UNSUPPORTED)),
            (Op::KvmExitTdx, HostResult::Status(s)) => Ok(self.status(p, s)),
            // complete_hypercall_exit()
            (Op::Hypercall, HostResult::Value(ret)) => Ok(self.status(p, ret)),
            (Op::Fatal, HostResult::Done) => Ok(self.answer(p)),
            (_, got) => {
                self.pending = Some(p);
                Err(SimError::WrongResult {
                    pending: op.name(),
                    got,
                })
            }
        }
    }

    /// A chunk succeeded (`tdx_complete_vmcall_map_gpa()`): done when the next chunk starts at
    /// or past the end (R10 stays SUCCESS); RETRY with R11 = the next GPA when an event is
    /// pending; else the next chunk.
    fn map_gpa_done(
        &mut self,
        mut p: Pending,
        next: u64,
        end: u64,
        event_pending: bool,
    ) -> TdxStep {
        let next = next.saturating_add(MAP_GPA_CHUNK);
        if next >= end {
            return self.answer(p);
        }
        if event_pending {
            p.kvm.r11 = next;
            return self.status(p, status::RETRY);
        }
        self.map_gpa_chunk(p, next, end)
    }

    /// A chunk failed: see [`MapGpaErrors`]. R11 = the GPA of the failed chunk.
    fn map_gpa_error(&mut self, mut p: Pending, next: u64, err: MapGpaResult) -> TdxStep {
        p.kvm.r11 = next;
        match (self.cfg.map_gpa_errors, err) {
            (MapGpaErrors::AllInvalid, _)
            | (MapGpaErrors::RetryOnEagain, MapGpaResult::Invalid) => {
                self.status(p, status::INVALID_OPERAND)
            }
            (MapGpaErrors::RetryOnEagain, MapGpaResult::Again) => self.status(p, status::RETRY),
            (MapGpaErrors::RetryOnEagain, _) => TdxStep::Stop(Stop::KvmRunError {
                errno: libc::EINVAL,
                why: "MapGPA: the VMM's hypercall.ret is neither 0, EAGAIN nor EINVAL",
            }),
        }
    }
}

/// GPR `n` (0 = RAX .. 15 = R15; RSP and RBP are not in [`TdcallRegs`] and read as 0).
fn gpr(r: &TdcallRegs, n: u32) -> u64 {
    match n {
        0 => r.rax,
        1 => r.rcx,
        2 => r.rdx,
        3 => r.rbx,
        6 => r.rsi,
        7 => r.rdi,
        8 => r.r8,
        9 => r.r9,
        10 => r.r10,
        11 => r.r11,
        12 => r.r12,
        13 => r.r13,
        14 => r.r14,
        15 => r.r15,
        _ => 0,
    }
}

/// Sets GPR `n` (RSP, RBP and out-of-range numbers are ignored).
fn set_gpr(r: &mut TdcallRegs, n: u32, v: u64) {
    let slot = match n {
        0 => &mut r.rax,
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        15 => &mut r.r15,
        _ => return,
    };
    *slot = v;
}

#[cfg(test)]
#[path = "tdx_tests.rs"]
mod tests;
