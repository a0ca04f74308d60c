//! The simulated confidential platforms on plain KVM (DESIGN.md, "Simulated platforms"): how
//! the VM and vCPU are set up for tdx-sim and sev-es-sim, and the trap handler that hands
//! the guest's TDCALL or VMGEXIT to the pure host models in [`crate::sim`].
//!
//! - **tdx-sim**: Intel CPUID with leaf 0x21 = "IntelTDX    " ([`crate::cpuid::configure_tdx`]);
//!   a hardware breakpoint (KVM_SET_GUEST_DEBUG, DR0) on the guest's one TDCALL instruction,
//!   found by its ELF symbol ([`protocol::tdx::TDCALL_SYMBOL`]). At the breakpoint the
//!   registers come from kvm_run's sync regs, [`TdxModel`] plays the TDX module and KVM, the
//!   answer goes back through the sync regs and RIP moves past the 4-byte TDCALL.
//! - **sev-es-sim**: AMD CPUID with leaf 0x8000001F ([`crate::cpuid::configure_sev_es`]); an
//!   MSR filter with KVM_CAP_X86_USER_SPACE_MSR so the GHCB MSR and SEV_STATUS exit to the
//!   VMM ([`GhcbModel::msr_read`] / [`GhcbModel::msr_write`]); KVM's FIX_HYPERCALL_INSN quirk
//!   off (it would rewrite VMGEXIT into VMCALL); a hardware breakpoint on the one VMGEXIT
//!   ([`protocol::ghcb::VMGEXIT_SYMBOL`]), where [`GhcbModel`] reads the GHCB from guest
//!   memory and answers like KVM. The guest maps private RAM with the C-bit
//!   ([`SEV_CBIT`] = 47, as on Milan; legal here, the vCPU has 48 physical-address bits), so
//!   the RAM memslot is mapped a second time at GPA | 1 << 47 (same host memory).
//!
//! What the models ask for ([`HostRequest`]) is served here exactly where KVM would exit to
//! user space or consult VMM-owned state: port and MMIO accesses go to the legacy devices of
//! [`Machine`]; CPUID comes from the table set with KVM_SET_CPUID2; MSR accesses are done
//! on the vCPU with KVM_GET_MSRS / KVM_SET_MSRS (so the guest sees exactly the MSRs plain
//! KVM keeps, and a missing MSR is refused); TDVMCALL<HLT> waits for the local-APIC timer
//! like a halted vCPU; MapGPA conversions are accepted (the sims keep no private/shared
//! state); KVM hypercalls answer -KVM_ENOSYS (the sims give the guest no PV features to use
//! through the GHCB or TDVMCALL).
//!
//! Raw intercepted instructions are a guest bug on these platforms: a port-IO exit (and a
//! raw HLT under tdx-sim, and a raw MMIO exit, which on hardware would be #VE / #VC) ends
//! the run with [`ExitReason::RawInterception`] naming the RIP.

use crate::machine::{Control, CpuState, Machine};
use crate::sim::ghcb::{GhcbConfig, GhcbModel, GhcbStep, MsrError};
use crate::sim::tdx::{TdxConfig, TdxModel, TdxStep};
use crate::sim::{
    GuestMemory, HostRequest, HostResult, MapGpaResult, MemoryError, Stop, Tamper, kvm_err,
};
use crate::vcpu::VcpuCtl;
use crate::{ExitReason, VmmError};
use kvm_bindings::{
    KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_USE_HW_BP, KVM_MSR_EXIT_REASON_FILTER,
    KVM_X86_QUIRK_FIX_HYPERCALL_INSN, kvm_enable_cap, kvm_guest_debug, kvm_regs,
};
use kvm_ioctls::{MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VmFd};
use protocol::ghcb;
use protocol::platform::PlatformKind;
use protocol::tdx::{self, TdcallRegs};
use protocol::testdev::Space;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The C-bit position sev-es-sim reports (SEV information response, CPUID 0x8000001F
/// EBX\[5:0\]): bit 47, as on AMD Milan. The vCPU has 48 physical-address bits here, so a PTE
/// with bit 47 set is legal for plain KVM, and GPA | 1 << 47 is a GPA KVM can map.
pub const SEV_CBIT: u8 = 47;

/// The GPA width tdx-sim reports in TDG.VP.INFO: 48, so the shared bit is 47 (fits the host's
/// 48-bit physical addresses; TDX's other choice, 52, would not).
pub const TDX_GPAW: u32 = 48;

/// KVM_CAP_DISABLE_QUIRKS2 (Linux include/uapi/linux/kvm.h; not in kvm-bindings 0.14).
const KVM_CAP_DISABLE_QUIRKS2: u32 = 213;

/// Bytes of TDCALL (66 0F 01 CC) and of VMGEXIT (F3 0F 01 D9): RIP moves this far after the
/// host answered.
const TRAP_INSN_LEN: u64 = 4;

/// DR7 for one enabled execution breakpoint in DR0: G0 (bit 1), R/W0 = LEN0 = 0 (execute,
/// one byte), and bit 10, which reads as 1 (Intel SDM vol. 3B 18.2.4).
const DR7_EXEC_BP0: u64 = (1 << 1) | (1 << 10);

/// The function at a confidential platform's one trapping instruction.
fn trap_symbol(platform: PlatformKind) -> Option<&'static str> {
    match platform {
        PlatformKind::Legacy => None,
        PlatformKind::Tdx => Some(tdx::TDCALL_SYMBOL),
        PlatformKind::SevEs => Some(ghcb::VMGEXIT_SYMBOL),
    }
}

/// The address of `platform`'s trapping instruction in the kernel ELF (the virtual address
/// it runs at), or `None` for legacy.
pub fn trap_address(kernel: &Path, platform: PlatformKind) -> Result<Option<u64>, VmmError> {
    use object::{Object, ObjectSymbol};
    let Some(name) = trap_symbol(platform) else {
        return Ok(None);
    };
    let bytes = std::fs::read(kernel).map_err(|source| VmmError::KernelOpen {
        path: kernel.to_owned(),
        source,
    })?;
    let file = object::File::parse(&*bytes).map_err(|e| {
        VmmError::Config(format!(
            "cannot read the symbols of {}: {e}",
            kernel.display()
        ))
    })?;
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| Some(s.address()))
        .ok_or_else(|| {
            VmmError::Config(format!(
                "kernel {} has no symbol {name}: the {} simulation needs it to trap the \
                 guest's {} (is the ELF stripped?)",
                kernel.display(),
                platform.name(),
                if platform == PlatformKind::Tdx {
                    "TDCALL"
                } else {
                    "VMGEXIT"
                }
            ))
        })
}

/// VM-wide setup of `platform` (before the vCPU is created): for sev-es-sim the MSR filter
/// with user-space exits for the GHCB MSR and SEV_STATUS, and the FIX_HYPERCALL_INSN quirk
/// off.
pub fn prepare_vm(vm: &VmFd, platform: PlatformKind) -> Result<(), VmmError> {
    if platform != PlatformKind::SevEs {
        return Ok(());
    }
    let cap = |cap: u32, arg: u64| kvm_enable_cap {
        cap,
        args: [arg, 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap(
        kvm_bindings::KVM_CAP_X86_USER_SPACE_MSR,
        u64::from(KVM_MSR_EXIT_REASON_FILTER),
    ))
    .map_err(VmmError::kvm("KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)"))?;
    // A zero bit denies: both MSRs exit to user space, every other MSR stays with KVM.
    let deny = [0u8; 1];
    let range = MsrFilterRange {
        flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
        base: ghcb::MSR_GHCB,
        msr_count: ghcb::MSR_SEV_STATUS - ghcb::MSR_GHCB + 1,
        bitmap: &deny,
    };
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &[range])
        .map_err(VmmError::kvm("KVM_X86_SET_MSR_FILTER"))?;
    vm.enable_cap(&cap(
        KVM_CAP_DISABLE_QUIRKS2,
        u64::from(KVM_X86_QUIRK_FIX_HYPERCALL_INSN),
    ))
    .map_err(VmmError::kvm(
        "KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2, FIX_HYPERCALL_INSN)",
    ))?;
    Ok(())
}

/// The GPAs at which guest RAM is mapped for `platform`: 0, and for sev-es-sim also the
/// C-bit alias.
pub fn ram_aliases(platform: PlatformKind) -> &'static [u64] {
    const ALIASES: [u64; 2] = [0, 1 << SEV_CBIT];
    match platform {
        PlatformKind::SevEs => &ALIASES,
        PlatformKind::Legacy | PlatformKind::Tdx => &ALIASES[..1],
    }
}

/// The bits ORed into the memslot page's GPA for `platform`: under tdx-sim the shared bit
/// (the guest maps MMIO shared, so the TDX module reports the EPT violation on a shared GPA),
/// else none.
pub fn memslot_gpa_bits(platform: PlatformKind) -> u64 {
    match platform {
        PlatformKind::Tdx => 1 << (TDX_GPAW - 1),
        PlatformKind::Legacy | PlatformKind::SevEs => 0,
    }
}

/// #VE (Intel SDM vol. 3A 6.15, "Virtualization Exception").
pub const VECTOR_VE: u8 = 20;
/// #VC (AMD APM vol. 2 15.35.5, "#VC Exception").
pub const VECTOR_VC: u8 = 29;
/// The #VC error code of a nested page fault: the exit code SVM_EXIT_NPF (GHCB spec 2.0,
/// 4.1.6; Linux `vc_handle_exitcode()` sends it to `vc_handle_mmio()`).
pub const VC_ERROR_NPF: u32 = 0x400;
/// EPT-violation exit qualification (Intel SDM vol. 3C table 28-7): bit 0 data read, bit 1
/// data write, bit 7 guest linear address valid, bit 8 the access was to the translated
/// address (not a paging structure).
const EPT_QUAL_READ: u64 = 1 << 0;
const EPT_QUAL_WRITE: u64 = 1 << 1;
const EPT_QUAL_GLA_VALID: u64 = 1 << 7;
const EPT_QUAL_GLA_TRANSLATED: u64 = 1 << 8;

/// An access the guest made to the deleted memslot page, to be turned into #VE / #VC.
#[derive(Clone, Copy, Debug)]
pub struct EmulatedAccess {
    /// The GPA KVM reported (under tdx-sim with the shared bit).
    pub gpa: u64,
    /// A store.
    pub write: bool,
    /// The guest linear address, if the VMM could decode the instruction.
    pub gla: Option<u64>,
    /// The instruction's length (the RIP difference KVM's emulator made).
    pub insn_len: u64,
}

/// The KVM_SET_GUEST_DEBUG setting for a hardware execution breakpoint at `va`, and with
/// `step` single-stepping too (to know where an MMIO store began: KVM reports the RIP after
/// it).
pub fn breakpoint(va: u64, step: bool) -> kvm_guest_debug {
    let mut d = kvm_guest_debug {
        control: KVM_GUESTDBG_ENABLE
            | KVM_GUESTDBG_USE_HW_BP
            | if step {
                kvm_bindings::KVM_GUESTDBG_SINGLESTEP
            } else {
                0
            },
        ..Default::default()
    };
    d.arch.debugreg[0] = va;
    d.arch.debugreg[7] = DR7_EXEC_BP0;
    d
}

/// Guest RAM for the GHCB model: vm-memory's mapping (GPAs without the C-bit).
struct Ram<'a>(&'a GuestMemoryMmap);

impl GuestMemory for Ram<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| MemoryError {
                gpa,
                len: buf.len(),
            })
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.0
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| MemoryError {
                gpa,
                len: data.len(),
            })
    }
}

/// The host side of the platform the guest runs on.
pub enum Host {
    /// Plain KVM: every exit goes to the [`Machine`].
    Legacy,
    /// tdx-sim.
    Tdx {
        /// The TDX module + KVM.
        model: Box<TdxModel<Box<dyn Tamper>>>,
        /// Guest virtual address of the TDCALL instruction.
        trap: u64,
    },
    /// sev-es-sim.
    SevEs {
        /// KVM's GHCB handling.
        model: Box<GhcbModel<Box<dyn Tamper>>>,
        /// Guest virtual address of the VMGEXIT instruction.
        trap: u64,
    },
}

/// The outcome of serving one [`HostRequest`].
enum Served {
    /// Hand this to the model.
    Result(HostResult),
    /// The run ends (the guest's verdict, a device error, a halt forever, a timeout).
    Stop(ExitReason),
}

impl Host {
    /// The honest host for `platform`, trapping at `trap` (from [`trap_address`]; ignored for
    /// legacy).
    pub fn new(platform: PlatformKind, trap: Option<u64>, tamper: Box<dyn Tamper>) -> Self {
        match (platform, trap) {
            (PlatformKind::Tdx, Some(trap)) => Host::Tdx {
                model: Box::new(TdxModel::with_tamper(
                    TdxConfig {
                        gpaw: TDX_GPAW,
                        ..TdxConfig::default()
                    },
                    tamper,
                )),
                trap,
            },
            (PlatformKind::SevEs, Some(trap)) => Host::SevEs {
                model: Box::new(GhcbModel::with_tamper(
                    GhcbConfig {
                        cbit: SEV_CBIT,
                        ..GhcbConfig::default()
                    },
                    tamper,
                )),
                trap,
            },
            _ => Host::Legacy,
        }
    }

    /// The platform simulated.
    pub fn platform(&self) -> PlatformKind {
        match self {
            Host::Legacy => PlatformKind::Legacy,
            Host::Tdx { .. } => PlatformKind::Tdx,
            Host::SevEs { .. } => PlatformKind::SevEs,
        }
    }

    /// Whether a raw port-IO exit breaks the platform's rules (tdx-sim, sev-es-sim).
    pub fn forbids_raw_io(&self) -> bool {
        !matches!(self, Host::Legacy)
    }

    /// Whether a raw HLT exit breaks the platform's rules (tdx-sim only: HLT is an automatic
    /// exit under SEV-ES).
    pub fn forbids_raw_hlt(&self) -> bool {
        matches!(self, Host::Tdx { .. })
    }

    /// The guest's RDMSR of an MSR the filter sends to user space: its value, #GP, or not
    /// this platform's MSR.
    pub fn rdmsr(&mut self, index: u32) -> Result<u64, MsrError> {
        match self {
            Host::SevEs { model, .. } => model.msr_read(index),
            _ => Err(MsrError::NotOwned),
        }
    }

    /// The guest's WRMSR of an MSR the filter sends to user space.
    pub fn wrmsr(&mut self, index: u32, value: u64) -> Result<(), MsrError> {
        match self {
            Host::SevEs { model, .. } => model.msr_write(index, value),
            _ => Err(MsrError::NotOwned),
        }
    }

    /// Whether interrupts are posted rather than injected at an interrupt window: under TDX
    /// the TDX module delivers a pending virtual interrupt as soon as the TD sets RFLAGS.IF
    /// (posted-interrupt processing), without a VM exit the VMM could wait for.
    pub fn interrupts_posted(&self) -> bool {
        matches!(self, Host::Tdx { .. })
    }

    /// The trap address (the breakpoint), for a simulated platform.
    pub fn trap_address(&self) -> Option<u64> {
        match self {
            Host::Legacy => None,
            Host::Tdx { trap, .. } | Host::SevEs { trap, .. } => Some(*trap),
        }
    }

    /// Whether `gpa`, as KVM reports it in an MMIO exit, is the memslot scenario's page.
    pub fn is_memslot_gpa(&self, gpa: u64) -> bool {
        let plain = gpa & !memslot_gpa_bits(self.platform());
        gpa & memslot_gpa_bits(self.platform()) == memslot_gpa_bits(self.platform())
            && (protocol::memslot::GPA..protocol::memslot::GPA + protocol::memslot::SIZE)
                .contains(&plain)
    }

    /// Prepares the exception that delivers `access` to the guest: under tdx-sim posts the
    /// #VE information TDG.VP.VEINFO.GET will return. Returns the vector and error code, or
    /// why it cannot be delivered.
    pub fn exception_for(&mut self, access: &EmulatedAccess) -> Result<(u8, Option<u32>), String> {
        match self {
            Host::Legacy => Err("no exception converts MMIO on a legacy VM".into()),
            Host::Tdx { model, .. } => {
                let qual = if access.write {
                    EPT_QUAL_WRITE
                } else {
                    EPT_QUAL_READ
                } | if access.gla.is_some() {
                    EPT_QUAL_GLA_VALID | EPT_QUAL_GLA_TRANSLATED
                } else {
                    0
                };
                let posted = model.post_ve(crate::sim::tdx::VeInfo {
                    exit_reason: protocol::tdx::EXIT_REASON_EPT_VIOLATION as u32,
                    exit_qualification: qual,
                    gla: access.gla.unwrap_or(0),
                    gpa: access.gpa,
                    insn_len: access.insn_len as u32,
                    insn_info: 0,
                });
                if posted {
                    Ok((VECTOR_VE, None))
                } else {
                    Err(
                        "a #VE while the last #VE's information is unread (the TDX module \
                         would deliver #DF)"
                            .into(),
                    )
                }
            }
            Host::SevEs { .. } => Ok((VECTOR_VC, Some(VC_ERROR_NPF))),
        }
    }

    /// Whether a debug exit at `rip` is the platform's trap.
    pub fn is_trap(&self, rip: u64) -> bool {
        match self {
            Host::Legacy => false,
            Host::Tdx { trap, .. } | Host::SevEs { trap, .. } => *trap == rip,
        }
    }

    /// The guest stopped at its TDCALL or VMGEXIT (a debug exit at the trap address): plays
    /// the host, writes the answer, moves RIP past the instruction.
    pub fn trap(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
        stop: &AtomicBool,
    ) -> Result<Control, VmmError> {
        machine.count_exit();
        match self {
            Host::Legacy => Ok(Control::Stop(ExitReason::Unexpected {
                exit: "KVM_EXIT_DEBUG on a legacy VM".into(),
                rip: cpu.rip(),
            })),
            Host::Tdx { model, .. } => {
                let mut step = model.tdcall(&tdcall_regs(&cpu.regs));
                loop {
                    match step {
                        TdxStep::Done(out) => {
                            vcpu.write_regs(|r| {
                                set_tdcall_regs(r, &out);
                                r.rip = cpu.rip() + TRAP_INSN_LEN;
                            });
                            return Ok(Control::Continue);
                        }
                        TdxStep::Host(request) => {
                            match serve(&request, vcpu, machine, cpu, stop)? {
                                Served::Result(r) => {
                                    step = model.complete(r).map_err(sim_bug)?;
                                }
                                Served::Stop(reason) => return Ok(Control::Stop(reason)),
                            }
                        }
                        TdxStep::Stop(s) => return Ok(Control::Stop(platform_stop(s, cpu))),
                    }
                }
            }
            Host::SevEs { model, .. } => {
                let mem = machine.memory().clone();
                let mut ram = Ram(&mem);
                let mut step = model.vmgexit(&mut ram);
                loop {
                    match step {
                        GhcbStep::Done => {
                            vcpu.write_regs(|r| r.rip = cpu.rip() + TRAP_INSN_LEN);
                            return Ok(Control::Continue);
                        }
                        GhcbStep::Host(request) => {
                            match serve(&request, vcpu, machine, cpu, stop)? {
                                Served::Result(r) => {
                                    step = model.complete(r, &mut ram).map_err(sim_bug)?;
                                }
                                Served::Stop(reason) => return Ok(Control::Stop(reason)),
                            }
                        }
                        GhcbStep::Stop(s) => return Ok(Control::Stop(platform_stop(s, cpu))),
                    }
                }
            }
        }
    }
}

/// A model called out of order: a VMM bug.
fn sim_bug(e: crate::sim::SimError) -> VmmError {
    VmmError::Config(format!("simulated host used out of order (a VMM bug): {e}"))
}

fn platform_stop(s: Stop, cpu: &CpuState) -> ExitReason {
    ExitReason::PlatformStop {
        detail: s.to_string(),
        rip: cpu.rip(),
    }
}

/// The guest's registers at TDCALL.
fn tdcall_regs(r: &kvm_regs) -> TdcallRegs {
    TdcallRegs {
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rbx: r.rbx,
        rsi: r.rsi,
        rdi: r.rdi,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
    }
}

/// Writes the TDX module's answer into the vCPU's registers (RSP, RBP, RIP and RFLAGS are
/// not TDCALL outputs).
fn set_tdcall_regs(r: &mut kvm_regs, t: &TdcallRegs) {
    r.rax = t.rax;
    r.rcx = t.rcx;
    r.rdx = t.rdx;
    r.rbx = t.rbx;
    r.rsi = t.rsi;
    r.rdi = t.rdi;
    r.r8 = t.r8;
    r.r9 = t.r9;
    r.r10 = t.r10;
    r.r11 = t.r11;
    r.r12 = t.r12;
    r.r13 = t.r13;
    r.r14 = t.r14;
    r.r15 = t.r15;
}

/// The low `size` bytes of `value`, as a device sees a write of that size.
fn low_bytes(value: u64, size: u8) -> Vec<u8> {
    value.to_le_bytes()[..usize::from(size).min(8)].to_vec()
}

/// Serves one model request where KVM would exit to the VMM (or consult its state).
fn serve(
    request: &HostRequest,
    vcpu: &mut VcpuCtl<'_>,
    machine: &mut Machine,
    cpu: &CpuState,
    stop: &AtomicBool,
) -> Result<Served, VmmError> {
    let now = Instant::now();
    let write = |machine: &mut Machine, space, addr, data: &[u8]| match machine
        .host_write(space, addr, data, cpu, now)
    {
        Control::Stop(reason) => Served::Stop(reason),
        _ => Served::Result(HostResult::Done),
    };
    let read = |machine: &mut Machine, space, addr, size: u8| {
        let mut buf = [0u8; 8];
        let n = usize::from(size).min(8);
        machine.host_read(space, addr, &mut buf[..n], cpu, now);
        Served::Result(HostResult::Value(u64::from_le_bytes(buf)))
    };
    Ok(match *request {
        HostRequest::PortRead { port, size } => read(machine, Space::Pio, u64::from(port), size),
        HostRequest::PortWrite { port, size, value } => write(
            machine,
            Space::Pio,
            u64::from(port),
            &low_bytes(value, size),
        ),
        HostRequest::PortReadString { port, size, count } => {
            let size = usize::from(size.max(1));
            let mut data = vec![0u8; size * count as usize];
            for el in data.chunks_mut(size) {
                machine.host_read(Space::Pio, u64::from(port), el, cpu, now);
            }
            Served::Result(HostResult::Bytes(data))
        }
        HostRequest::PortWriteString {
            port,
            size,
            ref data,
        } => {
            for el in data.chunks(usize::from(size.max(1))) {
                if let Served::Stop(reason) = write(machine, Space::Pio, u64::from(port), el) {
                    return Ok(Served::Stop(reason));
                }
            }
            Served::Result(HostResult::Done)
        }
        HostRequest::MmioRead { gpa, size, .. } => read(machine, Space::Mmio, gpa, size),
        HostRequest::MmioWrite {
            gpa, size, value, ..
        } => write(machine, Space::Mmio, gpa, &low_bytes(value, size)),
        HostRequest::Cpuid { leaf, subleaf, .. } => {
            Served::Result(HostResult::Cpuid(vcpu.cpuid(leaf, subleaf)))
        }
        HostRequest::Rdmsr { index } => Served::Result(match vcpu.read_msr(index)? {
            Some(v) => HostResult::Value(v),
            None => HostResult::Refused,
        }),
        HostRequest::Wrmsr { index, value } => Served::Result(if vcpu.write_msr(index, value)? {
            HostResult::Done
        } else {
            HostResult::Refused
        }),
        HostRequest::Hlt { interrupts_blocked } => {
            let halted = CpuState {
                if_flag: !interrupts_blocked,
                ..*cpu
            };
            match crate::vcpu::wait_for_wakeup(machine, &halted, stop, vcpu)? {
                Some(reason) => Served::Stop(reason),
                None => Served::Result(HostResult::Done),
            }
        }
        HostRequest::ApResetHold => Served::Stop(ExitReason::PlatformStop {
            detail: "AP reset hold: this one-vCPU VM has no other vCPU to send the SIPI".into(),
            rip: cpu.rip(),
        }),
        HostRequest::MapGpa { .. } => Served::Result(HostResult::MapGpa(MapGpaResult::Ok {
            event_pending: false,
        })),
        HostRequest::TdVmCallInfo { .. }
        | HostRequest::GetQuote { .. }
        | HostRequest::SetupEventNotify { .. } => Served::Result(HostResult::Done),
        HostRequest::KvmHypercall { .. } => Served::Result(HostResult::Value(kvm_err::ENOSYS)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakpoint_enables_dr0_for_execution() {
        let d = breakpoint(0xffff_ffff_8010_2340, false);
        assert_eq!(d.arch.debugreg[0], 0xffff_ffff_8010_2340);
        assert_eq!(d.arch.debugreg[7] & 0b11, 0b10, "G0 only");
        assert_eq!(d.arch.debugreg[7] >> 16, 0, "R/W0 = LEN0 = 0: execute");
        assert_ne!(d.control & KVM_GUESTDBG_USE_HW_BP, 0);
        assert_eq!(d.control & kvm_bindings::KVM_GUESTDBG_SINGLESTEP, 0);
        let s = breakpoint(0x1000, true);
        assert_ne!(s.control & kvm_bindings::KVM_GUESTDBG_SINGLESTEP, 0);
        assert_eq!(s.arch.debugreg[0], 0x1000);
    }

    #[test]
    fn memslot_gpa_carries_the_shared_bit_under_tdx() {
        let tdx = Host::new(PlatformKind::Tdx, Some(1), Box::new(crate::sim::Honest));
        let gpa = protocol::memslot::GPA;
        assert!(tdx.is_memslot_gpa(gpa | 1 << 47));
        assert!(!tdx.is_memslot_gpa(gpa), "private alias: not the page");
        assert!(!tdx.is_memslot_gpa((gpa + protocol::memslot::SIZE) | 1 << 47));
        let sev = Host::new(PlatformKind::SevEs, Some(1), Box::new(crate::sim::Honest));
        assert!(sev.is_memslot_gpa(gpa + 8));
        assert!(!sev.is_memslot_gpa(gpa | 1 << 47));
    }

    #[test]
    fn tdcall_registers_round_trip() {
        let r = kvm_regs {
            rax: 0,
            rcx: 0xfc00,
            r10: 0,
            r11: 30,
            r12: 1,
            r13: 1,
            r14: 0xd100,
            r15: 0xff,
            rsp: 0x1234,
            rip: 0x5678,
            ..Default::default()
        };
        let t = tdcall_regs(&r);
        assert_eq!((t.rcx, t.r11, t.r14, t.r15), (0xfc00, 30, 0xd100, 0xff));
        let mut back = kvm_regs {
            rsp: 0x1234,
            rip: 0x5678,
            ..Default::default()
        };
        set_tdcall_regs(&mut back, &t);
        assert_eq!(back, r);
    }

    #[test]
    fn aliases_only_for_sev_es() {
        assert_eq!(ram_aliases(PlatformKind::Legacy), &[0]);
        assert_eq!(ram_aliases(PlatformKind::Tdx), &[0]);
        assert_eq!(ram_aliases(PlatformKind::SevEs), &[0, 1 << 47]);
    }

    #[test]
    fn low_bytes_cut_to_size() {
        assert_eq!(low_bytes(0x1122_3344, 2), vec![0x44, 0x33]);
        assert_eq!(low_bytes(u64::MAX, 9).len(), 8);
    }
}
