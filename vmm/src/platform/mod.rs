//! The simulated confidential platforms' KVM glue (DESIGN.md, "Simulated platforms"): how
//! the VM and vCPU are set up for tdx-sim and sev-es-sim, and what the VMM does at the exits
//! they cause, handing each request to the pure models of [`crate::sim`] (which never touch
//! KVM) and applying their answers to the vCPU.
//!
//! | module | what it glues |
//! | --- | --- |
//! | `mod.rs` | [`Host`], the platform the run presents; the trap sites found in the kernel ELF; VM setup ([`prepare_vm`]: the MSR filter, the hypercall quirk); the guest-debug setting of the breakpoints ([`guest_debug`]) |
//! | `tdx.rs` | tdx-sim: TDCALL at its breakpoint through kvm_run's sync regs into [`crate::sim::tdx`]; raw instructions as the TDX module answers them or #VE; the memslot #VE |
//! | `sev_es.rs` | sev-es-sim: VMGEXIT at its breakpoint with the GHCB page from guest memory into [`crate::sim::ghcb`]; the host's check of the GHCB's mapping and of leaks; MSR exits for the GHCB MSR; raw instructions as #VC; the hostile host's GHCB watch |
//! | `raw.rs` | the raw intercepted instructions' exits (MSR filter, port IO, HLT, the raw CPUID's breakpoint): found, decided by [`crate::sim::raw`], answered or turned into an exception |
//! | `serve.rs` | what the models ask of the VMM ([`crate::sim::HostRequest`]), served where KVM would exit to user space: devices, CPUID table, KVM_GET/SET_MSRS, halting |
//!
//! - **tdx-sim**: Intel CPUID with leaf 0x21 = "IntelTDX    " and x2APIC
//!   ([`crate::cpuid::configure_tdx`]); the APIC in x2APIC mode (IA32_APIC_BASE.EXTD) with no
//!   xAPIC page, EFER as the TDX module enters a TD; a hardware breakpoint
//!   (KVM_SET_GUEST_DEBUG, DR0) on the guest's one TDCALL instruction, found by its ELF symbol
//!   ([`protocol::tdx::TDCALL_SYMBOL`]). One exit per request.
//! - **sev-es-sim**: AMD CPUID with leaf 0x8000001F ([`crate::cpuid::configure_sev_es`]);
//!   KVM's FIX_HYPERCALL_INSN quirk off (it would rewrite VMGEXIT into VMCALL); a hardware
//!   breakpoint on the one VMGEXIT ([`protocol::ghcb::VMGEXIT_SYMBOL`]). The guest maps
//!   private RAM with the C-bit, so the RAM memslot is mapped a second time at GPA | C-bit
//!   (same host memory, [`ram_aliases`]).
//!
//! Both sims give the raw intercepted instructions the guest runs itself what the real
//! platform gives them: a second hardware breakpoint (DR1) on the guest's one raw CPUID
//! ([`protocol::x86::CPUID_SYMBOL`]: a raw CPUID never leaves KVM by itself); an MSR filter
//! whose default is DENY, with KVM_CAP_X86_USER_SPACE_MSR, so every RDMSR/WRMSR exits; raw
//! IN/OUT (and HLT under tdx-sim) exits. Both the TDX shared bit and the SEV C-bit are
//! ordinary address bits for plain KVM, so they are placed below the vCPU's
//! physical-address width ([`crate::sim::address`]).
//!
//! A raw MMIO exit outside the memslot scenario ends the run with
//! [`ExitReason::RawInterception`] naming the RIP: on hardware a #VE/#VC, but converting a
//! store needs the single-step bookkeeping only that scenario sets up (a known gap).

pub mod raw;
mod serve;
pub mod sev_es;
pub mod tdx;

pub use sev_es::GhcbMapping;

use crate::machine::{Control, CpuState, Machine};
use crate::memslot::convert::EmulatedAccess;
use crate::sim::address::AddressWidth;
use crate::sim::profile::ProfileError;
use crate::sim::{GuestMemory, MemoryError, Stop, Tamper};
use crate::vcpu::VcpuCtl;
use crate::{ExitReason, VmmError};
use kvm_bindings::{
    KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP,
    KVM_MSR_EXIT_REASON_FILTER, KVM_MSR_EXIT_REASON_INVAL, KVM_MSR_EXIT_REASON_UNKNOWN,
    KVM_X86_QUIRK_FIX_HYPERCALL_INSN, kvm_enable_cap, kvm_guest_debug,
};
use kvm_ioctls::{MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VmFd};
use protocol::kvm::KvmProfile;
use protocol::platform::PlatformKind;
use protocol::x86::debug;
use protocol::{ghcb, tdx as tdx_proto};
use raw::{RawInsn, RawOutcome};
use sev_es::SevEsHost;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tdx::TdxHost;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// How many findings of one kind (raw instructions, GHCB leaks) a run reports in full.
pub const MAX_REPORTS: usize = 8;

/// KVM_CAP_DISABLE_QUIRKS2 (Linux include/uapi/linux/kvm.h; not in kvm-bindings 0.14).
const KVM_CAP_DISABLE_QUIRKS2: u32 = 213;

/// The guest instructions a simulated platform puts hardware breakpoints on: its one TDCALL
/// or VMGEXIT (DR0), and its one raw CPUID (DR1), which never leaves KVM by itself and must
/// get what the platform gives it (`crate::sim::raw`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapSites {
    /// TDCALL / VMGEXIT ([`tdx_proto::TDCALL_SYMBOL`], [`ghcb::VMGEXIT_SYMBOL`]).
    pub trap: u64,
    /// The raw CPUID ([`protocol::x86::CPUID_SYMBOL`]).
    pub cpuid: u64,
}

/// The function at a confidential platform's one trapping instruction.
fn trap_symbol(platform: PlatformKind) -> Option<&'static str> {
    match platform {
        PlatformKind::Legacy => None,
        PlatformKind::Tdx => Some(tdx_proto::TDCALL_SYMBOL),
        PlatformKind::SevEs => Some(ghcb::VMGEXIT_SYMBOL),
    }
}

/// The addresses of `platform`'s trapping instructions in the kernel ELF `elf` (read from
/// `kernel`; the virtual addresses they run at), or `None` for legacy.
pub fn trap_sites(
    kernel: &Path,
    elf: &[u8],
    platform: PlatformKind,
) -> Result<Option<TrapSites>, VmmError> {
    let Some(name) = trap_symbol(platform) else {
        return Ok(None);
    };
    let find = |name: &str, what: &str| {
        symbol_address(kernel, elf, name)?.ok_or_else(|| {
            VmmError::Config(format!(
                "kernel {} has no symbol {name}: the {} simulation needs it to trap the \
                 guest's {what} (is the ELF stripped?)",
                kernel.display(),
                platform.name(),
            ))
        })
    };
    let trap = find(
        name,
        if platform == PlatformKind::Tdx {
            "TDCALL"
        } else {
            "VMGEXIT"
        },
    )?;
    let cpuid = find(protocol::x86::CPUID_SYMBOL, "raw CPUID")?;
    Ok(Some(TrapSites { trap, cpuid }))
}

/// The virtual address of the guest's GHCB page ([`ghcb::GHCB_SYMBOL`]) in the kernel ELF
/// `elf` (read from `kernel`) under sev-es-sim, if the kernel exports it (the host's check of
/// the GHCB's mapping and the hostile host's rewrite lie need it).
pub fn ghcb_address(
    kernel: &Path,
    elf: &[u8],
    platform: PlatformKind,
) -> Result<Option<u64>, VmmError> {
    if platform != PlatformKind::SevEs {
        return Ok(None);
    }
    symbol_address(kernel, elf, ghcb::GHCB_SYMBOL)
}

/// The address of symbol `name` in the kernel ELF `elf` (read from `kernel`).
fn symbol_address(kernel: &Path, elf: &[u8], name: &str) -> Result<Option<u64>, VmmError> {
    protocol::elf::symbol(elf, name).map_err(|e| {
        VmmError::Config(format!(
            "cannot read the symbols of {}: {e:?}",
            kernel.display()
        ))
    })
}

/// The MSR exits a simulated platform asks for: the MSR filter's, and (for the x2APIC MSRs,
/// which KVM never filters, `kvm_msr_allowed()`) the ones KVM fails without an in-kernel
/// APIC (`kvm_x2apic_msr_read()` returns 1: KVM_MSR_EXIT_REASON_INVAL). Seen on these
/// machines: a raw RDMSR of 0x80B exits with reason INVAL, of EFER with reason FILTER.
const USER_SPACE_MSR_REASONS: u32 =
    KVM_MSR_EXIT_REASON_FILTER | KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL;

/// VM-wide setup of a simulated `platform` (before the vCPU is created): every raw RDMSR and
/// WRMSR exits to the VMM (KVM_CAP_X86_USER_SPACE_MSR and an MSR filter whose default is
/// DENY; KVM refuses a DENY filter with no range, so one range denies MSR 0 explicitly),
/// where `crate::sim::raw` decides what the platform gives it; for sev-es-sim the
/// FIX_HYPERCALL_INSN quirk off too.
pub fn prepare_vm(vm: &VmFd, platform: PlatformKind) -> Result<(), VmmError> {
    if platform == PlatformKind::Legacy {
        return Ok(());
    }
    let cap = |cap: u32, arg: u64| kvm_enable_cap {
        cap,
        args: [arg, 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap(
        kvm_bindings::KVM_CAP_X86_USER_SPACE_MSR,
        u64::from(USER_SPACE_MSR_REASONS),
    ))
    .map_err(VmmError::kvm("KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)"))?;
    // A zero bit denies.
    let deny = [0u8; 1];
    let range = MsrFilterRange {
        flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
        base: 0,
        msr_count: 1,
        bitmap: &deny,
    };
    vm.set_msr_filter(MsrFilterDefaultAction::DENY, &[range])
        .map_err(VmmError::kvm("KVM_X86_SET_MSR_FILTER"))?;
    if platform == PlatformKind::SevEs {
        vm.enable_cap(&cap(
            KVM_CAP_DISABLE_QUIRKS2,
            u64::from(KVM_X86_QUIRK_FIX_HYPERCALL_INSN),
        ))
        .map_err(VmmError::kvm(
            "KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2, FIX_HYPERCALL_INSN)",
        ))?;
    }
    Ok(())
}

/// The GPAs at which guest RAM is mapped for `platform` on a vCPU of `width`: 0, and for
/// sev-es-sim also the C-bit alias.
pub fn ram_aliases(platform: PlatformKind, width: AddressWidth) -> Vec<u64> {
    match platform {
        PlatformKind::SevEs => vec![0, width.platform_bit(platform)],
        PlatformKind::Legacy | PlatformKind::Tdx => vec![0],
    }
}

/// The KVM_SET_GUEST_DEBUG setting: hardware execution breakpoints at `sites` (DR0 the trap,
/// DR1 the raw CPUID), and with `step` single-stepping too (the memslot scenario, the
/// hostile host's GHCB watch, an instruction count). Without sites and step, debugging off.
pub fn guest_debug(sites: Option<TrapSites>, step: bool) -> kvm_guest_debug {
    let mut d = kvm_guest_debug::default();
    if let Some(sites) = sites {
        d.control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
        d.arch.debugreg[0] = sites.trap;
        d.arch.debugreg[1] = sites.cpuid;
        // R/W = LEN = 0 for both: execute, one byte.
        d.arch.debugreg[7] = debug::DR7_G0 | debug::DR7_G1 | debug::DR7_FIXED1;
    }
    if step {
        d.control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP;
    }
    d
}

/// Guest RAM for the models: vm-memory's mapping (GPAs without the C-bit).
pub(crate) struct Ram<'a>(pub(crate) &'a GuestMemoryMmap);

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
    Tdx(Box<TdxHost>),
    /// sev-es-sim.
    SevEs(Box<SevEsHost>),
}

impl Host {
    /// The host for `platform` on a vCPU of `width`, trapping at `sites` (from
    /// [`trap_sites`]; ignored for legacy), answering as current KVM.
    pub fn new(
        platform: PlatformKind,
        sites: Option<TrapSites>,
        tamper: Box<dyn Tamper>,
        width: AddressWidth,
    ) -> Self {
        Self::for_kvm(platform, sites, tamper, width, KvmProfile::Current)
            .expect("current KVM plays every platform")
    }

    /// [`Self::new`], answering as the KVM release `kvm` ([`crate::sim::profile`]); fails for
    /// a platform that KVM cannot run (TDX before v6.16).
    pub fn for_kvm(
        platform: PlatformKind,
        sites: Option<TrapSites>,
        tamper: Box<dyn Tamper>,
        width: AddressWidth,
        kvm: KvmProfile,
    ) -> Result<Self, ProfileError> {
        Ok(match (platform, sites) {
            (PlatformKind::Tdx, Some(sites)) => {
                Host::Tdx(Box::new(TdxHost::new(sites, tamper, width, kvm)?))
            }
            (PlatformKind::SevEs, Some(sites)) => {
                Host::SevEs(Box::new(SevEsHost::new(sites, tamper, width, kvm)))
            }
            _ => Host::Legacy,
        })
    }

    /// The platform simulated.
    pub fn platform(&self) -> PlatformKind {
        match self {
            Host::Legacy => PlatformKind::Legacy,
            Host::Tdx(_) => PlatformKind::Tdx,
            Host::SevEs(_) => PlatformKind::SevEs,
        }
    }

    /// Whether a raw port-IO or MSR exit breaks the platform's rules (tdx-sim, sev-es-sim).
    pub fn forbids_raw_io(&self) -> bool {
        !matches!(self, Host::Legacy)
    }

    /// Whether a raw HLT exit breaks the platform's rules (tdx-sim only: HLT is an automatic
    /// exit under SEV-ES).
    pub fn forbids_raw_hlt(&self) -> bool {
        matches!(self, Host::Tdx(_))
    }

    /// The breakpoint sites, for a simulated platform.
    pub fn trap_sites(&self) -> Option<TrapSites> {
        match self {
            Host::Legacy => None,
            Host::Tdx(t) => Some(t.sites),
            Host::SevEs(s) => Some(s.sites),
        }
    }

    /// Whether a debug exit at `rip` is the platform's trap.
    pub fn is_trap(&self, rip: u64) -> bool {
        self.trap_sites().is_some_and(|s| s.trap == rip)
    }

    /// Whether a debug exit at `rip` is the guest's raw CPUID.
    pub fn is_cpuid_site(&self, rip: u64) -> bool {
        self.trap_sites().is_some_and(|s| s.cpuid == rip)
    }

    /// The vCPU's physical-address width, for a simulated platform.
    pub fn width(&self) -> Option<AddressWidth> {
        match self {
            Host::Legacy => None,
            Host::Tdx(t) => Some(t.width),
            Host::SevEs(s) => Some(s.width),
        }
    }

    /// The GPA bit at which guest RAM is mapped a second time (sev-es-sim's C-bit), 0 if none:
    /// stripped from translated addresses before guest memory is read.
    pub fn ram_alias_bit(&self) -> u64 {
        match self {
            Host::SevEs(s) => s.width.platform_bit(PlatformKind::SevEs),
            Host::Legacy | Host::Tdx(_) => 0,
        }
    }

    /// Whether `gpa`, as KVM reports it in an MMIO exit, is the memslot scenario's page.
    pub fn is_memslot_gpa(&self, gpa: u64) -> bool {
        let bits = self
            .width()
            .map_or(0, |w| crate::memslot::gpa_bits(self.platform(), w));
        crate::memslot::is_page_gpa(gpa, bits)
    }

    /// What the guest did that the platform forbids (raw IN/OUT, raw HLT under TDX), one
    /// line each, emptied: the host verdict fails on them.
    pub fn take_findings(&mut self) -> Vec<String> {
        match self {
            Host::Legacy => Vec::new(),
            Host::Tdx(t) => std::mem::take(&mut t.findings),
            Host::SevEs(s) => std::mem::take(&mut s.findings),
        }
    }

    /// Whether the guest was just woken from `TDVMCALL<HLT>` (then read once): the pending
    /// interrupt goes in at the next entry ([`TdxHost::take_wakeup`]).
    pub fn take_wakeup(&mut self) -> bool {
        match self {
            Host::Tdx(t) => t.take_wakeup(),
            _ => false,
        }
    }

    /// The GHCB leaks found so far (sev-es-sim), emptied.
    pub fn take_ghcb_leaks(&mut self) -> Vec<String> {
        match self {
            Host::SevEs(s) => std::mem::take(&mut s.leaks),
            _ => Vec::new(),
        }
    }

    /// The host's check of the GHCB's mapping (sev-es-sim), taken.
    pub fn take_ghcb_mapping(&mut self) -> Option<GhcbMapping> {
        match self {
            Host::SevEs(s) => Some(std::mem::take(&mut s.mapping)),
            _ => None,
        }
    }

    /// Tells sev-es-sim where the guest's GHCB page is (see [`ghcb_address`]).
    pub fn set_ghcb_va(&mut self, va: Option<u64>) {
        if let Host::SevEs(s) = self {
            s.ghcb_va = va;
        }
    }

    /// sev-es-sim: the GHCB MSR holds `gpa` at the start of the run (the firmware registered
    /// its own GHCB before the UEFI hand-off).
    pub fn set_firmware_ghcb(&mut self, gpa: u64) -> Result<(), VmmError> {
        if let Host::SevEs(s) = self {
            s.model
                .msr_write(ghcb::MSR_GHCB, gpa)
                .map_err(|e| VmmError::Config(format!("firmware GHCB MSR: {e:?}")))?;
        }
        Ok(())
    }

    /// Whether the hostile host single-steps the guest to watch its reads of the GHCB.
    pub fn watching(&self) -> bool {
        matches!(self, Host::SevEs(s) if s.watching())
    }

    /// One single step while the hostile host watches the GHCB ([`SevEsHost::watch_step`]).
    pub fn watch_step(
        &mut self,
        vcpu: &VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
    ) -> Control {
        match self {
            Host::SevEs(s) => s.watch_step(vcpu, machine, cpu),
            _ => Control::Continue,
        }
    }

    /// What the platform gives a raw intercepted instruction the guest executed
    /// (`crate::sim::raw` decides; the platform's glue serves and records): under tdx-sim the
    /// TDX module's answer, a #VE with its information posted (or #DF while the last #VE is
    /// unread) or #GP; under sev-es-sim a #VC, the GHCB model's MSRs, or the instruction
    /// completed as the CPU would. A raw IN, OUT (and under TDX, HLT) is also a finding
    /// against the guest: it had to use its backend ([`Host::take_findings`]).
    pub fn raw(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
        insn: RawInsn,
        now: Instant,
    ) -> Result<RawOutcome, VmmError> {
        machine.count_exit();
        match self {
            Host::Legacy => Err(VmmError::Config(
                "a raw-instruction exit on a legacy VM (a VMM bug)".into(),
            )),
            Host::Tdx(t) => t.raw(vcpu, machine, cpu, insn, now),
            Host::SevEs(s) => s.raw(vcpu, machine, cpu, insn, now),
        }
    }

    /// Prepares the exception that delivers a memslot-scenario `access` to the guest: under
    /// tdx-sim posts the #VE information TDG.VP.VEINFO.GET will return. Returns the vector and
    /// error code, or why it cannot be delivered.
    pub fn exception_for(&mut self, access: &EmulatedAccess) -> Result<(u8, Option<u32>), String> {
        match self {
            Host::Legacy => Err("no exception converts MMIO on a legacy VM".into()),
            Host::Tdx(t) => Ok(t.memslot_exception(access)),
            Host::SevEs(_) => Ok(sev_es::MEMSLOT_EXCEPTION),
        }
    }

    /// The guest stopped at its TDCALL or VMGEXIT (a debug exit at the trap address): plays
    /// the host, writes the answer, moves RIP past the instruction; a hostile host may follow
    /// with an event that has no cause.
    pub fn trap(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
        stop: &AtomicBool,
    ) -> Result<Control, VmmError> {
        machine.count_exit();
        let case = machine.testdev().current_case();
        let events_allowed = !vcpu.stepping() && !machine.memslot().cycle_open();
        // The hostile layer learns which case runs and whether it may add an event.
        let tell = |tamper: &mut dyn Tamper| {
            tamper.set_case(case);
            tamper.set_events_allowed(events_allowed);
        };
        let control = match self {
            Host::Legacy => {
                return Ok(Control::Stop(ExitReason::Unexpected {
                    exit: "KVM_EXIT_DEBUG on a legacy VM".into(),
                    rip: cpu.rip(),
                }));
            }
            Host::Tdx(t) => {
                tell(t.model.tamper_mut());
                t.answer(vcpu, machine, cpu, stop)?
            }
            Host::SevEs(s) => {
                tell(s.model.tamper_mut());
                s.answer(vcpu, machine, cpu, stop, case)?
            }
        };
        if !matches!(control, Control::Continue) {
            return Ok(control);
        }
        // A hostile host may follow its answer with an event that has no cause; not while a
        // memslot cycle is open (from DELETE to REPORT): turning that page's MMIO exits into
        // #VE/#VC relies on single-step and exit bookkeeping that a second injected event
        // confuses (a limit of the simulation, not of the guest).
        if !events_allowed {
            return Ok(control);
        }
        let event = match self {
            Host::Legacy => None,
            Host::Tdx(t) => t.spurious_event(),
            Host::SevEs(s) => s.spurious_event(),
        };
        if let Some((vector, error_code)) = event {
            vcpu.inject_exception(vector, error_code)?;
        }
        Ok(control)
    }
}

/// A model called out of order: a VMM bug.
fn sim_bug(e: crate::sim::SimError) -> VmmError {
    VmmError::Config(format!("simulated host used out of order (a VMM bug): {e}"))
}

/// The run ends as the simulated host ended it.
fn platform_stop(s: Stop, cpu: &CpuState) -> ExitReason {
    ExitReason::PlatformStop {
        detail: s.to_string(),
        rip: cpu.rip(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakpoints_in_dr0_and_dr1_for_execution() {
        let sites = TrapSites {
            trap: 0xffff_ffff_8010_2340,
            cpuid: 0xffff_ffff_8010_5000,
        };
        let d = guest_debug(Some(sites), false);
        assert_eq!(d.arch.debugreg[0], 0xffff_ffff_8010_2340);
        assert_eq!(d.arch.debugreg[1], 0xffff_ffff_8010_5000);
        assert_eq!(d.arch.debugreg[7] & 0xff, 0b1010, "G0 and G1 only");
        assert_eq!(
            d.arch.debugreg[7] & debug::DR7_RW_LEN_MASK,
            0,
            "R/W = LEN = 0: execute"
        );
        assert_ne!(d.control & KVM_GUESTDBG_USE_HW_BP, 0);
        assert_eq!(d.control & KVM_GUESTDBG_SINGLESTEP, 0);
        let s = guest_debug(Some(TrapSites { trap: 1, cpuid: 2 }), true);
        assert_ne!(s.control & KVM_GUESTDBG_SINGLESTEP, 0);
        assert_eq!((s.arch.debugreg[0], s.arch.debugreg[1]), (1, 2));
        // Legacy: stepping without breakpoints, or nothing at all.
        let l = guest_debug(None, true);
        assert_eq!(l.control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP);
        assert_eq!(l.arch.debugreg[7], 0);
        assert_eq!(guest_debug(None, false).control, 0);
    }

    fn width(bits: u8) -> AddressWidth {
        AddressWidth::new(bits).unwrap()
    }

    #[test]
    fn aliases_only_for_sev_es() {
        assert_eq!(ram_aliases(PlatformKind::Legacy, width(48)), [0]);
        assert_eq!(ram_aliases(PlatformKind::Tdx, width(46)), [0]);
        assert_eq!(ram_aliases(PlatformKind::SevEs, width(48)), [0, 1 << 47]);
        assert_eq!(ram_aliases(PlatformKind::SevEs, width(52)), [0, 1 << 51]);
        assert_eq!(ram_aliases(PlatformKind::SevEs, width(46)), [0, 1 << 45]);
        assert_eq!(ram_aliases(PlatformKind::SevEs, width(39)), [0, 1 << 38]);
        // The alias lies inside the vCPU's address space, above all RAM.
        for bits in 36..=52 {
            let a = ram_aliases(PlatformKind::SevEs, width(bits))[1];
            assert!(a < 1 << bits && a > crate::layout::RAM_LIMIT, "{bits}");
        }
    }

    #[test]
    fn the_memslot_page_is_found_through_the_host() {
        let sites = Some(TrapSites { trap: 1, cpuid: 2 });
        let honest = || Box::new(crate::sim::Honest) as Box<dyn Tamper>;
        let gpa = protocol::memslot::GPA;
        let tdx = Host::new(PlatformKind::Tdx, sites, honest(), width(46));
        assert!(tdx.is_memslot_gpa(gpa | 1 << 45));
        assert!(!tdx.is_memslot_gpa(gpa));
        assert_eq!(tdx.ram_alias_bit(), 0);
        let sev = Host::new(PlatformKind::SevEs, sites, honest(), width(46));
        assert!(sev.is_memslot_gpa(gpa + 8));
        assert_eq!(sev.ram_alias_bit(), 1 << 45);
        assert!(!sev.is_memslot_gpa(gpa | sev.ram_alias_bit()));
    }
}
